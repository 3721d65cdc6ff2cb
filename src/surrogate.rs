//! Purge by `Surrogate-Key` (Fastly's and Varnish's tag purge): a stored response's
//! `Surrogate-Key` header lists space-separated tags, and `POST /purge` acts on every object
//! carrying one of the given tags — softly (the object stays, usable only as stale, so it is
//! revalidated; `FORCED_STALE`) or hard (removed).
//!
//! The tag → keys index lives in memory. The proxy feeds it when it stores a response
//! ([`SurrogateKeys::record`]); at start it is rebuilt from the store by a scan
//! ([`SurrogateKeys::rebuild`]). It may name keys the store has since evicted; a purge skips
//! those, and a rebuild prunes them. It must never be consulted on a hit.

use crate::store::{MetaFlags, ObjectMeta, Store};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};

/// The response header that carries tags.
pub const HEADER: &str = "surrogate-key";

const SHARDS: usize = 16;

/// The tag → keys index.
pub struct SurrogateKeys {
    shards: Vec<Mutex<HashMap<String, HashSet<String>>>>,
}

impl Default for SurrogateKeys {
    fn default() -> Self {
        SurrogateKeys {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
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
        report
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
}
