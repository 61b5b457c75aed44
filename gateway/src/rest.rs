//! The REST handlers: submit (optionally waiting), get, list, cancel. The
//! work with Kubernetes is in `executions`, shared with the WebSocket.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kube::ResourceExt;
use sandrun_crds::Execution;
use serde::Deserialize;

use crate::api::{ErrorBody, ExecutionList, ExecutionView, State as RunState, SubmitRequest};
use crate::auth::Tenant;
use crate::convert::view;
use crate::error::ApiError;
use crate::executions::{self, create, fetch, is_final, wait_final};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

/// The longest a request may hold on with `?wait=`.
pub const MAX_WAIT: Duration = Duration::from_secs(120);
const MAX_PAGE: usize = 500;
const ID_DOC: &str = "the execution's id, a Kubernetes object name; any other id is not found";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SubmitQuery {
    /// e.g. `30s`: hold the request until the result or this deadline.
    wait: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<usize>,
    #[serde(rename = "continue")]
    continue_: Option<String>,
}

/// The header a REST client names a submit with, to retry it safely.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Submit an execution; answers at once (202) or, with `?wait=`, when it
/// finishes (200) or the wait runs out (202 with its state then). With an
/// `Idempotency-Key` header (or `idempotencyKey`), a retry answers with the
/// run the first submit made (200 once it has finished).
#[utoipa::path(post, path = "/v1/executions",
    request_body(content = SubmitRequest, description = "The program to run",
        example = json!({"language": "python", "code": "print(6 * 7)", "limits": {"timeoutSeconds": 5}})),
    params(("wait" = Option<String>, Query, description = "how long to hold for the result, e.g. 30s (max 120s)"),
        ("Idempotency-Key" = Option<String>, Header, description = "names the submit: a retry with the same key gets the same run")),
    responses(
        (status = 202, description = "Accepted: queued, or still running when `wait` ran out", body = ExecutionView),
        (status = 200, description = "Finished within `wait`, or a retry of a finished run", body = ExecutionView),
        (status = 400, description = "Malformed JSON, a body that is not JSON, or an unknown query parameter", body = ErrorBody),
        (status = 403, description = "An `image` this key may not run (`forbidden`, field `image`)", body = ErrorBody),
        (status = 413, description = "Body over the gateway's limit", body = ErrorBody),
        (status = 422, description = "Invalid request, or a limit over this key's cap: `field` names the culprit; or refused by the API server", body = ErrorBody),
        (status = 429, description = "Rate limited (`rate_limited`), or this key already has its most runs not yet finished (`too_many_active`); see Retry-After", body = ErrorBody),
        (status = 503, description = "The Kubernetes API is unavailable", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn submit(
    State(state): State<Arc<AppState>>,
    tenant: Tenant,
    headers: axum::http::HeaderMap,
    ApiQuery(query): ApiQuery<SubmitQuery>,
    ApiJson(request): ApiJson<SubmitRequest>,
) -> Result<Response, ApiError> {
    let wait = query.wait.as_deref().map(parse_wait).transpose()?;
    let header = match headers.get(IDEMPOTENCY_KEY) {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::invalid("idempotencyKey", "the Idempotency-Key header is not text"))?,
        ),
        None => None,
    };
    let created = create(&state, &tenant, &request, header).await?;
    let id = created.metadata.name.clone().unwrap_or_default();
    let Some(wait) = wait else {
        // A retry may find its run finished already.
        let code = if is_final(&created) { StatusCode::OK } else { StatusCode::ACCEPTED };
        return Ok((code, Json(view(&created))).into_response());
    };
    let latest = wait_final(&state, &tenant.namespace, &id, wait, created).await;
    let shown = view(&latest);
    let code = if shown.status.is_final() { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((code, Json(shown)).into_response())
}

pub fn parse_wait(text: &str) -> Result<Duration, ApiError> {
    let wait = humantime::parse_duration(text)
        .or_else(|_| text.parse::<u64>().map(Duration::from_secs))
        .map_err(|_| ApiError::invalid("wait", format!("{text:?} is not a duration such as 30s")))?;
    if wait > MAX_WAIT {
        return Err(ApiError::invalid("wait", format!("at most {}s", MAX_WAIT.as_secs())));
    }
    Ok(wait)
}

/// An execution and, once it has finished, its result.
#[utoipa::path(get, path = "/v1/executions/{id}", params(("id" = String, Path, description = ID_DOC)),
    responses(
        (status = 200, description = "The execution", body = ExecutionView),
        (status = 400, description = "An id that is not UTF-8", body = ErrorBody),
        (status = 404, description = "No such execution for this key", body = ErrorBody),
        (status = 503, description = "The Kubernetes API is unavailable", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    tenant: Tenant,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ExecutionView>, ApiError> {
    let execution = fetch(&state, &tenant, &id).await?;
    Ok(Json(view(&execution)))
}

/// Lists this key's executions, newest first.
#[utoipa::path(get, path = "/v1/executions",
    params(("status" = Option<String>, Query, description = "queued, running, succeeded, failed, timed_out or cancelled"),
        ("limit" = Option<usize>, Query, description = "page size, 1 to 500 (default 50)"),
        ("continue" = Option<String>, Query, description = "the `next` of the previous page")),
    responses(
        (status = 200, description = "A page of executions", body = ExecutionList),
        (status = 400, description = "A malformed query: an unknown parameter, or a `limit` that is not a number", body = ErrorBody),
        (status = 422, description = "An unknown `status` or a `continue` that no page gave", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    tenant: Tenant,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<ExecutionList>, ApiError> {
    let wanted = match query.status.as_deref() {
        Some(text) => {
            Some(RunState::parse(text).ok_or_else(|| ApiError::invalid("status", format!("unknown status {text:?}")))?)
        }
        None => None,
    };
    let limit = query.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let offset = match query.continue_.as_deref() {
        Some(token) => {
            token.parse::<usize>().map_err(|_| ApiError::invalid("continue", "not a token from a previous page"))?
        }
        None => 0,
    };
    // Filtered and ordered on the stored objects, and only the page is
    // turned into views: a view copies both outputs.
    let phase = |e: &Execution| crate::convert::state(e.status.as_ref().map(|s| s.phase).unwrap_or_default());
    let mut all: Vec<Arc<Execution>> = state
        .hub
        .in_namespace(&tenant.namespace)
        .into_iter()
        .filter(|e| tenant.owns(e) && wanted.is_none_or(|w| phase(e) == w))
        .collect();
    // Newest first; the id breaks ties so pages are stable.
    all.sort_by(|a, b| {
        b.metadata.creation_timestamp.cmp(&a.metadata.creation_timestamp).then_with(|| a.name_any().cmp(&b.name_any()))
    });
    let end = offset.saturating_add(limit);
    let next = (end < all.len()).then(|| end.to_string());
    let items = all.iter().skip(offset).take(limit).map(|e| view(e)).collect();
    Ok(Json(ExecutionList { items, next }))
}

/// Cancels a run: it stops and ends as `cancelled`. Finished ones are left as they are.
#[utoipa::path(delete, path = "/v1/executions/{id}", params(("id" = String, Path, description = ID_DOC)),
    responses(
        (status = 202, description = "Cancel requested; it ends as `cancelled`", body = ExecutionView),
        (status = 200, description = "Already finished; left as it was", body = ExecutionView),
        (status = 400, description = "An id that is not UTF-8", body = ErrorBody),
        (status = 404, description = "No such execution for this key", body = ErrorBody),
        (status = 422, description = "The API server refused the change", body = ErrorBody),
        (status = 503, description = "The Kubernetes API is unavailable", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    tenant: Tenant,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let current = fetch(&state, &tenant, &id).await?;
    if is_final(&current) {
        return Ok((StatusCode::OK, Json(view(&current))).into_response());
    }
    let patched = executions::cancel(&state, &tenant, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(view(&patched))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_parses_durations_and_caps_them() {
        assert_eq!(parse_wait("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_wait("1500ms").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_wait("7").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_wait("10m").unwrap_err().field(), Some("wait"));
        assert_eq!(parse_wait("soon").unwrap_err().field(), Some("wait"));
    }
}
