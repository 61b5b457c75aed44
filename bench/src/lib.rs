//! sandrun's benchmarks. Each runs on the real local cluster (`make up`)
//! and prints its figures beside a baseline measured in the same run, so a
//! slow machine or a busy moment moves both columns alike.

pub mod delivery;
mod error;
pub mod fanout;
pub mod overhead;
pub mod process;
pub mod reaction;
pub mod stats;
pub mod throughput;
pub mod warm;

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use kube::Client;
use sandrun_e2e::inspect::{lease_holder, pod_process};

pub use error::{Error, Result};

use error::bench_error;

/// Where the gateway's `demo` key puts its runs; baseline Jobs run there too,
/// under the same Pod Security level and deny-all NetworkPolicy.
pub const RUN_NAMESPACE: &str = "sandrun-demo";

#[derive(Parser, Debug)]
#[command(name = "sandrun-bench", about = "sandrun's benchmarks against the local cluster")]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Hello world through the gateway's WebSocket against a plain Job.
    Overhead(overhead::Options),
    /// Operator reaction times against the Job controller's, from watch events.
    Reaction(reaction::Options),
    /// Executions finished per second on simulated (kwok) nodes against bare Jobs.
    Throughput(throughput::Options),
    /// One status change pushed to many WebSocket clients of one gateway.
    Fanout(fanout::Options),
    /// Ways to hand a program to a warm sandbox pod through the kubelet.
    Delivery(delivery::Options),
    /// Hello world through a SandboxPool's warm pod against a cold start.
    Warm(warm::Options),
}

pub async fn run(args: Args) -> Result<()> {
    let client = Client::try_default().await?;
    match args.command {
        Command::Overhead(options) => overhead::run(&client, &options).await,
        Command::Reaction(options) => reaction::run(&client, &options).await,
        Command::Throughput(options) => throughput::run(&client, &options).await,
        Command::Fanout(options) => fanout::run(&client, &options).await,
        Command::Delivery(options) => delivery::run(&client, &options).await,
        Command::Warm(options) => warm::run(&client, &options).await,
    }
}

/// A name no earlier run used, so runs never wait on each other's leftovers.
pub fn run_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 5).to_lowercase()
}

/// Set to measure an operator run outside the cluster (under a heap
/// profiler, say) instead of the leading replica.
const OPERATOR_PID_VAR: &str = "SANDRUN_BENCH_OPERATOR_PID";

/// The leading operator's host process (pods are host processes here).
/// Waits for one: a fresh install's replicas take a moment to elect.
pub async fn leader_pid(client: &Client) -> Result<u32> {
    if let Ok(pid) = std::env::var(OPERATOR_PID_VAR) {
        return pid.parse().map_err(|_| bench_error(format!("{OPERATOR_PID_VAR} is not a pid: {pid:?}")));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let holder = lease_holder(client).await.unwrap_or_default();
        let pod = holder.split('_').next().unwrap_or_default();
        if let Some(pid) = pod_process(pod, "sandrun-operator").filter(|_| !pod.is_empty()) {
            return Ok(pid);
        }
        if Instant::now() > deadline {
            return Err(bench_error(format!("no running operator holds the lease (holder: {holder:?})")));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
