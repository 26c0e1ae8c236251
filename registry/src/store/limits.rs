//! The store's bounds: how long entries live, and how many it holds.

use std::time::Duration;

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
