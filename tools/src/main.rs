//! `strata-tools`: offline tools for a strata cache directory, and `replay`, a load
//! generator that measures a running node's hit ratio.
//!
//! Read-only subcommands (`inspect`, `find`, `verify` without `--drop`) never take the
//! store's lock and may run beside a live node. Those that write (`verify --drop`,
//! `compact`) take the lock and refuse, naming the pid, a store a node holds.

mod replay;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::time::Duration;
use strata::config::units::{ByteSize, Dur};
use strata::config::StoreConfig;
use strata::store::disk::checkpoint::Checkpoint;
use strata::store::disk::lock::StoreLock;
use strata::store::disk::record::Kind;
use strata::store::disk::survey::{survey, LiveObject, Survey};
use strata::store::disk::{DiskOptions, DiskStore};
use strata::store::ObjectMeta;

#[derive(Parser)]
#[command(
    name = "strata-tools",
    version,
    about = "Offline tools for strata cache directories"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Objects, bytes, segments (fill and garbage), age and size histograms.
    Inspect { dir: PathBuf },
    /// Where an object lives, its headers and freshness. URL matches every key (and
    /// variant) of that host and path; anything else is a key or a part of one.
    Find { dir: PathBuf, what: String },
    /// Checks every record's checksums and every chunk reference; reports bad records.
    Verify {
        dir: PathBuf,
        /// Also take bad objects out of the index checkpoint (needs the store's lock).
        #[arg(long)]
        drop: bool,
    },
    /// Rewrites sparse segments, keeping every live object, and frees them.
    Compact {
        dir: PathBuf,
        /// Compact segments whose live bytes are at most this share of the segment.
        #[arg(long, default_value_t = 0.5)]
        max_fill: f64,
        /// The store's size budget (default: what the checkpoint records).
        #[arg(long)]
        size: Option<ByteSize>,
    },
    /// Sends a Zipf workload or a trace (one path or URL per line) to a running node and
    /// reports its hit ratio (from X-Cache / Cache-Status) and origin fetches.
    Replay(replay::ReplayArgs),
}

fn main() {
    if let Err(e) = run() {
        eprintln!("strata-tools: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Inspect { dir } => inspect(&dir),
        Cmd::Find { dir, what } => find(&dir, &what),
        Cmd::Verify { dir, drop } => verify(&dir, drop),
        Cmd::Compact {
            dir,
            max_fill,
            size,
        } => compact(&dir, max_fill, size),
        Cmd::Replay(args) => replay::run(args),
    }
}

fn check_dir(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        bail!(
            "{} is not a directory (give the store's path, `store.path` in the config)",
            dir.display()
        );
    }
    Ok(())
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} {elapsed}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

fn load(dir: &Path) -> Result<Survey> {
    check_dir(dir)?;
    let pb = bar(0, "scanning segments");
    let s = survey(dir, &mut |done, total| {
        pb.set_length(total);
        pb.set_position(done);
    })
    .with_context(|| format!("cannot read the store at {}", dir.display()))?;
    pb.finish_and_clear();
    Ok(s)
}

fn human(n: u64) -> String {
    ByteSize(n).to_string()
}

fn histogram(title: &str, values: impl Iterator<Item = u64>, label: impl Fn(u64) -> String) {
    let mut buckets = std::collections::BTreeMap::<u32, u64>::new();
    for v in values {
        *buckets.entry(64 - v.max(1).leading_zeros()).or_default() += 1;
    }
    println!("{title}:");
    let max = buckets.values().copied().max().unwrap_or(1);
    for (b, n) in buckets {
        let hi = 1u64.checked_shl(b).unwrap_or(u64::MAX);
        let bar = "#".repeat(((n * 40).div_ceil(max)) as usize);
        println!("  < {:>10} {:>9} {bar}", label(hi), n);
    }
}

fn inspect(dir: &Path) -> Result<()> {
    let s = load(dir)?;
    let holder = StoreLock::held_by(dir);
    println!("store      {}", dir.display());
    println!(
        "in use by  {}",
        holder.map_or("nobody (offline)".to_string(), |p| format!("process {p}"))
    );
    let bytes: u64 = s.segments.iter().map(|x| x.file_bytes).sum();
    let live: u64 = s.segments.iter().map(|x| x.live_bytes).sum();
    let body: u64 = s.objects.iter().map(|o| o.body_len).sum();
    println!("objects    {}", s.objects.len());
    println!("bodies     {}", human(body));
    println!(
        "on disk    {} in {} segments ({} live, {} garbage)",
        human(bytes),
        s.segments.len(),
        human(live),
        human(bytes.saturating_sub(live))
    );
    match (&s.checkpoint, &s.checkpoint_error) {
        (Some(c), _) => println!(
            "checkpoint {} entries, taken at {} (segment gen {} offset {})",
            s.checkpoint_entries,
            strata::time::fmt_http_date(c.created_at),
            c.active_gen,
            c.active_offset
        ),
        (None, Some(e)) => println!("checkpoint damaged: {e}"),
        (None, None) => {
            println!("checkpoint none (the next open rebuilds the index from the segments)")
        }
    }
    println!(
        "bad        {} records (run `strata-tools verify` for details)",
        s.bad.len()
    );
    println!();
    println!(
        "{:>5} {:>8} {:>10} {:>10} {:>6} {:>8}  created",
        "slot", "gen", "bytes", "live", "fill", "objects"
    );
    for g in &s.segments {
        println!(
            "{:>5} {:>8} {:>10} {:>10} {:>5.0}% {:>8}  {}",
            g.slot,
            g.generation,
            human(g.file_bytes),
            human(g.live_bytes),
            100.0 * g.live_bytes as f64 / g.size.max(1) as f64,
            g.live_objects,
            strata::time::fmt_http_date(g.created_at)
        );
    }
    println!();
    let now = strata::time::now_ms();
    histogram(
        "age",
        s.objects
            .iter()
            .map(|o| now.saturating_sub(o.written_at) / 1000),
        |s| format!("{s}s"),
    );
    histogram("body size", s.objects.iter().map(|o| o.body_len), human);
    Ok(())
}

fn describe(o: &LiveObject) {
    println!("key        {:?}", o.key);
    println!(
        "record     {:?} in segment slot {} at offset {} ({} bytes)",
        o.kind, o.slot, o.offset, o.record_len
    );
    if o.kind == Kind::Meta {
        if let Some(r) = o.refs.first() {
            println!(
                "body       in the object record at slot {} offset {} (refreshed by a 304)",
                r.0, r.1
            );
        }
    }
    if o.chunked && o.kind == Kind::Object {
        println!("chunks     {}", o.refs.len());
    }
    println!("written    {}", strata::time::fmt_http_date(o.written_at));
    match ObjectMeta::decode(o.key.clone(), &o.meta) {
        Ok(m) => {
            let now = strata::time::now_ms();
            println!("status     {}", m.status);
            println!("body       {} bytes", m.body_len);
            println!(
                "freshness  {} (age {}s, lifetime {}s, {}s left)",
                if m.is_fresh(now) { "fresh" } else { "stale" },
                m.age_at(now) / 1000,
                m.freshness_lifetime / 1000,
                m.ttl_left(now) / 1000
            );
            for (n, v) in &m.headers {
                println!("  {}: {}", n, String::from_utf8_lossy(v.as_bytes()));
            }
        }
        Err(e) => println!("metadata   undecodable: {e}"),
    }
    println!();
}

fn find(dir: &Path, what: &str) -> Result<()> {
    let s = load(dir)?;
    // A URL's cache keys start with host + path (+ query), as `policy::key` builds them.
    let prefix = what.split_once("://").map(|(_, rest)| rest.to_string());
    let hits: Vec<&LiveObject> = s
        .objects
        .iter()
        .filter(|o| match &prefix {
            Some(p) => o.key.starts_with(p.as_str()) || o.key.ends_with(p.as_str()),
            None => o.key == what,
        })
        .collect();
    let hits = if hits.is_empty() && prefix.is_none() {
        s.objects.iter().filter(|o| o.key.contains(what)).collect()
    } else {
        hits
    };
    if hits.is_empty() {
        bail!(
            "no stored object matches {what:?} ({} objects searched)",
            s.objects.len()
        );
    }
    for o in hits {
        describe(o);
    }
    Ok(())
}

fn verify(dir: &Path, drop_bad: bool) -> Result<()> {
    let _lock = if drop_bad {
        check_dir(dir)?;
        Some(StoreLock::acquire(dir).context("verify --drop rewrites the checkpoint")?)
    } else {
        None
    };
    let s = load(dir)?;
    let in_bad = |slot: u32, off: u64| {
        s.bad
            .iter()
            .any(|b| b.slot == slot && off >= b.offset && off < b.offset + b.len.max(1))
    };
    for b in &s.bad {
        println!(
            "bad record: segment slot {} offset {} ({} bytes): {}",
            b.slot, b.offset, b.len, b.error
        );
    }
    // Objects whose chunks are damaged.
    let mut bad_objects = Vec::new();
    for o in &s.objects {
        if o.chunked && o.kind == Kind::Object && o.refs.iter().any(|r| in_bad(r.0, r.1)) {
            println!("bad object: {:?}: a chunk of its body is damaged", o.key);
            bad_objects.push(o.key_hash);
        }
    }
    println!(
        "{} records checked in {} segments: {} bad records, {} objects with bad chunks",
        s.segments.iter().map(|x| x.records).sum::<u64>(),
        s.segments.len(),
        s.bad.len(),
        bad_objects.len()
    );
    if drop_bad {
        let Some(c) = Checkpoint::read(dir).context("reading the checkpoint")? else {
            println!(
                "no checkpoint: the next open rebuilds the index and skips bad records itself"
            );
            return Ok(());
        };
        let mut kept = Vec::with_capacity(c.entries.len());
        let mut dropped = 0;
        for (h, v) in c.iter() {
            let e = strata::store::disk::index::Entry::unpack(v);
            if bad_objects.contains(&h) || in_bad(e.slot, e.offset) {
                dropped += 1;
                continue;
            }
            kept.extend_from_slice(&h.to_le_bytes());
            kept.extend_from_slice(&v.to_le_bytes());
        }
        Checkpoint::write(dir, &c.header, &kept).context("writing the checkpoint")?;
        println!("dropped {dropped} index entries that pointed at bad records");
    } else if !s.bad.is_empty() || !bad_objects.is_empty() {
        std::process::exit(2);
    }
    Ok(())
}

fn compact(dir: &Path, max_fill: f64, size: Option<ByteSize>) -> Result<()> {
    check_dir(dir)?;
    if let Some(pid) = StoreLock::held_by(dir) {
        bail!(
            "the store at {} is in use by process {pid}; stop the node before compacting",
            dir.display()
        );
    }
    let size = match size {
        Some(s) => s.0,
        None => {
            let c = Checkpoint::read(dir)?
                .context("no checkpoint records the store's size; pass --size (store.size)")?;
            c.header.segment_size * c.header.slot_gens.len() as u64
        }
    };
    let cfg = StoreConfig {
        path: dir.to_path_buf(),
        size: ByteSize(size),
        memory: ByteSize(1 << 20),
        checkpoint_interval: Dur(Duration::from_secs(3600)),
    };
    let store = DiskStore::open_with(
        &cfg,
        DiskOptions {
            background: false,
            ..DiskOptions::default()
        },
    )
    .with_context(|| format!("opening the store at {}", dir.display()))?;
    let pb = bar(0, "compacting");
    let reclaimed = store.compact(max_fill, &mut |done, total| {
        pb.set_length(total);
        pb.set_position(done);
    })?;
    pb.finish_and_clear();
    store.close();
    println!("reclaimed {} of garbage", human(reclaimed));
    Ok(())
}
