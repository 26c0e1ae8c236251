//! Docker for tests: whether a daemon is there, the docker CLI, and a guard
//! that removes a project's resources even when a test fails.
//!
//! Tests drive Docker through the `docker` CLI, as the README's users do, and
//! through the real `launcher` binary.

use std::process::{Command, Output};

/// The label the launcher puts on every resource of a project.
pub const PROJECT_LABEL: &str = "io.hit6.project";

/// Runs the docker CLI.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("the docker CLI runs")
}

/// Stdout and stderr of a finished command, for assertion messages.
pub fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Whether a daemon answers. When none does, a test may skip, saying so,
/// unless REQUIRE_DOCKER is set: then it fails.
pub fn available(suite: &str) -> bool {
    let why = match Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).output() {
        Ok(output) if output.status.success() => return true,
        Ok(output) => text(&output),
        Err(error) => format!("cannot run the docker CLI: {error}"),
    };
    if std::env::var_os("REQUIRE_DOCKER").is_some() {
        panic!("REQUIRE_DOCKER is set but no Docker daemon is reachable: {}", why.trim());
    }
    eprintln!("skipping {suite}: no Docker daemon is reachable ({}); set REQUIRE_DOCKER=1 to fail instead", why.trim());
    false
}

/// Names of the containers, networks or volumes (`kind`) labelled with `project`.
pub fn labelled(kind: &str, project: &str) -> Vec<String> {
    let filter = format!("label={PROJECT_LABEL}={project}");
    let args: Vec<&str> = match kind {
        "container" => vec!["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"],
        _ => vec![kind, "ls", "--filter", &filter, "--format", "{{.Name}}"],
    };
    let output = docker(&args);
    assert!(output.status.success(), "docker {kind} listing failed: {}", text(&output));
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
}

/// Everything a project left: containers, networks and volumes.
pub fn leftovers(project: &str) -> Vec<String> {
    ["container", "network", "volume"].iter().flat_map(|kind| labelled(kind, project)).collect()
}

/// Removes a project's labelled containers and networks when dropped.
pub struct ProjectGuard(pub String);

impl Drop for ProjectGuard {
    fn drop(&mut self) {
        let containers = labelled("container", &self.0);
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(containers.iter().map(String::as_str));
            docker(&args);
        }
        for network in labelled("network", &self.0) {
            docker(&["network", "rm", &network]);
        }
    }
}
