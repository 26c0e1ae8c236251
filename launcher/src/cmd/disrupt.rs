//! `launcher kill|pause|unpause|restart NODE`: break a node on purpose, as a
//! crash, a partition or an upgrade would, and report what followed and how
//! long it took, from the logs of the registry and of every other running
//! node ([`crate::follow::changes`]).
//!
//! | verb | Docker | awaits |
//! |---|---|---|
//! | `kill` | SIGKILL | the departure (`session_lost`: its kernel closed its session) |
//! | `pause` | the cgroup freezer, like SIGSTOP | the departure (`expired`, once its lease ends) |
//! | `unpause` | thaws it | its return, if its lease had ended; nothing, if not |
//! | `restart` | SIGTERM, then a new run | the departure (`deregistered`), then the return |

use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::follow::changes::{Change, Heard, Logging, Watching};
use crate::follow::Follower;
use crate::roster;
use crate::runtime::{Member, Project, Verb};
use crate::stream::Reading;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The node: its number (3) or its name (node-3).
    #[arg(value_name = "NODE", value_parser = Member::node_index)]
    pub node: usize,
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

impl Args {
    pub async fn run(self, project: &str, verb: Verb) -> anyhow::Result<()> {
        let project = Project::open(project).await?;
        let index = self.node;
        let victim = Member::Node(index).to_string();
        let target = project.target(index, verb).await?;
        let mut changes = Change::after(verb);
        let live_throughout =
            verb == Verb::Unpause && roster::listed(&project).await.is_some_and(|names| names.contains_key(&victim));
        if live_throughout {
            changes = &[];
        }
        let (lines, received) = mpsc::channel(1024);
        if !changes.is_empty() {
            let since = Reading::Since(unix_now());
            for member in std::iter::once(Member::Registry).chain(target.survivors.iter().copied()) {
                project.follow(member, since, lines.clone())?;
            }
        }
        drop(lines);

        let started = SystemTime::now();
        project.disrupt(verb, index, &target).await?;
        let survivors: Vec<String> = target.survivors.iter().map(Member::to_string).collect();
        let mut watching = Watching::new(&victim, changes, &survivors, started);
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut never = std::future::pending::<()>();
        Follower::new(received, None).until(&mut watching, Some(deadline), &mut never).await;
        let followed = Followed {
            node: victim.clone(),
            verb,
            departure: watching.heard(Change::Departure),
            back: watching.heard(Change::Return),
            live_throughout,
        };
        self.print(&followed)?;
        match watching.unnoticed(self.timeout) {
            Some(unnoticed) => Err(unnoticed.into()),
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
            Some(logging) => format!("  {who:<12} {:<28} {:>9.1} ms\n", logging.how.to_string(), logging.ms),
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

fn unix_now() -> i64 {
    SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
