//! What people read: progress lines, summaries, the `ls` table. Pure.

use std::fmt::Write as _;

use sandrun_api::{ExecutionView, State};

/// The reason of an ordinary non-zero exit; its exit code says it all.
const NON_ZERO_EXIT: &str = "NonZeroExitCode";

pub fn state_name(state: State) -> &'static str {
    match state {
        State::Queued => "queued",
        State::Running => "running",
        State::Succeeded => "succeeded",
        State::Failed => "failed",
        State::TimedOut => "timed_out",
        State::Cancelled => "cancelled",
    }
}

pub fn progress_line(view: &ExecutionView) -> String {
    format!("sandrun: {} {}", view.id, state_name(view.status))
}

/// Lines for stderr after the program's output: why it ended, when that is
/// not just its exit code, and whether output was cut.
pub fn final_notes(view: &ExecutionView) -> Vec<String> {
    let mut notes = Vec::new();
    let plain = matches!(view.status, State::Succeeded)
        || (view.status == State::Failed && view.reason.as_deref() == Some(NON_ZERO_EXIT));
    if !plain {
        let mut line = format!("sandrun: {} {}", view.id, state_name(view.status));
        for part in [&view.reason, &view.message].into_iter().flatten() {
            let _ = write!(line, ": {part}");
        }
        notes.push(line);
    }
    for (stream, cut) in [("stdout", view.stdout_truncated), ("stderr", view.stderr_truncated)] {
        if cut {
            notes.push(format!("sandrun: {} {stream} was cut at its output limit (see --max-output)", view.id));
        }
    }
    notes
}

pub fn duration(millis: i64) -> String {
    if millis < 1000 {
        format!("{millis}ms")
    } else if millis < 60_000 {
        format!("{:.1}s", millis as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", millis / 60_000, (millis % 60_000) / 1000)
    }
}

fn exit_text(view: &ExecutionView) -> String {
    view.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "-".to_owned())
}

/// `sandrun get`: the facts, then the output.
pub fn summary(view: &ExecutionView) -> String {
    let mut out = String::new();
    let mut field = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            let _ = writeln!(out, "{:<11}{value}", format!("{name}:"));
        }
    };
    field("id", Some(view.id.clone()));
    field("status", Some(state_name(view.status).to_owned()));
    field("language", view.language.clone());
    field("exit code", view.exit_code.map(|c| c.to_string()));
    field("reason", view.reason.clone());
    field("message", view.message.clone());
    field("duration", view.duration_millis.map(duration));
    field("memory", view.peak_memory_bytes.map(|b| format!("{} KiB peak", b / 1024)));
    field("created", view.created_at.clone());
    field("started", view.started_at.clone());
    field("completed", view.completed_at.clone());
    for (name, text, cut) in
        [("stdout", &view.stdout, view.stdout_truncated), ("stderr", &view.stderr, view.stderr_truncated)]
    {
        let Some(text) = text.as_deref().filter(|t| !t.is_empty()) else { continue };
        let _ = writeln!(out, "--- {name}{}", if cut { " (cut at the limit)" } else { "" });
        out.push_str(text);
        if !text.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// `sandrun ls`: one aligned row per execution under a header.
pub fn table(items: &[ExecutionView]) -> String {
    let header = ["ID", "STATUS", "LANGUAGE", "EXIT", "DURATION", "CREATED"].map(str::to_owned);
    let rows: Vec<[String; 6]> = items
        .iter()
        .map(|v| {
            [
                v.id.clone(),
                state_name(v.status).to_owned(),
                v.language.clone().unwrap_or_else(|| "-".to_owned()),
                exit_text(v),
                v.duration_millis.map(duration).unwrap_or_else(|| "-".to_owned()),
                v.created_at.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: &str, status: State) -> ExecutionView {
        ExecutionView { language: Some("python".into()), ..ExecutionView::new(id, status) }
    }

    #[test]
    fn state_names_match_the_wire() {
        for state in [State::Queued, State::Running, State::Succeeded, State::Failed, State::TimedOut, State::Cancelled]
        {
            assert_eq!(State::parse(state_name(state)), Some(state));
        }
    }

    #[test]
    fn durations_read_well() {
        for (millis, want) in [(0, "0ms"), (82, "82ms"), (1500, "1.5s"), (59_999, "60.0s"), (61_000, "1m01s")] {
            assert_eq!(duration(millis), want);
        }
    }

    #[test]
    fn notes_explain_only_what_the_exit_code_does_not() {
        let mut ok = view("run-a", State::Succeeded);
        ok.exit_code = Some(0);
        assert!(final_notes(&ok).is_empty());

        let mut exit3 = view("run-b", State::Failed);
        (exit3.exit_code, exit3.reason) = (Some(3), Some(NON_ZERO_EXIT.into()));
        assert!(final_notes(&exit3).is_empty());

        let mut oom = view("run-c", State::Failed);
        (oom.reason, oom.message, oom.stdout_truncated) = (Some("OOMKilled".into()), Some("over 64Mi".into()), true);
        assert_eq!(
            final_notes(&oom),
            [
                "sandrun: run-c failed: OOMKilled: over 64Mi",
                "sandrun: run-c stdout was cut at its output limit (see --max-output)"
            ]
        );
        assert_eq!(final_notes(&view("run-d", State::TimedOut)), ["sandrun: run-d timed_out"]);
    }

    #[test]
    fn the_table_aligns_columns() {
        let mut a = view("run-abc12", State::Succeeded);
        (a.exit_code, a.duration_millis, a.created_at) = (Some(0), Some(82), Some("2026-11-25T19:00:00Z".into()));
        let mut b = view("run-x", State::Running);
        b.language = None;
        assert_eq!(
            table(&[a, b]),
            "ID         STATUS     LANGUAGE  EXIT  DURATION  CREATED\n\
             run-abc12  succeeded  python    0     82ms      2026-11-25T19:00:00Z\n\
             run-x      running    -         -     -         -\n"
        );
    }

    #[test]
    fn the_summary_shows_facts_then_output() {
        let mut v = view("run-a", State::Failed);
        (v.exit_code, v.stdout, v.stderr) = (Some(3), Some("out".into()), Some(String::new()));
        assert_eq!(
            summary(&v),
            "id:        run-a\nstatus:    failed\nlanguage:  python\nexit code: 3\n--- stdout\nout\n"
        );
    }
}
