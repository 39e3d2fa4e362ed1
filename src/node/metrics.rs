//! Prometheus metrics (text format at `/metrics` on `metrics.listen`).
use super::NodeCtx;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use tokio::net::TcpListener;

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
            registry: Registry::default(),
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

    pub fn peer(&self, peer: &str) -> PeerLabel {
        PeerLabel {
            peer: peer.to_string(),
        }
    }
}

/// Recounts assistance requests by state (replayed from their signed steps).
async fn refresh_assistance(ctx: &NodeCtx) {
    use crate::domain::assistance::state_label;
    use crate::proto::v1::{AssistanceState, MessageKind};
    let Ok(requests) = ctx
        .store
        .requests(MessageKind::AssistanceRequest as i32, 0, 100_000)
        .await
    else {
        return;
    };
    let mut counts: std::collections::HashMap<&'static str, i64> = [
        AssistanceState::Requested,
        AssistanceState::Offered,
        AssistanceState::Accepted,
        AssistanceState::Deployed,
        AssistanceState::Completed,
        AssistanceState::Closed,
        AssistanceState::Withdrawn,
    ]
    .into_iter()
    .map(|s| (state_label(s), 0))
    .collect();
    for r in requests {
        if let Ok(Some((a, _))) = super::assist::load(ctx, &r.message_id).await {
            *counts.entry(state_label(a.state)).or_default() += 1;
        }
    }
    for (state, n) in counts {
        ctx.metrics
            .assistance
            .get_or_create(&StateLabel {
                state: state.to_string(),
            })
            .set(n);
    }
}

/// Serves `/metrics` over plain HTTP/1.1 until the node stops.
pub async fn serve(listener: TcpListener, ctx: Arc<NodeCtx>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let ctx = ctx.clone();
                    async move {
                        if req.uri().path() == "/metrics" {
                            refresh_assistance(&ctx).await;
                            if let Ok(depths) = ctx.store.outbox_depths().await {
                                for (peer, n) in depths {
                                    ctx.metrics
                                        .outbox_depth
                                        .get_or_create(&ctx.metrics.peer(&peer))
                                        .set(n as i64);
                                }
                            }
                            hyper::Response::builder()
                                .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                                .body(Full::new(Bytes::from(ctx.metrics.encode())))
                        } else {
                            hyper::Response::builder()
                                .status(404)
                                .body(Full::new(Bytes::from_static(b"not found: try /metrics\n")))
                        }
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
