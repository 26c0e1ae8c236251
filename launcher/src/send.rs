//! `launcher send`: multicast a message to a group of the project and print
//! the delivery report.

use std::time::Duration;

use anyhow::Context;
use node::exchange::Deadlines;
use registry::client::RegistryAddr;
use wire::secure::{Admission, Identity, JoinToken, Keys};

use crate::docker::{self, Project, CONTAINER_PORT, LABEL_ROLE};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The group to send to.
    #[arg(long, short = 'g', value_parser = clap::value_parser!(u32).range(1..))]
    pub group: u32,
    /// The registry to ask [default: the project's, through its published port].
    #[arg(long, value_name = "HOST:PORT")]
    pub registry: Option<RegistryAddr>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Time allowed for the report; it must exceed the nodes' ACK timeout.
    #[arg(long, default_value = "10s", value_parser = wire::cli::duration)]
    pub timeout: Duration,
    /// The message.
    pub text: String,
}

/// Some member did not acknowledge.
#[derive(Debug, thiserror::Error)]
#[error("{} of the {} members of group {} did not acknowledge", .members - .delivered, .members, .group)]
pub struct Undelivered {
    pub group: u32,
    pub members: usize,
    pub delivered: usize,
}

impl Args {
    pub async fn run(self, project: &str) -> anyhow::Result<()> {
        let (registry, token) = match self.registry.clone() {
            Some(registry) => (registry, JoinToken::from_file_or_env(None)?),
            None => (project_registry(project).await?, crate::token::project_token(project).await?),
        };
        // The launcher is no member: a key of its own for this one send.
        let keys = Keys::new(Identity::generate(), Admission::from_token(token));
        let deadlines = Deadlines { connect: Duration::from_secs(2), reply: self.timeout };
        let report = node::group::send(&registry, &keys, self.group, &self.text, "launcher", deadlines).await?;
        if self.json {
            wire::cli::print(&(serde_json::to_string(&report)? + "\n"))?;
        } else {
            wire::cli::print(&report.to_string())?;
        }
        if !report.is_complete() {
            return Err(
                Undelivered { group: report.group, members: report.members, delivered: report.delivered }.into()
            );
        }
        Ok(())
    }
}

/// The project's registry, reached through the host port it is published on.
pub async fn project_registry(project: &str) -> anyhow::Result<RegistryAddr> {
    let project = Project { docker: docker::connect().await?, name: project.to_owned() };
    let containers = project.containers().await?;
    let registry = containers
        .iter()
        .find(|c| c.labels.as_ref().and_then(|l| l.get(LABEL_ROLE)).is_some_and(|role| role == "registry"))
        .with_context(|| {
            format!("project `{}` has no registry container; is it up? (or pass --registry HOST:PORT)", project.name)
        })?;
    let port = registry
        .ports
        .iter()
        .flatten()
        .find(|p| p.private_port == CONTAINER_PORT && p.public_port.is_some())
        .and_then(|p| p.public_port)
        .context("the registry container publishes no port")?;
    Ok(RegistryAddr { host: "127.0.0.1".into(), port })
}
