//! Building responses to viewers: from a stored object (with 304, 412, 206 and 416 answered
//! from it), from a fill still streaming in, and for errors. Every response gets this hop's
//! `Via`, `Cache-Status` member and `X-Cache`, then the behaviour's response headers policy.

use super::body::{ChunkStream, ProxyBody};
use super::hop::{CacheStatus, Outcome};
use super::{Ctx, Proxy};
use crate::coalesce::{Chunk, Fill, FillReader};
use crate::config::Behaviour;
use crate::policy::conditional::{self, Precondition, RangeAnswer};
use crate::store::{Body, BodyReader, Object, ObjectMeta};
use crate::upstream::BoxError;
use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT_RANGES, AGE, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE, VIA};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use std::sync::Arc;

const READ_CHUNK: usize = 256 * 1024;

impl Proxy {
    /// Answers from a stored object.
    pub(super) fn serve_object(
        &self,
        ctx: &Ctx,
        obj: Object,
        cs: CacheStatus,
        outcome: Outcome,
        now: u64,
    ) -> Response<ProxyBody> {
        let meta = &obj.meta;
        let age = meta.age_at(now) / 1000;
        match conditional::evaluate(
            &ctx.parts.method,
            &ctx.parts.headers,
            meta.status,
            &meta.headers,
        ) {
            Precondition::Proceed => {}
            Precondition::NotModified => {
                let mut h = conditional::not_modified_headers(&meta.headers);
                self.finish_headers(&mut h, Some(age), &cs, outcome, &ctx.behaviour);
                return with_head(StatusCode::NOT_MODIFIED, h, ProxyBody::Empty);
            }
            Precondition::Failed => {
                let mut h = HeaderMap::new();
                self.finish_headers(&mut h, None, &cs, outcome, &ctx.behaviour);
                return with_head(StatusCode::PRECONDITION_FAILED, h, ProxyBody::Empty);
            }
        }
        let len = obj.body.len();
        let mut h = meta.headers.clone();
        h.remove(http::header::TRANSFER_ENCODING);
        if meta.status == StatusCode::OK
            && ctx.parts.method == Method::GET
            && ctx.parts.headers.contains_key(RANGE)
        {
            match conditional::range(&ctx.parts.headers, &meta.headers, len) {
                RangeAnswer::Full => {}
                RangeAnswer::Unsatisfiable => {
                    let mut h = HeaderMap::new();
                    h.insert(CONTENT_RANGE, hv(&format!("bytes */{len}")));
                    self.finish_headers(&mut h, Some(age), &cs, outcome, &ctx.behaviour);
                    return with_head(StatusCode::RANGE_NOT_SATISFIABLE, h, ProxyBody::Empty);
                }
                RangeAnswer::Partial(ranges) if ranges.len() == 1 => {
                    let (start, end) = ranges[0];
                    h.insert(CONTENT_RANGE, hv(&format!("bytes {start}-{end}/{len}")));
                    h.insert(CONTENT_LENGTH, HeaderValue::from(end - start + 1));
                    self.finish_headers(&mut h, Some(age), &cs, outcome, &ctx.behaviour);
                    return with_head(
                        StatusCode::PARTIAL_CONTENT,
                        h,
                        body_slice(&obj.body, start, end + 1),
                    );
                }
                RangeAnswer::Partial(ranges) => {
                    let (h, body) = multipart(&obj, &ranges, len);
                    let mut h = h;
                    self.finish_headers(&mut h, Some(age), &cs, outcome, &ctx.behaviour);
                    return with_head(StatusCode::PARTIAL_CONTENT, h, body);
                }
            }
        }
        h.insert(CONTENT_LENGTH, HeaderValue::from(len));
        self.finish_headers(&mut h, Some(age), &cs, outcome, &ctx.behaviour);
        let body = if ctx.parts.method == Method::HEAD {
            ProxyBody::Empty
        } else {
            body_slice(&obj.body, 0, len)
        };
        with_head(meta.status, h, body)
    }

    /// Answers from a fill whose body is still arriving.
    pub(super) fn serve_fill(
        &self,
        ctx: &Ctx,
        meta: &Arc<ObjectMeta>,
        fill: &Arc<Fill>,
        cs: CacheStatus,
        outcome: Outcome,
    ) -> Response<ProxyBody> {
        let age = (meta.initial_age > 0).then_some(meta.initial_age / 1000);
        match conditional::evaluate(
            &ctx.parts.method,
            &ctx.parts.headers,
            meta.status,
            &meta.headers,
        ) {
            Precondition::Proceed => {}
            Precondition::NotModified if cs.stored || cs.fwd_status == Some(200) => {
                let mut h = conditional::not_modified_headers(&meta.headers);
                self.finish_headers(&mut h, age, &cs, outcome, &ctx.behaviour);
                return with_head(StatusCode::NOT_MODIFIED, h, ProxyBody::Empty);
            }
            Precondition::Failed => {
                let mut h = HeaderMap::new();
                self.finish_headers(&mut h, None, &cs, outcome, &ctx.behaviour);
                return with_head(StatusCode::PRECONDITION_FAILED, h, ProxyBody::Empty);
            }
            Precondition::NotModified => {}
        }
        let mut h = meta.headers.clone();
        let len = (meta.body_len != u64::MAX).then_some(meta.body_len);
        if let (Some(len), true) = (
            len,
            meta.status == StatusCode::OK
                && ctx.parts.method == Method::GET
                && ctx.parts.headers.contains_key(RANGE),
        ) {
            match conditional::range(&ctx.parts.headers, &meta.headers, len) {
                RangeAnswer::Unsatisfiable => {
                    let mut h = HeaderMap::new();
                    h.insert(CONTENT_RANGE, hv(&format!("bytes */{len}")));
                    self.finish_headers(&mut h, age, &cs, outcome, &ctx.behaviour);
                    return with_head(StatusCode::RANGE_NOT_SATISFIABLE, h, ProxyBody::Empty);
                }
                RangeAnswer::Partial(ranges) if ranges.len() == 1 => {
                    let (start, end) = ranges[0];
                    h.insert(CONTENT_RANGE, hv(&format!("bytes {start}-{end}/{len}")));
                    h.insert(CONTENT_LENGTH, HeaderValue::from(end - start + 1));
                    self.finish_headers(&mut h, age, &cs, outcome, &ctx.behaviour);
                    let body = ProxyBody::Stream(
                        fill_stream(fill.reader(), start, end + 1),
                        Some(end - start + 1),
                    );
                    return with_head(StatusCode::PARTIAL_CONTENT, h, body);
                }
                _ => {}
            }
        }
        self.finish_headers(&mut h, age, &cs, outcome, &ctx.behaviour);
        let body = match ctx.parts.method {
            Method::HEAD => ProxyBody::Empty,
            _ => ProxyBody::Stream(fill_stream(fill.reader(), 0, u64::MAX), len),
        };
        with_head(meta.status, h, body)
    }

    /// A short plain-text error response.
    pub(super) fn error(
        &self,
        status: StatusCode,
        message: &str,
        cs: CacheStatus,
        behaviour: Option<&Behaviour>,
    ) -> Response<ProxyBody> {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        let body = Bytes::from(format!(
            "{} {}: {}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            message
        ));
        h.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        match behaviour {
            Some(b) => self.finish_headers(&mut h, None, &cs, super::Outcome::Error, b),
            None => self.hop_headers(&mut h, &cs, super::Outcome::Error),
        }
        with_head(status, h, ProxyBody::full(body))
    }

    /// Adds Age, this hop's Via, Cache-Status and X-Cache, then applies the behaviour's
    /// response headers policy.
    pub(super) fn finish_headers(
        &self,
        h: &mut HeaderMap,
        age: Option<u64>,
        cs: &CacheStatus,
        outcome: Outcome,
        b: &Behaviour,
    ) {
        if let Some(a) = age {
            h.insert(AGE, HeaderValue::from(a));
        }
        self.hop_headers(h, cs, outcome);
        if !b.response_headers.is_empty() {
            b.response_headers.apply(h);
        }
    }

    fn hop_headers(&self, h: &mut HeaderMap, cs: &CacheStatus, outcome: Outcome) {
        append_list(h, VIA, &self.via);
        append_list(
            h,
            HeaderName::from_static("cache-status"),
            &hv(&cs.render(&self.node_id)),
        );
        h.insert(
            HeaderName::from_static("x-cache"),
            HeaderValue::from_static(outcome.x_cache()),
        );
    }
}

/// Appends `value` to a list-valued field, as one combined line.
fn append_list(h: &mut HeaderMap, name: HeaderName, value: &HeaderValue) {
    let existing: Vec<&[u8]> = h.get_all(&name).iter().map(|v| v.as_bytes()).collect();
    if existing.is_empty() {
        h.insert(name, value.clone());
        return;
    }
    let mut joined = Vec::with_capacity(64);
    for e in existing {
        joined.extend_from_slice(e);
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(value.as_bytes());
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        h.insert(name, v);
    }
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""))
}

fn with_head(status: StatusCode, headers: HeaderMap, body: ProxyBody) -> Response<ProxyBody> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// Bytes `[start, end)` of a stored body.
fn body_slice(body: &Body, start: u64, end: u64) -> ProxyBody {
    match body {
        Body::Memory(b) => {
            ProxyBody::full(b.slice(start as usize..end.min(b.len() as u64) as usize))
        }
        Body::Reader(r) => {
            ProxyBody::Stream(reader_stream(r.clone(), start, end), Some(end - start))
        }
    }
}

/// Streams `[start, end)` of a body that lives outside memory, reading off the runtime.
fn reader_stream(r: Arc<dyn BodyReader>, start: u64, end: u64) -> ChunkStream {
    Box::pin(futures_util::stream::unfold(
        (r, start),
        move |(r, pos)| async move {
            if pos >= end {
                return None;
            }
            let max = ((end - pos) as usize).min(READ_CHUNK);
            let read = if r.is_cheap() {
                r.read_at(pos, max)
            } else {
                let r2 = r.clone();
                match tokio::task::spawn_blocking(move || r2.read_at(pos, max)).await {
                    Ok(res) => res,
                    Err(e) => Err(std::io::Error::other(e)),
                }
            };
            match read {
                Ok(b) if !b.is_empty() => {
                    let next = pos + b.len() as u64;
                    Some((Ok(b), (r, next)))
                }
                Ok(_) => Some((
                    Err::<Bytes, BoxError>("stored body ended early".into()),
                    (r, end),
                )),
                Err(e) => {
                    tracing::warn!(error = %e, "stored body could not be read; cutting the response short");
                    Some((Err(Box::new(e) as BoxError), (r, end)))
                }
            }
        },
    ))
}

/// Streams `[start, end)` of a fill's body as it arrives.
fn fill_stream(reader: FillReader, start: u64, end: u64) -> ChunkStream {
    Box::pin(futures_util::stream::unfold(
        Some((reader, 0u64)),
        move |state| async move {
            let (mut reader, mut pos) = state?;
            loop {
                if pos >= end {
                    return None;
                }
                match reader.next_chunk().await {
                    Chunk::Data(b) => {
                        let chunk_start = pos;
                        let chunk_end = pos + b.len() as u64;
                        pos = chunk_end;
                        let from = start.max(chunk_start);
                        let to = end.min(chunk_end);
                        if from < to {
                            let piece =
                                b.slice((from - chunk_start) as usize..(to - chunk_start) as usize);
                            return Some((Ok(piece), Some((reader, pos))));
                        }
                    }
                    Chunk::End => return None,
                    Chunk::Broken => {
                        return Some((
                            Err::<Bytes, BoxError>("upstream body broke off".into()),
                            None,
                        ))
                    }
                }
            }
        },
    ))
}

/// A multipart/byteranges body (RFC 9110 §14.6) for several ranges of a stored object.
fn multipart(obj: &Object, ranges: &[(u64, u64)], len: u64) -> (HeaderMap, ProxyBody) {
    let boundary = format!(
        "strata-{:016x}",
        xxhash_rust::xxh3::xxh3_64(obj.meta.key.as_bytes()) ^ len
    );
    let ctype = obj
        .meta
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let whole = match crate::store::read_all(&obj.body) {
        Ok(b) => b,
        Err(_) => return (HeaderMap::new(), ProxyBody::Empty),
    };
    let mut out = BytesMut::new();
    for (s, e) in ranges {
        out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        if let Some(ct) = &ctype {
            out.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        out.extend_from_slice(format!("Content-Range: bytes {s}-{e}/{len}\r\n\r\n").as_bytes());
        out.extend_from_slice(&whole[*s as usize..=*e as usize]);
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut h = obj.meta.headers.clone();
    h.remove(CONTENT_RANGE);
    h.insert(
        CONTENT_TYPE,
        hv(&format!("multipart/byteranges; boundary={boundary}")),
    );
    h.insert(CONTENT_LENGTH, HeaderValue::from(out.len()));
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    (h, ProxyBody::full(out.freeze()))
}
