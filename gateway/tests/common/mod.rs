//! The router as the binary builds it, with `keys` and a Kubernetes client
//! that points at a closed port: any request that reached Kubernetes would
//! fail as 503, never pass.

// Each test binary uses a part of this.
#![allow(dead_code)]

use std::sync::Arc;

use kube::{Client, Config};
use sandrun_gateway::auth::Keys;
use sandrun_gateway::router::{router, Limits};
use sandrun_gateway::state::AppState;

pub fn app(keys_yaml: &str, cors_origins: Vec<String>) -> axum::Router {
    router(state(keys_yaml), &limits(cors_origins))
}

pub fn state(keys_yaml: &str) -> Arc<AppState> {
    let client = Client::try_from(Config::new("http://127.0.0.1:1".parse().unwrap())).unwrap();
    Arc::new(AppState::new(client, Keys::from_yaml(keys_yaml).unwrap(), 60))
}

pub fn limits(cors_origins: Vec<String>) -> Limits {
    Limits { max_body_bytes: 64 * 1024, cors_origins }
}
