//! Building an image through the engine API: a tar context holding the
//! binary and the runtime stage of the image's Dockerfile, with no base image.
//!
//! The runtime stage of both images comes from one place,
//! [`runtime_dockerfile`]: `launcher build` sends it to the daemon with the
//! binary, and `docker/*.Dockerfile` repeat it after their Rust build stage
//! (a unit test keeps them equal).

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::BuildImageOptionsBuilder;
use bollard::Docker;
use futures::StreamExt;
use indicatif::MultiProgress;

use super::service::{image_size, ImageError, Service};
use crate::ui;

/// The port the registry answers the group lab's internal clients on,
/// inside its container, with `up --assigner-port` (the lab's assigner's).
pub const ASSIGNER_CONTAINER_PORT: u16 = 8888;

/// The port the services listen on inside their containers.
pub const CONTAINER_PORT: u16 = 8080;

/// The port the services serve `/metrics` and `/health` on inside their
/// containers: the images turn the HTTP listener on, for their HEALTHCHECK
/// and for `launcher stats`, and publish it nowhere.
pub const HTTP_CONTAINER_PORT: u16 = 8081;

/// How often the engine runs an image's health check: every 10 s (each is a
/// process the engine starts in the container, so a thousand nodes cost it
/// a hundred a second), unhealthy after three failures in a row, none
/// counted in the first 30 s. (`--start-interval`, to check more often
/// while starting, needs Docker 25.)
const HEALTHCHECK: &str = "--interval=10s --timeout=3s --start-period=30s --retries=3";

/// Where the images say their sources are (`org.opencontainers.image.source`).
pub const SOURCE_URL: &str = "https://github.com/hit6-mesh/hit6-mesh";

/// The uid:gid the services run as: `nobody`, which needs no /etc/passwd.
pub const USER: &str = "65534:65534";

/// Label on images built by `launcher build` (not on `docker build` ones).
pub const LABEL_BUILT_BY: &str = "io.hit6.built-by";

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
         ENV {http_env}=0.0.0.0:{HTTP_CONTAINER_PORT}\n\
         USER {USER}\n\
         EXPOSE {CONTAINER_PORT} {HTTP_CONTAINER_PORT}\n\
         COPY {name} /{name}\n\
         HEALTHCHECK {HEALTHCHECK} CMD [\"/{name}\", \"health\"]\n\
         ENTRYPOINT [\"/{name}\"]\n",
        description = service.description(),
        version = env!("CARGO_PKG_VERSION"),
        license = env!("CARGO_PKG_LICENSE"),
        listen_env = service.listen_env(),
        http_env = service.http_env(),
    )
}

/// The build context of `service`'s image: its Dockerfile and its binary.
pub fn build_context(service: Service, binary: &[u8]) -> std::io::Result<Vec<u8>> {
    let dockerfile = runtime_dockerfile(service);
    tar(&[
        Entry::File { path: "Dockerfile".into(), mode: 0o644, data: dockerfile.as_bytes() },
        Entry::File { path: service.name().into(), mode: 0o755, data: binary },
    ])
}

/// One entry of a build context.
pub enum Entry<'a> {
    File { path: String, mode: u32, data: &'a [u8] },
    Dir { path: String, mode: u32 },
}

/// A build context: a tar of `entries`, dated 0, owned by root.
pub fn tar(entries: &[Entry<'_>]) -> std::io::Result<Vec<u8>> {
    let mut archive = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        match entry {
            Entry::File { path, mode, data } => {
                header.set_size(data.len() as u64);
                header.set_mode(*mode);
                header.set_cksum();
                archive.append_data(&mut header, path, *data)?;
            }
            Entry::Dir { path, mode } => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                header.set_mode(*mode);
                header.set_cksum();
                archive.append_data(&mut header, format!("{}/", path.trim_end_matches('/')), std::io::empty())?;
            }
        }
    }
    archive.into_inner()
}

/// Builds the image of `service` from its `binary`.
pub(crate) async fn build_service_image(
    docker: &Docker,
    service: Service,
    image: &str,
    binary: &Path,
    progress: &MultiProgress,
) -> Result<(), EngineError> {
    // A few MB, read once: not worth tokio's `fs` feature.
    let contents = std::fs::read(binary)
        .map_err(|source| EngineError::ReadBinary { path: binary.display().to_string(), source })?;
    let context =
        build_context(service, &contents).map_err(|source| EngineError::Context { image: image.to_owned(), source })?;
    build_image(docker, image, context, progress).await
}

/// Builds one image from a build context through the engine API, showing its steps.
pub(crate) async fn build_image(
    docker: &Docker,
    image: &str,
    context: Vec<u8>,
    progress: &MultiProgress,
) -> Result<(), EngineError> {
    let labels = HashMap::from([(LABEL_BUILT_BY, "launcher")]);
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(image)
        .labels(&labels)
        .rm(true)
        .forcerm(true)
        .build();

    let started = Instant::now();
    let bar = progress.add(ui::spinner(image.to_owned()));
    ui::log_if_hidden(progress, &format!("building the image {image}"));
    let failed = |message: String| {
        bar.abandon_with_message("failed");
        EngineError::BuildFailed { image: image.to_owned(), message }
    };
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(info) => info,
            Err(BollardError::DockerStreamError { error }) => return Err(failed(error)),
            Err(source) => {
                bar.abandon_with_message("failed");
                return Err(EngineError::Build { image: image.to_owned(), source });
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
    let done = format!("built ({}) in {}", ui::megabytes(size), ui::elapsed(started));
    ui::log_if_hidden(progress, &format!("{image}: {done}"));
    bar.finish_with_message(done);
    Ok(())
}

/// What can fail in building an image.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
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
    #[error(transparent)]
    Inspect(#[from] ImageError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    use crate::images::binaries::STATIC_RUSTFLAGS;

    const DOCKERFILES: [(Service, &str); 2] = [
        (Service::Registry, include_str!("../../../docker/registry.Dockerfile")),
        (Service::Node, include_str!("../../../docker/node.Dockerfile")),
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
            "EXPOSE 8080 8081\n",
            "ENV NODE_LISTEN=0.0.0.0:8080\n",
            "ENV NODE_HTTP_LISTEN=0.0.0.0:8081\n",
            "CMD [\"/node\", \"health\"]\n",
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
}
