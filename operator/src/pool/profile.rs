//! A pool's profile (what its pods are), whether an Execution fits it, and
//! the Job that makes one warm pod. Pure: no client, no clock.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{EnvVar, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use sandrun_crds::{ExecutionSpec, SandboxPool, SandboxPoolSpec};
use sandrun_runner::prestart::can_start_ahead;

use crate::config::{OperatorConfig, ENTRY_PLACEHOLDER};
use crate::labels::{
    fnv1a, MANAGED_BY, MANAGED_BY_KEY, POOL_KEY, PROFILE_KEY, ROLE_EXECUTION, ROLE_KEY, TERMINATION_MESSAGE_PATH,
};
use crate::objects::{max_file_bytes, program_env, sandbox_pod, Sandbox, BIN_DIR, WORKDIR};
use crate::validate::{self, Program, SpecError};
use sandrun_crds::quantity::cpu_millis;

/// What every pod of a pool is: enough to tell whether a run fits, and to
/// notice when the pool's spec changed under pods started before.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub image: String,
    pub runtime_class: String,
    pub cpu: String,
    pub cpu_millis: u64,
    /// What a program may use; the runner holds each run to its own limit.
    pub memory_limit_bytes: u64,
    pub container_memory_request_bytes: u64,
    pub container_memory_limit_bytes: u64,
}

impl Profile {
    pub fn of(spec: &SandboxPoolSpec, config: &OperatorConfig) -> Result<Self, SpecError> {
        // The pool is checked as the Execution it would serve would be.
        let as_run = ExecutionSpec {
            language: spec.language,
            image: spec.image.clone(),
            command: spec.image.as_ref().map(|_| vec!["true".to_owned()]),
            source: spec.language.map(|_| placeholder_source()),
            runtime_class_name: spec.runtime_class_name.clone(),
            limits: sandrun_crds::Limits {
                memory: Some(spec.memory().to_owned()),
                cpu: Some(spec.cpu().to_owned()),
                ..Default::default()
            },
            ..Default::default()
        };
        let program = validate::program(&as_run, config)?;
        let cpu_millis = cpu_millis(spec.cpu()).ok_or_else(|| SpecError::BadMemory(spec.cpu().to_owned()))?;
        Ok(Self {
            image: program.image,
            runtime_class: program.runtime_class,
            cpu: spec.cpu().to_owned(),
            cpu_millis,
            memory_limit_bytes: program.memory_limit_bytes,
            container_memory_request_bytes: program.container_memory_request_bytes,
            container_memory_limit_bytes: program.container_memory_limit_bytes,
        })
    }

    /// Whether a run of `program` (from `spec`) may take a pod of this
    /// profile: the same image and RuntimeClass, and limits within the pod's.
    pub fn fits(&self, program: &Program, spec: &ExecutionSpec) -> bool {
        program.image == self.image
            && program.runtime_class == self.runtime_class
            && program.memory_limit_bytes <= self.memory_limit_bytes
            && cpu_millis(spec.cpu()).is_some_and(|cpu| cpu <= self.cpu_millis)
    }

    /// A short, stable digest, put on each pod: a pod of an older profile is
    /// replaced, never handed a run.
    pub fn digest(&self) -> String {
        let text = format!(
            "{}\n{}\n{}\n{}\n{}",
            self.image, self.runtime_class, self.cpu, self.memory_limit_bytes, self.container_memory_limit_bytes
        );
        format!("{:08x}", fnv1a(text.as_bytes()) as u32)
    }
}

fn placeholder_source() -> sandrun_crds::Source {
    let file = sandrun_crds::SourceFile { path: "main".to_owned(), content: String::new() };
    sandrun_crds::Source { files: vec![file], entry: None }
}

/// Labels of a pool's Jobs and pods.
pub fn pool_labels(pool: &str, profile: &Profile) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_KEY.to_owned(), MANAGED_BY.to_owned()),
        (POOL_KEY.to_owned(), pool.to_owned()),
        (PROFILE_KEY.to_owned(), profile.digest()),
    ])
}

/// Name of one warm Job: the pool's name (cut to fit) and a suffix the
/// caller picks at random. Pods add five characters to it.
pub fn warm_job_name(pool: &str, suffix: &str) -> String {
    const PREFIX: &str = "sandrun-warm-";
    let keep = 63 - PREFIX.len() - 1 - suffix.len();
    let stem: String = pool.chars().take(keep).collect();
    format!("{PREFIX}{}-{suffix}", stem.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
}

/// The interpreter a language pool's runner starts ahead of its program:
/// the runtime's when its command is `INTERPRETER {entry}` and the runner
/// knows how to (python, node). A run's own arguments still fit.
fn interpreter(spec: &SandboxPoolSpec, config: &OperatorConfig) -> Option<String> {
    let runtime = config.runtimes.get(&spec.language?)?;
    match runtime.command.as_slice() {
        [program, entry] if entry == ENTRY_PLACEHOLDER && can_start_ahead(program) => Some(program.clone()),
        _ => None,
    }
}

/// One warm sandbox: a Job like a cold run's, whose runner waits on its
/// stdin for the one program it will ever run. Owned by the pool until a
/// run claims it; no deadline until then (the run's own bounds apply after).
pub fn warm_job(pool: &SandboxPool, profile: &Profile, config: &OperatorConfig, suffix: &str) -> Job {
    let name = pool.name_any();
    let runner_argv = vec![
        format!("{BIN_DIR}/sandrun-runner"),
        "warm".to_owned(),
        "--max-processes".to_owned(),
        config.max_processes.to_string(),
        "--max-file-bytes".to_owned(),
        max_file_bytes(&config.workspace_size_limit).to_string(),
        "--workdir".to_owned(),
        WORKDIR.to_owned(),
        "--result-file".to_owned(),
        TERMINATION_MESSAGE_PATH.to_owned(),
    ];
    let runner_argv = match interpreter(&pool.spec, config) {
        Some(program) => [runner_argv, vec!["--prestart".to_owned(), program]].concat(),
        None => runner_argv,
    };
    let env: Vec<EnvVar> = program_env(Vec::new());
    let pod = sandbox_pod(
        Sandbox {
            image: &profile.image,
            runtime_class: &profile.runtime_class,
            cpu: &profile.cpu,
            memory_request_bytes: profile.container_memory_request_bytes,
            memory_limit_bytes: profile.container_memory_limit_bytes,
            runner_argv,
            env,
            waits_for_program: true,
        },
        Vec::new(),
        Vec::new(),
        config,
    );
    let labels = pool_labels(&name, profile);
    let mut pod_labels = labels.clone();
    pod_labels.insert(ROLE_KEY.to_owned(), ROLE_EXECUTION.to_owned());
    Job {
        metadata: ObjectMeta {
            name: Some(warm_job_name(&name, suffix)),
            namespace: pool.namespace(),
            labels: Some(labels),
            owner_references: pool.controller_owner_ref(&()).map(|owner| vec![owner]),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            completions: Some(1),
            parallelism: Some(1),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels), ..Default::default() }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandrun_crds::{Language, Limits, PoolLimits, Source, SourceFile};

    fn pool_spec(memory: &str, cpu: &str) -> SandboxPoolSpec {
        SandboxPoolSpec {
            size: 2,
            language: Some(Language::Python),
            limits: PoolLimits { memory: Some(memory.into()), cpu: Some(cpu.into()) },
            ..Default::default()
        }
    }

    fn run(language: Language, memory: &str, cpu: &str, runtime_class: Option<&str>) -> ExecutionSpec {
        ExecutionSpec {
            language: Some(language),
            source: Some(Source { files: vec![SourceFile { path: "main".into(), content: "x".into() }], entry: None }),
            limits: Limits { memory: Some(memory.into()), cpu: Some(cpu.into()), ..Default::default() },
            runtime_class_name: runtime_class.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn which_runs_fit_a_pool() {
        let config = OperatorConfig { allowed_runtime_classes: vec!["runc".into()], ..Default::default() };
        let profile = Profile::of(&pool_spec("256Mi", "1"), &config).unwrap();
        let cases = [
            ("same language and limits", run(Language::Python, "256Mi", "1", None), true),
            ("lower limits", run(Language::Python, "64Mi", "500m", None), true),
            ("more memory", run(Language::Python, "512Mi", "1", None), false),
            ("more cpu", run(Language::Python, "256Mi", "2", None), false),
            ("another language", run(Language::Node, "256Mi", "1", None), false),
            ("another runtime class", run(Language::Python, "256Mi", "1", Some("runc")), false),
        ];
        for (case, spec, want) in cases {
            let program = validate::program(&spec, &config).unwrap();
            assert_eq!(profile.fits(&program, &spec), want, "{case}");
        }
    }

    #[test]
    fn a_bad_pool_is_refused_and_a_changed_one_has_another_digest() {
        let config = OperatorConfig::default();
        let mut spec = pool_spec("256Mi", "1");
        spec.runtime_class_name = Some("runc".into());
        assert!(Profile::of(&spec, &config).is_err(), "runc is not allowed by default");
        let a = Profile::of(&pool_spec("256Mi", "1"), &config).unwrap();
        let b = Profile::of(&pool_spec("512Mi", "1"), &config).unwrap();
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.digest(), Profile::of(&pool_spec("256Mi", "1"), &config).unwrap().digest());
    }

    #[test]
    fn a_warm_job_is_a_locked_down_sandbox_waiting_on_stdin() {
        let config = OperatorConfig::default();
        let mut pool = SandboxPool::new("python", pool_spec("128Mi", "1"));
        pool.metadata.namespace = Some("team-a".into());
        pool.metadata.uid = Some("pool-uid".into());
        let profile = Profile::of(&pool.spec, &config).unwrap();
        let job = warm_job(&pool, &profile, &config, "abc123");
        assert_eq!(job.name_any(), "sandrun-warm-python-abc123");
        assert_eq!(job.owner_references()[0].uid, "pool-uid");
        let spec = job.spec.unwrap();
        assert_eq!(spec.active_deadline_seconds, None, "a warm pod waits as long as it must");
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.runtime_class_name.as_deref(), Some("runsc"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        let run = &pod.containers[0];
        assert_eq!((run.stdin, run.stdin_once), (Some(true), Some(true)));
        assert_eq!(run.command.as_ref().unwrap()[1], "warm");
        assert!(run.security_context.as_ref().unwrap().read_only_root_filesystem.unwrap());
        let labels = spec.template.metadata.unwrap().labels.unwrap();
        assert_eq!(labels.get(ROLE_KEY).map(String::as_str), Some(ROLE_EXECUTION), "the deny-all policy selects it");
        assert_eq!(labels.get(POOL_KEY).map(String::as_str), Some("python"));
    }

    #[test]
    fn which_pools_start_their_interpreter_ahead() {
        let custom = |command: &[&str]| {
            let mut config = OperatorConfig::default();
            let python = config.runtimes.get_mut(&Language::Python).unwrap();
            python.command = command.iter().map(|s| (*s).to_owned()).collect();
            config
        };
        let image_pool = SandboxPoolSpec { language: None, image: Some("busybox:1".into()), ..pool_spec("128Mi", "1") };
        let cases = [
            ("python", pool_spec("128Mi", "1"), OperatorConfig::default(), Some("python3")),
            (
                "node",
                SandboxPoolSpec { language: Some(Language::Node), ..pool_spec("128Mi", "1") },
                OperatorConfig::default(),
                Some("node"),
            ),
            (
                "bash: no bootstrap",
                SandboxPoolSpec { language: Some(Language::Bash), ..pool_spec("128Mi", "1") },
                OperatorConfig::default(),
                None,
            ),
            ("an image", image_pool, OperatorConfig::default(), None),
            ("flags before the entry", pool_spec("128Mi", "1"), custom(&["python3", "-u", "{entry}"]), None),
            (
                "another interpreter path",
                pool_spec("128Mi", "1"),
                custom(&["/usr/bin/python3.11", "{entry}"]),
                Some("/usr/bin/python3.11"),
            ),
        ];
        for (case, spec, config, want) in cases {
            let pool = SandboxPool::new("p", spec);
            let profile = Profile::of(&pool.spec, &config).unwrap();
            let argv = warm_job(&pool, &profile, &config, "x").spec.unwrap().template.spec.unwrap().containers[0]
                .command
                .clone()
                .unwrap();
            let got = argv.iter().position(|a| a == "--prestart").map(|i| argv[i + 1].as_str());
            assert_eq!(got, want, "{case}: {argv:?}");
        }
    }

    #[test]
    fn long_pool_names_are_cut() {
        let name = warm_job_name(&"p".repeat(80), "abc123");
        assert!(name.len() <= 63, "{name}");
    }
}
