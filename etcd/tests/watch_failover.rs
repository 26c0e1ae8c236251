//! A watch sees every revision of a stream of puts exactly once, in order, while the member
//! it is on is killed, or stopped and resumed.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use etcd::testing::Cluster;
use etcd::{Event, EventKind, Watch};
use tokio::time::{sleep, timeout, Instant};

/// How many puts the writer makes.
const PUTS: usize = 300;

/// After how many of them the watch's member is disrupted.
const DISRUPT_AFTER: usize = 100;

/// The writer's pace: slow enough that the disruption lands mid-stream.
const PUT_EVERY: Duration = Duration::from_millis(5);

/// How long a stopped member stays stopped.
const STOPPED_FOR: Duration = Duration::from_secs(2);

/// The whole run's bound: generous, since every put may wait out a failover.
const RUN_WITHIN: Duration = Duration::from_secs(90);

#[derive(Clone, Copy, Debug)]
enum Disruption {
    Kill,
    Stop,
}

#[tokio::test]
async fn a_watch_survives_the_kill_of_its_member() {
    watch_through("watch_kill", Disruption::Kill).await;
}

#[tokio::test]
async fn a_watch_survives_a_stopped_member() {
    watch_through("watch_stop", Disruption::Stop).await;
}

async fn watch_through(suite: &str, disruption: Disruption) {
    common::logging();
    let Some(mut cluster) = Cluster::start(suite, 3).await else { return };
    let etcd = common::connect(&cluster).await;
    let from = etcd.revision().await.unwrap() + 1;
    let mut watch = etcd.watch(b"w/", from);

    let writer = etcd.clone();
    let writing = tokio::spawn(async move {
        for i in 1..=PUTS {
            // The value is the nonce: a put retried after a failover may land twice.
            writer.put(format!("w/{i}").as_bytes(), i.to_string().as_bytes(), None).await.expect("a put");
            sleep(PUT_EVERY).await;
        }
    });

    let mut seen = BTreeSet::new();
    let mut last = from - 1;
    let mut disrupted: Option<(usize, Instant)> = None;
    let mut moved_after = None;
    let mut resume_at = None;
    let reading = async {
        while seen.len() < PUTS {
            let event = tokio::select! {
                event = watch.next() => event.expect("the watch delivers"),
                () = sleep_until_some(resume_at) => {
                    let (on, _) = disrupted.expect("a member was stopped");
                    cluster.cont(on);
                    resume_at = None;
                    continue;
                }
            };
            check_next(&event, last);
            last = event.revision;
            seen.insert(String::from_utf8(event.value).unwrap());
            if let Some((on, at)) = disrupted {
                if moved_after.is_none() && watch.endpoint().is_some_and(|now| common::member_at(&cluster, now) != on) {
                    moved_after = Some(at.elapsed());
                }
            } else if seen.len() == DISRUPT_AFTER {
                let on = common::member_at(&cluster, watch.endpoint().expect("a watch that delivers has a stream"));
                match disruption {
                    Disruption::Kill => cluster.kill(on),
                    Disruption::Stop => {
                        cluster.stop(on);
                        resume_at = Some(Instant::now() + STOPPED_FOR);
                    }
                }
                disrupted = Some((on, Instant::now()));
            }
        }
    };
    timeout(RUN_WITHIN, reading).await.unwrap_or_else(|_| panic!("{suite}: the watch stalled at revision {last}"));
    if let Some((on, _)) = disrupted.filter(|_| resume_at.is_some()) {
        cluster.cont(on);
    }
    writing.await.unwrap();

    let expected: BTreeSet<String> = (1..=PUTS).map(|i| i.to_string()).collect();
    assert_eq!(seen, expected, "{suite}: every put is seen");
    let moved_after = moved_after.unwrap_or_else(|| panic!("{suite}: the watch never left its {disruption:?} member"));
    eprintln!(
        "{suite}: {} revisions from {from} seen in order; the first event through another member came \
         {moved_after:?} after the {disruption:?}",
        last - from + 1
    );
    assert_no_more(&mut watch, last, &seen).await;
}

/// `event` is a put of ours at the revision right after `last`: no gap, no repeat, no step
/// back.
fn check_next(event: &Event, last: i64) {
    assert_eq!(event.revision, last + 1, "revisions are contiguous; got {event:?}");
    assert_eq!(event.kind, EventKind::Put);
    assert!(event.key.starts_with(b"w/"));
}

/// Whatever the watch delivers after the last put follows on without a gap or a repeat, and
/// can only be a late copy of a put already seen: one that a stopped member received, that
/// timed out and went to another member, and that the member applied anyway once resumed.
async fn assert_no_more(watch: &mut Watch, mut last: i64, seen: &BTreeSet<String>) {
    while let Ok(event) = timeout(Duration::from_millis(300), watch.next()).await {
        let event = event.expect("the watch delivers");
        check_next(&event, last);
        last = event.revision;
        assert!(seen.contains(&String::from_utf8_lossy(&event.value).into_owned()), "an unknown put: {event:?}");
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
