//! Compatibility with the original HIT6 programs, written from their
//! description: they send one JSON object without a newline, read it with a
//! single `recv(1024)`, answer with a bare array and close.

use node::events::Event;
use registry::events::Event as RegistryEvent;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tests::{is, Node, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Sends `message` as an original program does and reads until the peer hangs up.
async fn exchange_until_closed(addr: SocketAddr, message: &[u8]) -> anyhow::Result<Value> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(message).await?;
    let mut reply = Vec::new();
    tokio::time::timeout(tests::PATIENCE, stream.read_to_end(&mut reply)).await??;
    Ok(serde_json::from_slice(&reply)?)
}

/// An original node: one `recv(1024)`, then either an answer or a hang-up.
/// Yields the greeting it read.
fn original_node(listener: TcpListener, answers: bool) -> JoinHandle<anyhow::Result<Value>> {
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await?;
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await?;
        let greeting: Value = serde_json::from_slice(&buf[..n])?;
        if answers {
            stream.write_all(br#"{"mensaje": "Hola, un gusto!"}"#).await?;
        }
        Ok(greeting)
    })
}

async fn register_original(registry: SocketAddr, port: u16) -> anyhow::Result<Value> {
    let message = format!(r#"{{"ip": "127.0.0.1", "puerto": "{port}"}}"#);
    exchange_until_closed(registry, message.as_bytes()).await
}

#[tokio::test]
async fn original_registration_gets_a_bare_array_then_the_connection_closes() -> anyhow::Result<()> {
    let registry = Registry::start(&[]).await?;
    assert_eq!(register_original(registry.addr, 8089).await?, json!([]));
    let reply = register_original(registry.addr, 8090).await?;
    assert_eq!(reply[0]["ip"], "127.0.0.1");
    assert_eq!(reply[0]["puerto"], 8089, "string ports are stored as numbers");
    assert_eq!(reply.as_array().unwrap().len(), 1, "never its own entry");
    Ok(())
}

#[tokio::test]
async fn the_ip_variant_gets_clientes_and_its_observed_address_is_recorded() -> anyhow::Result<()> {
    let registry = Registry::start(&[]).await?;
    register_original(registry.addr, 8089).await?;
    let reply = exchange_until_closed(registry.addr, br#"{"IP":"10.9.9.9","puerto":8091}"#).await?;
    assert_eq!(reply, json!({"clientes":[{"IP":"127.0.0.1","puerto":8089}]}));
    let entries = registry.client().await?.list().await?;
    assert_eq!(entries[1].addr(), "127.0.0.1:8091".parse()?, "the sender's IP field is not trusted");
    Ok(())
}

#[tokio::test]
async fn original_entries_have_no_lease_unless_a_legacy_ttl_is_set() -> anyhow::Result<()> {
    let registry = Registry::start(&["--ttl", "200ms", "--sweep-interval", "50ms"]).await?;
    register_original(registry.addr, 8089).await?;
    let leased = registry::protocol::NativeRequest::Register {
        ip: None,
        puerto: 8090,
        name: "leased",
        group: None,
        incarnation: None,
        ticket_key: None,
    };
    registry.client().await?.register(&leased).await?;
    registry.process.wait_for_lines(1, |l| is(l, RegistryEvent::Expired) && l["name"] == "leased").await?;
    assert_eq!(registry.names().await?, ["127.0.0.1:8089"], "the original entry outlives a lease");

    let bounded = Registry::start(&["--legacy-ttl", "200ms", "--sweep-interval", "50ms"]).await?;
    register_original(bounded.addr, 8089).await?;
    bounded.process.wait_for_lines(1, |l| is(l, RegistryEvent::Expired) && l["name"] == "127.0.0.1:8089").await?;
    assert!(bounded.names().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_node_greets_original_nodes_that_answer_or_just_hang_up() -> anyhow::Result<()> {
    let registry = Registry::start(&[]).await?;
    let answering = TcpListener::bind("127.0.0.1:0").await?;
    let silent = TcpListener::bind("127.0.0.1:0").await?;
    register_original(registry.addr, answering.local_addr()?.port()).await?;
    register_original(registry.addr, silent.local_addr()?.port()).await?;
    let (answering_port, silent_port) = (answering.local_addr()?.port(), silent.local_addr()?.port());
    let answering = original_node(answering, true);
    let silent = original_node(silent, false);

    let node = Node::start(registry.addr, "ours", &[]).await?;
    let sent = node.process.wait_for_lines(2, |l| is(l, Event::GreetingSent)).await?;
    let mut ports: Vec<String> = sent.iter().map(|e| e["peer_addr"].as_str().unwrap().to_owned()).collect();
    ports.sort();
    let mut expected = vec![format!("127.0.0.1:{answering_port}"), format!("127.0.0.1:{silent_port}")];
    expected.sort();
    assert_eq!(ports, expected);
    assert!(node.process.events(Event::GreetingFailed).is_empty());

    // Each read the whole greeting in its single recv(1024).
    for greeting in [answering.await??, silent.await??] {
        assert_eq!(greeting["mensaje"], "Hola, soy un nodo C");
        assert_eq!(greeting["ip"], "127.0.0.1");
        assert_eq!(greeting["puerto"], node.addr.port());
    }
    Ok(())
}

#[tokio::test]
async fn a_node_of_an_original_registry_greets_its_contacts_and_sends_it_nothing_else() -> anyhow::Result<()> {
    let peer = TcpListener::bind("127.0.0.1:0").await?;
    let peer_port = peer.local_addr()?.port();
    let peer = original_node(peer, true);

    // The original registry: one recv, a bare array with string ports, hang up.
    let original = TcpListener::bind("127.0.0.1:0").await?;
    let registry_addr = original.local_addr()?;
    let node = Node::start(registry_addr, "ours", &["--heartbeat-interval", "50ms"]).await?;
    // The node opens with a secure handshake, which the original cannot
    // parse: it gives up on the connection, and the node, which has no join
    // token, registers again in plaintext.
    let (mut stream, _) = original.accept().await?;
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await?;
    assert!(serde_json::from_slice::<Value>(&buf[..n]).is_err(), "the first attempt is a handshake, not JSON");
    drop(stream);
    let (mut stream, _) = original.accept().await?;
    let n = stream.read(&mut buf).await?;
    let registration: Value = serde_json::from_slice(&buf[..n])?;
    assert_eq!(registration["puerto"], node.addr.port());
    assert_eq!(registration["ip"], "127.0.0.1");
    stream.write_all(format!(r#"[{{"ip": "127.0.0.1", "puerto": "{peer_port}"}}]"#).as_bytes()).await?;
    drop(stream);

    let registered = node.process.wait_for_event(Event::Registered).await?;
    assert_eq!(registered["mode"], "original");
    assert_eq!(registered["contacts"], 1);
    node.process.wait_for_event(Event::GreetingSent).await?;
    assert_eq!(peer.await??["mensaje"], "Hola, soy un nodo C");

    // Ten heartbeat intervals without a single connection: no heartbeats, no other ops.
    let quiet = tokio::time::timeout(Duration::from_millis(500), original.accept()).await;
    assert!(quiet.is_err(), "the node contacted an original registry again");
    Ok(())
}

#[tokio::test]
async fn with_a_token_originals_register_only_under_allow_original_and_are_bounded() -> anyhow::Result<()> {
    let token = wire::secure::JoinToken::generate();
    let strict = Registry::start_with_token(&token, &[]).await?;
    let refused = register_original(strict.addr, 8089).await?;
    assert_eq!(refused["error"]["code"], "unauthorized", "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("--allow-original"), "{refused}");

    let lenient = Registry::start_with_token(&token, &["--allow-original", "--max-original-per-ip", "2"]).await?;
    assert_eq!(register_original(lenient.addr, 8089).await?, json!([]));
    register_original(lenient.addr, 8090).await?;
    let full = register_original(lenient.addr, 8091).await?;
    assert_eq!(full["error"]["code"], "full", "{full}");
    assert!(full["error"]["message"].as_str().unwrap().contains("from this address"), "{full}");
    Ok(())
}

#[tokio::test]
async fn a_node_believes_a_plaintext_greeter_only_where_the_registry_has_an_original() -> anyhow::Result<()> {
    let token = wire::secure::JoinToken::generate();
    let registry = Registry::start_with_token(&token, &["--allow-original"]).await?;
    let node = Node::start_with_token(registry.addr, "ours", &token, &[]).await?;
    node.process.wait_for_event(Event::Registered).await?;
    register_original(registry.addr, 8089).await?;

    let greeting =
        |port: u16| format!(r#"{{"mensaje": "Hola, soy un nodo C", "ip": "127.0.0.1", "puerto": "{port}"}}"#);
    let believed = exchange_until_closed(node.addr, greeting(8089).as_bytes()).await?;
    assert_eq!(believed["mensaje"], "Hola, un gusto!");
    let impostor = exchange_until_closed(node.addr, greeting(8090).as_bytes()).await?;
    assert_eq!(impostor["error"]["code"], "unauthorized", "{impostor}");
    let received = node.process.wait_for_event(Event::GreetingReceived).await?;
    assert_eq!((received["peer_addr"].as_str(), received["verified"].as_bool()), (Some("127.0.0.1:8089"), Some(false)));
    let rejected = node.process.wait_for_event(Event::GreetingRejected).await?;
    assert!(rejected["reason"].as_str().unwrap().contains("127.0.0.1:8090"), "{rejected}");
    Ok(())
}
