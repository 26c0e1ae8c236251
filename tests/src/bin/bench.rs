//! `bench`: measures the real release binaries on this machine.
//!
//! ```text
//! cargo run --release -p tests --bin bench -- [--only NAME[,NAME]] [--nodes 10,100,200,1000]
//!     [--local-nodes 10,100,1000] [--duration SECS] [--clients N] [--mesh-timeout SECS]
//!     [--node-env KEY=VALUE]... [--json]
//! ```
//!
//! Sections (`--only` takes any of them, comma-separated):
//! - `heartbeat`: heartbeats/s and p50/p99 latency from 64 concurrent clients,
//!   each with its own persistent connection.
//! - `register`: re-registrations/s and p50/p99 into a registry holding 100
//!   entries (each reply carries 99 contacts).
//! - `memory`: resident memory of one idle node and of a registry holding 1000 entries.
//! - `mesh`: time for N node processes to greet each other pairwise, from the
//!   first spawn until N(N-1)/2 `greeting_received` events have been logged.
//! - `multicast`: p50/p99/max latency of sequential `node::group::send` calls,
//!   from the call to the report, to a group of 10 and of 100 node processes.
//! - `launcher`: `launcher up --detach` in Docker (project `hit6-bench`), 3 runs
//!   each of 5 and 9 nodes, with the images built first; and the images'
//!   sizes. Skipped, saying so, without a Docker daemon.
//! - `local`: `launcher up --runtime local --detach` for each `--local-nodes`
//!   size (default 10 and 100, and 1000 when `--nodes` has 1000).
//!
//! Everything but the Docker section runs on 127.0.0.1. Every child is killed
//! when the benchmark ends, fails, times out or is interrupted (they are all
//! `kill_on_drop`; a launcher with every process it started, as a process
//! group; the Docker project is removed), and every wait is bounded. The
//! table goes to stdout; with `--json` the table goes to stderr and a JSON
//! document to stdout. Progress goes to stderr.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use node::exchange::Deadlines;
use registry::client::{Client, Joined, RegistryAddr};
use registry::protocol::NativeRequest;
use serde_json::{json, Value};
use tests::{Node, Registry};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Bounds every single request of the throughput clients.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole benchmark gives up after this long, whatever happens.
const OVERALL_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// How long a started registry may take to log `listening`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
const SECTIONS: [&str; 7] = ["heartbeat", "register", "memory", "mesh", "multicast", "launcher", "local"];
/// Environment the binaries read settings from; removed so that the shell's cannot skew a run.
const CONFIG_ENV: [&str; 20] = [
    "RUST_LOG",
    "LOG_FORMAT",
    "NODE_LISTEN",
    "IP_EXT",
    "PUERTO_EXT",
    "NODE_NAME",
    "GROUP",
    "ACK_TIMEOUT",
    "HEARTBEAT_INTERVAL",
    "CONNECT_TIMEOUT",
    "REPLY_TIMEOUT",
    "GREET_FANOUT",
    "NODE_MAX_CONNECTIONS",
    "REGISTRY_LISTEN",
    "REGISTRY_TTL",
    "REGISTRY_SWEEP_INTERVAL",
    "REGISTRY_LEGACY_TTL",
    "REGISTRY_MAX_CONNECTIONS",
    "REGISTRY_IDLE_TIMEOUT",
    "REGISTRY_WRITE_TIMEOUT",
];

// ---------------------------------------------------------------------------
// Options

#[derive(Debug, Clone)]
struct Opts {
    only: BTreeSet<String>,
    nodes: Vec<usize>,
    json: bool,
    /// Measured window of the throughput sections, after `warmup`.
    duration: Duration,
    warmup: Duration,
    clients: usize,
    /// Overrides the per-N mesh timeout.
    mesh_timeout: Option<Duration>,
    /// Extra environment for the mesh's nodes, for experiments (`--node-env RUST_LOG=...`).
    node_env: Vec<(String, String)>,
    /// Sizes of the `local` section's meshes.
    local_nodes: Vec<usize>,
}

const USAGE: &str = "usage: bench [--only heartbeat,register,memory,mesh,multicast,launcher,local] \
[--nodes 10,100,200,1000] [--local-nodes 10,100,1000] [--duration SECS] [--clients N] \
[--mesh-timeout SECS] [--node-env KEY=VALUE]... [--json]";

fn parse_args() -> anyhow::Result<Opts> {
    let mut opts = Opts {
        only: SECTIONS.iter().map(|s| s.to_string()).collect(),
        nodes: vec![10, 100, 200, 1000],
        json: false,
        duration: Duration::from_secs(3),
        warmup: Duration::from_millis(500),
        clients: 64,
        mesh_timeout: None,
        node_env: Vec::new(),
        local_nodes: Vec::new(),
    };
    let mut local_nodes = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--only" => {
                let names: BTreeSet<String> = value("--only")?.split(',').map(|s| s.trim().to_owned()).collect();
                if let Some(bad) = names.iter().find(|n| !SECTIONS.contains(&n.as_str())) {
                    bail!("unknown section `{bad}`; expected one of {}", SECTIONS.join(", "));
                }
                opts.only = names;
            }
            "--nodes" => opts.nodes = node_counts("--nodes", &value("--nodes")?)?,
            "--local-nodes" => local_nodes = Some(node_counts("--local-nodes", &value("--local-nodes")?)?),
            "--duration" => opts.duration = secs(&value("--duration")?)?,
            "--mesh-timeout" => opts.mesh_timeout = Some(secs(&value("--mesh-timeout")?)?),
            "--clients" => {
                opts.clients = match value("--clients")?.parse() {
                    Ok(n @ 1..=1000) => n,
                    _ => bail!("--clients must be 1 to 1000"),
                }
            }
            "--json" => opts.json = true,
            "--node-env" => {
                let pair = value("--node-env")?;
                let (key, val) = pair.split_once('=').context("--node-env takes KEY=VALUE")?;
                opts.node_env.push((key.to_owned(), val.to_owned()));
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}`\n{USAGE}"),
        }
    }
    // 1000 local nodes take minutes: only when asked for, here or through --nodes.
    opts.local_nodes = local_nodes.unwrap_or_else(|| {
        let mut sizes = vec![10, 100];
        sizes.extend(opts.nodes.iter().copied().filter(|&n| n == 1000));
        sizes
    });
    Ok(opts)
}

fn node_counts(flag: &str, text: &str) -> anyhow::Result<Vec<usize>> {
    text.split(',')
        .map(|n| match n.trim().parse::<usize>() {
            Ok(n @ 2..=10_000) => Ok(n),
            _ => bail!("{flag}: `{n}` isn't a node count from 2 to 10000"),
        })
        .collect()
}

fn secs(text: &str) -> anyhow::Result<Duration> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s < 3600.0 => Ok(Duration::from_secs_f64(s)),
        _ => bail!("`{text}` isn't a number of seconds"),
    }
}

// ---------------------------------------------------------------------------
// Results

#[derive(Debug, Clone, Copy)]
enum Target {
    AtLeast(f64),
    AtMost(f64),
}

impl Target {
    fn met(self, value: f64) -> bool {
        match self {
            Target::AtLeast(t) => value >= t,
            Target::AtMost(t) => value <= t,
        }
    }
}

#[derive(Debug, Clone)]
struct Row {
    section: String,
    metric: String,
    value: Option<f64>,
    unit: &'static str,
    target: Option<Target>,
    note: String,
}

impl Row {
    fn result(&self) -> &'static str {
        match (self.target, self.value) {
            (None, _) => "",
            (Some(t), Some(v)) if t.met(v) => "PASS",
            (Some(_), _) => "MISS",
        }
    }
}

#[derive(Clone, Default)]
struct Rows(Arc<Mutex<Vec<Row>>>);

impl Rows {
    fn push(
        &self,
        section: &str,
        metric: impl Into<String>,
        value: Option<f64>,
        unit: &'static str,
        target: Option<Target>,
        note: impl Into<String>,
    ) {
        let row = Row { section: section.into(), metric: metric.into(), value, unit, target, note: note.into() };
        eprintln!(
            "  {} {}: {} {} {}",
            row.section,
            row.metric,
            row.value.map_or("n/a".into(), |v| fmt_value(v, unit)),
            row.unit,
            row.result()
        );
        self.0.lock().unwrap().push(row);
    }

    fn info(&self, section: &str, metric: impl Into<String>, value: f64, unit: &'static str, note: impl Into<String>) {
        self.push(section, metric, Some(value), unit, None, note);
    }

    fn error(&self, section: &str, metric: impl Into<String>, target: Option<Target>, error: impl Into<String>) {
        self.push(section, metric, None, "", target, error);
    }

    fn snapshot(&self) -> Vec<Row> {
        self.0.lock().unwrap().clone()
    }
}

fn fmt_value(value: f64, unit: &str) -> String {
    match unit {
        "ops/s" | "" => thousands(value.round() as u64),
        "ms" => format!("{value:.3}"),
        "s" => format!("{value:.3}"),
        "MiB" | "MB" => format!("{value:.2}"),
        "µs" => format!("{value:.0}"),
        "CPU s" => format!("{value:.2}"),
        _ => format!("{value}"),
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn fmt_target(target: Option<Target>, unit: &str) -> String {
    match target {
        None => String::new(),
        Some(Target::AtLeast(t)) => format!(">= {}", fmt_value(t, unit)),
        Some(Target::AtMost(t)) => format!("<= {}", fmt_value(t, unit)),
    }
}

fn table(rows: &[Row]) -> String {
    let header = ["section", "metric", "value", "unit", "target", "result", "notes"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.section.clone(),
                r.metric.clone(),
                match (r.value, r.unit) {
                    (_, "note") => String::new(),
                    (None, _) => "n/a".into(),
                    (Some(v), unit) => fmt_value(v, unit),
                },
                if r.unit == "note" { String::new() } else { r.unit.to_owned() },
                fmt_target(r.target, r.unit),
                r.result().to_owned(),
                r.note.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row).take(6) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cols: [&str; 7]| {
        let mut s = String::new();
        for (i, col) in cols.iter().enumerate() {
            if i == 6 {
                s.push_str(col);
            } else if i == 2 {
                s.push_str(&format!("{:>w$}  ", col, w = widths[i]));
            } else {
                s.push_str(&format!("{:<w$}  ", col, w = widths[i]));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header);
    out.push_str(&line(widths.map(|w| "-".repeat(w)).each_ref().map(String::as_str)));
    for row in &cells {
        out.push_str(&line(row.each_ref().map(String::as_str)));
    }
    out
}

fn to_json(rows: &[Row], elapsed: Duration, opts: &Opts) -> Value {
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            let target = r.target.map(|t| match t {
                Target::AtLeast(v) => json!({"at_least": v}),
                Target::AtMost(v) => json!({"at_most": v}),
            });
            json!({
                "section": r.section, "metric": r.metric, "value": r.value, "unit": r.unit,
                "target": target, "result": (!r.result().is_empty()).then(|| r.result()), "note": r.note,
            })
        })
        .collect();
    json!({
        "elapsed_s": elapsed.as_secs_f64(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "sections": opts.only, "nodes": opts.nodes, "local_nodes": opts.local_nodes,
        "rows": rows,
    })
}

// ---------------------------------------------------------------------------
// /proc

#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    rss_kb: u64,
    anon_kb: u64,
    file_kb: u64,
    hwm_kb: u64,
}

impl Memory {
    fn mib(&self) -> f64 {
        self.rss_kb as f64 / 1024.0
    }

    fn note(&self) -> String {
        format!(
            "VmRSS {} kB (anon {} kB, file {} kB), peak {} kB",
            self.rss_kb, self.anon_kb, self.file_kb, self.hwm_kb
        )
    }
}

fn memory(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Ok(Memory {
        rss_kb: field("VmRSS:"),
        anon_kb: field("RssAnon:"),
        file_kb: field("RssFile:"),
        hwm_kb: field("VmHWM:"),
    })
}

/// CPU time the live threads of a process have run, in seconds, from the
/// scheduler's nanosecond counters (`utime`/`stime` in `/proc/<pid>/stat` are
/// sampled at ticks and miss the short bursts a node runs in).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut nanos: u64 = 0;
    for task in tasks.flatten() {
        let schedstat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        nanos += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(nanos as f64 / 1e9)
}

/// System-wide TCP counters (`/proc/net/snmp`, `/proc/net/netstat`) that show
/// the kernel dropping or delaying connections. Other programs on the host move
/// them too.
const KERNEL_COUNTERS: [&str; 8] = [
    "ActiveOpens",
    "RetransSegs",
    "AttemptFails",
    "ListenOverflows",
    "SyncookiesSent",
    "TCPSynRetrans",
    "TCPTimeWaitOverflow",
    "TCPReqQFullDrop",
];

fn kernel_counters() -> Vec<(&'static str, i64)> {
    let mut found = Vec::new();
    for file in ["/proc/net/snmp", "/proc/net/netstat"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.chunks(2) {
            let [names, values] = pair else { continue };
            for (name, value) in names.split_whitespace().zip(values.split_whitespace()).skip(1) {
                if let Some(key) = KERNEL_COUNTERS.iter().find(|k| **k == name) {
                    if let Ok(value) = value.parse() {
                        found.push((*key, value));
                    }
                }
            }
        }
    }
    // Connection tracking: packets dropped because its table was full, and
    // entries evicted early to make room. One row per CPU, in hex.
    if let Ok(text) = std::fs::read_to_string("/proc/net/stat/nf_conntrack") {
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
        for (column, label) in [
            ("drop", "conntrack_drop"),
            ("early_drop", "conntrack_early_drop"),
            ("insert_failed", "conntrack_insert_failed"),
        ] {
            let Some(index) = header.iter().position(|h| *h == column) else {
                continue;
            };
            let sum: i64 = text
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(index))
                .filter_map(|v| i64::from_str_radix(v, 16).ok())
                .sum();
            found.push((label, sum));
        }
    }
    found
}

/// Counters that moved between two readings, as `name +delta`.
fn counter_deltas(before: &[(&'static str, i64)], after: &[(&'static str, i64)]) -> String {
    let mut moved = Vec::new();
    for (name, value) in after {
        let old = before.iter().find(|(n, _)| n == name).map_or(0, |(_, v)| *v);
        if *value != old {
            moved.push(format!("{name} +{}", value - old));
        }
    }
    if moved.is_empty() {
        "none moved".into()
    } else {
        moved.join(", ")
    }
}

/// Entries in the connection-tracking table and its size, when netfilter tracks connections.
fn conntrack() -> Option<(u64, u64)> {
    let read = |path: &str| std::fs::read_to_string(path).ok()?.trim().parse().ok();
    Some((read("/proc/sys/net/netfilter/nf_conntrack_count")?, read("/proc/sys/net/netfilter/nf_conntrack_max")?))
}

/// Sockets in TIME_WAIT, host-wide.
fn time_wait() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    while let Some(word) = words.next() {
        if word == "tw" {
            return words.next()?.parse().ok();
        }
    }
    None
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The soft limit on open files, and how many this process has open.
fn fd_budget() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.split_whitespace().nth(3)?.parse().ok()?;
    let open = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some((soft, open))
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}

// ---------------------------------------------------------------------------
// Lean child processes: no per-line JSON parsing.

fn command(binary: &Path, args: &[String]) -> Command {
    let mut command = Command::new(binary);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    for key in CONFIG_ENV {
        command.env_remove(key);
    }
    command
}

/// Keeps up to 2 KiB of what a child writes to stderr.
fn collect_stderr(stream: impl AsyncRead + Unpin + Send + 'static) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut kept = Vec::new();
        let mut buf = [0u8; 4096];
        let mut stream = stream;
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            let room = 2048usize.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        String::from_utf8_lossy(&kept).trim().to_owned()
    })
}

/// A registry whose log is read only for its address, then discarded.
struct LeanRegistry {
    child: Child,
    addr: SocketAddr,
    stderr: JoinHandle<String>,
}

impl LeanRegistry {
    async fn start(args: &[&str]) -> anyhow::Result<LeanRegistry> {
        let mut all: Vec<String> = vec!["--listen".into(), "127.0.0.1:0".into(), "--log-format".into(), "json".into()];
        all.extend(args.iter().map(|a| a.to_string()));
        let mut child = command(&tests::binary("registry"), &all).spawn().context("failed to start the registry")?;
        let stderr = collect_stderr(child.stderr.take().expect("piped"));
        let mut lines = BufReader::new(child.stdout.take().expect("piped"));
        let addr = timeout(START_TIMEOUT, async {
            let mut line = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    bail!("the registry exited before listening");
                }
                if line.contains("\"event\":\"listening\"") {
                    let value: Value = serde_json::from_str(&line)?;
                    let addr = value["addr"].as_str().context("`listening` has no addr")?;
                    return Ok::<SocketAddr, anyhow::Error>(addr.parse()?);
                }
            }
        })
        .await
        .context("the registry did not log `listening` in time")??;
        // Keep draining its log so that it never blocks on a full pipe.
        tokio::spawn(async move {
            let mut sink = vec![0u8; 64 * 1024];
            while let Ok(1..) = lines.read(&mut sink).await {}
        });
        Ok(LeanRegistry { child, addr, stderr })
    }

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = timeout(Duration::from_secs(5), self.child.wait()).await;
        self.stderr.abort();
    }
}

// ---------------------------------------------------------------------------
// Throughput: heartbeat and registration

enum Op {
    Heartbeat { id: String },
    Register { name: String, puerto: u16, contacts: usize },
}

struct Measured {
    latencies_ns: Vec<u64>,
    last_done: Instant,
}

async fn worker(
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
    Ok(Measured { latencies_ns, last_done })
}

/// Runs one worker per (client, op) and reports ops/s, p50 and p99.
async fn drive(
    section: &str,
    rows: &Rows,
    opts: &Opts,
    work: Vec<(Client, Op)>,
    target: Option<Target>,
) -> anyhow::Result<()> {
    let clients = work.len();
    let start = Instant::now() + Duration::from_millis(50);
    let warm_end = start + opts.warmup;
    let end = warm_end + opts.duration;
    let cpu_before = cpu_seconds("self");
    let tasks: Vec<_> =
        work.into_iter().map(|(client, op)| tokio::spawn(worker(client, op, start, warm_end, end))).collect();
    let mut all = Vec::new();
    let mut last_done = warm_end;
    for task in tasks {
        let measured = timeout(opts.warmup + opts.duration + CLIENT_TIMEOUT * 2, task)
            .await
            .context("a client did not finish in time")?
            .context("a client task panicked")??;
        all.extend(measured.latencies_ns);
        last_done = last_done.max(measured.last_done);
    }
    let window = (last_done - warm_end).as_secs_f64();
    let run = (last_done - start).as_secs_f64();
    let client_cpu = cpu_before.zip(cpu_seconds("self")).map(|(before, after)| after - before);
    all.sort_unstable();
    let ops = all.len() as f64 / window;
    let note = format!(
        "{} requests in {window:.2} s, {clients} clients, after {:.1} s warm-up",
        all.len(),
        opts.warmup.as_secs_f64()
    );
    rows.push(section, "throughput", Some(ops), "ops/s", target, note);
    rows.info(section, "latency p50", percentile(&all, 0.50) / 1e6, "ms", "");
    rows.info(
        section,
        "latency p99",
        percentile(&all, 0.99) / 1e6,
        "ms",
        format!("max {:.3} ms", percentile(&all, 1.0) / 1e6),
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

async fn connect_all(addr: &RegistryAddr, count: usize) -> anyhow::Result<Vec<Client>> {
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        clients.push(Client::connect(addr, CLIENT_TIMEOUT).await?);
    }
    Ok(clients)
}

/// Registers `count` entries `<prefix>-<i>` at 127.0.0.1:<first_port + i>, returning their ids.
async fn register_many(
    addr: &RegistryAddr,
    prefix: &str,
    first_port: u16,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let mut client = Client::connect(addr, CLIENT_TIMEOUT).await?;
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("{prefix}-{i}");
        let request = NativeRequest::Register {
            ip: Some(LOCALHOST),
            puerto: first_port + i as u16,
            name: &name,
            group: None,
            incarnation: None,
        };
        match client.register(&request).await? {
            Joined::Leased(registered) => ids.push(registered.id),
            Joined::Original(_) => bail!("the registry answered in the original dialect"),
        }
    }
    Ok(ids)
}

async fn bench_heartbeat(opts: &Opts, rows: &Rows) -> anyhow::Result<()> {
    let section = "heartbeat";
    let registry = Registry::start(&["--max-connections", "1024"]).await?;
    let addr = registry.registry_addr();
    let ids = register_many(&addr, "hb", 10_000, opts.clients).await?;
    let clients = connect_all(&addr, opts.clients).await?;
    let work = clients.into_iter().zip(ids).map(|(c, id)| (c, Op::Heartbeat { id })).collect();
    let pid = registry.process.pid().to_string();
    let (cpu_before, wall) = (cpu_seconds(&pid), Instant::now());
    let result = drive(section, rows, opts, work, Some(Target::AtLeast(50_000.0))).await;
    report_cpu(section, rows, &pid, cpu_before, wall);
    result
}

async fn bench_register(opts: &Opts, rows: &Rows) -> anyhow::Result<()> {
    const ENTRIES: usize = 100;
    let section = "register";
    // Not `Registry::start`: the registry logs every registration, and parsing
    // each line into a kept `serde_json::Value` would compete with the clients.
    let registry = LeanRegistry::start(&["--max-connections", "1024", "--ttl", "60s"]).await?;
    let addr = RegistryAddr::from(registry.addr);
    register_many(&addr, "reg", 20_000, ENTRIES).await?;
    let clients = connect_all(&addr, opts.clients).await?;
    let work = clients
        .into_iter()
        .enumerate()
        .map(|(j, c)| {
            let i = j % ENTRIES;
            (c, Op::Register { name: format!("reg-{i}"), puerto: 20_000 + i as u16, contacts: ENTRIES - 1 })
        })
        .collect();
    let pid = registry.pid().map(|p| p.to_string()).unwrap_or_default();
    let (cpu_before, wall) = (cpu_seconds(&pid), Instant::now());
    let result = drive(section, rows, opts, work, None).await;
    report_cpu(section, rows, &pid, cpu_before, wall);
    registry.stop().await;
    result
}

/// Reports the CPU time `pid` used since `before` was read at `since`.
fn report_cpu(section: &str, rows: &Rows, pid: &str, before: Option<f64>, since: Instant) {
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

// ---------------------------------------------------------------------------
// Memory

async fn bench_memory(rows: &Rows) -> anyhow::Result<()> {
    let section = "memory";
    {
        let registry = Registry::start(&["--ttl", "60s"]).await?;
        let node = Node::start(registry.addr, "idle-node", &[]).await?;
        node.process.wait_for_event(node::events::Event::Registered).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let pid = node.process.pid().as_raw() as u32;
        let mem = memory(pid)?;
        rows.push(section, "idle node RSS", Some(mem.mib()), "MiB", Some(Target::AtMost(4.0)), mem.note());
        if let Some(cpu) = cpu_seconds(&pid.to_string()) {
            rows.info(section, "idle node CPU", cpu * 1e3, "ms", "CPU time from exec to registered, plus 1 s idle");
        }
    }
    let registry = Registry::start(&["--ttl", "60s"]).await?;
    let pid = registry.process.pid().as_raw() as u32;
    let empty = memory(pid)?;
    rows.info(section, "empty registry RSS", empty.mib(), "MiB", empty.note());
    register_many(&registry.registry_addr(), "mem", 30_000, 1000).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let full = memory(pid)?;
    let live = registry.client().await?.list().await?.len();
    if live != 1000 {
        bail!("the registry holds {live} entries, not 1000");
    }
    rows.push(section, "registry RSS, 1000 entries", Some(full.mib()), "MiB", Some(Target::AtMost(20.0)), full.note());
    Ok(())
}

// ---------------------------------------------------------------------------
// Mesh

const EVENT: &str = "\"event\":\"";

/// Event counts across all nodes, updated by the readers of their logs.
#[derive(Default)]
struct Mesh {
    nodes: usize,
    pairs: usize,
    registered: AtomicUsize,
    received: AtomicUsize,
    sent: AtomicUsize,
    failed: AtomicUsize,
    unreachable: AtomicUsize,
    refused: AtomicUsize,
    exited: AtomicUsize,
    lines: AtomicUsize,
    all_registered: OnceLock<Instant>,
    meshed: OnceLock<Instant>,
    samples: Mutex<Vec<String>>,
}

impl Mesh {
    fn new(nodes: usize) -> Arc<Mesh> {
        Arc::new(Mesh { nodes, pairs: mesh_pairs(nodes), ..Mesh::default() })
    }

    /// Counts the events in `chunk`, which holds whole lines only.
    fn count(&self, chunk: &[u8]) {
        let text = String::from_utf8_lossy(chunk);
        let (mut registered, mut received, mut sent, mut failed, mut unreachable, mut refused) = (0, 0, 0, 0, 0, 0);
        for (at, _) in text.match_indices(EVENT) {
            let rest = &text.as_bytes()[at + EVENT.len()..];
            if rest.starts_with(b"greeting_received\"") {
                received += 1;
            } else if rest.starts_with(b"greeting_sent\"") {
                sent += 1;
            } else if rest.starts_with(b"registered\"") {
                registered += 1;
            } else if rest.starts_with(b"greeting_failed\"") {
                failed += 1;
                self.sample(&text, at);
            } else if rest.starts_with(b"registry_unreachable\"") {
                unreachable += 1;
                self.sample(&text, at);
            } else if rest.starts_with(b"registration_refused\"") {
                refused += 1;
                self.sample(&text, at);
            }
        }
        self.lines.fetch_add(chunk.iter().filter(|&&b| b == b'\n').count(), Ordering::Relaxed);
        bump(&self.registered, registered, self.nodes, &self.all_registered);
        bump(&self.received, received, self.pairs, &self.meshed);
        self.sent.fetch_add(sent, Ordering::Relaxed);
        self.failed.fetch_add(failed, Ordering::Relaxed);
        self.unreachable.fetch_add(unreachable, Ordering::Relaxed);
        self.refused.fetch_add(refused, Ordering::Relaxed);
    }

    fn sample(&self, text: &str, at: usize) {
        let mut samples = self.samples.lock().unwrap();
        if samples.len() < 5 {
            let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            samples.push(text[start..end].to_owned());
        }
    }

    fn status(&self) -> String {
        format!(
            "registered {}/{}, greetings received {}/{}, sent {}, failed {}, registry unreachable {}, exited {}",
            self.registered.load(Ordering::Relaxed),
            self.nodes,
            self.received.load(Ordering::Relaxed),
            self.pairs,
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.unreachable.load(Ordering::Relaxed),
            self.exited.load(Ordering::Relaxed),
        )
    }
}

/// Adds `by` to `counter`, and records the instant it first reaches `target`.
fn bump(counter: &AtomicUsize, by: usize, target: usize, reached: &OnceLock<Instant>) {
    if by == 0 {
        return;
    }
    let before = counter.fetch_add(by, Ordering::Relaxed);
    if before < target && before + by >= target {
        let _ = reached.set(Instant::now());
    }
}

/// Reads a node's log in large chunks and counts its events line-aligned.
async fn read_events(mut stdout: impl AsyncRead + Unpin, mesh: Arc<Mesh>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match stdout.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
        let Some(last) = buf[..filled].iter().rposition(|&b| b == b'\n') else {
            continue;
        };
        mesh.count(&buf[..=last]);
        buf.copy_within(last + 1..filled, 0);
        filled -= last + 1;
    }
    mesh.exited.fetch_add(1, Ordering::Relaxed);
}

struct Spawned {
    children: Vec<Child>,
    readers: Vec<JoinHandle<()>>,
    stderr: Vec<JoinHandle<String>>,
}

impl Spawned {
    fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.children.iter().filter_map(|c| c.id())
    }

    /// CPU time of all the nodes, in seconds.
    fn cpu_seconds(&self) -> f64 {
        self.pids().filter_map(|pid| cpu_seconds(&pid.to_string())).sum()
    }

    /// The pid of node `name` (`node-<i>`, the `i`th spawned).
    fn pid_of(&self, name: &str) -> Option<u32> {
        let i: usize = name.strip_prefix("node-")?.parse().ok()?;
        self.children.get(i.checked_sub(1)?)?.id()
    }

    /// Kills every child and waits for all of them, boundedly. Returns what
    /// the first few children that wrote to stderr wrote.
    async fn kill_all(mut self) -> Vec<String> {
        for child in &mut self.children {
            let _ = child.start_kill();
        }
        let _ = timeout(Duration::from_secs(20), async {
            for child in &mut self.children {
                let _ = child.wait().await;
            }
        })
        .await;
        let _ = timeout(Duration::from_secs(5), futures::future::join_all(self.readers.iter_mut())).await;
        for reader in &self.readers {
            reader.abort();
        }
        let mut said = Vec::new();
        let _ = timeout(Duration::from_secs(5), async {
            for (i, stderr) in self.stderr.iter_mut().enumerate() {
                match stderr.await {
                    Ok(text) if !text.is_empty() && said.len() < 3 => said.push(format!("node-{}: {text}", i + 1)),
                    _ => {}
                }
            }
        })
        .await;
        for stderr in &self.stderr {
            stderr.abort();
        }
        said
    }
}

fn mesh_pairs(nodes: usize) -> usize {
    nodes * (nodes - 1) / 2
}

/// How long `nodes` nodes may take to mesh.
fn mesh_limit(opts: &Opts, nodes: usize) -> Duration {
    opts.mesh_timeout.unwrap_or(Duration::from_secs(15) + Duration::from_millis(75) * nodes as u32)
}

/// Spawns `mesh.nodes` nodes named `node-1`, `node-2`, ... that register
/// with `registry`, counting their events into `mesh`. Stops at the first
/// node that fails to spawn, and says so.
async fn spawn_nodes(
    opts: &Opts,
    node_bin: &Path,
    registry: SocketAddr,
    mesh: &Arc<Mesh>,
) -> (Spawned, Option<String>) {
    let (host, port) = (registry.ip().to_string(), registry.port().to_string());
    let mut spawned = Spawned { children: Vec::with_capacity(mesh.nodes), readers: Vec::new(), stderr: Vec::new() };
    for i in 1..=mesh.nodes {
        let args = [&host, &port, "--listen", "127.0.0.1:0", "--name", &format!("node-{i}"), "--log-format", "json"]
            .map(String::from);
        let mut command = command(node_bin, &args);
        command.envs(opts.node_env.iter().map(|(k, v)| (k, v)));
        match command.spawn() {
            Ok(mut child) => {
                spawned.readers.push(tokio::spawn(read_events(child.stdout.take().expect("piped"), mesh.clone())));
                spawned.stderr.push(collect_stderr(child.stderr.take().expect("piped")));
                spawned.children.push(child);
            }
            Err(error) => {
                return (spawned, Some(format!("spawning node-{i} failed after {} nodes: {error}", i - 1)));
            }
        }
        if i % 32 == 0 {
            tokio::task::yield_now().await;
        }
    }
    (spawned, None)
}

async fn bench_mesh(opts: &Opts, rows: &Rows, nodes: usize, node_bin: &Path) -> anyhow::Result<()> {
    let section = format!("mesh N={nodes}");
    let section = section.as_str();
    let target = match nodes {
        200 => Some(Target::AtMost(1.5)),
        1000 => Some(Target::AtMost(30.0)),
        _ => None,
    };
    // Each node costs this process a stdout pipe, a stderr pipe and a pidfd.
    if let Some((soft, open)) = fd_budget() {
        let need = 3 * nodes as u64 + 64;
        if open + need > soft {
            rows.error(
                section,
                "full mesh",
                target,
                format!("would need ~{need} file descriptors; the soft limit is {soft} with {open} open (ulimit -n)"),
            );
            return Ok(());
        }
    }
    let registry = LeanRegistry::start(&["--ttl", "60s", "--max-connections", "1024"]).await?;
    let pairs = mesh_pairs(nodes);
    let mesh = Mesh::new(nodes);

    let bench_cpu_before = cpu_seconds("self");
    let counters_before = kernel_counters();
    let load_before = loadavg();
    let mut conntrack_peak = conntrack();
    let mut time_wait_peak = time_wait().unwrap_or(0);
    let t0 = Instant::now();
    let (spawned, spawn_error) = spawn_nodes(opts, node_bin, registry.addr, &mesh).await;
    let spawn_time = t0.elapsed();
    eprintln!("  {section}: spawned {} nodes in {:.3} s", spawned.children.len(), spawn_time.as_secs_f64());

    let limit = mesh_limit(opts, nodes);
    let mut outcome = String::new();
    if spawn_error.is_none() {
        let deadline = t0 + limit;
        let mut concluded: Option<Instant> = None;
        let mut progress = (0, Instant::now());
        let mut next_report = Instant::now() + Duration::from_secs(2);
        let mut next_sample = Instant::now();
        loop {
            if mesh.meshed.get().is_some() {
                break;
            }
            let now = Instant::now();
            let received = mesh.received.load(Ordering::Relaxed);
            let failed = mesh.failed.load(Ordering::Relaxed);
            if mesh.exited.load(Ordering::Relaxed) > 0 {
                outcome = format!("{} node(s) exited", mesh.exited.load(Ordering::Relaxed));
                break;
            }
            if received + failed >= pairs {
                // Every greeting is over, some of them failed: give stragglers a moment.
                let since = *concluded.get_or_insert(now);
                if now - since > Duration::from_secs(1) {
                    outcome = "every greeting ended, some failed".into();
                    break;
                }
            }
            if received != progress.0 {
                progress = (received, now);
            } else if now - progress.1 > Duration::from_secs(20) {
                outcome = "no greeting received for 20 s".into();
                break;
            }
            if now >= deadline {
                outcome = format!("timed out after {:.0} s", limit.as_secs_f64());
                break;
            }
            if now >= next_sample {
                if let (Some((count, max)), Some((peak, _))) = (conntrack(), conntrack_peak) {
                    conntrack_peak = Some((count.max(peak), max));
                }
                time_wait_peak = time_wait_peak.max(time_wait().unwrap_or(0));
                next_sample = now + Duration::from_millis(500);
            }
            if now >= next_report {
                eprintln!("  {section}: t={:.1}s {}", (now - t0).as_secs_f64(), mesh.status());
                next_report = now + Duration::from_secs(2);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    // Figures taken while everything still runs.
    let mut node_rss: Vec<u64> = spawned.pids().filter_map(|pid| memory(pid).ok()).map(|m| m.rss_kb).collect();
    node_rss.sort_unstable();
    let node_cpu = spawned.cpu_seconds();
    let registry_cpu = registry.pid().and_then(|pid| cpu_seconds(&pid.to_string()));
    let registry_mem = registry.pid().and_then(|pid| memory(pid).ok());
    let bench_cpu = bench_cpu_before.zip(cpu_seconds("self")).map(|(before, after)| after - before);
    if let (Some((count, max)), Some((peak, _))) = (conntrack(), conntrack_peak) {
        conntrack_peak = Some((count.max(peak), max));
    }
    time_wait_peak = time_wait_peak.max(time_wait().unwrap_or(0));
    let counters = counter_deltas(&counters_before, &kernel_counters());
    let wall = t0.elapsed().as_secs_f64();

    let stderr_samples = spawned.kill_all().await;
    registry.stop().await;

    match mesh.all_registered.get() {
        Some(at) => rows.info(
            section,
            "all registered",
            (*at - t0).as_secs_f64(),
            "s",
            format!("spawning {nodes} took {:.3} s", spawn_time.as_secs_f64()),
        ),
        None => rows.error(
            section,
            "all registered",
            None,
            format!("{}/{nodes} registered", mesh.registered.load(Ordering::Relaxed)),
        ),
    }
    let failures = mesh.failed.load(Ordering::Relaxed);
    let counts = format!(
        "{} greetings received, {} sent, {failures} greeting_failed, {} registry_unreachable, {} registration_refused, {} log lines",
        mesh.received.load(Ordering::Relaxed),
        mesh.sent.load(Ordering::Relaxed),
        mesh.unreachable.load(Ordering::Relaxed),
        mesh.refused.load(Ordering::Relaxed),
        mesh.lines.load(Ordering::Relaxed),
    );
    match (mesh.meshed.get(), spawn_error) {
        (Some(at), _) => rows.push(section, "full mesh", Some((*at - t0).as_secs_f64()), "s", target, counts),
        (None, Some(error)) => rows.error(section, "full mesh", target, format!("LIMIT: {error}; {counts}")),
        (None, None) => rows.error(
            section,
            "full mesh",
            target,
            format!(
                "incomplete after {wall:.1} s ({outcome}): {:.1}% of the pairs greeted; {counts}",
                100.0 * mesh.received.load(Ordering::Relaxed) as f64 / pairs as f64
            ),
        ),
    }
    rows.info(section, "greeting_failed", failures as f64, "", "");
    for sample in mesh.samples.lock().unwrap().iter() {
        eprintln!("  {section}: sample: {sample}");
    }
    for said in &stderr_samples {
        eprintln!("  {section}: stderr of {said}");
    }
    if !node_rss.is_empty() {
        let median = node_rss[node_rss.len() / 2];
        let max = node_rss[node_rss.len() - 1];
        rows.info(
            section,
            "node RSS median",
            median as f64 / 1024.0,
            "MiB",
            format!("max {max} kB, sum {:.0} MiB", node_rss.iter().sum::<u64>() as f64 / 1024.0),
        );
    }
    rows.info(section, "nodes CPU", node_cpu, "CPU s", format!("over {wall:.2} s of wall time on {} cores", cores()));
    rows.info(
        section,
        "nodes CPU per greeting",
        node_cpu * 1e6 / pairs as f64,
        "µs",
        "all node CPU (start-up included) / N(N-1)/2",
    );
    if let Some(cpu) = registry_cpu {
        rows.info(
            section,
            "registry CPU",
            cpu,
            "CPU s",
            registry_mem.map(|m| format!("registry {}", m.note())).unwrap_or_default(),
        );
    }
    if let Some(cpu) = bench_cpu {
        rows.info(section, "bench CPU", cpu, "CPU s", "spawning the nodes and reading their logs");
    }
    rows.push(
        section,
        "kernel TCP counters",
        None,
        "note",
        None,
        format!("host-wide deltas: {counters}; load average before: {load_before}"),
    );
    if let Some((peak, max)) = conntrack_peak {
        let full = if peak * 100 >= max * 95 {
            " -- TABLE FULL: netfilter drops new connections (SYNs) until entries expire"
        } else {
            ""
        };
        rows.info(
            section,
            "conntrack peak entries",
            peak as f64,
            "",
            format!("nf_conntrack_max {max}; sampled every 0.5 s{full}"),
        );
    }
    rows.info(section, "TIME_WAIT peak sockets", time_wait_peak as f64, "", "host-wide, sampled every 0.5 s");
    Ok(())
}

// ---------------------------------------------------------------------------
// Multicast

/// Group sizes, and how many multicasts are timed for each.
const MULTICASTS: [(usize, usize); 2] = [(10, 200), (100, 100)];
/// Untimed multicasts first, so that connections and caches are warm.
const MULTICAST_WARMUP: usize = 5;
/// The sender's deadlines: longer than the coordinator's per-member deadline
/// (the nodes' `--ack-timeout`, 5 s), as `group::send` requires.
const MULTICAST_DEADLINES: Deadlines = Deadlines { connect: Duration::from_secs(2), reply: Duration::from_secs(10) };
/// Bounds one `group::send`, lookup included.
const MULTICAST_PATIENCE: Duration = Duration::from_secs(30);

/// Latency of `sends` sequential multicasts to a group of `members` nodes, all
/// in group 1, from the call to `group::send` until its report.
async fn bench_multicast(
    opts: &Opts,
    rows: &Rows,
    section: &str,
    members: usize,
    sends: usize,
    node_bin: &Path,
) -> anyhow::Result<()> {
    let registry = LeanRegistry::start(&["--ttl", "60s", "--max-connections", "1024", "--groups", "1"]).await?;
    let mesh = Mesh::new(members);
    let t0 = Instant::now();
    let (spawned, spawn_error) = spawn_nodes(opts, node_bin, registry.addr, &mesh).await;
    let result = match spawn_error {
        Some(error) => Err(anyhow::anyhow!(error)),
        None => {
            let addr = RegistryAddr::from(registry.addr);
            async {
                group_ready(opts, rows, section, &mesh, t0).await?;
                multicasts(rows, section, &addr, members, sends, &spawned).await
            }
            .await
        }
    };
    for said in spawned.kill_all().await {
        eprintln!("  {section}: stderr of {said}");
    }
    registry.stop().await;
    result
}

/// Waits until every node has registered, and the pairwise greetings are
/// over so that they do not compete with the multicasts.
async fn group_ready(opts: &Opts, rows: &Rows, section: &str, mesh: &Mesh, t0: Instant) -> anyhow::Result<()> {
    let members = mesh.nodes;
    let limit = mesh_limit(opts, members);
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

/// Times `sends` multicasts, one at a time, to the `members` nodes of group 1.
async fn multicasts(
    rows: &Rows,
    section: &str,
    addr: &RegistryAddr,
    members: usize,
    sends: usize,
    nodes: &Spawned,
) -> anyhow::Result<()> {
    let mut coordinator = String::new();
    for i in 0..MULTICAST_WARMUP {
        coordinator = multicast(addr, &format!("warm-up {i}"), members).await?;
    }
    let coordinator_pid = nodes.pid_of(&coordinator).map(|pid| pid.to_string());
    let cpu = || {
        let coordinating = coordinator_pid.as_deref().and_then(cpu_seconds);
        (nodes.cpu_seconds(), coordinating)
    };
    let (cpu_before, nodes_cpu_before) = (cpu_seconds("self"), cpu());
    let started = Instant::now();
    let mut latencies_ns = Vec::with_capacity(sends);
    let mut failures = Vec::new();
    for i in 0..sends {
        let sent = Instant::now();
        match multicast(addr, &format!("bench {i}"), members).await {
            Ok(_) => latencies_ns.push(sent.elapsed().as_nanos() as u64),
            Err(error) => failures.push(format!("{error:#}")),
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let nodes_cpu_after = cpu();
    let nodes_cpu_used = nodes_cpu_after.0 - nodes_cpu_before.0;
    let coordinator_cpu = nodes_cpu_before.1.zip(nodes_cpu_after.1).map(|(b, a)| a - b);
    latencies_ns.sort_unstable();

    let target = (members == 100).then_some(Target::AtMost(5.0));
    let over = format!(
        "over {} complete multicasts of {sends}, one at a time, after {MULTICAST_WARMUP} warm-up",
        latencies_ns.len()
    );
    let ms = |p| (!latencies_ns.is_empty()).then(|| percentile(&latencies_ns, p) / 1e6);
    rows.push(section, "latency p50", ms(0.50), "ms", target, over);
    rows.push(section, "latency p99", ms(0.99), "ms", None, "");
    rows.push(section, "latency max", ms(1.0), "ms", None, "");
    rows.push(
        section,
        "failed or incomplete",
        Some(failures.len() as f64),
        "",
        Some(Target::AtMost(0.0)),
        failures.first().map(|f| format!("first: {f}")).unwrap_or_default(),
    );
    if let Some(used) = cpu_before.zip(cpu_seconds("self")).map(|(before, after)| after - before) {
        rows.info(
            section,
            "bench sender CPU",
            used,
            "CPU s",
            format!("{:.0}% of one core over {wall:.2} s", 100.0 * used / wall),
        );
    }
    rows.info(
        section,
        "nodes CPU per multicast",
        nodes_cpu_used * 1e3 / sends as f64,
        "ms",
        format!(
            "{:.0} µs per member; {:.0}% of the {} cores over {wall:.2} s",
            nodes_cpu_used * 1e6 / (sends * members) as f64,
            100.0 * nodes_cpu_used / wall / cores() as f64,
            cores()
        ),
    );
    rows.push(
        section,
        "coordinator CPU per multicast",
        coordinator_cpu.map(|used| used * 1e3 / sends as f64),
        "ms",
        None,
        format!("{coordinator}, included in the nodes' CPU"),
    );
    let lookups = group_lookups(addr, 50).await?;
    rows.info(
        section,
        "group lookup p50",
        percentile(&lookups, 0.5) / 1e6,
        "ms",
        "connect to the registry and ask for group 1; sender and coordinator each do one",
    );
    Ok(())
}

/// Latencies of `count` registry group lookups, each on a new connection as `group::send` makes them, sorted.
async fn group_lookups(registry: &RegistryAddr, count: usize) -> anyhow::Result<Vec<u64>> {
    let mut latencies_ns = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        Client::connect(registry, CLIENT_TIMEOUT).await?.group(1).await?;
        latencies_ns.push(started.elapsed().as_nanos() as u64);
    }
    latencies_ns.sort_unstable();
    Ok(latencies_ns)
}

/// One multicast to group 1: an error unless all `members` acknowledged;
/// returns the coordinator's name.
async fn multicast(registry: &RegistryAddr, text: &str, members: usize) -> anyhow::Result<String> {
    let send = node::group::send(registry, 1, text, "bench", MULTICAST_DEADLINES);
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

/// Waits until `mark` is set; false if `deadline` passes or a node exits first.
async fn reached(mesh: &Mesh, mark: &OnceLock<Instant>, deadline: Instant) -> bool {
    while mark.get().is_none() {
        if mesh.exited.load(Ordering::Relaxed) > 0 || Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

// ---------------------------------------------------------------------------
// Launcher: `launcher up --detach`, in Docker and as local processes

/// The Docker project the bench's meshes run in.
const PROJECT: &str = "hit6-bench";
/// Host ports of the bench's project, away from the launcher's defaults
/// (8086-8095) that other runs on this host may hold.
const PROJECT_PORTS: [&str; 4] = ["--registry-port", "18386", "--port-range", "18387-18395"];
const LAUNCHER_SIZES: [usize; 2] = [5, 9];
const LAUNCHER_RUNS: usize = 3;
/// `--timeout` of the local meshes.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(120);
/// Beyond its own `--timeout`, what a launcher may take to build, tear down and exit.
const LAUNCHER_SLACK: Duration = Duration::from_secs(60);
const BUILD_PATIENCE: Duration = Duration::from_secs(10 * 60);
/// Environment the launcher reads settings from.
const LAUNCHER_ENV: [&str; 3] = ["LAUNCHER_PROJECT", "LAUNCHER_REGISTRY_IMAGE", "LAUNCHER_NODE_IMAGE"];

/// A finished launcher: exit code, wall time from spawn to exit, and output.
struct Finished {
    code: Option<i32>,
    wall: Duration,
    stdout: String,
    stderr: String,
}

impl Finished {
    /// The `--json` summary `up` prints once the mesh is complete.
    fn summary(&self) -> Option<Value> {
        self.stdout
            .lines()
            .rev()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|value| value.get("elapsed_ms").is_some())
    }

    fn elapsed(&self) -> Option<Duration> {
        let ms = self.summary()?.get("elapsed_ms")?.as_u64()?;
        Some(Duration::from_millis(ms))
    }

    /// Exit 0 with a summary saying so.
    fn complete(&self) -> bool {
        self.code == Some(0) && self.summary().is_some_and(|s| s["complete"] == true)
    }

    fn describe(&self) -> String {
        let code = self.code.map_or("killed".into(), |c| format!("exit {c}"));
        let wall = self.wall.as_secs_f64();
        match self.elapsed() {
            Some(elapsed) => format!("{code}, {:.3}/{wall:.3} s", elapsed.as_secs_f64()),
            None => {
                let last = self.stderr.lines().last().unwrap_or_default();
                let last: String = last.chars().take(300).collect();
                format!("{code} after {wall:.3} s: {last}")
            }
        }
    }
}

/// Kills a process group when dropped: a launcher and every process it started.
struct GroupGuard(Pid);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let _ = killpg(self.0, Signal::SIGKILL);
    }
}

/// Runs the launcher with `args` in a process group of its own, which is
/// killed whole after `limit` or when this future is dropped (Ctrl-C).
async fn launcher(args: &[&str], limit: Duration) -> anyhow::Result<Finished> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let mut command = command(&tests::binary("launcher"), &args);
    command.process_group(0);
    for key in LAUNCHER_ENV {
        command.env_remove(key);
    }
    let started = Instant::now();
    let mut child = command.spawn().context("failed to start the launcher")?;
    let group = GroupGuard(Pid::from_raw(child.id().context("the launcher has a pid")? as i32));
    let stdout = read_all(child.stdout.take().expect("piped"));
    let stderr = read_all(child.stderr.take().expect("piped"));
    let status = timeout(limit, child.wait())
        .await
        .with_context(|| format!("launcher {} did not exit within {limit:?}", args.join(" ")))??;
    let wall = started.elapsed();
    // Anything of its group still running was left behind (local nodes hold its stderr).
    drop(group);
    Ok(Finished { code: status.code(), wall, stdout: text_of(stdout).await, stderr: text_of(stderr).await })
}

fn read_all(mut stream: impl AsyncRead + Unpin + Send + 'static) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text).await;
        text
    })
}

/// What `read_all` read, once the stream has ended (boundedly).
async fn text_of(reader: JoinHandle<String>) -> String {
    match timeout(Duration::from_secs(5), reader).await {
        Ok(Ok(text)) => text,
        _ => String::new(),
    }
}

/// Why no Docker daemon answers, if none does.
fn no_docker() -> Option<String> {
    let version = std::process::Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).output();
    match version {
        Ok(output) if output.status.success() => None,
        Ok(output) => Some(tests::docker::text(&output).trim().to_owned()),
        Err(error) => Some(format!("cannot run the docker CLI: {error}")),
    }
}

async fn bench_launcher(rows: &Rows) -> anyhow::Result<()> {
    let section = "launcher";
    if let Some(why) = no_docker() {
        rows.push(section, "skipped: no Docker daemon", None, "note", None, why);
        return Ok(());
    }
    // Removes the project's containers and network however this ends.
    let _guard = tests::docker::ProjectGuard(PROJECT.into());
    down().await?;
    eprintln!("  {section}: building the images (not timed)");
    let build = launcher(&["-p", PROJECT, "build"], BUILD_PATIENCE).await?;
    if build.code != Some(0) {
        bail!("launcher build failed: {}", build.describe());
    }
    eprintln!("  {section}: built in {:.1} s", build.wall.as_secs_f64());
    image_sizes(rows, section);
    for nodes in LAUNCHER_SIZES {
        let n = nodes.to_string();
        let mut args = vec!["-p", PROJECT, "up", "--nodes", &n, "--detach", "--quiet", "--json"];
        args.extend(PROJECT_PORTS);
        let limit = Duration::from_secs(60) + LAUNCHER_SLACK;
        let mut runs = Vec::new();
        for run in 1..=LAUNCHER_RUNS {
            let up = launcher(&args, limit).await;
            // Down after every run, whatever the run did.
            down().await?;
            let up = up?;
            eprintln!("  {section} N={nodes}: run {run}: {}", up.describe());
            runs.push(up);
        }
        let target = (nodes == 5).then_some(Target::AtMost(5.0));
        report_runs(rows, &format!("{section} N={nodes}"), &runs, target);
    }
    Ok(())
}

/// `launcher -p hit6-bench down`.
async fn down() -> anyhow::Result<()> {
    let down = launcher(&["-p", PROJECT, "down"], LAUNCHER_SLACK).await?;
    if down.code != Some(0) {
        bail!("launcher down failed: {}", down.describe());
    }
    Ok(())
}

fn image_sizes(rows: &Rows, section: &str) {
    for service in ["registry", "node"] {
        let image = format!("hit6-mesh/{service}:{}", env!("CARGO_PKG_VERSION"));
        let metric = format!("{service} image size");
        let target = Some(Target::AtMost(5.0));
        let inspect = tests::docker::docker(&["image", "inspect", "--format", "{{.Size}}", &image]);
        match String::from_utf8_lossy(&inspect.stdout).trim().parse::<u64>() {
            Ok(bytes) => rows.push(section, metric, Some(bytes as f64 / 1e6), "MB", target, image),
            Err(_) => rows.error(section, metric, target, tests::docker::text(&inspect).trim()),
        }
    }
}

/// `launcher up --runtime local` with `nodes` nodes.
async fn up_local(nodes: usize) -> anyhow::Result<Finished> {
    let n = nodes.to_string();
    let timeout = format!("{}s", LOCAL_TIMEOUT.as_secs());
    let args = ["up", "--runtime", "local", "--nodes", &n, "--detach", "--quiet", "--json", "--timeout", &timeout];
    launcher(&args, LOCAL_TIMEOUT + LAUNCHER_SLACK).await
}

/// An untimed run first: `up --runtime local` runs cargo to build the native
/// binaries, which takes long only when the sources changed.
async fn local_warmup() -> anyhow::Result<()> {
    let warmup = up_local(2).await?;
    eprintln!("  local: warm-up (not timed): {}", warmup.describe());
    if !warmup.complete() {
        bail!("{}", warmup.describe());
    }
    Ok(())
}

async fn bench_local(rows: &Rows, section: &str, nodes: usize) -> anyhow::Result<()> {
    let counters_before = kernel_counters();
    let (up, peaks) = with_peaks(up_local(nodes)).await;
    let up = up?;
    eprintln!("  {section}: {}", up.describe());
    report_runs(rows, section, &[up], None);
    let conntrack =
        peaks.conntrack.map_or(String::new(), |(peak, max)| format!("; conntrack peak {peak} of {max} entries"));
    rows.push(
        section,
        "kernel TCP counters",
        None,
        "note",
        None,
        format!(
            "host-wide deltas: {}{conntrack}; TIME_WAIT peak {}; sampled every 0.5 s",
            counter_deltas(&counters_before, &kernel_counters()),
            peaks.time_wait
        ),
    );
    Ok(())
}

/// Host-wide peaks: conntrack entries (with the table's size) and TIME_WAIT sockets.
struct Peaks {
    conntrack: Option<(u64, u64)>,
    time_wait: u64,
}

/// Runs `work`, sampling the [`Peaks`] every 0.5 s meanwhile.
async fn with_peaks<T>(work: impl Future<Output = T>) -> (T, Peaks) {
    let mut peaks = Peaks { conntrack: conntrack(), time_wait: time_wait().unwrap_or(0) };
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return (done, peaks),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if let (Some((count, max)), Some((peak, _))) = (conntrack(), peaks.conntrack) {
                    peaks.conntrack = Some((count.max(peak), max));
                }
                peaks.time_wait = peaks.time_wait.max(time_wait().unwrap_or(0));
            }
        }
    }
}

/// Median wall time (spawn to exit) and launcher-measured time (invocation to
/// complete mesh) of the runs that completed, and how many did not; with a
/// `target`, an incomplete run is a miss too.
fn report_runs(rows: &Rows, section: &str, runs: &[Finished], target: Option<Target>) {
    let complete: Vec<&Finished> = runs.iter().filter(|r| r.complete()).collect();
    let median = |times: Vec<Duration>| {
        let mut nanos: Vec<u64> = times.iter().map(|t| t.as_nanos() as u64).collect();
        nanos.sort_unstable();
        (!nanos.is_empty()).then(|| percentile(&nanos, 0.5) / 1e9)
    };
    let each: Vec<String> = runs.iter().map(Finished::describe).collect();
    let note = format!("median of {} complete run(s); each elapsed/wall: {}", complete.len(), each.join("; "));
    let walls = complete.iter().map(|r| r.wall).collect();
    rows.push(section, "up, wall to exit", median(walls), "s", target, note);
    let elapsed = complete.iter().filter_map(|r| r.elapsed()).collect();
    rows.push(
        section,
        "up, launcher elapsed",
        median(elapsed),
        "s",
        None,
        "elapsed_ms of its JSON summary: from its start to a complete mesh",
    );
    rows.push(
        section,
        "incomplete runs",
        Some((runs.len() - complete.len()) as f64),
        "",
        target.map(|_| Target::AtMost(0.0)),
        format!("of {} (exit 4: mesh incomplete after --timeout)", runs.len()),
    );
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

// ---------------------------------------------------------------------------

async fn run(opts: &Opts, rows: &Rows, node_bin: &Path) {
    let sections: Vec<&str> = SECTIONS.iter().copied().filter(|s| opts.only.contains(*s)).collect();
    for section in sections {
        let started = Instant::now();
        eprintln!("== {section}");
        let result = match section {
            "heartbeat" => bench_heartbeat(opts, rows).await,
            "register" => bench_register(opts, rows).await,
            "memory" => bench_memory(rows).await,
            "mesh" => {
                for &n in &opts.nodes {
                    let section = format!("mesh N={n}");
                    one_size(rows, &section, bench_mesh(opts, rows, n, node_bin)).await;
                }
                Ok(())
            }
            "multicast" => {
                for (members, sends) in MULTICASTS {
                    let section = format!("multicast N={members}");
                    let bench = bench_multicast(opts, rows, &section, members, sends, node_bin);
                    one_size(rows, &section, bench).await;
                }
                Ok(())
            }
            "launcher" => bench_launcher(rows).await,
            "local" => {
                if let Err(error) = local_warmup().await {
                    rows.error("local", "warm-up", None, format!("{error:#}"));
                }
                for &n in &opts.local_nodes {
                    let section = format!("local N={n}");
                    one_size(rows, &section, bench_local(rows, &section, n)).await;
                }
                Ok(())
            }
            _ => unreachable!("sections are validated"),
        };
        if let Err(error) = result {
            rows.error(section, "error", None, format!("{error:#}"));
        }
        eprintln!("   ({section} took {:.1} s)", started.elapsed().as_secs_f64());
    }
}

/// Runs one size of a section, recording its error under `section`, then
/// lets the killed processes' sockets go before the next size.
async fn one_size(rows: &Rows, section: &str, bench: impl Future<Output = anyhow::Result<()>>) {
    if let Err(error) = bench.await {
        rows.error(section, "error", None, format!("{error:#}"));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(opts) => opts,
        Err(error) => {
            eprintln!("bench: {error:#}");
            return ExitCode::from(2);
        }
    };
    // Builds the release binaries when run from target/release.
    let build = Instant::now();
    let node_bin: PathBuf = tests::binary("node");
    let _ = tests::binary("registry");
    eprintln!(
        "bench: {} ({} cores; build check took {:.1} s)",
        node_bin.display(),
        cores(),
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
            result = timeout(OVERALL_TIMEOUT, run(&opts, &rows, &node_bin)) => result.err().map(|_| format!("gave up after {OVERALL_TIMEOUT:?}")),
            _ = tokio::signal::ctrl_c() => Some("interrupted".to_owned()),
        }
    });
    // Dropping the runtime drops every child still held, which kills it.
    runtime.shutdown_timeout(Duration::from_secs(2));
    let elapsed = started.elapsed();

    let rows = rows.snapshot();
    let text = table(&rows);
    let summary = format!(
        "bench took {:.1} s{}\n",
        elapsed.as_secs_f64(),
        interrupted.as_deref().map(|why| format!(" ({why})")).unwrap_or_default()
    );
    if opts.json {
        eprint!("\n{text}{summary}");
        println!("{}", serde_json::to_string_pretty(&to_json(&rows, elapsed, &opts)).expect("JSON serializes"));
    } else {
        print!("\n{text}{summary}");
    }
    let missed = rows.iter().any(|r| r.result() == "MISS");
    if interrupted.is_some() || missed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
