//! Wall-clock time in Unix milliseconds, the unit stored metadata uses.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Returns once [`now_ms`] is past `t` (at most a millisecond after `t`, sleeping meanwhile).
/// Invalidation and purge rules made at `t` catch what started at or before `t`; waiting
/// before answering means that whatever starts after the answer has a later time, so a
/// request sent right after an invalidation is never caught by it.
/// Blocks: for blocking-pool work (a purge); async code uses [`wait_past_async`].
pub fn wait_past(t: u64) {
    while now_ms() <= t {
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
}

/// [`wait_past`] without blocking a runtime thread.
pub async fn wait_past_async(t: u64) {
    while now_ms() <= t {
        tokio::time::sleep(std::time::Duration::from_micros(200)).await;
    }
}

/// An HTTP date (IMF-fixdate) as Unix milliseconds.
pub fn parse_http_date(s: &str) -> Option<u64> {
    httpdate::parse_http_date(s.trim())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
}

/// Unix milliseconds as an HTTP date.
pub fn fmt_http_date(ms: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_millis(ms))
}
