//! The hot index: a map from the 64-bit xxh3 hash of a cache key to where the object's
//! record is, in 13 bytes per entry.
//!
//! The table is split into 256 shards by the hash's top byte. An entry is a 40-bit tag (the
//! next 40 bits of the hash, so 48 bits of the hash are kept in all) and one packed word
//! ([`Entry`]): segment slot (14 bits), offset in 8-byte units (24 bits), a size class of the
//! record (6 bits), flags (3 bits: indirect, large, referenced) and the expiry in hours since
//! 2020 (17 bits). Each shard is an open-addressing table of 8-entry buckets (104 bytes: the
//! eight tags, then the eight words) probed linearly, which grows by 1.2× when it is 93% full,
//! so memory follows the number of objects (about 15 B per object on average) with no sizing
//! up front and no long pause to rehash everything at once.
//!
//! The index never holds the key: two keys whose hashes agree on the 48 bits kept share an
//! entry, so one can only make the other unreachable (the reader checks the full key on
//! disk), never serve the wrong one. It never does I/O.

use parking_lot::Mutex;

pub const SHARDS: usize = 256;
const BUCKET: usize = 8;
/// Bytes per bucket: eight 5-byte tags, then eight 8-byte packed entries.
const BUCKET_BYTES: usize = BUCKET * 13;
const TAG_BITS: u32 = 40;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
const EMPTY: u64 = 0;
const TOMB: u64 = 1;
/// A shard grows when live and deleted entries fill this share of it (per mille)…
const MAX_LOAD: usize = 930;
/// …by this factor (per mille), and bulk loads reserve at this fill.
const GROWTH: usize = 1200;
const RESERVE_LOAD: usize = 850;

/// In a batch of changes: remove the key. No packed entry is 0, since records start after
/// the 64-byte segment header.
pub const REMOVE: u64 = 0;

/// The largest segment the offset field can address.
pub const MAX_SEGMENT_SIZE: u64 = 1 << 27;
/// The number of slots the slot field can address.
pub const MAX_SLOTS: u32 = 1 << 14;

const EPOCH_2020_MS: u64 = 1_577_836_800_000;
const HOUR_MS: u64 = 3_600_000;
const EXPIRY_NEVER: u32 = (1 << 17) - 1;

/// Maps a key hash to one the table can store (0 and 1 mark empty and deleted entries).
pub fn table_hash(h: u64) -> u64 {
    if h < 2 {
        h + 2
    } else {
        h
    }
}

/// The 40-bit tag the index keeps of a hash (0 and 1 mark empty and deleted entries).
fn tag(h: u64) -> u64 {
    let t = (h >> 16) & TAG_MASK;
    if t < 2 {
        t + 2
    } else {
        t
    }
}

/// The hash as the index keeps it: the shard byte and the tag, the low 16 bits zero. Hashes
/// the index hands out ([`Index::for_each`], [`Index::dump`]) are in this form; compare a
/// record's hash with them through this function.
pub fn canonical(h: u64) -> u64 {
    (h & !(u64::MAX >> 8)) | tag(h) << 16
}

/// The xxh3 hash of a cache key, as the index and the records use it.
pub fn key_hash(key: &[u8]) -> u64 {
    table_hash(xxhash_rust::xxh3::xxh3_64(key))
}

/// Where an object is and what the index knows about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub slot: u32,
    /// Byte offset of the record in its segment (a multiple of 8).
    pub offset: u64,
    /// Size class of the record: see [`size_class`].
    pub size_class: u8,
    pub flags: u8,
    /// Hours since 2020-01-01, rounded up; [`EXPIRY_NEVER`] for never or unknown.
    pub expiry_hours: u32,
}

impl Entry {
    /// The entry points at a `Meta` record; the body is in the `Object` record it names.
    pub const INDIRECT: u8 = 1;
    /// The object is stored in chunks.
    pub const LARGE: u8 = 2;
    /// The object was read since its record was written (eviction re-appends it).
    pub const REFERENCED: u8 = 4;

    pub fn pack(&self) -> u64 {
        debug_assert!(self.slot < MAX_SLOTS && self.offset < MAX_SEGMENT_SIZE);
        (self.slot as u64 & 0x3fff)
            | ((self.offset >> 3) & 0xff_ffff) << 14
            | (self.size_class as u64 & 0x3f) << 38
            | (self.flags as u64 & 0x7) << 44
            | (self.expiry_hours as u64 & 0x1_ffff) << 47
    }

    pub fn unpack(v: u64) -> Entry {
        Entry {
            slot: (v & 0x3fff) as u32,
            offset: ((v >> 14) & 0xff_ffff) << 3,
            size_class: ((v >> 38) & 0x3f) as u8,
            flags: ((v >> 44) & 0x7) as u8,
            expiry_hours: ((v >> 47) & 0x1_ffff) as u32,
        }
    }

    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    /// The same place (slot and offset)?
    pub fn same_place(&self, other: &Entry) -> bool {
        self.slot == other.slot && self.offset == other.offset
    }

    /// Whether the object is past its expiry at `now_ms` (never true for unknown expiry).
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expiry_hours != EXPIRY_NEVER && expiry_hours(now_ms) > self.expiry_hours
    }
}

/// Hours since 2020 of a Unix-ms expiry time, rounded up (so that the index never thinks an
/// object expired before it did).
pub fn expiry_hours(ms: u64) -> u32 {
    if ms == u64::MAX {
        return EXPIRY_NEVER;
    }
    let h = ms.saturating_sub(EPOCH_2020_MS).div_ceil(HOUR_MS);
    h.min(EXPIRY_NEVER as u64 - 1) as u32
}

/// The upper bound of a size class: classes grow by ×1.5 and ×1.33 alternately (2^(c/2)).
pub fn class_len(c: u8) -> u64 {
    let c = c as u64;
    ((2 + (c & 1)) << (c >> 1)) >> 1
}

/// The smallest size class whose bound holds `len`.
pub fn size_class(len: u64) -> u8 {
    if len <= 1 {
        return 0;
    }
    let k = 64 - (len - 1).leading_zeros(); // 2^k >= len > 2^(k-1)
    let c = if class_len((2 * k - 1) as u8) >= len {
        2 * k - 1
    } else {
        2 * k
    };
    c.min(63) as u8
}

#[derive(Default)]
struct Table {
    /// `buckets` buckets of [`BUCKET_BYTES`] bytes.
    data: Vec<u8>,
    len: usize,
    tombs: usize,
}

impl Table {
    fn buckets(&self) -> usize {
        self.data.len() / BUCKET_BYTES
    }

    fn capacity(&self) -> usize {
        self.buckets() * BUCKET
    }

    fn home(&self, t: u64) -> usize {
        (((t as u32) as u64 * self.buckets() as u64) >> 32) as usize
    }

    /// The tag at entry `i`.
    fn tag_at(&self, i: usize) -> u64 {
        Self::tag_in(self.bucket(i / BUCKET), i % BUCKET)
    }

    fn set_tag(&mut self, i: usize, t: u64) {
        let at = (i / BUCKET) * BUCKET_BYTES + (i % BUCKET) * 5;
        self.data[at..at + 5].copy_from_slice(&t.to_le_bytes()[..5]);
    }

    fn value_at(&self, i: usize) -> u64 {
        let at = (i / BUCKET) * BUCKET_BYTES + BUCKET * 5 + (i % BUCKET) * 8;
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.data[at..at + 8]);
        u64::from_le_bytes(b)
    }

    fn set_value(&mut self, i: usize, v: u64) {
        let at = (i / BUCKET) * BUCKET_BYTES + BUCKET * 5 + (i % BUCKET) * 8;
        self.data[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// Bucket `b`'s bytes.
    #[inline]
    fn bucket(&self, b: usize) -> &[u8; BUCKET_BYTES] {
        &self.data.as_chunks::<BUCKET_BYTES>().0[b]
    }

    /// The tag at position `j` of a bucket (one unaligned load: the 5-byte tags are followed
    /// by the values, so 8 bytes are always there to read).
    #[inline]
    fn tag_in(bk: &[u8; BUCKET_BYTES], j: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bk[j * 5..j * 5 + 8]);
        u64::from_le_bytes(w) & TAG_MASK
    }

    /// The position of tag `t`, or None.
    fn find(&self, t: u64) -> Option<usize> {
        let nb = self.buckets();
        if nb == 0 {
            return None;
        }
        let mut b = self.home(t);
        for _ in 0..nb {
            let bk = self.bucket(b);
            for j in 0..BUCKET {
                let k = Self::tag_in(bk, j);
                if k == t {
                    return Some(b * BUCKET + j);
                }
                if k == EMPTY {
                    return None;
                }
            }
            b = if b + 1 == nb { 0 } else { b + 1 };
        }
        None
    }

    /// Inserts or replaces in one probe: the tag is looked for up to the first empty
    /// entry, remembering the first reusable (deleted) entry on the way.
    fn insert(&mut self, t: u64, v: u64) -> Option<u64> {
        if (self.len + self.tombs + 1) * 1000 > self.capacity() * MAX_LOAD {
            self.grow();
        }
        let nb = self.buckets();
        let mut b = self.home(t);
        let mut free: Option<usize> = None;
        loop {
            let bk = self.bucket(b);
            let mut found = None;
            let mut empty = None;
            for j in 0..BUCKET {
                let k = Self::tag_in(bk, j);
                if k == t {
                    found = Some(b * BUCKET + j);
                    break;
                }
                if k == TOMB && free.is_none() {
                    free = Some(b * BUCKET + j);
                }
                if k == EMPTY {
                    empty = Some(b * BUCKET + j);
                    break;
                }
            }
            if let Some(i) = found {
                let old = self.value_at(i);
                self.set_value(i, v);
                return Some(old);
            }
            if let Some(i) = empty {
                let at = match free {
                    Some(f) => {
                        self.tombs -= 1;
                        f
                    }
                    None => i,
                };
                self.set_tag(at, t);
                self.set_value(at, v);
                self.len += 1;
                return None;
            }
            b = if b + 1 == nb { 0 } else { b + 1 };
        }
    }

    fn remove_at(&mut self, i: usize) -> u64 {
        let v = self.value_at(i);
        self.set_tag(i, TOMB);
        self.set_value(i, 0);
        self.len -= 1;
        self.tombs += 1;
        v
    }

    /// Every live (tag, value), in table order.
    fn live(&self) -> impl Iterator<Item = (usize, u64, u64)> + '_ {
        (0..self.capacity()).filter_map(|i| {
            let t = self.tag_at(i);
            (t > TOMB).then(|| (i, t, self.value_at(i)))
        })
    }

    /// Makes room for `n` entries in total without growing again.
    fn reserve(&mut self, n: usize) {
        let want = (n * 1000 / RESERVE_LOAD).div_ceil(BUCKET);
        if want > self.buckets() {
            self.rebuild(want);
        }
    }

    fn rebuild(&mut self, new_nb: usize) {
        let old = std::mem::take(self);
        self.data = vec![0u8; new_nb * BUCKET_BYTES];
        for (_, t, v) in old.live() {
            self.insert(t, v);
        }
    }

    fn grow(&mut self) {
        let nb = self.buckets();
        let new_nb = if (self.len + 1) * 1000 > self.capacity() * 700 {
            (nb + 1).max(nb * GROWTH / 1000)
        } else {
            nb.max(1) // mostly tombstones: rebuild at the same size
        };
        self.rebuild(new_nb);
    }
}

/// The hot index. All methods take one shard lock for a short, bounded time.
pub struct Index {
    shards: Box<[Mutex<Table>]>,
}

impl Default for Index {
    fn default() -> Self {
        Index::new()
    }
}

impl Index {
    pub fn new() -> Index {
        Index {
            shards: (0..SHARDS).map(|_| Mutex::new(Table::default())).collect(),
        }
    }

    fn shard(&self, h: u64) -> &Mutex<Table> {
        &self.shards[(h >> 56) as usize]
    }

    pub fn get(&self, h: u64) -> Option<Entry> {
        let t = self.shard(h).lock();
        t.find(tag(h)).map(|i| Entry::unpack(t.value_at(i)))
    }

    /// Looks `h` up and marks it referenced; returns the entry as it was before.
    pub fn touch(&self, h: u64) -> Option<Entry> {
        let mut t = self.shard(h).lock();
        let i = t.find(tag(h))?;
        let v = t.value_at(i);
        t.set_value(i, v | (Entry::REFERENCED as u64) << 44);
        Some(Entry::unpack(v))
    }

    /// Inserts or replaces; returns the previous entry.
    pub fn insert(&self, h: u64, e: Entry) -> Option<Entry> {
        self.shard(h)
            .lock()
            .insert(tag(h), e.pack())
            .map(Entry::unpack)
    }

    pub fn remove(&self, h: u64) -> Option<Entry> {
        let mut t = self.shard(h).lock();
        let i = t.find(tag(h))?;
        Some(Entry::unpack(t.remove_at(i)))
    }

    /// Removes `h` only if it still points at the place `at` points at.
    pub fn remove_if_at(&self, h: u64, at: &Entry) -> bool {
        let mut t = self.shard(h).lock();
        let Some(i) = t.find(tag(h)) else {
            return false;
        };
        if Entry::unpack(t.value_at(i)).same_place(at) {
            t.remove_at(i);
            true
        } else {
            false
        }
    }

    /// Replaces `h`'s entry only if it still points at the place `at` points at.
    pub fn replace_if_at(&self, h: u64, at: &Entry, new: Entry) -> bool {
        let mut t = self.shard(h).lock();
        let Some(i) = t.find(tag(h)) else {
            return false;
        };
        if Entry::unpack(t.value_at(i)).same_place(at) {
            t.set_value(i, new.pack());
            true
        } else {
            false
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len).sum()
    }

    /// Gives back memory a bulk load reserved but did not use (tables under 60% full are
    /// rebuilt at the bulk-load fill).
    pub fn shrink_to_fit(&self) {
        for s in self.shards.iter() {
            let mut t = s.lock();
            if t.len * 10 < t.capacity() * 6 {
                let want = (t.len * 1000 / RESERVE_LOAD).div_ceil(BUCKET).max(1);
                t.rebuild(want);
            }
        }
    }

    /// Makes room for `n` more entries spread over the shards (bulk loads).
    pub fn reserve(&self, n: usize) {
        for s in self.shards.iter() {
            let mut t = s.lock();
            let want = t.len + n / SHARDS + 16;
            t.reserve(want);
        }
    }

    /// Applies a batch of changes in order: a packed entry inserts, [`REMOVE`] removes. The
    /// batch is grouped by shard first (a stable counting sort, so changes to one key keep
    /// their order), so each shard's table is visited once while it is in cache: bulk loads
    /// (checkpoint, replay) run several times faster than one insert at a time.
    /// `presorted`: the batch is already grouped by shard (a checkpoint is dumped that way).
    pub fn apply_batch(&self, batch: &mut Vec<(u64, u64)>, presorted: bool) {
        if !presorted {
            let mut counts = [0usize; SHARDS + 1];
            for &(h, _) in batch.iter() {
                counts[(h >> 56) as usize + 1] += 1;
            }
            for i in 1..=SHARDS {
                counts[i] += counts[i - 1];
            }
            let mut grouped = vec![(0u64, 0u64); batch.len()];
            for &(h, v) in batch.iter() {
                let at = &mut counts[(h >> 56) as usize];
                grouped[*at] = (h, v);
                *at += 1;
            }
            *batch = grouped;
        }
        let mut i = 0;
        while i < batch.len() {
            let shard = batch[i].0 >> 56;
            let mut t = self.shards[shard as usize].lock();
            while i < batch.len() && batch[i].0 >> 56 == shard {
                let (h, v) = batch[i];
                if v == REMOVE {
                    if let Some(j) = t.find(tag(h)) {
                        t.remove_at(j);
                    }
                } else {
                    t.insert(tag(h), v);
                }
                i += 1;
            }
        }
        batch.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of memory the index holds (tables and shard headers).
    pub fn memory_bytes(&self) -> u64 {
        let tables: usize = self.shards.iter().map(|s| s.lock().data.capacity()).sum();
        (tables + SHARDS * std::mem::size_of::<Mutex<Table>>()) as u64
    }

    /// Calls `f` with every (hash in [`canonical`] form, entry), one shard at a time (the
    /// shard is locked while `f` runs on its entries, so `f` must not call back into the
    /// index).
    pub fn for_each(&self, mut f: impl FnMut(u64, Entry)) {
        for (n, s) in self.shards.iter().enumerate() {
            let t = s.lock();
            for (_, k, v) in t.live() {
                f((n as u64) << 56 | k << 16, Entry::unpack(v));
            }
        }
    }

    /// Appends every (hash in [`canonical`] form, packed entry) to `out` as 16 little-endian
    /// bytes, grouped by shard.
    pub fn dump(&self, out: &mut Vec<u8>) {
        for (n, s) in self.shards.iter().enumerate() {
            let t = s.lock();
            out.reserve(t.len * 16);
            for (_, k, v) in t.live() {
                out.extend_from_slice(&((n as u64) << 56 | k << 16).to_le_bytes());
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }

    /// Removes every entry for which `keep` returns false (given the [`canonical`] hash).
    pub fn retain(&self, mut keep: impl FnMut(u64, Entry) -> bool) {
        for (n, s) in self.shards.iter().enumerate() {
            let mut t = s.lock();
            for i in 0..t.capacity() {
                let k = t.tag_at(i);
                if k > TOMB && !keep((n as u64) << 56 | k << 16, Entry::unpack(t.value_at(i))) {
                    t.remove_at(i);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trip() {
        let e = Entry {
            slot: MAX_SLOTS - 1,
            offset: MAX_SEGMENT_SIZE - 8,
            size_class: 63,
            flags: 7,
            expiry_hours: EXPIRY_NEVER,
        };
        assert_eq!(Entry::unpack(e.pack()), e);
        let e = Entry {
            slot: 3,
            offset: 4096,
            size_class: 20,
            flags: Entry::LARGE,
            expiry_hours: 12345,
        };
        assert_eq!(Entry::unpack(e.pack()), e);
    }

    #[test]
    fn size_classes_cover_lengths() {
        for len in (1u64..5000).chain([
            1 << 20,
            (1 << 20) + 1,
            3 << 19,
            (3 << 19) + 1,
            (1 << 27) + 1,
        ]) {
            let c = size_class(len);
            assert!(class_len(c) >= len);
            assert!(c == 0 || class_len(c - 1) < len);
            assert!(class_len(c) <= len * 3 / 2 + 1, "len {len} class {c}");
        }
    }

    #[test]
    fn insert_get_remove_many() {
        let idx = Index::new();
        let n = 200_000u64;
        let e = |i: u64| Entry {
            slot: (i % 100) as u32,
            offset: (i % 1000) * 8,
            size_class: 5,
            flags: 0,
            expiry_hours: 1,
        };
        for i in 0..n {
            assert!(idx.insert(key_hash(&i.to_le_bytes()), e(i)).is_none());
        }
        assert_eq!(idx.len(), n as usize);
        for i in 0..n {
            assert_eq!(idx.get(key_hash(&i.to_le_bytes())), Some(e(i)));
        }
        for i in (0..n).step_by(2) {
            assert!(idx.remove(key_hash(&i.to_le_bytes())).is_some());
        }
        for i in 0..n {
            assert_eq!(idx.get(key_hash(&i.to_le_bytes())).is_some(), i % 2 == 1);
        }
        // Churn through tombstones.
        for i in n..3 * n {
            idx.insert(key_hash(&i.to_le_bytes()), e(i));
            idx.remove(key_hash(&(i - 1).to_le_bytes()));
        }
        let per_object = idx.memory_bytes() as f64 / idx.len() as f64;
        assert!(per_object < 40.0, "{per_object} bytes per object");
        // What the index hands out is the canonical form of what went in.
        let mut seen = 0;
        idx.for_each(|h, _| {
            assert_eq!(canonical(h), h);
            seen += 1;
        });
        assert_eq!(seen, idx.len());
    }

    #[test]
    fn bytes_per_object_stay_under_16_as_it_grows() {
        let idx = Index::new();
        let e = Entry {
            slot: 1,
            offset: 64,
            size_class: 5,
            flags: 0,
            expiry_hours: 1,
        };
        let mut worst: f64 = 0.0;
        let mut sum = 0.0;
        let mut n = 0;
        for i in 0..1_000_000u64 {
            idx.insert(key_hash(&i.to_le_bytes()), e);
            if i >= 100_000 && i % 50_000 == 0 {
                let per = idx.memory_bytes() as f64 / idx.len() as f64;
                worst = worst.max(per);
                sum += per;
                n += 1;
            }
        }
        let mean = sum / n as f64;
        assert!(mean <= 16.0, "mean {mean} B per object");
        assert!(worst <= 17.5, "worst {worst} B per object");
    }

    #[test]
    fn canonical_hashes_find_the_same_entries() {
        let idx = Index::new();
        let e = Entry {
            slot: 2,
            offset: 128,
            size_class: 7,
            flags: Entry::LARGE,
            expiry_hours: 9,
        };
        for i in 0..10_000u64 {
            let h = key_hash(&i.to_le_bytes());
            idx.insert(h, e);
            assert_eq!(idx.get(canonical(h)), Some(e));
            assert_eq!(canonical(canonical(h)), canonical(h));
        }
        // Tags 0 and 1 mean empty and deleted: hashes with those tags are still stored.
        for h in [0u64, 1 << 16, 5 << 56] {
            idx.insert(h, e);
            assert_eq!(idx.get(h), Some(e));
            assert!(idx.remove(h).is_some());
            assert_eq!(idx.get(h), None);
        }
    }
}
