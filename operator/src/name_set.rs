//! Which objects of a kind exist, by namespace and name, kept from a watch.
//! For a kind where a reconcile only asks "is it there?" (the inputs
//! ConfigMaps): about 100 bytes a name, where a store of even slimmed
//! objects costs about 1 KiB each.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use kube::runtime::watcher::Event;
use kube::ResourceExt;
use tokio::sync::watch;

use crate::relisted::{Relisted, Watched};

type Key = (String, String);

#[derive(Clone)]
pub struct NameSet(Arc<Inner>);

struct Inner {
    names: RwLock<Relisted<HashSet<Key>>>,
    /// True once a first list has been seen whole.
    listed: watch::Sender<bool>,
}

impl Default for NameSet {
    fn default() -> Self {
        Self(Arc::new(Inner { names: RwLock::default(), listed: watch::Sender::new(false) }))
    }
}

fn key_of(object: &impl ResourceExt) -> Option<Key> {
    Some((object.namespace()?, object.meta().name.clone()?))
}

impl<K: ResourceExt> Watched<K> for HashSet<Key> {
    fn add(&mut self, object: &K) {
        self.extend(key_of(object));
    }

    fn remove(&mut self, object: &K) {
        if let Some(key) = key_of(object) {
            HashSet::remove(self, &key);
        }
    }
}

impl NameSet {
    pub fn apply<K: ResourceExt>(&self, event: &Event<K>) {
        let Ok(mut names) = self.0.names.write() else { return };
        if names.apply(event) {
            self.0.listed.send_replace(true);
        }
    }

    pub fn contains(&self, namespace: &str, name: &str) -> bool {
        self.0.names.read().is_ok_and(|names| names.live().contains(&(namespace.to_owned(), name.to_owned())))
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
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn config_map(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta { name: Some(name.into()), namespace: Some("a".into()), ..Default::default() },
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_relist_replaces_the_names_and_marks_the_set_ready() {
        let set = NameSet::default();
        set.apply(&Event::Apply(config_map("gone-while-disconnected")));
        assert!(tokio::time::timeout(std::time::Duration::from_millis(10), set.wait_until_ready()).await.is_err());
        set.apply::<ConfigMap>(&Event::Init);
        set.apply(&Event::InitApply(config_map("kept")));
        assert!(set.contains("a", "gone-while-disconnected"), "the old names hold until the re-list is whole");
        set.apply::<ConfigMap>(&Event::InitDone);
        set.wait_until_ready().await;
        assert!(set.contains("a", "kept"));
        assert!(!set.contains("a", "gone-while-disconnected"));
    }

    #[test]
    fn names_come_and_go_with_their_objects() {
        let set = NameSet::default();
        set.apply(&Event::Apply(config_map("inputs")));
        assert!(set.contains("a", "inputs") && !set.contains("b", "inputs"));
        set.apply(&Event::Delete(config_map("inputs")));
        assert!(!set.contains("a", "inputs"));
    }
}
