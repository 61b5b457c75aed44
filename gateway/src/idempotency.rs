//! Idempotent submits: a client's key names the run, so a retried submit
//! finds the run the first one made instead of making a second. Pure.

use sha2::{Digest, Sha256};

use crate::api::SubmitRequest;
use crate::error::ApiError;

/// On a run made with an idempotency key: a digest of the request, so the
/// same key with another request is told apart from a retry.
pub const REQUEST_ANNOTATION: &str = "sandrun.dev/request-sha256";

const MAX_KEY_CHARS: usize = 255;

/// What a submit with an idempotency key is bound to.
#[derive(Debug, Clone, PartialEq)]
pub struct Idempotent {
    /// The run's name: the same for the same API key and idempotency key.
    pub name: String,
    /// The request's digest (the idempotency key left out).
    pub request: String,
}

/// The key from the `Idempotency-Key` header or the request body (both
/// given, they must agree); `None` when neither is.
pub fn key<'a>(header: Option<&'a str>, request: &'a SubmitRequest) -> Result<Option<&'a str>, ApiError> {
    let body = request.idempotency_key.as_deref();
    let key = match (header, body) {
        (Some(h), Some(b)) if h != b => {
            return Err(ApiError::invalid("idempotencyKey", "differs from the Idempotency-Key header"));
        }
        (h, b) => h.or(b),
    };
    match key {
        Some(k) if k.is_empty() || k.chars().count() > MAX_KEY_CHARS || k.chars().any(|c| !c.is_ascii_graphic()) => {
            Err(ApiError::invalid("idempotencyKey", format!("must be 1 to {MAX_KEY_CHARS} visible ASCII characters")))
        }
        key => Ok(key),
    }
}

/// The run name and request digest for `key` from the API key `tenant`.
pub fn bind(tenant: &str, key: &str, request: &SubmitRequest) -> Idempotent {
    let name = Sha256::new().chain_update(tenant).chain_update([0]).chain_update(key).finalize();
    let without_key = SubmitRequest { idempotency_key: None, ..request.clone() };
    // A struct of strings, lists and maps always serializes.
    let body = serde_json::to_vec(&without_key).unwrap_or_default();
    Idempotent { name: format!("run-{}", &hex(&name)[..20]), request: hex(&Sha256::digest(&body)) }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(code: &str, key: Option<&str>) -> SubmitRequest {
        SubmitRequest {
            language: Some("python".into()),
            code: Some(code.into()),
            idempotency_key: key.map(Into::into),
            ..Default::default()
        }
    }

    /// Header, body; then the key taken, or the field refused.
    type Row<'a> = (Option<&'a str>, Option<&'a str>, Result<Option<&'a str>, &'a str>);

    #[test]
    fn table_of_keys() {
        let long = "k".repeat(256);
        let cases: [Row; 7] = [
            (None, None, Ok(None)),
            (Some("h-1"), None, Ok(Some("h-1"))),
            (None, Some("b-1"), Ok(Some("b-1"))),
            (Some("same"), Some("same"), Ok(Some("same"))),
            (Some("h"), Some("b"), Err("idempotencyKey")),
            (Some(""), None, Err("idempotencyKey")),
            (None, Some(long.as_str()), Err("idempotencyKey")),
        ];
        for (header, body, want) in cases {
            let r = request("1", body);
            let got = key(header, &r).map_err(|e| e.field().unwrap_or("").to_owned());
            assert_eq!(got, want.map_err(str::to_owned), "{header:?} {body:?}");
        }
        assert!(key(Some("has space"), &request("1", None)).is_err());
    }

    #[test]
    fn the_same_keys_name_the_same_run_and_nothing_else_does() {
        let a = bind("team-a", "k1", &request("print(1)", Some("k1")));
        assert_eq!(a, bind("team-a", "k1", &request("print(1)", None)), "the body's key is not part of the request");
        assert!(a.name.starts_with("run-") && a.name.len() == 24, "{}", a.name);
        assert_ne!(a.name, bind("team-b", "k1", &request("print(1)", None)).name, "another API key");
        assert_ne!(a.name, bind("team-a", "k2", &request("print(1)", None)).name, "another idempotency key");
        // No separator ambiguity: ("ab", "c") is not ("a", "bc").
        assert_ne!(bind("ab", "c", &request("x", None)).name, bind("a", "bc", &request("x", None)).name);
        let other = bind("team-a", "k1", &request("print(2)", None));
        assert_eq!(other.name, a.name);
        assert_ne!(other.request, a.request, "another request under the same key");
    }
}
