//! The access log: one line per viewer request, in CloudFront's standard log fields
//! (tab-separated, with `#Version` / `#Fields` headers) or as JSON lines.
//!
//! The request path keeps an [`Entry`] beside the request — plain data and the few text
//! fields logged, copied — and when the response ends it formats the line into a batch
//! owned by the current worker thread: no lock, no reference count, no atomic operation, no
//! syscall per line (each of those showed in profiles). Lines are formatted into a part of
//! the batch small enough to stay in the processor's cache, and moved on past the cache.
//! The thread hands its batch to the sink's writer under a lock a batch at a time (see
//! [`Batch`]): when the batch is a [`TICK`] old, when the thread goes idle (the runtime
//! runs [`flush_thread`] before a worker parks) and when the thread ends. A dedicated
//! writer thread takes every thread's handed-over lines each [`TICK`] (backing off to
//! [`IDLE_TICK`] while no line comes) and writes them, past the page cache where it can
//! (see [`output`]). A thread's handed-over lines are at most [`BUFFER_CAP`] bytes: beyond
//! that, batches are dropped and their lines counted (`strata_access_log_dropped_total`) —
//! a slow disk must never slow viewers.
//! SIGUSR1 ([`AccessLog::reopen`]) makes the writer reopen the file, for rotation by rename.

use crate::config::{AccessLogConfig, AccessLogFormat};
use crate::proxy::body::ProxyBody;
use crate::proxy::hop::Outcome;
use crate::proxy::Proxy;
use crate::time::now_ms;
use crate::upstream::BoxError;
use arc_swap::ArcSwapOption;
use http::{HeaderMap, HeaderValue, Method, Response, Version};
use http_body::Body as _;
use parking_lot::{Condvar, Mutex};
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod output;
use output::Output;

/// The most a thread's handed-over lines take between two visits of the writer; beyond
/// this, batches are dropped (and their lines counted).
pub const BUFFER_CAP: usize = 4 << 20;
/// How often the writer takes the threads' lines while lines come, and the age at which a
/// thread hands its batch over: often enough that a write stays small (at 115k lines/s of
/// ~230 bytes, about 130 KB; a 1.3 MB write through the page cache every 50 ms more than
/// doubled the p99 of the viewers sharing the writer's core).
pub const TICK: Duration = Duration::from_millis(5);
/// The longest the writer sleeps when no line came (it backs off from [`TICK`] by doubling).
pub const IDLE_TICK: Duration = Duration::from_millis(100);

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

/// What the request path records about one request until its line is written: plain data,
/// and the logged text copied into the entry (see [`Texts`]).
pub struct Entry {
    /// When the request arrived.
    pub start: Instant,
    pub client: SocketAddr,
    pub tls: bool,
    pub method: Method,
    pub version: Version,
    texts: Texts,
    pub request_bytes: u64,
    pub status: u16,
    pub outcome: Outcome,
    /// Body bytes sent to the viewer.
    pub body_bytes: u64,
    pub content_length: Option<u64>,
    /// Microseconds to the response head.
    pub ttfb_us: u64,
    /// Microseconds to the last byte (or until the viewer went away).
    pub time_taken_us: u64,
}

/// The fields of [`Texts`].
const PATH: usize = 0;
const QUERY: usize = 1;
const HOST: usize = 2;
const REFERER: usize = 3;
const USER_AGENT: usize = 4;
const FORWARDED_FOR: usize = 5;
const CONTENT_TYPE: usize = 6;
const BEHAVIOUR: usize = 7;

/// An entry's text fields, copied out of the request and the response into the entry (a
/// browser's usually fit the inline room): copying a few dozen bytes costs less than sharing
/// them with hyper's buffers, whose reference counts take an atomic read-modify-write on
/// clone and again on drop — those showed in profiles. A value that does not fit the room
/// left goes to `spill`.
struct Texts {
    inline: [u8; INLINE],
    /// How many bytes of `inline` are used.
    used: usize,
    spill: Vec<u8>,
    /// Each field's start and end: below [`INLINE`] in `inline`, from it on in `spill`
    /// (offset by [`INLINE`]); [`ABSENT`] when it was not there.
    spans: [(u32, u32); 8],
}

const INLINE: usize = 256;
const ABSENT: (u32, u32) = (u32::MAX, u32::MAX);
/// The most spill a recycled entry keeps for the next request (a long header's worth).
const SPILL_KEPT: usize = 4096;

thread_local! {
    /// The thread's written entry, kept for its next request: taking it back saves an
    /// allocation, its release and zeroing the inline text (together about 110
    /// instructions a request, some 6 % of what the log adds on the worker).
    static SPARE: Cell<Option<Box<Entry>>> = const { Cell::new(None) };
}

/// Gives a written entry back to this thread, for [`Entry::request`] to reuse. A thread
/// already ending (a body dropped as its runtime shuts down) just frees it.
pub fn recycle(e: Box<Entry>) {
    let _ = SPARE.try_with(|spare| spare.set(Some(e)));
}

impl Texts {
    fn new() -> Texts {
        Texts {
            inline: [0; INLINE],
            used: 0,
            spill: Vec::new(),
            spans: [ABSENT; 8],
        }
    }

    /// Forgets every field. The inline bytes are left as they are (they are read only
    /// through `spans`), so a reused entry is not zeroed again; a large spill is let go.
    fn clear(&mut self) {
        self.used = 0;
        self.spans = [ABSENT; 8];
        if self.spill.capacity() > SPILL_KEPT {
            self.spill = Vec::new();
        } else {
            self.spill.clear();
        }
    }

    /// Sets a field that is not set yet (the first value of a repeated header is logged, as
    /// `HeaderMap::get` would give).
    #[inline(always)]
    fn set(&mut self, field: usize, v: &[u8]) {
        if self.spans[field] != ABSENT {
            return;
        }
        let start = if v.len() <= INLINE - self.used {
            let start = self.used;
            self.used += v.len();
            copy_bytes(&mut self.inline[start..self.used], v);
            start
        } else {
            let start = INLINE + self.spill.len();
            self.spill.extend_from_slice(v);
            start
        };
        let (Ok(a), Ok(b)) = (u32::try_from(start), u32::try_from(start + v.len())) else {
            return; // beyond 4 GiB: not a request hyper parses
        };
        self.spans[field] = (a, b);
    }

    fn get(&self, field: usize) -> Option<&[u8]> {
        let (a, b) = self.spans[field];
        if (a, b) == ABSENT {
            return None;
        }
        let (a, b) = (a as usize, b as usize);
        if b <= INLINE {
            self.inline.get(a..b)
        } else {
            self.spill.get(a.checked_sub(INLINE)?..b - INLINE)
        }
    }

    /// A field copied from a `&str`.
    fn str(&self, field: usize) -> Option<&str> {
        self.get(field).and_then(|b| std::str::from_utf8(b).ok())
    }

    /// Every field's bytes together, an upper bound of what one line quotes of them.
    fn len(&self) -> usize {
        self.used + self.spill.len()
    }

    /// Whether no field has a byte to escape: one pass over all of them, where a check per
    /// field cost a call and a tail loop each.
    fn clean(&self) -> bool {
        clean(&self.inline[..self.used]) && (self.spill.is_empty() || clean(&self.spill))
    }
}

impl Entry {
    /// Captures the request's side of an entry: one pass over the header section (a
    /// lookup per header would hash each name), copying only the values logged. The entry
    /// is the thread's last one, written and given back by [`recycle`] (see there), or a new
    /// allocation; boxed so that the request's future holds a pointer rather than the entry.
    pub fn request(
        start: Instant,
        client: SocketAddr,
        tls: bool,
        parts: &http::request::Parts,
    ) -> Box<Entry> {
        let mut e = SPARE
            .try_with(Cell::take)
            .ok()
            .flatten()
            .unwrap_or_else(Entry::blank);
        // Every field named, so that a field added later cannot keep the last request's
        // value by being forgotten here.
        let Entry {
            start: e_start,
            client: e_client,
            tls: e_tls,
            method,
            version,
            texts,
            request_bytes,
            status,
            outcome,
            body_bytes,
            content_length,
            ttfb_us,
            time_taken_us,
        } = &mut *e;
        *e_start = start;
        *e_client = client;
        *e_tls = tls;
        *method = parts.method.clone();
        *version = parts.version;
        texts.clear();
        *request_bytes = 0;
        *status = 0;
        *outcome = Outcome::Error;
        *body_bytes = 0;
        *content_length = None;
        *ttfb_us = 0;
        *time_taken_us = 0;
        let t = &mut e.texts;
        t.set(PATH, parts.uri.path().as_bytes());
        if let Some(q) = parts.uri.query() {
            t.set(QUERY, q.as_bytes());
        }
        // The request's host: the URI's authority (HTTP/2, absolute form), set first so that
        // it wins, or the Host header.
        if let Some(a) = parts.uri.authority() {
            t.set(HOST, a.as_str().as_bytes());
        }
        for (name, value) in &parts.headers {
            let field = if name == http::header::HOST {
                HOST
            } else if name == http::header::REFERER {
                REFERER
            } else if name == http::header::USER_AGENT {
                USER_AGENT
            } else if name == X_FORWARDED_FOR {
                FORWARDED_FOR
            } else {
                if name == http::header::CONTENT_LENGTH && e.request_bytes == 0 {
                    e.request_bytes = decimal(value).unwrap_or(0);
                }
                continue;
            };
            t.set(field, value.as_bytes());
        }
        e
    }

    /// A new entry for [`request`](Self::request) to fill in. Allocated first and then
    /// written: `Box::new` builds the entry on the stack and copies it over (a few hundred
    /// bytes), as its value is made before the allocation.
    #[cold]
    fn blank() -> Box<Entry> {
        Box::write(
            Box::new_uninit(),
            Entry {
                start: Instant::now(),
                client: SocketAddr::from(([0, 0, 0, 0], 0)),
                tls: false,
                method: Method::GET,
                version: Version::HTTP_11,
                texts: Texts::new(),
                request_bytes: 0,
                status: 0,
                outcome: Outcome::Error,
                body_bytes: 0,
                content_length: None,
                ttfb_us: 0,
                time_taken_us: 0,
            },
        )
    }

    /// Fills in the response head. `length` is the body's length when it is in memory (it
    /// is what Content-Length says), saving a header lookup.
    pub fn response(
        &mut self,
        status: u16,
        headers: &HeaderMap,
        outcome: Outcome,
        ttfb: Duration,
        length: Option<u64>,
    ) {
        self.status = status;
        self.outcome = outcome;
        self.ttfb_us = micros(ttfb);
        self.time_taken_us = self.ttfb_us;
        // A pass comparing names (a standard one compares as a number), where a lookup
        // hashes the name.
        if let Some((_, ct)) = headers
            .iter()
            .find(|(name, _)| *name == http::header::CONTENT_TYPE)
        {
            self.texts.set(CONTENT_TYPE, ct.as_bytes());
        }
        self.content_length =
            length.or_else(|| headers.get(http::header::CONTENT_LENGTH).and_then(decimal));
    }

    /// Names the behaviour the request was routed to (the request path knows it; without
    /// it, the line names the behaviour the path routes to now).
    pub fn set_behaviour(&mut self, name: &str) {
        self.texts.set(BEHAVIOUR, name.as_bytes());
    }

    fn behaviour(&self) -> Option<&[u8]> {
        self.texts.get(BEHAVIOUR)
    }

    fn host(&self) -> Option<&[u8]> {
        self.texts.get(HOST)
    }

    pub fn path(&self) -> &str {
        std::str::from_utf8(self.path_bytes()).unwrap_or("/")
    }

    /// The path, as bytes (the copy of a `&str`, so UTF-8).
    fn path_bytes(&self) -> &[u8] {
        match self.texts.get(PATH) {
            None | Some(b"") => b"/",
            Some(p) => p,
        }
    }

    fn query(&self) -> Option<&[u8]> {
        self.texts.get(QUERY)
    }

    fn header(&self, field: usize) -> Option<&[u8]> {
        self.texts.get(field)
    }
}

/// Unix milliseconds at an instant, without reading the wall clock on the request path (a
/// clock read showed in profiles): from an anchor, an instant and the wall-clock time at it,
/// that the writer thread refreshes every tick, so a step of the wall clock shows within a
/// tick (within the second for [`DayTime::of`]).
fn unix_ms(at: Instant) -> u64 {
    let (base, wall_ms) = &*ANCHOR;
    let since = at.saturating_duration_since(*base).as_millis() as u64;
    wall_ms.load(Ordering::Relaxed) + since
}

/// Re-reads the wall clock against the anchor's instant.
fn reanchor() {
    let (base, wall_ms) = &*ANCHOR;
    let since = base.elapsed().as_millis() as u64;
    wall_ms.store(now_ms().saturating_sub(since), Ordering::Relaxed);
}

/// An instant, and the Unix ms at it.
static ANCHOR: LazyLock<(Instant, AtomicU64)> =
    LazyLock::new(|| (Instant::now(), AtomicU64::new(now_ms())));

static X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// A header value that is a plain decimal number (Content-Length).
fn decimal(v: &HeaderValue) -> Option<u64> {
    let b = v.as_bytes();
    if b.is_empty() {
        return None;
    }
    b.iter().try_fold(0u64, |n, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// One thread's lines handed to the writer, waiting for its next visit.
#[derive(Default)]
struct Slot {
    buf: Mutex<Vec<u8>>,
}

/// The writer's side: every thread's slot, how many threads hold lines not yet handed
/// over, and the stop flag.
#[derive(Default)]
struct Shared {
    slots: Mutex<Vec<Arc<Slot>>>,
    pending: AtomicUsize,
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

/// A thread's lines for one sink, formatted without any atomic operation and handed to the
/// sink's writer — under the slot's lock — a batch at a time: when its first line is a
/// [`TICK`] old, when the batch reaches [`BATCH`] bytes, when the thread goes idle
/// ([`flush_thread`], run by the runtime before a worker parks) and when the thread ends.
/// The writer visits every [`TICK`] too, so the slot is usually empty by then and the batch
/// changes hands by a swap of buffers, not a copy.
///
/// Lines are formatted into `hot`, which stays in the processor's cache, and moved into
/// `buf` whenever [`HOT`] bytes have gathered, by stores that bypass the cache
/// ([`output::extend_streaming`]): `buf` grows to a tick's worth of lines (some 175 KB at
/// 100k req/s) that the writer reads once, and formatting straight into it made every line
/// fetch cache lines and push out the request path's data (measured in
/// docs/operations.md, Tuning).
struct Batch {
    sink: u64,
    format: AccessLogFormat,
    slot: Arc<Slot>,
    shared: Arc<Shared>,
    dropped: Counter,
    /// Lines formatted and not yet moved to `buf`.
    hot: Vec<u8>,
    buf: Vec<u8>,
    lines: u64,
    /// A [`TICK`] after the request of the batch's first line arrived: when the batch is
    /// handed over (an instant, so that each line compares instead of subtracting).
    due: Option<Instant>,
}

/// How many bytes of lines gather in [`Batch::hot`] before they move to its `buf`: small
/// enough to stay in the cache between moves.
const HOT: usize = 16 << 10;

/// A batch's size that makes the thread hand it over before it is a [`TICK`] old.
const BATCH: usize = 1 << 20;

impl Batch {
    /// Counts a line just written into `hot`, and hands the batch over when it is big or old
    /// enough.
    fn wrote(&mut self, start: Instant) {
        self.lines += 1;
        if self.hot.len() >= HOT {
            self.cool();
        }
        let due = match self.due {
            Some(d) => d,
            None => {
                self.shared.pending.fetch_add(1, Ordering::AcqRel);
                *self.due.insert(start + TICK)
            }
        };
        if self.buf.len() >= BATCH || start >= due {
            self.hand_over();
        }
    }

    /// Gives the batch's lines to the writer, or drops (and counts) them when the writer is
    /// [`BUFFER_CAP`] behind.
    fn hand_over(&mut self) {
        if self.due.is_none() {
            return;
        }
        self.cool();
        {
            let mut out = self.slot.buf.lock();
            if out.is_empty() {
                std::mem::swap(&mut *out, &mut self.buf);
            } else if out.len() + self.buf.len() > BUFFER_CAP {
                self.dropped.inc_by(self.lines);
            } else {
                // The writer has not taken the last batch yet: appended, past the cache
                // like every other copy of the lines on their way out.
                output::extend_streaming(&mut out, &self.buf);
            }
        }
        self.buf.clear();
        self.lines = 0;
        self.due = None;
        self.shared.pending.fetch_sub(1, Ordering::AcqRel);
    }

    /// Moves the formatted lines from `hot` to `buf`, past the cache.
    fn cool(&mut self) {
        output::extend_streaming(&mut self.buf, &self.hot);
        self.hot.clear();
    }
}

/// What a thread keeps to write lines: its batch for each live sink (almost always one),
/// its request ids, the per-second date cache and the last client address as text.
struct Local {
    batches: Vec<Batch>,
    ids: RequestIds,
    day: DayTime,
    ip: IpText,
}

impl Drop for Local {
    fn drop(&mut self) {
        for b in &mut self.batches {
            b.hand_over();
        }
    }
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local {
        batches: Vec::new(),
        ids: RequestIds::new(rand::random()),
        day: DayTime::default(),
        ip: IpText::default(),
    });
}

/// How many sinks' batches a thread keeps (old sinks of earlier reloads fall off).
const BATCHES_KEPT: usize = 4;

/// Hands this thread's lines to the writers. The runtime runs it before a worker parks
/// (`on_thread_park`), so an idle thread holds no lines back.
pub fn flush_thread() {
    let _ = LOCAL.try_with(|local| {
        if let Ok(mut local) = local.try_borrow_mut() {
            for b in &mut local.batches {
                b.hand_over();
            }
        }
    });
}

/// The node's access log (possibly off). Cheap to consult on every request.
pub struct AccessLog {
    sink: ArcSwapOption<Sink>,
    /// The live sink's id, 0 when the log is off: what the request path reads (a plain
    /// load, where loading `sink` takes two atomic read-modify-writes).
    current: AtomicU64,
    dropped: Counter,
    /// The node id as the x-edge-location field (escaped once, here).
    location: Vec<u8>,
    node_id: String,
}

impl AccessLog {
    /// An access log that is off until [`configure`](Self::configure)d.
    pub fn new(node_id: &str, dropped: Counter) -> AccessLog {
        AccessLog {
            sink: ArcSwapOption::empty(),
            current: AtomicU64::new(0),
            dropped,
            location: {
                let mut f = Vec::new();
                field(&mut f, Some(node_id.as_bytes()));
                f
            },
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
        let id = next.as_ref().map_or(0, |s| s.id);
        let old = self.sink.swap(next);
        self.current.store(id, Ordering::Release);
        if let Some(old) = old {
            close(&old);
        }
        Ok(())
    }

    #[inline]
    pub fn enabled(&self) -> bool {
        self.current.load(Ordering::Relaxed) != 0
    }

    /// Formats the entry's line into this thread's batch (see [`Batch`] for when the batch
    /// goes to the writer). The entry names its behaviour ([`Entry::set_behaviour`]).
    pub fn write(&self, e: &Entry) {
        let id = self.current.load(Ordering::Relaxed);
        if id == 0 {
            return;
        }
        LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            let local = &mut *local;
            let i = match local.batches.iter().position(|b| b.sink == id) {
                Some(i) => i,
                None => match self.attach(&mut local.batches) {
                    Some(i) => i,
                    None => return,
                },
            };
            let id = local.ids.next();
            let day = local.day.of(e.start);
            let b = &mut local.batches[i];
            let fitted = match b.format {
                AccessLogFormat::Cloudfront => {
                    let ip = local.ip.of(e.client.ip());
                    let line = Line {
                        day,
                        location: &self.location,
                        id: &id,
                        ip,
                    };
                    cloudfront_line(&mut b.hot, e, &line)
                }
                AccessLogFormat::Json => {
                    json_line(&mut b.hot, e, day, &self.node_id, &id);
                    b.hot.push(b'\n');
                    true
                }
            };
            if fitted {
                b.wrote(e.start);
            } else {
                self.dropped.inc();
            }
        });
    }

    /// A thread's first line for the live sink: registers a slot with its writer. The
    /// thread's batches for earlier sinks (a reload replaced them) go to their writers now.
    fn attach(&self, batches: &mut Vec<Batch>) -> Option<usize> {
        let guard = self.sink.load();
        let sink = guard.as_ref()?;
        for b in batches.iter_mut() {
            b.hand_over();
        }
        if let Some(i) = batches.iter().position(|b| b.sink == sink.id) {
            return Some(i);
        }
        if batches.len() >= BATCHES_KEPT {
            batches.remove(0);
        }
        let slot = Arc::new(Slot::default());
        sink.shared.slots.lock().push(slot.clone());
        batches.push(Batch {
            sink: sink.id,
            format: sink.format,
            slot,
            shared: sink.shared.clone(),
            dropped: self.dropped.clone(),
            hot: Vec::new(),
            buf: Vec::new(),
            lines: 0,
            due: None,
        });
        Some(batches.len() - 1)
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
        out: Output::new(file),
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

/// How long closing a sink waits for threads to hand over the lines they hold.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

fn close(sink: &Sink) {
    // Idle workers handed theirs over when they parked; busy ones do at their next line
    // (which goes to the next sink, if any) or when they go idle.
    flush_thread();
    let deadline = Instant::now() + CLOSE_WAIT;
    while sink.shared.pending.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
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
    out: Output,
    path: PathBuf,
    format: AccessLogFormat,
    reopen: Arc<AtomicBool>,
    /// An empty buffer, swapped for a thread's full one.
    spare: Vec<u8>,
}

impl Writer {
    fn run(mut self, shared: Arc<Shared>) {
        let direct_io = self.out.direct();
        tracing::info!(file = %self.path.display(), direct_io, "access log opened");
        self.header_if_empty();
        let mut wait = TICK;
        loop {
            let closing = {
                let mut c = shared.closing.lock();
                if !*c {
                    shared.wake.wait_for(&mut c, wait);
                }
                *c
            };
            // Back off while idle; come back to the short tick as soon as lines come.
            wait = (wait * 2).min(IDLE_TICK);
            reanchor();
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
                wait = TICK;
                let written = self.out.write(&self.spare);
                self.report(written);
                self.spare.clear();
                // A burst must not leave a huge buffer behind for good.
                if self.spare.capacity() > BUFFER_CAP {
                    self.spare.shrink_to(64 * 1024);
                }
            }
            let ticked = self.out.tick(Instant::now());
            self.report(ticked);
            if closing {
                let flushed = self.out.flush();
                self.report(flushed);
                return;
            }
        }
    }

    fn report(&self, result: std::io::Result<()>) {
        if let Err(e) = result {
            tracing::warn!(file = %self.path.display(), error = %e, "access log write failed");
        }
    }

    fn reopen_file(&mut self) {
        match open(&self.path) {
            Ok(f) => {
                let flushed = self.out.flush();
                self.report(flushed);
                self.out = Output::new(f);
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
        if self.out.written() == 0 {
            let header = format!("#Version: 1.0\n#Fields: {}\n", FIELDS.join(" "));
            let _ = self.out.write(header.as_bytes());
        }
    }
}

/// Completes an entry from the response and writes its line: at once for a body already in
/// memory, or when a streamed body ends (or the viewer goes away), so that `sc-bytes` and
/// `time-taken` count what was really sent.
pub fn logged(
    proxy: &Arc<Proxy>,
    resp: &mut Response<ProxyBody>,
    entry: &mut Option<Box<Entry>>,
    outcome: Outcome,
    elapsed: Duration,
) {
    // By reference: moving the response and the entry in and out showed as copies.
    let Some(e) = entry.as_mut() else { return };
    // A body in memory: its length is what Content-Length says and what is sent.
    let in_memory = match resp.body() {
        ProxyBody::Empty => Some(None),
        ProxyBody::Full(b) => Some(Some(b.as_ref().map_or(0, |b| b.len() as u64))),
        _ => None,
    };
    let length = in_memory.flatten();
    e.response(
        resp.status().as_u16(),
        resp.headers(),
        outcome,
        elapsed,
        length,
    );
    if in_memory.is_some() {
        e.body_bytes = length.unwrap_or(0);
        if let Some(e) = entry.take() {
            write_entry(proxy, e);
        }
        return;
    }
    let streamed = std::mem::replace(resp.body_mut(), ProxyBody::Empty);
    let exact = streamed.size_hint().exact();
    let counted = Counted {
        inner: streamed,
        entry: entry.take(),
        proxy: proxy.clone(),
    };
    *resp.body_mut() = ProxyBody::Stream(Box::pin(counted), exact);
}

/// Writes an entry's line and gives the entry back to the thread ([`recycle`]). A request
/// refused before routing names the behaviour its path routes to.
fn write_entry(proxy: &Proxy, mut e: Box<Entry>) {
    if e.behaviour().is_none() {
        proxy.with_config(|c| e.set_behaviour(c.route(e.path()).name()));
    }
    proxy.access_log.write(&e);
    recycle(e);
}

/// A streamed body that counts what it yields and logs its entry when dropped.
struct Counted {
    inner: ProxyBody,
    entry: Option<Box<Entry>>,
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
            e.time_taken_us = micros(e.start.elapsed());
            write_entry(&self.proxy, e);
        }
    }
}

/// Request ids in CloudFront's shape (56 URL-safe characters are CloudFront's; 32 hex
/// characters are enough to be unique here): a random per-thread prefix, formatted once,
/// then the thread's sequence number in hex, counted up in place.
struct RequestIds {
    id: [u8; 32],
}

impl RequestIds {
    fn new(seed: u64) -> RequestIds {
        let mut id = [b'0'; 32];
        hex16(&mut id[..16], seed);
        RequestIds { id }
    }

    fn next(&mut self) -> [u8; 32] {
        // Add one to the hex counter, carrying from the last digit.
        for d in self.id[16..].iter_mut().rev() {
            match *d {
                b'f' => *d = b'0',
                b'9' => {
                    *d = b'a';
                    break;
                }
                _ => {
                    *d += 1;
                    break;
                }
            }
        }
        self.id
    }
}

/// A u64 as 16 lower-case hex digits.
fn hex16(out: &mut [u8], v: u64) {
    for (j, d) in out.iter_mut().enumerate() {
        *d = b"0123456789abcdef"[((v >> ((15 - j) * 4)) & 0xf) as usize];
    }
}

/// The last client address seen by a thread, as text: a keep-alive connection sends many
/// requests, so most lines reuse it.
#[derive(Default)]
struct IpText {
    ip: Option<std::net::IpAddr>,
    text: Vec<u8>,
}

impl IpText {
    fn of(&mut self, addr: std::net::IpAddr) -> &[u8] {
        if self.ip != Some(addr) {
            self.text.clear();
            ip(&mut self.text, addr);
            self.ip = Some(addr);
        }
        &self.text
    }
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

/// The date and time columns of the second being written, formatted once per second
/// ([`of`](Self::of)).
#[derive(Default)]
struct DayTime {
    /// `YYYY-MM-DD\tHH:MM:SS\t`: a CloudFront line's start.
    prefix: [u8; 20],
    /// The instants the second of `prefix` spans, as [`of`](Self::of) found them.
    span: Option<(Instant, Instant)>,
}

impl DayTime {
    /// The second an instant falls in: two comparisons while it is the second of the last
    /// line (where working out the second subtracts instants and divides).
    fn of(&mut self, at: Instant) -> &DayTime {
        if let Some((from, until)) = self.span {
            if from <= at && at < until {
                return self;
            }
        }
        let ms = unix_ms(at);
        let from = at
            .checked_sub(Duration::from_millis(ms % 1000))
            .unwrap_or(at);
        self.span = Some((from, from + Duration::from_secs(1)));
        self.at(ms / 1000)
    }

    /// Formats a Unix second.
    fn at(&mut self, secs: u64) -> &DayTime {
        let (date, time) = utc(secs);
        self.prefix[..10].copy_from_slice(&date.as_bytes()[..10]);
        self.prefix[10] = b'\t';
        self.prefix[11..19].copy_from_slice(&time.as_bytes()[..8]);
        self.prefix[19] = b'\t';
        self
    }

    /// `YYYY-MM-DD`
    fn date(&self) -> &str {
        std::str::from_utf8(&self.prefix[..10]).unwrap_or("-")
    }

    /// `HH:MM:SS`
    fn time(&self) -> &str {
        std::str::from_utf8(&self.prefix[11..19]).unwrap_or("-")
    }
}

/// Which bytes CloudFront's escaping turns into `%XX`: one table lookup per byte.
const ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = b <= b' ' as usize
            || b >= 0x7f
            || b == b'"' as usize
            || b == b'\\' as usize
            || b == b'%' as usize;
        b += 1;
    }
    t
};

fn needs_escape(b: u8) -> bool {
    ESCAPE[b as usize]
}

/// Whether no byte of `s` needs escaping: sixteen bytes at a time with SSE2 (part of every
/// x86-64 processor), elsewhere eight at a time ([`clean_words`]).
#[inline]
fn clean(s: &[u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    return clean_sse2(s);
    #[cfg(not(target_arch = "x86_64"))]
    return clean_words(s);
}

/// [`clean`] by SSE2 compares, without a branch per block; the tail is padded to a block
/// with a byte that needs none.
#[cfg(target_arch = "x86_64")]
fn clean_sse2(s: &[u8]) -> bool {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8, _mm_setzero_si128,
    };
    // SAFETY: SSE2 is part of every x86-64 processor (the target enables it), which is all
    // these intrinsics need; `_mm_loadu_si128` reads 16 bytes from any address (no alignment
    // needed), and each block it is given is 16 readable bytes.
    unsafe {
        let marks = |v: __m128i| {
            let is = |b: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8));
            // A signed compare: bytes from 0x80 up are negative, so "below 0x21" takes them
            // with the controls and the space.
            let low = _mm_cmplt_epi8(v, _mm_set1_epi8(0x21));
            _mm_or_si128(
                _mm_or_si128(low, is(0x7f)),
                _mm_or_si128(is(b'"'), _mm_or_si128(is(b'\\'), is(b'%'))),
            )
        };
        let load = |b: &[u8; 16]| _mm_loadu_si128(b.as_ptr().cast());
        let (blocks, tail) = s.as_chunks::<16>();
        let mut found = _mm_setzero_si128();
        for b in blocks {
            found = _mm_or_si128(found, marks(load(b)));
        }
        let mut last = [b'a'; 16];
        copy_bytes(&mut last[..tail.len()], tail);
        found = _mm_or_si128(found, marks(load(&last)));
        _mm_movemask_epi8(found) == 0
    }
}

/// [`clean`] eight bytes at a time with the bit tricks of "Bit Twiddling Hacks", without a
/// branch per word; the tail is padded to a word with a byte that needs none.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn clean_words(s: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // The high bit of a byte that is zero (a borrow only comes from a zero byte, which is
    // itself marked, so the word's answer is exact).
    let zero = |x: u64| x.wrapping_sub(ONES) & !x;
    let marks = |w: u64| {
        // Below 0x21 or from 0x80 up: `b - 0x21` wraps, or `b` has its high bit.
        (w.wrapping_sub(ONES * 0x21) | w)
            | zero(w ^ (ONES * 0x7f))
            | zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')))
            | zero(w ^ (ONES * u64::from(b'%')))
    };
    let (words, tail) = s.as_chunks::<8>();
    let mut found = 0;
    for w in words {
        found |= marks(u64::from_ne_bytes(*w));
    }
    let mut last = [b'a'; 8];
    copy_bytes(&mut last[..tail.len()], tail);
    found |= marks(u64::from_ne_bytes(last));
    found & HIGH == 0
}

/// [`Cursor::field`] into a Vec (the node id, escaped once).
fn field(out: &mut Vec<u8>, v: Option<&[u8]>) {
    // A value escaped takes at most three bytes a byte, an absent one the `-`.
    let fitted = Cursor::write(out, 1 + 3 * v.map_or(0, <[u8]>::len), |c| c.field(v, false));
    debug_assert!(fitted);
}

/// An address as text: IPv4 by hand (the `fmt` machinery showed in profiles), IPv6 by
/// `Display`.
fn ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(itoa::Buffer::new().format(o).as_bytes());
            }
        }
        v6 => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// What a CloudFront line takes besides the entry, prepared by the caller.
struct Line<'a> {
    day: &'a DayTime,
    /// x-edge-location, already escaped.
    location: &'a [u8],
    id: &'a [u8],
    /// c-ip as text.
    ip: &'a [u8],
}

/// Room for a line's fixed part: dates, numbers (at most 20 digits each), the id, the
/// address, result types, protocol names, the empty fields and the tabs, with slack.
const LINE_FIXED: usize = 512;

/// Writes the entry's line into `out`; false (and nothing written) if it did not fit the room
/// worked out for it, which would be a bug here.
fn cloudfront_line(out: &mut Vec<u8>, e: &Entry, l: &Line) -> bool {
    let host = e.host();
    // An escaped byte takes three; the host is written twice.
    let room = LINE_FIXED
        + l.location.len()
        + e.method.as_str().len()
        + 3 * (e.texts.len() + host.map_or(0, <[u8]>::len));
    let clean = e.texts.clean();
    Cursor::write(out, room, |c| cloudfront_fields(c, e, l, host, clean))
}

/// The fields, each text escaped unless `clean` says no text needs it.
fn cloudfront_fields(c: &mut Cursor, e: &Entry, l: &Line, host: Option<&[u8]>, clean: bool) {
    let result = result_type(e).as_bytes();
    c.put(&l.day.prefix);
    c.put(l.location);
    c.byte(b'\t');
    c.num(e.body_bytes);
    c.byte(b'\t');
    c.put(l.ip);
    c.byte(b'\t');
    c.put(e.method.as_str().as_bytes());
    c.byte(b'\t');
    // cs(Host), and x-host-header below: the same value.
    c.field(host, clean);
    c.byte(b'\t');
    c.field(Some(e.path_bytes()), clean);
    c.byte(b'\t');
    c.status(e.status);
    c.byte(b'\t');
    c.field(e.header(REFERER), clean);
    c.byte(b'\t');
    c.field(e.header(USER_AGENT), clean);
    c.byte(b'\t');
    c.field(e.query(), clean);
    // cs(Cookie): not logged
    c.put(b"\t-\t");
    c.put(result);
    c.byte(b'\t');
    c.put(l.id);
    c.byte(b'\t');
    c.field(host, clean);
    c.put(if e.tls { b"\thttps\t" } else { b"\thttp\t" });
    c.num(e.request_bytes);
    c.byte(b'\t');
    c.seconds_3(e.time_taken_us);
    c.byte(b'\t');
    c.field(e.header(FORWARDED_FOR), clean);
    // ssl-protocol, ssl-cipher
    c.put(b"\t-\t-\t");
    c.put(result);
    c.byte(b'\t');
    c.put(protocol_version(e.version).as_bytes());
    // fle-status, fle-encrypted-fields
    c.put(b"\t-\t-\t");
    c.num(u64::from(e.client.port()));
    c.byte(b'\t');
    c.seconds_3(e.ttfb_us);
    c.byte(b'\t');
    c.put(detailed_type(e).as_bytes());
    c.byte(b'\t');
    c.field(e.header(CONTENT_TYPE), clean);
    c.byte(b'\t');
    match e.content_length {
        Some(n) => c.num(n),
        None => c.byte(b'-'),
    }
    // sc-range-start, sc-range-end
    c.put(b"\t-\t-\t");
    c.field(e.behaviour(), clean);
    c.byte(b'\n');
}

/// Copies `s` into `to`, of its length. A short one (most fields) by two overlapping
/// fixed-size copies, which compile to a few moves where a copy of unknown length calls
/// `memcpy` (those calls showed as a fifth of a line's instructions). `copy` copies a slice
/// and `set` a byte into `to`'s element type (a byte, or one of spare capacity).
#[inline(always)]
fn copy_short<T>(to: &mut [T], s: &[u8], copy: impl Fn(&mut [T], &[u8]), set: impl Fn(&mut T, u8)) {
    let n = s.len();
    match n {
        0 => {}
        // First, middle and last byte (some the same).
        1..=3 => {
            set(&mut to[0], s[0]);
            set(&mut to[n / 2], s[n / 2]);
            set(&mut to[n - 1], s[n - 1]);
        }
        4..=7 => {
            copy(&mut to[..4], &s[..4]);
            copy(&mut to[n - 4..], &s[n - 4..]);
        }
        8..=16 => {
            copy(&mut to[..8], &s[..8]);
            copy(&mut to[n - 8..], &s[n - 8..]);
        }
        17..=32 => {
            copy(&mut to[..16], &s[..16]);
            copy(&mut to[n - 16..], &s[n - 16..]);
        }
        _ => copy(to, s),
    }
}

/// The last three decimal digits of `n`, with leading zeros.
fn three_digits(n: u64) -> [u8; 3] {
    let digit = |d: u64| b'0' + (d % 10) as u8;
    [digit(n / 100), digit(n / 10), digit(n)]
}

/// [`copy_short`] between byte slices.
#[inline(always)]
fn copy_bytes(to: &mut [u8], s: &[u8]) {
    copy_short(to, s, <[u8]>::copy_from_slice, |to, b| *to = b);
}

/// Writes into a Vec's spare capacity, reserved up front for the longest line the entry can
/// make: each write is a bounds-checked store rather than a push that checks for growth
/// (those checks showed in profiles). A write that would run past the room writes nothing
/// and marks the cursor `short`, and [`write`](Self::write) then keeps none of the line: the
/// room is an upper bound, so that is a bug, but one that loses a line rather than failing
/// the request.
struct Cursor<'a> {
    /// The room not written yet: a write splits its bytes off the front, one length check
    /// (where a position into the whole room took two, and its arithmetic).
    rest: &'a mut [MaybeUninit<u8>],
    short: bool,
}

impl<'a> Cursor<'a> {
    /// Runs `f` on a cursor over `room` bytes of `out`'s spare capacity, then makes what it
    /// wrote part of `out`; says whether it all fitted (if not, `out` is left as it was).
    fn write(out: &mut Vec<u8>, room: usize, f: impl FnOnce(&mut Cursor)) -> bool {
        out.reserve(room);
        let mut c = Cursor {
            rest: &mut out.spare_capacity_mut()[..room],
            short: false,
        };
        f(&mut c);
        if c.short {
            return false;
        }
        let written = room - c.rest.len();
        // SAFETY: `written` <= `room` <= the spare capacity, and the cursor initialised the
        // first `written` bytes of it: `rest` only ever loses bytes from its front, and
        // every write stores the bytes it splits off.
        unsafe { out.set_len(out.len() + written) };
        true
    }

    /// Takes the room from the cursor: the caller puts back what it leaves, and on running
    /// short marks the cursor and leaves it none.
    #[inline(always)]
    fn take(&mut self) -> &'a mut [MaybeUninit<u8>] {
        std::mem::take(&mut self.rest)
    }

    /// Copies `s` (see [`copy_short`]).
    #[inline(always)]
    fn put(&mut self, s: &[u8]) {
        let Some((to, rest)) = self.take().split_at_mut_checked(s.len()) else {
            self.short = true;
            return;
        };
        self.rest = rest;
        copy_short(
            to,
            s,
            |to, s| {
                to.write_copy_of_slice(s);
            },
            |to, b| {
                to.write(b);
            },
        );
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        let Some((at, rest)) = self.take().split_first_mut() else {
            self.short = true;
            return;
        };
        at.write(b);
        self.rest = rest;
    }

    #[inline(always)]
    fn num(&mut self, n: u64) {
        self.put(itoa::Buffer::new().format(n).as_bytes());
    }

    /// A status code: three digits (hyper gives 100 to 999), written as such.
    fn status(&mut self, s: u16) {
        if (100..1000).contains(&s) {
            self.put(&three_digits(u64::from(s)));
        } else {
            self.num(u64::from(s));
        }
    }

    /// Microseconds as seconds with three decimals (`0.004`, rounded half up), as
    /// CloudFront writes time-taken.
    #[inline(always)]
    fn seconds_3(&mut self, us: u64) {
        let ms = us.saturating_add(500) / 1000;
        if ms < 1000 {
            self.put(b"0.");
        } else {
            self.num(ms / 1000);
            self.byte(b'.');
        }
        let frac = ms % 1000;
        self.put(&three_digits(frac));
    }

    /// CloudFront's escaping: spaces, controls, non-ASCII, quotes and backslashes as `%XX`
    /// (unless the caller knows `v` is `clean`); an empty or absent value as `-`.
    #[inline(always)]
    fn field(&mut self, v: Option<&[u8]>, clean: bool) {
        match v {
            None | Some(b"") => self.byte(b'-'),
            Some(s) if clean => self.put(s),
            Some(s) => {
                let room = self.take();
                match escaped(room, s) {
                    Some(written) => self.rest = &mut room[written..],
                    None => self.short = true,
                }
            }
        }
    }
}

/// Writes `s` at the start of `room`, escaped, and says how many bytes that took (`None`
/// when they do not fit). A
/// function of the room rather than a method of [`Cursor`]: a cursor passed by address to a
/// call that is not inlined is one that every store through its room may alias, so the
/// compiler keeps it in memory, loading and storing it around every byte of the line.
#[inline(never)]
fn escaped(room: &mut [MaybeUninit<u8>], s: &[u8]) -> Option<usize> {
    if clean(s) {
        room.get_mut(..s.len())?.write_copy_of_slice(s);
        return Some(s.len());
    }
    let mut at = 0;
    let hex = b"0123456789ABCDEF";
    for &b in s {
        if needs_escape(b) {
            let [p, hi, lo] = room.get_mut(at..at + 3)? else {
                return None;
            };
            p.write(b'%');
            hi.write(hex[usize::from(b >> 4)]);
            lo.write(hex[usize::from(b & 0xf)]);
            at += 3;
        } else {
            room.get_mut(at)?.write(b);
            at += 1;
        }
    }
    Some(at)
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

fn json_line(out: &mut Vec<u8>, e: &Entry, day: &DayTime, node: &str, id: &[u8]) {
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
        query: e.texts.str(QUERY),
        status: e.status,
        referer: text(e.header(REFERER)),
        user_agent: text(e.header(USER_AGENT)),
        result: result_type(e),
        detailed: detailed_type(e),
        id: std::str::from_utf8(id).unwrap_or("-"),
        protocol: if e.tls { "https" } else { "http" },
        protocol_version: protocol_version(e.version),
        cs_bytes: e.request_bytes,
        time_taken: e.time_taken_us as f64 / 1e6,
        ttfb: e.ttfb_us as f64 / 1e6,
        forwarded_for: text(e.header(FORWARDED_FOR)),
        content_type: text(e.header(CONTENT_TYPE)),
        content_len: e.content_length,
        behaviour: e.texts.str(BEHAVIOUR).unwrap_or("-"),
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
        for (us, want) in [
            (0, "0.000"),
            (400, "0.000"),
            (12_500, "0.013"),
            (1_500_000, "1.500"),
            (12_345_670, "12.346"),
            (u64::MAX, "18446744073709.551"),
        ] {
            let mut s = Vec::new();
            Cursor::write(&mut s, 32, |c| c.seconds_3(us));
            assert_eq!(String::from_utf8(s).unwrap(), want, "{us}");
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

    /// Every length takes its own copy path in `put`: each must copy exactly its bytes.
    #[test]
    fn puts_copy_every_length() {
        let src: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        for n in 0..=src.len() {
            let mut out = b"<".to_vec();
            Cursor::write(&mut out, 64, |c| {
                c.put(&src[..n]);
                c.byte(b'>');
            });
            assert_eq!(out, [&b"<"[..], &src[..n], b">"].concat(), "length {n}");
        }
    }

    #[test]
    fn a_line_past_its_room_is_not_kept() {
        // Each way of writing, one byte short of the room: nothing of the line stays (what
        // was written before the short write included), `out` is as it was, and a write
        // that fits exactly is kept.
        type Write = fn(&mut Cursor);
        let writes: [(&str, Write); 4] = [
            ("put", |c| c.put(b"abcdef")),
            ("byte", |c| {
                c.put(b"abcde");
                c.byte(b'f');
            }),
            ("clean field", |c| c.field(Some(b"abcdef"), true)),
            ("escaped field", |c| c.field(Some(b"ab c"), false)),
        ];
        for (name, write) in writes {
            let mut out = b"earlier\n".to_vec();
            assert!(!Cursor::write(&mut out, 5, write), "{name}");
            assert_eq!(out, b"earlier\n", "{name}");
            assert!(Cursor::write(&mut out, 6, write), "{name}");
            assert_eq!(out.len(), b"earlier\n".len() + 6, "{name}");
        }
    }

    /// Texts copy every length, inline (the fixed-size copies) and spilled, and the clean
    /// check looks at both.
    #[test]
    fn texts_copy_every_length() {
        let src: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        for n in 0..=src.len() {
            let mut t = Texts::new();
            t.set(PATH, &src[..n]);
            t.set(HOST, &src[..n / 2]);
            assert_eq!(t.get(PATH), Some(&src[..n]), "length {n}");
            assert_eq!(t.get(HOST), Some(&src[..n / 2]), "length {n}");
            assert!(t.clean());
        }
        let mut t = Texts::new();
        t.set(PATH, &[b'p'; INLINE - 3]);
        t.set(HOST, b"spilled host");
        assert_eq!(t.get(HOST), Some(&b"spilled host"[..]));
        assert!(!t.clean(), "the spilled space needs escaping");
    }

    #[test]
    fn statuses_are_three_digits() {
        for (s, text) in [
            (200, "200"),
            (404, "404"),
            (100, "100"),
            (999, "999"),
            (42, "42"),
        ] {
            let mut out = Vec::new();
            Cursor::write(&mut out, 8, |c| c.status(s));
            assert_eq!(out, text.as_bytes());
        }
    }

    #[test]
    fn addresses_are_written_as_text() {
        for a in ["127.0.0.1", "10.200.3.45", "0.0.0.0", "::1", "2001:db8::7"] {
            let mut out = Vec::new();
            ip(&mut out, a.parse().unwrap());
            assert_eq!(out, a.as_bytes());
        }
    }

    #[test]
    fn request_ids_are_hex_and_differ() {
        let mut ids = RequestIds::new(7);
        let a = ids.next();
        let b = ids.next();
        assert_ne!(a, b);
        assert!(a.iter().all(u8::is_ascii_hexdigit));
        assert_eq!(&a[16..], b"0000000000000001");
        let mut other = RequestIds::new(8);
        assert_ne!(other.next(), a, "threads' ids differ by their prefix");
        // The counter carries: 9 to a, f to 10.
        let mut ids = RequestIds::new(0);
        let all: Vec<[u8; 32]> = (0..300).map(|_| ids.next()).collect();
        for (n, id) in all.iter().enumerate() {
            let want = format!("{:016x}", n + 1);
            assert_eq!(&id[16..], want.as_bytes());
        }
    }

    /// Every way of [`clean`] built for this target.
    fn cleans() -> Vec<fn(&[u8]) -> bool> {
        #[cfg(target_arch = "x86_64")]
        return vec![clean_words, clean_sse2];
        #[cfg(not(target_arch = "x86_64"))]
        return vec![clean_words];
    }

    #[test]
    fn the_escape_tests_agree_with_the_table() {
        for clean in cleans() {
            escape_test_agrees_with_the_table(clean);
        }
    }

    fn escape_test_agrees_with_the_table(clean: fn(&[u8]) -> bool) {
        // Every byte value at every position of two blocks and of the tail.
        for b in 0..=255u8 {
            for at in 0..37 {
                let mut s = *b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJK";
                s[at] = b;
                assert_eq!(clean(&s), !needs_escape(b), "byte {b:#x} at {at}");
                assert_eq!(clean(&s[..=at]), !needs_escape(b), "byte {b:#x} ending");
            }
        }
        // Two bytes of any kind anywhere in a word: a borrow from one must not hide or
        // invent the other.
        let kinds = [
            b'a', 0, b' ', b'!', b'"', b'%', b'\\', 0x7e, 0x7f, 0x80, 0xa0, 0xa1, 0xff,
        ];
        for &x in &kinds {
            for &y in &kinds {
                for i in 0..8 {
                    for j in 0..8 {
                        let mut s = *b"abcdefgh";
                        s[i] = x;
                        s[j] = y;
                        let want = !s.iter().copied().any(needs_escape);
                        assert_eq!(clean(&s), want, "{s:?}");
                    }
                }
            }
        }
        assert!(clean(b"/s/1k.bin?a=b&c=d"));
        assert!(!clean(b"/with space/x"));
        assert!(clean(b""));
    }

    /// The room reserved for a line covers the longest one an entry can make: every
    /// variable field at its longest and all of it escaped (three bytes a byte), the
    /// largest numbers, an IPv6 address, an extension method. Too little room would panic.
    #[test]
    fn the_longest_line_fits_its_room() {
        let hostile: Vec<u8> = (0..8192).map(|i| [0x80, b' ', b'"', 0xff][i % 4]).collect();
        let value = HeaderValue::from_bytes(&hostile).unwrap();
        let req = http::Request::builder()
            .method(Method::from_bytes(&[b'X'; 200]).unwrap())
            .uri(format!("/{}?{}", "%25".repeat(3000), "%22".repeat(3000)))
            .header(http::header::HOST, value.clone())
            .header(http::header::REFERER, value.clone())
            .header(http::header::USER_AGENT, value.clone())
            .header(&X_FORWARDED_FOR, value.clone())
            .header(http::header::CONTENT_LENGTH, u64::MAX.to_string())
            .body(())
            .unwrap();
        let client = "[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
            .parse()
            .unwrap();
        let mut e = Entry::request(Instant::now(), client, true, &req.into_parts().0);
        let mut resp = HeaderMap::new();
        resp.insert(http::header::CONTENT_TYPE, value);
        resp.insert(http::header::CONTENT_LENGTH, HeaderValue::from(u64::MAX));
        e.response(u16::MAX, &resp, Outcome::Stale, Duration::MAX, None);
        e.body_bytes = u64::MAX;
        e.time_taken_us = u64::MAX;
        let mut day = DayTime::default();
        let mut out = b"earlier lines\n".to_vec();
        e.set_behaviour(&"\u{e9}".repeat(500));
        let line = Line {
            day: day.at(u64::MAX / 1000),
            location: b"node",
            id: &RequestIds::new(1).next(),
            ip: b"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
        };
        cloudfront_line(&mut out, &e, &line);
        let text = std::str::from_utf8(&out).unwrap();
        let line = text.strip_prefix("earlier lines\n").unwrap();
        assert!(line.ends_with('\n'));
        let fields: Vec<&str> = line.trim_end().split('\t').collect();
        assert_eq!(fields.len(), FIELDS.len());
        let escaped_host = "%80%20%22%FF".repeat(2048);
        assert_eq!(fields[6], escaped_host, "cs(Host)");
        assert_eq!(fields[15], escaped_host, "x-host-header");
        assert_eq!(fields[17], u64::MAX.to_string(), "cs-bytes");
        assert_eq!(fields[33], "%C3%A9".repeat(500), "the behaviour");
    }

    #[test]
    fn the_anchor_gives_the_wall_clock_second() {
        reanchor();
        let wall = now_ms() / 1000;
        let ours = unix_ms(Instant::now()) / 1000;
        assert!(ours.abs_diff(wall) <= 1, "{ours} against {wall}");
        // An instant before the anchor counts as the anchor's own time, not a wrap.
        let early = ANCHOR
            .0
            .checked_sub(Duration::from_secs(5))
            .unwrap_or(ANCHOR.0);
        assert!(unix_ms(early) / 1000 >= ANCHOR.1.load(Ordering::Relaxed) / 1000);
    }

    #[test]
    fn content_lengths_are_plain_decimals() {
        let d = |s: &str| decimal(&HeaderValue::from_str(s).unwrap());
        assert_eq!(d("1024"), Some(1024));
        assert_eq!(d("18446744073709551615"), Some(u64::MAX));
        for bad in ["18446744073709551616", "", "+1", "1a", " 1", "-0"] {
            assert_eq!(d(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn client_addresses_are_remembered_per_thread() {
        let mut t = IpText::default();
        assert_eq!(t.of("10.0.0.1".parse().unwrap()), b"10.0.0.1");
        assert_eq!(t.of("10.0.0.1".parse().unwrap()), b"10.0.0.1");
        assert_eq!(t.of("::1".parse().unwrap()), b"::1");
    }

    fn parts(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut req = http::Request::builder().uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn entries_copy_the_first_value_of_each_field() {
        let client = "10.0.0.1:4000".parse().unwrap();
        let p = parts(
            "/a/b?x=1",
            &[
                ("host", "first.example"),
                ("host", "second.example"),
                ("user-agent", "ua/1"),
                ("user-agent", "ua/2"),
            ],
        );
        let mut e = Entry::request(Instant::now(), client, false, &p);
        assert_eq!(e.host(), Some(&b"first.example"[..]));
        assert_eq!(e.header(USER_AGENT), Some(&b"ua/1"[..]));
        assert_eq!(e.path(), "/a/b");
        assert_eq!(e.query(), Some(&b"x=1"[..]));
        assert_eq!(e.header(REFERER), None, "absent, not empty");
        assert_eq!(e.behaviour(), None);
        e.set_behaviour("/a/*");
        e.set_behaviour("later");
        assert_eq!(e.behaviour(), Some(&b"/a/*"[..]));
        // An absolute-form target's authority is the host, whatever Host says.
        let p = parts("http://authority.example/x", &[("host", "header.example")]);
        let e = Entry::request(Instant::now(), client, false, &p);
        assert_eq!(e.host(), Some(&b"authority.example"[..]));
        // A long browser request spills from the inline room and keeps every field.
        let ua = "u".repeat(600);
        let p = parts(
            "/p?q",
            &[("user-agent", &ua), ("referer", "https://r.example/")],
        );
        let e = Entry::request(Instant::now(), client, false, &p);
        assert_eq!(e.header(USER_AGENT), Some(ua.as_bytes()));
        assert_eq!(e.header(REFERER), Some(&b"https://r.example/"[..]));
        assert_eq!(e.path(), "/p");
    }

    /// An entry's CloudFront line at a fixed second, with a fixed node, id and address: by
    /// [`cloudfront_line`] (`clean` None), or with its texts taken as clean or not (`Some`)
    /// in a room of 4 KiB; and whether it fitted.
    fn test_line(e: &Entry, clean: Option<bool>) -> (bool, String) {
        let mut day = DayTime::default();
        let line = Line {
            day: day.at(1_575_493_351),
            location: b"node",
            id: &[b'a'; 32],
            ip: b"10.0.0.1",
        };
        let mut out = Vec::new();
        let fitted = match clean {
            None => cloudfront_line(&mut out, e, &line),
            Some(clean) => Cursor::write(&mut out, 4096, |c| {
                cloudfront_fields(c, e, &line, e.host(), clean)
            }),
        };
        (fitted, String::from_utf8(out).unwrap())
    }

    /// An entry taken back for the next request keeps nothing of the last one: its line is
    /// the line a new entry makes, field for field, after a request with every field set
    /// (one spilled), a response and a behaviour.
    #[test]
    fn a_recycled_entry_keeps_nothing_of_the_last_request() {
        let line_of = |e: &Entry| {
            let (fitted, line) = test_line(e, None);
            assert!(fitted);
            line
        };
        let start = Instant::now();
        let client = "10.0.0.1:4000".parse().unwrap();
        let plain = parts("/plain", &[]);
        SPARE.with(Cell::take);
        let new = Entry::request(start, client, false, &plain);
        let expected = line_of(&new);
        drop(new);

        let ua = "u".repeat(600);
        let full = parts(
            "http://a.example/full/path?q=1",
            &[
                ("host", "h.example"),
                ("referer", "https://r.example/"),
                ("user-agent", &ua),
                ("x-forwarded-for", "192.0.2.1"),
                ("content-length", "12"),
            ],
        );
        let mut e = Entry::request(start, "[2001:db8::1]:9".parse().unwrap(), true, &full);
        e.set_behaviour("/full/*");
        let mut resp = HeaderMap::new();
        resp.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/x"),
        );
        e.response(404, &resp, Outcome::Miss, Duration::from_millis(7), Some(9));
        e.body_bytes = 9;
        e.time_taken_us = 12_345;
        let used = &*e as *const Entry;
        recycle(e);

        let again = Entry::request(start, client, false, &plain);
        assert_eq!(&*again as *const Entry, used, "the entry was reused");
        assert_eq!(line_of(&again), expected);
        assert_eq!(again.request_bytes, 0);
        assert_eq!(again.version, plain.version);
    }

    /// An entry given back while its thread's locals are being destroyed (a body dropped
    /// as a runtime shuts down) is freed, not a panic — which, in a thread-local's
    /// destructor, would abort the process. The holder below is registered before
    /// `SPARE`, so it is destroyed after it.
    #[test]
    fn an_entry_given_back_as_its_thread_ends_is_freed() {
        struct Holder(Option<Box<Entry>>);
        impl Drop for Holder {
            fn drop(&mut self) {
                if let Some(e) = self.0.take() {
                    recycle(e);
                }
            }
        }
        thread_local! {
            static HOLDER: RefCell<Holder> = const { RefCell::new(Holder(None)) };
        }
        std::thread::spawn(|| {
            HOLDER.with(|h| h.borrow_mut().0 = None);
            let client = "10.0.0.1:4000".parse().unwrap();
            let e = Entry::request(Instant::now(), client, false, &parts("/", &[]));
            recycle(Entry::request(
                Instant::now(),
                client,
                false,
                &parts("/", &[]),
            ));
            HOLDER.with(|h| h.borrow_mut().0 = Some(e));
        })
        .join()
        .unwrap();
    }

    /// The line of an entry whose text needs no escaping is copied as is, and is the line
    /// the escaping path writes; one byte to escape anywhere — inline or spilled — sends
    /// every text through the escaping.
    #[test]
    fn clean_texts_are_copied_and_others_escaped() {
        let client = "10.0.0.1:4000".parse().unwrap();
        let format = |e: &Entry, clean: Option<bool>| test_line(e, clean).1;
        let p = parts(
            "/a/b?x=1",
            &[
                ("host", "h.example"),
                ("user-agent", "curl/8"),
                ("referer", "https://r/"),
            ],
        );
        let mut e = Entry::request(Instant::now(), client, false, &p);
        e.set_behaviour("/a/*");
        assert!(e.texts.clean());
        let line = format(&e, None);
        assert_eq!(line, format(&e, Some(false)));
        let fields: Vec<&str> = line.trim_end().split('\t').collect();
        assert_eq!(fields[0..3], ["2019-12-04", "21:02:31", "node"]);
        assert_eq!(fields[6..8], ["h.example", "/a/b"]);
        assert_eq!(fields[9..12], ["https://r/", "curl/8", "x=1"]);
        assert_eq!(fields[33], "/a/*");

        for ua in ["curl 8".to_string(), format!("{} x", "u".repeat(600))] {
            let p = parts("/a/b", &[("host", "h.example"), ("user-agent", &ua)]);
            let mut e = Entry::request(Instant::now(), client, false, &p);
            e.set_behaviour("/a/*");
            assert!(!e.texts.clean(), "{ua}");
            let line = format(&e, None);
            let fields: Vec<&str> = line.trim_end().split('\t').collect();
            assert_eq!(fields[10], ua.replace(' ', "%20"));
            assert_eq!(fields[6..8], ["h.example", "/a/b"]);
            assert_eq!(fields[33], "/a/*");
        }
    }

    fn lines_in(path: &Path) -> usize {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count()
    }

    fn until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A CloudFront log writing `access.log` in a new directory (kept while the directory
    /// lives).
    fn cloudfront_log() -> (tempfile::TempDir, PathBuf, Arc<AccessLog>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = Arc::new(AccessLog::new("node", Counter::default()));
        let config = AccessLogConfig {
            path: path.clone(),
            format: AccessLogFormat::Cloudfront,
        };
        log.configure(Some(&config)).unwrap();
        (dir, path, log)
    }

    /// Writes the line of a 200 hit for the request `p`, routed to "default".
    fn write_hit(log: &AccessLog, p: &http::request::Parts, client: SocketAddr, start: Instant) {
        let mut e = Entry::request(start, client, false, p);
        e.response(
            200,
            &HeaderMap::new(),
            Outcome::Hit,
            Duration::ZERO,
            Some(0),
        );
        e.set_behaviour("default");
        log.write(&e);
    }

    /// A thread's batch reaches the file when the thread ends, when it goes idle (the park
    /// hook), when its first line is a tick old, and when the log is closed while another
    /// thread still holds lines.
    #[test]
    fn batches_reach_the_file() {
        let (_dir, path, log) = cloudfront_log();
        let client = "10.0.0.1:4000".parse().unwrap();
        let p = Arc::new(parts("/x", &[("host", "h")]));
        let line = {
            let (log, p) = (log.clone(), p.clone());
            move |start: Instant| write_hit(&log, &p, client, start)
        };

        // A thread that ends.
        let l = line.clone();
        std::thread::spawn(move || (0..3).for_each(|_| l(Instant::now())))
            .join()
            .unwrap();
        until("a finished thread's 3 lines", || lines_in(&path) == 3);

        // A thread that goes idle and stays: what the runtime's park hook runs.
        let (idle_tx, idle_rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let l = line.clone();
        let idle = std::thread::spawn(move || {
            l(Instant::now());
            l(Instant::now());
            flush_thread();
            done_tx.send(()).unwrap();
            let _ = idle_rx.recv();
        });
        done_rx.recv().unwrap();
        until("an idle thread's 2 lines", || lines_in(&path) == 5);

        // A busy thread that never idles: a line a tick after the batch's first hands the
        // batch over.
        let first = Instant::now();
        line(first);
        line(first);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(lines_in(&path), 5, "a young batch is held");
        line(first + TICK);
        until("a batch a tick old", || lines_in(&path) == 8);

        // Closing waits for a thread that holds lines to hand them over.
        let l = line.clone();
        let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            l(Instant::now());
            held_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            flush_thread();
        });
        held_rx.recv().unwrap();
        line(Instant::now()); // this thread's own batch is handed over by close itself
        log.close();
        assert_eq!(lines_in(&path), 10, "close waited for the holder");
        holder.join().unwrap();
        drop(idle_tx);
        idle.join().unwrap();
        assert_eq!(lines_in(&path), 10);
    }

    /// Lines that outgrow the batch's cache-sized part several times over (each move to the
    /// rest of the batch by streaming stores) reach the file whole and in order, with the
    /// last, partial part moved when the thread ends. The thread also hands its batch over
    /// every 100 lines, faster than the writer takes them, so that batches are appended to
    /// a slot not yet emptied as well as swapped into an empty one.
    #[test]
    fn lines_past_the_hot_part_reach_the_file_in_order() {
        let (_dir, path, log) = cloudfront_log();
        const N: usize = 1000;
        let writer = log.clone();
        std::thread::spawn(move || {
            let client = "10.0.0.1:4000".parse().unwrap();
            let start = Instant::now();
            for i in 0..N {
                let p = parts(&format!("/object/{i}/{}", "p".repeat(i % 70)), &[]);
                write_hit(&writer, &p, client, start);
                if i % 100 == 99 {
                    flush_thread();
                }
            }
        })
        .join()
        .unwrap();
        until("the thread's lines", || lines_in(&path) == N);
        log.close();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.len() > 8 * HOT,
            "only {} bytes: too few to test",
            text.len()
        );
        let stems: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let fields: Vec<&str> = l.split('\t').collect();
                assert_eq!(fields.len(), FIELDS.len(), "a whole line: {l}");
                fields[7]
            })
            .collect();
        let want: Vec<String> = (0..N)
            .map(|i| format!("/object/{i}/{}", "p".repeat(i % 70)))
            .collect();
        assert_eq!(stems, want);
    }

    #[test]
    fn the_day_cache_follows_the_second() {
        let mut d = DayTime::default();
        assert_eq!(d.at(1_575_493_351).date(), "2019-12-04");
        assert_eq!(d.at(1_575_493_351).time(), "21:02:31");
        assert_eq!(d.at(1_575_493_352).time(), "21:02:32");
        assert_eq!(d.at(0).date(), "1970-01-01");
    }

    /// `of` gives the second an instant falls in, from the cache while the instant is in the
    /// cached second and afresh outside it, earlier or later (instants a tenth of a second
    /// from the seconds' edges, so that a writer thread re-anchoring the clock in between
    /// cannot move them across).
    #[test]
    fn the_day_cache_finds_the_second_of_an_instant() {
        let t0 = Instant::now();
        let ms0 = unix_ms(t0);
        let next = t0 + Duration::from_millis(1000 - ms0 % 1000);
        let second = ms0 / 1000 + 1;
        let mut d = DayTime::default();
        for (offset_ms, secs) in [
            (100i64, second),
            (900, second),
            (500, second),
            (1100, second + 1),
            (-100, second - 1),
            (2500, second + 2),
            (100, second),
        ] {
            let at = if offset_ms < 0 {
                next - Duration::from_millis(offset_ms.unsigned_abs())
            } else {
                next + Duration::from_millis(offset_ms as u64)
            };
            let want = DayTime::default().at(secs).prefix;
            assert_eq!(
                d.of(at).prefix,
                want,
                "{offset_ms} ms after a second's start"
            );
        }
    }
}
