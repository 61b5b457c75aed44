//! A process of this host, measured from /proc: pods' processes are host
//! processes here, so the gateway, the operator and the control plane alike.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{bench_error, Result};

pub struct Process {
    pub pid: u32,
}

impl Process {
    fn read(&self, file: &str) -> Result<String> {
        Ok(std::fs::read_to_string(format!("/proc/{}/{file}", self.pid))?)
    }

    /// Resident memory, KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        self.status_kib("VmRSS:")
    }

    /// The most it has ever had resident, KiB.
    pub fn peak_rss_kib(&self) -> Result<u64> {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> Result<u64> {
        let status = self.read("status")?;
        status_kib(&status, field).ok_or_else(|| bench_error(format!("no {field} for pid {}", self.pid)))
    }

    /// Time on CPU of all its threads (from schedstat, in nanoseconds; a
    /// thread that exits takes its share along, which tokio's workers do not).
    pub fn cpu(&self) -> Result<Duration> {
        let mut total = 0;
        for task in std::fs::read_dir(format!("/proc/{}/task", self.pid))? {
            let Ok(text) = std::fs::read_to_string(task?.path().join("schedstat")) else { continue };
            total += text.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()).unwrap_or(0);
        }
        Ok(Duration::from_nanos(total))
    }

    pub fn open_files_limit(&self) -> Result<u64> {
        soft_open_files(&self.read("limits")?).ok_or_else(|| bench_error("no `Max open files` line"))
    }
}

fn status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

fn soft_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Samples a process's resident memory every 100 ms until stopped, and
/// keeps the highest seen (KiB), starting from `floor`.
pub struct PeakRss {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakRss {
    pub fn start(pid: u32, floor: u64) -> Self {
        let peak = Arc::new(AtomicU64::new(floor));
        let (seen, process) = (peak.clone(), Process { pid });
        let task = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                every.tick().await;
                if let Ok(rss) = process.rss_kib() {
                    seen.fetch_max(rss, Ordering::Relaxed);
                }
            }
        });
        Self { peak, task }
    }

    pub fn stop(self) -> u64 {
        self.task.abort();
        self.peak.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let status = "Name:\tsandrun-gateway\nVmHWM:\t   9836 kB\nVmRSS:\t   9712 kB\nThreads:\t3\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(9712));
        assert_eq!(status_kib(status, "VmSwap:"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            20000                40000                files     \n";
        assert_eq!(soft_open_files(limits), Some(20000));
    }

    #[test]
    fn this_process_can_be_measured() {
        let me = Process { pid: std::process::id() };
        assert!(me.rss_kib().unwrap() > 0);
        assert!(me.cpu().unwrap() > Duration::ZERO);
        assert!(me.open_files_limit().unwrap() > 0);
    }
}
