//! Replay caches: what a party has seen, kept until it would be refused as
//! expired anyway, in bounded memory.
//!
//! A [`Window`] holds at most `capacity` entries. Past that it forgets the
//! entry expiring first and, from then on, refuses ([`Forgotten`]) any new
//! entry expiring no later: what it forgot could otherwise be replayed. So
//! a full cache costs a late arrival a retry, never a replay let through.
//! Tickets ([`crate::ticket::Seen`]) and the first messages of secure
//! handshakes ([`crate::secure`]) keep theirs here.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far apart members' clocks may be: how long a dated message (a
/// ticket, a handshake's first message) stays fresh to its receiver.
pub const CLOCK_AGREEMENT: Duration = Duration::from_secs(300);

/// Now, in Unix milliseconds, as expiry times are written.
pub fn unix_ms() -> u64 {
    millis(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default())
}

/// Milliseconds for the wire, saturating rather than wrapping.
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// An entry a full [`Window`] can no longer tell from one it forgot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forgotten;

/// Entries by key until they expire (Unix milliseconds), each with a value.
#[derive(Debug)]
pub struct Window<K, V> {
    capacity: usize,
    entries: HashMap<K, V>,
    by_expiry: BTreeSet<(u64, K)>,
    /// Entries expiring at or before this are refused unless held.
    floor_ms: u64,
}

impl<K: Copy + Ord + Hash, V> Window<K, V> {
    pub fn new(capacity: usize) -> Window<K, V> {
        Window { capacity: capacity.max(1), entries: HashMap::new(), by_expiry: BTreeSet::new(), floor_ms: 0 }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value kept for `key`, once what expired by `now_ms` is forgotten.
    pub fn get_mut(&mut self, key: &K, now_ms: u64) -> Option<&mut V> {
        self.forget_expired(now_ms);
        self.entries.get_mut(key)
    }

    /// Keeps `key` until `expires_ms`. The caller has looked it up first
    /// ([`Window::get_mut`]): a key held already is replaced.
    pub fn insert(&mut self, key: K, expires_ms: u64, value: V) -> Result<(), Forgotten> {
        if expires_ms <= self.floor_ms {
            return Err(Forgotten);
        }
        if self.entries.len() >= self.capacity {
            if let Some((first_ms, first)) = self.by_expiry.pop_first() {
                self.entries.remove(&first);
                self.floor_ms = self.floor_ms.max(first_ms);
            }
        }
        self.entries.insert(key, value);
        self.by_expiry.insert((expires_ms, key));
        Ok(())
    }

    /// Expired entries are refused before they get here: they need no place.
    fn forget_expired(&mut self, now_ms: u64) {
        while let Some(&(expires_ms, key)) = self.by_expiry.first() {
            if expires_ms > now_ms {
                break;
            }
            self.by_expiry.pop_first();
            self.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_window_forgets_the_first_to_expire_and_refuses_what_it_can_no_longer_tell() {
        let mut window = Window::new(2);
        for key in 1..=3u8 {
            assert_eq!(window.insert(key, u64::from(key) * 1_000, ()), Ok(()));
        }
        assert_eq!(window.len(), 2);
        assert!(window.get_mut(&1, 0).is_none(), "forgotten");
        assert_eq!(window.insert(1, 1_000, ()), Err(Forgotten), "so it is refused");
        assert_eq!(window.insert(4, 1_001, ()), Ok(()), "a later one is not");
        assert!(window.get_mut(&3, 0).is_some());
        // Once they expire, they go by themselves.
        assert!(window.get_mut(&3, 3_000).is_none());
        assert!(window.is_empty());
    }
}
