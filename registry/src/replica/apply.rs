//! The loop every replica runs: it reads etcd's log of commands from its
//! first revision and applies each, in order, to the replica's store.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd::{EtcdError, Event, EventKind, LeaseId, Watch};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, error, warn};

use super::command::{Command, Proposal, Seal};
use super::keys::Key;
use crate::protocol::Contact;
use crate::store::{Admitted, Store, StoreError};

/// How many commands are remembered to tell one written twice: far more
/// than can be in flight while a put is retried.
const RECENT: usize = 65_536;

/// What a command did, for the replica that proposed it.
#[derive(Debug)]
pub(super) struct Outcome {
    pub done: Done,
    /// Leases no entry holds any more: the proposer revokes them.
    pub freed: Vec<LeaseId>,
}

#[derive(Debug)]
pub(super) enum Done {
    Registered(Result<Admitted, StoreError>),
    Deregistered(Result<Contact, StoreError>),
    /// A lost session's or an expired lease's entry, if it was still there.
    Ended(Option<Contact>),
    Held,
}

/// Which etcd lease keeps each entry, as applied so far: the same on every replica.
#[derive(Debug, Default)]
pub(super) struct LeaseBook {
    by_id: HashMap<String, LeaseId>,
    by_lease: HashMap<LeaseId, String>,
}

impl LeaseBook {
    pub fn lease_of(&self, id: &str) -> Option<LeaseId> {
        self.by_id.get(id).copied()
    }

    fn insert(&mut self, id: &str, lease: LeaseId) {
        self.by_id.insert(id.to_owned(), lease);
        self.by_lease.insert(lease, id.to_owned());
    }

    fn remove(&mut self, id: &str) -> Option<LeaseId> {
        let lease = self.by_id.remove(id)?;
        self.by_lease.remove(&lease);
        Some(lease)
    }
}

/// Proposers waiting for their commands' outcomes, by number.
pub(super) type Pending = Mutex<HashMap<u64, oneshot::Sender<Outcome>>>;

/// The commands applied lately, by (origin, number).
#[derive(Debug, Default)]
struct Recent {
    order: VecDeque<(u64, u64)>,
    seen: HashSet<(u64, u64)>,
}

impl Recent {
    /// Whether `command` is new, remembering it.
    fn first_time(&mut self, command: (u64, u64)) -> bool {
        if !self.seen.insert(command) {
            return false;
        }
        self.order.push_back(command);
        if self.order.len() > RECENT {
            let oldest = self.order.pop_front().expect("not empty");
            self.seen.remove(&oldest);
        }
        true
    }
}

/// The replica's side of the log: where it applies commands, and what it
/// shares with the replica's request handlers.
pub(super) struct Applier {
    pub store: Arc<Store>,
    pub book: Arc<Mutex<LeaseBook>>,
    pub pending: Arc<Pending>,
    pub seal: Arc<Seal>,
    pub origin: u64,
    /// The instant of the last command applied, in ms since the Unix epoch;
    /// read by the handlers as the store's present.
    pub clock_ms: Arc<AtomicU64>,
    pub anchor: Instant,
    /// Entries whose lease ended, to propose their expiry once caught up.
    pub expiries: mpsc::UnboundedSender<(String, LeaseId)>,
}

/// The store's instant for `ms` since the Unix epoch: every replica orders
/// and measures commands' instants alike, whatever its own clock says.
pub(super) fn instant_at(anchor: Instant, ms: u64) -> Instant {
    anchor + Duration::from_millis(ms)
}

impl Applier {
    /// Applies the log for ever; `ready` fires once the marker this replica
    /// wrote at start (`Key::Ready` with its origin) is applied: it has
    /// caught up with everything written before it started.
    pub async fn run(self, mut watch: Watch, ready: oneshot::Sender<()>) {
        let mut state = Catching::Up { ready, gone: Vec::new() };
        let mut recent = Recent::default();
        loop {
            let event = match watch.next().await {
                Ok(event) => event,
                // Gone from etcd: a replica that applied part of the log
                // can never agree with the others again.
                Err(error @ EtcdError::Compacted { .. }) => {
                    error!(error = %wire::Chain(&error), "the replicas' log was compacted: this replica stops applying it");
                    return;
                }
                // The watch moves between members by itself, and goes on
                // where it stopped once one answers again.
                Err(error) => {
                    warn!(error = %wire::Chain(&error), "cannot read the replicas' log: no etcd member answers");
                    continue;
                }
            };
            self.apply(event, &mut state, &mut recent);
        }
    }

    fn apply(&self, event: Event, state: &mut Catching, recent: &mut Recent) {
        match (event.kind, Key::parse(&event.key)) {
            (EventKind::Put, Some(Key::Log | Key::Lease(_))) => {
                let Some(proposal) = self.seal.open(&event.value) else {
                    warn!(revision = event.revision, "skipped a command that does not open with this registry's key");
                    return;
                };
                if !recent.first_time((proposal.origin, proposal.seq)) {
                    debug!(revision = event.revision, "skipped a command written twice");
                    return;
                }
                let lease = (event.lease != 0).then_some(event.lease);
                self.command(proposal, lease);
            }
            (EventKind::Delete, Some(Key::Lease(lease))) => {
                let Some(id) = wire::lock(&self.book).by_lease.get(&lease).cloned() else { return };
                match state {
                    Catching::Up { gone, .. } => gone.push((id, lease)),
                    Catching::Done => drop(self.expiries.send((id, lease))),
                }
            }
            (EventKind::Put, Some(Key::Ready)) if event.value == self.origin.to_be_bytes() => {
                if let Catching::Up { ready, gone } = std::mem::replace(state, Catching::Done) {
                    // Those expired while no replica was there to say so.
                    let book = wire::lock(&self.book);
                    for (id, lease) in gone.into_iter().filter(|(id, _)| book.lease_of(id).is_some()) {
                        drop(self.expiries.send((id, lease)));
                    }
                    let _ = ready.send(());
                }
            }
            _ => {}
        }
    }

    fn command(&self, proposal: Proposal, lease: Option<LeaseId>) {
        let at_ms = self.clock_ms.fetch_max(proposal.at_ms, Ordering::SeqCst).max(proposal.at_ms);
        let now = instant_at(self.anchor, at_ms);
        let outcome = self.outcome(proposal.command, lease, now);
        if proposal.origin == self.origin {
            if let Some(waiting) = wire::lock(&self.pending).remove(&proposal.seq) {
                drop(waiting.send(outcome));
            }
        }
    }

    fn outcome(&self, command: Command, lease: Option<LeaseId>, now: Instant) -> Outcome {
        let store = &self.store;
        let mut book = wire::lock(&self.book);
        let mut freed = Vec::new();
        // An entry gone but for its lease's end leaves its lease to revoke.
        let end =
            |book: &mut LeaseBook, contact: &Contact, freed: &mut Vec<LeaseId>| freed.extend(book.remove(&contact.id));
        let done = match command {
            Command::Register { registration, observed, session } => {
                let result = store.register(&registration, observed, now);
                match &result {
                    Ok(admitted) => {
                        admitted.replaced.iter().for_each(|old| end(&mut book, old, &mut freed));
                        let id = &admitted.entry.id;
                        match lease {
                            Some(lease) if !admitted.repeat => book.insert(id, lease),
                            // A repeat keeps the lease its entry has.
                            _ => freed.extend(lease),
                        }
                        if let Some(session) = session {
                            store.hold(id, session, now);
                        }
                    }
                    Err(_) => freed.extend(lease),
                }
                Done::Registered(result)
            }
            Command::Hold { id, session } => {
                store.hold(&id, session, now);
                Done::Held
            }
            Command::Lost { id, session } => {
                let lost = store.session_lost(&id, session, now);
                lost.iter().for_each(|c| end(&mut book, c, &mut freed));
                Done::Ended(lost)
            }
            Command::Deregister { key, caller } => {
                let left = store.deregister(&key, caller, now);
                left.iter().for_each(|c| end(&mut book, c, &mut freed));
                Done::Deregistered(left)
            }
            // The first of the replicas' proposals ends it; an entry that
            // left otherwise meanwhile, and its place's new holder, stay.
            Command::Expire { id, lease } if book.lease_of(&id) == Some(lease) => {
                book.remove(&id);
                Done::Ended(store.expire(&id, now))
            }
            Command::Expire { .. } => Done::Ended(None),
        };
        Outcome { done, freed }
    }
}

/// Whether the replica has caught up with the log as it was when it started.
enum Catching {
    Up {
        ready: oneshot::Sender<()>,
        /// Leases that ended while it was catching up: expiries that their
        /// replicas may not have lived to propose.
        gone: Vec<(String, LeaseId)>,
    },
    Done,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_new_once_and_the_oldest_are_forgotten_past_the_bound() {
        let mut recent = Recent::default();
        assert!(recent.first_time((1, 1)));
        assert!(!recent.first_time((1, 1)));
        assert!(recent.first_time((2, 1)));
        for seq in 2..=RECENT as u64 {
            assert!(recent.first_time((1, seq)));
        }
        assert!(recent.first_time((1, 1)), "forgotten once RECENT others came after it");
        assert_eq!(recent.seen.len(), RECENT);
    }
}
