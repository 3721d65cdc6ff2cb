//! TEMPORARY STUB (branch `tests` only): a pass-through node with no cache, so the
//! integration harness compiles and its plumbing can be exercised before the real proxy
//! lands on `main`. Dropped in favour of main's `server` at the merge.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use tokio::net::TcpListener;

pub struct Node {
    addr: SocketAddr,
    admin_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    pub async fn start(config: crate::config::Resolved) -> anyhow::Result<Node> {
        let listener = TcpListener::bind(config.file.node.listen).await?;
        let admin = TcpListener::bind(config.file.node.admin_listen).await?;
        let addr = listener.local_addr()?;
        let admin_addr = admin.local_addr()?;
        let origin = config.origins.values().next().unwrap().config.url.clone();
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let task = tokio::spawn(async move {
            let _admin = admin;
            loop {
                let (s, _) = listener.accept().await.unwrap();
                let client = client.clone();
                let origin = origin.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let client = client.clone();
                        let origin = origin.clone();
                        async move {
                            let (mut parts, body) = req.into_parts();
                            let body = body.collect().await?.to_bytes();
                            parts.uri = format!(
                                "{origin}{}",
                                parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.as_str())
                                    .unwrap_or("/")
                            )
                            .parse()
                            .unwrap();
                            parts.headers.remove("host");
                            let resp = client
                                .request(hyper::Request::from_parts(parts, Full::new(body)))
                                .await;
                            let resp = match resp {
                                Ok(r) => {
                                    let (p, b) = r.into_parts();
                                    let b = b.collect().await?.to_bytes();
                                    let mut r = hyper::Response::from_parts(p, Full::new(b));
                                    r.headers_mut()
                                        .insert("x-cache", "Miss from strata".parse().unwrap());
                                    r
                                }
                                Err(_) => hyper::Response::builder()
                                    .status(502)
                                    .body(Full::new(Bytes::from("bad gateway")))
                                    .unwrap(),
                            };
                            Ok::<_, hyper::Error>(resp)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        Ok(Node {
            addr,
            admin_addr,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub async fn shutdown(self) {
        self.task.abort();
    }
}
