//! Process start-up: flags, keys, serving until a signal, and the
//! graceful shutdown that follows it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use clap::Parser;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::auth::{Keys, KeysError};
use crate::router::{router, Limits};
use crate::state::AppState;

/// How long a shutdown waits for open sockets' close handshakes, each of
/// which waits at most 5 s for the client's close frame; well inside the
/// pod's 30 s grace period.
const SOCKETS_CLOSE_WITHIN: Duration = Duration::from_secs(10);

#[derive(Parser, Debug, Clone)]
#[command(name = "sandrun-gateway", version, about = "REST and WebSocket gateway to sandrun Executions")]
pub struct Args {
    #[arg(long, env = "SANDRUN_GATEWAY_ADDR", default_value = "0.0.0.0:8090")]
    pub listen: SocketAddr,
    /// Where `/metrics` is served: not the API's port, so neither the
    /// Service nor the Ingress reaches it.
    #[arg(long, env = "SANDRUN_GATEWAY_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,
    /// YAML file with `keys: [{name, token, namespace, requestsPerSecond, burst}]`.
    #[arg(long, env = "SANDRUN_KEYS_FILE", conflicts_with = "keys_secret")]
    pub keys_file: Option<String>,
    /// The same YAML in key `keys.yaml` of a Secret, as NAMESPACE/NAME.
    #[arg(long, env = "SANDRUN_KEYS_SECRET")]
    pub keys_secret: Option<String>,
    #[arg(long, env = "SANDRUN_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Browser origins allowed (repeat, or `*`).
    #[arg(long = "cors-origin", env = "SANDRUN_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Delete Executions made through the gateway this long after they finish.
    #[arg(long, env = "SANDRUN_EXECUTION_TTL_SECONDS", default_value_t = 3600)]
    pub execution_ttl_seconds: u32,
    #[arg(long, env = "SANDRUN_LOG_JSON")]
    pub log_json: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("connecting to Kubernetes: {0}")]
    Connect(#[source] kube::Error),
    #[error("give --keys-file or --keys-secret")]
    NoKeys,
    #[error("reading {path}: {source}")]
    ReadKeys {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("keys secret must be NAMESPACE/NAME, got {0:?}")]
    SecretName(String),
    #[error("reading Secret {name}: {source}")]
    Secret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("Secret {0} has no keys.yaml entry")]
    SecretEntry(String),
    #[error(transparent)]
    Keys(#[from] KeysError),
    #[error("serving on {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

async fn load_keys(args: &Args, client: &Client) -> Result<Keys, StartError> {
    Ok(Keys::from_yaml(&read_keys(args, client).await?)?)
}

/// How often the keys file or Secret is read again: a revoked key stops
/// working within this long (open sockets of it are not closed).
const KEYS_RELOAD: Duration = Duration::from_secs(10);

/// Reads the keys again every [`KEYS_RELOAD`] and takes them when they changed.
fn reload_keys(args: Args, client: Client, keys: Keys) {
    tokio::spawn(async move {
        let mut last = read_keys(&args, &client).await.ok();
        loop {
            tokio::time::sleep(KEYS_RELOAD).await;
            match read_keys(&args, &client).await {
                Ok(text) if last.as_ref() != Some(&text) => match keys.reload(&text) {
                    Ok(()) => {
                        info!("keys reloaded");
                        last = Some(text);
                    }
                    Err(error) => warn!(%error, "the changed keys do not parse; keeping the ones before"),
                },
                Ok(_) => {}
                Err(error) => warn!(%error, "reading the keys again"),
            }
        }
    });
}

async fn read_keys(args: &Args, client: &Client) -> Result<String, StartError> {
    if let Some(path) = &args.keys_file {
        return std::fs::read_to_string(path).map_err(|source| StartError::ReadKeys { path: path.clone(), source });
    }
    let Some(full) = &args.keys_secret else { return Err(StartError::NoKeys) };
    let (namespace, name) = full.split_once('/').ok_or_else(|| StartError::SecretName(full.clone()))?;
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|source| StartError::Secret { name: full.clone(), source })?;
    let bytes =
        secret.data.and_then(|d| d.get("keys.yaml").cloned()).ok_or_else(|| StartError::SecretEntry(full.clone()))?;
    Ok(String::from_utf8_lossy(&bytes.0).into_owned())
}

pub async fn run(args: Args) -> Result<(), StartError> {
    let client = Client::try_default().await.map_err(StartError::Connect)?;
    let keys = load_keys(&args, &client).await?;
    reload_keys(args.clone(), client.clone(), keys.clone());
    let state = Arc::new(AppState::new(client, keys, args.execution_ttl_seconds));
    let limits = Limits { max_body_bytes: args.max_body_bytes, cors_origins: args.cors_origins.clone() };
    let listener =
        TcpListener::bind(args.listen).await.map_err(|source| StartError::Serve { addr: args.listen, source })?;
    let metrics = TcpListener::bind(args.metrics_listen)
        .await
        .map_err(|source| StartError::Serve { addr: args.metrics_listen, source })?;
    info!(addr = %args.listen, metrics = %args.metrics_listen, "sandrun-gateway listening");
    let metrics_app = crate::router::metrics_router(state.clone());
    tokio::spawn(async move {
        if let Err(error) = axum::serve(metrics, metrics_app).await {
            warn!(%error, "serving /metrics");
        }
    });
    serve(listener, state, &limits, shutdown_signal())
        .await
        .map_err(|source| StartError::Serve { addr: args.listen, source })
}

/// Serves until `stop` completes. Then open sockets are closed with 1001
/// (going away), requests in flight finish, and it waits for the sockets'
/// close handshakes before it returns.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    limits: &Limits,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone(), limits);
    // Nagle's algorithm would hold an update written right after another
    // until the client acknowledges the first (up to its delayed-ACK 40 ms).
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            warn!(%error, "could not set TCP_NODELAY");
        }
    });
    let sessions = state.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            stop.await;
            sessions.shutdown.begin();
        })
        .await?;
    state.shutdown.sessions_ended(SOCKETS_CLOSE_WITHIN).await;
    Ok(())
}

async fn shutdown_signal() {
    sandrun_telemetry::shutdown_signal().await;
    info!("shutting down");
}
