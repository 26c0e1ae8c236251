//! The node's live view of the membership: it follows the registry's watch
//! ([`registry::watch`]) from its first registration on, and logs every
//! peer that joins or leaves (`peer_joined`, `peer_left` with the reason).
//! Greeting does not depend on it: a node greets the contacts of its
//! registration reply, and is greeted by the nodes that come after it.
//!
//! While the watch runs, a coordinator multicasts with the group view it
//! had a moment ago ([`crate::group::KnownView`]); every change forgets it.
//!
//! When the watch breaks (the registry restarted, or cut off a watcher that
//! fell behind), the node watches again after the last revision it saw; a
//! registry that no longer holds those changes answers with a snapshot.

use std::sync::Arc;

use registry::client::ClientError;
use registry::protocol::Since;
use registry::watch::Change;

use crate::config::Backoff;
use crate::events;
use crate::link::RegistryLink;
use crate::listener::Context;
use crate::membership::jitter;

/// Follows the membership for as long as the node runs.
pub async fn follow(link: RegistryLink, context: Arc<Context>, backoff: Backoff) {
    let mut since = None;
    let mut delay = backoff.initial;
    loop {
        let error = watch(&link, &context, &mut since, &mut delay, backoff).await;
        context.group_view.watching(false);
        events::watch_broken(&link.addr.to_string(), &error);
        tokio::time::sleep(jitter(delay)).await;
        delay = (delay * 2).min(backoff.max);
    }
}

/// One watch, until it breaks; `since` follows the revisions seen, and
/// `delay` starts again from `backoff.initial` once the watch has started.
async fn watch(
    link: &RegistryLink,
    context: &Context,
    since: &mut Option<Since>,
    delay: &mut std::time::Duration,
    backoff: Backoff,
) -> ClientError {
    let mut watch = match link.connect().await {
        Ok(client) => match client.watch(since.as_ref()).await {
            Ok(watch) => watch,
            Err(error) => return error,
        },
        Err(error) => return error,
    };
    let start = &watch.start;
    context.group_view.watching(true);
    events::watching(&link.addr.to_string(), start.start, start.revision);
    *delay = backoff.initial;
    *since = Some(Since { revision: start.revision, epoch: Some(start.epoch.clone()) });
    loop {
        let event = match watch.next().await {
            Ok(event) => event,
            Err(error) => return error,
        };
        if let Some(since) = since.as_mut() {
            since.revision = event.revision;
        }
        context.group_view.changed();
        let own = wire::lock(&context.id).clone();
        match event.change {
            Change::Joined { entry } if Some(&entry.id) != own.as_ref() => events::peer_joined(&entry),
            Change::Left { entry, reason } if Some(&entry.id) != own.as_ref() => events::peer_left(&entry, reason),
            _ => {}
        }
    }
}
