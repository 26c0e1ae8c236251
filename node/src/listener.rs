//! Answering peers. A message is a greeting, or, with an `op` field, a group
//! operation (see [`crate::group`]). A greeting (or anything unusable) is
//! answered and the connection closed, as the original nodes expect; group
//! operations may follow one another on one connection, which a coordinator
//! keeps open between multicasts.
//!
//! Who is believed ([`Trust`]): a greeter with a ticket ([`wire::ticket`])
//! is who the ticket, sealed by the registry for this node alone, says; a
//! plaintext greeter is an original node, believed only where the registry
//! says one listens at the address it gives, or when the registry itself is
//! an original one. Everything else is refused, and logged once as
//! `greeting_rejected`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use registry::credential::{unix_ms, CredentialError, GroupClaims, RegistryKey, Signed};
use registry::protocol::{ErrorCode as RegistryCode, Policy};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::time::timeout;
use tracing::debug;
use wire::codec::{Decoded, FrameError};
use wire::connection::{self, Accepted, JsonStream};
use wire::envelope::Reply;
use wire::secure::{Keys, PublicKey};
use wire::ticket::{Delivery, Opened, Seen, TicketAnswer, TicketGreeting, TicketKey};

use crate::events::{self, Peer};
use crate::exchange::{Deadlines, Pool};
use crate::greeting::{self, GreetingReply, Received, GREETING_REPLY};
use crate::group::{self, Answer as GroupAnswer, GroupReply, Incoming, KnownView};
use crate::lab;
use crate::link::{on_link, RegistryLink};
use crate::meeting::{Meetings, Verdict};
use crate::metrics;
use crate::protocol::ErrorBody;
use crate::recent::Recent;

#[derive(Debug, Clone, Copy)]
pub struct ListenConfig {
    /// Connections served at once, and how long a new one has to prove itself.
    pub limits: connection::Limits,
    /// How long a peer may take to send its message.
    pub read_timeout: Duration,
    /// How long a peer may take to read the answer.
    pub write_timeout: Duration,
}

/// Addresses of peers this node has greeted, is greeting or heard from:
/// after a re-registration, only the contacts not in here are greeted.
pub type Known = Mutex<Recent<SocketAddr>>;

/// Who has greeted this node ([`greeting::Received::key`]): a greeter whose
/// answer got lost retries, and the repeat is answered but not logged again.
pub type GreetedBy = Mutex<Recent<(SocketAddr, Option<String>)>>;

/// What this node learnt from its registration about whom to believe.
#[derive(Debug, Clone, Default)]
pub enum Trust {
    /// Not registered yet: nobody can have learnt of this node from the registry.
    #[default]
    Unregistered,
    /// Registered with an original registry: every peer is an original node.
    Original,
    /// Registered with a registry of ours.
    Registry(Arc<Vouched>),
}

/// What a registry of ours told this node when it registered.
#[derive(Debug)]
pub struct Vouched {
    /// The key its group views are signed with.
    pub key: RegistryKey,
    pub policy: Policy,
}

/// An answer to a peer.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Answer {
    /// A greeting's answer, in the original programs' shape (no `ok`).
    Greeting(GreetingReply),
    /// The answer to a greeting with a ticket: the same, sealed.
    Ticket(TicketAnswer),
    /// Group operations and refusals, in the envelope.
    Enveloped(GroupReply),
}

/// What answering needs to know about this node.
#[derive(Debug)]
pub struct Context {
    pub name: String,
    pub keys: Keys,
    /// This run's secret with the registry, which opens the tickets of those who greet it.
    pub ticket_key: Arc<TicketKey>,
    /// The tickets it was greeted with, and their attempts.
    pub tickets_seen: Mutex<Seen>,
    /// The id the registry gave this node, once it has one.
    pub id: Mutex<Option<String>>,
    pub trust: Mutex<Trust>,
    pub known: Known,
    pub meetings: Mutex<Meetings>,
    pub greeted_by: GreetedBy,
    pub config: ListenConfig,
    /// Where a coordinator looks up its group's members, on a session kept for that.
    pub lookups: RegistryLink,
    /// The view of the group it coordinates, from a moment ago.
    pub group_view: KnownView,
    /// Where a plaintext greeter is checked, on a session of its own, so that
    /// a flood of plaintext greetings cannot hold up coordination.
    pub originals: RegistryLink,
    /// Per-member deadlines of the deliveries it coordinates.
    pub deliveries: Deadlines,
    /// Connections to members, kept between the multicasts it coordinates.
    pub members: Pool,
    /// The last group view a delivery showed, once checked: its
    /// coordinator shows the same one at every multicast.
    pub view: Mutex<Option<CheckedView>>,
    /// The group the registry put this node in, once registered.
    pub group: Mutex<Option<u32>>,
    /// The group lab's members that joined this node with `JOIN`.
    pub joined: lab::Members,
    /// Whether the node is registered and its session up ([`crate::health`]).
    pub vitals: Arc<crate::health::Vitals>,
}

/// What a checked group view says that a member needs.
#[derive(Debug, Clone)]
pub struct CheckedView {
    /// The registry's signature, which tells the same view when shown again.
    sig: String,
    group: u32,
    coordinator: Option<PublicKey>,
    /// Whether this node is among its members.
    includes_me: bool,
    expires_ms: u64,
}

impl Context {
    fn trust(&self) -> Trust {
        wire::lock(&self.trust).clone()
    }

    fn coordinating(&self) -> group::Coordinating<'_> {
        group::Coordinating {
            registry: &self.lookups,
            known: &self.group_view,
            keys: &self.keys,
            name: &self.name,
            deadlines: self.deliveries,
            pool: &self.members,
            joined: &self.joined,
        }
    }

    /// The group this node is in, when its registry serves the group lab's
    /// programs (no join token, or `--allow-original`).
    fn lab_group(&self) -> Option<u32> {
        match self.trust() {
            Trust::Registry(vouched) if vouched.policy.originals => *wire::lock(&self.group),
            _ => None,
        }
    }
}

/// Serves a connection until it is idle for the read timeout, closing it
/// after a greeting or anything unusable.
pub async fn serve(accepted: Accepted, context: Arc<Context>) {
    let Accepted { mut framed, peer: from, first, slot: _slot } = accepted;
    let remote = framed.codec().remote();
    let config = context.config;
    let mut first = Some(first);
    loop {
        let next: Option<Result<Decoded, FrameError>> = match first.take() {
            Some(first) => first,
            None => match timeout(config.read_timeout, framed.next()).await {
                Err(_) => return debug!(timeout = ?config.read_timeout, "no message arrived"),
                Ok(next) => next,
            },
        };
        let Some(next) = next else { return };
        if let Ok(Ok(Value::String(text))) = next {
            // Bare text: the group lab's programs ([`lab`]), which take the connection over.
            return serve_lab(framed, &text, from, &context).await;
        }
        let (answer, keep_open) = match next {
            Err(error) => return connection::reject(framed, error, config.write_timeout).await,
            Ok(Err(malformed)) => (Err(ErrorBody::bad_request(malformed.to_string())), false),
            Ok(Ok(Value::Object(fields))) if fields.contains_key("op") => {
                let answer = answer_group(&fields, from, remote, &context).await;
                // Only a coordinator, in a secure session whose delivery was
                // accepted, keeps its connection for the next one.
                let keep_open = remote.is_some() && answer.is_ok();
                (answer.map(|a| Answer::Enveloped(Reply::Ok(a))), keep_open)
            }
            Ok(Ok(Value::Object(fields))) if fields.contains_key("ticket") => {
                (answer_ticket(Value::Object(fields), from, &context).map(Answer::Ticket), false)
            }
            Ok(Ok(message)) => (answer_greeting(message, from, remote, &context).await.map(Answer::Greeting), false),
        };
        let answer = answer.unwrap_or_else(|error| {
            debug!(code = %error.code, message = %error.message, "rejected a message");
            Answer::Enveloped(Reply::Err(error))
        });
        if let Err(error) = connection::send(&mut framed, &answer, config.write_timeout).await {
            return debug!(%error, "failed to answer");
        }
        if !keep_open {
            return connection::close(framed).await;
        }
    }
}

/// One of the group lab's programs: a member's `JOIN`, which it serves
/// until the member leaves, or an external client's `SEND…`s and `CLOSE`,
/// answered in its words. Anything else, or the lab's programs where the
/// registry does not serve them, is hung up on.
async fn serve_lab(mut framed: JsonStream, first: &str, from: SocketAddr, context: &Context) {
    let Some(group) = context.lab_group() else {
        debug!("bare text where the group lab's programs are not served");
        return connection::close(framed).await;
    };
    let write_timeout = context.config.write_timeout;
    let mut next = Some(first.to_owned());
    loop {
        let opening = next.is_some();
        let text = match next.take() {
            Some(text) => text,
            None => match framed.next().await {
                Some(Ok(Ok(Value::String(text)))) => text,
                _ => return,
            },
        };
        let answer = match lab::Command::parse(&text) {
            // A member joins on a connection of its own.
            Some(lab::Command::Join) if opening => {
                return lab::member(framed, from, group, &context.joined, context.deliveries.reply).await
            }
            Some(lab::Command::Send(text)) => {
                let message = group::Message { group, text, sender: lab::EXTERNAL_SENDER.into() };
                match group::coordinate(&context.coordinating(), &message).await {
                    Ok(report) if report.is_complete() => lab::sent(group),
                    Ok(_) | Err(_) => return last_word(framed, &lab::not_sent(group), write_timeout).await,
                }
            }
            Some(lab::Command::Close) => return last_word(framed, &lab::disconnected(group), write_timeout).await,
            Some(lab::Command::Join) | None => return connection::close(framed).await,
        };
        if connection::send(&mut framed, &answer, write_timeout).await.is_err() {
            return;
        }
    }
}

/// Writes `text` to one of the lab's programs, then hangs up.
async fn last_word(mut framed: JsonStream, text: &str, write_timeout: Duration) {
    let _ = connection::send(&mut framed, &text, write_timeout).await;
    connection::close(framed).await
}

fn unauthorized(message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(RegistryCode::Unauthorized, message)
}

/// A greeting in plaintext: an original node's.
async fn answer_greeting(
    message: Value,
    from: SocketAddr,
    remote: Option<PublicKey>,
    context: &Context,
) -> Result<GreetingReply, ErrorBody> {
    let received = greeting::parse(message, from)?;
    let verified = match remote {
        Some(_) => Err(unauthorized("a greeting travels with a ticket from the registry, not in a secure session")),
        None => verify_plain(&received, context).await,
    };
    let (peer, id) = verified.inspect_err(|reason| {
        metrics::METRICS.count(|m| m.rejected("unverified"));
        events::greeting_rejected(from, Some(&received.peer.name), reason);
    })?;
    let first_time = wire::lock(&context.greeted_by).insert((peer.addr, id));
    log_greeting(if first_time { Delivery::First } else { Delivery::Repeat }, &peer, from, context);
    Ok(reply(context, Verdict::Welcome))
}

/// A greeting with a ticket ([`wire::ticket`]): the greeter is who the
/// ticket says, and the greeting must say the same; the answer is sealed
/// under the ticket's key. Every refusal is logged once, with its reason;
/// a greeting whose pair has met otherwise ([`crate::meeting`]) is
/// answered as met and not logged. A retry is judged afresh, so it is
/// answered as met if the first attempt was.
fn answer_ticket(message: Value, from: SocketAddr, context: &Context) -> Result<TicketAnswer, ErrorBody> {
    let sent: TicketGreeting = serde_json::from_value(message)
        .map_err(|_| ErrorBody::bad_request("a greeting with a ticket has `ticket`, `attempt` and `sealed`"))?;
    let mut claimed = None;
    let (opened, delivery) = check_ticket(&sent, from, context, &mut claimed).map_err(|reason| {
        metrics::METRICS.count(|m| m.rejected("ticket"));
        events::greeting_rejected(from, claimed.as_deref(), &reason);
        unauthorized(reason)
    })?;
    let greeter = &opened.greeter;
    let peer = Peer { name: greeter.name.clone(), addr: greeter.addr, key: Some(greeter.key) };
    let verdict = wire::lock(&context.meetings).verdict(greeter.key, context.keys.identity.public());
    match verdict {
        Verdict::Welcome => log_greeting(delivery, &peer, from, context),
        Verdict::Met => {
            debug!(peer_name = %peer.name, peer_addr = %peer.addr, "met already, through this node's greeting")
        }
    }
    let answer = serde_json::to_vec(&reply(context, verdict)).expect("a reply serializes");
    Ok(TicketAnswer { sealed: opened.seal_answer(sent.attempt, &answer) })
}

/// Opens the ticket and the greeting of `sent`, checks that they name the
/// same greeter, and records the attempt; `claimed` is the ticket's greeter
/// once the ticket opens, for the refusal's log line. No need to wait for
/// this node's own registration reply: only the registry, which it gave
/// its ticket key, can have sealed a ticket for it.
fn check_ticket(
    sent: &TicketGreeting,
    from: SocketAddr,
    context: &Context,
    claimed: &mut Option<String>,
) -> Result<(Opened, Delivery), String> {
    let now = unix_ms();
    let opened =
        context.ticket_key.open(&sent.ticket, context.keys.identity.public(), now).map_err(|e| e.to_string())?;
    *claimed = Some(opened.greeter.name.clone());
    let greeting = opened.open_greeting(sent.attempt, &sent.sealed).map_err(|e| e.to_string())?;
    let said = serde_json::from_slice(&greeting).map_err(|_| "the sealed greeting is not JSON".to_owned())?;
    let said = greeting::parse(said, from).map_err(|error| error.message)?;
    let greeter = &opened.greeter;
    if said.peer.name != greeter.name || said.peer.addr != greeter.addr || said.id.as_ref() != Some(&greeter.id) {
        return Err(format!(
            "the greeting claims to be {} at {}, and the ticket names {} at {}",
            said.peer.name, said.peer.addr, greeter.name, greeter.addr
        ));
    }
    let delivery = wire::lock(&context.tickets_seen).record(&opened, sent.attempt, now).map_err(|e| e.to_string())?;
    Ok((opened, delivery))
}

/// Logs a greeting the first time its greeter is heard from; a greeter's
/// retry, whose first answer was lost or late, is answered but not logged again.
fn log_greeting(delivery: Delivery, peer: &Peer, from: SocketAddr, context: &Context) {
    match delivery {
        Delivery::First => {
            events::greeting_received(peer, from);
            wire::lock(&context.known).insert(peer.addr);
            wire::lock(&context.meetings).hear_from(peer.addr);
        }
        Delivery::Repeat => debug!(peer_name = %peer.name, peer_addr = %peer.addr, "answered a repeated greeting"),
    }
}

/// What this node answers a greeting with.
fn reply(context: &Context, verdict: Verdict) -> GreetingReply {
    let id = wire::lock(&context.id).clone();
    GreetingReply { mensaje: GREETING_REPLY.into(), name: Some(context.name.clone()), id, met: verdict == Verdict::Met }
}

/// `view` checked against the registry's `key`, or as it was checked last
/// time when it is the same view (by its signature) and has not expired.
fn checked_view(view: &Signed, key: &RegistryKey, context: &Context) -> Result<CheckedView, ErrorBody> {
    let mut last = wire::lock(&context.view);
    if let Some(checked) = last.as_ref().filter(|checked| checked.sig == view.sig) {
        if checked.expires_ms > registry::credential::unix_ms() {
            return Ok(checked.clone());
        }
    }
    let (claims, expires_ms) =
        view.open_until::<GroupClaims>(key).map_err(|error| unauthorized(credential_refusal(&error)))?;
    let checked = CheckedView {
        sig: view.sig.clone(),
        group: claims.group,
        coordinator: claims.coordinator,
        includes_me: claims.members.contains(&context.keys.identity.public()),
        expires_ms,
    };
    *last = Some(checked.clone());
    Ok(checked)
}

fn credential_refusal(error: &CredentialError) -> String {
    format!("credential refused: {error}")
}

/// A plaintext greeter is an original node, where the registry says one is.
async fn verify_plain(received: &Received, context: &Context) -> Result<(Peer, Option<String>), ErrorBody> {
    match context.trust() {
        Trust::Original => Ok((received.peer.clone(), received.id.clone())),
        Trust::Unregistered => Err(unauthorized("this node has not registered yet, so no peer can know of it")),
        Trust::Registry(vouched) if !vouched.policy.originals => {
            Err(unauthorized("plaintext greetings are refused: this membership admits authenticated nodes only"))
        }
        Trust::Registry(_) => {
            let addr = received.peer.addr;
            match on_link!(&context.originals, |client| client.lookup_addr(addr).await) {
                Ok(entry) if entry.key.is_none() => {
                    Ok((Peer { name: entry.name, addr, key: None }, received.id.clone()))
                }
                Ok(entry) => Err(unauthorized(format!(
                    "{} at {addr} registered with a key, and must greet with a ticket",
                    entry.name
                ))),
                Err(error) => Err(unauthorized(format!(
                    "the registry could not confirm an original node at {addr}: {}",
                    wire::Chain(&error)
                ))),
            }
        }
    }
}

async fn answer_group(
    fields: &Map<String, Value>,
    from: SocketAddr,
    remote: Option<PublicKey>,
    context: &Context,
) -> Result<GroupAnswer, ErrorBody> {
    match group::parse(fields)? {
        Incoming::Deliver { message, coordinator, view } => {
            check_delivery(message.group, view.as_ref(), remote, context).inspect_err(|refusal| {
                events::group_message_rejected(from, message.group, &refusal.message);
            })?;
            events::group_message_received(message.group, &message.sender, &coordinator, &message.text);
            Ok(GroupAnswer::Ack { ack: context.name.clone() })
        }
        Incoming::Multicast(message) => {
            let trust = context.trust();
            let open = matches!(&trust, Trust::Registry(vouched) if !vouched.policy.token);
            if remote.is_none() && !open {
                return Err(unauthorized("a multicast needs a secure session with this node"));
            }
            let report = group::coordinate(&context.coordinating(), &message).await?;
            Ok(GroupAnswer::Report(report))
        }
    }
}

/// A delivery is accepted only from the coordinator of a signed view of
/// this node's group that includes this node.
fn check_delivery(
    group: u32,
    view: Option<&Signed>,
    remote: Option<PublicKey>,
    context: &Context,
) -> Result<(), ErrorBody> {
    let forbidden = |message: String| ErrorBody::new(RegistryCode::Forbidden, message);
    let Some(remote) = remote else { return Err(unauthorized("a delivery needs a secure session")) };
    let Trust::Registry(vouched) = context.trust() else {
        return Err(unauthorized("this node has no registry to check group views against"));
    };
    let view = view.ok_or_else(|| unauthorized("a delivery needs the registry's signed group view"))?;
    let checked = checked_view(view, &vouched.key, context)?;
    if checked.group != group {
        return Err(forbidden(format!("the view is of group {}, the message for group {group}", checked.group)));
    }
    if checked.coordinator != Some(remote) {
        return Err(forbidden(format!("the sender does not coordinate group {group}")));
    }
    if !checked.includes_me {
        return Err(forbidden(format!("this node is not a member of group {group} in the view")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meeting::OnItsWay;
    use crate::recent::REMEMBERED_PEERS;

    fn registry() -> Arc<crate::link::Replicas> {
        crate::link::Replicas::shared(registry::client::RegistryAddr { host: "127.0.0.1".into(), port: 9 }.into())
    }

    fn keys() -> Keys {
        Keys::new(wire::secure::Identity::generate(), wire::secure::Admission::Open)
    }

    fn context() -> Context {
        let deadlines = Deadlines { connect: Duration::from_secs(1), reply: Duration::from_secs(1) };
        let timeout = Duration::from_secs(1);
        Context {
            name: "me".into(),
            keys: keys(),
            ticket_key: Arc::new(TicketKey::generate()),
            tickets_seen: Mutex::new(Seen::new(REMEMBERED_PEERS)),
            id: Mutex::new(Some("ab-1".into())),
            trust: Mutex::new(Trust::Original),
            known: Known::default(),
            meetings: Mutex::default(),
            greeted_by: GreetedBy::default(),
            config: ListenConfig { limits: connection::Limits::new(1), read_timeout: timeout, write_timeout: timeout },
            lookups: RegistryLink::new(registry(), keys(), timeout),
            group_view: KnownView::default(),
            originals: RegistryLink::new(registry(), keys(), timeout),
            deliveries: deadlines,
            members: Pool::default(),
            view: Mutex::new(None),
            group: Mutex::new(None),
            joined: lab::Members::default(),
            vitals: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_flood_of_fake_greeters_cannot_grow_what_the_node_remembers() {
        let context = context();
        let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        for i in 0..REMEMBERED_PEERS + 5_000 {
            let greeting =
                serde_json::json!({"mensaje":"hola","ip":"127.0.0.1","puerto":1 + i % 60_000,"id":format!("fake-{i}")});
            answer_greeting(greeting, from, None, &context).await.unwrap();
        }
        assert_eq!(wire::lock(&context.greeted_by).len(), REMEMBERED_PEERS);
        assert!(wire::lock(&context.known).len() <= REMEMBERED_PEERS);
    }

    #[tokio::test]
    async fn a_repeated_greeting_is_answered_and_remembered_once() {
        let context = context();
        let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let greeting = serde_json::json!({"mensaje":"hola","ip":"127.0.0.1","puerto":7,"id":"x"});
        let first = answer_greeting(greeting.clone(), from, None, &context).await.unwrap();
        let again = answer_greeting(greeting, from, None, &context).await.unwrap();
        assert_eq!(first, again);
        assert_eq!((first.name.as_deref(), first.id.as_deref()), (Some("me"), Some("ab-1")));
        assert_eq!(wire::lock(&context.greeted_by).len(), 1);
    }

    /// `greeter`'s greeting with a ticket to `to`, as a node at `addr` sends
    /// it, and the answer, opened.
    fn greet_with_ticket(greeter: &Context, addr: SocketAddr, to: &Context) -> GreetingReply {
        let name = format!("node-{}", addr.port());
        let id = format!("ab-{}", addr.port());
        let key = greeter.keys.identity.public();
        let ticketed = wire::ticket::Greeter { id: id.clone(), name: name.clone(), addr, key, group: None };
        let introduction = to.ticket_key.issue(to.keys.identity.public(), &ticketed, unix_ms() + 60_000);
        let greeting = serde_json::json!({"mensaje":"hola","ip":addr.ip(),"puerto":addr.port(),"name":name,"id":id});
        let sent = introduction.seal_greeting(1, greeting.to_string().as_bytes()).unwrap();
        let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let answer = answer_ticket(serde_json::to_value(&sent).unwrap(), from, to).unwrap();
        serde_json::from_slice(&introduction.open_answer(1, &answer.sealed).unwrap()).unwrap()
    }

    /// Others may get this node's tickets before it has read its own
    /// registration's reply: their greetings are believed all the same.
    #[test]
    fn a_ticket_is_believed_before_the_node_has_read_its_registration() {
        let greeted = Context { trust: Mutex::new(Trust::Unregistered), ..context() };
        let addr = "127.0.0.1:7002".parse().unwrap();

        let answer = greet_with_ticket(&context(), addr, &greeted);

        assert_eq!((answer.name.as_deref(), answer.met), (Some("me"), false));
        assert!(wire::lock(&greeted.known).contains(&addr), "the greeter is known now");
    }

    /// Both ends of a pair told of each other, greeting each other at once.
    #[test]
    fn of_two_crossing_greetings_one_is_logged_and_the_other_answered_as_met() {
        let (a, b) = (context(), context());
        let key = |context: &Context| context.keys.identity.public();
        let (small, large) = if key(&a) < key(&b) { (a, b) } else { (b, a) };
        let (at_small, at_large): (SocketAddr, SocketAddr) =
            ("127.0.0.1:7001".parse().unwrap(), "127.0.0.1:7002".parse().unwrap());
        let _small_greets = OnItsWay::start(&small.meetings, key(&large));
        let _large_greets = OnItsWay::start(&large.meetings, key(&small));

        let from_small = greet_with_ticket(&small, at_small, &large);
        let from_large = greet_with_ticket(&large, at_large, &small);

        assert!(!from_small.met && wire::lock(&large.known).contains(&at_small), "welcomed and logged");
        assert!(from_large.met && !wire::lock(&small.known).contains(&at_large), "met, and not logged");
    }
}
