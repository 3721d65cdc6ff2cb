//! What the origin receives: hop-by-hop headers stripped, X-Forwarded-For and Via added, the
//! origin's custom headers set, Host as the origin request policy says.

mod common;

use common::*;

/// Nothing cached, every viewer header forwarded (so only hop-by-hop rules remove any).
const PASS_EVERYTHING: &str = r#"
[[origins]]
id = "origin"
url = "{origin}"
headers = { "X-Origin-Verify" = "s3cret" }

[default_behavior]
origin = "origin"
cache_policy = "CachingDisabled"
origin_request_policy = "AllViewer"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_not_forwarded() {
    let origin = Origin::start().await;
    origin.route("/hops", |_, _| Reply::ok("ok"));
    let node = start_node(&origin, PASS_EVERYTHING).await;

    let request = "GET /hops HTTP/1.1\r\n\
                   Host: shop.example\r\n\
                   Connection: close, X-Hop-Secret\r\n\
                   X-Hop-Secret: for the node only\r\n\
                   Keep-Alive: timeout=5\r\n\
                   TE: trailers\r\n\
                   Upgrade: example/1\r\n\
                   Proxy-Authorization: Basic cHJveHk6cGFzcw==\r\n\
                   Proxy-Connection: keep-alive\r\n\
                   X-End-To-End: for the origin\r\n\
                   \r\n";
    let r = node.raw(request.as_bytes()).await;
    assert_eq!(r.status, 200, "{r:?}");

    let seen = origin.seen_for("/hops");
    assert_eq!(seen.len(), 1, "{seen:?}");
    let seen = &seen[0];
    assert_eq!(
        seen.header("x-end-to-end").as_deref(),
        Some("for the origin")
    );
    for hop in [
        "x-hop-secret",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert_eq!(seen.header(hop), None, "{hop} reached the origin: {seen:?}");
    }
    if let Some(connection) = seen.header("connection") {
        assert!(
            !connection.to_ascii_lowercase().contains("x-hop-secret"),
            "the viewer's Connection options reached the origin: {connection}"
        );
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_and_via_are_added_on_the_origin_request() {
    let origin = Origin::start().await;
    origin.route("/who", |_, _| Reply::ok("ok"));
    let node = start_node(&origin, PASS_EVERYTHING).await;

    node.get("/who", &[]).await;
    node.get(
        "/who",
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("via", "1.1 pop-lhr-1 (strata)"),
        ],
    )
    .await;

    let seen = origin.seen_for("/who");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        seen[0].header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    let via = seen[0].header("via").unwrap_or_default();
    assert!(via.contains("1.1 test-node (strata)"), "Via `{via}`");

    assert_eq!(
        seen[1].header("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.1"),
        "the viewer's address is appended: {:?}",
        seen[1]
    );
    let via = seen[1].header("via").unwrap_or_default();
    assert!(
        via.starts_with("1.1 pop-lhr-1 (strata)") && via.ends_with("1.1 test-node (strata)"),
        "this node is appended after the previous hop: Via `{via}`"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_custom_headers_are_added_and_win_over_the_viewer() {
    let origin = Origin::start().await;
    origin.route("/verify", |_, _| Reply::ok("ok"));
    let node = start_node(&origin, PASS_EVERYTHING).await;

    node.get("/verify", &[]).await;
    node.get("/verify", &[("x-origin-verify", "forged")]).await;

    let seen = origin.seen_for("/verify");
    assert_eq!(seen.len(), 2, "{seen:?}");
    for s in &seen {
        assert_eq!(
            s.header("x-origin-verify").as_deref(),
            Some("s3cret"),
            "{s:?}"
        );
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_follows_the_origin_request_policy() {
    let origin = Origin::start().await;
    origin.route("/all-viewer/page", |_, _| Reply::ok("ok"));
    origin.route("/except-host/page", |_, _| Reply::ok("ok"));
    let node = start_node(
        &origin,
        r#"
[[origins]]
id = "origin"
url = "{origin}"

[[behaviors]]
path = "/all-viewer/*"
origin = "origin"
cache_policy = "CachingDisabled"
origin_request_policy = "AllViewer"

[[behaviors]]
path = "/except-host/*"
origin = "origin"
cache_policy = "CachingDisabled"
origin_request_policy = "AllViewerExceptHostHeader"

[default_behavior]
origin = "origin"
cache_policy = "CachingDisabled"
"#,
    )
    .await;

    node.get("/all-viewer/page", &[("host", "shop.example")])
        .await;
    node.get("/except-host/page", &[("host", "shop.example")])
        .await;

    let all = &origin.seen_for("/all-viewer/page")[0];
    assert_eq!(
        all.header("host").as_deref(),
        Some("shop.example"),
        "{all:?}"
    );
    let except = &origin.seen_for("/except-host/page")[0];
    assert_eq!(
        except.header("host"),
        Some(origin.addr().to_string()),
        "{except:?}"
    );
    node.shutdown().await;
}
