//! Requests to peers, each step under a deadline: one JSON message, then
//! one JSON object back (or, from some original nodes, a hang-up).
//!
//! - [`exchange`]: one plaintext request in one write, on a connection of
//!   its own, as original peers are greeted.
//! - [`ticket_exchange`]: the same, for a greeting sealed under the key of
//!   a registry's ticket ([`wire::ticket`]), whose answer only the peer the
//!   ticket is for can seal: how our nodes greet each other.
//! - [`Pool`]: secure sessions with peers that must prove the key the
//!   registry recorded for them, kept open between requests, as a
//!   coordinator's deliveries and a sender's multicasts travel.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::{Framed, FramedRead};
use wire::codec::{FrameError, JsonCodec, LinkCodec, MAX_REPLY_BYTES};
use wire::envelope::{self, EnvelopeError, Opened};
use wire::secure::{self, HandshakeError, Keys, PublicKey};
use wire::ticket::{Introduction, TicketAnswer, TicketError};

use crate::greeting::GreetingReply;
use crate::protocol::ErrorBody;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub connect: Duration,
    pub reply: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("failed to connect")]
    Connect(#[source] io::Error),
    #[error("no connection within {0:?}")]
    ConnectTimeout(Duration),
    #[error("failed to send")]
    Send(#[source] io::Error),
    #[error("failed to open a secure session")]
    Handshake(#[source] HandshakeError),
    #[error("no answer within {0:?}")]
    ReplyTimeout(Duration),
    #[error("the connection was closed without an answer")]
    Closed,
    #[error("the peer closed the secure session before answering")]
    Dropped,
    #[error("failed to read the answer")]
    Reply(#[source] FrameError),
    #[error("the answer is not JSON")]
    Malformed(#[source] serde_json::Error),
    #[error("the answer is malformed")]
    Envelope(#[source] EnvelopeError),
    #[error("refused")]
    Refused(#[source] ErrorBody),
    #[error("the registry gave no ticket for this peer (it registered without a ticket key), and it may not be greeted in plaintext")]
    NoTicket,
    #[error("the greeting with a ticket failed")]
    Ticket(#[source] TicketError),
}

impl ExchangeError {
    /// The transport failed, so a retry may succeed; the peer may have got
    /// the message all the same, so only idempotent messages may be retried.
    /// An answer that came back but was wrong is final.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ExchangeError::Connect(_)
                | ExchangeError::ConnectTimeout(_)
                | ExchangeError::Send(_)
                | ExchangeError::Handshake(
                    HandshakeError::Io(_) | HandshakeError::Closed | HandshakeError::Busy { .. }
                )
                | ExchangeError::Dropped
                | ExchangeError::ReplyTimeout(_)
                | ExchangeError::Reply(FrameError::Io(_))
        )
    }
}

/// A message as one buffer, newline-terminated.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(message).expect("our messages always serialize");
    bytes.push(b'\n');
    bytes
}

async fn connect(addr: SocketAddr, deadline: Duration) -> Result<TcpStream, ExchangeError> {
    match timeout(deadline, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(ExchangeError::Connect(error)),
        Err(_) => Err(ExchangeError::ConnectTimeout(deadline)),
    }
}

/// Sends `message` to `addr` and returns the answer, or `None` when the peer
/// hung up without one (as some original nodes do). An answer of our error
/// shape, `{"ok":false,"error":...}`, is [`ExchangeError::Refused`].
pub async fn exchange(
    addr: SocketAddr,
    message: &[u8],
    deadlines: Deadlines,
) -> Result<Option<Map<String, Value>>, ExchangeError> {
    let mut stream = connect(addr, deadlines.connect).await?;
    // Original nodes read a single recv(1024): the message must go in one write.
    stream.write_all(message).await.map_err(ExchangeError::Send)?;
    let mut replies = FramedRead::new(stream, JsonCodec::new(MAX_REPLY_BYTES));
    let reply = timeout(deadlines.reply, replies.next()).await;
    // The exchange is over either way. Closing with a reset rather than a
    // FIN spares both hosts the TIME_WAIT state and its connection-tracking
    // entry, which a large mesh (one connection per pair) would otherwise
    // pile up by the hundred thousand.
    let _ = replies.get_ref().set_zero_linger();
    let reply = match reply {
        Err(_) => return Err(ExchangeError::ReplyTimeout(deadlines.reply)),
        Ok(None) => return Ok(None),
        Ok(Some(Err(error))) => return Err(ExchangeError::Reply(error)),
        Ok(Some(Ok(reply))) => reply.map_err(|e| ExchangeError::Malformed(e.0))?,
    };
    check(reply).map(Some)
}

/// A secure session with a peer.
type Sealed = Framed<TcpStream, LinkCodec>;

/// Where a peer listens, and the key it must prove there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    pub addr: SocketAddr,
    pub key: PublicKey,
}

/// Opens a secure session with `target` as `keys`, refusing a peer that
/// proves another key.
async fn open(target: Target, keys: &Keys, deadlines: Deadlines) -> Result<Sealed, ExchangeError> {
    let mut stream = connect(target.addr, deadlines.connect).await?;
    let _ = stream.set_nodelay(true);
    let session = match timeout(deadlines.reply, secure::initiate(&mut stream, keys, Some(target.key))).await {
        Err(_) => return Err(ExchangeError::ReplyTimeout(deadlines.reply)),
        Ok(handshake) => handshake.map_err(ExchangeError::Handshake)?,
    };
    Ok(Framed::new(stream, LinkCodec::sealed(session, MAX_REPLY_BYTES)))
}

/// Sends `greeting` to `addr` as attempt `attempt` with the registry's
/// `introduction`, as [`exchange`] sends a plaintext one, and returns the
/// answer, once it opens under the introduction's key. A hang-up is no
/// answer here (see `first_answer`); an answer that does not open, or is
/// not sealed at all, came from someone other than the node the ticket is for.
pub async fn ticket_exchange(
    addr: SocketAddr,
    introduction: &Introduction,
    attempt: u32,
    greeting: &[u8],
    deadlines: Deadlines,
) -> Result<GreetingReply, ExchangeError> {
    let sent = introduction.seal_greeting(attempt, greeting).map_err(ExchangeError::Ticket)?;
    let answer = exchange(addr, &encode(&sent), deadlines).await?.ok_or(ExchangeError::Dropped)?;
    let answer: TicketAnswer =
        serde_json::from_value(Value::Object(answer)).map_err(|_| ExchangeError::Ticket(TicketError::Impostor))?;
    let opened = introduction.open_answer(attempt, &answer.sealed).map_err(ExchangeError::Ticket)?;
    serde_json::from_slice(&opened).map_err(ExchangeError::Malformed)
}

/// Secure sessions kept open to peers for repeated requests, so that a
/// coordinator does not pay a TCP and Noise handshake per member per
/// multicast. A session is lent to one request at a time.
#[derive(Debug, Default)]
pub struct Pool {
    idle: Mutex<HashMap<Target, Vec<Sealed>>>,
}

impl Pool {
    /// Sends `message` to `target` on a kept session, or a new one, and
    /// returns the answer object. A kept session the peer has closed in
    /// the meantime (it hangs up on idle ones) answers with an end of file
    /// before reading anything, so the message is sent again on a new one.
    pub async fn request<T: Serialize>(
        &self,
        target: Target,
        keys: &Keys,
        message: &T,
        deadlines: Deadlines,
    ) -> Result<Map<String, Value>, ExchangeError> {
        if let Some(mut kept) = self.take(target) {
            match request_on(&mut kept, message, deadlines.reply).await {
                Ok(answer) => return Ok(self.keep(target, kept, answer)),
                Err(ExchangeError::Send(_) | ExchangeError::Reply(FrameError::Io(_))) | Err(ExchangeError::Closed) => {}
                Err(error) => return Err(error),
            }
        }
        let mut fresh = open(target, keys, deadlines).await?;
        let answer = first_answer(request_on(&mut fresh, message, deadlines.reply).await)?;
        Ok(self.keep(target, fresh, answer))
    }

    /// Drops the kept sessions of targets `keep` refuses: members that left.
    pub fn retain(&self, keep: impl Fn(&Target) -> bool) {
        wire::lock(&self.idle).retain(|target, _| keep(target));
    }

    fn take(&self, target: Target) -> Option<Sealed> {
        wire::lock(&self.idle).get_mut(&target)?.pop()
    }

    fn keep(&self, target: Target, connection: Sealed, answer: Map<String, Value>) -> Map<String, Value> {
        wire::lock(&self.idle).entry(target).or_default().push(connection);
        answer
    }
}

/// The answer to the first request on a new secure session. A peer that
/// hangs up on it has not answered: under load it may have given up on a
/// handshake that took it too long, or it died. Unlike an original node's
/// hang-up, that is no answer, and worth another try (a greeting is
/// idempotent: a repeat is answered, not logged again).
fn first_answer(answer: Result<Map<String, Value>, ExchangeError>) -> Result<Map<String, Value>, ExchangeError> {
    match answer {
        Err(ExchangeError::Closed | ExchangeError::Reply(FrameError::Truncated { .. })) => Err(ExchangeError::Dropped),
        answer => answer,
    }
}

/// One request and its answer on an open session.
async fn request_on<T: Serialize>(
    connection: &mut Sealed,
    message: &T,
    deadline: Duration,
) -> Result<Map<String, Value>, ExchangeError> {
    let sent = timeout(deadline, connection.send(message)).await;
    match sent {
        Err(_) => return Err(ExchangeError::ReplyTimeout(deadline)),
        Ok(Err(FrameError::Io(error))) => return Err(ExchangeError::Send(error)),
        Ok(Err(error)) => return Err(ExchangeError::Reply(error)),
        Ok(Ok(())) => {}
    }
    match timeout(deadline, connection.next()).await {
        Err(_) => Err(ExchangeError::ReplyTimeout(deadline)),
        Ok(None) => Err(ExchangeError::Closed),
        Ok(Some(Err(error))) => Err(ExchangeError::Reply(error)),
        Ok(Some(Ok(reply))) => check(reply.map_err(|e| ExchangeError::Malformed(e.0))?),
    }
}

/// Any object is an answer (original nodes answer without `ok`), except our
/// refusal shape, which is [`ExchangeError::Refused`].
fn check(reply: Value) -> Result<Map<String, Value>, ExchangeError> {
    match envelope::open(reply).map_err(ExchangeError::Envelope)? {
        Opened::Ok(fields) | Opened::Bare(fields) => Ok(fields),
        Opened::Refused(error) => Err(ExchangeError::Refused(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn any_object_is_an_answer_and_our_error_shape_is_a_refusal() {
        assert!(check(json!({"mensaje":"Hola, un gusto!"})).is_ok());
        assert!(check(json!({})).is_ok());
        assert!(matches!(check(json!([1])), Err(ExchangeError::Envelope(EnvelopeError::NotAnObject("an array")))));
        assert!(matches!(check(json!({"ok":false})), Err(ExchangeError::Envelope(EnvelopeError::NoError(_)))));
        let refused = check(json!({"ok":false,"error":{"code":"bad_request","message":"no"}}));
        assert!(matches!(refused, Err(ExchangeError::Refused(e)) if e.message == "no"));
    }
}
