//! Conditional and range requests answered from a stored response (RFC 9110 §13, §14).

use http::{HeaderMap, Method, StatusCode};

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

/// Evaluates If-Match, If-Unmodified-Since, If-None-Match and If-Modified-Since.
pub fn evaluate(
    method: &Method,
    req: &HeaderMap,
    status: StatusCode,
    stored: &HeaderMap,
) -> Precondition {
    let _ = (method, req, status, stored);
    unimplemented!("policy helper implements this")
}

/// The headers a 304 carries, taken from the stored response (RFC 9110 §15.4.5).
pub fn not_modified_headers(stored: &HeaderMap) -> HeaderMap {
    let _ = stored;
    unimplemented!("policy helper implements this")
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

/// Decides how to answer `Range` (and `If-Range`) for a stored 200 response of `len` bytes.
pub fn range(req: &HeaderMap, stored: &HeaderMap, len: u64) -> RangeAnswer {
    let _ = (req, stored, len);
    unimplemented!("policy helper implements this")
}
