//! The router as the binary builds it, with `keys` and a Kubernetes client
//! that points at a closed port: any request that reached Kubernetes would
//! fail as 503, never pass.

use std::sync::Arc;

use kube::{Client, Config};
use prometheus_client::registry::Registry;
use sandrun_gateway::auth::Keys;
use sandrun_gateway::hub::Hub;
use sandrun_gateway::metrics::Metrics;
use sandrun_gateway::server::{router, AppState, Limits};

pub fn app(keys_yaml: &str, cors_origins: Vec<String>) -> axum::Router {
    let client = Client::try_from(Config::new("http://127.0.0.1:1".parse().unwrap())).unwrap();
    let keys = Keys::from_yaml(keys_yaml).unwrap();
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let state = Arc::new(AppState {
        hub: Hub::start(client.clone()),
        client,
        keys,
        metrics,
        registry,
        execution_ttl_seconds: 60,
    });
    router(state, &Limits { max_body_bytes: 64 * 1024, cors_origins })
}
