//! The one line the runner prints and the operator parses.

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
}
