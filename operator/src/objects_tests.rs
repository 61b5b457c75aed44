use super::*;
use crate::validate::{program, SpecError};
use sandrun_crds::{ExecutionSpec, Language, Limits, Source, SourceFile};

fn execution(spec: ExecutionSpec) -> Execution {
    let mut e = Execution::new("hello", spec);
    e.metadata.namespace = Some("team-a".into());
    e.metadata.uid = Some("uid-1".into());
    e
}

fn python_hello() -> Execution {
    execution(ExecutionSpec {
        language: Some(Language::Python),
        source: Some(Source {
            files: vec![
                SourceFile { path: "main.py".into(), content: "print(input())".into() },
                SourceFile { path: "pkg/util.py".into(), content: "X = 1".into() },
            ],
            entry: None,
        }),
        stdin: Some("42\n".into()),
        limits: Limits { timeout_seconds: Some(5), memory: Some("64Mi".into()), ..Default::default() },
        ..Default::default()
    })
}

fn job_of(e: &Execution) -> Job {
    let config = OperatorConfig::default();
    let p = program(&e.spec, &config).unwrap();
    job(e, "team-a", &p, &config)
}

#[test]
fn job_is_sandboxed_and_locked_down() {
    let job = job_of(&python_hello());
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(0));
    assert_eq!(spec.active_deadline_seconds, Some(5 + 600));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.runtime_class_name.as_deref(), Some("runsc"));
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.enable_service_links, Some(false));
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    for c in pod.containers.iter().chain(pod.init_containers.iter().flatten()) {
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
        assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_owned()][..]));
        let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert!(limits.contains_key("cpu") && limits.contains_key("memory"), "{}", c.name);
    }
    let labels = spec.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert_eq!(labels.get(ROLE_KEY).map(String::as_str), Some(ROLE_EXECUTION));
}

#[test]
fn run_container_wraps_the_program_in_the_runner() {
    let job = job_of(&python_hello());
    let pod = job.spec.unwrap().template.spec.unwrap();
    let run = &pod.containers[0];
    assert_eq!(run.image.as_deref(), Some("localhost/sandrun-python:bookworm"));
    let argv = run.command.clone().unwrap();
    assert_eq!(argv[0], "/sandrun/bin/sandrun-runner");
    assert_eq!(&argv[argv.len() - 3..], ["--", "python3", "main.py"]);
    let flag = |name: &str| argv.iter().position(|a| a == name).map(|i| argv[i + 1].clone());
    assert_eq!(flag("--timeout-ms").as_deref(), Some("5000"));
    assert_eq!(flag("--max-output-bytes").as_deref(), Some("65536"));
    assert_eq!(flag("--memory-limit-bytes").as_deref(), Some("67108864"), "the runner holds the program to 64Mi");
    assert_eq!(flag("--result-file"), run.termination_message_path, "the frame goes where the kubelet reads it");
    assert_eq!(run.termination_message_policy.as_deref(), Some("File"), "never the log's tail as a result");
    let limits = run.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["memory"].0, ((64 + 256) << 20).to_string(), "the sandbox gets headroom above it");
    let requests = run.resources.as_ref().unwrap().requests.as_ref().unwrap();
    assert_eq!(requests["memory"].0, ((64 + 64) << 20).to_string(), "the scheduler counts the program and the sandbox");
    assert_eq!(limits["cpu"].0, "1");
}

#[test]
fn children_are_owned_by_the_execution_and_named_after_it() {
    let e = python_hello();
    let (job, cm) = (job_of(&e), config_map(&e, "team-a"));
    assert_eq!(job.metadata.name.as_deref(), Some("sandrun-hello"));
    // The inputs carry the start of the uid: a later same-named run's
    // pod must never mount them from the kubelet's cache.
    assert_eq!(cm.metadata.name.as_deref(), Some("sandrun-hello-uid-1"));
    let volumes = job.spec.as_ref().and_then(|s| s.template.spec.as_ref()).and_then(|p| p.volumes.clone()).unwrap();
    let input = volumes.iter().find_map(|v| v.config_map.as_ref()).unwrap();
    assert_eq!(input.name, "sandrun-hello-uid-1");
    for meta in [&job.metadata, &cm.metadata] {
        assert_eq!(meta.namespace.as_deref(), Some("team-a"));
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("Execution", "uid-1", Some(true)));
    }
}

#[test]
fn config_map_holds_files_and_stdin_and_the_volume_maps_them_back() {
    let e = python_hello();
    let cm = config_map(&e, "team-a");
    let data = cm.data.unwrap();
    assert_eq!(data["file-0"], "print(input())");
    assert_eq!(data["file-1"], "X = 1");
    assert_eq!(data["stdin"], "42\n");
    assert_eq!(cm.immutable, Some(true));
    let pod = job_of(&e).spec.unwrap().template.spec.unwrap();
    let input = pod.volumes.unwrap().into_iter().find(|v| v.name == "input").unwrap();
    let items: Vec<(String, String)> =
        input.config_map.unwrap().items.unwrap().into_iter().map(|i| (i.key, i.path)).collect();
    assert_eq!(
        items,
        [("file-0", "src/main.py"), ("file-1", "src/pkg/util.py"), ("stdin", "stdin")]
            .map(|(k, p)| (k.to_owned(), p.to_owned()))
    );
}

#[test]
fn user_env_is_kept_and_defaults_do_not_override_it() {
    let mut e = python_hello();
    e.spec.env = vec![sandrun_crds::EnvVar { name: "HOME".into(), value: "/custom".into() }];
    let pod = job_of(&e).spec.unwrap().template.spec.unwrap();
    let env = pod.containers[0].env.clone().unwrap();
    let home: Vec<_> = env.iter().filter(|v| v.name == "HOME").collect();
    assert_eq!(home.len(), 1);
    assert_eq!(home[0].value.as_deref(), Some("/custom"));
    assert!(env.iter().any(|v| v.name == "TMPDIR"));
}

#[test]
fn runtime_class_and_ttl_follow_the_spec_within_what_the_operator_allows() {
    let mut e = python_hello();
    e.spec.runtime_class_name = Some("runc".into());
    e.spec.ttl_seconds_after_finished = Some(30);
    assert_eq!(
        program(&e.spec, &OperatorConfig::default()),
        Err(SpecError::RuntimeClassNotAllowed("runc".into())),
        "leaving gVisor must be allowed explicitly"
    );
    let config = OperatorConfig { allowed_runtime_classes: vec!["runc".into()], ..OperatorConfig::default() };
    let p = program(&e.spec, &config).unwrap();
    let spec = job(&e, "team-a", &p, &config).spec.unwrap();
    assert_eq!(spec.ttl_seconds_after_finished, Some(90));
    assert_eq!(spec.template.spec.unwrap().runtime_class_name.as_deref(), Some("runc"));

    let renamed = OperatorConfig { runtime_class_name: "gvisor".into(), ..OperatorConfig::default() };
    let p = program(&python_hello().spec, &renamed).unwrap();
    assert_eq!(p.runtime_class, "gvisor", "the operator's default applies when the spec names none");
}

#[test]
fn apply_bodies_carry_api_version_and_kind_and_no_nulls() {
    let e = python_hello();
    for body in [
        serde_json::to_value(job_of(&e)).unwrap(),
        serde_json::to_value(config_map(&e, "team-a")).unwrap(),
        serde_json::to_value(deny_all_network_policy("team-a")).unwrap(),
    ] {
        assert!(body["apiVersion"].is_string() && body["kind"].is_string(), "{body}");
        assert!(!body.to_string().contains("null"), "null in apply body: {body}");
    }
}

#[test]
fn network_policy_denies_everything_for_execution_pods() {
    let np = deny_all_network_policy("team-a");
    let spec = np.spec.unwrap();
    assert_eq!(spec.policy_types.unwrap(), ["Ingress", "Egress"]);
    assert!(spec.ingress.is_none() && spec.egress.is_none());
    let selector = spec.pod_selector.unwrap().match_labels.unwrap();
    assert_eq!(selector.get(ROLE_KEY).map(String::as_str), Some(ROLE_EXECUTION));
    assert!(np.metadata.owner_references.is_none());
}

#[test]
fn inputs_yaml_cannot_carry_go_in_base64() {
    let mut e = python_hello();
    e.spec.stdin = Some("del \u{7f} here".into());
    let cm = config_map(&e, "team-a");
    assert_eq!(cm.data.as_ref().unwrap().get("file-0").map(String::as_str), Some("print(input())"));
    let binary = cm.binary_data.expect("binaryData for the unsafe stdin");
    assert_eq!(binary.get(STDIN_KEY).map(|b| b.0.as_slice()), Some("del \u{7f} here".as_bytes()));
    assert!(config_map(&python_hello(), "team-a").binary_data.is_none());
}

#[test]
fn files_stop_short_of_the_workspace_size() {
    let job = job_of(&python_hello());
    let run = &job.spec.unwrap().template.spec.unwrap().containers[0];
    let args = run.command.iter().chain(run.args.iter()).flatten().cloned().collect::<Vec<_>>();
    let flag = args.iter().position(|a| a == "--max-file-bytes").expect("the runner gets a file size limit");
    assert_eq!(args[flag + 1], (224u64 << 20).to_string(), "7/8 of the default 256Mi workspace");
}
