//! Connection glue for viewer sockets. hyper answers requests it cannot parse (400) or whose
//! head is too large (431) by itself, with an empty body. Viewers should learn what went
//! wrong, so [`ExplainErrors`] recognises those exact responses as hyper writes them (a
//! status line followed by `connection: close` and `content-length: 0`, which no response
//! of the proxy's own looks like) and replaces them with a short text/plain explanation.
//! Everything else passes through untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const HYPER_ERROR_TAIL: &[u8] = b"\r\nconnection: close\r\ncontent-length: 0\r\n";

/// Wraps a viewer connection; see the module docs.
pub struct ExplainErrors<T> {
    inner: T,
    pending: Vec<u8>,
    written: usize,
}

impl<T> ExplainErrors<T> {
    pub fn new(inner: T) -> Self {
        ExplainErrors {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

/// The replacement for one of hyper's bodyless error responses, or `None` when `buf` is not one.
fn explain(buf: &[u8]) -> Option<Vec<u8>> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let status_line = std::str::from_utf8(&buf[..line_end]).ok()?;
    let code = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))?
        .get(..3)?;
    if !buf[line_end..].starts_with(HYPER_ERROR_TAIL) {
        return None;
    }
    let message = match code {
        "400" => "the request could not be parsed as HTTP/1.1",
        "431" => "the request's header section is too large (at most 64 KiB and 100 fields)",
        "414" => "the request target is too long",
        "408" => "the request head did not arrive in time",
        "505" => "HTTP version not supported",
        _ => return None,
    };
    let rest = &buf[line_end + HYPER_ERROR_TAIL.len()..];
    let body = format!(
        "{code} {}: {message}\n",
        &status_line[13.min(status_line.len())..]
    );
    let mut out = Vec::with_capacity(buf.len() + body.len() + 64);
    out.extend_from_slice(&buf[..line_end]);
    out.extend_from_slice(b"\r\nconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\n");
    out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    out.extend_from_slice(rest);
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

impl<T: AsyncWrite + Unpin> ExplainErrors<T> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n = std::task::ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ExplainErrors<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ExplainErrors<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        std::task::ready!(this.poll_pending(cx))?;
        if buf.starts_with(b"HTTP/1.") {
            // Only a complete head written in one piece can be one of hyper's errors: a
            // long buffer is an ordinary response.
            if buf.len() < 512 {
                if let Some(replacement) = explain(buf) {
                    this.pending = replacement;
                    this.written = 0;
                    let _ = this.poll_pending(cx)?;
                    return Poll::Ready(Ok(buf.len()));
                }
            }
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        std::task::ready!(this.poll_pending(cx))?;
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if first.starts_with(b"HTTP/1.")
                && first.len() < 512
                && bufs.iter().filter(|b| !b.is_empty()).count() == 1
            {
                if let Some(replacement) = explain(first) {
                    this.pending = replacement;
                    this.written = 0;
                    let _ = this.poll_pending(cx)?;
                    return Poll::Ready(Ok(first.len()));
                }
            }
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_hypers_errors_only() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sun, 22 Nov 2026 04:57:42 GMT\r\n\r\n";
        let out = String::from_utf8(explain(hyper).unwrap()).unwrap();
        assert!(
            out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{out}"
        );
        assert!(out.contains("content-type: text/plain"), "{out}");
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{out}"
        );
        assert!(body.contains("too large"), "{out}");
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nhello";
        assert!(explain(ours).is_none());
        let ok = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert!(explain(ok).is_none());
    }
}
