//! Executions run for real: runsc pods on the local cluster, results read
//! back from the Execution's status.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::ListParams;
use sandrun_crds::{Language, Limits, Phase};
use sandrun_e2e::{program, python, status_of, with_limits, TestNamespace};
use sandrun_runner::protocol::FRAME_IN_LOG;
use sandrun_runner::{parse_frame, FRAME_PREFIX};

/// The termination message the run container of a Job's pod left.
async fn run_container_message(ns: &TestNamespace, job: &str) -> String {
    let pods =
        ns.api::<Pod>().list(&ListParams::default().labels(&format!("job-name={job}"))).await.expect("list pods");
    let pod = pods.items.into_iter().next().expect("the Job's pod is kept");
    let statuses = pod.status.and_then(|s| s.container_statuses).unwrap_or_default();
    let run = statuses.into_iter().find(|c| c.name == "run").expect("run container status");
    run.state.and_then(|s| s.terminated).and_then(|t| t.message).unwrap_or_default()
}

#[tokio::test]
async fn python_streams_and_exit_code_come_back_separately() {
    let ns = TestNamespace::new("streams").await;
    let code = "import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\nsys.exit(3)\n";
    let done = ns.run("exit-three", python(code)).await;
    let s = status_of(&done);
    assert_eq!(s.phase, Phase::Failed);
    assert_eq!(s.reason.as_deref(), Some("NonZeroExitCode"));
    assert_eq!(s.exit_code, Some(3));
    assert_eq!(s.stdout.as_deref(), Some("to stdout\n"));
    assert_eq!(s.stderr.as_deref(), Some("to stderr\n"));
    assert!(s.duration_millis.is_some_and(|d| d > 0));
    assert!(s.start_time.is_some() && s.completion_time.is_some());
    assert_eq!(s.condition("Complete").map(|c| c.status.as_str()), Some("True"));

    // The Job ran under gVisor, owned by the Execution, behind the policy.
    let job = ns.api::<Job>().get(s.job_name.as_deref().expect("jobName")).await.expect("Job exists");
    let pod_spec = job.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod_spec.runtime_class_name.as_deref(), Some("runsc"));
    assert_eq!(job.metadata.owner_references.unwrap()[0].uid, done.metadata.uid.clone().unwrap());
    let uid = done.metadata.uid.clone().unwrap();
    ns.api::<ConfigMap>().get(&format!("sandrun-exit-three-{}", &uid[..8])).await.expect("inputs ConfigMap exists");

    // The result travelled in the pod's status, so no log had to be read.
    let message = run_container_message(&ns, s.job_name.as_deref().unwrap()).await;
    assert!(message.starts_with(FRAME_PREFIX), "termination message: {message:?}");
    let frame = parse_frame(&message).expect("a frame").expect("it parses");
    assert_eq!((frame.exit_code, frame.stderr.as_str()), (Some(3), "to stderr\n"));
    let policy = ns.api::<NetworkPolicy>().get("sandrun-deny-all").await.expect("deny-all NetworkPolicy exists");
    assert_eq!(policy.spec.unwrap().policy_types.unwrap(), ["Ingress", "Egress"]);
}

#[tokio::test]
async fn every_language_runs_hello_world() {
    let ns = TestNamespace::new("languages").await;
    let cases = [
        (Language::Python, "main.py", "print('hello from python')", "hello from python\n"),
        (Language::Node, "main.js", "console.log('hello from node')", "hello from node\n"),
        (Language::Bash, "main.sh", "echo \"hello from $0\"", "hello from main.sh\n"),
    ];
    for (language, file, code, want) in cases {
        let done = ns.run(&format!("hello-{}", language.as_str()), program(language, file, code)).await;
        let s = status_of(&done);
        assert_eq!(
            (s.phase, s.exit_code, s.stdout.as_deref()),
            (Phase::Succeeded, Some(0), Some(want)),
            "{language:?}: {s:?}"
        );
    }
}

#[tokio::test]
async fn an_infinite_loop_times_out_at_its_deadline() {
    let ns = TestNamespace::new("timeout").await;
    let spec = with_limits(
        python("print('started', flush=True)\nwhile True:\n    pass\n"),
        Limits { timeout_seconds: Some(2), ..Default::default() },
    );
    let s = status_of(&ns.run("forever", spec).await);
    assert_eq!(s.phase, Phase::TimedOut);
    assert_eq!(s.reason.as_deref(), Some("DeadlineExceeded"));
    let took = s.duration_millis.expect("duration");
    assert!((2000..3000).contains(&took), "killed after {took} ms, wanted about 2000");
    assert_eq!(s.stdout.as_deref(), Some("started\n"), "output before the deadline is kept");
}

#[tokio::test]
async fn stdin_reaches_the_program() {
    let ns = TestNamespace::new("stdin").await;
    let mut spec = python("import sys\ndata = sys.stdin.read()\nprint(data.upper(), end='')\n");
    spec.stdin = Some("piped in\nsecond line\n".into());
    let s = status_of(&ns.run("stdin", spec).await);
    assert_eq!((s.phase, s.stdout.as_deref()), (Phase::Succeeded, Some("PIPED IN\nSECOND LINE\n")));
}

#[tokio::test]
async fn a_memory_hog_is_oom_killed() {
    let ns = TestNamespace::new("oom").await;
    let hog = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024 * 1024))\n";
    let spec = with_limits(
        python(hog),
        Limits { memory: Some("64Mi".into()), timeout_seconds: Some(60), ..Default::default() },
    );
    let s = status_of(&ns.run("hog", spec).await);
    assert_eq!((s.phase, s.reason.as_deref()), (Phase::Failed, Some("OOMKilled")), "{s:?}");
}

#[tokio::test]
async fn output_past_the_cap_is_truncated_and_flagged() {
    let ns = TestNamespace::new("truncate").await;
    let spec = with_limits(
        python("import sys\nsys.stdout.write('x' * 1_000_000)\nsys.stderr.write('short')\n"),
        Limits { max_output_bytes: Some(1000), ..Default::default() },
    );
    let s = status_of(&ns.run("loud", spec).await);
    assert_eq!(s.phase, Phase::Succeeded);
    assert_eq!(s.stdout.as_deref().map(str::len), Some(1000));
    assert!(s.stdout_truncated);
    assert_eq!((s.stderr.as_deref(), s.stderr_truncated), (Some("short"), false));
}

#[tokio::test]
async fn a_result_too_large_for_the_termination_message_is_read_from_the_log() {
    let ns = TestNamespace::new("biglog").await;
    let s = status_of(&ns.run("big", python("print('y' * 20000)\n")).await);
    assert_eq!(s.phase, Phase::Succeeded);
    assert_eq!(s.stdout.as_deref(), Some(format!("{}\n", "y".repeat(20000)).as_str()));
    assert!(!s.stdout_truncated);
    let message = run_container_message(&ns, s.job_name.as_deref().unwrap()).await;
    assert_eq!(message, FRAME_IN_LOG, "the runner points to the log instead of leaving a cut frame");
}

#[tokio::test]
async fn source_files_land_in_a_writable_workspace() {
    let ns = TestNamespace::new("files").await;
    let mut spec =
        python("from pkg.greet import hello\nopen('out.txt', 'w').write(hello())\nprint(open('out.txt').read())\n");
    spec.source.as_mut().unwrap().files.push(sandrun_crds::SourceFile {
        path: "pkg/greet.py".into(),
        content: "def hello():\n    return 'hi from a module'\n".into(),
    });
    spec.source
        .as_mut()
        .unwrap()
        .files
        .push(sandrun_crds::SourceFile { path: "pkg/__init__.py".into(), content: String::new() });
    spec.source.as_mut().unwrap().entry = Some("main.py".into());
    let s = status_of(&ns.run("files", spec).await);
    assert_eq!((s.phase, s.stdout.as_deref()), (Phase::Succeeded, Some("hi from a module\n")), "{s:?}");
}

#[tokio::test]
async fn a_cancelled_run_stops_and_says_so() {
    use kube::api::{Patch, PatchParams, PostParams};
    let ns = TestNamespace::new("cancel").await;
    let api = ns.executions();
    let spec = with_limits(
        python("import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n"),
        Limits { timeout_seconds: Some(600), ..Default::default() },
    );
    api.create(&PostParams::default(), &sandrun_crds::Execution::new("sleeper", spec)).await.expect("create");
    let running = |e: Option<&sandrun_crds::Execution>| {
        e.and_then(|e| e.status.as_ref()).is_some_and(|s| s.phase == Phase::Running)
    };
    tokio::time::timeout(
        sandrun_e2e::FINISH_WITHIN,
        kube::runtime::wait::await_condition(api.clone(), "sleeper", running),
    )
    .await
    .expect("reached Running")
    .expect("watch");
    let patch = serde_json::json!({"metadata": {"annotations": {sandrun_crds::CANCEL_ANNOTATION: "true"}}});
    api.patch("sleeper", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("annotate");
    let s = status_of(&ns.wait_finished("sleeper").await);
    assert_eq!((s.phase, s.reason.as_deref()), (Phase::Cancelled, Some("Cancelled")));
    let job = ns.api::<Job>().get_opt("sandrun-sleeper").await.expect("get Job");
    assert!(job.is_none_or(|j| j.metadata.deletion_timestamp.is_some()), "the Job is gone or going");
}

#[tokio::test]
async fn a_run_deleted_and_created_again_under_its_name_runs_again() {
    use kube::api::{DeleteParams, PostParams};
    let ns = TestNamespace::new("again").await;
    let first = ns.run("again", python("print('first')")).await;
    assert_eq!(status_of(&first).stdout.as_deref(), Some("first\n"));
    // At once, while the first run's Job may still be being collected: the
    // operator has forgotten that Job, and must still wait for it to go.
    let api = ns.executions();
    api.delete("again", &DeleteParams::background()).await.expect("delete");
    let created = loop {
        let second = sandrun_crds::Execution::new("again", python("print('second')"));
        match api.create(&PostParams::default(), &second).await {
            Ok(created) => break created,
            // The first may take a moment to leave the API server.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(error) => panic!("create: {error}"),
        }
    };
    // By uid: a watch may still list the first run from the API server's cache.
    let uid = created.metadata.uid.clone();
    let finished = |e: Option<&sandrun_crds::Execution>| {
        e.filter(|e| e.metadata.uid == uid).and_then(|e| e.status.as_ref()).is_some_and(|s| s.is_terminal())
    };
    let waited = kube::runtime::wait::await_condition(api.clone(), "again", finished);
    let done = tokio::time::timeout(sandrun_e2e::FINISH_WITHIN, waited).await.expect("finished in time");
    let s = status_of(&done.expect("watch").expect("still there"));
    assert_eq!((s.phase, s.stdout.as_deref()), (Phase::Succeeded, Some("second\n")), "{s:?}");
    let job = ns.api::<Job>().get("sandrun-again").await.expect("Job exists");
    assert_eq!(job.metadata.owner_references.unwrap()[0].uid, created.metadata.uid.unwrap(), "the new run's Job");
}
