//! Validation of the fields the protocols share: ports, ips, names and
//! groups. Every byte comes from the network, so each check says which field
//! is wrong and echoes at most a short prefix of what was sent.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;

use serde_json::Value;

pub use crate::envelope::kind_of;
use crate::envelope::{Code, ErrorBody};

/// Longest accepted node name or registration id, in bytes.
pub const MAX_NAME_BYTES: usize = 128;

/// The highest group number. Groups are numbered from 1; the registry
/// assigns at most this many (`--groups`), and a node may choose no higher,
/// so a group is a small number every client can hold.
pub const MAX_GROUP: u32 = 100_000;

/// Characters echoed back from a bad value, at most.
const ECHO_CHARS: usize = 64;

/// A field that failed validation: always a `bad_request`, whatever the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadField(pub String);

impl<C: From<Code>> From<BadField> for ErrorBody<C> {
    fn from(bad: BadField) -> Self {
        ErrorBody::bad_request(bad.0)
    }
}

fn bad(message: impl fmt::Display) -> BadField {
    BadField(message.to_string())
}

/// A name is 1 to 128 bytes of visible text: no control, invisible or
/// bidirectional-control characters, which would let one name pass for another.
pub fn validate_name(name: &str) -> Result<(), BadField> {
    if name.is_empty() {
        return Err(bad("field `name` must not be empty"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(bad(format!("field `name` is longer than {MAX_NAME_BYTES} bytes")));
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || is_invisible(*c)) {
        return Err(bad(format!("field `name` must not contain control or invisible characters (U+{:04X})", c as u32)));
    }
    Ok(())
}

/// Format characters (Unicode category Cf: zero-width, joiners, bidirectional
/// controls, the byte-order mark, tags) and the fillers that render as blanks.
const INVISIBLE: [RangeInclusive<u32>; 16] = [
    0x00AD..=0x00AD,
    0x034F..=0x034F,
    0x0600..=0x0605,
    0x061C..=0x061C,
    0x115F..=0x1160,
    0x17B4..=0x17B5,
    0x180B..=0x180F,
    0x200B..=0x200F,
    0x202A..=0x202E,
    0x2060..=0x206F,
    0x3164..=0x3164,
    0xFE00..=0xFE0F,
    0xFEFF..=0xFEFF,
    0xFFA0..=0xFFA0,
    0xFFF9..=0xFFFB,
    0xE0000..=0xE0FFF,
];

fn is_invisible(c: char) -> bool {
    INVISIBLE.iter().any(|range| range.contains(&(c as u32)))
}

/// A registration id: a string of at most 128 bytes.
pub fn parse_id(value: &Value, key: &str) -> Result<String, BadField> {
    match value {
        Value::String(id) if id.len() <= MAX_NAME_BYTES => Ok(id.clone()),
        Value::String(_) => Err(bad(format!("field `{key}` is longer than {MAX_NAME_BYTES} bytes"))),
        other => Err(bad(format!("field `{key}` must be a string, got {}", kind_of(other)))),
    }
}

/// A port as the original programs send it: a number or a string of digits, 1 to 65535.
pub fn parse_port(value: &Value, key: &str) -> Result<u16, BadField> {
    parse_whole(value, key, "port number", "1-65535", 1..=65535).map(|port| port as u16)
}

/// A group: a whole number from 1 to [`MAX_GROUP`], or a string of digits.
pub fn parse_group(value: &Value, key: &str) -> Result<u32, BadField> {
    parse_whole(value, key, "group number", "1-100000", 1..=u64::from(MAX_GROUP)).map(|group| group as u32)
}

/// A whole number in `range`, given as a number or as a string of decimal
/// digits without sign, blanks or leading zeros.
fn parse_whole(
    value: &Value,
    key: &str,
    noun: &str,
    bounds: &str,
    range: RangeInclusive<u64>,
) -> Result<u64, BadField> {
    let number = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if is_plain_digits(s) => s.parse::<u64>().ok(),
        Value::String(_) => None,
        other => return Err(bad(format!("field `{key}` must be a {noun}, got {}", kind_of(other)))),
    };
    match number {
        Some(n) if range.contains(&n) => Ok(n),
        _ => Err(bad(format!("field `{key}`: `{}` isn't a {noun} ({bounds})", truncate(&value.to_string())))),
    }
}

fn is_plain_digits(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit())
}

/// An advertised ip. Absent, null, empty and unspecified (`0.0.0.0`, `::`) all
/// mean "use the address the connection comes from", and give `None`. An
/// IPv4-mapped address (`::ffff:127.0.0.1`) is read as the IPv4 address it
/// maps ([`IpAddr::to_canonical`]), so that one host has one spelling
/// before anyone checks who holds it.
pub fn parse_ip(value: Option<&Value>, key: &str) -> Result<Option<IpAddr>, BadField> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => match s.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
            Ok(ip) if ip.is_unspecified() => Ok(None),
            Ok(ip) => Ok(Some(ip)),
            Err(_) => Err(bad(format!("field `{key}`: `{}` isn't an IP address", truncate(s)))),
        },
        Some(other) => Err(bad(format!("field `{key}` must be an IP address string, got {}", kind_of(other)))),
    }
}

/// Whether peers can connect to `ip`: one host's address, not the
/// unspecified, broadcast or a multicast one.
pub fn check_peer_ip(ip: IpAddr) -> Result<(), BadField> {
    let why = match ip {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_multicast() => "a multicast address",
        IpAddr::V4(v4) if v4 == Ipv4Addr::BROADCAST => "the broadcast address",
        _ => return Ok(()),
    };
    Err(bad(format!("`{ip}` is {why}: no peer can connect to it")))
}

/// The first 64 characters of `s`: echoing hostile input back in full would
/// let a client make error replies (and log lines) huge.
pub fn truncate(s: &str) -> &str {
    match s.char_indices().nth(ECHO_CHARS) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ports_are_numbers_or_plain_digit_strings() {
        assert_eq!(parse_port(&json!(8089), "puerto"), Ok(8089));
        assert_eq!(parse_port(&json!("8089"), "puerto"), Ok(8089));
        for port in [json!("+8081"), json!(" 8082 "), json!("008083"), json!("0"), json!(""), json!("８０"), json!(0)]
        {
            let error = parse_port(&port, "puerto").unwrap_err().0;
            assert!(error.contains("isn't a port number"), "{port}: {error}");
        }
    }

    #[test]
    fn groups_are_bounded() {
        assert_eq!(parse_group(&json!(MAX_GROUP), "group"), Ok(MAX_GROUP));
        assert_eq!(parse_group(&json!("2"), "group"), Ok(2));
        for group in [json!(MAX_GROUP + 1), json!(4_294_967_295u64), json!("4294967295"), json!("02")] {
            assert!(parse_group(&group, "group").unwrap_err().0.contains("(1-100000)"), "{group}");
        }
    }

    #[test]
    fn names_refuse_invisible_and_bidirectional_characters() {
        assert_eq!(validate_name("node-1 ñandú 節点"), Ok(()));
        for name in ["a\u{200B}b", "\u{202E}evil", "x\u{2066}", "\u{FEFF}n", "soft\u{00AD}", "a\u{E0041}"] {
            let error = validate_name(name).unwrap_err().0;
            assert!(error.contains("invisible"), "{name:?}: {error}");
        }
        assert!(validate_name("a\nb").unwrap_err().0.contains("control"));
        assert!(validate_name("").unwrap_err().0.contains("empty"));
        assert!(validate_name(&"x".repeat(129)).unwrap_err().0.contains("128"));
    }

    #[test]
    fn ids_are_short_strings() {
        assert_eq!(parse_id(&json!("ab-1"), "id"), Ok("ab-1".into()));
        let long = parse_id(&json!("i".repeat(65_000)), "id").unwrap_err().0;
        assert_eq!(long, "field `id` is longer than 128 bytes");
        assert_eq!(parse_id(&json!(5), "id").unwrap_err().0, "field `id` must be a string, got a number");
    }

    #[test]
    fn peer_ips_must_be_one_hosts() {
        assert!(check_peer_ip("127.0.0.1".parse().unwrap()).is_ok());
        assert!(check_peer_ip("203.0.113.7".parse().unwrap()).is_ok());
        for ip in ["255.255.255.255", "224.0.0.1", "ff02::1", "0.0.0.0", "::"] {
            assert!(check_peer_ip(ip.parse().unwrap()).unwrap_err().0.contains("no peer can connect"), "{ip}");
        }
    }

    #[test]
    fn an_ipv4_mapped_address_is_read_as_the_ipv4_address_it_maps() {
        let mapped = parse_ip(Some(&json!("::ffff:127.0.0.1")), "ip").unwrap();
        assert_eq!(mapped, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(parse_ip(Some(&json!("::ffff:0.0.0.0")), "ip"), Ok(None), "the unspecified address, mapped");
        let broadcast = parse_ip(Some(&json!("::ffff:255.255.255.255")), "ip").unwrap().unwrap();
        assert!(check_peer_ip(broadcast).is_err());
    }

    #[test]
    fn echoed_values_are_truncated() {
        assert_eq!(truncate(&"é".repeat(100)).chars().count(), 64);
        let error = parse_ip(Some(&json!("x".repeat(10_000))), "ip").unwrap_err().0;
        assert!(error.len() < 120, "{}", error.len());
    }
}
