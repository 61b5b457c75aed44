//! Statuses only a warm run has: bound to a pool's pod, finished from the
//! runner's stream, and sent back to a cold start.

use k8s_openapi::api::core::v1::ContainerStateTerminated;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sandrun_crds::{reasons, Execution, ExecutionStatus, Phase, StartMode};
use sandrun_runner::protocol::UNDELIVERED_PREFIX;
use sandrun_runner::report::EXIT_UNDELIVERED;
use sandrun_runner::RunResult;

use super::{container_state, finished, with_conditions, Frame};
use crate::labels::RUN_CONTAINER;
use crate::store::PodRecord;

/// Bound to a warm pod: the program is on its way and starts within
/// milliseconds, so the run counts as started now.
pub fn bound(execution: &Execution, job: &str, pod: &str, pool: &str, now: &Time) -> ExecutionStatus {
    let previous = execution.status.clone().unwrap_or_default();
    let next = ExecutionStatus {
        phase: Phase::Running,
        reason: Some(reasons::STARTED.to_owned()),
        message: Some(format!("started in warm pod {pod} of pool {pool}")),
        job_name: Some(job.to_owned()),
        pod_name: Some(pod.to_owned()),
        start_mode: Some(StartMode::Warm),
        start_time: Some(now.clone()),
        ..Default::default()
    };
    with_conditions(next, &previous, execution.metadata.generation, now)
}

/// A warm run's result as read off the runner's stream. The runner prints
/// it there only when its container is about to exit 0, so it counts as a
/// frame from a clean exit does. The program started when the runner
/// accepted it, if the stream said when.
pub fn from_stream(
    execution: &Execution,
    result: &RunResult,
    accepted: Option<&Time>,
    finished_at: &Time,
    now: &Time,
) -> ExecutionStatus {
    let previous = execution.status.clone().unwrap_or_default();
    let clean_exit = ContainerStateTerminated {
        exit_code: 0,
        started_at: accepted.cloned().or(previous.start_time.clone()),
        finished_at: Some(finished_at.clone()),
        ..Default::default()
    };
    let mut next = finished(execution, &clean_exit, Some(&Frame::Parsed(result.clone())), None, now);
    next.job_name = previous.job_name.clone();
    next.pod_name = previous.pod_name.clone();
    next.start_mode = previous.start_mode;
    with_conditions(next, &previous, execution.metadata.generation, now)
}

/// Why the warm pod's runner ended without running anything, if it did:
/// exit 75 with its undelivered message. A program cannot make the runner
/// exit 75, and once one ran, the runner writes its frame over that file.
pub fn undelivered(pod: &PodRecord) -> Option<String> {
    let terminated = container_state(pod, RUN_CONTAINER, false)?.terminated?;
    let message = terminated.message.as_deref().filter(|_| terminated.exit_code == i32::from(EXIT_UNDELIVERED))?;
    Some(message.strip_prefix(UNDELIVERED_PREFIX).unwrap_or(message).trim().to_owned())
}

/// Back to a cold start: the program never reached the warm pod, so it runs
/// in a pod of its own, once.
pub fn warm_start_failed(execution: &Execution, why: &str, now: &Time) -> ExecutionStatus {
    let previous = execution.status.clone().unwrap_or_default();
    let next = ExecutionStatus {
        phase: Phase::Pending,
        reason: Some("WarmStartFailed".to_owned()),
        message: Some(format!("starting cold: the warm pod did not take the program ({why})")),
        start_mode: Some(StartMode::Cold),
        ..Default::default()
    };
    with_conditions(next, &previous, execution.metadata.generation, now)
}

/// The warm pod's runner is up and has not ended: it may still be waiting
/// for its program.
pub fn waiting_for_program(pod: Option<&PodRecord>) -> bool {
    pod.and_then(|pod| container_state(pod, RUN_CONTAINER, false)).is_some_and(|state| state.running.is_some())
}
