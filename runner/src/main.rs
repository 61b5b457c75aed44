use std::io::Write;
use std::process::ExitCode;

use sandrun_runner::cli::{self, Command, USAGE};
use sandrun_runner::run::run;
use sandrun_runner::termination_message;

/// The frame could not be left in the termination message.
const EXIT_NO_TERMINATION_MESSAGE: u8 = 71;
/// The frame could not be printed to the container log.
const EXIT_NO_LOG: u8 = 70;
/// Processes of the program outlived SIGKILL: they could still overwrite
/// the termination message.
const EXIT_SURVIVORS: u8 = 72;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli::parse(&args) {
        Ok(Command::Install { dir }) => install(&dir),
        Ok(Command::Run(config)) => {
            let finished = run(&config);
            let frame = finished.result.to_frame();
            // The operator trusts a frame only from a container that exited
            // 0, so 0 must mean: the program's processes are all gone and
            // the frame is written everywhere it will be read. A termination
            // message left unwritten could still hold whatever the program
            // wrote there.
            let mut code = ExitCode::SUCCESS;
            if let Some(path) = &config.result_file {
                if let Err(e) = std::fs::write(path, termination_message(&frame)) {
                    eprintln!("sandrun-runner: writing {}: {e}", path.display());
                    code = ExitCode::from(EXIT_NO_TERMINATION_MESSAGE);
                }
            }
            let mut stdout = std::io::stdout().lock();
            if stdout.write_all(frame.as_bytes()).and_then(|()| stdout.flush()).is_err() {
                return ExitCode::from(EXIT_NO_LOG);
            }
            if !finished.contained {
                return ExitCode::from(EXIT_SURVIVORS);
            }
            // The program's own exit code lives in the frame; the container
            // exits 0 so a non-zero program does not look like a runner fault.
            code
        }
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
