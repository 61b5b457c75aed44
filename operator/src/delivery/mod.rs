//! Hands a program to a warm sandbox's runner and brings its result back,
//! both through the kubelet: one `pods/attach` session to the run
//! container, the program written as one line on its stdin, the runner's
//! acceptance and frame read from its stdout. The sandbox keeps no network.
//!
//! What the stream is trusted for: only the runner writes its stdout (the
//! program's streams are pipes the runner reads, and the runner is not
//! dumpable), and in warm mode it prints a frame only when it is about to
//! exit 0 — the same condition under which the termination message counts.
//! Anything else on the stream, or a stream that breaks, leaves the result
//! to the pod's own end, as for a cold run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::Client;
use sandrun_crds::Execution;
use sandrun_runner::protocol::ACCEPTED_PREFIX;
use sandrun_runner::{parse_frame, Delivery, RunResult};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::metrics::Metrics;

mod sessions;
use sessions::Session;
pub use sessions::Sessions;

/// Past the program's own timeout, how long the stream may stay open: the
/// runner reports within about a second of its deadline.
const STREAM_GRACE: Duration = Duration::from_secs(120);
/// The longest stdout line read: a frame of two full streams, escaped.
const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

/// How a delivery went, for the reconcile that it triggers.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The runner's frame, read off the stream.
    Finished { result: Box<RunResult>, accepted: Option<Time>, finished: Time },
    /// No session could be opened: nothing reached the runner, so the run
    /// may still go elsewhere.
    NotSent(String),
    /// The session broke or ended after the program was written: only the
    /// pod's end can say what happened.
    Lost(String),
}

#[derive(Clone, Debug)]
pub enum State {
    /// A warm pod is being claimed for the run; its status does not say so
    /// yet.
    Binding,
    InFlight,
    Done(Outcome),
}

/// Deliveries this operator has started, by Execution uid, and the channel
/// through which a finished one asks for its Execution's reconcile.
#[derive(Clone)]
pub struct Deliveries {
    states: Arc<Mutex<HashMap<String, State>>>,
    trigger: mpsc::UnboundedSender<ObjectRef<Execution>>,
    /// Sessions opened ahead to waiting warm pods.
    pub sessions: Sessions,
    client: Client,
    metrics: Metrics,
}

impl Deliveries {
    pub fn new(client: Client, metrics: Metrics) -> (Self, mpsc::UnboundedReceiver<ObjectRef<Execution>>) {
        let (trigger, triggered) = mpsc::unbounded_channel();
        (Self { states: Arc::default(), trigger, sessions: Sessions::default(), client, metrics }, triggered)
    }

    pub fn state(&self, uid: &str) -> Option<State> {
        self.states.lock().ok()?.get(uid).cloned()
    }

    /// Once the Execution shows the result, nothing reads it again.
    pub fn forget(&self, uid: &str) {
        if let Ok(mut states) = self.states.lock() {
            states.remove(uid);
        }
    }

    /// Marks the run as being bound, before its claim is sent: a reconcile
    /// that reads the run's status from before the binding (the watch
    /// lags the write) must wait for it, not bind or create again.
    pub fn binding(&self, uid: &str) {
        self.set(uid, State::Binding);
    }

    fn set(&self, uid: &str, state: State) {
        if let Ok(mut states) = self.states.lock() {
            states.insert(uid.to_owned(), state);
        }
    }

    /// Starts delivering `delivery` to `pod`, unless this operator already
    /// is; returns at once. The session is opened at once, but the program
    /// is written only when `go` says so: the binding's last write may still
    /// be in flight, and a session closed unwritten leaves the runner with
    /// nothing (it ends, undelivered).
    pub fn start(
        &self,
        execution: ObjectRef<Execution>,
        pod: String,
        delivery: Delivery,
        go: Option<oneshot::Receiver<()>>,
    ) {
        let uid = delivery.execution_uid.clone();
        if matches!(self.state(&uid), Some(State::InFlight)) {
            return;
        }
        self.set(&uid, State::InFlight);
        let this = self.clone();
        tokio::spawn(async move {
            let (client, metrics) = (this.client.clone(), this.metrics.clone());
            let namespace = execution.namespace.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(client, &namespace);
            let limit = Duration::from_millis(delivery.timeout_ms) + STREAM_GRACE;
            let started = Instant::now();
            let ahead = this.sessions.take(&namespace, &pod);
            let delivered = deliver(&api, &pod, ahead, &delivery, go, &metrics);
            let outcome = match tokio::time::timeout(limit, delivered).await {
                Ok(Some(outcome)) => outcome,
                Ok(None) => {
                    // The binding failed and said so itself; nothing to report.
                    this.forget(&uid);
                    return;
                }
                Err(_) => Outcome::Lost(format!("no result on the stream within {} s", limit.as_secs())),
            };
            match &outcome {
                Outcome::Finished { .. } => {
                    metrics.warm_stream_seconds.observe(started.elapsed().as_secs_f64());
                    info!(%execution, pod, "result read from the warm sandbox's stream");
                }
                Outcome::NotSent(why) | Outcome::Lost(why) => warn!(%execution, pod, why, "warm delivery"),
            }
            this.set(&uid, State::Done(outcome));
            // The controller is gone only when the operator stops.
            let _ = this.trigger.send(execution);
        });
    }
}

async fn deliver(
    api: &Api<Pod>,
    pod: &str,
    ahead: Option<Session>,
    delivery: &Delivery,
    go: Option<oneshot::Receiver<()>>,
    metrics: &Metrics,
) -> Option<Outcome> {
    let session = match ahead {
        Some(session) => session,
        None => match sessions::open(api, pod).await {
            Ok(session) => session,
            Err(why) => return Some(Outcome::NotSent(why)),
        },
    };
    let Session { mut stdin, stdout, .. } = session;
    if let Some(go) = go {
        if go.await.is_err() {
            // The binding failed: nothing is written, and the runner, its
            // stdin closed with the session, ends without running anything.
            return None;
        }
    }
    let started = Instant::now();
    Some(read_result(stdin_write(&mut stdin, delivery).await, stdout, started, metrics).await)
}

async fn stdin_write(stdin: &mut (impl AsyncWriteExt + Unpin), delivery: &Delivery) -> Result<(), String> {
    stdin.write_all(delivery.to_line().as_bytes()).await.map_err(|e| format!("writing the program: {e}"))?;
    stdin.flush().await.map_err(|e| format!("writing the program: {e}"))
}

/// Reads the runner's stdout until its frame.
async fn read_result(
    written: Result<(), String>,
    stdout: impl tokio::io::AsyncRead + Unpin,
    started: Instant,
    metrics: &Metrics,
) -> Outcome {
    if let Err(why) = written {
        return Outcome::Lost(why);
    }
    let mut lines = BufReader::new(stdout);
    let mut accepted = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut lines).take(MAX_LINE_BYTES as u64).read_until(b'\n', &mut line).await;
        match read {
            Ok(0) => return Outcome::Lost("the stream ended without a result".to_owned()),
            Ok(_) => {}
            Err(e) => return Outcome::Lost(format!("reading the stream: {e}")),
        }
        let text = String::from_utf8_lossy(&line);
        if text.starts_with(ACCEPTED_PREFIX) {
            metrics.warm_delivery_seconds.observe(started.elapsed().as_secs_f64());
            accepted = Some(Time(Timestamp::now()));
            continue;
        }
        match parse_frame(&text) {
            Some(Ok(result)) => {
                return Outcome::Finished { result: Box::new(result), accepted, finished: Time(Timestamp::now()) }
            }
            Some(Err(e)) => return Outcome::Lost(format!("a frame that does not parse: {e}")),
            None => {}
        }
    }
}
