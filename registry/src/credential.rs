//! What the registry vouches for, signed with its Ed25519 key, so that
//! nodes can check it without asking: a [`GroupClaims`] view, given with
//! every group lookup, says who coordinates a group and who its members
//! are. A coordinator presents it with each delivery; a member accepts only
//! a delivery from the view's coordinator, in a view that includes the
//! member. (Greetings need no signature: the registry introduces greeters
//! with tickets, [`wire::ticket`].)
//!
//! A view expires ([`VIEW_VALIDITY`]), so it does not outlive a change of
//! coordinator for long. The registry draws its signing key at start-up;
//! nodes learn the public half in their (authenticated) registration reply.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
pub use wire::replay::unix_ms;
use wire::secure::{key_bytes, key_text, PublicKey};
use zeroize::Zeroizing;

/// How long a group view is honoured: a coordinator that lost its place (it
/// left, its lease ran out) could go on delivering with its last view until
/// then, so it is short; coordinators ask for a fresh one at every multicast.
pub const VIEW_VALIDITY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("the credential is malformed")]
    Malformed,
    #[error("the credential is not signed by the registry this node registered with")]
    BadSignature,
    #[error("the credential expired {ago_s} s ago")]
    Expired { ago_s: u64 },
}

/// The registry's signing key. Its `Debug` shows only the public half.
pub struct Signer {
    key: SigningKey,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer").field("public", &self.public()).finish_non_exhaustive()
    }
}

impl Signer {
    pub fn generate() -> Signer {
        Signer::from_seed(&wire::secure::random_secret())
    }

    /// The signing key whose seed is `seed`.
    pub fn from_seed(seed: &Zeroizing<[u8; 32]>) -> Signer {
        Signer { key: SigningKey::from_bytes(seed) }
    }

    pub fn public(&self) -> RegistryKey {
        RegistryKey(self.key.verifying_key())
    }

    /// Signs `claims`, which expire `validity` from now.
    pub fn sign<C: Serialize>(&self, claims: &C, validity: Duration) -> Signed {
        let body = Expiring { expires_ms: unix_ms() + wire::replay::millis(validity), claims };
        let bytes = serde_json::to_vec(&body).expect("claims serialize");
        let sig = self.key.sign(&bytes);
        Signed { claims: URL_SAFE_NO_PAD.encode(&bytes), sig: URL_SAFE_NO_PAD.encode(sig.to_bytes()) }
    }
}

/// The registry's public signing key, as nodes learn it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RegistryKey(VerifyingKey);

impl fmt::Display for RegistryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&key_text(self.0.as_bytes()))
    }
}

impl fmt::Debug for RegistryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegistryKey({self})")
    }
}

impl FromStr for RegistryKey {
    type Err = String;

    fn from_str(text: &str) -> Result<RegistryKey, String> {
        let bytes = key_bytes(text, "a registry key")?;
        VerifyingKey::from_bytes(&bytes).map(RegistryKey).map_err(|_| "not an Ed25519 public key".to_owned())
    }
}

wire::serde_as_text!(RegistryKey);

/// Signed claims: the JSON bytes that were signed, and the signature, both base64url.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    pub claims: String,
    pub sig: String,
}

#[derive(Serialize, Deserialize)]
struct Expiring<C> {
    expires_ms: u64,
    #[serde(flatten)]
    claims: C,
}

impl Signed {
    /// The claims, once the signature is checked against `key` and they have not expired.
    pub fn open<C: DeserializeOwned>(&self, key: &RegistryKey) -> Result<C, CredentialError> {
        self.open_until(key).map(|(claims, _)| claims)
    }

    /// As [`Signed::open`], with the time (Unix milliseconds) the claims
    /// expire at, for a caller that keeps them.
    pub fn open_until<C: DeserializeOwned>(&self, key: &RegistryKey) -> Result<(C, u64), CredentialError> {
        let decode = |text: &str| URL_SAFE_NO_PAD.decode(text).map_err(|_| CredentialError::Malformed);
        let bytes = decode(&self.claims)?;
        let sig: [u8; 64] = decode(&self.sig)?.try_into().map_err(|_| CredentialError::Malformed)?;
        key.0.verify_strict(&bytes, &Signature::from_bytes(&sig)).map_err(|_| CredentialError::BadSignature)?;
        let body: Expiring<C> = serde_json::from_slice(&bytes).map_err(|_| CredentialError::Malformed)?;
        let now = unix_ms();
        if body.expires_ms <= now {
            return Err(CredentialError::Expired { ago_s: (now - body.expires_ms) / 1000 });
        }
        Ok((body.claims, body.expires_ms))
    }
}

/// A group's coordinator and members, as the registry saw them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "group")]
pub struct GroupClaims {
    pub group: u32,
    /// `None` for a coordinator that registered in plaintext, which no member can check.
    pub coordinator: Option<PublicKey>,
    /// The keys of the members that registered with one.
    pub members: Vec<PublicKey>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::secure::Identity;

    fn view() -> GroupClaims {
        let (coordinator, member) = (Identity::generate().public(), Identity::generate().public());
        GroupClaims { group: 2, coordinator: Some(coordinator), members: vec![coordinator, member] }
    }

    #[test]
    fn signed_claims_open_with_the_signers_key_only() {
        let (signer, other) = (Signer::generate(), Signer::generate());
        let claims = view();
        let signed = signer.sign(&claims, VIEW_VALIDITY);
        let opened: GroupClaims = signed.open(&signer.public()).unwrap();
        assert_eq!(opened, claims);
        assert_eq!(signed.open::<GroupClaims>(&other.public()).unwrap_err(), CredentialError::BadSignature);
    }

    #[test]
    fn altered_claims_fail_the_signature() {
        let signer = Signer::generate();
        let signed = signer.sign(&view(), VIEW_VALIDITY);
        let bytes = URL_SAFE_NO_PAD.decode(&signed.claims).unwrap();
        let forged = String::from_utf8(bytes).unwrap().replace("\"group\":2", "\"group\":3");
        let forged = Signed { claims: URL_SAFE_NO_PAD.encode(forged), ..signed };
        assert_eq!(forged.open::<GroupClaims>(&signer.public()).unwrap_err(), CredentialError::BadSignature);
    }

    #[test]
    fn expired_claims_are_refused() {
        let signer = Signer::generate();
        let body = Expiring { expires_ms: unix_ms() - 2_000, claims: view() };
        let bytes = serde_json::to_vec(&body).unwrap();
        let sig = signer.key.sign(&bytes);
        let old = Signed { claims: URL_SAFE_NO_PAD.encode(&bytes), sig: URL_SAFE_NO_PAD.encode(sig.to_bytes()) };
        assert!(matches!(old.open::<GroupClaims>(&signer.public()), Err(CredentialError::Expired { ago_s: 2 })));
    }

    #[test]
    fn keys_round_trip_and_the_signer_hides_its_secret() {
        let signer = Signer::generate();
        let key = signer.public();
        assert_eq!(key.to_string().parse::<RegistryKey>().unwrap(), key);
        let secret = URL_SAFE_NO_PAD.encode(signer.key.to_bytes());
        assert!(!format!("{signer:?}").contains(&secret));
    }
}
