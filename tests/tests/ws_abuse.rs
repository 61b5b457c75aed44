//! The gateway's WebSocket under abuse: garbage, binary and invalid frames,
//! unknown messages, a frame over the 1 MiB cap, a burst of messages, and
//! half-closed connections. Each gets an `error` message or a clean close
//! with the right close code, and afterwards the gateway still serves a new
//! client. Prints a table of case → what happened.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use sandrun_api::{ErrorBody, ServerMessage, State};
use sandrun_e2e::gateway::{next_message, send_json, until_final, Gateway, Socket};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::MaybeTlsStream;

/// How long the gateway may take to answer one abusive frame.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// The gateway's cap on one message (`ws::protocol::MAX_MESSAGE_BYTES`).
const CAP: usize = 1024 * 1024;
/// Messages sent back to back in the burst case.
const BURST: usize = 500;

/// What the client saw next.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Error {
        code: String,
        ref_: Option<String>,
    },
    Accepted,
    Update(State),
    /// A close frame, with its code.
    Closed(Option<u16>),
    /// The connection ended without a close frame.
    Eof,
    Failed(String),
    Other(String),
    Nothing,
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Seen::Error { code, ref_: Some(r) } => write!(f, "error {code} (ref {r})"),
            Seen::Error { code, ref_: None } => write!(f, "error {code}"),
            Seen::Accepted => write!(f, "accepted"),
            Seen::Update(state) => write!(f, "update {state:?}"),
            Seen::Closed(Some(code)) => write!(f, "close {code}"),
            Seen::Closed(None) => write!(f, "close without a code"),
            Seen::Eof => write!(f, "connection ended without a close frame"),
            Seen::Failed(why) => write!(f, "read failed: {why}"),
            Seen::Other(what) => write!(f, "unexpected: {what}"),
            Seen::Nothing => write!(f, "nothing within {ANSWER_WITHIN:?}"),
        }
    }
}

/// Reads the next message or close, skipping pings and pongs.
async fn next_seen<S>(stream: &mut S) -> Seen
where
    S: futures::Stream<Item = Result<Message, Error>> + Unpin,
{
    loop {
        let frame = match tokio::time::timeout(ANSWER_WITHIN, stream.next()).await {
            Err(_) => return Seen::Nothing,
            Ok(None)
            | Ok(Some(Err(Error::ConnectionClosed)))
            | Ok(Some(Err(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)))) => return Seen::Eof,
            Ok(Some(Err(e))) => return Seen::Failed(e.to_string()),
            Ok(Some(Ok(frame))) => frame,
        };
        return match frame {
            Message::Text(text) => match serde_json::from_str::<ServerMessage>(&text) {
                Ok(ServerMessage::Error { error, ref_ }) => Seen::Error { code: error.code, ref_ },
                Ok(ServerMessage::Accepted { .. }) => Seen::Accepted,
                Ok(ServerMessage::Update { execution }) => Seen::Update(execution.status),
                Ok(ServerMessage::Gone { id }) => Seen::Other(format!("gone: {id}")),
                Err(e) => Seen::Other(format!("text that is not a server message ({e}): {:.80}", text.as_str())),
            },
            Message::Close(frame) => Seen::Closed(frame.map(|f| u16::from(f.code))),
            Message::Binary(_) => Seen::Other("a binary frame".into()),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
    }
}

/// After a close frame, the gateway ends the TCP connection; and how it went.
async fn closes_after(socket: &mut Socket) -> (bool, String) {
    match next_seen(socket).await {
        Seen::Eof => (true, ", then the connection ends".into()),
        other => (false, format!(", then {other} instead of the end of the connection")),
    }
}

/// Still talking: a subscribe to an id that does not exist is answered `not_found`.
async fn still_answers(socket: &mut Socket) -> bool {
    send_json(socket, json!({"type": "subscribe", "id": "run-does-not-exist"})).await;
    matches!(next_seen(socket).await, Seen::Error { code, .. } if code == "not_found")
}

struct Row {
    case: &'static str,
    expected: String,
    happened: String,
    ok: bool,
}

/// One frame, one answer: an `error` with `code`, and the socket stays usable.
async fn answered_with_error(
    gw: &Gateway,
    token: &str,
    case: &'static str,
    frame: Message,
    code: &str,
    ref_: Option<&str>,
) -> Row {
    let mut socket = gw.connect(token).await.expect("connect");
    let expected = Seen::Error { code: code.into(), ref_: ref_.map(str::to_owned) };
    let seen = match socket.send(frame).await {
        Ok(()) => next_seen(&mut socket).await,
        Err(e) => Seen::Failed(format!("send: {e}")),
    };
    let alive = seen == expected && still_answers(&mut socket).await;
    let happened = if alive { format!("{seen}; socket still answers") } else { seen.to_string() };
    Row { case, expected: format!("{expected}, stays open"), happened, ok: alive }
}

/// One frame, then a close frame with `code` and the end of the connection.
async fn closed_with(gw: &Gateway, token: &str, case: &'static str, frames: Vec<Message>, code: u16) -> Row {
    let mut socket = gw.connect(token).await.expect("connect");
    let mut sent = Ok(());
    for frame in frames {
        sent = socket.feed(frame).await;
        if sent.is_err() {
            break;
        }
    }
    if sent.is_ok() {
        sent = socket.flush().await;
    }
    // A send may fail once the gateway has closed; the close frame is still there to read.
    let seen = next_seen(&mut socket).await;
    let mut happened = seen.to_string();
    if let Err(e) = sent {
        happened.push_str(&format!(" (our send: {e})"));
    }
    let mut ok = false;
    if seen == Seen::Closed(Some(code)) {
        let (ended, how) = closes_after(&mut socket).await;
        happened.push_str(&how);
        ok = ended;
    }
    Row { case, expected: format!("close {code}"), happened, ok }
}

/// A frame past even the frame cap (twice the message cap) is refused at
/// its header, with the rest of it still on the way: the close frame is
/// sent, but the client may see a reset before it reads it. Either way the
/// connection ends and nothing else is hurt.
async fn far_over_the_cap(gw: &Gateway, token: &str) -> Row {
    let mut socket = gw.connect(token).await.expect("connect");
    let sent = socket.send(Message::Text("x".repeat(4 * CAP).into())).await;
    let seen = next_seen(&mut socket).await;
    let mut happened = seen.to_string();
    let ok = match &seen {
        Seen::Closed(Some(1009)) => {
            let (ended, how) = closes_after(&mut socket).await;
            happened.push_str(&how);
            ended
        }
        Seen::Eof | Seen::Failed(_) => true,
        _ => false,
    };
    if let Err(e) = sent {
        happened.push_str(&format!(" (our send: {e})"));
    }
    Row { case: "4 MiB frame, over the frame cap too", expected: "close 1009 or a reset".into(), happened, ok }
}

fn raw_text(payload: Vec<u8>, is_final: bool) -> Message {
    Message::Frame(Frame::message(payload, OpCode::Data(Data::Text), is_final))
}

fn continuation(payload: Vec<u8>, is_final: bool) -> Message {
    Message::Frame(Frame::message(payload, OpCode::Data(Data::Continue), is_final))
}

/// `BURST` bad messages back to back while reading: one error each, in
/// order, and the socket lives on.
async fn burst(gw: &Gateway, token: &str) -> Row {
    let socket = gw.connect(token).await.expect("connect");
    let (mut tx, mut rx) = socket.split();
    let sender = tokio::spawn(async move {
        for i in 0..BURST {
            let frame = match i % 3 {
                0 => Message::Text("garbage".into()),
                1 => Message::Text(json!({"type": "dance", "n": i}).to_string().into()),
                _ => Message::Text(
                    json!({"type": "execute", "ref": format!("b{i}"), "language": "cobol", "code": "x"})
                        .to_string()
                        .into(),
                ),
            };
            tx.feed(frame).await?;
        }
        tx.flush().await?;
        Ok::<_, Error>(tx)
    });
    let mut errors = 0;
    let mut last = Seen::Nothing;
    while errors < BURST {
        last = next_seen(&mut rx).await;
        match &last {
            Seen::Error { .. } => errors += 1,
            _ => break,
        }
    }
    let mut happened = format!("{errors} of {BURST} answered with an error");
    let mut ok = errors == BURST;
    if !ok {
        happened.push_str(&format!("; then {last}"));
    }
    match sender.await.expect("sender task") {
        Ok(tx) => {
            let mut socket = tx.reunite(rx).expect("the same socket");
            if ok && still_answers(&mut socket).await {
                happened.push_str("; socket still answers");
            } else {
                ok = false;
            }
        }
        Err(e) => {
            ok = false;
            happened.push_str(&format!("; our send failed: {e}"));
        }
    }
    Row { case: "burst of bad messages", expected: format!("{BURST} errors, stays open"), happened, ok }
}

/// The client sends a close frame and goes on reading: the gateway answers
/// with the same code and ends the connection.
async fn close_then_read(gw: &Gateway, token: &str) -> Row {
    let mut socket = gw.connect(token).await.expect("connect");
    let close = CloseFrame { code: CloseCode::Normal, reason: "bye".into() };
    let sent = socket.send(Message::Close(Some(close))).await;
    let seen = next_seen(&mut socket).await;
    let mut happened = seen.to_string();
    if let Err(e) = sent {
        happened.push_str(&format!(" (our send: {e})"));
    }
    let mut ok = false;
    if seen == Seen::Closed(Some(1000)) {
        let (ended, how) = closes_after(&mut socket).await;
        happened.push_str(&how);
        ok = ended;
    }
    Row { case: "close frame, then keep reading", expected: "close 1000 echoed".into(), happened, ok }
}

/// The client shuts down its sending side without a close frame (a TCP
/// half-close): the gateway ends the connection rather than waiting on it.
async fn tcp_half_close(gw: &Gateway, token: &str) -> Row {
    let mut socket = gw.connect(token).await.expect("connect");
    let shut = match socket.get_mut() {
        MaybeTlsStream::Plain(tcp) => tcp.shutdown().await.map_err(|e| e.to_string()),
        _ => Err("not a plain TCP stream".to_owned()),
    };
    let seen = next_seen(&mut socket).await;
    let mut happened = seen.to_string();
    // No close handshake happened, so a close frame (then EOF) or a plain EOF are both clean.
    let mut ok = match seen {
        Seen::Eof => true,
        // The client library answers the gateway's close frame with its own
        // and fails on the write side it shut itself: the gateway did end it.
        Seen::Failed(ref why) if why.contains("Broken pipe") => true,
        Seen::Closed(_) => {
            let (ended, how) = closes_after(&mut socket).await;
            happened.push_str(&how);
            ended
        }
        _ => false,
    };
    if let Err(e) = shut {
        happened.push_str(&format!(" (shutdown: {e})"));
        ok = false;
    }
    Row { case: "TCP half-close, no close frame", expected: "the gateway ends the connection".into(), happened, ok }
}

/// Plain HTTP against the WebSocket route: JSON errors, never a 5xx.
async fn http_row(gw: &Gateway, case: &'static str, request: reqwest::RequestBuilder, status: u16) -> Row {
    let _ = gw;
    let (happened, ok) = match request.send().await {
        Ok(response) => {
            let got = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            match serde_json::from_str::<ErrorBody>(&body) {
                Ok(e) => (format!("{got} {}", e.error.code), got == status),
                Err(_) => (format!("{got} with a body that is not an error body: {body:.80}"), false),
            }
        }
        Err(e) => (format!("request failed: {e}"), false),
    };
    Row { case, expected: format!("{status}, JSON error"), happened, ok }
}

/// The in-cluster gateway's pods and their restart counts; `None` when the
/// gateway under test is another one (SANDRUN_GATEWAY_ADDR).
fn gateway_restarts(gw: &Gateway) -> Option<String> {
    if gw.url != format!("http://{}", sandrun_e2e::gateway::service_addr()) {
        return None;
    }
    Some(sandrun_e2e::inspect::component_pods(
        "gateway",
        "{range .items[*]}{.metadata.name}={.status.containerStatuses[0].restartCount} {end}",
    ))
}

#[tokio::test]
async fn websocket_abuse_gets_errors_or_clean_closes_and_the_gateway_lives_on() {
    let gw = Gateway::from_env();
    let token = gw.key("demo").token;
    let restarts_before = gateway_restarts(&gw);
    let text = |s: &str| Message::Text(s.to_owned().into());

    let mut rows = vec![
        answered_with_error(&gw, &token, "garbage text frame", text("hello, gateway!"), "bad_request", None).await,
        answered_with_error(
            &gw,
            &token,
            "binary frame",
            Message::Binary(vec![0, 159, 146, 150].into()),
            "bad_request",
            None,
        )
        .await,
        answered_with_error(&gw, &token, "invalid JSON", text(r#"{"type": "execute", "code": "#), "bad_request", None)
            .await,
        answered_with_error(&gw, &token, "JSON that is not an object", text("[1, 2, 3]"), "bad_request", None).await,
        answered_with_error(&gw, &token, "unknown message type", text(r#"{"type": "dance"}"#), "bad_request", None)
            .await,
        answered_with_error(&gw, &token, "no type", text(r#"{"id": "run-x"}"#), "bad_request", None).await,
        answered_with_error(
            &gw,
            &token,
            "wrong field type",
            text(r#"{"type": "subscribe", "id": 42}"#),
            "bad_request",
            None,
        )
        .await,
        answered_with_error(
            &gw,
            &token,
            "unknown field in execute",
            text(r#"{"type": "execute", "language": "bash", "code": "true", "bogus": 1}"#),
            "bad_request",
            None,
        )
        .await,
        answered_with_error(
            &gw,
            &token,
            "deeply nested JSON",
            Message::Text(format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into()),
            "bad_request",
            None,
        )
        .await,
        answered_with_error(
            &gw,
            &token,
            "invalid execute",
            text(r#"{"type": "execute", "ref": "r1", "language": "cobol", "code": "x"}"#),
            "invalid_request",
            Some("r1"),
        )
        .await,
        answered_with_error(
            &gw,
            &token,
            "subscribe to a malformed id",
            text(r#"{"type": "subscribe", "id": "../../sandrun-other/executions/x y"}"#),
            "not_found",
            None,
        )
        .await,
        answered_with_error(
            &gw,
            &token,
            "subscribe to an id with a query",
            text(r#"{"type": "subscribe", "id": "run-x?watch=true"}"#),
            "not_found",
            None,
        )
        .await,
        closed_with(
            &gw,
            &token,
            "invalid UTF-8 in a text frame",
            vec![raw_text(vec![b'{', 0xff, 0xfe, b'}'], true)],
            1007,
        )
        .await,
        closed_with(&gw, &token, "frame over the 1 MiB cap", vec![Message::Text("x".repeat(CAP + 1).into())], 1009)
            .await,
        closed_with(
            &gw,
            &token,
            "fragments adding up to over the cap",
            vec![raw_text(vec![b' '; CAP / 2 + 1], false), continuation(vec![b' '; CAP / 2 + 1], true)],
            1009,
        )
        .await,
        far_over_the_cap(&gw, &token).await,
        closed_with(
            &gw,
            &token,
            "continuation with nothing to continue",
            vec![continuation(b"{}".to_vec(), true)],
            1002,
        )
        .await,
        closed_with(&gw, &token, "ping over 125 bytes", vec![Message::Frame(Frame::ping(vec![0; 200]))], 1002).await,
        burst(&gw, &token).await,
        close_then_read(&gw, &token).await,
        tcp_half_close(&gw, &token).await,
    ];

    let http = gw.http();
    let ws_url = format!("{}/v1/ws", gw.url);
    let upgrade = |builder: reqwest::RequestBuilder| {
        builder
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
    };
    rows.push(http_row(&gw, "upgrade without a key", upgrade(http.get(&ws_url)), 401).await);
    rows.push(
        http_row(
            &gw,
            "upgrade with a wrong access_token",
            upgrade(http.get(format!("{ws_url}?access_token=nope"))),
            401,
        )
        .await,
    );
    rows.push(http_row(&gw, "plain GET, no upgrade", http.get(&ws_url).bearer_auth(&token), 400).await);
    rows.push(http_row(&gw, "POST to the socket route", http.post(&ws_url).bearer_auth(&token), 405).await);

    // Afterwards a new client is served: a full execute round trip, a
    // subscribe that gets the final state at once, and /readyz.
    let round_trip = async {
        let mut socket = gw.connect(&token).await.map_err(|e| format!("connect: {e}"))?;
        send_json(
            &mut socket,
            json!({"type": "execute", "ref": "after", "language": "bash", "code": "echo still serving"}),
        )
        .await;
        let id = match next_message(&mut socket, ANSWER_WITHIN).await {
            Some(ServerMessage::Accepted { id, .. }) => id,
            other => return Err(format!("not accepted: {other:?}")),
        };
        let done = until_final(&mut socket, &id, sandrun_e2e::FINISH_WITHIN).await;
        if (done.status, done.stdout.as_deref()) != (State::Succeeded, Some("still serving\n")) {
            return Err(format!("{done:?}"));
        }
        let mut again = gw.connect(&token).await.map_err(|e| format!("connect: {e}"))?;
        send_json(&mut again, json!({"type": "subscribe", "id": id})).await;
        let seen = until_final(&mut again, &id, ANSWER_WITHIN).await;
        Ok(format!("{id} {:?}, subscribe again: {:?}", done.status, seen.status))
    };
    let (happened, ok) = match round_trip.await {
        Ok(what) => (what, true),
        Err(why) => (why, false),
    };
    rows.push(Row { case: "afterwards: execute and subscribe", expected: "succeeded".into(), happened, ok });
    let ready = http.get(format!("{}/readyz", gw.url)).send().await.map(|r| r.status().as_u16());
    rows.push(Row {
        case: "afterwards: /readyz",
        expected: "200".into(),
        happened: format!("{ready:?}"),
        ok: matches!(ready, Ok(200)),
    });
    let (happened, ok) = match (restarts_before, gateway_restarts(&gw)) {
        (Some(before), Some(after)) => (format!("before {before}, after {after}"), before == after),
        _ => ("not the in-cluster gateway: not checked".to_owned(), true),
    };
    rows.push(Row { case: "afterwards: gateway restarts", expected: "unchanged".into(), happened, ok });

    let width = rows.iter().map(|r| r.case.len()).max().unwrap_or(0);
    let expected_width = rows.iter().map(|r| r.expected.len()).max().unwrap_or(0);
    println!("{:width$}  {:expected_width$}  what happened", "case", "expected");
    for row in &rows {
        let mark = if row.ok { "ok  " } else { "FAIL" };
        println!("{:width$}  {:expected_width$}  {mark} {}", row.case, row.expected, row.happened);
    }
    let failed: Vec<&str> = rows.iter().filter(|r| !r.ok).map(|r| r.case).collect();
    assert!(failed.is_empty(), "cases that went wrong: {failed:?}");
}
