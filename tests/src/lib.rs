//! Helpers for the end-to-end tests, which run against the real local
//! cluster (`cluster/up.sh`) with the operator running (`make test` starts
//! both). Each test gets its own namespace; on failure the namespace's
//! objects, pods and events are printed before it is deleted.

pub mod faults;
pub mod gateway;
pub mod inspect;

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Client, ResourceExt};
use rand::distr::{Alphanumeric, SampleString};
use sandrun_crds::{Execution, ExecutionSpec, Language, Limits, Source, SourceFile};

/// Generous: a cold runsc sandbox on a busy two-core machine takes seconds.
pub const FINISH_WITHIN: Duration = Duration::from_secs(180);

pub struct TestNamespace {
    pub name: String,
    pub client: Client,
}

impl TestNamespace {
    pub async fn new(prefix: &str) -> Self {
        let client = Client::try_default().await.expect("KUBECONFIG must point at the local cluster (cluster/env.sh)");
        let suffix = Alphanumeric.sample_string(&mut rand::rng(), 6).to_lowercase();
        let name = format!("e2e-{prefix}-{suffix}");
        let ns = Namespace {
            metadata: kube::api::ObjectMeta { name: Some(name.clone()), ..Default::default() },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.expect("create test namespace");
        Self { name, client }
    }

    pub fn executions(&self) -> Api<Execution> {
        Api::namespaced(self.client.clone(), &self.name)
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Creates the Execution and waits until it reaches a terminal phase.
    pub async fn run(&self, name: &str, spec: ExecutionSpec) -> Execution {
        let api = self.executions();
        api.create(&PostParams::default(), &Execution::new(name, spec)).await.expect("create Execution");
        self.wait_finished(name).await
    }

    pub async fn wait_finished(&self, name: &str) -> Execution {
        let finished = |e: Option<&Execution>| e.and_then(|e| e.status.as_ref()).is_some_and(|s| s.is_terminal());
        match tokio::time::timeout(FINISH_WITHIN, await_condition(self.executions(), name, finished)).await {
            Ok(Ok(Some(execution))) => execution,
            Ok(Ok(None)) => panic!("Execution {name} was deleted while waiting"),
            Ok(Err(e)) => panic!("watching Execution {name}: {e}"),
            Err(_) => panic!("Execution {name} did not finish within {FINISH_WITHIN:?}; is the operator running?"),
        }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            dump(&self.name);
        }
        // Not waiting: namespace deletion runs on while other tests go on.
        let _ = Command::new("kubectl").args(["delete", "namespace", &self.name, "--wait=false"]).output();
    }
}

/// Prints what a person debugging a failed test would look at first.
fn dump(namespace: &str) {
    eprintln!("==== state of namespace {namespace} ====");
    for args in [
        vec!["get", "executions,jobs,pods,configmaps,networkpolicies", "-o", "wide"],
        vec!["get", "executions", "-o", "yaml"],
        vec!["describe", "pods"],
        vec!["get", "events", "--sort-by=.lastTimestamp"],
    ] {
        match Command::new("kubectl").args(&args).args(["-n", namespace]).output() {
            Ok(out) => {
                eprintln!("---- kubectl {} ----", args.join(" "));
                eprintln!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            }
            Err(e) => eprintln!("could not run kubectl to dump state: {e}"),
        }
    }
}

/// Runs kubectl (KUBECONFIG from cluster/env.sh) and returns its trimmed
/// stdout; panics with its stderr when it fails.
pub fn kubectl(args: &[&str]) -> String {
    let out = Command::new("kubectl").args(args).output().expect("run kubectl");
    assert!(out.status.success(), "kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A one-file program in `language`.
pub fn program(language: Language, file: &str, code: &str) -> ExecutionSpec {
    ExecutionSpec {
        language: Some(language),
        source: Some(Source { files: vec![SourceFile { path: file.into(), content: code.into() }], entry: None }),
        ..Default::default()
    }
}

pub fn python(code: &str) -> ExecutionSpec {
    program(Language::Python, "main.py", code)
}

pub fn with_limits(mut spec: ExecutionSpec, limits: Limits) -> ExecutionSpec {
    spec.limits = limits;
    spec
}

pub fn status_of(execution: &Execution) -> sandrun_crds::ExecutionStatus {
    execution.status.clone().unwrap_or_else(|| panic!("{} has no status", execution.name_any()))
}

/// A binary of this workspace, built into the same target dir as the test
/// (`hack/up.sh` builds them all).
pub fn built_binary(name: &str) -> std::path::PathBuf {
    let test = std::env::current_exe().expect("the test's own path");
    test.ancestors()
        .skip(1)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("no `{name}` binary above {}; run hack/up.sh", test.display()))
}

/// Prints a Markdown table, columns padded to their widest cell.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("| {} |", padded.join(" | "));
    };
    line(header.to_vec());
    println!("|{}|", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|"));
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
