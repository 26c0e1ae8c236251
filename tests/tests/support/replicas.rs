//! Stand-ins, on loopback, for replicas of one registry that share its
//! membership: each relays its clients' connections to the one real
//! registry, so that a session through either is a session with the same
//! membership, as replicas over a shared store would serve it.
//!
//! Killing one closes its listener and its clients' side of every
//! connection, as a dead process's kernel does, but keeps the registry's
//! side open: a shared store keeps the entries a dead replica held until
//! their leases end or another session renews them, and so does the
//! registry here, as long as those sessions stay open. Each replica counts
//! the frames the registry sends on every connection (each handshake
//! message and each sealed message is one, behind its 2-byte length), so
//! that a test can await an answer it cannot read.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct Replica {
    pub addr: SocketAddr,
    accepting: JoinHandle<()>,
    /// The frames the registry has sent on each connection, in the order accepted.
    answers: watch::Receiver<Vec<usize>>,
    /// Closes the clients' side of every connection.
    kill: CancellationToken,
    /// Closes both sides of every connection.
    cut: CancellationToken,
}

impl Replica {
    /// A replica of the registry at `registry`.
    pub async fn start(registry: SocketAddr) -> anyhow::Result<Replica> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (counts, answers) = watch::channel(Vec::new());
        let (kill, cut) = (CancellationToken::new(), CancellationToken::new());
        let accepting = tokio::spawn(accept(listener, registry, Arc::new(counts), kill.clone(), cut.clone()));
        Ok(Replica { addr, accepting, answers, kill, cut })
    }

    /// Dies: it accepts nothing more, and its clients see their connections
    /// closed; the registry does not.
    pub fn kill(&self) {
        self.accepting.abort();
        self.kill.cancel();
    }

    /// Closes both sides of every connection it relays: the registry sees
    /// the sessions through it end.
    pub fn cut(&self) {
        self.cut.cancel();
    }

    /// Waits until `connections` of its connections have each carried at
    /// least `frames` frames from the registry.
    pub async fn answered(&self, connections: usize, frames: usize) -> anyhow::Result<()> {
        let mut answers = self.answers.clone();
        let enough = |counts: &Vec<usize>| counts.iter().filter(|count| **count >= frames).count() >= connections;
        tokio::time::timeout(tests::PATIENCE, answers.wait_for(enough)).await??;
        Ok(())
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.accepting.abort();
        self.cut.cancel();
    }
}

async fn accept(
    listener: TcpListener,
    registry: SocketAddr,
    counts: Arc<watch::Sender<Vec<usize>>>,
    kill: CancellationToken,
    cut: CancellationToken,
) {
    while let Ok((client, _)) = listener.accept().await {
        let Ok(upstream) = TcpStream::connect(registry).await else { continue };
        let mut index = 0;
        counts.send_modify(|counts| {
            index = counts.len();
            counts.push(0);
        });
        tokio::spawn(relay(client, upstream, index, counts.clone(), kill.clone(), cut.clone()));
    }
}

/// Relays one connection both ways, each side's end passed on to the
/// other, until it ends, or the replica is killed or cut.
async fn relay(
    client: TcpStream,
    upstream: TcpStream,
    index: usize,
    counts: Arc<watch::Sender<Vec<usize>>>,
    kill: CancellationToken,
    cut: CancellationToken,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let relaying = async {
        let up = async {
            let _ = tokio::io::copy(&mut client_read, &mut upstream_write).await;
            let _ = upstream_write.shutdown().await;
        };
        let down = async {
            let mut frames = Frames::default();
            let mut buffer = vec![0u8; 16 * 1024];
            while let Ok(read @ 1..) = upstream_read.read(&mut buffer).await {
                frames.feed(&buffer[..read]);
                counts.send_modify(|counts| counts[index] = frames.count);
                if client_write.write_all(&buffer[..read]).await.is_err() {
                    break;
                }
            }
            let _ = client_write.shutdown().await;
        };
        tokio::join!(up, down);
    };
    let killed = tokio::select! {
        () = relaying => return,
        () = kill.cancelled() => true,
        () = cut.cancelled() => false,
    };
    drop((client_read, client_write));
    if killed {
        // The registry's side stays open, as a shared store keeps the entries.
        cut.cancelled().await;
    }
}

/// Counts the frames of a byte stream, each behind its 2-byte big-endian length.
#[derive(Default)]
struct Frames {
    header: Vec<u8>,
    /// Bytes of the current frame still to come.
    left: usize,
    /// Frames begun.
    count: usize,
}

impl Frames {
    fn feed(&mut self, mut bytes: &[u8]) {
        while let Some((&first, rest)) = bytes.split_first() {
            if self.left > 0 {
                let skipped = self.left.min(bytes.len());
                self.left -= skipped;
                bytes = &bytes[skipped..];
                continue;
            }
            self.header.push(first);
            bytes = rest;
            if let [high, low] = self.header[..] {
                self.left = usize::from(u16::from_be_bytes([high, low]));
                self.header.clear();
                self.count += 1;
            }
        }
    }
}
