//! `registry`: parses the command line, sets up logging, binds, and serves
//! until SIGINT or SIGTERM; `registry health` checks a serving one.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use registry::cli::{Cli, Command};
use registry::server;
use wire::{telemetry, Chain};

/// The store could not be opened: etcd unreachable, or its log unreadable.
const EXIT_STORE: u8 = 5;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Health(health)) = &cli.command {
        return health.run("registry").await;
    }
    telemetry::init(cli.log_format);
    let config = match cli.config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("registry: {}", Chain(&error));
            return ExitCode::from(wire::cli::EXIT_SECRET);
        }
    };
    let (main, shutdown) = match wire::cli::start("registry", cli.listen).await {
        Ok(started) => started,
        Err(code) => return code,
    };
    let optional = |flag, listen| wire::cli::bind_optional("registry", flag, listen);
    let (assigner, http) =
        match (optional("assigner-listen", cli.assigner_listen), optional("http-listen", cli.http.http_listen)) {
            (Ok(assigner), Ok(http)) => (assigner, http),
            (Err(code), _) | (_, Err(code)) => return code,
        };
    match server::run(server::Listeners { main, assigner, http }, config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("registry: {}", Chain(&error));
            ExitCode::from(EXIT_STORE)
        }
    }
}
