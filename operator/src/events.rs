//! Events are for people: a reconcile hands them over and moves on, and a
//! few workers write them. Under overload the queue fills and new Events
//! are dropped (and counted) rather than slowing runs down, as client-go's
//! broadcaster does.

use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, Recorder};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tracing::warn;

const QUEUE: usize = 1024;
const WRITERS: usize = 8;

#[derive(Clone)]
pub struct EventQueue {
    sender: mpsc::Sender<(Event, ObjectReference)>,
    dropped: Counter,
}

impl EventQueue {
    /// Starts the writers; they stop when every queue handle is gone.
    pub fn start(recorder: Recorder, dropped: Counter) -> Self {
        let (sender, receiver) = mpsc::channel::<(Event, ObjectReference)>(QUEUE);
        let queued = stream::unfold(receiver, |mut receiver| async move { Some((receiver.recv().await?, receiver)) });
        tokio::spawn(queued.for_each_concurrent(WRITERS, move |(event, object)| {
            let recorder = recorder.clone();
            async move {
                if let Err(error) = recorder.publish(&event, &object).await {
                    warn!(%error, reason = event.reason, "could not publish event");
                }
            }
        }));
        Self { sender, dropped }
    }

    pub fn publish(&self, event: Event, object: ObjectReference) {
        if self.sender.try_send((event, object)).is_err() {
            self.dropped.inc();
        }
    }
}
