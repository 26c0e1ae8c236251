//! An async client for the registry, used by the node, the launcher and the tests.
//!
//! One `Client` is one connection; requests on it are answered in order. It
//! is secure ([`Client::connect_secure`]: the registry then knows the key
//! this client proved) or plaintext ([`Client::connect`]). A registration may
//! also be answered by an original HIT6 registry (a bare array) or by the
//! `clientes` variant; `register` tells them apart.
//!
//! [`RegistryAddr`] is where one registry listens; [`Registries`], the
//! replicas of one, in the order a client tries them.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::Framed;

use wire::codec::{Decoded, FrameError, LinkCodec, MAX_REPLY_BYTES};
use wire::envelope::{self, Opened};
use wire::fields::{parse_ip, parse_port};
use wire::secure::{self, HandshakeError, Keys, PublicKey};

use crate::protocol::{
    Contact, ErrorBody, ErrorCode, Found, GroupView, Hello, Listed, NativeRequest, Registered, Renewed, Secure, Since,
};
use crate::watch::{Change, WatchEvent, Watching, PROGRESS_EVERY};

/// Where the registry listens: a host name or ip, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryAddr {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for RegistryAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `HOST:PORT` (`[v6]:PORT` for IPv6), as command lines take it.
impl std::str::FromStr for RegistryAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (host, port) = text.rsplit_once(':').ok_or_else(|| format!("`{text}` isn't HOST:PORT"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("`{text}` has no host"));
        }
        Ok(RegistryAddr { host: host.to_owned(), port: wire::cli::port(port)? })
    }
}

impl From<SocketAddr> for RegistryAddr {
    fn from(addr: SocketAddr) -> Self {
        Self { host: addr.ip().to_string(), port: addr.port() }
    }
}

/// Replicas of one registry, in the order a client tries them: never
/// empty, at most [`Registries::MAX`], none twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registries(Vec<RegistryAddr>);

/// A list of registries that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistriesError {
    #[error("the list of registries `{list}` has an empty entry")]
    EmptyEntry { list: String },
    #[error("registry `{entry}`: {reason}")]
    Entry { entry: String, reason: String },
    #[error("registry `{entry}` names no port: write it HOST:PORT ([v6]:PORT), or give the port of those without one")]
    NoPort { entry: String },
    #[error("{count} registries are more than the {max} a client tries", max = Registries::MAX)]
    TooMany { count: usize },
    #[error("registry `{entry}` is listed twice")]
    Twice { entry: String },
}

impl Registries {
    /// Replicas a list may name at most: a client walks them all before
    /// backing off, so a long list would only make a dead membership slow to notice.
    pub const MAX: usize = 16;

    /// Parses a comma-separated list of `host`, `host:port`, `[v6]:port`
    /// (or a bare IPv6 address, without a port); an entry without a port
    /// takes `port`, which is then required.
    pub fn parse(list: &str, port: Option<u16>) -> Result<Registries, RegistriesError> {
        let entries: Vec<&str> = list.split(',').map(str::trim).collect();
        if entries.len() > Self::MAX {
            return Err(RegistriesError::TooMany { count: entries.len() });
        }
        let mut registries: Vec<RegistryAddr> = Vec::with_capacity(entries.len());
        for text in entries {
            if text.is_empty() {
                return Err(RegistriesError::EmptyEntry { list: list.to_owned() });
            }
            let addr = entry(text, port)?;
            if registries.contains(&addr) {
                return Err(RegistriesError::Twice { entry: addr.to_string() });
            }
            registries.push(addr);
        }
        Ok(Registries(registries))
    }

    pub fn as_slice(&self) -> &[RegistryAddr] {
        &self.0
    }
}

/// One entry of a list: `host:port` and `[v6]:port` as [`RegistryAddr`]
/// parses them; `host`, `[v6]` and a bare IPv6 address (which has no room
/// for a port) take `port`.
fn entry(text: &str, port: Option<u16>) -> Result<RegistryAddr, RegistriesError> {
    let bad = |reason: &str| RegistriesError::Entry { entry: text.to_owned(), reason: reason.to_owned() };
    let host = match text.strip_prefix('[') {
        Some(bracketed) => {
            let (v6, rest) = bracketed.split_once(']').ok_or_else(|| bad("`[` without `]`"))?;
            if v6.parse::<Ipv6Addr>().is_err() {
                return Err(bad("only an IPv6 address goes in brackets"));
            }
            rest.is_empty().then_some(v6)
        }
        None if text.parse::<Ipv6Addr>().is_ok() => Some(text),
        None if text.matches(':').count() > 1 => return Err(bad("an IPv6 address with a port is written [v6]:PORT")),
        None => (!text.contains(':')).then_some(text),
    };
    match host {
        Some(host) => {
            let port = port.ok_or_else(|| RegistriesError::NoPort { entry: text.to_owned() })?;
            Ok(RegistryAddr { host: host.to_owned(), port })
        }
        None => text.parse().map_err(|reason| RegistriesError::Entry { entry: text.to_owned(), reason }),
    }
}

/// Every entry with its port: `HOST:PORT[,HOST:PORT...]`, as `node send --registry` takes it.
impl std::str::FromStr for Registries {
    type Err = RegistriesError;

    fn from_str(list: &str) -> Result<Self, RegistriesError> {
        Registries::parse(list, None)
    }
}

/// The list as it is parsed back: comma-separated, IPv6 hosts in brackets.
impl fmt::Display for Registries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, addr) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            addr.fmt(f)?;
        }
        Ok(())
    }
}

impl From<RegistryAddr> for Registries {
    fn from(addr: RegistryAddr) -> Self {
        Registries(vec![addr])
    }
}

impl From<&RegistryAddr> for Registries {
    fn from(addr: &RegistryAddr) -> Self {
        Registries(vec![addr.clone()])
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("failed to connect to the registry at {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to open a secure session with the registry at {addr}")]
    Handshake {
        addr: String,
        #[source]
        source: HandshakeError,
    },
    #[error("the registry at {addr} did not answer `{op}` within {timeout:?}")]
    Timeout { addr: String, op: &'static str, timeout: Duration },
    #[error("the registry at {addr} closed the connection before answering `{op}`")]
    Closed { addr: String, op: &'static str },
    #[error("failed to exchange `{op}` with the registry at {addr}")]
    Exchange {
        addr: String,
        op: &'static str,
        #[source]
        source: FrameError,
    },
    #[error("the registry at {addr} sent an unexpected reply to `{op}`: {detail}")]
    Unexpected { addr: String, op: &'static str, detail: String },
    #[error("the registry refused `{op}`")]
    Refused {
        op: &'static str,
        #[source]
        error: ErrorBody,
    },
}

impl ClientError {
    /// The registry's error code, when it answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { error, .. } => Some(error.code),
            _ => None,
        }
    }

    /// Whether the registry gave no answer to the request itself: the
    /// session broke, or a replica could not reach the store it shares
    /// (`unavailable`). Either way another replica may answer.
    pub fn is_unanswered(&self) -> bool {
        !matches!(self, ClientError::Refused { .. }) || self.code() == Some(ErrorCode::Unavailable)
    }
}

/// What a registration returned, whichever registry answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// A registry of ours: a lease to renew, and the earlier contacts.
    Leased(Box<Registered>),
    /// An original HIT6 registry or the `clientes` variant: no lease, no ids,
    /// and nothing else may be asked of it.
    Original(Vec<SocketAddr>),
}

/// Who answered a [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probed {
    /// A registry of ours: a secure session is next.
    Ours,
    /// An original HIT6 registry (or the `clientes` variant), which took
    /// the hello as the node's registration: its earlier contacts.
    Original(Vec<SocketAddr>),
}

pub struct Client {
    framed: Framed<TcpStream, LinkCodec>,
    addr: String,
    timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("addr", &self.addr).field("remote", &self.framed.codec().remote()).finish()
    }
}

impl Client {
    /// Connects in plaintext, giving up after `timeout`, which also bounds each request.
    pub async fn connect(addr: &RegistryAddr, timeout: Duration) -> Result<Client, ClientError> {
        let stream = Self::tcp(addr, timeout).await?;
        Ok(Client { framed: Framed::new(stream, LinkCodec::plain(MAX_REPLY_BYTES)), addr: addr.to_string(), timeout })
    }

    /// Connects and opens a secure session as `keys`, all within `timeout`,
    /// which also bounds each request.
    pub async fn connect_secure(addr: &RegistryAddr, keys: &Keys, timeout: Duration) -> Result<Client, ClientError> {
        Client::connect_pinned(addr, keys, None, timeout).await
    }

    /// As [`Client::connect_secure`]; with `pinned`, a registry that proves
    /// another key is refused before anything is sent to it.
    pub async fn connect_pinned(
        addr: &RegistryAddr,
        keys: &Keys,
        pinned: Option<PublicKey>,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let name = addr.to_string();
        let open = async {
            let mut stream = Self::tcp(addr, timeout).await?;
            let session = secure::initiate(&mut stream, keys, pinned)
                .await
                .map_err(|source| ClientError::Handshake { addr: name.clone(), source })?;
            Ok(Framed::new(stream, LinkCodec::sealed(session, MAX_REPLY_BYTES)))
        };
        match tokio::time::timeout(timeout, open).await {
            Ok(Ok(framed)) => Ok(Client { framed, addr: name, timeout }),
            Ok(Err(ClientError::Handshake { source: HandshakeError::Refused { said }, addr })) => {
                Err(refused_in_plaintext(&addr, "handshake", said))
            }
            Ok(Err(error)) => Err(error),
            Err(_) => Err(ClientError::Timeout { addr: name, op: "handshake", timeout }),
        }
    }

    async fn tcp(addr: &RegistryAddr, timeout: Duration) -> Result<TcpStream, ClientError> {
        let name = addr.to_string();
        let stream = match tokio::time::timeout(timeout, TcpStream::connect((addr.host.as_str(), addr.port))).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => return Err(ClientError::Connect { addr: name, source }),
            Err(_) => return Err(ClientError::Timeout { addr: name, op: "connect", timeout }),
        };
        // Requests are small and answered one at a time: send them at once.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// The ip of our end of the connection: the one the registry sees us at, barring NAT.
    pub fn local_ip(&self) -> Result<IpAddr, ClientError> {
        let local = self.framed.get_ref().local_addr();
        local.map(|addr| addr.ip()).map_err(|source| ClientError::Connect { addr: self.addr.clone(), source })
    }

    pub async fn register(&mut self, request: &NativeRequest<'_>) -> Result<Joined, ClientError> {
        let op = "register";
        let reply = self.call(op, request).await?;
        match self.original(op, reply)? {
            Ok(contacts) => Ok(Joined::Original(contacts)),
            Err(reply) => {
                let registered: Registered = self.success(op, reply)?;
                if registered.tickets.as_ref().is_some_and(|tickets| tickets.len() != registered.contactos.len()) {
                    return Err(self.unexpected(op, "`tickets` does not match `contactos` one for one"));
                }
                Ok(Joined::Leased(Box::new(registered)))
            }
        }
    }

    /// Sends a [`Hello`], on a plaintext connection: whoever answers it is
    /// one of ours, or an original registry that has just registered the
    /// node it names.
    pub async fn hello(&mut self, hello: &Hello) -> Result<Probed, ClientError> {
        let op = "hello";
        let reply = self.call(op, hello).await?;
        match self.original(op, reply)? {
            Ok(contacts) => Ok(Probed::Original(contacts)),
            Err(reply) => self.success::<Secure>(op, reply).map(|_| Probed::Ours),
        }
    }

    /// The contacts of an original registry's reply (a bare array, or
    /// `{"clientes":[...]}`), or the reply when it is not one.
    fn original(&self, op: &'static str, reply: Value) -> Result<Result<Vec<SocketAddr>, Value>, ClientError> {
        match reply {
            Value::Array(contacts) => Ok(Ok(original_contacts(&contacts, "ip"))),
            Value::Object(mut fields) if !fields.contains_key("ok") && fields.contains_key("clientes") => {
                match fields.remove("clientes") {
                    Some(Value::Array(contacts)) => Ok(Ok(original_contacts(&contacts, "IP"))),
                    _ => Err(self.unexpected(op, "`clientes` is not an array")),
                }
            }
            reply => Ok(Err(reply)),
        }
    }

    pub async fn heartbeat(&mut self, id: &str) -> Result<Duration, ClientError> {
        let op = "heartbeat";
        let reply = self.call(op, &NativeRequest::Heartbeat { id }).await?;
        self.success::<Renewed>(op, reply).map(|r| Duration::from_millis(r.ttl_ms))
    }

    pub async fn deregister(&mut self, id: &str) -> Result<Contact, ClientError> {
        let op = "deregister";
        let reply = self.call(op, &NativeRequest::Deregister { id }).await?;
        self.success::<Found>(op, reply).map(|f| f.entry)
    }

    pub async fn lookup(&mut self, name: &str) -> Result<Contact, ClientError> {
        let op = "lookup";
        let reply = self.call(op, &NativeRequest::Lookup { name }).await?;
        self.success::<Found>(op, reply).map(|f| f.entry)
    }

    /// The entry listening at `addr`.
    pub async fn lookup_addr(&mut self, addr: SocketAddr) -> Result<Contact, ClientError> {
        let op = "lookup";
        let reply = self.call(op, &NativeRequest::LookupAddr { ip: addr.ip(), puerto: addr.port() }).await?;
        self.success::<Found>(op, reply).map(|f| f.entry)
    }

    pub async fn list(&mut self) -> Result<Vec<Contact>, ClientError> {
        self.listed().await.map(|listed| listed.contactos)
    }

    /// The live entries, and which of them have fallen silent.
    pub async fn listed(&mut self) -> Result<Listed, ClientError> {
        let op = "list";
        let reply = self.call(op, &NativeRequest::List).await?;
        self.success::<Listed>(op, reply)
    }

    /// The coordinator and live members of `group`.
    pub async fn group(&mut self, group: u32) -> Result<GroupView, ClientError> {
        let op = "group";
        let reply = self.call(op, &NativeRequest::Group { group }).await?;
        self.success(op, reply)
    }

    /// Watches the membership: from a snapshot, or after `since`. The
    /// connection carries nothing else from then on.
    pub async fn watch(mut self, since: Option<&Since>) -> Result<Watch, ClientError> {
        let op = "watch";
        let request =
            NativeRequest::Watch { since: since.map(|s| s.revision), epoch: since.and_then(|s| s.epoch.as_deref()) };
        let reply = self.call(op, &request).await?;
        let start = self.success(op, reply)?;
        Ok(Watch { client: self, start, ended: None })
    }

    async fn call<R: Serialize>(&mut self, op: &'static str, request: &R) -> Result<Value, ClientError> {
        let exchange = async {
            self.framed.send(request).await?;
            self.framed.next().await.transpose()
        };
        let reply = match timeout(self.timeout, exchange).await {
            Err(_) => return Err(ClientError::Timeout { addr: self.addr.clone(), op, timeout: self.timeout }),
            Ok(Err(source)) => return Err(ClientError::Exchange { addr: self.addr.clone(), op, source }),
            Ok(Ok(None)) => return Err(ClientError::Closed { addr: self.addr.clone(), op }),
            Ok(Ok(Some(reply))) => reply,
        };
        reply.map_err(|malformed| self.unexpected(op, &malformed.to_string()))
    }

    /// Unwraps `{"ok":true,...}` into `T`, and `{"ok":false,"error":...}` into `Refused`.
    fn success<T: DeserializeOwned>(&self, op: &'static str, reply: Value) -> Result<T, ClientError> {
        match envelope::open(reply) {
            Ok(Opened::Ok(fields)) => {
                serde_json::from_value(Value::Object(fields)).map_err(|e| self.unexpected(op, &e.to_string()))
            }
            Ok(Opened::Refused(error)) => Err(ClientError::Refused { op, error }),
            Ok(Opened::Bare(_)) => Err(self.unexpected(op, "no boolean `ok` field")),
            Err(error) => Err(self.unexpected(op, &error.to_string())),
        }
    }

    fn unexpected(&self, op: &'static str, detail: &str) -> ClientError {
        ClientError::Unexpected { addr: self.addr.clone(), op, detail: detail.to_owned() }
    }

    /// Reads a message of a watch: a change, or how the registry ended the watch.
    fn change(&self, next: Option<Result<Decoded, FrameError>>) -> Result<WatchEvent, ClientError> {
        let op = "watch";
        let message = match next {
            None => return Err(ClientError::Closed { addr: self.addr.clone(), op }),
            Some(Err(source)) => return Err(ClientError::Exchange { addr: self.addr.clone(), op, source }),
            Some(Ok(Err(malformed))) => return Err(self.unexpected(op, &malformed.to_string())),
            Some(Ok(Ok(message))) => message,
        };
        if message.get("ok").is_some() {
            return Err(match self.success::<serde::de::IgnoredAny>(op, message) {
                Err(refused) => refused,
                Ok(_) => self.unexpected(op, "a second start in the middle of the changes"),
            });
        }
        serde_json::from_value(message).map_err(|e| self.unexpected(op, &e.to_string()))
    }
}

/// A watch ([`Client::watch`]): how it started, then the changes one by
/// one, or as many at a time as have arrived.
#[derive(Debug)]
pub struct Watch {
    client: Client,
    pub start: Watching,
    /// How the watch ended, met while reading ahead ([`Watch::next_batch`]):
    /// told after the changes that came before it.
    ended: Option<ClientError>,
}

impl Watch {
    /// The next change, however long it takes to come; the registry's
    /// `progress` messages are read and skipped, and without even one of
    /// them for three [`PROGRESS_EVERY`] periods the connection counts as
    /// dead (`Timeout`). Once the registry ends the watch, an error:
    /// `lagging` (watch again with `since`), or the connection closed.
    pub async fn next(&mut self) -> Result<WatchEvent, ClientError> {
        loop {
            let event = self.next_message().await?;
            if event.change != Change::Progress {
                return Ok(event);
            }
        }
    }

    /// The next change as [`Watch::next`] gives it, then those that have
    /// already arrived behind it, read without waiting: `max` at most in all.
    /// The registry sends the changes made close together in one write, so
    /// a burst of changes is read a batch at a time rather than one by one.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<WatchEvent>, ClientError> {
        let mut batch = vec![self.next().await?];
        while batch.len() < max {
            let Some(next) = self.client.framed.next().now_or_never() else { break };
            match self.client.change(next) {
                Ok(event) if event.change == Change::Progress => {}
                Ok(event) => batch.push(event),
                Err(error) => {
                    self.ended = Some(error);
                    break;
                }
            }
        }
        Ok(batch)
    }

    async fn next_message(&mut self) -> Result<WatchEvent, ClientError> {
        if let Some(ended) = self.ended.take() {
            return Err(ended);
        }
        let client = &mut self.client;
        let patience = PROGRESS_EVERY * 3;
        let Ok(next) = timeout(patience, client.framed.next()).await else {
            return Err(ClientError::Timeout { addr: client.addr.clone(), op: "watch", timeout: patience });
        };
        client.change(next)
    }
}

/// The registry refused the handshake in plaintext: a wrong or missing join
/// token, or a first message it took for a replay or dated too far off. Nothing authenticates it, so it counts as an `unauthorized`
/// refusal and nothing else, whatever it says: at worst an attacker on the
/// path makes the node retry, as a reset would.
fn refused_in_plaintext(addr: &str, op: &'static str, said: String) -> ClientError {
    let refusal = serde_json::from_str(&said).ok().and_then(|reply| match envelope::open(reply) {
        Ok(Opened::Refused(error)) if error.code == ErrorCode::Unauthorized => Some(error),
        _ => None,
    });
    match refusal {
        Some(error) => ClientError::Refused { op, error },
        None => ClientError::Handshake { addr: addr.to_owned(), source: HandshakeError::Refused { said } },
    }
}

/// Contacts of an original reply. Entries without a usable address cannot be
/// greeted; they are skipped so that the valid ones still are.
fn original_contacts(contacts: &[Value], ip_key: &str) -> Vec<SocketAddr> {
    contacts
        .iter()
        .filter_map(|contact| {
            let ip = parse_ip(contact.get(ip_key), ip_key)
                .ok()
                .flatten()
                .filter(|ip| wire::fields::check_peer_ip(*ip).is_ok());
            let port = contact.get("puerto").and_then(|p| parse_port(p, "puerto").ok());
            let addr = ip.zip(port).map(|(ip, port)| SocketAddr::new(ip, port));
            if addr.is_none() {
                tracing::debug!(%contact, "skipped a contact without a usable address");
            }
            addr
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A registry that answers a watch with `said`, all in one write, then hangs up.
    async fn registry_saying(said: &'static str) -> RegistryAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().into();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 256];
            let _ = stream.read(&mut request).await.unwrap();
            stream.write_all(said.as_bytes()).await.unwrap();
        });
        addr
    }

    #[tokio::test]
    async fn a_batch_is_the_changes_already_received_and_how_the_watch_ended_comes_after_them() {
        let addr = registry_saying(concat!(
            r#"{"ok":true,"epoch":"e","revision":0,"start":"resumed"}"#,
            r#"{"revision":1,"event":"coordinator","group":1,"coordinator":null}"#,
            r#"{"revision":1,"event":"progress"}"#,
            r#"{"revision":2,"event":"coordinator","group":2,"coordinator":null}"#,
            r#"{"revision":3,"event":"coordinator","group":3,"coordinator":null}"#,
            r#"{"ok":false,"error":{"code":"lagging","message":"watch again with since 3"}}"#,
        ))
        .await;
        let client = Client::connect(&addr, Duration::from_secs(5)).await.unwrap();
        let mut watch = client.watch(Some(&Since { revision: 0, epoch: None })).await.unwrap();
        let revisions = |batch: Vec<WatchEvent>| batch.iter().map(|event| event.revision).collect::<Vec<_>>();
        assert_eq!(revisions(watch.next_batch(2).await.unwrap()), [1, 2], "at most 2, progress skipped");
        assert_eq!(revisions(watch.next_batch(10).await.unwrap()), [3]);
        assert_eq!(watch.next_batch(10).await.unwrap_err().code(), Some(ErrorCode::Lagging));
        assert!(matches!(watch.next().await, Err(ClientError::Closed { .. })));
    }

    #[test]
    fn registry_addresses_parse_from_the_command_line() {
        assert_eq!("10.0.0.1:8086".parse::<RegistryAddr>().unwrap().to_string(), "10.0.0.1:8086");
        assert_eq!("[::1]:8086".parse::<RegistryAddr>().unwrap().host, "::1");
        assert!("vm1".parse::<RegistryAddr>().unwrap_err().contains("HOST:PORT"));
        assert!("vm1:0".parse::<RegistryAddr>().unwrap_err().contains("isn't a port number"));
        assert!(":80".parse::<RegistryAddr>().unwrap_err().contains("no host"));
    }

    #[test]
    fn a_list_of_registries_takes_the_default_port_where_an_entry_names_none() {
        let list = |text: &str, port| Registries::parse(text, port).map(|list| list.to_string());
        assert_eq!(list("10.0.0.1", Some(8080)).unwrap(), "10.0.0.1:8080", "the lab's `ip port`");
        assert_eq!(list("a:1, b ,[::1]:3,[fe80::2],::1", Some(9)).unwrap(), "a:1,b:9,[::1]:3,[fe80::2]:9,[::1]:9");
        assert_eq!(list("a:1,[::1]:3", None).unwrap(), "a:1,[::1]:3", "no default needed");
        let parsed = Registries::parse("::1", Some(80)).unwrap();
        assert_eq!(parsed.as_slice(), [RegistryAddr { host: "::1".into(), port: 80 }]);
        assert_eq!(
            "a:1,b:2".parse::<Registries>().unwrap().to_string().parse::<Registries>().unwrap().as_slice().len(),
            2
        );
    }

    #[test]
    fn a_bad_list_of_registries_says_which_entry_is_wrong() {
        let error = |text: &str, port| Registries::parse(text, port).unwrap_err().to_string();
        assert_eq!(
            error("a:1,b", None),
            "registry `b` names no port: write it HOST:PORT ([v6]:PORT), or give the port of those without one"
        );
        assert_eq!(error("a,,b", Some(1)), "the list of registries `a,,b` has an empty entry");
        assert_eq!(error("a:1,", None), "the list of registries `a:1,` has an empty entry");
        assert!(error("a:70000", None).contains("`70000` isn't a port number"), "{}", error("a:70000", None));
        assert!(error(":80", None).contains("no host"));
        assert!(error("fe80::1:2:x", None).contains("[v6]:PORT"));
        assert!(error("[name]:80", None).contains("only an IPv6 address goes in brackets"));
        assert!(error("[::1:80", None).contains("without `]`"));
        assert_eq!(error("a:1,b,a:1", Some(2)), "registry `a:1` is listed twice");
        assert_eq!(error("a,a:7", Some(7)), "registry `a:7` is listed twice");
        let many = (1..=17).map(|i| format!("h{i}:1")).collect::<Vec<_>>().join(",");
        assert_eq!(error(&many, None), "17 registries are more than the 16 a client tries");
        assert!(Registries::parse(&many.replace(",h17:1", ""), None).is_ok());
    }
}
