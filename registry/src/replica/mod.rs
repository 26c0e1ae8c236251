//! A registry that shares its membership with other replicas through etcd
//! (`registry --store etcd`).
//!
//! etcd is the log, the replicas are its state machines. Every change to the
//! membership (a registration, a deregistration, a lost session, a session
//! that moved to another replica, an expiry) is a command written to etcd;
//! every replica applies every command, in etcd's revision order, to a
//! [`Store`] of its own, at the instant the command was proposed at. The
//! store's rules decide alike given the same commands in the same order, so
//! every replica holds the same entries, the same join order, the same
//! groups and coordinators, and the same watch history under the same
//! revisions: a node may register at one replica, heartbeat at another and
//! resume its watch at a third. A request that changes the membership is
//! answered once its command is applied here, with what it did.
//!
//! Leases are etcd's. A registration is written under a key of its own tied
//! to an etcd lease of the entry's TTL, which a heartbeat at any replica
//! keeps alive (etcd's leader counts keep-alives without a Raft write, so a
//! heartbeat costs no write). When a lease ends, etcd deletes its key; every
//! replica reads the deletion and proposes the entry's expiry, and the first
//! one applied ends it.
//!
//! Reads (lookup, list, group, watch) are served from the replica's own
//! store: a change made at another replica shows there once applied here,
//! milliseconds later.
//!
//! # Layout
//! - this module: [`Replica`], which proposes commands and waits for them.
//! - `command`: the commands, sealed with a key of the replicas' own.
//! - `apply`: the loop applying the log, and the entries' leases.
//! - `keys`: where in etcd the log lives.

mod apply;
mod command;
mod keys;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd::{Etcd, EtcdError, Keeper, LeaseId};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;
use wire::secure::PublicKey;

use self::apply::{instant_at, Applier, Done, LeaseBook, Outcome, Pending};
pub use self::command::Seal;
use self::command::{Command, Proposal};
use self::keys::{Key, PREFIX};
use crate::config::Config;
use crate::events;
use crate::protocol::{Contact, EntryKey, Registration};
use crate::store::{Admitted, Store, StoreError};

/// How long a replica tries to reach etcd when it starts.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a replica may take to apply the log written before it started.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a command, once written, may take to come back through the log.
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a replica could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("cannot reach etcd")]
    Connect(#[source] EtcdError),
    #[error("cannot write this replica's start to etcd")]
    Mark(#[source] EtcdError),
    #[error("could not apply etcd's log up to this replica's start within {0:?}")]
    CatchUp(Duration),
}

/// One of the registry's replicas: its store, kept as etcd's log says.
#[derive(Debug)]
pub struct Replica {
    store: Arc<Store>,
    etcd: Etcd,
    keeper: Keeper,
    seal: Arc<Seal>,
    /// Random per process: whose commands are whose.
    origin: u64,
    proposals: AtomicU64,
    pending: Arc<Pending>,
    book: Arc<Mutex<LeaseBook>>,
    clock_ms: Arc<AtomicU64>,
    anchor: Instant,
}

impl Replica {
    /// Connects to etcd, applies its log up to now, and keeps applying it.
    pub async fn start(
        endpoints: &[String],
        config: &Config,
        tracker: &TaskTracker,
        token: &CancellationToken,
    ) -> Result<Arc<Replica>, ReplicaError> {
        let etcd = Etcd::connect(endpoints, CONNECT_TIMEOUT).await.map_err(ReplicaError::Connect)?;
        let cluster = etcd.cluster_id();
        // Ids and watch epochs are the etcd cluster's: a new cluster, a new run.
        let epoch = format!("{:08x}", (cluster ^ (cluster >> 32)) as u32);
        let store = Arc::new(Store::replicated(config.leases, config.groups, config.capacity, epoch));
        let replica = Arc::new(Replica {
            store,
            keeper: etcd.keeper(),
            etcd,
            seal: Arc::new(Seal::new(config.identity.store_key())),
            origin: fastrand::u64(..),
            proposals: AtomicU64::new(0),
            pending: Arc::default(),
            book: Arc::default(),
            clock_ms: Arc::default(),
            anchor: Instant::now(),
        });
        let (expiries, expired) = mpsc::unbounded_channel();
        let (ready, caught_up) = oneshot::channel();
        let applier = replica.applier(expiries);
        let watch = replica.etcd.watch(PREFIX, 1);
        tracker.spawn(until_cancelled(token.clone(), applier.run(watch, ready)));
        tracker.spawn(until_cancelled(token.clone(), replica.clone().propose_expiries(expired)));
        let mark = replica.origin.to_be_bytes();
        replica.etcd.put(&Key::Ready.bytes(), &mark, None).await.map_err(ReplicaError::Mark)?;
        match timeout(CATCH_UP_TIMEOUT, caught_up).await {
            Ok(Ok(())) => Ok(replica),
            _ => Err(ReplicaError::CatchUp(CATCH_UP_TIMEOUT)),
        }
    }

    fn applier(&self, expiries: mpsc::UnboundedSender<(String, LeaseId)>) -> Applier {
        Applier {
            store: self.store.clone(),
            book: self.book.clone(),
            pending: self.pending.clone(),
            seal: self.seal.clone(),
            origin: self.origin,
            clock_ms: self.clock_ms.clone(),
            anchor: self.anchor,
            expiries,
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The store's present: the instant of the last command applied. The
    /// store is read and renewed at it, never at this replica's own clock,
    /// so that what it does between commands changes nothing another
    /// replica would decide otherwise.
    pub fn now(&self) -> Instant {
        instant_at(self.anchor, self.clock_ms.load(Ordering::SeqCst))
    }

    /// Admits a registration, under a lease of its own when its dialect has one.
    pub async fn register(
        &self,
        registration: &Registration,
        observed: IpAddr,
        session: Option<u64>,
    ) -> Result<Admitted, StoreError> {
        let lease = match self.store.lease(registration.dialect) {
            Some(ttl) => Some(self.etcd.grant(ttl).await.map_err(unavailable)?),
            None => None,
        };
        let command = Command::Register { registration: registration.clone(), observed, session };
        match self.propose(command, lease).await {
            Ok(Done::Registered(result)) => result,
            other => {
                self.revoke(lease);
                Err(unexpected(other))
            }
        }
    }

    /// Renews the entry `id` here, and its lease in etcd.
    pub fn heartbeat(&self, id: &str, caller: Option<PublicKey>) -> Result<Duration, StoreError> {
        let ttl = self.store.heartbeat(id, caller, self.now())?;
        if let Some(lease) = wire::lock(&self.book).lease_of(id) {
            self.keeper.keep_alive(lease);
        }
        Ok(ttl)
    }

    /// Ties the entry `id` to `session` on every replica, unless it is already.
    pub async fn hold(&self, id: &str, session: u64) {
        if self.store.held_by(id) == Some(session) {
            return;
        }
        if let Err(error) = self.propose(Command::Hold { id: id.to_owned(), session }, None).await {
            debug!(id, error = %wire::Chain(&error), "could not tie an entry to its new session");
        }
    }

    /// Ends the entry `id` whose `session` closed, unless another session
    /// (here or at another replica) holds it now.
    pub async fn session_lost(&self, id: &str, session: u64) -> Option<Contact> {
        if self.store.held_by(id) != Some(session) {
            return None;
        }
        match self.propose(Command::Lost { id: id.to_owned(), session }, None).await {
            Ok(Done::Ended(lost)) => lost,
            _ => None,
        }
    }

    pub async fn deregister(&self, key: &EntryKey, caller: Option<PublicKey>) -> Result<Contact, StoreError> {
        match self.propose(Command::Deregister { key: key.clone(), caller }, None).await {
            Ok(Done::Deregistered(result)) => result,
            other => Err(unexpected(other)),
        }
    }

    /// Writes `command` to the log, under `lease` if given, and waits until
    /// it is applied here; revokes the leases it left to no entry.
    async fn propose(&self, command: Command, lease: Option<LeaseId>) -> Result<Done, StoreError> {
        let seq = self.proposals.fetch_add(1, Ordering::Relaxed);
        let (done, outcome) = oneshot::channel();
        wire::lock(&self.pending).insert(seq, done);
        let proposal = Proposal { origin: self.origin, seq, at_ms: wire::replay::unix_ms(), command };
        let key = lease.map_or(Key::Log, Key::Lease).bytes();
        let written = self.etcd.put(&key, &self.seal.seal(&proposal), lease).await;
        let applied = match written {
            Ok(_) => timeout(APPLY_TIMEOUT, outcome).await.ok().and_then(Result::ok),
            Err(error) => {
                wire::lock(&self.pending).remove(&seq);
                return Err(unavailable(error));
            }
        };
        let Some(Outcome { done, freed }) = applied else {
            wire::lock(&self.pending).remove(&seq);
            return Err(StoreError::Unavailable { reason: "the command written was not read back in time".into() });
        };
        freed.into_iter().for_each(|lease| self.revoke(Some(lease)));
        Ok(done)
    }

    fn revoke(&self, lease: Option<LeaseId>) {
        let Some(lease) = lease else { return };
        let etcd = self.etcd.clone();
        tokio::spawn(async move {
            if let Err(error) = etcd.revoke(lease).await {
                // It ends at its TTL all the same, and no entry holds it.
                debug!(lease, error = %wire::Chain(&error), "could not revoke a lease");
            }
        });
    }

    /// Proposes the expiry of each entry whose lease ended; the replica
    /// whose proposal is applied first logs it.
    async fn propose_expiries(self: Arc<Replica>, mut expired: mpsc::UnboundedReceiver<(String, LeaseId)>) {
        while let Some((id, lease)) = expired.recv().await {
            let replica = self.clone();
            tokio::spawn(async move {
                if let Ok(Done::Ended(Some(entry))) = replica.propose(Command::Expire { id, lease }, None).await {
                    events::expired(&entry);
                }
            });
        }
    }
}

async fn until_cancelled(token: CancellationToken, task: impl std::future::Future<Output = ()>) {
    tokio::select! {
        () = task => {}
        () = token.cancelled() => {}
    }
}

fn unavailable(error: EtcdError) -> StoreError {
    StoreError::Unavailable { reason: wire::Chain(&error).to_string() }
}

/// A command answered as another kind, which the applier never does; or no answer.
fn unexpected(outcome: Result<Done, StoreError>) -> StoreError {
    match outcome {
        Err(error) => error,
        Ok(done) => StoreError::Unavailable { reason: format!("the log answered another command: {done:?}") },
    }
}
