//! The program's processes, found by ancestry rather than by session or
//! process group: a program can leave both (`setsid()`, `setpgid()`), but it
//! cannot leave the runner's tree. The runner is a child subreaper (and pid 1
//! of its container), so an orphaned grandchild is re-parented to it and
//! stays a descendant.
//!
//! Under gVisor the memory cgroup limits the sandbox as a whole (the Sentry
//! included), so a program that overruns it takes the runner down with it and
//! no result survives. The operator therefore gives the container headroom
//! above the user's limit, and the runner enforces the user's limit itself by
//! summing the resident memory of every descendant.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::time::{Duration, Instant};

/// One process as `/proc/PID/stat` describes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub rss_pages: u64,
    pub threads: u64,
    /// Exited but not yet reaped: holds no memory and cannot be killed.
    pub zombie: bool,
}

/// Every live process on this host (in this pid namespace).
pub fn snapshot() -> Vec<Proc> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| parse_stat(pid, &fs::read_to_string(format!("/proc/{pid}/stat")).ok()?))
        .collect()
}

/// The descendants of `root` in `procs`, zombies included.
pub fn descendants(root: u32, procs: &[Proc]) -> Vec<Proc> {
    let mut children: HashMap<u32, Vec<&Proc>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p);
    }
    let (mut found, mut seen, mut stack) = (Vec::new(), HashSet::from([root]), vec![root]);
    while let Some(pid) = stack.pop() {
        for child in children.get(&pid).into_iter().flatten() {
            if seen.insert(child.pid) {
                stack.push(child.pid);
                found.push(**child);
            }
        }
    }
    found
}

/// What the program's processes hold, and how many tasks they take as
/// RLIMIT_NPROC counts them: every thread, and every zombie not yet reaped
/// (a fork bomb leaves many).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Usage {
    pub rss_bytes: u64,
    pub tasks: u64,
}

pub fn usage(root: u32) -> Usage {
    let page = page_size();
    let all = descendants(root, &snapshot());
    Usage {
        rss_bytes: all.iter().filter(|p| !p.zombie).map(|p| p.rss_pages * page).sum(),
        tasks: all.iter().map(|p| p.threads.max(1)).sum(),
    }
}

/// The resident memory of one process (zero if it is gone): one file read,
/// where [`usage`] reads every process's.
pub fn resident_bytes(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| parse_stat(pid, &stat))
        .map_or(0, |p| p.rss_pages * page_size())
}

/// SIGKILLs every descendant of `root` and reaps them, until none is left or
/// `within` has passed. Processes forked between two passes (a fork bomb)
/// are caught by the next pass; each pass only kills, so the tree shrinks.
/// Returns whether the tree is empty. `on_reaped` sees every reaped pid.
pub fn kill_all(root: u32, within: Duration, mut on_reaped: impl FnMut(u32, i32)) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let live: Vec<Proc> = descendants(root, &snapshot()).into_iter().filter(|p| !p.zombie).collect();
        for p in &live {
            // SAFETY: plain syscall; a pid that just exited yields ESRCH.
            unsafe {
                libc::kill(p.pid as libc::pid_t, libc::SIGKILL);
            }
        }
        reap(&mut on_reaped);
        if live.is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Reaps every exited child without blocking: the program's main process
/// and any orphan re-parented to the runner.
pub fn reap(on_reaped: &mut impl FnMut(u32, i32)) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only into `status`.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        on_reaped(pid as u32, status);
    }
}

/// Parses `/proc/PID/stat`. The command name may hold spaces and
/// parentheses, so fields are counted after the last `)`.
pub fn parse_stat(pid: u32, stat: &str) -> Option<Proc> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state ppid pgrp ..., num_threads the 18th, rss the 22nd.
    let zombie = matches!(*fields.first()?, "Z" | "X");
    let ppid = fields.get(1)?.parse().ok()?;
    let threads = fields.get(17)?.parse().ok()?;
    let rss_pages = fields.get(21)?.parse().ok()?;
    Some(Proc { pid, ppid, rss_pages, threads, zombie })
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

    fn p(pid: u32, ppid: u32, rss_pages: u64) -> Proc {
        Proc { pid, ppid, rss_pages, threads: 1, zombie: false }
    }

    #[test]
    fn parses_a_stat_line_with_a_hostile_name() {
        let stat = "42 (evil) 1 2 3) S 7 42 42 0 -1 4194560 100 0 0 0 1 0 0 0 20 0 1 0 12345 10000000 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        assert_eq!(parse_stat(42, stat), Some(p(42, 7, 2560)));
        let threaded = stat.replacen(" 20 0 1 0 12345", " 20 0 9 0 12345", 1);
        assert_eq!(parse_stat(42, &threaded).map(|p| p.threads), Some(9));
        let zombie = stat.replacen(") S ", ") Z ", 1);
        assert!(parse_stat(42, &zombie).unwrap().zombie);
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(parse_stat(1, "no parens here"), None);
        assert_eq!(parse_stat(1, "1 (x) S 1"), None);
    }

    #[test]
    fn descendants_follow_ancestry_not_sessions() {
        // 10 is the runner; 11 the program; 12 a grandchild that called
        // setsid(); 13 an orphan re-parented to the runner; 14 a zombie;
        // 20 and 21 strangers.
        let procs = [p(10, 1, 5), p(11, 10, 1), p(12, 11, 2), p(13, 10, 3), p(20, 1, 100), p(21, 20, 100)];
        let mut zombie = p(14, 11, 0);
        zombie.zombie = true;
        let mut all = procs.to_vec();
        all.push(zombie);
        let mut found: Vec<u32> = descendants(10, &all).iter().map(|p| p.pid).collect();
        found.sort();
        assert_eq!(found, [11, 12, 13, 14]);
    }

    #[test]
    fn a_ppid_cycle_does_not_loop() {
        let procs = [p(2, 3, 0), p(3, 2, 0)];
        assert_eq!(descendants(2, &procs).len(), 1);
    }

    #[test]
    fn our_own_process_is_in_the_snapshot() {
        let me = std::process::id();
        assert!(snapshot().iter().any(|p| p.pid == me && p.rss_pages > 0));
    }
}
