//! Following a project's log lines to a verdict, for `up`, `scale` and the
//! disruption verbs: one loop ([`Follower`]) that shows each line and hands
//! it to what is awaited ([`Verdict`]), until that is reached, a deadline
//! passes, or the user interrupts.
//!
//! # Layout
//! - here: the loop; the mesh verdicts ([`Forming`] for `up`, [`Scaling`]
//!   for `scale`), what is missing when they are not reached, and the
//!   runtime's notes on stuck members.
//! - [`changes`]: the departure and return of a disrupted node, as the
//!   registry and every survivor log them.
//! - [`moves`]: the nodes of a disrupted registry replica moving to
//!   another, and the replica's return.
//! - [`election`]: who leads the etcd cluster after one of its members is
//!   disrupted, and when the registry takes a registration again.

pub mod changes;
pub mod election;
pub mod moves;

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, SystemTime};

use registry::events::Membership;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::mesh::Mesh;
use crate::runtime::{Member, Project};
use crate::stream::{Line, Reading};
use crate::ui::{self, Logged, Ui};

/// How `up` and `scale` follow the mesh to their verdict.
#[derive(Debug, clap::Args)]
pub struct Following {
    /// How long the mesh may take to complete; past it, `up --detach` and
    /// `scale` fail (exit 4), and a foreground `up` says what is missing.
    #[arg(long, default_value = "60s", value_parser = wire::cli::duration)]
    pub timeout: Duration,
    /// Show no log lines, only the outcome.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What a follower awaits, built from the lines it reads.
pub trait Verdict {
    /// Takes one line, and the event it carries.
    fn take(&mut self, line: &Line, record: Option<&Logged>);
    /// Whether what is awaited has happened.
    fn reached(&self) -> bool;
}

/// How following ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Reached,
    TimedOut,
    Interrupted,
    /// Every log stream ended.
    LogsEnded,
}

/// What was awaited and did not come in time.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("the mesh is not complete after {timeout:?}: {}", missing.join("; "))]
    MeshIncomplete { timeout: Duration, missing: Vec<String> },
    #[error("the new membership is not complete after {timeout:?}: {}", missing.join("; "))]
    MembershipIncomplete { timeout: Duration, missing: Vec<String> },
    #[error("every log stream ended before the mesh was complete")]
    LogsEnded,
    #[error("within {timeout:?}: {}", missing.join("; "))]
    NotFollowed { timeout: Duration, missing: Vec<String> },
}

/// Reads a project's merged log lines, showing them on `ui` unless it is quiet.
pub struct Follower<'a> {
    received: mpsc::Receiver<Line>,
    ui: Option<&'a Ui>,
}

impl<'a> Follower<'a> {
    /// Shows lines on `ui`, when given; disruption reports show none.
    pub fn new(received: mpsc::Receiver<Line>, ui: Option<&'a Ui>) -> Follower<'a> {
        Follower { received, ui }
    }

    /// Reads lines into `verdict` until it is reached, `deadline` passes,
    /// or `interrupt` fires.
    pub async fn until(
        &mut self,
        verdict: &mut impl Verdict,
        deadline: Option<Instant>,
        interrupt: &mut (impl Future + Unpin),
    ) -> Ending {
        let deadline = tokio::time::sleep_until(deadline.unwrap_or_else(far_future));
        tokio::pin!(deadline);
        while !verdict.reached() {
            tokio::select! {
                line = self.received.recv() => {
                    let Some(line) = line else { return Ending::LogsEnded };
                    let record = ui::record(&line);
                    verdict.take(&line, record.as_ref());
                    if let Some(ui) = self.ui.filter(|ui| ui.shows_lines()) {
                        // Lines go to stderr here, which cannot fail.
                        let _ = ui.line(&line.source, &ui::render(&line, record.as_ref()));
                    }
                }
                _ = &mut *interrupt => return Ending::Interrupted,
                () = &mut deadline => return Ending::TimedOut,
            }
        }
        Ending::Reached
    }
}

/// Every line `members` have logged so far, each member's in order.
pub async fn history(
    project: &Project,
    members: impl IntoIterator<Item = Member>,
) -> Result<Vec<Line>, crate::runtime::RuntimeError> {
    let (lines, mut received) = mpsc::channel(1024);
    for member in members {
        project.follow(member, Reading::All { follow: false }, lines.clone())?;
    }
    drop(lines);
    let mut all = Vec::new();
    while let Some(line) = received.recv().await {
        all.push(line);
    }
    Ok(all)
}

/// A deadline that never comes (a year on, as `tokio::time::sleep` takes it).
fn far_future() -> Instant {
    Instant::now() + wire::cli::MAX_DURATION
}

/// `up`'s verdict: every pair of nodes has greeted.
pub struct Forming<'a> {
    pub mesh: Mesh,
    ui: &'a Ui,
}

impl<'a> Forming<'a> {
    pub fn new(mesh: Mesh, ui: &'a Ui) -> Forming<'a> {
        Forming { mesh, ui }
    }

    /// What keeps the mesh from being complete.
    pub fn incomplete(&self, timeout: Duration) -> FollowError {
        FollowError::MeshIncomplete { timeout, missing: missing(&self.mesh) }
    }
}

impl Verdict for Forming<'_> {
    fn take(&mut self, line: &Line, record: Option<&Logged>) {
        if let Some(Logged::Node(record)) = record {
            self.mesh.apply(&line.source, record);
            self.ui.progress(&self.mesh);
        }
    }

    fn reached(&self) -> bool {
        self.mesh.is_complete()
    }
}

/// Once the mesh is complete, in the foreground: the registry's joins and
/// departures are shown even when quiet, since they are what is left to follow.
pub struct Aftermath<'a>(pub &'a Ui);

impl Verdict for Aftermath<'_> {
    fn take(&mut self, line: &Line, record: Option<&Logged>) {
        let membership = matches!(record, Some(Logged::Registry(r)) if r.event.membership().is_some());
        if membership && !self.0.shows_lines() {
            self.0.note(&format!("{} | {}", line.source, ui::render(line, record)));
        }
    }

    /// Never: it lasts until the user interrupts.
    fn reached(&self) -> bool {
        false
    }
}

/// `scale`'s verdict: every node of the new membership registered, every
/// pair of them greeted, and the registry logged each removed node's
/// departure (after the request).
pub struct Scaling<'a> {
    pub mesh: Mesh,
    leaving: BTreeSet<String>,
    requested: SystemTime,
    ui: &'a Ui,
}

impl<'a> Scaling<'a> {
    pub fn new(mesh: Mesh, leaving: BTreeSet<String>, requested: SystemTime, ui: &'a Ui) -> Scaling<'a> {
        Scaling { mesh, leaving, requested, ui }
    }

    /// What keeps the new membership from being complete.
    pub fn incomplete(&self, timeout: Duration) -> FollowError {
        let mut missing = missing(&self.mesh);
        if !self.leaving.is_empty() {
            missing.push(format!("the registry has not logged the departure of {}", join(&self.leaving)));
        }
        FollowError::MembershipIncomplete { timeout, missing }
    }
}

impl Verdict for Scaling<'_> {
    fn take(&mut self, line: &Line, record: Option<&Logged>) {
        match record {
            Some(Logged::Node(record)) => {
                self.mesh.apply(&line.source, record);
                self.ui.progress(&self.mesh);
            }
            Some(Logged::Registry(record))
                if record.event.membership() == Some(Membership::Left)
                    && ms_after(self.requested, record.timestamp.as_deref()).is_some() =>
            {
                if let Some(name) = &record.name {
                    self.leaving.remove(name);
                }
            }
            _ => {}
        }
    }

    fn reached(&self) -> bool {
        self.leaving.is_empty() && self.mesh.all_met()
    }
}

/// The nodes not registered and the pairs that have not greeted, in words.
fn missing(mesh: &Mesh) -> Vec<String> {
    let mut missing = Vec::new();
    let unregistered: Vec<&String> = mesh.nodes().iter().filter(|(_, n)| !n.registered).map(|(name, _)| name).collect();
    if !unregistered.is_empty() {
        missing.push(format!("not registered: {}", join(unregistered)));
    }
    let pairs = mesh.missing_pairs();
    if !pairs.is_empty() {
        let shown: Vec<String> = pairs.iter().take(20).map(|(a, b)| format!("{a}-{b}")).collect();
        let more = match pairs.len() - shown.len() {
            0 => String::new(),
            more => format!(" and {more} more"),
        };
        missing.push(format!("{} pairs have not greeted: {}{more}", pairs.len(), shown.join(", ")));
    }
    missing
}

fn join<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    names.into_iter().map(String::as_str).collect::<Vec<_>>().join(", ")
}

/// Milliseconds from the request to when a line was logged, by its timestamp
/// (the logger's clock, the same host's), or to now without one; `None` for
/// a line logged before the request.
pub fn ms_after(started: SystemTime, timestamp: Option<&str>) -> Option<f64> {
    let logged = timestamp.and_then(|t| humantime::parse_rfc3339_weak(t).ok()).unwrap_or_else(SystemTime::now);
    Some(logged.duration_since(started).ok()?.as_secs_f64() * 1e3)
}

/// Says which of the project's members are stuck, and why: a swarm's
/// pinned node whose port is taken on its host, say, only shows there.
pub async fn note_stuck(ui: &Ui, project: &Project) {
    match project.stuck().await {
        Ok(stuck) if !stuck.is_empty() => ui.note(&format!("tasks not running: {}", stuck.join("; "))),
        Ok(_) => {}
        Err(error) => ui.note(&format!("cannot list the project's tasks: {error:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_missing_names_the_unregistered_and_at_most_twenty_pairs() {
        let names = (1..=8).map(|i| (format!("node-{i}"), None));
        let mesh = Mesh::new(names);
        let missing = missing(&mesh);
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(missing[0].starts_with("not registered: node-1, node-2"), "{}", missing[0]);
        assert!(missing[1].starts_with("28 pairs have not greeted: node-1-node-2, "), "{}", missing[1]);
        assert!(missing[1].ends_with(" and 8 more"), "{}", missing[1]);
    }
}
