//! The integration test harness: a scripted origin that records every request it receives, a
//! viewer that talks to a node over HTTP/1.1 (or raw TCP for requests a client library would
//! refuse to send), and a node started from TOML text.
//!
//! Every wait is bounded: a request that hangs fails its test after [`TIMEOUT`] instead of
//! blocking the run.

// Each test file uses a different subset of the harness.
#![allow(dead_code)]

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How long any one request, node start or wait may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The node id every test config uses; it appears in Via and Cache-Status.
pub const NODE_ID: &str = "test-node";

// ---------------------------------------------------------------------------------------------
// Origin
// ---------------------------------------------------------------------------------------------

/// A request as the origin received it.
#[derive(Clone)]
pub struct Seen {
    pub method: Method,
    /// The path without the query.
    pub path: String,
    /// Path and query, as sent.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    /// A header's values joined with ", ", or `None` when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        join_values(&self.headers, name)
    }

    /// The query's `name=value` pairs, sorted, so tests need not care about the order sent.
    pub fn query_pairs(&self) -> Vec<String> {
        let mut pairs: Vec<String> = self
            .uri
            .split_once('?')
            .map(|(_, q)| {
                q.split('&')
                    .filter(|p| !p.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        pairs.sort();
        pairs
    }
}

impl fmt::Debug for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {:?}", self.method, self.uri, self.headers)
    }
}

/// What the origin answers to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub delay: Duration,
    /// Sent as this many chunks with this pause between them, without Content-Length.
    pub streamed: Option<(usize, Duration)>,
    /// Announces the whole body's Content-Length, sends only this many bytes, then breaks
    /// the connection.
    pub truncated_at: Option<usize>,
}

impl Reply {
    /// 200 with a body.
    pub fn ok(body: impl Into<Bytes>) -> Reply {
        Reply::status(200, body)
    }

    pub fn status(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            delay: Duration::ZERO,
            streamed: None,
            truncated_at: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Shorthand for the `Cache-Control` header.
    pub fn cache_control(self, value: &str) -> Reply {
        self.header("cache-control", value)
    }

    /// Waits this long before answering (headers and body together).
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// Sends the body in `chunks` pieces, `gap` apart, with chunked framing.
    pub fn streamed(mut self, chunks: usize, gap: Duration) -> Reply {
        self.streamed = Some((chunks.max(1), gap));
        self
    }

    /// Breaks the connection after `bytes` bytes of the body (Content-Length says more).
    pub fn truncated_at(mut self, bytes: usize) -> Reply {
        self.truncated_at = Some(bytes);
        self
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A path's script: given the request and how many requests this path has received (this one
/// included, so the first is 1), what to answer.
type Script = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

#[derive(Default)]
struct OriginState {
    scripts: Mutex<HashMap<String, Script>>,
    counts: Mutex<HashMap<String, usize>>,
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A real HTTP origin on 127.0.0.1, scripted per path. Paths without a script get 404.
///
/// It answers conditional requests itself: when a scripted 200 carries an `ETag` that the
/// request's `If-None-Match` names (or, without `If-None-Match`, a `Last-Modified` no later
/// than `If-Modified-Since`), the viewer of the origin — the node — gets a 304 with the
/// reply's headers and no body.
pub struct Origin {
    addr: SocketAddr,
    state: Arc<OriginState>,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl Origin {
    pub async fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(OriginState::default());
        let server = tokio::spawn(serve_origin(listener, state.clone()));
        Origin {
            addr,
            state,
            server: Mutex::new(Some(server)),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Scripts a path (without query); replaces any earlier script for it.
    pub fn route(
        &self,
        path: &str,
        script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) {
        self.state
            .scripts
            .lock()
            .insert(path.to_string(), Arc::new(script));
    }

    /// Every request received so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().clone()
    }

    /// The requests received for one path (without query).
    pub fn seen_for(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }

    /// How many requests one path (without query) has received.
    pub fn count(&self, path: &str) -> usize {
        self.state.counts.lock().get(path).copied().unwrap_or(0)
    }

    /// How many requests were ever being answered at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Waits until `path` has received at least `n` requests; fails the test after `within`.
    pub async fn wait_for_count(&self, path: &str, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.count(path) < n {
            assert!(
                Instant::now() < deadline,
                "origin saw {} requests for {path} within {within:?}, expected at least {n}: {:?}",
                self.count(path),
                self.seen_for(path)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops listening and drops every open connection, so the node's pooled connections
    /// break too. Requests after this are refused at connect.
    pub fn stop(&self) {
        if let Some(server) = self.server.lock().take() {
            server.abort();
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve_origin(listener: TcpListener, state: Arc<OriginState>) {
    // Connection tasks live in this set: aborting the accept task drops it, which aborts
    // them and closes their sockets.
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        while connections.try_join_next().is_some() {}
        let state = state.clone();
        connections.spawn(async move {
            let svc = service_fn(move |req| origin_answer(state.clone(), req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn origin_answer(
    state: Arc<OriginState>,
    req: Request<Incoming>,
) -> Result<hyper::Response<OriginBody>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let seen = Seen {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        uri: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into()),
        headers: parts.headers.clone(),
        body,
    };
    let n = {
        let mut counts = state.counts.lock();
        let c = counts.entry(seen.path.clone()).or_insert(0);
        *c += 1;
        *c
    };
    state.seen.lock().push(seen.clone());
    let script = state.scripts.lock().get(&seen.path).cloned();
    let reply = match script {
        Some(script) => script(&seen, n),
        None => Reply::status(404, "no such path at the origin"),
    };

    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    state.in_flight.fetch_sub(1, Ordering::SeqCst);

    let not_modified = reply.status == 200 && not_modified(&seen, &reply);
    let mut resp = hyper::Response::builder().status(if not_modified { 304 } else { reply.status });
    for (name, value) in &reply.headers {
        if not_modified && name.to_ascii_lowercase().starts_with("content-") {
            continue;
        }
        resp = resp.header(name.as_str(), value.as_str());
    }
    let full = |b: Bytes| Full::new(b).map_err(|never| match never {}).boxed();
    let body = match (reply.streamed, reply.truncated_at) {
        _ if not_modified => full(Bytes::new()),
        (_, Some(at)) => {
            resp = resp.header("content-length", reply.body.len());
            let part = reply.body.slice(..at.min(reply.body.len()));
            let frames = futures_util::stream::iter([
                Ok(Frame::data(part)),
                Err(std::io::Error::other("origin connection broken on purpose")),
            ]);
            StreamBody::new(frames).boxed()
        }
        (None, None) => full(reply.body.clone()),
        (Some((chunks, gap)), None) => streamed_body(reply.body.clone(), chunks, gap),
    };
    Ok(resp.body(body).expect("scripted reply is a valid response"))
}

type OriginBody = BoxBody<Bytes, std::io::Error>;

fn streamed_body(body: Bytes, chunks: usize, gap: Duration) -> OriginBody {
    let size = body.len().div_ceil(chunks).max(1);
    let pieces: Vec<Bytes> = (0..body.len())
        .step_by(size)
        .map(|at| body.slice(at..(at + size).min(body.len())))
        .collect();
    let frames = futures_util::stream::unfold((pieces, 0), move |(pieces, i)| async move {
        if i >= pieces.len() {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        let frame = Ok(Frame::data(pieces[i].clone()));
        Some((frame, (pieces, i + 1)))
    });
    StreamBody::new(frames).boxed()
}

fn not_modified(seen: &Seen, reply: &Reply) -> bool {
    if let Some(inm) = seen.header("if-none-match") {
        let Some(etag) = reply.get("etag") else {
            return false;
        };
        let bare = |t: &str| t.trim().trim_start_matches("W/").to_string();
        return inm
            .split(',')
            .any(|t| t.trim() == "*" || bare(t) == bare(etag));
    }
    if let (Some(ims), Some(lm)) = (seen.header("if-modified-since"), reply.get("last-modified")) {
        if let (Ok(ims), Ok(lm)) = (
            httpdate::parse_http_date(&ims),
            httpdate::parse_http_date(lm),
        ) {
            return lm <= ims;
        }
    }
    false
}

// ---------------------------------------------------------------------------------------------
// Node
// ---------------------------------------------------------------------------------------------

/// A running node, its store directory and a viewer client pointed at it.
pub struct TestNode {
    node: Option<strata::server::Node>,
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    _dir: tempfile::TempDir,
}

/// Starts a node from a config's behaviours, origins and policies. The `[node]` and `[store]`
/// sections are written here (id `test-node`, free ports, a temporary store); `{origin}` in
/// the text is replaced by the origin's URL.
pub async fn start_node(origin: &Origin, toml: &str) -> TestNode {
    start_node_as(NODE_ID, &origin.url(), toml).await
}

/// Like [`start_node`], with another node id and any upstream URL (e.g. another node's, to
/// chain tiers).
pub async fn start_node_as(id: &str, upstream: &str, toml: &str) -> TestNode {
    start_node_on(id, "127.0.0.1:0", upstream, toml).await
}

/// Like [`start_node_as`], listening on a given address.
pub async fn start_node_on(id: &str, listen: &str, upstream: &str, toml: &str) -> TestNode {
    launch(id, listen, &toml.replace("{origin}", upstream)).await
}

/// Like [`start_node`] with several origins: each `{name}` in the text is replaced by the
/// URL of the origin given for it.
pub async fn start_node_with(origins: &[(&str, &Origin)], toml: &str) -> TestNode {
    let mut text = toml.to_string();
    for (name, origin) in origins {
        text = text.replace(&format!("{{{name}}}"), &origin.url());
    }
    launch(NODE_ID, "127.0.0.1:0", &text).await
}

async fn launch(id: &str, listen: &str, toml: &str) -> TestNode {
    let dir = tempfile::tempdir().expect("temporary store directory");
    let text = format!(
        "[node]\nid = \"{id}\"\nlisten = \"{listen}\"\nadmin_listen = \"127.0.0.1:0\"\n\n\
         [store]\npath = \"{}\"\nsize = \"1GiB\"\nmemory = \"256MiB\"\n\n{toml}",
        dir.path().display(),
    );
    let config = strata::config::Resolved::from_toml(&text, "test.toml")
        .unwrap_or_else(|e| panic!("test config does not resolve: {e}\n{text}"));
    let node = tokio::time::timeout(TIMEOUT, strata::server::Node::start(config))
        .await
        .expect("node started within the timeout")
        .expect("node starts");
    TestNode {
        addr: node.addr(),
        admin_addr: node.admin_addr(),
        node: Some(node),
        client: Client::builder(TokioExecutor::new()).build_http(),
        _dir: dir,
    }
}

impl TestNode {
    /// GET `path` with extra request headers.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.request("GET", path, headers, "").await
    }

    /// Any method, with headers and a body, over HTTP/1.1.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response {
        send(&self.client, self.addr, method, path, headers, body).await
    }

    /// GET that may fail (e.g. a body cut short): the error as text instead of a panic.
    pub async fn try_get(&self, path: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
        try_send(&self.client, self.addr, "GET", path, headers, "").await
    }

    /// GET on the admin listener.
    pub async fn admin_get(&self, path: &str) -> Response {
        send(&self.client, self.admin_addr, "GET", path, &[], "").await
    }

    /// The node's URL, to use as another node's origin.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// GET over HTTP/2 without TLS (prior knowledge h2c).
    pub async fn get_h2c(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http();
        send(&client, self.addr, "GET", path, headers, "").await
    }

    /// Writes `request` as-is on a new connection and reads one response.
    pub async fn raw(&self, request: &[u8]) -> RawResponse {
        raw_request(self.addr, request).await
    }

    pub async fn shutdown(mut self) {
        if let Some(node) = self.node.take() {
            tokio::time::timeout(TIMEOUT, node.shutdown())
                .await
                .expect("node shut down within the timeout");
        }
    }
}

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    try_send(client, addr, method, path, headers, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

async fn try_send(
    client: &Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Response, String> {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .expect("test request is valid");
    let started = Instant::now();
    let exchange = async {
        let resp = client.request(req).await?;
        let headers_after = started.elapsed();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok::<_, anyhow::Error>((parts, body, headers_after))
    };
    let (parts, body, headers_after) = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no response within {TIMEOUT:?}"))
        .map_err(|e| format!("{e:#}"))?;
    Ok(Response {
        status: parts.status,
        headers: parts.headers,
        body,
        headers_after,
        elapsed: started.elapsed(),
    })
}

/// What a viewer got.
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// From sending the request to the response head.
    pub headers_after: Duration,
    /// From sending the request to the end of the body.
    pub elapsed: Duration,
}

impl Response {
    /// A header's values joined with ", ", or `None` when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        join_values(&self.headers, name)
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("body is UTF-8")
    }

    pub fn x_cache(&self) -> Option<String> {
        self.header("x-cache")
    }

    /// This node's member of `Cache-Status`; fails the test when there is none.
    pub fn cache_status(&self) -> CacheStatus {
        self.cache_status_of(NODE_ID)
    }

    /// The `Cache-Status` member of the node called `node`.
    pub fn cache_status_of(&self, node: &str) -> CacheStatus {
        let raw = self
            .header("cache-status")
            .unwrap_or_else(|| panic!("no Cache-Status header: {self:?}"));
        CacheStatus::parse(&raw, node)
            .unwrap_or_else(|| panic!("Cache-Status `{raw}` has no member for {node}"))
    }

    pub fn age(&self) -> Option<u64> {
        self.header("age").map(|a| {
            a.trim()
                .parse()
                .unwrap_or_else(|_| panic!("Age `{a}` is not a number"))
        })
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = String::from_utf8_lossy(&self.body);
        let shown: String = body.chars().take(200).collect();
        write!(
            f,
            "{} {:?} body({} bytes)={shown:?} in {:?}",
            self.status,
            self.headers,
            self.body.len(),
            self.elapsed
        )
    }
}

/// One member of an RFC 9211 `Cache-Status` field.
#[derive(Debug, Clone)]
pub struct CacheStatus {
    pub raw: String,
    params: Vec<(String, Option<String>)>,
}

impl CacheStatus {
    /// The last member named `node` (each cache appends its own member).
    pub fn parse(field: &str, node: &str) -> Option<CacheStatus> {
        field.split(',').rev().find_map(|member| {
            let mut parts = member.split(';').map(str::trim);
            let name = parts.next()?.trim_matches('"');
            (name == node).then(|| CacheStatus {
                raw: member.trim().to_string(),
                params: parts
                    .filter(|p| !p.is_empty())
                    .map(|p| match p.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.trim_matches('"').to_string())),
                        None => (p.to_string(), None),
                    })
                    .collect(),
            })
        })
    }

    /// Whether a parameter is present (e.g. `hit`, `stored`, `collapsed`).
    pub fn has(&self, key: &str) -> bool {
        self.params.iter().any(|(k, _)| k == key)
    }

    /// A parameter's value (e.g. `fwd` → `miss`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }

    pub fn ttl(&self) -> Option<i64> {
        self.get("ttl").map(|t| {
            t.parse()
                .unwrap_or_else(|_| panic!("ttl `{t}` is not an integer in {}", self.raw))
        })
    }
}

fn join_values(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or("<non-ascii>"))
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1
// ---------------------------------------------------------------------------------------------

/// A response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Writes bytes on a new connection and reads one HTTP/1.1 response (by Content-Length,
/// chunked framing, or to the end of the connection).
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect to the node");
        // The node may answer and close before it has read everything (e.g. oversized
        // headers); the response is what matters, so a failed write is not an error.
        let _ = stream.write_all(request).await;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(resp) = parse_raw(&buf, false) {
                return resp;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    return parse_raw(&buf, true).unwrap_or_else(|| {
                        panic!(
                            "connection closed before a full response: {:?}",
                            String::from_utf8_lossy(&buf)
                        )
                    })
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .expect("raw response within the timeout")
}

fn parse_raw(buf: &[u8], eof: bool) -> Option<RawResponse> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).expect("response head is UTF-8");
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &buf[end + 4..];
    let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let body = if status == 304 || status == 204 || (100..200).contains(&status) {
        Vec::new()
    } else if let Some(len) = find("content-length") {
        let len: usize = len.parse().ok()?;
        if rest.len() < len {
            return None;
        }
        rest[..len].to_vec()
    } else if find("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        dechunk(rest)?
    } else if eof {
        rest.to_vec()
    } else {
        return None;
    };
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        if rest.len() < size + 2 {
            return None;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

// ---------------------------------------------------------------------------------------------
// Small things
// ---------------------------------------------------------------------------------------------

/// A loopback address with a port that was free a moment ago, for a config that must name
/// its own address before the node starts.
pub fn free_local_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// An HTTP date `secs` seconds from now (negative: in the past).
pub fn http_date(secs: i64) -> String {
    let now = SystemTime::now();
    let t = if secs >= 0 {
        now + Duration::from_secs(secs as u64)
    } else {
        now - Duration::from_secs(secs.unsigned_abs())
    };
    httpdate::fmt_http_date(t)
}

/// Asserts the viewer response carries this node's Via entry.
pub fn assert_via(resp: &Response) {
    let via = resp
        .header("via")
        .unwrap_or_else(|| panic!("no Via header: {resp:?}"));
    assert!(
        via.contains(&format!("1.1 {NODE_ID} (strata)")),
        "Via `{via}` does not name this node: {resp:?}"
    );
}
