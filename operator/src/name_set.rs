//! Which objects of a kind exist, by namespace and name, kept from a watch.
//! For a kind where a reconcile only asks "is it there?" (the inputs
//! ConfigMaps): about 100 bytes a name, where a store of even slimmed
//! objects costs about 1 KiB each.

use std::collections::HashSet;

use kube::ResourceExt;

use crate::relisted::{Listed, Watched};

type Key = (String, String);

#[derive(Default)]
pub struct Names(HashSet<Key>);

pub type NameSet = Listed<Names>;

fn key_of(object: &impl ResourceExt) -> Option<Key> {
    Some((object.namespace()?, object.meta().name.clone()?))
}

impl<K: ResourceExt> Watched<K> for Names {
    fn add(&mut self, object: &K) {
        self.0.extend(key_of(object));
    }

    fn remove(&mut self, object: &K) {
        if let Some(key) = key_of(object) {
            self.0.remove(&key);
        }
    }
}

impl Listed<Names> {
    pub fn contains(&self, namespace: &str, name: &str) -> bool {
        self.read(|names| names.0.contains(&(namespace.to_owned(), name.to_owned()))).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;
    use kube::runtime::watcher::Event;

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
