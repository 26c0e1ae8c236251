//! `--runtime local`: the registry and nodes as processes on this machine,
//! for hosts without Docker and for large benchmarks. They live only as
//! long as the `up` that started them.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use registry::client::RegistryAddr;
use registry::events::{Event, Record};
use registry::identity::{RegistrySecret, KEY_ENV};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use wire::secure::{JoinToken, TOKEN_ENV};

use super::member::Member;
use super::plan::{Plan, Started};
use crate::stream::{self, Line};

/// Processes of a local mesh; they are killed if this is dropped.
pub struct Local {
    children: Vec<Child>,
    /// Handed to every process in its environment, never in argv.
    token: Option<Arc<JoinToken>>,
}

/// What a process is handed besides its arguments: secrets, and the key
/// its registry must prove.
#[derive(Default)]
struct Handed<'a> {
    token: Option<&'a JoinToken>,
    registry_secret: Option<&'a RegistrySecret>,
    pin: Option<(&'static str, String)>,
}

impl Local {
    /// Starts the plan's registry (unless it joins one) and nodes from the
    /// binaries in `bin`, on loopback; their lines go to `lines`.
    pub async fn start(plan: &Plan, bin: &Path, lines: &mpsc::Sender<Line>) -> anyhow::Result<(Local, Started)> {
        let mut local = Local { children: Vec::new(), token: plan.token.clone() };
        let registry = match &plan.registry {
            Some(addr) => addr.clone(),
            None => local.start_registry(bin, plan, lines).await?,
        };
        for member in plan.node_members() {
            local.start_node(bin, &registry, member, plan.pin_env(), lines)?;
        }
        let started =
            Started { host_ports: vec![None; plan.nodes], advertised: "their loopback address".into(), registry };
        Ok((local, started))
    }

    /// Starts a registry on a free loopback port.
    async fn start_registry(
        &mut self,
        bin: &Path,
        plan: &Plan,
        lines: &mpsc::Sender<Line>,
    ) -> anyhow::Result<RegistryAddr> {
        let lease = humantime::format_duration(plan.lease).to_string();
        let groups = plan.groups.to_string();
        let args = ["--listen".into(), "127.0.0.1:0".into(), "--groups".into(), groups, "--ttl".into(), lease];
        let handed = Handed {
            token: self.token.as_deref(),
            registry_secret: plan.registry_secret.as_deref(),
            ..Handed::default()
        };
        let mut child = spawn(&bin.join("registry"), &args, handed)?;
        let stdout = child.stdout.take().expect("stdout is piped");
        self.children.push(child);
        // Its first event says which port it got.
        let mut reader = BufReader::new(stdout).lines();
        while let Some(text) = reader.next_line().await? {
            let record = Record::parse(&text);
            let _ = lines.send(Line { source: Member::Registry.to_string(), text }).await;
            if let Some(record) = record.filter(|r| r.event == Event::Listening) {
                let addr = record.socket_addr().context("the registry's `listening` event has no address")?;
                stream::follow_reader(reader.into_inner(), Member::Registry.to_string(), lines.clone());
                return Ok(addr.into());
            }
        }
        anyhow::bail!("the registry exited before listening")
    }

    fn start_node(
        &mut self,
        bin: &Path,
        registry: &RegistryAddr,
        member: Member,
        pin: Option<(&'static str, String)>,
        lines: &mpsc::Sender<Line>,
    ) -> anyhow::Result<()> {
        let name = member.to_string();
        let args = [
            registry.host.clone(),
            registry.port.to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--name".into(),
            name.clone(),
        ];
        let handed = Handed { token: self.token.as_deref(), pin, ..Handed::default() };
        let mut child = spawn(&bin.join("node"), &args, handed)?;
        stream::follow_reader(child.stdout.take().expect("stdout is piped"), name, lines.clone());
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

fn spawn(binary: &Path, args: &[String], handed: Handed<'_>) -> anyhow::Result<Child> {
    let mut command = Command::new(binary);
    match handed.token {
        Some(token) => command.env(TOKEN_ENV, token.reveal().as_str()),
        None => command.env_remove(TOKEN_ENV),
    };
    match handed.registry_secret {
        Some(secret) => command.env(KEY_ENV, secret.reveal().as_str()),
        None => command.env_remove(KEY_ENV),
    };
    if let Some((var, key)) = handed.pin {
        command.env(var, key);
    }
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
