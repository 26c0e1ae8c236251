//! What subcommands ask of a runtime, what it reports back, and why a
//! runtime may refuse a request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use registry::client::RegistryAddr;
use registry::identity::RegistrySecret;
use wire::http::ReadToken;
use wire::secure::JoinToken;

use super::cluster::Cluster;
use super::member::Member;
use crate::images::Images;
use crate::ports::PortRange;

/// A project to start: a registry (unless one is joined), or replicas of
/// one on an etcd cluster, and N nodes.
#[derive(Debug, Clone)]
pub struct Plan {
    pub nodes: usize,
    /// Host ports the nodes are published on.
    pub port_range: PortRange,
    /// Host port the registry is published on.
    pub registry_port: u16,
    /// Host port the first registry answers the group lab's internal
    /// clients on, when asked; its registries then admit the lab's programs.
    pub assigner_port: Option<u16>,
    /// Where the first registry's HTTP listener (`/metrics`, `/health`, the
    /// status page) is published, and the read token every registry's
    /// status page asks for, when asked.
    pub http: Option<Http>,
    /// The ip the nodes advertise, when the user names it.
    pub advertise_ip: Option<IpAddr>,
    /// A swarm's nodes published on the host each is pinned to.
    pub publish: bool,
    /// A registry to join instead of starting one.
    pub registry: Option<RegistryAddr>,
    pub groups: u32,
    pub lease: Duration,
    pub images: Images,
    /// Handed to every member in its environment, never in argv.
    pub token: Option<Arc<JoinToken>>,
    /// The secret of the registry the plan starts, handed to it in its
    /// environment; its nodes pin the key it makes.
    pub registry_secret: Option<Arc<RegistrySecret>>,
    /// With several registries: their etcd cluster, as many members as
    /// replicas, which share the registry secret.
    pub cluster: Option<Cluster>,
}

impl Plan {
    pub fn node_members(&self) -> impl Iterator<Item = Member> {
        (1..=self.nodes).map(Member::Node)
    }

    /// The registries it starts: none when it joins one, its only one, or
    /// its replicas.
    pub fn registry_members(&self) -> Vec<Member> {
        match (&self.registry, &self.cluster) {
            (Some(_), _) => Vec::new(),
            (None, None) => vec![Member::REGISTRY],
            (None, Some(cluster)) => cluster.replicas().collect(),
        }
    }

    /// The host port registry `member` answers the group lab's internal
    /// clients on: the first registry's, when the plan asks for one.
    pub fn assigner_of(&self, member: Member) -> Option<u16> {
        self.assigner_port.filter(|_| member.is_registry() && member.index().unwrap_or(1) == 1)
    }

    /// The host port registry `member`'s HTTP listener is published on: the first registry's, when asked.
    pub fn http_port_of(&self, member: Member) -> Option<u16> {
        self.http.as_ref().map(|http| http.port).filter(|_| member.is_registry() && member.index().unwrap_or(1) == 1)
    }

    /// The variables that pin the plan's registry's key in its nodes.
    pub fn pin_env(&self) -> Option<(&'static str, String)> {
        self.registry_secret.as_ref().map(|secret| (REGISTRY_KEY_ENV, secret.public().to_string()))
    }
}

/// The node's variable for the key its registry must prove.
pub const REGISTRY_KEY_ENV: &str = "NODE_REGISTRY_KEY";

/// What a runtime started.
#[derive(Debug, Clone)]
pub struct Started {
    /// Each node's host port, in order, when it is published.
    pub host_ports: Vec<Option<u16>>,
    /// The registries the nodes register with, as they reach them.
    pub registries: Vec<RegistryAddr>,
    /// The address the nodes advertise, in words.
    pub advertised: String,
}

/// A member as `ps` shows it: a container, or a service and its current task.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    /// `None` for a one-off client container.
    pub member: Option<Member>,
    pub state: String,
    pub status: String,
    /// What the engine's runs of the image's HEALTHCHECK say: `healthy`,
    /// `unhealthy` or `starting`; none without a health check.
    pub health: Option<Health>,
    /// `host->container`.
    pub ports: Vec<String>,
}

/// A container's health, as its engine tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    /// The health in a container's status line, where the engine writes
    /// it: `Up 3 minutes (healthy)`, `Up 2 seconds (health: starting)`.
    pub fn in_status(status: &str) -> Option<Health> {
        let inside = status.rsplit_once('(')?.1.strip_suffix(')')?;
        match inside {
            "healthy" => Some(Health::Healthy),
            "unhealthy" => Some(Health::Unhealthy),
            "health: starting" => Some(Health::Starting),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// The registries' HTTP listener as `up --http-port` asks for it.
#[derive(Debug, Clone)]
pub struct Http {
    /// Host port of the first registry's listener.
    pub port: u16,
    /// What the status page asks of its viewers, handed to every registry
    /// in its environment (`HIT6_HTTP_TOKEN`); `launcher token --http` reads it back.
    pub token: Arc<ReadToken>,
}

/// A registry or node as `stats` reads it.
#[derive(Debug, Clone)]
pub struct Observed {
    pub name: String,
    pub member: Member,
    pub state: String,
    /// Where this machine reaches its HTTP listener (`/metrics`, `/health`).
    pub http: Option<SocketAddr>,
}

/// What a member uses of its host, as its engine counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Per cent of one core.
    pub cpu_percent: Option<f64>,
    pub memory_bytes: Option<u64>,
}

impl Usage {
    /// As `docker stats` reckons it: the CPU the container used between the
    /// engine's two samples, against the host's, times its cores; memory
    /// less the page cache (`inactive_file`, or `cache` under cgroup v1).
    pub fn of(stats: &bollard::models::ContainerStatsResponse) -> Usage {
        let total = |cpu: &Option<bollard::models::ContainerCpuStats>| {
            let cpu = cpu.as_ref()?;
            Some((cpu.cpu_usage.as_ref()?.total_usage?, cpu.system_cpu_usage?, cpu.online_cpus.unwrap_or(1)))
        };
        let cpu_percent = total(&stats.cpu_stats).zip(total(&stats.precpu_stats)).and_then(|(now, before)| {
            let (used, system) = (now.0.checked_sub(before.0)?, now.1.checked_sub(before.1)?);
            (system > 0).then(|| used as f64 / system as f64 * f64::from(now.2) * 100.0)
        });
        let memory_bytes = stats.memory_stats.as_ref().and_then(|memory| {
            let cache = memory.stats.as_ref().and_then(|s| s.get("inactive_file").or(s.get("cache")).copied());
            Some(memory.usage?.saturating_sub(cache.unwrap_or(0)))
        });
        Usage { cpu_percent, memory_bytes }
    }
}

/// The nodes a scale kept, added and removed, by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scaled {
    pub kept: Vec<usize>,
    pub added: Vec<usize>,
    pub removed: Vec<usize>,
}

/// A request the runtime cannot carry out.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
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
    #[error("project `{project}` runs no node services: scale works on a project started with `up --runtime swarm`")]
    NotScalable { project: String },
    #[error("no free port left in {range} for {member}")]
    NoSparePort { range: PortRange, member: Member },
    #[error("project `{project}` has no published registry; is it up? (or pass --registry HOST:PORT)")]
    NoPublishedRegistry { project: String },
    #[error("project `{project}` has no node to take the image from")]
    NoNodeImage { project: String },
    #[error("{member} is not a {state} {} of project `{project}`{here}: see `launcher ps`", member.kind())]
    NotThere { member: Member, state: &'static str, project: String, here: &'static str },
    #[error("the {member} did not listen on {addr} within {waited:?}: see `launcher logs`")]
    NotListening { member: Member, addr: SocketAddr, waited: Duration },
    #[error("the processes of --runtime local live only as long as the `up` that started them")]
    NotKept,
    #[error(
        "the service {service} was not running (healthy) within {waited:?}: see `launcher ps` and `launcher logs`"
    )]
    NotRunning { service: String, waited: Duration },
    #[error(
        "project `{project}` runs on a swarm, whose overlay network this machine does not reach: \
         scrape its members from a container on that network (docs/observability.md)"
    )]
    OverlayOnly { project: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_containers_health_is_read_from_its_status_line() {
        assert_eq!(Health::in_status("Up 3 minutes (healthy)"), Some(Health::Healthy));
        assert_eq!(Health::in_status("Up 1 second (health: starting)"), Some(Health::Starting));
        assert_eq!(Health::in_status("Up 2 hours (unhealthy)"), Some(Health::Unhealthy));
        assert_eq!(Health::in_status("Up 3 minutes"), None);
        assert_eq!(Health::in_status("Exited (137) 2 seconds ago"), None);
        assert_eq!(Health::in_status("Up 3 minutes (Paused)"), None);
    }
}
