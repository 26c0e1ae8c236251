//! What follows a disruption of one node: its departure (the registry's
//! `session_lost`, `expired` or `deregistered`, and each survivor's
//! `peer_left`) and its return (the registry's `registered`, and each
//! survivor's `peers_joined` naming it), who logged each, how, and how
//! many milliseconds after the request.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use node::events::{Event, Reason, Record};
use registry::events::{Event as RegistryEvent, Membership, Record as RegistryRecord};
use registry::watch::LeftReason;
use serde::Serialize;

use super::{ms_after, Verdict};
use crate::runtime::Verb;
use crate::stream::Line;
use crate::ui::Logged;

/// A change to the membership that a disruption leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Departure,
    Return,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Change::Departure => "departure",
            Change::Return => "return",
        })
    }
}

impl Change {
    /// What `verb` leads to, in order: a departure for `kill` (its kernel
    /// closes its session) and `pause` (once its lease ends), a return for
    /// `unpause` (if its lease had ended), both for `restart`.
    pub fn after(verb: Verb) -> &'static [Change] {
        match verb {
            Verb::Kill | Verb::Pause => &[Change::Departure],
            Verb::Unpause => &[Change::Return],
            Verb::Restart => &[Change::Departure, Change::Return],
        }
    }

    /// How `record` logs this change of `node`, if it does.
    fn logged_in(self, record: &Logged, node: &str) -> Option<How> {
        match record {
            Logged::Registry(record) => self.by_registry(record, node),
            Logged::Node(record) => self.by_node(record, node),
            Logged::Etcd(_) => None,
        }
    }

    fn by_registry(self, record: &RegistryRecord, node: &str) -> Option<How> {
        let wanted = match self {
            Change::Departure => Membership::Left,
            Change::Return => Membership::Joined,
        };
        let logs_it = record.name.as_deref() == Some(node) && record.event.membership() == Some(wanted);
        logs_it.then_some(How::Registry(record.event))
    }

    fn by_node(self, record: &Record, node: &str) -> Option<How> {
        let event = match self {
            Change::Departure => Event::PeerLeft,
            Change::Return => Event::PeersJoined,
        };
        let logs_it = record.event == event && record.peers().any(|peer| peer == node);
        let left = match record.reason {
            Some(Reason::Left(reason)) => Some(reason),
            _ => None,
        };
        logs_it.then_some(How::Node(event, left))
    }
}

/// The event that logged a change, and why a survivor says the node
/// left: `session_lost`, `peer_left connection_lost`.
#[derive(Debug, Clone, PartialEq)]
pub enum How {
    Registry(RegistryEvent),
    Node(Event, Option<LeftReason>),
}

impl std::fmt::Display for How {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            How::Registry(event) => write!(f, "{event}"),
            How::Node(event, None) => write!(f, "{event}"),
            How::Node(event, Some(reason)) => write!(f, "{event} {reason}"),
        }
    }
}

impl Serialize for How {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Who logged one change, and when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Heard {
    pub registry: Option<Logging>,
    /// Every other running node; `None` for one that had not logged it in time.
    pub survivors: BTreeMap<String, Option<Logging>>,
    /// When the last of them all had, if all did.
    pub all_ms: Option<f64>,
}

impl Heard {
    /// When the last one logged it, once everyone has.
    fn last_ms(&self) -> Option<f64> {
        let registry = self.registry.as_ref()?.ms;
        let survivors: Option<Vec<f64>> = self.survivors.values().map(|l| l.as_ref().map(|l| l.ms)).collect();
        survivors.map(|ms| ms.into_iter().fold(registry, f64::max))
    }
}

/// One line that logged the change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Logging {
    pub how: How,
    pub ms: f64,
}

/// Some did not log what followed in time.
#[derive(Debug, thiserror::Error)]
#[error("{} had not logged the {change} of {node} within {timeout:?}", missing.join(", "))]
pub struct Unnoticed {
    pub node: String,
    pub change: Change,
    pub missing: Vec<String>,
    pub timeout: Duration,
}

/// The changes awaited, and who has logged each so far.
pub struct Watching<'a> {
    node: &'a str,
    started: SystemTime,
    heard: Vec<(Change, Heard)>,
}

impl<'a> Watching<'a> {
    pub fn new(node: &'a str, changes: &[Change], survivors: &[String], started: SystemTime) -> Watching<'a> {
        let heard = changes
            .iter()
            .map(|change| {
                let survivors = survivors.iter().map(|name| (name.clone(), None)).collect();
                (*change, Heard { registry: None, survivors, all_ms: None })
            })
            .collect();
        Watching { node, started, heard }
    }

    pub fn heard(&self, change: Change) -> Option<Heard> {
        self.heard.iter().find(|(c, _)| *c == change).map(|(_, heard)| heard.clone())
    }

    /// The first change someone did not log, as an error naming who.
    pub fn unnoticed(&self, timeout: Duration) -> Option<Unnoticed> {
        let (change, heard) = self.heard.iter().find(|(_, heard)| heard.all_ms.is_none())?;
        let mut missing: Vec<String> =
            heard.survivors.iter().filter(|(_, l)| l.is_none()).map(|(name, _)| name.clone()).collect();
        if heard.registry.is_none() {
            missing.insert(0, "the registry".into());
        }
        Some(Unnoticed { node: self.node.to_owned(), change: *change, missing, timeout })
    }
}

impl Verdict for Watching<'_> {
    /// Records what `line` says, if it logs the change awaited next from
    /// its source: a source's return counts only after its departure (a
    /// survivor's `peers_joined` of the node's first run is not its return),
    /// and lines logged before the request are old news (logs are followed
    /// from the second before it).
    fn take(&mut self, line: &Line, record: Option<&Logged>) {
        let Some(record) = record else { return };
        let (source, timestamp) = match record {
            Logged::Registry(record) => (None, &record.timestamp),
            Logged::Node(record) => (Some(line.source.as_str()), &record.timestamp),
            Logged::Etcd(_) => return,
        };
        let Some(ms) = ms_after(self.started, timestamp.as_deref()) else { return };
        for (change, heard) in &mut self.heard {
            let slot = match source {
                None => &mut heard.registry,
                Some(source) => match heard.survivors.get_mut(source) {
                    Some(slot) => slot,
                    None => return,
                },
            };
            if slot.is_some() {
                continue;
            }
            if let Some(how) = change.logged_in(record, self.node) {
                *slot = Some(Logging { how, ms });
                heard.all_ms = heard.last_ms();
            }
            return;
        }
    }

    fn reached(&self) -> bool {
        self.heard.iter().all(|(_, heard)| heard.all_ms.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui;

    fn line(source: &str, json: &str) -> Line {
        Line { source: source.into(), text: json.into() }
    }

    fn take(watching: &mut Watching<'_>, line: &Line) {
        watching.take(line, ui::record(line).as_ref());
    }

    fn how(heard: &Option<Logging>) -> Option<String> {
        heard.as_ref().map(|l| l.how.to_string())
    }

    #[test]
    fn a_restart_is_a_departure_then_a_return_each_line_counted_once() {
        let started = SystemTime::now();
        let at = |ms: u64| humantime::format_rfc3339_micros(started + Duration::from_millis(ms)).to_string();
        let survivors = ["node-1".to_owned()];
        let mut watching = Watching::new("node-3", Change::after(Verb::Restart), &survivors, started);
        let registry = |event: &str, name: &str, ms| {
            line("registry", &format!(r#"{{"event":"{event}","name":"{name}","timestamp":"{}"}}"#, at(ms)))
        };
        let left = |peer: &str, reason: &str, ms| {
            let fields = format!(r#""peer_name":"{peer}","reason":"{reason}""#);
            line("node-1", &format!(r#"{{"event":"peer_left",{fields},"timestamp":"{}"}}"#, at(ms)))
        };
        let joined = |peers: &[&str], ms| {
            let names = serde_json::to_string(&serde_json::to_string(peers).unwrap()).unwrap();
            line("node-1", &format!(r#"{{"event":"peers_joined","peer_names":{names},"timestamp":"{}"}}"#, at(ms)))
        };
        let old = humantime::format_rfc3339_micros(started - Duration::from_millis(500)).to_string();
        take(
            &mut watching,
            &line("registry", &format!(r#"{{"event":"expired","name":"node-3","timestamp":"{old}"}}"#)),
        );
        take(&mut watching, &registry("deregistered", "node-2", 1));
        take(&mut watching, &joined(&["node-3"], 2));
        take(&mut watching, &registry("deregistered", "node-3", 5));
        take(&mut watching, &left("node-3", "deregistered", 7));
        take(&mut watching, &registry("registered", "node-3", 40));
        take(&mut watching, &line("node-9", r#"{"event":"peers_joined","peer_names":"[\"node-3\"]"}"#));
        let departure = watching.heard(Change::Departure).unwrap();
        assert_eq!(how(&departure.registry).as_deref(), Some("deregistered"));
        assert_eq!(how(&departure.survivors["node-1"]).as_deref(), Some("peer_left deregistered"));
        assert!(departure.all_ms.is_some_and(|ms| (6.0..8.0).contains(&ms)), "{departure:?}");
        // Neither the line from before the request, nor the `peers_joined`
        // before the departure, nor the stranger's count.
        let back = watching.heard(Change::Return).unwrap();
        assert_eq!(how(&back.registry).as_deref(), Some("registered"));
        assert_eq!(back.survivors["node-1"], None);
        let unnoticed = watching.unnoticed(Duration::from_secs(1)).unwrap();
        assert_eq!((unnoticed.change, unnoticed.missing), (Change::Return, vec!["node-1".to_owned()]));
        assert!(!watching.reached());
        take(&mut watching, &joined(&["node-4"], 42));
        assert_eq!(watching.heard(Change::Return).unwrap().survivors["node-1"], None, "another node's return");
        take(&mut watching, &joined(&["node-4", "node-3"], 45));
        let back = watching.heard(Change::Return).unwrap();
        assert_eq!(how(&back.survivors["node-1"]).as_deref(), Some("peers_joined"));
        assert!(back.all_ms.is_some_and(|ms| (44.0..46.0).contains(&ms)), "{back:?}");
        assert!(watching.unnoticed(Duration::from_secs(1)).is_none());
        assert!(watching.reached());
        let json = serde_json::to_value(watching.heard(Change::Departure).unwrap()).unwrap();
        assert_eq!(json["survivors"]["node-1"]["how"], "peer_left deregistered");
    }
}
