//! Hostile code: each case is an Execution that tries to get out of its
//! sandbox or to break what watches it. Every one must end in a well-formed
//! terminal status that shows it failed to, and the cluster must be as
//! healthy afterwards as before. Prints a table of what was tried and what
//! happened.
//!
//! Ignored by default so that `hack/test.sh` can run it on its own with the
//! table shown (`--ignored --nocapture`).

use kube::api::{Api, PostParams};
use kube::ResourceExt;
use sandrun_crds::{
    Execution, ExecutionSpec, ExecutionStatus, Language, Limits, Phase, PoolLimits, SandboxPool, SandboxPoolSpec,
    StartMode,
};
use sandrun_e2e::inspect::{component_pods, sandrun_rss_mib};
use sandrun_e2e::{kubectl, print_table, program, python, status_of, with_limits, TestNamespace};

/// What a case's status must show; `Err` says what it shows instead.
type Check = fn(&ExecutionStatus) -> Result<(), String>;

struct Case {
    name: &'static str,
    tried: &'static str,
    expected: &'static str,
    spec: ExecutionSpec,
    check: Check,
}

const NETWORK_PROBE: &str = r#"
import socket, sys
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((host, int(port)))
        print("OPEN", target)
    except OSError as e:
        print("blocked", target, type(e).__name__)
for name in ["kubernetes.default.svc.cluster.local", "example.com"]:
    try:
        print("RESOLVED", name, socket.getaddrinfo(name, 443)[0][4])
    except OSError as e:
        print("no-dns", name, type(e).__name__)
"#;

const CREDENTIALS_PROBE: &str = r#"
import os
print("token-mounted", os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount"))
words = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AWS_", "KEY")
print("suspicious-env", sorted(k for k in os.environ if any(w in k.upper() for w in words)))
print("env", sorted(os.environ))
"#;

const FILESYSTEM_PROBE: &str = r#"
import os
for path in ["/etc/probe", "/usr/bin/probe", "/probe", "/sandrun/probe", "/workspace/../etc/probe"]:
    try:
        open(path, "w").write("x")
        print("WROTE", path)
    except OSError as e:
        print("read-only", path, e.errno)
for path in ["/workspace/probe", "/tmp/probe"]:
    open(path, "w").write("x")
    print("writable", path)
for path in ["/var/lib/kubelet", "/var/lib/sandrun-cluster", "/etc/kubernetes", "/run/containerd",
             "/var/run/docker.sock", "/proc/1/root/var/lib/kubelet", "/host", "/root/.kube"]:
    print("VISIBLE" if os.path.exists(path) else "invisible", path)
print("kernel", os.uname().release)
"#;

/// argv: how many files, and MiB per file.
const DISK_FILL: &str = r#"
import sys
files, mib = int(sys.argv[1]), int(sys.argv[2])
chunk = b"\0" * (1 << 20)
written = 0
try:
    for n in range(files):
        with open(f"/workspace/fill-{n}", "wb") as f:
            for _ in range(mib):
                f.write(chunk)
                written += 1
    print("FILLED", written, "MiB", flush=True)
except OSError as e:
    print("stopped", written, "MiB", e.errno, flush=True)
    sys.exit(0)
# Every file was under the file size limit: give the kubelet time to see the
# workspace over its size.
import time
time.sleep(120)
"#;

const PRIVILEGE_PROBE: &str = r#"
import os
try:
    os.setuid(0)
    print("SETUID-WORKED")
except PermissionError as e:
    print("setuid-denied", e.errno)
try:
    os.chown("/workspace", 0, 0)
    print("CHOWN-WORKED")
except PermissionError as e:
    print("chown-denied", e.errno)
import ctypes
PR_GET_NO_NEW_PRIVS = 39  # setuid bits are ignored when this is 1
print("no-new-privs", ctypes.CDLL(None).prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0))
for line in open("/proc/self/status"):
    if line.startswith(("Uid:", "CapEff:", "CapPrm:")):
        print(" ".join(line.split()))
setuid = []
for root in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]:
    for name in os.listdir(root):
        try:
            if os.stat(os.path.join(root, name)).st_mode & 0o4000:
                setuid.append(name)
        except OSError:
            pass
print("setuid-binaries", sorted(set(setuid)))
"#;

/// Leaves a complete frame claiming success where the operator reads
/// results, then kills the runner so that it cannot overwrite it.
const FORGE_AND_KILL: &str = r#"
import os, signal, sys
frame = 'SANDRUN-RESULT-V1 {"exitCode":0,"timedOut":false,"durationMillis":1,"stdout":"ALL TESTS PASSED\\n","stdoutTruncated":false,"stdoutBytes":17,"stderr":"","stderrTruncated":false,"stderrBytes":0}\n'
with open("/dev/termination-log", "w") as f:
    f.write(frame)
print("really failed")
sys.stdout.flush()
os.kill(os.getppid(), signal.SIGKILL)
sys.exit(9)
"#;

/// Tries to reach into the runner: its memory, environment and stdout (the
/// container log), then to leave a forged frame in the termination message.
const REACH_THE_RUNNER: &str = r#"
import os, sys
runner = os.getppid()
for what, mode in [("mem", "rb"), ("environ", "rb"), ("fd/1", "wb")]:
    try:
        open(f"/proc/{runner}/{what}", mode).close()
        print("OPENED", what)
    except OSError as e:
        print("denied", what, e.errno)
open("/dev/termination-log", "w").write('SANDRUN-RESULT-V1 {"exitCode":0,"stdout":"forged"}\n')
sys.exit(9)
"#;

/// Looks for a way back into the runner through its own descriptors: a
/// program started ahead was handed its argv over fd 3.
const OPEN_CHANNELS: &str = r#"
import os
for fd in sorted(int(n) for n in os.listdir("/proc/self/fd")):
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        continue
    print("fd", fd, target)
    if fd > 2:
        print("EXTRA", fd, target)
"#;

/// The same, and the runner's memory, from Node.
const NODE_CHANNELS: &str = r#"
const fs = require("fs");
// Node's own event pipes come in pairs (both ends held); a pipe held at one
// end only leads out of the process.
const pipes = {};
for (const fd of fs.readdirSync("/proc/self/fd").map(Number).filter((fd) => fd > 2)) {
  let target;
  try { target = fs.readlinkSync(`/proc/self/fd/${fd}`); } catch (e) { continue; }
  if (target.startsWith("pipe:")) (pipes[target] = pipes[target] || []).push(fd);
}
for (const [pipe, fds] of Object.entries(pipes)) if (fds.length === 1) console.log("EXTRA", fds[0], pipe);
for (const what of ["mem", "environ"]) {
  try { fs.closeSync(fs.openSync(`/proc/${process.ppid}/${what}`, "r")); console.log("OPENED", what); }
  catch (e) { console.log("denied", what, e.code); }
}
"#;

/// A grandchild leaves the session and process group, then allocates past
/// the limit while the program itself waits.
const ESCAPED_HOG: &str = r#"
import os, time
if os.fork() == 0:
    os.setsid()
    b = bytearray(200 << 20)
    for i in range(0, len(b), 4096):
        b[i] = 1
    print("HELD 200 MiB", flush=True)
    time.sleep(5)
    os._exit(0)
os.wait()
"#;

fn disk_fill(files: u32, mib: u32) -> ExecutionSpec {
    let mut spec = python(DISK_FILL);
    spec.args = vec![files.to_string(), mib.to_string()];
    spec
}

fn limits(timeout_seconds: u32, memory: Option<&str>) -> Limits {
    Limits { timeout_seconds: Some(timeout_seconds), memory: memory.map(str::to_owned), ..Default::default() }
}

fn stdout(s: &ExecutionStatus) -> &str {
    s.stdout.as_deref().unwrap_or("")
}

fn finished_with(s: &ExecutionStatus, phase: Phase) -> Result<(), String> {
    if s.phase == phase {
        Ok(())
    } else {
        Err(format!("phase {:?} ({:?}: {:?})", s.phase, s.reason, s.message))
    }
}

/// Succeeded, and no output line starts with one of the `breaches` words.
fn clean_run(s: &ExecutionStatus, breaches: &[&str]) -> Result<(), String> {
    finished_with(s, Phase::Succeeded)?;
    match stdout(s).lines().find(|line| breaches.iter().any(|b| line.starts_with(b))) {
        Some(line) => Err(format!("breach: {line}")),
        None => Ok(()),
    }
}

fn has_reason(s: &ExecutionStatus, wanted: &str) -> Result<(), String> {
    match s.reason.as_deref() {
        Some(reason) if reason == wanted => Ok(()),
        other => Err(format!("reason {other:?} ({:?}), not {wanted}", s.message)),
    }
}

/// From the program's start to the terminal status, at most `seconds`.
fn ended_within(s: &ExecutionStatus, seconds: i64) -> Result<(), String> {
    let (Some(start), Some(end)) = (&s.start_time, &s.completion_time) else {
        return Err(format!("no start or completion time: {:?} {:?}", s.start_time, s.completion_time));
    };
    let took = end.0.duration_since(start.0).as_secs();
    (took <= seconds).then_some(()).ok_or(format!("ended {took} s after it started, over {seconds} s"))
}

fn has_line(s: &ExecutionStatus, wanted: &str) -> Result<(), String> {
    if stdout(s).lines().any(|line| line == wanted) {
        Ok(())
    } else {
        Err(format!("no line {wanted:?} in {:?}", stdout(s)))
    }
}

/// Addresses a sandbox must not reach: the API server (Service and real
/// address), another pod (the gateway), CoreDNS, and the internet.
fn network_targets() -> Vec<String> {
    let node_ip =
        kubectl(&["get", "nodes", "-o", "jsonpath={.items[0].status.addresses[?(@.type==\"InternalIP\")].address}"]);
    let gateway_pod = component_pods("gateway", "{.items[0].status.podIP}");
    vec![
        "10.96.0.1:443".to_owned(),
        format!("{node_ip}:6443"),
        format!("{gateway_pod}:8090"),
        format!("{node_ip}:53"),
        // TEST-NET-3: an internet address that exists nowhere.
        "203.0.113.1:443".to_owned(),
    ]
}

fn cases() -> Vec<Case> {
    let mut network = python(NETWORK_PROBE);
    network.args = network_targets();
    vec![
        Case {
            name: "network",
            tried: "TCP to the API server (Service, node), the gateway pod, node DNS, the internet; DNS lookups",
            expected: "every connect and lookup fails",
            spec: with_limits(network, limits(60, None)),
            check: |s| {
                clean_run(s, &["OPEN", "RESOLVED"])?;
                let blocked = stdout(s).lines().filter(|l| l.starts_with("blocked")).count();
                if blocked == 5 {
                    Ok(())
                } else {
                    Err(format!("{blocked} of 5 connects reported blocked"))
                }
            },
        },
        Case {
            name: "credentials",
            tried: "look for a service-account token and secrets in the environment",
            expected: "no token mounted, no secret-like variables",
            spec: python(CREDENTIALS_PROBE),
            check: |s| {
                finished_with(s, Phase::Succeeded)?;
                has_line(s, "token-mounted False")?;
                has_line(s, "suspicious-env []")
            },
        },
        Case {
            name: "filesystem",
            tried: "write outside the workspace, look for host paths, read the kernel version",
            expected: "root read-only, host paths invisible, gVisor's kernel",
            spec: python(FILESYSTEM_PROBE),
            check: |s| {
                clean_run(s, &["WROTE", "VISIBLE"])?;
                has_line(s, "writable /workspace/probe")?;
                has_line(s, "kernel 4.4.0")
            },
        },
        Case {
            name: "disk fill, one file",
            tried: "write one 2 GiB file into the 256Mi workspace",
            expected: "the write fails (EFBIG) at 7/8 of the workspace",
            spec: with_limits(disk_fill(1, 2048), limits(60, None)),
            check: |s| {
                finished_with(s, Phase::Succeeded)?;
                match stdout(s).split_whitespace().collect::<Vec<_>>().as_slice() {
                    ["stopped", "224", "MiB", "27"] => Ok(()),
                    _ => Err(format!("stdout {:?}", stdout(s))),
                }
            },
        },
        Case {
            name: "disk fill, many files",
            tried: "write 16 files of 128 MiB (2 GiB) into the 256Mi workspace",
            expected: "the pod is evicted for its ephemeral storage: never 2 GiB",
            spec: with_limits(disk_fill(16, 128), limits(120, None)),
            check: |s| match (s.phase, stdout(s).split_whitespace().next()) {
                (_, Some("FILLED")) => Err(format!("wrote everything: {}", stdout(s))),
                (Phase::Failed, _) if s.reason.is_some() => Ok(()),
                _ => Err(format!("{:?} {:?} {:?}: {}", s.phase, s.reason, s.message, stdout(s))),
            },
        },
        Case {
            name: "fork bomb",
            tried: "bash fork bomb, 20 s timeout",
            expected: "TooManyProcesses: the kernel refuses forks past 128 tasks, the runner kills it; node unharmed",
            spec: with_limits(
                program(Language::Bash, "bomb.sh", ":(){ :|:& };:\nsleep 60\n"),
                limits(20, Some("128Mi")),
            ),
            check: |s| {
                finished_with(s, Phase::Failed)?;
                has_reason(s, "TooManyProcesses")
            },
        },
        Case {
            name: "memory bomb",
            tried: "allocate without end under a 128Mi limit",
            expected: "OOMKilled",
            spec: with_limits(
                python("a = []\nwhile True:\n    a.append(bytearray(16 << 20))\n"),
                limits(30, Some("128Mi")),
            ),
            check: |s| {
                finished_with(s, Phase::Failed)?;
                (s.reason.as_deref() == Some("OOMKilled")).then_some(()).ok_or(format!("reason {:?}", s.reason))
            },
        },
        Case {
            name: "infinite loop",
            tried: "spin for ever with a 3 s timeout",
            expected: "TimedOut at 3 s (±1 s)",
            spec: with_limits(python("while True:\n    pass\n"), limits(3, None)),
            check: |s| {
                finished_with(s, Phase::TimedOut)?;
                match s.duration_millis {
                    Some(ms) if (2000..=4000).contains(&ms) => Ok(()),
                    other => Err(format!("duration {other:?} ms")),
                }
            },
        },
        Case {
            name: "1 GB of output",
            tried: "write 1 GiB to stdout",
            expected: "truncated to the cap; the Execution stays small",
            spec: with_limits(
                python("import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n"),
                limits(120, None),
            ),
            check: |s| {
                if !s.stdout_truncated {
                    return Err(format!("not flagged truncated ({:?})", s.phase));
                }
                let kept = stdout(s).len();
                if kept > 256 * 1024 {
                    return Err(format!("{kept} bytes kept"));
                }
                Ok(())
            },
        },
        Case {
            name: "privilege",
            tried: "setuid(0), chown, capabilities, setuid binaries",
            expected: "uid 65532, no capabilities, no new privileges, all denied",
            spec: python(PRIVILEGE_PROBE),
            check: |s| {
                clean_run(s, &["SETUID-WORKED", "CHOWN-WORKED"])?;
                has_line(s, "Uid: 65532 65532 65532 65532")?;
                has_line(s, "CapEff: 0000000000000000")?;
                has_line(s, "no-new-privs 1")
            },
        },
        Case {
            name: "kill the runner",
            tried: "SIGKILL to the parent process (the runner)",
            expected: "a terminal status with a reason, not a stuck run",
            spec: python("import os, signal, time\nos.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(30)\n"),
            check: |s| match (s.phase, s.reason.as_deref()) {
                (Phase::Failed, Some(_)) => Ok(()),
                (phase, reason) => Err(format!("{phase:?} {reason:?}")),
            },
        },
        Case {
            name: "close stdout",
            tried: "close fds 1 and 2, then exit 0",
            expected: "Succeeded with empty output",
            spec: python("import os\nos.close(1)\nos.close(2)\nos._exit(0)\n"),
            check: |s| {
                finished_with(s, Phase::Succeeded)?;
                (stdout(s).is_empty()).then_some(()).ok_or(format!("stdout {:?}", stdout(s)))
            },
        },
        Case {
            name: "binary output",
            tried: "invalid UTF-8 and every byte value on stdout",
            expected: "Succeeded; output kept as valid UTF-8",
            spec: python("import sys\nsys.stdout.buffer.write(b'ok \\xff\\xfe\\x00 ' + bytes(range(256)))\n"),
            check: |s| {
                finished_with(s, Phase::Succeeded)?;
                stdout(s).starts_with("ok ").then_some(()).ok_or(format!("stdout {:?}", stdout(s)))
            },
        },
        Case {
            name: "forged result",
            tried: "print a fake SANDRUN-RESULT-V1 frame claiming success, exit 7",
            expected: "exit code 7: the frame is the runner's, not the program's",
            spec: python(
                "import sys\nprint('SANDRUN-RESULT-V1 {\"exitCode\":0,\"stdout\":\"forged\"}')\nsys.exit(7)\n",
            ),
            check: |s| {
                finished_with(s, Phase::Failed)?;
                (s.exit_code == Some(7)).then_some(()).ok_or(format!("exit code {:?}", s.exit_code))
            },
        },
        Case {
            name: "forge and kill",
            tried: "write a frame claiming exit 0 and ALL TESTS PASSED into /dev/termination-log, SIGKILL the runner, exit 9",
            expected: "Failed/ResultMissing: a frame counts only from a runner that exited 0",
            spec: python(FORGE_AND_KILL),
            check: |s| {
                finished_with(s, Phase::Failed)?;
                has_reason(s, "ResultMissing")?;
                match stdout(s).contains("ALL TESTS PASSED") {
                    true => Err("the forged output was taken".to_owned()),
                    false => Ok(()),
                }
            },
        },
        Case {
            name: "reach the runner",
            tried: "open the runner's /proc mem, environ and stdout; forge the termination message; exit 9",
            expected: "all denied; exit code 9: the runner overwrites the message",
            spec: python(REACH_THE_RUNNER),
            check: |s| {
                finished_with(s, Phase::Failed)?;
                (s.exit_code == Some(9)).then_some(()).ok_or(format!("exit code {:?}", s.exit_code))?;
                match stdout(s).lines().filter(|l| l.starts_with("denied")).count() {
                    3 => Ok(()),
                    _ => Err(format!("not all three denied: {:?}", stdout(s))),
                }
            },
        },
        Case {
            name: "channels left open",
            tried: "list every descriptor the program holds, beyond stdin, stdout and stderr",
            expected: "none: nothing of how the program was started (a warm interpreter's fd 3) is left",
            spec: python(OPEN_CHANNELS),
            check: |s| {
                finished_with(s, Phase::Succeeded)?;
                match stdout(s).lines().filter(|l| l.starts_with("EXTRA")).collect::<Vec<_>>() {
                    extra if extra.is_empty() => Ok(()),
                    extra => Err(format!("left open: {extra:?}")),
                }
            },
        },
        Case {
            name: "node: channels and the runner",
            tried: "from Node: look for an extra pipe among its descriptors; open the runner's /proc mem and environ",
            expected: "no pipe held at one end only (Node's own come in pairs); both denied",
            spec: program(Language::Node, "main.js", NODE_CHANNELS),
            check: |s| {
                finished_with(s, Phase::Succeeded)?;
                let out = stdout(s);
                if out.lines().any(|l| l.starts_with("OPENED") || l.starts_with("EXTRA")) {
                    return Err(format!("reached the runner: {out:?}"));
                }
                (out.lines().filter(|l| l.starts_with("denied")).count() == 2).then_some(()).ok_or(format!("{out:?}"))
            },
        },
        Case {
            name: "stop the runner",
            tried: "SIGSTOP the runner, then sleep, with a 2 s timeout",
            expected: "ended by the operator within timeout + result grace (120 s), not left Running",
            spec: with_limits(
                python("import os, signal, time\nos.kill(os.getppid(), signal.SIGSTOP)\ntime.sleep(600)\n"),
                limits(2, None),
            ),
            check: |s| {
                finished_with(s, Phase::Failed)?;
                has_reason(s, "ResultOverdue")?;
                ended_within(s, 2 + 120 + 10)
            },
        },
        Case {
            name: "escaped memory hog",
            tried: "a grandchild calls setsid() and allocates 200 MiB under a 128Mi limit",
            expected: "OOMKilled: every descendant counts, whatever its session",
            spec: with_limits(python(ESCAPED_HOG), limits(30, Some("128Mi"))),
            check: |s| {
                finished_with(s, Phase::Failed)?;
                has_reason(s, "OOMKilled")
            },
        },
        Case {
            name: "escaped output",
            tried: "256 KiB of \\x01 (6 bytes each once escaped as JSON) with maxOutputBytes 262144",
            expected: "Succeeded, output cut until the status fits one object",
            spec: {
                let mut spec = python("import sys\nsys.stdout.write('\\x01' * 262144)\n");
                spec.limits.max_output_bytes = Some(262144);
                spec
            },
            check: |s| {
                finished_with(s, Phase::Succeeded)?;
                s.stdout_truncated.then_some(()).ok_or("output not flagged truncated".to_owned())
            },
        },
    ]
}

#[tokio::test]
#[ignore = "security suite: hack/test.sh runs it alone, with its table shown"]
async fn hostile_programs_stay_inside_and_leave_the_cluster_healthy() {
    let ns = TestNamespace::new("hostile").await;
    hostile_suite(&ns, StartMode::Cold).await;
}

/// The same programs, each in a warm sandbox of a pool: the fast path
/// (program over attach, result off the runner's stream) must hold
/// exactly what the cold one does.
#[tokio::test]
#[ignore = "security suite: hack/test.sh runs it alone, with its table shown"]
async fn hostile_programs_in_warm_sandboxes_stay_inside_too() {
    let ns = TestNamespace::new("hostile-warm").await;
    let cases = cases();
    let pools: Api<SandboxPool> = ns.api();
    let mut waiting = Vec::new();
    for language in [Language::Python, Language::Node, Language::Bash] {
        let of_language: Vec<&Case> = cases.iter().filter(|c| c.spec.language == Some(language)).collect();
        if of_language.is_empty() {
            continue;
        }
        // Big enough for every case of the language, each in a pod of its own.
        let memory = of_language.iter().map(|c| c.spec.memory()).max_by_key(|m| memory_mib(m)).unwrap_or("256Mi");
        let spec = SandboxPoolSpec {
            size: of_language.len() as u32,
            language: Some(language),
            limits: PoolLimits { memory: Some(memory.to_owned()), cpu: None },
            ..Default::default()
        };
        let name = language.as_str();
        pools.create(&PostParams::default(), &SandboxPool::new(name, spec)).await.unwrap();
        waiting.push((name, of_language.len() as u32));
    }
    for (name, size) in waiting {
        wait_pool_ready(&pools, name, size).await;
    }
    hostile_suite(&ns, StartMode::Warm).await;
}

async fn wait_pool_ready(pools: &Api<SandboxPool>, name: &str, size: u32) {
    let started = std::time::Instant::now();
    loop {
        let ready = pools.get(name).await.ok().and_then(|p| p.status).map_or(0, |s| s.ready);
        if ready >= size {
            return;
        }
        assert!(started.elapsed().as_secs() < 300, "pool {name}: {ready} of {size} ready after 300 s");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

fn memory_mib(quantity: &str) -> u64 {
    let (number, unit) = quantity.split_at(quantity.find(|c: char| !c.is_ascii_digit()).unwrap_or(quantity.len()));
    let n: u64 = number.parse().unwrap_or(0);
    match unit {
        "Gi" => n * 1024,
        _ => n,
    }
}

async fn hostile_suite(ns: &TestNamespace, mode: StartMode) {
    let api = ns.executions();
    let rss_before = sandrun_rss_mib("operator", "sandrun-operator");
    let cases = cases();
    for (i, case) in cases.iter().enumerate() {
        api.create(&PostParams::default(), &Execution::new(&format!("case-{i}"), case.spec.clone()))
            .await
            .unwrap_or_else(|e| panic!("create {}: {e}", case.name));
    }
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let done = ns.wait_finished(&format!("case-{i}")).await;
        let status = status_of(&done);
        let size = serde_json::to_vec(&done).map(|v| v.len()).unwrap_or(0);
        let verdict = (case.check)(&status)
            .and_then(|()| {
                // Every result has to fit one etcd object.
                (size < 1_500_000).then_some(()).ok_or(format!("Execution is {size} bytes"))
            })
            .and_then(|()| {
                (status.start_mode == Some(mode))
                    .then_some(())
                    .ok_or(format!("started {:?}, not {mode:?}", status.start_mode))
            });
        let observed = format!(
            "{:?}/{} exit={} {}ms {}B",
            status.phase,
            status.reason.as_deref().unwrap_or("-"),
            status.exit_code.map_or("-".to_owned(), |c| c.to_string()),
            status.duration_millis.unwrap_or(0),
            size
        );
        if let Err(why) = &verdict {
            failures.push(format!("{}: {why}\n  stdout: {:.600}", case.name, stdout(&status)));
        }
        rows.push(vec![
            case.name.to_owned(),
            case.tried.to_owned(),
            case.expected.to_owned(),
            observed,
            if verdict.is_ok() { "held" } else { "BROKEN" }.to_owned(),
        ]);
    }
    print_table(&["case", "tried", "expected", "observed", "result"], &rows);

    let healthy = cluster_still_healthy(ns).await;
    println!("after the suite: {healthy}");
    let rss_after = sandrun_rss_mib("operator", "sandrun-operator");
    println!("operator replicas' resident memory: {rss_before:?} MiB before, {rss_after:?} MiB after");
    assert!(rss_after.iter().all(|mib| *mib < 128), "operator memory grew: {rss_after:?} MiB");
    assert!(failures.is_empty(), "cases that broke out or broke something:\n{}", failures.join("\n"));
}

/// The node is Ready, sandrun's pods are Ready, and a fresh run works.
async fn cluster_still_healthy(ns: &TestNamespace) -> String {
    let ready = kubectl(&["get", "nodes", "-o", "jsonpath={.items[0].status.conditions[?(@.type==\"Ready\")].status}"]);
    assert_eq!(ready, "True", "the node is not Ready after the hostile suite");
    let pods = kubectl(&[
        "-n",
        "sandrun-system",
        "get",
        "pods",
        "-o",
        "jsonpath={range .items[*]}{.status.containerStatuses[0].ready} {end}",
    ]);
    assert!(pods.split_whitespace().all(|r| r == "true"), "sandrun pods not all ready: {pods}");
    let api: Api<Execution> = ns.executions();
    let started = std::time::Instant::now();
    api.create(&PostParams::default(), &Execution::new("after", python("print('still fine')"))).await.unwrap();
    let done = ns.wait_finished("after").await;
    let status = status_of(&done);
    assert_eq!(status.stdout.as_deref(), Some("still fine\n"), "{}: {status:?}", done.name_any());
    format!("node Ready, sandrun pods ready, a new run finished in {:.1} s", started.elapsed().as_secs_f64())
}
