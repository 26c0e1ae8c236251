//! The node's metrics, served at `/metrics` ([`crate::http`]) when it has
//! an HTTP listener, every name under `hit6_node_`.
//!
//! As the registry's ([`registry::metrics`]): one set per process
//! ([`wire::metrics::Installed`]), installed when the node serves HTTP and
//! absent otherwise, so that a node without `--http-listen` counts nothing
//! and keeps no peer set; greetings are counted in [`wire::metrics`]'
//! lock-free counters and histograms, resolved per outcome once. Labels take
//! a few values each; no metric names a peer.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::time::Instant;
use wire::metrics::{Count, Installed, Latency};

use crate::health::Vitals;

/// How a greeting this node sent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sent {
    /// The peer welcomed it.
    Welcome,
    /// The pair had met through the peer's own greeting.
    Met,
    /// No answer, after every attempt, or a refusal.
    Failed,
}

impl Sent {
    fn as_str(self) -> &'static str {
        match self {
            Sent::Welcome => "welcome",
            Sent::Met => "met",
            Sent::Failed => "failed",
        }
    }
}

/// Why a registration was made again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reconnect {
    /// The node's sessions moved to another replica.
    Moved,
    /// The registry had forgotten the node: it registered again.
    Reregistered,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

/// The counts this process keeps.
#[derive(Debug)]
pub struct Metrics {
    sent: Family<Outcome, Count>,
    /// The counts of `sent` by [`Sent`], resolved once.
    sent_by: [Count; 3],
    greeting_latency: Latency,
    received: Family<Kind, Count>,
    /// The counts of `received`: with a ticket, and in plaintext.
    received_by: [Count; 2],
    rejected: Family<Reason, Count>,
    reconnects: Family<Kind, Count>,
    multicasts: Family<Outcome, Count>,
    acknowledged: Count,
    ack_latency: Latency,
    /// The peers in the live view, by a hash of their id: 16 bytes a peer,
    /// kept only with metrics on.
    peers: Mutex<HashSet<u64>>,
    hasher: RandomState,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let sent = Family::<Outcome, Count>::default();
        let sent_by = [Sent::Welcome, Sent::Met, Sent::Failed]
            .map(|outcome| sent.get_or_create(&Outcome { outcome: outcome.as_str() }).clone());
        let received = Family::<Kind, Count>::default();
        let received_by = ["ticket", "plaintext"].map(|kind| received.get_or_create(&Kind { kind }).clone());
        Metrics {
            sent,
            sent_by,
            greeting_latency: Latency::default(),
            received,
            received_by,
            rejected: Family::default(),
            reconnects: Family::default(),
            multicasts: Family::default(),
            acknowledged: Count::default(),
            ack_latency: Latency::default(),
            peers: Mutex::default(),
            hasher: RandomState::new(),
        }
    }
}

/// The process's metrics, counting once [`install`]ed.
pub static METRICS: Installed<Metrics> = Installed::new();

/// Starts counting, and returns what `/metrics` serves, with whether the
/// node is registered and up read from `vitals` at each scrape.
pub fn install(vitals: Arc<Vitals>) -> Registry {
    let metrics = METRICS.install(Metrics::default);
    let mut registry = Registry::with_prefix("hit6_node");
    metrics.register(&mut registry);
    registry.register_collector(Box::new(Live { vitals }));
    registry
}

impl Metrics {
    fn register(&'static self, registry: &mut Registry) {
        registry.register("greetings_sent", "Greetings this node sent, by outcome", self.sent.clone());
        registry.register(
            "greeting_duration_seconds",
            "Time to greet a peer and read its answer, retries included",
            self.greeting_latency.clone(),
        );
        registry.register(
            "greetings_received",
            "Greetings received for the first time from their greeter, by kind (ticket, plaintext)",
            self.received.clone(),
        );
        registry.register(
            "greetings_rejected",
            "Greetings and connections refused, by reason (ticket, unverified, or the handshake's)",
            self.rejected.clone(),
        );
        registry.register(
            "registry_reconnects",
            "Sessions moved to another replica, and registrations made again",
            self.reconnects.clone(),
        );
        registry.register(
            "multicasts",
            "Multicasts this node coordinated, by outcome (complete: every member acknowledged)",
            self.multicasts.clone(),
        );
        registry.register(
            "deliveries_acknowledged",
            "Group deliveries members acknowledged",
            self.acknowledged.clone(),
        );
        registry.register(
            "ack_duration_seconds",
            "Time from a group delivery to its acknowledgement",
            self.ack_latency.clone(),
        );
    }

    /// A greeting ended with `outcome`, `started` when it began.
    pub fn greeted(&self, outcome: Sent, started: Option<Instant>) {
        self.sent_by[outcome as usize].inc();
        if outcome != Sent::Failed {
            self.greeting_latency.since(started);
        }
    }

    /// A greeting received, with a ticket or in plaintext.
    pub fn received(&self, ticket: bool) {
        self.received_by[usize::from(!ticket)].inc();
    }

    pub fn rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&Reason { reason }).inc();
    }

    pub fn reconnected(&self, why: Reconnect) {
        let kind = match why {
            Reconnect::Moved => "moved",
            Reconnect::Reregistered => "reregistered",
        };
        self.reconnects.get_or_create(&Kind { kind }).inc();
    }

    pub fn multicast(&self, complete: bool) {
        self.multicasts.get_or_create(&Outcome { outcome: if complete { "complete" } else { "incomplete" } }).inc();
    }

    /// A delivery acknowledged, `started` when it was sent.
    pub fn acknowledged(&self, started: Option<Instant>) {
        self.acknowledged.inc();
        self.ack_latency.since(started);
    }

    /// The live view starts again from a snapshot of `peers`' ids.
    pub fn peers_are<'a>(&self, peers: impl Iterator<Item = &'a str>) {
        let peers = peers.map(|id| self.hash(id)).collect();
        *wire::lock(&self.peers) = peers;
    }

    pub fn peer_joined(&self, id: &str) {
        wire::lock(&self.peers).insert(self.hash(id));
    }

    pub fn peer_left(&self, id: &str) {
        wire::lock(&self.peers).remove(&self.hash(id));
    }

    fn hash(&self, id: &str) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        id.hash(&mut hasher);
        std::hash::Hasher::finish(&hasher)
    }
}

/// What is read at each scrape: the peers in view, and the node's state.
#[derive(Debug)]
struct Live {
    vitals: Arc<Vitals>,
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let peers = METRICS.get().map_or(0, |metrics| wire::lock(&metrics.peers).len());
        let help = "Peers in the node's live view of the membership (the registry's watch).";
        let gauge = encoder.encode_descriptor("peers", help, None, MetricType::Gauge)?;
        ConstGauge::new(peers as i64).encode(gauge)?;
        let help = "1 while the node is registered and its session with the registry is up, else 0.";
        let gauge = encoder.encode_descriptor("up", help, None, MetricType::Gauge)?;
        ConstGauge::new(i64::from(self.vitals.health().health)).encode(gauge)
    }
}
