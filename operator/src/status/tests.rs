use super::*;
use crate::store::{JobView, PodView};
use k8s_openapi::jiff::Timestamp;
use sandrun_crds::{ExecutionSpec, Limits};
use serde_json::json;

/// name, pod, frame, expected phase, reason, exit code
type RunCase = (&'static str, PodRecord, Option<Frame>, Phase, &'static str, Option<i32>);
/// name, job, pod, expected phase, reason
type StateCase<'a> = (&'static str, Option<&'a JobRecord>, Option<&'a PodRecord>, Phase, &'static str);

fn now() -> Time {
    Time(Timestamp::from_second(1_800_000_000).unwrap())
}

fn execution() -> Execution {
    let mut e = Execution::new(
        "hello",
        ExecutionSpec {
            limits: Limits { timeout_seconds: Some(2), memory: Some("64Mi".into()), ..Default::default() },
            ..Default::default()
        },
    );
    e.metadata.generation = Some(1);
    e
}

fn job(conditions: serde_json::Value) -> JobRecord {
    let view: JobView =
        serde_json::from_value(json!({"metadata": {"name": "sandrun-hello"}, "status": {"conditions": conditions}}))
            .unwrap();
    JobRecord::from(&view)
}

fn pod(status: serde_json::Value) -> PodRecord {
    let view: PodView =
        serde_json::from_value(json!({"metadata": {"name": "sandrun-hello-x1"}, "status": status})).unwrap();
    PodRecord::from(&view)
}

fn run_terminated(exit_code: i32, reason: &str) -> PodRecord {
    pod(json!({"containerStatuses": [{"name": "run", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": exit_code, "reason": reason,
            "startedAt": "2027-01-15T08:00:00Z", "finishedAt": "2027-01-15T08:00:01Z"}}}]}))
}

fn frame(f: impl FnOnce(&mut RunResult)) -> Option<Frame> {
    let mut r = RunResult {
        exit_code: Some(0),
        duration_millis: 12,
        stdout: "out".into(),
        stderr: "err".into(),
        ..Default::default()
    };
    f(&mut r);
    Some(Frame::Parsed(r))
}

fn derive_with(job: Option<&JobRecord>, pod: Option<&PodRecord>, frame: Option<Frame>) -> ExecutionStatus {
    derive(&execution(), &Observed { job, pod, frame: frame.as_ref(), job_was_created: true }, &now())
}

#[test]
fn table_of_terminated_runs() {
    let j = job(json!([]));
    let cases: Vec<RunCase> = vec![
        ("exit 0", run_terminated(0, "Completed"), frame(|_| {}), Phase::Succeeded, reasons::COMPLETED, Some(0)),
        (
            "exit 3",
            run_terminated(0, "Completed"),
            frame(|r| r.exit_code = Some(3)),
            Phase::Failed,
            reasons::NON_ZERO_EXIT,
            Some(3),
        ),
        (
            "runner deadline",
            run_terminated(0, "Completed"),
            frame(|r| {
                r.exit_code = None;
                r.signal = Some(9);
                r.timed_out = true;
            }),
            Phase::TimedOut,
            reasons::DEADLINE_EXCEEDED,
            Some(137),
        ),
        (
            "cgroup says oom",
            run_terminated(0, "Completed"),
            frame(|r| {
                r.exit_code = None;
                r.signal = Some(9);
                r.oom_killed = Some(true);
            }),
            Phase::Failed,
            reasons::OOM_KILLED,
            Some(137),
        ),
        (
            "sigkill near the limit",
            run_terminated(0, "Completed"),
            frame(|r| {
                r.exit_code = None;
                r.signal = Some(9);
                r.peak_memory_bytes = Some(63 << 20);
            }),
            Phase::Failed,
            reasons::OOM_KILLED,
            Some(137),
        ),
        (
            "sigkill far from the limit",
            run_terminated(0, "Completed"),
            frame(|r| {
                r.exit_code = None;
                r.signal = Some(9);
                r.peak_memory_bytes = Some(8 << 20);
            }),
            Phase::Failed,
            reasons::SIGNALED,
            Some(137),
        ),
        (
            "sigkill, cgroup says no oom",
            run_terminated(0, "Completed"),
            frame(|r| {
                r.exit_code = None;
                r.signal = Some(9);
                r.oom_killed = Some(false);
                r.peak_memory_bytes = Some(63 << 20);
            }),
            Phase::Failed,
            reasons::SIGNALED,
            Some(137),
        ),
        (
            "segfault",
            run_terminated(0, "Completed"),
            frame(|r| {
                r.exit_code = None;
                r.signal = Some(11);
            }),
            Phase::Failed,
            reasons::SIGNALED,
            Some(139),
        ),
        (
            "command not found",
            run_terminated(0, "Completed"),
            frame(|r| {
                r.exit_code = Some(127);
                r.error = Some("could not start".into());
            }),
            Phase::Failed,
            reasons::START_FAILED,
            Some(127),
        ),
        (
            "container oom, no frame",
            run_terminated(137, "OOMKilled"),
            Some(Frame::Missing),
            Phase::Failed,
            reasons::OOM_KILLED,
            Some(137),
        ),
        (
            "runner killed",
            run_terminated(137, "Error"),
            Some(Frame::Missing),
            Phase::Failed,
            reasons::RESULT_MISSING,
            Some(137),
        ),
        (
            "evicted for its disk use",
            {
                let mut p = run_terminated(137, "ContainerStatusUnknown");
                let status = p.status.as_mut().unwrap();
                status.reason = Some("Evicted".into());
                status.message = Some("Usage of EmptyDir volume \"workspace\" exceeds the limit \"256Mi\". ".into());
                p
            },
            Some(Frame::Missing),
            Phase::Failed,
            reasons::EVICTED,
            Some(137),
        ),
        (
            "garbled frame",
            run_terminated(0, "Completed"),
            Some(Frame::Unreadable("eof".into())),
            Phase::Failed,
            reasons::RESULT_MISSING,
            Some(0),
        ),
    ];
    for (name, p, f, phase, reason, exit) in cases {
        let s = derive_with(Some(&j), Some(&p), f);
        assert_eq!((s.phase, s.reason.as_deref(), s.exit_code), (phase, Some(reason), exit), "case {name}");
        assert_eq!(s.condition(condition_types::COMPLETE).unwrap().status, "True", "case {name}");
        assert!(s.completion_time.is_some(), "case {name}");
        assert!(!leaves_stuck_pod(&s), "case {name}: a finished pod needs no cleanup");
    }
}

#[test]
fn a_finished_run_carries_streams_timing_and_names() {
    let j = job(json!([]));
    let s = derive_with(
        Some(&j),
        Some(&run_terminated(0, "Completed")),
        frame(|r| {
            r.stdout_truncated = true;
            r.peak_memory_bytes = Some(1 << 20);
        }),
    );
    assert_eq!((s.stdout.as_deref(), s.stderr.as_deref()), (Some("out"), Some("err")));
    assert!(s.stdout_truncated && !s.stderr_truncated);
    assert_eq!((s.duration_millis, s.peak_memory_bytes), (Some(12), Some(1 << 20)));
    assert_eq!((s.job_name.as_deref(), s.pod_name.as_deref()), (Some("sandrun-hello"), Some("sandrun-hello-x1")));
    assert_eq!(s.start_time.unwrap().0.to_string(), "2027-01-15T08:00:00Z");
    assert_eq!(s.observed_generation, Some(1));
}

#[test]
fn table_of_unfinished_states() {
    let j = job(json!([]));
    let waiting = |container: &str, init: bool, reason: &str| {
        let key = if init { "initContainerStatuses" } else { "containerStatuses" };
        pod(json!({key: [{"name": container, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": reason, "message": "details"}}}]}))
    };
    let running = pod(
        json!({"containerStatuses": [{"name": "run", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
        "state": {"running": {"startedAt": "2027-01-15T08:00:00Z"}}}]}),
    );
    let unschedulable = pod(
        json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available: insufficient memory"}]}),
    );
    let install_failed = pod(
        json!({"initContainerStatuses": [{"name": "install-runner", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 73, "reason": "Error"}}}]}),
    );
    let deadline = job(
        json!([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline"}]),
    );
    let backoff = job(
        json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]),
    );

    let creating = waiting("run", false, "ContainerCreating");
    let bad_image = waiting("run", false, "ErrImageNeverPull");
    let bad_runner = waiting("install-runner", true, "ImagePullBackOff");
    let cases: Vec<StateCase> = vec![
        ("job, no pod yet", Some(&j), None, Phase::Pending, reasons::CREATED),
        ("creating", Some(&j), Some(&creating), Phase::Pending, "ContainerCreating"),
        ("unschedulable", Some(&j), Some(&unschedulable), Phase::Pending, reasons::UNSCHEDULABLE),
        ("running", Some(&j), Some(&running), Phase::Running, reasons::STARTED),
        ("bad image", Some(&j), Some(&bad_image), Phase::Failed, "ErrImageNeverPull"),
        ("bad runner image", Some(&j), Some(&bad_runner), Phase::Failed, "ImagePullBackOff"),
        ("install failed", Some(&j), Some(&install_failed), Phase::Failed, reasons::RUNNER_FAILED),
        ("job deadline before the program started", Some(&deadline), None, Phase::Failed, reasons::START_TIMEOUT),
        ("job failed", Some(&backoff), None, Phase::Failed, reasons::JOB_FAILED),
        ("job deleted", None, None, Phase::Failed, reasons::JOB_DELETED),
    ];
    for (name, job, pod, phase, reason) in cases {
        let s = derive_with(job, pod, None);
        assert_eq!((s.phase, s.reason.as_deref()), (phase, Some(reason)), "case {name}");
        let complete = s.condition(condition_types::COMPLETE).unwrap();
        assert_eq!(complete.status == "True", phase.is_terminal(), "case {name}");
    }
}

#[test]
fn nothing_created_yet_is_pending_and_not_accepted() {
    let s = derive(&execution(), &Observed::default(), &now());
    assert_eq!(s.phase, Phase::Pending);
    assert_eq!(s.condition(condition_types::ACCEPTED).unwrap().status, "Unknown");
}

#[test]
fn an_unchanged_status_compares_equal_so_no_patch_is_sent() {
    let j = job(json!([]));
    let mut e = execution();
    let first = derive(&e, &Observed { job: Some(&j), ..Default::default() }, &now());
    e.status = Some(first.clone());
    let later = Time(Timestamp::from_second(1_800_000_100).unwrap());
    let second = derive(&e, &Observed { job: Some(&j), ..Default::default() }, &later);
    assert_eq!(first, second);
}

#[test]
fn transition_time_moves_only_when_a_condition_flips() {
    let j = job(json!([]));
    let mut e = execution();
    e.status = Some(derive(&e, &Observed { job: Some(&j), ..Default::default() }, &now()));
    let later = Time(Timestamp::from_second(1_800_000_100).unwrap());
    let parsed = frame(|_| {});
    let done = derive(
        &e,
        &Observed {
            job: Some(&j),
            pod: Some(&run_terminated(0, "Completed")),
            frame: parsed.as_ref(),
            job_was_created: true,
        },
        &later,
    );
    assert_eq!(done.condition(condition_types::ACCEPTED).unwrap().last_transition_time, now());
    assert_eq!(done.condition(condition_types::COMPLETE).unwrap().last_transition_time, later);
}

#[test]
fn invalid_spec_is_terminal_and_not_accepted() {
    let s = invalid_spec(&execution(), "no runtime".into(), &now());
    assert_eq!((s.phase, s.reason.as_deref()), (Phase::Failed, Some(reasons::INVALID_SPEC)));
    assert_eq!(s.condition(condition_types::ACCEPTED).unwrap().status, "False");
    assert_eq!(s.condition(condition_types::COMPLETE).unwrap().status, "True");
}

#[test]
fn streams_shrink_to_fit_beside_a_large_spec() {
    let mut s =
        ExecutionStatus { stdout: Some("é".repeat(200_000)), stderr: Some("small".into()), ..Default::default() };
    fit_to_object_limit(&mut s, 1_000_000);
    let stdout = s.stdout.unwrap();
    // What the small stderr leaves of the 300 kB beside the spec.
    assert!(stdout.len() <= 300_000 && stdout.len() > 299_000, "{}", stdout.len());
    assert!(s.stdout_truncated);
    assert_eq!((s.stderr.as_deref(), s.stderr_truncated), (Some("small"), false));
    let mut untouched = ExecutionStatus { stdout: Some("x".repeat(262_144)), ..Default::default() };
    fit_to_object_limit(&mut untouched, 10_000);
    assert!(!untouched.stdout_truncated);
}

#[test]
fn cancelled_is_terminal_and_keeps_what_was_known() {
    let mut e = execution();
    e.status =
        Some(ExecutionStatus { phase: Phase::Running, job_name: Some("sandrun-hello".into()), ..Default::default() });
    let s = cancelled(&e, &now());
    assert_eq!((s.phase, s.reason.as_deref()), (Phase::Cancelled, Some(reasons::CANCELLED)));
    assert_eq!(s.job_name.as_deref(), Some("sandrun-hello"));
    assert_eq!(s.condition(condition_types::COMPLETE).unwrap().status, "True");
    assert!(s.is_terminal());
}

#[test]
fn a_job_deadline_after_the_program_started_is_a_timeout() {
    let deadline =
        job(json!([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "too long"}]));
    let mut e = execution();
    e.status = Some(ExecutionStatus {
        phase: Phase::Running,
        start_time: Some(now()),
        job_name: Some("sandrun-hello".into()),
        ..Default::default()
    });
    let s = derive(&e, &Observed { job: Some(&deadline), job_was_created: true, ..Default::default() }, &now());
    assert_eq!((s.phase, s.reason.as_deref()), (Phase::TimedOut, Some(reasons::DEADLINE_EXCEEDED)));
}

#[test]
fn inputs_are_needed_from_the_pod_until_it_leaves_pending() {
    let cases = [
        (None, false),
        (Some(pod(json!({}))), true),
        (Some(pod(json!({"phase": "Pending"}))), true),
        (Some(pod(json!({"phase": "Running"}))), false),
        (Some(pod(json!({"phase": "Succeeded"}))), false),
        (Some(pod(json!({"phase": "Failed"}))), false),
    ];
    for (pod, want) in cases {
        assert_eq!(awaits_inputs(pod.as_ref()), want, "{:?}", pod.and_then(|p| p.status).and_then(|s| s.phase));
    }
}

#[test]
fn a_new_pod_name_alone_is_not_written() {
    let pending = ExecutionStatus { phase: Phase::Pending, reason: Some("JobCreated".into()), ..Default::default() };
    let named = ExecutionStatus { pod_name: Some("sandrun-x-abcde".into()), ..pending.clone() };
    let running = ExecutionStatus { phase: Phase::Running, reason: Some("Started".into()), ..named.clone() };
    let cases = [
        (&pending, &pending, false),
        (&pending, &named, false),
        (&named, &running, true),
        (&pending, &running, true),
        (&ExecutionStatus::default(), &pending, true),
    ];
    for (previous, next, want) in cases {
        assert_eq!(worth_writing(previous, next), want, "{previous:?} -> {next:?}");
    }
}

#[test]
fn a_frame_in_the_termination_message_is_read_from_the_pod() {
    let result = RunResult { exit_code: Some(3), stdout: "hi\n".into(), ..Default::default() };
    let with_message = |container: &str, message: &str| {
        pod(json!({"containerStatuses": [{"name": container, "image": "i", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": 0, "message": message}}}]}))
    };
    let cases = [
        ("a frame", with_message("run", &result.to_frame()), Some(result.clone())),
        ("the runner's pointer to the log", with_message("run", sandrun_runner::protocol::FRAME_IN_LOG), None),
        ("a frame cut short by the kubelet", with_message("run", &result.to_frame()[..40]), None),
        ("another container's frame", with_message("install-runner", &result.to_frame()), None),
        ("no message", run_terminated(0, "Completed"), None),
        (
            "still running",
            pod(json!({"containerStatuses": [{"name": "run", "image": "i", "imageID": "",
            "ready": true, "restartCount": 0, "state": {"running": {}}}]})),
            None,
        ),
    ];
    for (case, pod, want) in cases {
        assert_eq!(frame_in_message(&pod), want, "{case}");
    }
}

#[test]
fn a_frame_from_a_runner_that_did_not_exit_0_is_not_trusted() {
    // The program wrote a frame claiming success where the operator reads
    // results, then killed the runner.
    let forged = frame(|r| r.stdout = "ALL TESTS PASSED\n".into());
    for (case, exit_code, reason) in [("killed", 137, "Error"), ("runner failed to write", 71, "Error")] {
        let s = derive_with(Some(&job(json!([]))), Some(&run_terminated(exit_code, reason)), forged.clone());
        assert_eq!((s.phase, s.reason.as_deref()), (Phase::Failed, Some(reasons::RESULT_MISSING)), "{case}");
        assert_eq!(s.stdout, None, "{case}: the forged output was taken");
        assert!(s.message.unwrap().contains("exited 0"), "{case}");
    }
    let message = |exit_code: i64| {
        pod(json!({"containerStatuses": [{"name": "run", "image": "i", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": exit_code,
            "message": RunResult { exit_code: Some(0), ..Default::default() }.to_frame()}}}]}))
    };
    assert!(frame_in_message(&message(137)).is_none());
    assert!(!runner_exited_cleanly(&message(137)));
    assert!(runner_exited_cleanly(&message(0)));
}

#[test]
fn a_fork_bomb_has_its_own_reason() {
    let f = frame(|r| {
        r.exit_code = None;
        r.signal = Some(9);
        r.process_limit_exceeded = true;
    });
    let s = derive_with(Some(&job(json!([]))), Some(&run_terminated(0, "Completed")), f);
    assert_eq!((s.phase, s.reason.as_deref()), (Phase::Failed, Some(reasons::TOO_MANY_PROCESSES)));
}

#[test]
fn output_is_sized_as_the_json_it_is_sent_as() {
    // 256 KiB of a control character is 1.5 MiB once escaped.
    let mut s = ExecutionStatus {
        phase: Phase::Succeeded,
        stdout: Some("\u{1}".repeat(262_144)),
        stderr: Some("e\n".repeat(1000)),
        ..Default::default()
    };
    fit_to_object_limit(&mut s, 2_000);
    let size = serde_json::to_vec(&s).unwrap().len();
    assert!(size + 2_000 <= OBJECT_BUDGET_BYTES, "status is {size} bytes");
    assert!(size + 2_000 > OBJECT_BUDGET_BYTES - 1_000, "cut more than needed: {size} bytes");
    assert!(s.stdout_truncated);
    assert_eq!((s.stderr.as_deref().map(str::len), s.stderr_truncated), (Some(2000), false));
    for (text, max, want) in
        [("a\"b", 2, 1), ("a\"b", 3, 2), ("a\"b", 4, 3), ("\u{1}x", 5, 0), ("\u{1}x", 7, 2), ("é", 1, 0)]
    {
        assert_eq!(prefix_within_json(text, max), want, "{text:?} within {max}");
    }
}

#[test]
fn a_refused_status_keeps_its_verdict_without_output() {
    let s = derive_with(Some(&job(json!([]))), Some(&run_terminated(0, "Completed")), frame(|_| {}));
    let trimmed = without_output(&s, "etcdserver: request is too large");
    assert_eq!((trimmed.phase, trimmed.reason.clone(), trimmed.exit_code), (s.phase, s.reason.clone(), s.exit_code));
    assert_eq!((trimmed.stdout.as_deref(), trimmed.stdout_truncated), (Some(""), true));
    assert!(trimmed.message.unwrap().contains("request is too large"));
}

#[test]
fn table_of_run_bounds() {
    let at = |seconds: i64| Time(Timestamp::from_second(1_800_000_000 + seconds).unwrap());
    let mut e = execution(); // timeout 2 s
    e.metadata.creation_timestamp = Some(at(0));
    let running = ExecutionStatus { phase: Phase::Running, start_time: Some(at(10)), ..Default::default() };
    let pending = ExecutionStatus::default();
    // (case, status so far, now, overdue with reason / seconds left)
    let cases: [(&str, &ExecutionStatus, i64, Result<&str, u64>); 5] = [
        ("running, inside timeout + grace", &running, 20, Err(7)),
        ("running, at the bound", &running, 27, Ok(reasons::RESULT_OVERDUE)),
        ("running, long past", &running, 500, Ok(reasons::RESULT_OVERDUE)),
        ("never started, inside the allowance", &pending, 100, Err(2)),
        ("never started, past the allowance", &pending, 102, Ok(reasons::START_TIMEOUT)),
    ];
    for (case, status, now, want) in cases {
        let got = overdue(&e, status, 100, 15, &at(now));
        match (got, want) {
            (Ok(s), Ok(reason)) => {
                assert_eq!((s.phase, s.reason.as_deref()), (Phase::Failed, Some(reason)), "{case}");
                assert_eq!(s.start_time, status.start_time, "{case}");
                assert_eq!(s.condition(condition_types::COMPLETE).map(|c| c.status.as_str()), Some("True"), "{case}");
            }
            (Err(left), Err(seconds)) => assert_eq!(left.as_secs(), seconds, "{case}"),
            (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
        }
    }
}
