//! Answering peers. A message is a greeting, or, with an `op` field, a group
//! operation (see [`crate::group`]). A greeting (or anything unusable) is
//! answered and the connection closed, as the original nodes expect; group
//! operations may follow one another on one connection, which a coordinator
//! keeps open between multicasts.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use registry::client::RegistryAddr;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::time::timeout;
use tracing::debug;
use wire::connection::{self, JsonStream};
use wire::envelope::Reply;

use crate::events;
use crate::exchange::{Deadlines, Pool};
use crate::greeting::{self, GreetingReply, GREETING_REPLY};
use crate::group::{self, Answer as GroupAnswer, GroupReply, Incoming};
use crate::protocol::ErrorBody;
use crate::recent::Recent;

#[derive(Debug, Clone, Copy)]
pub struct ListenConfig {
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// How long a peer may take to send its message.
    pub read_timeout: Duration,
    /// How long a peer may take to read the answer.
    pub write_timeout: Duration,
}

/// Addresses of the peers this node has greeted or heard from: after a
/// re-registration, only the contacts not in here are greeted.
pub type Known = Mutex<Recent<SocketAddr>>;

/// Who has greeted this node ([`greeting::Received::key`]): a greeter whose
/// answer got lost retries, and the repeat is answered but not logged again.
pub type GreetedBy = Mutex<Recent<(SocketAddr, Option<String>)>>;

/// An answer to a peer.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Answer {
    /// A greeting's answer, in the original programs' shape (no `ok`).
    Greeting(GreetingReply),
    /// Group operations and refusals, in the envelope.
    Enveloped(GroupReply),
}

/// What answering needs to know about this node.
#[derive(Debug)]
pub struct Context {
    pub name: String,
    /// The id the registry gave this node, once it has one.
    pub id: Mutex<Option<String>>,
    pub known: Known,
    pub greeted_by: GreetedBy,
    pub config: ListenConfig,
    /// Where a coordinator looks up its group's members.
    pub registry: RegistryAddr,
    /// Per-member deadlines of the deliveries it coordinates.
    pub deliveries: Deadlines,
    /// Connections to members, kept between the multicasts it coordinates.
    pub members: Pool,
}

/// Serves a connection until it is idle for the read timeout, closing it
/// after a greeting or anything unusable.
pub async fn serve(mut framed: JsonStream, from: SocketAddr, context: Arc<Context>) {
    let config = context.config;
    loop {
        let next = match timeout(config.read_timeout, framed.next()).await {
            Err(_) => return debug!(timeout = ?config.read_timeout, "no message arrived"),
            Ok(None) => return,
            Ok(Some(next)) => next,
        };
        let (answer, keep_open) = match next {
            Err(error) => return connection::reject(framed, error, config.write_timeout).await,
            Ok(Err(malformed)) => (Err(ErrorBody::bad_request(malformed.to_string())), false),
            Ok(Ok(Value::Object(fields))) if fields.contains_key("op") => {
                (answer_group(&fields, &context).await.map(|a| Answer::Enveloped(Reply::Ok(a))), true)
            }
            Ok(Ok(message)) => (answer_greeting(message, from, &context).map(Answer::Greeting), false),
        };
        let answer = answer.unwrap_or_else(|error| {
            debug!(code = %error.code, message = %error.message, "rejected a message");
            Answer::Enveloped(Reply::Err(error))
        });
        if let Err(error) = connection::send(&mut framed, &answer, config.write_timeout).await {
            return debug!(%error, "failed to answer");
        }
        if !keep_open {
            return connection::close(framed).await;
        }
    }
}

fn answer_greeting(message: Value, from: SocketAddr, context: &Context) -> Result<GreetingReply, ErrorBody> {
    let received = greeting::parse(message, from)?;
    let first_time = wire::lock(&context.greeted_by).insert(received.key());
    if first_time {
        events::greeting_received(&received.peer, from);
        wire::lock(&context.known).insert(received.peer.addr);
    } else {
        debug!(peer_name = %received.peer.name, peer_addr = %received.peer.addr, "answered a repeated greeting");
    }
    let id = wire::lock(&context.id).clone();
    Ok(GreetingReply { mensaje: GREETING_REPLY.into(), name: Some(context.name.clone()), id })
}

async fn answer_group(fields: &Map<String, Value>, context: &Context) -> Result<GroupAnswer, ErrorBody> {
    match group::parse(fields)? {
        Incoming::Deliver { message, coordinator } => {
            events::group_message_received(message.group, &message.sender, &coordinator, &message.text);
            Ok(GroupAnswer::Ack { ack: context.name.clone() })
        }
        Incoming::Multicast(message) => {
            let report =
                group::coordinate(&context.registry, &context.name, &message, context.deliveries, &context.members)
                    .await?;
            Ok(GroupAnswer::Report(report))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recent::REMEMBERED_PEERS;

    fn context() -> Context {
        let deadlines = Deadlines { connect: Duration::from_secs(1), reply: Duration::from_secs(1) };
        let timeout = Duration::from_secs(1);
        Context {
            name: "me".into(),
            id: Mutex::new(Some("ab-1".into())),
            known: Known::default(),
            greeted_by: GreetedBy::default(),
            config: ListenConfig { max_connections: 1, read_timeout: timeout, write_timeout: timeout },
            registry: RegistryAddr { host: "127.0.0.1".into(), port: 9 },
            deliveries: deadlines,
            members: Pool::default(),
        }
    }

    #[test]
    fn a_flood_of_fake_greeters_cannot_grow_what_the_node_remembers() {
        let context = context();
        let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        for i in 0..REMEMBERED_PEERS + 5_000 {
            let greeting =
                serde_json::json!({"mensaje":"hola","ip":"127.0.0.1","puerto":1 + i % 60_000,"id":format!("fake-{i}")});
            answer_greeting(greeting, from, &context).unwrap();
        }
        assert_eq!(wire::lock(&context.greeted_by).len(), REMEMBERED_PEERS);
        assert!(wire::lock(&context.known).len() <= REMEMBERED_PEERS);
    }

    #[test]
    fn a_repeated_greeting_is_answered_and_remembered_once() {
        let context = context();
        let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let greeting = serde_json::json!({"mensaje":"hola","ip":"127.0.0.1","puerto":7,"id":"x"});
        let first = answer_greeting(greeting.clone(), from, &context).unwrap();
        let again = answer_greeting(greeting, from, &context).unwrap();
        assert_eq!(first, again);
        assert_eq!((first.name.as_deref(), first.id.as_deref()), (Some("me"), Some("ab-1")));
        assert_eq!(wire::lock(&context.greeted_by).len(), 1);
    }
}
