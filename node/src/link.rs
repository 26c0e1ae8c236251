//! A session with the registry kept between requests, so that a request
//! costs no TCP or Noise handshake and never queues behind strangers'
//! connections. When the session breaks (the registry restarted, or closed
//! it while idle) the request is sent once more on a fresh one.
//!
//! Without a join token, a registry that does not speak the secure protocol
//! (an original HIT6 registry) is spoken to in plaintext from then on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use registry::client::{Client, ClientError, RegistryAddr};
use tokio::sync::Mutex;
use wire::secure::{HandshakeError, Keys, PublicKey};

/// Runs `$op` with `$client` on `$link`'s kept session, or on a new one;
/// when the kept one has broken, once more on a new one. Only idempotent
/// requests may go through it (a registration is, by its incarnation), as
/// a request sent on a session that broke may have arrived all the same.
///
/// A session given up on is closed only once the request has been sent
/// again on its successor: the registry ends a node's entry when the
/// session that holds it closes, unless another session has renewed it.
macro_rules! on_link {
    ($link:expr, |$client:ident| $op:expr) => {{
        let link: &$crate::link::RegistryLink = $link;
        let mut session = link.session.lock().await;
        let mut retired = None;
        let done = loop {
            let reused = session.is_some();
            if !reused {
                match link.connect().await {
                    Ok(client) => *session = Some(client),
                    Err(error) => break Err(error),
                }
            }
            let $client = session.as_mut().expect("a session is open");
            let done = $op;
            match &done {
                Err(error) if !matches!(error, registry::client::ClientError::Refused { .. }) => {
                    tracing::debug!(error = %wire::Chain(error), reused, "the session with the registry broke");
                    if reused {
                        retired = session.take();
                        continue;
                    }
                    *session = None;
                }
                _ => {}
            }
            break done;
        };
        drop(retired);
        done
    }};
}
pub(crate) use on_link;

#[derive(Debug)]
pub struct RegistryLink {
    pub addr: RegistryAddr,
    keys: Keys,
    /// Bounds connecting, the handshake, and each request.
    timeout: Duration,
    pub(crate) session: Mutex<Option<Client>>,
    /// The registry turned out to be an original one, which speaks plaintext only.
    plaintext: AtomicBool,
    /// A secure session succeeded once: the registry is one of ours, and a
    /// handshake that fails later is a failure, never a reason for plaintext.
    secure_seen: AtomicBool,
    /// The key the registry must prove (`--registry-key`); with one, never plaintext.
    pinned: Option<PublicKey>,
}

impl RegistryLink {
    pub fn new(addr: RegistryAddr, keys: Keys, timeout: Duration) -> RegistryLink {
        let (plaintext, secure_seen) = (AtomicBool::new(false), AtomicBool::new(false));
        RegistryLink { addr, keys, timeout, session: Mutex::new(None), plaintext, secure_seen, pinned: None }
    }

    /// The link, refusing a registry that does not prove `key`, when given.
    pub fn pinned(self, key: Option<PublicKey>) -> RegistryLink {
        RegistryLink { pinned: key, ..self }
    }

    /// Forgets the kept session: an original registry answers once and hangs up.
    pub async fn close(&self) {
        *self.session.lock().await = None;
    }

    /// Whether requests go in plaintext, to what looked like an original registry.
    pub fn is_plaintext(&self) -> bool {
        self.plaintext.load(Ordering::Relaxed)
    }

    /// The registry answered a plaintext request as one of ours does: it was
    /// no original after all (a handshake was merely cut short), so go back
    /// to secure sessions.
    pub async fn back_to_secure(&self) {
        self.plaintext.store(false, Ordering::Relaxed);
        self.close().await;
    }

    /// A secure session as this node's keys; without a join token, a
    /// plaintext connection to a registry that turned out to be an original one.
    pub(crate) async fn connect(&self) -> Result<Client, ClientError> {
        if self.plaintext.load(Ordering::Relaxed) {
            return Client::connect(&self.addr, self.timeout).await;
        }
        match Client::connect_pinned(&self.addr, &self.keys, self.pinned, self.timeout).await {
            Ok(client) => {
                self.secure_seen.store(true, Ordering::Relaxed);
                Ok(client)
            }
            Err(ClientError::Handshake {
                source: HandshakeError::Closed | HandshakeError::NotSecure { .. }, ..
            }) if self.may_fall_back() => {
                tracing::debug!(registry = %self.addr, "the registry does not speak the secure protocol: plaintext from now on");
                self.plaintext.store(true, Ordering::Relaxed);
                Client::connect(&self.addr, self.timeout).await
            }
            connected => connected,
        }
    }

    /// Whether a registry that does not speak the secure protocol may be an
    /// original one, spoken to in plaintext: never with a token or a pinned
    /// key (a stranger could pose as one), nor once a secure session worked.
    fn may_fall_back(&self) -> bool {
        !self.keys.admission.requires_token() && self.pinned.is_none() && !self.secure_seen.load(Ordering::Relaxed)
    }
}
