//! Storability and freshness for a shared cache: RFC 9111 (§3 storing, §4.2 freshness and
//! age, §4.3.4 freshening with a 304, §4.4 invalidation), RFC 5861 (stale-while-revalidate,
//! stale-if-error), RFC 9213 (CDN-Cache-Control over Cache-Control) and the cache policy's
//! min / default / max TTL as CloudFront applies them. The one home of these rules.
//!
//! Everything here is a pure function of headers, a policy and times handed in as Unix
//! milliseconds: this module never reads a clock, never does I/O, never touches the store,
//! and never panics on what an origin or a viewer sent.
//!
//! Decisions where the RFCs leave a choice (also listed in the project docs):
//! - The *control field* is CDN-Cache-Control when present and parseable (RFC 9213), and
//!   then it replaces Cache-Control **and** Expires entirely, for storing and for freshness;
//!   otherwise it is Cache-Control.
//! - Conflicting duplicates (`max-age=1, max-age=1800`), malformed values (`max-age=abc`),
//!   differing Expires lines and unparseable Expires make the response stale (lifetime 0
//!   before TTL clamping), the conservative reading of RFC 9111 §4.2.1.
//! - Lifetime order: s-maxage, max-age, Expires − Date, then a heuristic (10% of
//!   Date − Last-Modified) for heuristically cacheable statuses or `public`, then the policy's
//!   `default_ttl`. Explicit and heuristic lifetimes are clamped to `[min_ttl, max_ttl]`
//!   like CloudFront does; `default_ttl` is used as is.
//! - `no-cache` (unqualified) always means "revalidate every use", whatever `min_ttl` says:
//!   CloudFront would serve it for `min_ttl`, strata keeps the origin's promise. A qualified
//!   `no-cache="f"` / `private="f"` only removes field `f` from the stored headers
//!   ([`remove_unstorable_fields`]); the response is otherwise stored and reused.
//! - `no-store` and unqualified `private` are never overridden by `min_ttl`.
//! - A response to a request with `Authorization` is stored only with `public`,
//!   `s-maxage` or `must-revalidate` in the control field (RFC 9111 §3.5).
//! - `Set-Cookie` responses are stored only when the policy keys on the cookies the
//!   request carried.
//! - A heuristically cacheable response with no freshness information, no validator and
//!   `default_ttl == 0` is not stored (it could never be reused).
//! - Request directives are honoured (no-cache, no-store, max-age, min-fresh, max-stale,
//!   stale-if-error), except that a fresh `immutable` response is served despite request
//!   `no-cache` / `max-age` (RFC 8246's purpose).

use super::cache_control::{RequestDirectives, ResponseDirectives, DELTA_SECONDS_MAX};
use crate::config::CachePolicy;
use crate::store::{MetaFlags, ObjectMeta};
use http::header::{
    AGE, AUTHORIZATION, CONNECTION, CONTENT_LOCATION, DATE, ETAG, EXPIRES, LAST_MODIFIED, LOCATION,
    SET_COOKIE, VARY,
};
use http::{HeaderMap, HeaderName, Method, StatusCode};

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

/// The directives that govern a response for this cache, and whether they came from
/// CDN-Cache-Control (then Cache-Control and Expires are ignored, RFC 9213 §2.2).
pub fn control_directives(resp: &HeaderMap) -> (ResponseDirectives, bool) {
    match ResponseDirectives::from_cdn_cache_control(resp) {
        Some(d) => (d, true),
        None => (ResponseDirectives::from_cache_control(resp), false),
    }
}

/// Statuses a cache may give heuristic freshness (RFC 9110 §15.1).
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Statuses whose semantics strata understands (those RFC 9110 defines, plus 421/422/426),
/// for `must-understand` (RFC 9111 §5.2.2.3).
pub fn understood_status(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200..=206 | 300..=305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 500..=505
    )
}

/// Decides whether a response may be stored by a shared cache under `policy`.
pub fn storable(
    req: RequestFacts<'_>,
    status: StatusCode,
    resp: &HeaderMap,
    policy: &CachePolicy,
) -> Result<(), NotStored> {
    if policy.caching_disabled() {
        return Err(NotStored::CachingDisabled);
    }
    if req.method != Method::GET && req.method != Method::HEAD {
        return Err(NotStored::Method);
    }
    let code = status.as_u16();
    if code == 206 {
        return Err(NotStored::Partial);
    }
    // Interim responses are not final; a 304 freshens a stored response, it is not one.
    if code < 200 || code == 304 {
        return Err(NotStored::Status);
    }
    if RequestDirectives::parse(req.headers).no_store {
        return Err(NotStored::NoStore);
    }
    let (d, targeted) = control_directives(resp);
    let understood = understood_status(status);
    if d.must_understand && !understood {
        return Err(NotStored::Status);
    }
    if d.no_store && !(d.must_understand && understood) {
        return Err(NotStored::NoStore);
    }
    if d.private && d.private_fields.is_empty() {
        return Err(NotStored::Private);
    }
    if req.headers.contains_key(AUTHORIZATION)
        && !(d.public || d.s_maxage.is_some() || d.must_revalidate)
    {
        return Err(NotStored::Authorization);
    }
    if resp.contains_key(SET_COOKIE) && !req.cookies_keyed {
        return Err(NotStored::SetCookie);
    }
    if vary_star(resp) {
        return Err(NotStored::VaryStar);
    }
    let explicit = d.has_explicit_lifetime() || (!targeted && resp.contains_key(EXPIRES));
    let heuristic = heuristically_cacheable(status) || d.public;
    if !explicit && !heuristic {
        return Err(NotStored::NoFreshness);
    }
    if !explicit {
        // Heuristic or default freshness only: worth storing if it can ever be reused.
        let has_validator = resp.contains_key(ETAG) || resp.contains_key(LAST_MODIFIED);
        let windows =
            d.stale_while_revalidate.unwrap_or(0) > 0 || d.stale_if_error.unwrap_or(0) > 0;
        let default_life = !policy.default_ttl.is_zero() || !policy.min_ttl.is_zero();
        if !has_validator && !windows && !default_life {
            return Err(NotStored::NoFreshness);
        }
    }
    Ok(())
}

/// Whether `Vary` names `*` (such a response never matches a later request).
pub fn vary_star(resp: &HeaderMap) -> bool {
    resp.get_all(VARY).iter().any(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .split(',')
            .any(|n| n.trim() == "*")
    })
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
    let (d, targeted) = control_directives(resp);
    let date = single_date(resp, &DATE, response_time);
    let min = duration_ms(policy.min_ttl);
    let max = duration_ms(policy.max_ttl);

    let explicit: Option<u64> = if d.invalid_freshness {
        Some(0)
    } else if let Some(s) = d.s_maxage {
        Some(secs_to_ms(s))
    } else if let Some(m) = d.max_age {
        Some(secs_to_ms(m))
    } else if !targeted && resp.contains_key(EXPIRES) {
        // Invalid or conflicting Expires means "already expired" (RFC 9111 §5.3).
        Some(match single_date(resp, &EXPIRES, response_time) {
            Some(exp) => exp.saturating_sub(date.unwrap_or(response_time)),
            None => 0,
        })
    } else {
        None
    };
    let lifetime = match explicit {
        Some(l) => l.clamp(min, max.max(min)),
        None => {
            let heuristic = if heuristically_cacheable(status) || d.public {
                heuristic_lifetime(resp, date.unwrap_or(response_time), response_time)
            } else {
                None
            };
            match heuristic {
                Some(h) => h.clamp(min, max.max(min)),
                None => duration_ms(policy.default_ttl).min(max),
            }
        }
    };

    Freshness {
        lifetime,
        initial_age: initial_age(resp, date, request_time, response_time),
        stale_while_revalidate: d.stale_while_revalidate.map(secs_to_ms).unwrap_or(0),
        stale_if_error: d.stale_if_error.map(secs_to_ms).unwrap_or(0),
        must_revalidate: d.must_revalidate || d.proxy_revalidate || d.s_maxage.is_some(),
        no_cache: d.no_cache && d.no_cache_fields.is_empty(),
        immutable: d.immutable,
    }
}

/// 10% of the time since Last-Modified (RFC 9111 §4.2.2), or `None` without a usable
/// Last-Modified.
fn heuristic_lifetime(resp: &HeaderMap, date: u64, reference: u64) -> Option<u64> {
    let lm = single_date(resp, &LAST_MODIFIED, reference)?;
    if lm >= date {
        return None;
    }
    Some((date - lm) / 10)
}

/// corrected_initial_age (RFC 9111 §4.2.3), in ms.
fn initial_age(resp: &HeaderMap, date: Option<u64>, request_time: u64, response_time: u64) -> u64 {
    let apparent_age = date.map(|d| response_time.saturating_sub(d)).unwrap_or(0);
    let response_delay = response_time.saturating_sub(request_time);
    let corrected_age_value = age_value(resp).saturating_add(response_delay);
    apparent_age.max(corrected_age_value)
}

/// The Age header in ms: the first member of the first line, which must be a
/// non-negative integer (saturating at 2^31 s); anything else is ignored (0).
fn age_value(resp: &HeaderMap) -> u64 {
    let Some(first) = resp.get(AGE) else { return 0 };
    let text = String::from_utf8_lossy(first.as_bytes());
    let member = text.split(',').next().unwrap_or("").trim();
    super::cache_control::delta_seconds(member)
        .map(secs_to_ms)
        .unwrap_or(0)
}

/// A date header that must appear once: several differing lines or an invalid value
/// give `None`.
fn single_date(h: &HeaderMap, name: &HeaderName, reference: u64) -> Option<u64> {
    let mut values = h.get_all(name).iter();
    let first = values.next()?;
    if values.any(|v| v != first) {
        return None;
    }
    http_date(&String::from_utf8_lossy(first.as_bytes()), Some(reference))
}

fn secs_to_ms(s: u64) -> u64 {
    s.min(DELTA_SECONDS_MAX).saturating_mul(1000)
}

fn duration_ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Writes `f` into the metadata's freshness fields and flags. A freshly computed
/// freshness also ends a soft purge (`FORCED_STALE` is cleared).
pub fn apply(meta: &mut ObjectMeta, f: &Freshness) {
    meta.freshness_lifetime = f.lifetime;
    meta.initial_age = f.initial_age;
    meta.stale_while_revalidate = f.stale_while_revalidate;
    meta.stale_if_error = f.stale_if_error;
    meta.flags
        .set(MetaFlags::MUST_REVALIDATE, f.must_revalidate);
    meta.flags.set(MetaFlags::NO_CACHE, f.no_cache);
    meta.flags.set(MetaFlags::IMMUTABLE, f.immutable);
    meta.flags.set(MetaFlags::FORCED_STALE, false);
}

/// Hop-by-hop fields and others a cache must not store or copy from a 304 (RFC 9110 §7.6.1,
/// RFC 9111 §3.1).
const UNSTORABLE: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "trailer",
    "proxy-authenticate",
    "proxy-authentication-info",
    "proxy-authorization",
];

/// Fields of a 304 that never replace stored ones: they describe the stored bytes, which a
/// 304 does not carry (RFC 9111 §4.3.4 names Content-Length; Content-Encoding and
/// Content-Range are kept for the same reason — the body was stored as received).
const NOT_UPDATED_BY_304: &[&str] = &["content-length", "content-encoding", "content-range"];

/// The field names a message's `Connection` header lists, lower-cased.
fn connection_listed(h: &HeaderMap) -> Vec<String> {
    h.get_all(CONNECTION)
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(',')
                .map(|n| n.trim().to_ascii_lowercase())
                .filter(|n| !n.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Removes from response headers what a shared cache must not store (RFC 9111 §3.1):
/// hop-by-hop fields and those `Connection` lists, the Proxy-Authenticate family, and the
/// fields a qualified `no-cache="…"` or `private="…"` names in the control field.
pub fn remove_unstorable_fields(headers: &mut HeaderMap) {
    let mut drop: Vec<String> = connection_listed(headers);
    drop.extend(UNSTORABLE.iter().map(|s| s.to_string()));
    let (d, _) = control_directives(headers);
    drop.extend(d.no_cache_fields);
    drop.extend(d.private_fields);
    for name in drop {
        headers.remove(name.as_str());
    }
}

/// Freshens stored headers with those of a 304 (RFC 9111 §4.3.4).
///
/// Every field of the 304 replaces the stored field of that name, except hop-by-hop ones
/// (and those its `Connection` lists), the Proxy-Authenticate family, and Content-Length /
/// Content-Encoding / Content-Range. `Age` and `Date` describe the message rather than the
/// representation: when the 304 lacks them, the stored ones are dropped, so that the age
/// computed from the merged headers is that of the 304 (the caller stamps a Date when it
/// serves a response without one).
pub fn update_headers_from_304(stored: &mut HeaderMap, not_modified: &HeaderMap) {
    let listed = connection_listed(not_modified);
    let skip = |name: &str| {
        UNSTORABLE.contains(&name)
            || NOT_UPDATED_BY_304.contains(&name)
            || listed.iter().any(|l| l == name)
    };
    for name in not_modified.keys() {
        if skip(name.as_str()) {
            continue;
        }
        stored.remove(name);
        for v in not_modified.get_all(name) {
            stored.append(name.clone(), v.clone());
        }
    }
    for name in [AGE, DATE] {
        if !not_modified.contains_key(&name) {
            stored.remove(&name);
        }
    }
    remove_unstorable_fields(stored);
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
    if meta.flags.has(MetaFlags::NO_CACHE) {
        return Usability::Revalidate;
    }
    let rd = RequestDirectives::parse(req);
    let age = meta.age_at(now);
    let lifetime = meta.freshness_lifetime;
    let fresh = meta.is_fresh(now);
    let immutable = meta.flags.has(MetaFlags::IMMUTABLE);

    if rd.no_store || (rd.no_cache && !(fresh && immutable)) {
        return Usability::Revalidate;
    }
    // Request max-age: the viewer accepts no response older than this.
    if let Some(max_age) = rd.max_age {
        if !(fresh && immutable) && (max_age == 0 || age > secs_to_ms(max_age)) {
            return Usability::Revalidate;
        }
    }
    if fresh {
        if let Some(min_fresh) = rd.min_fresh {
            if lifetime.saturating_sub(age) < secs_to_ms(min_fresh) {
                return Usability::Revalidate;
            }
        }
        return Usability::Fresh;
    }
    if meta.flags.has(MetaFlags::MUST_REVALIDATE) {
        return Usability::Revalidate;
    }
    // How stale it is; a soft-purged object that is still within its lifetime counts as
    // just gone stale.
    let staleness = age.saturating_sub(lifetime);
    if let Some(max_stale) = rd.max_stale {
        if rd.min_fresh.is_none() && staleness <= secs_to_ms_sat(max_stale) {
            return Usability::Fresh;
        }
    }
    if rd.min_fresh.is_none()
        && rd.max_age.is_none()
        && meta.stale_while_revalidate > 0
        && staleness < meta.stale_while_revalidate
    {
        return Usability::StaleWhileRevalidate;
    }
    Usability::Revalidate
}

/// Seconds to ms without the 2^31 cap (for `max-stale`, whose bare form is `u64::MAX`).
fn secs_to_ms_sat(s: u64) -> u64 {
    s.saturating_mul(1000)
}

/// Whether a stale response may be served because the upstream failed (stale-if-error,
/// RFC 5861 §4; the request's own stale-if-error counts too). Never when the response
/// says `must-revalidate` / `proxy-revalidate` / `s-maxage` or `no-cache`: those forbid
/// serving it stale (RFC 9111 §4.2.4).
pub fn stale_if_error_allows(meta: &ObjectMeta, req: &HeaderMap, now: u64) -> bool {
    if meta.flags.has(MetaFlags::NO_CACHE) || meta.flags.has(MetaFlags::MUST_REVALIDATE) {
        return false;
    }
    if meta.is_fresh(now) {
        return true;
    }
    let rd = RequestDirectives::parse(req);
    let window = meta
        .stale_if_error
        .max(rd.stale_if_error.map(secs_to_ms).unwrap_or(0));
    let staleness = meta.age_at(now).saturating_sub(meta.freshness_lifetime);
    window > 0 && staleness <= window
}

/// Whether the request says `only-if-cached` (answer from cache or 504, RFC 9111 §5.2.1.7).
pub fn only_if_cached(req: &HeaderMap) -> bool {
    RequestDirectives::parse(req).only_if_cached
}

/// Whether a method is unsafe (or of unknown safety), so that a non-error response to it
/// invalidates stored responses (RFC 9111 §4.4).
pub fn is_unsafe_method(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The other URIs to invalidate after an unsafe `method` got a non-error (2xx/3xx)
/// response (RFC 9111 §4.4): those `Location` and `Content-Location` name, when they are on
/// the same authority as the request. Returned as path + query, relative references
/// resolved against `request_path` (RFC 3986 §5.2).
///
/// The request's own target URI must also be invalidated; that is the caller's (it knows
/// the key), and it is not in this list. `request_authority` is the Host the viewer used;
/// an absolute Location on another authority (including the origin's own host name, when
/// the proxy rewrote Host) is not invalidated.
pub fn invalidation_uris(
    method: &Method,
    status: StatusCode,
    resp: &HeaderMap,
    request_authority: &str,
    request_path: &str,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if !is_unsafe_method(method) || !(200..400).contains(&status.as_u16()) {
        return out;
    }
    for name in [LOCATION, CONTENT_LOCATION] {
        let Some(v) = resp.get(&name) else { continue };
        let Ok(text) = v.to_str() else { continue };
        if let Some(p) = same_origin_path(text.trim(), request_authority, request_path) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// Resolves a URI reference to path + query if it is on `authority`.
fn same_origin_path(reference: &str, authority: &str, base_path: &str) -> Option<String> {
    let reference = reference.split('#').next().unwrap_or("");
    if reference.is_empty() {
        return None;
    }
    let lower = reference.to_ascii_lowercase();
    let rest = if let Some(r) = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
    {
        let cut = reference.len() - r.len();
        Some(&reference[cut..])
    } else if let Some(r) = reference.strip_prefix("//") {
        Some(r)
    } else if reference.contains(':')
        && reference
            .split(':')
            .next()
            .is_some_and(|s| !s.contains('/') && !s.contains('?'))
    {
        return None; // another scheme (mailto:, urn:, …)
    } else {
        None
    };
    let (path, query) = match rest {
        Some(r) => {
            let end = r.find(['/', '?']).unwrap_or(r.len());
            if !r[..end].eq_ignore_ascii_case(authority) {
                return None;
            }
            split_query(&r[end..])
        }
        None => split_query(reference),
    };
    let merged = if path.starts_with('/') {
        path.to_string()
    } else if path.is_empty() {
        base_path.to_string()
    } else {
        let base = base_path.split('?').next().unwrap_or("");
        let dir = match base.rfind('/') {
            Some(i) => &base[..=i],
            None => "/",
        };
        format!("{dir}{path}")
    };
    let mut p = remove_dot_segments(&merged);
    if p.is_empty() {
        p.push('/');
    }
    if let Some(q) = query {
        p.push('?');
        p.push_str(q);
    }
    Some(p)
}

fn split_query(s: &str) -> (&str, Option<&str>) {
    match s.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (s, None),
    }
}

/// RFC 3986 §5.2.4, on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate().skip(1) {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

/// Parses an HTTP-date (RFC 9110 §5.6.7) into Unix ms: IMF-fixdate, and the obsolete
/// RFC 850 and asctime forms. Lenient where senders commonly slip (case of the day, month
/// and zone names; a weekday that does not match the date), strict about structure
/// (anything but `GMT`, two-digit years in IMF-fixdate, missing commas, extra spaces).
/// A two-digit RFC 850 year more than 50 years after `reference` (Unix ms) is taken to be
/// in the past century; without a reference, years 70–99 are 19xx. Dates before 1970 give
/// `Some(0)` (far in the past).
pub fn http_date(s: &str, reference: Option<u64>) -> Option<u64> {
    let s = s.trim();
    if !s.is_ascii() {
        return None;
    }
    imf_fixdate(s)
        .or_else(|| rfc850(s, reference))
        .or_else(|| asctime(s))
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const LONG_DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];
const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

fn month(s: &str) -> Option<u32> {
    MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(s))
        .map(|i| i as u32 + 1)
}

fn digits(s: &str, n: usize) -> Option<u32> {
    if s.len() != n || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `HH:MM:SS` → seconds of the day.
fn time_of_day(s: &str) -> Option<u64> {
    let mut parts = s.split(':');
    let h = digits(parts.next()?, 2)?;
    let m = digits(parts.next()?, 2)?;
    let sec = digits(parts.next()?, 2)?;
    if parts.next().is_some() || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(u64::from(h) * 3600 + u64::from(m) * 60 + u64::from(sec))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn imf_fixdate(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split(' ').collect();
    if parts.len() != 6 || !parts[5].eq_ignore_ascii_case("GMT") {
        return None;
    }
    let wd = parts[0].strip_suffix(',')?;
    if !DAYS.iter().any(|d| d.eq_ignore_ascii_case(wd)) {
        return None;
    }
    let day = digits(parts[1], 2)?;
    let mon = month(parts[2])?;
    let year = digits(parts[3], 4)?;
    civil_ms(year, mon, day, time_of_day(parts[4])?)
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`
fn rfc850(s: &str, reference: Option<u64>) -> Option<u64> {
    let parts: Vec<&str> = s.split(' ').collect();
    if parts.len() != 4 || !parts[3].eq_ignore_ascii_case("GMT") {
        return None;
    }
    let wd = parts[0].strip_suffix(',')?;
    if !LONG_DAYS.iter().any(|d| d.eq_ignore_ascii_case(wd)) {
        return None;
    }
    let dmy: Vec<&str> = parts[1].split('-').collect();
    if dmy.len() != 3 {
        return None;
    }
    let day = digits(dmy[0], 2)?;
    let mon = month(dmy[1])?;
    let yy = digits(dmy[2], 2)?;
    let tod = time_of_day(parts[2])?;
    let year = match reference {
        Some(r) => {
            // RFC 9110 §5.6.7: more than 50 years in the future means the past century.
            let now_year = year_of(r);
            let century = now_year - now_year % 100;
            let mut y = century + yy;
            if y > now_year + 50 {
                y -= 100;
            } else if y + 100 <= now_year + 50 {
                y += 100;
            }
            y
        }
        None => {
            if yy < 70 {
                2000 + yy
            } else {
                1900 + yy
            }
        }
    };
    civil_ms(year, mon, day, tod)
}

/// `Sun Nov  6 08:49:37 1994`
fn asctime(s: &str) -> Option<u64> {
    if s.len() != 24 {
        return None;
    }
    let wd = s.get(0..3)?;
    if !DAYS.iter().any(|d| d.eq_ignore_ascii_case(wd)) || s.get(3..4)? != " " {
        return None;
    }
    let mon = month(s.get(4..7)?)?;
    if s.get(7..8)? != " " || s.get(10..11)? != " " || s.get(19..20)? != " " {
        return None;
    }
    let day_s = s.get(8..10)?;
    let day = match day_s.strip_prefix(' ') {
        Some(d) => digits(d, 1)?,
        None => digits(day_s, 2)?,
    };
    let tod = time_of_day(s.get(11..19)?)?;
    let year = digits(s.get(20..24)?, 4)?;
    civil_ms(year, mon, day, tod)
}

fn days_in_month(year: u32, mon: u32) -> u32 {
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    match mon {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(year: i64, mon: i64, day: i64) -> i64 {
    let y = if mon <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mon + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_ms(year: u32, mon: u32, day: u32, tod: u64) -> Option<u64> {
    if day == 0 || day > days_in_month(year, mon) {
        return None;
    }
    let days = days_from_civil(i64::from(year), i64::from(mon), i64::from(day));
    let secs = days * 86_400 + tod as i64;
    Some(u64::try_from(secs).unwrap_or(0).saturating_mul(1000))
}

fn year_of(ms: u64) -> u32 {
    // Good enough for choosing a century: 365.2425 days a year.
    let days = ms / 86_400_000;
    1970 + (days * 10_000 / 3_652_425) as u32
}

#[cfg(test)]
#[allow(clippy::type_complexity)] // the test tables are tuples, one row per case
mod tests {
    use super::*;
    use crate::config::{managed_cache_policy, CachePolicy};
    use crate::time::fmt_http_date;
    use http::HeaderValue;
    use std::time::Duration;

    const NOW: u64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    /// An HTTP date `off` seconds from NOW.
    fn at(off: i64) -> String {
        fmt_http_date((NOW as i64 + off * 1000) as u64)
    }

    /// The policy the conformance suite runs under (UseOriginCacheControlHeaders).
    fn origin_policy() -> CachePolicy {
        managed_cache_policy("UseOriginCacheControlHeaders").unwrap()
    }

    fn ttl_policy(min: u64, default: u64, max: u64) -> CachePolicy {
        let mut p = origin_policy();
        p.min_ttl = Duration::from_secs(min);
        p.default_ttl = Duration::from_secs(default);
        p.max_ttl = Duration::from_secs(max);
        p
    }

    fn store(
        method: Method,
        req: &HeaderMap,
        status: u16,
        resp: &HeaderMap,
        p: &CachePolicy,
    ) -> Result<(), NotStored> {
        storable(
            RequestFacts {
                method: &method,
                headers: req,
                cookies_keyed: false,
            },
            StatusCode::from_u16(status).unwrap(),
            resp,
            p,
        )
    }

    #[test]
    fn storability() {
        let none = HeaderMap::new();
        let auth = h(&[("authorization", "Basic x")]);
        let req_no_store = h(&[("cache-control", "no-store")]);
        let lm = at(-86_400);
        let exp_min = at(60);
        // (case, method, request headers, status, response headers, expected)
        let rows: Vec<(
            &str,
            Method,
            &HeaderMap,
            u16,
            Vec<(&str, &str)>,
            Result<(), NotStored>,
        )> = vec![
            (
                "fresh 200",
                Method::GET,
                &none,
                200,
                vec![("cache-control", "max-age=60")],
                Ok(()),
            ),
            (
                "HEAD",
                Method::HEAD,
                &none,
                200,
                vec![("cache-control", "max-age=60")],
                Ok(()),
            ),
            (
                "POST",
                Method::POST,
                &none,
                200,
                vec![("cache-control", "max-age=60")],
                Err(NotStored::Method),
            ),
            (
                "OPTIONS",
                Method::OPTIONS,
                &none,
                200,
                vec![("cache-control", "max-age=60")],
                Err(NotStored::Method),
            ),
            (
                "206",
                Method::GET,
                &none,
                206,
                vec![("cache-control", "max-age=60")],
                Err(NotStored::Partial),
            ),
            (
                "304",
                Method::GET,
                &none,
                304,
                vec![("cache-control", "max-age=60")],
                Err(NotStored::Status),
            ),
            (
                "no-store",
                Method::GET,
                &none,
                200,
                vec![("cache-control", "max-age=60, no-store")],
                Err(NotStored::NoStore),
            ),
            (
                "No-StOrE",
                Method::GET,
                &none,
                200,
                vec![("cache-control", "No-StOrE")],
                Err(NotStored::NoStore),
            ),
            (
                "request no-store",
                Method::GET,
                &req_no_store,
                200,
                vec![("cache-control", "max-age=60")],
                Err(NotStored::NoStore),
            ),
            (
                "must-understand 200",
                Method::GET,
                &none,
                200,
                vec![("cache-control", "max-age=60, no-store, must-understand")],
                Ok(()),
            ),
            (
                "must-understand 599",
                Method::GET,
                &none,
                599,
                vec![("cache-control", "max-age=60, no-store, must-understand")],
                Err(NotStored::Status),
            ),
            (
                "private",
                Method::GET,
                &none,
                200,
                vec![("cache-control", "private, max-age=60")],
                Err(NotStored::Private),
            ),
            (
                "qualified private",
                Method::GET,
                &none,
                200,
                vec![("cache-control", "private=\"x-user\", max-age=60")],
                Ok(()),
            ),
            (
                "authorization",
                Method::GET,
                &auth,
                200,
                vec![("cache-control", "max-age=60")],
                Err(NotStored::Authorization),
            ),
            (
                "authorization public",
                Method::GET,
                &auth,
                200,
                vec![("cache-control", "max-age=60, public")],
                Ok(()),
            ),
            (
                "authorization s-maxage",
                Method::GET,
                &auth,
                200,
                vec![("cache-control", "s-maxage=60")],
                Ok(()),
            ),
            (
                "authorization must-revalidate",
                Method::GET,
                &auth,
                200,
                vec![("cache-control", "max-age=60, must-revalidate")],
                Ok(()),
            ),
            (
                "set-cookie",
                Method::GET,
                &none,
                200,
                vec![("cache-control", "max-age=60"), ("set-cookie", "a=b")],
                Err(NotStored::SetCookie),
            ),
            (
                "vary star",
                Method::GET,
                &none,
                200,
                vec![("cache-control", "max-age=60"), ("vary", "accept, *")],
                Err(NotStored::VaryStar),
            ),
            (
                "nothing at all",
                Method::GET,
                &none,
                200,
                vec![],
                Err(NotStored::NoFreshness),
            ),
            (
                "etag only",
                Method::GET,
                &none,
                200,
                vec![("etag", "\"a\"")],
                Ok(()),
            ),
            (
                "heuristic 200",
                Method::GET,
                &none,
                200,
                vec![("last-modified", &lm)],
                Ok(()),
            ),
            (
                "heuristic 404",
                Method::GET,
                &none,
                404,
                vec![("last-modified", &lm)],
                Ok(()),
            ),
            (
                "no heuristic 201",
                Method::GET,
                &none,
                201,
                vec![("last-modified", &lm)],
                Err(NotStored::NoFreshness),
            ),
            (
                "no heuristic 503",
                Method::GET,
                &none,
                503,
                vec![("last-modified", &lm)],
                Err(NotStored::NoFreshness),
            ),
            (
                "599 public",
                Method::GET,
                &none,
                599,
                vec![("last-modified", &lm), ("cache-control", "public")],
                Ok(()),
            ),
            (
                "599 explicit",
                Method::GET,
                &none,
                599,
                vec![("cache-control", "max-age=60")],
                Ok(()),
            ),
            (
                "500 expires",
                Method::GET,
                &none,
                500,
                vec![("expires", &exp_min)],
                Ok(()),
            ),
            (
                "cdn no-store over cc",
                Method::GET,
                &none,
                200,
                vec![
                    ("cache-control", "max-age=60"),
                    ("cdn-cache-control", "no-store"),
                ],
                Err(NotStored::NoStore),
            ),
            (
                "cdn max-age over cc no-store",
                Method::GET,
                &none,
                200,
                vec![
                    ("cache-control", "no-store"),
                    ("cdn-cache-control", "max-age=60"),
                ],
                Ok(()),
            ),
            (
                "invalid cdn falls back",
                Method::GET,
                &none,
                200,
                vec![
                    ("cache-control", "no-store"),
                    ("cdn-cache-control", "max-age=1, &&&"),
                ],
                Err(NotStored::NoStore),
            ),
            (
                "cdn private",
                Method::GET,
                &none,
                200,
                vec![
                    ("cache-control", "max-age=60"),
                    ("cdn-cache-control", "private"),
                ],
                Err(NotStored::Private),
            ),
        ];
        let p = origin_policy();
        for (case, method, req, status, resp, want) in rows {
            assert_eq!(store(method, req, status, &h(&resp), &p), want, "{case}");
        }
    }

    #[test]
    fn storability_under_policies() {
        let none = HeaderMap::new();
        let disabled = managed_cache_policy("CachingDisabled").unwrap();
        let cc = h(&[("cache-control", "max-age=60")]);
        assert_eq!(
            store(Method::GET, &none, 200, &cc, &disabled),
            Err(NotStored::CachingDisabled)
        );
        // CloudFront's default TTL makes a bare 200 worth storing.
        let optimized = managed_cache_policy("CachingOptimized").unwrap();
        assert_eq!(
            store(Method::GET, &none, 200, &HeaderMap::new(), &optimized),
            Ok(())
        );
        // ...but not a status that needs explicit freshness.
        assert_eq!(
            store(Method::GET, &none, 503, &HeaderMap::new(), &optimized),
            Err(NotStored::NoFreshness)
        );
        // Cookies keyed: a Set-Cookie response is shared among the viewers with that key.
        let resp = h(&[("cache-control", "max-age=60"), ("set-cookie", "a=b")]);
        let facts = RequestFacts {
            method: &Method::GET,
            headers: &none,
            cookies_keyed: true,
        };
        assert_eq!(storable(facts, StatusCode::OK, &resp, &optimized), Ok(()));
    }

    fn life(status: u16, resp: &[(&str, &str)], p: &CachePolicy) -> Freshness {
        compute(StatusCode::from_u16(status).unwrap(), &h(resp), NOW, NOW, p)
    }

    #[test]
    fn lifetimes() {
        let p = origin_policy();
        let lm_day = at(-86_400);
        let date = at(0);
        let exp_hour = at(3600);
        let exp_past = at(-7200);
        let exp_2h = at(7200);
        let future = at(100);
        // (case, status, headers, expected lifetime ms)
        let rows: Vec<(&str, u16, Vec<(&str, &str)>, u64)> = vec![
            (
                "max-age",
                200,
                vec![("cache-control", "max-age=3600")],
                3_600_000,
            ),
            (
                "s-maxage wins over longer max-age",
                200,
                vec![("cache-control", "max-age=3600, s-maxage=1")],
                1000,
            ),
            (
                "s-maxage wins over shorter max-age",
                200,
                vec![("cache-control", "max-age=1, s-maxage=3600")],
                3_600_000,
            ),
            (
                "s-maxage over max-age=0 and past expires",
                200,
                vec![
                    ("cache-control", "max-age=0, s-maxage=3600"),
                    ("expires", &exp_past),
                ],
                3_600_000,
            ),
            (
                "max-age over past expires",
                200,
                vec![
                    ("cache-control", "max-age=3600"),
                    ("expires", &exp_past),
                    ("date", &date),
                ],
                3_600_000,
            ),
            (
                "max-age over invalid expires",
                200,
                vec![("cache-control", "max-age=3600"), ("expires", "0")],
                3_600_000,
            ),
            (
                "max-age=0 over future expires",
                200,
                vec![("cache-control", "max-age=0"), ("expires", &exp_hour)],
                0,
            ),
            (
                "expires - date",
                200,
                vec![("expires", &exp_hour), ("date", &date)],
                3_600_000,
            ),
            (
                "expires without date uses response time",
                200,
                vec![("expires", &exp_hour)],
                3_600_000,
            ),
            ("invalid expires", 200, vec![("expires", "0")], 0),
            (
                "expires in UTC",
                200,
                vec![("expires", "Thu, 18 Aug 2050 02:01:18 UTC")],
                0,
            ),
            (
                "two different expires",
                200,
                vec![("expires", &exp_hour), ("expires", &exp_2h)],
                0,
            ),
            (
                "conflicting max-age is stale",
                200,
                vec![("cache-control", "max-age=1800, max-age=1")],
                0,
            ),
            (
                "malformed max-age is stale",
                200,
                vec![("cache-control", "max-age=a100")],
                0,
            ),
            (
                "heuristic 10%",
                200,
                vec![("last-modified", &lm_day), ("date", &date)],
                8_640_000,
            ),
            (
                "heuristic for 404",
                404,
                vec![("last-modified", &lm_day), ("date", &date)],
                8_640_000,
            ),
            (
                "no heuristic for 503",
                503,
                vec![("last-modified", &lm_day), ("date", &date)],
                0,
            ),
            (
                "heuristic with public",
                599,
                vec![("last-modified", &lm_day), ("cache-control", "public")],
                8_640_000,
            ),
            (
                "future last-modified",
                200,
                vec![("last-modified", &future), ("date", &date)],
                0,
            ),
            (
                "huge max-age clamps to max_ttl",
                200,
                vec![("cache-control", "max-age=99999999999")],
                31_536_000_000,
            ),
            (
                "cdn replaces cc",
                200,
                vec![
                    ("cache-control", "max-age=1"),
                    ("cdn-cache-control", "max-age=3600"),
                ],
                3_600_000,
            ),
            (
                "cdn short over long cc",
                200,
                vec![
                    ("cache-control", "max-age=3600"),
                    ("cdn-cache-control", "max-age=1"),
                ],
                1000,
            ),
            (
                "cdn ignores expires",
                200,
                vec![("cdn-cache-control", "public"), ("expires", &exp_hour)],
                0,
            ),
            (
                "cdn max-age=0 over expires",
                200,
                vec![
                    ("cdn-cache-control", "max-age=0"),
                    ("expires", &exp_hour),
                    ("date", &date),
                ],
                0,
            ),
            (
                "invalid cdn falls back to cc",
                200,
                vec![
                    ("cache-control", "max-age=5"),
                    ("cdn-cache-control", "max-age =100"),
                ],
                5000,
            ),
        ];
        for (case, status, resp, want) in rows {
            assert_eq!(life(status, &resp, &p).lifetime, want, "{case}");
        }
    }

    #[test]
    fn ttl_clamping() {
        // (case, min, default, max, headers, expected lifetime in s)
        let rows: Vec<(&str, u64, u64, u64, Vec<(&str, &str)>, u64)> = vec![
            (
                "below min",
                60,
                120,
                600,
                vec![("cache-control", "max-age=10")],
                60,
            ),
            (
                "above max",
                60,
                120,
                600,
                vec![("cache-control", "max-age=6000")],
                600,
            ),
            (
                "within",
                60,
                120,
                600,
                vec![("cache-control", "max-age=100")],
                100,
            ),
            ("nothing: default", 60, 120, 600, vec![], 120),
            (
                "max-age=0 raised to min",
                1,
                86_400,
                31_536_000,
                vec![("cache-control", "max-age=0")],
                1,
            ),
            (
                "invalid raised to min",
                5,
                10,
                100,
                vec![("cache-control", "max-age=x")],
                5,
            ),
        ];
        for (case, min, default, max, resp, want) in rows {
            let f = life(200, &resp, &ttl_policy(min, default, max));
            assert_eq!(f.lifetime, want * 1000, "{case}");
        }
    }

    #[test]
    fn flags_and_windows() {
        let p = origin_policy();
        let f = life(
            200,
            &[(
                "cache-control",
                "max-age=1, stale-while-revalidate=30, stale-if-error=60, immutable",
            )],
            &p,
        );
        assert_eq!(
            (f.stale_while_revalidate, f.stale_if_error),
            (30_000, 60_000)
        );
        assert!(f.immutable && !f.must_revalidate && !f.no_cache);
        for (case, cc) in [
            ("must-revalidate", "max-age=1, must-revalidate"),
            ("proxy-revalidate", "max-age=1, proxy-revalidate"),
            ("s-maxage", "s-maxage=1"),
        ] {
            assert!(
                life(200, &[("cache-control", cc)], &p).must_revalidate,
                "{case}"
            );
        }
        assert!(life(200, &[("cache-control", "max-age=100, no-cache")], &p).no_cache);
        assert!(!life(200, &[("cache-control", "max-age=100, no-cache=\"a\"")], &p).no_cache);
        // no-cache still wins over a policy min TTL.
        assert!(
            life(
                200,
                &[("cache-control", "no-cache")],
                &ttl_policy(60, 60, 600)
            )
            .no_cache
        );
    }

    #[test]
    fn initial_ages() {
        let p = origin_policy();
        let date = at(0);
        let old = at(-7200);
        let future = at(100);
        // (case, headers, request_time offset s, expected initial age ms)
        let rows: Vec<(&str, Vec<(&str, &str)>, u64, u64)> = vec![
            ("none", vec![("date", &date)], 0, 0),
            (
                "age header",
                vec![("date", &date), ("age", "7200")],
                0,
                7_200_000,
            ),
            (
                "response delay added",
                vec![("date", &date), ("age", "10")],
                2,
                12_000,
            ),
            ("apparent age from date", vec![("date", &old)], 0, 7_200_000),
            ("non-numeric age", vec![("age", "abc")], 0, 0),
            ("negative age", vec![("age", "-7200")], 0, 0),
            ("float age", vec![("age", "7200.0")], 0, 0),
            (
                "age 2^31",
                vec![("age", "2147483648")],
                0,
                2_147_483_648_000,
            ),
            (
                "age beyond 2^31 saturates",
                vec![("age", "99999999999")],
                0,
                2_147_483_648_000,
            ),
            (
                "first member counts",
                vec![("age", "7200, 0")],
                0,
                7_200_000,
            ),
            (
                "first member counts (fresh)",
                vec![("age", "0, 7200")],
                0,
                0,
            ),
            (
                "first line counts",
                vec![("age", "7200"), ("age", "0")],
                0,
                7_200_000,
            ),
            (
                "first line counts (fresh)",
                vec![("age", "0"), ("age", "7200")],
                0,
                0,
            ),
            (
                "age with parameter ignored",
                vec![("age", "7200;foo=bar")],
                0,
                0,
            ),
            ("future date", vec![("date", &future)], 0, 0),
        ];
        for (case, resp, delay, want) in rows {
            let f = compute(StatusCode::OK, &h(&resp), NOW - delay * 1000, NOW, &p);
            assert_eq!(f.initial_age, want, "{case}");
        }
    }

    #[test]
    fn dates() {
        let y2050 = Some(2_544_400_878_000); // Thu, 18 Aug 2050 02:01:18 GMT
                                             // (case, text, expected)
        let rows: &[(&str, &str, Option<u64>)] = &[
            ("imf", "Thu, 18 Aug 2050 02:01:18 GMT", y2050),
            ("imf epoch", "Thu, 01 Jan 1970 00:00:00 GMT", Some(0)),
            (
                "32 bit",
                "Tue, 19 Jan 2038 03:14:08 GMT",
                Some(2_147_483_648_000),
            ),
            (
                "far future",
                "Sun, 21 Nov 2286 04:46:39 GMT",
                Some(10_000_039_599_000),
            ),
            ("rfc850", "Thursday, 18-Aug-50 02:01:18 GMT", y2050),
            ("asctime", "Thu Aug 18 02:01:18 2050", y2050),
            (
                "asctime one-digit day",
                "Mon Aug  8 02:01:18 2050",
                Some(2_543_536_878_000),
            ),
            (
                "asctime wrong weekday",
                "Thu Aug  8 02:01:18 2050",
                Some(2_543_536_878_000),
            ),
            ("weekday case", "THU, 18 Aug 2050 02:01:18 GMT", y2050),
            ("month case", "Thu, 18 AUG 2050 02:01:18 GMT", y2050),
            ("zone case", "Thu, 18 Aug 2050 02:01:18 gMT", y2050),
            ("UTC", "Thu, 18 Aug 2050 02:01:18 UTC", None),
            ("AEST", "Thu, 18 Aug 2050 02:01:18 AEST", None),
            ("two-digit year", "Thu, 18 Aug 50 02:01:18 GMT", None),
            ("no comma", "Thu 18 Aug 2050 02:01:18 GMT", None),
            ("double spaces", "Thu, 18  Aug  2050 02:01:18 GMT", None),
            ("date dashes", "Thu, 18-Aug-2050 02:01:18 GMT", None),
            ("time periods", "Thu, 18 Aug 2050 02.01.18 GMT", None),
            ("one-digit hour", "Thu, 18 Aug 2050 2:01:18 GMT", None),
            ("zero", "0", None),
            ("31 Feb", "Thu, 31 Feb 2050 02:01:18 GMT", None),
            ("before 1970", "Mon, 01 Jan 1968 00:00:00 GMT", Some(0)),
            ("non-ascii", "Thü, 18 Aug 2050 02:01:18 GMT", None),
            ("empty", "", None),
        ];
        for (case, text, want) in rows {
            assert_eq!(http_date(text, Some(NOW)), *want, "{case}");
        }
        // RFC 850 two-digit years: more than 50 years ahead means the last century.
        assert_eq!(
            http_date("Sunday, 06-Nov-94 08:49:37 GMT", Some(NOW)),
            Some(784_111_777_000)
        );
        assert_eq!(
            http_date("Sunday, 06-Nov-94 08:49:37 GMT", None),
            Some(784_111_777_000)
        );
    }

    fn meta(lifetime_s: u64, age_s: u64, flags: &[u32]) -> ObjectMeta {
        let mut m = ObjectMeta::new("k".into(), StatusCode::OK, HeaderMap::new());
        m.response_time = NOW - age_s * 1000;
        m.freshness_lifetime = lifetime_s * 1000;
        for f in flags {
            m.flags.set(*f, true);
        }
        m
    }

    #[test]
    fn usabilities() {
        use Usability::*;
        let mut swr = meta(10, 20, &[]);
        swr.stale_while_revalidate = 30_000;
        let mut swr_over = meta(10, 50, &[]);
        swr_over.stale_while_revalidate = 30_000;
        let mut swr_mr = meta(10, 20, &[MetaFlags::MUST_REVALIDATE]);
        swr_mr.stale_while_revalidate = 30_000;
        let mut soft = meta(100, 10, &[MetaFlags::FORCED_STALE]);
        soft.stale_while_revalidate = 30_000;
        // (case, meta, request cache-control, expected)
        let rows: Vec<(&str, ObjectMeta, &str, Usability)> = vec![
            ("fresh", meta(100, 10, &[]), "", Fresh),
            ("stale", meta(10, 20, &[]), "", Revalidate),
            (
                "exactly at lifetime is stale",
                meta(10, 10, &[]),
                "",
                Revalidate,
            ),
            (
                "no-cache flag",
                meta(100, 10, &[MetaFlags::NO_CACHE]),
                "",
                Revalidate,
            ),
            (
                "forced stale",
                meta(100, 10, &[MetaFlags::FORCED_STALE]),
                "",
                Revalidate,
            ),
            ("forced stale within swr", soft, "", StaleWhileRevalidate),
            ("swr window", swr.clone(), "", StaleWhileRevalidate),
            ("past swr window", swr_over, "", Revalidate),
            ("swr but must-revalidate", swr_mr, "", Revalidate),
            (
                "request no-cache",
                meta(100, 10, &[]),
                "no-cache",
                Revalidate,
            ),
            (
                "request no-store",
                meta(100, 10, &[]),
                "no-store",
                Revalidate,
            ),
            (
                "request max-age=0",
                meta(100, 10, &[]),
                "max-age=0",
                Revalidate,
            ),
            (
                "request max-age older",
                meta(100, 10, &[]),
                "max-age=5",
                Revalidate,
            ),
            (
                "request max-age ok",
                meta(100, 10, &[]),
                "max-age=50",
                Fresh,
            ),
            (
                "request min-fresh unmet",
                meta(100, 10, &[]),
                "min-fresh=95",
                Revalidate,
            ),
            (
                "request min-fresh met",
                meta(100, 10, &[]),
                "min-fresh=50",
                Fresh,
            ),
            (
                "request max-stale",
                meta(10, 20, &[]),
                "max-stale=1000",
                Fresh,
            ),
            (
                "request bare max-stale",
                meta(10, 20, &[]),
                "max-stale",
                Fresh,
            ),
            (
                "request max-stale too small",
                meta(10, 20, &[]),
                "max-stale=5",
                Revalidate,
            ),
            (
                "max-stale vs must-revalidate",
                meta(10, 20, &[MetaFlags::MUST_REVALIDATE]),
                "max-stale",
                Revalidate,
            ),
            ("request max-age blocks swr", swr, "max-age=5", Revalidate),
            (
                "immutable ignores request no-cache",
                meta(100, 10, &[MetaFlags::IMMUTABLE]),
                "no-cache",
                Fresh,
            ),
            (
                "immutable stale revalidates",
                meta(10, 20, &[MetaFlags::IMMUTABLE]),
                "",
                Revalidate,
            ),
        ];
        for (case, m, rcc, want) in rows {
            let req = if rcc.is_empty() {
                HeaderMap::new()
            } else {
                h(&[("cache-control", rcc)])
            };
            assert_eq!(usability(&m, &req, NOW), want, "{case}");
        }
    }

    #[test]
    fn stale_if_error() {
        let mut sie = meta(10, 20, &[]);
        sie.stale_if_error = 60_000;
        let mut sie_over = meta(10, 100, &[]);
        sie_over.stale_if_error = 60_000;
        let mut sie_mr = meta(10, 20, &[MetaFlags::MUST_REVALIDATE]);
        sie_mr.stale_if_error = 60_000;
        let mut sie_nc = meta(10, 20, &[MetaFlags::NO_CACHE]);
        sie_nc.stale_if_error = 60_000;
        // (case, meta, request cache-control, expected)
        let rows: Vec<(&str, ObjectMeta, &str, bool)> = vec![
            ("within window", sie, "", true),
            ("past window", sie_over.clone(), "", false),
            (
                "request extends window",
                sie_over,
                "stale-if-error=200",
                true,
            ),
            ("no window", meta(10, 20, &[]), "", false),
            (
                "request window only",
                meta(10, 20, &[]),
                "stale-if-error=60",
                true,
            ),
            (
                "must-revalidate forbids",
                sie_mr,
                "stale-if-error=600",
                false,
            ),
            ("no-cache forbids", sie_nc, "", false),
            ("fresh is fine", meta(100, 10, &[]), "", true),
        ];
        for (case, m, rcc, want) in rows {
            let req = if rcc.is_empty() {
                HeaderMap::new()
            } else {
                h(&[("cache-control", rcc)])
            };
            assert_eq!(stale_if_error_allows(&m, &req, NOW), want, "{case}");
        }
        assert!(only_if_cached(&h(&[("cache-control", "only-if-cached")])));
        assert!(!only_if_cached(&HeaderMap::new()));
    }

    #[test]
    fn apply_sets_fields_and_flags() {
        let mut m = meta(0, 0, &[MetaFlags::FORCED_STALE, MetaFlags::NO_CACHE]);
        let f = Freshness {
            lifetime: 5,
            initial_age: 6,
            stale_while_revalidate: 7,
            stale_if_error: 8,
            must_revalidate: true,
            no_cache: false,
            immutable: true,
        };
        apply(&mut m, &f);
        assert_eq!(
            (
                m.freshness_lifetime,
                m.initial_age,
                m.stale_while_revalidate,
                m.stale_if_error
            ),
            (5, 6, 7, 8)
        );
        assert!(m.flags.has(MetaFlags::MUST_REVALIDATE) && m.flags.has(MetaFlags::IMMUTABLE));
        assert!(!m.flags.has(MetaFlags::NO_CACHE) && !m.flags.has(MetaFlags::FORCED_STALE));
    }

    #[test]
    fn freshening_with_304() {
        let mut stored = h(&[
            ("cache-control", "max-age=1"),
            ("content-length", "5"),
            ("content-encoding", "gzip"),
            ("content-type", "text/plain"),
            ("etag", "\"a\""),
            ("test-header", "A"),
            ("x-multi", "1"),
            ("x-multi", "2"),
            ("date", "Wed, 01 Jan 2020 00:00:00 GMT"),
            ("age", "100"),
            ("kept", "yes"),
        ]);
        let not_modified = h(&[
            ("cache-control", "max-age=3600"),
            ("content-length", "10"),
            ("content-encoding", "br"),
            ("content-type", "text/plain;charset=utf-8"),
            ("test-header", "B"),
            ("x-multi", "3"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("proxy-authenticate", "Basic"),
        ]);
        update_headers_from_304(&mut stored, &not_modified);
        // (case, field, expected values)
        let rows: &[(&str, &str, &[&str])] = &[
            ("cache-control replaced", "cache-control", &["max-age=3600"]),
            ("content-length kept", "content-length", &["5"]),
            ("content-encoding kept", "content-encoding", &["gzip"]),
            (
                "content-type replaced",
                "content-type",
                &["text/plain;charset=utf-8"],
            ),
            ("other field replaced", "test-header", &["B"]),
            ("multi-line field replaced as a whole", "x-multi", &["3"]),
            ("untouched field kept", "kept", &["yes"]),
            ("etag kept when absent", "etag", &["\"a\""]),
            ("date dropped when absent", "date", &[]),
            ("age dropped when absent", "age", &[]),
            ("connection not copied", "connection", &[]),
            ("connection-listed not copied", "x-hop", &[]),
            ("keep-alive not copied", "keep-alive", &[]),
            ("transfer-encoding not copied", "transfer-encoding", &[]),
            ("proxy-authenticate not copied", "proxy-authenticate", &[]),
        ];
        for (case, field, want) in rows {
            let got: Vec<&str> = stored
                .get_all(*field)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            assert_eq!(got, *want, "{case}");
        }
    }

    #[test]
    fn unstorable_fields_are_removed() {
        let mut resp = h(&[
            ("connection", "a, B"),
            ("a", "1"),
            ("b", "2"),
            ("c", "3"),
            ("keep-alive", "x"),
            (
                "cache-control",
                "max-age=10, no-cache=\"x-secret\", private=\"x-user\"",
            ),
            ("x-secret", "s"),
            ("x-user", "u"),
        ]);
        remove_unstorable_fields(&mut resp);
        let mut names: Vec<&str> = resp.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, vec!["c", "cache-control"]);
    }

    #[test]
    fn invalidations() {
        let rows: Vec<(&str, Method, u16, Vec<(&str, &str)>, Vec<&str>)> = vec![
            (
                "relative",
                Method::POST,
                201,
                vec![
                    ("location", "location_target"),
                    ("content-location", "content_location_target"),
                ],
                vec!["/t/location_target", "/t/content_location_target"],
            ),
            (
                "absolute same host",
                Method::PUT,
                200,
                vec![("location", "http://Example.com/a/b?x=1#frag")],
                vec!["/a/b?x=1"],
            ),
            (
                "https same host",
                Method::DELETE,
                204,
                vec![("content-location", "https://example.com/c")],
                vec!["/c"],
            ),
            (
                "network-path",
                Method::POST,
                303,
                vec![("location", "//example.com/n")],
                vec!["/n"],
            ),
            (
                "absolute path",
                Method::POST,
                200,
                vec![("location", "/x/../y/./z")],
                vec!["/y/z"],
            ),
            (
                "dot segments",
                Method::POST,
                200,
                vec![("location", "../up")],
                vec!["/up"],
            ),
            (
                "other host",
                Method::POST,
                200,
                vec![("location", "http://evil.example/a")],
                vec![],
            ),
            (
                "other scheme",
                Method::POST,
                200,
                vec![("location", "mailto:a@b")],
                vec![],
            ),
            (
                "unknown method",
                Method::from_bytes(b"M-SEARCH").unwrap(),
                200,
                vec![("location", "/m")],
                vec!["/m"],
            ),
            (
                "error status",
                Method::POST,
                500,
                vec![("location", "/e")],
                vec![],
            ),
            (
                "4xx status",
                Method::POST,
                404,
                vec![("location", "/e")],
                vec![],
            ),
            (
                "safe method",
                Method::GET,
                200,
                vec![("location", "/g")],
                vec![],
            ),
            (
                "same twice",
                Method::POST,
                200,
                vec![("location", "/s"), ("content-location", "/s")],
                vec!["/s"],
            ),
        ];
        for (case, method, status, resp, want) in rows {
            let got = invalidation_uris(
                &method,
                StatusCode::from_u16(status).unwrap(),
                &h(&resp),
                "example.com",
                "/t/req?q=1",
            );
            assert_eq!(got, want, "{case}");
        }
    }
}
