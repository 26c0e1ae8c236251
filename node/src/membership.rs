//! The node's side of the registry: register (with retries), heartbeat, deregister.
//!
//! A node keeps one secure session with the registry, in which it proved
//! its key, and sends its heartbeats on it, so a heartbeat costs no TCP or
//! Noise handshake and never queues behind strangers' connections. When the
//! session breaks (the registry restarted, or closed it while idle) the
//! request is sent once more on a fresh one.
//!
//! Without a join token, a registry that does not speak the secure protocol
//! (an original HIT6 registry) is spoken to in plaintext from then on.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use registry::client::{Client, ClientError, Joined, RegistryAddr};
use registry::credential::{RegistryKey, Signed};
use registry::protocol::{NativeRequest, Policy};
use tokio::sync::Mutex;
use wire::secure::{HandshakeError, Keys};

use crate::config::Backoff;
use crate::events::{self, Peer};

/// Where the advertised ip comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advertise {
    /// Given (`--advertise-ip` / `IP_EXT`), or the ip the node listens on.
    Ip(IpAddr),
    /// Behind port mapping the node's own addresses are not what peers
    /// reach: send none, and the registry records the source of the connection.
    Observed,
    /// The local address of the connection to the registry.
    ConnectionLocal,
}

/// A registration the registry accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Id and lease length, from a registry of ours; `None` from an original registry.
    pub lease: Option<(String, Duration)>,
    /// This node's address as the registry recorded it.
    pub addr: SocketAddr,
    /// The group it was placed in; `None` from an original registry.
    pub group: Option<u32>,
    /// The contacts registered before this node.
    pub peers: Vec<Peer>,
    /// What a registry of ours vouches with: its key, its policy and this
    /// node's credential; `None` from an original registry.
    pub vouched: Option<(RegistryKey, Policy, Option<Signed>)>,
}

/// Runs `$op` with `$client` on the kept session, or on a new one; when
/// the kept one has broken, once more on a new one. Every request a node
/// sends is idempotent (a registration by its incarnation), so sending one
/// twice is safe.
macro_rules! on_session {
    ($membership:expr, |$client:ident| $op:expr) => {{
        let mut session = $membership.session.lock().await;
        loop {
            let reused = session.is_some();
            if !reused {
                match $membership.connect().await {
                    Ok(client) => *session = Some(client),
                    Err(error) => break Err(error),
                }
            }
            let $client = session.as_mut().expect("a session is open");
            let done = $op;
            match &done {
                Err(error) if !matches!(error, ClientError::Refused { .. }) => {
                    tracing::debug!(error = %wire::Chain(error), reused, "the session with the registry broke");
                    *session = None;
                    if reused {
                        continue;
                    }
                }
                _ => {}
            }
            break done;
        }
    }};
}

#[derive(Debug)]
pub struct Membership {
    pub registry: RegistryAddr,
    pub name: String,
    pub puerto: u16,
    pub advertise: Advertise,
    pub timeout: Duration,
    pub backoff: Backoff,
    /// Drawn once per run and sent with every registration, so that the
    /// registry answers a registration sent again (its reply was lost or
    /// late) as the same one, and nobody is introduced to this node twice.
    pub incarnation: String,
    pub keys: Keys,
    /// The session with the registry, kept between requests.
    pub session: Mutex<Option<Client>>,
    /// The registry turned out to be an original one, which speaks plaintext only.
    pub plaintext: AtomicBool,
}

impl Membership {
    /// Registers, retrying with exponential backoff and jitter until it
    /// works. `group` is the one to ask for: chosen, or kept from an earlier
    /// registration so that a restarted registry puts the node back in it.
    pub async fn join(&self, group: Option<u32>) -> Session {
        let registry = self.registry.to_string();
        let mut delay = self.backoff.initial;
        for attempt in 1.. {
            match self.try_join(group).await {
                Ok(session) => return session,
                Err(error @ ClientError::Refused { .. }) => events::registration_refused(&registry, &error, attempt),
                Err(error) => events::registry_unreachable(&registry, &error, attempt),
            }
            tokio::time::sleep(jitter(delay)).await;
            delay = (delay * 2).min(self.backoff.max);
        }
        unreachable!("the attempts never run out")
    }

    async fn try_join(&self, group: Option<u32>) -> Result<Session, ClientError> {
        let (joined, ip, local_ip) = on_session!(self, |client| {
            let local_ip = client
                .local_addr()
                .map(|a| a.ip())
                .map_err(|source| ClientError::Connect { addr: self.registry.to_string(), source });
            match local_ip {
                Ok(local_ip) => {
                    let ip = match self.advertise {
                        Advertise::Ip(ip) => Some(ip),
                        Advertise::Observed => None,
                        Advertise::ConnectionLocal => Some(local_ip),
                    };
                    let incarnation = Some(self.incarnation.as_str());
                    let request =
                        NativeRequest::Register { ip, puerto: self.puerto, name: &self.name, group, incarnation };
                    client.register(&request).await.map(|joined| (joined, ip, local_ip))
                }
                Err(error) => Err(error),
            }
        })?;
        Ok(match joined {
            Joined::Leased(registered) => Session {
                lease: Some((registered.id, Duration::from_millis(registered.ttl_ms))),
                addr: registered.entry.addr(),
                group: registered.entry.group,
                peers: registered
                    .contactos
                    .into_iter()
                    .map(|c| Peer { addr: c.addr(), name: c.name, key: c.key })
                    .collect(),
                vouched: Some((registered.registry_key, registered.policy, registered.credential)),
            },
            Joined::Original(addrs) => {
                // An original registry answers once and hangs up.
                *self.session.lock().await = None;
                Session {
                    lease: None,
                    addr: SocketAddr::new(ip.unwrap_or(local_ip), self.puerto),
                    group: None,
                    peers: addrs.into_iter().map(|addr| Peer { name: addr.to_string(), addr, key: None }).collect(),
                    vouched: None,
                }
            }
        })
    }

    /// Renews the lease, returning its length.
    pub async fn heartbeat(&self, id: &str) -> Result<Duration, ClientError> {
        on_session!(self, |client| client.heartbeat(id).await)
    }

    pub async fn leave(&self, id: &str) -> Result<(), ClientError> {
        on_session!(self, |client| client.deregister(id).await.map(drop))
    }

    /// A secure session as this node's keys; without a join token, a
    /// plaintext connection to a registry that turned out to be an original one.
    async fn connect(&self) -> Result<Client, ClientError> {
        if self.plaintext.load(Ordering::Relaxed) {
            return Client::connect(&self.registry, self.timeout).await;
        }
        match Client::connect_secure(&self.registry, &self.keys, self.timeout).await {
            Err(ClientError::Handshake {
                source: HandshakeError::Closed | HandshakeError::NotSecure { .. }, ..
            }) if !self.keys.admission.requires_token() => {
                tracing::debug!(registry = %self.registry, "the registry does not speak the secure protocol: plaintext from now on");
                self.plaintext.store(true, Ordering::Relaxed);
                Client::connect(&self.registry, self.timeout).await
            }
            connected => connected,
        }
    }
}

/// A fresh incarnation: 128 random bits, so that no two runs share one.
pub fn incarnation() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// Between half and all of `delay`, so that nodes started together spread out their retries.
fn jitter(delay: Duration) -> Duration {
    delay.mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// How often to heartbeat: at most `configured`, and at least three times per lease.
pub fn heartbeat_interval(configured: Duration, ttl: Duration) -> Duration {
    configured.min(ttl / 3).max(Duration::from_millis(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_fit_three_times_in_a_lease() {
        assert_eq!(heartbeat_interval(Duration::from_secs(5), Duration::from_secs(15)), Duration::from_secs(5));
        assert_eq!(heartbeat_interval(Duration::from_secs(5), Duration::from_secs(3)), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_half_and_all_of_the_delay() {
        for _ in 0..1000 {
            let d = jitter(Duration::from_millis(100));
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(100), "{d:?}");
        }
    }
}
