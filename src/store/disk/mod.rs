//! The disk store: a log-structured, persistent [`Store`] with a RAM tier in front.
//!
//! Layout of a store directory (see `docs/store-format.md`):
//! - `seg-NNNNN.dat`: one file per slot of the disk budget, records appended through a
//!   write buffer ([`segment`], [`record`]);
//! - `index.ckpt`: the index checkpoint ([`checkpoint`]);
//! - `strata.lock`: the lock file ([`lock`]).
//!
//! What this module owns: the write path (the [`log`] of the active segment, eviction a
//! segment at a time, admission), the read path (index → record → verified body) and the
//! life cycle (open, background flush and checkpoint, close). It must never return a body
//! that fails its checksum or belongs to another key, never write into a segment other than
//! the active one, and never let the disk usage exceed `store.size`.
//!
//! Concurrency: every change to the index that corresponds to a record happens while the
//! log lock is held, so a checkpoint taken under that lock is consistent with the log
//! position it records. Reads take one index shard lock briefly and then read files
//! without any lock (the log lock only for bytes still in the write buffer).

pub mod admission;
pub mod checkpoint;
pub mod index;
pub mod lock;
mod log;
pub mod ram;
pub mod reader;
pub mod record;
mod recovery;
pub mod segment;
pub mod survey;

use crate::config::StoreConfig;
use crate::store::{Body, Object, ObjectMeta, ObjectWriter, Store, StoreError, StoreStats};
use admission::{Doorkeeper, Sketch, Threshold};
use bytes::Bytes;
use checkpoint::{Checkpoint, CheckpointHeader};
use index::{Entry, Index};
use lock::StoreLock;
use log::Log;
use parking_lot::{Condvar, Mutex, RwLock};
use ram::RamTier;
use reader::{ChunkedReader, InlineReader};
use record::{Head, Kind, NewRecord, Ref, FLAG_CHUNKED};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a store is laid out and behaves, beyond what [`StoreConfig`] says. The defaults suit
/// production; tests use small segments.
#[derive(Debug, Clone)]
pub struct DiskOptions {
    /// Bytes per segment file; 0 derives it from the store size (1/64 of it, a power of
    /// two between 1 MiB and 128 MiB). An existing store keeps the size it was made with.
    pub segment_size: u64,
    /// Bytes per chunk of a large body (1–16 MiB in production; at most 1/4 segment).
    pub chunk_size: u64,
    /// Objects at least this large are stored only after their key missed twice.
    pub large_admission: Option<u64>,
    /// Once the store is full (it has begun reclaiming segments), a new key is stored only
    /// if its recent access frequency per byte (TinyLFU sketch) is at least that of what
    /// eviction has recently been dropping, so one-hit wonders do not push out objects that
    /// are asked for again. Replacements of a stored key are always admitted; a store that
    /// is not yet full stores every miss. Reclaim then also keeps objects that pass the
    /// same bar (besides those read since written).
    pub admit_when_full: bool,
    /// The share of a reclaimed segment that may be re-appended (objects kept).
    pub reappend_budget: f64,
    /// How often the write buffer is flushed to the file even when not full.
    pub flush_interval: Duration,
    /// Run the background thread (flush, checkpoint). Tools and some tests turn it off.
    pub background: bool,
    /// The write buffer's size.
    pub write_buffer: usize,
}

impl Default for DiskOptions {
    fn default() -> Self {
        DiskOptions {
            segment_size: 0,
            chunk_size: 1 << 20,
            large_admission: Some(64 << 20),
            admit_when_full: true,
            reappend_budget: 1.0,
            flush_interval: Duration::from_millis(200),
            background: true,
            write_buffer: 4 << 20,
        }
    }
}

/// One slot of the budget: its file and the generation of the segment in it (0 = free).
pub(crate) struct Slot {
    file: File,
    gen: AtomicU64,
    /// Bytes of the segment that are in the file (flushed from the write buffer).
    flushed: AtomicU64,
}

/// Counters for stats and tests.
#[derive(Debug, Default)]
pub struct Counters {
    pub bad_records: AtomicU64,
    pub evicted_segments: AtomicU64,
    pub reappended: AtomicU64,
    pub dropped: AtomicU64,
    pub refused_admission: AtomicU64,
    pub replayed_records: AtomicU64,
    /// Nanoseconds the tail replay took.
    pub replay_nanos: AtomicU64,
}

pub(crate) struct Inner {
    dir: PathBuf,
    opts: DiskOptions,
    seg_size: u64,
    slots: RwLock<Vec<Option<Arc<Slot>>>>,
    nslots: u32,
    log: Mutex<Log>,
    index: Index,
    ram: RamTier,
    doorkeeper: Doorkeeper,
    /// Recent accesses by key hash (every `get`), for admission and retention.
    sketch: Sketch,
    /// The frequency-per-byte bar for admission and retention, from what reclaim drops.
    threshold: Threshold,
    ready: Mutex<bool>,
    ready_cv: Condvar,
    ready_flag: AtomicBool,
    degraded: AtomicBool,
    /// Set once the store has had to reclaim a segment to make room.
    full: AtomicBool,
    /// When a degraded store may try to write again (Unix ms).
    retry_at: AtomicU64,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    checkpoint_interval: Duration,
    /// Held while a checkpoint is written (taken before `log`).
    checkpointing: Mutex<()>,
    pub(crate) counters: Counters,
    /// Released by `close`, so the directory can be opened again (a restart in-process).
    lock: Mutex<Option<StoreLock>>,
}

/// The disk store. Cheap to share: clone the `Arc` it is usually held in.
pub struct DiskStore {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error("cannot open the store at {dir}: {source}")]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bad store configuration for {dir}: {reason}")]
    Config { dir: PathBuf, reason: String },
}

impl From<OpenError> for StoreError {
    fn from(e: OpenError) -> StoreError {
        match e {
            OpenError::Io { source, .. } => StoreError::Io(source),
            other => StoreError::Io(std::io::Error::other(other.to_string())),
        }
    }
}

const FIRST_READ: u64 = 256 << 10;
const DEGRADED_RETRY_MS: u64 = 5_000;

fn now_ms() -> u64 {
    crate::time::now_ms()
}

impl DiskStore {
    /// Opens (or creates) the store `cfg` describes, with default options.
    pub fn open(cfg: &StoreConfig) -> Result<DiskStore, StoreError> {
        Ok(Self::open_with(cfg, DiskOptions::default())?)
    }

    /// Opens (or creates) a store. Returns once the checkpoint is loaded; the tail replay
    /// runs in the background (see [`is_ready`](Self::is_ready)) unless
    /// `opts.background` is false, in which case it has finished on return.
    pub fn open_with(cfg: &StoreConfig, opts: DiskOptions) -> Result<DiskStore, OpenError> {
        let dir = cfg.path.clone();
        let io = |source| OpenError::Io {
            dir: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let lock = StoreLock::acquire(&dir)?;
        let plan = recovery::plan(&dir, cfg.size.0, &opts).map_err(|e| match e {
            recovery::PlanError::Io(source) => OpenError::Io {
                dir: dir.clone(),
                source,
            },
            recovery::PlanError::Config(reason) => OpenError::Config {
                dir: dir.clone(),
                reason,
            },
        })?;
        let nslots = plan.nslots;
        let mut opts = opts;
        // A chunk (plus its record header) must fit a quarter segment; an existing store
        // keeps its segment size, so the chunk size follows it.
        opts.chunk_size = opts.chunk_size.clamp(4096, (plan.seg_size - 4096) / 4);
        let inner = Arc::new(Inner {
            dir: dir.clone(),
            seg_size: plan.seg_size,
            nslots,
            slots: RwLock::new(plan.slots.clone()),
            log: Mutex::new(Log::new(plan.next_gen, opts.write_buffer)),
            index: Index::new(),
            ram: RamTier::new(cfg.memory.0),
            doorkeeper: Doorkeeper::new(),
            sketch: Sketch::new(Sketch::width_for(cfg.size.0)),
            threshold: Threshold::default(),
            ready: Mutex::new(false),
            ready_cv: Condvar::new(),
            ready_flag: AtomicBool::new(false),
            degraded: AtomicBool::new(false),
            full: AtomicBool::new(false),
            retry_at: AtomicU64::new(0),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            checkpoint_interval: cfg.checkpoint_interval.0.max(Duration::from_millis(100)),
            checkpointing: Mutex::new(()),
            counters: Counters::default(),
            opts,
            lock: Mutex::new(Some(lock)),
        });
        let mut plan = plan;
        recovery::load_checkpoint(&inner, &mut plan);
        // The admission sketch and bar as of the last checkpoint (a missing or stale file
        // only means admission starts from scratch).
        admission::load(&dir, &inner.sketch, &inner.threshold);
        let store = DiskStore {
            inner: inner.clone(),
            thread: Mutex::new(None),
            closed: AtomicBool::new(false),
        };
        if inner.opts.background {
            let t = std::thread::Builder::new()
                .name("strata-store".into())
                .spawn(move || {
                    recovery::replay_tail(&inner, &plan);
                    inner.background_loop();
                })
                .map_err(io)?;
            *store.thread.lock() = Some(t);
        } else {
            recovery::replay_tail(&inner, &plan);
        }
        Ok(store)
    }

    /// True once the tail replay has finished and the store accepts writes.
    pub fn is_ready(&self) -> bool {
        self.inner.ready_flag.load(Ordering::Acquire)
    }

    /// Blocks until the store is ready or `timeout` passes; returns readiness.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        self.inner.wait_ready(timeout)
    }

    /// Flushes, checkpoints and stops the background thread. Later calls do nothing; the
    /// store keeps serving reads but refuses writes after it.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        *self.inner.stop.lock() = true;
        self.inner.stop_cv.notify_all();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
        if self.is_ready() {
            if let Err(e) = self.inner.checkpoint() {
                tracing::warn!(dir = %self.inner.dir.display(), error = %e, "checkpoint at close failed");
            }
        }
        self.inner.lock.lock().take();
    }

    /// Writes the write buffer to its segment file (no checkpoint, no sync): what the
    /// background thread does every `flush_interval`.
    pub fn flush(&self) {
        let mut log = self.inner.log.lock();
        self.inner.flush_log(&mut log);
    }

    /// Stops the store as `kill -9` would: no flush of the write buffer, no checkpoint.
    /// For crash tests.
    #[doc(hidden)]
    pub fn simulate_crash(self) {
        self.closed.store(true, Ordering::SeqCst);
        *self.inner.stop.lock() = true;
        self.inner.stop_cv.notify_all();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
        self.inner.log.lock().buf.clear();
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The segment size in bytes.
    pub fn segment_size(&self) -> u64 {
        self.inner.seg_size
    }

    /// Counters (bad records, evictions, replay figures).
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Rewrites segments whose live bytes are at most `max_fill` of their size (offline
    /// compaction): live objects are re-appended, the segments freed. Calls `progress`
    /// with (segments done, segments to do). Returns the bytes reclaimed.
    pub fn compact(
        &self,
        max_fill: f64,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<u64, StoreError> {
        self.inner.compact(max_fill, progress)
    }

    /// Per-slot live bytes as the index sees them: (slot, generation, file bytes, live
    /// bytes, live objects). Reads every indexed record head; for tools.
    pub fn segment_usage(&self) -> Vec<SegmentUsage> {
        self.inner.segment_usage()
    }
}

/// What reclaim needs to know of the large object a chunk belongs to.
struct ChunkOwner {
    /// Its bytes on disk (head record and body).
    stored_len: u64,
}

/// How full one segment is.
#[derive(Debug, Clone, Default)]
pub struct SegmentUsage {
    pub slot: u32,
    pub generation: u64,
    pub file_bytes: u64,
    pub live_bytes: u64,
    pub live_objects: u64,
}

impl Drop for DiskStore {
    fn drop(&mut self) {
        self.close();
    }
}

impl Inner {
    fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut r = self.ready.lock();
        while !*r {
            if self.ready_cv.wait_until(&mut r, deadline).timed_out() {
                break;
            }
        }
        *r
    }

    fn set_ready(&self) {
        *self.ready.lock() = true;
        self.ready_flag.store(true, Ordering::Release);
        self.ready_cv.notify_all();
    }

    fn background_loop(&self) {
        let mut last_ckpt = Instant::now();
        let mut stop = self.stop.lock();
        while !*stop {
            self.stop_cv.wait_for(&mut stop, self.opts.flush_interval);
            if *stop {
                break;
            }
            drop(stop);
            if last_ckpt.elapsed() >= self.checkpoint_interval {
                if let Err(e) = self.checkpoint() {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "periodic checkpoint failed");
                }
                last_ckpt = Instant::now();
            } else {
                let mut log = self.log.lock();
                self.flush_log(&mut log);
            }
            stop = self.stop.lock();
        }
    }

    pub(crate) fn slot(&self, slot: u32) -> Option<Arc<Slot>> {
        self.slots.read().get(slot as usize).cloned().flatten()
    }

    /// Reads up to `len` bytes of segment `slot` at `offset`, from the file or the write
    /// buffer. Fewer bytes at the end of the data.
    pub(crate) fn read(&self, slot: u32, offset: u64, len: u64) -> std::io::Result<Bytes> {
        self.read_with(None, slot, offset, len)
    }

    /// [`read`](Self::read) for a caller that holds the log lock (`log`).
    fn read_with(
        &self,
        log: Option<&Log>,
        slot: u32,
        offset: u64,
        len: u64,
    ) -> std::io::Result<Bytes> {
        let Some(s) = self.slot(slot) else {
            return Ok(Bytes::new());
        };
        if offset + len <= s.flushed.load(Ordering::Acquire) {
            return segment::read_at(&s.file, offset, len as usize);
        }
        let guard;
        let log = match log {
            Some(l) => l,
            None => {
                guard = self.log.lock();
                &*guard
            }
        };
        match log.read_buffered(slot, offset, len, &s.file) {
            Some(b) => b,
            None => {
                let end = (offset + len).min(s.flushed.load(Ordering::Acquire));
                segment::read_at(&s.file, offset, end.saturating_sub(offset) as usize)
            }
        }
    }

    /// Reads and verifies the head of the record at (`slot`, `offset`). Returns the bytes
    /// read (at least the head) too.
    pub(crate) fn read_head(
        &self,
        slot: u32,
        offset: u64,
        hint: u64,
    ) -> Result<(Head, Bytes), StoreError> {
        self.read_head_with(None, slot, offset, hint)
    }

    fn read_head_with(
        &self,
        log: Option<&Log>,
        slot: u32,
        offset: u64,
        hint: u64,
    ) -> Result<(Head, Bytes), StoreError> {
        let mut b = self.read_with(
            log,
            slot,
            offset,
            hint.clamp(record::HEADER_LEN as u64, FIRST_READ),
        )?;
        loop {
            match Head::parse(&b) {
                Ok(h) => return Ok((h, b)),
                Err(record::RecordError::Truncated { need, have })
                    if need > have && have == b.len() =>
                {
                    let more = self.read_with(log, slot, offset, need as u64)?;
                    if more.len() <= b.len() {
                        return Err(StoreError::Corrupt(format!(
                            "record at slot {slot} offset {offset} is truncated"
                        )));
                    }
                    b = more;
                }
                Err(e) => {
                    return Err(StoreError::Corrupt(format!(
                        "record at slot {slot} offset {offset}: {e}"
                    )))
                }
            }
        }
    }

    fn gen_lo(&self, slot: u32) -> Option<u32> {
        self.slot(slot)
            .map(|s| s.gen.load(Ordering::Acquire) as u32)
            .filter(|&g| g != 0)
    }

    /// Resolves an index entry to (metadata, the body's `Object` record head and bytes, the
    /// body record's place).
    fn resolve(
        &self,
        key: &[u8],
        e: &Entry,
    ) -> Result<(ObjectMeta, Head, Bytes, u32, u64), StoreError> {
        let corrupt = |m: &str| StoreError::Corrupt(m.to_string());
        let (head, bytes) = self.read_head(e.slot, e.offset, index::class_len(e.size_class))?;
        if head.key[..] != *key {
            return Err(corrupt("key mismatch (hash collision or stale entry)"));
        }
        let key_s = String::from_utf8_lossy(key).into_owned();
        let meta = ObjectMeta::decode(key_s, &head.meta).map_err(StoreError::Corrupt)?;
        match head.header.kind {
            Kind::Object => Ok((meta, head, bytes, e.slot, e.offset)),
            Kind::Meta => {
                let r = head
                    .table
                    .first()
                    .ok_or_else(|| corrupt("meta record without a body reference"))?;
                if self.gen_lo(r.slot) != Some(r.len) {
                    return Err(corrupt("the body of a refreshed object was evicted"));
                }
                let (bh, bb) = self.read_head(r.slot, r.offset as u64, FIRST_READ)?;
                if bh.key[..] != *key || bh.header.kind != Kind::Object {
                    return Err(corrupt(
                        "refreshed object's body record belongs to another key",
                    ));
                }
                Ok((meta, bh, bb, r.slot, r.offset as u64))
            }
            _ => Err(corrupt("index points at a record that is not an object")),
        }
    }

    fn get(self: &Arc<Self>, key: &str) -> Option<Object> {
        let h = index::key_hash(key.as_bytes());
        self.sketch.add(h);
        let Some(e) = self.index.touch(h) else {
            self.doorkeeper.record_miss(h);
            return None;
        };
        if let Some(o) = self.ram.get(h, key) {
            return Some(o);
        }
        match self.load(key, h, &e) {
            Ok(o) => Some(o),
            Err(err) => {
                self.counters.bad_records.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(key, error = %err, "dropping an unreadable object");
                self.index.remove_if_at(h, &e);
                None
            }
        }
    }

    fn load(self: &Arc<Self>, key: &str, h: u64, e: &Entry) -> Result<Object, StoreError> {
        let (meta, head, bytes, slot, offset) = self.resolve(key.as_bytes(), e)?;
        let hd = head.header;
        let body = if hd.flags & FLAG_CHUNKED != 0 {
            Body::Reader(Arc::new(ChunkedReader::new(
                self.clone(),
                h,
                *e,
                head.table,
                hd.body_len,
            )))
        } else if bytes.len() as u64 >= hd.data_offset() + hd.inline_len as u64 {
            let data = head
                .inline_data(&bytes)
                .map_err(|err| StoreError::Corrupt(err.to_string()))?;
            if data.len() as u64 != meta.body_len && meta.body_len != u64::MAX {
                return Err(StoreError::Corrupt(
                    "body length differs from metadata".into(),
                ));
            }
            Body::Memory(data)
        } else {
            let gen = self
                .slot(slot)
                .map(|s| s.gen.load(Ordering::Acquire))
                .unwrap_or(0);
            let reader = InlineReader::new(
                self.clone(),
                slot,
                gen,
                offset + hd.data_offset(),
                hd.inline_len as u64,
                hd.data_crc,
            );
            // A body longer than the first read but small enough for the RAM tier is read
            // whole (crc-checked) when it is about to be promoted, so hot objects of any
            // size the RAM tier takes are served from memory.
            if e.has(Entry::REFERENCED) && hd.inline_len as u64 <= self.ram.max_object() {
                Body::Memory(reader.load().map_err(StoreError::Io)?)
            } else {
                Body::Reader(Arc::new(reader))
            }
        };
        let object = Object {
            meta: Arc::new(meta),
            body,
        };
        // Promotion: a second hit since the record was written earns a place in RAM.
        // Promotion: every disk hit with its body in hand enters the RAM tier's small
        // queue; S3-FIFO keeps it only if it is hit again there.
        if let Body::Memory(b) = &object.body {
            self.promote(h, e, &object.meta, b);
        }
        Ok(object)
    }

    fn promote(&self, h: u64, e: &Entry, meta: &Arc<ObjectMeta>, body: &Bytes) {
        if body.len() as u64 > self.ram.max_object() {
            return;
        }
        self.ram.insert(h, meta.clone(), body.clone());
        // A put or removal may have raced with us: keep RAM in line with the index.
        if !self.index.get(h).is_some_and(|now| now.same_place(e)) {
            self.ram.remove(h);
        }
    }

    fn writable(&self) -> Result<(), StoreError> {
        if !self.ready_flag.load(Ordering::Acquire) {
            return Err(StoreError::Refused("the store is still loading"));
        }
        if self.degraded.load(Ordering::Acquire) && now_ms() < self.retry_at.load(Ordering::Acquire)
        {
            return Err(StoreError::Refused(
                "the store is degraded (disk full or failing)",
            ));
        }
        Ok(())
    }

    /// Appends a record and, if `index` is given, points the key at it; all under the log
    /// lock. Returns the record's place.
    fn append(
        &self,
        log: &mut Log,
        rec: &NewRecord,
        index: Option<(u8, bool)>,
    ) -> Result<(u32, u64, u64), StoreError> {
        self.writable_locked()?;
        let len = rec.len();
        if len + segment::SEGMENT_HEADER_LEN > self.seg_size {
            return Err(StoreError::TooLarge {
                size: len,
                limit: self.seg_size - segment::SEGMENT_HEADER_LEN,
            });
        }
        // A new segment may start with records re-appended by the reclaim its roll did;
        // a few more rolls always make room (each reclaims another segment).
        let mut rolls = 0u32;
        while log
            .active
            .as_ref()
            .is_none_or(|a| a.pos + len > self.seg_size)
        {
            // The first roll re-appends within the full budget, a second within half a
            // segment, a third none: the record then fits (it is at most a segment).
            let share = match rolls {
                0 => self.opts.reappend_budget,
                1 => self.opts.reappend_budget.min(0.5),
                _ => 0.0,
            };
            self.roll(log, share)?;
            rolls += 1;
        }
        let (slot, offset) = log.push(rec);
        if let Some((flags, drop_ram)) = index {
            let e = Entry {
                slot,
                offset,
                size_class: index::size_class(len),
                flags,
                expiry_hours: index::expiry_hours(rec.expires_at),
            };
            log.pending.push((rec.key_hash, e));
            self.index.insert(rec.key_hash, e);
            if drop_ram {
                self.ram.remove(rec.key_hash);
            }
        }
        if log.buf.len() >= self.opts.write_buffer {
            self.flush_log(log);
            if self.degraded.load(Ordering::Acquire) {
                return Err(StoreError::Refused(
                    "the store is degraded (disk full or failing)",
                ));
            }
        }
        Ok((slot, offset, len))
    }

    fn writable_locked(&self) -> Result<(), StoreError> {
        if self.degraded.load(Ordering::Acquire) {
            if now_ms() < self.retry_at.load(Ordering::Acquire) {
                return Err(StoreError::Refused(
                    "the store is degraded (disk full or failing)",
                ));
            }
            tracing::info!(dir = %self.dir.display(), "retrying writes after a failure");
            self.degraded.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Writes the buffer to the active segment. On failure the records in it are taken out
    /// of the index and the store turns degraded.
    fn flush_log(&self, log: &mut Log) {
        let Some(a) = log.active.as_ref() else { return };
        if log.buf.is_empty() {
            return;
        }
        let Some(s) = self.slot(a.slot) else { return };
        let start = log.buf_start;
        match log::write_all_at(&s.file, &log.buf, start) {
            Ok(()) => {
                let end = start + log.buf.len() as u64;
                s.flushed.store(end, Ordering::Release);
                log.buf_start = end;
                log.buf.clear();
                log.pending.clear();
            }
            Err(e) => {
                self.fail_writes(&e);
                for (h, e) in log.pending.drain(..) {
                    self.index.remove_if_at(h, &e);
                }
                let _ = s.file.set_len(start);
                s.flushed.store(start, Ordering::Release);
                if let Some(a) = log.active.as_mut() {
                    a.pos = start;
                }
                log.buf.clear();
            }
        }
    }

    fn fail_writes(&self, e: &std::io::Error) {
        if !self.degraded.swap(true, Ordering::AcqRel) {
            tracing::warn!(dir = %self.dir.display(), error = %e,
                "store write failed; refusing new objects and serving what is stored");
        }
        self.retry_at
            .store(now_ms() + DEGRADED_RETRY_MS, Ordering::Release);
    }

    /// Seals the active segment and starts a new one in a free slot, reclaiming the oldest
    /// segment first when no slot is free; the reclaim may re-append `share` of a segment.
    fn roll(&self, log: &mut Log, share: f64) -> Result<(), StoreError> {
        self.flush_log(log);
        if self.degraded.load(Ordering::Acquire) {
            return Err(StoreError::Refused(
                "the store is degraded (disk full or failing)",
            ));
        }
        if let Some(a) = log.active.take() {
            if let Some(s) = self.slot(a.slot) {
                if let Err(e) = s.file.sync_data() {
                    self.fail_writes(&e);
                    return Err(StoreError::Io(e));
                }
            }
        }
        let free = |slots: &Vec<Option<Arc<Slot>>>| {
            (0..self.nslots).find(|&i| {
                slots[i as usize]
                    .as_ref()
                    .is_none_or(|s| s.gen.load(Ordering::Acquire) == 0)
            })
        };
        let slot = match free(&self.slots.read()) {
            Some(s) => s,
            None => {
                self.full.store(true, Ordering::Relaxed);
                let victim = self
                    .oldest_slot(None)
                    .ok_or(StoreError::Refused("no segment to reclaim"))?;
                self.reclaim_slot_without_active(victim)?;
                victim
            }
        };
        self.start_segment(log, slot)?;
        // Keep one slot free so the next roll can start a segment before it reclaims.
        if free(&self.slots.read()).is_none() {
            self.full.store(true, Ordering::Relaxed);
            if let Some(victim) = self.oldest_slot(Some(slot)) {
                self.reclaim(log, victim, false, share);
            }
        }
        Ok(())
    }

    fn oldest_slot(&self, except: Option<u32>) -> Option<u32> {
        let slots = self.slots.read();
        (0..self.nslots)
            .filter(|&i| Some(i) != except)
            .filter_map(|i| {
                let g = slots[i as usize].as_ref()?.gen.load(Ordering::Acquire);
                (g != 0).then_some((g, i))
            })
            .min()
            .map(|(_, i)| i)
    }

    fn start_segment(&self, log: &mut Log, slot: u32) -> Result<(), StoreError> {
        let gen = log.next_gen;
        let header = segment::SegmentHeader {
            slot,
            generation: gen,
            size: self.seg_size,
            created_at: now_ms(),
        };
        let existing = self.slot(slot);
        let s = match existing {
            Some(s) => s,
            None => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(segment::path(&self.dir, slot))
                    .inspect_err(|e| self.fail_writes(e))?;
                let s = Arc::new(Slot {
                    file,
                    gen: AtomicU64::new(0),
                    flushed: AtomicU64::new(0),
                });
                self.slots.write()[slot as usize] = Some(s.clone());
                s
            }
        };
        let res = s
            .file
            .set_len(0)
            .and_then(|()| log::write_all_at(&s.file, &header.encode(), 0));
        if let Err(e) = res {
            self.fail_writes(&e);
            return Err(StoreError::Io(e));
        }
        s.flushed
            .store(segment::SEGMENT_HEADER_LEN, Ordering::Release);
        s.gen.store(gen, Ordering::Release);
        log.next_gen += 1;
        log.start(slot, gen, segment::SEGMENT_HEADER_LEN);
        Ok(())
    }

    /// Reclaims a segment when there is no active one to re-append into: everything in it
    /// is dropped from the index (only happens when the budget holds fewer than 3 slots or
    /// after a failure).
    fn reclaim_slot_without_active(&self, victim: u32) -> Result<(), StoreError> {
        self.index.retain(|_, e| e.slot != victim);
        self.free_slot(victim);
        Ok(())
    }

    fn free_slot(&self, slot: u32) {
        if let Some(s) = self.slot(slot) {
            s.gen.store(0, Ordering::Release);
            s.flushed.store(0, Ordering::Release);
            if let Err(e) = s.file.set_len(0) {
                tracing::warn!(slot, error = %e, "cannot truncate a reclaimed segment");
            }
        }
        self.counters
            .evicted_segments
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Reclaims segment `victim`: objects read since they were written, or (with
    /// admission on) asked for at least as often per byte as the admission bar, are
    /// re-appended to the active segment within the write budget, the rest leave the
    /// index; then the slot is freed. The scores of what was dropped set the bar.
    fn reclaim(&self, log: &mut Log, victim: u32, keep_all: bool, share: f64) {
        let Some(s) = self.slot(victim) else { return };
        let end = s.flushed.load(Ordering::Acquire);
        let mut budget = if keep_all {
            self.seg_size
        } else {
            (self.seg_size as f64 * share.clamp(0.0, 1.0)) as u64
        };
        let now = now_ms();
        let bar = if self.opts.admit_when_full {
            self.threshold.get()
        } else {
            0
        };
        let mut drops: Vec<u64> = Vec::new();
        // Large objects already kept or dropped during this reclaim.
        let mut large_done: std::collections::HashSet<u64> = std::collections::HashSet::new();
        let items: Vec<segment::ScanItem> =
            segment::Scanner::new(&s.file, segment::SEGMENT_HEADER_LEN, end).collect();
        for item in items {
            let segment::ScanItem::Record { offset, head, data } = item else {
                continue;
            };
            let h = head.header.key_hash;
            match head.header.kind {
                Kind::Object | Kind::Meta => {
                    let Some(e) = self.index.get(h) else { continue };
                    let here = Entry {
                        slot: victim,
                        offset,
                        ..e
                    };
                    let (live, meta_bytes, entry_flags) = if e.same_place(&here) {
                        (true, head.meta.clone(), e.flags)
                    } else if e.has(Entry::INDIRECT) && head.header.kind == Kind::Object {
                        match self.read_head_with(
                            Some(&*log),
                            e.slot,
                            e.offset,
                            index::class_len(e.size_class),
                        ) {
                            Ok((m, _)) => {
                                let r = m.table.first().copied();
                                let points_here = r
                                    .is_some_and(|r| r.slot == victim && r.offset as u64 == offset);
                                (points_here, m.meta.clone(), e.flags)
                            }
                            Err(_) => (false, Bytes::new(), e.flags),
                        }
                    } else {
                        (false, Bytes::new(), e.flags)
                    };
                    if !live {
                        continue;
                    }
                    let chunked = head.header.flags & FLAG_CHUNKED != 0;
                    let stored_len =
                        head.header.record_len() + if chunked { head.header.body_len } else { 0 };
                    let score = admission::score(self.sketch.estimate(h), stored_len);
                    let worth = entry_flags & Entry::REFERENCED != 0 || (bar > 0 && score > bar);
                    let keep =
                        head.header.kind == Kind::Object && (keep_all || worth) && !e.expired(now);
                    if chunked {
                        large_done.insert(h);
                        if keep && self.reappend_large(log, h, &e, &mut budget, now) {
                            continue;
                        }
                        if self.index.remove_if_at(h, &e) {
                            self.ram.remove(h);
                            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                            drops.push(score);
                        }
                        continue;
                    }
                    let rec = NewRecord {
                        kind: Kind::Object,
                        flags: 0,
                        key_hash: h,
                        key: &head.key,
                        meta: &meta_bytes,
                        table: &[],
                        inline: &data,
                        body_len: head.header.body_len,
                        written_at: now,
                        expires_at: head.header.expires_at,
                    };
                    if keep && rec.len() <= budget && log.fits(rec.len(), self.seg_size) {
                        budget -= rec.len();
                        let (slot, off) = log.push(&rec);
                        let new = Entry {
                            slot,
                            offset: off,
                            size_class: index::size_class(rec.len()),
                            flags: 0,
                            expiry_hours: e.expiry_hours,
                        };
                        if self.index.replace_if_at(h, &e, new) {
                            log.pending.push((h, new));
                            self.counters.reappended.fetch_add(1, Ordering::Relaxed);
                        }
                    } else if self.index.remove_if_at(h, &e) {
                        self.ram.remove(h);
                        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        drops.push(score);
                    }
                }
                Kind::Chunk => {
                    if large_done.contains(&h) {
                        continue;
                    }
                    let Some(e) = self.index.get(h) else { continue };
                    if !e.has(Entry::LARGE) {
                        continue;
                    }
                    // Is this chunk part of the object the index points at?
                    let Some(owner) = self.resolve_chunk_owner(log, &e, victim, offset) else {
                        continue;
                    };
                    large_done.insert(h);
                    let score = admission::score(self.sketch.estimate(h), owner.stored_len);
                    let worth = e.has(Entry::REFERENCED) || (bar > 0 && score > bar);
                    if (keep_all || worth)
                        && !e.expired(now)
                        && self.reappend_large(log, h, &e, &mut budget, now)
                    {
                        continue;
                    }
                    if self.index.remove_if_at(h, &e) {
                        self.ram.remove(h);
                        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        drops.push(score);
                    }
                }
                Kind::Tombstone => {}
            }
        }
        if !keep_all {
            self.threshold.record_drops(&mut drops);
            self.sketch.set_objects(self.index.len() as u64);
        }
        if log.buf.len() >= self.opts.write_buffer {
            self.flush_log(log);
        }
        self.free_slot(victim);
    }

    /// If the large object `e` points at has a chunk at (`slot`, `offset`), what it is.
    fn resolve_chunk_owner(
        &self,
        log: &Log,
        e: &Entry,
        slot: u32,
        offset: u64,
    ) -> Option<ChunkOwner> {
        let (mut head, _) = self
            .read_head_with(Some(log), e.slot, e.offset, index::class_len(e.size_class))
            .ok()?;
        if head.header.kind == Kind::Meta {
            let r = *head.table.first()?;
            head = self
                .read_head_with(Some(log), r.slot, r.offset as u64, FIRST_READ)
                .ok()?
                .0;
        }
        head.table
            .iter()
            .any(|r| r.slot == slot && r.offset as u64 == offset)
            .then(|| ChunkOwner {
                stored_len: head.header.record_len() + head.header.body_len,
            })
    }

    /// Re-appends large object `e` (hash `h`) whole: every chunk (verified against its crc)
    /// and then a new `Object` record with the current metadata and a table pointing at the
    /// copies, if all of it fits `budget` and the active segment. The index then points at
    /// the copy. False (nothing changed in the index) if it could not.
    fn reappend_large(&self, log: &mut Log, h: u64, e: &Entry, budget: &mut u64, now: u64) -> bool {
        let Ok((head, _)) = self.read_head_with(
            Some(&*log),
            e.slot,
            e.offset,
            index::class_len(e.size_class),
        ) else {
            return false;
        };
        let body = if head.header.kind == Kind::Meta {
            let Some(r) = head.table.first().copied() else {
                return false;
            };
            if self.gen_lo(r.slot) != Some(r.len) {
                return false;
            }
            match self.read_head_with(Some(&*log), r.slot, r.offset as u64, FIRST_READ) {
                Ok((b, _)) => b,
                Err(_) => return false,
            }
        } else {
            head.clone()
        };
        if body.header.kind != Kind::Object
            || body.header.flags & FLAG_CHUNKED == 0
            || body.key != head.key
        {
            return false;
        }
        let chunk_len = |len: u32| record::HEADER_LEN as u64 + record::align(len as u64);
        let mut table = body.table.clone();
        let head_len = NewRecord {
            kind: Kind::Object,
            flags: FLAG_CHUNKED,
            key_hash: h,
            key: &head.key,
            meta: &head.meta,
            table: &table,
            inline: &[],
            body_len: body.header.body_len,
            written_at: now,
            expires_at: head.header.expires_at,
        }
        .len();
        let total: u64 = table.iter().map(|r| chunk_len(r.len)).sum::<u64>() + head_len;
        if total > *budget || !log.fits(total, self.seg_size) {
            return false;
        }
        // Read and verify every chunk before writing anything.
        let mut datas = Vec::with_capacity(table.len());
        for r in &table {
            let data = match self.read_with(
                Some(&*log),
                r.slot,
                r.offset as u64 + record::HEADER_LEN as u64,
                r.len as u64,
            ) {
                Ok(d) if d.len() == r.len as usize && crc32fast::hash(&d) == r.crc => d,
                _ => return false,
            };
            datas.push(data);
        }
        for (r, data) in table.iter_mut().zip(&datas) {
            let rec = NewRecord {
                kind: Kind::Chunk,
                flags: 0,
                key_hash: h,
                key: &[],
                meta: &[],
                table: &[],
                inline: data,
                body_len: data.len() as u64,
                written_at: now,
                expires_at: u64::MAX,
            };
            let (slot, off) = log.push(&rec);
            r.slot = slot;
            r.offset = off as u32;
        }
        let head_rec = NewRecord {
            kind: Kind::Object,
            flags: FLAG_CHUNKED,
            key_hash: h,
            key: &head.key,
            meta: &head.meta,
            table: &table,
            inline: &[],
            body_len: body.header.body_len,
            written_at: now,
            expires_at: head.header.expires_at,
        };
        let len = head_rec.len();
        let (slot, off) = log.push(&head_rec);
        *budget -= total;
        let new = Entry {
            slot,
            offset: off,
            size_class: index::size_class(len),
            flags: Entry::LARGE,
            expiry_hours: e.expiry_hours,
        };
        if self.index.replace_if_at(h, e, new) {
            log.pending.push((h, new));
            self.counters.reappended.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    pub(crate) fn checkpoint(&self) -> Result<(), StoreError> {
        if !self.ready_flag.load(Ordering::Acquire) {
            return Ok(());
        }
        // One checkpoint at a time: the store's thread and the server both take them, and
        // two writers of `index.ckpt.tmp` would rename each other's file away.
        let _one = self.checkpointing.lock();
        let (header, entries) = {
            let mut log = self.log.lock();
            self.flush_log(&mut log);
            let Some(a) = log.active.as_ref() else {
                return Ok(());
            };
            if let Some(s) = self.slot(a.slot) {
                s.file.sync_data()?;
            }
            let slot_gens = {
                let slots = self.slots.read();
                (0..self.nslots as usize)
                    .map(|i| {
                        slots[i]
                            .as_ref()
                            .map_or(0, |s| s.gen.load(Ordering::Acquire))
                    })
                    .collect()
            };
            let header = CheckpointHeader {
                created_at: now_ms(),
                active_slot: a.slot,
                active_gen: a.gen,
                active_offset: log.buf_start,
                segment_size: self.seg_size,
                slot_gens,
            };
            let mut entries = Vec::with_capacity(self.index.len() * 16 + 1024);
            self.index.dump(&mut entries);
            (header, entries)
        };
        Checkpoint::write(&self.dir, &header, &entries)?;
        if let Err(e) = admission::save(&self.dir, &self.sketch, &self.threshold) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot save the admission sketch");
        }
        Ok(())
    }

    fn compact(
        &self,
        max_fill: f64,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<u64, StoreError> {
        let usage = self.segment_usage();
        let active = self.log.lock().active.as_ref().map(|a| a.slot);
        let victims: Vec<&SegmentUsage> = usage
            .iter()
            .filter(|u| {
                Some(u.slot) != active && (u.live_bytes as f64) <= max_fill * self.seg_size as f64
            })
            .collect();
        let total = victims.len() as u64;
        let mut reclaimed = 0;
        for (i, u) in victims.iter().enumerate() {
            progress(i as u64, total);
            let mut log = self.log.lock();
            let room = log
                .active
                .as_ref()
                .is_some_and(|a| a.pos + u.live_bytes <= self.seg_size);
            if !room {
                self.roll(&mut log, self.opts.reappend_budget)?;
            }
            if self
                .slot(u.slot)
                .is_some_and(|s| s.gen.load(Ordering::Acquire) == u.generation)
            {
                self.reclaim(&mut log, u.slot, true, 1.0);
                reclaimed += u.file_bytes.saturating_sub(u.live_bytes);
            }
        }
        progress(total, total);
        let mut log = self.log.lock();
        self.flush_log(&mut log);
        Ok(reclaimed)
    }

    fn segment_usage(&self) -> Vec<SegmentUsage> {
        let mut usage: Vec<SegmentUsage> = {
            let slots = self.slots.read();
            (0..self.nslots)
                .filter_map(|i| {
                    let s = slots[i as usize].as_ref()?;
                    let g = s.gen.load(Ordering::Acquire);
                    (g != 0).then(|| SegmentUsage {
                        slot: i,
                        generation: g,
                        file_bytes: s.flushed.load(Ordering::Acquire),
                        ..Default::default()
                    })
                })
                .collect()
        };
        let mut entries = Vec::new();
        self.index.for_each(|_, e| entries.push(e));
        for e in entries {
            let Ok((head, _)) = self.read_head(e.slot, e.offset, index::class_len(e.size_class))
            else {
                continue;
            };
            let mut add = |slot: u32, bytes: u64, objects: u64| {
                if let Some(u) = usage.iter_mut().find(|u| u.slot == slot) {
                    u.live_bytes += bytes;
                    u.live_objects += objects;
                }
            };
            add(e.slot, head.header.record_len(), 1);
            let mut body_head = head.clone();
            if head.header.kind == Kind::Meta {
                if let Some(r) = head.table.first() {
                    if let Ok((bh, _)) = self.read_head(r.slot, r.offset as u64, FIRST_READ) {
                        add(r.slot, bh.header.record_len(), 0);
                        body_head = bh;
                    }
                }
            }
            if body_head.header.flags & FLAG_CHUNKED != 0 {
                for r in &body_head.table {
                    add(
                        r.slot,
                        record::align(r.len as u64) + record::HEADER_LEN as u64,
                        0,
                    );
                }
            }
        }
        usage.sort_by_key(|u| u.generation);
        usage
    }
}

impl Store for DiskStore {
    fn get(&self, key: &str) -> Option<Object> {
        self.inner.get(key)
    }

    fn is_ready(&self) -> bool {
        DiskStore::is_ready(self)
    }

    fn close(&self) {
        DiskStore::close(self)
    }

    fn put(&self, meta: ObjectMeta) -> Result<Box<dyn ObjectWriter>, StoreError> {
        let inner = &self.inner;
        inner.writable()?;
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Refused("the store is closed"));
        }
        let h = index::key_hash(meta.key.as_bytes());
        let limit = inner.max_object();
        if meta.body_len != u64::MAX && meta.body_len > limit {
            return Err(StoreError::TooLarge {
                size: meta.body_len,
                limit,
            });
        }
        if meta.body_len != u64::MAX && !inner.admits(h, &meta, meta.body_len) {
            return Err(StoreError::Refused(NOT_ADMITTED));
        }
        if let Some(big) = inner.opts.large_admission {
            if meta.body_len != u64::MAX && meta.body_len >= big && !inner.doorkeeper.admits(h) {
                inner
                    .counters
                    .refused_admission
                    .fetch_add(1, Ordering::Relaxed);
                return Err(StoreError::Refused(
                    "large object not admitted on its first miss",
                ));
            }
        }
        Ok(Box::new(DiskWriter {
            inner: inner.clone(),
            key_hash: h,
            meta,
            buf: Vec::new(),
            chunks: Vec::new(),
            total: 0,
        }))
    }

    fn update_meta(&self, meta: ObjectMeta) -> Result<bool, StoreError> {
        let inner = &self.inner;
        if !self.is_ready() {
            return Ok(false);
        }
        let h = index::key_hash(meta.key.as_bytes());
        let mut log = inner.log.lock();
        let Some(e) = inner.index.get(h) else {
            return Ok(false);
        };
        let (head, _) = match inner.read_head_with(
            Some(&*log),
            e.slot,
            e.offset,
            index::class_len(e.size_class),
        ) {
            Ok(x) => x,
            Err(_) => return Ok(false),
        };
        if head.key[..] != *meta.key.as_bytes() {
            return Ok(false);
        }
        let (body_slot, body_off, chunked, body_len) = match head.header.kind {
            Kind::Object => (
                e.slot,
                e.offset,
                head.header.flags & FLAG_CHUNKED != 0,
                head.header.body_len,
            ),
            Kind::Meta => match head.table.first() {
                Some(r) => (
                    r.slot,
                    r.offset as u64,
                    head.header.flags & FLAG_CHUNKED != 0,
                    head.header.body_len,
                ),
                None => return Ok(false),
            },
            _ => return Ok(false),
        };
        let Some(gen_lo) = inner.gen_lo(body_slot) else {
            return Ok(false);
        };
        let mut meta = meta;
        meta.body_len = body_len;
        let enc = meta.encode();
        let table = [Ref {
            slot: body_slot,
            offset: body_off as u32,
            len: gen_lo,
            crc: 0,
        }];
        let flags = if chunked { FLAG_CHUNKED } else { 0 };
        let rec = NewRecord {
            kind: Kind::Meta,
            flags,
            key_hash: h,
            key: meta.key.as_bytes(),
            meta: &enc,
            table: &table,
            inline: &[],
            body_len,
            written_at: now_ms(),
            expires_at: meta.expires_at(),
        };
        let mut iflags = Entry::INDIRECT | (e.flags & Entry::REFERENCED);
        if chunked {
            iflags |= Entry::LARGE;
        }
        inner.append(&mut log, &rec, Some((iflags, false)))?;
        // The body did not change: a RAM copy stays, with the new metadata.
        inner.ram.update_meta(h, Arc::new(meta));
        Ok(true)
    }

    fn remove(&self, key: &str) -> bool {
        let inner = &self.inner;
        if !self.is_ready() {
            inner.wait_ready(Duration::from_secs(60));
        }
        let h = index::key_hash(key.as_bytes());
        let mut log = inner.log.lock();
        let Some(e) = inner.index.get(h) else {
            return false;
        };
        match inner.read_head_with(
            Some(&*log),
            e.slot,
            e.offset,
            index::class_len(e.size_class),
        ) {
            Ok((head, _)) if head.key[..] != *key.as_bytes() => return false,
            _ => {}
        }
        inner.index.remove(h);
        inner.ram.remove(h);
        let rec = NewRecord {
            kind: Kind::Tombstone,
            flags: 0,
            key_hash: h,
            key: key.as_bytes(),
            meta: &[],
            table: &[],
            inline: &[],
            body_len: 0,
            written_at: now_ms(),
            expires_at: u64::MAX,
        };
        if let Err(err) = inner.append(&mut log, &rec, None) {
            tracing::warn!(key, error = %err, "could not log a removal; it may come back after a crash");
        }
        true
    }

    fn scan(&self, f: &mut dyn FnMut(&ObjectMeta)) {
        let mut entries = Vec::new();
        self.inner.index.for_each(|h, e| entries.push((h, e)));
        for (_, e) in entries {
            let Ok((head, _)) =
                self.inner
                    .read_head(e.slot, e.offset, index::class_len(e.size_class))
            else {
                continue;
            };
            let key = String::from_utf8_lossy(&head.key).into_owned();
            if let Ok(m) = ObjectMeta::decode(key, &head.meta) {
                f(&m);
            }
        }
    }

    fn stats(&self) -> StoreStats {
        let inner = &self.inner;
        // Lock order is `log`, then `slots` (as `roll` and `checkpoint` take them): never
        // hold `slots` while waiting for `log`.
        let buffered = inner.log.lock().buf.len() as u64;
        let bytes = {
            let slots = inner.slots.read();
            slots
                .iter()
                .flatten()
                .filter(|s| s.gen.load(Ordering::Acquire) != 0)
                .map(|s| s.flushed.load(Ordering::Acquire))
                .sum::<u64>()
                + buffered
        };

        StoreStats {
            objects: inner.index.len() as u64,
            bytes,
            index_memory_bytes: inner.index.memory_bytes(),
            memory_bytes: inner.ram.memory_bytes(),
            degraded: inner.degraded.load(Ordering::Acquire),
        }
    }

    fn checkpoint(&self) -> Result<(), StoreError> {
        self.inner.checkpoint()
    }
}

const NOT_ADMITTED: &str =
    "the store is full and the object is asked for less often (per byte) than what it evicts";

/// Roughly the bytes of a record holding `meta` and a body of `body_len` bytes (the
/// metadata encoding's size is estimated from the header lengths).
fn record_len_estimate(meta: &ObjectMeta, body_len: u64) -> u64 {
    let headers: usize = meta
        .headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 6)
        .sum();
    let head = record::HEADER_LEN + meta.key.len() + 67 + headers;
    record::align(head as u64) + record::align(body_len)
}

impl Inner {
    /// The admission rule once the store is full (see [`DiskOptions::admit_when_full`]):
    /// counts a refusal.
    fn admits(&self, h: u64, meta: &ObjectMeta, body_len: u64) -> bool {
        if !self.opts.admit_when_full || !self.full.load(Ordering::Relaxed) {
            return true;
        }
        let bar = self.threshold.get();
        if bar == 0 || self.index.get(h).is_some() {
            return true;
        }
        let score = admission::score(self.sketch.estimate(h), record_len_estimate(meta, body_len));
        if score >= bar {
            return true;
        }
        self.counters
            .refused_admission
            .fetch_add(1, Ordering::Relaxed);
        false
    }

    /// The largest body stored: an eighth of the budget, so that an object's chunks are not
    /// reclaimed while it is being written.
    fn max_object(&self) -> u64 {
        (self.seg_size * self.nslots as u64) / 8
    }
}

/// Writes one object: small bodies are buffered (at most one chunk) and written as one
/// record at `finish`; larger ones are written chunk by chunk as they arrive.
struct DiskWriter {
    inner: Arc<Inner>,
    key_hash: u64,
    meta: ObjectMeta,
    buf: Vec<u8>,
    /// Chunks written so far, with the generation of their segment.
    chunks: Vec<(Ref, u64)>,
    total: u64,
}

impl DiskWriter {
    fn write_chunk(&mut self) -> Result<(), StoreError> {
        let n = (self.inner.opts.chunk_size as usize).min(self.buf.len());
        let data = &self.buf[..n];
        let rec = NewRecord {
            kind: Kind::Chunk,
            flags: 0,
            key_hash: self.key_hash,
            key: &[],
            meta: &[],
            table: &[],
            inline: data,
            body_len: n as u64,
            written_at: now_ms(),
            expires_at: u64::MAX,
        };
        let crc = crc32fast::hash(data);
        let mut log = self.inner.log.lock();
        let (slot, offset, _) = self.inner.append(&mut log, &rec, None)?;
        let gen = log.active.as_ref().map_or(0, |a| a.gen);
        drop(log);
        self.chunks.push((
            Ref {
                slot,
                offset: offset as u32,
                len: n as u32,
                crc,
            },
            gen,
        ));
        self.buf.drain(..n);
        Ok(())
    }
}

impl ObjectWriter for DiskWriter {
    fn write(&mut self, chunk: &Bytes) -> Result<(), StoreError> {
        self.total += chunk.len() as u64;
        let limit = self.inner.max_object();
        if self.total > limit {
            return Err(StoreError::TooLarge {
                size: self.total,
                limit,
            });
        }
        if let Some(big) = self.inner.opts.large_admission {
            if self.meta.body_len == u64::MAX
                && self.total >= big
                && self.total - chunk.len() as u64 <= big
                && !self.inner.doorkeeper.admits(self.key_hash)
            {
                self.inner
                    .counters
                    .refused_admission
                    .fetch_add(1, Ordering::Relaxed);
                return Err(StoreError::Refused(
                    "large object not admitted on its first miss",
                ));
            }
        }
        let cs = self.inner.opts.chunk_size as usize;
        self.buf.extend_from_slice(chunk);
        // A full chunk is written only once more data follows, so a body of exactly one
        // chunk stays inline.
        while self.buf.len() > cs {
            self.write_chunk()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), StoreError> {
        if self.meta.body_len != u64::MAX && self.meta.body_len != self.total {
            return Err(StoreError::Refused(
                "body length differs from the announced length",
            ));
        }
        if self.meta.body_len == u64::MAX
            && !self.inner.admits(self.key_hash, &self.meta, self.total)
        {
            return Err(StoreError::Refused(NOT_ADMITTED));
        }
        self.meta.body_len = self.total;
        let chunked = !self.chunks.is_empty();
        if chunked {
            while !self.buf.is_empty() {
                self.write_chunk()?;
            }
        }
        let enc = self.meta.encode();
        let inner = self.inner.clone();
        let mut log = inner.log.lock();
        for (r, gen) in &self.chunks {
            if inner.slot(r.slot).map(|s| s.gen.load(Ordering::Acquire)) != Some(*gen) {
                return Err(StoreError::Refused(
                    "part of the object was evicted while it was written",
                ));
            }
        }
        let table: Vec<Ref> = self.chunks.iter().map(|(r, _)| *r).collect();
        let rec = NewRecord {
            kind: Kind::Object,
            flags: if chunked { FLAG_CHUNKED } else { 0 },
            key_hash: self.key_hash,
            key: self.meta.key.as_bytes(),
            meta: &enc,
            table: &table,
            inline: if chunked { &[] } else { &self.buf },
            body_len: self.total,
            written_at: now_ms(),
            expires_at: self.meta.expires_at(),
        };
        let flags = if chunked { Entry::LARGE } else { 0 };
        inner.append(&mut log, &rec, Some((flags, true)))?;
        Ok(())
    }
}
