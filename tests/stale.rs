//! Serving stale (RFC 5861): stale-while-revalidate answers at once and refreshes in the
//! background, once; stale-if-error covers an origin that is down or failing.

mod common;

use common::*;
use futures_util::future::join_all;
use std::time::{Duration, Instant};

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
async fn stale_while_revalidate_answers_at_once_and_refreshes_once() {
    let origin = Origin::start().await;
    let slow_refresh = Duration::from_millis(1500);
    // The refresh answers with a longer max-age: RFC 9111 §4.2.3 adds the response delay
    // (1.5 s) to the age, so a refreshed `max-age=1` would be stale on arrival.
    origin.route("/feed", move |_, n| {
        if n == 1 {
            Reply::ok(format!("feed v{n}")).cache_control("max-age=1, stale-while-revalidate=60")
        } else {
            Reply::ok(format!("feed v{n}"))
                .cache_control("max-age=60, stale-while-revalidate=60")
                .delay(slow_refresh)
        }
    });
    let node = start_node(&origin, SHORT_TTLS).await;

    assert_eq!(node.get("/feed", &[]).await.text(), "feed v1");
    tokio::time::sleep(PAST_MAX_AGE_1).await;

    // Five viewers arrive while the entry is stale: all get the stale body without waiting
    // for the origin's 1.5 s.
    let stale = join_all((0..5).map(|_| node.get("/feed", &[]))).await;
    for r in &stale {
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.text(), "feed v1", "{r:?}");
        assert!(
            r.elapsed < Duration::from_millis(500),
            "stale-while-revalidate must not wait for the origin: {r:?}"
        );
        let cs = r.cache_status();
        assert!(cs.has("hit"), "{}", cs.raw);
        assert_eq!(
            cs.get("detail"),
            Some("stale-while-revalidate"),
            "{}",
            cs.raw
        );
        assert!(
            cs.ttl().is_some_and(|t| t <= 0),
            "a stale hit has ttl <= 0: {}",
            cs.raw
        );
    }

    // The background refresh lands; until it does, viewers keep getting v1 and no second
    // refresh starts.
    origin
        .wait_for_count("/feed", 2, Duration::from_secs(2))
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = node.get("/feed", &[]).await;
        if r.text() == "feed v2" {
            assert!(
                r.cache_status().has("hit"),
                "the refreshed entry is fresh: {r:?}"
            );
            break;
        }
        assert_eq!(r.text(), "feed v1", "{r:?}");
        assert!(Instant::now() < deadline, "the refresh never landed: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        origin.count("/feed"),
        2,
        "exactly one refresh for all the stale hits: {:?}",
        origin.seen()
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_serves_the_stale_body_when_the_origin_is_down() {
    let origin = Origin::start().await;
    origin.route("/menu", |_, _| {
        Reply::ok("today's menu").cache_control("max-age=1, stale-if-error=60")
    });
    let node = start_node(&origin, SHORT_TTLS).await;

    assert_eq!(node.get("/menu", &[]).await.text(), "today's menu");
    origin.stop();
    tokio::time::sleep(PAST_MAX_AGE_1).await;

    let r = node.get("/menu", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "today's menu", "{r:?}");
    let cs = r.cache_status();
    assert!(cs.has("hit"), "{}", cs.raw);
    assert_eq!(cs.get("detail"), Some("stale-if-error"), "{}", cs.raw);
    assert!(cs.ttl().is_some_and(|t| t < 0), "{}", cs.raw);
    assert_eq!(origin.count("/menu"), 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_serves_the_stale_body_when_the_origin_fails() {
    let origin = Origin::start().await;
    origin.route("/menu", |_, n| {
        if n == 1 {
            Reply::ok("today's menu").cache_control("max-age=1, stale-if-error=60")
        } else {
            Reply::status(503, "origin overloaded")
        }
    });
    let node = start_node(&origin, SHORT_TTLS).await;

    assert_eq!(node.get("/menu", &[]).await.text(), "today's menu");
    tokio::time::sleep(PAST_MAX_AGE_1).await;

    let r = node.get("/menu", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "today's menu", "{r:?}");
    assert_eq!(
        r.cache_status().get("detail"),
        Some("stale-if-error"),
        "{r:?}"
    );
    assert_eq!(
        origin.count("/menu"),
        2,
        "the node did ask the origin: {:?}",
        origin.seen()
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_stale_if_error_a_failing_origin_is_passed_on() {
    let origin = Origin::start().await;
    origin.route("/menu", |_, n| {
        if n == 1 {
            Reply::ok("today's menu").cache_control("max-age=1")
        } else {
            Reply::status(503, "origin overloaded")
        }
    });
    let node = start_node(&origin, SHORT_TTLS).await;

    assert_eq!(node.get("/menu", &[]).await.text(), "today's menu");
    tokio::time::sleep(PAST_MAX_AGE_1).await;

    let r = node.get("/menu", &[]).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.text(), "origin overloaded", "{r:?}");
    assert_eq!(origin.count("/menu"), 2);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_covers_an_origin_that_times_out() {
    let origin = Origin::start().await;
    origin.route("/menu", |_, n| {
        let reply = Reply::ok(format!("menu v{n}")).cache_control("max-age=1, stale-if-error=60");
        if n == 1 {
            reply
        } else {
            reply.delay(Duration::from_secs(3))
        }
    });
    let node = start_node(
        &origin,
        &SHORT_TTLS.replace(
            "url = \"{origin}\"",
            "url = \"{origin}\"\nresponse_timeout = \"300ms\"",
        ),
    )
    .await;

    assert_eq!(node.get("/menu", &[]).await.text(), "menu v1");
    tokio::time::sleep(PAST_MAX_AGE_1).await;
    let r = node.get("/menu", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "menu v1", "{r:?}");
    assert_eq!(
        r.cache_status().get("detail"),
        Some("stale-if-error"),
        "{r:?}"
    );
    assert!(r.elapsed < Duration::from_millis(2000), "{r:?}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn must_revalidate_is_never_served_stale_when_the_origin_is_down() {
    let origin = Origin::start().await;
    origin.route("/balance", |_, _| {
        Reply::ok("balance: 100").cache_control("max-age=1, must-revalidate")
    });
    let node = start_node(&origin, SHORT_TTLS).await;

    assert_eq!(node.get("/balance", &[]).await.text(), "balance: 100");
    origin.stop();
    tokio::time::sleep(PAST_MAX_AGE_1).await;
    let r = node.get("/balance", &[]).await;
    assert!(
        r.status.is_server_error(),
        "RFC 9111 §5.2.2.2: an error, not the stale body: {r:?}"
    );
    assert_ne!(r.text(), "balance: 100", "{r:?}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_ends_when_its_window_does() {
    let origin = Origin::start().await;
    origin.route("/menu", |_, _| {
        Reply::ok("today's menu").cache_control("max-age=1, stale-if-error=1")
    });
    let node = start_node(&origin, SHORT_TTLS).await;

    assert_eq!(node.get("/menu", &[]).await.text(), "today's menu");
    origin.stop();
    // max-age 1 s + stale-if-error 1 s, plus a second for the Date header's rounding.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let r = node.get("/menu", &[]).await;
    assert_eq!(
        r.status, 502,
        "past stale-if-error the origin's failure shows: {r:?}"
    );
    node.shutdown().await;
}
