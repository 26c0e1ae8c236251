//! The group lab's assigner, on a port of its own (`--assigner-listen`):
//! every connection is answered at once, without reading anything, with
//! `{"address":…,"port":…}` of a coordinator picked at random among the
//! groups that have one, and closed, as the lab's assigner does. Its
//! internal clients then `JOIN` that coordinator, a node of ours.
//!
//! It reads nothing, so nothing a client sends can reach the store; what
//! it costs is bounded by [`MAX_AT_ONCE`] answers in flight, each within
//! the write deadline.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{timeout, Duration, Instant};
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::backend::Backend;
use crate::protocol::CoordinatorAddr;
use crate::store::Store;

/// Answers being written at once; past it, a connection is closed unanswered.
pub const MAX_AT_ONCE: usize = 1024;

/// Answers every connection `listener` accepts, until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    backend: Backend,
    groups: u32,
    write_timeout: Duration,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(MAX_AT_ONCE));
    loop {
        let Ok((stream, peer)) = listener.accept().await else { continue };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!(%peer, "assigner busy: closed a connection unanswered");
            continue;
        };
        let coordinator = pick(backend.store(), groups, backend.now());
        tracker.spawn(async move {
            let _permit = permit;
            match coordinator {
                Some(coordinator) => answer(stream, &coordinator, write_timeout).await,
                None => debug!(%peer, "no group has a coordinator: closed the assigner's connection unanswered"),
            }
        });
    }
}

/// A coordinator of one of the `groups`, at random among those that have one.
pub fn pick(store: &Store, groups: u32, now: Instant) -> Option<CoordinatorAddr> {
    let coordinators: Vec<CoordinatorAddr> =
        (1..=groups).filter_map(|group| Some(store.group(group, now).ok()?.first()?.addr().into())).collect();
    (!coordinators.is_empty()).then(|| coordinators[fastrand::usize(..coordinators.len())].clone())
}

async fn answer(mut stream: TcpStream, coordinator: &CoordinatorAddr, write_timeout: Duration) {
    let bytes = serde_json::to_vec(coordinator).expect("an address serializes");
    let written = timeout(write_timeout, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    });
    if !matches!(written.await, Ok(Ok(()))) {
        debug!("the assigner's answer was not taken in time");
    }
}
