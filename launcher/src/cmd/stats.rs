//! `launcher stats`: a live table of the project's registries and nodes,
//! refreshed every second as `docker stats` is: each member's state, its
//! health (`/health`), what its `/metrics` say (peers in view, greetings
//! sent and welcomed, received and rejected, p50/p99 greeting latency, multicasts
//! coordinated; for a registry, its members, refused connections and
//! request latency) and the CPU and memory its engine counts.
//!
//! It reads each member's HTTP listener at its address on the project
//! network, which this machine reaches for a project of containers.

use std::time::Duration;

use serde::Serialize;
use wire::exposition::{self, Family};

use crate::observe::{self, Read};
use crate::runtime::{Member, Observed, Project, Usage};

/// How often the table is drawn again.
const REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the figures once, instead of every second until interrupted.
    #[arg(long)]
    pub no_stream: bool,
    /// Print the rows as JSON, one array a refresh, one per line.
    #[arg(long)]
    pub json: bool,
}

/// One member's figures; those it could not be asked for are `None`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Stat {
    pub name: String,
    pub member: String,
    pub state: String,
    /// `healthy`, or `unhealthy: <reason>`; none when `/health` did not answer.
    pub health: Option<String>,
    /// Peers in a node's view; a registry's live members.
    pub peers: Option<u64>,
    /// Greetings sent and welcomed: with those received, the pairs it met.
    pub greetings_sent: Option<u64>,
    pub greetings_received: Option<u64>,
    /// Greetings a node refused; connections a registry refused.
    pub rejected: Option<u64>,
    /// Greeting latency at a node, request latency at a registry, in ms.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Multicasts a node coordinated.
    pub multicasts: Option<u64>,
    pub cpu_percent: Option<f64>,
    pub memory_bytes: Option<u64>,
}

impl Args {
    pub async fn run(self, project: &str) -> anyhow::Result<()> {
        let project = Project::open(project).await?;
        let mut ticks = tokio::time::interval(REFRESH);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let stats = read_all(&project).await?;
            let text = if self.json { serde_json::to_string(&stats)? + "\n" } else { table(&stats, !self.no_stream) };
            wire::cli::print(&text)?;
            if self.no_stream {
                return Ok(());
            }
        }
    }
}

/// Every member's figures, read at once.
async fn read_all(project: &Project) -> anyhow::Result<Vec<Stat>> {
    let mut observed = project.observed().await?;
    observed.sort_by_key(|member| member.member);
    let reads = observed.into_iter().map(|observed| async move {
        let usage = async {
            match observed.state.as_str() {
                "running" => project.usage(&observed.name).await.unwrap_or_default(),
                _ => Usage::default(),
            }
        };
        let (usage, read) = futures::join!(usage, observe::read(observed.http, true));
        stat(&observed, read, usage)
    });
    Ok(futures::future::join_all(reads).await)
}

fn stat(observed: &Observed, read: Read, usage: Usage) -> Stat {
    let health = read.health.map(|health| match health.health {
        true => "healthy".to_owned(),
        false => format!("unhealthy: {}", health.reason),
    });
    let mut stat = Stat {
        name: observed.name.clone(),
        member: observed.member.to_string(),
        state: observed.state.clone(),
        health,
        cpu_percent: usage.cpu_percent,
        memory_bytes: usage.memory_bytes,
        ..Stat::default()
    };
    if let Some(families) = &read.metrics {
        let figures = Figures(families);
        match observed.member {
            Member::Node(_) => figures.node(&mut stat),
            _ => figures.registry(&mut stat),
        }
    }
    stat
}

/// A member's families, read by name.
struct Figures<'a>(&'a [Family]);

impl Figures<'_> {
    /// The value of family `name` (a counter's `_total`) over the samples whose labels include `labels`.
    fn count(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        let family = exposition::family(self.0, name)?;
        let sample = match family.kind {
            exposition::Kind::Counter => format!("{name}_total"),
            _ => name.to_owned(),
        };
        Some(family.sum(&sample, labels) as u64)
    }

    fn latency(&self, family: &str, stat: &mut Stat) {
        let family = exposition::family(self.0, family);
        let ms = |q| family.and_then(|family| family.quantile(q)).map(|seconds| seconds * 1e3);
        (stat.p50_ms, stat.p99_ms) = (ms(0.5), ms(0.99));
    }

    fn node(&self, stat: &mut Stat) {
        stat.peers = self.count("hit6_node_peers", &[]);
        // Welcomed only: a pair meets once, by one greeting welcomed at the
        // other end, so that sent and received add up to the pairs it met.
        stat.greetings_sent = self.count("hit6_node_greetings_sent", &[("outcome", "welcome")]);
        stat.greetings_received = self.count("hit6_node_greetings_received", &[]);
        stat.rejected = self.count("hit6_node_greetings_rejected", &[]);
        stat.multicasts = self.count("hit6_node_multicasts", &[]);
        self.latency("hit6_node_greeting_duration_seconds", stat);
    }

    fn registry(&self, stat: &mut Stat) {
        stat.peers = self.count("hit6_registry_members", &[("state", "live")]);
        stat.rejected = self.count("hit6_registry_refused_connections", &[]);
        self.latency("hit6_registry_request_duration_seconds", stat);
    }
}

/// The table, drawn over the last one on a terminal when `redraw`.
fn table(stats: &[Stat], redraw: bool) -> String {
    let mut text = String::new();
    if redraw && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        // Clear the screen and go home, as `docker stats` does.
        text.push_str("\x1b[2J\x1b[H");
    }
    text += &format!(
        "{:<28} {:<8} {:<10} {:>6} {:>6} {:>6} {:>8} {:>8} {:>8} {:>6} {:>6} {:>9}\n",
        "NAME", "STATE", "HEALTH", "PEERS", "SENT", "RECV", "REJECTED", "P50 MS", "P99 MS", "MCAST", "CPU %", "MEM"
    );
    for stat in stats {
        let health = stat.health.as_deref().map_or("-", |h| h.split(':').next().unwrap_or(h));
        text += &format!(
            "{:<28} {:<8} {:<10} {:>6} {:>6} {:>6} {:>8} {:>8} {:>8} {:>6} {:>6} {:>9}\n",
            stat.name,
            stat.state,
            health,
            count(stat.peers),
            count(stat.greetings_sent),
            count(stat.greetings_received),
            count(stat.rejected),
            decimal(stat.p50_ms, 3),
            decimal(stat.p99_ms, 3),
            count(stat.multicasts),
            decimal(stat.cpu_percent, 1),
            stat.memory_bytes.map_or("-".to_owned(), |bytes| format!("{:.1}MiB", bytes as f64 / (1 << 20) as f64)),
        );
    }
    text
}

fn count(value: Option<u64>) -> String {
    value.map_or("-".to_owned(), |value| value.to_string())
}

fn decimal(value: Option<f64>, places: usize) -> String {
    value.map_or("-".to_owned(), |value| format!("{value:.places$}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::health::Health;

    fn families(text: &str) -> Vec<Family> {
        exposition::parse(text).unwrap()
    }

    #[test]
    fn a_nodes_row_is_read_from_its_metrics() {
        let text = "# HELP hit6_node_peers x\n# TYPE hit6_node_peers gauge\nhit6_node_peers 4\n\
            # HELP hit6_node_greetings_sent x\n# TYPE hit6_node_greetings_sent counter\n\
            hit6_node_greetings_sent_total{outcome=\"welcome\"} 3\nhit6_node_greetings_sent_total{outcome=\"met\"} 1\n\
            hit6_node_greetings_sent_total{outcome=\"failed\"} 7\n\
            # HELP hit6_node_greeting_duration_seconds x\n# TYPE hit6_node_greeting_duration_seconds histogram\n\
            hit6_node_greeting_duration_seconds_bucket{le=\"0.001\"} 4\n\
            hit6_node_greeting_duration_seconds_bucket{le=\"+Inf\"} 4\n# EOF\n";
        let observed =
            Observed { name: "p-node-1".into(), member: Member::Node(1), state: "running".into(), http: None };
        let read = Read { health: Some(Health::bad("not registered")), metrics: Some(families(text)) };
        let stat = stat(&observed, read, Usage { cpu_percent: Some(1.5), memory_bytes: Some(2 << 20) });
        assert_eq!((stat.peers, stat.greetings_sent, stat.greetings_received), (Some(4), Some(3), None));
        assert_eq!(stat.health.as_deref(), Some("unhealthy: not registered"));
        assert_eq!((stat.p50_ms, stat.p99_ms), (Some(0.5), Some(0.99)));
        let table = table(&[stat], false);
        let row = table.lines().nth(1).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells,
            ["p-node-1", "running", "unhealthy", "4", "3", "-", "-", "0.500", "0.990", "-", "1.5", "2.0MiB"]
        );
    }
}
