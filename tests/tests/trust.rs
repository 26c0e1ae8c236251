//! Trust: a registry started with a join token, and nodes that hold it,
//! against strangers (no token), members that try to be someone else (the
//! token and a key of their own), and replays. Each attack of the issue's
//! table is tried against the real binaries, and the victim's entry and
//! logs are checked unchanged.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{ensure, Context};
use node::events::Event;
use node::exchange::{Deadlines, Pool, Target};
use registry::client::{Client, ClientError};
use registry::events::Event as RegistryEvent;
use registry::protocol::{Contact, ErrorCode, NativeRequest};
use serde_json::{json, Value};
use tests::{is, Node, Registry, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wire::secure::{Admission, Identity, JoinToken, Keys};

const DEADLINES: Deadlines = Deadlines { connect: Duration::from_secs(5), reply: Duration::from_secs(5) };

fn member_keys(token: &JoinToken) -> Keys {
    Keys::new(Identity::generate(), Admission::from_token(Some(JoinToken::parse(&token.reveal()).unwrap())))
}

/// A registry with a token, and alice registered with it.
async fn registry_and_alice(token: &JoinToken, args: &[&str]) -> anyhow::Result<(Registry, Node, Contact)> {
    let registry = Registry::start_with_token(token, args).await?;
    let alice = Node::start_with_token(registry.addr, "alice", token, &[]).await?;
    alice.process.wait_for_event(Event::Registered).await?;
    let entry = lookup(&registry, token, "alice").await?;
    Ok((registry, alice, entry))
}

async fn member(registry: &Registry, keys: &Keys) -> anyhow::Result<Client> {
    Ok(Client::connect_secure(&registry.registry_addr(), keys, PATIENCE).await?)
}

async fn lookup(registry: &Registry, token: &JoinToken, name: &str) -> anyhow::Result<Contact> {
    Ok(member(registry, &member_keys(token)).await?.lookup(name).await?)
}

fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> Option<ErrorCode> {
    result.expect_err("the registry should refuse").code()
}

#[tokio::test]
async fn strangers_without_the_token_change_nothing_and_are_logged() -> anyhow::Result<()> {
    let token = JoinToken::generate();
    let (registry, alice, entry) = registry_and_alice(&token, &[]).await?;

    for request in [
        json!({"op":"list"}),
        json!({"op":"register","ip":entry.ip,"puerto":entry.puerto,"name":"mallory"}),
        json!({"op":"deregister","name":"alice"}),
        json!({"op":"heartbeat","id":entry.id}),
        json!({"ip":"127.0.0.1","puerto":9}),
    ] {
        let reply = tests::plaintext(registry.addr, request.to_string().as_bytes()).await?;
        ensure!(reply["error"]["code"] == "unauthorized", "{request} was answered {reply}");
    }
    // A stranger with a key of its own but a wrong token fails the handshake.
    let wrong = Keys::new(Identity::generate(), Admission::from_token(Some(JoinToken::generate())));
    let refused = async { member(&registry, &wrong).await?.list().await.map_err(anyhow::Error::from) };
    let error = refused.await.expect_err("a wrong token must not list");
    ensure!(format!("{error:#}").contains("unauthorized"), "{error:#}");
    // A node with a wrong token keeps being refused, and says so.
    let wrong_node = Node::start_with_token(registry.addr, "mallory", &JoinToken::generate(), &[]).await?;
    let refused = wrong_node.process.wait_for_event(Event::RegistrationRefused).await?;
    ensure!(refused["error"].as_str().unwrap_or_default().contains("join token"), "{refused}");

    // One line per reason: four plaintext requests, an original registration, a wrong token.
    let logged = registry.process.wait_for_lines(3, |l| is(l, RegistryEvent::Unauthorized)).await?;
    let logged = &logged[..3];
    ensure!(logged.iter().all(|l| l["peer"].as_str().is_some_and(|p| p.starts_with("127.0.0.1:"))), "{logged:?}");
    let reasons: std::collections::HashSet<_> = logged.iter().map(|l| l["reason"].as_str()).collect();
    ensure!(reasons.len() == 3, "{logged:?}");
    let names: Vec<String> =
        member(&registry, &member_keys(&token)).await?.list().await?.into_iter().map(|c| c.name).collect();
    ensure!(names == ["alice"], "only alice is registered: {names:?}");
    ensure!(lookup(&registry, &token, "alice").await? == entry, "alice's entry is unchanged");
    ensure!(registry.process.events(RegistryEvent::Deregistered).is_empty());
    ensure!(alice.process.events(Event::Reregistered).is_empty(), "alice was never forgotten");
    Ok(())
}

#[tokio::test]
async fn a_member_cannot_take_or_end_another_members_entry() -> anyhow::Result<()> {
    let token = JoinToken::generate();
    let (registry, alice, entry) = registry_and_alice(&token, &[]).await?;
    let mut mallory = member(&registry, &member_keys(&token)).await?;
    let register = |name, puerto| NativeRequest::Register {
        ip: Some(entry.ip),
        puerto,
        name,
        group: None,
        incarnation: None,
        ticket_key: None,
    };

    let by_name = mallory.register(&register("alice", entry.puerto.wrapping_add(1).max(1))).await;
    ensure!(code(by_name) == Some(ErrorCode::NameTaken));
    let by_addr = mallory.register(&register("mallory", entry.puerto)).await;
    let error = by_addr.expect_err("alice's address is hers");
    ensure!(error.code() == Some(ErrorCode::AddressTaken), "{error:?}");
    ensure!(wire::Chain(&error).to_string().contains("alice"), "the refusal names the holder: {}", wire::Chain(&error));
    ensure!(code(mallory.heartbeat(&entry.id).await) == Some(ErrorCode::Forbidden));
    ensure!(code(mallory.deregister(&entry.id).await) == Some(ErrorCode::Forbidden));
    let by_name = deregister_alice_by_name_as_another_member(&registry, &token).await?;
    ensure!(by_name == "forbidden", "deregister by name: {by_name}");

    ensure!(lookup(&registry, &token, "alice").await? == entry, "alice's entry is unchanged");
    ensure!(registry.process.events(RegistryEvent::Deregistered).is_empty());
    ensure!(alice.process.events(Event::Reregistered).is_empty());
    Ok(())
}

/// `{"op":"deregister","name":"alice"}` from another member, in a secure session; returns the error code.
async fn deregister_alice_by_name_as_another_member(registry: &Registry, token: &JoinToken) -> anyhow::Result<String> {
    let mut sealed = tests::open_sealed(registry.addr, &member_keys(token)).await?;
    let reply = tests::ask(&mut sealed, &json!({"op":"deregister","name":"alice"})).await?;
    Ok(reply["error"]["code"].as_str().unwrap_or_default().to_owned())
}

/// Runs `node send` with `token` in its environment (or none), returning its output.
async fn node_send(registry: &Registry, group: u32, token: Option<&JoinToken>) -> std::process::Output {
    let registry = registry.addr.to_string();
    let group = group.to_string();
    let mut command = tokio::process::Command::new(tests::binary("node"));
    command.args(["send", "--registry", &registry, "--group", &group, "--json", "hola"]);
    command.env_remove(wire::secure::TOKEN_ENV);
    if let Some(token) = token {
        command.env(wire::secure::TOKEN_ENV, token.reveal().as_str());
    }
    command.output().await.expect("node send runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_coordinator_delivers_and_only_it_coordinates() -> anyhow::Result<()> {
    let token = JoinToken::generate();
    let registry = Registry::start_with_token(&token, &["--groups", "2"]).await?;
    let group_one = ["--group", "1"];
    let mut nodes = Vec::new();
    for name in ["node-1", "node-2", "node-3"] {
        let node = Node::start_with_token(registry.addr, name, &token, &group_one).await?;
        node.process.wait_for_event(Event::Registered).await?;
        nodes.push(node);
    }
    // Mallory holds the token and is a member of group 2.
    let mallory = member_keys(&token);
    let mut session = member(&registry, &mallory).await?;
    let register = NativeRequest::Register {
        ip: None,
        puerto: 9,
        name: "mallory",
        group: Some(2),
        incarnation: None,
        ticket_key: None,
    };
    session.register(&register).await?;
    let view = session.group(1).await?;
    let node_2 = Target { addr: nodes[1].addr, key: view.members[1].key.context("node-2 has a key")? };

    // A delivery straight to node-2, with the registry's real view of group 1: she is not its coordinator.
    let deliver =
        json!({"op":"deliver","group":1,"text":"fake","sender":"cli","coordinator":"node-1","view":view.view});
    let refused = Pool::default().request(node_2, &mallory, &deliver, DEADLINES).await.expect_err("not hers");
    ensure!(wire::Chain(&refused).to_string().contains("does not coordinate"), "{}", wire::Chain(&refused));
    let unsigned = json!({"op":"deliver","group":1,"text":"fake","sender":"cli","coordinator":"node-1"});
    ensure!(Pool::default().request(node_2, &mallory, &unsigned, DEADLINES).await.is_err());
    // A multicast to a member that does not coordinate: refused, naming who does.
    let multicast = json!({"op":"multicast","group":1,"text":"hola","sender":"mallory"});
    let refused = Pool::default().request(node_2, &mallory, &multicast, DEADLINES).await.expect_err("not node-2's");
    let refused = wire::Chain(&refused).to_string();
    ensure!(refused.contains("not_coordinator") && refused.contains("node-1"), "{refused}");
    let rejected = nodes[1].process.wait_for_lines(2, |l| is(l, Event::GroupMessageRejected)).await?;
    ensure!(rejected.iter().all(|l| l["group"] == 1), "{rejected:?}");

    // `node send` without the token is refused; with it, every member gets the message once.
    let stranger = node_send(&registry, 1, None).await;
    ensure!(!stranger.status.success(), "a send without the token was delivered");
    ensure!(String::from_utf8_lossy(&stranger.stderr).contains("unauthorized"), "{stranger:?}");
    let sent = node_send(&registry, 1, Some(&token)).await;
    ensure!(sent.status.success(), "{sent:?}");
    let report: Value = serde_json::from_slice(&sent.stdout)?;
    ensure!(report["delivered"] == 3 && report["coordinator"] == "node-1", "{report}");
    for node in &nodes {
        let received = node.process.events(Event::GroupMessageReceived);
        let texts: Vec<&str> = received.iter().filter_map(|l| l["text"].as_str()).collect();
        ensure!(texts == ["hola"], "{} received {texts:?}", node.name);
    }
    Ok(())
}

/// Stands in front of a node's listener on `listener`, passes one
/// connection through to `target` and records what the client sent on it.
fn recording_door(listener: TcpListener, target: SocketAddr) -> tokio::sync::oneshot::Receiver<Vec<u8>> {
    let (recorded, recording) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await?;
        let server = TcpStream::connect(target).await?;
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        let back = tokio::spawn(async move { tokio::io::copy(&mut server_read, &mut client_write).await });
        let mut sent = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = client_read.read(&mut buf).await {
            sent.extend_from_slice(&buf[..n]);
            server_write.write_all(&buf[..n]).await?;
        }
        let _ = back.await;
        let _ = recorded.send(sent);
        anyhow::Ok(())
    });
    recording
}

#[tokio::test]
async fn a_captured_greeting_replayed_later_is_refused() -> anyhow::Result<()> {
    let token = JoinToken::generate();
    let registry = Registry::start_with_token(&token, &[]).await?;
    // node-1 advertises a door in front of it, which records node-2's greeting.
    let door = TcpListener::bind("127.0.0.1:0").await?;
    let door_port = door.local_addr()?.port().to_string();
    let args = ["--advertise-ip", "127.0.0.1", "--puerto-ext", &door_port];
    let node_1 = Node::start_with_token(registry.addr, "node-1", &token, &args).await?;
    node_1.process.wait_for_event(Event::Registered).await?;
    let recording = recording_door(door, node_1.addr);
    let _node_2 = Node::start_with_token(registry.addr, "node-2", &token, &[]).await?;
    node_1.process.wait_for_event(Event::GreetingReceived).await?;
    let captured = tokio::time::timeout(PATIENCE, recording).await??;
    ensure!(!captured.is_empty(), "nothing was recorded");

    // The same bytes, played again to node-1 itself.
    let mut replay = TcpStream::connect(node_1.addr).await?;
    replay.write_all(&captured).await?;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, replay.read_to_end(&mut answer)).await?;
    let rejected = node_1.process.wait_for_event(Event::GreetingRejected).await?;
    ensure!(rejected["reason"].as_str().unwrap_or_default().contains("a replay"), "{rejected}");
    ensure!(node_1.process.events(Event::GreetingReceived).len() == 1, "the replay was believed");
    Ok(())
}

#[tokio::test]
async fn a_node_restarted_with_its_key_file_takes_its_name_back_at_once() -> anyhow::Result<()> {
    let token = JoinToken::generate();
    let registry = Registry::start_with_token(&token, &["--ttl", "10m"]).await?;
    let dir = std::env::temp_dir().join(format!("hit6-trust-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let key_file = dir.join("alice.key");
    let key_arg = key_file.to_string_lossy().into_owned();
    let outcome = async {
        let first = Node::start_with_token(registry.addr, "alice", &token, &["--key-file", &key_arg]).await?;
        first.process.wait_for_event(Event::Registered).await?;
        let before = lookup(&registry, &token, "alice").await?;
        first.process.signal(nix::sys::signal::Signal::SIGKILL);
        drop(first);
        // Its lease has ten minutes to run: only the same key may take the name
        // now, whether or not the registry has seen its session close yet.
        let again = Node::start_with_token(registry.addr, "alice", &token, &["--key-file", &key_arg]).await?;
        again.process.wait_for_event(Event::Registered).await?;
        let after = lookup(&registry, &token, "alice").await?;
        ensure!(after.key == before.key && after.id != before.id, "{before:?} then {after:?}");
        let stranger = Node::start_with_token(registry.addr, "alice", &token, &[]).await?;
        let refused = stranger.process.wait_for_event(Event::RegistrationRefused).await?;
        ensure!(refused["error"].as_str().unwrap_or_default().contains("name_taken"), "{refused}");
        anyhow::Ok(())
    }
    .await;
    std::fs::remove_dir_all(&dir)?;
    outcome
}

/// Opens `count` connections to `addr` that send nothing, and `count / 10`
/// that send a byte a second; they stay open until the returned set is dropped.
async fn strangers(addr: SocketAddr, count: usize) -> anyhow::Result<tokio::task::JoinSet<()>> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..count + count / 10 {
        let mut stream = TcpStream::connect(addr).await?;
        let _ = stream.set_zero_linger();
        let trickles = i >= count;
        set.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if trickles && stream.write_all(b"{").await.is_err() {
                    break;
                }
            }
            std::future::pending::<()>().await
        });
    }
    Ok(set)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_idle_connections_neither_delay_members_nor_expire_their_leases() -> anyhow::Result<()> {
    let token = JoinToken::generate();
    let registry = Registry::start_with_token(&token, &["--ttl", "2s"]).await?;
    let nodes = futures::future::try_join_all(
        ["node-1", "node-2", "node-3"].map(|name| Node::start_with_token(registry.addr, name, &token, &[])),
    )
    .await?;
    for node in &nodes {
        node.process.wait_for_event(Event::Registered).await?;
    }
    let _at_registry = strangers(registry.addr, 5_000).await?;
    let _at_node = strangers(nodes[0].addr, 1_100).await?;

    // A member's heartbeats on its session, for two leases, each answered at once.
    let mut member = member(&registry, &member_keys(&token)).await?;
    let register = NativeRequest::Register {
        ip: None,
        puerto: 9,
        name: "member",
        group: None,
        incarnation: None,
        ticket_key: None,
    };
    let registry::client::Joined::Leased(registered) = member.register(&register).await? else {
        anyhow::bail!("a registry of ours leases")
    };
    let mut slowest = Duration::ZERO;
    let mut every = tokio::time::interval(Duration::from_millis(100));
    for _ in 0..40 {
        every.tick().await;
        let started = std::time::Instant::now();
        member.heartbeat(&registered.id).await?;
        slowest = slowest.max(started.elapsed());
    }
    eprintln!("slowest heartbeat with 6,610 strangers connected: {slowest:?}");
    ensure!(slowest < Duration::from_millis(250), "a heartbeat took {slowest:?}");
    // A node joining now greets every member: new connections are accepted too.
    let late = Node::start_with_token(registry.addr, "node-4", &token, &[]).await?;
    late.process.wait_for_lines(3, |l| is(l, Event::GreetingSent)).await?;
    for node in &nodes {
        node.process.wait_for_lines(1, |l| is(l, Event::GreetingReceived) && l["peer_name"] == "node-4").await?;
    }
    ensure!(registry.process.events(RegistryEvent::Expired).is_empty(), "a lease expired under the flood");
    Ok(())
}

#[tokio::test]
async fn a_registry_keeps_its_key_in_its_key_file_and_a_node_that_pins_it_refuses_any_other() -> anyhow::Result<()> {
    let token = JoinToken::generate();
    let dir = std::env::temp_dir().join(format!("hit6-pinned-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let key_arg = dir.join("registry.key").to_string_lossy().into_owned();
    let outcome = async {
        let own_key = |registry: &Registry| -> anyhow::Result<(String, String)> {
            let listening = registry.process.events(RegistryEvent::Listening).pop().context("it logged `listening`")?;
            let text = |field: &str| listening[field].as_str().map(str::to_owned).context("`listening` names its key");
            Ok((text("key")?, text("identity")?))
        };
        let first = Registry::start_with_token(&token, &["--key-file", &key_arg]).await?;
        let (key, identity) = own_key(&first)?;
        ensure!(identity == "saved", "a new key file: {identity}");
        drop(first);
        let restarted = Registry::start_with_token(&token, &["--key-file", &key_arg]).await?;
        ensure!(own_key(&restarted)? == (key.clone(), "kept".to_owned()), "the same key after a restart");

        let alice = Node::start_with_token(restarted.addr, "alice", &token, &["--registry-key", &key]).await?;
        alice.process.wait_for_event(Event::Registered).await?;

        // A party that holds the token but not the registry's key poses as the registry.
        let impostor = Registry::start_with_token(&token, &[]).await?;
        ensure!(own_key(&impostor)?.0 != key, "a fresh registry draws a key of its own");
        let bob = Node::start_with_token(impostor.addr, "bob", &token, &["--registry-key", &key]).await?;
        let refused = bob.process.wait_for_event(Event::RegistryUnreachable).await?;
        let error = refused["error"].as_str().unwrap_or_default();
        ensure!(error.contains(&format!("not {key}")), "{refused}");
        ensure!(impostor.process.events(RegistryEvent::Registered).is_empty(), "bob sent the impostor nothing");
        anyhow::Ok(())
    }
    .await;
    std::fs::remove_dir_all(&dir)?;
    outcome
}

#[tokio::test]
async fn a_node_that_pins_the_registrys_key_never_falls_back_to_plaintext() -> anyhow::Result<()> {
    // Answers anything as an original registry would: an empty list of contacts.
    let original = TcpListener::bind("127.0.0.1:0").await?;
    let addr = original.local_addr()?;
    let answering = tokio::spawn(async move {
        while let Ok((mut stream, _)) = original.accept().await {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            let _ = stream.write_all(b"[]").await;
        }
    });
    let pinned = Identity::generate().public().to_string();
    let node = Node::start(addr, "carol", &["--registry-key", &pinned]).await?;
    let refused = node.process.wait_for_event(Event::RegistryUnreachable).await?;
    answering.abort();
    ensure!(node.process.events(Event::Registered).is_empty(), "it registered in plaintext: {refused}");
    let error = refused["error"].as_str().unwrap_or_default();
    ensure!(error.contains("does not speak the secure protocol") || error.contains("closed"), "{refused}");
    Ok(())
}

#[tokio::test]
async fn node_send_that_pins_the_registrys_key_asks_no_impostor() -> anyhow::Result<()> {
    let token = JoinToken::generate();
    let registry = Registry::start_with_token(&token, &[]).await?;
    let impostor = Registry::start_with_token(&token, &[]).await?;
    let listening = registry.process.events(RegistryEvent::Listening).pop().context("it logged `listening`")?;
    let key = listening["key"].as_str().context("`listening` names its key")?;
    let send = |to: &Registry| {
        let mut command = tokio::process::Command::new(tests::binary("node"));
        command.args(["send", "--registry", &to.addr.to_string(), "--group", "1", "--registry-key", key, "hola"]);
        command.env(wire::secure::TOKEN_ENV, token.reveal().as_str());
        command.output()
    };
    let refused = send(&impostor).await?;
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    ensure!(refused.status.code() == Some(1) && said.contains(&format!("not {key}")), "{said}");
    // The real registry proves the key: whatever the send comes to, it is no refusal of the registry.
    let asked = send(&registry).await?;
    let said = String::from_utf8_lossy(&asked.stderr).into_owned();
    ensure!(!said.contains("as expected of it"), "{said}");
    Ok(())
}
