//! The HIT6 contacts registry (node D of the lab): it keeps, in memory, the
//! nodes that are running, and answers each new node with the ones registered
//! before it.
//!
//! # Layout
//! - [`contact`]: what the registry says of an entry, and values encoded
//!   once for every reply that sends them; what the protocol and the watch
//!   are both made of.
//! - [`protocol`]: requests, replies and error codes, in the native dialect
//!   and in the two original ones.
//! - [`store`]: the membership rules (admission order, who owns a name or
//!   an address, lapsed places, groups, capacity) over a table of entries
//!   that keeps its own indexes, the seam for another storage backend.
//! - [`replica`]: a store shared with other replicas through etcd: etcd's
//!   log of commands, applied to the store by every replica alike.
//! - [`backend`]: where the server finds the membership, a store of its
//!   own or a replica's.
//! - [`watch`]: the changes to the membership, by revision, that watchers
//!   stream, and the bounded history they read them from.
//! - [`config`]: how the registry serves ([`config::Config`]), which the
//!   command line makes, the server runs and the events log.
//! - [`server`]: the registry service: request loop and lease sweeper.
//! - [`assigner`]: the group lab's assigner, on a port of its own.
//! - [`fanout`]: the thread watches run on, apart from requests.
//! - [`streamed`]: the large replies (a registration's, a watcher's batch),
//!   made a piece at a time as their reader takes them.
//! - [`client`]: an async client, used by the node, the launcher and the tests.
//! - [`credential`]: what the registry signs for nodes to check it by:
//!   group views. (Greeters are introduced with tickets, [`wire::ticket`],
//!   which the server seals at each registration.)
//! - [`identity`]: the registry's own keys (the one its sessions prove, the
//!   one it signs with), fresh at each start or kept in a key file.
//! - [`cli`]: the command line and environment of the `registry` binary.
//! - [`metrics`]: what `/metrics` serves: the events counted, and the
//!   membership read at each scrape.
//! - [`http`]: the operators' HTTP listener's pages (`/metrics`, `/health`,
//!   the status page) and who may read them.
//! - [`status`]: the status page, and the events it draws the membership from.
//! - [`events`]: the registry's log contract ([`events::Event`]), read back
//!   by the launcher and the tests.
//!
//! Framing, the accept loop, field validation, command-line parsers, logging
//! and signals come from the `wire` crate, which the node shares.
#![forbid(unsafe_code)]

pub mod assigner;
pub mod backend;
pub mod cli;
pub mod client;
pub mod config;
pub mod contact;
pub mod credential;
pub mod events;
pub mod fanout;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod protocol;
pub mod replica;
pub mod server;
pub mod status;
pub mod store;
pub mod streamed;
pub mod watch;
