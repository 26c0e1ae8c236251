//! `metrics`: what counting costs. Heartbeats/s at a registry serving
//! `/metrics` (scraped every second meanwhile) next to one without
//! `--http-listen`, and the nodes' CPU per greeting in a mesh whose nodes
//! and registry all serve `/metrics` next to one where none does; in turns,
//! [`ROUNDS`] of each, so that the machine's drift falls on both alike.
//! The medians' difference goes against the 3% target.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;
use registry::client::RegistryAddr;

use crate::cli::Cli;
use crate::mesh::follow;
use crate::nodes::{mesh_limit, spawn_nodes, Mesh, PENDING_PER_IP};
use crate::report::{Rows, Target};
use crate::spawn::LeanRegistry;
use crate::throughput::{measure, register_many, Op};

/// Runs of each kind, metrics off then on, in turns.
const ROUNDS: usize = 5;

/// The mesh whose CPU per greeting is compared.
const MESH: usize = 200;

/// The most counting may cost, in per cent of the figure without it.
const MAX_COST_PERCENT: f64 = 3.0;

const SECTION: &str = "metrics";

pub(crate) async fn bench_metrics(cli: &Cli, rows: &Rows, node_bin: &Path) -> anyhow::Result<()> {
    let mut heartbeats = [Vec::new(), Vec::new()];
    let mut per_greeting = [Vec::new(), Vec::new()];
    for round in 1..=ROUNDS {
        for on in [false, true] {
            let rate = heartbeats_per_second(cli, on).await?;
            let cpu = cpu_per_greeting(cli, node_bin, on).await?;
            eprintln!(
                "  {SECTION}: round {round}, metrics {}: {rate:.0} heartbeats/s, {cpu:.1} µs CPU per greeting",
                if on { "on" } else { "off" }
            );
            heartbeats[usize::from(on)].push(rate);
            per_greeting[usize::from(on)].push(cpu);
        }
    }
    let [off, on] = heartbeats.map(median);
    rows.info(SECTION, "heartbeats/s, metrics off", off, "ops/s", format!("median of {ROUNDS} runs"));
    rows.info(SECTION, "heartbeats/s, metrics on", on, "ops/s", "scraped every second");
    let cost = percent(off - on, off);
    rows.push(SECTION, "heartbeats/s lost to metrics", Some(cost), "%", Some(Target::AtMost(MAX_COST_PERCENT)), "");
    let [off, on] = per_greeting.map(median);
    let note = format!("mesh N={MESH}, all node CPU / pairs, median of {ROUNDS} runs");
    rows.info(SECTION, "CPU per greeting, metrics off", off, "µs", note);
    rows.info(SECTION, "CPU per greeting, metrics on", on, "µs", "");
    let cost = percent(on - off, off);
    rows.push(
        SECTION,
        "CPU per greeting added by metrics",
        Some(cost),
        "%",
        Some(Target::AtMost(MAX_COST_PERCENT)),
        "",
    );
    Ok(())
}

/// `part` in per cent of `whole`, to a tenth.
fn percent(part: f64, whole: f64) -> f64 {
    (1000.0 * part / whole).round() / 10.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// An address free on loopback now, for a listener whose address must be
/// known before it is up.
fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Heartbeats/s of `cli.clients` sessions, as the `heartbeat` section
/// measures them, at a registry with metrics `on` or off.
async fn heartbeats_per_second(cli: &Cli, on: bool) -> anyhow::Result<f64> {
    let http = on.then(free_addr).transpose()?;
    let http_arg = http.map(|addr| addr.to_string());
    let mut args = vec!["--max-connections", "1024"];
    args.extend(http_arg.iter().flat_map(|addr| ["--http-listen", addr.as_str()]));
    let registry = LeanRegistry::start(&args).await?;
    let scraping = http.map(|addr| tokio::spawn(scrape_every_second(addr)));
    let addr = RegistryAddr::from(registry.addr);
    let registered = register_many(&addr, "hb", 10_000, cli.clients as usize).await?;
    let work = registered.into_iter().map(|(c, id)| (c, Op::Heartbeat { id })).collect();
    let driven = measure(cli, work).await;
    if let Some(scraping) = scraping {
        scraping.abort();
    }
    registry.stop().await;
    Ok(driven?.ops)
}

/// Scrapes `/metrics` at `addr` every second, as a demanding Prometheus would.
async fn scrape_every_second(addr: SocketAddr) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticks.tick().await;
        let _ = wire::http::get(addr, "/metrics", Duration::from_secs(1)).await;
    }
}

/// The nodes' CPU (start-up included) per pair greeted, in µs, in a full
/// mesh of [`MESH`] whose nodes and registry count with metrics `on`, or not.
async fn cpu_per_greeting(cli: &Cli, node_bin: &Path, on: bool) -> anyhow::Result<f64> {
    let http_arg = on.then(free_addr).transpose()?.map(|addr| addr.to_string());
    let mut args = vec!["--ttl", "60s", "--max-pending-per-ip", PENDING_PER_IP];
    args.extend(http_arg.iter().flat_map(|addr| ["--http-listen", addr.as_str()]));
    let registry = LeanRegistry::start(&args).await?;
    let mut cli = cli.clone();
    if on {
        cli.node_env.push((node::config::HTTP_LISTEN_ENV.to_owned(), "127.0.0.1:0".to_owned()));
    }
    let mesh = Mesh::new(MESH);
    let t0 = Instant::now();
    let (spawned, spawn_error) = spawn_nodes(&cli, node_bin, &[registry.addr], &mesh).await;
    let outcome = match spawn_error {
        Some(error) => error,
        None => follow(SECTION, &mesh, t0, mesh_limit(&cli, MESH)).await,
    };
    let cpu = spawned.cpu_seconds();
    spawned.kill_all().await;
    registry.stop().await;
    if !outcome.is_empty() || mesh.distinct.load(Ordering::Relaxed) != mesh.pairs {
        bail!("the mesh of {MESH} with metrics {} did not complete: {outcome}", if on { "on" } else { "off" });
    }
    Ok(cpu * 1e6 / mesh.pairs as f64)
}
