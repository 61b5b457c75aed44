//! The warm pods a run may claim now: pods of a SandboxPool whose runner is
//! up and waiting, not claimed, not being deleted. By (namespace, pool).
//! A pod leaves when it is claimed, ends or goes; a reconcile also takes
//! it out as it picks it, so two runs of one operator never pick the same.

use std::collections::HashMap;

use kube::ResourceExt;

use super::records::{PodView, JOB_UID_LABEL};
use super::relist::{Collect, Listed, Watched};
use crate::labels::{CLAIMED_BY_KEY, POOL_KEY, PROFILE_KEY, RUN_CONTAINER};

type Key = (String, String);

/// What claiming a warm pod needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarmPod {
    pub name: String,
    /// The claim is a write on exactly this version: a pod that changed
    /// since (claimed by another run, ended) refuses it.
    pub resource_version: String,
    pub profile: String,
    pub job_name: String,
    pub job_uid: String,
}

#[derive(Default)]
pub struct WarmPods(HashMap<Key, Vec<WarmPod>>);

fn key_of(pod: &PodView) -> Option<Key> {
    Some((pod.namespace()?, pod.labels().get(POOL_KEY)?.clone()))
}

/// The pod as a claimable warm pod, if it is one.
pub fn claimable(pod: &PodView) -> Option<WarmPod> {
    let labels = pod.labels();
    if labels.contains_key(CLAIMED_BY_KEY) || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let run = status.container_statuses.as_ref()?.iter().find(|c| c.name == RUN_CONTAINER)?;
    let running = status.phase.as_deref() == Some("Running") && run.state.as_ref()?.running.is_some();
    running.then(|| WarmPod {
        name: pod.name_any(),
        resource_version: pod.resource_version().unwrap_or_default(),
        profile: labels.get(PROFILE_KEY).cloned().unwrap_or_default(),
        job_name: labels.get("job-name").cloned().unwrap_or_default(),
        job_uid: labels.get(JOB_UID_LABEL).cloned().unwrap_or_default(),
    })
}

impl Collect<PodView> for WarmPods {
    fn add(&mut self, pod: &PodView) {
        let Some(key) = key_of(pod) else { return };
        let members = self.0.entry(key.clone()).or_default();
        members.retain(|member| Some(&member.name) != pod.metadata.name.as_ref());
        members.extend(claimable(pod));
        if members.is_empty() {
            self.0.remove(&key);
        }
    }
}

impl Watched<PodView> for WarmPods {
    fn remove(&mut self, pod: &PodView) {
        let Some(key) = key_of(pod) else { return };
        if let Some(members) = self.0.get_mut(&key) {
            members.retain(|member| Some(&member.name) != pod.metadata.name.as_ref());
            if members.is_empty() {
                self.0.remove(&key);
            }
        }
    }
}

impl Listed<WarmPods> {
    /// Takes a waiting pod of `pool` made for `profile` out of the index,
    /// the oldest first (it has waited longest).
    pub fn take(&self, namespace: &str, pool: &str, profile: &str) -> Option<WarmPod> {
        let key = (namespace.to_owned(), pool.to_owned());
        self.write(|pods| {
            let members = pods.0.get_mut(&key)?;
            let at = members.iter().position(|pod| pod.profile == profile)?;
            Some(members.remove(at))
        })
        .flatten()
    }

    /// Puts back a pod taken but not claimed (the claim could not be sent).
    pub fn put_back(&self, namespace: &str, pool: &str, pod: WarmPod) {
        self.write(|pods| pods.0.entry((namespace.to_owned(), pool.to_owned())).or_default().push(pod));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher::Event;
    use serde_json::{json, Value};

    fn pod(name: &str, labels: Value, run_state: Value) -> PodView {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "a", "resourceVersion": "7", "labels": labels},
            "status": {"phase": "Running", "containerStatuses": [{"name": "run", "state": run_state}]}
        }))
        .unwrap()
    }

    fn pool_labels() -> Value {
        json!({POOL_KEY: "py", PROFILE_KEY: "p1", "job-name": "sandrun-warm-py-x", JOB_UID_LABEL: "j1"})
    }

    #[test]
    fn only_running_unclaimed_pods_of_the_profile_can_be_taken_and_only_once() {
        let pods = Listed::<WarmPods>::default();
        pods.apply(&Event::Apply(pod("starting", pool_labels(), json!({"waiting": {"reason": "ContainerCreating"}}))));
        let mut claimed = pool_labels();
        claimed[CLAIMED_BY_KEY] = json!("uid-9");
        pods.apply(&Event::Apply(pod("claimed", claimed, json!({"running": {}}))));
        pods.apply(&Event::Apply(pod("ready", pool_labels(), json!({"running": {}}))));
        assert_eq!(pods.take("a", "py", "p2"), None, "another profile");
        let taken = pods.take("a", "py", "p1").expect("the ready pod");
        assert_eq!((taken.name.as_str(), taken.resource_version.as_str()), ("ready", "7"));
        assert_eq!(taken.job_name, "sandrun-warm-py-x");
        assert_eq!(pods.take("a", "py", "p1"), None, "taken once");
    }

    #[test]
    fn a_pod_leaves_when_it_is_claimed_or_deleted() {
        let pods = Listed::<WarmPods>::default();
        pods.apply(&Event::Apply(pod("w1", pool_labels(), json!({"running": {}}))));
        let mut claimed = pool_labels();
        claimed[CLAIMED_BY_KEY] = json!("uid-9");
        pods.apply(&Event::Apply(pod("w1", claimed, json!({"running": {}}))));
        assert_eq!(pods.take("a", "py", "p1"), None);
        pods.apply(&Event::Apply(pod("w2", pool_labels(), json!({"running": {}}))));
        pods.apply(&Event::Delete(pod("w2", pool_labels(), json!({"running": {}}))));
        assert_eq!(pods.take("a", "py", "p1"), None);
    }
}
