//! Registry replicas through faults, under a steady stream of joins and
//! heartbeats: kill -9 of the etcd leader, of a follower, SIGSTOP of the
//! leader past its election timeout, and kill -9 of the registry replica
//! most nodes use. Each test runs its own 3-member etcd and 3 replicas;
//! clients record every operation for the history checker, real nodes
//! greet one another, and a watcher follows the changes across replicas.
//!
//! After each fault: the history is one a single registry could have
//! answered (no acknowledged registration lost, no live entry expired, one
//! join order); every pair of nodes greeted exactly once, including those
//! that joined during the fault, and no node registered again; the watch's
//! revisions ran on without a gap, a repeat or a step back; and every
//! surviving replica lists the same entries.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::ensure;
use nix::sys::signal::Signal;
use node::events::Event;
use registry::watch::{Change, LeftReason};
use tests::driver::{Churn, Driver, Member};
use tests::history::{self, Model};
use tests::replicas_cluster::Replicas;
use tests::watcher::Watcher;
use tests::{Node, Registry};
use tokio::time::Instant;

/// The entries' lease: short, so that a lapse would show within the test,
/// and three times the longest pause, so that the leader etcd 3.4.23 resumes
/// after it cannot revoke leases (etcd PR 16822, fixed in 3.4.31).
const TTL: Duration = Duration::from_secs(3);

/// How long the etcd leader stays stopped: four election timeouts (250 ms).
const PAUSE: Duration = Duration::from_secs(1);

/// How long a change acknowledged at one replica may be missing from the
/// lists of another, which applies etcd's log on its own (reads are served
/// from each replica's store): a replica whose etcd watch is on a stopped
/// member leaves it after 1.5 s at most (0.5 s quiet, then 1 s for the
/// probe's answer); twice that, on a loaded machine. Lists lagged 1 s at
/// most in the runs measured.
const LAG: Duration = Duration::from_secs(3);

/// A write slower than this counts as blocked, for the report.
const SLOW: Duration = Duration::from_millis(300);

/// The replica most nodes and members try first.
const BUSIEST: usize = 0;

/// Nodes started before the fault and during it, with the replicas each is
/// given, in order: most begin with the busiest.
const NODES_BEFORE: [(&str, [usize; 3]); 3] = [("node-1", [0, 1, 2]), ("node-2", [0, 2, 1]), ("node-3", [1, 2, 0])];
const NODES_DURING: [(&str, [usize; 3]); 2] = [("node-4", [0, 1, 2]), ("node-5", [2, 0, 1])];

/// The driver's members, likewise.
const MEMBERS_BEFORE: [(&str, [usize; 3]); 4] =
    [("m1", [0, 1, 2]), ("m2", [0, 2, 1]), ("m3", [1, 2, 0]), ("m4", [2, 0, 1])];
const MEMBERS_DURING: [(&str, [usize; 3]); 2] = [("m5", [0, 1, 2]), ("m6", [1, 0, 2])];

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillEtcdLeader,
    KillEtcdFollower,
    PauseEtcdLeader,
    KillBusiestReplica,
}

impl Fault {
    /// Injects the fault.
    async fn inject(self, replicas: &mut Replicas) -> Injected {
        match self {
            Fault::KillEtcdLeader => {
                let leader = replicas.etcd.leader().await;
                replicas.etcd.kill(leader);
                Injected::Over
            }
            Fault::KillEtcdFollower => {
                let follower = (replicas.etcd.leader().await + 1) % 3;
                replicas.etcd.kill(follower);
                Injected::Over
            }
            Fault::PauseEtcdLeader => {
                let leader = replicas.etcd.leader().await;
                replicas.etcd.stop(leader);
                Injected::Paused(leader)
            }
            Fault::KillBusiestReplica => {
                replicas.replicas[BUSIEST].process.signal(Signal::SIGKILL);
                Injected::Over
            }
        }
    }
}

/// What is left to undo of a fault.
enum Injected {
    Over,
    /// The etcd member stopped.
    Paused(usize),
}

impl Injected {
    /// Resumes a stopped member once [`PAUSE`] has passed since `at`: the
    /// fault is the passage of that time.
    async fn heal(self, replicas: &Replicas, at: Instant) {
        if let Injected::Paused(member) = self {
            tokio::time::sleep_until(at + PAUSE).await;
            replicas.etcd.cont(member);
        }
    }
}

/// What the scenario measured, for the report.
struct Measured {
    fault_at: Duration,
    /// The writes' outage at each replica.
    at_replicas: Vec<Option<history::Outage>>,
    /// The writes' outage of each churn (which moves on), by the replica it tries first.
    churns: Vec<Option<history::Outage>>,
    slowest_before: Duration,
    staleness: Duration,
    moved_after_ms: Vec<u64>,
    members_moved_after: Vec<Duration>,
    ops: usize,
    changes: usize,
    resumed: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_leader_killed() -> anyhow::Result<()> {
    survive(Fault::KillEtcdLeader).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_follower_killed() -> anyhow::Result<()> {
    survive(Fault::KillEtcdFollower).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_leader_stopped_past_its_election_timeout() -> anyhow::Result<()> {
    survive(Fault::PauseEtcdLeader).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_replica_most_nodes_use_killed() -> anyhow::Result<()> {
    survive(Fault::KillBusiestReplica).await
}

/// The seeded fault, end to end: two registries that share no membership
/// (each with a store of its own), taken for replicas. The checker the
/// fault tests use finds them out: a member listing at one misses those
/// acknowledged at the other, and members at different ones are each told
/// nothing of the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_finds_out_registries_that_share_no_membership() -> anyhow::Result<()> {
    let ttl = format!("{}s", TTL.as_secs());
    let (a, b) = (Registry::start(&["--ttl", &ttl]).await?, Registry::start(&["--ttl", &ttl]).await?);
    let driver = Driver::new(&[a.addr, b.addr], TTL);
    let mut members = Vec::new();
    for (label, order) in [("m1", [0, 1]), ("m2", [1, 0]), ("m3", [0, 1]), ("m4", [1, 0])] {
        let member = driver.join(label, &order).await?;
        member.registered().await?;
        members.push(member);
    }
    let registered = driver.recorder.ops().iter().map(|op| op.completed).max().unwrap_or_default();
    // Lists past the lag allowed to replicas, at both.
    let past_lag = |ops: &[history::Op]| {
        let late = |replica| {
            ops.iter()
                .any(|op| op.call == history::Call::List && op.replica == replica && op.invoked > registered + LAG)
        };
        late(0) && late(1)
    };
    driver.recorder.wait_for("lists past the lag at both registries", past_lag).await?;
    let violations = history::check(&driver.recorder.ops(), Model { ttl: TTL, lag: LAG });
    let found = |what: &str| violations.iter().any(|v| v.contains(what));
    ensure!(found("acknowledged registration lost: h-m1 missing from h-m2 list at replica 1"), "{violations:#?}");
    ensure!(found("h-m1 and h-m2 were neither told of the other"), "{violations:#?}");
    Ok(())
}

/// Runs the scenario through `fault`, checks everything, and reports.
async fn survive(fault: Fault) -> anyhow::Result<()> {
    let Some(mut scenario) = Scenario::start().await? else { return Ok(()) };
    let churns: Vec<Churn> = (0..scenario.addrs.len()).map(|first| scenario.driver.churn(first)).collect();
    scenario.steady().await?;
    let fault_at = Instant::now();
    scenario.through(fault, fault_at).await?;
    let contacts = scenario.registered().await?;
    // A deregistration once the fault is over, of a member every node knows.
    scenario.members[0].leave().await?;
    // No lease lapses: an absence, shown by time passing, past two leases.
    tokio::time::sleep_until(fault_at + 2 * TTL + TTL / 2).await;
    let mut churned = Vec::new();
    for churn in churns {
        churned.extend(churn.stop().await?);
    }
    if let Fault::KillBusiestReplica = fault {
        scenario.replicas.replicas.remove(BUSIEST);
    }
    let resumed = scenario.check(fault, &contacts, &churned).await?;
    report(fault, &scenario.measure(fault_at, resumed));
    Ok(())
}

/// Three replicas on a 3-member etcd, the driver's members, real nodes,
/// and a watcher.
struct Scenario {
    replicas: Replicas,
    addrs: Vec<SocketAddr>,
    driver: Driver,
    watcher: Watcher,
    nodes: Vec<Node>,
    members: Vec<Member>,
}

impl Scenario {
    /// The replicas, the watcher, and the nodes and members before the
    /// fault, registered; `None` without etcd.
    async fn start() -> anyhow::Result<Option<Scenario>> {
        let ttl = format!("{}s", TTL.as_secs());
        let Some(replicas) = Replicas::start("replica-faults", 3, &["--ttl", &ttl]).await? else { return Ok(None) };
        let addrs = replicas.addrs();
        let (driver, watcher) = (Driver::new(&addrs, TTL), Watcher::start(&addrs, BUSIEST));
        let mut scenario = Scenario { replicas, addrs, driver, watcher, nodes: Vec::new(), members: Vec::new() };
        for (name, order) in NODES_BEFORE {
            scenario.start_node(name, &order).await?;
            scenario.nodes.last().expect("started").process.wait_for_event(Event::Registered).await?;
        }
        for (label, order) in MEMBERS_BEFORE {
            scenario.members.push(scenario.driver.join(label, &order).await?);
            scenario.members.last().expect("joined").registered().await?;
        }
        Ok(Some(scenario))
    }

    async fn start_node(&mut self, name: &str, order: &[usize]) -> anyhow::Result<()> {
        let list: Vec<SocketAddr> = order.iter().map(|&r| self.addrs[r]).collect();
        self.nodes.push(Node::start_replicated(&list, name, None, &[]).await?);
        Ok(())
    }

    /// Waits until every member has renewed its entry once.
    async fn steady(&self) -> anyhow::Result<()> {
        let names: Vec<String> = self.members.iter().map(|m| m.name.clone()).collect();
        self.driver.recorder.wait_for("every member renewing", |ops| every_renewed(ops, &names)).await
    }

    /// Injects `fault` at `at`, starts nodes and members during it, and heals it.
    async fn through(&mut self, fault: Fault, at: Instant) -> anyhow::Result<()> {
        let injected = fault.inject(&mut self.replicas).await;
        for (name, order) in NODES_DURING {
            self.start_node(name, &order).await?;
        }
        for (label, order) in MEMBERS_DURING {
            self.members.push(self.driver.join(label, &order).await?);
        }
        injected.heal(&self.replicas, at).await;
        Ok(())
    }

    /// Waits until every node and member has registered; returns the
    /// contacts each member was told of.
    async fn registered(&self) -> anyhow::Result<Vec<Vec<String>>> {
        for node in &self.nodes {
            node.process.wait_for_event(Event::Registered).await?;
        }
        let mut contacts = Vec::new();
        for member in &self.members {
            contacts.push(member.registered().await?);
        }
        Ok(contacts)
    }

    /// Checks everything once the first member and the `churned` ones
    /// have left; returns how many times the watcher resumed.
    async fn check(&self, fault: Fault, contacts: &[Vec<String>], churned: &[Member]) -> anyhow::Result<usize> {
        let staying: BTreeSet<String> =
            self.nodes.iter().map(|n| n.name.clone()).chain(self.members[1..].iter().map(|m| m.name.clone())).collect();
        let listed = self.replicas.agree_on(staying.len()).await?;
        let listed: BTreeSet<String> = listed.into_iter().map(|(_, name)| name).collect();
        ensure!(listed == staying, "the replicas list {listed:?}, not {staying:?}");
        let ops = self.driver.recorder.ops();
        let violations = history::check(&ops, Model { ttl: TTL, lag: LAG });
        ensure!(
            violations.is_empty(),
            "{fault:?}: the history departs from one registry's:\n{}",
            violations.join("\n")
        );
        for node in &self.nodes {
            ensure!(node.process.events(Event::Reregistered).is_empty(), "{} registered again", node.name);
        }
        let greeted = tests::every_pair_of_nodes_greeted_once(&self.nodes).await?;
        members_greeted_by_later_nodes(&self.members, contacts, &greeted)?;
        let left: BTreeSet<String> = churned.iter().chain(&self.members[..1]).map(|m| m.name.clone()).collect();
        watch_ran_on(&self.watcher, &staying, &left, &registered_late(&ops)).await
    }

    /// What the history and the nodes' logs say of the fault injected at `at`.
    fn measure(&self, at: Instant, resumed: usize) -> Measured {
        let ops = self.driver.recorder.ops();
        let fault_at = self.driver.recorder.time(at);
        let replicas = 0..self.addrs.len();
        Measured {
            fault_at,
            at_replicas: replicas.clone().map(|replica| outage(&ops, |op| op.replica == replica, fault_at)).collect(),
            churns: replicas.map(|first| outage(&ops, |op| is_churn(op, first), fault_at)).collect(),
            slowest_before: slowest_write(&ops, fault_at),
            staleness: history::staleness(&ops, TTL),
            moved_after_ms: moved_after_ms(&self.nodes),
            members_moved_after: members_moved_after(&ops, fault_at),
            ops: ops.len(),
            changes: self.watcher.seen().changes.len(),
            resumed,
        }
    }
}

/// Whether each of `names` has had a heartbeat answered.
fn every_renewed(ops: &[history::Op], names: &[String]) -> bool {
    names.iter().all(|name| {
        ops.iter().any(|op| {
            matches!(&op.call, history::Call::Heartbeat { name: n } if n == name)
                && op.outcome == history::Outcome::Renewed
        })
    })
}

/// Each member was greeted once by every node registered after it (those
/// not among its `contacts`), and by no other.
fn members_greeted_by_later_nodes(
    members: &[Member],
    contacts: &[Vec<String>],
    greeted: &std::collections::BTreeMap<String, Vec<String>>,
) -> anyhow::Result<()> {
    for (member, contacts) in members.iter().zip(contacts) {
        let later: BTreeSet<&str> =
            greeted.keys().map(String::as_str).filter(|node| !contacts.iter().any(|c| c == node)).collect();
        let greeting: BTreeSet<&str> =
            greeted.iter().filter(|(_, sent)| sent.contains(&member.name)).map(|(node, _)| node.as_str()).collect();
        ensure!(greeting == later, "{} was greeted by {greeting:?}, not by the nodes after it, {later:?}", member.name);
        let greeters = member.greeters();
        let answered: BTreeSet<&str> = greeters.iter().map(String::as_str).collect();
        ensure!(answered == later, "{} answered greetings from {answered:?}, not {later:?}", member.name);
    }
    Ok(())
}

/// Names with a registration whose outcome is unknown: it may take effect
/// late, after their deregistration, and the entry then ends otherwise.
fn registered_late(ops: &[history::Op]) -> BTreeSet<String> {
    let late = ops.iter().filter_map(|op| match &op.call {
        history::Call::Register { name } if op.outcome.is_indeterminate() => Some(name.clone()),
        _ => None,
    });
    late.collect()
}

/// The watcher saw every entry in `staying` join and only those in `left`
/// leave (deregistered, or otherwise for those registered `late` too), in
/// revisions that ran on across every resumption; returns how many times
/// it resumed.
async fn watch_ran_on(
    watcher: &Watcher,
    staying: &BTreeSet<String>,
    left: &BTreeSet<String>,
    late: &BTreeSet<String>,
) -> anyhow::Result<usize> {
    let everyone: Vec<&String> = staying.iter().chain(left).collect();
    let seen = watcher.wait_for("every entry join", |seen| everyone.iter().all(|name| seen.joined(name))).await?;
    let gaps = seen.gaps();
    ensure!(gaps.is_empty(), "the watch's revisions did not run on: {gaps:?}; breaks: {:?}", seen.breaks);
    for departure in seen.departures() {
        let Change::Left { entry, reason } = &departure.change else { continue };
        let expected = *reason == LeftReason::Deregistered || late.contains(&entry.name);
        ensure!(
            expected && left.contains(&entry.name),
            "{} left ({reason}) at revision {}",
            entry.name,
            departure.revision
        );
    }
    Ok(seen.starts.len() - 1)
}

/// The outage of the writes `of` after `since`.
fn outage(ops: &[history::Op], of: impl Fn(&history::Op) -> bool, since: Duration) -> Option<history::Outage> {
    let these: Vec<history::Op> = ops.iter().filter(|op| of(op)).cloned().collect();
    history::outage(&these, since, SLOW)
}

/// Whether `op` is one of the churn's that tries replica `first` first.
fn is_churn(op: &history::Op, first: usize) -> bool {
    op.client.starts_with(&format!("{}c{first}-", tests::driver::PREFIX))
}

/// The longest a write took that completed before `until`.
fn slowest_write(ops: &[history::Op], until: Duration) -> Duration {
    let writes = ops.iter().filter(|op| {
        matches!(op.call, history::Call::Register { .. } | history::Call::Deregister { .. }) && op.completed < until
    });
    writes.map(|op| op.completed - op.invoked).max().unwrap_or_default()
}

/// Each node's `registry_moved` delay, in ms, for those that moved.
fn moved_after_ms(nodes: &[Node]) -> Vec<u64> {
    nodes
        .iter()
        .flat_map(|node| node.process.events(Event::RegistryMoved))
        .filter_map(|m| m["after_ms"].as_u64())
        .collect()
}

/// How long each member whose operation at the busiest replica went
/// unanswered after `since` took to have one answered at another: from the
/// first such operation's invocation to that answer.
fn members_moved_after(ops: &[history::Op], since: Duration) -> Vec<Duration> {
    let clients: BTreeSet<&str> = ops.iter().map(|op| op.client.as_str()).collect();
    let moved = clients.into_iter().filter_map(|client| {
        let mine = || ops.iter().filter(move |op| op.client == client && op.invoked >= since);
        let lost = mine().find(|op| op.replica == BUSIEST && op.outcome.is_indeterminate())?;
        let answered =
            mine().find(|op| op.replica != BUSIEST && op.invoked >= lost.invoked && !op.outcome.is_indeterminate())?;
        Some(answered.completed - lost.invoked)
    });
    moved.collect()
}

fn report(fault: Fault, measured: &Measured) {
    let outage = |outage: &Option<history::Outage>| match outage {
        None => "none".to_owned(),
        Some(o) => format!(
            "{} from +{} ms ({} failed, slowest {} ms)",
            o.length().map_or("for good".to_owned(), |length| format!("{} ms", length.as_millis())),
            o.from.saturating_sub(measured.fault_at).as_millis(),
            o.failed,
            o.slowest.as_millis()
        ),
    };
    let each = |outages: &[Option<history::Outage>]| outages.iter().map(outage).collect::<Vec<_>>().join(", ");
    let ms = |durations: &[Duration]| durations.iter().map(|d| d.as_millis()).collect::<Vec<_>>();
    eprintln!(
        "fault {fault:?}: writes failing or slow at replicas 0, 1, 2: {}; for the churns starting there: {}; \
         slowest write before {} ms; lists lagged up to {} ms; nodes moved after {:?} ms, members after {:?} ms; \
         {} ops checked; watch saw {} changes, resumed {} times",
        each(&measured.at_replicas),
        each(&measured.churns),
        measured.slowest_before.as_millis(),
        measured.staleness.as_millis(),
        measured.moved_after_ms,
        ms(&measured.members_moved_after),
        measured.ops,
        measured.changes,
        measured.resumed,
    );
}
