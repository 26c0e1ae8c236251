//! `/health`, answered as etcd answers it (`{"health":"true","reason":""}`,
//! status 200; `"false"` with a reason, status 503), and the check the
//! binaries' `health` subcommands run, which the images' `HEALTHCHECK`
//! declares: a `FROM scratch` image has no curl to run.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use crate::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::http::{self, GetError, Page};

/// The path the health is served at.
pub const PATH: &str = "/health";

/// Exit code of a `health` check that found the service unhealthy or unreachable.
pub const EXIT_UNHEALTHY: u8 = 1;

/// A service's health: good, or bad and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `"true"` or `"false"`, a string, as etcd writes it.
    #[serde(serialize_with = "as_text", deserialize_with = "from_text")]
    pub health: bool,
    #[serde(default)]
    pub reason: String,
}

impl Health {
    pub fn good() -> Health {
        Health { health: true, reason: String::new() }
    }

    pub fn bad(reason: impl Into<String>) -> Health {
        Health { health: false, reason: reason.into() }
    }

    /// The answer to `GET /health`.
    pub fn page(&self) -> Page {
        let status = if self.health { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
        let body = serde_json::to_vec(self).expect("a health serializes");
        Page::new(status, "application/json", body)
    }
}

fn as_text<S: Serializer>(health: &bool, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(if *health { "true" } else { "false" })
}

fn from_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    match <&str>::deserialize(deserializer)? {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(serde::de::Error::custom(format!("health is \"true\" or \"false\", not {other:?}"))),
    }
}

/// Why a check could not tell the health.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Get(#[from] GetError),
    #[error("the answer ({status}) is not a health: {reason}")]
    NotHealth { status: StatusCode, reason: serde_json::Error },
}

/// The health the service at `addr` reports. An unspecified address (the
/// `0.0.0.0` a container listens on) is asked on loopback.
pub async fn check(addr: SocketAddr, timeout: Duration) -> Result<Health, CheckError> {
    let addr = reachable(addr);
    let (status, body) = http::get(addr, PATH, timeout).await?;
    serde_json::from_slice(&body).map_err(|reason| CheckError::NotHealth { status, reason })
}

/// Where a listener on `addr` is reached from the same host.
pub fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// The `health` subcommand: prints the health (or why it is unknown) and
/// exits 0 only when it is good.
pub async fn main(program: &str, addr: SocketAddr, timeout: Duration) -> ExitCode {
    match check(addr, timeout).await {
        Ok(health) if health.health => {
            println!("healthy");
            ExitCode::SUCCESS
        }
        Ok(health) => {
            println!("unhealthy: {}", health.reason);
            ExitCode::from(EXIT_UNHEALTHY)
        }
        Err(error) => {
            eprintln!("{program} health: {}", crate::Chain(&error));
            ExitCode::from(EXIT_UNHEALTHY)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_reads_and_writes_as_etcd_does() {
        assert_eq!(serde_json::to_string(&Health::good()).unwrap(), r#"{"health":"true","reason":""}"#);
        let bad: Health = serde_json::from_str(r#"{"health":"false","reason":"not registered"}"#).unwrap();
        assert_eq!(bad, Health::bad("not registered"));
        assert_eq!(serde_json::from_str::<Health>(r#"{"health":"true"}"#).unwrap(), Health::good());
        assert!(serde_json::from_str::<Health>(r#"{"health":true}"#).is_err());
        assert!(serde_json::from_str::<Health>(r#"{"health":"yes"}"#).is_err());
        assert_eq!(Health::bad("x").page().status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(Health::good().page().status, StatusCode::OK);
    }

    #[test]
    fn an_unspecified_address_is_checked_on_loopback() {
        assert_eq!(reachable("0.0.0.0:8081".parse().unwrap()), "127.0.0.1:8081".parse().unwrap());
        assert_eq!(reachable("[::]:8081".parse().unwrap()), "[::1]:8081".parse().unwrap());
        assert_eq!(reachable("10.0.0.2:8081".parse().unwrap()), "10.0.0.2:8081".parse().unwrap());
    }
}
