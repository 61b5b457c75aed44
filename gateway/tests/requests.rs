//! Request-level tests: the router answers bad requests with the right 4xx
//! and a JSON error body before anything reaches Kubernetes. The client
//! points at a closed port, so any request that did reach it would fail as
//! 503, never pass.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use kube::{Client, Config};
use prometheus_client::registry::Registry;
use sandrun_gateway::api::ErrorBody;
use sandrun_gateway::auth::Keys;
use sandrun_gateway::hub::Hub;
use sandrun_gateway::metrics::Metrics;
use sandrun_gateway::server::{router, AppState, Limits};
use tower::ServiceExt;

const TOKEN: &str = "test-token-0123456789";
const SLOW_TOKEN: &str = "slow-token-0123456789";

/// name, request, expected status, error code, field
type Case = (&'static str, Request<Body>, StatusCode, &'static str, Option<&'static str>);

fn app() -> axum::Router {
    let config = Config::new("http://127.0.0.1:1".parse().unwrap());
    let client = Client::try_from(config).unwrap();
    let keys = Keys::from_yaml(&format!(
        "keys:\n  - {{name: t, token: {TOKEN}, namespace: team-t}}\n  - {{name: slow, token: {SLOW_TOKEN}, namespace: team-s, requestsPerSecond: 1, burst: 2}}\n"
    ))
    .unwrap();
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let state = Arc::new(AppState {
        hub: Hub::start(client.clone()),
        client,
        keys,
        metrics,
        registry,
        execution_ttl_seconds: 60,
    });
    router(state, &Limits { max_body_bytes: 64 * 1024, cors_origins: vec!["https://play.example".into()] })
}

fn post(token: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut builder = Request::post("/v1/executions").header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(body.into()).unwrap()
}

async fn send(request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Option<ErrorBody>) {
    let response = app().oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).ok())
}

#[tokio::test]
async fn table_of_bad_requests() {
    let big = format!(r#"{{"language":"python","code":"{}"}}"#, "x".repeat(100 * 1024));
    let cases: Vec<Case> = vec![
        ("no key", post(None, r#"{"language":"python","code":"1"}"#), StatusCode::UNAUTHORIZED, "unauthorized", None),
        (
            "wrong key",
            post(Some("nope-nope-nope-nope"), r#"{"language":"python","code":"1"}"#),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            None,
        ),
        (
            "malformed json",
            post(Some(TOKEN), r#"{"language": "python", "code": "#),
            StatusCode::BAD_REQUEST,
            "bad_request",
            None,
        ),
        ("not json at all", post(Some(TOKEN), "print(1)"), StatusCode::BAD_REQUEST, "bad_request", None),
        (
            "wrong type",
            post(Some(TOKEN), r#"{"language":"python","code":"1","args":"not a list"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            None,
        ),
        (
            "unknown field",
            post(Some(TOKEN), r#"{"language":"python","code":"1","colour":"red"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            None,
        ),
        (
            "unknown language",
            post(Some(TOKEN), r#"{"language":"cobol","code":"1"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("language"),
        ),
        (
            "bad wait",
            Request::post("/v1/executions?wait=forever")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                .body(Body::from(r#"{"language":"python","code":"1"}"#))
                .unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("wait"),
        ),
        ("oversized body", post(Some(TOKEN), big), StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None),
        (
            "unknown route",
            Request::get("/v1/nothing").body(Body::empty()).unwrap(),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            "bad list status",
            Request::get("/v1/executions?status=sleeping")
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                .body(Body::empty())
                .unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            Some("status"),
        ),
    ];
    for (name, request, want_status, want_code, want_field) in cases {
        let (status, headers, body) = send(request).await;
        assert_eq!(status, want_status, "{name}");
        let body = body.unwrap_or_else(|| panic!("{name}: the error body is not JSON"));
        assert_eq!(body.error.code, want_code, "{name}: {body:?}");
        assert!(!body.error.message.is_empty(), "{name}");
        if let Some(field) = want_field {
            assert_eq!(body.error.field.as_deref(), Some(field), "{name}");
        }
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer", "{name}");
        }
    }
}

#[tokio::test]
async fn a_flood_is_answered_429_with_retry_after() {
    let app = app();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let request = Request::get("/v1/executions")
            .header(header::AUTHORIZATION, format!("Bearer {SLOW_TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = response.headers()[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
            assert!(retry >= 1);
        }
        statuses.push(response.status());
    }
    assert_eq!(statuses[..2], [StatusCode::OK, StatusCode::OK], "the burst passes: {statuses:?}");
    assert!(statuses[2..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
}

#[tokio::test]
async fn openapi_health_and_cors_are_served() {
    let (status, _, _) = send(Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let response = app().oneshot(Request::get("/v1/openapi.json").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let doc: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert!(doc["paths"]["/v1/executions"]["post"].is_object(), "{doc}");
    assert!(doc["components"]["schemas"]["SubmitRequest"].is_object());
    let preflight = Request::options("/v1/executions")
        .header(header::ORIGIN, "https://play.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .body(Body::empty())
        .unwrap();
    let response = app().oneshot(preflight).await.unwrap();
    assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://play.example");
}
