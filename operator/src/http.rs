//! `/metrics`, `/healthz` and `/readyz`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use kube::Client;
use prometheus_client::registry::Registry;

pub struct HttpState {
    pub registry: Registry,
    pub client: Client,
}

pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    sandrun_telemetry::metrics_response(&state.registry)
}

/// Ready when the API server answers and the Execution CRD is installed.
async fn ready(State(state): State<Arc<HttpState>>) -> (StatusCode, String) {
    match sandrun_telemetry::api_ready(&state.client).await {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}
