//! Lease expiry through a real server, with the clock under test control.
//!
//! With the clock paused, tokio advances it only when every task is idle, so
//! the server's sweeper and the client's requests interleave deterministically
//! and a 15 s lease is tested without waiting 15 s.

use std::time::Duration;

use registry::client::{Client, Joined, RegistryAddr};
use registry::protocol::{ErrorCode, NativeRequest};
use registry::server::{self, Config};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::advance;

async fn start() -> (RegistryAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().into();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::run(listener, Config::default(), stopped));
    (addr, stop)
}

/// A fresh connection per exchange, as nodes make them: the 10 s idle
/// timeout would close one kept across the long advances below.
async fn client(addr: &RegistryAddr) -> Client {
    Client::connect(addr, Duration::from_secs(60)).await.unwrap()
}

async fn join(addr: &RegistryAddr, name: &str, port: u16) -> String {
    let request = NativeRequest::Register {
        ip: Some("127.0.0.1".parse().unwrap()),
        puerto: port,
        name,
        group: None,
        incarnation: None,
        ticket_key: None,
    };
    match client(addr).await.register(&request).await.unwrap() {
        Joined::Leased(registered) => registered.id,
        Joined::Original(_) => panic!("our registry grants leases"),
    }
}

async fn names(addr: &RegistryAddr) -> Vec<String> {
    client(addr).await.list().await.unwrap().into_iter().map(|c| c.name).collect()
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_an_entry_and_silence_expires_it() {
    let (addr, _stop) = start().await;
    let kept = join(&addr, "kept", 1).await;
    join(&addr, "silent", 2).await;

    advance(Duration::from_secs(10)).await;
    assert_eq!(client(&addr).await.heartbeat(&kept).await.unwrap(), Duration::from_secs(15));
    advance(Duration::from_secs(6)).await;
    assert_eq!(names(&addr).await, ["kept"], "silent's lease ran out at 15 s");

    advance(Duration::from_secs(10)).await;
    assert!(names(&addr).await.is_empty(), "kept's renewed lease ran out at 25 s");
    let error = client(&addr).await.heartbeat(&kept).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::UnknownId));
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let (addr, _stop) = start().await;
    let mut silent = TcpStream::connect((addr.host.as_str(), addr.port)).await.unwrap();
    advance(Config::default().idle_timeout - Duration::from_millis(1)).await;
    assert_eq!(names(&addr).await, Vec::<String>::new(), "still serving others");
    advance(Duration::from_millis(2)).await;
    let mut buf = [0u8; 16];
    assert_eq!(silent.read(&mut buf).await.unwrap(), 0, "the server hung up");
}
