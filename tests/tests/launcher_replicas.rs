//! `launcher up --registries 3` against the real Docker engine: an etcd
//! cluster and three registry replicas, disrupted by the launcher's own
//! verbs. The etcd image is built from the etcd binary at hand (ETCD_BIN,
//! or `etcd` on PATH); skips (saying so) without Docker or etcd, unless
//! REQUIRE_DOCKER or REQUIRE_ETCD is set. A guard removes what the test
//! made even if it fails.

use serde_json::Value;
use tests::docker::{self, images_built, leftovers, text, ProjectGuard};
use tests::launcher::{etcd_at_hand, last_json as summary, launcher, ps, ps_leader as leader, ps_rows as rows};

#[test]
fn three_replicas_on_etcd_outlive_a_killed_replica_and_a_killed_leader_and_down_removes_everything() {
    if !docker::available("the launcher replica tests") || !etcd_at_hand("the launcher replica tests") {
        return;
    }
    images_built();
    let project = "hit6-test-replicas";
    let _guard = ProjectGuard(project.into());
    let ports = ["--port-range", "18787-18795", "--registry-port", "18786"];
    let up = ["up", "--registries", "3", "--nodes", "4", "--detach", "--quiet", "--json", "--timeout", "120"];
    let output = launcher(project, &[&up[..], &ports].concat());
    assert!(output.status.success(), "{}", text(&output));
    let summary = summary(&output);
    assert_eq!((summary["complete"].as_bool(), summary["greetings"].as_u64()), (Some(true), Some(6)), "{summary}");

    // Three etcd members, one of them leading, none published; three
    // replicas, each published (the first on --registry-port).
    let all = ps(project);
    assert_eq!(rows(&all, "etcd-").len(), 3, "{all:?}");
    assert!(rows(&all, "etcd-").iter().all(|row| row["ports"].as_array().unwrap().is_empty()), "{all:?}");
    let replicas = rows(&all, "registry-");
    assert_eq!(replicas.len(), 3, "{all:?}");
    assert!(replicas.iter().all(|row| row["role"] == "replica" && row["state"] == "running"), "{replicas:?}");
    assert!(replicas[0]["ports"][0].as_str().unwrap().starts_with("18786->"), "{replicas:?}");
    assert!(rows(&all, "node-").iter().all(|row| row["registry"] == "live"), "{all:?}");
    let first_leader = leader(project);
    // The same secret in every replica, and a fresh cluster token on every member's command line.
    let env = |container: &str| {
        let output =
            docker::docker(&["inspect", "--format", "{{json .Config.Env}}", &format!("{project}-{container}")]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let secret = |env: String| env.split('"').find_map(|var| var.strip_prefix("HIT6_REGISTRY_KEY=")).map(str::to_owned);
    let secrets: Vec<Option<String>> = (1..=3).map(|i| secret(env(&format!("registry-{i}")))).collect();
    assert!(secrets[0].is_some() && secrets.iter().all(|s| *s == secrets[0]), "{secrets:?}");
    assert!(env("node-1").contains("NODE_REGISTRY_KEY="), "nodes pin the replicas' key");

    // Node i starts at replica i mod 3: node-1 and node-4 use registry-2.
    // Killed, they move to another, session and watch, within a second.
    let killed = launcher(project, &["kill", "registry-2", "--json"]);
    assert!(killed.status.success(), "{}", text(&killed));
    let report: Value = serde_json::from_slice(&killed.stdout).expect("a JSON report");
    let moves = report["moves"].as_object().expect("the moves");
    assert_eq!(moves.keys().collect::<Vec<_>>(), ["node-1", "node-4"], "{report}");
    for (node, moved) in moves {
        let to = moved["to"].as_str().unwrap_or_default();
        assert!(to.contains("-registry-1:") || to.contains("-registry-3:"), "{node}: {report}");
        assert!(moved["watching_ms"].as_f64().is_some(), "{node}: {report}");
    }
    assert!(report["all_ms"].as_f64().is_some_and(|ms| ms < 1000.0), "not every node moved within 1 s: {report}");
    let send = launcher(project, &["send", "--group", "1", "--json", "hola"]);
    assert!(send.status.success(), "a send through the replicas left: {}", text(&send));

    // The leader killed: another member leads, and a registration is taken again.
    let killed = launcher(project, &["kill", &first_leader, "--json"]);
    assert!(killed.status.success(), "{}", text(&killed));
    let report: Value = serde_json::from_slice(&killed.stdout).expect("a JSON report");
    assert_eq!(report["leader_before"]["member"], first_leader.as_str(), "{report}");
    let new_leader = report["leader"]["member"].as_str().expect("a new leader");
    assert_ne!(new_leader, first_leader, "{report}");
    assert!(report["leader"]["elected_ms"].as_f64().is_some(), "{report}");
    assert!(report["registered"]["ms"].as_f64().is_some(), "{report}");
    assert_eq!(leader(project), new_leader, "ps names the leader the report named");

    let down = launcher(project, &["down"]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(leftovers(project).is_empty(), "left behind: {:?}", leftovers(project));
}

#[test]
fn registries_are_one_or_an_odd_number_up_to_seven() {
    for bad in ["2", "9", "0"] {
        let output = launcher("hit6-test-args", &["up", "--registries", bad]);
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        assert!(text(&output).contains(&format!("`{bad}` isn't a number of registries")), "{}", text(&output));
    }
    let output = launcher("hit6-test-args", &["up", "--registries", "3", "--registry", "127.0.0.1:1"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("cannot be used with"), "{}", text(&output));
    let output = launcher("hit6-test-args", &["kill", "etcd-x"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("is no member"), "{}", text(&output));
}
