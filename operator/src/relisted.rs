//! A collection kept from a watch's events, with re-lists applied as kube's
//! reflector applies them to its stores: built aside and swapped in whole
//! at their end, so a re-list drops what was deleted while the watch was
//! down, and readers never see half a list.

use std::sync::{Arc, RwLock};

use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;

/// A collection fed by watch events about `K`.
pub trait Watched<K>: Default {
    fn add(&mut self, object: &K);
    fn remove(&mut self, object: &K);
}

#[derive(Default)]
pub struct Relisted<T> {
    live: T,
    relisting: Option<T>,
}

impl<T> Relisted<T> {
    /// Applies one event; returns whether a list has just ended whole.
    pub fn apply<K>(&mut self, event: &Event<K>) -> bool
    where
        T: Watched<K>,
    {
        match event {
            Event::Init => self.relisting = Some(T::default()),
            Event::InitApply(object) => {
                if let Some(relisting) = self.relisting.as_mut() {
                    relisting.add(object);
                }
            }
            Event::InitDone => {
                if let Some(relisted) = self.relisting.take() {
                    self.live = relisted;
                }
                return true;
            }
            Event::Apply(object) => self.live.add(object),
            Event::Delete(object) => self.live.remove(object),
        }
        false
    }

    /// What the watch shows now, the last complete list included.
    pub fn live(&self) -> &T {
        &self.live
    }

    pub fn live_mut(&mut self) -> &mut T {
        &mut self.live
    }
}

/// A [`Relisted`] collection shared between the watch that feeds it and
/// the reconciles that read it, which can wait for its first whole list.
pub struct Listed<T>(Arc<Shared<T>>);

struct Shared<T> {
    collection: RwLock<Relisted<T>>,
    /// True once a first list has been seen whole.
    listed: watch::Sender<bool>,
}

impl<T> Clone for Listed<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T: Default> Default for Listed<T> {
    fn default() -> Self {
        Self(Arc::new(Shared { collection: RwLock::default(), listed: watch::Sender::new(false) }))
    }
}

impl<T> Listed<T> {
    pub fn apply<K>(&self, event: &Event<K>)
    where
        T: Watched<K>,
    {
        let Ok(mut collection) = self.0.collection.write() else { return };
        if collection.apply(event) {
            self.0.listed.send_replace(true);
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
        self.0.collection.read().ok().map(|collection| read(collection.live()))
    }

    /// Changes what is kept now; a re-list under way replaces it at its end.
    pub fn write<R>(&self, write: impl FnOnce(&mut T) -> R) -> Option<R> {
        self.0.collection.write().ok().map(|mut collection| write(collection.live_mut()))
    }

    /// Resolves once the watch has listed everything once.
    pub async fn wait_until_ready(&self) {
        let mut listed = self.0.listed.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = listed.wait_for(|listed| *listed).await;
    }
}
