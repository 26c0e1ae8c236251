//! What the binaries share: flags, value parsers for their command lines,
//! and the start-up steps before serving.
//!
//! A flag shared here is declared once, with no environment variable: each
//! binary names its own (the registry's begin `REGISTRY_`, the node's
//! `NODE_`, the launcher reads none), and words its help where it differs.
//! clap's derive cannot take those from the flattening struct, so the
//! binary's parser adds them with
//! `#[command(mut_arg("join_token_file", |arg| arg.env("REGISTRY_JOIN_TOKEN_FILE")))]`,
//! which clap applies once the flattened flags are in place.

use std::future::Future;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::connection::Limits;
use crate::secure::{Admission, JoinToken, TokenError};

/// Exit code when the listening address cannot be bound.
pub const EXIT_BIND: u8 = 3;

/// Exit code of a service whose join token or key file cannot be used.
pub const EXIT_SECRET: u8 = 4;

/// Refuses a secret given on the command line, where `ps` shows it to
/// every user, saying where it goes instead and without echoing it (clap's
/// own errors quote the value).
#[derive(Debug, Clone, Copy)]
pub struct SecretNotInArgv;

impl clap::builder::TypedValueParser for SecretNotInArgv {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _: Option<&clap::Arg>,
        _: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        let message = format!(
            "the join token must not be given on the command line, where `ps` shows it to every user: \
             put it in a file and pass --join-token-file FILE, or set the environment variable {}\n",
            crate::secure::TOKEN_ENV
        );
        Err(clap::Error::raw(clap::error::ErrorKind::ValueValidation, message).with_cmd(cmd))
    }
}

/// Where the join token comes from: a file, or the environment variable
/// [`crate::secure::TOKEN_ENV`], never the command line.
#[derive(Debug, clap::Args)]
pub struct JoinTokenArgs {
    /// A file holding the registry's join token (64 hex characters); or set HIT6_JOIN_TOKEN.
    #[arg(long)]
    pub join_token_file: Option<PathBuf>,
    /// Refused: a token on the command line is visible to every user.
    #[arg(long, hide = true, value_parser = SecretNotInArgv)]
    pub join_token: Option<String>,
}

impl JoinTokenArgs {
    /// The token, read from its file when one is given, else from the environment; none without either.
    pub fn token(&self) -> Result<Option<JoinToken>, TokenError> {
        JoinToken::from_file_or_env(self.join_token_file.as_deref())
    }

    /// Who may complete a handshake: holders of the token, or anyone when there is none.
    pub fn admission(&self) -> Result<Admission, TokenError> {
        self.token().map(Admission::from_token)
    }
}

/// The bounds on connections that have not proved themselves yet. How many
/// established connections a service serves is the service's own flag: what
/// they are, and so the help and the default, differ from one to the other.
#[derive(Debug, clap::Args)]
pub struct LimitsArgs {
    /// Connections still in their handshake or first message, from one source
    /// address; past it the oldest is dropped.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_pending_per_ip: u32,
    /// How long a new connection may take to finish its handshake and first message.
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub handshake_timeout: Duration,
}

impl LimitsArgs {
    /// The limits of a service that serves `max_connections` established
    /// connections at once, `max_connections_per_ip` of them from one address.
    pub fn limits(&self, max_connections: u32, max_connections_per_ip: u32) -> Limits {
        Limits::configured(
            max_connections as usize,
            max_connections_per_ip as usize,
            self.max_pending_per_ip as usize,
            self.handshake_timeout,
        )
    }
}

/// The environment variable and the default values `command` shows for its
/// argument `id`: what a binary's test checks of the shared flags it names.
#[cfg(feature = "test-support")]
pub fn env_and_defaults<'a>(command: &'a clap::Command, id: &str) -> (Option<&'a str>, Vec<&'a str>) {
    let arg = command.get_arguments().find(|arg| arg.get_id() == id).unwrap_or_else(|| panic!("no argument {id}"));
    let defaults = arg.get_default_values().iter().map(|value| value.to_str().expect("UTF-8")).collect();
    (arg.get_env().map(|env| env.to_str().expect("UTF-8")), defaults)
}

/// Installs the shutdown signal handlers and binds `listen`. On failure,
/// prints why (prefixed with `program`) and returns the exit code to use.
pub async fn start(
    program: &str,
    listen: SocketAddr,
) -> Result<(TcpListener, impl Future<Output = &'static str>), ExitCode> {
    let shutdown = crate::shutdown::signals().map_err(|error| {
        eprintln!("{program}: failed to install signal handlers: {error}");
        ExitCode::FAILURE
    })?;
    let listener = crate::connection::bind(listen).map_err(|error| {
        eprintln!("{program}: failed to listen on {listen}: {error}");
        ExitCode::from(EXIT_BIND)
    })?;
    Ok((listener, shutdown))
}

/// Binds the listener of an optional `--flag`, when given. On failure,
/// prints why (prefixed with `program`) and returns the exit code to use.
pub fn bind_optional(program: &str, flag: &str, listen: Option<SocketAddr>) -> Result<Option<TcpListener>, ExitCode> {
    let Some(listen) = listen else { return Ok(None) };
    crate::connection::bind(listen).map(Some).map_err(|error| {
        eprintln!("{program}: failed to listen on {listen} (--{flag}): {error}");
        ExitCode::from(EXIT_BIND)
    })
}

/// The operators' HTTP listener ([`crate::http`]).
#[derive(Debug, clap::Args)]
pub struct HttpArgs {
    /// Serve /metrics (Prometheus) and /health over HTTP on this address;
    /// none without it. They carry counts and states, never a key or a
    /// member's address; keep them on a network of the operators' own.
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,
}

/// The `health` subcommand, which the images' HEALTHCHECK runs.
#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// The service's HTTP listener, as it was given (an unspecified address
    /// such as 0.0.0.0 is asked on loopback).
    #[arg(long, value_name = "ADDR")]
    pub http_listen: SocketAddr,
    /// How long to wait for the answer.
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub timeout: Duration,
}

impl HealthArgs {
    /// Checks the health; exits 0 only when it is good.
    pub async fn run(&self, program: &str) -> ExitCode {
        crate::health::main(program, self.http_listen, self.timeout).await
    }
}

/// Writes `text` to stdout at once (a line at a time reaches `grep` as it comes).
pub fn print(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// Whether `error` comes from a reader that closed our stdout
/// (`launcher ps | head -1`): the reader has what it wanted, so it is no
/// failure, and the program exits 0.
pub fn is_closed_pipe(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) {
            return true;
        }
        cause = error.source();
    }
    false
}

/// The longest duration any flag takes: long enough for any lease or
/// timeout, and far from overflowing a deadline computed from it.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A positive duration such as `15s`, `500ms` or `1m`, or a whole number of
/// seconds (`120`, as `docker stop -t` takes it), at most a year.
pub fn duration(text: &str) -> Result<Duration, String> {
    let duration = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(text)
            .map_err(|e| format!("`{text}` isn't a duration like 15s, 500ms or 120 (seconds): {e}"))?,
    };
    if duration.is_zero() {
        return Err("the duration must be greater than zero".into());
    }
    if duration > MAX_DURATION {
        return Err(format!("`{text}` is longer than the longest duration accepted, 365 days"));
    }
    Ok(duration)
}

/// A TCP port a peer can connect to: 1 to 65535.
pub fn port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!("`{text}` isn't a port number (1-65535)")),
    }
}

/// A lifetime that may be unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime(pub Option<Duration>);

/// `never`, or a positive duration.
pub fn lifetime(text: &str) -> Result<Lifetime, String> {
    match text {
        "never" => Ok(Lifetime(None)),
        _ => duration(text).map(|d| Lifetime(Some(d))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_pipe_is_told_apart_from_other_errors() {
        #[derive(Debug, thiserror::Error)]
        #[error("failed to print the list")]
        struct Printing(#[source] io::Error);

        assert!(is_closed_pipe(&Printing(io::Error::from(io::ErrorKind::BrokenPipe))));
        assert!(!is_closed_pipe(&Printing(io::Error::from(io::ErrorKind::PermissionDenied))));
    }

    /// A service as the launcher would declare one: the shared flags as they are, no variables.
    #[derive(Debug, clap::Parser)]
    struct Service {
        #[command(flatten)]
        token: JoinTokenArgs,
        #[command(flatten)]
        pending: LimitsArgs,
    }

    #[test]
    fn the_shared_flags_parse_and_a_token_in_argv_is_refused() {
        use clap::{CommandFactory, Parser};
        Service::command().debug_assert();
        assert!(Service::command().get_arguments().all(|arg| arg.get_env().is_none()), "each binary names its own");
        let service =
            Service::try_parse_from(["service", "--join-token-file", "/run/token", "--max-pending-per-ip", "8"]);
        let service = service.unwrap();
        assert_eq!(service.token.join_token_file, Some(PathBuf::from("/run/token")));
        let limits = service.pending.limits(100, 10);
        assert_eq!((limits.max_connections, limits.max_connections_per_ip, limits.max_pending_per_ip), (100, 10, 8));
        let refused = Service::try_parse_from(["service", "--join-token", "00"]).unwrap_err().to_string();
        assert!(refused.contains("must not be given on the command line"), "{refused}");
    }

    #[test]
    fn parses_and_rejects_durations() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(lifetime("never"), Ok(Lifetime(None)));
        assert_eq!(lifetime("2m"), Ok(Lifetime(Some(Duration::from_secs(120)))));
        assert!(duration("0s").unwrap_err().contains("greater than zero"));
        assert!(duration("soon").unwrap_err().contains("`soon` isn't a duration"));
        assert_eq!(duration("120"), Ok(Duration::from_secs(120)));
        assert!(duration("0").unwrap_err().contains("greater than zero"));
        assert_eq!(duration("365d"), Ok(MAX_DURATION));
        for huge in ["100000000000s", "366d", "100000000000"] {
            assert!(duration(huge).unwrap_err().contains("longest duration"), "{huge}");
        }
        assert!(lifetime("100000000000s").is_err());
        assert_eq!(port("8086"), Ok(8086));
        assert_eq!(port("70000").unwrap_err(), "`70000` isn't a port number (1-65535)");
        assert!(port("0").is_err());
    }
}
