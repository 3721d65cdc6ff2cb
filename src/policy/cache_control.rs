//! Parsing of Cache-Control (RFC 9111 §5.2) and CDN-Cache-Control (RFC 9213).
//!
//! This module owns the syntax of cache directives: splitting field lines into directives
//! (commas inside quoted strings do not split), case-insensitive names, `token` and
//! `quoted-string` arguments, `delta-seconds` with the 2^31 saturation rule (RFC 9111
//! §1.2.2), and CDN-Cache-Control as a Structured Fields dictionary (RFC 8941 / 9651).
//!
//! It never decides what a directive *means* for storing or serving — that is
//! `policy::freshness` — and it never panics or fails on any input: a malformed directive
//! is dropped (or, for the freshness directives, flagged as `invalid_freshness`).

use http::header::CACHE_CONTROL;
use http::HeaderMap;

/// The CDN-Cache-Control field name (RFC 9213).
pub const CDN_CACHE_CONTROL: &str = "cdn-cache-control";

/// The largest delta-seconds value a cache must be able to represent; bigger values
/// saturate to it (RFC 9111 §1.2.2).
pub const DELTA_SECONDS_MAX: u64 = 1 << 31;

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
    /// `private`, qualified or not.
    pub private: bool,
    /// Field names of a qualified `private="..."`, lower-case (empty when unqualified).
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
        let mut d = ResponseDirectives::default();
        // Qualified and unqualified forms may both appear; the unqualified one wins.
        let mut no_cache_bare = false;
        let mut private_bare = false;
        for line in headers.get_all(CACHE_CONTROL) {
            let text = String::from_utf8_lossy(line.as_bytes());
            for dir in directives(&text) {
                match dir.name.as_str() {
                    "max-age" => set_delta_once(&mut d.max_age, &dir, &mut d.invalid_freshness),
                    "s-maxage" => set_delta_once(&mut d.s_maxage, &dir, &mut d.invalid_freshness),
                    "stale-while-revalidate" => first_delta(&mut d.stale_while_revalidate, &dir),
                    "stale-if-error" => first_delta(&mut d.stale_if_error, &dir),
                    "no-store" => d.no_store = true,
                    "no-cache" => {
                        d.no_cache = true;
                        match dir.value.as_deref() {
                            Some(v) if !dir.malformed => d.no_cache_fields.extend(field_names(v)),
                            _ => no_cache_bare = true,
                        }
                    }
                    "private" => {
                        d.private = true;
                        match dir.value.as_deref() {
                            Some(v) if !dir.malformed => d.private_fields.extend(field_names(v)),
                            _ => private_bare = true,
                        }
                    }
                    "public" => d.public = true,
                    "must-revalidate" => d.must_revalidate = true,
                    "proxy-revalidate" => d.proxy_revalidate = true,
                    "must-understand" => d.must_understand = true,
                    "no-transform" => d.no_transform = true,
                    "immutable" => d.immutable = true,
                    _ => {} // RFC 9111 §5.2.3: unrecognised directives are ignored.
                }
            }
        }
        if no_cache_bare {
            d.no_cache_fields.clear();
        }
        if private_bare {
            d.private_fields.clear();
        }
        d.no_cache_fields.dedup();
        d.private_fields.dedup();
        d
    }

    /// Parses `CDN-Cache-Control` (a Structured Fields dictionary, RFC 9213); `None` when
    /// absent or unparseable (then Cache-Control applies).
    ///
    /// A member whose value has the wrong type (`max-age="10"`, `max-age=-1`, `no-store=1`)
    /// is ignored on its own (RFC 9213 §2.1); the field as a whole still applies.
    pub fn from_cdn_cache_control(headers: &HeaderMap) -> Option<ResponseDirectives> {
        let mut joined: Vec<u8> = Vec::new();
        for line in headers.get_all(CDN_CACHE_CONTROL) {
            let bytes = line.as_bytes();
            if bytes.iter().all(|b| *b == b' ' || *b == b'\t') {
                continue;
            }
            if !joined.is_empty() {
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(bytes);
        }
        if joined.is_empty() {
            // Absent or empty: RFC 9213 §2.2 says to behave as if it were not there.
            return None;
        }
        let dict: sfv::Dictionary = sfv::Parser::new(&joined).parse().ok()?;
        let mut d = ResponseDirectives::default();
        for (key, entry) in &dict {
            let sfv::ListEntry::Item(item) = entry else {
                continue; // inner lists mean nothing here
            };
            let bare = &item.bare_item;
            let seconds = || {
                bare.as_integer()
                    .map(i64::from)
                    .and_then(|n| u64::try_from(n).ok())
                    .map(|n| n.min(DELTA_SECONDS_MAX))
            };
            let flag = bare.as_boolean() == Some(true);
            match key.as_str() {
                "max-age" => {
                    if let Some(n) = seconds() {
                        d.max_age = Some(n)
                    }
                }
                "s-maxage" => {
                    if let Some(n) = seconds() {
                        d.s_maxage = Some(n)
                    }
                }
                "stale-while-revalidate" => {
                    if let Some(n) = seconds() {
                        d.stale_while_revalidate = Some(n)
                    }
                }
                "stale-if-error" => {
                    if let Some(n) = seconds() {
                        d.stale_if_error = Some(n)
                    }
                }
                "no-cache" | "private" => {
                    let fields: Option<Vec<String>> = if flag {
                        Some(Vec::new())
                    } else {
                        bare.as_string().map(|s| field_names(s.as_str()).collect())
                    };
                    if let Some(fields) = fields {
                        if key.as_str() == "no-cache" {
                            d.no_cache = true;
                            d.no_cache_fields = fields;
                        } else {
                            d.private = true;
                            d.private_fields = fields;
                        }
                    }
                }
                "no-store" => d.no_store |= flag,
                "public" => d.public |= flag,
                "must-revalidate" => d.must_revalidate |= flag,
                "proxy-revalidate" => d.proxy_revalidate |= flag,
                "must-understand" => d.must_understand |= flag,
                "no-transform" => d.no_transform |= flag,
                "immutable" => d.immutable |= flag,
                _ => {}
            }
        }
        Some(d)
    }

    /// Whether any directive gives the response an explicit freshness lifetime
    /// (`max-age` or, for a shared cache, `s-maxage`), valid or not.
    pub fn has_explicit_lifetime(&self) -> bool {
        self.max_age.is_some() || self.s_maxage.is_some() || self.invalid_freshness
    }
}

impl RequestDirectives {
    /// Parses every `Cache-Control` field line of a request. Malformed values are ignored
    /// (a request directive never makes the cache less safe by being dropped, except
    /// `max-stale`, whose malformed forms are dropped too).
    pub fn parse(headers: &HeaderMap) -> RequestDirectives {
        let mut d = RequestDirectives::default();
        for line in headers.get_all(CACHE_CONTROL) {
            let text = String::from_utf8_lossy(line.as_bytes());
            for dir in directives(&text) {
                match dir.name.as_str() {
                    "max-age" => first_delta(&mut d.max_age, &dir),
                    "min-fresh" => first_delta(&mut d.min_fresh, &dir),
                    "stale-if-error" => first_delta(&mut d.stale_if_error, &dir),
                    "max-stale" if d.max_stale.is_none() => {
                        d.max_stale = match (&dir.value, dir.malformed) {
                            (None, false) => Some(u64::MAX),
                            (Some(v), false) => delta_seconds(v),
                            _ => None,
                        };
                    }
                    "no-cache" => d.no_cache = true,
                    "no-store" => d.no_store = true,
                    "only-if-cached" => d.only_if_cached = true,
                    _ => {}
                }
            }
        }
        d
    }
}

/// One directive as written: a lower-case name and its argument (quotes removed).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Directive {
    name: String,
    value: Option<String>,
    /// The directive did not follow `token [ "=" ( token / quoted-string ) ]` (e.g. white
    /// space around `=`, an unterminated quote, junk after the value).
    malformed: bool,
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Splits one field value into directives (RFC 9110 §5.6.1 lists, §5.6.4 quoted strings).
fn directives(s: &str) -> Vec<Directive> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let n = chars.len();
    while i < n {
        // Skip list separators and white space (empty list elements are tolerated).
        while i < n && (is_ows(chars[i]) || chars[i] == ',') {
            i += 1;
        }
        if i >= n {
            break;
        }
        let start = i;
        while i < n && is_tchar(chars[i]) {
            i += 1;
        }
        let name: String = chars[start..i]
            .iter()
            .collect::<String>()
            .to_ascii_lowercase();
        let mut malformed = name.is_empty();
        let mut value = None;
        if i < n && chars[i] == '=' {
            i += 1;
            if i < n && chars[i] == '"' {
                i += 1;
                let mut v = String::new();
                let mut closed = false;
                while i < n {
                    match chars[i] {
                        '\\' if i + 1 < n => {
                            v.push(chars[i + 1]);
                            i += 2;
                        }
                        '"' => {
                            closed = true;
                            i += 1;
                            break;
                        }
                        c => {
                            v.push(c);
                            i += 1;
                        }
                    }
                }
                malformed |= !closed;
                value = Some(v);
            } else {
                let vstart = i;
                while i < n && is_tchar(chars[i]) {
                    i += 1;
                }
                let v: String = chars[vstart..i].iter().collect();
                malformed |= v.is_empty();
                value = Some(v);
            }
        }
        // After the directive only white space and a comma may follow.
        while i < n && is_ows(chars[i]) {
            i += 1;
        }
        if i < n && chars[i] != ',' {
            malformed = true;
            // Skip to the next comma outside a quoted string.
            let mut quoted = false;
            while i < n {
                match chars[i] {
                    '\\' if quoted => i += 1,
                    '"' => quoted = !quoted,
                    ',' if !quoted => break,
                    _ => {}
                }
                i += 1;
            }
        }
        if !name.is_empty() {
            out.push(Directive {
                name,
                value,
                malformed,
            });
        }
    }
    out
}

/// `delta-seconds = 1*DIGIT`, saturating at 2^31 (RFC 9111 §1.2.2). Leading zeros are fine;
/// signs, decimals and anything else are not.
pub fn delta_seconds(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = v.trim_start_matches('0');
    if digits.len() > 10 {
        return Some(DELTA_SECONDS_MAX);
    }
    let n: u64 = digits.parse().unwrap_or(0);
    Some(n.min(DELTA_SECONDS_MAX))
}

fn directive_seconds(dir: &Directive) -> Option<u64> {
    if dir.malformed {
        return None;
    }
    dir.value.as_deref().and_then(delta_seconds)
}

/// A freshness directive (`max-age`, `s-maxage`): a malformed value or a second, different
/// value makes the response stale (RFC 9111 §4.2.1); the first valid value is kept.
fn set_delta_once(slot: &mut Option<u64>, dir: &Directive, invalid: &mut bool) {
    match directive_seconds(dir) {
        None => *invalid = true,
        Some(v) => match slot {
            None => *slot = Some(v),
            Some(old) if *old != v => *invalid = true,
            Some(_) => {}
        },
    }
}

/// A non-freshness delta directive: the first valid value counts, malformed ones are ignored.
fn first_delta(slot: &mut Option<u64>, dir: &Directive) {
    if slot.is_none() {
        *slot = directive_seconds(dir);
    }
}

/// The field names of a qualified `no-cache` / `private`, lower-cased.
fn field_names(v: &str) -> impl Iterator<Item = String> + '_ {
    v.split(',')
        .map(|f| f.trim().to_ascii_lowercase())
        .filter(|f| !f.is_empty() && f.chars().all(is_tchar))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(name: &str, lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(l).unwrap(),
            );
        }
        h
    }

    fn cc(lines: &[&str]) -> ResponseDirectives {
        ResponseDirectives::from_cache_control(&headers("cache-control", lines))
    }

    fn cdn(lines: &[&str]) -> Option<ResponseDirectives> {
        ResponseDirectives::from_cdn_cache_control(&headers(CDN_CACHE_CONTROL, lines))
    }

    #[test]
    fn response_max_age_forms() {
        // (case, lines, max_age, invalid_freshness)
        let rows: &[(&str, &[&str], Option<u64>, bool)] = &[
            ("plain", &["max-age=3600"], Some(3600), false),
            ("quoted", &["max-age=\"3600\""], Some(3600), false),
            ("leading zeros", &["max-age=003600"], Some(3600), false),
            (
                "case-insensitive name",
                &["MaX-AgE=3600"],
                Some(3600),
                false,
            ),
            (
                "extension before",
                &["foobar, max-age=3600"],
                Some(3600),
                false,
            ),
            ("zero", &["max-age=0"], Some(0), false),
            ("2^31 - 1", &["max-age=2147483647"], Some(2147483647), false),
            (
                "2^31 + 1 saturates",
                &["max-age=2147483649"],
                Some(DELTA_SECONDS_MAX),
                false,
            ),
            (
                "huge saturates",
                &["max-age=99999999999999999999999"],
                Some(DELTA_SECONDS_MAX),
                false,
            ),
            ("negative", &["max-age=-3600"], None, true),
            ("leading alpha", &["max-age=a3600"], None, true),
            ("trailing alpha", &["max-age=3600a"], None, true),
            ("decimal", &["max-age=3600.0"], None, true),
            ("single-quoted", &["max-age='3600'"], None, true),
            ("space before =", &["max-age =3600"], None, true),
            ("space after =", &["max-age= 3600"], None, true),
            ("no value", &["max-age"], None, true),
            ("empty quoted", &["max-age=\"\""], None, true),
            (
                "in a quoted string",
                &["extension=\"max-age=3600\", max-age=1"],
                Some(1),
                false,
            ),
            (
                "in a quoted string after",
                &["max-age=1, extension=\"max-age=3600\""],
                Some(1),
                false,
            ),
            (
                "quoted comma",
                &["x=\"a, max-age=5\", max-age=1"],
                Some(1),
                false,
            ),
            (
                "escaped quote",
                &["x=\"a\\\", max-age=5\", max-age=1"],
                Some(1),
                false,
            ),
            ("same twice", &["max-age=5, max-age=5"], Some(5), false),
            (
                "conflict same line",
                &["max-age=1800, max-age=1"],
                Some(1800),
                true,
            ),
            (
                "conflict two lines",
                &["max-age=1", "max-age=1800"],
                Some(1),
                true,
            ),
            ("absent", &["public"], None, false),
            ("unterminated quote", &["max-age=\"3600"], None, true),
        ];
        for (case, lines, max_age, invalid) in rows {
            let d = cc(lines);
            assert_eq!(d.max_age, *max_age, "{case}");
            assert_eq!(d.invalid_freshness, *invalid, "{case}");
        }
    }

    #[test]
    fn response_flags_and_lists() {
        let d = cc(&[
            "No-StOrE, PUBLIC",
            "must-revalidate, proxy-revalidate, must-understand",
        ]);
        assert!(d.no_store && d.public && d.must_revalidate && d.proxy_revalidate);
        assert!(d.must_understand);
        let d = cc(&["no-cache=\"Set-Cookie, X-Foo\", max-age=3600"]);
        assert!(d.no_cache);
        assert_eq!(d.no_cache_fields, vec!["set-cookie", "x-foo"]);
        assert_eq!(d.max_age, Some(3600));
        let d = cc(&["no-cache=\"a\"", "no-cache"]);
        assert!(d.no_cache && d.no_cache_fields.is_empty(), "bare wins");
        let d = cc(&["private=a"]);
        assert!(d.private);
        assert_eq!(d.private_fields, vec!["a"]);
        let d = cc(&["private"]);
        assert!(d.private && d.private_fields.is_empty());
        let d = cc(&["s-maxage=10, stale-while-revalidate=30, stale-if-error=\"60\", immutable"]);
        assert_eq!(d.s_maxage, Some(10));
        assert_eq!(d.stale_while_revalidate, Some(30));
        assert_eq!(d.stale_if_error, Some(60));
        assert!(d.immutable);
        let d = cc(&["stale-while-revalidate=abc"]);
        assert_eq!(d.stale_while_revalidate, None);
        assert!(!d.invalid_freshness, "swr is not a freshness directive");
        assert_eq!(cc(&[]), ResponseDirectives::default());
        assert_eq!(cc(&[",,, ,"]), ResponseDirectives::default());
    }

    #[test]
    fn cdn_cache_control() {
        // (case, lines, expected max_age or None when the field is ignored entirely)
        type Row<'a> = (&'a str, &'a [&'a str], Option<Option<u64>>);
        let rows: &[Row] = &[
            ("plain", &["max-age=3600"], Some(Some(3600))),
            (
                "huge",
                &["max-age=99999999999"],
                Some(Some(DELTA_SECONDS_MAX)),
            ),
            ("extension", &["foobar, max-age=3600"], Some(Some(3600))),
            ("two lines", &["no-store", "max-age=5"], Some(Some(5))),
            (
                "wrong type is ignored alone",
                &["max-age=\"10000\""],
                Some(None),
            ),
            ("negative is ignored alone", &["max-age=-1"], Some(None)),
            (
                "unknown token is a parse error",
                &["max-age=10000, &&&&&"],
                None,
            ),
            ("upper case key is a parse error", &["MaX-aGe=3600"], None),
            ("space before =", &["max-age =100"], None),
            ("space after =", &["max-age= 100"], None),
            ("absent", &[], None),
            ("empty", &[""], None),
        ];
        for (case, lines, expect) in rows {
            assert_eq!(cdn(lines).map(|d| d.max_age), *expect, "{case}");
        }
        let d = cdn(&["no-store, private, no-cache=\"a, b\", must-revalidate"]).unwrap();
        assert!(d.no_store && d.private && d.private_fields.is_empty() && d.must_revalidate);
        assert!(d.no_cache);
        assert_eq!(d.no_cache_fields, vec!["a", "b"]);
        let d = cdn(&["no-store=?0, public=1"]).unwrap();
        assert!(!d.no_store && !d.public);
    }

    #[test]
    fn request_directives() {
        let rq = |lines: &[&str]| RequestDirectives::parse(&headers("cache-control", lines));
        let d = rq(&["max-age=0, no-cache", "min-fresh=\"10\", ONLY-IF-CACHED"]);
        assert_eq!(d.max_age, Some(0));
        assert_eq!(d.min_fresh, Some(10));
        assert!(d.no_cache && d.only_if_cached && !d.no_store);
        assert_eq!(rq(&["max-stale"]).max_stale, Some(u64::MAX));
        assert_eq!(rq(&["max-stale=100"]).max_stale, Some(100));
        assert_eq!(rq(&["max-stale=abc"]).max_stale, None);
        assert_eq!(rq(&["max-age=abc"]).max_age, None);
        assert_eq!(
            rq(&["stale-if-error=30, no-store"]).stale_if_error,
            Some(30)
        );
        assert!(rq(&["no-store"]).no_store);
        assert_eq!(rq(&[]), RequestDirectives::default());
    }

    #[test]
    fn never_panics_on_odd_bytes() {
        let mut h = HeaderMap::new();
        for raw in [
            &b"max-age=\xff\xfe"[..],
            b"\"",
            b"=",
            b"==,,=\"\\",
            b"max-age=\"\\",
            b"no-cache=\"",
        ] {
            h.append(CACHE_CONTROL, HeaderValue::from_bytes(raw).unwrap());
            h.append(CDN_CACHE_CONTROL, HeaderValue::from_bytes(raw).unwrap());
        }
        let _ = ResponseDirectives::from_cache_control(&h);
        let _ = ResponseDirectives::from_cdn_cache_control(&h);
        let _ = RequestDirectives::parse(&h);
    }
}
