//! A change of an Execution as the hub hands it out: the object, and the
//! WebSocket `update` message for it, encoded once for every socket.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use sandrun_crds::Execution;

use crate::api::ServerMessage;
use crate::ws::protocol::{encode, update};

/// An Execution as it changed, with the message that tells clients so.
#[derive(Debug)]
pub struct Change {
    /// As it is now, or as it was last seen when it is gone.
    pub execution: Arc<Execution>,
    /// The WebSocket `update` (or `gone`) for it; a clone shares the bytes.
    pub message: Option<Utf8Bytes>,
    /// It was deleted: nothing more will come for it.
    pub gone: bool,
}

impl Change {
    pub fn new(execution: Arc<Execution>) -> Self {
        let message = update_message(&execution);
        Self { execution, message, gone: false }
    }

    pub fn gone(execution: Arc<Execution>) -> Self {
        let message = ServerMessage::Gone { id: execution.metadata.name.clone().unwrap_or_default() };
        Self { message: encode(&message).map(Into::into), execution, gone: true }
    }
}

/// The WebSocket `update` message for an Execution.
pub fn update_message(execution: &Execution) -> Option<Utf8Bytes> {
    encode(&update(execution)).map(Into::into)
}

#[cfg(test)]
mod tests {
    use sandrun_crds::{ExecutionStatus, Phase};

    use super::*;

    #[test]
    fn the_update_is_encoded_once_as_clients_read_it() {
        let mut cancelled = Execution::new("run-1", Default::default());
        cancelled.metadata.namespace = Some("team".into());
        cancelled.status = Some(ExecutionStatus { phase: Phase::Cancelled, ..Default::default() });
        let change = Change::new(Arc::new(cancelled));
        let text = change.message.expect("encoded");
        let message: ServerMessage = serde_json::from_str(&text).unwrap();
        let ServerMessage::Update { execution } = message else { panic!("not an update: {text}") };
        assert_eq!((execution.id.as_str(), execution.status), ("run-1", crate::api::State::Cancelled));
        let gone = Change::gone(change.execution.clone());
        let message: ServerMessage = serde_json::from_str(&gone.message.expect("encoded")).unwrap();
        assert_eq!(message, ServerMessage::Gone { id: "run-1".into() });
    }
}
