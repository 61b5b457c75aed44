//! What a warm sandbox saves: hello world through a SandboxPool's waiting
//! pod against the same run started cold, in the same run of the bench.
//!
//! 1. Over the gateway's WebSocket, request → result: a pool kept full
//!    before every run (so each measured warm run has a ready pod), then
//!    the same pool scaled to 0 (every run cold). Each run's `startMode`
//!    is read back from its Execution: a warm run that started cold counts.
//! 2. The `kubectl apply` path: the Execution created through the API and
//!    its `Complete` condition seen on a watch, with the pool full.
//! 3. Bursts sent at once, one socket each: as many runs as the pool has
//!    pods, then twice as many (half start cold). None may be lost.
//! 4. Where a warm run's time goes, from the operator's own histograms
//!    (read through the API server's pod proxy) and `durationMillis`.
//!
//! The pool and every Execution made go at the end, on errors too.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Client, ResourceExt};
use sandrun_api::{ClientMessage, FileInput, ServerMessage, State, SubmitRequest};
use sandrun_crds::{condition_types, Execution, Language, Phase, PoolLimits, SandboxPool, SandboxPoolSpec, StartMode};
use sandrun_e2e::gateway::{Gateway, Socket};
use sandrun_e2e::inspect::RELEASE_NAMESPACE;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::error::{bench_error, Error, Result};
use crate::stats::{ms, print_rows, Row, Samples};
use crate::{run_id, RUN_NAMESPACE};

const PROGRAM: &str = "print('hello')";
const EXPECTED: &str = "hello\n";
const RUN_WITHIN: Duration = Duration::from_secs(120);
/// Forty runs at once on a small machine: cold pods queue behind each other.
const BURST_WITHIN: Duration = Duration::from_secs(600);
/// Twenty gVisor pods starting together on two cores take a while.
const FILL_WITHIN: Duration = Duration::from_secs(600);
/// The gateway cuts a socket that has not answered its pings for 60 s; one
/// idle longer than this (the bench waiting on a pool) is opened again.
const SOCKET_IDLE: Duration = Duration::from_secs(30);
const POOL_CPU: &str = "1";
const POOL_MEMORY: &str = "256Mi";
/// Put on the Executions this bench creates through the API.
const BENCH_LABEL: &str = "sandrun.dev/bench";
const POOL_LABEL: &str = "sandrun.dev/pool";
const EXECUTION_LABEL: &str = "sandrun.dev/execution";
const OPERATOR_SELECTOR: &str = "app.kubernetes.io/component=operator";
const OPERATOR_PORT: u16 = 8080;

/// The targets for a warm start.
const GOAL_WARM_P50: Duration = Duration::from_millis(150);
const GOAL_WARM_P99: Duration = Duration::from_millis(400);
const GOAL_RATIO: f64 = 0.1;
const GOAL_APPLY_P50: Duration = Duration::from_millis(300);

const BIND: &str = "sandrun_operator_warm_bind_duration_seconds";
const DELIVERY: &str = "sandrun_operator_warm_delivery_duration_seconds";
const STREAM: &str = "sandrun_operator_warm_stream_duration_seconds";
const HITS: &str = "sandrun_operator_warm_hits_total";
const MISSES: &str = "sandrun_operator_warm_misses_total";
const FALLBACKS: &str = "sandrun_operator_warm_fallbacks_total";

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Measured runs of each kind (warm, cold, and through the API).
    #[arg(long, default_value_t = 50)]
    pub runs: usize,
    /// Unmeasured runs of each kind first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Pods the pool keeps for the runs taken one after another.
    #[arg(long, default_value_t = 4)]
    pub pool_size: u32,
    /// Pods the pool keeps for the bursts: one burst of this many runs,
    /// then one of twice as many.
    #[arg(long, default_value_t = 20)]
    pub burst: u32,
    /// Gateway key to submit with; its namespace must be the bench's.
    #[arg(long, default_value = "demo")]
    pub key: String,
}

pub async fn run(client: &Client, options: &Options) -> Result<()> {
    crate::leader_pid(client).await?;
    let gateway = Gateway::from_env();
    let key = gateway.key(&options.key);
    if key.namespace != RUN_NAMESPACE {
        return Err(bench_error(format!("key {} runs in {}, not {RUN_NAMESPACE}", key.name, key.namespace)));
    }
    let bench = Bench {
        client: client.clone(),
        gateway,
        token: key.token,
        pools: Api::namespaced(client.clone(), RUN_NAMESPACE),
        executions: Api::namespaced(client.clone(), RUN_NAMESPACE),
        pool: format!("bench-warm-{}", run_id()),
        made: Mutex::default(),
    };
    bench.refuse_other_pools().await?;
    // Pods of other namespaces' pools share the machine: said beside the figures.
    let elsewhere: Api<SandboxPool> = Api::all(client.clone());
    let others: Vec<String> = elsewhere
        .list(&ListParams::default())
        .await?
        .iter()
        .map(|p| format!("{}/{} (size {})", p.namespace().unwrap_or_default(), p.name_any(), p.spec.size))
        .collect();
    if !others.is_empty() {
        println!("other SandboxPools on the cluster while measuring: {}", others.join(", "));
    }
    let pool = SandboxPool::new(&bench.pool, pool_spec(options.pool_size));
    bench.pools.create(&PostParams::default(), &pool).await?;
    let measured = tokio::select! {
        measured = measure(&bench, options) => measured,
        stopped = stop_signal() => Err(stopped),
    };
    let cleaned = bench.clean_up().await;
    measured.and(cleaned)
}

/// Ctrl-C or SIGTERM (hack/bench.sh's trap), as an error, so the pool and
/// its runs still go.
async fn stop_signal() -> Error {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    bench_error("interrupted")
}

fn pool_spec(size: u32) -> SandboxPoolSpec {
    SandboxPoolSpec {
        size,
        language: Some(Language::Python),
        limits: PoolLimits { cpu: Some(POOL_CPU.to_owned()), memory: Some(POOL_MEMORY.to_owned()) },
        ..Default::default()
    }
}

async fn measure(bench: &Bench, options: &Options) -> Result<()> {
    let series = websocket_series(bench, options).await?;
    report_websocket(options, &series);
    report_breakdown(&series);
    let apply = apply_series(bench, options).await?;
    report_apply(options, &apply, &series.warm);
    let mut bursts = Vec::new();
    for runs in [options.burst, 2 * options.burst] {
        bursts.push(burst(bench, options.burst, runs as usize).await?);
    }
    report_bursts(options, &bursts, &series);
    Ok(())
}

struct Bench {
    client: Client,
    gateway: Gateway,
    token: String,
    pools: Api<SandboxPool>,
    executions: Api<Execution>,
    pool: String,
    /// Every Execution made, deleted at the end if still there.
    made: Mutex<BTreeSet<String>>,
}

/// One run as the client saw it, and as its Execution says it went.
#[derive(Clone, Debug)]
struct Ran {
    id: String,
    elapsed: Duration,
}

#[derive(Clone, Debug)]
struct Settled {
    mode: Option<StartMode>,
    program_millis: Option<i64>,
    /// The Execution's status, for the record when it did not start as asked.
    status: String,
}

impl Bench {
    fn made(&self, name: &str) {
        if let Ok(mut made) = self.made.lock() {
            made.insert(name.to_owned());
        }
    }

    /// Another pool in the namespace could serve the runs meant to be cold.
    async fn refuse_other_pools(&self) -> Result<()> {
        let others: Vec<String> = self.pools.list(&ListParams::default()).await?.iter().map(|p| p.name_any()).collect();
        if others.is_empty() {
            return Ok(());
        }
        Err(bench_error(format!(
            "{RUN_NAMESPACE} already has SandboxPools {others:?}: runs meant to start cold could start warm; delete them first"
        )))
    }

    async fn scale(&self, size: u32) -> Result<()> {
        let body = json!({ "spec": { "size": size } });
        self.pools.patch(&self.pool, &PatchParams::default(), &Patch::Merge(&body)).await?;
        Ok(())
    }

    /// Waits until the pool's status, for its current spec, shows `size`
    /// pods ready and none starting (0 and 0 when scaled to nothing).
    async fn wait_settled(&self, size: u32) -> Result<()> {
        let done = |pool: Option<&SandboxPool>| {
            let Some(pool) = pool else { return true };
            let Some(status) = pool.status.as_ref() else { return false };
            let current = status.observed_generation == pool.metadata.generation;
            status.message.is_some() || (current && status.ready == size && status.starting == 0)
        };
        let pool = tokio::time::timeout(FILL_WITHIN, await_condition(self.pools.clone(), &self.pool, done))
            .await
            .map_err(|_| Error::Timeout {
                what: format!("pool {} at {size} ready", self.pool),
                seconds: FILL_WITHIN.as_secs(),
            })?
            .map_err(|e| bench_error(format!("watching pool {}: {e}", self.pool)))?
            .ok_or_else(|| bench_error(format!("pool {} is gone", self.pool)))?;
        match pool.status.and_then(|s| s.message) {
            Some(why) => Err(bench_error(format!("pool {} cannot keep its size: {why}", self.pool))),
            None => Ok(()),
        }
    }

    /// Reads how the run went from its Execution, then deletes it.
    async fn settle(&self, name: &str) -> Result<Settled> {
        let execution = self.executions.get(name).await?;
        let status = execution.status.unwrap_or_default();
        let settled = Settled {
            mode: status.start_mode,
            program_millis: status.duration_millis,
            status: serde_json::to_string_pretty(&status).unwrap_or_default(),
        };
        self.executions.delete(name, &DeleteParams::background()).await?;
        Ok(settled)
    }

    async fn connect(&self) -> Result<Socket> {
        Ok(self.gateway.connect(&self.token).await?)
    }

    /// Deletes the pool (its unclaimed pods go with it) and every
    /// Execution this bench made, including any whose name only a claimed
    /// Job of the pool still knows. Tries all before failing.
    async fn clean_up(&self) -> Result<()> {
        let mut names = self.made.lock().map(|made| made.clone()).unwrap_or_default();
        let mut first_error = None;
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), RUN_NAMESPACE);
        match jobs.list(&ListParams::default().labels(&format!("{POOL_LABEL}={}", self.pool))).await {
            Ok(list) => names.extend(list.iter().filter_map(|job| job.labels().get(EXECUTION_LABEL).cloned())),
            Err(e) => first_error = Some(Error::from(e)),
        }
        match self.executions.list(&ListParams::default().labels(&format!("{BENCH_LABEL}={}", self.pool))).await {
            Ok(list) => names.extend(list.iter().map(|e| e.name_any())),
            Err(e) => first_error = first_error.or(Some(Error::from(e))),
        }
        let pool = self.pools.delete(&self.pool, &DeleteParams::background()).await;
        let background = DeleteParams::background();
        let deletes = names.iter().map(|name| self.executions.delete(name, &background));
        let results = futures::future::join_all(deletes).await;
        let mut gone = |result: std::result::Result<(), kube::Error>| match result {
            Err(kube::Error::Api(status)) if status.code == 404 => 0,
            Err(e) => {
                first_error.get_or_insert(Error::from(e));
                0
            }
            Ok(()) => 1,
        };
        gone(pool.map(|_| ()));
        // Runs that finished were deleted then; these are the rest.
        let left: usize = results.into_iter().map(|r| gone(r.map(|_| ()))).sum();
        eprintln!("warm: deleted pool {} and the {left} Executions still left", self.pool);
        first_error.map_or(Ok(()), Err)
    }
}

/// Submits hello world over `socket` and waits for its final update.
async fn hello(socket: &mut Socket, bench: &Bench, ref_: &str, within: Duration) -> Result<Ran> {
    let request = SubmitRequest {
        language: Some("python".to_owned()),
        files: vec![FileInput { path: "main.py".to_owned(), content: PROGRAM.to_owned() }],
        ..Default::default()
    };
    let message = ClientMessage::Execute { ref_: Some(ref_.to_owned()), request: Box::new(request) };
    let text = serde_json::to_string(&message).map_err(|e| bench_error(e.to_string()))?;
    let started = Instant::now();
    socket.send(Message::Text(text.into())).await?;
    let deadline = started + within;
    let mut id: Option<String> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let what = || format!("run {}", id.as_deref().unwrap_or(ref_));
        let frame = tokio::time::timeout(left, socket.next())
            .await
            .map_err(|_| Error::Timeout { what: what(), seconds: within.as_secs() })?
            .ok_or_else(|| bench_error(format!("{}: the gateway closed the socket", what())))??;
        let Message::Text(text) = frame else { continue };
        let message: ServerMessage = serde_json::from_str(&text).map_err(|e| bench_error(e.to_string()))?;
        match message {
            ServerMessage::Accepted { id: accepted, ref_: Some(echoed) } if echoed == ref_ => {
                bench.made(&accepted);
                id = Some(accepted);
            }
            // Only this run's: a socket may still hear of earlier ones.
            ServerMessage::Update { execution }
                if Some(&execution.id) == id.as_ref() && execution.status.is_final() =>
            {
                let elapsed = started.elapsed();
                if execution.status != State::Succeeded || execution.stdout.as_deref() != Some(EXPECTED) {
                    return Err(bench_error(format!("run {} ended {execution:?}", execution.id)));
                }
                return Ok(Ran { id: execution.id, elapsed });
            }
            ServerMessage::Error { error, ref_: echoed } if echoed.as_deref().is_none_or(|e| e == ref_) => {
                return Err(bench_error(format!("{}: gateway: {}", what(), error.message)))
            }
            _ => {}
        }
    }
}

/// One socket for runs taken in turns, opened again when it sat idle long
/// enough for the gateway to give up on it.
struct Session<'a> {
    bench: &'a Bench,
    socket: Option<(Socket, Instant)>,
}

impl<'a> Session<'a> {
    fn new(bench: &'a Bench) -> Self {
        Self { bench, socket: None }
    }

    async fn hello(&mut self, ref_: &str) -> Result<Ran> {
        let socket = match self.socket.take() {
            Some((socket, used)) if used.elapsed() < SOCKET_IDLE => socket,
            stale => {
                if let Some((mut old, _)) = stale {
                    let _ = old.close(None).await;
                }
                self.bench.connect().await?
            }
        };
        let mut socket = socket;
        let ran = hello(&mut socket, self.bench, ref_, RUN_WITHIN).await;
        self.socket = Some((socket, Instant::now()));
        ran
    }

    async fn close(mut self) {
        if let Some((mut socket, _)) = self.socket.take() {
            let _ = socket.close(None).await;
        }
    }
}

/// Runs of one kind taken in turns, as measured and as they went.
#[derive(Default)]
struct Kind {
    elapsed: Vec<Duration>,
    /// How many started as the series meant them to.
    as_meant: usize,
    /// Program wall time (`status.durationMillis`) of each run that had one.
    program_millis: Vec<i64>,
}

impl Kind {
    fn samples(&self) -> Samples {
        self.elapsed.iter().copied().collect()
    }

    fn record(&mut self, ran: &Ran, settled: &Settled, meant: StartMode, what: &str) {
        self.elapsed.push(ran.elapsed);
        self.program_millis.extend(settled.program_millis);
        if settled.mode == Some(meant) {
            self.as_meant += 1;
        } else {
            eprintln!(
                "warm: {what} run {} started {:?}, not {meant:?}; its status:\n{}",
                ran.id, settled.mode, settled.status
            );
        }
    }
}

struct Series {
    warm: Kind,
    cold: Kind,
    /// The operator's counters and histograms over the measured warm runs.
    metrics: Delta,
}

async fn websocket_series(bench: &Bench, options: &Options) -> Result<Series> {
    let mut session = Session::new(bench);
    let (mut warm, mut cold) = (Kind::default(), Kind::default());
    let mut before = None;
    eprintln!("warm: {} warm runs over the WebSocket (pool of {})", options.runs, options.pool_size);
    for i in 0..options.warmup + options.runs {
        bench.wait_settled(options.pool_size).await?;
        if i == options.warmup {
            before = Some(scrape(&bench.client).await?);
        }
        let ran = session.hello(&format!("warm-{i}")).await?;
        let settled = bench.settle(&ran.id).await?;
        if i >= options.warmup {
            warm.record(&ran, &settled, StartMode::Warm, "warm");
        }
    }
    let after = scrape(&bench.client).await?;
    let metrics = after.since(&before.unwrap_or_default());
    eprintln!("warm: {} cold runs over the WebSocket (pool scaled to 0)", options.runs);
    bench.scale(0).await?;
    bench.wait_settled(0).await?;
    for i in 0..options.warmup + options.runs {
        let ran = session.hello(&format!("cold-{i}")).await?;
        let settled = bench.settle(&ran.id).await?;
        if i >= options.warmup {
            cold.record(&ran, &settled, StartMode::Cold, "cold");
        }
    }
    session.close().await;
    Ok(Series { warm, cold, metrics })
}

/// As `kubectl apply` then `kubectl wait --for=condition=Complete` would:
/// the Execution created through the API, its condition seen on a watch.
async fn apply_series(bench: &Bench, options: &Options) -> Result<Kind> {
    eprintln!("warm: {} warm runs created through the API", options.runs);
    bench.scale(options.pool_size).await?;
    let mut kind = Kind::default();
    for i in 0..options.warmup + options.runs {
        bench.wait_settled(options.pool_size).await?;
        let name = format!("{}-apply-{i}", bench.pool);
        let mut execution = Execution::new(&name, sandrun_e2e::python(PROGRAM));
        execution.metadata.labels = Some(BTreeMap::from([(BENCH_LABEL.to_owned(), bench.pool.clone())]));
        bench.made(&name);
        let started = Instant::now();
        bench.executions.create(&PostParams::default(), &execution).await?;
        let complete = |e: Option<&Execution>| {
            e.and_then(|e| e.status.as_ref())
                .and_then(|s| s.condition(condition_types::COMPLETE))
                .is_some_and(|c| c.status == "True")
        };
        let done = tokio::time::timeout(RUN_WITHIN, await_condition(bench.executions.clone(), &name, complete))
            .await
            .map_err(|_| Error::Timeout { what: format!("Execution {name} Complete"), seconds: RUN_WITHIN.as_secs() })?
            .map_err(|e| bench_error(format!("watching Execution {name}: {e}")))?
            .ok_or_else(|| bench_error(format!("Execution {name} is gone")))?;
        let elapsed = started.elapsed();
        let status = done.status.unwrap_or_default();
        if status.phase != Phase::Succeeded || status.stdout.as_deref() != Some(EXPECTED) {
            let status = serde_json::to_string_pretty(&status).unwrap_or_default();
            return Err(bench_error(format!("Execution {name} ended:\n{status}")));
        }
        let settled = bench.settle(&name).await?;
        if i >= options.warmup {
            kind.record(&Ran { id: name, elapsed }, &settled, StartMode::Warm, "apply");
        }
    }
    Ok(kind)
}

struct Burst {
    runs: usize,
    /// The operator's warm counters over the burst.
    metrics: Delta,
    elapsed: Vec<Duration>,
    warm: usize,
    cold: usize,
    /// Runs that did not end Succeeded with the right output, and why.
    lost: Vec<String>,
}

/// `runs` at once, one socket each, against a full pool of `size`.
async fn burst(bench: &Bench, size: u32, runs: usize) -> Result<Burst> {
    eprintln!("warm: {runs} runs at once against a full pool of {size}");
    bench.scale(size).await?;
    bench.wait_settled(size).await?;
    let mut sockets = Vec::with_capacity(runs);
    for _ in 0..runs {
        sockets.push(bench.connect().await?);
    }
    let before = scrape(&bench.client).await?;
    let sent = sockets.into_iter().enumerate().map(|(i, mut socket)| async move {
        let ran = hello(&mut socket, bench, &format!("burst-{runs}-{i}"), BURST_WITHIN).await;
        let _ = socket.close(None).await;
        ran
    });
    let outcomes = futures::future::join_all(sent).await;
    let metrics = scrape(&bench.client).await?.since(&before);
    let mut burst = Burst { runs, metrics, elapsed: Vec::new(), warm: 0, cold: 0, lost: Vec::new() };
    for outcome in outcomes {
        match outcome {
            Ok(ran) => {
                burst.elapsed.push(ran.elapsed);
                match bench.settle(&ran.id).await?.mode {
                    Some(StartMode::Warm) => burst.warm += 1,
                    Some(StartMode::Cold) => burst.cold += 1,
                    None => burst.lost.push(format!("{} has no startMode", ran.id)),
                }
            }
            Err(e) => burst.lost.push(e.to_string()),
        }
    }
    for lost in &burst.lost {
        eprintln!("warm: lost in the burst of {runs}: {lost}");
    }
    Ok(burst)
}

/// Counters and histogram sums of the operator's /metrics, summed over its
/// replicas (only the leader binds and delivers; a standby reports 0), and
/// which replicas (pod uids) answered.
#[derive(Default, Debug)]
struct Scrape {
    values: HashMap<String, f64>,
    pods: BTreeSet<String>,
}

impl Scrape {
    fn parse(text: &str, into: &mut HashMap<String, f64>) {
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let mut parts = line.split_whitespace();
            let (Some(name), Some(value)) = (parts.next(), parts.next()) else { continue };
            if name.contains('{') {
                continue;
            }
            if let Ok(value) = value.parse::<f64>() {
                *into.entry(name.to_owned()).or_default() += value;
            }
        }
    }

    fn since(&self, before: &Scrape) -> Delta {
        let value = |map: &HashMap<String, f64>, name: &str| map.get(name).copied().unwrap_or_default();
        let values =
            self.values.keys().map(|name| (name.clone(), value(&self.values, name) - value(&before.values, name)));
        Delta { values: values.collect(), replaced: self.pods != before.pods }
    }
}

/// What changed between two scrapes.
#[derive(Default, Debug)]
struct Delta {
    values: HashMap<String, f64>,
    /// An operator replica came or went in between: its counts started
    /// over, so the differences are not the runs'.
    replaced: bool,
}

impl Delta {
    fn get(&self, name: &str) -> f64 {
        self.values.get(name).copied().unwrap_or_default()
    }

    /// The warm counters, for a line under a table.
    fn counters(&self) -> String {
        let mut line = format!(
            "warm hits {}, misses (no ready pod) {}, fallbacks to cold {}",
            self.get(HITS),
            self.get(MISSES),
            self.get(FALLBACKS)
        );
        if self.replaced {
            line.push_str(" (an operator replica was replaced in between: these are not the runs' counts)");
        }
        line
    }

    /// Mean of a histogram's observations in between, and how many.
    fn mean(&self, histogram: &str) -> Option<(Duration, u64)> {
        let count = self.get(&format!("{histogram}_count"));
        let sum = self.get(&format!("{histogram}_sum"));
        (count >= 1.0 && sum >= 0.0).then(|| (Duration::from_secs_f64(sum / count), count as u64))
    }
}

/// Every operator replica's /metrics, through the API server's pod proxy.
async fn scrape(client: &Client) -> Result<Scrape> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    let list = pods.list(&ListParams::default().labels(OPERATOR_SELECTOR)).await?;
    let mut scrape = Scrape::default();
    let running = list.iter().filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
    for pod in running {
        let request = kube::core::Request::new(format!("/api/v1/namespaces/{RELEASE_NAMESPACE}/pods"))
            .get_subresource("proxy/metrics", &format!("{}:{OPERATOR_PORT}", pod.name_any()))
            .map_err(|e| bench_error(format!("a request for {}'s metrics: {e}", pod.name_any())))?;
        let text = client.request_text(request).await?;
        Scrape::parse(&text, &mut scrape.values);
        scrape.pods.insert(pod.uid().unwrap_or_default());
    }
    if scrape.pods.is_empty() {
        return Err(bench_error("no running operator pod served metrics"));
    }
    Ok(scrape)
}

fn mean(durations: &[Duration]) -> Duration {
    let total: Duration = durations.iter().sum();
    total / (durations.len().max(1) as u32)
}

fn within(sample: Duration, goal: Duration) -> bool {
    sample <= goal
}

fn report_websocket(options: &Options, series: &Series) {
    let (warm, cold) = (series.warm.samples(), series.cold.samples());
    let row = |label: &str, w: Duration, c: Duration| {
        Row::new(format!("hello world, request → result, {label}"), ms(w), ms(c))
            .ratio(w.as_secs_f64() / c.as_secs_f64().max(f64::EPSILON))
    };
    let (w50, c50) = (warm.percentile(50.0), cold.percentile(50.0));
    let (w99, c99) = (warm.percentile(99.0), cold.percentile(99.0));
    let ratio = w50.as_secs_f64() / c50.as_secs_f64().max(f64::EPSILON);
    let n = options.runs;
    let rows = vec![
        row("p50", w50, c50).goal(format!("warm ≤ {} ms", GOAL_WARM_P50.as_millis()), within(w50, GOAL_WARM_P50)),
        row("p99", w99, c99).goal(format!("warm ≤ {} ms", GOAL_WARM_P99.as_millis()), within(w99, GOAL_WARM_P99)),
        row("min", warm.percentile(0.0), cold.percentile(0.0)),
        row("max", warm.percentile(100.0), cold.percentile(100.0)),
        row("p50, warm / cold", w50, c50).goal(format!("ratio ≤ {GOAL_RATIO}"), ratio <= GOAL_RATIO),
        Row::new(
            "runs that started as meant (Warm; Cold)",
            format!("{}/{n} Warm", series.warm.as_meant),
            format!("{}/{n} Cold", series.cold.as_meant),
        )
        .goal("all", series.warm.as_meant == n && series.cold.as_meant == n),
    ];
    print_rows(
        &format!(
            "Warm start over the gateway WebSocket: sandrun = pool of {} kept full (python, {POOL_MEMORY}, cpu {POOL_CPU}), \
             baseline = the same pool scaled to 0, cold ({n} runs each, {} warm-up)",
            options.pool_size, options.warmup
        ),
        &rows,
    );
}

fn report_breakdown(series: &Series) {
    let d = &series.metrics;
    let runs = series.warm.elapsed.len();
    let total = mean(&series.warm.elapsed);
    let millis = &series.warm.program_millis;
    let program = Duration::from_millis(millis.iter().sum::<i64>().max(0) as u64 / millis.len().max(1) as u64);
    let (bind, delivery, stream) = (d.mean(BIND), d.mean(DELIVERY), d.mean(STREAM));
    let of = |x: Option<(Duration, u64)>| x.map(|(mean, _)| mean).unwrap_or_default();
    let count = |x: Option<(Duration, u64)>| x.map_or(0, |(_, count)| count);
    let after_accept = of(stream).saturating_sub(of(delivery)).saturating_sub(program);
    let rest = total.saturating_sub(of(bind)).saturating_sub(of(stream));
    let share = |part: Duration| format!("{:.0}%", 100.0 * part.as_secs_f64() / total.as_secs_f64().max(f64::EPSILON));
    let line = |step: &str, part: Duration, samples: String| vec![step.to_owned(), ms(part), share(part), samples];
    let rows = vec![
        line("end to end, as the client saw it", total, runs.to_string()),
        line("bind: claim pod, adopt Job, write status (operator)", of(bind), count(bind).to_string()),
        line("delivery: attach → runner accepted (operator)", of(delivery), count(delivery).to_string()),
        line("program (status.durationMillis)", program, millis.len().to_string()),
        line("stream rest: accepted → frame read, less the program", after_accept, count(stream).to_string()),
        line("stream, in all: attach → frame (operator)", of(stream), count(stream).to_string()),
        line("rest: create, operator pick-up, final status write, push", rest, String::new()),
    ];
    println!("\n### Where a warm run's time goes (means over the {runs} measured warm WebSocket runs)\n");
    sandrun_e2e::print_table(&["step", "mean", "share", "samples"], &rows);
    println!("\noperator counters over those runs: {}", d.counters());
    if count(bind) != runs as u64 {
        println!(
            "(the bind histogram saw {} runs, not {runs}: the operator's histograms count every namespace's \
             warm runs, so another client's ran meanwhile, or a replica was replaced)",
            count(bind)
        );
    }
}

fn report_apply(options: &Options, apply: &Kind, websocket: &Kind) {
    let (a, w) = (apply.samples(), websocket.samples());
    let row = |label: &str, p: f64| {
        let (x, y) = (a.percentile(p), w.percentile(p));
        (
            Row::new(format!("create → Complete seen, {label}"), ms(x), ms(y))
                .ratio(x.as_secs_f64() / y.as_secs_f64().max(f64::EPSILON)),
            x,
        )
    };
    let (p50, a50) = row("p50", 50.0);
    let n = options.runs;
    let rows = vec![
        p50.goal(format!("≤ {} ms", GOAL_APPLY_P50.as_millis()), within(a50, GOAL_APPLY_P50)),
        row("p99", 99.0).0,
        Row::new("runs that started Warm", format!("{}/{n}", apply.as_meant), String::new())
            .goal("all", apply.as_meant == n),
    ];
    print_rows(
        &format!(
            "Warm start through the API as `kubectl apply` + `kubectl wait` would (watch on the Complete condition): \
             sandrun = API, baseline = the WebSocket warm runs above ({n} runs, pool of {})",
            options.pool_size
        ),
        &rows,
    );
}

fn report_bursts(options: &Options, bursts: &[Burst], series: &Series) {
    let (warm, cold) = (series.warm.samples(), series.cold.samples());
    let mut rows = Vec::new();
    for burst in bursts {
        let samples: Samples = burst.elapsed.iter().copied().collect();
        let n = burst.runs;
        let expect_warm = (options.burst as usize).min(n);
        for (label, p) in [("p50", 50.0), ("p99", 99.0)] {
            let baseline = if n > options.burst as usize { cold.percentile(p) } else { warm.percentile(p) };
            let figure = samples.percentile(p);
            rows.push(
                Row::new(format!("{n} at once, {label}"), ms(figure), ms(baseline))
                    .ratio(figure.as_secs_f64() / baseline.as_secs_f64().max(f64::EPSILON)),
            );
        }
        rows.push(
            Row::new(format!("{n} at once, Warm / Cold"), format!("{} / {}", burst.warm, burst.cold), String::new())
                .goal(format!("≥ {expect_warm} Warm"), burst.warm >= expect_warm),
        );
        rows.push(
            Row::new(format!("{n} at once, lost"), burst.lost.len().to_string(), String::new())
                .goal("0 (all Succeeded, right output)", burst.lost.is_empty() && burst.warm + burst.cold == n),
        );
    }
    print_rows(
        &format!(
            "Bursts over the WebSocket, one socket per run, all sent at once against a full pool of {}: \
             baseline = the runs taken in turns above (warm for {0}, cold for {})",
            options.burst,
            2 * options.burst
        ),
        &rows,
    );
    for burst in bursts {
        println!("\noperator counters over the burst of {}: {}", burst.runs, burst.metrics.counters());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_summed_over_replicas_and_labelled_series_skipped() {
        let mut map = HashMap::new();
        let leader = "# TYPE x histogram\nsandrun_operator_warm_bind_duration_seconds_sum 0.3\n\
                      sandrun_operator_warm_bind_duration_seconds_count 3\n\
                      sandrun_operator_warm_bind_duration_seconds_bucket{le=\"0.001\"} 0\n# EOF\n";
        let standby = "sandrun_operator_warm_bind_duration_seconds_sum 0\n\
                       sandrun_operator_warm_bind_duration_seconds_count 0\n";
        Scrape::parse(leader, &mut map);
        Scrape::parse(standby, &mut map);
        let values = HashMap::from([(format!("{BIND}_sum"), 0.1), (format!("{BIND}_count"), 1.0)]);
        let before = Scrape { values, pods: BTreeSet::from(["a".to_owned()]) };
        let delta = Scrape { values: map, pods: BTreeSet::from(["a".to_owned()]) }.since(&before);
        assert!(!delta.replaced);
        let (mean, count) = delta.mean(BIND).unwrap();
        assert_eq!(count, 2);
        assert!((mean.as_secs_f64() - 0.1).abs() < 1e-9, "{mean:?}");
        assert_eq!(delta.mean(STREAM), None, "no observations, no mean");
    }
}
