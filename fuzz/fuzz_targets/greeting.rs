//! What a node's listener reads from strangers: a plaintext greeting parses
//! or is refused with a short message, and a greeting with a ticket never
//! opens under a key it was not sealed for.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use wire::secure::{Identity, PublicKey};
use wire::ticket::{TicketGreeting, TicketKey};

static RECEIVER: LazyLock<(TicketKey, PublicKey)> =
    LazyLock::new(|| (TicketKey::generate(), Identity::generate().public()));

fuzz_target!(|input: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(input) else { return };
    let from = "127.0.0.1:40000".parse().expect("an address");
    if let Err(refusal) = node::greeting::parse(value.clone(), from) {
        assert!(refusal.message.len() <= 512, "a {}-byte refusal", refusal.message.len());
    }
    if let Ok(sent) = serde_json::from_value::<TicketGreeting>(value) {
        let (key, me) = &*RECEIVER;
        assert!(key.open(&sent.ticket, *me, 0).is_err(), "a ticket nobody issued opened");
    }
});
