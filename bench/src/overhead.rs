//! What sandrun adds to a run: hello world submitted over the gateway's
//! WebSocket until its result arrives, against the same program as a plain
//! Job created, waited on and read back through the API, as `kubectl
//! create`, `kubectl wait` and `kubectl logs` do (without three process
//! start-ups, which would flatter sandrun).

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::Client;
use sandrun_api::{ClientMessage, FileInput, ServerMessage, State, SubmitRequest};
use sandrun_e2e::gateway::{Gateway, Socket};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::error::{bench_error, Error, Result};
use crate::stats::{ms, print_rows, Row, Samples};
use crate::{run_id, RUN_NAMESPACE};

const PROGRAM: &str = "print('hello')";
const EXPECTED: &str = "hello\n";
const RUN_WITHIN: Duration = Duration::from_secs(120);
/// The target: sandrun at most 5% slower than a bare Job.
const GOAL_RATIO: f64 = 1.05;

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Measured runs of each kind, taken in turns.
    #[arg(long, default_value_t = 30)]
    pub runs: usize,
    /// Unmeasured runs of each kind first (image and page caches).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// The RuntimeClass sandrun is installed with (`runtimeClass.name`); the
    /// baseline Jobs use the same one.
    #[arg(long, default_value = "runsc")]
    pub runtime: String,
    /// Image of the baseline Job: the one sandrun runs Python in.
    #[arg(long, default_value = "localhost/sandrun-python:bookworm")]
    pub image: String,
    /// Gateway key to submit with.
    #[arg(long, default_value = "demo")]
    pub key: String,
}

pub async fn run(client: &Client, options: &Options) -> Result<()> {
    crate::leader_pid(client).await?;
    let gateway = Gateway::from_env();
    let token = gateway.key(&options.key).token;
    let mut socket = gateway.connect(&token).await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), RUN_NAMESPACE);
    let id = run_id();
    let (mut sandrun, mut baseline) = (Samples::default(), Samples::default());
    for i in 0..options.warmup + options.runs {
        // In turns, so drift in the machine's load falls on both alike.
        let through_gateway = via_gateway(&mut socket, client, &options.runtime).await?;
        let plain = plain_job(&jobs, client, &format!("bench-{id}-{i}"), options).await?;
        if i >= options.warmup {
            sandrun.push(through_gateway);
            baseline.push(plain);
        }
    }
    let _ = socket.close(None).await;
    report(options, &sandrun, &baseline);
    Ok(())
}

fn report(options: &Options, sandrun: &Samples, baseline: &Samples) {
    let rows: Vec<Row> = [("p50", 50.0), ("p95", 95.0)]
        .into_iter()
        .map(|(label, p)| {
            let (s, b) = (sandrun.percentile(p), baseline.percentile(p));
            let ratio = s.as_secs_f64() / b.as_secs_f64().max(f64::EPSILON);
            Row::new(format!("hello world, request → result, {label}"), ms(s), ms(b))
                .ratio(ratio)
                .goal(format!("ratio ≤ {GOAL_RATIO}"), ratio <= GOAL_RATIO)
        })
        .collect();
    print_rows(
        &format!(
            "Overhead on {}: gateway WebSocket vs plain Job ({} runs each, {} warm-up)",
            options.runtime, options.runs, options.warmup
        ),
        &rows,
    );
}

/// Submits over the open socket and waits for the final update.
async fn via_gateway(socket: &mut Socket, client: &Client, runtime: &str) -> Result<Duration> {
    let request = SubmitRequest {
        language: Some("python".to_owned()),
        files: vec![FileInput { path: "main.py".to_owned(), content: PROGRAM.to_owned() }],
        ..Default::default()
    };
    let message = ClientMessage::Execute { ref_: None, request: Box::new(request) };
    let text = serde_json::to_string(&message).map_err(|e| bench_error(e.to_string()))?;
    let started = Instant::now();
    socket.send(Message::Text(text.into())).await?;
    let deadline = started + RUN_WITHIN;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, socket.next())
            .await
            .map_err(|_| Error::Timeout { what: "a gateway run".into(), seconds: RUN_WITHIN.as_secs() })?
            .ok_or_else(|| bench_error("the gateway closed the socket"))??;
        let Message::Text(text) = frame else { continue };
        let message: ServerMessage = serde_json::from_str(&text).map_err(|e| bench_error(e.to_string()))?;
        match message {
            ServerMessage::Update { execution } if execution.status.is_final() => {
                let elapsed = started.elapsed();
                if execution.status != State::Succeeded || execution.stdout.as_deref() != Some(EXPECTED) {
                    return Err(bench_error(format!("gateway run {} ended {:?}", execution.id, execution)));
                }
                check_runtime(client, &execution.id, runtime).await?;
                return Ok(elapsed);
            }
            ServerMessage::Error { error, .. } => return Err(bench_error(format!("gateway: {}", error.message))),
            _ => {}
        }
    }
}

/// Refuses to label a figure with a RuntimeClass the run did not use.
async fn check_runtime(client: &Client, execution: &str, runtime: &str) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), RUN_NAMESPACE);
    let selector = format!("sandrun.dev/execution={execution}");
    let list = pods.list(&ListParams::default().labels(&selector)).await?;
    let used = list.items.first().and_then(|p| p.spec.as_ref()).and_then(|s| s.runtime_class_name.clone());
    if used.as_deref() == Some(runtime) {
        return Ok(());
    }
    Err(bench_error(format!(
        "sandrun ran {execution} with RuntimeClass {used:?}, not {runtime}; install it with runtimeClass.name={runtime}"
    )))
}

/// The baseline: the same program in the same image, as one Job.
async fn plain_job(jobs: &Api<Job>, client: &Client, name: &str, options: &Options) -> Result<Duration> {
    let job: Job = serde_json::from_value(baseline_job(name, &options.image, &options.runtime))
        .map_err(|e| bench_error(e.to_string()))?;
    let started = Instant::now();
    jobs.create(&PostParams::default(), &job).await?;
    let complete = |job: Option<&Job>| {
        job.and_then(|j| j.status.as_ref()).and_then(|s| s.conditions.as_ref()).is_some_and(|conditions| {
            conditions.iter().any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        })
    };
    tokio::time::timeout(RUN_WITHIN, await_condition(jobs.clone(), name, complete))
        .await
        .map_err(|_| Error::Timeout { what: format!("Job {name}"), seconds: RUN_WITHIN.as_secs() })?
        .map_err(|e| bench_error(format!("waiting for Job {name}: {e}")))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), RUN_NAMESPACE);
    let pod = pods
        .list(&ListParams::default().labels(&format!("job-name={name}")))
        .await?
        .items
        .into_iter()
        .next()
        .and_then(|p| p.metadata.name)
        .ok_or_else(|| bench_error(format!("Job {name} has no pod")))?;
    let log = pods.logs(&pod, &LogParams::default()).await?;
    let elapsed = started.elapsed();
    jobs.delete(name, &DeleteParams::background()).await?;
    if log != EXPECTED {
        return Err(bench_error(format!("Job {name} printed {log:?}")));
    }
    Ok(elapsed)
}

/// As locked down as a sandbox pod must be to run in sandrun's namespaces
/// (Pod Security `restricted`), with nothing else of sandrun's.
pub(crate) fn baseline_job(name: &str, image: &str, runtime: &str) -> serde_json::Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"sandrun.dev/bench": "baseline"}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"sandrun.dev/bench": "baseline"}},
                "spec": {
                    "restartPolicy": "Never",
                    "runtimeClassName": runtime,
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "securityContext": {
                        "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"}
                    },
                    "containers": [{
                        "name": "run",
                        "image": image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["python3", "-c", PROGRAM],
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]}
                        },
                        "resources": {"limits": {"memory": "256Mi"}}
                    }]
                }
            }
        }
    })
}
