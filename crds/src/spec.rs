//! What the user asks for. Everything here is immutable once created.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::status::ExecutionStatus;

pub const DEFAULT_TIMEOUT_SECONDS: u32 = 30;
pub const MAX_TIMEOUT_SECONDS: u32 = 3600;
pub const DEFAULT_CPU: &str = "1";
pub const DEFAULT_MEMORY: &str = "256Mi";
pub const DEFAULT_MAX_OUTPUT_BYTES: u32 = 64 * 1024;
/// Per stream. Two full streams stay far below etcd's 1.5 MiB object limit.
pub const MAX_OUTPUT_BYTES_CAP: u32 = 256 * 1024;
pub const MAX_SOURCE_FILES: usize = 32;
/// Per file; ConfigMaps (1 MiB) and etcd cap the total anyway.
pub const MAX_SOURCE_FILE_BYTES: usize = 256 * 1024;
pub const MAX_STDIN_BYTES: usize = 256 * 1024;
pub const DEFAULT_RUNTIME_CLASS: &str = "runsc";

/// A piece of untrusted code to run once, to completion, in a gVisor sandbox.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "sandrun.dev",
    version = "v1alpha1",
    kind = "Execution",
    plural = "executions",
    shortname = "exec",
    namespaced,
    status = "ExecutionStatus",
    printcolumn = r#"{"name":"Language","type":"string","jsonPath":".spec.language"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Exit","type":"integer","jsonPath":".status.exitCode"}"#,
    printcolumn = r#"{"name":"Duration(ms)","type":"integer","jsonPath":".status.durationMillis"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.reason","priority":1}"#,
    printcolumn = r#"{"name":"Start","type":"string","jsonPath":".status.startMode","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("self == oldSelf").message("spec is immutable: create a new Execution instead"),
    validation = Rule::new("has(self.language) != has(self.image)").message("set exactly one of language or image"),
    validation = Rule::new("!has(self.image) || (has(self.command) && size(self.command) > 0)").message("image requires a non-empty command"),
    validation = Rule::new("has(self.image) || has(self.source)").message("language requires source"),
)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionSpec {
    /// A known language; the operator maps it to a runtime image and command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<Language>,

    /// An explicit image to run instead of a language runtime. Requires `command`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// The command for `image` (argv; no shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub command: Option<Vec<String>>,

    /// Inline source files, written into the working directory before the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,

    /// Text fed to the program's standard input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 262144))]
    pub stdin: Option<String>,

    /// Arguments appended after the entry file (or after `command`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 4096)))]
    pub args: Vec<String>,

    /// Environment variables for the program.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub env: Vec<EnvVar>,

    /// Resource and time limits.
    #[serde(default)]
    pub limits: Limits,

    /// RuntimeClass for the pod. Defaults to the operator's (`runsc`, gVisor);
    /// others only where the operator allows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub runtime_class_name: Option<String>,

    /// Delete this Execution (and what it created) this long after it finishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2592000))]
    pub ttl_seconds_after_finished: Option<u32>,
}

/// Languages with a built-in runtime.
#[derive(schemars::JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Python,
    Node,
    Bash,
}

impl Language {
    pub const ALL: [Language; 3] = [Language::Python, Language::Node, Language::Bash];

    pub fn as_str(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Node => "node",
            Language::Bash => "bash",
        }
    }
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("!has(self.entry) || self.files.exists(f, f.path == self.entry)").message("entry must name one of the files"),
    validation = Rule::new("self.files.all(f, self.files.exists_one(g, g.path == f.path))").message("file paths must be unique"),
)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// The files. Paths are relative, `/`-separated, without `.` or `..` segments.
    #[schemars(length(min = 1, max = 32))]
    pub files: Vec<SourceFile>,

    /// The file to run. Defaults to the first file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub entry: Option<String>,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
pub struct SourceFile {
    #[schemars(
        length(min = 1, max = 255),
        regex(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")
    )]
    pub path: String,
    #[schemars(length(max = 262144))]
    pub content: String,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
pub struct EnvVar {
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub name: String,
    #[serde(default)]
    #[schemars(length(max = 4096))]
    pub value: String,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Wall-clock limit for the program, in seconds (1..=3600, default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: Option<u32>,

    /// CPU limit as a Kubernetes quantity (default "1").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0')) && quantity(self).compareTo(quantity('8')) <= 0").message("cpu must be a quantity above 0 and at most 8, such as 500m or 2"))]
    #[schemars(length(min = 1, max = 32))]
    pub cpu: Option<String>,

    /// Memory limit as a Kubernetes quantity (default "256Mi").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).compareTo(quantity('16Mi')) >= 0 && quantity(self).compareTo(quantity('16Gi')) <= 0").message("memory must be a quantity from 16Mi to 16Gi, such as 256Mi"))]
    #[schemars(length(min = 1, max = 32))]
    pub memory: Option<String>,

    /// Cap on captured bytes per stream (stdout, stderr); the rest is dropped and flagged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 262144))]
    pub max_output_bytes: Option<u32>,
}

impl ExecutionSpec {
    pub fn timeout_seconds(&self) -> u32 {
        self.limits.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS)
    }

    pub fn max_output_bytes(&self) -> u32 {
        self.limits.max_output_bytes.unwrap_or(DEFAULT_MAX_OUTPUT_BYTES).min(MAX_OUTPUT_BYTES_CAP)
    }

    pub fn cpu(&self) -> &str {
        self.limits.cpu.as_deref().unwrap_or(DEFAULT_CPU)
    }

    pub fn memory(&self) -> &str {
        self.limits.memory.as_deref().unwrap_or(DEFAULT_MEMORY)
    }

    /// The entry file: `source.entry`, else the first file.
    pub fn entry(&self) -> Option<&str> {
        let source = self.source.as_ref()?;
        source.entry.as_deref().or_else(|| source.files.first().map(|f| f.path.as_str()))
    }
}
