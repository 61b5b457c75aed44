//! Wires the reconciler to its watches. Every watch also fills a store
//! (see [`crate::store`]), so reconciles read memory, not the API server.

use std::future::Future;
use std::sync::Arc;

use futures::{future, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use sandrun_crds::{Execution, SandboxPool};
use tracing::{debug, warn};

use crate::labels::{MANAGED_BY, MANAGED_BY_KEY, ROLE_EXECUTION, ROLE_KEY};
use crate::reconcile::{error_policy, reconcile, Context};
use crate::store::records::{execution_of, slim_execution, strip_bookkeeping};
use crate::store::{claimable, triggers, JobView, PodView, Writers};

pub fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// What the controller feeds besides the reconciles: the stores' write
/// sides, and the warm deliveries' requests to reconcile a run.
pub struct Feeds {
    pub writers: Writers,
    pub delivered: tokio::sync::mpsc::UnboundedReceiver<ObjectRef<Execution>>,
}

/// Runs until `shutdown` resolves, then lets in-flight reconciles finish.
pub async fn run(
    ctx: Arc<Context>,
    feeds: Feeds,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let Feeds { writers, delivered } = feeds;
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    let managed = watcher::Config::default().labels(&format!("{MANAGED_BY_KEY}={MANAGED_BY}"));
    let execution_pods = watcher::Config::default().labels(&format!("{ROLE_KEY}={ROLE_EXECUTION}"));

    let (executions, executions_writer) = reflector::store();
    let execution_events = watcher(api::<Execution>(&client, ns), watcher::Config::default())
        .default_backoff()
        .modify(slim_execution)
        .reflect(executions_writer);
    let jobs = watcher(api::<JobView>(&client, ns), managed.clone())
        .default_backoff()
        .modify(|job| strip_bookkeeping(&mut job.metadata))
        .inspect(ctx.stores.jobs.feeder());
    // Only to notice an inputs ConfigMap deleted before its pod started, so
    // only names are kept (and only metadata is watched).
    let config_maps = watcher(api::<PartialObjectMeta<ConfigMap>>(&client, ns), managed.clone())
        .default_backoff()
        .inspect(ctx.stores.config_maps.feeder());
    // Pods are the Job's children, not ours: map them back by label to see
    // Running and waiting reasons as soon as the kubelet reports them.
    let pods = watcher(api::<PodView>(&client, ns), execution_pods)
        .default_backoff()
        .modify(|pod| strip_bookkeeping(&mut pod.metadata))
        .inspect(ctx.stores.pods.feeder())
        .inspect(ctx.stores.warm.feeder())
        .inspect(open_sessions_ahead(&ctx));
    // One per namespace, so the operator applies it only when missing or changed.
    let policies = watcher(api::<NetworkPolicy>(&client, ns), managed)
        .default_backoff()
        .reflect(writers.policies)
        .for_each(|_| future::ready(()));

    // Pools: one watch, reflected into the store reconciles pick pools from,
    // drives the pool controller.
    let pools = watcher(api::<SandboxPool>(&client, ns), watcher::Config::default())
        .default_backoff()
        .reflect(writers.pools)
        .touched_objects();
    let (stop_pools, pools_stopped) = tokio::sync::oneshot::channel::<()>();
    let pool_controller = crate::pool::controller::run(
        client.clone(),
        ctx.config.clone(),
        ns,
        pools,
        ctx.stores.pools.clone(),
        async move {
            let _ = pools_stopped.await;
        },
    );

    let controller = Controller::for_stream(triggers(execution_events), executions)
        .owns_stream(triggers(jobs))
        .owns_stream(triggers(config_maps))
        .watches_stream(triggers(pods), |pod: PodView| {
            let name = execution_of(&pod)?.clone();
            Some(ObjectRef::<Execution>::new(&name).within(&pod.namespace()?))
        })
        .reconcile_on(tokio_stream_of(delivered))
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|outcome| async move {
            match outcome {
                Ok((object, action)) => debug!(%object, ?action, "reconciled"),
                // A child's event after its Execution was deleted: nothing to do.
                Err(error @ controller::Error::ObjectNotFound(_)) => debug!(%error, "controller"),
                Err(error) => warn!(%error, "controller"),
            }
        });
    // The policy watch has no end of its own; the controller's end is ours,
    // and the pool controller's.
    tokio::pin!(pool_controller);
    tokio::select! {
        () = controller => {}
        () = policies => {}
        () = &mut pool_controller => {}
    }
    let _ = stop_pools.send(());
    pool_controller.await;
}

/// Opens a session ahead to each warm pod as its runner starts waiting,
/// and lets a gone pod's session go.
fn open_sessions_ahead(ctx: &Context) -> impl Fn(&Result<watcher::Event<PodView>, watcher::Error>) {
    let (client, sessions) = (ctx.client.clone(), ctx.deliveries.sessions.clone());
    move |event| match event {
        Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
            if let (Some(namespace), Some(_)) = (pod.namespace(), claimable(pod)) {
                sessions.prepare(&client, &namespace, &pod.name_any());
            }
        }
        Ok(watcher::Event::Delete(pod)) => {
            if let Some(namespace) = pod.namespace() {
                sessions.drop_pod(&namespace, &pod.name_any());
            }
        }
        _ => {}
    }
}

fn tokio_stream_of<T: Send + 'static>(
    mut receiver: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}
