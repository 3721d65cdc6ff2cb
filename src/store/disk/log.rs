//! The log: the active segment and its write buffer. Records are encoded into the buffer
//! and written to the file in large sequential writes when it fills, on a timer, at a
//! segment's end and at a checkpoint. Until then readers find them in the buffer.
//!
//! The log only appends; it never decides what to evict or index.

use super::index::Entry;
use super::record::NewRecord;
use bytes::Bytes;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The segment being appended to.
pub(crate) struct Active {
    pub slot: u32,
    pub gen: u64,
    /// Where the next record goes.
    pub pos: u64,
}

pub(crate) struct Log {
    pub active: Option<Active>,
    /// Encoded records not yet in the file; `buf[0]` belongs at `buf_start`.
    pub buf: Vec<u8>,
    pub buf_start: u64,
    /// Index entries that point into `buf`: taken out of the index if the write fails.
    pub pending: Vec<(u64, Entry)>,
    pub next_gen: u64,
}

impl Log {
    pub fn new(next_gen: u64, cap: usize) -> Log {
        Log {
            active: None,
            buf: Vec::with_capacity(cap.min(16 << 20)),
            buf_start: 0,
            pending: Vec::new(),
            next_gen,
        }
    }

    pub fn start(&mut self, slot: u32, gen: u64, pos: u64) {
        self.active = Some(Active { slot, gen, pos });
        self.buf.clear();
        self.buf_start = pos;
        self.pending.clear();
    }

    /// Whether a record of `len` bytes fits in the active segment.
    pub fn fits(&self, len: u64, seg_size: u64) -> bool {
        self.active
            .as_ref()
            .is_some_and(|a| a.pos + len <= seg_size)
    }

    /// Encodes `rec` at the end of the active segment. The caller has checked it fits.
    pub fn push(&mut self, rec: &NewRecord) -> (u32, u64) {
        let a = self
            .active
            .as_mut()
            .expect("push without an active segment");
        let at = a.pos;
        let before = self.buf.len();
        rec.encode(&mut self.buf);
        a.pos += (self.buf.len() - before) as u64;
        (a.slot, at)
    }

    /// Bytes `[offset, offset+len)` of the active segment if `slot` is active (the part
    /// already written is read from `file`), clipped to what has been appended.
    pub fn read_buffered(
        &self,
        slot: u32,
        offset: u64,
        len: u64,
        file: &File,
    ) -> Option<io::Result<Bytes>> {
        let a = self.active.as_ref()?;
        if a.slot != slot {
            return None;
        }
        let end = (offset + len).min(a.pos);
        if end <= offset {
            return Some(Ok(Bytes::new()));
        }
        let mut out = Vec::with_capacity((end - offset) as usize);
        if offset < self.buf_start {
            let upto = end.min(self.buf_start);
            match super::segment::read_at(file, offset, (upto - offset) as usize) {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => return Some(Err(e)),
            }
            if (out.len() as u64) < upto - offset {
                return Some(Ok(Bytes::from(out)));
            }
        }
        if end > self.buf_start {
            let from = (offset.max(self.buf_start) - self.buf_start) as usize;
            let to = (end - self.buf_start) as usize;
            out.extend_from_slice(&self.buf[from..to]);
        }
        Some(Ok(Bytes::from(out)))
    }
}

pub(crate) fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    file.write_all_at(buf, offset)
}
