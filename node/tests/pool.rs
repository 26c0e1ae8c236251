//! The coordinator's connection pool against a scripted peer.

use std::time::Duration;

use node::exchange::{Deadlines, Pool};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const DEADLINES: Deadlines = Deadlines { connect: Duration::from_secs(5), reply: Duration::from_secs(5) };

/// A peer that answers `per_connection` requests on each connection it
/// accepts, then hangs up; it reports how many connections it accepted.
async fn peer(per_connection: usize) -> (std::net::SocketAddr, tokio::sync::watch::Receiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, watch) = tokio::sync::watch::channel(0);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            accepted.send_modify(|n| *n += 1);
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            for _ in 0..per_connection {
                let Ok(Some(line)) = lines.next_line().await else { break };
                let request: Value = serde_json::from_str(&line).unwrap();
                let answer = serde_json::json!({"ok": true, "ack": request["n"]});
                write.write_all(format!("{answer}\n").as_bytes()).await.unwrap();
            }
        }
    });
    (addr, watch)
}

fn request(n: u32) -> Vec<u8> {
    format!("{{\"n\":{n}}}\n").into_bytes()
}

#[tokio::test]
async fn requests_share_a_kept_connection() {
    let (addr, accepted) = peer(usize::MAX).await;
    let pool = Pool::default();
    for n in 0..5 {
        let answer = pool.request(addr, &request(n), DEADLINES).await.unwrap();
        assert_eq!(answer["ack"], n);
    }
    assert_eq!(*accepted.borrow(), 1, "five requests, one connection");
}

#[tokio::test]
async fn a_kept_connection_the_peer_closed_is_replaced_and_the_request_sent_again() {
    // The peer hangs up after each answer, as a member does once idle.
    let (addr, accepted) = peer(1).await;
    let pool = Pool::default();
    for n in 0..3 {
        let answer = pool.request(addr, &request(n), DEADLINES).await.unwrap();
        assert_eq!(answer["ack"], n, "request {n} got its own answer");
    }
    assert_eq!(*accepted.borrow(), 3);
}
