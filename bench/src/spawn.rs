//! Child processes: a clean environment, a registry whose log is read only
//! for its address, and launchers in process groups of their own.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::CommandFactory;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use registry::events::{Event, Record};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use wire::secure::{Admission, Identity, JoinToken, Keys, TOKEN_ENV};

/// The environment variables the registry and node read their settings
/// from, as their command lines declare them, and `RUST_LOG`: removed from
/// every child so that the shell's cannot skew a run.
pub(crate) fn config_env() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let commands = [registry::cli::Cli::command(), node::config::Cli::command()];
        let mut names: Vec<String> = commands
            .iter()
            .flat_map(|command| command.get_arguments().filter_map(|arg| arg.get_env()))
            .map(|name| name.to_string_lossy().into_owned())
            .chain(["RUST_LOG".to_owned()])
            .collect();
        names.sort();
        names.dedup();
        names
    })
}

/// The run's join token, drawn once when `--token` is given.
static TOKEN: OnceLock<JoinToken> = OnceLock::new();

/// Draws the run's join token; every child and client uses it from then on.
pub(crate) fn use_token() {
    TOKEN.get_or_init(JoinToken::generate);
}

/// The keys of one bench client: a key of its own, and the run's token if any.
pub(crate) fn client_keys() -> Keys {
    let token = TOKEN.get().map(|token| JoinToken::parse(&token.reveal()).expect("a token parses back"));
    Keys::new(Identity::generate(), Admission::from_token(token))
}

/// How long a started registry may take to log `listening`.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn command(binary: &Path, args: &[String]) -> Command {
    let mut command = Command::new(binary);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    for key in config_env() {
        command.env_remove(key);
    }
    match TOKEN.get() {
        Some(token) => command.env(TOKEN_ENV, token.reveal().as_str()),
        None => command.env_remove(TOKEN_ENV),
    };
    command
}

/// Keeps up to 2 KiB of what a child writes to stderr.
pub(crate) fn collect_stderr(stream: impl AsyncRead + Unpin + Send + 'static) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut kept = Vec::new();
        let mut buf = [0u8; 4096];
        let mut stream = stream;
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            let room = 2048usize.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        String::from_utf8_lossy(&kept).trim().to_owned()
    })
}

/// A registry whose log is read only for its address, then counted and discarded.
pub(crate) struct LeanRegistry {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) stderr: JoinHandle<String>,
    /// Lines it logged since it said it listens.
    pub(crate) logged: Arc<AtomicUsize>,
}

impl LeanRegistry {
    pub(crate) async fn start(args: &[&str]) -> anyhow::Result<LeanRegistry> {
        LeanRegistry::start_with(args, &[]).await
    }

    /// The same, with `envs` added to its environment.
    pub(crate) async fn start_with(args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<LeanRegistry> {
        LeanRegistry::start_on("127.0.0.1:0", args, envs).await
    }

    /// The same, listening on `listen` (to start one again where it was).
    pub(crate) async fn start_on(listen: &str, args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<LeanRegistry> {
        let mut all: Vec<String> = vec!["--listen".into(), listen.into(), "--log-format".into(), "json".into()];
        all.extend(args.iter().map(|a| a.to_string()));
        let mut command = command(&::tests::binary("registry"), &all);
        command.envs(envs.iter().copied());
        LeanRegistry::spawn(command, |line| {
            let listening = Record::parse(line).filter(|r| r.event == Event::Listening)?;
            Some(listening.socket_addr().context("`listening` has no address"))
        })
        .await
    }

    /// Starts any registry: `listening` finds its address in the line that
    /// says it listens.
    pub(crate) async fn spawn(
        mut command: Command,
        listening: impl Fn(&str) -> Option<anyhow::Result<SocketAddr>>,
    ) -> anyhow::Result<LeanRegistry> {
        let mut child = command.spawn().context("failed to start the registry")?;
        let stderr = collect_stderr(child.stderr.take().expect("piped"));
        let mut lines = BufReader::new(child.stdout.take().expect("piped"));
        let started = timeout(START_TIMEOUT, async {
            let mut line = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    bail!("the registry exited before listening");
                }
                if let Some(addr) = listening(&line) {
                    return addr;
                }
            }
        })
        .await
        .context("the registry did not say it listens in time");
        let addr = match started {
            Ok(Ok(addr)) => addr,
            Ok(Err(error)) | Err(error) => {
                let _ = child.start_kill();
                return Err(error.context(text_of(stderr).await));
            }
        };
        // Keep draining its log so that it never blocks on a full pipe.
        let logged = Arc::new(AtomicUsize::new(0));
        let counted = logged.clone();
        tokio::spawn(async move {
            let mut sink = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = lines.read(&mut sink).await {
                let ends = sink[..n].iter().filter(|&&b| b == b'\n').count();
                counted.fetch_add(ends, Ordering::Relaxed);
            }
        });
        Ok(LeanRegistry { child, addr, stderr, logged })
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = timeout(Duration::from_secs(5), self.child.wait()).await;
        self.stderr.abort();
    }
}

/// Kills a process group when dropped: a launcher and every process it started.
pub(crate) struct GroupGuard(pub(crate) Pid);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let _ = killpg(self.0, Signal::SIGKILL);
    }
}

pub(crate) fn read_all(mut stream: impl AsyncRead + Unpin + Send + 'static) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text).await;
        text
    })
}

/// What `read_all` read, once the stream has ended (boundedly).
pub(crate) async fn text_of(reader: JoinHandle<String>) -> String {
    match timeout(Duration::from_secs(5), reader).await {
        Ok(Ok(text)) => text,
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(crate) fn the_settings_of_both_binaries_are_kept_from_children() {
        let names = config_env();
        for name in ["REGISTRY_TTL", "REGISTRY_LISTEN", "PUERTO_EXT", "IP_EXT", "NODE_LISTEN", "LOG_FORMAT", "RUST_LOG"]
        {
            assert!(names.iter().any(|n| n == name), "{name} is missing from {names:?}");
        }
    }
}
