//! Reads a stream to its end, keeping at most its cap.

use std::io::Read;
use std::sync::{Arc, Mutex};

/// What one stream produced so far. Shared with the reader thread so the
/// runner can report what it has even if a stray grandchild keeps the pipe
/// open after the program exits.
#[derive(Default, Debug)]
pub struct Captured {
    pub kept: Vec<u8>,
    pub total: u64,
    /// Most bytes kept. Set before the program starts (a reader started
    /// ahead learns it with the program).
    pub cap: usize,
}

pub type SharedCapture = Arc<Mutex<Captured>>;

/// Drains `reader` until EOF: the program must never block on a full pipe,
/// so bytes past the cap are read and counted but dropped.
pub fn drain(mut reader: impl Read, into: &SharedCapture) {
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let Ok(mut captured) = into.lock() else {
            return;
        };
        let room = captured.cap.saturating_sub(captured.kept.len());
        captured.kept.extend_from_slice(&buf[..n.min(room)]);
        captured.total += n as u64;
    }
}

/// Turns captured bytes into text that is valid UTF-8 and at most `cap`
/// bytes long. Returns the text and whether anything was cut.
pub fn to_text(captured: &Captured, cap: usize) -> (String, bool) {
    let mut text = String::from_utf8_lossy(&captured.kept).into_owned();
    let mut truncated = captured.total > captured.kept.len() as u64;
    // Replacement characters can make lossy text longer than the raw bytes.
    if text.len() > cap {
        let mut end = cap;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        truncated = true;
    }
    (text, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(input: &[u8], cap: usize) -> Captured {
        let shared = SharedCapture::new(Mutex::new(Captured { cap, ..Default::default() }));
        drain(input, &shared);
        Arc::try_unwrap(shared).unwrap().into_inner().unwrap()
    }

    #[test]
    fn keeps_everything_under_the_cap() {
        let c = capture(b"hello\n", 100);
        assert_eq!(to_text(&c, 100), ("hello\n".to_owned(), false));
        assert_eq!(c.total, 6);
    }

    #[test]
    fn cuts_at_the_cap_and_counts_the_rest() {
        let input = vec![b'x'; 200_000];
        let c = capture(&input, 1000);
        assert_eq!(c.kept.len(), 1000);
        assert_eq!(c.total, 200_000);
        let (text, truncated) = to_text(&c, 1000);
        assert_eq!(text.len(), 1000);
        assert!(truncated);
    }

    #[test]
    fn invalid_utf8_becomes_replacement_and_stays_within_the_cap() {
        let c = capture(&[0xff; 10], 10);
        let (text, truncated) = to_text(&c, 10);
        assert!(text.len() <= 10);
        assert!(text.chars().all(|ch| ch == '\u{fffd}'));
        assert!(truncated, "lossy expansion past the cap is flagged");
    }

    #[test]
    fn zero_cap_keeps_nothing() {
        let c = capture(b"abc", 0);
        assert_eq!(to_text(&c, 0), (String::new(), true));
    }
}
