//! A warm runner may start the program's interpreter before the program
//! arrives: Python's and Node's start-up (tens of milliseconds under gVisor)
//! then happens while the pod waits, not while the user does.
//!
//! The interpreter runs a small bootstrap ([`boot/`](../boot)) that blocks
//! reading fd 3 until the runner writes the program's argv and environment
//! and closes it. No code of the program exists before that, and the
//! interpreter is started exactly as the program would be (its own session,
//! the same rlimits, the same workdir), so the program ends up in the same
//! place as a cold one: same process, same limits, one run per sandbox.
//! What differs: its stdin is a pipe the runner fills (a cold program's is
//! a file), and its timeout and duration count from the go, not from the
//! interpreter's start.

use std::fs::File;
use std::io::{self, PipeWriter, Write};
use std::os::fd::AsRawFd;
use std::process::{Child, Stdio};
use std::time::Instant;

use crate::procs;
use crate::run::{program_command, shield, supervise_to_end, Baseline, Finished, RunConfig, Watch};

const PYTHON: &str = include_str!("boot/python.py");
const NODE: &str = include_str!("boot/node.js");

#[derive(Debug, thiserror::Error)]
pub enum PrestartError {
    #[error("no bootstrap for {0:?} (only python and node interpreters are started ahead)")]
    Unsupported(String),
    #[error("could not start {program:?} ahead: {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
}

/// The flag and code that make an interpreter wait for its program.
fn bootstrap(program: &str) -> Option<[&'static str; 2]> {
    let name = program.rsplit('/').next().unwrap_or(program);
    let is =
        |prefix: &str| name.strip_prefix(prefix).is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'));
    if is("python") {
        Some(["-c", PYTHON])
    } else if name == "node" || name == "nodejs" {
        Some(["-e", NODE])
    } else {
        None
    }
}

/// Whether the runner can start `program` ahead.
pub fn can_start_ahead(program: &str) -> bool {
    bootstrap(program).is_some()
}

/// An interpreter waiting for its program.
#[derive(Debug)]
pub struct Prestarted {
    program: String,
    child: Child,
    control: PipeWriter,
    watch: Watch,
}

/// Starts `program` (an interpreter) ahead, with `config`'s workdir, limits
/// and environment.
pub fn start(program: &str, config: &RunConfig) -> Result<Prestarted, PrestartError> {
    let args = bootstrap(program).ok_or_else(|| PrestartError::Unsupported(program.to_owned()))?;
    // Before the program's process exists, as for a cold start: the
    // interpreter becomes the program and must not reach the runner.
    shield();
    let spawn_failed = |source| PrestartError::Spawn { program: program.to_owned(), source };
    let (reader, control) = io::pipe().map_err(spawn_failed)?;
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let mut command = program_command(config, program, &args, Some(reader.as_raw_fd()));
    command.stdin(Stdio::piped());
    let mut child = command.spawn().map_err(spawn_failed)?;
    // The interpreter holds its own copy as fd 3.
    drop(reader);
    // Nothing is written before the program comes; its cap comes with it.
    let watch = Watch::start(&mut child, 0);
    Ok(Prestarted { program: program.to_owned(), child, control, watch })
}

impl Prestarted {
    /// Whether `command` is this interpreter running a script, which is
    /// what the bootstrap can start.
    pub fn fits(&self, command: &[String]) -> bool {
        fits(&self.program, command)
    }

    /// Hands the waiting interpreter its program (`config.command`, which
    /// [`fits`](Self::fits)) and supervises it to the end. Gives the
    /// interpreter back, killed, when it was no longer waiting: nothing of
    /// the program ran, and the caller can start it afresh.
    pub fn go(mut self, config: &RunConfig, stdin: Option<File>) -> Result<Finished, NotWaiting> {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return Err(self.discard(stdin));
        }
        // Taken now, not before the interpreter started, so that what the
        // runner took in since (the delivery) is not the program's; the
        // interpreter is, as a cold program's is.
        // The interpreter is the runner's only child: its own stat is enough.
        let baseline = Baseline::now().counting(procs::resident_bytes(self.child.id()));
        self.watch.set_cap(config.max_output_bytes);
        let env: Vec<[&str; 2]> = config.env.iter().map(|(k, v)| [k.as_str(), v.as_str()]).collect();
        let message = serde_json::json!({ "argv": config.command.get(1..).unwrap_or_default(), "env": env });
        let started = Instant::now();
        // The bootstrap reads to the end before it runs anything, so a
        // failed write means the program never started.
        if self.control.write_all(message.to_string().as_bytes()).is_err() {
            return Err(self.discard(stdin));
        }
        let Prestarted { mut child, control, watch, .. } = self;
        drop(control);
        if let Some(mut pipe) = child.stdin.take() {
            if let Some(mut file) = stdin {
                // A program that never reads its stdin leaves this thread
                // blocked; it ends with the runner.
                std::thread::spawn(move || {
                    let _ = io::copy(&mut file, &mut pipe);
                });
            }
        }
        Ok(supervise_to_end(child, watch, config, baseline, started))
    }

    /// Kills the waiting interpreter; gives `stdin` back for a fresh start.
    pub fn discard(mut self, stdin: Option<File>) -> NotWaiting {
        // Its own process group, from setsid.
        // SAFETY: kill takes plain integers.
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
        let status = self.child.wait().ok();
        NotWaiting { status: status.map(|s| s.to_string()), stdin }
    }
}

/// An interpreter that was not (or no longer) waiting, and how it ended.
#[derive(Debug)]
pub struct NotWaiting {
    pub status: Option<String>,
    /// The program's stdin, untouched.
    pub stdin: Option<File>,
}

fn fits(interpreter: &str, command: &[String]) -> bool {
    matches!(command, [program, script, ..] if program == interpreter && !script.starts_with('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_interpreters_with_a_bootstrap() {
        let cases = [
            ("python3", true),
            ("python", true),
            ("/usr/local/bin/python3.12", true),
            ("node", true),
            ("/usr/bin/nodejs", true),
            ("pythonista", false),
            ("bash", false),
            ("deno", false),
            ("", false),
        ];
        for (program, want) in cases {
            assert_eq!(can_start_ahead(program), want, "{program:?}");
        }
    }

    #[test]
    fn table_of_commands_an_interpreter_takes() {
        let argv = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let cases = [
            ("python3 main.py", true),
            ("python3 main.py -v --x", true),
            ("python3 -c print(1)", false),
            ("python3", false),
            ("python main.py", false),
            ("node main.py", false),
            ("", false),
        ];
        for (command, want) in cases {
            assert_eq!(fits("python3", &argv(command)), want, "{command:?}");
        }
    }
}
