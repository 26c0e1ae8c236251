//! A session with the registry kept between requests, so that a request
//! costs no TCP or Noise handshake and never queues behind strangers'
//! connections. When the session breaks (the registry restarted, or closed
//! it while idle) the request is sent once more on a fresh one.
//!
//! The registry may run as replicas sharing one membership ([`Replicas`]).
//! A fresh session goes to the replica used last; when that one cannot open
//! one (refused, reset, closed, silent, busy, or not proving the pinned key),
//! to the next ones in order, wrapping around, at once, and only when none
//! can does the caller back off. A replica that let a session time out is
//! tried last, since a paused one still accepts connections. Each replica
//! is held to the same pinned key, so one proving another is skipped, never
//! believed, and makes no other believed either: skipping it trusts nothing
//! more, while stopping there would let whoever can intercept one replica
//! keep the node from the others. A node's links share which replica is in
//! use: whichever notices a dead one first (the watch, as soon as its
//! connection closes) moves them all (`registry_moved`), and the others'
//! next request goes straight to the new one.
//!
//! Without a join token or a pinned key, the registry may be an original
//! HIT6 one, which dies on the first byte of a handshake: the node's first
//! registration is a [`Hello`] ([`RegistryLink::hello`]), which an original
//! registry takes as the node's registration and ours answers without
//! registering anything. Once the registry is known to be ours (it said so,
//! or a secure session opened), sessions are secure only.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use registry::client::{Client, ClientError, Probed, Registries, RegistryAddr};
use registry::protocol::Hello;
use tokio::sync::{watch, Mutex};
use tokio::time::Instant;
use wire::secure::{Keys, PublicKey};
use wire::Chain;

use crate::events;

/// Runs `$op` with `$client` on `$link`'s kept session, or on a new one
/// ([`RegistryLink::connect`]: with the replica in use, or the next that
/// opens one); when the kept one has broken, once more on a new one. Only
/// idempotent requests may go through it (a registration is, by its
/// incarnation), as a request sent on a session that broke may have
/// arrived all the same.
///
/// So the request that finds the session broken is the first one a replica
/// the link moves to hears on the new session: for a node's membership, its
/// heartbeat, with its id.
///
/// A session given up on is closed only once the request has been sent
/// again on its successor: the registry ends a node's entry when the
/// session that holds it closes, unless another session has renewed it.
macro_rules! on_link {
    ($link:expr, |$client:ident| $op:expr) => {{
        let link: &$crate::link::RegistryLink = $link;
        let mut session = link.session.lock().await;
        let mut retired = None;
        let done = loop {
            let reused = session.is_some();
            if !reused {
                match link.connect().await {
                    Ok(client) => *session = Some(client),
                    Err(error) => break Err(error),
                }
            }
            let $client = session.as_mut().expect("a session is open");
            let done = $op;
            match &done {
                Err(error) if error.is_unanswered() => {
                    tracing::debug!(error = %wire::Chain(error), reused, "the session with the registry broke");
                    link.broke(error);
                    if reused {
                        retired = session.take();
                        continue;
                    }
                    *session = None;
                }
                _ => {}
            }
            break done;
        };
        drop(retired);
        done
    }};
}
pub(crate) use on_link;

/// The replicas of the registry and the one in use, shared by the links of
/// one node (or of one sender).
#[derive(Debug)]
pub struct Replicas {
    list: Registries,
    /// The index in `list` of the replica of the last session opened, where
    /// every walk begins; its receivers hear of every move.
    used: watch::Sender<usize>,
}

impl Replicas {
    /// The first of `list` is used first.
    pub fn shared(list: Registries) -> Arc<Replicas> {
        Arc::new(Replicas { list, used: watch::Sender::new(0) })
    }

    fn used(&self) -> usize {
        *self.used.borrow()
    }

    /// Makes `index` the replica in use, returning the one it replaces, if another.
    fn settle(&self, index: usize) -> Option<usize> {
        let mut from = None;
        self.used.send_if_modified(|used| {
            if *used == index {
                return false;
            }
            from = Some(std::mem::replace(used, index));
            true
        });
        from
    }
}

/// How a link's session with the replica in use first failed.
#[derive(Debug)]
struct Broken {
    at: Instant,
    error: String,
    /// It did not answer in time (paused, cut off or overloaded, it may
    /// accept a connection and then keep as silent), or answered that it
    /// cannot reach the store replicas share: the next walk tries it last
    /// rather than first.
    silent: bool,
}

#[derive(Debug)]
pub struct RegistryLink {
    replicas: Arc<Replicas>,
    keys: Keys,
    /// Bounds connecting, the handshake, and each request, per replica.
    timeout: Duration,
    pub(crate) session: Mutex<Option<Client>>,
    /// The registry is one of ours: it answered a hello so, or a secure
    /// session opened. No more hellos.
    ours: AtomicBool,
    /// The key every replica must prove (`--registry-key`); with one, never plaintext.
    pinned: Option<PublicKey>,
    /// The first failure since this link last opened a session: what a
    /// move away from the replica reports, and since when.
    broken: std::sync::Mutex<Option<Broken>>,
}

impl RegistryLink {
    pub fn new(replicas: Arc<Replicas>, keys: Keys, timeout: Duration) -> RegistryLink {
        RegistryLink {
            replicas,
            keys,
            timeout,
            session: Mutex::new(None),
            ours: AtomicBool::new(false),
            pinned: None,
            broken: std::sync::Mutex::new(None),
        }
    }

    /// The link, refusing any replica that does not prove `key`, when given.
    pub fn pinned(self, key: Option<PublicKey>) -> RegistryLink {
        RegistryLink { pinned: key, ..self }
    }

    /// The replica in use, or tried first next.
    pub fn registry(&self) -> &RegistryAddr {
        &self.replicas.list.as_slice()[self.replicas.used()]
    }

    /// Changes with every move to another replica, whichever link made it.
    pub fn moves(&self) -> watch::Receiver<usize> {
        self.replicas.used.subscribe()
    }

    /// Whether the registry may be an original one, to be sent a hello
    /// first: never with a token or a pinned key (a stranger could pose as
    /// one, and talk the node into plaintext), nor once it is known to be ours.
    pub fn may_be_original(&self) -> bool {
        !self.keys.admission.requires_token() && self.pinned.is_none() && !self.ours.load(Ordering::Relaxed)
    }

    /// A session with the replica in use failed with `error` (the first
    /// failure counts, until a session opens again).
    pub(crate) fn broke(&self, error: &ClientError) {
        wire::lock(&self.broken).get_or_insert_with(|| Broken {
            at: Instant::now(),
            error: Chain(error).to_string(),
            silent: matches!(error, ClientError::Timeout { .. })
                || error.code() == Some(registry::protocol::ErrorCode::Unavailable),
        });
    }

    /// A session with the replica in use or, when it cannot open one, with
    /// the next replica that can ([`RegistryLink::walk`]).
    pub(crate) async fn connect(&self) -> Result<Client, ClientError> {
        self.walk(|registry| self.open(registry)).await
    }

    /// Sends the registry a [`Hello`] for this node, listening on `puerto`
    /// and reached at `ip` (else at this end of the connection), on a
    /// plaintext connection to the replica in use or the next that answers
    /// it. Returns who answered, and the ip the hello named.
    pub async fn hello(&self, ip: Option<IpAddr>, puerto: u16) -> Result<(Probed, IpAddr), ClientError> {
        self.walk(|registry| self.hello_at(registry, ip, puerto)).await
    }

    async fn hello_at(
        &self,
        registry: &RegistryAddr,
        ip: Option<IpAddr>,
        puerto: u16,
    ) -> Result<(Probed, IpAddr), ClientError> {
        let mut client = Client::connect(registry, self.timeout).await?;
        let ip = match ip {
            Some(ip) => ip,
            None => client.local_ip()?,
        };
        let probed = client.hello(&Hello::new(ip, puerto)).await?;
        if probed == Probed::Ours {
            self.ours.store(true, Ordering::Relaxed);
        }
        Ok((probed, ip))
    }

    /// Runs `attempt` with the replica in use or, when it fails, with the
    /// next replicas in order, wrapping around, until one succeeds: the one
    /// place that walks the list, for every request, the watch and the
    /// hello. Without any, the error of the first replica tried.
    async fn walk<'a, T, F, Fut>(&'a self, attempt: F) -> Result<T, ClientError>
    where
        F: Fn(&'a RegistryAddr) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let list = self.replicas.list.as_slice();
        let silent = wire::lock(&self.broken).as_ref().is_some_and(|broken| broken.silent);
        let first = (self.replicas.used() + usize::from(silent)) % list.len();
        let mut failure = None;
        for index in (first..list.len()).chain(0..first) {
            match attempt(&list[index]).await {
                Ok(done) => {
                    self.opened(index);
                    return Ok(done);
                }
                Err(error) => {
                    tracing::debug!(registry = %list[index], error = %Chain(&error), "no session with this registry");
                    self.broke(&error);
                    failure.get_or_insert(error);
                }
            }
        }
        Err(failure.expect("a list of registries is never empty"))
    }

    /// A session opened with replica `index`: it is the one in use now.
    fn opened(&self, index: usize) {
        let broken = wire::lock(&self.broken).take();
        if let Some(from) = self.replicas.settle(index) {
            let list = self.replicas.list.as_slice();
            let (after, error) = broken.map_or((Duration::ZERO, String::new()), |b| (b.at.elapsed(), b.error));
            events::registry_moved(&list[from], &list[index], after, &error);
        }
    }

    /// A secure session with `registry` as this node's keys.
    async fn open(&self, registry: &RegistryAddr) -> Result<Client, ClientError> {
        let client = Client::connect_pinned(registry, &self.keys, self.pinned, self.timeout).await?;
        self.ours.store(true, Ordering::Relaxed);
        Ok(client)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::events::{Event, Record};
    use crate::fake_registry::FakeRegistry;
    use serde_json::{json, Value};

    fn anything(_: &Value) -> Value {
        json!({"ok": true})
    }

    /// A link to `list`, each request within `timeout`, with no token and
    /// no pinned key: a secure session with each fake.
    pub(crate) fn link_to(list: &[&RegistryAddr], timeout: Duration) -> RegistryLink {
        let list = list.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        let keys = Keys::new(wire::secure::Identity::generate(), wire::secure::Admission::Open);
        RegistryLink::new(Replicas::shared(list.parse().unwrap()), keys, timeout)
    }

    /// An address nothing listens at.
    fn dead() -> RegistryAddr {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().into()
    }

    /// Where a new session went, and whether that was a move.
    async fn connected(link: &RegistryLink, moves: &mut watch::Receiver<usize>) -> (String, bool) {
        link.connect().await.unwrap();
        let moved = moves.has_changed().unwrap();
        moves.mark_unchanged();
        (link.registry().to_string(), moved)
    }

    #[test]
    fn a_session_goes_to_the_replica_used_last_or_the_next_that_opens_one_wrapping_around() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (mut walked, mut addrs) = (Vec::new(), Vec::new());
        let lines = wire::telemetry::capture(|| {
            runtime.block_on(async {
                let dead = dead();
                let (a, b) = (FakeRegistry::start(anything).await, FakeRegistry::start(anything).await);
                let a_addr = a.addr.to_string();
                addrs = vec![dead.to_string(), a_addr.clone(), b.addr.to_string()];
                let link = link_to(&[&dead, &a.addr, &b.addr], Duration::from_secs(5));
                let mut moves = link.moves();
                walked.push(connected(&link, &mut moves).await);
                walked.push(connected(&link, &mut moves).await);
                a.kill().await;
                walked.push(connected(&link, &mut moves).await);
                let _back = FakeRegistry::start_on(&a_addr, anything).await;
                b.kill().await;
                walked.push(connected(&link, &mut moves).await);
            })
        });
        let [dead, a, b] = [0, 1, 2].map(|i| addrs[i].clone());
        let expected = [(a.clone(), true), (a.clone(), false), (b.clone(), true), (a.clone(), true)];
        assert_eq!(
            walked, expected,
            "past the dead one; the one used last; the next; wrapping around past the dead one"
        );
        let moved: Vec<(String, String)> = lines
            .iter()
            .filter_map(|line| Record::parse(line))
            .filter(|record| record.event == Event::RegistryMoved)
            .map(|record| (record.from.unwrap(), record.to.unwrap()))
            .collect();
        assert_eq!(moved, [(dead, a.clone()), (a.clone(), b.clone()), (b, a)], "{lines:#?}");
    }
}
