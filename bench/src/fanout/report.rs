//! What a phase measured, the checks it must pass, and the table.

use std::time::{Duration, Instant};

use super::client::Report;
use super::host::Limits;
use super::{Options, GOAL_KIB_PER_SOCKET, GOAL_P99};
use crate::error::{bench_error, Result};
use crate::stats::{ms, print_rows, Row, Samples};

/// One phase's figures.
#[derive(Default)]
pub struct Measured {
    pub clients: usize,
    pub latency: Samples,
    /// Receipts before T0 (the watch was the later of the two), counted as 0.
    pub early: usize,
    pub rss_before: u64,
    /// The gateway's all-time peak before the phase: memory it freed but
    /// kept is reused, and hides what new sockets cost.
    pub hwm_before: u64,
    pub rss_open: u64,
    pub rss_peak: u64,
    pub cpu_open: Duration,
    /// Over `--idle` seconds with every socket subscribed and quiet.
    pub cpu_idle: Duration,
    pub cpu_push: Duration,
    /// This process's, the clients', over the same rounds: they share the machine.
    pub own_cpu_push: Duration,
    pub open_time: Duration,
    pub updates: usize,
    pub extra: usize,
    pub rate_limited: usize,
    pub retried: usize,
}

impl Measured {
    fn kib_per_socket(&self) -> f64 {
        self.rss_open.saturating_sub(self.rss_before) as f64 / self.clients.max(1) as f64
    }
}

/// Latencies from every client's receipts; fails when a client missed an
/// update, failed, or did not close cleanly.
pub fn check(reports: &[Report], t0s: &[Instant]) -> Result<(Samples, usize, usize)> {
    let (mut latency, mut early, mut extra, mut missing, mut unclean) = (Samples::default(), 0, 0, 0, 0);
    let mut errors = Vec::new();
    for report in reports {
        extra += report.extra;
        unclean += usize::from(!report.clean_close);
        errors.extend(report.error.clone());
        for (received, t0) in report.received.iter().zip(t0s) {
            match received {
                Some(at) if at < t0 => {
                    early += 1;
                    latency.push(Duration::ZERO);
                }
                Some(at) => latency.push(at.duration_since(*t0)),
                None => missing += 1,
            }
        }
    }
    if !errors.is_empty() || missing > 0 || unclean > 0 {
        errors.sort();
        errors.dedup();
        return Err(bench_error(format!(
            "of {} clients: {missing} updates missed, {unclean} sockets not closed cleanly, errors: {errors:?}",
            reports.len()
        )));
    }
    Ok((latency, early, extra))
}

pub fn report(options: &Options, fanout: &Measured, baseline: &Measured, limits: &Limits) {
    let ratio = |s: f64, b: f64| s / b.max(f64::EPSILON);
    let (n, b) = (fanout.clients, baseline.clients);
    let mut rows = Vec::new();
    for (label, p) in [("p50", 50.0), ("p95", 95.0), ("p99", 99.0), ("max", 100.0)] {
        let (s, base) = (fanout.latency.percentile(p), baseline.latency.percentile(p));
        let mut row = Row::new(format!("push latency {label}, {n} vs {b} clients"), ms(s), ms(base));
        // A baseline of 0 (receipt before the watch's T0) has no ratio.
        if base > Duration::ZERO {
            row = row.ratio(ratio(s.as_secs_f64(), base.as_secs_f64()));
        }
        if label == "p99" {
            row = row.goal(format!("< {}", ms(GOAL_P99)), s < GOAL_P99);
        }
        rows.push(row);
    }
    let (s, base) = (fanout.kib_per_socket(), baseline.kib_per_socket());
    rows.push(
        Row::new("gateway RSS per socket (after − before) / clients", kib(s), kib(base))
            .goal(format!("< {GOAL_KIB_PER_SOCKET} KiB"), s < GOAL_KIB_PER_SOCKET),
    );
    let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
    rows.push(Row::new("gateway RSS before the clients", mib(fanout.rss_before), mib(baseline.rss_before)));
    rows.push(Row::new("gateway RSS, all subscribed", mib(fanout.rss_open), mib(baseline.rss_open)));
    rows.push(Row::new("gateway RSS, peak of the phase", mib(fanout.rss_peak), mib(baseline.rss_peak)));
    let per = |cpu: Duration, count: usize| format!("{:.0} µs", cpu.as_secs_f64() * 1e6 / count.max(1) as f64);
    let per_connection = (fanout.cpu_open.as_secs_f64() / n as f64, baseline.cpu_open.as_secs_f64() / b as f64);
    rows.push(
        Row::new("gateway CPU per client, connect + subscribe", per(fanout.cpu_open, n), per(baseline.cpu_open, b))
            .ratio(ratio(per_connection.0, per_connection.1)),
    );
    let share = |cpu: Duration| format!("{:.1}%", 100.0 * cpu.as_secs_f64() / options.idle.max(1) as f64);
    rows.push(Row::new(
        format!("gateway CPU, all subscribed and idle {}s (% of a core)", options.idle),
        share(fanout.cpu_idle),
        share(baseline.cpu_idle),
    ));
    let pushes = (n * options.rounds, b * options.rounds);
    let per_push = (fanout.cpu_push.as_secs_f64() / pushes.0 as f64, baseline.cpu_push.as_secs_f64() / pushes.1 as f64);
    rows.push(
        Row::new("gateway CPU per client per cancel", per(fanout.cpu_push, pushes.0), per(baseline.cpu_push, pushes.1))
            .ratio(ratio(per_push.0, per_push.1)),
    );
    rows.push(Row::new(
        "clients' CPU (this process) per client per cancel",
        per(fanout.own_cpu_push, pushes.0),
        per(baseline.own_cpu_push, pushes.1),
    ));
    let updates = |m: &Measured, pushes: usize| format!("{:.2}", m.updates as f64 / pushes.max(1) as f64);
    rows.push(Row::new(
        "updates received per client per cancel",
        updates(fanout, pushes.0),
        updates(baseline, pushes.1),
    ));
    print_rows(
        &format!(
            "Fan-out: a status change pushed to {n} WebSocket clients of one gateway, beside {b} \
             ({} rounds, latency from this process's watch seeing the change)",
            options.rounds
        ),
        &rows,
    );
    for m in [baseline, fanout] {
        println!(
            "- {} clients: {} samples ({} before T0, counted as 0), subscribed in {:.1}s \
             ({} rate-limited, {} connects retried), {} updates after the final one",
            m.clients,
            m.latency.len(),
            m.early,
            m.open_time.as_secs_f64(),
            m.rate_limited,
            m.retried,
            m.extra
        );
    }
    println!("- {limits}");
    // RSS does not shrink when sockets close: a gateway that held clients
    // (or Executions) before reuses that memory first.
    println!(
        "- gateway RSS before the clients {}, its high-water mark {}: RSS per socket reads low on a gateway \
         that held more before; restart it for a clean figure",
        mib(fanout.rss_before),
        mib(fanout.hwm_before)
    );
}

fn kib(value: f64) -> String {
    format!("{value:.1} KiB")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(received: Option<Instant>) -> Report {
        Report { received: vec![received], updates: 1, clean_close: true, ..Default::default() }
    }

    #[test]
    fn receipts_become_latencies_from_t0() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let reports = [report(Some(t0 + Duration::from_millis(7))), report(Some(t0 - Duration::from_millis(2)))];
        let (latency, early, extra) = check(&reports, &[t0]).unwrap();
        assert_eq!((latency.len(), early, extra), (2, 1, 0));
        assert_eq!(latency.percentile(100.0), Duration::from_millis(7));
        assert_eq!(latency.percentile(0.0), Duration::ZERO, "early receipts count as 0");
    }

    #[test]
    fn a_missed_update_an_error_or_an_unclean_close_fails() {
        let t0 = Instant::now();
        let ok = report(Some(t0));
        assert!(check(&[ok, report(None)], &[t0]).is_err());
        let failed = Report { error: Some("reading: reset".into()), ..report(Some(t0)) };
        assert!(check(&[failed], &[t0]).unwrap_err().to_string().contains("reset"));
        let unclean = Report { clean_close: false, ..report(Some(t0)) };
        assert!(check(&[unclean], &[t0]).is_err());
    }
}
