//! Events are for people: a reconcile hands them over and moves on, and a
//! few workers write them. Under overload the queue fills and new Events
//! are dropped (and counted) rather than slowing runs down, as client-go's
//! broadcaster does.
//!
//! Written here rather than with kube's `Recorder`: it keeps every Event it
//! sent for six minutes (to count repeats into a series) and scans them all
//! on each publish. At ten thousand runs that was tens of MiB and a scan of
//! tens of thousands per Event, for Events that never repeat: each marks a
//! step of one run.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::Client;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tracing::warn;

use crate::text::truncate_at_char;

const QUEUE: usize = 1024;
const WRITERS: usize = 8;
/// The API server refuses a longer note.
const MAX_NOTE_BYTES: usize = 1024;
/// An object name's limit, less room for the unique suffix.
const MAX_NAME_STEM: usize = 253 - 26;

/// Who writes the Events: the controller's name and this replica's.
#[derive(Clone)]
pub struct Reporter {
    pub controller: String,
    pub instance: String,
}

#[derive(Clone)]
pub struct EventQueue {
    sender: mpsc::Sender<(Event, ObjectReference)>,
    dropped: Counter,
}

impl EventQueue {
    /// Starts the writers; they stop when every queue handle is gone.
    pub fn start(client: Client, reporter: Reporter, dropped: Counter) -> Self {
        let (sender, receiver) = mpsc::channel::<(Event, ObjectReference)>(QUEUE);
        let queued = stream::unfold(receiver, |mut receiver| async move { Some((receiver.recv().await?, receiver)) });
        let reporter = Arc::new(reporter);
        let sequence = Arc::new(AtomicU32::new(0));
        tokio::spawn(queued.for_each_concurrent(WRITERS, move |(event, object)| {
            let seq = sequence.fetch_add(1, Ordering::Relaxed);
            let event = to_kube_event(&event, &object, &reporter, Timestamp::now(), seq);
            let api: Api<KubeEvent> = Api::namespaced(client.clone(), object.namespace.as_deref().unwrap_or("default"));
            async move {
                if let Err(error) = api.create(&PostParams::default(), &event).await {
                    warn!(%error, reason = event.reason, "could not publish event");
                }
            }
        }));
        Self { sender, dropped }
    }

    /// A queue nobody writes out: what is published waits in the receiver.
    #[cfg(test)]
    pub fn captured() -> (Self, mpsc::Receiver<(Event, ObjectReference)>) {
        let (sender, receiver) = mpsc::channel(QUEUE);
        (Self { sender, dropped: Counter::default() }, receiver)
    }

    pub fn publish(&self, event: Event, object: ObjectReference) {
        if self.sender.try_send((event, object)).is_err() {
            self.dropped.inc();
        }
    }
}

/// An `events.k8s.io/v1` Event about `object`, named uniquely after it.
fn to_kube_event(event: &Event, object: &ObjectReference, reporter: &Reporter, now: Timestamp, seq: u32) -> KubeEvent {
    let stem = truncate_at_char(object.name.as_deref().unwrap_or(&reporter.controller), MAX_NAME_STEM);
    KubeEvent {
        metadata: ObjectMeta {
            name: Some(format!("{stem}.{:x}{:04x}", now.as_nanosecond(), seq & 0xffff)),
            namespace: object.namespace.clone(),
            ..Default::default()
        },
        action: Some(event.action.clone()),
        reason: Some(event.reason.clone()),
        note: event.note.as_deref().map(|note| truncate_at_char(note, MAX_NOTE_BYTES).to_owned()),
        type_: Some(match event.type_ {
            EventType::Normal => "Normal".to_owned(),
            EventType::Warning => "Warning".to_owned(),
        }),
        event_time: Some(MicroTime(now)),
        regarding: Some(object.clone()),
        related: event.secondary.clone(),
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(reporter.instance.clone()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reporter() -> Reporter {
        Reporter { controller: "sandrun-operator".into(), instance: "op-1".into() }
    }

    fn about(name: &str) -> ObjectReference {
        ObjectReference { name: Some(name.into()), namespace: Some("team-a".into()), ..Default::default() }
    }

    fn event(note: &str) -> Event {
        Event {
            type_: EventType::Warning,
            reason: "Failed".into(),
            note: Some(note.into()),
            action: "Reconcile".into(),
            secondary: None,
        }
    }

    #[test]
    fn an_event_names_its_object_and_its_writer() {
        let e = to_kube_event(&event("exited with code 3"), &about("hello"), &reporter(), Timestamp::UNIX_EPOCH, 7);
        assert_eq!(e.metadata.name.as_deref(), Some("hello.00007"));
        assert_eq!(e.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(e.regarding.and_then(|r| r.name).as_deref(), Some("hello"));
        assert_eq!((e.type_.as_deref(), e.reason.as_deref()), (Some("Warning"), Some("Failed")));
        assert_eq!(e.note.as_deref(), Some("exited with code 3"));
        assert_eq!(e.reporting_controller.as_deref(), Some("sandrun-operator"));
        assert_eq!(e.reporting_instance.as_deref(), Some("op-1"));
        assert!(e.event_time.is_some() && e.series.is_none());
    }

    #[test]
    fn events_in_the_same_instant_get_different_names() {
        let (object, now) = (about("hello"), Timestamp::now());
        let first = to_kube_event(&event("a"), &object, &reporter(), now, 1).metadata.name;
        let second = to_kube_event(&event("a"), &object, &reporter(), now, 2).metadata.name;
        assert_ne!(first, second);
    }

    #[test]
    fn long_names_and_notes_are_cut_to_what_the_api_server_takes() {
        let long_name = "n".repeat(253);
        let note = "é".repeat(1000);
        let e = to_kube_event(&event(&note), &about(&long_name), &reporter(), Timestamp::now(), 0);
        assert!(e.metadata.name.unwrap().len() <= 253);
        let cut = e.note.unwrap();
        assert!(cut.len() <= MAX_NOTE_BYTES && cut.chars().all(|c| c == 'é'));
    }
}
