//! Invalidation latency with many objects stored. CI runs it with 20,000 objects; the
//! benchmark figure uses a million:
//!
//! ```sh
//! STRATA_INVALIDATION_OBJECTS=1000000 cargo test --release --test invalidation_scale -- --nocapture
//! ```
//!
//! Fills a node's store with that many objects directly (no origin round trips), then times
//! `POST /invalidations` for an exact path and for a wildcard covering every object, from the
//! request to the moment the object is hidden, and the background reclaim pass.

mod support;

use std::time::Instant;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_latency_with_many_objects() {
    let n: u32 = std::env::var("STRATA_INVALIDATION_OBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let toml = config(&origin.url(), dir.path(), "127.0.0.1:0", "")
        .replace("memory = \"64MiB\"", "memory = \"2GiB\"")
        .replace("size = \"64MiB\"", "size = \"2GiB\"");
    let node = start(&toml).await;
    let store = node.proxy.store.clone();
    let t0 = Instant::now();
    let old = strata::time::now_ms() - 1000;
    for i in 0..n {
        let mut m = strata::store::ObjectMeta::new(
            format!("example.com/objects/{}/{i}.bin", i % 1000),
            http::StatusCode::OK,
            http::HeaderMap::new(),
        );
        m.response_time = old;
        m.freshness_lifetime = 3_600_000;
        m.body_len = 0;
        store.put(m).unwrap().finish().unwrap();
    }
    let objects = store.stats().objects;
    eprintln!("filled {objects} objects in {:?}", t0.elapsed());
    assert!(objects >= u64::from(n) * 99 / 100, "{objects} of {n}");

    let probe = store.get("example.com/objects/7/7.bin").unwrap();
    let t = Instant::now();
    let r = admin_post(
        node.admin_addr(),
        "/invalidations",
        r#"{"paths": ["/objects/7/7.bin"]}"#,
    )
    .await;
    let exact = t.elapsed();
    assert_eq!(r.status, 201);
    assert!(node.proxy.invalidations.hides(&probe.meta));

    let other = store.get("example.com/objects/500/500.bin").unwrap();
    let t = Instant::now();
    let r = admin_post(
        node.admin_addr(),
        "/invalidations",
        r#"{"paths": ["/objects/*"]}"#,
    )
    .await;
    let wildcard = t.elapsed();
    assert_eq!(r.status, 201);
    assert!(node.proxy.invalidations.hides(&other.meta));

    // The background pass (it looks every 2s) gives the space back.
    let t = Instant::now();
    while store.stats().objects > 0 {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(300),
            "reclaim too slow"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let reclaim = t.elapsed();
    eprintln!(
        "{n} objects: exact invalidation {exact:?} (POST to answer, rule live), wildcard over all \
         {wildcard:?}, background reclaim emptied the store {reclaim:?} after the wildcard"
    );
    node.shutdown().await;
}
