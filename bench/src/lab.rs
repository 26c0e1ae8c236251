//! `lab`: the group lab's programs next to ours. A group of 10 (5 node
//! processes, and 5 members joined with `JOIN` that this process answers
//! `ACK` for, as the lab's internal client does) is sent 200 messages, one
//! at a time, two ways: by an external client's `SEND` on one kept
//! connection, from the write until `Mensaje enviado al grupo 1`; and by a
//! kept [`node::group::Sender`], ours. Then, for reference in the same run,
//! a group of 10 node processes of ours alone, as the `multicast` section
//! measures it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use node::group::Sender;
use registry::client::RegistryAddr;
use registry::protocol::CoordinatorAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::timeout;

use crate::cli::Cli;
use crate::multicast::{self, MULTICAST_DEADLINES, MULTICAST_PATIENCE, MULTICAST_WARMUP};
use crate::report::{percentile, Rows, Target};

/// Ours and theirs in the mixed group.
const OURS: usize = 5;
const THEIRS: usize = 5;
/// Messages timed each way.
const SENDS: usize = 200;

pub(crate) async fn bench_lab(cli: &Cli, rows: &Rows, node_bin: &Path) -> anyhow::Result<()> {
    let section = format!("lab N={OURS}+{THEIRS}");
    crate::one_size(rows, &section, bench_mixed(cli, rows, &section, node_bin)).await;
    let alone = format!("lab: ours alone N={}", OURS + THEIRS);
    let bench = multicast::bench_multicast(cli, rows, &alone, OURS + THEIRS, SENDS, node_bin);
    crate::one_size(rows, &alone, bench).await;
    Ok(())
}

async fn bench_mixed(cli: &Cli, rows: &Rows, section: &str, node_bin: &Path) -> anyhow::Result<()> {
    multicast::in_group(cli, rows, section, OURS, node_bin, async |registry, _| {
        let coordinator = group_server(registry).await?;
        let (acks, _members) = join(coordinator).await?;
        let external = sends(coordinator, &acks).await?;
        report(rows, section, "external client's SEND", &external);
        let kept = Sender::new(RegistryAddr::from(registry), &crate::spawn::client_keys(), MULTICAST_DEADLINES);
        let ours =
            timed(async |i| multicast::multicast(&kept, &format!("bench {i}"), OURS + THEIRS).await.map(drop)).await?;
        report(rows, section, "our kept sender", &ours);
        Ok(())
    })
    .await
}

/// Group 1's coordinator, as the lab's group server dialect asks the registry.
async fn group_server(registry: SocketAddr) -> anyhow::Result<SocketAddr> {
    let mut stream = TcpStream::connect(registry).await?;
    stream.write_all(b"1").await?;
    let mut reply = Vec::new();
    timeout(MULTICAST_PATIENCE, stream.read_to_end(&mut reply)).await??;
    let coordinator: CoordinatorAddr = serde_json::from_slice(&reply)
        .with_context(|| format!("the group server said {:?}", String::from_utf8_lossy(&reply)))?;
    Ok(SocketAddr::new(coordinator.address.parse()?, coordinator.port))
}

/// `THEIRS` members joined with `JOIN`, each answering every message `ACK`;
/// the count of messages they got.
async fn join(coordinator: SocketAddr) -> anyhow::Result<(Arc<AtomicUsize>, JoinSet<()>)> {
    let (got, mut members) = (Arc::new(AtomicUsize::new(0)), JoinSet::new());
    for _ in 0..THEIRS {
        let mut stream = TcpStream::connect(coordinator).await?;
        stream.write_all(b"JOIN").await?;
        let got = got.clone();
        members.spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(1..) = stream.read(&mut buf).await {
                got.fetch_add(1, Ordering::Relaxed);
                if stream.write_all(b"ACK").await.is_err() {
                    return;
                }
            }
        });
    }
    Ok((got, members))
}

/// `SEND`s on one connection: the warm-up goes on until a message reaches
/// every member that joined (the coordinator may read a `JOIN` after a
/// `SEND` that was written later), then the timed ones.
async fn sends(coordinator: SocketAddr, got: &AtomicUsize) -> anyhow::Result<Vec<u64>> {
    let mut client = TcpStream::connect(coordinator).await?;
    for warm in 0.. {
        let before = got.load(Ordering::Relaxed);
        send(&mut client, &format!("warm-up {warm}")).await?;
        if got.load(Ordering::Relaxed) - before == THEIRS {
            break;
        }
        if warm > 100 {
            bail!("the members that joined never all got a message");
        }
    }
    timed(async |i| send(&mut client, &format!("bench {i}")).await).await
}

/// One `SEND`, answered `Mensaje enviado al grupo 1`.
async fn send(client: &mut TcpStream, text: &str) -> anyhow::Result<()> {
    client.write_all(format!("SEND{text}").as_bytes()).await?;
    let mut buf = [0u8; 256];
    let n = timeout(MULTICAST_PATIENCE, client.read(&mut buf)).await??;
    match &buf[..n] {
        b"Mensaje enviado al grupo 1" => Ok(()),
        other => bail!("the coordinator answered {:?} to SEND{text}", String::from_utf8_lossy(other)),
    }
}

/// `SENDS` calls of `send`, after the warm-up, each timed; sorted.
async fn timed(mut send: impl AsyncFnMut(usize) -> anyhow::Result<()>) -> anyhow::Result<Vec<u64>> {
    for i in 0..MULTICAST_WARMUP {
        send(i).await?;
    }
    let mut latencies = Vec::with_capacity(SENDS);
    for i in 0..SENDS {
        let sent = Instant::now();
        send(i).await?;
        latencies.push(sent.elapsed().as_nanos() as u64);
    }
    latencies.sort_unstable();
    Ok(latencies)
}

fn report(rows: &Rows, section: &str, how: &str, latencies: &[u64]) {
    let over = format!("{} multicasts to {OURS} nodes and {THEIRS} JOIN members, one at a time", latencies.len());
    let ms = |p| percentile(latencies, p) / 1e6;
    rows.push(section, format!("{how}: latency p50"), Some(ms(0.5)), "ms", None::<Target>, over);
    rows.push(section, format!("{how}: latency p99"), Some(ms(0.99)), "ms", None::<Target>, "");
}
