//! The command line: one subcommand per module, in the spirit of docker compose.

use clap::{Parser, Subcommand};

use crate::cmd::{build, disrupt, down, logs, ps, push, scale, send, stats, token, up};

/// Runs the HIT6 mesh (a registry and greeting nodes) in Docker, shows it
/// forming, and tells whether it is complete.
#[derive(Debug, Parser)]
#[command(name = "launcher", version, about)]
pub struct Cli {
    /// Project name: it labels every container and network, so several
    /// projects can run side by side on one host.
    #[arg(long, short = 'p', global = true, env = "LAUNCHER_PROJECT", default_value = "hit6", value_parser = project_name)]
    pub project: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a registry and N nodes, and follow the mesh until it is complete.
    Up(up::Args),
    /// Stop and remove the project's containers and network.
    Down(down::Args),
    /// List the project's containers.
    Ps(ps::Args),
    /// Show the project's logs.
    Logs(logs::Args),
    /// A live table of the registries and nodes, as their /metrics and
    /// /health say and their engine counts them, refreshed every second.
    Stats(stats::Args),
    /// Build the registry and node images from the workspace sources.
    Build(build::Args),
    /// Push the registry and node images to an image registry, for the
    /// hosts of a swarm to pull.
    Push(push::Args),
    /// Multicast a message to a group and print the delivery report.
    Send(send::Args),
    /// Print the project's join token, for adding nodes by hand.
    Token(token::Args),
    /// Grow or shrink a swarm project to N nodes, and follow the new
    /// membership until every pair has greeted.
    Scale(scale::Args),
    /// Kill a node with SIGKILL, as a crash would, and report how long until
    /// the registry and every other node had logged its departure.
    Kill(disrupt::Args),
    /// Freeze a node, as a partition would: it stays listed until its lease
    /// ends; report how long until the registry and every other node had
    /// logged its departure.
    Pause(disrupt::Args),
    /// Thaw a paused node; if its lease had ended, report how long until the
    /// registry and every other node had logged its return.
    Unpause(disrupt::Args),
    /// Restart a node (SIGTERM, then a new run) and report how long until the
    /// registry and every other node had logged its departure and its return.
    Restart(disrupt::Args),
}

/// Docker names allow `[a-zA-Z0-9][a-zA-Z0-9_.-]*`; keep it short enough for host names.
fn project_name(text: &str) -> Result<String, String> {
    let valid_start = text.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let valid_rest = text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid_start || !valid_rest || text.len() > 40 {
        return Err(format!(
            "`{text}` isn't a project name: use up to 40 letters, digits, `_`, `.` or `-`, starting with a letter or digit"
        ));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn project_names_are_checked() {
        assert!(project_name("hit6-test_1").is_ok());
        assert!(project_name("-x").unwrap_err().contains("isn't a project name"));
        assert!(project_name("a b").is_err());
    }
}
