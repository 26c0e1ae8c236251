//! Greeting peers: one connection per peer, many peers at once. A peer of
//! ours is greeted with the ticket the registry issued for it
//! ([`wire::ticket`]): the greeting sealed under the ticket's key, which
//! only that peer can open and answer under; an original peer, in plaintext.
//!
//! A peer counts as greeted when it answers with one JSON object, or closes
//! the connection without answering (the original nodes may do either).
//! When the transport fails (no connection, no answer in time, a reset) a
//! greeting with a ticket is tried again, with backoff and jitter: under
//! load a peer's answer can be late. An original peer, which proves nothing
//! (anyone may register one that never answers), gets one attempt under a
//! short deadline ([`ORIGINAL_REPLY`]), in a lane of its own, so that such
//! entries cannot hold up the peers that can prove who they are. A node
//! that already logged a greeting answers the
//! repeat without logging it again (see [`crate::listener::GreetedBy`]), so
//! every pair is still greeted exactly once. A peer whose own greeting to
//! this node crossed this one may answer that the pair has met
//! ([`crate::meeting`]): then neither end logs this greeting.

use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use wire::ticket::{Introduction, MAX_ATTEMPTS};

use crate::events::{self, Peer};
use crate::exchange::{self, Deadlines, ExchangeError};
use crate::greeting::Greeting;
use crate::meeting::{Meetings, OnItsWay};
use crate::metrics::{self, Sent};

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

/// How long an original peer may take to answer its one attempt.
pub const ORIGINAL_REPLY: Duration = Duration::from_secs(2);

/// Greets every contact, logging one event per peer, but for those whose
/// pair has met otherwise ([`Meetings`]): they greeted this node before
/// their turn came, or answer that they did. Peers with a ticket and
/// original peers are greeted in lanes of their own, `fanout` at a time
/// each. Returns how many were greeted.
pub async fn greet_all(
    contacts: Vec<Contact>,
    hello: &Greeting<'_>,
    config: GreetConfig,
    meetings: &Mutex<Meetings>,
) -> usize {
    let hello = exchange::encode(hello);
    let (ours, originals): (Vec<_>, Vec<_>) = contacts.into_iter().partition(|c| c.introduction.is_some());
    let reply = config.deadlines.reply.min(ORIGINAL_REPLY);
    let original = GreetConfig { attempts: 1, deadlines: Deadlines { reply, ..config.deadlines }, ..config };
    let (ours, originals) =
        futures::join!(greet_lane(ours, &hello, config, meetings), greet_lane(originals, &hello, original, meetings));
    ours + originals
}

/// Greets `contacts`, `fanout` at a time: `hello` is the greeting, encoded once for all.
async fn greet_lane(contacts: Vec<Contact>, hello: &[u8], config: GreetConfig, meetings: &Mutex<Meetings>) -> usize {
    futures::stream::iter(contacts)
        .map(|contact| async move {
            let (name, addr) = (&contact.peer.name, contact.peer.addr);
            if wire::lock(meetings).heard_from(&addr) {
                tracing::debug!(peer_name = %name, peer_addr = %addr, "greeted by it first");
                return false;
            }
            let on_its_way = contact.introduction.as_ref().and(contact.peer.key);
            let on_its_way = on_its_way.map(|key| OnItsWay::start(meetings, key));
            let started = metrics::METRICS.started();
            let greeted = greet_with_retries(&contact, hello, config).await;
            let outcome = match &greeted {
                Ok(Answer::Welcome) => Sent::Welcome,
                Ok(Answer::Met) => Sent::Met,
                Err(_) => Sent::Failed,
            };
            metrics::METRICS.count(|m| m.greeted(outcome, started));
            match greeted {
                Ok(Answer::Met) => {
                    tracing::debug!(peer_name = %name, peer_addr = %addr, "met already, through its greeting");
                    false
                }
                Ok(Answer::Welcome) => {
                    if let Some(on_its_way) = on_its_way {
                        on_its_way.welcomed();
                    }
                    events::greeting_sent(&contact.peer);
                    true
                }
                Err(error) => {
                    events::greeting_failed(&contact.peer, &error);
                    false
                }
            }
        })
        .buffer_unordered(config.fanout.max(1))
        .filter(|greeted| std::future::ready(*greeted))
        .count()
        .await
}

/// How a contact answered this node's greeting.
enum Answer {
    Welcome,
    /// The pair met through the contact's own greeting ([`crate::meeting`]).
    Met,
}

/// Greets one contact: `hello` is the greeting, encoded once for all.
async fn greet_with_retries(contact: &Contact, hello: &[u8], config: GreetConfig) -> Result<Answer, ExchangeError> {
    let peer = &contact.peer;
    let mut backoff = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        let greeted = match (&contact.introduction, peer.key) {
            (Some(introduction), _) => {
                exchange::ticket_exchange(peer.addr, introduction, attempt, hello, config.deadlines)
                    .await
                    .map(|answer| if answer.met { Answer::Met } else { Answer::Welcome })
            }
            // Hanging up without a word is how some original nodes answer.
            (None, None) => exchange::exchange(peer.addr, hello, config.deadlines).await.map(|_| Answer::Welcome),
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

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;
    use wire::secure::Identity;
    use wire::ticket::{Greeter, TicketAnswer, TicketGreeting, TicketKey};

    use super::*;
    use crate::greeting::GREETING;

    fn config(attempts: u32) -> GreetConfig {
        let second = Duration::from_secs(1);
        GreetConfig { deadlines: Deadlines { connect: second, reply: second }, fanout: 1, attempts }
    }

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
        let meetings = Mutex::<Meetings>::default();
        wire::lock(&meetings).hear_from(greeter.peer.addr);

        let greeted = greet_all(vec![greeter, quiet], &hello, config(1), &meetings).await;

        assert_eq!(greeted, 1);
        assert_eq!(quiet_heard.recv().await.as_deref(), Some("quiet"));
        assert!(greeter_heard.try_recv().is_err(), "the greeter was not connected to");
    }

    /// A peer of ours whose own greeting crossed this node's: it answers,
    /// sealed under the pair's key, that the pair has met.
    #[tokio::test]
    async fn a_contact_that_answers_that_the_pair_has_met_is_not_counted_as_greeted() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (ticket_key, peer_key) = (TicketKey::generate(), Identity::generate().public());
        let me = Greeter {
            id: "ab-1".into(),
            name: "me".into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            key: Identity::generate().public(),
            group: None,
        };
        let introduction = ticket_key.issue(peer_key, &me, registry::credential::unix_ms() + 60_000);
        let peer = Peer { name: "peer".into(), addr: listener.local_addr().unwrap(), key: Some(peer_key) };
        let answered = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut line = String::new();
            BufReader::new(&mut stream).read_line(&mut line).await.unwrap();
            let sent: TicketGreeting = serde_json::from_str(&line).unwrap();
            let opened = ticket_key.open(&sent.ticket, peer_key, registry::credential::unix_ms()).unwrap();
            let answer = br#"{"mensaje":"Hola, un gusto!","name":"peer","met":true}"#;
            let sealed = TicketAnswer { sealed: opened.seal_answer(sent.attempt, answer) };
            let mut bytes = serde_json::to_vec(&sealed).unwrap();
            bytes.push(b'\n');
            stream.write_all(&bytes).await.unwrap();
            // A second attempt would be a retry: there must be none.
            listener.accept().await.is_ok()
        });
        let hello = Greeting { mensaje: GREETING, ip: None, puerto: 1, name: "me", id: Some("ab-1") };
        let contact = Contact { peer, introduction: Some(introduction) };

        let greeted = greet_all(vec![contact], &hello, config(3), &Mutex::default()).await;

        assert_eq!(greeted, 0, "the pair met through the peer's greeting");
        answered.abort();
        assert!(answered.await.unwrap_err().is_cancelled(), "the greeting was not tried again");
    }
}
