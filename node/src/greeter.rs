//! Greeting peers: one connection per peer, many peers at once.
//!
//! A peer counts as greeted when it answers with one JSON object, or closes
//! the connection without answering (the original nodes may do either). A
//! connection that cannot be made is retried a few times, since nothing was
//! delivered yet; once the greeting is sent it is never sent again, so a
//! peer is greeted at most once.

use std::io;
use std::time::Duration;

use futures::StreamExt;
use registry::codec::{FrameError, JsonCodec, MAX_REQUEST_BYTES};
use registry::protocol::{kind_of, ErrorBody};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::codec::FramedRead;

use crate::events::{self, Peer};
use crate::greeting::Greeting;

#[derive(Debug, Clone, Copy)]
pub struct GreetConfig {
    pub connect_timeout: Duration,
    pub reply_timeout: Duration,
    /// Peers greeted at once.
    pub fanout: usize,
    /// Connection attempts per peer.
    pub attempts: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum GreetError {
    #[error("failed to connect")]
    Connect(#[source] io::Error),
    #[error("no connection within {0:?}")]
    ConnectTimeout(Duration),
    #[error("failed to send the greeting")]
    Send(#[source] io::Error),
    #[error("no answer within {0:?}")]
    ReplyTimeout(Duration),
    #[error("failed to read the answer")]
    Reply(#[source] FrameError),
    #[error("the answer is not JSON")]
    Malformed(#[source] serde_json::Error),
    #[error("the answer is {0}, not an object")]
    NotAnObject(&'static str),
    #[error("the peer refused the greeting")]
    Refused(#[source] ErrorBody),
}

impl GreetError {
    /// Nothing reached the peer, so trying again cannot greet it twice.
    fn is_retryable(&self) -> bool {
        matches!(self, GreetError::Connect(_) | GreetError::ConnectTimeout(_))
    }
}

/// Greets every peer, `fanout` at a time, logging one event per peer.
/// Returns how many were greeted.
pub async fn greet_all(peers: Vec<Peer>, hello: &Greeting<'_>, config: GreetConfig) -> usize {
    let message = encode(hello);
    futures::stream::iter(peers)
        .map(|peer| {
            let message = &message;
            async move {
                match greet_with_retries(&peer, message, config).await {
                    Ok(()) => {
                        events::greeting_sent(&peer);
                        true
                    }
                    Err(error) => {
                        events::greeting_failed(&peer, &error);
                        false
                    }
                }
            }
        })
        .buffer_unordered(config.fanout.max(1))
        .filter(|greeted| std::future::ready(*greeted))
        .count()
        .await
}

fn encode(hello: &Greeting<'_>) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(hello).expect("a greeting always serializes");
    bytes.push(b'\n');
    bytes
}

async fn greet_with_retries(peer: &Peer, message: &[u8], config: GreetConfig) -> Result<(), GreetError> {
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        match greet(peer, message, config).await {
            Err(error) if error.is_retryable() && attempt < config.attempts => {
                tracing::debug!(peer_name = %peer.name, peer_addr = %peer.addr, %error, attempt, "retrying a greeting");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Sends one greeting and waits for the answer or the peer hanging up.
async fn greet(peer: &Peer, message: &[u8], config: GreetConfig) -> Result<(), GreetError> {
    let mut stream = match timeout(config.connect_timeout, TcpStream::connect(peer.addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(GreetError::Connect(error)),
        Err(_) => return Err(GreetError::ConnectTimeout(config.connect_timeout)),
    };
    // Original nodes read a single recv(1024): the greeting must go in one write.
    stream.write_all(message).await.map_err(GreetError::Send)?;
    let mut replies = FramedRead::new(stream, JsonCodec::new(MAX_REQUEST_BYTES));
    let reply = match timeout(config.reply_timeout, replies.next()).await {
        Err(_) => return Err(GreetError::ReplyTimeout(config.reply_timeout)),
        // Hanging up without a word is how some original nodes answer.
        Ok(None) => return Ok(()),
        Ok(Some(Err(error))) => return Err(GreetError::Reply(error)),
        Ok(Some(Ok(reply))) => reply.map_err(|e| GreetError::Malformed(e.0))?,
    };
    check_reply(reply)
}

/// An answer is any object, unless it is our error shape.
fn check_reply(reply: Value) -> Result<(), GreetError> {
    let Value::Object(fields) = &reply else {
        return Err(GreetError::NotAnObject(kind_of(&reply)));
    };
    if fields.get("ok") == Some(&Value::Bool(false)) {
        let error = fields.get("error").cloned().and_then(|e| serde_json::from_value(e).ok());
        return Err(GreetError::Refused(error.unwrap_or_else(|| ErrorBody::bad_request("no reason given"))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn any_object_answer_counts_and_errors_do_not() {
        assert!(check_reply(json!({"mensaje":"Hola, un gusto!"})).is_ok());
        assert!(check_reply(json!({})).is_ok());
        assert!(matches!(check_reply(json!([1])), Err(GreetError::NotAnObject("an array"))));
        let refused = check_reply(json!({"ok":false,"error":{"code":"bad_request","message":"no"}}));
        assert!(matches!(refused, Err(GreetError::Refused(e)) if e.message == "no"));
    }
}
