//! The node's live view of the membership: it follows the registry's watch
//! ([`registry::watch`]) from its first registration on, and logs the peers
//! that join, one line for those delivered together (`peers_joined`), and
//! each that leaves (`peer_left`, with the reason).
//! Greeting does not depend on it: a node greets the contacts of its
//! registration reply, and is greeted by the nodes that come after it.
//!
//! While the watch runs, a coordinator multicasts with the group view it
//! had a moment ago ([`crate::group::KnownView`]); every change forgets it.
//!
//! When the watch breaks (the registry died or restarted, or cut off a
//! watcher that fell behind), the node watches again at once after the last
//! revision it saw, on the next replica of the registry if this one is gone
//! ([`crate::link`]); a registry that no longer holds those changes (or
//! another registry, of another epoch) answers with a snapshot.

use std::sync::Arc;
use std::time::Duration;

use registry::client::ClientError;
use registry::protocol::{Contact, Since};
use registry::watch::{Change, WatchEvent};
use tokio::time::Instant;
use wire::secure::PublicKey;

use crate::config::Backoff;
use crate::events;
use crate::link::RegistryLink;
use crate::listener::Context;
use crate::membership::jitter;
use crate::metrics;

/// Changes read from the watch at a time, and so joins named in one
/// `peers_joined` line at most: 64 plain names of the longest (128 bytes)
/// keep a line under 9 KiB, below the 16 KiB past which Docker splits a
/// log line in two.
const BATCH: usize = 64;

/// Follows the membership for as long as the node runs.
pub async fn follow(link: RegistryLink, context: Arc<Context>, backoff: Backoff) {
    let mut since = None;
    let mut delay = backoff.initial;
    let mut hurried = false;
    loop {
        let (error, ran) = watch(&link, &context, &mut since).await;
        context.group_view.watching(false);
        events::watch_broken(&link.registry().to_string(), &error);
        if error.code().is_none() {
            // The connection failed, rather than the registry ending the watch (`lagging`).
            link.broke(&error);
            context.vitals.session(false);
        }
        // A watch that broke (its registry died, or cut it off) is watched
        // again at once, on the next replica if this one is gone: that is
        // how the node notices a dead one first. Only a watch that broke as
        // it started, right after such a hurry, waits, so that a registry
        // ending every watch at once is not asked again and again.
        if ran.is_some() {
            delay = backoff.initial;
        }
        hurried = ran.is_some_and(|ran| ran >= backoff.initial || !hurried);
        if hurried {
            continue;
        }
        tokio::time::sleep(jitter(delay)).await;
        delay = (delay * 2).min(backoff.max);
    }
}

/// One watch, until it breaks: why, and how long it ran, if it started at
/// all. `since` follows the revisions seen, on whichever replica.
async fn watch(link: &RegistryLink, context: &Context, since: &mut Option<Since>) -> (ClientError, Option<Duration>) {
    let watching = match link.connect().await {
        Ok(client) => client.watch(since.as_ref()).await,
        Err(error) => Err(error),
    };
    let mut watch = match watching {
        Ok(watch) => watch,
        Err(error) => return (error, None),
    };
    let started = Instant::now();
    let start = &watch.start;
    context.group_view.watching(true);
    context.vitals.session(true);
    if let Some(snapshot) = &start.snapshot {
        let own = own(context);
        let peers = snapshot.entries.iter().filter(|entry| !own.is(entry));
        metrics::METRICS.count(|m| m.peers_are(peers.map(|entry| entry.id.as_str())));
    }
    events::watching(&link.registry().to_string(), start.start, start.revision);
    *since = Some(Since { revision: start.revision, epoch: Some(start.epoch.clone()) });
    loop {
        let batch = match watch.next_batch(BATCH).await {
            Ok(batch) => batch,
            Err(error) => return (error, Some(started.elapsed())),
        };
        if let (Some(since), Some(last)) = (since.as_mut(), batch.last()) {
            since.revision = last.revision;
        }
        context.group_view.changed();
        log(batch, &own(context));
    }
}

/// Logs the peers in `batch` that joined or left, in order: the joins
/// between two departures on one line, each departure on its own, but
/// never this node's own.
fn log(batch: Vec<WatchEvent>, own: &Own) {
    let mut joined = Vec::new();
    for event in batch {
        match event.change {
            Change::Joined { entry } if !own.is(&entry) => {
                metrics::METRICS.count(|m| m.peer_joined(&entry.id));
                joined.push(entry);
            }
            Change::Left { entry, reason } if !own.is(&entry) => {
                metrics::METRICS.count(|m| m.peer_left(&entry.id));
                events::peers_joined(&std::mem::take(&mut joined));
                events::peer_left(&entry, reason);
            }
            _ => {}
        }
    }
    events::peers_joined(&joined);
}

fn own(context: &Context) -> Own {
    Own { id: wire::lock(&context.id).clone(), key: context.keys.identity.public() }
}

/// What tells this node's own entries from its peers'.
struct Own {
    /// Its id, while it has one.
    id: Option<String>,
    /// Its key, which no other entry holds: an entry of this node under an
    /// id it has not yet heard of is its own all the same, as when it
    /// registers again with another registry, whose watch may tell of the
    /// new entry before the registration's reply arrives.
    key: PublicKey,
}

impl Own {
    fn is(&self, entry: &Contact) -> bool {
        self.id.as_deref() == Some(entry.id.as_str()) || entry.key == Some(self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Record;
    use registry::watch::LeftReason;

    fn contact(name: &str) -> Contact {
        Contact {
            id: format!("id-{name}"),
            name: name.into(),
            ip: "127.0.0.1".parse().unwrap(),
            puerto: 4000,
            group: Some(1),
            key: None,
        }
    }

    #[test]
    fn a_batch_is_logged_in_order_joins_together_between_departures_and_never_this_node() {
        let key = wire::secure::Identity::generate().public();
        let changes = [
            Change::Joined { entry: contact("a") },
            Change::Joined { entry: contact("me") },
            // Its entry at another registry, of an id it has not heard of yet.
            Change::Joined { entry: Contact { id: "id-me-elsewhere".into(), key: Some(key), ..contact("me") } },
            Change::Coordinator { group: 1, coordinator: Some(contact("a")) },
            Change::Joined { entry: contact("b") },
            Change::Left { entry: contact("c"), reason: LeftReason::Expired },
            Change::Left { entry: contact("a"), reason: LeftReason::Deregistered },
            Change::Joined { entry: contact("a") },
        ];
        let batch = changes.into_iter().zip(1..).map(|(change, revision)| WatchEvent { revision, change }).collect();
        let lines = wire::telemetry::capture(|| log(batch, &Own { id: Some("id-me".into()), key }));
        let logged: Vec<String> = lines
            .iter()
            .map(|line| Record::parse(line).expect(line))
            .map(|record| format!("{} {}", record.event, record.peers().collect::<Vec<_>>().join(" ")))
            .collect();
        assert_eq!(logged, ["peers_joined a b", "peer_left c", "peer_left a", "peers_joined a"]);
    }
}
