//! Our etcd v3 client: the few calls the registry needs, made to survive the death or the
//! silence of the member they are talking to.
//!
//! Off-the-shelf clients were measured to give up where this one must not: a watch on a killed
//! member ended with an error and was not resumed, and a lease whose keep-alive stream sat on
//! the dead member expired. Here every call has a deadline (a SIGSTOPped member accepts TCP
//! connections and never answers, so connection errors alone never catch it), and on a
//! failure moves to the next member:
//! - unary calls retry round-robin, starting at the member that last answered;
//! - a [`Watch`] re-creates itself on another member from the revision after the last event
//!   it received, so its caller sees every revision once, in order;
//! - the [`Keeper`] reopens its keep-alive stream elsewhere and re-sends what went unanswered.
//!
//! The gRPC stubs are generated at build time from the protos vendored in `proto/` by protox
//! and tonic-prost-build: no `protoc` is needed. It talks plain HTTP/2 (no TLS, no auth) to
//! etcd 3.4 or later (the watch's liveness probe is a progress request, new in 3.4).
//!
//! # Layout
//! - [`client`]: [`Etcd`], the handle, and its unary calls (put, get, grant, revoke,
//!   revision, members).
//! - `pool`: one lazily connected channel per endpoint, the deadlines, and the round-robin
//!   failover loop every call goes through.
//! - [`watch`]: [`Watch`], events under a prefix from a revision, resumed across members.
//! - [`keeper`]: [`Keeper`], the background task holding the lease keep-alive stream.
//! - [`error`]: [`EtcdError`], one variant per way a call fails.
//! - `proto`: the generated messages and clients.
//! - `testing` (feature `testing`): `testing::Cluster`, real etcd members on loopback
//!   ports, with the signals failover tests need.
#![forbid(unsafe_code)]

pub mod client;
pub mod error;
pub mod keeper;
mod pool;
mod proto;
#[cfg(feature = "testing")]
pub mod testing;
pub mod watch;

pub use client::{Etcd, Member};
pub use error::EtcdError;
pub use keeper::Keeper;
pub use watch::{Event, EventKind, Watch};

/// The id of an etcd lease.
pub type LeaseId = i64;

/// A revision of the etcd key-value store: every write gets the next one.
pub type Revision = i64;
