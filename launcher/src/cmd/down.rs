//! `launcher down`: remove the project's services and containers, then its network.

use crate::runtime::Project;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kill the containers instead of stopping them gracefully.
    #[arg(long, short = 'f')]
    pub force: bool,
}

impl Args {
    pub async fn run(self, project: &str) -> anyhow::Result<()> {
        let mut project = Project::open(project).await?;
        let removed = project.remove(self.force).await?;
        println!(
            "removed {} services, {} containers and {} networks of project {}",
            removed.services,
            removed.containers,
            removed.networks,
            project.name()
        );
        Ok(())
    }
}
