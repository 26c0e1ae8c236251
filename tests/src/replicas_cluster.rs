//! Replicas of one registry (`registry --store etcd`) on a real 3-member
//! etcd: real registry processes sharing one key and one etcd.

use std::net::SocketAddr;
use std::time::Duration;

use crate::{Registry, PATIENCE};
use anyhow::Context;
use etcd::testing::Cluster;
use registry::identity::{RegistrySecret, KEY_ENV};

/// Replicas of one registry: one key, one etcd.
pub struct Replicas {
    pub etcd: Cluster,
    secret: RegistrySecret,
    pub replicas: Vec<Registry>,
}

impl Replicas {
    /// `count` replicas on a new 3-member etcd, with extra `args`; `None`
    /// when there is no etcd to run (and REQUIRE_ETCD is unset).
    pub async fn start(suite: &str, count: usize, args: &[&str]) -> anyhow::Result<Option<Replicas>> {
        let Some(etcd) = Cluster::start(suite, 3).await else { return Ok(None) };
        let mut replicas = Replicas { etcd, secret: RegistrySecret::generate(), replicas: Vec::new() };
        for _ in 0..count {
            let replica = replicas.replica(args).await?;
            replicas.replicas.push(replica);
        }
        Ok(Some(replicas))
    }

    pub async fn replica(&self, args: &[&str]) -> anyhow::Result<Registry> {
        let endpoints = self.etcd.endpoints().join(",");
        let mut all = vec!["--store", "etcd", "--etcd-endpoints", &endpoints];
        all.extend(args);
        let secret = self.secret.reveal();
        Registry::start_with("127.0.0.1:0".parse()?, &all, &[(KEY_ENV, secret.as_str())]).await
    }

    /// Where each replica listens, in order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.replicas.iter().map(|replica| replica.addr).collect()
    }

    /// What each replica lists, as (id, name), oldest first.
    pub async fn lists(&self) -> anyhow::Result<Vec<Vec<(String, String)>>> {
        let mut lists = Vec::new();
        for replica in &self.replicas {
            let listed = replica.client().await?.list().await?;
            lists.push(listed.into_iter().map(|c| (c.id, c.name)).collect());
        }
        Ok(lists)
    }

    /// Waits until every replica lists `count` entries, the same ones in the same order.
    /// (Each replica applies the log on its own, a few milliseconds apart:
    /// there is no one event to await, so it asks until they agree.)
    pub async fn agree_on(&self, count: usize) -> anyhow::Result<Vec<(String, String)>> {
        let agreed = tokio::time::timeout(PATIENCE, async {
            loop {
                let lists = self.lists().await?;
                if lists[0].len() == count && lists.iter().all(|l| *l == lists[0]) {
                    return anyhow::Ok(lists[0].clone());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        agreed.await.with_context(|| format!("the replicas did not agree on {count} entries"))?
    }
}
