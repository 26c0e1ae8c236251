//! Greetings with tickets (`wire::ticket`) against the real binaries: a
//! member that holds the token and the registry's tickets (mallory, played
//! by the test) greets real nodes once as she may, then tries every attack
//! on the protocol. Each attack is refused and logged once as
//! `greeting_rejected` with its reason, and nothing else is logged.

use anyhow::{ensure, Context};
use nix::sys::signal::Signal;
use node::events::Event;
use node::greeting::GREETING;
use registry::client::{Client, Joined};
use registry::protocol::{NativeRequest, Registered};
use serde_json::{json, Value};
use tests::{Node, Registry, PATIENCE};
use tokio::net::TcpListener;
use wire::secure::{Admission, Identity, JoinToken, Keys};
use wire::ticket::{Introduction, Sealed, Ticket, TicketAnswer, TicketGreeting, TicketKey};

/// A member registered through the library, as a node would, with the
/// tickets for every earlier node.
struct Mallory {
    _session: Client,
    _listener: TcpListener,
    registered: Registered,
}

impl Mallory {
    async fn register(registry: &Registry, keys: &Keys) -> anyhow::Result<Mallory> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let ticket_key = TicketKey::generate();
        let mut session = Client::connect_secure(&registry.registry_addr(), keys, PATIENCE).await?;
        let request = NativeRequest::Register {
            ip: None,
            puerto: listener.local_addr()?.port(),
            name: "mallory",
            group: None,
            incarnation: None,
            ticket_key: Some(&ticket_key),
        };
        let Joined::Leased(registered) = session.register(&request).await? else {
            anyhow::bail!("a registry of ours leases")
        };
        Ok(Mallory { _session: session, _listener: listener, registered: *registered })
    }

    /// Her introduction to `name`.
    fn introduction(&self, name: &str) -> anyhow::Result<&Introduction> {
        let at = self.registered.contactos.iter().position(|c| c.name == name).context("no such contact")?;
        self.registered.tickets.as_ref().and_then(|tickets| tickets[at].as_ref()).context("no ticket for it")
    }

    /// Her greeting, as her node would send it, claiming `name`.
    fn greeting(&self, name: &str) -> Vec<u8> {
        let entry = &self.registered.entry;
        let greeting =
            json!({"mensaje":GREETING,"ip":entry.ip,"puerto":entry.puerto,"name":name,"id":self.registered.id});
        serde_json::to_vec(&greeting).unwrap()
    }

    /// The message of attempt `attempt` of her greeting to `to`, claiming `name`.
    fn sealed(&self, to: &str, attempt: u32, name: &str) -> anyhow::Result<Vec<u8>> {
        let sent = self.introduction(to)?.seal_greeting(attempt, &self.greeting(name))?;
        Ok(serde_json::to_vec(&sent)?)
    }
}

/// The greeted node's answer to attempt `attempt`, opened with the pair key.
fn opened(answer: &Value, introduction: &Introduction, attempt: u32) -> anyhow::Result<Value> {
    let answer: TicketAnswer = serde_json::from_value(answer.clone()).with_context(|| format!("{answer}"))?;
    Ok(serde_json::from_slice(&introduction.open_answer(attempt, &answer.sealed)?)?)
}

/// Sends an attack to `node`, expects `unauthorized`, and waits for its
/// `nth` rejection, whose reason must contain `reason`.
async fn refused(node: &Node, bytes: &[u8], nth: usize, reason: &str) -> anyhow::Result<()> {
    let answer = tests::plaintext(node.addr, bytes).await?;
    ensure!(answer["error"]["code"] == "unauthorized", "{} answered {answer}", node.name);
    let rejected = node.process.wait_for_nth_event(Event::GreetingRejected, nth).await?;
    ensure!(rejected["reason"].as_str().is_some_and(|r| r.contains(reason)), "expected {reason:?}: {rejected}");
    Ok(())
}

fn names(node: &Node, event: Event) -> Vec<String> {
    node.process.events(event).iter().filter_map(|l| l["peer_name"].as_str().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_on_a_greeting_is_refused_and_logged_once() -> anyhow::Result<()> {
    let token = JoinToken::generate();
    let keys =
        || Keys::new(Identity::generate(), Admission::from_token(Some(JoinToken::parse(&token.reveal()).unwrap())));
    let registry = Registry::start_with_token(&token, &[]).await?;
    let key_dir = std::env::temp_dir().join(format!("hit6-tickets-{}", std::process::id()));
    std::fs::create_dir_all(&key_dir)?;
    let key_file = key_dir.join("alice.key");
    let key_file = key_file.to_str().context("a utf-8 path")?;
    let mut alice = Node::start_with_token(registry.addr, "alice", &token, &["--key-file", key_file]).await?;
    alice.process.wait_for_event(Event::Registered).await?;
    let carol = Node::start_with_token(registry.addr, "carol", &token, &[]).await?;
    alice.process.wait_for_event(Event::GreetingReceived).await?;
    let mallory = Mallory::register(&registry, &keys()).await?;

    // Her own greeting, as a node of ours sends it: believed, under the registry's name for her.
    let first = mallory.sealed("alice", 1, "mallory")?;
    let answer = tests::plaintext(alice.addr, &first).await?;
    let answer = opened(&answer, mallory.introduction("alice")?, 1)?;
    ensure!(answer["name"] == "alice", "alice proved she is alice: {answer}");
    let received = alice.process.wait_for_nth_event(Event::GreetingReceived, 2).await?;
    ensure!(received["peer_name"] == "mallory" && received["verified"] == true, "{received}");

    // No ticket: plaintext, a ticket made up, a Noise session.
    let plain = json!({"mensaje":GREETING,"ip":"127.0.0.1","puerto":carol.addr.port(),"name":"carol"});
    refused(&alice, plain.to_string().as_bytes(), 1, "plaintext greetings are refused").await?;
    let mut forged: TicketGreeting = serde_json::from_slice(&first)?;
    let mut bytes = forged.ticket.as_bytes().to_vec();
    bytes[60] ^= 1;
    forged.ticket = Ticket::from(bytes);
    refused(&alice, &serde_json::to_vec(&forged)?, 2, "does not open with this node's ticket key").await?;
    let mut sealed = tests::open_sealed(alice.addr, &keys()).await?;
    let answer = tests::ask(&mut sealed, &serde_json::from_slice(&mallory.greeting("mallory"))?).await?;
    ensure!(answer["error"]["code"] == "unauthorized", "{answer}");
    let rejected = alice.process.wait_for_nth_event(Event::GreetingRejected, 3).await?;
    ensure!(rejected["reason"].as_str().unwrap_or_default().contains("travels with a ticket"), "{rejected}");

    // Her recorded greeting replayed to alice, and to carol; her ticket for carol shown to alice.
    refused(&alice, &first, 4, "a replay").await?;
    refused(&carol, &first, 1, "for another node").await?;
    refused(&alice, &mallory.sealed("carol", 1, "mallory")?, 5, "for another node").await?;

    // Altered on the path: refused, and the attempt it altered still goes through once.
    let second = mallory.sealed("alice", 2, "mallory")?;
    let mut altered: TicketGreeting = serde_json::from_slice(&second)?;
    let mut bytes = altered.sealed.as_bytes().to_vec();
    bytes[0] ^= 1;
    altered.sealed = Sealed::from(bytes);
    refused(&alice, &serde_json::to_vec(&altered)?, 6, "does not open with the ticket's pair key").await?;
    let answer = tests::plaintext(alice.addr, &second).await?;
    opened(&answer, mallory.introduction("alice")?, 2).context("her retry is answered")?;

    // Her ticket, claiming carol's name.
    refused(&alice, &mallory.sealed("alice", 3, "carol")?, 7, "claims to be carol").await?;

    // Alice restarts with the same key: the ticket of her earlier run no longer opens.
    alice.process.signal(Signal::SIGTERM);
    alice.process.wait().await?;
    alice.process.wait_for_event(Event::Deregistered).await?;
    ensure!(names(&alice, Event::GreetingReceived) == ["carol", "mallory"], "{:?}", alice.process.lines());
    ensure!(alice.process.events(Event::GreetingRejected).len() == 7, "each attack logged once");
    let again = Node::start_with_token(registry.addr, "alice", &token, &["--key-file", key_file]).await?;
    again.process.wait_for_event(Event::Registered).await?;
    refused(&again, &first, 1, "issued to an earlier run of this node").await?;
    ensure!(again.process.events(Event::GreetingReceived).is_empty(), "{:?}", again.process.lines());
    ensure!(names(&carol, Event::GreetingReceived).iter().all(|n| n == "alice"), "{:?}", carol.process.lines());
    ensure!(carol.process.events(Event::GreetingRejected).len() == 1);
    std::fs::remove_dir_all(&key_dir)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_a_greeter_without_a_ticket_is_refused_too() -> anyhow::Result<()> {
    let registry = Registry::start(&[]).await?;
    let alice = Node::start(registry.addr, "alice", &[]).await?;
    alice.process.wait_for_event(Event::Registered).await?;
    let carol = Node::start(registry.addr, "carol", &[]).await?;
    alice.process.wait_for_event(Event::GreetingReceived).await?;
    // Anyone may register here, but carol registered with a key: whoever
    // claims her address in plaintext is not her.
    let plain = json!({"mensaje":GREETING,"ip":"127.0.0.1","puerto":carol.addr.port(),"name":"carol"});
    refused(&alice, plain.to_string().as_bytes(), 1, "must greet with a ticket").await?;
    // A ticket made up for alice's key, which anyone may look up.
    let alice_key = registry.client().await?.lookup("alice").await?.key.context("alice has a key")?;
    let made_up = Ticket::from([alice_key.as_bytes().as_slice(), &[7; 150]].concat());
    let made_up = TicketGreeting { ticket: made_up, attempt: 1, sealed: Sealed::from(vec![7; 40]) };
    refused(&alice, &serde_json::to_vec(&made_up)?, 2, "does not open").await?;
    ensure!(names(&alice, Event::GreetingReceived) == ["carol"], "{:?}", alice.process.lines());
    Ok(())
}
