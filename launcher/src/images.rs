//! The registry and node images: present, pulled, or built from the workspace.
//!
//! Each image is `FROM scratch` with one statically linked binary (static
//! glibc: `-C target-feature=+crt-static` with an explicit `--target`, so no
//! musl target is needed). The runtime stage of both images comes from one
//! place, [`runtime_dockerfile`]: `launcher build` sends it to the daemon with
//! the binary, and `docker/*.Dockerfile` repeat it after their Rust build
//! stage (a unit test keeps them equal).
//!
//! - [`ensure`]: used by `up`; present images are used, missing ones pulled,
//!   and built from the workspace when pulling fails.
//! - [`build`]: `launcher build`; static binaries with cargo, then one image
//!   build per service through the engine API (no base image, no BuildKit).
//! - [`build_binaries`]: the binaries alone, static or native (for `up --runtime local`).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bollard::errors::Error as BollardError;
use bollard::models::{CreateImageInfo, ProgressDetail};
use bollard::query_parameters::{BuildImageOptionsBuilder, CreateImageOptionsBuilder};
use bollard::Docker;
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::docker::CONTAINER_PORT;

/// The two images a project runs.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Images {
    /// Image of the registry.
    #[arg(id = "registry_image", long = "registry-image", env = "LAUNCHER_REGISTRY_IMAGE", default_value = concat!("hit6-mesh/registry:", env!("CARGO_PKG_VERSION")))]
    pub registry: String,
    /// Image of the nodes.
    #[arg(id = "node_image", long = "node-image", env = "LAUNCHER_NODE_IMAGE", default_value = concat!("hit6-mesh/node:", env!("CARGO_PKG_VERSION")))]
    pub node: String,
}

impl Images {
    /// The image reference of `service`.
    pub fn get(&self, service: Service) -> &str {
        match service {
            Service::Registry => &self.registry,
            Service::Node => &self.node,
        }
    }
}

/// Where the images say their sources are (`org.opencontainers.image.source`).
pub const SOURCE_URL: &str = "https://github.com/hit6-mesh/hit6-mesh";

/// The uid:gid the services run as: `nobody`, which needs no /etc/passwd.
pub const USER: &str = "65534:65534";

/// Label on images built by `launcher build` (not on `docker build` ones).
pub const LABEL_BUILT_BY: &str = "io.hit6.built-by";

/// Flags that link the C runtime statically (static glibc on -gnu targets).
const STATIC_RUSTFLAGS: &str = "-C target-feature=+crt-static";

/// How much of a failed cargo build's output an error shows.
const CARGO_TAIL_LINES: usize = 25;

/// A program shipped as an image: its binary, image and listening address
/// all carry its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Registry,
    Node,
}

impl Service {
    pub const ALL: [Service; 2] = [Service::Registry, Service::Node];

    /// The name of the package, the binary and (by default) the image.
    pub fn name(self) -> &'static str {
        match self {
            Service::Registry => "registry",
            Service::Node => "node",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Service::Registry => "HIT6 contacts registry",
            Service::Node => "HIT6 greeting node",
        }
    }

    /// The variable that sets the address the program listens on.
    fn listen_env(self) -> &'static str {
        match self {
            Service::Registry => "REGISTRY_LISTEN",
            Service::Node => "NODE_LISTEN",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("failed to inspect the image {image}")]
    Inspect {
        image: String,
        #[source]
        source: BollardError,
    },
    #[error("failed to pull the image {image}")]
    Pull {
        image: String,
        #[source]
        source: BollardError,
    },
    #[error(
        "the image {image} is not present and pulling it failed ({reason}); build it in a checkout of the \
         workspace with `launcher build --{service}-image {image}`, or with `docker build -f \
         docker/{service}.Dockerfile -t {image} .` from the workspace root"
    )]
    Missing { image: String, service: &'static str, reason: String },
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
    CargoFailed { command: String, status: std::process::ExitStatus, tail: String },
    #[error("`{command}` did not report the {binary} binary it built")]
    NoArtifact { command: String, binary: &'static str },
    #[error("`rustc -vV` did not say the host target (no `host:` line in {output:?})")]
    HostTriple { output: String },
    #[error("failed to read the binary {path}")]
    ReadBinary {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to make the build context of {image}")]
    Context {
        image: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to build the image {image}")]
    Build {
        image: String,
        #[source]
        source: BollardError,
    },
    #[error("building the image {image} failed: {message}")]
    BuildFailed { image: String, message: String },
}

/// Which binaries [`build_binaries`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryKind {
    /// Statically linked for the host triple, to run `FROM scratch`.
    Static,
    /// A plain release build, to run on this machine.
    Native,
}

/// Makes sure both images exist: present ones are used, missing ones are
/// pulled, and if pulling fails and the workspace sources are at hand,
/// built locally.
pub async fn ensure(docker: &Docker, images: &Images, progress: &MultiProgress) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    for service in Service::ALL {
        let image = images.get(service);
        if image_size(docker, image).await?.is_some() {
            continue;
        }
        match pull(docker, image, progress).await {
            Ok(()) if image_size(docker, image).await?.is_some() => {}
            Ok(()) => missing.push((service, "the pull ended but the image is still not there".to_owned())),
            // The message says the pull failed already: keep only why.
            Err(ImageError::Pull { source, .. }) => missing.push((service, error_chain(&source))),
            Err(error) => missing.push((service, error_chain(&error))),
        }
    }
    let Some((first, reason)) = missing.first() else { return Ok(()) };
    let Some(root) = workspace_root() else {
        let image = images.get(*first).to_owned();
        return Err(ImageError::Missing { image, service: first.name(), reason: reason.clone() }.into());
    };
    for (service, reason) in &missing {
        log(
            progress,
            &format!(
                "{} is not present and pulling it failed ({reason}); building it from the workspace at {}",
                images.get(*service),
                root.display()
            ),
        );
    }
    let services: Vec<Service> = missing.iter().map(|(service, _)| *service).collect();
    build_services(docker, images, &services, &root, progress).await?;
    Ok(())
}

/// Builds both images from the workspace sources, with no base image.
pub async fn build(docker: &Docker, images: &Images, progress: &MultiProgress) -> anyhow::Result<()> {
    let root = workspace_root().ok_or(ImageError::NoWorkspace)?;
    build_services(docker, images, &Service::ALL, &root, progress).await?;
    Ok(())
}

/// Builds the registry and node binaries and returns the directory holding
/// both. Without a workspace, native binaries are looked for next to the
/// launcher itself.
pub async fn build_binaries(kind: BinaryKind, progress: &MultiProgress) -> anyhow::Result<PathBuf> {
    if let Some(root) = workspace_root() {
        return Ok(cargo_build(&root, kind, progress).await?);
    }
    match kind {
        BinaryKind::Static => Err(ImageError::NoWorkspace.into()),
        BinaryKind::Native => {
            let exe = std::env::current_exe().ok();
            let dir = exe.as_deref().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
            if Service::ALL.iter().all(|s| dir.join(s.name()).is_file()) {
                Ok(dir)
            } else {
                Err(ImageError::NoBinaries { dir: dir.display().to_string() }.into())
            }
        }
    }
}

/// The size in bytes of `image`, or `None` when it isn't present.
pub async fn image_size(docker: &Docker, image: &str) -> Result<Option<u64>, ImageError> {
    match docker.inspect_image(image).await {
        Ok(inspect) => Ok(Some(inspect.size.unwrap_or(0).max(0) as u64)),
        Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
        Err(source) => Err(ImageError::Inspect { image: image.to_owned(), source }),
    }
}

/// The image's runtime stage: everything after the build, from `FROM scratch`.
/// It expects the binary as `<name>` in the build context.
pub fn runtime_dockerfile(service: Service) -> String {
    let name = service.name();
    format!(
        "FROM scratch\n\
         LABEL org.opencontainers.image.title=\"{name}\" \\\n      \
               org.opencontainers.image.description=\"{description}\" \\\n      \
               org.opencontainers.image.version=\"{version}\" \\\n      \
               org.opencontainers.image.source=\"{SOURCE_URL}\" \\\n      \
               org.opencontainers.image.licenses=\"{license}\"\n\
         ENV {listen_env}=0.0.0.0:{CONTAINER_PORT}\n\
         USER {USER}\n\
         EXPOSE {CONTAINER_PORT}\n\
         COPY {name} /{name}\n\
         ENTRYPOINT [\"/{name}\"]\n",
        description = service.description(),
        version = env!("CARGO_PKG_VERSION"),
        license = env!("CARGO_PKG_LICENSE"),
        listen_env = service.listen_env(),
    )
}

/// The build context of `service`'s image: its Dockerfile and its binary.
pub fn build_context(service: Service, binary: &[u8]) -> std::io::Result<Vec<u8>> {
    let dockerfile = runtime_dockerfile(service);
    let mut archive = tar::Builder::new(Vec::new());
    for (path, mode, data) in [("Dockerfile", 0o644, dockerfile.as_bytes()), (service.name(), 0o755, binary)] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_cksum();
        archive.append_data(&mut header, path, data)?;
    }
    archive.into_inner()
}

/// The host's target triple, from `rustc -vV` output.
pub fn parse_host_triple(rustc_vv: &str) -> Option<&str> {
    rustc_vv.lines().find_map(|line| line.strip_prefix("host:")).map(str::trim).filter(|triple| !triple.is_empty())
}

/// A reference split into what the pull API wants: the name, and a tag or
/// digest (`latest` when there is neither).
pub fn split_reference(reference: &str) -> (&str, &str) {
    if let Some((name, digest)) = reference.split_once('@') {
        return (name, digest);
    }
    // A colon after the last slash starts the tag; one before it is a registry port.
    let last_part = reference.rfind('/').map_or(0, |slash| slash + 1);
    match reference[last_part..].rfind(':') {
        Some(colon) => (&reference[..last_part + colon], &reference[last_part + colon + 1..]),
        None => (reference, "latest"),
    }
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

async fn build_services(
    docker: &Docker,
    images: &Images,
    services: &[Service],
    root: &Path,
    progress: &MultiProgress,
) -> Result<(), ImageError> {
    let dir = cargo_build(root, BinaryKind::Static, progress).await?;
    for &service in services {
        build_image(docker, service, images.get(service), &dir.join(service.name()), progress).await?;
    }
    Ok(())
}

/// Runs cargo for the registry and node binaries, showing the crate being
/// compiled, and returns the directory it put them in.
async fn cargo_build(root: &Path, kind: BinaryKind, progress: &MultiProgress) -> Result<PathBuf, ImageError> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec!["build", "--release"];
    let triple;
    let mut rustflags = None;
    let mut shown = String::new();
    if kind == BinaryKind::Static {
        triple = host_triple(root).await?;
        args.extend(["--locked", "--target", &triple]);
        // Added to the user's own; CARGO_ENCODED_RUSTFLAGS (removed below) would win over both.
        let user_flags = std::env::var("RUSTFLAGS").unwrap_or_default();
        let flags = format!("{user_flags} {STATIC_RUSTFLAGS}").trim().to_owned();
        shown = format!("RUSTFLAGS='{flags}' ");
        rustflags = Some(flags);
    }
    args.extend(["-p", "registry", "-p", "node", "--message-format=json-render-diagnostics"]);
    shown.push_str(&format!("{cargo} {}", args.join(" ")));

    let mut command = tokio::process::Command::new(&cargo);
    command
        .current_dir(root)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(flags) = &rustflags {
        command.env("RUSTFLAGS", flags).env_remove("CARGO_ENCODED_RUSTFLAGS");
    }
    let what = match kind {
        BinaryKind::Static => "static",
        BinaryKind::Native => "native",
    };
    let started = Instant::now();
    let bar = progress.add(spinner(format!("cargo {what}")));
    log_if_hidden(progress, &format!("building the {what} registry and node binaries: {shown}"));
    let spawned = |source| ImageError::Spawn { command: shown.clone(), source };
    let mut child = command.spawn().map_err(spawned)?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");

    let read_artifacts = async {
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
    };
    let read_stderr = async {
        let mut tail = VecDeque::with_capacity(CARGO_TAIL_LINES);
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let trimmed = line.trim();
            // Cargo's status lines: what it compiles, or waits for (the build lock, downloads).
            if ["Compiling ", "Blocking ", "Downloading ", "Updating "].iter().any(|status| trimmed.starts_with(status))
            {
                bar.set_message(trimmed.to_owned());
            }
            if tail.len() == CARGO_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        tail
    };
    let (executables, tail) = tokio::join!(read_artifacts, read_stderr);
    let status = child.wait().await.map_err(spawned)?;
    if !status.success() {
        bar.abandon_with_message("failed");
        let tail = Vec::from(tail).join("\n");
        return Err(ImageError::CargoFailed { command: shown, status, tail });
    }
    let mut dir = None;
    for service in Service::ALL {
        let Some(path) = executables.get(service.name()) else {
            bar.abandon_with_message("failed");
            return Err(ImageError::NoArtifact { command: shown, binary: service.name() });
        };
        dir = path.parent().map(Path::to_path_buf);
    }
    let took = elapsed(started);
    log_if_hidden(progress, &format!("built the {what} registry and node binaries in {took}"));
    bar.finish_with_message(format!("built registry and node in {took}"));
    Ok(dir.unwrap_or_default())
}

async fn host_triple(root: &Path) -> Result<String, ImageError> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let command = format!("{rustc} -vV");
    let output = tokio::process::Command::new(&rustc)
        .arg("-vV")
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| ImageError::Spawn { command: command.clone(), source })?;
    let text = String::from_utf8_lossy(&output.stdout);
    match parse_host_triple(&text) {
        Some(triple) if output.status.success() => Ok(triple.to_owned()),
        _ => Err(ImageError::HostTriple { output: format!("{text}{}", String::from_utf8_lossy(&output.stderr)) }),
    }
}

/// Builds one image from `binary` through the engine API, showing its steps.
async fn build_image(
    docker: &Docker,
    service: Service,
    image: &str,
    binary: &Path,
    progress: &MultiProgress,
) -> Result<(), ImageError> {
    // A few MB, read once: not worth tokio's `fs` feature.
    let contents = std::fs::read(binary)
        .map_err(|source| ImageError::ReadBinary { path: binary.display().to_string(), source })?;
    let context =
        build_context(service, &contents).map_err(|source| ImageError::Context { image: image.to_owned(), source })?;
    let labels = HashMap::from([(LABEL_BUILT_BY, "launcher")]);
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(image)
        .labels(&labels)
        .rm(true)
        .forcerm(true)
        .build();

    let started = Instant::now();
    let bar = progress.add(spinner(image.to_owned()));
    log_if_hidden(progress, &format!("building the image {image}"));
    let failed = |message: String| {
        bar.abandon_with_message("failed");
        ImageError::BuildFailed { image: image.to_owned(), message }
    };
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(info) => info,
            Err(BollardError::DockerStreamError { error }) => return Err(failed(error)),
            Err(source) => {
                bar.abandon_with_message("failed");
                return Err(ImageError::Build { image: image.to_owned(), source });
            }
        };
        if let Some(detail) = info.error_detail {
            return Err(failed(detail.message.unwrap_or_else(|| "the daemon reported an error".into())));
        }
        if let Some(line) = info.stream.as_deref().map(str::trim).filter(|line| !line.is_empty()) {
            bar.set_message(line.to_owned());
        }
    }
    let size =
        image_size(docker, image).await?.ok_or_else(|| failed("the build ended but the image is not there".into()))?;
    let done = format!("built ({}) in {}", megabytes(size), elapsed(started));
    log_if_hidden(progress, &format!("{image}: {done}"));
    bar.finish_with_message(done);
    Ok(())
}

/// Pulls `image`, with one bar per layer.
async fn pull(docker: &Docker, image: &str, progress: &MultiProgress) -> Result<(), ImageError> {
    let (name, tag) = split_reference(image);
    let options = CreateImageOptionsBuilder::default().from_image(name).tag(tag).build();
    log_if_hidden(progress, &format!("pulling {image}"));
    let mut bars = PullProgress::new(progress, image);
    let mut stream = docker.create_image(Some(options), None, None);
    let failed = |source| ImageError::Pull { image: image.to_owned(), source };
    let result = loop {
        match stream.next().await {
            None => break Ok(()),
            Some(Ok(info)) => {
                if let Err(error) = bars.show(info) {
                    break Err(failed(BollardError::DockerStreamError { error }));
                }
            }
            Some(Err(source)) => break Err(failed(source)),
        }
    };
    bars.finish(result.is_ok());
    result
}

/// A pull's bars: a status line, and one bar per layer with a known size.
struct PullProgress<'a> {
    multi: &'a MultiProgress,
    status: ProgressBar,
    layers: HashMap<String, ProgressBar>,
    layer_style: ProgressStyle,
}

impl<'a> PullProgress<'a> {
    fn new(multi: &'a MultiProgress, image: &str) -> Self {
        let layer_style = ProgressStyle::with_template("  {prefix:.dim} [{bar:30}] {bytes}/{total_bytes} {wide_msg}")
            .expect("the template is valid")
            .progress_chars("=> ");
        let status = multi.add(spinner(image.to_owned()).with_message("pulling"));
        PullProgress { multi, status, layers: HashMap::new(), layer_style }
    }

    /// Shows one item of the pull stream, or returns the error it carries.
    fn show(&mut self, info: CreateImageInfo) -> Result<(), String> {
        if let Some(detail) = info.error_detail {
            return Err(detail.message.unwrap_or_else(|| "the daemon reported an error".into()));
        }
        let message = info.status.unwrap_or_default();
        match (info.id, info.progress_detail) {
            (Some(id), Some(ProgressDetail { current: Some(current), total: Some(total) })) if total > 0 => {
                let bar = self.layers.entry(id.clone()).or_insert_with(|| {
                    self.multi.add(ProgressBar::new(total as u64).with_style(self.layer_style.clone()).with_prefix(id))
                });
                bar.set_length(total as u64);
                bar.set_position(current.clamp(0, total) as u64);
                bar.set_message(message);
            }
            (Some(id), _) => match self.layers.get(&id) {
                Some(bar) if message.contains("complete") || message.contains("Already exists") => {
                    bar.set_position(bar.length().unwrap_or(0));
                    bar.set_message(message);
                }
                Some(bar) => bar.set_message(message),
                None => self.status.set_message(format!("{id}: {message}")),
            },
            (None, _) => self.status.set_message(message),
        }
        Ok(())
    }

    fn finish(&self, pulled: bool) {
        for bar in self.layers.values() {
            bar.finish_and_clear();
        }
        if pulled {
            self.status.finish_with_message("pulled");
        } else {
            self.status.finish_and_clear();
        }
    }
}

fn spinner(prefix: String) -> ProgressBar {
    let style = ProgressStyle::with_template("{spinner} {prefix:.bold} {elapsed:>4} {wide_msg}")
        .expect("the template is valid");
    let bar = ProgressBar::new_spinner().with_style(style).with_prefix(prefix);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Prints a line above the bars, or to stderr when the bars are hidden
/// (stderr is not a terminal), where `MultiProgress::println` prints nothing.
fn log(progress: &MultiProgress, line: &str) {
    if progress.is_hidden() {
        eprintln!("{line}");
    } else {
        let _ = progress.println(line);
    }
}

/// Progress for when no bars are drawn: one line per step.
fn log_if_hidden(progress: &MultiProgress, line: &str) {
    if progress.is_hidden() {
        eprintln!("{line}");
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn elapsed(since: Instant) -> String {
    let seconds = since.elapsed().as_secs_f64();
    if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else {
        format!("{}m{:02}s", seconds as u64 / 60, seconds as u64 % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const DOCKERFILES: [(Service, &str); 2] = [
        (Service::Registry, include_str!("../../docker/registry.Dockerfile")),
        (Service::Node, include_str!("../../docker/node.Dockerfile")),
    ];

    /// The runtime stage of a multi-stage Dockerfile, as `runtime_dockerfile`
    /// writes it: from the last `FROM scratch`, comments dropped, and
    /// `COPY --from=build <path>/<bin> /<bin>` as `COPY <bin> /<bin>`.
    fn runtime_stage(dockerfile: &str) -> String {
        let lines: Vec<&str> = dockerfile.lines().collect();
        let start =
            lines.iter().rposition(|l| l.trim() == "FROM scratch").expect("the Dockerfile has a FROM scratch stage");
        let mut stage = String::new();
        for line in &lines[start..] {
            if line.trim_start().starts_with('#') {
                continue;
            }
            match line.strip_prefix("COPY --from=build ").and_then(|rest| rest.split_once(' ')) {
                Some((source, target)) => {
                    let file = Path::new(source).file_name().expect("the source is a file").to_string_lossy();
                    stage.push_str(&format!("COPY {file} {target}\n"));
                }
                None => {
                    stage.push_str(line.trim_end());
                    stage.push('\n');
                }
            }
        }
        stage.trim_end().to_owned() + "\n"
    }

    #[test]
    fn dockerfiles_runtime_stage_matches_runtime_dockerfile() {
        for (service, dockerfile) in DOCKERFILES {
            assert_eq!(
                runtime_stage(dockerfile),
                runtime_dockerfile(service),
                "the runtime stage of docker/{}.Dockerfile differs from images::runtime_dockerfile",
                service.name()
            );
        }
    }

    #[test]
    fn dockerfiles_build_static_binaries_for_an_explicit_target() {
        for (service, dockerfile) in DOCKERFILES {
            assert!(dockerfile.contains(STATIC_RUSTFLAGS), "{dockerfile}");
            assert!(dockerfile.contains("--target \"$target\""), "{dockerfile}");
            assert!(dockerfile.contains("--locked"), "{dockerfile}");
            assert!(dockerfile.contains(&format!("-p {}", service.name())), "{dockerfile}");
            assert!(!dockerfile.contains("linux-musl"), "{dockerfile}");
        }
    }

    #[test]
    fn runtime_dockerfile_runs_as_nobody_on_8080() {
        let node = runtime_dockerfile(Service::Node);
        assert!(node.starts_with("FROM scratch\n"));
        for expected in [
            "COPY node /node\n",
            "ENTRYPOINT [\"/node\"]\n",
            "USER 65534:65534\n",
            "EXPOSE 8080\n",
            "ENV NODE_LISTEN=0.0.0.0:8080\n",
            "org.opencontainers.image.source=",
            "org.opencontainers.image.title=\"node\"",
            concat!("org.opencontainers.image.version=\"", env!("CARGO_PKG_VERSION"), "\""),
        ] {
            assert!(node.contains(expected), "missing {expected:?} in\n{node}");
        }
        assert!(!node.contains("LOG_FORMAT"));
        assert!(runtime_dockerfile(Service::Registry).contains("ENV REGISTRY_LISTEN=0.0.0.0:8080\n"));
    }

    #[test]
    fn build_context_holds_the_dockerfile_and_an_executable_binary() {
        let binary = b"\x7fELF not really".to_vec();
        let context = build_context(Service::Registry, &binary).unwrap();
        let mut archive = tar::Archive::new(&context[..]);
        let mut found = HashMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mode = entry.header().mode().unwrap();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            found.insert(path, (mode, data));
        }
        assert_eq!(found.len(), 2, "{:?}", found.keys());
        let (mode, dockerfile) = &found["Dockerfile"];
        assert_eq!(String::from_utf8_lossy(dockerfile), runtime_dockerfile(Service::Registry));
        assert_eq!(mode & 0o777, 0o644);
        let (mode, data) = &found["registry"];
        assert_eq!(data, &binary);
        assert_eq!(mode & 0o777, 0o755, "the binary must be executable by the non-root user");
    }

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
    fn splits_references_for_pulling() {
        assert_eq!(split_reference("hit6-mesh/node:0.1.0"), ("hit6-mesh/node", "0.1.0"));
        assert_eq!(split_reference("hit6-mesh/node"), ("hit6-mesh/node", "latest"));
        assert_eq!(split_reference("localhost:5000/node"), ("localhost:5000/node", "latest"));
        assert_eq!(split_reference("localhost:5000/node:dev"), ("localhost:5000/node", "dev"));
        assert_eq!(split_reference("node@sha256:abc"), ("node", "sha256:abc"));
    }

    #[test]
    fn pull_progress_shows_one_bar_per_layer_and_stops_at_errors() {
        let multi = MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden());
        let mut bars = PullProgress::new(&multi, "hit6-mesh/node:0.1.0");
        let item = |id: Option<&str>, status: &str, progress: Option<(i64, i64)>| CreateImageInfo {
            id: id.map(str::to_owned),
            status: Some(status.to_owned()),
            progress_detail: progress
                .map(|(current, total)| ProgressDetail { current: Some(current), total: Some(total) }),
            ..Default::default()
        };
        bars.show(item(None, "Pulling from hit6-mesh/node", None)).unwrap();
        bars.show(item(Some("a1"), "Pulling fs layer", None)).unwrap();
        bars.show(item(Some("a1"), "Downloading", Some((500, 2000)))).unwrap();
        bars.show(item(Some("b2"), "Downloading", Some((10, 100)))).unwrap();
        assert_eq!(bars.layers.len(), 2);
        assert_eq!((bars.layers["a1"].position(), bars.layers["a1"].length()), (500, Some(2000)));
        bars.show(item(Some("a1"), "Download complete", None)).unwrap();
        assert_eq!(bars.layers["a1"].position(), 2000);
        assert_eq!(bars.layers["a1"].message(), "Download complete");
        assert_eq!(bars.status.message(), "a1: Pulling fs layer");

        let error = CreateImageInfo {
            error_detail: Some(bollard::models::ErrorDetail { code: None, message: Some("manifest unknown".into()) }),
            ..Default::default()
        };
        assert_eq!(bars.show(error), Err("manifest unknown".to_owned()));
        bars.finish(false);
    }

    #[test]
    fn finds_the_workspace_it_was_compiled_in() {
        let root = workspace_root().expect("tests run inside the workspace");
        assert!(is_workspace_root(&root));
        assert!(!is_workspace_root(&root.join("launcher")));
    }

    #[test]
    fn missing_image_error_says_how_to_build_it() {
        let error = ImageError::Missing {
            image: "hit6-mesh/node:0.1.0".into(),
            service: "node",
            reason: "no such host".into(),
        };
        let text = error.to_string();
        assert!(text.contains("hit6-mesh/node:0.1.0 is not present and pulling it failed (no such host)"), "{text}");
        assert!(text.contains("launcher build --node-image hit6-mesh/node:0.1.0"), "{text}");
        assert!(text.contains("docker build -f docker/node.Dockerfile -t hit6-mesh/node:0.1.0 ."), "{text}");
    }
}
