//! `launcher up`: start a registry and N nodes, follow their events, and
//! report when every pair has greeted.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use registry::client::RegistryAddr;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::docker::{self, ContainerSpec, DockerError, Project, Role, CONTAINER_PORT};
use crate::images::binaries::{self, BinaryKind};
use crate::images::{self, Images};
use crate::local::Cluster;
use crate::mesh::Mesh;
use crate::ports::{self, PortRange};
use crate::stream::{self, Line};
use crate::ui::{self, Logged, Ui};
use std::sync::Arc;
use wire::secure::JoinToken;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    /// Containers on the local Docker engine.
    #[default]
    Docker,
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
    /// The ip the nodes advertise [default: the host's address on the project network].
    #[arg(long, env = "IP_EXT")]
    pub advertise_ip: Option<IpAddr>,
    /// Return once the mesh is complete, leaving it running.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// How long the mesh may take; with --detach, a longer wait is a failure.
    #[arg(long, default_value = "60s", value_parser = wire::cli::duration)]
    pub timeout: Duration,
    /// Show no log lines, only the outcome.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Where the registry and nodes run.
    #[arg(long, value_enum, default_value_t)]
    pub runtime: Runtime,
    /// With --registry: a file holding its join token; or set HIT6_JOIN_TOKEN.
    /// A registry the project starts gets a fresh token (see `launcher token`).
    #[arg(long, requires = "registry")]
    pub join_token_file: Option<std::path::PathBuf>,
    /// Refused: a token on the command line is visible to every user.
    #[arg(long, hide = true, value_parser = wire::cli::SecretNotInArgv)]
    pub join_token: Option<String>,
    #[command(flatten)]
    pub images: Images,
}

/// What every node of a project is started with.
struct Joining<'a> {
    registry: &'a RegistryAddr,
    /// The ip the node advertises.
    advertise: IpAddr,
    token: &'a Option<Arc<JoinToken>>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("project `{project}` is already up ({containers} containers): run `launcher -p {project} down` first, or choose another --project")]
    AlreadyUp { project: String, containers: usize },
    #[error("the project network has no gateway to advertise: pass --advertise-ip")]
    NoAdvertiseIp,
    #[error("the mesh is not complete after {timeout:?}: {} pairs have not greeted: {}", missing.len(), pairs(missing))]
    Incomplete { timeout: Duration, missing: Vec<(String, String)> },
    #[error("every log stream ended before the mesh was complete")]
    LogsEnded,
}

fn pairs(missing: &[(String, String)]) -> String {
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
        let ui = Ui::new(self.quiet, &sources);
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
                Err(UpError::Incomplete { timeout: self.timeout, missing }.into())
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
            Runtime::Docker => {
                ports::check_capacity(self.port_range, self.nodes as usize)?;
                let project = Project { docker: docker::connect().await?, name: project.to_owned() };
                let existing = project.containers().await?.len();
                if existing > 0 {
                    return Err(UpError::AlreadyUp { project: project.name.clone(), containers: existing }.into());
                }
                images::ensure(&project.docker, &self.images, ui.multi()).await?;
                match self.start_containers(&project, ui, lines, &token).await {
                    Ok(host_ports) => Ok((Deployment::Docker(project), host_ports.into_iter().map(Some).collect())),
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

    /// A fresh token for a registry of the project's own; for `--registry`,
    /// the one given in the environment or file, if any.
    fn join_token(&self) -> anyhow::Result<Option<Arc<JoinToken>>> {
        let token = match self.registry {
            None => Some(JoinToken::generate()),
            Some(_) => JoinToken::from_file_or_env(self.join_token_file.as_deref())?,
        };
        Ok(token.map(Arc::new))
    }

    async fn remove_partial(&self, project: &str) -> anyhow::Result<()> {
        if self.runtime == Runtime::Docker {
            let project = Project { docker: docker::connect().await?, name: project.to_owned() };
            project.remove_all(true).await?;
        }
        Ok(())
    }

    async fn start_containers(
        &self,
        project: &Project,
        ui: &Ui,
        lines: &mpsc::Sender<Line>,
        token: &Option<Arc<JoinToken>>,
    ) -> anyhow::Result<Vec<u16>> {
        let gateway = project.create_network().await?;
        let advertise = self.advertise_ip.or(gateway).ok_or(UpError::NoAdvertiseIp)?;
        let follow = |role: Role, source: String| {
            stream::follow_container(project.docker.clone(), project.container_name(role), source, true, lines.clone());
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
                };
                project.run(&spec).await.with_context(|| {
                    format!(
                        "failed to start the registry on host port {}: choose another with --registry-port",
                        self.registry_port
                    )
                })?;
                follow(Role::Registry, "registry".into());
                // Nodes reach it by its container name on the project network.
                RegistryAddr { host: project.container_name(Role::Registry), port: CONTAINER_PORT }
            }
        };
        ui.note(&format!("nodes advertise {advertise} and register with {registry}"));

        let (chosen, spare) = ports::pick(self.port_range, self.nodes as usize, &project.published_ports().await?)?;
        let spare = Mutex::new(spare);
        let starts = chosen.into_iter().enumerate().map(|(i, port)| {
            let (registry, spare) = (&registry, &spare);
            async move {
                let index = i + 1;
                let joining = Joining { registry, advertise, token };
                let port = self.start_node(project, index, port, &joining, spare).await?;
                follow(Role::Node(index), format!("node-{index}"));
                anyhow::Ok(port)
            }
        });
        futures::future::try_join_all(starts).await
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
        let Joining { registry, advertise, token } = *joining;
        loop {
            let spec = ContainerSpec {
                role: Role::Node(index),
                image: self.images.node.clone(),
                env: vec![
                    format!("PUERTO_EXT={port}"),
                    format!("IP_EXT={advertise}"),
                    format!("NODE_NAME=node-{index}"),
                    "LOG_FORMAT=json".into(),
                ],
                token: token.clone(),
                cmd: vec![registry.host.clone(), registry.port.to_string()],
                host_port: Some(port),
            };
            match project.run(&spec).await {
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
        let deadline = tokio::time::sleep(self.timeout);
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
                        if let Err(error) = self.report(mesh, invoked.elapsed()) {
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
                    ui.note(&UpError::Incomplete { timeout: self.timeout, missing: mesh.missing_pairs() }.to_string());
                }
            }
        }
    }

    fn report(&self, mesh: &Mesh, elapsed: Duration) -> std::io::Result<()> {
        if self.json {
            wire::cli::print(&format!("{}\n", ui::summary_json(mesh, elapsed)))
        } else {
            wire::cli::print(&ui::summary(mesh, elapsed))
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
