//! Compatibility with the original HIT6 programs, written from their
//! description: they send one JSON object without a newline, read it with a
//! single `recv(1024)`, answer with a bare array and close.

use node::events::Event;
use registry::events::Event as RegistryEvent;
use std::net::SocketAddr;

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

/// The two lab dialects of the original registry.
#[derive(Clone, Copy, Debug)]
enum Dialect {
    /// `{"ip","puerto"}`, answered by a bare array.
    Ip,
    /// `{"IP","puerto"}`, answered by `{"clientes":[...]}`.
    Clientes,
}

/// An original HIT6 registry as the lab's Python programs behave: one
/// connection at a time, one `recv(1024)`, `.decode()`, `json.loads`, the
/// dialect's keys read, the earlier entries answered, the connection
/// closed. Anything else (bytes that are not UTF-8, JSON that is not one
/// object with its keys) is an exception that ends the program: the
/// listener closes and every later node is refused. Yields, when dropped
/// or asked, the messages it read and whether it died.
struct OriginalRegistry {
    addr: SocketAddr,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    died: std::sync::Arc<std::sync::atomic::AtomicBool>,
    serving: JoinHandle<()>,
}

impl OriginalRegistry {
    async fn start(dialect: Dialect) -> anyhow::Result<OriginalRegistry> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (seen, died) = (std::sync::Arc::default(), std::sync::Arc::default());
        let serving =
            tokio::spawn(Self::serve(listener, dialect, std::sync::Arc::clone(&seen), std::sync::Arc::clone(&died)));
        Ok(OriginalRegistry { addr, seen, died, serving })
    }

    async fn serve(
        listener: TcpListener,
        dialect: Dialect,
        seen: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
        died: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) {
        let mut entries: Vec<Value> = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            seen.lock().unwrap().push(buf[..n].to_vec());
            let key = match dialect {
                Dialect::Ip => "ip",
                Dialect::Clientes => "IP",
            };
            let parsed = std::str::from_utf8(&buf[..n]).ok().and_then(|text| serde_json::from_str::<Value>(text).ok());
            let Some((ip, puerto)) = parsed.and_then(|v| Some((v.get(key)?.clone(), v.get("puerto")?.clone()))) else {
                // UnicodeDecodeError, JSONDecodeError or KeyError: the program ends.
                died.store(true, std::sync::atomic::Ordering::SeqCst);
                return;
            };
            let reply = match dialect {
                Dialect::Ip => json!(entries),
                Dialect::Clientes => json!({"clientes": entries}),
            };
            let _ = stream.write_all(reply.to_string().as_bytes()).await;
            entries.push(json!({key: ip, "puerto": puerto}));
        }
    }

    /// The messages read so far, one per connection.
    fn seen(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().clone()
    }

    fn died(&self) -> bool {
        self.died.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for OriginalRegistry {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

/// Three of our nodes without a token against an original registry of
/// `dialect`: each registers with one message, read as a registration of
/// that dialect, and sends the registry nothing else; the registry never
/// dies; each node greets the contacts it was given, in plaintext, and is
/// greeted by those registered after it: every pair once.
async fn our_nodes_register_at_an_original_registry_and_greet(dialect: Dialect) -> anyhow::Result<()> {
    let original = OriginalRegistry::start(dialect).await?;
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        let node = Node::start(original.addr, name, &["--heartbeat-interval", "50ms"]).await?;
        let registered = node.process.wait_for_event(Event::Registered).await?;
        anyhow::ensure!(registered["mode"] == "original", "{registered}");
        anyhow::ensure!(registered["contacts"] == nodes.len(), "{registered}");
        nodes.push(node);
    }
    for (i, node) in nodes.iter().enumerate() {
        for (event, count) in [(Event::GreetingSent, i), (Event::GreetingReceived, nodes.len() - 1 - i)] {
            if count > 0 {
                node.process.wait_for_nth_event(event, count).await?;
            }
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        let sent = node.process.events(Event::GreetingSent).len();
        let received = node.process.events(Event::GreetingReceived).len();
        anyhow::ensure!(
            (sent, received) == (i, nodes.len() - 1 - i),
            "node {i} greeted {sent} and was greeted {received} times"
        );
    }
    let seen = original.seen();
    anyhow::ensure!(!original.died(), "the original registry died on {seen:?}");
    anyhow::ensure!(seen.len() == nodes.len(), "one connection per node, not {}: {seen:?}", seen.len());
    for (message, node) in seen.iter().zip(&nodes) {
        let registration: Value = serde_json::from_slice(message)?;
        anyhow::ensure!(registration["puerto"] == node.addr.port(), "{registration}");
        anyhow::ensure!(registration["ip"] == "127.0.0.1" && registration["IP"] == "127.0.0.1", "{registration}");
    }
    Ok(())
}

#[tokio::test]
async fn our_nodes_register_at_an_original_registry_and_greet_in_plaintext() -> anyhow::Result<()> {
    our_nodes_register_at_an_original_registry_and_greet(Dialect::Ip).await
}

#[tokio::test]
async fn our_nodes_register_at_an_original_clientes_registry_and_greet_in_plaintext() -> anyhow::Result<()> {
    our_nodes_register_at_an_original_registry_and_greet(Dialect::Clientes).await
}

/// The stand-in dies on a handshake's first bytes, as the originals do:
/// what our nodes were fixed not to send them.
#[tokio::test]
async fn the_stand_in_dies_on_a_handshake_as_the_originals_do() -> anyhow::Result<()> {
    let original = OriginalRegistry::start(Dialect::Ip).await?;
    let keys = wire::secure::Keys::new(wire::secure::Identity::generate(), wire::secure::Admission::Open);
    let attempt = registry::client::Client::connect_secure(&original.addr.into(), &keys, tests::PATIENCE).await;
    anyhow::ensure!(attempt.is_err(), "an original registry speaks no secure protocol");
    anyhow::ensure!(original.died(), "the stand-in lived through a handshake");
    anyhow::ensure!(TcpStream::connect(original.addr).await.is_err(), "a dead registry refuses every later node");
    Ok(())
}

/// Our registry answers a node's hello without registering anything: the
/// node registers once, in a secure session, and the registry logs one
/// registration, bound to the node's key.
#[tokio::test]
async fn our_registry_answers_a_hello_and_registers_only_the_secure_registration() -> anyhow::Result<()> {
    let registry = Registry::start(&[]).await?;
    let node = Node::start(registry.addr, "ours", &[]).await?;
    let registered = node.process.wait_for_event(Event::Registered).await?;
    anyhow::ensure!(registered["mode"] != "original", "{registered}");
    registry.process.wait_for_event(RegistryEvent::Registered).await?;
    let hello =
        exchange_until_closed(registry.addr, br#"{"ip":"127.0.0.1","IP":"127.0.0.1","puerto":9,"hit6":1}"#).await?;
    anyhow::ensure!(hello == json!({"ok": true, "secure": 1}), "{hello}");
    let registrations = registry.process.events(RegistryEvent::Registered);
    anyhow::ensure!(registrations.len() == 1 && registrations[0]["key"].is_string(), "{registrations:?}");
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
