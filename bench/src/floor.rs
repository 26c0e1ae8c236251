//! `floor`: what one greeting costs the kernel, measured in the same run as
//! the mesh so that the node's CPU per greeting can be read as a ratio to it.
//!
//! Two processes (this binary, started again in a hidden mode) exchange the
//! minimal greeting with plain blocking sockets, no runtime, no JSON and no
//! logging: connect, send a 100-byte JSON object, read a 40-byte answer, and
//! close with a reset, as the node's greeter does. Their CPU time over
//! `FLOOR_GREETINGS` greetings, divided by that number, is the floor.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::cli::FloorPeer;
use crate::probe::cpu_seconds;
use crate::report::Rows;
use crate::spawn::command;

/// Greetings exchanged; enough that process start-up is lost in the noise.
const FLOOR_GREETINGS: usize = 20_000;

/// A greeting the size of the node's: 100 bytes.
const GREETING: &[u8; 100] =
    br#"{"mensaje":"Hola, soy un nodo C","ip":"127.0.0.1","puerto":40001,"name":"node-7","id":"5f3a9c01-17"}"#;

/// An answer the size of the node's: 40 bytes.
const ANSWER: &[u8; 40] = b"{\"mensaje\":\"Hola, un gusto!\",\"ok\":true}\n";

/// The most the node may spend per greeting, as a multiple of the floor.
pub const TARGET_RATIO: f64 = 1.5;

/// Runs one side of the floor; it never returns for `Answer`.
pub fn run_peer(peer: FloorPeer) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    match peer {
        FloorPeer::Answer => {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            writeln!(stdout, "{}", listener.local_addr()?)?;
            loop {
                let (mut stream, _) = listener.accept()?;
                let mut greeting = [0u8; GREETING.len()];
                if stream.read_exact(&mut greeting).is_ok() {
                    let _ = stream.write_all(ANSWER);
                }
            }
        }
        FloorPeer::Greet => {
            let mut line = String::new();
            stdin.lock().read_line(&mut line)?;
            let addr: SocketAddr = line.trim().parse().context("the answering peer's address")?;
            for _ in 0..FLOOR_GREETINGS {
                greet(addr)?;
            }
            writeln!(stdout, "done")?;
            // Stay until the benchmark has read this process's CPU time.
            let _ = stdin.lock().read_line(&mut line);
            Ok(())
        }
    }
}

fn greet(addr: SocketAddr) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    stream.write_all(GREETING)?;
    let mut answer = [0u8; ANSWER.len()];
    stream.read_exact(&mut answer)?;
    // Close with a reset, as the greeter does, sparing both sides TIME_WAIT.
    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
    Ok(())
}

/// Measures the floor and returns it in µs of CPU per greeting.
pub async fn measure(rows: &Rows) -> anyhow::Result<f64> {
    let exe = std::env::current_exe()?;
    let mut answer = command(&exe, &["--floor-peer".into(), "answer".into()]).stdout(Stdio::piped()).spawn()?;
    let mut lines = BufReader::new(answer.stdout.take().context("piped")?).lines();
    let addr = lines.next_line().await?.context("the answering peer printed no address")?;
    let mut greet =
        command(&exe, &["--floor-peer".into(), "greet".into()]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let mut stdin = greet.stdin.take().context("piped")?;
    stdin.write_all(format!("{addr}\n").as_bytes()).await?;
    let mut done = BufReader::new(greet.stdout.take().context("piped")?).lines();
    done.next_line().await?.context("the greeting peer stopped early")?;
    let pids = [answer.id(), greet.id()];
    let cpu: f64 = pids.iter().flatten().filter_map(|pid| cpu_seconds(&pid.to_string())).sum();
    let micros = cpu * 1e6 / FLOOR_GREETINGS as f64;
    let note = format!("{FLOOR_GREETINGS} between two processes, blocking sockets: connect, 100 bytes, 40 back, reset");
    rows.info("floor", "CPU per minimal greeting", micros, "µs", note);
    Ok(micros)
}
