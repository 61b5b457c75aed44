//! Warm starts: SandboxPools keep sandbox pods started ahead, and a run that
//! fits a pool takes one of them instead of waiting for a pod of its own.
//! A warm run must come out exactly as the same run started cold, leave
//! nothing behind for the next one, and the pool must keep its size through
//! use and damage. A run that fits no pod, or finds none free, starts cold.
//! Prints a table of each case and what was observed.
//!
//! Ignored by default: its pools reserve pods on the node, so it runs alone
//! (`cargo test -p sandrun-e2e --test warm -- --ignored --nocapture`).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use sandrun_crds::{
    EnvVar, Execution, ExecutionSpec, ExecutionStatus, Limits, Phase, PoolLimits, SandboxPool, SandboxPoolSpec,
    SandboxPoolStatus, SourceFile, StartMode,
};
use sandrun_e2e::faults::{kill_leader, new_leader};
use sandrun_e2e::{kubectl, print_table, python, status_of, with_limits, TestNamespace};

/// Each warm pod takes about 2–10 s to start on a two-core machine, and a
/// pool starts all of its pods at once.
const POOL_READY_WITHIN: Duration = Duration::from_secs(120);
/// A used pod ends with its run; its replacement starts like any warm pod.
const REFILL_WITHIN: Duration = Duration::from_secs(90);
/// After a failover every pod of a pool may have to be replaced at once,
/// next to the cold starts of the runs that fell back.
const REFILL_AFTER_FAILOVER_WITHIN: Duration = Duration::from_secs(180);
/// A SIGKILLed leader's lease has to expire before another takes it.
const TAKEOVER_WITHIN: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(500);
const POOL_LABEL: &str = "sandrun.dev/pool";
const CLAIMED_BY_LABEL: &str = "sandrun.dev/claimed-by";
const EXECUTION_LABEL: &str = "sandrun.dev/execution";

type Case = Pin<Box<dyn Future<Output = String> + Send>>;

#[tokio::test]
#[ignore = "warm suite: its pools reserve pods on the node; run alone with --ignored --nocapture"]
async fn warm_runs_match_cold_ones_and_pools_keep_their_size() {
    let cases: Vec<(&str, Case)> = vec![
        ("parity: the same runs warm and cold", Box::pin(same_results_warm_and_cold())),
        ("no trace of the previous run", Box::pin(a_warm_run_sees_nothing_of_the_one_before())),
        ("pool refills", Box::pin(a_used_pool_refills())),
        ("empty pool falls back cold", Box::pin(an_empty_pool_starts_runs_cold())),
        ("pool pod deleted by hand", Box::pin(a_pool_pod_deleted_by_hand_is_replaced())),
        ("run that does not fit", Box::pin(a_run_that_does_not_fit_starts_cold())),
        // Last: it kills the operator's leader, and the others need not see
        // the failover.
        ("leader SIGKILLed during a burst", Box::pin(a_leader_killed_during_a_burst_loses_no_run())),
    ];
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (name, case) in cases {
        let started = Instant::now();
        // Each case on its own task, so one that fails still lets the
        // others show what they observe.
        let outcome = tokio::spawn(case).await;
        let took = format!("{:.0} s", started.elapsed().as_secs_f64());
        match outcome {
            Ok(observed) => rows.push(vec![name.to_owned(), observed, took, "passed".to_owned()]),
            Err(error) => {
                let why = panic_message(error);
                failures.push(format!("{name}: {why}"));
                rows.push(vec![name.to_owned(), one_line(&why, 200), took, "FAILED".to_owned()]);
            }
        }
    }
    print_table(&["case", "observed", "took", "result"], &rows);
    assert!(failures.is_empty(), "cases that failed:\n{}", failures.join("\n"));
}

fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic without a message".to_owned()),
        Err(error) => format!("the case's task did not finish: {error}"),
    }
}

fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    format!("{}…", flat.chars().take(max).collect::<String>())
}

/// A test namespace that, when a case fails in it, also prints its pools
/// and the operator's log lines about it (the namespace's own dump shows
/// neither), before the namespace goes.
struct PoolNamespace {
    ns: TestNamespace,
}

impl PoolNamespace {
    async fn new(prefix: &str) -> Self {
        Self { ns: TestNamespace::new(prefix).await }
    }
}

impl std::ops::Deref for PoolNamespace {
    type Target = TestNamespace;
    fn deref(&self) -> &TestNamespace {
        &self.ns
    }
}

impl Drop for PoolNamespace {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let name = &self.ns.name;
        eprintln!("==== pools and warm pods of namespace {name} ====");
        for args in [
            vec!["get", "sandboxpools", "-o", "yaml"],
            vec!["get", "pods", "-L", POOL_LABEL, "-L", CLAIMED_BY_LABEL, "-o", "wide"],
        ] {
            let out = std::process::Command::new("kubectl").args(&args).args(["-n", name]).output();
            match out {
                Ok(out) => eprintln!(
                    "---- kubectl {} ----\n{}{}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(e) => eprintln!("could not run kubectl: {e}"),
            }
        }
        let logs = std::process::Command::new("kubectl")
            .args([
                "logs",
                "-n",
                "sandrun-system",
                "-l",
                "app.kubernetes.io/component=operator",
                "--prefix",
                "--tail=5000",
            ])
            .output();
        if let Ok(out) = logs {
            let text = String::from_utf8_lossy(&out.stdout);
            let lines: Vec<&str> = text.lines().filter(|l| l.contains(name.as_str())).collect();
            eprintln!("---- operator log lines naming {name} (last 60) ----");
            for line in &lines[lines.len().saturating_sub(60)..] {
                eprintln!("{line}");
            }
        }
    }
}

fn python_pool(size: u32, memory: &str) -> SandboxPoolSpec {
    SandboxPoolSpec {
        size,
        language: Some(sandrun_crds::Language::Python),
        limits: PoolLimits { memory: Some(memory.to_owned()), cpu: None },
        ..Default::default()
    }
}

async fn create_pool(ns: &TestNamespace, name: &str, spec: SandboxPoolSpec) {
    ns.api::<SandboxPool>()
        .create(&PostParams::default(), &SandboxPool::new(name, spec))
        .await
        .unwrap_or_else(|e| panic!("create SandboxPool {name}: {e}"));
}

/// Polls the pool until `done` holds of it, with its status written for
/// its current generation; panics with the last status seen after `within`.
async fn wait_pool(
    ns: &TestNamespace,
    name: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&SandboxPool, &SandboxPoolStatus) -> bool,
) -> (SandboxPoolStatus, Duration) {
    let api = ns.api::<SandboxPool>();
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < within {
        let pool = api.get(name).await.unwrap_or_else(|e| panic!("get SandboxPool {name}: {e}"));
        if let Some(status) = pool.status.clone() {
            let current =
                status.observed_generation.is_some() && status.observed_generation == pool.metadata.generation;
            if current && done(&pool, &status) {
                return (status, started.elapsed());
            }
            last = Some(status);
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("pool {name}: not {what} within {within:?}; last status: {last:?}");
}

async fn wait_pool_full(ns: &TestNamespace, name: &str, within: Duration) -> (SandboxPoolStatus, Duration) {
    wait_pool(ns, name, within, "at its size", |pool, status| status.ready == pool.spec.size).await
}

/// The pool's pods whose runner waits for a program: running, unclaimed,
/// not being deleted, as the API server has them.
async fn waiting_pods(ns: &TestNamespace, pool: &str) -> Vec<String> {
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("{POOL_LABEL}={pool}")))
        .await
        .expect("list the pool's pods");
    pods.items
        .into_iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| !pod.labels().contains_key(CLAIMED_BY_LABEL))
        .filter(|pod| {
            let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
            statuses
                .into_iter()
                .flatten()
                .any(|c| c.name == "run" && c.state.as_ref().is_some_and(|s| s.running.is_some()))
        })
        .map(|pod| pod.name_any())
        .collect()
}

/// Creates every run at once, then waits for each; returns each finished
/// Execution with the time from its create to its terminal status.
async fn run_all(ns: &TestNamespace, runs: &[(String, ExecutionSpec)]) -> Vec<(Execution, Duration)> {
    let api = ns.executions();
    let mut created = Vec::new();
    for (name, spec) in runs {
        api.create(&PostParams::default(), &Execution::new(name, spec.clone()))
            .await
            .unwrap_or_else(|e| panic!("create Execution {name}: {e}"));
        created.push((name.as_str(), Instant::now()));
    }
    join_all(created.into_iter().map(|(name, at)| async move { (ns.wait_finished(name).await, at.elapsed()) })).await
}

async fn run_one(ns: &TestNamespace, name: &str, spec: ExecutionSpec) -> (Execution, ExecutionStatus, Duration) {
    let (done, took) = run_all(ns, &[(name.to_owned(), spec)]).await.remove(0);
    let status = status_of(&done);
    (done, status, took)
}

/// Panics with every run that did not run exactly once.
async fn assert_each_ran_once(ns: &TestNamespace, claims: &Claims, runs: &[&Execution]) {
    let mut wrong = Vec::new();
    for run in runs {
        if let Err(why) = ran_once(ns, claims, run).await {
            wrong.push(why);
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn mode(s: &ExecutionStatus) -> String {
    s.start_mode.map_or("-".to_owned(), |m| format!("{m:?}"))
}

/// Every claim of a pool pod in a namespace, as a watch sees it: a pod
/// claimed and then deleted at once still shows here, where a list made
/// after the run would miss it.
struct Claims {
    seen: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Claims {
    /// Starts watching; returns once the watch has listed what exists.
    async fn watch(ns: &TestNamespace) -> Self {
        let seen: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>> = Arc::default();
        let (listed_tx, listed_rx) = tokio::sync::oneshot::channel();
        let record = Arc::clone(&seen);
        let pods = ns.api::<Pod>();
        let task = tokio::spawn(async move {
            let mut listed = Some(listed_tx);
            let mut events = watcher(pods, watcher::Config::default().labels(POOL_LABEL)).default_backoff().boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(Event::Apply(pod) | Event::InitApply(pod) | Event::Delete(pod)) => {
                        if let Some(uid) = pod.labels().get(CLAIMED_BY_LABEL) {
                            let mut seen = record.lock().expect("claims lock");
                            seen.entry(uid.clone()).or_default().insert(pod.name_any());
                        }
                    }
                    Ok(Event::InitDone) => {
                        if let Some(tx) = listed.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Init) | Err(_) => {}
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(30), listed_rx)
            .await
            .expect("the pod watch listed within 30 s")
            .expect("the pod watch is running");
        Self { seen, task }
    }

    fn pods_claimed_by(&self, uid: &str) -> BTreeSet<String> {
        self.seen.lock().expect("claims lock").get(uid).cloned().unwrap_or_default()
    }
}

impl Drop for Claims {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The run ran exactly once, in the pod its status names: no other pod was
/// claimed for it, and no other Job or pod of it exists (a warm run must
/// not also have a cold Job, nor a cold run a warm pod). A cold run may
/// have claimed a warm pod only when the operator said the program never
/// reached it (a `WarmStartFailed` Event).
async fn ran_once(ns: &TestNamespace, claims: &Claims, done: &Execution) -> Result<(), String> {
    let (name, uid) = (done.name_any(), done.uid().unwrap_or_default());
    let s = status_of(done);
    let of_run = ListParams::default().labels(&format!("{EXECUTION_LABEL}={name}"));
    let names = |items: Vec<String>| items.into_iter().collect::<BTreeSet<String>>();
    let jobs = names(
        ns.api::<Job>().list(&of_run).await.expect("list Jobs").items.iter().map(ResourceExt::name_any).collect(),
    );
    let pods = names(
        ns.api::<Pod>().list(&of_run).await.expect("list pods").items.iter().map(ResourceExt::name_any).collect(),
    );
    let claimed = claims.pods_claimed_by(&uid);
    let (job, pod) = (s.job_name.clone().unwrap_or_default(), s.pod_name.clone().unwrap_or_default());
    let want_claimed: BTreeSet<String> =
        if s.start_mode == Some(StartMode::Warm) { BTreeSet::from([pod.clone()]) } else { BTreeSet::new() };
    let fell_back = s.start_mode == Some(StartMode::Cold) && warm_start_failed(ns, &name).await;
    let mut wrong = Vec::new();
    // A claim a leader made just before it died, without binding the run
    // to it, is no second run as long as that pod never ran a program: it
    // is gone, or its runner ended undelivered (exit 75).
    let mut unused = BTreeSet::new();
    for extra in claimed.difference(&want_claimed) {
        if never_ran(ns, extra).await {
            unused.insert(extra.clone());
        }
    }
    let claimed: BTreeSet<String> = claimed.difference(&unused).cloned().collect();
    let pods: BTreeSet<String> = pods.difference(&unused).cloned().collect();
    if claimed != want_claimed && !(fell_back && claimed.len() == 1) {
        wrong.push(format!("warm pods claimed for it {claimed:?}, wanted {want_claimed:?}"));
    }
    if jobs != BTreeSet::from([job.clone()]) {
        wrong.push(format!("its Jobs {jobs:?}, wanted only {job:?}"));
    }
    if pods != BTreeSet::from([pod.clone()]) {
        wrong.push(format!("its pods {pods:?}, wanted only {pod:?}"));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("{name} ({}) did not run exactly once: {}", mode(&s), wrong.join("; ")))
    }
}

/// The warm pod is gone or its runner ended without a program (exit 75).
async fn never_ran(ns: &TestNamespace, pod: &str) -> bool {
    let Some(pod) = ns.api::<Pod>().get_opt(pod).await.expect("get pod") else { return true };
    let statuses = pod.status.and_then(|s| s.container_statuses).unwrap_or_default();
    statuses.iter().filter_map(|c| c.state.as_ref()?.terminated.as_ref()).any(|t| t.exit_code == 75)
}

/// The operator said the program never reached the run's warm pod and
/// started it cold (a `WarmStartFailed` Event about it).
async fn warm_start_failed(ns: &TestNamespace, name: &str) -> bool {
    let events = ns.api::<k8s_openapi::api::core::v1::Event>();
    let selector = format!("involvedObject.name={name},reason=WarmStartFailed");
    !events.list(&ListParams::default().fields(&selector)).await.expect("list Events").items.is_empty()
}

/// What a run came to, field by field, whichever way it started.
#[derive(Debug, PartialEq)]
struct Outcome {
    phase: Phase,
    reason: Option<String>,
    exit_code: Option<i32>,
    stdout: Option<String>,
    stderr: Option<String>,
    stdout_truncated: bool,
    stderr_truncated: bool,
}

impl Outcome {
    fn of(s: &ExecutionStatus) -> Self {
        Self {
            phase: s.phase,
            reason: s.reason.clone(),
            exit_code: s.exit_code,
            stdout: s.stdout.clone(),
            stderr: s.stderr.clone(),
            stdout_truncated: s.stdout_truncated,
            stderr_truncated: s.stderr_truncated,
        }
    }

    fn short(&self) -> String {
        let stream = |s: &Option<String>, cut: bool| match s {
            None => "-".to_owned(),
            Some(s) => format!("{}B{}", s.len(), if cut { "(cut)" } else { "" }),
        };
        format!(
            "{:?}/{} exit={} out={} err={}",
            self.phase,
            self.reason.as_deref().unwrap_or("-"),
            self.exit_code.map_or("-".to_owned(), |c| c.to_string()),
            stream(&self.stdout, self.stdout_truncated),
            stream(&self.stderr, self.stderr_truncated),
        )
    }
}

/// A run of the parity table and what its result must show in either mode.
struct ParityCase {
    name: &'static str,
    spec: ExecutionSpec,
    check: fn(&Outcome) -> Result<(), String>,
}

fn expect<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, wanted {want:?}"))
    }
}

fn parity_cases() -> Vec<ParityCase> {
    let mut stdin = python("import sys\nprint(sys.stdin.read().upper(), end='')\n");
    stdin.stdin = Some("piped in\nsecond line\n".into());
    let mut env = python("import os\nprint(os.environ['SANDRUN_GREETING'])\n");
    env.env = vec![EnvVar { name: "SANDRUN_GREETING".into(), value: "hi from the environment".into() }];
    let mut files = python("from pkg.greet import hello\nprint(hello())\n");
    let source = files.source.as_mut().expect("python() has a source");
    source.files.push(SourceFile { path: "pkg/__init__.py".into(), content: String::new() });
    source.files.push(SourceFile {
        path: "pkg/greet.py".into(),
        content: "def hello():\n    return 'hi from a module'\n".into(),
    });
    source.entry = Some("main.py".into());
    vec![
        ParityCase {
            name: "hello",
            spec: python("print('hello world')\n"),
            check: |o| {
                expect(
                    "phase, exit, stdout",
                    (o.phase, o.exit_code, o.stdout.as_deref()),
                    (Phase::Succeeded, Some(0), Some("hello world\n")),
                )
            },
        },
        ParityCase {
            name: "stdin",
            spec: stdin,
            check: |o| {
                expect(
                    "phase, stdout",
                    (o.phase, o.stdout.as_deref()),
                    (Phase::Succeeded, Some("PIPED IN\nSECOND LINE\n")),
                )
            },
        },
        ParityCase {
            name: "exit-3",
            spec: python("import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\nsys.exit(3)\n"),
            check: |o| {
                expect(
                    "phase, reason, exit, stdout, stderr",
                    (o.phase, o.reason.as_deref(), o.exit_code, o.stdout.as_deref(), o.stderr.as_deref()),
                    (Phase::Failed, Some("NonZeroExitCode"), Some(3), Some("to stdout\n"), Some("to stderr\n")),
                )
            },
        },
        ParityCase {
            name: "timeout",
            spec: with_limits(
                python("print('started', flush=True)\nwhile True:\n    pass\n"),
                Limits { timeout_seconds: Some(2), ..Default::default() },
            ),
            check: |o| {
                expect(
                    "phase, reason, stdout",
                    (o.phase, o.reason.as_deref(), o.stdout.as_deref()),
                    (Phase::TimedOut, Some("DeadlineExceeded"), Some("started\n")),
                )
            },
        },
        ParityCase {
            name: "oom",
            spec: with_limits(
                python("chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024 * 1024))\n"),
                Limits { memory: Some("64Mi".into()), timeout_seconds: Some(60), ..Default::default() },
            ),
            check: |o| expect("phase, reason", (o.phase, o.reason.as_deref()), (Phase::Failed, Some("OOMKilled"))),
        },
        ParityCase {
            name: "env",
            spec: env,
            check: |o| {
                expect(
                    "phase, stdout",
                    (o.phase, o.stdout.as_deref()),
                    (Phase::Succeeded, Some("hi from the environment\n")),
                )
            },
        },
        ParityCase {
            name: "files",
            spec: files,
            check: |o| {
                expect("phase, stdout", (o.phase, o.stdout.as_deref()), (Phase::Succeeded, Some("hi from a module\n")))
            },
        },
        ParityCase {
            name: "truncated",
            spec: with_limits(
                python("import sys\nsys.stdout.write('x' * 1_000_000)\nsys.stderr.write('short')\n"),
                Limits { max_output_bytes: Some(1000), ..Default::default() },
            ),
            check: |o| {
                expect(
                    "phase, stdout length, stdout cut, stderr, stderr cut",
                    (
                        o.phase,
                        o.stdout.as_deref().map(str::len),
                        o.stdout_truncated,
                        o.stderr.as_deref(),
                        o.stderr_truncated,
                    ),
                    (Phase::Succeeded, Some(1000), true, Some("short"), false),
                )
            },
        },
    ]
}

/// Case 1: every run of the table, in a namespace whose pool has a pod for
/// each and in one without a pool, comes out the same field by field, and
/// as it should; the first all Warm, the second all Cold.
async fn same_results_warm_and_cold() -> String {
    let cases = parity_cases();
    let (warm, cold) = tokio::join!(PoolNamespace::new("warm-parity"), PoolNamespace::new("cold-parity"));
    create_pool(&warm, "python", python_pool(cases.len() as u32, "256Mi")).await;
    let (_, filled) = wait_pool_full(&warm, "python", POOL_READY_WITHIN).await;
    let (warm_claims, cold_claims) = tokio::join!(Claims::watch(&warm), Claims::watch(&cold));
    let runs: Vec<(String, ExecutionSpec)> = cases.iter().map(|c| (c.name.to_owned(), c.spec.clone())).collect();
    let (warm_done, cold_done) = tokio::join!(run_all(&warm, &runs), run_all(&cold, &runs));

    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for ((case, (w, w_took)), (c, c_took)) in cases.iter().zip(&warm_done).zip(&cold_done) {
        let (ws, cs) = (status_of(w), status_of(c));
        let (wo, co) = (Outcome::of(&ws), Outcome::of(&cs));
        let mut verdict = Vec::new();
        if ws.start_mode != Some(StartMode::Warm) {
            verdict.push(format!("warm run started {} ({:?})", mode(&ws), ws.message));
        }
        if cs.start_mode != Some(StartMode::Cold) {
            verdict.push(format!("cold run started {}", mode(&cs)));
        }
        if wo != co {
            verdict.push(format!("results differ:\n    warm {wo:?}\n    cold {co:?}"));
        }
        for (which, outcome) in [("warm", &wo), ("cold", &co)] {
            if let Err(why) = (case.check)(outcome) {
                verdict.push(format!("{which}: {why}"));
            }
        }
        let parity = if verdict.is_empty() { "same" } else { "DIFFERENT" };
        let (w_once, c_once) = (ran_once(&warm, &warm_claims, w).await, ran_once(&cold, &cold_claims, c).await);
        let once = match (&w_once, &c_once) {
            (Ok(()), Ok(())) => "yes",
            _ => "NO",
        };
        verdict.extend(w_once.err().into_iter().chain(c_once.err()));
        rows.push(vec![
            case.name.to_owned(),
            format!("{} {} ({:.1} s)", mode(&ws), wo.short(), w_took.as_secs_f64()),
            format!("{} {} ({:.1} s)", mode(&cs), co.short(), c_took.as_secs_f64()),
            parity.to_owned(),
            once.to_owned(),
        ]);
        if !verdict.is_empty() {
            problems.push(format!("{}: {}", case.name, verdict.join("; ")));
        }
    }
    println!("parity, pool of {} filled in {:.1} s:", cases.len(), filled.as_secs_f64());
    print_table(&["run", "warm", "cold", "parity", "ran once"], &rows);
    assert!(problems.is_empty(), "warm and cold runs disagree or ran more than once:\n{}", problems.join("\n"));
    let mean = |done: &[(Execution, Duration)]| {
        done.iter().map(|(_, took)| took.as_secs_f64()).sum::<f64>() / done.len() as f64
    };
    format!(
        "{} runs identical warm and cold; create→done mean {:.1} s warm, {:.1} s cold",
        cases.len(),
        mean(&warm_done),
        mean(&cold_done)
    )
}

/// Paths run A leaves and run B must not find; a process A leaves behind
/// in a session of its own, found by its command line in /proc.
const TRACES: &str = r#"
import os, sys
PATHS = ['/workspace/left-by-a', '/tmp/left-by-a', os.path.join(os.environ['HOME'], 'home-left-by-a')]
MARK = 'time.sleep(4242)'

def lingering():
    found = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                cmd = f.read().replace(b'\0', b' ').decode(errors='replace')
        except OSError:
            continue
        if MARK in cmd:
            found.append(pid)
    return found
"#;

const LEAVE_TRACES: &str = r#"
import subprocess
for path in PATHS:
    with open(path, 'w') as f:
        f.write('run A was here\n')
child = subprocess.Popen([sys.executable, '-c', 'import time; ' + MARK], start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print('files', sum(os.path.exists(p) for p in PATHS))
print('processes', len(lingering()))
"#;

const FIND_TRACES: &str = r#"
print('files', sum(os.path.exists(p) for p in PATHS))
print('processes', len(lingering()))
"#;

/// Case 2: run A leaves files in /workspace, /tmp and $HOME and a process
/// in a session of its own; run B, warm in the same pool, finds none of it.
/// A shows the same probe does see its traces, so B's finding nothing means
/// something.
async fn a_warm_run_sees_nothing_of_the_one_before() -> String {
    let ns = PoolNamespace::new("warm-trace").await;
    create_pool(&ns, "python", python_pool(2, "256Mi")).await;
    wait_pool_full(&ns, "python", POOL_READY_WITHIN).await;
    let claims = Claims::watch(&ns).await;
    let (run_a, a, _) = run_one(&ns, "run-a", python(&format!("{TRACES}{LEAVE_TRACES}"))).await;
    let (run_b, b, _) = run_one(&ns, "run-b", python(&format!("{TRACES}{FIND_TRACES}"))).await;
    println!("run A: {:?} {} stdout {:?} stderr {:?}", a.phase, mode(&a), a.stdout, a.stderr);
    println!("run B: {:?} {} stdout {:?} stderr {:?}", b.phase, mode(&b), b.stdout, b.stderr);
    assert_eq!((a.phase, a.stdout.as_deref()), (Phase::Succeeded, Some("files 3\nprocesses 1\n")), "run A: {a:?}");
    assert_eq!((b.phase, b.stdout.as_deref()), (Phase::Succeeded, Some("files 0\nprocesses 0\n")), "run B: {b:?}");
    // Before the start modes: a pod A took and threw away explains a cold B.
    assert_each_ran_once(&ns, &claims, &[&run_a, &run_b]).await;
    assert_eq!((a.start_mode, b.start_mode), (Some(StartMode::Warm), Some(StartMode::Warm)), "A {a:?}\nB {b:?}");
    let (pod_a, pod_b) = (a.pod_name.clone().expect("A's podName"), b.pod_name.clone().expect("B's podName"));
    assert_ne!(pod_a, pod_b, "A and B ran in the same pod");
    for pod in [&pod_a, &pod_b] {
        assert!(pod.starts_with("sandrun-warm-python-"), "{pod} is not a pod of the pool");
    }
    format!("A (Warm, {pod_a}) left 3 files and 1 process; B (Warm, {pod_b}) found 0 files, 0 processes")
}

/// Case 3: a pool whose pods were all used is back at its size within a
/// bound, and `kubectl get sandboxpools` shows Ready, Desired and In-Use.
async fn a_used_pool_refills() -> String {
    let ns = PoolNamespace::new("warm-refill").await;
    create_pool(&ns, "python", python_pool(2, "256Mi")).await;
    wait_pool_full(&ns, "python", POOL_READY_WITHIN).await;
    let before = waiting_pods(&ns, "python").await;
    let claims = Claims::watch(&ns).await;
    let runs: Vec<(String, ExecutionSpec)> =
        (0..2).map(|i| (format!("use-{i}"), python(&format!("print('use {i}')")))).collect();
    let done = run_all(&ns, &runs).await;
    assert_each_ran_once(&ns, &claims, &done.iter().map(|(e, _)| e).collect::<Vec<_>>()).await;
    for (i, (execution, _)) in done.iter().enumerate() {
        let s = status_of(execution);
        assert_eq!(
            (s.phase, s.start_mode, s.stdout.as_deref()),
            (Phase::Succeeded, Some(StartMode::Warm), Some(format!("use {i}\n").as_str())),
            "{s:?}"
        );
    }
    // Refilled means pods the runs did not use, and none in use: the used
    // ones end with their runs.
    let api = ns.api::<SandboxPool>();
    let started = Instant::now();
    let fresh = loop {
        let pool = api.get("python").await.expect("get pool");
        let (ready, in_use) = pool.status.as_ref().map_or((0, 0), |s| (s.ready, s.in_use));
        let waiting = waiting_pods(&ns, "python").await;
        let fresh = waiting.iter().filter(|pod| !before.contains(pod)).count();
        if ready == 2 && in_use == 0 && fresh == 2 {
            break fresh;
        }
        assert!(
            started.elapsed() < REFILL_WITHIN,
            "not refilled within {REFILL_WITHIN:?}: status {:?}, waiting pods {waiting:?} (before the runs: {before:?})",
            pool.status
        );
        tokio::time::sleep(POLL).await;
    };
    let refilled = started.elapsed();
    let table = kubectl(&["get", "sandboxpools", "-n", &ns.name]);
    println!("{table}");
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "LANGUAGE", "READY", "DESIRED", "IN-USE", "AGE"], "{table}");
    let row: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    let column = |name: &str| header.iter().position(|h| *h == name).and_then(|i| row.get(i).copied());
    assert_eq!(
        (column("NAME"), column("LANGUAGE"), column("READY"), column("DESIRED"), column("IN-USE")),
        (Some("python"), Some("python"), Some("2"), Some("2"), Some("0")),
        "{table}"
    );
    format!(
        "2 runs Warm; {fresh} fresh pods ready {:.1} s after they finished; kubectl: READY 2 DESIRED 2 IN-USE 0",
        refilled.as_secs_f64()
    )
}

/// Case 4: a pool of size 0 that the run fits: the run starts cold and is
/// correct.
async fn an_empty_pool_starts_runs_cold() -> String {
    let ns = PoolNamespace::new("warm-empty").await;
    create_pool(&ns, "python", python_pool(0, "256Mi")).await;
    // The operator has seen the pool (its status is written) before the run.
    let (status, _) = wait_pool(&ns, "python", POOL_READY_WITHIN, "observed", |_, _| true).await;
    assert_eq!((status.ready, status.starting, status.in_use), (0, 0, 0), "{status:?}");
    let claims = Claims::watch(&ns).await;
    let (run, s, took) = run_one(&ns, "cold", python("print('no warm pod needed')")).await;
    assert_each_ran_once(&ns, &claims, &[&run]).await;
    assert_eq!(
        (s.phase, s.start_mode, s.stdout.as_deref()),
        (Phase::Succeeded, Some(StartMode::Cold), Some("no warm pod needed\n")),
        "{s:?}"
    );
    let pool_pods = ns.api::<Pod>().list(&ListParams::default().labels(POOL_LABEL)).await.expect("list pods");
    assert!(
        pool_pods.items.is_empty(),
        "a pool of size 0 has pods: {:?}",
        pool_pods.items.iter().map(|p| p.name_any()).collect::<Vec<_>>()
    );
    format!("Cold and correct, create→done {:.1} s; the pool kept no pods", took.as_secs_f64())
}

/// Case 5: a warm pod deleted by hand: the pool is back at its size with
/// another pod, and a run still starts warm, not in the deleted pod.
async fn a_pool_pod_deleted_by_hand_is_replaced() -> String {
    let ns = PoolNamespace::new("warm-deleted").await;
    create_pool(&ns, "python", python_pool(2, "256Mi")).await;
    wait_pool_full(&ns, "python", POOL_READY_WITHIN).await;
    let waiting = waiting_pods(&ns, "python").await;
    let victim = waiting.first().cloned().unwrap_or_else(|| panic!("no waiting pod although the pool is full"));
    ns.api::<Pod>().delete(&victim, &DeleteParams::default()).await.expect("delete a warm pod");
    let deleted = Instant::now();
    let api = ns.api::<SandboxPool>();
    let replaced = loop {
        let pool = api.get("python").await.expect("get pool");
        let gone = ns.api::<Pod>().get_opt(&victim).await.expect("get pod").is_none();
        let waiting = waiting_pods(&ns, "python").await;
        let ready = pool.status.as_ref().map_or(0, |s| s.ready);
        if gone && ready == 2 && waiting.len() == 2 && !waiting.contains(&victim) {
            break waiting;
        }
        assert!(
            deleted.elapsed() < REFILL_WITHIN,
            "pool not back at 2 within {REFILL_WITHIN:?} of deleting {victim}: status {:?}, waiting {waiting:?}, deleted pod gone: {gone}",
            pool.status
        );
        tokio::time::sleep(POLL).await;
    };
    let took = deleted.elapsed();
    let claims = Claims::watch(&ns).await;
    let (run, s, _) = run_one(&ns, "after-delete", python("print('still warm')")).await;
    assert_each_ran_once(&ns, &claims, &[&run]).await;
    assert_eq!(
        (s.phase, s.start_mode, s.stdout.as_deref()),
        (Phase::Succeeded, Some(StartMode::Warm), Some("still warm\n")),
        "{s:?}"
    );
    let pod = s.pod_name.clone().unwrap_or_default();
    assert!(replaced.contains(&pod), "the run's pod {pod} is not one of the pool's waiting pods {replaced:?}");
    format!("deleted {victim}; back at 2 in {:.1} s; next run Warm in {pod}", took.as_secs_f64())
}

/// Case 6: a run asking for more memory than the pool's pods have starts
/// cold; one within the pool's limit, in the same namespace, starts warm.
async fn a_run_that_does_not_fit_starts_cold() -> String {
    let ns = PoolNamespace::new("warm-nofit").await;
    create_pool(&ns, "small", python_pool(1, "128Mi")).await;
    wait_pool_full(&ns, "small", POOL_READY_WITHIN).await;
    let memory = |m: &str| Limits { memory: Some(m.into()), ..Default::default() };
    let claims = Claims::watch(&ns).await;
    let (big_run, big, _) = run_one(&ns, "too-big", with_limits(python("print('big')"), memory("256Mi"))).await;
    let (fits_run, fits, _) = run_one(&ns, "fits", with_limits(python("print('fits')"), memory("128Mi"))).await;
    assert_each_ran_once(&ns, &claims, &[&big_run, &fits_run]).await;
    let observed: BTreeMap<&str, (Phase, Option<StartMode>, Option<&str>)> = BTreeMap::from([
        ("256Mi", (big.phase, big.start_mode, big.stdout.as_deref())),
        ("128Mi", (fits.phase, fits.start_mode, fits.stdout.as_deref())),
    ]);
    assert_eq!(
        observed,
        BTreeMap::from([
            ("256Mi", (Phase::Succeeded, Some(StartMode::Cold), Some("big\n"))),
            ("128Mi", (Phase::Succeeded, Some(StartMode::Warm), Some("fits\n"))),
        ]),
        "too big: {big:?}\nfits: {fits:?}"
    );
    "pool 128Mi: a 256Mi run Cold, a 128Mi run Warm, both correct".to_owned()
}

/// Waits until at least `some` of the namespace's Executions have started
/// (Running, or already finished); returns how many had, of how many.
async fn some_started(ns: &TestNamespace, some: usize) -> (usize, usize) {
    let started = Instant::now();
    loop {
        let listed = ns.executions().list(&ListParams::default()).await.expect("list Executions").items;
        let phases = listed.iter().filter_map(|e| e.status.as_ref().map(|s| s.phase));
        let running = phases.filter(|p| *p == Phase::Running || p.is_terminal()).count();
        if running >= some {
            return (running, listed.len());
        }
        assert!(started.elapsed() < Duration::from_secs(120), "fewer than {some} runs started within 120 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Case 7: ten runs start at once in a pool of ten, and the operator's
/// leader is SIGKILLed as soon as a few are Running: some have their
/// program, some are bound without it, some not bound yet. Every run still
/// succeeds with its own output, exactly once: a run whose program was
/// written finishes in its pod, one whose program was not falls back cold
/// once. The pool then refills with pods the dead leader never held, and a
/// new run starts warm.
async fn a_leader_killed_during_a_burst_loses_no_run() -> String {
    const RUNS: usize = 10;
    const KILL_AFTER_STARTED: usize = 3;
    let ns = PoolNamespace::new("warm-failover").await;
    create_pool(&ns, "python", python_pool(RUNS as u32, "256Mi")).await;
    wait_pool_full(&ns, "python", POOL_READY_WITHIN).await;
    let before = waiting_pods(&ns, "python").await;
    let claims = Claims::watch(&ns).await;
    let names: Vec<String> = (0..RUNS).map(|i| format!("burst-{i}")).collect();
    let api = ns.executions();
    let mut created = Vec::new();
    for name in &names {
        // Its own name first, then long enough that some are mid-run when
        // the leader dies.
        let code = format!("import time\nprint({name:?}, flush=True)\ntime.sleep(2)\n");
        api.create(&PostParams::default(), &Execution::new(name, python(&code)))
            .await
            .unwrap_or_else(|e| panic!("create Execution {name}: {e}"));
        created.push((name.as_str(), Instant::now()));
    }
    let (started_at_kill, of) = some_started(&ns, KILL_AFTER_STARTED).await;
    let leader = kill_leader(&ns.client).await;
    let killed = Instant::now();
    println!("failover: SIGKILLed leader {leader} with {started_at_kill} of {of} runs started");
    let ((new, takeover), done) = tokio::join!(
        new_leader(&ns.client, &leader, TAKEOVER_WITHIN),
        join_all(created.iter().map(|(name, at)| {
            let ns = &ns;
            async move { (ns.wait_finished(name).await, at.elapsed(), killed.elapsed()) }
        }))
    );
    println!("failover: {new} took the lease {:.1} s after the kill", takeover.as_secs_f64());

    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let (mut warm, mut cold, mut fell_back) = (0, 0, 0);
    for (name, (execution, took, after_kill)) in names.iter().zip(&done) {
        let s = status_of(execution);
        let failed_warm = warm_start_failed(&ns, name).await;
        match s.start_mode {
            Some(StartMode::Warm) => warm += 1,
            Some(StartMode::Cold) => cold += 1,
            None => {}
        }
        fell_back += usize::from(failed_warm);
        let want = format!("{name}\n");
        if (s.phase, s.stdout.as_deref()) != (Phase::Succeeded, Some(want.as_str())) {
            problems.push(format!("{name}: wanted Succeeded with {want:?}, got {:?}", Outcome::of(&s)));
        }
        let once = ran_once(&ns, &claims, execution).await;
        rows.push(vec![
            name.clone(),
            mode(&s),
            Outcome::of(&s).short(),
            if failed_warm { "yes" } else { "-" }.to_owned(),
            format!("{:.1} s", took.as_secs_f64()),
            format!("{:.1} s", after_kill.as_secs_f64()),
            if once.is_ok() { "yes" } else { "NO" }.to_owned(),
        ]);
        problems.extend(once.err());
    }
    print_table(&["run", "mode", "outcome", "WarmStartFailed", "create→done", "kill→done", "ran once"], &rows);
    assert!(
        problems.is_empty(),
        "runs lost, wrong or not run exactly once across the failover:\n{}",
        problems.join("\n")
    );
    assert_eq!(warm + cold, RUNS, "every run has a start mode");
    let last_done = done.iter().map(|(_, _, after_kill)| *after_kill).max().unwrap_or_default();

    // Refilled means ready pods that were not waiting before the burst:
    // those held sessions of the dead leader, and went with it or a run.
    let pools = ns.api::<SandboxPool>();
    let refill_started = Instant::now();
    let fresh = loop {
        let pool = pools.get("python").await.expect("get pool");
        let (ready, in_use) = pool.status.as_ref().map_or((0, 0), |s| (s.ready, s.in_use));
        let waiting = waiting_pods(&ns, "python").await;
        let fresh: Vec<String> = waiting.iter().filter(|pod| !before.contains(pod)).cloned().collect();
        if ready == RUNS as u32 && in_use == 0 && fresh.len() == RUNS {
            break fresh;
        }
        assert!(
            refill_started.elapsed() < REFILL_AFTER_FAILOVER_WITHIN,
            "not refilled within {REFILL_AFTER_FAILOVER_WITHIN:?} of the runs' end: status {:?}, waiting pods {waiting:?} (before the burst: {before:?})",
            pool.status
        );
        tokio::time::sleep(POLL).await;
    };
    let refilled = killed.elapsed();
    let (after, s, _) = run_one(&ns, "after-failover", python("print('warm again')")).await;
    assert_each_ran_once(&ns, &claims, &[&after]).await;
    assert_eq!(
        (s.phase, s.start_mode, s.stdout.as_deref()),
        (Phase::Succeeded, Some(StartMode::Warm), Some("warm again\n")),
        "{s:?}"
    );
    let pod = s.pod_name.clone().unwrap_or_default();
    assert!(fresh.contains(&pod), "the run after the failover ran in {pod}, not one of the refilled pods {fresh:?}");
    format!(
        "killed with {started_at_kill}/{RUNS} started; lease taken in {:.1} s; all {RUNS} Succeeded once: {warm} Warm, {cold} Cold ({fell_back} after WarmStartFailed), last {:.1} s after the kill; pool back at {RUNS} {:.1} s after the kill; next run Warm",
        takeover.as_secs_f64(),
        last_done.as_secs_f64(),
        refilled.as_secs_f64()
    )
}
