//! WebSocket: execute or subscribe, then receive every status change.
//!
//! Per socket, a writer task owns the sink and a session loop reads client
//! messages and the shared watch. A reconnecting client subscribes again
//! and gets the current state at once, so no final result is lost.
//!
//! Bad input never ends a session by itself: a message the gateway cannot
//! use is answered with an `error`. A message over the cap, or a frame it
//! cannot read, ends it with the close code for the reason (1009 too big,
//! 1007 not UTF-8, 1002 a protocol error), and the gateway then waits for
//! the client's close frame, so that the connection ends cleanly.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures::stream::SplitStream;
use futures::{SinkExt, StreamExt};
use sandrun_crds::Execution;
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::debug;

use crate::api::{ClientMessage, ErrorBody, ServerMessage, SubmitRequest};
use crate::auth::Tenant;
use crate::convert::view;
use crate::error::ApiError;
use crate::hub::Change;
use crate::rest::{create, fetch};
use crate::routes::{Follower, Received};
use crate::server::AppState;

pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// What the WebSocket library reads at most, as a frame or a message: more
/// than the cap, so that a message a little over it is still read whole
/// and refused by the session, which can then read on to the client's close
/// frame. Past this the library refuses it at the frame's header, with the
/// rest still on the way, and the client may see a reset.
const READ_LIMIT_BYTES: usize = 2 * MAX_MESSAGE_BYTES;
/// What the library reads from the socket at a time. Its default, 128 KiB,
/// is zeroed and kept per socket: 1.3 GiB for 10k idle clients. Clients
/// send little; a big message is still read whole, this much per read.
const READ_BUFFER_BYTES: usize = 4 * 1024;
const PING_EVERY: Duration = Duration::from_secs(20);
/// No frame at all (pongs included) for this long and the peer is gone.
const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// Messages queued for a client before it counts as too slow.
const OUTBOX: usize = 256;
/// Answers to a client's own messages wait this long for room in its
/// queue (so a fast client is slowed down, not dropped); a client that
/// reads nothing for this long is cut off.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// After the gateway's close frame, how long it waits for the client's.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);
/// After a read error the library reads nothing more, so the client's
/// close frame cannot be waited for: the connection is held this long, for
/// it to arrive.
const LINGER: Duration = Duration::from_secs(1);
const CLOSE_PROTOCOL: u16 = 1002;
const CLOSE_NOT_UTF8: u16 = 1007;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;

/// Open a WebSocket (see the description at the top for its messages).
#[utoipa::path(get, path = "/v1/ws",
    params(("access_token" = Option<String>, Query,
        description = "the API key, for clients that can set neither a header nor subprotocols; browsers should \
            offer the subprotocols `sandrun.v1` and `sandrun.bearer.<base64url of the key>` instead, since keys \
            in URLs end up in proxy logs")),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade request", body = ErrorBody),
        (status = 426, description = "This connection cannot be upgraded", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn upgrade(
    State(state): State<Arc<AppState>>,
    // Before the upgrade: a request without a key is a 401, whatever else it lacks.
    tenant: Tenant,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    Ok(ws?
        // Answers a browser that offered `sandrun.v1` (beside the key's
        // subprotocol, see auth::bearer) with it; never with the key's.
        .protocols([crate::auth::WS_PROTOCOL])
        .max_message_size(READ_LIMIT_BYTES)
        .max_frame_size(READ_LIMIT_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| session(socket, state, tenant)))
}

/// How a session ends.
#[derive(Debug, PartialEq)]
enum End {
    /// The client closed or went away: nothing more to say.
    Gone,
    /// The gateway closes with a code; `readable` when the client's frames
    /// can still be read (not after a read error), to wait for its close frame.
    Close { code: u16, reason: &'static str, readable: bool },
    /// Too slow to keep up: its queue is full, so not even a close frame fits.
    CutOff,
}

const TOO_BIG: End = End::Close { code: CLOSE_TOO_BIG, reason: "message over 1 MiB", readable: true };

/// The end a failed read calls for. The library reads nothing more after
/// an error, so none of them is `readable`.
fn on_read_error(error: axum::Error) -> End {
    use tungstenite::error::{Error, ProtocolError};
    let close = |code, reason| End::Close { code, reason, readable: false };
    let Ok(error) = error.into_inner().downcast::<Error>() else {
        return close(CLOSE_POLICY, "unreadable frame");
    };
    match *error {
        Error::Capacity(_) => close(CLOSE_TOO_BIG, "message over 1 MiB"),
        Error::Utf8(_) => close(CLOSE_NOT_UTF8, "text frame that is not UTF-8"),
        // The client closed its side without a close frame, or vanished.
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => End::Gone,
        Error::Protocol(_) => close(CLOSE_PROTOCOL, "WebSocket protocol error"),
        _ => End::Gone,
    }
}

async fn session(socket: WebSocket, state: Arc<AppState>, tenant: Tenant) {
    state.metrics.open_sockets.inc();
    let (mut sink, mut incoming) = socket.split();
    let (outbox, mut to_send) = mpsc::channel::<Message>(OUTBOX);
    let writer = tokio::spawn(async move {
        while let Some(message) = to_send.recv().await {
            let closing = matches!(message, Message::Close(_));
            // A send fails once the client's close frame has been read (say,
            // a ping queued just before it); the close below answers it.
            if sink.send(message).await.is_err() || closing {
                break;
            }
        }
        // Sends the queued answer to a client's close frame, or flushes ours.
        let _ = tokio::time::timeout(CLOSE_WITHIN, sink.close()).await;
    });

    let follower = state.hub.follower();
    let mut session = Session { state: state.clone(), tenant, outbox, follower, cut_off: Cell::new(false) };
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut last_heard = tokio::time::Instant::now();
    let end = loop {
        tokio::select! {
            frame = incoming.next() => {
                last_heard = tokio::time::Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) if text.len() > MAX_MESSAGE_BYTES => break TOO_BIG,
                    Some(Ok(Message::Binary(bytes))) if bytes.len() > MAX_MESSAGE_BYTES => break TOO_BIG,
                    // Boxed: a message being handled (a Kubernetes request
                    // in flight) is 5 KiB of state, which every idle socket's
                    // task would otherwise carry.
                    Some(Ok(Message::Text(text))) => Box::pin(session.handle(&text)).await,
                    Some(Ok(Message::Binary(_))) => {
                        let binary = ApiError::BadRequest("binary frames are not supported; send JSON text".into());
                        session.answer_error(binary, None).await;
                    }
                    Some(Ok(Message::Close(_))) | None => break End::Gone,
                    Some(Ok(_)) => {} // pings are answered by the library; pongs only prove life
                    Some(Err(error)) => {
                        debug!(%error, "websocket read failed");
                        break on_read_error(error);
                    }
                }
            }
            received = session.follower.recv() => match received {
                Received::Change(change) => session.push_change(&change),
                // Too far behind the watch: resend the current state instead.
                Received::Lagged => session.resend_all(),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > IDLE_LIMIT {
                    break End::Close { code: CLOSE_POLICY, reason: "no answer to pings", readable: true };
                }
                session.queue(Message::Ping(Default::default()));
            }
        }
        if session.cut_off.get() {
            break End::CutOff;
        }
        if session.outbox.is_closed() {
            break End::Gone;
        }
    };
    match end {
        End::CutOff => {
            debug!(tenant = session.tenant.name, "websocket client too slow to keep up; dropping it");
            writer.abort();
        }
        End::Close { code, reason, readable } => {
            let frame = CloseFrame { code, reason: Utf8Bytes::from(reason) };
            if session.outbox.try_send(Message::Close(Some(frame))).is_ok() {
                if readable {
                    until_close(&mut incoming).await;
                } else {
                    // Ended with its close frame unread, the connection is
                    // reset; a client that has read ours (tungstenite, for
                    // one) takes that as the end of the closing handshake.
                    tokio::time::sleep(LINGER).await;
                }
            }
        }
        End::Gone => {}
    }
    drop(session);
    let _ = writer.await;
    state.metrics.open_sockets.dec();
}

/// The closing handshake: reads on, dropping what comes, until the client's
/// close frame (or its end), so that nothing it sent is left unread when
/// the connection ends (unread data would reset it under the close frame).
async fn until_close(incoming: &mut SplitStream<WebSocket>) {
    let drain = async {
        while let Some(Ok(frame)) = incoming.next().await {
            if matches!(frame, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_WITHIN, drain).await;
}

/// Reads a client message. serde's `flatten` ignores `deny_unknown_fields`,
/// so an `execute` is taken apart here: its `type` and `ref`, then the rest
/// as a SubmitRequest that refuses unknown fields as the REST body does.
/// On failure, the `ref` if there was one, to echo.
fn parse(text: &str) -> Result<ClientMessage, (String, Option<String>)> {
    let value: Value = serde_json::from_str(text).map_err(|e| (e.to_string(), None))?;
    let Value::Object(mut fields) = value else {
        return Err(("expected a JSON object with a `type`".to_owned(), None));
    };
    if fields.get("type").and_then(Value::as_str) != Some("execute") {
        return serde_json::from_value(Value::Object(fields)).map_err(|e| (e.to_string(), None));
    }
    fields.remove("type");
    let ref_ = match fields.remove("ref") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) => Some(r),
        Some(other) => return Err((format!("ref: expected a string, got {other}"), None)),
    };
    match serde_json::from_value::<SubmitRequest>(Value::Object(fields)) {
        Ok(request) => Ok(ClientMessage::Execute { ref_, request: Box::new(request) }),
        Err(e) => Err((e.to_string(), ref_)),
    }
}

struct Session {
    state: Arc<AppState>,
    tenant: Tenant,
    outbox: mpsc::Sender<Message>,
    /// The Executions it subscribed to (and made), whose changes it pushes.
    follower: Follower,
    cut_off: Cell<bool>,
}

impl Session {
    async fn handle(&mut self, text: &str) {
        let message = match parse(text) {
            Ok(message) => message,
            Err((why, ref_)) => {
                let error = ApiError::BadRequest(format!("not a message this gateway understands: {why}"));
                return self.answer_error(error, ref_).await;
            }
        };
        match message {
            ClientMessage::Execute { ref_, request } => {
                if let Err(e) = self.tenant.charge() {
                    return self.answer_error(e, ref_).await;
                }
                match create(&self.state, &self.tenant, &request).await {
                    Ok(created) => {
                        let id = created.metadata.name.clone().unwrap_or_default();
                        self.follower.follow(&self.tenant.namespace, &id);
                        // The watch may have seen a change since the create.
                        let current = self.state.hub.get(&self.tenant.namespace, &id);
                        self.answer(&ServerMessage::Accepted { id, ref_ }).await;
                        self.answer(&update(current.as_deref().unwrap_or(&created))).await;
                    }
                    Err(e) => self.answer_error(e, ref_).await,
                }
            }
            // Like a REST GET, a subscribe costs a token: it may go to the API server.
            ClientMessage::Subscribe { id } => match self.tenant.charge() {
                Err(e) => self.answer_error(e, None).await,
                Ok(()) => {
                    // Followed before its state is read, so that no change in between is lost.
                    self.follower.follow(&self.tenant.namespace, &id);
                    match fetch(&self.state, &self.tenant.namespace, &id).await {
                        Ok(current) => self.answer(&update(&current)).await,
                        Err(e) => {
                            self.follower.unfollow(&self.tenant.namespace, &id);
                            self.answer_error(e, None).await;
                        }
                    }
                }
            },
            ClientMessage::Unsubscribe { id } => self.follower.unfollow(&self.tenant.namespace, &id),
        }
    }

    /// A change of an Execution it follows.
    fn push_change(&self, change: &Change) {
        // Encoded once by the hub for every socket: a clone shares the bytes.
        if let Some(text) = &change.message {
            self.queue_push(Message::Text(text.clone()));
        }
    }

    fn resend_all(&self) {
        for id in self.follower.following(&self.tenant.namespace) {
            if let Some(current) = self.state.hub.get(&self.tenant.namespace, id) {
                self.push(&current);
            }
        }
    }

    /// A change from the watch: queued if there is room, else the client
    /// is too slow and is cut off (the watch waits for no one).
    fn push(&self, execution: &Execution) {
        if let Some(text) = crate::hub::update_message(execution) {
            self.queue_push(Message::Text(text));
        }
    }

    fn queue_push(&self, message: Message) {
        self.state.metrics.pushes.inc();
        self.queue(message);
    }

    async fn answer_error(&mut self, error: ApiError, ref_: Option<String>) {
        self.answer(&ServerMessage::Error { error: error.detail(), ref_ }).await;
    }

    /// An answer to the client's own message: waits for room in its queue,
    /// so a client that sends faster than it reads is slowed down.
    async fn answer(&mut self, message: &ServerMessage) {
        let Some(text) = encode(message) else { return };
        if tokio::time::timeout(ANSWER_WITHIN, self.outbox.send(Message::Text(text.into()))).await.is_err() {
            self.cut_off.set(true);
        }
    }

    fn queue(&self, message: Message) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.outbox.try_send(message) {
            self.cut_off.set(true);
        }
    }
}

fn update(execution: &Execution) -> ServerMessage {
    ServerMessage::Update { execution: Box::new(view(execution)) }
}

fn encode(message: &ServerMessage) -> Option<String> {
    serde_json::to_string(message).map_err(|error| debug!(%error, "could not encode a websocket message")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_refuses_unknown_fields_and_keeps_its_ref() {
        let ok = parse(r#"{"type": "execute", "ref": "r", "language": "bash", "code": "true"}"#).unwrap();
        assert!(matches!(ok, ClientMessage::Execute { ref_: Some(r), .. } if r == "r"));
        let (why, ref_) = parse(r#"{"type": "execute", "ref": "r", "language": "bash", "bogus": 1}"#).unwrap_err();
        assert!(why.contains("bogus"), "{why}");
        assert_eq!(ref_.as_deref(), Some("r"));
        for bad in
            ["[]", "7", "{}", r#"{"type": "dance"}"#, r#"{"type": "subscribe"}"#, r#"{"type": "execute", "ref": 1}"#]
        {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse(r#"{"type": "subscribe", "id": "x"}"#).unwrap(), ClientMessage::Subscribe { id: "x".into() });
    }

    #[test]
    fn an_idle_socket_costs_little() {
        // Every open socket's task holds a session future; it must not hold
        // the state of a request in flight (see the Box in `session`).
        fn future_size<A, B, C, F: std::future::Future>(_: fn(A, B, C) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        let size = future_size(session as fn(_, _, _) -> _);
        assert!(size < 3 * 1024, "a session future of {size} bytes");
    }

    #[test]
    fn read_errors_map_to_close_codes() {
        use tungstenite::error::{CapacityError, Error, ProtocolError};
        let end = |e: Error| on_read_error(axum::Error::new(e));
        let too_long = Error::Capacity(CapacityError::MessageTooLong { size: usize::MAX, max_size: READ_LIMIT_BYTES });
        assert!(matches!(end(too_long), End::Close { code: 1009, readable: false, .. }));
        assert!(matches!(end(Error::Utf8("x".into())), End::Close { code: 1007, readable: false, .. }));
        let control = Error::Protocol(ProtocolError::ControlFrameTooBig);
        assert!(matches!(end(control), End::Close { code: 1002, readable: false, .. }));
        assert_eq!(end(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)), End::Gone);
        assert_eq!(end(Error::ConnectionClosed), End::Gone);
    }
}
