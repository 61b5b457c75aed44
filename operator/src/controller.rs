//! Wires the reconciler to its watches.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use sandrun_crds::Execution;
use tracing::{debug, warn};

use crate::labels::{EXECUTION_KEY, MANAGED_BY, MANAGED_BY_KEY, ROLE_EXECUTION, ROLE_KEY};
use crate::reconcile::{error_policy, reconcile, Context};

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs until `shutdown` resolves, then lets in-flight reconciles finish.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    let managed = format!("{MANAGED_BY_KEY}={MANAGED_BY}");
    let execution_pods = format!("{ROLE_KEY}={ROLE_EXECUTION}");
    Controller::new(api::<Execution>(&client, ns), watcher::Config::default())
        .owns(api::<Job>(&client, ns), watcher::Config::default().labels(&managed))
        // Only to notice an inputs ConfigMap deleted before its pod started.
        .owns(api::<ConfigMap>(&client, ns), watcher::Config::default().labels(&managed))
        // Pods are the Job's children, not ours: map them back by label to
        // see Running and waiting reasons as soon as the kubelet reports them.
        .watches(api::<Pod>(&client, ns), watcher::Config::default().labels(&execution_pods), |pod: Pod| {
            let name = pod.labels().get(EXECUTION_KEY)?.clone();
            Some(ObjectRef::<Execution>::new(&name).within(&pod.namespace()?))
        })
        .with_config(controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|outcome| async move {
            match outcome {
                Ok((object, action)) => debug!(%object, ?action, "reconciled"),
                Err(error) => warn!(%error, "controller"),
            }
        })
        .await;
}
