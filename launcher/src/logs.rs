//! `launcher logs [-f]`: the project's logs on stdout, prefixed by container.

use tokio::sync::mpsc;

use crate::docker::{container_name, Mode, Project};
use crate::ui::{self, Ui};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep following new lines until Ctrl-C.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

impl Args {
    pub async fn run(self, project: &str) -> anyhow::Result<()> {
        let project = Project::open(project).await?;
        let names: Vec<String> = match project.mode {
            Mode::Containers => project.containers().await?.iter().filter_map(container_name).collect(),
            Mode::Swarm => project.services().await?.into_iter().filter_map(|s| s.spec?.name).collect(),
        };
        let prefix = |name: &str| name.strip_prefix(&format!("{}-", project.name)).unwrap_or(name).to_owned();
        let sources: Vec<String> = names.iter().map(|n| prefix(n)).collect();
        let ui = Ui::for_logs(&sources);
        let (lines, mut received) = mpsc::channel(1024);
        for name in &names {
            project.follow(name.clone(), prefix(name), self.follow, lines.clone());
        }
        drop(lines);
        let mut interrupt = std::pin::pin!(wire::shutdown::signals()?);
        loop {
            tokio::select! {
                line = received.recv() => {
                    let Some(line) = line else { return Ok(()) };
                    ui.line(&line.source, &ui::render(&line, ui::record(&line).as_ref()))?;
                }
                _ = &mut interrupt => return Ok(()),
            }
        }
    }
}
