//! `launcher down`: remove the project's containers, then its network.

use crate::docker::{self, Project};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kill the containers instead of stopping them gracefully.
    #[arg(long, short = 'f')]
    pub force: bool,
}

impl Args {
    pub async fn run(self, project: &str) -> anyhow::Result<()> {
        let project = Project { docker: docker::connect().await?, name: project.to_owned() };
        let removed = project.remove_all(self.force).await?;
        println!(
            "removed {} containers and {} networks of project {}",
            removed.containers, removed.networks, project.name
        );
        Ok(())
    }
}
