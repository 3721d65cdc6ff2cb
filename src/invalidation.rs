//! Invalidations by path, as CloudFront does them: `/index.html` (exact) or `/images/*`
//! (everything under a prefix), across every Vary variant, query string and host.
//!
//! An invalidation never scans the store on the request path. It is a *rule* — a path
//! pattern and the Unix millisecond it was made — and a stored object whose `request_time`
//! (when the fetch that produced it was sent) is not after a matching rule is treated as
//! absent by the proxy's lookup ([`Invalidations::hides`]). Stamping by the fetch's start,
//! not its end, means a fill that was under way when the rule was made is hidden too when
//! it finishes, and a 304 to a revalidation sent before the rule does not revive it. So a wildcard over a million objects takes effect as fast as
//! an exact path: the time to push one rule. A background pass ([`Invalidations::reclaim`])
//! later walks the store, removes what the rules hide to give the space back, and drops the
//! rules that can no longer match anything.
//!
//! Rules are persisted (`invalidations.json` under `store.path`, written atomically before
//! the API answers) so a restart does not resurrect invalidated objects from a warm store.
//! This module must never block a request: `hides` takes a read lock and is lock-free when
//! no rule exists.

use crate::policy::key;
use crate::store::{MetaFlags, ObjectMeta, Store};
use crate::time::now_ms;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The file, under `store.path`, that holds the rules and recent invalidation records.
pub const FILE_NAME: &str = "invalidations.json";

/// How long a rule is kept after a reclaim pass has removed everything it matched: a fill
/// sent before the rule may still be streaming its body into the store, and becomes
/// visible (with its old `request_time`) only when it finishes.
pub const RULE_GRACE_MS: u64 = 10 * 60 * 1000;

/// How many invalidation records `GET /invalidations/{id}` remembers.
const RECORDS_KEPT: usize = 1000;

/// Why an invalidation request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("no paths given")]
    Empty,
    #[error("path {0:?} must start with '/'")]
    NoSlash(String),
    #[error("path {0:?}: '*' is allowed only as the last character")]
    InnerStar(String),
    #[error("too many paths ({0}); at most 3000 per request")]
    TooMany(usize),
}

/// A path pattern as CloudFront accepts it: exact, or a prefix ending in `*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    pub fn parse(p: &str) -> Result<Pattern, PathError> {
        if !p.starts_with('/') && p != "*" {
            return Err(PathError::NoSlash(p.to_string()));
        }
        match p.find('*') {
            None => Ok(Pattern::Exact(p.to_string())),
            Some(i) if i == p.len() - 1 => Ok(Pattern::Prefix(p[..i].to_string())),
            Some(_) => Err(PathError::InnerStar(p.to_string())),
        }
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            Pattern::Exact(e) => e == path,
            Pattern::Prefix(pre) => path.starts_with(pre.as_str()),
        }
    }

    fn text(&self) -> String {
        match self {
            Pattern::Exact(e) => e.clone(),
            Pattern::Prefix(p) => format!("{p}*"),
        }
    }
}

/// Parses and checks the `paths` of an invalidation request.
pub fn parse_paths(paths: &[String]) -> Result<Vec<Pattern>, PathError> {
    if paths.is_empty() {
        return Err(PathError::Empty);
    }
    if paths.len() > 3000 {
        return Err(PathError::TooMany(paths.len()));
    }
    paths.iter().map(|p| Pattern::parse(p)).collect()
}

/// One invalidation as the API reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// `InProgress` while peers are being told, then `Completed` (CloudFront's words).
    pub status: String,
    /// Unix ms when the rule was made (the generation).
    pub create_time: u64,
    pub paths: Vec<String>,
    /// Each peer of the tier and what it answered (`ok`, or the error).
    #[serde(default)]
    pub peers: Vec<PeerResult>,
    /// Objects removed by the background reclaim so far.
    #[serde(default)]
    pub reclaimed_objects: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerResult {
    pub peer: String,
    pub result: String,
}

#[derive(Default, Serialize, Deserialize)]
struct Rules {
    /// Exact path → the newest invalidation time.
    exact: HashMap<String, u64>,
    /// Prefix → the newest invalidation time; few, so a linear scan is cheapest.
    prefixes: Vec<(String, u64)>,
}

#[derive(Default, Serialize, Deserialize)]
struct Persisted {
    rules: Rules,
    records: VecDeque<Record>,
}

/// The node's invalidation rules and records.
#[derive(Default)]
pub struct Invalidations {
    rules: RwLock<Rules>,
    /// True when at least one rule exists: the request path checks it before any lock.
    any: AtomicBool,
    records: Mutex<VecDeque<Record>>,
    file: Mutex<Option<PathBuf>>,
    /// Serialises writes of the file.
    write_lock: Mutex<()>,
    last_time: AtomicU64,
}

impl Invalidations {
    pub fn new() -> Invalidations {
        Invalidations::default()
    }

    /// Loads the rules persisted under `dir` (if any) and persists future ones there.
    pub fn attach(&self, dir: &Path) -> anyhow::Result<()> {
        use anyhow::Context;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the store directory {}", dir.display()))?;
        let path = dir.join(FILE_NAME);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let p: Persisted = serde_json::from_slice(&bytes).with_context(|| {
                    format!(
                        "{} is damaged; remove it to start without invalidation rules \
                         (objects it invalidated may then be served again)",
                        path.display()
                    )
                })?;
                let any = !p.rules.exact.is_empty() || !p.rules.prefixes.is_empty();
                *self.rules.write() = p.rules;
                *self.records.lock() = p.records;
                self.any.store(any, Ordering::Release);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", path.display()));
            }
        }
        *self.file.lock() = Some(path);
        Ok(())
    }

    /// A fresh generation time: now, but never equal to or before the previous one, so two
    /// invalidations in one millisecond stay ordered.
    fn generation(&self) -> u64 {
        let now = now_ms();
        let mut prev = self.last_time.load(Ordering::Relaxed);
        loop {
            let t = now.max(prev + 1);
            match self
                .last_time
                .compare_exchange(prev, t, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return t,
                Err(p) => prev = p,
            }
        }
    }

    /// Applies an invalidation: from now on, matching objects stored until now are hidden.
    /// Returns the record (status `InProgress`). `id` is given when a peer relays one.
    pub fn invalidate(&self, patterns: &[Pattern], id: Option<String>) -> Record {
        let at = self.generation();
        {
            let mut rules = self.rules.write();
            for p in patterns {
                match p {
                    Pattern::Exact(path) => {
                        rules.exact.insert(path.clone(), at);
                    }
                    Pattern::Prefix(pre) => {
                        match rules.prefixes.iter_mut().find(|(p, _)| p == pre) {
                            Some(r) => r.1 = at,
                            None => rules.prefixes.push((pre.clone(), at)),
                        }
                    }
                }
            }
        }
        self.any.store(true, Ordering::Release);
        let record = Record {
            id: id.unwrap_or_else(|| new_id(at)),
            status: "InProgress".into(),
            create_time: at,
            paths: patterns.iter().map(Pattern::text).collect(),
            peers: Vec::new(),
            reclaimed_objects: 0,
        };
        let mut records = self.records.lock();
        records.retain(|r| r.id != record.id);
        records.push_back(record.clone());
        while records.len() > RECORDS_KEPT {
            records.pop_front();
        }
        record
    }

    /// Whether an invalidation hides this stored object (the proxy treats it as a miss).
    /// Vary markers are never hidden: they only say how variants are keyed.
    #[inline]
    pub fn hides(&self, meta: &ObjectMeta) -> bool {
        if !self.any.load(Ordering::Acquire) || meta.flags.has(MetaFlags::VARY_MARKER) {
            return false;
        }
        let rules = self.rules.read();
        hidden_by(&rules, meta)
    }

    /// Whether a rule made at or after `since` (Unix ms) covers `key`'s path: a fill for
    /// `key` that started at `since` must not be joined by later requests.
    pub fn hides_key_since(&self, key: &str, since: u64) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let rules = self.rules.read();
        hidden_at(&rules, key::path_of(key), since)
    }

    /// Updates a record (peer results, completion).
    pub fn update(&self, id: &str, f: impl FnOnce(&mut Record)) {
        if let Some(r) = self.records.lock().iter_mut().find(|r| r.id == id) {
            f(r);
        }
    }

    pub fn record(&self, id: &str) -> Option<Record> {
        self.records.lock().iter().find(|r| r.id == id).cloned()
    }

    /// The generation of the newest invalidation (0 when none since start).
    pub fn latest(&self) -> u64 {
        self.last_time.load(Ordering::Acquire)
    }

    /// How many rules are live (exact paths + prefixes).
    pub fn rule_count(&self) -> usize {
        let r = self.rules.read();
        r.exact.len() + r.prefixes.len()
    }

    /// Writes the rules and records atomically (temp file, fsync, rename). Blocking.
    pub fn persist(&self) -> anyhow::Result<()> {
        use anyhow::Context;
        let Some(path) = self.file.lock().clone() else {
            return Ok(());
        };
        let _guard = self.write_lock.lock();
        let bytes = {
            let rules = self.rules.read();
            let records = self.records.lock();
            let view = PersistedRef {
                rules: &rules,
                records: &records,
            };
            serde_json::to_vec(&view).context("cannot encode invalidation rules")?
        };
        let tmp = path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().with_context(|| format!("cannot write {}", path.display()))
    }

    /// One background pass: removes from `store` every object a rule hides, then drops the
    /// rules older than the pass's start minus [`RULE_GRACE_MS`] (nothing they match is left).
    /// Returns how many objects were removed. Blocking; runs off the async runtime.
    pub fn reclaim(&self, store: &dyn Store) -> u64 {
        if !self.any.load(Ordering::Acquire) {
            return 0;
        }
        let started = now_ms();
        let mut doomed = Vec::new();
        {
            // Snapshot the rules so the scan does not hold the lock the request path reads.
            let rules = {
                let r = self.rules.read();
                Rules {
                    exact: r.exact.clone(),
                    prefixes: r.prefixes.clone(),
                }
            };
            store.scan(&mut |m| {
                if !m.flags.has(MetaFlags::VARY_MARKER) && hidden_by(&rules, m) {
                    doomed.push(m.key.clone());
                }
            });
        }
        let mut removed = 0;
        for k in &doomed {
            if store.remove(k) {
                removed += 1;
            }
        }
        let horizon = started.saturating_sub(RULE_GRACE_MS);
        let dropped = {
            let mut rules = self.rules.write();
            let before = rules.exact.len() + rules.prefixes.len();
            rules.exact.retain(|_, at| *at >= horizon);
            rules.prefixes.retain(|(_, at)| *at >= horizon);
            let after = rules.exact.len() + rules.prefixes.len();
            self.any.store(after > 0, Ordering::Release);
            before - after
        };
        {
            let mut records = self.records.lock();
            for r in records.iter_mut() {
                if r.create_time <= started && r.reclaimed_objects == 0 {
                    r.reclaimed_objects = removed;
                }
            }
        }
        if dropped > 0 || removed > 0 {
            if let Err(e) = self.persist() {
                tracing::warn!("{e:#}");
            }
            tracing::info!(
                removed,
                dropped_rules = dropped,
                "invalidation reclaim pass"
            );
        }
        removed
    }
}

#[derive(Serialize)]
struct PersistedRef<'a> {
    rules: &'a Rules,
    records: &'a VecDeque<Record>,
}

fn hidden_by(rules: &Rules, meta: &ObjectMeta) -> bool {
    hidden_at(rules, key::path_of(&meta.key), meta.request_time)
}

/// Whether a rule on `path` was made at or after `time`.
fn hidden_at(rules: &Rules, path: &str, time: u64) -> bool {
    if let Some(at) = rules.exact.get(path) {
        if time <= *at {
            return true;
        }
    }
    rules
        .prefixes
        .iter()
        .any(|(pre, at)| time <= *at && path.starts_with(pre.as_str()))
}

/// An id in CloudFront's style: `I` and 13 upper-case letters and digits.
fn new_id(seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut x = seed ^ rand::random::<u64>();
    let mut s = String::with_capacity(14);
    s.push('I');
    for _ in 0..13 {
        s.push(ALPHABET[(x % 36) as usize] as char);
        x /= 36;
        if x == 0 {
            x = rand::random::<u64>();
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use http::{HeaderMap, StatusCode};

    fn meta(key: &str, time: u64) -> ObjectMeta {
        let mut m = ObjectMeta::new(key.into(), StatusCode::OK, HeaderMap::new());
        m.request_time = time;
        m.response_time = time;
        m
    }

    #[test]
    fn patterns_follow_cloudfront() {
        assert_eq!(
            Pattern::parse("/a.html"),
            Ok(Pattern::Exact("/a.html".into()))
        );
        assert_eq!(
            Pattern::parse("/img/*"),
            Ok(Pattern::Prefix("/img/".into()))
        );
        assert_eq!(Pattern::parse("/*"), Ok(Pattern::Prefix("/".into())));
        assert_eq!(Pattern::parse("*"), Ok(Pattern::Prefix(String::new())));
        assert!(matches!(Pattern::parse("a"), Err(PathError::NoSlash(_))));
        assert!(matches!(
            Pattern::parse("/a*/b"),
            Err(PathError::InnerStar(_))
        ));
        assert_eq!(parse_paths(&[]), Err(PathError::Empty));
    }

    #[test]
    fn rules_hide_only_older_objects_on_matching_paths() {
        let inv = Invalidations::new();
        let old = meta("example.com/img/a.png?x=1", 1);
        let other = meta("example.com/css/a.css", 1);
        let variant = meta("example.com/index.html\naccept-encoding:gzip\x1e", 1);
        assert!(!inv.hides(&old));
        let img = inv.invalidate(&[Pattern::Prefix("/img/".into())], None);
        inv.invalidate(&[Pattern::Exact("/index.html".into())], None);
        assert!(inv.hides(&old));
        assert!(inv.hides(&variant));
        assert!(!inv.hides(&other));
        let newer = meta("example.com/img/a.png", now_ms() + 10);
        assert!(!inv.hides(&newer));
        // A fetch sent before the rule is hidden even if its response came after it.
        let at = img.create_time;
        let mut straddling = meta("example.com/img/b.png", at - 1);
        straddling.response_time = at + 5;
        assert!(inv.hides(&straddling));
        assert!(inv.hides_key_since("example.com/img/c.png", at));
        assert!(!inv.hides_key_since("example.com/img/c.png", at + 1));
        assert!(!inv.hides_key_since("example.com/css/c.css", 0));
    }

    #[test]
    fn reclaim_removes_hidden_objects_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let store = MemoryStore::new(1 << 20);
        for k in ["h/a/1", "h/a/2", "h/b/1"] {
            let mut m = meta(k, now_ms() - 5);
            m.body_len = 0;
            store.put(m).unwrap().finish().unwrap();
        }
        let inv = Invalidations::new();
        inv.attach(dir.path()).unwrap();
        let rec = inv.invalidate(&[Pattern::Prefix("/a/".into())], None);
        inv.persist().unwrap();
        assert_eq!(inv.reclaim(&store), 2);
        assert!(store.get("h/b/1").is_some());
        assert!(store.get("h/a/1").is_none());
        // A restart keeps the rule and the record.
        let again = Invalidations::new();
        again.attach(dir.path()).unwrap();
        assert_eq!(again.rule_count(), 1);
        assert!(again.record(&rec.id).is_some());
    }
}
