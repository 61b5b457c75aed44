//! One socket's life: a writer task owns the sink, and a session loop
//! reads client messages, the shared watch and the shutdown signal.
//!
//! A reconnecting client subscribes again and gets the current state at
//! once, so no final result is lost. Bad input never ends a session by
//! itself: a message the gateway cannot use is answered with an `error`.
//! A message over the cap, a frame it cannot read, or the gateway shutting
//! down ends it with the close code for the reason (see `protocol`), and
//! the gateway then waits for the client's close frame, so that the
//! connection ends cleanly.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::stream::SplitStream;
use futures::{SinkExt, StreamExt};
use sandrun_crds::Execution;
use tokio::sync::mpsc;
use tracing::debug;

use super::protocol::{
    encode, on_read_error, parse, update, End, CLOSE_POLICY, GOING_AWAY, MAX_MESSAGE_BYTES, TOO_BIG,
};
use crate::api::{ClientMessage, ServerMessage};
use crate::auth::{SocketSlot, Tenant};
use crate::error::ApiError;
use crate::executions::{create, fetch};
use crate::hub::{update_message, Change, Follower, Received};
use crate::state::AppState;

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

/// Serves one socket until it closes, is closed, or is cut off.
pub async fn run(socket: WebSocket, state: Arc<AppState>, tenant: Tenant, slot: SocketSlot) {
    // The key's socket count goes down when this session ends.
    let _slot = slot;
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
                Received::Change(change) => {
                    session.push_change(&change);
                    if change.gone {
                        let (namespace, id) = (change.execution.metadata.namespace.clone(), change.execution.metadata.name.clone());
                        session.follower.unfollow(&namespace.unwrap_or_default(), &id.unwrap_or_default());
                    }
                }
                // Too far behind the watch: resend the current state instead.
                Received::Lagged => session.resend_all(),
            },
            // Told once, for good: a session that opens after the shutdown
            // has begun closes at once.
            _ = state.shutdown.begun() => break GOING_AWAY,
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
                if let Err(e) = self.tenant.charge().and_then(|()| self.room_to_follow()) {
                    return self.answer_error(e, ref_).await;
                }
                match create(&self.state, &self.tenant, &request, None).await {
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
            ClientMessage::Subscribe { id } => match self.tenant.charge().and_then(|()| self.room_to_follow()) {
                Err(e) => self.answer_error(e, None).await,
                Ok(()) => {
                    // Followed before its state is read, so that no change in between is lost.
                    self.follower.follow(&self.tenant.namespace, &id);
                    match fetch(&self.state, &self.tenant, &id).await {
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

    /// Whether this socket may follow one more run.
    fn room_to_follow(&self) -> Result<(), ApiError> {
        let limit = self.tenant.policy.max_subscriptions;
        match self.follower.count() < limit {
            true => Ok(()),
            false => Err(ApiError::TooMany { what: "subscriptions", limit }),
        }
    }

    /// A change of an Execution it follows.
    fn push_change(&self, change: &Change) {
        // A subscribe follows before it checks whose run it is: a change
        // queued meanwhile for another key's run is dropped here.
        if !self.tenant.owns(&change.execution) {
            return;
        }
        // Encoded once by the hub for every socket: a clone shares the bytes.
        if let Some(text) = &change.message {
            self.queue_push(Message::Text(text.clone()));
        }
    }

    fn resend_all(&self) {
        for id in self.follower.following(&self.tenant.namespace) {
            if let Some(current) = self.state.hub.get(&self.tenant.namespace, id).filter(|e| self.tenant.owns(e)) {
                self.push(&current);
            }
        }
    }

    /// A change from the watch: queued if there is room, else the client
    /// is too slow and is cut off (the watch waits for no one).
    fn push(&self, execution: &Execution) {
        if let Some(text) = update_message(execution) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_socket_costs_little() {
        // Every open socket's task holds a session future; it must not hold
        // the state of a request in flight (see the Box in `run`).
        fn future_size<A, B, C, D, F: std::future::Future>(_: fn(A, B, C, D) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        let size = future_size(run as fn(_, _, _, _) -> _);
        assert!(size < 3 * 1024, "a session future of {size} bytes");
    }
}
