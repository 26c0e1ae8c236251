//! Group communication through real processes: a registry that assigns
//! groups, nodes that coordinate and acknowledge, and `node send`.

use node::events::Event;
use registry::events::Event as RegistryEvent;
use std::process::Output;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use tests::{is, Node, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Nine nodes registered one after another: the registry deals them out
/// round-robin, so group g holds node-g, node-(g+3) and node-(g+6), and the
/// oldest, node-g, coordinates.
async fn nine_in_three_groups(registry_args: &[&str]) -> anyhow::Result<(Registry, Vec<Node>)> {
    let registry = Registry::start(&[&["--groups", "3"], registry_args].concat()).await?;
    let nodes = Node::start_in_order(registry.addr, 9, &["--ack-timeout", "1s"]).await?;
    for (i, node) in nodes.iter().enumerate() {
        let registered = node.process.wait_for_event(Event::Registered).await?;
        assert_eq!(registered["group"], (i % 3 + 1) as u64, "{} is in the wrong group", node.name);
    }
    Ok((registry, nodes))
}

/// Runs `node send` and returns its output.
async fn send(registry: &Registry, group: u32, text: &str) -> Output {
    let registry = registry.addr.to_string();
    let group = group.to_string();
    let args = ["send", "--registry", &registry, "--group", &group, "--json", text];
    tokio::process::Command::new(tests::binary("node")).args(args).output().await.expect("node send runs")
}

fn report(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!("no report: {}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
    })
}

fn names(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|v| v.as_str().or(v["name"].as_str()).unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_group_two_reaches_exactly_its_three_members() -> anyhow::Result<()> {
    let (registry, nodes) = nine_in_three_groups(&[]).await?;
    let output = send(&registry, 2, "hola").await;
    assert!(output.status.success(), "{output:?}");
    let report = report(&output);
    assert_eq!((report["members"].as_u64(), report["delivered"].as_u64()), (Some(3), Some(3)));
    assert_eq!(report["coordinator"], "node-2");
    assert_eq!(names(&report["acked"]), ["node-2", "node-5", "node-8"]);

    // Every ACK came after the member logged the message, so the logs are complete now.
    for node in &nodes {
        let received = node.process.events(Event::GroupMessageReceived);
        if ["node-2", "node-5", "node-8"].contains(&node.name.as_str()) {
            assert_eq!(received.len(), 1, "{} did not get it exactly once", node.name);
            assert_eq!((received[0]["group"].as_u64(), received[0]["text"].as_str()), (Some(2), Some("hola")));
            assert_eq!(received[0]["coordinator"], "node-2");
        } else {
            assert!(received.is_empty(), "{} is not in group 2 but got the message", node.name);
        }
    }
    Ok(())
}

/// A member that is alive but silent (stopped) stays in its group until its
/// lease ends: a multicast names it as the one that did not acknowledge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_member_is_named_in_a_two_of_three_report() -> anyhow::Result<()> {
    let (registry, nodes) = nine_in_three_groups(&[]).await?;
    nodes[4].process.signal(Signal::SIGSTOP);
    let output = send(&registry, 2, "hola").await;
    nodes[4].process.signal(Signal::SIGCONT);
    let undelivered = i32::from(node::group::EXIT_UNDELIVERED);
    assert_eq!(output.status.code(), Some(undelivered), "not every member acknowledged: {output:?}");
    let report = report(&output);
    assert_eq!((report["members"].as_u64(), report["delivered"].as_u64()), (Some(3), Some(2)));
    assert_eq!(names(&report["failed"]), ["node-5"]);
    assert_eq!(names(&report["acked"]), ["node-2", "node-8"]);
    Ok(())
}

/// A member killed with SIGKILL leaves its group as soon as its session
/// with the registry closes, so the next multicast is to the others only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_killed_with_sigkill_leaves_its_group_at_once() -> anyhow::Result<()> {
    let (registry, nodes) = nine_in_three_groups(&[]).await?;
    nodes[4].process.signal(Signal::SIGKILL);
    registry.process.wait_for_lines(1, |l| is(l, RegistryEvent::SessionLost) && l["name"] == "node-5").await?;
    let output = send(&registry, 2, "hola").await;
    assert!(output.status.success(), "{output:?}");
    let report = report(&output);
    assert_eq!((report["members"].as_u64(), report["delivered"].as_u64()), (Some(2), Some(2)));
    assert_eq!(names(&report["acked"]), ["node-2", "node-8"]);
    Ok(())
}

/// The coordinator killed: the next oldest member takes over once the
/// registry sees its session close, long before its 15 s lease would end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_coordinator_serves_once_the_old_one_has_died() -> anyhow::Result<()> {
    let (registry, nodes) = nine_in_three_groups(&[]).await?;
    let killed = Instant::now();
    nodes[1].process.signal(Signal::SIGKILL);
    registry.process.wait_for_lines(1, |l| is(l, RegistryEvent::SessionLost) && l["name"] == "node-2").await?;

    let output = send(&registry, 2, "sigue").await;
    assert!(output.status.success(), "{output:?}");
    let report = report(&output);
    assert_eq!(report["coordinator"], "node-5", "the next oldest member took over");
    assert_eq!(names(&report["acked"]), ["node-5", "node-8"]);
    assert!(killed.elapsed() < Duration::from_secs(5), "took {:?}", killed.elapsed());
    Ok(())
}

#[tokio::test]
async fn empty_and_unknown_groups_fail_at_once_with_a_clear_error() -> anyhow::Result<()> {
    let registry = Registry::start(&["--groups", "3"]).await?;
    let _nodes = Node::start_in_order(registry.addr, 2, &[]).await?;
    for (group, says) in [(3, "group 3 has no live members"), (7, "there is no group 7: groups are 1 to 3")] {
        let started = Instant::now();
        let output = send(&registry, group, "nadie").await;
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{stderr}");
        // "At once" means without waiting for any ACK deadline (5 s by default).
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    }
    Ok(())
}

/// One raw request and its answer.
async fn raw(addr: std::net::SocketAddr, request: &Value) -> anyhow::Result<Value> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(request.to_string().as_bytes()).await?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(tests::PATIENCE, stream.read(&mut buf)).await??;
    Ok(serde_json::from_slice(&buf[..n])?)
}

#[tokio::test]
async fn a_report_into_a_closed_pipe_is_no_failure() -> anyhow::Result<()> {
    let registry = Registry::start(&[]).await?;
    let node = Node::start(registry.addr, "solo", &[]).await?;
    node.process.wait_for_event(Event::Registered).await?;
    let addr = registry.addr.to_string();
    let send = move || tests::with_closed_stdout("node", &["send", "--registry", &addr, "--group", "1", "hola"]);
    let output = tokio::task::spawn_blocking(send).await?;
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    node.process.wait_for_event(Event::GroupMessageReceived).await?;
    Ok(())
}

#[tokio::test]
async fn malformed_group_requests_get_clear_errors_and_service_goes_on() -> anyhow::Result<()> {
    let registry = Registry::start(&[]).await?;
    let node = Node::start(registry.addr, "solo", &[]).await?;
    node.process.wait_for_event(Event::Registered).await?;
    let cases = [
        (json!({"op":"group"}), "missing field `group`"),
        (json!({"op":"group","group":"dos"}), "field `group`: `\"dos\"` isn't a group number (1-100000)"),
        (json!({"op":"group","group":0}), "isn't a group number"),
    ];
    for (request, says) in cases {
        let answer = raw(registry.addr, &request).await?;
        assert_eq!(answer["error"]["code"], "bad_request", "{answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(says), "{answer}");
    }
    let answer = raw(node.addr, &json!({"op":"multicast","group":1,"sender":"x"})).await?;
    assert_eq!(answer["error"]["message"], "missing field `text`");
    assert_eq!(registry.names().await?, ["solo"], "the registry still serves");
    let view = registry.client().await?.group(1).await?;
    assert_eq!(view.coordinator.name, "solo");
    Ok(())
}

/// A coordinator that dies holding a multicast (here a stand-in, which
/// answers greetings and drops its registry session when the multicast
/// comes): `node send` asks the registry again, multicasts through the
/// coordinator it names now, and its report says which one failed first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_whose_coordinator_just_died_goes_through_the_next_one_and_says_so() -> anyhow::Result<()> {
    use wire::secure::{Admission, Identity, Keys};

    let registry = Registry::start(&["--groups", "1"]).await?;
    let keys = Keys::new(Identity::generate(), Admission::Open);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let puerto = listener.local_addr()?.port();
    let mut session =
        registry::client::Client::connect_secure(&registry.registry_addr(), &keys, tests::PATIENCE).await?;
    let ticket_key = wire::ticket::TicketKey::generate();
    let doomed = registry::protocol::NativeRequest::Register {
        ip: None,
        puerto,
        name: "doomed",
        group: None,
        incarnation: None,
        ticket_key: Some(&ticket_key),
    };
    session.register(&doomed).await?;
    let stand_in = tokio::spawn(async move {
        let mut sealed = tests::accept_member(&listener, &keys, &ticket_key, "doomed").await?;
        let message = tests::read(&mut sealed).await?;
        anyhow::ensure!(message["op"] == "multicast", "{message}");
        // As if its process died: the registry sees its session close.
        drop(session);
        anyhow::Ok(sealed)
    });
    let nodes = Node::start_in_order(registry.addr, 2, &[]).await?;
    for node in &nodes {
        node.process.wait_for_lines(1, |l| is(l, Event::GreetingSent) && l["peer_name"] == "doomed").await?;
    }

    let sending = tokio::spawn({
        let addr = registry.addr.to_string();
        async move {
            let args = ["send", "--registry", &addr, "--group", "1", "--json", "sigue"];
            tokio::process::Command::new(tests::binary("node")).args(args).output().await
        }
    });
    let held = stand_in.await??;
    registry.process.wait_for_lines(1, |l| is(l, RegistryEvent::SessionLost) && l["name"] == "doomed").await?;
    drop(held);
    let output = sending.await??;
    assert!(output.status.success(), "{output:?}");
    let report = report(&output);
    assert_eq!(report["coordinator"], "node-1", "the next oldest member coordinates now: {report}");
    assert_eq!(names(&report["acked"]), ["node-1", "node-2"]);
    assert_eq!(report["failed_over_from"]["name"], "doomed", "{report}");
    Ok(())
}

/// A sender that keeps its sessions sends through the coordinator it knows,
/// which multicasts with the view it had, until the membership changes: a
/// member that left is not delivered to, and a coordinator that died is
/// followed by the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_sender_follows_the_membership_through_what_it_knows() -> anyhow::Result<()> {
    use node::group::Sender;
    use wire::secure::{Admission, Identity, Keys};

    let (registry, nodes) = nine_in_three_groups(&[]).await?;
    let keys = Keys::new(Identity::generate(), Admission::Open);
    let deadlines = node::exchange::Deadlines { connect: tests::PATIENCE, reply: tests::PATIENCE };
    let sender = Sender::new(registry.registry_addr(), &keys, deadlines);
    let report = sender.send(2, "uno", "test").await?;
    assert_eq!((report.coordinator.as_str(), report.members), ("node-2", 3), "{report}");
    assert!(report.is_complete(), "{report}");

    // The coordinator's watch shows node-8 gone: its view from a moment ago is forgotten.
    nodes[7].process.signal(Signal::SIGKILL);
    nodes[1].process.wait_for_lines(1, |l| is(l, Event::PeerLeft) && l["peer_name"] == "node-8").await?;
    let report = sender.send(2, "dos", "test").await?;
    assert_eq!((report.members, report.acked.clone()), (2, vec!["node-2".to_owned(), "node-5".to_owned()]), "{report}");
    assert!(report.failed_over_from.is_none(), "{report}");

    // The coordinator the sender knows died: it tries it, then the next one.
    nodes[1].process.signal(Signal::SIGKILL);
    registry.process.wait_for_lines(1, |l| is(l, RegistryEvent::SessionLost) && l["name"] == "node-2").await?;
    let report = sender.send(2, "tres", "test").await?;
    assert_eq!(report.coordinator, "node-5", "{report}");
    assert_eq!(report.failed_over_from.as_ref().map(|f| f.name.as_str()), Some("node-2"), "{report}");
    assert_eq!(report.acked, ["node-5"], "{report}");
    Ok(())
}
