//! `swarm`: `launcher up --runtime swarm` to a complete mesh, next to
//! `launcher up --runtime docker` and `docker-compose up --scale node=N`,
//! run after run in turn at each size, on a single-host swarm that the bench
//! makes and leaves (the engine's own, if it is a manager already).
//!
//! docker-compose only starts containers: its row is the time until it
//! exits. The time until its mesh is complete is counted by the bench from
//! the nodes' logs (every `greeting_received` of the N(N-1)/2), since nothing
//! of compose's watches the mesh.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use node::events::{Event, Record};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use wire::secure::{JoinToken, TOKEN_ENV};

use crate::launcher::{down, launcher, report_runs, BUILD_PATIENCE, LAUNCHER_RUNS, LAUNCHER_SLACK, PROJECT};
use crate::report::Rows;

pub(crate) const SWARM_SIZES: [usize; 3] = [5, 9, 50];

/// Wide enough for the largest size, away from the launcher's defaults.
const PORTS: [&str; 4] = ["--registry-port", "18386", "--port-range", "18387-18450"];

const TIMEOUT: Duration = Duration::from_secs(120);

/// The compose project, apart from the launcher's.
const COMPOSE_PROJECT: &str = "hit6-bench-compose";

pub(crate) async fn bench_swarm(rows: &Rows) -> anyhow::Result<()> {
    let section = "swarm";
    if let Some(why) = crate::launcher::no_docker() {
        rows.push(section, "skipped: no Docker daemon", None, "note", None, why);
        return Ok(());
    }
    let Some(_swarm) = ::tests::docker::Swarm::init("the swarm bench") else {
        rows.push(section, "skipped: the engine cannot start a swarm", None, "note", None, "");
        return Ok(());
    };
    let _guard = ::tests::docker::ProjectGuard(PROJECT.into());
    let compose = Compose::write()?;
    down().await?;
    let build = launcher(&["-p", PROJECT, "build"], BUILD_PATIENCE).await?;
    if build.code != Some(0) {
        bail!("launcher build failed: {}", build.describe());
    }
    for nodes in SWARM_SIZES {
        let n = nodes.to_string();
        let timeout = format!("{}s", TIMEOUT.as_secs());
        let up = ["-p", PROJECT, "up", "--nodes", &n, "--detach", "--quiet", "--json", "--timeout", &timeout];
        let (mut docker, mut swarm, mut started, mut meshed) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for run in 1..=LAUNCHER_RUNS {
            let finished =
                launcher(&[&up[..], &PORTS, &["--runtime", "docker"]].concat(), TIMEOUT + LAUNCHER_SLACK).await;
            down().await?;
            let finished = finished?;
            eprintln!("  {section} N={nodes} run {run}: docker {}", finished.describe());
            docker.push(finished);

            let finished = launcher(
                &[&up[..], &["--registry-port", "18386", "--runtime", "swarm"]].concat(),
                TIMEOUT + LAUNCHER_SLACK,
            )
            .await;
            down().await?;
            let finished = finished?;
            eprintln!("  {section} N={nodes} run {run}: swarm {}", finished.describe());
            swarm.push(finished);

            let timed = compose.up(nodes).await;
            compose.down().await?;
            let (exited, complete) = timed?;
            eprintln!(
                "  {section} N={nodes} run {run}: compose exited after {:.3} s, mesh complete after {:.3} s",
                exited.as_secs_f64(),
                complete.as_secs_f64()
            );
            started.push(exited.as_secs_f64());
            meshed.push(complete.as_secs_f64());
        }
        report_runs(rows, &format!("{section} N={nodes} --runtime docker"), &docker, None);
        report_runs(rows, &format!("{section} N={nodes} --runtime swarm"), &swarm, None);
        let compose_section = format!("{section} N={nodes} docker-compose");
        let each = |times: &[f64]| times.iter().map(|t| format!("{t:.3}")).collect::<Vec<_>>().join(", ");
        rows.push(
            &compose_section,
            "up --scale, wall to exit",
            Some(median(&started)),
            "s",
            None,
            format!("median of {}: {}; it only starts the containers", started.len(), each(&started)),
        );
        rows.push(
            &compose_section,
            "mesh complete, counted from logs",
            Some(median(&meshed)),
            "s",
            None,
            format!("from compose's start to the last of the N(N-1)/2 greetings: {}", each(&meshed)),
        );
    }
    Ok(())
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// A compose file of the registry and a scalable node service, in a
/// directory of its own, removed (with the project) when dropped.
struct Compose {
    dir: PathBuf,
    token: JoinToken,
}

impl Compose {
    fn write() -> anyhow::Result<Compose> {
        let dir = std::env::temp_dir().join(format!("{COMPOSE_PROJECT}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let version = env!("CARGO_PKG_VERSION");
        // Nodes take no NODE_NAME: scaled replicas would share it, and the
        // registry refuses a name taken. Their default, hostname-port, differs.
        let file = format!(
            "version: \"3.7\"\n\
             services:\n  \
               registry:\n    image: hit6-mesh/registry:{version}\n    environment: [LOG_FORMAT=json, {TOKEN_ENV}]\n  \
               node:\n    image: hit6-mesh/node:{version}\n    command: [\"registry\", \"8080\"]\n    \
                 environment: [LOG_FORMAT=json, {TOKEN_ENV}]\n    depends_on: [registry]\n"
        );
        std::fs::write(dir.join("docker-compose.yml"), file)?;
        Ok(Compose { dir, token: JoinToken::generate() })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("docker-compose");
        command.args(["-p", COMPOSE_PROJECT]).args(args).current_dir(&self.dir).kill_on_drop(true);
        // The token reaches the containers through compose's environment, not its argv.
        command.env(TOKEN_ENV, self.token.reveal().as_str());
        command
    }

    /// `up -d --scale node=N`: how long until compose exits, and until the
    /// nodes have logged every greeting.
    async fn up(&self, nodes: usize) -> anyhow::Result<(Duration, Duration)> {
        let started = Instant::now();
        let scale = format!("node={nodes}");
        let up = self.command(&["up", "-d", "--scale", &scale]).stdout(Stdio::null()).stderr(Stdio::piped()).output();
        let up = tokio::time::timeout(TIMEOUT, up).await.context("docker-compose up did not exit")??;
        if !up.status.success() {
            bail!("docker-compose up failed: {}", String::from_utf8_lossy(&up.stderr).trim());
        }
        let exited = started.elapsed();
        let mut logs = self
            .command(&["logs", "-f", "--no-color", "--no-log-prefix", "node"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("docker-compose logs")?;
        let mut lines = BufReader::new(logs.stdout.take().context("piped")?).lines();
        let expected = nodes * (nodes - 1) / 2;
        let mut greeted = 0;
        let counting = async {
            while greeted < expected {
                let Some(line) = lines.next_line().await? else { break };
                greeted +=
                    usize::from(Record::parse(&line).is_some_and(|record| record.event == Event::GreetingReceived));
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(TIMEOUT, counting).await.context("the compose mesh did not complete")??;
        if greeted < expected {
            bail!("the compose logs ended after {greeted} of {expected} greetings");
        }
        Ok((exited, started.elapsed()))
    }

    async fn down(&self) -> anyhow::Result<()> {
        let down = self.command(&["down", "-t", "5"]).output().await?;
        if !down.status.success() {
            bail!("docker-compose down failed: {}", String::from_utf8_lossy(&down.stderr).trim());
        }
        Ok(())
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker-compose")
            .args(["-p", COMPOSE_PROJECT, "down", "-t", "1"])
            .current_dir(&self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
