//! Text in server-side apply bodies. The API server reads them as YAML,
//! which refuses a few characters that JSON carries unescaped: DEL, the C1
//! controls (NEL included, in practice) and the non-characters U+FFFE and
//! U+FFFF. One of them in a program's output or source would otherwise make
//! its status or its ConfigMap unwritable.

pub fn unsafe_for_apply(c: char) -> bool {
    matches!(c, '\u{7f}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}')
}

/// Output made writable: each refused character becomes U+FFFD, as bytes
/// that are not UTF-8 already do.
pub fn apply_safe(text: &str) -> String {
    if text.contains(unsafe_for_apply) {
        text.replace(unsafe_for_apply, "\u{fffd}")
    } else {
        text.to_owned()
    }
}

/// The longest start of `text` within `max` bytes that ends on a character.
pub fn truncate_at_char(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_fall_between_characters() {
        let cases = [("short", 10, "short"), ("exact", 5, "exact"), ("ab\u{e9}", 3, "ab"), ("\u{1f980}x", 2, "")];
        for (text, max, want) in cases {
            assert_eq!(truncate_at_char(text, max), want, "{text:?} to {max}");
        }
    }

    #[test]
    fn output_becomes_text_that_server_side_apply_accepts() {
        let cases = [
            ("plain\ttext\n", "plain\ttext\n"),
            ("ansi \u{1b}[31mred\u{1b}[0m", "ansi \u{1b}[31mred\u{1b}[0m"),
            ("del \u{7f} c1 \u{80}\u{85}\u{9f}", "del \u{fffd} c1 \u{fffd}\u{fffd}\u{fffd}"),
            ("nonchars \u{fffe}\u{ffff} emoji \u{1f980}", "nonchars \u{fffd}\u{fffd} emoji \u{1f980}"),
        ];
        for (raw, want) in cases {
            assert_eq!(apply_safe(raw), want, "{raw:?}");
        }
    }
}
