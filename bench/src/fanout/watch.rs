//! T0: when this process's own watch sees an Execution reach a phase, from
//! the same API server the gateway watches. It runs on a thread and
//! runtime of its own, with a client of its own, so that thousands of
//! sockets read on the main runtime cannot make it late, and at real-time
//! priority where allowed, so that it is not queued behind the gateway's
//! pushes it times.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use sandrun_crds::{Execution, Phase};
use tokio::sync::oneshot;

use crate::error::{bench_error, Error, Result};

/// When an Execution was first seen running, and first seen final.
#[derive(Clone, Copy, Debug, Default)]
pub struct Marks {
    pub running: Option<Instant>,
    pub ended: Option<(Instant, Phase)>,
}

type Seen = Arc<Mutex<HashMap<String, Marks>>>;

pub struct PhaseWatch {
    /// Whether the watch thread got real-time priority.
    pub realtime: bool,
    seen: Seen,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl PhaseWatch {
    /// Starts watching Executions in `namespace`; returns once the watch has listed.
    pub async fn start(namespace: &str) -> Result<Self> {
        let seen = Seen::default();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop, stopped) = oneshot::channel();
        let (namespace, marks) = (namespace.to_owned(), seen.clone());
        let thread = std::thread::Builder::new()
            .name("t0-watch".into())
            .spawn(move || follow(namespace, marks, ready_tx, stopped))?;
        let mut watch = Self { realtime: false, seen, stop: Some(stop), thread: Some(thread) };
        match tokio::time::timeout(Duration::from_secs(30), ready_rx).await {
            Ok(Ok(Ok(realtime))) => {
                watch.realtime = realtime;
                Ok(watch)
            }
            Ok(Ok(Err(error))) => Err(error),
            _ => Err(bench_error("the Execution watch did not start")),
        }
    }

    pub fn marks(&self, name: &str) -> Marks {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).get(name).copied().unwrap_or_default()
    }

    /// Waits until `pick` finds what it wants in `name`'s marks.
    pub async fn wait<T>(&self, name: &str, within: Duration, pick: impl Fn(&Marks) -> Option<T>) -> Result<T> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(found) = pick(&self.marks(name)) {
                return Ok(found);
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout { what: format!("Execution {name}"), seconds: within.as_secs() });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for PhaseWatch {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn follow(namespace: String, seen: Seen, ready: oneshot::Sender<Result<bool>>, stopped: oneshot::Receiver<()>) {
    let realtime = realtime_priority();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(error.into()));
            return;
        }
    };
    runtime.block_on(async move {
        let client = match Client::try_default().await {
            Ok(client) => client,
            Err(error) => {
                let _ = ready.send(Err(error.into()));
                return;
            }
        };
        let api: Api<Execution> = Api::namespaced(client, &namespace);
        let stream = watcher::watcher(api, watcher::Config::default());
        tokio::select! {
            _ = record(stream, &seen, ready, realtime) => {}
            _ = stopped => {}
        }
    });
}

async fn record(
    stream: impl futures::Stream<Item = Result<Event<Execution>, watcher::Error>>,
    seen: &Seen,
    ready: oneshot::Sender<Result<bool>>,
    realtime: bool,
) {
    let mut ready = Some(ready);
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        let now = Instant::now();
        match event {
            Ok(Event::InitDone) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Ok(realtime));
                }
            }
            Ok(Event::Apply(execution) | Event::InitApply(execution)) => mark(seen, &execution, now),
            Ok(_) => {}
            // Before the first list this fails the benchmark; later the
            // watcher retries on its own.
            Err(error) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(error.into()));
                }
            }
        }
    }
}

fn mark(seen: &Seen, execution: &Execution, now: Instant) {
    let Some(phase) = execution.status.as_ref().map(|s| s.phase) else { return };
    let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
    let marks = seen.entry(execution.name_any()).or_default();
    if phase == Phase::Running {
        marks.running.get_or_insert(now);
    }
    if phase.is_terminal() && marks.ended.is_none() {
        marks.ended = Some((now, phase));
    }
}

/// SCHED_FIFO for the calling thread. It sleeps but for a watch event now
/// and then, and the kernel keeps real-time threads from taking it all.
fn realtime_priority() -> bool {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: sets the calling thread's policy (pid 0), only reading `param`.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0 }
}
