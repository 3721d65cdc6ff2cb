//! S3 origins for real: a SeaweedFS server checking SigV4, a bucket and objects written by
//! signed PUTs, and a node signing its requests with the same code.

mod topo;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Once;
use std::time::{Duration, SystemTime};
use strata::config::{S3Addressing, S3Config};
use strata::upstream::s3::S3Signer;
use topo::*;

const BUCKET: &str = "shop-images";

/// Credentials reach the node through the shared credentials file: profile `good` holds the
/// server's key, `wrong` the right key id with a wrong secret. Set once, before any runtime.
fn credentials_file() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let path = std::env::temp_dir().join(format!("strata-s3-creds-{}", std::process::id()));
        std::fs::write(
            &path,
            format!(
                "[good]\naws_access_key_id = {S3_ACCESS_KEY}\naws_secret_access_key = {S3_SECRET_KEY}\n\n\
                 [wrong]\naws_access_key_id = {S3_ACCESS_KEY}\naws_secret_access_key = not-the-secret\n"
            ),
        )
        .expect("write the credentials file");
        std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", &path);
        std::env::remove_var("AWS_ACCESS_KEY_ID");
        std::env::remove_var("AWS_SECRET_ACCESS_KEY");
        std::env::remove_var("AWS_PROFILE");
    });
}

/// Writes an object (or, with an empty key, creates the bucket) by a signed PUT.
async fn put(s3: std::net::SocketAddr, key: &str, body: &'static [u8]) {
    let env = |k: &str| match k {
        "AWS_ACCESS_KEY_ID" => Some(S3_ACCESS_KEY.to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some(S3_SECRET_KEY.to_string()),
        _ => None,
    };
    let cfg = S3Config {
        region: "us-east-1".into(),
        profile: None,
        addressing: S3Addressing::Path,
        service: "s3".into(),
    };
    let signer = S3Signer::with_env(&cfg, &env).expect("a signer");
    let key = strata::upstream::s3::strict_path(key);
    let key = if key == "/" { String::new() } else { key };
    let mut req = Request::put(format!("http://{s3}/{BUCKET}{key}"))
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from_static(body)))
        .expect("a request");
    signer
        .sign(&mut req, body.is_empty(), SystemTime::now())
        .expect("signed");
    let c: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let resp = c.request(req).await.expect("PUT reaches SeaweedFS");
    let status = resp.status();
    let text = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    assert!(
        status.is_success(),
        "PUT {key}: {status} {}",
        String::from_utf8_lossy(&text)
    );
}

fn s3_node_config(
    id: &str,
    port: u16,
    dir: &std::path::Path,
    s3: std::net::SocketAddr,
    profile: &str,
) -> String {
    format!(
        r#"{node}
[[origins]]
id = "images"
url = "http://{s3}/{BUCKET}"
s3 = {{ region = "us-east-1", profile = "{profile}" }}

[cache_policies.Short]
min_ttl = "0s"
default_ttl = "1s"
max_ttl = "1s"

[[behaviors]]
path = "/pass/*"
origin = "images"
cache_policy = "CachingDisabled"
origin_request_policy = "AllViewer"

[[behaviors]]
path = "/short/*"
origin = "images"
cache_policy = "Short"

[default_behavior]
origin = "images"
cache_policy = "CachingOptimized"
"#,
        node = node_section(id, "127.0.0.1", port, dir),
    )
}

/// The bucket with its objects, and a node in front of it signing with `profile`.
async fn bucket_and_node(dir: &std::path::Path, profile: &str) -> (Seaweed, strata::server::Node) {
    let sw = Seaweed::start().await;
    put(sw.s3, "", b"").await;
    put(sw.s3, "/hello.txt", b"hello from s3\n").await;
    put(sw.s3, "/odd name (1)!.txt", b"odd key\n").await;
    put(sw.s3, "/pass/range.txt", b"0123456789abcdefghij").await;
    put(sw.s3, "/short/fresh.txt", b"short-lived\n").await;
    let node = node(&s3_node_config("edge-s3", 0, dir, sw.s3, profile)).await;
    (sw, node)
}

#[test]
fn a_signed_object_comes_through_and_is_cached() {
    credentials_file();
    scenario(120, async {
        let dir = tempfile::tempdir().unwrap();
        let (_sw, node) = bucket_and_node(dir.path(), "good").await;
        let c = client();
        let url = format!("http://{}/hello.txt", node.addr());

        let first = get(&c, &url, &[]).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.text());
        assert_eq!(first.text(), "hello from s3\n");
        assert!(first
            .header("cache-status")
            .contains("edge-s3; fwd=miss; fwd-status=200; stored"));

        let second = get(&c, &url, &[]).await;
        assert_eq!(second.text(), "hello from s3\n");
        assert!(
            second.header("cache-status").contains("edge-s3; hit"),
            "{}",
            second.header("cache-status")
        );

        // A key S3 only accepts strictly encoded: spaces, parentheses and `!`.
        let odd = get(
            &c,
            &format!("http://{}/odd%20name%20(1)!.txt", node.addr()),
            &[],
        )
        .await;
        assert_eq!(odd.status, StatusCode::OK, "{}", odd.text());
        assert_eq!(odd.text(), "odd key\n");
        node.shutdown().await;
    });
}

#[test]
fn a_wrong_secret_never_yields_the_object_nor_caches_anything() {
    credentials_file();
    scenario(120, async {
        let dir = tempfile::tempdir().unwrap();
        let (_sw, node) = bucket_and_node(dir.path(), "wrong").await;
        let c = client();
        let url = format!("http://{}/hello.txt", node.addr());
        for _ in 0..2 {
            let got = get(&c, &url, &[]).await;
            assert_eq!(got.status, StatusCode::BAD_GATEWAY);
            assert!(!got.text().contains("hello from s3"));
            assert!(
                got.text().contains("SignatureDoesNotMatch"),
                "{}",
                got.text()
            );
            assert!(!got.header("cache-status").contains("hit"));
            assert!(!got.header("cache-status").contains("stored"));
        }
        let stats = node.proxy.store.stats();
        assert_eq!(stats.objects, 0, "nothing is cached from a refused request");
        node.shutdown().await;
    });
}

#[test]
fn conditional_and_range_requests_through_the_node() {
    credentials_file();
    scenario(120, async {
        let dir = tempfile::tempdir().unwrap();
        let (_sw, node) = bucket_and_node(dir.path(), "good").await;
        let c = client();
        let base = format!("http://{}", node.addr());

        // Cached path: the fill fetches the whole object; the viewer's range and
        // validators are answered from the cache.
        let full = get(&c, &format!("{base}/hello.txt"), &[]).await;
        let etag = full.header("etag");
        assert!(!etag.is_empty(), "S3 sends an ETag");
        let part = get(&c, &format!("{base}/hello.txt"), &[("range", "bytes=0-4")]).await;
        assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(part.text(), "hello");
        let nm = get(
            &c,
            &format!("{base}/hello.txt"),
            &[("if-none-match", &etag)],
        )
        .await;
        assert_eq!(nm.status, StatusCode::NOT_MODIFIED);

        // Pass-through: the Range and preconditions themselves are signed and sent to S3.
        let r = get(
            &c,
            &format!("{base}/pass/range.txt"),
            &[("range", "bytes=10-14")],
        )
        .await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{}", r.text());
        assert_eq!(r.text(), "abcde");
        assert_eq!(r.header("content-range"), "bytes 10-14/20");
        let open = get(
            &c,
            &format!("{base}/pass/range.txt"),
            &[("range", "bytes=-3")],
        )
        .await;
        assert_eq!(open.text(), "hij");
        let past = get(
            &c,
            &format!("{base}/pass/range.txt"),
            &[("range", "bytes=100-")],
        )
        .await;
        assert_eq!(past.status, StatusCode::RANGE_NOT_SATISFIABLE);
        let whole = get(&c, &format!("{base}/pass/range.txt"), &[]).await;
        let petag = whole.header("etag");
        let nm = get(
            &c,
            &format!("{base}/pass/range.txt"),
            &[("if-none-match", &petag)],
        )
        .await;
        assert_eq!(nm.status, StatusCode::NOT_MODIFIED);
        assert!(nm.header("cache-status").contains("fwd-status=304"));
        let pf = get(
            &c,
            &format!("{base}/pass/range.txt"),
            &[("if-match", "\"nope\"")],
        )
        .await;
        assert_eq!(pf.status, StatusCode::PRECONDITION_FAILED);

        // Revalidation: a stale object is revalidated by a signed conditional GET.
        let url = format!("{base}/short/fresh.txt");
        let first = get(&c, &url, &[]).await;
        assert_eq!(first.text(), "short-lived\n");
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let again = get(&c, &url, &[]).await;
        assert_eq!(again.text(), "short-lived\n");
        assert_eq!(
            again.header("x-cache"),
            "RefreshHit from strata",
            "{}",
            again.header("cache-status")
        );
        assert!(again.header("cache-status").contains("fwd-status=304"));
        node.shutdown().await;
    });
}

#[test]
fn missing_credentials_stop_the_node_at_start() {
    credentials_file();
    scenario(30, async {
        let dir = tempfile::tempdir().unwrap();
        let s3: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
        let cfg = strata::config::Resolved::from_toml(
            &s3_node_config("edge-nocreds", 0, dir.path(), s3, "absent"),
            "test.toml",
        )
        .unwrap();
        let err = match strata::server::Node::start(cfg).await {
            Ok(_) => panic!("a node without credentials must not start"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("origin images"), "{err}");
        assert!(err.contains("no AWS credentials"), "{err}");
        assert!(err.contains("[absent]"), "{err}");
    });
}

/// Virtual-hosted addressing for real: the node signs for and sends `Host:
/// shop-images.s3.strata.test:PORT` (a name that resolves nowhere) while `connect_to` takes
/// the TCP connection to SeaweedFS on loopback. SeaweedFS (`-s3.domainName`) reads the
/// bucket from the host: were the request path-style, `/hello.txt` would name a bucket that
/// does not exist.
#[test]
fn virtual_hosted_addressing_through_connect_to() {
    credentials_file();
    scenario(120, async {
        let dir = tempfile::tempdir().unwrap();
        let sw = Seaweed::start().await;
        put(sw.s3, "", b"").await;
        put(sw.s3, "/hello.txt", b"hello from s3\n").await;
        put(sw.s3, "/odd name (1)!.txt", b"odd key\n").await;
        let config = |id: &str, profile: &str, connect_to: bool| {
            format!(
                r#"{node}
[[origins]]
id = "images"
url = "http://{S3_DOMAIN}:{port}/{BUCKET}"
{connect}
s3 = {{ region = "us-east-1", profile = "{profile}", addressing = "virtual" }}

[default_behavior]
origin = "images"
cache_policy = "CachingOptimized"
"#,
                node = node_section(id, "127.0.0.1", 0, dir.path()),
                port = sw.s3.port(),
                connect = if connect_to {
                    format!("connect_to = \"{}\"", sw.s3)
                } else {
                    String::new()
                },
            )
        };
        let c = client();

        let good = node(&config("edge-virtual", "good", true)).await;
        let got = get(&c, &format!("http://{}/hello.txt", good.addr()), &[]).await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.text());
        assert_eq!(got.text(), "hello from s3\n");
        assert!(got
            .header("cache-status")
            .contains("fwd-status=200; stored"));
        let odd = get(
            &c,
            &format!("http://{}/odd%20name%20(1)!.txt", good.addr()),
            &[],
        )
        .await;
        assert_eq!(odd.status, StatusCode::OK, "{}", odd.text());
        assert_eq!(odd.text(), "odd key\n");
        good.shutdown().await;

        // The same origin with a wrong secret: refused, nothing served or stored.
        let wrong = node(&config("edge-virtual-wrong", "wrong", true)).await;
        let got = get(&c, &format!("http://{}/hello.txt", wrong.addr()), &[]).await;
        assert_eq!(got.status, StatusCode::BAD_GATEWAY);
        assert!(
            got.text().contains("SignatureDoesNotMatch"),
            "{}",
            got.text()
        );
        assert_eq!(wrong.proxy.store.stats().objects, 0);
        wrong.shutdown().await;

        // Without connect_to the virtual-hosted name is looked up and cannot be reached.
        let lost = node(&config("edge-virtual-lost", "good", false)).await;
        let got = get(&c, &format!("http://{}/hello.txt", lost.addr()), &[]).await;
        assert_eq!(got.status, StatusCode::BAD_GATEWAY, "{}", got.text());
        assert!(!got.text().contains("hello from s3"));
        lost.shutdown().await;
    });
}
