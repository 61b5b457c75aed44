//! What the operator observed. Written only through the status subresource.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where an Execution is in its life. All but Pending and Running are terminal.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    /// Stopped on request (annotation `sandrun.dev/cancel`).
    Cancelled,
}

impl Phase {
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::TimedOut | Phase::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::TimedOut => "TimedOut",
            Phase::Cancelled => "Cancelled",
        }
    }
}

/// How a run's sandbox was started.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartMode {
    /// A pod of a SandboxPool, started before the run arrived.
    Warm,
    /// A pod made for this run.
    Cold,
}

/// Machine-readable reasons used in `status.reason` and condition reasons.
pub mod reasons {
    pub const COMPLETED: &str = "Completed";
    pub const NON_ZERO_EXIT: &str = "NonZeroExitCode";
    pub const SIGNALED: &str = "Signaled";
    pub const OOM_KILLED: &str = "OOMKilled";
    pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
    pub const UNSCHEDULABLE: &str = "Unschedulable";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const RESULT_MISSING: &str = "ResultMissing";
    /// The kubelet evicted the pod: it used more disk (or memory) than allowed.
    pub const EVICTED: &str = "Evicted";
    pub const RUNNER_FAILED: &str = "RunnerFailed";
    pub const JOB_FAILED: &str = "JobFailed";
    pub const JOB_DELETED: &str = "JobDeleted";
    pub const CREATED: &str = "JobCreated";
    pub const STARTED: &str = "Started";
    pub const START_FAILED: &str = "StartFailed";
    pub const CANCELLED: &str = "Cancelled";
    pub const START_TIMEOUT: &str = "StartTimeout";
    /// The runner killed the program for running too many processes at once.
    pub const TOO_MANY_PROCESSES: &str = "TooManyProcesses";
    /// The run was started but no result came within `timeoutSeconds` plus
    /// the operator's result grace: the runner was stopped or killed without
    /// its container ending, or the node stopped reporting. The operator
    /// ended the run.
    pub const RESULT_OVERDUE: &str = "ResultOverdue";
    /// The API server refused the status with the program's output as
    /// permanently invalid; it was written again without the output.
    pub const OUTPUT_DROPPED: &str = "OutputDropped";
}

/// Setting this annotation to `"true"` asks the operator to stop the run;
/// the spec itself is immutable, so cancellation lives in metadata.
pub const CANCEL_ANNOTATION: &str = "sandrun.dev/cancel";

/// Condition types set on every Execution.
pub mod condition_types {
    /// True once the spec passed validation and the Job exists.
    pub const ACCEPTED: &str = "Accepted";
    /// True once the Execution reached a terminal phase (any outcome), so
    /// `kubectl wait --for=condition=Complete` works for every result.
    pub const COMPLETE: &str = "Complete";
}

#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionStatus {
    pub phase: Phase,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// How the sandbox was started: `Warm`, a pod of a SandboxPool started
    /// ahead; `Cold`, a pod made for this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_mode: Option<StartMode>,

    /// When the program started (the run container started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the Execution reached its terminal phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Wall time of the program itself, measured inside the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_millis: Option<i64>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Peak resident memory of the program, as the kernel (gVisor's Sentry) reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<i64>,

    /// Standard output, capped at `limits.maxOutputBytes` (lossy UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdout_truncated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stderr_truncated: bool,

    /// One word (see `reasons`), then a sentence for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ExecutionStatus {
    pub fn is_terminal(&self) -> bool {
        self.phase.is_terminal()
    }

    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}
