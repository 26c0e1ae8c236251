//! `registry`: parses the command line, sets up logging, binds, and serves
//! until SIGINT or SIGTERM.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use registry::cli::Cli;
use registry::{events, server};
use wire::{telemetry, Chain};

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
    let (listener, shutdown) = match wire::cli::start("registry", cli.listen).await {
        Ok(started) => started,
        Err(code) => return code,
    };
    let addr = listener.local_addr().unwrap_or(cli.listen);
    events::listening(addr, &config);
    server::run(listener, config, shutdown).await;
    ExitCode::SUCCESS
}
