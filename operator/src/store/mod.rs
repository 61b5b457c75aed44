//! What the operator knows of the objects it made, kept from its watches so
//! a reconcile reads memory instead of the API server. Each kind is kept as
//! compact records built where its events arrive (`records`), under one
//! re-list rule (`relist`).

mod jobs;
mod names;
mod pods;
pub mod records;
pub mod relist;
mod warm;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{self, ObjectRef, Store};
use sandrun_crds::SandboxPool;

pub use jobs::{JobSlot, Jobs};
pub use names::NameSet;
pub use pods::Pods;
pub use records::{JobRecord, JobView, PodRecord, PodView};
pub use relist::{triggers, Listed};
pub use warm::{claimable, WarmPod, WarmPods};

/// A watch that never lists (a missing RBAC verb) shows up here.
#[derive(Debug, thiserror::Error)]
#[error(
    "the watches of Jobs, pods, ConfigMaps and NetworkPolicies have not listed yet (RBAC? see the watcher's warnings)"
)]
pub struct NotReady;

/// Read side, shared by every reconcile.
#[derive(Clone)]
pub struct Stores {
    pub jobs: Listed<Jobs>,
    pub pods: Listed<Pods>,
    /// Only names: a reconcile only asks whether an inputs ConfigMap exists.
    pub config_maps: NameSet,
    pub policies: Store<NetworkPolicy>,
    pub pools: Store<SandboxPool>,
    /// Pool pods waiting for a program, fed from the same pod watch.
    pub warm: Listed<WarmPods>,
}

/// Write side of the kube store, fed by the controller's policy watch (the
/// others are fed through their own `apply`).
pub struct Writers {
    pub policies: reflector::store::Writer<NetworkPolicy>,
    pub pools: reflector::store::Writer<SandboxPool>,
}

impl Stores {
    pub fn new() -> (Self, Writers) {
        let (policies, policies_writer) = reflector::store();
        let (pools, pools_writer) = reflector::store();
        let stores = Self {
            jobs: Listed::default(),
            pods: Listed::default(),
            config_maps: NameSet::default(),
            policies,
            pools,
            warm: Listed::default(),
        };
        (stores, Writers { policies: policies_writer, pools: pools_writer })
    }

    /// Until every store has listed once, an absent object means nothing.
    /// Bounded, so a watch that can never list shows up as failing
    /// reconciles rather than as runs silently stuck.
    pub async fn wait_until_ready(&self, within: Duration) -> Result<(), NotReady> {
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
            _ => Err(NotReady),
        }
    }

    /// The Job of `execution`, or a marker where a forgotten one still is.
    pub fn job(&self, namespace: &str, execution: &str) -> Option<JobSlot> {
        self.jobs.of(namespace, execution)
    }

    pub fn config_map_exists(&self, namespace: &str, name: &str) -> bool {
        self.config_maps.contains(namespace, name)
    }

    pub fn policy(&self, namespace: &str, name: &str) -> Option<Arc<NetworkPolicy>> {
        self.policies.get(&ObjectRef::new(name).within(namespace))
    }

    /// The newest pod of `job`.
    pub fn newest_pod(&self, namespace: &str, execution: &str, job: &JobRecord) -> Option<Arc<PodRecord>> {
        self.pods.newest(namespace, execution, job.uid.as_deref()?)
    }

    /// Drops a finished run's Job and pods: once its Execution shows the
    /// result, nothing reads them again. The Job's slot stays until it is
    /// deleted, so a new run of the same name waits for it.
    pub fn forget_children(&self, namespace: &str, execution: &str) {
        self.jobs.forget(namespace, execution);
        self.pods.forget(namespace, execution);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_that_never_list_fail_the_wait_instead_of_hanging() {
        let (stores, _writers) = Stores::new();
        assert!(stores.wait_until_ready(Duration::from_millis(20)).await.is_err());
    }
}
