//! The registry's pages on its HTTP listener (`--http-listen`, served by
//! [`wire::http`]): `/metrics` ([`crate::metrics`]), `/health` (good from
//! the moment the registry serves its port until it shuts down), and the
//! status page ([`crate::status`]).
//!
//! The status page's events show the membership: with a join token, they
//! are served only to bearers of the listener's own read token
//! (`--http-token-file`), and not at all without one. At most
//! [`MAX_STREAMS`] are open at once, so that they cannot take every
//! connection of the listener.

use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use wire::health::{self, Health};
use wire::http::{Asked, Body, Page, ReadToken, Routes, StatusCode};

use crate::status;
use crate::store::Store;

/// Status pages following the membership at once.
pub const MAX_STREAMS: usize = 16;

/// Who may read the membership over HTTP.
#[derive(Debug)]
pub enum Access {
    /// Anyone: without a join token, anyone who reaches the registry may list it anyway.
    Open,
    /// No one: a join token keeps the membership from strangers, and the
    /// listener has no token of its own.
    Closed,
    /// Bearers of the listener's own token.
    Bearer(Arc<ReadToken>),
}

impl Access {
    /// Bearers of `token` when there is one (the operator asked for it);
    /// else anyone, unless a join token keeps the membership from strangers.
    pub fn of(config: &crate::config::Config) -> Access {
        match &config.http_token {
            Some(token) => Access::Bearer(token.clone()),
            None if config.admission.requires_token() => Access::Closed,
            None => Access::Open,
        }
    }
}

/// What the registry serves over HTTP.
#[derive(Debug)]
pub struct Pages {
    pub metrics: Registry,
    pub store: Arc<Store>,
    pub groups: u32,
    pub access: Access,
    /// Cancelled at shutdown.
    pub serving: CancellationToken,
    streams: Arc<Semaphore>,
}

impl Pages {
    pub fn new(metrics: Registry, store: Arc<Store>, groups: u32, access: Access, serving: CancellationToken) -> Pages {
        let streams = Arc::new(Semaphore::new(MAX_STREAMS));
        Pages { metrics, store, groups, access, serving, streams }
    }

    fn events(&self, asked: Asked<'_>) -> Page {
        let refusal = match &self.access {
            Access::Open => None,
            Access::Bearer(token) if token.admits(asked.bearer) => None,
            Access::Bearer(_) => Some((
                StatusCode::UNAUTHORIZED,
                "the status page needs the listener's token: open /status#token=<its token>\n",
            )),
            Access::Closed => Some((
                StatusCode::FORBIDDEN,
                "this registry's join token keeps its membership from strangers, and its HTTP listener has no token \
                 of its own: give it --http-token-file to show the status page to holders of that token\n",
            )),
        };
        if let Some((status, why)) = refusal {
            return Page::text(status, why);
        }
        let Ok(permit) = self.streams.clone().try_acquire_owned() else {
            return Page::text(StatusCode::SERVICE_UNAVAILABLE, "too many status pages are open: try again later\n");
        };
        let introduced = Arc::new(|| crate::metrics::METRICS.get().map_or(0, |metrics| metrics.introduced()));
        let events = status::events(self.store.clone(), self.groups, introduced, self.serving.clone());
        // The permit goes with the stream.
        let events = futures::StreamExt::map(events, move |event| {
            let _held = &permit;
            event
        });
        Page { status: StatusCode::OK, content_type: "text/event-stream", body: Body::Stream(Box::pin(events)) }
    }
}

impl Routes for Pages {
    fn page(&self, asked: Asked<'_>) -> Page {
        match asked.path {
            "/metrics" => wire::http::metrics_page(&self.metrics),
            health::PATH if self.serving.is_cancelled() => Health::bad("shutting down").page(),
            health::PATH => Health::good().page(),
            "/status" => Page::new(StatusCode::OK, "text/html; charset=utf-8", status::PAGE),
            "/status/events" => self.events(asked),
            _ => Page::not_found(),
        }
    }
}
