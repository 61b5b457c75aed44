//! API keys: each maps to a tenant namespace and its own rate limit.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::http::request::Parts;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;

use crate::error::ApiError;
use crate::executions::TENANT_LABEL;
use crate::policy::{default_max_active, default_max_sockets, default_max_subscriptions, Policy, PolicyError};

#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyFile {
    pub keys: Vec<KeyEntry>,
}

#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyEntry {
    /// For logs and metrics; never the secret itself.
    pub name: String,
    pub token: String,
    /// Where this key's Executions live.
    pub namespace: String,
    #[serde(default = "default_rate")]
    pub requests_per_second: u32,
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// What runs this key may start (see [`Policy`]).
    #[serde(default = "default_max_active")]
    pub max_active: usize,
    #[serde(default)]
    pub images: Vec<String>,
    #[serde(default)]
    pub max_timeout_seconds: Option<u32>,
    #[serde(default)]
    pub max_memory: Option<String>,
    #[serde(default)]
    pub max_cpu: Option<String>,
    #[serde(default)]
    pub max_output_bytes: Option<u32>,
    #[serde(default = "default_max_sockets")]
    pub max_sockets: usize,
    #[serde(default = "default_max_subscriptions")]
    pub max_subscriptions: usize,
}

impl KeyEntry {
    pub fn policy(&self) -> Policy {
        Policy {
            max_active: self.max_active,
            images: self.images.clone(),
            max_timeout_seconds: self.max_timeout_seconds,
            max_memory: self.max_memory.clone(),
            max_cpu: self.max_cpu.clone(),
            max_output_bytes: self.max_output_bytes,
            max_sockets: self.max_sockets,
            max_subscriptions: self.max_subscriptions,
        }
    }
}

fn default_rate() -> u32 {
    10
}

fn default_burst() -> u32 {
    20
}

/// An authenticated caller.
#[derive(Clone)]
pub struct Tenant {
    pub name: String,
    pub namespace: String,
    pub policy: Arc<Policy>,
    limiter: Arc<DefaultDirectRateLimiter>,
    /// Requests per second and burst the limiter was made with.
    quota: (u32, u32),
    /// This key's WebSockets open on this replica.
    sockets: Arc<std::sync::atomic::AtomicUsize>,
}

/// One of a key's open WebSockets; the count goes down when it drops.
#[derive(Debug)]
pub struct SocketSlot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant").field("name", &self.name).field("namespace", &self.namespace).finish()
    }
}

impl Tenant {
    /// Whether `execution` is this key's: created through it (the tenant
    /// label) in its namespace. Keys that share a namespace see none of
    /// each other's runs, nor runs made there with kubectl.
    pub fn owns(&self, execution: &sandrun_crds::Execution) -> bool {
        execution.metadata.namespace.as_deref() == Some(self.namespace.as_str())
            && execution.metadata.labels.as_ref().and_then(|l| l.get(TENANT_LABEL)) == Some(&self.name)
    }

    /// Takes one of the key's WebSocket slots, or says it has none left.
    pub fn open_socket(&self) -> Result<SocketSlot, ApiError> {
        use std::sync::atomic::Ordering;
        let limit = self.policy.max_sockets;
        self.sockets
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| (open < limit).then_some(open + 1))
            .map(|_| SocketSlot(self.sockets.clone()))
            .map_err(|_| ApiError::TooMany { what: "sockets", limit })
    }

    /// Takes one token from the key's bucket, or says when to come back.
    pub fn charge(&self) -> Result<(), ApiError> {
        self.limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::RateLimited { retry_after_secs: wait.as_secs().max(1) }
        })
    }
}

#[derive(Clone, Default)]
pub struct Keys {
    /// Swapped whole when the keys file changes; readers clone the Arc.
    by_token: Arc<std::sync::RwLock<Arc<HashMap<String, Tenant>>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("parsing keys: {0}")]
    Parse(#[from] serde_yaml::Error),
    #[error("key {0:?}: requestsPerSecond and burst must be at least 1")]
    ZeroRate(String),
    #[error("key {0:?}: the token is shorter than 16 characters")]
    WeakToken(String),
    #[error("two keys share a token ({0:?} and {1:?})")]
    Duplicate(String, String),
    #[error("two keys are named {0:?}: the name is whose runs are whose")]
    DuplicateName(String),
    #[error("key {0:?}: {1}")]
    Policy(String, PolicyError),
    #[error("key name {0:?} is not a label value (1 to 63 of a-z, A-Z, 0-9, -, _ and ., alphanumeric at both ends)")]
    BadName(String),
}

impl Keys {
    pub fn from_yaml(text: &str) -> Result<Self, KeysError> {
        let file: KeyFile = serde_yaml::from_str(text)?;
        let mut by_token = HashMap::new();
        let mut names = std::collections::HashSet::new();
        for entry in file.keys {
            if !is_label_value(&entry.name) {
                return Err(KeysError::BadName(entry.name));
            }
            if !names.insert(entry.name.clone()) {
                return Err(KeysError::DuplicateName(entry.name));
            }
            if entry.token.len() < 16 {
                return Err(KeysError::WeakToken(entry.name));
            }
            let (Some(rate), Some(burst)) = (NonZeroU32::new(entry.requests_per_second), NonZeroU32::new(entry.burst))
            else {
                return Err(KeysError::ZeroRate(entry.name));
            };
            let policy = entry.policy();
            policy.validate().map_err(|e| KeysError::Policy(entry.name.clone(), e))?;
            let tenant = Tenant {
                name: entry.name.clone(),
                namespace: entry.namespace,
                policy: Arc::new(policy),
                sockets: Arc::default(),
                quota: (entry.requests_per_second, entry.burst),
                limiter: Arc::new(RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))),
            };
            if let Some(other) = by_token.insert(entry.token, tenant) {
                return Err(KeysError::Duplicate(other.name, entry.name));
            }
        }
        Ok(Self { by_token: Arc::new(std::sync::RwLock::new(Arc::new(by_token))) })
    }

    pub fn lookup(&self, token: &str) -> Option<Tenant> {
        self.current().get(token).cloned()
    }

    fn current(&self) -> Arc<HashMap<String, Tenant>> {
        self.by_token.read().map_or_else(|poisoned| poisoned.into_inner().clone(), |keys| keys.clone())
    }

    /// Takes a changed keys file: new keys work and removed ones stop at
    /// once. A key whose token, name and rate stay keeps its rate bucket
    /// and its count of open sockets. A file that does not parse changes
    /// nothing.
    pub fn reload(&self, text: &str) -> Result<(), KeysError> {
        let fresh = Keys::from_yaml(text)?;
        let old = self.current();
        let mut next = fresh.current().as_ref().clone();
        for (token, tenant) in next.iter_mut() {
            if let Some(before) = old.get(token).filter(|b| b.name == tenant.name && b.quota == tenant.quota) {
                tenant.limiter = before.limiter.clone();
                tenant.sockets = before.sockets.clone();
            }
        }
        let mut keys = self.by_token.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *keys = Arc::new(next);
        Ok(())
    }

    /// The caller of a request, charged one token for it.
    pub fn authenticate(&self, parts: &Parts) -> Result<Tenant, ApiError> {
        let token = bearer(parts).ok_or(ApiError::Unauthorized)?;
        let tenant = self.lookup(&token).ok_or(ApiError::Unauthorized)?;
        tenant.charge()?;
        Ok(tenant)
    }
}

/// A Kubernetes label value, which a key's name becomes on its runs.
fn is_label_value(text: &str) -> bool {
    let ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    (1..=63).contains(&text.len())
        && ends(text.chars().next())
        && ends(text.chars().last())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The WebSocket subprotocol the gateway speaks, and answers with.
pub const WS_PROTOCOL: &str = "sandrun.v1";
/// A WebSocket subprotocol that carries the key, base64url-encoded without
/// padding (a subprotocol is an HTTP token: no `=`, `/` or `+`). Offered
/// beside [`WS_PROTOCOL`]; the gateway never answers with it.
pub const WS_BEARER_PREFIX: &str = "sandrun.bearer.";

/// The bearer token of a request: `Authorization: Bearer ...`, or for
/// browsers' WebSockets (which cannot set headers) the subprotocol
/// `sandrun.bearer.<base64url key>`, or `?access_token=...`.
///
/// Browsers should use the subprotocol: a URL with a key in it ends up in
/// proxy and ingress access logs, browser history and developer tools,
/// where a request header does not. The query parameter stays for the
/// WebSocket clients that already use it, and is read nowhere else.
pub fn bearer(parts: &Parts) -> Option<String> {
    let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")) {
        return Some(token.trim().to_owned());
    }
    if let Some(token) = subprotocol_bearer(parts) {
        return Some(token);
    }
    if parts.uri.path() != WS_PATH {
        return None;
    }
    parts.uri.query()?.split('&').find_map(|pair| pair.strip_prefix("access_token=")).map(str::to_owned)
}

/// The one route where a key may come in the query string.
pub const WS_PATH: &str = "/v1/ws";

fn subprotocol_bearer(parts: &Parts) -> Option<String> {
    use base64::Engine as _;
    let offered = parts.headers.get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL);
    let encoded = offered
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|protocol| protocol.trim().strip_prefix(WS_BEARER_PREFIX))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &str = "keys:\n  - {name: a, token: aaaaaaaaaaaaaaaa, namespace: team-a, requestsPerSecond: 1, burst: 2}\n  - {name: b, token: bbbbbbbbbbbbbbbb, namespace: team-b}\n";

    #[test]
    fn a_key_owns_the_runs_made_through_it_in_its_namespace_only() {
        let keys = Keys::from_yaml(KEYS).unwrap();
        let a = keys.lookup("aaaaaaaaaaaaaaaa").unwrap();
        let run = |namespace: &str, tenant: Option<&str>| {
            let mut e = sandrun_crds::Execution::new("run-1", Default::default());
            e.metadata.namespace = Some(namespace.into());
            e.metadata.labels = tenant.map(|t| [(TENANT_LABEL.to_owned(), t.to_owned())].into());
            e
        };
        let cases = [
            ("its own", run("team-a", Some("a")), true),
            ("another key's in the same namespace", run("team-a", Some("b")), false),
            ("made with kubectl, no label", run("team-a", None), false),
            ("its name, another namespace", run("team-b", Some("a")), false),
        ];
        for (case, execution, want) in cases {
            assert_eq!(a.owns(&execution), want, "{case}");
        }
    }

    #[test]
    fn a_key_has_as_many_sockets_as_it_may_and_gets_them_back() {
        let keys =
            Keys::from_yaml("keys:\n  - {name: a, token: aaaaaaaaaaaaaaaa, namespace: n, maxSockets: 2}\n").unwrap();
        let a = keys.lookup("aaaaaaaaaaaaaaaa").unwrap();
        let (one, _two) = (a.open_socket().unwrap(), a.clone().open_socket().unwrap());
        let third = a.open_socket().unwrap_err();
        assert_eq!((third.status().as_u16(), third.code()), (429, "too_many_sockets"));
        drop(one);
        assert!(a.open_socket().is_ok(), "a closed socket's slot comes back");
    }

    #[test]
    fn a_reload_adds_and_revokes_keys_and_keeps_the_buckets_of_the_rest() {
        let keys = Keys::from_yaml(KEYS).unwrap();
        let a = keys.lookup("aaaaaaaaaaaaaaaa").unwrap();
        // a: 1 per second, burst 2; empty its bucket.
        assert!(a.charge().is_ok() && a.charge().is_ok() && a.charge().is_err());
        let changed = "keys:\n  - {name: a, token: aaaaaaaaaaaaaaaa, namespace: team-a, requestsPerSecond: 1, burst: 2}\n  - {name: c, token: cccccccccccccccc, namespace: team-c}\n";
        keys.reload(changed).unwrap();
        assert!(keys.lookup("bbbbbbbbbbbbbbbb").is_none(), "b was revoked");
        assert_eq!(keys.lookup("cccccccccccccccc").unwrap().namespace, "team-c");
        assert!(keys.lookup("aaaaaaaaaaaaaaaa").unwrap().charge().is_err(), "a reload does not refill a's bucket");
        assert!(keys.reload("keys: [").is_err());
        assert!(keys.lookup("cccccccccccccccc").is_some(), "a broken file changes nothing");
    }

    #[test]
    fn tokens_map_to_namespaces() {
        let keys = Keys::from_yaml(KEYS).unwrap();
        assert_eq!(keys.lookup("aaaaaaaaaaaaaaaa").unwrap().namespace, "team-a");
        assert!(keys.lookup("nope").is_none());
        assert_eq!(keys.lookup("bbbbbbbbbbbbbbbb").unwrap().namespace, "team-b");
    }

    #[test]
    fn the_bucket_empties_and_says_when_to_retry() {
        let keys = Keys::from_yaml(KEYS).unwrap();
        let a = keys.lookup("aaaaaaaaaaaaaaaa").unwrap();
        assert!(a.charge().is_ok() && a.charge().is_ok());
        match a.charge() {
            Err(ApiError::RateLimited { retry_after_secs }) => assert!(retry_after_secs >= 1),
            other => panic!("expected a rate limit, got {other:?}"),
        }
    }

    #[test]
    fn the_key_comes_from_the_header_the_subprotocol_or_the_query() {
        let parts = |uri: &str, headers: &[(&str, &str)]| {
            let mut request = axum::http::Request::get(uri);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request.body(()).unwrap().into_parts().0
        };
        // base64url of "key/with+odd=chars", unpadded
        let encoded = "a2V5L3dpdGgrb2RkPWNoYXJz";
        // uri, headers, the key found
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: [Case; 9] = [
            ("/v1/ws", &[("authorization", "Bearer from-header")], Some("from-header")),
            (
                "/v1/ws",
                &[("sec-websocket-protocol", "sandrun.v1, sandrun.bearer.a2V5L3dpdGgrb2RkPWNoYXJz")],
                Some("key/with+odd=chars"),
            ),
            (
                "/v1/ws",
                &[
                    ("sec-websocket-protocol", "sandrun.v1"),
                    ("sec-websocket-protocol", &format!("sandrun.bearer.{encoded}")),
                ],
                Some("key/with+odd=chars"),
            ),
            ("/v1/ws", &[("sec-websocket-protocol", "sandrun.v1, sandrun.bearer.not*base64")], None),
            ("/v1/ws", &[("sec-websocket-protocol", "sandrun.v1")], None),
            ("/v1/ws?access_token=from-query", &[], Some("from-query")),
            ("/v1/executions?access_token=from-query", &[], None),
            ("/v1/executions/run-1?access_token=from-query", &[], None),
            (
                "/v1/ws?access_token=from-query",
                &[("authorization", "Bearer from-header"), ("sec-websocket-protocol", "sandrun.bearer.eA")],
                Some("from-header"),
            ),
        ];
        for (uri, headers, want) in cases {
            assert_eq!(bearer(&parts(uri, headers)).as_deref(), want, "{uri} {headers:?}");
        }
    }

    #[test]
    fn bad_key_files_are_refused() {
        assert!(matches!(
            Keys::from_yaml("keys:\n  - {name: x, token: short, namespace: n}\n"),
            Err(KeysError::WeakToken(_))
        ));
        assert!(matches!(
            Keys::from_yaml("keys:\n  - {name: x, token: cccccccccccccccc, namespace: n, burst: 0}\n"),
            Err(KeysError::ZeroRate(_))
        ));
        let dup = "keys:\n  - {name: x, token: cccccccccccccccc, namespace: n}\n  - {name: y, token: cccccccccccccccc, namespace: m}\n";
        assert!(matches!(Keys::from_yaml(dup), Err(KeysError::Duplicate(_, _))));
        let same_name = "keys:\n  - {name: x, token: cccccccccccccccc, namespace: n}\n  - {name: x, token: dddddddddddddddd, namespace: n}\n";
        assert!(matches!(Keys::from_yaml(same_name), Err(KeysError::DuplicateName(_))));
        for name in ["", "has space", "-dash", "dot.", &"n".repeat(64), "caf\u{e9}"] {
            let file = format!("keys:\n  - {{name: {name:?}, token: cccccccccccccccc, namespace: n}}\n");
            assert!(matches!(Keys::from_yaml(&file), Err(KeysError::BadName(_))), "{name:?}");
        }
        for name in ["a", "team-a_1.x", &"n".repeat(63)] {
            let file = format!("keys:\n  - {{name: {name:?}, token: cccccccccccccccc, namespace: n}}\n");
            assert!(Keys::from_yaml(&file).is_ok(), "{name:?}");
        }
        assert!(Keys::from_yaml("keys: [{name: x}]").is_err());
    }
}
