//! `launcher up`: start a registry and N nodes, follow their events, and
//! report when every pair has greeted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use registry::client::RegistryAddr;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::docker::{self, ContainerSpec, DockerError, Mode, Project, Role, CONTAINER_PORT};
use crate::images::binaries::{self, BinaryKind};
use crate::images::{self, Images};
use crate::local::Cluster;
use crate::mesh::Mesh;
use crate::ports::{self, PortRange};
use crate::stream::Line;
use crate::swarm::{self, Placement};
use crate::ui::{self, Logged, Ui};
use std::sync::Arc;
use wire::secure::JoinToken;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    /// Containers on the local Docker engine.
    #[default]
    Docker,
    /// Services of the Docker swarm this engine manages, which may run
    /// them on any of its hosts.
    Swarm,
    /// Processes on this machine.
    Local,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many nodes to start.
    #[arg(long, short = 'n', default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub nodes: u32,
    /// Host ports the nodes are published on, one each, picked at random among the free ones.
    #[arg(long, default_value = "8087-8095")]
    pub port_range: PortRange,
    /// Host port the registry is published on.
    #[arg(long, default_value_t = 8086, value_parser = wire::cli::port)]
    pub registry_port: u16,
    /// Groups the registry places nodes in, least loaded first.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub groups: u32,
    /// The lease of a registration at the registry the project starts: how
    /// long a node that falls silent (`launcher pause`) stays listed.
    #[arg(long, default_value = "15s", value_parser = wire::cli::duration, conflicts_with = "registry")]
    pub lease: Duration,
    /// Join an existing registry (on another VM, say) instead of starting one.
    #[arg(long, value_name = "HOST:PORT")]
    pub registry: Option<RegistryAddr>,
    /// The ip the nodes advertise [default: the host's address on the project
    /// network; with --runtime swarm --publish, the address of the host each
    /// node runs on].
    #[arg(long, env = "IP_EXT")]
    pub advertise_ip: Option<IpAddr>,
    /// With --runtime swarm: publish each node on a port of --port-range on
    /// the host it is pinned to, and advertise that host's address (its
    /// `io.hit6.advertise-ip` engine label, or else its swarm address), so that
    /// programs outside the swarm reach it too. Without it, nodes may run on
    /// any host and advertise their overlay address. --runtime docker always
    /// publishes.
    #[arg(long)]
    pub publish: bool,
    /// Return once the mesh is complete, leaving it running.
    #[arg(long, short = 'd')]
    pub detach: bool,
    #[command(flatten)]
    pub following: Following,
    /// Where the registry and nodes run.
    #[arg(long, value_enum, default_value_t)]
    pub runtime: Runtime,
    /// A file holding the join token; or set HIT6_JOIN_TOKEN. With
    /// --registry, that registry's; otherwise the token the project's
    /// registry is started with, instead of a fresh one (see `launcher token`).
    #[arg(long)]
    pub join_token_file: Option<std::path::PathBuf>,
    /// Refused: a token on the command line is visible to every user.
    #[arg(long, hide = true, value_parser = wire::cli::SecretNotInArgv)]
    pub join_token: Option<String>,
    #[command(flatten)]
    pub images: Images,
}

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

/// What every node of a project is started with.
struct Joining<'a> {
    registry: &'a RegistryAddr,
    /// The ip a published node advertises, when it is the same for all.
    advertise: Option<IpAddr>,
    token: &'a Option<Arc<JoinToken>>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("project `{project}` is already up ({members} containers, services or networks): run `launcher -p {project} down` first, or choose another --project")]
    AlreadyUp { project: String, members: usize },
    #[error("the project network has no gateway to advertise: pass --advertise-ip")]
    NoAdvertiseIp,
    #[error(
        "--advertise-ip (or IP_EXT) needs --publish with --runtime swarm: unpublished nodes advertise their overlay address"
    )]
    AdvertiseWithoutPublish,
    #[error("host port {port} is taken on this host, where the registry runs: choose another with --registry-port")]
    RegistryPortTaken { port: u16 },
    #[error("the mesh is not complete after {timeout:?}: {} pairs have not greeted: {}", missing.len(), pairs(missing))]
    Incomplete { timeout: Duration, missing: Vec<(String, String)> },
    #[error("every log stream ended before the mesh was complete")]
    LogsEnded,
}

pub(crate) fn pairs(missing: &[(String, String)]) -> String {
    let shown: Vec<String> = missing.iter().take(20).map(|(a, b)| format!("{a}-{b}")).collect();
    let more = missing.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// What is running, so that it can be torn down.
enum Deployment {
    Docker(Project),
    Local(Cluster),
}

impl Deployment {
    async fn teardown(&mut self, force: bool) -> anyhow::Result<()> {
        match self {
            Deployment::Docker(project) => project.remove_all(force).await.map(drop).map_err(Into::into),
            Deployment::Local(cluster) => {
                cluster.stop(force).await;
                Ok(())
            }
        }
    }
}

/// How following the mesh ended.
enum Ending {
    Complete,
    TimedOut(Vec<(String, String)>),
    Interrupted,
    LogsEnded,
}

impl Args {
    fn node_names(&self) -> Vec<String> {
        (1..=self.nodes).map(|i| format!("node-{i}")).collect()
    }

    pub async fn run(self, project: &str) -> anyhow::Result<()> {
        let invoked = Instant::now();
        let names = self.node_names();
        let mut sources = names.clone();
        sources.push("registry".into());
        let ui = Ui::new(self.following.quiet, &sources);
        let (lines, mut received) = mpsc::channel(4096);
        let mut interrupt = std::pin::pin!(wire::shutdown::signals()?);

        let started = tokio::select! {
            started = self.start(project, &ui, &lines) => started?,
            _ = &mut interrupt => {
                ui.note("interrupted while starting; removing what was created");
                return self.remove_partial(project).await;
            }
        };
        let (mut deployment, host_ports) = started;
        drop(lines);
        let mut mesh = Mesh::new(names.into_iter().zip(host_ports));
        let ending = self.follow(&mut mesh, &mut received, &ui, invoked, &mut interrupt).await;
        ui.finish();
        let local = matches!(deployment, Deployment::Local(_));
        match ending {
            Ending::Complete => {
                // Local processes cannot outlive the launcher: stop them once reported.
                if local {
                    deployment.teardown(false).await?;
                }
                Ok(())
            }
            Ending::Interrupted => {
                ui.note("stopping and removing the project (Ctrl-C again to force)");
                let mut again = std::pin::pin!(wire::shutdown::signals()?);
                tokio::select! {
                    done = deployment.teardown(false) => done,
                    _ = &mut again => deployment.teardown(true).await,
                }
            }
            Ending::TimedOut(missing) => {
                if local {
                    deployment.teardown(true).await?;
                }
                if let Deployment::Docker(project) = &deployment {
                    note_stuck_tasks(&ui, project).await;
                }
                Err(UpError::Incomplete { timeout: self.following.timeout, missing }.into())
            }
            Ending::LogsEnded => Err(UpError::LogsEnded.into()),
        }
    }

    /// Starts everything, returning what runs and each node's host port.
    async fn start(
        &self,
        project: &str,
        ui: &Ui,
        lines: &mpsc::Sender<Line>,
    ) -> anyhow::Result<(Deployment, Vec<Option<u16>>)> {
        let token = self.join_token()?;
        match self.runtime {
            Runtime::Docker | Runtime::Swarm => {
                let docker = docker::connect().await?;
                let (mode, manager) = match self.runtime {
                    Runtime::Swarm => (Mode::Swarm, Some(self.check_swarm(&docker).await?)),
                    _ => (Mode::Containers, None),
                };
                // A swarm's published nodes share the range per host, which `swarm::spread` checks.
                if mode == Mode::Containers {
                    ports::check_capacity(self.port_range, self.nodes as usize)?;
                }
                let project = Project { docker, name: project.to_owned(), mode };
                // A network left behind too: a second one of the same name would make the name ambiguous.
                let existing = project.containers().await?.len()
                    + project.services().await?.len()
                    + project.networks().await?.len();
                if existing > 0 {
                    return Err(UpError::AlreadyUp { project: project.name.clone(), members: existing }.into());
                }
                images::ensure(&project.docker, &self.images, ui.multi()).await?;
                match self.start_members(&project, manager.as_deref(), ui, lines, &token).await {
                    Ok(host_ports) => Ok((Deployment::Docker(project), host_ports)),
                    Err(error) => {
                        // Leave nothing half-started behind.
                        let _ = project.remove_all(true).await;
                        Err(error)
                    }
                }
            }
            Runtime::Local => {
                let bin = binaries::build_binaries(BinaryKind::Native, ui.multi()).await?;
                let mut cluster = Cluster::new(token);
                let registry = match &self.registry {
                    Some(addr) => addr.clone(),
                    None => cluster.start_registry(&bin, self.groups, self.lease, lines).await?,
                };
                for name in self.node_names() {
                    cluster.start_node(&bin, &registry, &name, lines)?;
                }
                Ok((Deployment::Local(cluster), vec![None; self.nodes as usize]))
            }
        }
    }

    /// The swarm node id of the manager the engine is, once it is known to
    /// be able to run the registry, and the flags to make sense there.
    async fn check_swarm(&self, docker: &bollard::Docker) -> anyhow::Result<String> {
        let manager = swarm::manager(docker).await?;
        if !swarm::hosts(docker).await?.iter().any(|host| host.id == manager) {
            return Err(DockerError::Swarm(swarm::SwarmError::ManagerCannotRun).into());
        }
        if self.advertise_ip.is_some() && !self.publish {
            return Err(UpError::AdvertiseWithoutPublish.into());
        }
        // The registry's task would fail to bind it, again and again, with no error here.
        let registry_port = PortRange { first: self.registry_port, last: self.registry_port };
        if self.registry.is_none() && !ports::bound_here(registry_port).is_empty() {
            return Err(UpError::RegistryPortTaken { port: self.registry_port }.into());
        }
        Ok(manager)
    }

    /// The token given in the file or the environment, if any; for a
    /// registry of the project's own, a fresh one when none is given.
    fn join_token(&self) -> anyhow::Result<Option<Arc<JoinToken>>> {
        let given = JoinToken::from_file_or_env(self.join_token_file.as_deref())?;
        let token = match self.registry {
            None => Some(given.unwrap_or_else(JoinToken::generate)),
            Some(_) => given,
        };
        Ok(token.map(Arc::new))
    }

    async fn remove_partial(&self, project: &str) -> anyhow::Result<()> {
        if self.runtime != Runtime::Local {
            Project::open(project).await?.remove_all(true).await?;
        }
        Ok(())
    }

    /// Starts the registry (unless joining one) and the nodes, as containers
    /// or as services of the swarm `manager` manages; returns each node's
    /// host port, if published.
    async fn start_members(
        &self,
        project: &Project,
        manager: Option<&str>,
        ui: &Ui,
        lines: &mpsc::Sender<Line>,
        token: &Option<Arc<JoinToken>>,
    ) -> anyhow::Result<Vec<Option<u16>>> {
        let advertise = match project.mode {
            Mode::Containers => {
                let gateway = project.create_network().await?;
                Some(self.advertise_ip.or(gateway).ok_or(UpError::NoAdvertiseIp)?)
            }
            Mode::Swarm => {
                project.create_overlay().await?;
                self.advertise_ip
            }
        };
        let registry = match &self.registry {
            Some(addr) => addr.clone(),
            None => {
                let spec = ContainerSpec {
                    role: Role::Registry,
                    image: self.images.registry.clone(),
                    env: vec![
                        "LOG_FORMAT=json".into(),
                        format!("REGISTRY_GROUPS={}", self.groups),
                        format!("REGISTRY_TTL={}", humantime::format_duration(self.lease)),
                    ],
                    token: token.clone(),
                    cmd: vec![],
                    host_port: Some(self.registry_port),
                    labels: HashMap::new(),
                };
                let started = match project.mode {
                    Mode::Containers => project.run(&spec).await,
                    Mode::Swarm => project.create_service(&spec, manager).await,
                };
                started.with_context(|| {
                    format!(
                        "failed to start the registry on host port {}: choose another with --registry-port",
                        self.registry_port
                    )
                })?;
                project.follow(project.container_name(Role::Registry), "registry".into(), true, lines.clone());
                // Nodes reach it by its name on the project network.
                RegistryAddr { host: project.container_name(Role::Registry), port: CONTAINER_PORT }
            }
        };
        let joining = Joining { registry: &registry, advertise, token };
        let ports = match project.mode {
            Mode::Containers => self.start_containers(project, &joining).await?.into_iter().map(Some).collect(),
            Mode::Swarm => self.start_services(project, &joining).await?,
        };
        for index in 1..=self.nodes as usize {
            project.follow(project.container_name(Role::Node(index)), format!("node-{index}"), true, lines.clone());
        }
        let advertised = match (project.mode, advertise) {
            (_, Some(ip)) => ip.to_string(),
            (Mode::Swarm, None) if self.publish => "the address of their host".into(),
            (_, None) => "their address on the overlay network".into(),
        };
        ui.note(&format!("nodes advertise {advertised} and register with {registry}"));
        Ok(ports)
    }

    /// The nodes as containers, each published on a free port of the range.
    async fn start_containers(&self, project: &Project, joining: &Joining<'_>) -> anyhow::Result<Vec<u16>> {
        let (chosen, spare) = ports::pick(self.port_range, self.nodes as usize, &project.published_ports().await?)?;
        let spare = Mutex::new(spare);
        let starts = chosen.into_iter().enumerate().map(|(i, port)| {
            let spare = &spare;
            async move { self.start_node(project, i + 1, port, joining, spare).await }
        });
        futures::future::try_join_all(starts).await
    }

    /// The nodes as services: with --publish, each pinned to a host and
    /// published on a port of the range there; otherwise wherever the swarm
    /// puts them.
    async fn start_services(&self, project: &Project, joining: &Joining<'_>) -> anyhow::Result<Vec<Option<u16>>> {
        let count = self.nodes as usize;
        let placements: Vec<Option<Placement>> = if self.publish {
            let placed = swarm::placements(project, self.port_range, &HashMap::new(), count).await?;
            placed.into_iter().map(Some).collect()
        } else {
            vec![None; count]
        };
        let starts = placements.into_iter().enumerate().map(|(i, placement)| async move {
            let published = placement.as_ref().map(|p| (joining.advertise.unwrap_or(p.host.advertise), p.port));
            let mut spec = self.node_spec(i + 1, joining, published);
            spec.labels.insert(swarm::LABEL_PORT_RANGE.into(), self.port_range.to_string());
            if let Some(ip) = joining.advertise {
                // So that `scale` advertises it too.
                spec.labels.insert(swarm::LABEL_ADVERTISE_IP.into(), ip.to_string());
            }
            project.create_service(&spec, placement.as_ref().map(|p| p.host.id.as_str())).await?;
            anyhow::Ok(published.map(|(_, port)| port))
        });
        futures::future::try_join_all(starts).await
    }

    /// Node `index`, registering as `joining` says; `published` at this ip
    /// and host port, or else advertising the address it is reached at.
    fn node_spec(&self, index: usize, joining: &Joining<'_>, published: Option<(IpAddr, u16)>) -> ContainerSpec {
        let mut env = docker::node_env(index, published);
        env.push("LOG_FORMAT=json".into());
        ContainerSpec {
            role: Role::Node(index),
            image: self.images.node.clone(),
            env,
            token: joining.token.clone(),
            cmd: vec![joining.registry.host.clone(), joining.registry.port.to_string()],
            host_port: published.map(|(_, port)| port),
            labels: HashMap::new(),
        }
    }

    /// Starts node `index` on `port`, moving to a spare port if the daemon
    /// finds it taken after all (another process may have bound it since).
    async fn start_node(
        &self,
        project: &Project,
        index: usize,
        mut port: u16,
        joining: &Joining<'_>,
        spare: &Mutex<Vec<u16>>,
    ) -> anyhow::Result<u16> {
        let advertise = joining.advertise.ok_or(UpError::NoAdvertiseIp)?;
        loop {
            match project.run(&self.node_spec(index, joining, Some((advertise, port)))).await {
                Ok(()) => return Ok(port),
                Err(DockerError::PortTaken { .. }) => {
                    let next = wire::lock(spare).pop();
                    port =
                        next.with_context(|| format!("no free port left in {} for node-{index}", self.port_range))?;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Shows every line, tracks the mesh, and reports when it is complete.
    async fn follow(
        &self,
        mesh: &mut Mesh,
        received: &mut mpsc::Receiver<Line>,
        ui: &Ui,
        invoked: Instant,
        interrupt: &mut (impl std::future::Future + Unpin),
    ) -> Ending {
        let deadline = tokio::time::sleep(self.following.timeout);
        tokio::pin!(deadline);
        let (mut complete, mut warned) = (false, false);
        loop {
            tokio::select! {
                line = received.recv() => {
                    let Some(line) = line else { return Ending::LogsEnded };
                    show(ui, mesh, &line, complete);
                    if !complete && mesh.is_complete() {
                        complete = true;
                        ui.finish();
                        if let Err(error) = ui::print_summary(mesh, invoked.elapsed(), self.following.json) {
                            if !wire::cli::is_closed_pipe(&error) {
                                ui.note(&format!("failed to print the summary: {error}"));
                            }
                        }
                        if self.detach {
                            return Ending::Complete;
                        }
                    }
                }
                _ = &mut *interrupt => return Ending::Interrupted,
                () = &mut deadline, if !complete && !warned => {
                    if self.detach {
                        return Ending::TimedOut(mesh.missing_pairs());
                    }
                    warned = true;
                    ui.note(&UpError::Incomplete { timeout: self.following.timeout, missing: mesh.missing_pairs() }.to_string());
                }
            }
        }
    }
}

/// Updates the mesh with a line and shows it. Once the mesh is complete,
/// the registry's joins and departures are shown even when quiet: in the
/// foreground, they are what is left to follow.
fn show(ui: &Ui, mesh: &mut Mesh, line: &Line, complete: bool) {
    let record = ui::record(line);
    if let Some(Logged::Node(record)) = &record {
        mesh.apply(&line.source, record);
        ui.progress(mesh);
    }
    let membership = matches!(&record, Some(Logged::Registry(r)) if r.event.membership().is_some());
    if ui.shows_lines() {
        // Lines go to stderr here, which cannot fail.
        let _ = ui.line(&line.source, &ui::render(line, record.as_ref()));
    } else if complete && membership {
        ui.note(&format!("{} | {}", line.source, ui::render(line, record.as_ref())));
    }
}

/// On a swarm, the services whose task is not running, and why: a pinned
/// node whose port is taken on its host, say, only shows there.
pub(crate) async fn note_stuck_tasks(ui: &Ui, project: &Project) {
    if project.mode != Mode::Swarm {
        return;
    }
    match project.stuck_tasks().await {
        Ok(stuck) if !stuck.is_empty() => ui.note(&format!("tasks not running: {}", stuck.join("; "))),
        Ok(_) => {}
        Err(error) => ui.note(&format!("cannot list the project's tasks: {error}")),
    }
}
