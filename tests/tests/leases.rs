//! Leases: dead nodes disappear, and a restarted registry is repopulated by the nodes.

use node::events::{Event, Record};
use registry::events::Event as RegistryEvent;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use registry::watch::{Change, LeftReason};
use tests::{contains, is, Node, Registry};

/// A node killed with SIGKILL: its kernel closes its session with the
/// registry, which drops its entry at once, well before its lease ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_with_sigkill_is_gone_when_its_session_closes() -> anyhow::Result<()> {
    let registry = Registry::start(&[]).await?;
    let nodes = Node::start_in_order(registry.addr, 2, &[]).await?;
    let mut watch = registry.client().await?.watch(None).await?;

    let killed = Instant::now();
    nodes[0].process.signal(Signal::SIGKILL);
    let lost = registry.process.wait_for_lines(1, |l| is(l, RegistryEvent::SessionLost)).await?;
    assert_eq!(lost[0]["name"], "node-1");
    let left = watch.next().await?;
    assert!(
        matches!(&left.change, Change::Left { entry, reason: LeftReason::ConnectionLost } if entry.name == "node-1"),
        "{left:?}"
    );
    // The lease is 15 s; a second is plenty for the kernel and the registry.
    assert!(killed.elapsed() < Duration::from_secs(1), "gone after {:?}", killed.elapsed());
    assert_eq!(registry.names().await?, ["node-2"], "the live node keeps its entry");
    assert!(registry.process.events(RegistryEvent::Expired).is_empty());
    Ok(())
}

/// A node killed with SIGKILL in a mesh of five: every survivor hears of it
/// on its watch, well within a second of the kill, with default settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_survivor_hears_of_a_killed_node_within_a_second() -> anyhow::Result<()> {
    let registry = Registry::start(&[]).await?;
    let nodes = Node::start_in_order(registry.addr, 5, &[]).await?;
    for node in &nodes {
        node.process.wait_for_event(Event::Watching).await?;
    }
    let killed = Instant::now();
    nodes[2].process.signal(Signal::SIGKILL);
    for node in nodes.iter().filter(|n| n.name != "node-3") {
        let left = node.process.wait_for_lines(1, |l| is(l, Event::PeerLeft)).await?;
        assert_eq!(
            (left[0]["peer_name"].as_str(), left[0]["reason"].as_str()),
            (Some("node-3"), Some("connection_lost"))
        );
    }
    let heard = killed.elapsed();
    assert!(heard < Duration::from_secs(1), "the last survivor heard after {heard:?}");
    assert!(!contains(&registry.names().await?, "node-3"));
    // Joins it heard of: later nodes only (the earlier ones were in its
    // registration reply), each once; those before its watch started are in
    // its snapshot, not logged.
    for node in nodes.iter().filter(|n| n.name != "node-3") {
        let lines = node.process.events(Event::PeersJoined);
        let records = lines.iter().map(|line| Record::parse(&line.to_string()).expect("a node event"));
        let joined: Vec<String> = records.flat_map(|record| record.peer_names.unwrap_or_default()).collect();
        let later = |peer: &String| peer.as_str() > node.name.as_str();
        assert!(joined.iter().all(later), "{} heard of {joined:?}", node.name);
        assert!(joined.iter().collect::<BTreeSet<_>>().len() == joined.len(), "{joined:?}");
    }
    Ok(())
}

/// A node that stops (SIGSTOP) keeps its session open but silent: the
/// registry keeps its entry until the lease ends, listing it as silent
/// once half of it has passed, then it expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_is_listed_until_its_lease_ends() -> anyhow::Result<()> {
    let registry = Registry::start(&["--ttl", "1s", "--sweep-interval", "100ms"]).await?;
    let nodes = Node::start_in_order(registry.addr, 2, &[]).await?;
    nodes[0].process.signal(Signal::SIGSTOP);
    assert_eq!(registry.names().await?, ["node-1", "node-2"], "stopped, not gone");
    // Nothing announces silence, so the list is asked until it shows some.
    let suspect = async {
        loop {
            let listed = registry.client().await?.listed().await?;
            let silent = listed.contactos.iter().filter(|c| listed.silent.contains(&c.id));
            let silent: Vec<String> = silent.map(|c| c.name.clone()).collect();
            if !silent.is_empty() {
                return anyhow::Ok((silent, listed.contactos.len()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (silent, listed) = tokio::time::timeout(tests::PATIENCE, suspect).await??;
    assert_eq!((silent, listed), (vec!["node-1".to_owned()], 2), "silent, still listed, and only it");
    registry.process.wait_for_lines(1, |l| is(l, RegistryEvent::Expired) && l["name"] == "node-1").await?;
    assert_eq!(registry.names().await?, ["node-2"]);
    assert!(registry.process.events(RegistryEvent::SessionLost).is_empty(), "its session is still open");
    nodes[0].process.signal(Signal::SIGCONT);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_registry_is_repopulated_within_two_heartbeats() -> anyhow::Result<()> {
    // A 1.5 s lease makes the nodes heartbeat every 500 ms.
    let heartbeat = Duration::from_millis(500);
    let args = ["--ttl", "1500ms"];
    let mut registry = Registry::start(&args).await?;
    let nodes = Node::start_in_order(registry.addr, 5, &[]).await?;

    registry.process.signal(Signal::SIGKILL);
    registry.process.wait().await?;
    registry = Registry::start_on(registry.addr, &args).await?;
    let restarted = Instant::now();

    for node in &nodes {
        let again = node.process.wait_for_event(Event::Reregistered).await?;
        assert_eq!(again["to_greet"], 0, "{} would greet peers it already knows", node.name);
    }
    assert!(restarted.elapsed() < 2 * heartbeat, "repopulated after {:?}", restarted.elapsed());
    let names = registry.names().await?;
    for node in &nodes {
        assert!(contains(&names, &node.name), "{} is missing from {names:?}", node.name);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_before_the_registry_registers_once_it_is_up() -> anyhow::Result<()> {
    // Reserve a free port for the registry, then release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let node = Node::start(port, "early", &[]).await?;
    let unreachable = node.process.wait_for_event(Event::RegistryUnreachable).await?;
    assert_eq!(unreachable["attempt"], 1);

    let registry = Registry::start_on(port, &[]).await?;
    node.process.wait_for_event(Event::Registered).await?;
    assert_eq!(registry.names().await?, ["early"]);
    Ok(())
}

/// A node that stops (SIGSTOP: paused, partitioned or starved, but not dead)
/// while a newer node is greeting it, and resumes after its lease ran out,
/// takes its place back: the newer node's greeting lands, and the paused node,
/// registering again, is not told to greet the newer node as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_paused_past_its_lease_takes_its_place_back_and_nobody_greets_twice() -> anyhow::Result<()> {
    // Long enough for node-2 to register while node-1's lease still runs.
    let registry = Registry::start(&["--ttl", "3s", "--sweep-interval", "100ms"]).await?;
    let paused = Node::start(registry.addr, "node-1", &[]).await?;
    let first = paused.process.wait_for_event(Event::Registered).await?;
    paused.process.signal(Signal::SIGSTOP);
    let newer = Node::start(registry.addr, "node-2", &[]).await?;
    let registered = newer.process.wait_for_event(Event::Registered).await?;
    assert_eq!(registered["contacts"], 1, "node-2 came while node-1's lease ran: {registered}");

    registry.process.wait_for_lines(1, |l| is(l, RegistryEvent::Expired) && l["name"] == "node-1").await?;
    paused.process.signal(Signal::SIGCONT);
    let again = paused.process.wait_for_event(Event::Reregistered).await?;
    assert_eq!(again["id"], first["id"], "node-1 is back at its place: {again}");
    assert_eq!(again["contacts"], 0, "node-2 knows node-1 already, and greets it: {again}");
    let received = paused.process.wait_for_event(Event::GreetingReceived).await?;
    assert_eq!(received["peer_name"], "node-2");
    newer.process.wait_for_lines(1, |l| is(l, Event::GreetingSent) && l["peer_name"] == "node-1").await?;
    assert_eq!(registry.names().await?, ["node-1", "node-2"]);
    Ok(())
}
