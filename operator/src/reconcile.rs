//! The reconcile pipeline: observe → validate → build → apply → status.
//! Everything that decides is in the pure modules; this file only moves
//! objects between them and the API server.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, LogParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Client, Resource, ResourceExt};
use sandrun_crds::{Execution, ExecutionStatus, Phase};
use sandrun_runner::parse_frame;
use serde::Serialize;
use tracing::{info, instrument, warn};

use crate::children::Kept;
use crate::config::OperatorConfig;
use crate::error::{is_conflict, is_invalid, is_not_found, Error, Result};
use crate::events::EventQueue;
use crate::labels::{child_name, FIELD_MANAGER, RUN_CONTAINER};
use crate::metrics::{ErrorLabels, Metrics, PhaseLabels, SourceLabels};
use crate::objects;
use crate::status::{self, Frame, Observed};
use crate::stores::Stores;
use crate::validate;
use crate::views::{JobRecord, JobView, PodView};

/// Enough for two 256 KiB streams even if every byte needed a JSON escape.
const MAX_LOG_BYTES: i64 = 8 * 1024 * 1024;
/// Safety net for missed watch events while an Execution is in flight.
const IN_FLIGHT_RESYNC: Duration = Duration::from_secs(300);
const TRANSIENT_RETRY: Duration = Duration::from_secs(5);
/// After a status write lost to a newer version: the watch brings that
/// version within milliseconds.
const STALE_RETRY: Duration = Duration::from_millis(500);
/// A first list of ten thousand pods takes seconds, not this.
const STORES_READY_WITHIN: Duration = Duration::from_secs(30);

pub struct Context {
    pub client: Client,
    pub config: OperatorConfig,
    pub events: EventQueue,
    pub metrics: Metrics,
    pub stores: Stores,
}

#[instrument(skip_all, fields(namespace = execution.namespace().unwrap_or_default(), execution = execution.name_any()))]
pub async fn reconcile(execution: Arc<Execution>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciles.inc();
    let timer = std::time::Instant::now();
    let result = reconcile_execution(&execution, &ctx).await;
    ctx.metrics.reconcile_seconds.observe(timer.elapsed().as_secs_f64());
    result
}

pub fn error_policy(execution: Arc<Execution>, error: &Error, ctx: Arc<Context>) -> Action {
    if let Error::WriteStatus { source, .. } = error {
        if is_conflict(source) {
            // The copy this reconcile read was stale: look again at once,
            // from a store that has caught up.
            info!(execution = execution.name_any(), "status changed since it was read; reconciling again");
            ctx.metrics.failures.get_or_create(&ErrorLabels { error: "stale_status".to_owned() }).inc();
            return Action::requeue(STALE_RETRY);
        }
    }
    warn!(execution = execution.name_any(), %error, "reconcile failed; retrying");
    ctx.metrics.failures.get_or_create(&ErrorLabels { error: error.kind().to_owned() }).inc();
    Action::requeue(TRANSIENT_RETRY)
}

async fn reconcile_execution(execution: &Execution, ctx: &Context) -> Result<Action> {
    let namespace = execution.namespace().ok_or(Error::NoNamespace)?;
    if execution.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let previous = execution.status.clone().unwrap_or_default();
    if previous.is_terminal() {
        // The result is in the store's copy: no reconcile reads the run's
        // Job or pods again.
        ctx.stores.forget_children(&namespace, &execution.name_any());
        return expire(execution, ctx, &namespace).await;
    }
    // An object missing from a store that has not listed yet proves nothing.
    ctx.stores.wait_until_ready(STORES_READY_WITHIN).await?;
    let now = Time(Timestamp::now());
    let child = child_name(&execution.name_any());
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    if sandrun_crds::cancel_requested(execution) {
        return cancel(execution, ctx, &namespace, &jobs, &child, &now).await;
    }
    let program = match validate::program(&execution.spec, &ctx.config) {
        Ok(program) => program,
        Err(problem) => return reject(execution, ctx, &namespace, problem.to_string(), &now).await,
    };

    let mut job = match ctx.stores.job(&namespace, &execution.name_any()) {
        Some(Kept::Object(job)) => Some(job),
        Some(Kept::Forgotten) => {
            // Only a finished run's Job is forgotten, and this run is not.
            info!(job = child, "waiting for an earlier same-named run's Job to go away");
            return wait_bounded(execution, ctx, &namespace, &now).await;
        }
        // The Job this operator just made may not have come back through
        // the watch yet; ask before concluding someone deleted it.
        None if previous.job_name.is_some() => Api::<JobView>::namespaced(ctx.client.clone(), &namespace)
            .get_opt(&child)
            .await
            .map_err(|source| Error::Read { kind: "Job", name: child.clone(), source })?
            .map(|job| Arc::new(JobRecord::from(&job))),
        None => None,
    };
    if let Some(existing) = &job {
        if !owned_by(existing, execution) {
            // A same-named Execution's Job still being garbage-collected.
            info!(job = child, "waiting for a Job this Execution does not own to go away");
            return wait_bounded(execution, ctx, &namespace, &now).await;
        }
    } else if previous.job_name.is_none() {
        match create_children(execution, ctx, &namespace, &program).await {
            Ok(created) => job = Some(Arc::new(JobRecord::from(&created))),
            Err(Error::Apply { kind, source, .. }) if is_invalid(&source) => {
                let message = format!("the API server rejected the {kind}: {}", api_message(&source));
                return reject(execution, ctx, &namespace, message, &now).await;
            }
            Err(e) => return Err(e),
        }
        publish(ctx, execution, EventType::Normal, "JobCreated", format!("created Job {child}"));
        ctx.metrics.jobs_created.inc();
    }

    let pod = job.as_ref().and_then(|job| ctx.stores.newest_pod(&namespace, &execution.name_any(), job));
    if job.is_some() && previous.job_name.is_some() && status::awaits_inputs(pod.as_deref()) {
        restore_inputs(execution, ctx, &namespace).await?;
    }
    let frame = match &pod {
        Some(pod) if status::runner_exited_cleanly(pod) => Some(read_frame(ctx, &namespace, pod).await?),
        _ => None,
    };
    let observed =
        Observed { job: job.as_deref(), pod: pod.as_deref(), frame, job_was_created: previous.job_name.is_some() };
    let mut next = status::derive(execution, &observed, &now);
    if next.stdout.is_some() || next.stderr.is_some() {
        // Only a finished run carries output; size the spec just then.
        status::fit_to_object_limit(&mut next, spec_bytes(execution));
    }
    // How long a run in flight has before it is overdue.
    let left = if next.is_terminal() {
        None
    } else {
        let cfg = &ctx.config;
        match status::overdue(execution, &next, cfg.startup_allowance_seconds, cfg.result_grace_seconds, &now) {
            Ok(ended) => return end_run(execution, ctx, &namespace, job.as_deref(), ended).await,
            Err(left) => Some(left),
        }
    };
    if status::worth_writing(&previous, &next) {
        write_status(ctx, execution, &namespace, &next).await?;
        announce(ctx, execution, &previous, &next);
    }
    if let Some(left) = left {
        // Back exactly when the run would be overdue.
        return Ok(Action::requeue(left.min(IN_FLIGHT_RESYNC)));
    }
    if let Some(job) = job.filter(|_| status::leaves_stuck_pod(&next)) {
        // Stop the kubelet retrying an image that will never come.
        delete_job(&jobs, &job).await?;
    }
    expire(execution, ctx, &namespace).await
}

/// Stops the run (the Job goes, and its pod with it) and records why.
async fn cancel(
    execution: &Execution,
    ctx: &Context,
    namespace: &str,
    jobs: &Api<Job>,
    child: &str,
    now: &Time,
) -> Result<Action> {
    match ctx.stores.job(namespace, &execution.name_any()) {
        Some(Kept::Object(job)) if owned_by(&job, execution) => delete_job(jobs, &job).await?,
        // Not in the store yet: the Job has this run's name, and a Job of
        // an earlier same-named run would have been forgotten, not missing.
        Some(Kept::Object(_)) | Some(Kept::Forgotten) => {}
        None => delete_job(jobs, &JobRecord { name: child.to_owned(), ..Default::default() }).await?,
    }
    let next = status::cancelled(execution, now);
    write_status(ctx, execution, namespace, &next).await?;
    announce(ctx, execution, &execution.status.clone().unwrap_or_default(), &next);
    expire(execution, ctx, namespace).await
}

async fn create_children(
    execution: &Execution,
    ctx: &Context,
    namespace: &str,
    program: &validate::Program,
) -> Result<JobView> {
    let policy = objects::deny_all_network_policy(namespace);
    if !policy_in_place(&ctx.stores, namespace, &policy) {
        apply::<_, NetworkPolicy>(ctx, namespace, &policy).await?;
    }
    // Both at once: the pod needs its inputs only when the kubelet mounts
    // them, long after both writes have landed.
    let config_map = objects::config_map(execution, namespace);
    let job = objects::job(execution, namespace, program, &ctx.config);
    let applied = futures::join!(apply::<_, ConfigMap>(ctx, namespace, &config_map), apply(ctx, namespace, &job));
    match applied {
        (Ok(_), Ok(job)) => Ok(job),
        (Err(error), Ok(job)) => {
            // No pod may wait for inputs that never come; the retry makes both.
            delete_job(&Api::namespaced(ctx.client.clone(), namespace), &JobRecord::from(&job)).await?;
            Err(error)
        }
        (_, Err(error)) => Err(error),
    }
}

/// The namespace's deny-all policy exists as the operator would write it.
fn policy_in_place(stores: &Stores, namespace: &str, wanted: &NetworkPolicy) -> bool {
    let name = wanted.metadata.name.as_deref().unwrap_or_default();
    stores.policy(namespace, name).is_some_and(|existing| existing.spec == wanted.spec)
}

/// Puts back the inputs ConfigMap if someone deleted it before the pod
/// mounted it; otherwise the run would wait out its whole start-up allowance.
async fn restore_inputs(execution: &Execution, ctx: &Context, namespace: &str) -> Result<()> {
    let wanted = objects::config_map(execution, namespace);
    let name = wanted.name_any();
    if ctx.stores.config_map_exists(namespace, &name) {
        return Ok(());
    }
    // The store may lag the apply that made it: only the API server can say
    // it is really gone.
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    if api
        .get_opt(&name)
        .await
        .map_err(|source| Error::Read { kind: "ConfigMap", name: name.clone(), source })?
        .is_none()
    {
        warn!(configmap = name, "inputs ConfigMap is gone before the pod started; applying it again");
        apply::<_, ConfigMap>(ctx, namespace, &wanted).await?;
        publish(ctx, execution, EventType::Warning, "InputsRestored", format!("re-created ConfigMap {name}"));
    }
    Ok(())
}

/// Server-side applies `object`, reading the answer as `R`: the object's
/// own type, or a view of it when only a few fields are kept.
async fn apply<K, R>(ctx: &Context, namespace: &str, object: &K) -> Result<R>
where
    K: Resource + k8s_openapi::Resource + Serialize + std::fmt::Debug,
    R: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let api: Api<R> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object))
        .await
        .map_err(|source| Error::Apply { kind: K::KIND, name, source })
}

fn owned_by(job: &JobRecord, execution: &Execution) -> bool {
    execution.uid().is_some_and(|uid| job.owner_uids.contains(&uid))
}

async fn read_frame(ctx: &Context, namespace: &str, pod: &PodView) -> Result<Frame> {
    if let Some(result) = status::frame_in_message(pod) {
        ctx.metrics.results_read.get_or_create(&SourceLabels { source: "termination-message" }).inc();
        return Ok(Frame::Parsed(result));
    }
    ctx.metrics.results_read.get_or_create(&SourceLabels { source: "log" }).inc();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let params =
        LogParams { container: Some(RUN_CONTAINER.to_owned()), limit_bytes: Some(MAX_LOG_BYTES), ..Default::default() };
    match pods.logs(&pod.name_any(), &params).await {
        Ok(log) => Ok(match parse_frame(&log) {
            Some(Ok(result)) => Frame::Parsed(result),
            Some(Err(e)) => Frame::Unreadable(e.to_string()),
            None => Frame::Missing,
        }),
        // 400: the kubelet has no log left to give (the container is gone,
        // as after an eviction); waiting will not bring it back.
        Err(e) if is_not_found(&e) || is_invalid(&e) => Ok(Frame::Missing),
        Err(source) => Err(Error::Read { kind: "pod log", name: pod.name_any(), source }),
    }
}

fn spec_bytes(execution: &Execution) -> usize {
    serde_json::to_vec(&execution.spec).map(|v| v.len()).unwrap_or(0)
}

/// Writes the status through the status subresource, on the condition that
/// the Execution is still the one this reconcile read (its resourceVersion):
/// a write derived from a stale copy, such as a cancel racing a result that
/// just landed or a reconcile of a deleted and re-created Execution, gets a
/// 409 and the next reconcile looks again. A status the API server refuses
/// for good because of the program's output is written again without it.
async fn write_status(ctx: &Context, execution: &Execution, namespace: &str, status: &ExecutionStatus) -> Result<()> {
    let api: Api<Execution> = Api::namespaced(ctx.client.clone(), namespace);
    let name = execution.name_any();
    let send = |status: &ExecutionStatus| {
        let body = serde_json::json!({
            "apiVersion": "sandrun.dev/v1alpha1",
            "kind": "Execution",
            "metadata": { "resourceVersion": execution.resource_version() },
            "status": status,
        });
        let api = api.clone();
        let name = name.clone();
        async move {
            api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await.map(|_| ())
        }
    };
    match send(status).await {
        Err(e) if refused_for_good(&e) && (status.stdout.is_some() || status.stderr.is_some()) => {
            warn!(error = %e, "status refused with the program's output; writing it without");
            send(&status::without_output(status, &api_message(&e))).await
        }
        other => other,
    }
    .map_err(|source| Error::WriteStatus { name, source })
}

/// An answer that the same write will never get past: invalid (400, 422),
/// too large (413, or etcd's "request is too large", which comes back as a
/// 500). Conflicts, throttling and other server errors pass with time.
fn refused_for_good(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) => matches!(status.code, 400 | 413 | 422) || status.message.contains("too large"),
        _ => false,
    }
}

async fn reject(execution: &Execution, ctx: &Context, namespace: &str, message: String, now: &Time) -> Result<Action> {
    let next = status::invalid_spec(execution, message.clone(), now);
    write_status(ctx, execution, namespace, &next).await?;
    publish(ctx, execution, EventType::Warning, "InvalidSpec", message);
    count_finished(ctx, &next);
    // The spec is immutable: nothing will change this verdict.
    Ok(Action::await_change())
}

/// Events and metrics for a phase change.
fn announce(ctx: &Context, execution: &Execution, previous: &ExecutionStatus, next: &ExecutionStatus) {
    if previous.phase == next.phase {
        return;
    }
    let note = next.message.clone().unwrap_or_else(|| next.phase.as_str().to_owned());
    let reason = next.reason.clone().unwrap_or_else(|| next.phase.as_str().to_owned());
    let type_ = match next.phase {
        Phase::Failed | Phase::TimedOut | Phase::Cancelled => EventType::Warning,
        _ => EventType::Normal,
    };
    info!(phase = next.phase.as_str(), reason, "phase changed");
    publish(ctx, execution, type_, &reason, note);
    if next.is_terminal() {
        count_finished(ctx, next);
    }
}

fn count_finished(ctx: &Context, status: &ExecutionStatus) {
    let labels =
        PhaseLabels { phase: status.phase.as_str().to_owned(), reason: status.reason.clone().unwrap_or_default() };
    ctx.metrics.finished.get_or_create(&labels).inc();
}

fn publish(ctx: &Context, execution: &Execution, type_: EventType, reason: &str, note: String) {
    let event =
        Event { type_, reason: reason.to_owned(), note: Some(note), action: "Reconcile".to_owned(), secondary: None };
    ctx.events.publish(event, execution.object_ref(&()));
}

/// Deletes a finished Execution once its `ttlSecondsAfterFinished` has passed.
async fn expire(execution: &Execution, ctx: &Context, namespace: &str) -> Result<Action> {
    let (Some(ttl), Some(finished)) =
        (execution.spec.ttl_seconds_after_finished, execution.status.as_ref().and_then(|s| s.completion_time.as_ref()))
    else {
        return Ok(Action::await_change());
    };
    let due = finished.0.saturating_add(SignedDuration::from_secs(i64::from(ttl))).unwrap_or(finished.0);
    let left = Timestamp::now().duration_until(due);
    if left.is_positive() {
        return Ok(Action::requeue(left.unsigned_abs()));
    }
    let api: Api<Execution> = Api::namespaced(ctx.client.clone(), namespace);
    // Only this Execution, never a new one that took its name since.
    let this_one = Preconditions { uid: execution.uid(), resource_version: None };
    let params = DeleteParams { preconditions: Some(this_one), ..DeleteParams::background() };
    match api.delete(&execution.name_any(), &params).await {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(Action::await_change()),
        Err(source) => Err(Error::Delete { kind: "Execution", name: execution.name_any(), source }),
    }
}

/// Deletes this run's Job, and with a known uid never a successor that took
/// its name since (409: that one is not ours to delete).
async fn delete_job(jobs: &Api<Job>, job: &JobRecord) -> Result<()> {
    let this_one = Preconditions { uid: job.uid.clone(), resource_version: None };
    let params = DeleteParams { preconditions: Some(this_one), ..DeleteParams::background() };
    match jobs.delete(&job.name, &params).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
        Err(source) => Err(Error::Delete { kind: "Job", name: job.name.clone(), source }),
    }
}

/// Ends a run the operator gave up waiting for: its Job goes (and its pod
/// with it, once a kubelet acts on it) and the terminal status says why.
async fn end_run(
    execution: &Execution,
    ctx: &Context,
    namespace: &str,
    job: Option<&JobRecord>,
    ended: ExecutionStatus,
) -> Result<Action> {
    warn!(reason = ended.reason.as_deref().unwrap_or_default(), "run overdue; ending it");
    // The verdict first: written against the copy read, it cannot land on
    // a result that came in meanwhile (409), and then the Job must stay.
    write_status(ctx, execution, namespace, &ended).await?;
    announce(ctx, execution, &execution.status.clone().unwrap_or_default(), &ended);
    if let Some(job) = job.filter(|job| owned_by(job, execution)) {
        delete_job(&Api::namespaced(ctx.client.clone(), namespace), job).await?;
    }
    expire(execution, ctx, namespace).await
}

/// Waits for a Job in the way (not this run's) to go, but not past the
/// run's start bound.
async fn wait_bounded(execution: &Execution, ctx: &Context, namespace: &str, now: &Time) -> Result<Action> {
    let cfg = &ctx.config;
    let current = execution.status.clone().unwrap_or_default();
    match status::overdue(execution, &current, cfg.startup_allowance_seconds, cfg.result_grace_seconds, now) {
        Ok(ended) => end_run(execution, ctx, namespace, None, ended).await,
        Err(left) => Ok(Action::requeue(left.min(Duration::from_secs(2)))),
    }
}

fn api_message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}
