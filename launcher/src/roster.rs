//! What the project's registry lists: the names it holds entries for, and
//! how it sees each, for `ps` and the disruption verbs.

use std::collections::BTreeMap;
use std::time::Duration;

use registry::client::Client;
use wire::secure::{Admission, Identity, Keys};

use crate::runtime::Project;

/// How long asking the registry may take.
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(5);

/// How the registry sees a node it holds an entry for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Live,
    /// Silent for more than half its lease.
    Suspect,
}

/// The names the project's registry holds entries for, and how it sees
/// each; `None`, with the reason on stderr, when it cannot be asked.
pub async fn listed(project: &Project) -> Option<BTreeMap<String, Seen>> {
    let asked = async {
        let registry = project.registry_from_here().await?;
        let token = project.join_token().await?;
        let keys = Keys::new(Identity::generate(), Admission::from_token(token));
        let mut client = Client::connect_secure(&registry, &keys, REGISTRY_TIMEOUT).await?;
        let listed = client.listed().await?;
        let seen = |id: &String| if listed.silent.contains(id) { Seen::Suspect } else { Seen::Live };
        anyhow::Ok(listed.contactos.iter().map(|entry| (entry.name.clone(), seen(&entry.id))).collect())
    };
    asked.await.inspect_err(|error| eprintln!("launcher: cannot ask the registry: {error:#}")).ok()
}
