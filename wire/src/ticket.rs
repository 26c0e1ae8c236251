//! Greetings under symmetric keys only, the way Kerberos (RFC 4120)
//! introduces a client to a service: the party both ends already trust
//! hands out the keys, so a pair of nodes does no public-key work for the
//! one greeting it ever exchanges.
//!
//! - Every node draws a [`TicketKey`] per run and gives it to the registry
//!   with its registration, inside its Noise session: only the two know it.
//! - A registering node A gets, for each contact B, an [`Introduction`]: a
//!   fresh [`PairKey`] and a [`Ticket`] sealed under B's ticket key, which
//!   names B (its static key), A as the registry recorded it ([`Greeter`]),
//!   the pair key, and when the ticket expires.
//! - A greets B with the ticket and its greeting sealed under the pair key
//!   ([`Introduction::seal_greeting`]). B opens the ticket
//!   ([`TicketKey::open`]), then the greeting with the pair key it found
//!   there, and answers sealed under that key too. A stranger at B's
//!   address cannot open the ticket, so it can neither read the greeting
//!   nor answer as B; a party without a ticket is refused on its first
//!   message, at the cost of one failed AEAD open.
//! - Every attempt of a greeting carries its number, which is its seal's
//!   nonce: B refuses an attempt it has already seen ([`Seen`]), so a
//!   recorded greeting replayed is refused, while the greeter's retry (a
//!   new number, which only the pair key can seal) is answered.
//!
//! Primitives: XChaCha20-Poly1305 seals tickets (random 24-byte nonces,
//! since the registry seals many under one ticket key); HKDF-SHA256 expands
//! the pair key into one key per direction, and ChaCha20-Poly1305 seals
//! the greeting and its answer, the attempt number as nonce and the
//! ticket's nonce as associated data.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::replay::{Forgotten, Window};
use crate::secure::{key_bytes, key_text, PublicKey};

/// How long a ticket is honoured: greetings go out within moments of a
/// registration, and hosts' clocks must agree to within this.
pub const TICKET_VALIDITY: Duration = crate::replay::CLOCK_AGREEMENT;

/// The most attempts one greeting may make: each is a nonce, and [`Seen`]
/// keeps them as bits.
pub const MAX_ATTEMPTS: u32 = 64;

/// Associated data of every ticket: another protocol's or version's
/// sealed bytes never open as a ticket of this one.
const TICKET_AAD: &[u8] = b"hit6 ticket v1";
const REQUEST_INFO: &[u8] = b"hit6 greeting v1 request";
const ANSWER_INFO: &[u8] = b"hit6 greeting v1 answer";

const NONCE: usize = 24;
/// The first bytes of the receiver's static key: enough to tell a ticket
/// meant for another node, and the whole key is sealed in (associated data).
const RECEIVER_TAG: usize = 8;
/// A ticket starts with the receiver's tag and the seal's nonce, in the clear.
const HEADER: usize = RECEIVER_TAG + NONCE;
/// Longest ticket or sealed greeting taken from the network; ours are a few hundred bytes.
const MAX_SEALED: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("the ticket is malformed")]
    Malformed,
    #[error("the ticket is for another node (its key starts {tag})")]
    OtherReceiver { tag: String },
    #[error("the ticket does not open with this node's ticket key: forged, or issued to an earlier run of this node")]
    NotSealedForMe,
    #[error("the ticket expired {ago_s} s ago")]
    Expired { ago_s: u64 },
    #[error("attempt {attempt} must be 1 to {MAX_ATTEMPTS}")]
    BadAttempt { attempt: u32 },
    #[error("attempt {attempt} of this greeting was delivered already: a replay")]
    Replayed { attempt: u32 },
    #[error("the ticket is older than any this node can still tell from a replay")]
    TooOld,
    #[error(
        "the greeting does not open with the ticket's pair key: altered on the path, or not sealed by the greeter"
    )]
    Altered,
    #[error("the answer does not open with the pair key: the peer is not the node the registry named")]
    Impostor,
}

/// 32 secret bytes: never in `Debug` output; as text, 43 characters of
/// base64url, which travel only inside secure sessions. Equality is for
/// tests that compare messages: no key is ever compared with what a peer
/// sent, so it need not run in constant time.
#[derive(Clone, PartialEq, Eq)]
struct Secret(Zeroizing<[u8; 32]>);

impl Secret {
    fn generate() -> Secret {
        Secret(crate::secure::random_secret())
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&Zeroizing::new(key_text(&self.0)))
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        let text = Zeroizing::new(<String as Deserialize>::deserialize(d)?);
        key_bytes(&text, "a key").map(|bytes| Secret(Zeroizing::new(bytes))).map_err(serde::de::Error::custom)
    }
}

/// A node's secret for one run, shared with the registry only: tickets
/// for this node are sealed under it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TicketKey(Secret);

/// The key of one greeting: the greeter has it from the registry, the
/// greeted node from the ticket.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PairKey(Secret);

impl fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TicketKey(<redacted>)")
    }
}

impl fmt::Debug for PairKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairKey(<redacted>)")
    }
}

/// Opaque bytes as unpadded base64url text, at most [`MAX_SEALED`] of them.
macro_rules! opaque {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(Vec<u8>);

        impl $name {
            pub fn as_bytes(&self) -> &[u8] {
                &self.0
            }
        }

        impl From<Vec<u8>> for $name {
            fn from(bytes: Vec<u8>) -> $name {
                $name(bytes)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&URL_SAFE_NO_PAD.encode(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({} bytes)", stringify!($name), self.0.len())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(text: &str) -> Result<$name, String> {
                if text.len() > MAX_SEALED * 4 / 3 + 4 {
                    return Err(format!("longer than {MAX_SEALED} bytes"));
                }
                URL_SAFE_NO_PAD.decode(text).map($name).map_err(|_| "not base64url".to_owned())
            }
        }

        crate::serde_as_text!($name);
    };
}

opaque!(
    /// A ticket: the receiver's tag and the seal's nonce, then the sealed
    /// `Body`.
    Ticket
);
opaque!(
    /// A greeting or its answer, sealed under a pair key.
    Sealed
);

/// The greeter, as the registry recorded it: the greeted node logs the
/// greeting under this, whatever the greeting itself claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeter {
    pub id: String,
    pub name: String,
    pub addr: SocketAddr,
    pub key: PublicKey,
    pub group: Option<u32>,
}

/// What a ticket seals, in a compact binary form ([`Body::encode`]): a
/// registrant gets one ticket per contact, so their size is what a
/// registration reply grows by.
struct Body {
    greeter: Greeter,
    key: PairKey,
    expires_ms: u64,
}

impl Body {
    /// Expiry, pair key, greeter's key, group (0 for none), address (4 or
    /// 16 bytes of ip, then the port), then id and name, each after its
    /// length in one byte (both are at most 128 bytes). Takes the parts by
    /// reference: the registry seals one per contact of a registration, all
    /// naming the same greeter, and need not copy it for each.
    fn encode(greeter: &Greeter, key: &PairKey, expires_ms: u64) -> Zeroizing<Vec<u8>> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(96 + greeter.id.len() + greeter.name.len()));
        bytes.extend_from_slice(&expires_ms.to_be_bytes());
        bytes.extend_from_slice(key.0 .0.as_ref());
        bytes.extend_from_slice(greeter.key.as_bytes());
        bytes.extend_from_slice(&greeter.group.unwrap_or(0).to_be_bytes());
        match greeter.addr.ip() {
            IpAddr::V4(ip) => {
                bytes.push(4);
                bytes.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                bytes.push(6);
                bytes.extend_from_slice(&ip.octets());
            }
        }
        bytes.extend_from_slice(&greeter.addr.port().to_be_bytes());
        for text in [&greeter.id, &greeter.name] {
            let len = u8::try_from(text.len()).expect("ids and names are at most 128 bytes");
            bytes.push(len);
            bytes.extend_from_slice(text.as_bytes());
        }
        bytes
    }

    fn decode(bytes: &[u8]) -> Option<Body> {
        let mut reader = Reader(bytes);
        let expires_ms = u64::from_be_bytes(reader.take()?);
        let key = PairKey(Secret(Zeroizing::new(reader.take()?)));
        let greeter_key = PublicKey::from_bytes(&reader.take::<32>()?)?;
        let group = Some(u32::from_be_bytes(reader.take()?)).filter(|group| *group != 0);
        let ip = match reader.take::<1>()? {
            [4] => IpAddr::from(reader.take::<4>()?),
            [6] => IpAddr::from(reader.take::<16>()?),
            _ => return None,
        };
        let addr = SocketAddr::new(ip, u16::from_be_bytes(reader.take()?));
        let (id, name) = (reader.text()?, reader.text()?);
        let greeter = Greeter { id, name, addr, key: greeter_key, group };
        reader.0.is_empty().then_some(Body { greeter, key, expires_ms })
    }
}

/// Reads a [`Body`] front to back.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn text(&mut self) -> Option<String> {
        let [len] = self.take::<1>()?;
        let (text, rest) = self.0.split_at_checked(usize::from(len))?;
        self.0 = rest;
        String::from_utf8(text.to_vec()).ok()
    }
}

/// What a greeter holds for one contact: the ticket, and the key it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Introduction {
    pub ticket: Ticket,
    pub key: PairKey,
}

/// A greeting with a ticket, as it travels: `{"ticket","attempt","sealed"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TicketGreeting {
    pub ticket: Ticket,
    pub attempt: u32,
    pub sealed: Sealed,
}

/// The answer to a [`TicketGreeting`]: `{"sealed"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TicketAnswer {
    pub sealed: Sealed,
}

impl TicketKey {
    pub fn generate() -> TicketKey {
        TicketKey(Secret::generate())
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&*self.0 .0).into())
    }

    /// As the registry does for `greeter`, to greet the node that holds this
    /// key and the static key `receiver`: a fresh pair key, and a ticket
    /// for it that expires at `expires_ms` (Unix milliseconds).
    pub fn issue(&self, receiver: PublicKey, greeter: &Greeter, expires_ms: u64) -> Introduction {
        // One read of the random source for both: the registry issues a ticket per pair.
        let mut random = Zeroizing::new([0u8; 32 + NONCE]);
        getrandom::fill(random.as_mut()).expect("the operating system provides random bytes");
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&random[..32]);
        let key = PairKey(Secret(key));
        let nonce: [u8; NONCE] = random[32..].try_into().expect("the rest is a nonce");
        let plain = Body::encode(greeter, &key, expires_ms);
        let mut ticket = Vec::with_capacity(HEADER + plain.len() + 16);
        ticket.extend_from_slice(&receiver.as_bytes()[..RECEIVER_TAG]);
        ticket.extend_from_slice(&nonce);
        let aad = ticket_aad(receiver);
        let sealed = self
            .cipher()
            .encrypt((&nonce).into(), Payload { msg: &plain, aad: &aad })
            .expect("sealing in memory cannot fail");
        ticket.extend_from_slice(&sealed);
        Introduction { ticket: Ticket(ticket), key }
    }

    /// Opens a ticket as the node `me`, which holds this key, at `now_ms`.
    pub fn open(&self, ticket: &Ticket, me: PublicKey, now_ms: u64) -> Result<Opened, TicketError> {
        let Parts { receiver, nonce, sealed } = split(ticket)?;
        if *receiver != me.as_bytes()[..RECEIVER_TAG] {
            return Err(TicketError::OtherReceiver { tag: URL_SAFE_NO_PAD.encode(receiver) });
        }
        let aad = ticket_aad(me);
        let plain = self
            .cipher()
            .decrypt((&nonce).into(), Payload { msg: sealed, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| TicketError::NotSealedForMe)?;
        let body = Body::decode(&plain).ok_or(TicketError::Malformed)?;
        if body.expires_ms <= now_ms {
            return Err(TicketError::Expired { ago_s: (now_ms - body.expires_ms) / 1000 });
        }
        Ok(Opened { greeter: body.greeter, key: body.key, expires_ms: body.expires_ms, nonce })
    }
}

fn ticket_aad(receiver: PublicKey) -> Vec<u8> {
    [TICKET_AAD, receiver.as_bytes()].concat()
}

/// A ticket taken apart: its receiver's tag, its nonce and its sealed body.
struct Parts<'a> {
    receiver: &'a [u8],
    nonce: [u8; NONCE],
    sealed: &'a [u8],
}

fn split(ticket: &Ticket) -> Result<Parts<'_>, TicketError> {
    let bytes = ticket.as_bytes();
    if bytes.len() <= HEADER {
        return Err(TicketError::Malformed);
    }
    let nonce = bytes[RECEIVER_TAG..HEADER].try_into().map_err(|_| TicketError::Malformed)?;
    Ok(Parts { receiver: &bytes[..RECEIVER_TAG], nonce, sealed: &bytes[HEADER..] })
}

/// A ticket opened by the node it was for.
pub struct Opened {
    pub greeter: Greeter,
    key: PairKey,
    pub expires_ms: u64,
    /// The seal's nonce: random, so it names the ticket in [`Seen`].
    nonce: [u8; NONCE],
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened").field("greeter", &self.greeter).field("expires_ms", &self.expires_ms).finish()
    }
}

impl Opened {
    /// The greeting of `attempt`, opened with the ticket's pair key.
    pub fn open_greeting(&self, attempt: u32, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, TicketError> {
        check_attempt(attempt)?;
        open_under(&self.key, REQUEST_INFO, &self.nonce, attempt, sealed).ok_or(TicketError::Altered)
    }

    /// The answer to `attempt`, sealed with the ticket's pair key.
    pub fn seal_answer(&self, attempt: u32, answer: &[u8]) -> Sealed {
        seal_under(&self.key, ANSWER_INFO, &self.nonce, attempt, answer)
    }
}

impl Introduction {
    fn nonce(&self) -> Result<[u8; NONCE], TicketError> {
        split(&self.ticket).map(|parts| parts.nonce)
    }

    /// `greeting` as attempt number `attempt` (1 to [`MAX_ATTEMPTS`]) sends it.
    pub fn seal_greeting(&self, attempt: u32, greeting: &[u8]) -> Result<TicketGreeting, TicketError> {
        check_attempt(attempt)?;
        let sealed = seal_under(&self.key, REQUEST_INFO, &self.nonce()?, attempt, greeting);
        Ok(TicketGreeting { ticket: self.ticket.clone(), attempt, sealed })
    }

    /// The answer to attempt `attempt`, which only the node the ticket is for can have sealed.
    pub fn open_answer(&self, attempt: u32, answer: &Sealed) -> Result<Zeroizing<Vec<u8>>, TicketError> {
        open_under(&self.key, ANSWER_INFO, &self.nonce()?, attempt, answer).ok_or(TicketError::Impostor)
    }
}

fn check_attempt(attempt: u32) -> Result<(), TicketError> {
    if (1..=MAX_ATTEMPTS).contains(&attempt) {
        Ok(())
    } else {
        Err(TicketError::BadAttempt { attempt })
    }
}

/// The pair key's key for one direction (`info`), ready to seal.
fn direction(key: &PairKey, info: &[u8]) -> ChaCha20Poly1305 {
    let mut okm = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, key.0 .0.as_ref()).expand(info, okm.as_mut()).expect("32 bytes is a valid length");
    ChaCha20Poly1305::new((&*okm).into())
}

fn attempt_nonce(attempt: u32) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[8..].copy_from_slice(&attempt.to_be_bytes());
    nonce
}

fn seal_under(key: &PairKey, info: &[u8], ticket_nonce: &[u8; NONCE], attempt: u32, plain: &[u8]) -> Sealed {
    let payload = Payload { msg: plain, aad: ticket_nonce };
    Sealed(direction(key, info).encrypt(&attempt_nonce(attempt).into(), payload).expect("sealing cannot fail"))
}

fn open_under(
    key: &PairKey,
    info: &[u8],
    ticket_nonce: &[u8; NONCE],
    attempt: u32,
    sealed: &Sealed,
) -> Option<Zeroizing<Vec<u8>>> {
    let payload = Payload { msg: sealed.as_bytes(), aad: ticket_nonce };
    direction(key, info).decrypt(&attempt_nonce(attempt).into(), payload).ok().map(Zeroizing::new)
}

/// Whether a greeting was delivered for the first time, or is its greeter's retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    First,
    /// Another attempt of a greeting delivered before: answered, not counted again.
    Repeat,
}

/// The tickets a node has been greeted with, until they expire, and which
/// attempts of each it has seen: Kerberos's replay cache. It holds at most
/// `capacity` tickets; past that the one expiring first is forgotten, and
/// from then on no ticket expiring before it is taken, so that nothing it
/// forgot can be replayed.
#[derive(Debug)]
pub struct Seen(Window<[u8; NONCE], u64>);

impl Seen {
    pub fn new(capacity: usize) -> Seen {
        Seen(Window::new(capacity))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Records that `attempt` of the greeting with `ticket` was opened at `now_ms`.
    pub fn record(&mut self, ticket: &Opened, attempt: u32, now_ms: u64) -> Result<Delivery, TicketError> {
        check_attempt(attempt)?;
        let bit = 1u64 << (attempt - 1);
        if let Some(seen) = self.0.get_mut(&ticket.nonce, now_ms) {
            if *seen & bit != 0 {
                return Err(TicketError::Replayed { attempt });
            }
            *seen |= bit;
            return Ok(Delivery::Repeat);
        }
        self.0.insert(ticket.nonce, ticket.expires_ms, bit).map_err(|Forgotten| TicketError::TooOld)?;
        Ok(Delivery::First)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secure::Identity;

    const NOW: u64 = 1_800_000_000_000;

    fn greeter() -> Greeter {
        Greeter {
            id: "ab-1".into(),
            name: "alice".into(),
            addr: "127.0.0.1:7001".parse().unwrap(),
            key: Identity::generate().public(),
            group: Some(2),
        }
    }

    /// Bob's key pair and ticket key, and alice's introduction to bob.
    fn introduced(expires_ms: u64) -> (PublicKey, TicketKey, Introduction) {
        let (bob, bob_tickets) = (Identity::generate().public(), TicketKey::generate());
        let introduction = bob_tickets.issue(bob, &greeter(), expires_ms);
        (bob, bob_tickets, introduction)
    }

    #[test]
    fn a_greeting_opens_for_its_receiver_and_the_answer_for_its_greeter() {
        let (bob, bob_tickets, intro) = introduced(NOW + 60_000);
        let sent = intro.seal_greeting(1, b"hola").unwrap();
        let opened = bob_tickets.open(&sent.ticket, bob, NOW).unwrap();
        assert_eq!((opened.greeter.name.as_str(), opened.greeter.group), ("alice", Some(2)));
        assert_eq!(&**opened.open_greeting(sent.attempt, &sent.sealed).unwrap(), b"hola");
        let answer = opened.seal_answer(1, b"un gusto");
        assert_eq!(&**intro.open_answer(1, &answer).unwrap(), b"un gusto");
        assert_eq!(intro.open_answer(2, &answer).unwrap_err(), TicketError::Impostor, "bound to its attempt");
    }

    #[test]
    fn a_ticket_opens_for_no_one_else() {
        let (bob, _, intro) = introduced(NOW + 60_000);
        let carol = (Identity::generate().public(), TicketKey::generate());
        let sent = intro.seal_greeting(1, b"hola").unwrap();
        let other = carol.1.open(&sent.ticket, carol.0, NOW).unwrap_err();
        assert!(matches!(other, TicketError::OtherReceiver { .. }), "{other}");
        // Bob's next run (a new ticket key, the same static key) cannot open it either.
        assert_eq!(carol.1.open(&sent.ticket, bob, NOW).unwrap_err(), TicketError::NotSealedForMe);
        let mut forged = sent.ticket.as_bytes().to_vec();
        *forged.last_mut().unwrap() ^= 1;
        let (bob_again, bob_tickets) = (bob, TicketKey::generate());
        assert_eq!(bob_tickets.open(&Ticket(forged), bob_again, NOW).unwrap_err(), TicketError::NotSealedForMe);
        assert_eq!(bob_tickets.open(&Ticket(vec![0; 10]), bob, NOW).unwrap_err(), TicketError::Malformed);
    }

    #[test]
    fn an_expired_ticket_or_an_altered_greeting_is_refused() {
        let (bob, bob_tickets, intro) = introduced(NOW - 2_000);
        let sent = intro.seal_greeting(1, b"hola").unwrap();
        assert_eq!(bob_tickets.open(&sent.ticket, bob, NOW).unwrap_err(), TicketError::Expired { ago_s: 2 });
        let (bob, bob_tickets, intro) = introduced(NOW + 60_000);
        let sent = intro.seal_greeting(3, b"hola").unwrap();
        let opened = bob_tickets.open(&sent.ticket, bob, NOW).unwrap();
        let mut altered = sent.sealed.as_bytes().to_vec();
        altered[0] ^= 1;
        assert_eq!(opened.open_greeting(3, &Sealed(altered)).unwrap_err(), TicketError::Altered);
        assert_eq!(opened.open_greeting(2, &sent.sealed).unwrap_err(), TicketError::Altered, "another attempt's");
        assert_eq!(opened.open_greeting(0, &sent.sealed).unwrap_err(), TicketError::BadAttempt { attempt: 0 });
    }

    #[test]
    fn a_replayed_attempt_is_refused_and_a_retry_is_a_repeat() {
        let (bob, bob_tickets, intro) = introduced(NOW + 60_000);
        let opened = bob_tickets.open(&intro.ticket, bob, NOW).unwrap();
        let mut seen = Seen::new(8);
        assert_eq!(seen.record(&opened, 1, NOW), Ok(Delivery::First));
        assert_eq!(seen.record(&opened, 1, NOW), Err(TicketError::Replayed { attempt: 1 }));
        assert_eq!(seen.record(&opened, 3, NOW), Ok(Delivery::Repeat));
        assert_eq!(seen.record(&opened, 2, NOW), Ok(Delivery::Repeat), "a late earlier attempt is no replay");
        assert_eq!(seen.record(&opened, 3, NOW), Err(TicketError::Replayed { attempt: 3 }));
    }

    #[test]
    fn a_full_cache_forgets_the_first_to_expire_and_refuses_what_it_can_no_longer_tell() {
        let mut seen = Seen::new(2);
        let tickets: Vec<Opened> = (1..=3)
            .map(|i| {
                let (bob, bob_tickets, intro) = introduced(NOW + i * 1_000);
                bob_tickets.open(&intro.ticket, bob, NOW).unwrap()
            })
            .collect();
        for ticket in &tickets {
            assert_eq!(seen.record(ticket, 1, NOW), Ok(Delivery::First));
        }
        assert_eq!(seen.len(), 2);
        assert_eq!(seen.record(&tickets[0], 1, NOW), Err(TicketError::TooOld), "forgotten, so refused");
        assert_eq!(seen.record(&tickets[2], 1, NOW), Err(TicketError::Replayed { attempt: 1 }));
        // Once they expire, they go by themselves.
        assert_eq!(seen.record(&tickets[2], 2, NOW + 2_500), Ok(Delivery::Repeat));
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn a_body_round_trips_and_anything_short_or_long_is_malformed() {
        let greeter = Greeter { addr: "[2001:db8::7]:9".parse().unwrap(), group: None, ..greeter() };
        let body = Body { greeter: greeter.clone(), key: PairKey(Secret::generate()), expires_ms: NOW };
        let bytes = Body::encode(&body.greeter, &body.key, body.expires_ms);
        let back = Body::decode(&bytes).unwrap();
        assert_eq!((back.greeter, back.expires_ms), (greeter, NOW));
        assert!(back.key == body.key);
        assert!(Body::decode(&bytes[..bytes.len() - 1]).is_none());
        assert!(Body::decode(&[bytes.as_slice(), &[0]].concat()).is_none());
    }

    #[test]
    fn keys_stay_out_of_debug_output_and_round_trip_as_text() {
        let (_, bob_tickets, intro) = introduced(NOW);
        let json = serde_json::to_value(&intro).unwrap();
        let key_text = json["key"].as_str().unwrap().to_owned();
        assert_eq!(key_text.len(), 43);
        assert!(!format!("{intro:?}").contains(&key_text));
        let back: Introduction = serde_json::from_value(json).unwrap();
        assert_eq!(back.ticket, intro.ticket);
        let ticket_key = serde_json::to_string(&bob_tickets).unwrap();
        assert!(!format!("{bob_tickets:?}").contains(ticket_key.trim_matches('"')));
        assert!(serde_json::from_str::<Ticket>(&format!("\"{}\"", "A".repeat(10_000))).is_err());
    }
}
