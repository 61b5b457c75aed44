//! Fan-out: one status change pushed by one gateway to many WebSocket
//! clients at once. Each round submits a long sleep through the gateway,
//! subscribes every client to it, then cancels it; the operator writes
//! `Cancelled` and the gateway's watch pushes it to every socket.
//!
//! T0 is when this process's own watch (same API server, same clock) sees
//! `Cancelled`; a client's latency is its receipt time minus T0. The
//! baseline is the same measurement with a handful of clients (one by
//! default), in the same run. Memory is the gateway process's RSS before
//! the clients connect and once all are subscribed: memory the gateway
//! freed earlier but kept is reused first, so a fresh gateway (or many
//! clients) gives the truer figure per socket.
//!
//! All clients share one key and its rate limit: each connect and each
//! subscribe costs a token, so 10k clients over 3 rounds are 40k requests,
//! 15 minutes at the `demo` key's 50/s. A key with a higher
//! `requestsPerSecond` and `--rate` to match make it minutes. Build it
//! with `--release`: the clients share the machine with the gateway.

mod client;
mod host;
mod report;
mod watch;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams};
use kube::Client;
use sandrun_api::{ExecutionView, LimitsInput, SubmitRequest};
use sandrun_crds::{Execution, Phase};
use sandrun_e2e::gateway::Gateway;
use tokio::sync::Semaphore;

use crate::error::{bench_error, Error, Result};
use crate::process::{PeakRss, Process};
use client::{Pacer, Shared};
use report::{check, report, Measured};
use watch::PhaseWatch;

/// Runs until cancelled: the benchmark decides when its status changes.
const PROGRAM: &str = "import time\ntime.sleep(3600)\n";
const START_WITHIN: Duration = Duration::from_secs(180);
/// From the cancel until the operator's `Cancelled` reaches the watch; a
/// new operator leader (after a rollout) may take most of a minute to lead.
const CANCEL_WITHIN: Duration = Duration::from_secs(180);
/// From T0 until every client has the update.
const PUSH_WITHIN: Duration = Duration::from_secs(60);
/// Between rounds, so one round's stragglers do not load the next.
const SETTLE: Duration = Duration::from_secs(2);
const GOAL_P99: Duration = Duration::from_millis(50);
const GOAL_KIB_PER_SOCKET: f64 = 20.0;

#[derive(clap::Args, Debug)]
pub struct Options {
    /// WebSocket clients, all on one gateway, all subscribed to the same Executions.
    #[arg(long, default_value_t = 10_000)]
    pub clients: usize,
    /// Clients of the baseline measured first, in the same run.
    #[arg(long, default_value_t = 1)]
    pub baseline_clients: usize,
    /// Executions cancelled one after another: each a status change pushed to every client.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 200)]
    pub parallel: usize,
    /// Seconds all clients stay subscribed and idle before the first cancel,
    /// to measure what idle sockets cost (pings, and changes of other Executions).
    #[arg(long, default_value_t = 10)]
    pub idle: u64,
    /// Gateway key every client uses.
    #[arg(long, default_value = "demo")]
    pub key: String,
    /// Requests per second made with the key (a connect, and a subscribe per
    /// round, per client); keep it under the key's requestsPerSecond (demo: 50).
    #[arg(long, default_value_t = 45)]
    pub rate: u32,
    /// Host pid of the gateway, when it is not the one pod in the cluster
    /// (say, hack/gateway.sh's; point SANDRUN_GATEWAY_ADDR at it too).
    #[arg(long)]
    pub gateway_pid: Option<u32>,
}

struct Bench<'a> {
    client: &'a Client,
    options: &'a Options,
    gateway: Gateway,
    token: String,
    namespace: String,
    http: reqwest::Client,
    pacer: Arc<Pacer>,
    watch: PhaseWatch,
    process: Process,
}

pub async fn run(client: &Client, options: &Options) -> Result<()> {
    if options.clients == 0 || options.baseline_clients == 0 || options.rounds == 0 {
        return Err(bench_error("--clients, --baseline-clients and --rounds must be at least 1"));
    }
    let gateway = Gateway::from_env();
    let key = gateway.key(&options.key);
    let process = host::find_gateway(options.gateway_pid)?;
    let limits = host::check(options.clients.max(options.baseline_clients) as u64, &process)?;
    let requests = (options.clients + options.baseline_clients) * (1 + options.rounds) + 4 * options.rounds;
    eprintln!(
        "fanout: gateway {} (pid {}); {limits}; about {} requests at {}/s, so at least {}s",
        gateway.url,
        process.pid,
        requests,
        options.rate,
        requests / options.rate.max(1) as usize
    );
    let bench = Bench {
        client,
        options,
        http: gateway.http(),
        token: key.token,
        watch: PhaseWatch::start(&key.namespace).await?,
        namespace: key.namespace,
        gateway,
        pacer: Arc::new(Pacer::new(options.rate)),
        process,
    };
    let baseline = bench.measure(options.baseline_clients).await?;
    tokio::time::sleep(SETTLE).await;
    let fanout = bench.measure(options.clients).await?;
    report(options, &fanout, &baseline, &limits);
    if !bench.watch.realtime {
        println!("- the T0 watch ran at normal priority (no CAP_SYS_NICE): T0 may be late under load");
    }
    Ok(())
}

impl Bench<'_> {
    /// One phase: `clients` sockets, every round's status change pushed to all.
    async fn measure(&self, clients: usize) -> Result<Measured> {
        let mut ids = Vec::new();
        let outcome = tokio::select! {
            outcome = self.measure_with(clients, &mut ids) => outcome,
            signal = interrupted() => Err(signal.map_or_else(Error::from, |name| bench_error(format!("stopped by {name}")))),
        };
        // Cancelled ones would go by their TTL; a failed or stopped phase
        // may leave sleepers running.
        let executions: Api<Execution> = Api::namespaced(self.client.clone(), &self.namespace);
        for id in &ids {
            let _ = executions.delete(id, &DeleteParams::background()).await;
        }
        outcome
    }

    async fn measure_with(&self, clients: usize, ids: &mut Vec<String>) -> Result<Measured> {
        // Long enough for the phase, short enough that a killed run's sleepers end soon.
        let requests = clients as u64 * (1 + self.options.rounds as u64);
        let phase =
            requests / u64::from(self.options.rate.max(1)) + self.options.idle + 60 * self.options.rounds as u64;
        let timeout = u32::try_from(2 * phase + 600).unwrap_or(u32::MAX).min(sandrun_crds::MAX_TIMEOUT_SECONDS);
        for _ in 0..self.options.rounds {
            ids.push(self.submit(timeout).await?);
        }
        for id in ids.iter() {
            self.watch.wait(id, START_WITHIN, |marks| marks.running).await?;
        }
        eprintln!("fanout: {clients} clients subscribing to {}", ids.join(", "));
        let (rss_before, cpu_before) = (self.process.rss_kib()?, self.process.cpu()?);
        let hwm_before = self.process.peak_rss_kib()?;
        let peak = PeakRss::start(self.process.pid, rss_before);
        let shared = Arc::new(Shared {
            ws_url: format!("{}/v1/ws", self.gateway.url.replacen("http", "ws", 1)),
            token: self.token.clone(),
            ids: ids.clone(),
            pacer: self.pacer.clone(),
            opening: Semaphore::new(self.options.parallel.max(1)),
            ready: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            finals: ids.iter().map(|_| AtomicUsize::new(0)).collect(),
            rate_limited: AtomicUsize::new(0),
            retried: AtomicUsize::new(0),
        });
        let mut m = Measured { clients, rss_before, hwm_before, ..Default::default() };
        let (close, closing) = tokio::sync::watch::channel(false);
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients).map(|_| tokio::spawn(client::run(shared.clone(), closing.clone()))).collect();
        let rounds = async {
            self.wait_open(&shared, clients).await?;
            m.open_time = started.elapsed();
            let (rss_open, cpu_open) = (self.process.rss_kib()?, self.process.cpu()?);
            (m.rss_open, m.cpu_open) = (rss_open, cpu_open.saturating_sub(cpu_before));
            eprintln!("fanout: all {clients} subscribed; idle for {}s", self.options.idle);
            tokio::time::sleep(Duration::from_secs(self.options.idle)).await;
            m.cpu_idle = self.process.cpu()?.saturating_sub(cpu_open);
            self.cancel_each(&shared, &mut m).await
        }
        .await;
        let _ = close.send(true);
        let mut reports = Vec::with_capacity(clients);
        for task in tasks {
            reports.push(task.await.map_err(|e| bench_error(format!("a client task: {e}")))?);
        }
        let first_error = reports.iter().filter_map(|r| r.error.as_deref()).find(|e| *e != client::STOPPED);
        let t0s = rounds.map_err(|error| match first_error {
            Some(first) => bench_error(format!("{error}; the first client error: {first}")),
            None => error,
        })?;
        (m.latency, m.early, m.extra) = check(&reports, &t0s)?;
        m.updates = reports.iter().map(|r| r.updates).sum();
        m.rss_peak = peak.stop();
        m.rate_limited = shared.rate_limited.load(Ordering::Relaxed);
        m.retried = shared.retried.load(Ordering::Relaxed);
        Ok(m)
    }

    /// Waits until every client has connected and subscribed; fails as soon as one cannot.
    async fn wait_open(&self, shared: &Shared, clients: usize) -> Result<()> {
        let per_client = 1 + self.options.rounds as u64;
        let within = Duration::from_secs(120 + 2 * clients as u64 * per_client / u64::from(self.options.rate.max(1)));
        let deadline = Instant::now() + within;
        let mut told = Instant::now();
        loop {
            let ready = shared.ready.load(Ordering::SeqCst);
            if shared.failed.load(Ordering::SeqCst) > 0 {
                return Err(bench_error(format!("a client failed to connect or subscribe ({ready} had)")));
            }
            if ready == clients {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!("{clients} clients to subscribe"),
                    seconds: within.as_secs(),
                });
            }
            if told.elapsed() > Duration::from_secs(10) {
                eprintln!("fanout: {ready}/{clients} subscribed");
                told = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Cancels each round's Execution in turn, adding up the gateway's and
    /// this process's CPU time; returns each round's T0.
    async fn cancel_each(&self, shared: &Shared, m: &mut Measured) -> Result<Vec<Instant>> {
        let mut t0s = Vec::new();
        let me = Process { pid: std::process::id() };
        for (round, id) in shared.ids.iter().enumerate() {
            tokio::time::sleep(SETTLE).await;
            let (before, own_before) = (self.process.cpu()?, me.cpu()?);
            self.cancel(id).await?;
            let (t0, phase) = self.watch.wait(id, CANCEL_WITHIN, |marks| marks.ended).await?;
            if phase != Phase::Cancelled {
                return Err(bench_error(format!("{id} ended {phase:?}, not Cancelled")));
            }
            t0s.push(t0);
            // Clients that fail are counted, not waited for; check() reports them.
            let all =
                || shared.finals[round].load(Ordering::SeqCst) + shared.failed.load(Ordering::SeqCst) >= m.clients;
            while !all() && t0.elapsed() < PUSH_WITHIN {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            m.cpu_push += self.process.cpu()?.saturating_sub(before);
            m.own_cpu_push += me.cpu()?.saturating_sub(own_before);
        }
        Ok(t0s)
    }

    /// Submits the sleeper through the gateway's REST API; returns its id.
    async fn submit(&self, timeout_seconds: u32) -> Result<String> {
        let request = SubmitRequest {
            language: Some("python".to_owned()),
            code: Some(PROGRAM.to_owned()),
            limits: Some(LimitsInput { timeout_seconds: Some(timeout_seconds), ..Default::default() }),
            ..Default::default()
        };
        let url = format!("{}/v1/executions", self.gateway.url);
        let response = self.request(|| self.http.post(&url).json(&request)).await?;
        Ok(response.json::<ExecutionView>().await?.id)
    }

    /// DELETE /v1/executions/{id}: the gateway marks it, the operator stops it.
    async fn cancel(&self, id: &str) -> Result<()> {
        let url = format!("{}/v1/executions/{id}", self.gateway.url);
        self.request(|| self.http.delete(&url)).await.map(drop)
    }

    /// Sends a request in the key's turn, again while it is rate-limited.
    async fn request(&self, build: impl Fn() -> reqwest::RequestBuilder) -> Result<reqwest::Response> {
        loop {
            self.pacer.turn().await;
            let response = build().bearer_auth(&self.token).send().await?;
            if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            if !response.status().is_success() {
                let status = response.status();
                return Err(bench_error(format!("gateway answered {status}: {}", response.text().await?)));
            }
            return Ok(response);
        }
    }
}

/// SIGINT or SIGTERM: the name of the one that came.
async fn interrupted() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut int, mut term) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
    tokio::select! {
        _ = int.recv() => Ok("SIGINT"),
        _ = term.recv() => Ok("SIGTERM"),
    }
}
