//! `bench`: measures the real release binaries on this machine.
//!
//! ```text
//! cargo run --release -p bench -- [--only SECTION[,SECTION]] [--nodes 10,100,200,1000]
//!     [--local-nodes 10,100,1000] [--duration SECS] [--clients N] [--mesh-timeout SECS]
//!     [--node-env KEY=VALUE]... [--json]
//! ```
//!
//! `--help` lists the sections and what each measures. Everything but the
//! Docker section runs on 127.0.0.1. Every child is killed when the benchmark
//! ends, fails, times out or is interrupted (they are all `kill_on_drop`; a
//! launcher with every process it started, as a process group; the Docker
//! project is removed), and every wait is bounded. The table goes to stdout;
//! with `--json` the table goes to stderr and a JSON document to stdout.
//! Progress goes to stderr.
//!
//! # Layout
//! - [`cli`]: the command line, and the sections as an enum.
//! - [`report`]: rows with their targets, the table and the JSON document.
//! - [`probe`]: what `/proc` says: memory, CPU time, kernel counters, peaks.
//! - [`spawn`]: child processes with a clean environment, a registry whose
//!   log is only read for its address, launchers in process groups.
//! - [`nodes`]: many node processes and the event counts of their logs.
//! - One module per section: [`throughput`] (heartbeat and register),
//!   [`memory`], [`floor`], [`mesh`], [`originals`] (our mesh against the
//!   lab's Python programs), [`multicast`], [`lab`] (the group lab's
//!   programs beside ours), [`watch`], [`detection`],
//!   [`replicas`] (registry replicas on etcd), [`launcher`], [`local`],
//!   [`metrics`] (what counting costs), [`hostile`] (a stranger's attacks).
#![forbid(unsafe_code)]

mod cli;
mod detection;
mod floor;
mod hostile;
mod lab;
mod launcher;
mod local;
mod memory;
mod mesh;
mod metrics;
mod multicast;
mod nodes;
mod originals;
mod probe;
mod replicas;
mod report;
mod spawn;
mod swarm;
mod throughput;
mod watch;

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use tokio::time::timeout;

use cli::{Cli, Section};
use report::Rows;

/// The whole benchmark gives up after this long, whatever happens.
const OVERALL_TIMEOUT: Duration = Duration::from_secs(20 * 60);

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.token {
        spawn::use_token();
    }
    if let Some(peer) = cli.floor_peer {
        return match floor::run_peer(peer) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("bench floor peer: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    // Builds the release binaries when run from target/release.
    let build = Instant::now();
    let node_bin = ::tests::binary("node");
    let _ = ::tests::binary("registry");
    eprintln!(
        "bench: {} ({} cores; build check took {:.1} s)",
        node_bin.display(),
        probe::cores(),
        build.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench: failed to start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let rows = Rows::default();
    let interrupted = runtime.block_on(async {
        tokio::select! {
            result = timeout(OVERALL_TIMEOUT, run(&cli, &rows, &node_bin)) => result.err().map(|_| format!("gave up after {OVERALL_TIMEOUT:?}")),
            _ = tokio::signal::ctrl_c() => Some("interrupted".to_owned()),
        }
    });
    // Dropping the runtime drops every child still held, which kills it.
    runtime.shutdown_timeout(Duration::from_secs(2));
    report::print(&rows.snapshot(), &cli, started.elapsed(), interrupted.as_deref())
}

async fn run(cli: &Cli, rows: &Rows, node_bin: &Path) {
    let mut floor = None;
    for &section in Section::value_variants() {
        // The mesh is priced against the floor, so it needs one measured first.
        let needed = cli.runs(section) || (section == Section::Floor && cli.runs(Section::Mesh));
        if !needed {
            continue;
        }
        let started = Instant::now();
        let name = &section.name();
        eprintln!("== {name}");
        let result = match section {
            Section::Heartbeat => throughput::bench_heartbeat(cli, rows).await,
            Section::Register => throughput::bench_register(cli, rows).await,
            Section::Memory => memory::bench_memory(rows).await,
            Section::Floor => floor::measure(rows).await.map(|micros| floor = Some(micros)),
            Section::Mesh => {
                for &n in &cli.nodes {
                    let section = format!("mesh N={n}");
                    one_size(rows, &section, mesh::bench_mesh(cli, rows, n, node_bin, floor)).await;
                }
                Ok(())
            }
            Section::Originals => originals::bench_originals(cli, rows, node_bin).await,
            Section::Multicast => multicast::bench_multicasts(cli, rows, node_bin).await,
            Section::Lab => lab::bench_lab(cli, rows, node_bin).await,
            Section::Watch => watch::bench_watch(rows).await,
            Section::Detection => detection::bench_detection(rows).await,
            Section::Replicas => replicas::bench_replicas(cli, rows, node_bin).await,
            Section::Launcher => launcher::bench_launcher(rows).await,
            Section::Local => local::bench_local_sizes(rows, &cli.local_sizes()).await,
            Section::Swarm => swarm::bench_swarm(rows).await,
            Section::Metrics => metrics::bench_metrics(cli, rows, node_bin).await,
            Section::Hostile => hostile::bench_hostile(rows).await,
        };
        if let Err(error) = result {
            rows.error(name, "error", None, format!("{error:#}"));
        }
        eprintln!("   ({name} took {:.1} s)", started.elapsed().as_secs_f64());
    }
}

/// Runs one size of a section, recording its error under `section`, then
/// lets the killed processes' sockets go before the next size.
pub(crate) async fn one_size(rows: &Rows, section: &str, bench: impl Future<Output = anyhow::Result<()>>) {
    if let Err(error) = bench.await {
        rows.error(section, "error", None, format!("{error:#}"));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
}
