//! The etcd cluster under a project's registry replicas: how many members,
//! their command lines, and where the replicas find them. Each runtime
//! says only which host and ports its members go by.
//!
//! etcd is tuned as docs/replicas.md asks: a heartbeat every 50 ms and an
//! election after 250 ms of silence (sub-second failover), pre-vote (a
//! member back from a pause rejoins without forcing an election), and no
//! auto-compaction, since a starting replica replays the whole log.

use std::path::PathBuf;

use registry::client::RegistryAddr;

use super::member::Member;
pub use crate::images::etcd::{EtcdSource, CLIENT_PORT, ETCD_PATH, PEER_PORT};

/// An etcd member's data in its container: below a directory its user owns.
pub const DATA_DIR: &str = "/data/etcd";
/// That directory, which a swarm mounts a volume on.
pub const DATA_ROOT: &str = "/data";
/// The largest cluster `up --registries` starts.
pub const MAX_MEMBERS: usize = 7;

/// A project's etcd cluster: as many members as registry replicas.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub size: usize,
    /// `--initial-cluster-token`: drawn per project, so that members of
    /// two projects never take each other for their own.
    pub token: String,
    /// Where the members' image (or, for local processes, binary) comes from.
    pub source: EtcdSource,
}

/// Where one etcd member is reached by its peers and by the replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdAddr {
    pub host: String,
    pub client: u16,
    pub peer: u16,
}

impl Cluster {
    /// A cluster of `size` members with a fresh token.
    pub fn new(size: usize, source: EtcdSource) -> Cluster {
        let token = format!("hit6-{:016x}", fastrand::u64(..));
        Cluster { size, token, source }
    }

    /// Its members, `etcd-1` to `etcd-N`.
    pub fn members(&self) -> impl Iterator<Item = Member> {
        (1..=self.size).map(Member::Etcd)
    }

    /// The registry replicas it carries, `registry-1` to `registry-N`.
    pub fn replicas(&self) -> impl Iterator<Item = Member> {
        (1..=self.size).map(|i| Member::Registry(Some(i)))
    }

    /// The arguments of member `index` (from 1), every member being at
    /// `addrs` (member i at `addrs[i - 1]`), listening on `listen` (an ip)
    /// and keeping its data in `data_dir`.
    pub fn args(&self, index: usize, addrs: &[EtcdAddr], listen: &str, data_dir: &str) -> Vec<String> {
        let me = &addrs[index - 1];
        let initial: Vec<String> = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| format!("{}=http://{}:{}", Member::Etcd(i + 1), addr.host, addr.peer))
            .collect();
        let pairs = [
            ("--name", Member::Etcd(index).to_string()),
            ("--data-dir", data_dir.to_owned()),
            ("--listen-client-urls", format!("http://{listen}:{}", me.client)),
            ("--advertise-client-urls", format!("http://{}:{}", me.host, me.client)),
            ("--listen-peer-urls", format!("http://{listen}:{}", me.peer)),
            ("--initial-advertise-peer-urls", format!("http://{}:{}", me.host, me.peer)),
            ("--initial-cluster", initial.join(",")),
            ("--initial-cluster-state", "new".to_owned()),
            ("--initial-cluster-token", self.token.clone()),
            ("--heartbeat-interval", "50".to_owned()),
            ("--election-timeout", "250".to_owned()),
            ("--auto-compaction-retention", "0".to_owned()),
            ("--logger", "zap".to_owned()),
            ("--log-outputs", "stderr".to_owned()),
        ];
        let mut args: Vec<String> = pairs.into_iter().flat_map(|(flag, value)| [flag.to_owned(), value]).collect();
        // A boolean flag takes its value only after `=`.
        args.push("--pre-vote=true".to_owned());
        args
    }

    /// The command of member `index` in a container: the image's binary,
    /// listening on every interface of its container, which only the
    /// project network reaches (no port is published).
    pub fn container_cmd(&self, index: usize, addrs: &[EtcdAddr]) -> Vec<String> {
        std::iter::once(ETCD_PATH.to_owned()).chain(self.args(index, addrs, "0.0.0.0", DATA_DIR)).collect()
    }

    /// The binary local processes run.
    pub fn binary(&self) -> Option<&PathBuf> {
        self.source.binary.as_ref().map(|binary| &binary.path)
    }
}

/// The replicas' `--etcd-endpoints`: every member's client address.
pub fn endpoints(addrs: &[EtcdAddr]) -> String {
    addrs.iter().map(|addr| format!("{}:{}", addr.host, addr.client)).collect::<Vec<_>>().join(",")
}

/// A node's registry arguments: `HOST PORT` for one registry, as ever; the
/// replicas, from replica `index` mod N on, as one list, `host:port,...`.
pub fn registry_args(registries: &[RegistryAddr], index: usize) -> Vec<String> {
    match registries {
        [only] => vec![only.host.clone(), only.port.to_string()],
        _ => {
            let list: Vec<String> = rotated(registries, index).iter().map(ToString::to_string).collect();
            vec![list.join(",")]
        }
    }
}

/// `list` rotated to start at `index mod len`: node i is given the
/// replicas starting at replica i mod N, so that the load spreads.
pub fn rotated<T: Clone>(list: &[T], index: usize) -> Vec<T> {
    if list.is_empty() {
        return Vec::new();
    }
    let start = index % list.len();
    list[start..].iter().chain(&list[..start]).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        let source = EtcdSource { image: "hit6-mesh/etcd:3.4.23".into(), binary: None };
        Cluster { size: 3, token: "hit6-0123".into(), source }
    }

    fn addrs() -> Vec<EtcdAddr> {
        (1..=3).map(|i| EtcdAddr { host: format!("p-etcd-{i}"), client: CLIENT_PORT, peer: PEER_PORT }).collect()
    }

    #[test]
    fn an_etcd_member_is_tuned_for_fast_failover_and_knows_every_peer() {
        let cmd = cluster().container_cmd(2, &addrs());
        let text = cmd.join(" ");
        assert_eq!(cmd[0], "/usr/local/bin/etcd");
        for expected in [
            "--name etcd-2 ",
            "--data-dir /data/etcd ",
            "--listen-client-urls http://0.0.0.0:2379 ",
            "--advertise-client-urls http://p-etcd-2:2379 ",
            "--listen-peer-urls http://0.0.0.0:2380 ",
            "--initial-advertise-peer-urls http://p-etcd-2:2380 ",
            "--initial-cluster etcd-1=http://p-etcd-1:2380,etcd-2=http://p-etcd-2:2380,etcd-3=http://p-etcd-3:2380 ",
            "--initial-cluster-state new ",
            "--initial-cluster-token hit6-0123 ",
            "--heartbeat-interval 50 --election-timeout 250 ",
            "--auto-compaction-retention 0 ",
            "--logger zap --log-outputs stderr --pre-vote=true",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in {text}");
        }
        // Flags and values alternate, the boolean last: nothing is glued together.
        assert_eq!(cmd.last().map(String::as_str), Some("--pre-vote=true"));
        assert!(cmd[1..cmd.len() - 1].iter().step_by(2).all(|flag| flag.starts_with("--")), "{cmd:?}");
    }

    #[test]
    fn local_members_listen_on_loopback_ports_of_their_own() {
        let addrs: Vec<EtcdAddr> =
            (0..3).map(|i| EtcdAddr { host: "127.0.0.1".into(), client: 3000 + i, peer: 4000 + i }).collect();
        let args = cluster().args(3, &addrs, "127.0.0.1", "/tmp/x/etcd-3").join(" ");
        assert!(args.contains("--listen-client-urls http://127.0.0.1:3002 "), "{args}");
        assert!(args.contains("--initial-cluster etcd-1=http://127.0.0.1:4000,etcd-2="), "{args}");
        assert_eq!(endpoints(&addrs), "127.0.0.1:3000,127.0.0.1:3001,127.0.0.1:3002");
    }

    #[test]
    fn tokens_differ_from_project_to_project() {
        let source = cluster().source;
        assert_ne!(Cluster::new(3, source.clone()).token, Cluster::new(3, source).token);
    }

    #[test]
    fn node_i_starts_at_replica_i_mod_n() {
        let list = ["r1", "r2", "r3"];
        assert_eq!(rotated(&list, 1), ["r2", "r3", "r1"]);
        assert_eq!(rotated(&list, 3), ["r1", "r2", "r3"]);
        assert_eq!(rotated(&list, 5), ["r3", "r1", "r2"]);
        assert_eq!(rotated(&["only"], 4), ["only"]);
        let replicas: Vec<RegistryAddr> =
            (1..=3).map(|i| RegistryAddr { host: format!("p-registry-{i}"), port: 8080 }).collect();
        assert_eq!(registry_args(&replicas, 4), ["p-registry-2:8080,p-registry-3:8080,p-registry-1:8080"]);
        assert_eq!(registry_args(&replicas[..1], 4), ["p-registry-1", "8080"], "one registry: HOST PORT, as ever");
    }
}
