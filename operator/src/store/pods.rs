//! The pods of the operator's runs, grouped by the Execution they belong to
//! (its label). A finished run's pods are forgotten once its Execution
//! shows the result: nothing reads them again. An event about a forgotten
//! pod brings it back; the reconcile that the event triggers forgets it
//! again.

use std::collections::HashMap;
use std::sync::Arc;

use kube::ResourceExt;

use super::records::{execution_of, PodRecord, PodView};
use super::relist::{Collect, Listed, Watched};

type Group = (String, String);

/// Pods by (namespace, Execution). Groups are small (a pod, two after a
/// retry), so a list beats a map per group.
#[derive(Default)]
pub struct Pods(HashMap<Group, Vec<Arc<PodRecord>>>);

fn group_of(pod: &PodView) -> Option<Group> {
    Some((pod.namespace()?, execution_of(pod)?.clone()))
}

impl Collect<PodView> for Pods {
    fn add(&mut self, pod: &PodView) {
        let Some(group) = group_of(pod) else { return };
        let record = Arc::new(PodRecord::from(pod));
        let members = self.0.entry(group).or_default();
        match members.iter_mut().find(|member| member.name == record.name) {
            Some(member) => *member = record,
            None => members.push(record),
        }
    }
}

impl Watched<PodView> for Pods {
    fn remove(&mut self, pod: &PodView) {
        let Some(group) = group_of(pod) else { return };
        if let Some(members) = self.0.get_mut(&group) {
            members.retain(|member| Some(&member.name) != pod.metadata.name.as_ref());
            if members.is_empty() {
                self.0.remove(&group);
            }
        }
    }
}

impl Listed<Pods> {
    /// The newest pod of `execution` made by the Job with `job_uid`.
    pub fn newest(&self, namespace: &str, execution: &str, job_uid: &str) -> Option<Arc<PodRecord>> {
        let key = (namespace.to_owned(), execution.to_owned());
        let newest = |pods: &Pods| {
            let members = pods.0.get(&key)?;
            let of_job = members.iter().filter(|pod| pod.job_uid.as_deref() == Some(job_uid));
            of_job.max_by_key(|pod| pod.created.as_ref().map(|t| t.0)).cloned()
        };
        self.read(newest).flatten()
    }

    pub fn forget(&self, namespace: &str, execution: &str) {
        let key = (namespace.to_owned(), execution.to_owned());
        self.write(|pods| pods.0.remove(&key));
    }

    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.read(|pods| pods.0.values().map(Vec::len).sum()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::EXECUTION_KEY;
    use crate::store::records::JOB_UID_LABEL;
    use kube::runtime::watcher::Event;
    use serde_json::json;

    fn pod(namespace: &str, name: &str, execution: &str, job_uid: &str, created: &str) -> PodView {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": namespace, "creationTimestamp": created,
            "labels": {EXECUTION_KEY: execution, JOB_UID_LABEL: job_uid}}}))
        .unwrap()
    }

    fn newest(pods: &Listed<Pods>, namespace: &str, execution: &str, job: &str) -> Option<String> {
        pods.newest(namespace, execution, job).map(|pod| pod.name.clone())
    }

    #[test]
    fn the_newest_pod_of_the_job_is_found_by_execution_and_namespace() {
        let pods = Listed::<Pods>::default();
        pods.apply(&Event::Apply(pod("a", "run-1-x", "run-1", "job-1", "2027-01-15T08:00:00Z")));
        pods.apply(&Event::Apply(pod("a", "run-1-y", "run-1", "job-1", "2027-01-15T08:00:05Z")));
        pods.apply(&Event::Apply(pod("a", "run-1-old", "run-1", "job-0", "2027-01-15T08:00:09Z")));
        pods.apply(&Event::Apply(pod("b", "run-1-z", "run-1", "job-1", "2027-01-15T08:00:09Z")));
        pods.apply(&Event::Apply(pod("a", "run-1-x", "run-1", "job-1", "2027-01-15T08:00:00Z")));
        assert_eq!(newest(&pods, "a", "run-1", "job-1").as_deref(), Some("run-1-y"));
        assert_eq!(newest(&pods, "b", "run-1", "job-1").as_deref(), Some("run-1-z"));
        assert_eq!(newest(&pods, "a", "run-2", "job-1"), None);
        assert_eq!(pods.count(), 4, "an update replaces, it does not add");
    }

    #[test]
    fn a_deleted_pod_leaves_and_no_empty_group_stays() {
        let pods = Listed::<Pods>::default();
        pods.apply(&Event::Apply(pod("a", "run-1-x", "run-1", "job-1", "2027-01-15T08:00:00Z")));
        pods.apply(&Event::Delete(pod("a", "run-1-x", "run-1", "job-1", "2027-01-15T08:00:00Z")));
        assert!(pods.read(|pods| pods.0.is_empty()).unwrap());
    }

    #[test]
    fn pods_without_the_label_are_ignored() {
        let pods = Listed::<Pods>::default();
        let mut stray = pod("a", "stray", "x", "job-1", "2027-01-15T08:00:00Z");
        stray.metadata.labels = None;
        pods.apply(&Event::Apply(stray));
        assert_eq!(pods.count(), 0);
    }

    #[test]
    fn a_forgotten_group_goes_and_comes_back_with_its_next_event() {
        let pods = Listed::<Pods>::default();
        let p = pod("a", "run-1-x", "run-1", "job-1", "2027-01-15T08:00:00Z");
        pods.apply(&Event::Apply(p.clone()));
        pods.forget("a", "run-1");
        assert_eq!(pods.count(), 0);
        pods.apply(&Event::Apply(p));
        assert_eq!(newest(&pods, "a", "run-1", "job-1").as_deref(), Some("run-1-x"));
    }
}
