//! The handlers for operators rather than clients: readiness and metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::state::AppState;

/// How long one look at the API server answers `/readyz`: the route is
/// public, and each look is a request to the API server.
const READY_FOR: Duration = Duration::from_secs(5);

/// Ready when the API server answers, the CRD exists and the watch has
/// its first list. The API server is asked at most once per `READY_FOR`.
pub async fn ready(State(state): State<Arc<AppState>>) -> (StatusCode, String) {
    let recent = state.last_api_check.lock().ok().and_then(|last| *last).filter(|(at, _)| at.elapsed() < READY_FOR);
    let api = match recent {
        Some((_, ok)) => ok.then_some(()).ok_or_else(|| "the Kubernetes API was not reachable".to_owned()),
        None => {
            let checked = sandrun_telemetry::api_ready(&state.client).await.map_err(|why| why.to_string());
            if let Ok(mut last) = state.last_api_check.lock() {
                *last = Some((Instant::now(), checked.is_ok()));
            }
            checked
        }
    };
    match api {
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
