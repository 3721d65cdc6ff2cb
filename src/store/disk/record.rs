//! Records: the one place the byte layout of a record in a segment is defined
//! (`docs/store-format.md` describes the same layout for readers in other languages).
//!
//! A record is self-describing: a 64-byte header (magic, version, kind, key hash, lengths,
//! times, checksums), then the full cache key, the encoded [`ObjectMeta`], a table of
//! references, and inline body data. Two crc32 checksums protect it: `head_crc` over the
//! header and everything up to the inline data, and `data_crc` over the inline data, so a
//! reader can trust the metadata without reading a large body, and verify a body chunk by
//! chunk.
//!
//! This module only encodes and decodes bytes; it never does I/O and never trusts a length
//! it has not bounds-checked.
//!
//! [`ObjectMeta`]: crate::store::meta::ObjectMeta

use bytes::{BufMut, Bytes, BytesMut};

/// `b"SREC"` read as a little-endian u32.
pub const MAGIC: u32 = u32::from_le_bytes(*b"SREC");
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 64;
/// Records start at multiples of this within a segment.
pub const ALIGN: u64 = 8;
/// One table entry is 16 bytes.
pub const REF_LEN: usize = 16;
/// The largest key + metadata a record may carry.
pub const MAX_HEAD: usize = 1 << 20;

/// Record flag: the object's body is stored in `Chunk` records (set on `Object` records with
/// a chunk table, and on `Meta` records that refer to one).
pub const FLAG_CHUNKED: u16 = 1;

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A complete object: key, metadata and either inline body data (small objects) or a
    /// table of [`Kind::Chunk`] records (large objects).
    Object = 1,
    /// A piece of a large object's body, written before its `Object` record.
    Chunk = 2,
    /// New metadata for an object whose body is in an earlier `Object` record (a 304
    /// refresh): the table holds one reference to that record.
    Meta = 3,
    /// The object under this key was removed.
    Tombstone = 4,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Object,
            2 => Kind::Chunk,
            3 => Kind::Meta,
            4 => Kind::Tombstone,
            _ => return None,
        })
    }
}

/// A 16-byte reference from a record to another place in the store: a chunk of a large
/// body (`slot`, `offset` of the chunk record, `len` of its data, `crc` of its data) or, in
/// a `Meta` record, the `Object` record holding the body (`len` = low 32 bits of the
/// target segment's generation, `crc` = 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ref {
    pub slot: u32,
    pub offset: u32,
    pub len: u32,
    pub crc: u32,
}

/// The fixed part of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub flags: u16,
    pub key_hash: u64,
    pub key_len: u32,
    pub meta_len: u32,
    pub table_len: u32,
    pub inline_len: u32,
    /// Length of the object's whole body (for `Chunk`: of this chunk's data).
    pub body_len: u64,
    pub written_at: u64,
    pub expires_at: u64,
    pub data_crc: u32,
    pub head_crc: u32,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("not a record (bad magic)")]
    BadMagic,
    #[error("unknown record version {0}")]
    BadVersion(u8),
    #[error("unknown record kind {0}")]
    BadKind(u8),
    #[error("record header checksum mismatch")]
    HeadCrc,
    #[error("record data checksum mismatch")]
    DataCrc,
    #[error("record lengths are implausible")]
    BadLength,
    #[error("record is truncated (need {need} bytes, have {have})")]
    Truncated { need: usize, have: usize },
}

pub fn align(n: u64) -> u64 {
    n.div_ceil(ALIGN) * ALIGN
}

impl Header {
    /// Bytes from the record start to the end of the table (`head_crc` covers these and the
    /// padding up to [`data_offset`](Self::data_offset), except the crc field itself).
    pub fn head_len(&self) -> usize {
        HEADER_LEN
            + self.key_len as usize
            + self.meta_len as usize
            + self.table_len as usize * REF_LEN
    }
    /// Offset of inline data from the record start.
    pub fn data_offset(&self) -> u64 {
        align(self.head_len() as u64)
    }
    /// The whole record's length on disk, padding included.
    pub fn record_len(&self) -> u64 {
        self.data_offset() + align(self.inline_len as u64)
    }

    fn encode_into(&self, b: &mut [u8]) {
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4] = VERSION;
        b[5] = self.kind as u8;
        b[6..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..16].copy_from_slice(&self.key_hash.to_le_bytes());
        b[16..20].copy_from_slice(&self.key_len.to_le_bytes());
        b[20..24].copy_from_slice(&self.meta_len.to_le_bytes());
        b[24..28].copy_from_slice(&self.table_len.to_le_bytes());
        b[28..32].copy_from_slice(&self.inline_len.to_le_bytes());
        b[32..40].copy_from_slice(&self.body_len.to_le_bytes());
        b[40..48].copy_from_slice(&self.written_at.to_le_bytes());
        b[48..56].copy_from_slice(&self.expires_at.to_le_bytes());
        b[56..60].copy_from_slice(&self.data_crc.to_le_bytes());
        b[60..64].copy_from_slice(&self.head_crc.to_le_bytes());
    }

    /// Parses a header without checking its crc (which needs the rest of the head).
    pub fn parse(b: &[u8]) -> Result<Header, RecordError> {
        if b.len() < HEADER_LEN {
            return Err(RecordError::Truncated {
                need: HEADER_LEN,
                have: b.len(),
            });
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        if u32_at(0) != MAGIC {
            return Err(RecordError::BadMagic);
        }
        if b[4] != VERSION {
            return Err(RecordError::BadVersion(b[4]));
        }
        let kind = Kind::from_u8(b[5]).ok_or(RecordError::BadKind(b[5]))?;
        let h = Header {
            kind,
            flags: u16::from_le_bytes([b[6], b[7]]),
            key_hash: u64_at(8),
            key_len: u32_at(16),
            meta_len: u32_at(20),
            table_len: u32_at(24),
            inline_len: u32_at(28),
            body_len: u64_at(32),
            written_at: u64_at(40),
            expires_at: u64_at(48),
            data_crc: u32_at(56),
            head_crc: u32_at(60),
        };
        if h.key_len as usize + h.meta_len as usize > MAX_HEAD || h.table_len > (1 << 24) {
            return Err(RecordError::BadLength);
        }
        Ok(h)
    }
}

/// A record parsed from bytes that hold at least its head (header, key, meta, table).
#[derive(Debug, Clone)]
pub struct Head {
    pub header: Header,
    pub key: Bytes,
    pub meta: Bytes,
    pub table: Vec<Ref>,
}

impl Head {
    /// Parses and verifies the head of a record at the start of `b`. Fails with
    /// `Truncated` (saying how many bytes are needed) when `b` is too short.
    pub fn parse(b: &Bytes) -> Result<Head, RecordError> {
        let header = Header::parse(b)?;
        let head_len = header.head_len();
        let padded = header.data_offset() as usize;
        if b.len() < padded {
            return Err(RecordError::Truncated {
                need: padded,
                have: b.len(),
            });
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&b[..60]);
        hasher.update(&b[HEADER_LEN..padded]);
        if hasher.finalize() != header.head_crc {
            return Err(RecordError::HeadCrc);
        }
        let k0 = HEADER_LEN;
        let m0 = k0 + header.key_len as usize;
        let t0 = m0 + header.meta_len as usize;
        let table = b[t0..head_len]
            .chunks_exact(REF_LEN)
            .map(|c| {
                let u = |i: usize| u32::from_le_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
                Ref {
                    slot: u(0),
                    offset: u(4),
                    len: u(8),
                    crc: u(12),
                }
            })
            .collect();
        Ok(Head {
            header,
            key: b.slice(k0..m0),
            meta: b.slice(m0..t0),
            table,
        })
    }

    /// The inline data of a record whose bytes `b` hold it entirely, verified.
    pub fn inline_data(&self, b: &Bytes) -> Result<Bytes, RecordError> {
        let start = self.header.data_offset() as usize;
        let end = start + self.header.inline_len as usize;
        if b.len() < end {
            return Err(RecordError::Truncated {
                need: end,
                have: b.len(),
            });
        }
        let data = b.slice(start..end);
        if crc32fast::hash(&data) != self.header.data_crc {
            return Err(RecordError::DataCrc);
        }
        Ok(data)
    }
}

/// Verifies a whole record held in `b` without copying it: both checksums. Returns the
/// header and the first table entry (a `Meta` record's body reference). A `DataCrc` error
/// means the head is intact, so the record can be skipped by its length.
pub fn verify(b: &[u8]) -> Result<(Header, Option<Ref>), RecordError> {
    let h = Header::parse(b)?;
    let doff = h.data_offset() as usize;
    let dend = doff + h.inline_len as usize;
    if b.len() < dend {
        return Err(RecordError::Truncated {
            need: dend,
            have: b.len(),
        });
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&b[..60]);
    hasher.update(&b[HEADER_LEN..doff]);
    if hasher.finalize() != h.head_crc {
        return Err(RecordError::HeadCrc);
    }
    if crc32fast::hash(&b[doff..dend]) != h.data_crc {
        return Err(RecordError::DataCrc);
    }
    let first = (h.table_len > 0).then(|| {
        let t = HEADER_LEN + h.key_len as usize + h.meta_len as usize;
        let u = |i: usize| u32::from_le_bytes([b[t + i], b[t + i + 1], b[t + i + 2], b[t + i + 3]]);
        Ref {
            slot: u(0),
            offset: u(4),
            len: u(8),
            crc: u(12),
        }
    });
    Ok((h, first))
}

/// What to write: everything but the checksums and lengths, which `encode` derives.
pub struct NewRecord<'a> {
    pub kind: Kind,
    /// Record flags ([`FLAG_CHUNKED`]).
    pub flags: u16,
    pub key_hash: u64,
    pub key: &'a [u8],
    pub meta: &'a [u8],
    pub table: &'a [Ref],
    pub inline: &'a [u8],
    pub body_len: u64,
    pub written_at: u64,
    pub expires_at: u64,
}

impl NewRecord<'_> {
    /// The record's length on disk.
    #[allow(clippy::len_without_is_empty)] // a record is never empty
    pub fn len(&self) -> u64 {
        self.header(0, 0).record_len()
    }

    fn header(&self, data_crc: u32, head_crc: u32) -> Header {
        Header {
            kind: self.kind,
            flags: self.flags,
            key_hash: self.key_hash,
            key_len: self.key.len() as u32,
            meta_len: self.meta.len() as u32,
            table_len: self.table.len() as u32,
            inline_len: self.inline.len() as u32,
            body_len: self.body_len,
            written_at: self.written_at,
            expires_at: self.expires_at,
            data_crc,
            head_crc,
        }
    }

    /// Appends the encoded record (padded to [`ALIGN`]) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let data_crc = crc32fast::hash(self.inline);
        let h = self.header(data_crc, 0);
        out.resize(start + HEADER_LEN, 0);
        h.encode_into(&mut out[start..start + HEADER_LEN]);
        out.extend_from_slice(self.key);
        out.extend_from_slice(self.meta);
        for r in self.table {
            let mut e = BytesMut::with_capacity(REF_LEN);
            e.put_u32_le(r.slot);
            e.put_u32_le(r.offset);
            e.put_u32_le(r.len);
            e.put_u32_le(r.crc);
            out.extend_from_slice(&e);
        }
        out.resize(start + h.data_offset() as usize, 0);
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&out[start..start + 60]);
        hasher.update(&out[start + HEADER_LEN..]);
        let head_crc = hasher.finalize();
        out[start + 60..start + 64].copy_from_slice(&head_crc.to_le_bytes());
        out.extend_from_slice(self.inline);
        out.resize(start + h.record_len() as usize, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(out: &mut Vec<u8>) {
        NewRecord {
            kind: Kind::Object,
            flags: 0,
            key_hash: 42,
            key: b"GET http://a/b",
            meta: b"meta!",
            table: &[Ref {
                slot: 1,
                offset: 2,
                len: 3,
                crc: 4,
            }],
            inline: b"hello body",
            body_len: 10,
            written_at: 7,
            expires_at: u64::MAX,
        }
        .encode(out);
    }

    #[test]
    fn round_trip_and_every_flip_is_caught() {
        let mut v = Vec::new();
        sample(&mut v);
        assert_eq!(v.len() % 8, 0);
        let b = Bytes::from(v.clone());
        let head = Head::parse(&b).unwrap();
        assert_eq!(&head.key[..], b"GET http://a/b");
        assert_eq!(&head.meta[..], b"meta!");
        assert_eq!(head.table[0].crc, 4);
        assert_eq!(&head.inline_data(&b).unwrap()[..], b"hello body");
        assert_eq!(head.header.record_len(), v.len() as u64);
        let data_end = (head.header.data_offset() + head.header.inline_len as u64) as usize;
        for i in 0..data_end {
            for bit in [0x01u8, 0x80] {
                let mut w = v.clone();
                w[i] ^= bit;
                let b = Bytes::from(w);
                let ok = Head::parse(&b).and_then(|h| h.inline_data(&b).map(|_| h));
                assert!(ok.is_err(), "flip at {i} not detected");
            }
        }
        for cut in 0..data_end {
            let b = Bytes::from(v[..cut].to_vec());
            let ok = Head::parse(&b).and_then(|h| h.inline_data(&b).map(|_| h));
            assert!(ok.is_err(), "cut at {cut} not detected");
        }
    }
}
