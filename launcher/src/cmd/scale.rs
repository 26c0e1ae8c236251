//! `launcher scale --nodes M`: grow or shrink a swarm project to M nodes,
//! and follow the mesh until the new membership is complete.
//!
//! New nodes are made like the project's existing ones (same image,
//! registry, token, publishing) and greet every earlier one; removed nodes
//! (the highest numbers) stop gracefully and deregister. The verdict is the
//! new membership's: every node registered, every pair of them greeted, and
//! the registry logged each removed node's departure.

use std::time::SystemTime;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::follow::{self, Ending, FollowError, Follower, Following, Scaling};
use crate::mesh::Mesh;
use crate::runtime::{Member, Project};
use crate::stream::Reading;
use crate::ui::{self, Ui};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many nodes the project should have.
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub nodes: u32,
    #[command(flatten)]
    pub following: Following,
}

impl Args {
    pub async fn run(self, project: &str) -> anyhow::Result<()> {
        let invoked = Instant::now();
        let requested = SystemTime::now();
        let project = Project::open(project).await?;
        let scaled = project.scale(self.nodes as usize).await?;

        let members: Vec<Member> = scaled.kept.iter().chain(&scaled.added).map(|&i| Member::Node(i)).collect();
        let names: Vec<String> = members.iter().map(Member::to_string).collect();
        let mut sources = names.clone();
        sources.push(Member::REGISTRY.to_string());
        let ui = Ui::new(self.following.quiet, &sources);
        ui.note(&format!(
            "project {}: {} nodes kept, {} added, {} removed",
            project.name(),
            scaled.kept.len(),
            scaled.added.len(),
            scaled.removed.len()
        ));
        let (lines, received) = mpsc::channel(4096);
        for member in std::iter::once(Member::REGISTRY).chain(members) {
            project.follow(member, Reading::All { follow: true }, lines.clone())?;
        }
        drop(lines);

        let leaving = scaled.removed.iter().map(|&i| Member::Node(i).to_string()).collect();
        let mesh = Mesh::new(names.into_iter().map(|name| (name, None)));
        let mut scaling = Scaling::new(mesh, leaving, requested, &ui);
        let deadline = Instant::now() + self.following.timeout;
        let mut never = std::future::pending::<()>();
        let ending = Follower::new(received, Some(&ui)).until(&mut scaling, Some(deadline), &mut never).await;
        ui.finish();
        match ending {
            Ending::Reached => Ok(ui::print_summary(&scaling.mesh, invoked.elapsed(), self.following.json)?),
            Ending::LogsEnded => Err(FollowError::LogsEnded.into()),
            Ending::TimedOut | Ending::Interrupted => {
                follow::note_stuck(&ui, &project).await;
                Err(scaling.incomplete(self.following.timeout).into())
            }
        }
    }
}
