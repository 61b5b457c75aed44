//! Warm sandboxes: SandboxPools keep pods started ahead, each waiting for
//! the one program it will ever run. `profile` says what a pool's pods are
//! and which runs fit them, `plan` what a pool needs (pure), `controller`
//! keeps each pool at its size. Binding a run to a pod is the Execution
//! reconcile's (`reconcile`).

pub mod controller;
pub mod plan;
pub mod profile;

pub use profile::Profile;
