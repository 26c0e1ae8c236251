//! `mesh`: N node processes greeting each other pairwise: the time to a full
//! mesh, pairs greeted more than once or never, and the nodes' CPU per
//! greeting against the kernel's floor.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::cli::Cli;
use crate::floor;
use crate::nodes::{mesh_limit, spawn_nodes, Mesh, Spawned, PENDING_PER_IP};
use crate::probe::{self, Memory, Peaks};
use crate::report::{Rows, Target};
use crate::spawn::LeanRegistry;

/// How long the logs must stay quiet once every pair has met before the
/// pairs are counted, so that a late duplicate is counted too.
const QUIET: Duration = Duration::from_millis(300);

/// The registry's resident memory, at most, while N nodes register at once.
const REGISTRY_PEAK_MIB: f64 = 20.0;

/// One mesh size.
pub(crate) async fn bench_mesh(
    cli: &Cli,
    rows: &Rows,
    nodes: usize,
    node_bin: &Path,
    floor: Option<f64>,
) -> anyhow::Result<()> {
    let section = &format!("mesh N={nodes}");
    let target = match nodes {
        200 => Some(Target::AtMost(1.5)),
        1000 => Some(Target::AtMost(120.0)),
        _ => None,
    };
    if let Err(why) = fd_budget(nodes) {
        rows.error(section, "full mesh", target, why);
        return Ok(());
    }
    let registry = start_registry().await?;
    let mesh = Mesh::new(nodes);
    let before = Before::now();
    let (spawned, spawn_error) = spawn_nodes(cli, node_bin, &[registry.addr], &mesh).await;
    let spawn_time = before.t0.elapsed();
    eprintln!("  {section}: spawned {} nodes in {:.3} s", spawned.children.len(), spawn_time.as_secs_f64());
    let limit = mesh_limit(cli, nodes);
    let (outcome, peaks) = match spawn_error {
        Some(error) => (format!("LIMIT: {error}"), Peaks::default()),
        None => probe::with_peaks(follow(section, &mesh, before.t0, limit)).await,
    };
    let figures = Figures::take(&spawned, &registry, &before);
    let stderr_samples = spawned.kill_all().await;
    registry.stop().await;
    report_mesh(rows, section, &mesh, &before, spawn_time, (target, &outcome));
    let startup = mesh.startup_ns.load(Ordering::Relaxed) as f64 / 1e9;
    report_costs(rows, section, &figures, floor, (nodes, startup));
    report_host(rows, section, &before, &peaks);
    for sample in wire::lock(&mesh.samples).iter().chain(&stderr_samples) {
        eprintln!("  {section}: {sample}");
    }
    Ok(())
}

/// A registry for a mesh of nodes on this host.
pub(crate) async fn start_registry() -> anyhow::Result<LeanRegistry> {
    LeanRegistry::start(&["--ttl", "60s", "--max-pending-per-ip", PENDING_PER_IP]).await
}

/// Each node costs this process a stdout pipe, a stderr pipe and a pidfd.
fn fd_budget(nodes: usize) -> Result<(), String> {
    let Some((soft, open)) = probe::fd_budget() else { return Ok(()) };
    let need = 3 * nodes as u64 + 64;
    if open + need > soft {
        return Err(format!(
            "would need ~{need} file descriptors; the soft limit is {soft} with {open} open (ulimit -n)"
        ));
    }
    Ok(())
}

/// What was read before the nodes started.
struct Before {
    t0: Instant,
    bench_cpu: Option<f64>,
    counters: Vec<(&'static str, i64)>,
    load: String,
}

impl Before {
    fn now() -> Before {
        let (bench_cpu, counters, load) = (probe::cpu_seconds("self"), probe::kernel_counters(), probe::loadavg());
        Before { t0: Instant::now(), bench_cpu, counters, load }
    }
}

/// Follows the counts until every pair has met (and the logs have been
/// quiet for a moment), or until it cannot happen; returns why not, or "".
pub(crate) async fn follow(section: &str, mesh: &Mesh, t0: Instant, limit: Duration) -> String {
    let mut concluded: Option<Instant> = None;
    let mut progress = (0, Instant::now());
    let mut next_report = Instant::now() + Duration::from_secs(2);
    while mesh.meshed.get().is_none() {
        let now = Instant::now();
        let (received, failed) = (mesh.received.load(Ordering::Relaxed), mesh.failed.load(Ordering::Relaxed));
        if mesh.exited.load(Ordering::Relaxed) > 0 {
            return format!("{} node(s) exited", mesh.exited.load(Ordering::Relaxed));
        }
        // Every greeting is over and some failed: give stragglers a moment.
        if received + failed >= mesh.pairs && now - *concluded.get_or_insert(now) > Duration::from_secs(1) {
            return "every greeting ended, some failed".into();
        }
        if received != progress.0 {
            progress = (received, now);
        } else if now - progress.1 > Duration::from_secs(20) {
            return "no greeting received for 20 s".into();
        }
        if now >= t0 + limit {
            return format!("timed out after {:.0} s", limit.as_secs_f64());
        }
        if now >= next_report {
            eprintln!("  {section}: t={:.1}s {}", (now - t0).as_secs_f64(), mesh.status());
            next_report = now + Duration::from_secs(2);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    quiet(mesh).await;
    String::new()
}

/// Waits until no greeting event has arrived for [`QUIET`], at most 5 s.
async fn quiet(mesh: &Mesh) {
    let events = || mesh.received.load(Ordering::Relaxed) + mesh.sent.load(Ordering::Relaxed);
    let give_up = Instant::now() + Duration::from_secs(5);
    let mut last = (events(), Instant::now());
    while Instant::now() < give_up && last.1.elapsed() < QUIET {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if events() != last.0 {
            last = (events(), Instant::now());
        }
    }
}

/// Figures taken while everything still runs.
struct Figures {
    node_rss_kb: Vec<u64>,
    node_cpu: f64,
    registry_cpu: Option<f64>,
    registry_memory: Option<Memory>,
    bench_cpu: Option<f64>,
    wall: f64,
}

impl Figures {
    fn take(spawned: &Spawned, registry: &LeanRegistry, before: &Before) -> Figures {
        let mut node_rss_kb: Vec<u64> =
            spawned.pids().filter_map(|pid| probe::memory(pid).ok()).map(|m| m.rss_kb).collect();
        node_rss_kb.sort_unstable();
        Figures {
            node_rss_kb,
            node_cpu: spawned.cpu_seconds(),
            registry_cpu: registry.pid().and_then(|pid| probe::cpu_seconds(&pid.to_string())),
            registry_memory: registry.pid().and_then(|pid| probe::memory(pid).ok()),
            bench_cpu: before.bench_cpu.zip(probe::cpu_seconds("self")).map(|(before, after)| after - before),
            wall: before.t0.elapsed().as_secs_f64(),
        }
    }
}

/// Registration, completion, and every pair met exactly once: a pair met
/// twice or never is a miss whatever the time.
fn report_mesh(
    rows: &Rows,
    section: &str,
    mesh: &Mesh,
    before: &Before,
    spawn: Duration,
    goal: (Option<Target>, &str),
) {
    let (target, outcome) = goal;
    report_registration(rows, section, mesh, before, spawn);
    let (duplicates, missing) = mesh.duplicate_and_missing();
    match full_mesh(mesh, before.t0, outcome) {
        Ok(seconds) => rows.push(section, "full mesh", Some(seconds), "s", target, mesh.counts()),
        Err(why) => rows.error(section, "full mesh", target, why),
    }
    report_pairs(rows, section, duplicates, missing, mesh);
    rows.info(section, "greeting_failed", mesh.failed.load(Ordering::Relaxed) as f64, "", "");
}

/// Seconds from `t0` to a full mesh, or why there was none (`outcome`
/// says why following stopped): a pair met twice or never is no full mesh.
pub(crate) fn full_mesh(mesh: &Mesh, t0: Instant, outcome: &str) -> Result<f64, String> {
    let (duplicates, missing) = mesh.duplicate_and_missing();
    let counts = mesh.counts();
    match mesh.meshed.get() {
        Some(at) if duplicates == 0 && missing == 0 => Ok((*at - t0).as_secs_f64()),
        Some(at) => Err(format!(
            "reached the count after {:.3} s but {duplicates} duplicate and {missing} missing pairs; {counts}",
            (*at - t0).as_secs_f64()
        )),
        None => {
            let share = 100.0 * (mesh.pairs - missing) as f64 / mesh.pairs as f64;
            Err(format!("incomplete ({outcome}): {share:.1}% of the pairs met, {missing} never; {counts}"))
        }
    }
}

fn report_registration(rows: &Rows, section: &str, mesh: &Mesh, before: &Before, spawn: Duration) {
    match mesh.all_registered.get() {
        Some(at) => {
            let spawning = format!("spawning {} took {:.3} s", mesh.nodes, spawn.as_secs_f64());
            rows.info(section, "all registered", (*at - before.t0).as_secs_f64(), "s", spawning);
        }
        None => {
            let registered = format!("{}/{} registered", mesh.registered.load(Ordering::Relaxed), mesh.nodes);
            rows.error(section, "all registered", None, registered)
        }
    }
}

fn report_pairs(rows: &Rows, section: &str, duplicates: usize, missing: usize, mesh: &Mesh) {
    let exactly = Some(Target::AtMost(0.0));
    let note = "a greeting of a pair that had met already, either way round";
    rows.push(section, "pairs greeted twice or more", Some(duplicates as f64), "", exactly, note);
    let mut note = format!("of N(N-1)/2 = {}", mesh.pairs);
    if missing > 0 {
        let never = mesh.never_met(5);
        let pairs: Vec<String> = never.pairs.iter().map(|(a, b)| format!("node-{a}/node-{b}")).collect();
        let worst: Vec<String> = never.worst.iter().map(|(node, n)| format!("node-{node} in {n}")).collect();
        note += &format!("; first: {}; most: {}", pairs.join(", "), worst.join(", "));
    }
    rows.push(section, "pairs never greeted", Some(missing as f64), "", exactly, note);
}

/// What the nodes and the registry cost, and the nodes' CPU against the floor.
fn report_costs(rows: &Rows, section: &str, figures: &Figures, floor: Option<f64>, (nodes, startup): (usize, f64)) {
    let rss = &figures.node_rss_kb;
    if let (Some(median), Some(max)) = (rss.get(rss.len() / 2), rss.last()) {
        let note = format!("max {max} kB, sum {:.0} MiB", rss.iter().sum::<u64>() as f64 / 1024.0);
        rows.info(section, "node RSS median", *median as f64 / 1024.0, "MiB", note);
    }
    let over = format!("over {:.2} s of wall time on {} cores", figures.wall, probe::cores());
    rows.info(section, "nodes CPU", figures.node_cpu, "CPU s", over);
    let pairs = crate::nodes::mesh_pairs(nodes) as f64;
    let per_greeting = figures.node_cpu * 1e6 / pairs;
    rows.info(section, "nodes CPU per greeting", per_greeting, "µs", "all node CPU (start-up included) / N(N-1)/2");
    let greeting_only = (figures.node_cpu - startup) * 1e6 / pairs;
    let note = format!("start-up, {:.2} ms a node until it registered, taken out", startup * 1e3 / nodes as f64);
    rows.info(section, "nodes CPU per greeting alone", greeting_only, "µs", note);
    if let Some(floor) = floor {
        let target = (nodes == 200).then_some(Target::AtMost(floor::TARGET_RATIO));
        let note = format!(
            "{per_greeting:.0} µs against the floor's {floor:.0} µs; start-up taken out: {:.2}",
            greeting_only / floor
        );
        rows.push(section, "nodes CPU per greeting / floor", Some(per_greeting / floor), "x", target, note);
    }
    if let Some(cpu) = figures.registry_cpu {
        rows.info(section, "registry CPU", cpu, "CPU s", "");
    }
    if let Some(memory) = figures.registry_memory {
        let target = (nodes == 1000).then_some(Target::AtMost(REGISTRY_PEAK_MIB));
        let note = format!("while {nodes} nodes registered at once; {}", memory.note());
        rows.push(section, "registry peak RSS", Some(memory.hwm_kb as f64 / 1024.0), "MiB", target, note);
    }
    if let Some(cpu) = figures.bench_cpu {
        rows.info(section, "bench CPU", cpu, "CPU s", "spawning the nodes and reading their logs");
    }
}

/// What the host's kernel saw: counters that moved, and peaks.
fn report_host(rows: &Rows, section: &str, before: &Before, peaks: &Peaks) {
    let deltas = probe::counter_deltas(&before.counters, &probe::kernel_counters());
    let note = format!("host-wide deltas: {deltas}; load average before: {}", before.load);
    rows.push(section, "kernel TCP counters", None, "note", None, note);
    if let Some((peak, max)) = peaks.conntrack {
        let full = if peak * 100 >= max * 95 {
            " -- TABLE FULL: netfilter drops new connections (SYNs) until entries expire"
        } else {
            ""
        };
        let note = format!("nf_conntrack_max {max}; sampled every 0.5 s{full}");
        rows.info(section, "conntrack peak entries", peak as f64, "", note);
    }
    rows.info(section, "TIME_WAIT peak sockets", peaks.time_wait as f64, "", "host-wide, sampled every 0.5 s");
}
