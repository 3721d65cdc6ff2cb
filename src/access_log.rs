//! The access log: one line per viewer request, in CloudFront's standard log fields
//! (tab-separated, with `#Version` / `#Fields` headers) or as JSON lines.
//!
//! The request path only fills an [`Entry`] (owned copies of a few header values) and
//! pushes it onto a bounded batch under an uncontended lock — no wake-up, no syscall; a
//! dedicated writer thread takes the whole batch every [`TICK`], formats the lines, writes
//! them through a buffer and flushes. (A channel that woke the writer for every line cost a
//! quarter of the throughput on a 2-core machine.) When the batch is full the entry is
//! dropped and counted (`strata_access_log_dropped_total`) — a slow disk must never slow
//! viewers. Routing the request to its behaviour for the log line also happens on
//! the writer thread. SIGUSR1 ([`AccessLog::reopen`]) makes the writer reopen the file, for
//! rotation by rename.

use crate::config::{AccessLogConfig, AccessLogFormat, Resolved};
use crate::proxy::body::ProxyBody;
use crate::proxy::hop::Outcome;
use crate::proxy::Proxy;
use crate::upstream::BoxError;
use arc_swap::ArcSwapOption;
use http::Response;
use http::{HeaderMap, Method, Version};
use http_body::Body as _;
use parking_lot::{Condvar, Mutex};
use prometheus_client::metrics::counter::Counter;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;
use std::time::Instant;

/// Entries that may wait for the writer; beyond this, entries are dropped.
pub const QUEUE: usize = 64 * 1024;
/// How often the writer takes the batch.
pub const TICK: Duration = Duration::from_millis(20);

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

/// What the request path records about one request.
pub struct Entry {
    /// Unix ms when the request arrived.
    pub start_ms: u64,
    pub client: SocketAddr,
    pub tls: bool,
    pub method: Method,
    pub version: Version,
    /// The text fields (host, path, query, referer, user agent, X-Forwarded-For, content
    /// type) copied into one buffer: one allocation per entry, and no reference kept into
    /// the connection's read buffer (holding one made hyper allocate a new buffer for every
    /// request).
    text: String,
    spans: [(u32, u32); TEXT_FIELDS],
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
    /// The configuration the request ran on (the writer routes the path to name its
    /// behaviour).
    pub config: Arc<Resolved>,
}

impl Entry {
    /// Captures the request's side of an entry.
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        start_ms: u64,
        client: SocketAddr,
        tls: bool,
        method: &Method,
        version: Version,
        uri: &http::Uri,
        headers: &HeaderMap,
        config: Arc<Resolved>,
    ) -> Entry {
        let mut text = String::with_capacity(128);
        let mut spans = [ABSENT; TEXT_FIELDS];
        let host = uri
            .authority()
            .map(|a| a.as_str().as_bytes())
            .or_else(|| headers.get(http::header::HOST).map(|v| v.as_bytes()));
        put_text(&mut text, &mut spans[HOST], host);
        put_text(&mut text, &mut spans[PATH], Some(uri.path().as_bytes()));
        put_text(&mut text, &mut spans[QUERY], uri.query().map(str::as_bytes));
        put_text(
            &mut text,
            &mut spans[REFERER],
            headers.get(http::header::REFERER).map(|v| v.as_bytes()),
        );
        put_text(
            &mut text,
            &mut spans[USER_AGENT],
            headers.get(http::header::USER_AGENT).map(|v| v.as_bytes()),
        );
        put_text(
            &mut text,
            &mut spans[FORWARDED_FOR],
            headers.get("x-forwarded-for").map(|v| v.as_bytes()),
        );
        Entry {
            start_ms,
            client,
            tls,
            method: method.clone(),
            version,
            text,
            spans,
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
            config,
        }
    }

    /// Fills in the response head.
    pub fn response(&mut self, status: u16, headers: &HeaderMap, outcome: Outcome, ttfb: f64) {
        self.status = status;
        self.outcome = outcome;
        self.ttfb = ttfb;
        self.time_taken = ttfb;
        put_text(
            &mut self.text,
            &mut self.spans[CONTENT_TYPE],
            headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
        );
        self.content_length = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
    }
}

impl Entry {
    /// One of the text fields, `None` when the request or response had none.
    fn part(&self, i: usize) -> Option<&str> {
        let (start, len) = self.spans[i];
        (start != u32::MAX).then(|| &self.text[start as usize..(start + len) as usize])
    }

    pub fn path(&self) -> &str {
        self.part(PATH).unwrap_or("/")
    }
}

const TEXT_FIELDS: usize = 7;
const HOST: usize = 0;
const PATH: usize = 1;
const QUERY: usize = 2;
const REFERER: usize = 3;
const USER_AGENT: usize = 4;
const FORWARDED_FOR: usize = 5;
const CONTENT_TYPE: usize = 6;
const ABSENT: (u32, u32) = (u32::MAX, 0);

/// Appends a field's bytes (invalid UTF-8 replaced) and records where it lies.
fn put_text(text: &mut String, span: &mut (u32, u32), value: Option<&[u8]>) {
    let Some(v) = value else {
        *span = ABSENT;
        return;
    };
    let start = text.len();
    text.push_str(&String::from_utf8_lossy(v));
    *span = (start as u32, (text.len() - start) as u32);
}

/// Entries waiting for the writer, and the writer's stop flag.
#[derive(Default)]
struct Queue {
    lines: Mutex<Vec<Entry>>,
    closing: Mutex<bool>,
    wake: Condvar,
}

struct Sink {
    queue: Arc<Queue>,
    path: PathBuf,
    format: AccessLogFormat,
    reopen: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

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
            Some(c) => Some(Arc::new(self.start(c)?)),
            None => None,
        };
        let old = self.sink.swap(next);
        if let Some(old) = old {
            close(&old);
        }
        Ok(())
    }

    fn start(&self, c: &AccessLogConfig) -> anyhow::Result<Sink> {
        let file = open(&c.path)?;
        let queue = Arc::new(Queue::default());
        let rx = queue.clone();
        let reopen = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            out: BufWriter::with_capacity(64 * 1024, file),
            path: c.path.clone(),
            format: c.format,
            reopen: reopen.clone(),
            node_id: self.node_id.clone(),
            seq: AtomicU64::new(0),
            seed: rand::random(),
            buf: String::with_capacity(512),
            day: DayTime {
                secs: 0,
                date: String::new(),
                time: String::new(),
            },
        };
        let thread = std::thread::Builder::new()
            .name("strata-access-log".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| anyhow::anyhow!("cannot start the access log writer: {e}"))?;
        Ok(Sink {
            queue,
            path: c.path.clone(),
            format: c.format,
            reopen,
            thread: Mutex::new(Some(thread)),
        })
    }

    #[inline]
    pub fn enabled(&self) -> bool {
        self.sink.load().is_some()
    }

    /// Queues an entry; drops (and counts) it when the writer is behind.
    pub fn send(&self, entry: Entry) {
        let guard = self.sink.load();
        let Some(sink) = guard.as_ref() else { return };
        let mut lines = sink.queue.lines.lock();
        if lines.len() >= QUEUE {
            drop(lines);
            self.dropped.inc();
        } else {
            lines.push(entry);
        }
    }

    /// Asks the writer to reopen the file (after a rotation renamed it).
    pub fn reopen(&self) {
        if let Some(s) = self.sink.load().as_ref() {
            s.reopen.store(true, Ordering::Release);
        }
    }

    /// Flushes what is queued and stops the writer (shutdown).
    pub fn close(&self) {
        if let Some(s) = self.sink.swap(None) {
            close(&s);
        }
    }
}

fn close(sink: &Sink) {
    *sink.queue.closing.lock() = true;
    sink.queue.wake.notify_all();
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
    out: BufWriter<File>,
    path: PathBuf,
    format: AccessLogFormat,
    reopen: Arc<AtomicBool>,
    node_id: String,
    seq: AtomicU64,
    seed: u64,
    buf: String,
    day: DayTime,
}

impl Writer {
    fn run(mut self, queue: Arc<Queue>) {
        self.header_if_empty();
        let mut batch = Vec::with_capacity(1024);
        loop {
            let closing = {
                let mut c = queue.closing.lock();
                if !*c {
                    queue.wake.wait_for(&mut c, TICK);
                }
                *c
            };
            if self.reopen.swap(false, Ordering::AcqRel) {
                self.reopen_file();
            }
            std::mem::swap(&mut batch, &mut *queue.lines.lock());
            for e in batch.drain(..) {
                self.write(&e);
            }
            self.flush();
            if closing {
                return;
            }
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            tracing::warn!(file = %self.path.display(), error = %e, "access log write failed");
        }
    }

    fn reopen_file(&mut self) {
        self.flush();
        match open(&self.path) {
            Ok(f) => {
                self.out = BufWriter::with_capacity(64 * 1024, f);
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
        let empty = self.out.get_ref().metadata().map(|m| m.len() == 0);
        if empty.unwrap_or(false) {
            let _ = writeln!(self.out, "#Version: 1.0\n#Fields: {}", FIELDS.join(" "));
        }
    }

    fn write(&mut self, e: &Entry) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let request_id = request_id(self.seed, seq);
        let behaviour = e.config.route(e.path()).name();
        self.buf.clear();
        match self.format {
            AccessLogFormat::Cloudfront => {
                let day = self.day.at(e.start_ms / 1000);
                cloudfront_line(&mut self.buf, e, day, &self.node_id, &request_id, behaviour)
            }
            AccessLogFormat::Json => {
                json_line(&mut self.buf, e, &self.node_id, &request_id, behaviour)
            }
        }
        self.buf.push('\n');
        if let Err(err) = self.out.write_all(self.buf.as_bytes()) {
            tracing::warn!(file = %self.path.display(), error = %err, "access log write failed");
        }
    }
}

/// Completes an entry from the response and queues it: at once for a body already in
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
            proxy.access_log.send(entry);
            ProxyBody::Empty
        }
        ProxyBody::Full(b) => {
            entry.body_bytes = b.as_ref().map_or(0, |b| b.len() as u64);
            proxy.access_log.send(entry);
            ProxyBody::Full(b)
        }
        streamed => {
            let exact = streamed.size_hint().exact();
            let counted = Counted {
                inner: streamed,
                entry: Some(Box::new(entry)),
                start,
                proxy: proxy.clone(),
            };
            ProxyBody::Stream(Box::pin(counted), exact)
        }
    };
    Response::from_parts(parts, body)
}

/// A streamed body that counts what it yields and logs its entry when dropped.
struct Counted {
    inner: ProxyBody,
    entry: Option<Box<Entry>>,
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
            self.proxy.access_log.send(*e);
        }
    }
}

/// A request id in CloudFront's shape (56 URL-safe characters are CloudFront's; 32 hex
/// characters are enough to be unique here).
fn request_id(seed: u64, seq: u64) -> String {
    let a = xxhash_rust::xxh3::xxh3_64_with_seed(&seq.to_le_bytes(), seed);
    let b = xxhash_rust::xxh3::xxh3_64_with_seed(&a.to_le_bytes(), seed ^ seq);
    let mut id = String::with_capacity(32);
    for v in [a, b] {
        for shift in (0..16).rev() {
            id.push(char::from(
                b"0123456789abcdef"[((v >> (shift * 4)) & 0xf) as usize],
            ));
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
fn seconds_3(out: &mut String, secs: f64) {
    let ms = (secs.max(0.0) * 1000.0).round() as u64;
    out.push_str(itoa::Buffer::new().format(ms / 1000));
    out.push('.');
    let frac = ms % 1000;
    if frac < 100 {
        out.push('0');
    }
    if frac < 10 {
        out.push('0');
    }
    out.push_str(itoa::Buffer::new().format(frac));
}

/// The date and time columns of the second being written, formatted once per second.
struct DayTime {
    secs: u64,
    date: String,
    time: String,
}

impl DayTime {
    fn at(&mut self, secs: u64) -> &DayTime {
        if secs != self.secs || self.date.is_empty() {
            let (date, time) = utc(secs);
            *self = DayTime { secs, date, time };
        }
        self
    }
}

fn needs_escape(b: u8) -> bool {
    b <= b' ' || b >= 0x7f || b == b'"' || b == b'\\' || b == b'%'
}

/// CloudFront's escaping: spaces, controls, non-ASCII, quotes and backslashes as `%XX`; an
/// empty or absent value as `-`.
fn field(out: &mut String, v: Option<&str>) {
    match v {
        None | Some("") => out.push('-'),
        Some(s) if !s.bytes().any(needs_escape) => out.push_str(s),
        Some(s) => {
            for b in s.bytes() {
                if b <= b' ' || b >= 0x7f || b == b'"' || b == b'\\' || b == b'%' {
                    let _ = write!(out, "%{b:02X}");
                } else {
                    out.push(b as char);
                }
            }
        }
    }
}

fn cloudfront_line(
    out: &mut String,
    e: &Entry,
    day: &DayTime,
    node: &str,
    id: &str,
    behaviour: &str,
) {
    // Written straight into the line buffer: no per-field allocation, no `fmt` machinery
    // for numbers (itoa), the date and time taken from a per-second cache.
    let result = result_type(e);
    let sep = |out: &mut String| out.push('\t');
    let num = |out: &mut String, n: u64| {
        out.push_str(itoa::Buffer::new().format(n));
    };
    out.push_str(&day.date);
    sep(out);
    out.push_str(&day.time);
    sep(out);
    field(out, Some(node));
    sep(out);
    num(out, e.body_bytes);
    sep(out);
    let _ = write!(out, "{}", e.client.ip());
    sep(out);
    out.push_str(e.method.as_str());
    sep(out);
    field(out, e.part(HOST));
    sep(out);
    field(out, Some(e.path()));
    sep(out);
    num(out, e.status as u64);
    sep(out);
    field(out, e.part(REFERER));
    sep(out);
    field(out, e.part(USER_AGENT));
    sep(out);
    field(out, e.part(QUERY));
    sep(out);
    out.push('-'); // cs(Cookie): not logged
    sep(out);
    out.push_str(result);
    sep(out);
    out.push_str(id);
    sep(out);
    field(out, e.part(HOST));
    sep(out);
    out.push_str(if e.tls { "https" } else { "http" });
    sep(out);
    num(out, e.request_bytes);
    sep(out);
    seconds_3(out, e.time_taken);
    sep(out);
    field(out, e.part(FORWARDED_FOR));
    // ssl-protocol, ssl-cipher
    out.push_str("\t-\t-\t");
    out.push_str(result);
    sep(out);
    out.push_str(protocol_version(e.version));
    // fle-status, fle-encrypted-fields
    out.push_str("\t-\t-\t");
    num(out, e.client.port() as u64);
    sep(out);
    seconds_3(out, e.ttfb);
    sep(out);
    out.push_str(detailed_type(e));
    sep(out);
    field(out, e.part(CONTENT_TYPE));
    sep(out);
    match e.content_length {
        Some(n) => num(out, n),
        None => out.push('-'),
    }
    // sc-range-start, sc-range-end
    out.push_str("\t-\t-\t");
    field(out, Some(behaviour));
}

fn json_line(out: &mut String, e: &Entry, node: &str, id: &str, behaviour: &str) {
    let (date, time) = utc(e.start_ms / 1000);
    let v = serde_json::json!({
        "date": date,
        "time": time,
        "x-edge-location": node,
        "sc-bytes": e.body_bytes,
        "c-ip": e.client.ip().to_string(),
        "c-port": e.client.port(),
        "cs-method": e.method.as_str(),
        "cs(Host)": e.part(HOST),
        "cs-uri-stem": e.path(),
        "cs-uri-query": e.part(QUERY),
        "sc-status": e.status,
        "cs(Referer)": e.part(REFERER),
        "cs(User-Agent)": e.part(USER_AGENT),
        "x-edge-result-type": result_type(e),
        "x-edge-detailed-result-type": detailed_type(e),
        "x-edge-request-id": id,
        "cs-protocol": if e.tls { "https" } else { "http" },
        "cs-protocol-version": protocol_version(e.version),
        "cs-bytes": e.request_bytes,
        "time-taken": e.time_taken,
        "time-to-first-byte": e.ttfb,
        "x-forwarded-for": e.part(FORWARDED_FOR),
        "sc-content-type": e.part(CONTENT_TYPE),
        "sc-content-len": e.content_length,
        "x-strata-behavior": behaviour,
    });
    out.push_str(&v.to_string());
}

/// Unix seconds as CloudFront's `date` and `time` fields (UTC).
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
            let mut s = String::new();
            seconds_3(&mut s, secs);
            assert_eq!(s, want, "{secs}");
        }
    }

    #[test]
    fn fields_are_escaped() {
        let mut s = String::new();
        field(&mut s, Some("Mozilla/5.0 (X11)\t\"x\""));
        assert_eq!(s, "Mozilla/5.0%20(X11)%09%22x%22");
        s.clear();
        field(&mut s, None);
        assert_eq!(s, "-");
    }
}
