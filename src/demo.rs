//! `strata demo`: a sample origin and a POP → regional → shield chain on loopback, a Zipf
//! workload replayed through the POP, then the shield restarted and the workload replayed
//! again. Prints hit ratios and upstream requests per tier before and after the restart.
//!
//! Needs nothing but the binary: every part runs in this process on 127.0.0.1.
//!
//! `strata demo --peers` instead replays one Zipf workload spread over three nodes twice:
//! as three independent nodes, then as three cooperating peers of one tier (127.0.0.2-4),
//! and prints the origin requests of each.

use crate::config::Resolved;
use crate::proxy::hop::Outcome;
use crate::server::Node;
use crate::workload::{object_size, Zipf};
use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::SeedableRng;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;

/// The sample origin: `/obj/<id>` answers a deterministic body of 1–16 KiB, cacheable for an
/// hour, with an ETag. Counts the requests it serves.
pub struct SampleOrigin {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl SampleOrigin {
    pub async fn start() -> anyhow::Result<SampleOrigin> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicU64::new(0));
        let count = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let count = count.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        count.fetch_add(1, Ordering::Relaxed);
                        async move {
                            Ok::<_, std::convert::Infallible>(sample_response(req.uri().path()))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(SampleOrigin {
            addr,
            requests,
            task,
        })
    }
}

impl Drop for SampleOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn sample_response(path: &str) -> Response<Full<Bytes>> {
    let id = path
        .strip_prefix("/obj/")
        .and_then(|s| s.parse::<u64>().ok());
    let Some(id) = id else {
        let mut r = Response::new(Full::new(Bytes::from_static(b"not found\n")));
        *r.status_mut() = http::StatusCode::NOT_FOUND;
        return r;
    };
    let size = object_size(id);
    let body: Vec<u8> = (0..size)
        .map(|i| b'a' + ((id as usize + i) % 26) as u8)
        .collect();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    let h = r.headers_mut();
    h.insert(
        "cache-control",
        http::HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        "content-type",
        http::HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = http::HeaderValue::from_str(&format!("\"obj-{id}\"")) {
        h.insert("etag", v);
    }
    r
}

struct Tier {
    name: &'static str,
    dir: PathBuf,
    memory: &'static str,
    upstream: String,
    listen: SocketAddr,
    admin: SocketAddr,
}

impl Tier {
    fn config(&self) -> anyhow::Result<Resolved> {
        let text = format!(
            r#"
[node]
id = "{name}"
listen = "{listen}"
admin_listen = "{admin}"

[store]
path = "{dir}"
size = "256MiB"
memory = "{memory}"

[[origins]]
id = "upstream"
url = "{upstream}"

[default_behavior]
origin = "upstream"
cache_policy = "UseOriginCacheControlHeaders"
"#,
            name = self.name,
            listen = self.listen,
            admin = self.admin,
            dir = self.dir.display(),
            memory = self.memory,
            upstream = self.upstream,
        );
        Ok(Resolved::from_toml(&text, "demo")?)
    }
}

/// Per-tier counters at one moment.
#[derive(Clone, Copy, Default)]
struct Counts {
    requests: u64,
    hits: u64,
    /// Requests this tier sent to its upstream (collapsed misses are not sent).
    upstream: u64,
}

fn counts(node: &Node) -> Counts {
    let m = &node.proxy.metrics;
    let hits = m.requests_total(Outcome::Hit)
        + m.requests_total(Outcome::RefreshHit)
        + m.requests_total(Outcome::Stale);
    let requests = hits
        + m.requests_total(Outcome::Miss)
        + m.requests_total(Outcome::Pass)
        + m.requests_total(Outcome::Error);
    let upstream = m
        .render(node.proxy.store.stats())
        .lines()
        .filter(|l| l.starts_with("strata_origin_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64;
    Counts {
        requests,
        hits,
        upstream,
    }
}

async fn free_addr() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    Ok(l.local_addr()?)
}

pub async fn run(requests: u64, objects: u64) -> anyhow::Result<()> {
    let base = std::env::temp_dir().join(format!("strata-demo-{}", std::process::id()));
    std::fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    let result = run_in(&base, requests, objects).await;
    let _ = std::fs::remove_dir_all(&base);
    result
}

async fn run_in(base: &Path, requests: u64, objects: u64) -> anyhow::Result<()> {
    let origin = SampleOrigin::start().await?;
    println!("sample origin on http://{}", origin.addr);

    let shield = Tier {
        name: "shield",
        dir: base.join("shield"),
        memory: "64MiB",
        upstream: format!("http://{}", origin.addr),
        listen: free_addr().await?,
        admin: free_addr().await?,
    };
    let regional = Tier {
        name: "regional",
        dir: base.join("regional"),
        memory: "4MiB",
        upstream: format!("http://{}", shield.listen),
        listen: free_addr().await?,
        admin: free_addr().await?,
    };
    let pop = Tier {
        name: "pop",
        dir: base.join("pop"),
        memory: "1MiB",
        upstream: format!("http://{}", regional.listen),
        listen: free_addr().await?,
        admin: free_addr().await?,
    };

    let mut shield_node = Node::start(shield.config()?).await?;
    let regional_node = Node::start(regional.config()?).await?;
    let pop_node = Node::start(pop.config()?).await?;
    println!(
        "chain: pop {} -> regional {} -> shield {} -> origin {}\n",
        pop.listen, regional.listen, shield.listen, origin.addr
    );

    let zipf = Arc::new(Zipf::new(objects, 0.9));
    println!("phase 1: {requests} requests, Zipf(0.9) over {objects} objects, through the POP");
    let before = snapshot(&pop_node, &regional_node, &shield_node, &origin);
    replay(pop.listen, zipf.clone(), requests).await?;
    let after1 = snapshot(&pop_node, &regional_node, &shield_node, &origin);
    report(&before, &after1);

    println!("\nrestarting the shield (clean stop, start on the same store)");
    let t = Instant::now();
    shield_node.shutdown().await;
    shield_node = Node::start(shield.config()?).await?;
    println!(
        "shield serving again after {:.0} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );

    println!("\nphase 2: the same workload again");
    let before2 = snapshot(&pop_node, &regional_node, &shield_node, &origin);
    replay(pop.listen, zipf, requests).await?;
    let after2 = snapshot(&pop_node, &regional_node, &shield_node, &origin);
    report(&before2, &after2);

    pop_node.shutdown().await;
    regional_node.shutdown().await;
    shield_node.shutdown().await;
    Ok(())
}

struct Snapshot {
    tiers: [(&'static str, Counts); 3],
    origin: u64,
}

fn snapshot(pop: &Node, regional: &Node, shield: &Node, origin: &SampleOrigin) -> Snapshot {
    Snapshot {
        tiers: [
            ("pop", counts(pop)),
            ("regional", counts(regional)),
            ("shield", counts(shield)),
        ],
        origin: origin.requests.load(Ordering::Relaxed),
    }
}

fn report(before: &Snapshot, after: &Snapshot) {
    println!(
        "  {:<10} {:>10} {:>10} {:>10} {:>12}",
        "tier", "requests", "hits", "hit ratio", "sent up"
    );
    for i in 0..3 {
        let (name, a) = after.tiers[i];
        let (_, b) = before.tiers[i];
        // A restarted node's counters start again from zero.
        let (req, hits, up) = if a.requests >= b.requests {
            (
                a.requests - b.requests,
                a.hits - b.hits,
                a.upstream.saturating_sub(b.upstream),
            )
        } else {
            (a.requests, a.hits, a.upstream)
        };
        let ratio = if req == 0 {
            0.0
        } else {
            hits as f64 / req as f64
        };
        println!(
            "  {:<10} {:>10} {:>10} {:>10.3} {:>12}",
            name, req, hits, ratio, up
        );
    }
    println!("  {:<10} {:>10}", "origin", after.origin - before.origin);
}

async fn replay(target: SocketAddr, zipf: Arc<Zipf>, requests: u64) -> anyhow::Result<()> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..32 {
        let (client, zipf, next, errors) =
            (client.clone(), zipf.clone(), next.clone(), errors.clone());
        workers.push(tokio::spawn(async move {
            let mut rng = rand::rngs::SmallRng::from_rng(&mut rand::rng());
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let id = zipf.sample(&mut rng);
                let uri: http::Uri = match format!("http://{target}/obj/{id}").parse() {
                    Ok(u) => u,
                    Err(_) => continue,
                };
                match client.get(uri).await {
                    Ok(resp) if resp.status().is_success() => {
                        let len = resp
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes().len())
                            .unwrap_or(0);
                        if len != object_size(id) {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let e = errors.load(Ordering::Relaxed);
    if e > 0 {
        anyhow::bail!("{e} requests failed or returned a wrong body");
    }
    Ok(())
}

/// Three nodes in front of the sample origin, each on its own loopback address; with
/// `cluster`, they are peers of one tier.
async fn three_nodes(base: &Path, origin: SocketAddr, cluster: bool) -> anyhow::Result<Vec<Node>> {
    let ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
    let mut listens = Vec::new();
    for ip in ips {
        let l = TcpListener::bind((ip, 0)).await.with_context(|| {
            format!("cannot bind {ip} (the peers demo needs 127.0.0.0/8 on loopback)")
        })?;
        listens.push(l.local_addr()?);
    }
    let members = listens
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut nodes = Vec::new();
    for (i, listen) in listens.iter().enumerate() {
        let name = format!("{}-{}", if cluster { "peer" } else { "solo" }, i + 1);
        let cluster_section = if cluster {
            format!("[cluster]\npeers = [{members}]\n")
        } else {
            String::new()
        };
        let text = format!(
            r#"
[node]
id = "{name}"
listen = "{listen}"
admin_listen = "{ip}:0"

[store]
path = "{dir}"
size = "256MiB"
memory = "64MiB"

{cluster_section}
[[origins]]
id = "origin"
url = "http://{origin}"

[default_behavior]
origin = "origin"
cache_policy = "UseOriginCacheControlHeaders"
"#,
            ip = listen.ip(),
            dir = base.join(&name).display(),
        );
        nodes.push(Node::start(Resolved::from_toml(&text, "demo")?).await?);
    }
    Ok(nodes)
}

/// Sends `requests` Zipf-distributed GETs, round-robin over `targets`, all with one Host
/// (the tier's public name), from 32 concurrent viewers.
async fn replay_spread(
    targets: &[SocketAddr],
    zipf: Arc<Zipf>,
    requests: u64,
    seed: u64,
) -> anyhow::Result<()> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let targets: Arc<Vec<SocketAddr>> = Arc::new(targets.to_vec());
    let mut workers = Vec::new();
    for w in 0..32u64 {
        let (client, zipf, next, errors, targets) = (
            client.clone(),
            zipf.clone(),
            next.clone(),
            errors.clone(),
            targets.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed ^ w);
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= requests {
                    break;
                }
                let id = zipf.sample(&mut rng);
                let target = targets[(n % targets.len() as u64) as usize];
                let req = Request::get(format!("http://{target}/obj/{id}"))
                    .header("host", "cdn.example")
                    .body(Empty::new());
                let Ok(req) = req else { continue };
                match client.request(req).await {
                    Ok(resp) if resp.status().is_success() => {
                        let len = resp
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes().len())
                            .unwrap_or(0);
                        if len != object_size(id) {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let e = errors.load(Ordering::Relaxed);
    if e > 0 {
        anyhow::bail!("{e} requests failed or returned a wrong body");
    }
    Ok(())
}

/// `strata demo --peers`: origin requests of three independent nodes against three
/// cooperating peers, on the same workload (same seed).
pub async fn peers(requests: u64, objects: u64) -> anyhow::Result<()> {
    let base = std::env::temp_dir().join(format!("strata-demo-peers-{}", std::process::id()));
    std::fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    let result = peers_in(&base, requests, objects).await;
    let _ = std::fs::remove_dir_all(&base);
    result
}

async fn peers_in(base: &Path, requests: u64, objects: u64) -> anyhow::Result<()> {
    let zipf = Arc::new(Zipf::new(objects, 0.9));
    println!(
        "{requests} requests, Zipf(0.9) over {objects} objects, round-robin over three nodes\n"
    );
    let mut results = Vec::new();
    for (label, cluster) in [
        ("three independent nodes", false),
        ("three cooperating peers", true),
    ] {
        let origin = SampleOrigin::start().await?;
        let dir = base.join(if cluster { "peers" } else { "solo" });
        let nodes = three_nodes(&dir, origin.addr, cluster).await?;
        let targets: Vec<SocketAddr> = nodes.iter().map(|n| n.addr()).collect();
        let t = Instant::now();
        replay_spread(&targets, zipf.clone(), requests, 42).await?;
        let fetched = origin.requests.load(Ordering::Relaxed);
        let hits: u64 = nodes.iter().map(|n| counts(n).hits).sum();
        println!(
            "  {label:<24} origin requests {fetched:>7}   node hits {hits:>7}   {:.1} s",
            t.elapsed().as_secs_f64()
        );
        results.push(fetched);
        for n in &nodes {
            for line in n.proxy.metrics.render(n.proxy.store.stats()).lines() {
                if line.starts_with("strata_peer_requests_total") {
                    println!("    {} {line}", n.proxy.node_id);
                }
            }
        }
        for n in nodes {
            n.shutdown().await;
        }
    }
    if let [solo, peers] = results[..] {
        println!(
            "\ncooperating peers send {:.2}x fewer requests to the origin",
            solo as f64 / peers.max(1) as f64
        );
    }
    Ok(())
}
