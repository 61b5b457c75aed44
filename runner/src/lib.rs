//! The sandrun runner: a small static binary that runs inside the execution
//! pod around the user's program. It lets users keep stock language images:
//! an init container copies it into a shared `emptyDir`, and the main
//! container starts it with the user's command after `--`.
//!
//! It captures stdout and stderr separately (each capped), enforces the
//! wall-clock timeout, measures wall time and peak memory, and prints exactly
//! one framed [`RunResult`] line to its own stdout — the container log — for
//! the operator to read. Nothing else is written there.
//!
//! In warm mode ([`warm`]) the pod starts ahead of time and the runner reads
//! its program as one [`protocol::Delivery`] line from its stdin, which the
//! operator writes through an attach session.

pub mod capture;
pub mod cli;
pub mod inputs;
pub mod memory;
pub mod prestart;
pub mod procs;
pub mod protocol;
pub mod report;
pub mod run;
pub mod warm;

pub use protocol::{parse_delivery, parse_frame, termination_message, Delivery, RunResult, FRAME_PREFIX};
