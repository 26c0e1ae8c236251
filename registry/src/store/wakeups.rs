//! What wakes watchers: the revision of the last change, and of the last
//! departure, published once a request's changes are all recorded.

use tokio::sync::watch::{Receiver, Sender};

use crate::watch::History;

/// What wakes a watcher: any change, or only a departure, which a watcher
/// holding changes back to send them together is woken for.
#[derive(Debug)]
pub struct Subscription {
    /// The revision of the last change.
    pub changes: Receiver<u64>,
    /// The revision of the last departure.
    pub departures: Receiver<u64>,
}

/// The revision of the last change, and of the last departure, for watchers to wait on.
#[derive(Debug)]
pub(super) struct Wakeups {
    changes: Sender<u64>,
    departures: Sender<u64>,
}

impl Wakeups {
    pub(super) fn new() -> Wakeups {
        Wakeups { changes: Sender::new(0), departures: Sender::new(0) }
    }

    /// Wakes the watchers waiting for changes, or for departures, that
    /// `history` holds and they were not told of.
    pub(super) fn publish(&self, history: &History) {
        let advance = |to: u64| {
            move |revision: &mut u64| {
                let changed = *revision != to;
                *revision = to;
                changed
            }
        };
        self.changes.send_if_modified(advance(history.revision()));
        self.departures.send_if_modified(advance(history.departed()));
    }

    /// Follows the revisions of the last change and of the last departure.
    pub(super) fn subscribe(&self) -> Subscription {
        Subscription { changes: self.changes.subscribe(), departures: self.departures.subscribe() }
    }
}
