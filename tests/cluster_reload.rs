//! SIGHUP applies `[cluster]` changes without a restart: three `strata serve` processes on
//! 127.0.0.2-4; the first starts knowing only two members, learns the third on a reload and
//! then forgets the second on another. `strata_cluster_member{peer}` shows the members, and
//! keys move to (and away from) the members as the list says.

mod topo;

use http::StatusCode;
use std::net::SocketAddr;
use std::time::Duration;
use topo::*;

const HOST: &str = "cdn.example";

fn toml(
    id: &str,
    listen: SocketAddr,
    admin: SocketAddr,
    store: &str,
    members: &[&String],
    origin: SocketAddr,
) -> String {
    let members: Vec<&str> = members.iter().map(|m| m.as_str()).collect();
    let store = std::path::Path::new(store);
    peer_toml(id, listen, admin, store, "64MiB", "32MiB", &members, origin)
}

async fn metrics_text(admin: SocketAddr) -> String {
    get(&client(), &format!("http://{admin}/metrics"), &[])
        .await
        .text()
}

/// The `strata_cluster_member` series of a node: peer → value.
async fn members_shown(admin: SocketAddr) -> std::collections::BTreeMap<String, f64> {
    metrics_text(admin)
        .await
        .lines()
        .filter_map(|l| l.strip_prefix("strata_cluster_member{peer=\""))
        .filter_map(|l| l.split_once("\"} "))
        .map(|(peer, v)| (peer.to_string(), v.trim().parse().unwrap_or(f64::NAN)))
        .collect()
}

async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !f().await {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn sighup_adds_and_removes_peers_without_a_restart() {
    scenario(120, async {
        let dir = tempfile::tempdir().unwrap();
        let origin = TestOrigin::start("origin", "127.0.0.1", Duration::ZERO).await;
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
        let names: Vec<String> = addrs.iter().map(|(l, _)| l.to_string()).collect();
        let (a, b, c) = (&names[0], &names[1], &names[2]);
        let store = |id: &str| dir.path().join(id).display().to_string();
        let mut nodes = Vec::new();
        for (i, (listen, admin)) in addrs.iter().enumerate() {
            let id = format!("peer-{}", i + 2);
            let members: Vec<&String> = if i == 0 { vec![a, b] } else { vec![a, b, c] };
            let text = toml(&id, *listen, *admin, &store(&id), &members, origin.addr);
            nodes.push(NodeProcess::start(&id, *listen, *admin, dir.path(), &text).await);
        }
        let first = &nodes[0];
        let all3 = strata::config::Resolved::from_toml(
            &toml(
                "x",
                addrs[0].0,
                addrs[0].1,
                &store("x"),
                &[a, b, c],
                origin.addr,
            ),
            "x.toml",
        )
        .unwrap();
        let owned_by = |who: usize, prefix: &str| -> Vec<String> {
            (0..)
                .map(|i| format!("/{prefix}/{i}"))
                .filter(|p| owner_index(&all3, &names, HOST, p) == who)
                .take(6)
                .collect()
        };
        let cl = client();
        let ask = |path: String| {
            let cl = cl.clone();
            let url = format!("http://{}{path}", first.listen);
            async move { get(&cl, &url, &[("host", HOST)]).await }
        };
        let asked = |peer: &String, result: &str| {
            format!("strata_peer_requests_total{{peer=\"{peer}\",result=\"{result}\"}}")
        };

        // Two members known: the third is neither shown nor asked.
        let shown = members_shown(first.admin).await;
        assert_eq!(shown.keys().collect::<Vec<_>>(), vec![a, b], "{shown:?}");
        assert!(shown.values().all(|&v| v == 1.0), "{shown:?}");
        for p in owned_by(2, "before") {
            let got = ask(p).await;
            assert_eq!(got.status, StatusCode::OK);
            assert!(!got.header("cache-status").contains("peer-4"));
        }
        assert_eq!(first.metric(&asked(c, "ok")).await, 0.0);

        // SIGHUP with the third member added: shown, and asked for the keys it owns.
        let text = toml(
            "peer-2",
            addrs[0].0,
            addrs[0].1,
            &store("peer-2"),
            &[a, b, c],
            origin.addr,
        );
        std::fs::write(&first.config, text).unwrap();
        first.signal(libc::SIGHUP);
        until("the third member is shown", || async {
            members_shown(first.admin).await.len() == 3
        })
        .await;
        let keys = owned_by(2, "after-add");
        for p in &keys {
            let got = ask(p.clone()).await;
            assert_eq!(got.status, StatusCode::OK);
            assert!(
                got.header("cache-status").contains("peer-4"),
                "{p}: the new owner was not asked: {}",
                got.header("cache-status")
            );
        }
        assert_eq!(first.metric(&asked(c, "ok")).await, keys.len() as f64);

        // SIGHUP with the second member removed: gone from the gauge, and no longer asked.
        let b_before = first.metric(&asked(b, "ok")).await;
        let text = toml(
            "peer-2",
            addrs[0].0,
            addrs[0].1,
            &store("peer-2"),
            &[a, c],
            origin.addr,
        );
        std::fs::write(&first.config, text).unwrap();
        first.signal(libc::SIGHUP);
        until("the second member is gone", || async {
            !members_shown(first.admin).await.contains_key(b)
        })
        .await;
        assert_eq!(
            members_shown(first.admin).await.keys().collect::<Vec<_>>(),
            vec![a, c]
        );
        for p in owned_by(1, "after-remove") {
            let got = ask(p).await;
            assert_eq!(got.status, StatusCode::OK);
            assert!(!got.header("cache-status").contains("peer-3"));
        }
        assert_eq!(first.metric(&asked(b, "ok")).await, b_before);
        assert_eq!(
            first
                .metric("strata_config_reloads_total{result=\"ok\"}")
                .await,
            2.0
        );
        // The node kept running throughout: the same process answers.
        drop(nodes);
    });
}
