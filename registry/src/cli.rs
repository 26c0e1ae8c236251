//! What the registry and node binaries share: value parsers for their
//! command lines, and the start-up steps before serving.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};

/// Exit code when the listening address cannot be bound.
pub const EXIT_BIND: u8 = 3;

/// Connections the kernel queues while every connection slot is taken
/// (tokio's default is 128); the kernel caps it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 4096;

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
    let listener = bind(listen).map_err(|error| {
        eprintln!("{program}: failed to listen on {listen}: {error}");
        ExitCode::from(EXIT_BIND)
    })?;
    Ok((listener, shutdown))
}

/// Binds with a deep accept backlog, so that a burst of connections beyond
/// the served ones waits instead of being dropped and retried a second later.
pub fn bind(listen: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if listen.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A positive duration such as `15s`, `500ms` or `1m`.
pub fn duration(text: &str) -> Result<Duration, String> {
    let duration =
        humantime::parse_duration(text).map_err(|e| format!("`{text}` isn't a duration like 15s or 500ms: {e}"))?;
    if duration.is_zero() {
        return Err("the duration must be greater than zero".into());
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

/// A registry address written `HOST:PORT` (`[v6]:PORT` for IPv6).
pub fn registry_addr(text: &str) -> Result<crate::client::RegistryAddr, String> {
    let (host, port) = text.rsplit_once(':').ok_or_else(|| format!("`{text}` isn't HOST:PORT"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("`{text}` has no host"));
    }
    Ok(crate::client::RegistryAddr { host: host.to_owned(), port: self::port(port)? })
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
    fn parses_and_rejects_durations() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(lifetime("never"), Ok(Lifetime(None)));
        assert_eq!(lifetime("2m"), Ok(Lifetime(Some(Duration::from_secs(120)))));
        assert!(duration("0s").unwrap_err().contains("greater than zero"));
        assert!(duration("soon").unwrap_err().contains("`soon` isn't a duration"));
        assert_eq!(port("8086"), Ok(8086));
        assert_eq!(registry_addr("10.0.0.1:8086").unwrap().to_string(), "10.0.0.1:8086");
        assert_eq!(registry_addr("[::1]:8086").unwrap().host, "::1");
        assert!(registry_addr("vm1").unwrap_err().contains("HOST:PORT"));
        assert!(registry_addr("vm1:0").unwrap_err().contains("isn't a port number"));
        assert_eq!(port("70000").unwrap_err(), "`70000` isn't a port number (1-65535)");
        assert!(port("0").is_err());
    }
}
