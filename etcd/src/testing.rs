//! A real etcd cluster for tests (feature `testing`): members on loopback ports, in temporary
//! data directories, with the signals that failover tests send them.
//!
//! The binary is `$ETCD_BIN`, else `etcd` on `PATH` (Debian's `etcd-server` installs one).
//! Without one, [`Cluster::start`] skips the suite, saying so, unless `REQUIRE_ETCD` is set.
//!
//! Members are tuned for sub-second failover (50 ms heartbeats, 250 ms elections) and run one
//! cluster at a time per test process: on a two-core machine, two clusters starve each
//! other's heartbeats into elections that no test asked for.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::join_all;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::{sleep, timeout, Instant};
use tonic::Response;

use crate::client::status;
use crate::proto::kv_client::KvClient;
use crate::proto::maintenance_client::MaintenanceClient;
use crate::proto::{CompactionRequest, MoveLeaderRequest, StatusResponse};
use crate::{Etcd, EtcdError, Revision};

/// One cluster at a time in a test process (see the module doc).
static ONE_CLUSTER: Semaphore = Semaphore::const_new(1);

/// Makes each cluster's directory name unique within the process.
static CLUSTERS_MADE: AtomicUsize = AtomicUsize::new(0);

/// How many times to start a whole cluster again on fresh ports when one was taken between
/// choosing it and etcd binding it.
const START_TRIES: usize = 3;

/// How long members get to elect a leader, on a loaded machine.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// How long a member has to answer one status request of the harness.
const STATUS_WITHIN: Duration = Duration::from_millis(500);

/// How long a leader has to hand leadership over (a few election timeouts).
const MOVE_WITHIN: Duration = Duration::from_secs(3);

/// How often to ask again while waiting for a leader.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// A running etcd cluster. Dropping it kills every member and removes its data.
pub struct Cluster {
    suite: String,
    bin: PathBuf,
    dir: PathBuf,
    members: Vec<Member>,
    /// A client over every member, for the harness's own status calls.
    client: Etcd,
    _turn: SemaphorePermit<'static>,
}

/// One member process and what it needs to start again.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// Why a cluster did not start.
enum StartFailure {
    /// A port was taken before etcd bound it: try again on other ports.
    PortTaken,
    /// Anything else: fail the test with this.
    Failed(String),
}

impl Cluster {
    /// Starts `n` members of a new cluster on 127.0.0.1 ports, tuned for sub-second failover
    /// (`--heartbeat-interval 50 --election-timeout 250`), and waits until it has a leader.
    ///
    /// Returns None after printing "skipping `suite`: no etcd binary (...)" when there is no
    /// etcd binary and `REQUIRE_ETCD` is unset; panics when it is set and there is none, or
    /// when the cluster does not start (with the tail of the failing member's log).
    pub async fn start(suite: &str, n: usize) -> Option<Cluster> {
        let bin = match find_etcd() {
            Ok(bin) => bin,
            Err(why) if std::env::var_os("REQUIRE_ETCD").is_some() => {
                panic!("REQUIRE_ETCD is set but there is no etcd binary ({why})")
            }
            Err(why) => {
                eprintln!("skipping {suite}: no etcd binary ({why}); set REQUIRE_ETCD=1 to fail instead");
                return None;
            }
        };
        let turn = ONE_CLUSTER.acquire().await.expect("the cluster semaphore is never closed");
        for _ in 0..START_TRIES {
            match Cluster::try_start(suite, &bin, n).await {
                Ok((members, dir, client)) => {
                    return Some(Cluster { suite: suite.to_owned(), bin, dir, members, client, _turn: turn });
                }
                Err(StartFailure::PortTaken) => continue,
                Err(StartFailure::Failed(why)) => panic!("{suite}: the etcd cluster did not start: {why}"),
            }
        }
        panic!("{suite}: the etcd cluster did not start: its ports were taken {START_TRIES} times")
    }

    /// The members' client endpoints, "127.0.0.1:port", by member index.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|member| format!("127.0.0.1:{}", member.client_port)).collect()
    }

    /// The index of the current leader, as the members that answer say (the one of the
    /// highest term among them); waits for one to be elected.
    pub async fn leader(&self) -> usize {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(leader) = self.current_leader().await {
                return leader;
            }
            assert!(Instant::now() < deadline, "{}: the cluster had no leader for {READY_WITHIN:?}", self.suite);
            sleep(POLL_EVERY).await;
        }
    }

    /// Kills member `i` with SIGKILL and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            signal(&child, Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Stops member `i` with SIGSTOP: it keeps its sockets and answers nothing.
    pub fn stop(&self, i: usize) {
        signal(self.members[i].child.as_ref().expect("the member to stop is running"), Signal::SIGSTOP);
    }

    /// Resumes member `i` with SIGCONT.
    pub fn cont(&self, i: usize) {
        signal(self.members[i].child.as_ref().expect("the member to resume is running"), Signal::SIGCONT);
    }

    /// Starts killed member `i` again on its data directory and ports, and waits until it
    /// answers and the cluster has a leader.
    pub async fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "{}: member {i} is still running", self.suite);
        let initial = initial_cluster(&self.members);
        let child = spawn(&self.bin, &self.members[i], &initial, "existing", &self.suite)
            .unwrap_or_else(|why| panic!("{}: {why}", self.suite));
        self.members[i].child = Some(child);
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(why) = exited(&mut self.members[i]) {
                panic!("{}: member {i} did not restart: {why}", self.suite);
            }
            let answered = timeout(STATUS_WITHIN, status(self.client.channel_at(i))).await;
            if matches!(answered, Ok(Ok(ref s)) if s.leader != 0) {
                return;
            }
            assert!(Instant::now() < deadline, "{}: member {i} did not rejoin within {READY_WITHIN:?}", self.suite);
            sleep(POLL_EVERY).await;
        }
    }

    /// Hands leadership to member `to` (etcd's MoveLeader, asked of the current leader) and
    /// waits until the members agree it leads.
    pub async fn move_leader(&self, to: usize) {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let from = self.leader().await;
            if from == to {
                return;
            }
            let target = timeout(STATUS_WITHIN, status(self.client.channel_at(to))).await;
            if let Ok(Ok(StatusResponse { header: Some(header), .. })) = target {
                let request = MoveLeaderRequest { target_id: header.member_id };
                let mut leader = MaintenanceClient::new(self.client.channel_at(from));
                // Whether it worked is seen by asking for the leader again.
                let _ = timeout(MOVE_WITHIN, leader.move_leader(request)).await;
            }
            assert!(Instant::now() < deadline, "{}: leadership did not move to member {to}", self.suite);
            sleep(POLL_EVERY).await;
        }
    }

    /// Compacts the cluster's history up to `revision`, physically (done when this returns).
    pub async fn compact(&self, revision: Revision) -> Result<(), EtcdError> {
        self.client
            .call("compact the history", |channel| async move {
                let request = CompactionRequest { revision, physical: true };
                KvClient::new(channel).compact(request).await.map(Response::into_inner)
            })
            .await?;
        Ok(())
    }

    async fn try_start(suite: &str, bin: &Path, n: usize) -> Result<(Vec<Member>, PathBuf, Etcd), StartFailure> {
        let dir = scratch_dir(suite);
        let ports = free_ports(2 * n).map_err(|err| StartFailure::Failed(format!("cannot pick free ports: {err}")))?;
        let mut members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                data_dir: dir.join(format!("m{i}")),
                log: dir.join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let initial = initial_cluster(&members);
        let mut failure = None;
        for member in &mut members {
            match spawn(bin, member, &initial, "new", suite) {
                Ok(child) => member.child = Some(child),
                Err(why) => failure = Some(StartFailure::Failed(why)),
            }
        }
        if failure.is_none() {
            failure = wait_for_leader(&mut members).await.err();
        }
        match failure {
            None => {
                let endpoints: Vec<String> =
                    members.iter().map(|member| format!("127.0.0.1:{}", member.client_port)).collect();
                match Etcd::connect(&endpoints, READY_WITHIN).await {
                    Ok(client) => Ok((members, dir, client)),
                    Err(err) => {
                        discard(&mut members, &dir);
                        Err(StartFailure::Failed(err.to_string()))
                    }
                }
            }
            Some(failure) => {
                discard(&mut members, &dir);
                Err(failure)
            }
        }
    }

    /// The leader's index if the members that answer now agree there is one we know.
    async fn current_leader(&self) -> Option<usize> {
        let running: Vec<usize> = (0..self.members.len()).filter(|&i| self.members[i].child.is_some()).collect();
        let asked = running.iter().map(|&i| timeout(STATUS_WITHIN, status(self.client.channel_at(i))));
        let answers: Vec<(usize, u64, u64, u64)> = join_all(asked)
            .await
            .into_iter()
            .zip(&running)
            .filter_map(|(answer, &i)| {
                let status = answer.ok()?.ok()?;
                Some((i, status.header?.member_id, status.leader, status.raft_term))
            })
            .collect();
        let (_, _, leader, _) = answers.iter().max_by_key(|(_, _, _, term)| *term)?;
        answers.iter().find(|(_, id, _, _)| id == leader).map(|(i, _, _, _)| *i)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        discard(&mut self.members, &self.dir);
    }
}

/// Kills every member still running (resumed first, so none lingers stopped) and removes the
/// cluster's directory.
fn discard(members: &mut [Member], dir: &Path) {
    for member in members.iter_mut() {
        if let Some(mut child) = member.child.take() {
            signal(&child, Signal::SIGCONT);
            signal(&child, Signal::SIGKILL);
            let _ = child.wait();
        }
    }
    let _ = fs::remove_dir_all(dir);
}

/// Waits until every member answers and they agree on a leader; fails early when a member
/// exits.
async fn wait_for_leader(members: &mut [Member]) -> Result<(), StartFailure> {
    let endpoints: Vec<String> = members.iter().map(|member| format!("127.0.0.1:{}", member.client_port)).collect();
    let channels = endpoints
        .iter()
        .map(|endpoint| crate::pool::channel_to(endpoint))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| StartFailure::Failed(err.to_string()))?;
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        for member in members.iter_mut() {
            if let Some(why) = exited(member) {
                return Err(if why.contains("address already in use") {
                    StartFailure::PortTaken
                } else {
                    StartFailure::Failed(format!("member {} exited: {why}", member.name))
                });
            }
        }
        let asked = channels.iter().map(|channel| timeout(STATUS_WITHIN, status(channel.clone())));
        let leaders: Vec<Option<u64>> =
            join_all(asked).await.into_iter().map(|answer| answer.ok()?.ok().map(|status| status.leader)).collect();
        if leaders[0].is_some_and(|leader| leader != 0) && leaders.iter().all(|leader| *leader == leaders[0]) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let tails: Vec<String> =
                members.iter().map(|member| format!("{}:\n{}", member.name, tail(&member.log))).collect();
            return Err(StartFailure::Failed(format!(
                "no leader within {READY_WITHIN:?}; the members' logs end with:\n{}",
                tails.join("\n")
            )));
        }
        sleep(POLL_EVERY).await;
    }
}

/// Why `member` has exited (its exit status and log tail), or None while it runs.
fn exited(member: &mut Member) -> Option<String> {
    let status = member.child.as_mut()?.try_wait().ok()??;
    member.child = None;
    Some(format!("{status}; its log ends with:\n{}", tail(&member.log)))
}

/// Starts `member` with stdout and stderr appended to its log file.
fn spawn(bin: &Path, member: &Member, initial_cluster: &str, state: &str, suite: &str) -> Result<Child, String> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&member.log)
        .map_err(|err| format!("cannot open the log file {}: {err}", member.log.display()))?;
    let log_too = log.try_clone().map_err(|err| format!("cannot share the log file: {err}"))?;
    let client_url = format!("http://127.0.0.1:{}", member.client_port);
    let peer_url = format!("http://127.0.0.1:{}", member.peer_port);
    Command::new(bin)
        .args(["--name", &member.name])
        .arg("--data-dir")
        .arg(&member.data_dir)
        .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", initial_cluster, "--initial-cluster-state", state])
        .args(["--initial-cluster-token", &format!("{suite}-{}", std::process::id())])
        .args(["--heartbeat-interval", "50", "--election-timeout", "250"])
        // Pre-vote: a member back from SIGSTOP rejoins without forcing a needless election.
        .arg("--pre-vote=true")
        .args(["--logger", "zap", "--log-outputs", "stderr"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_too)
        .spawn()
        .map_err(|err| format!("cannot start {}: {err}", bin.display()))
}

/// `m0=http://127.0.0.1:p0,m1=...`: every member's peer URL.
fn initial_cluster(members: &[Member]) -> String {
    members
        .iter()
        .map(|member| format!("{}=http://127.0.0.1:{}", member.name, member.peer_port))
        .collect::<Vec<_>>()
        .join(",")
}

fn signal(child: &Child, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid fits in an i32"));
    // ESRCH only: the member died on its own, which the test will notice by itself.
    let _ = kill(pid, signal);
}

/// `$ETCD_BIN`, or `etcd` on `PATH`.
fn find_etcd() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("ETCD_BIN") {
        let bin = PathBuf::from(bin);
        return if bin.is_file() { Ok(bin) } else { Err(format!("ETCD_BIN={} is not a file", bin.display())) };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| "ETCD_BIN is unset and there is no etcd on PATH".to_owned())
}

/// `n` distinct ports that were free a moment ago: all bound at once, then released.
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<Vec<_>>>()?;
    listeners.iter().map(|listener| Ok(listener.local_addr()?.port())).collect()
}

/// A new directory for one cluster: in /dev/shm when there is one, since etcd fsyncs every
/// write and a slow disk under a parallel build turns fsync stalls into elections.
fn scratch_dir(suite: &str) -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    let safe: String = suite.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let made = CLUSTERS_MADE.fetch_add(1, Ordering::Relaxed);
    let dir = base.join(format!("etcd-test-{safe}-{}-{made}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("cannot create {}: {err}", dir.display()));
    dir
}

/// The last lines of a log file, for a panic message.
fn tail(log: &Path) -> String {
    const KEEP: u64 = 4096;
    let Ok(mut file) = File::open(log) else { return format!("(no log at {})", log.display()) };
    let length = file.metadata().map(|meta| meta.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(KEEP)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}
