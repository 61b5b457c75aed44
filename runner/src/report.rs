//! How a finished run is reported: the frame in the termination message and
//! on stdout, and the runner's exit code.

use std::io::Write;
use std::path::Path;

use crate::run::Finished;
use crate::termination_message;

/// The frame could not be printed to stdout (the container log).
pub const EXIT_NO_LOG: u8 = 70;
/// The frame could not be left in the termination message.
pub const EXIT_NO_TERMINATION_MESSAGE: u8 = 71;
/// Processes of the program outlived SIGKILL: they could still overwrite
/// the termination message.
pub const EXIT_SURVIVORS: u8 = 72;
/// Warm mode: no program could be read from stdin, so nothing ran.
pub const EXIT_UNDELIVERED: u8 = 75;

/// When the frame goes to stdout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FrameOnStdout {
    /// Cold runs: the operator reads the log only after the container has
    /// exited, and trusts it only if the exit code was 0.
    Always,
    /// Warm runs: the operator reads stdout over the attach stream before
    /// it can know the exit code. So a frame is printed only when the exit
    /// will be 0 (contained, termination message written); a frame seen
    /// there is then as good as one from a container that exited 0.
    OnlyWhenTrusted,
}

/// Leaves the frame in `result_file` and on `stdout`; returns the exit code.
///
/// The operator trusts a frame only from a container that exited 0, so 0
/// must mean: the program's processes are all gone and the frame is written
/// everywhere it will be read. A termination message left unwritten could
/// still hold whatever the program wrote there.
pub fn report(finished: &Finished, result_file: Option<&Path>, stdout: &mut impl Write, when: FrameOnStdout) -> u8 {
    let frame = finished.result.to_frame();
    let mut code = 0;
    let mut message_written = true;
    if let Some(path) = result_file {
        if let Err(e) = std::fs::write(path, termination_message(&frame)) {
            eprintln!("sandrun-runner: writing {}: {e}", path.display());
            message_written = false;
            code = EXIT_NO_TERMINATION_MESSAGE;
        }
    }
    let print = match when {
        FrameOnStdout::Always => true,
        FrameOnStdout::OnlyWhenTrusted => finished.contained && message_written,
    };
    if print && stdout.write_all(frame.as_bytes()).and_then(|()| stdout.flush()).is_err() {
        return EXIT_NO_LOG;
    }
    if !finished.contained {
        return EXIT_SURVIVORS;
    }
    // The program's own exit code lives in the frame; the container exits 0
    // so a non-zero program does not look like a runner fault.
    code
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::RunResult;

    #[test]
    fn table_of_endings() {
        let dir = std::env::temp_dir().join(format!("sandrun-report-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let writable = dir.join("termination-log");
        let unwritable = dir.join("no/such/dir/termination-log");
        let result = RunResult { exit_code: Some(3), ..Default::default() };
        let frame = result.to_frame();
        use FrameOnStdout::{Always, OnlyWhenTrusted};
        // (contained, result file, when) -> (printed, exit code)
        let cases = [
            (true, Some(&writable), Always, true, 0),
            (true, None, Always, true, 0),
            (false, Some(&writable), Always, true, EXIT_SURVIVORS),
            (true, Some(&unwritable), Always, true, EXIT_NO_TERMINATION_MESSAGE),
            (false, Some(&unwritable), Always, true, EXIT_SURVIVORS),
            (true, Some(&writable), OnlyWhenTrusted, true, 0),
            (true, None, OnlyWhenTrusted, true, 0),
            (false, Some(&writable), OnlyWhenTrusted, false, EXIT_SURVIVORS),
            (true, Some(&unwritable), OnlyWhenTrusted, false, EXIT_NO_TERMINATION_MESSAGE),
            (false, Some(&unwritable), OnlyWhenTrusted, false, EXIT_SURVIVORS),
        ];
        for (contained, file, when, printed, want) in cases {
            let _ = std::fs::remove_file(&writable);
            let finished = Finished { result: result.clone(), contained };
            let mut stdout = Vec::new();
            let code = report(&finished, file.map(|p| p.as_path()), &mut stdout, when);
            let case = format!("contained {contained}, file {file:?}, {when:?}");
            assert_eq!(code, want, "{case}");
            assert_eq!(String::from_utf8(stdout).unwrap(), if printed { frame.as_str() } else { "" }, "{case}");
            if file == Some(&writable) {
                assert_eq!(std::fs::read_to_string(&writable).unwrap(), frame, "{case}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stdout_that_fails_is_its_own_exit_code() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let finished = Finished { result: RunResult::default(), contained: true };
        assert_eq!(report(&finished, None, &mut Closed, FrameOnStdout::OnlyWhenTrusted), EXIT_NO_LOG);
        assert_eq!(report(&finished, None, &mut Closed, FrameOnStdout::Always), EXIT_NO_LOG);
    }
}
