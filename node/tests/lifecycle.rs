//! A node and a registry in one process, with the clock under test control:
//! the node's 5 s heartbeats run in virtual time.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use node::config::Cli;
use registry::client::{Client, RegistryAddr};
use registry::server::{self, Config};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const HEARTBEAT: Duration = Duration::from_secs(5);

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), registry::server::ServeError>>,
}

impl Running {
    /// Stops the registry and waits until its port is free again.
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

async fn start_registry(listen: &str) -> Running {
    let listener = TcpListener::bind(listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server::run(listener, Config::default(), stopped));
    Running { addr, stop, task }
}

async fn names(registry: SocketAddr) -> Vec<String> {
    let mut client = Client::connect(&RegistryAddr::from(registry), Duration::from_secs(1)).await.unwrap();
    client.list().await.unwrap().into_iter().map(|c| c.name).collect()
}

/// Polls in virtual time, which costs nothing real.
async fn until_listed(registry: SocketAddr, name: &str) {
    while !names(registry).await.iter().any(|n| n == name) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_node_renews_its_lease_and_registers_again_with_a_restarted_registry() {
    let first = start_registry("127.0.0.1:0").await;
    let registry = first.addr;
    let cli = Cli::try_parse_from(["node", "127.0.0.1", &registry.port().to_string(), "--name", "n1"]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    tokio::spawn(node::run(listener, cli.args.config().unwrap(), std::future::pending::<()>()));
    tokio::time::timeout(HEARTBEAT, until_listed(registry, "n1")).await.expect("registered at start-up");

    // Heartbeats renew the 15 s lease well past it.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(names(registry).await, ["n1"]);

    // A restarted registry starts empty; the node's next heartbeat hears
    // `unknown_id` and registers again.
    first.stop().await;
    let restarted = start_registry(&registry.to_string()).await;
    let back = tokio::time::timeout(2 * HEARTBEAT, until_listed(restarted.addr, "n1")).await;
    assert!(back.is_ok(), "not registered again within two heartbeats");
}
