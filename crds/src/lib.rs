//! The `Execution` custom resource (`executions.sandrun.dev`).
//!
//! These types are the single source of truth: the CRD YAML under `crds/` is
//! generated from them (`cargo run -p sandrun-crds --bin crdgen`), and the
//! operator, gateway and tests all speak through them.

mod spec;
mod status;

pub use spec::{
    EnvVar, Execution, ExecutionSpec, Language, Limits, Source, SourceFile, DEFAULT_CPU, DEFAULT_MAX_OUTPUT_BYTES,
    DEFAULT_MEMORY, DEFAULT_RUNTIME_CLASS, DEFAULT_TIMEOUT_SECONDS, MAX_OUTPUT_BYTES_CAP, MAX_SOURCE_FILES,
    MAX_SOURCE_FILE_BYTES, MAX_STDIN_BYTES, MAX_TIMEOUT_SECONDS,
};
pub use status::{condition_types, reasons, ExecutionStatus, Phase, CANCEL_ANNOTATION};

use kube::CustomResourceExt;

/// The CRD manifest as YAML, exactly as committed in `crds/executions.sandrun.dev.yaml`.
/// Whether someone asked for this Execution to be stopped.
pub fn cancel_requested(execution: &Execution) -> bool {
    execution.metadata.annotations.as_ref().and_then(|a| a.get(CANCEL_ANNOTATION)).is_some_and(|v| v == "true")
}

pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    let header = "# Generated from crds/src by `cargo run -p sandrun-crds --bin crdgen`; do not edit.\n";
    Ok(format!("{header}{}", serde_yaml::to_string(&Execution::crd())?))
}
