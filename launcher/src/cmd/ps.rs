//! `launcher ps`: the project's containers (or services, and where their
//! current tasks run), and each node's state as the
//! registry sees it: `live` (it holds an entry under the node's name),
//! `suspect` (it does, but the node has not renewed it for more than half
//! its lease: stopped, or cut off) or `gone`; `?` when the registry cannot
//! be asked.

use crate::roster::{self, Seen};
use crate::runtime::{Member, Project};

#[derive(Debug, clap::Args)]
pub struct Args {}

impl Args {
    pub async fn run(self, project: &str) -> anyhow::Result<()> {
        let project = Project::open(project).await?;
        let listed = roster::listed(&project).await;
        let mut rows = project.rows().await?;
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        let mut table =
            format!("{:<28} {:<9} {:<8} {:<9} {:<24} PORTS\n", "NAME", "ROLE", "STATE", "REGISTRY", "STATUS");
        for row in &rows {
            let (role, seen) = match row.member {
                None => (String::new(), "-"),
                Some(Member::Registry) => (Member::Registry.role().to_owned(), "-"),
                Some(node @ Member::Node(index)) => {
                    let seen = match &listed {
                        Some(names) => match names.get(&node.to_string()) {
                            Some(Seen::Live) => "live",
                            Some(Seen::Suspect) => "suspect",
                            None => "gone",
                        },
                        None => "?",
                    };
                    (format!("{} {index}", node.role()), seen)
                }
            };
            table += &format!(
                "{:<28} {:<9} {:<8} {:<9} {:<24} {}\n",
                row.name,
                role,
                row.state,
                seen,
                row.status,
                row.ports.join(",")
            );
        }
        wire::cli::print(&table)?;
        Ok(())
    }
}
