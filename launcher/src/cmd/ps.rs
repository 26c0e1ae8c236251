//! `launcher ps`: the project's containers (or services, and where their
//! current tasks run), each with its role, and each node's state as the
//! registry sees it: `live` (it holds an entry under the node's name),
//! `suspect` (it does, but the node has not renewed it for more than half
//! its lease: stopped, or cut off) or `gone`; `?` when the registry cannot
//! be asked. Of several registries, each is a `replica`; an etcd member is
//! the `leader` or a `follower`, as the members' own logs say
//! ([`crate::follow::election`]). HEALTH is what the engine's runs of the
//! image's HEALTHCHECK say (`registry health`, `node health`).

use serde::Serialize;

use crate::follow::{self, election};
use crate::roster::{self, Seen};
use crate::runtime::{Health, Member, Project, Row};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the rows as JSON, one array.
    #[arg(long)]
    pub json: bool,
}

/// One row of `ps`.
#[derive(Debug, Clone, Serialize)]
struct Shown {
    name: String,
    /// `node-3`, `registry-2`, `etcd-1`; none for a one-off client.
    member: Option<String>,
    role: String,
    state: String,
    /// How the registry sees a node.
    registry: String,
    /// What the image's health check says; none without one.
    health: Option<Health>,
    status: String,
    ports: Vec<String>,
}

impl Args {
    pub async fn run(self, project: &str) -> anyhow::Result<()> {
        let project = Project::open(project).await?;
        let listed = roster::listed(&project).await;
        let mut rows = project.rows().await?;
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        let leader = leader(&project, &rows).await;
        let shown: Vec<Shown> = rows
            .into_iter()
            .map(|row| {
                let (role, seen) = match row.member {
                    None => (String::new(), "-"),
                    Some(Member::Registry(None)) => ("registry".to_owned(), "-"),
                    Some(Member::Registry(Some(_))) => ("replica".to_owned(), "-"),
                    Some(etcd @ Member::Etcd(_)) => {
                        let role = match row.state.as_str() {
                            "running" if leader.as_deref() == Some(&etcd.to_string()) => "leader",
                            "running" => "follower",
                            _ => "-",
                        };
                        (role.to_owned(), "-")
                    }
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
                Shown {
                    name: row.name,
                    member: row.member.map(|m| m.to_string()),
                    role,
                    state: row.state,
                    registry: seen.to_owned(),
                    health: row.health,
                    status: row.status,
                    ports: row.ports,
                }
            })
            .collect();
        if self.json {
            wire::cli::print(&(serde_json::to_string(&shown)? + "\n"))?;
            return Ok(());
        }
        let mut table = format!(
            "{:<28} {:<9} {:<8} {:<9} {:<10} {:<24} PORTS\n",
            "NAME", "ROLE", "STATE", "REGISTRY", "HEALTH", "STATUS"
        );
        for row in &shown {
            table += &format!(
                "{:<28} {:<9} {:<8} {:<9} {:<10} {:<24} {}\n",
                row.name,
                row.role,
                row.state,
                row.registry,
                row.health.map_or("-", Health::as_str),
                row.status,
                row.ports.join(",")
            );
        }
        wire::cli::print(&table)?;
        Ok(())
    }
}

/// The etcd member that leads, by the running members' logs; `None`
/// without etcd, or when they cannot be read (said on stderr).
async fn leader(project: &Project, rows: &[Row]) -> Option<String> {
    let running = rows.iter().filter(|row| row.state == "running");
    let members: Vec<Member> = running.filter_map(|row| row.member.filter(|m| matches!(m, Member::Etcd(_)))).collect();
    if members.is_empty() {
        return None;
    }
    match follow::history(project, members).await {
        Ok(lines) => election::leader(&lines).map(|(member, _)| member),
        Err(error) => {
            eprintln!("launcher: cannot read the etcd members' logs: {error:#}");
            None
        }
    }
}
