//! Everything that can go wrong before a program's own result is known.
//! Each of these ends the CLI with [`crate::exit::USAGE`]. Messages leave
//! their cause out; [`report`] appends the chain of causes.

use std::path::PathBuf;

use sandrun_api::ErrorDetail;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),

    #[error("cannot read {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot read standard input")]
    ReadStdin(#[source] std::io::Error),

    #[error("{0} is not UTF-8 text; the gateway takes text only")]
    NotText(String),

    #[error("invalid gateway URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },

    #[error("cannot set up TLS: {0}")]
    Tls(String),

    #[error("cannot reach the gateway at {url}")]
    Http {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A JSON error the gateway sent, over REST (with its HTTP status) or a WebSocket.
    #[error("gateway: {}{}{}", detail.message, field_note(detail), hint(detail))]
    Gateway { status: Option<u16>, detail: ErrorDetail },

    #[error("unexpected answer from the gateway (HTTP {status}): {body}")]
    Unexpected { status: u16, body: String },

    #[error("WebSocket {url}")]
    WebSocket {
        url: String,
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },

    #[error(
        "the connection to the gateway ended before it acknowledged the submission ({why}); \
         the run may or may not exist (see `sandrun ls`)"
    )]
    LostBeforeAccepted { why: String },

    #[error(
        "lost the connection to the gateway and {attempts} tries to reconnect failed; {id} goes on: `sandrun get {id}`"
    )]
    Disconnected { id: String, attempts: usize },

    #[error("{id} was deleted before it finished")]
    Deleted { id: String },

    #[error("cannot write output")]
    Output(#[source] std::io::Error),
}

fn field_note(detail: &ErrorDetail) -> String {
    detail.field.as_deref().map(|f| format!(" (field {f})")).unwrap_or_default()
}

fn hint(detail: &ErrorDetail) -> &'static str {
    match detail.code.as_str() {
        "unauthorized" => " — pass an API key with --key, --key-file or SANDRUN_KEY",
        _ => "",
    }
}

/// The error and each of its causes, joined by `: `.
pub fn report(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let part = e.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = e.source();
    }
    text
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_carry_the_causes() {
        let e = Error::ReadFile { path: "a.py".into(), source: std::io::Error::other("no such file") };
        assert_eq!(report(&e), "cannot read a.py: no such file");
        let detail =
            ErrorDetail { code: "unauthorized".into(), message: "missing or unknown API key".into(), field: None };
        assert_eq!(
            report(&Error::Gateway { status: Some(401), detail }),
            "gateway: missing or unknown API key — pass an API key with --key, --key-file or SANDRUN_KEY"
        );
        let detail =
            ErrorDetail { code: "invalid_request".into(), message: "bad".into(), field: Some("limits.memory".into()) };
        assert_eq!(report(&Error::Gateway { status: None, detail }), "gateway: bad (field limits.memory)");
    }
}
