use std::process::ExitCode;

use sandrun_runner::cli::{self, Command, USAGE};
use sandrun_runner::report::{report, FrameOnStdout};
use sandrun_runner::run::run;
use sandrun_runner::warm;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli::parse(&args) {
        Ok(Command::Install { dir }) => install(&dir),
        Ok(Command::Run(config)) => {
            let finished = run(&config);
            let mut stdout = std::io::stdout().lock();
            ExitCode::from(report(&finished, config.result_file.as_deref(), &mut stdout, FrameOnStdout::Always))
        }
        Ok(Command::Warm(config)) => ExitCode::from(warm::serve(&config)),
        Err(e) => {
            eprintln!("sandrun-runner: {e}\n{USAGE}");
            ExitCode::from(64)
        }
    }
}

fn install(dir: &std::path::Path) -> ExitCode {
    let copied = std::env::current_exe().and_then(|exe| {
        std::fs::create_dir_all(dir)?;
        std::fs::copy(exe, dir.join("sandrun-runner")).map(|_| ())
    });
    match copied {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandrun-runner: install into {}: {e}", dir.display());
            ExitCode::from(73)
        }
    }
}
