//! The gateway's wire types, shared by the gateway and its clients (the CLI):
//! what clients send and receive over REST and WebSocket. The OpenAPI
//! document is generated from these.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A program to run. Give `language` with `code` (one file) or `files`, or
/// an `image` with a `command`.
#[derive(Deserialize, Serialize, ToSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubmitRequest {
    /// python, node or bash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// A single source file's text; stored as main.py / main.js / main.sh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileInput>,
    /// The file to run; defaults to the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsInput>,
    /// Submitting again with the same key (for this API key) returns the
    /// same run instead of starting a second one, for as long as the run
    /// is kept; the same key with a different request is refused (422).
    /// REST clients may send it as the `Idempotency-Key` header instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

#[derive(Deserialize, Serialize, ToSchema, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileInput {
    pub path: String,
    pub content: String,
}

#[derive(Deserialize, Serialize, ToSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitsInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u32>,
}

/// Where an execution is, in the gateway's words.
#[derive(Deserialize, Serialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Queued,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
}

impl State {
    pub fn is_final(self) -> bool {
        !matches!(self, State::Queued | State::Running)
    }

    pub fn parse(text: &str) -> Option<State> {
        serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
    }
}

/// An execution and, once it has one, its result.
#[derive(Deserialize, Serialize, ToSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionView {
    pub id: String,
    pub status: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_millis: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    pub links: Links,
}

impl ExecutionView {
    /// A view with only an id and a state; the rest empty.
    pub fn new(id: &str, status: State) -> Self {
        Self {
            links: Links { self_: format!("/v1/executions/{id}"), ws: "/v1/ws".to_owned() },
            id: id.to_owned(),
            status,
            language: None,
            reason: None,
            message: None,
            exit_code: None,
            stdout: None,
            stderr: None,
            stdout_truncated: false,
            stderr_truncated: false,
            duration_millis: None,
            peak_memory_bytes: None,
            created_at: None,
            started_at: None,
            completed_at: None,
        }
    }
}

#[derive(Deserialize, Serialize, ToSchema, Clone, Debug, PartialEq)]
pub struct Links {
    #[serde(rename = "self")]
    pub self_: String,
    pub ws: String,
}

#[derive(Deserialize, Serialize, ToSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionList {
    pub items: Vec<ExecutionView>,
    /// Pass as `continue` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Deserialize, Serialize, ToSchema, Clone, Debug, PartialEq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Deserialize, Serialize, ToSchema, Clone, Debug, PartialEq)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_request`, `unauthorized`.
    pub code: String,
    pub message: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Messages a WebSocket client sends.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Submit and subscribe in one go. `ref` is echoed in `accepted`.
    Execute {
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        ref_: Option<String>,
        #[serde(flatten)]
        request: Box<SubmitRequest>,
    },
    /// Receive the current state at once, then every change.
    Subscribe {
        id: String,
    },
    Unsubscribe {
        id: String,
    },
}

/// Messages the gateway sends on a WebSocket.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Accepted {
        id: String,
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        ref_: Option<String>,
    },
    Update {
        execution: Box<ExecutionView>,
    },
    /// The execution was deleted (its time to live passed, or someone
    /// deleted it): no more updates come for it, and fetching it is a 404.
    Gone {
        id: String,
    },
    Error {
        error: ErrorDetail,
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        ref_: Option<String>,
    },
}
