//! Names and labels shared by everything the operator creates.

use std::collections::BTreeMap;

pub const FIELD_MANAGER: &str = "sandrun-operator";
pub const MANAGED_BY_KEY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "sandrun-operator";
/// On every child and pod: the name of the Execution it belongs to.
pub const EXECUTION_KEY: &str = "sandrun.dev/execution";
/// On execution pods only; the deny-all NetworkPolicy selects it.
pub const ROLE_KEY: &str = "sandrun.dev/role";
pub const ROLE_EXECUTION: &str = "execution";
/// On a pool's Jobs and pods: the SandboxPool they belong to.
pub const POOL_KEY: &str = "sandrun.dev/pool";
/// On a pool's Jobs and pods: the digest of the profile they were made for.
pub const PROFILE_KEY: &str = "sandrun.dev/profile";
/// On a warm pod and its Job once a run claimed it: the Execution's uid.
pub const CLAIMED_BY_KEY: &str = "sandrun.dev/claimed-by";
pub const NETWORK_POLICY_NAME: &str = "sandrun-deny-all";
pub const RUN_CONTAINER: &str = "run";
pub const INSTALL_CONTAINER: &str = "install-runner";
/// The run container's termination message: the runner leaves its frame
/// there, and the kubelet copies it into the pod's status.
pub const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

const CHILD_PREFIX: &str = "sandrun-";
const MAX_NAME: usize = 63;

/// Deterministic name of an Execution's Job and ConfigMap. Prefixed so it
/// never collides with a user's own Job; hashed when it would be too long
/// for the `job-name` label (63 characters).
pub fn child_name(execution: &str) -> String {
    let plain = format!("{CHILD_PREFIX}{execution}");
    if plain.len() <= MAX_NAME {
        return plain;
    }
    let hash = format!("{:08x}", fnv1a(execution.as_bytes()) as u32);
    let keep = MAX_NAME - CHILD_PREFIX.len() - hash.len() - 1;
    let stem = execution[..keep].trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("{CHILD_PREFIX}{stem}-{hash}")
}

/// Name of an Execution's inputs ConfigMap: its child name and the start of
/// its uid. The kubelet serves a ConfigMap by name from a cache for a moment
/// after it is replaced, so a same-named Execution created right after one
/// was deleted would otherwise run the old program.
pub fn inputs_name(execution: &str, uid: Option<&str>) -> String {
    match uid {
        Some(uid) => format!("{}-{}", child_name(execution), uid.chars().take(8).collect::<String>()),
        None => child_name(execution),
    }
}

/// Stable across Rust releases, unlike `DefaultHasher`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
}

pub fn child_labels(execution: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_KEY.to_owned(), MANAGED_BY.to_owned()),
        (EXECUTION_KEY.to_owned(), execution.to_owned()),
    ])
}

pub fn pod_labels(execution: &str) -> BTreeMap<String, String> {
    let mut labels = child_labels(execution);
    labels.insert(ROLE_KEY.to_owned(), ROLE_EXECUTION.to_owned());
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_prefixed() {
        assert_eq!(child_name("hello"), "sandrun-hello");
    }

    #[test]
    fn long_names_are_cut_hashed_and_stay_distinct() {
        let a = child_name(&"a".repeat(63));
        let b = child_name(&format!("{}b", "a".repeat(62)));
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        assert_eq!(a, child_name(&"a".repeat(63)), "deterministic");
    }

    #[test]
    fn a_cut_never_ends_in_punctuation() {
        let name = format!("{}.-{}", "x".repeat(45), "y".repeat(16));
        let child = child_name(&name);
        assert!(!child.contains(".-"), "{child}");
    }
}
