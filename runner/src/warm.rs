//! Warm mode: the pod is started ahead of time and the runner waits for
//! its one program on its own stdin, which the operator writes through an
//! attach session and then reads the runner's stdout over.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::inputs::{stdin_file, write_files};
use crate::prestart::{self, Prestarted};
use crate::protocol::{accepted_line, parse_delivery, read_program_line, undelivered_message, Delivery};
use crate::report::{report, FrameOnStdout, EXIT_UNDELIVERED};
use crate::run::{failed_to_start, run_with_stdin, Finished, RunConfig};

/// Pod-level settings, from the command line; everything per run comes
/// with the program.
#[derive(Debug, Clone, PartialEq)]
pub struct WarmConfig {
    pub max_processes: usize,
    pub max_file_bytes: u64,
    pub workdir: Option<PathBuf>,
    pub result_file: Option<PathBuf>,
    /// Longest program line read from stdin, newline included.
    pub max_payload_bytes: usize,
    /// An interpreter to start ahead, waiting for its program (see
    /// [`crate::prestart`]); a program it does not fit starts afresh.
    pub prestart: Option<String>,
}

impl Default for WarmConfig {
    fn default() -> Self {
        Self {
            max_processes: 0,
            max_file_bytes: 0,
            workdir: None,
            result_file: None,
            max_payload_bytes: 8 << 20,
            prestart: None,
        }
    }
}

/// Reads one program from stdin, runs it and reports it; returns the exit
/// code. Only one program per runner, ever.
pub fn serve(config: &WarmConfig) -> u8 {
    let ahead = config.prestart.as_deref().and_then(|program| {
        prestart::start(program, &pod_run_config(config))
            .map_err(|e| eprintln!("sandrun-runner: {e}; the program will start afresh"))
            .ok()
    });
    let line = read_program_line(std::io::stdin().lock(), config.max_payload_bytes);
    // Whatever follows the line is never read, and the program cannot
    // inherit the attach stream.
    if let Err(e) = stdin_to_dev_null() {
        return undelivered(config, &format!("could not close stdin: {e}"));
    }
    let delivery = match line.and_then(|line| parse_delivery(&line)) {
        Ok(delivery) => delivery,
        Err(e) => return undelivered(config, &e.to_string()),
    };
    let mut stdout = std::io::stdout().lock();
    let accepted = accepted_line(&delivery.execution_uid);
    if stdout.write_all(accepted.as_bytes()).and_then(|()| stdout.flush()).is_err() {
        // The operator cannot see that the program was taken; it has not started.
        return undelivered(config, "could not print the acceptance line");
    }
    let workdir = config.workdir.as_deref().unwrap_or(Path::new("."));
    let prepared = write_files(workdir, &delivery.files).and_then(|()| stdin_file(delivery.stdin.as_deref()));
    let run_config = run_config(config, delivery);
    let finished = match prepared {
        Ok(stdin) => start_and_supervise(ahead, &run_config, stdin),
        Err(e) => {
            if let Some(ahead) = ahead {
                ahead.discard(None);
            }
            failed_to_start(e.to_string())
        }
    };
    report(&finished, config.result_file.as_deref(), &mut stdout, FrameOnStdout::OnlyWhenTrusted)
}

/// Hands the program to the interpreter started ahead when it fits it, and
/// starts it afresh otherwise.
fn start_and_supervise(ahead: Option<Prestarted>, config: &RunConfig, stdin: Option<File>) -> Finished {
    let stdin = match ahead {
        Some(ahead) if ahead.fits(&config.command) => match ahead.go(config, stdin) {
            Ok(finished) => return finished,
            Err(not_waiting) => {
                eprintln!(
                    "sandrun-runner: the interpreter started ahead had ended ({}); starting the program afresh",
                    not_waiting.status.as_deref().unwrap_or("unknown status")
                );
                not_waiting.stdin
            }
        },
        Some(ahead) => ahead.discard(stdin).stdin,
        None => stdin,
    };
    run_with_stdin(config, stdin.map_or_else(Stdio::null, Stdio::from))
}

/// What every run of this pod shares, before its program arrives.
fn pod_run_config(config: &WarmConfig) -> RunConfig {
    RunConfig {
        max_processes: config.max_processes,
        max_file_bytes: config.max_file_bytes,
        workdir: config.workdir.clone(),
        result_file: config.result_file.clone(),
        ..RunConfig::default()
    }
}

fn run_config(config: &WarmConfig, delivery: Delivery) -> RunConfig {
    RunConfig {
        timeout: Duration::from_millis(delivery.timeout_ms),
        max_output_bytes: delivery.max_output_bytes,
        memory_limit_bytes: delivery.memory_limit_bytes,
        env: delivery.env.into_iter().map(|e| (e.name, e.value)).collect(),
        command: delivery.command,
        ..pod_run_config(config)
    }
}

/// Nothing ran: the termination message says so and stdout stays empty, so
/// the operator can run the program elsewhere.
fn undelivered(config: &WarmConfig, reason: &str) -> u8 {
    eprintln!("sandrun-runner: no program: {reason}");
    if let Some(path) = &config.result_file {
        if let Err(e) = std::fs::write(path, undelivered_message(reason)) {
            // The exit code alone still tells the operator nothing ran.
            eprintln!("sandrun-runner: writing {}: {e}", path.display());
        }
    }
    EXIT_UNDELIVERED
}

fn stdin_to_dev_null() -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let null = std::fs::File::open("/dev/null")?;
    // SAFETY: dup2 onto fd 0 only replaces what fd 0 refers to; `null`
    // stays owned by the File and is closed when it drops.
    if unsafe { libc::dup2(null.as_raw_fd(), libc::STDIN_FILENO) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
