//! How a call to etcd fails: each variant names the operation and the member(s) it was tried on.

use crate::Revision;

/// A failed etcd operation.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// [`Etcd::connect`](crate::Etcd::connect) was given no endpoint.
    #[error("failed to connect to etcd: no endpoint was given")]
    NoEndpoints,

    /// An endpoint is not of the form `host:port`.
    #[error("failed to connect to etcd: '{endpoint}' is not a host:port endpoint ({reason})")]
    BadEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it was refused.
        reason: String,
    },

    /// No member answered `op` before its deadline: every one was down, stopped, without a
    /// leader, or too slow.
    #[error("failed to {op}: no etcd member answered in time (tried {endpoints}); last error: {last}")]
    Unreachable {
        /// What was being done, e.g. "put a key".
        op: &'static str,
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// The last failure, with the endpoint it came from.
        last: String,
    },

    /// A member answered `op` with an error that another member would repeat (a bad argument,
    /// a missing lease, a permission), so it was not retried.
    #[error("failed to {op}: etcd at {endpoint} refused it: {status}")]
    Rejected {
        /// What was being done.
        op: &'static str,
        /// The member that answered.
        endpoint: String,
        /// The gRPC status it answered with.
        status: String,
    },

    /// A member answered `op` with a response that lacks something every answer carries.
    #[error("failed to {op}: etcd at {endpoint} answered without {missing}")]
    Malformed {
        /// What was being done.
        op: &'static str,
        /// The member that answered.
        endpoint: String,
        /// What was missing, e.g. "a response header".
        missing: &'static str,
    },

    /// A watch asked for history etcd has compacted away: the events from `requested` up to
    /// `compact_revision` are gone, so they cannot be delivered.
    #[error("failed to watch from revision {requested}: etcd compacted its history up to revision {compact_revision}")]
    Compacted {
        /// The first revision the watch still needed.
        requested: Revision,
        /// The revision etcd's history now starts after.
        compact_revision: Revision,
    },
}
