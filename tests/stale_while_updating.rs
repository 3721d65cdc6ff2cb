//! `node.stale_while_updating`: while one refresh of a stale object is in flight, other
//! viewers get the stale copy at once (Varnish's grace, nginx's `use_stale updating`), and
//! the origin still sees exactly one conditional request. Responses that forbid serving
//! stale never are.

mod common;

use common::*;
use futures_util::future::join_all;
use std::time::Duration;

const CONFIG: &str = r#"
[[origins]]
id = "origin"
url = "{origin}"

[default_behavior]
origin = "origin"
cache_policy = "UseOriginCacheControlHeaders"
"#;

/// `max-age=1` has surely run out after this (Date is rounded down to the second).
const PAST_MAX_AGE_1: Duration = Duration::from_millis(2100);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_get_stale_while_one_refresh_runs() {
    let origin = Origin::start().await;
    origin.route("/page", |_, n| {
        let r = Reply::ok(format!("page v{n}"))
            .cache_control("public, max-age=1")
            .header("etag", "\"v1\"");
        if n == 1 {
            r
        } else {
            r.delay(Duration::from_millis(800))
        }
    });
    let node = start_node(&origin, CONFIG).await;
    assert_eq!(node.get("/page", &[]).await.text(), "page v1");
    tokio::time::sleep(PAST_MAX_AGE_1).await;

    // The first viewer leads the refresh and waits for it; the ones after it do not wait.
    let leader = node.get("/page", &[]);
    let others = async {
        origin
            .wait_for_count("/page", 2, Duration::from_secs(2))
            .await;
        join_all((0..20).map(|_| node.get("/page", &[]))).await
    };
    let (leader, others) = tokio::join!(leader, others);
    for r in &others {
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.text(), "page v1", "{r:?}");
        assert!(
            r.elapsed < Duration::from_millis(400),
            "served without waiting: {r:?}"
        );
        assert_eq!(
            r.cache_status().get("detail"),
            Some("stale-while-updating"),
            "{r:?}"
        );
    }
    assert_eq!(leader.status, 200, "{leader:?}");
    let refreshes = origin.seen_for("/page");
    assert_eq!(
        refreshes.len(),
        2,
        "one refresh for everyone: {:?}",
        origin.seen()
    );
    assert_eq!(
        refreshes[1].header("if-none-match").as_deref(),
        Some("\"v1\""),
        "the refresh is conditional"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn must_revalidate_responses_are_never_served_stale() {
    let origin = Origin::start().await;
    origin.route("/strict", |_, n| {
        let r =
            Reply::ok(format!("strict v{n}")).cache_control("public, max-age=1, must-revalidate");
        if n == 1 {
            r
        } else {
            r.delay(Duration::from_millis(500))
        }
    });
    let node = start_node(&origin, CONFIG).await;
    assert_eq!(node.get("/strict", &[]).await.text(), "strict v1");
    tokio::time::sleep(PAST_MAX_AGE_1).await;

    let all = join_all((0..10).map(|_| node.get("/strict", &[]))).await;
    for r in &all {
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.text(),
            "strict v2",
            "must-revalidate: nobody gets the stale body: {r:?}"
        );
    }
    assert_eq!(
        origin.count("/strict"),
        2,
        "still one refresh: {:?}",
        origin.seen()
    );
    node.shutdown().await;
}
