//! A bounded in-memory store: whole bodies in RAM, evicted by CLOCK (second chance) when the
//! byte budget is reached. It serves alone in tests and `--cache-size` quick setups without
//! a disk, and is the RAM tier in front of the disk store.

use super::{Body, Object, ObjectMeta, ObjectWriter, Store, StoreError, StoreStats};
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const SHARDS: usize = 16;

struct Entry {
    object: Object,
    referenced: AtomicBool,
    cost: u64,
}

#[derive(Default)]
struct Shard {
    map: HashMap<String, Entry>,
    /// CLOCK hand order: keys in insertion order; stale keys are skipped.
    clock: VecDeque<String>,
    bytes: u64,
}

/// A bounded in-memory store. Cloning it gives another handle on the same store.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Vec<Mutex<Shard>>,
    shard_budget: u64,
    max_object: u64,
}

impl MemoryStore {
    pub fn new(budget_bytes: u64) -> MemoryStore {
        let shard_budget = (budget_bytes / SHARDS as u64).max(1);
        MemoryStore {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
                shard_budget,
                // One object may take at most a quarter of a shard, so that a few large
                // objects cannot flush everything else.
                max_object: (shard_budget / 4).max(1),
            }),
        }
    }

    /// The largest object this store accepts, in bytes.
    pub fn max_object(&self) -> u64 {
        self.inner.max_object
    }
}

impl Inner {
    fn shard(&self, key: &str) -> &Mutex<Shard> {
        let h = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
        &self.shards[(h % SHARDS as u64) as usize]
    }

    fn cost(meta: &ObjectMeta, body_len: u64) -> u64 {
        let headers: usize = meta
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 16)
            .sum();
        body_len + meta.key.len() as u64 + headers as u64 + 128
    }

    fn insert(&self, meta: ObjectMeta, body: Bytes) -> Result<(), StoreError> {
        let cost = Self::cost(&meta, body.len() as u64);
        if cost > self.max_object {
            return Err(StoreError::TooLarge {
                size: cost,
                limit: self.max_object,
            });
        }
        let key = meta.key.clone();
        let mut shard = self.shard(&key).lock();
        if let Some(old) = shard.map.remove(&key) {
            shard.bytes -= old.cost;
        }
        while shard.bytes + cost > self.shard_budget {
            if !evict_one(&mut shard) {
                break;
            }
        }
        shard.bytes += cost;
        shard.clock.push_back(key.clone());
        shard.map.insert(
            key,
            Entry {
                object: Object {
                    meta: Arc::new(meta),
                    body: Body::Memory(body),
                },
                referenced: AtomicBool::new(false),
                cost,
            },
        );
        Ok(())
    }
}

/// Advances the CLOCK hand until one entry is evicted. Returns false if the shard is empty.
fn evict_one(shard: &mut Shard) -> bool {
    while let Some(key) = shard.clock.pop_front() {
        let Some(entry) = shard.map.remove(&key) else {
            continue;
        };
        if entry.referenced.swap(false, Ordering::Relaxed) {
            // Second chance: back in the map, to the end of the clock.
            shard.map.insert(key.clone(), entry);
            shard.clock.push_back(key);
            continue;
        }
        shard.bytes -= entry.cost;
        return true;
    }
    false
}

impl Store for MemoryStore {
    fn get(&self, key: &str) -> Option<Object> {
        let shard = self.inner.shard(key).lock();
        let e = shard.map.get(key)?;
        e.referenced.store(true, Ordering::Relaxed);
        Some(e.object.clone())
    }

    fn put(&self, meta: ObjectMeta) -> Result<Box<dyn ObjectWriter>, StoreError> {
        if meta.body_len != u64::MAX && meta.body_len > self.inner.max_object {
            return Err(StoreError::TooLarge {
                size: meta.body_len,
                limit: self.inner.max_object,
            });
        }
        let cap = if meta.body_len == u64::MAX {
            0
        } else {
            meta.body_len as usize
        };
        Ok(Box::new(MemoryWriter {
            store: self.inner.clone(),
            meta,
            buf: BytesMut::with_capacity(cap.min(1 << 20)),
        }))
    }

    fn update_meta(&self, meta: ObjectMeta) -> Result<bool, StoreError> {
        let mut shard = self.inner.shard(&meta.key).lock();
        let Some(e) = shard.map.get_mut(&meta.key) else {
            return Ok(false);
        };
        let body = e.object.body.clone();
        e.object = Object {
            meta: Arc::new(meta),
            body,
        };
        Ok(true)
    }

    fn remove(&self, key: &str) -> bool {
        let mut shard = self.inner.shard(key).lock();
        match shard.map.remove(key) {
            Some(e) => {
                shard.bytes -= e.cost;
                true
            }
            None => false,
        }
    }

    fn scan(&self, f: &mut dyn FnMut(&ObjectMeta)) {
        for s in &self.inner.shards {
            let metas: Vec<Arc<ObjectMeta>> = s
                .lock()
                .map
                .values()
                .map(|e| e.object.meta.clone())
                .collect();
            for m in metas {
                f(&m);
            }
        }
    }

    fn stats(&self) -> StoreStats {
        let mut st = StoreStats::default();
        for s in &self.inner.shards {
            let s = s.lock();
            st.objects += s.map.len() as u64;
            st.bytes += s.bytes;
            st.index_memory_bytes +=
                (s.map.capacity() * (std::mem::size_of::<(String, Entry)>() + 8)) as u64
                    + s.map.keys().map(|k| k.len() as u64).sum::<u64>();
        }
        st.memory_bytes = st.bytes;
        st
    }
}

/// Collects a body, then inserts it on `finish`.
struct MemoryWriter {
    store: Arc<Inner>,
    meta: ObjectMeta,
    buf: BytesMut,
}

impl ObjectWriter for MemoryWriter {
    fn write(&mut self, chunk: &Bytes) -> Result<(), StoreError> {
        let size = (self.buf.len() + chunk.len()) as u64;
        if size > self.store.max_object {
            return Err(StoreError::TooLarge {
                size,
                limit: self.store.max_object,
            });
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), StoreError> {
        let mut meta = self.meta;
        meta.body_len = self.buf.len() as u64;
        self.store.insert(meta, self.buf.freeze())
    }
}
