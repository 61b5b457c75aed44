//! Every failure a client can see, as `{error: {code, message, field}}`
//! with the right status. Bad input is always a 4xx, never a 500.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::{ErrorBody, ErrorDetail};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("missing or unknown API key")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    UpgradeRequired(String),
    #[error("rate limit exceeded; retry in {retry_after_secs}s")]
    RateLimited { retry_after_secs: u64 },
    #[error("{message}")]
    Forbidden { field: String, message: String },
    #[error("this key has {limit} runs not yet finished, its most; submit again when one finishes")]
    TooManyActive { limit: usize },
    #[error("this key has {limit} {what} open, its most")]
    TooMany { what: &'static str, limit: usize },
    #[error("the Kubernetes API rejected the execution: {0}")]
    Rejected(String),
    /// The detail goes to the gateway's log, not to the client: it names
    /// service accounts, URLs and namespaces.
    #[error("the Kubernetes API is unavailable; try again shortly")]
    Unavailable(String),
}

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid { field: field.to_owned(), message: message.into() }
    }

    /// An execution that is not there (for this key). The id is quoted,
    /// and cut short: it is whatever the client sent.
    pub fn no_execution(id: &str) -> Self {
        const SHOWN: usize = 80;
        let shown: String = id.chars().take(SHOWN).collect();
        let more = if id.chars().nth(SHOWN).is_some() { "..." } else { "" };
        ApiError::NotFound(format!("execution {shown:?}{more} not found"))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } | ApiError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UpgradeRequired(_) => StatusCode::UPGRADE_REQUIRED,
            ApiError::RateLimited { .. } | ApiError::TooManyActive { .. } | ApiError::TooMany { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Invalid { .. } => "invalid_request",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::UpgradeRequired(_) => "upgrade_required",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::TooManyActive { .. } => "too_many_active",
            ApiError::TooMany { what: "sockets", .. } => "too_many_sockets",
            ApiError::TooMany { .. } => "too_many_subscriptions",
            ApiError::Rejected(_) => "rejected",
            ApiError::Unavailable(_) => "unavailable",
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::Invalid { field, .. } | ApiError::Forbidden { field, .. } => Some(field),
            _ => None,
        }
    }

    pub fn detail(&self) -> ErrorDetail {
        ErrorDetail { code: self.code().to_owned(), message: self.to_string(), field: self.field().map(str::to_owned) }
    }

    /// Maps a Kubernetes API error: the API server's own validation is the
    /// client's fault (422), anything else is ours or the cluster's (503).
    pub fn from_kube(err: kube::Error) -> Self {
        match err {
            kube::Error::Api(status) if status.code == 422 || status.code == 400 => ApiError::Rejected(status.message),
            kube::Error::Api(status) if status.code == 413 => ApiError::PayloadTooLarge(status.message),
            other => {
                tracing::warn!(error = %other, "the Kubernetes API failed a request");
                ApiError::Unavailable(other.to_string())
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let text = rejection.body_text();
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(text),
            StatusCode::UNPROCESSABLE_ENTITY => ApiError::Invalid { field: field_of(&text), message: text },
            _ => ApiError::BadRequest(text),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<WebSocketUpgradeRejection> for ApiError {
    fn from(rejection: WebSocketUpgradeRejection) -> Self {
        let text = rejection.body_text();
        match rejection.status() {
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed(text),
            StatusCode::UPGRADE_REQUIRED => ApiError::UpgradeRequired(text),
            _ => ApiError::BadRequest(format!("{text}; /v1/ws takes WebSocket upgrades only")),
        }
    }
}

/// serde's messages name the path first (`foo.bar: invalid type ...`).
fn field_of(message: &str) -> String {
    message
        .split_once(": ")
        .and_then(|(head, rest)| rest.split_once(": ").map(|(path, _)| (head, path)))
        .map(|(_, path)| path.to_owned())
        .filter(|p| !p.contains(' '))
        .unwrap_or_default()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(ErrorBody { error: self.detail() })).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::RateLimited { retry_after_secs } => {
                if let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    headers.insert(header::RETRY_AFTER, value);
                }
            }
            ApiError::TooManyActive { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_cluster_is_a_503_that_tells_the_client_nothing_of_it() {
        let inside =
            "executions.sandrun.dev is forbidden: User \"system:serviceaccount:sandrun-system:sandrun-gateway\"";
        let status = kube::core::Status::failure(inside, "Forbidden").with_code(403);
        let error = ApiError::from_kube(kube::Error::Api(status.boxed()));
        assert_eq!((error.status(), error.code()), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
        let body = serde_json::to_string(&ErrorBody { error: error.detail() }).unwrap();
        assert!(!body.contains("serviceaccount") && !body.contains("forbidden"), "{body}");
    }
}
