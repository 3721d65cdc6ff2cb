//! Request coalescing: concurrent misses for one object make one origin request, and an
//! uncacheable object is not serialised behind it (hit-for-miss).

mod common;

use common::*;
use futures_util::future::join_all;
use std::time::{Duration, Instant};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_misses_make_one_origin_request() {
    let origin = Origin::start().await;
    let body: String = (0..64 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let served = body.clone();
    origin.route("/popular", move |_, _| {
        Reply::ok(served.clone())
            .cache_control("max-age=60")
            .delay(Duration::from_millis(300))
    });
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    let responses = join_all((0..200).map(|_| node.get("/popular", &[]))).await;

    assert_eq!(
        origin.count("/popular"),
        1,
        "200 viewers, one origin request: {:?}",
        origin.seen()
    );
    // One viewer's request filled the cache; every other one waited on that fill
    // (`collapsed`) or came after it (`hit`).
    let mut fillers = 0;
    for r in &responses {
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body.len(), body.len(), "{r:?}");
        assert!(r.text() == body, "every viewer gets the full body");
        let cs = r.cache_status();
        if cs.has("collapsed") || cs.has("hit") {
            continue;
        }
        fillers += 1;
        assert_eq!(cs.get("fwd"), Some("miss"), "{}", cs.raw);
        assert!(cs.has("stored"), "{}", cs.raw);
    }
    assert_eq!(
        fillers, 1,
        "exactly one viewer's request went to the origin"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncacheable_response_is_not_serialised() {
    let origin = Origin::start().await;
    origin.route("/cart", |_, n| {
        Reply::ok(format!("cart #{n}"))
            .cache_control("private, no-store")
            .delay(Duration::from_millis(300))
    });
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    // The first request teaches the node that /cart is uncacheable.
    let first = node.get("/cart", &[]).await;
    assert_eq!(first.text(), "cart #1");
    assert!(!first.cache_status().has("stored"), "{first:?}");

    // The second wave must go to the origin in parallel, not one after another.
    let started = Instant::now();
    let wave = join_all((0..10).map(|_| node.get("/cart", &[]))).await;
    let took = started.elapsed();

    let mut bodies: Vec<String> = wave.iter().map(|r| r.text().to_string()).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(
        bodies.len(),
        10,
        "each viewer got its own origin response: {bodies:?}"
    );
    for r in &wave {
        assert_eq!(r.status, 200, "{r:?}");
        let cs = r.cache_status();
        assert!(!cs.has("hit") && !cs.has("collapsed"), "{}", cs.raw);
    }
    assert_eq!(origin.count("/cart"), 11, "{:?}", origin.seen());
    assert!(
        origin.max_in_flight() >= 5,
        "the origin saw at most {} of the wave at once",
        origin.max_in_flight()
    );
    assert!(
        took < Duration::from_millis(1500),
        "10 requests of 300 ms took {took:?}: serialised behind each other"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_with_another_variant_do_not_get_the_leaders_response() {
    let origin = Origin::start().await;
    origin.route("/greeting", |req, _| {
        let body = match req.header("accept-language").as_deref() {
            Some("fr") => "bonjour",
            _ => "hello",
        };
        Reply::ok(body)
            .cache_control("max-age=60")
            .header("vary", "Accept-Language")
            .delay(Duration::from_millis(300))
    });
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    let languages: Vec<&str> = (0..20)
        .map(|i| if i % 2 == 0 { "en" } else { "fr" })
        .collect();
    let responses = join_all(
        languages
            .iter()
            .map(|lang| async { node.get("/greeting", &[("accept-language", lang)]).await }),
    )
    .await;
    for (lang, r) in languages.iter().zip(&responses) {
        let want = if *lang == "fr" { "bonjour" } else { "hello" };
        assert_eq!(r.text(), want, "a viewer asking for {lang}: {r:?}");
    }
    let seen = origin.seen_for("/greeting");
    assert!(
        (2..=20).contains(&seen.len()),
        "at least one fill per variant: {seen:?}"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_never_receive_a_private_response_filled_for_someone_else() {
    let origin = Origin::start().await;
    origin.route("/me", |req, _| {
        Reply::ok(format!(
            "profile of {}",
            req.header("cookie").unwrap_or_default()
        ))
        .cache_control("private")
        .delay(Duration::from_millis(300))
    });
    // Cookies are not keyed: all viewers share one primary key and may queue on one fill.
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    let users: Vec<String> = (0..10).map(|i| format!("session=user{i}")).collect();
    let responses = join_all(
        users
            .iter()
            .map(|c| async { node.get("/me", &[("cookie", c)]).await }),
    )
    .await;
    for (cookie, r) in users.iter().zip(&responses) {
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.text(),
            format!("profile of {cookie}"),
            "a viewer got someone else's private response"
        );
    }
    assert_eq!(origin.count("/me"), 10, "{:?}", origin.seen());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_never_receive_another_viewers_set_cookie() {
    let origin = Origin::start().await;
    origin.route("/login", |_, n| {
        Reply::ok(format!("welcome #{n}"))
            .cache_control("max-age=60")
            .header("set-cookie", &format!("session=s{n}"))
            .delay(Duration::from_millis(300))
    });
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    let responses = join_all((0..10).map(|_| node.get("/login", &[]))).await;
    let mut cookies: Vec<String> = responses
        .iter()
        .map(|r| r.header("set-cookie").unwrap_or_default())
        .collect();
    cookies.sort();
    cookies.dedup();
    assert_eq!(
        cookies.len(),
        10,
        "each viewer gets its own session cookie: {cookies:?}"
    );
    assert_eq!(origin.count("/login"), 10);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_with_other_credentials_do_not_share_an_authorized_response() {
    let origin = Origin::start().await;
    origin.route("/report", |req, _| {
        Reply::ok(format!(
            "report for {}",
            req.header("authorization").unwrap_or_default()
        ))
        .cache_control("max-age=60")
        .delay(Duration::from_millis(300))
    });
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    let tokens: Vec<String> = (0..10).map(|i| format!("Bearer token-{i}")).collect();
    let responses = join_all(
        tokens
            .iter()
            .map(|t| async { node.get("/report", &[("authorization", t)]).await }),
    )
    .await;
    for (token, r) in tokens.iter().zip(&responses) {
        assert_eq!(r.text(), format!("report for {token}"), "{r:?}");
    }
    assert_eq!(origin.count("/report"), 10);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_and_head_waiters_get_their_own_answer_from_the_fill() {
    let origin = Origin::start().await;
    origin.route("/file", |_, _| {
        Reply::ok("0123456789abcdefghij")
            .cache_control("max-age=60")
            .delay(Duration::from_millis(300))
    });
    let node = start_node(&origin, CACHE_EVERYTHING).await;

    let (full, range, head) = tokio::join!(
        node.get("/file", &[]),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            node.get("/file", &[("range", "bytes=10-14")]).await
        },
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            node.request("HEAD", "/file", &[], "").await
        },
    );
    assert_eq!(full.text(), "0123456789abcdefghij", "{full:?}");
    assert_eq!(range.status, 206, "{range:?}");
    assert_eq!(range.text(), "abcde", "{range:?}");
    assert_eq!(head.status, 200, "{head:?}");
    assert!(head.body.is_empty(), "{head:?}");
    assert_eq!(origin.count("/file"), 1, "{:?}", origin.seen());
    node.shutdown().await;
}
