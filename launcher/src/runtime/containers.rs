//! `--runtime docker`: a container per member, on a bridge network of this
//! engine; every node published on a host port of its own.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use anyhow::Context;
use bollard::models::{ContainerCreateBody, ContainerSummary, HostConfig, NetworkCreateRequest, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, InspectNetworkOptions, StatsOptionsBuilder,
};
use futures::StreamExt;
use registry::client::RegistryAddr;
use tokio::sync::mpsc;
use wire::http::READ_TOKEN_ENV;
use wire::secure::{JoinToken, TOKEN_ENV};

use super::cluster;
use super::engine::{self, call, ContainerSpec, DockerError, Engine};
use super::member::Member;
use super::plan::{Health, Observed, Plan, Row, RuntimeError, Started, Usage};
use crate::images::{ASSIGNER_CONTAINER_PORT, CONTAINER_PORT, HTTP_CONTAINER_PORT};
use crate::ports;
use crate::stream::{Line, Reading};

/// A project's containers on this engine.
#[derive(Clone)]
pub struct Containers {
    pub engine: Engine,
}

impl Containers {
    /// Starts the plan's registry (unless it joins one), or its etcd
    /// cluster and replicas, and its nodes, each published on a free port
    /// of the range; their lines go to `lines`.
    pub async fn start(&self, plan: &Plan, lines: &mpsc::Sender<Line>) -> anyhow::Result<Started> {
        let gateway = self.create_network().await?;
        let advertise = plan.advertise_ip.or(gateway).ok_or(RuntimeError::NoAdvertiseIp)?;
        let registries = match &plan.registry {
            Some(addr) => vec![addr.clone()],
            None => self.start_registries(plan, lines).await?,
        };
        let (chosen, spare) = ports::pick(plan.port_range, plan.nodes, &self.engine.published_ports().await?)?;
        let spare = Mutex::new(spare);
        let starts = chosen.into_iter().enumerate().map(|(i, port)| {
            let (spare, registries) = (&spare, &registries);
            async move { self.start_node(plan, i + 1, port, (advertise, registries), spare).await }
        });
        let host_ports: Vec<u16> = futures::future::try_join_all(starts).await?;
        for member in plan.node_members() {
            self.follow(member, Reading::All { follow: true }, lines.clone());
        }
        Ok(Started {
            host_ports: host_ports.into_iter().map(Some).collect(),
            registries,
            advertised: advertise.to_string(),
        })
    }

    /// Starts the plan's registry, or its etcd members and then its
    /// replicas, the first published on the registry port and the others
    /// on the next free ports outside the nodes' range; returns where the
    /// nodes reach them.
    async fn start_registries(&self, plan: &Plan, lines: &mpsc::Sender<Line>) -> anyhow::Result<Vec<RegistryAddr>> {
        let endpoints = match &plan.cluster {
            None => None,
            Some(cluster) => {
                let addrs = self.engine.etcd_addrs(cluster.size);
                let specs: Vec<ContainerSpec> =
                    (1..=cluster.size).map(|i| ContainerSpec::etcd(cluster, i, &addrs)).collect();
                futures::future::try_join_all(specs.iter().map(|spec| self.run(spec))).await?;
                Some(cluster::endpoints(&addrs))
            }
        };
        let published = self.engine.registry_ports(plan).await?;
        for &(member, port) in &published {
            self.run(&ContainerSpec::registry(plan, member, port, endpoints.as_deref())).await.with_context(|| {
                format!("failed to start the {member} on host port {port}: choose another with --registry-port")
            })?;
            self.follow(member, Reading::All { follow: true }, lines.clone());
        }
        if endpoints.is_some() {
            let from_here: Vec<_> = published.iter().map(|&(member, port)| (member, engine::here(port))).collect();
            engine::all_accepting(&from_here).await?;
        }
        Ok(published.into_iter().map(|(member, _)| self.engine.registry_inside(member)).collect())
    }

    /// Starts node `index` on `port`, moving to a spare port if the daemon
    /// finds it taken after all (another process may have bound it since).
    async fn start_node(
        &self,
        plan: &Plan,
        index: usize,
        mut port: u16,
        (advertise, registries): (IpAddr, &[RegistryAddr]),
        spare: &Mutex<Vec<u16>>,
    ) -> anyhow::Result<u16> {
        loop {
            match self.run(&ContainerSpec::node(plan, index, registries, Some((advertise, port)))).await {
                Ok(()) => return Ok(port),
                Err(DockerError::PortTaken { .. }) => {
                    let next = wire::lock(spare).pop();
                    port =
                        next.ok_or(RuntimeError::NoSparePort { range: plan.port_range, member: Member::Node(index) })?;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Creates the project network and returns its gateway: the host's
    /// address on it, through which containers reach published ports.
    async fn create_network(&self) -> Result<Option<IpAddr>, DockerError> {
        let name = self.engine.network_name();
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            labels: Some(self.engine.labels(None)),
            ..Default::default()
        };
        let docker = &self.engine.docker;
        docker.create_network(request).await.map_err(call(format!("create the network {name}")))?;
        let network = docker
            .inspect_network(&name, None::<InspectNetworkOptions>)
            .await
            .map_err(call(format!("inspect the network {name}")))?;
        let gateway =
            network.ipam.and_then(|ipam| ipam.config).into_iter().flatten().find_map(|c| c.gateway?.parse().ok());
        Ok(gateway)
    }

    /// Creates and starts a container on the project network.
    async fn run(&self, spec: &ContainerSpec) -> Result<(), DockerError> {
        let name = self.engine.resource_name(spec.member);
        let published = [
            (CONTAINER_PORT, spec.host_port),
            (ASSIGNER_CONTAINER_PORT, spec.assigner_port),
            (HTTP_CONTAINER_PORT, spec.http_port),
        ];
        let published: Vec<(u16, u16)> =
            published.into_iter().filter_map(|(inside, host)| Some((inside, host?))).collect();
        let key = |inside: u16| format!("{inside}/tcp");
        let port_bindings = (!published.is_empty()).then(|| {
            let binding = |host: u16| Some(vec![PortBinding { host_ip: None, host_port: Some(host.to_string()) }]);
            published.iter().map(|&(inside, host)| (key(inside), binding(host))).collect()
        });
        let mut exposed = vec![key(CONTAINER_PORT)];
        exposed.extend(spec.assigner_port.map(|_| key(ASSIGNER_CONTAINER_PORT)));
        exposed.extend(spec.http_port.map(|_| key(HTTP_CONTAINER_PORT)));
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: Some(spec.cmd.clone()),
            env: Some(spec.env_with_secrets()),
            labels: Some(self.engine.labels(Some(spec.member)).into_iter().chain(spec.labels.clone()).collect()),
            exposed_ports: Some(exposed),
            host_config: Some(HostConfig {
                port_bindings,
                network_mode: Some(self.engine.network_name()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let docker = &self.engine.docker;
        docker.create_container(Some(options), body).await.map_err(call(format!("create the container {name}")))?;
        if let Err(source) = docker.start_container(&name, None).await {
            // A container that never started is useless; don't leave it behind.
            let _ = self.engine.remove_container(&name, true).await;
            return Err(match spec.host_port {
                Some(port) if is_port_conflict(&source) => DockerError::PortTaken { port, source },
                _ => DockerError::Call { action: format!("start the container {name}"), source },
            });
        }
        Ok(())
    }

    pub fn follow(&self, member: Member, reading: Reading, lines: mpsc::Sender<Line>) {
        self.engine.follow_container(self.engine.resource_name(member), member.to_string(), reading, lines)
    }

    /// The join token the registry containers were started with.
    pub async fn join_token(&self) -> Result<Option<JoinToken>, DockerError> {
        self.registry_secret(TOKEN_ENV).await
    }

    /// The read token the project's registries' HTTP listeners were started with, if any.
    pub async fn http_token(&self) -> Result<Option<JoinToken>, DockerError> {
        self.registry_secret(READ_TOKEN_ENV).await
    }

    /// The token in variable `var` of the first registry's environment.
    async fn registry_secret(&self, var: &str) -> Result<Option<JoinToken>, DockerError> {
        let Some(name) = self.registry_containers().await?.into_iter().next().map(|(name, ..)| name) else {
            return Ok(None);
        };
        let inspected = self
            .engine
            .docker
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
            .map_err(call(format!("inspect the container {name}")))?;
        Ok(engine::secret_in(inspected.config.and_then(|config| config.env), var))
    }

    /// The registry containers, the running ones first: their name, the
    /// host port each is published on, and whether it runs.
    async fn registry_containers(&self) -> Result<Vec<(String, Option<u16>, bool)>, DockerError> {
        let mut containers: Vec<_> = self
            .engine
            .containers()
            .await?
            .into_iter()
            .filter_map(|c| engine::member_of(c.labels.as_ref()).filter(|m| m.is_registry()).map(|m| (m, c)))
            .collect();
        let running = |c: &ContainerSummary| c.state.is_some_and(|s| s.to_string() == "running");
        containers.sort_by_key(|(member, c)| (!running(c), *member));
        Ok(containers
            .into_iter()
            .map(|(_, c)| {
                let ports = c.ports.iter().flatten();
                let port = ports.filter(|p| p.private_port == CONTAINER_PORT).find_map(|p| p.public_port);
                (engine::container_name(&c).unwrap_or_default(), port, running(&c))
            })
            .collect())
    }

    /// The running registry containers as this machine reaches them: at the
    /// host ports they are published on.
    pub async fn registries_from_here(&self) -> Result<Vec<SocketAddr>, DockerError> {
        let containers = self.registry_containers().await?.into_iter();
        let running = containers.filter(|(_, _, running)| *running);
        Ok(running.filter_map(|(_, port, _)| port).map(engine::here).collect())
    }

    /// Each container, running or not.
    pub async fn rows(&self) -> Result<Vec<Row>, DockerError> {
        let containers = self.engine.containers().await?;
        Ok(containers
            .into_iter()
            .map(|container| {
                let mut ports: Vec<String> = container
                    .ports
                    .iter()
                    .flatten()
                    .filter_map(|p| p.public_port.map(|public| format!("{public}->{}", p.private_port)))
                    .collect();
                // One binding for IPv4 and one for IPv6.
                ports.dedup();
                Row {
                    name: engine::container_name(&container).unwrap_or_default(),
                    member: engine::member_of(container.labels.as_ref()),
                    state: container.state.map(|s| s.to_string()).unwrap_or_default(),
                    health: container.status.as_deref().and_then(Health::in_status),
                    status: container.status.unwrap_or_default(),
                    ports,
                }
            })
            .collect())
    }

    /// The project's registries and nodes, with where this machine reaches
    /// their HTTP listeners: at their address on the project network.
    pub async fn observed(&self) -> Result<Vec<Observed>, DockerError> {
        let network = self.engine.network_name();
        let containers = self.engine.containers().await?;
        let observed = containers.into_iter().filter_map(|container| {
            let member = engine::member_of(container.labels.as_ref()).filter(|m| m.serves_http())?;
            let networks = container.network_settings.as_ref().and_then(|settings| settings.networks.as_ref());
            let ip = networks.and_then(|networks| networks.get(&network)?.ip_address.as_deref()?.parse().ok());
            Some(Observed {
                name: engine::container_name(&container)?,
                member,
                state: container.state.map(|s| s.to_string()).unwrap_or_default(),
                http: ip.map(|ip: IpAddr| SocketAddr::new(ip, HTTP_CONTAINER_PORT)),
            })
        });
        Ok(observed.collect())
    }

    /// What container `name` uses of the host, as `docker stats` shows it:
    /// CPU over the engine's last second, and memory less the page cache.
    pub async fn usage(&self, name: &str) -> Result<Usage, DockerError> {
        let options = StatsOptionsBuilder::default().stream(false).one_shot(false).build();
        let mut stats = self.engine.docker.stats(name, Some(options));
        let stats = stats.next().await.transpose().map_err(call(format!("read the stats of {name}")))?;
        Ok(stats.map(|stats| Usage::of(&stats)).unwrap_or_default())
    }

    /// The image of the project's nodes, from a node container.
    pub async fn node_image(&self) -> Result<Option<String>, DockerError> {
        let containers = self.engine.containers().await?;
        let node =
            containers.into_iter().find(|c| matches!(engine::member_of(c.labels.as_ref()), Some(Member::Node(_))));
        Ok(node.and_then(|c| c.image))
    }

    /// Stops a container (SIGTERM, then SIGKILL after Docker's grace) and starts it again.
    pub async fn restart(&self, name: &str) -> Result<(), DockerError> {
        let docker = &self.engine.docker;
        docker.restart_container(name, None).await.map_err(call(format!("restart the container {name}")))
    }
}

fn is_port_conflict(error: &bollard::errors::Error) -> bool {
    let text = error.to_string();
    text.contains("port is already allocated") || text.contains("address already in use")
}
