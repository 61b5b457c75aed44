use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    match sandrun_bench::run(sandrun_bench::Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sandrun-bench: {error}");
            ExitCode::FAILURE
        }
    }
}
