//! The handlers for operators rather than clients: readiness and metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::state::AppState;

/// Ready when the API server answers, the CRD exists and the watch has
/// its first list.
pub async fn ready(State(state): State<Arc<AppState>>) -> (StatusCode, String) {
    match sandrun_telemetry::api_ready(&state.client).await {
        Ok(()) if state.hub.is_ready() => (StatusCode::OK, "ok\n".to_owned()),
        Ok(()) => (StatusCode::SERVICE_UNAVAILABLE, "watch not synced yet\n".to_owned()),
        Err(why) => {
            // The reason is for the gateway's log: this answer is public.
            tracing::warn!(%why, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "the Kubernetes API is not reachable\n".to_owned())
        }
    }
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    sandrun_telemetry::metrics_response(&state.registry)
}
