//! `memory`: resident memory of an idle node and of a registry holding 1000 entries.

use std::time::Duration;

use ::tests::{Node, Registry};
use anyhow::{bail, Context};
use registry::client::RegistryAddr;

use crate::probe::{cpu_seconds, memory};
use crate::report::{Rows, Target};
use crate::spawn::LeanRegistry;
use crate::throughput::{connect, register_many};

pub(crate) async fn bench_memory(rows: &Rows) -> anyhow::Result<()> {
    let section = "memory";
    {
        let registry = Registry::start(&["--ttl", "60s"]).await?;
        let node = Node::start(registry.addr, "idle-node", &[]).await?;
        node.process.wait_for_event(node::events::Event::Registered).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let pid = node.process.pid().as_raw() as u32;
        let mem = memory(pid)?;
        rows.push(section, "idle node RSS", Some(mem.mib()), "MiB", Some(Target::AtMost(4.0)), mem.note());
        if let Some(cpu) = cpu_seconds(&pid.to_string()) {
            rows.info(section, "idle node CPU", cpu * 1e3, "ms", "CPU time from exec to registered, plus 1 s idle");
        }
    }
    let registry = LeanRegistry::start(&["--ttl", "60s"]).await?;
    let pid = registry.pid().context("the registry runs")?;
    let empty = memory(pid)?;
    rows.info(section, "empty registry RSS", empty.mib(), "MiB", empty.note());
    let addr = RegistryAddr::from(registry.addr);
    // Each entry lives as long as its session, as a node's does.
    let sessions = register_many(&addr, "mem", 30_000, 1000).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let full = memory(pid)?;
    let live = connect(&addr).await?.list().await?.len();
    if live != 1000 {
        bail!("the registry holds {live} entries, not 1000");
    }
    drop(sessions);
    rows.push(section, "registry RSS, 1000 entries", Some(full.mib()), "MiB", Some(Target::AtMost(20.0)), full.note());
    registry.stop().await;
    Ok(())
}
