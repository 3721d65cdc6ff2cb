//! Admission: what the disk store lets in once it is full, and how it ranks what it holds.
//!
//! - [`Sketch`]: a count-min sketch (TinyLFU) of how often each key hash was asked for
//!   recently. Every access, hit or miss, is counted: 4 rows of 4-bit counters (16 per
//!   `u64`), conservative update (only the rows at the minimum are incremented), and every
//!   counter is halved once the sketch has counted `age_after` accesses (32 × the objects
//!   in the store), so old popularity fades. The estimate of a key never falls below its
//!   true recent count; collisions only overestimate.
//! - The store compares *frequency per byte* (`score`): a small object asked for as often
//!   as a large one is worth more of the budget. A new object is admitted once the store is
//!   full only if its score is at least the threshold: the median score of the objects
//!   the last few segment reclaims dropped ([`Threshold`]). Reclaim re-appends objects
//!   whose score is above the same threshold (and those read since written).
//! - [`Doorkeeper`]: large objects (64 MiB and more by default) need two misses first.
//!
//! All of it is lock-free on the request path (relaxed atomics); the sketch is saved next
//! to the index checkpoint (`sketch.bin`, see `docs/store-format.md`) so a restart keeps
//! the admission decisions it would have made.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

const BITS: usize = 1 << 20;
const WORDS: usize = BITS / 64;
const AGE_AFTER: u64 = 1 << 19;

pub struct Doorkeeper {
    once: Box<[AtomicU64]>,
    twice: Box<[AtomicU64]>,
    misses: AtomicU64,
}

impl Default for Doorkeeper {
    fn default() -> Self {
        Doorkeeper::new()
    }
}

impl Doorkeeper {
    pub fn new() -> Doorkeeper {
        Doorkeeper {
            once: (0..WORDS).map(|_| AtomicU64::new(0)).collect(),
            twice: (0..WORDS).map(|_| AtomicU64::new(0)).collect(),
            misses: AtomicU64::new(0),
        }
    }

    fn bit(h: u64) -> (usize, u64) {
        let i = (h.rotate_left(17) as usize) % BITS;
        (i / 64, 1u64 << (i % 64))
    }

    /// Records a miss of the key with hash `h`.
    pub fn record_miss(&self, h: u64) {
        if self.misses.fetch_add(1, Ordering::Relaxed) % AGE_AFTER == AGE_AFTER - 1 {
            for w in self.once.iter().chain(self.twice.iter()) {
                w.store(0, Ordering::Relaxed);
            }
        }
        let (w, m) = Self::bit(h);
        if self.once[w].fetch_or(m, Ordering::Relaxed) & m != 0 {
            self.twice[w].fetch_or(m, Ordering::Relaxed);
        }
    }

    /// Whether a large object under hash `h` may be stored.
    pub fn admits(&self, h: u64) -> bool {
        let (w, m) = Self::bit(h);
        self.twice[w].load(Ordering::Relaxed) & m != 0
    }

    pub fn memory_bytes(&self) -> u64 {
        (2 * WORDS * 8) as u64
    }
}

/// Rows of the sketch.
const ROWS: usize = 4;
/// The largest count a 4-bit counter holds.
const MAX_COUNT: u64 = 15;
/// Odd multipliers deriving one index per row from the key hash.
const SEEDS: [u64; ROWS] = [
    0x9E37_79B9_7F4A_7C15,
    0xC2B2_AE3D_27D4_EB4F,
    0x1656_67B1_9E37_79F9,
    0x27D4_EB2F_1656_67C5,
];

/// A count-min sketch of recent accesses by key hash (see the module documentation).
pub struct Sketch {
    /// `ROWS` rows of `width` 4-bit counters, 16 to a word, row after row.
    words: Box<[AtomicU64]>,
    /// Counters per row (a power of two).
    width: usize,
    /// Accesses counted since the last halving.
    adds: AtomicU64,
    /// Halve every counter after this many accesses.
    age_after: AtomicU64,
    aging: Mutex<()>,
}

impl Sketch {
    /// A sketch with `width` counters per row (rounded to a power of two, at least 1024).
    pub fn new(width: usize) -> Sketch {
        let width = width.next_power_of_two().max(1024);
        Sketch {
            words: (0..ROWS * width / 16).map(|_| AtomicU64::new(0)).collect(),
            width,
            adds: AtomicU64::new(0),
            age_after: AtomicU64::new(32 * width as u64),
            aging: Mutex::new(()),
        }
    }

    /// The width for a store of `size` bytes: one counter per 2 KiB of budget in each row,
    /// between 4 Ki and 16 Mi (at most 32 MiB of memory).
    pub fn width_for(size: u64) -> usize {
        ((size / 2048) as usize)
            .next_power_of_two()
            .clamp(1 << 12, 1 << 24)
    }

    /// Counters per row.
    pub fn width(&self) -> usize {
        self.width
    }

    fn slot(&self, row: usize, h: u64) -> (usize, u32) {
        let i = (h.wrapping_mul(SEEDS[row]) >> 32) as usize & (self.width - 1);
        let c = row * self.width + i;
        (c / 16, (c % 16) as u32 * 4)
    }

    fn counter(&self, (w, shift): (usize, u32)) -> u64 {
        (self.words[w].load(Ordering::Relaxed) >> shift) & 0xf
    }

    /// Counts one access of the key with hash `h`.
    pub fn add(&self, h: u64) {
        let slots: [(usize, u32); ROWS] = std::array::from_fn(|r| self.slot(r, h));
        let min = slots.iter().map(|&s| self.counter(s)).min().unwrap_or(0);
        if min < MAX_COUNT {
            for &(w, shift) in &slots {
                // Conservative update: only the counters at the minimum grow. A race with
                // another add can lose an increment, never overflow a counter.
                let _ = self.words[w].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    ((v >> shift) & 0xf == min).then(|| v + (1 << shift))
                });
            }
        }
        let n = self.adds.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.age_after.load(Ordering::Relaxed) {
            if let Some(_g) = self.aging.try_lock() {
                if self.adds.load(Ordering::Relaxed) >= self.age_after.load(Ordering::Relaxed) {
                    self.adds.store(0, Ordering::Relaxed);
                    self.halve();
                }
            }
        }
    }

    /// The estimated recent count of the key with hash `h` (0–15).
    pub fn estimate(&self, h: u64) -> u64 {
        (0..ROWS)
            .map(|r| self.counter(self.slot(r, h)))
            .min()
            .unwrap_or(0)
    }

    fn halve(&self) {
        for w in self.words.iter() {
            let v = w.load(Ordering::Relaxed);
            w.store((v >> 1) & 0x7777_7777_7777_7777, Ordering::Relaxed);
        }
    }

    /// Sets the aging period from the number of objects the store holds (32 × that, at
    /// least the width).
    pub fn set_objects(&self, objects: u64) {
        self.age_after
            .store((32 * objects).max(self.width as u64), Ordering::Relaxed);
    }

    pub fn memory_bytes(&self) -> u64 {
        (self.words.len() * 8) as u64
    }

    /// The counters, for saving: (accesses since the last halving, the words).
    pub fn snapshot(&self) -> (u64, Vec<u64>) {
        (
            self.adds.load(Ordering::Relaxed),
            self.words
                .iter()
                .map(|w| w.load(Ordering::Relaxed))
                .collect(),
        )
    }

    /// Restores a [`snapshot`](Self::snapshot). False (and no change) if it does not fit.
    pub fn restore(&self, adds: u64, words: &[u64]) -> bool {
        if words.len() != self.words.len() {
            return false;
        }
        for (w, &v) in self.words.iter().zip(words) {
            w.store(v, Ordering::Relaxed);
        }
        self.adds.store(adds, Ordering::Relaxed);
        true
    }
}

/// Frequency per byte, the unit of admission and retention: the sketch estimate per 4 KiB
/// of record, fixed point ×1024.
pub fn score(estimate: u64, record_len: u64) -> u64 {
    (estimate << 22) / record_len.max(64)
}

/// How many reclaims' drops the threshold remembers.
const REMEMBERED: usize = 8;

/// The admission threshold: the median, over the last [`REMEMBERED`] segment reclaims, of
/// the median score of the objects each reclaim dropped. 0 until something was dropped
/// (everything is admitted).
#[derive(Default)]
pub struct Threshold {
    value: AtomicU64,
    recent: Mutex<VecDeque<u64>>,
}

impl Threshold {
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }

    /// Records the scores of what one reclaim dropped (reordered in place).
    pub fn record_drops(&self, scores: &mut [u64]) {
        if scores.is_empty() {
            return;
        }
        let mid = scores.len() / 2;
        let (_, m, _) = scores.select_nth_unstable(mid);
        let m = *m;
        let mut recent = self.recent.lock();
        if recent.len() == REMEMBERED {
            recent.pop_front();
        }
        recent.push_back(m);
        let mut v: Vec<u64> = recent.iter().copied().collect();
        v.sort_unstable();
        self.value.store(v[v.len() / 2], Ordering::Relaxed);
    }

    /// The remembered medians, for saving.
    pub fn snapshot(&self) -> Vec<u64> {
        self.recent.lock().iter().copied().collect()
    }

    pub fn restore(&self, medians: &[u64]) {
        let mut recent = self.recent.lock();
        recent.clear();
        recent.extend(medians.iter().rev().take(REMEMBERED).rev());
        let mut v: Vec<u64> = recent.iter().copied().collect();
        v.sort_unstable();
        self.value
            .store(v.get(v.len() / 2).copied().unwrap_or(0), Ordering::Relaxed);
    }
}

/// The file beside the index checkpoint that holds the sketch and the admission bar.
pub const SKETCH_FILE: &str = "sketch.bin";
const SKETCH_MAGIC: &[u8; 8] = b"STRSKCH1";
const SKETCH_VERSION: u32 = 1;
const SKETCH_HEADER_LEN: usize = 48 + 8 * REMEMBERED;

/// Saves `sketch` and `threshold` to `dir/sketch.bin` (written beside and renamed; not
/// synced: it is a hint, and a damaged or missing file only means admission starts from an
/// empty sketch). Layout in `docs/store-format.md`.
pub fn save(dir: &Path, sketch: &Sketch, threshold: &Threshold) -> io::Result<()> {
    let (adds, words) = sketch.snapshot();
    let medians = threshold.snapshot();
    let mut b = Vec::with_capacity(SKETCH_HEADER_LEN + words.len() * 8 + 4);
    b.extend_from_slice(SKETCH_MAGIC);
    b.extend_from_slice(&SKETCH_VERSION.to_le_bytes());
    b.extend_from_slice(&(ROWS as u32).to_le_bytes());
    b.extend_from_slice(&(sketch.width as u64).to_le_bytes());
    b.extend_from_slice(&adds.to_le_bytes());
    b.extend_from_slice(&crate::time::now_ms().to_le_bytes());
    b.extend_from_slice(&(medians.len() as u32).to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    for i in 0..REMEMBERED {
        b.extend_from_slice(&medians.get(i).copied().unwrap_or(0).to_le_bytes());
    }
    debug_assert_eq!(b.len(), SKETCH_HEADER_LEN);
    for w in &words {
        b.extend_from_slice(&w.to_le_bytes());
    }
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    let tmp = dir.join(format!("{SKETCH_FILE}.tmp"));
    fs::write(&tmp, &b)?;
    fs::rename(&tmp, dir.join(SKETCH_FILE))
}

/// Loads `dir/sketch.bin` into `sketch` and `threshold` if it is there, intact and of the
/// same width. Returns whether it did.
pub fn load(dir: &Path, sketch: &Sketch, threshold: &Threshold) -> bool {
    let Ok(b) = fs::read(dir.join(SKETCH_FILE)) else {
        return false;
    };
    let n = b.len();
    if n < SKETCH_HEADER_LEN + 4 || &b[..8] != SKETCH_MAGIC {
        return false;
    }
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default());
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default());
    if u32_at(n - 4) != crc32fast::hash(&b[..n - 4])
        || u32_at(8) != SKETCH_VERSION
        || u32_at(12) != ROWS as u32
        || u64_at(16) != sketch.width as u64
        || n != SKETCH_HEADER_LEN + sketch.words.len() * 8 + 4
    {
        return false;
    }
    let adds = u64_at(24);
    let count = (u32_at(40) as usize).min(REMEMBERED);
    let medians: Vec<u64> = (0..count).map(|i| u64_at(48 + 8 * i)).collect();
    let words: Vec<u64> = b[SKETCH_HEADER_LEN..n - 4]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect();
    if !sketch.restore(adds, &words) {
        return false;
    }
    threshold.restore(&medians);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_after_two_misses() {
        let d = Doorkeeper::new();
        assert!(!d.admits(99));
        d.record_miss(99);
        assert!(!d.admits(99));
        d.record_miss(99);
        assert!(d.admits(99));
    }

    #[test]
    fn the_sketch_counts_saturates_and_ages() {
        let s = Sketch::new(1 << 12);
        let h = crate::store::disk::index::key_hash(b"k");
        assert_eq!(s.estimate(h), 0);
        for i in 1..=20 {
            s.add(h);
            assert_eq!(s.estimate(h), i.min(MAX_COUNT));
        }
        // Other keys never lower it; a crowd of them halves it once the period passes.
        s.set_objects(1);
        for i in 0..(1u64 << 12) {
            s.add(crate::store::disk::index::key_hash(&i.to_le_bytes()));
        }
        assert!(s.estimate(h) <= 9, "halved: {}", s.estimate(h));
        assert!(s.estimate(h) >= 7);
    }

    #[test]
    fn the_estimate_separates_frequent_from_rare_keys() {
        let s = Sketch::new(1 << 14);
        let key = |i: u64| crate::store::disk::index::key_hash(&i.to_le_bytes());
        for round in 0..10 {
            for i in 0..100 {
                s.add(key(i));
            }
            for i in 0..1000 {
                s.add(key(1000 + round * 1000 + i));
            }
        }
        let hot = (0..100).filter(|&i| s.estimate(key(i)) >= 10).count();
        let cold_high = (1000..11000).filter(|&i| s.estimate(key(i)) >= 3).count();
        assert_eq!(hot, 100);
        assert!(cold_high < 100, "{cold_high} one-time keys look frequent");
    }

    #[test]
    fn the_threshold_is_the_median_of_recent_drop_medians() {
        let t = Threshold::default();
        assert_eq!(t.get(), 0);
        t.record_drops(&mut [5, 1, 9]);
        assert_eq!(t.get(), 5);
        t.record_drops(&mut [7, 7]);
        t.record_drops(&mut [1]);
        assert_eq!(t.get(), 5);
        let saved = t.snapshot();
        let u = Threshold::default();
        u.restore(&saved);
        assert_eq!(u.get(), 5);
        assert!(score(2, 4096) > score(1, 4096));
        assert!(score(1, 1024) > score(1, 8192));
    }

    #[test]
    fn a_snapshot_restores() {
        let s = Sketch::new(1 << 12);
        s.add(42);
        s.add(42);
        let (adds, words) = s.snapshot();
        let t = Sketch::new(1 << 12);
        assert!(t.restore(adds, &words));
        assert_eq!(t.estimate(42), 2);
        assert!(!Sketch::new(1 << 13).restore(adds, &words));
    }

    #[test]
    fn the_sketch_file_round_trips_and_a_damaged_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sketch::new(1 << 12);
        let t = Threshold::default();
        for _ in 0..5 {
            s.add(7);
        }
        t.record_drops(&mut [300]);
        save(dir.path(), &s, &t).unwrap();
        let (s2, t2) = (Sketch::new(1 << 12), Threshold::default());
        assert!(load(dir.path(), &s2, &t2));
        assert_eq!((s2.estimate(7), t2.get()), (5, 300));
        let p = dir.path().join(SKETCH_FILE);
        let mut b = std::fs::read(&p).unwrap();
        b[100] ^= 1;
        std::fs::write(&p, &b).unwrap();
        let (s3, t3) = (Sketch::new(1 << 12), Threshold::default());
        assert!(!load(dir.path(), &s3, &t3));
        assert_eq!((s3.estimate(7), t3.get()), (0, 0));
        assert!(!load(dir.path(), &Sketch::new(1 << 13), &t3));
    }
}
