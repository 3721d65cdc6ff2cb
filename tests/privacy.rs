//! Privacy: one viewer's personal response never reaches another viewer — not on a
//! CachingDisabled behaviour, and not on a caching behaviour when the origin marks the
//! response private, sets a cookie, or answers a request that carried Authorization.

mod common;

use common::*;

/// `/account/*` is never cached and forwards everything; the rest is CachingOptimized.
const ACCOUNT_AND_DEFAULT: &str = r#"
[[origins]]
id = "origin"
url = "{origin}"

[[behaviors]]
path = "/account/*"
origin = "origin"
cache_policy = "CachingDisabled"
origin_request_policy = "AllViewer"

[default_behavior]
origin = "origin"
cache_policy = "CachingOptimized"
"#;

/// An origin page that echoes who asked, with caching headers that would let a careless
/// cache share it.
fn echo_credentials(origin: &Origin, path: &str, cache_control: &'static str) {
    origin.route(path, move |req, _| {
        Reply::ok(format!(
            "authorization={} cookie={}",
            req.header("authorization").unwrap_or_default(),
            req.header("cookie").unwrap_or_default()
        ))
        .cache_control(cache_control)
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_disabled_never_shares_between_authorizations() {
    let origin = Origin::start().await;
    echo_credentials(&origin, "/account/profile", "public, max-age=60");
    let node = start_node(&origin, ACCOUNT_AND_DEFAULT).await;

    for who in ["alice", "bob", "alice", "bob"] {
        let credential = format!("Bearer {who}-token");
        let r = node
            .get("/account/profile", &[("authorization", &credential)])
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.text(),
            format!("authorization={credential} cookie="),
            "{who}: {r:?}"
        );
        assert_eq!(r.cache_status().get("fwd"), Some("bypass"), "{r:?}");
    }
    let seen: Vec<String> = origin
        .seen_for("/account/profile")
        .iter()
        .map(|s| s.header("authorization").unwrap_or_default())
        .collect();
    assert_eq!(
        seen,
        [
            "Bearer alice-token",
            "Bearer bob-token",
            "Bearer alice-token",
            "Bearer bob-token"
        ]
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caching_disabled_never_shares_between_session_cookies() {
    let origin = Origin::start().await;
    echo_credentials(&origin, "/account/orders", "public, max-age=60");
    let node = start_node(&origin, ACCOUNT_AND_DEFAULT).await;

    for who in ["alice", "bob", "alice"] {
        let cookie = format!("session={who}");
        let r = node.get("/account/orders", &[("cookie", &cookie)]).await;
        assert_eq!(
            r.text(),
            format!("authorization= cookie={cookie}"),
            "{who}: {r:?}"
        );
    }
    assert_eq!(origin.count("/account/orders"), 3);
    let cookies: Vec<String> = origin
        .seen_for("/account/orders")
        .iter()
        .map(|s| s.header("cookie").unwrap_or_default())
        .collect();
    assert_eq!(cookies, ["session=alice", "session=bob", "session=alice"]);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_response_is_never_shared() {
    let origin = Origin::start().await;
    echo_credentials(&origin, "/dashboard", "private, max-age=60");
    let node = start_node(&origin, ACCOUNT_AND_DEFAULT).await;

    for who in ["alice", "bob", "alice"] {
        let cookie = format!("session={who}");
        let r = node.get("/dashboard", &[("cookie", &cookie)]).await;
        assert_eq!(
            r.text(),
            format!("authorization= cookie={cookie}"),
            "{who}: {r:?}"
        );
        assert!(!r.cache_status().has("hit"), "{r:?}");
        assert!(!r.cache_status().has("stored"), "{r:?}");
    }
    assert_eq!(origin.count("/dashboard"), 3, "{:?}", origin.seen());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_cookie_response_is_never_shared() {
    let origin = Origin::start().await;
    origin.route("/welcome", |_, n| {
        Reply::ok(format!("welcome, visitor {n}"))
            .cache_control("max-age=60")
            .header("set-cookie", &format!("session=visitor-{n}; HttpOnly"))
    });
    let node = start_node(&origin, ACCOUNT_AND_DEFAULT).await;

    let first = node.get("/welcome", &[]).await;
    assert_eq!(first.text(), "welcome, visitor 1");
    assert_eq!(
        first.header("set-cookie").as_deref(),
        Some("session=visitor-1; HttpOnly")
    );

    let second = node.get("/welcome", &[]).await;
    assert_eq!(second.text(), "welcome, visitor 2", "{second:?}");
    assert_eq!(
        second.header("set-cookie").as_deref(),
        Some("session=visitor-2; HttpOnly"),
        "another viewer's session cookie must never be replayed: {second:?}"
    );
    assert_eq!(origin.count("/welcome"), 2);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_to_an_authorized_request_is_not_shared_by_default() {
    let origin = Origin::start().await;
    echo_credentials(&origin, "/reports/q3", "max-age=60");
    let node = start_node(&origin, ACCOUNT_AND_DEFAULT).await;

    let alice = node
        .get("/reports/q3", &[("authorization", "Bearer alice-token")])
        .await;
    assert_eq!(alice.text(), "authorization=Bearer alice-token cookie=");
    let bob = node
        .get("/reports/q3", &[("authorization", "Bearer bob-token")])
        .await;
    assert_eq!(
        bob.text(),
        "authorization=Bearer bob-token cookie=",
        "RFC 9111 §3.5: max-age alone does not make it shareable: {bob:?}"
    );
    let anonymous = node.get("/reports/q3", &[]).await;
    assert_eq!(anonymous.text(), "authorization= cookie=", "{anonymous:?}");
    assert_eq!(origin.count("/reports/q3"), 3);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_to_an_authorized_request_marked_public_is_shared() {
    let origin = Origin::start().await;
    origin.route("/catalogue", |_, _| {
        Reply::ok("the same catalogue for everyone").cache_control("public, max-age=60")
    });
    let node = start_node(&origin, ACCOUNT_AND_DEFAULT).await;

    let alice = node
        .get("/catalogue", &[("authorization", "Bearer alice-token")])
        .await;
    assert_eq!(alice.text(), "the same catalogue for everyone");
    let bob = node
        .get("/catalogue", &[("authorization", "Bearer bob-token")])
        .await;
    assert_eq!(bob.text(), "the same catalogue for everyone");
    assert!(
        bob.cache_status().has("hit"),
        "RFC 9111 §3.5 allows `public`: {bob:?}"
    );
    assert_eq!(origin.count("/catalogue"), 1);
    node.shutdown().await;
}
