use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("watch: {0}")]
    Watch(#[from] kube::runtime::watcher::Error),
    #[error("gateway HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("gateway WebSocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout { what: String, seconds: u64 },
    /// The cluster is not in the state the benchmark needs, or a run went wrong.
    #[error("{0}")]
    Bench(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub fn bench_error(message: impl Into<String>) -> Error {
    Error::Bench(message.into())
}
