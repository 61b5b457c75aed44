//! The WebSocket protocol as the gateway speaks it: how big a message may
//! be, how a client message is read, how an answer is written, and which
//! close code each way of ending calls for.

use sandrun_crds::Execution;
use serde_json::Value;
use tracing::debug;

use crate::api::{ClientMessage, ServerMessage, SubmitRequest};
use crate::convert::view;

pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// What the WebSocket library reads at most, as a frame or a message: more
/// than the cap, so that a message a little over it is still read whole
/// and refused by the session, which can then read on to the client's close
/// frame. Past this the library refuses it at the frame's header, with the
/// rest still on the way, and the client may see a reset.
pub const READ_LIMIT_BYTES: usize = 2 * MAX_MESSAGE_BYTES;
/// What the library reads from the socket at a time. Its default, 128 KiB,
/// is zeroed and kept per socket: 1.3 GiB for 10k idle clients. Clients
/// send little; a big message is still read whole, this much per read.
pub const READ_BUFFER_BYTES: usize = 4 * 1024;
/// The gateway is shutting down; the client may connect again (to another
/// replica, or to this one once it is back).
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_PROTOCOL: u16 = 1002;
const CLOSE_NOT_UTF8: u16 = 1007;
pub const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;

/// How a session ends.
#[derive(Debug, PartialEq)]
pub enum End {
    /// The client closed or went away: nothing more to say.
    Gone,
    /// The gateway closes with a code; `readable` when the client's frames
    /// can still be read (not after a read error), to wait for its close frame.
    Close { code: u16, reason: &'static str, readable: bool },
    /// Too slow to keep up: its queue is full, so not even a close frame fits.
    CutOff,
}

pub const TOO_BIG: End = End::Close { code: CLOSE_TOO_BIG, reason: "message over 1 MiB", readable: true };
pub const GOING_AWAY: End = End::Close { code: CLOSE_GOING_AWAY, reason: "gateway shutting down", readable: true };

/// The end a failed read calls for. The library reads nothing more after
/// an error, so none of them is `readable`.
pub fn on_read_error(error: axum::Error) -> End {
    use tungstenite::error::{Error, ProtocolError};
    let close = |code, reason| End::Close { code, reason, readable: false };
    let Ok(error) = error.into_inner().downcast::<Error>() else {
        return close(CLOSE_POLICY, "unreadable frame");
    };
    match *error {
        Error::Capacity(_) => close(CLOSE_TOO_BIG, "message over 1 MiB"),
        Error::Utf8(_) => close(CLOSE_NOT_UTF8, "text frame that is not UTF-8"),
        // The client closed its side without a close frame, or vanished.
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => End::Gone,
        Error::Protocol(_) => close(CLOSE_PROTOCOL, "WebSocket protocol error"),
        _ => End::Gone,
    }
}

/// Reads a client message. serde's `flatten` ignores `deny_unknown_fields`,
/// so an `execute` is taken apart here: its `type` and `ref`, then the rest
/// as a SubmitRequest that refuses unknown fields as the REST body does.
/// On failure, the `ref` if there was one, to echo.
pub fn parse(text: &str) -> Result<ClientMessage, (String, Option<String>)> {
    let value: Value = serde_json::from_str(text).map_err(|e| (e.to_string(), None))?;
    let Value::Object(mut fields) = value else {
        return Err(("expected a JSON object with a `type`".to_owned(), None));
    };
    if fields.get("type").and_then(Value::as_str) != Some("execute") {
        return serde_json::from_value(Value::Object(fields)).map_err(|e| (e.to_string(), None));
    }
    fields.remove("type");
    let ref_ = match fields.remove("ref") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) => Some(r),
        Some(other) => return Err((format!("ref: expected a string, got {other}"), None)),
    };
    match serde_json::from_value::<SubmitRequest>(Value::Object(fields)) {
        Ok(request) => Ok(ClientMessage::Execute { ref_, request: Box::new(request) }),
        Err(e) => Err((e.to_string(), ref_)),
    }
}

pub fn update(execution: &Execution) -> ServerMessage {
    ServerMessage::Update { execution: Box::new(view(execution)) }
}

pub fn encode(message: &ServerMessage) -> Option<String> {
    serde_json::to_string(message).map_err(|error| debug!(%error, "could not encode a websocket message")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_refuses_unknown_fields_and_keeps_its_ref() {
        let ok = parse(r#"{"type": "execute", "ref": "r", "language": "bash", "code": "true"}"#).unwrap();
        assert!(matches!(ok, ClientMessage::Execute { ref_: Some(r), .. } if r == "r"));
        let (why, ref_) = parse(r#"{"type": "execute", "ref": "r", "language": "bash", "bogus": 1}"#).unwrap_err();
        assert!(why.contains("bogus"), "{why}");
        assert_eq!(ref_.as_deref(), Some("r"));
        for bad in
            ["[]", "7", "{}", r#"{"type": "dance"}"#, r#"{"type": "subscribe"}"#, r#"{"type": "execute", "ref": 1}"#]
        {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse(r#"{"type": "subscribe", "id": "x"}"#).unwrap(), ClientMessage::Subscribe { id: "x".into() });
    }

    #[test]
    fn read_errors_map_to_close_codes() {
        use tungstenite::error::{CapacityError, Error, ProtocolError};
        let end = |e: Error| on_read_error(axum::Error::new(e));
        let too_long = Error::Capacity(CapacityError::MessageTooLong { size: usize::MAX, max_size: READ_LIMIT_BYTES });
        assert!(matches!(end(too_long), End::Close { code: 1009, readable: false, .. }));
        assert!(matches!(end(Error::Utf8("x".into())), End::Close { code: 1007, readable: false, .. }));
        let control = Error::Protocol(ProtocolError::ControlFrameTooBig);
        assert!(matches!(end(control), End::Close { code: 1002, readable: false, .. }));
        assert_eq!(end(Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)), End::Gone);
        assert_eq!(end(Error::ConnectionClosed), End::Gone);
    }
}
