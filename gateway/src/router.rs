//! The router: every route, its handler and its limits.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method};
use axum::routing::get;
use axum::{middleware, Json, Router};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::ApiError;
use crate::metrics::track;
use crate::state::AppState;
use crate::{openapi, ops, rest, web, ws};

pub struct Limits {
    /// Largest request body; a bigger one is answered 413.
    pub max_body_bytes: usize,
    /// Origins allowed to call from a browser; empty means no CORS headers.
    pub cors_origins: Vec<String>,
}

pub fn router(state: Arc<AppState>, limits: &Limits) -> Router {
    let api = Router::new()
        .route("/v1/executions", get(rest::list).post(rest::submit))
        .route("/v1/executions/{id}", get(rest::get).delete(rest::cancel))
        .route(crate::auth::WS_PATH, get(ws::upgrade))
        .route("/v1/openapi.json", get(|| async { Json(openapi::document()) }))
        .fallback(|| async { ApiError::NotFound("no such route".to_owned()) })
        // Before CORS, so that preflights still reach the CORS layer.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes));
    let api = match cors(&limits.cors_origins) {
        Some(layer) => api.layer(layer),
        None => api,
    };
    let ops = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ops::ready))
        // The playground page: no key needed (the page asks for one).
        .merge(web::router())
        .method_not_allowed_fallback(method_not_allowed);
    api.merge(ops).layer(middleware::from_fn_with_state(state.metrics.clone(), track)).with_state(state)
}

/// `/metrics` alone, for its own port: the API's port is public.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new().route("/metrics", get(ops::metrics)).with_state(state)
}

/// axum's own 405 has an empty body; this one is JSON. The Allow header stays.
async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed here"))
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(Duration::from_secs(600)),
    )
}
