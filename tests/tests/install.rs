//! The chart's whole life on the real cluster: `helm uninstall` leaves
//! nothing of the release behind, `helm install` brings the operator and the
//! gateway up as pods that run Executions, and SIGKILL of the leading
//! operator hands over to the other replica with nothing lost.
//!
//! Ignored by default: it takes sandrun away from every other test, so
//! `hack/test.sh` runs it alone, after them (`--ignored`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use sandrun_crds::{Execution, Phase};
use sandrun_e2e::faults::{kill_leader, new_leader};
use sandrun_e2e::gateway::{service_addr, Gateway};
use sandrun_e2e::inspect::RELEASE_NAMESPACE;
use sandrun_e2e::{kubectl, python, status_of, TestNamespace};
use serde::Deserialize;

/// What `hack/install.sh` makes outside the chart, and so may outlive it.
const MADE_OUTSIDE_THE_CHART: &[&str] = &["secret/sandrun-gateway-keys"];

#[tokio::test]
#[ignore = "uninstalls sandrun: run alone by hack/test.sh"]
async fn helm_uninstall_leaves_nothing_then_install_runs_and_survives_its_leader() {
    uninstall_leaves_nothing().await;
    install_runs_executions_through_the_gateway_service().await;
    killing_the_leader_hands_over_and_loses_nothing().await;
}

/// One object of a rendered release: enough to ask the API server for it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Object {
    resource: String,
    namespace: Option<String>,
    name: String,
}

impl Object {
    fn still_there(&self) -> bool {
        let mut args = vec!["get", self.resource.as_str(), self.name.as_str(), "--ignore-not-found", "-o", "name"];
        if let Some(namespace) = &self.namespace {
            args.extend(["-n", namespace.as_str()]);
        }
        !kubectl(&args).is_empty()
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn script(args: &[&str]) {
    let status = Command::new(repo().join("hack/install.sh")).args(args).status().expect("run hack/install.sh");
    assert!(status.success(), "hack/install.sh {} failed", args.join(" "));
}

fn helm() -> String {
    let out = Command::new(repo().join("hack/tools.sh")).args(["path", "helm"]).output().expect("hack/tools.sh");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Every object in the release's manifest, as `kind.group` and name.
fn release_objects() -> Vec<Object> {
    let out = Command::new(helm())
        .args(["get", "manifest", "sandrun", "-n", RELEASE_NAMESPACE])
        .output()
        .expect("helm get manifest");
    assert!(out.status.success(), "no sandrun release: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut objects = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(document).expect("manifest YAML");
        let (Some(kind), Some(api_version)) = (value["kind"].as_str(), value["apiVersion"].as_str()) else { continue };
        let group = api_version.rsplit_once('/').map(|(group, _)| group).unwrap_or("");
        let resource = if group.is_empty() { kind.to_owned() } else { format!("{kind}.{group}") };
        let metadata = &value["metadata"];
        objects.push(Object {
            resource,
            namespace: metadata["namespace"].as_str().map(str::to_owned),
            name: metadata["name"].as_str().expect("object has a name").to_owned(),
        });
    }
    objects
}

async fn uninstall_leaves_nothing() {
    let client = Client::try_default().await.expect("cluster");
    // Something to clean up: a finished Execution with its Job, pod and ConfigMap.
    let demo: Api<Execution> = Api::namespaced(client.clone(), "sandrun-demo");
    let _ = demo.delete("before-uninstall", &Default::default()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    demo.create(&PostParams::default(), &Execution::new("before-uninstall", python("print('bye')")))
        .await
        .expect("create an Execution before uninstalling");
    wait_phase(&demo, "before-uninstall", Phase::Succeeded).await;

    let objects = release_objects();
    let kinds: BTreeSet<&str> = objects.iter().map(|o| o.resource.as_str()).collect();
    println!("release sandrun has {} objects: {}", objects.len(), kinds.into_iter().collect::<Vec<_>>().join(", "));
    assert!(objects.len() >= 20, "a suspiciously small release: {objects:?}");

    let started = Instant::now();
    script(&["uninstall"]);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let left: Vec<&Object> = objects.iter().filter(|o| o.still_there()).collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still there 180 s after helm uninstall: {left:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    println!("helm uninstall: all {} objects gone in {:.1} s", objects.len(), started.elapsed().as_secs_f64());

    // Nothing the release made at run time either: no pods, no Executions
    // (the CRD went with it), and in its namespace only what was made outside it.
    let pods = kubectl(&["get", "pods", "-A", "-l", "app.kubernetes.io/instance=sandrun", "-o", "name"]);
    assert!(pods.is_empty(), "pods of the release left: {pods}");
    for name in ["executions.sandrun.dev", "sandboxpools.sandrun.dev"] {
        let crd = kubectl(&["get", "crd", name, "--ignore-not-found", "-o", "name"]);
        assert!(crd.is_empty(), "the CRD {name} is left although the local values say crds.keep=false");
    }
    let remaining = kubectl(&[
        "get",
        "all,configmaps,secrets,serviceaccounts,roles,rolebindings,leases,networkpolicies,poddisruptionbudgets",
        "-n",
        RELEASE_NAMESPACE,
        "-o",
        "name",
    ]);
    let remaining: Vec<&str> = remaining
        .lines()
        // Every namespace has these two, made by Kubernetes itself.
        .filter(|line| *line != "configmap/kube-root-ca.crt" && *line != "serviceaccount/default")
        .collect();
    assert_eq!(remaining, MADE_OUTSIDE_THE_CHART, "left in {RELEASE_NAMESPACE} after uninstall");
    for cluster_scoped in ["clusterroles", "clusterrolebindings", "namespaces"] {
        let left = kubectl(&["get", cluster_scoped, "-l", "app.kubernetes.io/instance=sandrun", "-o", "name"]);
        assert!(left.is_empty(), "{cluster_scoped} of the release left: {left}");
    }
}

async fn install_runs_executions_through_the_gateway_service() {
    let started = Instant::now();
    script(&[]);
    println!("helm install to both Deployments available: {:.1} s", started.elapsed().as_secs_f64());
    let ready = kubectl(&[
        "-n",
        RELEASE_NAMESPACE,
        "get",
        "deployments",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.status.readyReplicas}/{.spec.replicas} {end}",
    ]);
    assert_eq!(ready, "sandrun-gateway=1/1 sandrun-operator=2/2", "Deployments after install");

    // The address changes with every install: ask the new Service.
    let gateway = Gateway::from_env().at(&service_addr());
    let key = gateway.key("demo");
    let response = gateway
        .http()
        .post(format!("{}/v1/executions?wait=120s", gateway.url))
        .bearer_auth(&key.token)
        .json(&serde_json::json!({"language": "python", "code": "print(6 * 7)"}))
        .send()
        .await
        .expect("POST through the gateway Service");
    assert_eq!(response.status(), 200, "a finished result within the wait");
    let view: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(view["stdout"], "42\n", "{view}");
    assert_eq!(view["exitCode"], 0, "{view}");
}

async fn killing_the_leader_hands_over_and_loses_nothing() {
    const RUNS: usize = 6;
    let ns = TestNamespace::new("failover").await;
    let executions = ns.executions();
    for i in 0..RUNS {
        let code = format!("import time\ntime.sleep(5)\nprint('run {i} done')");
        executions.create(&PostParams::default(), &Execution::new(&format!("run-{i}"), python(&code))).await.unwrap();
    }
    // In flight: every one has its Job, and so is past the point a lost
    // Execution would be stuck at.
    let jobs: Api<Job> = ns.api();
    let deadline = Instant::now() + Duration::from_secs(60);
    while jobs.list(&ListParams::default()).await.unwrap().items.len() < RUNS {
        assert!(Instant::now() < deadline, "the leader did not create {RUNS} Jobs within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let killed = Instant::now();
    let leader = kill_leader(&ns.client).await;
    println!("SIGKILL to the leader {leader} with {RUNS} Executions in flight");
    let (successor, took) = new_leader(&ns.client, &leader, Duration::from_secs(90)).await;
    println!("lease handed over to {successor} in {:.1} s", took.as_secs_f64());

    for i in 0..RUNS {
        let execution = ns.wait_finished(&format!("run-{i}")).await;
        let status = status_of(&execution);
        assert_eq!(status.phase, Phase::Succeeded, "run-{i}: {status:?}");
        assert_eq!(status.stdout.as_deref(), Some(format!("run {i} done\n").as_str()), "run-{i}");
    }
    println!("all {RUNS} in-flight Executions finished {:.1} s after the kill", killed.elapsed().as_secs_f64());

    // None duplicated: one Job each, owned by its Execution.
    let jobs = jobs.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(jobs.len(), RUNS, "Jobs: {:?}", jobs.iter().map(|j| j.name_any()).collect::<Vec<_>>());
    for job in &jobs {
        let owners: Vec<String> = job.owner_references().iter().map(|o| o.name.clone()).collect();
        assert_eq!(owners.len(), 1, "{} owners: {owners:?}", job.name_any());
    }
}

async fn wait_phase(api: &Api<Execution>, name: &str, phase: Phase) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(execution) = api.get(name).await {
            if let Some(status) = &execution.status {
                assert!(!status.phase.is_terminal() || status.phase == phase, "{name}: {status:?}");
                if status.phase == phase {
                    return;
                }
            }
        }
        assert!(Instant::now() < deadline, "{name} did not reach {phase:?} in 180 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
