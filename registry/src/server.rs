//! The registry service: the sweeper and the per-connection request loop.
//!
//! A connection may carry many requests, answered in order. Every read has
//! an idle deadline and every write a write deadline (see [`wire::connection`]),
//! so neither a silent client nor one that never reads holds a slot for long.
//!
//! A secure connection ([`wire::secure`]) carries the key its client proved:
//! a registration binds its entry to that key, and only that key may renew,
//! deregister or replace the entry. With a join token, plaintext is refused
//! (`unauthorized`), but for the original dialects under `allow_original`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::time::{timeout, Instant};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};
use wire::codec::{Decoded, FrameError, LinkCodec};
use wire::connection::{self, Accepted, ByteStream, JsonStream, Refusal, Slot};
use wire::replay::millis;
use wire::secure::{Keys, PublicKey};
use wire::ticket::{Greeter, TICKET_VALIDITY};

// What `run` takes, where its callers have always found it.
use crate::backend::Backend;
pub use crate::config::Config;
use crate::credential::{unix_ms, GroupClaims, Signer, VIEW_VALIDITY};
use crate::events;
use crate::fanout::Fanout;
use crate::metrics;
use crate::protocol::{
    invalid_group, ClientesContact, Contact, Dialect, Encoded, ErrorBody, ErrorCode, Found, GroupView, Listed,
    Operation, OriginalContact, Policy, Registration, Renewed, Reply, Request, Secure, Since, SECURE_VERSION,
};
use crate::replica::ReplicaError;
use crate::store::{Store, StoreError, Subscription};
use crate::streamed::{Changes, Head, RegisteredReply};
use crate::watch::{Change, Compacted, WatchEvent, PROGRESS_EVERY};

/// Changes a watcher is sent in one write at most. A change is about 180
/// bytes, so a batch stays within the 16 KiB a connection's write buffer
/// keeps between writes; a longer backlog goes out batch after batch.
const WATCH_BATCH: usize = 64;

/// How long after a batch a watcher's next one waits, so that the changes
/// made meanwhile go out together. A watcher that has been quiet that long
/// is sent a change at once; while a thousand nodes join, each watcher is
/// woken and written to once a tick instead of once a change, and those
/// wakeups and writes (a million at a thousand watchers) were most of the
/// registry's work. 50 ms keeps a join that just misses a tick within 100 ms
/// of reaching a thousand watchers.
pub const WATCH_TICK: Duration = Duration::from_millis(50);

/// How long shutdown waits for open connections to finish their current request.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// Why the registry could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the store")]
    Store(#[from] ReplicaError),
    #[error("cannot read the address it listens on")]
    Address(#[from] std::io::Error),
}

/// Serves the registry on `listener` until `shutdown` completes; once its
/// store is open (a replica's, caught up with etcd), it logs `listening`.
pub async fn run(listeners: impl Into<Listeners>, config: Config, shutdown: impl Future) -> Result<(), ServeError> {
    let Listeners { main: listener, assigner, http } = listeners.into();
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let backend = Backend::open(&config, &tracker, &token).await?;
    if let Backend::Memory(store) = &backend {
        // A replica's entries expire when etcd says so.
        tracker.spawn(sweep(store.clone(), config.sweep_interval, token.clone()));
    }
    events::listening(listener.local_addr()?, &config);
    if let Some(assigner) = assigner {
        events::assigning(assigner.local_addr()?);
        let serving =
            crate::assigner::serve(assigner, backend.clone(), config.groups, config.write_timeout, tracker.clone());
        tracker.spawn(token.clone().run_until_cancelled_owned(serving));
    }

    if let Some(http) = http {
        events::serving_http(http.local_addr()?);
        let (store, groups) = (backend.store().clone(), config.groups);
        let metrics = crate::metrics::install(store.clone(), groups);
        let access = crate::http::Access::of(&config);
        let pages = crate::http::Pages::new(metrics, store, groups, access, token.clone());
        let serving = wire::http::serve(http, Arc::new(pages), tracker.clone(), token.clone());
        tracker.spawn(serving);
    }

    let keys = Keys::shared(config.identity.session.clone(), config.admission.clone());
    let views = Arc::new(Views::new(config.identity.signer.clone()));
    let fanout = Arc::new(Fanout::start(tracker.clone()));
    let config = Arc::new(config);
    let limits = config.limits;
    let serve = {
        let token = token.clone();
        // Numbers unique among replicas too: a session's number says which
        // replica's connection holds an entry.
        let sessions = AtomicU64::new(u64::from(fastrand::u32(..)) << 32);
        move |accepted: Accepted| {
            let remote = accepted.framed.codec().remote();
            let connection = Connection {
                backend: backend.clone(),
                config: config.clone(),
                views: views.clone(),
                fanout: fanout.clone(),
                peer: accepted.peer,
                remote,
                session: sessions.fetch_add(1, Ordering::Relaxed),
                held: Mutex::new(None),
            };
            connection.serve(accepted, token.clone())
        }
    };
    let refused = |peer: SocketAddr, refusal: Refusal<'_>| {
        metrics::METRICS.count(|m| m.refused(refusal.reason()));
        if let Refusal::Handshake(error) = refusal {
            if error.is_refusal() {
                events::unauthorized(peer, error);
            }
        }
    };
    tokio::select! {
        () = connection::accept_loop(listener, keys, limits, tracker.clone(), serve, refused) => {}
        _ = shutdown => events::shutting_down(),
    }
    token.cancel();
    tracker.close();
    if timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        warn!(grace = ?SHUTDOWN_GRACE, "connections still open at shutdown were dropped");
    }
    Ok(())
}

/// What the registry listens on: its own port and, when asked, the group
/// lab's assigner port ([`crate::assigner`]) and the operators' HTTP
/// listener ([`crate::http`]).
#[derive(Debug)]
pub struct Listeners {
    pub main: TcpListener,
    pub assigner: Option<TcpListener>,
    pub http: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(main: TcpListener) -> Listeners {
        Listeners { main, assigner: None, http: None }
    }
}

async fn sweep(store: Arc<Store>, every: Duration, token: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = token.cancelled() => return,
        }
        for contact in store.sweep(Instant::now()) {
            events::expired(&contact);
        }
    }
}

/// The registry's signer, and the group views it signed, kept while a
/// group's membership stays the same and for half their validity, so that a
/// member always holds a view with at least half its validity left: a
/// coordinator asks for the view at every multicast, and a member that
/// sees the same signed view again need not check it again.
#[derive(Debug)]
struct Views {
    signer: Arc<Signer>,
    signed: std::sync::Mutex<std::collections::HashMap<u32, (GroupClaims, crate::credential::Signed, Instant)>>,
}

impl Views {
    fn new(signer: Arc<Signer>) -> Views {
        Views { signer, signed: Default::default() }
    }

    fn sign(&self, claims: GroupClaims, now: Instant) -> crate::credential::Signed {
        let fresh = |at: &Instant| now < *at + VIEW_VALIDITY / 2;
        let mut signed = wire::lock(&self.signed);
        match signed.get(&claims.group) {
            Some((held, view, at)) if *held == claims && fresh(at) => view.clone(),
            _ => {
                // Stale views go, so that groups come and gone cannot grow the map.
                signed.retain(|_, (_, _, at)| fresh(at));
                let view = self.signer.sign(&claims, VIEW_VALIDITY);
                signed.insert(claims.group, (claims, view.clone(), now));
                view
            }
        }
    }
}

/// What a request asks of its connection.
enum Answer {
    Reply(Reply),
    Registered(Box<RegisteredReply>),
    /// To stream the changes to the membership from now on.
    Watch(Option<Since>),
}

fn refusal(error: StoreError) -> ErrorBody {
    debug!(%error, "refused a request");
    ErrorBody::new(error.code(), error.to_string())
}

fn refused(error: StoreError) -> Answer {
    Answer::Reply(Reply::Error(refusal(error)))
}

/// The entry a secure session registered or renewed last, and whether its
/// closing ends the entry.
///
/// A node that gives up on a request (no answer in time) sends it again on
/// a new session, with the next replica, and closes the old one once
/// answered. A paused or slow replica may still take the old request up
/// and apply it after the new one, tying the entry back to the old session
/// as its node closes it. So a session that registered the entry as a
/// repeat ends it only once it has renewed it since, and a session that
/// held the entry never takes it back from the one that took it: its
/// requests are ones its node gave up on. (A node that dies right after
/// registering again on a new session is ended by its lease.)
struct Held {
    id: String,
    /// Whether its closing ends the entry (not yet, after a repeat).
    settled: bool,
}

struct Connection {
    backend: Backend,
    config: Arc<Config>,
    views: Arc<Views>,
    /// Where watches run, once started.
    fanout: Arc<Fanout>,
    peer: SocketAddr,
    /// The key the client proved, on a secure connection.
    remote: Option<PublicKey>,
    /// Numbers the connections, for [`Backend::hold`].
    session: u64,
    /// The entry this secure session registered or renewed last: its node's
    /// kept session, whose closing means the node is gone.
    held: Mutex<Option<Held>>,
}

/// Who ended a connection.
enum Ended {
    /// The client: it hung up, reset the connection, or stopped reading.
    ByPeer,
    /// The registry: idle, refused, shutting down, or done with it.
    ByRegistry,
}

impl Connection {
    /// Answers requests until the connection ends; when its client ended a
    /// node's kept session, the node's entry goes with it.
    async fn serve(self, accepted: Accepted, token: CancellationToken) {
        let _open = metrics::METRICS.get().map(|m| m.session());
        let ended = self.requests(accepted.framed, accepted.first, accepted.slot, token).await;
        let held = wire::lock(&self.held).take();
        if let (Ended::ByPeer, Some(Held { id, settled: true })) = (ended, held) {
            if let Some(entry) = self.backend.session_lost(&id, self.session).await {
                events::session_lost(&entry);
            }
        }
    }

    async fn requests(
        &self,
        mut framed: JsonStream,
        first: Option<Result<Decoded, FrameError>>,
        slot: Slot,
        token: CancellationToken,
    ) -> Ended {
        let mut first = Some(first);
        loop {
            let next = match first.take() {
                Some(first) => Ok(first),
                None => tokio::select! {
                    next = timeout(self.config.idle_timeout, framed.next()) => next,
                    () = token.cancelled() => return Ended::ByRegistry,
                },
            };
            let answer = match next {
                Err(_) => {
                    debug!(timeout = ?self.config.idle_timeout, "closing an idle connection");
                    return Ended::ByRegistry;
                }
                Ok(None) => return Ended::ByPeer,
                Ok(Some(Ok(Ok(message)))) => self.answer(message).await,
                Ok(Some(Ok(Err(malformed)))) => {
                    debug!(error = %malformed, "rejected a malformed message");
                    Answer::Reply(Reply::Error(ErrorBody::bad_request(malformed.to_string())))
                }
                // A reset connection, or a frame that breaks the protocol.
                Ok(Some(Err(error))) => {
                    connection::reject(framed, error, self.config.write_timeout).await;
                    return Ended::ByPeer;
                }
            };
            let deadline = self.config.write_timeout;
            let (sent, closes) = match answer {
                Answer::Reply(reply) => {
                    (connection::send(&mut framed, &reply, deadline).await, reply.closes_connection())
                }
                Answer::Registered(mut reply) => {
                    (connection::send_pieces(&mut framed, &mut *reply, deadline).await, false)
                }
                Answer::Watch(since) => {
                    // Boxed: most connections never watch, and need not be sized for it.
                    Box::pin(self.watch(framed, since, slot, token)).await;
                    return Ended::ByRegistry;
                }
            };
            if let Err(error) = sent {
                debug!(%error, "failed to send a reply");
                return Ended::ByPeer;
            }
            if closes || self.one_message_only() {
                connection::close(framed).await;
                return Ended::ByRegistry;
            }
        }
    }

    /// Ties `id` to this session, when it is a secure one: a node's kept
    /// session; but never back to it once another session took the entry
    /// (see [`Held`]).
    async fn hold(&self, id: &str) {
        if self.remote.is_none() {
            return;
        }
        let held_here = wire::lock(&self.held).as_ref().is_some_and(|held| held.id == id);
        if !held_here {
            self.backend.hold(id, self.session).await;
            *wire::lock(&self.held) = Some(Held { id: id.to_owned(), settled: true });
        } else if self.backend.store().held_by(id) == Some(self.session) {
            // Held here already: renewed since, it is settled.
            if let Some(held) = wire::lock(&self.held).as_mut() {
                held.settled = true;
            }
        } else {
            debug!(id, "renewed an entry another session took from this one, which keeps it");
        }
    }

    async fn answer(&self, message: serde_json::Value) -> Answer {
        let started = metrics::METRICS.started();
        let request = match Request::parse(message) {
            Ok(request) => request,
            Err(error) => {
                debug!(code = %error.code, message = %error.message, "rejected a request");
                metrics::answered(Operation::Invalid, Some(error.code), started);
                return Answer::Reply(Reply::Error(error));
            }
        };
        let operation = request.operation();
        let answer = self.answer_request(request).await;
        let refusal = match &answer {
            Answer::Reply(Reply::Error(error)) => Some(error.code),
            _ => None,
        };
        metrics::answered(operation, refusal, started);
        answer
    }

    async fn answer_request(&self, request: Request) -> Answer {
        if let Err(refusal) = self.admit(&request) {
            return Answer::Reply(Reply::Error(refusal));
        }
        let (backend, caller) = (&self.backend, self.remote);
        let (store, at) = (backend.store(), backend.now());
        let result = match request {
            Request::Register(registration) => return self.register(&registration).await.unwrap_or_else(refused),
            Request::Heartbeat { id } => match backend.heartbeat(&id, caller) {
                Ok(ttl) => {
                    self.hold(&id).await;
                    Ok(Reply::Renewed(Renewed { ttl_ms: millis(ttl) }))
                }
                Err(error) => Err(error),
            },
            Request::Deregister(key) => backend.deregister(&key, caller).await.map(|entry| {
                events::deregistered(&entry);
                Reply::Found(Found { entry })
            }),
            Request::Lookup(key) => store.lookup(&key, at).map(|entry| Reply::Found(Found { entry })),
            Request::List => Ok(Reply::Listed(Listed { contactos: store.list(at), silent: store.silent(at) })),
            Request::Group { group } => {
                // Views are kept by this process's clock, not the store's.
                store.group(group, at).map(|members| Reply::Group(self.view(group, members, Instant::now())))
            }
            Request::Watch { since } => return Answer::Watch(since),
            Request::Hello => Ok(Reply::Secure(Secure { secure: SECURE_VERSION })),
            Request::Coordinator { group } => Ok(self.coordinator_of(group, at)),
        };
        result.map_or_else(refused, Answer::Reply)
    }

    /// Streams the changes to the membership: the first answer ([`Watching`]),
    /// then every change after it ([`Watcher`]), until the watcher hangs up,
    /// sends anything, or falls behind what the history holds.
    /// Starts a watch, then hands it (and the connection's slot) to the
    /// fan-out thread, and this connection's task ends.
    async fn watch(&self, mut framed: JsonStream, since: Option<Since>, slot: Slot, token: CancellationToken) {
        let deadline = self.config.write_timeout;
        // Subscribed before the start is read, so that no change is missed.
        let wakeups = self.backend.store().subscribe();
        let watching = match self.backend.store().watch(since.as_ref()) {
            Ok(watching) => watching,
            Err(error) => return drop(connection::send(&mut framed, &Reply::Error(refusal(error)), deadline).await),
        };
        let seen = watching.revision;
        debug!(start = ?watching.start, revision = seen, "watch started");
        if connection::send(&mut framed, &Reply::Watching(Box::new(watching)), deadline).await.is_err() {
            return;
        }
        let watcher = Watcher { framed, wakeups, seen, next_batch: Instant::now(), peer: self.peer, deadline };
        let store = self.backend.store().clone();
        let open = metrics::METRICS.get().map(|m| (m.session(), m.watcher()));
        self.fanout.spawn(async move {
            let (_slot, _open) = (slot, open);
            watcher.run(&store, token).await
        });
    }

    /// A ticket key only in a secure session; with a join token, a
    /// plaintext connection may only register in an original dialect, and
    /// only under `allow_original`.
    fn admit(&self, request: &Request) -> Result<(), ErrorBody> {
        if self.remote.is_none() && matches!(request, Request::Register(r) if r.ticket_key.is_some()) {
            // Whoever is on the path would read it.
            return Err(ErrorBody::bad_request("field `ticket_key` travels only in a secure session"));
        }
        // A hello learns only what the handshake would tell anyone.
        if self.remote.is_some() || !self.config.admission.requires_token() || matches!(request, Request::Hello) {
            return Ok(());
        }
        let original = matches!(request, Request::Register(r) if r.dialect != Dialect::Native)
            || matches!(request, Request::Coordinator { .. });
        if original && self.config.allow_original {
            return Ok(());
        }
        let reason = if original {
            "this registry admits members with the join token only, and not the original programs (no --allow-original)"
        } else {
            "this registry admits members with the join token only: open a secure session (see README, Trust)"
        };
        metrics::METRICS.count(|m| m.refused("plaintext"));
        events::unauthorized(self.peer, &reason);
        Err(ErrorBody::new(ErrorCode::Unauthorized, reason))
    }

    /// The group server's answer: where `group`'s coordinator listens, or
    /// the line the lab's programs print when there is none.
    fn coordinator_of(&self, group: Option<u32>, at: Instant) -> Reply {
        let coordinator = group.and_then(|group| self.backend.store().group(group, at).ok()?.into_iter().next());
        match coordinator {
            Some(coordinator) => Reply::Coordinator(coordinator.addr().into()),
            None => Reply::Text(invalid_group(self.config.groups)),
        }
    }

    /// With a join token, a plaintext connection gets one answer: the only
    /// plaintext it may send is an original registration, after which the
    /// originals expect a hang-up anyway, and a stranger must not keep a slot.
    fn one_message_only(&self) -> bool {
        self.remote.is_none() && self.config.admission.requires_token()
    }

    fn policy(&self) -> Policy {
        let token = self.config.admission.requires_token();
        Policy { token, originals: !token || self.config.allow_original }
    }

    /// A group's members with the signed view a coordinator shows them.
    fn view(&self, group: u32, members: Vec<Contact>, now: Instant) -> GroupView {
        let coordinator = members[0].clone();
        let claims = GroupClaims {
            group,
            coordinator: coordinator.key,
            members: members.iter().filter_map(|member| member.key).collect(),
        };
        GroupView { group, coordinator, view: self.views.sign(claims, now), members }
    }

    async fn register(&self, registration: &Registration) -> Result<Answer, StoreError> {
        let registration = &Registration {
            key: self.remote.filter(|_| registration.dialect == Dialect::Native),
            ..registration.clone()
        };
        // A node's kept session holds its entry.
        let kept = self.remote.is_some() && registration.dialect == Dialect::Native;
        let admitted = self.backend.register(registration, self.peer.ip(), kept.then_some(self.session)).await?;
        let entry = admitted.entry;
        if kept {
            *wire::lock(&self.held) = Some(Held { id: entry.id.clone(), settled: !admitted.repeat });
        }
        for old in &admitted.replaced {
            debug!(id = %old.id, name = %old.name, addr = %old.addr(), "replaced an earlier entry of the same node");
        }
        if admitted.repeat {
            debug!(id = %entry.id, name = %entry.name, "answered a repeated registration");
        } else {
            events::registered(&entry, registration.dialect, admitted.contacts.len());
        }
        let contacts = admitted.contacts;
        let reply = match registration.dialect {
            Dialect::Native => {
                let head = Head {
                    id: &entry.id,
                    ttl_ms: millis(self.backend.store().leases().ttl),
                    entry: &entry,
                    registry_key: self.views.signer.public(),
                    policy: self.policy(),
                };
                let greeter = greeter(&entry, registration);
                return Ok(Answer::Registered(Box::new(RegisteredReply::new(&head, contacts, greeter))));
            }
            Dialect::Original => Reply::Original(
                contacts
                    .iter()
                    .map(|c| &c.contact.value)
                    .map(|c| OriginalContact { ip: c.ip, puerto: c.puerto, name: c.name.clone() })
                    .collect(),
            ),
            Dialect::Clientes => {
                let clientes =
                    contacts.iter().map(|c| ClientesContact { ip: c.contact.value.ip, puerto: c.contact.value.puerto });
                Reply::Clientes(clientes.collect())
            }
        };
        // The original dialects' replies are small, and sent whole.
        Ok(Answer::Reply(reply))
    }
}

/// Whom `entry`'s tickets name, and until when: none for a registrant that
/// gave no ticket key ([`RegisteredReply`]).
fn greeter(entry: &Contact, registration: &Registration) -> Option<(Greeter, u64)> {
    let key = entry.key.filter(|_| registration.ticket_key.is_some())?;
    let greeter =
        Greeter { id: entry.id.clone(), name: entry.name.clone(), addr: entry.addr(), key, group: entry.group };
    Some((greeter, unix_ms() + millis(TICKET_VALIDITY)))
}

/// One watch, once started: it sends the changes in batches, at most one
/// batch a [`WATCH_TICK`] unless the batch is full or holds a departure.
struct Watcher<S> {
    framed: Framed<S, LinkCodec>,
    wakeups: Subscription,
    /// The revision of the last change sent.
    seen: u64,
    /// When the next batch may go.
    next_batch: Instant,
    peer: SocketAddr,
    deadline: Duration,
}

impl<S: ByteStream> Watcher<S> {
    async fn run(mut self, store: &Store, token: CancellationToken) {
        loop {
            // Marked seen before the history is read, so that only a later change wakes this watcher again.
            self.wakeups.changes.borrow_and_update();
            self.wakeups.departures.borrow_and_update();
            let changes = match store.changes_after(self.seen, WATCH_BATCH) {
                Ok(changes) => changes,
                // Boxed: it is rare, and would otherwise add its size to every watch's task.
                Err(compacted) => return Box::pin(self.lagging(compacted)).await,
            };
            let quiet = changes.is_empty();
            if !quiet && !self.waits(&changes) {
                if self.send(&changes).await.is_err() {
                    return self.stopped_reading();
                }
                continue;
            }
            // Quiet, it waits for a change, and is sent `progress` after PROGRESS_EVERY
            // without one; a batch waits for its tick, and the changes made meanwhile
            // join it without waking this watcher, but for a departure.
            let until = if quiet { Instant::now() + PROGRESS_EVERY } else { self.next_batch };
            tokio::select! {
                changed = self.wakeups.changes.changed(), if quiet => if changed.is_err() { return },
                changed = self.wakeups.departures.changed(), if !quiet => if changed.is_err() { return },
                () = tokio::time::sleep_until(until) => if quiet && self.progress().await.is_err() {
                    return self.stopped_reading();
                },
                // A watcher only listens: whatever it sends, or its hanging up, ends the watch.
                _ = self.framed.next() => return,
                () = token.cancelled() => return,
            }
        }
    }

    async fn progress(&mut self) -> std::io::Result<()> {
        let progress = WatchEvent { revision: self.seen, change: Change::Progress };
        connection::send(&mut self.framed, &progress, self.deadline).await
    }

    fn stopped_reading(&self) {
        events::watcher_cut_off(self.peer, self.seen, &"it stopped reading");
    }

    /// Whether `changes` wait for the next tick. A full batch does not: a
    /// backlog goes out as fast as the watcher reads it. Nor does a
    /// departure, which failure detection waits on, and which is rare.
    fn waits(&self, changes: &[Arc<Encoded<WatchEvent>>]) -> bool {
        let departure = changes.iter().any(|change| matches!(change.value.change, Change::Left { .. }));
        Instant::now() < self.next_batch && changes.len() < WATCH_BATCH && !departure
    }

    /// Sends `changes` in one write.
    async fn send(&mut self, changes: &[Arc<Encoded<WatchEvent>>]) -> std::io::Result<()> {
        connection::send_pieces(&mut self.framed, &mut Changes::new(changes), self.deadline).await?;
        metrics::METRICS.count(|m| m.changes_sent(changes.len()));
        self.seen = changes.last().map_or(self.seen, |change| change.value.revision);
        self.next_batch = Instant::now() + WATCH_TICK;
        Ok(())
    }

    /// Tells a watcher that fell behind the history so, and hangs up.
    async fn lagging(mut self, compacted: Compacted) {
        let seen = self.seen;
        events::watcher_cut_off(self.peer, seen, &"it fell behind the history");
        let message = format!(
            "this watcher fell behind: the registry keeps changes from revision {} on; watch again with since {seen}",
            compacted.oldest
        );
        let lagging = Reply::Error(ErrorBody::new(ErrorCode::Lagging, message));
        let _ = connection::send(&mut self.framed, &lagging, self.deadline).await;
        connection::close(self.framed).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::EntryKey;
    use crate::store::testing::join;
    use crate::store::{Capacity, Leases};
    use futures::{FutureExt, SinkExt};
    use tokio::io::DuplexStream;
    use wire::codec::{MAX_REPLY_BYTES, MAX_REQUEST_BYTES};

    type Client = Framed<DuplexStream, LinkCodec>;

    fn store(history: usize) -> Arc<Store> {
        let leases = Leases::new(Duration::from_secs(15), None);
        Arc::new(Store::new(leases, 1, Capacity { history, ..Capacity::default() }))
    }

    /// A watcher of `store` from its current revision, over an in-memory
    /// connection (a real socket would let the paused clock jump while it
    /// waits), and the watching client's end of it.
    fn watch(store: &Arc<Store>) -> (Client, tokio::task::JoinHandle<()>) {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let watcher = Watcher {
            framed: Framed::new(ours, LinkCodec::plain(MAX_REQUEST_BYTES)),
            wakeups: store.subscribe(),
            seen: store.watch(None).unwrap().revision,
            next_batch: Instant::now(),
            peer: "127.0.0.1:1".parse().unwrap(),
            deadline: Duration::from_secs(5),
        };
        let store = store.clone();
        let running = tokio::spawn(async move { watcher.run(&store, CancellationToken::new()).await });
        (Framed::new(theirs, LinkCodec::plain(MAX_REPLY_BYTES)), running)
    }

    fn message(next: Option<Result<wire::codec::Decoded, wire::codec::FrameError>>) -> serde_json::Value {
        next.expect("the watch goes on").unwrap().unwrap()
    }

    /// The revisions of the next arrival (the first message to come, and
    /// those already behind it), and when it came.
    async fn arrival(client: &mut Client) -> (Vec<u64>, Instant) {
        let first = message(client.next().await);
        let at = Instant::now();
        let mut messages = vec![first];
        while let Some(next) = client.next().now_or_never() {
            messages.push(message(next));
        }
        (messages.iter().map(|m| m["revision"].as_u64().expect("a change")).collect(), at)
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_watcher_is_sent_a_change_at_once_and_the_next_ones_together_a_tick_later() {
        let store = store(64);
        let (mut client, _running) = watch(&store);
        let start = Instant::now();
        join(&store, "a", 1);
        assert_eq!(arrival(&mut client).await, (vec![1, 2], start), "a joined, and coordinates group 1");
        join(&store, "b", 2);
        join(&store, "c", 3);
        assert_eq!(arrival(&mut client).await, (vec![3, 4], start + WATCH_TICK));

        // Quiet for a tick: the next change goes at once again.
        tokio::time::sleep(WATCH_TICK).await;
        join(&store, "d", 4);
        assert_eq!(arrival(&mut client).await, (vec![5], start + 2 * WATCH_TICK));
    }

    #[tokio::test(start_paused = true)]
    async fn a_departure_or_a_full_batch_does_not_wait_for_the_tick() {
        let store = store(1024);
        let (mut client, _running) = watch(&store);
        let start = Instant::now();
        join(&store, "a", 1);
        assert_eq!(arrival(&mut client).await, (vec![1, 2], start));
        join(&store, "b", 2);
        // The watcher holds b's join back for the tick, until a leaves.
        tokio::time::sleep(WATCH_TICK / 5).await;
        store.deregister(&EntryKey::Name("a".into()), None, Instant::now()).unwrap();
        let left = start + WATCH_TICK / 5;
        assert_eq!(arrival(&mut client).await, (vec![3, 4, 5], left), "b joined, a left, b coordinates");

        for port in 10..10 + WATCH_BATCH as u16 + 1 {
            join(&store, &format!("n{port}"), port);
        }
        let full: Vec<u64> = (6..6 + WATCH_BATCH as u64).collect();
        assert_eq!(arrival(&mut client).await, (full, left));
        assert_eq!(arrival(&mut client).await, (vec![6 + WATCH_BATCH as u64], left + WATCH_TICK));
    }

    #[tokio::test(start_paused = true)]
    async fn a_watcher_that_falls_behind_the_history_while_its_batch_waits_is_told_lagging() {
        let store = store(4);
        let (mut client, running) = watch(&store);
        join(&store, "a", 1);
        assert_eq!(arrival(&mut client).await.0, [1, 2]);
        for port in 2..8 {
            join(&store, &format!("n{port}"), port);
        }
        let lagging = message(client.next().await);
        assert_eq!(lagging["error"]["code"], "lagging", "{lagging}");
        assert!(client.next().await.is_none(), "then the registry hangs up");
        running.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_watcher_is_sent_progress_and_one_that_sends_anything_is_done() {
        let store = store(64);
        let (mut client, running) = watch(&store);
        let start = Instant::now();
        let progress = message(client.next().await);
        assert_eq!((progress["event"].as_str(), progress["revision"].as_u64()), (Some("progress"), Some(0)));
        assert_eq!(Instant::now(), start + PROGRESS_EVERY);
        client.send(&serde_json::json!({"op": "list"})).await.unwrap();
        running.await.unwrap();
        assert!(client.next().await.is_none(), "the watch is over");
    }

    #[test]
    fn a_group_view_is_signed_again_only_when_its_members_change_or_it_ages() {
        let views = Views::new(Arc::new(Signer::generate()));
        let key = || wire::secure::Identity::generate().public();
        let (a, b) = (key(), key());
        let claims = |members: Vec<PublicKey>| GroupClaims { group: 1, coordinator: Some(members[0]), members };
        let now = Instant::now();
        let first = views.sign(claims(vec![a]), now);
        assert_eq!(views.sign(claims(vec![a]), now + Duration::from_secs(1)), first, "the same members, kept");
        let joined = views.sign(claims(vec![a, b]), now + Duration::from_secs(2));
        assert_ne!(joined, first, "a member joined");
        let later = now + VIEW_VALIDITY;
        let aged = views.sign(claims(vec![a, b]), later);
        let signed_at = wire::lock(&views.signed)[&1].2;
        assert_eq!(signed_at, later, "half its validity is over: signed again");
        let opened: GroupClaims = aged.open(&views.signer.public()).unwrap();
        assert_eq!(opened.members, [a, b]);
    }
}
