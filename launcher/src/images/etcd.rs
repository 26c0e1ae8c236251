//! The etcd image a project with registry replicas runs: one the engine
//! has or can pull (an official one, `--etcd-image`), or one built here,
//! `FROM scratch` like ours, from an etcd binary at hand (`--etcd-binary`,
//! `ETCD_BIN`, or `etcd` on PATH), tagged `hit6-mesh/etcd:<its version>`
//! and reused while it exists.
//!
//! A binary linked dynamically (Debian's is, to glibc) is shipped with its
//! ELF interpreter and the shared libraries it needs, each at the path the
//! dynamic loader looks for it, as `ldd` names them; the data lives below
//! `/data`, owned by the user etcd runs as. Every etcd image keeps its
//! binary at [`ETCD_PATH`] and names it in `CMD`, as the official ones do,
//! so a container's command is the same for all.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use bollard::Docker;
use indicatif::MultiProgress;

use super::engine::{self, Entry, USER};
use super::{image_size, pull};
use crate::ui;

/// Where an etcd image keeps its binary: the official images and ours.
pub const ETCD_PATH: &str = "/usr/local/bin/etcd";
/// An etcd member's client and peer ports.
pub const CLIENT_PORT: u16 = 2379;
pub const PEER_PORT: u16 = 2380;

/// The repository of the etcd images built here; the tag is the etcd version.
pub const BUILT_REPOSITORY: &str = "hit6-mesh/etcd";
/// The official image pulled when no etcd binary is at hand.
pub const OFFICIAL: &str = "gcr.io/etcd-development/etcd:v3.5.17";

/// Where the etcd members' image comes from.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct EtcdArgs {
    /// With --registries: the etcd image to run, when the engine has it or
    /// can pull it (an official one: gcr.io/etcd-development/etcd:v3.5.17,
    /// quay.io/coreos/etcd:v3.5.17) [default: hit6-mesh/etcd:<version>,
    /// built from --etcd-binary; without a binary, the official image]
    #[arg(long, env = "LAUNCHER_ETCD_IMAGE", value_name = "IMAGE")]
    pub etcd_image: Option<String>,
    /// With --registries: the etcd binary (3.4 or later) to build the etcd
    /// image from, and that --runtime local runs.
    #[arg(long, env = "ETCD_BIN", default_value = "etcd", value_name = "PATH")]
    pub etcd_binary: PathBuf,
}

/// An etcd binary at hand, and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdBinary {
    pub path: PathBuf,
    pub version: String,
}

/// The image the members run, and the binary it is built from when the
/// engine lacks it (also what local processes run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSource {
    pub image: String,
    pub binary: Option<EtcdBinary>,
}

/// What can fail in finding or making the etcd image.
#[derive(Debug, thiserror::Error)]
pub enum EtcdImageError {
    #[error("no etcd binary at {path}: name one with --etcd-binary PATH (or ETCD_BIN), or an image with --etcd-image")]
    NoBinary { path: String },
    #[error("failed to run `{command}`")]
    Run {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` did not say an etcd version: {output:?}")]
    NoVersion { command: String, output: String },
    #[error("`ldd {binary}` could not find the library {library}")]
    LibraryNotFound { binary: String, library: String },
    #[error("failed to read {path}, which the etcd image needs")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the etcd image {image} is not present and pulling it failed ({reason}): build one from an etcd binary with \
         --etcd-binary PATH (or ETCD_BIN; Debian's etcd-server package has one)"
    )]
    Missing { image: String, reason: String },
}

impl EtcdArgs {
    /// Where the image comes from: the one named, else one built from the
    /// binary at hand, else the official one. The binary, when there is
    /// one, is found and its version read either way.
    pub async fn source(&self) -> Result<EtcdSource, EtcdImageError> {
        let binary = match find_binary(&self.etcd_binary) {
            Some(path) => Some(EtcdBinary { version: version(&path).await?, path }),
            None => None,
        };
        let image = match (&self.etcd_image, &binary) {
            (Some(image), _) => image.clone(),
            (None, Some(binary)) => format!("{BUILT_REPOSITORY}:{}", binary.version),
            (None, None) => OFFICIAL.to_owned(),
        };
        Ok(EtcdSource { image, binary })
    }

    /// The binary, which local processes need.
    pub fn binary_error(&self) -> EtcdImageError {
        EtcdImageError::NoBinary { path: self.etcd_binary.display().to_string() }
    }
}

/// `path` when it names a file, or, for a bare name, that file on PATH.
fn find_binary(path: &Path) -> Option<PathBuf> {
    if path.components().count() > 1 || path.is_absolute() {
        return path.is_file().then(|| path.to_owned());
    }
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&dirs).map(|dir| dir.join(path)).find(|candidate| candidate.is_file())
}

/// The version `etcd --version` reports (`etcd Version: 3.4.23`).
async fn version(binary: &Path) -> Result<String, EtcdImageError> {
    let command = format!("{} --version", binary.display());
    let output = run(binary, &["--version"], &command).await?;
    parse_version(&output).map(str::to_owned).ok_or(EtcdImageError::NoVersion { command, output })
}

pub fn parse_version(output: &str) -> Option<&str> {
    let version = output.lines().find_map(|line| line.trim().strip_prefix("etcd Version:"))?.trim();
    let valid = !version.is_empty() && version.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
    valid.then_some(version)
}

async fn run(program: &Path, args: &[&str], command: &str) -> Result<String, EtcdImageError> {
    let output = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| EtcdImageError::Run { command: command.to_owned(), source })?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr))
}

/// The files a dynamically linked binary needs besides itself, as `ldd`
/// lists them: its ELF interpreter and each shared library, by the path the
/// loader finds them at (the vDSO, which the kernel provides, has none).
/// None for a static binary.
pub fn libraries(ldd: &str, binary: &str) -> Result<Vec<PathBuf>, EtcdImageError> {
    let mut found = Vec::new();
    for line in ldd.lines().map(str::trim) {
        let path = match line.split_once("=>") {
            Some((library, target)) => {
                let target = target.trim();
                if target.starts_with("not found") {
                    let library = library.trim().to_owned();
                    return Err(EtcdImageError::LibraryNotFound { binary: binary.to_owned(), library });
                }
                target.split(" (").next().unwrap_or_default()
            }
            // The interpreter: `/lib64/ld-linux-x86-64.so.2 (0x...)`.
            None => line.split(" (").next().unwrap_or_default(),
        };
        if path.starts_with('/') && !found.iter().any(|known: &PathBuf| known == Path::new(path)) {
            found.push(PathBuf::from(path));
        }
    }
    Ok(found)
}

/// One file of the image: what to read, and where it goes in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    pub source: PathBuf,
    pub target: String,
    pub mode: u32,
}

/// The image's files: the binary at [`ETCD_PATH`], then its libraries at
/// their own paths (their contents: a symlink is followed).
pub fn image_files(binary: &Path, libraries: &[PathBuf]) -> Vec<ImageFile> {
    let binary = ImageFile { source: binary.to_owned(), target: ETCD_PATH.to_owned(), mode: 0o755 };
    let libraries = libraries.iter().map(|library| ImageFile {
        source: library.clone(),
        target: library.display().to_string(),
        mode: 0o755,
    });
    std::iter::once(binary).chain(libraries).collect()
}

/// The Dockerfile of the built image: its files under `rootfs/`, an empty
/// `data/` for the data, owned by the user it runs as.
pub fn dockerfile(version: &str) -> String {
    format!(
        "FROM scratch\n\
         LABEL org.opencontainers.image.title=\"etcd\" \\\n      \
               org.opencontainers.image.description=\"etcd for the HIT6 registry's replicas, from a local binary\" \\\n      \
               org.opencontainers.image.version=\"{version}\"\n\
         COPY rootfs/ /\n\
         COPY --chown={USER} data/ /data/\n\
         USER {USER}\n\
         EXPOSE {CLIENT_PORT} {PEER_PORT}\n\
         CMD [\"{ETCD_PATH}\"]\n"
    )
}

/// The build context: the Dockerfile, the files, and the data directory.
pub fn build_context(version: &str, files: &[(ImageFile, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    let dockerfile = dockerfile(version);
    let mut entries = vec![Entry::File { path: "Dockerfile".into(), mode: 0o644, data: dockerfile.as_bytes() }];
    for (file, data) in files {
        entries.push(Entry::File { path: format!("rootfs{}", file.target), mode: file.mode, data });
    }
    entries.push(Entry::Dir { path: "data".into(), mode: 0o700 });
    engine::tar(&entries)
}

/// Makes sure the etcd image exists: present, it is used; missing, it is
/// built from the binary when there is one, else pulled.
pub async fn ensure(docker: &Docker, source: &EtcdSource, progress: &MultiProgress) -> anyhow::Result<()> {
    if image_size(docker, &source.image).await?.is_some() {
        return Ok(());
    }
    match &source.binary {
        Some(binary) if source.image.starts_with(BUILT_REPOSITORY) => {
            build(docker, &source.image, binary, progress).await
        }
        _ => match pull::pull(docker, &source.image, progress).await {
            Ok(()) if image_size(docker, &source.image).await?.is_some() => Ok(()),
            Ok(()) => Err(missing(source, "the pull ended but the image is still not there".into())),
            Err(error) => Err(missing(source, wire::Chain(&error.source).to_string())),
        },
    }
}

fn missing(source: &EtcdSource, reason: String) -> anyhow::Error {
    EtcdImageError::Missing { image: source.image.clone(), reason }.into()
}

/// Builds `image` from `binary` and what it needs, through the engine API.
async fn build(docker: &Docker, image: &str, binary: &EtcdBinary, progress: &MultiProgress) -> anyhow::Result<()> {
    let shown = binary.path.display().to_string();
    ui::log_if_hidden(progress, &format!("building the etcd image {image} from {shown}"));
    let ldd = run(Path::new("ldd"), &[&shown], &format!("ldd {shown}")).await?;
    let files = image_files(&binary.path, &libraries(&ldd, &shown)?);
    let mut contents = Vec::new();
    for file in files {
        let data = std::fs::read(&file.source)
            .map_err(|source| EtcdImageError::Read { path: file.source.display().to_string(), source })?;
        contents.push((file, data));
    }
    let context = build_context(&binary.version, &contents)
        .map_err(|source| engine::EngineError::Context { image: image.to_owned(), source })?;
    engine::build_image(docker, image, context, progress).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Read;

    const DEBIAN_LDD: &str = "\tlinux-vdso.so.1 (0x00007ffd5a3f2000)\n\
        \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f73e1681000)\n\
        \t/lib64/ld-linux-x86-64.so.2 (0x00007f73e1876000)\n";

    #[test]
    fn reads_the_version_etcd_reports() {
        let output = "etcd Version: 3.4.23\nGit SHA: Not provided\nGo Version: go1.19.8\n";
        assert_eq!(parse_version(output), Some("3.4.23"));
        assert_eq!(parse_version("etcd Version: 3.6.0-rc.1\n"), Some("3.6.0-rc.1"));
        assert_eq!(parse_version("etcd Version: 3.4 ; rm -rf /"), None);
        assert_eq!(parse_version("command not found"), None);
    }

    #[test]
    fn a_dynamic_binary_needs_its_interpreter_and_libraries() {
        let found = libraries(DEBIAN_LDD, "/usr/bin/etcd").unwrap();
        assert_eq!(found, [PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"), "/lib64/ld-linux-x86-64.so.2".into()]);
        assert!(libraries("\tnot a dynamic executable\n", "etcd").unwrap().is_empty());
        assert!(libraries("\tstatically linked\n", "etcd").unwrap().is_empty());
        let error = libraries("\tlibfoo.so.1 => not found\n", "etcd").unwrap_err();
        assert!(error.to_string().contains("could not find the library libfoo.so.1"), "{error}");
    }

    #[test]
    fn the_image_holds_the_binary_its_libraries_and_a_data_dir_of_its_own() {
        let libraries = libraries(DEBIAN_LDD, "/usr/bin/etcd").unwrap();
        let files = image_files(Path::new("/usr/bin/etcd"), &libraries);
        let targets: Vec<&str> = files.iter().map(|f| f.target.as_str()).collect();
        assert_eq!(targets, ["/usr/local/bin/etcd", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]);
        assert_eq!(files[0].source, Path::new("/usr/bin/etcd"));

        let contents: Vec<(ImageFile, Vec<u8>)> =
            files.into_iter().map(|file| (file.clone(), file.target.into_bytes())).collect();
        let context = build_context("3.4.23", &contents).unwrap();
        let mut archive = tar::Archive::new(&context[..]);
        let mut found = HashMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let (mode, kind) = (entry.header().mode().unwrap(), entry.header().entry_type());
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            found.insert(path, (mode & 0o777, kind.is_dir(), data));
        }
        let mut paths: Vec<&String> = found.keys().collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "Dockerfile",
                "data/",
                "rootfs/lib/x86_64-linux-gnu/libc.so.6",
                "rootfs/lib64/ld-linux-x86-64.so.2",
                "rootfs/usr/local/bin/etcd"
            ]
        );
        assert_eq!(found["rootfs/usr/local/bin/etcd"], (0o755, false, b"/usr/local/bin/etcd".to_vec()));
        assert_eq!(found["data/"].0, 0o700);
        assert!(found["data/"].1, "data is a directory");
        let dockerfile = String::from_utf8_lossy(&found["Dockerfile"].2).into_owned();
        assert!(dockerfile.starts_with("FROM scratch\n"), "{dockerfile}");
        for expected in [
            "COPY rootfs/ /\n",
            "COPY --chown=65534:65534 data/ /data/\n",
            "USER 65534:65534\n",
            "CMD [\"/usr/local/bin/etcd\"]\n",
            "org.opencontainers.image.version=\"3.4.23\"",
        ] {
            assert!(dockerfile.contains(expected), "missing {expected:?} in\n{dockerfile}");
        }
    }

    #[test]
    fn the_image_is_the_one_named_else_built_from_the_binary_else_the_official_one() {
        let missing = EtcdArgs { etcd_image: None, etcd_binary: "/nonexistent/etcd".into() };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let source = runtime.block_on(missing.source()).unwrap();
        assert_eq!(source, EtcdSource { image: OFFICIAL.into(), binary: None });
        let named = EtcdArgs { etcd_image: Some("quay.io/coreos/etcd:v3.5.17".into()), ..missing };
        assert_eq!(runtime.block_on(named.source()).unwrap().image, "quay.io/coreos/etcd:v3.5.17");
    }
}
