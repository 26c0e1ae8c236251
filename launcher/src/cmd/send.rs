//! `launcher send`: multicast a message to a group of the project and print
//! the delivery report.

use std::time::Duration;

use anyhow::Context;
use node::exchange::Deadlines;
use node::group::Report;
use registry::client::RegistryAddr;
use wire::secure::{Admission, Identity, JoinToken, Keys};

use crate::runtime::Project;

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
        let report = match self.registry.clone() {
            Some(registry) => self.send_from_here(&registry, JoinToken::from_file_or_env(None)?).await?,
            None => {
                let project = Project::open(project).await?;
                let token =
                    project.join_token().await.with_context(|| format!("is project `{}` up?", project.name()))?;
                if project.reaches_nodes_from_here() {
                    self.send_from_here(&project.registry_from_here().await?, token).await?
                } else {
                    self.send_inside(&project, token).await?
                }
            }
        };
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

    /// Multicasts from this machine, as a member would.
    async fn send_from_here(&self, registry: &RegistryAddr, token: Option<JoinToken>) -> anyhow::Result<Report> {
        // The launcher is no member: a key of its own for this one send.
        let keys = Keys::new(Identity::generate(), Admission::from_token(token));
        let deadlines = Deadlines { connect: Duration::from_secs(2), reply: self.timeout };
        Ok(node::group::send(registry, &keys, self.group, &self.text, "launcher", deadlines).await?)
    }

    /// Multicasts with `node send` in a one-off container on the project
    /// network, where the nodes' advertised addresses are reachable.
    async fn send_inside(&self, project: &Project, token: Option<JoinToken>) -> anyhow::Result<Report> {
        let registries: Vec<String> = project.registries_inside().await?.iter().map(ToString::to_string).collect();
        let registry = registries.join(",");
        let timeout = humantime::format_duration(self.timeout).to_string();
        let group = self.group.to_string();
        let cmd = [
            "send",
            "--json",
            "--sender",
            "launcher",
            "--registry",
            &registry,
            "--group",
            &group,
            "--timeout",
            &timeout,
            "--",
            &self.text,
        ];
        let ran = project.run_inside(cmd.map(String::from).to_vec(), token.as_ref()).await?;
        serde_json::from_str(ran.stdout.trim()).with_context(|| {
            format!(
                "`node send` in the project network exited with code {} and printed no report: {}",
                ran.code,
                ran.stderr.trim()
            )
        })
    }
}
