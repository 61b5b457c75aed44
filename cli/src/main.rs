//! `sandrun`: see the library for what each command does.

use std::process::ExitCode;

use clap::Parser;
use sandrun_cli::{exit, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sandrun: cannot start the async runtime: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    ExitCode::from(runtime.block_on(sandrun_cli::run(cli)))
}
