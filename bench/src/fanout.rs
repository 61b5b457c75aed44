//! Fan-out: one status change pushed by one gateway to many WebSocket
//! clients at once. Each round submits a long sleep through the gateway,
//! subscribes every client to it, then cancels it; the operator writes
//! `Cancelled` and the gateway's watch pushes it to every socket.
//!
//! T0 is when this process's own watch (same API server, same clock) sees
//! `Cancelled`; a client's latency is its receipt time minus T0. The
//! baseline is the same measurement with a handful of clients (one by
//! default), in the same run. Memory is the gateway process's RSS before
//! the clients connect and once all are subscribed.

mod client;
mod host;
mod watch;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams};
use kube::Client;
use sandrun_api::{ExecutionView, LimitsInput, SubmitRequest};
use sandrun_crds::{Execution, Phase};
use sandrun_e2e::gateway::Gateway;
use tokio::sync::Semaphore;

use crate::error::{bench_error, Error, Result};
use crate::stats::{ms, print_rows, Row, Samples};
use client::{Pacer, Report, Shared};
use host::GatewayProcess;
use watch::PhaseWatch;

/// Runs until cancelled: the benchmark decides when its status changes.
const PROGRAM: &str = "import time\ntime.sleep(3600)\n";
const START_WITHIN: Duration = Duration::from_secs(180);
/// From the cancel until the operator's `Cancelled` reaches the watch.
const CANCEL_WITHIN: Duration = Duration::from_secs(60);
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

/// One phase's figures.
struct Measured {
    clients: usize,
    latency: Samples,
    /// Receipts before T0 (the watch was the later of the two), counted as 0.
    early: usize,
    rss_before: u64,
    rss_open: u64,
    rss_peak: u64,
    cpu_open: Duration,
    cpu_push: Duration,
    open_time: Duration,
    extra: usize,
    rate_limited: usize,
    retried: usize,
}

impl Measured {
    fn kib_per_socket(&self) -> f64 {
        self.rss_open.saturating_sub(self.rss_before) as f64 / self.clients.max(1) as f64
    }
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
    process: GatewayProcess,
}

pub async fn run(client: &Client, options: &Options) -> Result<()> {
    if options.clients == 0 || options.baseline_clients == 0 || options.rounds == 0 {
        return Err(bench_error("--clients, --baseline-clients and --rounds must be at least 1"));
    }
    let gateway = Gateway::from_env();
    let key = gateway.key(&options.key);
    let process = GatewayProcess::find(options.gateway_pid)?;
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
    Ok(())
}

impl Bench<'_> {
    /// One phase: `clients` sockets, every round's status change pushed to all.
    async fn measure(&self, clients: usize) -> Result<Measured> {
        let mut ids = Vec::new();
        let outcome = self.measure_with(clients, &mut ids).await;
        // Cancelled ones would go by their TTL; a failed phase may leave sleepers running.
        let executions: Api<Execution> = Api::namespaced(self.client.clone(), &self.namespace);
        for id in &ids {
            let _ = executions.delete(id, &DeleteParams::background()).await;
        }
        outcome
    }

    async fn measure_with(&self, clients: usize, ids: &mut Vec<String>) -> Result<Measured> {
        for _ in 0..self.options.rounds {
            ids.push(self.submit().await?);
        }
        for id in ids.iter() {
            self.watch.wait(id, START_WITHIN, |m| m.running).await?;
        }
        eprintln!("fanout: {clients} clients subscribing to {}", ids.join(", "));
        let (rss_before, cpu_before) = (self.process.rss_kib()?, self.process.cpu()?);
        let peak = PeakRss::start(&self.process, rss_before);
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
        let (close, closing) = tokio::sync::watch::channel(false);
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients).map(|_| tokio::spawn(client::run(shared.clone(), closing.clone()))).collect();
        let rounds = async {
            self.wait_open(&shared, clients).await?;
            let open_time = started.elapsed();
            let (rss_open, cpu_open) = (self.process.rss_kib()?, self.process.cpu()?.saturating_sub(cpu_before));
            let (t0s, cpu_push) = self.cancel_each(&shared, clients).await?;
            Ok::<_, Error>((open_time, rss_open, cpu_open, t0s, cpu_push))
        }
        .await;
        let _ = close.send(true);
        let mut reports = Vec::with_capacity(clients);
        for task in tasks {
            reports.push(task.await.map_err(|e| bench_error(format!("a client task: {e}")))?);
        }
        let (open_time, rss_open, cpu_open, t0s, cpu_push) = rounds?;
        let (latency, early, extra) = check(&reports, &t0s)?;
        Ok(Measured {
            clients,
            latency,
            early,
            rss_before,
            rss_open,
            rss_peak: peak.stop(),
            cpu_open,
            cpu_push,
            open_time,
            extra,
            rate_limited: shared.rate_limited.load(Ordering::Relaxed),
            retried: shared.retried.load(Ordering::Relaxed),
        })
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

    /// Cancels each round's Execution in turn; returns each T0 and the
    /// gateway's CPU time over all rounds.
    async fn cancel_each(&self, shared: &Shared, clients: usize) -> Result<(Vec<Instant>, Duration)> {
        let mut t0s = Vec::new();
        let mut cpu = Duration::ZERO;
        for (round, id) in shared.ids.iter().enumerate() {
            tokio::time::sleep(SETTLE).await;
            let before = self.process.cpu()?;
            self.cancel(id).await?;
            let (t0, phase) = self.watch.wait(id, CANCEL_WITHIN, |m| m.ended).await?;
            if phase != Phase::Cancelled {
                return Err(bench_error(format!("{id} ended {phase:?}, not Cancelled")));
            }
            t0s.push(t0);
            // Clients that fail are counted, not waited for; check() reports them.
            let all = || shared.finals[round].load(Ordering::SeqCst) + shared.failed.load(Ordering::SeqCst) >= clients;
            while !all() && t0.elapsed() < PUSH_WITHIN {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            cpu += self.process.cpu()?.saturating_sub(before);
        }
        Ok((t0s, cpu))
    }

    /// Submits the sleeper through the gateway's REST API; returns its id.
    async fn submit(&self) -> Result<String> {
        let request = SubmitRequest {
            language: Some("python".to_owned()),
            code: Some(PROGRAM.to_owned()),
            limits: Some(LimitsInput {
                timeout_seconds: Some(sandrun_crds::MAX_TIMEOUT_SECONDS),
                ..Default::default()
            }),
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

/// Latencies from every client's receipts; fails when a client missed an
/// update, failed, or did not close cleanly.
fn check(reports: &[Report], t0s: &[Instant]) -> Result<(Samples, usize, usize)> {
    let (mut latency, mut early, mut extra, mut missing, mut unclean) = (Samples::default(), 0, 0, 0, 0);
    let mut errors = Vec::new();
    for report in reports {
        extra += report.extra;
        unclean += usize::from(!report.clean_close);
        errors.extend(report.error.clone());
        for (received, t0) in report.received.iter().zip(t0s) {
            match received {
                Some(at) if at < t0 => {
                    early += 1;
                    latency.push(Duration::ZERO);
                }
                Some(at) => latency.push(at.duration_since(*t0)),
                None => missing += 1,
            }
        }
    }
    if !errors.is_empty() || missing > 0 || unclean > 0 {
        errors.sort();
        errors.dedup();
        return Err(bench_error(format!(
            "of {} clients: {missing} updates missed, {unclean} sockets not closed cleanly, errors: {errors:?}",
            reports.len()
        )));
    }
    Ok((latency, early, extra))
}

/// Samples the gateway's RSS every 100 ms until stopped; the highest seen.
struct PeakRss {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakRss {
    fn start(process: &GatewayProcess, now: u64) -> Self {
        let peak = Arc::new(AtomicU64::new(now));
        let (seen, process) = (peak.clone(), GatewayProcess { pid: process.pid });
        let task = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                every.tick().await;
                if let Ok(rss) = process.rss_kib() {
                    seen.fetch_max(rss, Ordering::Relaxed);
                }
            }
        });
        Self { peak, task }
    }

    fn stop(self) -> u64 {
        self.task.abort();
        self.peak.load(Ordering::Relaxed)
    }
}

fn report(options: &Options, fanout: &Measured, baseline: &Measured, limits: &host::Limits) {
    let ratio = |s: f64, b: f64| s / b.max(f64::EPSILON);
    let (n, b) = (fanout.clients, baseline.clients);
    let mut rows = Vec::new();
    for (label, p) in [("p50", 50.0), ("p95", 95.0), ("p99", 99.0), ("max", 100.0)] {
        let (s, base) = (fanout.latency.percentile(p), baseline.latency.percentile(p));
        let mut row = Row::new(format!("push latency {label}, {n} vs {b} clients"), ms(s), ms(base));
        // A baseline of 0 (receipt before the watch's T0) has no ratio.
        if base > Duration::ZERO {
            row = row.ratio(ratio(s.as_secs_f64(), base.as_secs_f64()));
        }
        if label == "p99" {
            row = row.goal(format!("< {}", ms(GOAL_P99)), s < GOAL_P99);
        }
        rows.push(row);
    }
    let (s, base) = (fanout.kib_per_socket(), baseline.kib_per_socket());
    rows.push(
        Row::new("gateway RSS per socket (after − before) / clients", kib(s), kib(base))
            .goal(format!("< {GOAL_KIB_PER_SOCKET} KiB"), s < GOAL_KIB_PER_SOCKET),
    );
    let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
    rows.push(Row::new("gateway RSS before the clients", mib(fanout.rss_before), mib(baseline.rss_before)));
    rows.push(Row::new("gateway RSS, all subscribed", mib(fanout.rss_open), mib(baseline.rss_open)));
    rows.push(Row::new("gateway RSS, peak of the phase", mib(fanout.rss_peak), mib(baseline.rss_peak)));
    let per = |cpu: Duration, count: usize| format!("{:.0} µs", cpu.as_secs_f64() * 1e6 / count.max(1) as f64);
    let per_connection = (fanout.cpu_open.as_secs_f64() / n as f64, baseline.cpu_open.as_secs_f64() / b as f64);
    rows.push(
        Row::new("gateway CPU per client, connect + subscribe", per(fanout.cpu_open, n), per(baseline.cpu_open, b))
            .ratio(ratio(per_connection.0, per_connection.1)),
    );
    let pushes = (n * options.rounds, b * options.rounds);
    let per_push = (fanout.cpu_push.as_secs_f64() / pushes.0 as f64, baseline.cpu_push.as_secs_f64() / pushes.1 as f64);
    rows.push(
        Row::new("gateway CPU per client per cancel", per(fanout.cpu_push, pushes.0), per(baseline.cpu_push, pushes.1))
            .ratio(ratio(per_push.0, per_push.1)),
    );
    print_rows(
        &format!(
            "Fan-out: a status change pushed to {n} WebSocket clients of one gateway, beside {b} \
             ({} rounds, latency from this process's watch seeing the change)",
            options.rounds
        ),
        &rows,
    );
    for m in [baseline, fanout] {
        println!(
            "- {} clients: {} samples ({} before T0, counted as 0), subscribed in {:.1}s \
             ({} rate-limited, {} connects retried), {} updates after the final one",
            m.clients,
            m.latency.len(),
            m.early,
            m.open_time.as_secs_f64(),
            m.rate_limited,
            m.retried,
            m.extra
        );
    }
    println!("- {limits}");
}

fn kib(value: f64) -> String {
    format!("{value:.1} KiB")
}
