//! Jobs and pods as they come off the watch (views) and as they are kept
//! (records). A view is deserialized straight from the API into only the
//! fields the operator reads: k8s-openapi's own types cost 2–3 KiB each even
//! with the spec dropped. A record is built from a view once, where the
//! event reaches its store, and holds what reconciles read in a fraction
//! of a view's memory (most of which is `ObjectMeta`'s empty fields). At ten
//! thousand runs in flight these were most of the operator's memory.
//! Field names follow the API's, so code reads them as it would the full
//! objects.

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::{ContainerState, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::{Resource, ResourceExt};
use sandrun_crds::{Execution, ExecutionStatus};
use serde::Deserialize;

use crate::labels::{CLAIMED_BY_KEY, EXECUTION_KEY};

/// The Job controller's label tying a pod to its Job.
pub const JOB_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";

#[derive(Resource, Deserialize, Clone, Debug, Default)]
#[resource(inherit = Job)]
pub struct JobView {
    pub metadata: ObjectMeta,
    pub status: Option<JobViewStatus>,
}

#[derive(Deserialize, Clone, Debug, Default)]
pub struct JobViewStatus {
    pub conditions: Option<Vec<JobCondition>>,
}

#[derive(Resource, Deserialize, Clone, Debug, Default)]
#[resource(inherit = Pod)]
pub struct PodView {
    pub metadata: ObjectMeta,
    pub status: Option<PodViewStatus>,
}

#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodViewStatus {
    pub phase: Option<String>,
    /// "Evicted", with the kubelet's `message`, when it evicted the pod.
    pub reason: Option<String>,
    pub message: Option<String>,
    pub conditions: Option<Vec<PodCondition>>,
    pub container_statuses: Option<Vec<ContainerView>>,
    pub init_container_statuses: Option<Vec<ContainerView>>,
}

#[derive(Deserialize, Clone, Debug, Default)]
pub struct ContainerView {
    pub name: String,
    pub state: Option<ContainerState>,
}

/// The Execution a Job or pod belongs to (its label).
pub fn execution_of(object: &impl ResourceExt) -> Option<&String> {
    object.labels().get(EXECUTION_KEY)
}

/// Drops the bookkeeping no record or trigger reads (managed fields,
/// annotations, finalizers), as a Job or pod comes off the watch: several
/// KiB a pod that would otherwise ride along to the controller's triggers,
/// all of them at once while a re-list is buffered.
pub fn strip_bookkeeping(metadata: &mut ObjectMeta) {
    metadata.managed_fields = None;
    metadata.annotations = None;
    metadata.finalizers = None;
}

/// A Job as it is kept.
#[derive(Clone, Debug, Default)]
pub struct JobRecord {
    pub name: String,
    pub uid: Option<String>,
    /// Tell this Execution's Job from one left by an earlier Execution of
    /// the same name.
    pub owner_uids: Vec<String>,
    /// A warm pool's Job a run claimed: that run's uid.
    pub claimed_by: Option<String>,
    pub status: Option<JobViewStatus>,
}

impl From<&JobView> for JobRecord {
    fn from(job: &JobView) -> Self {
        Self {
            name: job.name_any(),
            uid: job.uid(),
            owner_uids: job.owner_references().iter().map(|owner| owner.uid.clone()).collect(),
            claimed_by: job.labels().get(CLAIMED_BY_KEY).cloned(),
            status: job.status.clone(),
        }
    }
}

/// A pod as it is kept: identity, the Job that made it, and what the
/// status is derived from. Of the conditions only scheduling is read.
#[derive(Clone, Debug, Default)]
pub struct PodRecord {
    pub name: String,
    pub created: Option<Time>,
    pub job_uid: Option<String>,
    pub status: Option<PodViewStatus>,
}

impl From<&PodView> for PodRecord {
    fn from(pod: &PodView) -> Self {
        let mut status = pod.status.clone();
        if let Some(conditions) = status.as_mut().and_then(|s| s.conditions.as_mut()) {
            conditions.retain(|c| c.type_ == "PodScheduled");
        }
        Self {
            name: pod.name_any(),
            created: pod.metadata.creation_timestamp.clone(),
            job_uid: pod.labels().get(JOB_UID_LABEL).cloned(),
            status,
        }
    }
}

/// The one change made to the controller's own Executions, as they come
/// off the watch into its store: kubectl's copy of the whole object it
/// applied (as large as the spec) goes, and of a finished run only what
/// its expiry reads stays. Kept, program, output and conditions would be
/// most of the store (two 64 KiB streams per run by default).
pub fn slim_execution(execution: &mut Execution) {
    execution.managed_fields_mut().clear();
    execution.annotations_mut().remove("kubectl.kubernetes.io/last-applied-configuration");
    let Some(status) = execution.status.as_mut().filter(|s| s.is_terminal()) else { return };
    // Phase, reason and completion time stay: what readers of this store
    // (metrics, logs) would want, and all that expiry reads.
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pod_record_keeps_what_status_derivation_reads() {
        let pod: PodView = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "sandrun-hello-x1", "namespace": "team-a", "creationTimestamp": "2027-01-15T08:00:00Z",
                "labels": {"job-name": "sandrun-hello", JOB_UID_LABEL: "uid-1", EXECUTION_KEY: "hello"},
                "managedFields": [{"manager": "kubelet"}]},
            "spec": {"containers": [{"name": "run", "image": "python"}]},
            "status": {"phase": "Failed", "reason": "Evicted", "message": "low on memory", "podIP": "10.0.0.1",
                "conditions": [{"type": "Ready", "status": "True"},
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}],
                "containerStatuses": [{"name": "run", "image": "python", "imageID": "sha256:x", "ready": false,
                    "restartCount": 0, "state": {"terminated": {"exitCode": 137, "reason": "Error"}}}]}
        }))
        .unwrap();
        assert_eq!(execution_of(&pod).map(String::as_str), Some("hello"));
        let record = PodRecord::from(&pod);
        assert_eq!((record.name.as_str(), record.job_uid.as_deref()), ("sandrun-hello-x1", Some("uid-1")));
        assert!(record.created.is_some());
        let status = record.status.unwrap();
        assert_eq!((status.phase.as_deref(), status.reason.as_deref()), (Some("Failed"), Some("Evicted")));
        let run = &status.container_statuses.unwrap()[0];
        assert_eq!(run.state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| t.exit_code), Some(137));
        let conditions = status.conditions.unwrap();
        assert_eq!(conditions.len(), 1, "only scheduling is read");
        assert_eq!(conditions[0].reason.as_deref(), Some("Unschedulable"));
    }

    #[test]
    fn a_job_record_keeps_its_owner_and_conditions() {
        let job: JobView = serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "sandrun-hello", "uid": "job-1", "ownerReferences": [
                {"apiVersion": "sandrun.dev/v1alpha1", "kind": "Execution", "name": "hello", "uid": "uid-1"}]},
            "spec": {"template": {"spec": {"containers": [{"name": "run"}]}}},
            "status": {"active": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}
        }))
        .unwrap();
        let record = JobRecord::from(&job);
        assert_eq!(
            (record.name.as_str(), record.uid.as_deref(), record.owner_uids.as_slice()),
            ("sandrun-hello", Some("job-1"), ["uid-1".to_owned()].as_slice())
        );
        assert_eq!(record.status.and_then(|s| s.conditions).unwrap()[0].reason.as_deref(), Some("DeadlineExceeded"));
    }

    #[test]
    fn a_finished_execution_keeps_only_what_its_expiry_reads() {
        let spec: sandrun_crds::ExecutionSpec = serde_json::from_value(json!({
            "language": "python", "source": {"files": [{"path": "main.py", "content": "print(1)"}]},
            "stdin": "x", "ttlSecondsAfterFinished": 60
        }))
        .unwrap();
        let status = |phase| ExecutionStatus {
            phase,
            stdout: Some("1\n".into()),
            conditions: serde_json::from_value(json!([
                {"type": "Complete", "status": "True", "reason": "Completed", "message": "",
                 "lastTransitionTime": "2027-01-15T08:00:00Z"}
            ]))
            .unwrap(),
            completion_time: Some(Time(Default::default())),
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
