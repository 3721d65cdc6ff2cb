//! Viewer TLS for real: a certificate generated for the test, a node with a TLS listener,
//! viewers speaking HTTP/2 and HTTP/1.1 (chosen by ALPN) over TLS 1.3 and TLS 1.2, and the
//! behaviours' viewer protocol policies.

mod topo;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use topo::*;

struct Certs {
    _dir: tempfile::TempDir,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    der: rustls::pki_types::CertificateDer<'static>,
}

fn certificate() -> Certs {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("a certificate");
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    Certs {
        der: ck.cert.der().clone(),
        _dir: dir,
        cert,
        key,
    }
}

/// A node with a plain and a TLS listener (on a port chosen here, so that redirects name it).
fn config(dir: &std::path::Path, origin: SocketAddr, c: &Certs) -> String {
    let section = node_section("edge-tls", "127.0.0.1", 0, dir);
    let tls = format!(
        "listen_tls = \"127.0.0.1:{}\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\nadmin_listen",
        free_port("127.0.0.1"),
        c.cert.display(),
        c.key.display()
    );
    format!(
        r#"{node}
[[origins]]
id = "web"
url = "http://{origin}"

[[behaviors]]
path = "/secure/*"
origin = "web"
viewer_protocol_policy = "https-only"

[[behaviors]]
path = "/login/*"
origin = "web"
viewer_protocol_policy = "redirect-to-https"

[default_behavior]
origin = "web"
"#,
        node = section.replacen("admin_listen", &tls, 1),
    )
}

/// One GET over TLS with the given ALPN protocols and TLS versions; returns the HTTP version
/// spoken, the negotiated TLS version, and the response.
async fn tls_get(
    addr: SocketAddr,
    root: &rustls::pki_types::CertificateDer<'static>,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
    path: &str,
) -> (Version, rustls::ProtocolVersion, StatusCode, String) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("trust the test certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let tls = connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake");
    let (_, conn) = tls.get_ref();
    let tls_version = conn.protocol_version().expect("a TLS version");
    let h2 = conn.alpn_protocol() == Some(b"h2");
    let uri = format!("https://localhost:{}{path}", addr.port());
    let io = TokioIo::new(tls);
    let resp = if h2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .expect("h2 handshake");
        tokio::spawn(conn);
        let req = Request::get(&uri)
            .body(Empty::<Bytes>::new())
            .expect("request");
        send.send_request(req).await.expect("h2 response")
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("h1 handshake");
        tokio::spawn(conn);
        let req = Request::get(path)
            .header("host", format!("localhost:{}", addr.port()))
            .body(Empty::<Bytes>::new())
            .expect("request");
        send.send_request(req).await.expect("h1 response")
    };
    let version = resp.version();
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (
        version,
        tls_version,
        status,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[test]
fn viewers_speak_http2_and_http11_over_tls_by_alpn() {
    scenario(60, async {
        let certs = certificate();
        let dir = tempfile::tempdir().unwrap();
        let origin = TestOrigin::start("web", "127.0.0.1", Duration::ZERO).await;
        let node = node(&config(dir.path(), origin.addr, &certs)).await;
        let addr = node.tls_addr().expect("a TLS listener");
        let v13: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
        let v12: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

        let (v, tv, st, body) = tls_get(addr, &certs.der, &[b"h2", b"http/1.1"], v13, "/a").await;
        assert_eq!(
            (v, st, body.as_str()),
            (Version::HTTP_2, StatusCode::OK, "web:/a")
        );
        assert_eq!(tv, rustls::ProtocolVersion::TLSv1_3);

        let (v, _, st, body) = tls_get(addr, &certs.der, &[b"http/1.1"], v13, "/a").await;
        assert_eq!(
            (v, st, body.as_str()),
            (Version::HTTP_11, StatusCode::OK, "web:/a")
        );

        let (v, tv, st, _) = tls_get(addr, &certs.der, &[b"h2"], v12, "/b").await;
        assert_eq!((v, st), (Version::HTTP_2, StatusCode::OK));
        assert_eq!(tv, rustls::ProtocolVersion::TLSv1_2);

        // No ALPN at all: HTTP/1.1.
        let (v, _, st, _) = tls_get(addr, &certs.der, &[], v12, "/b").await;
        assert_eq!((v, st), (Version::HTTP_11, StatusCode::OK));
        assert_eq!(
            origin.count(),
            2,
            "one fill per object, both tiers of TLS share the cache"
        );
        node.shutdown().await;
    });
}

#[test]
fn viewer_protocol_policies_per_behaviour() {
    scenario(60, async {
        let certs = certificate();
        let dir = tempfile::tempdir().unwrap();
        let origin = TestOrigin::start("web", "127.0.0.1", Duration::ZERO).await;
        let node = node(&config(dir.path(), origin.addr, &certs)).await;
        let tls = node.tls_addr().expect("a TLS listener");
        let plain = node.addr();
        let c = client();
        let v13: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

        // allow-all
        assert_eq!(
            get(&c, &format!("http://{plain}/x"), &[]).await.status,
            StatusCode::OK
        );
        // https-only: refused in clear, served over TLS
        let r = get(&c, &format!("http://{plain}/secure/x"), &[]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let (_, _, st, body) = tls_get(tls, &certs.der, &[b"h2"], v13, "/secure/x").await;
        assert_eq!((st, body.as_str()), (StatusCode::OK, "web:/secure/x"));
        // redirect-to-https: 301 to the TLS listener's port, served over TLS
        let r = get(&c, &format!("http://{plain}/login/x?next=1"), &[]).await;
        assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(
            r.header("location"),
            format!("https://127.0.0.1:{}/login/x?next=1", tls.port())
        );
        let (_, _, st, _) = tls_get(tls, &certs.der, &[b"http/1.1"], v13, "/login/x").await;
        assert_eq!(st, StatusCode::OK);
        node.shutdown().await;
    });
}

#[test]
fn a_missing_key_file_stops_the_node_with_its_name() {
    scenario(30, async {
        let certs = certificate();
        let dir = tempfile::tempdir().unwrap();
        let text = config(dir.path(), "127.0.0.1:9".parse().unwrap(), &certs)
            .replace(&certs.key.display().to_string(), "/nonexistent/key.pem");
        let cfg = strata::config::Resolved::from_toml(&text, "t.toml").expect("config");
        let err = match strata::server::Node::start(cfg).await {
            Ok(_) => panic!("must not start"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            err.contains("/nonexistent/key.pem") && err.contains("node.tls.key"),
            "{err}"
        );
    });
}
