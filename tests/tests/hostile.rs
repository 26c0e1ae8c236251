//! A hostile stranger against the real binaries in open mode (no join
//! token), where anyone may open a session: what one source can hold, and
//! the spellings of an address it may try. Scaled down from the bench's
//! full-size attacks.

use std::net::SocketAddr;

use anyhow::{ensure, Context, Result};
use node::events::Event;
use serde_json::{json, Value};
use tests::{Node, Registry, PATIENCE};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

/// Where the stranger's connections come from: another loopback address
/// than the members', as another host's would.
const STRANGER: &str = "127.0.0.2:0";

/// Opens a connection from the stranger's address, sends `request` and
/// reads the first line of the answer; the connection stays open.
async fn from_stranger(registry: SocketAddr, request: &Value) -> Result<(TcpStream, Value)> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(STRANGER.parse()?)?;
    let mut stream = socket.connect(registry).await?;
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
