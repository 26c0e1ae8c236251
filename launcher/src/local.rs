//! `--runtime local`: the registry and nodes as processes on this machine,
//! for hosts without Docker and for large benchmarks.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use registry::client::RegistryAddr;
use registry::events::{Event, Record};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use wire::secure::{JoinToken, TOKEN_ENV};

use crate::stream::{self, Line};

/// Processes of a local mesh; they are killed if this is dropped.
pub struct Cluster {
    children: Vec<Child>,
    /// Handed to every process in its environment, never in argv.
    token: Option<Arc<JoinToken>>,
}

impl Cluster {
    pub fn new(token: Option<Arc<JoinToken>>) -> Cluster {
        Cluster { children: Vec::new(), token }
    }

    /// Starts a registry on a free loopback port.
    pub async fn start_registry(
        &mut self,
        bin: &Path,
        groups: u32,
        lease: Duration,
        lines: &mpsc::Sender<Line>,
    ) -> anyhow::Result<RegistryAddr> {
        let lease = humantime::format_duration(lease).to_string();
        let args =
            ["--listen".into(), "127.0.0.1:0".into(), "--groups".into(), groups.to_string(), "--ttl".into(), lease];
        let mut child = spawn(&bin.join("registry"), &args, self.token.as_deref())?;
        let stdout = child.stdout.take().expect("stdout is piped");
        self.children.push(child);
        // Its first event says which port it got.
        let mut reader = BufReader::new(stdout).lines();
        while let Some(text) = reader.next_line().await? {
            let record = Record::parse(&text);
            let _ = lines.send(Line { source: "registry".into(), text }).await;
            if let Some(record) = record.filter(|r| r.event == Event::Listening) {
                let addr = record.socket_addr().context("the registry's `listening` event has no address")?;
                stream::follow_reader(reader.into_inner(), "registry".into(), lines.clone());
                return Ok(addr.into());
            }
        }
        anyhow::bail!("the registry exited before listening")
    }

    pub fn start_node(
        &mut self,
        bin: &Path,
        registry: &RegistryAddr,
        name: &str,
        lines: &mpsc::Sender<Line>,
    ) -> anyhow::Result<()> {
        let args = [
            registry.host.clone(),
            registry.port.to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--name".into(),
            name.into(),
        ];
        let mut child = spawn(&bin.join("node"), &args, self.token.as_deref())?;
        stream::follow_reader(child.stdout.take().expect("stdout is piped"), name.into(), lines.clone());
        self.children.push(child);
        Ok(())
    }

    /// Stops every process: SIGTERM, so nodes deregister, or SIGKILL with `force`.
    pub async fn stop(&mut self, force: bool) {
        let signal = if force { Signal::SIGKILL } else { Signal::SIGTERM };
        // Nodes first, so their deregistrations still find the registry.
        for child in self.children.iter().rev() {
            if let Some(pid) = child.id() {
                let _ = kill(Pid::from_raw(pid as i32), signal);
            }
        }
        for child in self.children.iter_mut().rev() {
            if tokio::time::timeout(Duration::from_secs(2), child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
        self.children.clear();
    }
}

fn spawn(binary: &Path, args: &[String], token: Option<&JoinToken>) -> anyhow::Result<Child> {
    let mut command = Command::new(binary);
    match token {
        Some(token) => command.env(TOKEN_ENV, token.reveal().as_str()),
        None => command.env_remove(TOKEN_ENV),
    };
    command
        .args(args)
        .env("LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("failed to start {}", binary.display()))
}
