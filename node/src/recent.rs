//! A set that remembers at most a fixed number of keys, forgetting the
//! oldest first.
//!
//! The node remembers the peers it has met and who has greeted it, keyed by
//! what peers send; anyone can send greetings, so these sets are bounded.
//! The oldest key is the right one to forget: a greeter repeats a greeting
//! only within its few seconds of retries, and the peers met long ago
//! matter only if the registry restarts while the set is over capacity.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

/// How many peers a node remembers: more than the largest mesh the launcher
/// starts (10,000), and a few MB at most however many fake greetings arrive.
pub const REMEMBERED_PEERS: usize = 16_384;

#[derive(Debug)]
pub struct Recent<K> {
    capacity: usize,
    keys: HashSet<K>,
    /// The keys, oldest first.
    order: VecDeque<K>,
}

impl<K: Hash + Eq + Clone> Recent<K> {
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), keys: HashSet::new(), order: VecDeque::new() }
    }

    /// Remembers `key`, returning whether it is new. When full, the oldest
    /// key is forgotten to make room.
    pub fn insert(&mut self, key: K) -> bool {
        if self.keys.contains(&key) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.keys.remove(&oldest);
            }
        }
        self.order.push_back(key.clone());
        self.keys.insert(key)
    }

    pub fn contains(&self, key: &K) -> bool {
        self.keys.contains(key)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

impl<K: Hash + Eq + Clone> Default for Recent<K> {
    fn default() -> Self {
        Self::new(REMEMBERED_PEERS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_up_to_its_capacity_and_forgets_the_oldest() {
        let mut recent = Recent::new(3);
        assert!(recent.insert(1) && recent.insert(2) && recent.insert(3));
        assert!(!recent.insert(2), "a repeat is not new");
        assert!(recent.insert(4));
        assert_eq!(recent.len(), 3);
        assert!(!recent.contains(&1), "the oldest was forgotten");
        assert!(recent.contains(&2) && recent.contains(&3) && recent.contains(&4));
    }

    #[test]
    fn a_flood_stays_bounded() {
        let mut recent = Recent::new(100);
        for key in 0..100_000u32 {
            recent.insert(key);
        }
        assert_eq!(recent.len(), 100);
        assert_eq!(recent.keys.len(), 100);
    }
}
