//! Greeting peers: one connection per peer, many peers at once.
//!
//! A peer counts as greeted when it answers with one JSON object, or closes
//! the connection without answering (the original nodes may do either). A
//! connection that cannot be made is retried a few times, since nothing was
//! delivered yet; once the greeting is sent it is never sent again, so a
//! peer is greeted at most once.

use std::time::Duration;

use futures::StreamExt;

use crate::events::{self, Peer};
use crate::exchange::{self, Deadlines, ExchangeError};
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
pub async fn greet_all(peers: Vec<Peer>, hello: &Greeting<'_>, config: GreetConfig) -> usize {
    let message = exchange::encode(hello);
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

async fn greet_with_retries(peer: &Peer, message: &[u8], config: GreetConfig) -> Result<(), ExchangeError> {
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        // Hanging up without a word is how some original nodes answer.
        match exchange::exchange(peer.addr, message, config.deadlines).await.map(drop) {
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
