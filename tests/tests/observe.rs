//! What operators see, from the real binaries' HTTP listeners: every
//! metric moves as its event happens, and the text is exposition format
//! (parsed strictly); `/health` follows a node's registration and its
//! registry; hostile HTTP clients reach neither the members' port nor
//! another HTTP client.

use std::net::SocketAddr;
use std::process::Output;
use std::time::Instant;

use nix::sys::signal::Signal;
use node::events::Event;
use registry::events::Event as RegistryEvent;
use tests::{http_addr, scrape, Node, Registry, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wire::secure::{Identity, JoinToken, Keys, TOKEN_ENV};

const HTTP: [&str; 2] = ["--http-listen", "127.0.0.1:0"];

async fn raw_answer(addr: SocketAddr, request: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer)).await??;
    Ok(answer)
}

/// Runs `node send` to `group` at `registry`, holding `token`.
async fn send(registry: SocketAddr, group: u32, token: &JoinToken) -> Output {
    let (registry, group) = (registry.to_string(), group.to_string());
    tokio::process::Command::new(tests::binary("node"))
        .args(["send", "--registry", &registry, "--group", &group, "hola"])
        .env(TOKEN_ENV, token.reveal().as_str())
        .output()
        .await
        .expect("node send runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_moves_as_its_event_happens() -> anyhow::Result<()> {
    let token = JoinToken::generate();
    let registry = Registry::start_with_token(&token, &[&HTTP[..], &["--groups", "1"]].concat()).await?;
    let at_registry = http_addr(&registry.process, RegistryEvent::ServingHttp).await?;
    let metrics = scrape(at_registry).await?;
    let live = [("state", "live"), ("dialect", "native")];
    assert_eq!(metrics.value("hit6_registry_members", &live), 0.0);
    assert_eq!(metrics.value("hit6_registry_registrations_total", &[]), 0.0);
    assert_eq!(metrics.value("hit6_registry_groups", &[]), 1.0);

    // Two nodes: b greets a, and each sees the other in its view.
    let a = Node::start_with_token(registry.addr, "a", &token, &HTTP).await?;
    a.process.wait_for_event(Event::Watching).await?;
    let b = Node::start_with_token(registry.addr, "b", &token, &HTTP).await?;
    b.process.wait_for_event(Event::GreetingSent).await?;
    b.process.wait_for_event(Event::Watching).await?;
    a.process.wait_for_event(Event::GreetingReceived).await?;
    a.process.wait_for_event(Event::PeersJoined).await?;
    let (at_a, at_b) =
        (http_addr(&a.process, Event::ServingHttp).await?, http_addr(&b.process, Event::ServingHttp).await?);

    let metrics = scrape(at_registry).await?;
    assert_eq!(metrics.value("hit6_registry_registrations_total", &[("dialect", "native")]), 2.0);
    assert_eq!(metrics.value("hit6_registry_members", &live), 2.0);
    let registered = [("operation", "register"), ("outcome", "ok")];
    assert_eq!(metrics.value("hit6_registry_requests_total", &registered), 2.0);
    assert_eq!(metrics.value("hit6_registry_request_duration_seconds_count", &[("operation", "register")]), 2.0);
    assert_eq!(metrics.value("hit6_registry_watchers", &[]), 2.0);
    assert!(metrics.value("hit6_registry_sessions", &[]) >= 4.0, "{metrics:?}");
    assert_eq!(metrics.value("hit6_registry_coordinators", &[]), 1.0);
    assert!(metrics.value("hit6_registry_watch_changes_sent_total", &[]) >= 1.0, "a was told b joined");

    let metrics = scrape(at_b).await?;
    assert_eq!(metrics.value("hit6_node_greetings_sent_total", &[("outcome", "welcome")]), 1.0);
    assert_eq!(metrics.value("hit6_node_greeting_duration_seconds_count", &[]), 1.0);
    assert_eq!(metrics.value("hit6_node_peers", &[]), 1.0);
    assert_eq!(metrics.value("hit6_node_up", &[]), 1.0);
    let metrics = scrape(at_a).await?;
    assert_eq!(metrics.value("hit6_node_greetings_received_total", &[("kind", "ticket")]), 1.0);
    assert_eq!(metrics.value("hit6_node_peers", &[]), 1.0);

    // Refusals: a stranger's greeting at a, a wrong token and plaintext at the registry.
    let greeting = br#"{"mensaje":"Hola, soy un nodo C","ip":"127.0.0.1","puerto":9}"#;
    raw_answer(a.addr, &[&greeting[..], b"\n"].concat()).await?;
    let stranger = Keys::new(Identity::generate(), wire::secure::Admission::from_token(Some(JoinToken::generate())));
    assert!(tests::open_sealed(registry.addr, &stranger).await.is_err(), "a wrong token is refused");
    raw_answer(registry.addr, b"{\"op\":\"list\"}\n").await?;
    let metrics = scrape(at_a).await?;
    assert_eq!(metrics.value("hit6_node_greetings_rejected_total", &[("reason", "unverified")]), 1.0, "{metrics:?}");
    let metrics = scrape(at_registry).await?;
    assert_eq!(metrics.value("hit6_registry_refused_connections_total", &[("reason", "rejected")]), 1.0);
    assert_eq!(metrics.value("hit6_registry_refused_connections_total", &[("reason", "plaintext")]), 1.0);
    let refused_list = [("operation", "list"), ("outcome", "unauthorized")];
    assert_eq!(metrics.value("hit6_registry_requests_total", &refused_list), 1.0);

    // A multicast through a, the oldest of group 1: both members acknowledge.
    let sent = send(registry.addr, 1, &token).await;
    assert!(sent.status.success(), "{sent:?}");
    let metrics = scrape(at_a).await?;
    assert_eq!(metrics.value("hit6_node_multicasts_total", &[("outcome", "complete")]), 1.0);
    assert_eq!(metrics.value("hit6_node_deliveries_acknowledged_total", &[]), 2.0);
    assert_eq!(metrics.value("hit6_node_ack_duration_seconds_count", &[]), 2.0);

    // b dies: its kept session is lost, and a's view loses it.
    b.process.signal(Signal::SIGKILL);
    registry.process.wait_for_event(RegistryEvent::SessionLost).await?;
    a.process.wait_for_event(Event::PeerLeft).await?;
    let metrics = scrape(at_registry).await?;
    assert_eq!(metrics.value("hit6_registry_departures_total", &[("reason", "session_lost")]), 1.0);
    assert_eq!(metrics.value("hit6_registry_members", &live), 1.0);
    assert_eq!(scrape(at_a).await?.value("hit6_node_peers", &[]), 0.0);

    // No metric carries a secret or names a member.
    for at in [at_registry, at_a] {
        let (_, text) = wire::http::get(at, "/metrics", PATIENCE).await?;
        let text = String::from_utf8(text.to_vec())?;
        for secret in [token.reveal().to_string(), "\"a\"".into(), "\"b\"".into(), a.addr.to_string()] {
            assert!(!text.contains(&secret), "/metrics at {at} shows {secret}");
        }
    }
    Ok(())
}

/// `node health` or `registry health` against `addr`: its exit code and what it printed.
async fn health(binary: &str, addr: SocketAddr) -> (i32, String) {
    let output = tokio::process::Command::new(tests::binary(binary))
        .args(["health", "--http-listen", &addr.to_string()])
        .output()
        .await
        .expect("the health check runs");
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), printed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_bad_before_registration_good_after_and_bad_once_the_registry_is_gone() -> anyhow::Result<()> {
    // A port with no registry yet.
    let free = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let node = Node::start(free, "h", &HTTP).await?;
    let at_node = http_addr(&node.process, Event::ServingHttp).await?;
    let (code, printed) = health("node", at_node).await;
    assert_eq!((code, printed.trim()), (1, "unhealthy: not registered"));
    let metrics = scrape(at_node).await?;
    assert_eq!(metrics.value("hit6_node_up", &[]), 0.0);

    let registry = Registry::start_on(free, &HTTP).await?;
    let at_registry = http_addr(&registry.process, RegistryEvent::ServingHttp).await?;
    node.process.wait_for_event(Event::Registered).await?;
    assert_eq!(health("node", at_node).await, (0, "healthy\n".into()));
    assert_eq!(health("registry", at_registry).await, (0, "healthy\n".into()));

    registry.process.signal(Signal::SIGKILL);
    let deadline = Instant::now() + PATIENCE;
    let gone = loop {
        let checked = health("node", at_node).await;
        if checked.0 != 0 || Instant::now() > deadline {
            break checked;
        }
    };
    assert_eq!(gone, (1, "unhealthy: its session with the registry is down\n".into()));
    let (code, printed) = health("registry", at_registry).await;
    assert!(code == 1 && printed.contains("cannot connect"), "{printed}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_http_clients_reach_neither_members_nor_other_http_clients() -> anyhow::Result<()> {
    let registry = Registry::start(&HTTP).await?;
    let at = http_addr(&registry.process, RegistryEvent::ServingHttp).await?;

    // A thousand idle connections: past its bound the listener closes them at once.
    let flood = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(TcpStream::connect(at).await?);
    }
    // Meanwhile the members' port serves: a node registers and is listed.
    let node = Node::start(registry.addr, "member", &[]).await?;
    node.process.wait_for_event(Event::Registered).await?;
    assert_eq!(registry.names().await?, ["member"]);

    // Every idle connection is closed by the listener: those past its bound
    // at once, the others at their head's deadline.
    let closings = idle.into_iter().map(|mut stream| async move {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut byte)).await;
        (matches!(read, Ok(Ok(0)) | Ok(Err(_))), Instant::now())
    });
    let closed = futures::future::join_all(closings).await;
    assert!(closed.iter().all(|(closed, _)| *closed), "an idle connection was never closed");
    let at_once = closed.iter().filter(|(_, when)| when.duration_since(flood) < wire::http::HEAD_TIMEOUT).count();
    assert!(at_once >= 1000 - wire::http::MAX_CONNECTIONS, "only {at_once} closed before the head's deadline");

    // A slow client holds one slot, not the listener.
    let mut slow = TcpStream::connect(at).await?;
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost:").await?;
    let (status, _) = wire::http::get(at, "/health", PATIENCE).await?;
    assert_eq!(status, 200);

    // A huge header is refused; a path that does not exist is not found.
    let huge = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Huge: {}\r\n\r\n", "a".repeat(1 << 20));
    let answer = String::from_utf8_lossy(&raw_answer(at, huge.as_bytes()).await.unwrap_or_default()).into_owned();
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(wire::http::get(at, "/etc/passwd", PATIENCE).await?.0, 404);
    let post = raw_answer(at, b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").await?;
    assert!(post.starts_with(b"HTTP/1.1 405"), "{}", String::from_utf8_lossy(&post));

    // And the members are still served, over HTTP too.
    let metrics = scrape(at).await?;
    assert_eq!(metrics.value("hit6_registry_members", &[("state", "live")]), 1.0);
    let mut client = registry.client().await?;
    assert_eq!(client.list().await?.len(), 1);
    drop(slow);
    Ok(())
}
