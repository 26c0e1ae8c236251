//! The registry and node binaries, built by cargo from the workspace:
//! static for the images, native for `up --runtime local`.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use super::service::Service;
use crate::ui;

/// Flags that link the C runtime statically (static glibc on -gnu targets).
pub(crate) const STATIC_RUSTFLAGS: &str = "-C target-feature=+crt-static";

/// How much of a failed cargo build's output an error shows.
const CARGO_TAIL_LINES: usize = 25;

/// Which binaries [`build_binaries`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryKind {
    /// Statically linked for the host triple, to run `FROM scratch`.
    Static,
    /// A plain release build, to run on this machine.
    Native,
}

/// What can fail in building the binaries.
#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
    #[error(
        "cannot find the workspace sources to build from: run this in a checkout of the workspace (a directory \
         with a Cargo.toml holding [workspace], and registry/ and node/)"
    )]
    NoWorkspace,
    #[error(
        "cannot find the registry and node binaries: there is no workspace to build them in, and {dir} (where \
         the launcher is) does not hold both; run this in a checkout of the workspace"
    )]
    NoBinaries { dir: String },
    #[error("failed to run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}); its last lines:\n{tail}")]
    CargoFailed { command: String, status: ExitStatus, tail: String },
    #[error("`{command}` did not report the {binary} binary it built")]
    NoArtifact { command: String, binary: &'static str },
    #[error("`rustc -vV` did not say the host target (no `host:` line in {output:?})")]
    HostTriple { output: String },
}

/// Builds the registry and node binaries and returns the directory holding
/// both. Without a workspace, native binaries are looked for next to the
/// launcher itself.
pub async fn build_binaries(kind: BinaryKind, progress: &MultiProgress) -> anyhow::Result<PathBuf> {
    if let Some(root) = workspace_root() {
        return Ok(cargo_build(&root, kind, progress).await?);
    }
    match kind {
        BinaryKind::Static => Err(BinaryError::NoWorkspace.into()),
        BinaryKind::Native => {
            let exe = std::env::current_exe().ok();
            let dir = exe.as_deref().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
            if Service::ALL.iter().all(|s| dir.join(s.name()).is_file()) {
                Ok(dir)
            } else {
                Err(BinaryError::NoBinaries { dir: dir.display().to_string() }.into())
            }
        }
    }
}

/// Runs cargo for the registry and node binaries, showing the crate being
/// compiled, and returns the directory it put them in.
pub(crate) async fn cargo_build(
    root: &Path,
    kind: BinaryKind,
    progress: &MultiProgress,
) -> Result<PathBuf, BinaryError> {
    let (mut command, shown) = cargo_command(root, kind).await?;
    let what = match kind {
        BinaryKind::Static => "static",
        BinaryKind::Native => "native",
    };
    let started = Instant::now();
    let bar = progress.add(ui::spinner(format!("cargo {what}")));
    ui::log_if_hidden(progress, &format!("building the {what} registry and node binaries: {shown}"));
    let spawned = |source| BinaryError::Spawn { command: shown.clone(), source };
    let mut child = command.spawn().map_err(spawned)?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (executables, tail) = tokio::join!(read_artifacts(stdout), read_status(stderr, &bar));
    let status = child.wait().await.map_err(spawned)?;
    let dir = match status.success() {
        true => binaries_dir(&executables, &shown),
        false => Err(BinaryError::CargoFailed { command: shown, status, tail: Vec::from(tail).join("\n") }),
    };
    let Ok(dir) = dir else {
        bar.abandon_with_message("failed");
        return dir;
    };
    let took = ui::elapsed(started);
    ui::log_if_hidden(progress, &format!("built the {what} registry and node binaries in {took}"));
    bar.finish_with_message(format!("built registry and node in {took}"));
    Ok(dir)
}

/// The cargo command for `kind`, and how to show it to a person.
async fn cargo_command(root: &Path, kind: BinaryKind) -> Result<(Command, String), BinaryError> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args: Vec<String> = ["build", "--release"].map(String::from).to_vec();
    let mut command = Command::new(&cargo);
    let mut shown = String::new();
    if kind == BinaryKind::Static {
        args.extend(["--locked".into(), "--target".into(), host_triple(root).await?]);
        // Added to the user's own; CARGO_ENCODED_RUSTFLAGS (removed) would win over both.
        let user_flags = std::env::var("RUSTFLAGS").unwrap_or_default();
        let flags = format!("{user_flags} {STATIC_RUSTFLAGS}").trim().to_owned();
        shown = format!("RUSTFLAGS='{flags}' ");
        command.env("RUSTFLAGS", flags).env_remove("CARGO_ENCODED_RUSTFLAGS");
    }
    args.extend(["-p", "registry", "-p", "node", "--message-format=json-render-diagnostics"].map(String::from));
    shown.push_str(&format!("{cargo} {}", args.join(" ")));
    command.current_dir(root).args(&args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.kill_on_drop(true);
    Ok((command, shown))
}

/// The executables cargo reports building, by target name.
async fn read_artifacts(stdout: impl AsyncRead + Unpin) -> HashMap<String, PathBuf> {
    let mut executables = HashMap::new();
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        if let (Some(name), Some(path)) = (message["target"]["name"].as_str(), message["executable"].as_str()) {
            executables.insert(name.to_owned(), PathBuf::from(path));
        }
    }
    executables
}

/// Shows cargo's status lines on `bar`, and keeps the last lines for an error.
async fn read_status(stderr: impl AsyncRead + Unpin, bar: &ProgressBar) -> VecDeque<String> {
    let mut tail = VecDeque::with_capacity(CARGO_TAIL_LINES);
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let trimmed = line.trim();
        // What it compiles, or waits for (the build lock, downloads).
        if ["Compiling ", "Blocking ", "Downloading ", "Updating "].iter().any(|status| trimmed.starts_with(status)) {
            bar.set_message(trimmed.to_owned());
        }
        if tail.len() == CARGO_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    tail
}

/// The directory holding both binaries.
fn binaries_dir(executables: &HashMap<String, PathBuf>, command: &str) -> Result<PathBuf, BinaryError> {
    let mut dir = PathBuf::new();
    for service in Service::ALL {
        let Some(path) = executables.get(service.name()) else {
            return Err(BinaryError::NoArtifact { command: command.to_owned(), binary: service.name() });
        };
        dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    }
    Ok(dir)
}

/// The host's target triple, from `rustc -vV` output.
pub fn parse_host_triple(rustc_vv: &str) -> Option<&str> {
    rustc_vv.lines().find_map(|line| line.strip_prefix("host:")).map(str::trim).filter(|triple| !triple.is_empty())
}

/// The directory holding the workspace sources: the first ancestor of the
/// current directory that is the workspace root, else the one this launcher
/// was compiled from, if it is still there.
pub fn workspace_root() -> Option<PathBuf> {
    let from_cwd = std::env::current_dir()
        .ok()
        .and_then(|dir| dir.ancestors().find(|d| is_workspace_root(d)).map(Path::to_path_buf));
    from_cwd.or_else(|| {
        let compiled_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        is_workspace_root(&compiled_in).then(|| compiled_in.canonicalize().unwrap_or(compiled_in))
    })
}

fn is_workspace_root(dir: &Path) -> bool {
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
    manifest.lines().any(|line| line.trim() == "[workspace]")
        && dir.join("registry").is_dir()
        && dir.join("node").is_dir()
}

async fn host_triple(root: &Path) -> Result<String, BinaryError> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let command = format!("{rustc} -vV");
    let output = tokio::process::Command::new(&rustc)
        .arg("-vV")
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| BinaryError::Spawn { command: command.clone(), source })?;
    let text = String::from_utf8_lossy(&output.stdout);
    match parse_host_triple(&text) {
        Some(triple) if output.status.success() => Ok(triple.to_owned()),
        _ => Err(BinaryError::HostTriple { output: format!("{text}{}", String::from_utf8_lossy(&output.stderr)) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_host_triple() {
        let output = "rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\ncommit-hash: 5980\n\
                      host: x86_64-unknown-linux-gnu\nrelease: 1.95.0\nLLVM version: 22.1.2\n";
        assert_eq!(parse_host_triple(output), Some("x86_64-unknown-linux-gnu"));
        assert_eq!(parse_host_triple("host: aarch64-unknown-linux-gnu\r\n"), Some("aarch64-unknown-linux-gnu"));
        assert_eq!(parse_host_triple("rustc 1.95.0\nhost:\n"), None);
        assert_eq!(parse_host_triple("error: no such command"), None);
    }

    #[test]
    fn finds_the_workspace_it_was_compiled_in() {
        let root = workspace_root().expect("tests run inside the workspace");
        assert!(is_workspace_root(&root));
        assert!(!is_workspace_root(&root.join("launcher")));
    }
}
