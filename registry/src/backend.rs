//! Where the membership lives: a store of this process's own, or a
//! replica's, kept as etcd's log says. The server asks either the same
//! things; only the replica's changes wait for etcd.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::secure::PublicKey;

use crate::config::{Config, Storage};
use crate::protocol::{Contact, EntryKey, Registration};
use crate::replica::{Replica, ReplicaError};
use crate::store::{Admitted, Store, StoreError};

#[derive(Debug, Clone)]
pub enum Backend {
    Memory(Arc<Store>),
    Replica(Arc<Replica>),
}

impl Backend {
    /// The store `config` asks for; a replica's once it has caught up with etcd's log.
    pub async fn open(
        config: &Config,
        tracker: &TaskTracker,
        token: &CancellationToken,
    ) -> Result<Backend, ReplicaError> {
        match &config.storage {
            Storage::Memory => Ok(Backend::Memory(Arc::new(Store::new(config.leases, config.groups, config.capacity)))),
            Storage::Etcd { endpoints } => {
                Replica::start(endpoints, config, tracker, token).await.map(Backend::Replica)
            }
        }
    }

    /// The store, to read from.
    pub fn store(&self) -> &Arc<Store> {
        match self {
            Backend::Memory(store) => store,
            Backend::Replica(replica) => replica.store(),
        }
    }

    /// The instant the store is read at.
    pub fn now(&self) -> Instant {
        match self {
            Backend::Memory(_) => Instant::now(),
            Backend::Replica(replica) => replica.now(),
        }
    }

    /// Admits a registration, tied to `session` when it came on a node's kept session.
    pub async fn register(
        &self,
        registration: &Registration,
        observed: IpAddr,
        session: Option<u64>,
    ) -> Result<Admitted, StoreError> {
        match self {
            Backend::Memory(store) => {
                let now = Instant::now();
                let admitted = store.register(registration, observed, now)?;
                if let Some(session) = session {
                    store.hold(&admitted.entry.id, session, now);
                }
                Ok(admitted)
            }
            Backend::Replica(replica) => replica.register(registration, observed, session).await,
        }
    }

    pub fn heartbeat(&self, id: &str, caller: Option<PublicKey>) -> Result<Duration, StoreError> {
        match self {
            Backend::Memory(store) => store.heartbeat(id, caller, Instant::now()),
            Backend::Replica(replica) => replica.heartbeat(id, caller),
        }
    }

    /// Ties the entry `id` to `session`, whose loss ends it.
    pub async fn hold(&self, id: &str, session: u64) {
        match self {
            Backend::Memory(store) => store.hold(id, session, Instant::now()),
            Backend::Replica(replica) => replica.hold(id, session).await,
        }
    }

    pub async fn session_lost(&self, id: &str, session: u64) -> Option<Contact> {
        match self {
            Backend::Memory(store) => store.session_lost(id, session, Instant::now()),
            Backend::Replica(replica) => replica.session_lost(id, session).await,
        }
    }

    pub async fn deregister(&self, key: &EntryKey, caller: Option<PublicKey>) -> Result<Contact, StoreError> {
        match self {
            Backend::Memory(store) => store.deregister(key, caller, Instant::now()),
            Backend::Replica(replica) => replica.deregister(key, caller).await,
        }
    }
}
