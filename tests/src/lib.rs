//! Support for tests and benchmarks that run the real `registry` and `node`
//! binaries on loopback.
//!
//! # Layout
//! - [`binary`]: builds the workspace's binaries once and finds them.
//! - [`Process`]: a child process whose JSON log lines can be awaited; it is
//!   killed when dropped, so a failing test leaves nothing running. Events
//!   are named through their emitter's enum ([`EventName`]), never as strings.
//! - [`Registry`] and [`Node`]: the two services, started on `127.0.0.1:0`,
//!   ready once they have logged the address they listen on.
//! - [`history`]: a history of registry operations, and its check against
//!   the single-registry model; [`driver`]: the clients that record one
//!   against a registry's replicas; [`watcher`]: a watcher across them.
//! - [`replicas_cluster`]: replicas of one registry on a real 3-member etcd.
//! - [`docker`]: the docker CLI, skipping without a daemon, and cleanup guards.
//! - [`launcher`]: the real launcher, run to its end, and what it printed.
//! - [`second_engine`]: a second Docker engine in a network namespace, and
//!   the two-host swarm it forms with the main one.
#![forbid(unsafe_code)]

pub mod docker;
pub mod driver;
pub mod history;
pub mod launcher;
pub mod replicas_cluster;
pub mod second_engine;
pub mod watcher;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use registry::client::{Client, RegistryAddr};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use wire::secure::{JoinToken, TOKEN_ENV};

/// Generous bound for anything a test awaits: reaching it means a failure,
/// never a slow pass.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Path of a workspace binary, built on first use in the profile the tests run in.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        // target/<profile>/deps/<test binary> -> target/<profile>
        let exe = std::env::current_exe().expect("the test binary has a path");
        let dir = exe.ancestors().find(|p| p.file_name().is_some_and(|n| n == "deps")).and_then(|p| p.parent());
        let dir = dir.unwrap_or_else(|| exe.parent().expect("the binary is in a directory")).to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build.args(["build", "--quiet", "-p", "registry", "-p", "node", "-p", "launcher", "--bins"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building the workspace binaries failed");
        dir
    });
    dir.join(name)
}

/// An event of the registry's or of a node's, named by its emitter's enum.
pub trait EventName: Copy {
    fn name(self) -> &'static str;
}

impl EventName for node::events::Event {
    fn name(self) -> &'static str {
        self.as_str()
    }
}

impl EventName for registry::events::Event {
    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// Whether a JSON log line is `event`.
pub fn is(line: &Value, event: impl EventName) -> bool {
    line["event"] == event.name()
}

/// Runs `binary` with its stdout a pipe whose reader has already gone, as
/// under `| head -1` once head has exited: writing to it fails with EPIPE.
pub fn with_closed_stdout(binary: &str, args: &[&str]) -> std::process::Output {
    let (reader, writer) = nix::unistd::pipe().expect("a pipe");
    drop(reader);
    std::process::Command::new(crate::binary(binary))
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(writer)
        .output()
        .expect("the binary runs")
}

/// A running child process and the JSON lines it has logged so far.
pub struct Process {
    child: Child,
    name: String,
    lines: watch::Receiver<Vec<Value>>,
}

impl Process {
    /// Starts `binary` with `args`, logging JSON, and collects its stdout.
    pub fn spawn(name: &str, binary: &str, args: &[String], envs: &[(&str, &str)]) -> anyhow::Result<Process> {
        let mut command = Command::new(crate::binary(binary));
        command
            .args(args)
            .env("LOG_FORMAT", "json")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        // A token in the test's own environment must not leak into the services.
        command.env_remove(TOKEN_ENV);
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command.spawn().with_context(|| format!("failed to start {binary}"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, lines) = watch::channel(Vec::new());
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                sender.send_modify(|lines| lines.push(value));
            }
        });
        Ok(Process { child, name: name.to_owned(), lines })
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id().expect("the process has not been reaped") as i32)
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("the process can be signalled");
    }

    /// Waits for the process to exit, returning its exit code.
    pub async fn wait(&mut self) -> anyhow::Result<Option<i32>> {
        Ok(self.child.wait().await?.code())
    }

    /// All log lines so far.
    pub fn lines(&self) -> Vec<Value> {
        self.lines.borrow().clone()
    }

    /// Log lines of `event`.
    pub fn events(&self, event: impl EventName) -> Vec<Value> {
        self.lines.borrow().iter().filter(|l| is(l, event)).cloned().collect()
    }

    /// Waits until `count` lines satisfy `matches`, and returns them.
    pub async fn wait_for_lines(&self, count: usize, matches: impl Fn(&Value) -> bool) -> anyhow::Result<Vec<Value>> {
        let mut lines = self.lines.clone();
        let found = tokio::time::timeout(PATIENCE, async {
            let all = lines.wait_for(|all| all.iter().filter(|l| matches(l)).count() >= count).await;
            all.map(|all| all.iter().filter(|l| matches(l)).cloned().collect::<Vec<_>>())
        })
        .await;
        match found {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(_)) => bail!("{} exited before logging what was awaited; its log:\n{}", self.name, self.dump()),
            Err(_) => {
                bail!("{} did not log what was awaited within {PATIENCE:?}; its log:\n{}", self.name, self.dump())
            }
        }
    }

    /// Waits for the first line of `event`, and returns it.
    pub async fn wait_for_event(&self, event: impl EventName) -> anyhow::Result<Value> {
        self.wait_for_nth_event(event, 1).await
    }

    /// Waits for the `n`th line of `event` (counting from 1), and returns it.
    pub async fn wait_for_nth_event(&self, event: impl EventName, n: usize) -> anyhow::Result<Value> {
        let lines = self.wait_for_lines(n, |l| is(l, event)).await?;
        Ok(lines[n - 1].clone())
    }

    fn dump(&self) -> String {
        self.lines.borrow().iter().map(|l| format!("  {l}\n")).collect()
    }
}

/// A `registry` process listening on loopback.
pub struct Registry {
    pub process: Process,
    pub addr: SocketAddr,
}

impl Registry {
    /// Starts a registry on `127.0.0.1:0` with extra `args`.
    pub async fn start(args: &[&str]) -> anyhow::Result<Registry> {
        Self::start_on("127.0.0.1:0".parse()?, args).await
    }

    /// Starts a registry on a given address (to restart one where it was).
    pub async fn start_on(listen: SocketAddr, args: &[&str]) -> anyhow::Result<Registry> {
        Self::start_with(listen, args, &[]).await
    }

    /// Starts a registry on `127.0.0.1:0` that admits holders of `token` only.
    pub async fn start_with_token(token: &JoinToken, args: &[&str]) -> anyhow::Result<Registry> {
        Self::start_with("127.0.0.1:0".parse()?, args, &[(TOKEN_ENV, token.reveal().as_str())]).await
    }

    /// Starts a registry on `listen` with extra `args` and environment.
    pub async fn start_with(listen: SocketAddr, args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<Registry> {
        let mut all = vec!["--listen".to_owned(), listen.to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        let process = Process::spawn("registry", "registry", &all, envs)?;
        let listening = process.wait_for_event(registry::events::Event::Listening).await?;
        let addr = listening["addr"].as_str().context("`listening` has an addr")?.parse()?;
        Ok(Registry { process, addr })
    }

    pub fn registry_addr(&self) -> RegistryAddr {
        self.addr.into()
    }

    /// A client connection to this registry.
    pub async fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::connect(&self.registry_addr(), Duration::from_secs(5)).await?)
    }

    /// Names of the live entries.
    pub async fn names(&self) -> anyhow::Result<Vec<String>> {
        Ok(self.client().await?.list().await?.into_iter().map(|c| c.name).collect())
    }
}

/// A `node` process listening on loopback.
pub struct Node {
    pub process: Process,
    pub name: String,
    pub addr: SocketAddr,
}

impl Node {
    /// Starts a node named `name` that registers with `registry`.
    pub async fn start(registry: SocketAddr, name: &str, args: &[&str]) -> anyhow::Result<Node> {
        Self::start_with(registry, name, args, &[]).await
    }

    /// Starts a node that holds `token`.
    pub async fn start_with_token(
        registry: SocketAddr,
        name: &str,
        token: &JoinToken,
        args: &[&str],
    ) -> anyhow::Result<Node> {
        Self::start_with(registry, name, args, &[(TOKEN_ENV, token.reveal().as_str())]).await
    }

    /// Starts a node given the replicas `registries` of a registry, in the
    /// order it tries them, each with its port (REGISTRY_HOST alone), and
    /// holding `token` when given.
    pub async fn start_replicated(
        registries: &[SocketAddr],
        name: &str,
        token: Option<&JoinToken>,
        args: &[&str],
    ) -> anyhow::Result<Node> {
        let list = registries.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        let revealed = token.map(|token| token.reveal());
        let envs: Vec<(&str, &str)> = revealed.iter().map(|token| (TOKEN_ENV, token.as_str())).collect();
        Self::spawn(vec![list], name, args, &envs).await
    }

    async fn start_with(
        registry: SocketAddr,
        name: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> anyhow::Result<Node> {
        Self::spawn(vec![registry.ip().to_string(), registry.port().to_string()], name, args, envs).await
    }

    /// Starts a node with `registry` as its positional arguments.
    async fn spawn(registry: Vec<String>, name: &str, args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<Node> {
        let mut all = registry;
        all.extend(["--listen".into(), "127.0.0.1:0".into(), "--name".into(), name.into()]);
        all.extend(args.iter().map(|a| a.to_string()));
        let process = Process::spawn(name, "node", &all, envs)?;
        let listening = process.wait_for_event(node::events::Event::Listening).await?;
        let addr = listening["listen"].as_str().context("`listening` has a listen address")?.parse()?;
        Ok(Node { process, name: name.to_owned(), addr })
    }

    /// Starts `count` nodes named `node-1`, `node-2`, ... in order, each once
    /// the previous one has registered, so that node `i` greets `i - 1` peers.
    pub async fn start_in_order(registry: SocketAddr, count: usize, args: &[&str]) -> anyhow::Result<Vec<Node>> {
        let mut nodes = Vec::with_capacity(count);
        for i in 1..=count {
            let node = Node::start(registry, &format!("node-{i}"), args).await?;
            node.process.wait_for_event(node::events::Event::Registered).await?;
            nodes.push(node);
        }
        Ok(nodes)
    }
}

/// The address of `process`'s HTTP listener (`--http-listen 127.0.0.1:0`),
/// once it serves: `event` is its emitter's `serving_http`.
pub async fn http_addr(process: &Process, event: impl EventName) -> anyhow::Result<SocketAddr> {
    let serving = process.wait_for_event(event).await?;
    Ok(serving["addr"].as_str().context("`serving_http` has an addr")?.parse()?)
}

/// What `/metrics` at `addr` serves, parsed strictly ([`wire::exposition`]).
pub async fn scrape(addr: SocketAddr) -> anyhow::Result<Metrics> {
    let (status, body) = wire::http::get(addr, "/metrics", PATIENCE).await?;
    anyhow::ensure!(status == 200, "/metrics answered {status}");
    let text = String::from_utf8(body.to_vec())?;
    Ok(Metrics(wire::exposition::parse(&text).with_context(|| format!("/metrics is not exposition format:\n{text}"))?))
}

/// Families read from `/metrics`.
#[derive(Debug)]
pub struct Metrics(pub Vec<wire::exposition::Family>);

impl Metrics {
    /// The sum of the samples named `sample` (a family's name and its
    /// suffix) whose labels include `labels`; 0 when there is none.
    pub fn value(&self, sample: &str, labels: &[(&str, &str)]) -> f64 {
        self.0.iter().map(|family| family.sum(sample, labels)).sum()
    }
}

/// A directory under the system temp directory, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// `hit6-<name>-<pid>`, empty.
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("hit6-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("the temp directory is writable");
        TempDir(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A secure session opened by hand, for requests no client sends.
pub type Sealed = tokio_util::codec::Framed<tokio::net::TcpStream, wire::codec::LinkCodec>;

/// Opens a secure session with `addr` as `keys`.
pub async fn open_sealed(addr: SocketAddr, keys: &wire::secure::Keys) -> anyhow::Result<Sealed> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let session = wire::secure::initiate(&mut stream, keys, None).await?;
    Ok(Sealed::new(stream, wire::codec::LinkCodec::sealed(session, wire::codec::MAX_REPLY_BYTES)))
}

/// Accepts connections on `listener` as a stand-in member named `name`,
/// which holds `keys` and `ticket_key`: answers each greeting with a ticket
/// as a node does, and returns the first secure session.
pub async fn accept_member(
    listener: &tokio::net::TcpListener,
    keys: &wire::secure::Keys,
    ticket_key: &wire::ticket::TicketKey,
    name: &str,
) -> anyhow::Result<Sealed> {
    loop {
        let (mut stream, _) = listener.accept().await?;
        let mut first = [0u8; 1];
        stream.peek(&mut first).await?;
        if wire::secure::is_secure(first[0]) {
            let session = wire::secure::respond(&mut stream, keys).await?;
            return Ok(Sealed::new(stream, wire::codec::LinkCodec::sealed(session, wire::codec::MAX_REQUEST_BYTES)));
        }
        answer_greeting(stream, keys, ticket_key, name).await?;
    }
}

/// Answers the greeting with a ticket that comes on `stream` as the node
/// `name`, holding `keys` and `ticket_key`, does; returns who greeted.
pub async fn answer_greeting(
    stream: tokio::net::TcpStream,
    keys: &wire::secure::Keys,
    ticket_key: &wire::ticket::TicketKey,
    name: &str,
) -> anyhow::Result<wire::ticket::Greeter> {
    use futures::SinkExt;
    let mut plain = Sealed::new(stream, wire::codec::LinkCodec::plain(wire::codec::MAX_REQUEST_BYTES));
    let greeting: wire::ticket::TicketGreeting = serde_json::from_value(read(&mut plain).await?)?;
    let opened = ticket_key.open(&greeting.ticket, keys.identity.public(), registry::credential::unix_ms())?;
    opened.open_greeting(greeting.attempt, &greeting.sealed)?;
    let answer = serde_json::json!({"mensaje":"Hola, un gusto!","name":name}).to_string();
    let sealed = opened.seal_answer(greeting.attempt, answer.as_bytes());
    plain.send(&wire::ticket::TicketAnswer { sealed }).await?;
    Ok(opened.greeter)
}

/// Registers `count` original-dialect entries at listeners that accept and
/// never answer: anyone may, and they prove nothing. Each listens on, and
/// registers from, the next of `sources` in turn (the registry takes 64
/// original entries from one address). Returns how many connections the
/// listeners have accepted, as it grows.
pub async fn silent_originals(
    registry: SocketAddr,
    count: usize,
    sources: &[std::net::IpAddr],
) -> anyhow::Result<std::sync::Arc<std::sync::atomic::AtomicUsize>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    for i in 0..count {
        let source = sources[i % sources.len()];
        let listener = tokio::net::TcpListener::bind((source, 0)).await?;
        let register = serde_json::json!({"ip": source, "puerto": listener.local_addr()?.port()});
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind((source, 0).into())?;
        let answer = plaintext_from(socket.connect(registry).await?, register.to_string().as_bytes()).await?;
        anyhow::ensure!(answer.is_array(), "an original registration gets the contacts: {answer}");
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
    }
    Ok(accepted)
}

/// Relays one connection to `to`, as a router on the path would, and keeps
/// a copy of the first handshake frame that crossed it (its 2-byte length
/// and the message): what an eavesdropper can replay.
pub async fn recording_relay(
    to: SocketAddr,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<anyhow::Result<Vec<u8>>>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let recorded = tokio::spawn(async move {
        let (mut member, _) = listener.accept().await?;
        let mut upstream = tokio::net::TcpStream::connect(to).await?;
        let len = member.read_u16().await?;
        let mut first = len.to_be_bytes().to_vec();
        first.resize(2 + usize::from(len), 0);
        member.read_exact(&mut first[2..]).await?;
        upstream.write_all(&first).await?;
        tokio::spawn(async move { tokio::io::copy_bidirectional(&mut member, &mut upstream).await });
        Ok(first)
    });
    Ok((addr, recorded))
}

/// Sends `bytes` in plaintext on a connection of their own and reads the
/// one JSON answer (the first line of what comes back before the hang-up).
pub async fn plaintext(addr: SocketAddr, bytes: &[u8]) -> anyhow::Result<Value> {
    plaintext_from(tokio::net::TcpStream::connect(addr).await?, bytes).await
}

/// The same on `stream`.
async fn plaintext_from(mut stream: tokio::net::TcpStream, bytes: &[u8]) -> anyhow::Result<Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(bytes).await?;
    let mut reply = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut reply)).await??;
    let line = reply.split(|b| *b == b'\n').next().unwrap_or_default();
    serde_json::from_slice(line).with_context(|| format!("reply {:?}", String::from_utf8_lossy(&reply)))
}

/// Sends `message` on `sealed` and reads the next message.
pub async fn ask(sealed: &mut Sealed, message: &Value) -> anyhow::Result<Value> {
    use futures::SinkExt;
    sealed.send(message).await?;
    read(sealed).await
}

/// Reads the next message of `sealed`.
pub async fn read(sealed: &mut Sealed) -> anyhow::Result<Value> {
    use futures::StreamExt;
    let next = tokio::time::timeout(PATIENCE, sealed.next()).await.context("no message in time")?;
    next.context("the session ended")??.map_err(|malformed| anyhow::anyhow!("{malformed}"))
}

/// Whether `name` is among the registry's live entries.
pub fn contains(names: &[String], name: &str) -> bool {
    names.iter().any(|n| n == name)
}

/// Checks that every pair of `nodes` greeted exactly once: each node greets
/// the k nodes registered before it (its `registered` event's `contacts`)
/// and is greeted by those after it, once each, and every greeting received
/// is from a greeter that proved the key the registry vouched for.
pub async fn every_pair_greeted_once(nodes: &[Node]) -> anyhow::Result<()> {
    let n = nodes.len();
    let contacts = registered_contacts(nodes).await?;
    let mut counts = contacts.clone();
    counts.sort_unstable();
    anyhow::ensure!(counts == (0..n).collect::<Vec<_>>(), "registrations were not in one order: contacts {contacts:?}");
    every_pair_of_nodes_greeted_once(nodes).await.map(drop)
}

/// How many contacts each of `nodes` was told of when it registered.
async fn registered_contacts(nodes: &[Node]) -> anyhow::Result<Vec<usize>> {
    let mut contacts = Vec::with_capacity(nodes.len());
    for node in nodes {
        let registered = node.process.wait_for_event(node::events::Event::Registered).await?;
        contacts.push(registered["contacts"].as_u64().context("`registered` counts its contacts")? as usize);
    }
    Ok(contacts)
}

/// Checks that every pair of `nodes` greeted exactly once, in a membership
/// that may hold other entries too (which nodes greet as contacts, and
/// which greet no one): each node greets every contact it was told of,
/// once, without a failure; of each pair of nodes one greeted the other,
/// which logged it once, from a greeter that proved the key the registry
/// vouched for. Returns the names each node greeted, by node.
pub async fn every_pair_of_nodes_greeted_once(
    nodes: &[Node],
) -> anyhow::Result<std::collections::BTreeMap<String, Vec<String>>> {
    use node::events::Event;
    use std::collections::{BTreeMap, BTreeSet};
    let names = |lines: &[Value]| -> Vec<String> {
        lines.iter().filter_map(|l| l["peer_name"].as_str()).map(str::to_owned).collect()
    };
    let is_node = |name: &str| nodes.iter().any(|node| node.name == name);
    let contacts = registered_contacts(nodes).await?;
    let (mut greeted, mut pairs, mut greeted_by) = (BTreeMap::new(), BTreeSet::new(), BTreeMap::<String, usize>::new());
    for (node, &k) in nodes.iter().zip(&contacts) {
        let sent = names(&node.process.wait_for_lines(k, |l| is(l, Event::GreetingSent)).await?);
        let unique: BTreeSet<&String> = sent.iter().collect();
        anyhow::ensure!(unique.len() == sent.len(), "{} greeted a peer twice: {sent:?}", node.name);
        for peer in sent.iter().filter(|peer| is_node(peer)) {
            let pair =
                if node.name < *peer { (node.name.clone(), peer.clone()) } else { (peer.clone(), node.name.clone()) };
            anyhow::ensure!(pairs.insert(pair), "{} and {peer} greeted each other", node.name);
            *greeted_by.entry(peer.clone()).or_default() += 1;
        }
        greeted.insert(node.name.clone(), sent);
    }
    let n = nodes.len();
    anyhow::ensure!(pairs.len() == n * (n - 1) / 2, "{} pairs greeted of {}", pairs.len(), n * (n - 1) / 2);
    for node in nodes {
        let expected = greeted_by.get(&node.name).copied().unwrap_or(0);
        let received = node.process.wait_for_lines(expected, |l| is(l, Event::GreetingReceived)).await?;
        for peer in names(&received) {
            let sent = greeted.get(&peer).is_some_and(|sent: &Vec<String>| sent.contains(&node.name));
            anyhow::ensure!(sent, "{} logged a greeting {peer} did not send", node.name);
        }
        anyhow::ensure!(received.iter().all(|l| l["verified"] == true), "{} believed an unverified greeter", node.name);
    }
    for (node, &k) in nodes.iter().zip(&contacts) {
        anyhow::ensure!(node.process.events(Event::GreetingSent).len() == k, "{} sent extra greetings", node.name);
        let received = node.process.events(Event::GreetingReceived).len();
        let expected = greeted_by.get(&node.name).copied().unwrap_or(0);
        anyhow::ensure!(received == expected, "{} got {received} greetings, not {expected}", node.name);
        anyhow::ensure!(node.process.events(Event::GreetingFailed).is_empty(), "{} failed a greeting", node.name);
    }
    Ok(greeted)
}
