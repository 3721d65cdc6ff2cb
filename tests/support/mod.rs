//! Test harness for the operations scenarios: a counting origin, nodes started in-process
//! from TOML, a node run as the real binary (for signals), and small HTTP helpers. Every
//! wait is bounded by [`TIMEOUT`].

#![allow(dead_code)]

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use strata::config::Resolved;
use strata::server::Node;
use tokio::net::TcpListener;

pub const TIMEOUT: Duration = Duration::from_secs(10);
pub const TOKEN: &str = "s3cret-admin-token";
pub const TOKEN_ENV: &str = "STRATA_TEST_ADMIN_TOKEN";

/// An origin that answers every path with `body of <path> #<n>` (n counts that path's
/// requests), cacheable for an hour, plus the headers a path's script adds.
pub struct Origin {
    pub addr: SocketAddr,
    counts: Arc<Mutex<HashMap<String, usize>>>,
}

pub type Extra = Arc<dyn Fn(&str) -> Vec<(&'static str, String)> + Send + Sync>;

impl Origin {
    pub async fn start() -> Origin {
        Self::with_headers(Arc::new(|_| Vec::new())).await
    }

    /// An origin whose responses carry extra headers chosen per path.
    pub async fn with_headers(extra: Extra) -> Origin {
        Self::with(extra, Duration::ZERO).await
    }

    pub async fn with(extra: Extra, delay: Duration) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let c = counts.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let c = c.clone();
                let extra = extra.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let c = c.clone();
                        let extra = extra.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let n = {
                                let mut m = c.lock();
                                let n = m.entry(path.clone()).or_insert(0);
                                *n += 1;
                                *n
                            };
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            let lang = req
                                .headers()
                                .get("accept-language")
                                .map(|v| v.to_str().unwrap_or("").to_string())
                                .unwrap_or_default();
                            let mut b = http::Response::builder()
                                .header("cache-control", "public, max-age=3600")
                                .header("content-type", "text/plain");
                            for (k, v) in extra(&path) {
                                b = b.header(k, v);
                            }
                            let body = format!("body of {path} #{n} {lang}");
                            Ok::<_, std::convert::Infallible>(
                                b.body(Full::new(Bytes::from(body))).unwrap(),
                            )
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Origin { addr, counts }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests a path has received.
    pub fn count(&self, path: &str) -> usize {
        self.counts.lock().get(path).copied().unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.counts.lock().values().sum()
    }
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A node config for tests: the origin, a store under `dir`, an admin token, and `extra`
/// TOML appended (more sections).
pub fn config(origin: &str, dir: &std::path::Path, listen: &str, extra: &str) -> String {
    std::env::set_var(TOKEN_ENV, TOKEN);
    format!(
        r#"
[node]
id = "ops-node"
listen = "{listen}"
admin_listen = "127.0.0.1:0"
admin_token_env = "{TOKEN_ENV}"
drain_timeout = "5s"

[store]
path = "{dir}"
size = "64MiB"
memory = "64MiB"

[[origins]]
id = "origin"
url = "{origin}"

[default_behavior]
origin = "origin"
cache_policy = "UseOriginCacheControlHeaders-QueryStrings"
{extra}
"#,
        dir = dir.display()
    )
}

pub async fn start(toml: &str) -> Node {
    let resolved = Resolved::from_toml(toml, "test.toml").expect("test config resolves");
    let node = tokio::time::timeout(TIMEOUT, Node::start(resolved))
        .await
        .expect("node starts in time")
        .expect("node starts");
    wait_ready(node.admin_addr()).await;
    node
}

pub async fn wait_ready(admin: SocketAddr) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Ok(r) = send(Method::GET, &format!("http://{admin}/readyz"), &[], None).await {
            if r.status == 200 {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node never became ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct Got {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Got {
    pub fn header(&self, n: &str) -> String {
        self.headers
            .get(n)
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_default()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Result<Got, String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(TIMEOUT, client.request(req))
        .await
        .map_err(|_| format!("{url}: timed out"))?
        .map_err(|e| format!("{url}: {e}"))?;
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(TIMEOUT, body.collect())
        .await
        .map_err(|_| format!("{url}: body timed out"))?
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
    Ok(Got {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// GET a path from a viewer port.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Got {
    send(Method::GET, &format!("http://{addr}{path}"), headers, None)
        .await
        .unwrap()
}

/// POST JSON to the admin API with the test token.
pub async fn admin_post(admin: SocketAddr, path: &str, json: &str) -> Got {
    let auth = format!("Bearer {TOKEN}");
    send(
        Method::POST,
        &format!("http://{admin}{path}"),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        Some(json.to_string()),
    )
    .await
    .unwrap()
}

pub async fn admin_get(admin: SocketAddr, path: &str) -> Got {
    send(Method::GET, &format!("http://{admin}{path}"), &[], None)
        .await
        .unwrap()
}

/// Waits until `check` holds, polling; panics after [`TIMEOUT`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
