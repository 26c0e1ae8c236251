//! `--runtime local`: the registry and nodes as processes on this machine,
//! for hosts without Docker and for large benchmarks. They live only as
//! long as the `up` that started them.

use std::path::{Path, PathBuf};
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

use wire::http::{ReadToken, READ_TOKEN_ENV};
use wire::secure::{JoinToken, TOKEN_ENV};

use super::cluster::{self, Cluster, EtcdAddr};
use super::member::Member;
use super::plan::{Plan, Started};
use crate::images::etcd::EtcdImageError;
use crate::stream::{self, Line};

/// Processes of a local mesh; they are killed if this is dropped.
pub struct Local {
    children: Vec<Child>,
    /// Handed to every process in its environment, never in argv.
    token: Option<Arc<JoinToken>>,
    /// The etcd members' data and logs, removed with them.
    scratch: Option<PathBuf>,
}

/// What a process is handed besides its arguments: secrets, and the key
/// its registry must prove.
#[derive(Default)]
struct Handed<'a> {
    token: Option<&'a JoinToken>,
    registry_secret: Option<&'a RegistrySecret>,
    http_token: Option<&'a ReadToken>,
    pin: Option<(&'static str, String)>,
    /// Other variables: a replica's store.
    env: Vec<(&'static str, String)>,
}

impl Local {
    /// Starts the plan's registry (unless it joins one) and nodes from the
    /// binaries in `bin`, on loopback; their lines go to `lines`.
    pub async fn start(plan: &Plan, bin: &Path, lines: &mpsc::Sender<Line>) -> anyhow::Result<(Local, Started)> {
        let mut local = Local { children: Vec::new(), token: plan.token.clone(), scratch: None };
        let started = local.start_all(plan, bin, lines).await;
        match started {
            Ok(started) => Ok((local, started)),
            Err(error) => {
                local.stop(true).await;
                Err(error)
            }
        }
    }

    async fn start_all(&mut self, plan: &Plan, bin: &Path, lines: &mpsc::Sender<Line>) -> anyhow::Result<Started> {
        let endpoints = match &plan.cluster {
            Some(cluster) => Some(self.start_etcd(cluster)?),
            None => None,
        };
        let mut registries = Vec::new();
        match &plan.registry {
            Some(addr) => registries.push(addr.clone()),
            None => {
                for member in plan.registry_members() {
                    registries.push(self.start_registry(bin, plan, member, endpoints.as_deref(), lines).await?);
                }
            }
        }
        for member in plan.node_members() {
            self.start_node(bin, &registries, member, plan.pin_env(), lines)?;
        }
        Ok(Started { host_ports: vec![None; plan.nodes], advertised: "their loopback address".into(), registries })
    }

    /// Starts the cluster's members on free loopback ports, each logging
    /// to a file beside its data in a scratch directory; returns the
    /// replicas' endpoints.
    fn start_etcd(&mut self, cluster: &Cluster) -> anyhow::Result<String> {
        let binary = cluster.binary().ok_or(EtcdImageError::NoBinary { path: "etcd".into() })?.clone();
        let scratch = std::env::temp_dir().join(format!("launcher-{}", cluster.token));
        std::fs::create_dir_all(&scratch).with_context(|| format!("failed to create {}", scratch.display()))?;
        self.scratch = Some(scratch.clone());
        let ports = free_ports(2 * cluster.size)?;
        let addrs: Vec<EtcdAddr> =
            ports.chunks(2).map(|pair| EtcdAddr { host: "127.0.0.1".into(), client: pair[0], peer: pair[1] }).collect();
        for (index, member) in cluster.members().enumerate() {
            let data = scratch.join(member.to_string());
            let log = std::fs::File::create(scratch.join(format!("{member}.log")))?;
            let args = cluster.args(index + 1, &addrs, "127.0.0.1", &data.to_string_lossy());
            let child = Command::new(&binary)
                .args(args)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("failed to start {}", binary.display()))?;
            self.children.push(child);
        }
        Ok(cluster::endpoints(&addrs))
    }

    /// Starts registry `member` on a free loopback port: a replica on the
    /// etcd cluster at `endpoints`, when given.
    async fn start_registry(
        &mut self,
        bin: &Path,
        plan: &Plan,
        member: Member,
        endpoints: Option<&str>,
        lines: &mpsc::Sender<Line>,
    ) -> anyhow::Result<RegistryAddr> {
        let lease = humantime::format_duration(plan.lease).to_string();
        let groups = plan.groups.to_string();
        let mut args = vec!["--listen".into(), "127.0.0.1:0".into(), "--groups".into(), groups, "--ttl".into(), lease];
        if plan.assigner_port.is_some() {
            // Every replica admits the lab's programs; the first answers its internal clients.
            args.push("--allow-original".into());
        }
        if let Some(port) = plan.assigner_of(member) {
            args.extend(["--assigner-listen".into(), format!("127.0.0.1:{port}")]);
        }
        if let Some(port) = plan.http_port_of(member) {
            args.extend(["--http-listen".into(), format!("127.0.0.1:{port}")]);
        }
        let store = endpoints
            .map(|endpoints| [("REGISTRY_STORE", "etcd".into()), ("REGISTRY_ETCD_ENDPOINTS", endpoints.into())]);
        let handed = Handed {
            token: self.token.as_deref(),
            registry_secret: plan.registry_secret.as_deref(),
            http_token: plan.http.as_ref().map(|http| &*http.token),
            env: store.into_iter().flatten().collect(),
            ..Handed::default()
        };
        let mut child = spawn(&bin.join("registry"), &args, handed)?;
        let stdout = child.stdout.take().expect("stdout is piped");
        self.children.push(child);
        // Its first event says which port it got.
        let mut reader = BufReader::new(stdout).lines();
        while let Some(text) = reader.next_line().await? {
            let record = Record::parse(&text);
            let _ = lines.send(Line { source: member.to_string(), text }).await;
            if let Some(record) = record.filter(|r| r.event == Event::Listening) {
                let addr = record.socket_addr().context("the registry's `listening` event has no address")?;
                stream::follow_reader(reader.into_inner(), member.to_string(), lines.clone());
                return Ok(addr.into());
            }
        }
        anyhow::bail!("the {member} exited before listening")
    }

    fn start_node(
        &mut self,
        bin: &Path,
        registries: &[RegistryAddr],
        member: Member,
        pin: Option<(&'static str, String)>,
        lines: &mpsc::Sender<Line>,
    ) -> anyhow::Result<()> {
        let name = member.to_string();
        let index = member.index().unwrap_or(0);
        let mut args = cluster::registry_args(registries, index);
        args.extend(["--listen".into(), "127.0.0.1:0".into(), "--name".into(), name.clone()]);
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
        if let Some(scratch) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(scratch);
        }
    }
}

/// `n` distinct loopback ports that were free a moment ago: all bound at once, then released.
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<Vec<_>>>()?;
    listeners.iter().map(|listener| Ok(listener.local_addr()?.port())).collect()
}

impl Drop for Local {
    fn drop(&mut self) {
        // The processes are killed on drop; their data goes with them.
        if let Some(scratch) = self.scratch.take() {
            let _ = std::fs::remove_dir_all(scratch);
        }
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
    match handed.http_token {
        Some(token) => command.env(READ_TOKEN_ENV, token.reveal().as_str()),
        None => command.env_remove(READ_TOKEN_ENV),
    };
    if let Some((var, key)) = handed.pin {
        command.env(var, key);
    }
    command.envs(handed.env);
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
