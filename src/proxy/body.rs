//! The body of a response to a viewer: nothing, bytes in memory, an upstream body passed
//! through, or a stream (a fill being read, or a stored body read from disk).

use crate::upstream::BoxError;
use bytes::Bytes;
use futures_util::Stream;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};

pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>;

pub enum ProxyBody {
    Empty,
    Full(Option<Bytes>),
    Incoming(Incoming),
    /// A stream with its exact length when known.
    Stream(ChunkStream, Option<u64>),
}

impl ProxyBody {
    pub fn full(b: impl Into<Bytes>) -> ProxyBody {
        let b = b.into();
        if b.is_empty() {
            ProxyBody::Empty
        } else {
            ProxyBody::Full(Some(b))
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Empty => Poll::Ready(None),
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Incoming(i) => Pin::new(i)
                .poll_frame(cx)
                .map_err(|e| Box::new(e) as BoxError),
            ProxyBody::Stream(s, _) => s
                .as_mut()
                .poll_next(cx)
                .map(|o| o.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Incoming(i) => i.is_end_stream(),
            ProxyBody::Stream(..) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ProxyBody::Incoming(i) => i.size_hint(),
            ProxyBody::Stream(_, Some(n)) => SizeHint::with_exact(*n),
            ProxyBody::Stream(_, None) => SizeHint::default(),
        }
    }
}
