//! Request coalescing: concurrent misses for one object make one origin request, and an
//! uncacheable object is not serialised behind it (hit-for-miss).

mod common;

use common::*;
use futures_util::future::join_all;
use std::time::{Duration, Instant};

const CACHE_EVERYTHING: &str = r#"
[[origins]]
id = "origin"
url = "{origin}"

[cache_policies.Everything]
min_ttl = "0s"
default_ttl = "1d"
max_ttl = "1d"

[default_behavior]
origin = "origin"
cache_policy = "Everything"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_misses_make_one_origin_request() {
    let origin = Origin::start().await;
    let body: String = (0..64 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let served = body.clone();
    origin.route("/popular", move |_, _| {
        Reply::ok(served.clone())
            .cache_control("max-age=60")
            .delay(Duration::from_millis(300))
    });
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    let responses = join_all((0..200).map(|_| node.get("/popular", &[]))).await;

    assert_eq!(
        origin.count("/popular"),
        1,
        "200 viewers, one origin request: {:?}",
        origin.seen()
    );
    // SPEC.md's example: a waiter's member reads `fwd=miss; stored; collapsed`; the one
    // request that filled the cache is the only one not marked collapsed.
    let mut stored = 0;
    for r in &responses {
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body.len(), body.len(), "{r:?}");
        assert!(r.text() == body, "every viewer gets the full body");
        let cs = r.cache_status();
        if cs.has("stored") && !cs.has("collapsed") {
            stored += 1;
        } else {
            assert!(
                cs.has("collapsed") || cs.has("hit"),
                "a viewer that did not fill waited on the fill or hit: {}",
                cs.raw
            );
        }
    }
    assert_eq!(stored, 1, "exactly one viewer's request filled the cache");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncacheable_response_is_not_serialised() {
    let origin = Origin::start().await;
    origin.route("/cart", |_, n| {
        Reply::ok(format!("cart #{n}"))
            .cache_control("private, no-store")
            .delay(Duration::from_millis(300))
    });
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    // The first request teaches the node that /cart is uncacheable.
    let first = node.get("/cart", &[]).await;
    assert_eq!(first.text(), "cart #1");
    assert!(!first.cache_status().has("stored"), "{first:?}");

    // The second wave must go to the origin in parallel, not one after another.
    let started = Instant::now();
    let wave = join_all((0..10).map(|_| node.get("/cart", &[]))).await;
    let took = started.elapsed();

    let mut bodies: Vec<String> = wave.iter().map(|r| r.text().to_string()).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(
        bodies.len(),
        10,
        "each viewer got its own origin response: {bodies:?}"
    );
    for r in &wave {
        assert_eq!(r.status, 200, "{r:?}");
        let cs = r.cache_status();
        assert!(!cs.has("hit") && !cs.has("collapsed"), "{}", cs.raw);
    }
    assert_eq!(origin.count("/cart"), 11, "{:?}", origin.seen());
    assert!(
        origin.max_in_flight() >= 5,
        "the origin saw at most {} of the wave at once",
        origin.max_in_flight()
    );
    assert!(
        took < Duration::from_millis(1500),
        "10 requests of 300 ms took {took:?}: serialised behind each other"
    );
    node.shutdown().await;
}
