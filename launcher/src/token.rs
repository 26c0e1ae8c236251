//! `launcher token`: print the project's join token, for a user who adds
//! nodes by hand (`HIT6_JOIN_TOKEN=... node HOST PORT`). It is read back from
//! the registry container, so the launcher keeps no secret on disk.

use anyhow::Context;

use crate::docker::Project;

#[derive(Debug, clap::Args)]
pub struct Args {}

impl Args {
    pub async fn run(self, project: &str) -> anyhow::Result<()> {
        let token = project_token(project)
            .await?
            .with_context(|| format!("the registry of project `{project}` was started without a join token"))?;
        wire::cli::print(&format!("{}\n", token.reveal().as_str()))?;
        Ok(())
    }
}

/// The join token of `project`'s registry, if it has one.
pub async fn project_token(project: &str) -> anyhow::Result<Option<wire::secure::JoinToken>> {
    let project = Project::open(project).await?;
    project.join_token().await.with_context(|| format!("is project `{}` up?", project.name))
}
