//! Serving JSON connections, shared by the registry and the node's listener.
//!
//! Strangers must not starve members. Every connection is accepted at once
//! and is *pending* until it has completed its handshake (a secure one) or
//! its first message (a plaintext one), which it must do within
//! [`Limits::handshake_timeout`]. Pending connections are bounded per source
//! address and in all; past either bound the oldest is dropped, so a flood
//! of silent or trickling connections costs each one a second at most and
//! never keeps a member's handshake, which takes a millisecond, from being
//! accepted. Established connections are capped apart, in all and per
//! source address (so that one source cannot take every slot), and a
//! member's session, once open, never waits behind anyone's accept. Every reply is
//! written under a deadline, so a client that never reads cannot hold a
//! slot for long.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::error::Elapsed;
use tokio::time::timeout;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn, Instrument};

use crate::codec::{Budget, Decoded, FrameError, Lines, LinkCodec, MAX_REQUEST_BYTES};
use crate::envelope::{Code, ErrorBody, Reply};
use crate::secure::{self, HandshakeError, Keys, Progress};

/// A connection carrying one JSON value per message, plain or sealed.
pub type JsonStream = Framed<TcpStream, LinkCodec>;

/// What a connection runs over: a TCP stream, or in tests an in-memory one,
/// whose clock-paused runs are not upset by real I/O. Owned and `Send`, so
/// that its last moments (a drain) can be handed to a task of their own.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> ByteStream for S {}

/// How long a connection that sent something unusable is drained before it
/// is closed, so that the client reads the error instead of a reset.
const DRAIN_BEFORE_CLOSE: Duration = Duration::from_secs(1);

/// Connections drained at once, by every server of the process. Past this
/// a connection is closed at once (a flood of oversized messages, whose
/// senders may then get a reset instead of their refusal), so that the
/// memory and descriptors of drains stay bounded.
const DRAINING: usize = 4096;

static DRAINS: Drains = Drains(Semaphore::const_new(DRAINING));

/// How long a refused handshake's answer may take to write.
const REFUSAL_DEADLINE: Duration = Duration::from_millis(100);

/// The read and write buffers a served connection starts with. Requests
/// are small, and a server under a burst holds hundreds of connections at
/// once: tokio-util's default of 8 KiB each was most of the 15 MB that 530
/// concurrent heartbeat connections cost the registry. A large message grows
/// its buffer.
const CONNECTION_BUFFER: usize = 512;

/// What every connection of a server may hold of unfinished messages at
/// once, by default: 256 of the largest requests, and far more than
/// members' requests ever hold together (see [`Budget`]).
pub const READ_BUDGET: usize = 256 * MAX_REQUEST_BYTES;

/// Connections the kernel queues while the accept loop is busy (tokio's
/// default is 128); the kernel caps it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds with a deep accept backlog, so that a burst of connections waits
/// instead of being dropped and retried a second later.
pub fn bind(listen: SocketAddr) -> io::Result<TcpListener> {
    let socket = if listen.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    socket.listen(LISTEN_BACKLOG)
}

/// How many connections a server holds, and how long a new one has to prove itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Established connections served at once.
    pub max_connections: usize,
    /// The same, from one source address.
    pub max_connections_per_ip: usize,
    /// Bytes of unfinished messages held by every connection at once
    /// ([`Budget`]).
    pub read_budget: usize,
    /// Connections still in their handshake or first message, in all.
    pub max_pending: usize,
    /// The same, from one source address.
    pub max_pending_per_ip: usize,
    /// How long a new connection may take to finish its handshake and send
    /// its first message.
    pub handshake_timeout: Duration,
}

impl Limits {
    /// The defaults, with `max_connections` established connections, any
    /// number of them from one address.
    pub fn new(max_connections: usize) -> Limits {
        Limits {
            max_connections,
            max_connections_per_ip: max_connections,
            read_budget: READ_BUDGET,
            max_pending: 1024,
            max_pending_per_ip: 256,
            handshake_timeout: Duration::from_secs(1),
        }
    }

    /// As a command line sets them: pending connections are bounded in all
    /// at least as high as from one address, or the per-address bound would
    /// never be reached.
    pub fn configured(
        max_connections: usize,
        max_connections_per_ip: usize,
        max_pending_per_ip: usize,
        handshake_timeout: Duration,
    ) -> Limits {
        let defaults = Limits::new(max_connections);
        Limits {
            max_connections_per_ip,
            max_pending: max_pending_per_ip.max(defaults.max_pending),
            max_pending_per_ip,
            handshake_timeout,
            ..defaults
        }
    }
}

/// An established connection, handed to the service with its first message.
pub struct Accepted {
    pub framed: JsonStream,
    pub peer: SocketAddr,
    /// The first message; `None` when the peer hung up without sending one.
    pub first: Option<Result<Decoded, FrameError>>,
    /// Its place in the bounds on established connections, for as long as
    /// it is kept: whatever serves the connection holds it.
    pub slot: Slot,
}

/// Accepts connections forever: establishes each (see the module's doc),
/// then hands it to `serve` in a task on `tracker` inside a span naming the
/// peer. A handshake refused for want of the join token is answered with
/// `unauthorized`; it and every connection dropped at a bound are reported
/// to `refused` ([`Refusal`]).
pub async fn accept_loop<F, Fut, R>(
    listener: TcpListener,
    keys: Keys,
    limits: Limits,
    tracker: TaskTracker,
    serve: F,
    refused: R,
) where
    F: Fn(Accepted) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
    R: Fn(SocketAddr, Refusal<'_>) + Send + Sync + 'static,
{
    let established = Arc::new(Established::new(limits));
    let pending = Arc::new(Pending::new(limits));
    let budget = Budget::new(limits.read_budget);
    let (serve, refused) = (Arc::new(serve), Arc::new(refused));
    let mut trim = Trim::default();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = accept(&listener) => accepted,
            _ = trim.every.tick() => {
                trim.after_bursts();
                continue;
            }
        };
        // One host, one spelling: an IPv4-mapped source counts as its IPv4 form.
        let source = peer.ip().to_canonical();
        // Taken here, not in the task, so that the bound holds however fast connections arrive.
        let (waiting, evicted) = pending.admit(source);
        if let Some(closed) = evicted {
            // Let the dropped connection's task close its socket before the
            // next is accepted, so that the bound holds for descriptors too.
            let _ = timeout(Duration::from_millis(10), closed.cancelled()).await;
        }
        let (keys, established, budget) = (keys.clone(), established.clone(), budget.clone());
        let closed = trim.closed.clone();
        let (serve, refused) = (serve.clone(), refused.clone());
        // A span per connection names the peer in debug logs; at the default
        // level it is disabled and costs nothing on this hot path.
        let span = tracing::debug_span!("connection", %peer);
        tracker.spawn(
            async move {
                let _counted = Closed(closed);
                let _closed = waiting.closed.clone().drop_guard();
                let (mut stream, mut secure) = (stream, Progress::None);
                let deadline = tokio::time::Instant::now() + limits.handshake_timeout;
                let codec = tokio::select! {
                    codec = tokio::time::timeout_at(deadline, handshake(&mut stream, &keys, &mut secure)) => {
                        codec.map(|codec| codec.map(|codec| codec.metered(&budget)))
                    }
                    () = waiting.evicted.cancelled() => {
                        refused(peer, Refusal::Evicted);
                        return busy(&stream, secure, "dropped for a newer connection");
                    }
                };
                let codec = match codec {
                    Err(_) => {
                        refused(peer, Refusal::Late);
                        return busy(&stream, secure, "no handshake in time");
                    }
                    // Refused while still pending, so that refusals count against the bounds too.
                    Ok(Err(error)) => return refuse(stream, peer, error, refused.as_ref()).await,
                    Ok(Ok(codec)) => codec,
                };
                let mut framed = Framed::with_capacity(stream, codec, CONNECTION_BUFFER);
                let first = tokio::select! {
                    first = tokio::time::timeout_at(deadline, framed.next()) => first.ok(),
                    () = waiting.evicted.cancelled() => None,
                };
                let Some(first) = first else {
                    refused(peer, if waiting.evicted.is_cancelled() { Refusal::Evicted } else { Refusal::Late });
                    return debug!("no first message in time, or dropped for a newer connection");
                };
                drop(waiting);
                let slot = match established.take(source, limits.handshake_timeout).await {
                    Ok(slot) => slot,
                    Err(full) => {
                        refused(peer, Refusal::Full);
                        return refuse_established(framed, full).await;
                    }
                };
                serve(Accepted { framed, peer, first, slot }).await;
            }
            .instrument(span),
        );
    }
}

/// Connections closed since the heap was last trimmed, past which it is
/// trimmed again ([`crate::heap`]): a burst of them leaves their memory
/// free but resident.
const TRIM_AFTER: usize = 1024;

/// Ticks a burst's trim is repeated for: its last connections close, and
/// their drains ([`DRAIN_BEFORE_CLOSE`]) end, after the trim it set off.
const TRIM_TAIL: u8 = 2;

/// Gives memory back once many connections have closed, looking every second.
struct Trim {
    every: tokio::time::Interval,
    closed: Arc<AtomicUsize>,
    /// Ticks left that trim again after a burst.
    tail: u8,
}

impl Default for Trim {
    fn default() -> Trim {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Trim { every, closed: Arc::default(), tail: 0 }
    }
}

impl Trim {
    fn after_bursts(&mut self) {
        if self.closed.load(Ordering::Relaxed) >= TRIM_AFTER {
            self.closed.store(0, Ordering::Relaxed);
            self.tail = TRIM_TAIL;
        } else if self.tail > 0 {
            self.tail -= 1;
        } else {
            return;
        }
        crate::heap::give_back();
    }
}

/// Counts its connection as closed when dropped.
struct Closed(Arc<AtomicUsize>);

impl Drop for Closed {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Tells a secure handshake from plaintext JSON and from bare text by the first byte, and
/// completes the handshake: the codec of the connection. `progress` says,
/// also when this is cut short, how far a handshake got.
async fn handshake(stream: &mut TcpStream, keys: &Keys, progress: &mut Progress) -> Result<LinkCodec, HandshakeError> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) if secure::is_secure(first[0]) => secure::respond_tracked(stream, keys, progress)
            .await
            .map(|session| LinkCodec::sealed(session, MAX_REQUEST_BYTES)),
        // The group lab's programs open with bare text: a group number, `JOIN`, `SEND…`, `CLOSE`.
        Ok(1) if first[0].is_ascii_alphanumeric() => Ok(LinkCodec::raw(MAX_REQUEST_BYTES)),
        Ok(_) => Ok(LinkCodec::plain(MAX_REQUEST_BYTES)),
        Err(error) => Err(HandshakeError::Io(error)),
    }
}

/// Why the accept loop refused a connection.
#[derive(Debug, Clone, Copy)]
pub enum Refusal<'a> {
    /// Its handshake failed: refused, when [`HandshakeError::is_refusal`]
    /// (and answered `unauthorized`), else broken off or not ours.
    Handshake(&'a HandshakeError),
    /// No handshake or first message within the handshake timeout.
    Late,
    /// Dropped for a newer pending connection of the same source.
    Evicted,
    /// The bound on established connections was reached.
    Full,
}

impl Refusal<'_> {
    /// A word for the reason, of a few values whatever the peer sends: a metric's label.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Handshake(error) => error.reason(),
            Refusal::Late => "late",
            Refusal::Evicted => "evicted",
            Refusal::Full => "full",
        }
    }
}

/// Drops a pending connection. A peer whose handshake began but got no
/// answer yet is told (when the socket takes it at once) that it may try
/// again, so that a member does not mistake a busy server of ours for one
/// that does not speak the secure protocol; anyone else is just hung up on.
fn busy(stream: &TcpStream, progress: Progress, why: &'static str) {
    debug!(why, ?progress, "dropped a pending connection");
    if progress != Progress::Begun {
        return;
    }
    let reply: Reply<(), Code> = Reply::Err(ErrorBody::new(Code::Busy, format!("{why}: try again")));
    let mut bytes = serde_json::to_vec(&reply).expect("a reply serializes");
    bytes.push(b'\n');
    let _ = stream.try_write(&bytes);
}

/// Answers a handshake whose first message was refused (no token, a
/// replay, a clock too far off); anything else (a reset, a peer of another
/// protocol) is only closed.
async fn refuse<R: Fn(SocketAddr, Refusal<'_>)>(
    stream: TcpStream,
    peer: SocketAddr,
    error: HandshakeError,
    refused: &R,
) {
    refused(peer, Refusal::Handshake(&error));
    if !error.is_refusal() {
        return debug!(%error, "closed a connection whose handshake failed");
    }
    let reply: Reply<(), Code> = Reply::Err(ErrorBody::new(Code::Unauthorized, error.to_string()));
    let mut framed = Framed::new(stream, LinkCodec::plain(MAX_REQUEST_BYTES));
    // The peer sent a whole handshake message and waits for the next one:
    // nothing is left unread, so the refusal is answered and closed at once.
    if send(&mut framed, &reply, REFUSAL_DEADLINE).await.is_ok() {
        close(framed).await;
    }
}

/// Why an established connection got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Full {
    #[error("this server holds as many connections from this address as it may ({0}): try again later")]
    Source(usize),
    #[error("this server holds as many connections as it may ({0}): try again later")]
    All(usize),
}

/// Established connections: a slot in all, and one of its source address's.
struct Established {
    limits: Limits,
    all: Arc<Semaphore>,
    by_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// An established connection's slots; dropping it releases them.
pub struct Slot {
    established: Arc<Established>,
    ip: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Established {
    fn new(limits: Limits) -> Established {
        Established { limits, all: Arc::new(Semaphore::new(limits.max_connections)), by_ip: Mutex::default() }
    }

    /// Takes a slot for a connection from `ip`: at once or never from its
    /// address's share (waiting would not free one), and waiting up to
    /// `wait` for one in all.
    async fn take(self: &Arc<Self>, ip: IpAddr, wait: Duration) -> Result<Slot, Full> {
        {
            let mut by_ip = crate::lock(&self.by_ip);
            let held = by_ip.entry(ip).or_default();
            if *held >= self.limits.max_connections_per_ip {
                return Err(Full::Source(self.limits.max_connections_per_ip));
            }
            *held += 1;
        }
        let taken = timeout(wait, self.all.clone().acquire_owned()).await;
        let permit = match taken {
            Ok(Ok(permit)) => permit,
            _ => {
                self.release(ip);
                return Err(Full::All(self.limits.max_connections));
            }
        };
        Ok(Slot { established: self.clone(), ip, _permit: permit })
    }

    fn release(&self, ip: IpAddr) {
        let mut by_ip = crate::lock(&self.by_ip);
        if let Some(held) = by_ip.get_mut(&ip) {
            *held -= 1;
            if *held == 0 {
                by_ip.remove(&ip);
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.established.release(self.ip);
    }
}

/// Tells a connection that found no slot so, as `busy`, and hangs up.
async fn refuse_established(mut framed: JsonStream, full: Full) {
    debug!(%full, "refused an established connection");
    let reply: Reply<(), Code> = Reply::Err(ErrorBody::new(Code::Busy, full.to_string()));
    if send(&mut framed, &reply, REFUSAL_DEADLINE).await.is_ok() {
        close(framed).await;
    }
}

/// The connections still proving themselves, oldest first, overall and per
/// source address.
struct Pending {
    limits: Limits,
    state: Mutex<PendingState>,
}

#[derive(Default)]
struct PendingState {
    next: u64,
    /// Each pending connection's source, and its `evicted` and `closed` tokens.
    all: BTreeMap<u64, (IpAddr, CancellationToken, CancellationToken)>,
    by_ip: HashMap<IpAddr, BTreeSet<u64>>,
}

/// A pending connection's place; dropping it releases the place.
struct Waiting {
    pending: Arc<Pending>,
    id: u64,
    evicted: CancellationToken,
    /// Cancelled once the connection's task has ended and closed its socket.
    closed: CancellationToken,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        crate::lock(&self.pending.state).remove(self.id);
    }
}

impl PendingState {
    fn remove(&mut self, id: u64) -> Option<(CancellationToken, CancellationToken)> {
        let (ip, evicted, closed) = self.all.remove(&id)?;
        if let Some(ids) = self.by_ip.get_mut(&ip) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_ip.remove(&ip);
            }
        }
        Some((evicted, closed))
    }
}

impl Pending {
    fn new(limits: Limits) -> Pending {
        Pending { limits, state: Mutex::new(PendingState::default()) }
    }

    /// Takes a place for a new connection from `ip`, dropping the oldest
    /// pending one from `ip`, or overall, when a bound is reached; returns,
    /// for a dropped one, what tells when it has closed.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> (Waiting, Option<CancellationToken>) {
        let mut state = crate::lock(&self.state);
        let from_ip = state.by_ip.get(&ip).map_or(0, BTreeSet::len);
        let oldest = if from_ip >= self.limits.max_pending_per_ip.max(1) {
            state.by_ip.get(&ip).and_then(|ids| ids.first().copied())
        } else if state.all.len() >= self.limits.max_pending.max(1) {
            state.all.keys().next().copied()
        } else {
            None
        };
        let evicted = oldest.and_then(|id| state.remove(id)).map(|(evicted, closed)| {
            evicted.cancel();
            closed
        });
        let id = state.next;
        state.next += 1;
        let (token, closed) = (CancellationToken::new(), CancellationToken::new());
        state.all.insert(id, (ip, token.clone(), closed.clone()));
        state.by_ip.entry(ip).or_default().insert(id);
        (Waiting { pending: self.clone(), id, evicted: token, closed }, evicted)
    }
}

/// Accepts the next connection. Errors such as running out of file
/// descriptors are transient: back off and try again rather than exit.
///
/// Messages go out as soon as they are written: with Nagle's algorithm, a
/// second small message (a watcher's next change, a handshake's answer
/// after a notice) would wait for the peer's delayed acknowledgement, 40 ms.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    let mut backoff = Duration::from_millis(10);
    loop {
        match listener.accept().await {
            Ok(accepted) => {
                let _ = accepted.0.set_nodelay(true);
                return accepted;
            }
            Err(error) => {
                warn!(%error, retry_in = ?backoff, "failed to accept a connection");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Writes one message, giving up after `deadline`.
pub async fn send<S: ByteStream, T: Serialize>(
    framed: &mut Framed<S, LinkCodec>,
    message: &T,
    deadline: Duration,
) -> io::Result<()> {
    let sent = timeout(deadline, framed.send(message)).await;
    finish(framed, sent)
}

/// Messages made a piece at a time as the reader takes them
/// ([`send_pieces`]), so that a large one is never held whole: a slow
/// reader of a large reply costs [`PIECES_CHUNK`], not the reply's size.
pub trait Pieces {
    /// Appends the next piece to `out`: JSON values, each followed by a
    /// newline, cut anywhere. False once the last piece is out.
    fn next_piece(&mut self, out: &mut Vec<u8>) -> bool;
}

/// How much of [`Pieces`] is made, sealed and written at a time.
pub const PIECES_CHUNK: usize = 8 * 1024;

/// Writes `pieces` a chunk at a time, each made once the last is through,
/// giving up after `deadline` for all of them.
pub async fn send_pieces<S: ByteStream>(
    framed: &mut Framed<S, LinkCodec>,
    pieces: &mut (impl Pieces + Send),
    deadline: Duration,
) -> io::Result<()> {
    let sent = async {
        let mut chunk = Vec::with_capacity(PIECES_CHUNK);
        let mut more = true;
        while more {
            chunk.clear();
            while more && chunk.len() < PIECES_CHUNK {
                more = pieces.next_piece(&mut chunk);
            }
            framed.send(Lines(&chunk)).await?;
        }
        Ok(())
    };
    let sent = timeout(deadline, sent).await;
    finish(framed, sent)
}

fn finish<S>(framed: &mut Framed<S, LinkCodec>, sent: Result<Result<(), FrameError>, Elapsed>) -> io::Result<()> {
    match sent {
        Ok(Ok(())) => {
            release_buffers(framed);
            Ok(())
        }
        Ok(Err(error)) => Err(io::Error::other(error)),
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "the client does not read its replies")),
    }
}

/// Gives back a connection's write buffer once its message is through, and
/// its read buffer once a large message is: a session lives as long as its
/// node, and buffers keep their largest size, so a registry would otherwise
/// hold, twice per node (its kept session and its watch), the largest reply
/// or chunk of one ([`PIECES_CHUNK`]) it ever sent it. Writes are rare on
/// a kept session, and a new buffer is cheap next to one.
fn release_buffers<S>(framed: &mut Framed<S, LinkCodec>) {
    const KEPT: usize = 4 * CONNECTION_BUFFER;
    if framed.write_buffer().is_empty() {
        *framed.write_buffer_mut() = bytes::BytesMut::new();
    }
    if framed.read_buffer().capacity() > KEPT && framed.read_buffer().is_empty() {
        *framed.read_buffer_mut() = bytes::BytesMut::with_capacity(CONNECTION_BUFFER);
    }
}

/// The refusal of a framing error, when the client can still read one.
pub fn framing_error_reply(error: &FrameError) -> Option<Reply<(), Code>> {
    let code = match error {
        FrameError::TooLarge { .. } => Code::TooLarge,
        FrameError::OverBudget { .. } => Code::Busy,
        FrameError::NotJson | FrameError::Truncated { .. } => Code::BadRequest,
        FrameError::Encode(_) | FrameError::Io(_) | FrameError::Sealed => return None,
    };
    Some(Reply::Err(ErrorBody::new(code, error.to_string())))
}

/// Answers a framing error after which the stream cannot go on, then hangs up.
pub async fn reject(mut framed: JsonStream, error: FrameError, deadline: Duration) {
    debug!(%error, "closing a connection after a framing error");
    let Some(reply) = framing_error_reply(&error) else { return };
    if send(&mut framed, &reply, deadline).await.is_ok() {
        drain(framed.into_inner()).await;
    }
}

/// Hangs up after the last reply. Closing a socket with unread input makes
/// the kernel send a reset, which can destroy the reply before the peer
/// reads it; so when input is pending, drain it first. When none is (the
/// usual case), close at once.
pub async fn close<S: ByteStream>(framed: Framed<S, LinkCodec>) {
    let mut stream = framed.into_inner();
    let mut probe = [0u8; 1];
    if matches!(stream.read(&mut probe).now_or_never(), Some(Ok(n)) if n > 0) {
        drain(stream).await;
    }
}

/// Closes our side, then discards what the client still sends until it
/// hangs up, for a bounded time: closing a socket with unread input makes
/// the kernel send a reset, which can destroy a reply before it is read.
/// The drain is a small task of its own, so that the connection's (sized
/// for everything it may serve) ends now.
pub async fn drain<S: ByteStream>(stream: S) {
    DRAINS.drain(stream).await
}

/// Drains under way, each holding a permit.
struct Drains(Semaphore);

impl Drains {
    async fn drain<S: ByteStream>(&'static self, mut stream: S) {
        if stream.shutdown().await.is_err() {
            return;
        }
        let Ok(permit) = self.0.try_acquire() else { return debug!("too many drains: closed at once") };
        tokio::spawn(async move {
            let _permit = permit;
            // Small, as thousands of connections may be drained at once, and
            // what is read is thrown away.
            let mut sink = [0u8; 512];
            let discard = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
            let _ = timeout(DRAIN_BEFORE_CLOSE, discard).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drains_are_bounded_and_past_the_bound_a_connection_closes_at_once() {
        let drains: &'static Drains = Box::leak(Box::new(Drains(Semaphore::new(2))));
        let mut clients = Vec::new();
        for _ in 0..3 {
            let (client, server) = tokio::io::duplex(64);
            drains.drain(server).await;
            clients.push(client);
        }
        let mut written = Vec::new();
        for client in &mut clients {
            written.push(client.write_all(b"still sending").await.is_ok());
        }
        assert_eq!(written, [true, true, false], "two are read and discarded, the third is gone");
    }

    fn pending(max_pending: usize, max_pending_per_ip: usize) -> Arc<Pending> {
        let limits = Limits { max_pending, max_pending_per_ip, ..Limits::new(8) };
        Arc::new(Pending::new(limits))
    }

    #[test]
    fn past_the_bound_from_one_address_its_oldest_pending_connection_goes() {
        let pending = pending(100, 2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let (first, _) = pending.admit(a);
        let (other, _) = pending.admit(b);
        let (second, _) = pending.admit(a);
        let (third, evicted) = pending.admit(a);
        assert!(evicted.is_some());
        assert!(first.evicted.is_cancelled());
        assert!(!second.evicted.is_cancelled() && !third.evicted.is_cancelled() && !other.evicted.is_cancelled());
    }

    #[tokio::test]
    async fn one_source_cannot_take_every_established_slot() {
        let limits = Limits { max_connections_per_ip: 2, ..Limits::new(3) };
        let established = Arc::new(Established::new(limits));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let wait = Duration::from_millis(10);
        let held = [established.take(a, wait).await.unwrap(), established.take(a, wait).await.unwrap()];

        assert_eq!(established.take(a, wait).await.err(), Some(Full::Source(2)));
        let other = established.take(b, wait).await.unwrap();
        assert_eq!(established.take(b, wait).await.err(), Some(Full::All(3)));
        drop(held);
        assert!(established.take(a, wait).await.is_ok(), "its slots were given back");
        drop(other);
        assert!(crate::lock(&established.by_ip).is_empty());
    }

    #[test]
    fn past_the_bound_in_all_the_oldest_pending_connection_goes_and_places_are_released() {
        let pending = pending(2, 100);
        let ips: Vec<IpAddr> = (1..=3).map(|i| format!("10.0.0.{i}").parse().unwrap()).collect();
        let (first, _) = pending.admit(ips[0]);
        let (second, _) = pending.admit(ips[1]);
        drop(second);
        let (third, _) = pending.admit(ips[2]);
        assert!(!first.evicted.is_cancelled(), "a released place made room");
        let (fourth, _) = pending.admit(ips[2]);
        assert!(first.evicted.is_cancelled() && !third.evicted.is_cancelled() && !fourth.evicted.is_cancelled());
        drop((first, third, fourth));
        let state = crate::lock(&pending.state);
        assert!(state.all.is_empty() && state.by_ip.is_empty());
    }
}
