//! sandrun's custom resources: `Execution` (`executions.sandrun.dev`) and
//! `SandboxPool` (`sandboxpools.sandrun.dev`).
//!
//! These types are the single source of truth: the CRD YAML under `crds/` is
//! generated from them (`cargo run -p sandrun-crds --bin crdgen`), and the
//! operator, gateway and tests all speak through them.

mod pool;
pub mod quantity;
mod spec;
mod status;

pub use pool::{PoolLimits, SandboxPool, SandboxPoolSpec, SandboxPoolStatus, MAX_POOL_SIZE};
pub use spec::{
    EnvVar, Execution, ExecutionSpec, Language, Limits, Source, SourceFile, DEFAULT_CPU, DEFAULT_MAX_OUTPUT_BYTES,
    DEFAULT_MEMORY, DEFAULT_RUNTIME_CLASS, DEFAULT_TIMEOUT_SECONDS, MAX_OUTPUT_BYTES_CAP, MAX_SOURCE_FILES,
    MAX_SOURCE_FILE_BYTES, MAX_STDIN_BYTES, MAX_TIMEOUT_SECONDS,
};
pub use status::{condition_types, reasons, ExecutionStatus, Phase, StartMode, CANCEL_ANNOTATION};

use kube::CustomResourceExt;

/// Whether someone asked for this Execution to be stopped.
pub fn cancel_requested(execution: &Execution) -> bool {
    execution.metadata.annotations.as_ref().and_then(|a| a.get(CANCEL_ANNOTATION)).is_some_and(|v| v == "true")
}

/// The CRD manifests as YAML, by file name, exactly as committed under `crds/`.
pub fn crd_yamls() -> Result<Vec<(&'static str, String)>, serde_yaml::Error> {
    let header = "# Generated from crds/src by `make crds`; do not edit.\n";
    Ok(vec![
        ("executions.sandrun.dev.yaml", format!("{header}{}", serde_yaml::to_string(&Execution::crd())?)),
        ("sandboxpools.sandrun.dev.yaml", format!("{header}{}", serde_yaml::to_string(&SandboxPool::crd())?)),
    ])
}
