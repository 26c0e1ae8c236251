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
//!   `ps` finds its published port on that host. Registry replicas and
//!   their etcd members spread over the hosts, the manager first
//!   ([`hosts::for_replicas`]); the launcher reaches a replica elsewhere at
//!   its host's address in the swarm. `send` runs inside the
//!   swarm instead ([`Engine::run_inside`](super::engine::Engine::run_inside)): the nodes' overlay addresses
//!   are reachable only there.
//! - Swarm restarts a task that dies, on any host it may use; the new task is
//!   a new node (fresh identity), registering under the same name once the
//!   old entry is gone (its session closed, or its lease ended).
//!
//! # Layout
//! - [`hosts`]: the swarm's hosts, and where a published node goes.
//! - [`tasks`]: each service's current task, and the stuck ones.

pub mod hosts;
pub mod tasks;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use bollard::errors::Error as BollardError;
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum, HealthConfig, Mount,
    MountType, MountVolumeOptions, NetworkAttachmentConfig, NetworkCreateRequest, Service, ServiceSpec,
    ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec, TaskSpecContainerSpec,
};
use bollard::query_parameters::{InspectServiceOptions, UpdateServiceOptionsBuilder};
use registry::client::RegistryAddr;
use tokio::sync::mpsc;
use wire::http::READ_TOKEN_ENV;
use wire::secure::{JoinToken, TOKEN_ENV};

use super::cluster;
use super::engine::{self, call, swarm_manager, ContainerSpec, DockerError, Engine, Removed, SwarmError, LABEL_INDEX};
use super::member::Member;
use super::plan::{Plan, Row, RuntimeError, Scaled, Started};
use crate::images::{credentials, Service as Program, ASSIGNER_CONTAINER_PORT, CONTAINER_PORT, HTTP_CONTAINER_PORT};
use crate::ports::{self, PortRange};
use crate::stream::{self, Line, Reading};
use hosts::{Host, Placement, LABEL_ADVERTISE_IP};

/// On a node service: the range its published port was picked from, for `scale`.
pub const LABEL_PORT_RANGE: &str = "io.hit6.port-range";

/// A project's services on the swarm this engine manages.
#[derive(Clone)]
pub struct Swarm {
    pub engine: Engine,
}

impl Swarm {
    /// Checks that this engine can run the plan: it is a manager that may
    /// run the registry, and the flags make sense there. Returns its swarm
    /// node id.
    pub async fn check(&self, plan: &Plan) -> anyhow::Result<String> {
        let docker = &self.engine.docker;
        let manager = swarm_manager(docker).await?;
        if !hosts::hosts(docker).await?.iter().any(|host| host.id == manager) {
            return Err(DockerError::Swarm(SwarmError::ManagerCannotRun).into());
        }
        if plan.advertise_ip.is_some() && !plan.publish {
            return Err(RuntimeError::AdvertiseWithoutPublish.into());
        }
        // The registry's task would fail to bind it, again and again, with no error here.
        let registry_port = PortRange { first: plan.registry_port, last: plan.registry_port };
        if plan.registry.is_none() && !ports::bound_here(registry_port).is_empty() {
            return Err(RuntimeError::RegistryPortTaken { port: plan.registry_port }.into());
        }
        Ok(manager)
    }

    /// Starts the plan's registry (unless it joins one), pinned to
    /// `manager`, and its nodes: with --publish, each pinned to a host and
    /// published on a port of the range there; otherwise wherever the
    /// swarm puts them. Their lines go to `lines`.
    pub async fn start(&self, plan: &Plan, manager: &str, lines: &mpsc::Sender<Line>) -> anyhow::Result<Started> {
        self.create_overlay().await?;
        let registries = match &plan.registry {
            Some(addr) => vec![addr.clone()],
            None => self.start_registries(plan, manager, lines).await?,
        };
        let placements: Vec<Option<Placement>> = if plan.publish {
            let placed = hosts::placements(&self.engine, plan.port_range, &HashMap::new(), plan.nodes).await?;
            placed.into_iter().map(Some).collect()
        } else {
            vec![None; plan.nodes]
        };
        let starts = placements.into_iter().enumerate().map(|(i, placement)| {
            let registries = &registries;
            async move {
                let published = placement.as_ref().map(|p| (plan.advertise_ip.unwrap_or(p.host.advertise), p.port));
                let mut spec = ContainerSpec::node(plan, i + 1, registries, published);
                spec.labels.insert(LABEL_PORT_RANGE.into(), plan.port_range.to_string());
                if let Some(ip) = plan.advertise_ip {
                    // So that `scale` advertises it too.
                    spec.labels.insert(LABEL_ADVERTISE_IP.into(), ip.to_string());
                }
                self.create_service(&spec, placement.as_ref().map(|p| p.host.id.as_str())).await?;
                anyhow::Ok(published.map(|(_, port)| port))
            }
        });
        let host_ports = futures::future::try_join_all(starts).await?;
        for member in plan.node_members() {
            self.follow(member, Reading::All { follow: true }, lines.clone());
        }
        let advertised = match plan.advertise_ip {
            Some(ip) => ip.to_string(),
            None if plan.publish => "the address of their host".into(),
            None => "their address on the overlay network".into(),
        };
        Ok(Started { host_ports, registries, advertised })
    }

    /// Starts the plan's registry, or its etcd members and then its
    /// replicas: the registry pinned to `manager` (where `ps` and the
    /// disruption verbs find it), etcd-i and registry-i together on the
    /// i-th host, the manager first ([`hosts::for_replicas`]). The first
    /// replica is published on the registry port, the others on the next
    /// free ports outside the nodes' range. Returns where the nodes reach
    /// them.
    async fn start_registries(
        &self,
        plan: &Plan,
        manager: &str,
        lines: &mpsc::Sender<Line>,
    ) -> anyhow::Result<Vec<RegistryAddr>> {
        let hosts = hosts::hosts(&self.engine.docker).await?;
        let placed = match &plan.cluster {
            None => hosts.iter().filter(|host| host.id == manager).collect(),
            Some(cluster) => hosts::for_replicas(&hosts, manager, cluster.size),
        };
        let endpoints = match &plan.cluster {
            None => None,
            Some(cluster) => {
                let addrs = self.engine.etcd_addrs(cluster.size);
                for (index, host) in (1..=cluster.size).zip(&placed) {
                    self.create_service(&ContainerSpec::etcd(cluster, index, &addrs), Some(&host.id)).await?;
                }
                Some(cluster::endpoints(&addrs))
            }
        };
        let published = self.engine.registry_ports(plan).await?;
        for (&(member, port), host) in published.iter().zip(&placed) {
            let spec = ContainerSpec::registry(plan, member, port, endpoints.as_deref());
            self.create_service(&spec, Some(&host.id)).await.with_context(|| {
                format!("failed to start the {member} on host port {port}: choose another with --registry-port")
            })?;
            self.follow(member, Reading::All { follow: true }, lines.clone());
        }
        if endpoints.is_some() {
            let from_here: Vec<(Member, SocketAddr)> = published
                .iter()
                .zip(&placed)
                .map(|(&(member, port), host)| (member, SocketAddr::new(reach(host, manager), port)))
                .collect();
            engine::all_accepting(&from_here).await?;
        }
        // Healthy, so that the nodes find each registry by its name from the start.
        let names: Vec<String> = published.iter().map(|&(member, _)| self.engine.resource_name(member)).collect();
        tasks::await_running(&self.engine, &names, REGISTRY_PATIENCE).await?;
        Ok(published.into_iter().map(|(member, _)| self.engine.registry_inside(member)).collect())
    }

    /// Creates the project's attachable overlay network.
    async fn create_overlay(&self) -> Result<(), DockerError> {
        let name = self.engine.network_name();
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("overlay".into()),
            attachable: Some(true),
            labels: Some(self.engine.labels(None)),
            ..Default::default()
        };
        self.engine.docker.create_network(request).await.map_err(call(format!("create the network {name}")))?;
        Ok(())
    }

    /// Creates the service that runs `spec`, one task on the project
    /// network, pinned to `host` when given.
    async fn create_service(&self, spec: &ContainerSpec, host: Option<&str>) -> Result<(), DockerError> {
        let name = self.engine.resource_name(spec.member);
        let ports = spec.host_port.map(|port| {
            let assigner = spec.assigner_port.map(|port| published_at(ASSIGNER_CONTAINER_PORT, port));
            let http = spec.http_port.map(|port| published_at(HTTP_CONTAINER_PORT, port));
            std::iter::once(published_at(CONTAINER_PORT, port)).chain(assigner).chain(http).collect()
        });
        let labels = self.engine.labels(Some(spec.member));
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
                    env: Some(spec.env_with_secrets()),
                    mounts: spec.data.map(|target| vec![self.data_volume(spec.member, target)]),
                    labels: Some(labels),
                    health_check: health_check(spec.member),
                    ..Default::default()
                }),
                placement: host.map(hosts::pinned),
                networks: Some(vec![NetworkAttachmentConfig {
                    target: Some(self.engine.network_name()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            endpoint_spec: Some(EndpointSpec { mode: Some(EndpointSpecModeEnum::DNSRR), ports }),
            ..Default::default()
        };
        self.create(service).await
    }

    /// A volume of `member`'s own, labelled like it, mounted at `target`: a
    /// new task of its service finds the data of the one before.
    fn data_volume(&self, member: Member, target: &str) -> Mount {
        Mount {
            target: Some(target.to_owned()),
            source: Some(format!("{}-data", self.engine.resource_name(member))),
            typ: Some(MountType::VOLUME),
            volume_options: Some(MountVolumeOptions {
                labels: Some(self.engine.labels(Some(member))),
                ..Default::default()
            }),
            ..Default::default()
        }
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
        let docker = &self.engine.docker;
        docker.create_service(service, credentials).await.map_err(call(format!("create the service {name}")))?;
        Ok(())
    }

    /// Replaces a service's task with a new one, as `docker service update
    /// --force` does: the old one stops gracefully (SIGTERM).
    pub async fn redeploy(&self, member: Member) -> Result<(), DockerError> {
        let name = self.engine.resource_name(member);
        let docker = &self.engine.docker;
        let service = docker.inspect_service(&name, None::<InspectServiceOptions>).await;
        let service = service.map_err(call(format!("inspect the service {name}")))?;
        let version = service.version.and_then(|v| v.index).unwrap_or(0);
        let mut spec = service.spec.unwrap_or_default();
        let task = spec.task_template.get_or_insert_with(TaskSpec::default);
        task.force_update = Some(task.force_update.unwrap_or(0) + 1);
        let options = UpdateServiceOptionsBuilder::default().version(version as i32).build();
        docker
            .update_service(&name, spec, options, None)
            .await
            .map_err(call(format!("redeploy the service {name}")))?;
        Ok(())
    }

    /// The project's node services, by index.
    pub async fn node_services(&self) -> Result<BTreeMap<usize, ServiceSpec>, DockerError> {
        let members = self.members().await?.into_iter();
        Ok(members
            .filter_map(|(member, service)| match member {
                Member::Node(index) => Some((index, service.spec?)),
                _ => None,
            })
            .collect())
    }

    /// Grows or shrinks the project to `wanted` nodes. New nodes are made
    /// like the existing ones (same image, registry, token, publishing);
    /// removed ones (the highest numbers) stop gracefully.
    pub async fn scale(&self, wanted: usize) -> anyhow::Result<Scaled> {
        let services = self.node_services().await?;
        let Some(template) = services.values().next() else {
            return Err(RuntimeError::NotScalable { project: self.engine.name.clone() }.into());
        };
        let kept: Vec<usize> = services.keys().copied().filter(|&i| i <= wanted).collect();
        let removed: Vec<usize> = services.keys().copied().filter(|&i| i > wanted).collect();
        let added: Vec<usize> = (1..=wanted).filter(|i| !services.contains_key(i)).collect();
        let placements = self.placements(&services, template, added.len()).await?;
        for (made, (index, placement)) in added.iter().zip(placements).enumerate() {
            if let Err(error) = self.create_node_like(template, *index, placement.as_ref()).await {
                // Leave the project as it was.
                for index in &added[..made] {
                    let _ = self.remove_service(&self.engine.resource_name(Member::Node(*index))).await;
                }
                return Err(error.into());
            }
        }
        for index in &removed {
            self.remove_service(&self.engine.resource_name(Member::Node(*index))).await?;
        }
        Ok(Scaled { kept, added, removed })
    }

    /// Where new nodes go: nowhere in particular, unless the project's nodes
    /// are published (the template publishes a port), when each is pinned to
    /// a host like `up --publish` does.
    async fn placements(
        &self,
        services: &BTreeMap<usize, ServiceSpec>,
        template: &ServiceSpec,
        count: usize,
    ) -> anyhow::Result<Vec<Option<Placement>>> {
        let published = template.endpoint_spec.as_ref().and_then(|e| e.ports.as_ref()).is_some_and(|p| !p.is_empty());
        if !published {
            return Ok(vec![None; count]);
        }
        let range: PortRange = template
            .labels
            .as_ref()
            .and_then(|labels| labels.get(LABEL_PORT_RANGE))
            .context("the project's nodes are published but carry no port range")?
            .parse()
            .map_err(anyhow::Error::msg)?;
        let mut ours: HashMap<String, usize> = HashMap::new();
        for host in services.values().filter_map(hosts::pinned_host) {
            *ours.entry(host.to_owned()).or_default() += 1;
        }
        let placed = hosts::placements(&self.engine, range, &ours, count).await?;
        Ok(placed.into_iter().map(Some).collect())
    }

    /// Creates node `index` from the spec of another node of the project:
    /// the same image, registry, token and settings, under its own name,
    /// and, when the template is published, at `placement`.
    async fn create_node_like(
        &self,
        template: &ServiceSpec,
        index: usize,
        placement: Option<&Placement>,
    ) -> Result<(), DockerError> {
        let mut spec = template.clone();
        spec.name = Some(self.engine.resource_name(Member::Node(index)));
        let set_index = |labels: &mut Option<HashMap<String, String>>| {
            labels.get_or_insert_with(HashMap::new).insert(LABEL_INDEX.into(), index.to_string());
        };
        set_index(&mut spec.labels);
        let task = spec.task_template.get_or_insert_with(TaskSpec::default);
        task.placement = placement.map(|p| hosts::pinned(&p.host.id));
        let container = task.container_spec.get_or_insert_with(TaskSpecContainerSpec::default);
        set_index(&mut container.labels);
        let env = container.env.get_or_insert_with(Vec::new);
        env.retain(|var| !engine::is_per_node(var));
        let given = template.labels.as_ref().and_then(|l| l.get(LABEL_ADVERTISE_IP)?.parse::<IpAddr>().ok());
        let advertised = placement.map(|p| (given.unwrap_or(p.host.advertise), p.port));
        env.extend(engine::node_env(index, advertised));
        let endpoint = spec.endpoint_spec.get_or_insert_with(EndpointSpec::default);
        endpoint.ports = placement.map(|p| vec![published_at(CONTAINER_PORT, p.port)]);
        self.create(spec).await
    }

    /// Removes a service; its tasks stop (SIGTERM, then SIGKILL after
    /// Docker's grace).
    async fn remove_service(&self, name: &str) -> Result<(), DockerError> {
        match self.engine.docker.delete_service(name).await {
            Ok(()) | Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(source) => Err(DockerError::Call { action: format!("remove the service {name}"), source }),
        }
    }

    /// Removes the project's services, then what is left of their tasks'
    /// containers and one-off clients, then its network once the tasks
    /// have left it.
    pub async fn remove_all(&self, force: bool) -> Result<Removed, DockerError> {
        let services: Vec<String> = self.engine.services().await?.into_iter().filter_map(|s| s.spec?.name).collect();
        futures::future::try_join_all(services.iter().map(|name| self.remove_service(name))).await?;
        let rest = self.engine.remove_containers_and_networks(force, !services.is_empty()).await?;
        Ok(Removed { services: services.len(), ..rest })
    }

    /// Forwards the log lines of every task of the member's service to `lines`.
    pub fn follow(&self, member: Member, reading: Reading, lines: mpsc::Sender<Line>) {
        let docker = self.engine.docker.clone();
        stream::follow_service(docker, self.engine.resource_name(member), member.to_string(), reading, lines)
    }

    /// The project's services, by member.
    pub async fn members(&self) -> Result<BTreeMap<Member, Service>, DockerError> {
        let services = self.engine.services().await?;
        let member = |s: &Service| engine::member_of(s.spec.as_ref()?.labels.as_ref());
        Ok(services.into_iter().filter_map(|s| Some((member(&s)?, s))).collect())
    }

    /// Returns once the current task of every registry and node runs (is healthy).
    pub async fn settled(&self) -> anyhow::Result<()> {
        let members = self.members().await?.into_keys().filter(|member| member.serves_http());
        let names: Vec<String> = members.map(|member| self.engine.resource_name(member)).collect();
        tasks::await_running(&self.engine, &names, SETTLE_PATIENCE).await
    }

    /// The registry services, in order: the only one, or the replicas.
    async fn registries(&self) -> Result<Vec<Service>, DockerError> {
        let members = self.members().await?.into_iter();
        Ok(members.filter(|(member, _)| member.is_registry()).map(|(_, service)| service).collect())
    }

    /// The join token the registry services were started with.
    pub async fn join_token(&self) -> Result<Option<JoinToken>, DockerError> {
        self.registry_secret(TOKEN_ENV).await
    }

    /// The read token the project's registries' HTTP listeners were started with, if any.
    pub async fn http_token(&self) -> Result<Option<JoinToken>, DockerError> {
        self.registry_secret(READ_TOKEN_ENV).await
    }

    async fn registry_secret(&self, var: &str) -> Result<Option<JoinToken>, DockerError> {
        let first = self.registries().await?.into_iter().next();
        Ok(engine::secret_in(first.and_then(|s| s.spec?.task_template?.container_spec?.env), var))
    }

    /// The registry services as this machine (the manager) reaches them:
    /// at the ports they are published on, on the hosts they are pinned to.
    pub async fn registries_from_here(&self) -> Result<Vec<SocketAddr>, DockerError> {
        let manager = swarm_manager(&self.engine.docker).await?;
        let hosts = hosts::hosts(&self.engine.docker).await?;
        let services = self.registries().await?.into_iter();
        Ok(services
            .filter_map(|service| {
                let pinned = service.spec.as_ref().and_then(hosts::pinned_host).unwrap_or(&manager).to_owned();
                let ports = service.endpoint?.ports.unwrap_or_default();
                let mut ports = ports.into_iter().filter(|p| p.target_port == Some(CONTAINER_PORT.into()));
                let port = ports.find_map(|p| u16::try_from(p.published_port?).ok())?;
                // A host that is down no longer counts: nothing is reached there.
                let host = hosts.iter().find(|host| host.id == pinned)?;
                Some(SocketAddr::new(reach(host, &manager), port))
            })
            .collect())
    }

    /// The image of the project's nodes, from a node service.
    pub async fn node_image(&self) -> Result<Option<String>, DockerError> {
        let spec = self.node_services().await?.into_values().next();
        Ok(spec.and_then(|s| s.task_template?.container_spec?.image))
    }

    /// Each service, with its current task's state and status and the host it runs on.
    pub async fn rows(&self) -> Result<Vec<Row>, DockerError> {
        let tasks = tasks::current(&self.engine).await?;
        let hosts = hosts::host_names(&self.engine.docker).await?;
        let services = self.engine.services().await?;
        Ok(services
            .into_iter()
            .filter_map(|service| {
                let spec = service.spec?;
                let name = spec.name?;
                let ports = service.endpoint.and_then(|e| e.ports).unwrap_or_default();
                let ports = ports.iter().filter_map(|p| Some(format!("{}->{}", p.published_port?, p.target_port?)));
                let task = tasks.get(&name);
                let on = task.and_then(|t| hosts.get(&t.host)).map(|host| format!(" on {host}")).unwrap_or_default();
                let member = engine::member_of(spec.labels.as_ref());
                Some(Row {
                    health: task.and_then(|task| tasks::health(member, task.state)),
                    member,
                    state: task.map(|t| t.state.to_string()).unwrap_or_else(|| "no task".into()),
                    status: task.map(|t| format!("{}{on}", t.message)).unwrap_or_default(),
                    ports: ports.collect(),
                    name,
                })
            })
            .collect())
    }

    /// The project's services whose current task is not running, and why.
    pub async fn stuck(&self) -> Result<Vec<String>, DockerError> {
        tasks::stuck(&self.engine).await
    }
}

/// How long `up` waits for the registries' tasks to run: their images
/// pulled on every host and their first health check passed.
const REGISTRY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(300);

/// How long `up` waits, once the mesh is complete, for the nodes' tasks to
/// run: their first health check, a few seconds after they registered.
const SETTLE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// A registry's or node's health check on a swarm: the image's, run every
/// second for a registry and every 2 s for a node rather than every 10 s.
/// A swarm holds a task `starting` until its first check passes, and
/// meanwhile gives its service's name no address and serves none of its
/// logs, so the image's first check, 10 s after the start, would keep the
/// nodes from their registry and the launcher from the nodes' logs that
/// long (Docker 25's `--start-interval` would say this in the image). Each
/// check is a process the engine starts: 2 s keeps 50 nodes at 25 a second.
fn health_check(member: Member) -> Option<HealthConfig> {
    let (program, interval) = match member {
        Member::Registry(_) => (Program::Registry, 1),
        Member::Node(_) => (Program::Node, 2),
        Member::Etcd(_) => return None,
    };
    let nanos = |seconds: i64| seconds * 1_000_000_000;
    Some(HealthConfig {
        test: Some(["CMD", &format!("/{}", program.name()), "health"].map(str::to_owned).to_vec()),
        interval: Some(nanos(interval)),
        timeout: Some(nanos(3)),
        retries: Some(3),
        start_period: Some(nanos(30)),
        start_interval: None,
    })
}

/// The address at which this machine, the manager, reaches what `host` publishes.
fn reach(host: &Host, manager: &str) -> IpAddr {
    if host.id == manager {
        std::net::Ipv4Addr::LOCALHOST.into()
    } else {
        host.addr
    }
}

/// The service's port `target`, published on `port` of the host a task runs on.
fn published_at(target: u16, port: u16) -> EndpointPortConfig {
    EndpointPortConfig {
        target_port: Some(target.into()),
        published_port: Some(port.into()),
        publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
        ..Default::default()
    }
}
