//! Where entries live: a [`Table`] of them in the order of their places,
//! with the indexes the membership rules look them up by.
//!
//! The table alone inserts and removes entries, and every index with them,
//! so that no index can name an entry that is gone or miss one that is in.
//! It hands out entries to read and their [`Standing`] to change, never an
//! entry whole: what an entry is indexed by stays as it was stored. Its
//! methods are the store's storage interface, what a second backend (etcd)
//! would implement; the rules stay in [`super`].

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeBounds;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use wire::secure::PublicKey;
use wire::ticket::TicketKey;

use super::lapsed::{Absences, Admission};
use crate::protocol::{Contact, EncodedContact};

/// An entry as stored. All but its [`Standing`] is fixed once it is in.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) shared: Arc<EncodedContact>,
    /// What tickets for its node are sealed under.
    pub(super) ticket_key: Option<Arc<TicketKey>>,
    /// The run of the node that registered it, when the node said.
    pub(super) incarnation: Option<String>,
    /// Where an original-dialect registration came from, for its per-address bound.
    pub(super) original_from: Option<IpAddr>,
    /// When it was gone since it first took its place.
    pub(super) absences: Absences,
    pub(super) standing: Standing,
}

/// What changes of an entry while it is stored: its lease, when it was
/// last told its contacts, and the session that holds it.
#[derive(Debug)]
pub(super) struct Standing {
    pub(super) expires_at: Option<Instant>,
    /// When its lease was last granted or renewed.
    pub(super) renewed_at: Instant,
    /// When it was last told its contacts: admitted, back at its place, or
    /// answered a repeat.
    pub(super) told_at: Admission,
    /// The secure session that last registered or renewed it, whose loss
    /// ends it ([`super::Store::session_lost`]).
    pub(super) session: Option<u64>,
}

impl Standing {
    pub(super) fn renew(&mut self, now: Instant, ttl: Duration) {
        self.expires_at = self.expires_at.map(|_| now + ttl);
        self.renewed_at = now;
    }
}

impl Entry {
    pub(super) fn is_live(&self, now: Instant) -> bool {
        self.standing.expires_at.is_none_or(|at| at > now)
    }

    /// Whether it has not been renewed for more than half its lease: a
    /// node that heartbeats (every third of it) never is, one that has
    /// fallen silent (stopped, cut off) is, until its lease ends.
    pub(super) fn is_silent(&self, now: Instant) -> bool {
        let Standing { expires_at, renewed_at, .. } = self.standing;
        expires_at.is_some_and(|at| now.saturating_duration_since(renewed_at) * 2 > at - renewed_at)
    }

    pub(super) fn contact(&self) -> &Contact {
        &self.shared.value
    }

    /// Whether `caller` may act on this entry: its own key, or anyone for
    /// an entry registered without one.
    pub(super) fn belongs_to(&self, caller: Option<PublicKey>) -> bool {
        self.contact().key.is_none_or(|key| Some(key) == caller)
    }
}

/// Entries keyed by their place (`seq`, the order of registration), plus
/// indexes into that order.
#[derive(Debug, Default)]
pub(super) struct Table {
    next_seq: u64,
    entries: BTreeMap<u64, Entry>,
    by_id: HashMap<String, u64>,
    by_name: HashMap<String, u64>,
    by_addr: HashMap<SocketAddr, u64>,
    by_key: HashMap<PublicKey, u64>,
    by_incarnation: HashMap<String, u64>,
    /// Each group's entries, oldest first.
    by_group: HashMap<u32, BTreeSet<u64>>,
    /// Original-dialect entries held, in all and per source address.
    originals: usize,
    originals_by_ip: HashMap<IpAddr, usize>,
}

impl Table {
    /// A place after every place given so far.
    pub(super) fn new_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq - 1
    }

    /// Stores `entry` at `seq`, a place no entry holds, indexing it.
    pub(super) fn insert(&mut self, seq: u64, entry: Entry) {
        let contact = entry.contact();
        self.by_id.insert(contact.id.clone(), seq);
        self.by_name.insert(contact.name.clone(), seq);
        self.by_addr.insert(contact.addr(), seq);
        if let Some(key) = contact.key {
            self.by_key.insert(key, seq);
        }
        if let Some(group) = contact.group {
            self.by_group.entry(group).or_default().insert(seq);
        }
        if let Some(incarnation) = &entry.incarnation {
            self.by_incarnation.insert(incarnation.clone(), seq);
        }
        if let Some(ip) = entry.original_from {
            self.originals += 1;
            *self.originals_by_ip.entry(ip).or_default() += 1;
        }
        self.entries.insert(seq, entry);
    }

    /// Takes the entry at `seq` out, and out of every index.
    pub(super) fn remove(&mut self, seq: u64) -> Option<Entry> {
        let entry = self.entries.remove(&seq)?;
        let contact = entry.contact();
        unlink(&mut self.by_id, &contact.id, seq);
        unlink(&mut self.by_name, &contact.name, seq);
        unlink(&mut self.by_addr, &contact.addr(), seq);
        if let Some(key) = &contact.key {
            unlink(&mut self.by_key, key, seq);
        }
        if let Some(group) = contact.group {
            if let Some(members) = self.by_group.get_mut(&group) {
                members.remove(&seq);
                if members.is_empty() {
                    self.by_group.remove(&group);
                }
            }
        }
        if let Some(incarnation) = &entry.incarnation {
            unlink(&mut self.by_incarnation, incarnation, seq);
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
        Some(entry)
    }

    pub(super) fn get(&self, seq: u64) -> Option<&Entry> {
        self.entries.get(&seq)
    }

    pub(super) fn standing_mut(&mut self, seq: u64) -> Option<&mut Standing> {
        self.entries.get_mut(&seq).map(|entry| &mut entry.standing)
    }

    /// The entries at the places in `seqs`, in order.
    pub(super) fn range(&self, seqs: impl RangeBounds<u64>) -> impl Iterator<Item = (u64, &Entry)> {
        self.entries.range(seqs).map(|(seq, entry)| (*seq, entry))
    }

    /// Every entry, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, &Entry)> {
        self.range(..)
    }

    /// The entries of `group`, in order.
    pub(super) fn group(&self, group: u32) -> impl Iterator<Item = (u64, &Entry)> {
        let seqs = self.by_group.get(&group).into_iter().flatten().copied();
        seqs.filter_map(|seq| self.entries.get(&seq).map(|entry| (seq, entry)))
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Original-dialect entries, in all.
    pub(super) fn originals(&self) -> usize {
        self.originals
    }

    /// Original-dialect entries registered from `ip`.
    pub(super) fn originals_from(&self, ip: IpAddr) -> usize {
        self.originals_by_ip.get(&ip).copied().unwrap_or(0)
    }

    pub(super) fn by_id(&self, id: &str) -> Option<u64> {
        self.by_id.get(id).copied()
    }

    pub(super) fn by_name(&self, name: &str) -> Option<u64> {
        self.by_name.get(name).copied()
    }

    pub(super) fn by_addr(&self, addr: SocketAddr) -> Option<u64> {
        self.by_addr.get(&addr).copied()
    }

    pub(super) fn by_key(&self, key: &PublicKey) -> Option<u64> {
        self.by_key.get(key).copied()
    }

    /// The last entry of `incarnation` stored.
    pub(super) fn by_incarnation(&self, incarnation: &str) -> Option<u64> {
        self.by_incarnation.get(incarnation).copied()
    }
}

/// Drops `key` from `index` if it names the place `seq`. Names, addresses
/// and keys belong to one entry at a time, but an incarnation admitted
/// again after its lease ran out (before the sweep removed its old entry)
/// moves its index to the new place.
fn unlink<K, Q>(index: &mut HashMap<K, u64>, key: &Q, seq: u64)
where
    K: Borrow<Q> + Eq + Hash,
    Q: Eq + Hash + ?Sized,
{
    if index.get(key) == Some(&seq) {
        index.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry of group `group`, with a key and an incarnation of its own.
    fn entry(name: &str, port: u16, group: u32) -> Entry {
        let key = PublicKey::from_bytes(&[port as u8; 32]).unwrap();
        let ip = [10, 0, 0, 1].into();
        let contact = Contact {
            id: format!("id-{name}"),
            name: name.into(),
            ip,
            puerto: port,
            group: Some(group),
            key: Some(key),
        };
        let now = Instant::now();
        Entry {
            shared: Arc::new(EncodedContact::new(contact)),
            ticket_key: None,
            incarnation: Some(format!("run-{name}")),
            original_from: None,
            absences: Absences::default(),
            standing: Standing { expires_at: None, renewed_at: now, told_at: (now, 0), session: None },
        }
    }

    fn seqs<'a>(entries: impl Iterator<Item = (u64, &'a Entry)>) -> Vec<u64> {
        entries.map(|(seq, _)| seq).collect()
    }

    #[test]
    fn an_entry_taken_out_leaves_no_index_behind_and_its_place_can_be_taken_back() {
        let mut table = Table::default();
        let (a, b) = (table.new_seq(), table.new_seq());
        let from: IpAddr = [192, 0, 2, 1].into();
        table.insert(a, Entry { original_from: Some(from), ..entry("a", 1, 1) });
        table.insert(b, entry("b", 2, 1));
        assert_eq!((table.originals(), table.originals_from(from), seqs(table.group(1))), (1, 1, vec![a, b]));

        let gone = table.remove(a).expect("stored");
        let key = gone.contact().key.expect("keyed");
        let found = (table.by_id("id-a"), table.by_name("a"), table.by_addr(gone.contact().addr()));
        assert_eq!(found, (None, None, None));
        assert_eq!((table.by_key(&key), table.by_incarnation("run-a")), (None, None));
        assert_eq!((table.originals(), table.originals_from(from), table.len()), (0, 0, 1));
        assert!(table.remove(a).is_none());

        table.insert(a, entry("a", 1, 2));
        assert_eq!((seqs(table.group(1)), seqs(table.group(2))), (vec![b], vec![a]));
        assert_eq!((table.by_name("a"), seqs(table.iter())), (Some(a), vec![a, b]));
        assert_eq!(table.new_seq(), 2, "a place taken back is no new one");
    }

    /// An incarnation admitted again while its old entry, expired, awaits
    /// the sweep: the index follows the new place, and stays when the old goes.
    #[test]
    fn an_incarnation_indexes_its_latest_place() {
        let mut table = Table::default();
        let (old, new) = (table.new_seq(), table.new_seq());
        table.insert(old, entry("a", 1, 1));
        table.insert(new, Entry { incarnation: Some("run-a".into()), ..entry("b", 2, 1) });
        table.remove(old);
        assert_eq!(table.by_incarnation("run-a"), Some(new));
    }
}
