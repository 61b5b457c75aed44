use super::*;

/// Runs reap with waitpid(-1) and kill every descendant of this
/// process: two at once would take each other's children.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(config: &RunConfig) -> RunResult {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let finished = super::run(config);
    assert!(finished.contained, "processes outlived the run: {:?}", finished.result);
    finished.result
}

fn sh(script: &str) -> RunConfig {
    RunConfig { command: vec!["sh".into(), "-c".into(), script.into()], ..Default::default() }
}

/// Whether a process whose command line contains `marker` is alive.
fn alive(marker: &str) -> bool {
    procs::snapshot().iter().filter(|p| !p.zombie).any(|p| {
        std::fs::read(format!("/proc/{}/cmdline", p.pid))
            .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(marker))
    })
}

#[test]
fn a_grandchild_in_its_own_session_is_killed_at_the_deadline() {
    // setsid leaves the program's session and process group: only
    // ancestry still ties it to the runner.
    let mut config = sh("setsid sleep 31.5 & sleep 30");
    config.timeout = Duration::from_millis(300);
    let r = run(&config);
    assert!(r.timed_out, "{r:?}");
    assert!(!alive("sleep 31.5"), "the setsid grandchild outlived the run");
}

#[test]
fn a_daemon_left_behind_is_killed_when_the_program_exits() {
    let r = run(&sh("setsid sh -c 'sleep 32.5' & echo started"));
    assert_eq!((r.exit_code, r.stdout.as_str()), (Some(0), "started\n"));
    assert!(!alive("sleep 32.5"), "the daemon outlived the run");
}

#[test]
fn memory_of_a_grandchild_in_its_own_session_counts() {
    let hog = "import time; b = bytearray(200 * 1024 * 1024); time.sleep(30)";
    let mut config = sh(&format!("setsid python3 -c '{hog}' & sleep 30"));
    config.memory_limit_bytes = 64 * 1024 * 1024;
    let r = run(&config);
    assert_eq!((r.oom_killed, r.timed_out), (Some(true), false), "{r:?}");
}

#[test]
fn a_fork_bomb_is_stopped_at_the_process_limit() {
    let mut config = sh("for i in $(seq 200); do sleep 33.5 & done; wait");
    config.max_processes = 50;
    let r = run(&config);
    assert!(r.process_limit_exceeded, "{r:?}");
    assert!(!r.timed_out);
    assert!(!alive("sleep 33.5"), "forked processes outlived the run");
}

#[test]
fn separates_streams_and_keeps_the_exit_code() {
    let r = run(&sh("echo out; echo err >&2; exit 3"));
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("out\n", "err\n"));
    assert_eq!((r.exit_code, r.signal, r.timed_out), (Some(3), None, false));
    assert!(r.peak_memory_bytes.is_some());
}

#[test]
fn kills_every_process_at_the_deadline() {
    let mut config = sh("sleep 30 & sleep 30; echo never");
    config.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let r = run(&config);
    assert!(r.timed_out);
    assert_eq!(r.signal, Some(libc::SIGKILL));
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert_eq!(r.stdout, "");
}

#[test]
fn caps_output_but_drains_it_all() {
    let mut config = sh("head -c 1000000 /dev/zero | tr '\\0' x");
    config.max_output_bytes = 100;
    let r = run(&config);
    assert_eq!(r.stdout.len(), 100);
    assert!(r.stdout_truncated);
    assert_eq!(r.stdout_bytes, 1_000_000);
    assert_eq!(r.exit_code, Some(0));
}

#[test]
fn feeds_stdin_and_copies_sources() {
    let dir = std::env::temp_dir().join(format!("sandrun-runner-test-{}", std::process::id()));
    let (src, work) = (dir.join("src"), dir.join("work"));
    std::fs::create_dir_all(src.join("pkg")).unwrap();
    std::fs::write(src.join("pkg/data.txt"), "from a file\n").unwrap();
    std::fs::write(dir.join("stdin"), "from stdin\n").unwrap();
    let mut config = sh("cat pkg/data.txt; cat");
    config.source = Some(src);
    config.workdir = Some(work);
    config.stdin = Some(dir.join("stdin"));
    let r = run(&config);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(r.stdout, "from a file\nfrom stdin\n");
}

#[test]
fn a_memory_hog_is_killed_at_its_limit() {
    let mut config = sh("python3 -c 'import time; b = bytearray(200 * 1024 * 1024); time.sleep(30)'");
    config.memory_limit_bytes = 64 * 1024 * 1024;
    let r = run(&config);
    assert_eq!((r.oom_killed, r.signal, r.timed_out), (Some(true), Some(libc::SIGKILL), false), "{r:?}");
    assert!(r.peak_memory_bytes.unwrap() > 64 * 1024 * 1024);
}

#[test]
fn a_file_over_the_limit_stops_the_program() {
    let mut config = sh("head -c 3000000 /dev/zero > big; echo unreachable");
    config.max_file_bytes = 1024 * 1024;
    config.workdir = Some(std::env::temp_dir());
    let r = run(&config);
    let _ = std::fs::remove_file(std::env::temp_dir().join("big"));
    // head is killed by SIGXFSZ; the shell goes on and reports it.
    assert!(r.stderr.contains("File size limit exceeded") || r.signal == Some(libc::SIGXFSZ), "{r:?}");
    assert_eq!(r.stdout, "unreachable\n");
}

#[test]
fn a_program_under_its_memory_limit_is_left_alone() {
    let mut config = sh("python3 -c 'b = bytearray(8 * 1024 * 1024); print(len(b))'");
    config.memory_limit_bytes = 256 * 1024 * 1024;
    let r = run(&config);
    assert_eq!((r.exit_code, r.oom_killed), (Some(0), Some(false).filter(|_| r.oom_killed.is_some())), "{r:?}");
    assert_eq!(r.stdout, "8388608\n");
}

#[test]
fn a_missing_program_is_reported_not_panicked() {
    let r = run(&RunConfig { command: vec!["/no/such/program".into()], ..Default::default() });
    assert_eq!(r.exit_code, Some(127));
    assert!(r.error.unwrap().contains("could not start"));
}

#[test]
fn the_given_environment_wins_over_the_runners() {
    let mut config = sh("echo \"$HOME $SANDRUN_TEST_ADDED\"");
    config.env = vec![("HOME".into(), "/given".into()), ("SANDRUN_TEST_ADDED".into(), "added".into())];
    let r = run(&config);
    assert_eq!(r.stdout, "/given added\n");
}
