//! The CLI's exit status: the program's own, or a fixed code per outcome.

use sandrun_api::{ExecutionView, State};

/// Bad usage, or the gateway could not be asked or refused (as clap does for usage).
pub const USAGE: u8 = 2;
/// As coreutils `timeout`.
pub const TIMED_OUT: u8 = 124;
/// As a shell reports a run ended by Ctrl-C (128 + SIGINT).
pub const CANCELLED: u8 = 130;
/// A failure without an exit code of its own (OOM kill, image error, ...).
pub const FAILED: u8 = 1;

/// What `sandrun run` exits with once the execution is final.
pub fn exit_code(view: &ExecutionView) -> u8 {
    match view.status {
        State::Succeeded => 0,
        State::Failed => match view.exit_code {
            Some(code) if (1..=255).contains(&code) => code as u8,
            _ => FAILED,
        },
        State::TimedOut => TIMED_OUT,
        State::Cancelled => CANCELLED,
        // No result yet: the caller did not get what it asked for.
        State::Queued | State::Running => USAGE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(status: State, exit_code: Option<i32>) -> ExecutionView {
        ExecutionView { exit_code, ..ExecutionView::new("run-x", status) }
    }

    #[test]
    fn outcomes_map_to_exit_codes() {
        let cases = [
            (State::Succeeded, Some(0), 0),
            (State::Succeeded, None, 0),
            (State::Failed, Some(3), 3),
            (State::Failed, Some(255), 255),
            (State::Failed, Some(137), 137),
            (State::Failed, None, 1),
            // Out of a process's range, or a failure that claims success: still a failure.
            (State::Failed, Some(0), 1),
            (State::Failed, Some(-9), 1),
            (State::Failed, Some(256), 1),
            (State::TimedOut, None, 124),
            (State::TimedOut, Some(137), 124),
            (State::Cancelled, None, 130),
            (State::Queued, None, 2),
            (State::Running, None, 2),
        ];
        for (status, code, want) in cases {
            assert_eq!(exit_code(&view(status, code)), want, "{status:?} with exit code {code:?}");
        }
    }
}
