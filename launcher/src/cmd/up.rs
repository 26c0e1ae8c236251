//! `launcher up`: start a registry and N nodes, follow their events, and
//! report when every pair has greeted.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use registry::client::RegistryAddr;
use registry::identity::RegistrySecret;
use tokio::sync::mpsc;
use tokio::time::Instant;
use wire::cli::JoinTokenArgs;
use wire::http::ReadToken;
use wire::secure::JoinToken;

use crate::follow::{self, Aftermath, Ending, FollowError, Follower, Following, Forming};
use crate::images::etcd::EtcdArgs;
use crate::images::Images;
use crate::mesh::Mesh;
use crate::observe;
use crate::ports::PortRange;
use crate::runtime::cluster::{Cluster, MAX_MEMBERS};
use crate::runtime::{Http, Kind, Member, Plan, Project};
use crate::ui::{self, Ui};

#[derive(Debug, clap::Args)]
#[command(mut_arg("join_token_file", |arg| arg.help(
    "A file holding the join token; or set HIT6_JOIN_TOKEN. With --registry, that registry's; otherwise the \
     token the project's registry is started with, instead of a fresh one (see `launcher token`)"
)))]
pub struct Args {
    /// How many nodes to start.
    #[arg(long, short = 'n', default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub nodes: u32,
    /// Host ports the nodes are published on, one each, picked at random among the free ones.
    #[arg(long, default_value = "8087-8095")]
    pub port_range: PortRange,
    /// Host port the registry is published on.
    #[arg(long, default_value_t = 8086, value_parser = wire::cli::port)]
    pub registry_port: u16,
    /// Also serve the group lab's Node.js programs: the registry (the first
    /// replica) answers its internal clients on this host port, as the
    /// lab's assigner does on 8888, and admits the lab's programs in
    /// plaintext, unauthenticated (`--allow-original`; see
    /// docs/compatibility.md).
    #[arg(long, value_name = "PORT", value_parser = wire::cli::port, conflicts_with = "registry")]
    pub assigner_port: Option<u16>,
    /// Publish the first registry's HTTP listener (/metrics, /health and
    /// the status page; 8081 in its container) on this host port. Every
    /// registry's status page then asks for a read token of its own, drawn
    /// here: `launcher token --http` prints it.
    #[arg(long, value_name = "PORT", value_parser = wire::cli::port, conflicts_with = "registry")]
    pub http_port: Option<u16>,
    /// Groups the registry places nodes in, least loaded first.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub groups: u32,
    /// The lease of a registration at the registry the project starts: how
    /// long a node that falls silent (`launcher pause`) stays listed.
    #[arg(long, default_value = "15s", value_parser = wire::cli::duration, conflicts_with = "registry")]
    pub lease: Duration,
    /// Join an existing registry (on another VM, say) instead of starting one.
    #[arg(long, value_name = "HOST:PORT")]
    pub registry: Option<RegistryAddr>,
    /// Registries to start: 1, or an odd number of replicas (3, 5, 7)
    /// sharing one membership on an etcd cluster of as many members,
    /// `etcd-1..N` and `registry-1..N` (see docs/replicas.md).
    #[arg(long, default_value_t = 1, value_parser = registries, conflicts_with = "registry")]
    pub registries: usize,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// The ip the nodes advertise [default: the host's address on the project
    /// network; with --runtime swarm --publish, the address of the host each
    /// node runs on].
    #[arg(long, env = "IP_EXT")]
    pub advertise_ip: Option<IpAddr>,
    /// With --runtime swarm: publish each node on a port of --port-range on
    /// the host it is pinned to, and advertise that host's address (its
    /// `io.hit6.advertise-ip` engine label, or else its swarm address), so that
    /// programs outside the swarm reach it too. Without it, nodes may run on
    /// any host and advertise their overlay address. --runtime docker always
    /// publishes.
    #[arg(long)]
    pub publish: bool,
    /// Return once the mesh is complete, leaving it running.
    #[arg(long, short = 'd')]
    pub detach: bool,
    #[command(flatten)]
    pub following: Following,
    /// Where the registry and nodes run.
    #[arg(long, value_enum, default_value_t)]
    pub runtime: Kind,
    #[command(flatten)]
    pub join_token: JoinTokenArgs,
    #[command(flatten)]
    pub images: Images,
}

/// `--registries`: 1, or an odd number of replicas up to [`MAX_MEMBERS`],
/// since etcd needs a majority of its members, and an even one tolerates
/// no more failures than the odd one below it.
fn registries(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(1) => Ok(1),
        Ok(n) if n % 2 == 1 && n <= MAX_MEMBERS => Ok(n),
        _ => Err(format!(
            "`{text}` isn't a number of registries: give 1, or an odd number of replicas up to {MAX_MEMBERS} (3, 5 \
             or 7), which etcd needs for a majority"
        )),
    }
}

impl Args {
    pub async fn run(self, project: &str) -> anyhow::Result<()> {
        let invoked = Instant::now();
        let plan = self.plan().await?;
        let mut sources: Vec<String> = plan.node_members().map(|m| m.to_string()).collect();
        sources.extend(plan.registry_members().iter().map(Member::to_string));
        let ui = Ui::new(self.following.quiet, &sources);
        let (lines, received) = mpsc::channel(4096);
        let mut interrupt = std::pin::pin!(wire::shutdown::signals()?);

        let up = Project::up(self.runtime, project, &plan, &ui, &lines);
        let (mut project, started) = tokio::select! {
            started = up => started?,
            _ = &mut interrupt => {
                ui.note("interrupted while starting; removing what was created");
                return Project::remove_leftovers(self.runtime, project).await;
            }
        };
        drop(lines);
        let registries: Vec<String> = started.registries.iter().map(ToString::to_string).collect();
        ui.note(&format!("nodes advertise {} and register with {}", started.advertised, registries.join(", ")));
        if let Some(http) = &plan.http {
            let page = format!("http://127.0.0.1:{}/status", http.port);
            ui.note(&format!("status page: {page}#token=<launcher -p {} token --http>", project.name()));
        }
        let nodes = plan.node_members().map(|m| m.to_string()).zip(started.host_ports);
        let mut forming = Forming::new(Mesh::new(nodes), &ui);
        let mut follower = Follower::new(received, Some(&ui));
        let ending = self.follow(&mut follower, &mut forming, (&ui, &project), invoked, &mut interrupt).await;
        ui.finish();
        let ends_with_launcher = project.ends_with_launcher();
        match ending {
            Ending::Reached => {
                // Processes cannot outlive the launcher: stop them once reported.
                if ends_with_launcher {
                    project.remove(false).await?;
                }
                Ok(())
            }
            Ending::Interrupted => {
                ui.note("stopping and removing the project (Ctrl-C again to force)");
                let mut again = std::pin::pin!(wire::shutdown::signals()?);
                tokio::select! {
                    removed = project.remove(false) => removed.map(drop),
                    _ = &mut again => project.remove(true).await.map(drop),
                }
            }
            Ending::TimedOut => {
                if ends_with_launcher {
                    project.remove(true).await?;
                }
                follow::note_stuck(&ui, &project).await;
                Err(forming.incomplete(self.following.timeout).into())
            }
            Ending::LogsEnded => Err(FollowError::LogsEnded.into()),
        }
    }

    async fn plan(&self) -> anyhow::Result<Plan> {
        let cluster = match self.registries {
            1 => None,
            replicas => Some(Cluster::new(replicas, self.etcd.source().await?)),
        };
        Ok(Plan {
            nodes: self.nodes as usize,
            port_range: self.port_range,
            registry_port: self.registry_port,
            assigner_port: self.assigner_port,
            http: self.http_port.map(|port| Http { port, token: Arc::new(ReadToken::generate()) }),
            advertise_ip: self.advertise_ip,
            publish: self.publish,
            registry: self.registry.clone(),
            groups: self.groups,
            lease: self.lease,
            images: self.images.clone(),
            token: self.join_token()?,
            // The registry the project starts gets keys its nodes pin.
            registry_secret: self.registry.is_none().then(|| Arc::new(RegistrySecret::generate())),
            cluster,
        })
    }

    /// The token given in the file or the environment, if any; for a
    /// registry of the project's own, a fresh one when none is given.
    fn join_token(&self) -> anyhow::Result<Option<Arc<JoinToken>>> {
        let given = self.join_token.token()?;
        let token = match self.registry {
            None => Some(given.unwrap_or_else(JoinToken::generate)),
            Some(_) => given,
        };
        Ok(token.map(Arc::new))
    }

    /// Follows the mesh to completion and prints the summary and the
    /// members' health; then, in the
    /// foreground, keeps showing what happens until interrupted. Past the
    /// timeout, a detached `up` gives up, a foreground one says what is
    /// missing and keeps following.
    async fn follow(
        &self,
        follower: &mut Follower<'_>,
        forming: &mut Forming<'_>,
        (ui, project): (&Ui, &Project),
        invoked: Instant,
        interrupt: &mut (impl std::future::Future + Unpin),
    ) -> Ending {
        let mut deadline = Some(Instant::now() + self.following.timeout);
        loop {
            match follower.until(forming, deadline, interrupt).await {
                Ending::TimedOut if !self.detach => {
                    ui.note(&forming.incomplete(self.following.timeout).to_string());
                    deadline = None;
                }
                Ending::Reached => break,
                ending => return ending,
            }
        }
        ui.finish();
        if let Err(error) = ui::print_summary(&forming.mesh, invoked.elapsed(), self.following.json) {
            if !wire::cli::is_closed_pipe(&error) {
                ui.note(&format!("failed to print the summary: {error}"));
            }
        }
        if let Err(error) = project.settled().await {
            ui.note(&format!("{error:#}"));
        }
        if let Some(health) = observe::health_line(project).await {
            ui.note(&health);
        }
        if self.detach {
            return Ending::Reached;
        }
        follower.until(&mut Aftermath(ui), None, interrupt).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_one_or_an_odd_number_up_to_seven() {
        for good in [1, 3, 5, 7] {
            assert_eq!(registries(&good.to_string()), Ok(good));
        }
        for bad in ["0", "2", "4", "9", "-1", "three", ""] {
            let error = registries(bad).unwrap_err();
            assert!(error.contains("isn't a number of registries: give 1, or an odd number"), "{bad}: {error}");
        }
    }
}
