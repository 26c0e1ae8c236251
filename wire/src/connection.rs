//! Serving JSON connections, shared by the registry and the node's listener.
//!
//! Connections are capped by a semaphore whose permit is taken *before*
//! `accept()`, so the excess waits in the kernel's accept backlog (see
//! [`bind`]) instead of costing a file descriptor. Every reply is written
//! under a deadline, so a client that never reads cannot hold a permit for long.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::SinkExt;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tokio_util::codec::Framed;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn, Instrument};

use crate::codec::{FrameError, JsonCodec, MAX_REQUEST_BYTES};
use crate::envelope::{Code, ErrorBody, Reply};

/// A connection carrying one JSON value per message.
pub type JsonStream = Framed<TcpStream, JsonCodec>;

/// How long a connection that sent something unusable is drained before it
/// is closed, so that the client reads the error instead of a reset.
const DRAIN_BEFORE_CLOSE: Duration = Duration::from_secs(1);

/// The read and write buffers a served connection starts with. Requests
/// are small, and a server under a burst holds hundreds of connections at
/// once: tokio-util's default of 8 KiB each was most of the 15 MB that 530
/// concurrent heartbeat connections cost the registry. A large message grows
/// its buffer.
const CONNECTION_BUFFER: usize = 1024;

/// Connections the kernel queues while every connection slot is taken
/// (tokio's default is 128); the kernel caps it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds with a deep accept backlog, so that a burst of connections beyond
/// the served ones waits instead of being dropped and retried a second later.
pub fn bind(listen: SocketAddr) -> io::Result<TcpListener> {
    let socket = if listen.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts connections forever, serving at most `max_connections` at once,
/// each in a task on `tracker` inside a span naming the peer.
pub async fn accept_loop<F, Fut>(listener: TcpListener, max_connections: usize, tracker: TaskTracker, serve: F)
where
    F: Fn(JsonStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(max_connections));
    loop {
        let permit = limit.clone().acquire_owned().await.expect("the semaphore is never closed");
        let (stream, peer) = accept(&listener).await;
        let connection =
            serve(Framed::with_capacity(stream, JsonCodec::new(MAX_REQUEST_BYTES), CONNECTION_BUFFER), peer);
        // A span per connection names the peer in debug logs; at the default
        // level it is disabled and costs nothing on this hot path.
        let span = tracing::debug_span!("connection", %peer);
        tracker.spawn(
            async move {
                connection.await;
                drop(permit);
            }
            .instrument(span),
        );
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

/// Writes one message, giving up after `deadline`.
pub async fn send<T: Serialize>(framed: &mut JsonStream, message: &T, deadline: Duration) -> io::Result<()> {
    match timeout(deadline, framed.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(io::Error::other(error)),
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "the client does not read its replies")),
    }
}

/// The refusal of a framing error, when the client can still read one.
pub fn framing_error_reply(error: &FrameError) -> Option<Reply<(), Code>> {
    let code = match error {
        FrameError::TooLarge { .. } => Code::TooLarge,
        FrameError::NotJson | FrameError::Truncated { .. } => Code::BadRequest,
        FrameError::Encode(_) | FrameError::Io(_) => return None,
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
pub async fn close(framed: JsonStream) {
    let stream = framed.into_inner();
    let mut probe = [0u8; 1];
    if matches!(stream.try_read(&mut probe), Ok(n) if n > 0) {
        drain(stream).await;
    }
}

/// Closes our side, then discards what the client still sends until it
/// hangs up, for a bounded time: closing a socket with unread input makes
/// the kernel send a reset, which can destroy a reply before it is read.
pub async fn drain(mut stream: TcpStream) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut sink = vec![0u8; 64 * 1024];
    let _ =
        timeout(DRAIN_BEFORE_CLOSE, async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} }).await;
}
