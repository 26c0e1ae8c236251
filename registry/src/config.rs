//! The registry's configuration: read once, from the command line or made
//! by a test, then run by the server and logged when it starts listening.

use std::sync::Arc;
use std::time::Duration;

use wire::connection::Limits;
use wire::http::ReadToken;
use wire::secure::Admission;

use crate::identity::RegistryIdentity;
use crate::store::{Capacity, Leases};

/// How the registry serves: its leases, groups, admission and bounds.
#[derive(Debug, Clone)]
pub struct Config {
    pub leases: Leases,
    /// How often expired entries are removed.
    pub sweep_interval: Duration,
    /// Groups nodes are assigned to when they choose none.
    pub groups: u32,
    /// Who may register: holders of the join token, or anyone.
    pub admission: Admission,
    /// With a token, whether the original programs may still register in plaintext.
    pub allow_original: bool,
    /// Connections served and pending at once, and the handshake deadline.
    pub limits: Limits,
    pub capacity: Capacity,
    /// How long a connection may stay silent, or stall in the middle of a message.
    pub idle_timeout: Duration,
    /// How long writing one reply may take before the client is dropped.
    pub write_timeout: Duration,
    /// The keys it proves and signs with.
    pub identity: RegistryIdentity,
    pub storage: Storage,
    /// The HTTP listener's own read token, which the status page asks for.
    pub http_token: Option<Arc<ReadToken>>,
}

/// Where the membership is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Storage {
    /// In this process: gone when it stops.
    #[default]
    Memory,
    /// In etcd, at these client endpoints, shared by every replica given them.
    Etcd { endpoints: Vec<String> },
}

impl Default for Config {
    fn default() -> Self {
        Self {
            leases: Leases::new(Duration::from_secs(15), None),
            sweep_interval: Duration::from_secs(1),
            groups: 3,
            admission: Admission::Open,
            allow_original: false,
            limits: Limits { max_connections_per_ip: 8192, ..Limits::new(16_384) },
            capacity: Capacity::default(),
            idle_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(5),
            identity: RegistryIdentity::generate(),
            storage: Storage::Memory,
            http_token: None,
        }
    }
}
