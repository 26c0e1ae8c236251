//! Hostile clients against the real `registry` and the real `node`'s greeting
//! listener: every bad input gets a clear error reply where a reply makes
//! sense, the connection is closed where the byte stream cannot go on, and
//! both services keep serving well-behaved clients meanwhile.

use node::events::Event;
use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use registry::client::Joined;
use registry::protocol::{Contact, NativeRequest};
use serde_json::{json, Value};
use tests::{Node, Process, Registry, PATIENCE};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;
use wire::codec::MAX_REQUEST_BYTES;

/// Tests that load the machine or read the kernel's socket table run one at a
/// time, so that neither disturbs the other's timing.
static EXCLUSIVE: Mutex<()> = Mutex::const_new(());

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LIST: &[u8] = br#"{"op":"list"}"#;
const GREETING: &[u8] = br#"{"mensaje":"Hola, soy un nodo C","ip":"127.0.0.1","puerto":"9"}"#;
const NODE_NAME: &str = "greeted";
/// Connections opened at once by the storm tests.
const STORM: usize = 3000;
/// Slack over `--max-connections` for the fds a process needs anyway.
const FD_SLACK: usize = 50;

// ---------------------------------------------------------------------------
// The services under test.

/// A running service that hostile clients are pointed at.
trait Service {
    fn addr(&self) -> SocketAddr;
    fn process(&self) -> &Process;
    /// Asserts that a fresh, well-behaved client gets a correct answer now.
    async fn assert_serves(&self) -> Result<()>;
}

/// A registry holding known entries, so that `list` has an exact expected answer.
struct RegistryFixture {
    registry: Registry,
    contacts: Vec<Contact>,
}

impl RegistryFixture {
    /// Starts a registry with `args` and registers `entries` entries in it.
    /// Leases are long, so nothing expires while a test runs.
    async fn start(args: &[&str], entries: u16) -> Result<Self> {
        let registry = Registry::start(&[&["--ttl", "10m"][..], args].concat()).await?;
        let mut client = registry.client().await?;
        let mut contacts = Vec::new();
        for i in 0..entries {
            let name = format!("entry-{i:03}");
            let request = NativeRequest::Register {
                ip: Some(LOCALHOST),
                puerto: 10_000 + i,
                name: &name,
                group: None,
                incarnation: None,
                ticket_key: None,
            };
            let Joined::Leased(registered) = client.register(&request).await? else {
                bail!("our registry grants leases");
            };
            contacts.push(registered.entry);
        }
        Ok(Self { registry, contacts })
    }

    /// The exact reply to `{"op":"list"}`.
    fn listed(&self) -> Value {
        json!({"ok": true, "contactos": self.contacts})
    }
}

impl Service for RegistryFixture {
    fn addr(&self) -> SocketAddr {
        self.registry.addr
    }

    fn process(&self) -> &Process {
        &self.registry.process
    }

    async fn assert_serves(&self) -> Result<()> {
        let listed = self.registry.client().await?.list().await.context("a fresh client's `list` failed")?;
        ensure!(listed == self.contacts, "a fresh client's `list` gave {listed:?}, expected {:?}", self.contacts);
        Ok(())
    }
}

/// A registered node, and the registry it registered with.
struct NodeFixture {
    node: Node,
    id: String,
    /// Probes carry distinct ids: a node logs a repeated greeting only once.
    probes: std::sync::atomic::AtomicU32,
    _registry: Registry,
}

impl NodeFixture {
    async fn start(args: &[&str]) -> Result<Self> {
        let registry = Registry::start(&[]).await?;
        let node = Node::start(registry.addr, NODE_NAME, args).await?;
        let registered = node.process.wait_for_event(Event::Registered).await?;
        // The probes greet in plaintext as the original node at 127.0.0.1:9,
        // which the node believes only once the registry has that node.
        let original = exchange(registry.addr, br#"{"ip":"127.0.0.1","puerto":9}"#).await?;
        ensure!(original.is_array(), "the original registration was answered with {original}");
        let id = registered["id"].as_str().context("`registered` has an id")?.to_owned();
        Ok(Self { node, id, probes: Default::default(), _registry: registry })
    }

    /// The exact answer to a valid greeting.
    fn welcome(&self) -> Value {
        json!({"mensaje": "Hola, un gusto!", "name": NODE_NAME, "id": self.id})
    }
}

impl Service for NodeFixture {
    fn addr(&self) -> SocketAddr {
        self.node.addr
    }

    fn process(&self) -> &Process {
        &self.node.process
    }

    async fn assert_serves(&self) -> Result<()> {
        let probe = self.probes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let greeting =
            json!({"mensaje":"Hola, soy un nodo C","ip":"127.0.0.1","puerto":"9","id":format!("probe-{probe}")});
        let reply =
            exchange(self.addr(), greeting.to_string().as_bytes()).await.context("a valid greeting got no answer")?;
        ensure!(reply == self.welcome(), "a valid greeting was answered with {reply}");
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// A raw client: sends arbitrary bytes, reads replies as one JSON value per line.

struct Raw {
    replies: Replies,
    writer: OwnedWriteHalf,
}

struct Replies(BufReader<OwnedReadHalf>);

impl Raw {
    async fn connect(addr: SocketAddr) -> Result<Raw> {
        let stream = timeout(PATIENCE, TcpStream::connect(addr)).await.context("connecting timed out")??;
        let (reader, writer) = stream.into_split();
        Ok(Raw { replies: Replies(BufReader::new(reader)), writer })
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        timeout(PATIENCE, self.writer.write_all(bytes)).await.context("writing timed out")??;
        Ok(())
    }

    /// Shuts down our sending side: the server reads end of file.
    async fn half_close(&mut self) -> Result<()> {
        self.writer.shutdown().await?;
        Ok(())
    }

    async fn exchange(&mut self, bytes: &[u8]) -> Result<Value> {
        self.send(bytes).await?;
        self.replies.next().await
    }
}

impl Replies {
    /// The next reply: one JSON value ending in a newline.
    async fn next(&mut self) -> Result<Value> {
        let mut line = Vec::new();
        timeout(PATIENCE, self.0.read_until(b'\n', &mut line)).await.context("no reply arrived")??;
        ensure!(
            line.ends_with(b"\n"),
            "the connection ended without a complete reply (got {:?})",
            String::from_utf8_lossy(&line)
        );
        serde_json::from_slice(&line).with_context(|| format!("reply {:?}", String::from_utf8_lossy(&line)))
    }

    /// Asserts that the server closes the connection cleanly, sending nothing more.
    async fn eof(&mut self) -> Result<()> {
        let mut rest = Vec::new();
        let read = timeout(PATIENCE, self.0.read_to_end(&mut rest)).await;
        read.context("the server did not close the connection")?.context("expected a clean close")?;
        ensure!(rest.is_empty(), "unexpected bytes before the close: {:?}", String::from_utf8_lossy(&rest));
        Ok(())
    }

    /// Asserts that the server closes the connection, cleanly or by reset
    /// (a reset is how a socket closed with unread input ends).
    async fn closed(&mut self) -> Result<()> {
        let mut rest = Vec::new();
        match timeout(PATIENCE, self.0.read_to_end(&mut rest)).await {
            Err(_) => bail!("the server did not close the connection"),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) if error.kind() == ErrorKind::ConnectionReset => Ok(()),
            Ok(Err(error)) => Err(error.into()),
        }
    }
}

/// Sends `bytes` on a new connection and returns the first reply.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Result<Value> {
    Raw::connect(addr).await?.exchange(bytes).await
}

// ---------------------------------------------------------------------------
// Expected replies and hostile cases.

fn error(code: &str, message: &str) -> Value {
    json!({"ok": false, "error": {"code": code, "message": message}})
}

fn bad_request(message: &str) -> Value {
    error("bad_request", message)
}

/// The reply to a delimited message that is not valid JSON: serde_json's own
/// description, prefixed.
fn malformed(bytes: &[u8]) -> Value {
    let parse_error = serde_json::from_slice::<Value>(bytes).expect_err("the case is malformed JSON");
    bad_request(&format!("malformed JSON: {parse_error}"))
}

/// What the connection does after the error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// The message was delimited, so the next one can be read.
    Continues,
    /// The byte stream cannot be resynchronised: the server hangs up.
    Closes,
}

struct Case {
    what: &'static str,
    bytes: Vec<u8>,
    /// Shut down our sending side after the bytes.
    half_close: bool,
    reply: Value,
    after: After,
}

fn case(what: &'static str, bytes: &[u8], reply: Value, after: After) -> Case {
    Case { what, bytes: bytes.to_vec(), half_close: false, reply, after }
}

/// Broken JSON and framing, rejected alike by both services except for the
/// wording of "not an object", which `not_an_object` gives.
fn framing_cases(not_an_object: &str) -> Vec<Case> {
    let trailing_comma = br#"{"op":"list",}"#;
    let not_utf8 = b"{\"op\":\"li\xffst\"}";
    let truncated = br#"{"op":"li"#;
    vec![
        case("a trailing comma", trailing_comma, malformed(trailing_comma), After::Continues),
        case("a non-UTF-8 byte inside a string", not_utf8, malformed(not_utf8), After::Continues),
        case("an array", b"[1,2]", bad_request(not_an_object), After::Continues),
        case("a bare string", br#""str""#, bad_request("message is not a JSON object or array"), After::Closes),
        Case {
            half_close: true,
            ..case(
                "half a message, then end of file",
                truncated,
                bad_request(&format!(
                    "connection closed in the middle of a message ({} bytes pending)",
                    truncated.len()
                )),
                After::Closes,
            )
        },
    ]
}

/// Sends a case on a new connection and asserts the exact error reply;
/// returns the connection for the caller to check what follows.
async fn assert_rejected(addr: SocketAddr, case: &Case) -> Result<Raw> {
    let mut conn = Raw::connect(addr).await?;
    conn.send(&case.bytes).await?;
    if case.half_close {
        conn.half_close().await?;
    }
    let reply = conn.replies.next().await.with_context(|| format!("no reply to {}", case.what))?;
    assert_eq!(reply, case.reply, "reply to {}", case.what);
    Ok(conn)
}

// ---------------------------------------------------------------------------
// Checks shared by the registry and the node.

/// A 10 MiB message, written by a separate task while the reply is read, is
/// answered `too_large` and the connection closed; the service serves others
/// during and after.
async fn assert_too_large_is_refused(service: &impl Service) -> Result<()> {
    const TOTAL: usize = 10 * 1024 * 1024;
    let Raw { mut replies, mut writer } = Raw::connect(service.addr()).await?;
    let flood = tokio::spawn(async move {
        // Write errors are expected: the server hangs up once it has answered.
        let _ = writer.write_all(br#"{"op":"list","pad":""#).await;
        let chunk = vec![b'a'; 64 * 1024];
        for _ in 0..TOTAL / chunk.len() {
            if writer.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = writer.write_all(br#""}"#).await;
    });
    let (reply, served) = tokio::join!(replies.next(), service.assert_serves());
    served.context("while a 10 MiB message was arriving")?;
    assert_eq!(reply?, error("too_large", &format!("message exceeds {MAX_REQUEST_BYTES} bytes")));
    replies.closed().await?;
    timeout(PATIENCE, flood).await.context("the 10 MiB writer never finished")??;
    service.assert_serves().await
}

/// A connection that sends nothing, or stops in the middle of a message, is
/// closed without a reply once `deadline` has passed, and not before.
async fn assert_silent_connections_are_closed(service: &impl Service, deadline: Duration) -> Result<()> {
    for (what, bytes) in [("nothing", &b""[..]), ("half a message", br#"{"mensaje":"Ho"#)] {
        let started = Instant::now();
        let mut conn = Raw::connect(service.addr()).await?;
        conn.send(bytes).await?;
        service.assert_serves().await.with_context(|| format!("while a client that sent {what} was open"))?;
        conn.replies.eof().await.with_context(|| format!("a client that sent {what}"))?;
        let elapsed = started.elapsed();
        // A little slack for timer granularity.
        ensure!(
            elapsed >= deadline - Duration::from_millis(20),
            "a client that sent {what} was closed after {elapsed:?}"
        );
        service.assert_serves().await?;
    }
    Ok(())
}

/// Opens `STORM` silent connections at once, from one address, against a
/// service that keeps `max_connections` pending connections per address
/// (dropping the oldest past it): it holds no more connections, nor more
/// file descriptors than that plus `FD_SLACK`; it does not crash, and it
/// serves a new client meanwhile and once they are gone.
async fn assert_survives_a_connection_storm(service: &impl Service, max_connections: usize) -> Result<()> {
    let (pid, port) = (service.process().pid().as_raw(), service.addr().port());
    let connected = Arc::new(AtomicUsize::new(0));
    let mut storm = JoinSet::new();
    for _ in 0..STORM {
        let (addr, connected) = (service.addr(), connected.clone());
        // Beyond the slots and the listen backlog, connections stay pending; they count too.
        storm.spawn(async move {
            if let Ok(stream) = TcpStream::connect(addr).await {
                connected.fetch_add(1, Ordering::Relaxed);
                // Dropped with a reset: thousands of TIME_WAIT sockets would slow later tests.
                let _ = stream.set_zero_linger();
                std::future::pending::<()>().await;
            }
        });
    }

    let slots = || Ok(held_connections(pid, port)? >= max_connections);
    eventually("the service to fill its connection slots", slots).await?;
    // Watch the service for a while with every connection still open.
    let ceiling = max_connections + FD_SLACK;
    let (mut peak_held, mut peak_fds) = (0, 0);
    let mut every = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..100 {
        every.tick().await;
        assert_alive(pid)?;
        peak_held = peak_held.max(held_connections(pid, port)?);
        peak_fds = peak_fds.max(open_fds(pid)?);
    }
    eprintln!(
        "storm: {} of {STORM} connects completed on our side; the service held at most {peak_held} connections \
         and {peak_fds} fds",
        connected.load(Ordering::Relaxed)
    );
    // Connections dropped for newer ones take a moment to close: the same slack as for fds.
    ensure!(peak_held < ceiling, "{peak_held} connections held at once; the cap is {max_connections}");
    ensure!(peak_fds < ceiling, "{peak_fds} open fds with {STORM} connections; expected fewer than {ceiling}");
    service.assert_serves().await.context("with the storm's connections still open")?;

    storm.shutdown().await;
    service.assert_serves().await.context("after the storm")?;
    assert_alive(pid)
}

/// Connections reset by the client, half-way through a message or right after
/// a whole one, leave the service serving the next client.
async fn assert_survives_resets(service: &impl Service, message: &[u8]) -> Result<()> {
    for bytes in [&message[..message.len() / 2], message] {
        for _ in 0..10 {
            let mut stream = TcpStream::connect(service.addr()).await?;
            let (server, client) = (service.addr().port(), stream.local_addr()?.port());
            stream.write_all(bytes).await?;
            // Reset only once the server has read the bytes, so it is in the
            // middle of the message (or of its answer) when the reset arrives.
            let read = || Ok(socket(server, client)?.is_none_or(|s| s.rx_queue == 0));
            eventually("the server to read the bytes", read).await?;
            stream.set_zero_linger()?;
            drop(stream);
        }
        service.assert_serves().await.context("after resets")?;
    }
    assert_alive(service.process().pid().as_raw())
}

// ---------------------------------------------------------------------------
// Process and kernel socket state.

fn open_fds(pid: i32) -> Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// Fails if the process has exited (it stays a zombie: nobody reaps it until the test ends).
fn assert_alive(pid: i32) -> Result<()> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("the process is gone")?;
    let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
    ensure!(!matches!(state, Some('Z' | 'X')), "the process has exited (state {state:?})");
    Ok(())
}

/// One IPv4 TCP socket as `/proc/net/tcp` shows it.
#[derive(Debug, Clone, Copy)]
struct Socket {
    local_port: u16,
    remote_port: u16,
    state: u8,
    /// Bytes received but not yet read by the application.
    rx_queue: u64,
    inode: u64,
}

const LISTEN: u8 = 0x0A;

fn tcp_sockets() -> Result<Vec<Socket>> {
    let hex_port = |addr: &str| -> Result<u16> {
        let (_, port) = addr.rsplit_once(':').context("address:port")?;
        Ok(u16::from_str_radix(port, 16)?)
    };
    let table = std::fs::read_to_string("/proc/net/tcp")?;
    let mut sockets = Vec::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, local, remote, state, queues, _, _, _, _, inode, ..] = fields[..] else {
            bail!("unexpected /proc/net/tcp line: {line}")
        };
        let (_, rx) = queues.split_once(':').context("tx_queue:rx_queue")?;
        sockets.push(Socket {
            local_port: hex_port(local)?,
            remote_port: hex_port(remote)?,
            state: u8::from_str_radix(state, 16)?,
            rx_queue: u64::from_str_radix(rx, 16)?,
            inode: inode.parse()?,
        });
    }
    Ok(sockets)
}

/// The loopback socket with local port `local` connected to remote port
/// `remote`, if it exists.
fn socket(local: u16, remote: u16) -> Result<Option<Socket>> {
    Ok(tcp_sockets()?.into_iter().find(|s| s.local_port == local && s.remote_port == remote))
}

/// Connections that process `pid` has accepted on its listening `port` and still holds.
fn held_connections(pid: i32, port: u16) -> Result<usize> {
    // Descriptors may close while they are listed: skip those that vanish.
    let inodes: HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))?
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok())
        .collect();
    // The table is read in pieces while it changes, so a socket may be listed twice.
    let accepted: HashSet<u64> =
        tcp_sockets()?.into_iter().filter(|s| s.local_port == port && s.state != LISTEN).map(|s| s.inode).collect();
    Ok(accepted.intersection(&inodes).count())
}

/// Polls kernel state, which announces nothing, until `condition` holds.
async fn eventually(what: &str, mut condition: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + PATIENCE;
    while !condition()? {
        ensure!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The registry.

#[tokio::test]
async fn registry_answers_broken_json_and_goes_on_or_hangs_up() -> Result<()> {
    let registry = RegistryFixture::start(&[], 1).await?;
    for case in framing_cases("expected a JSON object, got an array") {
        let mut conn = assert_rejected(registry.addr(), &case).await?;
        match case.after {
            After::Continues => assert_eq!(conn.exchange(LIST).await?, registry.listed(), "after {}", case.what),
            After::Closes => conn.replies.eof().await.with_context(|| format!("after {}", case.what))?,
        }
        registry.assert_serves().await?;
    }
    Ok(())
}

#[tokio::test]
async fn registry_names_the_field_of_the_wrong_type() -> Result<()> {
    let registry = RegistryFixture::start(&[], 1).await?;
    let cases = [
        (json!({"op":"heartbeat","id":5}), "field `id` must be a string, got a number"),
        (json!({"op":5}), "field `op` must be a string, got a number"),
    ];
    for (request, message) in cases {
        let bytes = request.to_string();
        assert_rejected(
            registry.addr(),
            &case("a wrong type", bytes.as_bytes(), bad_request(message), After::Continues),
        )
        .await?;
        registry.assert_serves().await?;
    }
    Ok(())
}

#[tokio::test]
async fn registry_refuses_bad_ports_and_ips_naming_the_field() -> Result<()> {
    let registry = RegistryFixture::start(&[], 1).await?;
    let port = |shown: &str| format!("field `puerto`: `{shown}` isn't a port number (1-65535)");
    let cases = [
        (json!({"op":"register","name":"p","puerto":0}), port("0")),
        (json!({"op":"register","name":"p","puerto":65536}), port("65536")),
        (json!({"op":"register","name":"p","puerto":"abc"}), port(r#""abc""#)),
        (json!({"op":"register","name":"p","puerto":-1}), port("-1")),
        (json!({"ip":"127.0.0.1","puerto":"abc"}), port(r#""abc""#)),
        (json!({"IP":"127.0.0.1","puerto":0}), port("0")),
        (json!({"op":"register","name":"p","puerto":"+8081"}), port(r#""+8081""#)),
        (json!({"op":"register","name":"p","puerto":" 8082 "}), port(r#"" 8082 ""#)),
        (json!({"ip":"127.0.0.1","puerto":"008083"}), port(r#""008083""#)),
        (
            json!({"op":"register","name":"p","puerto":1,"ip":"255.255.255.255"}),
            "field `ip`: `255.255.255.255` is the broadcast address: no peer can connect to it".into(),
        ),
        (
            json!({"ip":"224.0.0.1","puerto":1}),
            "field `ip`: `224.0.0.1` is a multicast address: no peer can connect to it".into(),
        ),
        (
            json!({"op":"register","name":"p","puerto":1,"ip":"999.1.1.1"}),
            "field `ip`: `999.1.1.1` isn't an IP address".into(),
        ),
        (
            json!({"op":"register","name":"p","puerto":1,"ip":"not-an-ip"}),
            "field `ip`: `not-an-ip` isn't an IP address".into(),
        ),
        (json!({"ip":"999.1.1.1","puerto":1}), "field `ip`: `999.1.1.1` isn't an IP address".into()),
        (json!({"IP":"not-an-ip","puerto":1}), "field `IP`: `not-an-ip` isn't an IP address".into()),
    ];
    for (request, message) in cases {
        let bytes = request.to_string();
        let mut conn = assert_rejected(
            registry.addr(),
            &case("a bad address", bytes.as_bytes(), bad_request(&message), After::Continues),
        )
        .await?;
        // Nothing was registered, and the connection goes on.
        assert_eq!(conn.exchange(LIST).await?, registry.listed(), "after {request}");
        registry.assert_serves().await?;
    }
    Ok(())
}

#[tokio::test]
async fn registry_refuses_look_alike_names_huge_ids_and_unbounded_groups() -> Result<()> {
    let registry = RegistryFixture::start(&[], 1).await?;
    let invisible = |code: &str| format!("field `name` must not contain control or invisible characters (U+{code})");
    let long_id = "field `id` is longer than 128 bytes".to_owned();
    let cases = [
        (json!({"op":"register","name":"a\u{200B}b","puerto":1}), invisible("200B")),
        (json!({"op":"lookup","name":"\u{202E}evil"}), invisible("202E")),
        (
            json!({"op":"register","name":"p","puerto":1,"group":4_294_967_295u64}),
            "field `group`: `4294967295` isn't a group number (1-100000)".into(),
        ),
        (json!({"op":"heartbeat","id":"i".repeat(65_000)}), long_id.clone()),
        (json!({"op":"deregister","id":"i".repeat(129)}), long_id),
    ];
    for (request, message) in cases {
        let bytes = request.to_string();
        let mut conn = assert_rejected(
            registry.addr(),
            &case("a look-alike or oversized value", bytes.as_bytes(), bad_request(&message), After::Continues),
        )
        .await?;
        assert_eq!(conn.exchange(LIST).await?, registry.listed(), "after {}", &bytes[..bytes.len().min(80)]);
    }
    // An unknown id of the largest accepted size is named, and no more.
    let id = "i".repeat(128);
    let reply = exchange(registry.addr(), json!({"op":"heartbeat","id":id}).to_string().as_bytes()).await?;
    assert_eq!(reply["error"]["code"], "unknown_id", "{reply}");
    assert!(reply.to_string().len() < 200, "the id is truncated in the reply: {reply}");
    registry.assert_serves().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_refuses_a_10_mib_message_and_keeps_serving() -> Result<()> {
    let registry = RegistryFixture::start(&[], 1).await?;
    assert_too_large_is_refused(&registry).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_closes_silent_connections() -> Result<()> {
    let registry = RegistryFixture::start(&["--idle-timeout", "300ms"], 1).await?;
    assert_silent_connections_are_closed(&registry, Duration::from_millis(300)).await
}

/// A client that pipelines `list` requests on one connection, as fast as the
/// server takes them, and never reads a reply.
struct NeverReads {
    reader: OwnedReadHalf,
    /// Requests written so far.
    sent: Arc<AtomicUsize>,
    /// Writes until the server hangs up, and returns the write error.
    pipeline: JoinHandle<std::io::Error>,
    peek: Vec<u8>,
}

impl NeverReads {
    async fn start(server: SocketAddr) -> Result<Self> {
        let (reader, mut writer) = TcpStream::connect(server).await?.into_split();
        let sent = Arc::new(AtomicUsize::new(0));
        let pipeline = tokio::spawn({
            let (sent, batch) = (sent.clone(), LIST.repeat(100));
            async move {
                loop {
                    if let Err(error) = writer.write_all(&batch).await {
                        return error;
                    }
                    sent.fetch_add(100, Ordering::Relaxed);
                }
            }
        });
        Ok(Self { reader, sent, pipeline, peek: vec![0; 16 * 1024 * 1024] })
    }

    /// Requests written, and reply bytes waiting unread (looked at, not taken).
    async fn progress(&mut self) -> Result<(usize, usize)> {
        let unread = timeout(PATIENCE, self.reader.peek(&mut self.peek)).await.context("no reply ever arrived")??;
        Ok((self.sent.load(Ordering::Relaxed), unread))
    }

    /// Whether the server has hung up: it resets the connection, since it
    /// leaves requests unread.
    fn dropped(&self) -> Result<bool> {
        Ok(self.pipeline.is_finished() || self.reader.as_ref().take_error()?.is_some())
    }

    /// Waits until the server is blocked writing to us: it neither takes our
    /// requests nor sends more replies, from one look to the next. False if it
    /// hung up first.
    async fn wait_until_stuck(&mut self) -> Result<bool> {
        let deadline = Instant::now() + PATIENCE;
        let mut last = None;
        while !self.dropped()? {
            let now = self.progress().await?;
            if last == Some(now) {
                return Ok(true);
            }
            ensure!(Instant::now() < deadline, "the server never got stuck on a client that never reads");
            last = Some(now);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(false)
    }

    /// Waits for the server to hang up, which makes our writes fail.
    async fn hung_up(self) -> Result<(usize, std::io::Error)> {
        let error = timeout(PATIENCE, self.pipeline).await.context("the server never dropped the stuck client")??;
        Ok((self.sent.load(Ordering::Relaxed), error))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_drops_a_client_that_never_reads_and_serves_others_meanwhile() -> Result<()> {
    let _exclusive = EXCLUSIVE.lock().await;
    // A long idle timeout: only the write timeout can close the stuck connection within PATIENCE.
    let registry = RegistryFixture::start(&["--write-timeout", "300ms", "--idle-timeout", "10m"], 100).await?;
    // The stuck spell lasts 300 ms: a loaded machine may miss it, so try again
    // a few times. A server that stalled everyone while stuck fails every time.
    let mut misses = Vec::new();
    for _ in 0..5 {
        let mut stuck = NeverReads::start(registry.addr()).await?;
        if !stuck.wait_until_stuck().await? {
            misses.push("it was dropped before it was seen stuck".to_owned());
            continue;
        }
        let started = Instant::now();
        registry.assert_serves().await.context("while a client was stuck")?;
        let took = started.elapsed();
        if stuck.dropped()? {
            misses.push(format!("a fresh client took {took:?}, and the stuck one was dropped meanwhile"));
            continue;
        }

        let (sent, error) = stuck.hung_up().await?;
        eprintln!("stuck client: a fresh one was served in {took:?}; {sent} requests went out before `{error}`");
        ensure!(
            matches!(error.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
            "expected the server to reset the stuck connection, got {error}"
        );
        ensure!(sent >= 2000, "only {sent} requests went out before the server hung up");
        return registry.assert_serves().await;
    }
    bail!("no fresh client was served while the server was stuck on a client that never reads: {misses:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_survives_thousands_of_connections_within_its_fd_budget() -> Result<()> {
    let _exclusive = EXCLUSIVE.lock().await;
    let registry = RegistryFixture::start(&["--max-pending-per-ip", "64"], 1).await?;
    assert_survives_a_connection_storm(&registry, 64).await
}

#[tokio::test]
async fn registry_survives_connections_reset_mid_message() -> Result<()> {
    let registry = RegistryFixture::start(&[], 1).await?;
    assert_survives_resets(&registry, br#"{"op":"lookup","name":"entry-000"}"#).await
}

// ---------------------------------------------------------------------------
// The node's greeting listener: one message per connection, then it hangs up.

#[tokio::test]
async fn node_answers_broken_json_with_an_error_and_hangs_up() -> Result<()> {
    let node = NodeFixture::start(&[]).await?;
    for case in framing_cases("expected a greeting object, got an array") {
        let mut conn = assert_rejected(node.addr(), &case).await?;
        conn.replies.eof().await.with_context(|| format!("after {}", case.what))?;
        node.assert_serves().await?;
    }
    Ok(())
}

/// Bare text (its first byte a letter or a digit) is the group lab's dialect
/// (tests/tests/lab.rs): what is no command of it is hung up on, unanswered.
#[tokio::test]
async fn node_hangs_up_on_bare_text_that_is_no_command_of_the_group_lab() -> Result<()> {
    let node = NodeFixture::start(&[]).await?;
    for text in [&b"42"[..], b"GET / HTTP/1.1\r\n\r\n", b"ACK"] {
        let mut conn = Raw::connect(node.addr()).await?;
        conn.send(text).await?;
        conn.replies.eof().await.with_context(|| format!("after {:?}", String::from_utf8_lossy(text)))?;
        node.assert_serves().await?;
    }
    Ok(())
}

#[tokio::test]
async fn node_refuses_bad_greetings_naming_the_field() -> Result<()> {
    let node = NodeFixture::start(&[]).await?;
    let port = |shown: &str| format!("field `puerto`: `{shown}` isn't a port number (1-65535)");
    let greeting = |ip: &str, puerto: Value| json!({"mensaje":"Hola, soy un nodo C","ip":ip,"puerto":puerto});
    let cases = [
        (json!({"ip":"127.0.0.1","puerto":"9"}), "a greeting needs a `mensaje` field".to_owned()),
        (greeting("127.0.0.1", json!(0)), port("0")),
        (greeting("127.0.0.1", json!("abc")), port(r#""abc""#)),
        (greeting("127.0.0.1", json!(65536)), port("65536")),
        (greeting("127.0.0.1", json!(-1)), port("-1")),
        (greeting("999.1.1.1", json!("9")), "field `ip`: `999.1.1.1` isn't an IP address".into()),
        (greeting("not-an-ip", json!("9")), "field `ip`: `not-an-ip` isn't an IP address".into()),
        (greeting("127.0.0.1", json!("+9")), port(r#""+9""#)),
        (greeting("127.0.0.1", json!("009")), port(r#""009""#)),
        (greeting("224.0.0.1", json!(9)), "`224.0.0.1` is a multicast address: no peer can connect to it".into()),
        (
            json!({"mensaje":"Hola, soy un nodo C","puerto":9,"id":"i".repeat(60_000)}),
            "field `id` is longer than 128 bytes".into(),
        ),
    ];
    let count = cases.len();
    for (greeting, message) in cases {
        let bytes = greeting.to_string();
        let mut conn = assert_rejected(
            node.addr(),
            &case("a bad greeting", bytes.as_bytes(), bad_request(&message), After::Closes),
        )
        .await?;
        conn.replies.eof().await?;
        node.assert_serves().await?;
    }
    // Only the valid greetings were taken as greetings.
    node.node.process.wait_for_nth_event(Event::GreetingReceived, count).await?;
    assert_eq!(node.node.process.events(Event::GreetingReceived).len(), count);
    Ok(())
}

#[tokio::test]
async fn node_accepts_a_greeting_with_a_string_port() -> Result<()> {
    let node = NodeFixture::start(&[]).await?;
    let mut conn = Raw::connect(node.addr()).await?;
    let from = conn.writer.local_addr()?;
    assert_eq!(conn.exchange(GREETING).await?, node.welcome());
    conn.replies.eof().await?;
    let received = node.node.process.wait_for_event(Event::GreetingReceived).await?;
    assert_eq!(received["peer_addr"], "127.0.0.1:9", "{received}");
    assert_eq!(received["from"], from.to_string(), "{received}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_refuses_a_10_mib_message_and_keeps_serving() -> Result<()> {
    let node = NodeFixture::start(&[]).await?;
    assert_too_large_is_refused(&node).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_closes_silent_connections() -> Result<()> {
    let node = NodeFixture::start(&["--reply-timeout", "300ms"]).await?;
    assert_silent_connections_are_closed(&node, Duration::from_millis(300)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_survives_thousands_of_connections_within_its_fd_budget() -> Result<()> {
    let _exclusive = EXCLUSIVE.lock().await;
    let node = NodeFixture::start(&["--max-pending-per-ip", "64"]).await?;
    assert_survives_a_connection_storm(&node, 64).await
}

#[tokio::test]
async fn node_survives_connections_reset_mid_message() -> Result<()> {
    let node = NodeFixture::start(&[]).await?;
    assert_survives_resets(&node, GREETING).await
}
