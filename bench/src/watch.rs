//! `watch`: one change fanned out to 1000 watchers, a burst of changes
//! fanned out to them, and what 1000 idle watchers cost the registry.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::future::{join_all, try_join_all};
use registry::client::{Client, RegistryAddr, Watch};
use registry::protocol::NativeRequest;
use registry::watch::Change;

use crate::probe::{cpu_seconds, memory};
use crate::report::{percentile, Rows, Target};
use crate::spawn::LeanRegistry;
use crate::throughput::{connect, register_many, LOCALHOST};

const WATCHERS: usize = 1000;
/// Joins timed, each fanned out to every watcher.
const CHANGES: usize = 20;
/// Joins made at once, as when many nodes start together.
const BURST: usize = 100;
/// How long the idle watchers are watched for their CPU cost.
const IDLE: Duration = Duration::from_secs(2);

pub(crate) async fn bench_watch(rows: &Rows) -> anyhow::Result<()> {
    let section = "watch";
    let registry = LeanRegistry::start(&["--max-connections", "4096"]).await?;
    let pid = registry.pid().context("the registry runs")?;
    let addr = RegistryAddr::from(registry.addr);
    // A first member, so that the timed joins change nothing but the membership.
    let first = register_many(&addr, "first", 40_000, 1).await?;
    let without = memory(pid)?;

    let mut watches = Vec::with_capacity(WATCHERS);
    for _ in 0..WATCHERS {
        watches.push(connect(&addr).await?.watch(None).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with = memory(pid)?;
    let per_watcher_kib = (with.mib() - without.mib()) * 1024.0 / WATCHERS as f64;
    let note = format!("{:.2} MiB before them, {per_watcher_kib:.1} KiB a watcher; {}", without.mib(), with.note());
    rows.info(section, "registry RSS, 1000 idle watchers", with.mib(), "MiB", note);
    let cpu_before = cpu_seconds(&pid.to_string());
    tokio::time::sleep(IDLE).await;
    if let (Some(before), Some(after)) = (cpu_before, cpu_seconds(&pid.to_string())) {
        let note = format!("over {:.0} s with 1000 watchers and no change", IDLE.as_secs_f64());
        rows.info(section, "registry CPU, idle watchers", (after - before) * 1e3, "ms", note);
    }

    let mut latencies_ns = Vec::with_capacity(WATCHERS * CHANGES);
    let mut joined = Vec::with_capacity(CHANGES);
    let cpu_before = cpu_seconds(&pid.to_string());
    for i in 0..CHANGES {
        let name = format!("joiner-{i}");
        let sent = Instant::now();
        joined.push(join(&addr, &name, 41_000 + i as u16).await?);
        let arrivals = join_all(watches.iter_mut().map(|watch| arrival(watch, &name))).await;
        for arrival in arrivals {
            latencies_ns.push((arrival? - sent).as_nanos() as u64);
        }
    }
    let cpu = cpu_before.zip(cpu_seconds(&pid.to_string())).map(|(before, after)| after - before);
    latencies_ns.sort_unstable();
    let ms = |p| percentile(&latencies_ns, p) / 1e6;
    let note = format!("from the join request to each of {WATCHERS} watchers, over {CHANGES} joins");
    rows.info(section, "fan-out p50", ms(0.50), "ms", note);
    let max = format!("max {:.2} ms", ms(1.0));
    rows.push(section, "fan-out p99", Some(ms(0.99)), "ms", Some(Target::AtMost(100.0)), max);
    if let Some(cpu) = cpu {
        let note = format!("registry CPU per change sent to {WATCHERS} watchers, the join included");
        rows.info(section, "registry CPU per change", cpu * 1e3 / CHANGES as f64, "ms", note);
    }
    bench_burst(rows, section, &addr, &pid.to_string(), &mut watches).await?;
    drop((watches, joined, first));
    registry.stop().await;
    Ok(())
}

/// [`BURST`] joins at once, until every watcher has them all: what they cost
/// the registry, and in how many reads a watcher got them.
async fn bench_burst(
    rows: &Rows,
    section: &str,
    addr: &RegistryAddr,
    pid: &str,
    watches: &mut [Watch],
) -> anyhow::Result<()> {
    let names: Vec<String> = (0..BURST).map(|i| format!("burst-{i}")).collect();
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let joining = try_join_all(names.iter().zip(42_000..).map(|(name, puerto)| join(addr, name, puerto)));
    let receiving = try_join_all(watches.iter_mut().map(reads_of_burst));
    let (sessions, reads) = tokio::join!(joining, receiving);
    let (_sessions, reads) = (sessions?, reads?);
    let took = started.elapsed();
    let Some(cpu) = cpu_before.zip(cpu_seconds(pid)).map(|(before, after)| after - before) else { return Ok(()) };
    let reads = reads.iter().sum::<usize>() as f64 / reads.len() as f64;
    let note = format!(
        "{BURST} joins at once, each sent to {WATCHERS} watchers, the joins included; all delivered in {:.0} ms, \
         {reads:.1} reads a watcher",
        took.as_secs_f64() * 1e3
    );
    rows.info(section, "registry CPU per change, a burst", cpu * 1e3 / BURST as f64, "ms", note);
    Ok(())
}

/// How many reads `watch` took to get the [`BURST`] joins.
async fn reads_of_burst(watch: &mut Watch) -> anyhow::Result<usize> {
    let (mut joined, mut reads) = (0, 0);
    while joined < BURST {
        let batch = watch.next_batch(BURST).await?;
        joined += batch
            .iter()
            .filter(|event| matches!(&event.change, Change::Joined { entry } if entry.name.starts_with("burst-")))
            .count();
        reads += 1;
    }
    Ok(reads)
}

/// Registers `name` in a session of its own, which it returns: the entry
/// lives as long as the session.
async fn join(addr: &RegistryAddr, name: &str, puerto: u16) -> anyhow::Result<Client> {
    let mut client = connect(addr).await?;
    let request = NativeRequest::Register {
        ip: Some(LOCALHOST),
        puerto,
        name,
        group: Some(1),
        incarnation: None,
        ticket_key: None,
    };
    client.register(&request).await?;
    Ok(client)
}

/// When `watch` got the join of `name`.
async fn arrival(watch: &mut Watch, name: &str) -> anyhow::Result<Instant> {
    loop {
        match watch.next().await?.change {
            Change::Joined { entry } if entry.name == name => return Ok(Instant::now()),
            Change::Joined { entry } => bail!("{} joined before {name}", entry.name),
            _ => {}
        }
    }
}
