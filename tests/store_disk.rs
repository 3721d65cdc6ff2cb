//! The disk store on a real directory: what is written comes back, across clean restarts,
//! crashes, torn and flipped bytes, a full disk, eviction, and a writer killed with -9.
//! Bodies are derived from their keys so that any object read can be checked.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use std::path::Path;
use std::time::{Duration, Instant};
use strata::config::units::{ByteSize, Dur};
use strata::config::StoreConfig;
use strata::store::disk::{DiskOptions, DiskStore};
use strata::store::{read_all, ObjectMeta, Store, StoreError};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

fn cfg(dir: &Path, size: u64, memory: u64) -> StoreConfig {
    StoreConfig {
        path: dir.to_path_buf(),
        size: ByteSize(size),
        memory: ByteSize(memory),
        checkpoint_interval: Dur(Duration::from_millis(300)),
    }
}

/// Small segments and chunks so tests exercise rolling, chunking and eviction quickly.
/// Small segments, every object admitted: these tests exercise the log and eviction
/// mechanics; admission has its own test.
fn small() -> DiskOptions {
    DiskOptions {
        segment_size: MIB,
        chunk_size: 64 * KIB,
        large_admission: None,
        admit_when_full: false,
        background: false,
        ..DiskOptions::default()
    }
}

fn open(dir: &Path, size: u64, opts: DiskOptions) -> DiskStore {
    let s = DiskStore::open_with(&cfg(dir, size, 4 * MIB), opts).expect("open store");
    assert!(s.wait_ready(Duration::from_secs(30)));
    s
}

/// The body stored under `key`: its length and bytes follow from the key alone.
fn body_for(key: &str, max_len: u64) -> Bytes {
    let h = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
    let len = (h % max_len) as usize;
    let mut out = Vec::with_capacity(len + 8);
    let mut x = h | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

fn meta_for(key: &str) -> ObjectMeta {
    let mut h = HeaderMap::new();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert("x-key", HeaderValue::from_str(key).unwrap());
    let mut m = ObjectMeta::new(key.to_string(), StatusCode::OK, h);
    m.response_time = strata::time::now_ms();
    m.freshness_lifetime = 3_600_000;
    m
}

fn put(store: &dyn Store, key: &str, body: &Bytes) -> Result<(), StoreError> {
    let mut w = store.put(meta_for(key))?;
    for piece in body.chunks(10_000) {
        w.write(&Bytes::copy_from_slice(piece))?;
    }
    w.finish()
}

/// The object under `key`, checked: None if missing, panics if it differs from what was
/// written.
fn get_checked(store: &dyn Store, key: &str, max_len: u64) -> Option<()> {
    let o = store.get(key)?;
    assert_eq!(o.meta.key, key);
    let body = read_all(&o.body).ok()?;
    assert_eq!(body, body_for(key, max_len), "body of {key} differs");
    assert_eq!(o.meta.headers["x-key"], key);
    Some(())
}

#[test]
fn objects_come_back_after_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<String> = (0..400).map(|i| format!("GET http://h/obj/{i}")).collect();
    {
        let s = open(dir.path(), 64 * MIB, small());
        for k in &keys {
            put(&s, k, &body_for(k, 200 * KIB)).unwrap();
        }
        for k in &keys {
            get_checked(&s, k, 200 * KIB).expect("present before restart");
        }
        s.close();
    }
    let s = open(dir.path(), 64 * MIB, small());
    assert_eq!(
        s.counters()
            .replayed_records
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    for k in &keys {
        get_checked(&s, k, 200 * KIB).expect("present after restart");
    }
    assert_eq!(s.stats().objects, keys.len() as u64);
}

#[test]
fn range_reads_of_a_chunked_object_verify_each_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 64 * MIB, small());
    let key = "GET http://h/big";
    let body = body_for(key, 4 * MIB);
    put(&s, key, &body).unwrap();
    let o = s.get(key).unwrap();
    let strata::store::Body::Reader(r) = &o.body else {
        panic!("a large body should be read from disk")
    };
    assert_eq!(r.len(), body.len() as u64);
    for off in [0u64, 1, 65_535, 65_536, 1_000_000, body.len() as u64 - 10] {
        // A read may stop at a chunk boundary: read on until 100 bytes or the end.
        let mut got = Vec::new();
        while got.len() < 100 {
            let piece = r.read_at(off + got.len() as u64, 100 - got.len()).unwrap();
            if piece.is_empty() {
                break;
            }
            got.extend_from_slice(&piece);
        }
        let end = (off as usize + 100).min(body.len());
        assert_eq!(&got[..], &body[off as usize..end], "at {off}");
    }
}

#[test]
fn a_crash_loses_only_the_unflushed_tail_and_replay_restores_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let first: Vec<String> = (0..300).map(|i| format!("a{i}")).collect();
    let second: Vec<String> = (0..300).map(|i| format!("b{i}")).collect();
    {
        let s = open(dir.path(), 64 * MIB, small());
        for k in &first {
            put(&s, k, &body_for(k, 100 * KIB)).unwrap();
        }
        s.checkpoint().unwrap();
        for k in &second {
            put(&s, k, &body_for(k, 100 * KIB)).unwrap();
        }
        s.simulate_crash();
    }
    let s = open(dir.path(), 64 * MIB, small());
    for k in &first {
        get_checked(&s, k, 100 * KIB).expect("checkpointed objects survive a crash");
    }
    let back = second
        .iter()
        .filter(|k| get_checked(&s, k, 100 * KIB).is_some())
        .count();
    // Only the last write buffer (4 MiB) may be lost.
    assert!(back > 200, "only {back} of 300 replayed");
    assert!(
        s.counters()
            .replayed_records
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dat"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_torn_tail_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<String> = (0..200).map(|i| format!("t{i}")).collect();
    {
        let s = open(dir.path(), 64 * MIB, small());
        for k in &keys {
            put(&s, k, &body_for(k, 50 * KIB)).unwrap();
        }
        s.close();
    }
    std::fs::remove_file(dir.path().join("index.ckpt")).unwrap();
    // Cut every segment in the middle of a record.
    for f in segment_files(dir.path()) {
        let len = std::fs::metadata(&f).unwrap().len();
        if len > 1000 {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&f)
                .unwrap()
                .set_len(len - 777)
                .unwrap();
        }
    }
    let s = open(dir.path(), 64 * MIB, small());
    let back = keys
        .iter()
        .filter(|k| get_checked(&s, k, 50 * KIB).is_some())
        .count();
    assert!(back >= keys.len() - segment_files(dir.path()).len() - 1);
    assert!(back < keys.len());
}

#[test]
fn a_flipped_byte_is_a_miss_not_a_wrong_body() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<String> = (0..200).map(|i| format!("f{i}")).collect();
    {
        let s = open(dir.path(), 64 * MIB, small());
        for k in &keys {
            put(&s, k, &body_for(k, 300 * KIB)).unwrap();
        }
        s.close();
    }
    // Flip bytes spread over every segment (bodies, heads, chunk records alike).
    for f in segment_files(dir.path()) {
        let mut b = std::fs::read(&f).unwrap();
        for at in (100..b.len()).step_by(50_000) {
            b[at] ^= 0x20;
        }
        std::fs::write(&f, &b).unwrap();
    }
    for with_checkpoint in [true, false] {
        if !with_checkpoint {
            let _ = std::fs::remove_file(dir.path().join("index.ckpt"));
        }
        let s = open(dir.path(), 64 * MIB, small());
        let mut back = 0;
        for k in &keys {
            if get_checked(&s, k, 300 * KIB).is_some() {
                back += 1;
            }
        }
        assert!(back < keys.len(), "no flip was detected");
        assert!(back > 0);
        s.simulate_crash();
    }
}

#[test]
fn a_refresh_writes_metadata_not_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let key = "GET http://h/refresh";
    let body = body_for(key, 500 * KIB);
    {
        let s = open(dir.path(), 64 * MIB, small());
        put(&s, key, &body).unwrap();
        s.checkpoint().unwrap();
        let before = s.stats().bytes;
        for i in 0..20 {
            let mut m = meta_for(key);
            m.headers.insert("x-refreshed", HeaderValue::from(i));
            assert!(s.update_meta(m).unwrap());
        }
        let grown = s.stats().bytes - before;
        assert!(grown < 20 * 1024, "20 refreshes wrote {grown} bytes");
        let o = s.get(key).unwrap();
        assert_eq!(o.meta.headers["x-refreshed"], "19");
        assert_eq!(read_all(&o.body).unwrap(), body);
        assert!(!s.update_meta(meta_for("GET http://h/none")).unwrap());
        s.flush(); // as the background thread would within 200 ms
        s.simulate_crash();
    }
    let s = open(dir.path(), 64 * MIB, small());
    let o = s.get(key).unwrap();
    assert_eq!(o.meta.headers["x-refreshed"], "19");
    assert_eq!(read_all(&o.body).unwrap(), body);
}

#[test]
fn removals_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path(), 64 * MIB, small());
        for i in 0..50 {
            let k = format!("r{i}");
            put(&s, &k, &body_for(&k, 10 * KIB)).unwrap();
        }
        s.checkpoint().unwrap();
        for i in 0..25 {
            assert!(s.remove(&format!("r{i}")));
        }
        assert!(!s.remove("r0"));
        s.checkpoint().unwrap(); // flushes the tombstones; then crash with them in the tail
        for i in 25..30 {
            assert!(s.remove(&format!("r{i}")));
        }
        s.close();
    }
    let s = open(dir.path(), 64 * MIB, small());
    for i in 0..50 {
        let k = format!("r{i}");
        assert_eq!(get_checked(&s, &k, 10 * KIB).is_some(), i >= 30, "{k}");
    }
}

#[test]
fn the_disk_budget_is_hard_and_hot_objects_survive_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let size = 8 * MIB;
    let s = open(dir.path(), size, small());
    let hot: Vec<String> = (0..20).map(|i| format!("hot{i}")).collect();
    for k in &hot {
        put(&s, k, &body_for(k, 20 * KIB)).unwrap();
    }
    for round in 0..40 {
        for i in 0..40 {
            let k = format!("cold{round}-{i}");
            put(&s, &k, &body_for(&k, 40 * KIB)).unwrap();
        }
        for k in &hot {
            let _ = s.get(k);
        }
        let on_disk: u64 = segment_files(dir.path())
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum();
        assert!(on_disk <= size, "round {round}: {on_disk} bytes on disk");
    }
    let hot_back = hot
        .iter()
        .filter(|k| get_checked(&s, k, 20 * KIB).is_some())
        .count();
    assert_eq!(hot_back, hot.len(), "hot objects were evicted");
    let cold_back = (0..40)
        .flat_map(|r| (0..40).map(move |i| format!("cold{r}-{i}")))
        .filter(|k| get_checked(&s, k, 40 * KIB).is_some())
        .count();
    assert!(cold_back < 1600 / 2);
    assert!(
        s.counters()
            .evicted_segments
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
}

#[test]
fn a_second_open_names_the_process_that_holds_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let _s = open(dir.path(), 64 * MIB, small());
    let err = DiskStore::open_with(&cfg(dir.path(), 64 * MIB, MIB), small())
        .err()
        .expect("second open must fail");
    let msg = err.to_string();
    assert!(msg.contains(&std::process::id().to_string()), "{msg}");
    assert!(msg.contains("in use"), "{msg}");
}

#[test]
fn large_one_hit_wonders_are_refused_until_missed_twice() {
    let dir = tempfile::tempdir().unwrap();
    let opts = DiskOptions {
        large_admission: Some(256 * KIB),
        ..small()
    };
    let s = open(dir.path(), 64 * MIB, opts);
    let key = "GET http://h/huge";
    let mut m = meta_for(key);
    m.body_len = 300 * KIB;
    assert!(s.get(key).is_none());
    assert!(s.put(m.clone()).is_err(), "first miss: refused");
    assert!(s.get(key).is_none());
    assert!(s.put(m).is_ok(), "second miss: admitted");
}

/// A store on a 3 MiB tmpfs with a larger budget: the disk fills, the store turns
/// pass-through and keeps serving what it has.
#[test]
fn a_full_disk_turns_the_store_pass_through() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here (needs root); the full-disk test did not run"
        );
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let s = open(&mnt, 64 * MIB, small());
    let mut stored = Vec::new();
    let mut refused = 0;
    for i in 0..400 {
        let k = format!("full{i}");
        match put(&s, &k, &body_for(&k, 40 * KIB)) {
            Ok(()) => stored.push(k),
            Err(_) => refused += 1,
        }
    }
    assert!(refused > 0, "the disk never filled");
    assert!(s.stats().degraded);
    let back = stored
        .iter()
        .filter(|k| get_checked(&s, k, 40 * KIB).is_some())
        .count();
    assert!(
        back > 0 && back + 200 >= stored.len(),
        "{back} of {}",
        stored.len()
    );
    s.simulate_crash();
    // After a restart on the full disk, what was stored still reads back correctly.
    let s = open(&mnt, 64 * MIB, small());
    for k in &stored {
        get_checked(&s, k, 40 * KIB);
    }
}

/// Writes objects forever; the parent kills it with -9. Runs only as the child of
/// `kill_9_in_a_loop`.
#[test]
fn child_writer() {
    let Ok(dir) = std::env::var("STRATA_CHILD_DIR") else {
        return;
    };
    let round: u64 = std::env::var("STRATA_CHILD_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let opts = DiskOptions {
        background: true,
        ..small()
    };
    let s = DiskStore::open_with(&cfg(Path::new(&dir), 512 * MIB, 4 * MIB), opts).unwrap();
    assert!(s.wait_ready(Duration::from_secs(30)));
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        let k = format!("k{round}-{i}");
        let max = if i % 50 == 0 { 300 * KIB } else { 8 * KIB };
        put(&s, &k, &body_for(&k, max)).unwrap();
        writeln!(out, "{k} {max}").unwrap();
        out.flush().unwrap();
        // Keep the total under the budget so that nothing is evicted across the rounds.
        std::thread::sleep(Duration::from_micros(500));
    }
}

#[test]
fn kill_9_in_a_loop() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut durable: Vec<(String, u64)> = Vec::new();
    for round in 0..20u64 {
        let mut child = std::process::Command::new(&exe)
            .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
            .env("STRATA_CHILD_DIR", dir.path())
            .env("STRATA_CHILD_ROUND", round.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send((Instant::now(), line));
            }
        });
        let run = Duration::from_millis(300 + (round * 137) % 1200);
        std::thread::sleep(run);
        child.kill().unwrap(); // SIGKILL
        let killed_at = Instant::now();
        child.wait().unwrap();
        reader.join().unwrap();
        let acked: Vec<(Instant, String)> = rx.try_iter().collect();

        let s = open(dir.path(), 512 * MIB, small());
        // Every object that is there is exactly what was written.
        let mut present = 0;
        let mut keys = Vec::new();
        s.scan(&mut |m| keys.push(m.key.clone()));
        for k in &keys {
            let max = if k
                .split('-')
                .nth(1)
                .is_some_and(|i| i.parse::<u64>().unwrap() % 50 == 0)
            {
                300 * KIB
            } else {
                8 * KIB
            };
            if get_checked(&s, k, max).is_some() {
                present += 1;
            }
        }
        // Everything from earlier rounds (closed cleanly by this parent) is there.
        for (k, max) in &durable {
            get_checked(&s, k, *max).unwrap_or_else(|| panic!("round {round}: lost {k}"));
        }
        // Objects acknowledged more than 1.5 s before the kill survived it.
        for (t, line) in &acked {
            // Other lines are the test harness talking.
            let Some((k, max)) = line.split_once(' ') else {
                continue;
            };
            let Ok(max) = max.parse::<u64>() else {
                continue;
            };
            let k = k.to_string();
            if killed_at.duration_since(*t) > Duration::from_millis(1500) {
                get_checked(&s, &k, max).unwrap_or_else(|| panic!("round {round}: lost old {k}"));
            }
            if get_checked(&s, &k, max).is_some() {
                durable.push((k, max));
            }
        }
        assert!(present >= durable.len());
        let st = s.stats();
        eprintln!(
            "round {round}: {} objects, {} bytes, {} segments evicted, {} acked",
            st.objects,
            st.bytes,
            s.counters()
                .evicted_segments
                .load(std::sync::atomic::Ordering::Relaxed),
            acked.len()
        );
        s.close();
    }
    assert!(
        durable.len() > 100,
        "children wrote too little: {}",
        durable.len()
    );
}

/// Churn through many evictions with refreshed, chunked, removed and hot objects mixed:
/// whatever is returned is exactly what was written, and the latest metadata.
#[test]
fn eviction_churn_never_serves_a_wrong_body() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 6 * MIB, small());
    let mut refreshed = std::collections::HashMap::new();
    for i in 0..3000u64 {
        let k = format!("churn{i}");
        let max = if i % 10 == 0 { 200 * KIB } else { 30 * KIB };
        put(&s, &k, &body_for(&k, max)).unwrap();
        if i % 3 == 0 && i > 0 {
            let old = format!("churn{}", i - 1);
            let mut m = meta_for(&old);
            m.headers.insert("x-refresh", HeaderValue::from(i));
            if s.update_meta(m).unwrap() {
                refreshed.insert(old, i);
            }
        }
        if i % 7 == 0 {
            s.remove(&format!("churn{}", i / 2));
        }
        for j in (i.saturating_sub(30)..i).step_by(5) {
            let k = format!("churn{j}");
            let max = if j % 10 == 0 { 200 * KIB } else { 30 * KIB };
            if get_checked(&s, &k, max).is_some() {
                if let Some(v) = refreshed.get(&k) {
                    let o = s.get(&k).unwrap();
                    assert_eq!(o.meta.headers["x-refresh"], v.to_string().as_str(), "{k}");
                }
            }
        }
    }
    assert!(
        s.counters()
            .evicted_segments
            .load(std::sync::atomic::Ordering::Relaxed)
            > 10
    );
    assert!(
        s.counters()
            .reappended
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    s.close();
    drop(s);
    let _ = std::fs::remove_file(dir.path().join("index.ckpt"));
    let s = open(dir.path(), 6 * MIB, small());
    let mut back = 0;
    for i in 0..3000u64 {
        let k = format!("churn{i}");
        let max = if i % 10 == 0 { 200 * KIB } else { 30 * KIB };
        if get_checked(&s, &k, max).is_some() {
            back += 1;
        }
    }
    assert!(back > 50, "{back}");
}

/// The RAM tier holds hot bodies and never serves a copy the disk no longer agrees with.
#[test]
fn the_ram_tier_follows_puts_refreshes_and_removals() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 64 * MIB, small());
    let key = "GET http://h/hot";
    put(&s, key, &Bytes::from_static(b"version one")).unwrap();
    for _ in 0..3 {
        assert_eq!(read_all(&s.get(key).unwrap().body).unwrap(), "version one");
    }
    assert!(s.stats().memory_bytes > 0, "a hot object is held in RAM");
    let mut m = meta_for(key);
    m.headers.insert("x-v", HeaderValue::from_static("2"));
    assert!(s.update_meta(m).unwrap());
    let o = s.get(key).unwrap();
    assert_eq!(o.meta.headers["x-v"], "2");
    assert_eq!(read_all(&o.body).unwrap(), "version one");
    put(&s, key, &Bytes::from_static(b"version two")).unwrap();
    assert_eq!(read_all(&s.get(key).unwrap().body).unwrap(), "version two");
    assert!(s.remove(key));
    assert!(s.get(key).is_none());
}

/// Reads are served from the checkpoint while the tail replays; writes wait for readiness.
#[test]
fn serves_from_the_checkpoint_while_the_tail_replays() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path(), 64 * MIB, small());
        for i in 0..500 {
            let k = format!("old{i}");
            put(&s, &k, &body_for(&k, 2 * KIB)).unwrap();
        }
        s.close();
    }
    {
        let s = open(dir.path(), 64 * MIB, small());
        for i in 0..20_000 {
            let k = format!("new{i}");
            put(&s, &k, &body_for(&k, 2 * KIB)).unwrap();
        }
        s.flush();
        s.simulate_crash();
    }
    let opts = DiskOptions {
        background: true,
        ..small()
    };
    let s = DiskStore::open_with(&cfg(dir.path(), 64 * MIB, 4 * MIB), opts).unwrap();
    let ready_at_first_read = s.is_ready();
    get_checked(&s, "old7", 2 * KIB).expect("checkpointed object served at once");
    if !ready_at_first_read {
        assert!(s.put(meta_for("x")).is_err(), "writes wait for the replay");
    }
    assert!(s.wait_ready(Duration::from_secs(30)));
    get_checked(&s, "new19999", 2 * KIB).expect("tail object after the replay");
    assert!(s.put(meta_for("x")).is_ok());
}

/// Once the store is full, a new key is stored only on its second miss (a `get` that finds
/// nothing counts as a miss); a key already stored is always replaced; before the store is
/// full, the first miss stores.
/// `len` bytes derived from `key`.
fn sized(key: &str, len: usize) -> Bytes {
    let seed = xxhash_rust::xxh3::xxh3_64(key.as_bytes()) as usize;
    (0..len)
        .map(|i| seed.wrapping_add(i.wrapping_mul(31) ^ (i >> 8)) as u8)
        .collect::<Vec<u8>>()
        .into()
}

#[test]
fn a_full_store_admits_by_frequency_per_byte() {
    let dir = tempfile::tempdir().unwrap();
    let opts = DiskOptions {
        admit_when_full: true,
        ..small()
    };
    let s = open(dir.path(), 8 * MIB, opts);
    assert!(s.get("early").is_none());
    put(&s, "early", &sized("early", 16 * 1024)).expect("not full yet: the first miss stores");
    // Fill past the budget with objects of one size asked for twice each (stored on the
    // second miss), so segments are reclaimed and what they drop sets the bar: 2 accesses
    // per 20 KiB.
    for i in 0..800 {
        let k = format!("filler{i:04}");
        assert!(s.get(&k).is_none());
        assert!(s.get(&k).is_none());
        put(&s, &k, &sized(&k, 20 * 1024)).unwrap();
    }
    assert!(
        s.counters()
            .evicted_segments
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    let refused = || {
        s.counters()
            .refused_admission
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    // 16 KiB asked for once: below the bar; asked for twice: above it.
    assert!(s.get("newcomer").is_none(), "first miss");
    let before = refused();
    assert!(
        put(&s, "newcomer", &sized("newcomer", 16 * 1024)).is_err(),
        "a full store refuses a key on its first miss"
    );
    assert_eq!(refused(), before + 1);
    assert!(s.get("newcomer").is_none(), "second miss");
    put(&s, "newcomer", &sized("newcomer", 16 * 1024)).expect("admitted on the second miss");
    assert_eq!(
        read_all(&s.get("newcomer").expect("stored").body).unwrap(),
        sized("newcomer", 16 * 1024)
    );
    // Twice asked for, but 40 KiB: half the worth per byte of the 20 KiB objects.
    assert!(s.get("bulky").is_none());
    assert!(s.get("bulky").is_none());
    assert!(
        put(&s, "bulky", &sized("bulky", 40 * 1024)).is_err(),
        "admission weighs frequency by size"
    );
    // A stored key is always replaced, whatever its frequency.
    let last = "filler0799";
    put(&s, last, &sized(last, 60 * 1024)).expect("a stored key is always replaced");
    assert_eq!(
        read_all(&s.get(last).unwrap().body).unwrap(),
        sized(last, 60 * 1024)
    );
}

/// The admission sketch and bar survive a clean restart: a full store keeps refusing a
/// one-hit wonder and keeps admitting a key asked for before the restart.
#[test]
fn admission_state_survives_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || DiskOptions {
        admit_when_full: true,
        ..small()
    };
    let s = open(dir.path(), 8 * MIB, opts());
    for i in 0..800 {
        let k = format!("filler{i:04}");
        let _ = s.get(&k);
        let _ = s.get(&k);
        put(&s, &k, &sized(&k, 20 * 1024)).unwrap();
    }
    // Asked for twice before the restart, never stored.
    assert!(s.get("returning").is_none());
    assert!(s.get("returning").is_none());
    s.close();
    drop(s);
    let s = open(dir.path(), 8 * MIB, opts());
    assert!(dir.path().join("sketch.bin").exists());
    // More of the same: the store reclaims again, so it knows it is full.
    for i in 800..900 {
        let k = format!("filler{i:04}");
        let _ = s.get(&k);
        let _ = s.get(&k);
        put(&s, &k, &sized(&k, 20 * 1024)).unwrap();
    }
    assert!(s.get("once").is_none());
    assert!(
        put(&s, "once", &sized("once", 16 * 1024)).is_err(),
        "a one-hit wonder is still refused"
    );
    assert!(s.get("returning").is_none());
    put(&s, "returning", &sized("returning", 16 * 1024))
        .expect("the counts from before the restart came back");
}

/// A large (chunked) object that is read is re-appended whole when its segments are
/// reclaimed, also after a refresh (a Meta record pointing at the body), and reads back
/// intact with its newest metadata.
#[test]
fn a_hit_large_object_is_reappended_whole() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 8 * MIB, small());
    let key = "GET http://h/large";
    let big = sized(key, 300 * 1024 + 17);
    put(&s, key, &big).unwrap();
    let o = s.get(key).expect("stored");
    assert!(matches!(o.body, strata::store::Body::Reader(_)), "chunked");
    let mut refreshed = meta_for(key);
    refreshed
        .headers
        .insert("x-refreshed", HeaderValue::from_static("yes"));
    assert!(s.update_meta(refreshed).unwrap());
    for round in 0..40 {
        for i in 0..40 {
            let k = format!("cold{round}-{i}");
            put(&s, &k, &body_for(&k, 40 * KIB)).unwrap();
        }
        let o = s
            .get(key)
            .unwrap_or_else(|| panic!("round {round}: the large object was dropped"));
        assert_eq!(read_all(&o.body).unwrap(), big, "round {round}");
        assert_eq!(o.meta.headers["x-refreshed"], "yes");
    }
    let c = s.counters();
    assert!(
        c.evicted_segments
            .load(std::sync::atomic::Ordering::Relaxed)
            > 20
    );
    assert!(c.reappended.load(std::sync::atomic::Ordering::Relaxed) > 0);
    // And after a restart.
    s.close();
    drop(s);
    let s = open(dir.path(), 8 * MIB, small());
    assert_eq!(read_all(&s.get(key).unwrap().body).unwrap(), big);
}

/// The store's own thread and the server both checkpoint: checkpoints taken at the same
/// time all succeed (they used to rename each other's temporary file away).
#[test]
fn concurrent_checkpoints_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), 16 * MIB, small());
    for i in 0..200 {
        let k = format!("k{i}");
        put(&s, &k, &body_for(&k, 4 * KIB)).unwrap();
    }
    std::thread::scope(|sc| {
        for _ in 0..4 {
            sc.spawn(|| {
                for _ in 0..50 {
                    s.checkpoint().expect("a checkpoint");
                }
            });
        }
    });
    s.close();
    drop(s);
    let s = open(dir.path(), 16 * MIB, small());
    for i in 0..200 {
        let k = format!("k{i}");
        get_checked(&s, &k, 4 * KIB).expect("stored");
    }
}
