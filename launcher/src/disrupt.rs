//! `launcher kill|pause|unpause|restart NODE`: break a node on purpose, as a
//! crash, a partition or an upgrade would, and report what followed and how
//! long it took, from the logs of the registry and of every other running
//! node:
//! - a departure: the registry's `session_lost`, `expired` or
//!   `deregistered`, and each survivor's `peer_left`;
//! - a return: the registry's `registered`, and each survivor's
//!   `peers_joined` naming the node.
//!
//! | verb | Docker | awaits |
//! |---|---|---|
//! | `kill` | SIGKILL | the departure (`session_lost`: its kernel closed its session) |
//! | `pause` | the cgroup freezer, like SIGSTOP | the departure (`expired`, once its lease ends) |
//! | `unpause` | thaws it | its return, if its lease had ended; nothing, if not |
//! | `restart` | SIGTERM, then a new run | the departure (`deregistered`), then the return |

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use node::events::{Event, Record};
use registry::events::{Membership, Record as RegistryRecord};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::docker::{self, container_name, Mode, Project, Role, LABEL_INDEX, LABEL_ROLE};
use crate::stream::Line;
use crate::ui::{self, Logged};

/// What is done to the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    Kill,
    Pause,
    Unpause,
    Restart,
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verb::Kill => "kill",
            Verb::Pause => "pause",
            Verb::Unpause => "unpause",
            Verb::Restart => "restart",
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The node: its number (3) or its name (node-3).
    pub node: String,
    /// How long to wait for the registry and the others to log what follows;
    /// for `pause`, longer than the registry's lease (`up --lease`).
    #[arg(long, default_value = "30s", value_parser = wire::cli::duration)]
    pub timeout: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What followed: who logged the node's departure and return, how, and how
/// many milliseconds after the request (by each line's own timestamp, so the
/// time Docker takes to pass the logs on is not counted).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Followed {
    pub node: String,
    pub verb: Verb,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub departure: Option<Heard>,
    #[serde(rename = "return", skip_serializing_if = "Option::is_none")]
    pub back: Option<Heard>,
    /// `unpause` of a node the registry still listed: nobody had noticed it
    /// was silent, so nothing follows.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub live_throughout: bool,
}

/// Who logged one change (a departure or a return), and when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Heard {
    pub registry: Option<Logging>,
    /// Every other running node; `None` for one that had not logged it in time.
    pub survivors: BTreeMap<String, Option<Logging>>,
    /// When the last of them all had, if all did.
    pub all_ms: Option<f64>,
}

/// One line that logged the change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Logging {
    /// The event, and its reason when it has one (`peer_left connection_lost`).
    pub how: String,
    pub ms: f64,
}

/// Some did not log what followed in time.
#[derive(Debug, thiserror::Error)]
#[error("{} had not logged the {change} of {node} within {timeout:?}", missing.join(", "))]
pub struct Unnoticed {
    pub node: String,
    pub change: Change,
    pub missing: Vec<String>,
    pub timeout: Duration,
}

/// A change to the membership that a verb leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Departure,
    Return,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Change::Departure => "departure",
            Change::Return => "return",
        })
    }
}

impl Change {
    /// How `record` logs this change of `node`, if it does.
    fn logged_in(self, record: &Logged, node: &str) -> Option<String> {
        match record {
            Logged::Registry(record) => self.by_registry(record, node),
            Logged::Node(record) => self.by_node(record, node),
        }
    }

    /// How the registry logs it for `node`, if `record` is that.
    fn by_registry(self, record: &RegistryRecord, node: &str) -> Option<String> {
        let wanted = match self {
            Change::Departure => Membership::Left,
            Change::Return => Membership::Joined,
        };
        let logs_it = record.name.as_deref() == Some(node) && record.event.membership() == Some(wanted);
        logs_it.then(|| record.event.to_string())
    }

    /// How a survivor logs it for `node`, if `record` is that.
    fn by_node(self, record: &Record, node: &str) -> Option<String> {
        let event = match self {
            Change::Departure => Event::PeerLeft,
            Change::Return => Event::PeersJoined,
        };
        if record.event != event || !record.peers().any(|peer| peer == node) {
            return None;
        }
        Some(match &record.reason {
            Some(reason) => format!("{event} {reason}"),
            None => event.to_string(),
        })
    }
}

impl Verb {
    /// The container state the node must be in for the verb to apply.
    fn requires(self) -> &'static str {
        match self {
            Verb::Unpause => "paused",
            Verb::Kill | Verb::Pause | Verb::Restart => "running",
        }
    }

    /// What the verb leads to, in order.
    fn changes(self) -> &'static [Change] {
        match self {
            Verb::Kill | Verb::Pause => &[Change::Departure],
            Verb::Unpause => &[Change::Return],
            Verb::Restart => &[Change::Departure, Change::Return],
        }
    }

    fn done(self) -> &'static str {
        match self {
            Verb::Kill => "killed (SIGKILL)",
            Verb::Pause => "paused (frozen, as SIGSTOP)",
            Verb::Unpause => "unpaused",
            Verb::Restart => "restarted (SIGTERM, then a new run)",
        }
    }

    /// Does it to node `index`, whose container (a task's, in a swarm) is `container`.
    async fn apply(self, project: &Project, index: usize, container: &str) -> Result<(), docker::DockerError> {
        match (self, project.mode) {
            (Verb::Kill, _) => project.kill(container).await,
            (Verb::Pause, _) => project.pause(container).await,
            (Verb::Unpause, _) => project.unpause(container).await,
            (Verb::Restart, Mode::Containers) => project.restart(container).await,
            // A task's container restarted under the swarm would race the task the swarm starts for it.
            (Verb::Restart, Mode::Swarm) => project.redeploy(&project.container_name(Role::Node(index))).await,
        }
    }
}

impl Args {
    pub async fn run(self, project: &str, verb: Verb) -> anyhow::Result<()> {
        let project = Project::open(project).await?;
        let index = node_index(&self.node)?;
        let victim = format!("node-{index}");
        let targets = Targets::find(&project, &victim).await?;
        if targets.state.as_deref() != Some(verb.requires()) {
            anyhow::bail!(
                "{victim} is not a {} node of project `{}`{}: see `launcher ps`",
                verb.requires(),
                project.name,
                if project.mode == Mode::Swarm { " on this engine's host" } else { "" }
            );
        }
        let mut changes = verb.changes();
        let live_throughout = verb == Verb::Unpause
            && crate::ps::listed(&project.name).await.is_some_and(|names| names.contains_key(&victim));
        if live_throughout {
            changes = &[];
        }
        let survivors = targets.survivors;
        let (lines, received) = mpsc::channel(1024);
        let since = unix_now();
        let mut sources = vec![("registry".to_owned(), project.container_name(Role::Registry))];
        for name in &survivors {
            sources.push((name.clone(), project.container_name(Role::Node(node_index(name)?))));
        }
        if !changes.is_empty() {
            for (source, member) in sources {
                project.follow_since(member, source, since, lines.clone());
            }
        }
        drop(lines);

        let started = SystemTime::now();
        verb.apply(&project, index, &targets.container).await?;
        let mut watching = Watching::new(&victim, changes, &survivors, started);
        watching.follow(received, self.timeout).await;
        let followed = Followed {
            node: victim.clone(),
            verb,
            departure: watching.heard(Change::Departure),
            back: watching.heard(Change::Return),
            live_throughout,
        };
        self.print(&followed)?;
        match watching.first_unnoticed() {
            Some((change, missing)) => Err(Unnoticed { node: victim, change, missing, timeout: self.timeout }.into()),
            None => Ok(()),
        }
    }

    fn print(&self, followed: &Followed) -> anyhow::Result<()> {
        if self.json {
            return Ok(wire::cli::print(&(serde_json::to_string(followed)? + "\n"))?);
        }
        let mut text = format!("{} {}\n", followed.verb.done(), followed.node);
        if followed.live_throughout {
            text += "  its lease had not ended: the registry still listed it, so nobody had noticed\n";
        }
        let row = |who: &str, logging: &Option<Logging>| match logging {
            Some(logging) => format!("  {who:<12} {:<28} {:>9.1} ms\n", logging.how, logging.ms),
            None => format!("  {who:<12} {:<28} {:>12}\n", "(nothing)", "-"),
        };
        for (change, heard) in [(Change::Departure, &followed.departure), (Change::Return, &followed.back)] {
            let Some(heard) = heard else { continue };
            text += &format!(" its {change}:\n");
            text += &row("registry", &heard.registry);
            for (name, logging) in &heard.survivors {
                text += &row(name, logging);
            }
            if let Some(ms) = heard.all_ms {
                text += &format!(
                    "  the registry and every other node had logged its {change} {ms:.1} ms after the request\n"
                );
            }
        }
        Ok(wire::cli::print(&text)?)
    }
}

/// The changes awaited, and who has logged each so far.
struct Watching<'a> {
    node: &'a str,
    started: SystemTime,
    heard: Vec<(Change, Heard)>,
}

impl<'a> Watching<'a> {
    fn new(node: &'a str, changes: &[Change], survivors: &[String], started: SystemTime) -> Watching<'a> {
        let heard = changes
            .iter()
            .map(|change| {
                let survivors = survivors.iter().map(|name| (name.clone(), None)).collect();
                (*change, Heard { registry: None, survivors, all_ms: None })
            })
            .collect();
        Watching { node, started, heard }
    }

    /// Reads lines until every change has been logged by all, or `timeout`.
    async fn follow(&mut self, mut received: mpsc::Receiver<Line>, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.heard.iter().any(|(_, heard)| heard.all_ms.is_none()) {
            let Ok(Some(line)) = tokio::time::timeout_at(deadline, received.recv()).await else { break };
            self.take(&line);
        }
    }

    /// Records what `line` says, if it logs the change awaited next from
    /// its source: a source's return counts only after its departure (a
    /// survivor's `peers_joined` of the node's first run is not its return),
    /// and lines logged before the request are old news (logs are followed
    /// from the second before it).
    fn take(&mut self, line: &Line) {
        let Some(record) = ui::record(line) else { return };
        let (source, timestamp) = match &record {
            Logged::Registry(record) => (None, &record.timestamp),
            Logged::Node(record) => (Some(line.source.as_str()), &record.timestamp),
        };
        let Some(ms) = ms_after(self.started, timestamp.as_deref()) else { return };
        for (change, heard) in &mut self.heard {
            let slot = match source {
                None => &mut heard.registry,
                Some(source) => match heard.survivors.get_mut(source) {
                    Some(slot) => slot,
                    None => return,
                },
            };
            if slot.is_some() {
                continue;
            }
            if let Some(how) = change.logged_in(&record, self.node) {
                *slot = Some(Logging { how, ms });
                heard.all_ms = heard.last_ms();
            }
            return;
        }
    }

    fn heard(&self, change: Change) -> Option<Heard> {
        self.heard.iter().find(|(c, _)| *c == change).map(|(_, heard)| heard.clone())
    }

    /// The first change someone did not log, and who.
    fn first_unnoticed(&self) -> Option<(Change, Vec<String>)> {
        self.heard.iter().find(|(_, heard)| heard.all_ms.is_none()).map(|(change, heard)| {
            let mut missing: Vec<String> =
                heard.survivors.iter().filter(|(_, l)| l.is_none()).map(|(name, _)| name.clone()).collect();
            if heard.registry.is_none() {
                missing.insert(0, "the registry".into());
            }
            (*change, missing)
        })
    }
}

impl Heard {
    /// When the last one logged it, once everyone has.
    fn last_ms(&self) -> Option<f64> {
        let registry = self.registry.as_ref()?.ms;
        let survivors: Option<Vec<f64>> = self.survivors.values().map(|l| l.as_ref().map(|l| l.ms)).collect();
        survivors.map(|ms| ms.into_iter().fold(registry, f64::max))
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

/// The project's nodes (`node-3`) and their containers' states (`running`, `paused`).
/// The node a verb acts on, and the nodes that survive it.
struct Targets {
    /// The node's container: in a swarm, its task's on this engine's host.
    container: String,
    /// Its state (`running`, `paused`), if it has such a container.
    state: Option<String>,
    /// The other running nodes, by name: in a swarm, every other node service, on any host.
    survivors: Vec<String>,
}

impl Targets {
    async fn find(project: &Project, victim: &str) -> anyhow::Result<Targets> {
        let here = node_containers(project).await?;
        let (container, state) = match here.get(victim) {
            Some((container, state)) => (container.clone(), Some(state.clone())),
            None => (String::new(), None),
        };
        let survivors = match project.mode {
            Mode::Containers => {
                let running = here.into_iter().filter(|(_, (_, state))| state == "running");
                running.map(|(name, _)| name).filter(|name| name != victim).collect()
            }
            // Every other node service: the manager may hear of a task running after its node has greeted.
            Mode::Swarm => {
                let nodes = project.node_services().await?.into_keys().map(|index| format!("node-{index}"));
                nodes.filter(|name| name != victim).collect()
            }
        };
        Ok(Targets { container, state, survivors })
    }
}

/// The project's node containers on this engine, by node name: their
/// container's name and state. A swarm task's container counts, a live one
/// before those of the node's earlier tasks.
async fn node_containers(project: &Project) -> anyhow::Result<BTreeMap<String, (String, String)>> {
    let containers = project.containers().await?;
    let label = |c: &bollard::models::ContainerSummary, key: &str| c.labels.as_ref().and_then(|l| l.get(key)).cloned();
    let mut found: BTreeMap<String, (String, String)> = BTreeMap::new();
    for container in containers.iter().filter(|c| label(c, LABEL_ROLE).as_deref() == Some("node")) {
        let (Some(index), Some(name)) = (label(container, LABEL_INDEX), container_name(container)) else { continue };
        let state = container.state.map(|s| s.to_string()).unwrap_or_default();
        let live = |state: &str| matches!(state, "running" | "paused");
        let node = format!("node-{index}");
        if !found.get(&node).is_some_and(|(_, known)| live(known)) {
            found.insert(node, (name, state));
        }
    }
    Ok(found)
}

/// Milliseconds from the request to when a line was logged, by its timestamp
/// (the logger's clock, the same host's), or to now without one; `None` for
/// a line logged before the request.
pub(crate) fn ms_after(started: SystemTime, timestamp: Option<&str>) -> Option<f64> {
    let logged = timestamp.and_then(|t| humantime::parse_rfc3339_weak(t).ok()).unwrap_or_else(SystemTime::now);
    Some(logged.duration_since(started).ok()?.as_secs_f64() * 1e3)
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

    fn line(source: &str, json: &str) -> Line {
        Line { source: source.into(), text: json.into() }
    }

    #[test]
    fn a_restart_is_a_departure_then_a_return_each_line_counted_once() {
        let started = SystemTime::now();
        let at = |ms: u64| humantime::format_rfc3339_micros(started + Duration::from_millis(ms)).to_string();
        let survivors = ["node-1".to_owned()];
        let mut watching = Watching::new("node-3", Verb::Restart.changes(), &survivors, started);
        let registry = |event: &str, name: &str, ms| {
            line("registry", &format!(r#"{{"event":"{event}","name":"{name}","timestamp":"{}"}}"#, at(ms)))
        };
        let left = |peer: &str, reason: &str, ms| {
            let fields = format!(r#""peer_name":"{peer}","reason":"{reason}""#);
            line("node-1", &format!(r#"{{"event":"peer_left",{fields},"timestamp":"{}"}}"#, at(ms)))
        };
        let joined = |peers: &[&str], ms| {
            let names = serde_json::to_string(&serde_json::to_string(peers).unwrap()).unwrap();
            line("node-1", &format!(r#"{{"event":"peers_joined","peer_names":{names},"timestamp":"{}"}}"#, at(ms)))
        };
        let old = humantime::format_rfc3339_micros(started - Duration::from_millis(500)).to_string();
        watching.take(&line("registry", &format!(r#"{{"event":"expired","name":"node-3","timestamp":"{old}"}}"#)));
        watching.take(&registry("deregistered", "node-2", 1));
        watching.take(&joined(&["node-3"], 2));
        watching.take(&registry("deregistered", "node-3", 5));
        watching.take(&left("node-3", "deregistered", 7));
        watching.take(&registry("registered", "node-3", 40));
        watching.take(&line("node-9", r#"{"event":"peers_joined","peer_names":"[\"node-3\"]"}"#));
        let departure = watching.heard(Change::Departure).unwrap();
        assert_eq!(departure.registry.as_ref().map(|l| l.how.as_str()), Some("deregistered"));
        assert_eq!(departure.survivors["node-1"].as_ref().unwrap().how, "peer_left deregistered");
        assert!(departure.all_ms.is_some_and(|ms| (6.0..8.0).contains(&ms)), "{departure:?}");
        // Neither the line from before the request, nor the `peers_joined`
        // before the departure, nor the stranger's count.
        let back = watching.heard(Change::Return).unwrap();
        assert_eq!(back.registry.as_ref().map(|l| l.how.as_str()), Some("registered"));
        assert_eq!(back.survivors["node-1"], None);
        assert_eq!(watching.first_unnoticed(), Some((Change::Return, vec!["node-1".to_owned()])));
        watching.take(&joined(&["node-4"], 42));
        assert_eq!(watching.heard(Change::Return).unwrap().survivors["node-1"], None, "another node's return");
        watching.take(&joined(&["node-4", "node-3"], 45));
        let back = watching.heard(Change::Return).unwrap();
        assert_eq!(back.survivors["node-1"].as_ref().unwrap().how, "peers_joined");
        assert!(back.all_ms.is_some_and(|ms| (44.0..46.0).contains(&ms)), "{back:?}");
        assert_eq!(watching.first_unnoticed(), None);
    }
}
