//! A lease kept alive by a Keeper outlives the death or silence of the leader and of the
//! member its keep-alive stream is on; a lease left alone expires.
//!
//! Waiting out the TTL is the point here, so these tests sleep: a lease is alive when no
//! delete came for longer than its TTL.

mod common;

use std::time::Duration;

use etcd::testing::Cluster;
use etcd::{EventKind, Keeper, LeaseId, Watch};
use tokio::time::{sleep, timeout, Instant};

/// The lease's TTL: short, so that a keep-alive stream stuck on a dead member would lose it.
const TTL: Duration = Duration::from_secs(2);

/// How often the test asks the keeper for a keep-alive.
const KEEP_ALIVE_EVERY: Duration = Duration::from_millis(300);

/// How long each disruption is watched for a delete: longer than the TTL.
const OUTLIVE: Duration = Duration::from_secs(3);

const KEY: &[u8] = b"lease/kept";

#[tokio::test]
async fn a_kept_lease_survives_kills_and_stops() {
    common::logging();
    let Some(mut cluster) = Cluster::start("lease_kept", 3).await else { return };
    let etcd = common::connect(&cluster).await;
    let lease = etcd.grant(TTL).await.unwrap();
    let written = etcd.put(KEY, b"here", Some(lease)).await.unwrap();
    let mut watch = etcd.watch(b"lease/", written + 1);
    let keeper = etcd.keeper();
    let ticking = tokio::spawn(tick(keeper.clone(), lease));

    let leader = cluster.leader().await;
    cluster.kill(leader);
    outlives("the leader's kill", &mut watch).await;
    cluster.restart(leader).await;

    let was_on = stream_endpoint(&keeper, None).await;
    let on = common::member_at(&cluster, &was_on);
    let killed = Instant::now();
    cluster.kill(on);
    let moved = stream_endpoint(&keeper, Some(&was_on)).await;
    eprintln!("the keep-alive stream moved to {moved} {:?} after its member was killed", killed.elapsed());
    outlives("the kill of the keeper's member", &mut watch).await;
    cluster.restart(on).await;

    let leader = cluster.leader().await;
    cluster.stop(leader);
    sleep(Duration::from_secs(1)).await;
    cluster.cont(leader);
    outlives("a stopped leader", &mut watch).await;

    // Stopped longer than the keeper waits for an answer, so that it has to move. etcd before
    // 3.4.31 and 3.5.13 (Debian ships 3.4.23) lets a leader that resumes after a pause as long
    // as a lease's TTL revoke the lease on its stale view of it (etcd PR 16822), so the member
    // is made a follower first: what is tested here is the keeper's deadline.
    let was_on = stream_endpoint(&keeper, None).await;
    let on = common::member_at(&cluster, &was_on);
    if cluster.leader().await == on {
        cluster.move_leader((on + 1) % 3).await;
    }
    let stopped = Instant::now();
    cluster.stop(on);
    let moved = stream_endpoint(&keeper, Some(&was_on)).await;
    eprintln!("the keep-alive stream moved to {moved} {:?} after its member was stopped", stopped.elapsed());
    sleep(Duration::from_secs(2).saturating_sub(stopped.elapsed())).await;
    cluster.cont(on);
    outlives("the stop of the keeper's member", &mut watch).await;

    assert_eq!(etcd.get(KEY).await.unwrap().as_deref(), Some(&b"here"[..]), "the kept lease's key is still there");
    ticking.abort();
}

#[tokio::test]
async fn a_lease_left_alone_expires() {
    common::logging();
    let Some(cluster) = Cluster::start("lease_alone", 3).await else { return };
    let etcd = common::connect(&cluster).await;
    let lease = etcd.grant(Duration::from_secs(1)).await.unwrap();
    let granted = Instant::now();
    let written = etcd.put(b"lease/alone", b"here", Some(lease)).await.unwrap();
    let mut watch = etcd.watch(b"lease/", written + 1);
    let event = timeout(Duration::from_secs(10), watch.next()).await.expect("the lease expires").unwrap();
    assert_eq!((event.kind, event.key.as_slice()), (EventKind::Delete, &b"lease/alone"[..]));
    eprintln!("a 1 s lease left alone was deleted {:?} after its grant", granted.elapsed());
    assert_eq!(etcd.get(b"lease/alone").await.unwrap(), None);
}

/// Asks `keeper` to keep `lease` alive, again and again.
async fn tick(keeper: Keeper, lease: LeaseId) {
    loop {
        keeper.keep_alive(lease);
        sleep(KEEP_ALIVE_EVERY).await;
    }
}

/// Watches the kept key for longer than its TTL after `what`: no delete may come.
async fn outlives(what: &str, watch: &mut Watch) {
    if let Ok(event) = timeout(OUTLIVE, watch.next()).await {
        panic!("after {what}, an event on the kept lease's key: {event:?}");
    }
}

/// The endpoint of the keeper's stream once it has one other than `not` (it reopens at the
/// next keep-alive after a loss).
async fn stream_endpoint(keeper: &Keeper, not: Option<&str>) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(endpoint) = keeper.endpoint().filter(|endpoint| Some(endpoint.as_str()) != not) {
            return endpoint;
        }
        assert!(Instant::now() < deadline, "the keeper had no stream off {not:?} for 10 s");
        sleep(Duration::from_millis(10)).await;
    }
}
