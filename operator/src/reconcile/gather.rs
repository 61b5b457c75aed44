//! Reads what a decision about one Execution needs: from the stores, and
//! from the API server only where a store cannot answer (a Job this
//! operator made that its watch has not brought yet, an inputs ConfigMap
//! that may be gone, the log of a frame too large for the termination
//! message). Reads nothing of the children of a run that has finished.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, LogParams};
use kube::ResourceExt;
use sandrun_crds::{Execution, StartMode};
use sandrun_runner::parse_frame;

use super::decide::{is_ours, must_check_inputs, needs, Facts, Needs, Warm};
use super::Context;
use crate::error::{is_invalid, is_not_found, Error, Result};
use crate::labels::{child_name, inputs_name, NETWORK_POLICY_NAME, RUN_CONTAINER};
use crate::metrics::SourceLabels;
use crate::pool::Profile;
use crate::status::{self, Frame};
use crate::store::{JobRecord, JobSlot, JobView, PodRecord};
use crate::validate;

/// Enough for two 256 KiB streams even if every byte needed a JSON escape.
const MAX_LOG_BYTES: i64 = 8 * 1024 * 1024;
/// A first list of ten thousand pods takes seconds, not this.
const STORES_READY_WITHIN: Duration = Duration::from_secs(30);

pub async fn gather<'a>(execution: &'a Execution, ctx: &Context) -> Result<Facts<'a>> {
    let namespace = execution.namespace().ok_or(Error::NoNamespace)?;
    let needs = needs(execution, &ctx.config);
    if needs == Needs::Nothing {
        return Ok(Facts::of(execution, namespace, Time(Timestamp::now())));
    }
    // An object missing from a store that has not listed yet proves nothing.
    ctx.stores.wait_until_ready(STORES_READY_WITHIN).await?;
    let mut facts = Facts::of(execution, namespace, Time(Timestamp::now()));
    let name = execution.name_any();
    let status = execution.status.clone().unwrap_or_default();
    // The run's Job: the one its status names (a warm pod's), else the one
    // named for it. A warm Job left in the slot after a fall back to a
    // cold start is not this run's any more.
    let job_name = status.job_name.clone().unwrap_or_else(|| child_name(&name));
    let uid = execution.uid();
    let fell_back = status.start_mode == Some(StartMode::Cold);
    facts.job = ctx.stores.job(&facts.namespace, &name).filter(|slot| match slot {
        // A warm Job this run claimed is its Job even when the status read
        // is from before the binding.
        JobSlot::Held(job) => job.name == job_name || (!fell_back && uid.is_some() && job.claimed_by == uid),
        JobSlot::Forgotten => true,
    });
    if needs == Needs::StoredJob {
        // A cancel deletes by name what the store does not hold.
        return Ok(facts);
    }
    if facts.job.is_none() && status.job_name.is_some() {
        // The Job this operator made may not have come back through the
        // watch yet; ask before concluding someone deleted it.
        facts.job = get_job(ctx, &facts.namespace, &job_name).await?;
    }
    facts.policy = ctx.stores.policy(&facts.namespace, NETWORK_POLICY_NAME);
    facts.delivery = uid.as_deref().and_then(|uid| ctx.deliveries.state(uid));
    if facts.job.is_none() && status.job_name.is_none() && status.start_mode.is_none() && facts.delivery.is_none() {
        facts.warm = take_warm(ctx, execution, &facts.namespace);
    }
    observe_job(ctx, &mut facts).await?;
    Ok(facts)
}

/// A warm pod for a new run, taken out of the index, from the first pool
/// in its namespace that it fits. Counted as a hit or, when a pool fits
/// but has no pod free, a miss; a run that fits no pool is neither.
pub fn take_warm(ctx: &Context, execution: &Execution, namespace: &str) -> Option<Warm> {
    let program = validate::program(&execution.spec, &ctx.config).ok()?;
    let mut fitted = false;
    for pool in ctx.stores.pools.state() {
        if pool.namespace().as_deref() != Some(namespace) || pool.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Ok(profile) = Profile::of(&pool.spec, &ctx.config) else { continue };
        if !profile.fits(&program, &execution.spec) {
            continue;
        }
        fitted = true;
        if let Some(pod) = ctx.stores.warm.take(namespace, &pool.name_any(), &profile.digest()) {
            ctx.metrics.warm_hits.inc();
            return Some(Warm { pool: pool.name_any(), pod });
        }
    }
    if fitted {
        ctx.metrics.warm_misses.inc();
    }
    None
}

/// The newest pod of the run's own Job, whether it still has to mount its
/// inputs, and its frame once the runner has exited cleanly. Also after
/// this reconcile made the Job: a Job applied again may have pods already.
pub async fn observe_job(ctx: &Context, facts: &mut Facts<'_>) -> Result<()> {
    let (execution, namespace) = (facts.execution, facts.namespace.clone());
    // Pods of a Job in the way are not this run's.
    let Some(JobSlot::Held(job)) = facts.job.as_ref().filter(|slot| is_ours(slot, execution)) else {
        return Ok(());
    };
    facts.pod = ctx.stores.newest_pod(&namespace, &execution.name_any(), job);
    if must_check_inputs(execution, facts.job.as_ref(), facts.pod.as_deref()) {
        facts.inputs_missing = inputs_missing(ctx, &namespace, execution).await?;
    }
    if let Some(pod) = facts.pod.as_deref().filter(|pod| status::runner_exited_cleanly(pod)) {
        facts.frame = Some(read_frame(ctx, &namespace, pod).await?);
    }
    Ok(())
}

async fn get_job(ctx: &Context, namespace: &str, name: &str) -> Result<Option<JobSlot>> {
    let job = Api::<JobView>::namespaced(ctx.client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|source| Error::Read { kind: "Job", name: name.to_owned(), source })?;
    Ok(job.map(|job| JobSlot::Held(JobRecord::from(&job).into())))
}

/// Whether the inputs ConfigMap is gone. The store may lag the apply that
/// made it: only the API server can say it is really gone.
async fn inputs_missing(ctx: &Context, namespace: &str, execution: &Execution) -> Result<bool> {
    let name = inputs_name(&execution.name_any(), execution.uid().as_deref());
    if ctx.stores.config_map_exists(namespace, &name) {
        return Ok(false);
    }
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let found = api.get_opt(&name).await.map_err(|source| Error::Read { kind: "ConfigMap", name, source })?;
    Ok(found.is_none())
}

async fn read_frame(ctx: &Context, namespace: &str, pod: &PodRecord) -> Result<Frame> {
    if let Some(result) = status::frame_in_message(pod) {
        ctx.metrics.results_read.get_or_create(&SourceLabels { source: "termination-message" }).inc();
        return Ok(Frame::Parsed(result));
    }
    ctx.metrics.results_read.get_or_create(&SourceLabels { source: "log" }).inc();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let params =
        LogParams { container: Some(RUN_CONTAINER.to_owned()), limit_bytes: Some(MAX_LOG_BYTES), ..Default::default() };
    match pods.logs(&pod.name, &params).await {
        Ok(log) => Ok(match parse_frame(&log) {
            Some(Ok(result)) => Frame::Parsed(result),
            Some(Err(e)) => Frame::Unreadable(e.to_string()),
            None => Frame::Missing,
        }),
        // 400: the kubelet has no log left to give (the container is gone,
        // as after an eviction); waiting will not bring it back.
        Err(e) if is_not_found(&e) || is_invalid(&e) => Ok(Frame::Missing),
        Err(source) => Err(Error::Read { kind: "pod log", name: pod.name.clone(), source }),
    }
}
