//! Authenticated, encrypted connections: a Noise handshake, then the same
//! JSON messages as in plaintext, carried in Noise transport frames.
//!
//! The pattern is `Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s` (snow):
//! - each side proves it holds its static X25519 key, and learns the other's;
//! - the join token is the pre-shared key, mixed in before the first
//!   message, whose payload is sealed with it: a party without the token is
//!   refused on its first 56 bytes, before the responder has done any
//!   Diffie-Hellman, so strangers are cheap to turn away; and the token
//!   itself never crosses the network;
//! - that payload is the initiator's clock (Unix milliseconds), and a
//!   responder with a token keeps the ephemeral key of every first message
//!   while its date is fresh ([`SKEW`]): a recorded first message replayed
//!   is refused on that date or that key, also before any Diffie-Hellman.
//!   Without a token nothing is kept: anyone can make a fresh one.
//!   WireGuard dates its first message too, but can only read the date
//!   after two Diffie-Hellman operations (its pre-shared key is mixed in
//!   last), so it adds cookies against floods of them; ours is read with
//!   symmetric work alone, and over TCP the source address is proven
//!   before the first byte, which is what a cookie would add;
//! - both sides contribute a fresh ephemeral key, so a recorded handshake
//!   or message replayed later decrypts under no live session;
//! - messages are sealed with ChaCha20-Poly1305 under per-direction counters,
//!   so a frame replayed, dropped or reordered within a session is refused.
//!
//! Without a token ([`Admission::Open`]) the pre-shared key is all zeros:
//! identities and encryption stay, admission control goes.
//!
//! Every frame, handshake or transport, is a 2-byte big-endian length and
//! that many bytes. The first handshake frame is 56 bytes long, so a secure
//! connection always starts with a zero byte, and a plaintext one (JSON)
//! never does: a server tells the two apart by the first byte ([`is_secure`]).

use std::fmt;
use std::io;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::{HandshakeState, TransportState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

use crate::replay::{millis, unix_ms, Forgotten, Window};

/// The Noise protocol every secure connection uses.
pub const PATTERN: &str = "Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s";

/// Hashed into every handshake, so that a peer of another protocol or
/// version fails the handshake instead of misreading what follows.
const PROLOGUE: &[u8] = b"hit6 secure v2";

/// Longest Noise message.
pub const MAX_FRAME: usize = 65535;

/// Longest plaintext one transport frame carries: a frame less its tag.
pub const MAX_CHUNK: usize = MAX_FRAME - 16;

/// Our handshake messages are 56 bytes (an ephemeral key, and the date
/// sealed), 96 and 64 bytes.
const MAX_HANDSHAKE_FRAME: usize = 128;

/// How far a first message's date may be from the responder's clock: as
/// far as tickets already need hosts' clocks to agree.
pub const SKEW: Duration = crate::replay::CLOCK_AGREEMENT;

/// First messages a responder keeps while their dates are fresh: past
/// this, a late one (dated before the oldest kept) must try again. Some
/// 100 bytes each; a mesh of 1,000 nodes opens about 2,000 sessions.
const FIRST_MESSAGES: usize = 65_536;

/// Name of the environment variable that carries a join token.
pub const TOKEN_ENV: &str = "HIT6_JOIN_TOKEN";

/// Whether a connection whose first byte is `first` starts a handshake.
pub fn is_secure(first: u8) -> bool {
    first == 0
}

/// 32 key bytes as unpadded URL-safe base64, 43 characters: how keys travel.
pub fn key_text(bytes: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The 32 bytes of a [`key_text`]; `what` names the key in the error.
pub fn key_bytes(text: &str, what: &str) -> Result<[u8; 32], String> {
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| format!("{what} is 43 characters of base64url"))?;
    bytes.try_into().map_err(|_| format!("{what} is 32 bytes"))
}

/// A static X25519 public key: who a node is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub fn from_bytes(bytes: &[u8]) -> Option<PublicKey> {
        bytes.try_into().ok().map(PublicKey)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Unpadded URL-safe base64, 43 characters.
impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&key_text(&self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = String;

    fn from_str(text: &str) -> Result<PublicKey, String> {
        key_bytes(text, "a public key").map(PublicKey)
    }
}

crate::serde_as_text!(PublicKey);

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("failed to read the key file {path}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("the key file {path} does not hold a key: expected 43 characters of base64url")]
    Malformed { path: String },
    #[error(
        "the key file {path} may be read or written by others (mode {mode:03o}): make it private, `chmod 600 {path}`"
    )]
    Exposed { path: String, mode: u32 },
    #[error("failed to write a new key to {path}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// A static key pair. Its `Debug` shows only the public half.
pub struct Identity {
    private: Zeroizing<[u8; 32]>,
    public: PublicKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").field("public", &self.public).finish_non_exhaustive()
    }
}

impl Identity {
    /// A fresh key pair from the operating system's random source.
    pub fn generate() -> Identity {
        Identity::from_secret(random_secret())
    }

    /// The key pair whose private half is `private`.
    pub fn from_secret(private: Zeroizing<[u8; 32]>) -> Identity {
        let mut dh = DefaultResolver.resolve_dh(&DHChoice::Curve25519).expect("snow resolves Curve25519");
        dh.set(private.as_ref());
        let public = PublicKey::from_bytes(dh.pubkey()).expect("a Curve25519 public key is 32 bytes");
        Identity { private, public }
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// Loads the key pair in `path`, or, when there is no such file, makes
    /// one and saves it there, readable by its owner only. Returns whether
    /// it was made.
    pub fn load_or_create(path: &Path) -> Result<(Identity, bool), KeyFileError> {
        let (secret, made) = load_or_create_secret(path)?;
        Ok((Identity::from_secret(secret), made))
    }
}

/// The 32-byte secret in a key file (43 characters of base64url), or, when
/// there is no such file, a fresh one saved there, readable by its owner
/// only. Returns whether it was made. A file others may read is refused.
pub fn load_or_create_secret(path: &Path) -> Result<(Zeroizing<[u8; 32]>, bool), KeyFileError> {
    let name = path.display().to_string();
    match read_private(path) {
        Ok(Err(Exposed(mode))) => Err(KeyFileError::Exposed { path: name, mode }),
        Ok(Ok(text)) => parse_secret(&text).map(|secret| (secret, false)).ok_or(KeyFileError::Malformed { path: name }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let secret = random_secret();
            let text = Zeroizing::new(secret_text(&secret).to_string() + "\n");
            write_private(path, text.as_bytes()).map_err(|source| KeyFileError::Write { path: name, source })?;
            Ok((secret, true))
        }
        Err(source) => Err(KeyFileError::Read { path: name, source }),
    }
}

/// 32 bytes from the operating system's random source, wiped when dropped:
/// every key, token and secret here is drawn this way.
pub fn random_secret() -> Zeroizing<[u8; 32]> {
    let mut secret = Zeroizing::new([0u8; 32]);
    getrandom::fill(secret.as_mut()).expect("the operating system provides random bytes");
    secret
}

/// A secret as a key file holds it: 43 characters of base64url.
pub fn secret_text(secret: &[u8; 32]) -> Zeroizing<String> {
    Zeroizing::new(URL_SAFE_NO_PAD.encode(secret))
}

/// A secret written as a key file holds it: 43 characters of base64url,
/// surrounding whitespace ignored.
pub fn parse_secret(text: &str) -> Option<Zeroizing<[u8; 32]>> {
    let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(text.trim()).ok()?);
    Some(Zeroizing::new(bytes.as_slice().try_into().ok()?))
}

/// The mode bits of a secret file that group or others hold.
struct Exposed(u32);

/// Reads a secret file, unless group or others may read or write it: as
/// ssh refuses such a private key, since anyone else on the host may have
/// read it, or put their own there.
fn read_private(path: &Path) -> io::Result<Result<Zeroizing<String>, Exposed>> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let mut file = std::fs::File::open(path)?;
    let mode = file.metadata()?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Ok(Err(Exposed(mode)));
    }
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text)?;
    Ok(Ok(text))
}

/// Creates `path` with mode 0600, refusing to replace an existing file.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a join token is 64 hexadecimal characters (32 random bytes), for example from `openssl rand -hex 32`")]
    Malformed,
    #[error("a join token of zeros is the key every party uses without a token: draw a random one, for example with `openssl rand -hex 32`")]
    Zero,
    #[error("the join token file {path} may be read or written by others (mode {mode:03o}): make it private, `chmod 600 {path}`")]
    Exposed { path: String, mode: u32 },
    #[error("failed to read the join token file {path}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// The secret that admits a party to the membership. Its `Debug` and
/// errors never show it.
pub struct JoinToken(Zeroizing<[u8; 32]>);

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JoinToken(<redacted>)")
    }
}

impl JoinToken {
    /// A fresh token from the operating system's random source.
    pub fn generate() -> JoinToken {
        JoinToken(random_secret())
    }

    /// Parses 64 hexadecimal digits, ignoring surrounding whitespace. A
    /// token of zeros is refused: it is the key of open mode ([`Admission::Open`]).
    pub fn parse(text: &str) -> Result<JoinToken, TokenError> {
        let text = text.trim().as_bytes();
        if text.len() != 64 {
            return Err(TokenError::Malformed);
        }
        // Digit by digit: `u8::from_str_radix` would also take a sign (`+0`).
        let digit = |c: u8| char::from(c).to_digit(16).ok_or(TokenError::Malformed);
        let mut bytes = Zeroizing::new([0u8; 32]);
        for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
            *byte = (digit(pair[0])? << 4 | digit(pair[1])?) as u8;
        }
        if bytes.iter().all(|&b| b == 0) {
            return Err(TokenError::Zero);
        }
        Ok(JoinToken(bytes))
    }

    /// The token as text, for a user who must hand it to another program.
    /// Whether `other` is this token, compared in constant time.
    pub fn is(&self, other: &JoinToken) -> bool {
        use subtle::ConstantTimeEq;
        self.0.ct_eq(&*other.0).into()
    }

    pub fn reveal(&self) -> Zeroizing<String> {
        Zeroizing::new(self.0.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The token of a service: from `file` when given, else from the
    /// environment variable [`TOKEN_ENV`] when set, else none.
    pub fn from_file_or_env(file: Option<&Path>) -> Result<Option<JoinToken>, TokenError> {
        if let Some(path) = file {
            let name = || path.display().to_string();
            let text = read_private(path).map_err(|source| TokenError::Read { path: name(), source })?;
            let text = text.map_err(|Exposed(mode)| TokenError::Exposed { path: name(), mode })?;
            return JoinToken::parse(&text).map(Some);
        }
        match std::env::var(TOKEN_ENV) {
            Ok(text) => JoinToken::parse(&Zeroizing::new(text)).map(Some),
            Err(_) => Ok(None),
        }
    }
}

/// Who may complete a handshake.
#[derive(Clone)]
pub enum Admission {
    /// Anyone: no join token was given.
    Open,
    /// Holders of the token.
    Token(Arc<JoinToken>),
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Admission::Open => f.write_str("Open"),
            Admission::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

impl Admission {
    pub fn from_token(token: Option<JoinToken>) -> Admission {
        token.map_or(Admission::Open, |token| Admission::Token(Arc::new(token)))
    }

    pub fn requires_token(&self) -> bool {
        matches!(self, Admission::Token(_))
    }

    fn psk(&self) -> Zeroizing<[u8; 32]> {
        match self {
            Admission::Open => Zeroizing::new([0u8; 32]),
            Admission::Token(token) => token.0.clone(),
        }
    }
}

/// What a party needs to open or accept secure connections. Its clones
/// share one memory of the first messages they accepted.
#[derive(Debug, Clone)]
pub struct Keys {
    pub identity: Arc<Identity>,
    pub admission: Admission,
    first_messages: Arc<Mutex<FirstMessages>>,
}

impl Keys {
    pub fn new(identity: Identity, admission: Admission) -> Keys {
        Keys::shared(Arc::new(identity), admission)
    }

    /// Keys with an identity that something else holds too (the registry
    /// signs with keys derived from the same secret).
    pub fn shared(identity: Arc<Identity>, admission: Admission) -> Keys {
        let first_messages = Arc::new(Mutex::new(FirstMessages(Window::new(FIRST_MESSAGES))));
        Keys { identity, admission, first_messages }
    }
}

/// The ephemeral keys of the first messages a responder took, while their
/// dates are fresh.
struct FirstMessages(Window<[u8; 32], ()>);

impl fmt::Debug for FirstMessages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FirstMessages({} kept)", self.0.len())
    }
}

impl FirstMessages {
    /// Takes a first message with `ephemeral` key and the opened `payload`
    /// (its date) at `now_ms`, unless it is a copy or out of date.
    fn take(&mut self, ephemeral: [u8; 32], payload: &[u8], now_ms: u64) -> Result<(), HandshakeError> {
        let dated_ms = payload.try_into().map(u64::from_be_bytes).map_err(|_| HandshakeError::Undated)?;
        let skew_ms = millis(SKEW);
        if dated_ms.abs_diff(now_ms) > skew_ms {
            let ahead_s = (i128::from(dated_ms) - i128::from(now_ms)) / 1000;
            return Err(HandshakeError::Skewed { ahead_s: ahead_s as i64 });
        }
        if self.0.get_mut(&ephemeral, now_ms).is_some() {
            return Err(HandshakeError::Replayed);
        }
        // Kept through the last millisecond its date is taken in.
        let stale_ms = dated_ms + skew_ms + 1;
        self.0.insert(ephemeral, stale_ms, ()).map_err(|Forgotten| HandshakeError::Replayed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("the peer closed the connection during the handshake")]
    Closed,
    #[error("the peer does not speak the secure protocol (a handshake frame of {len} bytes)")]
    NotSecure { len: usize },
    #[error("the handshake failed: a wrong join token, or not a party to this membership")]
    Rejected(#[source] snow::Error),
    #[error("the first handshake message carries no date: another version of the protocol")]
    Undated,
    #[error(
        "the first handshake message is dated {ahead_s} s from this host's clock: the hosts' clocks must agree within {} s",
        SKEW.as_secs()
    )]
    Skewed { ahead_s: i64 },
    #[error("a first handshake message seen before (a replay), or older than any this host can still tell from one")]
    Replayed,
    #[error("the peer refused the handshake: {said}")]
    Refused { said: String },
    #[error("the peer was too busy to finish the handshake: {said}")]
    Busy { said: String },
    #[error(
        "the peer holds key {actual}, not {expected} as expected of it (the registry recorded it, or it is pinned)"
    )]
    WrongKey { expected: PublicKey, actual: PublicKey },
    #[error("the connection failed during the handshake")]
    Io(#[source] io::Error),
}

impl HandshakeError {
    /// A word for the failure, of a few values whatever the peer sends: a metric's label.
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::Closed => "closed",
            HandshakeError::NotSecure { .. } => "not_secure",
            HandshakeError::Rejected(_) => "rejected",
            HandshakeError::Undated => "undated",
            HandshakeError::Skewed { .. } => "skewed",
            HandshakeError::Replayed => "replayed",
            HandshakeError::Refused { .. } => "refused",
            HandshakeError::Busy { .. } => "busy",
            HandshakeError::WrongKey { .. } => "wrong_key",
            HandshakeError::Io(_) => "io",
        }
    }

    /// Whether the peer sent a whole first message that was refused (as
    /// opposed to a failure of the connection): it waits for an answer,
    /// and may be told why.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            HandshakeError::Rejected(_)
                | HandshakeError::Undated
                | HandshakeError::Skewed { .. }
                | HandshakeError::Replayed
        )
    }
}

/// An established session: the keys of its transport, and who is at the other end.
pub struct Session {
    pub(crate) transport: TransportState,
    pub(crate) remote: PublicKey,
    /// The initiator's last handshake message, sent with its first message
    /// so that both travel in one segment.
    pub(crate) unsent: Option<Vec<u8>>,
}

impl Session {
    /// The static key the peer proved it holds.
    pub fn remote(&self) -> PublicKey {
        self.remote
    }
}

fn builder<'a>(keys: &'a Keys, psk: &'a [u8; 32]) -> Result<snow::Builder<'a>, snow::Error> {
    snow::Builder::new(PATTERN.parse().expect("the pattern is valid"))
        .prologue(PROLOGUE)?
        .local_private_key(keys.identity.private.as_ref())?
        .psk(0, psk)
}

/// Opens a session on `stream` as the initiator. With `expected`, a
/// responder that proves another key is refused before anything is sent.
/// The caller must send first: the last handshake message goes with it.
pub async fn initiate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    keys: &Keys,
    expected: Option<PublicKey>,
) -> Result<Session, HandshakeError> {
    let psk = keys.admission.psk();
    let mut noise = builder(keys, &psk).and_then(|b| b.build_initiator()).map_err(HandshakeError::Rejected)?;
    let mut buf = [0u8; MAX_HANDSHAKE_FRAME];
    let len = noise.write_message(&unix_ms().to_be_bytes(), &mut buf).map_err(HandshakeError::Rejected)?;
    write_frame(stream, &buf[..len]).await?;
    let frame = read_frame(stream).await?;
    noise.read_message(&frame, &mut buf).map_err(HandshakeError::Rejected)?;
    let remote = remote_static(&noise);
    if let Some(expected) = expected.filter(|expected| *expected != remote) {
        return Err(HandshakeError::WrongKey { expected, actual: remote });
    }
    let len = noise.write_message(&[], &mut buf).map_err(HandshakeError::Rejected)?;
    let mut unsent = Vec::with_capacity(2 + len);
    unsent.extend_from_slice(&(len as u16).to_be_bytes());
    unsent.extend_from_slice(&buf[..len]);
    let transport = noise.into_transport_mode().map_err(HandshakeError::Rejected)?;
    Ok(Session { transport, remote, unsent: Some(unsent) })
}

/// Accepts a session on `stream` as the responder.
pub async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    keys: &Keys,
) -> Result<Session, HandshakeError> {
    respond_tracked(stream, keys, &mut Progress::Begun).await
}

/// How far a responder got, for a server that cuts a handshake short: until
/// the responder has answered, the initiator still reads handshake frames
/// and can be told in plaintext why it was dropped; after, it cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing secure has begun: plaintext, or not a byte yet.
    None,
    /// The initiator's first message is in; no answer has gone out.
    Begun,
    /// The responder has answered: the initiator is past reading handshake frames.
    Answered,
}

/// [`respond`], recording in `progress` how far it got, also when cut short.
pub async fn respond_tracked<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    keys: &Keys,
    progress: &mut Progress,
) -> Result<Session, HandshakeError> {
    *progress = Progress::Begun;
    let psk = keys.admission.psk();
    let mut noise = builder(keys, &psk).and_then(|b| b.build_responder()).map_err(HandshakeError::Rejected)?;
    let mut buf = [0u8; MAX_HANDSHAKE_FRAME];
    let frame = read_frame(stream).await?;
    let len = noise.read_message(&frame, &mut buf).map_err(HandshakeError::Rejected)?;
    // Without a token anyone can make a fresh first message, so a replay
    // costs nothing more; and a window filled with fresh ones dated ahead
    // would keep members out.
    if keys.admission.requires_token() {
        let ephemeral = frame[..32].try_into().expect("a first message that opened starts with its ephemeral key");
        crate::lock(&keys.first_messages).take(ephemeral, &buf[..len], unix_ms())?;
    }
    let len = noise.write_message(&[], &mut buf).map_err(HandshakeError::Rejected)?;
    *progress = Progress::Answered;
    write_frame(stream, &buf[..len]).await?;
    let frame = read_frame(stream).await?;
    noise.read_message(&frame, &mut buf).map_err(HandshakeError::Rejected)?;
    let remote = remote_static(&noise);
    let transport = noise.into_transport_mode().map_err(HandshakeError::Rejected)?;
    Ok(Session { transport, remote, unsent: None })
}

fn remote_static(noise: &HandshakeState) -> PublicKey {
    noise.get_remote_static().and_then(PublicKey::from_bytes).expect("an XX handshake transmits the static key")
}

async fn write_frame<S: AsyncWrite + Unpin>(stream: &mut S, frame: &[u8]) -> Result<(), HandshakeError> {
    let mut bytes = Vec::with_capacity(2 + frame.len());
    bytes.extend_from_slice(&(frame.len() as u16).to_be_bytes());
    bytes.extend_from_slice(frame);
    stream.write_all(&bytes).await.map_err(HandshakeError::Io)
}

async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, HandshakeError> {
    let closed = |error: io::Error| match error.kind() {
        io::ErrorKind::UnexpectedEof => HandshakeError::Closed,
        _ => HandshakeError::Io(error),
    };
    let prefix = stream.read_u16().await.map_err(closed)?;
    if prefix.to_be_bytes() == *b"{\"" {
        // A plaintext refusal where a handshake message was due: read it
        // to show it (it is not authenticated, so it is never more than that).
        let mut said = b"{\"".to_vec();
        let mut rest = [0u8; 510];
        let n = stream.read(&mut rest).await.unwrap_or(0);
        said.extend_from_slice(&rest[..n]);
        let said = String::from_utf8_lossy(&said).trim().to_owned();
        let code = serde_json::from_str::<serde_json::Value>(&said).ok().map(|reply| reply["error"]["code"].clone());
        return Err(match code {
            Some(code) if code == "busy" => HandshakeError::Busy { said },
            _ => HandshakeError::Refused { said },
        });
    }
    let len = usize::from(prefix);
    if len > MAX_HANDSHAKE_FRAME {
        return Err(HandshakeError::NotSecure { len });
    }
    let mut frame = vec![0u8; len];
    stream.read_exact(&mut frame).await.map_err(closed)?;
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    fn keys(admission: &Admission) -> Keys {
        Keys::new(Identity::generate(), admission.clone())
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn both_ends_learn_the_key_the_other_holds() {
        let token = Admission::from_token(Some(JoinToken::generate()));
        let (client_keys, server_keys) = (keys(&token), keys(&token));
        let (mut client, mut server) = pair().await;
        let responder = tokio::spawn(async move {
            let session = respond(&mut server, &server_keys).await;
            (session.map(|s| s.remote()), server)
        });
        let expected = None;
        let session = initiate(&mut client, &client_keys, expected).await.unwrap();
        client.write_all(session.unsent.as_deref().unwrap()).await.unwrap();
        let (remote, _server) = responder.await.unwrap();
        assert_eq!(remote.unwrap(), client_keys.identity.public());
    }

    #[tokio::test]
    async fn a_wrong_token_fails_on_the_first_message() {
        let (client_keys, server_keys) = (
            keys(&Admission::from_token(Some(JoinToken::generate()))),
            keys(&Admission::from_token(Some(JoinToken::generate()))),
        );
        let (mut client, mut server) = pair().await;
        let responder = tokio::spawn(async move {
            let refused = respond(&mut server, &server_keys).await.map(|s| s.remote());
            // What the accept loop answers with.
            server.write_all(br#"{"ok":false,"error":{"code":"unauthorized","message":"no"}}"#).await.unwrap();
            refused
        });
        let error = initiate(&mut client, &client_keys, None).await.err().unwrap();
        assert!(matches!(responder.await.unwrap(), Err(HandshakeError::Rejected(_))));
        assert!(matches!(&error, HandshakeError::Refused { said } if said.contains("unauthorized")), "{error}");
    }

    #[tokio::test]
    async fn a_busy_server_is_told_from_one_that_does_not_speak_the_protocol() {
        let keys = keys(&Admission::Open);
        for (answer, busy) in
            [(&br#"{"ok":false,"error":{"code":"busy","message":"try again"}}"#[..], true), (b"", false)]
        {
            let (mut client, mut server) = pair().await;
            tokio::spawn(async move {
                let mut first = [0u8; 2 + 56];
                server.read_exact(&mut first).await.unwrap();
                server.write_all(answer).await.unwrap();
            });
            let error = initiate(&mut client, &keys, None).await.err().unwrap();
            assert_eq!(matches!(error, HandshakeError::Busy { .. }), busy, "{error}");
            assert_eq!(matches!(error, HandshakeError::Closed), !busy, "{error}");
        }
    }

    #[tokio::test]
    async fn an_unexpected_responder_key_is_refused_before_anything_is_sent() {
        let open = Admission::Open;
        let (client_keys, server_keys) = (keys(&open), keys(&open));
        let impostor = Identity::generate().public();
        let (mut client, mut server) = pair().await;
        tokio::spawn(async move { respond(&mut server, &server_keys).await.map(|s| s.remote()) });
        let error = initiate(&mut client, &client_keys, Some(impostor)).await.err().unwrap();
        assert!(matches!(error, HandshakeError::WrongKey { expected, .. } if expected == impostor), "{error}");
    }

    #[tokio::test]
    async fn a_replayed_first_message_is_refused_before_any_key_exchange() {
        let token = Admission::from_token(Some(JoinToken::generate()));
        let (client_keys, server_keys) = (keys(&token), keys(&token));
        // Record what a member sends first.
        let (mut client, mut server) = pair().await;
        let recorder = tokio::spawn(async move {
            let mut seen = vec![0u8; 2 + 56];
            server.read_exact(&mut seen).await.unwrap();
            seen
        });
        let _ = tokio::time::timeout(std::time::Duration::from_millis(100), initiate(&mut client, &client_keys, None))
            .await;
        let recorded = recorder.await.unwrap();
        let play = |server_keys: Keys| {
            let recorded = recorded.clone();
            async move {
                let (mut replayer, mut server) = pair().await;
                let responder =
                    tokio::spawn(async move { respond(&mut server, &server_keys).await.map(|s| s.remote()) });
                replayer.write_all(&recorded).await.unwrap();
                let mut answer = vec![0u8; 98];
                let answered = replayer.read_exact(&mut answer).await.is_ok();
                if answered {
                    // Without the member's ephemeral private key the third
                    // message can only be garbage or a copy.
                    replayer.write_all(&[0, 64]).await.unwrap();
                    replayer.write_all(&[7u8; 64]).await.unwrap();
                }
                let outcome = tokio::time::timeout(std::time::Duration::from_secs(5), responder).await;
                (answered, outcome.unwrap().unwrap())
            }
        };
        // The first copy to arrive stands in for the member's own message:
        // answered, but no session comes of it.
        let (answered, first) = play(server_keys.clone()).await;
        assert!(answered && matches!(first, Err(HandshakeError::Rejected(_))), "{first:?}");
        let (answered, again) = play(server_keys).await;
        assert!(!answered, "a copy gets no answer, so no Diffie-Hellman was done for it");
        assert!(matches!(again, Err(HandshakeError::Replayed)), "{again:?}");
    }

    #[test]
    fn a_first_message_is_taken_once_and_only_while_its_date_is_fresh() {
        const NOW: u64 = 1_800_000_000_000;
        let skew = millis(SKEW);
        let mut seen = FirstMessages(Window::new(8));
        let dated = |ms: u64| ms.to_be_bytes();
        assert!(seen.take([1; 32], &dated(NOW), NOW).is_ok());
        assert!(matches!(seen.take([1; 32], &dated(NOW), NOW + 1_000), Err(HandshakeError::Replayed)));
        assert!(seen.take([2; 32], &dated(NOW - skew), NOW).is_ok(), "as late as the skew allows");
        assert!(matches!(seen.take([2; 32], &dated(NOW - skew), NOW), Err(HandshakeError::Replayed)), "and kept");
        assert!(seen.take([3; 32], &dated(NOW + skew), NOW).is_ok(), "as early");
        let late = seen.take([4; 32], &dated(NOW - skew - 1_000), NOW);
        assert!(matches!(late, Err(HandshakeError::Skewed { ahead_s: -301 })), "{late:?}");
        let early = seen.take([4; 32], &dated(NOW + 600_000), NOW);
        assert!(matches!(early, Err(HandshakeError::Skewed { ahead_s: 600 })), "{early:?}");
        assert!(matches!(seen.take([5; 32], &[0; 4], NOW), Err(HandshakeError::Undated)));
        // Once its date is stale it is refused for that, and need not be kept.
        let stale = seen.take([1; 32], &dated(NOW), NOW + skew + 1_000);
        assert!(matches!(stale, Err(HandshakeError::Skewed { .. })), "{stale:?}");
        assert!(seen.take([6; 32], &dated(NOW + skew), NOW + skew + 1_000).is_ok());
        assert_eq!(seen.0.len(), 2, "the two dated ahead: the rest are forgotten");
        let edge = NOW + 2 * skew;
        assert!(
            matches!(seen.take([3; 32], &dated(NOW + skew), edge), Err(HandshakeError::Replayed)),
            "kept to its edge"
        );
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let token = JoinToken::generate();
        let text = token.reveal();
        assert!(!format!("{token:?}").contains(text.as_str()));
        assert!(!format!("{:?}", Admission::from_token(Some(token))).contains(text.as_str()));
        let identity = Identity::generate();
        let private = URL_SAFE_NO_PAD.encode(identity.private.as_ref());
        assert!(!format!("{identity:?}").contains(&private));
    }

    #[test]
    fn tokens_parse_from_hex_and_refuse_anything_else() {
        let token = JoinToken::generate();
        let again = JoinToken::parse(&format!("  {}\n", token.reveal().as_str())).unwrap();
        assert_eq!(token.0, again.0);
        for bad in ["", "abc", &"g".repeat(64), &"a".repeat(65), &"+0".repeat(32), &"+a".repeat(32), &"é".repeat(32)] {
            let error = JoinToken::parse(bad).unwrap_err().to_string();
            assert!(error.contains("64 hexadecimal"), "{bad}: {error}");
        }
        let zeros = JoinToken::parse(&"0".repeat(64)).unwrap_err();
        assert!(matches!(zeros, TokenError::Zero), "{zeros}");
    }

    #[test]
    fn a_key_file_is_made_once_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("hit6-key-{}", fastrand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.key");
        let (made, created) = Identity::load_or_create(&path).unwrap();
        let (loaded, again) = Identity::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        std::fs::write(&path, "not a key").unwrap();
        let broken = Identity::load_or_create(&path).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(created && !again);
        assert_eq!(made.public(), loaded.public());
        assert_eq!(mode, 0o600);
        assert!(broken.contains("does not hold a key"), "{broken}");
    }

    #[test]
    fn a_key_or_token_file_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("hit6-exposed-{}", fastrand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("node.key");
        Identity::load_or_create(&key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, JoinToken::generate().reveal().as_bytes()).unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o604)).unwrap();

        let key_refused = Identity::load_or_create(&key).unwrap_err().to_string();
        let token_refused = JoinToken::from_file_or_env(Some(&token)).unwrap_err().to_string();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let private = JoinToken::from_file_or_env(Some(&token));
        std::fs::remove_dir_all(&dir).unwrap();

        assert!(key_refused.contains("(mode 640)") && key_refused.contains("chmod 600"), "{key_refused}");
        assert!(token_refused.contains("(mode 604)") && token_refused.contains("chmod 600"), "{token_refused}");
        assert!(private.is_ok(), "a private token file is read");
    }

    fn fastrand_suffix() -> String {
        format!("{}-{:?}", std::process::id(), std::thread::current().id()).replace(['(', ')'], "")
    }

    #[test]
    fn public_keys_round_trip_as_text() {
        let key = Identity::generate().public();
        assert_eq!(key.to_string().len(), 43);
        assert_eq!(key.to_string().parse::<PublicKey>().unwrap(), key);
        assert_eq!(serde_json::from_value::<PublicKey>(serde_json::to_value(key).unwrap()).unwrap(), key);
        assert!("short".parse::<PublicKey>().is_err());
    }
}
