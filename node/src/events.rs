//! The node's log contract: the events it emits, and a parser for them.
//!
//! Each event carries a stable `event` field (`event=greeting_sent` in text
//! logs, `"event":"greeting_sent"` in JSON logs) and the fields documented
//! on its emitter. The launcher and the tests read JSON logs through
//! [`Record::parse`], so names live here and nowhere else.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use registry::client::RegistryAddr;
use registry::watch::LeftReason;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};
use wire::secure::PublicKey;
use wire::throttle;
use wire::Chain;

wire::log_events! {
    /// Every event a node emits, by its stable name.
    pub enum Event {
        Listening => "listening",
        ServingHttp => "serving_http",
        Registered => "registered",
        RegistrationRefused => "registration_refused",
        RegistryUnreachable => "registry_unreachable",
        RegistryMoved => "registry_moved",
        Reregistered => "reregistered",
        GreetingSent => "greeting_sent",
        GreetingFailed => "greeting_failed",
        GreetingReceived => "greeting_received",
        GreetingRejected => "greeting_rejected",
        GroupMessageRejected => "group_message_rejected",
        GroupMessageReceived => "group_message_received",
        OriginalMemberJoined => "original_member_joined",
        OriginalMemberLeft => "original_member_left",
        Deregistered => "deregistered",
        Watching => "watching",
        PeersJoined => "peers_joined",
        PeerLeft => "peer_left",
    }
}

/// How a node is registered (`registered`, `reregistered`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// With a registry of ours: under a lease the node renews.
    Leased,
    /// With an original HIT6 registry, which gives it no id and no lease.
    Original,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.serialize(f)
    }
}

/// Why a peer left (`peer_left`), or why this node refused a greeting or a
/// group delivery (`greeting_rejected`, `group_message_rejected`). The field
/// has one name for both, so a reason is read back by its form: one of
/// [`LeftReason`]'s words, else the sentence of a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Reason {
    Left(LeftReason),
    /// Written for people from whatever refused (a handshake, a ticket, the
    /// registry's answer), such as `unauthorized: the ticket has expired`.
    Refused(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Left(reason) => reason.fmt(f),
            Reason::Refused(reason) => f.write_str(reason),
        }
    }
}

/// A peer as the node knows it: a name for people, an address to greet,
/// and the key it must prove there (`None` for an original node).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Peer {
    pub name: String,
    pub addr: SocketAddr,
    pub key: Option<PublicKey>,
}

/// One node event read back from a JSON log line. Fields an event does not
/// carry are `None`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Record {
    pub event: Event,
    pub timestamp: Option<String>,
    /// This node's name, id and advertised address (`listening`, `registered`,
    /// `reregistered`); `addr` is the HTTP listener's in `serving_http`.
    pub name: Option<String>,
    pub id: Option<String>,
    pub addr: Option<String>,
    /// The listening socket (`listening`).
    pub listen: Option<String>,
    /// Contacts the registry returned, and how many of them this node will greet.
    pub contacts: Option<u64>,
    pub to_greet: Option<u64>,
    /// How this node registered (`registered`, `reregistered`).
    pub mode: Option<Mode>,
    /// The node's group (`registered`), or the group a message went to.
    pub group: Option<u64>,
    /// Who multicast a group message, through which coordinator, and its text.
    pub sender: Option<String>,
    pub coordinator: Option<String>,
    pub text: Option<String>,
    pub peer_name: Option<String>,
    pub peer_addr: Option<String>,
    /// The peers that joined together (`peers_joined`).
    #[serde(default, deserialize_with = "names_in_text")]
    pub peer_names: Option<Vec<String>>,
    pub registry: Option<String>,
    pub error: Option<String>,
    pub attempt: Option<u64>,
    /// Where a greeting or delivery came from, and whether its sender proved a
    /// key (`greeting_received`); or the registry a node moved away from (`registry_moved`).
    pub from: Option<String>,
    /// The registry a node moved to, and how long after its session with
    /// the one before first failed (`registry_moved`).
    pub to: Option<String>,
    pub after_ms: Option<u64>,
    pub verified: Option<bool>,
    pub reason: Option<Reason>,
}

impl Record {
    /// Parses one JSON log line; `None` for lines that are not node events.
    pub fn parse(line: &str) -> Option<Record> {
        serde_json::from_str(line).ok()
    }

    /// The peers the line is about: its `peer_name`, or its `peer_names`.
    pub fn peers(&self) -> impl Iterator<Item = &str> {
        self.peer_name.iter().chain(self.peer_names.iter().flatten()).map(String::as_str)
    }
}

/// `peer_names` is logged as the text of a JSON array, since a log field is
/// a string and a name may hold commas or spaces; read back as the names.
fn names_in_text<'de, D: serde::Deserializer<'de>>(fields: D) -> Result<Option<Vec<String>>, D::Error> {
    let Some(text) = Option::<String>::deserialize(fields)? else { return Ok(None) };
    serde_json::from_str(&text).map(Some).map_err(serde::de::Error::custom)
}

/// This node's identity as reported in its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity<'a> {
    pub name: &'a str,
    pub id: Option<&'a str>,
    pub addr: &'a str,
    pub group: Option<u32>,
}

/// The operators' HTTP listener (`/metrics`, `/health`) is up on `addr`.
pub fn serving_http(addr: SocketAddr) {
    info!(event = %Event::ServingHttp, %addr, "serving /metrics and /health");
}

pub fn listening(listen: SocketAddr, advertise: &str) {
    info!(event = %Event::Listening, %listen, addr = %advertise, "listening for greetings");
}

/// `event` is [`Event::Registered`] the first time, [`Event::Reregistered`] after.
pub fn registered(event: Event, me: &Identity<'_>, registry: &str, mode: Mode, contacts: usize, to_greet: usize) {
    info!(
        event = %event, name = %me.name, id = me.id, addr = %me.addr, group = me.group, %registry, %mode, contacts, to_greet,
        "registered"
    );
}

pub fn registration_refused(registry: &str, error: &dyn std::error::Error, attempt: u32) {
    warn!(event = %Event::RegistrationRefused, %registry, error = %Chain(error), attempt, "registration refused");
}

pub fn registry_unreachable(registry: &str, error: &dyn std::error::Error, attempt: u32) {
    warn!(event = %Event::RegistryUnreachable, %registry, error = %Chain(error), attempt, "registry unreachable");
}

/// The node's sessions move from replica `from` of the registry to `to`,
/// `after` its session with `from` first failed, as `error` says: at once
/// when its watch saw the connection close. Its next request there is its
/// heartbeat (see `docs/protocol.md`, "Replicas").
pub fn registry_moved(from: &RegistryAddr, to: &RegistryAddr, after: Duration, error: &str) {
    crate::metrics::METRICS.count(|m| m.reconnected(crate::metrics::Reconnect::Moved));
    let after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
    warn!(event = %Event::RegistryMoved, %from, %to, after_ms, error, "moved to another registry");
}

pub fn greeting_sent(peer: &Peer) {
    info!(event = %Event::GreetingSent, peer_name = %peer.name, peer_addr = %peer.addr, "greeted a peer");
}

pub fn greeting_failed(peer: &Peer, error: &dyn std::error::Error) {
    warn!(event = %Event::GreetingFailed, peer_name = %peer.name, peer_addr = %peer.addr, error = %Chain(error), "failed to greet a peer");
}

/// `peer` is as verified: by the registry's ticket, or, for an original
/// node, by the registry's record of its address.
pub fn greeting_received(peer: &Peer, from: SocketAddr) {
    crate::metrics::METRICS.count(|m| m.received(peer.key.is_some()));
    info!(
        event = %Event::GreetingReceived, peer_name = %peer.name, peer_addr = %peer.addr, %from,
        verified = peer.key.is_some(), "received a greeting"
    );
}

/// A greeting refused; `claimed` is the name it gave, unverified.
/// Throttled per source and reason ([`wire::throttle`]).
pub fn greeting_rejected(from: SocketAddr, claimed: Option<&str>, reason: &dyn std::fmt::Display) {
    if let Some(unlogged) = throttle::refusal(from.ip(), reason) {
        warn!(event = %Event::GreetingRejected, %from, claimed, %reason, unlogged, "refused a greeting");
    }
}

/// Throttled per source and reason ([`wire::throttle`]).
pub fn group_message_rejected(from: SocketAddr, group: u32, reason: &dyn std::fmt::Display) {
    if let Some(unlogged) = throttle::refusal(from.ip(), reason) {
        warn!(event = %Event::GroupMessageRejected, %from, group, %reason, unlogged, "refused a group delivery");
    }
}

pub fn group_message_received(group: u32, sender: &str, coordinator: &str, text: &str) {
    info!(event = %Event::GroupMessageReceived, group, sender, coordinator, text, "received a group message");
}

/// One of the group lab's internal clients joined the group this node
/// coordinates, with `JOIN`, from `peer`.
pub fn original_member_joined(from: SocketAddr, group: u32) {
    info!(event = %Event::OriginalMemberJoined, %from, group, "an original member joined");
}

/// That member left: its connection ended, or it said `CLOSE`.
pub fn original_member_left(from: SocketAddr, group: u32, reason: &str) {
    info!(event = %Event::OriginalMemberLeft, %from, group, reason, "an original member left");
}

/// The node follows the registry's membership from `revision` on.
pub fn watching(registry: &str, start: registry::watch::WatchStart, revision: u64) {
    info!(event = %Event::Watching, %registry, ?start, revision, "following the membership");
}

/// The registry admitted other nodes, which the watch delivered together:
/// one line for them all, so that a thousand nodes joining in a burst do not
/// make every node write a thousand lines. Nothing for none.
pub fn peers_joined(entries: &[registry::protocol::Contact]) {
    if entries.is_empty() {
        return;
    }
    let names: Vec<&str> = entries.iter().map(|entry| entry.name.as_str()).collect();
    let peer_names = serde_json::to_string(&names).expect("names serialize");
    info!(event = %Event::PeersJoined, %peer_names, count = names.len(), "peers joined");
}

/// Another node left the membership, and why: `deregistered`, `expired`,
/// `connection_lost` (its process died) or `replaced`.
pub fn peer_left(entry: &registry::protocol::Contact, reason: LeftReason) {
    info!(event = %Event::PeerLeft, peer_name = %entry.name, peer_addr = %entry.addr(), peer_id = %entry.id, %reason, "a peer left");
}

/// The watch of the membership broke; the node watches again after a pause.
pub fn watch_broken(registry: &str, error: &dyn std::error::Error) {
    debug!(%registry, error = %Chain(error), "the watch of the membership broke");
}

pub fn deregistered(registry: &str, id: &str) {
    info!(event = %Event::Deregistered, %registry, id, "deregistered");
}

pub fn deregistration_failed(registry: &str, error: &dyn std::error::Error) {
    debug!(%registry, error = %Chain(error), "failed to deregister");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_emitted_event_parses_back_with_its_fields() {
        let peer = Peer { name: "node-2".into(), addr: "127.0.0.1:4000".parse().unwrap(), key: None };
        let error = std::io::Error::other("connection refused");
        let lines = wire::telemetry::capture(|| {
            listening("0.0.0.0:4001".parse().unwrap(), "127.0.0.1:4001");
            let me = Identity { name: "node-1", id: Some("ab-1"), addr: "127.0.0.1:4001", group: Some(2) };
            registered(Event::Registered, &me, "127.0.0.1:8080", Mode::Leased, 3, 2);
            registration_refused("127.0.0.1:8080", &error, 2);
            registry_unreachable("127.0.0.1:8080", &error, 1);
            let (from, to) = ("127.0.0.1:8080".parse().unwrap(), "[::1]:8081".parse().unwrap());
            registry_moved(&from, &to, Duration::from_millis(12), "the registry closed the connection");
            greeting_sent(&peer);
            greeting_failed(&peer, &error);
            greeting_received(&peer, "127.0.0.1:5555".parse().unwrap());
            group_message_received(2, "cli", "node-1", "hola");
            deregistered("127.0.0.1:8080", "ab-1");
        });
        let records: Vec<Record> = lines.iter().map(|line| Record::parse(line).expect(line)).collect();
        let events: Vec<Event> = records.iter().map(|r| r.event).collect();
        assert_eq!(
            events,
            [
                Event::Listening,
                Event::Registered,
                Event::RegistrationRefused,
                Event::RegistryUnreachable,
                Event::RegistryMoved,
                Event::GreetingSent,
                Event::GreetingFailed,
                Event::GreetingReceived,
                Event::GroupMessageReceived,
                Event::Deregistered,
            ]
        );
        let registered = &records[1];
        assert_eq!(registered.name.as_deref(), Some("node-1"));
        assert_eq!(registered.id.as_deref(), Some("ab-1"));
        assert_eq!((registered.contacts, registered.to_greet, registered.group), (Some(3), Some(2), Some(2)));
        assert_eq!(registered.mode, Some(Mode::Leased));
        assert!(lines[1].contains(r#""mode":"leased""#), "{}", lines[1]);
        let moved = &records[4];
        assert_eq!((moved.from.as_deref(), moved.to.as_deref()), (Some("127.0.0.1:8080"), Some("[::1]:8081")));
        assert_eq!(moved.after_ms, Some(12));
        assert_eq!(moved.error.as_deref(), Some("the registry closed the connection"));
        let message = &records[8];
        assert_eq!(
            (message.group, message.sender.as_deref(), message.text.as_deref()),
            (Some(2), Some("cli"), Some("hola"))
        );
        assert_eq!(records[3].attempt, Some(1));
        assert_eq!(records[5].peer_addr.as_deref(), Some("127.0.0.1:4000"));
        assert_eq!(records[6].error.as_deref(), Some("connection refused"));
        assert_eq!(records[7].peer_name.as_deref(), Some("node-2"));
        for (record, event) in records.iter().zip(events) {
            assert_eq!(serde_json::to_value(event).unwrap(), event.as_str(), "{record:?}");
        }
    }

    #[test]
    fn joins_delivered_together_are_one_line_naming_them_all_and_departures_one_each() {
        let peer = |name: &str, puerto| registry::protocol::Contact {
            id: format!("ab-{puerto}"),
            name: name.into(),
            ip: "127.0.0.1".parse().unwrap(),
            puerto,
            group: Some(1),
            key: None,
        };
        let lines = wire::telemetry::capture(|| {
            peers_joined(&[peer("node-2", 4002), peer(r#"a, "b" ñ"#, 4003)]);
            peers_joined(&[]);
            peer_left(&peer("node-2", 4002), registry::watch::LeftReason::ConnectionLost);
        });
        let records: Vec<Record> = lines.iter().map(|line| Record::parse(line).expect(line)).collect();
        assert_eq!(records.len(), 2, "nothing for no join: {lines:?}");
        assert_eq!(records[0].event, Event::PeersJoined);
        assert_eq!(records[0].peers().collect::<Vec<_>>(), ["node-2", r#"a, "b" ñ"#]);
        assert_eq!(records[1].event, Event::PeerLeft);
        assert_eq!(records[1].peers().collect::<Vec<_>>(), ["node-2"]);
        assert_eq!(records[1].reason, Some(Reason::Left(LeftReason::ConnectionLost)));
        assert_eq!(records[1].reason.as_ref().map(ToString::to_string).as_deref(), Some("connection_lost"));
    }

    #[test]
    fn an_original_registration_and_refusals_read_back_as_written() {
        let me = Identity { name: "node-1", id: None, addr: "127.0.0.1:4001", group: None };
        // An address no other test is refused from, so that the throttle lets every line through.
        let from = "192.0.2.7:5555".parse().unwrap();
        let (greeting, delivery) = ("unauthorized: the ticket has expired", "the view is not the registry's");
        let lines = wire::telemetry::capture(|| {
            registered(Event::Registered, &me, "127.0.0.1:8080", Mode::Original, 0, 0);
            greeting_rejected(from, Some("node-2"), &greeting);
            group_message_rejected(from, 2, &delivery);
        });
        let records: Vec<Record> = lines.iter().map(|line| Record::parse(line).expect(line)).collect();
        assert_eq!(records[0].mode, Some(Mode::Original));
        assert!(lines[0].contains(r#""mode":"original""#), "{}", lines[0]);
        assert_eq!(records[1].reason, Some(Reason::Refused(greeting.into())));
        assert_eq!(records[2].reason.as_ref().map(ToString::to_string).as_deref(), Some(delivery));
    }

    #[test]
    fn lines_that_are_not_events_are_skipped() {
        assert_eq!(Record::parse("hello"), None);
        assert_eq!(Record::parse(r#"{"event":"no_such_event"}"#), None);
        assert_eq!(Record::parse(r#"{"message":"x"}"#), None);
    }
}
