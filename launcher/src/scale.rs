//! `launcher scale --nodes M`: grow or shrink a swarm project to M nodes,
//! and follow the mesh until the new membership is complete.
//!
//! New nodes are made like the project's existing ones (same image,
//! registry, token, publishing) and greet every earlier one; removed nodes
//! (the highest numbers) stop gracefully and deregister. The verdict is the
//! new membership's: every node registered, every pair of them greeted, and
//! the registry logged each removed node's departure.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::docker::{Mode, Project, Role};
use crate::mesh::Mesh;
use crate::ports::PortRange;
use crate::stream::Line;
use crate::swarm::{self, Placement};
use crate::ui::{self, Logged, Ui};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many nodes the project should have.
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub nodes: u32,
    #[command(flatten)]
    pub following: crate::up::Following,
}

#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    #[error("project `{project}` runs no node services: scale works on a project started with `up --runtime swarm`")]
    NotSwarm { project: String },
    #[error("the new membership is not complete after {timeout:?}: {}", what.join("; "))]
    Incomplete { timeout: Duration, what: Vec<String> },
}

impl Args {
    pub async fn run(self, project: &str) -> anyhow::Result<()> {
        let invoked = Instant::now();
        let requested = SystemTime::now();
        let project = Project::open(project).await?;
        let services = project.node_services().await?;
        let Some((_, template)) = services.iter().next().filter(|_| project.mode == Mode::Swarm) else {
            return Err(ScaleError::NotSwarm { project: project.name.clone() }.into());
        };
        let wanted = self.nodes as usize;
        let kept: Vec<usize> = services.keys().copied().filter(|&i| i <= wanted).collect();
        let removed: Vec<usize> = services.keys().copied().filter(|&i| i > wanted).collect();
        let added: Vec<usize> = (1..=wanted).filter(|i| !services.contains_key(i)).collect();

        let placements = self.placements(&project, &services, template, added.len()).await?;
        for (made, (index, placement)) in added.iter().zip(placements).enumerate() {
            if let Err(error) = project.create_node_like(template, *index, placement.as_ref()).await {
                // Leave the project as it was.
                for index in &added[..made] {
                    let _ = project.remove_service(&project.container_name(Role::Node(*index))).await;
                }
                return Err(error.into());
            }
        }
        for index in &removed {
            project.remove_service(&project.container_name(Role::Node(*index))).await?;
        }

        let names: Vec<String> = kept.iter().chain(&added).map(|i| format!("node-{i}")).collect();
        let mut sources = names.clone();
        sources.push("registry".into());
        let ui = Ui::new(self.following.quiet, &sources);
        ui.note(&format!(
            "project {}: {} nodes kept, {} added, {} removed",
            project.name,
            kept.len(),
            added.len(),
            removed.len()
        ));
        let (lines, mut received) = mpsc::channel(4096);
        project.follow(project.container_name(Role::Registry), "registry".into(), true, lines.clone());
        for index in kept.iter().chain(&added) {
            project.follow(project.container_name(Role::Node(*index)), format!("node-{index}"), true, lines.clone());
        }
        drop(lines);

        let mut mesh = Mesh::new(names.into_iter().map(|name| (name, None)));
        let mut leaving: BTreeSet<String> = removed.iter().map(|i| format!("node-{i}")).collect();
        let deadline = tokio::time::sleep(self.following.timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                line = received.recv() => {
                    let Some(line) = line else { anyhow::bail!(crate::up::UpError::LogsEnded) };
                    self.take(&ui, &mut mesh, &mut leaving, &line, requested);
                    if leaving.is_empty() && mesh.all_met() {
                        ui.finish();
                        return Ok(ui::print_summary(&mesh, invoked.elapsed(), self.following.json)?);
                    }
                }
                () = &mut deadline => {
                    ui.finish();
                    crate::up::note_stuck_tasks(&ui, &project).await;
                    return Err(self.incomplete(&mesh, &leaving).into());
                }
            }
        }
    }

    /// Where new nodes go: nowhere in particular, unless the project's nodes
    /// are published (the template publishes a port), when each is pinned to
    /// a host like `up --publish` does.
    async fn placements(
        &self,
        project: &Project,
        services: &BTreeMap<usize, bollard::models::ServiceSpec>,
        template: &bollard::models::ServiceSpec,
        count: usize,
    ) -> anyhow::Result<Vec<Option<Placement>>> {
        let published = template.endpoint_spec.as_ref().and_then(|e| e.ports.as_ref()).is_some_and(|p| !p.is_empty());
        if !published {
            return Ok(vec![None; count]);
        }
        let range: PortRange = template
            .labels
            .as_ref()
            .and_then(|labels| labels.get(swarm::LABEL_PORT_RANGE))
            .context("the project's nodes are published but carry no port range")?
            .parse()
            .map_err(anyhow::Error::msg)?;
        let mut ours: HashMap<String, usize> = HashMap::new();
        for host in services.values().filter_map(swarm::pinned_host) {
            *ours.entry(host.to_owned()).or_default() += 1;
        }
        let placed = swarm::placements(project, range, &ours, count).await?;
        Ok(placed.into_iter().map(Some).collect())
    }

    /// Updates the mesh and the departures still awaited with a line, and shows it.
    fn take(&self, ui: &Ui, mesh: &mut Mesh, leaving: &mut BTreeSet<String>, line: &Line, requested: SystemTime) {
        let record = ui::record(line);
        match &record {
            Some(Logged::Node(record)) => {
                mesh.apply(&line.source, record);
                ui.progress(mesh);
            }
            Some(Logged::Registry(record))
                if record.event.membership() == Some(registry::events::Membership::Left)
                    && crate::disrupt::ms_after(requested, record.timestamp.as_deref()).is_some() =>
            {
                if let Some(name) = &record.name {
                    leaving.remove(name);
                }
            }
            _ => {}
        }
        if ui.shows_lines() {
            // Lines go to stderr here, which cannot fail.
            let _ = ui.line(&line.source, &ui::render(line, record.as_ref()));
        }
    }

    fn incomplete(&self, mesh: &Mesh, leaving: &BTreeSet<String>) -> ScaleError {
        let mut what = Vec::new();
        let unregistered: Vec<&String> =
            mesh.nodes().iter().filter(|(_, n)| !n.registered).map(|(name, _)| name).collect();
        if !unregistered.is_empty() {
            what.push(format!("not registered: {}", join(unregistered)));
        }
        let missing = mesh.missing_pairs();
        if !missing.is_empty() {
            what.push(format!("{} pairs have not greeted: {}", missing.len(), crate::up::pairs(&missing)));
        }
        if !leaving.is_empty() {
            what.push(format!("the registry has not logged the departure of {}", join(leaving)));
        }
        ScaleError::Incomplete { timeout: self.following.timeout, what }
    }
}

fn join<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    names.into_iter().map(String::as_str).collect::<Vec<_>>().join(", ")
}
