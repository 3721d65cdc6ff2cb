//! Admission of large objects: a large object is stored only once its key has missed at
//! least twice recently, so one-hit wonders do not flush the disk. Two 2^20-bit sets record
//! "missed once" and "missed twice" by key hash; both are cleared every 2^19 misses so the
//! memory stays fixed (256 KiB) and old history ages out. False positives only admit an
//! object that could have been refused. Never consulted for small objects.

use std::sync::atomic::{AtomicU64, Ordering};

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
}
