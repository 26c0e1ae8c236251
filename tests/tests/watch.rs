//! The registry's watch: every change to the membership, in order, by
//! revision; a watcher that resumes misses nothing, one that resumes too
//! late starts again from a snapshot, and one that never reads is cut off.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use registry::client::{Client, Watch};
use registry::events::Event as RegistryEvent;
use registry::protocol::{ErrorCode, NativeRequest, Since};
use registry::server::WATCH_TICK;
use registry::watch::{Change, WatchEvent, WatchStart};
use serde_json::Value;
use tests::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Registers `name` at 127.0.0.1:`port` in group 1, on its own connection
/// (which it leaves open: the entry lives until its lease ends).
async fn join(registry: &Registry, name: &str, port: u16) -> anyhow::Result<(Client, String)> {
    let mut client = registry.client().await?;
    let request = NativeRequest::Register {
        ip: Some(Ipv4Addr::LOCALHOST.into()),
        puerto: port,
        name,
        group: Some(1),
        incarnation: None,
        ticket_key: None,
    };
    let id = match client.register(&request).await? {
        registry::client::Joined::Leased(registered) => registered.id,
        original => anyhow::bail!("a registry of ours answers with a lease: {original:?}"),
    };
    Ok((client, id))
}

/// The next `count` changes, as (revision, what, whose name).
async fn next_changes(watch: &mut Watch, count: usize) -> anyhow::Result<Vec<(u64, String)>> {
    let mut changes = Vec::new();
    for _ in 0..count {
        let WatchEvent { revision, change } = watch.next().await?;
        let text = match change {
            Change::Joined { entry } => format!("joined {}", entry.name),
            Change::Left { entry, reason } => format!("left {} {reason:?}", entry.name),
            Change::Coordinator { group, coordinator } => {
                format!("coordinator {group} {}", coordinator.map_or("none".into(), |c| c.name))
            }
            Change::Progress => anyhow::bail!("`next` skips progress messages"),
        };
        changes.push((revision, text));
    }
    Ok(changes)
}

fn numbered(from: u64, texts: &[&str]) -> Vec<(u64, String)> {
    texts.iter().zip(from..).map(|(text, revision)| (revision, text.to_string())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_sees_joins_departures_expiry_and_coordinator_changes_in_order() -> anyhow::Result<()> {
    let registry = Registry::start(&["--ttl", "1s", "--sweep-interval", "100ms"]).await?;
    let mut watch = registry.client().await?.watch(None).await?;
    assert_eq!(watch.start.start, WatchStart::Snapshot);
    assert_eq!(watch.start.revision, 0);
    assert_eq!(watch.start.snapshot.as_ref().map(|s| s.entries.len()), Some(0));

    let (mut a, a_id) = join(&registry, "a", 1).await?;
    let (_b, _) = join(&registry, "b", 2).await?;
    a.deregister(&a_id).await?;
    // b never heartbeats: its lease ends a second after it joined.
    let changes = next_changes(&mut watch, 7).await?;
    assert_eq!(
        changes,
        numbered(
            1,
            &[
                "joined a",
                "coordinator 1 a",
                "joined b",
                "left a Deregistered",
                "coordinator 1 b",
                "left b Expired",
                "coordinator 1 none"
            ]
        )
    );

    // A watcher that starts now gets the same membership as a snapshot.
    let (_c, _) = join(&registry, "c", 3).await?;
    let later = registry.client().await?.watch(None).await?;
    let snapshot = later.start.snapshot.expect("a watch without since starts from a snapshot");
    assert_eq!(later.start.revision, 9);
    assert_eq!(snapshot.entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["c"]);
    assert_eq!(snapshot.coordinators.get(&1), Some(&snapshot.entries[0].id));
    assert_eq!(next_changes(&mut watch, 2).await?, numbered(8, &["joined c", "coordinator 1 c"]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_resumes_after_its_revision_or_from_a_snapshot_once_the_history_has_moved_on() -> anyhow::Result<()> {
    let registry = Registry::start(&["--watch-history", "4"]).await?;
    let mut watch = registry.client().await?.watch(None).await?;
    let epoch = watch.start.epoch.clone();
    let mut clients = Vec::new();
    clients.push(join(&registry, "a", 1).await?);
    assert_eq!(next_changes(&mut watch, 1).await?, numbered(1, &["joined a"]));
    drop(watch);

    // Changes 2 to 4 happen while nobody watches.
    clients.push(join(&registry, "b", 2).await?);
    clients.push(join(&registry, "c", 3).await?);
    let since = Since { revision: 1, epoch: Some(epoch.clone()) };
    let mut resumed = registry.client().await?.watch(Some(&since)).await?;
    assert_eq!((resumed.start.start, resumed.start.revision), (WatchStart::Resumed, 1));
    assert!(resumed.start.snapshot.is_none());
    assert_eq!(next_changes(&mut resumed, 3).await?, numbered(2, &["coordinator 1 a", "joined b", "joined c"]));

    // Two more changes: the history (4) no longer holds revision 2.
    clients.push(join(&registry, "d", 4).await?);
    clients.push(join(&registry, "e", 5).await?);
    let too_late = registry.client().await?.watch(Some(&since)).await?;
    assert_eq!((too_late.start.start, too_late.start.revision), (WatchStart::Compacted, 6));
    let snapshot = too_late.start.snapshot.expect("compacted comes with a snapshot");
    let names: Vec<&str> = snapshot.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "d", "e"]);

    let other_run = Since { revision: 6, epoch: Some("another-run".into()) };
    let elsewhere = registry.client().await?.watch(Some(&other_run)).await?;
    assert_eq!(elsewhere.start.start, WatchStart::Compacted, "revisions of another run mean nothing here");

    let ahead = Since { revision: 99, epoch: None };
    let error = registry.client().await?.watch(Some(&ahead)).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::BadRequest), "{error:#}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_further_behind_than_the_history_is_told_so_and_resumes_from_a_snapshot() -> anyhow::Result<()> {
    // Sweeps at start-up, then 3 s later: all 20 leases have ended by then.
    let registry = Registry::start(&["--watch-history", "8", "--ttl", "1s", "--sweep-interval", "3s"]).await?;
    let mut clients = Vec::new();
    for i in 1..=20 {
        clients.push(join(&registry, &format!("n{i}"), i).await?);
    }
    let mut watch = registry.client().await?.watch(None).await?;
    let seen = watch.start.revision;
    assert_eq!(watch.start.snapshot.as_ref().map(|s| s.entries.len()), Some(20));

    // Nobody heartbeats: one sweep removes all 20, 21 changes at once (the
    // last one: group 1 has no coordinator), more than the history holds.
    let error = watch.next().await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::Lagging), "{error:#}");
    let message = format!("{:?}", error);
    assert!(message.contains(&format!("watch again with since {seen}")), "{message}");

    let since = Since { revision: seen, epoch: Some(watch.start.epoch.clone()) };
    let again = registry.client().await?.watch(Some(&since)).await?;
    assert_eq!((again.start.start, again.start.revision), (WatchStart::Compacted, seen + 21));
    assert_eq!(again.start.snapshot.map(|s| s.entries.len()), Some(0));
    Ok(())
}

/// Joins made in a burst reach a watcher a batch at a time, at most one a
/// [`WATCH_TICK`] (the registry sends what was made during a tick together),
/// every change in order, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_joins_reaches_a_watcher_in_batches_in_order_and_whole() -> anyhow::Result<()> {
    const JOINS: u16 = 40;
    // Each join, and group 1's first coordinator.
    let changes = usize::from(JOINS) + 1;
    let registry = Registry::start(&[]).await?;
    let mut watch = registry.client().await?.watch(None).await?;
    let started = Instant::now();
    let names: Vec<String> = (1..=JOINS).map(|i| format!("n{i}")).collect();
    let joining = futures::future::try_join_all(names.iter().zip(1..).map(|(name, port)| join(&registry, name, port)));
    let reading = async {
        let mut batches = Vec::new();
        while batches.iter().map(Vec::len).sum::<usize>() < changes {
            batches.push(watch.next_batch(changes).await?);
        }
        anyhow::Ok(batches)
    };
    let (joined, batches) = tokio::join!(joining, reading);
    let (_sessions, batches) = (joined?, batches?);
    let ticks = started.elapsed().as_millis() / WATCH_TICK.as_millis();

    let received: Vec<&WatchEvent> = batches.iter().flatten().collect();
    let revisions: Vec<u64> = received.iter().map(|event| event.revision).collect();
    assert_eq!(revisions, (1..=changes as u64).collect::<Vec<_>>());
    let names: BTreeSet<&str> = received
        .iter()
        .filter_map(|event| match &event.change {
            Change::Joined { entry } => Some(entry.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(names.len(), usize::from(JOINS));
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    assert!(sizes.len() < changes, "{changes} changes came one by one: {sizes:?}");
    assert!(sizes.len() as u128 <= ticks + 2, "{sizes:?} in {ticks} ticks");
    Ok(())
}

/// Opens a watch in plaintext by hand and never reads from it.
async fn silent_watcher(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpStream> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(b"{\"op\":\"watch\"}\n").await?;
    Ok(stream)
}

fn resident_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_never_reads_is_cut_off_and_the_registry_stays_small() -> anyhow::Result<()> {
    let registry = Registry::start(&["--watch-history", "64", "--write-timeout", "500ms"]).await?;
    let mut silent = silent_watcher(registry.addr).await?;
    let before = resident_kb(registry.process.pid().as_raw() as u32)?;

    // Changes, with long names so that they fill the socket buffers soon,
    // until the registry gives up on the watcher.
    let mut client = registry.client().await?;
    let name = "n".repeat(120);
    let mut changes = 0u64;
    while registry.process.events(RegistryEvent::WatcherCutOff).is_empty() {
        for _ in 0..100 {
            let request = NativeRequest::Register {
                ip: Some(Ipv4Addr::LOCALHOST.into()),
                puerto: 1,
                name: &name,
                group: Some(1),
                incarnation: None,
                ticket_key: None,
            };
            client.register(&request).await?;
        }
        changes += 100;
        anyhow::ensure!(changes < 1_000_000, "the registry never cut the watcher off");
    }
    let cut_off = &registry.process.events(RegistryEvent::WatcherCutOff)[0];
    let after = resident_kb(registry.process.pid().as_raw() as u32)?;
    assert!(after < before + 16 * 1024, "the registry grew from {before} kB to {after} kB");

    // What it was sent before the cut is the changes from revision 1 on, in
    // order, perhaps ended by `lagging` (or by a change cut short in the
    // middle, when a write timed out); then the registry hung up.
    let mut received = Vec::new();
    silent.read_to_end(&mut received).await?;
    let complete = &received[..received.iter().rposition(|b| *b == b'\n').map_or(0, |end| end + 1)];
    let mut lines = complete.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let start: Value = serde_json::from_slice(lines.next().expect("the watch started"))?;
    assert_eq!(start["start"], "snapshot");
    let mut sent = start["revision"].as_u64().expect("the start names its revision");
    for line in lines {
        let message: Value = serde_json::from_slice(line)?;
        if message.get("ok").is_some() {
            assert_eq!(message["error"]["code"], "lagging", "{message}");
            continue;
        }
        sent += 1;
        assert_eq!(message["revision"], sent, "{message}");
    }
    assert!(sent >= cut_off["seen"].as_u64().unwrap_or(u64::MAX), "changes up to {sent} read, {cut_off}");
    Ok(())
}

/// A watch on a quiet registry is sent `progress` (its revision, no change)
/// every five seconds, by which a watcher tells quiet from dead.
#[tokio::test]
async fn a_quiet_watch_is_sent_progress() -> anyhow::Result<()> {
    let registry = Registry::start(&[]).await?;
    let mut watcher = silent_watcher(registry.addr).await?;
    let mut received = Vec::new();
    let mut chunk = [0u8; 512];
    let progress = tokio::time::timeout(tests::PATIENCE, async {
        loop {
            let n = watcher.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "the registry hung up on a quiet watch");
            received.extend_from_slice(&chunk[..n]);
            let lines: Vec<Value> =
                received.split(|b| *b == b'\n').filter_map(|line| serde_json::from_slice(line).ok()).collect();
            if let Some(progress) = lines.iter().find(|line| line["event"] == "progress") {
                return anyhow::Ok(progress.clone());
            }
        }
    })
    .await??;
    assert_eq!(progress["revision"], 0, "{progress}");
    Ok(())
}
