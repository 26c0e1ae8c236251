//! A hostile stranger against the real binaries, mostly in open mode (no
//! join token), where anyone may open a session: what one source can hold,
//! the spellings of an address it may try, and how much of the log a flood
//! of refusals may take. Scaled down from the bench's full-size attacks.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use anyhow::{ensure, Context, Result};
use nix::sys::signal::Signal;
use node::events::Event;
use registry::client::Client;
use registry::events::Event as RegistryEvent;
use registry::protocol::{ErrorCode, NativeRequest};
use serde_json::{json, Value};
use tests::{is, Node, Registry, PATIENCE};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use wire::secure::{Admission, Identity, JoinToken, Keys};

/// Where the stranger's connections come from: another loopback address
/// than the members', as another host's would.
const STRANGER: &str = "127.0.0.2:0";

/// A connection from the stranger's address.
async fn connect_as_stranger(registry: SocketAddr) -> Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(STRANGER.parse()?)?;
    Ok(socket.connect(registry).await?)
}

/// Opens a connection from the stranger's address, sends `request` and
/// reads the first line of the answer; the connection stays open.
async fn from_stranger(registry: SocketAddr, request: &Value) -> Result<(TcpStream, Value)> {
    let mut stream = connect_as_stranger(registry).await?;
    stream.write_all(format!("{request}\n").as_bytes()).await?;
    let mut line = String::new();
    tokio::time::timeout(PATIENCE, BufReader::new(&mut stream).read_line(&mut line)).await??;
    let answer = serde_json::from_str(&line).with_context(|| format!("answer {line:?}"))?;
    Ok((stream, answer))
}

#[tokio::test]
async fn one_address_cannot_take_every_connection_slot() -> Result<()> {
    let registry = Registry::start(&["--max-connections", "40", "--max-connections-per-ip", "20"]).await?;

    let mut held = Vec::new();
    let mut busy = 0;
    for _ in 0..30 {
        let (stream, answer) = from_stranger(registry.addr, &json!({"op":"watch"})).await?;
        if answer["error"]["code"] == "busy" {
            ensure!(answer["error"]["message"].as_str().is_some_and(|m| m.contains("from this address")), "{answer}");
            busy += 1;
        } else {
            held.push(stream);
        }
    }
    ensure!((held.len(), busy) == (20, 10), "{} watches held, {busy} refused", held.len());

    // A member from another address still registers, watches and is listed.
    let node = Node::start(registry.addr, "member", &[]).await?;
    node.process.wait_for_event(Event::Registered).await?;
    ensure!(registry.names().await? == ["member"], "{:?}", registry.names().await?);
    Ok(())
}

#[tokio::test]
async fn a_registry_without_a_token_says_it_is_open_and_one_with_a_token_does_not() -> Result<()> {
    let open = Registry::start(&[]).await?;
    let warned = open.process.events(RegistryEvent::Open);
    ensure!(warned.len() == 1 && warned[0]["level"] == "WARN", "{warned:?}");
    ensure!(warned[0]["message"].as_str().is_some_and(|m| m.contains("--join-token-file")), "{warned:?}");

    let closed = Registry::start_with_token(&JoinToken::generate(), &[]).await?;
    ensure!(closed.process.events(RegistryEvent::Open).is_empty(), "{:?}", closed.process.lines());
    Ok(())
}

#[tokio::test]
async fn an_address_spelt_ipv4_mapped_is_taken_as_its_ipv4_form() -> Result<()> {
    let registry = Registry::start(&[]).await?;
    let node = Node::start(registry.addr, "member", &[]).await?;
    node.process.wait_for_event(Event::Registered).await?;

    let mapped = format!("::ffff:{}", node.addr.ip());
    let register = json!({"op":"register","ip":mapped,"puerto":node.addr.port(),"name":"mallory"});
    let answer = tests::plaintext(registry.addr, register.to_string().as_bytes()).await?;

    ensure!(answer["error"]["code"] == "address_taken", "{answer}");
    ensure!(registry.names().await? == ["member"], "{:?}", registry.names().await?);
    Ok(())
}

#[tokio::test]
async fn a_flood_of_refusals_is_logged_once_per_source_and_reason() -> Result<()> {
    let token = JoinToken::generate();
    let registry = Registry::start_with_token(&token, &[]).await?;
    let wrong = Keys::new(Identity::generate(), Admission::from_token(Some(JoinToken::generate())));

    // Well within one interval (wire::throttle::INTERVAL): a few hundred milliseconds.
    for _ in 0..300 {
        let mut stream = connect_as_stranger(registry.addr).await?;
        let refused = wire::secure::initiate(&mut stream, &wrong, None).await.err().context("a wrong token")?;
        ensure!(wire::Chain(&refused).to_string().contains("unauthorized"), "{}", wire::Chain(&refused));
    }
    let (_, answer) = from_stranger(registry.addr, &json!({"op":"list"})).await?;
    ensure!(answer["error"]["code"] == "unauthorized", "{answer}");

    let logged = registry.process.wait_for_lines(2, |l| is(l, RegistryEvent::Unauthorized)).await?;
    ensure!(logged.len() == 2, "one line per reason: {logged:?}");
    ensure!(logged.iter().all(|l| l["peer"].as_str().is_some_and(|p| p.starts_with("127.0.0.2:"))), "{logged:?}");
    ensure!(logged[0]["reason"].as_str().is_some_and(|r| r.contains("join token")), "{logged:?}");
    Ok(())
}

#[tokio::test]
async fn a_replayed_first_message_is_refused_before_the_key_exchange() -> Result<()> {
    let token = JoinToken::generate();
    let registry = Registry::start_with_token(&token, &[]).await?;
    let member = Keys::new(Identity::generate(), Admission::from_token(Some(JoinToken::parse(&token.reveal())?)));
    let (relay, recorded) = tests::recording_relay(registry.addr).await?;
    let mut session = Client::connect_secure(&relay.into(), &member, PATIENCE).await?;
    session.list().await.context("the member's own session works")?;
    let recorded = recorded.await??;

    // Each copy is answered with a refusal where the registry's handshake
    // message (and its Diffie-Hellman) would have come.
    for _ in 0..100 {
        let mut stream = connect_as_stranger(registry.addr).await?;
        stream.write_all(&recorded).await?;
        let mut line = String::new();
        tokio::time::timeout(PATIENCE, BufReader::new(&mut stream).read_line(&mut line)).await??;
        let answer: Value = serde_json::from_str(&line).with_context(|| format!("answer {line:?}"))?;
        ensure!(answer["error"]["code"] == "unauthorized", "{answer}");
        ensure!(answer["error"]["message"].as_str().is_some_and(|m| m.contains("a replay")), "{answer}");
    }
    let logged = registry.process.wait_for_event(RegistryEvent::Unauthorized).await?;
    ensure!(logged["reason"].as_str().is_some_and(|r| r.contains("a replay")), "{logged}");
    ensure!(registry.process.events(RegistryEvent::Unauthorized).len() == 1, "one line for 100 copies");
    session.list().await.context("the member's session outlives the replays")?;
    Ok(())
}

#[tokio::test]
async fn original_entries_that_never_answer_do_not_hold_up_a_member() -> Result<()> {
    let registry = Registry::start(&[]).await?;
    let accepted = tests::silent_originals(registry.addr, 64, &[[127, 0, 0, 1].into()]).await?;
    let member = Node::start(registry.addr, "member", &[]).await?;
    member.process.wait_for_event(Event::Registered).await?;

    let next = Node::start(registry.addr, "next", &[]).await?;
    next.process.wait_for_lines(64, |l| is(l, Event::GreetingFailed)).await?;
    member.process.wait_for_lines(64, |l| is(l, Event::GreetingFailed)).await?;

    // The member was greeted before the first silent original had cost its deadline.
    let lines = next.process.lines();
    let position = |event: Event, name: Option<&str>| {
        lines.iter().position(|l| is(l, event) && name.is_none_or(|name| l["peer_name"] == name))
    };
    let greeted = position(Event::GreetingSent, Some("member")).context("next greeted the member")?;
    ensure!(greeted < position(Event::GreetingFailed, None).unwrap_or(usize::MAX), "{lines:?}");
    // One attempt each: 64 from the member, 64 from next.
    ensure!(accepted.load(Ordering::SeqCst) == 128, "{} connections", accepted.load(Ordering::SeqCst));
    Ok(())
}

/// A member paused past its lease: a stranger with a key of its own is
/// refused its name and address, and the member, resumed, takes them back.
#[tokio::test]
async fn a_member_paused_past_its_lease_is_not_locked_out_of_its_name() -> Result<()> {
    let registry = Registry::start(&["--ttl", "1s", "--hold", "60s"]).await?;
    let member = Node::start(registry.addr, "member", &[]).await?;
    member.process.wait_for_event(Event::Registered).await?;

    member.process.signal(Signal::SIGSTOP);
    let resume = scopeguard(&member);
    registry.process.wait_for_event(RegistryEvent::Expired).await?;
    let stranger = Keys::new(Identity::generate(), Admission::Open);
    let mut session = Client::connect_secure(&registry.registry_addr(), &stranger, PATIENCE).await?;
    let (ip, puerto) = (member.addr.ip(), member.addr.port());
    for (name, taken) in [("member", ErrorCode::NameTaken), ("mallory", ErrorCode::AddressTaken)] {
        let request =
            NativeRequest::Register { ip: Some(ip), puerto, name, group: None, incarnation: None, ticket_key: None };
        let refused = session.register(&request).await.err().context("the stranger was admitted")?;
        ensure!(refused.code() == Some(taken), "{}", wire::Chain(&refused));
    }

    drop(resume);
    member.process.wait_for_event(Event::Reregistered).await?;
    ensure!(registry.names().await? == ["member"], "{:?}", registry.names().await?);
    Ok(())
}

/// Resumes a stopped node when dropped, also when the test fails.
fn scopeguard(node: &Node) -> impl Drop + '_ {
    struct Resume<'a>(&'a Node);
    impl Drop for Resume<'_> {
        fn drop(&mut self) {
            self.0.process.signal(Signal::SIGCONT);
        }
    }
    Resume(node)
}

/// Connections that each leave a large message unfinished: past the
/// registry's budget for them all, those holding the most are answered
/// `busy` and closed, while a member registers.
#[tokio::test]
async fn unfinished_messages_are_bounded_in_all_not_only_each() -> Result<()> {
    let registry = Registry::start(&["--read-budget", "262144"]).await?;
    let mut pad = br#"{"op":"heartbeat","id":""#.to_vec();
    pad.resize(60_000, b'x');

    let mut streams = Vec::new();
    for _ in 0..40 {
        let (mut stream, answer) = from_stranger(registry.addr, &json!({"op":"heartbeat","id":"none"})).await?;
        ensure!(answer["error"]["code"] == "unknown_id", "{answer}");
        stream.write_all(&pad).await?;
        streams.push(stream);
    }
    let node = Node::start(registry.addr, "member", &[]).await?;
    node.process.wait_for_event(Event::Registered).await?;

    // 256 KiB hold four 60,000-byte messages at most: the others are refused.
    let refusals = streams.into_iter().map(|stream| async move {
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).await.ok()?;
        Some(line)
    });
    let mut refusals: futures::stream::FuturesUnordered<_> = refusals.collect();
    let mut busy = 0;
    while busy < 36 {
        let next = tokio::time::timeout(PATIENCE, futures::StreamExt::next(&mut refusals)).await;
        let line = next.context("fewer refusals than the budget needs")?.context("every connection answered")?;
        let line = line.context("a connection failed without an answer")?;
        ensure!(line.contains("busy") && line.contains("unfinished messages"), "{line}");
        busy += 1;
    }
    Ok(())
}
