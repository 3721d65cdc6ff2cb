//! Builds the request sent upstream from a viewer's request: the origin request policy's
//! forwarding rules, the cache policy's key inputs (always forwarded), hop-by-hop fields
//! removed, `Via` and `X-Forwarded-For` added, and the origin's custom headers.

use super::hop::is_hop_by_hop;
use crate::config::{Behaviour, OriginTarget};
use crate::policy::key::normalised_accept_encoding;
use crate::store::ObjectMeta;
use crate::upstream::UpstreamBody;
use http::header::{ACCEPT_ENCODING, COOKIE, HOST, VIA};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use std::net::IpAddr;

/// Fields a fill never forwards: a fill fetches the whole object for the cache; the
/// viewer's own preconditions and ranges are answered from it afterwards.
const FILL_DROPS: &[&str] = &[
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
    "if-range",
    "range",
];

/// What kind of upstream request to build.
pub enum Purpose<'a> {
    /// Pass the viewer's request through (no caching): method, body and preconditions kept.
    Pass,
    /// Fetch the whole object for the cache (GET, no viewer preconditions).
    Fill,
    /// Revalidate this stored response (conditional GET).
    Revalidate(&'a ObjectMeta),
    /// Fetch the rest of an object whose body broke off after `start` bytes:
    /// `Range: bytes=<start>-` with `If-Range: <validator>`, so that a changed object comes
    /// back whole (200) instead of as a range of another version.
    Resume {
        start: u64,
        validator: &'a HeaderValue,
    },
}

pub struct ForwardContext<'a> {
    pub behaviour: &'a Behaviour,
    pub origin: &'a OriginTarget,
    pub via: &'a HeaderValue,
    pub client_ip: IpAddr,
    /// Whether the viewer spoke TLS to this node.
    pub tls: bool,
}

/// Builds the upstream request.
pub fn upstream_request(
    ctx: &ForwardContext<'_>,
    parts: &Parts,
    purpose: Purpose<'_>,
    body: UpstreamBody,
) -> Result<Request<UpstreamBody>, String> {
    let b = ctx.behaviour;
    let cp = &b.cache_policy;
    let orp = &b.origin_request_policy;

    // URI: the origin's scheme, authority and path prefix + the viewer's path and the
    // forwarded query strings, in the viewer's order.
    let base = &ctx.origin.url;
    let prefix = base.path().trim_end_matches('/');
    let mut pq = String::with_capacity(prefix.len() + parts.uri.path().len() + 32);
    pq.push_str(prefix);
    pq.push_str(parts.uri.path());
    if let Some(q) = parts.uri.query() {
        let kept: Vec<&str> = q
            .split('&')
            .filter(|p| !p.is_empty())
            .filter(|p| {
                let name = p.split('=').next().unwrap_or(p);
                cp.query_strings.takes(name) || orp.query_strings.takes(name)
            })
            .collect();
        if !kept.is_empty() {
            pq.push('?');
            pq.push_str(&kept.join("&"));
        }
    }
    let uri = Uri::builder()
        .scheme(base.scheme_str().unwrap_or("http"))
        .authority(base.authority().map(|a| a.as_str()).unwrap_or(""))
        .path_and_query(pq)
        .build()
        .map_err(|e| format!("cannot build the origin URI: {e}"))?;

    let connection_listed = super::hop::connection_listed(&parts.headers);
    let fill = !matches!(purpose, Purpose::Pass);

    let mut h = HeaderMap::with_capacity(parts.headers.len() + 6);
    for (name, value) in &parts.headers {
        let n = name.as_str();
        if is_hop_by_hop(n)
            || connection_listed.iter().any(|c| c == n)
            || n == "host"
            || n == "via"
            || n == "x-forwarded-for"
            || n == crate::cluster::PEER_HEADER
            || n == "cookie"
            || n == "accept-encoding"
            || (fill && FILL_DROPS.contains(&n))
        {
            continue;
        }
        if matches!(purpose, Purpose::Pass) || cp.headers.takes(n) || orp.headers.takes(n) {
            h.append(name.clone(), value.clone());
        }
    }

    // Cookies: those keyed or forwarded, in the viewer's order.
    if !(cp.cookies.is_none() && orp.cookies.is_none()) {
        let mut kept = Vec::new();
        for v in parts.headers.get_all(COOKIE) {
            let Ok(s) = v.to_str() else { continue };
            for c in s.split(';') {
                let c = c.trim();
                let name = c.split('=').next().unwrap_or(c);
                if !c.is_empty() && (cp.cookies.takes(name) || orp.cookies.takes(name)) {
                    kept.push(c);
                }
            }
        }
        if !kept.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
                h.insert(COOKIE, v);
            }
        }
    }

    // Accept-Encoding: normalised to the policy's encodings when it names any; otherwise
    // the viewer's as sent (the response's Vary then keys the variants).
    if cp.accept_encoding.is_empty() {
        for v in parts.headers.get_all(ACCEPT_ENCODING) {
            h.append(ACCEPT_ENCODING, v.clone());
        }
    } else if let Some(ae) = normalised_accept_encoding(&cp.accept_encoding, &parts.headers) {
        if let Ok(v) = HeaderValue::from_str(&ae) {
            h.insert(ACCEPT_ENCODING, v);
        }
    }

    // Host.
    let host = if orp.forward_host {
        parts.headers.get(HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        })
    } else {
        None
    };
    let host = match host {
        Some(h) => h,
        None => HeaderValue::from_str(base.authority().map(|a| a.as_str()).unwrap_or(""))
            .map_err(|e| e.to_string())?,
    };
    h.insert(HOST, host);

    // Via and X-Forwarded-For: the viewer's, with this hop appended.
    let mut via = String::new();
    for v in parts.headers.get_all(VIA) {
        if let Ok(s) = v.to_str() {
            via.push_str(s);
            via.push_str(", ");
        }
    }
    via.push_str(ctx.via.to_str().unwrap_or(""));
    if let Ok(v) = HeaderValue::from_str(&via) {
        h.insert(VIA, v);
    }
    let xff_name = HeaderName::from_static("x-forwarded-for");
    let mut xff = String::new();
    for v in parts.headers.get_all(&xff_name) {
        if let Ok(s) = v.to_str() {
            xff.push_str(s);
            xff.push_str(", ");
        }
    }
    xff.push_str(&ctx.client_ip.to_string());
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert(xff_name, v);
    }
    if !h.contains_key("x-forwarded-proto") {
        h.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static(if ctx.tls { "https" } else { "http" }),
        );
    }

    // Revalidation: the stored validators.
    if let Purpose::Revalidate(meta) = &purpose {
        if let Some(etag) = meta.headers.get(http::header::ETAG) {
            h.insert(http::header::IF_NONE_MATCH, etag.clone());
        }
        if let Some(lm) = meta.headers.get(http::header::LAST_MODIFIED) {
            h.insert(http::header::IF_MODIFIED_SINCE, lm.clone());
        }
    }

    if let Purpose::Resume { start, validator } = &purpose {
        let range = HeaderValue::from_str(&format!("bytes={start}-")).map_err(|e| e.to_string())?;
        h.insert(http::header::RANGE, range);
        h.insert(http::header::IF_RANGE, (*validator).clone());
    }

    // The origin's custom headers (validated at config load).
    for (name, value) in &ctx.origin.config.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            h.insert(n, v);
        }
    }

    let method = match purpose {
        Purpose::Pass => parts.method.clone(),
        _ if parts.method == Method::OPTIONS => Method::OPTIONS,
        _ => Method::GET,
    };
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .body(body)
        .map_err(|e| e.to_string())?;
    *req.headers_mut() = h;
    Ok(req)
}

/// Whether a request carries revalidation validators that a fill would add.
pub fn has_validators(meta: &ObjectMeta) -> bool {
    meta.headers.contains_key(http::header::ETAG)
        || meta.headers.contains_key(http::header::LAST_MODIFIED)
}

/// The validator an `If-Range` may carry for a response (RFC 9110 §13.1.5): its entity tag
/// when that is strong, else its `Last-Modified` when that is strong too (at least one
/// second before the response's `Date`). `None`: a range of this response cannot be asked
/// for safely.
pub fn if_range_validator(h: &HeaderMap) -> Option<HeaderValue> {
    if let Some(etag) = h.get(http::header::ETAG) {
        if !etag.as_bytes().starts_with(b"W/") {
            return Some(etag.clone());
        }
    }
    let lm = h.get(http::header::LAST_MODIFIED)?;
    let lm_ms = crate::time::parse_http_date(lm.to_str().ok()?)?;
    let date_ms = crate::time::parse_http_date(h.get(http::header::DATE)?.to_str().ok()?)?;
    (date_ms >= lm_ms + 1000).then(|| lm.clone())
}

/// Checks a `Content-Range` of an answer to [`Purpose::Resume`]: the range must start at
/// `start` and, when `total` is known, be of an object of that length. Returns the length
/// of the whole object.
pub fn resumed_range_fits(h: &HeaderMap, start: u64, total: Option<u64>) -> Option<u64> {
    let cr = h.get(http::header::CONTENT_RANGE)?.to_str().ok()?;
    let (unit, rest) = cr.trim().split_once(' ')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (range, len) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last): (u64, u64) = (first.trim().parse().ok()?, last.trim().parse().ok()?);
    let len: u64 = len.trim().parse().ok()?;
    let fits = first == start && last + 1 == len && total.is_none_or(|t| t == len);
    fits.then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn if_range_takes_only_strong_validators() {
        let strong = headers(&[("etag", "\"v1\"")]);
        assert_eq!(if_range_validator(&strong).unwrap(), "\"v1\"");
        let weak = headers(&[("etag", "W/\"v1\"")]);
        assert!(if_range_validator(&weak).is_none());
        let lm_strong = headers(&[
            ("etag", "W/\"v1\""),
            ("last-modified", "Tue, 01 Dec 2026 10:00:00 GMT"),
            ("date", "Tue, 01 Dec 2026 10:00:05 GMT"),
        ]);
        assert_eq!(
            if_range_validator(&lm_strong).unwrap(),
            "Tue, 01 Dec 2026 10:00:00 GMT"
        );
        let lm_same_second = headers(&[
            ("last-modified", "Tue, 01 Dec 2026 10:00:00 GMT"),
            ("date", "Tue, 01 Dec 2026 10:00:00 GMT"),
        ]);
        assert!(if_range_validator(&lm_same_second).is_none());
    }

    #[test]
    fn a_resumed_range_must_continue_the_same_object() {
        let h = headers(&[("content-range", "bytes 100-999/1000")]);
        assert_eq!(resumed_range_fits(&h, 100, Some(1000)), Some(1000));
        assert_eq!(resumed_range_fits(&h, 100, None), Some(1000));
        assert_eq!(resumed_range_fits(&h, 99, Some(1000)), None);
        assert_eq!(resumed_range_fits(&h, 100, Some(2000)), None);
        let short = headers(&[("content-range", "bytes 100-500/1000")]);
        assert_eq!(resumed_range_fits(&short, 100, Some(1000)), None);
        let unknown = headers(&[("content-range", "bytes 100-999/*")]);
        assert_eq!(resumed_range_fits(&unknown, 100, Some(1000)), None);
        assert_eq!(resumed_range_fits(&HeaderMap::new(), 100, None), None);
    }
}
