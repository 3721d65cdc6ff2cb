//! Conditional and range requests answered from a stored response (RFC 9110 §13, §14).
//!
//! This module owns precondition evaluation (If-Match, If-Unmodified-Since, If-None-Match,
//! If-Modified-Since, in the order of RFC 9110 §13.2.2), entity-tag comparison, which
//! fields a 304 carries, and the reading of `Range` / `If-Range` against a stored full
//! response. It never builds bodies or multipart payloads (the proxy does), never touches
//! the store, and never panics on what a viewer sent: anything it cannot read is ignored,
//! as the RFC asks.
//!
//! Decisions where the RFC leaves a choice:
//! - Entity tags are compared leniently about quoting (`abcdef` matches `"abcdef"`) and the
//!   weakness prefix's case (`w/`); strong comparison still requires both tags strong.
//! - If-Modified-Since with no stored Last-Modified is evaluated against the stored Date
//!   (RFC 9111 §4.3.2).
//! - A 304 carries Cache-Control, CDN-Cache-Control, Content-Location, Date, ETag, Expires
//!   and Vary, plus Last-Modified when there is no ETag (RFC 9110 §15.4.5).
//! - Range: `bytes` only; a malformed Range, several Range lines, or more than
//!   [`MAX_RANGES`] ranges are ignored (200). Overlapping or adjacent ranges are coalesced
//!   and sorted. If-Range with a date matches only a strong Last-Modified (one at least a
//!   second before the stored Date, RFC 9110 §8.8.2.2) that equals it exactly.

use super::freshness::http_date;
use http::header::{
    DATE, ETAG, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE,
    LAST_MODIFIED, RANGE,
};
use http::{HeaderMap, HeaderName, Method, StatusCode};

/// The most ranges one request may ask for before strata ignores its Range and sends the
/// whole response (a defence against many-small-ranges abuse, RFC 9110 §14.2).
pub const MAX_RANGES: usize = 16;

/// The outcome of evaluating a request's preconditions against a stored response
/// (RFC 9110 §13.2.2 order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// No precondition, or all passed: serve the response.
    Proceed,
    /// 304 Not Modified (If-None-Match / If-Modified-Since on GET or HEAD).
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// An entity tag as read leniently from a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EntityTag<'a> {
    weak: bool,
    opaque: &'a str,
}

impl<'a> EntityTag<'a> {
    fn parse(s: &'a str) -> Option<EntityTag<'a>> {
        let s = s.trim();
        let (weak, rest) = match s.get(..2) {
            Some(p) if p.eq_ignore_ascii_case("w/") => (true, &s[2..]),
            _ => (false, s),
        };
        let opaque = rest
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .unwrap_or(rest);
        if opaque.is_empty() && rest.is_empty() {
            return None;
        }
        Some(EntityTag { weak, opaque })
    }

    fn strong_eq(&self, other: &EntityTag<'_>) -> bool {
        !self.weak && !other.weak && self.opaque == other.opaque
    }

    fn weak_eq(&self, other: &EntityTag<'_>) -> bool {
        self.opaque == other.opaque
    }
}

/// The members of an If-Match / If-None-Match (all lines): `None` for `*`.
fn tag_list(h: &HeaderMap, name: &HeaderName) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for line in h.get_all(name) {
        let text = String::from_utf8_lossy(line.as_bytes());
        for member in split_quoted(&text) {
            if member == "*" {
                return None;
            }
            out.push(member);
        }
    }
    Some(out)
}

/// Splits a list on commas outside double quotes, trimming and dropping empty members.
fn split_quoted(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => {
                let m = cur.trim();
                if !m.is_empty() {
                    out.push(m.to_string());
                }
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    let m = cur.trim();
    if !m.is_empty() {
        out.push(m.to_string());
    }
    out
}

fn stored_etag(stored: &HeaderMap) -> Option<String> {
    stored
        .get(ETAG)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// A date field present exactly once and valid.
fn single_date(h: &HeaderMap, name: &HeaderName) -> Option<u64> {
    let mut values = h.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    http_date(&String::from_utf8_lossy(first.as_bytes()), None)
}

/// Evaluates If-Match, If-Unmodified-Since, If-None-Match and If-Modified-Since.
///
/// `status` is the stored response's: preconditions apply only to 2xx responses
/// (RFC 9110 §13.2.1), otherwise the answer is `Proceed`.
pub fn evaluate(
    method: &Method,
    req: &HeaderMap,
    status: StatusCode,
    stored: &HeaderMap,
) -> Precondition {
    if !status.is_success() {
        return Precondition::Proceed;
    }
    let etag_text = stored_etag(stored);
    let etag = etag_text.as_deref().and_then(EntityTag::parse);
    let get_or_head = *method == Method::GET || *method == Method::HEAD;

    // 1. If-Match (strong comparison), else 2. If-Unmodified-Since.
    if req.contains_key(IF_MATCH) {
        let pass = match tag_list(req, &IF_MATCH) {
            None => true, // `*`: a current representation exists (we hold it)
            Some(tags) => etag.is_some_and(|e| {
                tags.iter()
                    .filter_map(|t| EntityTag::parse(t))
                    .any(|t| t.strong_eq(&e))
            }),
        };
        if !pass {
            return Precondition::Failed;
        }
    } else if let (Some(since), Some(lm)) = (
        single_date(req, &IF_UNMODIFIED_SINCE),
        single_date(stored, &LAST_MODIFIED),
    ) {
        if lm > since {
            return Precondition::Failed;
        }
    }

    // 3. If-None-Match (weak comparison), else 4. If-Modified-Since.
    if req.contains_key(IF_NONE_MATCH) {
        let matched = match tag_list(req, &IF_NONE_MATCH) {
            None => true,
            Some(tags) => etag.is_some_and(|e| {
                tags.iter()
                    .filter_map(|t| EntityTag::parse(t))
                    .any(|t| t.weak_eq(&e))
            }),
        };
        if matched {
            return if get_or_head {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if get_or_head {
        if let Some(since) = single_date(req, &IF_MODIFIED_SINCE) {
            let modified =
                single_date(stored, &LAST_MODIFIED).or_else(|| single_date(stored, &DATE));
            if modified.is_some_and(|m| m <= since) {
                return Precondition::NotModified;
            }
        }
    }
    Precondition::Proceed
}

/// The fields a 304 repeats from the stored response.
const NOT_MODIFIED_FIELDS: &[&str] = &[
    "cache-control",
    "cdn-cache-control",
    "content-location",
    "date",
    "etag",
    "expires",
    "vary",
];

/// The headers a 304 carries, taken from the stored response (RFC 9110 §15.4.5).
pub fn not_modified_headers(stored: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in NOT_MODIFIED_FIELDS {
        for v in stored.get_all(*name) {
            if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
                out.append(n, v.clone());
            }
        }
    }
    if !stored.contains_key(ETAG) {
        for v in stored.get_all(LAST_MODIFIED) {
            out.append(LAST_MODIFIED, v.clone());
        }
    }
    out
}

/// What to send for a Range request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeAnswer {
    /// Ignore Range (absent, not bytes, If-Range failed, or not worth it): send 200 whole.
    Full,
    /// 206 with these inclusive byte ranges (one range: a plain 206; several: multipart).
    Partial(Vec<(u64, u64)>),
    /// 416 Range Not Satisfiable.
    Unsatisfiable,
}

/// One `byte-range-spec` or `suffix-byte-range-spec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeSpec {
    /// `first-last` or `first-` (last = None).
    From(u64, Option<u64>),
    /// `-n`: the last n bytes.
    Suffix(u64),
}

fn parse_u64_saturating(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u64>().unwrap_or(u64::MAX))
}

/// Parses a `Range` value; `None` when it is not a well-formed `bytes` range set.
fn parse_range(value: &str) -> Option<Vec<RangeSpec>> {
    let (unit, set) = value.split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = Vec::new();
    for part in set.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (first, last) = part.split_once('-')?;
        let (first, last) = (first.trim(), last.trim());
        if first.is_empty() {
            specs.push(RangeSpec::Suffix(parse_u64_saturating(last)?));
        } else {
            let f = parse_u64_saturating(first)?;
            let l = if last.is_empty() {
                None
            } else {
                Some(parse_u64_saturating(last)?)
            };
            if l.is_some_and(|l| l < f) {
                return None; // RFC 9110 §14.1.1: invalid
            }
            specs.push(RangeSpec::From(f, l));
        }
        if specs.len() > MAX_RANGES {
            return Some(specs); // the caller rejects; stop reading
        }
    }
    if specs.is_empty() {
        None
    } else {
        Some(specs)
    }
}

/// Whether If-Range (if any) lets the Range apply to the stored response.
fn if_range_allows(req: &HeaderMap, stored: &HeaderMap) -> bool {
    let mut lines = req.get_all(IF_RANGE).iter();
    let Some(first) = lines.next() else {
        return true;
    };
    if lines.next().is_some() {
        return false;
    }
    let text = String::from_utf8_lossy(first.as_bytes());
    let text = text.trim();
    let looks_like_tag =
        text.starts_with('"') || text.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("w/"));
    if looks_like_tag {
        let (Some(want), Some(have_text)) = (EntityTag::parse(text), stored_etag(stored)) else {
            return false;
        };
        return EntityTag::parse(&have_text).is_some_and(|have| want.strong_eq(&have));
    }
    let (Some(when), Some(lm)) = (http_date(text, None), single_date(stored, &LAST_MODIFIED))
    else {
        return false;
    };
    // A Last-Modified is strong only if it is at least a second before the Date.
    let strong = single_date(stored, &DATE).is_some_and(|d| d >= lm.saturating_add(1000));
    strong && when == lm
}

/// Decides how to answer `Range` (and `If-Range`) for a stored 200 response of `len` bytes.
pub fn range(req: &HeaderMap, stored: &HeaderMap, len: u64) -> RangeAnswer {
    let mut lines = req.get_all(RANGE).iter();
    let Some(first) = lines.next() else {
        return RangeAnswer::Full;
    };
    if lines.next().is_some() || len == 0 {
        return RangeAnswer::Full;
    }
    let Ok(text) = first.to_str() else {
        return RangeAnswer::Full;
    };
    let Some(specs) = parse_range(text) else {
        return RangeAnswer::Full;
    };
    if specs.len() > MAX_RANGES || !if_range_allows(req, stored) {
        return RangeAnswer::Full;
    }
    let last = len - 1;
    let mut ranges: Vec<(u64, u64)> = specs
        .iter()
        .filter_map(|s| match *s {
            RangeSpec::From(f, _) if f > last => None,
            RangeSpec::From(f, l) => Some((f, l.map_or(last, |l| l.min(last)))),
            RangeSpec::Suffix(0) => None,
            RangeSpec::Suffix(n) => Some((len - n.min(len), last)),
        })
        .collect();
    if ranges.is_empty() {
        return RangeAnswer::Unsatisfiable;
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        match merged.last_mut() {
            Some((_, me)) if s <= me.saturating_add(1) => *me = (*me).max(e),
            _ => merged.push((s, e)),
        }
    }
    RangeAnswer::Partial(merged)
}

/// The `Content-Range` value of one part of a 206.
pub fn content_range(range: (u64, u64), len: u64) -> String {
    format!("bytes {}-{}/{len}", range.0, range.1)
}

/// The `Content-Range` value of a 416.
pub fn unsatisfied_content_range(len: u64) -> String {
    format!("bytes */{len}")
}

#[cfg(test)]
#[allow(clippy::type_complexity)] // the test tables are tuples, one row per case
mod tests {
    use super::*;
    use http::HeaderValue;
    use Precondition::*;

    const LM: &str = "Wed, 01 Jan 2020 00:00:00 GMT";
    const BEFORE: &str = "Tue, 31 Dec 2019 00:00:00 GMT";
    const AFTER: &str = "Thu, 02 Jan 2020 00:00:00 GMT";
    const DATE: &str = "Fri, 03 Jan 2020 00:00:00 GMT";

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

    #[test]
    fn preconditions() {
        let strong = h(&[
            ("etag", "\"abcdef\""),
            ("last-modified", LM),
            ("date", DATE),
        ]);
        let weak = h(&[("etag", "W/\"abcdef\""), ("last-modified", LM)]);
        let unquoted = h(&[("etag", "abcdef")]);
        let lm_only = h(&[("last-modified", LM)]);
        let date_only = h(&[("date", LM)]);
        let nothing = HeaderMap::new();
        let comma = h(&[("etag", "\"a,b\"")]);
        let post = Method::POST;
        let get = Method::GET;
        let head = Method::HEAD;
        // (case, method, request headers, stored headers, expected)
        let rows: Vec<(&str, &Method, Vec<(&str, &str)>, &HeaderMap, Precondition)> = vec![
            ("no conditions", &get, vec![], &strong, Proceed),
            (
                "inm strong match",
                &get,
                vec![("if-none-match", "\"abcdef\"")],
                &strong,
                NotModified,
            ),
            (
                "inm on HEAD",
                &head,
                vec![("if-none-match", "\"abcdef\"")],
                &strong,
                NotModified,
            ),
            (
                "inm weak vs strong",
                &get,
                vec![("if-none-match", "W/\"abcdef\"")],
                &strong,
                NotModified,
            ),
            (
                "inm weak match",
                &get,
                vec![("if-none-match", "W/\"abcdef\"")],
                &weak,
                NotModified,
            ),
            (
                "inm lowercase w",
                &get,
                vec![("if-none-match", "w/\"abcdef\"")],
                &weak,
                NotModified,
            ),
            (
                "inm no match",
                &get,
                vec![("if-none-match", "\"other\"")],
                &strong,
                Proceed,
            ),
            (
                "inm list first",
                &get,
                vec![("if-none-match", "\"abcdef\", \"1234\", \"5678\"")],
                &strong,
                NotModified,
            ),
            (
                "inm list middle",
                &get,
                vec![("if-none-match", "\"1234\", \"abcdef\", \"5678\"")],
                &strong,
                NotModified,
            ),
            (
                "inm list last",
                &get,
                vec![("if-none-match", "\"1234\",\"5678\",\"abcdef\"")],
                &strong,
                NotModified,
            ),
            (
                "inm two lines",
                &get,
                vec![
                    ("if-none-match", "\"1234\""),
                    ("if-none-match", "\"abcdef\""),
                ],
                &strong,
                NotModified,
            ),
            (
                "inm comma inside tag",
                &get,
                vec![("if-none-match", "\"a,b\"")],
                &comma,
                NotModified,
            ),
            (
                "inm unquoted request",
                &get,
                vec![("if-none-match", "abcdef")],
                &strong,
                NotModified,
            ),
            (
                "inm unquoted stored",
                &get,
                vec![("if-none-match", "\"abcdef\"")],
                &unquoted,
                NotModified,
            ),
            (
                "inm star",
                &get,
                vec![("if-none-match", "*")],
                &nothing,
                NotModified,
            ),
            (
                "inm on POST fails",
                &post,
                vec![("if-none-match", "\"abcdef\"")],
                &strong,
                Failed,
            ),
            (
                "inm over ims",
                &get,
                vec![
                    ("if-none-match", "\"abcdef\""),
                    ("if-modified-since", BEFORE),
                ],
                &strong,
                NotModified,
            ),
            (
                "inm miss skips ims",
                &get,
                vec![("if-none-match", "\"x\""), ("if-modified-since", AFTER)],
                &strong,
                Proceed,
            ),
            (
                "ims equal",
                &get,
                vec![("if-modified-since", LM)],
                &lm_only,
                NotModified,
            ),
            (
                "ims later",
                &get,
                vec![("if-modified-since", AFTER)],
                &lm_only,
                NotModified,
            ),
            (
                "ims earlier",
                &get,
                vec![("if-modified-since", BEFORE)],
                &lm_only,
                Proceed,
            ),
            (
                "ims invalid",
                &get,
                vec![("if-modified-since", "yesterday")],
                &lm_only,
                Proceed,
            ),
            (
                "ims two lines",
                &get,
                vec![("if-modified-since", LM), ("if-modified-since", AFTER)],
                &lm_only,
                Proceed,
            ),
            (
                "ims on POST ignored",
                &post,
                vec![("if-modified-since", AFTER)],
                &lm_only,
                Proceed,
            ),
            (
                "ims against Date",
                &get,
                vec![("if-modified-since", AFTER)],
                &date_only,
                NotModified,
            ),
            (
                "ims with nothing stored",
                &get,
                vec![("if-modified-since", AFTER)],
                &nothing,
                Proceed,
            ),
            (
                "if-match strong",
                &get,
                vec![("if-match", "\"abcdef\"")],
                &strong,
                Proceed,
            ),
            (
                "if-match weak stored fails",
                &get,
                vec![("if-match", "W/\"abcdef\"")],
                &weak,
                Failed,
            ),
            (
                "if-match weak request fails",
                &get,
                vec![("if-match", "W/\"abcdef\"")],
                &strong,
                Failed,
            ),
            (
                "if-match miss",
                &get,
                vec![("if-match", "\"x\"")],
                &strong,
                Failed,
            ),
            (
                "if-match star",
                &get,
                vec![("if-match", "*")],
                &nothing,
                Proceed,
            ),
            (
                "if-match no etag",
                &get,
                vec![("if-match", "\"abcdef\"")],
                &nothing,
                Failed,
            ),
            (
                "ius ok",
                &get,
                vec![("if-unmodified-since", AFTER)],
                &lm_only,
                Proceed,
            ),
            (
                "ius fails",
                &get,
                vec![("if-unmodified-since", BEFORE)],
                &lm_only,
                Failed,
            ),
            (
                "ius ignored with if-match",
                &get,
                vec![("if-match", "\"abcdef\""), ("if-unmodified-since", BEFORE)],
                &strong,
                Proceed,
            ),
            (
                "ius invalid ignored",
                &get,
                vec![("if-unmodified-since", "0")],
                &lm_only,
                Proceed,
            ),
            (
                "if-match then inm",
                &get,
                vec![("if-match", "\"abcdef\""), ("if-none-match", "\"abcdef\"")],
                &strong,
                NotModified,
            ),
        ];
        for (case, method, req, stored, want) in rows {
            assert_eq!(
                evaluate(method, &h(&req), StatusCode::OK, stored),
                want,
                "{case}"
            );
        }
        // Preconditions do not apply to a stored non-2xx response.
        let req = h(&[("if-none-match", "\"abcdef\"")]);
        assert_eq!(
            evaluate(&get, &req, StatusCode::NOT_FOUND, &strong),
            Proceed
        );
    }

    #[test]
    fn headers_of_a_304() {
        let stored = h(&[
            ("cache-control", "max-age=60"),
            ("cdn-cache-control", "max-age=600"),
            ("content-location", "/a"),
            ("date", DATE),
            ("etag", "\"x\""),
            ("expires", AFTER),
            ("vary", "accept"),
            ("vary", "accept-language"),
            ("last-modified", LM),
            ("content-type", "text/plain"),
            ("content-length", "10"),
            ("x-custom", "1"),
        ]);
        let out = not_modified_headers(&stored);
        // (case, field, expected count)
        let rows: &[(&str, &str, usize)] = &[
            ("cache-control", "cache-control", 1),
            ("cdn-cache-control", "cdn-cache-control", 1),
            ("content-location", "content-location", 1),
            ("date", "date", 1),
            ("etag", "etag", 1),
            ("expires", "expires", 1),
            ("both vary lines", "vary", 2),
            ("no last-modified beside an etag", "last-modified", 0),
            ("no content-type", "content-type", 0),
            ("no content-length", "content-length", 0),
            ("no other fields", "x-custom", 0),
        ];
        for (case, field, n) in rows {
            assert_eq!(out.get_all(*field).iter().count(), *n, "{case}");
        }
        let out = not_modified_headers(&h(&[("last-modified", LM)]));
        assert_eq!(
            out.get(LAST_MODIFIED).unwrap(),
            LM,
            "last-modified without etag"
        );
    }

    #[test]
    fn ranges() {
        use RangeAnswer::*;
        let stored = h(&[("etag", "\"abc\""), ("last-modified", LM), ("date", DATE)]);
        let weak = h(&[("etag", "W/\"abc\"")]);
        let lm_not_strong = h(&[("last-modified", LM), ("date", LM)]);
        let many: String = format!(
            "bytes={}",
            (0..17)
                .map(|i| format!("{}-{}", i * 4, i * 4))
                .collect::<Vec<_>>()
                .join(",")
        );
        let sixteen: String = format!(
            "bytes={}",
            (0..16)
                .map(|i| format!("{}-{}", i * 4, i * 4))
                .collect::<Vec<_>>()
                .join(",")
        );
        // (case, request headers, stored headers, length, expected)
        let rows: Vec<(&str, Vec<(&str, &str)>, &HeaderMap, u64, RangeAnswer)> = vec![
            ("no range", vec![], &stored, 10, Full),
            (
                "first-last",
                vec![("range", "bytes=0-1")],
                &stored,
                11,
                Partial(vec![(0, 1)]),
            ),
            (
                "open end",
                vec![("range", "bytes=1-")],
                &stored,
                11,
                Partial(vec![(1, 10)]),
            ),
            (
                "suffix",
                vec![("range", "bytes=-1")],
                &stored,
                11,
                Partial(vec![(10, 10)]),
            ),
            (
                "suffix longer than body",
                vec![("range", "bytes=-100")],
                &stored,
                11,
                Partial(vec![(0, 10)]),
            ),
            (
                "last beyond end",
                vec![("range", "bytes=5-100")],
                &stored,
                11,
                Partial(vec![(5, 10)]),
            ),
            (
                "unit case",
                vec![("range", "BYTES=0-0")],
                &stored,
                11,
                Partial(vec![(0, 0)]),
            ),
            (
                "spaces",
                vec![("range", "bytes= 0-1 , 4-5")],
                &stored,
                11,
                Partial(vec![(0, 1), (4, 5)]),
            ),
            (
                "several sorted",
                vec![("range", "bytes=6-7,0-1")],
                &stored,
                11,
                Partial(vec![(0, 1), (6, 7)]),
            ),
            (
                "overlap coalesced",
                vec![("range", "bytes=0-5,3-8")],
                &stored,
                11,
                Partial(vec![(0, 8)]),
            ),
            (
                "adjacent coalesced",
                vec![("range", "bytes=0-4,5-8")],
                &stored,
                11,
                Partial(vec![(0, 8)]),
            ),
            (
                "suffix overlapping coalesced",
                vec![("range", "bytes=0-9,-3")],
                &stored,
                11,
                Partial(vec![(0, 10)]),
            ),
            (
                "one unsatisfiable among others",
                vec![("range", "bytes=50-60,0-1")],
                &stored,
                11,
                Partial(vec![(0, 1)]),
            ),
            (
                "start beyond end",
                vec![("range", "bytes=11-")],
                &stored,
                11,
                Unsatisfiable,
            ),
            (
                "suffix zero",
                vec![("range", "bytes=-0")],
                &stored,
                11,
                Unsatisfiable,
            ),
            (
                "huge numbers",
                vec![("range", "bytes=99999999999999999999999-")],
                &stored,
                11,
                Unsatisfiable,
            ),
            (
                "huge last",
                vec![("range", "bytes=2-99999999999999999999999")],
                &stored,
                11,
                Partial(vec![(2, 10)]),
            ),
            ("empty body", vec![("range", "bytes=0-1")], &stored, 0, Full),
            (
                "other unit",
                vec![("range", "items=0-1")],
                &stored,
                11,
                Full,
            ),
            (
                "last before first",
                vec![("range", "bytes=5-1")],
                &stored,
                11,
                Full,
            ),
            ("garbage", vec![("range", "bytes=a-b")], &stored, 11, Full),
            ("no dash", vec![("range", "bytes=5")], &stored, 11, Full),
            ("no equals", vec![("range", "bytes 0-1")], &stored, 11, Full),
            (
                "only commas",
                vec![("range", "bytes=,,")],
                &stored,
                11,
                Full,
            ),
            ("negative", vec![("range", "bytes=--1")], &stored, 11, Full),
            (
                "two range lines",
                vec![("range", "bytes=0-1"), ("range", "bytes=2-3")],
                &stored,
                11,
                Full,
            ),
            (
                "sixteen ranges allowed",
                vec![("range", &sixteen)],
                &stored,
                100,
                Partial((0..16).map(|i| (i * 4, i * 4)).collect()),
            ),
            (
                "seventeen ranges ignored",
                vec![("range", &many)],
                &stored,
                100,
                Full,
            ),
            (
                "if-range etag match",
                vec![("range", "bytes=0-1"), ("if-range", "\"abc\"")],
                &stored,
                11,
                Partial(vec![(0, 1)]),
            ),
            (
                "if-range etag mismatch",
                vec![("range", "bytes=0-1"), ("if-range", "\"xyz\"")],
                &stored,
                11,
                Full,
            ),
            (
                "if-range weak tag",
                vec![("range", "bytes=0-1"), ("if-range", "W/\"abc\"")],
                &weak,
                11,
                Full,
            ),
            (
                "if-range vs weak stored",
                vec![("range", "bytes=0-1"), ("if-range", "\"abc\"")],
                &weak,
                11,
                Full,
            ),
            (
                "if-range date match",
                vec![("range", "bytes=0-1"), ("if-range", LM)],
                &stored,
                11,
                Partial(vec![(0, 1)]),
            ),
            (
                "if-range date mismatch",
                vec![("range", "bytes=0-1"), ("if-range", AFTER)],
                &stored,
                11,
                Full,
            ),
            (
                "if-range date, weak lm",
                vec![("range", "bytes=0-1"), ("if-range", LM)],
                &lm_not_strong,
                11,
                Full,
            ),
            (
                "if-range garbage",
                vec![("range", "bytes=0-1"), ("if-range", "whatever")],
                &stored,
                11,
                Full,
            ),
        ];
        for (case, req, stored, len, want) in rows {
            assert_eq!(range(&h(&req), stored, len), want, "{case}");
        }
        assert_eq!(content_range((0, 1), 11), "bytes 0-1/11");
        assert_eq!(unsatisfied_content_range(11), "bytes */11");
    }

    #[test]
    fn never_panics_on_odd_bytes() {
        let mut req = HeaderMap::new();
        for (n, raw) in [
            ("if-none-match", &b"\"\xff"[..]),
            ("if-match", b"W/"),
            ("if-modified-since", b"\xfe\xfe"),
            ("range", b"bytes=\xff-"),
            ("if-range", b"w"),
        ] {
            req.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_bytes(raw).unwrap(),
            );
        }
        let stored = h(&[("etag", "\"")]);
        let _ = evaluate(&Method::GET, &req, StatusCode::OK, &stored);
        let _ = range(&req, &stored, u64::MAX);
        let _ = range(
            &h(&[("range", "bytes=-18446744073709551615")]),
            &stored,
            u64::MAX,
        );
    }
}
