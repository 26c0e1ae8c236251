//! `launcher kill|pause|unpause|restart MEMBER`: break a node, a registry
//! replica or an etcd member on purpose, as a crash, a partition or an
//! upgrade would, and report what followed and how long it took, from the
//! logs of the members that notice.
//!
//! | verb | Docker | a node: awaits ([`changes`]) |
//! |---|---|---|
//! | `kill` | SIGKILL | the departure (`session_lost`: its kernel closed its session) |
//! | `pause` | the cgroup freezer, like SIGSTOP | the departure (`expired`, once its lease ends) |
//! | `unpause` | thaws it | its return, if its lease had ended; nothing, if not |
//! | `restart` | SIGTERM, then a new run | the departure (`deregistered`), then the return |
//!
//! A registry replica ([`moves`]): every node that was using it moves to
//! another, its session (`registry_moved`) and its watch (`watching`);
//! after `restart`, the replica listens again. An etcd member
//! ([`election`]): which member leads then, and when a registration (the
//! launcher's [`Probe`]) is taken again.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::mpsc;

use std::collections::BTreeMap;

use crate::follow::changes::{Change, Heard, Logging, Watching};
use crate::follow::election::{self, Electing, Leader, Registered};
use crate::follow::moves::{self, Move, Moving};
use crate::follow::{self, FollowError, Follower, Verdict};
use crate::probe::Probe;
use crate::roster;
use crate::runtime::{Member, Project, Target, Verb};
use crate::stream::{Line, Reading};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The member: a node by its number (3) or its name (node-3), the
    /// registry (registry; of several, registry-2), an etcd member (etcd-1).
    #[arg(value_name = "MEMBER", value_parser = Member::parse)]
    pub member: Member,
    /// How long to wait for the others to log what follows; for `pause`
    /// of a node, longer than the registry's lease (`up --lease`).
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

/// What followed the disruption of a registry replica: how each node that
/// used it moved to another, and when the replica was back (`restart`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Moved {
    pub member: String,
    pub verb: Verb,
    pub moves: BTreeMap<String, Move>,
    /// When every node that used it had its session and watch back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all_ms: Option<f64>,
    /// When it listened again, after a restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub back_ms: Option<f64>,
    /// It was the only registry: there was nowhere to move to.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub only_registry: bool,
}

/// What followed the disruption of an etcd member: who leads, and when a
/// registration was taken again.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Elected {
    pub member: String,
    pub verb: Verb,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_before: Option<Leader>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<Leader>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registered: Option<Registered>,
}

impl Args {
    pub async fn run(self, project: &str, verb: Verb) -> anyhow::Result<()> {
        let project = Project::open(project).await?;
        let target = project.target(self.member, verb).await?;
        match self.member {
            Member::Node(_) => self.node(&project, verb, &target).await,
            Member::Registry(_) => self.replica(&project, verb, &target).await,
            Member::Etcd(_) => self.etcd(&project, verb, &target).await,
        }
    }

    /// A node: its departure and return, as the registry and every other
    /// running node log them.
    async fn node(&self, project: &Project, verb: Verb, target: &Target) -> anyhow::Result<()> {
        let victim = target.member.to_string();
        let mut changes = Change::after(verb);
        let live_throughout =
            verb == Verb::Unpause && roster::listed(project).await.is_some_and(|names| names.contains_key(&victim));
        if live_throughout {
            changes = &[];
        }
        let (lines, received) = mpsc::channel(1024);
        if !changes.is_empty() {
            let since = Reading::Since(unix_now());
            for member in target.registries().chain(target.nodes()) {
                project.follow(member, since, lines.clone())?;
            }
        }
        drop(lines);

        let started = SystemTime::now();
        project.disrupt(verb, target).await?;
        let survivors: Vec<String> = target.nodes().map(|m| m.to_string()).collect();
        let mut watching = Watching::new(&victim, changes, &survivors, started);
        self.follow_to(received, &mut watching).await;
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

    /// A registry replica: each node that was using it (by the last
    /// replica its logs name) moves to another; after a restart, it listens again.
    async fn replica(&self, project: &Project, verb: Verb, target: &Target) -> anyhow::Result<()> {
        let member = target.member;
        let replica = project.registry_inside(member)?.to_string();
        let only_registry = target.registries().next().is_none();
        let history = follow::history(project, target.nodes()).await?;
        let users: Vec<String> = match only_registry {
            true => Vec::new(),
            false => moves::in_use(&history).into_iter().filter(|(_, used)| *used == replica).map(|(n, _)| n).collect(),
        };
        let (lines, received) = mpsc::channel(1024);
        let since = Reading::Since(unix_now());
        for node in target.nodes() {
            project.follow(node, since, lines.clone())?;
        }
        let started = SystemTime::now();
        project.disrupt(verb, target).await?;
        let awaits_return = verb == Verb::Restart;
        if awaits_return {
            // Its old run's logs ended with it: the new run's, from the request on.
            project.follow(member, since, lines.clone())?;
        }
        drop(lines);
        let mut moving = Moving::new(replica, member.to_string(), users, awaits_return, started);
        self.follow_to(received, &mut moving).await;
        let moved = Moved {
            member: member.to_string(),
            verb,
            all_ms: moving.all_ms().filter(|_| !moving.moves.is_empty()),
            back_ms: moving.back_ms,
            moves: moving.moves.clone(),
            only_registry,
        };
        self.print_moved(&moved)?;
        self.missing(moving.reached(), moving.missing())
    }

    /// An etcd member: who leads after it (by the members' logs: see
    /// [`election`]), and when a replica takes a registration again.
    async fn etcd(&self, project: &Project, verb: Verb, target: &Target) -> anyhow::Result<()> {
        let member = target.member;
        let history = follow::history(project, target.etcd().chain([member])).await?;
        let before = election::leader(&history);
        let (lines, received) = mpsc::channel(1024);
        let since = Reading::Since(unix_now());
        for survivor in target.etcd().chain(target.registries()) {
            project.follow(survivor, since, lines.clone())?;
        }
        drop(lines);
        let started = SystemTime::now();
        project.disrupt(verb, target).await?;
        let probe = Probe::start(project).await?;
        let mut electing = Electing::new(&member.to_string(), before.clone(), probe.name.clone(), started);
        self.follow_to(received, &mut electing).await;
        probe.finish().await;
        let elected = Elected {
            member: member.to_string(),
            verb,
            leader_before: before.map(|(member, term)| Leader { member, term, elected_ms: None }),
            leader: electing.leader.clone(),
            registered: electing.registered.clone(),
        };
        self.print_elected(&elected)?;
        self.missing(electing.reached(), electing.missing())
    }

    /// Reads the lines into `verdict` until it is reached or the timeout passes.
    async fn follow_to(&self, received: mpsc::Receiver<Line>, verdict: &mut impl Verdict) {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut never = std::future::pending::<()>();
        Follower::new(received, None).until(verdict, Some(deadline), &mut never).await;
    }

    fn missing(&self, reached: bool, missing: Vec<String>) -> anyhow::Result<()> {
        match reached {
            true => Ok(()),
            false => Err(FollowError::NotFollowed { timeout: self.timeout, missing }.into()),
        }
    }

    fn print_moved(&self, moved: &Moved) -> anyhow::Result<()> {
        if self.json {
            return Ok(wire::cli::print(&(serde_json::to_string(moved)? + "\n"))?);
        }
        let mut text = format!("{} {}\n", moved.verb.done(), moved.member);
        if moved.only_registry {
            text += "  it is the project's only registry: its nodes have no other to move to\n";
        } else if moved.moves.is_empty() {
            text += "  no node was using it\n";
        } else {
            text += &format!(
                "  {:<12} {:<28} {:>14} {:>12} {:>12}\n",
                "node", "moved to", "after (node)", "moved", "watching"
            );
        }
        let ms = |ms: Option<f64>| ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms"));
        for (node, m) in &moved.moves {
            let after = m.after_ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms"));
            let to = m.to.as_deref().unwrap_or("(nothing)");
            text += &format!("  {node:<12} {to:<28} {after:>14} {:>12} {:>12}\n", ms(m.moved_ms), ms(m.watching_ms));
        }
        if let Some(all) = moved.all_ms {
            text +=
                &format!("  every node that used it had its session and watch back {all:.1} ms after the request\n");
        }
        if let Some(back) = moved.back_ms {
            text += &format!("  it listened again {back:.1} ms after the request\n");
        }
        Ok(wire::cli::print(&text)?)
    }

    fn print_elected(&self, elected: &Elected) -> anyhow::Result<()> {
        if self.json {
            return Ok(wire::cli::print(&(serde_json::to_string(elected)? + "\n"))?);
        }
        let mut text = format!("{} {}\n", elected.verb.done(), elected.member);
        if let Some(before) = &elected.leader_before {
            text += &format!("  {} led before (term {})\n", before.member, before.term);
        }
        match &elected.leader {
            Some(Leader { member, term, elected_ms: Some(ms) }) => {
                text += &format!("  {member} became leader (term {term}) {ms:.1} ms after the request\n");
            }
            Some(Leader { member, term, elected_ms: None }) => {
                text += &format!("  {member} leads still (term {term}): no election was needed\n");
            }
            None => text += "  no member had become leader\n",
        }
        match &elected.registered {
            Some(registered) => {
                text += &format!(
                    "  a registration was taken again {:.1} ms after the request (at {})\n",
                    registered.ms, registered.replica
                );
            }
            None => text += "  no registration was taken\n",
        }
        Ok(wire::cli::print(&text)?)
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
