//! What the operator knows of the objects it made, kept from its watches so
//! a reconcile reads memory instead of the API server. Objects are slimmed
//! before they are stored: at ten thousand runs in flight, managed fields
//! and pod specs would be most of the operator's memory.

use std::sync::Arc;
use std::time::Duration;

use futures::{future, stream, Stream, StreamExt};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::ResourceExt;
use sandrun_crds::{Execution, ExecutionStatus};

use crate::children::{Children, Kept, Leave};
use crate::error::Error;
use crate::labels::child_name;
use crate::name_set::NameSet;
use crate::views::{JobRecord, JobView, PodView};

/// Read side, shared by every reconcile.
#[derive(Clone)]
pub struct Stores {
    pub jobs: Children<JobRecord>,
    pub pods: Children<PodView>,
    pub config_maps: NameSet,
    pub policies: Store<NetworkPolicy>,
}

/// Write side of the kube store, fed by the controller's policy watch (the
/// others are fed through their own `apply`).
pub struct Writers {
    pub policies: reflector::store::Writer<NetworkPolicy>,
}

impl Stores {
    pub fn new() -> (Self, Writers) {
        let (policies, policies_writer) = reflector::store();
        let stores =
            Self { jobs: Children::default(), pods: Children::default(), config_maps: NameSet::default(), policies };
        (stores, Writers { policies: policies_writer })
    }

    /// Until every store has listed once, an absent object means nothing.
    /// Bounded, so a watch that can never list (a missing RBAC verb) shows
    /// up as failing reconciles rather than as runs silently stuck.
    pub async fn wait_until_ready(&self, within: Duration) -> Result<(), Error> {
        let all = async {
            futures::join!(
                self.jobs.wait_until_ready(),
                self.pods.wait_until_ready(),
                self.config_maps.wait_until_ready(),
                self.policies.wait_until_ready(),
            )
        };
        match tokio::time::timeout(within, all).await {
            Ok(((), (), (), Ok(()))) => Ok(()),
            _ => Err(Error::StoresNotReady),
        }
    }

    /// The Job of `execution`, or a marker where a forgotten one still is.
    pub fn job(&self, namespace: &str, execution: &str) -> Option<Kept<JobRecord>> {
        self.jobs.named(namespace, execution, &child_name(execution))
    }

    pub fn config_map_exists(&self, namespace: &str, name: &str) -> bool {
        self.config_maps.contains(namespace, name)
    }

    pub fn policy(&self, namespace: &str, name: &str) -> Option<Arc<NetworkPolicy>> {
        self.policies.get(&ObjectRef::new(name).within(namespace))
    }

    /// The newest pod of `job`.
    pub fn newest_pod(&self, namespace: &str, execution: &str, job: &JobRecord) -> Option<Arc<PodView>> {
        let uid = job.uid.as_ref()?;
        self.pods
            .objects_of(namespace, execution)
            .into_iter()
            .filter(|pod| pod.job_uid() == Some(uid))
            .max_by_key(|pod| pod.creation_timestamp().map(|t| t.0))
    }

    /// Drops a finished run's Job and pods: once its Execution shows the
    /// result, nothing reads them again. The Job's name stays marked taken
    /// until it is deleted, so a new run of the same name waits for it.
    pub fn forget_children(&self, namespace: &str, execution: &str) {
        self.jobs.forget(namespace, execution, Leave::Markers);
        self.pods.forget(namespace, execution, Leave::Nothing);
    }
}

/// Drops what no reconcile reads: bookkeeping and all labels but the one
/// naming its Execution. Owner references stay: they tell a Job of this
/// Execution from one of an earlier Execution of the same name.
pub fn slim_job(job: &mut JobView) {
    job.managed_fields_mut().clear();
    job.annotations_mut().clear();
    job.keep_only_read_labels();
    job.finalizers_mut().clear();
}

/// Keeps what the status is derived from (the view holds nothing else)
/// and, of the metadata, identity and the two labels that tie the pod to
/// its Execution and Job. Of the conditions only scheduling is read.
pub fn slim_pod(pod: &mut PodView) {
    pod.managed_fields_mut().clear();
    pod.annotations_mut().clear();
    pod.keep_only_read_labels();
    pod.finalizers_mut().clear();
    pod.metadata.generate_name = None;
    pod.metadata.owner_references = None;
    if let Some(conditions) = pod.status.as_mut().and_then(|s| s.conditions.as_mut()) {
        conditions.retain(|c| c.type_ == "PodScheduled");
    }
}

/// Drops kubectl's copy of the whole object it applied (as large as the
/// spec). Of a finished run only the TTL and completion time are read
/// again, so its program, output and conditions go too: kept, they would
/// be most of the store (two 64 KiB streams per run by default).
pub fn slim_execution(execution: &mut Execution) {
    execution.managed_fields_mut().clear();
    execution.annotations_mut().remove("kubectl.kubernetes.io/last-applied-configuration");
    let Some(status) = execution.status.as_mut().filter(|s| s.is_terminal()) else { return };
    // Phase, reason and completion time stay: what `kubectl`-less readers
    // of this store (metrics, logs) would want, and all that expiry reads.
    *status = ExecutionStatus {
        phase: status.phase,
        reason: status.reason.take(),
        completion_time: status.completion_time.take(),
        observed_generation: status.observed_generation,
        ..Default::default()
    };
    let spec = &mut execution.spec;
    spec.source = None;
    spec.stdin = None;
    spec.args = Vec::new();
    spec.env = Vec::new();
}

/// Objects to reconcile for, from a reflected watch: each as it changes,
/// and a re-list's only once it is complete. A re-list reaches the store all
/// at once at its end (after an API server restart, say); a reconcile
/// triggered by its first objects would read the stale store, and nothing
/// would trigger one again for a pod that has already finished.
pub fn triggers<K, S>(events: S) -> impl Stream<Item = Result<K, watcher::Error>>
where
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
{
    events
        .scan(Vec::new(), |relisted, event| {
            let ready: Vec<Result<K, watcher::Error>> = match event {
                Ok(Event::Apply(object) | Event::Delete(object)) => vec![Ok(object)],
                Ok(Event::Init) => {
                    relisted.clear();
                    Vec::new()
                }
                Ok(Event::InitApply(object)) => {
                    relisted.push(object);
                    Vec::new()
                }
                Ok(Event::InitDone) => std::mem::take(relisted).into_iter().map(Ok).collect(),
                Err(error) => vec![Err(error)],
            };
            future::ready(Some(stream::iter(ready)))
        })
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::OfExecution;
    use crate::labels::EXECUTION_KEY;
    use crate::views::JOB_UID_LABEL;
    use kube::api::ObjectMeta;

    fn pod(namespace: &str, name: &str, execution: &str) -> PodView {
        PodView {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                labels: Some([(EXECUTION_KEY.to_owned(), execution.to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_relist_triggers_only_once_it_is_complete() {
        let events = vec![
            Ok(Event::Apply(pod("a", "p1", "e1"))),
            Ok(Event::Init),
            Ok(Event::InitApply(pod("a", "p2", "e2"))),
            Ok(Event::InitApply(pod("a", "p3", "e3"))),
            Ok(Event::InitDone),
            Ok(Event::Delete(pod("a", "p2", "e2"))),
        ];
        let mut seen = Vec::new();
        let mut stream = std::pin::pin!(triggers(stream::iter(events)));
        while let Some(Ok(pod)) = stream.next().await {
            seen.push(pod.metadata.name.unwrap_or_default());
        }
        assert_eq!(seen, ["p1", "p2", "p3", "p2"]);
    }

    #[tokio::test]
    async fn stores_that_never_list_fail_the_wait_instead_of_hanging() {
        let (stores, _writers) = Stores::new();
        let waited = stores.wait_until_ready(Duration::from_millis(20)).await;
        assert!(matches!(waited, Err(Error::StoresNotReady)));
    }

    #[test]
    fn slimming_keeps_what_status_derivation_reads() {
        let mut p: PodView = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "run-1-x", "namespace": "a", "labels": {EXECUTION_KEY: "run-1"},
                "managedFields": [{"manager": "kubelet"}]},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
            ], "containerStatuses": [{"name": "run", "state": {"terminated": {"exitCode": 0}}}]}
        }))
        .unwrap();
        slim_pod(&mut p);
        let status = p.status.clone().unwrap();
        let run = &status.container_statuses.unwrap()[0];
        assert_eq!(run.state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| t.exit_code), Some(0));
        let conditions = status.conditions.unwrap();
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].reason.as_deref(), Some("Unschedulable"));
        assert!(p.metadata.managed_fields.as_ref().is_none_or(|m| m.is_empty()));
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(p.execution().map(String::as_str), Some("run-1"));
    }

    #[test]
    fn a_pod_keeps_only_the_labels_that_find_it() {
        let mut p = pod("a", "run-1-x", "run-1");
        p.labels_mut().insert(JOB_UID_LABEL.into(), "uid-1".into());
        p.labels_mut().insert("job-name".into(), "sandrun-run-1".into());
        p.finalizers_mut().push("batch.kubernetes.io/job-tracking".into());
        slim_pod(&mut p);
        assert!(p.labels().is_empty());
        assert_eq!(p.execution().map(String::as_str), Some("run-1"));
        assert_eq!(p.job_uid().map(String::as_str), Some("uid-1"));
        assert!(p.finalizers().is_empty());
    }

    #[test]
    fn a_finished_execution_keeps_only_what_its_expiry_reads() {
        let spec: sandrun_crds::ExecutionSpec = serde_json::from_value(serde_json::json!({
            "language": "python", "source": {"files": [{"path": "main.py", "content": "print(1)"}]},
            "stdin": "x", "ttlSecondsAfterFinished": 60
        }))
        .unwrap();
        let status = |phase| sandrun_crds::ExecutionStatus {
            phase,
            stdout: Some("1\n".into()),
            conditions: serde_json::from_value(serde_json::json!([
                {"type": "Complete", "status": "True", "reason": "Completed", "message": "",
                 "lastTransitionTime": "2027-01-15T08:00:00Z"}
            ]))
            .unwrap(),
            completion_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default())),
            ..Default::default()
        };
        let mut running = Execution::new("run-1", spec.clone());
        running.status = Some(status(sandrun_crds::Phase::Running));
        let before = running.clone();
        slim_execution(&mut running);
        assert_eq!(running.spec, before.spec, "a run in flight still needs its program");
        assert_eq!(running.status, before.status);

        let mut done = Execution::new("run-1", spec);
        done.status = Some(status(sandrun_crds::Phase::Succeeded));
        slim_execution(&mut done);
        assert!(done.spec.source.is_none() && done.spec.stdin.is_none());
        assert_eq!(done.spec.ttl_seconds_after_finished, Some(60));
        let status = done.status.unwrap();
        assert!(status.stdout.is_none() && status.is_terminal() && status.completion_time.is_some());
        assert!(status.conditions.is_empty());
    }
}
