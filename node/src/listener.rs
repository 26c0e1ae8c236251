//! Receiving greetings: one message per connection, answered, then closed.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use registry::connection::{self, JsonStream};
use registry::protocol::{ErrorBody, Reply};
use tokio::time::timeout;
use tracing::debug;

use crate::events;
use crate::greeting::{self, GreetingReply, GREETING_REPLY};

#[derive(Debug, Clone, Copy)]
pub struct ListenConfig {
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// How long a peer may take to send its greeting.
    pub read_timeout: Duration,
    /// How long a peer may take to read the answer.
    pub write_timeout: Duration,
}

/// Addresses of the peers this node has greeted or heard from: after a
/// re-registration, only the contacts not in here are greeted.
pub type Known = Arc<Mutex<HashSet<SocketAddr>>>;

/// How this node introduces itself in answers.
#[derive(Debug, Clone)]
pub struct Me {
    pub name: String,
    pub id: Arc<Mutex<Option<String>>>,
}

/// Serves one greeting on one connection.
pub async fn serve(mut framed: JsonStream, from: SocketAddr, me: Me, known: Known, config: ListenConfig) {
    let next = match timeout(config.read_timeout, framed.next()).await {
        Err(_) => return debug!(timeout = ?config.read_timeout, "no greeting arrived"),
        Ok(None) => return debug!("closed without greeting"),
        Ok(Some(next)) => next,
    };
    let message = match next {
        Err(error) => return connection::reject(framed, error, config.write_timeout).await,
        Ok(Err(malformed)) => Err(ErrorBody::bad_request(malformed.to_string())),
        Ok(Ok(message)) => greeting::parse(message, from),
    };
    let result = match message {
        Ok(peer) => {
            events::greeting_received(&peer, from);
            known.lock().expect("no panics while holding it").insert(peer.addr);
            let id = me.id.lock().expect("no panics while holding it").clone();
            let answer = GreetingReply { mensaje: GREETING_REPLY.into(), name: Some(me.name), id };
            connection::send(&mut framed, &answer, config.write_timeout).await
        }
        Err(error) => {
            debug!(code = %error.code, message = %error.message, "rejected a greeting");
            connection::send(&mut framed, &Reply::Error(error), config.write_timeout).await
        }
    };
    match result {
        // Hang up only once the peer has: closing with unread input would
        // reset the connection and could destroy the answer in flight.
        Ok(()) => connection::drain(framed.into_inner()).await,
        Err(error) => debug!(%error, "failed to answer a greeting"),
    }
}
