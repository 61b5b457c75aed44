//! Process start-up: flags, logging, and running controller and HTTP server
//! side by side until a shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use kube::Client;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::info;

use crate::config::OperatorConfig;
use crate::controller::Feeds;
use crate::delivery::Deliveries;
use crate::events::{EventQueue, Reporter};
use crate::http::{router, HttpState};
use crate::labels::FIELD_MANAGER;
use crate::leader::{Election, ElectionError, Leadership};
use crate::metrics::Metrics;
use crate::reconcile::Context;
use crate::store::Stores;

/// Why the operator could not start, or stopped: each ends the process.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
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
    #[error(transparent)]
    Election(#[from] ElectionError),
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

type Result<T, E = StartError> = std::result::Result<T, E>;

#[derive(Parser, Debug)]
#[command(name = "sandrun-operator", version, about = "Runs each Execution as a gVisor Job")]
pub struct Args {
    /// YAML file overriding runtime images and commands.
    #[arg(long, env = "SANDRUN_CONFIG")]
    pub config: Option<String>,
    /// Watch one namespace only (default: all).
    #[arg(long, env = "SANDRUN_NAMESPACE")]
    pub namespace: Option<String>,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "SANDRUN_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Executions reconciled at once. Reconciles mostly wait on the API
    /// server, so many can share a core.
    #[arg(long, env = "SANDRUN_CONCURRENCY", default_value_t = 64)]
    pub concurrency: u16,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "SANDRUN_LOG_JSON")]
    pub log_json: bool,
    /// Reconcile only while holding a Lease, so that replicas take turns.
    #[arg(long, env = "SANDRUN_LEADER_ELECT")]
    pub leader_elect: bool,
    #[arg(long, env = "SANDRUN_LEASE_NAME", default_value = "sandrun-operator")]
    pub lease_name: String,
    /// Namespace of the Lease (in a pod: its own, from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// How long a crashed leader blocks the others.
    #[arg(long, env = "SANDRUN_LEASE_DURATION_SECONDS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(2..=300))]
    pub lease_duration_seconds: u64,
}

fn load_config(path: Option<&str>) -> Result<OperatorConfig> {
    let Some(path) = path else {
        return Ok(OperatorConfig::default());
    };
    let text =
        std::fs::read_to_string(path).map_err(|source| StartError::ConfigRead { path: path.to_owned(), source })?;
    OperatorConfig::from_yaml(&text).map_err(|source| StartError::ConfigParse { path: path.to_owned(), source })
}

pub async fn run(args: Args) -> Result<()> {
    let config = load_config(args.config.as_deref())?;
    let client = Client::try_default().await.map_err(StartError::Connect)?;
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let instance = std::env::var("POD_NAME").ok().or_else(hostname).unwrap_or_else(|| FIELD_MANAGER.to_owned());
    let reporter = Reporter { controller: FIELD_MANAGER.to_owned(), instance: instance.clone() };
    let election = args.leader_elect.then(|| Election {
        lease_name: args.lease_name.clone(),
        namespace: args.lease_namespace.clone(),
        // Per process, not per pod: a container restarted after a crash must
        // not take its dead predecessor's unexpired lease for its own.
        identity: format!("{instance}_{}", k8s_openapi::jiff::Timestamp::now().as_millisecond()),
        lease_duration_seconds: args.lease_duration_seconds,
    });
    let (stores, writers) = Stores::new();
    let (deliveries, delivered) = Deliveries::new(client.clone(), metrics.clone());
    let feeds = Feeds { writers, delivered };
    let events = EventQueue::start(client.clone(), reporter, metrics.events_dropped.clone());
    let ctx = Arc::new(Context { events, client: client.clone(), config, metrics, stores, deliveries });

    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .map_err(|source| StartError::Serve { addr: args.http_addr.to_string(), source })?;
    info!(addr = %args.http_addr, namespace = args.namespace.as_deref().unwrap_or("*"), "sandrun-operator starting");
    let app = router(Arc::new(HttpState { registry, client }));
    let http_addr = args.http_addr;
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = axum::serve(listener, app).with_graceful_shutdown(stopped(stop_rx.clone()));
    let signal_tx = stop_tx.clone();
    tokio::spawn(async move {
        sandrun_telemetry::shutdown_signal().await;
        info!("shutting down");
        let _ = signal_tx.send(true);
    });
    let work = async move {
        let outcome = match election {
            Some(election) => lead(ctx, feeds, &args, &election, stop_rx).await,
            None => {
                crate::controller::run(ctx, feeds, args.namespace, args.concurrency, stopped(stop_rx)).await;
                Ok(())
            }
        };
        // Whatever ended the work ends the process: a replica that lost its
        // lease restarts as a follower.
        let _ = stop_tx.send(true);
        outcome
    };
    let (served, worked) = tokio::join!(server, work);
    served.map_err(|source| StartError::Serve { addr: http_addr.to_string(), source })?;
    worked
}

/// Reconciles while this replica holds the lease.
async fn lead(
    ctx: Arc<Context>,
    feeds: Feeds,
    args: &Args,
    election: &Election,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let mut leadership = Leadership::campaign(ctx.client.clone(), election).await?;
    info!(lease = %election.lease_name, namespace = %election.namespace, identity = %election.identity,
          "waiting to lead");
    tokio::select! {
        () = stopped(stop.clone()) => {
            leadership.step_down().await;
            return Ok(());
        }
        acquired = leadership.acquired() => acquired?,
    }
    info!(identity = %election.identity, "leading");
    ctx.metrics.leader.set(1);
    let controller =
        crate::controller::run(ctx.clone(), feeds, args.namespace.clone(), args.concurrency, stopped(stop));
    tokio::pin!(controller);
    tokio::select! {
        () = &mut controller => {
            ctx.metrics.leader.set(0);
            leadership.step_down().await;
            Ok(())
        }
        // Another replica may already be reconciling: stop at once rather
        // than drain (reconciles are idempotent, so a cut one is redone).
        () = leadership.lost() => {
            ctx.metrics.leader.set(0);
            Err(StartError::LeadershipLost)
        }
    }
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned())
}
