//! Talking to the gateway that `hack/up.sh` installs in the cluster, through
//! its Service, with the keys `hack/gateway-keys.sh` generated.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use sandrun_api::{ExecutionView, ServerMessage};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Deserialize)]
struct KeyFile {
    keys: Vec<Key>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Key {
    pub name: String,
    pub token: String,
    pub namespace: String,
}

#[derive(Clone, Debug)]
pub struct Gateway {
    pub url: String,
    keys: Vec<Key>,
}

impl Gateway {
    pub fn from_env() -> Self {
        let state = std::env::var("SANDRUN_STATE").unwrap_or_else(|_| "/var/lib/sandrun-cluster".into());
        let path = format!("{state}/config/gateway-keys.yaml");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}; start the gateway with hack/up.sh"));
        let file: KeyFile = serde_yaml::from_str(&text).expect("gateway keys parse");
        let addr = std::env::var("SANDRUN_GATEWAY_ADDR").unwrap_or_else(|_| service_addr());
        Self { url: format!("http://{addr}"), keys: file.keys }
    }

    /// The same keys against another replica.
    pub fn at(&self, addr: &str) -> Self {
        Self { url: format!("http://{addr}"), keys: self.keys.clone() }
    }

    /// The key named `name` (`demo`, `other` or `slow`).
    pub fn key(&self, name: &str) -> Key {
        self.keys.iter().find(|k| k.name == name).cloned().unwrap_or_else(|| panic!("no gateway key {name}"))
    }

    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::builder().timeout(Duration::from_secs(150)).build().expect("http client")
    }

    /// GET `path` with `token` and decode the JSON answer.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, token: &str, path: &str) -> T {
        let response = self.http().get(format!("{}{path}", self.url)).bearer_auth(token).send().await.expect("GET");
        response.json().await.unwrap_or_else(|e| panic!("GET {path}: not the expected JSON: {e}"))
    }

    pub async fn connect(&self, token: &str) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
        let mut request = format!("{}/v1/ws", self.url.replacen("http", "ws", 1)).into_client_request()?;
        request.headers_mut().insert("Authorization", format!("Bearer {token}").parse().expect("header"));
        tokio_tungstenite::connect_async(request).await.map(|(socket, _)| socket)
    }
}

/// The in-cluster gateway Service's address, reachable from this host
/// through kube-proxy.
pub fn service_addr() -> String {
    let ip = crate::kubectl(&[
        "-n",
        "sandrun-system",
        "get",
        "service",
        "sandrun-gateway",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    format!("{ip}:80")
}

pub async fn send_json(socket: &mut Socket, value: serde_json::Value) {
    socket.send(Message::Text(value.to_string().into())).await.expect("websocket send");
}

/// The next message the gateway sends, skipping pings.
pub async fn next_message(socket: &mut Socket, within: Duration) -> Option<ServerMessage> {
    loop {
        let frame = tokio::time::timeout(within, socket.next()).await.ok()??;
        match frame {
            Ok(Message::Text(text)) => return Some(serde_json::from_str(&text).expect("a ServerMessage")),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Reads updates until `id` is final; every update must be about `id`.
pub async fn until_final(socket: &mut Socket, id: &str, within: Duration) -> ExecutionView {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next_message(socket, left).await {
            Some(ServerMessage::Update { execution }) => {
                assert_eq!(execution.id, id, "an update for someone else's execution");
                if execution.status.is_final() {
                    return *execution;
                }
            }
            Some(other) => panic!("unexpected message while waiting for {id}: {other:?}"),
            None => panic!("no final update for {id} within {within:?}"),
        }
    }
}
