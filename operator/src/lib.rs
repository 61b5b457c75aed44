//! The sandrun operator: each Execution becomes a gVisor Job; its result
//! comes back into the Execution's status.
//!
//! The core is pure — [`validate`], [`objects`] and [`status`] take plain
//! values — and [`reconcile`] is the thin layer that reads and writes the
//! cluster around them.

pub mod children;
pub mod config;
pub mod controller;
pub mod error;
pub mod events;
pub mod http;
pub mod labels;
pub mod leader;
pub mod metrics;
pub mod name_set;
pub mod objects;
pub mod quantity;
pub mod reconcile;
pub mod relisted;
pub mod startup;
pub mod status;
pub mod stores;
pub mod text;
pub mod validate;
pub mod views;
