//! The admin listener: health, readiness and metrics (GETs, no token needed).

use crate::proxy::body::ProxyBody;
use crate::proxy::Proxy;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub async fn serve(listener: TcpListener, proxy: Arc<Proxy>, mut stop: watch::Receiver<bool>) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let proxy = proxy.clone();
                let builder = builder.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let proxy = proxy.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&proxy, req).await) }
                    });
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                });
            }
            _ = stop.changed() => return,
        }
    }
}

async fn handle(proxy: &Arc<Proxy>, req: Request<Incoming>) -> Response<ProxyBody> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n".into(), "text/plain"),
        (&Method::GET, "/readyz") => text(StatusCode::OK, "ready\n".into(), "text/plain"),
        (&Method::GET, "/metrics") => {
            let body = proxy.metrics.render(proxy.store.stats());
            text(
                StatusCode::OK,
                body,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into(), "text/plain"),
    }
}

fn text(status: StatusCode, body: String, ctype: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ctype),
    );
    r
}
