//! How much memory the program uses, for the runner's own memory limit.
//!
//! Summing the resident size of every process counts a page shared by a
//! fork once per process: eight children forked from a 100 MiB parent sum to
//! 900 MiB while the sandbox holds 150 MiB (measured under gVisor, whose
//! `Pss` in smaps equals `Rss` and so does not help). So when the runner is
//! pid 1 of its container, whose memory cgroup then holds only it and the
//! program, the cgroup's own count is used: each page once, and nothing the
//! program can leave (it cannot write to cgroupfs). Elsewhere (the runner's
//! own tests on a host) the resident sum is all there is.

use std::fs;

const V1_STAT: &str = "/sys/fs/cgroup/memory/memory.stat";
const V1_USAGE: &str = "/sys/fs/cgroup/memory/memory.usage_in_bytes";
const V2_STAT: &str = "/sys/fs/cgroup/memory.stat";
const V2_USAGE: &str = "/sys/fs/cgroup/memory.current";

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source {
    /// The container's memory cgroup, less what it held before the program
    /// started (the runner itself).
    Cgroup { counter: Counter, baseline: u64 },
    /// The resident size of every descendant, summed.
    ResidentSum,
}

impl Source {
    /// Chosen once, just before the program starts.
    pub fn detect() -> Self {
        // SAFETY: getpid has no preconditions.
        let init = unsafe { libc::getpid() } == 1;
        let found = init.then(|| COUNTERS.iter().find_map(|c| Some((*c, c.read()?)))).flatten();
        match found {
            Some((counter, baseline)) => Source::Cgroup { counter, baseline },
            None => Source::ResidentSum,
        }
    }

    /// The same count, with `bytes` the program already holds (an
    /// interpreter started ahead) counted as its own.
    pub fn counting(self, bytes: u64) -> Self {
        match self {
            Source::Cgroup { counter, baseline } => {
                Source::Cgroup { counter, baseline: baseline.saturating_sub(bytes) }
            }
            Source::ResidentSum => Source::ResidentSum,
        }
    }

    /// The program's memory now, given its processes' resident sum.
    pub fn program_bytes(self, resident_sum: u64) -> u64 {
        match self {
            Source::Cgroup { counter, baseline } => {
                counter.read().map_or(resident_sum, |now| now.saturating_sub(baseline))
            }
            Source::ResidentSum => resident_sum,
        }
    }
}

/// One way to read a memory cgroup's count; the first that reads is kept,
/// so each sample costs one file read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Counter {
    /// The sum of these `memory.stat` keys (runc: anonymous and shared
    /// memory, leaving out the page cache of files the program writes).
    Stat(&'static str, [&'static str; 2]),
    /// A whole-usage file (gVisor's cgroupfs has no `memory.stat`, and
    /// counts no file cache in its usage).
    Usage(&'static str),
}

const COUNTERS: [Counter; 4] = [
    Counter::Stat(V2_STAT, ["anon", "shmem"]),
    Counter::Stat(V1_STAT, ["total_rss", "total_shmem"]),
    Counter::Usage(V2_USAGE),
    Counter::Usage(V1_USAGE),
];

impl Counter {
    fn read(self) -> Option<u64> {
        match self {
            Counter::Stat(path, keys) => {
                let text = fs::read_to_string(path).ok()?;
                keys.iter().map(|k| stat_value(&text, k)).sum()
            }
            Counter::Usage(path) => fs::read_to_string(path).ok()?.trim().parse().ok(),
        }
    }
}

fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_memory_stat_key_and_not_its_prefix_twin() {
        let text = "cache 10\nrss 20\nrss_huge 30\ntotal_rss 40\nshmem 5\n";
        assert_eq!(stat_value(text, "rss"), Some(20));
        assert_eq!(stat_value(text, "total_rss"), Some(40));
        assert_eq!(stat_value(text, "anon"), None);
    }

    #[test]
    fn outside_a_container_of_its_own_the_resident_sum_counts() {
        // cargo test never runs as pid 1.
        assert_eq!(Source::detect(), Source::ResidentSum);
        assert_eq!(Source::ResidentSum.program_bytes(42), 42);
    }
}
