//! The node's Prometheus metrics: one registry, counters and gauges the
//! services update as they work. Served over HTTP by `api::metrics`.
//!
//! Every configured peer has its per-peer series at all times (0 when idle);
//! a peer removed by a reload loses them.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    pub peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

/// All metrics of a node.
pub struct Metrics {
    registry: Registry,
    pub received: Counter,
    pub accepted: Counter,
    pub duplicates: Counter,
    pub rejected: Family<ReasonLabel, Counter>,
    pub signature_failures: Counter,
    pub sent: Family<PeerLabel, Counter>,
    pub published: Counter,
    pub receipts_sent: Counter,
    pub relayed: Counter,
    pub assistance: Family<StateLabel, Gauge>,
    pub outbox_depth: Family<PeerLabel, Gauge>,
    pub peer_up: Family<PeerLabel, Gauge>,
    pub peer_last_contact: Family<PeerLabel, Gauge>,
    pub commit_seconds: Histogram,
    pub delivery_seconds: Histogram,
    /// Peers' envelopes refused for now (temporary), by reason.
    pub deferred: Family<ReasonLabel, Counter>,
    /// Storage failures seen by the services, by kind (full, corrupt, ...).
    pub storage_errors: Family<KindLabel, Counter>,
    /// TCP connections closed before any TLS work, by the limit they hit.
    pub connections_refused: Family<ReasonLabel, Counter>,
    /// The peers whose series exist.
    peers: Mutex<Vec<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("certfed");
        let m = Metrics {
            received: Counter::default(),
            accepted: Counter::default(),
            duplicates: Counter::default(),
            rejected: Family::default(),
            signature_failures: Counter::default(),
            sent: Family::default(),
            published: Counter::default(),
            receipts_sent: Counter::default(),
            relayed: Counter::default(),
            assistance: Family::default(),
            outbox_depth: Family::default(),
            peer_up: Family::default(),
            peer_last_contact: Family::default(),
            commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            delivery_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            deferred: Family::default(),
            storage_errors: Family::default(),
            connections_refused: Family::default(),
            registry: Registry::default(),
            peers: Mutex::default(),
        };
        registry.register(
            "messages_received",
            "Envelopes received from peers",
            m.received.clone(),
        );
        registry.register(
            "messages_accepted",
            "Envelopes verified and stored",
            m.accepted.clone(),
        );
        registry.register(
            "messages_duplicate",
            "Envelopes received again and deduplicated",
            m.duplicates.clone(),
        );
        registry.register(
            "messages_rejected",
            "Envelopes refused, by reason",
            m.rejected.clone(),
        );
        registry.register(
            "signature_verification_failures",
            "Envelopes whose signature did not verify",
            m.signature_failures.clone(),
        );
        registry.register(
            "messages_sent",
            "Envelopes delivered to a peer (acknowledged)",
            m.sent.clone(),
        );
        registry.register(
            "messages_published",
            "Alerts and assistance messages signed by this node",
            m.published.clone(),
        );
        registry.register(
            "messages_relayed",
            "Messages received from a peer and queued for other peers",
            m.relayed.clone(),
        );
        registry.register(
            "assistance_requests",
            "Assistance requests known to this node, by state",
            m.assistance.clone(),
        );
        registry.register(
            "receipts_sent",
            "Receipts this node signed for origins",
            m.receipts_sent.clone(),
        );
        registry.register(
            "outbox_depth",
            "Messages queued for a peer",
            m.outbox_depth.clone(),
        );
        registry.register(
            "peer_up",
            "1 when the link to a peer is up",
            m.peer_up.clone(),
        );
        registry.register(
            "peer_last_contact_timestamp_seconds",
            "Unix time of the last successful exchange with a peer",
            m.peer_last_contact.clone(),
        );
        registry.register(
            "storage_commit_seconds",
            "Latency of durable store writes",
            m.commit_seconds.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "Time from queueing to the peer's acknowledgement",
            m.delivery_seconds.clone(),
        );
        registry.register(
            "messages_deferred",
            "Envelopes from peers refused for now (clock skew, key not pinned yet, storage full); the peer retries them",
            m.deferred.clone(),
        );
        registry.register(
            "storage_errors",
            "Storage failures, by kind (full, corrupt, closed, backend, invalid)",
            m.storage_errors.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed before the TLS handshake because a listener limit was reached, by limit",
            m.connections_refused.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn reject(&self, label: &str) {
        self.rejected
            .get_or_create(&ReasonLabel {
                reason: label.to_string(),
            })
            .inc();
    }

    pub fn defer(&self, label: &str) {
        self.deferred
            .get_or_create(&ReasonLabel {
                reason: label.to_string(),
            })
            .inc();
    }

    pub fn storage_error(&self, kind: &str) {
        self.storage_errors
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc();
    }

    pub fn connection_refused(&self, limit: &str) {
        self.connections_refused
            .get_or_create(&ReasonLabel {
                reason: limit.to_string(),
            })
            .inc();
    }

    pub fn peer(&self, peer: &str) -> PeerLabel {
        PeerLabel {
            peer: peer.to_string(),
        }
    }
}

impl Metrics {
    /// Makes the per-peer series exist for exactly `peers` (at 0 for new
    /// ones); series of peers no longer configured are removed.
    pub fn set_peers(&self, peers: &[String]) {
        let mut known = self.peers.lock().expect("metrics peers lock");
        for old in known.iter().filter(|o| !peers.contains(o)) {
            let l = self.peer(old);
            self.outbox_depth.remove(&l);
            self.peer_up.remove(&l);
            self.peer_last_contact.remove(&l);
            self.sent.remove(&l);
        }
        for p in peers {
            let l = self.peer(p);
            let _ = self.outbox_depth.get_or_create(&l);
            let _ = self.peer_up.get_or_create(&l);
            let _ = self.sent.get_or_create(&l);
        }
        *known = peers.to_vec();
    }

    /// Sets every configured peer's outbox depth; peers absent from `depths` are at 0.
    pub fn set_outbox_depths(&self, depths: &[(String, u64)]) {
        let known = self.peers.lock().expect("metrics peers lock");
        for p in known.iter() {
            let n = depths.iter().find(|(q, _)| q == p).map_or(0, |(_, n)| *n);
            self.outbox_depth
                .get_or_create(&self.peer(p))
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}
