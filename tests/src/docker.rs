//! Docker for tests: whether a daemon is there, the docker CLI, a guard
//! that removes a project's resources even when a test fails, and a
//! single-host swarm that a test makes and leaves ([`Swarm`]).
//!
//! Tests drive Docker through the `docker` CLI, as the README's users do, and
//! through the real `launcher` binary.

use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The label the launcher puts on every resource of a project.
pub const PROJECT_LABEL: &str = "io.hit6.project";

/// How long a Docker step may take on a loaded 2-core machine before it counts as a failure.
pub const DOCKER_PATIENCE: Duration = Duration::from_secs(120);

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

/// Names of the containers, networks, volumes or services (`kind`)
/// labelled with `project`. Services are listed only on a swarm manager.
pub fn labelled(kind: &str, project: &str) -> Vec<String> {
    let filter = format!("label={PROJECT_LABEL}={project}");
    let args: Vec<&str> = match kind {
        "container" => vec!["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"],
        "service" if !swarm_manager() => return Vec::new(),
        _ => vec![kind, "ls", "--filter", &filter, "--format", "{{.Name}}"],
    };
    let output = docker(&args);
    assert!(output.status.success(), "docker {kind} listing failed: {}", text(&output));
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
}

/// Everything a project left: services, containers, networks and volumes.
pub fn leftovers(project: &str) -> Vec<String> {
    ["service", "container", "network", "volume"].iter().flat_map(|kind| labelled(kind, project)).collect()
}

/// Whether the engine is a manager of a swarm.
pub fn swarm_manager() -> bool {
    let info = docker(&["info", "--format", "{{.Swarm.ControlAvailable}}"]);
    String::from_utf8_lossy(&info.stdout).trim() == "true"
}

/// A swarm for a test: the engine's own if it is a manager already,
/// otherwise a single-host swarm made for the test, which it leaves when
/// dropped (with the bridge swarm mode added), also when the test fails.
pub struct Swarm {
    made: bool,
    gwbridge_made: bool,
}

impl Swarm {
    /// Joins the engine to a swarm of its own, advertising loopback so that
    /// swarm traffic stays on this machine. `None` (saying why) when the
    /// engine cannot do swarm mode and REQUIRE_DOCKER is unset.
    pub fn init(suite: &str) -> Option<Swarm> {
        if swarm_manager() {
            return Some(Swarm { made: false, gwbridge_made: false });
        }
        let gwbridge_made = !docker(&["network", "inspect", "docker_gwbridge"]).status.success();
        let init = docker(&["swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", "127.0.0.1:2377"]);
        if init.status.success() {
            return Some(Swarm { made: true, gwbridge_made });
        }
        let why = text(&init);
        if std::env::var_os("REQUIRE_DOCKER").is_some() {
            panic!("REQUIRE_DOCKER is set but the engine cannot start a swarm: {}", why.trim());
        }
        eprintln!(
            "skipping {suite}: the engine cannot start a swarm ({}); set REQUIRE_DOCKER=1 to fail instead",
            why.trim()
        );
        None
    }

    /// The host's address on docker_gwbridge, the bridge through which a
    /// task's container reaches the host it runs on (and its published ports).
    pub fn host_gateway(&self) -> String {
        let inspect =
            docker(&["network", "inspect", "docker_gwbridge", "--format", "{{range .IPAM.Config}}{{.Gateway}}{{end}}"]);
        let gateway = String::from_utf8_lossy(&inspect.stdout).trim().to_owned();
        assert!(gateway.parse::<std::net::IpAddr>().is_ok(), "docker_gwbridge has no gateway: {}", text(&inspect));
        gateway
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        if self.made {
            let left = docker(&["swarm", "leave", "--force"]);
            assert!(left.status.success() || std::thread::panicking(), "swarm leave failed: {}", text(&left));
        }
        if self.gwbridge_made {
            // Its last endpoint leaves a moment after the swarm.
            for _ in 0..25 {
                if docker(&["network", "rm", "docker_gwbridge"]).status.success() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// Removes a project's labelled containers and networks when dropped.
pub struct ProjectGuard(pub String);

impl Drop for ProjectGuard {
    fn drop(&mut self) {
        let services = labelled("service", &self.0);
        if !services.is_empty() {
            let mut args = vec!["service", "rm"];
            args.extend(services.iter().map(String::as_str));
            docker(&args);
        }
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

/// Builds the images once per test binary with `launcher build` (the first
/// build compiles static binaries), so that parallel tests do not build them
/// side by side.
pub fn images_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let output = Command::new(crate::binary("launcher"))
            .args(["--project", "hit6-test-build", "build"])
            .env_remove("RUST_LOG")
            .output()
            .expect("the launcher runs");
        assert!(output.status.success(), "launcher build failed: {}", text(&output));
    });
}

/// The host's address on the default bridge, which containers reach
/// published ports through: the gateway, which Docker leaves implicit as the
/// subnet's first address unless it was configured.
pub fn bridge_gateway() -> String {
    let inspect =
        docker(&["network", "inspect", "bridge", "--format", "{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}{{end}}"]);
    let text = String::from_utf8_lossy(&inspect.stdout).trim().to_owned();
    let (gateway, subnet) = text.split_once(' ').unwrap_or(("", &text));
    if let Ok(ip) = gateway.parse::<std::net::Ipv4Addr>() {
        return ip.to_string();
    }
    let network: std::net::Ipv4Addr =
        subnet.split('/').next().unwrap_or("").parse().unwrap_or_else(|_| panic!("no bridge subnet: {text}"));
    std::net::Ipv4Addr::from(u32::from(network) + 1).to_string()
}

/// Follows a container's log until it has logged `event` `count` times, and
/// returns those lines parsed as JSON; fails after [`DOCKER_PATIENCE`].
pub async fn await_events(container: &str, event: impl crate::EventName, count: usize) -> Vec<Value> {
    let mut logs = tokio::process::Command::new("docker")
        .args(["logs", "-f", container])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(logs.stdout.take().unwrap()).lines();
    let mut found = Vec::new();
    let wait = async {
        while found.len() < count {
            let Some(line) = lines.next_line().await.unwrap() else { break };
            let line = serde_json::from_str(&line).unwrap_or(Value::Null);
            if crate::is(&line, event) {
                found.push(line);
            }
        }
    };
    let _ = tokio::time::timeout(DOCKER_PATIENCE, wait).await;
    assert_eq!(found.len(), count, "{container} logged {} of {count} `{}` events", found.len(), event.name());
    found
}
