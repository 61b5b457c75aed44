//! What every sandrun server process shares: logging set-up, the `/metrics`
//! response, the API-server readiness probe, and shutdown on signals.

use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use kube::api::ListParams;
use kube::{Api, Client};
use prometheus_client::registry::Registry;
use sandrun_crds::Execution;
use tracing_subscriber::EnvFilter;

/// `RUST_LOG` filter (default `info,kube=warn`), text or JSON lines.
pub fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    // Colour only for a person at a terminal, not in `kubectl logs`.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The registry in the OpenMetrics text format.
pub fn metrics_response(registry: &Registry) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => {
            let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
            (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response(),
    }
}

/// Whether the API server answers within 2 s and serves Executions (so the
/// CRD is installed): the heart of both processes' `/readyz`.
pub async fn api_ready(client: &Client) -> Result<(), String> {
    let api: Api<Execution> = Api::all(client.clone());
    match tokio::time::timeout(Duration::from_secs(2), api.list_metadata(&ListParams::default().limit(1))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("cannot list Executions: {e}")),
        Err(_) => Err("API server did not answer in 2s".to_owned()),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
