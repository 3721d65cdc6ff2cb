//! Disk-store admission seen from the node: once its store is full, a key asked for once is
//! not stored (the origin sees it again) while a key asked for again is; and a clean
//! restart keeps the hit ratio on the same traffic.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use support::*;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET `path`; returns whether the node answered from its cache (`x-cache: Hit…`).
async fn fetch(c: &HttpClient, addr: SocketAddr, path: &str) -> bool {
    let uri: http::Uri = format!("http://{addr}{path}").parse().unwrap();
    let resp = tokio::time::timeout(TIMEOUT, c.get(uri))
        .await
        .expect("in time")
        .expect("a response");
    assert_eq!(resp.status(), 200, "{path}");
    let hit = resp
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Hit"));
    resp.into_body().collect().await.expect("body");
    hit
}

/// An origin whose responses carry a padding header, so each stored object takes about
/// `pad` bytes plus its path's share: `/fill/*` 8 KiB, everything else 7 KiB.
async fn padded_origin() -> Origin {
    Origin::with_headers(Arc::new(|path: &str| {
        let n = if path.starts_with("/fill/") {
            8000
        } else {
            7000
        };
        vec![("x-pad", "p".repeat(n))]
    }))
    .await
}

/// A node config with a small store. The viewer port is fixed, since the cache key holds
/// the Host: a restarted node must be asked under the same name.
fn node_config(origin: &Origin, dir: &std::path::Path, size: &str) -> String {
    let listen = format!("127.0.0.1:{}", free_port());
    config(&origin.url(), dir, &listen, "")
        .replace("size = \"64MiB\"", &format!("size = \"{size}\""))
        .replace("memory = \"64MiB\"", "memory = \"1MiB\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_refuses_one_hit_wonders_and_stores_repeated_keys() {
    let origin = padded_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let node = start(&node_config(&origin, dir.path(), "8MiB")).await;
    let c = client();
    // 1500 objects of ~8 KiB (12 MiB) into 8 MiB, each asked for twice: the store fills,
    // reclaims segments, and what it drops (2 accesses per ~8 KiB) sets the bar.
    for i in 0..1500 {
        let p = format!("/fill/{i}");
        fetch(&c, node.addr(), &p).await;
        fetch(&c, node.addr(), &p).await;
    }
    fetch(&c, node.addr(), "/fill/0").await;
    assert_eq!(
        origin.count("/fill/0"),
        2,
        "the first objects were evicted: the store is full"
    );
    // One request each: refused (a second request goes to the origin again).
    let mut refused = 0;
    for i in 0..10 {
        let p = format!("/once/{i}");
        assert!(!fetch(&c, node.addr(), &p).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
        if !fetch(&c, node.addr(), &p).await && origin.count(&p) == 2 {
            refused += 1;
        }
    }
    assert!(
        refused >= 9,
        "only {refused} of 10 one-hit wonders were refused"
    );
    // Those same keys have now been asked for twice: admitted on that second miss.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut stored = 0;
    for i in 0..10 {
        let p = format!("/once/{i}");
        if fetch(&c, node.addr(), &p).await && origin.count(&p) == 2 {
            stored += 1;
        }
    }
    assert!(stored >= 9, "only {stored} of 10 repeated keys were stored");
    node.shutdown().await;
}

/// A Zipf(0.9) sequence over `n` keys, deterministic.
fn zipf(n: usize, len: usize, seed: u64) -> Vec<usize> {
    let w: Vec<f64> = (1..=n).map(|k| (k as f64).powf(-0.9)).collect();
    let total: f64 = w.iter().sum();
    let mut cdf = Vec::with_capacity(n);
    let mut acc = 0.0;
    for x in &w {
        acc += x / total;
        cdf.push(acc);
    }
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 11) as f64 / (1u64 << 53) as f64;
            cdf.partition_point(|&c| c < u).min(n - 1)
        })
        .collect()
}

/// Hit ratio of `seq` through the node, as the origin sees it.
async fn run(c: &HttpClient, node: SocketAddr, origin: &Origin, seq: &[usize]) -> f64 {
    let before = origin.total();
    for &k in seq {
        fetch(c, node, &format!("/z/{k}")).await;
    }
    1.0 - (origin.total() - before) as f64 / seq.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_restart_keeps_the_hit_ratio_on_the_same_traffic() {
    let origin = padded_origin().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = node_config(&origin, dir.path(), "8MiB");
    let c = client();
    // 3000 keys of ~7 KiB (21 MiB) through an 8 MiB store.
    let warm = zipf(3000, 6000, 11);
    let same = zipf(3000, 3000, 12);
    let node = start(&cfg).await;
    run(&c, node.addr(), &origin, &warm).await;
    let before = run(&c, node.addr(), &origin, &same).await;
    node.shutdown().await;
    let node = start(&cfg).await;
    let after = run(&c, node.addr(), &origin, &same).await;
    node.shutdown().await;
    eprintln!("hit ratio on the same traffic: {before:.3} before the restart, {after:.3} after");
    assert!(before > 0.3, "hit ratio before the restart: {before}");
    assert!(
        after >= 0.99 * before,
        "hit ratio {before:.3} before the restart, {after:.3} after"
    );
    assert!(dir.path().join("sketch.bin").exists());
}
