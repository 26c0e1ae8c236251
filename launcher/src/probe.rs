//! A registration through the project's registries from this machine,
//! sent again and again until one takes it, then deregistered: what tells
//! when the registry works again after a disruption of its etcd cluster.
//! The replica that takes it logs `registered` naming it, which
//! [`crate::follow::election`] awaits.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use registry::client::{Client, Joined, RegistryAddr};
use registry::protocol::NativeRequest;
use tokio::task::JoinHandle;
use wire::secure::{Admission, Identity, Keys};

use crate::runtime::Project;

/// How long one attempt may take, to connect and to be answered.
const ATTEMPT: Duration = Duration::from_secs(2);
/// How long to wait between two attempts that failed at once.
const PAUSE: Duration = Duration::from_millis(20);
/// How long [`Probe::finish`] waits for the deregistration.
const LEAVE: Duration = Duration::from_secs(5);

/// A probe registering until it is taken, in the background.
pub struct Probe {
    /// The name it registers under.
    pub name: String,
    task: JoinHandle<()>,
}

impl Probe {
    /// Starts registering through the project's running registries, as
    /// published on this machine, one after the other.
    pub async fn start(project: &Project) -> anyhow::Result<Probe> {
        let registries = project.registries_from_here().await?;
        let keys = Keys::new(Identity::generate(), Admission::from_token(project.join_token().await?));
        let name = format!("launcher-probe-{:08x}", fastrand::u32(..));
        let task = tokio::spawn(register_until_taken(registries, keys, name.clone()));
        Ok(Probe { name, task })
    }

    /// Waits a little for it to be taken and deregistered; stops it otherwise.
    pub async fn finish(mut self) {
        if tokio::time::timeout(LEAVE, &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}

/// Registers `name` at each of `registries` in turn until one answers
/// with a lease, then deregisters it there. One incarnation for every
/// attempt: an attempt that was taken but whose answer was lost is the
/// same registration as the next.
async fn register_until_taken(registries: Vec<RegistryAddr>, keys: Keys, name: String) {
    let incarnation = format!("{:032x}", fastrand::u128(..));
    let puerto = fastrand::u16(40_000..60_000);
    for registry in registries.iter().cycle() {
        let request = NativeRequest::Register {
            ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            puerto,
            name: &name,
            group: None,
            incarnation: Some(&incarnation),
            ticket_key: None,
        };
        let attempt = async {
            let mut client = Client::connect_secure(registry, &keys, ATTEMPT).await?;
            let joined = client.register(&request).await?;
            anyhow::Ok((client, joined))
        };
        match tokio::time::timeout(ATTEMPT, attempt).await {
            Ok(Ok((mut client, Joined::Leased(registered)))) => {
                if let Err(error) = client.deregister(&registered.id).await {
                    tracing::warn!(%registry, error = %wire::Chain(&error), "the probe could not deregister");
                }
                return;
            }
            Ok(Ok((_, Joined::Original(_)))) => return,
            Ok(Err(error)) => tracing::debug!(%registry, error = %format!("{error:#}"), "the probe was not taken"),
            Err(_) => tracing::debug!(%registry, "the probe had no answer in time"),
        }
        tokio::time::sleep(PAUSE).await;
    }
}
