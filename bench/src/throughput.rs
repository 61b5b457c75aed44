//! Executions finished per second when many arrive at once, on simulated
//! nodes (kwok completes the pods), against kube-controller-manager's Job
//! controller finishing as many bare Jobs in the same run. Every sandrun
//! run also goes through that Job controller, so the baseline is the
//! ceiling and the ratio is what the operator costs on top.
//!
//! Both kinds ask for the RuntimeClass `kwok` that `cluster/kwok.sh`
//! creates: it steers their pods to the simulated nodes, and nothing else
//! goes there. sandrun must allow it (`sandbox.allowedRuntimeClasses`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use sandrun_crds::{Execution, Phase};
use sandrun_e2e::inspect::daemon_pid;
use serde_json::json;

use crate::error::{bench_error, Error, Result};
use crate::overhead::baseline_job;
use crate::process::{PeakRss, Process};
use crate::stats::{print_rows, Row};
use crate::{leader_pid, run_id};

/// The RuntimeClass of `cluster/kwok.sh`, scheduling onto its nodes.
const SIMULATED: &str = "kwok";
/// The targets.
const GOAL_RATE: f64 = 200.0;
const GOAL_RATIO: f64 = 0.8;
const GOAL_RSS_MIB: f64 = 64.0;

#[derive(clap::Args, Debug)]
pub struct Options {
    /// How many at once, one measurement each (sandrun and baseline).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub counts: Vec<usize>,
    /// Simulated nodes `cluster/kwok.sh` starts.
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    /// Creations in flight at once, like a busy client.
    #[arg(long, default_value_t = 100)]
    pub parallel: usize,
    /// Give up on one measurement after this long.
    #[arg(long, default_value_t = 1800)]
    pub timeout_seconds: u64,
    /// Measure sandrun alone: for iterating on the operator, not for figures
    /// to report (those stand beside their baseline).
    #[arg(long)]
    pub without_baseline: bool,
}

struct Measurement {
    count: usize,
    /// All created, from the first create.
    created_in: Duration,
    /// All finished, from the first create.
    finished_in: Duration,
    peak_rss_mib: f64,
    failed: usize,
    /// CPU seconds each control-plane process spent during the measurement.
    cpu: Vec<(&'static str, f64)>,
}

impl Measurement {
    fn rate(&self) -> f64 {
        self.count as f64 / self.finished_in.as_secs_f64().max(f64::EPSILON)
    }
}

pub async fn run(client: &Client, options: &Options) -> Result<()> {
    kwok(&["start", &options.nodes.to_string()], Some(&frame_file()?)).await?;
    let outcome = measure_all(client, options).await;
    let stopped = kwok(&["stop"], None).await;
    outcome.and(stopped)
}

async fn measure_all(client: &Client, options: &Options) -> Result<()> {
    let id = run_id();
    for &count in &options.counts {
        let baseline = if options.without_baseline {
            None
        } else {
            let namespace = format!("bench-{id}-jobs-{count}");
            let baseline = measure(client, &namespace, count, options, Kind::Jobs).await?;
            cleanup(client, &namespace).await?;
            Some(baseline)
        };
        let namespace = format!("bench-{id}-executions-{count}");
        let sandrun = measure(client, &namespace, count, options, Kind::Executions).await?;
        cleanup(client, &namespace).await?;
        match baseline {
            Some(baseline) => report(&sandrun, &baseline),
            None => report_alone(&sandrun),
        }
    }
    Ok(())
}

fn report(sandrun: &Measurement, baseline: &Measurement) {
    let ratio = sandrun.rate() / baseline.rate().max(f64::EPSILON);
    let rows = vec![
        Row::new("finished per second", format!("{:.0}/s", sandrun.rate()), format!("{:.0}/s", baseline.rate()))
            .ratio(ratio)
            .goal(
                format!("≥ {GOAL_RATE}/s and ≥ {GOAL_RATIO} of baseline"),
                sandrun.rate() >= GOAL_RATE && ratio >= GOAL_RATIO,
            ),
        Row::new(
            "all created after",
            format!("{:.1} s", sandrun.created_in.as_secs_f64()),
            format!("{:.1} s", baseline.created_in.as_secs_f64()),
        ),
        Row::new(
            "all finished after",
            format!("{:.1} s", sandrun.finished_in.as_secs_f64()),
            format!("{:.1} s", baseline.finished_in.as_secs_f64()),
        ),
        Row::new(
            "peak RSS (operator leader | kube-controller-manager)",
            format!("{:.1} MiB", sandrun.peak_rss_mib),
            format!("{:.1} MiB", baseline.peak_rss_mib),
        )
        .goal(format!("< {GOAL_RSS_MIB} MiB at 10k"), sandrun.count < 10_000 || sandrun.peak_rss_mib < GOAL_RSS_MIB),
        Row::new("not succeeded", sandrun.failed.to_string(), baseline.failed.to_string()),
    ];
    let cpu_rows = sandrun
        .cpu
        .iter()
        .zip(&baseline.cpu)
        .map(|((name, s), (_, b))| Row::new(format!("CPU seconds, {name}"), format!("{s:.1}"), format!("{b:.1}")));
    let rows: Vec<Row> = rows.into_iter().chain(cpu_rows).collect();
    print_rows(
        &format!(
            "Throughput: {} Executions vs {} bare Jobs created at once, simulated nodes",
            sandrun.count, baseline.count
        ),
        &rows,
    );
}

fn report_alone(sandrun: &Measurement) {
    let cpu = sandrun.cpu.iter().map(|(name, s)| format!("{name} {s:.0}")).collect::<Vec<_>>().join(", ");
    println!(
        "\n{} Executions (no baseline): {:.0}/s, all finished after {:.1} s, operator peak RSS {:.1} MiB, \
         {} not succeeded; CPU s: {cpu}",
        sandrun.count,
        sandrun.rate(),
        sandrun.finished_in.as_secs_f64(),
        sandrun.peak_rss_mib,
        sandrun.failed
    );
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Executions,
    Jobs,
}

async fn measure(client: &Client, namespace: &str, count: usize, options: &Options, kind: Kind) -> Result<Measurement> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns =
        serde_json::from_value(json!({"metadata": {"name": namespace}})).map_err(|e| bench_error(e.to_string()))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    let operator = leader_pid(client).await?;
    let pid = match kind {
        Kind::Executions => operator,
        Kind::Jobs => daemon_pid("kube-controller-manager"),
    };
    let sampler = PeakRss::start(pid, 0);
    let processes = [
        ("operator", operator),
        ("kube-apiserver", daemon_pid("kube-apiserver")),
        ("etcd", daemon_pid("etcd")),
        ("kube-controller-manager", daemon_pid("kube-controller-manager")),
        ("kube-scheduler", daemon_pid("kube-scheduler")),
        ("kwok", daemon_pid("kwok")),
    ];
    let cpu_before: Vec<f64> = processes.iter().map(|(_, pid)| cpu_seconds(*pid)).collect();
    let finished = tokio::spawn(count_finished(client.clone(), namespace.to_owned(), count, kind));
    // The watch must have listed before the first create, or it misses none
    // but counts late; a short pause is plenty for an empty namespace.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    create_all(client, namespace, count, options.parallel, kind).await?;
    let created_in = started.elapsed();
    let limit = Duration::from_secs(options.timeout_seconds);
    let failed = tokio::time::timeout(limit, finished)
        .await
        .map_err(|_| Error::Timeout { what: format!("{count} to finish in {namespace}"), seconds: limit.as_secs() })?
        .map_err(|e| bench_error(e.to_string()))??;
    let finished_in = started.elapsed();
    let cpu = processes
        .iter()
        .zip(cpu_before)
        .map(|((name, pid), before)| (*name, (cpu_seconds(*pid) - before).max(0.0)))
        .collect();
    Ok(Measurement { count, created_in, finished_in, peak_rss_mib: sampler.stop() as f64 / 1024.0, failed, cpu })
}

async fn create_all(client: &Client, namespace: &str, count: usize, parallel: usize, kind: Kind) -> Result<()> {
    let executions: Api<Execution> = Api::namespaced(client.clone(), namespace);
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    futures::stream::iter(0..count)
        .map(|i| {
            let (executions, jobs) = (executions.clone(), jobs.clone());
            async move {
                let name = format!("run-{i}");
                match kind {
                    Kind::Executions => {
                        let mut spec = sandrun_e2e::python("print('hello')");
                        spec.runtime_class_name = Some(SIMULATED.to_owned());
                        let execution = Execution::new(&name, spec);
                        executions.create(&PostParams::default(), &execution).await.map(|_| ())
                    }
                    Kind::Jobs => {
                        let job: Job =
                            serde_json::from_value(baseline_job(&name, "localhost/sandrun-python:bookworm", SIMULATED))
                                .map_err(kube::Error::SerdeError)?;
                        jobs.create(&PostParams::default(), &job).await.map(|_| ())
                    }
                }
            }
        })
        .buffer_unordered(parallel)
        .try_collect::<()>()
        .await
        .map_err(Error::from)
}

/// Waits until `count` have reached an end; returns how many did not succeed.
async fn count_finished(client: Client, namespace: String, count: usize, kind: Kind) -> Result<usize> {
    let (mut done, mut failed) = (HashSet::new(), 0);
    match kind {
        Kind::Executions => {
            let stream = watcher(Api::<Execution>::namespaced(client, &namespace), watcher::Config::default());
            let mut objects = std::pin::pin!(kube::runtime::WatchStreamExt::applied_objects(stream));
            while done.len() < count {
                let Some(execution) = objects.try_next().await? else { break };
                let Some(status) = execution.status.as_ref().filter(|s| s.is_terminal()) else { continue };
                if done.insert(execution.name_any()) && status.phase != Phase::Succeeded {
                    failed += 1;
                }
            }
        }
        Kind::Jobs => {
            let stream = watcher(Api::<Job>::namespaced(client, &namespace), watcher::Config::default());
            let mut objects = std::pin::pin!(kube::runtime::WatchStreamExt::applied_objects(stream));
            while done.len() < count {
                let Some(job) = objects.try_next().await? else { break };
                let conditions = job.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
                let ended = |kind: &str| conditions.iter().any(|c| c.type_ == kind && c.status == "True");
                if (ended("Complete") || ended("Failed")) && done.insert(job.name_any()) && !ended("Complete") {
                    failed += 1;
                }
            }
        }
    }
    Ok(failed)
}

/// CPU time of a process so far (0 once it is gone).
fn cpu_seconds(pid: u32) -> f64 {
    Process { pid }.cpu().map(|t| t.as_secs_f64()).unwrap_or(0.0)
}

/// What the simulated pods "print", and leave as their termination message
/// as the runner does: the frame of a successful hello world.
fn frame_file() -> Result<std::path::PathBuf> {
    let frame = sandrun_runner::RunResult {
        exit_code: Some(0),
        duration_millis: 1,
        stdout: "hello\n".to_owned(),
        stdout_bytes: 6,
        ..Default::default()
    }
    .to_frame();
    let path = std::env::temp_dir().join("sandrun-bench-kwok.log");
    std::fs::write(&path, frame)?;
    Ok(path)
}

/// `cluster/kwok.sh` (run from the repository root).
async fn kwok(args: &[&str], log_file: Option<&std::path::Path>) -> Result<()> {
    let mut command = tokio::process::Command::new("cluster/kwok.sh");
    command.args(args);
    if let Some(file) = log_file {
        command.env("KWOK_LOG_FILE", file).env("KWOK_MESSAGE_FILE", file);
    }
    if command.status().await?.success() {
        return Ok(());
    }
    Err(bench_error(format!("cluster/kwok.sh {} failed", args.join(" "))))
}

/// Deletes the namespace and waits until it is gone, so the next
/// measurement does not share the control plane with a garbage collection.
async fn cleanup(client: &Client, namespace: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let uid = api.get(namespace).await?.uid().unwrap_or_default();
    api.delete(namespace, &Default::default()).await?;
    let gone = kube::runtime::wait::conditions::is_deleted(&uid);
    let limit = Duration::from_secs(1800);
    tokio::time::timeout(limit, kube::runtime::wait::await_condition(api, namespace, gone))
        .await
        .map_err(|_| Error::Timeout { what: format!("namespace {namespace} to go"), seconds: limit.as_secs() })?
        .map_err(|e| bench_error(e.to_string()))?;
    Ok(())
}
