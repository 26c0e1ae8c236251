//! `launcher`: parses the command line, sets up logging, runs the subcommand.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use launcher::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The launcher's own diagnostics, for RUST_LOG=debug; what it shows a person goes through `ui`.
    // Never bollard's debug lines: they hold request and answer bodies, join tokens among them.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let filter = filter.add_directive("bollard=info".parse().expect("a valid directive"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match cli.command.run(&cli.project).await {
        Ok(()) => ExitCode::SUCCESS,
        // `launcher ps | head -1`: the reader has what it wanted.
        Err(error) if wire::cli::is_closed_pipe(error.as_ref()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("launcher: {error:#}");
            ExitCode::from(launcher::exit_code(&error))
        }
    }
}
