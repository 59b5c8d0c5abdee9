//! Tasks with a lifetime: everything the node runs besides its listeners
//! (sync with each peer, the feedback outbox, subscriptions' and streams'
//! pumps, handshakes, gauges, and the blocking work of calls) is one of
//! its [`Tasks`], so that stopping the node can wait for all of it.
//!
//! A node stops in two steps, each a cancellation token:
//!
//! 1. *stop* ([`Tasks::stop`]): background work ends at once (it would
//!    only start things the node is about to drop), and listeners stop
//!    accepting while calls in flight run on;
//! 2. *cut* ([`Tasks::cut`], at the end of the grace period): connections
//!    still open fail, and the work of their calls ends.
//!
//! Then [`Tasks::wait`] returns once every task has ended: a task's future
//! (and everything it holds, such as a database handle) is dropped before
//! the task counts as ended, so nothing a task held outlives the wait.
//! That is what lets the node's owner close the database right after the
//! node stopped, instead of hoping the last handle is gone by then.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tokio_util::task::TaskTracker;

/// The tasks of one node, and the two signals that end them (see the
/// module documentation). Clones share them.
#[derive(Clone, Debug, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    stopping: CancellationToken,
    cut: CancellationToken,
}

impl Tasks {
    /// No tasks yet. Tasks that nobody stops (a command running the
    /// services in-process) simply end with their runtime.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns background work: it runs until it returns or until
    /// [`Tasks::stop`], when it is dropped wherever it is waiting.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stopping = self.stopping.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = stopping.cancelled() => {}
                () = task => {}
            }
        });
    }

    /// Spawns work that belongs to a call in flight (a stream's pump): it
    /// may go on through the grace period, and is dropped at
    /// [`Tasks::cut`] at the latest.
    pub fn spawn_call<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cut = self.cut.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = cut.cancelled() => {}
                () = task => {}
            }
        });
    }

    /// Spawns work that must not be dropped half-way once begun (a request
    /// to an outside service and the record of its answer): neither stop
    /// nor cut interrupts it, and [`Tasks::wait`] waits for it. It must
    /// bound its own time (a request deadline).
    pub fn spawn_uninterrupted<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(task)
    }

    /// Runs `work` on the blocking pool as one of these tasks. It cannot
    /// be interrupted: [`Tasks::wait`] waits for it to return (store
    /// writes finish rather than being abandoned half-way).
    pub fn spawn_blocking<F, T>(&self, work: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.tracker.spawn_blocking(work)
    }

    /// Counts something that is not a task (a call's future, owned by
    /// the HTTP/2 server) as one until the token is dropped.
    pub fn token(&self) -> TaskTrackerToken {
        self.tracker.token()
    }

    /// Cancelled when the node begins to stop: background work ends.
    pub fn stopping(&self) -> &CancellationToken {
        &self.stopping
    }

    /// Cancelled when the grace period is over: connections and calls
    /// still open end.
    pub fn cutting(&self) -> &CancellationToken {
        &self.cut
    }

    /// The first step of stopping (see the module documentation).
    pub fn stop(&self) {
        self.stopping.cancel();
    }

    /// The second step of stopping; implies [`Tasks::stop`].
    pub fn cut(&self) {
        self.stopping.cancel();
        self.cut.cancel();
    }

    /// How many tasks are running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Whether no task is running.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Waits up to `limit` for every task to end (tasks spawned meanwhile
    /// included). `Err` carries how many were still running.
    pub async fn wait(&self, limit: Duration) -> Result<(), usize> {
        self.tracker.close();
        match tokio::time::timeout(limit, self.tracker.wait()).await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.tracker.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn wait_returns_after_every_task_dropped_what_it_held() {
        let tasks = Tasks::new();
        let held = Arc::new(());
        for _ in 0..8 {
            let (a, b, c) = (held.clone(), held.clone(), held.clone());
            tasks.spawn(async move {
                let _held = a;
                std::future::pending::<()>().await;
            });
            tasks.spawn_call(async move {
                let _held = b;
                std::future::pending::<()>().await;
            });
            tasks.spawn_blocking(move || {
                std::thread::sleep(Duration::from_millis(20));
                drop(c);
            });
        }
        tasks.stop();
        assert_eq!(tasks.wait(Duration::from_millis(200)).await, Err(8));
        tasks.cut();
        tasks.wait(Duration::from_secs(5)).await.unwrap();
        assert_eq!(Arc::strong_count(&held), 1);
    }
}
