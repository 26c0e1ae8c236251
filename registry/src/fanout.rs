//! The thread that watches run on. A change goes to every watcher at once:
//! with thousands of them that is a burst of work per change, and on the
//! runtime that answers requests every registration, heartbeat and new
//! connection would queue behind it (8,192 watches from one stranger took
//! members' registrations from 1 ms to 88 ms). On a thread of its own, the
//! burst shares the processors with the requests instead.

use std::future::Future;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracing::warn;

/// A runtime on a thread of its own, which stops when this is dropped. What
/// it runs is tracked with the server's connections, so that the shutdown
/// waits for it too.
pub struct Fanout {
    handle: Handle,
    tracker: TaskTracker,
    stop: Option<oneshot::Sender<()>>,
}

impl Fanout {
    /// Starts the thread; when it cannot be, watches run on the current
    /// runtime, as everything else does.
    pub fn start(tracker: TaskTracker) -> Fanout {
        match Fanout::thread() {
            Ok((handle, stop)) => Fanout { handle, tracker, stop: Some(stop) },
            Err(error) => {
                warn!(%error, "watches share the request runtime: no thread of their own");
                Fanout { handle: Handle::current(), tracker, stop: None }
            }
        }
    }

    /// The runtime is made, run and dropped on its thread: a runtime may
    /// not be dropped where async code runs, as it would be here if the
    /// thread failed to start.
    fn thread() -> std::io::Result<(Handle, oneshot::Sender<()>)> {
        let (stop, stopped) = oneshot::channel::<()>();
        let (started, handle) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new().name("fanout".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(error) => return drop(started.send(Err(error))),
            };
            let _ = started.send(Ok(runtime.handle().clone()));
            // Dropping the runtime after it drops the watches still on it.
            runtime.block_on(async { stopped.await.ok() });
        })?;
        let handle = handle.recv().map_err(|_| std::io::Error::other("the fan-out thread ended at start"))??;
        Ok((handle, stop))
    }

    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(self.tracker.track_future(future))
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
