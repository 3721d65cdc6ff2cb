//! The admin listener as an operator sees it: health and the metrics that count what the
//! cache did.

mod common;

use common::*;
use futures_util::future::join_all;
use std::time::Duration;

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

/// The value of the sample `name{labels}` whose labels include every `want` pair.
fn sample(metrics: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            let (n, labels) = series.split_once('{').unwrap_or((series, ""));
            n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|(_, v)| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_answer_200() {
    let origin = Origin::start().await;
    let node = start_node(&origin, CACHE_EVERYTHING).await;
    assert_eq!(node.admin_get("/healthz").await.status, 200);
    // Ready once the store's index is loaded (its tail replay runs in the background).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let status = node.admin_get("/readyz").await.status;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "not ready yet is 503");
        assert!(std::time::Instant::now() < deadline, "never became ready");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_hits_misses_origin_requests_and_coalescing() {
    let origin = Origin::start().await;
    origin.route("/counted", |_, _| {
        Reply::ok("x")
            .cache_control("max-age=60")
            .delay(Duration::from_millis(200))
    });
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    // Three viewers at once: one miss that fills, two collapsed onto it; then one hit.
    join_all((0..3).map(|_| node.get("/counted", &[]))).await;
    assert!(node.get("/counted", &[]).await.cache_status().has("hit"));
    assert_eq!(origin.count("/counted"), 1);

    let metrics = node.admin_get("/metrics").await;
    assert_eq!(metrics.status, 200, "{metrics:?}");
    let text = metrics.text();
    let hits = sample(text, "strata_requests_total", &[("result", "hit")]);
    assert_eq!(hits, Some(1.0), "{text}");
    let origin_200 = sample(
        text,
        "strata_origin_requests_total",
        &[("origin", "origin"), ("status", "200")],
    );
    assert_eq!(origin_200, Some(1.0), "{text}");
    let coalesced = sample(text, "strata_coalesced_requests_total", &[]);
    assert_eq!(coalesced, Some(2.0), "{text}");
    node.shutdown().await;
}
