//! Which objects of a kind exist, by namespace and name, kept from a watch.
//! For a kind where a reconcile only asks "is it there?" (the inputs
//! ConfigMaps): about 100 bytes a name, where a store of even slimmed
//! objects costs about 1 KiB each.

use std::collections::HashSet;

use kube::ResourceExt;

use super::relist::{Collect, Listed, Watched};

type Key = (String, String);

#[derive(Default)]
pub struct Names(HashSet<Key>);

pub type NameSet = Listed<Names>;

fn key_of(object: &impl ResourceExt) -> Option<Key> {
    Some((object.namespace()?, object.meta().name.clone()?))
}

impl<K: ResourceExt> Collect<K> for Names {
    fn add(&mut self, object: &K) {
        self.0.extend(key_of(object));
    }
}

impl<K: ResourceExt> Watched<K> for Names {
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

    fn config_map(namespace: &str, name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta { name: Some(name.into()), namespace: Some(namespace.into()), ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn names_come_and_go_with_their_objects() {
        let set = NameSet::default();
        set.apply(&Event::Apply(config_map("a", "inputs")));
        assert!(set.contains("a", "inputs") && !set.contains("b", "inputs"));
        set.apply(&Event::Delete(config_map("a", "inputs")));
        assert!(!set.contains("a", "inputs"));
    }

    #[test]
    fn a_relist_replaces_the_names() {
        let set = NameSet::default();
        set.apply(&Event::Apply(config_map("a", "gone")));
        set.apply::<ConfigMap>(&Event::Init);
        set.apply(&Event::InitApply(config_map("a", "kept")));
        set.apply::<ConfigMap>(&Event::InitDone);
        assert!(set.contains("a", "kept") && !set.contains("a", "gone"));
    }
}
