//! A mesh of real node processes: every pair greets exactly once.

use node::events::Event;
use registry::events::Event as RegistryEvent;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;
use tests::{contains, is, Node, Registry};

const N: usize = 20;

fn names_of(events: &[Value], field: &str) -> Vec<String> {
    events.iter().map(|e| e[field].as_str().expect("a string field").to_owned()).collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a < b {
        (a.into(), b.into())
    } else {
        (b.into(), a.into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_nodes_started_at_once_greet_every_pair_exactly_once() -> anyhow::Result<()> {
    let registry = Registry::start(&[]).await?;
    let names: Vec<String> = (1..=N).map(|i| format!("node-{i}")).collect();
    let nodes: Vec<Node> =
        futures::future::try_join_all(names.iter().map(|name| Node::start(registry.addr, name, &[]))).await?;

    // Registration is atomic: the contact counts are a permutation of 0..N.
    let mut contacts = HashMap::new();
    for node in &nodes {
        let registered = node.process.wait_for_event(Event::Registered).await?;
        contacts.insert(node.name.clone(), registered["contacts"].as_u64().unwrap() as usize);
    }
    let mut counts: Vec<usize> = contacts.values().copied().collect();
    counts.sort_unstable();
    assert_eq!(counts, (0..N).collect::<Vec<_>>());

    // A node greets the k nodes before it and is greeted by the N-1-k after it.
    let (mut sent_pairs, mut received_pairs) = (HashSet::new(), HashSet::new());
    for node in &nodes {
        let k = contacts[&node.name];
        let sent = node.process.wait_for_lines(k, |l| is(l, Event::GreetingSent)).await?;
        let received = node.process.wait_for_lines(N - 1 - k, |l| is(l, Event::GreetingReceived)).await?;
        for peer in names_of(&sent, "peer_name") {
            assert!(sent_pairs.insert(pair(&node.name, &peer)), "{} greeted {peer} twice", node.name);
        }
        for peer in names_of(&received, "peer_name") {
            assert!(received_pairs.insert(pair(&node.name, &peer)), "{peer} greeted {} twice", node.name);
        }
    }
    assert_eq!(sent_pairs.len(), N * (N - 1) / 2);
    assert_eq!(received_pairs, sent_pairs, "every greeting sent was received");
    for node in &nodes {
        let k = contacts[&node.name];
        assert_eq!(node.process.events(Event::GreetingSent).len(), k, "{} sent extra greetings", node.name);
        assert_eq!(node.process.events(Event::GreetingReceived).len(), N - 1 - k, "{} got extra greetings", node.name);
        assert!(node.process.events(Event::GreetingFailed).is_empty(), "{} failed a greeting", node.name);
    }
    assert_eq!(registry.names().await?.len(), N);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_deregisters_and_exits_zero_within_a_second() -> anyhow::Result<()> {
    let registry = Registry::start(&[]).await?;
    let mut nodes = Node::start_in_order(registry.addr, 2, &[]).await?;
    assert!(contains(&registry.names().await?, "node-2"));

    let node = &mut nodes[1];
    let stopping = Instant::now();
    node.process.signal(Signal::SIGTERM);
    let code = tokio::time::timeout(Duration::from_secs(1), node.process.wait()).await??;
    assert_eq!(code, Some(0));
    assert!(stopping.elapsed() < Duration::from_secs(1));
    assert_eq!(node.process.events(Event::Deregistered).len(), 1);
    registry.process.wait_for_lines(1, |l| is(l, RegistryEvent::Deregistered) && l["name"] == "node-2").await?;
    assert_eq!(registry.names().await?, ["node-1"]);
    Ok(())
}

/// Sends one greeting on its own connection and returns the answer.
async fn greet(node: std::net::SocketAddr, id: &str) -> anyhow::Result<Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let greeting =
        serde_json::json!({"mensaje":"Hola, soy un nodo C","ip":"127.0.0.1","puerto":9,"name":"retrier","id":id});
    let mut stream = tokio::net::TcpStream::connect(node).await?;
    stream.write_all(greeting.to_string().as_bytes()).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(tests::PATIENCE, stream.read_to_end(&mut answer)).await??;
    Ok(serde_json::from_slice(&answer)?)
}

#[tokio::test]
async fn a_repeated_greeting_is_answered_but_logged_once() -> anyhow::Result<()> {
    let registry = Registry::start(&[]).await?;
    let node = Node::start(registry.addr, "receiver", &[]).await?;
    node.process.wait_for_event(Event::Registered).await?;

    // A greeter whose answer got lost retries with the same registration id.
    for _ in 0..2 {
        assert_eq!(greet(node.addr, "a-1").await?["mensaje"], "Hola, un gusto!");
    }
    // Restarted at the same address, it registered anew: a new greeting.
    greet(node.addr, "a-2").await?;
    // Events are logged in order, so once the second one is in, a logged repeat would be too.
    node.process.wait_for_nth_event(Event::GreetingReceived, 2).await?;
    assert_eq!(node.process.events(Event::GreetingReceived).len(), 2);
    Ok(())
}
