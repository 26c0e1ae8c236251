//! `node`: parses the command line, sets up logging, binds the greeting
//! listener, and runs until SIGINT or SIGTERM.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use node::config::{Args, SendArgs};
use node::events::Chain;
use node::exchange::Deadlines;
use registry::telemetry;

/// Exit code of `node send` when some member did not acknowledge.
const EXIT_UNDELIVERED: u8 = 4;

// One thread is plenty for a node, and keeps its memory small when many run on one host.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|arg| arg == "send") {
        argv.remove(1);
        return send(SendArgs::parse_from(argv)).await;
    }
    let args = Args::parse_from(argv);
    telemetry::init(args.log_format);
    let (listener, shutdown) = match registry::cli::start("node", args.listen).await {
        Ok(started) => started,
        Err(code) => return code,
    };
    node::run(listener, args.config(), shutdown).await;
    ExitCode::SUCCESS
}

async fn send(args: SendArgs) -> ExitCode {
    let deadlines = Deadlines { connect: args.connect_timeout, reply: args.timeout };
    match node::group::send(&args.registry, args.group, &args.text, &args.sender, deadlines).await {
        Ok(report) => {
            if args.json {
                println!("{}", serde_json::to_string(&report).expect("a report serializes"));
            } else {
                print!("{report}");
            }
            if report.is_complete() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_UNDELIVERED)
            }
        }
        Err(error) => {
            eprintln!("node send: {}", Chain(&error));
            ExitCode::FAILURE
        }
    }
}
