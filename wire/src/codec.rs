//! Framing: one JSON value per message, with or without a trailing newline;
//! or, for the group lab's programs, which send bare text with no framing at
//! all, whatever one read brings ([`LinkCodec::raw`]).
//!
//! The original HIT6 programs send a bare JSON object and read it with a
//! single `recv(1024)`, so messages cannot be split on newlines. Instead a
//! small scanner tracks string and bracket state to find where the top-level
//! value ends, in one pass over each byte, and only then hands the bytes to
//! serde_json. Re-parsing the whole buffer on every read would let a client
//! that trickles bytes make the server do quadratic work.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};
use serde::Serialize;
use serde_json::Value;
use tokio_util::codec::{Decoder, Encoder};

use crate::secure::{PublicKey, Session, MAX_CHUNK};

/// Largest message a server accepts from a client.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Largest reply a client accepts: a registry's contact list grows with the
/// number of nodes (about 80 bytes each), so it needs more room than a request.
pub const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// A complete message that is not valid JSON. The framing is intact (its end
/// was found), so the connection can go on after an error reply.
#[derive(Debug, thiserror::Error)]
#[error("malformed JSON: {0}")]
pub struct MalformedJson(#[source] pub serde_json::Error);

/// Errors after which the byte stream cannot be resynchronised.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("message exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("message is not a JSON object or array")]
    NotJson,
    #[error("connection closed in the middle of a message ({pending} bytes pending)")]
    Truncated { pending: usize },
    #[error("failed to encode a message: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("a frame failed to authenticate: it was altered, replayed or not meant for this session")]
    Sealed,
    #[error(
        "the server holds as many bytes of unfinished messages as it may ({limit} bytes), \
         and this connection's was among the largest: send smaller messages, or try again later"
    )]
    OverBudget { limit: usize },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The room a bare-text connection's buffer keeps for its next read: a
/// message (a group message's 16 KiB, and its command) comes in one read.
const RAW_READ: usize = 16 * 1024 + 64;

/// A decoded message: a JSON value, or a well-delimited message that failed to parse.
pub type Decoded = Result<Value, MalformedJson>;

#[derive(Debug)]
pub struct JsonCodec {
    max_len: usize,
    scan: Scan,
}

/// How far the current message has been scanned, so each byte is looked at once.
#[derive(Debug, Default)]
struct Scan {
    pos: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl JsonCodec {
    pub fn new(max_len: usize) -> Self {
        Self { max_len, scan: Scan::default() }
    }

    /// Index one past the end of the top-level value that starts `buf[0]`, if it is complete.
    fn find_end(&mut self, buf: &[u8]) -> Option<usize> {
        let s = &mut self.scan;
        while s.pos < buf.len() {
            let byte = buf[s.pos];
            s.pos += 1;
            if s.in_string {
                match byte {
                    _ if s.escaped => s.escaped = false,
                    b'\\' => s.escaped = true,
                    b'"' => s.in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => s.in_string = true,
                b'{' | b'[' => s.depth += 1,
                b'}' | b']' => {
                    s.depth = s.depth.saturating_sub(1);
                    if s.depth == 0 {
                        return Some(s.pos);
                    }
                }
                _ => {}
            }
        }
        None
    }
}

impl Decoder for JsonCodec {
    type Item = Decoded;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, FrameError> {
        if self.scan.pos == 0 {
            let blanks = src.iter().take_while(|b| b.is_ascii_whitespace()).count();
            src.advance(blanks);
            match src.first() {
                None => return Ok(None),
                Some(b'{' | b'[') => {}
                Some(_) => return Err(FrameError::NotJson),
            }
        }
        let Some(end) = self.find_end(src) else {
            if src.len() > self.max_len {
                return Err(FrameError::TooLarge { limit: self.max_len });
            }
            return Ok(None);
        };
        self.scan = Scan::default();
        if end > self.max_len {
            return Err(FrameError::TooLarge { limit: self.max_len });
        }
        let message = src.split_to(end);
        Ok(Some(serde_json::from_slice(&message).map_err(MalformedJson)))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.iter().all(u8::is_ascii_whitespace) => Ok(None),
            None => Err(FrameError::Truncated { pending: src.len() }),
        }
    }
}

impl<T: Serialize> Encoder<&T> for JsonCodec {
    type Error = FrameError;

    fn encode(&mut self, item: &T, dst: &mut BytesMut) -> Result<(), FrameError> {
        serde_json::to_writer(dst.writer(), item).map_err(FrameError::Encode)?;
        dst.put_u8(b'\n');
        Ok(())
    }
}

/// The memory that every connection of a server holds at once for
/// unfinished messages, against a limit: a per-connection cap alone lets
/// 15,000 connections each hold 64 KiB. A buffer counts what it allocated,
/// which its growth by doubling makes up to twice what it holds. Past the
/// limit, a connection holding more than [`SMALL_MESSAGE`] of an unfinished
/// message is dropped as it grows: the connections costing the most go,
/// and a member's small request never does.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    held: AtomicUsize,
}

/// An unfinished message this short is never dropped for the budget: every
/// request a member makes is shorter.
pub const SMALL_MESSAGE: usize = 1024;

impl Budget {
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget { limit, held: AtomicUsize::new(0) })
    }

    /// Bytes held now, by every connection.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// One connection's share of a [`Budget`], given back when it is dropped.
#[derive(Debug)]
struct Meter {
    budget: Arc<Budget>,
    held: usize,
}

impl Meter {
    /// Records that this connection now holds `unfinished` bytes of
    /// unfinished messages, in buffers of `held` bytes.
    fn hold(&mut self, unfinished: usize, held: usize) -> Result<(), FrameError> {
        // Most calls find nothing held before or after a whole message:
        // the shared counter is touched only on a change.
        if held > self.held {
            self.budget.held.fetch_add(held - self.held, Ordering::Relaxed);
        } else if held < self.held {
            self.budget.held.fetch_sub(self.held - held, Ordering::Relaxed);
        }
        self.held = held;
        if unfinished > SMALL_MESSAGE && self.budget.held() > self.budget.limit {
            return Err(FrameError::OverBudget { limit: self.budget.limit });
        }
        Ok(())
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.held, Ordering::Relaxed);
    }
}

/// The codec of every connection: JSON values, in the clear or sealed in
/// the transport frames of a secure session (see [`crate::secure`]).
#[derive(Debug)]
pub struct LinkCodec {
    json: JsonCodec,
    sealed: Option<Box<Sealed>>,
    /// Bare text, each read one message ([`LinkCodec::raw`]).
    raw: bool,
    /// A served connection's share of its server's [`Budget`].
    meter: Option<Meter>,
}

struct Sealed {
    session: Session,
    /// Opened bytes not yet decoded into a whole JSON value.
    plain: BytesMut,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed").field("remote", &self.session.remote).finish_non_exhaustive()
    }
}

impl LinkCodec {
    pub fn plain(max_len: usize) -> LinkCodec {
        LinkCodec { json: JsonCodec::new(max_len), sealed: None, raw: false, meter: None }
    }

    pub fn sealed(session: Session, max_len: usize) -> LinkCodec {
        let sealed = Sealed { session, plain: BytesMut::new() };
        LinkCodec { json: JsonCodec::new(max_len), sealed: Some(Box::new(sealed)), raw: false, meter: None }
    }

    /// The group lab's Node.js programs write bare text (`2`, `JOIN`,
    /// `SENDhola`, `ACK`) and take each write as one message, with no
    /// delimiter: every read is a message, decoded as a JSON string (which
    /// no JSON message can be: those are objects or arrays), at most
    /// `max_len` bytes. A string is written as its bare bytes, anything
    /// else as JSON without a newline, as those programs write theirs.
    pub fn raw(max_len: usize) -> LinkCodec {
        LinkCodec { raw: true, ..LinkCodec::plain(max_len) }
    }

    /// The same, counting what it holds of unfinished messages against `budget`.
    pub fn metered(self, budget: &Arc<Budget>) -> LinkCodec {
        LinkCodec { meter: Some(Meter { budget: budget.clone(), held: 0 }), ..self }
    }

    /// The key the peer proved it holds, on a secure connection.
    pub fn remote(&self) -> Option<PublicKey> {
        self.sealed.as_ref().map(|sealed| sealed.session.remote)
    }
}

impl Sealed {
    /// The next whole message: from what is opened already, or from the
    /// frames of `src` opened one by one until it is.
    fn decode(&mut self, json: &mut JsonCodec, src: &mut BytesMut) -> Result<Option<Decoded>, FrameError> {
        loop {
            if let Some(message) = json.decode(&mut self.plain)? {
                return Ok(Some(message));
            }
            if !self.open_frame(src)? {
                return Ok(None);
            }
        }
    }

    /// Opens the next whole frame of `src` into `plain`; false when none is complete.
    fn open_frame(&mut self, src: &mut BytesMut) -> Result<bool, FrameError> {
        let Some(len) = src.get(..2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))) else { return Ok(false) };
        if src.len() < 2 + len {
            src.reserve(2 + len - src.len());
            return Ok(false);
        }
        let frame = src.split_to(2 + len);
        let start = self.plain.len();
        self.plain.resize(start + len, 0);
        let opened = self
            .session
            .transport
            .read_message(&frame[2..], &mut self.plain[start..])
            .map_err(|_| FrameError::Sealed)?;
        self.plain.truncate(start + opened);
        Ok(true)
    }

    fn seal(&mut self, plain: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        if let Some(unsent) = self.session.unsent.take() {
            dst.extend_from_slice(&unsent);
        }
        for chunk in plain.chunks(MAX_CHUNK) {
            let start = dst.len();
            dst.resize(start + 2 + chunk.len() + 16, 0);
            let len =
                self.session.transport.write_message(chunk, &mut dst[start + 2..]).map_err(|_| FrameError::Sealed)?;
            dst.truncate(start + 2 + len);
            dst[start..start + 2].copy_from_slice(&(len as u16).to_be_bytes());
        }
        Ok(())
    }
}

impl Decoder for LinkCodec {
    type Item = Decoded;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, FrameError> {
        if self.raw {
            return self.decode_raw(src);
        }
        let decoded = match self.sealed.as_mut() {
            None => self.json.decode(src),
            Some(sealed) => sealed.decode(&mut self.json, src),
        }?;
        if let Some(meter) = self.meter.as_mut() {
            let opened = self.sealed.as_ref().map(|sealed| &sealed.plain);
            let buffers = [Some(&*src), opened].into_iter().flatten().filter(|buffer| !buffer.is_empty());
            let (unfinished, held) = buffers.fold((0, 0), |(len, held), b| (len + b.len(), held + b.capacity()));
            meter.hold(unfinished, held)?;
        }
        Ok(decoded)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, FrameError> {
        if self.raw {
            return self.decode_raw(src);
        }
        if self.sealed.is_none() {
            return self.json.decode_eof(src);
        }
        if let Some(message) = self.decode(src)? {
            return Ok(Some(message));
        }
        let sealed = self.sealed.as_mut().expect("checked above");
        match src.len() {
            0 => self.json.decode_eof(&mut sealed.plain),
            pending => Err(FrameError::Truncated { pending }),
        }
    }
}

impl LinkCodec {
    /// All the bytes read so far, as one bare-text message.
    fn decode_raw(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, FrameError> {
        if src.is_empty() {
            return Ok(None);
        }
        if src.len() > self.json.max_len {
            return Err(FrameError::TooLarge { limit: self.json.max_len });
        }
        let message = src.split();
        let text = String::from_utf8_lossy(&message).into_owned();
        // A read fills only the room the buffer has left, and every split
        // leaves it less: room for a whole message, or the next read would
        // cut one in two. With the message dropped, this takes its room back.
        drop(message);
        src.reserve(RAW_READ);
        Ok(Some(Ok(Value::String(text))))
    }
}

impl<T: Serialize> Encoder<&T> for LinkCodec {
    type Error = FrameError;

    fn encode(&mut self, item: &T, dst: &mut BytesMut) -> Result<(), FrameError> {
        if self.raw {
            match serde_json::to_value(item).map_err(FrameError::Encode)? {
                Value::String(text) => dst.extend_from_slice(text.as_bytes()),
                other => serde_json::to_writer(dst.writer(), &other).map_err(FrameError::Encode)?,
            }
            return Ok(());
        }
        let Some(sealed) = self.sealed.as_mut() else { return self.json.encode(item, dst) };
        let mut plain = serde_json::to_vec(item).map_err(FrameError::Encode)?;
        plain.push(b'\n');
        sealed.seal(&plain, dst)
    }
}

/// Messages already encoded: JSON values, each followed by a newline, which
/// may end in a later [`Lines`]. Written as they are in the clear; a secure
/// connection seals them together, in as few transport frames as their size
/// allows, rather than a frame each.
#[derive(Debug, Clone, Copy)]
pub struct Lines<'a>(pub &'a [u8]);

impl Encoder<Lines<'_>> for LinkCodec {
    type Error = FrameError;

    fn encode(&mut self, Lines(bytes): Lines<'_>, dst: &mut BytesMut) -> Result<(), FrameError> {
        match self.sealed.as_mut() {
            Some(sealed) => sealed.seal(bytes, dst),
            None => {
                dst.extend_from_slice(bytes);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode_all(codec: &mut JsonCodec, bytes: &[u8]) -> Vec<Decoded> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            out.push(frame);
        }
        out
    }

    #[test]
    fn splits_values_without_newlines() {
        let mut codec = JsonCodec::new(MAX_REQUEST_BYTES);
        let frames = decode_all(&mut codec, br#"{"a":1}{"b":"}{"} [2]"#);
        let values: Vec<Value> = frames.into_iter().map(Result::unwrap).collect();
        assert_eq!(values, vec![json!({"a":1}), json!({"b":"}{"}), json!([2])]);
    }

    #[test]
    fn handles_escaped_quotes_and_byte_by_byte_arrival() {
        let mut codec = JsonCodec::new(MAX_REQUEST_BYTES);
        let input = br#"{"s":"a\"}\\","n":[1,{"x":2}]}"#;
        let mut buf = BytesMut::new();
        let mut got = None;
        for (i, byte) in input.iter().enumerate() {
            buf.put_u8(*byte);
            let frame = codec.decode(&mut buf).unwrap();
            if i + 1 < input.len() {
                assert!(frame.is_none(), "value ended early at byte {i}");
            } else {
                got = frame;
            }
        }
        assert_eq!(got.unwrap().unwrap(), json!({"s":"a\"}\\","n":[1,{"x":2}]}));
    }

    #[test]
    fn raw_text_is_one_message_per_read_and_written_bare() {
        let mut codec = LinkCodec::raw(8);
        let mut buf = BytesMut::from(&b"SENDhola"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap().unwrap(), json!("SENDhola"));
        assert!(codec.decode(&mut buf).unwrap().is_none(), "nothing is left");
        let mut big = BytesMut::from(&b"SENDholas"[..]);
        assert!(matches!(codec.decode(&mut big), Err(FrameError::TooLarge { limit: 8 })));
        let mut out = BytesMut::new();
        codec.encode(&json!("ACK"), &mut out).unwrap();
        codec.encode(&json!({"address": "10.0.0.5", "port": 8081}), &mut out).unwrap();
        assert_eq!(&out[..], br#"ACK{"address":"10.0.0.5","port":8081}"#);
    }

    /// Hundreds of messages on one connection, each read whole: the room
    /// each one took in the read buffer is given back.
    #[tokio::test]
    async fn raw_messages_stay_whole_however_many_come_on_one_connection() {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let (mut writer, reader) = tokio::io::duplex(64 * 1024);
        let mut framed = tokio_util::codec::Framed::with_capacity(reader, LinkCodec::raw(MAX_REQUEST_BYTES), 512);
        for i in 0..500 {
            let message = format!("SENDbench {i}");
            writer.write_all(message.as_bytes()).await.unwrap();
            let got = framed.next().await.unwrap().unwrap().unwrap();
            assert_eq!(got, json!(message));
        }
    }

    #[test]
    fn malformed_but_delimited_message_keeps_the_stream_usable() {
        let mut codec = JsonCodec::new(MAX_REQUEST_BYTES);
        let frames = decode_all(&mut codec, b"{\"a\":\xff}{\"b\":2}");
        assert!(frames[0].is_err());
        assert_eq!(frames[1].as_ref().unwrap(), &json!({"b":2}));
    }

    #[test]
    fn rejects_oversized_messages_before_they_complete() {
        let mut codec = JsonCodec::new(16);
        let mut buf = BytesMut::from(&br#"{"a":"0123456789abcdef"#[..]);
        assert!(matches!(codec.decode(&mut buf), Err(FrameError::TooLarge { limit: 16 })));
    }

    #[test]
    fn rejects_a_complete_message_over_the_limit() {
        let mut codec = JsonCodec::new(8);
        let mut buf = BytesMut::from(&br#"{"a":"0123456789"}"#[..]);
        assert!(matches!(codec.decode(&mut buf), Err(FrameError::TooLarge { limit: 8 })));
    }

    #[test]
    fn rejects_bare_scalars_and_garbage() {
        let mut codec = JsonCodec::new(MAX_REQUEST_BYTES);
        assert!(matches!(codec.decode(&mut BytesMut::from(&b"hello"[..])), Err(FrameError::NotJson)));
    }

    #[test]
    fn truncated_message_at_eof_is_an_error_but_trailing_blanks_are_not() {
        let mut codec = JsonCodec::new(MAX_REQUEST_BYTES);
        let mut buf = BytesMut::from(&br#"{"a":"#[..]);
        assert!(matches!(codec.decode_eof(&mut buf), Err(FrameError::Truncated { pending: 5 })));
        let mut codec = JsonCodec::new(MAX_REQUEST_BYTES);
        let mut buf = BytesMut::from(&b"{}\n \n"[..]);
        assert!(codec.decode_eof(&mut buf).unwrap().unwrap().is_ok());
        assert!(codec.decode_eof(&mut buf).unwrap().is_none());
    }

    /// An unfinished message of `len` bytes: a string that never closes.
    fn unfinished(len: usize) -> BytesMut {
        let mut bytes = BytesMut::from(&br#"{"op":""#[..]);
        bytes.resize(len, b'x');
        bytes
    }

    #[test]
    fn past_the_budget_the_connections_holding_large_unfinished_messages_are_dropped() {
        let budget = Budget::new(4 * 1024);
        let codec = || LinkCodec::plain(MAX_REQUEST_BYTES).metered(&budget);
        let (mut first, mut second, mut member) = (codec(), codec(), codec());
        let (mut first_bytes, mut second_bytes) = (unfinished(3 * 1024), unfinished(2 * 1024));

        assert!(first.decode(&mut first_bytes).unwrap().is_none());
        let over = second.decode(&mut second_bytes).unwrap_err();
        assert!(matches!(over, FrameError::OverBudget { limit: 4096 }), "{over}");
        let mut small = unfinished(100);
        assert!(member.decode(&mut small).unwrap().is_none(), "a small message is never dropped");

        drop(second);
        let held = first_bytes.capacity() + small.capacity();
        assert_eq!(budget.held(), held, "a dropped connection gives its share back");
        first_bytes.extend_from_slice(b"\"}");
        assert!(first.decode(&mut first_bytes).unwrap().is_some());
        assert_eq!(budget.held(), small.capacity(), "a finished message gives its share back");
    }

    #[test]
    fn a_buffer_counts_what_it_allocated_not_only_what_it_holds() {
        let budget = Budget::new(4 * 1024);
        let mut roomy = BytesMut::with_capacity(8 * 1024);
        roomy.extend_from_slice(&unfinished(1500));
        let over = LinkCodec::plain(MAX_REQUEST_BYTES).metered(&budget).decode(&mut roomy).unwrap_err();
        assert!(matches!(over, FrameError::OverBudget { .. }), "{over}");
    }

    #[test]
    fn encodes_one_value_per_line() {
        let mut codec = JsonCodec::new(MAX_REQUEST_BYTES);
        let mut buf = BytesMut::new();
        codec.encode(&json!({"ok":true}), &mut buf).unwrap();
        assert_eq!(&buf[..], b"{\"ok\":true}\n");
    }

    /// Two ends of one secure session, its handshake done over loopback.
    async fn sealed_pair() -> (LinkCodec, LinkCodec) {
        use crate::secure::{self, Admission, Identity, Keys};
        use tokio::io::AsyncWriteExt;
        let keys = || Keys::new(Identity::generate(), Admission::Open);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let server_keys = keys();
        let responder = tokio::spawn(async move { secure::respond(&mut server, &server_keys).await.unwrap() });
        let mut initiator = secure::initiate(&mut client, &keys(), None).await.unwrap();
        client.write_all(&initiator.unsent.take().unwrap()).await.unwrap();
        let responder = responder.await.unwrap();
        (LinkCodec::sealed(initiator, MAX_REPLY_BYTES), LinkCodec::sealed(responder, MAX_REPLY_BYTES))
    }

    #[tokio::test]
    async fn a_sealed_message_larger_than_a_frame_arrives_whole() {
        let (mut sender, mut receiver) = sealed_pair().await;
        let big = json!({"contactos": "x".repeat(3 * MAX_CHUNK)});
        let mut wire = BytesMut::new();
        sender.encode(&big, &mut wire).unwrap();
        sender.encode(&json!({"op":"list"}), &mut wire).unwrap();
        assert!(wire.len() > 3 * MAX_CHUNK, "sealed, not shrunk");
        assert!(!wire.windows(8).any(|w| w == b"xxxxxxxx"), "the content is encrypted");
        // Arriving in pieces changes nothing.
        let mut arrived = BytesMut::new();
        let mut decoded = Vec::new();
        for piece in wire.chunks(1000) {
            arrived.extend_from_slice(piece);
            while let Some(message) = receiver.decode(&mut arrived).unwrap() {
                decoded.push(message.unwrap());
            }
        }
        assert_eq!(decoded, vec![big, json!({"op":"list"})]);
    }

    #[tokio::test]
    async fn sealed_lines_are_one_frame_of_their_messages_in_order() {
        let (mut sender, mut receiver) = sealed_pair().await;
        let messages: Vec<Value> = (1..=20).map(|revision| json!({"revision": revision, "event": "joined"})).collect();
        let mut one_by_one = BytesMut::new();
        for message in &messages {
            sender.encode(message, &mut one_by_one).unwrap();
        }
        let lines: Vec<u8> = messages.iter().flat_map(|m| format!("{m}\n").into_bytes()).collect();
        let mut batch = BytesMut::new();
        sender.encode(Lines(&lines), &mut batch).unwrap();
        let frame_len = usize::from(u16::from_be_bytes([batch[0], batch[1]]));
        assert_eq!(batch.len(), 2 + frame_len, "one transport frame");
        assert!(batch.len() < one_by_one.len(), "{} bytes, {} one by one", batch.len(), one_by_one.len());
        let mut wire = one_by_one;
        wire.extend_from_slice(&batch);
        let mut decoded = Vec::new();
        while let Some(message) = receiver.decode(&mut wire).unwrap() {
            decoded.push(message.unwrap());
        }
        assert_eq!(decoded, [messages.clone(), messages].concat());
    }

    #[test]
    fn plain_lines_are_written_as_they_are() {
        let mut codec = LinkCodec::plain(MAX_REQUEST_BYTES);
        let mut buf = BytesMut::new();
        codec.encode(Lines(b"{\"a\":1}\n{\"b\":2}\n"), &mut buf).unwrap();
        assert_eq!(&buf[..], b"{\"a\":1}\n{\"b\":2}\n");
    }

    #[tokio::test]
    async fn an_altered_or_replayed_frame_is_refused() {
        let (mut sender, mut receiver) = sealed_pair().await;
        let mut first = BytesMut::new();
        sender.encode(&json!({"op":"heartbeat","id":"a"}), &mut first).unwrap();
        let copy = first.clone();
        assert!(receiver.decode(&mut first).unwrap().is_some());
        // The same frame again: its nonce is spent.
        let mut replayed = copy.clone();
        assert!(matches!(receiver.decode(&mut replayed), Err(FrameError::Sealed)));

        let (mut sender, mut receiver) = sealed_pair().await;
        let mut altered = BytesMut::new();
        sender.encode(&json!({"op":"heartbeat","id":"a"}), &mut altered).unwrap();
        let last = altered.len() - 20;
        altered[last] ^= 1;
        assert!(matches!(receiver.decode(&mut altered), Err(FrameError::Sealed)));
    }
}
