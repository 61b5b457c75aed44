//! sandrun's benchmarks. Each runs on the real local cluster (`make up`)
//! and prints its figures beside a baseline measured in the same run, so a
//! slow machine or a busy moment moves both columns alike.

mod error;
pub mod fanout;
pub mod overhead;
pub mod reaction;
pub mod stats;
pub mod throughput;

use clap::{Parser, Subcommand};
use kube::Client;

pub use error::{Error, Result};

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
}

pub async fn run(args: Args) -> Result<()> {
    let client = Client::try_default().await?;
    match args.command {
        Command::Overhead(options) => overhead::run(&client, &options).await,
        Command::Reaction(options) => reaction::run(&client, &options).await,
        Command::Throughput(options) => throughput::run(&client, &options).await,
        Command::Fanout(options) => fanout::run(&client, &options).await,
    }
}

/// A name no earlier run used, so runs never wait on each other's leftovers.
pub fn run_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 5).to_lowercase()
}
