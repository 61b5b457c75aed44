use clap::Parser;
use sandrun_operator::startup::{run, Args};
use sandrun_telemetry::init_logging;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    init_logging(args.log_json);
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "sandrun-operator failed");
            std::process::ExitCode::FAILURE
        }
    }
}
