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
