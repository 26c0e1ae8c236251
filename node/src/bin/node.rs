//! `node`: parses the command line, sets up logging, binds the greeting
//! listener, and runs until SIGINT or SIGTERM; `node send` multicasts to a
//! group, `node health` checks a running node.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use node::config::{Cli, Command, SendArgs};
use node::exchange::Deadlines;
use node::group::EXIT_UNDELIVERED;
use wire::secure::{Identity, Keys};
use wire::{cli, telemetry, Chain};

// One thread is plenty for a node, and keeps its memory small when many run on one host.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse_checked();
    match cli.command {
        Some(Command::Send(args)) => return send(args).await,
        Some(Command::Health(health)) => return health.run("node").await,
        None => {}
    }
    telemetry::init(cli.args.log_format);
    let config = match cli.args.config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("node: {}", Chain(&error));
            return ExitCode::from(cli::EXIT_SECRET);
        }
    };
    let (greeting, shutdown) = match cli::start("node", cli.args.listen).await {
        Ok(started) => started,
        Err(code) => return code,
    };
    let http = match cli::bind_optional("node", "http-listen", cli.args.http.http_listen) {
        Ok(http) => http,
        Err(code) => return code,
    };
    node::run(node::Listeners { greeting, http }, config, shutdown).await;
    ExitCode::SUCCESS
}

async fn send(args: SendArgs) -> ExitCode {
    let deadlines = Deadlines { connect: args.connect_timeout, reply: args.timeout };
    let keys = match args.token.admission() {
        // `node send` is no member: a key of its own for this one send.
        Ok(admission) => Keys::new(Identity::generate(), admission),
        Err(error) => {
            eprintln!("node send: {}", Chain(&error));
            return ExitCode::from(cli::EXIT_SECRET);
        }
    };
    let sender = node::group::Sender::new(args.registry, &keys, deadlines).pinned(args.pin.registry_key);
    let sent = sender.send(args.group, &args.text, &args.sender).await;
    let report = match sent {
        Ok(report) => report,
        Err(error) => {
            eprintln!("node send: {}", Chain(&error));
            return ExitCode::FAILURE;
        }
    };
    let text = if args.json {
        serde_json::to_string(&report).expect("a report serializes") + "\n"
    } else {
        report.to_string()
    };
    match cli::print(&text) {
        Err(error) if !cli::is_closed_pipe(&error) => {
            eprintln!("node send: failed to print the report: {error}");
            ExitCode::FAILURE
        }
        _ if report.is_complete() => ExitCode::SUCCESS,
        _ => ExitCode::from(EXIT_UNDELIVERED),
    }
}
