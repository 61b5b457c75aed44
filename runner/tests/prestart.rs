//! The built runner in warm mode with its interpreter started ahead: the
//! same program must come out the same as when it starts afresh.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use sandrun_runner::protocol::{accepted_line, parse_frame, DeliveredFile, Delivery, EnvPair, RunResult};

struct Pod {
    dir: PathBuf,
}

impl Pod {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sandrun-prestart-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("work")).unwrap();
        Pod { dir }
    }

    /// Starts a warm runner, waits `before` (the pod sitting in its pool),
    /// delivers and returns the frame and the runner's stderr.
    fn run(&self, delivery: &Delivery, prestart: Option<&str>, before: Duration) -> (RunResult, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sandrun-runner"));
        command.arg("warm").arg("--workdir").arg(self.dir.join("work"));
        if let Some(program) = prestart {
            command.args(["--prestart", program]);
        }
        let mut child = command
            .env("GREETING", "from the container")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(before);
        child.stdin.take().unwrap().write_all(delivery.to_line().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        let frame = stdout.strip_prefix(&accepted_line(&delivery.execution_uid)).expect("accepted first");
        (parse_frame(frame).expect("a frame").expect("a frame that parses"), stderr)
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn delivery(command: &[&str], files: &[(&str, &str)], stdin: Option<&str>) -> Delivery {
    Delivery {
        execution_uid: "uid".into(),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        env: vec![EnvPair { name: "GREETING".into(), value: "from the payload".into() }],
        files: files
            .iter()
            .map(|(path, content)| DeliveredFile { path: (*path).into(), content: (*content).into() })
            .collect(),
        stdin: stdin.map(Into::into),
        timeout_ms: 10_000,
        max_output_bytes: 64 * 1024,
        memory_limit_bytes: 0,
    }
}

const PYTHON_WORLD: &str = "\
import os, pickle, sys
import helper
import __main__
class Point:
    pass
print(sys.argv, __name__, __file__, __main__.__file__ == __file__)
print(sys.path[0] == os.path.dirname(__file__), helper.NAME)
print(sorted(k for k in globals() if k != '__loader__'))
print(type(pickle.loads(pickle.dumps(Point()))).__name__)
print(os.environ['GREETING'], repr(sys.stdin.read()))
try:
    os.read(3, 1)
    print('fd 3 is open')
except OSError as e:
    print('fd 3:', e.strerror)
sys.exit(4)
";

const NODE_WORLD: &str = "\
const fs = require('fs');
console.log(process.argv.slice(1), __filename, require.main === module);
console.log(process.env.GREETING, JSON.stringify(fs.readFileSync(0, 'utf8')));
let pipe = false;
try { pipe = fs.readlinkSync('/proc/self/fd/3').startsWith('pipe:'); } catch (e) {}
console.log('fd 3 is a pipe:', pipe);
process.exitCode = 5;
";

/// A case: what it checks, the interpreter to start ahead, the program, and
/// the part of stderr that must match.
type Case = (&'static str, &'static str, Delivery, fn(&str) -> String);

/// Each program, started ahead and afresh: the same exit, stdout and stderr.
#[test]
fn a_program_started_ahead_sees_what_it_would_see_started_afresh() {
    let cases: [Case; 6] = [
        (
            "python: argv, __main__, sys.path, globals, env, stdin, fd 3, exit",
            "python3",
            delivery(
                &["python3", "main.py", "--flag"],
                &[("main.py", PYTHON_WORLD), ("helper.py", "NAME = 'helper'\n")],
                Some("in\n"),
            ),
            str::to_owned,
        ),
        (
            "python: uncaught exception",
            "python3",
            delivery(&["python3", "main.py"], &[("main.py", "def f():\n    return 1 / 0\nf()\n")], None),
            str::to_owned,
        ),
        (
            "python: syntax error",
            "python3",
            delivery(&["python3", "main.py"], &[("main.py", "x = (\n")], None),
            str::to_owned,
        ),
        (
            "python: no stdin",
            "python3",
            delivery(&["python3", "main.py"], &[("main.py", "import sys\nprint(repr(sys.stdin.read()))\n")], None),
            str::to_owned,
        ),
        (
            "node: argv, main module, env, stdin, fd 3, exit",
            "node",
            delivery(&["node", "main.js", "a", "b"], &[("main.js", NODE_WORLD)], Some("in\n")),
            str::to_owned,
        ),
        (
            "node: uncaught exception (first line: the stack's bottom frames are node's own)",
            "node",
            delivery(&["node", "main.js"], &[("main.js", "function f() { throw new Error('boom'); }\nf();\n")], None),
            |stderr| stderr.lines().take(5).collect::<Vec<_>>().join("\n"),
        ),
    ];
    for (case, interpreter, delivery, stderr_part) in cases {
        let pod = Pod::new("same");
        let (afresh, _) = pod.run(&delivery, None, Duration::ZERO);
        let (ahead, runner_stderr) = pod.run(&delivery, Some(interpreter), Duration::from_millis(300));
        assert!(runner_stderr.is_empty(), "{case}: the runner fell back: {runner_stderr}");
        assert!(afresh.stdout.len() + afresh.stderr.len() > 0, "{case}: nothing to compare: {afresh:?}");
        assert_eq!(
            (ahead.exit_code, ahead.stdout.as_str(), stderr_part(&ahead.stderr)),
            (afresh.exit_code, afresh.stdout.as_str(), stderr_part(&afresh.stderr)),
            "{case}"
        );
    }
}

#[test]
fn the_timeout_and_duration_count_from_the_program_not_the_interpreter() {
    let pod = Pod::new("clock");
    let mut d = delivery(&["python3", "main.py"], &[("main.py", "import time\ntime.sleep(0.2)\n")], None);
    d.timeout_ms = 1_000;
    // The pod waits longer than the run's whole timeout before its program comes.
    let (result, _) = pod.run(&d, Some("python3"), Duration::from_millis(1_500));
    assert!(!result.timed_out, "{result:?}");
    assert!((200..1_000).contains(&result.duration_millis), "{result:?}");
}

#[test]
fn a_command_the_interpreter_cannot_take_starts_afresh() {
    let pod = Pod::new("afresh");
    let cases = [
        ("a flag before the script", delivery(&["python3", "-c", "print('inline')"], &[], None), "inline\n"),
        ("another program", delivery(&["sh", "-c", "echo shell"], &[], None), "shell\n"),
    ];
    for (case, delivery, want) in cases {
        let (result, stderr) = pod.run(&delivery, Some("python3"), Duration::from_millis(100));
        assert_eq!((result.exit_code, result.stdout.as_str()), (Some(0), want), "{case}: {result:?} {stderr}");
    }
    let (result, stderr) = pod.run(&delivery(&["sh", "-c", "echo ok"], &[], None), Some("ruby"), Duration::ZERO);
    assert_eq!(result.stdout, "ok\n", "{result:?}");
    assert!(stderr.contains("no bootstrap for \"ruby\""), "{stderr}");
}

#[test]
fn an_interpreter_that_died_while_waiting_is_replaced_by_a_fresh_start() {
    let pod = Pod::new("died");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sandrun-runner"))
        .args(["warm", "--prestart", "python3", "--workdir"])
        .arg(pod.dir.join("work"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The interpreter is the runner's only child.
    let children = format!("/proc/{0}/task/{0}/children", child.id());
    let waiting = (0..100)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(20));
            std::fs::read_to_string(&children).ok().filter(|c| !c.trim().is_empty())
        })
        .expect("no interpreter started");
    let pid: i32 = waiting.trim().parse().unwrap();
    // SAFETY: kill takes plain integers.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    std::thread::sleep(Duration::from_millis(100));
    let d = delivery(&["python3", "main.py"], &[("main.py", "print(input())\n")], Some("still here\n"));
    child.stdin.take().unwrap().write_all(d.to_line().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let result = parse_frame(stdout.strip_prefix(&accepted_line("uid")).unwrap()).unwrap().unwrap();
    assert_eq!((result.exit_code, result.stdout.as_str()), (Some(0), "still here\n"), "{result:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("starting the program afresh"));
}
