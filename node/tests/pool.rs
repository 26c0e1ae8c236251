//! The coordinator's session pool against a scripted peer.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use node::exchange::{Deadlines, Pool, Target};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;
use wire::codec::{LinkCodec, MAX_REQUEST_BYTES};
use wire::secure::{self, Admission, Identity, Keys};

const DEADLINES: Deadlines = Deadlines { connect: Duration::from_secs(5), reply: Duration::from_secs(5) };

fn keys() -> Keys {
    Keys::new(Identity::generate(), Admission::Open)
}

/// A peer that answers `per_connection` requests in each secure session it
/// accepts, then hangs up; it reports how many connections it accepted.
async fn peer(per_connection: usize) -> (Target, tokio::sync::watch::Receiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let keys = keys();
    let target = Target { addr: listener.local_addr().unwrap(), key: keys.identity.public() };
    let (accepted, watch) = tokio::sync::watch::channel(0);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            accepted.send_modify(|n| *n += 1);
            let session = secure::respond(&mut stream, &keys).await.unwrap();
            let mut framed = Framed::new(stream, LinkCodec::sealed(session, MAX_REQUEST_BYTES));
            for _ in 0..per_connection {
                let Some(Ok(Ok(request))) = framed.next().await else { break };
                framed.send(&json!({"ok": true, "ack": request["n"]})).await.unwrap();
            }
        }
    });
    (target, watch)
}

fn request(n: u32) -> Value {
    json!({ "n": n })
}

#[tokio::test]
async fn requests_share_a_kept_session() {
    let (target, accepted) = peer(usize::MAX).await;
    let (pool, keys) = (Pool::default(), keys());
    for n in 0..5 {
        let answer = pool.request(target, &keys, &request(n), DEADLINES).await.unwrap();
        assert_eq!(answer["ack"], n);
    }
    assert_eq!(*accepted.borrow(), 1, "five requests, one connection");
}

#[tokio::test]
async fn a_kept_session_the_peer_closed_is_replaced_and_the_request_sent_again() {
    // The peer hangs up after each answer, as a member does once idle.
    let (target, accepted) = peer(1).await;
    let (pool, keys) = (Pool::default(), keys());
    for n in 0..3 {
        let answer = pool.request(target, &keys, &request(n), DEADLINES).await.unwrap();
        assert_eq!(answer["ack"], n, "request {n} got its own answer");
    }
    assert_eq!(*accepted.borrow(), 3);
}

#[tokio::test]
async fn a_peer_proving_another_key_gets_nothing() {
    let (target, _) = peer(usize::MAX).await;
    let impostor = Target { key: Identity::generate().public(), ..target };
    let error = Pool::default().request(impostor, &keys(), &request(1), DEADLINES).await.unwrap_err();
    assert!(wire::Chain(&error).to_string().contains("not"), "{}", wire::Chain(&error));
    assert!(!error.is_transient(), "a wrong key is final");
}
