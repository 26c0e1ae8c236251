//! Registry replicas sharing one membership through a real 3-member etcd
//! (`registry --store etcd`): real registry and node binaries, each node
//! given one replica, the replicas agreeing on everything.

use std::time::Duration;

use anyhow::{ensure, Context};
use nix::sys::signal::Signal;
use node::events::Event;
use registry::client::{Client, Joined};
use registry::events::Event as RegistryEvent;
use registry::identity::{RegistrySecret, KEY_ENV};
use registry::protocol::{NativeRequest, Since};
use registry::watch::{Change, LeftReason, WatchEvent};
use tests::replicas_cluster::Replicas;
use tests::{is, Node, PATIENCE};
use wire::secure::{Admission, Identity, Keys};
use wire::ticket::TicketKey;

/// The next `count` changes of a watch, progress skipped.
async fn changes(watch: &mut registry::client::Watch, count: usize) -> anyhow::Result<Vec<WatchEvent>> {
    let mut changes = Vec::with_capacity(count);
    while changes.len() < count {
        changes.push(tokio::time::timeout(PATIENCE, watch.next()).await??);
    }
    Ok(changes)
}

/// The name and reason of the next entry the watch sees leave.
async fn first_left(watch: &mut registry::client::Watch) -> anyhow::Result<(String, LeftReason)> {
    loop {
        let change = tokio::time::timeout(PATIENCE, watch.next()).await??;
        if let Change::Left { entry, reason } = change.change {
            return Ok((entry.name, reason));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_registered_at_different_replicas_are_in_one_order_and_greet_every_pair_once() -> anyhow::Result<()> {
    let Some(replicas) = Replicas::start("replicas", 3, &[]).await? else { return Ok(()) };
    // Each joins at the next replica once the one before it has registered:
    // node i is told of the i - 1 before it, whichever replica they used.
    let mut nodes = Vec::new();
    for i in 0..6 {
        let node = Node::start(replicas.replicas[i % 3].addr, &format!("node-{}", i + 1), &[]).await?;
        let registered = node.process.wait_for_event(Event::Registered).await?;
        ensure!(registered["contacts"] == i, "node-{} was told of {} contacts", i + 1, registered["contacts"]);
        nodes.push(node);
    }
    tests::every_pair_greeted_once(&nodes).await?;
    let listed = replicas.agree_on(6).await?;
    let names: Vec<&str> = listed.iter().map(|(_, name)| name.as_str()).collect();
    assert_eq!(names, ["node-1", "node-2", "node-3", "node-4", "node-5", "node-6"]);
    // Ids are the etcd cluster's, the same from every replica.
    let epoch = listed[0].0.split('-').next().unwrap();
    assert!(listed.iter().all(|(id, _)| id.starts_with(epoch)), "{listed:?}");
    // Groups are assigned as one registry would: balanced over the three.
    let client = &mut replicas.replicas[1].client().await?;
    for group in 1..=3 {
        let members = client.group(group).await?;
        assert_eq!(members.members.len(), 2, "group {group}: {members:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_resumes_at_another_replica_where_it_left_off() -> anyhow::Result<()> {
    let Some(replicas) = Replicas::start("replicas", 2, &[]).await? else { return Ok(()) };
    let first = replicas.replicas[0].client().await?;
    let mut watch = first.watch(None).await?;
    let epoch = watch.start.epoch.clone();
    let a = Node::start(replicas.replicas[0].addr, "a", &[]).await?;
    let seen = changes(&mut watch, 2).await?; // a joined, and coordinates group 1
    let last = seen.last().unwrap().revision;
    drop(watch);

    // Changes made while no one watched, at the other replica.
    let b = Node::start(replicas.replicas[1].addr, "b", &[]).await?;
    b.process.wait_for_event(Event::Registered).await?;
    let since = Since { revision: last, epoch: Some(epoch.clone()) };
    let mut resumed = replicas.replicas[1].client().await?.watch(Some(&since)).await?;
    assert_eq!(resumed.start.epoch, epoch, "one epoch for every replica");
    let next = changes(&mut resumed, 2).await?;
    assert_eq!(next[0].revision, last + 1, "nothing missed, nothing repeated: {next:?}");
    assert!(matches!(&next[0].change, Change::Joined { entry } if entry.name == "b"), "{next:?}");

    // And the history is the same from either replica, revision for revision.
    let mut again =
        replicas.replicas[0].client().await?.watch(Some(&Since { revision: 0, epoch: Some(epoch) })).await?;
    let from_first = changes(&mut again, seen.len() + next.len()).await?;
    assert_eq!(from_first, [seen, next].concat());
    drop(a);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_expires_once_through_etcd_and_a_heartbeating_one_never() -> anyhow::Result<()> {
    let Some(replicas) = Replicas::start("replicas", 2, &["--ttl", "2s"]).await? else { return Ok(()) };
    let quiet = Node::start(replicas.replicas[0].addr, "quiet", &[]).await?;
    let alive = Node::start(replicas.replicas[1].addr, "alive", &[]).await?;
    replicas.agree_on(2).await?;
    let mut watch = replicas.replicas[1].client().await?.watch(None).await?;

    // Stopped, its session stays open but it heartbeats no more: its etcd
    // lease ends, and every replica ends its entry.
    quiet.process.signal(Signal::SIGSTOP);
    let left = first_left(&mut watch).await?;
    assert_eq!(left, ("quiet".to_owned(), LeftReason::Expired));
    let listed = replicas.agree_on(1).await?;
    assert_eq!(listed[0].1, "alive");
    // One replica logs the expiry, however many saw the lease end.
    let logged: usize = replicas.replicas.iter().map(|r| r.process.events(RegistryEvent::Expired).len()).sum();
    assert_eq!(logged, 1);
    quiet.process.signal(Signal::SIGCONT);
    assert!(alive.process.events(Event::Reregistered).is_empty(), "the live node never lapsed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_leaves_every_replica_at_once_and_its_place_is_kept() -> anyhow::Result<()> {
    let Some(replicas) = Replicas::start("replicas", 2, &[]).await? else { return Ok(()) };
    let doomed = Node::start(replicas.replicas[0].addr, "doomed", &[]).await?;
    doomed.process.wait_for_event(Event::Registered).await?;
    let mut watch = replicas.replicas[1].client().await?.watch(None).await?;
    doomed.process.signal(Signal::SIGKILL);
    let left = first_left(&mut watch).await?;
    assert_eq!(left, ("doomed".to_owned(), LeftReason::ConnectionLost));
    replicas.agree_on(0).await?;
    let lost = replicas.replicas[0].process.wait_for_event(RegistryEvent::SessionLost).await?;
    ensure!(lost["name"] == "doomed", "{lost}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_joins_late_catches_up_with_the_log() -> anyhow::Result<()> {
    let Some(mut replicas) = Replicas::start("replicas", 1, &[]).await? else { return Ok(()) };
    let nodes = Node::start_in_order(replicas.replicas[0].addr, 3, &[]).await?;
    let late = replicas.replica(&[]).await?;
    replicas.replicas.push(late);
    let listed = replicas.agree_on(3).await?;
    assert_eq!(listed.len(), 3);
    // Its history is the first's: a watch from the start sees the same changes.
    let mut watches = Vec::new();
    for replica in &replicas.replicas {
        let mut watch = replica.client().await?.watch(None).await?;
        watches.push((watch.start.revision, watch.start.snapshot.take()));
    }
    assert_eq!(watches[0], watches[1]);
    ensure!(replicas.replicas[1].process.lines().iter().any(|l| is(l, RegistryEvent::Listening)));
    drop(nodes);
    Ok(())
}

#[tokio::test]
async fn a_replica_without_a_shared_key_or_without_etcd_refuses_to_start() -> anyhow::Result<()> {
    let output = tokio::process::Command::new(tests::binary("registry"))
        .args(["--store", "etcd", "--etcd-endpoints", "127.0.0.1:9"])
        .env_remove(KEY_ENV)
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("--key-file"), "{stderr}");
    let secret = RegistrySecret::generate();
    let output = tokio::process::Command::new(tests::binary("registry"))
        .args(["--store", "etcd", "--etcd-endpoints", "127.0.0.1:9", "--listen", "127.0.0.1:0"])
        .env(KEY_ENV, secret.reveal().as_str())
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("cannot reach etcd"), "{stderr}");
    assert!(!stderr.contains(secret.reveal().as_str()), "the secret stays out of errors");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replica_most_nodes_use_is_killed_and_they_move_on_losing_nothing_greeting_no_one_again(
) -> anyhow::Result<()> {
    const TTL: Duration = Duration::from_secs(2);
    let Some(mut replicas) = Replicas::start("replicas", 3, &["--ttl", "2s"]).await? else { return Ok(()) };
    let addrs = replicas.addrs();
    // Four nodes try replica 0 first, two replica 1: replica 0 is the one most use.
    let orders = [[0, 1, 2], [0, 1, 2], [0, 1, 2], [0, 1, 2], [1, 2, 0], [1, 2, 0]];
    let mut nodes = Vec::new();
    for (i, order) in orders.iter().enumerate() {
        let list: Vec<_> = order.iter().map(|&r| addrs[r]).collect();
        let node = Node::start_replicated(&list, &format!("node-{}", i + 1), None, &[]).await?;
        node.process.wait_for_event(Event::Registered).await?;
        nodes.push(node);
    }
    replicas.agree_on(6).await?;
    let mut watch = replicas.replicas[2].client().await?.watch(None).await?;

    let killed = tokio::time::Instant::now();
    replicas.replicas[0].process.signal(Signal::SIGKILL);
    for node in &nodes[..4] {
        let moved = node.process.wait_for_event(Event::RegistryMoved).await?;
        let after = moved["after_ms"].as_u64().context("`registry_moved` has after_ms")?;
        ensure!(after < 1000, "{} took {after} ms to move: {moved}", node.name);
    }
    // Nodes that join while one replica is gone, at the others.
    for i in 7..=8 {
        let node = Node::start_replicated(&[addrs[0], addrs[1 + i % 2]], &format!("node-{i}"), None, &[]).await?;
        node.process.wait_for_event(Event::Registered).await?;
        nodes.push(node);
    }
    // No lease lapses: an absence, shown by time passing, past two leases.
    tokio::time::sleep_until(killed + 2 * TTL + TTL / 2).await;
    replicas.replicas.remove(0);
    let listed = replicas.agree_on(8).await?;
    assert_eq!(listed.len(), 8);
    for node in &nodes {
        ensure!(node.process.events(Event::Reregistered).is_empty(), "{} registered again", node.name);
    }
    tests::every_pair_greeted_once(&nodes).await?;
    // The watch at a surviving replica saw the two join, and no one leave.
    let joined = changes(&mut watch, 2).await?;
    let names: Vec<_> = joined
        .iter()
        .map(|c| match &c.change {
            Change::Joined { entry } => entry.name.clone(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["node-7", "node-8"], "nobody left: {joined:?}");
    Ok(())
}

/// A heartbeat on a session its client gave up on, once its entry is tied to
/// the session the client uses now at another replica, does not tie it
/// back: the old session's end must not end the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_on_a_session_given_up_takes_nothing_back() -> anyhow::Result<()> {
    let Some(replicas) = Replicas::start("replicas", 2, &["--ttl", "3s"]).await? else { return Ok(()) };
    let (first, second) = (&replicas.replicas[0], &replicas.replicas[1]);
    let keys = Keys::new(Identity::generate(), Admission::Open);
    let ticket_key = TicketKey::generate();
    let mut given_up = Client::connect_secure(&first.registry_addr(), &keys, PATIENCE).await?;
    let Joined::Leased(registered) = given_up.register(&registration("moved", 4000, &ticket_key)).await? else {
        anyhow::bail!("not leased")
    };
    let mut moved_on = Client::connect_secure(&second.registry_addr(), &keys, PATIENCE).await?;
    moved_on.heartbeat(&registered.id).await?;
    // A change at the first replica, answered once applied there, comes after
    // the heartbeat's tie in the log: the first has applied that too.
    let marker_keys = Keys::new(Identity::generate(), Admission::Open);
    let mut marker = Client::connect_secure(&first.registry_addr(), &marker_keys, PATIENCE).await?;
    let Joined::Leased(marked) = marker.register(&registration("marker", 4001, &ticket_key)).await? else {
        anyhow::bail!("not leased")
    };
    marker.deregister(&marked.id).await?;

    given_up.heartbeat(&registered.id).await?;
    drop(given_up);
    renew_past_two_leases(&mut moved_on, &registered.id).await?;
    assert_eq!(replicas.agree_on(1).await?[0].1, "moved");
    ensure!(first.process.events(RegistryEvent::SessionLost).is_empty());
    Ok(())
}

/// A native registration of `name` listening on 127.0.0.1:`puerto`.
fn registration<'a>(name: &'a str, puerto: u16, ticket_key: &'a TicketKey) -> NativeRequest<'a> {
    NativeRequest::Register {
        ip: Some([127, 0, 0, 1].into()),
        puerto,
        name,
        group: None,
        incarnation: Some(name),
        ticket_key: Some(ticket_key),
    }
}

/// Renews the entry `id` every third of a 3 s lease, past two leases: that
/// no entry ends is an absence, shown by time passing.
async fn renew_past_two_leases(client: &mut Client, id: &str) -> anyhow::Result<()> {
    const TTL: Duration = Duration::from_secs(3);
    let until = tokio::time::Instant::now() + 2 * TTL;
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(TTL / 3).await;
        client.heartbeat(id).await.context("the entry was ended")?;
    }
    Ok(())
}

/// How a client leaves a replica that takes its registration up late.
#[derive(Debug, Clone, Copy)]
enum Leaving {
    /// It hangs up while the replica is paused.
    WhilePaused,
    /// It reads the late answer, then hangs up.
    AfterTheLateAnswer,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_a_paused_replica_takes_up_after_its_client_hung_up_ends_nothing() -> anyhow::Result<()> {
    a_late_registration_ends_nothing(Leaving::WhilePaused).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_a_paused_replica_answers_after_its_client_moved_on_ends_nothing() -> anyhow::Result<()> {
    a_late_registration_ends_nothing(Leaving::AfterTheLateAnswer).await
}

/// A client whose registration goes unanswered at a paused replica
/// registers at the other instead; the paused one, resumed, applies its
/// own after the other's (a repeat, on the session the client gives up),
/// and the client hangs up on it. Its entry, renewed at the other replica,
/// must not end.
async fn a_late_registration_ends_nothing(leaving: Leaving) -> anyhow::Result<()> {
    use futures::SinkExt;
    let Some(replicas) = Replicas::start("replicas", 2, &["--ttl", "3s"]).await? else { return Ok(()) };
    let (paused, other) = (&replicas.replicas[0], &replicas.replicas[1]);
    let keys = Keys::new(Identity::generate(), Admission::Open);
    let ticket_key = TicketKey::generate();
    let request = registration("late", 4000, &ticket_key);
    let mut given_up = tests::open_sealed(paused.addr, &keys).await?;
    paused.process.signal(Signal::SIGSTOP);
    given_up.send(&serde_json::to_value(&request)?).await?;
    let mut moved_on = Client::connect_secure(&other.registry_addr(), &keys, PATIENCE).await?;
    let Joined::Leased(registered) = moved_on.register(&request).await? else { anyhow::bail!("not leased") };
    paused.process.signal(Signal::SIGCONT);
    if let Leaving::AfterTheLateAnswer = leaving {
        let late = tests::read(&mut given_up).await?;
        ensure!(late["id"] == registered.id.as_str(), "the same registration: {late}");
    }
    drop(given_up);
    renew_past_two_leases(&mut moved_on, &registered.id).await.with_context(|| format!("{leaving:?}"))?;
    let listed = replicas.agree_on(1).await?;
    assert_eq!(listed[0].1, "late");
    ensure!(paused.process.events(RegistryEvent::SessionLost).is_empty());
    Ok(())
}
