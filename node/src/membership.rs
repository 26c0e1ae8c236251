//! The node's side of the registry: register (with retries), heartbeat,
//! deregister, all on one kept secure session ([`RegistryLink`]) in which
//! the node proved its key.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use registry::client::{ClientError, Joined, Probed};
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
        let mut delay = self.backoff.initial;
        for attempt in 1.. {
            let joined = self.try_join(group).await;
            let registry = self.link.registry().to_string();
            match joined {
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
        let advertised = match self.advertise {
            Advertise::Ip(ip) => Some(ip),
            Advertise::Observed | Advertise::ConnectionLocal => None,
        };
        if self.link.may_be_original() {
            if let (Probed::Original(addrs), ip) = self.link.hello(advertised, self.puerto).await? {
                return Ok(original_session(SocketAddr::new(ip, self.puerto), addrs));
            }
        }
        let joined = on_link!(&self.link, |client| {
            match client.local_ip() {
                Ok(local_ip) => {
                    let ip = match self.advertise {
                        Advertise::ConnectionLocal => Some(local_ip),
                        _ => advertised,
                    };
                    let request = NativeRequest::Register {
                        ip,
                        puerto: self.puerto,
                        name: &self.name,
                        group,
                        incarnation: Some(self.incarnation.as_str()),
                        ticket_key: Some(&*self.ticket_key),
                    };
                    client.register(&request).await
                }
                Err(error) => Err(error),
            }
        })?;
        match joined {
            Joined::Leased(registered) => Ok(Session {
                lease: Some((registered.id.clone(), Duration::from_millis(registered.ttl_ms))),
                addr: registered.entry.addr(),
                group: registered.entry.group,
                vouched: Some((registered.registry_key, registered.policy)),
                peers: contacts(*registered),
            }),
            // A secure session is with a registry of ours.
            Joined::Original(_) => Err(ClientError::Unexpected {
                addr: self.link.registry().to_string(),
                op: "register",
                detail: "an original registry's answer in a secure session".into(),
            }),
        }
    }

    /// Renews the lease, returning its length.
    pub async fn heartbeat(&self, id: &str) -> Result<Duration, ClientError> {
        on_link!(&self.link, |client| client.heartbeat(id).await)
    }

    pub async fn leave(&self, id: &str) -> Result<(), ClientError> {
        on_link!(&self.link, |client| client.deregister(id).await.map(drop))
    }
}

/// A node registered, by its hello, with an original registry, which answers
/// once and never hears from it again: no lease, no group, no vouching.
fn original_session(addr: SocketAddr, contacts: Vec<SocketAddr>) -> Session {
    Session {
        lease: None,
        addr,
        group: None,
        peers: contacts
            .into_iter()
            .map(|addr| Contact::original(Peer { name: addr.to_string(), addr, key: None }))
            .collect(),
        vouched: None,
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
    use crate::fake_registry::FakeRegistry;
    use crate::link::tests::link_to;
    use registry::protocol::ErrorCode;
    use serde_json::{json, Value};

    /// A replica that shares the membership: it knows every id.
    fn renewing(request: &Value) -> Value {
        match request["op"].as_str() {
            Some("heartbeat") => json!({"ok": true, "ttl_ms": 15000}),
            _ => json!({"ok": false, "error": {"code": "bad_request", "message": "a heartbeat was expected"}}),
        }
    }

    /// A registry that does not share it: it knows no id.
    fn forgetting(_: &Value) -> Value {
        json!({"ok": false, "error": {"code": "unknown_id", "message": "no live entry has this id"}})
    }

    fn membership(link: RegistryLink) -> Membership {
        Membership {
            link,
            name: "n1".into(),
            puerto: 4000,
            advertise: Advertise::Observed,
            backoff: Backoff { initial: Duration::from_millis(10), max: Duration::from_millis(10) },
            incarnation: incarnation(),
            ticket_key: Arc::new(TicketKey::generate()),
        }
    }

    fn requests(registry: &FakeRegistry) -> Vec<Value> {
        registry.requests().into_iter().map(|(_, request)| request).collect()
    }

    /// The heartbeat that finds the session broken is sent again on the
    /// next replica, the first thing that replica hears: one that knows the
    /// entry renews it, and nothing is registered again.
    #[tokio::test]
    async fn after_a_move_the_next_replica_hears_the_heartbeat_first_and_nothing_else() {
        let (a, b) = (FakeRegistry::start(renewing).await, FakeRegistry::start(renewing).await);
        let membership = membership(link_to(&[&a.addr, &b.addr], Duration::from_secs(5)));
        membership.heartbeat("ab-1").await.unwrap();
        let b_addr = b.addr.clone();
        a.kill().await;

        assert_eq!(membership.heartbeat("ab-1").await.unwrap(), Duration::from_secs(15));
        assert_eq!(membership.link.registry(), &b_addr);
        assert_eq!(requests(&b), [json!({"op": "heartbeat", "id": "ab-1"})]);
    }

    /// A replica that keeps the node's session open but answers no more
    /// (paused, cut off) is tried last: the heartbeat that timed out there
    /// is sent again on the next replica, not on a new session with the
    /// silent one, which would take as long again.
    #[tokio::test]
    async fn a_heartbeat_that_timed_out_is_sent_again_on_the_next_replica() {
        let (a, b) = (FakeRegistry::start(renewing).await, FakeRegistry::start(renewing).await);
        let membership = membership(link_to(&[&a.addr, &b.addr], Duration::from_millis(300)));
        membership.heartbeat("ab-1").await.unwrap();
        a.pause();

        assert_eq!(membership.heartbeat("ab-1").await.unwrap(), Duration::from_secs(15));
        assert_eq!(membership.link.registry(), &b.addr);
        assert_eq!(requests(&b), [json!({"op": "heartbeat", "id": "ab-1"})]);
        assert_eq!(requests(&a).len(), 1, "only the first heartbeat was answered there");
    }

    /// Where the replica does not know the entry, the heartbeat is answered
    /// `unknown_id`, the one answer on which the node registers again.
    #[tokio::test]
    async fn a_replica_that_does_not_know_the_entry_answers_the_heartbeat_unknown_id() {
        let (a, b) = (FakeRegistry::start(renewing).await, FakeRegistry::start(forgetting).await);
        let membership = membership(link_to(&[&a.addr, &b.addr], Duration::from_secs(5)));
        membership.heartbeat("ab-1").await.unwrap();
        a.kill().await;

        let error = membership.heartbeat("ab-1").await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::UnknownId), "{error}");
        assert_eq!(requests(&b), [json!({"op": "heartbeat", "id": "ab-1"})]);
    }

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
