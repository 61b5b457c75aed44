//! Does what `decide` chose, step by step, against the API server. Nothing
//! here decides: each step is one request (or two, where the API server's
//! answer says the same write can never pass), an Event, or a count.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use sandrun_crds::{Execution, ExecutionStatus};
use serde::Serialize;
use tracing::{info, warn};

use super::decide::{Bind, Children, Notice, Step};
use super::Context;
use crate::error::{is_conflict, is_invalid, is_not_found, Error, Result};
use crate::labels::{CLAIMED_BY_KEY, EXECUTION_KEY, FIELD_MANAGER};
use crate::status;
use crate::store::{JobRecord, JobView};

/// What acting taught the reconcile, for it to decide again.
#[derive(Debug)]
pub enum Learned {
    /// The run's Job, as the API server returned it.
    Created(Arc<JobRecord>),
    /// The API server refused a child for good: "Job: why".
    Refused(String),
    /// The warm pod is this run's, and its program is on its way.
    Bound,
    /// Another run claimed the warm pod first (or it changed): try another.
    ClaimLost,
}

/// Performs `steps` in order until one fails (its error ends the
/// reconcile) or one feeds back what it learned.
pub async fn act(ctx: &Context, execution: &Execution, namespace: &str, steps: Vec<Step>) -> Result<Option<Learned>> {
    for step in steps {
        match step {
            Step::ForgetChildren => {
                ctx.stores.forget_children(namespace, &execution.name_any());
                if let Some(uid) = execution.uid() {
                    ctx.deliveries.forget(&uid);
                }
            }
            Step::Bind(bind) => return bind_warm(ctx, execution, namespace, *bind).await.map(Some),
            Step::Deliver(delivery) => {
                info!(pod = delivery.pod, "delivering the program to the run's warm pod again");
                ctx.deliveries.start(ObjectRef::from_obj(execution), delivery.pod, delivery.program, None);
            }
            Step::CreateChildren(children) => {
                return create_children(ctx, execution, namespace, &children).await.map(Some)
            }
            Step::ApplyInputs(config_map) => {
                warn!(
                    configmap = config_map.name_any(),
                    "inputs ConfigMap is gone before the pod started; applying it again"
                );
                apply::<_, ConfigMap>(ctx, namespace, config_map.as_ref()).await?;
            }
            Step::WriteStatus(status) => write_status(ctx, execution, namespace, &status).await?,
            Step::DeleteJob(job) => delete_job(ctx, namespace, &job).await?,
            Step::DeleteExecution => delete_execution(ctx, execution, namespace).await?,
            Step::Publish(notice) => publish(ctx, execution, notice),
            Step::CountFinished(labels) => {
                ctx.metrics.finished.get_or_create(&labels).inc();
            }
            Step::AdoptJob(job) => adopt_job(ctx, execution, namespace, &job).await?,
            Step::CountWarmFallback => {
                ctx.metrics.warm_fallbacks.inc();
            }
        }
    }
    Ok(None)
}

async fn create_children(
    ctx: &Context,
    execution: &Execution,
    namespace: &str,
    children: &Children,
) -> Result<Learned> {
    let Children { policy, config_map, job } = children;
    if let Some(policy) = policy {
        match apply::<_, NetworkPolicy>(ctx, namespace, policy).await {
            Ok(_) => {}
            Err(error) => return refused(error),
        }
    }
    // Both at once: the pod needs its inputs only when the kubelet mounts
    // them, long after both writes have landed.
    let applied = futures::join!(apply::<_, ConfigMap>(ctx, namespace, config_map), apply(ctx, namespace, job));
    let created: Result<JobView> = match applied {
        (Ok(_), Ok(job)) => Ok(job),
        (Err(error), Ok(job)) => {
            // No pod may wait for inputs that never come; the retry makes both.
            delete_job(ctx, namespace, &JobRecord::from(&job)).await?;
            Err(error)
        }
        (_, Err(error)) => Err(error),
    };
    match created {
        Ok(job) => {
            let note = format!("created Job {}", job.name_any());
            publish(ctx, execution, Notice { type_: EventType::Normal, reason: "JobCreated".into(), note });
            ctx.metrics.jobs_created.inc();
            Ok(Learned::Created(Arc::new(JobRecord::from(&job))))
        }
        Err(error) => refused(error),
    }
}

/// Claims the warm pod for this run, records the binding in the status,
/// starts the delivery, then makes the pod's Job the run's. Each write is a
/// compare-and-swap the API server enforces: the pod's on the version the
/// index saw (one run per pod), the status on the version this reconcile
/// read (one pod per run, also with two leaders for a moment). Past the
/// claim, a failure deletes the claimed Job: it never got a program.
async fn bind_warm(ctx: &Context, execution: &Execution, namespace: &str, bind: Bind) -> Result<Learned> {
    let started = std::time::Instant::now();
    let Bind { warm, status, delivery } = bind;
    let (name, uid) = (execution.name_any(), execution.uid().unwrap_or_default());
    let claim = serde_json::json!({
        "metadata": {
            "resourceVersion": warm.pod.resource_version,
            "labels": { EXECUTION_KEY: name, CLAIMED_BY_KEY: uid },
        }
    });
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    ctx.deliveries.binding(&uid);
    match pods.patch(&warm.pod.name, &PatchParams::default(), &Patch::Merge(&claim)).await {
        Ok(_) => {}
        Err(e) if is_conflict(&e) || is_not_found(&e) => {
            ctx.deliveries.forget(&uid);
            return Ok(Learned::ClaimLost);
        }
        Err(source) => {
            ctx.deliveries.forget(&uid);
            ctx.stores.warm.put_back(namespace, &warm.pool, warm.pod.clone());
            return Err(Error::Apply { kind: "Pod", name: warm.pod.name.clone(), source });
        }
    }
    let job = JobRecord { name: warm.pod.job_name.clone(), uid: Some(warm.pod.job_uid.clone()), ..Default::default() };
    // The session opens while the binding's status write is in flight; the
    // program goes only once it has landed.
    let (go, when_bound) = tokio::sync::oneshot::channel();
    ctx.deliveries.start(ObjectRef::from_obj(execution), warm.pod.name.clone(), delivery, Some(when_bound));
    if let Err(error) = write_status(ctx, execution, namespace, &status).await {
        drop(go);
        delete_job(ctx, namespace, &job).await?;
        ctx.deliveries.forget(&uid);
        return Err(error);
    }
    let _ = go.send(());
    ctx.metrics.warm_bind_seconds.observe(started.elapsed().as_secs_f64());
    let note = format!("bound to warm pod {} of pool {}", warm.pod.name, warm.pool);
    publish(ctx, execution, Notice { type_: EventType::Normal, reason: "WarmStart".into(), note });
    // Off the critical path: the status already names this Job as the
    // run's, and a later reconcile adopts it if this does not.
    if let Err(error) = adopt_job(ctx, execution, namespace, &job).await {
        warn!(%error, "adopting the warm Job; a later reconcile will");
    }
    Ok(Learned::Bound)
}

/// Makes a claimed warm Job the run's: its labels, and the Execution as its
/// only owner, so it goes with the Execution and leaves the pool's count.
async fn adopt_job(ctx: &Context, execution: &Execution, namespace: &str, job: &JobRecord) -> Result<()> {
    let owner = execution.controller_owner_ref(&());
    let body = serde_json::json!({
        "metadata": {
            "labels": { EXECUTION_KEY: execution.name_any(), CLAIMED_BY_KEY: execution.uid() },
            "ownerReferences": owner.map(|owner| vec![owner]),
        }
    });
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    jobs.patch(&job.name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .map(|_| ())
        .map_err(|source| Error::Apply { kind: "Job", name: job.name.clone(), source })
}

/// An apply the API server refuses for good (invalid) is what this run
/// learns; any other error fails the reconcile, to be retried.
fn refused(error: Error) -> Result<Learned> {
    match error {
        Error::Apply { kind, source, .. } if is_invalid(&source) => {
            Ok(Learned::Refused(format!("{kind}: {}", api_message(&source))))
        }
        error => Err(error),
    }
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
    .map_err(|source| Error::WriteStatus { name, source })?;
    if execution.status.as_ref().map(|s| s.phase) != Some(status.phase) {
        info!(phase = status.phase.as_str(), reason = status.reason.as_deref().unwrap_or_default(), "phase changed");
    }
    Ok(())
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

/// Deletes this run's Job, and with a known uid never a successor that took
/// its name since (409: that one is not ours to delete).
async fn delete_job(ctx: &Context, namespace: &str, job: &JobRecord) -> Result<()> {
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    let this_one = Preconditions { uid: job.uid.clone(), resource_version: None };
    let params = DeleteParams { preconditions: Some(this_one), ..DeleteParams::background() };
    match jobs.delete(&job.name, &params).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
        Err(source) => Err(Error::Delete { kind: "Job", name: job.name.clone(), source }),
    }
}

/// Deletes the Execution (its TTL has passed): only this one, never a new
/// one that took its name since.
async fn delete_execution(ctx: &Context, execution: &Execution, namespace: &str) -> Result<()> {
    let api: Api<Execution> = Api::namespaced(ctx.client.clone(), namespace);
    let this_one = Preconditions { uid: execution.uid(), resource_version: None };
    let params = DeleteParams { preconditions: Some(this_one), ..DeleteParams::background() };
    match api.delete(&execution.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
        Err(source) => Err(Error::Delete { kind: "Execution", name: execution.name_any(), source }),
    }
}

fn publish(ctx: &Context, execution: &Execution, notice: Notice) {
    let Notice { type_, reason, note } = notice;
    let event = Event { type_, reason, note: Some(note), action: "Reconcile".to_owned(), secondary: None };
    ctx.events.publish(event, execution.object_ref(&()));
}

fn api_message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}
