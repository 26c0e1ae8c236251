//! Greeting peers: one connection per peer, many peers at once. A peer the
//! registry recorded a key for is greeted in a secure session in which it
//! must prove that key, with this node's credential in the greeting; an
//! original peer, in plaintext.
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
use wire::secure::Keys;

use crate::events::{self, Peer};
use crate::exchange::{self, Deadlines, ExchangeError, Target};
use crate::greeting::Greeting;

#[derive(Debug, Clone, Copy)]
pub struct GreetConfig {
    pub deadlines: Deadlines,
    /// Peers greeted at once.
    pub fanout: usize,
    /// Connection attempts per peer.
    pub attempts: u32,
}

/// Greets every peer, `fanout` at a time, logging one event per peer.
/// Returns how many were greeted.
pub async fn greet_all(peers: Vec<Peer>, hello: &Greeting<'_>, keys: &Keys, config: GreetConfig) -> usize {
    // Original peers get the greeting without a credential, which is only for secure sessions.
    let plain = exchange::encode(&Greeting { credential: None, ..hello.clone() });
    futures::stream::iter(peers)
        .map(|peer| {
            let plain = &plain;
            async move {
                match greet_with_retries(&peer, hello, plain, keys, config).await {
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

async fn greet_with_retries(
    peer: &Peer,
    hello: &Greeting<'_>,
    plain: &[u8],
    keys: &Keys,
    config: GreetConfig,
) -> Result<(), ExchangeError> {
    let mut backoff = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        let greeted = match peer.key {
            Some(key) => {
                let target = Target { addr: peer.addr, key };
                exchange::secure_exchange(target, keys, hello, config.deadlines).await.map(drop)
            }
            // Hanging up without a word is how some original nodes answer.
            None => exchange::exchange(peer.addr, plain, config.deadlines).await.map(drop),
        };
        match greeted {
            Err(error) if error.is_transient() && attempt < config.attempts => {
                tracing::debug!(peer_name = %peer.name, peer_addr = %peer.addr, %error, attempt, "retrying a greeting");
                tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64() * 0.5)).await;
                backoff *= 2;
                attempt += 1;
            }
            result => return result,
        }
    }
}
