//! `node`: parses the command line, sets up logging, binds the greeting
//! listener, and runs until SIGINT or SIGTERM.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use node::config::Args;
use registry::telemetry;
use tokio::net::TcpListener;

/// Exit code when the listening address cannot be bound.
const EXIT_BIND: u8 = 3;

// One thread is plenty for a node, and keeps its memory small when many run on one host.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    telemetry::init(args.log_format);
    let shutdown = match registry::shutdown::signals() {
        Ok(shutdown) => shutdown,
        Err(error) => {
            eprintln!("node: failed to install signal handlers: {error}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("node: failed to listen on {}: {error}", args.listen);
            return ExitCode::from(EXIT_BIND);
        }
    };
    node::run(listener, args.config(), shutdown).await;
    ExitCode::SUCCESS
}
