//! `hostile`: attacks a stranger can make on a registry in open mode (no
//! join token), each at full size next to an idle baseline: the registry's
//! resident memory before, at its peak and after, and the latency of
//! members' registrations and heartbeats meanwhile.
//!
//! - `unfinished`: 15,000 connections from four source addresses, each
//!   sends one request, then 65,000 bytes of a message it never finishes.
//! - `watchers`: 16,363 plaintext watches from one source address.
//! - `refusals`: 200,000 handshakes with a wrong join token from one
//!   address, against a registry with a token: the log lines they cost.
//! - `originals`: 1,024 original-dialect entries (the registry's bound)
//!   at listeners that accept and never answer, from 16 addresses, then a
//!   member: how long the next node takes to greet the member.
//! - `replays`: copies of a member's first handshake message (recorded on
//!   the path), sent as fast as 256 connections at once can, against a
//!   registry with a token. It runs last and gives the rest of the run a
//!   token if it had none (`hostile` is the last section).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use registry::client::{Client, RegistryAddr};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use wire::secure::{Admission, Identity, JoinToken, Keys, TOKEN_ENV};

use crate::probe::{memory, Memory};
use crate::report::{percentile, Rows, Target};
use crate::spawn::LeanRegistry;
use crate::throughput::{register_many, CLIENT_TIMEOUT};

const SECTION: &str = "hostile";

/// Members registered before an attack, each heartbeating once per measurement.
const MEMBERS: usize = 100;

/// Fresh registrations measured per measurement, each on a session of its own.
const REGISTRATIONS: usize = 20;

/// Connections opened at once by an attacker.
const OPENING: usize = 256;

/// The most an attack may take the registry's memory to, and what it must
/// come back under once the attack ends.
const PEAK_MIB: f64 = 64.0;
const AFTER_MIB: f64 = 20.0;

/// How long after an attack's end its memory is looked at.
const SETTLE: Duration = Duration::from_secs(3);

pub(crate) async fn bench_hostile(rows: &Rows) -> anyhow::Result<()> {
    unfinished(rows).await.context("unfinished messages")?;
    watchers(rows).await.context("watchers from one address")?;
    refusals(rows).await.context("wrong-token handshakes")?;
    silent_originals(rows).await.context("original entries that never answer")?;
    replays(rows).await.context("replayed first messages")?;
    Ok(())
}

/// Handshakes with a wrong token, one connection each.
const WRONG_TOKENS: usize = 200_000;

/// 200,000 wrong-token handshakes from one address: every one refused,
/// and the log lines they cost.
async fn refusals(rows: &Rows) -> anyhow::Result<()> {
    let token = JoinToken::generate();
    let registry = LeanRegistry::start_with(&[], &[(TOKEN_ENV, token.reveal().as_str())]).await?;
    let wrong = Keys::new(Identity::generate(), Admission::from_token(Some(JoinToken::generate())));
    let before = registry.logged.load(Ordering::Relaxed);
    let started = Instant::now();
    let refused = AtomicUsize::new(0);
    futures::stream::iter(0..WRONG_TOKENS)
        .for_each_concurrent(OPENING, |_| async {
            let Ok(mut stream) = connect_from("127.0.0.2", registry.addr).await else { return };
            let handshake = timeout(CLIENT_TIMEOUT, wire::secure::initiate(&mut stream, &wrong, None)).await;
            if matches!(handshake, Ok(Err(ref error)) if wire::Chain(error).to_string().contains("unauthorized")) {
                refused.fetch_add(1, Ordering::Relaxed);
            }
        })
        .await;
    let took = started.elapsed();
    // The last refusals' lines may still be on their way through the pipe.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lines = registry.logged.load(Ordering::Relaxed) - before;
    let refused = refused.into_inner();
    let note = format!("{refused} of {WRONG_TOKENS} refused `unauthorized` in {:.1} s", took.as_secs_f64());
    rows.push(SECTION, "refusals: log lines", Some(lines as f64), "", Some(Target::AtMost(300.0)), note);
    registry.stop().await;
    Ok(())
}

/// Original entries that never answer, at most the registry takes by default.
const SILENT_ORIGINALS: usize = 1024;

/// How soon the next node must greet a member registered after them.
const GREETS_MEMBER_WITHIN: Duration = Duration::from_secs(10);

/// 1,024 silent original entries, then a member, then the node measured.
async fn silent_originals(rows: &Rows) -> anyhow::Result<()> {
    use ::tests::{is, Node, Registry};
    use node::events::Event;
    let registry = Registry::start(&[]).await?;
    let sources: Vec<std::net::IpAddr> = (2..18).map(|i| std::net::Ipv4Addr::new(127, 0, 0, i).into()).collect();
    let accepted = ::tests::silent_originals(registry.addr, SILENT_ORIGINALS, &sources).await?;
    let member = Node::start(registry.addr, "member", &[]).await?;
    member.process.wait_for_event(Event::Registered).await?;
    let started = Instant::now();
    let next = Node::start(registry.addr, "next", &[]).await?;
    next.process.wait_for_lines(1, |l| is(l, Event::GreetingSent) && l["peer_name"] == "member").await?;
    let took = started.elapsed().as_secs_f64();
    let note = format!(
        "from its start; the silent listeners had accepted {} connections by then",
        accepted.load(Ordering::SeqCst)
    );
    let metric = format!("originals: the next node greets a member after {SILENT_ORIGINALS} silent entries");
    let target = Some(Target::AtMost(GREETS_MEMBER_WITHIN.as_secs_f64()));
    rows.push(SECTION, metric, Some(took), "s", target, note);
    Ok(())
}

/// What members' registration p99 must stay under during a replay flood.
const REPLAYS_P99_MS: f64 = 100.0;

/// How long after its start a replay flood is measured: it is at full pace by then.
const RAMP: Duration = Duration::from_secs(1);

/// Copies of a member's recorded first message, sent as fast as the
/// registry takes them while members register and heartbeat.
async fn replays(rows: &Rows) -> anyhow::Result<()> {
    crate::spawn::use_token();
    let registry = LeanRegistry::start(&["--ttl", "60s"]).await?;
    let addr = RegistryAddr::from(registry.addr);
    let pid = registry.pid().context("the registry runs")?;
    let mut members = register_many(&addr, "replays", 20_000, MEMBERS).await?;
    let idle = Latencies::measure(&addr, &mut members, "replays-idle", 30_000).await?;
    let before = memory(pid)?;
    let (relay, recorded) = ::tests::recording_relay(registry.addr).await?;
    let mut member = Client::connect_secure(&relay.into(), &crate::spawn::client_keys(), CLIENT_TIMEOUT).await?;
    member.list().await?;
    let recorded = recorded.await??;

    let stop = Arc::new(AtomicBool::new(false));
    let flood = tokio::spawn(replay_flood(recorded, registry.addr, stop.clone()));
    tokio::time::sleep(RAMP).await;
    let during = Latencies::measure(&addr, &mut members, "replays-during", 31_000).await;
    stop.store(true, Ordering::Relaxed);
    let (copies, took) = flood.await?;
    let during = during?;
    let peak = memory(pid)?;
    tokio::time::sleep(SETTLE).await;
    memory_rows(rows, "replays", [before, peak, memory(pid)?]);
    let refused = copies.refused as f64 / took.as_secs_f64();
    let note = format!(
        "{} copies in {:.1} s: {} refused before the key exchange, {} answered with one",
        copies.refused + copies.answered,
        took.as_secs_f64(),
        copies.refused,
        copies.answered
    );
    rows.info(SECTION, "replays: copies refused", refused.round(), "/s", note);
    idle.report(rows, "replays", "idle", None);
    during.report(rows, "replays", "under attack", Some(Target::AtMost(REPLAYS_P99_MS)));
    drop(member);
    registry.stop().await;
    Ok(())
}

/// What the registry made of the copies of a first message.
#[derive(Default)]
struct Copies {
    /// Refused in plaintext before any handshake answer.
    refused: usize,
    /// Answered with the registry's handshake message: a key exchange done.
    answered: usize,
}

/// Sends `recorded` on 256 connections at once, each copy on a
/// connection of its own, until `stop`.
async fn replay_flood(recorded: Vec<u8>, registry: SocketAddr, stop: Arc<AtomicBool>) -> (Copies, Duration) {
    let started = Instant::now();
    let copies = Mutex::new(Copies::default());
    let send = || async {
        let mut stream = connect_from("127.0.0.2", registry).await.ok()?;
        stream.write_all(&recorded).await.ok()?;
        let mut answer = [0u8; 2];
        timeout(CLIENT_TIMEOUT, stream.read_exact(&mut answer)).await.ok()?.ok()?;
        Some(answer != *b"{\"")
    };
    futures::stream::iter(0..OPENING)
        .for_each_concurrent(OPENING, |_| async {
            while !stop.load(Ordering::Relaxed) {
                match send().await {
                    Some(true) => wire::lock(&copies).answered += 1,
                    Some(false) => wire::lock(&copies).refused += 1,
                    None => {}
                }
            }
        })
        .await;
    (copies.into_inner().unwrap_or_default(), started.elapsed())
}

/// 15,000 connections that each leave a 65,000-byte message unfinished.
async fn unfinished(rows: &Rows) -> anyhow::Result<()> {
    let sources = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
    let attack = Attack { name: "unfinished", connections: 15_000, sources: &sources };
    let mut pad = br#"{"op":"heartbeat","id":""#.to_vec();
    pad.resize(65_000, b'x');
    attack
        .run(rows, |mut stream| {
            let pad = pad.clone();
            async move {
                let answer = request(&mut stream, br#"{"op":"heartbeat","id":"none"}"#).await?;
                anyhow::ensure!(answer.contains("unknown_id"), "answered {answer}");
                stream.write_all(&pad).await?;
                Ok(stream)
            }
        })
        .await
}

/// 16,363 plaintext watches from one address, none of them reading.
async fn watchers(rows: &Rows) -> anyhow::Result<()> {
    let attack = Attack { name: "watchers", connections: 16_363, sources: &["127.0.0.2"] };
    attack
        .run(rows, |mut stream| async move {
            let answer = request(&mut stream, br#"{"op":"watch"}"#).await?;
            anyhow::ensure!(!answer.contains(r#""ok":false"#), "refused: {answer}");
            Ok(stream)
        })
        .await
}

/// Sends `line` and reads the first line of the answer.
async fn request(stream: &mut TcpStream, line: &[u8]) -> anyhow::Result<String> {
    stream.write_all(&[line, b"\n"].concat()).await?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).await?;
    anyhow::ensure!(!answer.is_empty(), "closed without an answer");
    Ok(answer)
}

struct Attack<'a> {
    name: &'static str,
    connections: usize,
    /// Source addresses, used in turn.
    sources: &'a [&'a str],
}

impl Attack<'_> {
    /// Starts a registry with members, measures them idle, opens the
    /// attack's connections (each set up by `open`, and held), measures
    /// them again, then closes the connections and looks at the memory.
    async fn run<F, Fut>(&self, rows: &Rows, open: F) -> anyhow::Result<()>
    where
        F: Fn(TcpStream) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<TcpStream>>,
    {
        let name = self.name;
        let registry = LeanRegistry::start(&["--ttl", "60s"]).await?;
        let pid = registry.pid().context("the registry runs")?;
        let addr = RegistryAddr::from(registry.addr);
        let mut members = register_many(&addr, name, 20_000, MEMBERS).await?;
        let idle = Latencies::measure(&addr, &mut members, &format!("{name}-idle"), 30_000).await?;
        let before = memory(pid)?;

        let held = Mutex::new(Vec::new());
        let refused = Mutex::new(Vec::new());
        let started = Instant::now();
        futures::stream::iter(0..self.connections)
            .for_each_concurrent(OPENING, |i| {
                let source = self.sources[i % self.sources.len()];
                let attempt = async {
                    let stream = connect_from(source, registry.addr).await?;
                    timeout(CLIENT_TIMEOUT, open(stream)).await.context("no answer in time")?
                };
                let (held, refused) = (&held, &refused);
                async move {
                    match attempt.await {
                        Ok(stream) => wire::lock(held).push(stream),
                        Err(error) => wire::lock(refused).push(format!("{error:#}")),
                    }
                }
            })
            .await;
        let opened = started.elapsed();
        let during = Latencies::measure(&addr, &mut members, &format!("{name}-during"), 31_000).await?;
        let peak = memory(pid)?;
        let (held, refused) = (held.into_inner().unwrap_or_default(), refused.into_inner().unwrap_or_default());
        // A connection dropped by the registry is drained for a second first.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let still_open = held.iter().filter(|stream| is_open(stream)).count();
        held_count(rows, name, self.connections, still_open, &refused, opened);
        drop(held);
        tokio::time::sleep(SETTLE).await;
        let after = memory(pid)?;

        memory_rows(rows, name, [before, peak, after]);
        idle.report(rows, name, "idle", None);
        during.report(rows, name, "under attack", None);
        registry.stop().await;
        Ok(())
    }
}

/// The registry's memory before an attack, at its peak, and [`SETTLE`] after it.
fn memory_rows(rows: &Rows, name: &str, [before, peak, after]: [Memory; 3]) {
    rows.info(SECTION, format!("{name}: registry RSS before"), before.mib(), "MiB", before.note());
    let peak_mib = peak.hwm_kb as f64 / 1024.0;
    let (metric, target) = (format!("{name}: registry peak RSS"), Some(Target::AtMost(PEAK_MIB)));
    rows.push(SECTION, metric, Some(peak_mib), "MiB", target, peak.note());
    let (metric, target) =
        (format!("{name}: registry RSS {} s after", SETTLE.as_secs()), Some(Target::AtMost(AFTER_MIB)));
    rows.push(SECTION, metric, Some(after.mib()), "MiB", target, after.note());
}

/// Reports how many of the attack's connections the registry still held
/// once it had answered each.
fn held_count(rows: &Rows, name: &str, tried: usize, held: usize, refused: &[String], took: Duration) {
    let example = refused.first().map(|e| format!("; first refusal: {e}")).unwrap_or_default();
    let note = format!("of {tried} opened in {:.1} s, {} refused at once{example}", took.as_secs_f64(), refused.len());
    rows.info(SECTION, format!("{name}: connections the registry held"), held as f64, "", note);
}

/// Whether the registry still holds `stream` open: nothing but what it
/// sent is pending, and no end of file.
fn is_open(stream: &TcpStream) -> bool {
    let mut sink = [0u8; 4096];
    loop {
        match stream.try_read(&mut sink) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(error) => return error.kind() == std::io::ErrorKind::WouldBlock,
        }
    }
}

/// A connection from `source`, another loopback address than the members'.
async fn connect_from(source: &str, to: SocketAddr) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.parse()?, 0))?;
    Ok(timeout(CLIENT_TIMEOUT, socket.connect(to)).await.context("no connection in time")??)
}

/// Members' latencies, in milliseconds, sorted.
struct Latencies {
    registrations: Vec<u64>,
    heartbeats: Vec<u64>,
}

impl Latencies {
    /// [`REGISTRATIONS`] fresh registrations named `<prefix>-<i>`, each on a
    /// session of its own and at a port of its own from `first_port` (a
    /// lapsed entry's address stays its key's), and a heartbeat by each of `members`.
    async fn measure(
        addr: &RegistryAddr,
        members: &mut [(Client, String)],
        prefix: &str,
        first_port: u16,
    ) -> anyhow::Result<Self> {
        let mut registrations = Vec::with_capacity(REGISTRATIONS);
        let mut sessions = Vec::with_capacity(REGISTRATIONS);
        for i in 0..REGISTRATIONS {
            let started = Instant::now();
            let registered = register_many(addr, &format!("{prefix}-{i}"), first_port + i as u16, 1).await?;
            registrations.push(started.elapsed().as_micros() as u64);
            sessions.extend(registered);
        }
        let mut heartbeats = Vec::with_capacity(members.len());
        for (client, id) in members.iter_mut() {
            let started = Instant::now();
            client.heartbeat(id).await?;
            heartbeats.push(started.elapsed().as_micros() as u64);
        }
        registrations.sort_unstable();
        heartbeats.sort_unstable();
        Ok(Latencies { registrations, heartbeats })
    }

    /// Rows of the p99s, the registrations' against `registration_target` if any.
    fn report(&self, rows: &Rows, name: &str, when: &str, registration_target: Option<Target>) {
        let measured =
            [("registration", &self.registrations, registration_target), ("heartbeat", &self.heartbeats, None)];
        for (what, sorted, target) in measured {
            let (p50, p99) = (percentile(sorted, 0.5) / 1e3, percentile(sorted, 0.99) / 1e3);
            let note = format!("p50 {p50:.2} ms over {} members' requests", sorted.len());
            rows.push(SECTION, format!("{name}: {what} p99, {when}"), Some(p99), "ms", target, note);
        }
    }
}
