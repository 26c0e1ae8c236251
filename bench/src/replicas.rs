//! `replicas`: registry replicas sharing one membership through a real
//! 3-member etcd (`--store etcd`), next to one registry in memory:
//! heartbeats and registrations per second, the time to fail over when
//! etcd's leader or the replica the nodes use is killed, and a full mesh.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use etcd::testing::Cluster;
use etcd::Etcd;
use registry::identity::{RegistrySecret, KEY_ENV};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

use crate::cli::Cli;
use crate::mesh::{follow, full_mesh, start_registry};
use crate::nodes::{mesh_limit, spawn_nodes, Mesh, PENDING_PER_IP};
use crate::report::{percentile, Rows, Target};
use crate::spawn::{command, LeanRegistry};
use crate::throughput::{heartbeats_at, registrations_at};

/// Kills of each kind the failover figures are taken over.
const RUNS: usize = 10;
/// Failover, at most, by the target.
const FAILOVER: Target = Target::AtMost(1.0);
/// Nodes that move when their replica is killed.
const MOVING: usize = 10;

/// Replicas of one registry on an etcd cluster of their own, sharing one secret.
struct Replicas {
    etcd: Cluster,
    secret: RegistrySecret,
}

impl Replicas {
    /// A new 3-member etcd, so that no entry of an earlier part is in its
    /// log; an error when there is no etcd binary.
    async fn fresh() -> anyhow::Result<Replicas> {
        let etcd = Cluster::start("bench replicas", 3)
            .await
            .context("no etcd binary: put etcd >= 3.4 on PATH or set ETCD_BIN")?;
        Ok(Replicas { etcd, secret: RegistrySecret::generate() })
    }

    async fn start(&self, listen: &str, args: &[&str]) -> anyhow::Result<LeanRegistry> {
        let endpoints = self.etcd.endpoints().join(",");
        let mut all = vec!["--store", "etcd", "--etcd-endpoints", &endpoints];
        all.extend(args);
        let secret = self.secret.reveal();
        LeanRegistry::start_on(listen, &all, &[(KEY_ENV, secret.as_str())]).await
    }
}

pub(crate) async fn bench_replicas(cli: &Cli, rows: &Rows, node_bin: &Path) -> anyhow::Result<()> {
    throughput(cli, rows).await?;
    replica_failover(rows, node_bin).await?;
    mesh(cli, rows, node_bin).await?;
    etcd_failover(rows).await
}

/// Heartbeats and re-registrations per second at one replica, next to one registry in memory.
async fn throughput(cli: &Cli, rows: &Rows) -> anyhow::Result<()> {
    let lean = ["--max-connections", "1024", "--ttl", "60s"];
    heartbeats_at("replicas heartbeat, memory", cli, rows, LeanRegistry::start(&lean).await?, None).await?;
    let at_least = Some(Target::AtLeast(20_000.0));
    let replicas = Replicas::fresh().await?;
    heartbeats_at("replicas heartbeat, etcd", cli, rows, replicas.start("127.0.0.1:0", &lean).await?, at_least).await?;
    drop(replicas);
    registrations_at("replicas register, memory", cli, rows, LeanRegistry::start(&lean).await?).await?;
    let replicas = Replicas::fresh().await?;
    registrations_at("replicas register, etcd", cli, rows, replicas.start("127.0.0.1:0", &lean).await?).await
}

/// Kills the replica `MOVING` nodes use, `RUNS` times, and times until
/// every one of them logged that it moved (its session and watch are back).
async fn replica_failover(rows: &Rows, node_bin: &Path) -> anyhow::Result<()> {
    let section = "replicas failover";
    let replicas = Replicas::fresh().await?;
    let mut running = Vec::new();
    for _ in 0..3 {
        running.push(Some(replicas.start("127.0.0.1:0", &[]).await?));
    }
    let addrs: Vec<SocketAddr> = running.iter().flatten().map(|r| r.addr).collect();
    let list = addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let (mut nodes, mut moved) = moving_nodes(node_bin, &list).await?;
    let mut times = Vec::with_capacity(RUNS);
    for run in 0..RUNS {
        // The nodes walk the list in order: they are on replica `run % 3`.
        let victim = run % 3;
        let killed = Instant::now();
        if let Some(mut replica) = running[victim].take() {
            replica.child.start_kill()?;
            replica.child.wait().await?;
        }
        times.push(all_moved(&mut moved, killed).await?);
        running[victim] = Some(replicas.start(&addrs[victim].to_string(), &[]).await?);
    }
    for node in &mut nodes {
        let _ = node.start_kill();
    }
    report_times(rows, section, "replica killed: every node moved", &mut times);
    Ok(())
}

/// `MOVING` nodes given every replica; each `registry_moved` they log is sent on.
async fn moving_nodes(
    node_bin: &Path,
    list: &str,
) -> anyhow::Result<(Vec<Child>, tokio::sync::mpsc::UnboundedReceiver<Instant>)> {
    let (moves, moved) = tokio::sync::mpsc::unbounded_channel();
    let (registered, mut joined) = tokio::sync::mpsc::unbounded_channel();
    let mut nodes = Vec::new();
    for i in 0..MOVING {
        let name = format!("mover-{i}");
        let args: Vec<String> =
            [list, "--listen", "127.0.0.1:0", "--name", &name, "--log-format", "json"].map(String::from).into();
        let mut child = command(node_bin, &args).spawn().context("spawning a node")?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let (moves, registered) = (moves.clone(), registered.clone());
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("\"registry_moved\"") {
                    let _ = moves.send(Instant::now());
                } else if line.contains("\"registered\"") {
                    let _ = registered.send(());
                }
            }
        });
        nodes.push(child);
    }
    for _ in 0..MOVING {
        tokio::time::timeout(Duration::from_secs(30), joined.recv()).await.context("a node did not register")?;
    }
    Ok((nodes, moved))
}

/// Seconds from `killed` until `MOVING` moves were logged.
async fn all_moved(moved: &mut tokio::sync::mpsc::UnboundedReceiver<Instant>, killed: Instant) -> anyhow::Result<f64> {
    let mut last = killed;
    for _ in 0..MOVING {
        let at = tokio::time::timeout(Duration::from_secs(30), moved.recv()).await.context("a node did not move")?;
        last = last.max(at.context("the nodes' logs ended")?);
    }
    Ok((last - killed).as_secs_f64())
}

/// A full mesh of N = 200 with 3 replicas next to one registry in memory,
/// one after the other, twice each.
async fn mesh(cli: &Cli, rows: &Rows, node_bin: &Path) -> anyhow::Result<()> {
    const N: usize = 200;
    let (mut one, mut three) = (Vec::new(), Vec::new());
    let args = ["--ttl", "60s", "--max-pending-per-ip", PENDING_PER_IP];
    for _ in 0..2 {
        let registry = start_registry().await?;
        one.push(timed_mesh(cli, node_bin, &[registry.addr], N).await);
        registry.stop().await;
        // Names of killed nodes stay their keys' for a while: a new log each time.
        let replicas = Replicas::fresh().await?;
        let mut started = Vec::new();
        for _ in 0..3 {
            started.push(replicas.start("127.0.0.1:0", &args).await?);
        }
        let addrs: Vec<SocketAddr> = started.iter().map(|r| r.addr).collect();
        three.push(timed_mesh(cli, node_bin, &addrs, N).await);
        for replica in started {
            replica.stop().await;
        }
    }
    let section = "replicas mesh N=200";
    let best = |times: &[Result<f64, String>]| times.iter().filter_map(|t| t.as_ref().ok()).copied().reduce(f64::min);
    let shown = |times: &[Result<f64, String>]| {
        times.iter().map(|t| t.as_ref().map_or_else(|e| e.clone(), |s| format!("{s:.2} s"))).collect::<Vec<_>>()
    };
    match (best(&one), best(&three)) {
        (Some(one_best), Some(three_best)) => rows.push(
            section,
            "3 replicas against one registry, best of 2",
            Some(three_best / one_best),
            "x",
            Some(Target::AtMost(1.3)),
            format!("3 replicas {:?}; one {:?}", shown(&three), shown(&one)),
        ),
        _ => rows.error(section, "full mesh", None, format!("3 replicas {:?}; one {:?}", shown(&three), shown(&one))),
    }
    Ok(())
}

/// Seconds to a full mesh of `n` nodes given `registries`, or why there was none.
async fn timed_mesh(cli: &Cli, node_bin: &Path, registries: &[SocketAddr], n: usize) -> Result<f64, String> {
    let mesh = Mesh::new(n);
    let t0 = Instant::now();
    let (spawned, spawn_error) = spawn_nodes(cli, node_bin, registries, &mesh).await;
    let outcome = match spawn_error {
        Some(error) => error,
        None => follow("replicas mesh", &mesh, t0, mesh_limit(cli, n)).await,
    };
    let result = full_mesh(&mesh, t0, &outcome);
    spawned.kill_all().await;
    tokio::time::sleep(Duration::from_secs(1)).await; // the killed nodes' sockets go
    result
}

/// Kills etcd's leader `RUNS` times while a writer writes, and times from
/// each kill until a write succeeds again.
async fn etcd_failover(rows: &Rows) -> anyhow::Result<()> {
    let mut replicas = Replicas::fresh().await?;
    let etcd = &mut replicas.etcd;
    let client = Etcd::connect(&etcd.endpoints(), Duration::from_secs(5)).await?;
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let leader = etcd.leader().await;
        client.put(b"bench/failover", b"before", None).await?;
        let killed = Instant::now();
        etcd.kill(leader);
        // Each write fails over by itself, within its own deadline; the
        // first that succeeds after the kill ends the wait.
        let give_up = killed + Duration::from_secs(30);
        while client.put(b"bench/failover", b"after", None).await.is_err() {
            anyhow::ensure!(Instant::now() < give_up, "no write succeeded within 30 s of killing the leader");
        }
        times.push(killed.elapsed().as_secs_f64());
        etcd.restart(leader).await;
    }
    report_times(rows, "replicas failover", "etcd leader killed: writes again", &mut times);
    Ok(())
}

fn report_times(rows: &Rows, section: &str, what: &str, times: &mut [f64]) {
    times.sort_by(f64::total_cmp);
    let nanos: Vec<u64> = times.iter().map(|s| (s * 1e9) as u64).collect();
    let (p50, max) = (percentile(&nanos, 0.5) / 1e9, percentile(&nanos, 1.0) / 1e9);
    let note = format!(
        "p50 {p50:.3} s over {} runs: {:?}",
        times.len(),
        times.iter().map(|t| format!("{t:.3}")).collect::<Vec<_>>()
    );
    rows.push(section, format!("{what}, max"), Some(max), "s", Some(FAILOVER), note);
}
