//! A graceful shutdown as open sockets see it. The HTTP server's own
//! graceful shutdown does not reach them: an upgraded connection has left
//! the server, which would stop without a word to its clients. Sessions
//! watch this signal instead, close with 1001 (going away), and the server
//! waits for them before it stops.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TrackedFuture;
use tokio_util::task::TaskTracker;

#[derive(Default)]
pub struct Shutdown {
    begun: CancellationToken,
    sessions: TaskTracker,
}

impl Shutdown {
    /// Tells every session, open or still to come, to close.
    pub fn begin(&self) {
        self.begun.cancel();
    }

    /// Ready once the shutdown has begun.
    pub async fn begun(&self) {
        self.begun.cancelled().await;
    }

    /// A session to wait for before the server stops.
    pub fn track<F: Future>(&self, session: F) -> TrackedFuture<F> {
        self.sessions.track_future(session)
    }

    /// Waits until every session has ended, or `within` has passed.
    pub async fn sessions_ended(&self, within: Duration) {
        self.sessions.close();
        let _ = tokio::time::timeout(within, self.sessions.wait()).await;
    }
}
