//! The watch: every change to the membership, numbered by a revision that
//! grows by one per change, and the bounded history watchers read it from.
//!
//! A watcher starts from a snapshot (the membership at a revision) or
//! resumes after a revision it saw; either way it then reads the history
//! from its revision on. The history holds the last changes only: a watcher
//! that asks for older ones, or falls that far behind, is told so
//! (`compacted`, `lagging`) and starts again from a snapshot. Revisions,
//! `since` and compaction are etcd's, so that an etcd watch could serve the
//! same stream; `epoch` names the registry's run, whose revisions start at 0.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::contact::{Contact, Encoded};

/// How many changes the registry keeps for watchers that resume.
pub const HISTORY: usize = 8192;

/// After this long without a change, a watcher is sent a `progress`
/// message, so that it can tell a quiet registry from a dead connection
/// ([`crate::client::Watch::next`] gives up after three such periods).
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Why an entry left the membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftReason {
    Deregistered,
    Expired,
    /// The same node registered again (a new address, or back after a restart).
    Replaced,
    /// The session that held it closed without a deregistration: its node
    /// died (its kernel closed the connection) or can no longer reach the
    /// registry.
    ConnectionLost,
}

impl std::fmt::Display for LeftReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.serialize(f)
    }
}

/// One change to the membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Change {
    Joined {
        entry: Contact,
    },
    Left {
        entry: Contact,
        reason: LeftReason,
    },
    /// The member that coordinates `group` (its oldest) is another one now;
    /// `None` once the group has no member left.
    Coordinator {
        group: u32,
        coordinator: Option<Contact>,
    },
    /// No change: the registry is still at this revision ([`PROGRESS_EVERY`]).
    /// Never in the history.
    Progress,
}

/// A change as watchers receive it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    pub revision: u64,
    #[serde(flatten)]
    pub change: Change,
}

/// How a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WatchStart {
    /// No `since`: the snapshot, then every change after it.
    Snapshot,
    /// Every change after `since`, which the history still holds.
    Resumed,
    /// The history no longer holds the changes after `since` (or `since`
    /// was of another run of the registry): the snapshot, then every change
    /// after it.
    Compacted,
}

/// Body of the first answer to `watch`; the changes follow, one message each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watching {
    /// This run of the registry.
    pub epoch: String,
    /// The changes that follow are those after this revision.
    pub revision: u64,
    pub start: WatchStart,
    /// The membership at `revision`, oldest first, unless resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Snapshot>,
}

/// The membership at one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Every entry, oldest first.
    pub entries: Vec<Contact>,
    /// Each group's coordinator, by id.
    pub coordinators: BTreeMap<u32, String>,
}

/// The last changes, oldest first.
#[derive(Debug)]
pub struct History {
    changes: VecDeque<Arc<Encoded<WatchEvent>>>,
    capacity: usize,
    /// The revision of the last change; 0 before any.
    revision: u64,
    /// The revision of the last departure (`Left`); 0 before any.
    departed: u64,
}

/// A watcher asked for changes the history no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// The oldest revision the history holds a change for.
    pub oldest: u64,
}

impl Default for History {
    fn default() -> History {
        History::new(HISTORY)
    }
}

impl History {
    pub fn new(capacity: usize) -> History {
        History { changes: VecDeque::new(), capacity: capacity.max(1), revision: 0, departed: 0 }
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn departed(&self) -> u64 {
        self.departed
    }

    /// Records the next change, forgetting the oldest past the capacity.
    pub fn record(&mut self, change: Change) {
        self.revision += 1;
        if matches!(change, Change::Left { .. }) {
            self.departed = self.revision;
        }
        self.changes.push_back(Arc::new(Encoded::new(WatchEvent { revision: self.revision, change })));
        if self.changes.len() > self.capacity {
            self.changes.pop_front();
        }
    }

    /// Up to `max` changes after `revision`, oldest first.
    pub fn after(&self, revision: u64, max: usize) -> Result<Vec<Arc<Encoded<WatchEvent>>>, Compacted> {
        let oldest = self.revision + 1 - self.changes.len() as u64;
        if revision + 1 < oldest {
            return Err(Compacted { oldest });
        }
        let skip = (revision + 1 - oldest) as usize;
        Ok(self.changes.iter().skip(skip).take(max).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn left(name: &str) -> Change {
        let entry = Contact {
            id: format!("id-{name}"),
            name: name.into(),
            ip: "10.0.0.1".parse().unwrap(),
            puerto: 1,
            group: Some(1),
            key: None,
        };
        Change::Left { entry, reason: LeftReason::Expired }
    }

    fn revisions(changes: &[Arc<Encoded<WatchEvent>>]) -> Vec<u64> {
        changes.iter().map(|c| c.value.revision).collect()
    }

    #[test]
    fn the_history_hands_out_the_changes_after_a_revision_while_it_holds_them() {
        let mut history = History::new(3);
        assert_eq!(revisions(&history.after(0, 10).unwrap()), [0u64; 0]);
        for name in ["a", "b", "c", "d"] {
            history.record(left(name));
        }
        assert_eq!((history.revision(), history.departed()), (4, 4));
        assert_eq!(revisions(&history.after(1, 10).unwrap()), [2, 3, 4]);
        assert_eq!(revisions(&history.after(2, 1).unwrap()), [3]);
        assert_eq!(revisions(&history.after(4, 10).unwrap()), [0u64; 0]);
        assert_eq!(history.after(0, 10).unwrap_err(), Compacted { oldest: 2 });
    }

    #[test]
    fn a_change_reads_back_as_it_was_sent() {
        let event = WatchEvent { revision: 7, change: left("a") };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["event"], "left");
        assert_eq!(json["reason"], "expired");
        assert_eq!(json["revision"], 7);
        assert_eq!(serde_json::from_value::<WatchEvent>(json).unwrap(), event);
    }
}
