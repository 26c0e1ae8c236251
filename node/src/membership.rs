//! The node's side of the registry: register (with retries), heartbeat,
//! deregister, all on one kept secure session ([`RegistryLink`]) in which
//! the node proved its key.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use registry::client::{ClientError, Joined};
use registry::credential::RegistryKey;
use registry::protocol::{NativeRequest, Policy, Registered};
use wire::ticket::TicketKey;

use crate::config::Backoff;
use crate::events::{self, Peer};
use crate::greeter::Contact;
use crate::link::{on_link, RegistryLink};

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
    /// The contacts registered before this node, with their tickets.
    pub peers: Vec<Contact>,
    /// What a registry of ours vouches with: its key and its policy;
    /// `None` from an original registry.
    pub vouched: Option<(RegistryKey, Policy)>,
}

#[derive(Debug)]
pub struct Membership {
    pub link: RegistryLink,
    pub name: String,
    pub puerto: u16,
    pub advertise: Advertise,
    pub backoff: Backoff,
    /// Drawn once per run and sent with every registration, so that the
    /// registry answers a registration sent again (its reply was lost or
    /// late) as the same one, and nobody is introduced to this node twice.
    pub incarnation: String,
    /// Drawn once per run too: the registry seals the tickets of those who
    /// greet this node under it.
    pub ticket_key: Arc<TicketKey>,
}

impl Membership {
    /// Registers, retrying with exponential backoff and jitter until it
    /// works. `group` is the one to ask for: chosen, or kept from an earlier
    /// registration so that a restarted registry puts the node back in it.
    pub async fn join(&self, group: Option<u32>) -> Session {
        let registry = self.link.addr.to_string();
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
        let (joined, ip, local_ip) = on_link!(&self.link, |client| {
            let local_ip = client
                .local_addr()
                .map(|a| a.ip())
                .map_err(|source| ClientError::Connect { addr: self.link.addr.to_string(), source });
            match local_ip {
                Ok(local_ip) => {
                    let ip = match self.advertise {
                        Advertise::Ip(ip) => Some(ip),
                        Advertise::Observed => None,
                        Advertise::ConnectionLocal => Some(local_ip),
                    };
                    let request = NativeRequest::Register {
                        ip,
                        puerto: self.puerto,
                        name: &self.name,
                        group,
                        incarnation: Some(self.incarnation.as_str()),
                        ticket_key: client.is_secure().then_some(&*self.ticket_key),
                    };
                    client.register(&request).await.map(|joined| (joined, ip, local_ip))
                }
                Err(error) => Err(error),
            }
        })?;
        if self.link.is_plaintext() && matches!(joined, Joined::Leased(_)) {
            // Registered in plaintext with a registry of ours: register again in a
            // secure session, which replaces this keyless entry (the same address).
            self.link.back_to_secure().await;
            return Err(ClientError::Unexpected {
                addr: self.link.addr.to_string(),
                op: "register",
                detail: "the registry speaks the secure protocol after all; registering again securely".into(),
            });
        }
        Ok(match joined {
            Joined::Leased(registered) => Session {
                lease: Some((registered.id.clone(), Duration::from_millis(registered.ttl_ms))),
                addr: registered.entry.addr(),
                group: registered.entry.group,
                vouched: Some((registered.registry_key, registered.policy)),
                peers: contacts(*registered),
            },
            Joined::Original(addrs) => {
                // An original registry answers once and hangs up.
                self.link.close().await;
                Session {
                    lease: None,
                    addr: SocketAddr::new(ip.unwrap_or(local_ip), self.puerto),
                    group: None,
                    peers: addrs
                        .into_iter()
                        .map(|addr| Contact::original(Peer { name: addr.to_string(), addr, key: None }))
                        .collect(),
                    vouched: None,
                }
            }
        })
    }

    /// Renews the lease, returning its length.
    pub async fn heartbeat(&self, id: &str) -> Result<Duration, ClientError> {
        on_link!(&self.link, |client| client.heartbeat(id).await)
    }

    pub async fn leave(&self, id: &str) -> Result<(), ClientError> {
        on_link!(&self.link, |client| client.deregister(id).await.map(drop))
    }
}

/// The contacts of a registration, each with its ticket when the registry gave one.
fn contacts(registered: Registered) -> Vec<Contact> {
    let mut tickets = registered.tickets.unwrap_or_default().into_iter();
    registered
        .contactos
        .into_iter()
        .map(|c| Contact {
            peer: Peer { addr: c.addr(), name: c.name, key: c.key },
            introduction: tickets.next().flatten(),
        })
        .collect()
}

/// A fresh incarnation: 128 random bits, so that no two runs share one.
pub fn incarnation() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// Between half and all of `delay`, so that nodes started together spread out their retries.
pub(crate) fn jitter(delay: Duration) -> Duration {
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
