//! Purge by `Surrogate-Key` (Fastly's and Varnish's tag purge): a stored response's
//! `Surrogate-Key` header lists space-separated tags, and `POST /purge` acts on every object
//! carrying one of the given tags — softly (the object stays, usable only as stale, so it is
//! revalidated; `FORCED_STALE`) or hard (removed).
//!
//! The tag → keys index lives in memory. The proxy feeds it when it stores a response
//! ([`SurrogateKeys::record`]); at start it is rebuilt from the store by a scan
//! ([`SurrogateKeys::rebuild`]). It may name keys the store has since evicted; a purge skips
//! those, and a rebuild prunes them. It must never be consulted on a hit.
//!
//! A purge also leaves a stamp per tag (when it was made, soft or hard) for
//! [`PURGE_GRACE_MS`]: a fill that was sent before the purge and commits after it checks
//! the stamps of its tags ([`SurrogateKeys::after_commit`]) and purges itself, so a purge
//! that lands while an object is still streaming in is not undone when the stream ends.

use crate::store::{MetaFlags, ObjectMeta, Store};
use crate::time::now_ms;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

/// How long a purge's stamps are kept: longer than any fill takes.
pub const PURGE_GRACE_MS: u64 = 10 * 60 * 1000;

/// The response header that carries tags.
pub const HEADER: &str = "surrogate-key";

const SHARDS: usize = 16;

/// The tag → keys index.
pub struct SurrogateKeys {
    shards: Vec<Mutex<HashMap<String, HashSet<String>>>>,
    /// Tag → (Unix ms of its latest purge, whether that purge was soft).
    stamps: Mutex<HashMap<String, (u64, bool)>>,
    /// Unix ms of the latest purge (0: none): the commit path looks no further when it is
    /// older than the fill.
    last_purge: AtomicU64,
}

impl Default for SurrogateKeys {
    fn default() -> Self {
        SurrogateKeys {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            stamps: Mutex::new(HashMap::new()),
            last_purge: AtomicU64::new(0),
        }
    }
}

/// What a purge did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PurgeReport {
    pub objects: u64,
}

impl SurrogateKeys {
    pub fn new() -> SurrogateKeys {
        SurrogateKeys::default()
    }

    fn shard(&self, tag: &str) -> &Mutex<HashMap<String, HashSet<String>>> {
        let h = xxhash_rust::xxh3::xxh3_64(tag.as_bytes());
        &self.shards[(h % SHARDS as u64) as usize]
    }

    /// Indexes an object being stored under the tags its `Surrogate-Key` header lists.
    pub fn record(&self, meta: &ObjectMeta) {
        for v in meta.headers.get_all(HEADER) {
            let Ok(s) = v.to_str() else { continue };
            for tag in s.split_ascii_whitespace() {
                self.shard(tag)
                    .lock()
                    .entry(tag.to_string())
                    .or_default()
                    .insert(meta.key.clone());
            }
        }
    }

    /// Rebuilds the index from the store (at start). Blocking; returns the tags indexed.
    pub fn rebuild(&self, store: &dyn Store) -> usize {
        for s in &self.shards {
            s.lock().clear();
        }
        store.scan(&mut |m| self.record(m));
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// How many tags are indexed.
    pub fn tags(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Purges every object tagged with one of `tags`. Soft: marks them `FORCED_STALE`; hard:
    /// removes them (and forgets the tags).
    pub fn purge(&self, store: &dyn Store, tags: &[String], soft: bool) -> PurgeReport {
        // Stamp first: a fill that commits from now on sees the stamp and purges itself; one
        // that committed before is found in the index below.
        let now = now_ms();
        {
            let mut stamps = self.stamps.lock();
            stamps.retain(|_, (at, _)| *at + PURGE_GRACE_MS > now);
            for tag in tags {
                let e = stamps.entry(tag.clone()).or_insert((now, soft));
                // A hard purge is not weakened by a later soft one in the same grace.
                *e = (now, soft && (e.1 || e.0 + PURGE_GRACE_MS <= now));
            }
            self.last_purge.fetch_max(now, Ordering::AcqRel);
        }
        let mut report = PurgeReport::default();
        for tag in tags {
            let keys: Vec<String> = {
                let mut shard = self.shard(tag).lock();
                if soft {
                    shard
                        .get(tag)
                        .map(|k| k.iter().cloned().collect())
                        .unwrap_or_default()
                } else {
                    shard
                        .remove(tag)
                        .map(|k| k.into_iter().collect())
                        .unwrap_or_default()
                }
            };
            for k in keys {
                let done = if soft {
                    match store.get(&k) {
                        Some(o) => {
                            let mut m = (*o.meta).clone();
                            m.flags.set(MetaFlags::FORCED_STALE, true);
                            store.update_meta(m).unwrap_or(false)
                        }
                        None => false,
                    }
                } else {
                    store.remove(&k)
                };
                if done {
                    report.objects += 1;
                }
            }
        }
        crate::time::wait_past(now);
        report
    }

    /// Whether a purge was made at or after `since` (Unix ms): a fill started then must not
    /// be joined by later requests.
    pub fn purged_since(&self, since: u64) -> bool {
        self.last_purge.load(Ordering::Acquire) >= since
    }

    /// Called once an object is committed to the store by a fetch sent at `since`: when a
    /// purge of one of its tags was made since, applies it now (removes the object, or marks
    /// it stale). Returns whether it did.
    pub fn after_commit(&self, store: &dyn Store, meta: &ObjectMeta, since: u64) -> bool {
        if !self.purged_since(since) {
            return false;
        }
        let mut hit: Option<bool> = None;
        {
            let stamps = self.stamps.lock();
            for v in meta.headers.get_all(HEADER) {
                let Ok(s) = v.to_str() else { continue };
                for tag in s.split_ascii_whitespace() {
                    if let Some((at, soft)) = stamps.get(tag) {
                        if *at >= since {
                            hit = Some(hit.unwrap_or(true) && *soft);
                        }
                    }
                }
            }
        }
        match hit {
            None => false,
            Some(false) => store.remove(&meta.key),
            Some(true) => match store.get(&meta.key) {
                Some(o) => {
                    let mut m = (*o.meta).clone();
                    m.flags.set(MetaFlags::FORCED_STALE, true);
                    store.update_meta(m).unwrap_or(false)
                }
                None => false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use http::{HeaderMap, HeaderValue, StatusCode};

    fn put(store: &MemoryStore, key: &str, tags: &str) -> ObjectMeta {
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_str(tags).unwrap());
        let mut m = ObjectMeta::new(key.into(), StatusCode::OK, h);
        m.body_len = 0;
        m.freshness_lifetime = 3_600_000;
        m.response_time = crate::time::now_ms();
        store.put(m.clone()).unwrap().finish().unwrap();
        m
    }

    #[test]
    fn soft_purge_marks_stale_and_hard_purge_removes() {
        let store = MemoryStore::new(1 << 20);
        let tags = SurrogateKeys::new();
        tags.record(&put(&store, "h/a", "product-1 all"));
        tags.record(&put(&store, "h/b", "product-2  all"));
        let r = tags.purge(&store, &["product-1".into()], true);
        assert_eq!(r.objects, 1);
        let a = store.get("h/a").unwrap();
        assert!(a.meta.flags.has(MetaFlags::FORCED_STALE));
        assert!(!store
            .get("h/b")
            .unwrap()
            .meta
            .flags
            .has(MetaFlags::FORCED_STALE));
        let r = tags.purge(&store, &["all".into()], false);
        assert_eq!(r.objects, 2);
        assert!(store.get("h/a").is_none() && store.get("h/b").is_none());
        assert_eq!(tags.rebuild(&store), 0);
    }

    #[test]
    fn an_object_committed_after_a_purge_of_its_tag_is_purged_at_commit() {
        let store = MemoryStore::new(1 << 20);
        let tags = SurrogateKeys::new();
        let sent = crate::time::now_ms();
        // Not purged: nothing happens.
        let m = put(&store, "h/x", "other");
        assert!(!tags.after_commit(&store, &m, sent));
        tags.purge(&store, &["t".into()], true);
        let m = put(&store, "h/soft", "t");
        assert!(tags.after_commit(&store, &m, sent));
        assert!(store
            .get("h/soft")
            .unwrap()
            .meta
            .flags
            .has(MetaFlags::FORCED_STALE));
        tags.purge(&store, &["t".into()], false);
        let m = put(&store, "h/hard", "t u");
        assert!(tags.after_commit(&store, &m, sent));
        assert!(store.get("h/hard").is_none());
        // A fetch sent after the purge keeps its object.
        let later = crate::time::now_ms() + 1;
        let m = put(&store, "h/later", "t");
        assert!(!tags.after_commit(&store, &m, later));
        assert!(store.get("h/later").is_some());
    }
}
