//! A mesh of real node processes: every pair greets exactly once.

use node::events::Event;
use registry::events::Event as RegistryEvent;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;
use tests::{contains, is, Node, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use wire::secure::JoinToken;

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
    twenty_nodes_at_once(None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_nodes_with_a_join_token_greet_every_pair_exactly_once() -> anyhow::Result<()> {
    twenty_nodes_at_once(Some(&JoinToken::generate())).await
}

/// N nodes started at once greet every pair exactly once, and every greeting
/// received is from a greeter that proved the key the registry vouched for.
async fn twenty_nodes_at_once(token: Option<&JoinToken>) -> anyhow::Result<()> {
    let registry = match token {
        Some(token) => Registry::start_with_token(token, &[]).await?,
        None => Registry::start(&[]).await?,
    };
    let names: Vec<String> = (1..=N).map(|i| format!("node-{i}")).collect();
    let start = |name: &String| {
        let name = name.clone();
        let addr = registry.addr;
        async move {
            match token {
                Some(token) => Node::start_with_token(addr, &name, token, &[]).await,
                None => Node::start(addr, &name, &[]).await,
            }
        }
    };
    let nodes: Vec<Node> = futures::future::try_join_all(names.iter().map(start)).await?;

    // Registration is atomic, and every pair greets once.
    tests::every_pair_greeted_once(&nodes).await?;
    if token.is_none() {
        assert_eq!(registry.names().await?.len(), N);
    }
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
    // Its last lines may still be on their way through the pipe.
    node.process.wait_for_event(Event::Deregistered).await?;
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
    // The greeter is an original node at 127.0.0.1:9, which the receiver
    // believes once the registry has it.
    registry
        .client()
        .await?
        .register(&registry::protocol::NativeRequest::Register {
            ip: Some("127.0.0.1".parse()?),
            puerto: 9,
            name: "retrier",
            group: None,
            incarnation: None,
            ticket_key: None,
        })
        .await?;

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

/// Stands between one node and the registry: passes requests on at once,
/// passes a hello and its answer, loses the first reply of the first secure
/// session (the first frame after the handshake's), and holds
/// every later reply until `release` is sent. `lost` says when the first
/// reply has been lost.
async fn lossy_registry(
    registry: SocketAddr,
) -> anyhow::Result<(SocketAddr, watch::Sender<bool>, watch::Receiver<bool>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (release, released) = watch::channel(false);
    let (lost_tx, lost) = watch::channel(false);
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(registry).await else { return };
            // A node's hello (plaintext) goes through as it is: the first secure session is the one that loses.
            let mut byte = [0u8; 1];
            let secure = matches!(client.peek(&mut byte).await, Ok(1) if wire::secure::is_secure(byte[0]));
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move { tokio::io::copy(&mut client_read, &mut server_write).await });
            if !secure {
                tokio::spawn(async move { tokio::io::copy(&mut server_read, &mut client_write).await });
                continue;
            }
            let (mut released, lose, lost_tx) = (released.clone(), std::mem::take(&mut first), lost_tx.clone());
            tokio::spawn(async move {
                if lose {
                    // The registry's handshake message goes through: a length and that many bytes.
                    let mut len = [0u8; 2];
                    let _ = server_read.read_exact(&mut len).await;
                    let mut hello = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    let _ = server_read.read_exact(&mut hello).await;
                    let _ = client_write.write_all(&len).await;
                    let _ = client_write.write_all(&hello).await;
                    let mut reply = vec![0u8; 64 * 1024];
                    let _ = server_read.read(&mut reply).await;
                    lost_tx.send_replace(true);
                    let _ = released.wait_for(|r| *r).await;
                    return;
                }
                let _ = released.wait_for(|r| *r).await;
                let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            });
        }
    });
    Ok((addr, release, lost))
}

/// Stands in front of a node's listener: holds every connection, passing
/// nothing, until `open` is sent, then joins it to the address in `target`.
async fn door(target: Arc<OnceLock<SocketAddr>>) -> anyhow::Result<(SocketAddr, watch::Sender<bool>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (open, opened) = watch::channel(false);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (mut opened, target) = (opened.clone(), target.clone());
            tokio::spawn(async move {
                let _ = opened.wait_for(|o| *o).await;
                let Some(target) = target.get() else { return };
                if let Ok(mut server) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    Ok((addr, open))
}

/// Waits until `node` has logged the outcome of every greeting its
/// registration gave it, and returns how many that was.
async fn settled(node: &Node) -> anyhow::Result<usize> {
    let registered = node.process.wait_for_event(Event::Registered).await?;
    let to_greet = registered["to_greet"].as_u64().unwrap_or(0) as usize;
    node.process.wait_for_lines(to_greet, |l| is(l, Event::GreetingSent) || is(l, Event::GreetingFailed)).await?;
    Ok(to_greet)
}

/// A node's first registration reply is lost. It registers again while two
/// later nodes, which got it as a contact, are greeting it (their greetings
/// held at a door until then): the repeat must be answered as the first
/// admission, or the node would greet those two as well and two pairs would
/// meet twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_registration_reply_greets_no_pair_twice() -> anyhow::Result<()> {
    let registry = Registry::start(&[]).await?;
    let mut nodes = Node::start_in_order(registry.addr, 2, &[]).await?;

    let (relay, release, mut lost) = lossy_registry(registry.addr).await?;
    let listener = Arc::new(OnceLock::new());
    let (door, open) = door(listener.clone()).await?;
    let door_port = door.port().to_string();
    let args =
        ["--advertise-ip", "127.0.0.1", "--puerto-ext", &door_port, "--connect-timeout", "1s", "--reply-timeout", "1s"];
    let unlucky = Node::start(relay, "node-3", &args).await?;
    listener.set(unlucky.addr).expect("set once");
    tokio::time::timeout(tests::PATIENCE, lost.wait_for(|l| *l)).await??;

    // Admitted, but not told: the next two nodes get it as a contact.
    for name in ["node-4", "node-5"] {
        let node = Node::start(registry.addr, name, &[]).await?;
        let registered = node.process.wait_for_event(Event::Registered).await?;
        assert!(registered["contacts"].as_u64() >= Some(3), "{name} was not told of node-3: {registered}");
        nodes.push(node);
    }
    release.send_replace(true);
    assert_eq!(settled(&unlucky).await?, 2, "node-3 greets only the nodes admitted before it");
    assert!(!unlucky.process.events(Event::RegistryUnreachable).is_empty(), "the first reply was lost");
    open.send_replace(true);
    nodes.insert(2, unlucky);

    // Every node heard from every later one, and no pair met twice.
    let mut met: HashMap<(String, String), usize> = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        settled(node).await?;
        let later = nodes.len() - 1 - i;
        let received = node.process.wait_for_lines(later, |l| is(l, Event::GreetingReceived)).await?;
        assert_eq!(received.len(), later, "{} was greeted by {:?}", node.name, names_of(&received, "peer_name"));
        for peer in names_of(&received, "peer_name") {
            *met.entry(pair(&node.name, &peer)).or_default() += 1;
        }
    }
    let twice: Vec<_> = met.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "pairs that met more than once: {twice:?}");
    assert_eq!(met.len(), 5 * 4 / 2, "{met:?}");
    Ok(())
}
