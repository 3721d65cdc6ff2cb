//! `strata-tools replay`: sends a Zipf workload or a trace to a running node over plain
//! HTTP/1.1 (keep-alive, one connection per worker) and reports the hit ratio the node
//! declares in `X-Cache` (CloudFront's vocabulary) or, failing that, the last member of
//! `Cache-Status` (RFC 9211), and how many requests went to the origin (misses and
//! revalidations, less those the node marks `collapsed`: they joined another fetch).

use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct ReplayArgs {
    /// The node, e.g. http://127.0.0.1:8080
    pub target: String,
    /// A trace: one path (`/a/b?c`) or URL per line; `#` starts a comment.
    #[arg(long)]
    pub trace: Option<std::path::PathBuf>,
    /// Distinct objects in the Zipf workload.
    #[arg(long, default_value_t = 10_000)]
    pub objects: u64,
    /// Requests to send.
    #[arg(long, default_value_t = 50_000)]
    pub requests: u64,
    /// Zipf exponent (1.0 is typical of CDN traffic).
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
    /// Path prefix of the generated objects.
    #[arg(long, default_value = "/replay/obj-")]
    pub prefix: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    pub concurrency: u64,
    /// Host header to send (default: the target's authority).
    #[arg(long)]
    pub host: Option<String>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// How the node said it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    RefreshHit,
    Miss,
    Error,
    Unknown,
}

/// Classifies a response by its `X-Cache` and `Cache-Status` headers.
pub fn classify(x_cache: Option<&str>, cache_status: Option<&str>) -> Outcome {
    if let Some(x) = x_cache {
        let x = x.trim().to_ascii_lowercase();
        return if x.starts_with("refreshhit") {
            Outcome::RefreshHit
        } else if x.starts_with("hit") {
            Outcome::Hit
        } else if x.starts_with("miss") {
            Outcome::Miss
        } else if x.starts_with("error") {
            Outcome::Error
        } else {
            Outcome::Unknown
        };
    }
    if let Some(cs) = cache_status {
        // Each cache appends its member; the last one is the node we asked.
        let last = cs.rsplit(',').next().unwrap_or("").to_ascii_lowercase();
        let params: Vec<&str> = last.split(';').map(str::trim).collect();
        if params.contains(&"hit") {
            return Outcome::Hit;
        }
        if params.iter().any(|p| p.starts_with("fwd=")) {
            return if params.contains(&"fwd-status=304") {
                Outcome::RefreshHit
            } else {
                Outcome::Miss
            };
        }
    }
    Outcome::Unknown
}

struct Target {
    addr: String,
    host: String,
}

fn parse_target(t: &str, host: Option<&str>) -> Result<Target> {
    let rest = t
        .strip_prefix("http://")
        .context("replay speaks plain HTTP: the target must start with http://")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok(Target {
        addr,
        host: host.unwrap_or(authority).to_string(),
    })
}

/// Samples ranks 0..n with probability ∝ 1/(rank+1)^alpha.
pub struct Zipf {
    cdf: Vec<f64>,
    state: u64,
}

impl Zipf {
    pub fn new(n: u64, alpha: f64, seed: u64) -> Zipf {
        let mut cdf = Vec::with_capacity(n as usize);
        let mut sum = 0.0;
        for i in 0..n {
            sum += 1.0 / ((i + 1) as f64).powf(alpha);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf {
            cdf,
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    pub fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let u = (self.state >> 11) as f64 / (1u64 << 53) as f64;
        self.cdf.partition_point(|&c| c < u) as u64
    }
}

#[derive(Default)]
struct Tally {
    hit: AtomicU64,
    refresh: AtomicU64,
    miss: AtomicU64,
    error: AtomicU64,
    unknown: AtomicU64,
    failed: AtomicU64,
    /// Misses and revalidations that joined another request's fetch.
    collapsed: AtomicU64,
}

/// Whether the node says (RFC 9211's `collapsed`, in its own, last `Cache-Status` member)
/// that the request joined another request's fetch instead of making its own.
pub fn collapsed(cache_status: Option<&str>) -> bool {
    cache_status.is_some_and(|cs| {
        cs.rsplit(',')
            .next()
            .unwrap_or("")
            .split(';')
            .any(|p| p.trim().eq_ignore_ascii_case("collapsed"))
    })
}

fn request(
    conn: &mut Option<BufReader<TcpStream>>,
    t: &Target,
    path: &str,
) -> Result<(Outcome, bool)> {
    for attempt in 0..2 {
        if conn.is_none() {
            let s =
                TcpStream::connect(&t.addr).with_context(|| format!("connecting to {}", t.addr))?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            s.set_nodelay(true)?;
            *conn = Some(BufReader::new(s));
        }
        let Some(c) = conn.as_mut() else { continue };
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: strata-tools-replay\r\n\r\n",
            t.host
        );
        match exchange(c, &req) {
            Ok(o) => return Ok(o),
            Err(e) if attempt == 0 => {
                // A kept-alive connection the server closed: reconnect once.
                let _ = e;
                *conn = None;
            }
            Err(e) => return Err(e),
        }
    }
    bail!("request failed twice")
}

fn exchange(c: &mut BufReader<TcpStream>, req: &str) -> Result<(Outcome, bool)> {
    c.get_mut().write_all(req.as_bytes())?;
    let mut line = String::new();
    if c.read_line(&mut line)? == 0 {
        bail!("connection closed");
    }
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("bad status line")?;
    let (mut x_cache, mut cache_status, mut len, mut chunked, mut close) =
        (None, None, None, false, false);
    loop {
        line.clear();
        if c.read_line(&mut line)? == 0 {
            bail!("connection closed in the headers");
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let Some((n, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim().to_string();
        match n.trim().to_ascii_lowercase().as_str() {
            "x-cache" => x_cache = Some(v),
            "cache-status" => cache_status = Some(v),
            "content-length" => len = v.parse::<u64>().ok(),
            "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
            "connection" => close = v.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    if chunked {
        loop {
            line.clear();
            c.read_line(&mut line)?;
            let n = u64::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)?;
            std::io::copy(&mut c.by_ref().take(n + 2), &mut std::io::sink())?;
            if n == 0 {
                break;
            }
        }
    } else if let Some(n) = len {
        std::io::copy(&mut c.by_ref().take(n), &mut std::io::sink())?;
    } else if status != 204 && status != 304 {
        std::io::copy(c, &mut std::io::sink())?;
        close = true;
    }
    if close {
        bail!("server closed the connection");
    }
    let outcome = if status >= 500 {
        Outcome::Error
    } else {
        classify(x_cache.as_deref(), cache_status.as_deref())
    };
    Ok((outcome, collapsed(cache_status.as_deref())))
}

pub fn run(a: ReplayArgs) -> Result<()> {
    let target = Arc::new(parse_target(&a.target, a.host.as_deref())?);
    let paths: Arc<Vec<String>> = Arc::new(match &a.trace {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading trace {}", f.display()))?;
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|l| match l.split_once("://") {
                    Some((_, rest)) => format!("/{}", rest.split_once('/').map_or("", |x| x.1)),
                    None => l.to_string(),
                })
                .collect()
        }
        None => Vec::new(),
    });
    if a.trace.is_some() && paths.is_empty() {
        bail!("the trace holds no requests");
    }
    let total = if a.trace.is_some() {
        paths.len() as u64
    } else {
        a.requests
    };
    let next = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Tally::default());
    let t0 = Instant::now();
    let workers: Vec<_> = (0..a.concurrency.max(1))
        .map(|w| {
            let (target, paths, next, tally, a) = (
                target.clone(),
                paths.clone(),
                next.clone(),
                tally.clone(),
                a.clone(),
            );
            std::thread::spawn(move || {
                let mut zipf =
                    (a.trace.is_none()).then(|| Zipf::new(a.objects, a.alpha, a.seed + w));
                let mut conn = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let path = match zipf.as_mut() {
                        Some(z) => format!("{}{}", a.prefix, z.next()),
                        None => paths[i as usize].clone(),
                    };
                    let r = request(&mut conn, &target, &path);
                    if let Ok((Outcome::Miss | Outcome::RefreshHit, true)) = r {
                        tally.collapsed.fetch_add(1, Ordering::Relaxed);
                    }
                    let c = match r {
                        Ok((Outcome::Hit, _)) => &tally.hit,
                        Ok((Outcome::RefreshHit, _)) => &tally.refresh,
                        Ok((Outcome::Miss, _)) => &tally.miss,
                        Ok((Outcome::Error, _)) => &tally.error,
                        Ok((Outcome::Unknown, _)) => &tally.unknown,
                        Err(_) => &tally.failed,
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let secs = t0.elapsed().as_secs_f64();
    let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (hit, refresh, miss, error, unknown, failed) = (
        g(&tally.hit),
        g(&tally.refresh),
        g(&tally.miss),
        g(&tally.error),
        g(&tally.unknown),
        g(&tally.failed),
    );
    let answered = hit + refresh + miss + error + unknown;
    println!(
        "requests        {total} in {secs:.1}s ({:.0}/s)",
        total as f64 / secs
    );
    println!("hits            {hit}");
    println!("refresh hits    {refresh}");
    println!("misses          {miss}");
    println!("errors          {error} (5xx) + {failed} failed requests");
    if unknown > 0 {
        println!("unclassified    {unknown} (no X-Cache or Cache-Status header)");
    }
    println!(
        "hit ratio       {:.2}% ({:.2}% counting refresh hits)",
        100.0 * hit as f64 / answered.max(1) as f64,
        100.0 * (hit + refresh) as f64 / answered.max(1) as f64
    );
    let collapsed = g(&tally.collapsed);
    println!(
        "origin fetches  {} ({miss} misses + {refresh} revalidations - {collapsed} collapsed into another's fetch)",
        (miss + refresh).saturating_sub(collapsed)
    );
    if failed == total {
        bail!("every request failed: is a node listening on {}?", a.target);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_cloudfront_and_rfc9211_headers() {
        assert_eq!(classify(Some("Hit from strata"), None), Outcome::Hit);
        assert_eq!(
            classify(Some("RefreshHit from strata"), None),
            Outcome::RefreshHit
        );
        assert_eq!(classify(Some("Miss from strata"), None), Outcome::Miss);
        assert_eq!(
            classify(None, Some("shield; fwd=miss; stored, pop; hit; ttl=10")),
            Outcome::Hit
        );
        assert_eq!(classify(None, Some("pop; fwd=miss")), Outcome::Miss);
        assert_eq!(classify(None, None), Outcome::Unknown);
        assert!(collapsed(Some(
            "shield; fwd=miss, pop; fwd=miss; collapsed"
        )));
        assert!(!collapsed(Some(
            "shield; fwd=miss; collapsed, pop; fwd=miss"
        )));
        assert!(!collapsed(None));
    }

    #[test]
    fn zipf_is_skewed() {
        let mut z = Zipf::new(1000, 1.0, 7);
        let top = (0..10_000).filter(|_| z.next() < 10).count();
        assert!(top > 3000 && top < 5000, "{top}");
    }
}
