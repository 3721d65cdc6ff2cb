//! Revalidation with the origin (a stale entry refreshed by a 304) and viewer conditional and
//! range requests answered from the cache.

mod common;

use common::*;
use std::time::Duration;

/// Cached by the origin's headers, keyed on the path; no minimum TTL so `max-age=1` means it.
const SHORT_TTLS: &str = r#"
[[origins]]
id = "origin"
url = "{origin}"

[cache_policies.OriginHeaders]
min_ttl = "0s"
default_ttl = "1h"
max_ttl = "1d"

[default_behavior]
origin = "origin"
cache_policy = "OriginHeaders"
"#;

/// Long enough for `max-age=1` to have run out even with a Date header rounded down.
const PAST_MAX_AGE_1: Duration = Duration::from_millis(2100);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_entry_is_refreshed_by_a_304_without_fetching_the_body_again() {
    let origin = Origin::start().await;
    origin.route("/doc", |_, n| {
        // The origin answers the revalidation itself: If-None-Match "v1" → 304 with these
        // headers, so X-Revision tells which response's headers the viewer got.
        Reply::ok("the full document, version 1")
            .cache_control("max-age=1")
            .header("etag", "\"v1\"")
            .header("x-revision", &n.to_string())
    });
    let node = start_node(&origin, SHORT_TTLS).await;

    let first = node.get("/doc", &[]).await;
    assert_eq!(first.text(), "the full document, version 1");
    assert_eq!(first.header("x-revision").as_deref(), Some("1"));

    tokio::time::sleep(PAST_MAX_AGE_1).await;
    let refreshed = node.get("/doc", &[]).await;
    assert_eq!(refreshed.status, 200, "{refreshed:?}");
    assert_eq!(
        refreshed.text(),
        "the full document, version 1",
        "{refreshed:?}"
    );
    assert_eq!(
        refreshed.x_cache().as_deref(),
        Some("RefreshHit from strata"),
        "{refreshed:?}"
    );
    let cs = refreshed.cache_status();
    assert_eq!(cs.get("fwd"), Some("stale"), "{}", cs.raw);
    assert_eq!(cs.get("fwd-status"), Some("304"), "{}", cs.raw);
    assert_eq!(
        refreshed.header("x-revision").as_deref(),
        Some("2"),
        "headers of the 304 replace the stored ones: {refreshed:?}"
    );
    assert!(
        refreshed.age().unwrap_or(0) <= 1,
        "Age restarts at the refresh: {refreshed:?}"
    );

    let seen = origin.seen_for("/doc");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].header("if-none-match"), None, "{seen:?}");
    assert_eq!(
        seen[1].header("if-none-match").as_deref(),
        Some("\"v1\""),
        "the refresh must be conditional: {seen:?}"
    );

    let hit = node.get("/doc", &[]).await;
    assert_eq!(hit.text(), "the full document, version 1");
    assert!(
        hit.cache_status().has("hit"),
        "fresh again after the 304: {hit:?}"
    );
    assert_eq!(hit.header("x-revision").as_deref(), Some("2"));
    assert_eq!(origin.count("/doc"), 2);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_entry_replaced_when_the_origin_has_a_new_version() {
    let origin = Origin::start().await;
    origin.route("/news", |_, n| {
        Reply::ok(format!("edition {n}"))
            .cache_control("max-age=1")
            .header("etag", &format!("\"e{n}\""))
    });
    let node = start_node(&origin, SHORT_TTLS).await;

    assert_eq!(node.get("/news", &[]).await.text(), "edition 1");
    tokio::time::sleep(PAST_MAX_AGE_1).await;
    let second = node.get("/news", &[]).await;
    assert_eq!(second.text(), "edition 2", "{second:?}");
    assert_eq!(
        second.cache_status().get("fwd-status"),
        Some("200"),
        "{second:?}"
    );
    let third = node.get("/news", &[]).await;
    assert_eq!(third.text(), "edition 2", "{third:?}");
    assert!(third.cache_status().has("hit"), "{third:?}");
    assert_eq!(
        origin.seen_for("/news")[1]
            .header("if-none-match")
            .as_deref(),
        Some("\"e1\"")
    );
    assert_eq!(origin.count("/news"), 2);
    node.shutdown().await;
}

const LAST_MODIFIED: &str = "Wed, 21 Oct 2015 07:28:00 GMT";

async fn cached_document(origin: &Origin) -> TestNode {
    origin.route("/file.txt", |_, _| {
        Reply::ok("0123456789abcdefghij")
            .cache_control("max-age=600")
            .header("etag", "\"abc\"")
            .header("last-modified", LAST_MODIFIED)
            .header("content-type", "text/plain")
    });
    let node = start_node(origin, SHORT_TTLS).await;
    let prime = node.get("/file.txt", &[]).await;
    assert_eq!(prime.status, 200, "{prime:?}");
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_if_none_match_is_answered_304_from_cache() {
    let origin = Origin::start().await;
    let node = cached_document(&origin).await;

    let matched = node.get("/file.txt", &[("if-none-match", "\"abc\"")]).await;
    assert_eq!(matched.status, 304, "{matched:?}");
    assert!(matched.body.is_empty(), "{matched:?}");
    assert_eq!(
        matched.header("etag").as_deref(),
        Some("\"abc\""),
        "{matched:?}"
    );

    let list = node
        .get("/file.txt", &[("if-none-match", "\"zzz\", W/\"abc\"")])
        .await;
    assert_eq!(
        list.status, 304,
        "weak comparison, any tag of the list: {list:?}"
    );

    let other = node.get("/file.txt", &[("if-none-match", "\"zzz\"")]).await;
    assert_eq!(other.status, 200, "{other:?}");
    assert_eq!(other.text(), "0123456789abcdefghij");

    assert_eq!(
        origin.count("/file.txt"),
        1,
        "all from cache: {:?}",
        origin.seen()
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_if_modified_since_is_answered_304_from_cache() {
    let origin = Origin::start().await;
    let node = cached_document(&origin).await;

    let same = node
        .get("/file.txt", &[("if-modified-since", LAST_MODIFIED)])
        .await;
    assert_eq!(same.status, 304, "{same:?}");
    assert!(same.body.is_empty());
    let later = node
        .get(
            "/file.txt",
            &[("if-modified-since", "Thu, 01 Jan 2026 00:00:00 GMT")],
        )
        .await;
    assert_eq!(later.status, 304, "{later:?}");

    let earlier = node
        .get(
            "/file.txt",
            &[("if-modified-since", "Tue, 20 Oct 2015 07:28:00 GMT")],
        )
        .await;
    assert_eq!(earlier.status, 200, "{earlier:?}");
    assert_eq!(earlier.text(), "0123456789abcdefghij");

    // If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
    let both = node
        .get(
            "/file.txt",
            &[
                ("if-none-match", "\"zzz\""),
                ("if-modified-since", LAST_MODIFIED),
            ],
        )
        .await;
    assert_eq!(both.status, 200, "{both:?}");

    assert_eq!(
        origin.count("/file.txt"),
        1,
        "all from cache: {:?}",
        origin.seen()
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_ranges_are_answered_206_from_cache() {
    let origin = Origin::start().await;
    let node = cached_document(&origin).await;

    let head = node.get("/file.txt", &[("range", "bytes=0-9")]).await;
    assert_eq!(head.status, 206, "{head:?}");
    assert_eq!(head.text(), "0123456789");
    assert_eq!(
        head.header("content-range").as_deref(),
        Some("bytes 0-9/20"),
        "{head:?}"
    );
    assert_eq!(
        head.header("content-length").as_deref(),
        Some("10"),
        "{head:?}"
    );

    let suffix = node.get("/file.txt", &[("range", "bytes=-5")]).await;
    assert_eq!(suffix.status, 206, "{suffix:?}");
    assert_eq!(suffix.text(), "fghij");
    assert_eq!(
        suffix.header("content-range").as_deref(),
        Some("bytes 15-19/20")
    );

    let open = node.get("/file.txt", &[("range", "bytes=18-")]).await;
    assert_eq!(open.status, 206, "{open:?}");
    assert_eq!(open.text(), "ij");

    let if_range_ok = node
        .get(
            "/file.txt",
            &[("range", "bytes=0-9"), ("if-range", "\"abc\"")],
        )
        .await;
    assert_eq!(if_range_ok.status, 206, "{if_range_ok:?}");
    assert_eq!(if_range_ok.text(), "0123456789");

    let if_range_stale = node
        .get(
            "/file.txt",
            &[("range", "bytes=0-9"), ("if-range", "\"old\"")],
        )
        .await;
    assert_eq!(
        if_range_stale.status, 200,
        "If-Range mismatch → full body: {if_range_stale:?}"
    );
    assert_eq!(if_range_stale.text(), "0123456789abcdefghij");

    assert_eq!(
        origin.count("/file.txt"),
        1,
        "all from cache: {:?}",
        origin.seen()
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiple_ranges_are_multipart_byteranges() {
    let origin = Origin::start().await;
    let node = cached_document(&origin).await;

    let multi = node.get("/file.txt", &[("range", "bytes=0-1,10-11")]).await;
    assert_eq!(multi.status, 206, "{multi:?}");
    let ctype = multi.header("content-type").unwrap_or_default();
    assert!(ctype.starts_with("multipart/byteranges"), "{multi:?}");
    let boundary = ctype
        .split("boundary=")
        .nth(1)
        .unwrap_or_else(|| panic!("no boundary in `{ctype}`"))
        .trim_matches('"');
    let body = multi.text();
    assert_eq!(
        body.matches(&format!("--{boundary}\r\n")).count(),
        2,
        "{body}"
    );
    assert!(body.contains(&format!("--{boundary}--")), "{body}");
    let lower = body.to_ascii_lowercase();
    assert!(lower.contains("content-range: bytes 0-1/20\r\n"), "{body}");
    assert!(
        lower.contains("content-range: bytes 10-11/20\r\n"),
        "{body}"
    );
    assert!(body.contains("\r\n\r\n01\r\n"), "{body}");
    assert!(body.contains("\r\n\r\nab\r\n"), "{body}");
    assert_eq!(origin.count("/file.txt"), 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsatisfiable_range_is_416_from_cache() {
    let origin = Origin::start().await;
    let node = cached_document(&origin).await;

    let r = node.get("/file.txt", &[("range", "bytes=100-200")]).await;
    assert_eq!(r.status, 416, "{r:?}");
    assert_eq!(
        r.header("content-range").as_deref(),
        Some("bytes */20"),
        "{r:?}"
    );
    assert_eq!(origin.count("/file.txt"), 1);
    node.shutdown().await;
}
