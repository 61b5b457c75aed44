//! Request-level tests: the router answers bad requests with the right 4xx
//! and a JSON error body before anything reaches Kubernetes. The client
//! points at a closed port, so any request that did reach it would fail as
//! 503, never pass.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use sandrun_gateway::api::ErrorBody;
use tower::ServiceExt;

mod common;

const TOKEN: &str = "test-token-0123456789";
const SLOW_TOKEN: &str = "slow-token-0123456789";

/// name, request, expected status, error code, field
type Case = (&'static str, Request<Body>, StatusCode, &'static str, Option<&'static str>);

fn app() -> axum::Router {
    common::app(
        &format!(
            "keys:\n  - {{name: t, token: {TOKEN}, namespace: team-t}}\n  - {{name: slow, token: {SLOW_TOKEN}, namespace: team-s, requestsPerSecond: 1, burst: 2}}\n"
        ),
        vec!["https://play.example".into()],
    )
}

fn post(token: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut builder = Request::post("/v1/executions").header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(body.into()).unwrap()
}

/// An authenticated request without a body.
fn with_key(builder: axum::http::request::Builder) -> Request<Body> {
    builder.header(header::AUTHORIZATION, format!("Bearer {TOKEN}")).body(Body::empty()).unwrap()
}

fn get(uri: &str) -> Request<Body> {
    with_key(Request::get(uri))
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
        // Ids that are not object names never reach Kubernetes (which
        // would answer 503 here): in a URL they would address another object.
        ("id with a space", get("/v1/executions/a%20b"), StatusCode::NOT_FOUND, "not_found", None),
        ("id with a subresource", get("/v1/executions/run-x%2Fstatus"), StatusCode::NOT_FOUND, "not_found", None),
        ("id with a query", get("/v1/executions/run-x%3Fwatch=1"), StatusCode::NOT_FOUND, "not_found", None),
        (
            "id climbing out",
            get("/v1/executions/..%2F..%2Fother%2Fexecutions%2Fx"),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        ("id not UTF-8", get("/v1/executions/%FF"), StatusCode::BAD_REQUEST, "bad_request", None),
        (
            "cancel an id that is not a name",
            with_key(Request::delete("/v1/executions/A%0A")),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            "unknown method",
            with_key(Request::put("/v1/executions")),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            None,
        ),
        (
            "unknown method, health",
            Request::post("/healthz").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            None,
        ),
        (
            "websocket without a key",
            Request::get("/v1/ws").body(Body::empty()).unwrap(),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            None,
        ),
        ("websocket without an upgrade", get("/v1/ws"), StatusCode::BAD_REQUEST, "bad_request", None),
        ("list with a negative limit", get("/v1/executions?limit=-1"), StatusCode::BAD_REQUEST, "bad_request", None),
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
    // Served on a port of its own, which the Service and Ingress do not reach.
    let (status, _, _) = send(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "/metrics on the API's port");
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

#[tokio::test]
async fn a_405_keeps_its_allow_header() {
    let (status, headers, body) = send(with_key(Request::put("/v1/executions/run-x"))).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[header::ALLOW], "GET,HEAD,DELETE");
    assert_eq!(body.expect("JSON").error.code, "method_not_allowed");
}

#[tokio::test]
async fn a_continue_token_past_the_end_is_an_empty_last_page() {
    let response = app().oneshot(get(&format!("/v1/executions?limit=500&continue={}", usize::MAX))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let list: sandrun_gateway::api::ExecutionList =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert!(list.items.is_empty() && list.next.is_none());
}

/// Every answer is documented, with a description (OpenAPI requires one),
/// and every error answer is an ErrorBody.
#[test]
fn the_openapi_document_describes_every_answer() {
    let doc = serde_json::to_value(sandrun_gateway::openapi::document()).unwrap();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let responses = operation["responses"].as_object().unwrap();
            let secured = operation["security"].as_array().is_some_and(|s| !s.is_empty());
            for code in ["401", "429"] {
                assert!(!secured || responses.contains_key(code), "{method} {path}: no {code}");
            }
            for (code, response) in responses {
                assert!(response["description"].as_str().is_some_and(|d| !d.is_empty()), "{method} {path} {code}");
                if code.starts_with('4') || code.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                        "{method} {path} {code}"
                    );
                }
            }
        }
    }
    assert_eq!(operations, 5, "submit, list, get, cancel, ws");
}

mod websocket {
    //! The WebSocket on a loopback port: bad frames get an `error` or the
    //! close code for the reason, and the connection ends cleanly.

    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
    use tokio_tungstenite::tungstenite::Message;

    type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

    async fn connect() -> Socket {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, super::app()).await });
        let request =
            tokio_tungstenite::tungstenite::ClientRequestBuilder::new(format!("ws://{addr}/v1/ws").parse().unwrap())
                .with_header("Authorization", format!("Bearer {}", super::TOKEN));
        tokio_tungstenite::connect_async(request).await.expect("connect").0
    }

    /// The next text or close frame, as `error CODE` or `close CODE`; then
    /// `end` once the connection is over.
    async fn next(socket: &mut Socket) -> String {
        loop {
            let frame =
                tokio::time::timeout(std::time::Duration::from_secs(10), socket.next()).await.expect("an answer");
            return match frame {
                Some(Ok(Message::Text(text))) => {
                    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                    format!("{} {}", value["type"].as_str().unwrap(), value["error"]["code"].as_str().unwrap_or(""))
                }
                Some(Ok(Message::Close(frame))) => format!("close {}", frame.map(|f| u16::from(f.code)).unwrap_or(0)),
                Some(Ok(_)) => continue,
                None | Some(Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed)) => "end".to_owned(),
                Some(Err(e)) => format!("failed: {e}"),
            };
        }
    }

    #[tokio::test]
    async fn bad_messages_are_answered_and_the_socket_lives_on() {
        let mut socket = connect().await;
        for frame in [
            Message::Text("garbage".into()),
            Message::Binary(vec![1, 2, 3].into()),
            Message::Text(r#"{"type": "dance"}"#.into()),
            Message::Text(r#"{"type": "execute", "language": "bash", "code": "true", "bogus": 1}"#.into()),
        ] {
            socket.send(frame).await.unwrap();
            assert_eq!(next(&mut socket).await, "error bad_request");
        }
        // A burst bigger than the queue for answers: slowed down, not dropped.
        for _ in 0..1000 {
            socket.feed(Message::Text("garbage".into())).await.unwrap();
        }
        socket.flush().await.unwrap();
        for i in 0..1000 {
            assert_eq!(next(&mut socket).await, "error bad_request", "answer {i}");
        }
        socket.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() }))).await.unwrap();
        assert_eq!(next(&mut socket).await, "close 1000", "the close frame is answered");
        assert_eq!(next(&mut socket).await, "end");
    }

    #[tokio::test]
    async fn unreadable_frames_close_with_the_code_for_the_reason() {
        let text = |payload: Vec<u8>, fin: bool| Message::Frame(Frame::message(payload, OpCode::Data(Data::Text), fin));
        let more = |payload: Vec<u8>| Message::Frame(Frame::message(payload, OpCode::Data(Data::Continue), true));
        let cap = sandrun_gateway::ws::MAX_MESSAGE_BYTES;
        let cases: Vec<(&str, Vec<Message>, &str)> = vec![
            ("one byte over the cap", vec![Message::Text("x".repeat(cap + 1).into())], "close 1009"),
            (
                "fragments over the cap",
                vec![text(vec![b' '; cap / 2 + 1], false), more(vec![b' '; cap / 2 + 1])],
                "close 1009",
            ),
            ("not UTF-8", vec![text(vec![0xff, 0xfe], true)], "close 1007"),
            ("ping over 125 bytes", vec![Message::Frame(Frame::ping(vec![0; 200]))], "close 1002"),
        ];
        for (name, frames, want) in cases {
            let mut socket = connect().await;
            for frame in frames {
                socket.feed(frame).await.unwrap();
            }
            socket.flush().await.unwrap();
            assert_eq!(next(&mut socket).await, want, "{name}");
            assert_eq!(next(&mut socket).await, "end", "{name}");
        }
    }
}
