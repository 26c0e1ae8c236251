//! The group lab's Node.js programs against our registry and nodes, byte for
//! byte as they speak (plain TCP, each write one message), written from their
//! description: the group server's and the assigner's dialects at the
//! registry, and `JOIN` members and `SEND`/`CLOSE` clients at our
//! coordinator, next to members of ours.

use node::events::Event;
use registry::events::Event as RegistryEvent;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tests::{Node, Registry, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Writes `message` (unless empty) in one write, then reads until the peer hangs up.
async fn ask(addr: SocketAddr, message: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    if !message.is_empty() {
        stream.write_all(message).await?;
    }
    let mut reply = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut reply)).await??;
    Ok(reply)
}

/// `{"address":…,"port":…}`, as the group server and the assigner answer.
fn coordinator_in(reply: &[u8]) -> anyhow::Result<SocketAddr> {
    let value: Value = serde_json::from_slice(reply)?;
    let keys: Vec<&String> = value.as_object().map(|o| o.keys().collect()).unwrap_or_default();
    anyhow::ensure!(keys == ["address", "port"], "not the lab's shape: {value}");
    Ok(SocketAddr::new(value["address"].as_str().unwrap_or("").parse()?, value["port"].as_u64().unwrap_or(0) as u16))
}

/// One read: a message, as the lab's programs take each write.
async fn read_one(stream: &mut TcpStream) -> anyhow::Result<String> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await??;
    Ok(String::from_utf8(buf[..n].to_vec())?)
}

/// An internal client: asks the assigner for a coordinator, joins it, and
/// answers each message with `ACK` (or not at all, when `acks` is false).
/// Yields the messages it got, once its connection ends or it is aborted.
struct Member {
    task: JoinHandle<anyhow::Result<Vec<String>>>,
    got: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Member {
    async fn join(assigner: SocketAddr, acks: bool) -> anyhow::Result<(Member, SocketAddr)> {
        let coordinator = coordinator_in(&ask(assigner, b"").await?)?;
        let mut stream = TcpStream::connect(coordinator).await?;
        stream.write_all(b"JOIN").await?;
        let (sender, got) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut all = Vec::new();
            loop {
                let message = read_one(&mut stream).await?;
                if message.is_empty() {
                    return Ok(all);
                }
                let _ = sender.send(message.clone());
                all.push(message);
                if acks {
                    stream.write_all(b"ACK").await?;
                }
            }
        });
        Ok((Member { task, got }, coordinator))
    }

    async fn next(&mut self) -> anyhow::Result<String> {
        let got = tokio::time::timeout(PATIENCE, self.got.recv()).await?;
        got.ok_or_else(|| anyhow::anyhow!("the member's connection ended"))
    }
}

/// `SEND<text>` on a kept connection, and the coordinator's answer.
async fn send(client: &mut TcpStream, text: &str) -> anyhow::Result<String> {
    client.write_all(format!("SEND{text}").as_bytes()).await?;
    read_one(client).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_labs_programs_join_our_coordinator_and_get_every_multicast() -> anyhow::Result<()> {
    let registry = Registry::start(&["--groups", "1", "--assigner-listen", "127.0.0.1:0"]).await?;
    let assigning = registry.process.wait_for_event(RegistryEvent::Assigning).await?;
    let assigner: SocketAddr = assigning["addr"].as_str().unwrap_or("").parse()?;
    let ours = Node::start_in_order(registry.addr, 2, &[]).await?;
    let coordinator = &ours[0];

    // The group server's dialect on the registry's port: a bare number.
    let named = coordinator_in(&ask(registry.addr, b"1").await?)?;
    assert_eq!(named, coordinator.addr, "group 1's coordinator is the oldest node");
    assert_eq!(ask(registry.addr, b"7").await?, b"Grupo no valido, grupos disponibles del 1 al 1");
    assert_eq!(ask(registry.addr, b"uno").await?, b"Grupo no valido, grupos disponibles del 1 al 1");

    // Three internal clients, through the assigner, which reads nothing.
    let mut members = Vec::new();
    for _ in 0..3 {
        let (member, named) = Member::join(assigner, true).await?;
        assert_eq!(named, coordinator.addr);
        members.push(member);
    }
    coordinator.process.wait_for_nth_event(Event::OriginalMemberJoined, 3).await?;

    // An external client, on one connection: every member, ours and theirs, gets each message.
    let mut client = TcpStream::connect(named).await?;
    for text in ["hola", "que tal"] {
        assert_eq!(send(&mut client, text).await?, "Mensaje enviado al grupo 1");
        for member in &mut members {
            assert_eq!(member.next().await?, text, "a member gets the bare text");
        }
    }
    let received = ours[1].process.wait_for_nth_event(Event::GroupMessageReceived, 2).await?;
    assert_eq!((received["text"].as_str(), received["sender"].as_str()), (Some("que tal"), Some("external-client")));
    client.write_all(b"CLOSE").await?;
    assert_eq!(read_one(&mut client).await?, "Desconectado del coordinador 1");
    assert_eq!(read_one(&mut client).await?, "", "then the coordinator hangs up");

    // `node send` reports the plaintext members with ours.
    let args = ["send", "--registry", &registry.addr.to_string(), "--group", "1", "--json", "desde node send"];
    let output = tokio::process::Command::new(tests::binary("node")).args(args).output().await?;
    assert!(output.status.success(), "{output:?}");
    let report: Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!((report["members"].as_u64(), report["delivered"].as_u64()), (Some(5), Some(5)), "{report}");
    assert_eq!(report["plaintext"].as_array().map(Vec::len), Some(3), "{report}");
    for member in &mut members {
        assert_eq!(member.next().await?, "desde node send");
    }

    // A member that disconnects leaves the group.
    let gone = members.pop().expect("three members");
    gone.task.abort();
    let left = coordinator.process.wait_for_event(Event::OriginalMemberLeft).await?;
    assert_eq!(left["reason"], "its connection ended", "{left}");
    let mut client = TcpStream::connect(named).await?;
    assert_eq!(send(&mut client, "sin el tercero").await?, "Mensaje enviado al grupo 1");

    // A member that never ACKs: after the ACK deadline (5 s), the error line, and the end of the connection.
    let (_silent, _) = Member::join(assigner, false).await?;
    coordinator.process.wait_for_nth_event(Event::OriginalMemberJoined, 4).await?;
    let started = tokio::time::Instant::now();
    assert_eq!(send(&mut client, "hay alguien").await?, "Error al enviar mensaje al grupo 1");
    assert!(started.elapsed() >= Duration::from_secs(5), "answered before the ACK deadline");
    assert_eq!(read_one(&mut client).await?, "", "then the coordinator hangs up");
    Ok(())
}

/// With a join token, the lab's programs are served only under
/// --allow-original; without it, the assigner is refused at start.
#[tokio::test]
async fn with_a_token_the_assigner_needs_allow_original() -> anyhow::Result<()> {
    let token = wire::secure::JoinToken::generate();
    let refused = tokio::process::Command::new(tests::binary("registry"))
        .args(["--listen", "127.0.0.1:0", "--assigner-listen", "127.0.0.1:0"])
        .env(wire::secure::TOKEN_ENV, token.reveal().as_str())
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(wire::cli::EXIT_SECRET.into()), "{stderr}");
    assert!(stderr.contains("give --allow-original too"), "{stderr}");
    let registry = Registry::start_with_token(&token, &["--groups", "1"]).await?;
    let reply: Value = serde_json::from_slice(&ask(registry.addr, b"1").await?)?;
    assert_eq!(reply["error"]["code"], "unauthorized", "{reply}");
    let allowing = Registry::start_with_token(&token, &["--groups", "1", "--allow-original"]).await?;
    assert_eq!(
        ask(allowing.addr, b"1").await?,
        b"Grupo no valido, grupos disponibles del 1 al 1",
        "no coordinator yet"
    );
    Ok(())
}

/// `launcher up --assigner-port`: the lab's internal client asks the
/// project's assigner port for a coordinator, joins it from this host, and
/// `launcher send` delivers to it beside the project's node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_launcher_opens_the_assigner_port_when_asked() -> anyhow::Result<()> {
    if !tests::docker::available("the launcher's assigner test") {
        return Ok(());
    }
    tests::docker::images_built();
    let project = "hit6-test-assigner";
    let _guard = tests::docker::ProjectGuard(project.into());
    // One node, so that which node coordinates group 1 is known: nodes start in parallel.
    let up = ["up", "--nodes", "1", "--groups", "1", "--detach", "--quiet", "--json", "--timeout", "120s"];
    let ports = ["--registry-port", "18686", "--port-range", "18687-18689", "--assigner-port", "18690"];
    let output = tests::launcher::launcher(project, &[&up[..], &ports[..]].concat());
    assert!(output.status.success(), "{}", tests::docker::text(&output));

    let (mut member, _) = Member::join("127.0.0.1:18690".parse()?, true).await?;
    // The coordinator logs the join before the member could be sent anything.
    let joined = tests::docker::await_events(&format!("{project}-node-1"), Event::OriginalMemberJoined, 1).await;
    assert_eq!(joined.len(), 1, "node-1, group 1's coordinator, logged no original member");
    let send = tests::launcher::launcher(project, &["send", "--group", "1", "--json", "hola"]);
    assert!(send.status.success(), "{}", tests::docker::text(&send));
    let report: Value = serde_json::from_slice(&send.stdout)?;
    assert_eq!((report["members"].as_u64(), report["delivered"].as_u64()), (Some(2), Some(2)), "{report}");
    assert_eq!(report["plaintext"].as_array().map(Vec::len), Some(1), "{report}");
    assert_eq!(member.next().await?, "hola");

    let down = tests::launcher::launcher(project, &["down"]);
    assert!(down.status.success(), "{}", tests::docker::text(&down));
    assert!(tests::docker::leftovers(project).is_empty(), "left behind: {:?}", tests::docker::leftovers(project));
    Ok(())
}
