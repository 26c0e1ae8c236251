//! A history of registry operations and its checker, in the spirit of
//! etcd's robustness tests and Jepsen: clients record every registration,
//! heartbeat, deregistration and list with the instants it was sent and
//! answered and what came back, and [`check`] says where the history
//! departs from what one registry could have answered.
//!
//! An operation takes effect at some instant between its invocation and its
//! completion; one whose answer never came (a timeout, a broken session) or
//! was `unavailable` may or may not have taken effect, at any later instant
//! ([`Outcome::is_indeterminate`]). The single-registry model:
//! - an acknowledged registration is in every list that starts after it
//!   completed, until its deregistration starts or its lease may have
//!   lapsed; a deregistered name is in no list that starts after the
//!   deregistration completed; no list holds a name never registered;
//! - a heartbeat of an acknowledged entry is answered `unknown_id` only once
//!   its lease may have lapsed or its deregistration started: a lease may
//!   lapse only after a renewal invoked at `t` is followed by none that
//!   completed before `t + ttl`;
//! - registrations join one order, consistent with real time: of two, the
//!   later is told of the earlier (unless that one may have left first) and
//!   never the other way round; one that completed before another started
//!   is the earlier; and the order is transitive. A registrant is told only
//!   of registrations started before it completed, never of one that had
//!   left before it started.
//!
//! Replicas serve lists from their own stores, which apply etcd's log a
//! little apart: [`Model::lag`] is how long a change acknowledged by one
//! replica may be missing from a list at another (zero for one registry).
//! Heartbeats are held to the model without it: a replica that answers
//! `unknown_id` for a live entry makes its node register again.
//!
//! Names stand for entries: each client registers under names of its own,
//! once each (a registration sent again after an indeterminate answer is
//! the same one, by its incarnation).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use registry::protocol::ErrorCode;

/// What a client asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Register { name: String },
    Heartbeat { name: String },
    Deregister { name: String },
    List,
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The entry's id and the names of its contacts, in the order given.
    Registered {
        id: String,
        contacts: Vec<String>,
    },
    Renewed,
    Deregistered,
    Listed(Vec<String>),
    Refused(ErrorCode),
    /// No answer: the session broke or timed out.
    Unknown(String),
}

impl Outcome {
    /// Whether the operation may or may not have taken effect.
    pub fn is_indeterminate(&self) -> bool {
        matches!(self, Outcome::Unknown(_) | Outcome::Refused(ErrorCode::Unavailable))
    }
}

/// One operation, timed from the history's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub client: String,
    /// The replica (its index) the operation was sent to.
    pub replica: usize,
    pub call: Call,
    pub invoked: Duration,
    pub completed: Duration,
    pub outcome: Outcome,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let call = match &self.call {
            Call::Register { name } => format!("register({name})"),
            Call::Heartbeat { name } => format!("heartbeat({name})"),
            Call::Deregister { name } => format!("deregister({name})"),
            Call::List => "list".to_owned(),
        };
        let outcome = match &self.outcome {
            Outcome::Registered { id, contacts } => format!("ok {id}, contacts {contacts:?}"),
            Outcome::Renewed | Outcome::Deregistered => "ok".to_owned(),
            Outcome::Listed(names) => format!("{names:?}"),
            Outcome::Refused(code) => code.to_string(),
            Outcome::Unknown(why) => format!("unknown ({why})"),
        };
        let (from, to) = (self.invoked.as_millis(), self.completed.as_millis());
        write!(f, "{} {call} at replica {} [{from}..{to} ms] -> {outcome}", self.client, self.replica)
    }
}

/// What the history is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// The entries' lease.
    pub ttl: Duration,
    /// How long a change acknowledged by one replica may be missing from a
    /// list at another: zero for one registry.
    pub lag: Duration,
}

/// Where `ops` depart from the model: one readable line per violation,
/// naming the operations; none for a history the model allows.
pub fn check(ops: &[Op], model: Model) -> Vec<String> {
    let facts = Facts::gather(ops, model);
    let mut violations = Vec::new();
    for op in ops {
        match (&op.call, &op.outcome) {
            (Call::List, Outcome::Listed(names)) => violations.extend(facts.check_list(op, names)),
            (Call::Heartbeat { name }, Outcome::Refused(ErrorCode::UnknownId)) => {
                violations.extend(facts.check_unknown(op, name, "heartbeat answered unknown_id"))
            }
            (Call::Deregister { name }, Outcome::Refused(ErrorCode::NotFound | ErrorCode::UnknownId)) => {
                violations.extend(facts.check_unknown(op, name, "deregistration found no entry"))
            }
            (_, Outcome::Refused(code)) if !op.outcome.is_indeterminate() => {
                violations.push(format!("refused {code}, which one registry never answers here: {op}"))
            }
            _ => {}
        }
    }
    violations.extend(facts.check_ids());
    violations.extend(facts.check_contacts());
    violations.extend(facts.check_pairs());
    violations
}

/// The longest a list at one replica went on missing an entry another
/// replica had acknowledged, or still showing one it had deregistered (for
/// entries that were neither leaving nor lapsing): how far apart the
/// replicas' stores were, as clients saw them.
pub fn staleness(ops: &[Op], ttl: Duration) -> Duration {
    let facts = Facts::gather(ops, Model { ttl, lag: Duration::ZERO });
    let stale = ops.iter().filter_map(|op| match &op.outcome {
        Outcome::Listed(names) => facts.stale_by(op, names),
        _ => None,
    });
    stale.max().unwrap_or_default()
}

/// How long writes (registrations and deregistrations) were failing or
/// blocked after `since`: from the invocation of the first that failed or
/// took longer than `slow`, to the completion of the first that succeeded
/// after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    pub from: Duration,
    /// `None` when no write succeeded after it.
    pub until: Option<Duration>,
    /// Writes in that stretch that failed or whose outcome is unknown.
    pub failed: usize,
    /// The longest a write took after `since`.
    pub slowest: Duration,
}

impl Outage {
    pub fn length(&self) -> Option<Duration> {
        self.until.map(|until| until.saturating_sub(self.from))
    }
}

/// The writes' [`Outage`] after `since`, if any write failed or was slow.
pub fn outage(ops: &[Op], since: Duration, slow: Duration) -> Option<Outage> {
    let mut writes: Vec<&Op> = ops
        .iter()
        .filter(|op| matches!(op.call, Call::Register { .. } | Call::Deregister { .. }) && op.completed >= since)
        .collect();
    writes.sort_by_key(|op| op.invoked);
    let bad = |op: &Op| !succeeded(op) || op.completed - op.invoked > slow;
    let first = writes.iter().position(|op| bad(op))?;
    let from = writes[first].invoked;
    let until = writes[first..].iter().filter(|op| succeeded(op)).map(|op| op.completed).min();
    let failed = writes[first..].iter().filter(|op| until.is_none_or(|until| op.invoked < until) && !succeeded(op));
    let slowest = writes.iter().map(|op| op.completed - op.invoked).max().unwrap_or_default();
    Some(Outage { from, until, failed: failed.count(), slowest })
}

fn succeeded(op: &Op) -> bool {
    matches!(op.outcome, Outcome::Registered { .. } | Outcome::Deregistered)
}

/// What the history says of one name.
#[derive(Debug, Default)]
struct Entry<'a> {
    /// When its first registration was sent: the earliest it can have joined.
    first_invoked: Option<Duration>,
    /// Whether some registration of it may have taken effect.
    maybe_registered: bool,
    /// Its registrations that may have taken effect: acknowledged, or
    /// indeterminate (which may take effect at any time after they were sent).
    registrations: Vec<&'a Op>,
    /// Its acknowledged registrations, the first completed first.
    acks: Vec<&'a Op>,
    /// The names its first acknowledged registration was told of.
    told: BTreeSet<&'a str>,
    /// When its first deregistration that may have taken effect was sent.
    leaving: Option<Duration>,
    /// Its deregistrations acknowledged.
    deregistered: Vec<&'a Op>,
    /// From when its lease may have lapsed.
    lapse: Option<Duration>,
}

impl<'a> Entry<'a> {
    fn acked(&self) -> Option<&'a Op> {
        self.acks.first().copied()
    }

    /// When its first registration that may have taken effect was sent.
    fn registering(&self) -> Option<Duration> {
        self.first_invoked.filter(|_| self.maybe_registered)
    }
}

/// The history, by name.
struct Facts<'a> {
    model: Model,
    entries: BTreeMap<&'a str, Entry<'a>>,
}

impl<'a> Facts<'a> {
    fn gather(ops: &'a [Op], model: Model) -> Facts<'a> {
        let mut entries: BTreeMap<&str, Entry> = BTreeMap::new();
        let mut renewals: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
        let mut by_invocation: Vec<&Op> = ops.iter().collect();
        by_invocation.sort_by_key(|op| op.invoked);
        for op in by_invocation {
            let renewed = matches!(op.outcome, Outcome::Registered { .. } | Outcome::Renewed);
            match &op.call {
                Call::Register { name } => {
                    let entry = entries.entry(name).or_default();
                    entry.first_invoked.get_or_insert(op.invoked);
                    entry.maybe_registered |= renewed || op.outcome.is_indeterminate();
                    if renewed || op.outcome.is_indeterminate() {
                        entry.registrations.push(op);
                    }
                    if renewed {
                        entry.acks.push(op);
                    }
                }
                Call::Deregister { name } => {
                    let entry = entries.entry(name).or_default();
                    if op.outcome == Outcome::Deregistered || op.outcome.is_indeterminate() {
                        entry.leaving.get_or_insert(op.invoked);
                    }
                    if op.outcome == Outcome::Deregistered {
                        entry.deregistered.push(op);
                    }
                }
                Call::Heartbeat { .. } | Call::List => {}
            }
            if let (Call::Register { name } | Call::Heartbeat { name }, true) = (&op.call, renewed) {
                renewals.entry(name).or_default().push(op);
            }
        }
        for (name, entry) in &mut entries {
            entry.acks.sort_by_key(|op| op.completed);
            entry.told = entry.acked().map(|acked| contacts(acked).collect()).unwrap_or_default();
            entry.lapse = renewals.get(name).and_then(|renewed| lapse(renewed, model.ttl));
        }
        Facts { model, entries }
    }

    /// Whether the entry `name` may have left (been deregistered, or
    /// lapsed) before `at`.
    fn may_be_gone(&self, name: &str, at: Duration) -> bool {
        self.entries.get(name).is_some_and(|e| e.leaving.is_some_and(|t| t < at) || e.lapse.is_some_and(|t| t < at))
    }

    /// How long after an acknowledgement at `acked_at` a list at `replica` must show it.
    fn lag(&self, acked_at: usize, replica: usize) -> Duration {
        if acked_at == replica {
            Duration::ZERO
        } else {
            self.model.lag
        }
    }

    fn check_list(&self, list: &Op, names: &[String]) -> Vec<String> {
        let listed: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        let mut violations = Vec::new();
        for name in &listed {
            let registering = self.entries.get(name).and_then(Entry::registering);
            if registering.is_none_or(|t| t >= list.completed) {
                violations.push(format!("{name} listed but never registered before: {list}"));
            }
        }
        for (name, entry) in &self.entries {
            let missing = !listed.contains(name);
            if let Some(acked) = entry.acked().filter(|acked| missing && self.must_list(acked, list)) {
                violations
                    .push(format!("acknowledged registration lost: {name} missing from {list}; registered by {acked}"));
            }
            if let Some(deregistered) = self.gone(entry, list).filter(|_| !missing) {
                violations
                    .push(format!("{name} listed after its deregistration: {list}; deregistered by {deregistered}"));
            }
        }
        violations
    }

    /// Whether `list` must show the entry `acked` registered.
    fn must_list(&self, acked: &Op, list: &Op) -> bool {
        let Call::Register { name } = &acked.call else { return false };
        acked.completed + self.lag(acked.replica, list.replica) <= list.invoked
            && !self.may_be_gone(name, list.completed)
    }

    /// The deregistration of `entry` that `list` must not show it past, when
    /// no registration may have registered it again since.
    fn gone(&self, entry: &Entry<'a>, list: &Op) -> Option<&'a Op> {
        let gone = entry.deregistered.iter().find(|d| d.completed + self.lag(d.replica, list.replica) <= list.invoked);
        gone.copied().filter(|d| !registers_after(entry, d.invoked, list.completed))
    }

    /// How long past an acknowledgement at another replica `list` went on
    /// missing that entry, or showing it deregistered.
    fn stale_by(&self, list: &Op, names: &[String]) -> Option<Duration> {
        let listed = |name: &str| names.iter().any(|n| n == name);
        let missed = self.entries.iter().filter_map(|(name, entry)| {
            let acked = entry.acked().filter(|acked| !listed(name) && self.must_list(acked, list))?;
            Some(list.invoked - acked.completed)
        });
        let kept = self.entries.iter().filter_map(|(name, entry)| {
            let gone = self.gone(entry, list).filter(|_| listed(name))?;
            Some(list.invoked - gone.completed)
        });
        missed.chain(kept).max()
    }

    /// An answer that no entry `name` was there, to `op`, when one should have been.
    fn check_unknown(&self, op: &Op, name: &str, what: &str) -> Option<String> {
        let acked = self.entries.get(name)?.acked()?;
        let live = acked.completed <= op.invoked && !self.may_be_gone(name, op.completed);
        live.then(|| {
            format!("live entry expired: {what}, though renewed within its lease: {op}; registered by {acked}")
        })
    }

    /// Every registration of a name is answered with the same id: a repeat is the same entry.
    fn check_ids(&self) -> Vec<String> {
        let id = |op: &Op| match &op.outcome {
            Outcome::Registered { id, .. } => id.clone(),
            _ => String::new(),
        };
        let mut violations = Vec::new();
        for (name, entry) in &self.entries {
            let Some(first) = entry.acked() else { continue };
            for other in entry.acks.iter().filter(|other| id(other) != id(first)) {
                violations.push(format!("{name} registered under two ids: {first}; {other}"));
            }
        }
        violations
    }

    /// Each registrant's contacts registered before it completed, and had not left before it started.
    fn check_contacts(&self) -> Vec<String> {
        let mut violations = Vec::new();
        for (name, entry) in &self.entries {
            let Some(acked) = entry.acked() else { continue };
            for contact in &entry.told {
                let other = self.entries.get(contact);
                if other.and_then(Entry::registering).is_none_or(|t| t >= acked.completed) {
                    violations
                        .push(format!("{name} was told of {contact}, which registered after it completed: {acked}"));
                }
                let left = other.and_then(|o| {
                    let left = |d: &&&Op| Some(d.completed) < entry.first_invoked;
                    o.deregistered.iter().find(left).filter(|d| !registers_after(o, d.invoked, acked.completed))
                });
                if let Some(left) = left {
                    violations.push(format!("{name} was told of {contact}, which had left: {acked}; left by {left}"));
                }
            }
        }
        violations
    }

    /// Every two registrations in one order, consistent with real time, and the order transitive.
    fn check_pairs(&self) -> Vec<String> {
        let acked: Vec<(&str, &Entry, &Op)> =
            self.entries.iter().filter_map(|(name, entry)| Some((*name, entry, entry.acked()?))).collect();
        let mut violations = Vec::new();
        for (i, &(a, a_entry, a_op)) in acked.iter().enumerate() {
            for &(b, b_entry, b_op) in &acked[i + 1..] {
                let (a_told_b, b_told_a) = (a_entry.told.contains(b), b_entry.told.contains(a));
                if a_told_b && b_told_a {
                    violations.push(format!("{a} and {b} were each told of the other: {a_op}; {b_op}"));
                }
                let excused = self.may_be_gone(a, b_op.completed) || self.may_be_gone(b, a_op.completed);
                if !a_told_b && !b_told_a && !excused {
                    violations.push(format!("{a} and {b} were neither told of the other: {a_op}; {b_op}"));
                }
                violations.extend(self.real_time((a, a_op), (b, b_entry, b_op)));
                violations.extend(self.real_time((b, b_op), (a, a_entry, a_op)));
            }
        }
        for &(b, b_entry, b_op) in &acked {
            let later = acked.iter().filter(|(_, c_entry, _)| c_entry.told.contains(b));
            for (a, (c, c_entry, c_op)) in b_entry.told.iter().flat_map(|a| later.clone().map(move |c| (a, c))) {
                if a != c && !c_entry.told.contains(a) && !self.may_be_gone(a, c_op.completed) {
                    violations.push(format!(
                        "not one order: {a} before {b} before {c}, but {c} was not told of {a}: {c_op}; {b_op}"
                    ));
                }
            }
        }
        violations
    }

    /// `a`, which completed before `b` started, was told to `b`, unless it may have left first.
    fn real_time(&self, (a, a_op): (&str, &Op), (b, b_entry, b_op): (&str, &Entry, &Op)) -> Option<String> {
        let before = b_entry.first_invoked.is_some_and(|started| a_op.completed < started);
        (before && !b_entry.told.contains(a) && !self.may_be_gone(a, b_op.completed))
            .then(|| format!("{b} was not told of {a}, which completed before {b} started: {b_op}; {a_op}"))
    }
}

/// Whether a registration of `entry` sent before `until` may have taken
/// effect after `at`: one whose outcome is unknown, or one acknowledged after `at`.
fn registers_after(entry: &Entry, at: Duration, until: Duration) -> bool {
    entry.registrations.iter().any(|r| r.invoked < until && (r.outcome.is_indeterminate() || r.completed > at))
}

/// The contacts a registration was told of.
fn contacts(op: &Op) -> impl Iterator<Item = &str> {
    let names = match &op.outcome {
        Outcome::Registered { contacts, .. } => contacts.as_slice(),
        _ => &[],
    };
    names.iter().map(String::as_str)
}

/// From when a lease renewed by `renewals` (acknowledged registrations and
/// heartbeats, by invocation) may have lapsed: a renewal invoked at `t`
/// keeps it until `t + ttl` at least, so it may lapse once the next
/// renewal completes later than that, or after the last.
fn lapse(renewals: &[&Op], ttl: Duration) -> Option<Duration> {
    renewals
        .windows(2)
        .find(|pair| pair[1].completed >= pair[0].invoked + ttl)
        .map(|pair| pair[0].invoked + ttl)
        .or_else(|| renewals.last().map(|last| last.invoked + ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_millis(1000);
    const ONE_REGISTRY: Model = Model { ttl: TTL, lag: Duration::ZERO };

    fn op(client: &str, replica: usize, call: Call, [from, to]: [u64; 2], outcome: Outcome) -> Op {
        let (invoked, completed) = (Duration::from_millis(from), Duration::from_millis(to));
        Op { client: client.to_owned(), replica, call, invoked, completed, outcome }
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn register(name: &str, at: [u64; 2], contacts: &[&str]) -> Op {
        let outcome = Outcome::Registered { id: format!("e-{name}"), contacts: names(contacts) };
        op(name, 0, Call::Register { name: name.into() }, at, outcome)
    }

    fn heartbeat(name: &str, at: [u64; 2], outcome: Outcome) -> Op {
        op(name, 0, Call::Heartbeat { name: name.into() }, at, outcome)
    }

    fn deregister(name: &str, at: [u64; 2], outcome: Outcome) -> Op {
        op(name, 0, Call::Deregister { name: name.into() }, at, outcome)
    }

    fn list(replica: usize, at: [u64; 2], listed: &[&str]) -> Op {
        op("lister", replica, Call::List, at, Outcome::Listed(names(listed)))
    }

    /// a, then b and c together (c told of b), d indeterminate; a renews
    /// within its lease throughout, b leaves, and lists agree.
    fn correct() -> Vec<Op> {
        vec![
            register("a", [0, 10], &[]),
            register("b", [20, 30], &["a"]),
            register("c", [25, 40], &["a", "b"]),
            list(0, [50, 55], &["a", "b", "c"]),
            op("d", 1, Call::Register { name: "d".into() }, [100, 1100], Outcome::Unknown("timed out".into())),
            heartbeat("a", [300, 305], Outcome::Renewed),
            deregister("b", [500, 510], Outcome::Deregistered),
            list(0, [600, 605], &["a", "c"]),
            heartbeat("a", [600, 610], Outcome::Renewed),
            heartbeat("b", [700, 705], Outcome::Refused(ErrorCode::UnknownId)),
            heartbeat("a", [900, 905], Outcome::Renewed),
            heartbeat("c", [900, 905], Outcome::Renewed),
            list(0, [1200, 1205], &["a", "c", "d"]),
        ]
    }

    fn violations(ops: &[Op]) -> Vec<String> {
        check(ops, ONE_REGISTRY)
    }

    /// The history `correct` with `op` added, or replacing the op at `at`.
    fn seeded(at: Option<usize>, op: Op) -> Vec<Op> {
        let mut ops = correct();
        match at {
            Some(at) => ops[at] = op,
            None => ops.push(op),
        }
        ops
    }

    fn caught(ops: &[Op], what: &str) {
        let found = violations(ops);
        assert!(found.iter().any(|v| v.contains(what)), "expected `{what}` among {found:#?}");
    }

    #[test]
    fn a_history_one_registry_could_have_answered_passes() {
        assert_eq!(violations(&correct()), Vec::<String>::new());
    }

    #[test]
    fn a_lost_acknowledged_registration_is_caught() {
        caught(&seeded(None, list(0, [700, 705], &["a"])), "acknowledged registration lost: c missing from");
    }

    #[test]
    fn a_heartbeat_answered_unknown_id_within_the_lease_is_caught() {
        let expired = heartbeat("a", [600, 610], Outcome::Refused(ErrorCode::UnknownId));
        caught(&seeded(Some(8), expired), "live entry expired: heartbeat answered unknown_id");
    }

    #[test]
    fn two_registrations_each_missing_the_other_are_caught() {
        caught(&seeded(Some(2), register("c", [25, 40], &["a"])), "b and c were neither told of the other");
    }

    #[test]
    fn two_registrations_each_told_of_the_other_are_caught() {
        caught(&seeded(Some(1), register("b", [20, 30], &["a", "c"])), "b and c were each told of the other");
    }

    #[test]
    fn a_contact_that_registered_after_the_registrant_completed_is_caught() {
        let ops = seeded(Some(0), register("a", [0, 10], &["b"]));
        caught(&ops, "a was told of b, which registered after it completed");
    }

    #[test]
    fn a_registration_not_told_of_one_that_completed_before_it_started_is_caught() {
        caught(&seeded(Some(1), register("b", [20, 30], &[])), "b was not told of a, which completed before b started");
    }

    #[test]
    fn an_order_that_is_not_transitive_is_caught() {
        // a before b (b told of a), b before c, but c not told of a, and a and c concurrent.
        let ops =
            vec![register("a", [0, 100], &[]), register("b", [10, 100], &["a"]), register("c", [20, 100], &["b"])];
        let found = violations(&ops);
        assert!(found.iter().any(|v| v.contains("not one order: a before b before c")), "{found:#?}");
    }

    #[test]
    fn a_deregistered_or_unknown_name_listed_is_caught() {
        caught(&seeded(None, list(0, [700, 705], &["a", "b", "c"])), "b listed after its deregistration");
        caught(&seeded(None, list(0, [700, 705], &["a", "c", "x"])), "x listed but never registered before");
    }

    #[test]
    fn a_registration_whose_outcome_is_unknown_may_take_effect_after_a_deregistration() {
        let late = op("b", 1, Call::Register { name: "b".into() }, [10, 15], Outcome::Unknown("timed out".into()));
        let ops = [correct(), vec![late.clone(), list(0, [700, 705], &["a", "b", "c"])]].concat();
        assert_eq!(violations(&ops), Vec::<String>::new(), "registered again, late");
        let told = [correct(), vec![late, register("e", [1300, 1305], &["a", "b", "c"])]].concat();
        assert_eq!(violations(&told), Vec::<String>::new());
        caught(&seeded(None, register("e", [1300, 1305], &["a", "b", "c"])), "e was told of b, which had left");
    }

    #[test]
    fn a_refusal_one_registry_never_answers_is_caught() {
        let refused =
            op("e", 0, Call::Register { name: "e".into() }, [700, 705], Outcome::Refused(ErrorCode::NameTaken));
        caught(&seeded(None, refused), "refused name_taken");
    }

    #[test]
    fn an_entry_whose_renewals_left_a_gap_longer_than_its_lease_may_be_gone() {
        // c renewed only at 40 (its registration) and 900: it may have lapsed at 1040.
        let lapsed = vec![
            register("c", [25, 40], &[]),
            heartbeat("c", [1100, 1105], Outcome::Refused(ErrorCode::UnknownId)),
            list(0, [1200, 1205], &[]),
        ];
        assert_eq!(violations(&lapsed), Vec::<String>::new());
        let renewed = vec![
            register("c", [25, 40], &[]),
            heartbeat("c", [600, 605], Outcome::Renewed),
            heartbeat("c", [1100, 1105], Outcome::Refused(ErrorCode::UnknownId)),
        ];
        assert_eq!(violations(&renewed).len(), 1, "renewed at 600, live until 1600 at least");
    }

    #[test]
    fn a_list_at_another_replica_may_lag_by_the_model_s_lag_and_no_more() {
        let ops = vec![register("a", [0, 10], &[]), list(1, [50, 55], &[]), list(0, [50, 55], &["a"])];
        assert_eq!(violations(&ops).len(), 1, "one registry: no lag");
        let replicas = Model { ttl: TTL, lag: Duration::from_millis(100) };
        assert_eq!(check(&ops, replicas), Vec::<String>::new());
        let late = [ops.clone(), vec![list(1, [200, 205], &[])]].concat();
        assert_eq!(check(&late, replicas).len(), 1, "past the lag");
        assert_eq!(staleness(&ops, TTL), Duration::from_millis(40));
    }

    #[test]
    fn an_outage_runs_from_the_first_failed_or_slow_write_to_the_next_success() {
        let unknown = Outcome::Unknown("timed out".into());
        let ops = vec![
            register("a", [0, 10], &[]),
            op("b", 0, Call::Register { name: "b".into() }, [100, 2100], unknown),
            register("b", [2100, 2400], &["a"]),
            register("c", [2500, 2510], &["a", "b"]),
        ];
        let outage = outage(&ops, Duration::from_millis(50), Duration::from_millis(250)).unwrap();
        assert_eq!((outage.from, outage.until), (Duration::from_millis(100), Some(Duration::from_millis(2400))));
        assert_eq!((outage.failed, outage.slowest), (1, Duration::from_millis(2000)));
        assert_eq!(super::outage(&ops[..1], Duration::ZERO, Duration::from_millis(250)), None);
        let unrecovered = super::outage(&ops[..2], Duration::ZERO, Duration::from_millis(250)).unwrap();
        assert_eq!((unrecovered.until, unrecovered.failed), (None, 1));
    }
}
