//! A user-space memory limit for the program's whole session.
//!
//! Under gVisor the memory cgroup limits the sandbox as a whole (the Sentry
//! included), so a program that overruns it takes the runner down with it and
//! no result survives. The operator therefore gives the container headroom
//! above the user's limit, and the runner enforces the user's limit itself:
//! it samples the resident memory of every process in the program's session
//! and kills the session when the sum passes the limit.

use std::fs;

/// Resident bytes of all processes in session `sid`, summed. Shared pages
/// count once per process, which errs on the side of the limit.
pub fn session_rss_bytes(sid: u32) -> u64 {
    let page = page_size();
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|e| fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| parse_stat(&stat))
        .filter(|(session, _)| *session == sid)
        .map(|(_, rss_pages)| rss_pages * page)
        .sum()
}

/// (session id, rss in pages) from `/proc/PID/stat`. The command name may
/// hold spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state ppid pgrp session ... with rss the 22nd field.
    let session = fields.get(3)?.parse().ok()?;
    let rss = fields.get(21)?.parse().ok()?;
    Some((session, rss))
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_a_hostile_name() {
        let stat = "42 (evil) 1 2 3) S 1 42 42 0 -1 4194560 100 0 0 0 1 0 0 0 20 0 1 0 12345 10000000 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        assert_eq!(parse_stat(stat), Some((42, 2560)));
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(parse_stat("no parens here"), None);
        assert_eq!(parse_stat("1 (x) S 1"), None);
    }

    #[test]
    fn our_own_session_has_resident_memory() {
        // SAFETY: getsid(0) only reads our session id.
        let sid = unsafe { libc::getsid(0) } as u32;
        assert!(session_rss_bytes(sid) > 0);
    }
}
