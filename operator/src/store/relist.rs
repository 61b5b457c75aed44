//! The one re-list rule, for everything kept from a watch and for the
//! reconciles a watch triggers: a re-list (after an API server restart, a
//! watch that fell too far behind) is built aside and takes effect whole at
//! its end, as kube's reflector does for its stores. So a re-list drops what
//! was deleted while the watch was down, readers never see half a list, and
//! no reconcile runs against a store that has not caught up.

use std::sync::{Arc, RwLock};

use futures::{future, stream, Stream, StreamExt};
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;

/// A collection that a re-list can be built into.
pub trait Collect<K>: Default {
    fn add(&mut self, object: &K);
}

/// A collection kept up to date by a watch's events about `K`.
pub trait Watched<K>: Collect<K> {
    fn remove(&mut self, object: &K);
}

/// Where a watch stands: following changes, or in the middle of a re-list.
pub struct Relist<T> {
    building: Option<T>,
}

impl<T> Default for Relist<T> {
    fn default() -> Self {
        Self { building: None }
    }
}

/// What one event means for whoever follows the watch.
pub enum Change<'e, K, T> {
    Applied(&'e K),
    Deleted(&'e K),
    /// A re-list has ended: this is everything there is. `None` if no
    /// re-list had begun (nothing to replace).
    Listed(Option<T>),
    /// Part of a re-list still under way: nothing to act on yet.
    Pending,
}

impl<T> Relist<T> {
    pub fn see<'e, K>(&mut self, event: &'e Event<K>) -> Change<'e, K, T>
    where
        T: Collect<K>,
    {
        match event {
            Event::Apply(object) => Change::Applied(object),
            Event::Delete(object) => Change::Deleted(object),
            Event::Init => {
                self.building = Some(T::default());
                Change::Pending
            }
            Event::InitApply(object) => {
                if let Some(building) = self.building.as_mut() {
                    building.add(object);
                }
                Change::Pending
            }
            Event::InitDone => Change::Listed(self.building.take()),
        }
    }
}

/// Objects to reconcile for, from a watch: each as it changes, and a
/// re-list's only once it is whole. A reconcile triggered by a re-list's
/// first objects would read stores that still hold the old list, and
/// nothing would trigger one again for a pod that has already finished.
pub fn triggers<K, S>(events: S) -> impl Stream<Item = Result<K, watcher::Error>>
where
    K: Clone,
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
{
    events
        .scan(Relist::<Vec<K>>::default(), |relist, event| {
            let ready: Vec<Result<K, watcher::Error>> = match event {
                // Moved, not cloned: the common case.
                Ok(Event::Apply(object) | Event::Delete(object)) => vec![Ok(object)],
                Ok(event) => match relist.see(&event) {
                    Change::Listed(Some(listed)) => listed.into_iter().map(Ok).collect(),
                    _ => Vec::new(),
                },
                Err(error) => vec![Err(error)],
            };
            future::ready(Some(stream::iter(ready)))
        })
        .flatten()
}

impl<K: Clone> Collect<K> for Vec<K> {
    fn add(&mut self, object: &K) {
        self.push(object.clone());
    }
}

/// A collection kept from a watch, shared between the watch that feeds it
/// and the reconciles that read it, which can wait for its first whole list.
pub struct Listed<T>(Arc<Shared<T>>);

struct Shared<T> {
    state: RwLock<State<T>>,
    /// True once a first list has been seen whole.
    listed: watch::Sender<bool>,
}

#[derive(Default)]
struct State<T> {
    live: T,
    relist: Relist<T>,
}

impl<T> Clone for Listed<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T: Default> Default for Listed<T> {
    fn default() -> Self {
        let state = State { live: T::default(), relist: Relist::default() };
        Self(Arc::new(Shared { state: RwLock::new(state), listed: watch::Sender::new(false) }))
    }
}

impl<T> Listed<T> {
    pub fn apply<K>(&self, event: &Event<K>)
    where
        T: Watched<K>,
    {
        let Ok(mut state) = self.0.state.write() else { return };
        let State { live, relist } = &mut *state;
        match relist.see(event) {
            Change::Applied(object) => live.add(object),
            Change::Deleted(object) => live.remove(object),
            Change::Listed(listed) => {
                if let Some(listed) = listed {
                    *live = listed;
                }
                self.0.listed.send_replace(true);
            }
            Change::Pending => {}
        }
    }

    /// For a watch stream's `inspect`: applies each event; errors are the
    /// watcher's to retry.
    pub fn feeder<K>(&self) -> impl Fn(&Result<Event<K>, watcher::Error>)
    where
        T: Watched<K>,
    {
        let listed = self.clone();
        move |event| {
            if let Ok(event) = event {
                listed.apply(event);
            }
        }
    }

    /// Reads what the watch shows now; `None` only if a writer panicked.
    pub fn read<R>(&self, read: impl FnOnce(&T) -> R) -> Option<R> {
        self.0.state.read().ok().map(|state| read(&state.live))
    }

    /// Changes what is kept now; a re-list under way replaces it at its end.
    pub fn write<R>(&self, write: impl FnOnce(&mut T) -> R) -> Option<R> {
        self.0.state.write().ok().map(|mut state| write(&mut state.live))
    }

    /// Resolves once the watch has listed everything once.
    pub async fn wait_until_ready(&self) {
        let mut listed = self.0.listed.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = listed.wait_for(|listed| *listed).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_relist_triggers_only_once_it_is_complete() {
        let events = vec![
            Ok(Event::Apply("p1")),
            Ok(Event::Init),
            Ok(Event::InitApply("p2")),
            Ok(Event::InitApply("p3")),
            Ok(Event::InitDone),
            Ok(Event::Delete("p2")),
        ];
        let seen: Vec<_> = triggers(stream::iter(events)).filter_map(|t| future::ready(t.ok())).collect().await;
        assert_eq!(seen, ["p1", "p2", "p3", "p2"]);
    }

    #[derive(Default)]
    struct Names(Vec<&'static str>);

    impl Collect<&'static str> for Names {
        fn add(&mut self, object: &&'static str) {
            self.0.push(object);
        }
    }

    impl Watched<&'static str> for Names {
        fn remove(&mut self, object: &&'static str) {
            self.0.retain(|name| name != object);
        }
    }

    fn names(listed: &Listed<Names>) -> Vec<&'static str> {
        listed.read(|names| names.0.clone()).unwrap()
    }

    #[tokio::test]
    async fn a_relist_replaces_what_was_kept_only_when_whole() {
        let listed = Listed::<Names>::default();
        listed.apply(&Event::Apply("gone-while-disconnected"));
        let early = tokio::time::timeout(std::time::Duration::from_millis(10), listed.wait_until_ready()).await;
        assert!(early.is_err(), "not ready before a first whole list");
        listed.apply(&Event::Init);
        listed.apply(&Event::InitApply("kept"));
        assert_eq!(names(&listed), ["gone-while-disconnected"], "the old view answers until the re-list is whole");
        listed.apply(&Event::InitDone);
        listed.wait_until_ready().await;
        assert_eq!(names(&listed), ["kept"]);
        listed.apply(&Event::Delete("kept"));
        assert!(names(&listed).is_empty());
    }
}
