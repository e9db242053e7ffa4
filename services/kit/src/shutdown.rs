//! One shutdown signal for a whole process: SIGTERM or Ctrl-C (or a test)
//! trips it; servers stop accepting, streams end with a resumable status,
//! and stores flush before the process exits.

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A cloneable shutdown signal, plus the tasks (stream followers) that must
/// finish before the process's stores can be closed.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires the signal.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// True once fired.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves when the signal fires.
    pub async fn wait(&self) {
        self.token.cancelled().await
    }

    /// Spawns a task that must end before [`drained`](Self::drained) returns;
    /// it should watch [`wait`](Self::wait) and stop promptly.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(task);
    }

    /// Fires the signal and waits until every task spawned through
    /// [`spawn`](Self::spawn) has ended.
    pub async fn drained(&self) {
        self.trigger();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Fires the signal on SIGTERM or Ctrl-C. Spawns a task; returns at once.
    pub fn trigger_on_signals(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received; draining");
            this.trigger();
        });
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
