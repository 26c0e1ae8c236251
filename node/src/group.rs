//! Group communication: a sender asks the registry for a group's
//! coordinator and sends it the message; the coordinator asks the registry
//! for the live members, delivers to all of them at once, collects each
//! one's ACK under a deadline, and answers the sender with a report naming
//! every member that did not acknowledge. A [`Sender`] keeps its sessions
//! and the coordinator it used; a coordinator keeps the view it had while
//! its watch shows no change ([`KnownView`]). Then a multicast costs the
//! sender one round trip, and the coordinator none with the registry.
//!
//! Wire format:
//! - sender -> coordinator: `{"op":"multicast","group":2,"text":"hola","sender":"cli"}`,
//!   answered `{"ok":true, <Report>}` or with an error, in a secure session
//!   of its own with the key the registry recorded for the coordinator;
//! - coordinator -> member: `{"op":"deliver","group":2,"text":"hola","sender":"cli","coordinator":"node-4","view":{...}}`,
//!   answered `{"ok":true,"ack":"<member name>"}`, in a secure session the
//!   coordinator keeps for the next multicast (see [`crate::exchange::Pool`]).
//!
//! Who may do what: a node coordinates only while the registry names it
//! coordinator (`not_coordinator` otherwise, naming the one that is), and a
//! member accepts a delivery only from the coordinator of a signed group
//! view that includes the member (see [`registry::credential`]). With a join
//! token, only holders of it can open a session at all, so multicast is
//! open to every holder of the token: a member, or `node send` given it.

use std::fmt;

use futures::StreamExt;
use registry::client::{ClientError, Registries};
use registry::credential::Signed;
use registry::protocol::{Contact, GroupView};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wire::envelope::{Code, Reply};
use wire::fields::{kind_of, parse_group, validate_name};
use wire::secure::{Keys, PublicKey};
use wire::Chain;

use crate::exchange::{self, Deadlines, ExchangeError, Pool, Target};
use crate::lab;
use crate::link::{on_link, RegistryLink, Replicas};
use crate::metrics;
use crate::protocol::{ErrorBody, ErrorCode};

/// Exit code of a send that some member did not acknowledge, the same for
/// `node send` and `launcher send`.
pub const EXIT_UNDELIVERED: u8 = 6;

/// Longest text a group message may carry, in bytes.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;

/// Members delivered to at once by a coordinator.
const DELIVERY_FANOUT: usize = 256;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Outgoing<'a> {
    Multicast { group: u32, text: &'a str, sender: &'a str },
    Deliver { group: u32, text: &'a str, sender: &'a str, coordinator: &'a str, view: &'a Signed },
}

/// A group operation a node received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// This node is asked to coordinate a multicast.
    Multicast(Message),
    /// A coordinator delivers a message to this member, showing the signed
    /// group view that names it coordinator.
    Deliver { message: Message, coordinator: String, view: Option<Signed> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub group: u32,
    pub text: String,
    pub sender: String,
}

/// Parses a message with an `op` field sent to a node.
pub fn parse(fields: &Map<String, Value>) -> Result<Incoming, ErrorBody> {
    let op = fields.get("op").and_then(Value::as_str);
    let group =
        parse_group(fields.get("group").ok_or_else(|| ErrorBody::bad_request("missing field `group`"))?, "group")?;
    let text = match fields.get("text") {
        Some(Value::String(text)) if text.len() <= MAX_TEXT_BYTES => text.clone(),
        Some(Value::String(_)) => {
            return Err(ErrorBody::bad_request(format!("field `text` is longer than {MAX_TEXT_BYTES} bytes")))
        }
        Some(other) => {
            return Err(ErrorBody::bad_request(format!("field `text` must be a string, got {}", kind_of(other))))
        }
        None => return Err(ErrorBody::bad_request("missing field `text`")),
    };
    let name = |key: &str| match fields.get(key) {
        Some(Value::String(name)) => validate_name(name).map(|()| name.clone()).map_err(ErrorBody::from),
        Some(other) => Err(ErrorBody::bad_request(format!("field `{key}` must be a string, got {}", kind_of(other)))),
        None => Err(ErrorBody::bad_request(format!("missing field `{key}`"))),
    };
    let message = Message { group, text, sender: name("sender")? };
    match op {
        Some("multicast") => Ok(Incoming::Multicast(message)),
        Some("deliver") => {
            let view = match fields.get("view") {
                None | Some(Value::Null) => None,
                Some(view) => Some(
                    serde_json::from_value(view.clone())
                        .map_err(|_| ErrorBody::bad_request("field `view` must be a signed group view"))?,
                ),
            };
            Ok(Incoming::Deliver { message, coordinator: name("coordinator")?, view })
        }
        _ => Err(ErrorBody::new(Code::UnknownOp, "a node understands `multicast` and `deliver`, or a greeting")),
    }
}

/// What a multicast achieved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub group: u32,
    pub coordinator: String,
    /// Live members when the coordinator asked the registry.
    pub members: usize,
    pub delivered: usize,
    /// Names of the members that acknowledged.
    pub acked: Vec<String>,
    pub failed: Vec<Undelivered>,
    /// Which of the members acked or failed are the group lab's programs,
    /// joined with `JOIN` in plaintext (named by their address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plaintext: Vec<String>,
    /// The coordinator the sender tried first, which had just died (or no
    /// longer coordinated): this report is from the one the registry named next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_over_from: Option<Undelivered>,
}

/// A member that did not acknowledge, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undelivered {
    pub name: String,
    pub addr: String,
    pub error: String,
}

impl Report {
    /// Every member acknowledged.
    pub fn is_complete(&self) -> bool {
        self.delivered == self.members
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "group {}: delivered to {} of {} members (coordinator {})",
            self.group, self.delivered, self.members, self.coordinator
        )?;
        let plaintext = |name: &str| if self.plaintext.iter().any(|p| p == name) { " (plaintext, JOIN)" } else { "" };
        for member in &self.acked {
            writeln!(f, "  acked   {member}{}", plaintext(member))?;
        }
        for member in &self.failed {
            writeln!(f, "  FAILED  {} ({}){}: {}", member.name, member.addr, plaintext(&member.name), member.error)?;
        }
        if let Some(first) = &self.failed_over_from {
            writeln!(
                f,
                "  sent again through {}: the coordinator {} ({}) failed: {}",
                self.coordinator, first.name, first.addr, first.error
            )?;
        }
        Ok(())
    }
}

/// How long a coordinator uses a view from the registry without asking
/// again, while its watch reports no change: well within the signed view's
/// life, which the registry hands out with at least half of
/// [`registry::credential::VIEW_VALIDITY`] left.
const VIEW_REUSE: std::time::Duration = std::time::Duration::from_secs(10);

/// The group view a coordinator last had from the registry, used again
/// for the next multicast while the node's watch ([`crate::view`]) runs
/// and reports no change, so that a multicast costs no registry round
/// trip. Every change the watch reports, and a break of the watch, forget
/// it; a view asked for before a change is not kept after it.
#[derive(Debug, Default)]
pub struct KnownView {
    state: std::sync::Mutex<Known>,
}

#[derive(Debug, Default)]
struct Known {
    watching: bool,
    /// Counts the changes seen, so that a lookup that raced one is not kept.
    changes: u64,
    view: Option<(GroupView, tokio::time::Instant)>,
}

impl KnownView {
    /// The watch started (`true`) or broke (`false`).
    pub fn watching(&self, watching: bool) {
        let mut known = wire::lock(&self.state);
        known.watching = watching;
        known.changes += 1;
        known.view = None;
    }

    /// The membership changed.
    pub fn changed(&self) {
        let mut known = wire::lock(&self.state);
        known.changes += 1;
        known.view = None;
    }

    /// The group's view, from memory when it may be used, or else from the registry.
    async fn get(&self, registry: &RegistryLink, group: u32) -> Result<GroupView, ClientError> {
        let now = tokio::time::Instant::now();
        let changes = {
            let known = wire::lock(&self.state);
            match &known.view {
                Some((view, at)) if view.group == group && now < *at + VIEW_REUSE => return Ok(view.clone()),
                _ => known.changes,
            }
        };
        let view = group_view(registry, group).await?;
        let mut known = wire::lock(&self.state);
        if known.watching && known.changes == changes {
            known.view = Some((view.clone(), now));
        }
        Ok(view)
    }
}

/// The group's view from the registry.
async fn group_view(link: &RegistryLink, group: u32) -> Result<GroupView, ClientError> {
    on_link!(link, |client| client.group(group).await)
}

/// What a coordinator delivers with: the registry it asks for the group's
/// view (and the view from a moment ago), its keys and name, the deadlines
/// and kept sessions of deliveries, and the lab's members that joined it.
#[derive(Debug, Clone, Copy)]
pub struct Coordinating<'a> {
    pub registry: &'a RegistryLink,
    pub known: &'a KnownView,
    pub keys: &'a Keys,
    pub name: &'a str,
    pub deadlines: Deadlines,
    pub pool: &'a Pool,
    pub joined: &'a lab::Members,
}

/// The coordinator's side: deliver `message` to every live member of its
/// group, at once, each within `deadlines`, once the registry confirms this
/// node (`keys`) coordinates the group (or its view, `known`, from a
/// moment ago, with no change since); and to the group lab's members that
/// joined it (`joined`), at the same time.
pub async fn coordinate(by: &Coordinating<'_>, message: &Message) -> Result<Report, ErrorBody> {
    let Coordinating { registry, known, keys, name: coordinator, deadlines, pool: members_pool, joined } = *by;
    let view = known.get(registry, message.group).await.map_err(|error| match error {
        ClientError::Refused { error, .. } => error.widen(),
        other => ErrorBody::new(ErrorCode::RegistryUnavailable, Chain(&other).to_string()),
    })?;
    if view.coordinator.key != Some(keys.identity.public()) {
        let current = &view.coordinator;
        return Err(ErrorBody::new(
            ErrorCode::NotCoordinator,
            format!("{} at {} coordinates group {}, not this node", current.name, current.addr(), view.group),
        ));
    }
    // Sessions with nodes that are no members any more are of no use.
    members_pool.retain(|target| view.members.iter().any(|member| member.key == Some(target.key)));
    let outgoing = Outgoing::Deliver {
        group: message.group,
        text: &message.text,
        sender: &message.sender,
        coordinator,
        view: &view.view,
    };
    let ours = futures::stream::iter(view.members.iter().cloned())
        .map(|member| {
            let outgoing = &outgoing;
            async move {
                let started = metrics::METRICS.started();
                let outcome = deliver(members_pool, keys, &member, outgoing, deadlines).await;
                if outcome.is_ok() {
                    metrics::METRICS.count(|m| m.acknowledged(started));
                }
                (member, outcome)
            }
        })
        .buffer_unordered(DELIVERY_FANOUT)
        .collect::<Vec<(Contact, Result<(), ExchangeError>)>>();
    let (outcomes, theirs) = futures::join!(ours, joined.deliver(&message.text, deadlines.reply));
    let mut report = Report {
        group: message.group,
        coordinator: coordinator.to_owned(),
        members: view.members.len() + theirs.len(),
        delivered: 0,
        acked: Vec::new(),
        failed: Vec::new(),
        plaintext: Vec::new(),
        failed_over_from: None,
    };
    for lab::Outcome { addr, acked } in theirs {
        let name = addr.to_string();
        report.plaintext.push(name.clone());
        match acked {
            Ok(()) => report.acked.push(name),
            Err(error) => report.failed.push(Undelivered { name, addr: addr.to_string(), error }),
        }
    }
    report.plaintext.sort();
    for (member, outcome) in outcomes {
        match outcome {
            Ok(()) => report.acked.push(member.name),
            Err(error) => report.failed.push(Undelivered {
                name: member.name.clone(),
                addr: member.addr().to_string(),
                error: Chain(&error).to_string(),
            }),
        }
    }
    report.delivered = report.acked.len();
    metrics::METRICS.count(|m| m.multicast(report.is_complete()));
    report.acked.sort();
    report.failed.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(report)
}

/// One delivery, on a kept session when there is one; only an answer
/// carrying `ack` counts.
async fn deliver(
    pool: &Pool,
    keys: &Keys,
    member: &Contact,
    outgoing: &Outgoing<'_>,
    deadlines: Deadlines,
) -> Result<(), ExchangeError> {
    let Some(key) = member.key else {
        return Err(ExchangeError::Refused(ErrorBody::new(
            ErrorCode::Registry(registry::protocol::ErrorCode::Unauthorized),
            "the member registered without a key, so nothing sent to it can be authenticated",
        )));
    };
    let answer = pool.request(Target { addr: member.addr(), key }, keys, outgoing, deadlines).await?;
    if answer.contains_key("ack") {
        Ok(())
    } else {
        Err(ExchangeError::Refused(ErrorBody::bad_request("the member answered without an ACK")))
    }
}

/// What a group operation answers with, inside the envelope: a member's
/// `{"ack":"<its name>"}`, or a coordinator's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Ack { ack: String },
    Report(Report),
}

/// The answer to a group operation, or its refusal.
pub type GroupReply = Reply<Answer, ErrorCode>;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("failed to find the coordinator of group {group}")]
    Lookup {
        group: u32,
        #[source]
        source: ClientError,
    },
    #[error("failed to multicast through the coordinator {name} at {addr}")]
    Coordinator {
        name: String,
        addr: String,
        #[source]
        source: ExchangeError,
    },
    #[error("the coordinator {name} sent no report")]
    NoReport { name: String },
    #[error("the coordinator {name} sent a malformed report")]
    MalformedReport {
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The sender's side: multicast `text` to `group` through its coordinator,
/// once, as `node send` does: a [`Sender`] used for one message.
pub async fn send(
    registries: impl Into<Registries>,
    keys: &Keys,
    group: u32,
    text: &str,
    sender: &str,
    deadlines: Deadlines,
) -> Result<Report, SendError> {
    Sender::new(registries, keys, deadlines).send(group, text, sender).await
}

/// Multicasts through each group's coordinator, which must prove the key
/// the registry recorded for it, on sessions it keeps between messages:
/// one with the registry, and one with each coordinator. It asks the
/// registry for a group's coordinator only when it knows none, or the one
/// it knew has failed, so a message to a known coordinator costs one round
/// trip. `keys` open the sessions. The coordinator needs up to its own
/// per-member deadline, so `deadlines.reply` must be longer. The registry
/// may be several replicas, walked as a node walks them ([`crate::link`]).
///
/// When the coordinator fails the way a dead one does (the connection
/// refused, reset or closed before an answer), or answers that it no longer
/// coordinates, the sender asks the registry again, and sends once more
/// through the coordinator it names now, if that is another one; the report
/// says so ([`Report::failed_over_from`]). The members may then get the
/// message twice, if the first coordinator delivered it before it died.
#[derive(Debug)]
pub struct Sender {
    link: RegistryLink,
    keys: Keys,
    deadlines: Deadlines,
    /// The coordinator last used for each group, while it answers.
    coordinators: std::sync::Mutex<std::collections::HashMap<u32, Contact>>,
    sessions: Pool,
}

impl Sender {
    pub fn new(registries: impl Into<Registries>, keys: &Keys, deadlines: Deadlines) -> Sender {
        let replicas = Replicas::shared(registries.into());
        Sender {
            link: RegistryLink::new(replicas, keys.clone(), deadlines.connect + deadlines.reply),
            keys: keys.clone(),
            deadlines,
            coordinators: Default::default(),
            sessions: Pool::default(),
        }
    }

    /// The sender, refusing any replica that does not prove `key`, when given.
    pub fn pinned(self, key: Option<PublicKey>) -> Sender {
        Sender { link: self.link.pinned(key), ..self }
    }

    pub async fn send(&self, group: u32, text: &str, sender: &str) -> Result<Report, SendError> {
        let outgoing = Outgoing::Multicast { group, text, sender };
        let known = wire::lock(&self.coordinators).get(&group).cloned();
        let first = match known {
            Some(known) => known,
            None => self.lookup(group).await?,
        };
        let error = match self.through(group, &first, &outgoing).await {
            Err(SendError::Coordinator { source, .. }) if has_gone(&source) => source,
            done => return done,
        };
        let failed =
            Undelivered { name: first.name.clone(), addr: first.addr().to_string(), error: Chain(&error).to_string() };
        let next = self.lookup(group).await?;
        if (next.key, next.addr()) == (first.key, first.addr()) {
            return Err(SendError::Coordinator { name: failed.name, addr: failed.addr, source: error });
        }
        let mut report = self.through(group, &next, &outgoing).await?;
        report.failed_over_from = Some(failed);
        Ok(report)
    }

    async fn lookup(&self, group: u32) -> Result<Contact, SendError> {
        let view = group_view(&self.link, group).await.map_err(|source| SendError::Lookup { group, source })?;
        Ok(view.coordinator)
    }

    /// Multicasts through `coordinator` and reads back its report,
    /// remembering it for the group's next message only if it answered.
    async fn through(&self, group: u32, coordinator: &Contact, outgoing: &Outgoing<'_>) -> Result<Report, SendError> {
        let answered = self.ask(coordinator, outgoing).await;
        let mut known = wire::lock(&self.coordinators);
        match answered {
            Ok(_) => known.insert(group, coordinator.clone()),
            Err(_) => known.remove(&group),
        };
        answered
    }

    async fn ask(&self, coordinator: &Contact, outgoing: &Outgoing<'_>) -> Result<Report, SendError> {
        let failed = |source| SendError::Coordinator {
            name: coordinator.name.clone(),
            addr: coordinator.addr().to_string(),
            source,
        };
        let answer = match coordinator.key {
            Some(key) => {
                let target = Target { addr: coordinator.addr(), key };
                Some(self.sessions.request(target, &self.keys, outgoing, self.deadlines).await.map_err(failed)?)
            }
            // A coordinator registered in plaintext, which only an open registry admits.
            None => exchange::exchange(coordinator.addr(), &exchange::encode(outgoing), self.deadlines)
                .await
                .map_err(failed)?,
        };
        let answer = answer.ok_or_else(|| SendError::NoReport { name: coordinator.name.clone() })?;
        serde_json::from_value(Value::Object(answer))
            .map_err(|source| SendError::MalformedReport { name: coordinator.name.clone(), source })
    }
}

/// Whether a coordinator failed as one that died does, or said it no longer coordinates.
fn has_gone(error: &ExchangeError) -> bool {
    match error {
        ExchangeError::Refused(refusal) => refusal.code == ErrorCode::NotCoordinator,
        ExchangeError::ReplyTimeout(_) | ExchangeError::ConnectTimeout(_) => false,
        other => other.is_transient(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn parses_both_operations() {
        let multicast = parse(&fields(json!({"op":"multicast","group":2,"text":"hola","sender":"cli"}))).unwrap();
        let message = Message { group: 2, text: "hola".into(), sender: "cli".into() };
        assert_eq!(multicast, Incoming::Multicast(message.clone()));
        let deliver =
            parse(&fields(json!({"op":"deliver","group":"2","text":"hola","sender":"cli","coordinator":"n1"})));
        assert_eq!(deliver.unwrap(), Incoming::Deliver { message, coordinator: "n1".into(), view: None });
    }

    #[test]
    fn bad_group_messages_say_what_is_wrong() {
        let reject = |v: Value| parse(&fields(v)).unwrap_err();
        assert!(reject(json!({"op":"multicast","text":"x","sender":"s"})).message.contains("`group`"));
        assert!(reject(json!({"op":"multicast","group":0,"text":"x","sender":"s"})).message.contains("group number"));
        assert!(reject(json!({"op":"multicast","group":1,"text":5,"sender":"s"}))
            .message
            .contains("`text` must be a string"));
        let long = "x".repeat(MAX_TEXT_BYTES + 1);
        assert!(reject(json!({"op":"multicast","group":1,"text":long,"sender":"s"})).message.contains("longer"));
        assert!(reject(json!({"op":"deliver","group":1,"text":"x","sender":"s"})).message.contains("`coordinator`"));
        assert_eq!(reject(json!({"op":"fly","group":1,"text":"x","sender":"s"})).code, Code::UnknownOp.into());
        assert!(reject(json!({"op":"multicast","group":4_294_967_295u64,"text":"x","sender":"s"}))
            .message
            .contains("1-100000"));
    }

    #[test]
    fn a_member_acks_with_its_name() {
        let ack = GroupReply::Ok(Answer::Ack { ack: "n2".into() });
        assert_eq!(serde_json::to_value(ack).unwrap(), json!({"ok":true,"ack":"n2"}));
    }

    #[test]
    fn a_report_round_trips_through_the_reply_and_reads_well() {
        let report = Report {
            group: 2,
            coordinator: "n1".into(),
            members: 4,
            delivered: 3,
            acked: vec!["n1".into(), "n2".into(), "127.0.0.1:7".into()],
            failed: vec![Undelivered {
                name: "n3".into(),
                addr: "127.0.0.1:9".into(),
                error: "failed to connect".into(),
            }],
            plaintext: vec!["127.0.0.1:7".into()],
            failed_over_from: None,
        };
        let reply = serde_json::to_value(GroupReply::Ok(Answer::Report(report.clone()))).unwrap();
        assert_eq!(reply["ok"], true);
        assert_eq!(serde_json::from_value::<Report>(reply).unwrap(), report);
        assert!(!report.is_complete());
        let text = report.to_string();
        assert!(text.starts_with("group 2: delivered to 3 of 4 members (coordinator n1)"), "{text}");
        assert!(text.contains("FAILED  n3 (127.0.0.1:9): failed to connect"), "{text}");
        assert!(text.contains("acked   127.0.0.1:7 (plaintext, JOIN)\n"), "{text}");
        assert!(text.contains("acked   n2\n"), "{text}");

        let dead = Undelivered { name: "n0".into(), addr: "127.0.0.1:8".into(), error: "failed to connect".into() };
        let again = Report { failed_over_from: Some(dead), ..report };
        let reply = serde_json::to_value(GroupReply::Ok(Answer::Report(again.clone()))).unwrap();
        assert_eq!(serde_json::from_value::<Report>(reply).unwrap(), again);
        let text = again.to_string();
        assert!(text.contains("sent again through n1: the coordinator n0 (127.0.0.1:8) failed"), "{text}");
    }
}
