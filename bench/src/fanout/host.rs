//! The gateway's process and this host: its memory and CPU time, and the
//! limits that thousands of sockets run into first.

use std::time::Duration;

use crate::error::{bench_error, Result};

/// File descriptors and ports kept aside for everything but the sockets.
const SPARE: u64 = 256;

/// The gateway as a process of this host (pods' processes are).
pub struct GatewayProcess {
    pub pid: u32,
}

impl GatewayProcess {
    /// `pid` when given (a gateway run by hack/gateway.sh), else the only
    /// gateway pod's process.
    pub fn find(pid: Option<u32>) -> Result<Self> {
        if let Some(pid) = pid {
            return Ok(Self { pid });
        }
        // Running ones only: a rollout's pending pod is no endpoint yet.
        let pods =
            sandrun_e2e::faults::component_pods("gateway", r#"{.items[?(@.status.phase=="Running")].metadata.name}"#);
        let pods: Vec<&str> = pods.split_whitespace().collect();
        let [pod] = pods[..] else {
            return Err(bench_error(format!(
                "the benchmark needs exactly one running gateway pod (all clients on one gateway), found {pods:?}"
            )));
        };
        let pid = sandrun_e2e::faults::pod_process(pod, "sandrun-gateway")
            .ok_or_else(|| bench_error(format!("no sandrun-gateway process of pod {pod} on this host")))?;
        Ok(Self { pid })
    }

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

/// What was checked before opening the sockets, for the report.
pub struct Limits {
    pub open_files: u64,
    pub gateway_open_files: u64,
    pub ports: (u64, u64),
    pub conntrack: Option<(u64, u64)>,
}

impl std::fmt::Display for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (low, high) = self.ports;
        write!(
            f,
            "open files: this process {}, gateway {}; local ports {low}–{high}; conntrack ",
            self.open_files, self.gateway_open_files
        )?;
        match self.conntrack {
            Some((used, max)) => write!(f, "{used} of {max} in use"),
            None => write!(f, "not loaded"),
        }
    }
}

/// Raises this process's open-file limit to fit `sockets`, and refuses to
/// start when the gateway's, the local port range (every socket goes to one
/// Service address) or the connection-tracking table (kube-proxy NATs the
/// Service address) cannot hold them.
pub fn check(sockets: u64, gateway: &GatewayProcess) -> Result<Limits> {
    let need = sockets + SPARE;
    let open_files = raise_open_files(need)?;
    let gateway_open_files = gateway.open_files_limit()?;
    if gateway_open_files < need {
        return Err(bench_error(format!(
            "the gateway (pid {}) may open {gateway_open_files} files, {sockets} sockets need {need}",
            gateway.pid
        )));
    }
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")?;
    let ports = match range.split_whitespace().map(str::parse).collect::<Result<Vec<u64>, _>>() {
        Ok(pair) if pair.len() == 2 => (pair[0], pair[1]),
        _ => return Err(bench_error(format!("ip_local_port_range: {range:?}"))),
    };
    if ports.1.saturating_sub(ports.0) + 1 < need {
        return Err(bench_error(format!(
            "net.ipv4.ip_local_port_range {}–{} has too few ports for {sockets} sockets to one address",
            ports.0, ports.1
        )));
    }
    let number = |path: &str| std::fs::read_to_string(path).ok()?.trim().parse::<u64>().ok();
    let conntrack =
        number("/proc/sys/net/netfilter/nf_conntrack_count").zip(number("/proc/sys/net/netfilter/nf_conntrack_max"));
    if let Some((used, max)) = conntrack.filter(|(used, max)| used + need > *max) {
        return Err(bench_error(format!(
            "net.netfilter.nf_conntrack_max {max} with {used} in use leaves no room for {sockets} connections"
        )));
    }
    Ok(Limits { open_files, gateway_open_files, ports, conntrack })
}

/// Raises the soft RLIMIT_NOFILE to at least `need` (the hard one too if
/// it must, which takes root); returns the soft limit now.
fn raise_open_files(need: u64) -> Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    if limit.rlim_cur >= need {
        return Ok(limit.rlim_cur);
    }
    let raised = libc::rlimit { rlim_cur: need, rlim_max: limit.rlim_max.max(need) };
    // SAFETY: setrlimit only reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        let error = std::io::Error::last_os_error();
        return Err(bench_error(format!(
            "raising the open-file limit from {} to {need}: {error} (try `ulimit -n {need}`)",
            limit.rlim_cur
        )));
    }
    Ok(raised.rlim_cur)
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
        let me = GatewayProcess { pid: std::process::id() };
        assert!(me.rss_kib().unwrap() > 0);
        assert!(me.cpu().unwrap() > Duration::ZERO);
        assert!(me.open_files_limit().unwrap() > 0);
    }
}
