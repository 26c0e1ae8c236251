//! The node's pages on its HTTP listener (`--http-listen`, served by
//! [`wire::http`]): `/metrics` ([`crate::metrics`]) and `/health`
//! ([`crate::health`]).

use std::sync::Arc;

use prometheus_client::registry::Registry;
use wire::health;
use wire::http::{Asked, Page, Routes};

use crate::health::Vitals;

#[derive(Debug)]
pub struct Pages {
    pub metrics: Registry,
    pub vitals: Arc<Vitals>,
}

impl Routes for Pages {
    fn page(&self, asked: Asked<'_>) -> Page {
        match asked.path {
            "/metrics" => wire::http::metrics_page(&self.metrics),
            health::PATH => self.vitals.health().page(),
            _ => Page::not_found(),
        }
    }
}
