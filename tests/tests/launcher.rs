//! The launcher against the real Docker engine. Each test uses its own
//! project and host ports, and a guard removes what it made even if it fails.
//! Skips (saying so) when no daemon is reachable, unless REQUIRE_DOCKER is set.

use node::events::Event;
use std::process::Stdio;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tests::docker::{
    self, await_events, bridge_gateway, images_built, leftovers, text, ProjectGuard, DOCKER_PATIENCE, PROJECT_LABEL,
};
use tests::launcher::{greeting, last_json as summary, launcher};
use tokio::io::{AsyncBufReadExt, BufReader};

const REGISTRY_IMAGE: &str = concat!("hit6-mesh/registry:", env!("CARGO_PKG_VERSION"));
const NODE_IMAGE: &str = concat!("hit6-mesh/node:", env!("CARGO_PKG_VERSION"));

#[test]
fn up_detached_meshes_five_nodes_on_the_default_ports_and_down_removes_everything() {
    if !docker::available("the launcher tests") {
        return;
    }
    images_built();
    let project = "hit6-test-up";
    let _guard = ProjectGuard(project.into());

    // A bare number of seconds, as `docker stop -t` takes it.
    let up = ["up", "--nodes", "5", "--detach", "--quiet", "--json", "--timeout", "120", "--http-port", "18181"];
    let output = launcher(project, &up);
    assert!(output.status.success(), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("health: 6 of 6 healthy"), "{}", text(&output));
    let summary = summary(&output);
    assert_eq!(summary["complete"], true);
    assert_eq!(summary["greetings"], 10);
    let nodes = summary["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 5);
    let mut ports: Vec<u64> = Vec::new();
    for node in nodes {
        let port = node["host_port"].as_u64().expect("every node is published");
        assert!((8087..=8095).contains(&port), "{node}");
        let advertised = node["advertised"].as_str().unwrap();
        assert!(advertised.ends_with(&format!(":{port}")), "node did not advertise its PUERTO_EXT: {node}");
        assert_eq!(node["sent"].as_u64().unwrap() + node["received"].as_u64().unwrap(), 4, "{node}");
        ports.push(port);
    }
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 5, "each node has its own host port");
    let mut groups: Vec<u64> = nodes.iter().map(|n| n["group"].as_u64().expect("every node has a group")).collect();
    groups.sort_unstable();
    assert_eq!(groups, [1, 1, 2, 2, 3], "five nodes dealt into the default three groups");

    let send = launcher(project, &["send", "--group", "2", "--json", "hola"]);
    assert!(send.status.success(), "{}", text(&send));
    let report: Value = serde_json::from_slice(&send.stdout).expect("a JSON report");
    assert_eq!((report["members"].as_u64(), report["delivered"].as_u64()), (Some(2), Some(2)), "{report}");

    let ps = launcher(project, &["ps"]);
    assert!(ps.status.success(), "{}", text(&ps));
    let rows: Vec<String> = String::from_utf8_lossy(&ps.stdout).lines().skip(1).map(str::to_owned).collect();
    assert_eq!(rows.len(), 6, "a registry and five nodes: {rows:?}");
    assert!(rows.iter().all(|row| row.contains("running")), "{rows:?}");
    // Every container has the image's health check, which has or has not run yet.
    for row in tests::launcher::ps(project) {
        assert!(["starting", "healthy"].contains(&row["health"].as_str().unwrap_or("none")), "{row}");
    }

    // The registry's HTTP listener, published: its status page's events go
    // to the holders of the read token `token --http` prints, and no one else.
    let http: std::net::SocketAddr = "127.0.0.1:18181".parse().unwrap();
    let patience = std::time::Duration::from_secs(10);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (health, _) = runtime.block_on(wire::http::get(http, "/health", patience)).expect("/health answers");
    assert_eq!(health, 200);
    let refused = runtime.block_on(wire::http::get(http, "/status/events", patience)).expect("an answer");
    assert_eq!(refused.0, 401, "no token");
    let token = launcher(project, &["token", "--http"]);
    assert!(token.status.success(), "{}", text(&token));
    let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
    assert_eq!(token.len(), 64, "64 hex characters");
    let first_event = runtime.block_on(first_status_event(http, &token));
    assert!(first_event.contains("HTTP/1.1 200") && first_event.contains("event: snapshot"), "{first_event}");
    assert!(first_event.contains("\"name\":\"node-5\""), "the snapshot lists the nodes: {first_event}");

    // `stats` reads every member's /metrics and /health over the project network.
    let stats = launcher(project, &["stats", "--no-stream", "--json"]);
    assert!(stats.status.success(), "{}", text(&stats));
    let stats: Vec<Value> = serde_json::from_slice(&stats.stdout).expect("a JSON array of rows");
    assert_eq!(stats.len(), 6, "{stats:?}");
    for stat in &stats {
        assert_eq!((stat["state"].as_str(), stat["health"].as_str()), (Some("running"), Some("healthy")), "{stat}");
        assert!(
            stat["cpu_percent"].as_f64().is_some() && stat["memory_bytes"].as_u64().is_some_and(|b| b > 0),
            "{stat}"
        );
    }
    let registry = stats.iter().find(|stat| stat["member"] == "registry").expect("the registry's row");
    assert_eq!(registry["peers"], 5, "the registry's live members: {registry}");
    let nodes: Vec<&Value> =
        stats.iter().filter(|stat| stat["member"].as_str().unwrap().starts_with("node-")).collect();
    let greeted =
        |stat: &Value| stat["greetings_sent"].as_u64().unwrap() + stat["greetings_received"].as_u64().unwrap();
    assert!(nodes.iter().all(|stat| greeted(stat) == 4), "each node met the four others: {nodes:?}");
    let sent: u64 = nodes.iter().map(|stat| stat["greetings_sent"].as_u64().unwrap()).sum();
    assert_eq!(sent, 10, "one greeting a pair: {nodes:?}");
    for stat in nodes.iter().filter(|stat| stat["greetings_sent"].as_u64() > Some(0)) {
        assert!(stat["p50_ms"].as_f64().is_some_and(|ms| ms > 0.0), "a greeter has a latency: {stat}");
    }

    // Log lines are the result of `logs`: on stdout, so they can be piped.
    let logs = launcher(project, &["logs"]);
    assert!(logs.status.success(), "{}", text(&logs));
    let logged = String::from_utf8_lossy(&logs.stdout);
    // The nodes start in parallel, so which one registers first (and greets nobody) varies.
    assert!(logged.lines().any(|l| l.starts_with("node-") && l.contains(" | greeted node-")), "{logged}");
    assert!(logged.lines().any(|l| l.starts_with("registry | registered node-5 at ")), "{logged}");
    // A reader that goes away early (`| head -1`) is no failure.
    for args in [&["ps"][..], &["logs"], &["send", "--group", "2", "hola"]] {
        let output = tests::with_closed_stdout("launcher", &[&["--project", project][..], args].concat());
        assert_eq!(output.status.code(), Some(0), "launcher {args:?} into a closed pipe: {}", text(&output));
    }

    // A node killed as a crash would be: the registry and every other node
    // log its departure, and `kill` reports who did and when.
    let killed = launcher(project, &["kill", "node-3", "--json"]);
    assert!(killed.status.success(), "{}", text(&killed));
    let followed: Value = serde_json::from_slice(&killed.stdout).expect("a JSON report");
    assert_eq!(followed["verb"], "kill", "{followed}");
    assert_heard(
        &followed["departure"],
        "session_lost",
        "peer_left connection_lost",
        &["node-1", "node-2", "node-4", "node-5"],
    );
    assert!(followed.get("return").is_none(), "{followed}");
    let rows = ps_rows(project);
    for row in rows.iter().filter(|row| row.contains("-node-")) {
        let killed = row.starts_with(&format!("{project}-node-3 "));
        assert_eq!(row.contains(" gone "), killed, "the registry's view of each node: {rows:?}");
        assert_eq!(row.contains(" live ") && row.contains("running"), !killed, "{rows:?}");
    }
    let again = launcher(project, &["kill", "3"]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("node-3 is not a running node"), "{}", text(&again));

    // The project's token: drawn by `up`, handed over in the environment,
    // never in a container's command line, the summary or the logs.
    let token = launcher(project, &["token"]);
    assert!(token.status.success(), "{}", text(&token));
    let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
    assert!(token.len() == 64 && token.chars().all(|c| c.is_ascii_hexdigit()), "{token}");
    for role in ["registry", "node-1"] {
        let inspect = std::process::Command::new("docker")
            .args(["inspect", "--format", "{{json .Args}} {{json .Config.Cmd}}", &format!("{project}-{role}")])
            .output()
            .expect("docker runs");
        let argv = String::from_utf8_lossy(&inspect.stdout);
        assert!(inspect.status.success() && !argv.contains(&token), "{role}'s argv holds the token: {argv}");
    }
    assert!(!text(&output).contains(&token) && !logged.contains(&token), "the token was printed");

    // The registry's keys: its secret handed over in its environment, and
    // the key it makes pinned in every node, which registered all the same.
    let inspect = |container: &str, format: &str| {
        let output = docker::docker(&["inspect", "--format", format, &format!("{project}-{container}")]);
        assert!(output.status.success(), "{}", text(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let registry_env = inspect("registry", "{{json .Config.Env}}");
    let secret = registry_env.split('"').find_map(|var| var.strip_prefix("HIT6_REGISTRY_KEY=")).map(str::to_owned);
    let secret = secret.unwrap_or_else(|| panic!("the registry was handed no key: {registry_env}"));
    let raw_logs = docker::docker(&["logs", &format!("{project}-registry")]);
    let listening = String::from_utf8_lossy(&raw_logs.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| tests::is(line, registry::events::Event::Listening))
        .expect("the registry logged `listening`");
    assert_eq!(listening["identity"], "kept", "{listening}");
    let key = listening["key"].as_str().expect("`listening` names its key");
    assert!(inspect("node-1", "{{json .Config.Env}}").contains(&format!("NODE_REGISTRY_KEY={key}")), "not pinned");
    let argv = inspect("registry", "{{json .Args}} {{json .Config.Cmd}}");
    assert!(!argv.contains(&secret) && !logged.contains(&secret) && !text(&output).contains(&secret), "shown");
    // The registry is published on the default --registry-port.
    let stranger = tests::with_closed_stdout("node", &["send", "--registry", "127.0.0.1:8086", "--group", "2", "hola"]);
    assert_eq!(stranger.status.code(), Some(1), "a send without the token: {}", text(&stranger));
    assert!(text(&stranger).contains("unauthorized"), "{}", text(&stranger));

    let again = launcher(project, &["up", "--nodes", "1"]);
    assert_eq!(again.status.code(), Some(5), "{}", text(&again));
    assert!(text(&again).contains("is already up"), "{}", text(&again));

    let down = launcher(project, &["down"]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(leftovers(project).is_empty(), "left behind: {:?}", leftovers(project));
}

/// Checks one change of a `kill`/`pause`/`unpause`/`restart` report: how the
/// registry and each survivor logged it, and that all of them did.
fn assert_heard(heard: &Value, registry: &str, survivor: &str, survivors: &[&str]) {
    assert_eq!(heard["registry"]["how"], registry, "{heard}");
    let logged = heard["survivors"].as_object().expect("the survivors");
    assert_eq!(logged.keys().collect::<Vec<_>>(), survivors, "{heard}");
    assert!(logged.values().all(|logging| logging["how"] == survivor), "{heard}");
    assert!(heard["all_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{heard}");
}

/// What `/status/events` at `http` sends a bearer of `token` until its
/// first event (the snapshot) is whole.
async fn first_status_event(http: std::net::SocketAddr, token: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(http).await.unwrap();
    let request = format!("GET /status/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut read = Vec::new();
    let whole = async {
        while !String::from_utf8_lossy(&read).contains("\n\n") || !String::from_utf8_lossy(&read).contains("event:") {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), whole).await;
    String::from_utf8_lossy(&read).into_owned()
}

/// The rows of `launcher ps`, after its header.
fn ps_rows(project: &str) -> Vec<String> {
    let ps = launcher(project, &["ps"]);
    assert!(ps.status.success(), "{}", text(&ps));
    String::from_utf8_lossy(&ps.stdout).lines().skip(1).map(str::to_owned).collect()
}

/// The row of `launcher ps` for one node.
fn ps_row(project: &str, node: &str) -> String {
    let rows = ps_rows(project);
    rows.iter()
        .find(|row| row.starts_with(&format!("{project}-{node} ")))
        .cloned()
        .unwrap_or_else(|| panic!("{rows:?}"))
}

/// How many greetings each node logged having received, by greeter: `(receiver, greeter)`.
fn greetings_received(project: &str) -> Vec<(String, String)> {
    let logs = launcher(project, &["logs"]);
    assert!(logs.status.success(), "{}", text(&logs));
    let mut pairs: Vec<(String, String)> = String::from_utf8_lossy(&logs.stdout).lines().filter_map(greeting).collect();
    pairs.sort();
    pairs
}

#[test]
fn pause_unpause_and_restart_report_what_followed() {
    if !docker::available("the launcher tests") {
        return;
    }
    images_built();
    let project = "hit6-test-break";
    let _guard = ProjectGuard(project.into());
    // A short lease, so that a paused node is gone in seconds.
    let ports = ["--port-range", "18587-18595", "--registry-port", "18586", "--lease", "2s"];
    let output =
        launcher(project, &[&["up", "--nodes", "3", "--detach", "--quiet", "--timeout", "120"][..], &ports].concat());
    assert!(output.status.success(), "{}", text(&output));
    let greeted = greetings_received(project);
    assert_eq!(greeted.len(), 3, "{greeted:?}");

    // A paused node stays listed while its lease runs, then expires.
    let paused = launcher(project, &["pause", "node-2", "--json", "--timeout", "20s"]);
    assert!(paused.status.success(), "{}", text(&paused));
    let report: Value = serde_json::from_slice(&paused.stdout).expect("a JSON report");
    assert_eq!(report["verb"], "pause", "{report}");
    assert_heard(&report["departure"], "expired", "peer_left expired", &["node-1", "node-3"]);
    // Its last heartbeat, at most a third of the lease before the pause, started the lease that ran out.
    assert!(report["departure"]["all_ms"].as_f64().unwrap() >= 1300.0, "gone before its lease ended: {report}");
    let row = ps_row(project, "node-2");
    assert!(row.contains(" paused ") && row.contains(" gone "), "{row}");
    let again = launcher(project, &["pause", "2"]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("node-2 is not a running node"), "{}", text(&again));

    // Thawed after its lease ended, it registers again, takes its place
    // back, and nobody greets anybody a second time.
    let unpaused = launcher(project, &["unpause", "node-2", "--json"]);
    assert!(unpaused.status.success(), "{}", text(&unpaused));
    let report: Value = serde_json::from_slice(&unpaused.stdout).expect("a JSON report");
    assert_heard(&report["return"], "registered", "peers_joined", &["node-1", "node-3"]);
    assert!(report.get("departure").is_none(), "{report}");
    assert!(ps_row(project, "node-2").contains(" live "), "{:?}", ps_rows(project));
    assert_eq!(greetings_received(project), greeted, "a greeting was repeated after the return");

    // A restart is a departure (the node deregisters on SIGTERM), then a
    // new node's return.
    let restarted = launcher(project, &["restart", "node-3", "--json"]);
    assert!(restarted.status.success(), "{}", text(&restarted));
    let report: Value = serde_json::from_slice(&restarted.stdout).expect("a JSON report");
    assert_heard(&report["departure"], "deregistered", "peer_left deregistered", &["node-1", "node-2"]);
    assert_heard(&report["return"], "registered", "peers_joined", &["node-1", "node-2"]);
    assert!(
        report["return"]["all_ms"].as_f64() > report["departure"]["all_ms"].as_f64(),
        "the return came before the departure: {report}"
    );
    assert!(ps_row(project, "node-3").contains(" live "), "{:?}", ps_rows(project));

    let down = launcher(project, &["down"]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(leftovers(project).is_empty(), "left behind: {:?}", leftovers(project));
}

#[test]
fn a_port_range_smaller_than_the_nodes_fails_before_creating_anything() {
    if !docker::available("the launcher tests") {
        return;
    }
    let project = "hit6-test-small";
    let _guard = ProjectGuard(project.into());
    let output = launcher(project, &["up", "--nodes", "20"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("8087-8095 holds 9 ports; --nodes 20 needs 20: widen --port-range"),
        "{}",
        text(&output)
    );
    assert!(leftovers(project).is_empty());
}

#[tokio::test]
async fn a_foreground_up_shows_departures_and_sigint_removes_everything() {
    if !docker::available("the launcher tests") {
        return;
    }
    images_built();
    let project = "hit6-test-sigint";
    let _guard = ProjectGuard(project.into());
    let mut up = tokio::process::Command::new(tests::binary("launcher"))
        .args(["--project", project, "up", "--nodes", "3", "--json", "--quiet"])
        .args(["--port-range", "18187-18195", "--registry-port", "18186"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let mut lines = BufReader::new(up.stdout.take().unwrap()).lines();
    let complete = tokio::time::timeout(DOCKER_PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if serde_json::from_str::<Value>(&line).is_ok_and(|s| s["complete"] == true) {
                return true;
            }
        }
        false
    });
    assert!(complete.await.unwrap(), "the mesh never completed");
    assert_eq!(docker::labelled("container", project).len(), 4);

    // Quiet, but once the mesh is complete it still shows who leaves.
    let killed = tokio::task::spawn_blocking(move || launcher(project, &["kill", "node-2"])).await.unwrap();
    assert!(killed.status.success(), "{}", text(&killed));
    let mut notes = BufReader::new(up.stderr.take().unwrap()).lines();
    let departure = tokio::time::timeout(DOCKER_PATIENCE, async {
        let mut shown = Vec::new();
        while let Some(line) = notes.next_line().await.unwrap() {
            if line.starts_with("registry | lost the session of node-2 at ") {
                return Ok(line);
            }
            shown.push(line);
        }
        Err(shown)
    });
    departure.await.expect("the departure was shown").expect("the departure was shown");

    kill(Pid::from_raw(up.id().unwrap() as i32), Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(DOCKER_PATIENCE, up.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
    assert!(leftovers(project).is_empty(), "left behind: {:?}", leftovers(project));
}

#[tokio::test]
async fn docker_run_of_each_image_forms_a_mesh_as_in_the_readme() {
    if !docker::available("the launcher tests") {
        return;
    }
    images_built();
    let project = "hit6-test-run";
    let _guard = ProjectGuard(project.into());
    let label = format!("{PROJECT_LABEL}={project}");
    let host_ip = bridge_gateway();

    let registry = format!("{project}-registry");
    let run =
        docker::docker(&["run", "-d", "--name", &registry, "--label", &label, "-p", "18286:8080", REGISTRY_IMAGE]);
    assert!(run.status.success(), "{}", text(&run));
    let mut nodes = Vec::new();
    for (i, puerto) in (18287..=18289).enumerate() {
        let name = format!("{project}-node-{}", i + 1);
        let (publish, puerto_ext, ip_ext) =
            (format!("{puerto}:8080"), format!("PUERTO_EXT={puerto}"), format!("IP_EXT={host_ip}"));
        let args = ["run", "-d", "--name", &name, "--label", &label, "-p", &publish, "-e", &puerto_ext, "-e", &ip_ext];
        let run = docker::docker(&[&args[..], &["-e", "LOG_FORMAT=json", NODE_IMAGE, &host_ip, "18286"]].concat());
        assert!(run.status.success(), "{}", text(&run));
        // Started one after another, node i+1 greets the i before it.
        let registered = await_events(&name, Event::Registered, 1).await;
        assert_eq!(registered[0]["contacts"], i as u64);
        assert_eq!(registered[0]["addr"], format!("{host_ip}:{puerto}"));
        nodes.push(name);
    }
    for (i, name) in nodes.iter().enumerate() {
        await_events(name, Event::GreetingSent, i).await;
        await_events(name, Event::GreetingReceived, nodes.len() - 1 - i).await;
    }
}

/// Removes image tags when dropped, also when the test fails.
struct TagsGuard(Vec<String>);

impl Drop for TagsGuard {
    fn drop(&mut self) {
        for tag in &self.0 {
            docker::docker(&["rmi", tag]);
        }
    }
}

#[test]
fn push_tags_both_images_under_the_prefix_and_says_why_it_could_not_push() {
    if !docker::available("the launcher tests") {
        return;
    }
    images_built();
    let refused = launcher("hit6-test-push", &["push", "--to", "ghcr.io/Me/x"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("isn't a REGISTRY/PREFIX"), "{}", text(&refused));

    // Nothing listens on port 1 of loopback: the engine's push is refused there.
    let prefix = "127.0.0.1:1/hit6-test-push";
    let version = env!("CARGO_PKG_VERSION");
    let _tags = TagsGuard(["registry", "node"].map(|image| format!("{prefix}/{image}:{version}")).to_vec());
    let pushed = launcher("hit6-test-push", &["push", "--to", prefix]);
    assert_eq!(pushed.status.code(), Some(1), "{}", text(&pushed));
    let said = text(&pushed);
    assert!(said.contains(&format!("failed to push {prefix}/registry:{version}")), "{said}");
    assert!(said.contains("connection refused"), "the engine's reason is shown: {said}");
    let tagged = docker::docker(&["image", "inspect", "--format", "{{.Id}}", &format!("{prefix}/registry:{version}")]);
    let source = docker::docker(&["image", "inspect", "--format", "{{.Id}}", REGISTRY_IMAGE]);
    assert!(tagged.status.success(), "{}", text(&tagged));
    assert_eq!(tagged.stdout, source.stdout, "the tag names the image that was built");
}
