//! One fill per cache key. The first request for a missing (or stale) key starts a fill;
//! later requests join it and read the body as it arrives. Waiters are woken by a `watch`
//! channel (no polling), are bounded in number, and give up after a timeout.
//!
//! A fill whose response turns out not to be shareable is remembered for a while
//! (hit-for-miss, after Varnish) so that later requests for that key go straight to the
//! origin instead of queueing behind one another.
//!
//! This module knows nothing of HTTP semantics: what a fill publishes ([`FillHead`]) is
//! decided by the proxy.

use crate::store::{Object, ObjectMeta};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What a fill learned from upstream, published once.
#[derive(Clone)]
pub enum FillHead {
    /// A response is streaming in; `meta` holds its status and headers (hop-by-hop removed)
    /// and freshness. `shareable` says whether requests other than the leader may use it;
    /// `stored` whether it is being written to the store.
    Streaming {
        meta: Arc<ObjectMeta>,
        shareable: bool,
        stored: bool,
    },
    /// Serve this stored object (after a 304 refresh, or stale on error); `fwd_status` is
    /// the upstream status that led here, `detail` a Cache-Status detail.
    Stored {
        object: Object,
        fwd_status: u16,
        detail: Option<&'static str>,
    },
    /// Upstream failed before a response head arrived.
    Failed { timeout: bool, message: Arc<str> },
}

#[derive(Default)]
struct FillState {
    head: Option<FillHead>,
    chunks: Vec<Bytes>,
    /// `Some(true)` when the body completed, `Some(false)` when it broke off.
    done: Option<bool>,
}

/// One in-flight fetch that many requests may read.
pub struct Fill {
    state: Mutex<FillState>,
    tx: watch::Sender<()>,
    waiters: AtomicUsize,
    /// Unix ms when the fill started.
    pub started: u64,
}

impl Fill {
    fn new() -> Arc<Fill> {
        let (tx, _) = watch::channel(());
        Arc::new(Fill {
            state: Mutex::new(FillState::default()),
            tx,
            waiters: AtomicUsize::new(0),
            started: crate::time::now_ms(),
        })
    }

    /// Publishes the head. Called once by the fill task.
    pub fn publish_head(&self, head: FillHead) {
        self.state.lock().head = Some(head);
        self.tx.send_replace(());
    }

    pub fn push_chunk(&self, chunk: Bytes) {
        self.state.lock().chunks.push(chunk);
        self.tx.send_replace(());
    }

    pub fn finish(&self, complete: bool) {
        self.state.lock().done = Some(complete);
        self.tx.send_replace(());
    }

    /// Waits for the head, at most `timeout`. `None` on timeout.
    pub async fn head(&self, timeout: Duration) -> Option<FillHead> {
        let mut rx = self.tx.subscribe();
        let wait = async {
            loop {
                rx.borrow_and_update();
                if let Some(h) = self.state.lock().head.clone() {
                    return Some(h);
                }
                if rx.changed().await.is_err() {
                    return self.state.lock().head.clone();
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }

    /// A reader of the body from its first byte.
    pub fn reader(self: &Arc<Self>) -> FillReader {
        FillReader {
            fill: self.clone(),
            next: 0,
            rx: self.tx.subscribe(),
        }
    }
}

/// Reads a fill's body chunk by chunk, waiting for chunks still to come.
pub struct FillReader {
    fill: Arc<Fill>,
    next: usize,
    rx: watch::Receiver<()>,
}

/// What [`FillReader::next_chunk`] yields.
pub enum Chunk {
    Data(Bytes),
    End,
    /// The upstream body broke off: the viewer's response must be cut short too.
    Broken,
}

impl FillReader {
    pub async fn next_chunk(&mut self) -> Chunk {
        loop {
            self.rx.borrow_and_update();
            {
                let st = self.fill.state.lock();
                if self.next < st.chunks.len() {
                    let c = st.chunks[self.next].clone();
                    self.next += 1;
                    return Chunk::Data(c);
                }
                match st.done {
                    Some(true) => return Chunk::End,
                    Some(false) => return Chunk::Broken,
                    None => {}
                }
            }
            if self.rx.changed().await.is_err() {
                let st = self.fill.state.lock();
                return if st.done == Some(true) && self.next >= st.chunks.len() {
                    Chunk::End
                } else {
                    Chunk::Broken
                };
            }
        }
    }
}

/// How a request takes part in a fill.
pub enum Join {
    /// This request started the fill: the caller must spawn the fetch and call
    /// [`Coalescer::complete`] when it ends.
    Leader(Arc<Fill>),
    /// Another request's fill is under way.
    Follower(Arc<Fill>),
    /// Too many waiters already: go upstream alone.
    Overflow,
}

/// The table of fills in flight and of keys known not to be shareable.
pub struct Coalescer {
    inflight: Mutex<HashMap<String, Arc<Fill>>>,
    hit_for_miss: Mutex<HashMap<String, u64>>,
    max_waiters: usize,
    hit_for_miss_ms: u64,
}

impl Coalescer {
    pub fn new(max_waiters: usize, hit_for_miss: Duration) -> Coalescer {
        Coalescer {
            inflight: Mutex::new(HashMap::new()),
            hit_for_miss: Mutex::new(HashMap::new()),
            max_waiters,
            hit_for_miss_ms: hit_for_miss.as_millis() as u64,
        }
    }

    /// Joins the fill in flight for `key`, or starts one. A fill that `superseded` says is
    /// out of date (given when it started: an invalidation or purge came after) is not
    /// joined: a new fill replaces it in the table, and the old one ends on its own.
    pub fn join(&self, key: &str, superseded: impl FnOnce(u64) -> bool) -> Join {
        let mut map = self.inflight.lock();
        if let Some(f) = map.get(key).filter(|f| !superseded(f.started)) {
            if f.waiters.fetch_add(1, Ordering::Relaxed) >= self.max_waiters {
                f.waiters.fetch_sub(1, Ordering::Relaxed);
                return Join::Overflow;
            }
            return Join::Follower(f.clone());
        }
        let f = Fill::new();
        map.insert(key.to_string(), f.clone());
        Join::Leader(f)
    }

    /// Whether a fill for `key` is under way.
    pub fn in_flight(&self, key: &str) -> bool {
        self.inflight.lock().contains_key(key)
    }

    /// Removes the fill from the table (later requests start a new one). Readers already
    /// holding it keep reading.
    pub fn complete(&self, key: &str, fill: &Arc<Fill>) {
        let mut map = self.inflight.lock();
        if map.get(key).is_some_and(|f| Arc::ptr_eq(f, fill)) {
            map.remove(key);
        }
    }

    /// Remembers that `key` is not shareable, until `now + hit_for_miss`.
    pub fn mark_hit_for_miss(&self, key: &str, now: u64) {
        let mut m = self.hit_for_miss.lock();
        if m.len() > 100_000 {
            m.retain(|_, until| *until > now);
        }
        m.insert(key.to_string(), now + self.hit_for_miss_ms);
    }

    pub fn clear_hit_for_miss(&self, key: &str) {
        self.hit_for_miss.lock().remove(key);
    }

    pub fn is_hit_for_miss(&self, key: &str, now: u64) -> bool {
        let m = self.hit_for_miss.lock();
        m.get(key).is_some_and(|until| *until > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_read_what_the_leader_streams() {
        let c = Coalescer::new(10, Duration::from_secs(1));
        let Join::Leader(fill) = c.join("k", |_| false) else {
            panic!("first join leads")
        };
        let Join::Follower(f2) = c.join("k", |_| false) else {
            panic!("second join follows")
        };
        let mut r = f2.reader();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                match r.next_chunk().await {
                    Chunk::Data(b) => got.extend_from_slice(&b),
                    Chunk::End => return Some(got),
                    Chunk::Broken => return None,
                }
            }
        });
        fill.push_chunk(Bytes::from_static(b"hello "));
        tokio::task::yield_now().await;
        fill.push_chunk(Bytes::from_static(b"world"));
        fill.finish(true);
        assert_eq!(reader.await.unwrap().as_deref(), Some(&b"hello world"[..]));
        c.complete("k", &fill);
        assert!(matches!(c.join("k", |_| false), Join::Leader(_)));
    }

    #[tokio::test]
    async fn head_times_out() {
        let c = Coalescer::new(10, Duration::from_secs(1));
        let Join::Leader(fill) = c.join("k", |_| false) else {
            panic!()
        };
        assert!(fill.head(Duration::from_millis(20)).await.is_none());
    }

    #[test]
    fn waiters_are_bounded() {
        let c = Coalescer::new(2, Duration::from_secs(1));
        assert!(matches!(c.join("k", |_| false), Join::Leader(_)));
        assert!(matches!(c.join("k", |_| false), Join::Follower(_)));
        assert!(matches!(c.join("k", |_| false), Join::Follower(_)));
        assert!(matches!(c.join("k", |_| false), Join::Overflow));
    }

    #[test]
    fn a_superseded_fill_is_not_joined_and_its_end_leaves_the_new_one() {
        let c = Coalescer::new(10, Duration::from_secs(1));
        let Join::Leader(old) = c.join("k", |_| false) else {
            panic!()
        };
        let started = old.started;
        let Join::Leader(new) = c.join("k", |s| s == started) else {
            panic!("a superseded fill is replaced")
        };
        c.complete("k", &old);
        assert!(c.in_flight("k"));
        assert!(matches!(c.join("k", |_| false), Join::Follower(f) if Arc::ptr_eq(&f, &new)));
        c.complete("k", &new);
        assert!(!c.in_flight("k"));
    }

    #[test]
    fn hit_for_miss_expires() {
        let c = Coalescer::new(2, Duration::from_millis(100));
        c.mark_hit_for_miss("k", 1000);
        assert!(c.is_hit_for_miss("k", 1050));
        assert!(!c.is_hit_for_miss("k", 1100));
    }
}
