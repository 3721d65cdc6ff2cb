//! strata-tools against a real store: inspect, find, verify (and --drop), compact, and
//! replay against a real node across a restart; the writing tools refuse a store another process holds.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use strata::config::units::{ByteSize, Dur};
use strata::config::StoreConfig;
use strata::store::disk::{DiskOptions, DiskStore};
use strata::store::{ObjectMeta, Store};

fn tools(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata-tools"))
        .args(args)
        .output()
        .expect("run strata-tools")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn cfg(dir: &Path) -> StoreConfig {
    StoreConfig {
        path: dir.to_path_buf(),
        size: ByteSize(64 << 20),
        memory: ByteSize(1 << 20),
        checkpoint_interval: Dur(Duration::from_secs(60)),
    }
}

fn opts() -> DiskOptions {
    DiskOptions {
        segment_size: 1 << 20,
        chunk_size: 64 << 10,
        large_admission: None,
        background: false,
        ..DiskOptions::default()
    }
}

fn fill(dir: &Path, n: usize) -> DiskStore {
    let s = DiskStore::open_with(&cfg(dir), opts()).unwrap();
    for i in 0..n {
        let key = format!("shop.example/img/{i}.jpg");
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("image/jpeg"));
        let mut m = ObjectMeta::new(key, StatusCode::OK, h);
        m.response_time = strata::time::now_ms();
        m.freshness_lifetime = 3_600_000;
        let mut w = s.put(m).unwrap();
        w.write(&Bytes::from(vec![(i % 251) as u8; 20_000 + i * 100]))
            .unwrap();
        w.finish().unwrap();
    }
    // Make half of them garbage, so compaction has work.
    for i in (0..n).step_by(2) {
        s.remove(&format!("shop.example/img/{i}.jpg"));
    }
    s
}

#[test]
fn inspect_find_verify_on_a_live_and_a_closed_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let s = fill(dir.path(), 200);
    s.checkpoint().unwrap();
    // Read-only tools run beside the process that holds the store.
    let o = tools(&["inspect", d]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("objects    100"), "{t}");
    assert!(
        t.contains(&format!("process {}", std::process::id())),
        "{t}"
    );
    assert!(t.contains("body size"), "{t}");

    let o = tools(&["find", d, "https://shop.example/img/7.jpg"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("content-type: image/jpeg") && t.contains("fresh"),
        "{t}"
    );
    assert!(!tools(&["find", d, "shop.example/img/8.jpg"])
        .status
        .success());

    assert!(tools(&["verify", d]).status.success());
    // Writing tools refuse a held store and say who holds it.
    for args in [vec!["verify", d, "--drop"], vec!["compact", d]] {
        let o = tools(&args);
        assert!(!o.status.success());
        assert!(
            text(&o).contains(&std::process::id().to_string()),
            "{}",
            text(&o)
        );
    }
    s.close();
    drop(s);

    // Damage a segment: verify reports it and exits 2; --drop removes it from the index.
    let seg = dir.path().join("seg-00000.dat");
    let mut b = std::fs::read(&seg).unwrap();
    b[300_000] ^= 0xff;
    std::fs::write(&seg, &b).unwrap();
    let o = tools(&["verify", d]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("bad record"), "{}", text(&o));
    let o = tools(&["verify", d, "--drop"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("dropped"), "{}", text(&o));
}

#[test]
fn compact_reclaims_garbage_and_keeps_live_objects() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let s = fill(dir.path(), 200);
    s.close();
    drop(s);
    let o = tools(&["compact", d, "--max-fill", "0.9"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("reclaimed"), "{}", text(&o));
    let s = DiskStore::open_with(&cfg(dir.path()), opts()).unwrap();
    for i in 0..200 {
        let got = s.get(&format!("shop.example/img/{i}.jpg"));
        assert_eq!(got.is_some(), i % 2 == 1, "object {i}");
        if let Some(o) = got {
            let body = strata::store::read_all(&o.body).unwrap();
            assert_eq!(body.len(), 20_000 + i * 100);
            assert!(body.iter().all(|&b| b == (i % 251) as u8));
        }
    }
}

/// A plain HTTP/1.1 origin on a std thread: every path is a cacheable object whose body
/// names the path; counts the requests it answers.
fn counting_origin() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut w = conn;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or("").to_string();
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                    }
                    seen.fetch_add(1, Ordering::SeqCst);
                    let body = format!("object at {path} {}", "x".repeat(1500));
                    let _ = write!(
                        w,
                        "HTTP/1.1 200 OK\r\nCache-Control: public, max-age=3600\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
        }
    });
    (addr, counter)
}

async fn start_node(dir: &Path, origin: std::net::SocketAddr) -> strata::server::Node {
    let text = format!(
        r#"
[node]
id = "replay-test"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[store]
path = "{dir}"
size = "64MiB"
memory = "2MiB"

[[origins]]
id = "o"
url = "http://{origin}"

[default_behavior]
origin = "o"
cache_policy = "UseOriginCacheControlHeaders"
"#,
        dir = dir.display()
    );
    let config = strata::config::Resolved::from_toml(&text, "test.toml").unwrap();
    let node = strata::server::Node::start(config).await.unwrap();
    // Ready once the index is loaded.
    let admin = node.admin_addr();
    let ready = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        for _ in 0..500 {
            if let Ok(mut c) = std::net::TcpStream::connect(admin) {
                let _ =
                    c.write_all(b"GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
                let mut out = String::new();
                let _ = c.read_to_string(&mut out);
                if out.starts_with("HTTP/1.1 200") {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    })
    .await
    .unwrap();
    assert!(ready, "node never became ready");
    node
}

/// The figure a replay prints on the line starting with `name`.
fn figure(t: &str, name: &str) -> f64 {
    t.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l[name.len()..].split_whitespace().next())
        .and_then(|n| n.trim_end_matches('%').parse().ok())
        .unwrap_or_else(|| panic!("no {name:?} in replay output:\n{t}"))
}

fn replay(node: std::net::SocketAddr, seed: &str, concurrency: &str) -> String {
    let url = format!("http://{node}");
    let o = tools(&[
        "replay",
        &url,
        "--objects",
        "3000",
        "--requests",
        "6000",
        "--concurrency",
        concurrency,
        "--seed",
        seed,
        // One name across the restart (the node's port changes; the cache key holds the host).
        "--host",
        "shop.example",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    text(&o)
}

/// The instrument for the restart targets: replay against a real node, a clean restart,
/// the same traffic again. The node comes back warm (the hit ratio after is at least 99% of
/// before), and the origin fetches replay reports match what the origin saw.
#[test]
fn replay_measures_a_real_node_before_and_after_a_restart() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let (origin, seen) = counting_origin();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let node = rt.block_on(start_node(dir.path(), origin));
    // Warm up on one request stream, measure on another.
    let warm = replay(node.addr(), "1", "4");
    assert!(figure(&warm, "misses") > 0.0, "{warm}");
    let at0 = seen.load(Ordering::SeqCst);
    // One connection: the same request sequence both times (each worker draws its own
    // stream, and how far each gets depends on timing).
    let before = replay(node.addr(), "2", "1");
    let fetched = seen.load(Ordering::SeqCst) - at0;
    let reported = figure(&before, "origin fetches");
    assert_eq!(reported as u64, fetched, "{before}");
    rt.block_on(node.shutdown());

    let node = rt.block_on(start_node(dir.path(), origin));
    let at1 = seen.load(Ordering::SeqCst);
    let after = replay(node.addr(), "2", "1");
    let fetched_after = seen.load(Ordering::SeqCst) - at1;
    assert_eq!(
        figure(&after, "origin fetches") as u64,
        fetched_after,
        "{after}"
    );
    let (hb, ha) = (figure(&before, "hit ratio"), figure(&after, "hit ratio"));
    assert!(hb > 50.0, "{before}");
    assert!(
        ha >= 0.99 * hb,
        "hit ratio {hb} before the restart, {ha} after:\n{after}"
    );
    // Everything the second stream asked for was stored before the restart.
    assert_eq!(fetched_after, 0, "{after}");
    rt.block_on(node.shutdown());
}
