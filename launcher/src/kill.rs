//! `launcher kill NODE`: kills a node's container with SIGKILL, as a crash
//! would, and reports how long it took until the registry and every other
//! node had logged the departure: the registry's `session_lost` (or
//! `expired`, `deregistered`), each survivor's `peer_left`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use node::events::Event;
use registry::events::Event as RegistryEvent;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::docker::{self, container_name, Project, Role, LABEL_INDEX, LABEL_ROLE};
use crate::stream;
use crate::ui::{self, Logged};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The node: its number (3) or its name (node-3).
    pub node: String,
    /// How long to wait for the registry and the others to log the departure.
    #[arg(long, default_value = "30s", value_parser = wire::cli::duration)]
    pub timeout: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What followed a kill: who logged the departure, how, and how many
/// milliseconds after the kill request it was logged (by the line's own
/// timestamp, so the time Docker takes to pass the logs on is not counted).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Followed {
    pub node: String,
    pub registry: Option<Heard>,
    /// Every other running node; `None` for one that had not logged it in time.
    pub survivors: BTreeMap<String, Option<Heard>>,
    /// When the last of them all had, if all did.
    pub all_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Heard {
    /// The event, and its reason when it has one (`peer_left connection_lost`).
    pub how: String,
    pub ms: f64,
}

/// Some did not log the departure in time.
#[derive(Debug, thiserror::Error)]
#[error("{} had not logged the departure of {node} within {timeout:?}", missing.join(", "))]
pub struct Unnoticed {
    pub node: String,
    pub missing: Vec<String>,
    pub timeout: Duration,
}

impl Args {
    pub async fn run(self, project: &str) -> anyhow::Result<()> {
        let project = Project { docker: docker::connect().await?, name: project.to_owned() };
        let index = node_index(&self.node)?;
        let victim = format!("node-{index}");
        let survivors = running_nodes(&project).await?;
        if !survivors.contains(&victim) {
            anyhow::bail!("{victim} is not a running node of project `{}`: see `launcher ps`", project.name);
        }
        let (lines, mut received) = mpsc::channel(1024);
        let since = unix_now();
        let mut sources = vec![("registry".to_owned(), project.container_name(Role::Registry))];
        for name in survivors.iter().filter(|name| **name != victim) {
            let index = node_index(name)?;
            sources.push((name.clone(), project.container_name(Role::Node(index))));
        }
        for (source, container) in &sources {
            stream::follow_container_since(
                project.docker.clone(),
                container.clone(),
                source.clone(),
                since,
                lines.clone(),
            );
        }
        drop(lines);

        let killed = SystemTime::now();
        project.kill(&project.container_name(Role::Node(index))).await?;
        let mut followed = Followed {
            node: victim.clone(),
            registry: None,
            survivors: sources.iter().skip(1).map(|(name, _)| (name.clone(), None)).collect(),
            all_ms: None,
        };
        let deadline = tokio::time::Instant::now() + self.timeout;
        while followed.all_ms.is_none() {
            let Ok(Some(line)) = tokio::time::timeout_at(deadline, received.recv()).await else { break };
            let ms = |timestamp: &Option<String>| since_kill(killed, timestamp.as_deref());
            let heard = match ui::record(&line) {
                Some(Logged::Registry(record)) if record.name.as_deref() == Some(victim.as_str()) => {
                    let gone = [RegistryEvent::SessionLost, RegistryEvent::Expired, RegistryEvent::Deregistered];
                    let heard = Heard { how: record.event.to_string(), ms: ms(&record.timestamp) };
                    gone.contains(&record.event).then_some((None, heard))
                }
                Some(Logged::Node(record))
                    if record.event == Event::PeerLeft && record.peer_name.as_deref() == Some(victim.as_str()) =>
                {
                    let how = format!("{} {}", record.event, record.reason.as_deref().unwrap_or_default());
                    Some((Some(line.source.clone()), Heard { how, ms: ms(&record.timestamp) }))
                }
                _ => None,
            };
            match heard {
                Some((None, heard)) => followed.registry = followed.registry.or(Some(heard)),
                Some((Some(node), heard)) => {
                    followed.survivors.entry(node).and_modify(|slot| *slot = slot.take().or(Some(heard)));
                }
                None => {}
            }
            if let Some(registry) = &followed.registry {
                let survivors: Option<Vec<f64>> =
                    followed.survivors.values().map(|h| h.as_ref().map(|h| h.ms)).collect();
                followed.all_ms = survivors.map(|ms| ms.into_iter().fold(registry.ms, f64::max));
            }
        }
        self.print(&followed)?;
        let mut missing: Vec<String> =
            followed.survivors.iter().filter(|(_, heard)| heard.is_none()).map(|(name, _)| name.clone()).collect();
        if followed.registry.is_none() {
            missing.insert(0, "the registry".into());
        }
        if !missing.is_empty() {
            return Err(Unnoticed { node: victim, missing, timeout: self.timeout }.into());
        }
        Ok(())
    }

    fn print(&self, followed: &Followed) -> anyhow::Result<()> {
        if self.json {
            return Ok(wire::cli::print(&(serde_json::to_string(followed)? + "\n"))?);
        }
        let mut text = format!("killed {} (SIGKILL)\n", followed.node);
        let row = |who: &str, heard: &Option<Heard>| match heard {
            Some(heard) => format!("  {who:<12} {:<28} {:>9.1} ms\n", heard.how, heard.ms),
            None => format!("  {who:<12} {:<28} {:>12}\n", "(nothing)", "-"),
        };
        text += &row("registry", &followed.registry);
        for (name, heard) in &followed.survivors {
            text += &row(name, heard);
        }
        if let Some(ms) = followed.all_ms {
            text += &format!("the registry and every other node had logged it {ms:.1} ms after the kill\n");
        }
        Ok(wire::cli::print(&text)?)
    }
}

/// `3` or `node-3`.
fn node_index(node: &str) -> anyhow::Result<usize> {
    let number = node.strip_prefix("node-").unwrap_or(node);
    match number.parse::<usize>() {
        Ok(index) if index > 0 => Ok(index),
        _ => anyhow::bail!("`{node}` is no node: give its number (3) or its name (node-3)"),
    }
}

/// Names of the project's running nodes (`node-3`).
async fn running_nodes(project: &Project) -> anyhow::Result<Vec<String>> {
    let containers = project.containers().await?;
    let label = |c: &bollard::models::ContainerSummary, key: &str| c.labels.as_ref().and_then(|l| l.get(key)).cloned();
    Ok(containers
        .iter()
        .filter(|c| label(c, LABEL_ROLE).as_deref() == Some("node"))
        .filter(|c| c.state.map(|s| s.to_string()).as_deref() == Some("running"))
        .filter_map(|c| label(c, LABEL_INDEX).map(|index| format!("node-{index}")).or_else(|| container_name(c)))
        .collect())
}

/// Milliseconds from the kill to when a line was logged, by its timestamp
/// (the logger's clock, the same host's), or to now without one.
fn since_kill(killed: SystemTime, timestamp: Option<&str>) -> f64 {
    let logged = timestamp.and_then(|t| humantime::parse_rfc3339_weak(t).ok()).unwrap_or_else(SystemTime::now);
    logged.duration_since(killed).unwrap_or_default().as_secs_f64() * 1e3
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_named_by_its_number_or_its_name() {
        assert_eq!(node_index("3").unwrap(), 3);
        assert_eq!(node_index("node-12").unwrap(), 12);
        for bad in ["0", "node-", "registry", "-1", "node-x"] {
            assert!(node_index(bad).unwrap_err().to_string().contains("give its number"), "{bad}");
        }
    }
}
