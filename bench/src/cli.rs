//! The benchmark's command line.

use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Measures the real release binaries on this machine, prints each figure
/// next to its target, and exits 1 when a target is missed.
#[derive(Debug, Clone, Parser)]
#[command(name = "bench", version, about)]
pub(crate) struct Cli {
    /// Sections to run, comma-separated [default: all].
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Section::value_variants().to_vec())]
    pub(crate) only: Vec<Section>,
    /// Mesh sizes, comma-separated, 2 to 10000 nodes each.
    #[arg(long, value_delimiter = ',', default_value = "10,100,200,1000", value_parser = node_count)]
    pub(crate) nodes: Vec<usize>,
    /// Sizes of the `local` section's meshes [default: 10,100, and 1000 when --nodes has 1000].
    #[arg(long, value_delimiter = ',', value_parser = node_count)]
    pub(crate) local_nodes: Option<Vec<usize>>,
    /// Seconds measured by the throughput sections, after a 0.5 s warm-up.
    #[arg(long, default_value = "3", value_parser = seconds)]
    pub(crate) duration: Duration,
    /// Concurrent clients of the throughput sections.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) clients: u32,
    /// How long a mesh may take [default: 15 s + 75 ms per node].
    #[arg(long, value_parser = seconds)]
    pub(crate) mesh_timeout: Option<Duration>,
    /// Extra environment for the mesh's nodes, for experiments (`--node-env RUST_LOG=debug`).
    #[arg(long, value_name = "KEY=VALUE", value_parser = key_value)]
    pub(crate) node_env: Vec<(String, String)>,
    /// Run with a join token: the bench draws one and hands it to the
    /// registry and the nodes in their environment, and its own clients
    /// open their sessions with it (without, sessions are still secure, but
    /// anyone may join).
    #[arg(long)]
    pub(crate) token: bool,
    /// Print the table on stderr and a JSON document on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// Internal: run as one of the two processes of the `floor` section.
    #[arg(long, value_enum, hide = true)]
    pub(crate) floor_peer: Option<FloorPeer>,
}

/// What the benchmark measures, in the order it runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub(crate) enum Section {
    /// Heartbeats/s and p50/p99 latency from concurrent clients, each on a
    /// persistent connection.
    Heartbeat,
    /// Re-registrations/s and p50/p99 into a registry holding 100 entries
    /// (each reply carries 99 contacts).
    Register,
    /// Resident memory of one idle node and of a registry holding 1000 entries.
    Memory,
    /// The CPU cost of one minimal greeting between two processes with
    /// blocking sockets: the kernel's floor, which the mesh is priced against.
    Floor,
    /// Time for N node processes to greet each other pairwise, with duplicate
    /// and missing pairs counted, and the nodes' CPU per greeting against the floor.
    Mesh,
    /// Our full mesh against the lab's original Python programs'
    /// (reconstructed in bench/originals/), one after the other, for each
    /// `--nodes` size up to 200: both times and their ratio; skipped
    /// without python3.
    Originals,
    /// p50/p99/max latency of sequential multicasts to groups of 10 and 100.
    Multicast,
    /// The group lab's programs next to ours: a group of 5 nodes and 5
    /// members joined with `JOIN`, sent to by an external client's `SEND`
    /// on a kept connection and by our kept sender (p50/p99), and a group
    /// of 10 nodes alone for reference.
    Lab,
    /// One change fanned out to 1000 watchers (p50/p99 until each has it),
    /// and the registry's memory and CPU with 1000 idle watchers.
    Watch,
    /// Time from `kill -9` of a node until every other node has logged
    /// `peer_left`, p50/p99 over 50 kills in meshes of 10 and 100.
    Detection,
    /// Registry replicas on a real 3-member etcd (`--store etcd`) next to
    /// one registry in memory: heartbeats/s and re-registrations/s (64
    /// clients), the time until 10 nodes have moved when the replica they
    /// use is killed and until etcd takes writes again when its leader is
    /// killed (10 kills each), and a full mesh of 200 with 3 replicas
    /// against one registry; skipped without an etcd binary.
    Replicas,
    /// `launcher up --detach` in Docker (project `hit6-bench`), 3 runs each of
    /// 5 and 9 nodes, and the images' sizes; skipped without a Docker daemon.
    Launcher,
    /// `launcher up --runtime local --detach` for each `--local-nodes` size.
    Local,
    /// `launcher up --runtime swarm` for 5, 9 and 50 nodes, next to
    /// `--runtime docker` and `docker-compose up --scale`, on a single-host
    /// swarm the bench makes and leaves; skipped without a Docker daemon.
    Swarm,
    /// What the metrics cost: heartbeats/s at a registry serving /metrics
    /// (scraped every second) next to one without, and the nodes' CPU per
    /// greeting in a mesh of 200 with metrics on next to off, 5 runs of
    /// each in turns; at most 3% apart.
    Metrics,
    /// A stranger's attacks on a registry, at full size: in open mode 15,000
    /// unfinished 65,000-byte messages and 16,363 watches from one address
    /// (the registry's memory before, at its peak and after, and members'
    /// registration and heartbeat p50/p99, idle and under attack); with a
    /// token, 200,000 wrong-token handshakes (the log lines they cost) and
    /// a flood of copies of a member's first handshake message (members'
    /// latencies meanwhile); 1,024 original entries that never answer, and
    /// how soon the next node greets a member registered after them. Runs
    /// last: it gives the run a token.
    Hostile,
}

impl Section {
    /// The name `--only` takes, which rows and progress lines show.
    pub(crate) fn name(self) -> String {
        self.to_possible_value().map(|value| value.get_name().to_owned()).unwrap_or_default()
    }
}

impl Cli {
    /// Sizes of the `local` section: 1000 local nodes take minutes, so only when asked for.
    pub(crate) fn local_sizes(&self) -> Vec<usize> {
        self.local_nodes.clone().unwrap_or_else(|| {
            let mut sizes = vec![10, 100];
            sizes.extend(self.nodes.iter().copied().filter(|&n| n == 1000));
            sizes
        })
    }

    pub(crate) fn runs(&self, section: Section) -> bool {
        self.only.contains(&section)
    }
}

fn node_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n @ 2..=10_000) => Ok(n),
        _ => Err(format!("`{text}` isn't a node count from 2 to 10000")),
    }
}

fn seconds(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s < 3600.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("`{text}` isn't a number of seconds below 3600")),
    }
}

fn key_value(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("`{text}` isn't KEY=VALUE"))?;
    Ok((key.to_owned(), value.to_owned()))
}

/// The hidden modes this binary runs in as the `floor` section's two processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FloorPeer {
    /// Answers greetings on 127.0.0.1, printing its port first.
    Answer,
    /// Sends `FLOOR_GREETINGS` greetings to the address on stdin's first line.
    Greet,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed_and_lists_the_sections() {
        Cli::command().debug_assert();
        let help = Cli::command().render_long_help().to_string();
        for section in Section::value_variants() {
            let name = section.to_possible_value().expect("every section has a name");
            assert!(help.contains(name.get_name()), "{help}");
        }
    }

    #[test]
    fn parses_sections_and_sizes() {
        let cli = Cli::try_parse_from(["bench", "--only", "heartbeat,memory", "--nodes", "200,1000"]).unwrap();
        assert_eq!(cli.only, [Section::Heartbeat, Section::Memory]);
        assert_eq!(cli.local_sizes(), [10, 100, 1000]);
        let error = Cli::try_parse_from(["bench", "--only", "fly"]).unwrap_err().to_string();
        assert!(error.contains("fly"), "{error}");
        let error = Cli::try_parse_from(["bench", "--nodes", "1"]).unwrap_err().to_string();
        assert!(error.contains("isn't a node count"), "{error}");
        let cli = Cli::try_parse_from(["bench", "--node-env", "RUST_LOG=debug"]).unwrap();
        assert_eq!(cli.node_env, [("RUST_LOG".to_owned(), "debug".to_owned())]);
    }
}
