//! The HIT6 contacts registry (node D of the lab): it keeps, in memory, the
//! nodes that are running, and answers each new node with the ones registered
//! before it.
//!
//! # Layout
//! - [`protocol`]: requests, replies and error codes, in the native dialect
//!   and in the two original ones.
//! - [`codec`]: framing of one JSON value per message, with a size cap.
//! - [`store`]: entries, leases, and the name and address indexes.
//! - [`connection`]: the capped accept loop, reply deadlines and error replies
//!   to broken framing, shared with the node's greeting listener.
//! - [`server`]: the registry service: request loop and lease sweeper.
//! - [`client`]: an async client, used by the node and the tests.
//! - [`shutdown`], [`telemetry`], [`cli`]: signal handling, log output and
//!   argument parsing shared by the registry and node binaries.
#![forbid(unsafe_code)]

pub mod cli;
pub mod client;
pub mod codec;
pub mod connection;
pub mod protocol;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod telemetry;
