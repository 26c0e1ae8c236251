//! What the store keeps of entries that lapsed (their lease ran out, or
//! their session was lost) without leaving of their own accord: the places
//! of their incarnations, the stretches each was gone, and the names and
//! addresses held for their keys while their nodes come back.
//!
//! Both the places and the reservations are bounded by as many entries as
//! the store may hold, so that strangers registering and lapsing in turn
//! cannot make them grow without end.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use tokio::time::Instant;
use wire::secure::PublicKey;

use crate::protocol::Contact;

/// When an entry was admitted (or told its contacts again), and in which
/// order among those admitted at the same instant.
pub(super) type Admission = (Instant, u64);

/// The stretches an entry was gone, from its lapse until it came back to its
/// place: entries told their contacts then never heard of it. At most
/// [`MAX_ABSENCES`]; past that the two oldest merge, counting the time
/// between them as gone too, which may cost an introduction more (dropped by
/// the node's memory of the peers it heard from) but never one less.
#[derive(Debug, Clone, Default)]
pub(super) struct Absences(Vec<(Admission, Admission)>);

const MAX_ABSENCES: usize = 8;

impl Absences {
    pub(super) fn add(&mut self, from: Admission, back: Admission) {
        if self.0.len() == MAX_ABSENCES {
            let (oldest, _) = self.0.remove(0);
            self.0[0].0 = oldest;
        }
        self.0.push((from, back));
    }

    /// Whether the entry was gone at `admission`.
    pub(super) fn cover(&self, admission: Admission) -> bool {
        self.0.iter().any(|&(from, back)| from <= admission && admission < back)
    }
}

/// The place of an incarnation whose lease ran out.
#[derive(Debug, Clone)]
pub(super) struct Lapsed {
    pub(super) seq: u64,
    pub(super) key: Option<PublicKey>,
    pub(super) group: Option<u32>,
    /// Its stretches gone before this one.
    pub(super) absences: Absences,
    /// From when it was gone, in the order of admissions: entries admitted
    /// from then on never heard of it.
    pub(super) lapsed_at: Admission,
}

impl Lapsed {
    /// Its stretches gone, this one included, now that it is back `at`.
    pub(super) fn absences_until(mut self, at: Admission) -> Absences {
        self.absences.add(self.lapsed_at, at);
        self.absences
    }
}

/// Places of lapsed incarnations, and their incarnations oldest first, so
/// that past the bound the oldest is forgotten first.
#[derive(Debug, Default)]
pub(super) struct LapsedPlaces {
    places: HashMap<String, Lapsed>,
    order: VecDeque<String>,
    bound: usize,
}

impl LapsedPlaces {
    pub(super) fn new(bound: usize) -> LapsedPlaces {
        LapsedPlaces { bound, ..LapsedPlaces::default() }
    }

    pub(super) fn remember(&mut self, incarnation: String, lapsed: Lapsed) {
        if self.places.insert(incarnation.clone(), lapsed).is_none() {
            self.order.push_back(incarnation);
        }
        while self.places.len() > self.bound {
            let Some(oldest) = self.order.pop_front() else { break };
            self.places.remove(&oldest);
        }
    }

    /// Takes back the place of `incarnation`, if it lapsed with this key.
    pub(super) fn take(&mut self, incarnation: &str, key: Option<PublicKey>) -> Option<Lapsed> {
        if self.places.get(incarnation)?.key != key {
            return None;
        }
        self.order.retain(|i| i != incarnation);
        self.places.remove(incarnation)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.places.len()
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

/// Reservations by key, and the keys holding each name and address.
#[derive(Debug, Default)]
pub(super) struct Reservations {
    by_key: HashMap<PublicKey, Reservation>,
    names: HashMap<String, PublicKey>,
    addrs: HashMap<SocketAddr, PublicKey>,
    bound: usize,
}

impl Reservations {
    pub(super) fn new(bound: usize) -> Reservations {
        Reservations { bound, ..Reservations::default() }
    }

    /// Holds the name and address of `holder` for its key until `until`;
    /// an entry without a key has nothing to hold them for.
    pub(super) fn reserve(&mut self, holder: Contact, until: Instant) {
        let Some(key) = holder.key else { return };
        if self.by_key.len() >= self.bound {
            return;
        }
        self.release(&key);
        self.names.insert(holder.name.clone(), key);
        self.addrs.insert(holder.addr(), key);
        self.by_key.insert(key, Reservation { holder, until });
    }

    pub(super) fn release(&mut self, key: &PublicKey) {
        if let Some(Reservation { holder, .. }) = self.by_key.remove(key) {
            // Another key may hold them by now.
            if self.names.get(&holder.name) == Some(key) {
                self.names.remove(&holder.name);
            }
            if self.addrs.get(&holder.addr()) == Some(key) {
                self.addrs.remove(&holder.addr());
            }
        }
    }

    /// Whom `name` is held for against `key` at `now`, if anyone.
    pub(super) fn name_holder(&self, name: &str, key: Option<PublicKey>, now: Instant) -> Option<&Contact> {
        self.holder(self.names.get(name), key, now)
    }

    /// Whom `addr` is held for against `key` at `now`, if anyone.
    pub(super) fn addr_holder(&self, addr: SocketAddr, key: Option<PublicKey>, now: Instant) -> Option<&Contact> {
        self.holder(self.addrs.get(&addr), key, now)
    }

    fn holder(&self, by: Option<&PublicKey>, key: Option<PublicKey>, now: Instant) -> Option<&Contact> {
        let reservation = self.by_key.get(by?)?;
        (reservation.until > now && Some(reservation.holder.key?) != key).then_some(&reservation.holder)
    }

    pub(super) fn drop_expired(&mut self, now: Instant) {
        let over: Vec<PublicKey> = self.by_key.iter().filter(|(_, r)| r.until <= now).map(|(key, _)| *key).collect();
        for key in over {
            self.release(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
