//! The status page (`/status` on the HTTP listener): the live membership,
//! groups and their coordinators, suspect and departed nodes, and how far a
//! forming mesh has been introduced, drawn as it changes.
//!
//! The page ([`PAGE`], in the binary: no build step, no CDN) reads
//! `/status/events`, a stream of server-sent events made from the
//! registry's own watch ([`crate::watch`]):
//!
//! - `snapshot`: `{"revision","groups","entries":[…]}`, first, and again
//!   whenever the stream fell behind the history;
//! - `changes`: `[{"revision","event":"joined"|"left"|"coordinator",…}]`,
//!   the watch's changes, as watchers receive them;
//! - `pulse`: `{"silent":[ids],"introduced":n}` every second: the entries
//!   silent for more than half their lease (suspect), and the contacts the
//!   registry has handed out since it started (each a greeting to send).
//!
//! The page shows the membership, so with a join token it is served only to
//! holders of the listener's own bearer token ([`crate::http`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde::Serialize;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::protocol::Contact;
use crate::store::{Store, Subscription};
use crate::watch::WatchEvent;

/// The page, whole.
pub const PAGE: &str = include_str!("status.html");

/// How often the stream says which entries are silent, and keeps the connection alive.
pub const PULSE: Duration = Duration::from_secs(1);

/// Changes sent in one event at most.
const BATCH: usize = 256;

#[derive(Serialize)]
struct Snapshot<'a> {
    revision: u64,
    groups: u32,
    entries: &'a [Contact],
}

#[derive(Serialize)]
struct Pulse {
    silent: Vec<String>,
    introduced: u64,
}

/// What the stream holds between events.
struct Following {
    store: Arc<Store>,
    groups: u32,
    wakeups: Subscription,
    /// The revision sent last; `None` until a snapshot has gone.
    seen: Option<u64>,
    pulse: tokio::time::Interval,
    introduced: Arc<dyn Fn() -> u64 + Send + Sync>,
    stop: CancellationToken,
}

/// The events of `/status/events`, until `stop` is cancelled or the client
/// goes; `introduced` reads how many contacts the registry has handed out.
pub fn events(
    store: Arc<Store>,
    groups: u32,
    introduced: Arc<dyn Fn() -> u64 + Send + Sync>,
    stop: CancellationToken,
) -> impl Stream<Item = Bytes> + Send + 'static {
    let mut pulse = tokio::time::interval_at(Instant::now() + PULSE, PULSE);
    pulse.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let wakeups = store.subscribe();
    let following = Following { store, groups, wakeups, seen: None, pulse, introduced, stop };
    futures::stream::unfold(following, |mut following| async move {
        let event = following.next().await?;
        Some((event, following))
    })
}

impl Following {
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if self.stop.is_cancelled() {
                return None;
            }
            let Some(seen) = self.seen else { return Some(self.snapshot()) };
            if let Some(changes) = self.changes(seen) {
                return Some(changes);
            }
            tokio::select! {
                changed = self.wakeups.changes.changed() => changed.ok()?,
                _ = self.pulse.tick() => return Some(self.pulse_event()),
                () = self.stop.cancelled() => return None,
            }
        }
    }

    fn snapshot(&mut self) -> Bytes {
        // Marked seen first, so that a change made meanwhile wakes the stream.
        self.wakeups.changes.borrow_and_update();
        let watching = self.store.watch(None).expect("a watch from now always starts");
        let entries = watching.snapshot.map(|snapshot| snapshot.entries).unwrap_or_default();
        self.seen = Some(watching.revision);
        let snapshot = Snapshot { revision: watching.revision, groups: self.groups, entries: &entries };
        event("snapshot", &snapshot)
    }

    /// The changes after `seen`, if any; a new snapshot if the history no longer holds them.
    fn changes(&mut self, seen: u64) -> Option<Bytes> {
        self.wakeups.changes.borrow_and_update();
        match self.store.changes_after(seen, BATCH) {
            Ok(changes) if changes.is_empty() => None,
            Ok(changes) => {
                self.seen = changes.last().map(|change| change.value.revision);
                let changes: Vec<&WatchEvent> = changes.iter().map(|change| &change.value).collect();
                Some(event("changes", &changes))
            }
            Err(_) => Some(self.snapshot()),
        }
    }

    fn pulse_event(&mut self) -> Bytes {
        let pulse = Pulse { silent: self.store.silent(Instant::now()), introduced: (self.introduced)() };
        event("pulse", &pulse)
    }
}

/// One server-sent event: its name, and its data on one line (JSON has no raw newline).
fn event(name: &str, data: &impl Serialize) -> Bytes {
    let data = serde_json::to_string(data).expect("status events serialize");
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::join;
    use crate::store::{Capacity, Leases};
    use futures::StreamExt;

    fn parsed(event: Bytes) -> (String, serde_json::Value) {
        let text = String::from_utf8(event.to_vec()).unwrap();
        let (name, rest) = text.strip_prefix("event: ").unwrap().split_once("\ndata: ").unwrap();
        assert!(rest.ends_with("\n\n"), "{text:?}");
        (name.to_owned(), serde_json::from_str(rest.trim_end()).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn the_stream_starts_with_a_snapshot_then_sends_each_change_and_a_pulse_every_second() {
        let store = Arc::new(Store::new(Leases::new(Duration::from_secs(15), None), 3, Capacity::default()));
        join(&store, "a", 1);
        let stop = CancellationToken::new();
        let mut events = Box::pin(events(store.clone(), 3, Arc::new(|| 7), stop.clone()));
        let (name, snapshot) = parsed(events.next().await.unwrap());
        assert_eq!((name.as_str(), snapshot["groups"].as_u64()), ("snapshot", Some(3)));
        assert_eq!(snapshot["entries"][0]["name"], "a");

        join(&store, "b", 2);
        let (name, changes) = parsed(events.next().await.unwrap());
        assert_eq!(name, "changes");
        assert_eq!((changes[0]["event"].as_str(), changes[0]["entry"]["name"].as_str()), (Some("joined"), Some("b")));

        let started = Instant::now();
        let (name, pulse) = parsed(events.next().await.unwrap());
        assert_eq!((name.as_str(), pulse["introduced"].as_u64()), ("pulse", Some(7)));
        assert_eq!(pulse["silent"], serde_json::json!([]));
        assert_eq!(Instant::now() - started, PULSE);

        stop.cancel();
        assert!(events.next().await.is_none(), "the stream ends with the registry");
    }
}
