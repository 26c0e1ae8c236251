//! The HIT6 node (node C of the lab): it registers with the registry, greets
//! every node registered before it, and keeps listening for greetings.
//!
//! # Layout
//! - [`config`]: command line and environment, read once into [`Config`].
//! - [`link`]: a session with the registry kept between requests, moving
//!   between its replicas when one fails.
//! - [`membership`]: registering with retries, heartbeats, deregistering.
//! - [`protocol`]: the error codes of the node's peer protocol.
//! - [`greeting`]: the greeting messages, as the original nodes exchange them.
//! - [`exchange`]: requests to peers and their answers, under deadlines.
//! - [`greeter`]: greeting peers, many at once, with timeouts and retries.
//! - [`listener`]: answering peers: greetings and group operations.
//! - [`meeting`]: which peers this node has met, so that every pair meets once.
//! - [`group`]: group communication: coordinator, member and sender sides.
//! - [`lab`]: the group lab's Node.js programs at a coordinator of ours.
//! - [`recent`]: the bounded sets of peers met and greeters heard from.
//! - [`view`]: the live membership, followed on the registry's watch.
//! - [`health`], [`metrics`], [`http`]: what the node's HTTP listener
//!   serves (`--http-listen`): its health, and its events counted.
//! - [`events`]: the log contract ([`events::Event`]), read back by the launcher.
//!
//! [`run`] ties them together: listen, register, greet, then heartbeat until
//! shutdown, re-registering whenever the registry has forgotten this node.
#![forbid(unsafe_code)]

pub mod config;
pub mod events;
pub mod exchange;
#[cfg(test)]
mod fake_registry;
pub mod greeter;
pub mod greeting;
pub mod group;
pub mod health;
pub mod http;
pub mod lab;
pub mod link;
pub mod listener;
pub mod meeting;
pub mod membership;
pub mod metrics;
pub mod protocol;
pub mod recent;
pub mod view;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use registry::client::ClientError;
use registry::protocol::ErrorCode;
use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::connection::{self, Refusal};
use wire::ticket::{Seen, TicketKey};

pub use config::Config;
use events::{Event, Identity, Mode};
use exchange::Deadlines;
use greeter::Contact;
use greeting::{Greeting, GREETING};
use link::{RegistryLink, Replicas};
use listener::{Context, Known, Trust, Vouched};
use membership::{Advertise, Membership, Session};

/// Deregistering at shutdown must not hold up the exit for long.
const LEAVE_DEADLINE: Duration = Duration::from_millis(500);
/// How long shutdown waits for greetings in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(300);

/// What a node listens on: its greeting port and, when asked, the
/// operators' HTTP listener ([`http`]).
#[derive(Debug)]
pub struct Listeners {
    pub greeting: TcpListener,
    pub http: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(greeting: TcpListener) -> Listeners {
        Listeners { greeting, http: None }
    }
}

/// Runs a node until `shutdown` completes, then deregisters.
pub async fn run(listeners: impl Into<Listeners>, config: Config, shutdown: impl Future) {
    let Listeners { greeting: listener, http } = listeners.into();
    let local = listener.local_addr().expect("a bound listener has an address");
    let node = Node::new(&config, local);
    events::listening(local, &node.describe_advertised());

    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let serve = {
        let context = node.context.clone();
        move |accepted| listener::serve(accepted, context.clone())
    };
    if let Some(http) = http {
        events::serving_http(http.local_addr().expect("a bound listener has an address"));
        let vitals = node.context.vitals.clone();
        let pages = http::Pages { metrics: metrics::install(vitals.clone()), vitals };
        tracker.spawn(wire::http::serve(http, Arc::new(pages), tracker.clone(), token.clone()));
    }
    let refused = |from: SocketAddr, refusal: Refusal<'_>| {
        metrics::METRICS.count(|m| m.rejected(refusal.reason()));
        if let Refusal::Handshake(error) = refusal {
            if error.is_refusal() {
                events::greeting_rejected(from, None, error);
            }
        }
    };
    let (keys, limits) = (config.keys.clone(), config.listen.limits);
    let accepting = connection::accept_loop(listener, keys, limits, tracker.clone(), serve, refused);
    tracker.spawn(cancellable(token.clone(), accepting));

    tokio::select! {
        () = node.stay_registered(&config, &tracker, &token) => {}
        _ = shutdown => {}
    }
    node.leave().await;
    token.cancel();
    tracker.close();
    let _ = timeout(SHUTDOWN_GRACE, tracker.wait()).await;
}

/// A session of its own with the registry, at whichever replica the node's sessions use.
fn registry_link(config: &Config, replicas: &Arc<Replicas>) -> RegistryLink {
    RegistryLink::new(replicas.clone(), config.keys.clone(), config.registry_timeout).pinned(config.registry_key)
}

async fn cancellable(token: CancellationToken, work: impl Future<Output = ()>) {
    tokio::select! {
        () = work => {}
        () = token.cancelled() => {}
    }
}

struct Node {
    membership: Membership,
    context: Arc<Context>,
    replicas: Arc<Replicas>,
}

impl Node {
    fn new(config: &Config, local: SocketAddr) -> Node {
        // Registering, coordinating and checking plaintext greeters each keep
        // a session of their own, at the one replica they share.
        let replicas = Replicas::shared(config.registries.clone());
        let link = || registry_link(config, &replicas);
        let puerto = config.puerto_ext.unwrap_or(local.port());
        let advertise = match (config.advertise_ip, config.puerto_ext) {
            (Some(ip), _) => Advertise::Ip(ip),
            (None, Some(_)) => Advertise::Observed,
            (None, None) if !local.ip().is_unspecified() => Advertise::Ip(local.ip()),
            (None, None) => Advertise::ConnectionLocal,
        };
        let name = config.name.clone().unwrap_or_else(|| default_name(puerto));
        let ticket_key = Arc::new(TicketKey::generate());
        let context = Context {
            name: name.clone(),
            keys: config.keys.clone(),
            ticket_key: ticket_key.clone(),
            tickets_seen: Mutex::new(Seen::new(recent::REMEMBERED_PEERS)),
            id: Default::default(),
            trust: Default::default(),
            known: Known::default(),
            meetings: Default::default(),
            greeted_by: Default::default(),
            config: config.listen,
            lookups: link(),
            group_view: Default::default(),
            originals: link(),
            deliveries: Deadlines { connect: config.greet.deadlines.connect, reply: config.ack_timeout },
            members: Default::default(),
            view: Default::default(),
            group: Default::default(),
            joined: Default::default(),
            vitals: Default::default(),
        };
        Node {
            membership: Membership {
                link: link(),
                name,
                puerto,
                advertise,
                backoff: config.backoff,
                incarnation: membership::incarnation(),
                ticket_key,
            },
            context: Arc::new(context),
            replicas,
        }
    }

    /// The advertised address as far as it is known before registering.
    fn describe_advertised(&self) -> String {
        let puerto = self.membership.puerto;
        match self.membership.advertise {
            Advertise::Ip(ip) => SocketAddr::new(ip, puerto).to_string(),
            Advertise::Observed => format!("<address the registry sees>:{puerto}"),
            Advertise::ConnectionLocal => format!("<local address towards the registry>:{puerto}"),
        }
    }

    fn id(&self) -> Option<String> {
        wire::lock(&self.context.id).clone()
    }

    /// Registers and greets, then heartbeats for as long as the lease lasts,
    /// registering again whenever the registry answers `unknown_id`.
    async fn stay_registered(&self, config: &Config, tracker: &TaskTracker, token: &CancellationToken) {
        let mut event = Event::Registered;
        let mut group = config.group;
        loop {
            let session = self.membership.join(group).await;
            // Keep the assigned group: a restarted registry puts the node back in it.
            group = session.group.or(group);
            self.start_greeting(event, session.clone(), config, tracker, token);
            let Some((id, ttl)) = session.lease else {
                // An original registry has no leases and understands nothing but registration.
                return std::future::pending().await;
            };
            if event == Event::Registered {
                // A registry of ours: follow its membership, on a session of its own.
                let follow = view::follow(registry_link(config, &self.replicas), self.context.clone(), config.backoff);
                tracker.spawn(cancellable(token.clone(), follow));
            }
            self.heartbeat_until_forgotten(&id, ttl, config.heartbeat_interval).await;
            event = Event::Reregistered;
        }
    }

    fn start_greeting(
        &self,
        event: Event,
        session: Session,
        config: &Config,
        tracker: &TaskTracker,
        token: &CancellationToken,
    ) {
        let id = session.lease.as_ref().map(|(id, _)| id.clone());
        *wire::lock(&self.context.id) = id.clone();
        *wire::lock(&self.context.group) = session.group;
        *wire::lock(&self.context.trust) = match session.vouched {
            Some((key, policy)) => Trust::Registry(Arc::new(Vouched { key, policy })),
            None => Trust::Original,
        };
        let contacts = session.peers.len();
        let new_peers: Vec<Contact> = {
            let mut known = wire::lock(&self.context.known);
            session.peers.into_iter().filter(|contact| known.insert(contact.peer.addr)).collect()
        };
        let addr = session.addr.to_string();
        let mode = if id.is_some() { Mode::Leased } else { Mode::Original };
        let me = Identity { name: &self.membership.name, id: id.as_deref(), addr: &addr, group: session.group };
        events::registered(event, &me, &self.membership.link.registry().to_string(), mode, contacts, new_peers.len());
        self.context.vitals.registered(true);
        if event == Event::Reregistered {
            metrics::METRICS.count(|m| m.reconnected(metrics::Reconnect::Reregistered));
        }

        let (name, greet, context) = (self.membership.name.clone(), config.greet, self.context.clone());
        let greeting = async move {
            let hello = Greeting {
                mensaje: GREETING,
                ip: Some(session.addr.ip()),
                puerto: session.addr.port(),
                name: &name,
                id: id.as_deref(),
            };
            greeter::greet_all(new_peers, &hello, greet, &context.meetings).await;
        };
        tracker.spawn(cancellable(token.clone(), greeting));
    }

    /// Returns once the registry no longer knows `id`: only then does the
    /// node register again.
    ///
    /// When the node's sessions move to another replica (`registry_moved`,
    /// which its watch notices as soon as the old one's connection closes),
    /// it heartbeats at once rather than at the next tick: its heartbeat is
    /// the first request the new replica hears on its session (see
    /// [`link::on_link`]). A replica that shares the membership renews the
    /// entry and ties it to that session, and nothing is done again; one
    /// that does not know the entry answers `unknown_id`.
    async fn heartbeat_until_forgotten(&self, id: &str, mut ttl: Duration, configured: Duration) {
        let mut moves = self.membership.link.moves();
        let mut failures = 0;
        loop {
            tokio::select! {
                () = tokio::time::sleep(membership::heartbeat_interval(configured, ttl)) => {}
                Ok(()) = moves.changed() => {}
            }
            let renewed = self.membership.heartbeat(id).await;
            // A move this heartbeat made itself calls for no other.
            moves.mark_unchanged();
            match renewed {
                Ok(renewed) => {
                    ttl = renewed;
                    failures = 0;
                    self.context.vitals.session(true);
                }
                Err(error) if error.code() == Some(ErrorCode::UnknownId) => {
                    self.context.vitals.registered(false);
                    return;
                }
                Err(error) => {
                    self.context.vitals.session(false);
                    failures += 1;
                    events::registry_unreachable(&self.membership.link.registry().to_string(), &error, failures);
                }
            }
        }
    }

    async fn leave(&self) {
        let Some(id) = self.id() else { return };
        let registry = self.membership.link.registry().to_string();
        match timeout(LEAVE_DEADLINE, self.membership.leave(&id)).await {
            Ok(Ok(())) => events::deregistered(&registry, &id),
            Ok(Err(error)) => events::deregistration_failed(&registry, &error),
            Err(_) => events::deregistration_failed(
                &registry,
                &ClientError::Timeout { addr: registry.clone(), op: "deregister", timeout: LEAVE_DEADLINE },
            ),
        }
    }
}

/// `<hostname>-<port>`: readable, and unique among the nodes of one host.
fn default_name(puerto: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_owned());
    format!("{host}-{puerto}")
}
