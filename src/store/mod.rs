//! The seam between the proxy and where bytes live.
//!
//! The proxy sees a [`Store`]: a map from a cache key (a string) to an [`Object`] — the
//! stored response's metadata ([`ObjectMeta`]) and a [`Body`]. It never learns whether the
//! body is in RAM or in a segment on disk. Bodies go in through an [`ObjectWriter`] chunk by
//! chunk, so a store may write a large object while it is still arriving; an object becomes
//! visible to `get` only once its writer has finished.
//!
//! A store never interprets HTTP: freshness, variants and invalidation rules are the
//! proxy's. It must never return a body that differs from what was written.

pub mod memory;
pub mod meta;

pub use memory::MemoryStore;
pub use meta::{MetaFlags, ObjectMeta};

use bytes::Bytes;
use std::io;
use std::sync::Arc;

/// A stored response.
#[derive(Clone)]
pub struct Object {
    pub meta: Arc<ObjectMeta>,
    pub body: Body,
}

/// Where a stored body is read from.
#[derive(Clone)]
pub enum Body {
    /// The whole body in memory.
    Memory(Bytes),
    /// A body read piece by piece (e.g. from a segment file).
    Reader(Arc<dyn BodyReader>),
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Memory(b) => b.len() as u64,
            Body::Reader(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads a stored body that is not (all) in memory. Implementations must verify what they
/// read and fail rather than return bytes that differ from those written.
#[allow(clippy::len_without_is_empty)]
pub trait BodyReader: Send + Sync {
    fn len(&self) -> u64;
    /// Reads up to `max` bytes at `offset`. May block on I/O: callers on the async runtime
    /// run it where blocking is allowed.
    fn read_at(&self, offset: u64, max: usize) -> io::Result<Bytes>;
    /// A hint: true when reads are served from memory and need not be moved off the runtime.
    fn is_cheap(&self) -> bool {
        false
    }
}

/// Receives a body being stored. Dropping a writer without `finish` abandons the object.
pub trait ObjectWriter: Send {
    fn write(&mut self, chunk: &Bytes) -> Result<(), StoreError>;
    /// Makes the object visible to `get`, replacing any object under the same key.
    fn finish(self: Box<Self>) -> Result<(), StoreError>;
}

/// What a store reports about itself (for metrics and `strata-tools inspect`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub objects: u64,
    pub bytes: u64,
    pub index_memory_bytes: u64,
    /// Bytes of bodies held in RAM.
    pub memory_bytes: u64,
    /// True while the store refuses new objects (e.g. the disk is full).
    pub degraded: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object of {size} bytes is larger than the store allows ({limit} bytes)")]
    TooLarge { size: u64, limit: u64 },
    #[error("the store refused the object: {0}")]
    Refused(&'static str),
    #[error("store I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
}

/// A cache store. All methods are cheap enough to call on the async runtime except
/// `BodyReader::read_at` on non-memory bodies.
pub trait Store: Send + Sync + 'static {
    /// The object stored under `key`, if any and intact.
    fn get(&self, key: &str) -> Option<Object>;
    /// Begins storing an object. `meta.key` is the key; `meta.body_len` is the expected
    /// length when known (`u64::MAX` when not).
    fn put(&self, meta: ObjectMeta) -> Result<Box<dyn ObjectWriter>, StoreError>;
    /// Replaces the metadata of a stored object without touching its body (a 304 refresh,
    /// a soft purge). Returns false when no object is stored under the key.
    fn update_meta(&self, meta: ObjectMeta) -> Result<bool, StoreError>;
    /// Removes an object. Returns whether one was stored.
    fn remove(&self, key: &str) -> bool;
    /// Calls `f` with the metadata of every stored object (for purges and invalidations that
    /// must find objects by something other than their key). May be slow; never on the
    /// request path.
    fn scan(&self, f: &mut dyn FnMut(&ObjectMeta));
    fn stats(&self) -> StoreStats;
    /// Writes whatever the store needs to come back warm (index checkpoint). Called
    /// periodically and at shutdown.
    fn checkpoint(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Whether the index is loaded and the store serves (what `/readyz` reports). A store
    /// that recovers in the background says false until it is done.
    fn is_ready(&self) -> bool {
        true
    }
}

/// Reads a whole body into memory (small bodies, tests and tools).
pub fn read_all(body: &Body) -> io::Result<Bytes> {
    match body {
        Body::Memory(b) => Ok(b.clone()),
        Body::Reader(r) => {
            let mut out = bytes::BytesMut::with_capacity(r.len() as usize);
            let mut off = 0;
            while off < r.len() {
                let chunk = r.read_at(off, (r.len() - off).min(1 << 20) as usize)?;
                if chunk.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "stored body is shorter than its length",
                    ));
                }
                off += chunk.len() as u64;
                out.extend_from_slice(&chunk);
            }
            Ok(out.freeze())
        }
    }
}
