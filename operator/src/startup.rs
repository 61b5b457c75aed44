//! Process start-up: flags, logging, and running controller and HTTP server
//! side by side until a shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use kube::runtime::events::{Recorder, Reporter};
use kube::Client;
use prometheus_client::registry::Registry;
use tracing::info;

use crate::config::OperatorConfig;
use crate::error::{Error, Result};
use crate::http::{router, HttpState};
use crate::labels::FIELD_MANAGER;
use crate::metrics::Metrics;
use crate::reconcile::Context;

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
    /// Executions reconciled at once.
    #[arg(long, env = "SANDRUN_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "SANDRUN_LOG_JSON")]
    pub log_json: bool,
}

fn load_config(path: Option<&str>) -> Result<OperatorConfig> {
    let Some(path) = path else {
        return Ok(OperatorConfig::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead { path: path.to_owned(), source })?;
    OperatorConfig::from_yaml(&text).map_err(|source| Error::ConfigParse { path: path.to_owned(), source })
}

pub async fn run(args: Args) -> Result<()> {
    let config = load_config(args.config.as_deref())?;
    let client = Client::try_default().await.map_err(Error::Connect)?;
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let reporter =
        Reporter { controller: FIELD_MANAGER.to_owned(), instance: std::env::var("POD_NAME").ok().or_else(hostname) };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client: client.clone(),
        config,
        metrics,
    });

    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .map_err(|source| Error::Serve { addr: args.http_addr.to_string(), source })?;
    info!(addr = %args.http_addr, namespace = args.namespace.as_deref().unwrap_or("*"), "sandrun-operator starting");
    let app = router(Arc::new(HttpState { registry, client }));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut http_stop = stop_rx.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = http_stop.wait_for(|stop| *stop).await;
    });
    let mut controller_stop = stop_rx;
    let controller = crate::controller::run(ctx, args.namespace, args.concurrency, async move {
        let _ = controller_stop.wait_for(|stop| *stop).await;
    });
    let signals = async move {
        sandrun_telemetry::shutdown_signal().await;
        info!("shutting down");
        let _ = stop_tx.send(true);
    };
    let (served, (), ()) = tokio::join!(server, controller, signals);
    served.map_err(|source| Error::Serve { addr: args.http_addr.to_string(), source })
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned())
}
