//! A peer that fails must never fail a viewer: three `strata serve` processes on 127.0.0.2,
//! .3 and .4 in front of a real origin of large objects; the owner of the keys asked for is
//! killed (SIGKILL) or stalled (SIGSTOP) before it answers or in the middle of its body. The
//! other peers go to the origin themselves, or fetch the rest of the body from it with
//! `Range` + `If-Range`, and every viewer gets the whole, correct body. When the object
//! changed upstream meanwhile, the viewer's response is cut off rather than spliced from
//! two versions.

mod topo;

use http::StatusCode;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;
use topo::*;

const HOST: &str = "cdn.example";

struct Tier {
    origin: BulkOrigin,
    peers: Vec<NodeProcess>,
    /// Member names, in the order of `peers`.
    members: Vec<String>,
    config: strata::config::Resolved,
    _dir: tempfile::TempDir,
}

async fn tier(size: usize) -> Tier {
    let dir = tempfile::tempdir().unwrap();
    let origin = BulkOrigin::start("127.0.0.1", size).await;
    let ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
    let addrs: Vec<(SocketAddr, SocketAddr)> = ips
        .iter()
        .map(|ip| {
            (
                format!("{ip}:{}", free_port(ip)).parse().unwrap(),
                format!("{ip}:{}", free_port(ip)).parse().unwrap(),
            )
        })
        .collect();
    let members: Vec<String> = addrs.iter().map(|(l, _)| l.to_string()).collect();
    let member_names: Vec<&str> = members.iter().map(String::as_str).collect();
    let mut peers = Vec::new();
    let mut first_toml = String::new();
    for (i, (listen, admin)) in addrs.iter().enumerate() {
        let id = format!("peer-{}", i + 2);
        let store = dir.path().join(&id);
        let toml = peer_toml(
            &id,
            *listen,
            *admin,
            &store,
            "256MiB",
            "64MiB",
            &member_names,
            origin.addr,
        );
        if i == 0 {
            first_toml = toml.clone();
        }
        peers.push(NodeProcess::start(&id, *listen, *admin, dir.path(), &toml).await);
    }
    let config = strata::config::Resolved::from_toml(&first_toml, "peer.toml").unwrap();
    Tier {
        origin,
        peers,
        members,
        config,
        _dir: dir,
    }
}

impl Tier {
    /// Which peer (index) owns the cache key of `path`, as every member computes it.
    fn owner(&self, path: &str) -> usize {
        owner_index(&self.config, &self.members, HOST, path)
    }

    /// `n` fresh paths under `prefix` owned by peer `owner`.
    fn paths_owned_by(&self, owner: usize, prefix: &str, n: usize) -> Vec<String> {
        (0..)
            .map(|i| format!("/{prefix}/{i}"))
            .filter(|p| self.owner(p) == owner)
            .take(n)
            .collect()
    }

    async fn peer_metric(&self, at: usize, of: usize, result: &str) -> f64 {
        self.peers[at]
            .metric(&format!(
                "strata_peer_requests_total{{peer=\"{}\",result=\"{result}\"}}",
                self.members[of]
            ))
            .await
    }
}

/// Asks the survivors (peers 1 and 2) for every path at once; returns what each got.
async fn ask_survivors(t: &Tier, paths: &[String]) -> Vec<(String, Result<Got, String>)> {
    let c = client();
    let mut tasks = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let url = format!("http://{}{path}", t.peers[1 + i % 2].listen);
        let (c, path) = (c.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            (path, try_get(&c, &url, &[("host", HOST)]).await)
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

/// Every viewer got 200 and exactly the origin's body.
fn assert_all_whole(t: &Tier, got: &[(String, Result<Got, String>)]) {
    for (path, g) in got {
        let g = g
            .as_ref()
            .unwrap_or_else(|e| panic!("viewer request for {path} failed: {e}"));
        assert_eq!(g.status, StatusCode::OK, "{path}: {}", g.text());
        let want = t.origin.body(path);
        assert_eq!(g.body.len(), want.len(), "{path}: body length");
        assert!(g.body == want, "{path}: the body differs from the origin's");
    }
}

#[test]
fn a_stalled_owner_before_its_first_byte_fails_no_viewer_request() {
    scenario(120, async {
        let t = tier(256 * 1024).await;
        let paths = t.paths_owned_by(0, "stall", 24);
        t.peers[0].signal(libc::SIGSTOP);
        let got = ask_survivors(&t, &paths).await;
        t.peers[0].signal(libc::SIGCONT);
        assert_all_whole(&t, &got);
        let timeouts = t.peer_metric(1, 0, "timeout").await + t.peer_metric(2, 0, "timeout").await;
        assert!(timeouts > 0.0, "the stalled owner was never timed out");
        // Each survivor filled from the origin itself: no ranges were needed.
        assert_eq!(t.origin.ranged.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn a_killed_owner_fails_no_viewer_request() {
    scenario(120, async {
        let mut t = tier(256 * 1024).await;
        let paths = t.paths_owned_by(0, "dead", 24);
        t.peers[0].kill();
        let got = ask_survivors(&t, &paths).await;
        assert_all_whole(&t, &got);
        let failed = t.peer_metric(1, 0, "error").await
            + t.peer_metric(2, 0, "error").await
            + t.peer_metric(1, 0, "down").await
            + t.peer_metric(2, 0, "down").await;
        assert!(failed > 0.0, "the dead owner was never noticed");
    });
}

/// Starts viewers on the survivors for keys the first peer owns, whose bodies the origin
/// drips slowly, and hits the owner with `sig` once the bodies are flowing.
async fn break_owner_mid_body(t: &mut Tier, prefix: &str, sig: i32) -> Answers {
    t.origin.piece_delay_ms.store(10, Ordering::SeqCst);
    let paths = t.paths_owned_by(0, prefix, 8);
    let c = client();
    let mut tasks = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let url = format!("http://{}{path}", t.peers[1 + i % 2].listen);
        let (c, path) = (c.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            (path, try_get(&c, &url, &[("host", HOST)]).await)
        }));
    }
    // Wait until the owner is streaming: the origin has started every body.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while t.origin.full.load(Ordering::SeqCst) < paths.len() as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "the fills never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    if sig == libc::SIGKILL {
        t.peers[0].kill();
    } else {
        t.peers[0].signal(sig);
    }
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    (paths, out)
}

type Answers = (Vec<String>, Vec<(String, Result<Got, String>)>);

#[test]
fn an_owner_stalled_mid_body_is_resumed_from_the_origin() {
    scenario(120, async {
        let mut t = tier(1024 * 1024).await;
        let (paths, got) = break_owner_mid_body(&mut t, "midstall", libc::SIGSTOP).await;
        t.peers[0].signal(libc::SIGCONT);
        assert_all_whole(&t, &got);
        let ranged = t.origin.ranged.load(Ordering::SeqCst);
        assert!(ranged > 0, "no body was resumed with a range");
        assert!(ranged <= paths.len() as u64);
        for ir in t.origin.if_ranges.lock().unwrap().iter() {
            assert!(
                paths.iter().any(|p| *ir == bulk_etag(p, 1)),
                "If-Range {ir} is not the peer's validator"
            );
        }
        let stalls = t.peer_metric(1, 0, "timeout").await + t.peer_metric(2, 0, "timeout").await;
        assert!(stalls > 0.0, "the stall was never detected");
        // What the survivors stored is whole too: ask again, now from their caches.
        let again = ask_survivors(&t, &paths).await;
        assert_all_whole(&t, &again);
    });
}

#[test]
fn an_owner_killed_mid_body_is_resumed_from_the_origin() {
    scenario(120, async {
        let mut t = tier(1024 * 1024).await;
        let (_, got) = break_owner_mid_body(&mut t, "midkill", libc::SIGKILL).await;
        assert_all_whole(&t, &got);
        assert!(
            t.origin.ranged.load(Ordering::SeqCst) > 0,
            "no body was resumed with a range"
        );
    });
}

#[test]
fn an_object_changed_upstream_is_never_spliced() {
    scenario(120, async {
        let mut t = tier(1024 * 1024).await;
        t.origin.piece_delay_ms.store(10, Ordering::SeqCst);
        let paths = t.paths_owned_by(0, "changed", 4);
        let c = client();
        let mut tasks = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            let url = format!("http://{}{path}", t.peers[1 + i % 2].listen);
            let (c, path) = (c.clone(), path.clone());
            tasks.push(tokio::spawn(async move {
                (path, try_get(&c, &url, &[("host", HOST)]).await)
            }));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while t.origin.full.load(Ordering::SeqCst) < paths.len() as u64 {
            assert!(
                std::time::Instant::now() < deadline,
                "the fills never started"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        t.peers[0].signal(libc::SIGSTOP);
        // The object changes before the survivors notice the stall and ask for the rest.
        t.origin.version.store(2, Ordering::SeqCst);
        let whole = |path: &str, body: &[u8]| {
            body == bulk_body(path, 1, t.origin.size) || body == bulk_body(path, 2, t.origin.size)
        };
        let mut cut = Vec::new();
        for task in tasks {
            let (path, got) = task.await.unwrap();
            match got {
                // A viewer that got a complete response got one version, whole (on a busy
                // machine an ask may time out before the owner's head: that survivor then
                // fetched the whole object itself).
                Ok(g) => {
                    assert_eq!(g.status, StatusCode::OK);
                    assert!(
                        whole(&path, &g.body),
                        "{path}: a body spliced from two versions reached a viewer"
                    );
                }
                Err(_) => cut.push(path),
            }
        }
        assert!(
            !cut.is_empty(),
            "no response was cut off: the change was not noticed"
        );
        assert!(
            t.origin.ranged.load(Ordering::SeqCst) == 0,
            "the origin answered a range of a changed object"
        );
        assert!(!t.origin.if_ranges.lock().unwrap().is_empty());
        // Nothing broken was stored: the next viewer of a cut-off object gets the new version
        // whole (the others may be served the version they were filled with).
        t.origin.piece_delay_ms.store(0, Ordering::SeqCst);
        for (path, got) in ask_survivors(&t, &paths).await {
            let g = got.unwrap_or_else(|e| panic!("viewer request for {path} failed: {e}"));
            assert_eq!(g.status, StatusCode::OK);
            if cut.contains(&path) {
                assert!(
                    g.body == bulk_body(&path, 2, t.origin.size),
                    "{path}: after a cut-off fill the next viewer must get the new version"
                );
            } else {
                assert!(whole(&path, &g.body), "{path}: not one whole version");
            }
        }
        t.peers[0].kill();
    });
}
