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

/// Greets every contact, `fanout` at a time, logging one event per peer,
/// but for those that greeted this node before their turn came
/// (`heard_from`): the pair has met. Returns how many were greeted.
pub async fn greet_all(
    contacts: Vec<Contact>,
    hello: &Greeting<'_>,
    config: GreetConfig,
    heard_from: impl Fn(&Peer) -> bool,
) -> usize {
    let hello = exchange::encode(hello);
    futures::stream::iter(contacts)
        .map(|contact| {
            let (hello, heard_from) = (&hello, &heard_from);
            async move {
                if heard_from(&contact.peer) {
                    tracing::debug!(peer_name = %contact.peer.name, peer_addr = %contact.peer.addr, "greeted by it first");
                    return false;
                }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;
    use crate::greeting::GREETING;

    /// An original peer that reads a greeting and hangs up; the stream of
    /// who was greeted.
    async fn original_peer(name: &str) -> (Contact, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let name = name.to_owned();
        let peer = Peer { name: name.clone(), addr, key: None };
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut greeting = [0u8; 256];
                let _ = stream.read(&mut greeting).await;
                let _ = tx.send(name.clone());
            }
        });
        (Contact::original(peer), rx)
    }

    #[tokio::test]
    async fn a_contact_that_greeted_this_node_before_its_turn_is_not_greeted_back() {
        let (quiet, mut quiet_heard) = original_peer("quiet").await;
        let (greeter, mut greeter_heard) = original_peer("greeter").await;
        let hello = Greeting { mensaje: GREETING, ip: None, puerto: 1, name: "me", id: None };
        let second = Duration::from_secs(1);
        let config = GreetConfig { deadlines: Deadlines { connect: second, reply: second }, fanout: 1, attempts: 1 };
        let heard_from = |peer: &Peer| peer.name == "greeter";

        let greeted = greet_all(vec![greeter, quiet], &hello, config, heard_from).await;

        assert_eq!(greeted, 1);
        assert_eq!(quiet_heard.recv().await.as_deref(), Some("quiet"));
        assert!(greeter_heard.try_recv().is_err(), "the greeter was not connected to");
    }
}
