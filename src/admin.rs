//! The admin listener (`node.admin_listen`): health, readiness and metrics (GETs, open), and
//! the write API — invalidations by path and purges by Surrogate-Key — which needs the
//! bearer token named by `node.admin_token_env`.
//!
//! | request | answer |
//! |---|---|
//! | `GET /healthz` | 200 while the process runs |
//! | `GET /readyz` | 200 once the store's index is loaded and the node serves, else 503 |
//! | `GET /metrics` | Prometheus text |
//! | `POST /invalidations` `{"paths": [...]}` | 201 `{"id", "status", ...}`; applied here at once, then relayed to every peer |
//! | `GET /invalidations/{id}` | the record: `InProgress` until every peer answered, then `Completed` |
//! | `POST /purge` `{"surrogate_keys": [...], "soft": bool}` | 200 with the objects purged here and each peer's answer |
//!
//! Peers are reached on their **viewer** port (the addresses `[cluster]` lists are viewer
//! addresses): `POST /.strata/invalidations` and `POST /.strata/purge`, with the same bearer
//! token, applied there without relaying further. The viewer listener routes that prefix
//! here ([`serve_relay`]) before the proxy sees it.
//!
//! With no token configured every write is refused (403): an open purge endpoint is a denial
//! of service waiting to happen.

use crate::invalidation::{self, Record};
use crate::proxy::body::ProxyBody;
use crate::proxy::Proxy;
use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The path prefix, on the viewer port, of writes relayed between peers.
pub const RELAY_PREFIX: &str = "/.strata/";
/// Marks a relayed write (applied locally, never relayed again).
const RELAYED: &str = "x-strata-relayed";
/// Largest admin request body.
const MAX_BODY: usize = 1 << 20;
/// How long a peer gets to answer a relayed write, per attempt.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);
const PEER_ATTEMPTS: u32 = 3;

/// What the admin API works on.
pub struct Admin {
    pub proxy: Arc<Proxy>,
    /// Set once the store is open and the tag index rebuilt.
    pub ready: AtomicBool,
    /// The viewer listener's bound address (to recognise this node among its peers).
    pub viewer_addr: SocketAddr,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Admin {
    pub fn new(proxy: Arc<Proxy>, viewer_addr: SocketAddr) -> Admin {
        Admin {
            proxy,
            ready: AtomicBool::new(false),
            viewer_addr,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.proxy.store.is_ready()
    }
}

pub async fn serve(listener: TcpListener, admin: Arc<Admin>, mut stop: watch::Receiver<bool>) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let admin = admin.clone();
                let builder = builder.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let admin = admin.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&admin, req).await) }
                    });
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                });
            }
            _ = stop.changed() => return,
        }
    }
}

async fn handle(admin: &Arc<Admin>, req: Request<Incoming>) -> Response<ProxyBody> {
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (Method::GET, "/readyz") => {
            if admin.is_ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: the store's index is loading\n",
                )
            }
        }
        (Method::GET, "/metrics") => {
            let p = &admin.proxy;
            p.metrics
                .invalidation_rules
                .set(p.invalidations.rule_count() as i64);
            p.metrics.surrogate_keys.set(p.surrogate_keys.tags() as i64);
            p.metrics.ready.set(admin.is_ready() as i64);
            let body = p.metrics.render(p.store.stats());
            let mut r = text(StatusCode::OK, "");
            *r.body_mut() = ProxyBody::full(body);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        (Method::POST, "/invalidations") => write(admin, req, false, Write::Invalidate).await,
        (Method::POST, "/purge") => write(admin, req, false, Write::Purge).await,
        (Method::GET, p) if p.starts_with("/invalidations/") => {
            let id = &p["/invalidations/".len()..];
            match admin.proxy.invalidations.record(id) {
                Some(r) => json(StatusCode::OK, &r),
                None => error(StatusCode::NOT_FOUND, &format!("no invalidation {id:?}")),
            }
        }
        (_, "/invalidations" | "/purge" | "/healthz" | "/readyz" | "/metrics") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Handles a write relayed by a peer on this node's viewer port.
pub async fn serve_relay(admin: &Arc<Admin>, req: Request<Incoming>) -> Response<ProxyBody> {
    let rest = &req.uri().path()[RELAY_PREFIX.len()..];
    match (req.method(), rest) {
        (&Method::POST, "invalidations") => write(admin, req, true, Write::Invalidate).await,
        (&Method::POST, "purge") => write(admin, req, true, Write::Purge).await,
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

#[derive(Clone, Copy)]
enum Write {
    Invalidate,
    Purge,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidationRequest {
    paths: Vec<String>,
    /// Set by a relaying peer so that every node reports the same id.
    #[serde(default)]
    id: Option<String>,
    /// CloudFront's caller reference: accepted and ignored.
    #[serde(default)]
    caller_reference: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    surrogate_keys: Vec<String>,
    #[serde(default)]
    soft: bool,
}

#[derive(Serialize)]
struct PurgeAnswer {
    soft: bool,
    /// Objects purged on this node.
    objects: u64,
    peers: Vec<invalidation::PeerResult>,
}

async fn write(
    admin: &Arc<Admin>,
    req: Request<Incoming>,
    relayed: bool,
    what: Write,
) -> Response<ProxyBody> {
    if let Err(resp) = authorise(admin, req.headers()) {
        return *resp;
    }
    let relayed = relayed || req.headers().contains_key(RELAYED);
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the request body (at most {MAX_BODY} bytes): {e}"),
            )
        }
    };
    match what {
        Write::Invalidate => invalidate(admin, body, relayed).await,
        Write::Purge => purge(admin, body, relayed).await,
    }
}

async fn invalidate(admin: &Arc<Admin>, body: Bytes, relayed: bool) -> Response<ProxyBody> {
    let req: InvalidationRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("bad JSON: {e}; expected {{\"paths\": [\"/index.html\", \"/images/*\"]}}"),
            )
        }
    };
    let _ = req.caller_reference;
    let patterns = match invalidation::parse_paths(&req.paths) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let proxy = &admin.proxy;
    let record = proxy.invalidations.invalidate(&patterns, req.id);
    proxy.metrics.invalidations.inc();
    // Answer only once the clock is past the rule's stamp (see `time::wait_past`).
    crate::time::wait_past_async(record.create_time).await;
    let inv = proxy.invalidations.clone();
    match tokio::task::spawn_blocking(move || inv.persist()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("invalidation applied but not persisted: {e:#}"),
        Err(e) => tracing::error!("invalidation persist task failed: {e}"),
    }
    let peers = if relayed {
        Vec::new()
    } else {
        peers(admin).await
    };
    if peers.is_empty() {
        proxy
            .invalidations
            .update(&record.id, |r| r.status = "Completed".into());
    } else {
        let admin = admin.clone();
        let id = record.id.clone();
        let body = serde_json::json!({ "paths": req.paths, "id": id }).to_string();
        tokio::spawn(async move {
            let results = relay(&admin, &peers, "invalidations", body).await;
            admin.proxy.invalidations.update(&id, |r| {
                r.peers = results;
                r.status = "Completed".into();
            });
            let inv = admin.proxy.invalidations.clone();
            let _ = tokio::task::spawn_blocking(move || inv.persist()).await;
        });
    }
    tracing::info!(id = %record.id, paths = ?record.paths, relayed, "invalidation applied");
    let record = proxy.invalidations.record(&record.id).unwrap_or(record);
    let mut resp = json(StatusCode::CREATED, &record);
    if let Ok(v) = http::HeaderValue::from_str(&format!("/invalidations/{}", record.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

async fn purge(admin: &Arc<Admin>, body: Bytes, relayed: bool) -> Response<ProxyBody> {
    let req: PurgeRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "bad JSON: {e}; expected {{\"surrogate_keys\": [\"tag\"], \"soft\": true}}"
                ),
            )
        }
    };
    if req.surrogate_keys.is_empty() {
        return error(StatusCode::BAD_REQUEST, "no surrogate_keys given");
    }
    let proxy = admin.proxy.clone();
    let tags = req.surrogate_keys.clone();
    let soft = req.soft;
    let report = tokio::task::spawn_blocking(move || {
        proxy
            .surrogate_keys
            .purge(proxy.store.as_ref(), &tags, soft)
    })
    .await
    .unwrap_or_default();
    admin.proxy.metrics.purges.inc();
    let peers = if relayed {
        Vec::new()
    } else {
        let peers = peers(admin).await;
        let body = serde_json::json!({ "surrogate_keys": req.surrogate_keys, "soft": soft });
        relay(admin, &peers, "purge", body.to_string()).await
    };
    tracing::info!(tags = ?req.surrogate_keys, soft, objects = report.objects, relayed, "purge applied");
    json(
        StatusCode::OK,
        &PurgeAnswer {
            soft,
            objects: report.objects,
            peers,
        },
    )
}

/// Checks the bearer token; the error response says what is wrong without echoing it.
fn authorise(admin: &Admin, headers: &HeaderMap) -> Result<(), Box<Response<ProxyBody>>> {
    let config = admin.proxy.config();
    let Some(var) = config.file.node.admin_token_env.as_deref() else {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "admin writes are disabled: set node.admin_token_env to the name of an environment \
             variable holding the bearer token",
        )));
    };
    let token = match std::env::var(var) {
        Ok(t) if !t.is_empty() => t,
        _ => {
            return Err(Box::new(error(
                StatusCode::FORBIDDEN,
                &format!("admin writes are disabled: the environment variable {var} (node.admin_token_env) is not set"),
            )))
        }
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        None => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "this write needs Authorization: Bearer <token>",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"strata-admin\""),
            );
            Err(Box::new(r))
        }
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(Box::new(error(StatusCode::FORBIDDEN, "wrong bearer token"))),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The other members of this node's tier (viewer addresses), as the cluster knows them now:
/// the `[cluster]` peers, or the members `peers_dns` last resolved to (re-resolved every
/// `dns_refresh` by the cluster); this node itself left out.
async fn peers(admin: &Admin) -> Vec<String> {
    let Some(cluster) = admin.proxy.cluster.load_full() else {
        return Vec::new();
    };
    let viewer = admin.viewer_addr;
    let mut members = cluster.others();
    members.retain(|m| !m.parse::<SocketAddr>().is_ok_and(|a| a == viewer));
    members
}

/// Sends a write to every peer (in parallel, a few attempts each) and reports each answer.
async fn relay(
    admin: &Admin,
    peers: &[String],
    what: &str,
    body: String,
) -> Vec<invalidation::PeerResult> {
    let token = admin
        .proxy
        .config()
        .file
        .node
        .admin_token_env
        .as_deref()
        .and_then(|v| std::env::var(v).ok())
        .unwrap_or_default();
    let sends = peers.iter().map(|peer| {
        let body = body.clone();
        let token = token.clone();
        async move {
            let mut last = String::new();
            for attempt in 0..PEER_ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                let req = Request::builder()
                    .method(Method::POST)
                    .uri(format!("http://{peer}{RELAY_PREFIX}{what}"))
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .header(RELAYED, "1")
                    .body(Full::new(Bytes::from(body.clone())));
                let req = match req {
                    Ok(r) => r,
                    Err(e) => {
                        last = format!("bad peer address: {e}");
                        break;
                    }
                };
                match tokio::time::timeout(PEER_TIMEOUT, admin.client.request(req)).await {
                    Ok(Ok(r)) if r.status().is_success() => {
                        return invalidation::PeerResult {
                            peer: peer.clone(),
                            result: "ok".into(),
                        }
                    }
                    Ok(Ok(r)) => {
                        let status = r.status();
                        let text = r
                            .into_body()
                            .collect()
                            .await
                            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                            .unwrap_or_default();
                        last = format!("{status}: {}", text.trim());
                        if status.is_client_error() {
                            break;
                        }
                    }
                    Ok(Err(e)) => last = format!("unreachable: {e}"),
                    Err(_) => last = format!("no answer within {PEER_TIMEOUT:?}"),
                }
            }
            tracing::warn!(%peer, error = %last, "a peer did not take a relayed {what}");
            invalidation::PeerResult {
                peer: peer.clone(),
                result: format!("error: {last}"),
            }
        }
    });
    futures_util::future::join_all(sends).await
}

fn json<T: Serialize>(status: StatusCode, v: &T) -> Response<ProxyBody> {
    let body = serde_json::to_vec_pretty(v).unwrap_or_default();
    let mut r = Response::new(ProxyBody::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    json(status, &serde_json::json!({ "error": message }))
}

fn text(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    r
}

/// Keeps `Record` in this module's public surface for callers that want to decode answers.
pub type InvalidationRecord = Record;
