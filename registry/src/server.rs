//! The registry service: the sweeper and the per-connection request loop.
//!
//! A connection may carry many requests, answered in order. Every read has
//! an idle deadline and every write a write deadline (see [`wire::connection`]),
//! so neither a silent client nor one that never reads holds a slot for long.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};
use wire::connection::{self, JsonStream};

use crate::events;
use crate::protocol::{
    millis, ClientesContact, Dialect, ErrorBody, Found, Listed, OriginalContact, Registered, Registration, Renewed,
    Reply, Request,
};
use crate::store::{Leases, Store, StoreError};

/// How long shutdown waits for open connections to finish their current request.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct Config {
    pub leases: Leases,
    /// How often expired entries are removed.
    pub sweep_interval: Duration,
    /// Groups nodes are assigned to when they choose none.
    pub groups: u32,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// How long a connection may stay silent, or stall in the middle of a message.
    pub idle_timeout: Duration,
    /// How long writing one reply may take before the client is dropped.
    pub write_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            leases: Leases { ttl: Duration::from_secs(15), legacy_ttl: None },
            sweep_interval: Duration::from_secs(1),
            groups: 3,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(5),
        }
    }
}

/// Serves the registry on `listener` until `shutdown` completes.
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future) {
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let store = Arc::new(Store::new(config.leases, config.groups));
    tracker.spawn(sweep(store.clone(), config.sweep_interval, token.clone()));

    let config = Arc::new(config);
    let max_connections = config.max_connections;
    let serve = {
        let token = token.clone();
        move |framed, peer| {
            let connection = Connection { store: store.clone(), config: config.clone(), peer };
            connection.serve(framed, token.clone())
        }
    };
    tokio::select! {
        () = connection::accept_loop(listener, max_connections, tracker.clone(), serve) => {}
        _ = shutdown => events::shutting_down(),
    }
    token.cancel();
    tracker.close();
    if timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        warn!(grace = ?SHUTDOWN_GRACE, "connections still open at shutdown were dropped");
    }
}

async fn sweep(store: Arc<Store>, every: Duration, token: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = token.cancelled() => return,
        }
        for contact in store.sweep(Instant::now()) {
            events::expired(&contact);
        }
    }
}

struct Connection {
    store: Arc<Store>,
    config: Arc<Config>,
    peer: SocketAddr,
}

impl Connection {
    async fn serve(self, mut framed: JsonStream, token: CancellationToken) {
        loop {
            let next = tokio::select! {
                next = timeout(self.config.idle_timeout, framed.next()) => next,
                () = token.cancelled() => return,
            };
            let reply = match next {
                Err(_) => return debug!(timeout = ?self.config.idle_timeout, "closing an idle connection"),
                Ok(None) => return,
                Ok(Some(Ok(Ok(message)))) => self.answer(message),
                Ok(Some(Ok(Err(malformed)))) => {
                    debug!(error = %malformed, "rejected a malformed message");
                    Reply::Error(ErrorBody::bad_request(malformed.to_string()))
                }
                Ok(Some(Err(error))) => return connection::reject(framed, error, self.config.write_timeout).await,
            };
            if let Err(error) = connection::send(&mut framed, &reply, self.config.write_timeout).await {
                return debug!(%error, "failed to send a reply");
            }
            if reply.closes_connection() {
                return connection::close(framed).await;
            }
        }
    }

    fn answer(&self, message: serde_json::Value) -> Reply {
        let request = match Request::parse(message) {
            Ok(request) => request,
            Err(error) => {
                debug!(code = %error.code, message = %error.message, "rejected a request");
                return Reply::Error(error);
            }
        };
        let now = Instant::now();
        let store = &self.store;
        let result = match request {
            Request::Register(registration) => self.register(&registration, now),
            Request::Heartbeat { id } => {
                store.heartbeat(&id, now).map(|ttl| Reply::Renewed(Renewed { ttl_ms: millis(ttl) }))
            }
            Request::Deregister(key) => store.deregister(&key, now).map(|entry| {
                events::deregistered(&entry);
                Reply::Found(Found { entry })
            }),
            Request::Lookup { name } => store.lookup(&name, now).map(|entry| Reply::Found(Found { entry })),
            Request::List => Ok(Reply::Listed(Listed { contactos: store.list(now) })),
            Request::Group { group } => store.group(group, now).map(Reply::Group),
        };
        result.unwrap_or_else(|error| {
            debug!(%error, "refused a request");
            Reply::Error(ErrorBody::new(error.code(), error.to_string()))
        })
    }

    fn register(&self, registration: &Registration, now: Instant) -> Result<Reply, StoreError> {
        let admitted = self.store.register(registration, self.peer.ip(), now)?;
        let entry = admitted.entry;
        for old in &admitted.replaced {
            debug!(id = %old.id, name = %old.name, addr = %old.addr(), "replaced an earlier entry of the same node");
        }
        if admitted.repeat {
            debug!(id = %entry.id, name = %entry.name, "answered a repeated registration as its first admission");
        } else {
            events::registered(&entry, registration.dialect, admitted.earlier.len());
        }
        let earlier = admitted.earlier;
        Ok(match registration.dialect {
            Dialect::Native => Reply::Registered(Registered {
                id: entry.id.clone(),
                ttl_ms: millis(self.store.leases().ttl),
                entry,
                contactos: earlier,
            }),
            Dialect::Original => Reply::Original(
                earlier
                    .iter()
                    .map(|c| OriginalContact {
                        ip: c.contact.ip,
                        puerto: c.contact.puerto,
                        name: c.contact.name.clone(),
                    })
                    .collect(),
            ),
            Dialect::Clientes => {
                let clientes = earlier.iter().map(|c| ClientesContact { ip: c.contact.ip, puerto: c.contact.puerto });
                Reply::Clientes(clientes.collect())
            }
        })
    }
}
