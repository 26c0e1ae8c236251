//! The Docker engine, through bollard: connecting, and what the two Docker
//! runtimes ([`super::containers`], [`super::swarm`]) share: the project's
//! labelled containers and networks, the specs of its members, and the
//! container verbs (a swarm task's container is a container too).
//!
//! Every resource carries `io.hit6.project`, `io.hit6.role` and, for nodes,
//! `io.hit6.index`, so `down`, `ps` and `logs` find a project's resources
//! without any state on disk.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, ContainerSummary, HostConfig, LocalNodeState, Service};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectNetworkOptions, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    ListNetworksOptionsBuilder, ListServicesOptionsBuilder, ListVolumesOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptions, StopContainerOptionsBuilder, WaitContainerOptions,
};
use bollard::Docker;
use futures::StreamExt;
use registry::client::RegistryAddr;
use registry::identity::{RegistrySecret, KEY_ENV};
use tokio::sync::mpsc;
use wire::http::{ReadToken, READ_TOKEN_ENV};
use wire::secure::{JoinToken, TOKEN_ENV};

use super::cluster::{self, Cluster, EtcdAddr, CLIENT_PORT, PEER_PORT};
use super::member::Member;
use super::plan::Plan;
use crate::images::{self, ASSIGNER_CONTAINER_PORT, CONTAINER_PORT};
use crate::ports;
use crate::stream::{self, Line, Reading};
use crate::ui::Ui;

pub const LABEL_PROJECT: &str = "io.hit6.project";
pub const LABEL_ROLE: &str = "io.hit6.role";
pub const LABEL_INDEX: &str = "io.hit6.index";

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

/// What the engine's swarm cannot do for a project.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error(
        "the Docker engine at {host} is not a swarm manager: run `docker swarm init` there (or join it to a swarm \
         as a manager), or use --runtime docker"
    )]
    NotManager { host: String },
    #[error("the swarm has no host that is ready and active to run tasks")]
    NoHosts,
    #[error(
        "the manager this launcher talks to is not ready and active (drained?), so it cannot run the registry: \
         `docker node update --availability active` it, or point DOCKER_HOST at another manager"
    )]
    ManagerCannotRun,
    #[error("the host {host} carries the engine label {label}={value}, which is no ip address")]
    BadAdvertiseLabel { host: String, label: &'static str, value: String },
    #[error(
        "project `{project}` runs on a swarm, and the engine at {host} is no manager of it: point DOCKER_HOST at a manager"
    )]
    NotItsManager { project: String, host: String },
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

/// The swarm node id of the engine, which must be a manager.
pub async fn swarm_manager(docker: &Docker) -> Result<String, DockerError> {
    let info = docker.info().await.map_err(call("ask the engine about its swarm"))?;
    let swarm = info.swarm.unwrap_or_default();
    match (swarm.local_node_state, swarm.control_available, swarm.node_id) {
        (Some(LocalNodeState::ACTIVE), Some(true), Some(id)) => Ok(id),
        _ => Err(DockerError::Swarm(SwarmError::NotManager { host: daemon_host() })),
    }
}

/// A container (or a service's task) to run in the project.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub member: Member,
    pub image: String,
    pub env: Vec<String>,
    /// The project's join token, passed in the environment (never argv);
    /// apart from `env` so that `Debug` never shows it.
    pub token: Option<Arc<JoinToken>>,
    /// The registry's secret, likewise, for the registry alone.
    pub registry_secret: Option<Arc<RegistrySecret>>,
    pub cmd: Vec<String>,
    /// Host port to publish the service port on.
    pub host_port: Option<u16>,
    /// Host port to publish the registry's assigner port on.
    pub assigner_port: Option<u16>,
    /// Host port to publish the registry's HTTP listener on.
    pub http_port: Option<u16>,
    /// The read token of a registry's HTTP listener, in its environment.
    pub http_token: Option<Arc<ReadToken>>,
    /// Labels of the project's own bookkeeping, besides project, role and index.
    pub labels: HashMap<String, String>,
    /// Where it keeps data that must outlive its container: a swarm
    /// mounts a volume of its own there, since a task the swarm starts
    /// again is a new container (a container restarted keeps its files).
    pub data: Option<&'static str>,
}

impl ContainerSpec {
    /// Its environment, with the secrets it is handed.
    pub(crate) fn env_with_secrets(&self) -> Vec<String> {
        let token = self.token.iter().map(|token| format!("{TOKEN_ENV}={}", token.reveal().as_str()));
        let secret = self.registry_secret.iter().map(|secret| format!("{KEY_ENV}={}", secret.reveal().as_str()));
        let http = self.http_token.iter().map(|token| format!("{READ_TOKEN_ENV}={}", token.reveal().as_str()));
        self.env.iter().cloned().chain(token).chain(secret).chain(http).collect()
    }

    /// Registry `member` of a plan, published on `host_port`: its only
    /// one, or a replica on the etcd cluster at `etcd_endpoints`.
    pub fn registry(plan: &Plan, member: Member, host_port: u16, etcd_endpoints: Option<&str>) -> ContainerSpec {
        let mut env = vec![
            "LOG_FORMAT=json".into(),
            format!("REGISTRY_GROUPS={}", plan.groups),
            format!("REGISTRY_TTL={}", humantime::format_duration(plan.lease)),
        ];
        if let Some(endpoints) = etcd_endpoints {
            env.extend(["REGISTRY_STORE=etcd".into(), format!("REGISTRY_ETCD_ENDPOINTS={endpoints}")]);
        }
        // Every replica admits the lab's programs, so that nodes learn the same policy from each.
        let assigner_port = plan.assigner_of(member);
        if plan.assigner_port.is_some() {
            env.push("REGISTRY_ALLOW_ORIGINAL=true".into());
        }
        if assigner_port.is_some() {
            env.push(format!("REGISTRY_ASSIGNER_LISTEN=0.0.0.0:{ASSIGNER_CONTAINER_PORT}"));
        }
        ContainerSpec {
            member,
            image: plan.images.registry.clone(),
            env,
            token: plan.token.clone(),
            registry_secret: plan.registry_secret.clone(),
            cmd: vec![],
            host_port: Some(host_port),
            assigner_port,
            http_port: plan.http_port_of(member),
            http_token: plan.http.as_ref().map(|http| http.token.clone()),
            labels: HashMap::new(),
            data: None,
        }
    }

    /// Member `index` of the plan's etcd cluster, its peers at `addrs`;
    /// no port of it is published: only the project network reaches it.
    pub fn etcd(cluster: &Cluster, index: usize, addrs: &[EtcdAddr]) -> ContainerSpec {
        ContainerSpec {
            member: Member::Etcd(index),
            image: cluster.source.image.clone(),
            env: vec![],
            token: None,
            registry_secret: None,
            cmd: cluster.container_cmd(index, addrs),
            host_port: None,
            assigner_port: None,
            http_port: None,
            http_token: None,
            labels: HashMap::new(),
            data: Some(cluster::DATA_ROOT),
        }
    }

    /// Node `index` of a plan, registering with `registries` (its replicas
    /// from replica `index` mod N on); `published` at this ip and host
    /// port, or else advertising the address it is reached at.
    pub fn node(
        plan: &Plan,
        index: usize,
        registries: &[RegistryAddr],
        published: Option<(IpAddr, u16)>,
    ) -> ContainerSpec {
        let mut env = node_env(index, published);
        env.push("LOG_FORMAT=json".into());
        env.extend(plan.pin_env().map(|(var, key)| format!("{var}={key}")));
        ContainerSpec {
            member: Member::Node(index),
            image: plan.images.node.clone(),
            env,
            token: plan.token.clone(),
            registry_secret: None,
            cmd: cluster::registry_args(registries, index),
            host_port: published.map(|(_, port)| port),
            assigner_port: None,
            http_port: None,
            http_token: None,
            labels: HashMap::new(),
            data: None,
        }
    }
}

/// The variables that differ from node to node of a project.
const PER_NODE_ENV: [&str; 3] = ["NODE_NAME", "PUERTO_EXT", "IP_EXT"];

/// The variables of node `index`: its name, and, when it is published at
/// this ip and host port, that address to advertise.
pub fn node_env(index: usize, published: Option<(IpAddr, u16)>) -> Vec<String> {
    let [name, port_var, ip_var] = PER_NODE_ENV;
    let mut env = vec![format!("{name}={}", Member::Node(index))];
    if let Some((ip, port)) = published {
        env.extend([format!("{port_var}={port}"), format!("{ip_var}={ip}")]);
    }
    env
}

/// Whether an environment variable is one of [`node_env`]'s.
pub fn is_per_node(var: &str) -> bool {
    PER_NODE_ENV.iter().any(|key| var.strip_prefix(key).is_some_and(|rest| rest.starts_with('=')))
}

/// How much a removal removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub services: usize,
    pub containers: usize,
    pub networks: usize,
}

/// How long removing a network waits for a swarm's tasks to leave it.
const NETWORK_RELEASE: Duration = Duration::from_secs(60);

/// A project's resources on one engine.
#[derive(Clone)]
pub struct Engine {
    pub docker: Docker,
    pub name: String,
}

/// How a one-off container ended.
#[derive(Debug, Clone)]
pub struct Ran {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
}

impl Engine {
    /// Project `name` on the engine DOCKER_HOST names.
    pub async fn connect(name: &str) -> Result<Engine, DockerError> {
        Ok(Engine { docker: connect().await?, name: name.to_owned() })
    }

    /// Readies the engine for a plan: nothing left of a project of this
    /// name, and the images present (pulled or built).
    pub async fn prepare(&self, plan: &Plan, ui: &Ui) -> anyhow::Result<()> {
        self.check_absent().await?;
        images::ensure(&self.docker, &plan.images, ui.multi()).await?;
        if let Some(cluster) = &plan.cluster {
            images::etcd::ensure(&self.docker, &cluster.source, ui.multi()).await?;
        }
        Ok(())
    }

    pub fn network_name(&self) -> String {
        format!("{}-net", self.name)
    }

    /// Container (and service) names double as host names on the project network.
    pub fn resource_name(&self, member: Member) -> String {
        format!("{}-{member}", self.name)
    }

    /// Where the project's nodes reach registry `member`: by its name on the project network.
    pub fn registry_inside(&self, member: Member) -> RegistryAddr {
        RegistryAddr { host: self.resource_name(member), port: CONTAINER_PORT }
    }

    /// Where the members of an etcd cluster of `size` reach each other:
    /// by name on the project network, on etcd's own ports.
    pub fn etcd_addrs(&self, size: usize) -> Vec<EtcdAddr> {
        let addr = |i| EtcdAddr { host: self.resource_name(Member::Etcd(i)), client: CLIENT_PORT, peer: PEER_PORT };
        (1..=size).map(addr).collect()
    }

    pub(crate) fn labels(&self, member: Option<Member>) -> HashMap<String, String> {
        let mut labels = HashMap::from([(LABEL_PROJECT.to_owned(), self.name.clone())]);
        if let Some(member) = member {
            labels.insert(LABEL_ROLE.into(), member.role().into());
            if let Some(index) = member.index() {
                labels.insert(LABEL_INDEX.into(), index.to_string());
            }
        }
        labels
    }

    pub(crate) fn project_filter(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([("label".to_owned(), vec![format!("{LABEL_PROJECT}={}", self.name)])])
    }

    /// Refuses to start over what a project of this name left, if anything:
    /// a second network of the same name would make the name ambiguous.
    async fn check_absent(&self) -> anyhow::Result<()> {
        let existing = self.containers().await?.len() + self.services().await?.len() + self.networks().await?.len();
        if existing > 0 {
            return Err(super::plan::RuntimeError::AlreadyUp { project: self.name.clone(), members: existing }.into());
        }
        Ok(())
    }

    /// The project's containers, running or not.
    pub async fn containers(&self) -> Result<Vec<ContainerSummary>, DockerError> {
        let options = ListContainersOptionsBuilder::default().all(true).filters(&self.project_filter()).build();
        self.docker.list_containers(Some(options)).await.map_err(call("list the project's containers"))
    }

    /// The project's services; none when the engine is not a swarm manager.
    pub async fn services(&self) -> Result<Vec<Service>, DockerError> {
        let options = ListServicesOptionsBuilder::default().filters(&self.project_filter()).build();
        match self.docker.list_services(Some(options)).await {
            Ok(services) => Ok(services),
            // 503: not a manager, so there can be no services.
            Err(BollardError::DockerResponseServerError { status_code: 503, .. }) => Ok(Vec::new()),
            Err(source) => Err(DockerError::Call { action: "list the project's services".into(), source }),
        }
    }

    /// Names of the project's networks.
    pub async fn networks(&self) -> Result<Vec<String>, DockerError> {
        let options = ListNetworksOptionsBuilder::default().filters(&self.project_filter()).build();
        let networks = self.docker.list_networks(Some(options)).await.map_err(call("list the project's networks"))?;
        Ok(networks.into_iter().filter_map(|n| n.name).collect())
    }

    /// Names of the project's volumes (a swarm's etcd members keep their data in one each).
    pub async fn volumes(&self) -> Result<Vec<String>, DockerError> {
        let options = ListVolumesOptionsBuilder::default().filters(&self.project_filter()).build();
        let volumes = self.docker.list_volumes(Some(options)).await.map_err(call("list the project's volumes"))?;
        Ok(volumes.volumes.unwrap_or_default().into_iter().map(|v| v.name).collect())
    }

    /// Removes a volume, waiting (with `wait`) for the containers of
    /// removed services, which go in their own time, to let it go.
    async fn remove_volume(&self, volume: &str, wait: bool) -> Result<(), DockerError> {
        let started = tokio::time::Instant::now();
        loop {
            match self.docker.remove_volume(volume, None::<RemoveVolumeOptions>).await {
                Ok(()) | Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => return Ok(()),
                Err(BollardError::DockerResponseServerError { status_code: 409, .. })
                    if wait && started.elapsed() < NETWORK_RELEASE =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(source) => return Err(DockerError::Call { action: format!("remove the volume {volume}"), source }),
            }
        }
    }

    /// Host ports published by any container on this daemon, of any project.
    /// The plan's registry members, each with the host port it is to be
    /// published on: the first on `--registry-port`, the others on the next
    /// ports free here.
    pub async fn registry_ports(&self, plan: &Plan) -> Result<Vec<(Member, u16)>, DockerError> {
        let members = plan.registry_members();
        let published = self.published_ports().await?;
        let others = ports::next_free(plan.registry_port, members.len().saturating_sub(1), plan.port_range, &published);
        Ok(members.into_iter().zip(std::iter::once(plan.registry_port).chain(others)).collect())
    }

    pub async fn published_ports(&self) -> Result<HashSet<u16>, DockerError> {
        let options = ListContainersOptionsBuilder::default().all(true).build();
        let containers = self.docker.list_containers(Some(options)).await.map_err(call("list containers"))?;
        Ok(containers.iter().flat_map(|c| c.ports.iter().flatten()).filter_map(|p| p.public_port).collect())
    }

    /// The project's containers on this engine, by member: their name and
    /// state (`running`, `paused`). A swarm task's container counts, a live
    /// one before those of the member's earlier tasks.
    pub async fn member_containers(&self) -> Result<BTreeMap<Member, (String, String)>, DockerError> {
        let containers = self.containers().await?;
        let mut found: BTreeMap<Member, (String, String)> = BTreeMap::new();
        for container in &containers {
            let (Some(member), Some(name)) = (member_of(container.labels.as_ref()), container_name(container)) else {
                continue;
            };
            let state = container.state.map(|s| s.to_string()).unwrap_or_default();
            let live = |state: &str| matches!(state, "running" | "paused");
            if !found.get(&member).is_some_and(|(_, known)| live(known)) {
                found.insert(member, (name, state));
            }
        }
        Ok(found)
    }

    /// Forwards a container's log lines to `lines`, as `reading` says.
    pub fn follow_container(&self, name: String, source: String, reading: Reading, lines: mpsc::Sender<Line>) {
        stream::follow_container(self.docker.clone(), name, source, reading, lines)
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

    /// Runs `cmd` of `image` in a one-off container on the project network
    /// (a swarm's overlay is attachable), as a client inside it, to its
    /// end; the token goes in its environment.
    pub async fn run_inside(
        &self,
        image: String,
        cmd: Vec<String>,
        token: Option<&JoinToken>,
    ) -> Result<Ran, DockerError> {
        let name = format!("{}-client-{:08x}", self.name, fastrand::u32(..));
        let env = token.map(|token| vec![format!("{TOKEN_ENV}={}", token.reveal().as_str())]);
        let body = ContainerCreateBody {
            image: Some(image),
            cmd: Some(cmd),
            env,
            labels: Some(self.labels(None)),
            host_config: Some(HostConfig { network_mode: Some(self.network_name()), ..Default::default() }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let docker = &self.docker;
        docker.create_container(Some(options), body).await.map_err(call(format!("create the container {name}")))?;
        let ran = self.run_to_end(&name).await;
        let _ = self.remove_container(&name, true).await;
        ran
    }

    /// Starts a created container, waits for its end, and reads its output.
    async fn run_to_end(&self, name: &str) -> Result<Ran, DockerError> {
        let docker = &self.docker;
        docker.start_container(name, None).await.map_err(call(format!("start the container {name}")))?;
        let code = match docker.wait_container(name, None::<WaitContainerOptions>).next().await {
            Some(Ok(response)) => response.status_code,
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => code,
            Some(Err(source)) => {
                return Err(DockerError::Call { action: format!("wait for the container {name}"), source })
            }
            None => 0,
        };
        let options = LogsOptionsBuilder::default().stdout(true).stderr(true).build();
        let output: Vec<_> = docker.logs(name, Some(options)).collect().await;
        let mut ran = Ran { code, stdout: String::new(), stderr: String::new() };
        for chunk in output {
            match chunk.map_err(call(format!("read the output of the container {name}")))? {
                LogOutput::StdOut { message } => ran.stdout += &String::from_utf8_lossy(&message),
                other => ran.stderr += &String::from_utf8_lossy(&other.into_bytes()),
            }
        }
        Ok(ran)
    }

    pub(crate) async fn remove_container(&self, name: &str, force: bool) -> Result<(), DockerError> {
        let options = RemoveContainerOptionsBuilder::default().force(force).v(true).build();
        match self.docker.remove_container(name, Some(options)).await {
            // 409: a swarm task's container that its agent is removing already.
            Ok(()) | Err(BollardError::DockerResponseServerError { status_code: 404 | 409, .. }) => Ok(()),
            Err(source) => Err(DockerError::Call { action: format!("remove the container {name}"), source }),
        }
    }

    /// Removes the project's containers, then its networks. `force` kills
    /// the containers instead of stopping them gracefully; `wait` waits
    /// for the tasks of removed services, which stop in their own time, to
    /// leave the networks.
    pub async fn remove_containers_and_networks(&self, force: bool, wait: bool) -> Result<Removed, DockerError> {
        let names: Vec<String> = self.containers().await?.iter().filter_map(container_name).collect();
        let removals = names.iter().map(|name| async move {
            if !force {
                let options = StopContainerOptionsBuilder::default().t(5).build();
                let _ = self.docker.stop_container(name, Some(options)).await;
            }
            self.remove_container(name, true).await
        });
        futures::future::try_join_all(removals).await?;
        for volume in self.volumes().await? {
            self.remove_volume(&volume, wait).await?;
        }
        let networks = self.networks().await?;
        for network in &networks {
            self.remove_network(network, wait).await?;
        }
        Ok(Removed { services: 0, containers: names.len(), networks: networks.len() })
    }

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
}

/// How long a replica may take to listen: to reach etcd and replay its log.
const REPLICA_START: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits until every replica of `published` (each reached from here at its
/// address) accepts connections: a replica listens once it has replayed
/// etcd's log, and nodes started before would skip to the next replica, so
/// that the load would not spread.
pub(crate) async fn all_accepting(published: &[(Member, SocketAddr)]) -> Result<(), super::plan::RuntimeError> {
    for &(member, addr) in published {
        accepting(member, addr).await?;
    }
    Ok(())
}

/// The address from here of what is published on `port` of this host.
pub(crate) fn here(port: u16) -> SocketAddr {
    SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port))
}

async fn accepting(member: Member, addr: SocketAddr) -> Result<(), super::plan::RuntimeError> {
    let started = tokio::time::Instant::now();
    loop {
        // A published port accepts for docker-proxy before the service listens: a refusal comes as a close.
        if let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(std::time::Duration::from_millis(200), async {
                use tokio::io::AsyncReadExt;
                stream.read(&mut byte).await
            });
            // Our registry waits for the client's handshake: silence means it listens.
            if read.await.is_err() {
                return Ok(());
            }
        }
        if started.elapsed() > REPLICA_START {
            return Err(super::plan::RuntimeError::NotListening { member, addr, waited: REPLICA_START });
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The token in variable `var` of an environment (the join token, the HTTP
/// listener's read token), as a member was started with it.
pub fn secret_in(env: Option<Vec<String>>, var: &str) -> Option<JoinToken> {
    let prefix = format!("{var}=");
    let env = env.unwrap_or_default();
    let value = env.iter().find_map(|var| var.strip_prefix(&prefix));
    value.and_then(|text| JoinToken::parse(text).ok())
}

/// The member a resource's labels say it is; `None` for a one-off client.
pub fn member_of(labels: Option<&HashMap<String, String>>) -> Option<Member> {
    let labels = labels?;
    let index = match labels.get(LABEL_INDEX) {
        Some(index) => Some(index.parse().ok()?),
        None => None,
    };
    Member::from_role(labels.get(LABEL_ROLE)?, index)
}

/// Whether a container is a swarm task's.
pub fn is_task(container: &ContainerSummary) -> bool {
    container.labels.as_ref().is_some_and(|labels| labels.contains_key("com.docker.swarm.service.id"))
}

/// A container's name without Docker's leading slash.
pub fn container_name(container: &ContainerSummary) -> Option<String> {
    container.names.as_ref()?.first().map(|n| n.trim_start_matches('/').to_owned())
}
