//! `detection`: how long after a `kill -9` every other node has logged the
//! departure (`peer_left`), over 50 kills in meshes of 10 and 100; each
//! killed node is replaced, so the mesh keeps its size.

use std::time::Instant;

use ::tests::{is, Node, Registry};
use futures::future::try_join_all;
use nix::sys::signal::Signal;
use node::events::Event;

use crate::report::{percentile, Rows, Target};

/// Mesh sizes.
const SIZES: [usize; 2] = [10, 100];
const KILLS: usize = 50;

pub(crate) async fn bench_detection(rows: &Rows) -> anyhow::Result<()> {
    for nodes in SIZES {
        let section = format!("detection N={nodes}");
        crate::one_size(rows, &section, detection(rows, &section, nodes)).await;
    }
    Ok(())
}

async fn detection(rows: &Rows, section: &str, size: usize) -> anyhow::Result<()> {
    let registry = Registry::start(&[]).await?;
    let mut nodes = Node::start_in_order(registry.addr, size, &[]).await?;
    for node in &nodes {
        node.process.wait_for_event(Event::Watching).await?;
    }
    let mut detections_ns = Vec::with_capacity(KILLS);
    for kill in 0..KILLS {
        let victim = nodes.remove(kill % nodes.len());
        let killed = Instant::now();
        victim.process.signal(Signal::SIGKILL);
        let heard = nodes.iter().map(|node| {
            node.process.wait_for_lines(1, |l| is(l, Event::PeerLeft) && l["peer_name"] == victim.name.as_str())
        });
        try_join_all(heard).await?;
        detections_ns.push(killed.elapsed().as_nanos() as u64);
        drop(victim);
        nodes.push(replacement(&registry, &format!("node-{}", size + kill + 1)).await?);
    }
    detections_ns.sort_unstable();
    let ms = |p| percentile(&detections_ns, p) / 1e6;
    let note = format!("from kill -9 until all {} others logged peer_left, over {KILLS} kills", size - 1);
    rows.info(section, "detection p50", ms(0.50), "ms", note);
    let max = format!("max {:.1} ms", ms(1.0));
    rows.push(section, "detection p99", Some(ms(0.99)), "ms", Some(Target::AtMost(1000.0)), max);
    Ok(())
}

/// A new node, once it has greeted every other one and follows the membership.
async fn replacement(registry: &Registry, name: &str) -> anyhow::Result<Node> {
    let node = Node::start(registry.addr, name, &[]).await?;
    let registered = node.process.wait_for_event(Event::Registered).await?;
    let contacts = registered["contacts"].as_u64().unwrap_or(0) as usize;
    node.process.wait_for_lines(contacts, |l| is(l, Event::GreetingSent)).await?;
    node.process.wait_for_event(Event::Watching).await?;
    Ok(node)
}
