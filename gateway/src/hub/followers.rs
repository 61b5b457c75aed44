//! The follower table: who follows which Execution. The hub hands each
//! change to the sockets and requests following that Execution, and to no
//! one else: with thousands of sockets open, a change wakes only those it
//! concerns (a broadcast to all would wake every socket for every change of
//! every tenant, and their cost grows with sockets × changes).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;

use super::change::Change;

/// Changes queued per follower before it counts as lagging (and then
/// reads the current state of what it follows instead).
const QUEUE: usize = 64;

/// An Execution: namespace, name.
type Key = (String, String);

struct Entry {
    changes: mpsc::Sender<Arc<Change>>,
    lagged: Arc<AtomicBool>,
}

#[derive(Default)]
pub struct FollowerTable {
    next_id: AtomicU64,
    by_execution: Mutex<HashMap<Key, HashMap<u64, Entry>>>,
}

impl FollowerTable {
    pub fn follower(self: &Arc<Self>) -> Follower {
        let (sender, changes) = mpsc::channel(QUEUE);
        Follower {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            table: self.clone(),
            following: HashSet::new(),
            sender,
            changes,
            lagged: Arc::default(),
        }
    }

    /// Hands `change` to everyone following its Execution; never waits: a
    /// follower whose queue is full is marked lagging instead.
    pub fn dispatch(&self, change: &Arc<Change>) {
        let metadata = &change.execution.metadata;
        let (Some(namespace), Some(name)) = (&metadata.namespace, &metadata.name) else { return };
        let table = self.lock();
        let Some(followers) = table.get(&(namespace.clone(), name.clone())) else { return };
        for entry in followers.values() {
            if let Err(mpsc::error::TrySendError::Full(_)) = entry.changes.try_send(change.clone()) {
                entry.lagged.store(true, Ordering::Release);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, HashMap<u64, Entry>>> {
        self.by_execution.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remove(&self, key: &Key, id: u64) {
        let mut table = self.lock();
        if let Some(followers) = table.get_mut(key) {
            followers.remove(&id);
            if followers.is_empty() {
                table.remove(key);
            }
        }
    }

    #[cfg(test)]
    fn followed(&self) -> usize {
        self.lock().len()
    }
}

/// What a follower receives.
#[derive(Debug)]
pub enum Received {
    Change(Arc<Change>),
    /// Changes were dropped: read the current state of what it follows.
    Lagged,
}

/// One socket's or request's changes: of the Executions it follows, in order.
pub struct Follower {
    id: u64,
    table: Arc<FollowerTable>,
    following: HashSet<Key>,
    sender: mpsc::Sender<Arc<Change>>,
    changes: mpsc::Receiver<Arc<Change>>,
    lagged: Arc<AtomicBool>,
}

impl Follower {
    /// Changes of this Execution from now on. Follow before reading its
    /// current state, so that no change in between is missed.
    pub fn follow(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        if self.following.insert(key.clone()) {
            let entry = Entry { changes: self.sender.clone(), lagged: self.lagged.clone() };
            self.table.lock().entry(key).or_default().insert(self.id, entry);
        }
    }

    pub fn unfollow(&mut self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        if self.following.remove(&key) {
            self.table.remove(&key, self.id);
        }
    }

    /// How many Executions it follows.
    pub fn count(&self) -> usize {
        self.following.len()
    }

    /// The names it follows in `namespace`.
    pub fn following<'a>(&'a self, namespace: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.following.iter().filter(move |(ns, _)| ns == namespace).map(|(_, name)| name.as_str())
    }

    /// The next change; waits for ever while there is none.
    pub async fn recv(&mut self) -> Received {
        if self.lagged.swap(false, Ordering::AcqRel) {
            // What is still queued is older than the current state the
            // caller reads now: drop it, or it would follow that state.
            while self.changes.try_recv().is_ok() {}
            return Received::Lagged;
        }
        match self.changes.recv().await {
            Some(change) => Received::Change(change),
            // It holds a sender itself, so its queue never closes.
            None => std::future::pending().await,
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        for key in &self.following {
            self.table.remove(key, self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sandrun_crds::Execution;

    use super::*;

    fn change(namespace: &str, name: &str) -> Arc<Change> {
        let mut execution = Execution::new(name, Default::default());
        execution.metadata.namespace = Some(namespace.to_owned());
        Arc::new(Change::new(Arc::new(execution)))
    }

    fn name(received: Received) -> String {
        match received {
            Received::Change(change) => change.execution.metadata.name.clone().unwrap_or_default(),
            Received::Lagged => "lagged".to_owned(),
        }
    }

    async fn nothing_queued(follower: &mut Follower) -> bool {
        tokio::time::timeout(Duration::from_millis(20), follower.recv()).await.is_err()
    }

    #[tokio::test]
    async fn a_follower_gets_only_what_it_follows() {
        let table = Arc::new(FollowerTable::default());
        let (mut a, mut b) = (table.follower(), table.follower());
        a.follow("team", "run-1");
        b.follow("team", "run-2");
        b.follow("team", "run-1");
        table.dispatch(&change("team", "run-1"));
        table.dispatch(&change("team", "run-2"));
        table.dispatch(&change("other", "run-1"));
        assert_eq!(name(a.recv().await), "run-1");
        assert!(nothing_queued(&mut a).await, "run-2 and other/run-1 are not a's");
        assert_eq!((name(b.recv().await), name(b.recv().await)), ("run-1".into(), "run-2".into()));
        assert_eq!(b.following("team").count(), 2);

        b.unfollow("team", "run-2");
        table.dispatch(&change("team", "run-2"));
        assert!(nothing_queued(&mut b).await);
        drop((a, b));
        assert_eq!(table.followed(), 0, "followers leave nothing in the table");
    }

    #[tokio::test]
    async fn a_full_queue_makes_it_lag_and_drops_what_was_queued() {
        let table = Arc::new(FollowerTable::default());
        let mut slow = table.follower();
        slow.follow("team", "run-1");
        for _ in 0..QUEUE + 1 {
            table.dispatch(&change("team", "run-1"));
        }
        assert!(matches!(slow.recv().await, Received::Lagged));
        assert!(nothing_queued(&mut slow).await, "older changes must not follow the current state");
        table.dispatch(&change("team", "run-1"));
        assert!(matches!(slow.recv().await, Received::Change(_)));
    }
}
