//! The group lab's Node.js programs at a coordinator of ours, byte for byte
//! as theirs speaks (plain TCP, no framing: each write one message):
//! - an internal client (a member) sends `JOIN` and stays connected; every
//!   multicast is written to it as the bare text, and it answers `ACK`. It
//!   leaves the group when its connection ends ([`Members`]);
//! - an external client sends `SEND<text>` (the text right after the four
//!   letters): once every member, ours and theirs, has acknowledged, it is
//!   told `Mensaje enviado al grupo <n>`; if one does not within the ACK
//!   deadline or answers something else, `Error al enviar mensaje al grupo
//!   <n>` and the connection ends. `CLOSE` ends it with `Desconectado del
//!   coordinador <n>`.
//!
//! Their traffic is plaintext and proves nothing: they are served only
//! where the registry admits the original programs (no join token, or
//! `--allow-original`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use wire::connection::{self, JsonStream};

use crate::events;
use crate::metrics;

/// Members that joined with `JOIN`, at most this many at once.
pub const MAX_MEMBERS: usize = 1024;

/// The sender name deliveries to our members carry for an external client's `SEND`.
pub const EXTERNAL_SENDER: &str = "external-client";

/// What one of the lab's programs sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Join,
    Send(String),
    Close,
}

impl Command {
    /// The command a message is, if any.
    pub fn parse(message: &str) -> Option<Command> {
        if let Some(text) = message.strip_prefix("SEND") {
            return Some(Command::Send(text.to_owned()));
        }
        match message.trim() {
            "JOIN" => Some(Command::Join),
            "CLOSE" => Some(Command::Close),
            _ => None,
        }
    }
}

/// What a member is sent, and where its answer goes.
struct Delivery {
    text: String,
    acked: oneshot::Sender<Result<(), String>>,
}

/// The members that joined this node with `JOIN`, each served by the task
/// that holds its connection.
#[derive(Debug, Default)]
pub struct Members {
    joined: Mutex<Vec<(u64, SocketAddr, mpsc::Sender<Delivery>)>>,
    next: AtomicU64,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").finish_non_exhaustive()
    }
}

/// How a multicast went for one member that joined with `JOIN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub addr: SocketAddr,
    pub acked: Result<(), String>,
}

impl Members {
    /// Writes `text` to every member at once, and collects each one's ACK
    /// within `deadline`, a delivery queued behind another's included.
    pub async fn deliver(&self, text: &str, deadline: Duration) -> Vec<Outcome> {
        let members: Vec<(SocketAddr, mpsc::Sender<Delivery>)> =
            wire::lock(&self.joined).iter().map(|(_, addr, to)| (*addr, to.clone())).collect();
        let deliveries = members.into_iter().map(|(addr, to)| async move {
            let started = metrics::METRICS.started();
            let (acked, answer) = oneshot::channel();
            let delivered = async {
                to.send(Delivery { text: text.to_owned(), acked }).await.map_err(|_| ENDED.to_owned())?;
                answer.await.unwrap_or_else(|_| Err(ENDED.into()))
            };
            let acked =
                timeout(deadline, delivered).await.unwrap_or_else(|_| Err(format!("no ACK within {deadline:?}")));
            if acked.is_ok() {
                metrics::METRICS.count(|m| m.acknowledged(started));
            }
            Outcome { addr, acked }
        });
        futures::future::join_all(deliveries).await
    }

    fn join(&self, addr: SocketAddr, to: mpsc::Sender<Delivery>) -> Option<u64> {
        let mut joined = wire::lock(&self.joined);
        if joined.len() >= MAX_MEMBERS {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        joined.push((id, addr, to));
        Some(id)
    }

    fn leave(&self, id: u64) {
        wire::lock(&self.joined).retain(|(joined, _, _)| *joined != id);
    }
}

/// Serves a member that sent `JOIN` until its connection ends: each
/// delivery is written as the bare text, and its answer must be `ACK`
/// within `ack_timeout`.
pub async fn member(mut framed: JsonStream, from: SocketAddr, group: u32, members: &Members, ack_timeout: Duration) {
    let (to, mut deliveries) = mpsc::channel(16);
    let Some(id) = members.join(from, to) else {
        return connection::close(framed).await;
    };
    events::original_member_joined(from, group);
    let why = loop {
        tokio::select! {
            delivery = deliveries.recv() => {
                let Some(Delivery { text, acked }) = delivery else { break "dropped" };
                let outcome = exchange(&mut framed, &text, ack_timeout).await;
                let ended = outcome.as_ref().is_err_and(|why| why == ENDED);
                let _ = acked.send(outcome);
                if ended {
                    break ENDED;
                }
            }
            // Between deliveries a member says nothing; whatever it says, or its hang-up, ends it.
            said = framed.next() => match said {
                Some(Ok(Ok(Value::String(text)))) if Command::parse(&text) == Some(Command::Close) => break "closed",
                Some(Ok(Ok(_))) => continue,
                _ => break ENDED,
            },
        }
    };
    members.leave(id);
    events::original_member_left(from, group, why);
}

const ENDED: &str = "its connection ended";

/// One delivery: the text, then the member's answer.
async fn exchange(framed: &mut JsonStream, text: &str, ack_timeout: Duration) -> Result<(), String> {
    let text = Value::String(text.to_owned());
    connection::send(framed, &text, ack_timeout).await.map_err(|_| ENDED.to_owned())?;
    match timeout(ack_timeout, framed.next()).await {
        Err(_) => Err(format!("no ACK within {ack_timeout:?}")),
        Ok(Some(Ok(Ok(Value::String(answer))))) if answer.trim() == "ACK" => Ok(()),
        Ok(Some(Ok(Ok(Value::String(answer))))) => Err(format!("answered `{}` instead of ACK", answer.trim())),
        Ok(_) => Err(ENDED.to_owned()),
    }
}

/// The answers to an external client.
pub fn sent(group: u32) -> String {
    format!("Mensaje enviado al grupo {group}")
}

pub fn not_sent(group: u32) -> String {
    format!("Error al enviar mensaje al grupo {group}")
}

pub fn disconnected(group: u32) -> String {
    format!("Desconectado del coordinador {group}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_read_as_the_lab_writes_them() {
        assert_eq!(Command::parse("JOIN"), Some(Command::Join));
        assert_eq!(Command::parse("SENDhola mundo"), Some(Command::Send("hola mundo".into())));
        assert_eq!(Command::parse("SEND"), Some(Command::Send(String::new())));
        assert_eq!(Command::parse("CLOSE"), Some(Command::Close));
        assert_eq!(Command::parse("ACK"), None);
        assert_eq!(Command::parse("join"), None);
    }
}
