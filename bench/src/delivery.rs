//! How a program could reach a warm sandbox pod, which has no network: only
//! through the kubelet. Four ways, each timed from the operator's side in
//! pods locked down as sandrun's are (runsc, restricted, deny-all policy):
//! attaching to a reused pod's stdin, attaching to a fresh pod blocked on
//! its stdin (`stdinOnce`), exec of a new process that takes the program on
//! stdin, and a downward API volume the pod polls after an annotation patch.
//! All in a namespace of its own, deleted at the end, on errors too.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{
    Api, AttachParams, AttachedProcess, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams,
};
use kube::runtime::wait::await_condition;
use kube::Client;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, ReadHalf, SimplexStream, WriteHalf};

use crate::error::{bench_error, Error, Result};
use crate::run_id;
use crate::stats::{ms, Samples};

const READY_WITHIN: Duration = Duration::from_secs(120);
/// One answer over attach or exec; far above any figure worth having.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);
/// How long a session may take to end once its stdin is closed.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);
/// Each program prints this once started, then blocks on its input.
const READY_LINE: &str = "ready";
const NONCE_ANNOTATION: &str = "bench.sandrun.dev/nonce";
const ANNOTATIONS_DIR: &str = "/etc/podinfo";
/// The simplex pipes between this process and kube's message loop: the whole
/// payload fits, so writing it never waits on the loop.
const PIPE_BYTES: usize = 64 * 1024;

/// Reads lines from stdin forever and answers each with its length.
const ATTACH_LOOP: &str = "\
import sys
print('ready', flush=True)
while True:
    line = sys.stdin.readline()
    if not line:
        print('eof', flush=True)
        break
    print(len(line), flush=True)
";

/// Reads one line and answers its length; then tells whether stdin was
/// closed behind it (`eof`) or more came, and exits.
const ATTACH_ONCE: &str = "\
import sys
print('ready', flush=True)
line = sys.stdin.readline()
print(len(line), flush=True)
print('eof' if not sys.stdin.readline() else 'more', flush=True)
";

/// Polls the annotations file every 5 ms; prints each new nonce with the
/// time it was seen.
const DOWNWARD_POLL: &str = "\
import time
print('ready', flush=True)
seen = set()
while True:
    try:
        with open('/etc/podinfo/annotations') as f:
            text = f.read()
    except OSError:
        text = ''
    for line in text.splitlines():
        key, _, value = line.partition('=')
        if key == 'bench.sandrun.dev/nonce' and value not in seen:
            seen.add(value)
            print('nonce', value.strip('\"'), repr(time.time()), flush=True)
    time.sleep(0.005)
";

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Measured samples of attach to a reused pod and of exec.
    #[arg(long, default_value_t = 30)]
    pub samples: usize,
    /// Fresh pods, one sample each (each is created and made Ready first).
    #[arg(long, default_value_t = 10)]
    pub fresh_samples: usize,
    /// Annotation patches waited for through the downward API volume.
    #[arg(long, default_value_t = 10)]
    pub downward_samples: usize,
    /// Longest wait for one downward API sample before it counts as timed out.
    #[arg(long, default_value_t = 90)]
    pub downward_within_seconds: u64,
    /// Unmeasured samples first, for attach to the reused pod and exec.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Size of the program delivered, a JSON line, in bytes.
    #[arg(long, default_value_t = 4096)]
    pub payload_bytes: usize,
    #[arg(long, default_value = "runsc")]
    pub runtime: String,
    /// Image of every pod: the one sandrun runs Python in.
    #[arg(long, default_value = "localhost/sandrun-python:bookworm")]
    pub image: String,
}

/// One option's figures, in the order measured.
struct Figure {
    option: String,
    samples: Samples,
    /// Samples tried; more than taken when some timed out.
    tried: usize,
    /// Of each sample, the part until the API server had upgraded the
    /// connection (`attach`/`exec` returned), where there is one.
    upgrade: Samples,
}

/// What the runs showed besides the figures: how the streams behave.
#[derive(Default)]
struct Findings {
    figures: Vec<Figure>,
    notes: Vec<String>,
}

impl Findings {
    fn figure(&mut self, option: impl Into<String>, samples: Samples, tried: usize) {
        self.figures.push(Figure { option: option.into(), samples, tried, upgrade: Samples::default() });
    }

    fn streamed(&mut self, option: impl Into<String>, samples: Samples, upgrade: Samples) {
        let tried = samples.len();
        self.figures.push(Figure { option: option.into(), samples, tried, upgrade });
    }

    fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }
}

pub async fn run(client: &Client, options: &Options) -> Result<()> {
    let machine = machine(client).await?;
    let start_load = load_average();
    let namespace = format!("bench-delivery-{}", run_id());
    create_namespace(client, &namespace).await?;
    let mut findings = Findings::default();
    let work = async {
        lock_down(client, &namespace).await?;
        measure(client, &namespace, options, &mut findings).await
    };
    let outcome = tokio::select! {
        outcome = work => outcome,
        signal = tokio::signal::ctrl_c() => signal.map_err(Error::from).and(Err(bench_error("interrupted"))),
    };
    findings.note(format!(
        "1-minute load average: {start_load} at the start, {} at the end ({} cores); other work on the machine \
         moves every figure",
        load_average(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    ));
    let deleted = Api::<Namespace>::all(client.clone()).delete(&namespace, &DeleteParams::background()).await;
    report(options, &machine, &findings);
    outcome?;
    deleted?;
    Ok(())
}

/// Attach and exec samples are taken in turns, one of each per round, so
/// drift in the machine's load falls on all alike; a round's fresh pod is
/// started before any of its samples. The downward API, slower by far,
/// comes last.
async fn measure(client: &Client, namespace: &str, options: &Options, findings: &mut Findings) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let payload = payload(options.payload_bytes)?;
    let loop_pod = "attach-loop";
    let ready = start_pod(&pods, &pod(loop_pod, options, ATTACH_LOOP, Stdin::Reused, false)?).await?;
    findings.note(format!("pod create → Ready of the reused pod: {}", ms(ready)));
    let (mut reused, mut fresh) = (Reused::default(), Fresh::default());
    let mut execs: Vec<Exec> = EXEC_COMMANDS.iter().map(|&(option, command)| Exec::new(option, command)).collect();
    for _ in 0..options.warmup {
        reused.sample(&pods, loop_pod, &payload, false).await?;
        for exec in &mut execs {
            exec.sample(&pods, loop_pod, &payload, false).await?;
        }
    }
    for round in 0..options.samples.max(options.fresh_samples) {
        let fresh_pod =
            if round < options.fresh_samples { Some(fresh.start(&pods, options, round).await?) } else { None };
        if round < options.samples {
            reused.sample(&pods, loop_pod, &payload, true).await?;
            for exec in &mut execs {
                exec.sample(&pods, loop_pod, &payload, true).await?;
            }
        }
        if let Some(name) = fresh_pod {
            fresh.sample(&pods, &name, &payload).await?;
        }
    }
    findings.note(
        "before their first attach, the stdin programs were all blocked on their read: their logs held \
         only `ready` (a program that read EOF instead would have answered at once and failed the run)",
    );
    let log = pods.logs(loop_pod, &LogParams::default()).await?;
    reused.report(findings, log.lines().any(|l| l == "eof"));
    fresh.report(findings, options);
    execs.into_iter().for_each(|exec| findings.streamed(exec.option, exec.samples, exec.upgrades));
    downward(&pods, options, findings).await
}

/// The program as the operator would send it: one JSON line.
fn payload(bytes: usize) -> Result<String> {
    let line = |padding: usize| {
        let content = format!("print('hello')\n#{}\n", "x".repeat(padding));
        serde_json::to_string(&json!({
            "language": "python",
            "files": [{"path": "main.py", "content": content}],
            "limits": {"timeoutSeconds": 10},
        }))
    };
    let bare = line(0).map_err(|e| bench_error(e.to_string()))?.len();
    let mut payload = line(bytes.saturating_sub(bare + 1)).map_err(|e| bench_error(e.to_string()))?;
    payload.push('\n');
    Ok(payload)
}

/// Option 1: one pod, attached to again for every sample: the transport's
/// own cost. Each session also carries a second payload, timed from write to
/// answer: what delivery costs when the session was opened ahead.
#[derive(Default)]
struct Reused {
    samples: Samples,
    upgrades: Samples,
    held: Samples,
    ends: Samples,
    unended: usize,
    sessions: usize,
}

impl Reused {
    async fn sample(&mut self, pods: &Api<Pod>, name: &str, payload: &str, measured: bool) -> Result<()> {
        let started = Instant::now();
        let mut session = Session::attach(pods, name).await?;
        let upgraded = started.elapsed();
        let answer = within("an answer over attach", ANSWER_WITHIN, session.ask(payload)).await?;
        let elapsed = started.elapsed();
        check_length(&answer, payload)?;
        let again = Instant::now();
        let answer = within("a second answer over attach", ANSWER_WITHIN, session.ask(payload)).await?;
        let second = again.elapsed();
        check_length(&answer, payload)?;
        // With stdinOnce false, closing stdin must end the session and
        // leave the program running for the next one.
        match session.close().await {
            Some(took) => self.ends.push(took),
            None => self.unended += 1,
        }
        self.sessions += 1;
        if measured {
            self.samples.push(elapsed);
            self.upgrades.push(upgraded);
            self.held.push(second);
        }
        Ok(())
    }

    fn report(self, findings: &mut Findings, saw_eof: bool) {
        findings.streamed("attach, reused pod (stdinOnce false): attach → answer", self.samples, self.upgrades);
        findings.streamed("attach, session opened ahead: write → answer", self.held, Samples::default());
        findings.note(format!(
            "reused pod: closing stdin ended the attach session in {} (p50; {} of {} did not end within {}s); \
             the program {} EOF and answered every later session",
            ms(self.ends.percentile(50.0)),
            self.unended,
            self.sessions,
            CLOSE_WITHIN.as_secs(),
            if saw_eof { "DID see" } else { "never saw" },
        ));
    }
}

/// Option 2: a fresh pod per sample, blocked on a stdin read when attached to.
#[derive(Default)]
struct Fresh {
    samples: Samples,
    upgrades: Samples,
    ready: Samples,
    ready_total: Duration,
    ends: Samples,
    unended: usize,
    eofs: usize,
}

impl Fresh {
    /// Creates the round's pod and waits until its program waits on stdin.
    async fn start(&mut self, pods: &Api<Pod>, options: &Options, round: usize) -> Result<String> {
        let name = format!("attach-once-{round}");
        let took = start_pod(pods, &pod(&name, options, ATTACH_ONCE, Stdin::Once, false)?).await?;
        self.ready.push(took);
        self.ready_total += took;
        Ok(name)
    }

    async fn sample(&mut self, pods: &Api<Pod>, name: &str, payload: &str) -> Result<()> {
        let started = Instant::now();
        let mut session = Session::attach(pods, name).await?;
        let upgraded = started.elapsed();
        let answer = within("an answer over attach", ANSWER_WITHIN, session.ask(payload)).await?;
        let elapsed = started.elapsed();
        check_length(&answer, payload)?;
        self.samples.push(elapsed);
        self.upgrades.push(upgraded);
        // stdinOnce: closing our stdin should close the program's too.
        match session.close().await {
            Some(took) => self.ends.push(took),
            None => self.unended += 1,
        }
        let said = within("the program's last line", CLOSE_WITHIN, async {
            loop {
                let log = pods.logs(name, &LogParams::default()).await?;
                if let Some(last) = log.lines().skip(2).find(|l| *l == "eof" || *l == "more") {
                    return Ok(last.to_owned());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        if said.is_ok_and(|l| l == "eof") {
            self.eofs += 1;
        }
        // Gone before the next round, so its teardown falls on no sample.
        pods.delete(name, &DeleteParams::background()).await?;
        within(&format!("pod {name} to go"), READY_WITHIN, async {
            while pods.get_opt(name).await?.is_some() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(())
        })
        .await
    }

    fn report(self, findings: &mut Findings, options: &Options) {
        let pods = self.ready.len();
        findings.streamed("attach, fresh pod (stdinOnce true): attach → answer", self.samples, self.upgrades);
        findings.note(format!(
            "fresh pods: closing stdin ended the session in {} (p50; {} of {pods} did not end within {}s); \
             {} of {pods} programs then read EOF on their stdin",
            ms(self.ends.percentile(50.0)),
            self.unended,
            CLOSE_WITHIN.as_secs(),
            self.eofs,
        ));
        let mean = self.ready_total / pods.max(1) as u32;
        findings.note(format!("{} pod create → Ready: mean {} over {pods} fresh pods", options.runtime, ms(mean)));
        findings.figure(format!("context: {} pod create → Ready", options.runtime), self.ready, pods);
    }
}

/// Option 3, exec: a new process in the sandbox for every run, the program
/// on its stdin; once through a shell (`cat` to a file), once through Python.
const EXEC_COMMANDS: [(&str, &[&str]); 2] = [
    ("exec sh -c 'cat > /tmp/p && wc -c < /tmp/p': exec → status", &["sh", "-c", "cat > /tmp/p && wc -c < /tmp/p"]),
    (
        "exec python3 (stdin → /tmp/p): exec → status",
        &["python3", "-c", "import sys; print(open('/tmp/p', 'wb').write(sys.stdin.buffer.read()))"],
    ),
];

struct Exec {
    option: &'static str,
    command: &'static [&'static str],
    samples: Samples,
    upgrades: Samples,
}

impl Exec {
    fn new(option: &'static str, command: &'static [&'static str]) -> Self {
        Self { option, command, samples: Samples::default(), upgrades: Samples::default() }
    }

    async fn sample(&mut self, pods: &Api<Pod>, name: &str, payload: &str, measured: bool) -> Result<()> {
        let (answer, upgraded, elapsed) =
            within("an exec", ANSWER_WITHIN, exec_once(pods, name, self.command, payload)).await?;
        check_length(&answer, payload)?;
        if measured {
            self.samples.push(elapsed);
            self.upgrades.push(upgraded);
        }
        Ok(())
    }
}

/// Sends the payload to a new process and waits for its answer and its
/// exit status (stdin closes through protocol v5's close frame); returns the
/// answer, and how long from exec to the upgrade and to the status.
async fn exec_once(
    pods: &Api<Pod>,
    name: &str,
    command: &[&str],
    payload: &str,
) -> Result<(String, Duration, Duration)> {
    let started = Instant::now();
    let mut process = pods.exec(name, command.to_vec(), &attach_params()).await?;
    let upgraded = started.elapsed();
    let mut stdin = process.stdin().ok_or_else(|| bench_error("exec gave no stdin"))?;
    let mut stdout = BufReader::new(process.stdout().ok_or_else(|| bench_error("exec gave no stdout"))?);
    let status = process.take_status().ok_or_else(|| bench_error("exec gave no status"))?;
    stdin.write_all(payload.as_bytes()).await?;
    stdin.shutdown().await?;
    drop(stdin);
    let answer = read_line(&mut stdout).await?;
    let status = status.await.ok_or_else(|| bench_error("exec ended without a status"))?;
    let elapsed = started.elapsed();
    if status.status.as_deref() != Some("Success") {
        return Err(bench_error(format!("exec {command:?} failed: {status:?}")));
    }
    finish(process).await;
    Ok((answer, upgraded, elapsed))
}

/// Option 4: the annotation patched at t0; the pod prints when it saw it.
async fn downward(pods: &Api<Pod>, options: &Options, findings: &mut Findings) -> Result<()> {
    let name = "downward";
    start_pod(pods, &pod(name, options, DOWNWARD_POLL, Stdin::None, true)?).await?;
    let limit = Duration::from_secs(options.downward_within_seconds);
    let (mut samples, mut timed_out, mut early, mut each) = (Samples::default(), 0, 0, Vec::new());
    for i in 0..options.downward_samples {
        // Apart by a random fraction of a second: no lockstep with a
        // periodic sync, if there is one.
        let pause = Duration::from_millis(rand::random_range(0..1000));
        tokio::time::sleep(pause).await;
        let nonce = format!("n{i}{}", run_id());
        let patch = json!({"metadata": {"annotations": {NONCE_ANNOTATION: nonce}}});
        let t0 = unix_seconds(SystemTime::now())?;
        pods.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        match seen_at(pods, name, &nonce, limit).await? {
            Some(seen) if seen >= t0 => {
                let took = Duration::from_secs_f64(seen - t0);
                samples.push(took);
                each.push(ms(took));
            }
            Some(_) => {
                early += 1;
                each.push("before t0".to_owned());
            }
            None => {
                timed_out += 1;
                each.push("timed out".to_owned());
            }
        }
    }
    // Its spread is the point: whether the kubelet acts on the patch or on
    // its next periodic sync.
    findings.note(format!("downward API, each sample in order: {}", each.join(", ")));
    let mut option = "downward API volume (annotation patch → seen)".to_owned();
    if timed_out > 0 {
        option.push_str(&format!(", {timed_out} timed out after {}s", limit.as_secs()));
    }
    if early > 0 {
        option.push_str(&format!(", {early} seen before t0 (clocks?)"));
    }
    findings.figure(option, samples, options.downward_samples);
    Ok(())
}

/// The sandbox's time.time() when it printed this nonce; None if it did
/// not within `limit`.
async fn seen_at(pods: &Api<Pod>, name: &str, nonce: &str, limit: Duration) -> Result<Option<f64>> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let log = pods.logs(name, &LogParams::default()).await?;
        for line in log.lines() {
            let mut words = line.split_whitespace();
            if words.next() == Some("nonce") && words.next() == Some(nonce) {
                let seen = words.next().and_then(|t| t.parse().ok());
                return seen.map(Some).ok_or_else(|| bench_error(format!("a bad line in {name}'s log: {line:?}")));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(None)
}

fn unix_seconds(time: SystemTime) -> Result<f64> {
    Ok(time.duration_since(UNIX_EPOCH).map_err(|e| bench_error(e.to_string()))?.as_secs_f64())
}

/// One attach session: our ends of the container's stdin and stdout.
struct Session {
    process: AttachedProcess,
    stdin: WriteHalf<SimplexStream>,
    stdout: BufReader<ReadHalf<SimplexStream>>,
}

impl Session {
    async fn attach(pods: &Api<Pod>, name: &str) -> Result<Self> {
        let mut process = pods.attach(name, &attach_params()).await?;
        let stdin = process.stdin().ok_or_else(|| bench_error("attach gave no stdin"))?;
        let stdout = BufReader::new(process.stdout().ok_or_else(|| bench_error("attach gave no stdout"))?);
        Ok(Self { process, stdin, stdout })
    }

    async fn ask(&mut self, line: &str) -> Result<String> {
        self.stdin.write_all(line.as_bytes()).await?;
        self.stdin.flush().await?;
        read_line(&mut self.stdout).await
    }

    /// Closes stdin and waits for the server to end the session: how long
    /// that took, or None if it did not within `CLOSE_WITHIN`.
    async fn close(self) -> Option<Duration> {
        let Self { process, mut stdin, mut stdout } = self;
        let started = Instant::now();
        let _ = stdin.shutdown().await;
        drop(stdin);
        let ended = tokio::time::timeout(CLOSE_WITHIN, async {
            let mut rest = String::new();
            while stdout.read_line(&mut rest).await.is_ok_and(|n| n > 0) {}
        })
        .await
        .is_ok();
        let took = started.elapsed();
        finish(process).await;
        ended.then_some(took)
    }
}

fn attach_params() -> AttachParams {
    AttachParams::default()
        .stdin(true)
        .stdout(true)
        .stderr(false)
        .max_stdin_buf_size(PIPE_BYTES)
        .max_stdout_buf_size(PIPE_BYTES)
}

/// Lets the message loop end on its own; aborts it if it does not at once.
async fn finish(process: AttachedProcess) {
    let _ = tokio::time::timeout(CLOSE_WITHIN, process.join()).await;
}

async fn read_line(stdout: &mut BufReader<ReadHalf<SimplexStream>>) -> Result<String> {
    let mut line = String::new();
    if stdout.read_line(&mut line).await? == 0 {
        return Err(bench_error("the stream ended before a line came"));
    }
    Ok(line)
}

/// The program answers with the length of what it got, newline included.
fn check_length(answer: &str, payload: &str) -> Result<()> {
    if answer.trim() == payload.len().to_string() {
        return Ok(());
    }
    Err(bench_error(format!("sent {} bytes, the sandbox answered {answer:?}", payload.len())))
}

async fn within<T>(what: &str, limit: Duration, work: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| Error::Timeout { what: what.to_owned(), seconds: limit.as_secs() })?
}

/// How the container's stdin is kept open.
#[derive(Clone, Copy)]
enum Stdin {
    None,
    /// Open across attach sessions (`stdinOnce: false`).
    Reused,
    /// Closed when the first session ends (`stdinOnce: true`).
    Once,
}

/// A pod as locked down as sandrun's sandboxes: runsc, restricted, no
/// token, no DNS, a read-only root with a small /tmp.
fn pod(name: &str, options: &Options, program: &str, stdin: Stdin, downward: bool) -> Result<Pod> {
    let (stdin, stdin_once) = match stdin {
        Stdin::None => (false, false),
        Stdin::Reused => (true, false),
        Stdin::Once => (true, true),
    };
    let mut mounts = vec![json!({"name": "tmp", "mountPath": "/tmp"})];
    let mut volumes = vec![json!({"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}})];
    if downward {
        mounts.push(json!({"name": "podinfo", "mountPath": ANNOTATIONS_DIR, "readOnly": true}));
        volumes.push(json!({
            "name": "podinfo",
            "downwardAPI": {"items": [{"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]}
        }));
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"sandrun.dev/bench": "delivery"}},
        "spec": {
            "restartPolicy": "Never",
            "runtimeClassName": options.runtime,
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "terminationGracePeriodSeconds": 2,
            "dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["127.0.0.1"]},
            "securityContext": {
                "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"}
            },
            "containers": [{
                "name": "run",
                "image": options.image,
                "imagePullPolicy": "Never",
                "command": ["python3", "-u", "-c", program],
                "stdin": stdin,
                "stdinOnce": stdin_once,
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "runAsNonRoot": true,
                    "privileged": false,
                    "capabilities": {"drop": ["ALL"]}
                },
                "resources": {
                    "requests": {"cpu": "50m", "memory": "64Mi"},
                    "limits": {"cpu": "1", "memory": "128Mi", "ephemeral-storage": "64Mi"}
                },
                "volumeMounts": mounts
            }],
            "volumes": volumes
        }
    }))
    .map_err(|e| bench_error(e.to_string()))
}

/// Creates the pod and waits until it is Ready and its program has said it
/// is waiting for input; returns create → Ready.
async fn start_pod(pods: &Api<Pod>, pod: &Pod) -> Result<Duration> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let started = Instant::now();
    pods.create(&PostParams::default(), pod).await?;
    let ready = |pod: Option<&Pod>| {
        let status = pod.and_then(|p| p.status.as_ref());
        let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or_default();
        let over = status.and_then(|s| s.phase.as_deref()).is_some_and(|p| p == "Succeeded" || p == "Failed");
        over || conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
    };
    let pod = tokio::time::timeout(READY_WITHIN, await_condition(pods.clone(), &name, ready))
        .await
        .map_err(|_| Error::Timeout { what: format!("pod {name} Ready"), seconds: READY_WITHIN.as_secs() })?
        .map_err(|e| bench_error(format!("waiting for pod {name}: {e}")))?;
    let took = started.elapsed();
    let phase = pod.and_then(|p| p.status).and_then(|s| s.phase).unwrap_or_default();
    if phase != "Running" {
        return Err(bench_error(format!("pod {name} is {phase}, not Running")));
    }
    within(&format!("pod {name}'s program to start"), READY_WITHIN, async {
        loop {
            let log = pods.logs(&name, &LogParams::default()).await?;
            if log.lines().any(|l| l == READY_LINE) {
                if log.lines().count() > 1 {
                    return Err(bench_error(format!("pod {name} did not wait for its input: {log:?}")));
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await?;
    Ok(took)
}

/// Restricted Pod Security, as sandrun's run namespaces.
async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let namespace: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {
            "sandrun.dev/bench": "delivery",
            "pod-security.kubernetes.io/enforce": "restricted"
        }}
    }))
    .map_err(|e| bench_error(e.to_string()))?;
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await?;
    Ok(())
}

/// The deny-all policy; returns once pods can be created (the namespace's
/// ServiceAccount exists).
async fn lock_down(client: &Client, name: &str) -> Result<()> {
    let policy: NetworkPolicy = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "deny-all"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    }))
    .map_err(|e| bench_error(e.to_string()))?;
    Api::<NetworkPolicy>::namespaced(client.clone(), name).create(&PostParams::default(), &policy).await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    within("the namespace's default ServiceAccount", Duration::from_secs(30), async {
        while accounts.get_opt("default").await?.is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    })
    .await
}

/// The machine in one line, as hack/bench.sh's `machine` prints it.
async fn machine(client: &Client) -> Result<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo")?;
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    let kubernetes = client.apiserver_version().await?.git_version;
    let nodes = Api::<Node>::all(client.clone()).list(&ListParams::default()).await?;
    let runtime = nodes
        .items
        .first()
        .and_then(|n| n.status.as_ref())
        .and_then(|s| s.node_info.as_ref())
        .map(|i| i.container_runtime_version.replace("containerd://", ""))
        .unwrap_or_default();
    let gvisor = std::env::var("GVISOR_VERSION").unwrap_or_else(|_| runsc_version());
    Ok(format!(
        "{model}, {cores} cores, {:.0} GiB RAM, kernel {}; Kubernetes {kubernetes}, containerd {runtime}, gVisor {gvisor}",
        kib / 1_048_576.0,
        kernel.trim(),
    ))
}

/// The 1-minute load average, as /proc/loadavg has it.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().next().unwrap_or("?").to_owned()
}

fn runsc_version() -> String {
    std::process::Command::new("runsc")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(|l| l.trim_start_matches("runsc version ").to_owned()))
        .unwrap_or_else(|| "(unknown)".to_owned())
}

fn report(options: &Options, machine: &str, findings: &Findings) {
    println!(
        "\n### Program delivery into a warm {} pod ({} B JSON line), in ms\n",
        options.runtime, options.payload_bytes
    );
    println!("{machine}\n");
    let cells: Vec<Vec<String>> = findings
        .figures
        .iter()
        .map(|f| {
            let taken = if f.samples.len() == f.tried {
                f.tried.to_string()
            } else {
                format!("{}/{}", f.samples.len(), f.tried)
            };
            let cell = |p: f64| if f.samples.is_empty() { "-".to_owned() } else { ms(f.samples.percentile(p)) };
            let upgrade = if f.upgrade.is_empty() { String::new() } else { ms(f.upgrade.percentile(50.0)) };
            vec![f.option.clone(), taken, cell(50.0), cell(99.0), cell(0.0), cell(100.0), upgrade]
        })
        .collect();
    sandrun_e2e::print_table(&["option", "samples", "p50", "p99", "min", "max", "of which upgrade, p50"], &cells);
    if !findings.notes.is_empty() {
        println!();
        findings.notes.iter().for_each(|note| println!("- {note}"));
    }
}
