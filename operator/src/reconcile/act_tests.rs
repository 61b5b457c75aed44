//! Whole reconciles against a mocked API server (kube's `tower-test`
//! pattern): for each state, the exact requests the operator sends, in
//! order, and what it does with the answers, errors included.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::Event;
use kube::runtime::watcher;
use kube::Client;
use prometheus_client::registry::Registry;
use sandrun_crds::{Execution, ExecutionStatus, Phase, SandboxPool};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{error_policy, reconcile, Context};
use crate::config::OperatorConfig;
use crate::error::Error;
use crate::events::EventQueue;
use crate::labels::inputs_name;
use crate::metrics::Metrics;
use crate::objects;
use crate::pool::Profile;
use crate::store::{JobView, PodView, Stores};

const NS: &str = "/namespaces/team-a";
const JOB: &str = "/apis/batch/v1/namespaces/team-a/jobs/sandrun-hello";
const EXECUTION: &str = "/apis/sandrun.dev/v1alpha1/namespaces/team-a/executions/hello";

/// One request the API server expects, and its answer.
struct Expect {
    method: &'static str,
    path: String,
    status: u16,
    /// `None`: echo the request body back (as an apply does), with a uid.
    body: Option<Value>,
}

fn expect(method: &'static str, path: impl Into<String>, status: u16, body: Option<Value>) -> Expect {
    Expect { method, path: path.into(), status, body }
}

/// What the operator sent.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    query: String,
    body: Value,
}

fn api_error(code: u16, reason: &str, message: &str) -> Option<Value> {
    Some(json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
        "message": message, "code": code}))
}

fn deleted() -> Option<Value> {
    Some(json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}))
}

struct Harness {
    ctx: Arc<Context>,
    events: mpsc::Receiver<(Event, ObjectReference)>,
    server: tokio::task::JoinHandle<Vec<Seen>>,
}

/// A context whose client talks to a mock that answers `script` in order,
/// with stores that have listed `jobs` (and nothing else).
fn harness(script: Vec<Expect>, jobs: Vec<JobView>, policy: Option<NetworkPolicy>) -> Harness {
    harness_with_pool(script, jobs, policy, None)
}

/// As `harness`, with a SandboxPool and its warm pods listed too.
fn harness_with_pool(
    script: Vec<Expect>,
    jobs: Vec<JobView>,
    policy: Option<NetworkPolicy>,
    pool: Option<(SandboxPool, Vec<PodView>)>,
) -> Harness {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        for expected in script {
            // A warm delivery's attach runs beside the binding's writes, in
            // its own task: not part of the reconcile's ordered requests.
            let (request, respond) = loop {
                let (request, respond) = handle.next_request().await.expect("the operator sent no further request");
                if !request.uri().path().ends_with("/attach") {
                    break (request, respond);
                }
                let refused = Response::builder().status(503).body(Body::empty()).unwrap();
                respond.send_response(refused);
            };
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let request = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().unwrap_or_default().to_owned(),
                body,
            };
            assert_eq!(
                (request.method.as_str(), request.path.as_str()),
                (expected.method, expected.path.as_str()),
                "request {} (earlier: {seen:?})",
                seen.len() + 1
            );
            let answer = match expected.body {
                // A log: plain text.
                Some(Value::String(text)) => text,
                Some(body) => body.to_string(),
                None => {
                    let mut echoed = request.body.clone();
                    echoed["metadata"]["uid"] = json!("made-uid");
                    echoed.to_string()
                }
            };
            let response = Response::builder().status(expected.status).body(Body::from(answer.into_bytes()));
            respond.send_response(response.unwrap());
            seen.push(request);
        }
        seen
    });
    let (stores, writers) = Stores::new();
    stores.jobs.apply(&watcher::Event::Init);
    for job in &jobs {
        stores.jobs.apply(&watcher::Event::InitApply(job.clone()));
    }
    stores.jobs.apply::<JobView>(&watcher::Event::InitDone);
    stores.pods.apply::<crate::store::PodView>(&watcher::Event::InitDone);
    stores.config_maps.apply::<k8s_openapi::api::core::v1::ConfigMap>(&watcher::Event::InitDone);
    let mut policies = writers.policies;
    policies.apply_watcher_event(&watcher::Event::Init);
    if let Some(policy) = policy {
        policies.apply_watcher_event(&watcher::Event::InitApply(policy));
    }
    policies.apply_watcher_event(&watcher::Event::InitDone);
    let mut pools = writers.pools;
    pools.apply_watcher_event(&watcher::Event::Init);
    stores.warm.apply::<PodView>(&watcher::Event::Init);
    if let Some((pool, pods)) = pool {
        pools.apply_watcher_event(&watcher::Event::InitApply(pool));
        for pod in pods {
            stores.warm.apply(&watcher::Event::InitApply(pod));
        }
    }
    pools.apply_watcher_event(&watcher::Event::InitDone);
    stores.warm.apply::<PodView>(&watcher::Event::InitDone);
    let (events, captured) = EventQueue::captured();
    let (client, metrics) = (Client::new(service, "default"), Metrics::register(&mut Registry::default()));
    let deliveries = crate::delivery::Deliveries::new(client.clone(), metrics.clone()).0;
    let ctx = Context { client, config: OperatorConfig::default(), events, metrics, stores, deliveries };
    Harness { ctx: Arc::new(ctx), events: captured, server }
}

impl Harness {
    async fn reconcile(&self, execution: Execution) -> Result<Action, Error> {
        let run = reconcile(Arc::new(execution), self.ctx.clone());
        tokio::time::timeout(Duration::from_secs(5), run).await.expect("reconcile waits on a request not scripted")
    }

    /// The requests, once all scripted ones were made.
    async fn seen(self) -> (Vec<Seen>, Vec<String>) {
        let Harness { server, mut events, ctx } = self;
        let seen = tokio::time::timeout(Duration::from_secs(5), server).await.expect("scripted requests not made");
        drop(ctx);
        let mut reasons = Vec::new();
        while let Ok((event, _)) = events.try_recv() {
            reasons.push(event.reason);
        }
        (seen.unwrap(), reasons)
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

fn execution(f: impl FnOnce(&mut Execution)) -> Execution {
    let mut e: Execution = serde_json::from_value(json!({
        "apiVersion": "sandrun.dev/v1alpha1", "kind": "Execution",
        "metadata": {"name": "hello", "namespace": "team-a", "uid": "uid-1", "resourceVersion": "41", "generation": 1},
        "spec": {"language": "python", "source": {"files": [{"path": "main.py", "content": "print(1)"}]}}
    }))
    .unwrap();
    e.metadata.creation_timestamp = Some(now());
    f(&mut e);
    e
}

fn as_json(e: &Execution) -> Option<Value> {
    Some(serde_json::to_value(e).unwrap())
}

fn our_job(e: &Execution) -> JobView {
    serde_json::from_value(json!({"metadata": {"name": "sandrun-hello", "namespace": "team-a", "uid": "job-1",
        "labels": {"sandrun.dev/execution": "hello"},
        "ownerReferences": [{"apiVersion": "sandrun.dev/v1alpha1", "kind": "Execution", "name": "hello",
            "uid": e.metadata.uid.clone().unwrap()}]}}))
    .unwrap()
}

fn inputs_path(e: &Execution) -> String {
    format!("/api/v1{NS}/configmaps/{}", inputs_name("hello", e.metadata.uid.as_deref()))
}

#[tokio::test]
async fn a_new_run_gets_its_policy_inputs_job_and_status_in_that_order() {
    let e = execution(|_| {});
    let script = vec![
        expect("PATCH", format!("/apis/networking.k8s.io/v1{NS}/networkpolicies/sandrun-deny-all"), 200, None),
        expect("PATCH", inputs_path(&e), 200, None),
        expect("PATCH", JOB, 200, None),
        expect("PATCH", format!("{EXECUTION}/status"), 200, as_json(&e)),
    ];
    let h = harness(script, vec![], None);
    let action = h.reconcile(e.clone()).await.unwrap();
    assert!(action.eq(&Action::requeue(Duration::from_secs(300))), "back by the in-flight resync: {action:?}");
    let (seen, events) = h.seen().await;
    for apply in &seen[..3] {
        assert!(apply.query.contains("fieldManager=sandrun-operator") && apply.query.contains("force=true"));
    }
    assert_eq!(seen[2].body["spec"]["template"]["spec"]["runtimeClassName"], "runsc");
    let status = &seen[3];
    assert_eq!(status.body["metadata"]["resourceVersion"], "41", "written on the version read");
    assert_eq!(status.body["status"]["jobName"], "sandrun-hello");
    assert_eq!(status.body["status"]["phase"], "Pending");
    assert_eq!(events, ["JobCreated"]);
}

#[tokio::test]
async fn a_policy_already_in_place_is_not_applied_again() {
    let e = execution(|_| {});
    let script = vec![
        expect("PATCH", inputs_path(&e), 200, None),
        expect("PATCH", JOB, 200, None),
        expect("PATCH", format!("{EXECUTION}/status"), 200, as_json(&e)),
    ];
    let h = harness(script, vec![], Some(objects::deny_all_network_policy("team-a")));
    h.reconcile(e).await.unwrap();
    assert_eq!(h.seen().await.0.len(), 3);
}

#[tokio::test]
async fn a_job_the_api_server_refuses_fails_the_run_as_an_invalid_spec() {
    let e = execution(|_| {});
    let script = vec![
        expect("PATCH", inputs_path(&e), 200, None),
        expect("PATCH", JOB, 422, api_error(422, "Invalid", "spec.template.spec: Invalid value")),
        expect("PATCH", format!("{EXECUTION}/status"), 200, as_json(&e)),
    ];
    let h = harness(script, vec![], Some(objects::deny_all_network_policy("team-a")));
    assert!(h.reconcile(e).await.unwrap().eq(&Action::await_change()));
    let (seen, events) = h.seen().await;
    let status = &seen[2].body["status"];
    assert_eq!((status["phase"].as_str(), status["reason"].as_str()), (Some("Failed"), Some("InvalidSpec")));
    assert!(status["message"].as_str().unwrap().starts_with("the API server rejected the Job: spec.template.spec"));
    assert_eq!(events, ["InvalidSpec"]);
}

#[tokio::test]
async fn inputs_that_fail_to_apply_take_the_new_job_with_them() {
    let e = execution(|_| {});
    let script = vec![
        expect("PATCH", inputs_path(&e), 500, api_error(500, "InternalError", "etcd timed out")),
        expect("PATCH", JOB, 200, None),
        expect("DELETE", JOB, 200, deleted()),
    ];
    let h = harness(script, vec![], Some(objects::deny_all_network_policy("team-a")));
    let error = h.reconcile(e).await.unwrap_err();
    assert!(matches!(error, Error::Apply { kind: "ConfigMap", .. }), "{error}");
    let (seen, events) = h.seen().await;
    assert_eq!(seen[2].body["preconditions"]["uid"], "made-uid", "only the Job just made");
    assert!(events.is_empty());
}

#[tokio::test]
async fn a_stale_status_write_is_retried_at_once() {
    let e = execution(|e| {
        e.status = Some(ExecutionStatus { job_name: Some("sandrun-hello".into()), ..Default::default() })
    });
    let script = vec![expect("PATCH", format!("{EXECUTION}/status"), 409, api_error(409, "Conflict", "changed"))];
    let h = harness(script, vec![our_job(&e)], None);
    let error = h.reconcile(e.clone()).await.unwrap_err();
    assert!(matches!(error, Error::WriteStatus { .. }));
    let action = error_policy(Arc::new(e), &error, h.ctx.clone());
    assert!(action.eq(&Action::requeue(Duration::from_millis(500))));
    h.seen().await;
}

#[tokio::test]
async fn a_status_refused_for_its_size_is_written_again_without_output() {
    let e = execution(|e| {
        e.status = Some(ExecutionStatus { job_name: Some("sandrun-hello".into()), ..Default::default() })
    });
    let script = vec![
        expect(
            "PATCH",
            format!("{EXECUTION}/status"),
            500,
            api_error(500, "InternalError", "etcdserver: request is too large"),
        ),
        expect("PATCH", format!("{EXECUTION}/status"), 200, as_json(&e)),
    ];
    let h = harness(script, vec![our_job(&e)], None);
    h.ctx.stores.pods.apply(&watcher::Event::Apply(finished_pod(None)));
    h.reconcile(e).await.unwrap();
    let (seen, _) = h.seen().await;
    assert_eq!(seen[0].body["status"]["stdout"], "hi\n");
    let second = &seen[1].body["status"];
    assert_eq!((second["phase"].as_str(), second["stdout"].as_str()), (Some("Succeeded"), Some("")));
    assert_eq!(second["stdoutTruncated"], true);
}

fn hello_frame() -> String {
    let result = sandrun_runner::RunResult { exit_code: Some(0), stdout: "hi\n".into(), ..Default::default() };
    result.to_frame()
}

/// A run container that exited 0 with `message` as its termination
/// message (by default its frame).
fn finished_pod(message: Option<&str>) -> crate::store::PodView {
    let message = message.map_or_else(hello_frame, str::to_owned);
    our_pod(json!({"phase": "Succeeded", "containerStatuses": [{"name": "run", "state": {"terminated": {
        "exitCode": 0, "message": message,
        "startedAt": "2027-01-15T08:00:00Z", "finishedAt": "2027-01-15T08:00:01Z"}}}]}))
}

/// The pod of this run's Job (uid job-1), with `status`.
fn our_pod(status: Value) -> crate::store::PodView {
    serde_json::from_value(json!({"metadata": {"name": "sandrun-hello-x1", "namespace": "team-a",
            "creationTimestamp": "2027-01-15T08:00:00Z",
            "labels": {"sandrun.dev/execution": "hello", "batch.kubernetes.io/controller-uid": "job-1"}},
        "status": status}))
    .unwrap()
}

#[tokio::test]
async fn a_cancel_deletes_the_job_by_uid_then_writes_the_verdict() {
    let e = execution(|e| {
        e.status = Some(ExecutionStatus {
            phase: Phase::Running,
            job_name: Some("sandrun-hello".into()),
            ..Default::default()
        });
        e.metadata.annotations = Some([(sandrun_crds::CANCEL_ANNOTATION.to_owned(), "true".to_owned())].into());
    });
    let script =
        vec![expect("DELETE", JOB, 200, deleted()), expect("PATCH", format!("{EXECUTION}/status"), 200, as_json(&e))];
    let h = harness(script, vec![our_job(&e)], None);
    h.reconcile(e).await.unwrap();
    let (seen, events) = h.seen().await;
    assert_eq!(seen[0].body["preconditions"]["uid"], "job-1");
    assert_eq!(seen[0].body["propagationPolicy"], "Background");
    assert_eq!(seen[1].body["status"]["phase"], "Cancelled");
    assert_eq!(events, ["Cancelled"]);
}

#[tokio::test]
async fn a_cancel_whose_job_is_already_gone_still_writes_the_verdict() {
    let e = execution(|e| {
        e.metadata.annotations = Some([(sandrun_crds::CANCEL_ANNOTATION.to_owned(), "true".to_owned())].into());
    });
    let script = vec![
        expect("DELETE", JOB, 404, api_error(404, "NotFound", "jobs.batch \"sandrun-hello\" not found")),
        expect("PATCH", format!("{EXECUTION}/status"), 200, as_json(&e)),
    ];
    let h = harness(script, vec![], None);
    h.reconcile(e).await.unwrap();
    let (seen, _) = h.seen().await;
    assert!(seen[0].body["preconditions"]["uid"].is_null(), "no uid known: by name");
}

#[tokio::test]
async fn a_failed_job_delete_is_an_error_and_writes_nothing() {
    let e = execution(|e| {
        e.metadata.annotations = Some([(sandrun_crds::CANCEL_ANNOTATION.to_owned(), "true".to_owned())].into());
    });
    let script = vec![expect("DELETE", JOB, 503, api_error(503, "ServiceUnavailable", "try later"))];
    let h = harness(script, vec![], None);
    let error = h.reconcile(e.clone()).await.unwrap_err();
    assert!(matches!(error, Error::Delete { kind: "Job", .. }));
    assert!(error_policy(Arc::new(e), &error, h.ctx.clone()).eq(&Action::requeue(Duration::from_secs(5))));
    h.seen().await;
}

/// `Action` keeps its delay private; its Debug form shows it.
fn requeue_after(action: &Action) -> Option<Duration> {
    let shown = format!("{action:?}");
    let seconds = shown.split("Some(").nth(1)?.split("s)").next()?;
    Some(Duration::from_secs_f64(seconds.parse().ok()?))
}

fn finished_ago(seconds: i64, ttl: u32) -> Execution {
    execution(|e| {
        e.spec.ttl_seconds_after_finished = Some(ttl);
        let finished = Time(Timestamp::now() - SignedDuration::from_secs(seconds));
        e.status =
            Some(ExecutionStatus { phase: Phase::Succeeded, completion_time: Some(finished), ..Default::default() });
    })
}

#[tokio::test]
async fn an_expired_execution_is_deleted_by_uid() {
    let h = harness(vec![expect("DELETE", EXECUTION, 200, deleted())], vec![], None);
    assert!(h.reconcile(finished_ago(120, 60)).await.unwrap().eq(&Action::await_change()));
    let (seen, _) = h.seen().await;
    assert_eq!(seen[0].body["preconditions"]["uid"], "uid-1", "never a new Execution that took its name");
}

#[tokio::test]
async fn an_execution_not_yet_expired_sends_nothing_and_comes_back_in_time() {
    let h = harness(vec![], vec![], None);
    let action = h.reconcile(finished_ago(10, 60)).await.unwrap();
    let after = requeue_after(&action).expect("a requeue");
    assert!(after > Duration::from_secs(48) && after <= Duration::from_secs(50), "{action:?}");
    assert!(h.seen().await.0.is_empty());
}

#[tokio::test]
async fn a_job_missing_from_the_store_is_asked_for_before_calling_it_deleted() {
    let e = execution(|e| {
        e.status = Some(ExecutionStatus { job_name: Some("sandrun-hello".into()), ..Default::default() })
    });
    let script = vec![
        expect("GET", JOB, 404, api_error(404, "NotFound", "jobs.batch \"sandrun-hello\" not found")),
        expect("PATCH", format!("{EXECUTION}/status"), 200, as_json(&e)),
    ];
    let h = harness(script, vec![], None);
    h.reconcile(e).await.unwrap();
    let (seen, events) = h.seen().await;
    assert_eq!(seen[1].body["status"]["reason"], "JobDeleted");
    assert_eq!(events, ["JobDeleted"]);
}

const FRAME_IN_LOG: &str = sandrun_runner::protocol::FRAME_IN_LOG;

fn cancelled(e: &mut Execution) {
    e.metadata.annotations = Some([(sandrun_crds::CANCEL_ANNOTATION.to_owned(), "true".to_owned())].into());
}

fn made_earlier(e: &mut Execution, phase: Phase) {
    e.status = Some(ExecutionStatus { phase, job_name: Some("sandrun-hello".into()), ..Default::default() });
}

#[tokio::test]
async fn a_cancel_reads_nothing_of_a_finished_pod_before_it_acts() {
    let e = execution(|e| {
        made_earlier(e, Phase::Running);
        cancelled(e);
    });
    let script =
        vec![expect("DELETE", JOB, 200, deleted()), expect("PATCH", format!("{EXECUTION}/status"), 200, as_json(&e))];
    let h = harness(script, vec![our_job(&e)], None);
    h.ctx.stores.pods.apply(&watcher::Event::Apply(finished_pod(Some(FRAME_IN_LOG))));
    h.reconcile(e).await.unwrap();
    let (seen, _) = h.seen().await;
    assert_eq!(seen[1].body["status"]["phase"], "Cancelled", "no log read, no result taken");
}

#[tokio::test]
async fn an_invalid_spec_is_refused_without_reading_anything_first() {
    let e = execution(|e| {
        made_earlier(e, Phase::Running);
        e.spec.limits.memory = Some("lots".into());
    });
    let h = harness(vec![expect("PATCH", format!("{EXECUTION}/status"), 200, as_json(&e))], vec![], None);
    h.reconcile(e).await.unwrap();
    let (seen, events) = h.seen().await;
    assert_eq!(seen[0].body["status"]["reason"], "InvalidSpec");
    assert_eq!(events, ["InvalidSpec"]);
}

#[tokio::test]
async fn a_policy_the_api_server_refuses_fails_the_run_as_an_invalid_spec() {
    let e = execution(|_| {});
    let policy = format!("/apis/networking.k8s.io/v1{NS}/networkpolicies/sandrun-deny-all");
    let script = vec![
        expect("PATCH", policy, 422, api_error(422, "Invalid", "denied by a ValidatingAdmissionPolicy")),
        expect("PATCH", format!("{EXECUTION}/status"), 200, as_json(&e)),
    ];
    let h = harness(script, vec![], None);
    assert!(h.reconcile(e).await.unwrap().eq(&Action::await_change()));
    let (seen, _) = h.seen().await;
    let message = seen[1].body["status"]["message"].as_str().unwrap().to_owned();
    assert!(message.starts_with("the API server rejected the NetworkPolicy: denied"), "{message}");
}

#[tokio::test]
async fn refused_inputs_take_the_new_job_with_them_and_fail_the_run() {
    let e = execution(|_| {});
    let script = vec![
        expect("PATCH", inputs_path(&e), 422, api_error(422, "Invalid", "data: Too long")),
        expect("PATCH", JOB, 200, None),
        expect("DELETE", JOB, 200, deleted()),
        expect("PATCH", format!("{EXECUTION}/status"), 200, as_json(&e)),
    ];
    let h = harness(script, vec![], Some(objects::deny_all_network_policy("team-a")));
    h.reconcile(e).await.unwrap();
    let (seen, events) = h.seen().await;
    assert_eq!(seen[2].body["preconditions"]["uid"], "made-uid");
    assert_eq!(seen[3].body["status"]["reason"], "InvalidSpec");
    assert_eq!(events, ["InvalidSpec"], "no JobCreated for a Job taken back");
}

#[tokio::test]
async fn inputs_deleted_before_the_pod_mounted_them_are_put_back() {
    let e = execution(|e| made_earlier(e, Phase::Pending));
    let pending = our_pod(json!({"phase": "Pending"}));
    let script = vec![
        expect("GET", inputs_path(&e), 404, api_error(404, "NotFound", "configmaps not found")),
        expect("PATCH", inputs_path(&e), 200, None),
        expect("PATCH", format!("{EXECUTION}/status"), 200, as_json(&e)),
    ];
    let h = harness(script, vec![our_job(&e)], None);
    h.ctx.stores.pods.apply(&watcher::Event::Apply(pending));
    h.reconcile(e).await.unwrap();
    let (seen, events) = h.seen().await;
    assert_eq!(seen[1].body["kind"], "ConfigMap");
    assert_eq!(events, ["InputsRestored"]);
}

#[tokio::test]
async fn a_frame_too_large_for_the_termination_message_is_read_from_the_log() {
    let e = execution(|e| made_earlier(e, Phase::Running));
    let log = Some(Value::String(format!("noise\n{}", hello_frame())));
    let script = vec![
        expect("GET", format!("/api/v1{NS}/pods/sandrun-hello-x1/log"), 200, log),
        expect("PATCH", format!("{EXECUTION}/status"), 200, as_json(&e)),
    ];
    let h = harness(script, vec![our_job(&e)], None);
    h.ctx.stores.pods.apply(&watcher::Event::Apply(finished_pod(Some(FRAME_IN_LOG))));
    h.reconcile(e).await.unwrap();
    let (seen, _) = h.seen().await;
    assert!(seen[0].query.contains("container=run"), "{}", seen[0].query);
    assert_eq!(seen[1].body["status"]["stdout"], "hi\n");
    assert_eq!(seen[1].body["status"]["phase"], "Succeeded");
}

#[tokio::test]
async fn a_log_the_kubelet_no_longer_has_is_a_missing_result() {
    let e = execution(|e| made_earlier(e, Phase::Running));
    let script = vec![
        expect("GET", format!("/api/v1{NS}/pods/sandrun-hello-x1/log"), 404, api_error(404, "NotFound", "gone")),
        expect("PATCH", format!("{EXECUTION}/status"), 200, as_json(&e)),
    ];
    let h = harness(script, vec![our_job(&e)], None);
    h.ctx.stores.pods.apply(&watcher::Event::Apply(finished_pod(Some(FRAME_IN_LOG))));
    h.reconcile(e).await.unwrap();
    assert_eq!(h.seen().await.0[1].body["status"]["reason"], "ResultMissing");
}

#[tokio::test]
async fn an_overdue_run_gets_its_verdict_before_its_job_goes() {
    let started = Time(Timestamp::now() - SignedDuration::from_secs(600));
    let e = execution(|e| {
        made_earlier(e, Phase::Running);
        e.status.as_mut().unwrap().start_time = Some(started.clone());
    });
    let running = our_pod(
        json!({"phase": "Running", "containerStatuses": [{"name": "run", "state": {"running": {"startedAt": started}}}]}),
    );
    let script =
        vec![expect("PATCH", format!("{EXECUTION}/status"), 200, as_json(&e)), expect("DELETE", JOB, 200, deleted())];
    let h = harness(script, vec![our_job(&e)], None);
    h.ctx.stores.pods.apply(&watcher::Event::Apply(running));
    h.reconcile(e).await.unwrap();
    let (seen, _) = h.seen().await;
    assert_eq!(seen[0].body["status"]["reason"], "ResultOverdue");
    assert_eq!(seen[1].body["preconditions"]["uid"], "job-1");
}

#[tokio::test]
async fn a_job_in_the_way_sends_nothing_and_looks_again_soon() {
    let e = execution(|_| {});
    let mut foreign = our_job(&e);
    foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "earlier-uid".into();
    let h = harness(vec![], vec![foreign], None);
    assert!(h.reconcile(e).await.unwrap().eq(&Action::requeue(Duration::from_secs(2))));
    assert!(h.seen().await.0.is_empty());
}

#[tokio::test]
async fn a_stale_write_of_a_result_is_not_retried_without_its_output() {
    let e = execution(|e| made_earlier(e, Phase::Running));
    let script = vec![expect("PATCH", format!("{EXECUTION}/status"), 409, api_error(409, "Conflict", "changed"))];
    let h = harness(script, vec![our_job(&e)], None);
    h.ctx.stores.pods.apply(&watcher::Event::Apply(finished_pod(None)));
    assert!(matches!(h.reconcile(e).await.unwrap_err(), Error::WriteStatus { .. }));
    let (seen, _) = h.seen().await;
    assert_eq!(seen[0].body["status"]["stdout"], "hi\n", "the one write carried the output");
}

const WARM_POD: &str = "/api/v1/namespaces/team-a/pods/sandrun-warm-py-abc-x1";
const WARM_JOB: &str = "/apis/batch/v1/namespaces/team-a/jobs/sandrun-warm-py-abc";

/// A python pool in team-a with one warm pod, waiting, at version 7.
fn python_pool() -> (SandboxPool, Vec<PodView>) {
    let pool: SandboxPool = serde_json::from_value(json!({
        "apiVersion": "sandrun.dev/v1alpha1", "kind": "SandboxPool",
        "metadata": {"name": "py", "namespace": "team-a", "uid": "pool-1"},
        "spec": {"size": 1, "language": "python"}
    }))
    .unwrap();
    let digest = Profile::of(&pool.spec, &OperatorConfig::default()).unwrap().digest();
    let pod = serde_json::from_value(json!({
        "metadata": {"name": "sandrun-warm-py-abc-x1", "namespace": "team-a", "resourceVersion": "7",
            "labels": {"sandrun.dev/pool": "py", "sandrun.dev/profile": digest, "job-name": "sandrun-warm-py-abc",
                "batch.kubernetes.io/controller-uid": "job-9", "sandrun.dev/role": "execution"}},
        "status": {"phase": "Running", "containerStatuses": [{"name": "run", "state": {"running": {}}}]}
    }))
    .unwrap();
    (pool, vec![pod])
}

#[tokio::test]
async fn a_run_that_fits_a_pool_claims_its_pod_on_its_version_then_writes_status_then_adopts_the_job() {
    let e = execution(|_| {});
    let script = vec![
        expect("PATCH", WARM_POD, 200, None),
        expect("PATCH", format!("{EXECUTION}/status"), 200, as_json(&e)),
        expect("PATCH", WARM_JOB, 200, None),
    ];
    let h = harness_with_pool(script, vec![], None, Some(python_pool()));
    h.reconcile(e).await.unwrap();
    let (seen, events) = h.seen().await;
    let claim = &seen[0].body["metadata"];
    assert_eq!(claim["resourceVersion"], "7", "the claim is a compare-and-swap on the version seen");
    assert_eq!(claim["labels"]["sandrun.dev/claimed-by"], "uid-1");
    let adopted = &seen[2].body["metadata"];
    assert_eq!(adopted["ownerReferences"][0]["uid"], "uid-1", "the run owns its Job from now on");
    let status = &seen[1].body;
    assert_eq!(status["metadata"]["resourceVersion"], "41", "bound on the version read: one pod per run");
    assert_eq!(status["status"]["startMode"], "Warm");
    assert_eq!(status["status"]["podName"], "sandrun-warm-py-abc-x1");
    assert_eq!(status["status"]["jobName"], "sandrun-warm-py-abc");
    assert_eq!(events, ["WarmStart"]);
}

#[tokio::test]
async fn a_claim_lost_to_another_run_starts_this_one_cold() {
    let e = execution(|_| {});
    let script = vec![
        expect("PATCH", WARM_POD, 409, api_error(409, "Conflict", "the object has been modified")),
        expect("PATCH", format!("/apis/networking.k8s.io/v1{NS}/networkpolicies/sandrun-deny-all"), 200, None),
        expect("PATCH", inputs_path(&e), 200, None),
        expect("PATCH", JOB, 200, None),
        expect("PATCH", format!("{EXECUTION}/status"), 200, as_json(&e)),
    ];
    let h = harness_with_pool(script, vec![], None, Some(python_pool()));
    h.reconcile(e).await.unwrap();
    let (seen, _) = h.seen().await;
    assert_eq!(seen[4].body["status"]["startMode"], "Cold");
}

#[tokio::test]
async fn a_status_that_cannot_be_written_gives_the_claimed_job_up() {
    let e = execution(|_| {});
    let script = vec![
        expect("PATCH", WARM_POD, 200, None),
        expect("PATCH", format!("{EXECUTION}/status"), 409, api_error(409, "Conflict", "the object has been modified")),
        expect("DELETE", WARM_JOB, 200, deleted()),
    ];
    let h = harness_with_pool(script, vec![], None, Some(python_pool()));
    assert!(h.reconcile(e).await.is_err(), "another reconcile bound it: this one fails and looks again");
    let (seen, _) = h.seen().await;
    assert_eq!(seen[2].body["preconditions"]["uid"], "job-9", "only the Job claimed, never a successor");
}
