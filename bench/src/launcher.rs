//! `launcher`: `launcher up --detach` in Docker, and the images' sizes; and
//! the runs of the launcher that the `local` section shares.

use std::time::Duration;

use anyhow::{bail, Context};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::time::timeout;

use std::time::Instant;

use crate::report::percentile;
use crate::report::{Rows, Target};
use crate::spawn::{command, read_all, text_of, GroupGuard};

/// The Docker project the bench's meshes run in.
pub(crate) const PROJECT: &str = "hit6-bench";

/// Host ports of the bench's project, away from the launcher's defaults
/// (8086-8095) that other runs on this host may hold.
pub(crate) const PROJECT_PORTS: [&str; 4] = ["--registry-port", "18386", "--port-range", "18387-18395"];

pub(crate) const LAUNCHER_SIZES: [usize; 2] = [5, 9];

pub(crate) const LAUNCHER_RUNS: usize = 3;

/// Beyond its own `--timeout`, what a launcher may take to build, tear down and exit.
pub(crate) const LAUNCHER_SLACK: Duration = Duration::from_secs(60);

pub(crate) const BUILD_PATIENCE: Duration = Duration::from_secs(10 * 60);

/// Environment the launcher reads settings from.
pub(crate) const LAUNCHER_ENV: [&str; 3] = ["LAUNCHER_PROJECT", "LAUNCHER_REGISTRY_IMAGE", "LAUNCHER_NODE_IMAGE"];

/// A finished launcher: exit code, wall time from spawn to exit, and output.
pub(crate) struct Finished {
    pub(crate) code: Option<i32>,
    pub(crate) wall: Duration,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Finished {
    /// The `--json` summary `up` prints once the mesh is complete.
    pub(crate) fn summary(&self) -> Option<Value> {
        self.stdout
            .lines()
            .rev()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|value| value.get("elapsed_ms").is_some())
    }

    pub(crate) fn elapsed(&self) -> Option<Duration> {
        let ms = self.summary()?.get("elapsed_ms")?.as_u64()?;
        Some(Duration::from_millis(ms))
    }

    /// Exit 0 with a summary saying so.
    pub(crate) fn complete(&self) -> bool {
        self.code == Some(0) && self.summary().is_some_and(|s| s["complete"] == true)
    }

    pub(crate) fn describe(&self) -> String {
        let code = self.code.map_or("killed".into(), |c| format!("exit {c}"));
        let wall = self.wall.as_secs_f64();
        match self.elapsed() {
            Some(elapsed) => format!("{code}, {:.3}/{wall:.3} s", elapsed.as_secs_f64()),
            None => {
                let last = self.stderr.lines().last().unwrap_or_default();
                let last: String = last.chars().take(300).collect();
                format!("{code} after {wall:.3} s: {last}")
            }
        }
    }
}

/// Runs the launcher with `args` in a process group of its own, which is
/// killed whole after `limit` or when this future is dropped (Ctrl-C).
pub(crate) async fn launcher(args: &[&str], limit: Duration) -> anyhow::Result<Finished> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let mut command = command(&::tests::binary("launcher"), &args);
    command.process_group(0);
    for key in LAUNCHER_ENV {
        command.env_remove(key);
    }
    let started = Instant::now();
    let mut child = command.spawn().context("failed to start the launcher")?;
    let group = GroupGuard(Pid::from_raw(child.id().context("the launcher has a pid")? as i32));
    let stdout = read_all(child.stdout.take().expect("piped"));
    let stderr = read_all(child.stderr.take().expect("piped"));
    let status = timeout(limit, child.wait())
        .await
        .with_context(|| format!("launcher {} did not exit within {limit:?}", args.join(" ")))??;
    let wall = started.elapsed();
    // Anything of its group still running was left behind (local nodes hold its stderr).
    drop(group);
    Ok(Finished { code: status.code(), wall, stdout: text_of(stdout).await, stderr: text_of(stderr).await })
}

/// Why no Docker daemon answers, if none does.
pub(crate) fn no_docker() -> Option<String> {
    let version = std::process::Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).output();
    match version {
        Ok(output) if output.status.success() => None,
        Ok(output) => Some(::tests::docker::text(&output).trim().to_owned()),
        Err(error) => Some(format!("cannot run the docker CLI: {error}")),
    }
}

pub(crate) async fn bench_launcher(rows: &Rows) -> anyhow::Result<()> {
    let section = "launcher";
    if let Some(why) = no_docker() {
        rows.push(section, "skipped: no Docker daemon", None, "note", None, why);
        return Ok(());
    }
    // Removes the project's containers and network however this ends.
    let _guard = ::tests::docker::ProjectGuard(PROJECT.into());
    down().await?;
    eprintln!("  {section}: building the images (not timed)");
    let build = launcher(&["-p", PROJECT, "build"], BUILD_PATIENCE).await?;
    if build.code != Some(0) {
        bail!("launcher build failed: {}", build.describe());
    }
    eprintln!("  {section}: built in {:.1} s", build.wall.as_secs_f64());
    image_sizes(rows, section);
    for nodes in LAUNCHER_SIZES {
        let n = nodes.to_string();
        let mut args = vec!["-p", PROJECT, "up", "--nodes", &n, "--detach", "--quiet", "--json"];
        args.extend(PROJECT_PORTS);
        let limit = Duration::from_secs(60) + LAUNCHER_SLACK;
        let mut runs = Vec::new();
        for run in 1..=LAUNCHER_RUNS {
            let up = launcher(&args, limit).await;
            // Down after every run, whatever the run did.
            down().await?;
            let up = up?;
            eprintln!("  {section} N={nodes}: run {run}: {}", up.describe());
            runs.push(up);
        }
        let target = (nodes == 5).then_some(Target::AtMost(5.0));
        report_runs(rows, &format!("{section} N={nodes}"), &runs, target);
    }
    Ok(())
}

/// `launcher -p hit6-bench down`.
pub(crate) async fn down() -> anyhow::Result<()> {
    let down = launcher(&["-p", PROJECT, "down"], LAUNCHER_SLACK).await?;
    if down.code != Some(0) {
        bail!("launcher down failed: {}", down.describe());
    }
    Ok(())
}

pub(crate) fn image_sizes(rows: &Rows, section: &str) {
    for service in ["registry", "node"] {
        let image = format!("hit6-mesh/{service}:{}", env!("CARGO_PKG_VERSION"));
        let metric = format!("{service} image size");
        let target = Some(Target::AtMost(5.0));
        let inspect = ::tests::docker::docker(&["image", "inspect", "--format", "{{.Size}}", &image]);
        match String::from_utf8_lossy(&inspect.stdout).trim().parse::<u64>() {
            Ok(bytes) => rows.push(section, metric, Some(bytes as f64 / 1e6), "MB", target, image),
            Err(_) => rows.error(section, metric, target, ::tests::docker::text(&inspect).trim()),
        }
    }
}

/// Median wall time (spawn to exit) and launcher-measured time (invocation to
/// complete mesh) of the runs that completed, and how many did not; with a
/// `target`, an incomplete run is a miss too.
pub(crate) fn report_runs(rows: &Rows, section: &str, runs: &[Finished], target: Option<Target>) {
    let complete: Vec<&Finished> = runs.iter().filter(|r| r.complete()).collect();
    let median = |times: Vec<Duration>| {
        let mut nanos: Vec<u64> = times.iter().map(|t| t.as_nanos() as u64).collect();
        nanos.sort_unstable();
        (!nanos.is_empty()).then(|| percentile(&nanos, 0.5) / 1e9)
    };
    let each: Vec<String> = runs.iter().map(Finished::describe).collect();
    let note = format!("median of {} complete run(s); each elapsed/wall: {}", complete.len(), each.join("; "));
    let walls = complete.iter().map(|r| r.wall).collect();
    rows.push(section, "up, wall to exit", median(walls), "s", target, note);
    let elapsed = complete.iter().filter_map(|r| r.elapsed()).collect();
    rows.push(
        section,
        "up, launcher elapsed",
        median(elapsed),
        "s",
        None,
        "elapsed_ms of its JSON summary: from its start to a complete mesh",
    );
    rows.push(
        section,
        "incomplete runs",
        Some((runs.len() - complete.len()) as f64),
        "",
        target.map(|_| Target::AtMost(0.0)),
        format!("of {} (exit 4: mesh incomplete after --timeout)", runs.len()),
    );
}
