//! `node`: parses the command line, sets up logging, binds the greeting
//! listener, and runs until SIGINT or SIGTERM.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use node::config::Args;
use registry::telemetry;

// One thread is plenty for a node, and keeps its memory small when many run on one host.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    telemetry::init(args.log_format);
    let (listener, shutdown) = match registry::cli::start("node", args.listen).await {
        Ok(started) => started,
        Err(code) => return code,
    };
    node::run(listener, args.config(), shutdown).await;
    ExitCode::SUCCESS
}
