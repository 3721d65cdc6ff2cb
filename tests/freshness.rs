//! How long an object stays fresh: the origin's headers (CDN-Cache-Control, s-maxage,
//! max-age, Age) within the cache policy's min/default/max TTL.

mod common;

use common::*;

/// TTLs chosen so each rule gives a distinct number: min 1 min, default 1 h, max 1 day.
const BOUNDED: &str = r#"
[[origins]]
id = "origin"
url = "{origin}"

[cache_policies.Bounded]
min_ttl = "60s"
default_ttl = "1h"
max_ttl = "1d"

[default_behavior]
origin = "origin"
cache_policy = "Bounded"
"#;

/// Fills `path` with `reply`, then returns the ttl the hit reports.
async fn ttl_of(reply: Reply) -> i64 {
    let origin = Origin::start().await;
    origin.route("/object", move |_, _| reply.clone());
    let node = start_node(&origin, BOUNDED).await;
    let miss = node.get("/object", &[]).await;
    assert_eq!(miss.status, 200, "{miss:?}");
    let hit = node.get("/object", &[]).await;
    let cs = hit.cache_status();
    assert!(cs.has("hit"), "{hit:?}");
    assert_eq!(origin.count("/object"), 1);
    node.shutdown().await;
    cs.ttl()
        .unwrap_or_else(|| panic!("a hit reports ttl: {}", cs.raw))
}

fn assert_about(ttl: i64, expected: i64, why: &str) {
    assert!(
        (expected - 3..=expected).contains(&ttl),
        "{why}: ttl={ttl}, expected about {expected}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_ttl_applies_when_the_origin_says_nothing() {
    assert_about(ttl_of(Reply::ok("plain")).await, 3600, "default_ttl");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_max_age_within_bounds_is_honoured() {
    let ttl = ttl_of(Reply::ok("x").cache_control("max-age=600")).await;
    assert_about(ttl, 600, "max-age");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_ttl_caps_the_origin() {
    let ttl = ttl_of(Reply::ok("x").cache_control("max-age=31536000")).await;
    assert_about(ttl, 86_400, "max_ttl");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_ttl_raises_the_origin() {
    let ttl = ttl_of(Reply::ok("x").cache_control("max-age=5")).await;
    assert_about(ttl, 60, "min_ttl");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_maxage_wins_over_max_age() {
    let ttl = ttl_of(Reply::ok("x").cache_control("max-age=120, s-maxage=900")).await;
    assert_about(ttl, 900, "s-maxage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdn_cache_control_wins_over_cache_control() {
    let ttl = ttl_of(
        Reply::ok("x")
            .cache_control("max-age=120, s-maxage=300")
            .header("cdn-cache-control", "max-age=1200"),
    )
    .await;
    assert_about(ttl, 1200, "CDN-Cache-Control (RFC 9213)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_from_upstream_counts_against_freshness() {
    let origin = Origin::start().await;
    origin.route("/aged", |_, _| {
        Reply::ok("x")
            .cache_control("max-age=600")
            .header("age", "100")
    });
    let node = start_node(&origin, BOUNDED).await;
    node.get("/aged", &[]).await;
    let hit = node.get("/aged", &[]).await;
    assert!(hit.cache_status().has("hit"), "{hit:?}");
    assert_about(
        hit.cache_status().ttl().unwrap_or(0),
        500,
        "max-age minus Age",
    );
    let age = hit.age().expect("Age on a hit");
    assert!(
        (100..=103).contains(&age),
        "Age includes the upstream Age: {hit:?}"
    );
    assert_eq!(origin.count("/aged"), 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_store_is_not_stored() {
    let origin = Origin::start().await;
    origin.route("/secret", |_, n| {
        Reply::ok(format!("secret #{n}")).cache_control("no-store")
    });
    // min_ttl 0: CloudFront lets a positive min_ttl override no-store; SPEC.md does not.
    let node = start_node(
        &origin,
        &BOUNDED.replace("min_ttl = \"60s\"", "min_ttl = \"0s\""),
    )
    .await;
    assert_eq!(node.get("/secret", &[]).await.text(), "secret #1");
    let second = node.get("/secret", &[]).await;
    assert_eq!(second.text(), "secret #2", "{second:?}");
    assert!(!second.cache_status().has("hit"), "{second:?}");
    assert_eq!(origin.count("/secret"), 2);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_grows_and_ttl_shrinks_while_an_object_sits_in_the_cache() {
    let origin = Origin::start().await;
    origin.route("/clock", |_, _| Reply::ok("x").cache_control("max-age=600"));
    let node = start_node(&origin, BOUNDED).await;
    node.get("/clock", &[]).await;
    let early = node.get("/clock", &[]).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let later = node.get("/clock", &[]).await;

    let (a0, a1) = (early.age().unwrap_or(0), later.age().unwrap_or(0));
    assert!(a1 >= a0 + 2, "Age went from {a0} to {a1} over 2.1 s");
    let (t0, t1) = (
        early.cache_status().ttl().unwrap_or(0),
        later.cache_status().ttl().unwrap_or(0),
    );
    assert!(t1 <= t0 - 2, "ttl went from {t0} to {t1} over 2.1 s");
    assert_eq!(origin.count("/clock"), 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expires_in_the_future_gives_the_remaining_lifetime() {
    let expires = http_date(900);
    let ttl = ttl_of(Reply::ok("x").header("expires", &expires)).await;
    assert_about(ttl, 900, "Expires - Date");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_older_than_its_max_age_is_stale_on_arrival() {
    let origin = Origin::start().await;
    origin.route("/old", |_, n| {
        Reply::ok(format!("old #{n}"))
            .cache_control("max-age=60")
            .header("age", "120")
    });
    // min_ttl 0 so the policy does not lift it back to fresh.
    let node = start_node(
        &origin,
        &BOUNDED.replace("min_ttl = \"60s\"", "min_ttl = \"0s\""),
    )
    .await;
    node.get("/old", &[]).await;
    let second = node.get("/old", &[]).await;
    assert!(
        !second.cache_status().has("hit") || second.cache_status().ttl().is_some_and(|t| t < 0),
        "{second:?}"
    );
    assert_eq!(
        origin.count("/old"),
        2,
        "a stale entry is not served without asking: {:?}",
        origin.seen()
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_if_cached_on_a_miss_is_504_without_asking_the_origin() {
    let origin = Origin::start().await;
    origin.route("/maybe", |_, _| Reply::ok("x").cache_control("max-age=60"));
    let node = start_node(&origin, BOUNDED).await;

    let r = node
        .get("/maybe", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(r.status, 504, "RFC 9111 §5.2.1.7: {r:?}");
    assert!(origin.seen().is_empty(), "{:?}", origin.seen());
    node.get("/maybe", &[]).await;
    let cached = node
        .get("/maybe", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(cached.status, 200, "{cached:?}");
    assert_eq!(origin.count("/maybe"), 1);
    node.shutdown().await;
}
