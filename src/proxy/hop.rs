//! Per-hop header handling: hop-by-hop fields (RFC 9110 §7.6.1), `Via`, loop detection,
//! and this node's `Cache-Status` member (RFC 9211) and `X-Cache` value.

use http::header::{CONNECTION, VIA};
use http::HeaderMap;
use std::fmt::Write;

/// Fields that describe one connection, never forwarded nor stored.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop fields, including those the Connection field names.
/// The field names the Connection field lists (lower-cased), which are hop-by-hop too.
pub fn connection_listed(h: &HeaderMap) -> Vec<String> {
    h.get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    for n in connection_listed(h) {
        h.remove(n.as_str());
    }
    for n in HOP_BY_HOP {
        h.remove(*n);
    }
}

/// Whether a header name is hop-by-hop (without looking at Connection).
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
}

/// Whether the request's `Via` already names this node (a loop).
pub fn via_names(h: &HeaderMap, node_id: &str) -> bool {
    h.get_all(VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .any(|entry| {
            let mut parts = entry.split_whitespace();
            let _protocol = parts.next();
            let received_by = parts.next();
            let comment: String = parts.collect::<Vec<_>>().join(" ");
            received_by == Some(node_id) && comment.starts_with("(strata")
        })
}

/// Whether a request comes from another strata hop: a peer of this tier (it sends
/// `x-strata-peer`) or a strata node of a lower tier (its `Via` entry carries the
/// `(strata)` comment). Such hops get the headers that are for caches only, such as
/// `Surrogate-Key`, so that they can index and purge by them too.
pub fn from_strata_hop(h: &HeaderMap) -> bool {
    h.contains_key(crate::cluster::PEER_HEADER)
        || h.get_all(VIA)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(','))
            .any(|entry| {
                entry
                    .split_whitespace()
                    .nth(2)
                    .is_some_and(|comment| comment.starts_with("(strata"))
            })
}

/// The outcome of a request, as CloudFront's `X-Cache` and the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Hit,
    RefreshHit,
    Stale,
    Miss,
    Pass,
    Error,
}

impl Outcome {
    pub fn x_cache(self) -> &'static str {
        match self {
            Outcome::Hit | Outcome::Stale => "Hit from strata",
            Outcome::RefreshHit => "RefreshHit from strata",
            Outcome::Miss | Outcome::Pass => "Miss from strata",
            Outcome::Error => "Error from strata",
        }
    }

    pub fn metric_label(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::RefreshHit => "refresh_hit",
            Outcome::Stale => "stale",
            Outcome::Miss => "miss",
            Outcome::Pass => "pass",
            Outcome::Error => "error",
        }
    }

    pub const ALL: [Outcome; 6] = [
        Outcome::Hit,
        Outcome::RefreshHit,
        Outcome::Stale,
        Outcome::Miss,
        Outcome::Pass,
        Outcome::Error,
    ];
}

/// This node's Cache-Status member (RFC 9211 §2).
#[derive(Debug, Clone, Default)]
pub struct CacheStatus {
    pub hit: bool,
    /// `fwd` parameter: bypass, method, uri-miss, vary-miss, miss, request, stale, partial.
    pub fwd: Option<&'static str>,
    pub fwd_status: Option<u16>,
    /// Remaining freshness in seconds (negative when stale).
    pub ttl: Option<i64>,
    pub stored: bool,
    pub collapsed: bool,
    pub detail: Option<&'static str>,
}

impl CacheStatus {
    pub fn hit(ttl: i64) -> CacheStatus {
        CacheStatus {
            hit: true,
            ttl: Some(ttl),
            ..Default::default()
        }
    }

    pub fn fwd(fwd: &'static str) -> CacheStatus {
        CacheStatus {
            fwd: Some(fwd),
            ..Default::default()
        }
    }

    pub fn render(&self, node_id: &str) -> String {
        let mut s = String::with_capacity(48);
        s.push_str(node_id);
        if self.hit {
            s.push_str("; hit");
        }
        if let Some(f) = self.fwd {
            let _ = write!(s, "; fwd={f}");
        }
        if let Some(st) = self.fwd_status {
            let _ = write!(s, "; fwd-status={st}");
        }
        if let Some(t) = self.ttl {
            let _ = write!(s, "; ttl={t}");
        }
        if self.stored {
            s.push_str("; stored");
        }
        if self.collapsed {
            s.push_str("; collapsed");
        }
        if let Some(d) = self.detail {
            let _ = write!(s, "; detail={d}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn strips_connection_listed_fields() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("close, X-Secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn detects_loops() {
        let mut h = HeaderMap::new();
        h.insert(
            VIA,
            HeaderValue::from_static("1.1 pop-1 (strata), 1.1 shield-1 (strata)"),
        );
        assert!(via_names(&h, "shield-1"));
        assert!(via_names(&h, "pop-1"));
        assert!(!via_names(&h, "shield"));
        h.insert(VIA, HeaderValue::from_static("1.1 shield-1 (squid)"));
        assert!(!via_names(&h, "shield-1"));
    }

    #[test]
    fn recognises_strata_hops() {
        let mut h = HeaderMap::new();
        assert!(!from_strata_hop(&h));
        h.insert(
            VIA,
            HeaderValue::from_static("1.1 varnish (Varnish/7), 1.1 squid"),
        );
        assert!(!from_strata_hop(&h));
        h.insert(VIA, HeaderValue::from_static("1.1 lb, 1.1 pop-1 (strata)"));
        assert!(from_strata_hop(&h));
        let mut p = HeaderMap::new();
        p.insert(
            crate::cluster::PEER_HEADER,
            HeaderValue::from_static("edge-2"),
        );
        assert!(from_strata_hop(&p));
    }

    #[test]
    fn renders_cache_status() {
        assert_eq!(CacheStatus::hit(57).render("n"), "n; hit; ttl=57");
        let s = CacheStatus {
            fwd: Some("miss"),
            fwd_status: Some(200),
            stored: true,
            collapsed: true,
            ..Default::default()
        };
        assert_eq!(
            s.render("n"),
            "n; fwd=miss; fwd-status=200; stored; collapsed"
        );
    }
}
