//! The framing every server reads strangers' bytes with: any bytes, cut
//! into any chunks, decode without a panic, never hold more than the cap
//! allows, and count in the shared budget exactly what their buffer
//! allocated while it holds part of a message. An odd first byte picks the
//! bare-text codec of the group lab's programs, which holds nothing.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;
use wire::codec::{Budget, LinkCodec};

/// A small cap and budget, so that inputs of a few KiB reach both.
const CAP: usize = 4096;

fuzz_target!(|input: &[u8]| {
    let Some((&chunk, bytes)) = input.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let budget = Budget::new(2 * CAP);
    let codec = if chunk % 2 == 1 { LinkCodec::raw(CAP) } else { LinkCodec::plain(CAP) };
    let mut codec = codec.metered(&budget);
    let mut buffer = BytesMut::new();
    for piece in bytes.chunks(chunk) {
        buffer.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buffer) {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(buffer.len() <= CAP + chunk, "{} bytes held past the cap", buffer.len());
        let allocated = if buffer.is_empty() { 0 } else { buffer.capacity() };
        assert_eq!(budget.held(), allocated, "the budget counts what the buffer allocated");
    }
    let _ = codec.decode_eof(&mut buffer);
    drop(codec);
    assert_eq!(budget.held(), 0, "a dropped connection gives its share back");
});
