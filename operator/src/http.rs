//! `/metrics`, `/healthz` and `/readyz`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use kube::api::ListParams;
use kube::{Api, Client};
use prometheus_client::registry::Registry;
use sandrun_crds::Execution;

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

async fn metrics(State(state): State<Arc<HttpState>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
            body,
        ),
        Err(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/plain")], "encoding failed\n".to_owned())
        }
    }
}

/// Ready when the API server answers and the Execution CRD is installed.
async fn ready(State(state): State<Arc<HttpState>>) -> (StatusCode, String) {
    let api: Api<Execution> = Api::all(state.client.clone());
    match tokio::time::timeout(Duration::from_secs(2), api.list_metadata(&ListParams::default().limit(1))).await {
        Ok(Ok(_)) => (StatusCode::OK, "ok\n".to_owned()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("cannot list Executions: {e}\n")),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "API server did not answer in 2s\n".to_owned()),
    }
}
