//! The registry's command line and environment, read once into a [`Config`].

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use wire::cli::{self, Lifetime};
use wire::telemetry::LogFormat;

use crate::server::Config;
use crate::store::Leases;

/// HIT6 contacts registry: keeps the running nodes in memory and tells each
/// new node about the ones registered before it.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Address to listen on.
    #[arg(long, env = "REGISTRY_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Lease of a registration; nodes renew it by heartbeat.
    #[arg(long, env = "REGISTRY_TTL", default_value = "15s", value_parser = cli::duration)]
    pub ttl: Duration,
    /// How often expired entries are removed.
    #[arg(long, env = "REGISTRY_SWEEP_INTERVAL", default_value = "1s", value_parser = cli::duration)]
    pub sweep_interval: Duration,
    /// Number of groups; nodes that choose none are placed in the least loaded.
    #[arg(long, env = "REGISTRY_GROUPS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=i64::from(wire::fields::MAX_GROUP)))]
    pub groups: u32,
    /// Lifetime of registrations from the original programs, which never
    /// heartbeat: a duration, or `never` to keep them until deregistered.
    #[arg(long, env = "REGISTRY_LEGACY_TTL", default_value = "never", value_parser = cli::lifetime)]
    pub legacy_ttl: Lifetime,
    /// Connections served at once; further ones wait to be accepted.
    #[arg(long, env = "REGISTRY_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// How long a connection may stay silent before it is closed.
    #[arg(long, env = "REGISTRY_IDLE_TIMEOUT", default_value = "10s", value_parser = cli::duration)]
    pub idle_timeout: Duration,
    /// How long a client may take to read a reply before it is dropped.
    #[arg(long, env = "REGISTRY_WRITE_TIMEOUT", default_value = "5s", value_parser = cli::duration)]
    pub write_timeout: Duration,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
}

impl Cli {
    /// The server's configuration.
    pub fn config(&self) -> Config {
        Config {
            leases: Leases { ttl: self.ttl, legacy_ttl: self.legacy_ttl.0 },
            sweep_interval: self.sweep_interval,
            groups: self.groups,
            max_connections: self.max_connections as usize,
            idle_timeout: self.idle_timeout,
            write_timeout: self.write_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_values_are_refused_with_clear_messages() {
        let error = |args: &[&str]| Cli::try_parse_from([&["registry"], args].concat()).unwrap_err().to_string();
        assert!(error(&["--ttl", "100000000000s"]).contains("longest duration"));
        assert!(error(&["--groups", "100001"]).contains("100001"));
        assert!(error(&["--listen", "nowhere"]).contains("nowhere"));
        let cli = Cli::try_parse_from(["registry", "--ttl", "20", "--legacy-ttl", "never"]).unwrap();
        assert_eq!((cli.ttl, cli.legacy_ttl), (Duration::from_secs(20), Lifetime(None)));
    }
}
