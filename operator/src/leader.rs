//! Leader election through a `coordination.k8s.io` Lease: of several
//! replicas only the holder reconciles; the others wait to take over when
//! its lease runs out (a crash) or is released (a clean shutdown).

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError, LeaseParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::labels::FIELD_MANAGER;

#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("leader election: {0}")]
    Campaign(#[source] LeaseManagerError),
    #[error("leader election stopped")]
    Stopped,
}

type Result<T, E = ElectionError> = std::result::Result<T, E>;

#[derive(Clone, Debug)]
pub struct Election {
    pub lease_name: String,
    pub namespace: String,
    /// Who holds the lease: the pod name, so `kubectl get lease` says which
    /// replica leads.
    pub identity: String,
    pub lease_duration_seconds: u64,
}

impl Election {
    /// Renew a third of the duration before expiry: two renewals can fail
    /// before another replica may take over.
    fn params(&self) -> LeaseParams {
        let duration = self.lease_duration_seconds.max(2);
        let grace = (duration / 3).max(1);
        LeaseParams::new(self.identity.clone(), duration, grace).with_field_manager(FIELD_MANAGER)
    }
}

/// A running campaign for the lease, renewing it in the background while held.
pub struct Leadership {
    held: watch::Receiver<bool>,
    task: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
}

impl Leadership {
    pub async fn campaign(client: Client, election: &Election) -> Result<Self> {
        let manager = LeaseManagerBuilder::new(client, &election.lease_name)
            .with_namespace(&election.namespace)
            .with_parameters(election.params())
            .build()
            .await
            .map_err(ElectionError::Campaign)?;
        let (held, task) = manager.watch().await;
        Ok(Self { held, task })
    }

    /// Waits until this replica holds the lease.
    pub async fn acquired(&mut self) -> Result<()> {
        match self.held.wait_for(|held| *held).await {
            Ok(_) => Ok(()),
            Err(_) => Err(ElectionError::Stopped),
        }
    }

    /// Resolves once the lease is no longer ours (taken, or the campaign died).
    pub async fn lost(&mut self) {
        let _ = self.held.wait_for(|held| !*held).await;
    }

    /// Gives the lease up at once, so the next replica need not wait for it
    /// to expire.
    pub async fn step_down(self) {
        drop(self.held);
        match self.task.await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => warn!(%error, "releasing the lease"),
            Err(error) => warn!(%error, "lease task"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn election(seconds: u64) -> Election {
        Election {
            lease_name: "sandrun-operator".into(),
            namespace: "sandrun-system".into(),
            identity: "pod-a".into(),
            lease_duration_seconds: seconds,
        }
    }

    #[test]
    fn grace_is_always_shorter_than_the_lease() {
        // LeaseParams panics unless 0 < grace < duration; no flag value may reach that.
        for seconds in [0, 1, 2, 3, 15, 60] {
            let _ = election(seconds).params();
        }
    }
}
