//! What a viewer gets when something is wrong: with the request (400, 431, 403, 508) or with
//! the origin (502, 504). Each is a short text/plain answer made by the node.

mod common;

use common::*;
use std::time::Duration;

const PLAIN: &str = r#"
[[origins]]
id = "origin"
url = "{origin}"

[default_behavior]
origin = "origin"
cache_policy = "CachingOptimized"
"#;

fn assert_short_text(status: u16, content_type: Option<&str>, body: &[u8]) {
    assert!(
        content_type.is_some_and(|t| t.starts_with("text/plain")),
        "{status}: Content-Type {content_type:?}, expected text/plain"
    );
    assert!(
        !body.is_empty() && body.len() < 1024,
        "{status}: expected a short explanation, got {} bytes: {:?}",
        body.len(),
        String::from_utf8_lossy(body)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_that_already_passed_this_node_is_refused_with_508() {
    let origin = Origin::start().await;
    origin.route("/loop", |_, _| Reply::ok("should not be asked"));
    let node = start_node(&origin, PLAIN).await;

    for via in [
        "1.1 test-node (strata)",
        "1.1 pop-lhr-1 (strata), 1.1 test-node (strata), 1.1 regional (strata)",
    ] {
        let r = node.get("/loop", &[("via", via)]).await;
        assert_eq!(r.status, 508, "Via `{via}`: {r:?}");
        assert_short_text(508, r.header("content-type").as_deref(), &r.body);
    }
    // Another node's name, or this name inside a longer one, is not a loop.
    let other = node
        .get("/loop", &[("via", "1.1 test-node-2 (strata)")])
        .await;
    assert_eq!(other.status, 200, "{other:?}");
    assert_eq!(origin.count("/loop"), 1, "{:?}", origin.seen());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_line_is_400() {
    let origin = Origin::start().await;
    let node = start_node(&origin, PLAIN).await;

    let r = node.raw(b"this is not http\r\n\r\n").await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_short_text(400, r.header("content-type"), &r.body);
    assert!(origin.seen().is_empty(), "{:?}", origin.seen());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_headers_over_64_kib_are_431() {
    let origin = Origin::start().await;
    origin.route("/big", |_, _| Reply::ok("should not be asked"));
    let node = start_node(&origin, PLAIN).await;

    let big = "a".repeat(70 * 1024);
    let request = format!(
        "GET /big HTTP/1.1\r\nHost: strata.test\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"
    );
    let r = node.raw(request.as_bytes()).await;
    assert_eq!(r.status, 431, "{} {:?} {:?}", r.status, r.headers, r.text());
    assert_short_text(431, r.header("content-type"), &r.body);

    // Just under the limit is served.
    let fine = "a".repeat(60 * 1024);
    let request = format!(
        "GET /big HTTP/1.1\r\nHost: strata.test\r\nX-Big: {fine}\r\nConnection: close\r\n\r\n"
    );
    let r = node.raw(request.as_bytes()).await;
    assert_eq!(r.status, 200, "{} {:?} {:?}", r.status, r.headers, r.text());
    assert_eq!(
        origin.count("/big"),
        1,
        "only the request under the limit reached the origin"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_origin_is_502() {
    let origin = Origin::start().await;
    origin.stop();
    let node = start_node(&origin, PLAIN).await;

    let r = node.get("/anything", &[]).await;
    assert_eq!(r.status, 502, "{r:?}");
    assert_short_text(502, r.header("content-type").as_deref(), &r.body);
    assert_eq!(r.x_cache().as_deref(), Some("Error from strata"), "{r:?}");
    assert_via(&r);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_slower_than_response_timeout_is_504() {
    let origin = Origin::start().await;
    origin.route("/slow", |_, _| {
        Reply::ok("too late").delay(Duration::from_secs(3))
    });
    let node = start_node(
        &origin,
        r#"
[[origins]]
id = "origin"
url = "{origin}"
response_timeout = "300ms"

[default_behavior]
origin = "origin"
cache_policy = "CachingOptimized"
"#,
    )
    .await;

    let r = node.get("/slow", &[]).await;
    assert_eq!(r.status, 504, "{r:?}");
    assert_short_text(504, r.header("content-type").as_deref(), &r.body);
    assert_eq!(r.x_cache().as_deref(), Some("Error from strata"), "{r:?}");
    assert!(
        r.elapsed < Duration::from_millis(2000),
        "the timeout is 300 ms, the answer took {:?}",
        r.elapsed
    );
    assert_eq!(origin.count("/slow"), 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_not_allowed_on_the_behaviour_is_403() {
    let origin = Origin::start().await;
    origin.route("/static/app.js", |_, _| {
        Reply::ok("js").cache_control("max-age=60")
    });
    let node = start_node(
        &origin,
        r#"
[[origins]]
id = "origin"
url = "{origin}"

[[behaviors]]
path = "/static/*"
origin = "origin"
cache_policy = "CachingOptimized"
allowed_methods = ["GET", "HEAD"]

[default_behavior]
origin = "origin"
cache_policy = "CachingOptimized"
"#,
    )
    .await;

    for method in ["DELETE", "POST", "PUT"] {
        let r = node.request(method, "/static/app.js", &[], "x").await;
        assert_eq!(r.status, 403, "{method}: {r:?}");
        assert_short_text(403, r.header("content-type").as_deref(), &r.body);
    }
    assert!(origin.seen().is_empty(), "{:?}", origin.seen());
    assert_eq!(node.get("/static/app.js", &[]).await.status, 200);
    node.shutdown().await;
}
