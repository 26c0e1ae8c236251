//! The registry's command line and environment, read once into a [`Config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Arg, Parser};
use wire::cli::{self, HealthArgs, HttpArgs, JoinTokenArgs, Lifetime, LimitsArgs};
use wire::connection::Limits;
use wire::fields::truncate;
use wire::http::ReadToken;
use wire::secure::TokenError;
use wire::telemetry::LogFormat;

use crate::config::{Config, Storage};
use crate::identity::{IdentityError, Origin, RegistryIdentity, KEY_ENV};
use crate::store::{Capacity, Leases};

/// HIT6 contacts registry: keeps the running nodes in memory and tells each
/// new node about the ones registered before it.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    subcommand_negates_reqs = true,
    mut_arg("http_listen", |arg| arg.env(HTTP_LISTEN_ENV)),
    mut_arg("join_token_file", join_token_file),
    mut_arg("max_pending_per_ip", |arg| arg.env("REGISTRY_MAX_PENDING_PER_IP")),
    mut_arg("handshake_timeout", |arg| arg.env("REGISTRY_HANDSHAKE_TIMEOUT"))
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Address to listen on.
    #[arg(long, env = "REGISTRY_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Lease of a registration; nodes renew it by heartbeat.
    #[arg(long, env = "REGISTRY_TTL", default_value = "15s", value_parser = cli::duration)]
    pub ttl: Duration,
    /// How long the name and address of a node whose lease ran out, or whose
    /// session was lost, stay its key's, so that it finds its place when it
    /// comes back and a stranger is refused them [default: twice the lease].
    #[arg(long, env = "REGISTRY_HOLD", value_parser = cli::duration)]
    pub hold: Option<Duration>,
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
    #[command(flatten)]
    pub join_token: JoinTokenArgs,
    /// A file holding the registry's own secret (43 characters of base64url),
    /// made there, readable by its owner only, if there is none; or set
    /// HIT6_REGISTRY_KEY. Its keys survive restarts and may be shared by
    /// replicas, so nodes may pin them (`node --registry-key`). Without one,
    /// fresh keys at each start.
    #[arg(long, env = "REGISTRY_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// With a join token, still admit the original programs, in plaintext
    /// and unauthenticated (see README, Trust).
    #[arg(long, env = "REGISTRY_ALLOW_ORIGINAL")]
    pub allow_original: bool,
    /// Also answer the group lab's internal clients, as its assigner does
    /// (8888 in the lab): on this address, every connection gets the
    /// address of a group's coordinator. With a join token, only under
    /// --allow-original.
    #[arg(long, env = "REGISTRY_ASSIGNER_LISTEN", value_name = "ADDR")]
    pub assigner_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub http: HttpArgs,
    /// A file holding a token of the HTTP listener's own (64 hex characters,
    /// not the join token), which the status page's viewers must hold; or
    /// set HIT6_HTTP_TOKEN. With a join token and without one, the status
    /// page's membership is not served.
    #[arg(long, env = "REGISTRY_HTTP_TOKEN_FILE", value_name = "FILE")]
    pub http_token_file: Option<PathBuf>,
    /// Connections served at once, once established. Every node keeps two
    /// open, its session (its heartbeats travel on it) and its watch, so
    /// this bounds the nodes at half of it.
    #[arg(long, env = "REGISTRY_MAX_CONNECTIONS", default_value_t = 16_384,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// Established connections from one source address: the nodes of one
    /// host behind one address (NAT) need two each and room to reconnect
    /// (a mesh of 1000 on one host went past 4096 at times), and one address
    /// cannot take every slot of `--max-connections`.
    #[arg(long, env = "REGISTRY_MAX_CONNECTIONS_PER_IP", default_value_t = 8192,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections_per_ip: u32,
    /// Bytes of unfinished messages all connections may hold at once; past
    /// it, those holding the largest are answered `busy` and closed.
    #[arg(long, env = "REGISTRY_READ_BUDGET", default_value_t = wire::connection::READ_BUDGET as u64,
          value_parser = clap::value_parser!(u64).range(65_536..=1 << 40))]
    pub read_budget: u64,
    #[command(flatten)]
    pub pending: LimitsArgs,
    /// Entries held at most, of every dialect.
    #[arg(long, env = "REGISTRY_MAX_ENTRIES", default_value_t = 20_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_entries: u32,
    /// Original-dialect entries held at most, in all and from one source address.
    #[arg(long, env = "REGISTRY_MAX_ORIGINAL", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub max_original: u32,
    #[arg(long, env = "REGISTRY_MAX_ORIGINAL_PER_IP", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub max_original_per_ip: u32,
    /// Changes kept for watchers that resume (`watch` with `since`); one
    /// further behind gets a snapshot instead.
    #[arg(long, env = "REGISTRY_WATCH_HISTORY", default_value_t = 8192,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub watch_history: u32,
    /// How long a connection may stay silent before it is closed.
    #[arg(long, env = "REGISTRY_IDLE_TIMEOUT", default_value = "10s", value_parser = cli::duration)]
    pub idle_timeout: Duration,
    /// How long a client may take to read a reply before it is dropped.
    #[arg(long, env = "REGISTRY_WRITE_TIMEOUT", default_value = "5s", value_parser = cli::duration)]
    pub write_timeout: Duration,
    /// Where the membership is kept: in this process's memory, or in etcd,
    /// shared by every registry given the same endpoints (replicas).
    #[arg(long, env = "REGISTRY_STORE", value_enum, default_value_t)]
    pub store: StoreKind,
    /// etcd's client endpoints, `host:port,...` (plain http, on a network of
    /// the replicas' own). Replicas must share the registry's key
    /// (`--key-file` or HIT6_REGISTRY_KEY).
    #[arg(long, env = "REGISTRY_ETCD_ENDPOINTS", value_delimiter = ',', value_parser = endpoint,
          required_if_eq("store", "etcd"))]
    pub etcd_endpoints: Vec<String>,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
}

/// The variable of `--http-listen`, which `registry health` reads too.
pub const HTTP_LISTEN_ENV: &str = "REGISTRY_HTTP_LISTEN";

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check the health of the registry serving HTTP at --http-listen:
    /// exit 0 when it is good (the image's HEALTHCHECK).
    #[command(mut_arg("http_listen", |arg| arg.env(HTTP_LISTEN_ENV)))]
    Health(HealthArgs),
}

/// The value of `--store`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    #[default]
    Memory,
    Etcd,
}

/// An etcd client endpoint: `host:port`.
fn endpoint(text: &str) -> Result<String, String> {
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("`{}` is not host:port", truncate(text)));
    };
    if host.is_empty() || host.contains(['/', ' ']) {
        return Err(format!("`{}` names no host", truncate(text)));
    }
    cli::port(port).map(|_| text.to_owned())
}

/// The registry's word for the join token file, and its variable.
fn join_token_file(arg: Arg) -> Arg {
    arg.env("REGISTRY_JOIN_TOKEN_FILE").help(
        "A file holding the join token (64 hex characters) that members must hold to register; \
         or set HIT6_JOIN_TOKEN. Without one, anyone may",
    )
}

/// A secret the registry was given that it cannot use.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("--http-token-file: {0}")]
    HttpToken(TokenError),
    #[error(
        "with --store etcd, replicas must prove the same key: give each the same --key-file, \
         or set {KEY_ENV}"
    )]
    Unshared,
    #[error(
        "--assigner-listen answers the group lab's programs, which prove nothing: with a join token, \
         give --allow-original too"
    )]
    AssignerWithoutOriginals,
}

impl Cli {
    /// The server's configuration, with the join token and the registry's
    /// keys read from their files or the environment.
    pub fn config(&self) -> Result<Config, SecretError> {
        let limits = Limits {
            read_budget: self.read_budget as usize,
            ..self.pending.limits(self.max_connections, self.max_connections_per_ip)
        };
        let identity = RegistryIdentity::from_file_or_env(self.key_file.as_deref())?;
        let admission = self.join_token.admission()?;
        if self.assigner_listen.is_some() && admission.requires_token() && !self.allow_original {
            return Err(SecretError::AssignerWithoutOriginals);
        }
        let storage = match self.store {
            StoreKind::Memory => Storage::Memory,
            StoreKind::Etcd if identity.origin == Origin::Fresh => return Err(SecretError::Unshared),
            StoreKind::Etcd => Storage::Etcd { endpoints: self.etcd_endpoints.clone() },
        };
        Ok(Config {
            leases: {
                let leases = Leases::new(self.ttl, self.legacy_ttl.0);
                Leases { hold: self.hold.unwrap_or(leases.hold), ..leases }
            },
            sweep_interval: self.sweep_interval,
            groups: self.groups,
            admission,
            allow_original: self.allow_original,
            limits,
            capacity: Capacity {
                entries: self.max_entries as usize,
                original: self.max_original as usize,
                original_per_ip: self.max_original_per_ip as usize,
                history: self.watch_history as usize,
            },
            idle_timeout: self.idle_timeout,
            write_timeout: self.write_timeout,
            identity,
            storage,
            http_token: ReadToken::from_file_or_env(self.http_token_file.as_deref())
                .map_err(SecretError::HttpToken)?
                .map(Arc::new),
        })
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
    fn the_shared_flags_keep_the_registrys_variables_and_defaults() {
        let command = Cli::command();
        let shown = |id| wire::cli::env_and_defaults(&command, id);
        assert_eq!(shown("join_token_file"), (Some("REGISTRY_JOIN_TOKEN_FILE"), vec![]));
        assert_eq!(shown("join_token"), (None, vec![]));
        assert_eq!(shown("max_pending_per_ip"), (Some("REGISTRY_MAX_PENDING_PER_IP"), vec!["256"]));
        assert_eq!(shown("handshake_timeout"), (Some("REGISTRY_HANDSHAKE_TIMEOUT"), vec!["1s"]));
        let help = command.get_arguments().find(|arg| arg.get_id() == "join_token_file").and_then(Arg::get_help);
        assert!(help.is_some_and(|help| help.to_string().ends_with("Without one, anyone may")), "{help:?}");
    }

    #[test]
    fn replicas_read_their_endpoints_and_must_share_a_key() {
        let cli =
            Cli::try_parse_from(["registry", "--store", "etcd", "--etcd-endpoints", "e1:2379,[::1]:2379"]).unwrap();
        assert_eq!(cli.etcd_endpoints, ["e1:2379", "[::1]:2379"]);
        // No key file and (in tests) no HIT6_REGISTRY_KEY: fresh keys, which no other replica has.
        let error = cli.config().unwrap_err().to_string();
        assert!(error.contains("--key-file") && error.contains(KEY_ENV), "{error}");
    }

    #[test]
    fn the_command_lines_connection_limits_are_the_librarys_defaults() {
        let cli = Cli::try_parse_from(["registry"]).unwrap();
        assert_eq!(cli.config().unwrap().limits, Config::default().limits);
    }

    #[test]
    fn bad_values_are_refused_with_clear_messages() {
        let error = |args: &[&str]| Cli::try_parse_from([&["registry"], args].concat()).unwrap_err().to_string();
        assert!(error(&["--ttl", "100000000000s"]).contains("longest duration"));
        assert!(error(&["--groups", "100001"]).contains("100001"));
        assert!(error(&["--listen", "nowhere"]).contains("nowhere"));
        let refused = error(&["--join-token", "00"]);
        assert!(refused.contains("must not be given on the command line") && refused.contains("--join-token-file"));
        assert!(!refused.contains("00\""), "{refused}");
        assert!(error(&["--store", "etcd"]).contains("--etcd-endpoints"));
        assert!(error(&["--store", "etcd", "--etcd-endpoints", "a:1,nowhere"]).contains("`nowhere` is not host:port"));
        assert!(error(&["--etcd-endpoints", "a:0"]).contains("0"));
        let cli = Cli::try_parse_from(["registry", "--ttl", "20", "--legacy-ttl", "never"]).unwrap();
        assert_eq!((cli.ttl, cli.legacy_ttl), (Duration::from_secs(20), Lifetime(None)));
    }
}
