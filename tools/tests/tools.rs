//! strata-tools against a real store: inspect, find, verify (and --drop), compact, and
//! replay against a stand-in node; the writing tools refuse a store another process holds.

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

/// A stand-in node: answers every GET, a hit when the path was seen before.
#[test]
fn replay_reports_hit_ratio_and_origin_fetches() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
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
                    let hit = !seen.lock().unwrap().insert(path);
                    let x = if hit {
                        "Hit from strata"
                    } else {
                        "Miss from strata"
                    };
                    let _ = write!(
                        w,
                        "HTTP/1.1 200 OK\r\nX-Cache: {x}\r\nContent-Length: 5\r\n\r\nhello"
                    );
                }
            });
        }
    });
    let url = format!("http://{addr}");
    let o = tools(&[
        "replay",
        &url,
        "--objects",
        "100",
        "--requests",
        "2000",
        "--concurrency",
        "4",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("origin fetches"), "{t}");
    let misses: u64 = t
        .lines()
        .find(|l| l.starts_with("misses"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(misses <= 100 && misses > 10, "{t}");
    assert!(t.contains("hit ratio       9"), "{t}");
}
