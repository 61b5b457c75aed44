//! Keeps each SandboxPool at its size: gathers its Jobs and pods from two
//! small watches (only objects with the pool label), plans (pure, `plan`)
//! and acts: the namespace's deny-all policy before any pod, then Jobs made
//! or deleted, then the pool's status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use rand::Rng;
use sandrun_crds::SandboxPool;
use tracing::{debug, info, instrument, warn};

use super::plan::{plan, Member, PodState};
use super::profile::{warm_job, Profile};
use crate::config::OperatorConfig;
use crate::error::{is_conflict, is_not_found, Error, Result};
use crate::labels::{CLAIMED_BY_KEY, FIELD_MANAGER, POOL_KEY, PROFILE_KEY, RUN_CONTAINER};
use crate::objects::deny_all_network_policy;
use crate::store::records::JOB_UID_LABEL;
use crate::store::{JobView, PodView};

/// Look again this often while pods start, in case an event is missed.
const STARTING_RESYNC: Duration = Duration::from_secs(10);
const RESTING_RESYNC: Duration = Duration::from_secs(300);
const RETRY: Duration = Duration::from_secs(5);
/// The claim a pool puts on a pod it is about to delete.
const RETIRED: &str = "retired-by-pool";

pub struct PoolContext {
    pub client: Client,
    pub config: OperatorConfig,
    jobs: Store<JobView>,
    pods: Store<PodView>,
    /// Per pool (namespace, name): since when each of its Jobs was seen
    /// claimed, and claimed half-way.
    seen: Mutex<HashMap<(String, String), Seen>>,
}

/// Since when each of one pool's Jobs (by uid) was seen in a state.
#[derive(Default)]
struct Seen {
    claimed: HashMap<String, Instant>,
    /// The pod claimed, the Job not adopted.
    half_claimed: HashMap<String, Instant>,
}

/// How long `uid` has been in a state (`now` says whether it is), zero when
/// it is not.
fn seen_for(since: &mut HashMap<String, Instant>, uid: &str, now: bool) -> Duration {
    if !now {
        since.remove(uid);
        return Duration::ZERO;
    }
    since.entry(uid.to_owned()).or_insert_with(Instant::now).elapsed()
}

/// A pod left claimed with the pool's Job this long was abandoned.
const ABANDONED_AFTER: Duration = Duration::from_secs(60);

/// Runs the pool controller on `pools` (already reflected into `store`)
/// until `shutdown`.
pub async fn run(
    client: Client,
    config: OperatorConfig,
    namespace: Option<&str>,
    pools: impl futures::Stream<Item = std::result::Result<SandboxPool, watcher::Error>> + Send + 'static,
    store: Store<SandboxPool>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let of_pools = watcher::Config::default().labels(POOL_KEY);
    let (jobs, jobs_writer) = reflector::store();
    let (pods, pods_writer) = reflector::store();
    let job_events = watcher(crate::controller::api::<JobView>(&client, namespace), of_pools.clone())
        .default_backoff()
        .reflect(jobs_writer)
        .touched_objects();
    let pod_events = watcher(crate::controller::api::<PodView>(&client, namespace), of_pools)
        .default_backoff()
        .reflect(pods_writer)
        .touched_objects();
    let ctx = Arc::new(PoolContext { client, config, jobs, pods, seen: Mutex::default() });
    Controller::for_stream(pools, store)
        .watches_stream(job_events, |job: JobView| pool_of(&job.metadata))
        .watches_stream(pod_events, |pod: PodView| pool_of(&pod.metadata))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|outcome| async move {
            match outcome {
                Ok((object, _)) => debug!(%object, "pool reconciled"),
                Err(error @ controller::Error::ObjectNotFound(_)) => debug!(%error, "pool controller"),
                Err(error) => warn!(%error, "pool controller"),
            }
        })
        .await;
}

fn namespace_terminating(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 403 && status.message.contains("being terminated"))
}

fn pool_of(meta: &ObjectMeta) -> Option<ObjectRef<SandboxPool>> {
    Some(ObjectRef::new(meta.labels.as_ref()?.get(POOL_KEY)?).within(meta.namespace.as_deref()?))
}

fn in_pool(meta: &ObjectMeta, namespace: &str, pool: &str) -> bool {
    meta.namespace.as_deref() == Some(namespace)
        && meta.labels.as_ref().and_then(|l| l.get(POOL_KEY)).map(String::as_str) == Some(pool)
}

fn error_policy(pool: Arc<SandboxPool>, error: &Error, _ctx: Arc<PoolContext>) -> Action {
    warn!(pool = pool.name_any(), %error, "pool reconcile failed; retrying");
    Action::requeue(RETRY)
}

#[instrument(skip_all, fields(namespace = pool.namespace().unwrap_or_default(), pool = pool.name_any()))]
async fn reconcile(pool: Arc<SandboxPool>, ctx: Arc<PoolContext>) -> Result<Action> {
    let namespace = pool.namespace().ok_or(Error::NoNamespace)?;
    if pool.metadata.deletion_timestamp.is_some() {
        // Its unclaimed Jobs go with it (owner references).
        if let Ok(mut seen) = ctx.seen.lock() {
            seen.remove(&(namespace, pool.name_any()));
        }
        return Ok(Action::await_change());
    }
    let profile = Profile::of(&pool.spec, &ctx.config).map_err(|e| e.to_string());
    let digest = profile.as_ref().map(Profile::digest);
    let members = members(&ctx, &namespace, &pool.name_any());
    let refill_delay = Duration::from_millis(ctx.config.pool_refill_delay_millis);
    let mut next = plan(pool.spec.size, digest.as_deref().map_err(|e| e.as_str()), &members, refill_delay);
    next.status.observed_generation = pool.metadata.generation;

    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    for (name, uid) in &next.delete {
        if !retire_pod(&ctx, &namespace, uid).await? {
            // A run claimed the pod first: it is the run's now.
            continue;
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
            ..DeleteParams::background()
        };
        match jobs.delete(name, &params).await {
            Ok(_) => info!(job = name, "deleted a warm Job the pool no longer keeps"),
            Err(e) if is_not_found(&e) || is_conflict(&e) => {}
            Err(source) => return Err(Error::Delete { kind: "Job", name: name.clone(), source }),
        }
    }
    if let (Ok(profile), true) = (&profile, next.create > 0) {
        // No sandbox pod before the namespace's deny-all policy.
        let policy = deny_all_network_policy(&namespace);
        let policies: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
        match policies
            .patch(&policy.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&policy))
            .await
        {
            Ok(_) => {}
            Err(e) if namespace_terminating(&e) => return Ok(Action::await_change()),
            Err(source) => return Err(Error::Apply { kind: "NetworkPolicy", name: policy.name_any(), source }),
        }
        for _ in 0..next.create {
            let suffix = format!("{:06x}", rand::rng().random::<u32>() & 0xff_ffff);
            let job = warm_job(&pool, profile, &ctx.config, &suffix);
            let name = job.name_any();
            match jobs.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&job)).await {
                Ok(_) => {}
                // The namespace is going, and the pool with it.
                Err(e) if namespace_terminating(&e) => return Ok(Action::await_change()),
                Err(source) => return Err(Error::Apply { kind: "Job", name, source }),
            }
        }
        info!(created = next.create, "started warm sandboxes");
    }
    if pool.status.as_ref() != Some(&next.status) {
        let pools: Api<SandboxPool> = Api::namespaced(ctx.client.clone(), &namespace);
        let body = serde_json::json!({ "status": next.status });
        pools
            .patch_status(&pool.name_any(), &PatchParams::default(), &Patch::Merge(&body))
            .await
            .map_err(|source| Error::WriteStatus { name: pool.name_any(), source })?;
    }
    let starting = next.create > 0 || next.status.starting > 0 || next.status.in_use > 0;
    let resync = if starting { STARTING_RESYNC } else { RESTING_RESYNC };
    Ok(Action::requeue(next.refill_in.map_or(resync, |due| due.min(resync))))
}

/// Before the pool deletes one of its Jobs, it claims the Job's waiting pod
/// itself, on the pod's version, as a run would: a run that claimed it in
/// the meantime keeps it (false), and no run can claim it after.
async fn retire_pod(ctx: &PoolContext, namespace: &str, job_uid: &str) -> Result<bool> {
    let pod = ctx.pods.state().into_iter().find(|pod| {
        pod.metadata.namespace.as_deref() == Some(namespace)
            && pod.labels().get(JOB_UID_LABEL).map(String::as_str) == Some(job_uid)
            && pod.metadata.deletion_timestamp.is_none()
    });
    let Some(pod) = pod else { return Ok(true) };
    if pod.labels().contains_key(CLAIMED_BY_KEY) {
        // Claimed by a run that was abandoned half-way, or retired already.
        return Ok(true);
    }
    let claim = serde_json::json!({
        "metadata": { "resourceVersion": pod.resource_version(), "labels": { CLAIMED_BY_KEY: RETIRED } }
    });
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    match pods.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&claim)).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(true),
        Err(e) if is_conflict(&e) => Ok(false),
        Err(source) => Err(Error::Apply { kind: "Pod", name: pod.name_any(), source }),
    }
}

/// The pool's Jobs, each with its pod's state, from the watches.
fn members(ctx: &PoolContext, namespace: &str, pool: &str) -> Vec<Member> {
    let pods: Vec<Arc<PodView>> =
        ctx.pods.state().into_iter().filter(|pod| in_pool(&pod.metadata, namespace, pool)).collect();
    let mut all_seen = ctx.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let seen = all_seen.entry((namespace.to_owned(), pool.to_owned())).or_default();
    let members: Vec<Member> = ctx
        .jobs
        .state()
        .into_iter()
        .filter(|job| in_pool(&job.metadata, namespace, pool))
        .map(|job| {
            let uid = job.uid().unwrap_or_default();
            let pod = pods
                .iter()
                .filter(|pod| pod.labels().get(JOB_UID_LABEL) == Some(&uid))
                .max_by_key(|pod| pod.metadata.creation_timestamp.as_ref().map(|t| t.0));
            let finished = job.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|conditions| {
                conditions.iter().any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            });
            let job_claimed = job.labels().contains_key(CLAIMED_BY_KEY);
            let pod_claimed = pod.is_some_and(|pod| pod.labels().contains_key(CLAIMED_BY_KEY));
            // A binding writes the pod's claim and then its Job within
            // milliseconds; half claimed this long, it was abandoned.
            let half_claimed = seen_for(&mut seen.half_claimed, &uid, pod_claimed && !job_claimed);
            Member {
                job_name: job.name_any(),
                profile: job.labels().get(PROFILE_KEY).cloned().unwrap_or_default(),
                claimed: job_claimed || pod_claimed,
                claimed_for: seen_for(&mut seen.claimed, &uid, job_claimed || pod_claimed),
                abandoned: half_claimed > ABANDONED_AFTER,
                job_uid: uid,
                finished,
                pod: pod.map_or(PodState::Starting, |pod| pod_state(pod)),
            }
        })
        .collect();
    // Jobs gone from the pool are forgotten.
    for since in [&mut seen.claimed, &mut seen.half_claimed] {
        since.retain(|uid, _| members.iter().any(|m| &m.job_uid == uid));
    }
    members
}

fn pod_state(pod: &PodView) -> PodState {
    let Some(status) = pod.status.as_ref() else { return PodState::Starting };
    if pod.metadata.deletion_timestamp.is_some() || matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return PodState::Ended;
    }
    let run = status.container_statuses.iter().flatten().find(|c| c.name == RUN_CONTAINER);
    match run.and_then(|c| c.state.as_ref()) {
        Some(state) if state.terminated.is_some() => PodState::Ended,
        Some(state) if state.running.is_some() => PodState::Ready,
        _ => PodState::Starting,
    }
}
