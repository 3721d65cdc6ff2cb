//! The request state machine: route, key, look up, then serve a hit, serve stale while one
//! refresh runs, revalidate, fill a miss (coalesced), or pass the request through.
//!
//! ```text
//! viewer ─▶ loop check ─▶ route ─▶ method rules ─▶ key ─▶ lookup (+Vary) ─┬─ fresh ─▶ serve
//!                                                                         ├─ stale, SWR ─▶ serve + background fill
//!                                                                         └─ stale / miss ─▶ fill (one per key) ─▶ serve
//! ```
//!
//! The proxy owns HTTP semantics at the edges of the cache (which requests may use it, what
//! the viewer sees) and delegates the RFC rules to `policy`, bytes to `store`, and waiting
//! to `coalesce`. It never knows where a stored body lives.

pub mod body;
mod forward;
pub mod hop;
mod peer;
mod respond;

use self::body::ProxyBody;
use self::forward::{ForwardContext, Purpose};
use self::hop::{strip_hop_by_hop, via_names, CacheStatus, Outcome};
use crate::access_log::{self, AccessLog, Entry};
use crate::coalesce::{Coalescer, Fill, FillHead, Join};
use crate::config::{defaults, Behaviour, OriginTarget, Resolved, Upstream, ViewerProtocolPolicy};
use crate::invalidation::Invalidations;
use crate::metrics::Metrics;
use crate::policy::freshness::{self, RequestFacts, Usability};
use crate::policy::key;
use crate::store::{MetaFlags, Object, ObjectMeta, ObjectWriter, Store};
use crate::surrogate::SurrogateKeys;
use crate::time::now_ms;
use crate::upstream::{OriginClient, UpstreamBody, UpstreamError};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{DATE, VARY};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything a request needs that changes only on reload.
pub struct Runtime {
    pub config: Arc<Resolved>,
    clients: HashMap<String, Arc<OriginClient>>,
}

impl Runtime {
    pub fn new(config: Arc<Resolved>) -> Result<Runtime, String> {
        let mut clients = HashMap::new();
        for (id, o) in &config.origins {
            clients.insert(
                id.clone(),
                Arc::new(OriginClient::new(o.clone()).map_err(|e| format!("origin {id}: {e}"))?),
            );
        }
        Ok(Runtime { config, clients })
    }
}

/// The caching proxy of one node.
pub struct Proxy {
    pub node_id: String,
    via: HeaderValue,
    runtime: ArcSwap<Runtime>,
    pub store: Arc<dyn Store>,
    coalescer: Coalescer,
    pub metrics: Arc<Metrics>,
    coalesce_timeout: Duration,
    stale_while_updating_ms: u64,
    /// The peers of this node's tier, when `[cluster]` is configured.
    pub cluster: arc_swap::ArcSwapOption<crate::cluster::Cluster>,
    /// Path invalidations: hide older objects on lookup (`crate::invalidation`).
    pub invalidations: Arc<Invalidations>,
    /// Surrogate-Key tag index, fed when a response is stored (`crate::surrogate`).
    pub surrogate_keys: Arc<SurrogateKeys>,
    /// The access log (off unless configured; `crate::access_log`).
    pub access_log: AccessLog,
}

/// Who sent a request and how.
#[derive(Debug, Clone, Copy)]
pub struct Viewer {
    pub addr: SocketAddr,
    pub tls: bool,
}

/// A request being handled: its head, its behaviour, the runtime it started with.
struct Ctx {
    parts: Parts,
    behaviour: Arc<Behaviour>,
    runtime: Arc<Runtime>,
    viewer: Viewer,
}

impl Proxy {
    pub fn new(runtime: Runtime, store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Proxy {
        let node = &runtime.config.file.node;
        let node_id = runtime.config.node_id.clone();
        let via = HeaderValue::from_str(&format!("1.1 {node_id} (strata)"))
            .unwrap_or(HeaderValue::from_static("1.1 strata (strata)"));
        Proxy {
            invalidations: Arc::new(Invalidations::new()),
            surrogate_keys: Arc::new(SurrogateKeys::new()),
            access_log: AccessLog::new(&node_id, metrics.access_log_dropped.clone()),
            coalesce_timeout: node.coalesce_timeout.get(),
            stale_while_updating_ms: node.stale_while_updating.get().as_millis() as u64,
            node_id,
            via,
            runtime: ArcSwap::from_pointee(runtime),
            store,
            coalescer: Coalescer::new(defaults::COALESCE_MAX_WAITERS, defaults::HIT_FOR_MISS.get()),
            metrics,
            cluster: arc_swap::ArcSwapOption::empty(),
        }
    }

    /// Swaps in a new configuration; requests in flight finish on the old one.
    pub fn reload(&self, runtime: Runtime) {
        self.runtime.store(Arc::new(runtime));
    }

    pub fn config(&self) -> Arc<Resolved> {
        self.runtime.load().config.clone()
    }

    /// Runs `f` on the current configuration without taking a reference count on it.
    pub fn with_config<R>(&self, f: impl FnOnce(&Resolved) -> R) -> R {
        f(&self.runtime.load().config)
    }

    /// Handles one viewer request.
    pub async fn handle(
        self: &Arc<Self>,
        req: Request<Incoming>,
        viewer: Viewer,
    ) -> Response<ProxyBody> {
        let start = Instant::now();
        let (parts, body) = req.into_parts();
        let mut entry = self
            .access_log
            .enabled()
            // Boxed (by `Entry::request`): the entry's inline text would make every
            // request's future larger, and futures are moved.
            .then(|| Entry::request(start, viewer.addr, viewer.tls, &parts));
        let strata_hop = hop::from_strata_hop(&parts.headers);
        let (mut resp, outcome) = self.dispatch(parts, body, viewer, &mut entry).await;
        if !strata_hop {
            // Tags are for caches: a viewer never sees them (as Fastly and Varnish setups
            // strip them); another strata tier or peer gets them to index its copy.
            resp.headers_mut().remove(crate::surrogate::HEADER);
        }
        let elapsed = start.elapsed();
        self.metrics.request(outcome, elapsed.as_secs_f64());
        if entry.is_some() {
            access_log::logged(self, &mut resp, &mut entry, outcome, elapsed);
        }
        resp
    }

    async fn dispatch(
        self: &Arc<Self>,
        parts: Parts,
        body: Incoming,
        viewer: Viewer,
        entry: &mut Option<Box<Entry>>,
    ) -> (Response<ProxyBody>, Outcome) {
        if via_names(&parts.headers, &self.node_id) {
            let msg = format!(
                "loop detected: this request already passed through {}",
                self.node_id
            );
            return (
                self.error(
                    StatusCode::LOOP_DETECTED,
                    &msg,
                    CacheStatus::default(),
                    None,
                ),
                Outcome::Error,
            );
        }
        if header_bytes(&parts.headers) > defaults::MAX_HEADER_BYTES {
            let msg = "the request's header section is larger than 64 KiB";
            return (
                self.error(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    msg,
                    CacheStatus::default(),
                    None,
                ),
                Outcome::Error,
            );
        }
        if parts.method == Method::CONNECT || !parts.uri.path().starts_with('/') {
            return (
                self.error(
                    StatusCode::BAD_REQUEST,
                    "strata serves origin-form requests only",
                    CacheStatus::default(),
                    None,
                ),
                Outcome::Error,
            );
        }
        let runtime = self.runtime.load_full();
        let behaviour = runtime.config.route(parts.uri.path()).clone();
        if let Some(e) = entry {
            e.set_behaviour(behaviour.name());
        }
        if !behaviour.allowed_methods.contains(&parts.method) {
            let msg = format!("{} is not allowed on {}", parts.method, parts.uri.path());
            return (
                self.error(
                    StatusCode::FORBIDDEN,
                    &msg,
                    CacheStatus::default(),
                    Some(&behaviour),
                ),
                Outcome::Error,
            );
        }
        match (behaviour.viewer_protocol_policy, viewer.tls) {
            (ViewerProtocolPolicy::HttpsOnly, false) => {
                return (
                    self.error(
                        StatusCode::FORBIDDEN,
                        "this path is served over HTTPS only",
                        CacheStatus::default(),
                        Some(&behaviour),
                    ),
                    Outcome::Error,
                );
            }
            (ViewerProtocolPolicy::RedirectToHttps, false) => {
                return (self.redirect_to_https(&parts), Outcome::Pass)
            }
            _ => {}
        }
        let ctx = Ctx {
            parts,
            behaviour,
            runtime,
            viewer,
        };

        let cacheable_method = matches!(
            ctx.parts.method,
            Method::GET | Method::HEAD | Method::OPTIONS
        );
        if !cacheable_method {
            return Box::pin(self.pass(ctx, body, CacheStatus::fwd("method"), true)).await;
        }
        let b = &ctx.behaviour;
        let request_no_store =
            crate::policy::cache_control::RequestDirectives::parse(&ctx.parts.headers).no_store;
        if !b.cached_methods.contains(&ctx.parts.method)
            || b.cache_policy.caching_disabled()
            || request_no_store
        {
            let fwd = if request_no_store {
                "request"
            } else {
                "bypass"
            };
            return Box::pin(self.pass(ctx, body, CacheStatus::fwd(fwd), false)).await;
        }
        drop(body);
        self.cached(ctx).await
    }

    /// The cache path for GET, HEAD (and cached OPTIONS). A hit is served without an await;
    /// every path that goes upstream is boxed, so the request's future stays small: hyper
    /// and the runtime move it, and each move copied all of the largest path's state (5.8
    /// KB unboxed).
    async fn cached(self: &Arc<Self>, ctx: Ctx) -> (Response<ProxyBody>, Outcome) {
        let b = &ctx.behaviour;
        let primary = key::primary_key(
            &b.cache_policy,
            &ctx.parts.method,
            &ctx.parts.uri,
            &ctx.parts.headers,
        );
        let now = now_ms();
        let found = self.lookup(&primary, &ctx.parts.headers);

        if let Some(obj) = &found {
            match freshness::usability(&obj.meta, &ctx.parts.headers, now) {
                Usability::Fresh => {
                    let ttl = (obj.meta.ttl_left(now) / 1000) as i64;
                    return (
                        self.serve_object(
                            &ctx,
                            obj.clone(),
                            CacheStatus::hit(ttl),
                            Outcome::Hit,
                            now,
                        ),
                        Outcome::Hit,
                    );
                }
                Usability::StaleWhileRevalidate => {
                    self.revalidate_in_background(&ctx, &primary, obj.clone());
                    let cs = CacheStatus {
                        hit: true,
                        ttl: Some(stale_ttl(&obj.meta, now)),
                        detail: Some("stale-while-revalidate"),
                        ..Default::default()
                    };
                    return (
                        self.serve_object(&ctx, obj.clone(), cs, Outcome::Stale, now),
                        Outcome::Stale,
                    );
                }
                Usability::Revalidate => {
                    if self.may_serve_while_updating(&primary, &obj.meta, &ctx.parts.headers, now) {
                        let cs = CacheStatus {
                            hit: true,
                            ttl: Some(stale_ttl(&obj.meta, now)),
                            detail: Some("stale-while-updating"),
                            ..Default::default()
                        };
                        return (
                            self.serve_object(&ctx, obj.clone(), cs, Outcome::Stale, now),
                            Outcome::Stale,
                        );
                    }
                }
            }
        } else if freshness::only_if_cached(&ctx.parts.headers) {
            return (
                self.error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "only-if-cached: not in cache",
                    CacheStatus::fwd("miss"),
                    Some(b),
                ),
                Outcome::Error,
            );
        }

        if self.coalescer.is_hit_for_miss(&primary, now) {
            let cs = CacheStatus {
                fwd: Some("uri-miss"),
                detail: Some("hit-for-miss"),
                ..Default::default()
            };
            return Box::pin(self.pass_bodyless(ctx, cs)).await;
        }
        let (fill, leader) = match self
            .coalescer
            .join(&primary, |t| self.superseded(&primary, t))
        {
            Join::Leader(fill) => {
                self.spawn_fill(fill.clone(), primary.clone(), &ctx, found.clone());
                (fill, true)
            }
            Join::Follower(fill) => (fill, false),
            Join::Overflow => {
                let cs = CacheStatus {
                    fwd: Some("miss"),
                    detail: Some("too-many-waiters"),
                    ..Default::default()
                };
                return Box::pin(self.pass_bodyless(ctx, cs)).await;
            }
        };
        Box::pin(self.follow(ctx, &primary, fill, leader, found)).await
    }

    /// Whether a stale object may be served because a refresh of it is already in flight
    /// (`node.stale_while_updating`). Never for responses that forbid serving stale
    /// (must-revalidate, proxy-revalidate, s-maxage, no-cache), nor for requests that ask for
    /// freshness (no-cache, max-age, min-fresh), nor for soft-purged objects.
    fn may_serve_while_updating(
        &self,
        primary: &str,
        meta: &ObjectMeta,
        req: &HeaderMap,
        now: u64,
    ) -> bool {
        if self.stale_while_updating_ms == 0
            || meta.flags.has(MetaFlags::MUST_REVALIDATE)
            || meta.flags.has(MetaFlags::NO_CACHE)
            || meta.flags.has(MetaFlags::FORCED_STALE)
            || meta.is_fresh(now)
        {
            return false;
        }
        let staleness = meta.age_at(now).saturating_sub(meta.freshness_lifetime);
        if staleness > self.stale_while_updating_ms || !self.coalescer.in_flight(primary) {
            return false;
        }
        let d = crate::policy::cache_control::RequestDirectives::parse(req);
        !(d.no_cache || d.max_age.is_some() || d.min_fresh.is_some())
    }

    /// Looks a key up, following a Vary marker to the variant that matches the request.
    fn lookup(&self, primary: &str, req: &HeaderMap) -> Option<Object> {
        let obj = self.store.get(primary)?;
        let obj = if obj.meta.flags.has(MetaFlags::VARY_MARKER) {
            let sk = key::secondary_key(&obj.meta.headers, req)?;
            self.store.get(&key::variant_key(primary, &sk))?
        } else {
            obj
        };
        (!self.invalidations.hides(&obj.meta)).then_some(obj)
    }

    fn revalidate_in_background(self: &Arc<Self>, ctx: &Ctx, primary: &str, obj: Object) {
        if self.coalescer.in_flight(primary) {
            return;
        }
        if let Join::Leader(fill) = self
            .coalescer
            .join(primary, |t| self.superseded(primary, t))
        {
            self.spawn_fill(fill, primary.to_string(), ctx, Some(obj));
        }
    }

    /// Whether a fill for `primary` that started at `started` (Unix ms) predates an
    /// invalidation of its path or a purge: later requests must not be served from it.
    fn superseded(&self, primary: &str, started: u64) -> bool {
        self.invalidations.hides_key_since(primary, started)
            || self.surrogate_keys.purged_since(started)
    }

    /// Waits on a fill and answers the viewer from it.
    async fn follow(
        self: &Arc<Self>,
        ctx: Ctx,
        primary: &str,
        fill: Arc<Fill>,
        leader: bool,
        base: Option<Object>,
    ) -> (Response<ProxyBody>, Outcome) {
        let now = now_ms;
        let Some(head) = fill.head(self.coalesce_timeout).await else {
            let cs = CacheStatus {
                fwd: Some("miss"),
                detail: Some("fill-timeout"),
                ..Default::default()
            };
            return self.pass_bodyless(ctx, cs).await;
        };
        let fwd = if base.is_some() { "stale" } else { "miss" };
        match head {
            FillHead::Failed { timeout, message } => {
                if let Some(obj) = base {
                    if freshness::stale_if_error_allows(&obj.meta, &ctx.parts.headers, now()) {
                        let cs = CacheStatus {
                            hit: true,
                            ttl: Some(stale_ttl(&obj.meta, now())),
                            detail: Some("stale-if-error"),
                            ..Default::default()
                        };
                        return (
                            self.serve_object(&ctx, obj, cs, Outcome::Stale, now()),
                            Outcome::Stale,
                        );
                    }
                }
                let status = if timeout {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::BAD_GATEWAY
                };
                let cs = CacheStatus {
                    fwd: Some(fwd),
                    collapsed: !leader,
                    ..Default::default()
                };
                (
                    self.error(status, &message, cs, Some(&ctx.behaviour)),
                    Outcome::Error,
                )
            }
            FillHead::Stored {
                object,
                fwd_status,
                detail,
            } => {
                if !leader {
                    self.metrics.coalesced.inc();
                }
                let t = now();
                let (outcome, hit, ttl) = if detail == Some("stale-if-error") {
                    (Outcome::Stale, true, stale_ttl(&object.meta, t))
                } else {
                    (
                        Outcome::RefreshHit,
                        false,
                        (object.meta.ttl_left(t) / 1000) as i64,
                    )
                };
                let cs = CacheStatus {
                    hit,
                    fwd: Some("stale"),
                    fwd_status: Some(fwd_status),
                    ttl: Some(ttl),
                    collapsed: !leader,
                    detail,
                    ..Default::default()
                };
                (self.serve_object(&ctx, object, cs, outcome, t), outcome)
            }
            FillHead::Streaming {
                meta,
                shareable,
                stored,
            } => {
                if !leader {
                    let same_variant = match meta.headers.contains_key(VARY) {
                        false => true,
                        true => key::secondary_key(&meta.headers, &ctx.parts.headers)
                            .is_some_and(|sk| meta.key == key::variant_key(primary, &sk)),
                    };
                    if !shareable || !same_variant {
                        let cs = CacheStatus {
                            fwd: Some(if shareable { "vary-miss" } else { "uri-miss" }),
                            ..Default::default()
                        };
                        return self.pass_bodyless(ctx, cs).await;
                    }
                    self.metrics.coalesced.inc();
                }
                let outcome = if stored { Outcome::Miss } else { Outcome::Pass };
                let cs = CacheStatus {
                    fwd: Some(fwd),
                    fwd_status: Some(meta.status.as_u16()),
                    stored,
                    collapsed: !leader,
                    ..Default::default()
                };
                (self.serve_fill(&ctx, &meta, &fill, cs, outcome), outcome)
            }
        }
    }

    fn spawn_fill(
        self: &Arc<Self>,
        fill: Arc<Fill>,
        primary: String,
        ctx: &Ctx,
        base: Option<Object>,
    ) {
        let this = self.clone();
        let parts = clone_parts(&ctx.parts);
        let behaviour = ctx.behaviour.clone();
        let runtime = ctx.runtime.clone();
        let viewer = ctx.viewer;
        tokio::spawn(async move {
            let ctx = Ctx {
                parts,
                behaviour,
                runtime,
                viewer,
            };
            this.run_fill(&ctx, &fill, &primary, base).await;
            this.coalescer.complete(&primary, &fill);
        });
    }

    /// Fetches from upstream and publishes what it got to the fill; stores what may be stored.
    async fn run_fill(&self, ctx: &Ctx, fill: &Arc<Fill>, primary: &str, mut base: Option<Object>) {
        let b = &ctx.behaviour;
        let (resp, origin, request_time, from_peer) = loop {
            let purpose = match &base {
                Some(o) if forward::has_validators(&o.meta) => Purpose::Revalidate(&o.meta),
                _ => Purpose::Fill,
            };
            let request_time = now_ms();
            let stored = match &purpose {
                Purpose::Revalidate(m) => Some(*m),
                _ => None,
            };
            let (sent, from_peer) = match self.ask_owner(ctx, primary, stored).await {
                Some((r, name, peer)) => (Ok((r, name)), Some(peer)),
                None => (self.send_upstream(ctx, purpose, empty_body()).await, None),
            };
            match sent {
                Ok((resp, origin)) => {
                    // An object invalidated while it was being revalidated is gone (as
                    // CloudFront's invalidation removes it): a 304 does not revive it; it is
                    // fetched again, unconditionally.
                    if resp.status() == StatusCode::NOT_MODIFIED
                        && base
                            .as_ref()
                            .is_some_and(|o| self.invalidations.hides(&o.meta))
                    {
                        drop(resp);
                        base = None;
                        continue;
                    }
                    break (resp, origin, request_time, from_peer);
                }
                Err(e) => {
                    let head = FillHead::Failed {
                        timeout: e.is_timeout(),
                        message: e.to_string().into(),
                    };
                    self.end_fill(primary, fill, head, false);
                    return;
                }
            }
        };
        let response_time = now_ms();
        let (rparts, rbody) = resp.into_parts();
        let status = rparts.status;
        let mut headers = rparts.headers;
        strip_hop_by_hop(&mut headers);
        ensure_date(&mut headers, response_time);

        if let Some(base) = &base {
            if status == StatusCode::NOT_MODIFIED {
                let mut meta = (*base.meta).clone();
                freshness::update_headers_from_304(&mut meta.headers, &headers);
                meta.request_time = request_time;
                meta.response_time = response_time;
                let f = freshness::compute(
                    meta.status,
                    &meta.headers,
                    request_time,
                    response_time,
                    &b.cache_policy,
                );
                freshness::apply(&mut meta, &f);
                meta.flags.set(MetaFlags::FORCED_STALE, false);
                let facts = RequestFacts {
                    method: &Method::GET,
                    headers: &ctx.parts.headers,
                    cookies_keyed: key::cookies_keyed(&b.cache_policy, &ctx.parts.headers),
                };
                if freshness::storable(facts, meta.status, &meta.headers, &b.cache_policy).is_ok() {
                    match self.store.update_meta(meta.clone()) {
                        Ok(true) => {
                            // A purge made while this revalidation was out wins over it.
                            self.surrogate_keys.after_commit(
                                self.store.as_ref(),
                                &meta,
                                request_time,
                            );
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(key = %meta.key, error = %e, "could not store a refreshed object")
                        }
                    }
                } else {
                    self.store.remove(&meta.key);
                }
                let object = Object {
                    meta: Arc::new(meta),
                    body: base.body.clone(),
                };
                let head = FillHead::Stored {
                    object,
                    fwd_status: 304,
                    detail: None,
                };
                self.end_fill(primary, fill, head, true);
                return;
            }
            if status.is_server_error()
                && freshness::stale_if_error_allows(&base.meta, &HeaderMap::new(), response_time)
            {
                let head = FillHead::Stored {
                    object: base.clone(),
                    fwd_status: status.as_u16(),
                    detail: Some("stale-if-error"),
                };
                self.end_fill(primary, fill, head, true);
                return;
            }
        }

        let policy = &b.cache_policy;
        let facts = RequestFacts {
            method: &Method::GET,
            headers: &ctx.parts.headers,
            cookies_keyed: key::cookies_keyed(policy, &ctx.parts.headers),
        };
        let storable = freshness::storable(facts, status, &headers, policy);
        let f = freshness::compute(status, &headers, request_time, response_time, policy);
        let object_key = match (
            headers.contains_key(VARY),
            key::secondary_key(&headers, &ctx.parts.headers),
        ) {
            (true, Some(sk)) => key::variant_key(primary, &sk),
            _ => primary.to_string(),
        };
        let content_length = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<u64>().ok());
        let mut meta = ObjectMeta::new(object_key, status, headers);
        meta.request_time = request_time;
        meta.response_time = response_time;
        meta.body_len = content_length.unwrap_or(u64::MAX);
        freshness::apply(&mut meta, &f);

        let mut writer: Option<Box<dyn ObjectWriter>> = None;
        match storable {
            Ok(()) => {
                freshness::remove_unstorable_fields(&mut meta.headers);
                if meta.headers.contains_key(VARY) {
                    self.write_vary_marker(primary, &meta);
                }
                match self.store.put(meta.clone()) {
                    Ok(w) => {
                        self.surrogate_keys.record(&meta);
                        writer = Some(w)
                    }
                    Err(e) => {
                        tracing::debug!(key = %meta.key, error = %e, "store refused an object")
                    }
                }
                self.coalescer.clear_hit_for_miss(primary);
            }
            Err(reason) => {
                use freshness::NotStored::*;
                if matches!(reason, NoStore | Private | SetCookie | VaryStar)
                    && !ctx.parts.headers.contains_key(http::header::AUTHORIZATION)
                {
                    self.coalescer.mark_hit_for_miss(primary, response_time);
                }
                if base.is_some() {
                    self.store.remove(&meta.key);
                }
            }
        }
        let meta = Arc::new(meta);
        fill.publish_head(FillHead::Streaming {
            meta: meta.clone(),
            shareable: storable.is_ok(),
            stored: writer.is_some(),
        });

        // Stream the body to the fill (and so to every viewer) and to the store. A peer's
        // body is read with `peer_timeout` per read; when it breaks off, the rest comes from
        // this node's own upstream (Range + If-Range on the peer's validator), so viewers
        // still get the whole object; when that cannot be done, the fill is abandoned.
        let mut timeout = match &from_peer {
            Some(p) => p.cluster.peer_timeout(),
            None => self.origin_timeout(&origin),
        };
        let validator = from_peer
            .as_ref()
            .filter(|_| status == StatusCode::OK && ctx.parts.method != Method::OPTIONS)
            .and_then(|_| forward::if_range_validator(&meta.headers));
        let mut from_peer = from_peer;
        let mut expected = content_length;
        let mut body = rbody;
        let mut received: u64 = 0;
        let complete = loop {
            let stalled = match tokio::time::timeout(timeout, body.frame()).await {
                Err(_) => true,
                Ok(None) if expected.is_none_or(|n| n == received) => break true,
                Ok(None) => false,
                Ok(Some(Err(e))) => {
                    tracing::debug!(error = %e, "upstream body broke off");
                    false
                }
                Ok(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    received += data.len() as u64;
                    if let Some(w) = writer.as_mut() {
                        if let Err(e) = w.write(&data) {
                            tracing::debug!(key = %meta.key, error = %e, "store write failed; object not stored");
                            writer = None;
                        }
                    }
                    if expected == Some(received) {
                        // The last byte: make the object visible and retire the fill before
                        // any viewer can see the body end, so a follow-up request is a hit.
                        self.commit(writer.take(), &meta, request_time);
                        self.coalescer.complete(primary, fill);
                        fill.push_chunk(data);
                        fill.finish(true);
                        return;
                    }
                    fill.push_chunk(data);
                    continue;
                }
            };
            // The body broke off: only a peer's is resumed, once.
            let Some(peer) = from_peer.take() else {
                break false;
            };
            peer.cluster.body_failed(&peer.peer, stalled);
            let Some(validator) = &validator else {
                tracing::warn!(key = %meta.key, "a peer's body broke off and the response has no strong validator to resume it; abandoning the fill");
                break false;
            };
            match self.resume(ctx, validator, received, expected).await {
                Some((rest, total, t)) => {
                    tracing::info!(key = %meta.key, received, peer = %peer.peer.name, "peer's body broke off; resuming from upstream");
                    body = rest;
                    expected = Some(total);
                    timeout = t;
                }
                None => break false,
            }
        };
        if complete {
            self.commit(writer.take(), &meta, request_time);
        }
        self.coalescer.complete(primary, fill);
        fill.finish(complete);
    }

    /// Makes a completely received object visible in the store; then, when a purge of one
    /// of its tags came while it was being fetched (sent at `request_time`), applies it.
    /// (An invalidation needs nothing here: its rule hides the object by `request_time`.)
    fn commit(&self, writer: Option<Box<dyn ObjectWriter>>, meta: &ObjectMeta, request_time: u64) {
        // A fill sent before an invalidation of its path is not stored: it would be hidden
        // anyway, and finishing it could replace what a fill sent after the invalidation
        // already stored (two fills of one key run at once only across an invalidation).
        if self.invalidations.hides(meta) {
            drop(writer);
            return;
        }
        if writer.is_some() && finish_store(writer, &meta.key) {
            self.surrogate_keys
                .after_commit(self.store.as_ref(), meta, request_time);
        }
    }

    /// Ends a fill with a head that needs no body streaming. The fill leaves the table
    /// before anyone can see its answer, so a follow-up request starts afresh rather than
    /// joining a finished fill.
    fn end_fill(&self, primary: &str, fill: &Arc<Fill>, head: FillHead, complete: bool) {
        self.coalescer.complete(primary, fill);
        fill.publish_head(head);
        fill.finish(complete);
    }

    /// Writes (or keeps) the marker that says responses under `primary` vary.
    fn write_vary_marker(&self, primary: &str, variant: &ObjectMeta) {
        let vary: Vec<HeaderValue> = variant.headers.get_all(VARY).iter().cloned().collect();
        if let Some(existing) = self.store.get(primary) {
            let same = existing.meta.flags.has(MetaFlags::VARY_MARKER)
                && existing.meta.headers.get_all(VARY).iter().eq(vary.iter());
            if same {
                return;
            }
        }
        let mut h = HeaderMap::new();
        for v in vary {
            h.append(VARY, v);
        }
        let mut m = ObjectMeta::new(primary.to_string(), StatusCode::OK, h);
        m.flags.set(MetaFlags::VARY_MARKER, true);
        m.request_time = variant.request_time;
        m.response_time = variant.response_time;
        m.freshness_lifetime = u64::MAX / 4;
        m.body_len = 0;
        if let Ok(w) = self.store.put(m) {
            let _ = w.finish();
        }
    }

    /// The per-read timeout of an origin's response body.
    fn origin_timeout(&self, origin: &str) -> Duration {
        self.runtime
            .load()
            .clients
            .get(origin)
            .map_or(defaults::RESPONSE_TIMEOUT.get(), |c| c.response_timeout)
    }

    /// Asks this node's own upstream for the rest of an object from byte `start` on, on
    /// condition that it is still the version `validator` names. Returns the rest's body,
    /// the object's whole length and the per-read timeout; `None` when the upstream failed
    /// or sent anything but the matching 206 (the object changed: splicing two versions
    /// would corrupt the body, so the caller abandons the fill instead).
    async fn resume(
        &self,
        ctx: &Ctx,
        validator: &HeaderValue,
        start: u64,
        total: Option<u64>,
    ) -> Option<(Incoming, u64, Duration)> {
        let purpose = Purpose::Resume { start, validator };
        let (resp, origin) = match self.send_upstream(ctx, purpose, empty_body()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot resume a broken peer body from upstream");
                return None;
            }
        };
        let same_etag = match (
            validator.as_bytes().starts_with(b"\""),
            resp.headers().get(http::header::ETAG),
        ) {
            (true, Some(etag)) => etag == validator,
            _ => true,
        };
        let len = forward::resumed_range_fits(resp.headers(), start, total);
        match len {
            Some(len) if resp.status() == StatusCode::PARTIAL_CONTENT && same_etag => {
                Some((resp.into_body(), len, self.origin_timeout(&origin)))
            }
            _ => {
                tracing::warn!(
                    status = %resp.status(),
                    start,
                    "upstream did not continue the same object (If-Range); abandoning the fill"
                );
                None
            }
        }
    }

    /// Sends a request upstream, failing over within an origin group.
    async fn send_upstream(
        &self,
        ctx: &Ctx,
        purpose: Purpose<'_>,
        body: UpstreamBody,
    ) -> Result<(Response<Incoming>, String), UpstreamError> {
        match &ctx.behaviour.upstream {
            Upstream::Origin(o) => self
                .send_to(ctx, o, &purpose, body)
                .await
                .map(|r| (r, o.config.id.clone())),
            Upstream::Group(g) => {
                let idempotent = matches!(
                    ctx.parts.method,
                    Method::GET | Method::HEAD | Method::OPTIONS
                );
                if !idempotent {
                    return self
                        .send_to(ctx, &g.primary, &purpose, body)
                        .await
                        .map(|r| (r, g.primary.config.id.clone()));
                }
                match self.send_to(ctx, &g.primary, &purpose, empty_body()).await {
                    Ok(r) if !g.failover_status.contains(&r.status().as_u16()) => {
                        Ok((r, g.primary.config.id.clone()))
                    }
                    first => {
                        tracing::info!(group = %g.id, "primary origin failed; trying the secondary");
                        match self
                            .send_to(ctx, &g.secondary, &purpose, empty_body())
                            .await
                        {
                            Ok(r) => Ok((r, g.secondary.config.id.clone())),
                            Err(e) => match first {
                                Ok(r) => Ok((r, g.primary.config.id.clone())),
                                Err(_) => Err(e),
                            },
                        }
                    }
                }
            }
        }
    }

    async fn send_to(
        &self,
        ctx: &Ctx,
        origin: &Arc<OriginTarget>,
        purpose: &Purpose<'_>,
        body: UpstreamBody,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let id = origin.config.id.as_str();
        let Some(client) = ctx.runtime.clients.get(id) else {
            return Err(UpstreamError::Connect {
                origin: id.to_string(),
                detail: "no client for this origin".into(),
            });
        };
        let fctx = ForwardContext {
            behaviour: &ctx.behaviour,
            origin,
            via: &self.via,
            client_ip: ctx.viewer.addr.ip(),
            tls: ctx.viewer.tls,
        };
        let purpose = match purpose {
            Purpose::Pass => Purpose::Pass,
            Purpose::Fill => Purpose::Fill,
            Purpose::Revalidate(m) => Purpose::Revalidate(m),
            Purpose::Resume { start, validator } => Purpose::Resume {
                start: *start,
                validator,
            },
        };
        let req =
            forward::upstream_request(&fctx, &ctx.parts, purpose, body).map_err(|detail| {
                UpstreamError::Protocol {
                    origin: id.to_string(),
                    detail,
                }
            })?;
        let result = client.send(req).await;
        self.metrics
            .origin(id, result.as_ref().ok().map(|r| r.status().as_u16()));
        result
    }

    /// Passes a request through without caching (a request body is streamed upstream).
    /// After an unsafe method succeeds, what is stored for the URL is invalidated.
    async fn pass(
        self: &Arc<Self>,
        ctx: Ctx,
        body: Incoming,
        cs: CacheStatus,
        invalidate: bool,
    ) -> (Response<ProxyBody>, Outcome) {
        let upstream_body: UpstreamBody = body
            .map_err(|e| Box::new(e) as crate::upstream::BoxError)
            .boxed();
        self.pass_with(ctx, upstream_body, cs, invalidate).await
    }

    async fn pass_bodyless(
        self: &Arc<Self>,
        ctx: Ctx,
        cs: CacheStatus,
    ) -> (Response<ProxyBody>, Outcome) {
        self.pass_with(ctx, empty_body(), cs, false).await
    }

    async fn pass_with(
        self: &Arc<Self>,
        ctx: Ctx,
        body: UpstreamBody,
        cs: CacheStatus,
        invalidate: bool,
    ) -> (Response<ProxyBody>, Outcome) {
        let resp = match self.send_upstream(&ctx, Purpose::Pass, body).await {
            Ok((r, _)) => r,
            Err(e) => {
                let status = if e.is_timeout() {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::BAD_GATEWAY
                };
                return (
                    self.error(status, &e.to_string(), cs, Some(&ctx.behaviour)),
                    Outcome::Error,
                );
            }
        };
        let (mut rparts, rbody) = resp.into_parts();
        strip_hop_by_hop(&mut rparts.headers);
        ensure_date(&mut rparts.headers, now_ms());
        if invalidate && (rparts.status.is_success() || rparts.status.is_redirection()) {
            self.invalidate_after_unsafe(&ctx, &rparts.headers, rparts.status);
        }
        let cs = CacheStatus {
            fwd_status: Some(rparts.status.as_u16()),
            ..cs
        };
        let mut resp = Response::from_parts(rparts, ProxyBody::Incoming(rbody));
        self.finish_headers(resp.headers_mut(), None, &cs, Outcome::Pass, &ctx.behaviour);
        (resp, Outcome::Pass)
    }

    /// RFC 9111 §4.4: a successful unsafe request invalidates the target URI, and the
    /// Location and Content-Location URIs when they are on the same host.
    fn invalidate_after_unsafe(&self, ctx: &Ctx, resp: &HeaderMap, status: StatusCode) {
        let policy = &ctx.behaviour.cache_policy;
        let remove = |uri: &http::Uri| {
            for m in [Method::GET, Method::OPTIONS] {
                let k = key::primary_key(policy, &m, uri, &ctx.parts.headers);
                if let Some(o) = self.store.get(&k) {
                    if o.meta.flags.has(MetaFlags::VARY_MARKER) {
                        if let Some(sk) = key::secondary_key(&o.meta.headers, &ctx.parts.headers) {
                            self.store.remove(&key::variant_key(&k, &sk));
                        }
                    }
                    self.store.remove(&k);
                }
            }
        };
        remove(&ctx.parts.uri);
        let host = key::host_of(&ctx.parts.uri, &ctx.parts.headers);
        for target in freshness::invalidation_uris(
            &ctx.parts.method,
            status,
            resp,
            &host,
            ctx.parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        ) {
            if let Ok(uri) = target.parse::<http::Uri>() {
                remove(&uri);
            }
        }
    }

    fn redirect_to_https(&self, parts: &Parts) -> Response<ProxyBody> {
        let host = https_authority(
            &key::host_of(&parts.uri, &parts.headers),
            self.config().file.node.listen_tls.map(|a| a.port()),
        );
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let mut resp = Response::new(ProxyBody::Empty);
        *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
        if let Ok(v) = HeaderValue::from_str(&format!("https://{host}{pq}")) {
            resp.headers_mut().insert(http::header::LOCATION, v);
        }
        resp.headers_mut()
            .insert(http::header::VIA, self.via.clone());
        resp
    }
}

/// The authority of the HTTPS URL a viewer is redirected to: the viewer's host with the
/// port of this node's TLS listener (none for 443 or when there is no TLS listener).
fn https_authority(host: &str, tls_port: Option<u16>) -> String {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => {
            name
        }
        _ => host,
    };
    match tls_port {
        Some(p) if p != 443 => format!("{name}:{p}"),
        _ => name.to_string(),
    }
}

/// Makes a completely received object visible in the store; whether it is.
fn finish_store(writer: Option<Box<dyn ObjectWriter>>, key: &str) -> bool {
    match writer.map(|w| w.finish()) {
        Some(Ok(_)) => true,
        Some(Err(e)) => {
            tracing::debug!(%key, error = %e, "store finish failed");
            false
        }
        None => false,
    }
}

/// The size of a header section as it was sent (name, ": ", value, CRLF per field).
fn header_bytes(h: &HeaderMap) -> usize {
    h.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum()
}

/// Negative seconds of staleness, for Cache-Status `ttl` on stale responses.
fn stale_ttl(meta: &ObjectMeta, now: u64) -> i64 {
    -((meta.age_at(now).saturating_sub(meta.freshness_lifetime) / 1000) as i64)
}

fn empty_body() -> UpstreamBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

fn clone_parts(p: &Parts) -> Parts {
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = p.method.clone();
    parts.uri = p.uri.clone();
    parts.version = p.version;
    parts.headers = p.headers.clone();
    parts
}

/// RFC 9110 §6.6.1: a recipient with a clock adds Date to a response that lacks it.
fn ensure_date(h: &mut HeaderMap, now: u64) {
    if !h.contains_key(DATE) {
        if let Ok(v) = HeaderValue::from_str(&crate::time::fmt_http_date(now)) {
            h.insert(DATE, v);
        }
    }
}
