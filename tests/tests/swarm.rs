//! `launcher --runtime swarm` on a single-host swarm that the test makes and
//! leaves (also when it fails; an engine that is a manager already is used
//! as it is). One test, in order, since the swarm is the engine's whole
//! state: the error on an engine that is not a manager, up, scale, a killed
//! task rescheduled, send, ps and down; then a published project.
//! Skips (saying so) when the engine cannot do swarm mode, unless
//! REQUIRE_DOCKER is set.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;
use tests::docker::{self, images_built, leftovers, text, ProjectGuard, Swarm};
use tests::launcher::{await_greetings, last_json as json, launcher, total};

#[tokio::test(flavor = "multi_thread")]
async fn a_swarm_project_meshes_scales_reschedules_sends_and_goes_down() {
    if !docker::available("the swarm tests") {
        return;
    }
    images_built();
    let project = "hit6-test-swarm";
    let up = ["up", "--runtime", "swarm", "--nodes", "5", "--detach", "--quiet", "--json", "--timeout", "120s"];
    // Short leases: a killed task's entry is gone in seconds.
    let up = [&up[..], &["--registry-port", "18686", "--lease", "3s"]].concat();

    if !docker::swarm_manager() {
        let refused = launcher(project, &up);
        assert_eq!(refused.status.code(), Some(7), "{}", text(&refused));
        assert!(text(&refused).contains("docker swarm init"), "{}", text(&refused));
        assert!(leftovers(project).is_empty(), "a refused up made {:?}", leftovers(project));
    }
    let Some(swarm) = Swarm::init("the swarm tests") else { return };
    // Dropped before the swarm is left.
    let _guard = ProjectGuard(project.into());

    // Five nodes: every pair greets once, each advertising its overlay address.
    let output = launcher(project, &up);
    assert!(output.status.success(), "{}", text(&output));
    let summary = json(&output);
    assert_eq!((summary["complete"].as_bool(), summary["greetings"].as_u64()), (Some(true), Some(10)), "{summary}");
    assert!(summary["nodes"].as_array().unwrap().iter().all(|n| n["host_port"].is_null()), "{summary}");
    let before = await_greetings(project, |g| total(g) >= 10).await;
    assert_eq!((before.len(), before.values().max()), (10, Some(&1)), "{before:?}");

    // Three more: 5 * 3 + 3 new greetings, none repeated.
    let scaled = launcher(project, &["scale", "--nodes", "8", "--quiet", "--json", "--timeout", "120s"]);
    assert!(scaled.status.success(), "{}", text(&scaled));
    let after = await_greetings(project, |g| total(g) >= 28).await;
    assert_eq!(after.len() - before.len(), 18, "{after:?}");
    assert_eq!(after.values().max(), Some(&1), "a pair greeted twice: {after:?}");
    assert_eq!(json(&scaled)["nodes"].as_array().map(Vec::len), Some(8));

    // A task killed is rescheduled; the new task is a new node, which greets
    // the seven others once, and no survivor greets anybody again.
    let from_node_3 = after.keys().filter(|(_, greeter)| greeter == "node-3").count();
    let killed = launcher(project, &["kill", "node-3", "--json", "--timeout", "60s"]);
    assert!(killed.status.success(), "{}", text(&killed));
    let departure = &json(&killed)["departure"];
    assert_eq!(departure["registry"]["how"], "session_lost", "the kernel closed its session: {departure}");
    assert_eq!(departure["survivors"].as_object().map(|s| s.len()), Some(7), "{departure}");
    assert!(departure["all_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{departure}");
    let from_node_3_after =
        |g: &BTreeMap<_, usize>| g.iter().filter(|((_, from), _)| from == "node-3").map(|(_, n)| n).sum::<usize>();
    let rescheduled = await_greetings(project, |g| from_node_3_after(g) >= from_node_3 + 7).await;
    for ((receiver, greeter), count) in &rescheduled {
        let expected = match (receiver.as_str(), greeter.as_str()) {
            (_, "node-3") => after.get(&(receiver.clone(), greeter.clone())).copied().unwrap_or(0) + 1,
            _ => 1,
        };
        assert_eq!(*count, expected, "{receiver} was greeted by {greeter} {count} times: {rescheduled:?}");
    }

    // Every node is listed live; a multicast from inside the swarm reaches its group.
    let ps = launcher(project, &["ps"]);
    let ps_text = String::from_utf8_lossy(&ps.stdout);
    let nodes_live = ps_text.lines().filter(|row| row.contains(" node ") && row.contains(" live ")).count();
    assert_eq!(nodes_live, 8, "{ps_text}");
    // Each row shows its current task and the host it is on (the task of node-3 may still say
    // `starting`: the manager hears of a running task after the node has greeted).
    assert!(ps_text.lines().skip(1).all(|row| row.contains(" on ")), "{ps_text}");
    let sent = launcher(project, &["send", "--group", "1", "--json", "hola"]);
    assert!(sent.status.success(), "{}", text(&sent));
    let report = json(&sent);
    assert!(report["members"].as_u64().is_some_and(|m| m >= 2) && report["delivered"] == report["members"], "{report}");

    // The token is read back from the registry's service, and no debug line shows it.
    let token = launcher(project, &["token"]);
    let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
    assert!(token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    let debug = Command::new(tests::binary("launcher")).args(["-p", project, "ps"]).env("RUST_LOG", "debug").output();
    let debug = debug.expect("the launcher runs");
    assert!(!text(&debug).contains(&token), "the token is in RUST_LOG=debug output");

    // Two fewer: the highest numbers go, and the registry logs their departures.
    let shrunk = launcher(project, &["scale", "--nodes", "6", "--quiet", "--json", "--timeout", "120s"]);
    assert!(shrunk.status.success(), "{}", text(&shrunk));
    let names: Vec<Value> = json(&shrunk)["nodes"].as_array().unwrap().iter().map(|n| n["name"].clone()).collect();
    assert_eq!(names, (1..=6).map(|i| Value::from(format!("node-{i}"))).collect::<Vec<_>>(), "{names:?}");
    let nothing = launcher("hit6-test-swarm-none", &["scale", "--nodes", "2"]);
    assert_eq!(nothing.status.code(), Some(1), "{}", text(&nothing));
    assert!(text(&nothing).contains("runs no node services"), "{}", text(&nothing));

    // A restart is a new task of the service: the old one deregisters, the new one registers.
    let restarted = launcher(project, &["restart", "node-5", "--json", "--timeout", "60s"]);
    assert!(restarted.status.success(), "{}", text(&restarted));
    let report = json(&restarted);
    assert_eq!(report["departure"]["registry"]["how"], "deregistered", "{report}");
    assert_eq!(report["return"]["registry"]["how"], "registered", "{report}");
    let again = launcher(project, &["unpause", "node-5"]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        text(&again).contains("is not a paused node of project `hit6-test-swarm` on this engine's host"),
        "{}",
        text(&again)
    );

    let down = launcher(project, &["down"]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(leftovers(project).is_empty(), "left behind: {:?}", leftovers(project));

    published_nodes_are_reached_at_their_hosts_port(&swarm);
    a_node_that_cannot_run_is_named_when_the_mesh_times_out();
}

/// Nodes of the wrong image exit at once; the swarm restarts them, to no
/// avail. When the mesh times out, the launcher says which task is not
/// running and why. A registry port taken on this host is refused before
/// anything is made.
fn a_node_that_cannot_run_is_named_when_the_mesh_times_out() {
    let project = "hit6-test-swarm-stuck";
    let _guard = ProjectGuard(project.into());
    let held = std::net::TcpListener::bind("0.0.0.0:18692").expect("18692 is free");
    let taken =
        launcher(project, &["up", "--runtime", "swarm", "--nodes", "1", "--detach", "--registry-port", "18692"]);
    drop(held);
    assert_eq!(taken.status.code(), Some(1), "{}", text(&taken));
    assert!(text(&taken).contains("host port 18692 is taken on this host"), "{}", text(&taken));
    assert!(leftovers(project).is_empty(), "a refused up made {:?}", leftovers(project));

    // The registry's binary refuses a node's arguments (exit 2).
    let registry_image = concat!("hit6-mesh/registry:", env!("CARGO_PKG_VERSION"));
    let args = ["up", "--runtime", "swarm", "--nodes", "1", "--detach", "--quiet", "--timeout", "8s"];
    let stuck = launcher(project, &[&args[..], &["--registry-port", "18692", "--node-image", registry_image]].concat());
    assert_eq!(stuck.status.code(), Some(4), "{}", text(&stuck));
    let said = text(&stuck);
    let line = said.lines().find(|line| line.contains("tasks not running: ")).unwrap_or_else(|| panic!("{said}"));
    assert!(line.contains("node-1 ") && line.contains("exit (2)"), "{line}");
    let down = launcher(project, &["down"]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(leftovers(project).is_empty(), "left behind: {:?}", leftovers(project));
}

/// With --publish, each node is pinned to a host and advertises the host's
/// address and its own port, reachable from outside the swarm.
fn published_nodes_are_reached_at_their_hosts_port(swarm: &Swarm) {
    let project = "hit6-test-swarm-published";
    let _guard = ProjectGuard(project.into());
    // On one host, the tasks reach the host's published ports through docker_gwbridge.
    let gateway = swarm.host_gateway();
    let args = ["up", "--runtime", "swarm", "--publish", "--nodes", "3", "--detach", "--quiet", "--json"];
    let ports = ["--port-range", "18687-18690", "--registry-port", "18691", "--advertise-ip", &gateway];
    // A port of the range that a process of this host holds is not picked.
    let held = std::net::TcpListener::bind("0.0.0.0:18688").expect("18688 is free");
    let output = launcher(project, &[&args[..], &ports].concat());
    drop(held);
    assert!(output.status.success(), "{}", text(&output));
    let summary = json(&output);
    let mut published: Vec<u64> = Vec::new();
    for node in summary["nodes"].as_array().unwrap() {
        let port = node["host_port"].as_u64().expect("a published node");
        assert_eq!(node["advertised"], format!("{gateway}:{port}"), "{node}");
        published.push(port);
    }
    published.sort();
    assert_eq!(published, [18687, 18689, 18690]);
    for port in published {
        let reached = std::net::TcpStream::connect(("127.0.0.1", port as u16));
        assert!(reached.is_ok(), "nothing listens on the published port {port}");
    }
    let down = launcher(project, &["down"]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(leftovers(project).is_empty(), "left behind: {:?}", leftovers(project));
}
