//! Purges and invalidations against real nodes and a scripted origin: `Surrogate-Key` never
//! reaches a viewer but still tags objects on every tier of a chain; an invalidation or a
//! purge that lands while a fill is still streaming its body is not undone when the fill
//! ends; a revalidation answered 304 after an invalidation does not bring the object back.

mod support;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the scripted origin saw: path and whether the request was conditional.
type Seen = Arc<Mutex<Vec<(String, bool)>>>;

/// An origin with three kinds of path:
/// - `/tagged/NAME`: cacheable for an hour, `Surrogate-Key: t-NAME all`;
/// - `/stall/NAME`: cacheable for an hour, tagged `stall`, sends half its body at once and
///   the rest only once the gate is open;
/// - `/reval/NAME`: `max-age=2` with an ETag; a conditional request waits for the gate,
///   then gets 304.
struct Scripted {
    addr: SocketAddr,
    seen: Seen,
    gate: watch::Sender<bool>,
}

impl Scripted {
    async fn start() -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let (gate, _) = watch::channel(false);
        let (s, g) = (seen.clone(), gate.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (s, g) = (s.clone(), g.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (s, g) = (s.clone(), g.clone());
                        async move { Ok::<_, Infallible>(answer(req, &s, &g).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Scripted { addr, seen, gate }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn open(&self, open: bool) {
        self.gate.send_replace(open);
    }

    /// Requests for `path`: (all, conditional).
    fn count(&self, path: &str) -> (usize, usize) {
        let seen = self.seen.lock();
        let mine: Vec<_> = seen.iter().filter(|(p, _)| p == path).collect();
        (mine.len(), mine.iter().filter(|(_, c)| *c).count())
    }
}

async fn wait_open(gate: &watch::Sender<bool>) {
    let mut rx = gate.subscribe();
    let _ = rx.wait_for(|open| *open).await;
}

async fn answer(
    req: Request<Incoming>,
    seen: &Seen,
    gate: &watch::Sender<bool>,
) -> Response<BoxBody<Bytes, Infallible>> {
    let path = req.uri().path().to_string();
    let conditional = req.headers().contains_key("if-none-match");
    let n = {
        let mut s = seen.lock();
        s.push((path.clone(), conditional));
        s.iter().filter(|(p, _)| *p == path).count()
    };
    let full = |b: String| Full::new(Bytes::from(b)).boxed();
    if let Some(name) = path.strip_prefix("/tagged/") {
        return Response::builder()
            .header("cache-control", "public, max-age=3600")
            .header("surrogate-key", format!("t-{name} all"))
            .body(full(format!("tagged {name} #{n}")))
            .unwrap();
    }
    if path.starts_with("/stall/") {
        let first = Bytes::from(format!("first half #{n};"));
        let second = Bytes::from(format!("second half #{n}"));
        let len = first.len() + second.len();
        let gate = gate.clone();
        let chunks = futures_util::stream::unfold(0u8, move |step| {
            let (first, second, gate) = (first.clone(), second.clone(), gate.clone());
            async move {
                match step {
                    0 => Some((Ok::<_, Infallible>(Frame::data(first)), 1)),
                    1 => {
                        wait_open(&gate).await;
                        Some((Ok(Frame::data(second)), 2))
                    }
                    _ => None,
                }
            }
        });
        return Response::builder()
            .header("cache-control", "public, max-age=3600")
            .header("surrogate-key", "stall")
            .header("content-length", len)
            .body(StreamBody::new(chunks).boxed())
            .unwrap();
    }
    if path.starts_with("/reval/") {
        if conditional {
            wait_open(gate).await;
            return Response::builder()
                .status(StatusCode::NOT_MODIFIED)
                .header("cache-control", "public, max-age=2")
                .header("etag", "\"v1\"")
                .body(full(String::new()))
                .unwrap();
        }
        return Response::builder()
            .header("cache-control", "public, max-age=2")
            .header("etag", "\"v1\"")
            .body(full(format!("reval #{n}")))
            .unwrap();
    }
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .body(full("no such path".into()))
        .unwrap()
}

fn named(toml: String, id: &str) -> String {
    toml.replace("id = \"ops-node\"", &format!("id = \"{id}\""))
}

/// Starts a GET and returns once the response head and the first body chunk arrived,
/// with the rest of the body still to read.
async fn get_first_chunk(addr: SocketAddr, path: &str) -> (Bytes, Incoming) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(TIMEOUT, client.request(req))
        .await
        .expect("head in time")
        .expect("a response");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = tokio::time::timeout(TIMEOUT, body.frame())
        .await
        .expect("first chunk in time")
        .expect("a chunk")
        .expect("no error")
        .into_data()
        .expect("data");
    (first, body)
}

async fn rest(mut body: Incoming) -> String {
    let mut out = Vec::new();
    while let Some(f) = tokio::time::timeout(TIMEOUT, body.frame())
        .await
        .expect("body in time")
    {
        if let Ok(d) = f.expect("no error").into_data() {
            out.extend_from_slice(&d);
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surrogate_key_never_reaches_viewers_but_purges_work_on_every_tier() {
    let origin = Scripted::start().await;
    let dir = tempfile::tempdir().unwrap();
    let shield = start(&named(
        config(&origin.url(), &dir.path().join("shield"), "127.0.0.1:0", ""),
        "shield",
    ))
    .await;
    let pop = start(&named(
        config(
            &format!("http://{}", shield.addr()),
            &dir.path().join("pop"),
            "127.0.0.1:0",
            "",
        ),
        "pop",
    ))
    .await;

    // A viewer asking the POP: a miss through both tiers, then a hit; neither shows the tag.
    for expect in ["fwd=miss", "hit"] {
        let got = get(pop.addr(), "/tagged/a", &[]).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body, "tagged a #1");
        assert!(
            got.header("cache-status").contains(expect),
            "{:?}",
            got.headers
        );
        assert!(
            !got.headers.contains_key("surrogate-key"),
            "a viewer saw Surrogate-Key: {:?}",
            got.headers
        );
    }
    // A viewer asking the shield directly does not see it either.
    let got = get(shield.addr(), "/tagged/a", &[]).await;
    assert!(
        !got.headers.contains_key("surrogate-key"),
        "{:?}",
        got.headers
    );
    // Another strata hop (a request whose Via names a strata node) does.
    let got = get(
        shield.addr(),
        "/tagged/a",
        &[("via", "1.1 other-pop (strata)")],
    )
    .await;
    assert_eq!(got.header("surrogate-key"), "t-a all");

    // Both tiers indexed the tag: a hard purge on each removes the object from each.
    let other = get(pop.addr(), "/tagged/b", &[]).await;
    assert_eq!(other.body, "tagged b #1");
    for n in [&pop, &shield] {
        let r = admin_post(
            n.admin_addr(),
            "/purge",
            r#"{"surrogate_keys": ["t-a"], "soft": false}"#,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["objects"], 1, "{}", r.body);
    }
    let got = get(pop.addr(), "/tagged/a", &[]).await;
    assert_eq!(
        got.body, "tagged a #2",
        "purged on both tiers: the origin is asked again"
    );
    assert_eq!(origin.count("/tagged/a").0, 2);
    // The untagged-by-t-a object stays cached on the POP.
    let got = get(pop.addr(), "/tagged/b", &[]).await;
    assert!(
        got.header("cache-status").contains("pop; hit"),
        "{:?}",
        got.headers
    );
    assert_eq!(origin.count("/tagged/b").0, 1);
    pop.shutdown().await;
    shield.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_during_a_fill_is_not_undone_when_the_fill_ends() {
    let origin = Scripted::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = start(&config(&origin.url(), dir.path(), "127.0.0.1:0", "")).await;

    // A fill is streaming: the head and the first half arrived, the rest is held back.
    let (first, body) = get_first_chunk(node.addr(), "/stall/inv").await;
    assert_eq!(first, "first half #1;");
    let r = admin_post(
        node.admin_addr(),
        "/invalidations",
        r#"{"paths": ["/stall/*"]}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);

    // A request after the invalidation does not join the old fill: it goes to the origin.
    let second = tokio::spawn(get_first_chunk(node.addr(), "/stall/inv"));
    eventually("a second origin request", || async {
        origin.count("/stall/inv").0 == 2
    })
    .await;
    origin.open(true);
    assert_eq!(rest(body).await, "second half #1");
    let (first2, body2) = second.await.unwrap();
    assert_eq!(first2, "first half #2;");
    assert_eq!(rest(body2).await, "second half #2");

    // What the old fill stored is hidden; the new one is what is served from now on.
    let got = get(node.addr(), "/stall/inv", &[]).await;
    assert_eq!(got.body, "first half #2;second half #2");
    assert_eq!(origin.count("/stall/inv").0, 2);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_during_a_fill_is_not_undone_when_the_fill_ends() {
    for soft in [false, true] {
        let origin = Scripted::start().await;
        let dir = tempfile::tempdir().unwrap();
        let node = start(&config(&origin.url(), dir.path(), "127.0.0.1:0", "")).await;
        let (first, body) = get_first_chunk(node.addr(), "/stall/p").await;
        assert_eq!(first, "first half #1;");
        let r = admin_post(
            node.admin_addr(),
            "/purge",
            &format!(r#"{{"surrogate_keys": ["stall"], "soft": {soft}}}"#),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        origin.open(true);
        assert_eq!(rest(body).await, "second half #1");
        // Give the fill its moment to commit what it received.
        tokio::time::sleep(Duration::from_millis(100)).await;

        let got = get(node.addr(), "/stall/p", &[]).await;
        assert_eq!(
            origin.count("/stall/p").0,
            2,
            "soft={soft}: the purged object was served from cache: {:?}",
            got.headers
        );
        assert_eq!(got.body, "first half #2;second half #2", "soft={soft}");
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_304_after_an_invalidation_does_not_revive_the_object() {
    let origin = Scripted::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = start(&config(&origin.url(), dir.path(), "127.0.0.1:0", "")).await;
    let got = get(node.addr(), "/reval/x", &[]).await;
    assert_eq!(got.body, "reval #1");
    tokio::time::sleep(Duration::from_millis(2100)).await;

    // The stale object is being revalidated; the origin holds its 304 back.
    let addr = node.addr();
    let revalidating = tokio::spawn(async move { get(addr, "/reval/x", &[]).await });
    eventually("the conditional request", || async {
        origin.count("/reval/x").1 == 1
    })
    .await;
    let r = admin_post(
        node.admin_addr(),
        "/invalidations",
        r#"{"paths": ["/reval/x"]}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    origin.open(true);
    let got = revalidating.await.unwrap();
    assert_eq!(got.status, 200);

    // The invalidated object was fetched again, unconditionally, and not refreshed by the 304.
    let (all, conditional) = origin.count("/reval/x");
    assert_eq!(conditional, 1);
    assert_eq!(
        all, 3,
        "an unconditional fetch follows the 304 of an invalidated object"
    );
    assert_eq!(got.body, "reval #3");
    let again = get(node.addr(), "/reval/x", &[]).await;
    assert_eq!(again.body, "reval #3");
    assert!(
        again.header("cache-status").contains("hit"),
        "{:?}",
        again.headers
    );
    node.shutdown().await;
}
