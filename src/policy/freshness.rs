//! Storability and freshness for a shared cache: RFC 9111 (§3 storing, §4.2 freshness and
//! age, §4.3.4 freshening with a 304, §4.4 invalidation), RFC 5861 (stale-while-revalidate,
//! stale-if-error), RFC 9213 (CDN-Cache-Control over Cache-Control) and the cache policy's
//! min / default / max TTL as CloudFront applies them. The one home of these rules.

use crate::config::CachePolicy;
use crate::store::ObjectMeta;
use http::{HeaderMap, Method, StatusCode};

/// What the request looked like, as far as storing its response is concerned.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    /// The policy keys on the cookie(s) the request carries, so a Set-Cookie response may
    /// be shared among viewers with the same key.
    pub cookies_keyed: bool,
}

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    Method,
    Status,
    NoStore,
    Private,
    Authorization,
    SetCookie,
    VaryStar,
    CachingDisabled,
    NoFreshness,
    Partial,
}

impl NotStored {
    pub fn as_str(self) -> &'static str {
        match self {
            NotStored::Method => "method",
            NotStored::Status => "status",
            NotStored::NoStore => "no-store",
            NotStored::Private => "private",
            NotStored::Authorization => "authorization",
            NotStored::SetCookie => "set-cookie",
            NotStored::VaryStar => "vary-star",
            NotStored::CachingDisabled => "caching-disabled",
            NotStored::NoFreshness => "no-freshness",
            NotStored::Partial => "partial",
        }
    }
}

/// Freshness figures computed when a response is stored or refreshed. Milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Freshness {
    pub lifetime: u64,
    pub initial_age: u64,
    pub stale_while_revalidate: u64,
    pub stale_if_error: u64,
    pub must_revalidate: bool,
    pub no_cache: bool,
    pub immutable: bool,
}

/// Decides whether a response may be stored by a shared cache under `policy`.
pub fn storable(
    req: RequestFacts<'_>,
    status: StatusCode,
    resp: &HeaderMap,
    policy: &CachePolicy,
) -> Result<(), NotStored> {
    let _ = (req, status, resp, policy);
    unimplemented!("policy helper implements this")
}

/// Computes freshness for a response received at `response_time` for a request sent at
/// `request_time` (Unix ms), under `policy`.
pub fn compute(
    status: StatusCode,
    resp: &HeaderMap,
    request_time: u64,
    response_time: u64,
    policy: &CachePolicy,
) -> Freshness {
    let _ = (status, resp, request_time, response_time, policy);
    unimplemented!("policy helper implements this")
}

/// Writes `f` into the metadata's freshness fields and flags.
pub fn apply(meta: &mut ObjectMeta, f: &Freshness) {
    let _ = (meta, f);
    unimplemented!("policy helper implements this")
}

/// Freshens stored headers with those of a 304 (RFC 9111 §4.3.4).
pub fn update_headers_from_304(stored: &mut HeaderMap, not_modified: &HeaderMap) {
    let _ = (stored, not_modified);
    unimplemented!("policy helper implements this")
}

/// How a stored response may be used for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usability {
    /// Fresh (and the request's directives allow it): serve.
    Fresh,
    /// Stale, but within stale-while-revalidate: serve and refresh in the background.
    StaleWhileRevalidate,
    /// Must be revalidated (or refetched) before use; may be served if that fails and
    /// stale-if-error allows.
    Revalidate,
}

/// Decides how a stored response may be used at `now` (Unix ms) for a request with
/// `req` headers.
pub fn usability(meta: &ObjectMeta, req: &HeaderMap, now: u64) -> Usability {
    let _ = (meta, req, now);
    unimplemented!("policy helper implements this")
}

/// Whether a stale response may be served because the upstream failed (stale-if-error,
/// RFC 5861 §4; the request's own stale-if-error counts too).
pub fn stale_if_error_allows(meta: &ObjectMeta, req: &HeaderMap, now: u64) -> bool {
    let _ = (meta, req, now);
    unimplemented!("policy helper implements this")
}

/// Whether the request says `only-if-cached` (RFC 9111 §5.2.1.7).
pub fn only_if_cached(req: &HeaderMap) -> bool {
    let _ = req;
    unimplemented!("policy helper implements this")
}

/// RFC 9111 §4.4: the URIs (path and query) that a successful unsafe request invalidates
/// besides its target: Location and Content-Location on the same host.
pub fn invalidation_uris(
    method: &Method,
    status: StatusCode,
    resp: &HeaderMap,
    request_authority: &str,
) -> Vec<String> {
    let _ = (method, status, resp, request_authority);
    unimplemented!("policy helper implements this")
}
