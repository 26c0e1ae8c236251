//! `registry`: parses the command line, sets up logging, binds, and serves
//! until SIGINT or SIGTERM.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use registry::cli::Cli;
use registry::server;
use wire::{telemetry, Chain};

/// The store could not be opened: etcd unreachable, or its log unreadable.
const EXIT_STORE: u8 = 5;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
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
    let assigner = match cli.assigner_listen {
        None => None,
        Some(addr) => match wire::connection::bind(addr) {
            Ok(listener) => Some(listener),
            Err(error) => {
                eprintln!("registry: failed to listen on {addr} (--assigner-listen): {error}");
                return ExitCode::from(wire::cli::EXIT_BIND);
            }
        },
    };
    match server::run(server::Listeners { main, assigner }, config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("registry: {}", Chain(&error));
            ExitCode::from(EXIT_STORE)
        }
    }
}
