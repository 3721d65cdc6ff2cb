//! The index checkpoint (`index.ckpt`): a flat file holding every index entry and the log
//! position they cover, so that a restart loads the index in one sequential read and
//! replays only the records written after that position.
//!
//! A checkpoint is written to `index.ckpt.tmp`, synced, and renamed over the old one, so a
//! crash leaves either the old or the new file, never a torn one; a checksum over the whole
//! file catches anything else. This module never touches segments or the live index.
//!
//! Measured choice: a plain read of the flat file (16 MB for a million objects) takes a few
//! milliseconds, so neither memmap2 nor redb is needed on this path.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

pub const CHECKPOINT_FILE: &str = "index.ckpt";
const MAGIC: [u8; 8] = *b"STRCKPT1";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 64;

/// What a checkpoint says besides its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointHeader {
    pub created_at: u64,
    /// The segment that was being appended to, its generation, and the offset up to which
    /// its records are in this checkpoint.
    pub active_slot: u32,
    pub active_gen: u64,
    pub active_offset: u64,
    pub segment_size: u64,
    /// The generation of every slot at checkpoint time (0 for a free slot). An entry whose
    /// slot has another generation at open is stale and dropped.
    pub slot_gens: Vec<u64>,
}

pub struct Checkpoint {
    pub header: CheckpointHeader,
    /// (hash, packed index entry) pairs, 16 bytes each.
    pub entries: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read checkpoint {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("checkpoint {path} is damaged: {reason}")]
    Damaged { path: String, reason: String },
}

impl Checkpoint {
    /// Iterates the (hash, packed entry) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.entries.chunks_exact(16).map(|c| {
            let mut a = [0u8; 8];
            let mut b = [0u8; 8];
            a.copy_from_slice(&c[..8]);
            b.copy_from_slice(&c[8..]);
            (u64::from_le_bytes(a), u64::from_le_bytes(b))
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len() / 16
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes a checkpoint atomically into `dir`.
    pub fn write(dir: &Path, header: &CheckpointHeader, entries: &[u8]) -> io::Result<()> {
        let mut b = Vec::with_capacity(HEADER_LEN + header.slot_gens.len() * 8 + entries.len() + 4);
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&(header.slot_gens.len() as u32).to_le_bytes());
        b.extend_from_slice(&header.created_at.to_le_bytes());
        b.extend_from_slice(&header.active_slot.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&header.active_gen.to_le_bytes());
        b.extend_from_slice(&header.active_offset.to_le_bytes());
        b.extend_from_slice(&((entries.len() / 16) as u64).to_le_bytes());
        b.extend_from_slice(&header.segment_size.to_le_bytes());
        debug_assert_eq!(b.len(), HEADER_LEN);
        for g in &header.slot_gens {
            b.extend_from_slice(&g.to_le_bytes());
        }
        b.extend_from_slice(entries);
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());

        let tmp = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(&b)?;
        f.sync_data()?;
        drop(f);
        fs::rename(&tmp, dir.join(CHECKPOINT_FILE))?;
        File::open(dir)?.sync_all()?;
        Ok(())
    }

    /// Reads `dir`'s checkpoint; `Ok(None)` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
        let path = dir.join(CHECKPOINT_FILE);
        let p = path.display().to_string();
        let b = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CheckpointError::Io { path: p, source }),
        };
        let damaged = |reason: &str| CheckpointError::Damaged {
            path: p.clone(),
            reason: reason.to_string(),
        };
        if b.len() < HEADER_LEN + 4 || b[..8] != MAGIC {
            return Err(damaged("not a strata checkpoint"));
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
            return Err(damaged("checksum mismatch"));
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        if u32_at(8) != VERSION {
            return Err(damaged("unknown version"));
        }
        let nslots = u32_at(12) as usize;
        let n = u64_at(48) as usize;
        let want = HEADER_LEN
            .checked_add(nslots.saturating_mul(8))
            .and_then(|x| x.checked_add(n.saturating_mul(16)));
        if want != Some(body.len()) {
            return Err(damaged("lengths do not match the file size"));
        }
        let slot_gens = (0..nslots).map(|i| u64_at(HEADER_LEN + i * 8)).collect();
        let start = HEADER_LEN + nslots * 8;
        Ok(Some(Checkpoint {
            header: CheckpointHeader {
                created_at: u64_at(16),
                active_slot: u32_at(24),
                active_gen: u64_at(32),
                active_offset: u64_at(40),
                segment_size: u64_at(56),
                slot_gens,
            },
            entries: body[start..].to_vec(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Checkpoint::read(dir.path()).unwrap().is_none());
        let h = CheckpointHeader {
            created_at: 5,
            active_slot: 2,
            active_gen: 9,
            active_offset: 4096,
            segment_size: 1 << 20,
            slot_gens: vec![7, 0, 9],
        };
        let mut entries = Vec::new();
        for i in 0..10u64 {
            entries.extend_from_slice(&(i + 2).to_le_bytes());
            entries.extend_from_slice(&(i * 3).to_le_bytes());
        }
        Checkpoint::write(dir.path(), &h, &entries).unwrap();
        let c = Checkpoint::read(dir.path()).unwrap().unwrap();
        assert_eq!(c.header, h);
        assert_eq!(c.iter().nth(3), Some((5, 9)));
        let path = dir.path().join(CHECKPOINT_FILE);
        let mut b = fs::read(&path).unwrap();
        b[100] ^= 1;
        fs::write(&path, &b).unwrap();
        assert!(Checkpoint::read(dir.path()).is_err());
    }
}
