//! A read-only survey of a store directory for the offline tools (`strata-tools inspect`,
//! `find`, `verify`): every segment is scanned in generation order, every record's
//! checksums checked, and the latest record of every key resolved as the store's own
//! recovery would, without the checkpoint.
//!
//! It never writes, never takes the lock, and so may run beside a live node (it then sees
//! what has been flushed to the files).

use super::checkpoint::Checkpoint;
use super::record::{self, Kind, RecordError, FLAG_CHUNKED};
use super::segment::{self, ScanItem, SegmentHeader, SEGMENT_HEADER_LEN};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::Path;

/// (slot, offset, data length) of a chunk record.
pub type ChunkRef = (u32, u64, u64);

/// One segment file.
#[derive(Debug, Clone, Default)]
pub struct SegmentReport {
    pub slot: u32,
    pub generation: u64,
    pub created_at: u64,
    pub size: u64,
    pub file_bytes: u64,
    pub records: u64,
    pub live_bytes: u64,
    pub live_objects: u64,
}

/// A record that failed its checks.
#[derive(Debug, Clone)]
pub struct BadRecord {
    pub slot: u32,
    pub offset: u64,
    pub len: u64,
    pub error: RecordError,
}

/// The latest stored version of a key.
#[derive(Debug, Clone)]
pub struct LiveObject {
    pub key: String,
    pub key_hash: u64,
    pub slot: u32,
    pub offset: u64,
    pub record_len: u64,
    pub kind: Kind,
    pub body_len: u64,
    pub written_at: u64,
    pub expires_at: u64,
    /// Encoded metadata (decode with `ObjectMeta::decode`).
    pub meta: bytes::Bytes,
    /// For a chunked body: (slot, offset, data length) of each chunk. For a `Meta` record:
    /// the body record's (slot, offset, 0).
    pub refs: Vec<ChunkRef>,
    pub chunked: bool,
}

#[derive(Debug, Default)]
pub struct Survey {
    pub segments: Vec<SegmentReport>,
    pub bad: Vec<BadRecord>,
    pub objects: Vec<LiveObject>,
    pub checkpoint: Option<super::checkpoint::CheckpointHeader>,
    pub checkpoint_entries: usize,
    pub checkpoint_error: Option<String>,
}

/// Scans `dir`. `progress` is called with (segments done, segments total).
pub fn survey(dir: &Path, progress: &mut dyn FnMut(u64, u64)) -> io::Result<Survey> {
    let mut segs: Vec<(SegmentHeader, File, u64)> = Vec::new();
    for ent in std::fs::read_dir(dir)? {
        let ent = ent?;
        let Some(slot) = ent.file_name().to_str().and_then(segment::parse_file_name) else {
            continue;
        };
        let file = File::open(ent.path())?;
        let len = file.metadata()?.len();
        if let Ok(h) = SegmentHeader::read(&file) {
            if h.slot == slot {
                segs.push((h, file, len));
            }
        }
    }
    segs.sort_by_key(|s| s.0.generation);
    let mut out = Survey::default();
    match Checkpoint::read(dir) {
        Ok(Some(c)) => {
            out.checkpoint_entries = c.len();
            out.checkpoint = Some(c.header);
        }
        Ok(None) => {}
        Err(e) => out.checkpoint_error = Some(e.to_string()),
    }
    let mut live: HashMap<u64, LiveObject> = HashMap::new();
    // Every intact `Object` record: (slot, offset) → (record length, chunks).
    let mut bodies: HashMap<(u32, u64), (u64, Vec<ChunkRef>)> = HashMap::new();
    let total = segs.len() as u64;
    for (i, (h, file, len)) in segs.iter().enumerate() {
        progress(i as u64, total);
        let mut rep = SegmentReport {
            slot: h.slot,
            generation: h.generation,
            created_at: h.created_at,
            size: h.size,
            file_bytes: *len,
            ..Default::default()
        };
        for item in segment::Scanner::new(file, SEGMENT_HEADER_LEN, (*len).min(h.size)) {
            match item {
                ScanItem::Bad { offset, len, error } => out.bad.push(BadRecord {
                    slot: h.slot,
                    offset,
                    len,
                    error,
                }),
                ScanItem::Record { offset, head, .. } => {
                    rep.records += 1;
                    let hd = head.header;
                    let key = String::from_utf8_lossy(&head.key).into_owned();
                    let refs = head
                        .table
                        .iter()
                        .map(|r| match hd.kind {
                            Kind::Meta => (r.slot, r.offset as u64, 0),
                            _ => (r.slot, r.offset as u64, r.len as u64),
                        })
                        .collect();
                    let obj = LiveObject {
                        key,
                        key_hash: hd.key_hash,
                        slot: h.slot,
                        offset,
                        record_len: hd.record_len(),
                        kind: hd.kind,
                        body_len: hd.body_len,
                        written_at: hd.written_at,
                        expires_at: hd.expires_at,
                        meta: head.meta.clone(),
                        refs,
                        chunked: hd.flags & FLAG_CHUNKED != 0,
                    };
                    if hd.kind == Kind::Object {
                        bodies.insert((h.slot, offset), (obj.record_len, obj.refs.clone()));
                    }
                    match hd.kind {
                        Kind::Object | Kind::Meta => {
                            live.insert(hd.key_hash, obj);
                        }
                        Kind::Tombstone => {
                            live.remove(&hd.key_hash);
                        }
                        Kind::Chunk => {}
                    }
                }
            }
        }
        out.segments.push(rep);
    }
    progress(total, total);
    // Drop objects whose body record is gone, then count live bytes per segment.
    let mut objects: Vec<LiveObject> = live
        .into_values()
        .filter(|o| {
            o.kind == Kind::Object
                || o.refs
                    .first()
                    .is_some_and(|r| bodies.contains_key(&(r.0, r.1)))
        })
        .collect();
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    for o in &objects {
        let mut add = |slot: u32, bytes: u64, n: u64| {
            if let Some(s) = out.segments.iter_mut().find(|s| s.slot == slot) {
                s.live_bytes += bytes;
                s.live_objects += n;
            }
        };
        add(o.slot, o.record_len, 1);
        let chunks = match o.kind {
            Kind::Meta => {
                let r = o.refs[0];
                let Some((len, chunks)) = bodies.get(&(r.0, r.1)) else {
                    continue;
                };
                add(r.0, *len, 0);
                chunks.clone()
            }
            _ => o.refs.clone(),
        };
        if o.chunked {
            for (slot, _, len) in chunks {
                add(slot, record::HEADER_LEN as u64 + record::align(len), 0);
            }
        }
    }
    out.objects = objects;
    Ok(out)
}
