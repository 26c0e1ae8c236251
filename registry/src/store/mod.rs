//! The registry's store: the membership rules (who may hold a name or an
//! address, the order of admissions, places kept for lapsed incarnations,
//! groups and their coordinators, capacity), over where entries live.
//!
//! A `std::sync::Mutex` guards it: no operation awaits while holding the lock,
//! and each one is a few map operations, so an async mutex would only add cost.
//! Registration computes the earlier contacts, assigns a group and inserts
//! the new entry under one lock, which is what makes every pair of nodes
//! greet exactly once and keeps groups balanced when nodes join together.
//!
//! A registration that names its incarnation (a token the node draws once per
//! run) is idempotent: a repeat, sent because the first reply was lost or
//! late, is answered as the first admission was, with the same id, the same
//! place in the order and only the earlier contacts, so nobody who registered
//! in between is introduced twice.
//!
//! An incarnation whose lease ran out (the node was paused, partitioned or
//! starved of CPU, but did not stop) takes its place back when it registers
//! again, rather than a new one at the end: the nodes that came after it
//! while it was live already know it and greet it. Its contacts are the
//! earlier entries, which it has met already, and the entries admitted
//! while it was gone, which never heard of it. The registry remembers
//! as many such places as it may hold entries, forgetting the oldest first.
//!
//! Every change (an entry joined or left, a group's coordinator changed) is
//! recorded in the [`History`] under the same lock, so that watchers see
//! the changes in the order they were made, each with its revision.
//!
//! Each entry's JSON is encoded once, at admission, and shared: the k-th of a
//! burst of registrations is answered with k pointers to ready bytes, not k
//! fresh copies of every contact, which keeps the registry small and its CPU
//! cost per reply low while many nodes join at once.
//!
//! # Layout
//! - this module: [`Store`], its rules, and the state they keep under the lock.
//! - `entries`: where entries live, a table with the indexes the rules look
//!   them up by, which inserts and removes every index with its entry: the
//!   storage a second backend would replace.
//! - `lapsed`: what is kept of entries that lapsed: their places, the
//!   stretches they were gone, the names and addresses held for their keys.
//! - `groups`: the group a node is assigned, and each group's coordinator.
//! - `wakeups`: the revisions watchers wait on ([`Subscription`]).
//! - `limits`: how long entries live ([`Leases`]) and how many the store
//!   holds ([`Capacity`]).
//! - `error`: [`StoreError`], why a request is refused.

mod entries;
mod error;
mod groups;
mod lapsed;
mod limits;
#[cfg(test)]
mod tests;

/// What the other modules' tests share of the store.
#[cfg(test)]
pub(crate) mod testing {
    use tokio::time::Instant;

    use super::Store;
    use crate::protocol::{Dialect, Registration};

    /// Registers node `name` at 10.0.0.1:`puerto` in group 1, natively and without a key.
    pub fn join(store: &Store, name: &str, puerto: u16) {
        let registration = Registration {
            ip: Some("10.0.0.1".parse().unwrap()),
            puerto,
            name: Some(name.into()),
            group: Some(1),
            incarnation: None,
            dialect: Dialect::Native,
            key: None,
            ticket_key: None,
        };
        store.register(&registration, "10.0.0.1".parse().unwrap(), Instant::now()).unwrap();
    }
}
mod wakeups;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use wire::fields::check_peer_ip;
use wire::secure::PublicKey;
use wire::ticket::TicketKey;

use self::entries::{Entry, Standing, Table};
pub use self::error::StoreError;
use self::groups::{least_loaded, Coordinators};
use self::lapsed::{Admission, Lapsed, LapsedPlaces, Reservations};
pub use self::limits::{Capacity, Leases};
pub use self::wakeups::Subscription;
use self::wakeups::Wakeups;
use crate::protocol::{Contact, Dialect, Encoded, EncodedContact, EntryKey, Registration, Since};
use crate::watch::{Change, Compacted, History, LeftReason, Snapshot, WatchEvent, WatchStart, Watching};

/// A registration the store accepted.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub entry: Contact,
    /// Whom it is to greet, in order (see `State::contacts`): the live
    /// entries before its place, and, back at its place, the live ones last
    /// told their contacts while it was gone.
    pub contacts: Vec<ToGreet>,
    /// Entries it replaced: the same node registering again.
    pub replaced: Vec<Contact>,
    /// A repeat of an incarnation already admitted: its place and id kept,
    /// its contacts told again.
    pub repeat: bool,
}

/// An entry a registrant is to greet, with the key its tickets are sealed under.
#[derive(Debug, Clone)]
pub struct ToGreet {
    pub contact: Arc<EncodedContact>,
    /// Given by a node of ours at registration; `None` for the originals.
    pub ticket_key: Option<Arc<TicketKey>>,
}

#[derive(Debug)]
pub struct Store {
    state: Mutex<State>,
    wakeups: Wakeups,
    leases: Leases,
    capacity: Capacity,
    /// Groups 1 to `groups` are assigned to nodes that choose none.
    groups: u32,
    /// Random per store, so ids handed out before a restart never match
    /// new entries; the etcd cluster's, for replicas that share one.
    id_prefix: String,
    /// Whether leases are kept elsewhere (by etcd, for replicas): entries
    /// then never expire here, but when told to ([`Store::expire`]).
    leases_kept_elsewhere: bool,
}

/// The live entries by standing and dialect ([`Store::census`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    pub native: Standings,
    /// Of either original dialect.
    pub original: Standings,
    /// Groups with a live member, which coordinates them.
    pub coordinators: usize,
}

/// Live entries that renew their lease, and those silent for more than half
/// of it: suspect, though still listed until it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standings {
    pub live: usize,
    pub suspect: usize,
}

/// What the rules keep under the lock: the entries, what is kept of those
/// that lapsed, the order of admissions, and the changes for watchers.
#[derive(Debug)]
struct State {
    entries: Table,
    /// Places of lapsed incarnations; at most as many as the store may hold entries.
    lapsed: LapsedPlaces,
    /// Names and addresses held for the keys of lost entries; as many at most.
    reserved: Reservations,
    /// [`Leases::hold`].
    hold: Duration,
    /// Admissions made, for [`Admission`].
    admissions: u64,
    /// The latest instant a change was made at ([`Store::lock_at`]).
    clock: Option<Instant>,
    history: History,
    coordinators: Coordinators,
}

impl State {
    fn new(leases: Leases, capacity: Capacity) -> State {
        State {
            entries: Table::default(),
            lapsed: LapsedPlaces::new(capacity.entries),
            reserved: Reservations::new(capacity.entries),
            hold: leases.hold,
            admissions: 0,
            clock: None,
            history: History::new(capacity.history),
            coordinators: Coordinators::default(),
        }
    }

    /// Removes an entry, recording why: `reason`, or `expired` for one whose
    /// lease ran out by `now`. One that expired or lost its session leaves
    /// its place to its incarnation.
    fn remove(&mut self, seq: u64, now: Instant, reason: LeftReason) -> Option<Contact> {
        let entry = self.entries.remove(seq)?;
        let reason = if entry.is_live(now) { reason } else { LeftReason::Expired };
        self.history.record(Change::Left { entry: entry.contact().clone(), reason });
        // A node that did not leave of its own accord may come back to its place.
        if matches!(reason, LeftReason::Expired | LeftReason::ConnectionLost) {
            self.lapse(seq, &entry, now);
        }
        Some(entry.contact().clone())
    }

    /// Keeps the place of `entry`, gone from `seq` without leaving, for its
    /// incarnation, and its name and address for its key.
    fn lapse(&mut self, seq: u64, entry: &Entry, now: Instant) {
        let expires_at = entry.standing.expires_at;
        // Expired at its lease's end, which no one admitted since saw
        // live; lost now, after the admissions made so far.
        let lapsed_at = match expires_at {
            Some(at) if at <= now => (at, 0),
            _ => (now, self.admissions + 1),
        };
        if let Some(incarnation) = &entry.incarnation {
            let (key, group, absences) = (entry.contact().key, entry.contact().group, entry.absences.clone());
            self.lapsed.remember(incarnation.clone(), Lapsed { seq, key, group, absences, lapsed_at });
        }
        // Held from the lapse, and at least until the lease would have ended.
        let until = (lapsed_at.0 + self.hold).max(expires_at.unwrap_or(now));
        self.reserved.reserve(entry.contact().clone(), until);
    }

    /// Records the coordinators of `groups` that changed, once the entries
    /// a request adds or removes are in or out.
    fn record_coordinators(&mut self, groups: impl IntoIterator<Item = Option<u32>>) {
        let groups: BTreeSet<u32> = groups.into_iter().flatten().collect();
        for group in groups {
            let oldest = self.entries.group(group).next().map(|(_, e)| e.contact().clone());
            if let Some(change) = self.coordinators.update(group, oldest) {
                self.history.record(change);
            }
        }
    }

    fn snapshot(&self) -> Snapshot {
        let entries = self.entries.iter().map(|(_, e)| e.contact().clone()).collect();
        Snapshot { entries, coordinators: self.coordinators.by_group().clone() }
    }

    /// The entries a registration of `name` at `addr` with `key` replaces,
    /// or why it may not: another key's entry, live or held, has the name or
    /// the address, or, among entries without a key, a live one has the
    /// name at another address.
    fn claim(
        &self,
        name: &str,
        addr: SocketAddr,
        key: Option<PublicKey>,
        now: Instant,
    ) -> Result<Vec<u64>, StoreError> {
        self.check_reserved(name, addr, key, now)?;
        if let Some((_, holder)) = self.live(self.entries.by_name(name), now) {
            let same_node = match holder.contact().key {
                Some(held) => key == Some(held),
                None => holder.contact().addr() == addr,
            };
            if !same_node {
                return Err(StoreError::NameTaken {
                    name: name.to_owned(),
                    holder: Box::new(holder.contact().clone()),
                });
            }
        }
        if let Some((_, holder)) = self.live(self.entries.by_addr(addr), now) {
            if !holder.belongs_to(key) {
                return Err(StoreError::AddressTaken { addr, holder: Box::new(holder.contact().clone()) });
            }
        }
        let mut stale: Vec<u64> =
            [self.entries.by_name(name), self.entries.by_addr(addr)].into_iter().flatten().collect();
        // A node listens at one address under one name: its key's older entry goes.
        stale.extend(key.and_then(|key| self.entries.by_key(&key)));
        stale.sort_unstable();
        stale.dedup();
        Ok(stale)
    }

    /// Refuses `name` or `addr` to any key but the one they are reserved
    /// for, or held for: a keyed entry whose lease ran out less than
    /// [`Leases::hold`] ago, which the sweep has not removed yet, holds them
    /// as its reservation will.
    fn check_reserved(
        &self,
        name: &str,
        addr: SocketAddr,
        key: Option<PublicKey>,
        now: Instant,
    ) -> Result<(), StoreError> {
        let lapsed = |seq: Option<u64>| {
            let entry = self.entries.get(seq?)?;
            let held = entry.standing.expires_at.is_some_and(|at| at <= now && now < at + self.hold);
            (held && Some(entry.contact().key?) != key).then_some(entry.contact())
        };
        let name_holder = self.reserved.name_holder(name, key, now).or_else(|| lapsed(self.entries.by_name(name)));
        if let Some(holder) = name_holder {
            return Err(StoreError::NameTaken { name: name.to_owned(), holder: Box::new(holder.clone()) });
        }
        let addr_holder = self.reserved.addr_holder(addr, key, now).or_else(|| lapsed(self.entries.by_addr(addr)));
        if let Some(holder) = addr_holder {
            return Err(StoreError::AddressTaken { addr, holder: Box::new(holder.clone()) });
        }
        Ok(())
    }

    /// Whom the entry at `seq` greets ([`Admitted::contacts`]), told now.
    ///
    /// Of each pair the later place greets the earlier, but for a later one
    /// last told its contacts while the earlier one was gone: that one greets
    /// it once back. Every answer counts as telling, repeats too: the
    /// registry cannot know which reply reached its node (a lost one is why
    /// a node asks again, or loses its session and comes back), but the node
    /// asks until one does, so the last one told is what it knows. An entry
    /// back at its place is told of all the earlier ones again; its node
    /// drops those it already heard from.
    fn contacts(&self, seq: u64, now: Instant) -> Vec<ToGreet> {
        let earlier = self.entries.range(..seq);
        let missed_me = self
            .entries
            .get(seq)
            .map(|me| self.entries.range(seq + 1..).filter(move |(_, e)| me.absences.cover(e.standing.told_at)));
        earlier
            .chain(missed_me.into_iter().flatten())
            .filter(|(_, e)| e.is_live(now))
            .map(|(_, e)| ToGreet { contact: e.shared.clone(), ticket_key: e.ticket_key.clone() })
            .collect()
    }

    /// Answers a repeat of an incarnation that has a live entry of the same
    /// key, renewing its lease: told its contacts again, now.
    fn repeat(&mut self, incarnation: &str, key: Option<PublicKey>, now: Instant, ttl: Duration) -> Option<Admitted> {
        let (seq, entry) = self.live(self.entries.by_incarnation(incarnation), now)?;
        if entry.contact().key != key {
            return None;
        }
        let contact = entry.contact().clone();
        let told_at = self.admit(now);
        let standing = self.entries.standing_mut(seq)?;
        standing.renew(now, ttl);
        standing.told_at = told_at;
        Some(Admitted { entry: contact, contacts: self.contacts(seq, now), replaced: Vec::new(), repeat: true })
    }

    /// The next admission, made `now`.
    fn admit(&mut self, now: Instant) -> Admission {
        self.admissions += 1;
        (now, self.admissions)
    }

    /// The live entry `key` names.
    fn find(&self, key: &EntryKey, now: Instant) -> Result<(u64, &Entry), StoreError> {
        let (seq, missing) = match key {
            EntryKey::Id(id) => (self.entries.by_id(id), StoreError::UnknownId { id: id.clone() }),
            EntryKey::Name(name) => (self.entries.by_name(name), StoreError::NotFound { name: name.clone() }),
            EntryKey::Addr(addr) => (self.entries.by_addr(*addr), StoreError::NotFound { name: addr.to_string() }),
        };
        self.live(seq, now).ok_or(missing)
    }

    fn live(&self, seq: Option<u64>, now: Instant) -> Option<(u64, &Entry)> {
        let seq = seq?;
        let entry = self.entries.get(seq)?;
        entry.is_live(now).then_some((seq, entry))
    }
}

impl Store {
    pub fn new(leases: Leases, groups: u32, capacity: Capacity) -> Self {
        Self {
            state: Mutex::new(State::new(leases, capacity)),
            wakeups: Wakeups::new(),
            leases,
            capacity,
            groups: groups.max(1),
            id_prefix: format!("{:08x}", fastrand::u32(..)),
            leases_kept_elsewhere: false,
        }
    }

    /// A store that one of several replicas applies the same commands to,
    /// in the same order: its ids begin with `epoch`, the same for all of
    /// them, and its entries live until [`Store::expire`] ends them, since
    /// their leases are kept where every replica sees them end.
    pub fn replicated(leases: Leases, groups: u32, capacity: Capacity, epoch: String) -> Self {
        Self { id_prefix: epoch, leases_kept_elsewhere: true, ..Store::new(leases, groups, capacity) }
    }

    pub fn leases(&self) -> Leases {
        self.leases
    }

    /// How long a registration in `dialect` lives without renewal; `None`
    /// for ever (an original one, without `--legacy-ttl`).
    pub fn lease(&self, dialect: Dialect) -> Option<Duration> {
        match dialect {
            Dialect::Native => Some(self.leases.ttl),
            Dialect::Original | Dialect::Clientes => self.leases.legacy_ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        wire::lock(&self.state)
    }

    /// The state, to change at `now`, or at the latest instant a change was
    /// made at if that is later. A request takes its instant before it waits
    /// for the lock, so without this an entry told its contacts after
    /// another lapsed could read as told before, and miss it.
    fn lock_at(&self, now: Instant) -> (std::sync::MutexGuard<'_, State>, Instant) {
        let mut state = self.lock();
        let now = state.clock.map_or(now, |latest| latest.max(now));
        state.clock = Some(now);
        (state, now)
    }

    /// Admits a registration. `observed` is the address the connection came
    /// from, recorded when the registration gives no usable ip.
    ///
    /// A live entry registered with a key belongs to that key: another key
    /// cannot take its name (`name_taken`) or its address (`address_taken`),
    /// while the same key registering again replaces it, wherever it now
    /// listens. Among entries without a key (the originals), an address
    /// belongs to one listener, so an entry at the same address is the same
    /// node registering again and is replaced, and a live entry holding the
    /// name at another address makes the registration fail. So does an
    /// address no peer could connect to, and a registry that is full.
    pub fn register(
        &self,
        registration: &Registration,
        observed: IpAddr,
        now: Instant,
    ) -> Result<Admitted, StoreError> {
        // The observed address may be IPv4-mapped, on a dual-stack listener.
        let addr = SocketAddr::new(registration.ip.unwrap_or(observed).to_canonical(), registration.puerto);
        check_peer_ip(addr.ip()).map_err(|reason| StoreError::Unreachable { reason })?;
        let name = registration.name.clone().unwrap_or_else(|| addr.to_string());
        let key = registration.key;
        let (mut state, now) = self.lock_at(now);
        let expires_at = self.lease(registration.dialect).filter(|_| !self.leases_kept_elsewhere).map(|ttl| now + ttl);
        let incarnation = registration.incarnation.as_deref();
        if let Some(repeat) = incarnation.and_then(|i| state.repeat(i, key, now, self.leases.ttl)) {
            return Ok(repeat);
        }
        let stale = state.claim(&name, addr, key, now)?;
        let original_from = (registration.dialect != Dialect::Native).then_some(observed);
        // Checked before the entries it replaces go, so that a refusal changes nothing.
        self.check_capacity(&state, original_from, &stale)?;
        let replaced: Vec<Contact> =
            stale.into_iter().filter_map(|seq| state.remove(seq, now, LeftReason::Replaced)).collect();

        if let Some(key) = &key {
            state.reserved.release(key);
        }
        let lapsed = incarnation.and_then(|i| state.lapsed.take(i, key));
        let seq = lapsed.as_ref().map_or_else(|| state.entries.new_seq(), |lapsed| lapsed.seq);
        let assigned =
            || least_loaded(self.groups, state.contacts(seq, now).iter().filter_map(|c| c.contact.value.group));
        // Original nodes cannot take part in group communication.
        let group = match registration.dialect {
            Dialect::Native => {
                Some(registration.group.or(lapsed.as_ref().and_then(|l| l.group)).unwrap_or_else(assigned))
            }
            Dialect::Original | Dialect::Clientes => None,
        };
        let id = format!("{}-{seq}", self.id_prefix);
        let entry = Contact { id, name, ip: addr.ip(), puerto: addr.port(), group, key };
        let told_at = state.admit(now);
        let stored = Entry {
            shared: Arc::new(EncodedContact::new(entry.clone())),
            ticket_key: registration.ticket_key.clone().map(Arc::new),
            incarnation: incarnation.map(str::to_owned),
            original_from,
            absences: lapsed.map(|l| l.absences_until(told_at)).unwrap_or_default(),
            standing: Standing { expires_at, renewed_at: now, told_at, session: None },
        };
        state.entries.insert(seq, stored);
        state.history.record(Change::Joined { entry: entry.clone() });
        state.record_coordinators(replaced.iter().map(|c| c.group).chain([group]));
        self.wakeups.publish(&state.history);
        let contacts = state.contacts(seq, now);
        Ok(Admitted { entry, contacts, replaced, repeat: false })
    }

    /// Refuses a new entry past the bounds: in all, and for an original
    /// one registered from `original_from`, among the originals; `replaced`
    /// are the entries it would replace, whose places it takes.
    fn check_capacity(&self, state: &State, original_from: Option<IpAddr>, replaced: &[u64]) -> Result<(), StoreError> {
        let capacity = self.capacity;
        let freed = |counts: &dyn Fn(&Entry) -> bool| {
            replaced.iter().filter_map(|seq| state.entries.get(*seq)).filter(|e| counts(e)).count()
        };
        if state.entries.len() - freed(&|_| true) >= capacity.entries {
            return Err(StoreError::Full { what: "entries", limit: capacity.entries });
        }
        let Some(ip) = original_from else { return Ok(()) };
        if state.entries.originals() - freed(&|e| e.original_from.is_some()) >= capacity.original {
            return Err(StoreError::Full { what: "original-dialect entries", limit: capacity.original });
        }
        if state.entries.originals_from(ip) - freed(&|e| e.original_from == Some(ip)) >= capacity.original_per_ip {
            return Err(StoreError::Full {
                what: "original-dialect entries from this address",
                limit: capacity.original_per_ip,
            });
        }
        Ok(())
    }

    /// A group's live members, oldest first, never none; the oldest coordinates.
    pub fn group(&self, group: u32, now: Instant) -> Result<Vec<Contact>, StoreError> {
        let state = self.lock();
        let members: Vec<Contact> =
            state.entries.group(group).filter(|(_, e)| e.is_live(now)).map(|(_, e)| e.contact().clone()).collect();
        match members.first() {
            Some(_) => Ok(members),
            None if group <= self.groups => Err(StoreError::EmptyGroup { group }),
            None => Err(StoreError::UnknownGroup { group, groups: self.groups }),
        }
    }

    /// Renews a lease, returning its length. Only the entry's key (`caller`) may.
    pub fn heartbeat(&self, id: &str, caller: Option<PublicKey>, now: Instant) -> Result<Duration, StoreError> {
        let (mut state, now) = self.lock_at(now);
        let Some((seq, entry)) = state.live(state.entries.by_id(id), now) else {
            return Err(StoreError::UnknownId { id: id.to_owned() });
        };
        if !entry.belongs_to(caller) {
            return Err(StoreError::Forbidden { op: "heartbeat", holder: Box::new(entry.contact().clone()) });
        }
        // An entry without a lease needs no renewal.
        if let Some(standing) = state.entries.standing_mut(seq).filter(|s| s.expires_at.is_some()) {
            standing.renew(now, self.leases.ttl);
        }
        Ok(self.leases.ttl)
    }

    /// Ties the live entry `id` to `session`, the secure connection that
    /// registered or renewed it, whose loss ends it.
    pub fn hold(&self, id: &str, session: u64, now: Instant) {
        let (mut state, now) = self.lock_at(now);
        let Some((seq, _)) = state.live(state.entries.by_id(id), now) else { return };
        if let Some(standing) = state.entries.standing_mut(seq) {
            standing.session = Some(session);
        }
    }

    /// `session` closed without the entry `id` being deregistered: its node
    /// died, or cannot reach the registry. The entry goes at once (reason
    /// `connection_lost`), unless another session renewed it since, and
    /// leaves its place to its incarnation; its name and address stay its
    /// key's for [`Leases::hold`], and at least until its lease would have ended.
    pub fn session_lost(&self, id: &str, session: u64, now: Instant) -> Option<Contact> {
        let (mut state, now) = self.lock_at(now);
        let (seq, entry) = state.live(state.entries.by_id(id), now)?;
        if entry.standing.session != Some(session) {
            return None;
        }
        let lost = state.remove(seq, now, LeftReason::ConnectionLost)?;
        state.record_coordinators([lost.group]);
        self.wakeups.publish(&state.history);
        Some(lost)
    }

    /// The session the live entry `id` is tied to ([`Store::hold`]).
    pub fn held_by(&self, id: &str) -> Option<u64> {
        let state = self.lock();
        state.entries.by_id(id).and_then(|seq| state.entries.get(seq)).and_then(|entry| entry.standing.session)
    }

    /// Ends the entry `id`, whose lease ran out where it is kept (etcd):
    /// as the sweep ends one whose lease ran out here, it leaves its place
    /// to its incarnation.
    pub fn expire(&self, id: &str, now: Instant) -> Option<Contact> {
        let (mut state, now) = self.lock_at(now);
        let seq = state.entries.by_id(id)?;
        let expired = state.remove(seq, now, LeftReason::Expired)?;
        state.record_coordinators([expired.group]);
        self.wakeups.publish(&state.history);
        Some(expired)
    }

    /// Removes an entry. Only its key (`caller`) may.
    pub fn deregister(&self, key: &EntryKey, caller: Option<PublicKey>, now: Instant) -> Result<Contact, StoreError> {
        let (mut state, now) = self.lock_at(now);
        let (seq, entry) = state.find(key, now)?;
        if !entry.belongs_to(caller) {
            return Err(StoreError::Forbidden { op: "deregister", holder: Box::new(entry.contact().clone()) });
        }
        let left = state.remove(seq, now, LeftReason::Deregistered).expect("indexed entry exists");
        state.record_coordinators([left.group]);
        self.wakeups.publish(&state.history);
        Ok(left)
    }

    pub fn lookup(&self, key: &EntryKey, now: Instant) -> Result<Contact, StoreError> {
        let state = self.lock();
        state.find(key, now).map(|(_, entry)| entry.contact().clone())
    }

    /// Live entries, oldest first.
    pub fn list(&self, now: Instant) -> Vec<Contact> {
        let state = self.lock();
        state.entries.iter().filter(|(_, e)| e.is_live(now)).map(|(_, e)| e.contact().clone()).collect()
    }

    /// The ids of the live entries that have fallen silent (see `Entry::is_silent`).
    pub fn silent(&self, now: Instant) -> Vec<String> {
        let state = self.lock();
        let silent = state.entries.iter().filter(|(_, e)| e.is_live(now) && e.is_silent(now));
        silent.map(|(_, e)| e.contact().id.clone()).collect()
    }

    /// How many live entries there are, by standing and dialect, and how
    /// many groups have a coordinator: what the registry's metrics report.
    pub fn census(&self, now: Instant) -> Census {
        let state = self.lock();
        let mut census = Census::default();
        let mut coordinated = std::collections::HashSet::new();
        for (_, entry) in state.entries.iter().filter(|(_, e)| e.is_live(now)) {
            let dialect = if entry.original_from.is_some() { &mut census.original } else { &mut census.native };
            let standing = if entry.is_silent(now) { &mut dialect.suspect } else { &mut dialect.live };
            *standing += 1;
            coordinated.extend(entry.contact().group);
        }
        census.coordinators = coordinated.len();
        census
    }

    /// Removes expired entries and returns them.
    pub fn sweep(&self, now: Instant) -> Vec<Contact> {
        let (mut state, now) = self.lock_at(now);
        let expired: Vec<u64> = state.entries.iter().filter(|(_, e)| !e.is_live(now)).map(|(seq, _)| seq).collect();
        let expired: Vec<Contact> =
            expired.into_iter().filter_map(|seq| state.remove(seq, now, LeftReason::Expired)).collect();
        state.reserved.drop_expired(now);
        state.record_coordinators(expired.iter().map(|c| c.group));
        self.wakeups.publish(&state.history);
        expired
    }

    /// Follows the revisions of the last change and of the last departure.
    pub fn subscribe(&self) -> Subscription {
        self.wakeups.subscribe()
    }

    /// How a watch starts: after `since` (a revision of the run named
    /// `epoch`, when given) if the history still holds what followed it,
    /// from a snapshot otherwise. Returns the first answer and the revision
    /// the changes that follow come after.
    pub fn watch(&self, since: Option<&Since>) -> Result<Watching, StoreError> {
        let state = self.lock();
        let current = state.history.revision();
        let epoch = self.id_prefix.clone();
        let start = match since {
            None => WatchStart::Snapshot,
            Some(Since { epoch: Some(other), .. }) if *other != epoch => WatchStart::Compacted,
            Some(&Since { revision, .. }) if revision > current => {
                return Err(StoreError::FutureRevision { revision, current })
            }
            Some(&Since { revision, .. }) => match state.history.after(revision, 0) {
                Ok(_) => return Ok(Watching { epoch, revision, start: WatchStart::Resumed, snapshot: None }),
                Err(_) => WatchStart::Compacted,
            },
        };
        Ok(Watching { epoch, revision: current, start, snapshot: Some(state.snapshot()) })
    }

    /// Up to `max` changes after `revision`, oldest first.
    pub fn changes_after(&self, revision: u64, max: usize) -> Result<Vec<Arc<Encoded<WatchEvent>>>, Compacted> {
        self.lock().history.after(revision, max)
    }
}
