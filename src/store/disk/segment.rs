//! Segment files: fixed-size, append-only files of records, one per *slot* of the disk
//! budget (`seg-00007.dat`). Each time a slot is reused it gets a new, larger *generation*,
//! written in the segment header; generations order segments from oldest to newest.
//!
//! This module owns the segment header layout and the sequential scanner that recovery,
//! eviction and the tools use. It never decides what a record means for the index.

use super::record::{self, Head, RecordError, HEADER_LEN};
use bytes::Bytes;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const SEGMENT_MAGIC: [u8; 8] = *b"STRSEG01";
pub const SEGMENT_VERSION: u32 = 1;
/// Records start after the segment header.
pub const SEGMENT_HEADER_LEN: u64 = 64;

/// The header at the start of every segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub slot: u32,
    pub generation: u64,
    /// The segment's capacity in bytes (header included).
    pub size: u64,
    pub created_at: u64,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN as usize] {
        let mut b = [0u8; SEGMENT_HEADER_LEN as usize];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.slot.to_le_bytes());
        b[16..24].copy_from_slice(&self.generation.to_le_bytes());
        b[24..32].copy_from_slice(&self.size.to_le_bytes());
        b[32..40].copy_from_slice(&self.created_at.to_le_bytes());
        let crc = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn parse(b: &[u8]) -> Result<SegmentHeader, String> {
        if b.len() < SEGMENT_HEADER_LEN as usize {
            return Err("segment header truncated".into());
        }
        if b[0..8] != SEGMENT_MAGIC {
            return Err("not a strata segment (bad magic)".into());
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        if crc32fast::hash(&b[..60]) != u32_at(60) {
            return Err("segment header checksum mismatch".into());
        }
        let version = u32_at(8);
        if version != SEGMENT_VERSION {
            return Err(format!("unknown segment version {version}"));
        }
        Ok(SegmentHeader {
            slot: u32_at(12),
            generation: u64_at(16),
            size: u64_at(24),
            created_at: u64_at(32),
        })
    }

    /// Reads the header of an open segment file.
    pub fn read(file: &File) -> Result<SegmentHeader, String> {
        let mut b = [0u8; SEGMENT_HEADER_LEN as usize];
        file.read_exact_at(&mut b, 0).map_err(|e| e.to_string())?;
        SegmentHeader::parse(&b)
    }
}

/// The file name of a slot's segment.
pub fn file_name(slot: u32) -> String {
    format!("seg-{slot:05}.dat")
}

pub fn path(dir: &Path, slot: u32) -> PathBuf {
    dir.join(file_name(slot))
}

/// Parses a segment file name back into its slot.
pub fn parse_file_name(name: &str) -> Option<u32> {
    name.strip_prefix("seg-")?
        .strip_suffix(".dat")?
        .parse()
        .ok()
}

/// Reads `len` bytes at `offset`, or fewer at the end of the file.
pub fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(Bytes::from(buf))
}

/// Appends up to `len` bytes read at `offset` to `buf` (fewer at the end of the file), with
/// no intermediate buffer.
fn read_append(file: &File, offset: u64, buf: &mut Vec<u8>, len: usize) -> io::Result<()> {
    let start = buf.len();
    buf.resize(start + len, 0);
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[start + got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(start);
                return Err(e);
            }
        }
    }
    buf.truncate(start + got);
    Ok(())
}

/// One step of a scan.
#[derive(Debug)]
pub enum ScanItem {
    /// An intact record (head and inline data verified). `data` is the inline data.
    Record {
        offset: u64,
        head: Head,
        data: Bytes,
    },
    /// Bytes that are not an intact record: a flipped bit, a torn write, garbage.
    Bad {
        offset: u64,
        len: u64,
        error: RecordError,
    },
}

/// One step of a [`Scanner::next_fast`] scan: no copies, just what recovery needs.
#[derive(Debug)]
pub enum FastItem {
    Record {
        offset: u64,
        header: record::Header,
        /// The first table entry (a `Meta` record's body reference).
        first_ref: Option<record::Ref>,
    },
    Bad {
        offset: u64,
        len: u64,
        error: RecordError,
    },
}

/// Reads the records of a segment sequentially in large reads, verifying every checksum.
/// A record whose head is intact but whose data fails is skipped by its length; bytes that
/// are not a record head are skipped to the next aligned position that holds one.
pub struct Scanner<'a> {
    file: &'a File,
    /// File offset of `buf[0]`.
    base: u64,
    buf: Bytes,
    pos: u64,
    end: u64,
    done: bool,
}

const SCAN_READ: usize = 8 << 20;

impl<'a> Scanner<'a> {
    /// Scans from `start` (a record boundary) to `end` (the file's length, or less).
    pub fn new(file: &'a File, start: u64, end: u64) -> Scanner<'a> {
        Scanner {
            file,
            base: start,
            buf: Bytes::new(),
            pos: start,
            end,
            done: false,
        }
    }

    /// The offset just after the last intact record returned, or where a scan stopped.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Makes `buf` hold `[pos, pos+n)` if the file has it; returns the bytes held from `pos`.
    fn fill(&mut self, n: usize) -> io::Result<usize> {
        let have_from = (self.pos - self.base) as usize;
        let have = self.buf.len().saturating_sub(have_from);
        let avail = (self.end - self.pos) as usize;
        if have >= n || have >= avail {
            return Ok(have.min(avail));
        }
        let want = n.max(SCAN_READ).min(avail);
        let mut v = Vec::with_capacity(want);
        v.extend_from_slice(&self.buf[have_from.min(self.buf.len())..]);
        let len = v.len();
        read_append(self.file, self.pos + len as u64, &mut v, want - len)?;
        self.base = self.pos;
        self.buf = Bytes::from(v);
        Ok(self.buf.len().min(avail))
    }

    /// The next record, verified in place (no copy, no allocation): the recovery path.
    pub fn next_fast(&mut self) -> Option<FastItem> {
        if self.done {
            return None;
        }
        let mut bad_start: Option<(u64, RecordError)> = None;
        loop {
            if self.pos + HEADER_LEN as u64 > self.end {
                self.done = true;
                let tail = bad_start.or_else(|| {
                    (self.pos < self.end).then(|| {
                        (
                            self.pos,
                            RecordError::Truncated {
                                need: HEADER_LEN,
                                have: (self.end - self.pos) as usize,
                            },
                        )
                    })
                });
                return tail.map(|(offset, error)| FastItem::Bad {
                    offset,
                    len: self.end - offset,
                    error,
                });
            }
            let have = match self.fill(HEADER_LEN) {
                Ok(h) => h,
                Err(_) => {
                    self.done = true;
                    return None;
                }
            };
            let s = (self.pos - self.base) as usize;
            let result =
                record::Header::parse(&self.buf[s..s + have.min(HEADER_LEN)]).and_then(|h| {
                    let len = h.record_len();
                    if self.pos + len > self.end {
                        return Err(RecordError::Truncated {
                            need: len as usize,
                            have: (self.end - self.pos) as usize,
                        });
                    }
                    let got = self
                        .fill(len as usize)
                        .map_err(|_| RecordError::BadLength)?;
                    let s = (self.pos - self.base) as usize;
                    match record::verify(&self.buf[s..s + got.min(len as usize)]) {
                        Ok((header, first_ref)) => Ok(Ok((header, first_ref, len))),
                        Err(RecordError::DataCrc) => Ok(Err(len)),
                        Err(e) => Err(e),
                    }
                });
            match result {
                Ok(found) => {
                    if let Some((offset, error)) = bad_start {
                        return Some(FastItem::Bad {
                            offset,
                            len: self.pos - offset,
                            error,
                        });
                    }
                    let offset = self.pos;
                    return Some(match found {
                        Ok((header, first_ref, len)) => {
                            self.pos += len;
                            FastItem::Record {
                                offset,
                                header,
                                first_ref,
                            }
                        }
                        Err(len) => {
                            self.pos += len;
                            FastItem::Bad {
                                offset,
                                len,
                                error: RecordError::DataCrc,
                            }
                        }
                    });
                }
                Err(e) => {
                    if bad_start.is_none() {
                        bad_start = Some((self.pos, e));
                    }
                    self.pos += record::ALIGN;
                }
            }
        }
    }

    fn window(&self, n: usize) -> Bytes {
        let s = (self.pos - self.base) as usize;
        self.buf.slice(s..s + n)
    }
}

impl Iterator for Scanner<'_> {
    type Item = ScanItem;

    fn next(&mut self) -> Option<ScanItem> {
        if self.done {
            return None;
        }
        let mut bad_start: Option<(u64, RecordError)> = None;
        loop {
            if self.pos + HEADER_LEN as u64 > self.end {
                self.done = true;
                return bad_start
                    .map(|(offset, error)| ScanItem::Bad {
                        offset,
                        len: self.end - offset,
                        error,
                    })
                    .or_else(|| {
                        (self.pos < self.end).then(|| ScanItem::Bad {
                            offset: self.pos,
                            len: self.end - self.pos,
                            error: RecordError::Truncated {
                                need: HEADER_LEN,
                                have: (self.end - self.pos) as usize,
                            },
                        })
                    });
            }
            let have = match self.fill(HEADER_LEN) {
                Ok(h) => h,
                Err(_) => {
                    self.done = true;
                    return None;
                }
            };
            let w = self.window(have.min(HEADER_LEN));
            let parsed = record::Header::parse(&w).and_then(|h| {
                let len = h.record_len();
                if self.pos + len > self.end {
                    return Err(RecordError::Truncated {
                        need: len as usize,
                        have: (self.end - self.pos) as usize,
                    });
                }
                let got = self
                    .fill(len as usize)
                    .map_err(|_| RecordError::BadLength)?;
                let b = self.window(got.min(len as usize));
                let head = Head::parse(&b)?;
                let data = head.inline_data(&b);
                Ok((head, data, len))
            });
            match parsed {
                Ok((head, data, len)) => {
                    if let Some((offset, error)) = bad_start {
                        // Report the garbage before this record first; the record is found
                        // again on the next call.
                        return Some(ScanItem::Bad {
                            offset,
                            len: self.pos - offset,
                            error,
                        });
                    }
                    let offset = self.pos;
                    self.pos += len;
                    return Some(match data {
                        Ok(data) => ScanItem::Record { offset, head, data },
                        Err(error) => ScanItem::Bad { offset, len, error },
                    });
                }
                Err(e) => {
                    if bad_start.is_none() {
                        bad_start = Some((self.pos, e));
                    }
                    self.pos += record::ALIGN;
                }
            }
        }
    }
}
