//! `launcher build` against the real Docker daemon: both images are small,
//! `FROM scratch`, run as nobody on 8080, the node resolves the registry's
//! container name (static glibc DNS in a scratch image), and both turn
//! healthy by their own HEALTHCHECK.
//!
//! Skips (saying so) when no daemon is reachable, unless REQUIRE_DOCKER is set.

use std::process::Command;
use std::time::Instant;

use node::events::Event;
use serde_json::Value;
use tests::docker::{available, docker, text};

const REGISTRY_IMAGE: &str = "hit6-test/registry:images-test";
const NODE_IMAGE: &str = "hit6-test/node:images-test";
const NETWORK: &str = "hit6-images-test-net";
const REGISTRY_CONTAINER: &str = "hit6-images-test-registry";
const NODE_CONTAINER: &str = "hit6-images-test-node";
const MAX_IMAGE_BYTES: u64 = 5_000_000;

/// Removes everything the test creates, when dropped: even after a failure.
struct Cleanup;

impl Cleanup {
    fn run() {
        let _ = docker(&["rm", "-f", "-v", NODE_CONTAINER, REGISTRY_CONTAINER]);
        let _ = docker(&["network", "rm", NETWORK]);
        let _ = docker(&["rmi", "-f", REGISTRY_IMAGE, NODE_IMAGE]);
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        Cleanup::run();
    }
}

fn inspect_image(image: &str) -> Value {
    let output = docker(&["image", "inspect", image]);
    assert!(output.status.success(), "docker image inspect {image} failed: {}", text(&output));
    let all: Value = serde_json::from_slice(&output.stdout).expect("docker image inspect prints JSON");
    all[0].clone()
}

fn check_image(image: &str, name: &str, listen_env: &str, http_env: &str) {
    let inspect = inspect_image(image);
    let config = &inspect["Config"];
    let size = inspect["Size"].as_u64().expect("the image has a size");
    assert!(size <= MAX_IMAGE_BYTES, "{image} is {size} bytes, more than {MAX_IMAGE_BYTES}");
    assert_eq!(config["User"], "65534:65534", "{image} must run as nobody: {config}");
    assert!(config["ExposedPorts"].get("8080/tcp").is_some(), "{image} must expose 8080/tcp: {config}");
    assert_eq!(config["Entrypoint"], serde_json::json!([format!("/{name}")]), "{config}");
    let labels = &config["Labels"];
    assert_eq!(labels["org.opencontainers.image.title"], name, "{labels}");
    assert_eq!(labels["org.opencontainers.image.version"], env!("CARGO_PKG_VERSION"), "{labels}");
    assert!(labels["org.opencontainers.image.source"].as_str().is_some_and(|s| s.starts_with("https://")), "{labels}");
    let env: Vec<&str> = config["Env"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    assert!(env.contains(&format!("{listen_env}=0.0.0.0:8080").as_str()), "{env:?}");
    assert!(env.contains(&format!("{http_env}=0.0.0.0:8081").as_str()), "{env:?}");
    let health = &config["Healthcheck"];
    assert_eq!(health["Test"], serde_json::json!(["CMD", format!("/{name}"), "health"]), "{config}");
    assert!(!env.iter().any(|e| e.starts_with("LOG_FORMAT=")), "the launcher sets LOG_FORMAT per container: {env:?}");
    // FROM scratch: one layer, the binary.
    let layers = inspect["RootFS"]["Layers"].as_array().map_or(0, Vec::len);
    assert_eq!(layers, 1, "{image} should hold only its binary: {}", inspect["RootFS"]);
}

#[test]
fn launcher_builds_small_scratch_images_whose_node_finds_the_registry_by_name() {
    if !available("the image tests") {
        return;
    }
    Cleanup::run(); // leftovers of an interrupted run
    let _cleanup = Cleanup;

    let started = Instant::now();
    let output = Command::new(tests::binary("launcher"))
        .args(["build", "--registry-image", REGISTRY_IMAGE, "--node-image", NODE_IMAGE])
        .env_remove("LAUNCHER_REGISTRY_IMAGE")
        .env_remove("LAUNCHER_NODE_IMAGE")
        .output()
        .expect("the launcher runs");
    assert!(output.status.success(), "launcher build failed ({}):\n{}", output.status, text(&output));
    eprintln!("launcher build took {:?}", started.elapsed());
    let stdout = String::from_utf8_lossy(&output.stdout);
    for image in [REGISTRY_IMAGE, NODE_IMAGE] {
        assert!(
            stdout.lines().any(|l| l.starts_with(image) && l.ends_with(" MB")),
            "no size line for {image} in:\n{stdout}"
        );
    }

    check_image(REGISTRY_IMAGE, "registry", "REGISTRY_LISTEN", registry::cli::HTTP_LISTEN_ENV);
    check_image(NODE_IMAGE, "node", "NODE_LISTEN", node::config::HTTP_LISTEN_ENV);

    let help = docker(&["run", "--rm", NODE_IMAGE, "--help"]);
    assert!(help.status.success(), "node --help in its image failed: {}", text(&help));
    assert!(text(&help).contains("REGISTRY"), "{}", text(&help));

    // The node reaches the registry by its container name: Docker's DNS through static glibc.
    let created = docker(&["network", "create", NETWORK]);
    assert!(created.status.success(), "{}", text(&created));
    let registry = docker(&["run", "-d", "--name", REGISTRY_CONTAINER, "--network", NETWORK, REGISTRY_IMAGE]);
    assert!(registry.status.success(), "{}", text(&registry));
    let node = docker(&[
        "run",
        "-d",
        "--name",
        NODE_CONTAINER,
        "--network",
        NETWORK,
        "-e",
        "LOG_FORMAT=json",
        NODE_IMAGE,
        REGISTRY_CONTAINER,
        "8080",
    ]);
    assert!(node.status.success(), "{}", text(&node));

    let deadline = Instant::now() + tests::PATIENCE;
    loop {
        let logs = docker(&["logs", NODE_CONTAINER]);
        let registered = text(&logs)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| tests::is(line, Event::Registered));
        if let Some(line) = registered {
            eprintln!("node in its image registered: {line}");
            break;
        }
        if Instant::now() > deadline {
            let registry_logs = text(&docker(&["logs", REGISTRY_CONTAINER]));
            panic!(
                "the node did not register within {:?}; node log:\n{}\nregistry log:\n{registry_logs}",
                tests::PATIENCE,
                text(&logs)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // The images' HEALTHCHECK (`registry health`, `node health`, run inside
    // them every 10 s) turns both containers healthy.
    for container in [REGISTRY_CONTAINER, NODE_CONTAINER] {
        let status = await_health(container, "healthy");
        assert_eq!(status, "healthy", "{container}: {}", text(&docker(&["inspect", container])));
    }
}

/// `container`'s health status once it is `wanted`, or the last one seen
/// after [`tests::PATIENCE`].
fn await_health(container: &str, wanted: &str) -> String {
    let deadline = Instant::now() + tests::PATIENCE;
    loop {
        let inspect = docker(&["inspect", "--format", "{{.State.Health.Status}}", container]);
        let status = text(&inspect).trim().to_owned();
        if status == wanted || Instant::now() > deadline {
            return status;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
