//! The admin API against a real node: invalidations (exact, wildcard, every Vary variant,
//! every peer of the tier), purges by Surrogate-Key (soft and hard), the bearer token, bad
//! requests, readiness and the metrics page.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

fn is_hit(g: &Got) -> bool {
    g.header("x-cache").starts_with("Hit")
}

#[tokio::test]
async fn an_exact_invalidation_hides_every_variant_and_query_at_once() {
    let origin = Origin::with_headers(Arc::new(|p| {
        if p == "/page" {
            vec![("vary", "Accept-Language".to_string())]
        } else {
            vec![]
        }
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let node = start(&config(&origin.url(), dir.path(), "127.0.0.1:0", "")).await;
    let (v, a) = (node.addr(), node.admin_addr());

    for _ in 0..2 {
        get(v, "/page", &[("accept-language", "en")]).await;
        get(v, "/page", &[("accept-language", "de")]).await;
        get(v, "/page?q=1", &[("accept-language", "en")]).await;
        get(v, "/other", &[]).await;
    }
    assert_eq!(
        origin.count("/page"),
        3,
        "two variants and one query, each fetched once"
    );
    assert!(is_hit(&get(v, "/page", &[("accept-language", "de")]).await));

    let t = Instant::now();
    let r = admin_post(a, "/invalidations", r#"{"paths": ["/page"]}"#).await;
    let took = t.elapsed();
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert!(id.starts_with('I'), "{id}");

    // Effective as soon as the API answered, for every variant and query string.
    let en = get(v, "/page", &[("accept-language", "en")]).await;
    let de = get(v, "/page", &[("accept-language", "de")]).await;
    let q = get(v, "/page?q=1", &[("accept-language", "en")]).await;
    assert!(
        !is_hit(&en) && !is_hit(&de) && !is_hit(&q),
        "all miss after invalidation"
    );
    assert_eq!(origin.count("/page"), 6);
    assert!(en.body.contains("#4") || en.body.contains("#5") || en.body.contains("#6"));
    // And refilled objects are hits again; other paths never moved.
    assert!(is_hit(&get(v, "/page", &[("accept-language", "en")]).await));
    assert!(is_hit(&get(v, "/other", &[]).await));
    assert_eq!(origin.count("/other"), 1);

    let status = admin_get(a, &format!("/invalidations/{id}")).await;
    assert_eq!(status.status, 200);
    assert_eq!(status.json()["status"], "Completed");
    assert_eq!(status.json()["paths"][0], "/page");
    eprintln!("exact invalidation answered in {took:?}");
    node.shutdown().await;
}

#[tokio::test]
async fn a_wildcard_invalidation_hides_a_prefix_and_the_space_comes_back() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = start(&config(&origin.url(), dir.path(), "127.0.0.1:0", "")).await;
    let (v, a) = (node.addr(), node.admin_addr());
    for i in 0..50 {
        get(v, &format!("/img/{i}.png"), &[]).await;
    }
    get(v, "/css/site.css", &[]).await;
    get(v, "/imgs-not-under.png", &[]).await;
    let before = node.proxy.store.stats().objects;
    assert!(before >= 52, "{before}");

    let r = admin_post(a, "/invalidations", r#"{"paths": ["/img/*"]}"#).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(!is_hit(&get(v, "/img/7.png", &[]).await));
    assert!(is_hit(&get(v, "/css/site.css", &[]).await));
    assert!(is_hit(&get(v, "/imgs-not-under.png", &[]).await));

    // The background pass removes the hidden objects.
    eventually("reclaim removes the invalidated objects", || async {
        node.proxy.store.stats().objects <= before - 49
    })
    .await;
    node.shutdown().await;
}

#[tokio::test]
async fn invalidations_survive_a_restart() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let toml = config(&origin.url(), dir.path(), "127.0.0.1:0", "");
    let node = start(&toml).await;
    let r = admin_post(
        node.admin_addr(),
        "/invalidations",
        r#"{"paths": ["/a/*"]}"#,
    )
    .await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    node.shutdown().await;
    assert!(dir.path().join(strata::invalidation::FILE_NAME).exists());

    let node = start(&toml).await;
    assert_eq!(node.proxy.invalidations.rule_count(), 1);
    let status = admin_get(node.admin_addr(), &format!("/invalidations/{id}")).await;
    assert_eq!(status.status, 200, "{}", status.body);
    node.shutdown().await;
}

#[tokio::test]
async fn writes_need_the_bearer_token_and_good_json() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = start(&config(&origin.url(), dir.path(), "127.0.0.1:0", "")).await;
    let a = node.admin_addr();
    let url = format!("http://{a}/invalidations");
    let body = Some(r#"{"paths": ["/x"]}"#.to_string());

    let none = send(http::Method::POST, &url, &[], body.clone())
        .await
        .unwrap();
    assert_eq!(none.status, 401, "{}", none.body);
    assert!(none.headers.contains_key("www-authenticate"));
    let wrong = send(
        http::Method::POST,
        &url,
        &[("authorization", "Bearer nope")],
        body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(wrong.status, 403, "{}", wrong.body);
    let purge = send(
        http::Method::POST,
        &format!("http://{a}/purge"),
        &[],
        Some(r#"{"surrogate_keys": ["a"]}"#.into()),
    )
    .await
    .unwrap();
    assert_eq!(purge.status, 401);
    // A relayed write on the viewer port is held to the same token.
    let relay = send(
        http::Method::POST,
        &format!("http://{}/.strata/invalidations", node.addr()),
        &[("authorization", "Bearer nope")],
        body,
    )
    .await
    .unwrap();
    assert_eq!(relay.status, 403);
    assert_eq!(
        node.proxy.invalidations.rule_count(),
        0,
        "nothing was applied"
    );

    let bad = admin_post(a, "/invalidations", r#"{"paths": ["/x"]"#).await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.json()["error"].as_str().unwrap().contains("bad JSON"),
        "{}",
        bad.body
    );
    let unknown = admin_post(a, "/invalidations", r#"{"path": ["/x"]}"#).await;
    assert_eq!(unknown.status, 400, "{}", unknown.body);
    let no_slash = admin_post(a, "/invalidations", r#"{"paths": ["x"]}"#).await;
    assert_eq!(no_slash.status, 400);
    assert!(
        no_slash.body.contains("must start with '/'"),
        "{}",
        no_slash.body
    );
    let inner = admin_post(a, "/invalidations", r#"{"paths": ["/a*/b"]}"#).await;
    assert_eq!(inner.status, 400);
    let empty = admin_post(a, "/purge", r#"{"surrogate_keys": []}"#).await;
    assert_eq!(empty.status, 400);
    assert_eq!(admin_get(a, "/invalidations/INOPE").await.status, 404);
    // GETs need no token.
    assert_eq!(admin_get(a, "/healthz").await.status, 200);
    assert_eq!(admin_get(a, "/readyz").await.status, 200);
    node.shutdown().await;
}

#[tokio::test]
async fn without_a_configured_token_writes_are_refused() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let toml = config(&origin.url(), dir.path(), "127.0.0.1:0", "")
        .replace(&format!("admin_token_env = \"{TOKEN_ENV}\"\n"), "");
    let node = start(&toml).await;
    let r = admin_post(node.admin_addr(), "/invalidations", r#"{"paths": ["/x"]}"#).await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("admin_token_env"), "{}", r.body);
    node.shutdown().await;
}

#[tokio::test]
async fn purge_by_surrogate_key_soft_then_hard() {
    let origin = Origin::with_headers(Arc::new(|p| match p {
        "/p1" => vec![("surrogate-key", "product-1 all".to_string())],
        "/p2" => vec![("surrogate-key", "product-2 all".to_string())],
        _ => vec![],
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let node = start(&config(&origin.url(), dir.path(), "127.0.0.1:0", "")).await;
    let (v, a) = (node.addr(), node.admin_addr());
    for p in ["/p1", "/p2", "/p3"] {
        get(v, p, &[]).await;
        assert!(is_hit(&get(v, p, &[]).await));
    }

    // Soft: the object stays but is only usable as stale, so the next request goes upstream.
    let r = admin_post(
        a,
        "/purge",
        r#"{"surrogate_keys": ["product-1"], "soft": true}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["objects"], 1);
    assert!(
        node.proxy.store.stats().objects >= 3,
        "soft purge keeps the object"
    );
    let after = get(v, "/p1", &[]).await;
    assert!(!is_hit(&after), "{:?}", after.headers);
    assert_eq!(origin.count("/p1"), 2);
    assert!(is_hit(&get(v, "/p2", &[]).await));
    assert!(
        is_hit(&get(v, "/p1", &[]).await),
        "the refreshed object is fresh again"
    );

    // Hard: removed.
    let r = admin_post(a, "/purge", r#"{"surrogate_keys": ["all"]}"#).await;
    assert_eq!(r.json()["objects"], 2, "{}", r.body);
    assert!(!is_hit(&get(v, "/p1", &[]).await));
    assert!(!is_hit(&get(v, "/p2", &[]).await));
    assert!(is_hit(&get(v, "/p3", &[]).await));
    assert_eq!((origin.count("/p1"), origin.count("/p2")), (3, 2));
    node.shutdown().await;
}

#[tokio::test]
async fn invalidations_and_purges_reach_every_peer_of_the_tier() {
    let origin = Origin::with_headers(Arc::new(|_| vec![("surrogate-key", "t".to_string())])).await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers = ports
        .iter()
        .map(|p| format!("\"127.0.0.1:{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let cluster = format!("[cluster]\npeers = [{peers}]\n");
    let mut nodes = Vec::new();
    for (dir, port) in dirs.iter().zip(&ports) {
        let listen = format!("127.0.0.1:{port}");
        nodes.push(start(&config(&origin.url(), dir.path(), &listen, &cluster)).await);
    }
    for n in &nodes {
        get(n.addr(), "/shared/a", &[]).await;
        get(n.addr(), "/shared/b", &[]).await;
    }
    let fetched = origin.count("/shared/a");
    assert!(fetched >= 1);
    for n in &nodes {
        assert!(is_hit(&get(n.addr(), "/shared/a", &[]).await));
    }

    let r = admin_post(
        nodes[1].admin_addr(),
        "/invalidations",
        r#"{"paths": ["/shared/a"]}"#,
    )
    .await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    let admin = nodes[1].admin_addr();
    eventually("the invalidation completes on every peer", || {
        let id = id.clone();
        async move {
            let s = admin_get(admin, &format!("/invalidations/{id}"))
                .await
                .json();
            s["status"] == "Completed"
        }
    })
    .await;
    let record = admin_get(admin, &format!("/invalidations/{id}"))
        .await
        .json();
    let peers = record["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2, "{record}");
    assert!(peers.iter().all(|p| p["result"] == "ok"), "{record}");
    for n in &nodes {
        assert!(
            !is_hit(&get(n.addr(), "/shared/a", &[]).await),
            "miss on {}",
            n.addr()
        );
        assert!(is_hit(&get(n.addr(), "/shared/b", &[]).await));
        // Every node knows the invalidation by the same id.
        assert_eq!(
            admin_get(n.admin_addr(), &format!("/invalidations/{id}"))
                .await
                .status,
            200
        );
    }

    let r = admin_post(
        nodes[0].admin_addr(),
        "/purge",
        r#"{"surrogate_keys": ["t"]}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let peers = r.json()["peers"].as_array().unwrap().clone();
    assert_eq!(peers.len(), 2);
    assert!(peers.iter().all(|p| p["result"] == "ok"), "{}", r.body);
    for n in &nodes {
        assert!(!is_hit(&get(n.addr(), "/shared/b", &[]).await));
    }
    for n in nodes {
        n.shutdown().await;
    }
}

/// Every metric SPEC.md names, on a page that parses as Prometheus text.
#[tokio::test]
async fn the_metrics_page_has_every_spec_metric() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = start(&config(&origin.url(), dir.path(), "127.0.0.1:0", "")).await;
    get(node.addr(), "/m", &[]).await;
    get(node.addr(), "/m", &[]).await;
    let page = admin_get(node.admin_addr(), "/metrics").await;
    assert_eq!(page.status, 200);

    let mut samples: Vec<(String, String, f64)> = Vec::new();
    let mut types: Vec<(String, String)> = Vec::new();
    for line in page.body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            types.push((name.to_string(), kind.to_string()));
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        samples.push((name.to_string(), labels.to_string(), value));
    }
    let has_type = |n: &str, k: &str| types.iter().any(|(name, kind)| name == n && kind == k);
    let sample = |n: &str, l: &str| {
        samples
            .iter()
            .find(|(name, labels, _)| name == n && labels.contains(l))
            .map(|s| s.2)
    };
    for result in ["hit", "refresh_hit", "stale", "miss", "pass", "error"] {
        let l = format!("result=\"{result}\"");
        assert!(
            sample("strata_requests_total", &l).is_some(),
            "requests {result}"
        );
        assert!(
            sample("strata_request_duration_seconds_bucket", &l).is_some(),
            "histogram {result}"
        );
    }
    assert_eq!(sample("strata_requests_total", "result=\"hit\""), Some(1.0));
    assert_eq!(
        sample("strata_requests_total", "result=\"miss\""),
        Some(1.0)
    );
    assert!(has_type("strata_request_duration_seconds", "histogram"));
    assert_eq!(
        sample(
            "strata_origin_requests_total",
            "origin=\"origin\",status=\"200\""
        ),
        Some(1.0)
    );
    assert!(has_type("strata_coalesced_requests", "counter"));
    assert!(sample("strata_coalesced_requests_total", "").is_some());
    // strata_peer_requests_total{peer,result} has samples only once peers are asked
    // (prometheus-client omits empty families); `metrics::tests` checks its exposition.
    for g in [
        "strata_store_objects",
        "strata_store_bytes",
        "strata_index_memory_bytes",
        "strata_store_recovery_seconds",
        "strata_store_recovered_objects",
        "strata_invalidation_rules",
        "strata_ready",
    ] {
        assert!(sample(g, "").is_some(), "{g} missing");
    }
    assert!(sample("strata_store_objects", "").unwrap() >= 1.0);
    assert_eq!(sample("strata_ready", ""), Some(1.0));
    assert!(sample("strata_access_log_dropped_total", "").is_some());
    assert!(sample("strata_config_reloads_total", "result=\"error\"").is_some());
    assert!(page.body.trim_end().ends_with("# EOF"));
    node.shutdown().await;
}

/// A wildcard invalidation takes one rule, whatever the number of objects under it.
#[tokio::test]
async fn wildcard_invalidation_cost_does_not_depend_on_the_object_count() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = start(&config(&origin.url(), dir.path(), "127.0.0.1:0", "")).await;
    let store = node.proxy.store.clone();
    let t = strata::time::now_ms() - 1000;
    for i in 0..20_000 {
        let mut m = strata::store::ObjectMeta::new(
            format!("example.com/bulk/{i}"),
            http::StatusCode::OK,
            http::HeaderMap::new(),
        );
        m.response_time = t;
        m.freshness_lifetime = 3_600_000;
        m.body_len = 0;
        store.put(m).unwrap().finish().unwrap();
    }
    let started = Instant::now();
    let r = admin_post(
        node.admin_addr(),
        "/invalidations",
        r#"{"paths": ["/bulk/*"]}"#,
    )
    .await;
    assert_eq!(r.status, 201);
    let took = started.elapsed();
    let probe = store.get("example.com/bulk/19999").unwrap();
    assert!(node.proxy.invalidations.hides(&probe.meta));
    assert!(took < Duration::from_secs(1), "{took:?}");
    node.shutdown().await;
}

#[tokio::test]
async fn invalidations_and_purges_reach_peers_found_by_dns() {
    // The tier's members come from `cluster.peers_dns` (here `localhost:PORT`, through the
    // system resolver): the relay goes to the members the cluster resolved, not to a list in
    // the config file.
    let origin = Origin::with_headers(Arc::new(|_| vec![("surrogate-key", "d".to_string())])).await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (pa, pb) = (free_port(), free_port());
    let b = start(&config(
        &origin.url(),
        db.path(),
        &format!("127.0.0.1:{pb}"),
        "",
    ))
    .await;
    // A static list left in the file is not the membership when `peers_dns` is set (the
    // cluster does not use it), so the relay must not use it either.
    let stale = free_port();
    let cluster = format!(
        "[cluster]\npeers_dns = \"localhost:{pb}\"\nself = \"127.0.0.1:{pa}\"\n\
         peers = [\"127.0.0.1:{stale}\"]\n"
    );
    let a = start(&config(
        &origin.url(),
        da.path(),
        &format!("127.0.0.1:{pa}"),
        &cluster,
    ))
    .await;
    get(b.addr(), "/dns/x", &[]).await;
    get(b.addr(), "/dns/y", &[]).await;
    assert!(is_hit(&get(b.addr(), "/dns/x", &[]).await));

    let r = admin_post(a.admin_addr(), "/invalidations", r#"{"paths": ["/dns/x"]}"#).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    let admin = a.admin_addr();
    eventually("the invalidation completes", || {
        let id = id.clone();
        async move {
            admin_get(admin, &format!("/invalidations/{id}"))
                .await
                .json()["status"]
                == "Completed"
        }
    })
    .await;
    let record = admin_get(admin, &format!("/invalidations/{id}"))
        .await
        .json();
    // The relay went to what DNS answered: node B (`localhost` may also resolve to ::1,
    // where nothing listens, which the record reports as an error), never to the stale
    // static entry.
    let peers = record["peers"].as_array().unwrap();
    assert!(
        peers.contains(&serde_json::json!({"peer": format!("127.0.0.1:{pb}"), "result": "ok"})),
        "{record}"
    );
    assert!(
        peers
            .iter()
            .all(|p| p["peer"].as_str().unwrap().ends_with(&format!(":{pb}"))),
        "{record}"
    );
    assert!(!is_hit(&get(b.addr(), "/dns/x", &[]).await));
    assert!(is_hit(&get(b.addr(), "/dns/y", &[]).await));

    let r = admin_post(a.admin_addr(), "/purge", r#"{"surrogate_keys": ["d"]}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let purge = r.json();
    let peers = purge["peers"].as_array().unwrap();
    assert!(
        peers.contains(&serde_json::json!({"peer": format!("127.0.0.1:{pb}"), "result": "ok"})),
        "{}",
        r.body
    );
    assert!(
        peers
            .iter()
            .all(|p| p["peer"].as_str().unwrap().ends_with(&format!(":{pb}"))),
        "{}",
        r.body
    );
    assert!(!is_hit(&get(b.addr(), "/dns/y", &[]).await));
    a.shutdown().await;
    b.shutdown().await;
}
