//! The hosts of a swarm, and where the project's members go among them: a
//! published node to the host with the fewest of the project's nodes, on
//! the lowest free port of the range there; etcd member and registry
//! replica i to the i-th host, the manager first, so that a quorum
//! outlives the loss of any one host when there are as many hosts.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use bollard::models::{
    EndpointPortConfigPublishModeEnum, NodeSpecAvailabilityEnum, NodeState, ServiceSpec, TaskSpecPlacement,
};
use bollard::query_parameters::{ListNodesOptions, ListTasksOptionsBuilder};
use bollard::Docker;

use crate::ports::{self, PortError, PortRange};
use crate::runtime::engine::{call, swarm_manager, DockerError, Engine, SwarmError};

/// A Docker engine label a host may carry (`"labels"` in daemon.json): the
/// address nodes published on it advertise, when peers reach it at another
/// one than the swarm's (a cloud VM's public address). On a node service:
/// the address given with `up --advertise-ip`, for every host.
pub const LABEL_ADVERTISE_IP: &str = "io.hit6.advertise-ip";

/// A host of the swarm that may run tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The swarm's node id.
    pub id: String,
    pub hostname: String,
    /// What nodes published on it advertise: its `io.hit6.advertise-ip`
    /// engine label, or else its address in the swarm.
    pub advertise: IpAddr,
    /// Its address in the swarm, at which the manager reaches the ports
    /// published there.
    pub addr: IpAddr,
}

/// The hosts that may run tasks, in the swarm's order.
pub async fn hosts(docker: &Docker) -> Result<Vec<Host>, DockerError> {
    let nodes = docker.list_nodes(None::<ListNodesOptions>).await.map_err(call("list the swarm's hosts"))?;
    let mut hosts = Vec::new();
    for node in nodes {
        let ready = node.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY);
        let active = node.spec.as_ref().and_then(|s| s.availability) == Some(NodeSpecAvailabilityEnum::ACTIVE);
        let (Some(id), true) = (node.id, ready && active) else { continue };
        // Its address in the swarm, which a ready host has.
        let Some(addr) = node.status.and_then(|s| s.addr).and_then(|addr| addr.parse().ok()) else { continue };
        let description = node.description.unwrap_or_default();
        let hostname = description.hostname.unwrap_or_default();
        let labelled = description.engine.and_then(|e| e.labels).and_then(|l| l.get(LABEL_ADVERTISE_IP).cloned());
        let advertise = match labelled {
            Some(value) => value.parse().map_err(|_| SwarmError::BadAdvertiseLabel {
                host: hostname.clone(),
                label: LABEL_ADVERTISE_IP,
                value,
            })?,
            None => addr,
        };
        hosts.push(Host { id, hostname, advertise, addr });
    }
    if hosts.is_empty() {
        return Err(DockerError::Swarm(SwarmError::NoHosts));
    }
    Ok(hosts)
}

/// The host name of every host of the swarm, whatever its state, by id.
pub async fn host_names(docker: &Docker) -> Result<HashMap<String, String>, DockerError> {
    let nodes = docker.list_nodes(None::<ListNodesOptions>).await.map_err(call("list the swarm's hosts"))?;
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
    engine: &Engine,
    range: PortRange,
    ours: &HashMap<String, usize>,
    count: usize,
) -> anyhow::Result<Vec<Placement>> {
    let hosts = hosts(&engine.docker).await?;
    let mut taken = ports_by_host(&engine.docker, &hosts).await?;
    // On the host the launcher runs on, the manager's, processes and
    // containers hold ports too; elsewhere only the swarm's are known.
    let local = taken.entry(swarm_manager(&engine.docker).await?).or_default();
    local.extend(engine.published_ports().await?);
    local.extend(ports::bound_here(range));
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

/// The host of etcd member and registry replica `i` (from 1) for each of
/// `count`: the `i`-th of `hosts`, taken with `manager` first and round
/// robin, so that members share a host only when there are fewer hosts
/// than members. etcd-i and registry-i share one: losing a host costs one
/// etcd member and one replica.
pub fn for_replicas<'a>(hosts: &'a [Host], manager: &str, count: usize) -> Vec<&'a Host> {
    let mut ordered: Vec<&Host> = hosts.iter().collect();
    ordered.sort_by_key(|host| host.id != manager);
    ordered.iter().copied().cycle().take(count).collect()
}

/// For each of `hosts`, the ports that services of any project publish
/// there, from their specs: a service pinned to a host holds its ports
/// there even before its task is scheduled; the routing mesh (ingress
/// mode) holds them on every host; an unpinned service in host mode
/// holds them where its tasks run.
async fn ports_by_host(docker: &Docker, hosts: &[Host]) -> Result<HashMap<String, HashSet<u16>>, DockerError> {
    let running = HashMap::from([("desired-state".to_owned(), vec!["running".to_owned()])]);
    let options = ListTasksOptionsBuilder::default().filters(&running).build();
    let tasks = docker.list_tasks(Some(options)).await.map_err(call("list the swarm's tasks"))?;
    let services = docker.list_services(None).await.map_err(call("list the swarm's services"))?;
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

const PINNED_TO: &str = "node.id==";

/// Placed on the host with this swarm node id only.
pub fn pinned(host: &str) -> TaskSpecPlacement {
    TaskSpecPlacement { constraints: Some(vec![format!("{PINNED_TO}{host}")]), ..Default::default() }
}

/// The host a spec is pinned to, if it is.
pub fn pinned_host(spec: &ServiceSpec) -> Option<&str> {
    let constraints = spec.task_template.as_ref()?.placement.as_ref()?.constraints.as_ref()?;
    constraints.iter().find_map(|c| c.strip_prefix(PINNED_TO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str) -> Host {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        Host { id: id.into(), hostname: id.into(), advertise: ip, addr: ip }
    }

    fn ids(hosts: Vec<&Host>) -> Vec<&str> {
        hosts.into_iter().map(|host| host.id.as_str()).collect()
    }

    #[test]
    fn replicas_spread_over_as_many_hosts_the_manager_first() {
        let hosts = [host("a"), host("b"), host("m"), host("c")];
        assert_eq!(ids(for_replicas(&hosts, "m", 3)), ["m", "a", "b"]);
        assert_eq!(ids(for_replicas(&hosts, "m", 5)), ["m", "a", "b", "c", "m"]);
    }

    #[test]
    fn replicas_share_hosts_only_when_there_are_fewer() {
        assert_eq!(ids(for_replicas(&[host("m")], "m", 3)), ["m", "m", "m"]);
        assert_eq!(ids(for_replicas(&[host("a"), host("m")], "m", 3)), ["m", "a", "m"]);
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
    fn a_host_out_of_ports_is_a_port_error() {
        let range: PortRange = "8087-8088".parse().unwrap();
        let error = spread(&[host("a")], &HashMap::new(), &HashMap::new(), range, 3).unwrap_err();
        assert_eq!(error, PortError::NotEnoughFree { range, free: 2, needed: 3 });
    }
}
