//! What follows a disruption of a registry replica: each node that was
//! using it moves to another, its session (`registry_moved`, from it) and
//! its watch (`watching` at another replica); after a restart, the
//! replica's return (`listening`). Who logged each, and how many
//! milliseconds after the request.

use std::collections::BTreeMap;
use std::time::SystemTime;

use node::events::Event;
use registry::events::Event as RegistryEvent;
use serde::Serialize;

use super::{ms_after, Verdict};
use crate::stream::Line;
use crate::ui::{self, Logged};

/// The replica each node uses now, by the last of its lines that names
/// one: where it registered, moved to, or watches.
pub fn in_use(lines: &[Line]) -> BTreeMap<String, String> {
    let mut using = BTreeMap::new();
    for line in lines {
        let Some(Logged::Node(record)) = ui::record(line) else { continue };
        let replica = match record.event {
            Event::Registered | Event::Reregistered | Event::Watching => record.registry,
            Event::RegistryMoved => record.to,
            _ => None,
        };
        if let Some(replica) = replica {
            using.insert(line.source.clone(), replica);
        }
    }
    using
}

/// How one node left the replica.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Move {
    /// The replica its session moved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// How long after its session first failed it moved, as it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_ms: Option<u64>,
    /// When it logged the move, after the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_ms: Option<f64>,
    /// When it watched again, at another replica, after the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watching_ms: Option<f64>,
}

impl Move {
    /// When both its session and its watch were back, once they are.
    pub fn back_ms(&self) -> Option<f64> {
        Some(self.moved_ms?.max(self.watching_ms?))
    }
}

/// The nodes that used a replica, and how each has left it so far.
pub struct Moving {
    /// The replica, as the nodes name it (`host:port`).
    replica: String,
    /// Its own name, which prefixes its lines (`registry-2`).
    member: String,
    started: SystemTime,
    pub moves: BTreeMap<String, Move>,
    /// For a restart: when the replica listened again.
    awaits_return: bool,
    pub back_ms: Option<f64>,
}

impl Moving {
    pub fn new(
        replica: String,
        member: String,
        users: impl IntoIterator<Item = String>,
        awaits_return: bool,
        started: SystemTime,
    ) -> Moving {
        let moves = users.into_iter().map(|node| (node, Move::default())).collect();
        Moving { replica, member, started, moves, awaits_return, back_ms: None }
    }

    /// When every node that used it had its session and its watch back.
    pub fn all_ms(&self) -> Option<f64> {
        self.moves.values().map(Move::back_ms).try_fold(0.0, |all: f64, ms| Some(all.max(ms?)))
    }

    /// Who had not done what was awaited, in words.
    pub fn missing(&self) -> Vec<String> {
        let mut missing: Vec<String> = self
            .moves
            .iter()
            .filter(|(_, m)| m.back_ms().is_none())
            .map(|(node, m)| match m.moved_ms {
                None => format!("{node} had not moved from {}", self.member),
                Some(_) => format!("{node} was not watching again"),
            })
            .collect();
        if self.awaits_return && self.back_ms.is_none() {
            missing.push(format!("{} was not listening again", self.member));
        }
        missing
    }
}

impl Verdict for Moving {
    fn take(&mut self, line: &Line, record: Option<&Logged>) {
        match record {
            Some(Logged::Node(record)) => {
                let Some(ms) = ms_after(self.started, record.timestamp.as_deref()) else { return };
                let Some(node) = self.moves.get_mut(&line.source) else { return };
                match record.event {
                    Event::RegistryMoved if node.moved_ms.is_none() && record.from.as_ref() == Some(&self.replica) => {
                        node.to = record.to.clone();
                        node.after_ms = record.after_ms;
                        node.moved_ms = Some(ms);
                    }
                    Event::Watching
                        if node.watching_ms.is_none() && record.registry.as_ref() != Some(&self.replica) =>
                    {
                        node.watching_ms = Some(ms);
                    }
                    _ => {}
                }
            }
            Some(Logged::Registry(record))
                if line.source == self.member && record.event == RegistryEvent::Listening =>
            {
                if let Some(ms) = ms_after(self.started, record.timestamp.as_deref()) {
                    self.back_ms.get_or_insert(ms);
                }
            }
            _ => {}
        }
    }

    fn reached(&self) -> bool {
        self.all_ms().is_some() && (!self.awaits_return || self.back_ms.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn line(source: &str, json: String) -> Line {
        Line { source: source.into(), text: json }
    }

    #[test]
    fn the_nodes_of_a_killed_replica_move_their_session_and_their_watch() {
        let started = SystemTime::now();
        let at = |ms: u64| humantime::format_rfc3339_micros(started + Duration::from_millis(ms)).to_string();
        let history = [
            line("node-1", r#"{"event":"registered","registry":"p-registry-2:8080"}"#.into()),
            line("node-1", r#"{"event":"watching","registry":"p-registry-2:8080"}"#.into()),
            line("node-2", r#"{"event":"registered","registry":"p-registry-2:8080"}"#.into()),
            line("node-2", r#"{"event":"registry_moved","from":"p-registry-2:8080","to":"p-registry-1:8080"}"#.into()),
            line("node-3", r#"{"event":"registered","registry":"p-registry-1:8080"}"#.into()),
        ];
        let using = in_use(&history);
        assert_eq!(using["node-1"], "p-registry-2:8080");
        assert_eq!(using["node-2"], "p-registry-1:8080", "it moved away before");
        let users = using.into_iter().filter(|(_, r)| r == "p-registry-2:8080").map(|(node, _)| node);
        let mut moving = Moving::new("p-registry-2:8080".into(), "registry-2".into(), users, false, started);
        assert_eq!(moving.moves.keys().collect::<Vec<_>>(), ["node-1"]);
        let moved = format!(
            r#"{{"event":"registry_moved","from":"p-registry-2:8080","to":"p-registry-3:8080","after_ms":2,"timestamp":"{}"}}"#,
            at(4)
        );
        for (source, json) in [
            ("node-1", format!(r#"{{"event":"watching","registry":"p-registry-2:8080","timestamp":"{}"}}"#, at(1))),
            ("node-3", moved.clone()),
            ("node-1", moved),
        ] {
            let line = line(source, json);
            moving.take(&line, ui::record(&line).as_ref());
        }
        assert!(!moving.reached(), "its watch is not back yet");
        assert_eq!(moving.missing(), ["node-1 was not watching again"]);
        let line =
            line("node-1", format!(r#"{{"event":"watching","registry":"p-registry-3:8080","timestamp":"{}"}}"#, at(6)));
        moving.take(&line, ui::record(&line).as_ref());
        assert!(moving.reached());
        let node = &moving.moves["node-1"];
        assert_eq!((node.to.as_deref(), node.after_ms), (Some("p-registry-3:8080"), Some(2)));
        assert!(moving.all_ms().is_some_and(|ms| (5.0..7.0).contains(&ms)), "{:?}", moving.all_ms());
    }
}
