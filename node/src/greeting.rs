//! The greeting between nodes, as the original HIT6 nodes exchange it.
//!
//! A greeting is `{"mensaje":"Hola, soy un nodo C","ip":...,"puerto":...}`
//! and its answer `{"mensaje":"Hola, un gusto!"}`; ours add `name` and `id`,
//! which original nodes ignore. Original senders may give `puerto` as a
//! string, and another group's variant writes `IP` instead of `ip`.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wire::fields::{check_peer_ip, kind_of, parse_id, parse_ip, parse_port, validate_name};

use crate::events::Peer;
use crate::protocol::ErrorBody;

pub const GREETING: &str = "Hola, soy un nodo C";
pub const GREETING_REPLY: &str = "Hola, un gusto!";

/// What a node sends to greet a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Greeting<'a> {
    pub mensaje: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    pub puerto: u16,
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
}

/// What a node answers to a greeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GreetingReply {
    pub mensaje: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Set only in a sealed answer to a greeting with a ticket: the pair
    /// has met through the answering node's own greeting
    /// ([`crate::meeting`]), so neither end logs this one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub met: bool,
}

/// A received greeting: who it says sent it, and the registration id it
/// carries (ours send one; original nodes do not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub peer: Peer,
    pub id: Option<String>,
}

impl Received {
    /// What identifies one greeter: a retry carries the same, while a node
    /// restarted at the same address registers anew and carries another id.
    pub fn key(&self) -> (SocketAddr, Option<String>) {
        (self.peer.addr, self.id.clone())
    }
}

/// Validates a received greeting. `from` is the connection's source address,
/// used for the ip when the greeting gives none (the sender is behind port
/// mapping) and as the whole address when it gives no port either; its
/// IPv4-mapped form, on a dual-stack listener, is read as plain IPv4.
pub fn parse(message: Value, from: SocketAddr) -> Result<Received, ErrorBody> {
    let from = SocketAddr::new(from.ip().to_canonical(), from.port());
    let Value::Object(fields) = message else {
        return Err(ErrorBody::bad_request(format!("expected a greeting object, got {}", kind_of(&message))));
    };
    match fields.get("mensaje") {
        Some(Value::String(_)) => {}
        Some(other) => {
            return Err(ErrorBody::bad_request(format!("field `mensaje` must be a string, got {}", kind_of(other))))
        }
        None => return Err(ErrorBody::bad_request("a greeting needs a `mensaje` field")),
    }
    let addr = advertised_addr(&fields)?.unwrap_or(from);
    let name = match fields.get("name") {
        None | Some(Value::Null) => addr.to_string(),
        Some(Value::String(name)) => {
            validate_name(name)?;
            name.clone()
        }
        Some(other) => {
            return Err(ErrorBody::bad_request(format!("field `name` must be a string, got {}", kind_of(other))))
        }
    };
    let id = match fields.get("id") {
        None | Some(Value::Null) => None,
        Some(id) => Some(parse_id(id, "id")?),
    };
    let peer = fill_ip(Peer { name, addr, key: None }, from);
    check_peer_ip(peer.addr.ip())?;
    Ok(Received { peer, id })
}

/// The address a greeting advertises: `ip` (or `IP`) and `puerto`, each optional.
fn advertised_addr(fields: &Map<String, Value>) -> Result<Option<SocketAddr>, ErrorBody> {
    let ip_key = if fields.contains_key("ip") { "ip" } else { "IP" };
    let ip = parse_ip(fields.get(ip_key), ip_key)?;
    let port = fields.get("puerto").map(|p| parse_port(p, "puerto")).transpose()?;
    Ok(port.map(|port| SocketAddr::new(ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()), port)))
}

/// A greeting that gave a port but no ip came from the connection's ip.
fn fill_ip(mut peer: Peer, from: SocketAddr) -> Peer {
    if peer.addr.ip().is_unspecified() {
        peer.addr.set_ip(from.ip());
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn from() -> SocketAddr {
        "192.0.2.9:51000".parse().unwrap()
    }

    #[test]
    fn original_greeting_with_string_port() {
        let received = parse(json!({"mensaje":GREETING,"ip":"10.0.0.5","puerto":"8089"}), from()).unwrap();
        assert_eq!(
            received.peer,
            Peer { name: "10.0.0.5:8089".into(), addr: "10.0.0.5:8089".parse().unwrap(), key: None }
        );
        assert_eq!(received.id, None);
    }

    #[test]
    fn our_greeting_carries_a_name() {
        let sent =
            Greeting { mensaje: GREETING, ip: Some("10.0.0.5".parse().unwrap()), puerto: 7, name: "n1", id: Some("x") };
        let received = parse(serde_json::to_value(&sent).unwrap(), from()).unwrap();
        assert_eq!(received.peer, Peer { name: "n1".into(), addr: "10.0.0.5:7".parse().unwrap(), key: None });
        assert_eq!(received.key(), ("10.0.0.5:7".parse().unwrap(), Some("x".into())));
    }

    #[test]
    fn missing_ip_or_port_falls_back_to_the_connection() {
        let received = parse(json!({"mensaje":"hi","puerto":8090}), from()).unwrap();
        assert_eq!(received.peer.addr, "192.0.2.9:8090".parse().unwrap());
        let received = parse(json!({"mensaje":"hi","IP":"10.1.1.1"}), from()).unwrap();
        assert_eq!(received.peer.addr, from());
    }

    #[test]
    fn bad_greetings_say_what_is_wrong() {
        let reject = |v: Value| parse(v, from()).unwrap_err().message;
        assert_eq!(reject(json!([1])), "expected a greeting object, got an array");
        assert_eq!(reject(json!({"ip":"1.2.3.4"})), "a greeting needs a `mensaje` field");
        assert_eq!(reject(json!({"mensaje":3})), "field `mensaje` must be a string, got a number");
        assert!(reject(json!({"mensaje":"x","puerto":0})).contains("isn't a port number"));
        assert!(reject(json!({"mensaje":"x","puerto":1,"ip":"1.2.3"})).contains("isn't an IP address"));
        assert!(reject(json!({"mensaje":"x","name":7})).contains("`name` must be a string"));
        assert!(reject(json!({"mensaje":"x","id":7})).contains("`id` must be a string"));
        assert!(reject(json!({"mensaje":"x","id":"i".repeat(200)})).contains("longer than 128 bytes"));
        assert!(reject(json!({"mensaje":"x","puerto":1,"ip":"224.0.0.1"})).contains("no peer can connect"));
        assert!(reject(json!({"mensaje":"x","puerto":"+1"})).contains("isn't a port number"));
    }
}
