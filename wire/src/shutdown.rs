//! The signals that stop a service: SIGINT (Ctrl-C) and SIGTERM (`docker stop`).

use std::future::Future;
use std::io;

use tokio::signal::unix::{signal, SignalKind};

/// Installs the handlers now, so a failure shows at start-up, and returns a
/// future that completes with the name of the first signal received.
pub fn signals() -> io::Result<impl Future<Output = &'static str>> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    })
}
