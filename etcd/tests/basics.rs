//! The unary calls against a real 3-member cluster, compaction, and an endpoint where nothing
//! listens.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use etcd::testing::Cluster;
use etcd::{Etcd, EtcdError, EventKind};

#[tokio::test]
async fn put_get_grant_revoke_revision_and_members() {
    common::logging();
    let Some(cluster) = Cluster::start("basics", 3).await else { return };
    let etcd = common::connect(&cluster).await;

    let before = etcd.revision().await.unwrap();
    let written = etcd.put(b"basics/a", b"1", None).await.unwrap();
    assert_eq!(written, before + 1, "a put makes exactly one revision");
    assert_eq!(etcd.revision().await.unwrap(), written);
    assert_eq!(etcd.get(b"basics/a").await.unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(etcd.get(b"basics/missing").await.unwrap(), None);

    let lease = etcd.grant(Duration::from_millis(1200)).await.unwrap();
    etcd.put(b"basics/leased", b"2", Some(lease)).await.unwrap();
    etcd.revoke(lease).await.unwrap();
    assert_eq!(etcd.get(b"basics/leased").await.unwrap(), None, "revoking a lease deletes its keys");
    etcd.revoke(lease).await.expect("revoking a lease that is gone is no error");
    let refused = etcd.put(b"basics/leased", b"3", Some(lease)).await.unwrap_err();
    assert!(matches!(refused, EtcdError::Rejected { op: "put a key", .. }), "{refused}");

    let mut ids = Vec::new();
    for endpoint in cluster.endpoints() {
        let alone = Etcd::connect(&[endpoint], Duration::from_secs(5)).await.unwrap();
        ids.push(alone.cluster_id());
    }
    assert!(ids.iter().all(|&id| id == etcd.cluster_id() && id != 0), "cluster ids {ids:?}, {}", etcd.cluster_id());

    let members = etcd.members().await.unwrap();
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|member| member.reachable));
    let leaders: Vec<&str> =
        members.iter().filter(|member| member.leader).map(|member| member.client_url.as_str()).collect();
    let leader = cluster.leader().await;
    assert_eq!(leaders, [format!("http://{}", cluster.endpoints()[leader])]);
    let mut names: Vec<&str> = members.iter().map(|member| member.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["m0", "m1", "m2"]);
}

#[tokio::test]
async fn a_compacted_start_revision_is_an_error() {
    common::logging();
    let Some(cluster) = Cluster::start("compaction", 3).await else { return };
    let etcd = common::connect(&cluster).await;
    let first = etcd.put(b"compact/0", b"0", None).await.unwrap();
    for i in 1..5 {
        etcd.put(format!("compact/{i}").as_bytes(), b"x", None).await.unwrap();
    }
    cluster.compact(first + 2).await.unwrap();

    let mut gone = etcd.watch(b"compact/", first);
    match gone.next().await {
        Err(EtcdError::Compacted { requested, compact_revision }) => {
            assert_eq!((requested, compact_revision), (first, first + 2));
        }
        other => panic!("watching compacted history gave {other:?}"),
    }
    let mut kept = etcd.watch(b"compact/", first + 3);
    let event = kept.next().await.unwrap();
    assert_eq!((event.kind, event.key.as_slice(), event.revision), (EventKind::Put, &b"compact/3"[..], first + 3));
}

#[tokio::test]
async fn connecting_where_nothing_listens_fails_within_the_timeout() {
    common::logging();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let endpoint = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let err = Etcd::connect(std::slice::from_ref(&endpoint), Duration::from_secs(1)).await.unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "failing took {took:?}");
    assert!(matches!(err, EtcdError::Unreachable { op: "connect to etcd", .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains(&endpoint), "{message}");
    eprintln!("connect to a closed port failed after {took:?}: {message}");
}
