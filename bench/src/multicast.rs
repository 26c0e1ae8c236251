//! `multicast`: latency of sequential multicasts to a group of 10 and of 100
//! node processes, from the call to its report, sent two ways: one-shot, as
//! `node send` does (`node::group::send`: a registry lookup and two
//! handshakes per message), and by a `node::group::Sender` that keeps its
//! sessions and knows the coordinator.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use node::exchange::Deadlines;
use node::group::Sender;
use registry::client::RegistryAddr;
use tokio::time::timeout;

use crate::cli::Cli;
use crate::nodes::{mesh_limit, reached, spawn_nodes, Mesh, Spawned};
use crate::probe::{cores, cpu_seconds};
use crate::report::{percentile, Rows, Target};
use crate::spawn::LeanRegistry;

/// Group sizes, and how many multicasts are timed for each.
pub(crate) const MULTICASTS: [(usize, usize); 2] = [(10, 200), (100, 100)];

/// Untimed multicasts first, so that connections and caches are warm.
pub(crate) const MULTICAST_WARMUP: usize = 5;

/// The sender's deadlines: longer than the coordinator's per-member deadline
/// (the nodes' `--ack-timeout`, 5 s), as `group::send` requires.
pub(crate) const MULTICAST_DEADLINES: Deadlines =
    Deadlines { connect: Duration::from_secs(2), reply: Duration::from_secs(10) };

/// Bounds one `group::send`, lookup included.
pub(crate) const MULTICAST_PATIENCE: Duration = Duration::from_secs(30);

/// Both group sizes, each on nodes of its own.
pub(crate) async fn bench_multicasts(cli: &Cli, rows: &Rows, node_bin: &Path) -> anyhow::Result<()> {
    for (members, sends) in MULTICASTS {
        let section = format!("multicast N={members}");
        let bench = bench_multicast(cli, rows, &section, members, sends, node_bin);
        crate::one_size(rows, &section, bench).await;
    }
    Ok(())
}

/// Latency of `sends` sequential multicasts to a group of `members` nodes, all
/// in group 1, from the call to `group::send` until its report.
pub(crate) async fn bench_multicast(
    cli: &Cli,
    rows: &Rows,
    section: &str,
    members: usize,
    sends: usize,
    node_bin: &Path,
) -> anyhow::Result<()> {
    in_group(cli, rows, section, members, node_bin, async |registry, spawned| {
        multicasts(rows, section, &RegistryAddr::from(registry), members, sends, spawned).await
    })
    .await
}

/// Runs `body` with the address of a registry of its own and `members` node
/// processes registered with it, all in group 1, once they have meshed;
/// then stops them all, whatever `body` did.
pub(crate) async fn in_group(
    cli: &Cli,
    rows: &Rows,
    section: &str,
    members: usize,
    node_bin: &Path,
    body: impl AsyncFnOnce(SocketAddr, &Spawned) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let registry = LeanRegistry::start(&["--ttl", "60s", "--groups", "1"]).await?;
    let mesh = Mesh::new(members);
    let t0 = Instant::now();
    let (spawned, spawn_error) = spawn_nodes(cli, node_bin, &[registry.addr], &mesh).await;
    let result = match spawn_error {
        Some(error) => Err(anyhow::anyhow!(error)),
        None => match group_ready(cli, rows, section, &mesh, t0).await {
            Ok(()) => body(registry.addr, &spawned).await,
            Err(error) => Err(error),
        },
    };
    for said in spawned.kill_all().await {
        eprintln!("  {section}: stderr of {said}");
    }
    registry.stop().await;
    result
}

/// Waits until every node has registered, and the pairwise greetings are
/// over so that they do not compete with the multicasts.
pub(crate) async fn group_ready(cli: &Cli, rows: &Rows, section: &str, mesh: &Mesh, t0: Instant) -> anyhow::Result<()> {
    let members = mesh.nodes;
    let limit = mesh_limit(cli, members);
    if !reached(mesh, &mesh.all_registered, t0 + limit).await {
        bail!("the nodes did not all register: {}", mesh.status());
    }
    let meshed = reached(mesh, &mesh.meshed, t0 + limit).await;
    let since = |at: &OnceLock<Instant>| at.get().map_or(f64::NAN, |at| (*at - t0).as_secs_f64());
    rows.push(
        section,
        "set-up",
        None,
        "note",
        None,
        format!(
            "{members} nodes in group 1 registered after {:.3} s; {}",
            since(&mesh.all_registered),
            if meshed {
                format!("meshed after {:.3} s", since(&mesh.meshed))
            } else {
                format!("NOT meshed after {limit:?}: {}", mesh.status())
            }
        ),
    );
    Ok(())
}

/// What a run of multicasts measured.
struct Timed {
    latencies_ns: Vec<u64>,
    failures: Vec<String>,
    wall: f64,
    sender_cpu: Option<f64>,
    nodes_cpu: f64,
    coordinator: String,
    coordinator_cpu: Option<f64>,
}

/// Times `sends` multicasts, one at a time, to the `members` nodes of group 1.
pub(crate) async fn multicasts(
    rows: &Rows,
    section: &str,
    addr: &RegistryAddr,
    members: usize,
    sends: usize,
    nodes: &Spawned,
) -> anyhow::Result<()> {
    for sending in [Sending::OneShot, Sending::Kept] {
        let timed = time_multicasts(addr, members, sends, nodes, sending).await?;
        report(rows, section, &timed, members, sends, sending);
    }
    let lookups = group_lookups(addr, 50).await?;
    let note = "connect to the registry and ask for group 1; sender and coordinator each do one";
    rows.info(section, "group lookup p50", percentile(&lookups, 0.5) / 1e6, "ms", note);
    Ok(())
}

/// How the bench sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sending {
    /// A new sender per message, as `node send`.
    OneShot,
    /// One sender for them all, keeping its sessions.
    Kept,
}

impl Sending {
    /// What the report's rows are called.
    fn rows(self) -> &'static str {
        match self {
            Sending::OneShot => "one-shot",
            Sending::Kept => "kept sessions",
        }
    }
}

async fn time_multicasts(
    addr: &RegistryAddr,
    members: usize,
    sends: usize,
    nodes: &Spawned,
    sending: Sending,
) -> anyhow::Result<Timed> {
    let kept = Sender::new(addr, &crate::spawn::client_keys(), MULTICAST_DEADLINES);
    let multicast = |text: String| {
        let kept = &kept;
        async move {
            match sending {
                Sending::OneShot => {
                    let sender = Sender::new(addr, &crate::spawn::client_keys(), MULTICAST_DEADLINES);
                    multicast(&sender, &text, members).await
                }
                Sending::Kept => multicast(kept, &text, members).await,
            }
        }
    };
    let mut coordinator = String::new();
    for i in 0..MULTICAST_WARMUP {
        coordinator = multicast(format!("warm-up {i}")).await?;
    }
    let coordinator_pid = nodes.pid_of(&coordinator).map(|pid| pid.to_string());
    let cpu = || (nodes.cpu_seconds(), coordinator_pid.as_deref().and_then(cpu_seconds), cpu_seconds("self"));
    let before = cpu();
    let started = Instant::now();
    let (mut latencies_ns, mut failures) = (Vec::with_capacity(sends), Vec::new());
    for i in 0..sends {
        let sent = Instant::now();
        match multicast(format!("bench {i}")).await {
            Ok(_) => latencies_ns.push(sent.elapsed().as_nanos() as u64),
            Err(error) => failures.push(format!("{error:#}")),
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let after = cpu();
    latencies_ns.sort_unstable();
    Ok(Timed {
        latencies_ns,
        failures,
        wall,
        sender_cpu: before.2.zip(after.2).map(|(b, a)| a - b),
        nodes_cpu: after.0 - before.0,
        coordinator,
        coordinator_cpu: before.1.zip(after.1).map(|(b, a)| a - b),
    })
}

fn report(rows: &Rows, section: &str, timed: &Timed, members: usize, sends: usize, sending: Sending) {
    let (latencies, wall) = (&timed.latencies_ns, timed.wall);
    let target = match (sending, members) {
        (Sending::OneShot, 100) => Some(Target::AtMost(5.0)),
        (Sending::Kept, 10) => Some(Target::AtMost(0.5)),
        _ => None,
    };
    let over = format!(
        "over {} complete multicasts of {sends}, one at a time, after {MULTICAST_WARMUP} warm-up",
        latencies.len()
    );
    let how = sending.rows();
    let ms = |p| (!latencies.is_empty()).then(|| percentile(latencies, p) / 1e6);
    rows.push(section, format!("{how}: latency p50"), ms(0.50), "ms", target, over);
    rows.push(section, format!("{how}: latency p99"), ms(0.99), "ms", None, "");
    rows.push(section, format!("{how}: latency max"), ms(1.0), "ms", None, "");
    let first = timed.failures.first().map(|f| format!("first: {f}")).unwrap_or_default();
    let failed = Some(timed.failures.len() as f64);
    rows.push(section, format!("{how}: failed or incomplete"), failed, "", Some(Target::AtMost(0.0)), first);
    if let Some(used) = timed.sender_cpu {
        let note = format!("{:.0}% of one core over {wall:.2} s", 100.0 * used / wall);
        rows.info(section, format!("{how}: bench sender CPU"), used, "CPU s", note);
    }
    let used = timed.nodes_cpu;
    let note = format!(
        "{:.0} µs per member; {:.0}% of the {} cores over {wall:.2} s",
        used * 1e6 / (sends * members) as f64,
        100.0 * used / wall / cores() as f64,
        cores()
    );
    rows.info(section, format!("{how}: nodes CPU per multicast"), used * 1e3 / sends as f64, "ms", note);
    let per_multicast = timed.coordinator_cpu.map(|used| used * 1e3 / sends as f64);
    let note = format!("{}, included in the nodes' CPU", timed.coordinator);
    rows.push(section, format!("{how}: coordinator CPU per multicast"), per_multicast, "ms", None, note);
}

/// Latencies of `count` registry group lookups, each on a new connection as `group::send` makes them, sorted.
pub(crate) async fn group_lookups(registry: &RegistryAddr, count: usize) -> anyhow::Result<Vec<u64>> {
    let mut latencies_ns = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        crate::throughput::connect(registry).await?.group(1).await?;
        latencies_ns.push(started.elapsed().as_nanos() as u64);
    }
    latencies_ns.sort_unstable();
    Ok(latencies_ns)
}

/// One multicast to group 1: an error unless all `members` acknowledged;
/// returns the coordinator's name.
pub(crate) async fn multicast(sender: &Sender, text: &str, members: usize) -> anyhow::Result<String> {
    let send = sender.send(1, text, "bench");
    let report = timeout(MULTICAST_PATIENCE, send)
        .await
        .with_context(|| format!("no report within {MULTICAST_PATIENCE:?}"))??;
    if !report.is_complete() || report.members != members {
        let failed = report.failed.first();
        bail!(
            "delivered to {} of {} members (expected {members}){}",
            report.delivered,
            report.members,
            failed.map_or(String::new(), |f| format!("; {} ({}): {}", f.name, f.addr, f.error))
        );
    }
    Ok(report.coordinator)
}
