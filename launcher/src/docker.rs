//! The Docker engine, through bollard: connecting, and the project's
//! labelled network and containers (its services, in swarm mode, are in
//! [`crate::swarm`]).
//!
//! Every resource carries `io.hit6.project`, `io.hit6.role` and, for nodes,
//! `io.hit6.index`, so `down`, `ps` and `logs` find a project's resources
//! without any state on disk.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use wire::secure::{JoinToken, TOKEN_ENV};

use crate::stream::{self, Line};
use crate::swarm::SwarmError;

use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, ContainerSummary, HostConfig, NetworkCreateRequest, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, InspectNetworkOptions, InspectServiceOptions,
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;

pub const LABEL_PROJECT: &str = "io.hit6.project";
pub const LABEL_ROLE: &str = "io.hit6.role";
pub const LABEL_INDEX: &str = "io.hit6.index";

/// The port the services listen on inside their containers.
pub const CONTAINER_PORT: u16 = 8080;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "cannot reach the Docker daemon at {host}: is it running, and may this user use it? \
         Set DOCKER_HOST to point at another daemon, or use --runtime local"
    )]
    Unreachable {
        host: String,
        #[source]
        source: BollardError,
    },
    #[error("failed to {action}")]
    Call {
        action: String,
        #[source]
        source: BollardError,
    },
    #[error("host port {port} is already taken")]
    PortTaken { port: u16, source: BollardError },
    #[error(transparent)]
    Swarm(#[from] SwarmError),
    #[error(transparent)]
    Credentials(#[from] crate::images::credentials::CredentialsError),
    #[error(
        "the network {network} is still in use after {waited:?}: remove what is attached to it, then run down again"
    )]
    NetworkBusy { network: String, waited: Duration, source: BollardError },
    #[error("the swarm removed the network {network}, but this engine still has it after {waited:?}")]
    NetworkLingers { network: String, waited: Duration },
}

pub(crate) fn call(action: impl Into<String>) -> impl FnOnce(BollardError) -> DockerError {
    let action = action.into();
    move |source| DockerError::Call { action, source }
}

/// Where the daemon is, for error messages.
pub(crate) fn daemon_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock (DOCKER_HOST is unset)".into())
}

/// Connects to the daemon named by DOCKER_HOST (or the local socket),
/// agrees on an API version, and checks that it answers.
pub async fn connect() -> Result<Docker, DockerError> {
    let unreachable = |source| DockerError::Unreachable { host: daemon_host(), source };
    let docker = Docker::connect_with_defaults().map_err(unreachable)?;
    let docker = docker.negotiate_version().await.map_err(unreachable)?;
    docker.ping().await.map_err(unreachable)?;
    Ok(docker)
}

/// What a container is in a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Registry,
    Node(usize),
}

impl Role {
    pub fn label(&self) -> &'static str {
        match self {
            Role::Registry => "registry",
            Role::Node(_) => "node",
        }
    }
}

/// A container to run in the project.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub role: Role,
    pub image: String,
    pub env: Vec<String>,
    /// The project's join token, passed in the environment (never argv);
    /// apart from `env` so that `Debug` never shows it.
    pub token: Option<Arc<JoinToken>>,
    pub cmd: Vec<String>,
    /// Host port to publish the service port on.
    pub host_port: Option<u16>,
    /// Labels of the project's own bookkeeping, besides project, role and index.
    pub labels: HashMap<String, String>,
}

impl ContainerSpec {
    pub(crate) fn env_with_token(&self) -> Vec<String> {
        let token = self.token.iter().map(|token| format!("{TOKEN_ENV}={}", token.reveal().as_str()));
        self.env.iter().cloned().chain(token).collect()
    }
}

/// How a project runs on its engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A container per member, on a bridge network of this engine.
    Containers,
    /// A swarm service per member, on an overlay network ([`crate::swarm`]).
    Swarm,
}

/// A project's resources on one daemon.
#[derive(Clone)]
pub struct Project {
    pub docker: Docker,
    pub name: String,
    pub mode: Mode,
}

/// How long `remove_all` waits for a swarm's tasks to leave the network.
const NETWORK_RELEASE: Duration = Duration::from_secs(60);

impl Project {
    /// The project on the engine DOCKER_HOST names, in the mode it was
    /// started in: swarm if it has services there.
    pub async fn open(name: &str) -> Result<Project, DockerError> {
        let mut project = Project { docker: connect().await?, name: name.to_owned(), mode: Mode::Containers };
        if !project.services().await?.is_empty() {
            project.mode = Mode::Swarm;
        } else if project.containers().await?.iter().any(is_task)
            && crate::swarm::manager(&project.docker).await.is_err()
        {
            // Its services are seen only from a manager; their tasks' containers from here too.
            return Err(SwarmError::NotItsManager { project: project.name, host: daemon_host() }.into());
        }
        Ok(project)
    }

    pub fn network_name(&self) -> String {
        format!("{}-net", self.name)
    }

    /// Container names double as host names on the project network.
    pub fn container_name(&self, role: Role) -> String {
        match role {
            Role::Registry => format!("{}-registry", self.name),
            Role::Node(index) => format!("{}-node-{index}", self.name),
        }
    }

    pub(crate) fn labels(&self, role: Option<Role>) -> HashMap<String, String> {
        let mut labels = HashMap::from([(LABEL_PROJECT.to_owned(), self.name.clone())]);
        if let Some(role) = role {
            labels.insert(LABEL_ROLE.into(), role.label().into());
            if let Role::Node(index) = role {
                labels.insert(LABEL_INDEX.into(), index.to_string());
            }
        }
        labels
    }

    pub(crate) fn project_filter(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([("label".to_owned(), vec![format!("{LABEL_PROJECT}={}", self.name)])])
    }

    /// The join token the project's registry was started with, from its
    /// container's or service's environment; `None` for a registry without one.
    pub async fn join_token(&self) -> Result<Option<JoinToken>, DockerError> {
        let name = self.container_name(Role::Registry);
        let env = match self.mode {
            Mode::Containers => {
                let inspected = self
                    .docker
                    .inspect_container(&name, None::<InspectContainerOptions>)
                    .await
                    .map_err(call(format!("inspect the container {name}")))?;
                inspected.config.and_then(|config| config.env)
            }
            Mode::Swarm => {
                let inspected = self
                    .docker
                    .inspect_service(&name, None::<InspectServiceOptions>)
                    .await
                    .map_err(call(format!("inspect the service {name}")))?;
                inspected.spec.and_then(|s| s.task_template?.container_spec?.env)
            }
        };
        let prefix = format!("{TOKEN_ENV}=");
        let env = env.unwrap_or_default();
        let value = env.iter().find_map(|var| var.strip_prefix(&prefix));
        Ok(value.and_then(|text| JoinToken::parse(text).ok()))
    }

    /// The host port the project's registry is published on, on this host.
    pub async fn registry_port(&self) -> Result<Option<u16>, DockerError> {
        let role = |labels: Option<&HashMap<String, String>>| labels.and_then(|l| l.get(LABEL_ROLE)).cloned();
        let registry = Some(Role::Registry.label().to_owned());
        Ok(match self.mode {
            Mode::Containers => {
                let containers = self.containers().await?;
                let found = containers.iter().find(|c| role(c.labels.as_ref()) == registry);
                found.and_then(|c| {
                    let ports = c.ports.iter().flatten();
                    ports.filter(|p| p.private_port == CONTAINER_PORT).find_map(|p| p.public_port)
                })
            }
            Mode::Swarm => {
                let services = self.services().await?;
                let found =
                    services.into_iter().find(|s| role(s.spec.as_ref().and_then(|s| s.labels.as_ref())) == registry);
                let ports = found.and_then(|s| s.endpoint?.ports).unwrap_or_default();
                let mut ports = ports.iter().filter(|p| p.target_port == Some(CONTAINER_PORT.into()));
                ports.find_map(|p| u16::try_from(p.published_port?).ok())
            }
        })
    }

    /// As [`Project::follow`], from the second `since` (Unix time) on, until it ends.
    pub fn follow_since(&self, name: String, source: String, since: i64, lines: mpsc::Sender<Line>) {
        match self.mode {
            Mode::Containers => stream::follow_container_since(self.docker.clone(), name, source, since, lines),
            Mode::Swarm => stream::follow_service_since(self.docker.clone(), name, source, since, lines),
        }
    }

    /// Forwards the log lines of the member `name` (its container's, or every
    /// task's of its service) to `lines`, from the start; with `follow`, until it ends.
    pub fn follow(&self, name: String, source: String, follow: bool, lines: mpsc::Sender<Line>) {
        match self.mode {
            Mode::Containers => stream::follow_container(self.docker.clone(), name, source, follow, lines),
            Mode::Swarm => stream::follow_service(self.docker.clone(), name, source, follow, lines),
        }
    }

    /// Kills a container with SIGKILL, as a crash would.
    pub async fn kill(&self, name: &str) -> Result<(), DockerError> {
        let options = KillContainerOptionsBuilder::default().signal("KILL").build();
        self.docker.kill_container(name, Some(options)).await.map_err(call(format!("kill the container {name}")))
    }

    /// Freezes a container's processes (the cgroup freezer): they stay, but
    /// answer nothing, as behind a partition.
    pub async fn pause(&self, name: &str) -> Result<(), DockerError> {
        self.docker.pause_container(name).await.map_err(call(format!("pause the container {name}")))
    }

    pub async fn unpause(&self, name: &str) -> Result<(), DockerError> {
        self.docker.unpause_container(name).await.map_err(call(format!("unpause the container {name}")))
    }

    /// Stops a container (SIGTERM, then SIGKILL after Docker's grace) and starts it again.
    pub async fn restart(&self, name: &str) -> Result<(), DockerError> {
        self.docker.restart_container(name, None).await.map_err(call(format!("restart the container {name}")))
    }

    /// The project's containers, running or not.
    pub async fn containers(&self) -> Result<Vec<ContainerSummary>, DockerError> {
        let options = ListContainersOptionsBuilder::default().all(true).filters(&self.project_filter()).build();
        self.docker.list_containers(Some(options)).await.map_err(call("list the project's containers"))
    }

    /// Names of the project's networks.
    pub async fn networks(&self) -> Result<Vec<String>, DockerError> {
        let options = ListNetworksOptionsBuilder::default().filters(&self.project_filter()).build();
        let networks = self.docker.list_networks(Some(options)).await.map_err(call("list the project's networks"))?;
        Ok(networks.into_iter().filter_map(|n| n.name).collect())
    }

    /// Creates the project network and returns its gateway: the host's
    /// address on it, through which containers reach published ports.
    pub async fn create_network(&self) -> Result<Option<IpAddr>, DockerError> {
        let name = self.network_name();
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            labels: Some(self.labels(None)),
            ..Default::default()
        };
        self.docker.create_network(request).await.map_err(call(format!("create the network {name}")))?;
        let network = self
            .docker
            .inspect_network(&name, None::<InspectNetworkOptions>)
            .await
            .map_err(call(format!("inspect the network {name}")))?;
        let gateway =
            network.ipam.and_then(|ipam| ipam.config).into_iter().flatten().find_map(|c| c.gateway?.parse().ok());
        Ok(gateway)
    }

    /// Creates and starts a container on the project network.
    pub async fn run(&self, spec: &ContainerSpec) -> Result<(), DockerError> {
        let name = self.container_name(spec.role);
        let port_key = format!("{CONTAINER_PORT}/tcp");
        let port_bindings = spec.host_port.map(|port| {
            HashMap::from([(
                port_key.clone(),
                Some(vec![PortBinding { host_ip: None, host_port: Some(port.to_string()) }]),
            )])
        });
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: Some(spec.cmd.clone()),
            env: Some(spec.env_with_token()),
            labels: Some(self.labels(Some(spec.role)).into_iter().chain(spec.labels.clone()).collect()),
            exposed_ports: Some(vec![port_key]),
            host_config: Some(HostConfig {
                port_bindings,
                network_mode: Some(self.network_name()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        self.docker
            .create_container(Some(options), body)
            .await
            .map_err(call(format!("create the container {name}")))?;
        if let Err(source) = self.docker.start_container(&name, None).await {
            // A container that never started is useless; don't leave it behind.
            let _ = self.remove_container(&name, true).await;
            return Err(match spec.host_port {
                Some(port) if is_port_conflict(&source) => DockerError::PortTaken { port, source },
                _ => DockerError::Call { action: format!("start the container {name}"), source },
            });
        }
        Ok(())
    }

    pub(crate) async fn remove_container(&self, name: &str, force: bool) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::default().force(force).v(true).build();
        match self.docker.remove_container(name, Some(options)).await {
            // 409: a swarm task's container that its agent is removing already.
            Ok(()) | Err(BollardError::DockerResponseServerError { status_code: 404 | 409, .. }) => Ok(()),
            Err(source) => Err(DockerError::Call { action: format!("remove the container {name}"), source }),
        }
    }

    /// Removes the project's services, then its containers, then its
    /// networks. `force` kills the containers instead of stopping them
    /// gracefully (a service's tasks always stop gracefully).
    pub async fn remove_all(&self, force: bool) -> Result<Removed, DockerError> {
        let services: Vec<String> = self.services().await?.into_iter().filter_map(|s| s.spec?.name).collect();
        futures::future::try_join_all(services.iter().map(|name| self.remove_service(name))).await?;
        let names: Vec<String> = self.containers().await?.iter().filter_map(container_name).collect();
        let removals = names.iter().map(|name| async move {
            if !force {
                let options = StopContainerOptionsBuilder::default().t(5).build();
                let _ = self.docker.stop_container(name, Some(options)).await;
            }
            self.remove_container(name, true).await
        });
        futures::future::try_join_all(removals).await?;
        let networks = self.networks().await?;
        for network in &networks {
            self.remove_network(network, !services.is_empty()).await?;
        }
        Ok(Removed { services: services.len(), containers: names.len(), networks: networks.len() })
    }

    /// Removes a network; with `wait`, waits for the tasks of removed
    /// services, which stop in their own time, to leave it.
    async fn remove_network(&self, network: &str, wait: bool) -> Result<(), DockerError> {
        let started = tokio::time::Instant::now();
        loop {
            match self.docker.remove_network(network).await {
                Ok(()) if wait => return self.network_gone(network, started).await,
                Ok(()) | Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => return Ok(()),
                Err(source @ BollardError::DockerResponseServerError { status_code: 403 | 409, .. }) if wait => {
                    if started.elapsed() > NETWORK_RELEASE {
                        return Err(DockerError::NetworkBusy {
                            network: network.into(),
                            waited: NETWORK_RELEASE,
                            source,
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(source) => {
                    return Err(DockerError::Call { action: format!("remove the network {network}"), source })
                }
            }
        }
    }

    /// Waits for a removed overlay network to be gone from this engine too,
    /// which a swarm does in its own time, so that `down` leaves nothing.
    async fn network_gone(&self, network: &str, started: tokio::time::Instant) -> Result<(), DockerError> {
        loop {
            match self.docker.inspect_network(network, None::<InspectNetworkOptions>).await {
                Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => return Ok(()),
                Ok(_) if started.elapsed() > NETWORK_RELEASE => {
                    return Err(DockerError::NetworkLingers { network: network.into(), waited: NETWORK_RELEASE })
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(source) => {
                    return Err(DockerError::Call { action: format!("inspect the network {network}"), source })
                }
            }
        }
    }

    /// Host ports published by any container on this daemon, of any project.
    pub async fn published_ports(&self) -> Result<HashSet<u16>, DockerError> {
        let options = ListContainersOptionsBuilder::default().all(true).build();
        let containers = self.docker.list_containers(Some(options)).await.map_err(call("list containers"))?;
        Ok(containers.iter().flat_map(|c| c.ports.iter().flatten()).filter_map(|p| p.public_port).collect())
    }
}

/// How much `remove_all` removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    pub services: usize,
    pub containers: usize,
    pub networks: usize,
}

/// The variables that differ from node to node of a project.
const PER_NODE_ENV: [&str; 3] = ["NODE_NAME", "PUERTO_EXT", "IP_EXT"];

/// The variables of node `index`: its name, and, when it is published at
/// this ip and host port, that address to advertise.
pub fn node_env(index: usize, published: Option<(IpAddr, u16)>) -> Vec<String> {
    let [name, port_var, ip_var] = PER_NODE_ENV;
    let mut env = vec![format!("{name}=node-{index}")];
    if let Some((ip, port)) = published {
        env.extend([format!("{port_var}={port}"), format!("{ip_var}={ip}")]);
    }
    env
}

/// Whether an environment variable is one of [`node_env`]'s.
pub fn is_per_node(var: &str) -> bool {
    PER_NODE_ENV.iter().any(|key| var.strip_prefix(key).is_some_and(|rest| rest.starts_with('=')))
}

/// Whether a container is a swarm task's.
fn is_task(container: &ContainerSummary) -> bool {
    container.labels.as_ref().is_some_and(|labels| labels.contains_key("com.docker.swarm.service.id"))
}

/// A container's name without Docker's leading slash.
pub fn container_name(container: &ContainerSummary) -> Option<String> {
    container.names.as_ref()?.first().map(|n| n.trim_start_matches('/').to_owned())
}

fn is_port_conflict(error: &BollardError) -> bool {
    let text = error.to_string();
    text.contains("port is already allocated") || text.contains("address already in use")
}
