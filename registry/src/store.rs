//! The registry's state: live entries, their leases, and the name and address indexes.
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
//! while it was gone, which never heard of it. The registry remembers a
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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use wire::fields::{check_peer_ip, truncate, BadField};

use wire::secure::PublicKey;
use wire::ticket::TicketKey;

use crate::protocol::{Contact, Dialect, Encoded, EncodedContact, EntryKey, ErrorCode, Registration, Since};
use crate::watch::{Change, Compacted, History, LeftReason, Snapshot, WatchEvent, WatchStart, Watching};

/// How long entries live without a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leases {
    /// Lease of a native registration; each heartbeat renews it.
    pub ttl: Duration,
    /// Lifetime of an original-dialect registration, which never heartbeats.
    /// `None` keeps it until it is deregistered.
    pub legacy_ttl: Option<Duration>,
    /// How long the name and address of a keyed entry that lapsed (its
    /// lease ran out, or its session was lost) stay its key's, so that its
    /// node, back with the same key, finds its place and a stranger
    /// `name_taken`. Longer than a lease: a node paused or cut off past its
    /// lease needs time to come back.
    pub hold: Duration,
}

impl Leases {
    /// Leases of `ttl`, held twice as long again after they lapse.
    pub fn new(ttl: Duration, legacy_ttl: Option<Duration>) -> Leases {
        Leases { ttl, legacy_ttl, hold: 2 * ttl }
    }
}

/// How many entries the registry holds at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Entries of every dialect.
    pub entries: usize,
    /// Original-dialect entries, which nobody authenticates, in all.
    pub original: usize,
    /// Original-dialect entries registered from one source address.
    pub original_per_ip: usize,
    /// Changes kept for watchers that resume.
    pub history: usize,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity { entries: 20_000, original: 1024, original_per_ip: 64, history: crate::watch::HISTORY }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("name `{name}` is taken by {} at {} (id {})", holder.name, holder.addr(), holder.id)]
    NameTaken { name: String, holder: Box<Contact> },
    #[error("address {addr} is held by {} (id {}), registered with another key", holder.name, holder.id)]
    AddressTaken { addr: SocketAddr, holder: Box<Contact> },
    #[error("entry {} ({}) belongs to another key; only the node that registered it may {op} it", holder.id, holder.name)]
    Forbidden { op: &'static str, holder: Box<Contact> },
    #[error("the registry holds {limit} {what}, as many as it may; try again once some have left")]
    Full { what: &'static str, limit: usize },
    #[error("field `ip`: {reason}")]
    Unreachable { reason: BadField },
    #[error("no live entry has id `{}`; register again", truncate(id))]
    UnknownId { id: String },
    #[error("no live entry is named `{}`", truncate(name))]
    NotFound { name: String },
    #[error("revision {revision} is ahead of this registry's, {current}: watch without `since`")]
    FutureRevision { revision: u64, current: u64 },
    #[error("group {group} has no live members")]
    EmptyGroup { group: u32 },
    #[error("there is no group {group}: groups are 1 to {groups}, and no node chose {group}")]
    UnknownGroup { group: u32, groups: u32 },
}

impl StoreError {
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::NameTaken { .. } => ErrorCode::NameTaken,
            StoreError::AddressTaken { .. } => ErrorCode::AddressTaken,
            StoreError::Forbidden { .. } => ErrorCode::Forbidden,
            StoreError::Full { .. } => ErrorCode::Full,
            StoreError::Unreachable { .. } | StoreError::FutureRevision { .. } => ErrorCode::BadRequest,
            StoreError::UnknownId { .. } => ErrorCode::UnknownId,
            StoreError::NotFound { .. } => ErrorCode::NotFound,
            StoreError::EmptyGroup { .. } => ErrorCode::EmptyGroup,
            StoreError::UnknownGroup { .. } => ErrorCode::UnknownGroup,
        }
    }
}

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

/// What wakes a watcher: any change, or only a departure, which a watcher
/// holding changes back to send them together is woken for.
#[derive(Debug)]
pub struct Subscription {
    /// The revision of the last change.
    pub changes: tokio::sync::watch::Receiver<u64>,
    /// The revision of the last departure.
    pub departures: tokio::sync::watch::Receiver<u64>,
}

#[derive(Debug)]
pub struct Store {
    state: Mutex<State>,
    /// The revision of the last change, and of the last departure, for watchers to wait on.
    revisions: tokio::sync::watch::Sender<u64>,
    departures: tokio::sync::watch::Sender<u64>,
    leases: Leases,
    capacity: Capacity,
    /// Groups 1 to `groups` are assigned to nodes that choose none.
    groups: u32,
    /// Random per store, so ids handed out before a restart never match new entries.
    id_prefix: String,
}

#[derive(Debug)]
struct Entry {
    shared: Arc<EncodedContact>,
    /// What tickets for its node are sealed under.
    ticket_key: Option<Arc<TicketKey>>,
    expires_at: Option<Instant>,
    /// When its lease was last granted or renewed.
    renewed_at: Instant,
    /// The run of the node that registered it, when the node said.
    incarnation: Option<String>,
    /// Where an original-dialect registration came from, for its per-address bound.
    original_from: Option<IpAddr>,
    /// When it was last told its contacts: admitted, back at its place, or
    /// answered a repeat.
    told_at: Admission,
    /// When it was gone since it first took its place.
    absences: Absences,
    /// The secure session that last registered or renewed it, whose loss
    /// ends it ([`Store::session_lost`]).
    session: Option<u64>,
}

/// When an entry was admitted (or told its contacts again), and in which
/// order among those admitted at the same instant.
type Admission = (Instant, u64);

/// The stretches an entry was gone, from its lapse until it came back to its
/// place: entries told their contacts then never heard of it. At most
/// [`MAX_ABSENCES`]; past that the two oldest merge, counting the time
/// between them as gone too, which may cost an introduction more (dropped by
/// the node's memory of the peers it heard from) but never one less.
#[derive(Debug, Clone, Default)]
struct Absences(Vec<(Admission, Admission)>);

const MAX_ABSENCES: usize = 8;

impl Absences {
    fn add(&mut self, from: Admission, back: Admission) {
        if self.0.len() == MAX_ABSENCES {
            let (oldest, _) = self.0.remove(0);
            self.0[0].0 = oldest;
        }
        self.0.push((from, back));
    }

    /// Whether the entry was gone at `admission`.
    fn cover(&self, admission: Admission) -> bool {
        self.0.iter().any(|&(from, back)| from <= admission && admission < back)
    }
}

/// The name and address of an entry whose session was lost, held for its
/// key until its lease would have ended: whoever cut the connection (a
/// reset from the path) must not take them while the node comes back.
#[derive(Debug, Clone)]
struct Reservation {
    holder: Contact,
    until: Instant,
}

/// The place of an incarnation whose lease ran out.
#[derive(Debug, Clone)]
struct Lapsed {
    seq: u64,
    key: Option<PublicKey>,
    group: Option<u32>,
    /// Its stretches gone before this one.
    absences: Absences,
    /// From when it was gone, in the order of admissions: entries admitted
    /// from then on never heard of it.
    lapsed_at: Admission,
}

impl Entry {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }

    /// Whether it has not been renewed for more than half its lease: a
    /// node that heartbeats (every third of it) never is, one that has
    /// fallen silent (stopped, cut off) is, until its lease ends.
    fn is_silent(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| now.saturating_duration_since(self.renewed_at) * 2 > at - self.renewed_at)
    }

    fn renew(&mut self, now: Instant, ttl: Duration) {
        self.expires_at = self.expires_at.map(|_| now + ttl);
        self.renewed_at = now;
    }

    fn contact(&self) -> &Contact {
        &self.shared.value
    }

    /// Whether `caller` may act on this entry: its own key, or anyone for
    /// an entry registered without one.
    fn belongs_to(&self, caller: Option<PublicKey>) -> bool {
        self.contact().key.is_none_or(|key| Some(key) == caller)
    }
}

/// Entries keyed by registration order, plus indexes into that order.
#[derive(Debug, Default)]
struct State {
    next_seq: u64,
    entries: BTreeMap<u64, Entry>,
    by_id: HashMap<String, u64>,
    by_name: HashMap<String, u64>,
    by_addr: HashMap<SocketAddr, u64>,
    by_incarnation: HashMap<String, u64>,
    by_key: HashMap<PublicKey, u64>,
    /// Places of lapsed incarnations, and their incarnations oldest first;
    /// at most as many as the store may hold entries.
    lapsed: HashMap<String, Lapsed>,
    lapsed_order: VecDeque<String>,
    lapsed_bound: usize,
    /// [`Leases::hold`].
    hold: Duration,
    /// Admissions made, for [`Admission`].
    admissions: u64,
    /// The latest instant a change was made at ([`Store::lock_at`]).
    clock: Option<Instant>,
    /// Reservations by key, and the keys holding each name and address;
    /// at most as many as the store may hold entries.
    reserved: HashMap<PublicKey, Reservation>,
    reserved_names: HashMap<String, PublicKey>,
    reserved_addrs: HashMap<SocketAddr, PublicKey>,
    /// Original-dialect entries held, in all and per source address.
    originals: usize,
    originals_by_ip: HashMap<IpAddr, usize>,
    history: History,
    /// Each group's coordinator (its oldest entry), by id, as last recorded.
    coordinators: BTreeMap<u32, String>,
}

impl State {
    /// Removes an entry, recording why: `reason`, or `expired` for one whose
    /// lease ran out by `now`. One that expired or lost its session leaves
    /// its place to its incarnation.
    fn remove(&mut self, seq: u64, now: Instant, reason: LeftReason) -> Option<Contact> {
        let entry = self.entries.remove(&seq)?;
        let reason = if entry.is_live(now) { reason } else { LeftReason::Expired };
        self.history.record(Change::Left { entry: entry.contact().clone(), reason });
        // A node that did not leave of its own accord may come back to its place.
        if matches!(reason, LeftReason::Expired | LeftReason::ConnectionLost) {
            // Expired at its lease's end, which no one admitted since saw
            // live; lost now, after the admissions made so far.
            let lapsed_at = match entry.expires_at {
                Some(at) if at <= now => (at, 0),
                _ => (now, self.admissions + 1),
            };
            if let Some(incarnation) = &entry.incarnation {
                let (key, group, absences) = (entry.contact().key, entry.contact().group, entry.absences.clone());
                self.remember_lapsed(incarnation.clone(), Lapsed { seq, key, group, absences, lapsed_at });
            }
            // Held from the lapse, and at least until the lease would have ended.
            let until = (lapsed_at.0 + self.hold).max(entry.expires_at.unwrap_or(now));
            self.reserve(entry.contact().clone(), until);
        }
        let contact = entry.contact();
        self.by_id.remove(&contact.id);
        self.by_name.remove(&contact.name);
        self.by_addr.remove(&contact.addr());
        if let Some(key) = &contact.key {
            self.by_key.remove(key);
        }
        // A later run of the same incarnation (after this entry's lease ran
        // out) may hold the index by now.
        if let Some(incarnation) = &entry.incarnation {
            if self.by_incarnation.get(incarnation) == Some(&seq) {
                self.by_incarnation.remove(incarnation);
            }
        }
        if let Some(ip) = entry.original_from {
            self.originals -= 1;
            if let Some(count) = self.originals_by_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    self.originals_by_ip.remove(&ip);
                }
            }
        }
        Some(entry.shared.value.clone())
    }

    /// Records the coordinators of `groups` that changed, once the entries
    /// a request adds or removes are in or out.
    fn record_coordinators(&mut self, groups: impl IntoIterator<Item = Option<u32>>) {
        let groups: std::collections::BTreeSet<u32> = groups.into_iter().flatten().collect();
        for group in groups {
            self.record_coordinator(group);
        }
    }

    fn record_coordinator(&mut self, group: u32) {
        let coordinator = self.entries.values().map(Entry::contact).find(|c| c.group == Some(group)).cloned();
        if self.coordinators.get(&group) == coordinator.as_ref().map(|c| &c.id) {
            return;
        }
        match &coordinator {
            Some(contact) => self.coordinators.insert(group, contact.id.clone()),
            None => self.coordinators.remove(&group),
        };
        self.history.record(Change::Coordinator { group, coordinator });
    }

    fn snapshot(&self) -> Snapshot {
        let entries = self.entries.values().map(|e| e.contact().clone()).collect();
        Snapshot { entries, coordinators: self.coordinators.clone() }
    }

    fn reserve(&mut self, holder: Contact, until: Instant) {
        let Some(key) = holder.key else { return };
        if self.reserved.len() >= self.lapsed_bound {
            return;
        }
        self.release(&key);
        self.reserved_names.insert(holder.name.clone(), key);
        self.reserved_addrs.insert(holder.addr(), key);
        self.reserved.insert(key, Reservation { holder, until });
    }

    fn release(&mut self, key: &PublicKey) {
        if let Some(Reservation { holder, .. }) = self.reserved.remove(key) {
            // Another key may hold them by now.
            if self.reserved_names.get(&holder.name) == Some(key) {
                self.reserved_names.remove(&holder.name);
            }
            if self.reserved_addrs.get(&holder.addr()) == Some(key) {
                self.reserved_addrs.remove(&holder.addr());
            }
        }
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
        let reserved = |by: Option<&PublicKey>| {
            let reservation = self.reserved.get(by?)?;
            (reservation.until > now && Some(reservation.holder.key?) != key)
                .then(|| Box::new(reservation.holder.clone()))
        };
        let lapsed = |seq: Option<&u64>| {
            let entry = self.entries.get(seq?)?;
            let held = entry.expires_at.is_some_and(|at| at <= now && now < at + self.hold);
            (held && Some(entry.contact().key?) != key).then(|| Box::new(entry.contact().clone()))
        };
        let name_holder = reserved(self.reserved_names.get(name)).or_else(|| lapsed(self.by_name.get(name)));
        if let Some(holder) = name_holder {
            return Err(StoreError::NameTaken { name: name.to_owned(), holder });
        }
        if let Some(holder) = reserved(self.reserved_addrs.get(&addr)).or_else(|| lapsed(self.by_addr.get(&addr))) {
            return Err(StoreError::AddressTaken { addr, holder });
        }
        Ok(())
    }

    fn drop_expired_reservations(&mut self, now: Instant) {
        let over: Vec<PublicKey> = self.reserved.iter().filter(|(_, r)| r.until <= now).map(|(key, _)| *key).collect();
        for key in over {
            self.release(&key);
        }
    }

    fn remember_lapsed(&mut self, incarnation: String, lapsed: Lapsed) {
        if self.lapsed.insert(incarnation.clone(), lapsed).is_none() {
            self.lapsed_order.push_back(incarnation);
        }
        while self.lapsed.len() > self.lapsed_bound {
            let Some(oldest) = self.lapsed_order.pop_front() else { break };
            self.lapsed.remove(&oldest);
        }
    }

    /// Takes back the place of `incarnation`, if it lapsed with this key.
    fn take_lapsed(&mut self, incarnation: &str, key: Option<PublicKey>) -> Option<Lapsed> {
        if self.lapsed.get(incarnation)?.key != key {
            return None;
        }
        self.lapsed_order.retain(|i| i != incarnation);
        self.lapsed.remove(incarnation)
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
            .get(&seq)
            .map(|me| self.entries.range(seq + 1..).filter(move |(_, e)| me.absences.cover(e.told_at)));
        earlier
            .chain(missed_me.into_iter().flatten())
            .filter(|(_, e)| e.is_live(now))
            .map(|(_, e)| ToGreet { contact: e.shared.clone(), ticket_key: e.ticket_key.clone() })
            .collect()
    }

    /// Answers a repeat of an incarnation that has a live entry of the same
    /// key, renewing its lease: told its contacts again, now.
    fn repeat(&mut self, incarnation: &str, key: Option<PublicKey>, now: Instant, ttl: Duration) -> Option<Admitted> {
        let (seq, entry) = self.live(self.by_incarnation.get(incarnation), now)?;
        if entry.contact().key != key {
            return None;
        }
        let told_at = self.admit(now);
        let entry = self.entries.get_mut(&seq)?;
        entry.renew(now, ttl);
        entry.told_at = told_at;
        let contact = entry.contact().clone();
        Some(Admitted { entry: contact, contacts: self.contacts(seq, now), replaced: Vec::new(), repeat: true })
    }

    /// The next admission, made `now`.
    fn admit(&mut self, now: Instant) -> Admission {
        self.admissions += 1;
        (now, self.admissions)
    }

    fn take_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq - 1
    }

    /// The live entry `key` names.
    fn find(&self, key: &EntryKey, now: Instant) -> Result<(u64, &Entry), StoreError> {
        let (index, missing) = match key {
            EntryKey::Id(id) => (self.by_id.get(id), StoreError::UnknownId { id: id.clone() }),
            EntryKey::Name(name) => (self.by_name.get(name), StoreError::NotFound { name: name.clone() }),
            EntryKey::Addr(addr) => (self.by_addr.get(addr), StoreError::NotFound { name: addr.to_string() }),
        };
        self.live(index, now).ok_or(missing)
    }

    fn live(&self, seq: Option<&u64>, now: Instant) -> Option<(u64, &Entry)> {
        let seq = *seq?;
        let entry = self.entries.get(&seq)?;
        entry.is_live(now).then_some((seq, entry))
    }
}

impl Store {
    pub fn new(leases: Leases, groups: u32, capacity: Capacity) -> Self {
        Self {
            state: Mutex::new(State {
                lapsed_bound: capacity.entries,
                hold: leases.hold,
                history: History::new(capacity.history),
                ..State::default()
            }),
            revisions: tokio::sync::watch::Sender::new(0),
            departures: tokio::sync::watch::Sender::new(0),
            leases,
            capacity,
            groups: groups.max(1),
            id_prefix: format!("{:08x}", fastrand::u32(..)),
        }
    }

    pub fn leases(&self) -> Leases {
        self.leases
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
        let expires_at = match registration.dialect {
            Dialect::Native => Some(now + self.leases.ttl),
            Dialect::Original | Dialect::Clientes => self.leases.legacy_ttl.map(|ttl| now + ttl),
        };
        let incarnation = registration.incarnation.as_deref();
        if let Some(repeat) = incarnation.and_then(|i| state.repeat(i, key, now, self.leases.ttl)) {
            return Ok(repeat);
        }
        state.check_reserved(&name, addr, key, now)?;
        if let Some((_, holder)) = state.live(state.by_name.get(&name), now) {
            let same_node = match holder.contact().key {
                Some(held) => key == Some(held),
                None => holder.contact().addr() == addr,
            };
            if !same_node {
                return Err(StoreError::NameTaken { name, holder: Box::new(holder.contact().clone()) });
            }
        }
        if let Some((_, holder)) = state.live(state.by_addr.get(&addr), now) {
            if !holder.belongs_to(key) {
                return Err(StoreError::AddressTaken { addr, holder: Box::new(holder.contact().clone()) });
            }
        }
        let mut stale: Vec<u64> =
            [state.by_name.get(&name), state.by_addr.get(&addr)].into_iter().flatten().copied().collect();
        // A node listens at one address under one name: its key's older entry goes.
        stale.extend(key.and_then(|key| state.by_key.get(&key).copied()));
        stale.sort_unstable();
        stale.dedup();
        let original_from = (registration.dialect != Dialect::Native).then_some(observed);
        // Checked before the entries it replaces go, so that a refusal changes nothing.
        self.check_capacity(&state, original_from, &stale)?;
        let replaced: Vec<Contact> =
            stale.into_iter().filter_map(|seq| state.remove(seq, now, LeftReason::Replaced)).collect();

        if let Some(key) = &key {
            state.release(key);
        }
        let lapsed = incarnation.and_then(|i| state.take_lapsed(i, key));
        let seq = lapsed.as_ref().map_or_else(|| state.take_seq(), |lapsed| lapsed.seq);
        // Original nodes cannot take part in group communication.
        let group = match registration.dialect {
            Dialect::Native => Some(
                registration
                    .group
                    .or(lapsed.as_ref().and_then(|l| l.group))
                    .unwrap_or_else(|| self.least_loaded(&state.contacts(seq, now))),
            ),
            Dialect::Original | Dialect::Clientes => None,
        };
        let id = format!("{}-{seq}", self.id_prefix);
        let entry = Contact { id, name, ip: addr.ip(), puerto: addr.port(), group, key };
        state.by_id.insert(entry.id.clone(), seq);
        state.by_name.insert(entry.name.clone(), seq);
        state.by_addr.insert(addr, seq);
        if let Some(key) = key {
            state.by_key.insert(key, seq);
        }
        if let Some(incarnation) = incarnation {
            state.by_incarnation.insert(incarnation.to_owned(), seq);
        }
        if let Some(ip) = original_from {
            state.originals += 1;
            *state.originals_by_ip.entry(ip).or_default() += 1;
        }
        let shared = Arc::new(EncodedContact::new(entry.clone()));
        let ticket_key = registration.ticket_key.clone().map(Arc::new);
        let incarnation = incarnation.map(str::to_owned);
        let told_at = state.admit(now);
        let absences = lapsed.map(|mut l| {
            l.absences.add(l.lapsed_at, told_at);
            l.absences
        });
        let (absences, session) = (absences.unwrap_or_default(), None);
        state.entries.insert(
            seq,
            Entry {
                shared,
                ticket_key,
                expires_at,
                renewed_at: now,
                incarnation,
                original_from,
                told_at,
                absences,
                session,
            },
        );
        state.history.record(Change::Joined { entry: entry.clone() });
        state.record_coordinators(replaced.iter().map(|c| c.group).chain([group]));
        self.publish(&state);
        let contacts = state.contacts(seq, now);
        Ok(Admitted { entry, contacts, replaced, repeat: false })
    }

    /// Refuses a new entry past the bounds: in all, and for an original
    /// one registered from `original_from`, among the originals; `replaced`
    /// are the entries it would replace, whose places it takes.
    fn check_capacity(&self, state: &State, original_from: Option<IpAddr>, replaced: &[u64]) -> Result<(), StoreError> {
        let capacity = self.capacity;
        let freed = |counts: &dyn Fn(&Entry) -> bool| {
            replaced.iter().filter_map(|seq| state.entries.get(seq)).filter(|e| counts(e)).count()
        };
        if state.entries.len() - freed(&|_| true) >= capacity.entries {
            return Err(StoreError::Full { what: "entries", limit: capacity.entries });
        }
        let Some(ip) = original_from else { return Ok(()) };
        if state.originals - freed(&|e| e.original_from.is_some()) >= capacity.original {
            return Err(StoreError::Full { what: "original-dialect entries", limit: capacity.original });
        }
        let from_ip = state.originals_by_ip.get(&ip).copied().unwrap_or(0);
        if from_ip - freed(&|e| e.original_from == Some(ip)) >= capacity.original_per_ip {
            return Err(StoreError::Full {
                what: "original-dialect entries from this address",
                limit: capacity.original_per_ip,
            });
        }
        Ok(())
    }

    /// The assigned group with the fewest live members, the lowest on a tie.
    fn least_loaded(&self, live: &[ToGreet]) -> u32 {
        let mut load = vec![0usize; self.groups as usize];
        for group in live.iter().filter_map(|earlier| earlier.contact.value.group) {
            if let Some(count) = load.get_mut(group as usize - 1) {
                *count += 1;
            }
        }
        let (index, _) =
            load.iter().enumerate().min_by_key(|(i, count)| (**count, *i)).expect("there is at least one group");
        index as u32 + 1
    }

    /// A group's live members, oldest first, never none; the oldest coordinates.
    pub fn group(&self, group: u32, now: Instant) -> Result<Vec<Contact>, StoreError> {
        let state = self.lock();
        let members: Vec<Contact> = state
            .entries
            .values()
            .filter(|e| e.is_live(now) && e.contact().group == Some(group))
            .map(|e| e.contact().clone())
            .collect();
        match members.first() {
            Some(_) => Ok(members),
            None if group <= self.groups => Err(StoreError::EmptyGroup { group }),
            None => Err(StoreError::UnknownGroup { group, groups: self.groups }),
        }
    }

    /// Renews a lease, returning its length. Only the entry's key (`caller`) may.
    pub fn heartbeat(&self, id: &str, caller: Option<PublicKey>, now: Instant) -> Result<Duration, StoreError> {
        let (mut state, now) = self.lock_at(now);
        let seq = state.live(state.by_id.get(id), now).map(|(seq, _)| seq);
        let entry = seq.and_then(|seq| state.entries.get_mut(&seq));
        if let Some(entry) = entry.as_ref().filter(|entry| !entry.belongs_to(caller)) {
            return Err(StoreError::Forbidden { op: "heartbeat", holder: Box::new(entry.contact().clone()) });
        }
        match entry {
            Some(entry) if entry.expires_at.is_some() => {
                entry.renew(now, self.leases.ttl);
                Ok(self.leases.ttl)
            }
            // An entry without a lease needs no renewal.
            Some(_) => Ok(self.leases.ttl),
            None => Err(StoreError::UnknownId { id: id.to_owned() }),
        }
    }

    /// Ties the live entry `id` to `session`, the secure connection that
    /// registered or renewed it, whose loss ends it.
    pub fn hold(&self, id: &str, session: u64, now: Instant) {
        let (mut state, now) = self.lock_at(now);
        let Some((seq, _)) = state.live(state.by_id.get(id), now) else { return };
        if let Some(entry) = state.entries.get_mut(&seq) {
            entry.session = Some(session);
        }
    }

    /// `session` closed without the entry `id` being deregistered: its node
    /// died, or cannot reach the registry. The entry goes at once (reason
    /// `connection_lost`), unless another session renewed it since, and
    /// leaves its place to its incarnation; its name and address stay its
    /// key's for [`Leases::hold`], and at least until its lease would have ended.
    pub fn session_lost(&self, id: &str, session: u64, now: Instant) -> Option<Contact> {
        let (mut state, now) = self.lock_at(now);
        let (seq, entry) = state.live(state.by_id.get(id), now)?;
        if entry.session != Some(session) {
            return None;
        }
        let lost = state.remove(seq, now, LeftReason::ConnectionLost)?;
        state.record_coordinators([lost.group]);
        self.publish(&state);
        Some(lost)
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
        self.publish(&state);
        Ok(left)
    }

    pub fn lookup(&self, key: &EntryKey, now: Instant) -> Result<Contact, StoreError> {
        let state = self.lock();
        state.find(key, now).map(|(_, entry)| entry.contact().clone())
    }

    /// Live entries, oldest first.
    pub fn list(&self, now: Instant) -> Vec<Contact> {
        let state = self.lock();
        state.entries.values().filter(|e| e.is_live(now)).map(|e| e.contact().clone()).collect()
    }

    /// The ids of the live entries that have fallen silent (see `Entry::is_silent`).
    pub fn silent(&self, now: Instant) -> Vec<String> {
        let state = self.lock();
        let silent = state.entries.values().filter(|e| e.is_live(now) && e.is_silent(now));
        silent.map(|e| e.contact().id.clone()).collect()
    }

    /// Removes expired entries and returns them.
    pub fn sweep(&self, now: Instant) -> Vec<Contact> {
        let (mut state, now) = self.lock_at(now);
        let expired: Vec<u64> = state.entries.iter().filter(|(_, e)| !e.is_live(now)).map(|(seq, _)| *seq).collect();
        let expired: Vec<Contact> =
            expired.into_iter().filter_map(|seq| state.remove(seq, now, LeftReason::Expired)).collect();
        state.drop_expired_reservations(now);
        state.record_coordinators(expired.iter().map(|c| c.group));
        self.publish(&state);
        expired
    }

    /// Wakes the watchers waiting for changes, or for departures.
    fn publish(&self, state: &State) {
        let advance = |to: u64| {
            move |revision: &mut u64| {
                let changed = *revision != to;
                *revision = to;
                changed
            }
        };
        self.revisions.send_if_modified(advance(state.history.revision()));
        self.departures.send_if_modified(advance(state.history.departed()));
    }

    /// Follows the revisions of the last change and of the last departure.
    pub fn subscribe(&self) -> Subscription {
        Subscription { changes: self.revisions.subscribe(), departures: self.departures.subscribe() }
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

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(15);

    /// Entries held, expired ones not yet swept included.
    fn held(store: &Store) -> usize {
        store.lock().entries.len()
    }

    fn store() -> Store {
        Store::new(Leases::new(TTL, None), 3, Capacity::default())
    }

    fn native(name: &str, port: u16) -> Registration {
        Registration {
            ip: Some("10.0.0.1".parse().unwrap()),
            incarnation: None,
            puerto: port,
            name: Some(name.into()),
            group: None,
            dialect: Dialect::Native,
            key: None,
            ticket_key: None,
        }
    }

    fn in_group(name: &str, port: u16, group: u32) -> Registration {
        Registration { group: Some(group), ..native(name, port) }
    }

    fn observed() -> IpAddr {
        "192.0.2.1".parse().unwrap()
    }

    fn names(contacts: &[Contact]) -> Vec<&str> {
        contacts.iter().map(|c| c.name.as_str()).collect()
    }

    fn contact_names(admitted: &Admitted) -> Vec<&str> {
        admitted.contacts.iter().map(|earlier| earlier.contact.value.name.as_str()).collect()
    }

    #[test]
    fn each_registration_sees_the_earlier_ones_but_never_itself() {
        let store = store();
        let now = Instant::now();
        let a = store.register(&native("a", 1), observed(), now).unwrap();
        let b = store.register(&native("b", 2), observed(), now).unwrap();
        let c = store.register(&native("c", 3), observed(), now).unwrap();
        assert!(a.contacts.is_empty());
        assert_eq!(contact_names(&b), ["a"]);
        assert_eq!(contact_names(&c), ["a", "b"]);
        assert_eq!(names(&store.list(now)), ["a", "b", "c"]);
        assert_ne!(a.entry.id, b.entry.id);
    }

    #[test]
    fn a_taken_name_is_refused_and_names_its_holder() {
        let store = store();
        let now = Instant::now();
        store.register(&native("a", 1), observed(), now).unwrap();
        let err = store.register(&native("a", 2), observed(), now).unwrap_err();
        assert_eq!(err.code(), ErrorCode::NameTaken);
        assert!(err.to_string().contains("10.0.0.1:1"), "{err}");
        assert_eq!(held(&store), 1);
    }

    #[test]
    fn the_same_node_registering_again_replaces_its_entry() {
        let store = store();
        let now = Instant::now();
        let first = store.register(&native("a", 1), observed(), now).unwrap();
        store.register(&native("b", 2), observed(), now).unwrap();
        let again = store.register(&native("a", 1), observed(), now).unwrap();
        assert_eq!(again.replaced, vec![first.entry.clone()]);
        assert_eq!(contact_names(&again), ["b"]);
        assert_eq!(names(&store.list(now)), ["b", "a"]);
        assert_eq!(store.heartbeat(&first.entry.id, None, now).unwrap_err().code(), ErrorCode::UnknownId);
    }

    #[test]
    fn a_repeated_incarnation_is_answered_as_its_first_admission() {
        let store = store();
        let start = Instant::now();
        let once = |name: &str, port| Registration { incarnation: Some(format!("run-{name}")), ..native(name, port) };
        store.register(&native("x", 9), observed(), start).unwrap();
        let first = store.register(&once("a", 1), observed(), start).unwrap();
        let b = store.register(&native("b", 2), observed(), start).unwrap();
        assert_eq!(contact_names(&b), ["x", "a"]);
        store.deregister(&EntryKey::Name("x".into()), None, start).unwrap();

        let later = start + Duration::from_secs(10);
        let again = store.register(&once("a", 1), observed(), later).unwrap();
        assert!(again.repeat && !first.repeat);
        assert_eq!(again.entry, first.entry, "the same id and entry");
        assert!(contact_names(&again).is_empty(), "only what was admitted before it and is still live");
        assert!(again.replaced.is_empty());
        assert_eq!(names(&store.list(later)), ["a", "b"], "it keeps its place");
        assert_eq!(names(&store.list(later + TTL - Duration::from_secs(1))), ["a"], "the repeat renewed its lease");

        let expired = start + Duration::from_secs(10) + TTL;
        let anew = store.register(&once("a", 1), observed(), expired).unwrap();
        assert!(!anew.repeat, "after its lease, it is admitted again");
    }

    /// `run-NAME`, registered with the key numbered `key`.
    fn incarnation(name: &str, port: u16, key: u8) -> Registration {
        Registration { incarnation: Some(format!("run-{name}")), key: Some(key_numbered(key)), ..native(name, port) }
    }

    fn key_numbered(n: u8) -> PublicKey {
        PublicKey::from_bytes(&[n; 32]).unwrap()
    }

    /// The entry `id`, held by `session`, loses it `at`.
    fn lose(store: &Store, id: &str, session: u64, at: Instant) {
        store.hold(id, session, at);
        store.session_lost(id, session, at).expect("lost");
    }

    #[test]
    fn a_lapsed_incarnation_takes_its_place_back_and_meets_those_admitted_while_it_was_gone() {
        let store = store();
        let start = Instant::now();
        let first = store.register(&incarnation("a", 1, 1), observed(), start).unwrap();
        let b = store.register(&incarnation("b", 2, 2), observed(), start).unwrap();
        assert_eq!(contact_names(&b), ["a"], "b greets a");

        // a stops heartbeating; b goes on. c joins once a's lease is over.
        let gone = start + TTL;
        store.heartbeat(&b.entry.id, b.entry.key, gone - Duration::from_secs(1)).unwrap();
        assert_eq!(names(&store.sweep(gone)), ["a"]);
        let c = store.register(&incarnation("c", 3, 3), observed(), gone).unwrap();
        assert_eq!(contact_names(&c), ["b"], "c never hears of a");

        let back = gone + Duration::from_secs(1);
        let again = store.register(&incarnation("a", 1, 1), observed(), back).unwrap();
        assert!(!again.repeat);
        assert_eq!(again.entry, first.entry, "its place, its id and its group");
        assert_eq!(contact_names(&again), ["c"], "b greets it already; c never heard of it");
        assert_eq!(names(&store.list(back)), ["a", "b", "c"]);

        let repeat = store.register(&incarnation("a", 1, 1), observed(), back).unwrap();
        assert!(repeat.repeat);
        assert_eq!(contact_names(&repeat), ["c"], "a repeat is told as the admission was");
        let d = store.register(&incarnation("d", 4, 4), observed(), back).unwrap();
        assert_eq!(contact_names(&d), ["a", "b", "c"]);
    }

    #[test]
    fn a_node_back_at_its_place_is_told_of_every_earlier_one_again() {
        let store = store();
        let t0 = Instant::now();
        store.register(&incarnation("a", 1, 1), observed(), t0).unwrap();
        let b = store.register(&incarnation("b", 2, 2), observed(), t0).unwrap();
        // a lapses; c comes while it is away; a comes back and greets c.
        let t1 = t0 + TTL;
        store.heartbeat(&b.entry.id, b.entry.key, t1 - Duration::from_secs(1)).unwrap();
        store.sweep(t1);
        store.register(&incarnation("c", 3, 3), observed(), t1).unwrap();
        let a = store.register(&incarnation("a", 1, 1), observed(), t1).unwrap();
        assert_eq!(contact_names(&a), ["c"]);

        // Now c lapses and comes back: the reply that told it of b may be
        // what was lost, so it is told of b again, and of a (whose node may
        // have greeted it already: c's node then drops the introduction).
        let t2 = t1 + TTL;
        for (id, key) in [(&a.entry.id, a.entry.key), (&b.entry.id, b.entry.key)] {
            store.heartbeat(id, key, t2 - Duration::from_secs(2)).unwrap();
        }
        assert_eq!(names(&store.sweep(t2)), ["c"]);
        let c = store.register(&incarnation("c", 3, 3), observed(), t2).unwrap();
        assert_eq!(contact_names(&c), ["a", "b"]);
    }

    /// b was told of a; b's reply was lost, and b asked again while a was
    /// away (its session lost), so b's repeat leaves a out: a, back, is told
    /// of b, last told while a was gone.
    #[test]
    fn a_repeat_while_another_is_away_counts_as_telling_then() {
        let store = store();
        let t0 = Instant::now();
        let a = store.register(&incarnation("a", 1, 1), observed(), t0).unwrap();
        let b = store.register(&incarnation("b", 2, 2), observed(), t0).unwrap();
        assert_eq!(contact_names(&b), ["a"], "the reply that is lost");
        lose(&store, &a.entry.id, 1, t0);
        let again = store.register(&incarnation("b", 2, 2), observed(), t0).unwrap();
        assert!(again.repeat);
        assert!(contact_names(&again).is_empty(), "a is away");
        let a = store.register(&incarnation("a", 1, 1), observed(), t0).unwrap();
        assert_eq!(contact_names(&a), ["b"]);
    }

    /// a is gone twice: b came during the first stretch, and a's reply that
    /// told it of b was lost with its session, so a is told of b again.
    #[test]
    fn a_node_gone_twice_is_told_of_those_that_came_while_it_was_first_gone() {
        let store = store();
        let t0 = Instant::now();
        let a = store.register(&incarnation("a", 1, 1), observed(), t0).unwrap();
        lose(&store, &a.entry.id, 1, t0);
        store.register(&incarnation("b", 2, 2), observed(), t0).unwrap();
        let a = store.register(&incarnation("a", 1, 1), observed(), t0).unwrap();
        assert_eq!(contact_names(&a), ["b"], "the reply that is lost");
        lose(&store, &a.entry.id, 2, t0);
        store.register(&incarnation("c", 3, 3), observed(), t0).unwrap();
        let a = store.register(&incarnation("a", 1, 1), observed(), t0).unwrap();
        assert_eq!(contact_names(&a), ["b", "c"]);
    }

    /// A request takes its instant before it waits for the lock: b, told
    /// its contacts after a's session was lost but with an instant from
    /// before, counts as told then, so a, back, is told of b.
    #[test]
    fn a_registration_that_waited_for_the_lock_counts_as_told_when_it_got_it() {
        let store = store();
        let t0 = Instant::now();
        let lost = t0 + Duration::from_millis(5);
        let a = store.register(&incarnation("a", 1, 1), observed(), t0).unwrap();
        lose(&store, &a.entry.id, 1, lost);
        let b = store.register(&incarnation("b", 2, 2), observed(), t0).unwrap();
        assert!(contact_names(&b).is_empty(), "a is gone");
        let a = store.register(&incarnation("a", 1, 1), observed(), lost + Duration::from_millis(1)).unwrap();
        assert_eq!(contact_names(&a), ["b"]);
    }

    #[test]
    fn past_its_bound_the_oldest_absences_merge_into_one_that_covers_more() {
        let t0 = Instant::now();
        let at = |n: u64| (t0, n);
        let mut absences = Absences::default();
        for n in 0..MAX_ABSENCES as u64 {
            absences.add(at(10 * n), at(10 * n + 5));
        }
        assert!(!absences.cover(at(7)), "between two stretches it was back");
        absences.add(at(100), at(105));
        assert_eq!(absences.0.len(), MAX_ABSENCES);
        assert!(absences.cover(at(7)), "merged: counted as gone");
        assert!(absences.cover(at(0)) && absences.cover(at(102)) && !absences.cover(at(105)));
    }

    #[test]
    fn a_lost_entrys_name_and_address_stay_its_keys_until_its_lease_would_have_ended() {
        let store = store();
        let start = Instant::now();
        let alice = store.register(&incarnation("alice", 1, 1), observed(), start).unwrap();
        store.hold(&alice.entry.id, 7, start);
        assert!(store.session_lost(&alice.entry.id, 6, start).is_none(), "another session's loss changes nothing");
        let lost = store.session_lost(&alice.entry.id, 7, start).expect("its own session's loss ends it");
        assert_eq!(lost.name, "alice");
        assert!(store.list(start).is_empty());

        let mallory = Registration { name: Some("alice".into()), ..incarnation("m", 9, 9) };
        let error = store.register(&mallory, observed(), start).unwrap_err();
        assert_eq!(error.code(), ErrorCode::NameTaken, "{error}");
        let at_alices = Registration { name: Some("m".into()), ..incarnation("m", 1, 9) };
        assert_eq!(store.register(&at_alices, observed(), start).unwrap_err().code(), ErrorCode::AddressTaken);

        let back = store.register(&incarnation("alice", 1, 1), observed(), start).unwrap();
        assert_eq!(back.entry.id, alice.entry.id, "alice takes her place back");

        // Lost again: held for the hold (twice her lease), then anyone's.
        lose(&store, &back.entry.id, 8, start);
        let almost = start + 2 * TTL - Duration::from_secs(1);
        assert_eq!(store.register(&mallory, observed(), almost).unwrap_err().code(), ErrorCode::NameTaken);
        let over = start + 2 * TTL;
        store.sweep(over);
        assert!(store.register(&mallory, observed(), over).is_ok());
    }

    /// b was told of a, but its reply was lost, and its session with it (a
    /// node that gives up on a registration drops the session); then a's
    /// session is lost too, and b comes back while a is away, so it is not
    /// told of a: a, on its return, is told of b, which came back while it
    /// was away.
    #[test]
    fn a_node_back_while_another_was_away_is_introduced_to_it_on_its_return() {
        let store = store();
        let t0 = Instant::now();
        let a = store.register(&incarnation("a", 1, 1), observed(), t0).unwrap();
        let b = store.register(&incarnation("b", 2, 2), observed(), t0).unwrap();
        assert_eq!(contact_names(&b), ["a"], "the reply that is lost");
        lose(&store, &b.entry.id, 2, t0);
        lose(&store, &a.entry.id, 1, t0);
        let b = store.register(&incarnation("b", 2, 2), observed(), t0).unwrap();
        assert!(contact_names(&b).is_empty(), "a is away");
        let a = store.register(&incarnation("a", 1, 1), observed(), t0).unwrap();
        assert_eq!(contact_names(&a), ["b"], "b came back while a was away");
    }

    #[test]
    fn two_nodes_away_in_turn_are_still_introduced_once() {
        let store = store();
        let t0 = Instant::now();
        // x lapses; z comes while x is away, then lapses too; x comes back
        // while z is away, then z comes back: z greets x.
        let x = store.register(&incarnation("x", 1, 1), observed(), t0).unwrap();
        let t1 = t0 + TTL;
        store.sweep(t1);
        let z = store.register(&incarnation("z", 2, 2), observed(), t1).unwrap();
        assert!(contact_names(&z).is_empty(), "x is away");
        let t2 = t1 + TTL;
        store.sweep(t2);
        let x_back = store.register(&incarnation("x", 1, 1), observed(), t2).unwrap();
        assert_eq!(x_back.entry.id, x.entry.id);
        assert!(contact_names(&x_back).is_empty(), "z is away");
        let z_back = store.register(&incarnation("z", 2, 2), observed(), t2 + Duration::from_secs(1)).unwrap();
        assert_eq!(contact_names(&z_back), ["x"], "nobody else greets the pair");
    }

    #[test]
    fn only_its_own_key_takes_a_lapsed_place_and_a_node_that_left_takes_a_new_one() {
        let store = store();
        let start = Instant::now();
        let first = store.register(&incarnation("a", 1, 1), observed(), start).unwrap();
        store.register(&incarnation("left", 2, 2), observed(), start).unwrap();
        store.deregister(&EntryKey::Name("left".into()), Some(key_numbered(2)), start).unwrap();

        let gone = start + TTL;
        let stranger = Registration { name: Some("m".into()), ..incarnation("a", 7, 9) };
        let stranger = store.register(&stranger, observed(), gone).unwrap();
        assert_ne!(stranger.entry.id, first.entry.id, "another key with a's incarnation gets a place of its own");
        let again = store.register(&incarnation("a", 1, 1), observed(), gone).unwrap();
        assert_eq!(again.entry.id, first.entry.id, "a's place waited for a's key");
        assert_eq!(contact_names(&again), ["m"]);

        let rejoined = store.register(&incarnation("left", 2, 2), observed(), gone).unwrap();
        assert_eq!(contact_names(&rejoined), ["a", "m"], "a node that deregistered joins at the end");
    }

    #[test]
    fn the_registry_forgets_the_oldest_lapsed_places_first() {
        let bound = 3;
        let store = Store::new(Leases::new(TTL, None), 3, Capacity { entries: bound, ..Capacity::default() });
        let start = Instant::now();
        let gone = start + TTL;
        let register = |i: u16, now| {
            let registration = Registration { incarnation: Some(format!("run-{i}")), ..native(&i.to_string(), i) };
            store.register(&registration, observed(), now).unwrap().entry.id
        };
        let mut ids: Vec<String> = (0..bound as u16).map(|i| register(i, start)).collect();
        assert_eq!(store.sweep(gone).len(), bound);
        ids.push(register(bound as u16, gone));
        assert_eq!(store.sweep(gone + TTL).len(), 1, "a fourth lapses");
        assert_eq!(store.lock().lapsed.len(), bound);
        assert_ne!(register(0, gone + TTL), ids[0], "the first to lapse was forgotten");
        assert_eq!(register(1, gone + TTL), ids[1]);
    }

    #[test]
    fn a_new_name_at_an_old_address_replaces_the_old_entry() {
        let store = store();
        let now = Instant::now();
        store.register(&native("old", 1), observed(), now).unwrap();
        let new = store.register(&native("new", 1), observed(), now).unwrap();
        assert_eq!(names(&new.replaced), ["old"]);
        assert_eq!(names(&store.list(now)), ["new"]);
    }

    #[test]
    fn an_address_no_peer_can_reach_is_refused() {
        let store = store();
        for ip in ["255.255.255.255", "224.0.0.251", "ff02::1"] {
            let registration = Registration { ip: Some(ip.parse().unwrap()), ..native("a", 1) };
            let error = store.register(&registration, observed(), Instant::now()).unwrap_err();
            assert_eq!(error.code(), ErrorCode::BadRequest);
            assert!(error.to_string().contains("no peer can connect"), "{error}");
        }
        let unspecified_source = Registration { ip: None, ..native("a", 1) };
        assert!(store.register(&unspecified_source, "0.0.0.0".parse().unwrap(), Instant::now()).is_err());
        assert_eq!(held(&store), 0);
    }

    #[test]
    fn long_names_and_ids_are_truncated_in_errors() {
        let error = StoreError::UnknownId { id: "i".repeat(65_000) };
        assert!(error.to_string().len() < 120, "{}", error.to_string().len());
        let error = StoreError::NotFound { name: "n".repeat(128) };
        assert!(error.to_string().len() < 120, "{}", error.to_string().len());
    }

    #[test]
    fn missing_ip_records_the_observed_address_and_defaults_the_name() {
        let store = store();
        let reg = Registration {
            ip: None,
            puerto: 8089,
            name: None,
            group: None,
            incarnation: None,
            dialect: Dialect::Original,
            key: None,
            ticket_key: None,
        };
        let admitted = store.register(&reg, observed(), Instant::now()).unwrap();
        assert_eq!(admitted.entry.addr(), "192.0.2.1:8089".parse().unwrap());
        assert_eq!(admitted.entry.name, "192.0.2.1:8089");
    }

    #[test]
    fn leases_expire_unless_renewed() {
        let store = store();
        let start = Instant::now();
        let a = store.register(&native("a", 1), observed(), start).unwrap();
        store.register(&native("b", 2), observed(), start).unwrap();
        let later = start + TTL - Duration::from_millis(1);
        assert_eq!(store.heartbeat(&a.entry.id, None, later).unwrap(), TTL);
        assert_eq!(store.silent(start + TTL / 2), Vec::<String>::new(), "half a lease of silence is allowed");
        let silent = store.silent(later);
        assert_eq!(silent.len(), 1, "b was silent for most of its lease");
        assert_eq!(store.lookup(&EntryKey::Id(silent[0].clone()), later).unwrap().name, "b");
        let after = start + TTL;
        assert_eq!(names(&store.list(after)), ["a"], "b expired, a was renewed");
        assert!(store.silent(after).is_empty(), "an expired entry is gone, not silent");
        assert_eq!(names(&store.sweep(after)), ["b"]);
        assert_eq!(held(&store), 1);
        assert_eq!(store.lookup(&EntryKey::Name("b".into()), after).unwrap_err().code(), ErrorCode::NotFound);
    }

    #[test]
    fn an_expired_holder_does_not_block_its_name_even_before_the_sweep() {
        let store = store();
        let start = Instant::now();
        store.register(&native("a", 1), observed(), start).unwrap();
        let later = start + TTL;
        let again = store.register(&native("a", 2), observed(), later).unwrap();
        assert!(again.contacts.is_empty());
        assert_eq!(store.lookup(&EntryKey::Name("a".into()), later).unwrap().puerto, 2);
        assert_eq!(held(&store), 1, "the expired holder was replaced, not kept beside");
    }

    #[test]
    fn legacy_entries_have_no_lease_unless_configured() {
        let legacy = Registration {
            ip: None,
            puerto: 1,
            name: None,
            group: None,
            incarnation: None,
            dialect: Dialect::Original,
            key: None,
            ticket_key: None,
        };
        let forever = store();
        let start = Instant::now();
        forever.register(&legacy, observed(), start).unwrap();
        assert!(forever.sweep(start + Duration::from_secs(86_400)).is_empty());

        let bounded = Store::new(Leases::new(TTL, Some(Duration::from_secs(60))), 3, Capacity::default());
        bounded.register(&legacy, observed(), start).unwrap();
        assert_eq!(bounded.sweep(start + Duration::from_secs(60)).len(), 1);
    }

    #[test]
    fn deregister_by_id_or_name_and_lookup() {
        let store = store();
        let now = Instant::now();
        let a = store.register(&native("a", 1), observed(), now).unwrap();
        store.register(&native("b", 2), observed(), now).unwrap();
        assert_eq!(store.lookup(&EntryKey::Name("a".into()), now).unwrap(), a.entry);
        assert_eq!(store.deregister(&EntryKey::Id(a.entry.id.clone()), None, now).unwrap(), a.entry);
        assert_eq!(store.deregister(&EntryKey::Name("b".into()), None, now).unwrap().name, "b");
        assert_eq!(store.deregister(&EntryKey::Name("b".into()), None, now).unwrap_err().code(), ErrorCode::NotFound);
        assert_eq!(store.deregister(&EntryKey::Id(a.entry.id), None, now).unwrap_err().code(), ErrorCode::UnknownId);
        assert_eq!(held(&store), 0);
    }

    #[test]
    fn groups_are_assigned_least_loaded_first_and_chosen_ones_count() {
        let store = store();
        let now = Instant::now();
        store.register(&in_group("chooser", 1, 2), observed(), now).unwrap();
        let groups: Vec<Option<u32>> = (2..=9)
            .map(|p| store.register(&native(&format!("n{p}"), p), observed(), now).unwrap().entry.group)
            .collect();
        assert_eq!(groups, [1, 3, 1, 2, 3, 1, 2, 3].map(Some));
        let legacy = Registration {
            ip: None,
            puerto: 99,
            name: None,
            group: None,
            incarnation: None,
            dialect: Dialect::Original,
            key: None,
            ticket_key: None,
        };
        assert_eq!(store.register(&legacy, observed(), now).unwrap().entry.group, None);
    }

    #[test]
    fn the_oldest_live_member_coordinates_and_the_next_takes_over() {
        let store = store();
        let start = Instant::now();
        store.register(&in_group("first", 1, 2), observed(), start).unwrap();
        let later = start + Duration::from_secs(10);
        let second = store.register(&in_group("second", 2, 2), observed(), later).unwrap();
        store.register(&in_group("other", 3, 1), observed(), later).unwrap();
        let view = store.group(2, later).unwrap();
        assert_eq!(names(&view), ["first", "second"], "the oldest first, so it coordinates");

        let after = start + TTL;
        store.heartbeat(&second.entry.id, None, after - Duration::from_millis(1)).unwrap();
        let view = store.group(2, after).unwrap();
        assert_eq!(view[0].name, "second", "the first member's lease ran out");
    }

    #[test]
    fn empty_and_unknown_groups_are_told_apart() {
        let store = store();
        let now = Instant::now();
        store.register(&in_group("far", 1, 7), observed(), now).unwrap();
        assert_eq!(store.group(2, now).unwrap_err(), StoreError::EmptyGroup { group: 2 });
        assert_eq!(store.group(4, now).unwrap_err(), StoreError::UnknownGroup { group: 4, groups: 3 });
        assert_eq!(store.group(7, now).unwrap().len(), 1, "a chosen group outside 1-3 exists while it has members");
    }

    #[test]
    fn concurrent_registrations_see_each_pair_exactly_once() {
        let store = std::sync::Arc::new(store());
        let now = Instant::now();
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .map(|i| {
                            let port = 1 + t * 50 + i;
                            let admitted = store.register(&native(&format!("n{port}"), port), observed(), now).unwrap();
                            (
                                admitted.entry.name.clone(),
                                contact_names(&admitted).iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut pairs = std::collections::HashSet::new();
        for handle in handles {
            for (name, earlier) in handle.join().unwrap() {
                for other in earlier {
                    let pair = if name < other { (name.clone(), other) } else { (other, name.clone()) };
                    assert!(pairs.insert(pair), "a pair was introduced twice");
                }
            }
        }
        assert_eq!(pairs.len(), 400 * 399 / 2);
    }

    fn keyed(name: &str, port: u16, key: PublicKey) -> Registration {
        Registration { key: Some(key), ..native(name, port) }
    }

    fn key() -> PublicKey {
        wire::secure::Identity::generate().public()
    }

    #[test]
    fn a_keyed_entry_is_its_keys_alone() {
        let store = store();
        let now = Instant::now();
        let (alice, mallory) = (key(), key());
        let entry = store.register(&keyed("alice", 1, alice), observed(), now).unwrap().entry;
        let by_name = store.register(&keyed("alice", 2, mallory), observed(), now).unwrap_err();
        let by_addr = store.register(&keyed("mallory", 1, mallory), observed(), now).unwrap_err();
        let unkeyed = store.register(&native("mallory", 1), observed(), now).unwrap_err();
        assert_eq!(
            (by_name.code(), by_addr.code(), unkeyed.code()),
            (ErrorCode::NameTaken, ErrorCode::AddressTaken, ErrorCode::AddressTaken)
        );
        assert!(by_addr.to_string().contains("alice"), "{by_addr}");
        for caller in [None, Some(mallory)] {
            assert_eq!(store.heartbeat(&entry.id, caller, now).unwrap_err().code(), ErrorCode::Forbidden);
            let key = EntryKey::Name("alice".into());
            assert_eq!(store.deregister(&key, caller, now).unwrap_err().code(), ErrorCode::Forbidden);
        }
        assert_eq!(store.list(now), vec![entry.clone()], "nothing changed");
        assert_eq!(store.heartbeat(&entry.id, Some(alice), now).unwrap(), TTL);
        let moved = store.register(&keyed("alice", 3, alice), observed(), now).unwrap();
        assert_eq!(moved.replaced, vec![entry], "the same key moved to another port");
    }

    #[test]
    fn an_address_spelt_ipv4_mapped_is_the_address_it_maps() {
        let store = store();
        let now = Instant::now();
        let entry = store.register(&keyed("alice", 1, key()), observed(), now).unwrap().entry;
        let mapped: IpAddr = format!("::ffff:{}", entry.ip).parse().unwrap();
        let given = Registration { ip: Some(mapped), ..keyed("mallory", 1, key()) };
        let seen = keyed("mallory", 1, key());

        let errors = [store.register(&given, observed(), now), store.register(&seen, mapped, now)];

        assert!(errors.iter().all(|e| e.as_ref().unwrap_err().code() == ErrorCode::AddressTaken), "{errors:?}");
    }

    /// A node paused or cut off past its lease comes back with its key to
    /// its name and address; a stranger gets them once the hold is over.
    #[test]
    fn a_keyed_name_and_address_are_held_past_the_lease_then_anyones() {
        let held = store();
        let start = Instant::now();
        let alice = key();
        held.register(&keyed("alice", 1, alice), observed(), start).unwrap();
        let lapsed = start + TTL;
        let by_name = held.register(&keyed("alice", 2, key()), observed(), lapsed).unwrap_err();
        let by_addr = held.register(&keyed("mallory", 1, key()), observed(), lapsed).unwrap_err();
        assert_eq!((by_name.code(), by_addr.code()), (ErrorCode::NameTaken, ErrorCode::AddressTaken));
        held.sweep(lapsed + TTL);
        let unkeyed = held.register(&native("alice", 2), observed(), lapsed + TTL).unwrap_err();
        assert_eq!(unkeyed.code(), ErrorCode::NameTaken, "held once swept, against anyone but her key");
        assert!(held.register(&keyed("alice", 1, alice), observed(), lapsed + TTL).is_ok(), "her key takes it back");

        let other = store();
        other.register(&keyed("alice", 1, alice), observed(), start).unwrap();
        let over = start + TTL + 2 * TTL;
        assert_eq!(other.register(&keyed("alice", 1, key()), observed(), over).unwrap().entry.name, "alice");
    }

    #[test]
    fn a_repeated_incarnation_from_another_key_is_no_repeat() {
        let store = store();
        let now = Instant::now();
        let run = |key| Registration { incarnation: Some("run-1".into()), ..keyed("alice", 1, key) };
        store.register(&run(key()), observed(), now).unwrap();
        assert_eq!(store.register(&run(key()), observed(), now).unwrap_err().code(), ErrorCode::NameTaken);
    }

    #[test]
    fn original_entries_are_bounded_per_address_and_in_all() {
        let capacity = Capacity { entries: 100, original: 3, original_per_ip: 2, ..Capacity::default() };
        let store = Store::new(Leases::new(TTL, None), 3, capacity);
        let now = Instant::now();
        let original = |port| Registration { dialect: Dialect::Original, name: None, ..native("", port) };
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        store.register(&original(1), a, now).unwrap();
        store.register(&original(2), a, now).unwrap();
        let per_ip = store.register(&original(3), a, now).unwrap_err();
        assert!(per_ip.to_string().contains("from this address"), "{per_ip}");
        store.register(&original(4), b, now).unwrap();
        let in_all = store.register(&original(5), b, now).unwrap_err();
        assert_eq!(in_all.code(), ErrorCode::Full);
        assert!(store.register(&native("n", 6), a, now).is_ok(), "native entries have their own bound");
        // Registering again at its own address takes its own place: no refusal.
        assert!(store.register(&original(2), a, now).is_ok());
        let key = EntryKey::Addr("10.0.0.1:1".parse().unwrap());
        store.deregister(&key, None, now).unwrap();
        assert!(store.register(&original(3), a, now).is_ok(), "a place freed is a place again");
    }
}
