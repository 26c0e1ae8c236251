//! The members a client talks to, and the failover loop every call goes through.
//!
//! Each endpoint gets one tonic `Channel`, connected lazily and shared by unary calls and
//! streams alike (HTTP/2 multiplexes them). A dead member refuses the connection within the
//! connect timeout; a stopped one accepts it and never answers, so every attempt also runs
//! under a request deadline. No HTTP/2 keep-alive pings: etcd answers pings more frequent than
//! its `--grpc-keepalive-min-time` (5 s) by closing the connection, and the deadlines already
//! catch a silent member sooner than such pings could.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::{timeout, Instant};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tracing::debug;

use crate::EtcdError;

/// How long to wait for a TCP connection: loopback and LAN members accept in microseconds,
/// and a dead one refuses at once, so this only bounds a black-holed address.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);

/// How long one attempt may take before the member counts as gone. Well above etcd's own
/// latency under load, well below a lease's TTL; and short, since a follower holds a write
/// while its leader is dead until an election ends: at 1 s, writes resumed 1.03-1.06 s after
/// the leader's kill, all waiting out this deadline; the next member answers once a leader is
/// elected (250-500 ms with the tuning `launcher up --registries` and the tests use).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_millis(400);

/// How long a call keeps moving from member to member before it reports the cluster
/// unreachable: long enough for an election (a few election timeouts).
pub(crate) const FAILOVER_DEADLINE: Duration = Duration::from_secs(5);

/// The pause after the first failure in a round of the members; it doubles each round.
const PAUSE_FIRST: Duration = Duration::from_millis(25);

/// The longest pause between two attempts.
const PAUSE_MAX: Duration = Duration::from_millis(400);

/// Where a call starts its round of the members.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Start {
    /// At the member that answered last: it is most likely still alive.
    LastGood,
    /// At the member after this one, which just failed a stream.
    After(usize),
}

/// The members of one client, by endpoint.
pub(crate) struct Pool {
    endpoints: Vec<String>,
    channels: Vec<Channel>,
    last_good: AtomicUsize,
}

impl Pool {
    /// A pool over `endpoints` ("host:port"); connects nothing yet.
    pub(crate) fn new(endpoints: &[String]) -> Result<Pool, EtcdError> {
        if endpoints.is_empty() {
            return Err(EtcdError::NoEndpoints);
        }
        let channels = endpoints.iter().map(|endpoint| channel_to(endpoint)).collect::<Result<_, _>>()?;
        Ok(Pool { endpoints: endpoints.to_vec(), channels, last_good: AtomicUsize::new(0) })
    }

    /// How many members the pool holds.
    pub(crate) fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// The endpoint of member `at`, as given.
    pub(crate) fn endpoint(&self, at: usize) -> &str {
        &self.endpoints[at]
    }

    /// The channel to member `at`: a cheap clone of the shared one.
    pub(crate) fn channel(&self, at: usize) -> Channel {
        self.channels[at].clone()
    }

    /// Which member `at` an endpoint is, if the pool holds it.
    pub(crate) fn position(&self, endpoint: &str) -> Option<usize> {
        self.endpoints.iter().position(|known| known == endpoint)
    }

    /// Records that member `at` answered, so the next call starts there.
    pub(crate) fn answered(&self, at: usize) {
        self.last_good.store(at, Ordering::Relaxed);
    }

    /// Every endpoint, comma-separated, for error messages.
    pub(crate) fn listing(&self) -> String {
        self.endpoints.join(", ")
    }

    /// Runs `attempt` against one member after another until one answers or `budget` runs
    /// out; returns the member that answered and its answer.
    ///
    /// An attempt fails over when it errs with a status another member may not repeat
    /// (see [`retryable`]) or takes longer than [`REQUEST_TIMEOUT`]. Any other status is
    /// the cluster's answer and is returned as [`EtcdError::Rejected`]. An attempt that timed
    /// out or lost its connection may still have been applied: callers of writes say so.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        op: &'static str,
        start: Start,
        budget: Duration,
        mut attempt: F,
    ) -> Result<(usize, T), EtcdError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let deadline = Instant::now() + budget;
        let mut at = match start {
            Start::LastGood => self.last_good.load(Ordering::Relaxed),
            Start::After(failed) => (failed + 1) % self.len(),
        };
        let mut failures = 0;
        loop {
            let allowed = deadline.saturating_duration_since(Instant::now()).min(REQUEST_TIMEOUT);
            let last = match timeout(allowed, attempt(self.channel(at))).await {
                Ok(Ok(answer)) => {
                    self.answered(at);
                    return Ok((at, answer));
                }
                Ok(Err(status)) if !retryable(&status) => {
                    return Err(EtcdError::Rejected {
                        op,
                        endpoint: self.endpoint(at).to_owned(),
                        status: describe(&status),
                    });
                }
                Ok(Err(status)) => format!("{}: {}", self.endpoint(at), describe(&status)),
                Err(_) => format!("{}: no answer within {allowed:?}", self.endpoint(at)),
            };
            debug!(op, endpoint = self.endpoint(at), error = %last, "etcd call failed; trying the next member");
            failures += 1;
            at = (at + 1) % self.len();
            let pause = pause(failures, self.len());
            if Instant::now() + pause >= deadline {
                return Err(EtcdError::Unreachable { op, endpoints: self.listing(), last });
            }
            tokio::time::sleep(pause).await;
        }
    }
}

/// A lazily connected channel to `endpoint`, "host:port" (an `http://` prefix is accepted).
pub(crate) fn channel_to(endpoint: &str) -> Result<Channel, EtcdError> {
    let bad = |reason: String| EtcdError::BadEndpoint { endpoint: endpoint.to_owned(), reason };
    if endpoint.contains("://") && !endpoint.starts_with("http://") {
        return Err(bad("only plain http is supported, without TLS".to_owned()));
    }
    let url = if endpoint.starts_with("http://") { endpoint.to_owned() } else { format!("http://{endpoint}") };
    let target = Endpoint::from_shared(url).map_err(|err| bad(err.to_string()))?;
    if target.uri().port_u16().is_none() {
        return Err(bad("it has no port".to_owned()));
    }
    Ok(target.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true).connect_lazy())
}

/// Whether a failed attempt is worth repeating on another member: the member or the
/// connection failed (a lost or refused connection comes as `Unavailable` or `Unknown`), or
/// etcd says the cluster is between leaders ("leader changed", "no leader", "request timed
/// out": all `Unavailable`) or too busy. Bad arguments, missing leases and compacted
/// revisions would be answered alike by every member.
pub(crate) fn retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Aborted
            | Code::Internal
            | Code::ResourceExhausted
    )
}

/// A status with its whole chain of causes on one line: tonic puts the transport's reason
/// (refused, reset) in the source, not the message.
pub(crate) fn describe(status: &Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The pause after the `failures`-th failed attempt over `members` members: short within the
/// first round (the next member is probably fine), doubling each further round, so a whole
/// cluster in an election is not hammered.
fn pause(failures: usize, members: usize) -> Duration {
    let round = ((failures - 1) / members.max(1)).min(8) as u32;
    PAUSE_FIRST.saturating_mul(1 << round).min(PAUSE_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_per_round_up_to_the_cap() {
        assert_eq!(pause(1, 3), PAUSE_FIRST);
        assert_eq!(pause(3, 3), PAUSE_FIRST);
        assert_eq!(pause(4, 3), PAUSE_FIRST * 2);
        assert_eq!(pause(1000, 3), PAUSE_MAX);
    }

    #[test]
    fn cluster_answers_are_not_retried() {
        assert!(retryable(&Status::unavailable("etcdserver: leader changed")));
        assert!(retryable(&Status::unknown("transport error")));
        assert!(!retryable(&Status::not_found("etcdserver: requested lease not found")));
        assert!(!retryable(&Status::out_of_range("etcdserver: mvcc: required revision has been compacted")));
    }

    #[tokio::test]
    async fn endpoints_must_be_plain_host_and_port() {
        assert!(channel_to("127.0.0.1:2379").is_ok());
        assert!(channel_to("http://localhost:2379").is_ok());
        assert!(matches!(channel_to("https://localhost:2379"), Err(EtcdError::BadEndpoint { .. })));
        assert!(matches!(channel_to("localhost"), Err(EtcdError::BadEndpoint { .. })));
        assert!(matches!(Pool::new(&[]), Err(EtcdError::NoEndpoints)));
    }
}
