//! Connection threads: each connection is served start to finish on one thread running a
//! single-threaded runtime, connections spread round-robin over the threads.
//!
//! Why not Tokio's work-stealing runtime: with it, every request that wakes an idle worker also
//! wakes a second one to look for work to steal, so a lone request/reply exchange costs two
//! thread wake-ups instead of one. Pinning a connection to a thread keeps its reader, handlers
//! and writer on the same core, while many connections still use every core.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Where connections run: on threads of their own, or (with none) on the runtime that started
/// the server.
pub(crate) struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    stop: CancellationToken,
}

impl Workers {
    /// No threads of our own: connections run on the caller's runtime.
    pub(crate) fn caller() -> Workers {
        Workers {
            handles: Vec::new(),
            next: AtomicUsize::new(0),
            stop: CancellationToken::new(),
        }
    }

    /// Starts `count` threads (at least one), each running a single-threaded runtime until
    /// [`Workers::stop`].
    pub(crate) async fn start(count: usize) -> io::Result<Workers> {
        let stop = CancellationToken::new();
        // Threads already started stop again if a later one fails.
        let stop_on_error = stop.clone().drop_guard();
        let mut handles = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("pixl-ipc-worker-{index}"))
                .spawn(move || {
                    // Built on its own thread, so that a failure anywhere here never drops a
                    // runtime inside the caller's async context.
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(err) => {
                            let _ = ready_tx.send(Err(err));
                            return;
                        }
                    };
                    if ready_tx.send(Ok(runtime.handle().clone())).is_ok() {
                        runtime.block_on(stop.cancelled());
                    }
                })?;
            let handle = ready_rx
                .await
                .map_err(|_| io::Error::other("a worker thread exited while starting"))??;
            handles.push(handle);
        }
        stop_on_error.disarm();
        Ok(Workers {
            handles,
            next: AtomicUsize::new(0),
            stop,
        })
    }

    /// Runs `connection` on the next thread in turn (or on the caller's runtime), tracked by
    /// `tracker` so shutdown can wait for it.
    pub(crate) fn spawn<F>(&self, tracker: &TaskTracker, connection: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if self.handles.is_empty() {
            tracker.spawn(connection);
            return;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        tracker.spawn_on(connection, &self.handles[turn]);
    }

    /// Lets the threads finish; whatever still runs on them is dropped.
    pub(crate) fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop();
    }
}
