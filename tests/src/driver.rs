//! Clients of a registry's replicas whose every operation goes into a
//! [`history`](crate::history) to check: each a member with a key of its
//! own (a fresh identity, so a distinct node to the registry) that
//! registers, heartbeats every third of its lease, lists the membership
//! after each heartbeat, and deregisters when told to; and churns of
//! members that register and deregister one after another, a steady stream
//! of writes at each replica.
//!
//! A member keeps one secure session, as a node does, with the replica in
//! use, for its registration, heartbeats and deregistration, and another
//! for its lists (as a node keeps one for its watch). A request left
//! unanswered (a timeout, a broken session, or a replica answering
//! `unavailable`) is recorded as such and sent once more on a session with
//! the next replica; a session given up on is never used again, and is
//! closed only once a request is answered on the one in use: the registry
//! ends an entry whose session closes, unless another session renewed it
//! since. A registration sent again carries the same incarnation, so it is
//! the same registration.
//!
//! Each member listens, and answers the greetings of the nodes told of it
//! as a node would, remembering who greeted it.
//!
//! Lists and contacts are recorded with the driver's own names only
//! (those beginning with [`PREFIX`]): the nodes in the same membership are
//! no client's to account for.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use registry::client::{Client, ClientError, Joined, RegistryAddr};
use registry::protocol::{Contact, ErrorCode, NativeRequest, Registered};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wire::secure::{Admission, Identity, Keys};
use wire::ticket::TicketKey;

use crate::history::{Call, Op, Outcome};
use crate::PATIENCE;

/// What every name the driver registers begins with.
pub const PREFIX: &str = "h-";

/// How long a member waits for a session to open, and for each answer:
/// shorter than the outages of the faults tested (about a second), so that
/// requests go unanswered, are sent again at another replica, and are taken
/// up late where they were sent first, as a node's are when a registry is
/// slower than its timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a member waits before trying again when no replica opened a session.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Every operation the driver's clients made, as it happens.
#[derive(Debug)]
pub struct Recorder {
    origin: Instant,
    ops: watch::Sender<Vec<Op>>,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder { origin: Instant::now(), ops: watch::Sender::new(Vec::new()) }
    }

    /// `at` as the history times it.
    pub fn time(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.origin)
    }

    /// The operations so far.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.borrow().clone()
    }

    /// Waits until the operations so far satisfy `done`.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Op]) -> bool) -> anyhow::Result<()> {
        let mut ops = self.ops.subscribe();
        let waited = tokio::time::timeout(PATIENCE, ops.wait_for(|ops| done(ops))).await;
        waited.with_context(|| format!("the clients' history did not show {what} within {PATIENCE:?}"))?.map(drop)?;
        Ok(())
    }

    fn record(&self, client: &str, replica: usize, call: Call, invoked: Instant, outcome: Outcome) {
        let op = Op {
            client: client.to_owned(),
            replica,
            call,
            invoked: self.time(invoked),
            completed: self.time(Instant::now()),
            outcome,
        };
        self.ops.send_modify(|ops| ops.push(op));
    }
}

/// Starts the driver's clients against the replicas of one registry.
#[derive(Debug, Clone)]
pub struct Driver {
    pub recorder: Arc<Recorder>,
    replicas: Arc<[RegistryAddr]>,
    ttl: Duration,
}

impl Driver {
    /// A driver for `replicas`, whose entries' lease is `ttl`.
    pub fn new(replicas: &[SocketAddr], ttl: Duration) -> Driver {
        let replicas = replicas.iter().map(|addr| RegistryAddr::from(*addr)).collect();
        Driver { recorder: Arc::new(Recorder::new()), replicas, ttl }
    }

    /// A member named [`PREFIX`] + `label`, trying the replicas in `order`
    /// (their indexes) from the first; it starts registering at once.
    pub async fn join(&self, label: &str, order: &[usize]) -> anyhow::Result<Member> {
        let name = format!("{PREFIX}{label}");
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let port = listener.local_addr()?.port();
        let keys = Keys::new(Identity::generate(), Admission::Open);
        let ticket_key = Arc::new(TicketKey::generate());
        let greeters = Arc::new(Mutex::new(Vec::new()));
        let accepting =
            tokio::spawn(answer_greetings(listener, keys.clone(), ticket_key.clone(), name.clone(), greeters.clone()));
        let session = Session::new(self.replicas.clone(), order, keys.clone());
        let life = Life {
            name: name.clone(),
            recorder: self.recorder.clone(),
            reader: Session::new(self.replicas.clone(), order, keys),
            session,
            incarnation: format!("{:032x}", fastrand::u128(..)),
            ticket_key,
            port,
        };
        let (joined, joined_rx) = watch::channel(None);
        let (leave, leaving) = oneshot::channel();
        let stop = CancellationToken::new();
        let task = tokio::spawn(life.run(self.ttl / 3, joined, leaving, stop.clone()));
        Ok(Member { name, joined: joined_rx, leave: Some(leave), task: Some(task), stop, greeters, accepting })
    }

    /// Starts a churn at the replica `first`: members `c<first>-1`,
    /// `c<first>-2`, ... one after another, each trying that replica
    /// first, registering and deregistering at once.
    pub fn churn(&self, first: usize) -> Churn {
        let stop = CancellationToken::new();
        let order: Vec<usize> = (0..self.replicas.len()).map(|r| (first + r) % self.replicas.len()).collect();
        let task = tokio::spawn(churn(self.clone(), format!("c{first}-"), order, stop.clone()));
        Churn { stop, task }
    }
}

/// Whether `name` is one of the driver's.
fn ours(name: &str) -> bool {
    name.starts_with(PREFIX)
}

/// One of the driver's members; stopped (without deregistering) when dropped.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    /// The names of all the contacts of its first acknowledged registration.
    joined: watch::Receiver<Option<Vec<String>>>,
    leave: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    stop: CancellationToken,
    greeters: Arc<Mutex<Vec<String>>>,
    accepting: JoinHandle<()>,
}

impl Member {
    /// Waits until its registration is acknowledged; returns the names of
    /// all its contacts, the nodes' too.
    pub async fn registered(&self) -> anyhow::Result<Vec<String>> {
        let mut joined = self.joined.clone();
        let waited = tokio::time::timeout(PATIENCE, joined.wait_for(Option::is_some)).await;
        let contacts = waited.with_context(|| format!("{} did not register within {PATIENCE:?}", self.name))??;
        Ok(contacts.clone().unwrap_or_default())
    }

    /// Deregisters, and waits until it is done (acknowledged, or refused
    /// because its entry is gone).
    pub async fn leave(&mut self) -> anyhow::Result<()> {
        if let Some(leave) = self.leave.take() {
            let _ = leave.send(());
        }
        self.stopped().await
    }

    /// Stops renewing and listing, without deregistering, and waits for it.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.stopped().await
    }

    async fn stopped(&mut self) -> anyhow::Result<()> {
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task).await.with_context(|| format!("{} did not stop", self.name))??;
        }
        Ok(())
    }

    /// The names of the nodes that greeted it, once per greeting.
    pub fn greeters(&self) -> Vec<String> {
        wire::lock(&self.greeters).clone()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.cancel();
        self.accepting.abort();
    }
}

/// Members registering and deregistering one after another until stopped.
pub struct Churn {
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<Vec<Member>>>,
}

impl Churn {
    /// Stops once the member in turn has deregistered; returns the members,
    /// who go on answering greetings until dropped.
    pub async fn stop(self) -> anyhow::Result<Vec<Member>> {
        self.stop.cancel();
        tokio::time::timeout(PATIENCE, self.task).await.context("the churn did not stop")??
    }
}

async fn churn(
    driver: Driver,
    label: String,
    order: Vec<usize>,
    stop: CancellationToken,
) -> anyhow::Result<Vec<Member>> {
    let mut members = Vec::new();
    for i in 1.. {
        if stop.is_cancelled() {
            break;
        }
        let mut member = driver.join(&format!("{label}{i}"), &order).await?;
        member.registered().await?;
        member.leave().await?;
        members.push(member);
    }
    Ok(members)
}

/// What a member answered as, and with.
struct Life {
    name: String,
    recorder: Arc<Recorder>,
    /// The session its entry is tied to.
    session: Session,
    /// The session it lists on.
    reader: Session,
    incarnation: String,
    ticket_key: Arc<TicketKey>,
    port: u16,
}

/// How a member's renewals ended.
enum Renewals {
    Leave,
    Stop,
    /// Its entry is gone: it registers again, as a node does.
    Unknown,
}

impl Life {
    async fn run(
        mut self,
        every: Duration,
        joined: watch::Sender<Option<Vec<String>>>,
        mut leave: oneshot::Receiver<()>,
        stop: CancellationToken,
    ) {
        loop {
            let Some(registered) = self.register(&stop).await else { return };
            joined.send_if_modified(|joined| {
                let first = joined.is_none();
                if first {
                    *joined = Some(registered.contactos.iter().map(|c| c.name.clone()).collect());
                }
                first
            });
            match self.renew(&registered.id, every, &mut leave, &stop).await {
                Renewals::Leave => return self.deregister(&registered.id, &stop).await,
                Renewals::Stop => return,
                Renewals::Unknown => continue,
            }
        }
    }

    /// Registers until acknowledged, or stopped.
    async fn register(&mut self, stop: &CancellationToken) -> Option<Registered> {
        let call = Call::Register { name: self.name.clone() };
        while !stop.is_cancelled() {
            let request = NativeRequest::Register {
                ip: Some(Ipv4Addr::LOCALHOST.into()),
                puerto: self.port,
                name: &self.name,
                group: None,
                incarnation: Some(&self.incarnation),
                ticket_key: Some(&self.ticket_key),
            };
            if let Some(Ok(Answer::Registered(registered))) =
                self.session.call(&self.recorder, &self.name, &call, &Request::Register(request)).await
            {
                return Some(*registered);
            }
            pause(stop).await;
        }
        None
    }

    /// Heartbeats every `every`, and lists after each, until told to leave or stop.
    async fn renew(
        &mut self,
        id: &str,
        every: Duration,
        leave: &mut oneshot::Receiver<()>,
        stop: &CancellationToken,
    ) -> Renewals {
        let heartbeat = Call::Heartbeat { name: self.name.clone() };
        let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return Renewals::Stop,
                _ = &mut *leave => return Renewals::Leave,
                _ = ticks.tick() => {}
            }
            let renewed = self.session.call(&self.recorder, &self.name, &heartbeat, &Request::Heartbeat(id)).await;
            if matches!(&renewed, Some(Err(error)) if error.code() == Some(ErrorCode::UnknownId)) {
                return Renewals::Unknown;
            }
            self.reader.call(&self.recorder, &self.name, &Call::List, &Request::List).await;
        }
    }

    /// Deregisters until acknowledged, refused because the entry is gone, or stopped.
    async fn deregister(&mut self, id: &str, stop: &CancellationToken) {
        let call = Call::Deregister { name: self.name.clone() };
        while !stop.is_cancelled() {
            match self.session.call(&self.recorder, &self.name, &call, &Request::Deregister(id)).await {
                Some(Ok(_)) => return,
                Some(Err(error)) if !error.is_unanswered() => return,
                _ => pause(stop).await,
            }
        }
    }
}

/// Sleeps [`RETRY_PAUSE`], or less when stopped.
async fn pause(stop: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(RETRY_PAUSE) => {}
        () = stop.cancelled() => {}
    }
}

/// A request a member sends.
enum Request<'a> {
    Register(NativeRequest<'a>),
    Heartbeat(&'a str),
    Deregister(&'a str),
    List,
}

/// What a request got back.
enum Answer {
    Registered(Box<Registered>),
    Renewed,
    Deregistered,
    Listed(Vec<Contact>),
}

impl Answer {
    /// As the history records it: the driver's names only.
    fn outcome(answered: &Result<Answer, ClientError>) -> Outcome {
        let names = |contacts: &[Contact]| contacts.iter().map(|c| c.name.clone()).filter(|n| ours(n)).collect();
        match answered {
            Ok(Answer::Registered(registered)) => {
                Outcome::Registered { id: registered.id.clone(), contacts: names(&registered.contactos) }
            }
            Ok(Answer::Renewed) => Outcome::Renewed,
            Ok(Answer::Deregistered) => Outcome::Deregistered,
            Ok(Answer::Listed(contacts)) => Outcome::Listed(names(contacts)),
            Err(ClientError::Refused { error, .. }) => Outcome::Refused(error.code),
            Err(error) => Outcome::Unknown(wire::Chain(error).to_string()),
        }
    }
}

async fn send(client: &mut Client, request: &Request<'_>) -> Result<Answer, ClientError> {
    match request {
        Request::Register(register) => match client.register(register).await? {
            Joined::Leased(registered) => Ok(Answer::Registered(registered)),
            Joined::Original(_) => Err(ClientError::Unexpected {
                addr: String::new(),
                op: "register",
                detail: "an original registry's answer".into(),
            }),
        },
        Request::Heartbeat(id) => client.heartbeat(id).await.map(|_| Answer::Renewed),
        Request::Deregister(id) => client.deregister(id).await.map(|_| Answer::Deregistered),
        Request::List => client.list().await.map(Answer::Listed),
    }
}

/// A member's secure session with the replica in use.
struct Session {
    replicas: Arc<[RegistryAddr]>,
    /// The replicas to try, by index, in order.
    order: Vec<usize>,
    /// Where in `order` the replica in use is.
    at: usize,
    client: Option<Client>,
    /// Sessions given up on, kept open until a request is answered on the one in use.
    retired: Vec<Client>,
    keys: Keys,
}

impl Session {
    fn new(replicas: Arc<[RegistryAddr]>, order: &[usize], keys: Keys) -> Session {
        Session { replicas, order: order.to_vec(), at: 0, client: None, retired: Vec::new(), keys }
    }

    /// Sends `request` (recorded as `call` by `client`) to the replica in
    /// use, or the next that opens a session; when unanswered, once more
    /// on the next. The last answer; `None` when no replica opened a
    /// session, and nothing was sent.
    async fn call(
        &mut self,
        recorder: &Recorder,
        client: &str,
        call: &Call,
        request: &Request<'_>,
    ) -> Option<Result<Answer, ClientError>> {
        for attempt in 1..=2 {
            let replica = self.open().await?;
            let invoked = Instant::now();
            let answered = send(self.client.as_mut().expect("open"), request).await;
            let outcome = Answer::outcome(&answered);
            let indeterminate = outcome.is_indeterminate();
            recorder.record(client, replica, call.clone(), invoked, outcome);
            if !indeterminate {
                self.retired.clear();
                return Some(answered);
            }
            // Its answer may still come: the session carries nothing else.
            self.retired.extend(self.client.take());
            self.at = (self.at + 1) % self.order.len();
            if attempt == 2 {
                return Some(answered);
            }
        }
        unreachable!("the second attempt returns")
    }

    /// The replica of the session open, or opened with the one in use or the next that can.
    async fn open(&mut self) -> Option<usize> {
        if self.client.is_none() {
            for step in 0..self.order.len() {
                let at = (self.at + step) % self.order.len();
                let addr = &self.replicas[self.order[at]];
                if let Ok(client) = Client::connect_secure(addr, &self.keys, REQUEST_TIMEOUT).await {
                    (self.at, self.client) = (at, Some(client));
                    break;
                }
            }
        }
        self.client.as_ref().map(|_| self.order[self.at])
    }
}

/// Answers every greeting that comes to `listener`, remembering the greeters.
async fn answer_greetings(
    listener: TcpListener,
    keys: Keys,
    ticket_key: Arc<TicketKey>,
    name: String,
    greeters: Arc<Mutex<Vec<String>>>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let (keys, ticket_key, name, greeters) = (keys.clone(), ticket_key.clone(), name.clone(), greeters.clone());
        tokio::spawn(async move {
            if let Ok(greeter) = crate::answer_greeting(stream, &keys, &ticket_key, &name).await {
                wire::lock(&greeters).push(greeter.name);
            }
        });
    }
}
