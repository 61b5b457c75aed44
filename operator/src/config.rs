//! Operator settings: which image and command run each language, and the
//! runner image. Defaults match the images `images/build.sh` produces; a
//! YAML file (`--config`) overrides them for real installs.

use std::collections::BTreeMap;

use sandrun_crds::Language;
use serde::{Deserialize, Serialize};

/// Replaced by the entry file in a runtime command.
pub const ENTRY_PLACEHOLDER: &str = "{entry}";

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct OperatorConfig {
    /// Image holding the static `/sandrun-runner` binary.
    pub runner_image: String,
    pub image_pull_policy: String,
    /// Added to the program's timeout for the Job's activeDeadlineSeconds:
    /// time to schedule, pull and start the sandbox. The runner enforces the
    /// program's own deadline precisely; this is only the backstop.
    pub startup_allowance_seconds: u32,
    /// How long after `timeoutSeconds` from the program's start the operator
    /// waits for the result before ending the run itself (`ResultOverdue`):
    /// the runner reports within about a second of its deadline unless the
    /// program stopped it or the node stopped reporting.
    pub result_grace_seconds: u32,
    /// A pool replaces a pod a run took when the run's pod ends or this
    /// long after the claim, whichever is first, so that starting the new
    /// sandbox does not compete with the run for CPU.
    pub pool_refill_delay_millis: u64,
    /// Most tasks (processes and threads) a program may run at once: the
    /// kernel refuses more, and a program that reaches them is killed with
    /// `TooManyProcesses` (a fork bomb).
    pub max_processes: u32,
    /// Size limit of the writable working directory.
    pub workspace_size_limit: String,
    /// Memory requested on top of the user's limit, for the sandbox itself
    /// (gVisor's Sentry and Gofer) and the runner: what the scheduler counts.
    pub sandbox_memory_overhead: String,
    /// The container's hard limit on top of the user's limit. The runner
    /// holds the program to the user's limit by sampling its memory; this
    /// headroom absorbs a fast allocator between two samples, so the kill is
    /// the runner's (with a result) and not the host's (without one).
    pub sandbox_memory_headroom: String,
    pub runtimes: BTreeMap<Language, Runtime>,
    /// RuntimeClass of sandbox pods whose Execution names none.
    pub runtime_class_name: String,
    /// Further RuntimeClasses an Execution may ask for. Empty by default: a
    /// user who could pick `runc` would leave the gVisor sandbox.
    pub allowed_runtime_classes: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Runtime {
    pub image: String,
    /// argv; `{entry}` becomes the entry file.
    pub command: Vec<String>,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        let runtime = |image: &str, program: &str| Runtime {
            image: image.to_owned(),
            command: vec![program.to_owned(), ENTRY_PLACEHOLDER.to_owned()],
        };
        Self {
            runner_image: "localhost/sandrun-runner:dev".to_owned(),
            image_pull_policy: "IfNotPresent".to_owned(),
            // Generous: a full node queues pods, and a queued run should
            // wait for room rather than fail.
            startup_allowance_seconds: 600,
            // The kubelet reports a container's end within about a second
            // on a quiet node; with 50 sandboxes starting at once on two
            // cores it took up to 59 s from the program's start.
            result_grace_seconds: 120,
            // A hello world takes about 200 ms from claim to its pod's
            // end; longer runs get their replacement after a second.
            pool_refill_delay_millis: 1000,
            max_processes: 128,
            workspace_size_limit: "256Mi".to_owned(),
            sandbox_memory_overhead: "64Mi".to_owned(),
            sandbox_memory_headroom: "256Mi".to_owned(),
            runtimes: BTreeMap::from([
                (Language::Python, runtime("localhost/sandrun-python:bookworm", "python3")),
                (Language::Node, runtime("localhost/sandrun-node:bookworm", "node")),
                (Language::Bash, runtime("localhost/sandrun-bash:bookworm", "bash")),
            ]),
            runtime_class_name: sandrun_crds::DEFAULT_RUNTIME_CLASS.to_owned(),
            allowed_runtime_classes: Vec::new(),
        }
    }
}

impl OperatorConfig {
    pub fn from_yaml(text: &str) -> Result<Self, serde_yaml::Error> {
        serde_yaml::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_file_keeps_the_other_defaults() {
        let config = OperatorConfig::from_yaml("runnerImage: reg.example/runner:1\n").unwrap();
        assert_eq!(config.runner_image, "reg.example/runner:1");
        assert_eq!(config.runtimes.len(), 3);
    }

    #[test]
    fn unknown_keys_and_languages_are_rejected() {
        assert!(OperatorConfig::from_yaml("runnerImag: x\n").is_err());
        assert!(OperatorConfig::from_yaml("runtimes:\n  cobol: {image: x, command: [y]}\n").is_err());
    }
}
