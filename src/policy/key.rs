//! Cache keys. A primary key is host + path + the inputs the cache policy names (query
//! strings, headers, cookies, normalised Accept-Encoding); a Vary'd response adds a
//! secondary key made of the request's values for the fields the response varies on.
//!
//! Keyed query strings and cookies are sorted, so the order a viewer writes them in never
//! splits the cache. Authorization is never a key input (the config refuses it).

use crate::config::{CachePolicy, Encoding, KeyRule};
use http::header::{ACCEPT_ENCODING, COOKIE, HOST};
use http::{HeaderMap, HeaderValue, Method, Uri};
use std::fmt::Write;

/// The separator between a primary key and a variant's secondary key.
pub const VARIANT_SEP: char = '\n';

/// Builds the primary cache key for a request.
pub fn primary_key(
    policy: &CachePolicy,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> String {
    let mut key = String::with_capacity(64);
    if method == Method::OPTIONS {
        key.push_str("OPTIONS ");
    }
    key.push_str(&host_of(uri, headers));
    key.push_str(uri.path());

    if let Some(q) = uri.query() {
        if !policy.query_strings.is_none() {
            let mut pairs: Vec<&str> = q
                .split('&')
                .filter(|p| !p.is_empty())
                .filter(|p| policy.query_strings.takes(p.split('=').next().unwrap_or(p)))
                .collect();
            if !pairs.is_empty() {
                pairs.sort_unstable();
                key.push('?');
                for (i, p) in pairs.iter().enumerate() {
                    if i > 0 {
                        key.push('&');
                    }
                    key.push_str(p);
                }
            }
        }
    }

    if !policy.headers.is_none() {
        let mut names: Vec<&str> = headers
            .keys()
            .map(|n| n.as_str())
            .filter(|n| *n != "authorization" && policy.headers.takes(n))
            .collect();
        names.sort_unstable();
        names.dedup();
        for n in names {
            let _ = write!(key, "\x1fh:{n}=");
            push_joined(&mut key, headers.get_all(n).iter());
        }
    }

    if !policy.cookies.is_none() {
        let mut cookies = keyed_cookies(&policy.cookies, headers);
        cookies.sort_unstable();
        for (n, v) in cookies {
            let _ = write!(key, "\x1fc:{n}={v}");
        }
    }

    if !policy.accept_encoding.is_empty() {
        if let Some(ae) = normalised_accept_encoding(&policy.accept_encoding, headers) {
            let _ = write!(key, "\x1fae:{ae}");
        }
    }
    key
}

/// Whether the request carries a cookie the policy keys on (then a Set-Cookie response is
/// specific to that key, and may be shared among the viewers who send the same cookie).
pub fn cookies_keyed(policy: &CachePolicy, headers: &HeaderMap) -> bool {
    !policy.cookies.is_none() && !keyed_cookies(&policy.cookies, headers).is_empty()
}

fn keyed_cookies<'a>(rule: &KeyRule, headers: &'a HeaderMap) -> Vec<(&'a str, &'a str)> {
    let mut out = Vec::new();
    for v in headers.get_all(COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for c in s.split(';') {
            let c = c.trim();
            if c.is_empty() {
                continue;
            }
            let (n, v) = c.split_once('=').unwrap_or((c, ""));
            if rule.takes(n) {
                out.push((n, v));
            }
        }
    }
    out
}

/// The host part of the key: the authority of an absolute URI, else the Host header,
/// lower-cased.
pub fn host_of(uri: &Uri, headers: &HeaderMap) -> String {
    let raw = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or("");
    raw.to_ascii_lowercase()
}

/// The viewer's Accept-Encoding reduced to the encodings the policy distinguishes, in a
/// fixed order (`br,gzip`), or `None` when the viewer accepts none of them.
pub fn normalised_accept_encoding(enabled: &[Encoding], headers: &HeaderMap) -> Option<String> {
    let mut accepted: Vec<Encoding> = Vec::new();
    for v in headers.get_all(ACCEPT_ENCODING) {
        let Ok(s) = v.to_str() else { continue };
        for item in s.split(',') {
            let mut parts = item.split(';');
            let token = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q_zero = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .or_else(|| p.strip_prefix("Q="))
                    .is_some_and(|q| q.trim().parse::<f32>().map(|q| q <= 0.0).unwrap_or(false))
            });
            if q_zero {
                continue;
            }
            for e in enabled {
                if token == e.token() && !accepted.contains(e) {
                    accepted.push(*e);
                }
            }
        }
    }
    if accepted.is_empty() {
        return None;
    }
    accepted.sort_unstable();
    Some(
        accepted
            .iter()
            .map(|e| e.token())
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// The secondary key of a variant: the request's values for each field the stored
/// response's `Vary` names, normalised (names lower-cased, values' whitespace around commas
/// collapsed). `None` when `Vary` contains `*` (never matches).
pub fn secondary_key(vary: &HeaderMap, req: &HeaderMap) -> Option<String> {
    let mut names: Vec<String> = Vec::new();
    for v in vary.get_all(http::header::VARY) {
        let s = v.to_str().ok()?;
        for n in s.split(',') {
            let n = n.trim().to_ascii_lowercase();
            if n == "*" {
                return None;
            }
            if !n.is_empty() && !names.contains(&n) {
                names.push(n);
            }
        }
    }
    names.sort_unstable();
    let mut out = String::new();
    for n in &names {
        let _ = write!(out, "{n}:");
        let mut values = req.get_all(n.as_str()).iter().peekable();
        if values.peek().is_none() {
            out.push('\u{1}');
        } else {
            push_joined(&mut out, values);
        }
        out.push('\x1e');
    }
    Some(out)
}

/// The full key of a variant.
pub fn variant_key(primary: &str, secondary: &str) -> String {
    let mut k = String::with_capacity(primary.len() + 1 + secondary.len());
    k.push_str(primary);
    k.push(VARIANT_SEP);
    k.push_str(secondary);
    k
}

/// The primary part of a stored key (the whole key when it has no variant part).
pub fn primary_of(key: &str) -> &str {
    key.split(VARIANT_SEP).next().unwrap_or(key)
}

/// The path of a stored key (what invalidations match against): after the host, up to the
/// query or the first key separator.
pub fn path_of(key: &str) -> &str {
    let p = primary_of(key);
    let p = p.strip_prefix("OPTIONS ").unwrap_or(p);
    let start = p.find('/').unwrap_or(p.len());
    let rest = &p[start..];
    let end = rest.find(['?', '\x1f']).unwrap_or(rest.len());
    &rest[..end]
}

fn push_joined<'a>(out: &mut String, values: impl Iterator<Item = &'a HeaderValue>) {
    let mut first = true;
    for v in values {
        for part in String::from_utf8_lossy(v.as_bytes()).split(',') {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(part.trim());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::managed_cache_policy;

    fn req(uri: &str, headers: &[(&str, &str)]) -> (Uri, HeaderMap) {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("Example.COM"));
        for (n, v) in headers {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        (uri.parse().unwrap(), h)
    }

    fn whitelist_policy() -> CachePolicy {
        let mut p = managed_cache_policy("CachingOptimized").unwrap();
        p.query_strings = KeyRule::Whitelist(vec!["page".into(), "sort".into()]);
        p.cookies = KeyRule::Whitelist(vec!["session".into()]);
        p.headers = KeyRule::Whitelist(vec!["x-device".into()]);
        p
    }

    #[test]
    fn whitelisted_query_strings_are_sorted_and_others_dropped() {
        let p = whitelist_policy();
        let (u1, h1) = req("/a?sort=asc&page=2&utm_source=x", &[]);
        let (u2, h2) = req("/a?page=2&sort=asc", &[]);
        let k1 = primary_key(&p, &Method::GET, &u1, &h1);
        assert_eq!(k1, primary_key(&p, &Method::GET, &u2, &h2));
        assert!(k1.starts_with("example.com/a?page=2&sort=asc"), "{k1}");
        let (u3, h3) = req("/a?page=3&sort=asc", &[]);
        assert_ne!(k1, primary_key(&p, &Method::GET, &u3, &h3));
    }

    #[test]
    fn head_shares_get_key_options_does_not() {
        let p = whitelist_policy();
        let (u, h) = req("/a", &[]);
        assert_eq!(
            primary_key(&p, &Method::GET, &u, &h),
            primary_key(&p, &Method::HEAD, &u, &h)
        );
        assert_ne!(
            primary_key(&p, &Method::GET, &u, &h),
            primary_key(&p, &Method::OPTIONS, &u, &h)
        );
    }

    #[test]
    fn cookies_and_headers_keyed_only_when_named() {
        let p = whitelist_policy();
        let (u, h1) = req(
            "/a",
            &[("cookie", "session=1; theme=dark"), ("x-device", "mobile")],
        );
        let (_, h2) = req(
            "/a",
            &[("cookie", "theme=light; session=1"), ("x-device", "mobile")],
        );
        let (_, h3) = req("/a", &[("cookie", "session=2"), ("x-device", "mobile")]);
        let (_, h4) = req("/a", &[("cookie", "session=1"), ("x-device", "desktop")]);
        let k = |h: &HeaderMap| primary_key(&p, &Method::GET, &u, h);
        assert_eq!(k(&h1), k(&h2));
        assert_ne!(k(&h1), k(&h3));
        assert_ne!(k(&h1), k(&h4));
        assert!(cookies_keyed(&p, &h1));
    }

    #[test]
    fn authorization_is_never_keyed() {
        let mut p = whitelist_policy();
        p.headers = KeyRule::AllExcept(vec![]);
        let (u, h1) = req("/a", &[("authorization", "Bearer a")]);
        let (_, h2) = req("/a", &[("authorization", "Bearer b")]);
        assert_eq!(
            primary_key(&p, &Method::GET, &u, &h1),
            primary_key(&p, &Method::GET, &u, &h2)
        );
    }

    #[test]
    fn accept_encoding_is_normalised() {
        let enabled = [Encoding::Gzip, Encoding::Br];
        let (_, h) = req("/", &[("accept-encoding", "gzip, deflate, br;q=0.5")]);
        assert_eq!(
            normalised_accept_encoding(&enabled, &h).as_deref(),
            Some("br,gzip")
        );
        let (_, h) = req("/", &[("accept-encoding", "br;q=0, GZIP")]);
        assert_eq!(
            normalised_accept_encoding(&enabled, &h).as_deref(),
            Some("gzip")
        );
        let (_, h) = req("/", &[("accept-encoding", "identity")]);
        assert_eq!(normalised_accept_encoding(&enabled, &h), None);
    }

    #[test]
    fn secondary_keys() {
        let mut vary = HeaderMap::new();
        vary.insert(
            http::header::VARY,
            HeaderValue::from_static("Accept-Language, X-Foo"),
        );
        let (_, a) = req("/", &[("accept-language", "en,  fr")]);
        let (_, b) = req("/", &[("accept-language", "en, fr")]);
        let (_, c) = req("/", &[("accept-language", "de")]);
        assert_eq!(secondary_key(&vary, &a), secondary_key(&vary, &b));
        assert_ne!(secondary_key(&vary, &a), secondary_key(&vary, &c));
        vary.insert(http::header::VARY, HeaderValue::from_static("*"));
        assert_eq!(secondary_key(&vary, &a), None);
    }

    #[test]
    fn paths_of_keys() {
        assert_eq!(path_of("example.com/a/b?x=1"), "/a/b");
        assert_eq!(path_of("example.com/a\x1fc:s=1\nvariant"), "/a");
        assert_eq!(path_of("OPTIONS example.com/opt"), "/opt");
    }
}

#[cfg(test)]
mod proptests {
    //! Properties of key normalisation that must hold for any request, not just the
    //! examples above.

    use super::*;
    use crate::config::managed_cache_policy;
    use proptest::prelude::*;

    const WHITELIST: [&str; 2] = ["page", "sort"];

    fn policy(query: KeyRule, headers: KeyRule, cookies: KeyRule) -> CachePolicy {
        let mut p = managed_cache_policy("CachingOptimized").expect("managed policy");
        p.query_strings = query;
        p.headers = headers;
        p.cookies = cookies;
        p
    }

    fn whitelist() -> KeyRule {
        KeyRule::Whitelist(WHITELIST.iter().map(|s| s.to_string()).collect())
    }

    fn uri(path: &str, pairs: &[(String, String)]) -> Uri {
        let q: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={v}")).collect();
        let text = if q.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", q.join("&"))
        };
        text.parse().expect("generated URIs are valid")
    }

    fn host_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("example.com"));
        h
    }

    fn key(p: &CachePolicy, u: &Uri, h: &HeaderMap) -> String {
        primary_key(p, &Method::GET, u, h)
    }

    fn path() -> impl Strategy<Value = String> {
        "(/[a-z0-9]{1,6}){1,3}"
    }

    fn pair() -> impl Strategy<Value = (String, String)> {
        ("[a-z]{1,6}", "[a-z0-9]{0,6}")
    }

    /// A name the whitelist does not take.
    fn other_name() -> impl Strategy<Value = String> {
        "[a-z]{1,6}".prop_filter("not whitelisted", |n| !WHITELIST.contains(&n.as_str()))
    }

    proptest! {
        #[test]
        fn query_order_never_splits_the_cache(
            path in path(),
            pairs in prop::collection::vec(pair(), 0..8),
            seed in any::<u64>(),
        ) {
            let mut shuffled = pairs.clone();
            // A deterministic permutation from the seed.
            let n = shuffled.len();
            for i in (1..n).rev() {
                let j = (seed.rotate_left(i as u32) % (i as u64 + 1)) as usize;
                shuffled.swap(i, j);
            }
            let h = host_headers();
            for rule in [KeyRule::All, whitelist(), KeyRule::AllExcept(vec!["utm".into()])] {
                let p = policy(rule, KeyRule::None, KeyRule::None);
                prop_assert_eq!(key(&p, &uri(&path, &pairs), &h), key(&p, &uri(&path, &shuffled), &h));
            }
        }

        #[test]
        fn unkeyed_params_never_change_the_key(
            path in path(),
            page in "[a-z0-9]{0,6}",
            extra in prop::collection::vec((other_name(), "[a-z0-9]{0,6}"), 1..5),
            at in any::<prop::sample::Index>(),
        ) {
            let p = policy(whitelist(), KeyRule::None, KeyRule::None);
            let h = host_headers();
            let base = vec![("page".to_string(), page)];
            let mut with_extra = base.clone();
            for e in extra {
                let i = at.index(with_extra.len() + 1);
                with_extra.insert(i, e);
            }
            prop_assert_eq!(key(&p, &uri(&path, &base), &h), key(&p, &uri(&path, &with_extra), &h));
            // With no query keying at all, every query is irrelevant.
            let none = policy(KeyRule::None, KeyRule::None, KeyRule::None);
            prop_assert_eq!(key(&none, &uri(&path, &[]), &h), key(&none, &uri(&path, &with_extra), &h));
        }

        #[test]
        fn changing_a_keyed_value_always_changes_the_key(
            path in path(),
            name in prop::sample::select(WHITELIST.to_vec()),
            a in "[a-z0-9]{0,6}",
            b in "[a-z0-9]{0,6}",
            others in prop::collection::vec((other_name(), "[a-z0-9]{0,6}"), 0..4),
        ) {
            prop_assume!(a != b);
            let h = host_headers();
            let mut qa = others.clone();
            qa.push((name.to_string(), a));
            let mut qb = others;
            qb.push((name.to_string(), b));
            for rule in [whitelist(), KeyRule::All] {
                let p = policy(rule, KeyRule::None, KeyRule::None);
                prop_assert_ne!(key(&p, &uri(&path, &qa), &h), key(&p, &uri(&path, &qb), &h));
            }
        }

        #[test]
        fn keys_never_contain_the_authorization_value(
            path in path(),
            pairs in prop::collection::vec(pair(), 0..4),
            secret in "[A-Za-z0-9]{8,16}",
            other in "[a-z0-9]{1,8}",
        ) {
            let credential = format!("Bearer SECRET{secret}");
            let mut h = host_headers();
            h.insert(http::header::AUTHORIZATION, HeaderValue::from_str(&credential).expect("ascii"));
            h.insert("x-other", HeaderValue::from_str(&other).expect("ascii"));
            h.insert(COOKIE, HeaderValue::from_str(&format!("c={other}")).expect("ascii"));
            let u = uri(&path, &pairs);
            for headers in [KeyRule::All, KeyRule::AllExcept(vec![]), KeyRule::Whitelist(vec!["authorization".into(), "x-other".into()])] {
                let p = policy(KeyRule::All, headers, KeyRule::All);
                let k = key(&p, &u, &h);
                prop_assert!(!k.contains("SECRET"), "key {:?} leaks the credential", k);
                prop_assert!(k.contains(&other), "other inputs are still keyed: {:?}", k);
            }
        }
    }
}
