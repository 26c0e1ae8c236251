//! The Docker engine, through bollard: connecting, and the project's
//! labelled network and containers.
//!
//! Every resource carries `io.hit6.project`, `io.hit6.role` and, for nodes,
//! `io.hit6.index`, so `down`, `ps` and `logs` find a project's resources
//! without any state on disk.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use wire::secure::{JoinToken, TOKEN_ENV};

use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, ContainerSummary, HostConfig, NetworkCreateRequest, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, InspectNetworkOptions, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
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
}

fn call(action: impl Into<String>) -> impl FnOnce(BollardError) -> DockerError {
    let action = action.into();
    move |source| DockerError::Call { action, source }
}

/// Where the daemon is, for error messages.
fn daemon_host() -> String {
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
}

impl ContainerSpec {
    fn env_with_token(&self) -> Vec<String> {
        let token = self.token.iter().map(|token| format!("{TOKEN_ENV}={}", token.reveal().as_str()));
        self.env.iter().cloned().chain(token).collect()
    }
}

/// A project's resources on one daemon.
#[derive(Clone)]
pub struct Project {
    pub docker: Docker,
    pub name: String,
}

impl Project {
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

    fn labels(&self, role: Option<Role>) -> HashMap<String, String> {
        let mut labels = HashMap::from([(LABEL_PROJECT.to_owned(), self.name.clone())]);
        if let Some(role) = role {
            labels.insert(LABEL_ROLE.into(), role.label().into());
            if let Role::Node(index) = role {
                labels.insert(LABEL_INDEX.into(), index.to_string());
            }
        }
        labels
    }

    fn project_filter(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([("label".to_owned(), vec![format!("{LABEL_PROJECT}={}", self.name)])])
    }

    /// The join token the project's registry was started with, from its
    /// container's environment; `None` for a registry without one.
    pub async fn join_token(&self) -> Result<Option<JoinToken>, DockerError> {
        let name = self.container_name(Role::Registry);
        let inspected = self
            .docker
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
            .map_err(call(format!("inspect the container {name}")))?;
        let prefix = format!("{TOKEN_ENV}=");
        let env = inspected.config.and_then(|config| config.env).unwrap_or_default();
        let value = env.iter().find_map(|var| var.strip_prefix(&prefix));
        Ok(value.and_then(|text| JoinToken::parse(text).ok()))
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
            labels: Some(self.labels(Some(spec.role))),
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

    async fn remove_container(&self, name: &str, force: bool) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::default().force(force).v(true).build();
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) | Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(source) => Err(DockerError::Call { action: format!("remove the container {name}"), source }),
        }
    }

    /// Removes the project's containers, then its networks. `force` kills
    /// the containers instead of stopping them gracefully.
    pub async fn remove_all(&self, force: bool) -> Result<Removed, DockerError> {
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
            match self.docker.remove_network(network).await {
                Ok(()) | Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => {}
                Err(source) => {
                    return Err(DockerError::Call { action: format!("remove the network {network}"), source })
                }
            }
        }
        Ok(Removed { containers: names.len(), networks: networks.len() })
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
    pub containers: usize,
    pub networks: usize,
}

/// A container's name without Docker's leading slash.
pub fn container_name(container: &ContainerSummary) -> Option<String> {
    container.names.as_ref()?.first().map(|n| n.trim_start_matches('/').to_owned())
}

fn is_port_conflict(error: &BollardError) -> bool {
    let text = error.to_string();
    text.contains("port is already allocated") || text.contains("address already in use")
}
