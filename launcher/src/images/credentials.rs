//! Credentials for an image registry, from the usual Docker configuration,
//! as the docker CLI finds them: `$DOCKER_CONFIG/config.json` (or
//! `~/.docker/config.json`), where `credHelpers` names a helper for a
//! registry, `credsStore` one for all, and `auths` holds the rest
//! (`docker login`).
//!
//! A helper is the program `docker-credential-<name>`, asked with `get` and
//! the registry on stdin, which answers `{"Username", "Secret"}`. What is
//! found never goes to a log or an error message.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

/// Where `docker login` stores Docker Hub's credentials.
const DOCKER_HUB: &str = "https://index.docker.io/v1/";

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("failed to read the Docker configuration {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the Docker configuration {path} is not valid JSON: {reason}")]
    Parse { path: String, reason: String },
    #[error("the credential helper docker-credential-{helper} failed for {registry}: {reason}")]
    Helper { helper: String, registry: String, reason: String },
}

/// The parts of config.json that say where credentials are. No `Debug`:
/// `auths` holds secrets.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Config {
    #[serde(default)]
    auths: HashMap<String, Auth>,
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
}

/// An `auths` entry. No `Debug`: it holds secrets.
#[derive(Default, Deserialize)]
struct Auth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// A helper's answer. No `Debug`: it holds a secret.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// The registry an image reference names: its first path component when
/// that looks like a host (`ghcr.io`, `localhost:5000`), else Docker Hub.
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => DOCKER_HUB,
    }
}

/// Whether `image` names its registry, rather than meaning Docker Hub.
pub fn names_registry(image: &str) -> bool {
    registry_of(image) != DOCKER_HUB
}

/// The credentials for the registry of `image`, if the configuration has any.
pub async fn for_image(image: &str) -> Result<Option<DockerCredentials>, CredentialsError> {
    let Some(path) = config_path() else { return Ok(None) };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CredentialsError::Read { path: path.display().to_string(), source }),
    };
    // serde_json's messages may quote a value, which here may be a secret: say only where it failed.
    let config: Config = serde_json::from_str(&text).map_err(|error| CredentialsError::Parse {
        path: path.display().to_string(),
        reason: format!("{:?} error at line {}, column {}", error.classify(), error.line(), error.column()),
    })?;
    let registry = registry_of(image);
    match config.cred_helpers.get(registry).or(config.creds_store.as_ref()) {
        Some(helper) => ask_helper(helper, registry).await,
        None => Ok(from_auths(&config.auths, registry)),
    }
}

fn config_path() -> Option<PathBuf> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker")))?;
    Some(dir.join("config.json"))
}

/// The `auths` entry of `registry`, under its name or its URL.
fn from_auths(auths: &HashMap<String, Auth>, registry: &str) -> Option<DockerCredentials> {
    let entry = auths.get(registry).or_else(|| {
        auths.iter().find_map(|(key, auth)| {
            let host = key.trim_start_matches("https://").trim_start_matches("http://");
            (host.split('/').next() == Some(registry)).then_some(auth)
        })
    })?;
    // `auth` is base64 of `user:password`, as `docker login` writes it.
    let decoded = entry.auth.as_deref().and_then(|auth| base64::engine::general_purpose::STANDARD.decode(auth).ok());
    let pair = decoded.and_then(|bytes| String::from_utf8(bytes).ok());
    let (username, password) = match pair.as_deref().and_then(|p| p.split_once(':')) {
        Some((user, password)) => (Some(user.to_owned()), Some(password.to_owned())),
        None => (entry.username.clone(), entry.password.clone()),
    };
    Some(DockerCredentials {
        username,
        password,
        identitytoken: entry.identitytoken.clone(),
        serveraddress: Some(registry.to_owned()),
        ..Default::default()
    })
}

async fn ask_helper(helper: &str, registry: &str) -> Result<Option<DockerCredentials>, CredentialsError> {
    let failed = |reason: String| CredentialsError::Helper { helper: helper.into(), registry: registry.into(), reason };
    let mut child = tokio::process::Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| failed(error.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(registry.as_bytes()).await.map_err(|error| failed(error.to_string()))?;
    }
    let output = child.wait_with_output().await.map_err(|error| failed(error.to_string()))?;
    if !output.status.success() {
        // Helpers say "credentials not found in native keychain" when there are none.
        let said = String::from_utf8_lossy(&output.stdout).to_lowercase();
        if said.contains("not found") {
            return Ok(None);
        }
        return Err(failed(format!("it exited with {}", output.status)));
    }
    let answer: HelperAnswer =
        serde_json::from_slice(&output.stdout).map_err(|_| failed("its answer is not the JSON expected".into()))?;
    // A helper answers an identity token with the user name `<token>`.
    let credentials = if answer.username == "<token>" {
        DockerCredentials { identitytoken: Some(answer.secret), ..Default::default() }
    } else {
        DockerCredentials { username: Some(answer.username), password: Some(answer.secret), ..Default::default() }
    };
    Ok(Some(DockerCredentials { serveraddress: Some(registry.to_owned()), ..credentials }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_is_the_first_component_when_it_is_a_host() {
        assert_eq!(registry_of("ghcr.io/me/hit6/node:0.1.0"), "ghcr.io");
        assert_eq!(registry_of("localhost:5000/hit6/node"), "localhost:5000");
        assert_eq!(registry_of("localhost/hit6/node"), "localhost");
        assert_eq!(registry_of("me/hit6-node:0.1.0"), DOCKER_HUB);
        assert_eq!(registry_of("node"), DOCKER_HUB);
    }

    #[test]
    fn login_entries_are_found_by_host_or_url_and_decoded() {
        let config: Config = serde_json::from_str(
            r#"{"auths": {
                "ghcr.io": {"auth": "bWU6czNjcmV0"},
                "https://index.docker.io/v1/": {"auth": "aHViOnB3"},
                "https://registry.example:5000/v2/": {"identitytoken": "tok"}
            }}"#,
        )
        .unwrap();
        let ghcr = from_auths(&config.auths, "ghcr.io").unwrap();
        assert_eq!((ghcr.username.as_deref(), ghcr.password.as_deref()), (Some("me"), Some("s3cret")));
        let hub = from_auths(&config.auths, DOCKER_HUB).unwrap();
        assert_eq!(hub.username.as_deref(), Some("hub"));
        let token = from_auths(&config.auths, "registry.example:5000").unwrap();
        assert_eq!(token.identitytoken.as_deref(), Some("tok"));
        assert!(from_auths(&config.auths, "quay.io").is_none());
    }

    #[tokio::test]
    async fn a_missing_helper_is_an_error_that_names_it_and_not_a_secret() {
        let error = ask_helper("hit6-test-no-such-helper", "ghcr.io").await.err().unwrap();
        let text = error.to_string();
        assert!(text.contains("docker-credential-hit6-test-no-such-helper failed for ghcr.io"), "{text}");
    }
}
