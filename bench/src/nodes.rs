//! Many node processes at once, and the counts of the events in their logs,
//! read in large chunks with a byte scan rather than a JSON parse per line,
//! so that the reader keeps up with a thousand nodes.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use node::events::Event;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::cli::Cli;
use crate::probe::cpu_seconds;
use crate::spawn::{collect_stderr, command};

/// What starts the `event` field of a JSON log line.
const EVENT: &str = "\"event\":\"";
/// What starts the name of the peer in a `greeting_received` line.
const PEER_NAME: &str = "\"peer_name\":\"node-";

/// The events counted; the last three are failures, of which a few lines are kept as samples.
const COUNTED: [Event; 6] = [
    Event::GreetingReceived,
    Event::GreetingSent,
    Event::Registered,
    Event::GreetingFailed,
    Event::RegistryUnreachable,
    Event::RegistrationRefused,
];

/// Event counts across all nodes, updated by the readers of their logs.
#[derive(Default)]
pub(crate) struct Mesh {
    pub(crate) nodes: usize,
    pub(crate) pairs: usize,
    pub(crate) registered: AtomicUsize,
    pub(crate) received: AtomicUsize,
    pub(crate) sent: AtomicUsize,
    pub(crate) failed: AtomicUsize,
    pub(crate) unreachable: AtomicUsize,
    pub(crate) refused: AtomicUsize,
    pub(crate) exited: AtomicUsize,
    pub(crate) lines: AtomicUsize,
    pub(crate) all_registered: OnceLock<Instant>,
    pub(crate) meshed: OnceLock<Instant>,
    pub(crate) samples: Mutex<Vec<String>>,
    /// Pairs that have met, one bit per unordered pair of node numbers.
    met: Mutex<Vec<u64>>,
    /// CPU time the nodes had used when they registered, in ns: their start-up.
    pub(crate) startup_ns: AtomicU64,
    /// Distinct pairs that met, and greetings of a pair that had met already.
    pub(crate) distinct: AtomicUsize,
    pub(crate) duplicates: AtomicUsize,
}

/// Pairs that never met: the first few, and the nodes in the most of them.
pub(crate) struct NeverMet {
    pub(crate) pairs: Vec<(usize, usize)>,
    pub(crate) worst: Vec<(usize, usize)>,
}

/// One chunk's worth of counts.
#[derive(Default)]
pub(crate) struct Counts {
    pub(crate) registered: usize,
    pub(crate) received: usize,
    pub(crate) sent: usize,
    pub(crate) failed: usize,
    pub(crate) unreachable: usize,
    pub(crate) refused: usize,
}

impl Mesh {
    pub(crate) fn new(nodes: usize) -> Arc<Mesh> {
        let met = Mutex::new(vec![0; (nodes * nodes).div_ceil(64)]);
        Arc::new(Mesh { nodes, pairs: mesh_pairs(nodes), met, ..Mesh::default() })
    }

    /// Counts the events that node number `node` logged in `chunk`, which
    /// holds whole lines only; returns whether it registered in it.
    pub(crate) fn count(&self, node: usize, chunk: &[u8]) -> bool {
        let text = String::from_utf8_lossy(chunk);
        let mut counts = Counts::default();
        for (at, _) in text.match_indices(EVENT) {
            let line = &text[at + EVENT.len()..];
            let line = &line[..line.find('\n').unwrap_or(line.len())];
            let name = &line[..line.find('"').unwrap_or(0)];
            match COUNTED.iter().find(|event| event.as_str() == name) {
                Some(Event::GreetingReceived) => {
                    counts.received += 1;
                    self.met(node, line);
                }
                Some(Event::GreetingSent) => counts.sent += 1,
                Some(Event::Registered) => counts.registered += 1,
                Some(Event::GreetingFailed) => counts.failed += 1,
                Some(Event::RegistryUnreachable) => counts.unreachable += 1,
                Some(Event::RegistrationRefused) => counts.refused += 1,
                _ => continue,
            }
            if COUNTED[3..].iter().any(|event| event.as_str() == name) {
                self.sample(&text, at);
            }
        }
        let registered = counts.registered > 0;
        self.add(chunk, counts);
        registered
    }

    /// Adds the counts of `chunk`, whole lines only.
    pub(crate) fn add(&self, chunk: &[u8], counts: Counts) {
        self.lines.fetch_add(chunk.iter().filter(|&&b| b == b'\n').count(), Ordering::Relaxed);
        bump(&self.registered, counts.registered, self.nodes, &self.all_registered);
        bump(&self.received, counts.received, self.pairs, &self.meshed);
        self.sent.fetch_add(counts.sent, Ordering::Relaxed);
        self.failed.fetch_add(counts.failed, Ordering::Relaxed);
        self.unreachable.fetch_add(counts.unreachable, Ordering::Relaxed);
        self.refused.fetch_add(counts.refused, Ordering::Relaxed);
    }

    /// Marks the pair of `node` and the peer its `greeting_received` line
    /// names as met, counting it as a duplicate if it had met already.
    fn met(&self, node: usize, line: &str) {
        let Some(peer) = line.find(PEER_NAME).and_then(|at| {
            let digits = &line[at + PEER_NAME.len()..];
            digits[..digits.find('"')?].parse::<usize>().ok()
        }) else {
            return;
        };
        if peer == 0 || peer > self.nodes || peer == node {
            return;
        }
        let bit = node.min(peer) - 1 + (node.max(peer) - 1) * self.nodes;
        let first = {
            let mut met = wire::lock(&self.met);
            let word = &mut met[bit / 64];
            let first = *word & (1 << (bit % 64)) == 0;
            *word |= 1 << (bit % 64);
            first
        };
        self.tally(first);
    }

    /// Counts a pair meeting: for the `first` time, or again.
    pub(crate) fn tally(&self, first: bool) {
        let counter = if first { &self.distinct } else { &self.duplicates };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Greetings of a pair that had met already, and pairs that never met.
    pub(crate) fn duplicate_and_missing(&self) -> (usize, usize) {
        let distinct = self.distinct.load(Ordering::Relaxed);
        (self.duplicates.load(Ordering::Relaxed), self.pairs - distinct.min(self.pairs))
    }

    /// Up to `most` pairs of node numbers that never met, and the nodes
    /// that appear in the most of them, with how many.
    pub(crate) fn never_met(&self, most: usize) -> NeverMet {
        let met = wire::lock(&self.met);
        let mut pairs = Vec::new();
        let mut per_node = vec![0usize; self.nodes + 1];
        for high in 2..=self.nodes {
            for low in 1..high {
                let bit = low - 1 + (high - 1) * self.nodes;
                if met[bit / 64] & (1 << (bit % 64)) == 0 {
                    per_node[low] += 1;
                    per_node[high] += 1;
                    if pairs.len() < most {
                        pairs.push((low, high));
                    }
                }
            }
        }
        let mut worst: Vec<(usize, usize)> = per_node.into_iter().enumerate().filter(|(_, n)| *n > 0).collect();
        worst.sort_by_key(|(node, n)| (std::cmp::Reverse(*n), *node));
        worst.truncate(most);
        NeverMet { pairs, worst }
    }

    pub(crate) fn sample(&self, text: &str, at: usize) {
        let mut samples = wire::lock(&self.samples);
        if samples.len() < 5 {
            let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            samples.push(text[start..end].to_owned());
        }
    }

    /// The event counts, for notes.
    pub(crate) fn counts(&self) -> String {
        format!(
            "{} greetings received, {} sent, {} greeting_failed, {} registry_unreachable, {} registration_refused, {} log lines",
            self.received.load(Ordering::Relaxed),
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.unreachable.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.lines.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn status(&self) -> String {
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
pub(crate) fn bump(counter: &AtomicUsize, by: usize, target: usize, reached: &OnceLock<Instant>) {
    if by == 0 {
        return;
    }
    let before = counter.fetch_add(by, Ordering::Relaxed);
    if before < target && before + by >= target {
        let _ = reached.set(Instant::now());
    }
}

/// Reads the log of node number `node` (process `pid`) and counts its
/// events; reads its CPU time as it registers.
pub(crate) async fn read_events(stdout: impl AsyncRead + Unpin, node: usize, pid: Option<u32>, mesh: Arc<Mesh>) {
    read_lines(stdout, &mesh, |lines| {
        if mesh.count(node, lines) {
            let startup = pid.and_then(|pid| cpu_seconds(&pid.to_string())).unwrap_or(0.0);
            mesh.startup_ns.fetch_add((startup * 1e9) as u64, Ordering::Relaxed);
        }
    })
    .await;
}

/// Reads a log in large chunks and hands `count` whole lines only, as many
/// as have arrived; counts the process as exited once its log ends.
pub(crate) async fn read_lines(mut stdout: impl AsyncRead + Unpin, mesh: &Mesh, mut count: impl FnMut(&[u8])) {
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
        count(&buf[..=last]);
        buf.copy_within(last + 1..filled, 0);
        filled -= last + 1;
    }
    mesh.exited.fetch_add(1, Ordering::Relaxed);
}

pub(crate) struct Spawned {
    pub(crate) children: Vec<Child>,
    pub(crate) readers: Vec<JoinHandle<()>>,
    pub(crate) stderr: Vec<JoinHandle<String>>,
}

impl Spawned {
    pub(crate) fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.children.iter().filter_map(|c| c.id())
    }

    /// CPU time of all the nodes, in seconds.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        self.pids().filter_map(|pid| cpu_seconds(&pid.to_string())).sum()
    }

    /// The pid of node `name` (`node-<i>`, the `i`th spawned).
    pub(crate) fn pid_of(&self, name: &str) -> Option<u32> {
        let i: usize = name.strip_prefix("node-")?.parse().ok()?;
        self.children.get(i.checked_sub(1)?)?.id()
    }

    /// Kills every child and waits for all of them, boundedly. Returns what
    /// the first few children that wrote to stderr wrote.
    pub(crate) async fn kill_all(mut self) -> Vec<String> {
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

pub(crate) fn mesh_pairs(nodes: usize) -> usize {
    nodes * (nodes - 1) / 2
}

/// How long `nodes` nodes may take to mesh.
/// Connections from one address still proving themselves, for the
/// registry and nodes of a mesh on one host (see [`spawn_nodes`]).
pub(crate) const PENDING_PER_IP: &str = "4096";

pub(crate) fn mesh_limit(cli: &Cli, nodes: usize) -> Duration {
    cli.mesh_timeout.unwrap_or(Duration::from_secs(15) + Duration::from_millis(75) * nodes as u32)
}

/// Spawns `mesh.nodes` nodes named `node-1`, `node-2`, ... that register
/// with `registry`, counting their events into `mesh`. Given several
/// replicas, node `i` tries them from the `i`th on, so that the load spreads.
pub(crate) async fn spawn_nodes(
    cli: &Cli,
    node_bin: &Path,
    registry: &[SocketAddr],
    mesh: &Arc<Mesh>,
) -> (Spawned, Option<String>) {
    let registry_args = |i: usize| -> Vec<String> {
        match registry {
            [one] => vec![one.ip().to_string(), one.port().to_string()],
            many => {
                let rotated = many.iter().cycle().skip(i % many.len()).take(many.len());
                vec![rotated.map(ToString::to_string).collect::<Vec<_>>().join(",")]
            }
        }
    };
    let node_command = |i: usize| {
        let name = format!("node-{i}");
        // Every peer connects from 127.0.0.1 here, where on a network each
        // host has its own address: the per-address bound of pending
        // connections is raised to the whole mesh's, as for the registry.
        let args = ["--listen", "127.0.0.1:0", "--name", &name, "--log-format", "json"]
            .into_iter()
            .map(String::from)
            .chain(["--max-pending-per-ip".to_owned(), PENDING_PER_IP.to_owned()]);
        let args: Vec<String> = registry_args(i).into_iter().chain(args).collect();
        let mut command = command(node_bin, &args);
        command.envs(cli.node_env.iter().map(|(k, v)| (k, v)));
        command
    };
    spawn_each(mesh.nodes, node_command, |stdout, i, pid| read_events(stdout, i, pid, mesh.clone())).await
}

/// Spawns `count` processes back to back, the `i`th (from 1) from
/// `command(i)`, with `read(stdout, i, pid)` reading its log: every mesh the
/// bench times is started at this same pace. Stops at the first process
/// that fails to spawn, and says so.
pub(crate) async fn spawn_each<R>(
    count: usize,
    mut command: impl FnMut(usize) -> Command,
    mut read: impl FnMut(ChildStdout, usize, Option<u32>) -> R,
) -> (Spawned, Option<String>)
where
    R: Future<Output = ()> + Send + 'static,
{
    let mut spawned = Spawned { children: Vec::with_capacity(count), readers: Vec::new(), stderr: Vec::new() };
    for i in 1..=count {
        match command(i).spawn() {
            Ok(mut child) => {
                spawned.readers.push(tokio::spawn(read(child.stdout.take().expect("piped"), i, child.id())));
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

/// Waits until `mark` is set; false if `deadline` passes or a node exits first.
pub(crate) async fn reached(mesh: &Mesh, mark: &OnceLock<Instant>, deadline: Instant) -> bool {
    while mark.get().is_none() {
        if mesh.exited.load(Ordering::Relaxed) > 0 || Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}
