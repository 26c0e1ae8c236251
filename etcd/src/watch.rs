//! [`Watch`]: the events under a key prefix from a revision on, resumed on another member
//! whenever the one it is on dies or goes silent.
//!
//! The watch remembers the revision after the last event it received. When its stream ends,
//! errs, is canceled, or goes silent, it creates the same watch on the next member from that
//! revision, so the caller sees each revision once, in order, with nothing skipped. Events
//! already received stay buffered across the move; a later stream repeating one of them is
//! harmless, since events below the resume revision are dropped.
//!
//! Silence: etcd sends nothing on a watch with no events, and a SIGSTOPped member keeps its
//! connections open, so neither a quiet stream nor a connection error tells a dead member
//! from a quiet one. After 0.5 s (`PROBE_AFTER`) without a message the watch sends a progress
//! request (etcd >= 3.4 answers it at once), and a member that does not answer it within
//! 1 s (`PROBE_ANSWER_WITHIN`) is given up. etcd's own progress notifications are no use here:
//! they come every 10 minutes by default.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use tokio::time::timeout;
use tonic::codec::Streaming;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Status};
use tracing::{info, warn};

use crate::pool::{self, Pool, Start, FAILOVER_DEADLINE};
use crate::proto::mvccpb;
use crate::proto::watch_client::WatchClient;
use crate::proto::watch_request::RequestUnion;
use crate::proto::{WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse};
use crate::{EtcdError, LeaseId, Revision};

/// How long a stream may be quiet before the watch asks the member for a progress answer.
const PROBE_AFTER: Duration = Duration::from_millis(500);

/// How long a member has to answer a progress request before the watch moves elsewhere.
const PROBE_ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was written.
    Put,
    /// The key was deleted, or its lease expired or was revoked.
    Delete,
}

/// One change to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Whether the key was written or deleted.
    pub kind: EventKind,
    /// The key.
    pub key: Vec<u8>,
    /// The value written; empty for a delete.
    pub value: Vec<u8>,
    /// The revision of the change (the key's mod revision). Events of one transaction share
    /// a revision.
    pub revision: Revision,
    /// The lease the key was tied to by this write; 0 for none, and for a delete.
    pub lease: LeaseId,
}

/// The events on keys under a prefix, from a revision on, in revision order; made by
/// [`Etcd::watch`](crate::Etcd::watch).
pub struct Watch {
    pool: Arc<Pool>,
    key: Vec<u8>,
    range_end: Vec<u8>,
    /// The first revision not yet received: where the next stream starts.
    resume: Revision,
    /// Events received and not yet returned.
    received: VecDeque<Event>,
    stream: Option<Stream>,
    /// The member whose stream was lost last, so the next stream starts after it.
    lost_at: Option<usize>,
}

/// One watch stream on one member.
struct Stream {
    at: usize,
    requests: mpsc::UnboundedSender<WatchRequest>,
    responses: Streaming<WatchResponse>,
}

impl Watch {
    pub(crate) fn new(pool: Arc<Pool>, prefix: &[u8], from: Revision) -> Watch {
        // etcd refuses an empty key; [0, [0]) is "every key", like an empty prefix.
        let key = if prefix.is_empty() { vec![0] } else { prefix.to_vec() };
        Watch {
            pool,
            key,
            range_end: prefix_end(prefix),
            resume: from,
            received: VecDeque::new(),
            stream: None,
            lost_at: None,
        }
    }

    /// The next event, waiting for one if need be.
    ///
    /// Fails with [`EtcdError::Compacted`] when the revisions still to deliver are gone from
    /// etcd's history, and with [`EtcdError::Unreachable`] when no member would take the
    /// watch for a whole failover deadline (a few seconds). The watch stays usable after an
    /// error: the next call tries again from the same revision.
    ///
    /// Cancel safe: a `next` dropped before it returns (in a `select!`, under a timeout)
    /// loses no event; the next call returns it.
    pub async fn next(&mut self) -> Result<Event, EtcdError> {
        loop {
            if let Some(event) = self.received.pop_front() {
                return Ok(event);
            }
            let Some(stream) = self.stream.as_mut() else {
                self.open().await?;
                continue;
            };
            match stream.receive().await {
                Ok(response) => self.absorb(response)?,
                Err(why) => self.lose_stream(&why),
            }
        }
    }

    /// The endpoint the watch's stream is on, if it has one now.
    pub fn endpoint(&self) -> Option<&str> {
        self.stream.as_ref().map(|stream| self.pool.endpoint(stream.at))
    }

    /// Creates the watch from `resume` on the first member that takes it, starting after the
    /// member whose stream was lost.
    async fn open(&mut self) -> Result<(), EtcdError> {
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: self.key.clone(),
                range_end: self.range_end.clone(),
                start_revision: self.resume,
                ..Default::default()
            })),
        };
        let start = self.lost_at.map_or(Start::LastGood, Start::After);
        let (at, (requests, responses, created)) =
            self.pool.call("watch keys", start, FAILOVER_DEADLINE, |channel| open_on(channel, create.clone())).await?;
        info!(endpoint = self.pool.endpoint(at), from = self.resume, "watch stream open");
        self.stream = Some(Stream { at, requests, responses });
        self.absorb(created)
    }

    /// Buffers the events of `response` that were not received before, and notes a cancel.
    fn absorb(&mut self, response: WatchResponse) -> Result<(), EtcdError> {
        if response.compact_revision > 0 {
            self.stream = None;
            return Err(EtcdError::Compacted { requested: self.resume, compact_revision: response.compact_revision });
        }
        // Events of one revision never span two responses: etcd batches whole revisions.
        let floor = self.resume;
        for event in response.events {
            let Some(kv) = event.kv else { continue };
            if kv.mod_revision < floor {
                continue;
            }
            self.resume = self.resume.max(kv.mod_revision + 1);
            let kind = if event.r#type == mvccpb::event::EventType::Delete as i32 {
                EventKind::Delete
            } else {
                EventKind::Put
            };
            self.received.push_back(Event {
                kind,
                key: kv.key,
                value: kv.value,
                revision: kv.mod_revision,
                lease: kv.lease,
            });
        }
        if response.canceled {
            self.lose_stream(&format!("the member canceled the watch: {}", response.cancel_reason));
        }
        Ok(())
    }

    fn lose_stream(&mut self, why: &str) {
        if let Some(stream) = self.stream.take() {
            warn!(
                endpoint = self.pool.endpoint(stream.at),
                from = self.resume,
                error = why,
                "watch stream lost; resuming on another member"
            );
            self.lost_at = Some(stream.at);
        }
    }
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch")
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("resume", &self.resume)
            .field("buffered", &self.received.len())
            .field("endpoint", &self.endpoint())
            .finish()
    }
}

impl Stream {
    /// The next message, or why the stream is to be given up: it ended, erred, or stayed
    /// silent through a progress request.
    async fn receive(&mut self) -> Result<WatchResponse, String> {
        let mut probed = false;
        loop {
            let wait = if probed { PROBE_ANSWER_WITHIN } else { PROBE_AFTER };
            // `message` only polls the stream, which keeps its own state: a timeout loses nothing.
            match timeout(wait, self.responses.message()).await {
                Ok(Ok(Some(response))) => return Ok(response),
                Ok(Ok(None)) => return Err("the member ended the stream".to_owned()),
                Ok(Err(status)) => return Err(pool::describe(&status)),
                Err(_) if probed => {
                    return Err(format!("no answer to a progress request within {PROBE_ANSWER_WITHIN:?}"));
                }
                Err(_) => {
                    let probe =
                        WatchRequest { request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})) };
                    if self.requests.unbounded_send(probe).is_err() {
                        return Err("the stream's request side is closed".to_owned());
                    }
                    probed = true;
                }
            }
        }
    }
}

/// The request sender, the response stream, and the first response (the one confirming the
/// watch was created) of a watch created on `channel` by `create`.
type Opened = (mpsc::UnboundedSender<WatchRequest>, Streaming<WatchResponse>, WatchResponse);

/// Opens a watch stream on `channel` and creates the watch; done once etcd confirms it.
async fn open_on(channel: Channel, create: WatchRequest) -> Result<Opened, Status> {
    let (requests, outgoing) = mpsc::unbounded();
    // Queued before the call: etcd sends its response headers only with its first message.
    requests.unbounded_send(create).map_err(|_| Status::internal("the watch's request queue closed"))?;
    let mut request = Request::new(outgoing);
    require_leader(&mut request);
    let mut responses = WatchClient::new(channel).watch(request).await?.into_inner();
    let created = responses.message().await?.ok_or_else(|| Status::unavailable("the member ended the stream"))?;
    if created.canceled && created.compact_revision == 0 {
        // Refused at creation: another member would refuse it alike.
        return Err(Status::failed_precondition(format!("the watch was refused: {}", created.cancel_reason)));
    }
    Ok((requests, responses, created))
}

/// Asks etcd to fail the stream when the member has no leader, and to end it if the member
/// loses its leader: a member cut off from the others would otherwise keep the watch open
/// and send nothing, while answering progress requests.
pub(crate) fn require_leader<T>(request: &mut Request<T>) {
    request.metadata_mut().insert("hasleader", MetadataValue::from_static("true"));
}

/// The end of the key range holding every key that starts with `prefix`: the prefix with its
/// last byte below 0xff incremented and what follows it dropped; `[0]` ("no end") when there
/// is no such byte.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_end_after_the_last_key_with_the_prefix() {
        assert_eq!(prefix_end(b"nodes/"), b"nodes0");
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b");
        assert_eq!(prefix_end(&[0xff, 0xff]), [0]);
        assert_eq!(prefix_end(b""), [0]);
    }
}
