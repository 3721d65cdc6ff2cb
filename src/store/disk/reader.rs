//! Body readers for objects whose body is not in memory: they read a segment with `pread`
//! and verify every byte against the record's checksums before returning it, a chunk at a
//! time, so a Range read of a large object touches only the chunks it needs.
//!
//! A reader must never return bytes it has not verified: a failed check is an I/O error
//! (`InvalidData`), which the proxy turns into an aborted response, never a wrong one.

use super::index::Entry;
use super::record::{Head, Kind, Ref};
use super::Inner;
use bytes::Bytes;
use parking_lot::Mutex;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn slice(data: &Bytes, base: u64, offset: u64, max: usize) -> Bytes {
    let start = (offset - base) as usize;
    let end = (start + max).min(data.len());
    data.slice(start.min(end)..end)
}

/// The inline body of a record too large to have been read with its head (≤ one chunk).
pub struct InlineReader {
    inner: Arc<Inner>,
    slot: u32,
    gen: u64,
    data_offset: u64,
    len: u64,
    crc: u32,
    data: Mutex<Option<Bytes>>,
}

impl InlineReader {
    pub(crate) fn new(
        inner: Arc<Inner>,
        slot: u32,
        gen: u64,
        data_offset: u64,
        len: u64,
        crc: u32,
    ) -> InlineReader {
        InlineReader {
            inner,
            slot,
            gen,
            data_offset,
            len,
            crc,
            data: Mutex::new(None),
        }
    }

    /// Reads the whole body and checks its crc (once; later calls reuse it).
    pub(crate) fn load(&self) -> io::Result<Bytes> {
        let mut cached = self.data.lock();
        if let Some(d) = cached.as_ref() {
            return Ok(d.clone());
        }
        let d = self.inner.read(self.slot, self.data_offset, self.len)?;
        let same_gen = self
            .inner
            .slot(self.slot)
            .is_some_and(|s| s.gen.load(Ordering::Acquire) == self.gen);
        if d.len() as u64 != self.len || !same_gen || crc32fast::hash(&d) != self.crc {
            return Err(invalid(
                "stored body failed its checksum (evicted or corrupt)",
            ));
        }
        *cached = Some(d.clone());
        Ok(d)
    }
}

impl crate::store::BodyReader for InlineReader {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, max: usize) -> io::Result<Bytes> {
        if offset >= self.len {
            return Ok(Bytes::new());
        }
        let d = self.load()?;
        Ok(slice(&d, 0, offset, max))
    }
}

/// A large body stored as chunk records; reads one chunk per call and keeps the last one.
pub struct ChunkedReader {
    inner: Arc<Inner>,
    key_hash: u64,
    /// The index entry the object was found by: dropped if a chunk turns out bad.
    entry: Entry,
    table: Vec<Ref>,
    /// Start offset of each chunk in the body.
    starts: Vec<u64>,
    len: u64,
    last: Mutex<Option<(usize, Bytes)>>,
}

impl ChunkedReader {
    pub(crate) fn new(
        inner: Arc<Inner>,
        key_hash: u64,
        entry: Entry,
        table: Vec<Ref>,
        len: u64,
    ) -> ChunkedReader {
        let mut starts = Vec::with_capacity(table.len());
        let mut at = 0u64;
        for r in &table {
            starts.push(at);
            at += r.len as u64;
        }
        ChunkedReader {
            inner,
            key_hash,
            entry,
            table,
            starts,
            len: at.min(len),
            last: Mutex::new(None),
        }
    }

    fn chunk(&self, i: usize) -> io::Result<Bytes> {
        let r = self.read_chunk(i);
        if r.is_err() && self.inner.index.remove_if_at(self.key_hash, &self.entry) {
            self.inner
                .counters
                .bad_records
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                key_hash = self.key_hash,
                chunk = i,
                "dropping an object with a bad chunk"
            );
        }
        r
    }

    fn read_chunk(&self, i: usize) -> io::Result<Bytes> {
        if let Some((j, b)) = self.last.lock().as_ref() {
            if *j == i {
                return Ok(b.clone());
            }
        }
        let r = self.table[i];
        let need = super::record::align(super::record::HEADER_LEN as u64) + r.len as u64;
        let b = self.inner.read(r.slot, r.offset as u64, need)?;
        let head = Head::parse(&b).map_err(|e| invalid(&format!("chunk record: {e}")))?;
        if head.header.kind != Kind::Chunk || head.header.key_hash != self.key_hash {
            return Err(invalid("chunk record belongs to another object (evicted)"));
        }
        let data = head
            .inline_data(&b)
            .map_err(|e| invalid(&format!("chunk record: {e}")))?;
        if data.len() != r.len as usize || crc32fast::hash(&data) != r.crc {
            return Err(invalid("chunk failed its checksum"));
        }
        *self.last.lock() = Some((i, data.clone()));
        Ok(data)
    }
}

impl crate::store::BodyReader for ChunkedReader {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, max: usize) -> io::Result<Bytes> {
        if offset >= self.len {
            return Ok(Bytes::new());
        }
        let i = self
            .starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1);
        let data = self.chunk(i)?;
        Ok(slice(&data, self.starts[i], offset, max))
    }
}
