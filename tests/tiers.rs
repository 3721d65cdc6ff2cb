//! Nodes in a chain (POP → shield → origin): each hop adds its Via and Cache-Status member,
//! the shield absorbs the POPs' misses, and a chain that loops is refused.

mod common;

use common::*;

const CACHE_BY_ORIGIN: &str = r#"
[[origins]]
id = "upstream"
url = "{origin}"

[cache_policies.Tier]
min_ttl = "0s"
default_ttl = "1h"
max_ttl = "1d"

[default_behavior]
origin = "upstream"
cache_policy = "Tier"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shield_absorbs_the_misses_of_two_pops() {
    let origin = Origin::start().await;
    origin.route("/logo.png", |_, n| {
        Reply::ok(format!("logo #{n}")).cache_control("max-age=300")
    });
    let shield = start_node_as("shield-1", &origin.url(), CACHE_BY_ORIGIN).await;
    let pop_a = start_node_as(NODE_ID, &shield.url(), CACHE_BY_ORIGIN).await;
    let pop_b = start_node_as("pop-b", &shield.url(), CACHE_BY_ORIGIN).await;

    let first = pop_a.get("/logo.png", &[]).await;
    assert_eq!(first.text(), "logo #1");
    let shield_cs = first.cache_status_of("shield-1");
    assert_eq!(shield_cs.get("fwd"), Some("miss"), "{first:?}");
    assert_eq!(first.cache_status().get("fwd"), Some("miss"), "{first:?}");
    let raw = first.header("cache-status").unwrap_or_default();
    assert!(
        raw.find("shield-1") < raw.find(NODE_ID),
        "the hop nearest the origin comes first (RFC 9211): {raw}"
    );
    let via = first.header("via").unwrap_or_default();
    assert!(
        via.contains("1.1 shield-1 (strata)") && via.contains("1.1 test-node (strata)"),
        "Via names both hops: {via}"
    );

    let from_b = pop_b.get("/logo.png", &[]).await;
    assert_eq!(from_b.text(), "logo #1", "{from_b:?}");
    assert!(from_b.cache_status_of("shield-1").has("hit"), "{from_b:?}");
    assert_eq!(
        from_b.cache_status_of("pop-b").get("fwd"),
        Some("miss"),
        "{from_b:?}"
    );

    let again = pop_a.get("/logo.png", &[]).await;
    assert!(again.cache_status().has("hit"), "{again:?}");

    let seen = origin.seen_for("/logo.png");
    assert_eq!(
        seen.len(),
        1,
        "one origin request for the whole chain: {seen:?}"
    );
    let via = seen[0].header("via").unwrap_or_default();
    assert!(
        via.contains("1.1 test-node (strata)") && via.ends_with("1.1 shield-1 (strata)"),
        "the origin sees the chain in order: {via}"
    );
    pop_a.shutdown().await;
    pop_b.shutdown().await;
    shield.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_is_its_own_origin_stops_the_loop_with_508() {
    let origin = Origin::start().await; // never asked
    let own = free_local_addr();
    let node = start_node_on(
        NODE_ID,
        &own.to_string(),
        &format!("http://{own}"),
        CACHE_BY_ORIGIN,
    )
    .await;

    let r = node.get("/anything", &[]).await;
    assert_eq!(
        r.status, 508,
        "the second pass through the node is refused: {r:?}"
    );
    assert!(origin.seen().is_empty(), "{:?}", origin.seen());

    // The loop's 508 is not cached: the same request is refused again, not served as a hit.
    let again = node.get("/anything", &[]).await;
    assert_eq!(again.status, 508, "{again:?}");
    assert!(!again.cache_status().has("hit"), "{again:?}");
    node.shutdown().await;
}
