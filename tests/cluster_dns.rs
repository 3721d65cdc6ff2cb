//! DNS membership end to end: a DNS server on loopback (a small UDP responder built on
//! hickory-proto) answers A records for the tier's name; three nodes on 127.0.0.2-4 resolve
//! their members through it (`cluster.dns_servers`). When the answer shrinks to two
//! addresses, every node's membership follows within `dns_refresh`, and only the keys the
//! departed member owned (about 1/3) move.

mod topo;

use hickory_proto::op::{Message, OpCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use http::StatusCode;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strata::metrics::PeerLabels;
use topo::*;

const NAME: &str = "peers.strata.test.";
const HOST: &str = "cdn.example";

/// A DNS server on 127.0.0.1 that answers A queries for [`NAME`] with the current list
/// (TTL 1 s) and every other query with an empty answer. Counts the A queries.
struct Dns {
    addr: SocketAddr,
    answer: Arc<Mutex<Vec<Ipv4Addr>>>,
    queries: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Dns {
    async fn start(ips: &[Ipv4Addr]) -> Dns {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(ips.to_vec()));
        let queries = Arc::new(AtomicU64::new(0));
        let (a, q) = (answer.clone(), queries.clone());
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                let Ok(req) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut resp = Message::response(req.metadata.id, OpCode::Query);
                resp.metadata.authoritative = true;
                resp.metadata.recursion_desired = req.metadata.recursion_desired;
                resp.metadata.recursion_available = true;
                for query in &req.queries {
                    resp.add_query(query.clone());
                    let ours = query.name().to_ascii().eq_ignore_ascii_case(NAME);
                    if ours && query.query_type() == RecordType::A {
                        q.fetch_add(1, Ordering::SeqCst);
                        for ip in a.lock().unwrap().iter() {
                            resp.add_answer(Record::from_rdata(
                                query.name().clone(),
                                1,
                                RData::A(A(*ip)),
                            ));
                        }
                    }
                }
                if let Ok(bytes) = resp.to_vec() {
                    let _ = sock.send_to(&bytes, from).await;
                }
            }
        });
        Dns {
            addr,
            answer,
            queries,
            task,
        }
    }

    fn set(&self, ips: &[Ipv4Addr]) {
        *self.answer.lock().unwrap() = ips.to_vec();
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A port free on 127.0.0.2, .3 and .4 at once (DNS gives addresses; the port is shared).
fn shared_port() -> u16 {
    for _ in 0..100 {
        let p = free_port("127.0.0.2");
        if ["127.0.0.3", "127.0.0.4"]
            .iter()
            .all(|ip| std::net::TcpListener::bind((*ip, p)).is_ok())
        {
            return p;
        }
    }
    panic!("no port free on all three addresses");
}

#[test]
fn membership_follows_dns_and_moves_about_a_third_of_the_keys() {
    scenario(120, async {
        let dir = tempfile::tempdir().unwrap();
        let origin = TestOrigin::start("origin", "127.0.0.1", Duration::ZERO).await;
        let ips: Vec<Ipv4Addr> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let dns = Dns::start(&ips).await;
        let port = shared_port();
        let refresh = Duration::from_millis(500);
        let mut nodes = Vec::new();
        for (i, ip) in ips.iter().enumerate() {
            let id = format!("peer-{}", i + 2);
            let toml = format!(
                r#"{section}
[cluster]
peers_dns = "{name}:{port}"
dns_servers = ["{dns}"]
dns_refresh = "{refresh}ms"
peer_timeout = "1s"

[[origins]]
id = "origin"
url = "http://{origin}"

[default_behavior]
origin = "origin"
"#,
                section = node_section(&id, &ip.to_string(), port, dir.path()),
                name = NAME.trim_end_matches('.'),
                dns = dns.addr,
                refresh = refresh.as_millis(),
                origin = origin.addr,
            );
            nodes.push(node(&toml).await);
        }
        let name = |ip: &Ipv4Addr| format!("{ip}:{port}");
        let all: Vec<String> = ips.iter().map(name).collect();
        for n in &nodes {
            let members = n.proxy.cluster.load_full().unwrap().members();
            assert_eq!(members, all, "members resolved at start");
        }
        assert!(dns.queries.load(Ordering::SeqCst) >= 3);

        // Traffic through the first node: the keys spread over all three owners.
        let c = client();
        let first = nodes[0].addr();
        let mut asked_third = 0;
        for k in 0..30 {
            let got = get(&c, &format!("http://{first}/k/{k}"), &[("host", HOST)]).await;
            assert_eq!(got.status, StatusCode::OK);
            asked_third += usize::from(got.header("cache-status").contains("peer-4"));
        }
        assert!(asked_third > 0, "the third member never owned a key");
        let owners = |n: &strata::server::Node| -> Vec<Option<String>> {
            let cl = n.proxy.cluster.load_full().unwrap();
            (0..3000)
                .map(|k| cl.owner(&format!("{HOST}/key/{k}")).map(|p| p.name.clone()))
                .collect()
        };
        let before: Vec<_> = nodes.iter().map(owners).collect();

        // The DNS answer loses the third address: every node follows within dns_refresh.
        dns.set(&ips[..2]);
        let changed = Instant::now();
        let two: Vec<String> = all[..2].to_vec();
        loop {
            if nodes
                .iter()
                .all(|n| n.proxy.cluster.load_full().unwrap().members() == two)
            {
                break;
            }
            // dns_refresh, plus the maintenance tick (250 ms), plus slack for a busy machine.
            assert!(
                changed.elapsed() < refresh + Duration::from_millis(250 + 500),
                "membership did not follow the DNS change in time"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = changed.elapsed();
        assert!(
            dns.queries.load(Ordering::SeqCst) > 3,
            "the name was never asked again"
        );
        eprintln!("membership followed DNS in {took:?} (dns_refresh {refresh:?})");

        // Only the departed member's keys moved: about a third, all of them its own.
        let gone = &all[2];
        for (i, (n, before)) in nodes.iter().zip(&before).enumerate() {
            let after = owners(n);
            let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
            let share = moved as f64 / before.len() as f64;
            assert!((0.27..0.40).contains(&share), "moved {share}");
            for (b, a) in before.iter().zip(&after) {
                if b != a {
                    let owner_before = b.clone().unwrap_or_else(|| name(&ips[i]));
                    assert_eq!(
                        &owner_before, gone,
                        "a key moved that the departed member did not own"
                    );
                }
            }
        }

        // And traffic follows: the first node no longer asks the departed member.
        let asked = |n: &strata::server::Node| {
            n.proxy
                .metrics
                .peer_requests
                .get_or_create(&PeerLabels {
                    peer: gone.clone(),
                    result: "ok",
                })
                .get()
        };
        let asked_before = asked(&nodes[0]);
        for k in 100..130 {
            let got = get(&c, &format!("http://{first}/k/{k}"), &[("host", HOST)]).await;
            assert_eq!(got.status, StatusCode::OK);
            assert!(!got.header("cache-status").contains("peer-4"));
        }
        assert_eq!(asked(&nodes[0]), asked_before);
        for n in nodes {
            n.shutdown().await;
        }
    });
}
