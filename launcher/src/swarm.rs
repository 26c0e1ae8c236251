//! Swarm mode: the project as services of a Docker swarm, on an attachable
//! overlay network, so that its nodes may run on several hosts.
//!
//! - Every service uses the `dnsrr` endpoint mode: a name resolves to its
//!   task's own address. The default, a virtual ip, needs IPVS, which some
//!   kernels lack (tasks then get `No route to host`).
//! - One service per node (`<project>-node-<i>`, one replica), not one
//!   service of N replicas: a node published outside the swarm needs a host
//!   port of its own, and a port is published per service. Host mode
//!   publishing (the routing mesh needs IPVS too) binds it on the host the
//!   task runs on, so a published node is pinned to a host, and advertises
//!   that host's address. An unpublished node may run anywhere, and
//!   advertises its overlay address.
//! - The registry is pinned to the manager the launcher talks to, so that
//!   `ps` finds its published port on that host. `send` runs inside the
//!   swarm instead ([`Project::run_inside`]): the nodes' overlay addresses
//!   are reachable only there.
//! - Swarm restarts a task that dies, on any host it may use; the new task is
//!   a new node (fresh identity), registering under the same name once the
//!   old entry is gone (its session closed, or its lease ended).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, EndpointPortConfig, EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum,
    HostConfig, LocalNodeState, NetworkAttachmentConfig, NetworkCreateRequest, NodeSpecAvailabilityEnum, NodeState,
    Service, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec,
    TaskSpecPlacement, TaskState,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectServiceOptions, ListNodesOptions, ListServicesOptionsBuilder,
    ListTasksOptionsBuilder, LogsOptionsBuilder, UpdateServiceOptionsBuilder, WaitContainerOptions,
};
use bollard::Docker;
use futures::StreamExt;
use wire::secure::{JoinToken, TOKEN_ENV};

use crate::docker::{ContainerSpec, DockerError, Project, Role, CONTAINER_PORT, LABEL_INDEX};
use crate::images::credentials;
use crate::ports::{PortError, PortRange};

/// A Docker engine label a host may carry (`"labels"` in daemon.json): the
/// address nodes published on it advertise, when peers reach it at another
/// one than the swarm's (a cloud VM's public address). On a node service:
/// the address given with `up --advertise-ip`, for every host.
pub const LABEL_ADVERTISE_IP: &str = "io.hit6.advertise-ip";
/// On a node service: the range its published port was picked from, for `scale`.
pub const LABEL_PORT_RANGE: &str = "io.hit6.port-range";

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
    #[error("the host {host} carries the engine label {LABEL_ADVERTISE_IP}={value}, which is no ip address")]
    BadAdvertiseLabel { host: String, value: String },
    #[error(
        "project `{project}` runs on a swarm, and the engine at {host} is no manager of it: point DOCKER_HOST at a manager"
    )]
    NotItsManager { project: String, host: String },
}

/// A host of the swarm that may run tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The swarm's node id.
    pub id: String,
    pub hostname: String,
    /// What nodes published on it advertise: its `io.hit6.advertise-ip`
    /// engine label, or else its address in the swarm.
    pub advertise: IpAddr,
}

/// The swarm node id of the engine, which must be a manager.
pub async fn manager(docker: &Docker) -> Result<String, DockerError> {
    let info = docker.info().await.map_err(crate::docker::call("ask the engine about its swarm"))?;
    let swarm = info.swarm.unwrap_or_default();
    match (swarm.local_node_state, swarm.control_available, swarm.node_id) {
        (Some(LocalNodeState::ACTIVE), Some(true), Some(id)) => Ok(id),
        _ => Err(DockerError::Swarm(SwarmError::NotManager { host: crate::docker::daemon_host() })),
    }
}

/// The hosts that may run tasks, in the swarm's order.
pub async fn hosts(docker: &Docker) -> Result<Vec<Host>, DockerError> {
    let nodes =
        docker.list_nodes(None::<ListNodesOptions>).await.map_err(crate::docker::call("list the swarm's hosts"))?;
    let mut hosts = Vec::new();
    for node in nodes {
        let ready = node.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY);
        let active = node.spec.as_ref().and_then(|s| s.availability) == Some(NodeSpecAvailabilityEnum::ACTIVE);
        let (Some(id), true) = (node.id, ready && active) else { continue };
        let description = node.description.unwrap_or_default();
        let hostname = description.hostname.unwrap_or_default();
        let labelled = description.engine.and_then(|e| e.labels).and_then(|l| l.get(LABEL_ADVERTISE_IP).cloned());
        let advertise = match labelled {
            Some(value) => {
                value.parse().map_err(|_| SwarmError::BadAdvertiseLabel { host: hostname.clone(), value })?
            }
            // Its address in the swarm, which a ready host has.
            None => match node.status.and_then(|s| s.addr).and_then(|addr| addr.parse().ok()) {
                Some(ip) => ip,
                None => continue,
            },
        };
        hosts.push(Host { id, hostname, advertise });
    }
    if hosts.is_empty() {
        return Err(DockerError::Swarm(SwarmError::NoHosts));
    }
    Ok(hosts)
}

/// The host name of every host of the swarm, whatever its state, by id.
pub async fn host_names(docker: &Docker) -> Result<HashMap<String, String>, DockerError> {
    let nodes =
        docker.list_nodes(None::<ListNodesOptions>).await.map_err(crate::docker::call("list the swarm's hosts"))?;
    Ok(nodes.into_iter().filter_map(|node| Some((node.id?, node.description?.hostname?))).collect())
}

/// Where a new published node goes: the host with the fewest of the
/// project's nodes, on the lowest port of `range` not published there yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub host: Host,
    pub port: u16,
}

/// Places `count` new published nodes over the swarm's hosts, given how
/// many nodes of the project each runs already (`ours`).
pub async fn placements(
    project: &Project,
    range: PortRange,
    ours: &HashMap<String, usize>,
    count: usize,
) -> anyhow::Result<Vec<Placement>> {
    let hosts = hosts(&project.docker).await?;
    let mut taken = project.ports_by_host(&hosts).await?;
    // On the host the launcher runs on, the manager's, processes and
    // containers hold ports too; elsewhere only the swarm's are known.
    let local = taken.entry(manager(&project.docker).await?).or_default();
    local.extend(project.published_ports().await?);
    local.extend(crate::ports::bound_here(range));
    Ok(spread(&hosts, ours, &taken, range, count)?)
}

/// Places `count` new nodes over `hosts`, given how many nodes of the project
/// each host runs (`ours`) and the ports published on each (`taken`).
pub fn spread(
    hosts: &[Host],
    ours: &HashMap<String, usize>,
    taken: &HashMap<String, HashSet<u16>>,
    range: PortRange,
    count: usize,
) -> Result<Vec<Placement>, PortError> {
    let mut load: Vec<usize> = hosts.iter().map(|h| ours.get(&h.id).copied().unwrap_or(0)).collect();
    let mut used: Vec<HashSet<u16>> = hosts.iter().map(|h| taken.get(&h.id).cloned().unwrap_or_default()).collect();
    let mut placements = Vec::with_capacity(count);
    for _ in 0..count {
        // The least loaded host that still has a free port.
        let free = |i: usize| (range.first..=range.last).find(|port| !used[i].contains(port));
        let chosen = (0..hosts.len()).filter_map(|i| Some((i, free(i)?))).min_by_key(|&(i, _)| load[i]);
        let (host, port) = chosen.ok_or(PortError::NotEnoughFree { range, free: placements.len(), needed: count })?;
        used[host].insert(port);
        load[host] += 1;
        placements.push(Placement { host: hosts[host].clone(), port });
    }
    Ok(placements)
}

impl Project {
    /// Creates the project's attachable overlay network.
    pub async fn create_overlay(&self) -> Result<(), DockerError> {
        let name = self.network_name();
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("overlay".into()),
            attachable: Some(true),
            labels: Some(self.labels(None)),
            ..Default::default()
        };
        self.docker.create_network(request).await.map_err(crate::docker::call(format!("create the network {name}")))?;
        Ok(())
    }

    /// Creates the service that runs `spec`, one task on the project
    /// network, pinned to `host` when given.
    pub async fn create_service(&self, spec: &ContainerSpec, host: Option<&str>) -> Result<(), DockerError> {
        let name = self.container_name(spec.role);
        let ports = spec.host_port.map(published);
        let labels = self.labels(Some(spec.role));
        let service = ServiceSpec {
            name: Some(name.clone()),
            labels: Some(labels.clone().into_iter().chain(spec.labels.clone()).collect()),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
                ..Default::default()
            }),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(spec.image.clone()),
                    args: Some(spec.cmd.clone()),
                    env: Some(spec.env_with_token()),
                    labels: Some(labels),
                    ..Default::default()
                }),
                placement: host.map(pinned),
                networks: Some(vec![NetworkAttachmentConfig {
                    target: Some(self.network_name()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            endpoint_spec: Some(EndpointSpec { mode: Some(EndpointSpecModeEnum::DNSRR), ports }),
            ..Default::default()
        };
        self.create(service).await
    }

    /// Creates a service; when its image names a registry (as `launcher
    /// push` names them), with that registry's credentials from the Docker
    /// configuration, which the swarm hands to the hosts that pull it
    /// (`docker service create --with-registry-auth`). Docker Hub's
    /// credentials are never handed out this way.
    async fn create(&self, service: ServiceSpec) -> Result<(), DockerError> {
        let name = service.name.clone().unwrap_or_default();
        let image = service.task_template.as_ref().and_then(|t| t.container_spec.as_ref()?.image.clone());
        let credentials = match image {
            Some(image) if credentials::names_registry(&image) => credentials::for_image(&image).await?,
            _ => None,
        };
        self.docker
            .create_service(service, credentials)
            .await
            .map_err(crate::docker::call(format!("create the service {name}")))?;
        Ok(())
    }

    /// Replaces a service's task with a new one, as `docker service update
    /// --force` does: the old one stops gracefully (SIGTERM).
    pub async fn redeploy(&self, name: &str) -> Result<(), DockerError> {
        let call = crate::docker::call(format!("redeploy the service {name}"));
        let service = self.docker.inspect_service(name, None::<InspectServiceOptions>).await;
        let service = service.map_err(crate::docker::call(format!("inspect the service {name}")))?;
        let version = service.version.and_then(|v| v.index).unwrap_or(0);
        let mut spec = service.spec.unwrap_or_default();
        let task = spec.task_template.get_or_insert_with(TaskSpec::default);
        task.force_update = Some(task.force_update.unwrap_or(0) + 1);
        let options = UpdateServiceOptionsBuilder::default().version(version as i32).build();
        self.docker.update_service(name, spec, options, None).await.map_err(call)?;
        Ok(())
    }

    /// The project's node services, by index.
    pub async fn node_services(&self) -> Result<BTreeMap<usize, ServiceSpec>, DockerError> {
        let services = self.services().await?;
        let index = |spec: &ServiceSpec| spec.labels.as_ref()?.get(LABEL_INDEX)?.parse().ok();
        Ok(services.into_iter().filter_map(|s| s.spec).filter_map(|spec| Some((index(&spec)?, spec))).collect())
    }

    /// Creates node `index` from the spec of another node of the project:
    /// the same image, registry, token and settings, under its own name,
    /// and, when the template is published, at `placement`.
    pub async fn create_node_like(
        &self,
        template: &ServiceSpec,
        index: usize,
        placement: Option<&Placement>,
    ) -> Result<(), DockerError> {
        let mut spec = template.clone();
        spec.name = Some(self.container_name(Role::Node(index)));
        let set_index = |labels: &mut Option<HashMap<String, String>>| {
            labels.get_or_insert_with(HashMap::new).insert(LABEL_INDEX.into(), index.to_string());
        };
        set_index(&mut spec.labels);
        let task = spec.task_template.get_or_insert_with(TaskSpec::default);
        task.placement = placement.map(|p| pinned(&p.host.id));
        let container = task.container_spec.get_or_insert_with(TaskSpecContainerSpec::default);
        set_index(&mut container.labels);
        let env = container.env.get_or_insert_with(Vec::new);
        env.retain(|var| !crate::docker::is_per_node(var));
        let given = template.labels.as_ref().and_then(|l| l.get(LABEL_ADVERTISE_IP)?.parse::<IpAddr>().ok());
        let advertised = placement.map(|p| (given.unwrap_or(p.host.advertise), p.port));
        env.extend(crate::docker::node_env(index, advertised));
        let endpoint = spec.endpoint_spec.get_or_insert_with(EndpointSpec::default);
        endpoint.ports = placement.map(|p| published(p.port));
        self.create(spec).await
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

    /// Removes a service; its tasks stop (SIGTERM, then SIGKILL after
    /// Docker's grace).
    pub async fn remove_service(&self, name: &str) -> Result<(), DockerError> {
        match self.docker.delete_service(name).await {
            Ok(()) | Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(source) => Err(DockerError::Call { action: format!("remove the service {name}"), source }),
        }
    }

    /// For each of `hosts`, the ports that services of any project publish
    /// there, from their specs: a service pinned to a host holds its ports
    /// there even before its task is scheduled; the routing mesh (ingress
    /// mode) holds them on every host; an unpinned service in host mode
    /// holds them where its tasks run.
    pub async fn ports_by_host(&self, hosts: &[Host]) -> Result<HashMap<String, HashSet<u16>>, DockerError> {
        let running = HashMap::from([("desired-state".to_owned(), vec!["running".to_owned()])]);
        let options = ListTasksOptionsBuilder::default().filters(&running).build();
        let tasks =
            self.docker.list_tasks(Some(options)).await.map_err(crate::docker::call("list the swarm's tasks"))?;
        let services =
            self.docker.list_services(None).await.map_err(crate::docker::call("list the swarm's services"))?;
        let mut by_host: HashMap<String, HashSet<u16>> = HashMap::new();
        for service in services {
            let (Some(id), Some(spec)) = (service.id, service.spec) else { continue };
            let ports = spec.endpoint_spec.as_ref().and_then(|e| e.ports.clone()).unwrap_or_default();
            for port in ports {
                let Some(number) = port.published_port.and_then(|p| u16::try_from(p).ok()) else { continue };
                let holders: Vec<String> = match (port.publish_mode, pinned_host(&spec)) {
                    (Some(EndpointPortConfigPublishModeEnum::HOST), Some(host)) => vec![host.to_owned()],
                    (Some(EndpointPortConfigPublishModeEnum::HOST), None) => tasks
                        .iter()
                        .filter(|task| task.service_id.as_ref() == Some(&id))
                        .filter_map(|task| task.node_id.clone())
                        .collect(),
                    _ => hosts.iter().map(|host| host.id.clone()).collect(),
                };
                for holder in holders {
                    by_host.entry(holder).or_default().insert(number);
                }
            }
        }
        Ok(by_host)
    }

    /// The image of the project's nodes, from a node service.
    pub async fn node_image(&self) -> Result<Option<String>, DockerError> {
        let spec = self.node_services().await?.into_values().next();
        Ok(spec.and_then(|s| s.task_template?.container_spec?.image))
    }

    /// Runs `cmd` of `image` in a one-off container on the project's
    /// overlay network (it is attachable), as a client inside the swarm, to
    /// its end; the token goes in its environment.
    pub async fn run_inside(
        &self,
        image: &str,
        cmd: Vec<String>,
        token: Option<&JoinToken>,
    ) -> Result<Ran, DockerError> {
        let name = format!("{}-client-{:08x}", self.name, fastrand::u32(..));
        let env = token.map(|token| vec![format!("{TOKEN_ENV}={}", token.reveal().as_str())]);
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            cmd: Some(cmd),
            env,
            labels: Some(self.labels(None)),
            host_config: Some(HostConfig { network_mode: Some(self.network_name()), ..Default::default() }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let call = crate::docker::call;
        self.docker
            .create_container(Some(options), body)
            .await
            .map_err(call(format!("create the container {name}")))?;
        let ran = async {
            self.docker.start_container(&name, None).await.map_err(call(format!("start the container {name}")))?;
            let code = match self.docker.wait_container(&name, None::<WaitContainerOptions>).next().await {
                Some(Ok(response)) => response.status_code,
                Some(Err(BollardError::DockerContainerWaitError { code, .. })) => code,
                Some(Err(source)) => {
                    return Err(DockerError::Call { action: format!("wait for the container {name}"), source })
                }
                None => 0,
            };
            let options = LogsOptionsBuilder::default().stdout(true).stderr(true).build();
            let output: Vec<_> = self.docker.logs(&name, Some(options)).collect().await;
            let mut ran = Ran { code, stdout: String::new(), stderr: String::new() };
            for chunk in output {
                match chunk.map_err(call(format!("read the output of the container {name}")))? {
                    LogOutput::StdOut { message } => ran.stdout += &String::from_utf8_lossy(&message),
                    other => ran.stderr += &String::from_utf8_lossy(&other.into_bytes()),
                }
            }
            Ok(ran)
        }
        .await;
        let _ = self.remove_container(&name, true).await;
        ran
    }

    /// The current task of each of the project's services, by service name:
    /// the newest one the swarm wants running.
    pub async fn current_tasks(&self) -> Result<HashMap<String, Task>, DockerError> {
        // Not only those desired running: a task the swarm gave up on says why.
        let options = ListTasksOptionsBuilder::default().filters(&self.project_filter()).build();
        let tasks =
            self.docker.list_tasks(Some(options)).await.map_err(crate::docker::call("list the project's tasks"))?;
        let services = self.services().await?;
        let names: HashMap<String, String> =
            services.into_iter().filter_map(|s| Some((s.id?, s.spec?.name?))).collect();
        let mut current: HashMap<String, Task> = HashMap::new();
        for task in tasks {
            let Some(name) = task.service_id.as_ref().and_then(|id| names.get(id)) else { continue };
            let created = task.created_at.as_deref().and_then(|t| humantime::parse_rfc3339_weak(t).ok());
            let status = task.status.unwrap_or_default();
            let task = Task {
                state: status.state.unwrap_or(TaskState::NEW),
                message: status.message.unwrap_or_default(),
                last_error: status.err.map(|error| (created.unwrap_or(std::time::UNIX_EPOCH), error)),
                host: task.node_id.unwrap_or_default(),
                created: created.unwrap_or(std::time::UNIX_EPOCH),
            };
            let known = current.remove(name);
            current.insert(name.clone(), newest(known, task));
        }
        Ok(current)
    }
}

/// Of a service's tasks, the newer one, keeping the newest error of either.
fn newest(known: Option<Task>, task: Task) -> Task {
    let Some(known) = known else { return task };
    let last_error = match (known.last_error.clone(), task.last_error.clone()) {
        (Some(a), Some(b)) => Some(if a.0 >= b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    let newer = if known.created >= task.created { known } else { task };
    Task { last_error, ..newer }
}

/// The service port, published on `port` of the host a task runs on.
fn published(port: u16) -> Vec<EndpointPortConfig> {
    vec![EndpointPortConfig {
        target_port: Some(CONTAINER_PORT.into()),
        published_port: Some(port.into()),
        publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
        ..Default::default()
    }]
}

/// Placed on the host with this swarm node id only.
fn pinned(host: &str) -> TaskSpecPlacement {
    TaskSpecPlacement { constraints: Some(vec![format!("{PINNED_TO}{host}")]), ..Default::default() }
}

/// The host a spec is pinned to, if it is.
pub fn pinned_host(spec: &ServiceSpec) -> Option<&str> {
    let constraints = spec.task_template.as_ref()?.placement.as_ref()?.constraints.as_ref()?;
    constraints.iter().find_map(|c| c.strip_prefix(PINNED_TO))
}

const PINNED_TO: &str = "node.id==";

/// How a one-off container ended.
#[derive(Debug, Clone)]
pub struct Ran {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// A service's current task, as `ps` shows it.
#[derive(Debug, Clone)]
pub struct Task {
    pub state: TaskState,
    pub message: String,
    /// Why the newest of the service's tasks that failed or was rejected
    /// did, and when that task was made.
    last_error: Option<(std::time::SystemTime, String)>,
    /// The swarm node id of the host it runs on.
    pub host: String,
    created: std::time::SystemTime,
}

impl Project {
    /// The project's services whose current task is not running, each with
    /// its state and why: what a mesh that does not complete may be waiting for.
    pub async fn stuck_tasks(&self) -> Result<Vec<String>, DockerError> {
        let mut stuck: Vec<String> = self
            .current_tasks()
            .await?
            .into_iter()
            .filter(|(_, task)| task.state != TaskState::RUNNING)
            .map(|(service, task)| {
                let member = service.strip_prefix(&format!("{}-", self.name)).unwrap_or(&service).to_owned();
                let failed = task.last_error.map(|(_, error)| format!(" (the last one failed: {error})"));
                format!("{member} {}: {}{}", task.state, task.message, failed.unwrap_or_default())
            })
            .collect();
        stuck.sort();
        Ok(stuck)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str) -> Host {
        Host { id: id.into(), hostname: id.into(), advertise: "10.0.0.1".parse().unwrap() }
    }

    #[test]
    fn nodes_go_to_the_least_loaded_host_on_its_lowest_free_port() {
        let hosts = [host("a"), host("b")];
        let range: PortRange = "8087-8089".parse().unwrap();
        let ours = HashMap::from([("a".to_owned(), 1)]);
        let taken = HashMap::from([("a".to_owned(), HashSet::from([8087])), ("b".to_owned(), HashSet::from([8088]))]);
        let placed = spread(&hosts, &ours, &taken, range, 3).unwrap();
        let placed: Vec<(&str, u16)> = placed.iter().map(|p| (p.host.id.as_str(), p.port)).collect();
        assert_eq!(placed, [("b", 8087), ("a", 8088), ("b", 8089)]);
    }

    #[test]
    fn a_host_out_of_ports_leaves_the_nodes_to_the_others() {
        let range: PortRange = "8087-8088".parse().unwrap();
        let taken = HashMap::from([("a".to_owned(), HashSet::from([8087, 8088]))]);
        let placed = spread(&[host("a"), host("b")], &HashMap::new(), &taken, range, 2).unwrap();
        assert!(placed.iter().all(|p| p.host.id == "b"), "{placed:?}");
    }

    #[test]
    fn the_newest_task_counts_with_the_newest_error_of_all() {
        let at = |secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        let task = |secs, state, error: Option<&str>| Task {
            state,
            message: String::new(),
            last_error: error.map(|e| (at(secs), e.to_owned())),
            host: String::new(),
            created: at(secs),
        };
        let tasks = [
            task(2, TaskState::FAILED, Some("exit (2)")),
            task(3, TaskState::READY, None),
            task(1, TaskState::FAILED, Some("exit (1)")),
        ];
        let current = tasks.into_iter().fold(None, |known, task| Some(newest(known, task))).unwrap();
        assert_eq!(current.state, TaskState::READY);
        assert_eq!(current.last_error.map(|(_, e)| e).as_deref(), Some("exit (2)"));
    }

    #[test]
    fn a_host_out_of_ports_is_a_port_error() {
        let range: PortRange = "8087-8088".parse().unwrap();
        let error = spread(&[host("a")], &HashMap::new(), &HashMap::new(), range, 3).unwrap_err();
        assert_eq!(error, PortError::NotEnoughFree { range, free: 2, needed: 3 });
    }
}
