//! What follows a disruption of an etcd member: which member leads the
//! cluster then, and how long until the registry takes a registration
//! again.
//!
//! Who leads is read from the members' own logs, not asked of etcd: a
//! member that wins an election logs `became leader at term <n>` with its
//! own timestamp, so the report times the election by etcd's clock, the
//! same way every other report is timed by its lines, in every runtime,
//! and without reaching etcd's client port, which only the project network
//! does. The leader is the member whose line has the highest term.
//!
//! That the registry works again is a registration: the launcher's probe
//! (`crate::probe`) registers through a replica over and over from the
//! request on, and the replica that takes it logs `registered` naming it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use registry::events::Event as RegistryEvent;
use serde::Serialize;

use super::{ms_after, Verdict};
use crate::stream::Line;
use crate::ui::{self, Logged};

/// The member leading the cluster, by the lines its members logged: of
/// those whose last change of role made them leader (one that lost its
/// quorum stepped down since), the one elected at the highest term, and
/// that term.
pub fn leader<'a>(lines: impl IntoIterator<Item = &'a Line>) -> Option<(String, u64)> {
    let mut last: BTreeMap<&str, (bool, u64)> = BTreeMap::new();
    for line in lines {
        if let Some(Logged::Etcd(record)) = ui::record(line) {
            if let Some(change) = record.became() {
                last.insert(&line.source, change);
            }
        }
    }
    let leaders = last.into_iter().filter(|(_, (leads, _))| *leads);
    leaders.max_by_key(|(_, (_, term))| *term).map(|(member, (_, term))| (member.to_owned(), term))
}

/// Who leads after the disruption.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Leader {
    pub member: String,
    pub term: u64,
    /// When it became leader, after the request; `None` when it led already.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elected_ms: Option<f64>,
}

/// The registration that went through again.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Registered {
    /// The replica that took it.
    pub replica: String,
    pub ms: f64,
}

/// The leader and the probe's registration, as they are logged.
pub struct Electing {
    started: SystemTime,
    /// The term that led before the request: a leader elected since has a higher one.
    before: u64,
    probe: String,
    pub leader: Option<Leader>,
    pub registered: Option<Registered>,
}

impl Electing {
    /// `before` led when `victim` was disrupted: if it is another member,
    /// it leads still, unless a member becomes leader at a higher term;
    /// otherwise one must. `probe` is the name the probe registers.
    pub fn new(victim: &str, before: Option<(String, u64)>, probe: String, started: SystemTime) -> Electing {
        let term = before.as_ref().map_or(0, |(_, term)| *term);
        let leader = before.filter(|(member, _)| member != victim).map(|(member, term)| Leader {
            member,
            term,
            elected_ms: None,
        });
        Electing { started, before: term, probe, leader, registered: None }
    }

    /// What had not happened, in words.
    pub fn missing(&self) -> Vec<String> {
        let mut missing = Vec::new();
        if self.leader.is_none() {
            missing.push("no etcd member had become leader".to_owned());
        }
        if self.registered.is_none() {
            missing.push("no replica had taken a registration".to_owned());
        }
        missing
    }
}

impl Verdict for Electing {
    fn take(&mut self, line: &Line, record: Option<&Logged>) {
        match record {
            Some(Logged::Etcd(record)) => {
                let Some(term) = record.became_leader() else { return };
                let Some(ms) = ms_after(self.started, Some(&record.ts)) else { return };
                let newer = self.leader.as_ref().map_or(self.before, |leader| leader.term);
                if term > newer || (self.leader.is_none() && term >= newer) {
                    self.leader = Some(Leader { member: line.source.clone(), term, elected_ms: Some(ms) });
                }
            }
            Some(Logged::Registry(record))
                if record.event == RegistryEvent::Registered && record.name.as_deref() == Some(&self.probe) =>
            {
                if let Some(ms) = ms_after(self.started, record.timestamp.as_deref()) {
                    self.registered.get_or_insert(Registered { replica: line.source.clone(), ms });
                }
            }
            _ => {}
        }
    }

    fn reached(&self) -> bool {
        self.leader.is_some() && self.registered.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn line(source: &str, text: String) -> Line {
        Line { source: source.into(), text }
    }

    fn elected(source: &str, term: u64, ts: &str) -> Line {
        line(source, format!(r#"{{"level":"info","ts":"{ts}","msg":"8e9e05c5 became leader at term {term}"}}"#))
    }

    #[test]
    fn the_leader_is_the_member_elected_at_the_highest_term() {
        let lines = [
            elected("etcd-2", 2, "2026-01-01T00:00:00.000Z"),
            line("etcd-1", r#"{"level":"info","ts":"2026-01-01T00:00:00.000Z","msg":"became follower"}"#.into()),
            elected("etcd-3", 4, "2026-01-01T00:00:01.000Z"),
            line("node-1", r#"{"event":"registered"}"#.into()),
        ];
        assert_eq!(leader(&lines), Some(("etcd-3".to_owned(), 4)));
        assert_eq!(leader(&lines[..2]), Some(("etcd-2".to_owned(), 2)));
        assert_eq!(leader(&lines[3..]), None);
        let stepped_down = line(
            "etcd-3",
            r#"{"level":"info","ts":"2026-01-01T00:00:02.000Z","msg":"8e9e05c5 became follower at term 4"}"#.into(),
        );
        assert_eq!(leader(lines.iter().chain([&stepped_down])), Some(("etcd-2".to_owned(), 2)));
    }

    #[test]
    fn a_killed_leader_is_followed_by_a_new_one_and_a_registration() {
        let started = SystemTime::now();
        let at = |ms: u64| humantime::format_rfc3339_millis(started + Duration::from_millis(ms)).to_string();
        let mut electing = Electing::new("etcd-2", Some(("etcd-2".into(), 2)), "probe-1".into(), started);
        assert!(electing.leader.is_none());
        let registered = |name: &str, ms| {
            line("registry-3", format!(r#"{{"event":"registered","name":"{name}","timestamp":"{}"}}"#, at(ms)))
        };
        for line in [elected("etcd-2", 2, &at(1)), registered("node-9", 5), elected("etcd-1", 3, &at(310))] {
            electing.take(&line, ui::record(&line).as_ref());
        }
        // The first line is of the term that led before.
        let leader = electing.leader.clone().unwrap();
        assert_eq!((leader.member.as_str(), leader.term), ("etcd-1", 3));
        assert!(leader.elected_ms.is_some_and(|ms| (309.0..311.0).contains(&ms)), "{leader:?}");
        assert!(!electing.reached(), "no registration of the probe yet");
        let line = registered("probe-1", 420);
        electing.take(&line, ui::record(&line).as_ref());
        assert!(electing.reached());
        assert_eq!(electing.registered.as_ref().unwrap().replica, "registry-3");
        assert!(electing.registered.as_ref().unwrap().ms >= 419.0);
    }

    #[test]
    fn a_follower_killed_leaves_the_leader_leading() {
        let electing = Electing::new("etcd-1", Some(("etcd-2".into(), 2)), "probe".into(), SystemTime::now());
        assert_eq!(electing.leader, Some(Leader { member: "etcd-2".into(), term: 2, elected_ms: None }));
        assert_eq!(electing.missing(), ["no replica had taken a registration"]);
    }
}
