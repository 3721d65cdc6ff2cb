//! The access log: one line per viewer request, in CloudFront's standard log fields
//! (tab-separated, with `#Version` / `#Fields` headers) or as JSON lines.
//!
//! The request path keeps an [`Entry`] beside the request — its URI and a few header values,
//! shared (reference-counted) with the request, not copied — and when the response ends it
//! formats the line straight into a byte buffer owned by the current worker thread: no heap
//! allocation per request, no lock that another request contends for, no wake-up, no
//! syscall. A dedicated writer thread swaps every thread's buffer for an empty one each
//! [`TICK`] and writes what it took. A thread's buffer holds at most [`BUFFER_CAP`] bytes:
//! beyond that, lines are dropped and counted (`strata_access_log_dropped_total`) — a slow
//! disk must never slow viewers. SIGUSR1 ([`AccessLog::reopen`]) makes the writer reopen
//! the file, for rotation by rename.

use crate::config::{AccessLogConfig, AccessLogFormat};
use crate::proxy::body::ProxyBody;
use crate::proxy::hop::Outcome;
use crate::proxy::Proxy;
use crate::upstream::BoxError;
use arc_swap::ArcSwapOption;
use http::{HeaderMap, HeaderValue, Method, Response, Uri, Version};
use http_body::Body as _;
use parking_lot::{Condvar, Mutex};
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use std::borrow::Cow;
use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The most one thread's buffer holds between two visits of the writer; beyond this, lines
/// are dropped (and counted).
pub const BUFFER_CAP: usize = 4 << 20;
/// How often the writer takes the threads' buffers.
pub const TICK: Duration = Duration::from_millis(50);

/// CloudFront's standard log fields, in order, then strata's own.
pub const FIELDS: &[&str] = &[
    "date",
    "time",
    "x-edge-location",
    "sc-bytes",
    "c-ip",
    "cs-method",
    "cs(Host)",
    "cs-uri-stem",
    "sc-status",
    "cs(Referer)",
    "cs(User-Agent)",
    "cs-uri-query",
    "cs(Cookie)",
    "x-edge-result-type",
    "x-edge-request-id",
    "x-host-header",
    "cs-protocol",
    "cs-bytes",
    "time-taken",
    "x-forwarded-for",
    "ssl-protocol",
    "ssl-cipher",
    "x-edge-response-result-type",
    "cs-protocol-version",
    "fle-status",
    "fle-encrypted-fields",
    "c-port",
    "time-to-first-byte",
    "x-edge-detailed-result-type",
    "sc-content-type",
    "sc-content-len",
    "sc-range-start",
    "sc-range-end",
    "x-strata-behavior",
];

/// What the request path records about one request until its line is written. Every
/// field is either plain data or a reference-counted handle on the request's own bytes
/// (`Uri` and `HeaderValue` share hyper's buffer), so building one allocates nothing.
pub struct Entry {
    /// Unix ms when the request arrived.
    pub start_ms: u64,
    pub client: SocketAddr,
    pub tls: bool,
    pub method: Method,
    pub version: Version,
    uri: Uri,
    host: Option<HeaderValue>,
    referer: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    forwarded_for: Option<HeaderValue>,
    content_type: Option<HeaderValue>,
    pub request_bytes: u64,
    pub status: u16,
    pub outcome: Outcome,
    /// Body bytes sent to the viewer.
    pub body_bytes: u64,
    pub content_length: Option<u64>,
    /// Seconds to the response head.
    pub ttfb: f64,
    /// Seconds to the last byte (or until the viewer went away).
    pub time_taken: f64,
}

impl Entry {
    /// Captures the request's side of an entry.
    pub fn request(
        start_ms: u64,
        client: SocketAddr,
        tls: bool,
        parts: &http::request::Parts,
    ) -> Entry {
        let headers = &parts.headers;
        Entry {
            start_ms,
            client,
            tls,
            method: parts.method.clone(),
            version: parts.version,
            uri: parts.uri.clone(),
            host: match parts.uri.authority() {
                Some(_) => None,
                None => headers.get(http::header::HOST).cloned(),
            },
            referer: headers.get(http::header::REFERER).cloned(),
            user_agent: headers.get(http::header::USER_AGENT).cloned(),
            forwarded_for: headers.get("x-forwarded-for").cloned(),
            content_type: None,
            request_bytes: headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(0),
            status: 0,
            outcome: Outcome::Error,
            body_bytes: 0,
            content_length: None,
            ttfb: 0.0,
            time_taken: 0.0,
        }
    }

    /// Fills in the response head.
    pub fn response(&mut self, status: u16, headers: &HeaderMap, outcome: Outcome, ttfb: f64) {
        self.status = status;
        self.outcome = outcome;
        self.ttfb = ttfb;
        self.time_taken = ttfb;
        self.content_type = headers.get(http::header::CONTENT_TYPE).cloned();
        self.content_length = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
    }

    /// The request's host: the URI's authority (HTTP/2, absolute form) or the Host header.
    fn host(&self) -> Option<&[u8]> {
        match self.uri.authority() {
            Some(a) => Some(a.as_str().as_bytes()),
            None => self.host.as_ref().map(HeaderValue::as_bytes),
        }
    }

    pub fn path(&self) -> &str {
        match self.uri.path() {
            "" => "/",
            p => p,
        }
    }

    fn query(&self) -> Option<&[u8]> {
        self.uri.query().map(str::as_bytes)
    }
}

/// One thread's lines waiting for the writer.
#[derive(Default)]
struct Slot {
    buf: Mutex<Vec<u8>>,
}

/// The writer's side: every thread's slot, and the stop flag.
#[derive(Default)]
struct Shared {
    slots: Mutex<Vec<Arc<Slot>>>,
    closing: Mutex<bool>,
    wake: Condvar,
}

struct Sink {
    /// Tells this sink apart from earlier and later ones (a reload may start a new one).
    id: u64,
    shared: Arc<Shared>,
    path: PathBuf,
    format: AccessLogFormat,
    reopen: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

static SINK_IDS: AtomicU64 = AtomicU64::new(1);

/// What a thread keeps to write lines: its slot in each live sink (almost always one), its
/// request-id sequence and the per-second date cache.
struct Local {
    slots: Vec<(u64, Arc<Slot>)>,
    seed: u64,
    seq: u64,
    day: DayTime,
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local {
        slots: Vec::new(),
        seed: rand::random(),
        seq: 0,
        day: DayTime::default(),
    });
}

/// How many sinks' slots a thread remembers (old sinks of earlier reloads fall off).
const SLOTS_KEPT: usize = 4;

/// The node's access log (possibly off). Cheap to consult on every request.
pub struct AccessLog {
    sink: ArcSwapOption<Sink>,
    dropped: Counter,
    node_id: String,
}

impl AccessLog {
    /// An access log that is off until [`configure`](Self::configure)d.
    pub fn new(node_id: &str, dropped: Counter) -> AccessLog {
        AccessLog {
            sink: ArcSwapOption::empty(),
            dropped,
            node_id: node_id.to_string(),
        }
    }

    /// Turns the log on, off, or to another file or format; a no-op when nothing changed.
    pub fn configure(&self, config: Option<&AccessLogConfig>) -> anyhow::Result<()> {
        let current = self.sink.load_full();
        let same = match (&current, config) {
            (None, None) => true,
            (Some(s), Some(c)) => s.path == c.path && s.format == c.format,
            _ => false,
        };
        if same {
            return Ok(());
        }
        let next = match config {
            Some(c) => Some(Arc::new(start(c)?)),
            None => None,
        };
        let old = self.sink.swap(next);
        if let Some(old) = old {
            close(&old);
        }
        Ok(())
    }

    #[inline]
    pub fn enabled(&self) -> bool {
        self.sink.load().is_some()
    }

    /// Formats the entry's line into this thread's buffer; drops (and counts) it when the
    /// buffer is full because the writer is behind.
    pub fn write(&self, e: &Entry, behaviour: &str) {
        let guard = self.sink.load();
        let Some(sink) = guard.as_ref() else { return };
        let written = LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            let local = &mut *local;
            let i = match local.slots.iter().position(|(id, _)| *id == sink.id) {
                Some(i) => i,
                None => {
                    let s = Arc::new(Slot::default());
                    sink.shared.slots.lock().push(s.clone());
                    if local.slots.len() >= SLOTS_KEPT {
                        local.slots.remove(0);
                    }
                    local.slots.push((sink.id, s));
                    local.slots.len() - 1
                }
            };
            let mut buf = local.slots[i].1.buf.lock();
            if buf.len() >= BUFFER_CAP {
                return false;
            }
            local.seq += 1;
            let id = request_id(local.seed, local.seq);
            let day = local.day.at(e.start_ms / 1000);
            match sink.format {
                AccessLogFormat::Cloudfront => {
                    cloudfront_line(&mut buf, e, day, &self.node_id, &id, behaviour)
                }
                AccessLogFormat::Json => json_line(&mut buf, e, day, &self.node_id, &id, behaviour),
            }
            buf.push(b'\n');
            true
        });
        if !written {
            self.dropped.inc();
        }
    }

    /// Asks the writer to reopen the file (after a rotation renamed it).
    pub fn reopen(&self) {
        if let Some(s) = self.sink.load().as_ref() {
            s.reopen.store(true, Ordering::Release);
        }
    }

    /// Flushes what is buffered and stops the writer (shutdown).
    pub fn close(&self) {
        if let Some(s) = self.sink.swap(None) {
            close(&s);
        }
    }
}

fn start(c: &AccessLogConfig) -> anyhow::Result<Sink> {
    let file = open(&c.path)?;
    let shared = Arc::new(Shared::default());
    let reopen = Arc::new(AtomicBool::new(false));
    let writer = Writer {
        out: file,
        path: c.path.clone(),
        format: c.format,
        reopen: reopen.clone(),
        spare: Vec::with_capacity(64 * 1024),
    };
    let rx = shared.clone();
    let thread = std::thread::Builder::new()
        .name("strata-access-log".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| anyhow::anyhow!("cannot start the access log writer: {e}"))?;
    Ok(Sink {
        id: SINK_IDS.fetch_add(1, Ordering::Relaxed),
        shared,
        path: c.path.clone(),
        format: c.format,
        reopen,
        thread: Mutex::new(Some(thread)),
    })
}

fn close(sink: &Sink) {
    *sink.shared.closing.lock() = true;
    sink.shared.wake.notify_all();
    if let Some(t) = sink.thread.lock().take() {
        let _ = t.join();
    }
}

fn open(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot open the access log {} for appending: {e} (access_log.path)",
                path.display()
            )
        })
}

struct Writer {
    out: File,
    path: PathBuf,
    format: AccessLogFormat,
    reopen: Arc<AtomicBool>,
    /// An empty buffer, swapped for a thread's full one.
    spare: Vec<u8>,
}

impl Writer {
    fn run(mut self, shared: Arc<Shared>) {
        self.header_if_empty();
        loop {
            let closing = {
                let mut c = shared.closing.lock();
                if !*c {
                    shared.wake.wait_for(&mut c, TICK);
                }
                *c
            };
            if self.reopen.swap(false, Ordering::AcqRel) {
                self.reopen_file();
            }
            let slots: Vec<Arc<Slot>> = shared.slots.lock().clone();
            for slot in slots {
                {
                    let mut buf = slot.buf.lock();
                    if buf.is_empty() {
                        continue;
                    }
                    std::mem::swap(&mut *buf, &mut self.spare);
                }
                if let Err(e) = self.out.write_all(&self.spare) {
                    tracing::warn!(file = %self.path.display(), error = %e, "access log write failed");
                }
                self.spare.clear();
                // A burst must not leave a huge buffer behind for good.
                if self.spare.capacity() > BUFFER_CAP {
                    self.spare.shrink_to(64 * 1024);
                }
            }
            if closing {
                return;
            }
        }
    }

    fn reopen_file(&mut self) {
        match open(&self.path) {
            Ok(f) => {
                self.out = f;
                self.header_if_empty();
                tracing::info!(file = %self.path.display(), "access log reopened");
            }
            Err(e) => tracing::error!("{e:#}; still writing to the old file"),
        }
    }

    fn header_if_empty(&mut self) {
        if self.format != AccessLogFormat::Cloudfront {
            return;
        }
        let empty = self.out.metadata().map(|m| m.len() == 0);
        if empty.unwrap_or(false) {
            let header = format!("#Version: 1.0\n#Fields: {}\n", FIELDS.join(" "));
            let _ = self.out.write_all(header.as_bytes());
        }
    }
}

/// Completes an entry from the response and writes its line: at once for a body already in
/// memory, or when a streamed body ends (or the viewer goes away), so that `sc-bytes` and
/// `time-taken` count what was really sent.
pub fn logged(
    proxy: &Arc<Proxy>,
    resp: Response<ProxyBody>,
    mut entry: Entry,
    outcome: Outcome,
    start: Instant,
) -> Response<ProxyBody> {
    entry.response(
        resp.status().as_u16(),
        resp.headers(),
        outcome,
        start.elapsed().as_secs_f64(),
    );
    let (parts, body) = resp.into_parts();
    let body = match body {
        ProxyBody::Empty => {
            write_entry(proxy, &entry);
            ProxyBody::Empty
        }
        ProxyBody::Full(b) => {
            entry.body_bytes = b.as_ref().map_or(0, |b| b.len() as u64);
            write_entry(proxy, &entry);
            ProxyBody::Full(b)
        }
        streamed => {
            let exact = streamed.size_hint().exact();
            let counted = Counted {
                inner: streamed,
                entry: Some(entry),
                start,
                proxy: proxy.clone(),
            };
            ProxyBody::Stream(Box::pin(counted), exact)
        }
    };
    Response::from_parts(parts, body)
}

/// Writes an entry's line, naming the behaviour its path routes to.
fn write_entry(proxy: &Proxy, e: &Entry) {
    proxy.with_config(|c| proxy.access_log.write(e, c.route(e.path()).name()));
}

/// A streamed body that counts what it yields and logs its entry when dropped.
struct Counted {
    inner: ProxyBody,
    entry: Option<Entry>,
    start: Instant,
    proxy: Arc<Proxy>,
}

impl futures_util::Stream for Counted {
    type Item = Result<bytes::Bytes, BoxError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            return match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        if let Some(e) = this.entry.as_mut() {
                            e.body_bytes += data.len() as u64;
                        }
                        Poll::Ready(Some(Ok(data)))
                    }
                    // Trailers are not forwarded on this path.
                    Err(_) => continue,
                },
            };
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(mut e) = self.entry.take() {
            e.time_taken = self.start.elapsed().as_secs_f64();
            write_entry(&self.proxy, &e);
        }
    }
}

/// A request id in CloudFront's shape (56 URL-safe characters are CloudFront's; 32 hex
/// characters are enough to be unique here), on the stack.
fn request_id(seed: u64, seq: u64) -> [u8; 32] {
    let a = xxhash_rust::xxh3::xxh3_64_with_seed(&seq.to_le_bytes(), seed);
    let b = xxhash_rust::xxh3::xxh3_64_with_seed(&a.to_le_bytes(), seed ^ seq);
    let mut id = [0u8; 32];
    for (i, v) in [a, b].into_iter().enumerate() {
        for j in 0..16 {
            id[i * 16 + j] = b"0123456789abcdef"[((v >> ((15 - j) * 4)) & 0xf) as usize];
        }
    }
    id
}

/// CloudFront's result types: Hit, RefreshHit, Miss, Error (and Redirect for a 3xx it made).
fn result_type(e: &Entry) -> &'static str {
    match e.outcome {
        Outcome::Hit | Outcome::Stale => "Hit",
        Outcome::RefreshHit => "RefreshHit",
        Outcome::Miss | Outcome::Pass => "Miss",
        Outcome::Error => "Error",
    }
}

fn detailed_type(e: &Entry) -> &'static str {
    match e.outcome {
        Outcome::Stale => "StaleHit",
        Outcome::Pass => "Pass",
        _ => result_type(e),
    }
}

fn protocol_version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "-",
    }
}

/// Seconds with three decimals (`0.004`), as CloudFront writes time-taken.
fn seconds_3(out: &mut Vec<u8>, secs: f64) {
    let ms = (secs.max(0.0) * 1000.0).round() as u64;
    out.extend_from_slice(itoa::Buffer::new().format(ms / 1000).as_bytes());
    out.push(b'.');
    let frac = ms % 1000;
    if frac < 100 {
        out.push(b'0');
    }
    if frac < 10 {
        out.push(b'0');
    }
    out.extend_from_slice(itoa::Buffer::new().format(frac).as_bytes());
}

/// The date and time columns of the second being written, formatted once per second.
#[derive(Default)]
struct DayTime {
    secs: u64,
    /// `YYYY-MM-DD`
    date: [u8; 10],
    /// `HH:MM:SS`
    time: [u8; 8],
}

impl DayTime {
    fn at(&mut self, secs: u64) -> &DayTime {
        if secs != self.secs || self.date[0] == 0 {
            let (date, time) = utc(secs);
            self.secs = secs;
            self.date.copy_from_slice(&date.as_bytes()[..10]);
            self.time.copy_from_slice(&time.as_bytes()[..8]);
        }
        self
    }

    fn date(&self) -> &str {
        std::str::from_utf8(&self.date).unwrap_or("-")
    }

    fn time(&self) -> &str {
        std::str::from_utf8(&self.time).unwrap_or("-")
    }
}

fn needs_escape(b: u8) -> bool {
    b <= b' ' || b >= 0x7f || b == b'"' || b == b'\\' || b == b'%'
}

/// CloudFront's escaping: spaces, controls, non-ASCII, quotes and backslashes as `%XX`; an
/// empty or absent value as `-`.
fn field(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None | Some(b"") => out.push(b'-'),
        Some(s) if !s.iter().copied().any(needs_escape) => out.extend_from_slice(s),
        Some(s) => {
            for &b in s {
                if needs_escape(b) {
                    out.push(b'%');
                    out.push(b"0123456789ABCDEF"[(b >> 4) as usize]);
                    out.push(b"0123456789ABCDEF"[(b & 0xf) as usize]);
                } else {
                    out.push(b);
                }
            }
        }
    }
}

fn header_bytes(v: &Option<HeaderValue>) -> Option<&[u8]> {
    v.as_ref().map(HeaderValue::as_bytes)
}

fn cloudfront_line(
    out: &mut Vec<u8>,
    e: &Entry,
    day: &DayTime,
    node: &str,
    id: &[u8],
    behaviour: &str,
) {
    // Written straight into the thread's buffer: no per-field allocation, no `fmt`
    // machinery for numbers (itoa), the date and time from a per-second cache.
    let result = result_type(e).as_bytes();
    let num = |out: &mut Vec<u8>, n: u64| {
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    };
    out.extend_from_slice(&day.date);
    out.push(b'\t');
    out.extend_from_slice(&day.time);
    out.push(b'\t');
    field(out, Some(node.as_bytes()));
    out.push(b'\t');
    num(out, e.body_bytes);
    out.push(b'\t');
    let _ = write!(out, "{}", e.client.ip());
    out.push(b'\t');
    out.extend_from_slice(e.method.as_str().as_bytes());
    out.push(b'\t');
    field(out, e.host());
    out.push(b'\t');
    field(out, Some(e.path().as_bytes()));
    out.push(b'\t');
    num(out, u64::from(e.status));
    out.push(b'\t');
    field(out, header_bytes(&e.referer));
    out.push(b'\t');
    field(out, header_bytes(&e.user_agent));
    out.push(b'\t');
    field(out, e.query());
    // cs(Cookie): not logged
    out.extend_from_slice(b"\t-\t");
    out.extend_from_slice(result);
    out.push(b'\t');
    out.extend_from_slice(id);
    out.push(b'\t');
    field(out, e.host());
    out.push(b'\t');
    out.extend_from_slice(if e.tls { b"https" } else { b"http" });
    out.push(b'\t');
    num(out, e.request_bytes);
    out.push(b'\t');
    seconds_3(out, e.time_taken);
    out.push(b'\t');
    field(out, header_bytes(&e.forwarded_for));
    // ssl-protocol, ssl-cipher
    out.extend_from_slice(b"\t-\t-\t");
    out.extend_from_slice(result);
    out.push(b'\t');
    out.extend_from_slice(protocol_version(e.version).as_bytes());
    // fle-status, fle-encrypted-fields
    out.extend_from_slice(b"\t-\t-\t");
    num(out, u64::from(e.client.port()));
    out.push(b'\t');
    seconds_3(out, e.ttfb);
    out.push(b'\t');
    out.extend_from_slice(detailed_type(e).as_bytes());
    out.push(b'\t');
    field(out, header_bytes(&e.content_type));
    out.push(b'\t');
    match e.content_length {
        Some(n) => num(out, n),
        None => out.push(b'-'),
    }
    // sc-range-start, sc-range-end
    out.extend_from_slice(b"\t-\t-\t");
    field(out, Some(behaviour.as_bytes()));
}

/// A JSON line's fields, borrowed from the entry: serialised straight into the buffer.
#[derive(Serialize)]
struct JsonLine<'a> {
    date: &'a str,
    time: &'a str,
    #[serde(rename = "x-edge-location")]
    location: &'a str,
    #[serde(rename = "sc-bytes")]
    sc_bytes: u64,
    #[serde(rename = "c-ip")]
    c_ip: std::net::IpAddr,
    #[serde(rename = "c-port")]
    c_port: u16,
    #[serde(rename = "cs-method")]
    method: &'a str,
    #[serde(rename = "cs(Host)")]
    host: Option<Cow<'a, str>>,
    #[serde(rename = "cs-uri-stem")]
    stem: &'a str,
    #[serde(rename = "cs-uri-query")]
    query: Option<&'a str>,
    #[serde(rename = "sc-status")]
    status: u16,
    #[serde(rename = "cs(Referer)")]
    referer: Option<Cow<'a, str>>,
    #[serde(rename = "cs(User-Agent)")]
    user_agent: Option<Cow<'a, str>>,
    #[serde(rename = "x-edge-result-type")]
    result: &'a str,
    #[serde(rename = "x-edge-detailed-result-type")]
    detailed: &'a str,
    #[serde(rename = "x-edge-request-id")]
    id: &'a str,
    #[serde(rename = "cs-protocol")]
    protocol: &'a str,
    #[serde(rename = "cs-protocol-version")]
    protocol_version: &'a str,
    #[serde(rename = "cs-bytes")]
    cs_bytes: u64,
    #[serde(rename = "time-taken")]
    time_taken: f64,
    #[serde(rename = "time-to-first-byte")]
    ttfb: f64,
    #[serde(rename = "x-forwarded-for")]
    forwarded_for: Option<Cow<'a, str>>,
    #[serde(rename = "sc-content-type")]
    content_type: Option<Cow<'a, str>>,
    #[serde(rename = "sc-content-len")]
    content_len: Option<u64>,
    #[serde(rename = "x-strata-behavior")]
    behaviour: &'a str,
}

fn text(v: Option<&[u8]>) -> Option<Cow<'_, str>> {
    v.map(String::from_utf8_lossy)
}

fn json_line(out: &mut Vec<u8>, e: &Entry, day: &DayTime, node: &str, id: &[u8], behaviour: &str) {
    let line = JsonLine {
        date: day.date(),
        time: day.time(),
        location: node,
        sc_bytes: e.body_bytes,
        c_ip: e.client.ip(),
        c_port: e.client.port(),
        method: e.method.as_str(),
        host: text(e.host()),
        stem: e.path(),
        query: e.uri.query(),
        status: e.status,
        referer: text(header_bytes(&e.referer)),
        user_agent: text(header_bytes(&e.user_agent)),
        result: result_type(e),
        detailed: detailed_type(e),
        id: std::str::from_utf8(id).unwrap_or("-"),
        protocol: if e.tls { "https" } else { "http" },
        protocol_version: protocol_version(e.version),
        cs_bytes: e.request_bytes,
        time_taken: e.time_taken,
        ttfb: e.ttfb,
        forwarded_for: text(header_bytes(&e.forwarded_for)),
        content_type: text(header_bytes(&e.content_type)),
        content_len: e.content_length,
        behaviour,
    };
    let mark = out.len();
    if serde_json::to_writer(&mut *out, &line).is_err() {
        out.truncate(mark);
        out.extend_from_slice(b"{}");
    }
}

fn utc(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), ("1970-01-01".into(), "00:00:00".into()));
        assert_eq!(utc(1_575_493_351), ("2019-12-04".into(), "21:02:31".into()));
        assert_eq!(utc(951_782_400), ("2000-02-29".into(), "00:00:00".into()));
    }

    #[test]
    fn times_have_three_decimals() {
        for (secs, want) in [
            (0.0, "0.000"),
            (0.0004, "0.000"),
            (0.0125, "0.013"),
            (1.5, "1.500"),
            (12.34567, "12.346"),
            (-1.0, "0.000"),
        ] {
            let mut s = Vec::new();
            seconds_3(&mut s, secs);
            assert_eq!(String::from_utf8(s).unwrap(), want, "{secs}");
        }
    }

    #[test]
    fn fields_are_escaped() {
        let mut s = Vec::new();
        field(&mut s, Some("Mozilla/5.0 (X11)\t\"x\" é".as_bytes()));
        assert_eq!(s, b"Mozilla/5.0%20(X11)%09%22x%22%20%C3%A9");
        s.clear();
        field(&mut s, None);
        assert_eq!(s, b"-");
    }

    #[test]
    fn request_ids_are_hex_and_differ() {
        let a = request_id(7, 1);
        let b = request_id(7, 2);
        assert_ne!(a, b);
        assert!(a.iter().all(u8::is_ascii_hexdigit));
    }

    #[test]
    fn the_day_cache_follows_the_second() {
        let mut d = DayTime::default();
        assert_eq!(d.at(1_575_493_351).date(), "2019-12-04");
        assert_eq!(d.at(1_575_493_351).time(), "21:02:31");
        assert_eq!(d.at(1_575_493_352).time(), "21:02:32");
        assert_eq!(d.at(0).date(), "1970-01-01");
    }
}
