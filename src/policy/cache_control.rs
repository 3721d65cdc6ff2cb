//! Parsing of Cache-Control (RFC 9111 §5.2) and CDN-Cache-Control (RFC 9213).

use http::HeaderMap;

/// Directives of a response's Cache-Control (or CDN-Cache-Control) that a shared cache acts
/// on. Durations are in seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseDirectives {
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    pub no_store: bool,
    /// `no-cache`, qualified or not.
    pub no_cache: bool,
    /// Field names of a qualified `no-cache="..."`, lower-case (empty when unqualified).
    pub no_cache_fields: Vec<String>,
    pub private: bool,
    pub private_fields: Vec<String>,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub must_understand: bool,
    pub no_transform: bool,
    pub immutable: bool,
    pub stale_while_revalidate: Option<u64>,
    pub stale_if_error: Option<u64>,
    /// A directive that may only appear once appeared with conflicting values, or a value
    /// was malformed (e.g. `max-age=abc`): RFC 9111 §4.2.1 says to treat the response as stale.
    pub invalid_freshness: bool,
}

/// Directives of a request's Cache-Control. Durations are in seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    pub max_age: Option<u64>,
    /// `max-stale` alone is `Some(u64::MAX)`.
    pub max_stale: Option<u64>,
    pub min_fresh: Option<u64>,
    pub no_cache: bool,
    pub no_store: bool,
    pub only_if_cached: bool,
    pub stale_if_error: Option<u64>,
}

impl ResponseDirectives {
    /// Parses every `Cache-Control` field line of `headers`.
    pub fn from_cache_control(headers: &HeaderMap) -> ResponseDirectives {
        let _ = headers;
        unimplemented!("policy helper implements this")
    }

    /// Parses `CDN-Cache-Control` (a Structured Fields dictionary, RFC 9213); `None` when
    /// absent or unparseable (then Cache-Control applies).
    pub fn from_cdn_cache_control(headers: &HeaderMap) -> Option<ResponseDirectives> {
        let _ = headers;
        unimplemented!("policy helper implements this")
    }
}

impl RequestDirectives {
    pub fn parse(headers: &HeaderMap) -> RequestDirectives {
        let _ = headers;
        unimplemented!("policy helper implements this")
    }
}
