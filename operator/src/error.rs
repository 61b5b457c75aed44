//! Why a reconcile failed. Each is retried (see `reconcile::error_policy`);
//! start-up failures, which end the process, are `startup::StartError`.

use thiserror::Error;

use crate::store::NotReady;

#[derive(Debug, Error)]
pub enum Error {
    #[error("reading {kind} {name}: {source}")]
    Read {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing status of {name}: {source}")]
    WriteStatus {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting {kind} {name}: {source}")]
    Delete {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    StoresNotReady(#[from] NotReady),
    #[error("the Execution has no namespace")]
    NoNamespace,
}

impl Error {
    /// Short label for the failures metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Read { .. } => "read",
            Error::Apply { .. } => "apply",
            Error::WriteStatus { .. } => "write_status",
            Error::Delete { .. } => "delete",
            Error::NoNamespace => "no_namespace",
            Error::StoresNotReady(_) => "stores_not_ready",
        }
    }
}

/// Whether an API error means our request was invalid (HTTP 422/400), not
/// that the cluster is briefly unhappy.
pub fn is_invalid(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 422 || status.code == 400)
}

pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}

/// A precondition (uid, resourceVersion) no longer holds.
pub fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 409)
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
