//! The node's Prometheus metrics (SPEC.md names them). Handles for the per-request counters
//! are resolved once at start, so the request path only increments atomics.

use crate::proxy::hop::Outcome;
use crate::store::StoreStats;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OriginLabels {
    pub origin: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub peer: String,
    pub result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Vec<Counter>,
    durations: Vec<Histogram>,
    pub origin_requests: Family<OriginLabels, Counter>,
    pub coalesced: Counter,
    pub peer_requests: Family<PeerLabels, Counter>,
    /// One series per current member of this node's tier: 1 while it is up, 0 while it is
    /// marked down; a member that leaves loses its series.
    pub cluster_members: Family<MemberLabels, Gauge>,
    store_objects: Gauge,
    store_bytes: Gauge,
    index_memory: Gauge,
    memory_bytes: Gauge,
    store_degraded: Gauge,
    pub invalidations: Counter,
    pub purges: Counter,
    pub recovery_seconds: Gauge<f64, AtomicU64>,
    /// Objects the store found when it opened (restart recovery).
    pub recovered_objects: Gauge,
    pub invalidation_rules: Gauge,
    pub invalidation_reclaimed: Counter,
    pub surrogate_keys: Gauge,
    pub access_log_dropped: Counter,
    pub reloads: Family<ReloadLabels, Counter>,
    pub ready: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberLabels {
    pub peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let req_family = Family::<ResultLabels, Counter>::default();
        registry.register(
            "strata_requests",
            "Viewer requests by result",
            req_family.clone(),
        );
        let dur_family = Family::<ResultLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        registry.register(
            "strata_request_duration_seconds",
            "Time to the response head, by result",
            dur_family.clone(),
        );
        let requests = Outcome::ALL
            .iter()
            .map(|o| {
                req_family
                    .get_or_create(&ResultLabels {
                        result: o.metric_label(),
                    })
                    .clone()
            })
            .collect();
        let durations = Outcome::ALL
            .iter()
            .map(|o| {
                dur_family
                    .get_or_create(&ResultLabels {
                        result: o.metric_label(),
                    })
                    .clone()
            })
            .collect();
        let origin_requests = Family::<OriginLabels, Counter>::default();
        registry.register(
            "strata_origin_requests",
            "Requests sent upstream, by origin and status (error: no response)",
            origin_requests.clone(),
        );
        let coalesced = Counter::default();
        registry.register(
            "strata_coalesced_requests",
            "Requests served by another request's fill",
            coalesced.clone(),
        );
        let peer_requests = Family::<PeerLabels, Counter>::default();
        registry.register(
            "strata_peer_requests",
            "Requests forwarded to peers, by peer and result",
            peer_requests.clone(),
        );
        let cluster_members = Family::<MemberLabels, Gauge>::default();
        registry.register(
            "strata_cluster_member",
            "Members of this node's tier ([cluster]): 1 up, 0 marked down",
            cluster_members.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let store_objects = gauge(
            &mut registry,
            "strata_store_objects",
            "Objects in the store",
        );
        let store_bytes = gauge(&mut registry, "strata_store_bytes", "Bytes the store holds");
        let index_memory = gauge(
            &mut registry,
            "strata_index_memory_bytes",
            "Memory used by the store's index",
        );
        let memory_bytes = gauge(
            &mut registry,
            "strata_store_memory_bytes",
            "Bytes of bodies held in RAM",
        );
        let store_degraded = gauge(
            &mut registry,
            "strata_store_degraded",
            "1 while the store refuses new objects (disk full or failing)",
        );
        let invalidations = Counter::default();
        registry.register(
            "strata_invalidations",
            "Invalidation requests accepted",
            invalidations.clone(),
        );
        let purges = Counter::default();
        registry.register("strata_purges", "Purge requests accepted", purges.clone());
        let recovery_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "strata_store_recovery_seconds",
            "Time the store took to open at start",
            recovery_seconds.clone(),
        );
        let recovered_objects = gauge(
            &mut registry,
            "strata_store_recovered_objects",
            "Objects the store found when it opened at start (restart recovery)",
        );
        let invalidation_rules = gauge(
            &mut registry,
            "strata_invalidation_rules",
            "Live invalidation rules (path patterns hiding older objects)",
        );
        let invalidation_reclaimed = Counter::default();
        registry.register(
            "strata_invalidation_reclaimed_objects",
            "Objects removed from the store by invalidation reclaim passes",
            invalidation_reclaimed.clone(),
        );
        let surrogate_keys = gauge(
            &mut registry,
            "strata_surrogate_keys",
            "Surrogate-Key tags in the purge index",
        );
        let access_log_dropped = Counter::default();
        registry.register(
            "strata_access_log_dropped",
            "Access log lines dropped because the writer was behind (or a line outgrew its buffer room, a bug)",
            access_log_dropped.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "strata_config_reloads",
            "Configuration reloads (SIGHUP) by result: ok, error",
            reloads.clone(),
        );
        for result in ["ok", "error"] {
            let _ = reloads.get_or_create(&ReloadLabels { result });
        }
        let ready = gauge(
            &mut registry,
            "strata_ready",
            "1 once the index is loaded and the node serves (what /readyz reports)",
        );
        Metrics {
            recovered_objects,
            invalidation_rules,
            invalidation_reclaimed,
            surrogate_keys,
            access_log_dropped,
            reloads,
            ready,
            registry,
            requests,
            durations,
            origin_requests,
            coalesced,
            peer_requests,
            cluster_members,
            store_objects,
            store_bytes,
            index_memory,
            memory_bytes,
            store_degraded,
            invalidations,
            purges,
            recovery_seconds,
        }
    }

    fn index(o: Outcome) -> usize {
        Outcome::ALL.iter().position(|x| *x == o).unwrap_or(0)
    }

    pub fn request(&self, o: Outcome, seconds: f64) {
        let i = Self::index(o);
        self.requests[i].inc();
        self.durations[i].observe(seconds);
    }

    pub fn origin(&self, origin: &str, status: Option<u16>) {
        let status = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        self.origin_requests
            .get_or_create(&OriginLabels {
                origin: origin.to_string(),
                status,
            })
            .inc();
    }

    pub fn requests_total(&self, o: Outcome) -> u64 {
        self.requests[Self::index(o)].get()
    }

    /// Renders the text exposition, refreshing the store gauges first.
    pub fn render(&self, store: StoreStats) -> String {
        self.store_objects.set(store.objects as i64);
        self.store_bytes.set(store.bytes as i64);
        self.index_memory.set(store.index_memory_bytes as i64);
        self.memory_bytes.set(store.memory_bytes as i64);
        self.store_degraded.set(store.degraded as i64);
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric SPEC.md names appears once its family has a sample.
    #[test]
    fn spec_metrics_are_exposed() {
        let m = Metrics::new();
        m.request(Outcome::Hit, 0.001);
        m.origin("alb", Some(200));
        m.coalesced.inc();
        m.peer_requests
            .get_or_create(&PeerLabels {
                peer: "10.0.0.2:8080".into(),
                result: "hit",
            })
            .inc();
        let page = m.render(StoreStats::default());
        for name in [
            "strata_requests_total{result=\"hit\"} 1",
            "strata_origin_requests_total{origin=\"alb\",status=\"200\"} 1",
            "strata_coalesced_requests_total 1",
            "strata_peer_requests_total{peer=\"10.0.0.2:8080\",result=\"hit\"} 1",
            "strata_store_objects 0",
            "strata_store_bytes 0",
            "strata_index_memory_bytes 0",
            "# TYPE strata_request_duration_seconds histogram",
            "strata_request_duration_seconds_count{result=\"hit\"} 1",
        ] {
            assert!(page.contains(name), "{name} missing from\n{page}");
        }
    }
}
