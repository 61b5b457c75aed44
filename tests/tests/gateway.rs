//! The gateway on the real cluster: REST and WebSocket submit, wait, poll,
//! cancel, fan-out to many clients, reconnects, and its error answers.

use std::time::Duration;

use sandrun_api::{ErrorBody, ExecutionView, ServerMessage, State};
use sandrun_e2e::gateway::{next_message, send_json, until_final, Gateway};
use serde_json::json;

const FINAL_WITHIN: Duration = Duration::from_secs(180);

fn exit_three() -> serde_json::Value {
    json!({"language": "python", "code": "import sys\nprint('out ' + sys.stdin.read())\nprint('err', file=sys.stderr)\nsys.exit(3)\n", "stdin": "in"})
}

async fn post(gw: &Gateway, token: &str, path: &str, body: &serde_json::Value) -> reqwest::Response {
    gw.http().post(format!("{}{path}", gw.url)).bearer_auth(token).json(body).send().await.expect("request")
}

async fn error_of(response: reqwest::Response) -> ErrorBody {
    response.json().await.expect("a JSON error body")
}

#[tokio::test]
async fn rest_with_wait_returns_the_result_with_separate_streams() {
    let gw = Gateway::from_env();
    let response = post(&gw, &gw.key("demo").token, "/v1/executions?wait=120s", &exit_three()).await;
    assert_eq!(response.status(), 200);
    let done: ExecutionView = response.json().await.unwrap();
    assert_eq!((done.status, done.exit_code), (State::Failed, Some(3)), "{done:?}");
    assert_eq!((done.stdout.as_deref(), done.stderr.as_deref()), (Some("out in\n"), Some("err\n")));
}

#[tokio::test]
async fn rest_submit_answers_at_once_and_polling_gets_the_result() {
    let gw = Gateway::from_env();
    let token = gw.key("demo").token;
    let started = std::time::Instant::now();
    let response = post(&gw, &token, "/v1/executions", &json!({"language": "bash", "code": "echo polled"})).await;
    assert_eq!(response.status(), 202);
    assert!(started.elapsed() < Duration::from_secs(5), "submit held on for {:?}", started.elapsed());
    let queued: ExecutionView = response.json().await.unwrap();
    assert_eq!(queued.status, State::Queued);
    let deadline = std::time::Instant::now() + FINAL_WITHIN;
    loop {
        let current: ExecutionView = gw.get_json(&token, &queued.links.self_).await;
        if current.status.is_final() {
            assert_eq!((current.status, current.stdout.as_deref()), (State::Succeeded, Some("polled\n")));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never finished: {current:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let list: sandrun_api::ExecutionList = gw.get_json(&token, "/v1/executions?status=succeeded&limit=500").await;
    assert!(list.items.iter().any(|v| v.id == queued.id), "listed");
    assert!(list.items.iter().all(|v| v.status == State::Succeeded));
}

#[tokio::test]
async fn websocket_execute_pushes_every_change_to_the_result() {
    let gw = Gateway::from_env();
    let mut socket = gw.connect(&gw.key("demo").token).await.expect("connect");
    let mut request = exit_three();
    request["type"] = json!("execute");
    request["ref"] = json!("mine");
    send_json(&mut socket, request).await;
    let id = match next_message(&mut socket, Duration::from_secs(10)).await {
        Some(ServerMessage::Accepted { id, ref_ }) => {
            assert_eq!(ref_.as_deref(), Some("mine"));
            id
        }
        other => panic!("expected accepted, got {other:?}"),
    };
    let done = until_final(&mut socket, &id, FINAL_WITHIN).await;
    assert_eq!(
        (done.status, done.exit_code, done.stdout.as_deref(), done.stderr.as_deref()),
        (State::Failed, Some(3), Some("out in\n"), Some("err\n"))
    );
}

#[tokio::test]
async fn cancel_stops_a_sleeping_program() {
    let gw = Gateway::from_env();
    let token = gw.key("demo").token;
    let response = post(&gw, &token, "/v1/executions", &json!({"language": "python", "code": "import time\nprint('up', flush=True)\ntime.sleep(600)", "limits": {"timeoutSeconds": 600}})).await;
    let queued: ExecutionView = response.json().await.unwrap();
    let mut socket = gw.connect(&token).await.unwrap();
    send_json(&mut socket, json!({"type": "subscribe", "id": queued.id})).await;
    loop {
        match next_message(&mut socket, FINAL_WITHIN).await {
            Some(ServerMessage::Update { execution }) if execution.status == State::Running => break,
            Some(ServerMessage::Update { execution }) => assert!(!execution.status.is_final(), "{execution:?}"),
            other => panic!("{other:?}"),
        }
    }
    let cancelled =
        gw.http().delete(format!("{}/v1/executions/{}", gw.url, queued.id)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(cancelled.status(), 202);
    let done = until_final(&mut socket, &queued.id, Duration::from_secs(60)).await;
    assert_eq!(done.status, State::Cancelled, "{done:?}");
}

#[tokio::test]
async fn a_client_that_reconnects_still_gets_the_final_result() {
    let gw = Gateway::from_env();
    let token = gw.key("demo").token;
    let mut socket = gw.connect(&token).await.unwrap();
    send_json(&mut socket, json!({"type": "execute", "language": "bash", "code": "sleep 3; echo after the nap"})).await;
    let Some(ServerMessage::Accepted { id, .. }) = next_message(&mut socket, Duration::from_secs(10)).await else {
        panic!("not accepted")
    };
    drop(socket); // the client goes away mid-run
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut again = gw.connect(&token).await.unwrap();
    send_json(&mut again, json!({"type": "subscribe", "id": id})).await;
    let done = until_final(&mut again, &id, FINAL_WITHIN).await;
    assert_eq!((done.status, done.stdout.as_deref()), (State::Succeeded, Some("after the nap\n")));
    // Subscribing after the end gets the final state at once.
    let mut late = gw.connect(&token).await.unwrap();
    send_json(&mut late, json!({"type": "subscribe", "id": id})).await;
    assert_eq!(until_final(&mut late, &id, Duration::from_secs(10)).await.stdout.as_deref(), Some("after the nap\n"));
}

#[tokio::test]
async fn error_answers() {
    let gw = Gateway::from_env();
    let demo = gw.key("demo").token;

    let wrong = post(&gw, "not-a-real-key-at-all", "/v1/executions", &exit_three()).await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(error_of(wrong).await.error.code, "unauthorized");
    assert!(gw.connect("not-a-real-key-at-all").await.is_err(), "a WebSocket with a wrong key is refused");

    // Another tenant's execution does not exist for you.
    let theirs: ExecutionView =
        post(&gw, &gw.key("other").token, "/v1/executions", &json!({"language": "bash", "code": "true"}))
            .await
            .json()
            .await
            .unwrap();
    let peek =
        gw.http().get(format!("{}/v1/executions/{}", gw.url, theirs.id)).bearer_auth(&demo).send().await.unwrap();
    assert_eq!(peek.status(), 404);
    let cancel =
        gw.http().delete(format!("{}/v1/executions/{}", gw.url, theirs.id)).bearer_auth(&demo).send().await.unwrap();
    assert_eq!(cancel.status(), 404);

    // The gateway answers 413 from Content-Length alone and closes without
    // reading the body, so the client may still be writing it and see a
    // broken pipe instead of the answer: try again until the answer wins.
    let big = json!({"language": "python", "code": "x".repeat(2 * 1024 * 1024)});
    let mut attempts = 0;
    let too_big = loop {
        attempts += 1;
        let sent = gw.http().post(format!("{}/v1/executions", gw.url)).bearer_auth(&demo).json(&big).send().await;
        match sent {
            Ok(response) => break response,
            Err(e) if attempts < 5 && e.is_request() => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("an oversized body got no answer in {attempts} attempts: {e}"),
        }
    };
    assert_eq!(too_big.status(), 413);
    assert_eq!(error_of(too_big).await.error.code, "payload_too_large");

    let malformed = gw
        .http()
        .post(format!("{}/v1/executions", gw.url))
        .bearer_auth(&demo)
        .header("content-type", "application/json")
        .body("{\"language\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(error_of(malformed).await.error.code, "bad_request");

    let invalid =
        post(&gw, &demo, "/v1/executions", &json!({"language": "python", "code": "1", "limits": {"memory": "lots"}}))
            .await;
    assert_eq!(invalid.status(), 422, "the API server's CEL rule comes back as 422");

    let slow = gw.key("slow").token;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let r = gw.http().get(format!("{}/v1/executions", gw.url)).bearer_auth(&slow).send().await.unwrap();
        if r.status() == 429 {
            assert!(r.headers().get("retry-after").is_some());
        }
        statuses.push(r.status().as_u16());
    }
    assert!(statuses.contains(&429), "a flood is limited: {statuses:?}");
    assert_eq!(statuses[0], 200);

    let mut socket = gw.connect(&demo).await.unwrap();
    send_json(&mut socket, json!({"type": "dance"})).await;
    match next_message(&mut socket, Duration::from_secs(5)).await {
        Some(ServerMessage::Error { error, .. }) => assert_eq!(error.code, "bad_request"),
        other => panic!("{other:?}"),
    }
    send_json(&mut socket, json!({"type": "subscribe", "id": theirs.id})).await;
    match next_message(&mut socket, Duration::from_secs(5)).await {
        Some(ServerMessage::Error { error, .. }) => assert_eq!(error.code, "not_found"),
        other => panic!("{other:?}"),
    }
}

/// The key, not the namespace, is the boundary: `neighbour` shares
/// `other`'s namespace and still cannot see, list, follow or cancel its runs.
#[tokio::test]
async fn keys_sharing_a_namespace_see_none_of_each_others_runs() {
    let gw = Gateway::from_env();
    let (owner, neighbour) = (gw.key("other"), gw.key("neighbour"));
    assert_eq!(owner.namespace, neighbour.namespace, "the keys file must put both keys in one namespace");
    let sleeper = json!({"language": "bash", "code": "sleep 20; echo mine"});
    let theirs: ExecutionView =
        post(&gw, &owner.token, "/v1/executions", &sleeper).await.json().await.expect("submitted");
    let url = format!("{}/v1/executions/{}", gw.url, theirs.id);

    let peek = gw.http().get(&url).bearer_auth(&neighbour.token).send().await.unwrap();
    assert_eq!(peek.status(), 404, "get");
    assert_eq!(error_of(peek).await.error.code, "not_found");
    let cancel = gw.http().delete(&url).bearer_auth(&neighbour.token).send().await.unwrap();
    assert_eq!(cancel.status(), 404, "cancel");
    let listed: sandrun_api::ExecutionList = gw.get_json(&neighbour.token, "/v1/executions?limit=500").await;
    assert!(listed.items.iter().all(|e| e.id != theirs.id), "the neighbour's list shows the run");
    let mut socket = gw.connect(&neighbour.token).await.unwrap();
    send_json(&mut socket, json!({"type": "subscribe", "id": theirs.id})).await;
    match next_message(&mut socket, Duration::from_secs(5)).await {
        Some(ServerMessage::Error { error, .. }) => assert_eq!(error.code, "not_found"),
        other => panic!("subscribe: {other:?}"),
    }
    // Nothing of the run reaches the neighbour's socket as it goes on.
    if let Some(message) = next_message(&mut socket, Duration::from_secs(3)).await {
        panic!("the neighbour heard about the run: {message:?}");
    }

    // The owner still has it, and it was never cancelled.
    let mine: sandrun_api::ExecutionList = gw.get_json(&owner.token, "/v1/executions?limit=500").await;
    assert!(mine.items.iter().any(|e| e.id == theirs.id), "the owner's list lacks its run");
    let deadline = std::time::Instant::now() + FINAL_WITHIN;
    loop {
        let current: ExecutionView = gw.get_json(&owner.token, &theirs.links.self_).await;
        if current.status.is_final() {
            assert_eq!((current.status, current.stdout.as_deref()), (State::Succeeded, Some("mine\n")));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never finished: {current:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Retried submits with one idempotency key, also at once and over the
/// WebSocket, make one run; the same key with another request is refused.
#[tokio::test]
async fn a_retried_submit_gets_the_same_run() {
    let gw = Gateway::from_env();
    let token = gw.key("demo").token;
    let key = format!("retry-{}", std::process::id());
    let body = json!({"language": "bash", "code": "echo once"});
    let submit = |body: serde_json::Value| {
        let (gw, token, key) = (&gw, &token, &key);
        async move {
            gw.http()
                .post(format!("{}/v1/executions", gw.url))
                .bearer_auth(token)
                .header("Idempotency-Key", key.as_str())
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let answers = futures::future::join_all((0..5).map(|_| submit(body.clone()))).await;
    let mut ids = Vec::new();
    for answer in answers {
        assert!(answer.status() == 202 || answer.status() == 200, "{}", answer.status());
        ids.push(answer.json::<ExecutionView>().await.unwrap().id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "five retries at once made {ids:?}");
    let mut socket = gw.connect(&token).await.unwrap();
    let mut execute = body.clone();
    execute["type"] = json!("execute");
    execute["idempotencyKey"] = json!(key);
    send_json(&mut socket, execute).await;
    match next_message(&mut socket, Duration::from_secs(10)).await {
        Some(ServerMessage::Accepted { id, .. }) => assert_eq!(id, ids[0], "over the WebSocket"),
        other => panic!("{other:?}"),
    }
    let changed = submit(json!({"language": "bash", "code": "echo twice"})).await;
    assert_eq!(changed.status(), 422);
    assert_eq!(error_of(changed).await.error.field.as_deref(), Some("idempotencyKey"));
}

/// A followed run that is deleted is told as `gone`, and is then a 404.
#[tokio::test]
async fn a_deleted_run_is_told_gone() {
    let gw = Gateway::from_env();
    let key = gw.key("demo");
    let mut socket = gw.connect(&key.token).await.unwrap();
    send_json(&mut socket, json!({"type": "execute", "language": "bash", "code": "sleep 60"})).await;
    let Some(ServerMessage::Accepted { id, .. }) = next_message(&mut socket, Duration::from_secs(10)).await else {
        panic!("not accepted");
    };
    sandrun_e2e::kubectl(&["-n", &key.namespace, "delete", "execution", &id, "--wait=false"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match next_message(&mut socket, left).await {
            Some(ServerMessage::Gone { id: gone }) => {
                assert_eq!(gone, id);
                break;
            }
            Some(ServerMessage::Update { execution }) => assert_eq!(execution.id, id),
            other => panic!("waiting for gone: {other:?}"),
        }
    }
    let url = format!("{}/v1/executions/{id}", gw.url);
    let after = gw.http().get(&url).bearer_auth(&key.token).send().await.unwrap();
    assert_eq!(after.status(), 404);
}

/// `capped` may run no image, no run over its caps, and two at a time.
#[tokio::test]
async fn a_key_is_held_to_its_policy() {
    let gw = Gateway::from_env();
    let capped = gw.key("capped").token;
    let refusals = [
        (
            "an image",
            json!({"image": "localhost/sandrun-python:bookworm", "command": ["true"]}),
            403,
            "forbidden",
            "image",
        ),
        (
            "memory over the cap",
            json!({"language": "bash", "code": "true", "limits": {"memory": "1Gi"}}),
            422,
            "invalid_request",
            "limits.memory",
        ),
        (
            "a timeout over the cap",
            json!({"language": "bash", "code": "true", "limits": {"timeoutSeconds": 31}}),
            422,
            "invalid_request",
            "limits.timeoutSeconds",
        ),
        (
            "output over the cap",
            json!({"language": "bash", "code": "true", "limits": {"maxOutputBytes": 65537}}),
            422,
            "invalid_request",
            "limits.maxOutputBytes",
        ),
    ];
    for (case, body, status, code, field) in refusals {
        let response = post(&gw, &capped, "/v1/executions", &body).await;
        assert_eq!(response.status(), status, "{case}");
        let error = error_of(response).await.error;
        assert_eq!((error.code.as_str(), error.field.as_deref()), (code, Some(field)), "{case}: {}", error.message);
    }

    // Two at a time: the third is refused while two sleep, and taken once one is done.
    let sleeper = json!({"language": "bash", "code": "sleep 8", "limits": {"timeoutSeconds": 30}});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let response = post(&gw, &capped, "/v1/executions", &sleeper).await;
        assert_eq!(response.status(), 202);
        ids.push(response.json::<ExecutionView>().await.unwrap().id);
    }
    // The count comes off this replica's watch: give it a moment to see both.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let third = post(&gw, &capped, "/v1/executions", &sleeper).await;
    assert_eq!(third.status(), 429);
    assert!(third.headers().get("retry-after").is_some());
    assert_eq!(error_of(third).await.error.code, "too_many_active");
    let mut socket = gw.connect(&capped).await.unwrap();
    let mut execute = sleeper.clone();
    execute["type"] = json!("execute");
    send_json(&mut socket, execute).await;
    match next_message(&mut socket, Duration::from_secs(5)).await {
        Some(ServerMessage::Error { error, .. }) => assert_eq!(error.code, "too_many_active"),
        other => panic!("execute over the cap: {other:?}"),
    }
    let cancel = gw.http().delete(format!("{}/v1/executions/{}", gw.url, ids[0])).bearer_auth(&capped).send().await;
    assert_eq!(cancel.unwrap().status(), 202);
    let deadline = std::time::Instant::now() + FINAL_WITHIN;
    loop {
        let response = post(&gw, &capped, "/v1/executions", &json!({"language": "bash", "code": "true"})).await;
        if response.status() == 202 {
            break;
        }
        assert_eq!(response.status(), 429, "only the cap may refuse it");
        assert!(std::time::Instant::now() < deadline, "a slot never came back after a cancel");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `sockets` may hold three sockets and follow two runs on each.
#[tokio::test]
async fn a_key_is_held_to_its_socket_and_subscription_caps() {
    let gw = Gateway::from_env();
    let capped = gw.key("sockets").token;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(gw.connect(&capped).await.expect("within the cap"));
    }
    match gw.connect(&capped).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 429),
        other => panic!("a fourth socket: {:?}", other.map(|_| "connected")),
    }
    drop(open.pop());
    // The server sees the close and gives the slot back.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut socket = loop {
        match gw.connect(&capped).await {
            Ok(socket) => break socket,
            Err(_) if std::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => panic!("the closed socket's slot never came back: {e}"),
        }
    };
    for id in ["run-a", "run-b"] {
        // Not found, but the follow is what counts: it is dropped on a 404.
        send_json(&mut socket, json!({"type": "subscribe", "id": id})).await;
        let _ = next_message(&mut socket, Duration::from_secs(5)).await;
    }
    let runs: Vec<ExecutionView> = {
        let mut made = Vec::new();
        for _ in 0..2 {
            let body = json!({"language": "bash", "code": "sleep 5"});
            made.push(post(&gw, &capped, "/v1/executions", &body).await.json().await.unwrap());
        }
        made
    };
    for run in &runs {
        send_json(&mut socket, json!({"type": "subscribe", "id": run.id})).await;
        match next_message(&mut socket, Duration::from_secs(5)).await {
            Some(ServerMessage::Update { execution }) => assert_eq!(execution.id, run.id),
            other => panic!("subscribe within the cap: {other:?}"),
        }
    }
    send_json(&mut socket, json!({"type": "subscribe", "id": "run-c"})).await;
    loop {
        match next_message(&mut socket, Duration::from_secs(5)).await {
            Some(ServerMessage::Error { error, .. }) => {
                assert_eq!(error.code, "too_many_subscriptions");
                break;
            }
            Some(ServerMessage::Update { .. }) => {}
            other => panic!("a third subscription: {other:?}"),
        }
    }
}

/// A second gateway process, stopped when dropped.
struct SecondGateway(std::process::Child);

impl Drop for SecondGateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Also: keys from a Secret work like keys from a file.
#[tokio::test]
async fn replicas_work_side_by_side() {
    let gw = Gateway::from_env();
    let state = std::env::var("SANDRUN_STATE").unwrap_or_else(|_| "/var/lib/sandrun-cluster".into());
    let addr = "127.0.0.1:8091";
    // This replica reads its keys from a Secret rather than a file.
    let keys = std::fs::read_to_string(format!("{state}/config/gateway-keys.yaml")).expect("keys file");
    let secret = k8s_openapi::api::core::v1::Secret {
        metadata: kube::api::ObjectMeta { name: Some("e2e-gateway-keys".into()), ..Default::default() },
        string_data: Some([("keys.yaml".to_owned(), keys)].into()),
        ..Default::default()
    };
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(kube::Client::try_default().await.expect("kube client"), "sandrun-demo");
    let apply = kube::api::PatchParams::apply("sandrun-e2e").force();
    secrets.patch("e2e-gateway-keys", &apply, &kube::api::Patch::Apply(&secret)).await.expect("keys Secret");
    let child = std::process::Command::new(sandrun_e2e::built_binary("sandrun-gateway"))
        .args(["--listen", addr, "--metrics-listen", "127.0.0.1:0", "--keys-secret", "sandrun-demo/e2e-gateway-keys"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start a second gateway");
    let _second = SecondGateway(child);
    let other = gw.at(addr);
    let ready = async {
        while !gw.http().get(format!("{}/readyz", other.url)).send().await.is_ok_and(|r| r.status() == 200) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), ready).await.expect("second gateway ready");

    // Submitted through one replica, followed to the end through the other.
    let token = gw.key("demo").token;
    let queued: ExecutionView =
        post(&gw, &token, "/v1/executions", &json!({"language": "bash", "code": "echo two replicas"}))
            .await
            .json()
            .await
            .unwrap();
    let mut socket = other.connect(&token).await.expect("connect to the second replica");
    send_json(&mut socket, json!({"type": "subscribe", "id": queued.id})).await;
    let done = until_final(&mut socket, &queued.id, FINAL_WITHIN).await;
    assert_eq!((done.status, done.stdout.as_deref()), (State::Succeeded, Some("two replicas\n")));
}

/// A changed keys Secret is taken without a restart: a new key works and
/// a removed one is refused, within the reload interval (10 s).
#[tokio::test]
async fn keys_reload_when_their_secret_changes() {
    let gw = Gateway::from_env();
    let addr = "127.0.0.1:8092";
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(kube::Client::try_default().await.expect("kube client"), "sandrun-demo");
    let put = |tokens: &[(&str, &str)]| {
        let entries: String = tokens
            .iter()
            .map(|(name, token)| format!("  - {{name: {name}, token: {token}, namespace: sandrun-demo}}\n"))
            .collect();
        k8s_openapi::api::core::v1::Secret {
            metadata: kube::api::ObjectMeta { name: Some("e2e-reload-keys".into()), ..Default::default() },
            string_data: Some([("keys.yaml".to_owned(), format!("keys:\n{entries}"))].into()),
            ..Default::default()
        }
    };
    let apply = kube::api::PatchParams::apply("sandrun-e2e").force();
    let (old, new) = ("reload-old-token-0001", "reload-new-token-0002");
    let first = put(&[("old", old)]);
    secrets.patch("e2e-reload-keys", &apply, &kube::api::Patch::Apply(&first)).await.expect("keys Secret");
    let child = std::process::Command::new(sandrun_e2e::built_binary("sandrun-gateway"))
        .args(["--listen", addr, "--metrics-listen", "127.0.0.1:0", "--keys-secret", "sandrun-demo/e2e-reload-keys"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start a gateway");
    let _gateway = SecondGateway(child);
    let list = |token: &'static str| {
        let (http, url) = (gw.http(), format!("http://{addr}/v1/executions?limit=1"));
        async move { http.get(url).bearer_auth(token).send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while list(old).await != 200 {
        assert!(std::time::Instant::now() < deadline, "the gateway never took the first key");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(list(new).await, 401);
    let second = put(&[("new", new)]);
    secrets.patch("e2e-reload-keys", &apply, &kube::api::Patch::Apply(&second)).await.expect("keys Secret");
    let changed = std::time::Instant::now();
    while list(new).await != 200 {
        assert!(changed.elapsed() < Duration::from_secs(30), "the new key never worked");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(list(old).await, 401, "the removed key still works");
    println!("a changed key took {:?}", changed.elapsed());
}
