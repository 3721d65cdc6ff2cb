//! The metadata kept with every stored response, and its byte encoding (the one place the
//! metadata layout is defined; `docs/store-format.md` describes it).
//!
//! Times are Unix milliseconds. Freshness is computed once, when the response is stored or
//! refreshed, by `policy::freshness`, and kept here so that a hit does not parse headers.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// Bit flags on a stored object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetaFlags(pub u32);

impl MetaFlags {
    /// Stale responses must not be served without revalidation (must-revalidate,
    /// proxy-revalidate, s-maxage).
    pub const MUST_REVALIDATE: u32 = 1;
    /// Every use needs revalidation (no-cache, or a policy that says so).
    pub const NO_CACHE: u32 = 1 << 1;
    /// A Vary marker: no body; `headers` hold the Vary field that selects variants.
    pub const VARY_MARKER: u32 = 1 << 2;
    /// Soft-purged or invalidated softly: usable only as stale.
    pub const FORCED_STALE: u32 = 1 << 3;
    /// `immutable` (RFC 8246).
    pub const IMMUTABLE: u32 = 1 << 4;
    /// The response is an uncacheable marker (hit-for-miss) and carries no body.
    pub const HIT_FOR_MISS: u32 = 1 << 5;

    pub fn has(self, f: u32) -> bool {
        self.0 & f != 0
    }
    pub fn set(&mut self, f: u32, on: bool) {
        if on {
            self.0 |= f
        } else {
            self.0 &= !f
        }
    }
}

/// What the proxy stores about a response besides its body.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectMeta {
    /// The full cache key (primary key, plus the variant's secondary key if any).
    pub key: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// When the request that produced this response was sent (RFC 9111 §4.2.3 request_time).
    pub request_time: u64,
    /// When the response was received (response_time).
    pub response_time: u64,
    /// corrected_initial_age, in milliseconds.
    pub initial_age: u64,
    /// Freshness lifetime, in milliseconds, after the policy's TTL bounds.
    pub freshness_lifetime: u64,
    /// stale-while-revalidate window, in milliseconds.
    pub stale_while_revalidate: u64,
    /// stale-if-error window, in milliseconds.
    pub stale_if_error: u64,
    pub flags: MetaFlags,
    /// Body length; `u64::MAX` while unknown.
    pub body_len: u64,
}

impl ObjectMeta {
    pub fn new(key: String, status: StatusCode, headers: HeaderMap) -> ObjectMeta {
        ObjectMeta {
            key,
            status,
            headers,
            request_time: 0,
            response_time: 0,
            initial_age: 0,
            freshness_lifetime: 0,
            stale_while_revalidate: 0,
            stale_if_error: 0,
            flags: MetaFlags::default(),
            body_len: u64::MAX,
        }
    }

    /// current_age (RFC 9111 §4.2.3) at `now` (Unix ms), in milliseconds.
    pub fn age_at(&self, now: u64) -> u64 {
        self.initial_age + now.saturating_sub(self.response_time)
    }

    /// Whether the object is fresh at `now`.
    pub fn is_fresh(&self, now: u64) -> bool {
        !self.flags.has(MetaFlags::FORCED_STALE) && self.age_at(now) < self.freshness_lifetime
    }

    /// Milliseconds of freshness left at `now` (0 when stale).
    pub fn ttl_left(&self, now: u64) -> u64 {
        if self.flags.has(MetaFlags::FORCED_STALE) {
            return 0;
        }
        self.freshness_lifetime.saturating_sub(self.age_at(now))
    }

    /// The Unix ms after which the object is useless even as stale (for eviction).
    pub fn expires_at(&self) -> u64 {
        let window = self.stale_while_revalidate.max(self.stale_if_error);
        let validator = self.headers.contains_key(http::header::ETAG)
            || self.headers.contains_key(http::header::LAST_MODIFIED);
        if validator {
            // Revalidatable objects stay useful after they go stale; eviction decides.
            return u64::MAX;
        }
        (self.response_time + self.freshness_lifetime + window).saturating_sub(self.initial_age)
    }

    const VERSION: u8 = 1;

    /// Encodes the metadata (not the key) into bytes; see `docs/store-format.md`.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(64 + self.headers.len() * 48);
        b.put_u8(Self::VERSION);
        b.put_u16_le(self.status.as_u16());
        b.put_u32_le(self.flags.0);
        for v in [
            self.request_time,
            self.response_time,
            self.initial_age,
            self.freshness_lifetime,
            self.stale_while_revalidate,
            self.stale_if_error,
            self.body_len,
        ] {
            b.put_u64_le(v);
        }
        b.put_u32_le(self.headers.len() as u32);
        for (name, value) in &self.headers {
            b.put_u16_le(name.as_str().len() as u16);
            b.put_slice(name.as_str().as_bytes());
            b.put_u32_le(value.len() as u32);
            b.put_slice(value.as_bytes());
        }
        b.freeze()
    }

    /// Decodes metadata written by [`encode`](Self::encode).
    pub fn decode(key: String, mut b: &[u8]) -> Result<ObjectMeta, String> {
        let need = |b: &[u8], n: usize| {
            if b.remaining() < n {
                Err(format!(
                    "metadata truncated (need {n} bytes, have {})",
                    b.remaining()
                ))
            } else {
                Ok(())
            }
        };
        need(b, 1 + 2 + 4 + 7 * 8 + 4)?;
        let version = b.get_u8();
        if version != Self::VERSION {
            return Err(format!("unknown metadata version {version}"));
        }
        let status = StatusCode::from_u16(b.get_u16_le()).map_err(|e| e.to_string())?;
        let flags = MetaFlags(b.get_u32_le());
        let mut t = [0u64; 7];
        for v in &mut t {
            *v = b.get_u64_le();
        }
        let n = b.get_u32_le() as usize;
        let mut headers = HeaderMap::with_capacity(n.min(256));
        for _ in 0..n {
            need(b, 2)?;
            let nl = b.get_u16_le() as usize;
            need(b, nl + 4)?;
            let name = HeaderName::from_bytes(&b[..nl]).map_err(|e| e.to_string())?;
            b.advance(nl);
            let vl = b.get_u32_le() as usize;
            need(b, vl)?;
            let value = HeaderValue::from_bytes(&b[..vl]).map_err(|e| e.to_string())?;
            b.advance(vl);
            headers.append(name, value);
        }
        Ok(ObjectMeta {
            key,
            status,
            headers,
            request_time: t[0],
            response_time: t[1],
            initial_age: t[2],
            freshness_lifetime: t[3],
            stale_while_revalidate: t[4],
            stale_if_error: t[5],
            flags,
            body_len: t[6],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        h.append("set-thing", HeaderValue::from_static("a"));
        h.append("set-thing", HeaderValue::from_static("b"));
        let mut m = ObjectMeta::new("k".into(), StatusCode::OK, h);
        m.request_time = 1;
        m.response_time = 2;
        m.freshness_lifetime = 3000;
        m.body_len = 42;
        m.flags.set(MetaFlags::IMMUTABLE, true);
        let enc = m.encode();
        let back = ObjectMeta::decode("k".into(), &enc).unwrap();
        assert_eq!(back, m);
        for cut in 0..enc.len() {
            assert!(
                ObjectMeta::decode("k".into(), &enc[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }
}
