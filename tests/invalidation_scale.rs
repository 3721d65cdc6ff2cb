//! Invalidation latency with a million objects stored (a benchmark, run on demand):
//!
//! ```sh
//! cargo test --test invalidation_scale -- --ignored --nocapture
//! ```
//!
//! Fills a node's store with 1,000,000 objects directly (no origin round trips), then times
//! `POST /invalidations` for an exact path and for a wildcard covering every object, from the
//! request to the moment the object is hidden, and the background reclaim pass.

mod support;

use std::time::Instant;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: a million objects; run with --ignored"]
async fn invalidation_latency_with_a_million_objects() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let toml = config(&origin.url(), dir.path(), "127.0.0.1:0", "")
        .replace("memory = \"64MiB\"", "memory = \"2GiB\"")
        .replace("size = \"64MiB\"", "size = \"2GiB\"");
    let node = start(&toml).await;
    let store = node.proxy.store.clone();
    let t0 = Instant::now();
    let old = strata::time::now_ms() - 1000;
    for i in 0..1_000_000u32 {
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
    assert!(objects >= 990_000, "{objects}");

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
        "1M objects: exact invalidation {exact:?} (POST to answer, rule live), wildcard over all \
         {wildcard:?}, background reclaim emptied the store {reclaim:?} after the wildcard"
    );
    node.shutdown().await;
}
