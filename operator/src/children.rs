//! The Jobs and pods of the operator's runs, kept from their watches and
//! grouped by the Execution they belong to (its label). A finished run's
//! are forgotten once its Execution shows the result: nothing reads them
//! again, and at ten thousand runs they were most of the operator's memory.
//! An event about a forgotten object brings it back; the reconcile that the
//! event triggers forgets it again.

use std::collections::HashMap;
use std::sync::Arc;

use kube::ResourceExt;

use crate::relisted::{Listed, Watched};

/// An object that names the Execution it belongs to.
pub trait OfExecution: ResourceExt {
    /// What is kept of it.
    type Stored;
    fn execution(&self) -> Option<&String>;
    fn stored(&self) -> Self::Stored;
}

type Group = (String, String);

/// What is known of one object of a group.
#[derive(Debug)]
pub enum Kept<T> {
    Object(Arc<T>),
    /// Forgotten, but not yet seen deleted: its name is still taken.
    Forgotten,
}

// Not derived: that would ask `T: Clone`, and only the `Arc` is cloned.
impl<T> Clone for Kept<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Object(object) => Self::Object(Arc::clone(object)),
            Self::Forgotten => Self::Forgotten,
        }
    }
}

/// What forgetting a group leaves behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leave {
    /// A marker per object until it is deleted, for objects whose name a
    /// later run of the same name would collide with (its Job).
    Markers,
    Nothing,
}

/// Objects by (namespace, Execution). Groups are small (a Job; a pod or
/// two), so a list beats a map per group.
pub struct ByExecution<T>(HashMap<Group, Vec<(String, Kept<T>)>>);

impl<T> Default for ByExecution<T> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

fn key_of<T: OfExecution>(object: &T) -> Option<(Group, String)> {
    Some(((object.namespace()?, object.execution()?.clone()), object.meta().name.clone()?))
}

impl<K, S> Watched<K> for ByExecution<S>
where
    K: OfExecution<Stored = S>,
{
    fn add(&mut self, object: &K) {
        let Some((group, name)) = key_of(object) else { return };
        let members = self.0.entry(group).or_default();
        let kept = Kept::Object(Arc::new(object.stored()));
        match members.iter_mut().find(|(member, _)| *member == name) {
            Some((_, member)) => *member = kept,
            None => members.push((name, kept)),
        }
    }

    fn remove(&mut self, object: &K) {
        let Some((group, name)) = key_of(object) else { return };
        if let Some(members) = self.0.get_mut(&group) {
            members.retain(|(member, _)| *member != name);
            if members.is_empty() {
                self.0.remove(&group);
            }
        }
    }
}

/// Kept as `T`, from watches of objects whose `Stored` is `T`.
pub type Children<T> = Listed<ByExecution<T>>;

impl<T> ByExecution<T> {
    fn group(&self, namespace: &str, execution: &str) -> &[(String, Kept<T>)] {
        self.0.get(&(namespace.to_owned(), execution.to_owned())).map_or(&[], Vec::as_slice)
    }
}

impl<T> Listed<ByExecution<T>> {
    /// The objects of `execution` held in full (markers left out).
    pub fn objects_of(&self, namespace: &str, execution: &str) -> Vec<Arc<T>> {
        let held = |groups: &ByExecution<T>| {
            let members = groups.group(namespace, execution).iter();
            members
                .filter_map(|(_, kept)| match kept {
                    Kept::Object(object) => Some(Arc::clone(object)),
                    Kept::Forgotten => None,
                })
                .collect()
        };
        self.read(held).unwrap_or_default()
    }

    pub fn named(&self, namespace: &str, execution: &str, name: &str) -> Option<Kept<T>> {
        let find = |groups: &ByExecution<T>| {
            groups.group(namespace, execution).iter().find(|(member, _)| member == name).map(|(_, kept)| kept.clone())
        };
        self.read(find).flatten()
    }

    pub fn forget(&self, namespace: &str, execution: &str, leave: Leave) {
        let group = (namespace.to_owned(), execution.to_owned());
        self.write(|groups| match leave {
            Leave::Nothing => {
                groups.0.remove(&group);
            }
            Leave::Markers => {
                for (_, kept) in groups.0.get_mut(&group).into_iter().flatten() {
                    *kept = Kept::Forgotten;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::EXECUTION_KEY;
    use crate::views::PodView;
    use kube::api::ObjectMeta;
    use kube::runtime::watcher::Event;

    fn pod(namespace: &str, name: &str, execution: &str) -> PodView {
        let metadata = ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            labels: Some([(EXECUTION_KEY.to_owned(), execution.to_owned())].into()),
            ..Default::default()
        };
        PodView { metadata, ..Default::default() }
    }

    fn names(children: &Children<PodView>, namespace: &str, execution: &str) -> Vec<String> {
        let names = |groups: &ByExecution<PodView>| {
            groups.group(namespace, execution).iter().map(|(name, _)| name.clone()).collect()
        };
        children.read(names).unwrap()
    }

    /// Objects held in full, markers not counted.
    fn held(children: &Children<PodView>) -> usize {
        let held = |groups: &ByExecution<PodView>| {
            groups.0.values().flatten().filter(|(_, kept)| matches!(kept, Kept::Object(_))).count()
        };
        children.read(held).unwrap()
    }

    #[test]
    fn objects_are_found_by_their_execution_and_namespace() {
        let pods = Children::default();
        pods.apply(&Event::Apply(pod("a", "run-1-x", "run-1")));
        pods.apply(&Event::Apply(pod("a", "run-1-y", "run-1")));
        pods.apply(&Event::Apply(pod("b", "run-1-z", "run-1")));
        pods.apply(&Event::Apply(pod("a", "run-1-x", "run-1")));
        assert_eq!(names(&pods, "a", "run-1"), ["run-1-x", "run-1-y"]);
        assert_eq!(names(&pods, "b", "run-1"), ["run-1-z"]);
        assert!(names(&pods, "a", "run-2").is_empty());
        assert!(matches!(pods.named("a", "run-1", "run-1-y"), Some(Kept::Object(_))));
        assert_eq!(pods.objects_of("a", "run-1").len(), 2);
    }

    #[test]
    fn a_deleted_object_leaves_its_group_and_no_empty_group_stays() {
        let pods = Children::default();
        pods.apply(&Event::Apply(pod("a", "run-1-x", "run-1")));
        pods.apply(&Event::Delete(pod("a", "run-1-x", "run-1")));
        assert!(names(&pods, "a", "run-1").is_empty());
        assert!(pods.read(|groups| groups.0.is_empty()).unwrap());
    }

    #[test]
    fn a_relist_replaces_what_was_known() {
        let pods = Children::default();
        pods.apply(&Event::Apply(pod("a", "gone-x", "gone")));
        pods.apply::<PodView>(&Event::Init);
        pods.apply(&Event::InitApply(pod("a", "kept-x", "kept")));
        assert_eq!(names(&pods, "a", "gone"), ["gone-x"], "the old view answers until the re-list is whole");
        pods.apply::<PodView>(&Event::InitDone);
        assert!(names(&pods, "a", "gone").is_empty());
        assert_eq!(names(&pods, "a", "kept"), ["kept-x"]);
    }

    #[test]
    fn objects_without_the_label_are_ignored() {
        let pods = Children::default();
        let mut stray = pod("a", "stray", "x");
        stray.metadata.labels = None;
        pods.apply(&Event::Apply(stray));
        assert_eq!(held(&pods), 0);
    }

    #[test]
    fn forgetting_drops_the_objects_and_leaves_markers_only_when_asked() {
        let pods = Children::default();
        pods.apply(&Event::Apply(pod("a", "run-1-x", "run-1")));
        pods.apply(&Event::Apply(pod("a", "run-2-x", "run-2")));
        pods.forget("a", "run-1", Leave::Markers);
        pods.forget("a", "run-2", Leave::Nothing);
        assert_eq!(held(&pods), 0);
        assert!(matches!(pods.named("a", "run-1", "run-1-x"), Some(Kept::Forgotten)));
        assert!(pods.objects_of("a", "run-1").is_empty(), "a marker is no object");
        assert!(names(&pods, "a", "run-2").is_empty());
        // Deleted for real: the marker goes too.
        pods.apply(&Event::Delete(pod("a", "run-1-x", "run-1")));
        assert!(names(&pods, "a", "run-1").is_empty());
    }

    #[test]
    fn a_forgotten_object_comes_back_with_its_next_event() {
        let pods = Children::default();
        pods.apply(&Event::Apply(pod("a", "run-1-x", "run-1")));
        pods.forget("a", "run-1", Leave::Markers);
        pods.apply(&Event::Apply(pod("a", "run-1-x", "run-1")));
        assert!(matches!(pods.named("a", "run-1", "run-1-x"), Some(Kept::Object(_))));
        assert_eq!(held(&pods), 1);
    }
}
