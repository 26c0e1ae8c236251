//! Greeting peers: one connection per peer, many peers at once. A peer of
//! ours is greeted with the ticket the registry issued for it
//! ([`wire::ticket`]): the greeting sealed under the ticket's key, which
//! only that peer can open and answer under; an original peer, in plaintext.
//!
//! A peer counts as greeted when it answers with one JSON object, or closes
//! the connection without answering (the original nodes may do either).
//! When the transport fails (no connection, no answer in time, a reset) the
//! greeting is tried again, with backoff and jitter: under load a peer's
//! answer can be late. A node that already logged a greeting answers the
//! repeat without logging it again (see [`crate::listener::GreetedBy`]), so
//! every pair is still greeted exactly once.

use std::time::Duration;

use futures::StreamExt;
use wire::ticket::{Introduction, MAX_ATTEMPTS};

use crate::events::{self, Peer};
use crate::exchange::{self, Deadlines, ExchangeError};
use crate::greeting::Greeting;

#[derive(Debug, Clone, Copy)]
pub struct GreetConfig {
    pub deadlines: Deadlines,
    /// Peers greeted at once.
    pub fanout: usize,
    /// Connection attempts per peer, at most [`MAX_ATTEMPTS`].
    pub attempts: u32,
}

/// A contact to greet: a peer, and the registry's introduction to it
/// (`None` for an original node, greeted in plaintext).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub peer: Peer,
    pub introduction: Option<Introduction>,
}

impl Contact {
    /// An original node, known by its address alone.
    pub fn original(peer: Peer) -> Contact {
        Contact { peer, introduction: None }
    }
}

/// Greets every contact, `fanout` at a time, logging one event per peer.
/// Returns how many were greeted.
pub async fn greet_all(contacts: Vec<Contact>, hello: &Greeting<'_>, config: GreetConfig) -> usize {
    let hello = exchange::encode(hello);
    futures::stream::iter(contacts)
        .map(|contact| {
            let hello = &hello;
            async move {
                match greet_with_retries(&contact, hello, config).await {
                    Ok(()) => {
                        events::greeting_sent(&contact.peer);
                        true
                    }
                    Err(error) => {
                        events::greeting_failed(&contact.peer, &error);
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

/// Greets one contact: `hello` is the greeting, encoded once for all.
async fn greet_with_retries(contact: &Contact, hello: &[u8], config: GreetConfig) -> Result<(), ExchangeError> {
    let peer = &contact.peer;
    let mut backoff = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        let greeted = match (&contact.introduction, peer.key) {
            (Some(introduction), _) => {
                exchange::ticket_exchange(peer.addr, introduction, attempt, hello, config.deadlines).await.map(drop)
            }
            // Hanging up without a word is how some original nodes answer.
            (None, None) => exchange::exchange(peer.addr, hello, config.deadlines).await.map(drop),
            (None, Some(_)) => Err(ExchangeError::NoTicket),
        };
        match greeted {
            Err(error) if error.is_transient() && attempt < config.attempts.min(MAX_ATTEMPTS) => {
                tracing::debug!(peer_name = %peer.name, peer_addr = %peer.addr, %error, attempt, "retrying a greeting");
                tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64() * 0.5)).await;
                backoff *= 2;
                attempt += 1;
            }
            result => return result,
        }
    }
}
