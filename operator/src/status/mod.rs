//! Job and pod state (plus the runner's frame) → Execution status. Pure.

use k8s_openapi::api::batch::v1::JobCondition;
use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::SignedDuration;
use sandrun_crds::{condition_types, reasons, Execution, ExecutionStatus, Phase, StartMode};
use sandrun_runner::{parse_frame, RunResult};

use crate::labels::{INSTALL_CONTAINER, RUN_CONTAINER};
use crate::store::{JobRecord, PodRecord};
use crate::text::{apply_safe, truncate_at_char};
use sandrun_crds::quantity::memory_bytes;

mod warm;
pub use warm::{bound, from_stream, undelivered, waiting_for_program, warm_start_failed};

/// Waiting reasons that will not fix themselves within an Execution's life.
const FATAL_WAITING: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// A SIGKILLed program this close to its memory limit was the OOM killer's,
/// when the sandbox shows no memory cgroup to say so directly.
const OOM_PEAK_FRACTION: f64 = 0.9;

/// Room for the whole Execution object; etcd refuses objects over 1.5 MiB.
const OBJECT_BUDGET_BYTES: usize = 1_300_000;

/// Cuts stdout and stderr until the status, measured as the JSON it is sent
/// as, fits in one object beside the spec. Output is sized escaped: a
/// control character costs six bytes (`\u0001`), so 256 KiB of them is
/// 1.5 MiB on the wire.
pub fn fit_to_object_limit(status: &mut ExecutionStatus, spec_bytes: usize) {
    let (out, err) = (
        json_len(status.stdout.as_deref().unwrap_or_default()),
        json_len(status.stderr.as_deref().unwrap_or_default()),
    );
    let rest = serde_json::to_vec(status).map_or(0, |v| v.len()).saturating_sub(out + err);
    // The truncation flags cut output sets are not in `rest` yet.
    let room = OBJECT_BUDGET_BYTES.saturating_sub(spec_bytes + rest + 64);
    if out + err <= room {
        return;
    }
    // The smaller stream keeps all it has if that is at most half; the
    // larger gets what is left.
    let half = room / 2;
    let (out_room, err_room) = match (out <= half, err <= half) {
        (true, _) => (out, room - out),
        (_, true) => (room - err, err),
        _ => (half, half),
    };
    for (text, truncated, room) in [
        (&mut status.stdout, &mut status.stdout_truncated, out_room),
        (&mut status.stderr, &mut status.stderr_truncated, err_room),
    ] {
        if let Some(text) = text.as_mut() {
            let keep = prefix_within_json(text, room);
            if keep < text.len() {
                text.truncate(keep);
                *truncated = true;
            }
        }
    }
}

/// Bytes `c` takes inside a JSON string, as serde_json writes it.
fn json_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        '\0'..='\u{1f}' => 6,
        c => c.len_utf8(),
    }
}

fn json_len(text: &str) -> usize {
    text.chars().map(json_char_len).sum()
}

/// Length in bytes of the longest start of `text` whose JSON form takes at
/// most `max` bytes.
fn prefix_within_json(text: &str, max: usize) -> usize {
    let mut used = 0;
    for (at, c) in text.char_indices() {
        used += json_char_len(c);
        if used > max {
            return at;
        }
    }
    text.len()
}

/// The same status without the program's output, for when the API server
/// refused it as permanently invalid: the run's verdict still lands.
pub fn without_output(status: &ExecutionStatus, refusal: &str) -> ExecutionStatus {
    let dropped = |text: &Option<String>| text.as_ref().map(|_| String::new());
    let message = format!(
        "{}; its output was dropped: the API server refused the status with it ({})",
        status.message.as_deref().unwrap_or(status.phase.as_str()),
        truncate_at_char(refusal, 300)
    );
    ExecutionStatus {
        stdout: dropped(&status.stdout),
        stdout_truncated: status.stdout.is_some(),
        stderr: dropped(&status.stderr),
        stderr_truncated: status.stderr.is_some(),
        message: Some(message),
        ..status.clone()
    }
}

/// Whether this terminal status leaves a pod behind that would otherwise sit
/// retrying (image errors) until the Job's deadline, so its Job should go.
pub fn leaves_stuck_pod(status: &ExecutionStatus) -> bool {
    status.is_terminal() && status.reason.as_deref().is_some_and(|r| FATAL_WAITING.contains(&r))
}

/// What the runner left: in the run container's termination message, or
/// (when it did not fit there) in its log.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Parsed(RunResult),
    /// The log had no frame (runner killed, log gone).
    Missing,
    /// A frame was there but could not be read.
    Unreadable(String),
}

#[derive(Debug, Default)]
pub struct Observed<'a> {
    pub job: Option<&'a JobRecord>,
    pub pod: Option<&'a PodRecord>,
    /// Read once the run container has terminated; `None` before that.
    pub frame: Option<&'a Frame>,
    /// An earlier reconcile created the Job (so its absence means deletion).
    pub job_was_created: bool,
}

/// The status the Execution should have now, conditions included.
pub fn derive(execution: &Execution, observed: &Observed, now: &Time) -> ExecutionStatus {
    let previous = execution.status.clone().unwrap_or_default();
    let mut next = progress(execution, observed, now);
    next.job_name = observed.job.map(|j| j.name.clone()).or(previous.job_name.clone());
    next.pod_name = observed.pod.map(|p| p.name.clone()).or(previous.pod_name.clone());
    next.start_mode = previous.start_mode.or(observed.job.map(|_| StartMode::Cold));
    if previous.start_mode == Some(StartMode::Warm) {
        // The pod was up long before this run; the run started when it was
        // bound, as the bound status says.
        next.start_time = previous.start_time.clone().or(next.start_time);
        if next.phase == Phase::Running {
            next.message = previous.message.clone();
        }
    }
    with_conditions(next, &previous, execution.metadata.generation, now)
}

/// Terminal status for a spec the operator refuses to run.
pub fn invalid_spec(execution: &Execution, message: String, now: &Time) -> ExecutionStatus {
    let previous = execution.status.clone().unwrap_or_default();
    let next = ExecutionStatus {
        phase: Phase::Failed,
        reason: Some(reasons::INVALID_SPEC.to_owned()),
        message: Some(message),
        completion_time: Some(now.clone()),
        ..Default::default()
    };
    with_conditions(next, &previous, execution.metadata.generation, now)
}

/// Terminal status for a run stopped on request.
pub fn cancelled(execution: &Execution, now: &Time) -> ExecutionStatus {
    let previous = execution.status.clone().unwrap_or_default();
    let next = ExecutionStatus {
        phase: Phase::Cancelled,
        reason: Some(reasons::CANCELLED.to_owned()),
        message: Some("cancelled on request; the run was stopped".to_owned()),
        completion_time: Some(now.clone()),
        job_name: previous.job_name.clone(),
        pod_name: previous.pod_name.clone(),
        start_time: previous.start_time.clone(),
        start_mode: previous.start_mode,
        ..Default::default()
    };
    with_conditions(next, &previous, execution.metadata.generation, now)
}

fn progress(execution: &Execution, observed: &Observed, now: &Time) -> ExecutionStatus {
    let Some(job) = observed.job else {
        if observed.job_was_created {
            return failed(
                reasons::JOB_DELETED,
                "the Job running this Execution was deleted before it finished".into(),
                now,
            );
        }
        return ExecutionStatus::default();
    };
    let run = observed.pod.and_then(|p| container_state(p, RUN_CONTAINER, false));
    if let Some(terminated) = run.as_ref().and_then(|s| s.terminated.as_ref()) {
        return finished(execution, terminated, observed.frame, eviction(observed.pod), now);
    }
    let install = observed.pod.and_then(|p| container_state(p, INSTALL_CONTAINER, true));
    if let Some(t) = install.as_ref().and_then(|s| s.terminated.as_ref()).filter(|t| t.exit_code != 0) {
        let message = format!(
            "the runner could not be installed (exit code {}): {}",
            t.exit_code,
            t.message.clone().unwrap_or_default()
        );
        return failed(reasons::RUNNER_FAILED, message, now);
    }
    for state in [&install, &run].into_iter().flatten() {
        if let Some(waiting) = &state.waiting {
            let reason = waiting.reason.clone().unwrap_or_default();
            if FATAL_WAITING.contains(&reason.as_str()) {
                let message = waiting.message.clone().unwrap_or_else(|| reason.clone());
                return failed(&reason, message, now);
            }
        }
    }
    if let Some(failure) = job_failure(job) {
        return failure_of_job(execution, failure, now);
    }
    if let Some(started) = run.as_ref().and_then(|s| s.running.as_ref()) {
        return ExecutionStatus {
            phase: Phase::Running,
            reason: Some(reasons::STARTED.to_owned()),
            start_time: started.started_at.clone(),
            ..Default::default()
        };
    }
    pending(observed.pod, run.as_ref().or(install.as_ref()))
}

fn pending(pod: Option<&PodRecord>, state: Option<&ContainerState>) -> ExecutionStatus {
    let unschedulable = pod
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled" && c.status == "False"));
    if let Some(c) = unschedulable {
        return ExecutionStatus {
            reason: Some(c.reason.clone().unwrap_or_else(|| reasons::UNSCHEDULABLE.to_owned())),
            message: c.message.clone(),
            ..Default::default()
        };
    }
    let waiting = state.and_then(|s| s.waiting.as_ref());
    ExecutionStatus {
        reason: Some(waiting.and_then(|w| w.reason.clone()).unwrap_or_else(|| reasons::CREATED.to_owned())),
        message: waiting.and_then(|w| w.message.clone()),
        ..Default::default()
    }
}

/// The kubelet's reason for evicting the pod, if it did.
fn eviction(pod: Option<&PodRecord>) -> Option<String> {
    let status = pod?.status.as_ref()?;
    (status.reason.as_deref() == Some("Evicted")).then(|| status.message.clone().unwrap_or_default())
}

fn finished(
    execution: &Execution,
    terminated: &ContainerStateTerminated,
    frame: Option<&Frame>,
    evicted: Option<String>,
    now: &Time,
) -> ExecutionStatus {
    let completion = terminated.finished_at.clone().unwrap_or_else(|| now.clone());
    let container_oom = terminated.reason.as_deref() == Some("OOMKilled");
    let memory = execution.spec.memory();
    let base = ExecutionStatus {
        start_time: terminated.started_at.clone(),
        completion_time: Some(completion),
        ..Default::default()
    };
    // A frame counts only from a runner that exited 0, which it does only
    // after every process of the program is gone and the frame is written:
    // otherwise the termination message may be the program's own forgery.
    let clean = terminated.exit_code == 0;
    let r = match frame {
        Some(Frame::Parsed(r)) if clean => r,
        other => {
            let (reason, message) = if let Some(why) = evicted {
                (reasons::EVICTED, format!("the pod was evicted: {}", why.trim()))
            } else if container_oom {
                (reasons::OOM_KILLED, format!("the sandbox exceeded its {memory} memory limit"))
            } else {
                let why = match other {
                    _ if !clean => "a result counts only from a runner that exited 0".to_owned(),
                    Some(Frame::Unreadable(e)) => format!("its result could not be read: {e}"),
                    _ => "it reported no result".to_owned(),
                };
                (reasons::RESULT_MISSING, format!("the runner ended (exit code {}) but {why}", terminated.exit_code))
            };
            return ExecutionStatus {
                phase: Phase::Failed,
                exit_code: Some(terminated.exit_code),
                reason: Some(reason.to_owned()),
                message: Some(message),
                ..base
            };
        }
    };
    let exit_code = r.exit_code.or(r.signal.map(|s| 128 + s));
    let near_limit = match (r.peak_memory_bytes, memory_bytes(memory)) {
        (Some(peak), Some(limit)) => peak as f64 >= OOM_PEAK_FRACTION * limit as f64,
        _ => false,
    };
    let oom = container_oom
        || r.oom_killed == Some(true)
        || (r.signal == Some(9) && !r.timed_out && r.oom_killed.is_none() && near_limit);
    let (phase, reason, message) = if r.timed_out {
        (
            Phase::TimedOut,
            reasons::DEADLINE_EXCEEDED,
            format!("killed after its {}s timeout", execution.spec.timeout_seconds()),
        )
    } else if r.process_limit_exceeded {
        (
            Phase::Failed,
            reasons::TOO_MANY_PROCESSES,
            "killed for running more processes at once than allowed".to_owned(),
        )
    } else if oom {
        (Phase::Failed, reasons::OOM_KILLED, format!("killed for exceeding its {memory} memory limit"))
    } else if let Some(error) = &r.error {
        (Phase::Failed, reasons::START_FAILED, apply_safe(error))
    } else if r.signal == Some(SIGXFSZ) {
        (Phase::Failed, reasons::SIGNALED, "killed for writing a file larger than its workspace (SIGXFSZ)".to_owned())
    } else if let Some(signal) = r.signal {
        (Phase::Failed, reasons::SIGNALED, format!("killed by signal {signal}"))
    } else if exit_code == Some(0) {
        (Phase::Succeeded, reasons::COMPLETED, format!("exited with code 0 after {} ms", r.duration_millis))
    } else {
        (Phase::Failed, reasons::NON_ZERO_EXIT, format!("exited with code {}", exit_code.unwrap_or(-1)))
    };
    ExecutionStatus {
        phase,
        reason: Some(reason.to_owned()),
        message: Some(message),
        exit_code,
        duration_millis: Some(r.duration_millis as i64),
        peak_memory_bytes: r.peak_memory_bytes.map(|b| b as i64),
        stdout: Some(apply_safe(&r.stdout)),
        stdout_truncated: r.stdout_truncated,
        stderr: Some(apply_safe(&r.stderr)),
        stderr_truncated: r.stderr_truncated,
        ..base
    }
}

/// Linux's signal for a write past RLIMIT_FSIZE, which the runner sets to
/// the workspace size.
const SIGXFSZ: i32 = 25;

fn job_failure(job: &JobRecord) -> Option<&JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Failed" || c.type_ == "FailureTarget") && c.status == "True")
}

fn failure_of_job(execution: &Execution, condition: &JobCondition, now: &Time) -> ExecutionStatus {
    let reason = condition.reason.as_deref().unwrap_or("Failed");
    if reason == "DeadlineExceeded" {
        let started = execution.status.as_ref().and_then(|s| s.start_time.as_ref());
        if started.is_none() {
            // The program never ran: a full node or a slow start, not a slow program.
            let message = "the sandbox did not start before the Job's deadline (timeout plus start-up allowance)";
            return failed(reasons::START_TIMEOUT, message.to_owned(), now);
        }
        let timeout = execution.spec.timeout_seconds();
        let mut s =
            failed(reasons::DEADLINE_EXCEEDED, format!("the Job passed its deadline ({timeout}s timeout)"), now);
        s.phase = Phase::TimedOut;
        return s;
    }
    let message = condition.message.as_deref().unwrap_or("the Job failed");
    failed(reasons::JOB_FAILED, format!("{reason}: {message}"), now)
}

fn failed(reason: &str, message: String, now: &Time) -> ExecutionStatus {
    ExecutionStatus {
        phase: Phase::Failed,
        reason: Some(reason.to_owned()),
        message: Some(message),
        completion_time: Some(now.clone()),
        ..Default::default()
    }
}

/// Whether a pod may still have to mount the inputs ConfigMap: until it
/// leaves Pending, a ConfigMap deleted by hand holds it in ContainerCreating.
/// Before there is a pod nothing waits; its arrival brings another look.
pub fn awaits_inputs(pod: Option<&PodRecord>) -> bool {
    pod.is_some_and(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()).is_none_or(|phase| phase == "Pending"))
}

/// Whether `next` says something `previous` did not. A pod's name alone
/// waits for the next real change: at scale every status write counts, and
/// the name tells a user nothing the phase does not.
pub fn worth_writing(previous: &ExecutionStatus, next: &ExecutionStatus) -> bool {
    next != previous && *next != ExecutionStatus { pod_name: next.pod_name.clone(), ..previous.clone() }
}

/// The runner's frame from the run container's termination message, when it
/// fit there; otherwise it has to be read from the log.
pub fn frame_in_message(pod: &PodRecord) -> Option<RunResult> {
    let terminated = container_state(pod, RUN_CONTAINER, false)?.terminated.filter(|t| t.exit_code == 0)?;
    parse_frame(terminated.message.as_deref()?)?.ok()
}

/// Whether the run container has ended with exit code 0, so the runner's
/// frame is there to be read and can be trusted. Any other end gets no look
/// at the frame: what is there may be the program's.
pub fn runner_exited_cleanly(pod: &PodRecord) -> bool {
    container_state(pod, RUN_CONTAINER, false).and_then(|s| s.terminated).is_some_and(|t| t.exit_code == 0)
}

/// When a run still in flight is overdue, the terminal status the operator
/// writes as it ends the run; otherwise how long until it would be. Every
/// run ends within a bound the program cannot move:
/// - started: `timeoutSeconds` + `resultGraceSeconds` after the program's
///   start (the runner stopped, or the node stopped reporting);
/// - not started: `timeoutSeconds` + `startupAllowanceSeconds` after the
///   Execution was created (a Job it cannot own, a store that never lists).
pub fn overdue(
    execution: &Execution,
    next: &ExecutionStatus,
    startup_allowance_seconds: u32,
    result_grace_seconds: u32,
    now: &Time,
) -> Result<ExecutionStatus, std::time::Duration> {
    let timeout = execution.spec.timeout_seconds();
    let (from, allowance, reason, message) = match &next.start_time {
        Some(started) => (
            started.0,
            result_grace_seconds,
            reasons::RESULT_OVERDUE,
            format!(
                "no result {timeout}s (its timeout) + {result_grace_seconds}s after the program started: the \
                 runner was stopped or killed, or its node stopped reporting; the operator ended the run"
            ),
        ),
        None => {
            let Some(created) = &execution.metadata.creation_timestamp else {
                return Err(std::time::Duration::MAX);
            };
            (
                created.0,
                startup_allowance_seconds,
                reasons::START_TIMEOUT,
                format!(
                    "the program did not start within {}s of the Execution's creation; the operator ended the run",
                    u64::from(timeout) + u64::from(startup_allowance_seconds)
                ),
            )
        }
    };
    let bound = SignedDuration::from_secs(i64::from(timeout) + i64::from(allowance));
    let left = bound - now.0.duration_since(from);
    if left.is_positive() {
        return Err(left.unsigned_abs());
    }
    let ended = ExecutionStatus {
        start_time: next.start_time.clone(),
        job_name: next.job_name.clone(),
        pod_name: next.pod_name.clone(),
        start_mode: next.start_mode,
        ..failed(reason, message, now)
    };
    let previous = execution.status.clone().unwrap_or_default();
    Ok(with_conditions(ended, &previous, execution.metadata.generation, now))
}

fn container_state(pod: &PodRecord, name: &str, init: bool) -> Option<ContainerState> {
    let status = pod.status.as_ref()?;
    let list = if init { status.init_container_statuses.as_ref() } else { status.container_statuses.as_ref() };
    list?.iter().find(|c| c.name == name)?.state.clone()
}

fn with_conditions(
    mut next: ExecutionStatus,
    previous: &ExecutionStatus,
    generation: Option<i64>,
    now: &Time,
) -> ExecutionStatus {
    next.observed_generation = generation;
    let invalid = next.reason.as_deref() == Some(reasons::INVALID_SPEC);
    let accepted = if invalid {
        ("False", reasons::INVALID_SPEC, next.message.clone().unwrap_or_default())
    } else if next.job_name.is_some() {
        ("True", reasons::CREATED, "the Job running this Execution exists".to_owned())
    } else {
        ("Unknown", "Reconciling", "creating the Job".to_owned())
    };
    let complete = if next.phase.is_terminal() {
        ("True", next.reason.clone().unwrap_or_default(), next.message.clone().unwrap_or_default())
    } else {
        ("False", next.phase.as_str().to_owned(), "the program has not finished".to_owned())
    };
    next.conditions = vec![
        condition(previous, condition_types::ACCEPTED, accepted.0, accepted.1, accepted.2, generation, now),
        condition(previous, condition_types::COMPLETE, complete.0, &complete.1, complete.2, generation, now),
    ];
    next
}

/// Keeps the previous transition time unless the condition's status flips,
/// so an unchanged status compares equal and no patch is sent.
fn condition(
    previous: &ExecutionStatus,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let last_transition_time = previous
        .condition(type_)
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

#[cfg(test)]
mod tests;
