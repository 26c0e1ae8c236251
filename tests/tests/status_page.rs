//! The registry's status page in a real browser (headless Chromium, driven
//! through Selenium by tests/browser/status_page.py): it shows a node that
//! joins and marks one that is killed, each within a second of the
//! registry's knowing, without a reload; and with a join token, only a
//! holder of the HTTP listener's own token sees the membership.
//!
//! Skips (saying so) without python3, Selenium, chromium or chromedriver,
//! unless REQUIRE_BROWSER is set (`.ci/run` installs them and sets it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use node::events::Event;
use registry::events::Event as RegistryEvent;
use tests::{http_addr, Node, Registry, TempDir, PATIENCE};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use wire::secure::JoinToken;

/// How soon the page must show what the registry knows.
const WITHIN_MS: u64 = 1000;

/// Whether a browser can be driven here; when none can, the test may skip
/// only without REQUIRE_BROWSER.
fn browser_available() -> bool {
    let selenium = std::process::Command::new("python3").args(["-c", "import selenium"]).output();
    let missing: Vec<&str> = [
        ("python3 with selenium (pip install selenium)", selenium.is_ok_and(|out| out.status.success())),
        ("chromium", which("chromium")),
        ("chromedriver (Debian's chromium-driver)", which("chromedriver")),
    ]
    .into_iter()
    .filter(|(_, found)| !found)
    .map(|(what, _)| what)
    .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(std::env::var_os("REQUIRE_BROWSER").is_none(), "REQUIRE_BROWSER is set, but there is no {missing:?}");
    eprintln!("skipping the status page test: no {missing:?}; set REQUIRE_BROWSER=1 to fail instead");
    false
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// The browser: the driving script, chromedriver and Chromium, in a
/// process group of their own that is killed when dropped, also when the
/// test fails (the script's own `quit` runs only on a clean end).
struct Browser {
    child: Child,
    stdin: Option<ChildStdin>,
    answers: Lines<BufReader<ChildStdout>>,
}

impl Browser {
    fn start() -> Browser {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/status_page.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs");
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take().unwrap());
        Browser { child, stdin, answers: BufReader::new(stdout).lines() }
    }

    /// Ends the script's input, so that it quits the browser, and waits for it.
    async fn close(mut self) {
        drop(self.stdin.take());
        let _ = tokio::time::timeout(PATIENCE, self.child.wait()).await;
    }

    async fn ask(&mut self, command: &str) -> String {
        let stdin = self.stdin.as_mut().expect("the browser's input is open");
        stdin.write_all(format!("{command}\n").as_bytes()).await.unwrap();
        let answer = tokio::time::timeout(PATIENCE, self.answers.next_line()).await;
        answer.expect("the browser answers in time").unwrap().expect("the browser is still running")
    }

    /// Waits for the page to show node `name` as `state`: how long after asking.
    async fn shows(&mut self, name: &str, state: &str) -> String {
        self.ask(&format!("wait {name} {state} {WITHIN_MS}")).await
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // The group the script leads: chromedriver and Chromium are in it too.
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// A private file holding `token`, as the registry requires of a token file.
fn token_file(dir: &Path, token: &JoinToken) -> PathBuf {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("http-token");
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).unwrap();
    file.write_all(token.reveal().as_bytes()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_a_node_join_and_marks_it_gone_once_killed() -> anyhow::Result<()> {
    if !browser_available() {
        return Ok(());
    }
    let (join, read) = (JoinToken::generate(), JoinToken::generate());
    let dir = TempDir::new("status-page");
    let read_file = token_file(dir.path(), &read);
    let read_file = read_file.to_str().unwrap();
    let registry =
        Registry::start_with_token(&join, &["--http-listen", "127.0.0.1:0", "--http-token-file", read_file]).await?;
    let http = http_addr(&registry.process, RegistryEvent::ServingHttp).await?;

    // The membership is the read token's holders' only; the page itself is not.
    let (status, _) = wire::http::get(http, "/status/events", PATIENCE).await?;
    assert_eq!(status, 401, "the events without the token");
    assert_eq!(wire::http::get(http, "/status", PATIENCE).await?.0, 200);

    let first = Node::start_with_token(registry.addr, "node-1", &join, &[]).await?;
    first.process.wait_for_event(Event::Registered).await?;
    let mut browser = Browser::start();
    let opened = browser.ask(&format!("open http://{http}/status#token={}", read.reveal().as_str())).await;
    assert_eq!(opened, "ok");
    assert!(browser.shows("node-1", "live").await.starts_with("ok"), "node-1, from the snapshot");
    assert_eq!(browser.ask("group 1").await, "ok node-1", "node-1 coordinates group 1");

    // A node that joins: shown within a second of registering.
    let second = Node::start_with_token(registry.addr, "node-2", &join, &[]).await?;
    second.process.wait_for_event(Event::Registered).await?;
    let shown = browser.shows("node-2", "live").await;
    assert!(shown.starts_with("ok"), "node-2 joined: {shown}");

    // A node that is killed: marked gone within a second of the registry's knowing.
    second.process.signal(Signal::SIGKILL);
    registry.process.wait_for_event(RegistryEvent::SessionLost).await?;
    let shown = browser.shows("node-2", "gone").await;
    assert!(shown.starts_with("ok"), "node-2 was killed: {shown}");
    assert!(browser.shows("node-1", "live").await.starts_with("ok"), "node-1 is still live");
    browser.close().await;
    Ok(())
}

#[tokio::test]
async fn with_a_join_token_and_no_token_of_its_own_the_listener_keeps_the_membership() -> anyhow::Result<()> {
    let join = JoinToken::generate();
    let registry = Registry::start_with_token(&join, &["--http-listen", "127.0.0.1:0"]).await?;
    let http = http_addr(&registry.process, RegistryEvent::ServingHttp).await?;
    let (status, body) = wire::http::get(http, "/status/events", PATIENCE).await?;
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("--http-token-file"), "{body:?}");
    Ok(())
}
