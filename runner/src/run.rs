//! Runs the user's program once and turns what happened into a [`RunResult`].

use std::fs::File;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::capture::{drain, to_text, Captured, SharedCapture};
use crate::protocol::RunResult;
use crate::{memory, procs};

/// How long to wait for the output pipes to close after the program is gone.
/// A daemonized grandchild may hold them open; its output is not waited for.
const PIPE_GRACE: Duration = Duration::from_secs(2);
/// How often the program is checked for exit, deadline and memory.
const POLL: Duration = Duration::from_millis(5);
/// The runner's own tasks: its main thread, the two stream readers, the
/// thread that waits for the program's exit and the one that feeds stdin
/// to a program started ahead.
const RUNNER_TASKS: usize = 5;
/// The kernel counts short-lived tasks a 5 ms sample misses: a bash fork
/// bomb had forks refused for seconds while samples stayed under the limit.
/// So the runner acts within an eighth of it.
fn fork_bomb_tasks(max_processes: usize) -> u64 {
    (max_processes - max_processes / 8).max(1) as u64
}
/// A fork bomb is gone within milliseconds of SIGKILL; past this the runner
/// reports what it has rather than hang.
const KILL_ALL_WITHIN: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    pub timeout: Duration,
    pub max_output_bytes: usize,
    /// Kill the program when its processes' resident memory passes this (0: off).
    pub memory_limit_bytes: u64,
    /// Most tasks (processes and threads) the program may run at once: the
    /// kernel refuses more (RLIMIT_NPROC) and the runner kills the program
    /// when it reaches them, a fork bomb (0: off).
    pub max_processes: usize,
    /// Largest file the program may write (RLIMIT_FSIZE; 0: off). The kernel
    /// stops it at once, where the kubelet's disk accounting takes seconds.
    pub max_file_bytes: u64,
    pub stdin: Option<PathBuf>,
    pub source: Option<PathBuf>,
    pub workdir: Option<PathBuf>,
    /// Set for the program on top of the runner's own environment.
    pub env: Vec<(String, String)>,
    /// Where to leave the frame as well as on stdout: the container's
    /// termination message, which the operator reads from the pod's status.
    pub result_file: Option<PathBuf>,
    pub command: Vec<String>,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_output_bytes: 64 * 1024,
            memory_limit_bytes: 0,
            max_processes: 0,
            max_file_bytes: 0,
            stdin: None,
            source: None,
            workdir: None,
            env: Vec::new(),
            result_file: None,
            command: Vec::new(),
        }
    }
}

/// What a run ended with.
#[derive(Debug)]
pub struct Finished {
    pub result: RunResult,
    /// No process of the program is left. When false, nothing it writes
    /// after the frame can be ruled out, and the runner must not exit 0.
    pub contained: bool,
}

/// Runs `config.command` once, after copying `config.source` into the
/// workdir, with `config.stdin` (a missing file reads as empty).
pub fn run(config: &RunConfig) -> Finished {
    if let (Some(source), Some(workdir)) = (&config.source, &config.workdir) {
        if let Err(e) = copy_tree(source, workdir) {
            return failed_to_start(format!("could not copy source files into {}: {e}", workdir.display()));
        }
    }
    let stdin = match &config.stdin {
        Some(path) if path.exists() => match File::open(path) {
            Ok(f) => Stdio::from(f),
            Err(e) => return failed_to_start(format!("could not open stdin {}: {e}", path.display())),
        },
        _ => Stdio::null(),
    };
    run_with_stdin(config, stdin)
}

/// Runs `config.command` once with `stdin`, ignoring `config.source` and
/// `config.stdin`: the inputs are already in place.
pub fn run_with_stdin(config: &RunConfig, stdin: Stdio) -> Finished {
    shield();
    let Some((program, args)) = config.command.split_first() else {
        return failed_to_start("no command".to_owned());
    };
    let mut command = program_command(config, program, args, None);
    command.stdin(stdin);
    let baseline = Baseline::now();
    let started = Instant::now();
    match command.spawn() {
        Ok(mut child) => {
            let watch = Watch::start(&mut child, config.max_output_bytes);
            supervise_to_end(child, watch, config, baseline, started)
        }
        Err(e) => failed_to_start(format!("could not start {program:?}: {e}")),
    }
}

/// What is read just before the program's first process starts, to tell
/// what the program itself did.
#[derive(Debug)]
pub(crate) struct Baseline {
    oom_before: Option<u64>,
    memory: memory::Source,
}

impl Baseline {
    pub(crate) fn now() -> Self {
        Self { oom_before: oom_kill_count(), memory: memory::Source::detect() }
    }

    /// Counts `bytes` the program already holds as its own.
    pub(crate) fn counting(self, bytes: u64) -> Self {
        Self { memory: self.memory.counting(bytes), ..self }
    }
}

/// The command that starts the program: piped output, its own session and
/// process group (so the deadline kills every descendant), and the limits
/// every descendant inherits. `control`, when given, becomes the program's
/// fd 3. The caller sets stdin.
pub(crate) fn program_command(
    config: &RunConfig,
    program: &str,
    args: &[String],
    control: Option<std::os::fd::RawFd>,
) -> Command {
    let mut command = Command::new(program);
    command.args(args).envs(config.env.iter().cloned()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(dir) = &config.workdir {
        command.current_dir(dir);
    }
    let max_file_bytes = config.max_file_bytes;
    // RLIMIT_NPROC counts every task of the uid, the runner's own included.
    let max_tasks = (config.max_processes > 0).then(|| (config.max_processes + RUNNER_TASKS) as libc::rlim_t);
    // SAFETY: setsid, setrlimit, dup2 and fcntl are async-signal-safe and
    // touch no memory of the parent.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(tasks) = max_tasks {
                let limit = libc::rlimit { rlim_cur: tasks, rlim_max: tasks };
                if libc::setrlimit(libc::RLIMIT_NPROC, &limit) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if max_file_bytes > 0 {
                let limit = libc::rlimit { rlim_cur: max_file_bytes, rlim_max: max_file_bytes };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(fd) = control {
                // dup2 onto itself keeps close-on-exec, so clear it then.
                let kept =
                    if fd == CONTROL_FD { libc::fcntl(fd, libc::F_SETFD, 0) } else { libc::dup2(fd, CONTROL_FD) };
                if kept == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    command
}

/// The fd a program started ahead reads its go message from.
pub(crate) const CONTROL_FD: std::os::fd::RawFd = 3;

/// The threads that read a started process's output and say when it has
/// exited. Threads take milliseconds to start under gVisor, so a process
/// started ahead gets them ahead too.
#[derive(Debug)]
pub(crate) struct Watch {
    stdout: (SharedCapture, mpsc::Receiver<()>),
    stderr: (SharedCapture, mpsc::Receiver<()>),
    exited: mpsc::Receiver<()>,
}

impl Watch {
    /// Starts reading `child`'s stdout and stderr, keeping `cap` bytes of
    /// each, and waiting for its exit.
    pub(crate) fn start(child: &mut Child, cap: usize) -> Self {
        Self {
            stdout: spawn_drain(child.stdout.take(), cap),
            stderr: spawn_drain(child.stderr.take(), cap),
            exited: exit_signal(child.id()),
        }
    }

    /// How much of each stream to keep.
    pub(crate) fn set_cap(&self, cap: usize) {
        for (shared, _) in [&self.stdout, &self.stderr] {
            if let Ok(mut captured) = shared.lock() {
                captured.cap = cap;
            }
        }
    }
}

/// Holds the started program to its limits until it ends and turns what
/// happened into the result. `started` is when the program (not its
/// interpreter) started: its timeout runs from there.
pub(crate) fn supervise_to_end(
    child: Child,
    watch: Watch,
    config: &RunConfig,
    baseline: Baseline,
    started: Instant,
) -> Finished {
    let Baseline { oom_before, memory } = baseline;
    let cap = config.max_output_bytes;
    let Watch { stdout: (stdout, stdout_done), stderr: (stderr, stderr_done), exited } = watch;

    // Reaped by `supervise` with waitpid(-1), which also collects orphans.
    let outcome = supervise(child.id(), config, memory, started, &exited);
    let duration = started.elapsed();
    // Nothing the program started outlives it: once every process is gone,
    // nothing can write into the pipes (or anywhere else) after the frame.
    let all_gone = procs::kill_all(std::process::id(), KILL_ALL_WITHIN, |_, _| {});
    let pipes_deadline = Instant::now() + PIPE_GRACE;
    for done in [stdout_done, stderr_done] {
        let _ = done.recv_timeout(pipes_deadline.saturating_duration_since(Instant::now()));
    }

    let mut result = RunResult {
        exit_code: outcome.status.and_then(|s| s.code()),
        signal: outcome.status.and_then(|s| s.signal()),
        timed_out: outcome.timed_out,
        duration_millis: duration.as_millis() as u64,
        peak_memory_bytes: peak_child_rss().max(Some(outcome.peak_rss)).filter(|b| *b > 0),
        oom_killed: if outcome.over_memory {
            Some(true)
        } else {
            oom_before.zip(oom_kill_count()).map(|(before, after)| after > before)
        },
        process_limit_exceeded: outcome.over_processes,
        ..Default::default()
    };
    if let Ok(c) = stdout.lock() {
        (result.stdout, result.stdout_truncated) = to_text(&c, cap);
        result.stdout_bytes = c.total;
    }
    if let Ok(c) = stderr.lock() {
        (result.stderr, result.stderr_truncated) = to_text(&c, cap);
        result.stderr_bytes = c.total;
    }
    if outcome.status.is_none() {
        result.error = Some("lost track of the program (wait failed)".to_owned());
    } else if !all_gone {
        result.error = Some(format!("processes of the program were still alive {KILL_ALL_WITHIN:?} after SIGKILL"));
    }
    Finished { result, contained: all_gone }
}

/// What the runner does to itself before the program exists, so that the
/// program cannot reach it:
/// - not dumpable: a process of the same uid can neither ptrace it nor open
///   its `/proc/PID/{mem,environ,fd}`, so it cannot rewrite the runner's
///   memory or write into its stdout (the container log);
/// - child subreaper: an orphaned grandchild (a double fork, `setsid()`) is
///   re-parented to the runner and stays one of its descendants, counted by
///   the memory watch and killed at the end.
pub(crate) fn shield() {
    // SAFETY: prctl with these options takes plain integers. Failure leaves
    // the runner as it was; as pid 1 of its container it is the reaper anyway.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// A run whose program never started: the frame says why.
pub fn failed_to_start(message: String) -> Finished {
    let stderr = format!("sandrun: {message}\n");
    let result = RunResult {
        exit_code: Some(127),
        stderr_bytes: stderr.len() as u64,
        stderr,
        error: Some(message),
        ..Default::default()
    };
    // Nothing of the program ever ran.
    Finished { result, contained: true }
}

fn spawn_drain(pipe: Option<impl std::io::Read + Send + 'static>, cap: usize) -> (SharedCapture, mpsc::Receiver<()>) {
    let shared = SharedCapture::new(std::sync::Mutex::new(Captured { cap, ..Default::default() }));
    let (done_tx, done_rx) = mpsc::channel();
    if let Some(pipe) = pipe {
        let into = shared.clone();
        thread::spawn(move || {
            drain(pipe, &into);
            let _ = done_tx.send(());
        });
    }
    (shared, done_rx)
}

struct Outcome {
    status: Option<ExitStatus>,
    timed_out: bool,
    over_memory: bool,
    over_processes: bool,
    /// Largest resident size of all the program's processes sampled.
    peak_rss: u64,
}

/// Waits for the program's main process; kills all of its processes at the
/// deadline, or when together they pass the memory or process limit.
fn supervise(
    main: u32,
    config: &RunConfig,
    memory: memory::Source,
    started: Instant,
    exited: &mpsc::Receiver<()>,
) -> Outcome {
    let deadline = started + config.timeout;
    let me = std::process::id();
    let mut outcome =
        Outcome { status: None, timed_out: false, over_memory: false, over_processes: false, peak_rss: 0 };
    // The first sample waits one interval (the program has only just
    // started), and none is taken once the main process has exited: a
    // sample takes milliseconds under gVisor.
    let mut sample = false;
    loop {
        // Sampled before reaping, so orphans that died since the last pass
        // still count as the tasks the kernel counts until they are reaped.
        if sample && (config.memory_limit_bytes > 0 || config.max_processes > 0) {
            let usage = procs::usage(me);
            let bytes = memory.program_bytes(usage.rss_bytes);
            outcome.peak_rss = outcome.peak_rss.max(bytes);
            outcome.over_memory = config.memory_limit_bytes > 0 && bytes > config.memory_limit_bytes;
            outcome.over_processes = config.max_processes > 0 && usage.tasks >= fork_bomb_tasks(config.max_processes);
        }
        procs::reap(&mut |pid, status| {
            if pid == main {
                outcome.status = Some(ExitStatus::from_raw(status));
            }
        });
        if outcome.status.is_some() {
            // A program that ended by itself ended within its limits.
            outcome.over_memory = false;
            outcome.over_processes = false;
            return outcome;
        }
        let now = Instant::now();
        outcome.timed_out = now >= deadline;
        if outcome.timed_out || outcome.over_memory || outcome.over_processes {
            procs::kill_all(me, KILL_ALL_WITHIN, |pid, status| {
                if pid == main {
                    outcome.status = Some(ExitStatus::from_raw(status));
                }
            });
            return outcome;
        }
        let wait = (deadline - now).min(POLL);
        // Woken as soon as the main process exits, rather than at the
        // next sample; without the waiter, a plain sleep.
        sample = match exited.recv_timeout(wait) {
            Ok(()) => false,
            Err(mpsc::RecvTimeoutError::Timeout) => true,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                thread::sleep(wait);
                true
            }
        };
    }
}

/// Says when `main` has exited, without reaping it (`WNOWAIT`): the
/// supervisor reaps it, with the orphans.
fn exit_signal(main: u32) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::sync_channel(1);
    thread::spawn(move || {
        // SAFETY: waitid writes only into `info`.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::waitid(libc::P_PID, main, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 {
            let _ = tx.send(());
        }
    });
    rx
}

fn peak_child_rss() -> Option<u64> {
    // SAFETY: getrusage fills the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    (rc == 0 && usage.ru_maxrss > 0).then(|| usage.ru_maxrss as u64 * 1024)
}

/// OOM kills recorded by the container's memory cgroup (v2, then v1).
fn oom_kill_count() -> Option<u64> {
    ["/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"].iter().find_map(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok())
    })
}

/// Copies a directory tree (following the symlinks a ConfigMap volume is made of).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        // ConfigMap volumes keep their real data under hidden `..data` dirs.
        if name.to_string_lossy().starts_with("..") {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if std::fs::metadata(&src)?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
