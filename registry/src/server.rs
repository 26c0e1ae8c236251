//! Accept loop and per-connection handler.
//!
//! Connections are capped by a semaphore whose permit is taken *before*
//! `accept()`, so the excess waits in the kernel's backlog instead of costing
//! a file descriptor. Every read has an idle deadline and every write a write
//! deadline, so neither a silent client nor one that never reads holds a
//! permit for long.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{timeout, Instant};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

use crate::codec::{FrameError, JsonCodec, MAX_REQUEST_BYTES};
use crate::protocol::{
    millis, ClientesContact, Dialect, ErrorBody, ErrorCode, Found, Listed, OriginalContact, Registered, Renewed,
    Reply, Request,
};
use crate::store::{Leases, Store, StoreError};

/// How long shutdown waits for open connections to finish their current request.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// How long a connection that sent something unusable is drained before it is
/// closed, so that the client reads the error instead of a reset.
const DRAIN_BEFORE_CLOSE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Config {
    pub leases: Leases,
    /// How often expired entries are removed.
    pub sweep_interval: Duration,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// How long a connection may stay silent, or stall in the middle of a message.
    pub idle_timeout: Duration,
    /// How long writing one reply may take before the client is dropped.
    pub write_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            leases: Leases { ttl: Duration::from_secs(15), legacy_ttl: None },
            sweep_interval: Duration::from_secs(1),
            max_connections: 1024,
            idle_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(5),
        }
    }
}

/// Serves the registry on `listener` until `shutdown` completes.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future) {
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let store = Arc::new(Store::new(config.leases));
    tracker.spawn(sweep(store.clone(), config.sweep_interval, token.clone()));

    let server = Server { store, config: Arc::new(config), token: token.clone(), tracker: tracker.clone() };
    tokio::select! {
        () = server.accept_loop(listener) => {}
        _ = shutdown => info!(event = "shutting_down"),
    }
    token.cancel();
    tracker.close();
    if timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        warn!(grace = ?SHUTDOWN_GRACE, "connections still open at shutdown were dropped");
    }
}

struct Server {
    store: Arc<Store>,
    config: Arc<Config>,
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Server {
    async fn accept_loop(&self, listener: TcpListener) {
        let limit = Arc::new(Semaphore::new(self.config.max_connections));
        loop {
            let permit = limit.clone().acquire_owned().await.expect("the semaphore is never closed");
            let (stream, peer) = accept(&listener).await;
            let connection = Connection { store: self.store.clone(), config: self.config.clone(), peer };
            let token = self.token.clone();
            let span = tracing::info_span!("connection", %peer);
            self.tracker.spawn(
                async move {
                    connection.serve(stream, token).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
    }
}

/// Accepts the next connection. Errors such as running out of file
/// descriptors are transient: back off and try again rather than exit.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    let mut backoff = Duration::from_millis(10);
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error) => {
                warn!(%error, retry_in = ?backoff, "failed to accept a connection");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
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
            info!(event = "expired", id = %contact.id, name = %contact.name, addr = %contact.addr());
        }
    }
}

struct Connection {
    store: Arc<Store>,
    config: Arc<Config>,
    peer: SocketAddr,
}

impl Connection {
    async fn serve(&self, stream: TcpStream, token: CancellationToken) {
        let mut framed = Framed::new(stream, JsonCodec::new(MAX_REQUEST_BYTES));
        loop {
            let next = tokio::select! {
                next = timeout(self.config.idle_timeout, framed.next()) => next,
                () = token.cancelled() => return,
            };
            let reply = match next {
                Err(_) => return debug!(timeout = ?self.config.idle_timeout, "closing an idle connection"),
                Ok(None) => return,
                Ok(Some(Ok(Ok(message)))) => self.answer(message),
                Ok(Some(Ok(Err(malformed)))) => {
                    debug!(error = %malformed, "rejected a malformed message");
                    Reply::Error(ErrorBody::bad_request(malformed.to_string()))
                }
                Ok(Some(Err(error))) => return self.fail(framed, error).await,
            };
            if let Err(error) = self.send(&mut framed, &reply).await {
                return debug!(%error, "failed to send a reply");
            }
            if reply.closes_connection() {
                return;
            }
        }
    }

    /// Answers an unrecoverable framing error where the client can still read it, then hangs up.
    async fn fail(&self, mut framed: Framed<TcpStream, JsonCodec>, error: FrameError) {
        debug!(%error, "closing a connection after a framing error");
        let body = match &error {
            FrameError::TooLarge { .. } => ErrorBody::new(ErrorCode::TooLarge, error.to_string()),
            FrameError::NotJson | FrameError::Truncated { .. } => ErrorBody::bad_request(error.to_string()),
            FrameError::Encode(_) | FrameError::Io(_) => return,
        };
        if self.send(&mut framed, &Reply::Error(body)).await.is_ok() {
            drain(framed.into_inner()).await;
        }
    }

    async fn send(&self, framed: &mut Framed<TcpStream, JsonCodec>, reply: &Reply) -> io::Result<()> {
        match timeout(self.config.write_timeout, framed.send(reply)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(io::Error::other(error)),
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "the client does not read its replies")),
        }
    }

    fn answer(&self, message: serde_json::Value) -> Reply {
        let request = match Request::parse(message) {
            Ok(request) => request,
            Err(error) => {
                debug!(code = %error.code, message = %error.message, "rejected a request");
                return Reply::Error(error);
            }
        };
        let now = Instant::now();
        let store = &self.store;
        let result = match request {
            Request::Register(registration) => self.register(&registration, now),
            Request::Heartbeat { id } => store.heartbeat(&id, now).map(|ttl| Reply::Renewed(Renewed { ttl_ms: millis(ttl) })),
            Request::Deregister(key) => store.deregister(&key, now).map(|entry| {
                info!(event = "deregistered", id = %entry.id, name = %entry.name, addr = %entry.addr());
                Reply::Found(Found { entry })
            }),
            Request::Lookup { name } => store.lookup(&name, now).map(|entry| Reply::Found(Found { entry })),
            Request::List => Ok(Reply::Listed(Listed { contactos: store.list(now) })),
        };
        result.unwrap_or_else(|error| {
            debug!(%error, "refused a request");
            Reply::Error(ErrorBody::new(error.code(), error.to_string()))
        })
    }

    fn register(&self, registration: &crate::protocol::Registration, now: Instant) -> Result<Reply, StoreError> {
        let observed: IpAddr = self.peer.ip();
        let admitted = self.store.register(registration, observed, now)?;
        let entry = admitted.entry;
        for old in &admitted.replaced {
            debug!(id = %old.id, name = %old.name, addr = %old.addr(), "replaced an earlier entry of the same node");
        }
        info!(
            event = "registered",
            id = %entry.id,
            name = %entry.name,
            addr = %entry.addr(),
            dialect = ?registration.dialect,
            contacts = admitted.earlier.len(),
        );
        let earlier = admitted.earlier;
        Ok(match registration.dialect {
            Dialect::Native => Reply::Registered(Registered {
                id: entry.id.clone(),
                ttl_ms: millis(self.store.leases().ttl),
                entry,
                contactos: earlier,
            }),
            Dialect::Original => Reply::Original(
                earlier.into_iter().map(|c| OriginalContact { ip: c.ip, puerto: c.puerto, name: c.name }).collect(),
            ),
            Dialect::Clientes => {
                Reply::Clientes(earlier.into_iter().map(|c| ClientesContact { ip: c.ip, puerto: c.puerto }).collect())
            }
        })
    }
}

/// Discards what the client is still sending, for a bounded time, after
/// closing our side: closing a socket with unread input makes the kernel send
/// a reset, which can destroy the error reply before the client reads it.
async fn drain(mut stream: TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = vec![0u8; 64 * 1024];
    let _ = timeout(DRAIN_BEFORE_CLOSE, async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}
