use thiserror::Error;

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
    #[error("the watches of Jobs, pods, ConfigMaps and NetworkPolicies have not listed yet (RBAC? see the watcher's warnings)")]
    StoresNotReady,
    #[error("the Execution has no namespace")]
    NoNamespace,
    #[error("reading config {path}: {source}")]
    ConfigRead {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing config {path}: {source}")]
    ConfigParse {
        path: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("leader election: {0}")]
    Election(#[source] kube_lease_manager::LeaseManagerError),
    #[error("leader election stopped")]
    ElectionStopped,
    #[error("lost the lease to another replica")]
    LeadershipLost,
    #[error("connecting to Kubernetes: {0}")]
    Connect(#[source] kube::Error),
    #[error("serving HTTP on {addr}: {source}")]
    Serve {
        addr: String,
        #[source]
        source: std::io::Error,
    },
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
            Error::StoresNotReady => "stores_not_ready",
            Error::ConfigRead { .. } | Error::ConfigParse { .. } => "config",
            Error::Connect(_) => "connect",
            Error::Election(_) | Error::ElectionStopped | Error::LeadershipLost => "election",
            Error::Serve { .. } => "serve",
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
