//! The first bytes of a secure session, as a stranger may send them: the
//! responder refuses them without a panic, and never completes a session
//! with a party that holds no key it could prove.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncWriteExt;
use wire::secure::{Admission, Identity, Keys};

static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime"));
static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys::new(Identity::generate(), Admission::Open));

fuzz_target!(|input: &[u8]| {
    RUNTIME.block_on(async {
        let (mut stranger, mut server) = tokio::io::duplex(64 * 1024);
        stranger.write_all(input).await.expect("the pipe takes the input");
        drop(stranger);
        assert!(wire::secure::respond(&mut server, &KEYS).await.is_err(), "a session with no one");
    });
});
