//! `launcher token`: print the project's join token, for a user who adds
//! nodes by hand (`HIT6_JOIN_TOKEN=... node HOST PORT`). It is read back from
//! the registry container, so the launcher keeps no secret on disk.

use anyhow::Context;

use crate::runtime::Project;

#[derive(Debug, clap::Args)]
pub struct Args {}

impl Args {
    pub async fn run(self, project: &str) -> anyhow::Result<()> {
        let project = Project::open(project).await?;
        let token = project.join_token().await.with_context(|| format!("is project `{}` up?", project.name()))?;
        let token = token.with_context(|| {
            format!("the registry of project `{}` was started without a join token", project.name())
        })?;
        wire::cli::print(&format!("{}\n", token.reveal().as_str()))?;
        Ok(())
    }
}
