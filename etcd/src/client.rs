//! [`Etcd`], the client handle, and its unary calls.
//!
//! Every call goes through the pool's failover loop: up to 5 s (`FAILOVER_DEADLINE`) of attempts,
//! each under a request deadline, round-robin from the member that answered last.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{join_all, select_all};
use tokio::time::timeout;
use tonic::transport::Channel;
use tonic::{Response, Status};
use tracing::{debug, info};

use crate::keeper::Keeper;
use crate::pool::{self, Pool, Start, FAILOVER_DEADLINE, REQUEST_TIMEOUT};
use crate::proto::cluster_client::ClusterClient;
use crate::proto::kv_client::KvClient;
use crate::proto::lease_client::LeaseClient;
use crate::proto::maintenance_client::MaintenanceClient;
use crate::proto::{
    LeaseGrantRequest, LeaseRevokeRequest, MemberListRequest, PutRequest, RangeRequest, ResponseHeader, StatusRequest,
    StatusResponse,
};
use crate::watch::Watch;
use crate::{EtcdError, LeaseId, Revision};

/// How long `connect` waits between two tries of one endpoint that failed at once (refused):
/// a cluster that is still starting gets a chance without a busy loop.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// A client of one etcd cluster. Cheap to clone: clones share the connections and the
/// lease [`Keeper`].
#[derive(Clone)]
pub struct Etcd {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Arc<Pool>,
    cluster_id: u64,
    keeper: Keeper,
}

/// One member of the cluster, as [`Etcd::members`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its raft id.
    pub id: u64,
    /// Its `--name`; empty for a member added but not yet started.
    pub name: String,
    /// The first of its advertised client URLs (e.g. `http://127.0.0.1:2379`); empty when
    /// it advertises none.
    pub client_url: String,
    /// Whether it is the leader, as the most recent term among the members that answered
    /// says.
    pub leader: bool,
    /// Whether it answered its status request in time.
    pub reachable: bool,
}

impl Etcd {
    /// Connects to whichever of `endpoints` ("host:port", plain http, no TLS) answers first;
    /// fails only when none does within `timeout`.
    ///
    /// All endpoints are asked at once, so a member that is down or stopped costs nothing
    /// when another answers. Later calls use every endpoint given, not only the one that
    /// answered here.
    pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<Etcd, EtcdError> {
        let pool = Arc::new(Pool::new(endpoints)?);
        let (at, cluster_id) = first_to_answer(&pool, timeout).await?;
        pool.answered(at);
        info!(endpoint = pool.endpoint(at), cluster_id, "connected to etcd");
        let keeper = Keeper::spawn(pool.clone());
        Ok(Etcd { inner: Arc::new(Inner { pool, cluster_id, keeper }) })
    }

    /// The etcd cluster's id (from any response header): the same on every member.
    pub fn cluster_id(&self) -> u64 {
        self.inner.cluster_id
    }

    /// Puts `value` at `key`, tied to `lease` if given; returns the revision of the write.
    ///
    /// A put whose member died or went silent before answering is sent again to another
    /// member, so it may be applied twice (at two revisions). Callers that must tell the two
    /// apart put a nonce in the value.
    pub async fn put(&self, key: &[u8], value: &[u8], lease: Option<LeaseId>) -> Result<Revision, EtcdError> {
        const OP: &str = "put a key";
        let (at, answer) = self
            .pool()
            .call(OP, Start::LastGood, FAILOVER_DEADLINE, |channel| {
                let request = PutRequest {
                    key: key.to_vec(),
                    value: value.to_vec(),
                    lease: lease.unwrap_or(0),
                    ..Default::default()
                };
                async move { KvClient::new(channel).put(request).await.map(Response::into_inner) }
            })
            .await?;
        Ok(self.header(OP, at, answer.header)?.revision)
    }

    /// The value at `key`, if there is one, read linearizably (it reflects every write that
    /// completed before the call).
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EtcdError> {
        const OP: &str = "get a key";
        let (_, answer) = self
            .pool()
            .call(OP, Start::LastGood, FAILOVER_DEADLINE, |channel| {
                let request = RangeRequest { key: key.to_vec(), ..Default::default() };
                async move { KvClient::new(channel).range(request).await.map(Response::into_inner) }
            })
            .await?;
        Ok(answer.kvs.into_iter().next().map(|kv| kv.value))
    }

    /// Grants a lease of `ttl` (rounded up to whole seconds, at least 1).
    ///
    /// A grant retried on another member may leave a first, unused lease behind; it expires
    /// after `ttl` on its own.
    pub async fn grant(&self, ttl: Duration) -> Result<LeaseId, EtcdError> {
        const OP: &str = "grant a lease";
        let (at, answer) = self
            .pool()
            .call(OP, Start::LastGood, FAILOVER_DEADLINE, |channel| {
                let request = LeaseGrantRequest { ttl: whole_seconds(ttl), id: 0 };
                async move { LeaseClient::new(channel).lease_grant(request).await.map(Response::into_inner) }
            })
            .await?;
        if !answer.error.is_empty() {
            return Err(EtcdError::Rejected {
                op: OP,
                endpoint: self.pool().endpoint(at).to_owned(),
                status: answer.error,
            });
        }
        Ok(answer.id)
    }

    /// Revokes a lease, deleting the keys tied to it; one that is already gone (expired,
    /// revoked, or revoked by an earlier attempt of this call) is not an error.
    pub async fn revoke(&self, lease: LeaseId) -> Result<(), EtcdError> {
        self.pool()
            .call("revoke a lease", Start::LastGood, FAILOVER_DEADLINE, |channel| async move {
                match LeaseClient::new(channel).lease_revoke(LeaseRevokeRequest { id: lease }).await {
                    Ok(_) => Ok(()),
                    Err(status) if status.code() == tonic::Code::NotFound => {
                        debug!(lease, "the lease to revoke was already gone");
                        Ok(())
                    }
                    Err(status) => Err(status),
                }
            })
            .await?;
        Ok(())
    }

    /// The handle that keeps leases alive; every clone of this client shares one.
    pub fn keeper(&self) -> Keeper {
        self.inner.keeper.clone()
    }

    /// Every event on keys under `prefix` from revision `from` (inclusive, at least 1), in
    /// revision order; no I/O happens until [`Watch::next`]. To see only what happens from
    /// now on, pass [`revision`](Etcd::revision)` + 1`.
    pub fn watch(&self, prefix: &[u8], from: Revision) -> Watch {
        Watch::new(self.inner.pool.clone(), prefix, from)
    }

    /// The current revision of the cluster, read linearizably (not behind any write that
    /// completed before the call).
    pub async fn revision(&self) -> Result<Revision, EtcdError> {
        const OP: &str = "read the revision";
        let (at, answer) = self
            .pool()
            .call(OP, Start::LastGood, FAILOVER_DEADLINE, |channel| {
                // Counting the keys at one key is the cheapest linearizable read there is.
                let request = RangeRequest { key: vec![0], count_only: true, ..Default::default() };
                async move { KvClient::new(channel).range(request).await.map(Response::into_inner) }
            })
            .await?;
        Ok(self.header(OP, at, answer.header)?.revision)
    }

    /// Each member's name, client URL, and whether it is the leader: the member list from any
    /// member, then every member's own status, asked at once, each under the request
    /// deadline.
    pub async fn members(&self) -> Result<Vec<Member>, EtcdError> {
        let (_, list) = self
            .pool()
            .call("list the members", Start::LastGood, FAILOVER_DEADLINE, |channel| async move {
                ClusterClient::new(channel).member_list(MemberListRequest::default()).await.map(Response::into_inner)
            })
            .await?;
        let urls: Vec<String> =
            list.members.iter().map(|member| member.client_ur_ls.first().cloned().unwrap_or_default()).collect();
        let statuses = join_all(urls.iter().map(|url| self.status_at(url))).await;
        let leader = statuses.iter().flatten().max_by_key(|status| status.raft_term).map(|status| status.leader);
        Ok(list
            .members
            .into_iter()
            .zip(urls)
            .zip(&statuses)
            .map(|((member, client_url), status)| Member {
                leader: Some(member.id) == leader,
                reachable: status.is_some(),
                id: member.id,
                name: member.name,
                client_url,
            })
            .collect())
    }

    /// The status of the member at `url`, or None when it cannot be asked or does not answer
    /// in time. Reuses the pool's channel when the URL is one of the endpoints given.
    async fn status_at(&self, url: &str) -> Option<StatusResponse> {
        let address = url.strip_prefix("http://").unwrap_or(url);
        let channel = match self.pool().position(address) {
            Some(at) => self.pool().channel(at),
            None => pool::channel_to(url).ok()?,
        };
        timeout(REQUEST_TIMEOUT, status(channel)).await.ok()?.ok()
    }

    fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The header every etcd answer carries; an answer without one is malformed.
    fn header(&self, op: &'static str, at: usize, header: Option<ResponseHeader>) -> Result<ResponseHeader, EtcdError> {
        header.ok_or_else(|| EtcdError::Malformed {
            op,
            endpoint: self.pool().endpoint(at).to_owned(),
            missing: "a response header",
        })
    }

    /// The channel to the endpoint at `at`, for the testing harness's own calls.
    #[cfg(feature = "testing")]
    pub(crate) fn channel_at(&self, at: usize) -> Channel {
        self.pool().channel(at)
    }

    /// Runs `op` through the failover loop, for the testing harness's own calls.
    #[cfg(feature = "testing")]
    pub(crate) async fn call<T, F, Fut>(&self, op: &'static str, attempt: F) -> Result<T, EtcdError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        Ok(self.pool().call(op, Start::LastGood, FAILOVER_DEADLINE, attempt).await?.1)
    }
}

impl fmt::Debug for Etcd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.pool().listing())
            .field("cluster_id", &self.inner.cluster_id)
            .finish_non_exhaustive()
    }
}

/// The status of the member behind `channel` (it answers even without a leader).
pub(crate) async fn status(channel: Channel) -> Result<StatusResponse, Status> {
    MaintenanceClient::new(channel).status(StatusRequest {}).await.map(Response::into_inner)
}

/// Asks every endpoint for its status at once, each again and again, until one answers
/// within `within`; returns which one answered and the cluster id from its header.
async fn first_to_answer(pool: &Pool, within: Duration) -> Result<(usize, u64), EtcdError> {
    let failures: Vec<Mutex<String>> = (0..pool.len()).map(|_| Mutex::new("no answer".to_owned())).collect();
    let asking = (0..pool.len()).map(|at| Box::pin(keep_asking(pool, at, &failures[at])));
    let answered = timeout(within, select_all(asking)).await;
    match answered {
        Ok(((at, cluster_id), _, _)) => Ok((at, cluster_id)),
        Err(_) => {
            let last = (0..pool.len())
                .map(|at| format!("{}: {}", pool.endpoint(at), failures[at].lock().unwrap_or_else(|e| e.into_inner())))
                .collect::<Vec<_>>()
                .join("; ");
            Err(EtcdError::Unreachable { op: "connect to etcd", endpoints: pool.listing(), last })
        }
    }
}

/// Asks member `at` for its status until it answers with a header, writing each failure to
/// `failure` for the error message; the caller's deadline ends it.
async fn keep_asking(pool: &Pool, at: usize, failure: &Mutex<String>) -> (usize, u64) {
    loop {
        let why = match timeout(REQUEST_TIMEOUT, status(pool.channel(at))).await {
            Ok(Ok(StatusResponse { header: Some(header), .. })) => return (at, header.cluster_id),
            Ok(Ok(_)) => "answered without a response header".to_owned(),
            Ok(Err(status)) => pool::describe(&status),
            Err(_) => format!("no answer within {REQUEST_TIMEOUT:?}"),
        };
        debug!(endpoint = pool.endpoint(at), error = %why, "etcd endpoint did not answer");
        *failure.lock().unwrap_or_else(|e| e.into_inner()) = why;
        tokio::time::sleep(CONNECT_RETRY_PAUSE).await;
    }
}

/// A lease TTL in the whole seconds etcd takes: rounded up, at least 1.
fn whole_seconds(ttl: Duration) -> i64 {
    let seconds = ttl.as_secs().saturating_add(u64::from(ttl.subsec_nanos() > 0)).max(1);
    i64::try_from(seconds).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(2)), 2);
        assert_eq!(whole_seconds(Duration::from_millis(2001)), 3);
    }
}
