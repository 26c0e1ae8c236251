//! What replicas write to etcd: commands, each sealed with a key that only
//! the replicas hold.
//!
//! Sealing keeps etcd from holding anything readable (ticket keys travel in
//! registrations) and keeps anyone else who can write to etcd from forging a
//! command: a value that does not open is skipped. XChaCha20-Poly1305, with a
//! random 24-byte nonce per command, so no nonce is ever used twice under one
//! key by replicas that never talk to each other.

use std::net::IpAddr;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use wire::secure::PublicKey;

use crate::protocol::{EntryKey, Registration};

/// Binds a sealed value to its use, so it opens as nothing else.
const PURPOSE: &[u8] = b"hit6 registry command v1";
const NONCE_LEN: usize = 24;

/// A command, with who proposed it and when.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Proposal {
    /// The replica that proposed it, and its number there: who waits for its
    /// outcome, and what makes a command written twice (a put retried after a
    /// timeout that had gone through) apply once.
    pub origin: u64,
    pub seq: u64,
    /// When it was proposed, in milliseconds since the Unix epoch: the instant
    /// every replica applies it at, so that they all decide alike.
    pub at_ms: u64,
    pub command: Command,
}

/// A change to the membership, as [`crate::store::Store`] makes it.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Command {
    Register {
        registration: Registration,
        observed: IpAddr,
        session: Option<u64>,
    },
    /// A session at some replica renewed the entry: it holds it now.
    Hold {
        id: String,
        session: u64,
    },
    Lost {
        id: String,
        session: u64,
    },
    Deregister {
        key: EntryKey,
        caller: Option<PublicKey>,
    },
    /// The entry's lease ended in etcd.
    Expire {
        id: String,
        lease: i64,
    },
}

/// The key commands are sealed with, derived from the registry's secret.
pub struct Seal(XChaCha20Poly1305);

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seal(..)")
    }
}

impl Seal {
    pub fn new(key: &[u8; 32]) -> Seal {
        Seal(XChaCha20Poly1305::new(key.into()))
    }

    pub(super) fn seal(&self, proposal: &Proposal) -> Vec<u8> {
        let plain = serde_json::to_vec(proposal).expect("a proposal serializes");
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the operating system provides random bytes");
        let sealed = self
            .0
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: &plain, aad: PURPOSE })
            .expect("sealing in memory does not fail");
        [&nonce[..], &sealed].concat()
    }

    /// The proposal in `value`, or `None` for one not sealed by a replica
    /// holding this key (or not a proposal at all).
    pub(super) fn open(&self, value: &[u8]) -> Option<Proposal> {
        let (nonce, sealed) = value.split_at_checked(NONCE_LEN)?;
        let plain = self.0.decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: PURPOSE }).ok()?;
        serde_json::from_slice(&plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal() -> Proposal {
        let command = Command::Hold { id: "a-1".into(), session: 7 };
        Proposal { origin: 1, seq: 2, at_ms: 3, command }
    }

    #[test]
    fn a_sealed_proposal_opens_with_its_key_only() {
        let seal = Seal::new(&[1; 32]);
        let sealed = seal.seal(&proposal());
        let opened = seal.open(&sealed).expect("opens");
        assert_eq!((opened.origin, opened.seq, opened.at_ms), (1, 2, 3));
        assert!(matches!(opened.command, Command::Hold { ref id, session: 7 } if id == "a-1"));
        assert!(Seal::new(&[2; 32]).open(&sealed).is_none());
        // Readable by no one else: the id is not in the clear.
        assert!(!sealed.windows(3).any(|w| w == b"a-1"));
    }

    #[test]
    fn a_changed_or_short_value_does_not_open() {
        let seal = Seal::new(&[1; 32]);
        let mut sealed = seal.seal(&proposal());
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(seal.open(&sealed).is_none());
        assert!(seal.open(b"short").is_none());
        assert!(seal.open(b"").is_none());
    }
}
