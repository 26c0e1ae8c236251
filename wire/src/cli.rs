//! What the binaries share: value parsers for their command lines, and the
//! start-up steps before serving.

use std::future::Future;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tokio::net::TcpListener;

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
