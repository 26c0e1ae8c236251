//! What the etcd test suites share.

#![allow(dead_code)] // Each suite uses its own part.

use std::time::Duration;

use etcd::testing::Cluster;
use etcd::Etcd;

/// Logs to the test's output, filtered by RUST_LOG (e.g. `RUST_LOG=etcd=info`).
pub fn logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A client over every member of `cluster`.
pub async fn connect(cluster: &Cluster) -> Etcd {
    Etcd::connect(&cluster.endpoints(), Duration::from_secs(5)).await.expect("connect to the test cluster")
}

/// The index in `cluster` of the member at `endpoint`.
pub fn member_at(cluster: &Cluster, endpoint: &str) -> usize {
    cluster.endpoints().iter().position(|known| known == endpoint).expect("the endpoint is one of the cluster's")
}
