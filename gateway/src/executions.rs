//! The Execution service both REST and WebSocket clients reach: create in
//! the tenant's namespace, fetch (watch first, API server after), wait for
//! a final state on the shared watch, and ask for a cancel.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams, PostParams};
use sandrun_crds::{Execution, CANCEL_ANNOTATION};

use crate::api::SubmitRequest;
use crate::auth::Tenant;
use crate::convert::to_spec;
use crate::error::ApiError;
use crate::hub::Received;
use crate::idempotency::{self, Idempotent};
use crate::state::AppState;

pub const TENANT_LABEL: &str = "sandrun.dev/tenant";
const FIELD_MANAGER: &str = "sandrun-gateway";

/// Creates the Execution in the tenant's namespace, if the key's policy
/// allows the run and the key has room for one more. With an idempotency
/// key (`header` or the request's), a retry gets the run the first submit
/// made, as it is now.
pub async fn create(
    state: &AppState,
    tenant: &Tenant,
    request: &SubmitRequest,
    header: Option<&str>,
) -> Result<Arc<Execution>, ApiError> {
    let mut spec = to_spec(request)?;
    tenant.policy.check(&spec)?;
    let idempotent = idempotency::key(header, request)?.map(|key| idempotency::bind(&tenant.name, key, request));
    if let Some(bound) = &idempotent {
        if let Some(made) = state.hub.get(&tenant.namespace, &bound.name) {
            return replayed(tenant, bound, made);
        }
    }
    // Counted on this replica's watch: runs created in the last moments
    // may be missing, so a burst can pass the cap by what the watch lags.
    let active = state.hub.in_namespace(&tenant.namespace).iter().filter(|e| tenant.owns(e) && !is_final(e)).count();
    if active >= tenant.policy.max_active {
        return Err(ApiError::TooManyActive { limit: tenant.policy.max_active });
    }
    spec.ttl_seconds_after_finished = Some(state.execution_ttl_seconds);
    let mut execution = Execution::new("", spec);
    execution.metadata.labels = Some(BTreeMap::from([(TENANT_LABEL.to_owned(), tenant.name.clone())]));
    match &idempotent {
        Some(bound) => {
            execution.metadata.name = Some(bound.name.clone());
            execution.metadata.annotations =
                Some(BTreeMap::from([(idempotency::REQUEST_ANNOTATION.to_owned(), bound.request.clone())]));
        }
        None => {
            execution.metadata.name = None;
            execution.metadata.generate_name = Some("run-".to_owned());
        }
    }
    let api: Api<Execution> = Api::namespaced(state.client.clone(), &tenant.namespace);
    let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..Default::default() };
    match (api.create(&params, &execution).await, &idempotent) {
        (Ok(created), _) => Ok(Arc::new(created)),
        // Made by a retry racing this one, or not yet in this replica's watch.
        (Err(kube::Error::Api(status)), Some(bound)) if status.code == 409 => {
            let made = fetch_from_api(state, &tenant.namespace, &bound.name).await?;
            replayed(tenant, bound, made)
        }
        (Err(e), _) => Err(ApiError::from_kube(e)),
    }
}

/// The run an earlier submit with the same idempotency key made, if it was
/// made with the same request.
fn replayed(tenant: &Tenant, bound: &Idempotent, made: Arc<Execution>) -> Result<Arc<Execution>, ApiError> {
    let request = made.metadata.annotations.as_ref().and_then(|a| a.get(idempotency::REQUEST_ANNOTATION));
    if !tenant.owns(&made) || request != Some(&bound.request) {
        return Err(ApiError::invalid("idempotencyKey", "was used before for another request"));
    }
    Ok(made)
}

/// The key's Execution as the watch has it, or from the API server when
/// the watch has not caught up yet (right after a create). Another key's
/// run is not found, exactly as a run that does not exist.
pub async fn fetch(state: &AppState, tenant: &Tenant, id: &str) -> Result<Arc<Execution>, ApiError> {
    // Checked before the id becomes part of an API server URL, where
    // `a/status`, `a?b` or `../x` would address something else.
    if !is_object_name(id) {
        return Err(ApiError::no_execution(id));
    }
    let found = match state.hub.get(&tenant.namespace, id) {
        Some(found) => found,
        None => fetch_from_api(state, &tenant.namespace, id).await?,
    };
    match tenant.owns(&found) {
        true => Ok(found),
        false => Err(ApiError::no_execution(id)),
    }
}

async fn fetch_from_api(state: &AppState, namespace: &str, id: &str) -> Result<Arc<Execution>, ApiError> {
    let api: Api<Execution> = Api::namespaced(state.client.clone(), namespace);
    match api.get_opt(id).await {
        Ok(Some(found)) => Ok(Arc::new(found)),
        Ok(None) => Err(ApiError::no_execution(id)),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(ApiError::no_execution(id)),
        Err(e) => Err(ApiError::from_kube(e)),
    }
}

/// Marks the key's Execution (already [`fetch`]ed) for the operator to
/// stop; it ends as `cancelled`.
pub async fn cancel(state: &AppState, tenant: &Tenant, id: &str) -> Result<Execution, ApiError> {
    let api: Api<Execution> = Api::namespaced(state.client.clone(), &tenant.namespace);
    let patch = serde_json::json!({"metadata": {"annotations": {CANCEL_ANNOTATION: "true"}}});
    api.patch(id, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(ApiError::from_kube)
}

/// A Kubernetes object name (a DNS-1123 subdomain), as every execution id
/// is: at most 253 of `a-z`, `0-9`, `-` and `.`, each dot-separated part
/// starting and ending with a letter or digit.
pub fn is_object_name(id: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    id.len() <= 253
        && id.split('.').all(|part| {
            let bytes = part.as_bytes();
            bytes.first().is_some_and(|c| alnum(*c))
                && bytes.last().is_some_and(|c| alnum(*c))
                && bytes.iter().all(|c| alnum(*c) || *c == b'-')
        })
}

pub fn is_final(execution: &Execution) -> bool {
    execution.status.as_ref().is_some_and(|s| s.is_terminal())
}

/// Waits on the shared watch until the Execution is final or time is up;
/// returns the latest state seen, `created` if the watch showed nothing newer.
pub async fn wait_final(
    state: &AppState,
    namespace: &str,
    id: &str,
    wait: Duration,
    created: Arc<Execution>,
) -> Arc<Execution> {
    let mut follower = state.hub.follower();
    // Followed first, so nothing between the create and now is missed.
    follower.follow(namespace, id);
    let mut latest = state.hub.get(namespace, id).unwrap_or(created);
    let deadline = tokio::time::Instant::now() + wait;
    while !is_final(&latest) {
        tokio::select! {
            received = follower.recv() => match received {
                // Deleted while waited for: what was last seen is all there is.
                Received::Change(change) if change.gone => break,
                Received::Change(change) => latest = change.execution.clone(),
                Received::Lagged => latest = state.hub.get(namespace, id).unwrap_or(latest),
            },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    latest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_object_names_are_ids() {
        for good in ["run-x7k2p", "a", "1", "a.b-c", &"a".repeat(253)] {
            assert!(is_object_name(good), "{good}");
        }
        let long = "a".repeat(254);
        for bad in
            ["", "A", "a b", "a/status", "../x", "a?watch=1", "a#b", "-a", "a-", "a..b", ".a", "\u{e9}", "a\n", &long]
        {
            assert!(!is_object_name(bad), "{bad:?}");
        }
    }
}
