//! The sandrun operator: each Execution becomes a gVisor Job; its result
//! comes back into the Execution's status.
//!
//! The core is pure — `validate`, `objects` and `status` take plain
//! values, and the reconcile's `decide` step turns gathered facts into
//! steps — while `reconcile` gathers from the stores (`store`) and acts
//! against the API server around them. [`startup`] runs it all; it is all the binary needs, so it is all
//! this library exports.

pub mod startup;

mod config;
mod controller;
mod delivery;
mod error;
mod events;
mod http;
mod labels;
mod leader;
mod metrics;
mod objects;
mod pool;
mod reconcile;
mod status;
mod store;
mod text;
mod validate;
