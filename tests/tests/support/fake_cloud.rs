//! A stand-in, on loopback, for a cloud's metadata server and secret store:
//! it answers HTTP/1.1 requests from a fixed table of routes and records
//! every request it was sent, so that a test can check what a script asked
//! for and with which credentials.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the fake answers to `method path`.
pub struct Route {
    pub method: &'static str,
    pub path: String,
    pub status: u16,
    pub body: String,
}

impl Route {
    pub fn new(method: &'static str, path: &str, status: u16, body: impl Into<String>) -> Route {
        Route { method, path: path.to_owned(), status, body: body.into() }
    }
}

/// A request as the fake received it; header names in lowercase.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

pub struct FakeCloud {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeCloud {
    /// Listens on 127.0.0.1 and answers each route; anything else gets 404.
    pub fn start(routes: Vec<Route>) -> FakeCloud {
        let listener = TcpListener::bind("127.0.0.1:0").expect("loopback is available");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    if let Some(request) = answer(stream, &routes) {
                        requests.lock().unwrap().push(request);
                    }
                }
            })
        };
        FakeCloud { port, requests, stop, thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT`, the form the module's endpoints take.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request so far, in the order they came.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeCloud {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request from `stream`, answers it and closes the connection.
fn answer(stream: TcpStream, routes: &[Route]) -> Option<Request> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = BTreeMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let Some((name, value)) = line.trim_end().split_once(':') else { break };
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let length = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let request = Request { method, path, headers, body: String::from_utf8_lossy(&body).into_owned() };

    let route = routes.iter().find(|r| r.method == request.method && r.path == request.path);
    let (status, body) = route.map_or((404, ""), |r| (r.status, r.body.as_str()));
    let mut stream = stream;
    let _ =
        write!(stream, "HTTP/1.1 {status} Fake\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    Some(request)
}
