//! Cache keys: which query strings, headers and cookies split the cache and which do not.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_string_order_does_not_split_the_cache() {
    let origin = Origin::start().await;
    origin.route("/search", |req, _| {
        Reply::ok(format!("results for {}", req.query_pairs().join("&")))
            .cache_control("max-age=60")
    });
    let node = start_node(
        &origin,
        r#"
[[origins]]
id = "origin"
url = "{origin}"

[cache_policies.Search]
query_strings = { behavior = "whitelist", names = ["a", "b"] }

[default_behavior]
origin = "origin"
cache_policy = "Search"
"#,
    )
    .await;

    let first = node.get("/search?b=2&a=1", &[]).await;
    assert_eq!(first.text(), "results for a=1&b=2", "{first:?}");
    let reordered = node.get("/search?a=1&b=2", &[]).await;
    assert_eq!(reordered.text(), "results for a=1&b=2", "{reordered:?}");
    assert!(
        reordered.cache_status().has("hit"),
        "same keyed values in another order must hit: {reordered:?}"
    );
    assert_eq!(origin.count("/search"), 1, "{:?}", origin.seen());

    let other = node.get("/search?a=1&b=3", &[]).await;
    assert_eq!(other.text(), "results for a=1&b=3", "{other:?}");
    assert!(!other.cache_status().has("hit"), "{other:?}");

    let seen = origin.seen_for("/search");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].query_pairs(), ["a=1", "b=2"]);
    assert_eq!(seen[1].query_pairs(), ["a=1", "b=3"]);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_parameter_not_keyed_does_not_split_the_cache() {
    let origin = Origin::start().await;
    origin.route("/product", |_, n| {
        Reply::ok(format!("product page #{n}")).cache_control("max-age=60")
    });
    let node = start_node(
        &origin,
        r#"
[[origins]]
id = "origin"
url = "{origin}"

[cache_policies.Product]
query_strings = { behavior = "whitelist", names = ["id"] }

[default_behavior]
origin = "origin"
cache_policy = "Product"
"#,
    )
    .await;

    let from_news = node.get("/product?id=7&utm_source=newsletter", &[]).await;
    assert_eq!(from_news.text(), "product page #1");
    for path in ["/product?utm_source=twitter&id=7", "/product?id=7"] {
        let r = node.get(path, &[]).await;
        assert_eq!(r.text(), "product page #1", "{path}: {r:?}");
        assert!(r.cache_status().has("hit"), "{path}: {r:?}");
    }
    let other = node.get("/product?id=8&utm_source=newsletter", &[]).await;
    assert_eq!(
        other.text(),
        "product page #2",
        "a keyed value must split: {other:?}"
    );

    let seen = origin.seen_for("/product");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].query_pairs(), ["id=7", "utm_source=newsletter"]);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_except_keys_every_other_query_string() {
    let origin = Origin::start().await;
    origin.route("/list", |_, n| {
        Reply::ok(format!("list #{n}")).cache_control("max-age=60")
    });
    let node = start_node(
        &origin,
        r#"
[[origins]]
id = "origin"
url = "{origin}"

[cache_policies.List]
query_strings = { behavior = "allExcept", names = ["utm_source"] }

[default_behavior]
origin = "origin"
cache_policy = "List"
"#,
    )
    .await;

    assert_eq!(
        node.get("/list?page=2&utm_source=a", &[]).await.text(),
        "list #1"
    );
    assert_eq!(
        node.get("/list?utm_source=b&page=2", &[]).await.text(),
        "list #1"
    );
    assert_eq!(node.get("/list?page=3", &[]).await.text(), "list #2");
    assert_eq!(
        node.get("/list?page=3&sort=asc", &[]).await.text(),
        "list #3"
    );
    assert_eq!(origin.count("/list"), 3, "{:?}", origin.seen());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whitelisted_header_and_cookie_split_the_cache_others_do_not() {
    let origin = Origin::start().await;
    origin.route("/home", |req, n| {
        Reply::ok(format!(
            "home #{n} device={} cookie={}",
            req.header("x-device").unwrap_or_default(),
            req.header("cookie").unwrap_or_default()
        ))
        .cache_control("max-age=60")
    });
    let node = start_node(
        &origin,
        r#"
[[origins]]
id = "origin"
url = "{origin}"

[cache_policies.Home]
headers = { behavior = "whitelist", names = ["X-Device"] }
cookies = { behavior = "whitelist", names = ["lang"] }

[default_behavior]
origin = "origin"
cache_policy = "Home"
"#,
    )
    .await;

    let mobile_en = [("x-device", "mobile"), ("cookie", "lang=en; session=a1")];
    let first = node.get("/home", &mobile_en).await;
    assert_eq!(
        first.text(),
        "home #1 device=mobile cookie=lang=en; session=a1"
    );

    // Another session cookie and another User-Agent: neither is keyed.
    let same_key = [
        ("x-device", "mobile"),
        ("cookie", "session=b2; lang=en"),
        ("user-agent", "other"),
    ];
    let hit = node.get("/home", &same_key).await;
    assert_eq!(hit.text(), first.text(), "{hit:?}");
    assert!(hit.cache_status().has("hit"), "{hit:?}");

    let desktop = node
        .get("/home", &[("x-device", "desktop"), ("cookie", "lang=en")])
        .await;
    assert_eq!(
        desktop.text(),
        "home #2 device=desktop cookie=lang=en",
        "{desktop:?}"
    );
    let french = node
        .get("/home", &[("x-device", "mobile"), ("cookie", "lang=fr")])
        .await;
    assert_eq!(
        french.text(),
        "home #3 device=mobile cookie=lang=fr",
        "{french:?}"
    );
    assert_eq!(origin.count("/home"), 3, "{:?}", origin.seen());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_encoding_is_normalised_into_the_key() {
    let origin = Origin::start().await;
    origin.route("/app.js", |req, n| {
        Reply::ok(format!(
            "js #{n} for accept-encoding={}",
            req.header("accept-encoding").unwrap_or_default()
        ))
        .cache_control("max-age=60")
    });
    // CachingOptimized normalises gzip and br.
    let node = start_node(
        &origin,
        r#"
[[origins]]
id = "origin"
url = "{origin}"

[default_behavior]
origin = "origin"
cache_policy = "CachingOptimized"
"#,
    )
    .await;

    let first = node
        .get("/app.js", &[("accept-encoding", "gzip, deflate, br")])
        .await;
    assert!(first.text().starts_with("js #1"), "{first:?}");
    let reordered = node
        .get("/app.js", &[("accept-encoding", "br;q=1.0, gzip;q=0.8")])
        .await;
    assert!(
        reordered.text().starts_with("js #1"),
        "same encodings, same entry: {reordered:?}"
    );
    assert!(reordered.cache_status().has("hit"), "{reordered:?}");

    let identity = node.get("/app.js", &[]).await;
    assert!(
        identity.text().starts_with("js #2"),
        "a viewer without Accept-Encoding must not get an entry filled for gzip/br viewers: {identity:?}"
    );
    assert_eq!(origin.count("/app.js"), 2, "{:?}", origin.seen());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_host_has_its_own_entries() {
    let origin = Origin::start().await;
    origin.route("/index.html", |req, _| {
        Reply::ok(format!(
            "home of {}",
            req.header("host").unwrap_or_default()
        ))
        .cache_control("max-age=60")
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
origin_request_policy = "AllViewer"
"#,
    )
    .await;

    for _ in 0..2 {
        let a = node.get("/index.html", &[("host", "a.example")]).await;
        assert_eq!(a.text(), "home of a.example", "{a:?}");
        let b = node.get("/index.html", &[("host", "b.example")]).await;
        assert_eq!(b.text(), "home of b.example", "{b:?}");
    }
    assert_eq!(
        origin.count("/index.html"),
        2,
        "one fill per host: {:?}",
        origin.seen()
    );
    node.shutdown().await;
}
