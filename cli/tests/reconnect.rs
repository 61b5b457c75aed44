//! `sandrun run`'s WebSocket follow against a scripted gateway on loopback:
//! a connection that drops after `accepted` is re-established and the run
//! subscribed to again, so its result is not lost; retries are bounded.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use sandrun_api::{ClientMessage, ExecutionView, ServerMessage, State, SubmitRequest};
use sandrun_cli::error::Error;
use sandrun_cli::stream::{execute, Event, Target, MAX_MESSAGE_BYTES};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Server = WebSocketStream<TcpStream>;

fn view(id: &str, status: &str, stdout: Option<&str>) -> ExecutionView {
    serde_json::from_value(json!({"id": id, "status": status, "stdout": stdout, "stdoutTruncated": false,
        "stderrTruncated": false, "links": {"self": format!("/v1/executions/{id}"), "ws": "/v1/ws"}}))
    .unwrap()
}

fn target(port: u16, backoff: usize) -> Target {
    Target {
        url: url::Url::parse(&format!("ws://127.0.0.1:{port}/v1/ws")).unwrap(),
        key: Some("secret".into()),
        tls: sandrun_cli::tls::client_config(false).unwrap(),
        backoff: vec![Duration::from_millis(20); backoff],
        idle: Duration::from_secs(5),
    }
}

fn request() -> SubmitRequest {
    SubmitRequest { language: Some("python".into()), code: Some("print(1)".into()), ..Default::default() }
}

/// Accepts one WebSocket, reporting the Authorization header it came with.
// The callback's error type is tungstenite's, not ours.
#[allow(clippy::result_large_err)]
async fn accept(listener: &TcpListener, auth: &mpsc::UnboundedSender<String>) -> Server {
    let (tcp, _) = listener.accept().await.unwrap();
    let auth = auth.clone();
    tokio_tungstenite::accept_hdr_async(tcp, move |request: &Request, response: Response| {
        let header = request.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let _ = auth.send(header.to_owned());
        Ok(response)
    })
    .await
    .unwrap()
}

async fn receive(socket: &mut Server) -> ClientMessage {
    loop {
        match socket.next().await.unwrap().unwrap() {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            _ => continue,
        }
    }
}

async fn reply(socket: &mut Server, message: &ServerMessage) {
    socket.send(Message::text(serde_json::to_string(message).unwrap())).await.unwrap();
}

fn update(view: ExecutionView) -> ServerMessage {
    ServerMessage::Update { execution: Box::new(view) }
}

#[tokio::test]
async fn a_dropped_connection_is_resumed_by_subscribing_and_the_result_arrives() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (auth_tx, mut auth_rx) = mpsc::unbounded_channel();
    let gateway = tokio::spawn(async move {
        let mut first = accept(&listener, &auth_tx).await;
        let ClientMessage::Execute { request, .. } = receive(&mut first).await else { panic!("expected execute") };
        assert_eq!(request.code.as_deref(), Some("print(1)"));
        reply(&mut first, &ServerMessage::Accepted { id: "run-t".into(), ref_: None }).await;
        reply(&mut first, &update(view("run-t", "queued", None))).await;
        // The gateway goes away without a close frame...
        drop(first);
        // ...and the next attempt fails at the TCP level before a handshake.
        drop(listener.accept().await.unwrap());
        // Then it is back; the run finished meanwhile.
        let mut again = accept(&listener, &auth_tx).await;
        assert_eq!(receive(&mut again).await, ClientMessage::Subscribe { id: "run-t".into() });
        reply(&mut again, &update(view("run-t", "succeeded", Some("1\n")))).await;
        // Let the client read it and close.
        let _ = again.next().await;
    });

    let mut seen = Vec::new();
    let done = tokio::time::timeout(
        Duration::from_secs(20),
        execute(&target(port, 4), request(), |event| match event {
            Event::Update(v) => seen.push(format!("{:?}", v.status)),
            Event::Reconnecting { attempt, .. } => seen.push(format!("reconnecting {attempt}")),
        }),
    )
    .await
    .expect("execute finished")
    .expect("a result despite the dropped connection");
    gateway.await.unwrap();

    assert_eq!((done.id.as_str(), done.status, done.stdout.as_deref()), ("run-t", State::Succeeded, Some("1\n")));
    // The second connection failed before its handshake, the third got the result.
    assert_eq!(seen, ["Queued", "reconnecting 1", "reconnecting 2", "Succeeded"]);
    auth_rx.close();
    let mut headers = Vec::new();
    while let Some(header) = auth_rx.recv().await {
        headers.push(header);
    }
    assert_eq!(headers, ["Bearer secret", "Bearer secret"]);
}

#[tokio::test]
async fn reconnects_are_bounded() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (auth_tx, _auth_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut first = accept(&listener, &auth_tx).await;
        let _ = receive(&mut first).await;
        reply(&mut first, &ServerMessage::Accepted { id: "run-gone".into(), ref_: None }).await;
        drop(first);
        loop {
            drop(listener.accept().await.unwrap());
        }
    });
    let result = tokio::time::timeout(Duration::from_secs(20), execute(&target(port, 3), request(), |_| {}))
        .await
        .expect("gave up in time");
    match result {
        Err(Error::Disconnected { id, attempts }) => assert_eq!((id.as_str(), attempts), ("run-gone", 3)),
        other => panic!("expected Disconnected, got {other:?}"),
    }
}

#[tokio::test]
async fn a_refused_submission_is_the_gateways_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (auth_tx, _auth_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut socket = accept(&listener, &auth_tx).await;
        let _ = receive(&mut socket).await;
        let error: ServerMessage = serde_json::from_value(json!({"type": "error", "ref": "sandrun-cli",
            "error": {"code": "invalid_request", "message": "unknown language", "field": "language"}}))
        .unwrap();
        reply(&mut socket, &error).await;
        let _ = socket.next().await;
    });
    match execute(&target(port, 3), request(), |_| {}).await {
        Err(Error::Gateway { detail, .. }) => assert_eq!(detail.field.as_deref(), Some("language")),
        other => panic!("expected the gateway's error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_close_before_accepted_is_reported_with_its_reason_and_not_retried() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (auth_tx, _auth_rx) = mpsc::unbounded_channel();
    let gateway = tokio::spawn(async move {
        let mut socket = accept(&listener, &auth_tx).await;
        let _ = receive(&mut socket).await;
        let frame = CloseFrame { code: CloseCode::Policy, reason: "unreadable or oversized frame".into() };
        socket.close(Some(frame)).await.unwrap();
        // No second connection: an unacknowledged submission is not sent again.
        tokio::time::timeout(Duration::from_millis(300), listener.accept()).await.is_err()
    });
    match execute(&target(port, 3), request(), |_| {}).await {
        Err(Error::LostBeforeAccepted { why }) => assert!(why.contains("1008: unreadable"), "{why}"),
        other => panic!("expected LostBeforeAccepted, got {other:?}"),
    }
    assert!(gateway.await.unwrap(), "the client connected again");
}

#[tokio::test]
async fn a_request_over_the_message_cap_is_refused_before_connecting() {
    let mut big = request();
    big.code = Some("x".repeat(MAX_MESSAGE_BYTES));
    // Port 9 (discard) is not listened on; connecting would fail differently.
    match execute(&target(9, 0), big, |_| {}).await {
        Err(Error::Usage(message)) => assert!(message.contains("at most 1048576"), "{message}"),
        other => panic!("expected a usage error, got {other:?}"),
    }
}
