//! [`Keeper`]: keeps leases alive over one keep-alive stream, moved to another member when the
//! one it is on dies or goes silent.
//!
//! A background task owns the stream. [`Keeper::keep_alive`] only queues the lease; the task
//! sends one request per distinct lease queued since its last send, and expects each answer
//! within 1 s (`ANSWER_WITHIN`). When the stream fails or an answer is late, it opens a new stream
//! on the next member and sends again every request that went unanswered, so a lease misses
//! at most one round trip to a dead member plus one to a live one. The stream is opened only
//! when there is something to send: etcd sends its response headers with its first answer,
//! so opening an empty stream could not tell a live member from a stopped one.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc as requests;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tonic::codec::Streaming;
use tonic::transport::Channel;
use tonic::{Request, Status};
use tracing::{debug, info, trace, warn};

use crate::pool::{self, Pool, Start, FAILOVER_DEADLINE};
use crate::proto::lease_client::LeaseClient;
use crate::proto::{LeaseKeepAliveRequest, LeaseKeepAliveResponse};
use crate::watch::require_leader;
use crate::LeaseId;

/// How long a keep-alive may go unanswered before its stream counts as dead: well within the
/// shortest TTL etcd grants (about 1 s at the least plus the time a new leader adds).
const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// How long to wait before trying again when no member took the stream for a whole failover
/// deadline.
const REOPEN_PAUSE: Duration = Duration::from_millis(500);

/// Keeps leases alive. Cheap to clone; every clone feeds the one background task of its
/// [`Etcd`](crate::Etcd), which ends when the client and every clone are dropped.
#[derive(Clone)]
pub struct Keeper {
    asks: mpsc::UnboundedSender<LeaseId>,
    endpoint: Arc<Mutex<Option<String>>>,
}

impl Keeper {
    /// Starts the background task on the current tokio runtime.
    pub(crate) fn spawn(pool: Arc<Pool>) -> Keeper {
        let (asks, asked) = mpsc::unbounded_channel();
        let endpoint = Arc::new(Mutex::new(None));
        let task = Task {
            pool,
            asked,
            due: BTreeSet::new(),
            unanswered: HashMap::new(),
            stream: None,
            lost_at: None,
            retry_at: None,
            endpoint: endpoint.clone(),
        };
        tokio::spawn(task.run());
        Keeper { asks, endpoint }
    }

    /// Asks for one keep-alive of `lease`, sent promptly; does not wait. Call it well within
    /// the lease's TTL (a third of it, say). A lease that is gone is logged at debug and
    /// otherwise ignored: its keys are gone with it.
    pub fn keep_alive(&self, lease: LeaseId) {
        // Fails only when the task is gone, which it is not while a Keeper exists (unless it
        // panicked, and then there is no one left to tell).
        let _ = self.asks.send(lease);
    }

    /// The endpoint the keep-alive stream is on, if one is open now.
    pub fn endpoint(&self) -> Option<String> {
        self.endpoint.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl fmt::Debug for Keeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keeper").field("endpoint", &self.endpoint()).finish()
    }
}

/// The background task behind every clone of one [`Keeper`].
struct Task {
    pool: Arc<Pool>,
    asked: mpsc::UnboundedReceiver<LeaseId>,
    /// Leases asked for and not yet sent on the current stream.
    due: BTreeSet<LeaseId>,
    /// Leases sent and not yet answered, with when they were sent.
    unanswered: HashMap<LeaseId, Instant>,
    stream: Option<Stream>,
    /// The member whose stream was lost last, so the next one starts after it.
    lost_at: Option<usize>,
    /// When to try opening a stream again, after no member took one.
    retry_at: Option<Instant>,
    /// Where the stream is, for [`Keeper::endpoint`].
    endpoint: Arc<Mutex<Option<String>>>,
}

/// One keep-alive stream on one member.
struct Stream {
    at: usize,
    requests: requests::UnboundedSender<LeaseKeepAliveRequest>,
    answers: Streaming<LeaseKeepAliveResponse>,
}

/// What woke the task.
enum Wake {
    Asked(Option<LeaseId>),
    Answer(Result<Option<LeaseKeepAliveResponse>, Status>),
    Overdue,
    Retry,
}

impl Task {
    async fn run(mut self) {
        loop {
            if self.retry_at.is_none() {
                self.send_due().await;
            }
            let overdue = self.unanswered.values().min().map(|sent| *sent + ANSWER_WITHIN);
            let wake = tokio::select! {
                asked = self.asked.recv() => Wake::Asked(asked),
                answer = next_answer(self.stream.as_mut()) => Wake::Answer(answer),
                () = sleep_until_some(overdue) => Wake::Overdue,
                () = sleep_until_some(self.retry_at) => Wake::Retry,
            };
            match wake {
                Wake::Asked(None) => {
                    debug!("every lease keeper is dropped; the keep-alive task ends");
                    return;
                }
                Wake::Asked(Some(lease)) => {
                    self.ask(lease);
                    while let Ok(lease) = self.asked.try_recv() {
                        self.ask(lease);
                    }
                }
                Wake::Answer(Ok(Some(answer))) => self.answered(&answer),
                Wake::Answer(Ok(None)) => self.lose_stream("the member ended the stream"),
                Wake::Answer(Err(status)) => self.lose_stream(&pool::describe(&status)),
                Wake::Overdue => self.lose_stream(&format!("a keep-alive went unanswered for {ANSWER_WITHIN:?}")),
                Wake::Retry => self.retry_at = None,
            }
        }
    }

    /// Queues `lease` unless a keep-alive for it is already on its way.
    fn ask(&mut self, lease: LeaseId) {
        if !self.unanswered.contains_key(&lease) {
            self.due.insert(lease);
        }
    }

    /// Sends every due keep-alive, on the open stream or else on a new one.
    async fn send_due(&mut self) {
        if self.due.is_empty() {
            return;
        }
        if let Some(stream) = &self.stream {
            let sent = self.due.iter().all(|&lease| stream.requests.unbounded_send(keep_alive(lease)).is_ok());
            if sent {
                let now = Instant::now();
                self.unanswered.extend(std::mem::take(&mut self.due).into_iter().map(|lease| (lease, now)));
                return;
            }
            self.lose_stream("the stream's request side is closed");
        }
        self.open().await;
    }

    /// Opens a stream carrying every due keep-alive on the first member that answers one,
    /// starting after the member whose stream was lost.
    async fn open(&mut self) {
        let leases: Vec<LeaseId> = self.due.iter().copied().collect();
        let start = self.lost_at.map_or(Start::LastGood, Start::After);
        let opened = self
            .pool
            .call("keep leases alive", start, FAILOVER_DEADLINE, |channel| open_on(channel, leases.clone()))
            .await;
        match opened {
            Ok((at, (requests, answers))) => {
                info!(endpoint = self.pool.endpoint(at), leases = leases.len(), "keep-alive stream open");
                *self.endpoint.lock().unwrap_or_else(|e| e.into_inner()) = Some(self.pool.endpoint(at).to_owned());
                self.stream = Some(Stream { at, requests, answers });
                let now = Instant::now();
                for lease in leases {
                    self.due.remove(&lease);
                    self.unanswered.insert(lease, now);
                }
            }
            Err(err) => {
                warn!(error = %err, retry_in = ?REOPEN_PAUSE, "no etcd member took the keep-alive stream");
                self.retry_at = Some(Instant::now() + REOPEN_PAUSE);
            }
        }
    }

    fn answered(&mut self, answer: &LeaseKeepAliveResponse) {
        self.unanswered.remove(&answer.id);
        if answer.ttl <= 0 {
            // Expired or revoked: there is nothing left to keep alive.
            debug!(lease = answer.id, "the lease is gone; dropping it");
            self.due.remove(&answer.id);
        } else {
            trace!(lease = answer.id, ttl = answer.ttl, "lease kept alive");
        }
    }

    /// Drops the stream; what it left unanswered is due again, for the next stream.
    fn lose_stream(&mut self, why: &str) {
        if let Some(stream) = self.stream.take() {
            warn!(
                endpoint = self.pool.endpoint(stream.at),
                unanswered = self.unanswered.len(),
                error = why,
                "keep-alive stream lost; reopening on another member"
            );
            self.lost_at = Some(stream.at);
        }
        self.due.extend(self.unanswered.drain().map(|(lease, _)| lease));
        *self.endpoint.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

fn keep_alive(lease: LeaseId) -> LeaseKeepAliveRequest {
    LeaseKeepAliveRequest { id: lease }
}

/// Opens a keep-alive stream on `channel` that starts with a request for each of `leases`;
/// done when the member answers (its headers come with its first answer).
async fn open_on(
    channel: Channel,
    leases: Vec<LeaseId>,
) -> Result<(requests::UnboundedSender<LeaseKeepAliveRequest>, Streaming<LeaseKeepAliveResponse>), Status> {
    let (sender, outgoing) = requests::unbounded();
    for lease in leases {
        sender
            .unbounded_send(keep_alive(lease))
            .map_err(|_| Status::internal("the keep-alive request queue closed"))?;
    }
    let mut request = Request::new(outgoing);
    require_leader(&mut request);
    let answers = LeaseClient::new(channel).lease_keep_alive(request).await?.into_inner();
    Ok((sender, answers))
}

/// The next answer on `stream`; never, without one.
async fn next_answer(stream: Option<&mut Stream>) -> Result<Option<LeaseKeepAliveResponse>, Status> {
    match stream {
        Some(stream) => stream.answers.message().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`; forever, without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
