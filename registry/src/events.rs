//! The registry's log contract: the events it emits, and a parser for them.
//!
//! Each event carries a stable `event` field (`event=expired` in text logs,
//! `"event":"expired"` in JSON logs) and the fields documented on its
//! emitter. The launcher and the tests read the registry's JSON logs through
//! [`Record::parse`], so the names live here and nowhere else.

use std::net::SocketAddr;

use serde::Deserialize;
use tracing::{info, warn};
use wire::throttle;

use crate::config::Config;
use crate::identity::Origin;
use crate::metrics::{self, Departure};
use crate::protocol::{Contact, Dialect};

wire::log_events! {
    /// Every event the registry emits, by its stable name.
    pub enum Event {
        Listening => "listening",
        Assigning => "assigning",
        ServingHttp => "serving_http",
        Open => "open",
        Registered => "registered",
        Deregistered => "deregistered",
        Expired => "expired",
        SessionLost => "session_lost",
        Unauthorized => "unauthorized",
        WatcherCutOff => "watcher_cut_off",
        ShuttingDown => "shutting_down",
    }
}

/// What an event says of the membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    Joined,
    Left,
}

impl Event {
    /// Whether it is a node joining or leaving, and which.
    pub fn membership(self) -> Option<Membership> {
        match self {
            Event::Registered => Some(Membership::Joined),
            Event::Deregistered | Event::Expired | Event::SessionLost => Some(Membership::Left),
            _ => None,
        }
    }
}

/// One registry event read back from a JSON log line. Fields an event does
/// not carry are `None`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Record {
    pub event: Event,
    pub timestamp: Option<String>,
    /// The listening address (`listening`, `serving_http`), or the entry's (the others).
    pub addr: Option<String>,
    /// The entry's id, name and group.
    pub id: Option<String>,
    pub name: Option<String>,
    pub group: Option<u64>,
    /// How the entry registered (`registered`).
    pub dialect: Option<Dialect>,
    /// Earlier contacts returned to the registrant.
    pub contacts: Option<u64>,
    /// The static key an entry was registered with; the registry's own (`listening`).
    pub key: Option<String>,
    /// Where the registry's own keys come from (`listening`): drawn at this
    /// start, kept in a key file or the environment, or saved there now.
    pub identity: Option<Origin>,
    /// The source address of a refused connection, and why (`unauthorized`);
    /// the reason stays words, as it is written from more than one type (a
    /// handshake's error, with fields of its own, or a plaintext refusal).
    pub peer: Option<String>,
    pub reason: Option<String>,
    /// Refusals of the same source and reason since its last line, not logged.
    pub unlogged: Option<u64>,
    /// The lease and the number of groups (`listening`).
    pub ttl: Option<String>,
    pub groups: Option<u64>,
}

impl Record {
    /// Parses one JSON log line; `None` for lines that are not registry events.
    pub fn parse(line: &str) -> Option<Record> {
        serde_json::from_str(line).ok()
    }

    /// The address field as a socket address.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.addr.as_deref()?.parse().ok()
    }
}

/// Also warns, first, when the registry has no join token: it serves the
/// lab's original programs that way, which cannot hold one, but anyone who
/// reaches it may then join (docs/trust.md says what that allows).
/// The group lab's assigner answers on `addr` too.
pub fn assigning(addr: SocketAddr) {
    info!(event = %Event::Assigning, %addr, "the group lab's assigner is listening");
}

/// The operators' HTTP listener (`/metrics`, `/health`) is up on `addr`.
pub fn serving_http(addr: SocketAddr) {
    info!(event = %Event::ServingHttp, %addr, "serving /metrics and /health");
}

pub fn listening(addr: SocketAddr, config: &Config) {
    let (ttl, legacy_ttl, groups) = (config.leases.ttl, config.leases.legacy_ttl, config.groups);
    let token = config.admission.requires_token();
    if !token {
        warn!(
            event = %Event::Open, %addr, hold = ?config.leases.hold,
            "no join token: anyone who reaches this registry may join, take a name left for longer than the hold, \
             and coordinate a group; give it one with --join-token-file wherever strangers can reach it"
        );
    }
    let (key, identity) = (config.identity.public(), config.identity.origin);
    info!(
        event = %Event::Listening, %addr, ?ttl, ?legacy_ttl, groups, token, allow_original = config.allow_original,
        %key, %identity, store = ?config.storage, "listening"
    );
}

pub fn registered(entry: &Contact, dialect: Dialect, contacts: usize) {
    metrics::METRICS.count(|m| m.registered(dialect, contacts));
    info!(
        event = %Event::Registered, id = %entry.id, name = %entry.name, addr = %entry.addr(), group = entry.group,
        key = entry.key.map(tracing::field::display), ?dialect, contacts, "registered"
    );
}

/// A connection refused without proof of membership: a failed handshake
/// (a wrong token, a replayed or out-of-date first message), or plaintext.
/// Throttled per source and reason ([`wire::throttle`]).
pub fn unauthorized(peer: SocketAddr, reason: &dyn std::fmt::Display) {
    if let Some(unlogged) = throttle::refusal(peer.ip(), reason) {
        warn!(event = %Event::Unauthorized, %peer, %reason, unlogged, "refused a client without proof of membership");
    }
}

pub fn deregistered(entry: &Contact) {
    metrics::METRICS.count(|m| m.departed(Departure::Deregistered));
    info!(event = %Event::Deregistered, id = %entry.id, name = %entry.name, addr = %entry.addr(), "deregistered");
}

/// A node's kept session closed without a deregistration: the node is gone.
pub fn session_lost(entry: &Contact) {
    metrics::METRICS.count(|m| m.departed(Departure::SessionLost));
    info!(event = %Event::SessionLost, id = %entry.id, name = %entry.name, addr = %entry.addr(), "session lost");
}

pub fn expired(entry: &Contact) {
    metrics::METRICS.count(|m| m.departed(Departure::Expired));
    info!(event = %Event::Expired, id = %entry.id, name = %entry.name, addr = %entry.addr(), "lease expired");
}

/// A watcher was cut off, having been sent the changes up to revision
/// `seen`. Throttled per source and reason ([`wire::throttle`]).
pub fn watcher_cut_off(peer: SocketAddr, seen: u64, reason: &dyn std::fmt::Display) {
    if let Some(unlogged) = throttle::refusal(peer.ip(), reason) {
        warn!(event = %Event::WatcherCutOff, %peer, seen, %reason, unlogged, "cut off a watcher");
    }
}

pub fn shutting_down() {
    info!(event = %Event::ShuttingDown, "shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Contact {
        Contact {
            id: "ab-1".into(),
            name: "node-1".into(),
            ip: [127, 0, 0, 1].into(),
            puerto: 4000,
            group: Some(2),
            key: None,
        }
    }

    #[test]
    fn every_emitted_event_parses_back_with_its_fields() {
        let entry = entry();
        let lines = wire::telemetry::capture(|| {
            listening("127.0.0.1:8080".parse().unwrap(), &Config::default());
            registered(&entry, Dialect::Native, 4);
            deregistered(&entry);
            expired(&entry);
            shutting_down();
        });
        let records: Vec<Record> = lines.iter().map(|line| Record::parse(line).expect(line)).collect();
        let events: Vec<Event> = records.iter().map(|r| r.event).collect();
        assert_eq!(
            events,
            [
                Event::Open,
                Event::Listening,
                Event::Registered,
                Event::Deregistered,
                Event::Expired,
                Event::ShuttingDown
            ]
        );
        let records = &records[1..];
        assert_eq!(records[0].socket_addr(), Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!((records[0].ttl.as_deref(), records[0].groups), (Some("15s"), Some(3)));
        let registered = &records[1];
        assert_eq!((registered.id.as_deref(), registered.name.as_deref()), (Some("ab-1"), Some("node-1")));
        assert_eq!(
            (registered.group, registered.contacts, registered.dialect),
            (Some(2), Some(4), Some(Dialect::Native))
        );
        for record in &records[1..4] {
            assert_eq!(record.addr.as_deref(), Some("127.0.0.1:4000"), "{record:?}");
        }
        for event in events {
            assert_eq!(serde_json::to_value(event).unwrap(), event.as_str());
        }
    }

    #[test]
    fn every_dialect_reads_back_as_it_was_logged() {
        let entry = entry();
        let dialects = [Dialect::Native, Dialect::Original, Dialect::Clientes];
        let lines =
            wire::telemetry::capture(|| dialects.into_iter().for_each(|dialect| registered(&entry, dialect, 0)));
        let read: Vec<Option<Dialect>> = lines.iter().map(|line| Record::parse(line).expect(line).dialect).collect();
        assert_eq!(read, dialects.map(Some));
    }

    #[test]
    fn lines_that_are_not_events_are_skipped() {
        assert_eq!(Record::parse("hello"), None);
        assert_eq!(Record::parse(r#"{"event":"greeting_sent"}"#), None);
    }
}
