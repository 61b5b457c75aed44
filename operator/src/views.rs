//! Jobs and pods as the operator reads them: deserialized straight from
//! the watch into only the fields a status is derived from. k8s-openapi's
//! own types cost 2–3 KiB each even with the spec dropped (it is stored
//! inline), which at ten thousand runs was most of the operator's memory.
//! Field names follow the API's, so code reads them as it would the full
//! objects.

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::{ContainerState, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use serde::Deserialize;

use crate::children::OfExecution;
use crate::labels::EXECUTION_KEY;

/// The Job controller's label tying a pod to its Job.
pub const JOB_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";

#[derive(Resource, Deserialize, Clone, Debug, Default)]
#[resource(inherit = Job)]
pub struct JobView {
    pub metadata: ObjectMeta,
    pub status: Option<JobViewStatus>,
    /// The one label that is read, moved out of `metadata.labels` when the
    /// Job is stored.
    #[serde(skip)]
    pub execution: Option<String>,
}

impl JobView {
    /// Moves the label that is read into its field and drops the rest.
    pub fn keep_only_read_labels(&mut self) {
        let mut labels = self.metadata.labels.take().unwrap_or_default();
        self.execution = self.execution.take().or_else(|| labels.remove(EXECUTION_KEY));
    }
}

impl OfExecution for JobView {
    type Stored = JobRecord;

    fn execution(&self) -> Option<&String> {
        self.execution.as_ref().or_else(|| self.labels().get(EXECUTION_KEY))
    }

    fn stored(&self) -> JobRecord {
        JobRecord::from(self)
    }
}

/// A Job as it is kept: what reconciles read of it, in about a fifth of a
/// view's memory (most of which is `ObjectMeta`'s mostly empty fields).
#[derive(Clone, Debug, Default)]
pub struct JobRecord {
    pub name: String,
    pub uid: Option<String>,
    /// Tell this Execution's Job from one left by an earlier Execution of
    /// the same name.
    pub owner_uids: Vec<String>,
    pub status: Option<JobViewStatus>,
}

impl From<&JobView> for JobRecord {
    fn from(job: &JobView) -> Self {
        Self {
            name: job.name_any(),
            uid: job.uid(),
            owner_uids: job.owner_references().iter().map(|owner| owner.uid.clone()).collect(),
            status: job.status.clone(),
        }
    }
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
    /// The two labels that are read, moved out of `metadata.labels` when
    /// the pod is stored: a label map costs more than the rest of a pod.
    #[serde(skip)]
    pub execution: Option<String>,
    #[serde(skip)]
    pub job_uid: Option<String>,
}

impl OfExecution for PodView {
    type Stored = PodView;

    fn execution(&self) -> Option<&String> {
        self.execution.as_ref().or_else(|| self.labels().get(EXECUTION_KEY))
    }

    fn stored(&self) -> PodView {
        self.clone()
    }
}

impl PodView {
    /// The uid of the Job that made the pod.
    pub fn job_uid(&self) -> Option<&String> {
        self.job_uid.as_ref().or_else(|| self.labels().get(JOB_UID_LABEL))
    }

    /// Moves the labels that are read into their fields and drops the rest.
    pub fn keep_only_read_labels(&mut self) {
        let mut labels = self.metadata.labels.take().unwrap_or_default();
        self.execution = self.execution.take().or_else(|| labels.remove(EXECUTION_KEY));
        self.job_uid = self.job_uid.take().or_else(|| labels.remove(JOB_UID_LABEL));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_from_the_api_keeps_what_status_derivation_reads() {
        let pod: PodView = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "sandrun-hello-x1", "namespace": "team-a", "labels": {"job-name": "sandrun-hello"}},
            "spec": {"containers": [{"name": "run", "image": "python"}]},
            "status": {"phase": "Failed", "reason": "Evicted", "message": "low on memory", "podIP": "10.0.0.1",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [{"name": "run", "image": "python", "imageID": "sha256:x", "ready": false,
                    "restartCount": 0, "state": {"terminated": {"exitCode": 137, "reason": "Error"}}}]}
        }))
        .unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("sandrun-hello-x1"));
        let status = pod.status.unwrap();
        assert_eq!((status.phase.as_deref(), status.reason.as_deref()), (Some("Failed"), Some("Evicted")));
        let run = &status.container_statuses.unwrap()[0];
        assert_eq!(run.state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| t.exit_code), Some(137));
        assert_eq!(status.conditions.unwrap()[0].type_, "PodScheduled");
    }

    #[test]
    fn a_job_from_the_api_keeps_its_owner_and_conditions() {
        let job: JobView = serde_json::from_value(serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "sandrun-hello", "ownerReferences": [
                {"apiVersion": "sandrun.dev/v1alpha1", "kind": "Execution", "name": "hello", "uid": "uid-1"}]},
            "spec": {"template": {"spec": {"containers": [{"name": "run"}]}}},
            "status": {"active": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}
        }))
        .unwrap();
        let record = JobRecord::from(&job);
        assert_eq!(
            (record.name.as_str(), record.owner_uids.as_slice()),
            ("sandrun-hello", ["uid-1".to_owned()].as_slice())
        );
        assert_eq!(record.status.and_then(|s| s.conditions).unwrap()[0].reason.as_deref(), Some("DeadlineExceeded"));
    }
}
