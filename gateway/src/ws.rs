//! WebSocket: execute or subscribe, then receive every status change.
//!
//! Per socket, a writer task owns the sink and a session loop reads client
//! messages and the shared watch. A reconnecting client subscribes again
//! and gets the current state at once, so no final result is lost.

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use sandrun_crds::Execution;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tracing::debug;

use crate::api::{ClientMessage, ServerMessage};
use crate::auth::Tenant;
use crate::convert::view;
use crate::error::ApiError;
use crate::rest::{create, fetch};
use crate::server::AppState;

pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
const PING_EVERY: Duration = Duration::from_secs(20);
/// No frame at all (pongs included) for this long and the peer is gone.
const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// Messages queued for a slow client before it is dropped.
const OUTBOX: usize = 256;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TRY_AGAIN: u16 = 1013;

pub async fn upgrade(ws: WebSocketUpgrade, State(state): State<Arc<AppState>>, tenant: Tenant) -> Response {
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| session(socket, state, tenant))
}

async fn session(socket: WebSocket, state: Arc<AppState>, tenant: Tenant) {
    state.metrics.open_sockets.inc();
    let (mut sink, mut incoming) = socket.split();
    let (outbox, mut to_send) = mpsc::channel::<Message>(OUTBOX);
    let writer = tokio::spawn(async move {
        while let Some(message) = to_send.recv().await {
            let closing = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || closing {
                break;
            }
        }
    });

    let mut session =
        Session { state: state.clone(), tenant, outbox, subscribed: HashSet::new(), overflowed: Cell::new(false) };
    let mut updates = state.hub.subscribe();
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut last_heard = tokio::time::Instant::now();
    let close = loop {
        tokio::select! {
            frame = incoming.next() => {
                last_heard = tokio::time::Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => session.handle(&text).await,
                    Some(Ok(Message::Binary(_))) => session.error(ApiError::BadRequest("binary frames are not supported; send JSON text".into()), None),
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Ok(_)) => {} // pings are answered by the library; pongs only prove life
                    Some(Err(error)) => {
                        debug!(%error, "websocket read failed");
                        break Some((CLOSE_POLICY, "unreadable or oversized frame"));
                    }
                }
            }
            update = updates.recv() => match update {
                Ok(execution) => session.push_if_subscribed(&execution),
                // Too far behind the watch: resend the current state instead.
                Err(RecvError::Lagged(_)) => session.resend_all(),
                Err(RecvError::Closed) => break Some((CLOSE_TRY_AGAIN, "gateway shutting down")),
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > IDLE_LIMIT {
                    break Some((CLOSE_POLICY, "no answer to pings"));
                }
                session.send(Message::Ping(Default::default()));
            }
        }
        if session.overflowed.get() {
            // Its queue is full, so not even a close frame fits: cut it off.
            debug!(tenant = session.tenant.name, "websocket client too slow to keep up; dropping it");
            writer.abort();
            break None;
        }
        if session.outbox.is_closed() {
            break None;
        }
    };
    if let Some((code, reason)) = close {
        let frame = CloseFrame { code, reason: Utf8Bytes::from(reason) };
        let _ = session.outbox.try_send(Message::Close(Some(frame)));
    }
    drop(session);
    let _ = writer.await;
    state.metrics.open_sockets.dec();
}

struct Session {
    state: Arc<AppState>,
    tenant: Tenant,
    outbox: mpsc::Sender<Message>,
    subscribed: HashSet<String>,
    overflowed: Cell<bool>,
}

impl Session {
    async fn handle(&mut self, text: &str) {
        let message = match serde_json::from_str::<ClientMessage>(text) {
            Ok(message) => message,
            Err(e) => {
                return self.error(ApiError::BadRequest(format!("not a message this gateway understands: {e}")), None)
            }
        };
        match message {
            ClientMessage::Execute { ref_, request } => {
                if let Err(e) = self.tenant.charge() {
                    return self.error(e, ref_);
                }
                match create(&self.state, &self.tenant, &request).await {
                    Ok(created) => {
                        let id = created.metadata.name.clone().unwrap_or_default();
                        self.subscribed.insert(id.clone());
                        self.reply(&ServerMessage::Accepted { id, ref_ });
                        self.push(&created);
                    }
                    Err(e) => self.error(e, ref_),
                }
            }
            ClientMessage::Subscribe { id } => match fetch(&self.state, &self.tenant.namespace, &id).await {
                Ok(current) => {
                    self.subscribed.insert(id);
                    self.push(&current);
                }
                Err(e) => self.error(e, None),
            },
            ClientMessage::Unsubscribe { id } => {
                self.subscribed.remove(&id);
            }
        }
    }

    fn push_if_subscribed(&self, execution: &Execution) {
        let mine = execution.metadata.namespace.as_deref() == Some(self.tenant.namespace.as_str());
        if mine && execution.metadata.name.as_ref().is_some_and(|n| self.subscribed.contains(n)) {
            self.push(execution);
        }
    }

    fn resend_all(&self) {
        for id in &self.subscribed {
            if let Some(current) = self.state.hub.get(&self.tenant.namespace, id) {
                self.push(&current);
            }
        }
    }

    fn push(&self, execution: &Execution) {
        self.state.metrics.pushes.inc();
        self.reply(&ServerMessage::Update { execution: Box::new(view(execution)) });
    }

    fn error(&self, error: ApiError, ref_: Option<String>) {
        self.reply(&ServerMessage::Error { error: error.detail(), ref_ });
    }

    fn reply(&self, message: &ServerMessage) {
        match serde_json::to_string(message) {
            Ok(text) => self.send(Message::Text(text.into())),
            Err(error) => debug!(%error, "could not encode a websocket message"),
        }
    }

    /// Queues a frame; a client too slow to drain its queue is cut off
    /// rather than holding memory for it.
    fn send(&self, message: Message) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.outbox.try_send(message) {
            self.overflowed.set(true);
        }
    }
}
