//! The operators' HTTP listener (`--http-listen`): `/metrics`, `/health` and
//! whatever else a service adds ([`Routes`]), apart from the service's own
//! port and bounded on its own, so that nothing done to it reaches members.
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections at once (one more is
//! closed at once); a request's head must arrive within [`HEAD_TIMEOUT`] and
//! fit in [`MAX_HEAD_BYTES`] with at most [`MAX_HEADERS`] headers; one request
//! per connection, so that an idle connection is bounded by the head's
//! deadline alone; only `GET` and `HEAD`, and no body.
//!
//! [`get`] is the client side: a bounded `GET` of one path, for the
//! `health` subcommands and the launcher.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
pub use hyper::StatusCode;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::secure::{JoinToken, TokenError};

/// Connections the listener serves at once.
pub const MAX_CONNECTIONS: usize = 64;

/// How long a client may take to send a request's head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest request head read (hyper's smallest buffer).
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Headers a request may carry.
pub const MAX_HEADERS: usize = 32;

/// The largest body [`get`] reads.
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// The media type of Prometheus's text format as prometheus-client writes it.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A chunk stream of a body that goes on, such as server-sent events.
pub type Chunks = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

/// What a route answers.
pub struct Page {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Body,
}

/// A page's body: whole, or a stream that ends when the client or the service does.
pub enum Body {
    Whole(Bytes),
    Stream(Chunks),
}

impl Page {
    pub fn new(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Page {
        Page { status, content_type, body: Body::Whole(body.into()) }
    }

    pub fn text(status: StatusCode, text: impl Into<Bytes>) -> Page {
        Page::new(status, "text/plain; charset=utf-8", text)
    }

    pub fn not_found() -> Page {
        Page::text(StatusCode::NOT_FOUND, "not found\n")
    }
}

/// A request as routes see it: its path (without the query) and its
/// `Authorization` header's bearer token, if any.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub bearer: Option<&'a str>,
}

/// `/metrics`: `registry` in Prometheus's text format.
pub fn metrics_page(registry: &prometheus_client::registry::Registry) -> Page {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, registry) {
        Ok(()) => Page::new(StatusCode::OK, OPENMETRICS, text),
        // Only a collector's own error could fail it, and none of ours returns one.
        Err(_) => Page::text(StatusCode::INTERNAL_SERVER_ERROR, "the metrics could not be written\n"),
    }
}

/// A read-only bearer token of the HTTP listener's own, for what it serves
/// only to operators (the registry's status page): as a join token is
/// written (64 hexadecimal characters, in a file only its owner reads), but
/// another secret, so that the join token never travels over plaintext HTTP.
#[derive(Debug)]
pub struct ReadToken(JoinToken);

/// The variable a [`ReadToken`] may come from instead of a file.
pub const READ_TOKEN_ENV: &str = "HIT6_HTTP_TOKEN";

impl ReadToken {
    /// The token in `file` when one is given, else in [`READ_TOKEN_ENV`]; none without either.
    pub fn from_file_or_env(file: Option<&std::path::Path>) -> Result<Option<ReadToken>, TokenError> {
        if file.is_some() {
            return Ok(JoinToken::from_file_or_env(file)?.map(ReadToken));
        }
        match std::env::var(READ_TOKEN_ENV) {
            Ok(text) => JoinToken::parse(&zeroize::Zeroizing::new(text)).map(|token| Some(ReadToken(token))),
            Err(_) => Ok(None),
        }
    }

    pub fn generate() -> ReadToken {
        ReadToken(JoinToken::generate())
    }

    pub fn reveal(&self) -> zeroize::Zeroizing<String> {
        self.0.reveal()
    }

    /// Whether a request's bearer token is this one.
    pub fn admits(&self, bearer: Option<&str>) -> bool {
        bearer.and_then(|bearer| JoinToken::parse(bearer).ok()).is_some_and(|token| token.is(&self.0))
    }
}

/// What a service serves on its HTTP listener.
pub trait Routes: Send + Sync + 'static {
    fn page(&self, asked: Asked<'_>) -> Page;
}

/// Serves `routes` on `listener` until `token` is cancelled.
pub async fn serve(listener: TcpListener, routes: Arc<dyn Routes>, tracker: TaskTracker, token: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, most likely: wait for some to close.
                    debug!(%error, "failed to accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = token.cancelled() => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "closed an HTTP connection past the listener's bound");
            continue;
        };
        let (routes, token) = (routes.clone(), token.clone());
        tracker.spawn(async move {
            let _slot = slot;
            tokio::select! {
                served = connection(stream, routes) => if let Err(error) = served {
                    debug!(%peer, %error, "an HTTP connection ended in error");
                },
                () = token.cancelled() => {}
            }
        });
    }
}

fn connection(stream: TcpStream, routes: Arc<dyn Routes>) -> impl Future<Output = hyper::Result<()>> {
    let service = hyper::service::service_fn(move |request| {
        let page = respond(&request, routes.as_ref());
        async move { Ok::<_, Infallible>(page) }
    });
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service)
}

type Answer = Response<UnsyncBoxBody<Bytes, Infallible>>;

fn respond(request: &Request<Incoming>, routes: &dyn Routes) -> Answer {
    let head = request.method() == Method::HEAD;
    if request.method() != Method::GET && !head {
        let mut answer = answer(Page::text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n"));
        answer.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return answer;
    }
    let bearer = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let asked = Asked { path: request.uri().path(), query: request.uri().query(), bearer };
    let page = routes.page(asked);
    if head {
        // hyper sends no body for HEAD, but would still poll a stream.
        return answer(Page { body: Body::Whole(Bytes::new()), ..page });
    }
    answer(page)
}

fn answer(page: Page) -> Answer {
    let body = match page.body {
        Body::Whole(bytes) => Full::new(bytes).boxed_unsync(),
        Body::Stream(chunks) => {
            let frames = futures::StreamExt::map(chunks, |chunk| Ok::<_, Infallible>(Frame::data(chunk)));
            BodyExt::boxed_unsync(StreamBody::new(frames))
        }
    };
    let mut answer = Response::new(body);
    *answer.status_mut() = page.status;
    let headers = answer.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(page.content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    answer
}

/// Why [`get`] failed.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error("cannot connect to {addr}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("failed to get http://{addr}{path}")]
    Http { addr: SocketAddr, path: String, source: hyper::Error },
    #[error("the answer from http://{addr}{path} is larger than {MAX_BODY_BYTES} bytes or broke off")]
    Body { addr: SocketAddr, path: String },
}

/// `GET http://addr/path`, whole, within `timeout`: the status and body.
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(StatusCode, Bytes), GetError> {
    tokio::time::timeout(timeout, fetch(addr, path)).await.map_err(|_| GetError::Timeout { addr, timeout })?
}

async fn fetch(addr: SocketAddr, path: &str) -> Result<(StatusCode, Bytes), GetError> {
    let http = |source| GetError::Http { addr, path: path.to_owned(), source };
    let stream = TcpStream::connect(addr).await.map_err(|source| GetError::Connect { addr, source })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(http)?;
    let driving = tokio::spawn(connection);
    let request = Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|_| GetError::Body { addr, path: path.to_owned() })?;
    let response = sender.send_request(request).await.map_err(http)?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_BODY_BYTES).collect().await;
    driving.abort();
    let body = body.map_err(|_| GetError::Body { addr, path: path.to_owned() })?;
    Ok((status, body.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Hello;

    impl Routes for Hello {
        fn page(&self, asked: Asked<'_>) -> Page {
            match asked.path {
                "/hello" => Page::text(StatusCode::OK, format!("hello {}\n", asked.bearer.unwrap_or("stranger"))),
                _ => Page::not_found(),
            }
        }
    }

    async fn listening() -> (SocketAddr, CancellationToken) {
        let listener = crate::connection::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        tokio::spawn(serve(listener, Arc::new(Hello), TaskTracker::new(), token.clone()));
        (addr, token)
    }

    async fn raw(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn a_route_is_served_and_anything_else_is_refused_with_its_status() {
        let (addr, _token) = listening().await;
        let (status, body) = get(addr, "/hello", Duration::from_secs(5)).await.unwrap();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello stranger\n"[..]));
        assert_eq!(get(addr, "/nowhere", Duration::from_secs(5)).await.unwrap().0, StatusCode::NOT_FOUND);
        let bearer = raw(addr, b"GET /hello HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abc\r\n\r\n").await;
        assert!(bearer.starts_with("HTTP/1.1 200") && bearer.ends_with("hello abc\n"), "{bearer}");
        let post = raw(addr, b"POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405") && post.contains("allow: GET, HEAD"), "{post}");
        let head = raw(addr, b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200") && !head.contains("hello"), "{head}");
    }

    #[tokio::test]
    async fn a_head_too_large_or_with_too_many_headers_is_refused() {
        let (addr, _token) = listening().await;
        let huge = format!("GET /hello HTTP/1.1\r\nHost: x\r\nX-Huge: {}\r\n\r\n", "a".repeat(64 * 1024));
        let answer = raw(addr, huge.as_bytes()).await;
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer}");
        let many: String = (0..MAX_HEADERS + 1).map(|i| format!("X-{i}: y\r\n")).collect();
        let answer = raw(addr, format!("GET /hello HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes()).await;
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer}");
        assert_eq!(get(addr, "/hello", Duration::from_secs(5)).await.unwrap().0, StatusCode::OK, "still serving");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_finishes_its_head_is_hung_up_on() {
        let (addr, _token) = listening().await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /hello HTTP/1.1\r\nHost:").await.unwrap();
        let mut answer = Vec::new();
        let started = tokio::time::Instant::now();
        let _ = stream.read_to_end(&mut answer).await;
        assert!(started.elapsed() >= HEAD_TIMEOUT, "hung up after {:?}", started.elapsed());
        assert!(answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"), "{}", String::from_utf8_lossy(&answer));
    }

    #[tokio::test]
    async fn connections_past_the_bound_are_closed_and_the_listener_serves_again_once_they_go() {
        let (addr, _token) = listening().await;
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        // The listener took every slot once it answers past them; one more is closed unanswered.
        let refused = loop {
            let answer = raw(addr, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").await;
            if answer.is_empty() {
                break answer;
            }
            idle.push(TcpStream::connect(addr).await.unwrap());
        };
        assert!(refused.is_empty());
        idle.clear();
        let served = loop {
            match get(addr, "/hello", Duration::from_secs(5)).await {
                Ok((status, _)) => break status,
                Err(_) => tokio::task::yield_now().await,
            }
        };
        assert_eq!(served, StatusCode::OK);
    }
}
