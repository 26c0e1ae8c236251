//! Nodes given several replicas of the registry: they start at the first
//! that answers, and move to the next when theirs dies, within a second,
//! re-registering only where their entry is unknown.

#[path = "support/replicas.rs"]
mod replicas;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use nix::sys::signal::Signal;
use node::events::Event;
use registry::events::Event as RegistryEvent;
use replicas::Replica;
use serde_json::Value;
use tests::{is, Node, Registry};
use wire::secure::JoinToken;

/// An address nothing listens at.
fn dead_port() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A field of an event, as text.
fn field<'a>(event: &'a Value, name: &str) -> &'a str {
    event[name].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_given_a_dead_registry_first_registers_at_the_next() -> anyhow::Result<()> {
    let dead = dead_port()?;
    let live = Registry::start(&[]).await?;
    let node = Node::start_replicated(&[dead, live.addr], "node-1", None, &[]).await?;

    let registered = node.process.wait_for_event(Event::Registered).await?;
    ensure!(field(&registered, "registry") == live.addr.to_string(), "{registered}");
    let moved = node.process.wait_for_event(Event::RegistryMoved).await?;
    ensure!((field(&moved, "from"), field(&moved, "to")) == (&*dead.to_string(), &*live.addr.to_string()), "{moved}");
    ensure!(field(&moved, "error").contains("failed to connect"), "{moved}");
    ensure!(live.names().await? == ["node-1"]);
    Ok(())
}

/// Two independent registries, which share no membership: when the first is
/// killed, the nodes move to the second at once, are unknown there
/// (`unknown_id`), and register again, greeting nobody a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_whose_registry_is_killed_move_to_the_next_within_a_second_and_register_there() -> anyhow::Result<()> {
    let mut first = Registry::start(&[]).await?;
    let second = Registry::start(&[]).await?;
    let list = [first.addr, second.addr];
    let mut nodes = Vec::new();
    for name in ["node-1", "node-2"] {
        let node = Node::start_replicated(&list, name, None, &[]).await?;
        let registered = node.process.wait_for_event(Event::Registered).await?;
        ensure!(field(&registered, "registry") == first.addr.to_string(), "{registered}");
        node.process.wait_for_event(Event::Watching).await?;
        nodes.push(node);
    }
    nodes[1].process.wait_for_lines(1, |l| is(l, Event::GreetingSent) && l["peer_name"] == "node-1").await?;
    nodes[0].process.wait_for_lines(1, |l| is(l, Event::GreetingReceived) && l["peer_name"] == "node-2").await?;

    first.process.signal(Signal::SIGKILL);
    let killed = Instant::now();
    first.process.wait().await?;
    for node in &nodes {
        let moved = node.process.wait_for_event(Event::RegistryMoved).await?;
        let seen = killed.elapsed();
        let after_ms = moved["after_ms"].as_u64().context("`registry_moved` has after_ms")?;
        ensure!((field(&moved, "from"), field(&moved, "to")) == (&*list[0].to_string(), &*list[1].to_string()));
        ensure!(after_ms < 1000, "{} moved {after_ms} ms after its session failed: {moved}", node.name);
        ensure!(seen < Duration::from_secs(1), "{} moved {seen:?} after the kill", node.name);
        let again = node.process.wait_for_event(Event::Reregistered).await?;
        ensure!(field(&again, "registry") == second.addr.to_string(), "{again}");
        ensure!(again["to_greet"] == 0, "{} would greet a peer it has met: {again}", node.name);
        eprintln!(
            "{}: registry_moved after_ms={after_ms}, seen {seen:?} after the kill, reregistered {:?} after it",
            node.name,
            killed.elapsed()
        );
    }
    let mut names = second.names().await?;
    names.sort();
    ensure!(names == ["node-1", "node-2"], "{names:?}");
    ensure!(nodes[1].process.events(Event::GreetingSent).len() == 1, "node-2 greeted node-1 again");
    ensure!(nodes[0].process.events(Event::GreetingSent).is_empty(), "node-1 greeted node-2");
    for node in &nodes {
        let joined = node.process.events(Event::PeersJoined);
        let quoted = format!("\"{}\"", node.name);
        ensure!(joined.iter().all(|l| !field(l, "peer_names").contains(&quoted)), "{} joined itself", node.name);
    }
    Ok(())
}

/// Two replicas sharing one membership (relays to one registry): when the
/// first dies, the node's next requests on the second are its watch, resumed
/// after its last revision, and its heartbeat, which renews its entry and
/// ties it to the new session there. Nothing is registered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_moving_to_a_replica_that_knows_its_entry_heartbeats_there_and_registers_nothing() -> anyhow::Result<()>
{
    let registry = Registry::start(&[]).await?;
    let (first, second) = (Replica::start(registry.addr).await?, Replica::start(registry.addr).await?);
    let node = Node::start_replicated(&[first.addr, second.addr], "node-1", None, &[]).await?;
    let registered = node.process.wait_for_event(Event::Registered).await?;
    ensure!(field(&registered, "registry") == first.addr.to_string(), "{registered}");
    let watching = node.process.wait_for_event(Event::Watching).await?;

    first.kill();
    let killed = Instant::now();
    let moved = node.process.wait_for_event(Event::RegistryMoved).await?;
    let after_ms = moved["after_ms"].as_u64().context("`registry_moved` has after_ms")?;
    ensure!(field(&moved, "to") == second.addr.to_string() && after_ms < 1000, "{moved}");
    let resumed = node.process.wait_for_nth_event(Event::Watching, 2).await?;
    ensure!(field(&resumed, "registry") == second.addr.to_string(), "{resumed}");
    ensure!(field(&resumed, "start") == "Resumed", "the watch resumes after its revision: {resumed}");
    ensure!(resumed["revision"].as_u64() >= watching["revision"].as_u64(), "{watching} then {resumed}");
    // The watch and the node's session through the second replica each had
    // an answer after the handshake: the watch's start, and the heartbeat's.
    second.answered(2, 2).await?;
    eprintln!(
        "moved after_ms={after_ms}; watch and heartbeat answered on the second {:?} after the kill",
        killed.elapsed()
    );
    ensure!(node.process.events(Event::Reregistered).is_empty(), "it registered again");
    ensure!(registry.process.events(RegistryEvent::Registered).len() == 1);
    ensure!(registry.names().await? == ["node-1"]);

    // Its entry is held by the session through the second replica now (the
    // first's is still open): cutting that one ends it.
    second.cut();
    let lost = registry.process.wait_for_lines(1, |l| is(l, RegistryEvent::SessionLost)).await?;
    ensure!(lost[0]["id"] == registered["id"], "{}", lost[0]);
    Ok(())
}

/// A replica that proves another key than the pinned one is skipped, and
/// sent nothing; the next is held to the same key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_pins_the_key_skips_a_replica_proving_another_and_sends_it_nothing() -> anyhow::Result<()> {
    let token = JoinToken::generate();
    let impostor = Registry::start_with_token(&token, &[]).await?;
    let registry = Registry::start_with_token(&token, &[]).await?;
    let listening = registry.process.wait_for_event(RegistryEvent::Listening).await?;
    let key = field(&listening, "key").to_owned();
    let list = [impostor.addr, registry.addr];
    let node = Node::start_replicated(&list, "node-1", Some(&token), &["--registry-key", &key]).await?;

    let registered = node.process.wait_for_event(Event::Registered).await?;
    ensure!(field(&registered, "registry") == registry.addr.to_string(), "{registered}");
    let moved = node.process.wait_for_event(Event::RegistryMoved).await?;
    ensure!(field(&moved, "error").contains(&format!("not {key}")), "{moved}");
    ensure!(impostor.process.events(RegistryEvent::Registered).is_empty(), "the impostor was sent a registration");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_send_given_a_dead_registry_first_asks_the_next() -> anyhow::Result<()> {
    let registry = Registry::start(&[]).await?;
    let member = Node::start(registry.addr, "node-1", &["--group", "1"]).await?;
    member.process.wait_for_event(Event::Watching).await?;
    let list = format!("{},{}", dead_port()?, registry.addr);
    let sent = tokio::process::Command::new(tests::binary("node"))
        .args(["send", "--registry", &list, "--group", "1", "--json", "hola"])
        .env_remove(wire::secure::TOKEN_ENV)
        .output()
        .await?;
    let said = String::from_utf8_lossy(&sent.stderr);
    ensure!(sent.status.success(), "node send failed: {said}");
    let report: Value = serde_json::from_slice(&sent.stdout)?;
    ensure!(report["coordinator"] == "node-1" && report["delivered"] == 1, "{report}");
    member.process.wait_for_lines(1, |l| is(l, Event::GroupMessageReceived) && l["text"] == "hola").await?;
    Ok(())
}
