//! `launcher token`: print the project's join token, for a user who adds
//! nodes by hand (`HIT6_JOIN_TOKEN=... node HOST PORT`), or with `--http`
//! the status page's read token. It is read back from the registry
//! container, so the launcher keeps no secret on disk.

use anyhow::Context;

use crate::runtime::Project;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the read token of the registries' HTTP listeners instead
    /// (`up --http-port`), which the status page asks for: open
    /// `http://HOST:PORT/status#token=<it>`.
    #[arg(long)]
    pub http: bool,
}

impl Args {
    pub async fn run(self, project: &str) -> anyhow::Result<()> {
        let project = Project::open(project).await?;
        let up = || format!("is project `{}` up?", project.name());
        let (token, missing) = match self.http {
            false => (project.join_token().await.with_context(up)?, "a join token"),
            true => (project.http_token().await.with_context(up)?, "an HTTP token (up --http-port)"),
        };
        let token = token
            .with_context(|| format!("the registry of project `{}` was started without {missing}", project.name()))?;
        wire::cli::print(&format!("{}\n", token.reveal().as_str()))?;
        Ok(())
    }
}
