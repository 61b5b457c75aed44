//! A collection kept from a watch's events, with re-lists applied as kube's
//! reflector applies them to its stores: built aside and swapped in whole
//! at their end, so a re-list drops what was deleted while the watch was
//! down, and readers never see half a list.

use kube::runtime::watcher::Event;

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
}
