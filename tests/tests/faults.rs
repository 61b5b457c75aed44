//! Faults: the operator, the gateway and the API server die or are cut off
//! in the middle of work, children are deleted by hand, the node is full.
//! Nothing may be lost, stuck or done twice. Prints a table of each fault
//! and what happened.
//!
//! Ignored by default: it kills sandrun's own pods and the API server, so
//! `hack/test.sh` runs it alone (`--ignored --nocapture`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::future::join_all;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use sandrun_api::{ServerMessage, State};
use sandrun_crds::{Execution, Limits, Phase};
use sandrun_e2e::faults::{kill_leader, new_leader, sigkill};
use sandrun_e2e::gateway::{next_message, send_json, Gateway, Socket};
use sandrun_e2e::inspect::{component_pods, daemon_pid, pod_process};
use sandrun_e2e::{kubectl, print_table, python, status_of, with_limits, TestNamespace};
use serde_json::json;

#[tokio::test]
#[ignore = "fault suite: kills sandrun and the API server; hack/test.sh runs it alone"]
async fn faults_lose_nothing_and_nothing_sticks() {
    let mut rows = Vec::new();
    for row in [
        operator_killed_repeatedly().await,
        gateway_killed_while_clients_wait().await,
        api_server_restarted_mid_run().await,
        kubelet_killed_and_restarted().await,
        kubelet_killed_for_good().await,
        children_deleted_by_hand().await,
        more_runs_than_the_node_fits().await,
    ] {
        println!("{} → {}", row[0], row[1]);
        rows.push(row);
    }
    print_table(&["fault", "what happened", "result"], &rows);
}

fn row(fault: &str, happened: String) -> Vec<String> {
    vec![fault.to_owned(), happened, "nothing lost".to_owned()]
}

/// Creates `count` Executions named `run-N` that sleep, then print `run N`.
async fn start_runs(ns: &TestNamespace, count: usize, sleep_seconds: u32) {
    let api = ns.executions();
    for i in 0..count {
        let code = format!("import time\ntime.sleep({sleep_seconds})\nprint('run {i}')");
        api.create(&PostParams::default(), &Execution::new(&format!("run-{i}"), python(&code))).await.unwrap();
    }
}

/// Every `run-N` succeeded with its own output, through exactly one Job.
async fn all_runs_correct(ns: &TestNamespace, count: usize) {
    let results = join_all((0..count).map(|i| async move { (i, ns.wait_finished(&format!("run-{i}")).await) })).await;
    for (i, execution) in results {
        let status = status_of(&execution);
        assert_eq!(
            (status.phase, status.stdout.as_deref()),
            (Phase::Succeeded, Some(format!("run {i}\n").as_str())),
            "run-{i}: {status:?}"
        );
    }
    let jobs = ns.api::<Job>().list(&ListParams::default()).await.unwrap().items;
    let mut per_execution: BTreeMap<String, usize> = BTreeMap::new();
    for job in &jobs {
        for owner in job.owner_references() {
            *per_execution.entry(owner.name.clone()).or_default() += 1;
        }
    }
    assert_eq!(jobs.len(), count, "one Job per Execution: {per_execution:?}");
    assert!(per_execution.values().all(|n| *n == 1), "{per_execution:?}");
}

async fn operator_killed_repeatedly() -> Vec<String> {
    const RUNS: usize = 50;
    const KILLS: usize = 3;
    let ns = TestNamespace::new("fault-operator").await;
    let started = Instant::now();
    start_runs(&ns, RUNS, 3).await;
    let mut handovers = Vec::new();
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let leader = kill_leader(&ns.client).await;
        let (_, took) = new_leader(&ns.client, &leader, Duration::from_secs(90)).await;
        handovers.push(format!("{:.1}", took.as_secs_f64()));
    }
    all_runs_correct(&ns, RUNS).await;
    row(
        &format!("operator leader SIGKILLed {KILLS}× with {RUNS} runs in flight"),
        format!(
            "lease taken over after {} s; all {RUNS} correct, one Job each, {:.0} s in all",
            handovers.join(" / "),
            started.elapsed().as_secs_f64()
        ),
    )
}

async fn gateway_killed_while_clients_wait() -> Vec<String> {
    const CLIENTS: usize = 50;
    let gateway = Gateway::from_env();
    let token = gateway.key("demo").token;
    let (accepted_tx, mut accepted_rx) = tokio::sync::mpsc::channel::<()>(CLIENTS);
    let (kill_tx, kill_rx) = tokio::sync::watch::channel(false);
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let (gateway, token, accepted, mut killed) =
            (gateway.clone(), token.clone(), accepted_tx.clone(), kill_rx.clone());
        clients.push(tokio::spawn(async move {
            let mut socket = gateway.connect(&token).await.expect("connect");
            let code = format!("sleep 6; echo client-{i}");
            send_json(&mut socket, json!({"type": "execute", "language": "bash", "code": code})).await;
            let id = match next_message(&mut socket, Duration::from_secs(60)).await {
                Some(ServerMessage::Accepted { id, .. }) => id,
                other => panic!("client {i}: {other:?}"),
            };
            accepted.send(()).await.expect("report accepted");
            // Hold on until the gateway has been killed under this socket.
            let _ = killed.wait_for(|k| *k).await;
            let (view, reconnects) = final_view_across_reconnects(&gateway, &token, socket, &id).await;
            assert_eq!(view.stdout.as_deref(), Some(format!("client-{i}\n").as_str()), "client {i}: {view:?}");
            reconnects
        }));
    }
    for _ in 0..CLIENTS {
        accepted_rx.recv().await.expect("every client is accepted");
    }
    let pod = component_pods("gateway", "{.items[0].metadata.name}");
    let pid = pod_process(&pod, "sandrun-gateway").expect("the gateway's process");
    let killed = Instant::now();
    sigkill(pid);
    kill_tx.send(true).expect("clients listen");
    let mut reconnected = 0;
    for client in clients {
        reconnected += usize::from(client.await.expect("client task") > 0);
    }
    row(
        &format!("gateway SIGKILLed with {CLIENTS} WebSocket clients waiting"),
        format!(
            "{reconnected} of {CLIENTS} reconnected and all {CLIENTS} got their result, {:.1} s after the kill",
            killed.elapsed().as_secs_f64()
        ),
    )
}

/// Reads until `id` is final, reconnecting and resubscribing whenever the
/// socket drops, as a client of a restarting gateway does.
async fn final_view_across_reconnects(
    gateway: &Gateway,
    token: &str,
    mut socket: Socket,
    id: &str,
) -> (sandrun_api::ExecutionView, usize) {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut reconnects = 0;
    loop {
        match next_message(&mut socket, Duration::from_secs(30)).await {
            Some(ServerMessage::Update { execution }) if execution.status.is_final() => {
                assert_eq!(execution.status, State::Succeeded, "{execution:?}");
                return (*execution, reconnects);
            }
            Some(_) => {}
            None => loop {
                assert!(Instant::now() < deadline, "{id}: no gateway to reconnect to within 180 s");
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Ok(fresh) = gateway.connect(token).await {
                    socket = fresh;
                    reconnects += 1;
                    send_json(&mut socket, json!({"type": "subscribe", "id": id})).await;
                    break;
                }
            },
        }
    }
}

async fn api_server_restarted_mid_run() -> Vec<String> {
    const RUNS: usize = 10;
    let ns = TestNamespace::new("fault-apiserver").await;
    start_runs(&ns, RUNS, 4).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let downtime = daemon_down_for("kube-apiserver", Duration::from_secs(5)).await;
    all_runs_correct(&ns, RUNS).await;

    // The gateway's watch came back too: a ?wait= answer arrives through it.
    let gateway = Gateway::from_env();
    let recovered = Instant::now();
    let answer: serde_json::Value = loop {
        let response = gateway
            .http()
            .post(format!("{}/v1/executions?wait=60s", gateway.url))
            .bearer_auth(gateway.key("demo").token)
            .json(&json!({"language": "python", "code": "print('after the restart')"}))
            .send()
            .await;
        // Only a finished run (200) counts; anything else is tried again.
        if let Some(response) = response.ok().filter(|r| r.status() == 200) {
            break response.json().await.expect("JSON");
        }
        assert!(recovered.elapsed() < Duration::from_secs(120), "the gateway did not recover within 120 s");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(answer["stdout"], "after the restart\n", "{answer}");
    row(
        "kube-apiserver SIGKILLed and restarted mid-run",
        format!(
            "API server away {:.0} s; all {RUNS} runs correct; the gateway answered a new run {:.1} s later",
            downtime.as_secs_f64(),
            recovered.elapsed().as_secs_f64()
        ),
    )
}

/// Brings back whatever of the local cluster is down (here: the kubelet).
fn cluster_up() {
    let up = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../cluster/up.sh"))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("cluster/up.sh");
    assert!(up.success(), "cluster/up.sh could not bring the cluster back");
}

/// SIGKILLs one of the cluster's daemons, leaves it down for `away`, then
/// brings it back; returns how long it was gone.
async fn daemon_down_for(name: &str, away: Duration) -> Duration {
    let down = Instant::now();
    sigkill(daemon_pid(name));
    tokio::time::sleep(away).await;
    cluster_up();
    down.elapsed()
}

/// Waits until every `run-N` of `count` shows the Running phase in the same
/// listing: all of them in flight at once, which is what the faults below
/// need. A run that ends first means its program is too short for this
/// machine's start-up spread; that fails here, by name, not later.
async fn all_running(ns: &TestNamespace, count: usize) {
    let started = Instant::now();
    loop {
        let listed = ns.executions().list(&ListParams::default()).await.unwrap().items;
        let phase = |i: usize| {
            let name = format!("run-{i}");
            listed.iter().find(|e| e.name_any() == name).and_then(|e| e.status.as_ref()).map(|s| s.phase)
        };
        if let Some(i) = (0..count).find(|&i| phase(i).is_some_and(Phase::is_terminal)) {
            panic!("run-{i} ended before all {count} were running: {:?}", phase(i));
        }
        if (0..count).all(|i| phase(i) == Some(Phase::Running)) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "not all {count} runs were running within 120 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The kubelet dies with runs in flight and comes back before their
/// results are overdue: the pods kept running, and every result arrives.
async fn kubelet_killed_and_restarted() -> Vec<String> {
    const RUNS: usize = 5;
    let ns = TestNamespace::new("fault-kubelet").await;
    start_runs(&ns, RUNS, 20).await;
    all_running(&ns, RUNS).await;
    let downtime = daemon_down_for("kubelet", Duration::from_secs(4)).await;
    all_runs_correct(&ns, RUNS).await;
    row(
        "kubelet SIGKILLed mid-run, restarted",
        format!("kubelet away {:.0} s; all {RUNS} runs correct", downtime.as_secs_f64()),
    )
}

/// The kubelet dies with runs in flight and stays dead: nothing reports
/// the pods' ends, so the operator ends each run once its result is
/// overdue (start + timeoutSeconds + 120 s), not at the Job's backstop.
async fn kubelet_killed_for_good() -> Vec<String> {
    const RUNS: usize = 5;
    const TIMEOUT: u32 = 30;
    const RESULT_GRACE: i64 = 120;
    let ns = TestNamespace::new("fault-node-lost").await;
    let api = ns.executions();
    for i in 0..RUNS {
        let code = format!("import time\ntime.sleep(20)\nprint('run {i}')");
        let limits = Limits { timeout_seconds: Some(TIMEOUT), ..Default::default() };
        api.create(&PostParams::default(), &Execution::new(&format!("run-{i}"), with_limits(python(&code), limits)))
            .await
            .unwrap();
    }
    all_running(&ns, RUNS).await;
    sigkill(daemon_pid("kubelet"));
    let killed = Instant::now();
    let mut worst = 0;
    for i in 0..RUNS {
        let status = status_of(&ns.wait_finished(&format!("run-{i}")).await);
        assert_eq!(
            (status.phase, status.reason.as_deref()),
            (Phase::Failed, Some("ResultOverdue")),
            "run-{i}: {status:?}"
        );
        let (start, end) = (status.start_time.expect("start time"), status.completion_time.expect("end time"));
        let took = end.0.duration_since(start.0).as_secs();
        // The operator checks on its own requeue; a few seconds of slack.
        assert!(took <= i64::from(TIMEOUT) + RESULT_GRACE + 5, "run-{i} ended {took} s after its start");
        worst = worst.max(took);
    }
    let ended_after = killed.elapsed();
    cluster_up();
    // The node is back: a new run goes through.
    let after = ns.run("after", python("print('node back')")).await;
    assert_eq!(status_of(&after).stdout.as_deref(), Some("node back\n"), "{after:?}");
    row(
        "kubelet SIGKILLed mid-run, not restarted",
        format!(
            "every run ended ResultOverdue ≤ {worst} s after its start ({:.0} s after the kill; bound: timeout {TIMEOUT} s + {RESULT_GRACE} s); a new run worked once the kubelet was back",
            ended_after.as_secs_f64()
        ),
    )
}

async fn children_deleted_by_hand() -> Vec<String> {
    let ns = TestNamespace::new("fault-children").await;
    let api = ns.executions();

    // The Job of a running program goes: the run cannot finish, and says why.
    api.create(&PostParams::default(), &Execution::new("lose-job", python("import time\ntime.sleep(60)")))
        .await
        .unwrap();
    wait_until(&api, "lose-job", |e| e.status.as_ref().is_some_and(|s| s.phase == Phase::Running)).await;
    ns.api::<Job>().delete("sandrun-lose-job", &DeleteParams::background()).await.expect("delete the Job");
    let deleted = Instant::now();
    let lost = status_of(&ns.wait_finished("lose-job").await);
    assert_eq!((lost.phase, lost.reason.as_deref()), (Phase::Failed, Some("JobDeleted")), "{lost:?}");
    let job_took = deleted.elapsed();

    // The inputs go before the pod mounts them: they are put back.
    let created = api
        .create(&PostParams::default(), &Execution::new("lose-inputs", python("print('inputs restored')")))
        .await
        .unwrap();
    let inputs = format!("sandrun-lose-inputs-{}", &created.metadata.uid.unwrap()[..8]);
    let config_maps = ns.api::<ConfigMap>();
    let started = Instant::now();
    while config_maps.delete(&inputs, &DeleteParams::default()).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "the inputs ConfigMap never appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = status_of(&ns.wait_finished("lose-inputs").await);
    assert_eq!(done.stdout.as_deref(), Some("inputs restored\n"), "{done:?}");
    let restored =
        kubectl(&["-n", &ns.name, "get", "events", "--field-selector", "reason=InputsRestored", "-o", "name"]);
    row(
        "a running Job, then a not-yet-mounted ConfigMap, deleted by hand",
        format!(
            "Job: Failed/JobDeleted {:.1} s later; ConfigMap: {}, the run Succeeded in {:.1} s",
            job_took.as_secs_f64(),
            if restored.is_empty() { "the pod had mounted it already" } else { "put back (event InputsRestored)" },
            started.elapsed().as_secs_f64()
        ),
    )
}

async fn more_runs_than_the_node_fits() -> Vec<String> {
    const RUNS: usize = 8;
    let ns = TestNamespace::new("fault-full").await;
    let api = ns.executions();
    let allocatable = kubectl(&["get", "nodes", "-o", "jsonpath={.items[0].status.allocatable.memory}"]);
    let started = Instant::now();
    for i in 0..RUNS {
        let spec = with_limits(
            python(&format!("import time\ntime.sleep(3)\nprint('run {i}')")),
            Limits { memory: Some("6Gi".into()), ..Default::default() },
        );
        api.create(&PostParams::default(), &Execution::new(&format!("run-{i}"), spec)).await.unwrap();
    }
    // Some have to wait, and say why while they do.
    let waiting = wait_until_any(&api, RUNS, |e| {
        e.status.as_ref().filter(|s| s.phase == Phase::Pending && s.reason.as_deref() == Some("Unschedulable")).cloned()
    })
    .await;
    all_runs_correct(&ns, RUNS).await;
    row(
        &format!("{RUNS} runs of 6Gi each on a node with {allocatable} allocatable"),
        format!(
            "the overflow waited as Pending/Unschedulable ({:?}), then all {RUNS} ran, {:.0} s in all",
            waiting.message.unwrap_or_default(),
            started.elapsed().as_secs_f64()
        ),
    )
}

async fn wait_until(api: &Api<Execution>, name: &str, ready: impl Fn(&Execution) -> bool) {
    let started = Instant::now();
    loop {
        if api.get(name).await.is_ok_and(|e| ready(&e)) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{name} did not get there within 120 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The first `run-N` of `count` for which `pick` gives something.
async fn wait_until_any<T>(api: &Api<Execution>, count: usize, pick: impl Fn(&Execution) -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        for i in 0..count {
            if let Some(found) = api.get(&format!("run-{i}")).await.ok().as_ref().and_then(&pick) {
                return found;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no run got there within 120 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
