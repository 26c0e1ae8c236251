//! The registry's own identity: the static key its sessions prove, the key
//! it signs group views with, and the key replicas seal what they write to
//! etcd with. Drawn afresh at each start unless given,
//! from a key file or the environment (never argv), so that a restarted
//! registry, or replicas sharing it, keep the keys nodes know and may pin.
//!
//! One 32-byte secret makes the three keys, each derived from it with
//! HKDF-SHA256 under a label of its own, so that no key serves two
//! algorithms (X25519 for Noise, Ed25519 for signatures, XChaCha20-Poly1305
//! for the replicas' log).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use hkdf::Hkdf;
use serde::Serialize;
use sha2::Sha256;
use wire::secure::{self, Identity, KeyFileError, PublicKey};
use zeroize::Zeroizing;

use crate::credential::Signer;

/// The variable that may hold the registry's secret, as a key file holds it.
pub const KEY_ENV: &str = "HIT6_REGISTRY_KEY";

const SESSION_LABEL: &[u8] = b"hit6 registry session key v1";
const SIGNING_LABEL: &[u8] = b"hit6 registry signing key v1";
const STORE_LABEL: &[u8] = b"hit6 registry store key v1";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    File(#[from] KeyFileError),
    #[error("{KEY_ENV} does not hold a key: expected 43 characters of base64url, as a key file holds it")]
    MalformedEnv,
}

/// The keys the registry proves and signs with. Its `Debug` shows only
/// the public halves.
#[derive(Clone)]
pub struct RegistryIdentity {
    pub session: Arc<Identity>,
    pub signer: Arc<Signer>,
    /// What replicas seal their commands in etcd with (`replica::Seal`).
    store_key: Arc<Zeroizing<[u8; 32]>>,
    pub origin: Origin,
}

impl fmt::Debug for RegistryIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let public = self.session.public();
        f.debug_struct("RegistryIdentity")
            .field("session", &public)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// Where a registry's identity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Drawn at this start: nodes cannot pin it.
    Fresh,
    /// Read from its key file, or the environment.
    Kept,
    /// Made now and saved to its key file, for the next start.
    Saved,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.serialize(f)
    }
}

/// The secret a registry's keys are made of, as a launcher hands it to
/// the registry it starts ([`KEY_ENV`]). Its `Debug` never shows it.
pub struct RegistrySecret {
    secret: Zeroizing<[u8; 32]>,
    /// The key its registry proves, derived once.
    public: PublicKey,
}

impl fmt::Debug for RegistrySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RegistrySecret(<redacted>)")
    }
}

impl RegistrySecret {
    /// A fresh secret from the operating system's random source.
    pub fn generate() -> RegistrySecret {
        let secret = secure::random_secret();
        let public = RegistryIdentity::from_secret(&secret, Origin::Kept).public();
        RegistrySecret { secret, public }
    }

    /// The secret as [`KEY_ENV`] and a key file hold it.
    pub fn reveal(&self) -> Zeroizing<String> {
        secure::secret_text(&self.secret)
    }

    /// The key its registry's sessions prove: what its nodes pin.
    pub fn public(&self) -> PublicKey {
        self.public
    }
}

impl RegistryIdentity {
    /// Keys drawn afresh, known to no one yet.
    pub fn generate() -> RegistryIdentity {
        RegistryIdentity::from_secret(&secure::random_secret(), Origin::Fresh)
    }

    /// Both keys, derived from one secret.
    pub fn from_secret(secret: &[u8; 32], origin: Origin) -> RegistryIdentity {
        let derive = |label: &[u8]| {
            let mut key = Zeroizing::new([0u8; 32]);
            Hkdf::<Sha256>::new(None, secret).expand(label, key.as_mut()).expect("32 bytes is a valid length");
            key
        };
        RegistryIdentity {
            session: Arc::new(Identity::from_secret(derive(SESSION_LABEL))),
            signer: Arc::new(Signer::from_seed(&derive(SIGNING_LABEL))),
            store_key: Arc::new(derive(STORE_LABEL)),
            origin,
        }
    }

    /// The identity in `file` (made there if there is none), else the one
    /// in [`KEY_ENV`], else a fresh one.
    pub fn from_file_or_env(file: Option<&Path>) -> Result<RegistryIdentity, IdentityError> {
        if let Some(path) = file {
            let (secret, made) = secure::load_or_create_secret(path)?;
            let origin = if made { Origin::Saved } else { Origin::Kept };
            return Ok(RegistryIdentity::from_secret(&secret, origin));
        }
        match std::env::var(KEY_ENV) {
            Ok(text) => {
                let secret = secure::parse_secret(&Zeroizing::new(text)).ok_or(IdentityError::MalformedEnv)?;
                Ok(RegistryIdentity::from_secret(&secret, Origin::Kept))
            }
            Err(_) => Ok(RegistryIdentity::generate()),
        }
    }

    /// The key replicas sharing this identity seal their log with.
    pub fn store_key(&self) -> &[u8; 32] {
        &self.store_key
    }

    /// The key its sessions prove: what a node pins (`--registry-key`).
    pub fn public(&self) -> PublicKey {
        self.session.public()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_secret_makes_the_same_three_keys_and_no_key_serves_two_algorithms() {
        let secret = [7u8; 32];
        let from = |secret: &[u8; 32]| RegistryIdentity::from_secret(secret, Origin::Kept);
        let (one, again) = (from(&secret), from(&secret));
        assert_eq!(one.public(), again.public());
        assert_eq!(one.signer.public(), again.signer.public());
        assert_eq!(one.store_key(), again.store_key());
        assert_ne!(one.store_key(), &secret, "the store key is derived, not the secret");
        let other = from(&[8u8; 32]);
        let handed = RegistrySecret::generate();
        let parsed = secure::parse_secret(&handed.reveal()).unwrap();
        assert_eq!(from(&parsed).public(), handed.public(), "the registry makes the key its nodes pin");
        assert_eq!(format!("{handed:?}"), "RegistrySecret(<redacted>)");
        assert_ne!(one.public(), other.public());
        assert_ne!(one.signer.public(), other.signer.public());
        assert_ne!(one.store_key(), other.store_key());
        // Neither key is the secret's own: the session key differs from the
        // key pair a node would make of the same bytes.
        assert_ne!(one.public(), Identity::from_secret(Zeroizing::new(secret)).public());
    }

    #[test]
    fn a_key_file_is_made_once_then_kept_and_its_secret_is_never_shown() {
        let dir = std::env::temp_dir().join(format!("registry-identity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("registry.key");
        let _ = std::fs::remove_file(&path);
        let made = RegistryIdentity::from_file_or_env(Some(&path)).unwrap();
        assert_eq!(made.origin, Origin::Saved);
        let kept = RegistryIdentity::from_file_or_env(Some(&path)).unwrap();
        assert_eq!(kept.origin, Origin::Kept);
        assert_eq!(made.public(), kept.public());
        assert_eq!(made.signer.public(), kept.signer.public());
        let secret = std::fs::read_to_string(&path).unwrap();
        let shown = format!("{kept:?}");
        assert!(shown.contains(&kept.public().to_string()) && !shown.contains(secret.trim()), "{shown}");
        std::fs::write(&path, "not a key\n").unwrap();
        let error = RegistryIdentity::from_file_or_env(Some(&path)).unwrap_err().to_string();
        assert!(error.contains("does not hold a key") && !error.contains("not a key"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
