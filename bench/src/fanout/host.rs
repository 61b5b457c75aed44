//! The gateway's process and this host: its memory and CPU time, and the
//! limits that thousands of sockets run into first.

use crate::error::{bench_error, Result};
use crate::process::Process;

/// File descriptors and ports kept aside for everything but the sockets.
const SPARE: u64 = 256;

/// `pid` when given (a gateway run by hack/gateway.sh), else the only
/// gateway pod's process.
pub fn find_gateway(pid: Option<u32>) -> Result<Process> {
    if let Some(pid) = pid {
        return Ok(Process { pid });
    }
    // Running ones only: a rollout's pending pod is no endpoint yet.
    let pods =
        sandrun_e2e::inspect::component_pods("gateway", r#"{.items[?(@.status.phase=="Running")].metadata.name}"#);
    let pods: Vec<&str> = pods.split_whitespace().collect();
    let [pod] = pods[..] else {
        return Err(bench_error(format!(
            "the benchmark needs exactly one running gateway pod (all clients on one gateway), found {pods:?}"
        )));
    };
    let pid = sandrun_e2e::inspect::pod_process(pod, "sandrun-gateway")
        .ok_or_else(|| bench_error(format!("no sandrun-gateway process of pod {pod} on this host")))?;
    Ok(Process { pid })
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
pub fn check(sockets: u64, gateway: &Process) -> Result<Limits> {
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
