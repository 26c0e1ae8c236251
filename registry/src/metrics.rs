//! The registry's metrics, served at `/metrics` ([`crate::http`]) when it
//! has an HTTP listener, every name under `hit6_registry_`.
//!
//! Events are counted where they are logged ([`crate::events`]), in one set
//! of metrics per process ([`wire::metrics::Installed`]), installed by the
//! server when it serves HTTP and absent otherwise, so that a registry
//! without `--http-listen` counts nothing. Requests are counted in
//! [`wire::metrics`]' lock-free counters and histograms, resolved per
//! operation once. The membership (members by standing and dialect, groups with a
//! coordinator) is read from the store at each scrape instead, off every
//! request's path.
//!
//! Labels take a few values each, whatever strangers send: operations,
//! error codes, dialects, reasons. No metric names a member or carries a
//! key. (prometheus-client writes label values as they are, unescaped:
//! a label must never hold text from the network.)

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::time::Instant;
use wire::metrics::{Count, Installed, Latency};

use crate::protocol::{Dialect, ErrorCode, Operation};
use crate::store::{Standings, Store};

/// Why an entry left the membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Departure {
    Deregistered,
    Expired,
    SessionLost,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Answered {
    operation: Operation,
    /// `ok`, or the error code answered.
    outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Outcome(Option<ErrorCode>);

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ByOperation {
    operation: Operation,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ByDialect {
    dialect: Dialect,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ByDeparture {
    reason: Departure,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ByReason {
    reason: &'static str,
}

/// The counts this process keeps.
#[derive(Debug)]
pub struct Metrics {
    requests: Family<Answered, Count>,
    latency: Family<ByOperation, Latency>,
    /// Each operation's `ok` count and its latency, by [`Operation::ALL`]'s
    /// order: resolved once, so that answering looks nothing up.
    by_operation: Vec<(Count, Latency)>,
    registrations: Family<ByDialect, Count>,
    introductions: Count,
    departures: Family<ByDeparture, Count>,
    refused: Family<ByReason, Count>,
    watch_changes: Count,
    sessions: Gauge,
    watchers: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let (requests, latency) = (Family::<Answered, Count>::default(), Family::<ByOperation, Latency>::default());
        let by_operation = Operation::ALL
            .iter()
            .map(|&operation| {
                let ok = requests.get_or_create(&Answered { operation, outcome: Outcome(None) }).clone();
                (ok, latency.get_or_create(&ByOperation { operation }).clone())
            })
            .collect();
        Metrics {
            requests,
            latency,
            by_operation,
            registrations: Family::default(),
            introductions: Count::default(),
            departures: Family::default(),
            refused: Family::default(),
            watch_changes: Count::default(),
            sessions: Gauge::default(),
            watchers: Gauge::default(),
        }
    }
}

/// The process's metrics, counting once [`install`]ed.
pub static METRICS: Installed<Metrics> = Installed::new();

/// Starts counting, and returns what `/metrics` serves: the counts and the
/// membership of `store`, read at each scrape. Counting starts once per
/// process; a second call serves the same counts.
pub fn install(store: Arc<Store>, groups: u32) -> Registry {
    let metrics = METRICS.install(Metrics::default);
    let mut registry = Registry::with_prefix("hit6_registry");
    metrics.register(&mut registry);
    registry.register_collector(Box::new(Membership { store, groups }));
    registry
}

impl Metrics {
    fn register(&'static self, registry: &mut Registry) {
        registry.register("requests", "Requests answered, by operation and outcome", self.requests.clone());
        registry.register(
            "request_duration_seconds",
            "Time from a request read to its answer ready, by operation",
            self.latency.clone(),
        );
        registry.register("registrations", "Nodes admitted, by dialect", self.registrations.clone());
        registry.register(
            "introductions",
            "Earlier contacts handed to registering nodes: each a greeting for them to send",
            self.introductions.clone(),
        );
        registry.register(
            "departures",
            "Entries that left: deregistered, expired, or their kept session lost",
            self.departures.clone(),
        );
        registry.register(
            "refused_connections",
            "Connections refused or dropped before serving, and failed handshakes, by reason",
            self.refused.clone(),
        );
        registry.register(
            "watch_changes_sent",
            "Changes to the membership sent to watchers",
            self.watch_changes.clone(),
        );
        registry.register("sessions", "Connections being served (watchers among them)", self.sessions.clone());
        registry.register("watchers", "Watches of the membership open", self.watchers.clone());
    }

    /// `operation` answered, with `refusal` if it was refused, `elapsed` after it was read.
    pub fn answered(&self, operation: Operation, refusal: Option<ErrorCode>, elapsed: Duration) {
        let (ok, latency) = &self.by_operation[operation as usize];
        latency.observe(elapsed);
        match refusal {
            None => ok.inc(),
            Some(code) => self.requests.get_or_create(&Answered { operation, outcome: Outcome(Some(code)) }).inc(),
        }
    }

    /// A node admitted in `dialect`, handed `contacts` earlier ones.
    pub fn registered(&self, dialect: Dialect, contacts: usize) {
        self.registrations.get_or_create(&ByDialect { dialect }).inc();
        self.introductions.inc_by(contacts as u64);
    }

    /// Contacts handed out since the registry started.
    pub fn introduced(&self) -> u64 {
        self.introductions.get()
    }

    pub fn departed(&self, reason: Departure) {
        self.departures.get_or_create(&ByDeparture { reason }).inc();
    }

    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ByReason { reason }).inc();
    }

    pub fn changes_sent(&self, changes: usize) {
        self.watch_changes.inc_by(changes as u64);
    }

    /// Counts a connection served for as long as the guard lives.
    pub fn session(&'static self) -> Open {
        Open::new(&self.sessions)
    }

    pub fn watcher(&'static self) -> Open {
        Open::new(&self.watchers)
    }
}

/// Counts one open connection or watch in a gauge until dropped.
#[derive(Debug)]
pub struct Open(&'static Gauge);

impl Open {
    fn new(gauge: &'static Gauge) -> Open {
        gauge.inc();
        Open(gauge)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts `operation`'s answer when metrics are on: `started` is when its request was read.
pub fn answered(operation: Operation, refusal: Option<ErrorCode>, started: Option<Instant>) {
    if let (Some(metrics), Some(started)) = (METRICS.get(), started) {
        metrics.answered(operation, refusal, started.elapsed());
    }
}

/// The membership, read from the store at each scrape.
#[derive(Debug)]
struct Membership {
    store: Arc<Store>,
    groups: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Member {
    state: &'static str,
    dialect: &'static str,
}

impl Collector for Membership {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let census = self.store.census(Instant::now());
        let help = "Live entries, by state (suspect: silent for more than half their lease) and dialect.";
        let mut members = encoder.encode_descriptor("members", help, None, MetricType::Gauge)?;
        for (dialect, standings) in [("native", census.native), ("original", census.original)] {
            let Standings { live, suspect } = standings;
            for (state, count) in [("live", live), ("suspect", suspect)] {
                let member = Member { state, dialect };
                ConstGauge::new(count as i64).encode(members.encode_family(&member)?)?;
            }
        }
        let help = "Groups that nodes are placed in.";
        let groups = encoder.encode_descriptor("groups", help, None, MetricType::Gauge)?;
        ConstGauge::new(i64::from(self.groups)).encode(groups)?;
        let help = "Groups with a live member, whose oldest coordinates them.";
        let coordinators = encoder.encode_descriptor("coordinators", help, None, MetricType::Gauge)?;
        ConstGauge::new(census.coordinators as i64).encode(coordinators)
    }
}

/// Label values are the contract's own words ([`Operation`], [`ErrorCode`],
/// [`Dialect`]): written as their `Display`.
macro_rules! label_as_display {
    ($($ty:ty),*) => {$(
        impl EncodeLabelValue for $ty {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                write!(encoder, "{self}")
            }
        }
    )*};
}

label_as_display!(Operation, ErrorCode);

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        match self.0 {
            None => encoder.write_str("ok"),
            Some(code) => write!(encoder, "{code}"),
        }
    }
}

impl EncodeLabelValue for Dialect {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Dialect::Native => "native",
            Dialect::Original => "original",
            Dialect::Clientes => "clientes",
        })
    }
}

impl EncodeLabelValue for Departure {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Departure::Deregistered => "deregistered",
            Departure::Expired => "expired",
            Departure::SessionLost => "session_lost",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_operation_finds_its_own_counts() {
        for (index, operation) in Operation::ALL.into_iter().enumerate() {
            assert_eq!(operation as usize, index, "{operation}");
        }
    }
}
