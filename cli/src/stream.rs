//! `sandrun run` over the gateway's WebSocket: execute, then follow the
//! execution's updates until it is final. When the connection drops after
//! the gateway accepted the run, reconnect with backoff and subscribe to
//! the id again: the gateway answers a subscribe with the current state at
//! once, so a result that arrived in between is not lost.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use sandrun_api::{ClientMessage, ErrorBody, ExecutionView, ServerMessage, SubmitRequest};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use url::Url;

use crate::error::{Error, Result};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const REF: &str = "sandrun-cli";
/// The gateway's cap on one WebSocket message; a bigger one closes the socket.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Where and how to connect, and how hard to try again.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: Url,
    pub key: Option<String>,
    pub tls: Arc<rustls::ClientConfig>,
    /// Waits before each reconnect attempt; their number is the attempts.
    pub backoff: Vec<Duration>,
    /// No frame at all for this long and the connection counts as dropped
    /// (the gateway pings every 20s).
    pub idle: Duration,
}

impl Target {
    pub fn new(url: Url, key: Option<String>, tls: Arc<rustls::ClientConfig>) -> Self {
        let backoff = [250, 500, 1000, 2000, 4000, 8000].map(Duration::from_millis).to_vec();
        Self { url, key, tls, backoff, idle: Duration::from_secs(60) }
    }
}

/// What a follower sees on the way to the result.
#[derive(Debug, PartialEq)]
pub enum Event<'a> {
    Update(&'a ExecutionView),
    /// The connection dropped; trying again after `after`.
    Reconnecting {
        attempt: usize,
        after: Duration,
    },
}

/// Submits `request` and follows it to its end; `on_event` sees every state.
pub async fn execute(
    target: &Target,
    request: SubmitRequest,
    mut on_event: impl FnMut(Event<'_>),
) -> Result<ExecutionView> {
    let execute = ClientMessage::Execute { ref_: Some(REF.to_owned()), request: Box::new(request) };
    let size = serde_json::to_string(&execute).map(|text| text.len()).unwrap_or_default();
    if size > MAX_MESSAGE_BYTES {
        return Err(Error::Usage(format!(
            "the program, its stdin and arguments come to {size} bytes; the gateway takes at most {MAX_MESSAGE_BYTES}"
        )));
    }
    let mut socket = connect(target).await?;
    send(&mut socket, &execute).await.map_err(|e| Error::LostBeforeAccepted { why: e.to_string() })?;
    let id = loop {
        match next_message(&mut socket, target.idle).await {
            Ok(ServerMessage::Accepted { id, .. }) => break id,
            Ok(ServerMessage::Error { error, .. }) => return Err(Error::Gateway { status: None, detail: error }),
            Ok(ServerMessage::Update { .. } | ServerMessage::Gone { .. }) => {}
            Err(ended) => return Err(Error::LostBeforeAccepted { why: ended.to_string() }),
        }
    };
    follow(target, &id, Some(socket), &mut on_event).await
}

/// Reads updates for `id` until it is final, from `socket` and then, after
/// each drop, from a new connection subscribed to `id`.
async fn follow(
    target: &Target,
    id: &str,
    mut socket: Option<Socket>,
    on_event: &mut impl FnMut(Event<'_>),
) -> Result<ExecutionView> {
    let mut failures = 0;
    loop {
        let connected = match socket.take() {
            Some(socket) => Ok(socket),
            None => subscribe(target, id).await,
        };
        match connected {
            Ok(mut socket) => {
                while let Ok(message) = next_message(&mut socket, target.idle).await {
                    match message {
                        ServerMessage::Update { execution } if execution.id == id => {
                            failures = 0;
                            on_event(Event::Update(&execution));
                            if execution.status.is_final() {
                                let _ = socket.close(None).await;
                                return Ok(*execution);
                            }
                        }
                        ServerMessage::Gone { id: gone } if gone == id => {
                            return Err(Error::Deleted { id: gone });
                        }
                        ServerMessage::Error { error, .. } => {
                            return Err(Error::Gateway { status: None, detail: error });
                        }
                        _ => {}
                    }
                }
            }
            // A refused key or a bad URL stays so; a gateway restarting or out of reach may come back.
            Err(e) if !retryable(&e) => return Err(e),
            Err(_) => {}
        }
        let Some(wait) = target.backoff.get(failures) else {
            return Err(Error::Disconnected { id: id.to_owned(), attempts: failures });
        };
        failures += 1;
        on_event(Event::Reconnecting { attempt: failures, after: *wait });
        tokio::time::sleep(*wait).await;
    }
}

fn retryable(error: &Error) -> bool {
    match error {
        Error::Gateway { status: Some(status), .. } => *status >= 500,
        Error::WebSocket { source, .. } => match source.as_ref() {
            tungstenite::Error::Http(response) => response.status().is_server_error(),
            tungstenite::Error::Url(_) | tungstenite::Error::HttpFormat(_) | tungstenite::Error::Tls(_) => false,
            _ => true,
        },
        _ => false,
    }
}

async fn connect(target: &Target) -> Result<Socket> {
    let failed = |source| Error::WebSocket { url: target.url.to_string(), source: Box::new(source) };
    let mut request = target.url.as_str().into_client_request().map_err(failed)?;
    if let Some(key) = &target.key {
        let value = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| Error::Usage("the API key has characters a header cannot carry".to_owned()))?;
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    let connector = Connector::Rustls(target.tls.clone());
    match tokio_tungstenite::connect_async_tls_with_config(request, None, false, Some(connector)).await {
        Ok((socket, _)) => Ok(socket),
        // A refused handshake carries the gateway's JSON error, e.g. a bad key.
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status();
            let body = response.body().as_deref().unwrap_or_default();
            match serde_json::from_slice::<ErrorBody>(body) {
                Ok(error) => Err(Error::Gateway { status: Some(status.as_u16()), detail: error.error }),
                Err(_) => Err(failed(tungstenite::Error::Http(response))),
            }
        }
        Err(e) => Err(failed(e)),
    }
}

async fn subscribe(target: &Target, id: &str) -> Result<Socket> {
    let mut socket = connect(target).await?;
    send(&mut socket, &ClientMessage::Subscribe { id: id.to_owned() })
        .await
        .map_err(|source| Error::WebSocket { url: target.url.to_string(), source: Box::new(source) })?;
    Ok(socket)
}

async fn send(socket: &mut Socket, message: &ClientMessage) -> Result<(), tungstenite::Error> {
    // Serializing these types cannot fail: string keys, no non-finite floats.
    let text = serde_json::to_string(message).unwrap_or_default();
    socket.send(Message::text(text)).await
}

/// Why a connection gave no more messages.
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error("closed by the gateway, {code}{reason}")]
    Closed { code: u16, reason: String },
    #[error("closed")]
    Eof,
    #[error("{0}")]
    Broken(tungstenite::Error),
    #[error("nothing heard for {0:?}")]
    Silent(Duration),
}

/// The next message from the gateway, or why there is none: closed, broken
/// or silent for `idle`. Messages this version does not know are skipped.
async fn next_message(socket: &mut Socket, idle: Duration) -> Result<ServerMessage, Ended> {
    loop {
        let frame = match tokio::time::timeout(idle, socket.next()).await {
            Err(_) => return Err(Ended::Silent(idle)),
            Ok(None) => return Err(Ended::Eof),
            Ok(Some(Err(e))) => return Err(Ended::Broken(e)),
            Ok(Some(Ok(frame))) => frame,
        };
        match frame {
            Message::Text(text) => {
                if let Ok(message) = serde_json::from_str(text.as_str()) {
                    return Ok(message);
                }
            }
            Message::Close(frame) => {
                return Err(match frame {
                    Some(frame) => Ended::Closed {
                        code: frame.code.into(),
                        reason: if frame.reason.is_empty() { String::new() } else { format!(": {}", frame.reason) },
                    },
                    None => Ended::Eof,
                })
            }
            // Pings are answered by tungstenite as it reads.
            _ => {}
        }
    }
}
