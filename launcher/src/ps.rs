//! `launcher ps`: the project's containers, and each node's state as the
//! registry sees it: `live` (it holds an entry under the node's name),
//! `suspect` (it does, but the node has not renewed it for more than half
//! its lease: stopped, or cut off) or `gone`; `?` when the registry cannot
//! be asked.

use std::collections::BTreeMap;
use std::time::Duration;

use registry::client::Client;
use wire::secure::{Admission, Identity, Keys};

use crate::docker::{self, container_name, Project, LABEL_INDEX, LABEL_ROLE};

/// How long asking the registry may take.
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct Args {}

impl Args {
    pub async fn run(self, project: &str) -> anyhow::Result<()> {
        let listed = listed(project).await;
        let project = Project { docker: docker::connect().await?, name: project.to_owned() };
        let mut containers = project.containers().await?;
        containers.sort_by_key(container_name);
        let mut table =
            format!("{:<28} {:<9} {:<8} {:<9} {:<24} PORTS\n", "NAME", "ROLE", "STATE", "REGISTRY", "STATUS");
        for container in &containers {
            let label = |key: &str| container.labels.as_ref().and_then(|l| l.get(key)).cloned().unwrap_or_default();
            let mut ports: Vec<String> = container
                .ports
                .iter()
                .flatten()
                .filter_map(|p| p.public_port.map(|public| format!("{public}->{}", p.private_port)))
                .collect();
            // One binding for IPv4 and one for IPv6.
            ports.dedup();
            let (role, seen) = match label(LABEL_INDEX).as_str() {
                "" => (label(LABEL_ROLE), "-"),
                index => {
                    let name = format!("node-{index}");
                    let seen = match &listed {
                        Some(names) => match names.get(&name) {
                            Some(Seen::Live) => "live",
                            Some(Seen::Suspect) => "suspect",
                            None => "gone",
                        },
                        None => "?",
                    };
                    (format!("{} {index}", label(LABEL_ROLE)), seen)
                }
            };
            table += &format!(
                "{:<28} {:<9} {:<8} {:<9} {:<24} {}\n",
                container_name(container).unwrap_or_default(),
                role,
                container.state.map(|s| s.to_string()).unwrap_or_default(),
                seen,
                container.status.clone().unwrap_or_default(),
                ports.join(",")
            );
        }
        wire::cli::print(&table)?;
        Ok(())
    }
}

/// How the registry sees a node it holds an entry for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Live,
    /// Silent for more than half its lease.
    Suspect,
}

/// The names the project's registry holds entries for, and how it sees
/// each; `None`, with the reason on stderr, when it cannot be asked.
pub async fn listed(project: &str) -> Option<BTreeMap<String, Seen>> {
    let asked = async {
        let registry = crate::send::project_registry(project).await?;
        let token = crate::token::project_token(project).await?;
        let keys = Keys::new(Identity::generate(), Admission::from_token(token));
        let mut client = Client::connect_secure(&registry, &keys, REGISTRY_TIMEOUT).await?;
        let listed = client.listed().await?;
        let seen = |id: &String| if listed.silent.contains(id) { Seen::Suspect } else { Seen::Live };
        anyhow::Ok(listed.contactos.iter().map(|entry| (entry.name.clone(), seen(&entry.id))).collect())
    };
    asked.await.inspect_err(|error| eprintln!("launcher: cannot ask the registry: {error:#}")).ok()
}
