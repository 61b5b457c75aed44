//! One watch on Executions per gateway process, fanned out to the requests
//! and sockets following each one (the table of who follows what is in
//! `followers`). Never a Kubernetes watch per client.
//!
//! A change goes out only when what clients see of it changed: a watch
//! event that moves nothing in the view (the cancel annotation, a condition,
//! a re-list after a reconnect) would otherwise be pushed, unchanged, to
//! every socket. Its `update` message is encoded once (in `change`), for all
//! of them.

mod change;
mod followers;

use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use sandrun_crds::Execution;
use tracing::warn;

use crate::convert::view;
pub use change::{update_message, Change};
use followers::FollowerTable;
pub use followers::{Follower, Received};

#[derive(Clone)]
pub struct Hub {
    store: Store<Execution>,
    followers: Arc<FollowerTable>,
}

impl Hub {
    /// Starts the watch in the background; it re-lists and backs off by
    /// itself when the API server goes away.
    pub fn start(client: Client) -> Self {
        let (store, mut writer) = reflector::store();
        let followers = Arc::new(FollowerTable::default());
        let (to, known) = (followers.clone(), store.clone());
        let api: Api<Execution> = Api::all(client);
        let stream = watcher(api, watcher::Config::default()).default_backoff().modify(slim);
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(event) => {
                        // Compared with the store before it takes the event in,
                        // handed out after: a follower reading the store then
                        // sees this change or a later one.
                        let change = changed(&known, &event);
                        writer.apply_watcher_event(&event);
                        if let Some(change) = change {
                            to.dispatch(&Arc::new(change));
                        }
                    }
                    Err(error) => warn!(%error, "watching Executions"),
                }
            }
        });
        Self { store, followers }
    }

    /// Receives the changes of the Executions it follows.
    pub fn follower(&self) -> Follower {
        self.followers.follower()
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

/// What no client is shown is not kept: the program (up to 32 files of
/// 256 KiB), its stdin, args, env and command, and kubectl's and the API
/// server's bookkeeping. What a view shows (language, status, output,
/// times) and what the gateway reads (labels, annotations) stays.
fn slim(execution: &mut Execution) {
    execution.metadata.managed_fields = None;
    if let Some(annotations) = execution.metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    let spec = &mut execution.spec;
    spec.source = None;
    spec.stdin = None;
    spec.args = Vec::new();
    spec.env = Vec::new();
    spec.command = None;
}

/// The change an event brings, if clients would see one: an Execution new
/// to the store, one whose view differs from the stored one, or one
/// deleted. During a re-list the store still holds what clients were last
/// sent (a deletion missed while the watch was down is not told).
fn changed(store: &Store<Execution>, event: &Event<Execution>) -> Option<Change> {
    if let Event::Delete(execution) = event {
        return Some(Change::gone(Arc::new(execution.clone())));
    }
    let (Event::Apply(execution) | Event::InitApply(execution)) = event else { return None };
    let before = store.get(&ObjectRef::from_obj(execution));
    if before.is_some_and(|before| view(&before) == view(execution)) {
        return None;
    }
    Some(Change::new(Arc::new(execution.clone())))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sandrun_crds::{ExecutionStatus, Phase};

    use super::*;

    fn execution(phase: Phase) -> Execution {
        let mut e = Execution::new("run-1", Default::default());
        e.metadata.namespace = Some("team".into());
        e.status = Some(ExecutionStatus { phase, ..Default::default() });
        e
    }

    #[test]
    fn only_what_clients_see_counts_as_a_change() {
        let (store, mut writer) = reflector::store();
        let running = execution(Phase::Running);
        assert!(changed(&store, &Event::Apply(running.clone())).is_some(), "new to the store");
        writer.apply_watcher_event(&Event::Apply(running.clone()));

        let mut annotated = running.clone();
        annotated.metadata.annotations = Some(BTreeMap::from([("sandrun.dev/cancel".into(), "true".into())]));
        annotated.metadata.resource_version = Some("2".into());
        assert!(changed(&store, &Event::Apply(annotated.clone())).is_none(), "metadata only");
        assert!(changed(&store, &Event::InitApply(running)).is_none(), "re-listed as it was");

        let cancelled = changed(&store, &Event::Apply(execution(Phase::Cancelled))).expect("a new phase");
        assert_eq!(cancelled.execution.status.as_ref().map(|s| s.phase), Some(Phase::Cancelled));
        let gone = changed(&store, &Event::Delete(annotated)).expect("a deletion is told");
        assert!(gone.gone, "{gone:?}");
    }

    #[test]
    fn the_store_keeps_what_clients_see_and_not_the_program() {
        use sandrun_crds::{EnvVar, Source, SourceFile};
        let mut big = execution(Phase::Succeeded);
        big.spec.source = Some(Source {
            files: vec![SourceFile { path: "main.py".into(), content: "x".repeat(256 * 1024) }],
            entry: None,
        });
        big.spec.stdin = Some("y".repeat(256 * 1024));
        big.spec.env = vec![EnvVar { name: "A".into(), value: "b".into() }];
        big.metadata.annotations = Some(BTreeMap::from([
            ("kubectl.kubernetes.io/last-applied-configuration".into(), "z".repeat(512 * 1024)),
            ("sandrun.dev/request-sha256".into(), "abc".into()),
        ]));
        let shown = view(&big);
        slim(&mut big);
        assert_eq!(view(&big), shown, "what clients see is kept");
        assert_eq!(big.metadata.annotations.as_ref().map(BTreeMap::len), Some(1), "the request digest stays");
        let size = serde_json::to_vec(&big).unwrap().len();
        assert!(size < 4 * 1024, "{size} bytes kept");
    }
}
