//! Opening a store: find the segments, load the checkpoint, replay the tail.
//!
//! The plan reads only segment headers and the checkpoint, so the index is serving within
//! milliseconds; the tail replay (records appended after the checkpoint, or every segment
//! when there is none) then runs while reads are served, verifying every record's
//! checksums. Records that fail are skipped, never indexed. This module never writes a
//! record; it may delete segment files beyond a shrunken budget.

use super::checkpoint::Checkpoint;
use super::index::{self, Entry};
use super::record::{Kind, FLAG_CHUNKED};
use super::segment::{self, FastItem, SegmentHeader, SEGMENT_HEADER_LEN};
use super::{DiskOptions, Inner, Slot};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

pub(crate) enum PlanError {
    Io(io::Error),
    Config(String),
}

pub(crate) struct Plan {
    pub seg_size: u64,
    pub nslots: u32,
    pub slots: Vec<Option<Arc<Slot>>>,
    pub next_gen: u64,
    pub checkpoint: Option<Checkpoint>,
    /// Segments to replay, oldest first: (slot, generation, start offset).
    pub tail: Vec<(u32, u64, u64)>,
}

/// The segment size for a budget of `size` bytes: 1/64 of it as a power of two (rounded
/// down), between 1 MiB and 128 MiB, larger if the slot count would exceed what the index
/// addresses. Fine segments make eviction fine-grained (a 128 MiB store reclaims 2 MiB at a
/// time); the chunk size of large bodies follows the segment size (at most a quarter).
pub fn derive_segment_size(size: u64) -> u64 {
    let floor = 1 << 20;
    let mut s = (size / 64)
        .next_power_of_two()
        .clamp(floor, index::MAX_SEGMENT_SIZE);
    if s > size / 64 && s > floor {
        s /= 2;
    }
    while size / s > index::MAX_SLOTS as u64 && s < index::MAX_SEGMENT_SIZE {
        s *= 2;
    }
    s
}

pub(crate) fn plan(dir: &Path, size: u64, opts: &DiskOptions) -> Result<Plan, PlanError> {
    let mut found: Vec<(u32, std::fs::File, Option<SegmentHeader>, u64)> = Vec::new();
    for ent in std::fs::read_dir(dir).map_err(PlanError::Io)? {
        let ent = ent.map_err(PlanError::Io)?;
        let name = ent.file_name();
        let Some(slot) = name.to_str().and_then(segment::parse_file_name) else {
            continue;
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(ent.path())
            .map_err(PlanError::Io)?;
        let len = file.metadata().map_err(PlanError::Io)?.len();
        let header = SegmentHeader::read(&file).ok().filter(|h| h.slot == slot);
        found.push((slot, file, header, len));
    }
    let existing_size = found.iter().filter_map(|f| f.2.map(|h| h.size)).max();
    let seg_size = match (existing_size, opts.segment_size) {
        (Some(s), _) => s,
        (None, 0) => derive_segment_size(size),
        (None, s) => s,
    };
    if !(64 << 10..=index::MAX_SEGMENT_SIZE).contains(&seg_size) {
        return Err(PlanError::Config(format!(
            "segment size {seg_size} must be between 64 KiB and {} bytes",
            index::MAX_SEGMENT_SIZE,
        )));
    }
    let nslots = size / seg_size;
    if nslots < 3 {
        return Err(PlanError::Config(format!(
            "store.size ({size} bytes) must hold at least 3 segments of {seg_size} bytes"
        )));
    }
    if nslots > index::MAX_SLOTS as u64 {
        return Err(PlanError::Config(format!(
            "store.size ({size} bytes) needs {nslots} segments of {seg_size} bytes; at most {} are supported",
            index::MAX_SLOTS
        )));
    }
    let nslots = nslots as u32;
    let mut slots: Vec<Option<Arc<Slot>>> = vec![None; nslots as usize];
    let mut max_gen = 0;
    for (slot, file, header, len) in found {
        if slot >= nslots {
            tracing::warn!(slot, "removing a segment beyond the configured store size");
            drop(file);
            let _ = std::fs::remove_file(segment::path(dir, slot));
            continue;
        }
        let gen = header.map_or(0, |h| h.generation);
        max_gen = max_gen.max(gen);
        slots[slot as usize] = Some(Arc::new(Slot {
            file,
            gen: AtomicU64::new(gen),
            flushed: AtomicU64::new(if gen == 0 { 0 } else { len.min(seg_size) }),
        }));
    }
    let checkpoint = match Checkpoint::read(dir) {
        Ok(Some(c)) if c.header.segment_size == seg_size => Some(c),
        Ok(Some(_)) => {
            tracing::warn!(dir = %dir.display(), "ignoring a checkpoint made for another segment size");
            None
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring the checkpoint; rebuilding the index from segments");
            None
        }
    };
    let gen_of = |i: u32| {
        slots[i as usize]
            .as_ref()
            .map_or(0, |s| s.gen.load(Ordering::Relaxed))
    };
    let mut segs: Vec<(u64, u32)> = (0..nslots)
        .map(|i| (gen_of(i), i))
        .filter(|&(g, _)| g != 0)
        .collect();
    segs.sort();
    let tail = match &checkpoint {
        Some(c) => segs
            .iter()
            .filter_map(|&(g, i)| {
                if g > c.header.active_gen {
                    Some((i, g, SEGMENT_HEADER_LEN))
                } else if g == c.header.active_gen && i == c.header.active_slot {
                    Some((i, g, c.header.active_offset.max(SEGMENT_HEADER_LEN)))
                } else {
                    None
                }
            })
            .collect(),
        None => segs
            .iter()
            .map(|&(g, i)| (i, g, SEGMENT_HEADER_LEN))
            .collect(),
    };
    Ok(Plan {
        seg_size,
        nslots,
        slots,
        next_gen: max_gen + 1,
        checkpoint,
        tail,
    })
}

/// Loads the checkpoint's entries whose segment is still the one they were taken in.
pub(crate) fn load_checkpoint(inner: &Inner, plan: &mut Plan) {
    let Some(c) = plan.checkpoint.take() else {
        return;
    };
    let gens: Vec<u64> = (0..inner.nslots)
        .map(|i| {
            plan.slots[i as usize]
                .as_ref()
                .map_or(0, |s| s.gen.load(Ordering::Relaxed))
        })
        .collect();
    let mut dropped = 0u64;
    inner.index.reserve(c.len());
    let mut batch = Vec::with_capacity(1 << 16);
    for (h, v) in c.iter() {
        let e = Entry::unpack(v);
        let ok = (e.slot as usize) < gens.len()
            && gens[e.slot as usize] != 0
            && c.header.slot_gens.get(e.slot as usize) == Some(&gens[e.slot as usize]);
        if ok {
            batch.push((h, v));
            if batch.len() == 1 << 16 {
                inner.index.apply_batch(&mut batch, true);
            }
        } else {
            dropped += 1;
        }
    }
    inner.index.apply_batch(&mut batch, true);
    if dropped > 0 {
        tracing::info!(
            dropped,
            "checkpoint entries whose segment was reused since were dropped"
        );
    }
}

/// Changes applied to the index at once during bulk loads.
const BATCH: usize = 1 << 20;

/// What scanning one tail segment found.
struct Scanned {
    /// Index changes in record order.
    changes: Vec<(u64, u64)>,
    records: u64,
    bad: u64,
    /// Bytes scanned.
    bytes: u64,
}

fn scan_segment(inner: &Inner, slot: u32, start: u64) -> Scanned {
    let mut out = Scanned {
        changes: Vec::new(),
        records: 0,
        bad: 0,
        bytes: 0,
    };
    let Some(s) = inner.slot(slot) else {
        return out;
    };
    let end = s.flushed.load(Ordering::Acquire);
    out.bytes = end.saturating_sub(start);
    let mut scanner = segment::Scanner::new(&s.file, start, end);
    while let Some(item) = scanner.next_fast() {
        match item {
            FastItem::Record {
                offset,
                header,
                first_ref,
            } => {
                out.records += 1;
                if let Some(op) = change(inner, slot, offset, &header, first_ref) {
                    out.changes.push(op);
                }
            }
            FastItem::Bad { .. } => out.bad += 1,
        }
    }
    out
}

/// Replays the tail into the index, then marks the store ready. Segments are scanned (read
/// and checksummed) on every core at once; their changes are applied in log order, so a
/// later record of a key always wins over an earlier one.
pub(crate) fn replay_tail(inner: &Inner, plan: &Plan) {
    let t0 = Instant::now();
    let tail: Vec<(u32, u64, u64)> = plan
        .tail
        .iter()
        .copied()
        .filter(|&(slot, gen, _)| {
            inner
                .slot(slot)
                .is_some_and(|s| s.gen.load(Ordering::Acquire) == gen)
        })
        .collect();
    let tail_bytes: u64 = tail
        .iter()
        .filter_map(|&(slot, _, start)| {
            inner
                .slot(slot)
                .map(|s| s.flushed.load(Ordering::Acquire).saturating_sub(start))
        })
        .sum();
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(tail.len())
        .max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Scanned)>(2 * workers);
    let mut records = 0u64;
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, tail) = (&next, &tail);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(slot, _, start)) = tail.get(i) else {
                    break;
                };
                if tx.send((i, scan_segment(inner, slot, start))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut waiting = std::collections::BTreeMap::new();
        let mut batch: Vec<(u64, u64)> = Vec::with_capacity(BATCH);
        let mut reserved = false;
        let mut applied = 0;
        for (i, scanned) in rx {
            waiting.insert(i, scanned);
            while let Some(sc) = waiting.remove(&applied) {
                let (slot, gen, _) = tail[applied];
                applied += 1;
                records += sc.records;
                if !reserved && sc.bytes > 0 {
                    // Room for the whole tail at the first segment's density, so that the
                    // replay does not rehash as it goes.
                    reserved = true;
                    let per_byte = sc.changes.len() as f64 / sc.bytes as f64;
                    inner
                        .index
                        .reserve((per_byte * tail_bytes as f64 * 1.05) as usize);
                }
                if sc.bad > 0 {
                    inner
                        .counters
                        .bad_records
                        .fetch_add(sc.bad, Ordering::Relaxed);
                    tracing::warn!(
                        slot,
                        gen,
                        bad = sc.bad,
                        "skipped damaged or torn records while replaying"
                    );
                }
                batch.extend_from_slice(&sc.changes);
                if batch.len() >= BATCH {
                    inner.index.apply_batch(&mut batch, false);
                }
            }
        }
        inner.index.apply_batch(&mut batch, false);
    });
    inner.index.shrink_to_fit();
    inner
        .counters
        .replayed_records
        .store(records, Ordering::Relaxed);
    inner
        .counters
        .replay_nanos
        .store(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
    inner.set_ready();
}

/// The index change a replayed record makes, if any.
fn change(
    inner: &Inner,
    slot: u32,
    offset: u64,
    h: &super::record::Header,
    first_ref: Option<super::record::Ref>,
) -> Option<(u64, u64)> {
    let chunked = h.flags & FLAG_CHUNKED != 0;
    let mut e = Entry {
        slot,
        offset,
        size_class: index::size_class(h.record_len()),
        flags: if chunked { Entry::LARGE } else { 0 },
        expiry_hours: index::expiry_hours(h.expires_at),
    };
    match h.kind {
        Kind::Object => Some((h.key_hash, e.pack())),
        Kind::Meta => {
            let r = first_ref?;
            (inner.gen_lo(r.slot) == Some(r.len)).then(|| {
                e.flags |= Entry::INDIRECT;
                (h.key_hash, e.pack())
            })
        }
        Kind::Tombstone => Some((h.key_hash, index::REMOVE)),
        Kind::Chunk => None,
    }
}
