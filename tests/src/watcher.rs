//! A watcher of a registry's replicas that records every change it is sent
//! with its revision, and every start: when its watch breaks it watches
//! again at the next replica after the last revision it saw, as a node
//! does, so that [`Seen::gaps`] can tell whether the replicas' histories
//! continued one another (contiguous revisions, none twice, none back).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use registry::client::{Client, RegistryAddr};
use registry::protocol::Since;
use registry::watch::{Change, WatchEvent, WatchStart};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::PATIENCE;

/// How long the watcher waits for a replica to answer, and before watching
/// again after a watch could not start.
const TIMEOUT: Duration = Duration::from_secs(2);
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// One start of the watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub replica: usize,
    pub start: WatchStart,
    /// The changes that follow come after this revision.
    pub revision: u64,
    /// Changes seen before it.
    pub after: usize,
}

/// What the watcher saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub starts: Vec<Start>,
    pub changes: Vec<WatchEvent>,
    /// Why each watch broke, or could not start.
    pub breaks: Vec<String>,
}

impl Seen {
    /// Where the revisions do not follow one another: the first start's,
    /// then one more per change, across every resumption, each of which
    /// must resume (not start over from a snapshot) where the last left off.
    pub fn gaps(&self) -> Vec<String> {
        let mut gaps = Vec::new();
        let Some(first) = self.starts.first() else { return gaps };
        let mut last = first.revision;
        let mut starts = self.starts[1..].iter().peekable();
        for (i, change) in self.changes.iter().enumerate() {
            while let Some(start) = starts.next_if(|start| start.after <= i) {
                gaps.extend(resumed(start, last));
            }
            if change.revision != last + 1 {
                gaps.push(format!("revision {} after {last} (change {i}: {:?})", change.revision, change.change));
            }
            last = change.revision;
        }
        gaps.extend(starts.filter_map(|start| resumed(start, last)));
        gaps
    }

    /// The changes that are departures.
    pub fn departures(&self) -> impl Iterator<Item = &WatchEvent> {
        self.changes.iter().filter(|change| matches!(change.change, Change::Left { .. }))
    }

    /// Whether it saw `name` join.
    pub fn joined(&self, name: &str) -> bool {
        self.changes.iter().any(|change| matches!(&change.change, Change::Joined { entry } if entry.name == name))
    }
}

/// What is wrong with `start`, a watch resumed after `last`.
fn resumed(start: &Start, last: u64) -> Option<String> {
    (start.start != WatchStart::Resumed || start.revision != last).then(|| {
        format!(
            "the watch at replica {} started {:?} at revision {}, after {last}",
            start.replica, start.start, start.revision
        )
    })
}

/// The watcher, running until dropped.
pub struct Watcher {
    seen: watch::Receiver<Seen>,
    task: JoinHandle<()>,
}

impl Watcher {
    /// Watches `replicas`, from the one at `first` on, from a snapshot.
    pub fn start(replicas: &[SocketAddr], first: usize) -> Watcher {
        let replicas: Vec<RegistryAddr> = replicas.iter().map(|addr| RegistryAddr::from(*addr)).collect();
        let (seen, seen_rx) = watch::channel(Seen::default());
        let task = tokio::spawn(follow(replicas, first, seen));
        Watcher { seen: seen_rx, task }
    }

    pub fn seen(&self) -> Seen {
        self.seen.borrow().clone()
    }

    /// Waits until what it saw satisfies `done`.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&Seen) -> bool) -> anyhow::Result<Seen> {
        let mut seen = self.seen.clone();
        let waited = tokio::time::timeout(PATIENCE, seen.wait_for(|seen| done(seen))).await;
        let seen = waited.with_context(|| format!("the watcher did not see {what} within {PATIENCE:?}"))??;
        Ok(seen.clone())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn follow(replicas: Vec<RegistryAddr>, mut at: usize, seen: watch::Sender<Seen>) {
    let mut since: Option<Since> = None;
    loop {
        let broke = match watch_at(&replicas[at], at, &mut since, &seen).await {
            Ok(never) => match never {},
            Err(error) => format!("at replica {at}: {}", wire::Chain(&*error)),
        };
        seen.send_modify(|seen| seen.breaks.push(broke));
        at = (at + 1) % replicas.len();
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// One watch at `replica`, recorded in `seen`, until it breaks.
async fn watch_at(
    replica: &RegistryAddr,
    at: usize,
    since: &mut Option<Since>,
    seen: &watch::Sender<Seen>,
) -> anyhow::Result<std::convert::Infallible> {
    let mut watch = Client::connect(replica, TIMEOUT).await?.watch(since.as_ref()).await?;
    let revision = watch.start.revision;
    let start = Start { replica: at, start: watch.start.start, revision, after: 0 };
    seen.send_modify(|seen| seen.starts.push(Start { after: seen.changes.len(), ..start }));
    *since = Some(Since { revision, epoch: Some(watch.start.epoch.clone()) });
    loop {
        let change = watch.next().await?;
        if let Some(since) = since.as_mut() {
            since.revision = change.revision;
        }
        seen.send_modify(|seen| seen.changes.push(change));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(starts: &[(WatchStart, u64, usize)], revisions: &[u64]) -> Seen {
        let starts = starts.iter().map(|&(start, revision, after)| Start { replica: 0, start, revision, after });
        let changes = revisions.iter().map(|&revision| WatchEvent { revision, change: Change::Progress });
        Seen { starts: starts.collect(), changes: changes.collect(), breaks: Vec::new() }
    }

    #[test]
    fn revisions_that_follow_one_another_across_resumptions_have_no_gaps() {
        let resumed = seen(&[(WatchStart::Snapshot, 4, 0), (WatchStart::Resumed, 6, 2)], &[5, 6, 7, 8]);
        assert_eq!(resumed.gaps(), Vec::<String>::new());
        let at_the_end = seen(&[(WatchStart::Snapshot, 4, 0), (WatchStart::Resumed, 6, 2)], &[5, 6]);
        assert_eq!(at_the_end.gaps(), Vec::<String>::new());
    }

    #[test]
    fn a_skipped_repeated_or_earlier_revision_and_a_resumption_elsewhere_are_gaps() {
        let skipped = seen(&[(WatchStart::Snapshot, 0, 0)], &[1, 3]);
        assert_eq!(skipped.gaps().len(), 1, "{:?}", skipped.gaps());
        let repeated = seen(&[(WatchStart::Snapshot, 0, 0), (WatchStart::Resumed, 2, 2)], &[1, 2, 2]);
        assert_eq!(repeated.gaps().len(), 1, "{:?}", repeated.gaps());
        let back = seen(&[(WatchStart::Snapshot, 0, 0), (WatchStart::Resumed, 1, 2)], &[1, 2, 2]);
        assert_eq!(back.gaps().len(), 2, "resumed before its last, then a repeat: {:?}", back.gaps());
        let over = seen(&[(WatchStart::Snapshot, 0, 0), (WatchStart::Compacted, 2, 2)], &[1, 2, 3]);
        assert_eq!(over.gaps().len(), 1, "started over from a snapshot: {:?}", over.gaps());
    }
}
