//! The registry's pages on its HTTP listener (`--http-listen`, served by
//! [`wire::http`]): `/metrics` ([`crate::metrics`]) and `/health`, good
//! from the moment the registry serves its port until it shuts down.

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use wire::health::{self, Health};
use wire::http::{Asked, Page, Routes};

/// What the registry serves over HTTP.
#[derive(Debug)]
pub struct Pages {
    pub metrics: Registry,
    /// Cancelled at shutdown.
    pub serving: CancellationToken,
}

impl Routes for Pages {
    fn page(&self, asked: Asked<'_>) -> Page {
        match asked.path {
            "/metrics" => wire::http::metrics_page(&self.metrics),
            health::PATH if self.serving.is_cancelled() => Health::bad("shutting down").page(),
            health::PATH => Health::good().page(),
            _ => Page::not_found(),
        }
    }
}
