//! Execution spec → the objects that run it. Pure: no client, no clock.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, KeyToPath, PodDNSConfig,
    PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::ByteString;
use kube::Resource;
use sandrun_crds::{Execution, ExecutionSpec};

use crate::config::OperatorConfig;
use crate::labels::{
    child_labels, child_name, inputs_name, pod_labels, INSTALL_CONTAINER, MANAGED_BY, MANAGED_BY_KEY,
    NETWORK_POLICY_NAME, ROLE_EXECUTION, ROLE_KEY, RUN_CONTAINER, TERMINATION_MESSAGE_PATH,
};
use crate::text::unsafe_for_apply;
use crate::validate::Program;
use sandrun_crds::quantity::memory_bytes;

/// The unprivileged user every execution runs as (the images' `sandbox` user).
pub const SANDBOX_UID: i64 = 65532;
pub const BIN_DIR: &str = "/sandrun/bin";
const INPUT_DIR: &str = "/sandrun/input";
pub const WORKDIR: &str = "/workspace";
const STDIN_KEY: &str = "stdin";

fn owned_meta(execution: &Execution, namespace: &str) -> ObjectMeta {
    let name = execution.metadata.name.clone().unwrap_or_default();
    ObjectMeta {
        name: Some(child_name(&name)),
        namespace: Some(namespace.to_owned()),
        labels: Some(child_labels(&name)),
        owner_references: execution.controller_owner_ref(&()).map(|owner| vec![owner]),
        ..Default::default()
    }
}

/// A file may take 7/8 of the workspace: the write fails (EFBIG) before the
/// kubelet would evict the pod for a full workspace and lose its result.
pub fn max_file_bytes(workspace_size_limit: &str) -> u64 {
    memory_bytes(workspace_size_limit).map_or(0, |bytes| bytes / 8 * 7)
}

/// Source files and stdin. Keys are `file-N` because ConfigMap keys cannot
/// hold `/`; the volume's `items` put each file back at its path.
pub fn config_map(execution: &Execution, namespace: &str) -> ConfigMap {
    let spec = &execution.spec;
    let files = spec.source.iter().flat_map(|s| &s.files).enumerate().map(|(i, f)| (format!("file-{i}"), &f.content));
    let stdin = spec.stdin.iter().map(|stdin| (STDIN_KEY.to_owned(), stdin));
    // Text the apply body cannot carry as YAML goes in base64 instead; the
    // mounted file is the same either way.
    let (mut data, mut binary) = (BTreeMap::new(), BTreeMap::new());
    for (key, text) in files.chain(stdin) {
        if text.contains(unsafe_for_apply) {
            binary.insert(key, ByteString(text.as_bytes().to_vec()));
        } else {
            data.insert(key, text.clone());
        }
    }
    let mut metadata = owned_meta(execution, namespace);
    let name = execution.metadata.name.as_deref().unwrap_or_default();
    metadata.name = Some(inputs_name(name, execution.metadata.uid.as_deref()));
    ConfigMap { metadata, data: Some(data), binary_data: (!binary.is_empty()).then_some(binary), immutable: Some(true) }
}

fn input_items(execution: &Execution) -> Vec<KeyToPath> {
    let spec = &execution.spec;
    let mut items: Vec<KeyToPath> = spec
        .source
        .iter()
        .flat_map(|s| &s.files)
        .enumerate()
        .map(|(i, file)| KeyToPath { key: format!("file-{i}"), path: format!("src/{}", file.path), mode: None })
        .collect();
    if spec.stdin.is_some() {
        items.push(KeyToPath { key: STDIN_KEY.to_owned(), path: STDIN_KEY.to_owned(), mode: None });
    }
    items
}

pub fn job(execution: &Execution, namespace: &str, program: &Program, config: &OperatorConfig) -> Job {
    let spec = &execution.spec;
    let name = execution.metadata.name.clone().unwrap_or_default();
    let timeout = spec.timeout_seconds();
    let mut runner_argv = vec![
        format!("{BIN_DIR}/sandrun-runner"),
        "run".to_owned(),
        "--timeout-ms".to_owned(),
        (u64::from(timeout) * 1000).to_string(),
        "--max-output-bytes".to_owned(),
        spec.max_output_bytes().to_string(),
        "--memory-limit-bytes".to_owned(),
        program.memory_limit_bytes.to_string(),
        "--max-processes".to_owned(),
        config.max_processes.to_string(),
        "--max-file-bytes".to_owned(),
        max_file_bytes(&config.workspace_size_limit).to_string(),
        "--source".to_owned(),
        format!("{INPUT_DIR}/src"),
        "--workdir".to_owned(),
        WORKDIR.to_owned(),
        "--stdin".to_owned(),
        format!("{INPUT_DIR}/{STDIN_KEY}"),
        "--result-file".to_owned(),
        TERMINATION_MESSAGE_PATH.to_owned(),
        "--".to_owned(),
    ];
    runner_argv.extend(program.argv.iter().cloned());

    let env = run_env(spec);

    let mounts = vec![mount("input", INPUT_DIR, true)];
    let input = Volume {
        name: "input".to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: inputs_name(&name, execution.metadata.uid.as_deref()),
            items: Some(input_items(execution)),
            default_mode: Some(0o444),
            optional: Some(false),
        }),
        ..Default::default()
    };
    let pod = sandbox_pod(
        Sandbox {
            image: &program.image,
            runtime_class: &program.runtime_class,
            cpu: spec.cpu(),
            memory_request_bytes: program.container_memory_request_bytes,
            memory_limit_bytes: program.container_memory_limit_bytes,
            runner_argv,
            env,
            waits_for_program: false,
        },
        mounts,
        vec![input],
        config,
    );

    Job {
        metadata: owned_meta(execution, namespace),
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            completions: Some(1),
            parallelism: Some(1),
            active_deadline_seconds: Some(i64::from(timeout + config.startup_allowance_seconds)),
            // A little after the Execution's own TTL, which deletes it first.
            ttl_seconds_after_finished: spec.ttl_seconds_after_finished.map(|ttl| ttl.saturating_add(60) as i32),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels(&name)), ..Default::default() }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What differs between the sandboxes of a cold run and of a warm pool.
pub struct Sandbox<'a> {
    pub image: &'a str,
    pub runtime_class: &'a str,
    pub cpu: &'a str,
    pub memory_request_bytes: u64,
    pub memory_limit_bytes: u64,
    pub runner_argv: Vec<String>,
    pub env: Vec<EnvVar>,
    /// A warm sandbox's runner reads its one program from stdin, which the
    /// kubelet opens to the first attach and closes after it.
    pub waits_for_program: bool,
}

/// The sandbox pod: gVisor, no token, no DNS, non-root, read-only root,
/// the runner installed by an init container. The same for every run,
/// cold or warm.
pub fn sandbox_pod(
    sandbox: Sandbox,
    extra_mounts: Vec<VolumeMount>,
    extra_volumes: Vec<Volume>,
    config: &OperatorConfig,
) -> PodSpec {
    let mut mounts = vec![mount("runner", BIN_DIR, true)];
    mounts.extend(extra_mounts);
    mounts.extend([mount("workspace", WORKDIR, false), mount("tmp", "/tmp", false)]);
    let run = Container {
        name: RUN_CONTAINER.to_owned(),
        image: Some(sandbox.image.to_owned()),
        image_pull_policy: Some(config.image_pull_policy.clone()),
        command: Some(sandbox.runner_argv),
        working_dir: Some(WORKDIR.to_owned()),
        env: Some(sandbox.env),
        resources: Some(resources(
            sandbox.cpu,
            &sandbox.memory_request_bytes.to_string(),
            &sandbox.memory_limit_bytes.to_string(),
            &config.workspace_size_limit,
        )),
        security_context: Some(locked_down()),
        // Never the log's tail: only the runner's own words count as a result.
        termination_message_path: Some(TERMINATION_MESSAGE_PATH.to_owned()),
        termination_message_policy: Some("File".to_owned()),
        volume_mounts: Some(mounts),
        stdin: sandbox.waits_for_program.then_some(true),
        stdin_once: sandbox.waits_for_program.then_some(true),
        ..Default::default()
    };
    let install = Container {
        name: INSTALL_CONTAINER.to_owned(),
        image: Some(config.runner_image.clone()),
        image_pull_policy: Some(config.image_pull_policy.clone()),
        command: Some(vec!["/sandrun-runner".to_owned(), "install".to_owned(), BIN_DIR.to_owned()]),
        resources: Some(resources("100m", "32Mi", "32Mi", "64Mi")),
        security_context: Some(locked_down()),
        volume_mounts: Some(vec![mount("runner", BIN_DIR, false)]),
        ..Default::default()
    };
    let mut volumes = vec![empty_dir("runner", "64Mi")];
    volumes.extend(extra_volumes);
    volumes.extend([empty_dir("workspace", &config.workspace_size_limit), empty_dir("tmp", "64Mi")]);
    PodSpec {
        runtime_class_name: Some(sandbox.runtime_class.to_owned()),
        restart_policy: Some("Never".to_owned()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        // The runner reports its own deadline; nothing needs a long goodbye.
        termination_grace_period_seconds: Some(2),
        // No cluster DNS for code with no network: lookups fail at once on
        // loopback instead of hanging until a timeout.
        dns_policy: Some("None".to_owned()),
        dns_config: Some(PodDNSConfig {
            nameservers: Some(vec!["127.0.0.1".to_owned()]),
            options: None,
            searches: None,
        }),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(SANDBOX_UID),
            run_as_group: Some(SANDBOX_UID),
            fs_group: Some(SANDBOX_UID),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_owned(), localhost_profile: None }),
            ..Default::default()
        }),
        init_containers: Some(vec![install]),
        containers: vec![run],
        volumes: Some(volumes),
        ..Default::default()
    }
}

/// The Execution's environment for its program, with the defaults below.
fn run_env(spec: &ExecutionSpec) -> Vec<EnvVar> {
    let set = spec.env.iter().map(|e| EnvVar { name: e.name.clone(), value: Some(e.value.clone()), value_from: None });
    program_env(set.collect())
}

/// `HOME` and `TMPDIR` for the program unless the Execution sets them.
pub fn program_env(mut env: Vec<EnvVar>) -> Vec<EnvVar> {
    for (key, value) in [("HOME", WORKDIR), ("TMPDIR", "/tmp")] {
        if !env.iter().any(|e| e.name == key) {
            env.push(EnvVar { name: key.to_owned(), value: Some(value.to_owned()), value_from: None });
        }
    }
    env
}

/// What a warm runner is handed for `execution`: everything per run that
/// a cold run's pod spec and inputs would carry.
pub fn delivery(execution: &Execution, program: &Program) -> sandrun_runner::Delivery {
    use sandrun_runner::protocol::{DeliveredFile, EnvPair};
    let spec = &execution.spec;
    let env = run_env(spec);
    sandrun_runner::Delivery {
        execution_uid: execution.metadata.uid.clone().unwrap_or_default(),
        command: program.argv.clone(),
        env: env.into_iter().map(|e| EnvPair { name: e.name, value: e.value.unwrap_or_default() }).collect(),
        files: spec
            .source
            .iter()
            .flat_map(|s| &s.files)
            .map(|f| DeliveredFile { path: f.path.clone(), content: f.content.clone() })
            .collect(),
        stdin: spec.stdin.clone(),
        timeout_ms: u64::from(spec.timeout_seconds()) * 1000,
        max_output_bytes: spec.max_output_bytes() as usize,
        memory_limit_bytes: program.memory_limit_bytes,
    }
}

/// One per namespace, not owned by any Execution: it must outlive each of
/// them. No rules at all means no traffic in or out of execution pods.
pub fn deny_all_network_policy(namespace: &str) -> NetworkPolicy {
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(NETWORK_POLICY_NAME.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(MANAGED_BY_KEY.to_owned(), MANAGED_BY.to_owned())])),
            ..Default::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(ROLE_KEY.to_owned(), ROLE_EXECUTION.to_owned())])),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            ingress: None,
            egress: None,
        }),
    }
}

fn locked_down() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        privileged: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), add: None }),
        ..Default::default()
    }
}

fn resources(cpu: &str, memory_request: &str, memory_limit: &str, ephemeral: &str) -> ResourceRequirements {
    let quantity = |q: &str| Quantity(q.to_owned());
    let limits = BTreeMap::from([
        ("cpu".to_owned(), quantity(cpu)),
        ("memory".to_owned(), quantity(memory_limit)),
        ("ephemeral-storage".to_owned(), quantity(ephemeral)),
    ]);
    // Memory the program may really use is requested so the node never
    // overcommits it; CPU is shared, so only a slice is requested.
    let requests =
        BTreeMap::from([("cpu".to_owned(), quantity("50m")), ("memory".to_owned(), quantity(memory_request))]);
    ResourceRequirements { limits: Some(limits), requests: Some(requests), claims: None }
}

fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(read_only),
        ..Default::default()
    }
}

fn empty_dir(name: &str, size: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource { medium: None, size_limit: Some(Quantity(size.to_owned())) }),
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "objects_tests.rs"]
mod tests;
