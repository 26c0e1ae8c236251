//! The launcher: runs the HIT6 mesh (a registry, or replicas of one on an
//! etcd cluster, and N greeting nodes) in
//! Docker or as local processes, shows it forming, and tells whether every
//! pair of nodes has greeted.
//!
//! # Layout
//! From the top floor down; a module uses only those below it.
//! - [`cli`]: the command line, and [`cmd`]: one module per subcommand
//!   (`up`, `down`, `ps`, `stats`, `logs`, `build`, `push`, `send`, `token`,
//!   `scale`; `kill`, `pause`, `unpause` and `restart` in `disrupt`), none
//!   using another.
//! - [`follow`]: following the members' log lines to a verdict (the mesh
//!   complete, a new membership, what followed a disruption of a node, a
//!   registry replica or an etcd member), and the notes on stuck members;
//!   [`observe`]: what the members' `/health` and `/metrics` say;
//!   [`roster`]: what the project's registry lists; [`probe`]: a
//!   registration that tells when the registry takes one again.
//! - [`runtime`]: where the members run, behind one type, with one
//!   implementation per runtime: containers, swarm services, local processes.
//! - [`images`]: the registry and node images: present, pulled, or built
//!   from the workspace with no base image; the binaries cargo builds for
//!   them and for `--runtime local`; the etcd image of registry replicas.
//! - [`ui`]: progress, prefixed log lines, and the summary; [`mesh`]: what
//!   the nodes' events say about the mesh; [`etcd_log`]: what etcd's log
//!   lines say; [`stream`]: log lines of containers and processes, merged;
//!   [`ports`]: host port ranges and free ports.
#![forbid(unsafe_code)]

pub mod cli;
pub mod cmd;
pub mod etcd_log;
pub mod follow;
pub mod images;
pub mod mesh;
pub mod observe;
pub mod ports;
pub mod probe;
pub mod roster;
pub mod runtime;
pub mod stream;
pub mod ui;

use cli::Command;
use runtime::engine::{DockerError, SwarmError};
use runtime::{RuntimeError, Verb};

/// Exit codes, so scripts can tell failures apart.
pub mod exit {
    /// A bad command line (clap's own code).
    pub const USAGE: u8 = 2;
    /// The Docker daemon cannot be reached.
    pub const NO_DOCKER: u8 = 3;
    /// The mesh (or, after `scale`, the new membership) did not complete in time, or what followed a kill, pause, unpause or restart was not
    /// logged by all in time.
    pub const INCOMPLETE: u8 = 4;
    /// The project is already up.
    pub const ALREADY_UP: u8 = 5;
    /// `--runtime swarm` on an engine that is not a swarm manager.
    pub const NOT_SWARM_MANAGER: u8 = 7;
    /// A multicast reached only some members: the same code as `node send`.
    pub const UNDELIVERED: u8 = node::group::EXIT_UNDELIVERED;
}

impl Command {
    pub async fn run(self, project: &str) -> anyhow::Result<()> {
        match self {
            Command::Up(args) => args.run(project).await,
            Command::Down(args) => args.run(project).await,
            Command::Ps(args) => args.run(project).await,
            Command::Logs(args) => args.run(project).await,
            Command::Stats(args) => args.run(project).await,
            Command::Build(args) => args.run().await,
            Command::Push(args) => args.run().await,
            Command::Send(args) => args.run(project).await,
            Command::Token(args) => args.run(project).await,
            Command::Scale(args) => args.run(project).await,
            Command::Kill(args) => args.run(project, Verb::Kill).await,
            Command::Pause(args) => args.run(project, Verb::Pause).await,
            Command::Unpause(args) => args.run(project, Verb::Unpause).await,
            Command::Restart(args) => args.run(project, Verb::Restart).await,
        }
    }
}

/// The exit code for an error, by what failed.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    match error.downcast_ref() {
        Some(DockerError::Unreachable { .. }) => return exit::NO_DOCKER,
        Some(DockerError::Swarm(SwarmError::NotManager { .. })) => return exit::NOT_SWARM_MANAGER,
        _ => {}
    }
    if error.downcast_ref::<ports::PortError>().is_some() {
        return exit::USAGE;
    }
    if error.downcast_ref::<cmd::send::Undelivered>().is_some() {
        return exit::UNDELIVERED;
    }
    if error.downcast_ref::<follow::changes::Unnoticed>().is_some() {
        return exit::INCOMPLETE;
    }
    match error.downcast_ref() {
        Some(
            follow::FollowError::MeshIncomplete { .. }
            | follow::FollowError::MembershipIncomplete { .. }
            | follow::FollowError::NotFollowed { .. },
        ) => exit::INCOMPLETE,
        _ if matches!(error.downcast_ref(), Some(RuntimeError::AlreadyUp { .. })) => exit::ALREADY_UP,
        _ => 1,
    }
}
