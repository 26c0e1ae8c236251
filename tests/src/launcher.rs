//! The real `launcher` binary for tests: running it, and reading what it printed.

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::docker::DOCKER_PATIENCE;

/// Runs `launcher --project PROJECT ARGS...` to its end, with no RUST_LOG or
/// join token of the caller's environment.
pub fn launcher(project: &str, args: &[&str]) -> Output {
    Command::new(crate::binary("launcher"))
        .args(["--project", project])
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("HIT6_JOIN_TOKEN")
        .output()
        .expect("the launcher runs")
}

/// The last JSON object a command printed (`up --json`'s summary, say).
pub fn last_json(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON in {stdout}"));
    serde_json::from_str(line).expect("JSON")
}

/// A greeting received, as `launcher logs` shows it: `(receiver, greeter)`.
pub type Greeting = (String, String);

/// The greeting a `launcher logs` line shows received, if it shows one.
pub fn greeting(line: &str) -> Option<Greeting> {
    let (receiver, rest) = line.split_once(" | greeting from ")?;
    Some((receiver.trim().to_owned(), rest.split_whitespace().next()?.to_owned()))
}

/// Follows `launcher logs -f` from the start until the greetings the
/// project's nodes have logged (each → how many times) are `enough`, and
/// returns them; fails after [`DOCKER_PATIENCE`]. Following, not a one-off
/// `logs`: a swarm's one-off service logs may lack the newest lines.
pub async fn await_greetings(
    project: &str,
    enough: impl Fn(&BTreeMap<Greeting, usize>) -> bool,
) -> BTreeMap<Greeting, usize> {
    let mut logs = tokio::process::Command::new(crate::binary("launcher"))
        .args(["--project", project, "logs", "-f"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the launcher runs");
    let mut lines = BufReader::new(logs.stdout.take().expect("piped")).lines();
    let mut counted = BTreeMap::new();
    let wait = async {
        while !enough(&counted) {
            let Some(line) = lines.next_line().await.expect("the log is text") else { break };
            if let Some(pair) = greeting(&line) {
                *counted.entry(pair).or_default() += 1;
            }
        }
    };
    let _ = tokio::time::timeout(DOCKER_PATIENCE, wait).await;
    assert!(enough(&counted), "not the greetings awaited after {DOCKER_PATIENCE:?}: {counted:?}");
    counted
}

/// How many greetings, counting repeats.
pub fn total(greetings: &BTreeMap<Greeting, usize>) -> usize {
    greetings.values().sum()
}

/// Whether an etcd binary is at hand to build the etcd image from.
pub fn etcd_at_hand(suite: &str) -> bool {
    let named = std::env::var_os("ETCD_BIN").map(std::path::PathBuf::from);
    let on_path = || {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path).map(|dir| dir.join("etcd")).find(|candidate| candidate.is_file())
    };
    if named.filter(|bin| bin.is_file()).or_else(on_path).is_some() {
        return true;
    }
    if std::env::var_os("REQUIRE_ETCD").is_some() {
        panic!("REQUIRE_ETCD is set but there is no etcd binary (ETCD_BIN, or etcd on PATH)");
    }
    eprintln!("skipping {suite}: no etcd binary (ETCD_BIN, or etcd on PATH); set REQUIRE_ETCD=1 to fail instead");
    false
}

/// `launcher ps --json`, by member name.
pub fn ps(project: &str) -> Vec<Value> {
    let ps = launcher(project, &["ps", "--json"]);
    assert!(ps.status.success(), "{}", crate::docker::text(&ps));
    serde_json::from_slice::<Value>(&ps.stdout).expect("a JSON array").as_array().expect("rows").clone()
}

/// The rows of one kind of member (`etcd-`, `registry-`, `node-`).
pub fn ps_rows<'a>(rows: &'a [Value], prefix: &str) -> Vec<&'a Value> {
    rows.iter().filter(|row| row["member"].as_str().is_some_and(|m| m.starts_with(prefix))).collect()
}

/// The etcd member that leads, as `ps` says: exactly one of the running members.
pub fn ps_leader(project: &str) -> String {
    let all = ps(project);
    let etcd = ps_rows(&all, "etcd-");
    let leaders: Vec<&str> =
        etcd.iter().filter(|row| row["role"] == "leader").map(|row| row["member"].as_str().unwrap()).collect();
    assert_eq!(leaders.len(), 1, "exactly one leader: {etcd:?}");
    for row in etcd.iter().filter(|row| row["state"] == "running") {
        assert!(row["role"] == "leader" || row["role"] == "follower", "{row}");
    }
    leaders[0].to_owned()
}
