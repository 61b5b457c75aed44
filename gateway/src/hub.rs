//! One watch on Executions per gateway process, fanned out to every request
//! and socket that waits on one. Never a Kubernetes watch per client.

use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use sandrun_crds::Execution;
use tokio::sync::broadcast;
use tracing::warn;

/// Updates buffered per subscriber before it counts as lagging (and then
/// gets the current state resent instead).
const UPDATE_BUFFER: usize = 4096;

#[derive(Clone)]
pub struct Hub {
    store: Store<Execution>,
    updates: broadcast::Sender<Arc<Execution>>,
}

impl Hub {
    /// Starts the watch in the background; it re-lists and backs off by
    /// itself when the API server goes away.
    pub fn start(client: Client) -> Self {
        let (store, writer) = reflector::store();
        let (updates, _) = broadcast::channel(UPDATE_BUFFER);
        let sender = updates.clone();
        let api: Api<Execution> = Api::all(client);
        let stream = watcher(api, watcher::Config::default()).default_backoff().reflect(writer).applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    // No receivers is fine: nobody is waiting right now.
                    Ok(execution) => drop(sender.send(Arc::new(execution))),
                    Err(error) => warn!(%error, "watching Executions"),
                }
            }
        });
        Self { store, updates }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Execution>> {
        self.updates.subscribe()
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Execution>> {
        self.store.get(&ObjectRef::new(name).within(namespace))
    }

    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<Execution>> {
        self.store.state().into_iter().filter(|e| e.metadata.namespace.as_deref() == Some(namespace)).collect()
    }

    pub fn is_ready(&self) -> bool {
        // A store that has seen its first list answers at once.
        futures::FutureExt::now_or_never(self.store.wait_until_ready()).is_some()
    }
}
