//! The basic cache: a miss is stored and the next request is served from the cache without
//! going to the origin; headers the node adds; Vary; unsafe methods invalidate.

mod common;

use common::*;
use std::time::Duration;

/// One origin, everything cached by the origin's headers (one day when it says nothing),
/// keyed on the path only.
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
async fn second_request_is_a_hit_served_without_the_origin() {
    let origin = Origin::start().await;
    origin.route("/hello", |_, n| {
        Reply::ok(format!("hello, viewer (origin response #{n})"))
            .cache_control("max-age=60")
            .header("content-type", "text/plain")
    });
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    let first = node.get("/hello", &[]).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.text(), "hello, viewer (origin response #1)");
    assert_eq!(
        first.x_cache().as_deref(),
        Some("Miss from strata"),
        "{first:?}"
    );
    let cs = first.cache_status();
    assert_eq!(cs.get("fwd"), Some("miss"), "{}", cs.raw);
    assert_eq!(cs.get("fwd-status"), Some("200"), "{}", cs.raw);
    assert!(cs.has("stored"), "{}", cs.raw);
    assert_via(&first);
    assert_eq!(origin.count("/hello"), 1);

    let second = node.get("/hello", &[]).await;
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(second.text(), "hello, viewer (origin response #1)");
    assert_eq!(second.header("content-type").as_deref(), Some("text/plain"));
    assert_eq!(
        second.x_cache().as_deref(),
        Some("Hit from strata"),
        "{second:?}"
    );
    let cs = second.cache_status();
    assert!(cs.has("hit"), "{}", cs.raw);
    assert!(
        cs.get("fwd").is_none(),
        "a hit is not forwarded: {}",
        cs.raw
    );
    let ttl = cs.ttl().expect("a hit reports its remaining ttl");
    assert!((57..=60).contains(&ttl), "ttl={ttl} in {}", cs.raw);
    let age = second.age().expect("a hit carries Age");
    assert!(age <= 2, "Age {age} right after the fill: {second:?}");
    assert_via(&second);

    assert_eq!(
        origin.count("/hello"),
        1,
        "the hit must not reach the origin: {:?}",
        origin.seen()
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_after_get_is_a_hit_without_a_body() {
    let origin = Origin::start().await;
    origin.route("/page", |_, _| {
        Reply::ok("page body").cache_control("max-age=60")
    });
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    assert_eq!(node.get("/page", &[]).await.status, 200);
    let head = node.request("HEAD", "/page", &[], "").await;
    assert_eq!(head.status, 200, "{head:?}");
    assert!(head.body.is_empty(), "HEAD has no body: {head:?}");
    assert_eq!(
        head.header("content-length").as_deref(),
        Some("9"),
        "{head:?}"
    );
    assert_eq!(
        head.x_cache().as_deref(),
        Some("Hit from strata"),
        "{head:?}"
    );
    assert_eq!(origin.count("/page"), 1, "{:?}", origin.seen());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_viewer_is_served_from_the_same_cache() {
    let origin = Origin::start().await;
    origin.route("/h2", |_, n| {
        Reply::ok(format!("v{n}")).cache_control("max-age=60")
    });
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    let h1 = node.get("/h2", &[]).await;
    assert_eq!(h1.text(), "v1");
    let h2 = node.get_h2c("/h2", &[]).await;
    assert_eq!(h2.status, 200, "{h2:?}");
    assert_eq!(h2.text(), "v1", "{h2:?}");
    assert!(h2.cache_status().has("hit"), "{h2:?}");
    assert_eq!(origin.count("/h2"), 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_variants_are_cached_apart() {
    let origin = Origin::start().await;
    origin.route("/greeting", |req, _| {
        let body = match req.header("accept-language").as_deref() {
            Some("fr") => "bonjour",
            Some("en") => "hello",
            _ => "hi",
        };
        Reply::ok(body)
            .cache_control("max-age=60")
            .header("vary", "Accept-Language")
    });
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    let en = node.get("/greeting", &[("accept-language", "en")]).await;
    assert_eq!(en.text(), "hello", "{en:?}");
    let fr = node.get("/greeting", &[("accept-language", "fr")]).await;
    assert_eq!(
        fr.text(),
        "bonjour",
        "the en variant must not answer fr: {fr:?}"
    );
    assert_eq!(fr.x_cache().as_deref(), Some("Miss from strata"), "{fr:?}");

    let en = node.get("/greeting", &[("accept-language", "en")]).await;
    assert_eq!(en.text(), "hello", "{en:?}");
    assert!(en.cache_status().has("hit"), "{en:?}");
    let fr = node.get("/greeting", &[("accept-language", "fr")]).await;
    assert_eq!(fr.text(), "bonjour", "{fr:?}");
    assert!(fr.cache_status().has("hit"), "{fr:?}");

    let seen = origin.seen_for("/greeting");
    assert_eq!(seen.len(), 2, "one fill per variant: {seen:?}");
    assert_eq!(seen[0].header("accept-language").as_deref(), Some("en"));
    assert_eq!(seen[1].header("accept-language").as_deref(), Some("fr"));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_star_is_never_stored() {
    let origin = Origin::start().await;
    origin.route("/star", |_, n| {
        Reply::ok(format!("v{n}"))
            .cache_control("max-age=60")
            .header("vary", "*")
    });
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    let first = node.get("/star", &[]).await;
    assert_eq!(first.text(), "v1");
    assert!(!first.cache_status().has("stored"), "{first:?}");
    let second = node.get("/star", &[]).await;
    assert_eq!(
        second.text(),
        "v2",
        "Vary: * must not be served from cache: {second:?}"
    );
    assert!(!second.cache_status().has("hit"), "{second:?}");
    assert_eq!(origin.count("/star"), 2);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_to_a_cached_url_invalidates_it() {
    let origin = Origin::start().await;
    origin.route("/item", |req, n| {
        if req.method == "POST" {
            Reply::ok("updated")
        } else {
            Reply::ok(format!("item v{n}")).cache_control("max-age=600")
        }
    });
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    assert_eq!(node.get("/item", &[]).await.text(), "item v1");
    let hit = node.get("/item", &[]).await;
    assert!(hit.cache_status().has("hit"), "{hit:?}");

    let post = node.request("POST", "/item", &[], "name=new").await;
    assert_eq!(post.status, 200, "{post:?}");
    assert_eq!(post.text(), "updated");
    assert_eq!(post.cache_status().get("fwd"), Some("method"), "{post:?}");

    let after = node.get("/item", &[]).await;
    assert_eq!(
        after.text(),
        "item v3",
        "the POST must invalidate the entry: {after:?}"
    );
    assert_eq!(
        after.x_cache().as_deref(),
        Some("Miss from strata"),
        "{after:?}"
    );
    let methods: Vec<String> = origin
        .seen_for("/item")
        .iter()
        .map(|s| s.method.to_string())
        .collect();
    assert_eq!(methods, ["GET", "POST", "GET"]);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_headers_policy_sets_and_removes_on_miss_and_hit() {
    let origin = Origin::start().await;
    origin.route("/styled", |_, _| {
        Reply::ok("styled")
            .cache_control("max-age=60")
            .header("x-powered-by", "php/5")
            .header("x-frame-options", "ALLOW")
    });
    let node = start_node(
        &origin,
        r#"
[[origins]]
id = "origin"
url = "{origin}"

[default_behavior]
origin = "origin"
cache_policy = "CachingOptimized"
response_headers = { set = { "X-Frame-Options" = "DENY", "Strict-Transport-Security" = "max-age=31536000" }, remove = ["X-Powered-By"] }
"#,
    )
    .await;

    for expected in ["Miss from strata", "Hit from strata"] {
        let r = node.get("/styled", &[]).await;
        assert_eq!(r.x_cache().as_deref(), Some(expected), "{r:?}");
        assert_eq!(
            r.header("x-frame-options").as_deref(),
            Some("DENY"),
            "{r:?}"
        );
        assert_eq!(
            r.header("strict-transport-security").as_deref(),
            Some("max-age=31536000"),
            "{r:?}"
        );
        assert_eq!(r.header("x-powered-by"), None, "{r:?}");
        assert_eq!(r.text(), "styled");
    }
    assert_eq!(origin.count("/styled"), 1);
    node.shutdown().await;
}

/// Bytes that differ at every offset, so a misplaced chunk shows.
fn patterned(len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_body_arrives_intact_on_miss_and_hit() {
    let origin = Origin::start().await;
    let body = bytes::Bytes::from(patterned(3 * 1024 * 1024 + 17));
    let served = body.clone();
    origin.route("/video.bin", move |_, _| {
        Reply::ok(served.clone())
            .cache_control("max-age=60")
            .header("content-type", "application/octet-stream")
    });
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    let miss = node.get("/video.bin", &[]).await;
    assert_eq!(miss.status, 200);
    assert!(
        miss.body == body,
        "miss: {} bytes, corrupted or short",
        miss.body.len()
    );
    let hit = node.get("/video.bin", &[]).await;
    assert!(hit.cache_status().has("hit"), "{hit:?}");
    assert!(
        hit.body == body,
        "hit: {} bytes, corrupted or short",
        hit.body.len()
    );

    let mid = node
        .get("/video.bin", &[("range", "bytes=1048576-1048591")])
        .await;
    assert_eq!(mid.status, 206, "{mid:?}");
    assert_eq!(&mid.body[..], &body[1_048_576..1_048_592]);
    assert_eq!(origin.count("/video.bin"), 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_streamed_miss_reaches_the_viewer_as_it_arrives_and_is_stored_whole() {
    let origin = Origin::start().await;
    let body = bytes::Bytes::from(patterned(64 * 1024));
    let served = body.clone();
    origin.route("/stream", move |_, _| {
        Reply::ok(served.clone())
            .cache_control("max-age=60")
            .streamed(4, Duration::from_millis(300))
    });
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    let miss = node.get("/stream", &[]).await;
    assert!(miss.body == body, "{miss:?}");
    assert!(
        miss.headers_after < Duration::from_millis(250),
        "the node waited for the whole body ({:?}) before answering",
        miss.headers_after
    );
    assert!(miss.elapsed >= Duration::from_millis(850), "{miss:?}");

    let hit = node.get("/stream", &[]).await;
    assert!(
        hit.cache_status().has("hit"),
        "a chunked response is stored too: {hit:?}"
    );
    assert!(hit.body == body, "{hit:?}");
    assert_eq!(
        hit.header("content-length").as_deref(),
        Some(body.len().to_string().as_str()),
        "a hit knows its length: {hit:?}"
    );
    assert_eq!(origin.count("/stream"), 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_with_explicit_freshness_is_cached() {
    let origin = Origin::start().await;
    origin.route("/gone", |_, n| {
        Reply::status(404, format!("not here #{n}")).cache_control("max-age=60")
    });
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    assert_eq!(node.get("/gone", &[]).await.status, 404);
    let again = node.get("/gone", &[]).await;
    assert_eq!(again.status, 404, "{again:?}");
    assert_eq!(again.text(), "not here #1");
    assert!(again.cache_status().has("hit"), "{again:?}");
    assert_eq!(origin.count("/gone"), 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_without_freshness_is_not_cached() {
    let origin = Origin::start().await;
    origin.route("/flaky", |_, n| Reply::status(500, format!("broken #{n}")));
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    assert_eq!(node.get("/flaky", &[]).await.text(), "broken #1");
    let again = node.get("/flaky", &[]).await;
    assert_eq!(again.status, 500);
    assert_eq!(
        again.text(),
        "broken #2",
        "a 500 is not served from cache: {again:?}"
    );
    assert_eq!(origin.count("/flaky"), 2);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_request_invalidates_the_location_it_names() {
    let origin = Origin::start().await;
    origin.route("/items/5", |_, n| {
        Reply::ok(format!("item 5 v{n}")).cache_control("max-age=600")
    });
    origin.route("/items", |_, _| {
        Reply::status(201, "created").header("location", "/items/5")
    });
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    assert_eq!(node.get("/items/5", &[]).await.text(), "item 5 v1");
    assert!(node.get("/items/5", &[]).await.cache_status().has("hit"));
    let created = node.request("POST", "/items", &[], "{}").await;
    assert_eq!(created.status, 201, "{created:?}");

    let after = node.get("/items/5", &[]).await;
    assert_eq!(
        after.text(),
        "item 5 v2",
        "Location is invalidated (RFC 9111 §4.4): {after:?}"
    );
    assert_eq!(origin.count("/items/5"), 2);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_unsafe_request_does_not_invalidate() {
    let origin = Origin::start().await;
    origin.route("/doc", |req, n| {
        if req.method == "DELETE" {
            Reply::status(500, "could not delete")
        } else {
            Reply::ok(format!("doc v{n}")).cache_control("max-age=600")
        }
    });
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    assert_eq!(node.get("/doc", &[]).await.text(), "doc v1");
    assert_eq!(node.request("DELETE", "/doc", &[], "").await.status, 500);
    let after = node.get("/doc", &[]).await;
    assert_eq!(
        after.text(),
        "doc v1",
        "an error response invalidates nothing: {after:?}"
    );
    assert!(after.cache_status().has("hit"), "{after:?}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_miss_then_get_returns_the_full_body() {
    let origin = Origin::start().await;
    origin.route("/doc", |_, _| {
        Reply::ok("the document body").cache_control("max-age=60")
    });
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    let head = node.request("HEAD", "/doc", &[], "").await;
    assert_eq!(head.status, 200, "{head:?}");
    assert!(head.body.is_empty());
    let get = node.get("/doc", &[]).await;
    assert_eq!(get.status, 200, "{get:?}");
    assert_eq!(
        get.text(),
        "the document body",
        "a HEAD fill must not leave an empty body: {get:?}"
    );
    let again = node.get("/doc", &[]).await;
    assert_eq!(again.text(), "the document body", "{again:?}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_response_headers_do_not_reach_the_viewer() {
    let origin = Origin::start().await;
    origin.route("/page", |_, _| {
        Reply::ok("page")
            .cache_control("max-age=60")
            .header("connection", "x-origin-internal")
            .header("x-origin-internal", "secret routing data")
            .header("keep-alive", "timeout=5")
            .header("x-kept", "end to end")
    });
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    for expected in ["Miss from strata", "Hit from strata"] {
        let r = node.get("/page", &[]).await;
        assert_eq!(r.x_cache().as_deref(), Some(expected), "{r:?}");
        assert_eq!(r.header("x-origin-internal"), None, "{r:?}");
        assert_eq!(r.header("keep-alive"), None, "{r:?}");
        assert_eq!(r.header("x-kept").as_deref(), Some("end to end"), "{r:?}");
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_short_by_the_origin_is_not_stored() {
    let origin = Origin::start().await;
    let body = "x".repeat(100_000);
    let served = body.clone();
    origin.route("/big", move |_, n| {
        let reply = Reply::ok(served.clone()).cache_control("max-age=60");
        if n == 1 {
            reply.truncated_at(10_000)
        } else {
            reply
        }
    });
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    // The viewer's connection may break off (as it should) or end short; it must never
    // look complete.
    if let Ok(r) = node.try_get("/big", &[]).await {
        assert!(
            r.body.len() < body.len(),
            "the viewer cannot have received a body the origin never sent: {r:?}"
        );
    }
    let second = node.get("/big", &[]).await;
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(
        second.body.len(),
        body.len(),
        "the truncated body was not served from cache"
    );
    assert!(!second.cache_status().has("hit"), "{second:?}");
    assert_eq!(origin.count("/big"), 2);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_after_a_complete_miss_is_always_a_hit() {
    // Once a viewer has the whole response, the fill is over: the next request is a hit,
    // never a waiter on a fill that has nothing left to send.
    let origin = Origin::start().await;
    for i in 0..200 {
        origin.route(&format!("/o{i}"), |_, _| {
            Reply::ok("small object").cache_control("max-age=60")
        });
    }
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    let mut not_hits = Vec::new();
    for i in 0..200 {
        let path = format!("/o{i}");
        let miss = node.get(&path, &[]).await;
        assert_eq!(miss.text(), "small object");
        let next = node.get(&path, &[]).await;
        if !next.cache_status().has("hit") {
            not_hits.push(format!("{path}: {}", next.cache_status().raw));
        }
    }
    assert!(
        not_hits.is_empty(),
        "{} of 200 follow-up requests were not hits: {not_hits:?}",
        not_hits.len()
    );
    assert_eq!(origin.seen().len(), 200);
    node.shutdown().await;
}
