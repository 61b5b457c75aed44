//! Fan-out: many WebSocket clients at once, each running its own program.
//! In a test binary of its own because it fills the node with pods: cargo
//! runs test binaries one after another, so it never starves other tests.

use std::time::Duration;

use sandrun_api::{ServerMessage, State};
use sandrun_e2e::gateway::{next_message, send_json, until_final, Gateway};
use serde_json::json;

#[tokio::test]
async fn many_websocket_clients_each_get_their_own_result_only() {
    let gw = Gateway::from_env();
    let clients: usize = std::env::var("E2E_WS_CLIENTS").ok().and_then(|n| n.parse().ok()).unwrap_or(200);
    let token = gw.key("demo").token;
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (gw, token) = (gw.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut socket = gw.connect(&token).await.expect("connect");
            let code = format!("echo client-{i}");
            send_json(&mut socket, json!({"type": "execute", "language": "bash", "code": code, "limits": {"memory": "16Mi", "cpu": "100m"}})).await;
            let id = match next_message(&mut socket, Duration::from_secs(60)).await {
                Some(ServerMessage::Accepted { id, .. }) => id,
                other => panic!("client {i}: {other:?}"),
            };
            let done = until_final(&mut socket, &id, Duration::from_secs(900)).await;
            assert_eq!((done.status, done.stdout.as_deref()), (State::Succeeded, Some(format!("client-{i}\n").as_str())), "client {i}");
        }));
    }
    for task in tasks {
        task.await.expect("client task");
    }
}
