//! `launcher logs [-f]`: the project's logs on stdout, prefixed by member.

use tokio::sync::mpsc;

use crate::runtime::{Member, Project};
use crate::stream::Reading;
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
        let members: Vec<Member> = project.rows().await?.into_iter().filter_map(|row| row.member).collect();
        let sources: Vec<String> = members.iter().map(Member::to_string).collect();
        let ui = Ui::for_logs(&sources);
        let (lines, mut received) = mpsc::channel(1024);
        for member in members {
            project.follow(member, Reading::All { follow: self.follow }, lines.clone())?;
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
