//! Attach sessions opened ahead: one per warm pod as soon as its runner
//! waits, so binding a run costs one write on an open stream instead of a
//! new session through the API server and the kubelet.
//!
//! A session is the pod's first and only attach (`stdinOnce`): should it
//! close unused (the operator stops or loses its lease), the runner reads
//! end-of-file, runs nothing and ends; the pool starts another pod.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, AttachedProcess};
use kube::Client;
use tokio::io::{ReadHalf, SimplexStream, WriteHalf};
use tracing::debug;

use crate::labels::RUN_CONTAINER;

/// The most sessions held open at once; past it, pods are attached when bound.
const MAX_SESSIONS: usize = 2000;

/// Bytes each direction of a session buffers.
const STREAM_BUFFER: usize = 256 * 1024;

type Key = (String, String);

/// An open session to a waiting runner.
pub struct Session {
    /// Kept for the session's life: dropping it closes the streams.
    _process: AttachedProcess,
    pub stdin: WriteHalf<SimplexStream>,
    pub stdout: ReadHalf<SimplexStream>,
}

#[derive(Clone, Default)]
pub struct Sessions {
    open: Arc<Mutex<HashMap<Key, Session>>>,
    opening: Arc<Mutex<HashSet<Key>>>,
}

impl Sessions {
    /// Opens a session to `pod` in the background, unless one is open or
    /// opening.
    pub fn prepare(&self, client: &Client, namespace: &str, pod: &str) {
        let key = (namespace.to_owned(), pod.to_owned());
        let held = self.open.lock().map(|open| open.contains_key(&key) || open.len() >= MAX_SESSIONS).unwrap_or(true);
        if held || !self.opening.lock().map(|mut opening| opening.insert(key.clone())).unwrap_or(false) {
            return;
        }
        let (this, api) = (self.clone(), Api::<Pod>::namespaced(client.clone(), namespace));
        tokio::spawn(async move {
            match open(&api, &key.1).await {
                Ok(session) => {
                    if let Ok(mut open) = this.open.lock() {
                        open.insert(key.clone(), session);
                    }
                }
                // Attached when bound instead.
                Err(why) => debug!(pod = key.1, why, "no session opened ahead"),
            }
            if let Ok(mut opening) = this.opening.lock() {
                opening.remove(&key);
            }
        });
    }

    /// The session opened ahead to `pod`, if there is one; it is the
    /// caller's from now on.
    pub fn take(&self, namespace: &str, pod: &str) -> Option<Session> {
        self.open.lock().ok()?.remove(&(namespace.to_owned(), pod.to_owned()))
    }

    /// Closes the session of a pod that went.
    pub fn drop_pod(&self, namespace: &str, pod: &str) {
        let key = (namespace.to_owned(), pod.to_owned());
        if let Ok(mut open) = self.open.lock() {
            open.remove(&key);
        }
    }
}

/// Attaches to the run container's stdin and stdout.
pub async fn open(api: &Api<Pod>, pod: &str) -> Result<Session, String> {
    let mut params = AttachParams::default().container(RUN_CONTAINER).stdin(true).stdout(true).stderr(false);
    // kube's 1 KiB default would take a program in many small writes.
    params.max_stdin_buf_size = Some(STREAM_BUFFER);
    params.max_stdout_buf_size = Some(STREAM_BUFFER);
    let mut process = api.attach(pod, &params).await.map_err(|e| format!("attach to {pod}: {e}"))?;
    match (process.stdin(), process.stdout()) {
        (Some(stdin), Some(stdout)) => Ok(Session { _process: process, stdin, stdout }),
        _ => Err("the attach session has no stdin or stdout".to_owned()),
    }
}
