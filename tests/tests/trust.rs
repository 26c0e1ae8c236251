//! Trust: a registry started with a join token, and nodes that hold it,
//! against strangers (no token), members that try to be someone else (the
//! token and a key of their own), and replays. Each attack of the issue's
//! table is tried against the real binaries, and the victim's entry and
//! logs are checked unchanged.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{ensure, Context};
use node::events::Event;
use node::exchange::{self, Deadlines, Target};
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

/// Sends `bytes` in plaintext and reads one JSON reply.
async fn plaintext(addr: SocketAddr, bytes: &[u8]) -> anyhow::Result<Value> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(bytes).await?;
    let mut reply = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut reply)).await??;
    let line = reply.split(|b| *b == b'\n').next().unwrap_or_default();
    serde_json::from_slice(line).with_context(|| format!("reply {:?}", String::from_utf8_lossy(&reply)))
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
        let reply = plaintext(registry.addr, request.to_string().as_bytes()).await?;
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

    let logged = registry.process.wait_for_lines(7, |l| is(l, RegistryEvent::Unauthorized)).await?;
    ensure!(logged.iter().all(|l| l["peer"].as_str().is_some_and(|p| p.starts_with("127.0.0.1:"))), "{logged:?}");
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
    let register =
        |name, puerto| NativeRequest::Register { ip: Some(entry.ip), puerto, name, group: None, incarnation: None };

    let by_name = mallory.register(&register("alice", entry.puerto.wrapping_add(1).max(1))).await;
    ensure!(code(by_name) == Some(ErrorCode::NameTaken));
    let by_addr = mallory.register(&register("mallory", entry.puerto)).await;
    let error = by_addr.expect_err("alice's address is hers");
    ensure!(error.code() == Some(ErrorCode::AddressTaken), "{error:?}");
    ensure!(wire::Chain(&error).to_string().contains("alice"), "the refusal names the holder: {}", wire::Chain(&error));
    ensure!(code(mallory.heartbeat(&entry.id).await) == Some(ErrorCode::Forbidden));
    ensure!(code(mallory.deregister(&entry.id).await) == Some(ErrorCode::Forbidden));
    let by_name = plaintext_free_deregister_by_name(&registry, &token).await?;
    ensure!(by_name == "forbidden", "deregister by name: {by_name}");

    ensure!(lookup(&registry, &token, "alice").await? == entry, "alice's entry is unchanged");
    ensure!(registry.process.events(RegistryEvent::Deregistered).is_empty());
    ensure!(alice.process.events(Event::Reregistered).is_empty());
    Ok(())
}

/// `{"op":"deregister","name":"alice"}` from another member, in a secure session; returns the error code.
async fn plaintext_free_deregister_by_name(registry: &Registry, token: &JoinToken) -> anyhow::Result<String> {
    let mut sealed = tests::open_sealed(registry.addr, &member_keys(token)).await?;
    let reply = tests::ask(&mut sealed, &json!({"op":"deregister","name":"alice"})).await?;
    Ok(reply["error"]["code"].as_str().unwrap_or_default().to_owned())
}

/// A member that listens as `name` and records the first greeting it gets.
async fn recording_member(
    registry: &Registry,
    keys: &Keys,
    name: &str,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<Value>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let puerto = listener.local_addr()?.port();
    let register = NativeRequest::Register { ip: None, puerto, name, group: None, incarnation: None };
    member(registry, keys).await?.register(&register).await?;
    let (recorded, recording) = tokio::sync::oneshot::channel();
    let keys = keys.clone();
    tokio::spawn(async move {
        let mut sealed = tests::accept_sealed(&listener, &keys).await?;
        let greeting = tests::read(&mut sealed).await?;
        use futures::SinkExt;
        sealed.send(&json!({"mensaje":"Hola, un gusto!"})).await?;
        let _ = recorded.send(greeting);
        anyhow::Ok(())
    });
    Ok(recording)
}

#[tokio::test]
async fn greetings_are_believed_only_from_the_key_the_registry_vouches_for() -> anyhow::Result<()> {
    let token = JoinToken::generate();
    let (registry, alice, alice_entry) = registry_and_alice(&token, &[]).await?;
    let alice_target = Target { addr: alice_entry.addr(), key: alice_entry.key.context("alice has a key")? };
    // Mallory holds the token, registers, and records bob's greeting to her.
    let mallory = member_keys(&token);
    let recording = recording_member(&registry, &mallory, "mallory").await?;
    let bob = Node::start_with_token(registry.addr, "bob", &token, &[]).await?;
    let from_bob = tokio::time::timeout(PATIENCE, recording).await??;
    alice.process.wait_for_event(Event::GreetingReceived).await?;

    // Plaintext, claiming to be bob: refused, this membership has no originals.
    let fake = json!({"mensaje":"Hola, soy un nodo C","ip":"127.0.0.1","puerto":bob.addr.port(),"name":"bob"});
    let reply = plaintext(alice.addr, fake.to_string().as_bytes()).await?;
    ensure!(reply["error"]["code"] == "unauthorized", "{reply}");

    // Bob's own greeting, credential and all, replayed by mallory's key: refused.
    let refused = exchange::secure_exchange(alice_target, &mallory, &from_bob, DEADLINES).await;
    ensure!(refused.is_err(), "a greeting with someone else's credential was accepted");

    // Mallory's own credential, claiming bob's name: logged under her verified name.
    let mut session = member(&registry, &mallory).await?;
    let again = NativeRequest::Register { ip: None, puerto: 9, name: "mallory", group: None, incarnation: None };
    let registry::client::Joined::Leased(registered) = session.register(&again).await? else {
        anyhow::bail!("a registry of ours leases")
    };
    let own = json!({"mensaje":"hola","puerto":bob.addr.port(),"name":"bob","credential":registered.credential});
    exchange::secure_exchange(alice_target, &mallory, &own, DEADLINES).await?;
    let received = alice.process.wait_for_nth_event(Event::GreetingReceived, 2).await?;
    ensure!(received["peer_name"] == "mallory" && received["verified"] == true, "{received}");

    let rejected = alice.process.wait_for_lines(2, |l| is(l, Event::GreetingRejected)).await?;
    let reasons: Vec<&str> = rejected.iter().filter_map(|l| l["reason"].as_str()).collect();
    ensure!(reasons[0].contains("plaintext") && reasons[1].contains("not the key the greeter proved"), "{reasons:?}");
    let received = alice.process.events(Event::GreetingReceived);
    let greeters: Vec<&str> = received.iter().filter_map(|l| l["peer_name"].as_str()).collect();
    ensure!(greeters == ["bob", "mallory"], "{greeters:?}");
    Ok(())
}
