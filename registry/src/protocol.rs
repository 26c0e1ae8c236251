//! The registry's wire protocol: requests, replies and the original dialects.
//!
//! Requests are parsed from a `serde_json::Value` by hand rather than derived,
//! because one connection may speak three dialects (native `op` requests, the
//! original `{"ip","puerto"}` registration and the `{"IP","puerto"}` variant)
//! and because every rejection must say exactly which field was wrong.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use wire::envelope::{self, Code};
use wire::fields::{kind_of, parse_group, parse_id, parse_ip, parse_port, truncate, validate_name};
use wire::secure::PublicKey;
use wire::ticket::{Introduction, TicketKey};

// What replies are made of, where their readers have always found it.
pub use crate::contact::{Contact, Encoded, EncodedContact};
use crate::credential::{RegistryKey, Signed};

/// Stable error codes; clients match on these, people read the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    UnknownOp,
    TooLarge,
    NameTaken,
    NotFound,
    UnknownId,
    EmptyGroup,
    UnknownGroup,
    /// No proof of membership: a failed handshake, or plaintext where the
    /// join token is required.
    Unauthorized,
    /// The entry belongs to another key.
    Forbidden,
    /// A live entry of another key holds the address.
    AddressTaken,
    /// The registry holds as many entries (or original-dialect entries) as it may.
    Full,
    /// A replica cannot reach the store it shares with the others (etcd):
    /// ask another.
    Unavailable,
    /// A connection dropped while still proving itself: try again.
    Busy,
    /// A watcher fell further behind than the registry keeps changes: watch
    /// again with `since`, to get a snapshot.
    Lagging,
}

impl From<Code> for ErrorCode {
    fn from(code: Code) -> Self {
        match code {
            Code::BadRequest => ErrorCode::BadRequest,
            Code::UnknownOp => ErrorCode::UnknownOp,
            Code::TooLarge => ErrorCode::TooLarge,
            Code::Unauthorized => ErrorCode::Unauthorized,
            Code::Busy => ErrorCode::Busy,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.serialize(f)
    }
}

/// A refusal from the registry.
pub type ErrorBody = envelope::ErrorBody<ErrorCode>;

/// Which dialect a registration arrived in; it decides the reply's shape and the lease.
///
/// The `registered` event logs it by its `Debug` name (`Native`), which is
/// the name it deserializes from, so that the event reads back as it was
/// written (`events::Record::dialect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Dialect {
    /// `{"op":"register",...}`: leased, answered with `{"ok":true,...}`.
    Native,
    /// The original HIT6 node: `{"ip","puerto"}`, answered with a bare array, then closed.
    Original,
    /// Another group's variant: `{"IP","puerto"}`, answered with `{"clientes":[...]}`, then closed.
    Clientes,
}

/// A registration after validation. `ip` is `None` when the sender gave none,
/// or an unspecified one, or is known to give a wrong one: the registry then
/// records the address it sees the connection come from.
///
/// Serialized only between replicas (`replica::command`), sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub ip: Option<IpAddr>,
    pub puerto: u16,
    pub name: Option<String>,
    /// The group asked for; `None` lets the registry assign one.
    pub group: Option<u32>,
    /// The run of the node registering: a repeat of it is the same registration.
    pub incarnation: Option<String>,
    pub dialect: Dialect,
    /// The key the registrant proved in its handshake; never from the request.
    pub key: Option<PublicKey>,
    /// What tickets for the registrant are to be sealed under (see
    /// [`wire::ticket`]); taken only in a secure session.
    pub ticket_key: Option<TicketKey>,
}

/// How a request names its entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKey {
    Id(String),
    Name(String),
    /// Where it listens: how a node checks a plaintext greeter is an original one.
    Addr(SocketAddr),
}

/// A validated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Register(Registration),
    /// A node of ours asking, in a message an original registry reads as
    /// a registration, whether this registry is one of ours ([`Hello`]).
    Hello,
    /// The group lab's group server: a bare group number, as text, for
    /// the address of that group's coordinator; `None` when the text is
    /// no number.
    Coordinator {
        group: Option<u32>,
    },
    Heartbeat {
        id: String,
    },
    Deregister(EntryKey),
    Lookup(EntryKey),
    List,
    /// The coordinator and live members of a group.
    Group {
        group: u32,
    },
    /// Every change to the membership from now on, or after `since`.
    Watch {
        since: Option<Since>,
    },
}

/// What a request asks, by name: a metric's label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Register,
    Hello,
    Coordinator,
    Heartbeat,
    Deregister,
    Lookup,
    List,
    Group,
    Watch,
    /// A message that is no request.
    Invalid,
}

impl Operation {
    pub const ALL: [Operation; 10] = [
        Operation::Register,
        Operation::Hello,
        Operation::Coordinator,
        Operation::Heartbeat,
        Operation::Deregister,
        Operation::Lookup,
        Operation::List,
        Operation::Group,
        Operation::Watch,
        Operation::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Register => "register",
            Operation::Hello => "hello",
            Operation::Coordinator => "coordinator",
            Operation::Heartbeat => "heartbeat",
            Operation::Deregister => "deregister",
            Operation::Lookup => "lookup",
            Operation::List => "list",
            Operation::Group => "group",
            Operation::Watch => "watch",
            Operation::Invalid => "invalid",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Request {
    pub fn operation(&self) -> Operation {
        match self {
            Request::Register(_) => Operation::Register,
            Request::Hello => Operation::Hello,
            Request::Coordinator { .. } => Operation::Coordinator,
            Request::Heartbeat { .. } => Operation::Heartbeat,
            Request::Deregister(_) => Operation::Deregister,
            Request::Lookup(_) => Operation::Lookup,
            Request::List => Operation::List,
            Request::Group { .. } => Operation::Group,
            Request::Watch { .. } => Operation::Watch,
        }
    }
}

/// Where a watcher resumes: after `revision`, of the registry run `epoch`
/// when it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    pub revision: u64,
    pub epoch: Option<String>,
}

/// The field that makes an original registration a [`Hello`].
pub const HELLO_FIELD: &str = "hit6";

/// What a node without a join token sends a registry before anything else,
/// to learn whether it is one of ours without crashing it if not: the
/// original registries read one `recv(1024)`, and die on anything but a
/// JSON registration. So the hello is one, of both dialects at once (`ip`
/// for the original, `IP` for the variant), in one write, with a field of
/// ours that they ignore: an original registry registers the node and
/// answers its contacts, which is all the node will ever ask of it; ours
/// answers `{"ok":true,"secure":1}` and registers nothing, and the node
/// goes on in a secure session.
#[derive(Debug, Clone, Serialize)]
pub struct Hello {
    pub ip: IpAddr,
    #[serde(rename = "IP")]
    pub ip_variant: IpAddr,
    pub puerto: u16,
    /// The version of the secure protocol the node speaks.
    pub hit6: u32,
}

impl Hello {
    pub fn new(ip: IpAddr, puerto: u16) -> Hello {
        Hello { ip, ip_variant: ip, puerto, hit6: SECURE_VERSION }
    }
}

/// The version of the secure protocol ([`wire::secure`]) a hello names.
pub const SECURE_VERSION: u32 = 1;

/// Where the group lab's programs find a group's coordinator, as its group
/// server and assigner answer: `{"address":"10.0.0.5","port":8081}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorAddr {
    pub address: String,
    pub port: u16,
}

impl From<SocketAddr> for CoordinatorAddr {
    fn from(addr: SocketAddr) -> CoordinatorAddr {
        CoordinatorAddr { address: addr.ip().to_string(), port: addr.port() }
    }
}

/// The group lab's answer to a group that is not one, `groups` being how many there are.
pub fn invalid_group(groups: u32) -> String {
    format!("Grupo no valido, grupos disponibles del 1 al {groups}")
}

/// Our answer to a hello: this registry speaks the secure protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secure {
    pub secure: u32,
}

/// A native request as a client sends it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum NativeRequest<'a> {
    Register {
        #[serde(skip_serializing_if = "Option::is_none")]
        ip: Option<IpAddr>,
        puerto: u16,
        name: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        group: Option<u32>,
        /// Drawn once per run of the node, so that a registration sent
        /// again (its reply was lost) is recognised as the same one.
        #[serde(skip_serializing_if = "Option::is_none")]
        incarnation: Option<&'a str>,
        /// The node's secret for this run, which the tickets of those who
        /// greet it are sealed under; sent only in a secure session.
        #[serde(skip_serializing_if = "Option::is_none")]
        ticket_key: Option<&'a TicketKey>,
    },
    Heartbeat {
        id: &'a str,
    },
    Deregister {
        id: &'a str,
    },
    Lookup {
        name: &'a str,
    },
    #[serde(rename = "lookup")]
    LookupAddr {
        ip: IpAddr,
        puerto: u16,
    },
    List,
    Group {
        group: u32,
    },
    Watch {
        #[serde(skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<&'a str>,
    },
}

impl Request {
    /// Validates one decoded message.
    pub fn parse(value: Value) -> Result<Request, ErrorBody> {
        if let Value::String(text) = &value {
            // Bare text ([`wire::codec::LinkCodec::raw`]): the group server's dialect.
            return Ok(Request::Coordinator { group: text.trim().parse().ok() });
        }
        let Value::Object(fields) = value else {
            return Err(ErrorBody::bad_request(format!("expected a JSON object, got {}", kind_of(&value))));
        };
        let op = match fields.get("op") {
            None => return parse_dialect_registration(&fields),
            Some(Value::String(op)) => op.as_str(),
            Some(other) => {
                return Err(ErrorBody::bad_request(format!("field `op` must be a string, got {}", kind_of(other))))
            }
        };
        match op {
            "register" => Ok(Request::Register(Registration {
                ip: parse_ip(fields.get("ip"), "ip")?,
                puerto: parse_port(required(&fields, "puerto")?, "puerto")?,
                name: optional_name(&fields)?,
                group: fields.get("group").filter(|g| !g.is_null()).map(|g| parse_group(g, "group")).transpose()?,
                incarnation: fields
                    .get("incarnation")
                    .filter(|i| !i.is_null())
                    .map(|i| parse_id(i, "incarnation"))
                    .transpose()?,
                dialect: Dialect::Native,
                key: None,
                ticket_key: fields
                    .get("ticket_key")
                    .filter(|k| !k.is_null())
                    .map(|k| {
                        serde_json::from_value(k.clone()).map_err(|_| {
                            ErrorBody::bad_request("field `ticket_key` must be 43 characters of base64url")
                        })
                    })
                    .transpose()?,
            })),
            "heartbeat" => Ok(Request::Heartbeat { id: parse_id(required(&fields, "id")?, "id")? }),
            "deregister" => match (fields.get("id"), fields.get("name")) {
                (Some(id), _) => Ok(Request::Deregister(EntryKey::Id(parse_id(id, "id")?))),
                (None, Some(_)) => Ok(Request::Deregister(EntryKey::Name(required_name(&fields)?))),
                (None, None) => Err(ErrorBody::bad_request("`deregister` needs an `id` or a `name`")),
            },
            "lookup" => match (fields.get("name"), fields.get("puerto")) {
                (None, Some(puerto)) => {
                    let ip = parse_ip(Some(required(&fields, "ip")?), "ip")?
                        .ok_or_else(|| ErrorBody::bad_request("field `ip` must name one host"))?;
                    Ok(Request::Lookup(EntryKey::Addr(SocketAddr::new(ip, parse_port(puerto, "puerto")?))))
                }
                _ => Ok(Request::Lookup(EntryKey::Name(required_name(&fields)?))),
            },
            "list" => Ok(Request::List),
            "group" => Ok(Request::Group { group: parse_group(required(&fields, "group")?, "group")? }),
            "watch" => Ok(Request::Watch { since: parse_since(&fields)? }),
            other => Err(ErrorBody::new(
                ErrorCode::UnknownOp,
                format!(
                    "unknown op `{}`; expected register, heartbeat, deregister, lookup, list, group or watch",
                    truncate(other)
                ),
            )),
        }
    }
}

/// `since` (a revision: a whole number, not negative) and the optional `epoch` of a watch.
fn parse_since(fields: &Map<String, Value>) -> Result<Option<Since>, ErrorBody> {
    let Some(since) = fields.get("since").filter(|s| !s.is_null()) else {
        return Ok(None);
    };
    let revision = since.as_u64().ok_or_else(|| {
        let sent = truncate(&since.to_string()).to_owned();
        ErrorBody::bad_request(format!("field `since` must be a revision (a whole number), got `{sent}`"))
    })?;
    let epoch = fields.get("epoch").filter(|e| !e.is_null()).map(|e| parse_id(e, "epoch")).transpose()?;
    Ok(Some(Since { revision, epoch }))
}

/// A request without `op`: one of the original registrations, or a hello.
fn parse_dialect_registration(fields: &Map<String, Value>) -> Result<Request, ErrorBody> {
    if fields.contains_key(HELLO_FIELD) {
        return Ok(Request::Hello);
    }
    let (dialect, ip) = if fields.contains_key("IP") {
        // That variant's sender fills `IP` with an address peers cannot reach,
        // so it is validated but the observed source address is recorded.
        parse_ip(fields.get("IP"), "IP")?;
        (Dialect::Clientes, None)
    } else if fields.contains_key("ip") {
        (Dialect::Original, parse_ip(fields.get("ip"), "ip")?)
    } else {
        return Err(ErrorBody::bad_request("missing field `op` (or `ip` and `puerto` for an original registration)"));
    };
    let puerto = parse_port(required(fields, "puerto")?, "puerto")?;
    Ok(Request::Register(Registration {
        ip,
        puerto,
        name: None,
        group: None,
        incarnation: None,
        dialect,
        key: None,
        ticket_key: None,
    }))
}

fn required<'v>(fields: &'v Map<String, Value>, key: &str) -> Result<&'v Value, ErrorBody> {
    fields.get(key).ok_or_else(|| ErrorBody::bad_request(format!("missing field `{key}`")))
}

fn required_name(fields: &Map<String, Value>) -> Result<String, ErrorBody> {
    let name = match required(fields, "name")? {
        Value::String(name) => name,
        other => return Err(ErrorBody::bad_request(format!("field `name` must be a string, got {}", kind_of(other)))),
    };
    validate_name(name)?;
    Ok(name.clone())
}

fn optional_name(fields: &Map<String, Value>) -> Result<Option<String>, ErrorBody> {
    match fields.get("name") {
        None | Some(Value::Null) => Ok(None),
        Some(_) => required_name(fields).map(Some),
    }
}

/// Body of a successful registration: the registry sends its contacts
/// already encoded ([`EncodedContact`]) and its tickets encoded together, a
/// client reads them as [`Contact`]s and [`Introduction`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered<C = Contact, T = Vec<Option<Introduction>>> {
    pub id: String,
    pub ttl_ms: u64,
    /// The entry as recorded, with the address the registry settled on.
    pub entry: Contact,
    /// The live contacts registered before this one, oldest first.
    pub contactos: Vec<C>,
    /// For each contact, in the same order, the ticket and key to greet
    /// it with (see [`wire::ticket`]): for a registrant that gave a ticket
    /// key, `null` for a contact that gave none (an original node).
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    pub tickets: Option<T>,
    /// The registry's signing key, which checks group views.
    pub registry_key: RegistryKey,
    pub policy: Policy,
}

/// Whom the registry admits, so that a node knows which peers may speak plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Only holders of the join token may register.
    pub token: bool,
    /// The original programs may register, in plaintext.
    pub originals: bool,
}

/// Body of a successful heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renewed {
    pub ttl_ms: u64,
}

/// Body of a successful lookup or deregistration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    pub entry: Contact,
}

/// Body of a successful list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    pub contactos: Vec<Contact>,
    /// The ids of those that have not renewed their lease for more than
    /// half of it: suspect, though still listed until it ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub silent: Vec<String>,
}

/// Body of a successful group lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    pub group: u32,
    /// The member that multicasts to the others: the oldest live one.
    pub coordinator: Contact,
    /// The live members, oldest first, the coordinator among them.
    pub members: Vec<Contact>,
    /// The signed [`crate::credential::GroupClaims`] of this view, which a
    /// coordinator shows every member it delivers to.
    pub view: Signed,
}

/// A contact in the original registry's bare-array reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OriginalContact {
    pub ip: IpAddr,
    pub puerto: u16,
    pub name: String,
}

/// A contact in the `{"clientes":[...]}` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientesContact {
    #[serde(rename = "IP")]
    pub ip: IpAddr,
    pub puerto: u16,
}

/// Everything the registry answers.
#[derive(Debug, Clone)]
pub enum Reply {
    Renewed(Renewed),
    Found(Found),
    Listed(Listed),
    Group(GroupView),
    Watching(Box<crate::watch::Watching>),
    Error(ErrorBody),
    /// The answer to a hello, then the connection is closed.
    Secure(Secure),
    /// The group lab's answer naming a coordinator, `{"address":…,"port":…}`,
    /// then the connection is closed.
    Coordinator(CoordinatorAddr),
    /// The group lab's bare text answer (an invalid group), then the
    /// connection is closed.
    Text(String),
    /// The original dialect: a bare array, then the connection is closed.
    Original(Vec<OriginalContact>),
    /// The `IP` variant: `{"clientes":[...]}`, then the connection is closed.
    Clientes(Vec<ClientesContact>),
}

impl Reply {
    /// The original programs read one reply and expect the registry to hang up.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            Reply::Original(_) | Reply::Clientes(_) | Reply::Secure(_) | Reply::Coordinator(_) | Reply::Text(_)
        )
    }
}

impl Serialize for Reply {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Reply::Renewed(body) => envelope::success(body, s),
            Reply::Found(body) => envelope::success(body, s),
            Reply::Listed(body) => envelope::success(body, s),
            Reply::Group(body) => envelope::success(body, s),
            Reply::Watching(body) => envelope::success(body, s),
            Reply::Error(error) => envelope::failure(error, s),
            Reply::Secure(body) => envelope::success(body, s),
            Reply::Coordinator(addr) => addr.serialize(s),
            Reply::Text(text) => text.serialize(s),
            Reply::Original(contacts) => contacts.serialize(s),
            Reply::Clientes(clientes) => {
                #[derive(Serialize)]
                struct Clientes<'a> {
                    clientes: &'a [ClientesContact],
                }
                Clientes { clientes }.serialize(s)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<Request, ErrorBody> {
        Request::parse(value)
    }

    fn rejected(value: Value) -> ErrorBody {
        parse(value).expect_err("request should be rejected")
    }

    #[test]
    fn native_register_with_all_fields() {
        let request = parse(json!({"op":"register","ip":"203.0.113.7","puerto":8089,"name":"node-3"}));
        assert_eq!(
            request.unwrap(),
            Request::Register(Registration {
                ip: Some("203.0.113.7".parse().unwrap()),
                puerto: 8089,
                name: Some("node-3".into()),
                group: None,
                incarnation: None,
                dialect: Dialect::Native,
                key: None,
                ticket_key: None,
            })
        );
    }

    #[test]
    fn unspecified_null_and_missing_ips_mean_observed_address() {
        for ip in [json!("0.0.0.0"), json!("::"), json!(null), json!("")] {
            let Request::Register(r) = parse(json!({"op":"register","ip":ip,"puerto":1})).unwrap() else {
                panic!("not a registration")
            };
            assert_eq!(r.ip, None);
        }
    }

    #[test]
    fn original_registration_accepts_string_port() {
        let Request::Register(r) = parse(json!({"ip":"10.0.0.2","puerto":"8089"})).unwrap() else {
            panic!("not a registration")
        };
        assert_eq!((r.ip, r.puerto, r.dialect), (Some("10.0.0.2".parse().unwrap()), 8089, Dialect::Original));
    }

    #[test]
    fn clientes_variant_ignores_its_ip() {
        let Request::Register(r) = parse(json!({"IP":"10.9.9.9","puerto":8090})).unwrap() else {
            panic!("not a registration")
        };
        assert_eq!((r.ip, r.dialect), (None, Dialect::Clientes));
    }

    #[test]
    fn ports_out_of_range_or_unparsable_are_rejected() {
        for port in [json!(0), json!(65536), json!(-1), json!("80a"), json!(8.5), json!(true), json!([1])] {
            let error = rejected(json!({"op":"register","puerto":port}));
            assert_eq!(error.code, ErrorCode::BadRequest);
            assert!(error.message.contains("puerto"), "{}", error.message);
        }
    }

    #[test]
    fn unparsable_ip_is_rejected_with_its_value() {
        let error = rejected(json!({"ip":"999.1.1.1","puerto":1}));
        assert_eq!(error.message, "field `ip`: `999.1.1.1` isn't an IP address");
    }

    #[test]
    fn wrong_types_say_which_field() {
        assert_eq!(rejected(json!([1, 2])).message, "expected a JSON object, got an array");
        assert_eq!(rejected(json!({"op":5})).message, "field `op` must be a string, got a number");
        assert_eq!(rejected(json!({"op":"heartbeat","id":5})).message, "field `id` must be a string, got a number");
        assert_eq!(rejected(json!({"op":"lookup"})).message, "missing field `name`");
        assert_eq!(rejected(json!({"op":"fly"})).code, ErrorCode::UnknownOp);
        assert_eq!(rejected(json!({"hola":1})).code, ErrorCode::BadRequest);
    }

    #[test]
    fn groups_are_positive_numbers_or_digit_strings() {
        assert_eq!(parse(json!({"op":"group","group":"2"})).unwrap(), Request::Group { group: 2 });
        for group in [json!(0), json!(-1), json!("x"), json!(1.5), json!(5_000_000_000u64), json!([2])] {
            let error = rejected(json!({"op":"group","group":group}));
            assert!(error.message.contains("group"), "{}", error.message);
        }
        assert_eq!(rejected(json!({"op":"group"})).message, "missing field `group`");
        let Request::Register(r) = parse(json!({"op":"register","puerto":1,"group":3})).unwrap() else { panic!() };
        assert_eq!(r.group, Some(3));
    }

    #[test]
    fn names_must_be_printable_and_short() {
        assert!(rejected(json!({"op":"lookup","name":""})).message.contains("empty"));
        assert!(rejected(json!({"op":"lookup","name":"a\nb"})).message.contains("control"));
        assert!(rejected(json!({"op":"lookup","name":"x".repeat(129)})).message.contains("128"));
    }

    #[test]
    fn ids_are_bounded_and_never_echoed_whole() {
        let error = rejected(json!({"op":"heartbeat","id":"i".repeat(65_000)}));
        assert_eq!(error.message, "field `id` is longer than 128 bytes");
        let error = rejected(json!({"op":"deregister","id":"i".repeat(200)}));
        assert_eq!(error.code, ErrorCode::BadRequest);
    }

    #[test]
    fn echoed_values_are_truncated() {
        let error = rejected(json!({"op":"x".repeat(10_000)}));
        assert!(error.message.len() < 200, "{}", error.message.len());
    }

    #[test]
    fn client_requests_parse_back_on_the_server() {
        let sent = NativeRequest::Register {
            ip: None,
            puerto: 9,
            name: "n",
            group: Some(2),
            incarnation: Some("run-1"),
            ticket_key: None,
        };
        let value = serde_json::to_value(&sent).unwrap();
        assert_eq!(
            parse(value).unwrap(),
            Request::Register(Registration {
                ip: None,
                puerto: 9,
                name: Some("n".into()),
                group: Some(2),
                incarnation: Some("run-1".into()),
                dialect: Dialect::Native,
                key: None,
                ticket_key: None,
            })
        );
        let value = serde_json::to_value(NativeRequest::Deregister { id: "abc" }).unwrap();
        assert_eq!(parse(value).unwrap(), Request::Deregister(EntryKey::Id("abc".into())));
    }

    #[test]
    fn a_watch_resumes_after_a_whole_revision_of_a_named_run() {
        let sent = NativeRequest::Watch { since: Some(7), epoch: Some("run") };
        let since = Since { revision: 7, epoch: Some("run".into()) };
        assert_eq!(parse(serde_json::to_value(&sent).unwrap()).unwrap(), Request::Watch { since: Some(since) });
        assert_eq!(parse(json!({"op":"watch"})).unwrap(), Request::Watch { since: None });
        for bad in [json!(-1), json!(1.5), json!("7"), json!("9".repeat(60_000))] {
            let error = rejected(json!({"op":"watch","since":bad}));
            assert_eq!(error.code, ErrorCode::BadRequest);
            assert!(error.message.contains("`since`") && error.message.len() < 150, "{}", error.message);
        }
    }

    #[test]
    fn replies_have_the_documented_shapes() {
        let contact = Contact {
            id: "i".into(),
            name: "n".into(),
            ip: "127.0.0.1".parse().unwrap(),
            puerto: 5,
            group: None,
            key: None,
        };
        let ok = Reply::Renewed(Renewed { ttl_ms: 15000 });
        assert_eq!(serde_json::to_value(&ok).unwrap(), json!({"ok":true,"ttl_ms":15000}));
        let err = Reply::Error(ErrorBody::new(ErrorCode::UnknownId, "gone"));
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"ok":false,"error":{"code":"unknown_id","message":"gone"}})
        );
        let original = Reply::Original(vec![OriginalContact { ip: contact.ip, puerto: 5, name: "n".into() }]);
        assert_eq!(serde_json::to_value(&original).unwrap(), json!([{"ip":"127.0.0.1","puerto":5,"name":"n"}]));
        let clientes = Reply::Clientes(vec![ClientesContact { ip: contact.ip, puerto: 5 }]);
        assert_eq!(serde_json::to_value(&clientes).unwrap(), json!({"clientes":[{"IP":"127.0.0.1","puerto":5}]}));
        assert!(original.closes_connection() && clientes.closes_connection() && !ok.closes_connection());
    }
}
