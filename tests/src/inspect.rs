//! Looking without touching: sandrun's pods, the operator's leader, and the
//! host processes behind them and the cluster's daemons. Shared by the fault
//! and hostile suites and the benchmarks.

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};

pub const RELEASE_NAMESPACE: &str = "sandrun-system";
const LEASE: &str = "sandrun-operator";

/// Who holds the operator's Lease: `POD_NAME_millis`.
pub async fn lease_holder(client: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    leases.get(LEASE).await.ok()?.spec?.holder_identity.filter(|h| !h.is_empty())
}

/// The host pid of `binary` running in `pod`: found by its environment,
/// which names the pod (the Deployments set POD_NAME, kubelet sets HOSTNAME).
pub fn pod_process(pod: &str, binary: &str) -> Option<u32> {
    let wanted = [format!("POD_NAME={pod}"), format!("HOSTNAME={pod}")];
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
        // comm holds at most 15 characters of the name.
        if comm.trim().is_empty() || !binary.starts_with(comm.trim()) {
            return None;
        }
        let environ = std::fs::read(entry.path().join("environ")).ok()?;
        environ.split(|b| *b == 0).any(|var| wanted.iter().any(|w| var == w.as_bytes())).then_some(pid)
    })
}

/// `kubectl get pods -o jsonpath=JSONPATH` for one of sandrun's components
/// (`operator` or `gateway`) in the release namespace.
pub fn component_pods(component: &str, jsonpath: &str) -> String {
    crate::kubectl(&[
        "-n",
        RELEASE_NAMESPACE,
        "get",
        "pods",
        "-l",
        &format!("app.kubernetes.io/component={component}"),
        "-o",
        &format!("jsonpath={jsonpath}"),
    ])
}

/// Resident memory of every process of `binary` in sandrun's pods, in MiB.
pub fn sandrun_rss_mib(component: &str, binary: &str) -> Vec<u64> {
    component_pods(component, "{.items[*].metadata.name}")
        .split_whitespace()
        .filter_map(|pod| pod_process(pod, binary))
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib / 1024)
        })
        .collect()
}

/// The pid recorded by cluster/up.sh for one of the cluster's daemons.
pub fn daemon_pid(name: &str) -> u32 {
    let state = std::env::var("SANDRUN_STATE").unwrap_or_else(|_| "/var/lib/sandrun-cluster".into());
    let path = format!("{state}/pids/{name}.pid");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.trim().parse().unwrap_or_else(|e| panic!("{path}: {e}"))
}
