//! The Job of each run, by (namespace, Execution). A finished run's Job is
//! forgotten once its Execution shows the result, but its slot stays until
//! the Job is seen deleted: the name is still taken, and a new Execution of
//! the same name must wait for it rather than adopt it.

use std::collections::HashMap;
use std::sync::Arc;

use kube::ResourceExt;

use super::records::{execution_of, JobRecord, JobView};
use super::relist::{Collect, Listed, Watched};
use crate::labels::{child_name, CLAIMED_BY_KEY};

type Key = (String, String);

/// What is known of a run's Job.
#[derive(Clone, Debug)]
pub enum JobSlot {
    Held(Arc<JobRecord>),
    /// Forgotten, but not yet seen deleted: its name is still taken.
    Forgotten,
}

#[derive(Default)]
pub struct Jobs(HashMap<Key, JobSlot>);

/// Only a Job with the name the operator gives its Execution's Job counts,
/// or a warm pool's Job a run claimed.
fn key_of(job: &JobView) -> Option<Key> {
    let execution = execution_of(job)?;
    let claimed = job.labels().contains_key(CLAIMED_BY_KEY);
    if !claimed && job.metadata.name.as_deref() != Some(child_name(execution).as_str()) {
        return None;
    }
    Some((job.namespace()?, execution.clone()))
}

impl Collect<JobView> for Jobs {
    fn add(&mut self, job: &JobView) {
        if let Some(key) = key_of(job) {
            self.0.insert(key, JobSlot::Held(Arc::new(JobRecord::from(job))));
        }
    }
}

impl Watched<JobView> for Jobs {
    fn remove(&mut self, job: &JobView) {
        // A run that fell back from a warm pod to a cold one has had two
        // Jobs: the first one's deletion leaves the second one's slot.
        let Some(key) = key_of(job) else { return };
        let same = match self.0.get(&key) {
            Some(JobSlot::Held(held)) => Some(&held.name) == job.metadata.name.as_ref(),
            _ => true,
        };
        if same {
            self.0.remove(&key);
        }
    }
}

impl Listed<Jobs> {
    pub fn of(&self, namespace: &str, execution: &str) -> Option<JobSlot> {
        self.read(|jobs| jobs.0.get(&(namespace.to_owned(), execution.to_owned())).cloned()).flatten()
    }

    pub fn forget(&self, namespace: &str, execution: &str) {
        let key = (namespace.to_owned(), execution.to_owned());
        self.write(|jobs| {
            if let Some(slot) = jobs.0.get_mut(&key) {
                *slot = JobSlot::Forgotten;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::EXECUTION_KEY;
    use kube::runtime::watcher::Event;
    use serde_json::json;

    fn job(namespace: &str, name: &str, execution: &str) -> JobView {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": namespace, "uid": format!("{name}-uid"),
            "labels": {EXECUTION_KEY: execution}}}))
        .unwrap()
    }

    fn held(jobs: &Listed<Jobs>, namespace: &str, execution: &str) -> Option<String> {
        match jobs.of(namespace, execution)? {
            JobSlot::Held(job) => Some(job.name.clone()),
            JobSlot::Forgotten => Some("(forgotten)".into()),
        }
    }

    #[test]
    fn a_job_is_found_by_its_execution_and_namespace() {
        let jobs = Listed::<Jobs>::default();
        jobs.apply(&Event::Apply(job("a", "sandrun-run-1", "run-1")));
        jobs.apply(&Event::Apply(job("a", "someone-elses", "run-2")));
        assert_eq!(held(&jobs, "a", "run-1").as_deref(), Some("sandrun-run-1"));
        assert_eq!(held(&jobs, "b", "run-1"), None);
        assert_eq!(held(&jobs, "a", "run-2"), None, "a Job not named for its Execution is not its Job");
        jobs.apply(&Event::Delete(job("a", "sandrun-run-1", "run-1")));
        assert_eq!(held(&jobs, "a", "run-1"), None);
    }

    #[test]
    fn a_forgotten_job_keeps_its_slot_until_deleted_and_comes_back_with_an_event() {
        let jobs = Listed::<Jobs>::default();
        jobs.apply(&Event::Apply(job("a", "sandrun-run-1", "run-1")));
        jobs.forget("a", "run-1");
        jobs.forget("a", "never-seen");
        assert_eq!(held(&jobs, "a", "run-1").as_deref(), Some("(forgotten)"));
        assert_eq!(held(&jobs, "a", "never-seen"), None, "forgetting makes no slot");
        jobs.apply(&Event::Apply(job("a", "sandrun-run-1", "run-1")));
        assert_eq!(held(&jobs, "a", "run-1").as_deref(), Some("sandrun-run-1"));
        jobs.forget("a", "run-1");
        jobs.apply(&Event::Delete(job("a", "sandrun-run-1", "run-1")));
        assert_eq!(held(&jobs, "a", "run-1"), None);
    }
}
