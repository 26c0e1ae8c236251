//! Reading the members' HTTP listeners (`/health`, `/metrics`), for `stats`
//! and for the health line `up` prints once the mesh is complete.

use std::net::SocketAddr;
use std::time::Duration;

use wire::exposition::{self, Family};
use wire::health::Health;

use crate::runtime::{self, Project};

/// How long a member's answer may take before its figures are left blank.
pub const READ_TIMEOUT: Duration = Duration::from_secs(1);

/// What a member's HTTP listener answered, if it did.
#[derive(Debug, Default)]
pub struct Read {
    pub health: Option<Health>,
    pub metrics: Option<Vec<Family>>,
}

/// Reads the member at `http`: its health, and its metrics when asked for.
pub async fn read(http: Option<SocketAddr>, metrics: bool) -> Read {
    let Some(addr) = http else { return Read::default() };
    let scrape = async {
        let (_, body) = wire::http::get(addr, "/metrics", READ_TIMEOUT).await.ok()?;
        exposition::parse(std::str::from_utf8(&body).ok()?).ok()
    };
    let scrape = async {
        if metrics {
            scrape.await
        } else {
            None
        }
    };
    let (health, metrics) = futures::join!(wire::health::check(addr, READ_TIMEOUT), scrape);
    Read { health: health.ok(), metrics }
}

/// One line on the registries' and nodes' health: for containers, as each
/// one's `/health` says now; for a swarm's services, as the engine's health
/// checks say (a task is `starting` until its container is healthy). `None`
/// where neither can be asked (local processes).
pub async fn health_line(project: &Project) -> Option<String> {
    let verdicts: Vec<(String, Option<String>)> = match project.observed().await {
        Ok(observed) => {
            let reads = observed.into_iter().map(|member| async move {
                let health = read(member.http, false).await.health;
                let verdict = match health {
                    Some(health) if health.health => None,
                    Some(health) => Some(format!("unhealthy: {}", health.reason)),
                    None => Some("no answer from /health".to_owned()),
                };
                (member.member.to_string(), verdict)
            });
            futures::future::join_all(reads).await
        }
        Err(_) => {
            let rows = project.rows().await.ok()?;
            let rows = rows.into_iter().filter(|row| row.member.is_some_and(|m| m.serves_http()));
            rows.map(|row| {
                let verdict = match row.health {
                    Some(runtime::Health::Healthy) => None,
                    Some(health) => Some(health.as_str().to_owned()),
                    None => Some("no health check".to_owned()),
                };
                (row.member.map(|m| m.to_string()).unwrap_or(row.name), verdict)
            })
            .collect()
        }
    };
    Some(describe(&verdicts))
}

/// `health: 6 of 6 healthy`, or `health: 5 of 6 healthy; node-3: unhealthy: not registered`.
fn describe(verdicts: &[(String, Option<String>)]) -> String {
    let healthy = verdicts.iter().filter(|(_, verdict)| verdict.is_none()).count();
    let mut line = format!("health: {healthy} of {} healthy", verdicts.len());
    for (member, verdict) in verdicts {
        if let Some(verdict) = verdict {
            line += &format!("; {member}: {verdict}");
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_health_line_names_only_the_unhealthy() {
        let all = [("registry".to_owned(), None), ("node-1".to_owned(), None)];
        assert_eq!(describe(&all), "health: 2 of 2 healthy");
        let one = [("registry".to_owned(), None), ("node-3".to_owned(), Some("starting".to_owned()))];
        assert_eq!(describe(&one), "health: 1 of 2 healthy; node-3: starting");
    }
}
