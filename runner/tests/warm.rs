//! The built runner in warm mode, fed its program through a pipe the way
//! the operator's attach session feeds it.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sandrun_runner::protocol::{
    accepted_line, parse_frame, DeliveredFile, Delivery, EnvPair, RunResult, UNDELIVERED_PREFIX,
};

/// A workdir and a termination-message file of its own per test.
struct Pod {
    dir: PathBuf,
}

impl Pod {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sandrun-warm-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Pod { dir }
    }

    fn workdir(&self) -> PathBuf {
        self.dir.join("work")
    }

    fn termination_message(&self) -> String {
        std::fs::read_to_string(self.dir.join("termination-log")).unwrap_or_default()
    }

    fn start(&self, extra: &[&str]) -> Child {
        let result_file = self.dir.join("termination-log");
        Command::new(env!("CARGO_BIN_EXE_sandrun-runner"))
            .arg("warm")
            .args(["--workdir".as_ref(), self.workdir().as_os_str()])
            .args(["--result-file".as_ref(), result_file.as_os_str()])
            .args(extra)
            .env("GREETING", "from the container")
            .env("PASSED", "through")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Writes `input` and closes stdin; returns (exit code, stdout).
    fn feed(&self, input: &[u8], extra: &[&str]) -> (Option<i32>, String) {
        let mut child = self.start(extra);
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sh(uid: &str, script: &str) -> Delivery {
    Delivery {
        execution_uid: uid.into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        timeout_ms: 10_000,
        max_output_bytes: 64 * 1024,
        ..Default::default()
    }
}

/// The accepted line, then the frame, and nothing else.
fn accepted_then_frame(uid: &str, stdout: &str) -> RunResult {
    let lines: Vec<&str> = stdout.split_inclusive('\n').collect();
    assert_eq!(lines.len(), 2, "{stdout:?}");
    assert_eq!(lines[0], accepted_line(uid));
    parse_frame(lines[1]).expect("a frame").expect("a frame that parses")
}

#[test]
fn runs_the_delivered_program_with_its_files_stdin_and_env() {
    let pod = Pod::new("full");
    let program = "import os, sys\n\
                   print(open('pkg/data.txt').read(), end='')\n\
                   print(sys.stdin.read(), end='')\n\
                   print(os.environ['GREETING'], os.environ['PASSED'], os.getcwd())\n\
                   sys.exit(3)\n";
    let delivery = Delivery {
        execution_uid: "uid-full".into(),
        command: vec!["python3".into(), "main.py".into()],
        env: vec![EnvPair { name: "GREETING".into(), value: "from the payload".into() }],
        files: vec![
            DeliveredFile { path: "main.py".into(), content: program.into() },
            DeliveredFile { path: "pkg/data.txt".into(), content: "from a file\n".into() },
        ],
        stdin: Some("from stdin\n".into()),
        timeout_ms: 10_000,
        max_output_bytes: 1024,
        memory_limit_bytes: 0,
    };
    let (code, stdout) = pod.feed(delivery.to_line().as_bytes(), &[]);
    assert_eq!(code, Some(0), "{stdout}");
    let result = accepted_then_frame("uid-full", &stdout);
    assert_eq!(result.exit_code, Some(3), "{result:?}");
    let cwd = pod.workdir().canonicalize().unwrap();
    let want = format!("from a file\nfrom stdin\nfrom the payload through {}\n", cwd.display());
    assert_eq!(result.stdout, want, "{result:?}");
    assert_eq!(pod.termination_message(), result.to_frame());
}

#[test]
fn neither_waits_for_stdin_to_close_nor_lets_the_program_read_past_its_line() {
    let pod = Pod::new("open");
    let mut child = pod.start(&[]);
    let mut stdin = child.stdin.take().unwrap();
    let line = sh("uid-open", "cat; echo done").to_line();
    stdin.write_all(format!("{line}more bytes for nobody\n").as_bytes()).unwrap();
    let started = Instant::now();
    // stdin stays open, as an attach session keeps it.
    let status = child.wait().unwrap();
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    drop(stdin);
    assert_eq!(status.code(), Some(0));
    let result = accepted_then_frame("uid-open", &stdout);
    assert_eq!((result.stdout.as_str(), result.timed_out), ("done\n", false), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[test]
fn the_deadline_comes_from_the_payload() {
    let pod = Pod::new("timeout");
    let delivery = Delivery { timeout_ms: 300, ..sh("uid-slow", "sleep 30") };
    let started = Instant::now();
    let (code, stdout) = pod.feed(delivery.to_line().as_bytes(), &[]);
    assert_eq!(code, Some(0));
    let result = accepted_then_frame("uid-slow", &stdout);
    assert!(result.timed_out, "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[test]
fn without_a_program_nothing_runs_and_stdout_stays_empty() {
    let line = sh("uid-x", "touch ran").to_line();
    let cases: [(&str, Vec<u8>, &[&str]); 5] = [
        ("eof", Vec::new(), &[]),
        ("garbage", b"hello there\n".to_vec(), &[]),
        ("half", line.trim_end().as_bytes().to_vec(), &[]),
        ("too-large", line.clone().into_bytes(), &["--max-payload-bytes", "40"]),
        ("not-utf8", b"SANDRUN-PROGRAM-V1 \xff\n".to_vec(), &[]),
    ];
    for (name, input, extra) in cases {
        let pod = Pod::new(name);
        let (code, stdout) = pod.feed(&input, extra);
        assert_eq!((code, stdout.as_str()), (Some(75), ""), "{name}");
        let message = pod.termination_message();
        assert!(message.starts_with(UNDELIVERED_PREFIX) && message.ends_with('\n'), "{name}: {message:?}");
        assert!(!pod.workdir().join("ran").exists(), "{name}: the program ran");
    }
}

#[test]
fn a_path_out_of_the_workdir_fails_the_run_without_running_it() {
    let pod = Pod::new("escape");
    let mut delivery = sh("uid-escape", "touch ran");
    delivery.files = vec![DeliveredFile { path: "../x".into(), content: "escaped".into() }];
    let (code, stdout) = pod.feed(delivery.to_line().as_bytes(), &[]);
    assert_eq!(code, Some(0));
    let result = accepted_then_frame("uid-escape", &stdout);
    assert_eq!(result.exit_code, Some(127));
    assert!(result.error.as_deref().is_some_and(|e| e.contains("\"../x\"")), "{result:?}");
    assert!(!pod.dir.join("x").exists(), "the file was written outside the workdir");
    assert!(!pod.workdir().join("ran").exists(), "the program ran");
}

#[test]
fn no_frame_on_stdout_when_the_termination_message_cannot_be_written() {
    let pod = Pod::new("no-message");
    let unwritable = pod.dir.join("no/such/dir/termination-log");
    // The later --result-file wins.
    let args = ["--result-file", unwritable.to_str().unwrap()];
    let (code, stdout) = pod.feed(sh("uid-nm", "echo hi").to_line().as_bytes(), &args);
    assert_eq!(code, Some(71));
    assert_eq!(stdout, accepted_line("uid-nm"), "a frame was printed for a container that will not exit 0");
}
