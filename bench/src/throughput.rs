//! `heartbeat` and `register`: requests per second and their latency, from
//! concurrent clients each on a persistent connection.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use registry::client::{Client, Joined, RegistryAddr};
use registry::protocol::NativeRequest;
use tokio::time::timeout;

use crate::cli::Cli;
use crate::probe::cpu_seconds;
use crate::report::{percentile, Rows, Target};
use crate::spawn::{client_keys, LeanRegistry};

/// Untimed requests first, so that connections and caches are warm.
const WARMUP: Duration = Duration::from_millis(500);

pub(crate) const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Bounds every single request of the throughput clients.
pub(crate) const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) enum Op {
    Heartbeat { id: String },
    Register { name: String, puerto: u16, contacts: usize },
}

pub(crate) struct Measured {
    pub(crate) latencies_ns: Vec<u64>,
    pub(crate) last_done: Instant,
    /// Kept open until every worker is done: an entry goes with its session.
    pub(crate) client: Client,
}

pub(crate) async fn worker(
    mut client: Client,
    op: Op,
    start: Instant,
    warm_end: Instant,
    end: Instant,
) -> anyhow::Result<Measured> {
    let mut latencies_ns = Vec::with_capacity(1 << 16);
    tokio::time::sleep_until(start.into()).await;
    let mut last_done = warm_end;
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        match &op {
            Op::Heartbeat { id } => {
                client.heartbeat(id).await?;
            }
            Op::Register { name, puerto, contacts } => {
                let request = NativeRequest::Register {
                    ip: Some(LOCALHOST),
                    puerto: *puerto,
                    name,
                    group: None,
                    incarnation: None,
                    ticket_key: None,
                };
                match client.register(&request).await? {
                    Joined::Leased(r) if r.contactos.len() == *contacts => {}
                    Joined::Leased(r) => bail!("a re-registration got {} contacts, not {contacts}", r.contactos.len()),
                    Joined::Original(_) => bail!("the registry answered in the original dialect"),
                }
            }
        }
        let done = Instant::now();
        if t0 >= warm_end {
            latencies_ns.push((done - t0).as_nanos() as u64);
            last_done = done;
        }
    }
    Ok(Measured { latencies_ns, last_done, client })
}

/// Runs one worker per (client, op) and reports ops/s, p50 and p99.
pub(crate) async fn drive(
    section: &str,
    rows: &Rows,
    cli: &Cli,
    work: Vec<(Client, Op)>,
    target: Option<Target>,
) -> anyhow::Result<()> {
    let Driven { ops, window, run, clients, latencies_ns, client_cpu } = measure(cli, work).await?;
    let latencies_ns = &latencies_ns;
    let note = format!(
        "{} requests in {window:.2} s, {clients} clients, after {:.1} s warm-up",
        latencies_ns.len(),
        WARMUP.as_secs_f64()
    );
    rows.push(section, "throughput", Some(ops), "ops/s", target, note);
    rows.info(section, "latency p50", percentile(latencies_ns, 0.50) / 1e6, "ms", "");
    rows.info(
        section,
        "latency p99",
        percentile(latencies_ns, 0.99) / 1e6,
        "ms",
        format!("max {:.3} ms", percentile(latencies_ns, 1.0) / 1e6),
    );
    if let Some(used) = client_cpu {
        rows.info(
            section,
            "bench clients CPU",
            used,
            "CPU s",
            format!("{:.0}% of one core over {run:.2} s", 100.0 * used / run),
        );
    }
    Ok(())
}

/// What [`measure`] measured.
pub(crate) struct Driven {
    pub(crate) ops: f64,
    /// Seconds measured, and run in all (with the warm-up).
    window: f64,
    run: f64,
    clients: usize,
    /// Every request's latency, sorted.
    latencies_ns: Vec<u64>,
    client_cpu: Option<f64>,
}

/// Runs one worker per (client, op) for the warm-up and `cli.duration`.
pub(crate) async fn measure(cli: &Cli, work: Vec<(Client, Op)>) -> anyhow::Result<Driven> {
    let clients = work.len();
    let start = Instant::now() + Duration::from_millis(50);
    let warm_end = start + WARMUP;
    let end = warm_end + cli.duration;
    let cpu_before = cpu_seconds("self");
    let tasks: Vec<_> =
        work.into_iter().map(|(client, op)| tokio::spawn(worker(client, op, start, warm_end, end))).collect();
    let mut all = Vec::new();
    let mut last_done = warm_end;
    let mut sessions = Vec::with_capacity(clients);
    for task in tasks {
        let measured = timeout(WARMUP + cli.duration + CLIENT_TIMEOUT * 2, task)
            .await
            .context("a client did not finish in time")?
            .context("a client task panicked")??;
        all.extend(measured.latencies_ns);
        last_done = last_done.max(measured.last_done);
        sessions.push(measured.client);
    }
    drop(sessions);
    let window = (last_done - warm_end).as_secs_f64();
    let run = (last_done - start).as_secs_f64();
    let client_cpu = cpu_before.zip(cpu_seconds("self")).map(|(before, after)| after - before);
    all.sort_unstable();
    let ops = all.len() as f64 / window;
    Ok(Driven { ops, window, run, clients, latencies_ns: all, client_cpu })
}

/// A secure session with the registry as a client of its own (see [`client_keys`]).
pub(crate) async fn connect(addr: &RegistryAddr) -> anyhow::Result<Client> {
    Ok(Client::connect_secure(addr, &client_keys(), CLIENT_TIMEOUT).await?)
}

/// Registers `count` entries `<prefix>-<i>` at 127.0.0.1:<first_port + i>,
/// each in a session of its own, as nodes do: an entry belongs to the key
/// that registered it, so each session is the only one that may renew it.
/// Returns each session with its entry's id.
pub(crate) async fn register_many(
    addr: &RegistryAddr,
    prefix: &str,
    first_port: u16,
    count: usize,
) -> anyhow::Result<Vec<(Client, String)>> {
    let mut registered = Vec::with_capacity(count);
    for i in 0..count {
        let mut client = connect(addr).await?;
        let name = format!("{prefix}-{i}");
        let request = NativeRequest::Register {
            ip: Some(LOCALHOST),
            puerto: first_port + i as u16,
            name: &name,
            group: None,
            incarnation: None,
            ticket_key: None,
        };
        match client.register(&request).await? {
            Joined::Leased(entry) => registered.push((client, entry.id)),
            Joined::Original(_) => bail!("the registry answered in the original dialect"),
        }
    }
    Ok(registered)
}

pub(crate) async fn bench_heartbeat(cli: &Cli, rows: &Rows) -> anyhow::Result<()> {
    let registry = LeanRegistry::start(&["--max-connections", "1024"]).await?;
    heartbeats_at("heartbeat", cli, rows, registry, Some(Target::AtLeast(50_000.0))).await
}

/// Heartbeats/s of `cli.clients` entries at `registry`, which it stops.
pub(crate) async fn heartbeats_at(
    section: &str,
    cli: &Cli,
    rows: &Rows,
    registry: LeanRegistry,
    target: Option<Target>,
) -> anyhow::Result<()> {
    let addr = RegistryAddr::from(registry.addr);
    let registered = register_many(&addr, "hb", 10_000, cli.clients as usize).await?;
    let work = registered.into_iter().map(|(c, id)| (c, Op::Heartbeat { id })).collect();
    let pid = registry.pid().map(|p| p.to_string()).unwrap_or_default();
    let (cpu_before, wall) = (cpu_seconds(&pid), Instant::now());
    let result = drive(section, rows, cli, work, target).await;
    report_cpu(section, rows, &pid, cpu_before, wall);
    registry.stop().await;
    result
}

pub(crate) async fn bench_register(cli: &Cli, rows: &Rows) -> anyhow::Result<()> {
    // Not `Registry::start`: the registry logs every registration, and parsing
    // each line into a kept `serde_json::Value` would compete with the clients.
    let registry = LeanRegistry::start(&["--max-connections", "1024", "--ttl", "60s"]).await?;
    registrations_at("register", cli, rows, registry).await
}

/// Re-registrations/s into `registry`, holding 100 entries, which it stops.
pub(crate) async fn registrations_at(
    section: &str,
    cli: &Cli,
    rows: &Rows,
    registry: LeanRegistry,
) -> anyhow::Result<()> {
    const ENTRIES: usize = 100;
    let addr = RegistryAddr::from(registry.addr);
    // Each client re-registers the entry its own session registered; the
    // other sessions stay open, or their entries would go with them.
    let mut registered = register_many(&addr, "reg", 20_000, ENTRIES).await?;
    let idle = registered.split_off((cli.clients as usize).min(ENTRIES));
    let work = registered
        .into_iter()
        .enumerate()
        .map(|(i, (c, _))| {
            (c, Op::Register { name: format!("reg-{i}"), puerto: 20_000 + i as u16, contacts: ENTRIES - 1 })
        })
        .collect();
    let pid = registry.pid().map(|p| p.to_string()).unwrap_or_default();
    let (cpu_before, wall) = (cpu_seconds(&pid), Instant::now());
    let result = drive(section, rows, cli, work, None).await;
    report_cpu(section, rows, &pid, cpu_before, wall);
    drop(idle);
    registry.stop().await;
    result
}

/// Reports the CPU time `pid` used since `before` was read at `since`.
pub(crate) fn report_cpu(section: &str, rows: &Rows, pid: &str, before: Option<f64>, since: Instant) {
    if let (Some(before), Some(after)) = (before, cpu_seconds(pid)) {
        let used = after - before;
        let wall = since.elapsed().as_secs_f64();
        rows.info(
            section,
            "registry CPU",
            used,
            "CPU s",
            format!("{:.0}% of one core over {wall:.2} s", 100.0 * used / wall),
        );
    }
}
