//! The sandrun gateway: REST and WebSocket access to Executions for apps and
//! browsers. API keys map callers to tenant namespaces; one shared watch on
//! Executions feeds every waiting request and socket, each getting the
//! changes of the Executions it follows.

pub use sandrun_api as api;
pub mod auth;
pub mod convert;
pub mod error;
pub mod executions;
pub mod extract;
pub mod hub;
pub mod idempotency;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod policy;
pub mod rest;
pub mod router;
pub mod shutdown;
pub mod startup;
pub mod state;
pub mod web;
pub mod ws;
