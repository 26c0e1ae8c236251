//! A stand-in for a registry in unit tests. It speaks the secure protocol
//! (as an open registry of ours, with a key of its own) and plaintext, and
//! answers a hello as ours does; it records every other request, and
//! answers each with what its `answer` makes of it. Killing it closes its listener and every
//! connection, as a killed process's kernel does; pausing it leaves them
//! open and silent, as a stopped process's kernel does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use registry::client::RegistryAddr;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::codec::Framed;
use wire::codec::{LinkCodec, MAX_REQUEST_BYTES};
use wire::secure::{self, Admission, Identity, Keys};

/// What a fake registry answers to a request.
pub(crate) type Answer = fn(&Value) -> Value;

pub(crate) struct FakeRegistry {
    pub addr: RegistryAddr,
    /// Every request, in the order answered, with the connection it came on (counting from 0).
    pub requests: Arc<Mutex<Vec<(usize, Value)>>>,
    paused: Arc<AtomicBool>,
    serving: JoinHandle<()>,
}

impl FakeRegistry {
    pub async fn start(answer: Answer) -> FakeRegistry {
        FakeRegistry::start_on("127.0.0.1:0", answer).await
    }

    /// Starts one at `addr`: where one was killed, to bring it back.
    pub async fn start_on(addr: &str, answer: Answer) -> FakeRegistry {
        let listener = TcpListener::bind(addr).await.expect("a free port");
        let addr = listener.local_addr().expect("a bound address").into();
        let (requests, paused) = (Arc::default(), Arc::default());
        let serving = tokio::spawn(serve(listener, Arc::clone(&requests), Arc::clone(&paused), answer));
        FakeRegistry { addr, requests, paused, serving }
    }

    /// Answers nothing from now on, on connections old and new, which it still accepts.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::Relaxed);
    }

    /// Closes the listener and every connection, and returns once they are closed.
    pub async fn kill(self) {
        self.serving.abort();
        let _ = self.serving.await;
        // Let the connections' tasks see their abort.
        tokio::task::yield_now().await;
    }

    pub fn requests(&self) -> Vec<(usize, Value)> {
        wire::lock(&self.requests).clone()
    }
}

async fn serve(
    listener: TcpListener,
    requests: Arc<Mutex<Vec<(usize, Value)>>>,
    paused: Arc<AtomicBool>,
    answer: Answer,
) {
    // Dropped with this task, which aborts every connection's.
    let mut connections = JoinSet::new();
    let keys = Keys::new(Identity::generate(), Admission::Open);
    for connection in 0.. {
        let Ok((stream, _)) = listener.accept().await else { return };
        let (requests, paused) = (Arc::clone(&requests), Arc::clone(&paused));
        connections.spawn(answer_each(stream, keys.clone(), connection, requests, paused, answer));
    }
}

async fn answer_each(
    mut stream: TcpStream,
    keys: Keys,
    connection: usize,
    requests: Arc<Mutex<Vec<(usize, Value)>>>,
    paused: Arc<AtomicBool>,
    answer: Answer,
) {
    // Holds the connection open, and says nothing.
    let hold = || async {
        if paused.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    };
    hold().await;
    let mut first = [0u8; 1];
    let codec = match stream.peek(&mut first).await {
        Ok(1) if secure::is_secure(first[0]) => match secure::respond(&mut stream, &keys).await {
            Ok(session) => LinkCodec::sealed(session, MAX_REQUEST_BYTES),
            Err(_) => return,
        },
        Ok(1) => LinkCodec::plain(MAX_REQUEST_BYTES),
        _ => return,
    };
    let mut lines = Framed::new(stream, codec);
    while let Some(Ok(Ok(request))) = lines.next().await {
        hold().await;
        if request.get("op").is_none() && request.get(registry::protocol::HELLO_FIELD).is_some() {
            let _ = lines.send(&serde_json::json!({"ok": true, "secure": registry::protocol::SECURE_VERSION})).await;
            return;
        }
        let reply = answer(&request);
        wire::lock(&requests).push((connection, request));
        if lines.send(&reply).await.is_err() {
            return;
        }
    }
}
