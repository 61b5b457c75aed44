//! WebSocket: execute or subscribe, then receive every status change.
//!
//! `upgrade` is the handler; `protocol` holds the message limits, reading
//! and writing, and the close codes; `session` runs one socket.

pub(crate) mod protocol;
mod session;

use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::response::Response;

use crate::api::ErrorBody;
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::state::AppState;
pub use protocol::MAX_MESSAGE_BYTES;
use protocol::{READ_BUFFER_BYTES, READ_LIMIT_BYTES};

/// Open a WebSocket (see the description at the top for its messages).
#[utoipa::path(get, path = "/v1/ws",
    params(("access_token" = Option<String>, Query,
        description = "the API key, for clients that can set neither a header nor subprotocols; browsers should \
            offer the subprotocols `sandrun.v1` and `sandrun.bearer.<base64url of the key>` instead, since keys \
            in URLs end up in proxy logs")),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade request", body = ErrorBody),
        (status = 426, description = "This connection cannot be upgraded", body = ErrorBody),
        (status = 429, description = "Rate limited, or this key has its most sockets open (`too_many_sockets`)", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn upgrade(
    State(state): State<Arc<AppState>>,
    // Before the upgrade: a request without a key is a 401, whatever else it lacks.
    tenant: Tenant,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws?;
    // Held by the session until it ends.
    let slot = tenant.open_socket()?;
    Ok(ws
        // Answers a browser that offered `sandrun.v1` (beside the key's
        // subprotocol, see auth::bearer) with it; never with the key's.
        .protocols([crate::auth::WS_PROTOCOL])
        .max_message_size(READ_LIMIT_BYTES)
        .max_frame_size(READ_LIMIT_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| {
            // Tracked, so that a shutdown waits for its close handshake.
            let session = session::run(socket, state.clone(), tenant, slot);
            state.shutdown.track(session)
        }))
}
