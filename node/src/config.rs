//! The node's configuration: command line and environment, read once.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Arg, CommandFactory, Parser, Subcommand};
use registry::client::{Registries, RegistriesError};
use wire::cli::{self, HealthArgs, HttpArgs, JoinTokenArgs, LimitsArgs};
use wire::secure::{Identity, KeyFileError, Keys, PublicKey, TokenError};
use wire::telemetry::LogFormat;

use crate::exchange::Deadlines;
use crate::greeter::GreetConfig;
use crate::listener::ListenConfig;

/// HIT6 node: registers with the registry, greets every node registered
/// before it, and keeps listening for greetings.
#[derive(Debug, Parser)]
#[command(name = "node", version, about, subcommand_negates_reqs = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub args: Args,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Multicast a message to a group through its coordinator, and print the delivery report.
    Send(SendArgs),
    /// Check the health of the node serving HTTP at --http-listen: exit 0
    /// when it is registered and its session with the registry is up (the
    /// image's HEALTHCHECK).
    #[command(mut_arg("http_listen", |arg| arg.env(HTTP_LISTEN_ENV)))]
    Health(HealthArgs),
}

/// The variable of `--http-listen`, which `node health` reads too.
pub const HTTP_LISTEN_ENV: &str = "NODE_HTTP_LISTEN";

impl Cli {
    /// The command line, checked as [`Cli::checked`] does; on an error,
    /// exits as clap does.
    pub fn parse_checked() -> Cli {
        Cli::parse().checked().unwrap_or_else(|error| error.exit())
    }

    /// The command line, once the registries a node is to use are known to
    /// be usable, which clap cannot tell alone: whether REGISTRY_PORT is
    /// required depends on REGISTRY_HOST.
    pub fn checked(self) -> Result<Cli, clap::Error> {
        if self.command.is_some() {
            return Ok(self);
        }
        let (kind, message) = match self.args.registries() {
            Ok(_) => return Ok(self),
            Err(error @ RegistriesError::NoPort { .. }) => {
                (ErrorKind::MissingRequiredArgument, format!("<REGISTRY_PORT> is required: {error}"))
            }
            Err(error) => (ErrorKind::ValueValidation, format!("invalid value for <REGISTRY_HOST>: {error}")),
        };
        Err(Cli::command().error(kind, message))
    }
}

/// Running a node.
#[derive(Debug, clap::Args)]
#[command(
    mut_arg("join_token_file", join_token_file),
    mut_arg("http_listen", |arg| arg.env(HTTP_LISTEN_ENV)),
    mut_arg("max_pending_per_ip", |arg| arg.env("NODE_MAX_PENDING_PER_IP")),
    mut_arg("handshake_timeout", |arg| arg.env("NODE_HANDSHAKE_TIMEOUT"))
)]
pub struct Args {
    /// The registry's ip address or host name; or its replicas,
    /// comma-separated, tried in order: `host`, `host:port`, `[v6]:port`
    /// (at most 16).
    #[arg(env = "REGISTRY_HOST", required = true)]
    pub registry_host: Option<String>,
    /// The registry's port: that of every entry of REGISTRY_HOST naming none
    /// (then required).
    #[arg(env = "REGISTRY_PORT", value_parser = cli::port)]
    pub registry_port: Option<u16>,
    /// Address to listen for greetings on; port 0 picks a free one.
    #[arg(long, env = "NODE_LISTEN", default_value = "0.0.0.0:0")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub http: HttpArgs,
    /// The ip peers reach this node at (the host's, behind docker -p).
    #[arg(long, env = "IP_EXT")]
    pub advertise_ip: Option<IpAddr>,
    /// The port peers reach this node at, when it is published under another
    /// one (docker -p $PUERTO_EXT:8080).
    #[arg(long, env = "PUERTO_EXT", value_parser = cli::port)]
    pub puerto_ext: Option<u16>,
    /// Unique name in the registry [default: <hostname>-<advertised port>].
    #[arg(long, env = "NODE_NAME", value_parser = name)]
    pub name: Option<String>,
    /// Group to join [default: the registry assigns the least loaded].
    #[arg(long, env = "GROUP", value_parser = group)]
    pub group: Option<u32>,
    /// How long a coordinator waits for each member's ACK.
    #[arg(long, env = "ACK_TIMEOUT", default_value = "5s", value_parser = cli::duration)]
    pub ack_timeout: Duration,
    /// Longest time between heartbeats; a third of the registry's lease when that is shorter.
    #[arg(long, env = "HEARTBEAT_INTERVAL", default_value = "5s", value_parser = cli::duration)]
    pub heartbeat_interval: Duration,
    /// Time allowed to connect to a peer or to the registry.
    #[arg(long, env = "CONNECT_TIMEOUT", default_value = "2s", value_parser = cli::duration)]
    pub connect_timeout: Duration,
    /// Time allowed for a peer or the registry to answer.
    #[arg(long, env = "REPLY_TIMEOUT", default_value = "5s", value_parser = cli::duration)]
    pub reply_timeout: Duration,
    /// Peers greeted at once.
    #[arg(long, env = "GREET_FANOUT", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub fanout: u32,
    /// Greetings received at once; more wait to be accepted.
    #[arg(long, env = "NODE_MAX_CONNECTIONS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    #[command(flatten)]
    pub pending: LimitsArgs,
    /// The file of this node's static key, made on first use (mode 0600), so
    /// that the node keeps its identity across restarts [default: a new key each run].
    #[arg(long, env = "NODE_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    #[command(flatten)]
    pub pin: RegistryPin,
    #[command(flatten)]
    pub token: JoinTokenArgs,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
}

/// The key the registry must prove, running or sending.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryPin {
    /// The key the registry must prove (its `listening` line logs it, as
    /// `key`); a registry, or a stranger, that proves another is refused
    /// before this node sends it anything, and the node never falls back
    /// to plaintext [default: whatever key the registry holds].
    // A key's base64url may begin with `-`.
    #[arg(long, env = "NODE_REGISTRY_KEY", value_name = "KEY", allow_hyphen_values = true)]
    pub registry_key: Option<PublicKey>,
}

/// `node send`: multicast a message to a group through its coordinator.
#[derive(Debug, clap::Args)]
#[command(mut_arg("join_token_file", join_token_file))]
pub struct SendArgs {
    /// The registry, as HOST:PORT; or its replicas, comma-separated, tried in order.
    #[arg(long, env = "REGISTRY")]
    pub registry: Registries,
    /// The group to send to.
    #[arg(long, value_parser = group)]
    pub group: u32,
    /// The name the members are told sent it.
    #[arg(long, default_value = "node-send", value_parser = name)]
    pub sender: String,
    /// Print the delivery report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Time allowed for the report; it must exceed the coordinator's ACK timeout.
    #[arg(long, default_value = "10s", value_parser = cli::duration)]
    pub timeout: Duration,
    /// Time allowed to connect to the registry and the coordinator.
    #[arg(long, default_value = "2s", value_parser = cli::duration)]
    pub connect_timeout: Duration,
    #[command(flatten)]
    pub token: JoinTokenArgs,
    #[command(flatten)]
    pub pin: RegistryPin,
    /// The message.
    #[arg(value_parser = text)]
    pub text: String,
}

/// The node's variable for the join token file, running or sending.
fn join_token_file(arg: Arg) -> Arg {
    arg.env("NODE_JOIN_TOKEN_FILE")
}

/// A secret a node cannot start without.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Key(#[from] KeyFileError),
}

/// This node's key pair: from `file` (made there on first use), or new.
fn identity(file: Option<&Path>) -> Result<Identity, KeyFileError> {
    match file {
        Some(path) => Identity::load_or_create(path).map(|(identity, _)| identity),
        None => Ok(Identity::generate()),
    }
}

fn text(text: &str) -> Result<String, String> {
    if text.len() > crate::group::MAX_TEXT_BYTES {
        return Err(format!("the message is longer than {} bytes", crate::group::MAX_TEXT_BYTES));
    }
    Ok(text.to_owned())
}

fn name(text: &str) -> Result<String, String> {
    wire::fields::validate_name(text).map(|()| text.to_owned()).map_err(|bad| bad.to_string())
}

fn group(text: &str) -> Result<u32, String> {
    wire::fields::parse_group(&serde_json::Value::String(text.to_owned()), "group").map_err(|bad| bad.to_string())
}

/// Retry delays while registering: doubling from `initial` up to `max`, with jitter.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The registry's replicas, in the order they are tried.
    pub registries: Registries,
    pub advertise_ip: Option<IpAddr>,
    pub puerto_ext: Option<u16>,
    pub name: Option<String>,
    pub group: Option<u32>,
    pub ack_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// Bounds each exchange with the registry.
    pub registry_timeout: Duration,
    pub backoff: Backoff,
    pub greet: GreetConfig,
    pub listen: ListenConfig,
    pub keys: Keys,
    /// The key the registry must prove, when pinned.
    pub registry_key: Option<PublicKey>,
}

impl Args {
    /// The registries REGISTRY_HOST names, each with its port or REGISTRY_PORT.
    pub fn registries(&self) -> Result<Registries, RegistriesError> {
        let hosts = self.registry_host.as_deref().expect("clap requires REGISTRY_HOST to run a node");
        Registries::parse(hosts, self.registry_port)
    }

    /// The node's configuration, with its key and the join token read.
    pub fn config(&self) -> Result<Config, SecretError> {
        let registries = self.registries().expect("Cli::checked has found the registries usable");
        let keys = Keys::new(identity(self.key_file.as_deref())?, self.token.admission()?);
        Ok(Config {
            registries,
            advertise_ip: self.advertise_ip.filter(|ip| !ip.is_unspecified()),
            puerto_ext: self.puerto_ext,
            name: self.name.clone(),
            group: self.group,
            ack_timeout: self.ack_timeout,
            heartbeat_interval: self.heartbeat_interval,
            registry_timeout: self.connect_timeout + self.reply_timeout,
            backoff: Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5) },
            greet: GreetConfig {
                deadlines: Deadlines { connect: self.connect_timeout, reply: self.reply_timeout },
                fanout: self.fanout as usize,
                attempts: 8,
            },
            listen: ListenConfig {
                // A host's nodes greet from one address, each on a short-lived connection.
                limits: self.pending.limits(self.max_connections, self.max_connections),
                read_timeout: self.reply_timeout,
                write_timeout: self.reply_timeout,
            },
            keys,
            registry_key: self.pin.registry_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from([&["node"], args].concat()).and_then(Cli::checked)
    }

    /// The registries a node given `args` uses, as they are logged.
    fn registries(args: &[&str]) -> Result<String, clap::Error> {
        Ok(parse(args)?.args.config().unwrap().registries.to_string())
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_shared_flags_keep_the_nodes_variables_and_defaults() {
        let node = Cli::command();
        let send = node.find_subcommand("send").expect("node send");
        for command in [&node, send] {
            assert_eq!(cli::env_and_defaults(command, "join_token_file"), (Some("NODE_JOIN_TOKEN_FILE"), vec![]));
            assert_eq!(cli::env_and_defaults(command, "join_token"), (None, vec![]));
        }
        assert_eq!(cli::env_and_defaults(&node, "max_pending_per_ip"), (Some("NODE_MAX_PENDING_PER_IP"), vec!["256"]));
        assert_eq!(cli::env_and_defaults(&node, "handshake_timeout"), (Some("NODE_HANDSHAKE_TIMEOUT"), vec!["1s"]));
    }

    #[test]
    fn rejects_bad_ports_and_names_with_clear_messages() {
        let error = parse(&["127.0.0.1", "70000"]).unwrap_err().to_string();
        assert!(error.contains("`70000` isn't a port number"), "{error}");
        let error = parse(&["h", "1", "--name", ""]).unwrap_err().to_string();
        assert!(error.contains("must not be empty"), "{error}");
        let error = parse(&["h", "1", "--name", "a\u{202E}b"]).unwrap_err().to_string();
        assert!(error.contains("invisible"), "{error}");
        let error = parse(&["h", "1", "--advertise-ip", "1.2.3"]).unwrap_err().to_string();
        assert!(error.contains("1.2.3"), "{error}");
        let error = parse(&["h", "1", "--reply-timeout", "100000000000s"]).unwrap_err().to_string();
        assert!(error.contains("longest duration"), "{error}");
        assert!(parse(&[]).is_err(), "running a node needs the registry");
        let error = parse(&["h", "1", "--join-token", "abc"]).unwrap_err().to_string();
        assert!(error.contains("must not be given on the command line"), "{error}");
        let error = parse(&["send", "--registry", "h:1", "--group", "1", "--join-token", "abc", "x"]).unwrap_err();
        assert!(error.to_string().contains("HIT6_JOIN_TOKEN"), "{error}");
    }

    #[test]
    fn a_pinned_key_may_begin_with_a_hyphen_as_base64url_allows() {
        let key = format!("-{}", "A".repeat(42));
        let cli = parse(&["h", "1", "--registry-key", &key]).unwrap();
        assert_eq!(cli.args.pin.registry_key.map(|key| key.to_string()), Some(key.clone()));
        let cli = parse(&["send", "--registry", "h:1", "--group", "1", "--registry-key", &key, "x"]).unwrap();
        let Some(Command::Send(args)) = cli.command else { panic!("not parsed as send: {cli:?}") };
        assert_eq!(args.pin.registry_key.map(|key| key.to_string()), Some(key));
        let error = parse(&["h", "1", "--registry-key", "short"]).unwrap_err().to_string();
        assert!(error.contains("public key"), "{error}");
    }

    #[test]
    fn send_is_a_subcommand_that_checks_its_values() {
        let cli = parse(&["send", "--registry", "h:8086", "--group", "2", "--timeout", "3", "hola"]).unwrap();
        let Some(Command::Send(args)) = cli.command else { panic!("not parsed as send: {cli:?}") };
        assert_eq!((args.group, args.text.as_str(), args.timeout), (2, "hola", Duration::from_secs(3)));
        assert_eq!(args.registry.to_string(), "h:8086");
        let error = parse(&["send", "--registry", "h:8086", "--group", "0", "x"]).unwrap_err();
        assert!(error.to_string().contains("isn't a group number"), "{error}");
        let error = parse(&["send", "--registry", "h", "--group", "1", "x"]).unwrap_err();
        assert!(error.to_string().contains("HOST:PORT"), "{error}");
    }

    #[test]
    fn several_registries_each_take_their_own_port_or_registry_port() {
        assert_eq!(registries(&["10.0.0.1", "8086"]).unwrap(), "10.0.0.1:8086");
        assert_eq!(registries(&["a:1,b:2"]).unwrap(), "a:1,b:2", "REGISTRY_PORT is not needed");
        assert_eq!(registries(&["a:1,b:2", "9"]).unwrap(), "a:1,b:2", "nor used");
        assert_eq!(registries(&["a,b:2,c", "9"]).unwrap(), "a:9,b:2,c:9");
        assert_eq!(registries(&["[::1]:1,::1,[fe80::1]", "9"]).unwrap(), "[::1]:1,[::1]:9,[fe80::1]:9");
        assert_eq!(registries(&["::1", "8086"]).unwrap(), "[::1]:8086", "a bare IPv6 host, as ever");
    }

    #[test]
    fn a_bad_list_of_registries_is_a_clap_error_naming_the_entry() {
        let error = parse(&["a:1,b"]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::MissingRequiredArgument);
        let said = error.to_string();
        assert!(said.contains("<REGISTRY_PORT> is required: registry `b` names no port"), "{said}");
        let error = parse(&["a"]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::MissingRequiredArgument, "{error}");
        let invalid = |args: &[&str]| {
            let error = parse(args).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::ValueValidation, "{error}");
            error.to_string()
        };
        assert!(invalid(&["a,,b", "1"]).contains("`a,,b` has an empty entry"));
        assert!(invalid(&["a:1,b:70000"]).contains("registry `b:70000`: `70000` isn't a port number"));
        assert!(invalid(&["a:1,[b]:2"]).contains("only an IPv6 address goes in brackets"));
        assert!(invalid(&["a:1,a:1"]).contains("registry `a:1` is listed twice"));
        let many = (1..=17).map(|i| format!("h{i}")).collect::<Vec<_>>().join(",");
        assert!(invalid(&[&many, "1"]).contains("17 registries are more than the 16"));
        let error = parse(&["a", "0"]).unwrap_err().to_string();
        assert!(error.contains("`0` isn't a port number"), "{error}");
    }

    #[test]
    fn send_takes_a_list_of_registries_each_with_its_port() {
        let cli = parse(&["send", "--registry", "127.0.0.1:1,[::1]:2", "--group", "1", "x"]).unwrap();
        let Some(Command::Send(args)) = cli.command else { panic!("not parsed as send: {cli:?}") };
        assert_eq!(args.registry.to_string(), "127.0.0.1:1,[::1]:2");
        let error = parse(&["send", "--registry", "h:1,h2", "--group", "1", "x"]).unwrap_err().to_string();
        assert!(error.contains("registry `h2` names no port"), "{error}");
    }

    #[test]
    fn the_lab_invocation_parses() {
        let cli = parse(&["127.0.0.1", "8080"]).unwrap();
        assert!(cli.command.is_none());
        let config = cli.args.config().unwrap();
        assert_eq!(config.registries.to_string(), "127.0.0.1:8080");
        assert_eq!(cli.args.listen, "0.0.0.0:0".parse().unwrap());
        assert_eq!(config.heartbeat_interval, Duration::from_secs(5));
    }
}
