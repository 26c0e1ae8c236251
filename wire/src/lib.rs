//! What every HIT6 service shares, below any one protocol: how JSON messages
//! travel and how a server stays up under hostile input.
//!
//! # Layout
//! - [`codec`]: framing of one JSON value per message, with a size cap, in
//!   the clear or sealed in a secure session.
//! - [`secure`]: keys, the join token, and the Noise handshake that opens a
//!   secure session.
//! - [`ticket`]: Kerberos-style tickets, with which one node greets
//!   another under symmetric keys the registry handed out.
//! - [`replay`]: bounded replay caches, and the wall clock their expiry
//!   times are read against.
//! - [`envelope`]: the reply envelope (`{"ok":true,...}` or
//!   `{"ok":false,"error":{"code","message"}}`) and the error codes the
//!   framing itself can answer with; each protocol extends them with its own.
//! - [`fields`]: validation of the fields every protocol shares (ports, ips,
//!   names, groups), with messages that name the field and never echo much.
//! - [`connection`]: binding, the capped accept loop, reply deadlines and the
//!   careful hang-up.
//! - [`http`], [`health`]: the operators' HTTP listener (`/metrics`,
//!   `/health`, a service's own pages), bounded apart from the service, and
//!   the health check the `health` subcommands run; [`exposition`]: what
//!   `/metrics` serves, read back; [`metrics`]: lock-free counters and
//!   histograms for hot paths, and the set a service installs.
//! - [`heap`]: giving freed memory back to the system after a burst.
//! - [`throttle`]: log lines about refusals, at most one per source and
//!   reason per interval.
//! - [`cli`]: flags and value parsers for command lines, and the start-up
//!   steps before serving.
//! - [`telemetry`], [`shutdown`]: log output and the signals that stop a service.
//! - [`lock`] and [`Chain`]: a mutex lock that survives poisoning, and an
//!   error with its causes on one line.
//!
//! Data flows one way: `wire` <- `registry` <- `node` <- `launcher`.
// One audited exception, `heap::give_back`.
#![deny(unsafe_code)]

pub mod cli;
pub mod codec;
pub mod connection;
pub mod envelope;
pub mod exposition;
pub mod fields;
pub mod health;
pub mod heap;
pub mod http;
pub mod metrics;
pub mod replay;
pub mod secure;
pub mod shutdown;
pub mod telemetry;
pub mod throttle;
pub mod ticket;

use std::fmt;
use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`. Every lock in these crates guards a few map or field
/// updates that cannot be left half-done by a panic, so a poisoned lock is
/// still consistent and is used as it is rather than spreading the panic.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Implements `Serialize` and `Deserialize` for a type as the string of its
/// `Display` and `FromStr` (whose error must be `Display`), as keys travel.
#[macro_export]
macro_rules! serde_as_text {
    ($ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// An error with its causes on one line, like anyhow's `{:#}`.
pub struct Chain<'a>(pub &'a dyn std::error::Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}
