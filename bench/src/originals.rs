//! `originals`: our full mesh against the lab's original Python programs'
//! (reconstructed in `bench/originals/`), both timed by the same harness in
//! the same run: a registry, then N node processes spawned at the same pace,
//! from the first spawn until the last of the N(N-1)/2 greetings is read
//! from their output.

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};

use crate::cli::Cli;
use crate::mesh::{follow, full_mesh, start_registry};
use crate::nodes::{mesh_limit, read_lines, spawn_each, spawn_nodes, Counts, Mesh, Spawned};
use crate::report::{Rows, Target};
use crate::spawn::{command, LeanRegistry};

/// A thousand Python processes, each with a thread per greeting, would
/// measure this host's scheduler more than the programs.
const MAX_NODES: usize = 200;

/// Our mesh is to be at least this many times faster at this size.
const TARGET: (usize, f64) = (100, 5.0);

/// What the reconstructions print (see `bench/originals/*.py`).
const REGISTRY_LISTENING: &str = "Registro escuchando en ";
const LISTENING: &str = "Escuchando en el puerto ";
const REGISTERED: &str = "Registrado, contactos: ";
const GREETED_BY: &str = "Saludado por ";
const SENT: &str = "Saludo enviado a ";
const FAILED: &str = "No se pudo saludar a ";

/// Every `--nodes` size up to [`MAX_NODES`]; skipped without `python3`.
pub(crate) async fn bench_originals(cli: &Cli, rows: &Rows, node_bin: &Path) -> anyhow::Result<()> {
    let Some(python) = Python::find().await else {
        rows.push("originals", "skipped", None, "note", None, "python3 is not on PATH");
        return Ok(());
    };
    for &nodes in &cli.nodes {
        let section = format!("originals N={nodes}");
        if nodes > MAX_NODES {
            let why = format!("more than {MAX_NODES} Python processes would measure the host more than the programs");
            rows.push(&section, "skipped", None, "note", None, why);
            continue;
        }
        crate::one_size(rows, &section, compare(cli, rows, &section, nodes, node_bin, &python)).await;
    }
    Ok(())
}

/// The interpreter `python3` runs, and its version; `None` when there is
/// no `python3`. Spawning the interpreter itself leaves out what a wrapper
/// such as a pyenv shim (a bash script) would add to every start.
struct Python {
    interpreter: PathBuf,
    version: String,
}

impl Python {
    async fn find() -> Option<Python> {
        let mut command = tokio::process::Command::new("python3");
        command.args(["-c", "import sys; print(sys.executable); print(sys.version.split()[0])"]);
        let output = command.output().await.ok().filter(|output| output.status.success())?;
        let text = String::from_utf8_lossy(&output.stdout);
        let (interpreter, version) = text.trim().split_once('\n')?;
        Some(Python { interpreter: interpreter.into(), version: version.to_owned() })
    }

    /// `python -u`, so that every line the script prints reaches the bench at once.
    fn run(&self, script: &Path, args: &[&str]) -> tokio::process::Command {
        let mut all = vec!["-u".to_owned(), script.display().to_string()];
        all.extend(args.iter().map(|arg| arg.to_string()));
        command(&self.interpreter, &all)
    }
}

/// Our mesh, then the Python programs' mesh, and the ratio of their times.
async fn compare(
    cli: &Cli,
    rows: &Rows,
    section: &str,
    nodes: usize,
    node_bin: &Path,
    python: &Python,
) -> anyhow::Result<()> {
    let ours = ours(cli, section, nodes, node_bin).await?;
    ours.report(rows, section, "ours: full mesh", "release binaries");
    // Let the killed nodes' sockets go before the second mesh starts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let theirs = theirs(cli, section, nodes, python).await?;
    let what = format!("Python {} ({}), bench/originals", python.version, python.interpreter.display());
    theirs.report(rows, section, "python: full mesh", &what);
    let target = (nodes == TARGET.0).then_some(Target::AtLeast(TARGET.1));
    match (&ours.seconds, &theirs.seconds) {
        (Ok(ours), Ok(theirs)) => {
            let note = format!("how many times faster ours reached a full mesh ({theirs:.3} s / {ours:.3} s)");
            rows.push(section, "python / ours", Some(theirs / ours), "x", target, note);
        }
        _ => rows.error(section, "python / ours", target, "a mesh did not complete"),
    }
    Ok(())
}

/// One mesh, followed to its end and killed.
struct Timed {
    /// Seconds from the first spawn to the last greeting, or why there is none.
    seconds: Result<f64, String>,
    /// The nodes' CPU time, the registry's left out.
    cpu: f64,
    counts: String,
}

impl Timed {
    /// Starts the nodes with `spawn` (lazily, so that the clock starts with
    /// it) and follows them until every pair has met or cannot; kills them.
    async fn run(
        cli: &Cli,
        section: &str,
        mesh: &Mesh,
        registry: LeanRegistry,
        spawn: impl Future<Output = (Spawned, Option<String>)>,
    ) -> Timed {
        let t0 = Instant::now();
        let (spawned, spawn_error) = spawn.await;
        let outcome = match spawn_error {
            Some(error) => format!("LIMIT: {error}"),
            None => follow(section, mesh, t0, mesh_limit(cli, mesh.nodes)).await,
        };
        let cpu = spawned.cpu_seconds();
        let stderr_samples = spawned.kill_all().await;
        for sample in wire::lock(&mesh.samples).iter().chain(&stderr_samples) {
            eprintln!("  {section}: {sample}");
        }
        registry.stop().await;
        Timed { seconds: full_mesh(mesh, t0, &outcome), cpu, counts: mesh.counts() }
    }

    fn report(&self, rows: &Rows, section: &str, metric: &str, what: &str) {
        match &self.seconds {
            Ok(seconds) => {
                let note = format!("{what}; nodes CPU {:.2} s; {}", self.cpu, self.counts);
                rows.info(section, metric, *seconds, "s", note)
            }
            Err(why) => rows.error(section, metric, None, format!("{what}: {why}")),
        }
    }
}

/// Our registry and nodes, as the `mesh` section runs them.
async fn ours(cli: &Cli, section: &str, nodes: usize, node_bin: &Path) -> anyhow::Result<Timed> {
    let registry = start_registry().await?;
    let (addr, mesh) = (registry.addr, Mesh::new(nodes));
    let progress = format!("{section} ours");
    Ok(Timed::run(cli, &progress, &mesh, registry, spawn_nodes(cli, node_bin, &[addr], &mesh)).await)
}

/// The reconstructed Python registry and nodes.
async fn theirs(cli: &Cli, section: &str, nodes: usize, python: &Python) -> anyhow::Result<Timed> {
    let (registry_py, node_py) = (script("registry.py")?, script("node.py")?);
    let registry = LeanRegistry::spawn(python.run(&registry_py, &["0"]), |line| {
        let addr = line.trim().strip_prefix(REGISTRY_LISTENING)?;
        Some(addr.parse().with_context(|| format!("`{addr}` isn't an address")))
    })
    .await?;
    let (host, port) = (registry.addr.ip().to_string(), registry.addr.port().to_string());
    let mesh = Arc::new(PythonMesh { mesh: Mesh::new(nodes), met: Mutex::default() });
    let spawn = spawn_each(
        nodes,
        |_| python.run(&node_py, &[&host, &port]),
        |stdout, _, _| {
            let mesh = mesh.clone();
            async move {
                let mut own = None;
                read_lines(stdout, &mesh.mesh, |chunk| mesh.count(&mut own, chunk)).await;
            }
        },
    );
    let progress = format!("{section} python");
    Ok(Timed::run(cli, &progress, &mesh.mesh, registry, spawn).await)
}

/// A reconstruction, run from the bench's sources.
fn script(name: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("originals").join(name);
    ensure!(path.is_file(), "{} is missing: the bench runs the Python programs from its sources", path.display());
    Ok(path)
}

/// The Python mesh's counts. Its nodes have no names, so a pair is known by
/// the two listening ports: the receiver's, from the first line it prints,
/// and the greeter's, from the greeting.
struct PythonMesh {
    mesh: Arc<Mesh>,
    met: Mutex<HashSet<(u16, u16)>>,
}

impl PythonMesh {
    /// Counts what one node printed in `chunk` (whole lines); `own` is its
    /// listening port once read. Markers are searched for rather than lines
    /// split: `print` writes the newline apart, so two threads' lines can
    /// share one.
    fn count(&self, own: &mut Option<u16>, chunk: &[u8]) {
        let text = String::from_utf8_lossy(chunk);
        let each = |marker| after(&text, marker);
        if let Some(port) = each(LISTENING).next().and_then(leading_port) {
            *own = Some(port);
        }
        let greeters: Vec<u16> = each(GREETED_BY).filter_map(|addr| leading_port(addr.split_once(':')?.1)).collect();
        if let Some(own) = *own {
            let mut met = wire::lock(&self.met);
            for &greeter in &greeters {
                self.mesh.tally(met.insert((own.min(greeter), own.max(greeter))));
            }
        }
        let failures = text.match_indices(FAILED).inspect(|&(at, _)| self.mesh.sample(&text, at)).count();
        let counts = Counts {
            registered: each(REGISTERED).count(),
            received: greeters.len(),
            sent: each(SENT).count(),
            failed: failures,
            ..Counts::default()
        };
        self.mesh.add(chunk, counts);
    }
}

/// What follows each `marker` in `text`.
fn after<'a>(text: &'a str, marker: &'static str) -> impl Iterator<Item = &'a str> {
    text.match_indices(marker).map(move |(at, _)| &text[at + marker.len()..])
}

/// The port number that `text` starts with.
fn leading_port(text: &str) -> Option<u16> {
    let end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    text[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn counts_pairs_by_port_even_when_two_lines_share_one() {
        let python = PythonMesh { mesh: Mesh::new(3), met: Mutex::default() };
        let mut own = None;
        let chunk = b"Escuchando en el puerto 4000\nRegistrado, contactos: 0\n\
            Saludado por 127.0.0.1:4001Saludado por 127.0.0.1:4002\n\nSaludado por 127.0.0.1:4001\n";
        python.count(&mut own, chunk);
        assert_eq!(own, Some(4000));
        let mesh = &python.mesh;
        assert_eq!(mesh.received.load(Ordering::Relaxed), 3);
        assert_eq!(mesh.registered.load(Ordering::Relaxed), 1);
        assert_eq!(mesh.duplicate_and_missing(), (1, 1));
    }
}
