//! The two images a project runs, the programs they ship, and whether an
//! image is present.

use bollard::errors::Error as BollardError;
use bollard::Docker;

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

    pub(super) fn description(self) -> &'static str {
        match self {
            Service::Registry => "HIT6 contacts registry",
            Service::Node => "HIT6 greeting node",
        }
    }

    /// The variable that sets the address of the program's HTTP listener
    /// (`/metrics`, `/health`), which its `health` subcommand reads too.
    pub(super) fn http_env(self) -> &'static str {
        match self {
            Service::Registry => registry::cli::HTTP_LISTEN_ENV,
            Service::Node => node::config::HTTP_LISTEN_ENV,
        }
    }

    /// The variable that sets the address the program listens on.
    pub(super) fn listen_env(self) -> &'static str {
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

/// The size in bytes of `image`, or `None` when it isn't present.
pub async fn image_size(docker: &Docker, image: &str) -> Result<Option<u64>, ImageError> {
    match docker.inspect_image(image).await {
        Ok(inspect) => Ok(Some(inspect.size.unwrap_or(0).max(0) as u64)),
        Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
        Err(source) => Err(ImageError::Inspect { image: image.to_owned(), source }),
    }
}
