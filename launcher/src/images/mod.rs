//! The registry and node images: present, pulled, or built from the workspace.
//!
//! Each image is `FROM scratch` with one statically linked binary (static
//! glibc: `-C target-feature=+crt-static` with an explicit `--target`, so no
//! musl target is needed).
//!
//! - [`ensure`]: used by `up`; present images are used, missing ones pulled,
//!   and built from the workspace when pulling fails.
//! - [`build`]: `launcher build`; static binaries with cargo, then one image
//!   build per service through the engine API (no base image, no BuildKit).
//!
//! # Layout
//! - [`binaries`]: the registry and node binaries built by cargo, static (for
//!   the images) or native (for `up --runtime local`).
//! - [`pull`]: pulling an image, with a progress bar per layer.
//! - [`credentials`]: an image registry's credentials, from the Docker
//!   configuration, for `launcher push` and swarm services.
//! - [`engine`]: building an image through the engine API from a binary and
//!   the runtime stage of its Dockerfile.

pub mod binaries;
pub mod credentials;
pub mod engine;
pub mod pull;

use std::path::Path;

use bollard::errors::Error as BollardError;
use bollard::Docker;
use indicatif::MultiProgress;
use wire::Chain;

use crate::ui;
use binaries::BinaryKind;

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

/// What can fail in making sure the images exist.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("failed to inspect the image {image}")]
    Inspect {
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
        match pull::pull(docker, image, progress).await {
            Ok(()) if image_size(docker, image).await?.is_some() => {}
            Ok(()) => missing.push((service, "the pull ended but the image is still not there".to_owned())),
            // The message says the pull failed already: keep only why.
            Err(error) => missing.push((service, Chain(&error.source).to_string())),
        }
    }
    let Some((first, reason)) = missing.first() else { return Ok(()) };
    let Some(root) = binaries::workspace_root() else {
        let image = images.get(*first).to_owned();
        return Err(ImageError::Missing { image, service: first.name(), reason: reason.clone() }.into());
    };
    for (service, reason) in &missing {
        ui::log(
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
    let root = binaries::workspace_root().ok_or(binaries::BinaryError::NoWorkspace)?;
    build_services(docker, images, &Service::ALL, &root, progress).await?;
    Ok(())
}

/// The size in bytes of `image`, or `None` when it isn't present.
pub async fn image_size(docker: &Docker, image: &str) -> Result<Option<u64>, ImageError> {
    match docker.inspect_image(image).await {
        Ok(inspect) => Ok(Some(inspect.size.unwrap_or(0).max(0) as u64)),
        Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
        Err(source) => Err(ImageError::Inspect { image: image.to_owned(), source }),
    }
}

async fn build_services(
    docker: &Docker,
    images: &Images,
    services: &[Service],
    root: &Path,
    progress: &MultiProgress,
) -> anyhow::Result<()> {
    let dir = binaries::cargo_build(root, BinaryKind::Static, progress).await?;
    for &service in services {
        engine::build_image(docker, service, images.get(service), &dir.join(service.name()), progress).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
