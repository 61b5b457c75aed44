//! `decide`, table-tested: one row per state a reconcile can find a run in.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::runtime::controller::Action;
use sandrun_crds::{Execution, ExecutionStatus, Phase, StartMode};
use sandrun_runner::RunResult;
use serde_json::json;

use super::decide::{decide, Facts, Step, Then, Warm};
use crate::config::OperatorConfig;
use crate::delivery;
use crate::objects;
use crate::status::{self, Frame, Observed};
use crate::store::{JobRecord, JobSlot, PodRecord, PodView, WarmPod};

fn now() -> Time {
    Time(Timestamp::from_second(1_800_000_000).unwrap())
}

fn ago(seconds: i64) -> Time {
    Time(now().0 - SignedDuration::from_secs(seconds))
}

/// A Python hello world with a 10 s timeout, created 5 s ago.
fn execution(status: Option<ExecutionStatus>) -> Execution {
    let mut e: Execution = serde_json::from_value(json!({
        "apiVersion": "sandrun.dev/v1alpha1", "kind": "Execution",
        "metadata": {"name": "hello", "namespace": "team-a", "uid": "uid-1", "generation": 1},
        "spec": {"language": "python", "source": {"files": [{"path": "main.py", "content": "print(1)"}]},
            "limits": {"timeoutSeconds": 10}}
    }))
    .unwrap();
    e.metadata.creation_timestamp = Some(ago(5));
    e.status = status;
    e
}

fn status(phase: Phase, f: impl FnOnce(&mut ExecutionStatus)) -> Option<ExecutionStatus> {
    let mut s = ExecutionStatus { phase, ..Default::default() };
    f(&mut s);
    Some(s)
}

fn made(s: &mut ExecutionStatus) {
    s.job_name = Some("sandrun-hello".into());
}

fn finished(s: &mut ExecutionStatus) {
    s.reason = Some("Completed".into());
    s.completion_time = Some(ago(30));
}

fn cancel(e: &mut Execution, status: Option<ExecutionStatus>) {
    e.status = status;
    e.metadata.annotations = Some([(sandrun_crds::CANCEL_ANNOTATION.to_owned(), "true".to_owned())].into());
}

fn job(owner: &str) -> Option<JobSlot> {
    let record = JobRecord {
        name: "sandrun-hello".into(),
        uid: Some("job-1".into()),
        owner_uids: vec![owner.into()],
        claimed_by: None,
        status: None,
    };
    Some(JobSlot::Held(Arc::new(record)))
}

fn pod(status: serde_json::Value) -> Option<Arc<PodRecord>> {
    let view: PodView =
        serde_json::from_value(json!({"metadata": {"name": "sandrun-hello-x1"}, "status": status})).unwrap();
    Some(Arc::new(PodRecord::from(&view)))
}

fn running_since(seconds: i64) -> Option<Arc<PodRecord>> {
    let started = serde_json::to_value(ago(seconds)).unwrap();
    pod(
        json!({"phase": "Running", "containerStatuses": [{"name": "run", "state": {"running": {"startedAt": started}}}]}),
    )
}

fn exited(code: i32) -> Option<Arc<PodRecord>> {
    pod(json!({"phase": "Succeeded", "containerStatuses": [{"name": "run", "state": {"terminated": {
        "exitCode": code, "startedAt": "2027-01-15T08:00:00Z", "finishedAt": "2027-01-15T08:00:01Z"}}}]}))
}

/// Bound a second ago to warm pod `sandrun-hello-x1` (the Job keeps the
/// table's usual name).
fn warm_status() -> Option<ExecutionStatus> {
    let bound = status::bound(&execution(None), "sandrun-hello", "sandrun-hello-x1", "py", &ago(1));
    assert_eq!(bound.start_mode, Some(StartMode::Warm));
    Some(bound)
}

fn claimed_job() -> Option<JobSlot> {
    let record = JobRecord {
        name: "sandrun-warm-py-abc".into(),
        uid: Some("job-9".into()),
        owner_uids: vec!["uid-1".into()],
        claimed_by: Some("uid-1".into()),
        status: None,
    };
    Some(JobSlot::Held(Arc::new(record)))
}

fn warm_pod() -> Option<Warm> {
    let pod = WarmPod {
        name: "sandrun-warm-py-abc-x1".into(),
        resource_version: "7".into(),
        profile: "p1".into(),
        job_name: "sandrun-warm-py-abc".into(),
        job_uid: "job-9".into(),
    };
    Some(Warm { pool: "py".into(), pod })
}

fn streamed(exit_code: i32) -> Option<delivery::State> {
    let result = RunResult { exit_code: Some(exit_code), stdout: "1\n".into(), ..Default::default() };
    Some(delivery::State::Done(delivery::Outcome::Finished {
        result: Box::new(result),
        accepted: None,
        finished: now(),
    }))
}

fn undelivered_pod() -> Option<Arc<PodRecord>> {
    pod(json!({"phase": "Failed", "containerStatuses": [{"name": "run", "state": {"terminated": {
        "exitCode": 75, "message": "SANDRUN-UNDELIVERED stdin closed before a whole program line"}}}]}))
}

fn pulling() -> Option<Arc<PodRecord>> {
    pod(json!({"phase": "Pending", "containerStatuses": [{"name": "run", "state": {"waiting": {
        "reason": "ErrImageNeverPull", "message": "image not present"}}}]}))
}

fn hello_frame() -> Option<Frame> {
    Some(Frame::Parsed(RunResult { exit_code: Some(0), stdout: "1\n".into(), ..Default::default() }))
}

fn policy_in_place() -> Option<Arc<NetworkPolicy>> {
    Some(Arc::new(objects::deny_all_network_policy("team-a")))
}

/// A step as the table reads it.
fn show(step: &Step) -> String {
    match step {
        Step::ForgetChildren => "forget children".into(),
        Step::CreateChildren(children) => format!(
            "create {}{}",
            children.job.metadata.name.as_deref().unwrap_or_default(),
            if children.policy.is_some() { " with policy" } else { "" }
        ),
        Step::ApplyInputs(_) => "apply inputs".into(),
        Step::WriteStatus(s) => format!("status {:?}/{}", s.phase, s.reason.as_deref().unwrap_or_default()),
        Step::DeleteJob(job) => format!("delete job {} uid={}", job.name, job.uid.as_deref().unwrap_or("-")),
        Step::DeleteExecution => "delete execution".into(),
        Step::Publish(notice) => format!("event {:?} {}", notice.type_, notice.reason),
        Step::CountFinished(labels) => format!("count {}/{}", labels.phase, labels.reason),
        Step::Bind(bind) => format!("bind {} of {}", bind.warm.pod.name, bind.warm.pool),
        Step::Deliver(delivery) => format!("deliver to {}", delivery.pod),
        Step::CountWarmFallback => "count warm fallback".into(),
        Step::AdoptJob(job) => format!("adopt job {}", job.name),
    }
}

type Case = (&'static str, fn(&mut Execution), fn(&mut Facts), &'static [&'static str], Then);

fn done(action: Action) -> Then {
    Then::Done(action)
}

#[test]
fn table_of_decisions() {
    let await_change = done(Action::await_change());
    let cases: Vec<Case> = vec![
        ("new run: policy and children", |_| {}, |_| {}, &["create sandrun-hello with policy"], Then::DecideAgain),
        (
            "new run, policy in place: children only",
            |_| {},
            |f| f.policy = policy_in_place(),
            &["create sandrun-hello"],
            Then::DecideAgain,
        ),
        (
            "children just made: the status names the Job",
            |_| {},
            |f| f.job = job("uid-1"),
            &["status Pending/JobCreated"],
            done(Action::requeue(Duration::from_secs(300))),
        ),
        (
            "children refused by the API server",
            |_| {},
            |f| f.refused = Some("Job: spec.template: Invalid value".into()),
            &["status Failed/InvalidSpec", "event Warning InvalidSpec", "count Failed/InvalidSpec"],
            await_change.clone(),
        ),
        (
            "a second look with nothing new writes nothing, back when overdue",
            |e| {
                // As the reconcile that made the Job wrote it.
                let Some(JobSlot::Held(made)) = job("uid-1") else { unreachable!() };
                e.status = Some(status::derive(e, &Observed { job: Some(&made), ..Default::default() }, &now()));
            },
            |f| f.job = job("uid-1"),
            &[],
            done(Action::requeue(Duration::from_secs(300))),
        ),
        (
            "inputs deleted before the pod mounted them",
            |e| e.status = status(Phase::Pending, made),
            |f| {
                f.job = job("uid-1");
                f.pod = pod(json!({"phase": "Pending"}));
                f.inputs_missing = true;
            },
            &["apply inputs", "event Warning InputsRestored", "status Pending/JobCreated"],
            done(Action::requeue(Duration::from_secs(300))),
        ),
        (
            "started: running, back when the result is overdue",
            |e| e.status = status(Phase::Pending, made),
            |f| {
                f.job = job("uid-1");
                f.pod = running_since(3);
            },
            &["status Running/Started", "event Normal Started"],
            done(Action::requeue(Duration::from_secs(10 + 120 - 3))),
        ),
        (
            "result overdue: the verdict, then the Job goes",
            |e| {
                e.status = status(Phase::Running, |s| {
                    made(s);
                    s.start_time = Some(ago(200));
                });
            },
            |f| {
                f.job = job("uid-1");
                f.pod = running_since(200);
            },
            &[
                "status Failed/ResultOverdue",
                "event Warning ResultOverdue",
                "count Failed/ResultOverdue",
                "delete job sandrun-hello uid=job-1",
            ],
            await_change.clone(),
        ),
        (
            "finished with a frame",
            |e| e.status = status(Phase::Running, made),
            |f| {
                f.job = job("uid-1");
                f.pod = exited(0);
                f.frame = hello_frame();
            },
            &["status Succeeded/Completed", "event Normal Completed", "count Succeeded/Completed"],
            await_change.clone(),
        ),
        (
            "runner exited non-zero: no frame read, result missing",
            |e| e.status = status(Phase::Running, made),
            |f| {
                f.job = job("uid-1");
                f.pod = exited(71);
            },
            &["status Failed/ResultMissing", "event Warning ResultMissing", "count Failed/ResultMissing"],
            await_change.clone(),
        ),
        (
            "image that will never come: failed, and the Job goes",
            |e| e.status = status(Phase::Pending, made),
            |f| {
                f.job = job("uid-1");
                f.pod = pulling();
            },
            &[
                "status Failed/ErrImageNeverPull",
                "event Warning ErrImageNeverPull",
                "count Failed/ErrImageNeverPull",
                "delete job sandrun-hello uid=job-1",
            ],
            await_change.clone(),
        ),
        (
            "Job deleted by someone else",
            |e| e.status = status(Phase::Running, made),
            |_| {},
            &["status Failed/JobDeleted", "event Warning JobDeleted", "count Failed/JobDeleted"],
            await_change.clone(),
        ),
        (
            "an earlier same-named run's Job is in the way",
            |_| {},
            |f| f.job = Some(JobSlot::Forgotten),
            &[],
            done(Action::requeue(Duration::from_secs(2))),
        ),
        (
            "a Job it does not own is in the way",
            |_| {},
            |f| f.job = job("someone-else"),
            &[],
            done(Action::requeue(Duration::from_secs(2))),
        ),
        (
            "a Job in the way past the start bound: ended, the Job left alone",
            |_| {},
            |f| {
                f.job = job("someone-else");
                f.now = Time(now().0 + SignedDuration::from_secs(700));
            },
            &["status Failed/StartTimeout", "event Warning StartTimeout", "count Failed/StartTimeout"],
            await_change.clone(),
        ),
        (
            "finished: children forgotten",
            |e| e.status = status(Phase::Succeeded, finished),
            |f| f.job = job("uid-1"),
            &["forget children"],
            await_change.clone(),
        ),
        (
            "finished, TTL not yet passed: back when it has",
            |e| {
                e.status = status(Phase::Succeeded, finished);
                e.spec.ttl_seconds_after_finished = Some(60);
            },
            |_| {},
            &["forget children"],
            done(Action::requeue(Duration::from_secs(30))),
        ),
        (
            "finished, TTL passed: the Execution goes",
            |e| {
                e.status = status(Phase::Succeeded, finished);
                e.spec.ttl_seconds_after_finished = Some(10);
            },
            |_| {},
            &["forget children", "delete execution"],
            await_change.clone(),
        ),
        (
            "cancelled before its Job is seen: deleted by name",
            |e| cancel(e, status(Phase::Pending, made)),
            |_| {},
            &[
                "delete job sandrun-hello uid=-",
                "status Cancelled/Cancelled",
                "event Warning Cancelled",
                "count Cancelled/Cancelled",
            ],
            await_change.clone(),
        ),
        (
            "cancelled while running: its own Job goes, by uid",
            |e| cancel(e, status(Phase::Running, made)),
            |f| f.job = job("uid-1"),
            &[
                "delete job sandrun-hello uid=job-1",
                "status Cancelled/Cancelled",
                "event Warning Cancelled",
                "count Cancelled/Cancelled",
            ],
            await_change.clone(),
        ),
        (
            "cancelled while another run's Job holds the name: that Job stays",
            |e| cancel(e, None),
            |f| f.job = Some(JobSlot::Forgotten),
            &["status Cancelled/Cancelled", "event Warning Cancelled", "count Cancelled/Cancelled"],
            await_change.clone(),
        ),
        (
            "a spec the operator refuses",
            |e| e.spec.limits.memory = Some("lots".into()),
            |_| {},
            &["status Failed/InvalidSpec", "event Warning InvalidSpec", "count Failed/InvalidSpec"],
            await_change.clone(),
        ),
        (
            "a policy changed by hand is applied again",
            |_| {},
            |f| {
                let mut changed = objects::deny_all_network_policy("team-a");
                changed.spec.as_mut().unwrap().policy_types = Some(vec!["Ingress".into()]);
                f.policy = Some(Arc::new(changed));
            },
            &["create sandrun-hello with policy"],
            Then::DecideAgain,
        ),
        (
            "never started within its bound: ended, and its own Job goes",
            |e| e.status = status(Phase::Pending, made),
            |f| {
                f.job = job("uid-1");
                f.pod = pod(json!({"phase": "Pending"}));
                f.now = Time(now().0 + SignedDuration::from_secs(700));
            },
            &[
                "status Failed/StartTimeout",
                "event Warning StartTimeout",
                "count Failed/StartTimeout",
                "delete job sandrun-hello uid=job-1",
            ],
            await_change.clone(),
        ),
        (
            "overdue while its inputs were gone: inputs back first, then the verdict",
            |e| e.status = status(Phase::Pending, made),
            |f| {
                f.job = job("uid-1");
                f.pod = pod(json!({"phase": "Pending"}));
                f.inputs_missing = true;
                f.now = Time(now().0 + SignedDuration::from_secs(700));
            },
            &[
                "apply inputs",
                "event Warning InputsRestored",
                "status Failed/StartTimeout",
                "event Warning StartTimeout",
                "count Failed/StartTimeout",
                "delete job sandrun-hello uid=job-1",
            ],
            await_change.clone(),
        ),
        (
            "a frame that does not parse: no result",
            |e| e.status = status(Phase::Running, made),
            |f| {
                f.job = job("uid-1");
                f.pod = exited(0);
                f.frame = Some(Frame::Unreadable("expected value".into()));
            },
            &["status Failed/ResultMissing", "event Warning ResultMissing", "count Failed/ResultMissing"],
            await_change.clone(),
        ),
        (
            "cancelled while a Job it does not own holds the name: that Job stays",
            |e| cancel(e, None),
            |f| f.job = job("someone-else"),
            &["status Cancelled/Cancelled", "event Warning Cancelled", "count Cancelled/Cancelled"],
            await_change.clone(),
        ),
        (
            "a cancel beats an invalid spec",
            |e| {
                cancel(e, None);
                e.spec.limits.memory = Some("lots".into());
            },
            |_| {},
            &[
                "delete job sandrun-hello uid=-",
                "status Cancelled/Cancelled",
                "event Warning Cancelled",
                "count Cancelled/Cancelled",
            ],
            await_change.clone(),
        ),
        (
            "a finished run beats a cancel",
            |e| cancel(e, status(Phase::Succeeded, finished)),
            |_| {},
            &["forget children"],
            await_change.clone(),
        ),
        (
            "deleting: nothing to do",
            |e| {
                e.status = status(Phase::Running, made);
                e.metadata.deletion_timestamp = Some(now());
            },
            |_| {},
            &[],
            await_change.clone(),
        ),
        (
            "new run with a warm pod: bind it",
            |_| {},
            |f| f.warm = warm_pod(),
            &["bind sandrun-warm-py-abc-x1 of py"],
            Then::DecideAgain,
        ),
        (
            "bound by this operator, the status read from before: wait, bind nothing, make nothing",
            |_| {},
            |f| {
                f.warm = warm_pod();
                f.delivery = Some(delivery::State::Binding);
            },
            &[],
            done(Action::requeue(Duration::from_millis(200))),
        ),
        (
            "bound by another leader (its Job claimed), the status read from before: wait",
            |_| {},
            |f| f.job = claimed_job(),
            &[],
            done(Action::requeue(Duration::from_millis(200))),
        ),
        (
            "warm run, the runner's frame on the stream: the result",
            |e| e.status = warm_status(),
            |f| {
                f.job = job("uid-1");
                f.pod = running_since(600);
                f.delivery = streamed(0);
            },
            &["status Succeeded/Completed", "event Normal Completed", "count Succeeded/Completed"],
            await_change.clone(),
        ),
        (
            "warm run, the attach never opened: cold start",
            |e| e.status = warm_status(),
            |f| {
                f.job = job("uid-1");
                f.pod = running_since(600);
                f.delivery = Some(delivery::State::Done(delivery::Outcome::NotSent("pod gone".into())));
            },
            &[
                "status Pending/WarmStartFailed",
                "delete job sandrun-hello uid=job-1",
                "event Warning WarmStartFailed",
                "count warm fallback",
            ],
            await_change.clone(),
        ),
        (
            "warm run, the runner took no program: cold start",
            |e| e.status = warm_status(),
            |f| {
                f.job = job("uid-1");
                f.pod = undelivered_pod();
                f.delivery = Some(delivery::State::Done(delivery::Outcome::Lost("stream ended".into())));
            },
            &[
                "status Pending/WarmStartFailed",
                "delete job sandrun-hello uid=job-1",
                "event Warning WarmStartFailed",
                "count warm fallback",
            ],
            await_change.clone(),
        ),
        (
            "warm run after a failover, runner waiting: deliver again",
            |e| e.status = warm_status(),
            |f| {
                f.job = job("uid-1");
                f.pod = running_since(600);
            },
            &["deliver to sandrun-hello-x1"],
            done(Action::requeue(Duration::from_secs(300))),
        ),
        (
            "warm run whose Job was not adopted yet: adopt it, and nothing else",
            |e| e.status = warm_status(),
            |f| {
                f.job = job("pool-uid");
                f.pod = running_since(600);
                f.delivery = Some(delivery::State::InFlight);
            },
            &["adopt job sandrun-hello"],
            done(Action::requeue(Duration::from_secs(10 + 120 - 1))),
        ),
        (
            "warm run in flight: nothing to write, back when overdue from the bind (not the pod's start)",
            |e| e.status = warm_status(),
            |f| {
                f.job = job("uid-1");
                f.pod = running_since(600);
                f.delivery = Some(delivery::State::InFlight);
            },
            &[],
            done(Action::requeue(Duration::from_secs(10 + 120 - 1))),
        ),
        (
            "warm run, a frame that says exit 7 and a killed runner: not the stream's word",
            |e| e.status = warm_status(),
            |f| {
                f.job = job("uid-1");
                f.pod = exited(137);
                f.frame = Some(Frame::Missing);
                f.delivery = Some(delivery::State::Done(delivery::Outcome::Lost("stream ended".into())));
            },
            &["status Failed/ResultMissing", "event Warning ResultMissing", "count Failed/ResultMissing"],
            await_change.clone(),
        ),
    ];
    let mut wrong = Vec::new();
    for (name, change, setup, steps, then) in cases {
        let mut e = execution(None);
        change(&mut e);
        let mut facts = Facts::of(&e, "team-a", now());
        setup(&mut facts);
        let decision = decide(&facts, &OperatorConfig::default());
        let shown: Vec<String> = decision.steps.iter().map(show).collect();
        if shown != steps || decision.then != then {
            wrong.push(format!(
                "{name}:\n  steps {shown:?}\n  want  {steps:?}\n  then {:?}, want {then:?}",
                decision.then
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn an_overdue_warm_run_still_says_it_started_warm() {
    let mut e = execution(warm_status());
    if let Some(s) = e.status.as_mut() {
        s.start_time = Some(ago(200));
    }
    let mut facts = Facts::of(&e, "team-a", now());
    facts.job = job("uid-1");
    facts.pod = running_since(600);
    facts.delivery = Some(delivery::State::InFlight);
    let decision = decide(&facts, &OperatorConfig::default());
    let written = decision.steps.iter().find_map(|step| match step {
        Step::WriteStatus(status) => Some(status.as_ref().clone()),
        _ => None,
    });
    let written = written.expect("the verdict is written");
    assert_eq!(written.reason.as_deref(), Some("ResultOverdue"));
    assert_eq!(written.start_mode, Some(StartMode::Warm));
    assert_eq!(written.pod_name.as_deref(), Some("sandrun-hello-x1"));
}
