//! How fast the operator reacts, from watch events as they reach this
//! process: Execution created → its Job created, and the program's pod
//! terminated → the Execution's final status written. Beside each, the
//! same step of kube-controller-manager's Job controller on the very same
//! runs: Job created → its pod created, pod terminated → Job complete.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use sandrun_crds::Execution;
use tokio::sync::Notify;

use crate::error::{bench_error, Error, Result};
use crate::stats::{ms, print_rows, Row, Samples};
use crate::{run_id, RUN_NAMESPACE};

const EXECUTION_LABEL: &str = "sandrun.dev/execution";
const RUN_WITHIN: Duration = Duration::from_secs(120);

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Executions run one after another.
    #[arg(long, default_value_t = 40)]
    pub runs: usize,
    /// Unmeasured runs first (the leader's stores and connections warm up).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
}

/// When each step of one run was first seen.
#[derive(Default, Debug, Clone)]
pub struct Timeline {
    pub execution_created: Option<Instant>,
    pub job_created: Option<Instant>,
    pub pod_created: Option<Instant>,
    pub pod_terminated: Option<Instant>,
    pub job_finished: Option<Instant>,
    pub status_final: Option<Instant>,
}

#[derive(Default)]
struct Recorder {
    runs: Mutex<HashMap<String, Timeline>>,
    changed: Notify,
}

impl Recorder {
    fn mark(&self, execution: &str, step: impl FnOnce(&mut Timeline) -> &mut Option<Instant>) {
        let now = Instant::now();
        if let Ok(mut runs) = self.runs.lock() {
            step(runs.entry(execution.to_owned()).or_default()).get_or_insert(now);
        }
        self.changed.notify_waiters();
    }

    fn get(&self, execution: &str) -> Option<Timeline> {
        self.runs.lock().ok()?.get(execution).cloned()
    }
}

pub async fn run(client: &Client, options: &Options) -> Result<()> {
    let recorder = Arc::new(Recorder::default());
    let _watches = watch_all(client, recorder.clone()).await?;
    let executions: Api<Execution> = Api::namespaced(client.clone(), RUN_NAMESPACE);
    // A fresh install's replicas may still be electing a leader.
    crate::leader_pid(client).await?;
    let id = run_id();
    let mut timelines = Vec::new();
    for i in 0..options.warmup + options.runs {
        let name = format!("bench-{id}-{i}");
        let spec = sandrun_e2e::python("print('hello')");
        executions.create(&PostParams::default(), &Execution::new(&name, spec)).await?;
        let timeline = wait_complete(&recorder, &name).await?;
        if i >= options.warmup {
            timelines.push(timeline);
        }
        executions.delete(&name, &DeleteParams::background()).await?;
    }
    report(&timelines, options.runs);
    Ok(())
}

async fn wait_complete(recorder: &Recorder, name: &str) -> Result<Timeline> {
    let complete = |t: &Timeline| {
        t.execution_created.is_some()
            && t.job_created.is_some()
            && t.pod_created.is_some()
            && t.pod_terminated.is_some()
            && t.job_finished.is_some()
            && t.status_final.is_some()
    };
    let wait = async {
        loop {
            let changed = recorder.changed.notified();
            if let Some(timeline) = recorder.get(name).filter(complete) {
                return timeline;
            }
            changed.await;
        }
    };
    tokio::time::timeout(RUN_WITHIN, wait)
        .await
        .map_err(|_| Error::Timeout { what: format!("every step of {name}"), seconds: RUN_WITHIN.as_secs() })
}

fn between(
    timelines: &[Timeline],
    from: fn(&Timeline) -> Option<Instant>,
    to: fn(&Timeline) -> Option<Instant>,
) -> Samples {
    timelines.iter().filter_map(|t| Some(to(t)?.saturating_duration_since(from(t)?))).collect()
}

/// p50 and p99 of one step, sandrun beside the baseline; the goal is on p99.
fn percentile_rows(step: &str, sandrun: &Samples, baseline: &Samples, goal: Duration) -> Vec<Row> {
    let row = |label: &str, p: f64| {
        let (s, b) = (sandrun.percentile(p), baseline.percentile(p));
        (Row::new(format!("{step}, {label}"), ms(s), ms(b)), s)
    };
    let (p99, s99) = row("p99", 99.0);
    vec![row("p50", 50.0).0, p99.goal(format!("< {} ms", goal.as_millis()), s99 < goal)]
}

fn report(timelines: &[Timeline], runs: usize) {
    let creation = between(timelines, |t| t.execution_created, |t| t.job_created);
    let pod_creation = between(timelines, |t| t.job_created, |t| t.pod_created);
    let result = between(timelines, |t| t.pod_terminated, |t| t.status_final);
    let completion = between(timelines, |t| t.pod_terminated, |t| t.job_finished);
    let mut rows = percentile_rows("created → child created", &creation, &pod_creation, Duration::from_millis(50));
    rows.extend(percentile_rows("pod terminated → result written", &result, &completion, Duration::from_millis(100)));
    print_rows(
        &format!(
            "Operator reaction over {runs} runs (sandrun: Execution → Job, pod → status; \
             baseline, Job controller: Job → pod, pod → Job condition)"
        ),
        &rows,
    );
}

/// Starts watches on Executions, Jobs and pods; returns once all three have
/// listed, so no step of the first run is missed.
async fn watch_all(client: &Client, recorder: Arc<Recorder>) -> Result<Watches> {
    let config = watcher::Config::default();
    let executions = watcher::watcher(Api::<Execution>::namespaced(client.clone(), RUN_NAMESPACE), config.clone());
    let jobs = watcher::watcher(Api::<Job>::namespaced(client.clone(), RUN_NAMESPACE), config.clone());
    let pods = watcher::watcher(Api::<Pod>::namespaced(client.clone(), RUN_NAMESPACE), config);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(3);
    let tasks = vec![
        tokio::spawn(follow(executions, ready_tx.clone(), recorder.clone(), record_execution)),
        tokio::spawn(follow(jobs, ready_tx.clone(), recorder.clone(), record_job)),
        tokio::spawn(follow(pods, ready_tx, recorder, record_pod)),
    ];
    for _ in 0..3 {
        match tokio::time::timeout(Duration::from_secs(30), ready_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => return Err(e),
            _ => return Err(bench_error("the watches did not start")),
        }
    }
    Ok(Watches(tasks))
}

/// The watch tasks, stopped when dropped.
struct Watches(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Watches {
    fn drop(&mut self) {
        self.0.iter().for_each(|task| task.abort());
    }
}

async fn follow<K: Clone>(
    stream: impl Stream<Item = Result<Event<K>, watcher::Error>>,
    ready: tokio::sync::mpsc::Sender<Result<()>>,
    recorder: Arc<Recorder>,
    record: fn(&Recorder, &K),
) {
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::InitDone) => {
                let _ = ready.try_send(Ok(()));
            }
            Ok(Event::Apply(object)) => record(&recorder, &object),
            Ok(_) => {}
            // Before the first list this fails the benchmark; later the
            // watcher retries on its own.
            Err(e) => {
                let _ = ready.try_send(Err(e.into()));
            }
        }
    }
}

fn record_execution(recorder: &Recorder, execution: &Execution) {
    let name = execution.name_any();
    recorder.mark(&name, |t| &mut t.execution_created);
    if execution.status.as_ref().is_some_and(|s| s.is_terminal()) {
        recorder.mark(&name, |t| &mut t.status_final);
    }
}

fn record_job(recorder: &Recorder, job: &Job) {
    let Some(execution) = job.labels().get(EXECUTION_LABEL) else { return };
    recorder.mark(execution, |t| &mut t.job_created);
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    if conditions.iter().any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True") {
        recorder.mark(execution, |t| &mut t.job_finished);
    }
}

fn record_pod(recorder: &Recorder, pod: &Pod) {
    let Some(execution) = pod.labels().get(EXECUTION_LABEL) else { return };
    recorder.mark(execution, |t| &mut t.pod_created);
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
    if statuses.iter().any(|c| c.name == "run" && c.state.as_ref().is_some_and(|s| s.terminated.is_some())) {
        recorder.mark(execution, |t| &mut t.pod_terminated);
    }
}
