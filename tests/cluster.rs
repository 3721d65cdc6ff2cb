//! Peers of one tier for real: three `strata serve` processes on 127.0.0.2, .3 and .4, in
//! front of a shield, in front of an origin. Viewers spread over the peers; the owner of a
//! key (rendezvous hashing) makes the one upstream fetch.

mod topo;

use http::StatusCode;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use topo::*;

const HOST: &str = "cdn.example";

struct Tier {
    origin: TestOrigin,
    shield: strata::server::Node,
    peers: Vec<NodeProcess>,
    _dir: tempfile::TempDir,
}

async fn tier(origin_delay: Duration) -> Tier {
    let dir = tempfile::tempdir().unwrap();
    let origin = TestOrigin::start("origin", "127.0.0.1", origin_delay).await;
    let shield = node(&format!(
        r#"{}
[[origins]]
id = "origin"
url = "http://{}"

[default_behavior]
origin = "origin"
"#,
        node_section("shield", "127.0.0.1", 0, dir.path()),
        origin.addr
    ))
    .await;
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
    let members: Vec<&str> = members.iter().map(String::as_str).collect();
    let mut peers = Vec::new();
    for (i, (listen, admin)) in addrs.iter().enumerate() {
        let id = format!("peer-{}", i + 2);
        let store = dir.path().join(&id);
        let toml = peer_toml(
            &id,
            *listen,
            *admin,
            &store,
            "64MiB",
            "32MiB",
            &members,
            shield.addr(),
        );
        peers.push(NodeProcess::start(&id, *listen, *admin, dir.path(), &toml).await);
    }
    Tier {
        origin,
        shield,
        peers,
        _dir: dir,
    }
}

fn cache_status_ids(cs: &str) -> Vec<String> {
    cs.split(',')
        .filter_map(|m| m.split(';').next())
        .map(|s| s.trim().to_string())
        .collect()
}

#[test]
fn three_hundred_requests_over_three_peers_make_one_origin_request() {
    scenario(90, async {
        let t = tier(Duration::from_millis(300)).await;
        let c = client();
        let mut tasks = Vec::new();
        for i in 0..300 {
            let p = &t.peers[i % 3];
            let (url, id, c) = (
                format!("http://{}/obj/one", p.listen),
                p.id.clone(),
                c.clone(),
            );
            tasks.push(tokio::spawn(async move {
                (id, get(&c, &url, &[("host", HOST)]).await)
            }));
        }
        let mut owner_counts = std::collections::HashMap::<String, usize>::new();
        for task in tasks {
            let (id, got) = task.await.unwrap();
            assert_eq!(got.status, StatusCode::OK);
            assert_eq!(got.text(), "origin:/obj/one");
            let ids = cache_status_ids(&got.header("cache-status"));
            assert!(ids.contains(&id), "{id} missing in {ids:?}");
            assert!(
                ids.contains(&"shield".to_string()),
                "shield missing in {ids:?}"
            );
            assert_eq!(
                ids.last(),
                Some(&id),
                "the answering peer's member comes last"
            );
            for peer_id in ids.iter().filter(|x| x.starts_with("peer-")) {
                *owner_counts.entry(peer_id.clone()).or_default() += 1;
            }
        }
        assert_eq!(t.origin.count(), 1, "the origin sees exactly one request");
        assert_eq!(
            t.shield
                .proxy
                .metrics
                .requests_total(strata::proxy::hop::Outcome::Miss),
            1,
            "the shield sees exactly one request: the owner's"
        );
        // The owner appears in every response (its own and those of the peers that asked it).
        assert!(
            owner_counts.values().any(|&n| n == 300),
            "no single owner named in every response: {owner_counts:?}"
        );
        t.shield.shutdown().await;
    });
}

#[test]
fn a_peer_killed_mid_run_fails_no_viewer_request_and_comes_back() {
    scenario(120, async {
        let mut t = tier(Duration::from_millis(20)).await;
        let c = client();
        let failures = Arc::new(AtomicU64::new(0));
        let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let survivors: Vec<SocketAddr> = t.peers[1..].iter().map(|p| p.listen).collect();
        let all: Vec<SocketAddr> = t.peers.iter().map(|p| p.listen).collect();

        // Viewers keep asking for many keys; once the peer is dead they use the survivors
        // only (a load balancer's job), but the survivors keep owning-peer routes to it
        // until they notice.
        let mut workers = Vec::new();
        for w in 0..8u64 {
            let (c, failures, killed, survivors, all) = (
                c.clone(),
                failures.clone(),
                killed.clone(),
                survivors.clone(),
                all.clone(),
            );
            workers.push(tokio::spawn(async move {
                for i in 0..120u64 {
                    let targets = if killed.load(Ordering::SeqCst) {
                        &survivors
                    } else {
                        &all
                    };
                    let peer = targets[((w + i) as usize) % targets.len()];
                    let url = format!("http://{peer}/k/{}", (w * 1000 + i) % 300);
                    match try_get(&c, &url, &[("host", HOST)]).await {
                        Ok(g) if g.status == StatusCode::OK => {}
                        Ok(g) if peer == all[0] => drop(g), // the dead peer's own viewers
                        Err(_) if peer == all[0] => {}
                        other => {
                            let what = other
                                .map(|g| format!("{} {}", g.status, g.text()))
                                .unwrap_or_else(|e| e);
                            eprintln!("viewer request to {peer} failed: {what}");
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        killed.store(true, Ordering::SeqCst);
        t.peers[0].kill();
        for w in workers {
            w.await.unwrap();
        }
        assert_eq!(
            failures.load(Ordering::SeqCst),
            0,
            "no viewer request on a live peer failed"
        );
        let dead = t.peers[0].listen.to_string();
        let errors = t.peers[1]
            .metric(&format!(
                "strata_peer_requests_total{{peer=\"{dead}\",result=\"error\"}}"
            ))
            .await
            + t.peers[1]
                .metric(&format!(
                    "strata_peer_requests_total{{peer=\"{dead}\",result=\"down\"}}"
                ))
                .await
            + t.peers[2]
                .metric(&format!(
                    "strata_peer_requests_total{{peer=\"{dead}\",result=\"error\"}}"
                ))
                .await
            + t.peers[2]
                .metric(&format!(
                    "strata_peer_requests_total{{peer=\"{dead}\",result=\"down\"}}"
                ))
                .await;
        assert!(errors > 0.0, "the survivors noticed the dead peer");

        // Brought back: probed, then asked again.
        t.peers[0].restart().await;
        let ok_series = format!("strata_peer_requests_total{{peer=\"{dead}\",result=\"ok\"}}");
        let before = t.peers[1].metric(&ok_series).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut k = 0;
        loop {
            k += 1;
            let got = get(
                &c,
                &format!("http://{}/back/{k}", t.peers[1].listen),
                &[("host", HOST)],
            )
            .await;
            assert_eq!(got.status, StatusCode::OK);
            if t.peers[1].metric(&ok_series).await > before {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the restarted peer was never asked again"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        t.shield.shutdown().await;
    });
}
