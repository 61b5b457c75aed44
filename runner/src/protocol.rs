//! The lines the runner and the operator exchange: the result frame the
//! runner prints, and, for a warm runner, the program the operator writes to
//! its stdin and the line the runner prints when it takes it.

use std::io::BufRead;

use serde::{Deserialize, Serialize};

/// Starts the result line. Versioned so the operator can refuse a frame from
/// a runner it does not understand instead of misreading it.
pub const FRAME_PREFIX: &str = "SANDRUN-RESULT-V1 ";

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunResult {
    /// The program's exit code, when it exited by itself.
    pub exit_code: Option<i32>,
    /// The signal that ended the program, when one did.
    pub signal: Option<i32>,
    /// The runner killed the program at its deadline.
    pub timed_out: bool,
    pub duration_millis: u64,
    /// Peak resident set size of the program (largest descendant), in bytes.
    pub peak_memory_bytes: Option<u64>,
    /// Whether the memory cgroup recorded an OOM kill during the run; `None`
    /// when the sandbox exposes no memory cgroup to read.
    pub oom_killed: Option<bool>,
    pub stdout: String,
    pub stdout_truncated: bool,
    /// Bytes the program wrote to stdout in all, kept or not.
    pub stdout_bytes: u64,
    pub stderr: String,
    pub stderr_truncated: bool,
    pub stderr_bytes: u64,
    /// The runner's own failure (the program could not be started, ...).
    pub error: Option<String>,
    /// The runner killed the program for running more processes at once
    /// than it may (a fork bomb).
    #[serde(default)]
    pub process_limit_exceeded: bool,
}

impl RunResult {
    pub fn to_frame(&self) -> String {
        // Serializing plain data into a String cannot fail; fall back to a
        // frame that still parses rather than panicking inside the sandbox.
        let json = serde_json::to_string(self)
            .unwrap_or_else(|_| r#"{"error":"runner could not encode its result"}"#.to_owned());
        format!("{FRAME_PREFIX}{json}\n")
    }
}

/// The kubelet keeps at most this much of a container's termination message.
pub const TERMINATION_MESSAGE_LIMIT: usize = 4096;

/// Left in the termination message when the frame would not fit: not a
/// frame, so the operator reads the log instead.
pub const FRAME_IN_LOG: &str = "the result is larger than a termination message; it is in the container log\n";

/// What the runner leaves in its termination message: the whole frame when
/// the kubelet keeps it whole, else a pointer to the log. Written either way,
/// so nothing the program left in that file can pass for a result.
pub fn termination_message(frame: &str) -> &str {
    if frame.len() <= TERMINATION_MESSAGE_LIMIT {
        frame
    } else {
        FRAME_IN_LOG
    }
}

/// Finds the last result frame in a container log.
pub fn parse_frame(log: &str) -> Option<Result<RunResult, serde_json::Error>> {
    log.lines().rev().find_map(|line| line.strip_prefix(FRAME_PREFIX)).map(serde_json::from_str)
}

/// Starts the one line the operator writes to a warm runner's stdin. JSON
/// escapes newlines, so a whole program is exactly one line.
pub const PROGRAM_PREFIX: &str = "SANDRUN-PROGRAM-V1 ";
/// Starts the line a warm runner prints once it holds its program, before it
/// starts it.
pub const ACCEPTED_PREFIX: &str = "SANDRUN-ACCEPTED-V1 ";
/// Starts the termination message of a warm runner that read no program:
/// nothing ran there, so the program can be run elsewhere.
pub const UNDELIVERED_PREFIX: &str = "SANDRUN-UNDELIVERED ";
/// Longest reason kept in an undelivered message: a JSON error can quote
/// the payload, and the message must fit a termination message.
const UNDELIVERED_REASON_LIMIT: usize = 512;

/// One program for a warm runner. Pod-level limits (processes, file size,
/// workdir) are the runner's flags; everything per run travels here.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The Execution this program belongs to (uid); echoed in the acceptance line.
    pub execution_uid: String,
    pub command: Vec<String>,
    /// Set for the program on top of the container's environment (payload wins).
    pub env: Vec<EnvPair>,
    /// Written below the workdir before the program starts.
    pub files: Vec<DeliveredFile>,
    /// The program's stdin; `None` reads as empty (`/dev/null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    pub timeout_ms: u64,
    /// Cap on captured bytes per stream.
    pub max_output_bytes: usize,
    /// Kill the program past this much memory (0: off).
    pub memory_limit_bytes: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct EnvPair {
    pub name: String,
    pub value: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct DeliveredFile {
    /// Relative to the workdir, `/`-separated, without empty, `.` or `..`
    /// segments; the runner refuses to start the program otherwise.
    pub path: String,
    pub content: String,
}

impl Delivery {
    /// The line to write to a warm runner's stdin, newline included.
    pub fn to_line(&self) -> String {
        // Serializing plain data cannot fail; should it, the runner refuses
        // the line as undelivered rather than the operator panicking.
        let json = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned());
        format!("{PROGRAM_PREFIX}{json}\n")
    }
}

/// Why a warm runner has no program: it runs nothing and says so.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("reading stdin: {0}")]
    Read(#[source] std::io::Error),
    #[error("stdin closed after {received} bytes, before a whole line")]
    Incomplete { received: usize },
    #[error("no end of line within {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the line is not UTF-8")]
    NotUtf8,
    #[error("the line does not start with {PROGRAM_PREFIX:?}")]
    MissingPrefix,
    #[error("the program is not valid JSON: {0}")]
    BadJson(#[source] serde_json::Error),
}

/// Reads up to and including the first newline, taking at most `limit`
/// bytes in all, so a sender that never ends its line cannot fill memory.
pub fn read_program_line(reader: impl BufRead, limit: usize) -> Result<String, DeliveryError> {
    let mut line = Vec::new();
    reader.take(limit as u64).read_until(b'\n', &mut line).map_err(DeliveryError::Read)?;
    if line.last() != Some(&b'\n') {
        return Err(if line.len() >= limit {
            DeliveryError::TooLarge { limit }
        } else {
            DeliveryError::Incomplete { received: line.len() }
        });
    }
    String::from_utf8(line).map_err(|_| DeliveryError::NotUtf8)
}

/// Parses a program line, with or without its newline.
pub fn parse_delivery(line: &str) -> Result<Delivery, DeliveryError> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let json = line.strip_prefix(PROGRAM_PREFIX).ok_or(DeliveryError::MissingPrefix)?;
    serde_json::from_str(json).map_err(DeliveryError::BadJson)
}

/// The line a warm runner prints once it holds the program of `execution_uid`.
pub fn accepted_line(execution_uid: &str) -> String {
    format!("{ACCEPTED_PREFIX}{execution_uid}\n")
}

/// The termination message of a warm runner that read no program: one line,
/// short enough to survive the kubelet's cut.
pub fn undelivered_message(reason: &str) -> String {
    let mut reason: String = reason.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if reason.len() > UNDELIVERED_REASON_LIMIT {
        let mut end = UNDELIVERED_REASON_LIMIT;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    format!("{UNDELIVERED_PREFIX}{reason}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trips_through_a_log_with_noise() {
        let result = RunResult {
            exit_code: Some(3),
            stdout: "line one\nline \"two\"\n".into(),
            stderr: "\u{fffd}oops".into(),
            stdout_bytes: 20,
            ..Default::default()
        };
        let log = format!("some warning from the runtime\n{}", result.to_frame());
        let parsed = parse_frame(&log).expect("frame present").expect("frame parses");
        assert_eq!(parsed, result);
    }

    #[test]
    fn missing_frame_is_none_and_garbage_is_an_error() {
        assert!(parse_frame("no frame here\n").is_none());
        assert!(parse_frame("SANDRUN-RESULT-V1 {not json\n").expect("prefix found").is_err());
    }

    #[test]
    fn a_frame_the_kubelet_would_cut_is_left_to_the_log() {
        let small = RunResult { stdout: "hi\n".into(), ..Default::default() }.to_frame();
        assert_eq!(termination_message(&small), small);
        let big = RunResult { stdout: "x".repeat(TERMINATION_MESSAGE_LIMIT), ..Default::default() }.to_frame();
        assert_eq!(termination_message(&big), FRAME_IN_LOG);
        assert!(parse_frame(FRAME_IN_LOG).is_none());
        let exact = format!("{FRAME_PREFIX}{}\n", " ".repeat(TERMINATION_MESSAGE_LIMIT - FRAME_PREFIX.len() - 1));
        assert_eq!(termination_message(&exact).len(), TERMINATION_MESSAGE_LIMIT);
    }

    #[test]
    fn last_frame_wins() {
        let first = RunResult { exit_code: Some(1), ..Default::default() }.to_frame();
        let second = RunResult { exit_code: Some(2), ..Default::default() }.to_frame();
        let parsed = parse_frame(&format!("{first}{second}")).and_then(Result::ok);
        assert_eq!(parsed.and_then(|r| r.exit_code), Some(2));
    }

    fn delivery() -> Delivery {
        Delivery {
            execution_uid: "6f1c0e9a-uid".into(),
            command: vec!["python3".into(), "main.py".into()],
            env: vec![EnvPair { name: "GREETING".into(), value: "a\nb".into() }],
            files: vec![DeliveredFile { path: "pkg/main.py".into(), content: "print('hi')\n\u{7f}\"\\".into() }],
            stdin: Some("line one\nline two\r\n".into()),
            timeout_ms: 2000,
            max_output_bytes: 100,
            memory_limit_bytes: 64 << 20,
        }
    }

    #[test]
    fn a_delivery_is_one_line_and_round_trips() {
        let line = delivery().to_line();
        assert!(line.starts_with(PROGRAM_PREFIX) && line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1, "{line:?}");
        let read = read_program_line(format!("{line}and then more").as_bytes(), 1 << 20).expect("a whole line");
        assert_eq!(read, line);
        assert_eq!(parse_delivery(&read).expect("parses"), delivery());
        assert_eq!(parse_delivery(line.trim_end()).expect("parses without its newline"), delivery());
    }

    #[test]
    fn a_delivery_without_stdin_leaves_the_field_out() {
        let line = Delivery { stdin: None, ..delivery() }.to_line();
        assert!(!line.contains("\"stdin\""), "{line}");
        assert_eq!(parse_delivery(&line).expect("parses").stdin, None);
    }

    #[test]
    fn table_of_lines_that_are_not_programs() {
        let cases = [
            ("", "missing prefix"),
            ("hello\n", "missing prefix"),
            ("SANDRUN-RESULT-V1 {}\n", "missing prefix"),
            ("SANDRUN-PROGRAM-V1 {not json\n", "bad json"),
            // Every field but stdin is required: a half program is no program.
            ("SANDRUN-PROGRAM-V1 {\"executionUid\":\"u\"}\n", "bad json"),
        ];
        for (line, want) in cases {
            let got = match parse_delivery(line) {
                Err(DeliveryError::MissingPrefix) => "missing prefix",
                Err(DeliveryError::BadJson(_)) => "bad json",
                other => panic!("for {line:?}: {other:?}"),
            };
            assert_eq!(got, want, "for {line:?}");
        }
    }

    #[test]
    fn reading_a_program_line_is_bounded() {
        let read = |input: &[u8], limit| read_program_line(input, limit);
        assert_eq!(read(b"0123456789\n", 11).expect("fits exactly"), "0123456789\n");
        assert!(matches!(read(b"0123456789\n", 10), Err(DeliveryError::TooLarge { limit: 10 })));
        assert!(matches!(read(b"endless", 4), Err(DeliveryError::TooLarge { limit: 4 })));
        assert!(matches!(read(b"", 10), Err(DeliveryError::Incomplete { received: 0 })));
        assert!(matches!(read(b"half a line", 100), Err(DeliveryError::Incomplete { received: 11 })));
        assert!(matches!(read(b"\xff\xfe\n", 100), Err(DeliveryError::NotUtf8)));
    }

    #[test]
    fn acceptance_and_undelivered_lines() {
        assert_eq!(accepted_line("uid-1"), "SANDRUN-ACCEPTED-V1 uid-1\n");
        assert_eq!(undelivered_message("no\nprogram"), "SANDRUN-UNDELIVERED no program\n");
        let long = undelivered_message(&"é".repeat(TERMINATION_MESSAGE_LIMIT));
        assert!(long.len() <= UNDELIVERED_PREFIX.len() + UNDELIVERED_REASON_LIMIT + 1, "{}", long.len());
        assert_eq!(long.matches('\n').count(), 1);
    }
}
