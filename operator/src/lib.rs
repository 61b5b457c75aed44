//! The sandrun operator: each Execution becomes a gVisor Job; its result
//! comes back into the Execution's status.
//!
//! The core is pure — [`validate`], [`objects`] and [`status`] take plain
//! values, and the reconcile's `decide` step turns gathered facts into
//! steps — while [`reconcile`] gathers from the stores ([`store`]) and acts
//! against the API server around them. [`startup`] runs it all.

pub mod config;
pub mod labels;
pub mod objects;
pub mod reconcile;
pub mod startup;
pub mod status;
pub mod store;
pub mod validate;

mod controller;
mod error;
mod events;
mod http;
mod leader;
mod metrics;
mod quantity;
mod text;

pub use error::Error;
