//! One of many WebSocket clients: connects, subscribes to every Execution
//! of the phase, notes when each one's final update arrives, and closes
//! cleanly when told to. All clients share one key, so one rate limit:
//! every request they make waits its turn on a shared [`Pacer`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use sandrun_api::{ClientMessage, ServerMessage, State};
use sandrun_e2e::gateway::Socket;
use serde::Deserialize;
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const CONNECT_WITHIN: Duration = Duration::from_secs(30);
const ANSWER_WITHIN: Duration = Duration::from_secs(30);
const CLOSE_WITHIN: Duration = Duration::from_secs(10);
/// Attempts per request; rate-limited ones wait as told and do not count.
const ATTEMPTS: u32 = 5;
/// Updates are well under 1 KiB: the library's 128 KiB default read
/// buffer would cost this process a gigabyte at 10k sockets.
const READ_BUFFER: usize = 8 * 1024;

/// Spaces out the requests made with one key, so that the gateway's rate
/// limiter is not hammered with requests it must refuse.
pub struct Pacer {
    gap: Duration,
    next: Mutex<tokio::time::Instant>,
}

impl Pacer {
    pub fn new(per_second: u32) -> Self {
        Self { gap: Duration::from_secs(1) / per_second.max(1), next: Mutex::new(tokio::time::Instant::now()) }
    }

    /// Waits for this caller's slot.
    pub async fn turn(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
            let slot = (*next).max(tokio::time::Instant::now());
            *next = slot + self.gap;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// What the clients of one phase share with the benchmark driving them.
pub struct Shared {
    pub ws_url: String,
    pub token: String,
    /// The Executions every client subscribes to, one per round.
    pub ids: Vec<String>,
    pub pacer: Arc<Pacer>,
    /// Connections being opened (and subscribed) at once.
    pub opening: Semaphore,
    pub ready: AtomicUsize,
    pub failed: AtomicUsize,
    /// Per round: clients that have its final update.
    pub finals: Vec<AtomicUsize>,
    /// Requests the gateway refused as rate-limited, and connections retried.
    pub rate_limited: AtomicUsize,
    pub retried: AtomicUsize,
}

/// What one client saw.
#[derive(Debug, Default)]
pub struct Report {
    /// Per round: when the final update arrived.
    pub received: Vec<Option<Instant>>,
    /// Updates received once subscribed, and of those, the ones of an
    /// Execution after its final one.
    pub updates: usize,
    pub extra: usize,
    pub error: Option<String>,
    pub clean_close: bool,
}

/// The error of a client stopped because the phase failed elsewhere.
pub const STOPPED: &str = "stopped before it had subscribed";

/// Runs one client until `close` turns true (or it fails).
pub async fn run(shared: Arc<Shared>, mut close: watch::Receiver<bool>) -> Report {
    let mut report = Report { received: vec![None; shared.ids.len()], ..Default::default() };
    let opened = tokio::select! {
        opened = open(&shared) => opened,
        // The phase failed elsewhere: no use connecting any more.
        _ = close.wait_for(|closing| *closing) => Err(STOPPED.to_owned()),
    };
    let mut socket = match opened {
        Ok(socket) => socket,
        Err(error) => {
            shared.failed.fetch_add(1, Ordering::SeqCst);
            report.error = Some(error);
            return report;
        }
    };
    shared.ready.fetch_add(1, Ordering::SeqCst);
    if let Err(error) = listen(&shared, &mut socket, &mut report, &mut close).await {
        shared.failed.fetch_add(1, Ordering::SeqCst);
        report.error = Some(error);
    }
    report.clean_close = close_cleanly(socket).await;
    report
}

/// Connects and subscribes, holding one of the `opening` permits.
async fn open(shared: &Shared) -> Result<Socket, String> {
    let _permit = shared.opening.acquire().await.map_err(|e| e.to_string())?;
    let mut socket = connect(shared).await?;
    for id in &shared.ids {
        subscribe(shared, &mut socket, id).await?;
    }
    Ok(socket)
}

async fn connect(shared: &Shared) -> Result<Socket, String> {
    let mut failures = 0;
    loop {
        shared.pacer.turn().await;
        let mut request = shared.ws_url.as_str().into_client_request().map_err(|e| e.to_string())?;
        let bearer = format!("Bearer {}", shared.token).parse().map_err(|e| format!("{e}"))?;
        request.headers_mut().insert("Authorization", bearer);
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
        let attempt = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
        let error = match tokio::time::timeout(CONNECT_WITHIN, attempt).await {
            Ok(Ok((socket, _))) => return Ok(socket),
            Ok(Err(WsError::Http(response))) if response.status() == StatusCode::TOO_MANY_REQUESTS => {
                shared.rate_limited.fetch_add(1, Ordering::Relaxed);
                let wait = response.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
                tokio::time::sleep(Duration::from_secs(wait.unwrap_or(1))).await;
                continue;
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {CONNECT_WITHIN:?}"),
        };
        // Thousands of connections at once may meet a full accept queue.
        failures += 1;
        if failures >= ATTEMPTS {
            return Err(format!("connecting: {error}"));
        }
        shared.retried.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200 << failures)).await;
    }
}

/// Subscribes to `id` and waits for its current state, which must not be final yet.
async fn subscribe(shared: &Shared, socket: &mut Socket, id: &str) -> Result<(), String> {
    let text = serde_json::to_string(&ClientMessage::Subscribe { id: id.to_owned() }).map_err(|e| e.to_string())?;
    loop {
        shared.pacer.turn().await;
        socket.send(Message::Text(text.clone().into())).await.map_err(|e| format!("subscribing: {e}"))?;
        loop {
            match next(socket, ANSWER_WITHIN).await? {
                ServerMessage::Update { execution } if execution.id == id => {
                    if execution.status.is_final() {
                        return Err(format!("{id} was already {:?} when subscribed", execution.status));
                    }
                    return Ok(());
                }
                // Another of this client's Executions changing: nothing measured yet.
                ServerMessage::Update { .. } => {}
                ServerMessage::Error { error, .. } if error.code == "rate_limited" => {
                    shared.rate_limited.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
                other => return Err(format!("subscribing to {id}: {other:?}")),
            }
        }
    }
}

/// The next message from the gateway (pings are answered by the library).
async fn next(socket: &mut Socket, within: Duration) -> Result<ServerMessage, String> {
    loop {
        let frame = tokio::time::timeout(within, socket.next())
            .await
            .map_err(|_| format!("no message from the gateway within {within:?}"))?;
        match frame {
            Some(Ok(Message::Text(text))) => return parse(&text),
            Some(Ok(Message::Close(frame))) => return Err(format!("the gateway closed the socket: {frame:?}")),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(format!("reading: {error}")),
            None => return Err("the connection ended".to_owned()),
        }
    }
}

/// Just the id and state of an `update`, `None` for other messages. Every
/// client parses at once while the others wait for the CPU, so it skips
/// what it does not need.
fn peek(text: &str) -> Result<Option<Peeked>, String> {
    #[derive(Deserialize)]
    struct Message {
        #[serde(rename = "type")]
        kind: String,
        execution: Option<Peeked>,
    }
    let message: Message = serde_json::from_str(text).map_err(|e| format!("not a ServerMessage ({e}): {text}"))?;
    Ok(message.execution.filter(|_| message.kind == "update"))
}

#[derive(Deserialize)]
struct Peeked {
    id: String,
    status: State,
}

fn parse(text: &str) -> Result<ServerMessage, String> {
    serde_json::from_str(text).map_err(|e| format!("not a ServerMessage ({e}): {text}"))
}

/// Reads until told to close, noting each round's final update.
async fn listen(
    shared: &Shared,
    socket: &mut Socket,
    report: &mut Report,
    close: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    loop {
        let frame = tokio::select! {
            frame = socket.next() => frame,
            _ = close.wait_for(|closing| *closing) => return Ok(()),
        };
        // Taken before the message is even parsed: parsing is this
        // process's work, not the gateway's.
        let arrived = Instant::now();
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => return Err(format!("the gateway closed the socket: {frame:?}")),
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(format!("reading: {error}")),
            None => return Err("the connection ended".to_owned()),
        };
        let Some(execution) = peek(&text)? else {
            return Err(format!("unexpected message: {:?}", parse(&text)?));
        };
        report.updates += 1;
        let Some(round) = shared.ids.iter().position(|id| *id == execution.id) else {
            return Err(format!("an update for {}, which this client never subscribed to", execution.id));
        };
        if report.received[round].is_some() {
            report.extra += 1;
        } else if execution.status == State::Cancelled {
            report.received[round] = Some(arrived);
            shared.finals[round].fetch_add(1, Ordering::SeqCst);
        } else if execution.status.is_final() {
            return Err(format!("{} ended {:?}, not cancelled", execution.id, execution.status));
        }
    }
}

/// Sends a close frame and reads on to the gateway's; true when the
/// closing handshake completed.
async fn close_cleanly(mut socket: Socket) -> bool {
    if socket.close(None).await.is_err() {
        return false;
    }
    let handshake = async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(_))) | None => return true,
                Some(Ok(_)) => {}
                Some(Err(_)) => return false,
            }
        }
    };
    tokio::time::timeout(CLOSE_WITHIN, handshake).await.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peeking_reads_updates_only() {
        let update = r#"{"type":"update","execution":{"id":"run-1","status":"cancelled","stdoutTruncated":false,
            "stderrTruncated":false,"links":{"self":"/v1/executions/run-1","ws":"/v1/ws"}}}"#;
        let peeked = peek(update).unwrap().expect("an update");
        assert_eq!((peeked.id.as_str(), peeked.status), ("run-1", State::Cancelled));
        let error = r#"{"type":"error","error":{"code":"not_found","message":"no"}}"#;
        assert!(peek(error).unwrap().is_none());
        assert!(matches!(parse(error).unwrap(), ServerMessage::Error { .. }));
        assert!(peek("{").is_err());
    }

    #[tokio::test]
    async fn the_pacer_spaces_turns_evenly() {
        let pacer = Pacer::new(100);
        let started = tokio::time::Instant::now();
        for _ in 0..5 {
            pacer.turn().await;
        }
        // The first turn is at once, the next four 10 ms apart.
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(40) && elapsed < Duration::from_secs(1), "{elapsed:?}");
    }
}
