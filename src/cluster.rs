//! Peers of one tier. Every member agrees on the owner of each cache key by rendezvous
//! hashing (xxh3) over the member list, so a node that misses on a key it does not own asks
//! the owner — one hop, marked with [`PEER_HEADER`] so the owner never forwards it again —
//! and the owner's coalescer turns every such request into one upstream fetch.
//!
//! Membership comes from a static list or a DNS name re-resolved periodically. A peer that
//! fails or does not answer within `peer_timeout` is marked down (the asking node goes to its
//! own upstream), probed with a TCP connect after a back-off, and brought back when it
//! answers. Adding or removing one of N members moves only the keys it owns (about 1/N).
//!
//! This module never decides what is cached: it answers "who owns this key" and sends the
//! one-hop request; the proxy treats the answer like any upstream response.

use crate::config::ClusterConfig;
use crate::metrics::{Metrics, PeerLabels};
use crate::proxy::hop::is_hop_by_hop;
use crate::store::ObjectMeta;
use crate::upstream::UpstreamBody;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{HOST, VIA};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// The request field that marks a request as asked by a peer (value: the asking node's id).
/// A node that receives it serves from its cache or its own upstream, never from a peer; it
/// is never sent to an origin.
pub const PEER_HEADER: &str = "x-strata-peer";

/// Back-off before a down peer is probed: doubles per failure, up to the maximum.
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// One member of the tier.
pub struct Peer {
    /// `HOST:PORT` as configured or resolved: the same string on every member.
    pub name: String,
    seed: u64,
    health: Mutex<Health>,
}

#[derive(Default)]
struct Health {
    /// Not asked until then; probed when it has passed.
    down_until: Option<Instant>,
    failures: u32,
}

impl Peer {
    fn new(name: String) -> Arc<Peer> {
        Arc::new(Peer {
            seed: xxh3_64(name.as_bytes()),
            name,
            health: Mutex::new(Health::default()),
        })
    }

    pub fn is_up(&self) -> bool {
        self.health.lock().down_until.is_none()
    }

    fn mark_down(&self) {
        let mut h = self.health.lock();
        h.failures = h.failures.saturating_add(1);
        let backoff = BACKOFF_START
            .saturating_mul(1 << h.failures.min(8).saturating_sub(1))
            .min(BACKOFF_MAX);
        h.down_until = Some(Instant::now() + backoff);
    }

    fn mark_up(&self) {
        let mut h = self.health.lock();
        if h.down_until.take().is_some() {
            tracing::info!(peer = %self.name, "peer is back");
        }
        h.failures = 0;
    }

    fn probe_due(&self, now: Instant) -> bool {
        self.health.lock().down_until.is_some_and(|t| t <= now)
    }
}

/// The rendezvous score of a member for a key: the member with the highest score owns it.
pub fn score(member: &str, key: &str) -> u64 {
    xxh3_64_with_seed(key.as_bytes(), xxh3_64(member.as_bytes()))
}

/// The owner of `key` among `members` (by name), or `None` when there are none.
pub fn owner_of<'a>(members: impl IntoIterator<Item = &'a str>, key: &str) -> Option<&'a str> {
    members.into_iter().max_by_key(|m| (score(m, key), *m))
}

/// Why a peer did not answer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("peer {peer} is down")]
    Down { peer: String },
    #[error("peer {peer} did not answer within {timeout:?}")]
    Timeout { peer: String, timeout: Duration },
    #[error("peer {peer} failed: {detail}")]
    Failed { peer: String, detail: String },
}

/// This node's view of its tier.
pub struct Cluster {
    members: ArcSwap<Vec<Arc<Peer>>>,
    /// This node's member name, if it is one of the members.
    self_name: Option<String>,
    /// The addresses this node is known by, to find itself in a DNS answer.
    self_addrs: Vec<String>,
    timeout: Duration,
    client: Client<HttpConnector, UpstreamBody>,
    node_id: HeaderValue,
    metrics: Arc<Metrics>,
    dns: Option<String>,
    dns_refresh: Duration,
}

impl Cluster {
    /// Builds the cluster view from `[cluster]`, resolving `peers_dns` once (a failure there
    /// leaves the member list empty until the next refresh: the node then uses its own
    /// upstream for everything).
    pub async fn new(
        cfg: &ClusterConfig,
        listen: SocketAddr,
        node_id: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Cluster>, String> {
        let mut self_addrs = vec![listen.to_string()];
        if let Some(s) = &cfg.self_addr {
            self_addrs.insert(0, s.clone());
        }
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(cfg.peer_timeout.get()));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(http);
        let node_id = HeaderValue::from_str(node_id)
            .map_err(|e| format!("node id `{node_id}` is not a header value: {e}"))?;
        let cluster = Cluster {
            members: ArcSwap::from_pointee(Vec::new()),
            self_name: None,
            self_addrs,
            timeout: cfg.peer_timeout.get(),
            client,
            node_id,
            metrics,
            dns: cfg.peers_dns.clone(),
            dns_refresh: cfg.dns_refresh.get(),
        };
        let mut cluster = cluster;
        if cluster.dns.is_none() {
            let names: Vec<String> = cfg.peers.clone();
            cluster.self_name = names
                .iter()
                .find(|n| cluster.self_addrs.iter().any(|s| s == *n))
                .cloned();
            cluster.set_members(names);
        } else {
            cluster.self_name = cfg.self_addr.clone().or(Some(listen.to_string()));
            if let Err(e) = cluster.refresh_dns().await {
                tracing::warn!(error = %e, "cannot resolve cluster.peers_dns yet; using no peers");
            }
        }
        Ok(Arc::new(cluster))
    }

    fn set_members(&self, mut names: Vec<String>) {
        names.sort();
        names.dedup();
        let old = self.members.load();
        let peers = names
            .into_iter()
            .map(|n| {
                old.iter()
                    .find(|p| p.name == n)
                    .cloned()
                    .unwrap_or_else(|| Peer::new(n))
            })
            .collect::<Vec<_>>();
        let changed =
            peers.len() != old.len() || peers.iter().zip(old.iter()).any(|(a, b)| a.name != b.name);
        if changed {
            tracing::info!(members = ?peers.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), "cluster membership");
        }
        self.members.store(Arc::new(peers));
    }

    async fn refresh_dns(&self) -> Result<(), String> {
        let Some(name) = &self.dns else {
            return Ok(());
        };
        let addrs = tokio::time::timeout(
            self.timeout.max(Duration::from_secs(2)),
            tokio::net::lookup_host(name.as_str()),
        )
        .await
        .map_err(|_| format!("resolving {name} timed out"))?
        .map_err(|e| format!("cannot resolve {name}: {e}"))?;
        let names: Vec<String> = addrs.map(|a| a.to_string()).collect();
        if names.is_empty() {
            return Err(format!("{name} resolved to no address"));
        }
        self.set_members(names);
        Ok(())
    }

    /// The members' names, sorted.
    pub fn members(&self) -> Vec<String> {
        self.members.load().iter().map(|p| p.name.clone()).collect()
    }

    /// The peer that owns `key`, when it is not this node.
    pub fn owner(&self, key: &str) -> Option<Arc<Peer>> {
        let members = self.members.load();
        let owner = members
            .iter()
            .max_by_key(|p| (xxh3_64_with_seed(key.as_bytes(), p.seed), p.name.as_str()))?;
        if self.self_name.as_deref() == Some(owner.name.as_str()) {
            return None;
        }
        Some(owner.clone())
    }

    /// How long a peer may take to send a response head or the next piece of a body.
    pub fn peer_timeout(&self) -> Duration {
        self.timeout
    }

    /// A peer's response body broke off (`stalled`: no data within `peer_timeout`): the
    /// peer is marked down like one that failed before its response head.
    pub fn body_failed(&self, peer: &Peer, stalled: bool) {
        peer.mark_down();
        self.count(peer, if stalled { "timeout" } else { "error" });
        tracing::warn!(peer = %peer.name, stalled, "peer's body broke off; marked down");
    }

    fn count(&self, peer: &Peer, result: &'static str) {
        self.metrics
            .peer_requests
            .get_or_create(&PeerLabels {
                peer: peer.name.clone(),
                result,
            })
            .inc();
    }

    /// Asks `peer` for the object a viewer's request names: the whole object (the viewer's
    /// preconditions and ranges are answered from the response afterwards), or a
    /// revalidation of `stored`. Fails fast when the peer is down; a peer that fails or does
    /// not answer within `peer_timeout` is marked down.
    pub async fn ask(
        &self,
        peer: &Peer,
        viewer: &Parts,
        client_ip: IpAddr,
        via: &HeaderValue,
        stored: Option<&ObjectMeta>,
    ) -> Result<Response<Incoming>, PeerError> {
        if !peer.is_up() {
            self.count(peer, "down");
            return Err(PeerError::Down {
                peer: peer.name.clone(),
            });
        }
        let req = self
            .peer_request(peer, viewer, client_ip, via, stored)
            .map_err(|detail| PeerError::Failed {
                peer: peer.name.clone(),
                detail,
            })?;
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Ok(Ok(resp)) if resp.status() != http::StatusCode::LOOP_DETECTED => {
                peer.mark_up();
                self.count(peer, "ok");
                Ok(resp)
            }
            Ok(Ok(_)) => {
                self.count(peer, "error");
                Err(PeerError::Failed {
                    peer: peer.name.clone(),
                    detail: "the peer refused the request as a loop (508)".into(),
                })
            }
            Ok(Err(e)) => {
                peer.mark_down();
                self.count(peer, "error");
                tracing::warn!(peer = %peer.name, error = %e, "peer failed; marked down");
                Err(PeerError::Failed {
                    peer: peer.name.clone(),
                    detail: e.to_string(),
                })
            }
            Err(_) => {
                peer.mark_down();
                self.count(peer, "timeout");
                tracing::warn!(peer = %peer.name, timeout = ?self.timeout, "peer too slow; marked down");
                Err(PeerError::Timeout {
                    peer: peer.name.clone(),
                    timeout: self.timeout,
                })
            }
        }
    }

    fn peer_request(
        &self,
        peer: &Peer,
        viewer: &Parts,
        client_ip: IpAddr,
        via: &HeaderValue,
        stored: Option<&ObjectMeta>,
    ) -> Result<Request<UpstreamBody>, String> {
        let pq = viewer.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri: Uri = format!("http://{}{pq}", peer.name)
            .parse()
            .map_err(|e| format!("bad peer URI: {e}"))?;
        let listed = crate::proxy::hop::connection_listed(&viewer.headers);
        let mut h = http::HeaderMap::with_capacity(viewer.headers.len() + 4);
        for (name, value) in &viewer.headers {
            let n = name.as_str();
            let dropped = is_hop_by_hop(n)
                || listed.iter().any(|l| l == n)
                || n == PEER_HEADER
                || n == "range"
                || n.starts_with("if-");
            if !dropped {
                h.append(name.clone(), value.clone());
            }
        }
        // The owner keys on the viewer's host: an HTTP/2 viewer gave it as the authority.
        let host = crate::policy::key::host_of(&viewer.uri, &viewer.headers);
        h.insert(
            HOST,
            HeaderValue::from_str(&host).map_err(|e| e.to_string())?,
        );
        let mut v = String::new();
        for existing in viewer.headers.get_all(VIA) {
            if let Ok(s) = existing.to_str() {
                v.push_str(s);
                v.push_str(", ");
            }
        }
        v.push_str(via.to_str().unwrap_or(""));
        h.insert(VIA, HeaderValue::from_str(&v).map_err(|e| e.to_string())?);
        let xff = HeaderName::from_static("x-forwarded-for");
        let mut x = String::new();
        for existing in viewer.headers.get_all(&xff) {
            if let Ok(s) = existing.to_str() {
                x.push_str(s);
                x.push_str(", ");
            }
        }
        x.push_str(&client_ip.to_string());
        h.insert(xff, HeaderValue::from_str(&x).map_err(|e| e.to_string())?);
        h.insert(HeaderName::from_static(PEER_HEADER), self.node_id.clone());
        if let Some(meta) = stored {
            if let Some(etag) = meta.headers.get(http::header::ETAG) {
                h.insert(http::header::IF_NONE_MATCH, etag.clone());
            }
            if let Some(lm) = meta.headers.get(http::header::LAST_MODIFIED) {
                h.insert(http::header::IF_MODIFIED_SINCE, lm.clone());
            }
        }
        let method = if viewer.method == Method::OPTIONS {
            Method::OPTIONS
        } else {
            Method::GET
        };
        let body: UpstreamBody = Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed();
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .body(body)
            .map_err(|e| e.to_string())?;
        *req.headers_mut() = h;
        Ok(req)
    }

    /// Re-resolves `peers_dns` every `dns_refresh` and probes down peers whose back-off has
    /// passed, until `stop` changes.
    pub async fn maintain(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let tick = Duration::from_millis(250);
        let mut next_dns = Instant::now() + self.dns_refresh;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.changed() => return,
            }
            let now = Instant::now();
            if self.dns.is_some() && now >= next_dns {
                next_dns = now + self.dns_refresh;
                if let Err(e) = self.refresh_dns().await {
                    tracing::warn!(error = %e, "cluster DNS refresh failed; keeping the members");
                }
            }
            let due: Vec<Arc<Peer>> = self
                .members
                .load()
                .iter()
                .filter(|p| p.probe_due(now))
                .cloned()
                .collect();
            for peer in due {
                let timeout = self.timeout;
                let name = peer.name.clone();
                let up = matches!(
                    tokio::time::timeout(timeout, tokio::net::TcpStream::connect(name.as_str()))
                        .await,
                    Ok(Ok(_))
                );
                if up {
                    peer.mark_up();
                } else {
                    peer.mark_down();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{}:8080", i + 1)).collect()
    }

    #[test]
    fn every_member_agrees_and_keys_spread_evenly() {
        let members = names(3);
        let mut per = [0usize; 3];
        for k in 0..30_000 {
            let key = format!("GET|example.com|/obj/{k}");
            let o = owner_of(members.iter().map(String::as_str), &key).unwrap();
            per[members.iter().position(|m| m == o).unwrap()] += 1;
        }
        for n in per {
            assert!((9_000..11_000).contains(&n), "uneven spread: {per:?}");
        }
    }

    #[test]
    fn a_membership_change_moves_about_one_nth_of_the_keys() {
        let four = names(4);
        let three: Vec<String> = four[..3].to_vec();
        let keys: Vec<String> = (0..20_000).map(|k| format!("k{k}")).collect();
        let moved = keys
            .iter()
            .filter(|k| {
                owner_of(three.iter().map(String::as_str), k)
                    != owner_of(four.iter().map(String::as_str), k)
            })
            .count();
        // Adding a fourth member moves only the keys it now owns: about 1/4.
        let share = moved as f64 / keys.len() as f64;
        assert!((0.22..0.28).contains(&share), "moved {share}");
        // And every moved key moved to the new member.
        for k in &keys {
            let before = owner_of(three.iter().map(String::as_str), k).unwrap();
            let after = owner_of(four.iter().map(String::as_str), k).unwrap();
            assert!(before == after || after == four[3]);
        }
    }

    #[test]
    fn a_failing_peer_backs_off_and_comes_back() {
        let p = Peer::new("127.0.0.1:1".into());
        assert!(p.is_up());
        p.mark_down();
        assert!(!p.is_up());
        assert!(!p.probe_due(Instant::now()));
        assert!(p.probe_due(Instant::now() + BACKOFF_START));
        p.mark_down();
        assert!(!p.probe_due(Instant::now() + BACKOFF_START));
        p.mark_up();
        assert!(p.is_up());
    }
}
