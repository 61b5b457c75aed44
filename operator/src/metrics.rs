//! Prometheus metrics of the controller, served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: &'static str,
}

#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Counter,
    pub failures: Family<ErrorLabels, Counter>,
    pub reconcile_seconds: Histogram,
    pub finished: Family<PhaseLabels, Counter>,
    pub jobs_created: Counter,
    /// 1 while this replica holds the lease (always 0 without leader election).
    pub leader: Gauge,
    /// Events not written because the queue was full.
    pub events_dropped: Counter,
    /// Run results read, by where they came from: the pod's termination
    /// message (no API call) or its log.
    pub results_read: Family<SourceLabels, Counter>,
    /// New runs that fit a pool and got a warm pod.
    pub warm_hits: Counter,
    /// New runs that fit a pool that had no warm pod for them (cold start).
    pub warm_misses: Counter,
    /// Warm runs sent back to a cold start (the program never reached the runner).
    pub warm_fallbacks: Counter,
    /// Claim of the pod, its Job and the Execution's status, for one run.
    pub warm_bind_seconds: Histogram,
    /// The program written until the runner accepted it (attach included
    /// when no session was open ahead).
    pub warm_delivery_seconds: Histogram,
    /// The whole stream: attach until the frame (the program's run included).
    pub warm_stream_seconds: Histogram,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            reconciles: Counter::default(),
            failures: Family::default(),
            reconcile_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            finished: Family::default(),
            jobs_created: Counter::default(),
            leader: Gauge::default(),
            events_dropped: Counter::default(),
            results_read: Family::default(),
            warm_hits: Counter::default(),
            warm_misses: Counter::default(),
            warm_fallbacks: Counter::default(),
            warm_bind_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            warm_delivery_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            warm_stream_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 16)),
        };
        let r = registry.sub_registry_with_prefix("sandrun_operator");
        r.register("reconciles", "Reconciliations run", m.reconciles.clone());
        r.register("reconcile_failures", "Reconciliations that failed, by error kind", m.failures.clone());
        r.register("reconcile_duration_seconds", "Time spent in one reconciliation", m.reconcile_seconds.clone());
        r.register("executions_finished", "Executions that reached a terminal phase", m.finished.clone());
        r.register("jobs_created", "Jobs created for Executions", m.jobs_created.clone());
        r.register("leader", "Whether this replica holds the leader lease", m.leader.clone());
        r.register("events_dropped", "Events not written because the queue was full", m.events_dropped.clone());
        r.register("results_read", "Run results read, by source", m.results_read.clone());
        r.register("warm_hits", "New runs that got a warm pod", m.warm_hits.clone());
        r.register("warm_misses", "New runs that fit a pool with no warm pod free", m.warm_misses.clone());
        r.register("warm_fallbacks", "Warm runs sent back to a cold start", m.warm_fallbacks.clone());
        r.register("warm_bind_duration_seconds", "Claiming a warm pod for a run", m.warm_bind_seconds.clone());
        r.register(
            "warm_delivery_duration_seconds",
            "Program written (or attach) until the runner accepted",
            m.warm_delivery_seconds.clone(),
        );
        r.register("warm_stream_duration_seconds", "Attach until the result", m.warm_stream_seconds.clone());
        m
    }
}
