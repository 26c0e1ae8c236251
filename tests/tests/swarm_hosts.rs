//! `launcher --runtime swarm` on a swarm of two hosts on this one machine:
//! the main engine, and a second engine in a network namespace joined to
//! the machine by a veth pair (see `tests::second_engine` for how it is made
//! and kept apart). The main engine initialises the swarm on the link's
//! address and the second joins as a worker, with the images loaded from
//! the main engine (no registry in between).
//!
//! One test, in order, since the swarm is the engines' whole state:
//! - six nodes spread over both hosts form a complete mesh, so greetings
//!   crossed the overlay between the hosts (VXLAN over the veth);
//! - published, each node is pinned to a host and advertises that host's
//!   `io.hit6.advertise-ip` label (the second engine's) or its swarm address
//!   (the main engine's, which has no label), and its own port there;
//! - with `--registries 3`, etcd-2 and registry-2 go to the second host and
//!   the others to the first (the manager first, round robin), and the
//!   launcher reaches registry-2 at the second host's swarm address;
//! - the second host is lost (its link cut, then its engine stopped): swarm
//!   reschedules its nodes on the first host, and each rescheduled node
//!   registers and greets the others as a new node, once; the replica
//!   project keeps its quorum and two replicas there: a replica restarted
//!   then catches up and listens again, which takes etcd writes.
//!
//! Everything (project, swarm, engine, namespace, link, cgroups, directory)
//! is undone when the test ends, also when it fails; the main engine is left
//! as found. Skips (saying so) when no daemon answers, the machine cannot
//! run a second engine, or the engine is in a swarm already, unless
//! REQUIRE_DOCKER is set.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use registry::client::{Client, Joined, RegistryAddr};
use registry::protocol::NativeRequest;
use tests::docker::{self, images_built, leftovers, text, ProjectGuard, DOCKER_PATIENCE};
use tests::launcher::{etcd_at_hand, greeting, last_json as json, Greeting};
use tests::second_engine::{SecondEngine, TwoHostSwarm, HOST_IP, NETNS, SECOND_HOSTNAME, SECOND_IP};
use tests::PATIENCE;
use tokio::io::{AsyncBufReadExt, BufReader};
use wire::secure::{Admission, Identity, JoinToken, Keys};
use wire::ticket::TicketKey;

const SUITE: &str = "the two-host swarm test";
const PROJECT: &str = "hit6-test-hosts";
const NODES: usize = 6;
/// A second project, of registry replicas on etcd over both hosts.
const REPLICAS: &str = "hit6-test-hosts-replicas";

fn launcher(args: &[&str]) -> Output {
    tests::launcher::launcher(PROJECT, args)
}

fn count(greetings: impl IntoIterator<Item = Greeting>) -> BTreeMap<Greeting, usize> {
    let mut counted = BTreeMap::new();
    for pair in greetings {
        *counted.entry(pair).or_default() += 1;
    }
    counted
}

/// The host each node's task runs on, from `launcher ps` ("started on <host>").
fn hosts_of_nodes() -> BTreeMap<String, String> {
    let ps = launcher(&["ps"]);
    assert!(ps.status.success(), "{}", text(&ps));
    let rows = String::from_utf8_lossy(&ps.stdout).into_owned();
    let prefix = format!("{PROJECT}-");
    let node_rows = rows.lines().filter(|row| row.contains(" node ") && row.contains(" live "));
    let hosts: BTreeMap<String, String> = node_rows
        .filter_map(|row| {
            let name = row.split_whitespace().next()?.strip_prefix(&prefix)?;
            let host = row.split(" on ").nth(1)?.split_whitespace().next()?;
            Some((name.to_owned(), host.to_owned()))
        })
        .collect();
    assert_eq!(hosts.len(), NODES, "every node runs and is live:\n{rows}");
    hosts
}

/// Follows `launcher logs -f` (from the start) in a task of its own until
/// `total` greetings have been logged, and returns them with the time the
/// last came; fails after DOCKER_PATIENCE. Says when it has read `history`.
fn follow_greetings(
    history: usize,
    total: usize,
) -> (tokio::sync::oneshot::Receiver<()>, tokio::task::JoinHandle<(Vec<Greeting>, Instant)>) {
    let logs = tokio::process::Command::new(tests::binary("launcher"))
        .args(["--project", PROJECT, "logs", "-f"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the launcher runs");
    let (read_history, history_read) = tokio::sync::oneshot::channel();
    let follower = tokio::spawn(async move {
        // Owned here, not just its stdout: dropping it kills the launcher.
        let mut logs = logs;
        let mut lines = BufReader::new(logs.stdout.take().expect("stdout is piped")).lines();
        let mut seen = Vec::new();
        let mut read_history = Some(read_history);
        let wait = async {
            while seen.len() < total {
                let Some(line) = lines.next_line().await.expect("the log is text") else { break };
                seen.extend(greeting(&line));
                if seen.len() >= history {
                    read_history.take().map(|said| said.send(()));
                }
            }
        };
        let _ = tokio::time::timeout(DOCKER_PATIENCE, wait).await;
        assert_eq!(seen.len(), total, "{} of {total} greetings were logged: {seen:?}", seen.len());
        (seen, Instant::now())
    });
    (history_read, follower)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_project_meshes_across_two_hosts_and_recovers_from_losing_one() {
    if !docker::available(SUITE) || !TwoHostSwarm::engine_is_free(SUITE) || !etcd_at_hand(SUITE) {
        return;
    }
    images_built();
    let etcd_image = etcd_image_built();
    let main_host =
        String::from_utf8_lossy(&docker::docker(&["info", "--format", "{{.Name}}"]).stdout).trim().to_owned();
    // Declared in the order they are made: dropped in reverse, the project
    // goes first, then the swarm, then the second engine and its namespace.
    let Some(mut second) = SecondEngine::start(SUITE) else { return };
    let version = env!("CARGO_PKG_VERSION");
    second.load_images(&[&format!("hit6-mesh/registry:{version}"), &format!("hit6-mesh/node:{version}"), &etcd_image]);
    let Some(swarm) = TwoHostSwarm::form(SUITE, &second) else { return };
    published_nodes_advertise_their_hosts_address();
    let replicas = ProjectGuard(REPLICAS.into());
    replicas_spread_over_both_hosts(&main_host);
    let project = ProjectGuard(PROJECT.into());

    // Six nodes over two hosts (the registry is pinned to the first): every
    // pair greets once, including every pair across the hosts.
    let started = Instant::now();
    let up = ["up", "--runtime", "swarm", "--nodes", "6", "--detach", "--quiet", "--json", "--timeout", "180s"];
    // Short leases: an entry of a lost host is gone in seconds.
    let output = launcher(&[&up[..], &["--registry-port", "18786", "--lease", "3s"]].concat());
    assert!(output.status.success(), "{}\nthe second engine's log ends:\n{}", text(&output), second.log_tail());
    let meshed = started.elapsed();
    let summary = json(&output);
    assert_eq!((summary["complete"].as_bool(), summary["greetings"].as_u64()), (Some(true), Some(15)), "{summary}");
    let before = tests::launcher::await_greetings(PROJECT, |g| tests::launcher::total(g) >= 15).await;
    assert_eq!((before.len(), before.values().max()), (15, Some(&1)), "{before:?}");
    let hosts = hosts_of_nodes();
    let lost: BTreeSet<String> = hosts.iter().filter(|(_, h)| *h == SECOND_HOSTNAME).map(|(n, _)| n.clone()).collect();
    let kept: BTreeSet<String> = hosts.iter().filter(|(_, h)| **h == main_host).map(|(n, _)| n.clone()).collect();
    assert!(!lost.is_empty() && !kept.is_empty(), "nodes on both hosts: {hosts:?}");
    assert_eq!(lost.len() + kept.len(), NODES, "every node on one of the two hosts: {hosts:?}");
    let crossed = before.keys().filter(|(to, from)| lost.contains(to) != lost.contains(from)).count();
    assert_eq!(crossed, lost.len() * kept.len(), "every pair across the hosts greeted: {before:?}");
    eprintln!(
        "{NODES} nodes meshed across 2 hosts in {meshed:.1?} (launcher: {} ms); on {SECOND_HOSTNAME}: {lost:?}",
        summary["elapsed_ms"]
    );

    // Each rescheduled node is a new node: it greets every node once, or is
    // greeted by a rescheduled one registering after it; survivors greet
    // nobody again. The follower, started before the loss, sees the history.
    let expected_new = lost.len() * kept.len() + lost.len() * (lost.len() - 1) / 2;
    let history = before.values().sum::<usize>();
    let (history_read, follower) = follow_greetings(history, history + expected_new);
    // The history must be read while the second host's tasks can still be
    // asked for their logs.
    let read = tokio::time::timeout(DOCKER_PATIENCE, history_read).await;
    assert!(matches!(read, Ok(Ok(()))), "the follower did not read the {history} greetings so far");
    let lost_at = Instant::now();
    second.cut_link();
    second.stop();
    eprintln!("{SECOND_HOSTNAME} cut off and its engine stopped in {:.1?}", lost_at.elapsed());
    let (seen, greeted_at) = follower.await.expect("the follower did not fail");
    let recovered = greeted_at - lost_at;
    let mut new = count(seen);
    for (pair, times) in &before {
        let followed = new.get_mut(pair).filter(|followed| **followed >= *times);
        *followed.unwrap_or_else(|| panic!("the follower missed {pair:?} of the history")) -= times;
    }
    new.retain(|_, times| *times > 0);
    for ((receiver, greeter), times) in &new {
        assert!(
            lost.contains(greeter) && *times == 1,
            "{receiver} was greeted by {greeter} {times} times anew: {new:?}"
        );
    }
    for r in &lost {
        for other in hosts.keys().filter(|o| *o != r) {
            let both_ways =
                [(r, other), (other, r)].map(|(a, b)| new.get(&(a.clone(), b.clone())).copied().unwrap_or(0));
            assert_eq!(both_ways.iter().sum::<usize>(), 1, "{r} and {other} greeted {both_ways:?} times anew: {new:?}");
        }
    }
    let rescheduled = hosts_of_nodes();
    assert!(rescheduled.values().all(|h| *h == main_host), "all nodes rescheduled on {main_host}: {rescheduled:?}");
    eprintln!("from losing {SECOND_HOSTNAME} to every rescheduled node greeted: {recovered:.1?}");
    replicas_outlive_the_second_host().await;

    for project in [PROJECT, REPLICAS] {
        let down = tests::launcher::launcher(project, &["down"]);
        assert!(down.status.success(), "{}", text(&down));
        assert!(leftovers(project).is_empty(), "left behind: {:?}", leftovers(project));
    }

    // Undone in order, and checked: the machine is as it was found.
    drop(project);
    drop(replicas);
    drop(swarm);
    drop(second);
    let state = docker::docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    assert_eq!(String::from_utf8_lossy(&state.stdout).trim(), "inactive", "the engine left the swarm");
    let netns = Command::new("ip").args(["netns", "list"]).output().expect("ip runs");
    assert!(!String::from_utf8_lossy(&netns.stdout).contains(NETNS), "the namespace is gone");
}

/// The etcd image `up --registries` runs, built here from the etcd binary
/// at hand, for the second engine to load.
fn etcd_image_built() -> String {
    let output = tests::launcher::launcher("hit6-test-build", &["build", "--etcd"]);
    assert!(output.status.success(), "launcher build --etcd failed: {}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let image = stdout.lines().find_map(|line| line.split('\t').next().filter(|i| i.starts_with("hit6-mesh/etcd:")));
    image.unwrap_or_else(|| panic!("no etcd image among what was built: {stdout}")).to_owned()
}

/// The host each of a project's members runs on, from `launcher ps --json`
/// (a status "... on <host>").
fn hosts_of(project: &str) -> BTreeMap<String, String> {
    let rows = tests::launcher::ps(project);
    let host = |row: &serde_json::Value| Some(row["status"].as_str()?.split(" on ").nth(1)?.trim().to_owned());
    rows.iter().filter_map(|row| Some((row["member"].as_str()?.to_owned(), host(row)?))).collect()
}

/// Three replicas over two hosts: etcd-2 and registry-2 on the second, the
/// others on the manager; the launcher waited for registry-2 at the second
/// host's address, and the nodes meshed through the replicas.
fn replicas_spread_over_both_hosts(main_host: &str) {
    let up = ["up", "--runtime", "swarm", "--registries", "3", "--nodes", "3", "--detach", "--quiet", "--json"];
    let output =
        tests::launcher::launcher(REPLICAS, &[&up[..], &["--timeout", "180s", "--registry-port", "18886"]].concat());
    assert!(output.status.success(), "{}", text(&output));
    let summary = json(&output);
    assert_eq!((summary["complete"].as_bool(), summary["greetings"].as_u64()), (Some(true), Some(3)), "{summary}");
    let hosts = hosts_of(REPLICAS);
    for member in ["etcd-1", "etcd-3", "registry-1", "registry-3"] {
        assert_eq!(hosts.get(member).map(String::as_str), Some(main_host), "{member} on the manager: {hosts:?}");
    }
    for member in ["etcd-2", "registry-2"] {
        assert_eq!(hosts.get(member).map(String::as_str), Some(SECOND_HOSTNAME), "{member} on the second: {hosts:?}");
    }
}

/// With the second host gone, etcd-1 and etcd-3 are a quorum: a
/// registration at registry-1 (published on the manager), which is an etcd
/// write, is taken and can be undone.
async fn replicas_outlive_the_second_host() {
    let token = tests::launcher::launcher(REPLICAS, &["token"]);
    let admission = match token.status.success() {
        true => Admission::from_token(Some(
            JoinToken::parse(String::from_utf8_lossy(&token.stdout).trim()).expect("the project's token"),
        )),
        false => Admission::Open,
    };
    let keys = Keys::new(Identity::generate(), admission);
    let ticket_key = TicketKey::generate();
    let request = NativeRequest::Register {
        ip: Some([127, 0, 0, 1].into()),
        puerto: 4999,
        name: "after-the-loss",
        group: None,
        incarnation: Some("after-the-loss"),
        ticket_key: Some(&ticket_key),
    };
    let registry: RegistryAddr = "127.0.0.1:18886".parse().expect("an address");
    let mut client = Client::connect_secure(&registry, &keys, PATIENCE).await.expect("a session with registry-1");
    let joined = client.register(&request).await.expect("registry-1 takes a registration without the second host");
    let Joined::Leased(registered) = joined else { panic!("a leased entry") };
    client.deregister(&registered.id).await.expect("and its deregistration");
}

/// With --publish, nodes are spread over both hosts, each on a port of the
/// range there, advertising its host's address: they mesh through the
/// hosts' published ports, and the test reaches each at the address it advertises.
fn published_nodes_advertise_their_hosts_address() {
    let project = "hit6-test-hosts-published";
    let _guard = ProjectGuard(project.into());
    let args = ["up", "--runtime", "swarm", "--publish", "--nodes", "4", "--detach", "--quiet", "--json"];
    let ports = ["--port-range", "18787-18788", "--registry-port", "18789", "--timeout", "180s"];
    let started = Instant::now();
    let output = tests::launcher::launcher(project, &[&args[..], &ports].concat());
    assert!(output.status.success(), "{}", text(&output));
    eprintln!("4 published nodes meshed across 2 hosts in {:.1?}", started.elapsed());
    let summary = json(&output);
    assert_eq!((summary["complete"].as_bool(), summary["greetings"].as_u64()), (Some(true), Some(6)), "{summary}");
    let mut advertised: Vec<String> = Vec::new();
    for node in summary["nodes"].as_array().expect("nodes") {
        let port = node["host_port"].as_u64().expect("a published node");
        let at = node["advertised"].as_str().expect("an advertised address").to_owned();
        assert!(at.ends_with(&format!(":{port}")), "{node}");
        advertised.push(at);
    }
    advertised.sort();
    let expected = [HOST_IP, SECOND_IP].map(|ip| [18787, 18788].map(|port| format!("{ip}:{port}"))).concat();
    assert_eq!(advertised, expected, "two nodes on each host: {summary}");
    for at in &advertised {
        let reached = std::net::TcpStream::connect_timeout(&at.parse().expect("an address"), Duration::from_secs(5));
        assert!(reached.is_ok(), "nothing listens at {at}, where a node advertises itself");
    }
    let down = tests::launcher::launcher(project, &["down"]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(leftovers(project).is_empty(), "left behind: {:?}", leftovers(project));
}
