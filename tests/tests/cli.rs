//! The `sandrun` CLI binary against the real gateway (`hack/up.sh` runs it,
//! and `hack/lib.sh` builds the CLI next to it): exact streams and exit
//! codes, JSON output, get, ls and cancel.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::distr::{Alphanumeric, SampleString};
use sandrun_api::{ExecutionList, ExecutionView, State};
use sandrun_e2e::gateway::Gateway;

const FINAL_WITHIN: Duration = Duration::from_secs(180);

/// The `sandrun` binary cargo built into this test's target directory
/// (`target/debug/sandrun` beside `target/debug/deps/cli-*`).
fn binary() -> PathBuf {
    let test = std::env::current_exe().expect("the test's own path");
    let binary =
        test.ancestors().skip(1).map(|dir| dir.join("sandrun")).find(|candidate| candidate.is_file()).unwrap_or_else(
            || {
                panic!(
                    "no `sandrun` binary above {}; build it first: cargo build -p sandrun-cli (hack/up.sh does)",
                    test.display()
                )
            },
        );
    // A binary older than the CLI's sources would test yesterday's CLI.
    let built = modified(&binary);
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/src");
    for entry in std::fs::read_dir(&sources).expect("cli/src").flatten() {
        assert!(
            modified(&entry.path()) <= built,
            "{} is older than {}; rebuild: cargo build -p sandrun-cli",
            binary.display(),
            entry.path().display()
        );
    }
    binary
}

fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).and_then(|m| m.modified()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A scratch directory with the given files, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(files: &[(&str, &str)]) -> Self {
        let suffix = Alphanumeric.sample_string(&mut rand::rng(), 8);
        let dir = std::env::temp_dir().join(format!("sandrun-cli-e2e-{suffix}"));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        for (name, content) in files {
            std::fs::write(dir.join(name), content).expect("write a program");
        }
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `sandrun ARGS` for the `demo` tenant; the environment carries URL and key.
fn sandrun(args: &[&str]) -> Command {
    let gw = Gateway::from_env();
    let mut command = Command::new(binary());
    command
        .args(args)
        .env("SANDRUN_URL", &gw.url)
        .env("SANDRUN_KEY", gw.key("demo").token)
        .env_remove("SANDRUN_KEY_FILE")
        .stdin(Stdio::null());
    command
}

fn output(mut command: Command, stdin: Option<&str>) -> Output {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        command.stdin(Stdio::piped());
    }
    let mut child = command.spawn().expect("start sandrun");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    wait_output(child)
}

/// Waits for the CLI, killing it after `FINAL_WITHIN`.
fn wait_output(child: Child) -> Output {
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let out = child.wait_with_output();
        let _ = done_tx.send(());
        out
    });
    if done_rx.recv_timeout(FINAL_WITHIN).is_err() {
        let _ = Command::new("kill").arg(pid.to_string()).status();
        panic!("sandrun (pid {pid}) did not finish within {FINAL_WITHIN:?}");
    }
    waiter.join().expect("waiter thread").expect("sandrun output")
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("UTF-8 output")
}

fn describe(out: &Output) -> String {
    format!("{:?}\n--- stdout\n{}--- stderr\n{}", out.status, text(&out.stdout), text(&out.stderr))
}

fn view_of(out: &Output) -> ExecutionView {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not an ExecutionView ({e}): {}", describe(out)))
}

const EXIT_THREE: &str = r#"import os, sys
data = sys.stdin.read()
sys.stdout.write(f"hello {data.strip()} {sys.argv[1:]} {os.environ['GREETING']}\n")
sys.stderr.write("warning: leaving with 3\n")
sys.exit(3)
"#;

#[test]
fn run_prints_the_programs_streams_exactly_and_exits_with_its_code() {
    let dir = Scratch::new(&[("hello.py", EXIT_THREE)]);
    let file = dir.path("hello.py");
    let file = file.to_str().expect("UTF-8 path");

    let mut quiet = sandrun(&["run", "--quiet", "--env", "GREETING=hi", "--timeout", "60", file, "--", "a", "b c"]);
    quiet.current_dir(&dir.0);
    let out = output(quiet, Some("world\n"));
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(text(&out.stdout), "hello world ['a', 'b c'] hi\n");
    assert_eq!(text(&out.stderr), "warning: leaving with 3\n");

    // Without --quiet, progress lines come first on stderr; the program's stderr is still exact at the end.
    let out = output(sandrun(&["run", "-e", "GREETING=yo", file]), Some("again"));
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(text(&out.stdout), "hello again [] yo\n");
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("sandrun: run-") && stderr.contains(" queued\n"), "{}", describe(&out));
    assert!(stderr.ends_with("\nwarning: leaving with 3\n"), "{}", describe(&out));
}

#[test]
fn json_prints_the_final_execution() {
    let dir = Scratch::new(&[("echo.mjs", "console.log(`node says ${process.argv.slice(2).join(' ')}`);\n")]);
    let file = dir.path("echo.mjs");
    let out = output(sandrun(&["run", "--json", file.to_str().unwrap(), "--", "hi", "there"]), None);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let done = view_of(&out);
    assert_eq!((done.status, done.exit_code, done.language.as_deref()), (State::Succeeded, Some(0), Some("node")));
    assert_eq!(done.stdout.as_deref(), Some("node says hi there\n"));

    // The same execution, read back.
    let got = output(sandrun(&["get", "--json", &done.id]), None);
    assert_eq!(got.status.code(), Some(0), "{}", describe(&got));
    assert_eq!(view_of(&got).stdout, done.stdout);
}

#[test]
fn a_timeout_exits_124() {
    let dir = Scratch::new(&[("spin.sh", "echo started\nsleep 30\n")]);
    let out = output(sandrun(&["run", "--quiet", "--timeout", "2", dir.path("spin.sh").to_str().unwrap()]), None);
    assert_eq!(out.status.code(), Some(124), "{}", describe(&out));
    assert_eq!(text(&out.stdout), "started\n");
}

/// Reads progress lines from a running `sandrun run` until one names the run.
fn run_id(child: &mut Child) -> (String, BufReader<std::process::ChildStderr>) {
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr pipe"));
    let mut line = String::new();
    loop {
        line.clear();
        let read = stderr.read_line(&mut line).expect("read stderr");
        assert!(read > 0, "sandrun ended before naming its run");
        if let Some(rest) = line.strip_prefix("sandrun: ") {
            let id = rest.split_whitespace().next().unwrap_or_default();
            if id.starts_with("run-") {
                return (id.to_owned(), stderr);
            }
        }
    }
}

#[test]
fn get_ls_and_cancel_a_sleeping_run() {
    let dir = Scratch::new(&[("sleep.py", "import time\nprint('going to sleep', flush=True)\ntime.sleep(600)\n")]);
    let mut run = sandrun(&["run", "--timeout", "600", dir.path("sleep.py").to_str().unwrap()]);
    run.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = run.spawn().expect("start sandrun run");
    let (id, mut progress) = run_id(&mut child);

    let got = output(sandrun(&["get", "--json", &id]), None);
    assert_eq!(got.status.code(), Some(0), "{}", describe(&got));
    let current = view_of(&got);
    assert_eq!(current.id, id);
    assert!(!current.status.is_final(), "finished already: {current:?}");

    let listed = output(sandrun(&["ls", "--json", "--limit", "500"]), None);
    assert_eq!(listed.status.code(), Some(0), "{}", describe(&listed));
    let list: ExecutionList = serde_json::from_slice(&listed.stdout).expect("an ExecutionList");
    assert!(list.items.iter().any(|v| v.id == id), "{id} not in the list: {}", describe(&listed));

    let table = output(sandrun(&["ls", "--limit", "500"]), None);
    let table_text = text(&table.stdout);
    assert!(table_text.starts_with("ID "), "{}", describe(&table));
    assert!(table_text.lines().any(|l| l.starts_with(&format!("{id} "))), "{}", describe(&table));

    let cancel = output(sandrun(&["cancel", &id]), None);
    assert_eq!(cancel.status.code(), Some(0), "{}", describe(&cancel));
    assert_eq!(text(&cancel.stdout), format!("cancelling {id}\n"));

    // The `run` still following it ends as the run does: cancelled, 130.
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut progress, &mut rest);
    let started = Instant::now();
    let out = wait_output(child);
    assert_eq!(out.status.code(), Some(130), "{}\n--- progress\n{rest}", describe(&out));
    assert!(started.elapsed() < FINAL_WITHIN);

    let got = output(sandrun(&["get", &id]), None);
    assert!(text(&got.stdout).contains("status:    cancelled\n"), "{}", describe(&got));
    let cancelled = output(sandrun(&["ls", "--json", "--status", "cancelled", "--limit", "500"]), None);
    let list: ExecutionList = serde_json::from_slice(&cancelled.stdout).expect("an ExecutionList");
    assert!(list.items.iter().all(|v| v.status == State::Cancelled) && list.items.iter().any(|v| v.id == id));

    // Cancelling what has ended changes nothing and says so.
    let again = output(sandrun(&["cancel", &id]), None);
    assert_eq!(
        (again.status.code(), text(&again.stdout)),
        (Some(0), format!("{id} had already ended: cancelled\n").as_str())
    );
}

#[test]
fn usage_and_gateway_errors_exit_2_with_a_message() {
    let dir = Scratch::new(&[("ok.py", "print('never')\n"), ("prog.rb", "puts 1\n")]);
    let ok = dir.path("ok.py");
    let ok = ok.to_str().unwrap();
    let cases: Vec<(Command, &str)> = vec![
        (
            {
                let mut c = sandrun(&["run", ok]);
                c.env("SANDRUN_KEY", "not-a-key");
                c
            },
            "--key",
        ),
        (sandrun(&["run", dir.path("prog.rb").to_str().unwrap()]), "pass --lang"),
        (sandrun(&["run", "--memory", "lots", ok]), "memory"),
        (sandrun(&["run", "--lang", "cobol", ok]), "language"),
        (sandrun(&["get", "run-does-not-exist"]), "not found"),
        (sandrun(&["ls", "--status", "sleeping"]), "status"),
        (sandrun(&["run", dir.path("missing.py").to_str().unwrap()]), "cannot read"),
        (
            {
                let mut c = sandrun(&["ls"]);
                c.env("SANDRUN_URL", "http://127.0.0.1:1");
                c
            },
            "cannot reach the gateway",
        ),
    ];
    for (command, needle) in cases {
        let line = format!("{:?}", command.get_args().collect::<Vec<_>>());
        let out = output(command, None);
        assert_eq!(out.status.code(), Some(2), "{line}: {}", describe(&out));
        let stderr = text(&out.stderr);
        assert!(
            stderr.starts_with("sandrun: ") && stderr.contains(needle),
            "{line}: wanted {needle:?}: {}",
            describe(&out)
        );
        assert!(out.stdout.is_empty(), "{line}: {}", describe(&out));
    }
}

/// A loopback TCP proxy to the gateway that cuts its first connection
/// `cut_after` it was opened, as a network failure would.
fn flaky_proxy(upstream: &str, cut_after: Duration) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
    let url = format!("http://{}", listener.local_addr().expect("proxy address"));
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&upstream) else { continue };
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let pipe = |mut from: TcpStream, mut to: TcpStream| {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                })
            };
            if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
                pipe(c, s);
            }
            if let (Ok(s), Ok(c)) = (server.try_clone(), client.try_clone()) {
                pipe(s, c);
            }
            if n == 0 {
                std::thread::spawn(move || {
                    std::thread::sleep(cut_after);
                    let _ = client.shutdown(Shutdown::Both);
                    let _ = server.shutdown(Shutdown::Both);
                });
            }
        }
    });
    (url, connections)
}

#[test]
fn a_dropped_websocket_is_resumed_and_the_result_still_arrives() {
    let gw = Gateway::from_env();
    let (proxy, connections) = flaky_proxy(&gw.url, Duration::from_millis(1500));
    let dir = Scratch::new(&[("nap.py", "import time\ntime.sleep(6)\nprint('woke up')\n")]);
    let mut run = sandrun(&["run", dir.path("nap.py").to_str().unwrap()]);
    run.env("SANDRUN_URL", &proxy);
    let out = output(run, None);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(text(&out.stdout), "woke up\n");
    assert!(connections.load(Ordering::SeqCst) >= 2, "the connection was never cut: {}", describe(&out));
    assert!(text(&out.stderr).contains("sandrun: connection lost; reconnecting"), "{}", describe(&out));
}
