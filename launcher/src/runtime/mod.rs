//! Where a project's members run, behind one type: [`Project`], with one
//! implementation per runtime. Subcommands speak only to it; which runtime
//! a project uses is matched here and nowhere else, so a new kind of member
//! is one change per runtime.
//!
//! # Layout
//! - [`member`]: the registry (or its replicas), the etcd members and the
//!   nodes, as every runtime names them.
//! - [`cluster`]: the etcd cluster under registry replicas: its members'
//!   command lines, and the replicas each node is given.
//! - [`plan`]: what `up` asks (a [`Plan`]), what a runtime reports back,
//!   and why it may refuse.
//! - [`engine`]: the Docker engine through bollard, and what the two Docker
//!   runtimes share: labelled containers and networks, member specs,
//!   the container verbs.
//! - [`containers`]: `--runtime docker`, a container per member on a bridge network.
//! - [`swarm`]: `--runtime swarm`, a service per member on an overlay network.
//! - [`local`]: `--runtime local`, processes on this machine.

pub mod cluster;
pub mod containers;
pub mod engine;
pub mod local;
pub mod member;
pub mod plan;
pub mod swarm;

use registry::client::RegistryAddr;
use serde::Serialize;
use tokio::sync::mpsc;
use wire::secure::JoinToken;

use crate::images::binaries;
use crate::ports;
use crate::stream::{Line, Reading};
use crate::ui::Ui;
use containers::Containers;
use engine::{DockerError, Engine, Ran, Removed, SwarmError};
use local::Local;
pub use member::Member;
pub use plan::{Health, Http, Observed, Plan, Row, RuntimeError, Scaled, Started, Usage};
use swarm::Swarm;

/// Where `up` runs a project (`--runtime`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Containers on the local Docker engine.
    #[default]
    Docker,
    /// Services of the Docker swarm this engine manages, which may run
    /// them on any of its hosts.
    Swarm,
    /// Processes on this machine.
    Local,
}

/// A project's members, where they run.
pub enum Project {
    Containers(Containers),
    Swarm(Swarm),
    /// Only `up` holds one: its processes end with it.
    Local(Local),
}

/// A disruption of one node, as a crash, a partition or an upgrade would do it.
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

impl Verb {
    /// The state the node's container must be in for the verb to apply.
    pub fn requires(self) -> &'static str {
        match self {
            Verb::Unpause => "paused",
            Verb::Kill | Verb::Pause | Verb::Restart => "running",
        }
    }

    /// What was done, in words.
    pub fn done(self) -> &'static str {
        match self {
            Verb::Kill => "killed (SIGKILL)",
            Verb::Pause => "paused (frozen, as SIGSTOP)",
            Verb::Unpause => "unpaused",
            Verb::Restart => "restarted (SIGTERM, then a new run)",
        }
    }
}

/// The member a disruption acts on, and the members that survive it.
#[derive(Debug, Clone)]
pub struct Target {
    pub member: Member,
    /// The member's container: in a swarm, its task's on this engine's host.
    container: String,
    /// The other running members: in a swarm, every other node service,
    /// on any host, and the registry.
    pub survivors: Vec<Member>,
}

impl Target {
    /// The surviving nodes.
    pub fn nodes(&self) -> impl Iterator<Item = Member> + '_ {
        self.survivors.iter().copied().filter(|m| matches!(m, Member::Node(_)))
    }

    /// The surviving registries: the only one, or the other replicas.
    pub fn registries(&self) -> impl Iterator<Item = Member> + '_ {
        self.survivors.iter().copied().filter(|m| m.is_registry())
    }

    /// The surviving etcd members.
    pub fn etcd(&self) -> impl Iterator<Item = Member> + '_ {
        self.survivors.iter().copied().filter(|m| matches!(m, Member::Etcd(_)))
    }
}

impl Project {
    /// Starts a project as `plan` says, on `kind`: the images or binaries
    /// first, then the registry and the nodes, whose lines go to `lines`.
    /// Whatever was started is removed again if a step fails.
    pub async fn up(
        kind: Kind,
        name: &str,
        plan: &Plan,
        ui: &Ui,
        lines: &mpsc::Sender<Line>,
    ) -> anyhow::Result<(Project, Started)> {
        match kind {
            Kind::Docker => {
                let containers = Containers { engine: Engine::connect(name).await? };
                // Every node takes a port of the range here (a swarm shares it per host, which its placement checks).
                ports::check_capacity(plan.port_range, plan.nodes)?;
                containers.engine.prepare(plan, ui).await?;
                let started = containers.start(plan, lines).await;
                Project::Containers(containers).unless_failed(started).await
            }
            Kind::Swarm => {
                let swarm = Swarm { engine: Engine::connect(name).await? };
                let manager = swarm.check(plan).await?;
                swarm.engine.prepare(plan, ui).await?;
                let started = swarm.start(plan, &manager, lines).await;
                Project::Swarm(swarm).unless_failed(started).await
            }
            Kind::Local => {
                let bin = binaries::build_binaries(binaries::BinaryKind::Native, ui.multi()).await?;
                let (local, started) = Local::start(plan, &bin, lines).await?;
                Ok((Project::Local(local), started))
            }
        }
    }

    /// The project and what it started; or, if starting failed, the error,
    /// once what was started is removed.
    async fn unless_failed(mut self, started: anyhow::Result<Started>) -> anyhow::Result<(Project, Started)> {
        match started {
            Ok(started) => Ok((self, started)),
            Err(error) => {
                let _ = self.remove(true).await;
                Err(error)
            }
        }
    }

    /// Removes what an interrupted `up` of `kind` left of project `name`.
    pub async fn remove_leftovers(kind: Kind, name: &str) -> anyhow::Result<()> {
        if kind != Kind::Local {
            Project::open(name).await?.remove(true).await?;
        }
        Ok(())
    }

    /// The project on the engine DOCKER_HOST names, in the runtime it was
    /// started in: swarm if it has services there. (A local project lives
    /// only in its `up`.)
    pub async fn open(name: &str) -> Result<Project, DockerError> {
        let engine = Engine::connect(name).await?;
        if !engine.services().await?.is_empty() {
            return Ok(Project::Swarm(Swarm { engine }));
        }
        if engine.containers().await?.iter().any(engine::is_task)
            && engine::swarm_manager(&engine.docker).await.is_err()
        {
            // Its services are seen only from a manager; their tasks' containers from here too.
            return Err(SwarmError::NotItsManager { project: engine.name, host: engine::daemon_host() }.into());
        }
        Ok(Project::Containers(Containers { engine }))
    }

    pub fn name(&self) -> &str {
        match self.engine() {
            Some(engine) => &engine.name,
            None => "local",
        }
    }

    fn engine(&self) -> Option<&Engine> {
        match self {
            Project::Containers(containers) => Some(&containers.engine),
            Project::Swarm(swarm) => Some(&swarm.engine),
            Project::Local(_) => None,
        }
    }

    /// The engine of a project `open` found, which is always a Docker one.
    fn docker(&self) -> Result<&Engine, RuntimeError> {
        self.engine().ok_or(RuntimeError::NotKept)
    }

    /// Stops and removes every member. `force` kills instead of stopping
    /// gracefully (a service's tasks always stop gracefully).
    pub async fn remove(&mut self, force: bool) -> anyhow::Result<Removed> {
        Ok(match self {
            Project::Containers(containers) => containers.engine.remove_containers_and_networks(force, false).await?,
            Project::Swarm(swarm) => swarm.remove_all(force).await?,
            Project::Local(local) => {
                // Processes, no resources of an engine.
                local.stop(force).await;
                Removed::default()
            }
        })
    }

    /// Whether its processes end with the launcher, so that `up` must stop
    /// them once it has reported.
    pub fn ends_with_launcher(&self) -> bool {
        matches!(self, Project::Local(_))
    }

    /// Forwards `member`'s log lines to `lines`, as `reading` says.
    pub fn follow(&self, member: Member, reading: Reading, lines: mpsc::Sender<Line>) -> Result<(), RuntimeError> {
        match self {
            Project::Containers(containers) => containers.follow(member, reading, lines),
            Project::Swarm(swarm) => swarm.follow(member, reading, lines),
            Project::Local(_) => return Err(RuntimeError::NotKept),
        }
        Ok(())
    }

    /// Every member, as `ps` and `logs` show them.
    pub async fn rows(&self) -> anyhow::Result<Vec<Row>> {
        Ok(match self {
            Project::Containers(containers) => containers.rows().await?,
            Project::Swarm(swarm) => swarm.rows().await?,
            Project::Local(_) => return Err(RuntimeError::NotKept.into()),
        })
    }

    /// Returns once every registry's and node's task runs, on a swarm: one
    /// is held `starting` until its first health check passes, and until
    /// then the swarm serves none of its logs, which `kill` and `logs` read.
    /// Containers and processes run once started.
    pub async fn settled(&self) -> anyhow::Result<()> {
        match self {
            Project::Swarm(swarm) => swarm.settled().await,
            Project::Containers(_) | Project::Local(_) => Ok(()),
        }
    }

    /// The read token the project's registries' HTTP listeners were started
    /// with (`up --http-port`); `None` without one.
    pub async fn http_token(&self) -> anyhow::Result<Option<JoinToken>> {
        Ok(match self {
            Project::Containers(containers) => containers.http_token().await?,
            Project::Swarm(swarm) => swarm.http_token().await?,
            Project::Local(_) => return Err(RuntimeError::NotKept.into()),
        })
    }

    /// The project's registries and nodes, and where this machine reaches
    /// their HTTP listeners: only a project of containers here, whose
    /// network this machine reaches.
    pub async fn observed(&self) -> anyhow::Result<Vec<Observed>> {
        match self {
            Project::Containers(containers) => Ok(containers.observed().await?),
            Project::Swarm(_) => Err(RuntimeError::OverlayOnly { project: self.name().to_owned() }.into()),
            Project::Local(_) => Err(RuntimeError::NotKept.into()),
        }
    }

    /// What member container `name` uses of its host.
    pub async fn usage(&self, name: &str) -> anyhow::Result<Usage> {
        match self {
            Project::Containers(containers) => Ok(containers.usage(name).await?),
            Project::Swarm(_) => Err(RuntimeError::OverlayOnly { project: self.name().to_owned() }.into()),
            Project::Local(_) => Err(RuntimeError::NotKept.into()),
        }
    }

    /// The join token the project's registry was started with; `None` for
    /// a registry without one.
    pub async fn join_token(&self) -> anyhow::Result<Option<JoinToken>> {
        Ok(match self {
            Project::Containers(containers) => containers.join_token().await?,
            Project::Swarm(swarm) => swarm.join_token().await?,
            Project::Local(_) => return Err(RuntimeError::NotKept.into()),
        })
    }

    /// The project's registry as this machine reaches it: the first of
    /// [`Project::registries_from_here`].
    pub async fn registry_from_here(&self) -> anyhow::Result<RegistryAddr> {
        let mut all = self.registries_from_here().await?;
        // Never empty: that is an error already.
        Ok(all.swap_remove(0))
    }

    /// The project's running registries as this machine reaches them:
    /// through the host ports they are published on.
    pub async fn registries_from_here(&self) -> anyhow::Result<Vec<RegistryAddr>> {
        let addrs = match self {
            Project::Containers(containers) => containers.registries_from_here().await?,
            Project::Swarm(swarm) => swarm.registries_from_here().await?,
            Project::Local(_) => return Err(RuntimeError::NotKept.into()),
        };
        if addrs.is_empty() {
            return Err(RuntimeError::NoPublishedRegistry { project: self.name().to_owned() }.into());
        }
        Ok(addrs.into_iter().map(|addr| RegistryAddr { host: addr.ip().to_string(), port: addr.port() }).collect())
    }

    /// The project's registries as its members reach them, on the project
    /// network: its only one, or its replicas.
    pub async fn registries_inside(&self) -> anyhow::Result<Vec<RegistryAddr>> {
        let engine = self.docker()?;
        let rows = self.rows().await?;
        let mut members: Vec<Member> = rows.iter().filter_map(|row| row.member.filter(|m| m.is_registry())).collect();
        members.sort();
        members.dedup();
        if members.is_empty() {
            return Err(RuntimeError::NoPublishedRegistry { project: self.name().to_owned() }.into());
        }
        Ok(members.into_iter().map(|member| engine.registry_inside(member)).collect())
    }

    /// Where the nodes reach registry `member`, as they name it in their logs.
    pub fn registry_inside(&self, member: Member) -> Result<RegistryAddr, RuntimeError> {
        Ok(self.docker()?.registry_inside(member))
    }

    /// Whether a client here reaches every node. A swarm's nodes advertise
    /// overlay addresses this machine may not reach: a client runs inside
    /// instead ([`Project::run_inside`]).
    pub fn reaches_nodes_from_here(&self) -> bool {
        !matches!(self, Project::Swarm(_))
    }

    /// Runs the node image with `args` in a one-off container on the
    /// project network, as a client inside it, to its end; the token goes
    /// in its environment.
    pub async fn run_inside(&self, args: Vec<String>, token: Option<&JoinToken>) -> anyhow::Result<Ran> {
        let image = match self {
            Project::Containers(containers) => containers.node_image().await?,
            Project::Swarm(swarm) => swarm.node_image().await?,
            Project::Local(_) => return Err(RuntimeError::NotKept.into()),
        };
        let image = image.ok_or_else(|| RuntimeError::NoNodeImage { project: self.name().to_owned() })?;
        Ok(self.docker()?.run_inside(image, args, token).await?)
    }

    /// `member`, which must be in the state `verb` applies to, and the
    /// others that survive a disruption of it.
    pub async fn target(&self, member: Member, verb: Verb) -> anyhow::Result<Target> {
        let mut here = self.docker()?.member_containers().await?;
        let container = match here.remove(&member) {
            Some((container, state)) if state == verb.requires() => container,
            _ => {
                let here = if matches!(self, Project::Swarm(_)) { " on this engine's host" } else { "" };
                let (state, project) = (verb.requires(), self.name().to_owned());
                return Err(RuntimeError::NotThere { member, state, project, here }.into());
            }
        };
        let survivors = match self {
            Project::Swarm(swarm) => {
                // Every other service: the manager may hear of a task running after its node has greeted.
                swarm.members().await?.into_keys().filter(|&m| m != member).collect()
            }
            _ => here.into_iter().filter(|(_, (_, state))| state == "running").map(|(m, _)| m).collect(),
        };
        Ok(Target { member, container, survivors })
    }

    /// Does `verb` to the member `target` found.
    pub async fn disrupt(&self, verb: Verb, target: &Target) -> anyhow::Result<()> {
        let engine = self.docker()?;
        let container = &target.container;
        match (verb, self) {
            (Verb::Kill, _) => engine.kill(container).await?,
            (Verb::Pause, _) => engine.pause(container).await?,
            (Verb::Unpause, _) => engine.unpause(container).await?,
            // A task's container restarted under the swarm would race the task the swarm starts for it.
            (Verb::Restart, Project::Swarm(swarm)) => swarm.redeploy(target.member).await?,
            (Verb::Restart, Project::Containers(containers)) => containers.restart(container).await?,
            (Verb::Restart, Project::Local(_)) => return Err(RuntimeError::NotKept.into()),
        }
        Ok(())
    }

    /// Grows or shrinks the project to `nodes` nodes.
    pub async fn scale(&self, nodes: usize) -> anyhow::Result<Scaled> {
        match self {
            Project::Swarm(swarm) => swarm.scale(nodes).await,
            _ => Err(RuntimeError::NotScalable { project: self.name().to_owned() }.into()),
        }
    }

    /// The members whose task is not running, each with its state and why:
    /// what a mesh that does not complete may be waiting for. Only a swarm
    /// has tasks that can wait.
    pub async fn stuck(&self) -> anyhow::Result<Vec<String>> {
        match self {
            Project::Swarm(swarm) => Ok(swarm.stuck().await?),
            _ => Ok(Vec::new()),
        }
    }
}
