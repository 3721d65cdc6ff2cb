//! The access log's cost on the request path: capturing a request's fields, its response's,
//! and formatting the line into the worker's buffer (`AccessLog::write`), for a hit as wrk
//! sends it and for a browser's request with a query, a referer and a user agent.
//!
//! `cargo bench --bench access_log` (under a minute). The writer thread drains the buffers
//! to a file in a temporary directory meanwhile, as it does in the node. Time per line is
//! steadier than the req/s of a whole node, and counts cycles (a `memcpy` call per field
//! shows here, where instruction counts hide it).

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method, Request};
use prometheus_client::metrics::counter::Counter;
use std::hint::black_box;
use std::time::{Duration, Instant};
use strata::access_log::{recycle, AccessLog, Entry};
use strata::config::{AccessLogConfig, AccessLogFormat};
use strata::proxy::hop::Outcome;

fn request(browser: bool) -> http::request::Parts {
    let mut b = Request::builder().method(Method::GET);
    if browser {
        b = b
            .uri("/assets/app.3f9c2e.js?v=1712&lang=en")
            .header("host", "cdn.example.com")
            .header(
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/126.0 Safari/537.36",
            )
            .header("referer", "https://www.example.com/products/42")
            .header("accept", "*/*")
            .header("accept-encoding", "gzip, br")
            .header("accept-language", "en-GB,en;q=0.9");
    } else {
        b = b.uri("/s/1k.bin").header("host", "127.0.0.1:19211");
    }
    b.body(())
        .map(|r| r.into_parts().0)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A hit's response head as the node sends it.
fn response() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("content-type", "application/octet-stream"),
        ("content-length", "1024"),
        ("etag", "\"5f1c-400\""),
        ("last-modified", "Tue, 01 Dec 2026 10:00:00 GMT"),
        ("cache-control", "public, max-age=3600"),
        ("date", "Wed, 02 Dec 2026 15:00:00 GMT"),
        ("age", "12"),
        ("via", "1.1 node-a (strata)"),
        ("cache-status", "node-a; hit; ttl=3588"),
        ("x-cache", "Hit from strata"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    h
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let log = AccessLog::new("node-a", Counter::default());
    let config = AccessLogConfig {
        path: dir.path().join("access.log"),
        format: AccessLogFormat::Cloudfront,
    };
    log.configure(Some(&config))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let client = "127.0.0.1:53604".parse().unwrap_or_else(|e| panic!("{e}"));
    let resp = response();
    let mut g = c.benchmark_group("access_log");
    g.measurement_time(Duration::from_secs(4));
    for (name, browser) in [("wrk_hit", false), ("browser_hit", true)] {
        let parts = request(browser);
        g.bench_function(name, |b| {
            b.iter(|| {
                let start = Instant::now();
                let mut e = Entry::request(start, client, false, black_box(&parts));
                e.response(
                    200,
                    &resp,
                    Outcome::Hit,
                    Duration::from_micros(180),
                    Some(1024),
                );
                e.body_bytes = 1024;
                e.set_behaviour("default");
                log.write(black_box(&e));
                recycle(e);
            })
        });
    }
    g.finish();
    log.close();
}

criterion_group!(benches, bench);
criterion_main!(benches);
