//! Behaviours route requests to their origin; origin groups fail over; origin request
//! policies decide what reaches the origin beyond the cache key.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behaviours_send_each_path_to_its_origin_first_match_wins() {
    let api = Origin::start().await;
    let images = Origin::start().await;
    api.route("/api/v1/items", |_, _| Reply::ok("items from the api"));
    api.route("/api/v1/images/x.png", |_, _| Reply::ok("api, not images"));
    images.route("/logo.png", |_, _| Reply::ok("logo from images"));
    let node = start_node_with(
        &[("api", &api), ("images", &images)],
        r#"
[[origins]]
id = "api"
url = "{api}"

[[origins]]
id = "images"
url = "{images}"

[[behaviors]]
path = "/api/*"
origin = "api"
cache_policy = "CachingDisabled"

[[behaviors]]
path = "*.png"
origin = "images"
cache_policy = "CachingOptimized"

[default_behavior]
origin = "images"
cache_policy = "CachingOptimized"
"#,
    )
    .await;

    assert_eq!(
        node.get("/api/v1/items", &[]).await.text(),
        "items from the api"
    );
    assert_eq!(
        node.get("/api/v1/images/x.png", &[]).await.text(),
        "api, not images",
        "behaviours are tried in order"
    );
    assert_eq!(node.get("/logo.png", &[]).await.text(), "logo from images");
    assert_eq!(api.seen().len(), 2, "{:?}", api.seen());
    assert_eq!(images.seen().len(), 1, "{:?}", images.seen());
    node.shutdown().await;
}

const GROUP: &str = r#"
[[origins]]
id = "primary"
url = "{primary}"

[[origins]]
id = "backup"
url = "{backup}"

[[origin_groups]]
id = "group"
primary = "primary"
secondary = "backup"

[default_behavior]
origin = "group"
cache_policy = "CachingDisabled"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_group_fails_over_on_a_failover_status() {
    let primary = Origin::start().await;
    let backup = Origin::start().await;
    primary.route("/page", |_, _| Reply::status(503, "primary overloaded"));
    backup.route("/page", |_, _| Reply::ok("from the backup"));
    let node = start_node_with(&[("primary", &primary), ("backup", &backup)], GROUP).await;

    let r = node.get("/page", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "from the backup");
    assert_eq!(primary.count("/page"), 1);
    assert_eq!(backup.count("/page"), 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_group_fails_over_when_the_primary_is_down() {
    let primary = Origin::start().await;
    let backup = Origin::start().await;
    backup.route("/page", |_, _| Reply::ok("from the backup"));
    primary.stop();
    let node = start_node_with(&[("primary", &primary), ("backup", &backup)], GROUP).await;

    let r = node.get("/page", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "from the backup");
    assert_eq!(backup.count("/page"), 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_group_passes_on_a_status_that_is_not_a_failover_status() {
    let primary = Origin::start().await;
    let backup = Origin::start().await;
    primary.route("/page", |_, _| Reply::status(404, "no such page"));
    backup.route("/page", |_, _| Reply::ok("from the backup"));
    let node = start_node_with(&[("primary", &primary), ("backup", &backup)], GROUP).await;

    let r = node.get("/page", &[]).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.text(), "no such page");
    assert!(backup.seen().is_empty(), "{:?}", backup.seen());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_inputs_reach_the_origin_and_the_request_policy_limits_the_rest() {
    let origin = Origin::start().await;
    origin.route("/object", |_, _| {
        Reply::ok("ok").cache_control("max-age=60")
    });
    let node = start_node(
        &origin,
        r#"
[[origins]]
id = "origin"
url = "{origin}"

[cache_policies.ById]
query_strings = { behavior = "whitelist", names = ["id"] }
headers = { behavior = "whitelist", names = ["X-Device"] }
cookies = { behavior = "whitelist", names = ["lang"] }

[default_behavior]
origin = "origin"
cache_policy = "ById"
origin_request_policy = "CORS-S3Origin"
"#,
    )
    .await;

    node.get(
        "/object?id=7&utm_source=mail",
        &[
            ("x-device", "mobile"),
            ("x-custom", "not forwarded"),
            ("origin", "https://shop.example"),
            ("cookie", "lang=en; session=secret"),
        ],
    )
    .await;

    let seen = origin.seen_for("/object");
    assert_eq!(seen.len(), 1, "{seen:?}");
    let s = &seen[0];
    assert_eq!(
        s.query_pairs(),
        ["id=7"],
        "only the keyed query string: {s:?}"
    );
    assert_eq!(
        s.header("x-device").as_deref(),
        Some("mobile"),
        "keyed header: {s:?}"
    );
    assert_eq!(
        s.header("origin").as_deref(),
        Some("https://shop.example"),
        "{s:?}"
    );
    assert_eq!(
        s.header("x-custom"),
        None,
        "not keyed, not in the ORP: {s:?}"
    );
    assert_eq!(
        s.header("cookie").as_deref(),
        Some("lang=en"),
        "keyed cookie only: {s:?}"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_is_forwarded_intact() {
    let origin = Origin::start().await;
    origin.route("/submit", |req, _| {
        Reply::status(201, format!("got {} bytes", req.body.len()))
    });
    let node = start_node(
        &origin,
        r#"
[[origins]]
id = "origin"
url = "{origin}"

[default_behavior]
origin = "origin"
cache_policy = "CachingDisabled"
origin_request_policy = "AllViewer"
"#,
    )
    .await;

    let form = "name=strata&kind=cache&".repeat(1000);
    let r = node
        .request(
            "POST",
            "/submit?draft=1",
            &[("content-type", "application/x-www-form-urlencoded")],
            &form,
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.text(), format!("got {} bytes", form.len()));
    let seen = origin.seen_for("/submit");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].uri, "/submit?draft=1");
    assert_eq!(
        seen[0].body,
        form.as_bytes(),
        "the body arrives byte for byte"
    );
    assert_eq!(
        seen[0].header("content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    node.shutdown().await;
}
