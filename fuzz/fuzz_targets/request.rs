//! A registry request as a stranger may send it: any JSON parses to a
//! request or to a refusal, and a refusal echoes little of what was sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry::protocol::Request;

fuzz_target!(|input: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(input) else { return };
    if let Err(refusal) = Request::parse(value) {
        assert!(refusal.message.len() <= 512, "a {}-byte refusal", refusal.message.len());
    }
});
