//! Store benchmarks: the index at 10 million entries (insert, lookup, bytes per object),
//! fill throughput, and open time of a store of 1 million objects after a clean stop and
//! after a crash (full replay, records per second).
//!
//! `cargo bench --bench store` (a few minutes). Figures that criterion does not show
//! (bytes per object, replay rate) are printed to stderr.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use http::{HeaderMap, HeaderValue, StatusCode};
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use strata::config::units::{ByteSize, Dur};
use strata::config::StoreConfig;
use strata::store::disk::index::{key_hash, Entry, Index};
use strata::store::disk::{DiskOptions, DiskStore};
use strata::store::{ObjectMeta, Store};

const INDEX_N: u64 = 10_000_000;
const OPEN_N: u64 = 1_000_000;

fn entry(i: u64) -> Entry {
    Entry {
        slot: (i % 1000) as u32,
        offset: (i % 100_000) * 8,
        size_class: 20,
        flags: 0,
        expiry_hours: 1000,
    }
}

fn bench_index(c: &mut Criterion) {
    let mut g = c.benchmark_group("index");
    g.sample_size(10);
    let hashes: Vec<u64> = (0..INDEX_N).map(|i| key_hash(&i.to_le_bytes())).collect();
    let t = Instant::now();
    let idx = Index::new();
    for (i, &h) in hashes.iter().enumerate() {
        idx.insert(h, entry(i as u64));
    }
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "index: {} entries inserted in {:.2}s ({:.1} M inserts/s), {} bytes = {:.1} bytes per object",
        INDEX_N,
        secs,
        INDEX_N as f64 / secs / 1e6,
        idx.memory_bytes(),
        idx.memory_bytes() as f64 / INDEX_N as f64
    );
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("lookup_hit_at_10M", |b| {
        b.iter(|| {
            i = (i + 7919) % hashes.len();
            black_box(idx.get(hashes[i]))
        })
    });
    g.bench_function("lookup_miss_at_10M", |b| {
        let mut j = INDEX_N;
        b.iter(|| {
            j += 1;
            black_box(idx.get(key_hash(&j.to_le_bytes())))
        })
    });
    g.throughput(Throughput::Elements(1_000_000));
    g.bench_function("insert_1M_into_10M", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for it in 0..iters {
                let extra: Vec<u64> = (0..1_000_000u64)
                    .map(|k| key_hash(&(INDEX_N * 2 + it * 1_000_000 + k).to_le_bytes()))
                    .collect();
                let t = Instant::now();
                for (k, &h) in extra.iter().enumerate() {
                    idx.insert(h, entry(k as u64));
                }
                total += t.elapsed();
                for &h in &extra {
                    idx.remove(h);
                }
            }
            total
        })
    });
    g.finish();
}

fn cfg(dir: &Path, size: u64) -> StoreConfig {
    StoreConfig {
        path: dir.to_path_buf(),
        size: ByteSize(size),
        memory: ByteSize(64 << 20),
        checkpoint_interval: Dur(Duration::from_secs(3600)),
    }
}

fn opts() -> DiskOptions {
    DiskOptions {
        background: false,
        large_admission: None,
        ..DiskOptions::default()
    }
}

fn meta(key: String) -> ObjectMeta {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("image/jpeg"));
    h.insert("etag", HeaderValue::from_static("\"abc\""));
    let mut m = ObjectMeta::new(key, StatusCode::OK, h);
    m.freshness_lifetime = 3_600_000;
    m
}

fn put(s: &DiskStore, key: String, body: &Bytes) {
    let mut w = s.put(meta(key)).expect("put");
    w.write(body).expect("write");
    w.finish().expect("finish");
}

fn bench_fill(c: &mut Criterion) {
    let mut g = c.benchmark_group("fill");
    g.sample_size(10);
    for size in [4096usize, 64 << 10, 4 << 20] {
        let n = ((256usize << 20) / size).min(20_000) as u64;
        let body = Bytes::from(vec![7u8; size]);
        g.throughput(Throughput::Bytes(n * size as u64));
        g.bench_function(format!("put_{n}x{size}B"), |b| {
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().unwrap();
                    let s = DiskStore::open_with(&cfg(dir.path(), 2 << 30), opts()).unwrap();
                    (dir, s)
                },
                |(dir, s)| {
                    for i in 0..n {
                        put(&s, format!("bench.example/fill/{i}"), &body);
                    }
                    s.flush();
                    (dir, s)
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn bench_open(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    {
        let s = DiskStore::open_with(&cfg(dir.path(), 4 << 30), opts()).unwrap();
        let body = Bytes::from(vec![1u8; 200]);
        for i in 0..OPEN_N {
            put(&s, format!("bench.example/open/{i}"), &body);
        }
        s.close();
    }
    eprintln!(
        "open: wrote {OPEN_N} objects of 200 B in {:.2}s",
        t.elapsed().as_secs_f64()
    );
    let ckpt = dir.path().join("index.ckpt");
    let saved = dir.path().join("index.ckpt.saved");
    std::fs::copy(&ckpt, &saved).unwrap();
    let mut g = c.benchmark_group("open_1M");
    g.sample_size(10);
    g.bench_function("clean_first_hit", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                std::fs::copy(&saved, &ckpt).unwrap();
                let t = Instant::now();
                let s = DiskStore::open_with(&cfg(dir.path(), 4 << 30), opts()).unwrap();
                assert!(s.get("bench.example/open/12345").is_some());
                total += t.elapsed();
                s.simulate_crash();
            }
            total
        })
    });
    g.bench_function("after_crash_full_replay", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let _ = std::fs::remove_file(&ckpt);
                let t = Instant::now();
                let s = DiskStore::open_with(&cfg(dir.path(), 4 << 30), opts()).unwrap();
                assert!(s.is_ready());
                total += t.elapsed();
                let n = s.counters().replayed_records.load(Ordering::Relaxed);
                let ns = s.counters().replay_nanos.load(Ordering::Relaxed);
                eprintln!(
                    "replay: {n} records in {:.3}s = {:.2} M records/s ({} objects indexed)",
                    ns as f64 / 1e9,
                    n as f64 / (ns as f64 / 1e9) / 1e6,
                    s.stats().objects
                );
                s.simulate_crash();
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, bench_index, bench_fill, bench_open);
criterion_main!(benches);
