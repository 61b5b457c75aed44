//! What every handler and socket shares: the Kubernetes client, the keys,
//! the hub, the metrics, and the signal that the gateway is shutting down.

use kube::Client;
use prometheus_client::registry::Registry;

use crate::auth::Keys;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

pub struct AppState {
    pub client: Client,
    /// Executions made through the gateway are deleted this long after they
    /// finish, so a busy gateway does not fill etcd.
    pub execution_ttl_seconds: u32,
    pub keys: Keys,
    pub hub: Hub,
    pub metrics: Metrics,
    pub registry: Registry,
    pub shutdown: Shutdown,
    /// When `/readyz` last asked the API server, and whether it answered.
    pub last_api_check: std::sync::Mutex<Option<(std::time::Instant, bool)>>,
}

impl AppState {
    /// Registers the metrics and starts the hub's watch in the background.
    pub fn new(client: Client, keys: Keys, execution_ttl_seconds: u32) -> Self {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let hub = Hub::start(client.clone());
        Self {
            client,
            execution_ttl_seconds,
            keys,
            hub,
            metrics,
            registry,
            shutdown: Shutdown::default(),
            last_api_check: std::sync::Mutex::default(),
        }
    }
}
