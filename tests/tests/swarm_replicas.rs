//! `launcher up --runtime swarm --registries 3` on a single-host swarm that
//! the test makes and leaves (also when it fails; an engine that is a
//! manager already is used as it is): etcd members and replicas as
//! services pinned to the manager, an etcd member's data in a volume of
//! its own that its next task finds. Skips (saying so) without swarm mode
//! or an etcd binary, unless REQUIRE_DOCKER or REQUIRE_ETCD is set.

use serde_json::Value;
use tests::docker::{self, images_built, leftovers, text, ProjectGuard, Swarm};
use tests::launcher::{etcd_at_hand, last_json as summary, launcher, ps, ps_leader, ps_rows};

#[test]
fn swarm_replicas_outlive_a_killed_replica_and_a_killed_leader_and_down_removes_everything() {
    if !docker::available("the swarm replica tests") || !etcd_at_hand("the swarm replica tests") {
        return;
    }
    images_built();
    let Some(_swarm) = Swarm::init("the swarm replica tests") else { return };
    let project = "hit6-test-swarm-replicas";
    // Dropped before the swarm is left.
    let _guard = ProjectGuard(project.into());
    let up = ["up", "--runtime", "swarm", "--registries", "3", "--nodes", "4", "--detach", "--quiet", "--json"];
    let output = launcher(project, &[&up[..], &["--timeout", "120s", "--registry-port", "18986"]].concat());
    assert!(output.status.success(), "{}", text(&output));
    let summary = summary(&output);
    assert_eq!((summary["complete"].as_bool(), summary["greetings"].as_u64()), (Some(true), Some(6)), "{summary}");
    let all = ps(project);
    assert_eq!(ps_rows(&all, "etcd-").len(), 3, "{all:?}");
    assert!(ps_rows(&all, "registry-").iter().all(|row| row["role"] == "replica"), "{all:?}");
    let first_leader = ps_leader(project);

    let killed = launcher(project, &["kill", "registry-2", "--json"]);
    assert!(killed.status.success(), "{}", text(&killed));
    let report: Value = serde_json::from_slice(&killed.stdout).expect("a JSON report");
    let moves = report["moves"].as_object().expect("the moves");
    assert_eq!(moves.keys().collect::<Vec<_>>(), ["node-1", "node-4"], "{report}");
    assert!(report["all_ms"].as_f64().is_some_and(|ms| ms < 1000.0), "not every node moved within 1 s: {report}");

    let killed = launcher(project, &["kill", &first_leader, "--json"]);
    assert!(killed.status.success(), "{}", text(&killed));
    let report: Value = serde_json::from_slice(&killed.stdout).expect("a JSON report");
    assert_ne!(report["leader"]["member"], first_leader.as_str(), "{report}");
    assert!(report["registered"]["ms"].as_f64().is_some(), "{report}");
    // Through the replicas left, from a one-off container on the overlay.
    let send = launcher(project, &["send", "--group", "1", "--json", "hola"]);
    assert!(send.status.success(), "{}", text(&send));

    let down = launcher(project, &["down"]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(leftovers(project).is_empty(), "left behind: {:?}", leftovers(project));
}
