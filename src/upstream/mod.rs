//! Clients for the next tier: HTTP(S) origins and parent strata nodes, one pooled client per
//! origin with its own connect and response timeouts and TLS roots.
//!
//! This module sends requests it is given and reports failures as [`UpstreamError`]; it
//! never decides what is cached, and never retries on its own (failover is the caller's).
//! An S3 origin's requests are signed here, last, so that what is signed is what is sent;
//! an S3 origin that refuses the signature is reported as an error, never as a response.

pub mod s3;

use crate::config::OriginTarget;
use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of requests sent upstream.
pub type UpstreamBody = BoxBody<Bytes, BoxError>;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to origin {origin}: {detail}")]
    Connect { origin: String, detail: String },
    #[error("origin {origin} did not answer within {timeout:?}")]
    Timeout { origin: String, timeout: Duration },
    #[error("origin {origin} failed: {detail}")]
    Protocol { origin: String, detail: String },
    #[error("S3 origin {origin} refused the request: {status} {code}: {message} (check the credentials, region and clock of this node)")]
    Refused {
        origin: String,
        status: u16,
        code: String,
        message: String,
    },
}

impl UpstreamError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, UpstreamError::Timeout { .. })
    }
}

/// The TCP side of an origin's connector: connects where the request's URL says, or always
/// to the origin's `connect_to` address (the URL's host still names the server for `Host`,
/// TLS SNI and S3 signing, which happen above this layer).
#[derive(Clone)]
pub struct ConnectTo {
    http: HttpConnector,
    to: Option<std::net::SocketAddr>,
}

impl tower_service::Service<Uri> for ConnectTo {
    type Response = <HttpConnector as tower_service::Service<Uri>>::Response;
    type Error = <HttpConnector as tower_service::Service<Uri>>::Error;
    type Future = <HttpConnector as tower_service::Service<Uri>>::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let dst = match self.to {
            Some(addr) => connect_to_uri(addr).unwrap_or(dst),
            None => dst,
        };
        self.http.call(dst)
    }
}

/// The URI the TCP connector is given for a `connect_to` address.
fn connect_to_uri(addr: std::net::SocketAddr) -> Option<Uri> {
    Uri::builder()
        .scheme("http")
        .authority(addr.to_string())
        .path_and_query("/")
        .build()
        .ok()
}

/// A pooled client for one origin.
pub struct OriginClient {
    pub target: Arc<OriginTarget>,
    client: Client<hyper_rustls::HttpsConnector<ConnectTo>, UpstreamBody>,
    pub response_timeout: Duration,
    s3: Option<s3::S3Signer>,
}

impl OriginClient {
    pub fn new(target: Arc<OriginTarget>) -> Result<OriginClient, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(target.config.connect_timeout.get()));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let tls = tls_config(target.config.ca_file.as_deref())?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(ConnectTo {
                http,
                to: target.config.connect_to,
            });
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(https);
        let s3 = match &target.config.s3 {
            Some(cfg) => Some(s3::S3Signer::new(cfg)?),
            None => None,
        };
        Ok(OriginClient {
            s3,
            response_timeout: target.config.response_timeout.get(),
            target,
            client,
        })
    }

    pub fn id(&self) -> &str {
        &self.target.config.id
    }

    /// Sends a request and waits (at most the response timeout) for the response head.
    pub async fn send(
        &self,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let origin = self.id().to_string();
        if let Some(signer) = &self.s3 {
            let empty = http_body::Body::is_end_stream(req.body());
            signer
                .sign(&mut req, empty, std::time::SystemTime::now())
                .map_err(|detail| UpstreamError::Protocol {
                    origin: origin.clone(),
                    detail,
                })?;
        }
        match tokio::time::timeout(self.response_timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout {
                origin,
                timeout: self.response_timeout,
            }),
            Ok(Ok(resp)) if self.s3.is_some() && is_refusal(resp.status()) => {
                Err(self.refused(resp).await)
            }
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                let detail = error_chain(&e);
                if e.is_connect() {
                    if detail.contains("timed out") {
                        return Err(UpstreamError::Timeout {
                            origin,
                            timeout: self.target.config.connect_timeout.get(),
                        });
                    }
                    Err(UpstreamError::Connect { origin, detail })
                } else {
                    Err(UpstreamError::Protocol { origin, detail })
                }
            }
        }
    }
}

/// Statuses with which S3 refuses a request's authentication or authorisation.
fn is_refusal(status: http::StatusCode) -> bool {
    status == http::StatusCode::FORBIDDEN || status == http::StatusCode::BAD_REQUEST
}

impl OriginClient {
    /// Reads (a bounded part of) an S3 refusal and turns it into an error.
    async fn refused(&self, resp: Response<Incoming>) -> UpstreamError {
        use http_body_util::BodyExt;
        let status = resp.status().as_u16();
        let body = http_body_util::Limited::new(resp.into_body(), 16 * 1024);
        let bytes = match tokio::time::timeout(self.response_timeout, body.collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            _ => bytes::Bytes::new(),
        };
        let (code, message) =
            s3::error_code(&bytes).unwrap_or_else(|| ("(no S3 error code)".into(), String::new()));
        tracing::warn!(origin = %self.id(), status, %code, "S3 origin refused a request");
        UpstreamError::Refused {
            origin: self.id().to_string(),
            status,
            code,
            message,
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Client TLS: the system roots plus an optional PEM file of extra CAs.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
        let mut n = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
            n += 1;
        }
        if n == 0 {
            return Err(format!(
                "ca_file {} holds no PEM certificate",
                path.display()
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(cfg)
}
