//! A second Docker engine on this machine, to be a second swarm host
//! ([`SecondEngine`]), and the two-host swarm the engines form
//! ([`TwoHostSwarm`]). Both undo everything they did when dropped, also when
//! a test fails.
//!
//! # How the second host is made
//! - A network namespace, [`NETNS`], joined to the machine by a veth pair on
//!   a private subnet ([`HOST_IP`] on the machine's side, [`SECOND_IP`] in the
//!   namespace): swarm traffic between the hosts (the control plane on 2377,
//!   gossip on 7946 and VXLAN on 4789) crosses that link and nothing else.
//! - The same `dockerd` runs in it (`nsenter --net`) in a mount and UTS
//!   namespace of its own (`unshare`): its mounts (and those of its managed
//!   containerd and shims) stay out of the machine's table and vanish with
//!   its processes, a tmpfs over `/run` keeps the paths that Docker and
//!   containerd hard-code there apart from the main engine's (and hides a
//!   system containerd's socket, so that it starts its own), and the
//!   hostname [`SECOND_HOSTNAME`] tells its tasks apart in `launcher ps`.
//!   `ip netns exec` would not do: it remounts `/sys`, which hides the cgroup
//!   hierarchies runc needs.
//! - All its state is under a temporary directory: data root (storage driver
//!   vfs, which mounts nothing), exec root, pidfile, socket, an empty
//!   configuration file instead of the machine's `/etc/docker/daemon.json`,
//!   and its log. Its containers go into a cgroup parent of their own, and
//!   its bridges get subnets of their own.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::docker::{docker, text, DOCKER_PATIENCE};

/// The second host's network namespace.
pub const NETNS: &str = "hit6-host2";
/// The veth end on the machine's side; its peer is moved into [`NETNS`].
const VETH: &str = "hit6-h2a";
const VETH_PEER: &str = "hit6-h2b";
/// The machine's address on the link: the swarm's address of the main engine.
pub const HOST_IP: &str = "10.231.0.1";
/// The second host's address: its swarm address and its `io.hit6.advertise-ip`.
pub const SECOND_IP: &str = "10.231.0.2";
const LINK_SUBNET: &str = "10.231.0.";
/// The second engine's `docker0`, and the pool its `docker_gwbridge` comes from.
const SECOND_BIP: &str = "10.232.0.1/24";
const SECOND_POOL: &str = "base=10.232.128.0/17,size=24";
pub const SECOND_HOSTNAME: &str = "hit6-host2";
/// The second engine's cgroup parent (cgroupfs driver): a path of its own.
const CGROUP_PARENT: &str = "hit6-host2";

/// Says why this machine cannot do what a test needs: a skip (`None`),
/// unless REQUIRE_DOCKER is set, then a failure.
fn unable<T>(suite: &str, why: &str) -> Option<T> {
    if std::env::var_os("REQUIRE_DOCKER").is_some() {
        panic!("REQUIRE_DOCKER is set but {why}");
    }
    eprintln!("skipping {suite}: {why}; set REQUIRE_DOCKER=1 to fail instead");
    None
}

/// Runs a command, failing the test with its output when it fails.
fn run(program: &str, args: &[&str]) {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(output.status.success(), "{program} {} failed: {}", args.join(" "), text(&output));
}

/// Whether a command succeeds (for cleanup, where a failure is reported, not fatal).
fn tidy(program: &str, args: &[&str]) -> bool {
    let output = Command::new(program).args(args).output();
    match output {
        Ok(output) if output.status.success() => true,
        Ok(output) => {
            eprintln!("cleanup: {program} {} failed: {}", args.join(" "), text(&output).trim());
            false
        }
        Err(error) => {
            eprintln!("cleanup: cannot run {program}: {error}");
            false
        }
    }
}

/// A program on PATH, or in the sbin directories a non-login PATH may lack.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from));
    dirs.map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

/// The network namespace and the veth pair; removed when dropped.
struct Link;

impl Link {
    fn make() -> Result<Link, String> {
        let ip = |args: &[&str]| {
            let output = Command::new("ip").args(args).output().map_err(|e| format!("cannot run ip: {e}"))?;
            if output.status.success() {
                Ok(())
            } else {
                Err(format!("`ip {}` failed: {}", args.join(" "), text(&output).trim()))
            }
        };
        ip(&["netns", "add", NETNS])?;
        // From here on, dropping the guard undoes what was made.
        let link = Link;
        ip(&["link", "add", VETH, "type", "veth", "peer", "name", VETH_PEER])?;
        ip(&["link", "set", VETH_PEER, "netns", NETNS])?;
        ip(&["addr", "add", &format!("{HOST_IP}/24"), "dev", VETH])?;
        ip(&["link", "set", VETH, "up"])?;
        ip(&["-n", NETNS, "addr", "add", &format!("{SECOND_IP}/24"), "dev", VETH_PEER])?;
        ip(&["-n", NETNS, "link", "set", VETH_PEER, "up"])?;
        ip(&["-n", NETNS, "link", "set", "lo", "up"])?;
        Ok(link)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Deleting one end deletes the pair at once; deleting the namespace
        // alone would free its end only when the kernel gets round to it.
        if Command::new("ip").args(["link", "show", VETH]).output().is_ok_and(|o| o.status.success()) {
            tidy("ip", &["link", "del", VETH]);
        }
        tidy("ip", &["netns", "del", NETNS]);
    }
}

/// Anything a previous run left that this one would collide with.
fn leftovers_of_a_previous_run() -> Option<String> {
    let netns = Command::new("ip").args(["netns", "list"]).output().ok()?;
    if String::from_utf8_lossy(&netns.stdout).split_whitespace().any(|n| n == NETNS) {
        return Some(format!("the network namespace {NETNS} exists (remove it with `ip netns del {NETNS}`)"));
    }
    let addresses = Command::new("ip").args(["-o", "addr"]).output().ok()?;
    let routes = Command::new("ip").args(["route"]).output().ok()?;
    let taken = [addresses, routes].iter().any(|o| String::from_utf8_lossy(&o.stdout).contains(LINK_SUBNET));
    taken.then(|| format!("the subnet {LINK_SUBNET}0/24 is in use here (`ip -br addr`, `ip route`)"))
}

/// A second `dockerd` in [`NETNS`], stopped and removed with all its state when dropped.
pub struct SecondEngine {
    daemon: Option<Child>,
    dir: PathBuf,
    socket: String,
    // Dropped after `Drop::drop` has stopped the daemon: the namespace outlives it.
    _link: Link,
}

impl SecondEngine {
    /// Starts the second engine and waits until it answers. `None` (saying
    /// why) when this machine cannot make a network namespace or run a second
    /// engine and REQUIRE_DOCKER is unset.
    pub fn start(suite: &str) -> Option<SecondEngine> {
        if !nix::unistd::geteuid().is_root() {
            return unable(suite, "a second engine in a network namespace needs root");
        }
        let programs = ["ip", "nsenter", "unshare", "dockerd"];
        if let Some(missing) = programs.iter().find(|p| find_program(p).is_none()) {
            return unable(suite, &format!("`{missing}` is not installed, needed for a second engine"));
        }
        if let Some(left) = leftovers_of_a_previous_run() {
            panic!("{left}: left by an earlier run that could not clean up?");
        }
        let link = match Link::make() {
            Ok(link) => link,
            Err(why) => return unable(suite, &format!("this machine cannot make a network namespace: {why}")),
        };
        let dir = std::env::temp_dir().join(format!("hit6-host2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let socket = format!("unix://{}", dir.join("docker.sock").display());
        let mut engine = SecondEngine { daemon: None, dir, socket, _link: link };
        engine.daemon = Some(engine.spawn_daemon());
        engine.await_ready();
        Some(engine)
    }

    fn spawn_daemon(&self) -> Child {
        let at = |name: &str| self.dir.join(name).display().to_string();
        std::fs::write(at("daemon.json"), "{}").expect("the engine's configuration is written");
        let log = File::create(at("dockerd.log")).expect("the engine's log is created");
        let dockerd = find_program("dockerd").expect("dockerd was found");
        // nsenter and unshare exec (no fork), and so does the script: the
        // child's pid is the daemon's.
        let script = r#"hostname "$1" && mount -t tmpfs -o mode=0755 tmpfs /run && shift && exec "$@""#;
        let label = format!("io.hit6.advertise-ip={SECOND_IP}");
        let daemon_args = [
            &dockerd.display().to_string(),
            "--config-file",
            &at("daemon.json"),
            "--data-root",
            &at("data"),
            "--exec-root",
            &at("exec"),
            "--pidfile",
            &at("dockerd.pid"),
            "-H",
            &self.socket,
            "--storage-driver",
            "vfs",
            "--cgroup-parent",
            &format!("/{CGROUP_PARENT}"),
            "--bip",
            SECOND_BIP,
            "--default-address-pool",
            SECOND_POOL,
            "--label",
            &label,
        ]
        .map(str::to_owned);
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{NETNS}"))
            .args(["unshare", "--mount", "--uts", "--propagation", "slave", "sh", "-c", script, "sh", SECOND_HOSTNAME])
            .args(daemon_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log is shared"))
            .stderr(log)
            .spawn()
            .expect("nsenter runs")
    }

    /// Polls the engine's socket until it answers, failing at once if the daemon exits.
    fn await_ready(&mut self) {
        let deadline = Instant::now() + DOCKER_PATIENCE;
        loop {
            let daemon = self.daemon.as_mut().expect("the daemon was started");
            if let Some(status) = daemon.try_wait().expect("the daemon can be waited for") {
                panic!("the second engine exited ({status}) before answering; its log ends:\n{}", self.log_tail());
            }
            if self.docker(&["version", "--format", "{{.Server.Version}}"]).status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the second engine did not answer within {DOCKER_PATIENCE:?}:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The last lines of the daemon's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Runs the docker CLI against the second engine.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker").args(["-H", &self.socket]).args(args).output().expect("the docker CLI runs")
    }

    /// Copies images from the main engine, with no registry in between.
    pub fn load_images(&self, images: &[&str]) {
        let mut save =
            Command::new("docker").arg("save").args(images).stdout(Stdio::piped()).spawn().expect("docker save runs");
        let load = Command::new("docker")
            .args(["-H", &self.socket, "load", "--quiet"])
            .stdin(save.stdout.take().expect("stdout is piped"))
            .output()
            .expect("docker load runs");
        let saved = save.wait().expect("docker save ends");
        assert!(saved.success() && load.status.success(), "loading {images:?} failed: {}", text(&load));
    }

    /// The host drops off the network, as a machine that loses power does:
    /// nothing on it says goodbye, and its peers hear nothing more.
    pub fn cut_link(&self) {
        run("ip", &["link", "set", VETH, "down"]);
    }

    /// Stops the daemon (SIGTERM: it stops its containers and its containerd),
    /// within DOCKER_PATIENCE, else kills whatever of it is left.
    pub fn stop(&mut self) {
        let Some(mut daemon) = self.daemon.take() else { return };
        let pid = Pid::from_raw(daemon.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + DOCKER_PATIENCE;
        while daemon.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                eprintln!("cleanup: the second engine did not stop within {DOCKER_PATIENCE:?}; killing what is left");
                let _ = daemon.kill();
                let _ = daemon.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // After a kill, its containerd, shims and containers may still run:
        // all are in the namespace or the cgroup parent, which are ours alone.
        for pid in self.leftover_processes() {
            eprintln!("cleanup: killing {pid}, left by the second engine");
            let _ = kill(pid, Signal::SIGKILL);
        }
    }

    fn leftover_processes(&self) -> Vec<Pid> {
        let in_netns = Command::new("ip").args(["netns", "pids", NETNS]).output();
        let mut pids: Vec<String> = in_netns
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        for dir in cgroup_dirs() {
            for procs in walk(&dir).iter().map(|d| d.join("cgroup.procs")) {
                pids.extend(std::fs::read_to_string(procs).unwrap_or_default().split_whitespace().map(str::to_owned));
            }
        }
        pids.iter().filter_map(|p| p.parse().ok()).map(Pid::from_raw).collect()
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        if self.daemon.is_some() {
            // Its swarm state is in its data root, removed below; leaving
            // first spares the daemon's shutdown any swarm work.
            let _ = self.docker(&["swarm", "leave", "--force"]);
            self.stop();
        }
        // The daemon's mounts live in its own mount namespace; anything that
        // still shows here under its directory is unmounted, lazily.
        for mount in mounts_under(&self.dir) {
            tidy("umount", &["-R", "-l", &mount]);
        }
        for dir in cgroup_dirs() {
            // Deepest first: a cgroup is removed with rmdir once it is empty.
            for cgroup in walk(&dir).iter().rev() {
                if let Err(error) = std::fs::remove_dir(cgroup) {
                    eprintln!("cleanup: cannot remove the cgroup {}: {error}", cgroup.display());
                }
            }
        }
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("cleanup: cannot remove {}: {error}", self.dir.display());
        }
    }
}

/// The second engine's cgroup parent in each hierarchy (v1) or the unified one (v2).
fn cgroup_dirs() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join(CGROUP_PARENT)];
    if let Ok(hierarchies) = std::fs::read_dir(root) {
        dirs.extend(hierarchies.flatten().map(|h| h.path().join(CGROUP_PARENT)));
    }
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}

/// `dir` and the directories below it, parents before children.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < found.len() {
        if let Ok(entries) = std::fs::read_dir(&found[i]) {
            found.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir() && !p.is_symlink()));
        }
        i += 1;
    }
    found
}

/// Mount points at or below `dir` in this process's mount namespace.
fn mounts_under(dir: &Path) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = dir.display().to_string();
    // The fifth field is the mount point.
    let points = table.lines().filter_map(|line| line.split(' ').nth(4).map(str::to_owned));
    points.filter(|point| point == &dir || point.starts_with(&format!("{dir}/"))).collect()
}

/// The main engine and the second one in a swarm made for a test: the main
/// engine initialises it on the link's address, the second joins as a
/// worker. Dropped, the main engine leaves it (the second one leaves when it
/// is dropped), and the bridge that swarm mode adds goes if the swarm made it.
pub struct TwoHostSwarm {
    gwbridge_made: bool,
}

impl TwoHostSwarm {
    /// Whether the main engine is in no swarm, as this test needs; if it is
    /// in one, says so: a skip, or a failure when REQUIRE_DOCKER is set.
    pub fn engine_is_free(suite: &str) -> bool {
        let state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
        let state = String::from_utf8_lossy(&state.stdout).trim().to_owned();
        // Joining a host to a swarm this test did not make, or changing its
        // settings, would not leave the engine as it was found.
        let why = format!("the engine is in a swarm already (state {state}): this test makes its own");
        if state == "inactive" {
            return true;
        }
        unable::<()>(suite, &why);
        false
    }

    /// Forms the swarm; `None` (saying why) when the main engine cannot
    /// start one and REQUIRE_DOCKER is unset.
    pub fn form(suite: &str, second: &SecondEngine) -> Option<TwoHostSwarm> {
        let gwbridge_made = !docker(&["network", "inspect", "docker_gwbridge"]).status.success();
        let listen = format!("{HOST_IP}:2377");
        let init = docker(&["swarm", "init", "--advertise-addr", HOST_IP, "--listen-addr", &listen]);
        if !init.status.success() {
            return unable(suite, &format!("the engine cannot start a swarm: {}", text(&init).trim()));
        }
        let swarm = TwoHostSwarm { gwbridge_made };
        // A host is marked down after a few missed heartbeats, the default
        // period being 5 s: the loss of the second host is noticed sooner.
        let update = docker(&["swarm", "update", "--dispatcher-heartbeat", "1s"]);
        assert!(update.status.success(), "swarm update failed: {}", text(&update));
        let token = docker(&["swarm", "join-token", "-q", "worker"]);
        assert!(token.status.success(), "no join token: {}", text(&token));
        let token = String::from_utf8_lossy(&token.stdout).trim().to_owned();
        let listen = format!("{SECOND_IP}:2377");
        let join = second.docker(&[
            "swarm",
            "join",
            "--token",
            &token,
            "--advertise-addr",
            SECOND_IP,
            "--listen-addr",
            &listen,
            &format!("{HOST_IP}:2377"),
        ]);
        assert!(join.status.success(), "the second engine could not join: {}\n{}", text(&join), second.log_tail());
        swarm.await_hosts_ready(2);
        Some(swarm)
    }

    /// Waits until `count` hosts are ready.
    fn await_hosts_ready(&self, count: usize) {
        let deadline = Instant::now() + DOCKER_PATIENCE;
        loop {
            let nodes = docker(&["node", "ls", "--format", "{{.Status}}"]);
            let ready = String::from_utf8_lossy(&nodes.stdout).lines().filter(|s| *s == "Ready").count();
            if ready == count {
                return;
            }
            assert!(Instant::now() < deadline, "{ready} of {count} hosts ready: {}", text(&nodes));
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for TwoHostSwarm {
    fn drop(&mut self) {
        let left = docker(&["swarm", "leave", "--force"]);
        assert!(left.status.success() || std::thread::panicking(), "swarm leave failed: {}", text(&left));
        if self.gwbridge_made {
            // Its last endpoint leaves a moment after the swarm; a stale
            // endpoint may keep it (a Docker bug), which is only reported.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !docker(&["network", "rm", "docker_gwbridge"]).status.success() {
                if Instant::now() > deadline {
                    eprintln!("cleanup: docker_gwbridge, made by this test's swarm, could not be removed");
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}
