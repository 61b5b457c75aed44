//! Breaking things on purpose: the processes of the local cluster and of
//! sandrun's pods are host processes here, so a test can SIGKILL them.

use std::time::{Duration, Instant};

use kube::Client;

use crate::inspect::{lease_holder, pod_process};

/// Waits for a holder other than `old`; returns it and how long it took.
pub async fn new_leader(client: &Client, old: &str, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    loop {
        if let Some(now) = lease_holder(client).await.filter(|now| now != old) {
            return (now, started.elapsed());
        }
        assert!(started.elapsed() < within, "nobody took the lease from {old} within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SIGKILLs the leading operator process; returns the identity it held.
pub async fn kill_leader(client: &Client) -> String {
    let leader = lease_holder(client).await.expect("a leader holds the lease");
    let pod = leader.split('_').next().expect("identity is POD_NAME_millis");
    let pid = pod_process(pod, "sandrun-operator")
        .unwrap_or_else(|| panic!("no sandrun-operator process of pod {pod} on this host"));
    sigkill(pid);
    leader
}

pub fn sigkill(pid: u32) {
    let status = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("run kill");
    assert!(status.success(), "kill -KILL {pid}");
}
