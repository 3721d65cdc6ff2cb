//! The basic cache: a miss is stored and the next request is served from the cache without
//! going to the origin; headers the node adds; Vary; unsafe methods invalidate.

mod common;

use common::*;

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
    assert!(node.get("/item", &[]).await.cache_status().has("hit"));

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
