//! `launcher ps`: the project's containers (or services, and where their
//! current tasks run), and each node's state as the
//! registry sees it: `live` (it holds an entry under the node's name),
//! `suspect` (it does, but the node has not renewed it for more than half
//! its lease: stopped, or cut off) or `gone`; `?` when the registry cannot
//! be asked.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use registry::client::Client;
use wire::secure::{Admission, Identity, Keys};

use crate::docker::{container_name, Mode, Project, LABEL_INDEX, LABEL_ROLE};
use crate::swarm;

/// How long asking the registry may take.
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct Args {}

impl Args {
    pub async fn run(self, project: &str) -> anyhow::Result<()> {
        let listed = listed(project).await;
        let project = Project::open(project).await?;
        let mut rows = match project.mode {
            Mode::Containers => container_rows(&project).await?,
            Mode::Swarm => service_rows(&project).await?,
        };
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        let mut table =
            format!("{:<28} {:<9} {:<8} {:<9} {:<24} PORTS\n", "NAME", "ROLE", "STATE", "REGISTRY", "STATUS");
        for row in &rows {
            let labels = &row.labels;
            let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
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

/// A container, or a service and its current task.
struct Row {
    name: String,
    labels: HashMap<String, String>,
    state: String,
    status: String,
    /// `host->container`.
    ports: Vec<String>,
}

async fn container_rows(project: &Project) -> anyhow::Result<Vec<Row>> {
    let containers = project.containers().await?;
    Ok(containers
        .into_iter()
        .map(|container| {
            let mut ports: Vec<String> = container
                .ports
                .iter()
                .flatten()
                .filter_map(|p| p.public_port.map(|public| format!("{public}->{}", p.private_port)))
                .collect();
            // One binding for IPv4 and one for IPv6.
            ports.dedup();
            Row {
                name: container_name(&container).unwrap_or_default(),
                labels: container.labels.unwrap_or_default(),
                state: container.state.map(|s| s.to_string()).unwrap_or_default(),
                status: container.status.unwrap_or_default(),
                ports,
            }
        })
        .collect())
}

/// A service's state and status are its current task's, with the host it runs on.
async fn service_rows(project: &Project) -> anyhow::Result<Vec<Row>> {
    let tasks = project.current_tasks().await?;
    let hosts = swarm::host_names(&project.docker).await?;
    let services = project.services().await?;
    Ok(services
        .into_iter()
        .filter_map(|service| {
            let spec = service.spec?;
            let name = spec.name?;
            let ports = service.endpoint.and_then(|e| e.ports).unwrap_or_default();
            let ports = ports.iter().filter_map(|p| Some(format!("{}->{}", p.published_port?, p.target_port?)));
            let task = tasks.get(&name);
            let on = task.and_then(|t| hosts.get(&t.host)).map(|host| format!(" on {host}")).unwrap_or_default();
            Some(Row {
                labels: spec.labels.unwrap_or_default(),
                state: task.map(|t| t.state.to_string()).unwrap_or_else(|| "no task".into()),
                status: task.map(|t| format!("{}{on}", t.message)).unwrap_or_default(),
                ports: ports.collect(),
                name,
            })
        })
        .collect())
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
        let project = Project::open(project).await?;
        let registry = crate::send::project_registry(&project).await?;
        let token = project.join_token().await?;
        let keys = Keys::new(Identity::generate(), Admission::from_token(token));
        let mut client = Client::connect_secure(&registry, &keys, REGISTRY_TIMEOUT).await?;
        let listed = client.listed().await?;
        let seen = |id: &String| if listed.silent.contains(id) { Seen::Suspect } else { Seen::Live };
        anyhow::Ok(listed.contactos.iter().map(|entry| (entry.name.clone(), seen(&entry.id))).collect())
    };
    asked.await.inspect_err(|error| eprintln!("launcher: cannot ask the registry: {error:#}")).ok()
}
