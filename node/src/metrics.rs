//! Prometheus metrics: what an operator watches. Served as text at `/metrics`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: String,
}

/// Every metric the node exports. Cloning shares the underlying values.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub peers: Gauge,
    pub documents: Gauge,
    pub changes_applied: Counter,
    pub changes_local: Counter,
    pub rejections: Family<Reason, Counter>,
    pub sync_rounds: Counter,
    pub bytes_in: Counter<u64, AtomicU64>,
    pub bytes_out: Counter<u64, AtomicU64>,
    /// How long the newest change received from a peer took to arrive (ms).
    pub convergence_lag_ms: Gauge,
    pub disconnects_for_offences: Counter,
}

impl Metrics {
    pub fn rejection(&self, reason: &str) {
        self.rejections
            .get_or_create(&Reason {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Render in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut registry = Registry::with_prefix("linli");
        registry.register(
            "peers",
            "Connected peers that said hello",
            self.peers.clone(),
        );
        registry.register("documents", "Documents held", self.documents.clone());
        registry.register(
            "changes_applied",
            "Changes from peers applied",
            self.changes_applied.clone(),
        );
        registry.register(
            "changes_local",
            "Changes made on this node",
            self.changes_local.clone(),
        );
        registry.register(
            "rejections",
            "Peer inputs refused, by reason",
            self.rejections.clone(),
        );
        registry.register(
            "sync_rounds",
            "Sync messages sent",
            self.sync_rounds.clone(),
        );
        registry.register(
            "bytes_in",
            "Sync protocol bytes received",
            self.bytes_in.clone(),
        );
        registry.register(
            "bytes_out",
            "Sync protocol bytes sent",
            self.bytes_out.clone(),
        );
        registry.register(
            "convergence_lag_ms",
            "Delay between the newest received change being made and arriving here",
            self.convergence_lag_ms.clone(),
        );
        registry.register(
            "disconnects_for_offences",
            "Peers disconnected for repeated invalid input",
            self.disconnects_for_offences.clone(),
        );
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_reasons() {
        let m = Metrics::default();
        m.rejection("bad-signature");
        m.rejection("bad-signature");
        m.peers.set(3);
        let text = m.render();
        assert!(
            text.contains("linli_rejections_total{reason=\"bad-signature\"} 2"),
            "{text}"
        );
        assert!(text.contains("linli_peers 3"), "{text}");
    }
}
