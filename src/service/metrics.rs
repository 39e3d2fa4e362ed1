//! The node's Prometheus metrics: one registry, counters and gauges the
//! services update as they work. Served over HTTP by `api::metrics`.
//!
//! Invariants:
//! - Every configured peer has its per-peer series at all times (0 when idle);
//!   a peer removed by a reload loses them.
//! - Every rejection reason (`Rejection::ALL_LABELS`) and every storage error
//!   kind has its series from the start, at 0, so `rate()` and alerts see a
//!   first rejection.
//! - A scrape costs what changed since the last one, not the node's history:
//!   assistance requests by state are kept materialised ([`AssistanceCounts`]),
//!   and only threads that received a step since the last scrape are replayed.
//! - Envelopes received are counted as messages (alerts, assistance steps) or
//!   receipts, never both.
//! - Certfed's own series carry the `certfed_` prefix; the process collector
//!   uses the standard `process_*` names.
//! - Exercise traffic is counted apart, in its own families
//!   (`certfed_exercise_*`, [`ExerciseCounters`]): the per-message series
//!   (`certfed_messages_*`, `certfed_incident_*`) count real traffic only, so
//!   rates and alert rules over them never include an exercise. An envelope
//!   counts as exercise by its header's flag; before the signature is checked
//!   (received, duplicate) that is the flag it claims, and a refusal of an
//!   envelope whose signature did not verify always counts as real (a forger
//!   cannot hide refusals among exercise series).
use crate::domain::envelope::Rejection;
use crate::storage::StoreError;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    pub rule: String,
}

/// The rules an incident contribution can break (`service::incidents::refusal_rule`).
pub const INCIDENT_RULES: [&str; 4] = ["not_recipient", "marking", "not_opener", "cycle"];

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

fn kind_label(kind: &str) -> KindLabel {
    KindLabel {
        kind: kind.to_string(),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabel {
    /// `node` (this node's TLS certificate) or `ca` (a trust anchor).
    pub certificate: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FileLabel {
    pub file: String,
}

/// Assistance requests by state, kept up to date incrementally: ingest marks a
/// thread as touched ([`Metrics::assistance_touched`]); the scrape replays only
/// the touched threads and updates their entry. The first scrape after start
/// replays every request once ([`AssistanceCounts::seeded`] is false).
#[derive(Default)]
pub struct AssistanceCounts {
    /// request id → state label.
    pub states: HashMap<String, &'static str>,
    /// Threads that received a step since the last scrape.
    pub touched: HashSet<String>,
    /// Whether every stored request has been replayed once.
    pub seeded: bool,
}

impl AssistanceCounts {
    /// How many requests are in each state.
    pub fn by_state(&self) -> HashMap<&'static str, i64> {
        let mut out = HashMap::new();
        for s in self.states.values() {
            *out.entry(*s).or_insert(0) += 1;
        }
        out
    }
}

/// Per-message counters of exercise traffic, registered as
/// `certfed_exercise_<name>` beside their real counterparts
/// `certfed_<name>` (see the module invariants).
#[derive(Default)]
pub struct ExerciseCounters {
    pub received: Counter,
    pub accepted: Counter,
    pub duplicates: Counter,
    pub rejected: Family<ReasonLabel, Counter>,
    pub sent: Family<PeerLabel, Counter>,
    pub published: Counter,
    pub relayed: Counter,
    pub incident_refusals: Family<RuleLabel, Counter>,
    pub incident_matches: Counter,
}

/// All metrics of a node.
pub struct Metrics {
    /// Exercise traffic, counted apart from the real series.
    pub exercise: ExerciseCounters,
    registry: Registry,
    pub received: Counter,
    /// Push frames received from peers (a bundle of receipts counts once).
    pub frames_received: Counter,
    /// Push frames sent to peers, by kind (message, receipts: one receipt
    /// or a bundle of them).
    pub frames_sent: Family<KindLabel, Counter>,
    /// Plumtree control frames sent, by kind (ihave, graft, prune, have,
    /// graft_origins).
    pub gossip_frames_sent: Family<KindLabel, Counter>,
    /// Bytes of "I have" announcements sent (the Gossip messages carrying ids).
    pub announce_bytes: Counter,
    /// Plumtree input from peers ignored, by reason (over a cap or a rate,
    /// malformed, not entitled).
    pub gossip_refused: Family<ReasonLabel, Counter>,
    /// Messages queued for peers that asked for them (graft).
    pub gossip_graft_queued: Counter,
    /// Tree links swapped for a shorter way from an origin (shortcuts).
    pub gossip_shortcuts: Counter,
    /// Held messages asked for again because a peer holds them over fewer
    /// links than this node's copy, which the hop limit stopped here
    /// (`domain::hop_limit`).
    pub gossip_shorter_asked: Counter,
    /// Copies sent to peers that asked for one over fewer links.
    pub gossip_shorter_sent: Counter,
    /// Copies parked for lazy peers dropped because the peer answered that
    /// it holds the message (HAVE): full copies saved.
    pub gossip_lazy_confirmed: Counter,
    /// Messages to named recipients sent from here only toward them (a way
    /// to each known), the other targets' copies held back.
    pub named_routed: Counter,
    /// Held-back copies of routed messages dropped: every recipient routed
    /// toward confirmed receipt first.
    pub named_not_needed: Counter,
    /// Copies of routed messages sent on again because a later copy showed
    /// they were needed (`service::named_again`).
    pub named_sent_again: Counter,
    pub accepted: Counter,
    pub receipts_received: Counter,
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
    pub storage_errors: Family<KindLabel, Counter>,
    pub build_info: Family<VersionLabel, Gauge>,
    pub cert_expiry: Family<CertLabel, Gauge>,
    pub crl_next_update: Family<FileLabel, Gauge>,
    pub reload_ok: Gauge,
    pub reload_success_time: Gauge,
    pub reload_attempt_time: Gauge,
    pub scrape_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Assistance requests by state, materialised (see [`AssistanceCounts`]).
    pub assistance_counts: Mutex<AssistanceCounts>,
    /// Incident contributions from partners left out of the picture, by rule.
    pub incident_refusals: Family<RuleLabel, Counter>,
    /// Arriving alerts and sightings that share an indicator with an incident held.
    pub incident_matches: Counter,
    /// Peers' envelopes refused for now (temporary), by reason.
    pub deferred: Family<ReasonLabel, Counter>,
    /// TCP connections closed before any TLS work, by the limit they hit.
    pub connections_refused: Family<ReasonLabel, Counter>,
    /// This process's role: one series per role word (`single`, `active`,
    /// `standby`), 1 for the current one.
    pub ha_role: Family<RoleLabel, Gauge>,
    /// Seconds since the holder of the lease last renewed it, as this member
    /// last saw it (PostgreSQL pairs).
    pub lease_age_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Times this process took the lease and became active.
    pub takeovers: Counter,
    /// Version of the federation roster held (0: none).
    pub roster_version: Gauge,
    /// When the held roster expires (unix seconds; 0: none).
    pub roster_expires: Gauge,
    /// 1 while the held roster has expired (trust read-only until a newer one).
    pub roster_expired: Gauge,
    /// Rosters refused (from peers or operators), by the rule they broke.
    pub roster_refused: Family<ReasonLabel, Counter>,
    /// Forks seen: two different rosters with one version (an alarm).
    pub roster_forks: Counter,
    /// Reconciliation rounds, by kind (initiated by this node, answered).
    pub reconcile_rounds: Family<KindLabel, Counter>,
    /// Reconciliation frame bytes, by direction (sent, received).
    pub reconcile_bytes: Family<KindLabel, Counter>,
    /// Reconciliation items, by kind (queued for a peer, missing here,
    /// not_entitled, unknown_wanted, refused_before, asked_shorter,
    /// not_compared).
    pub reconcile_items: Family<KindLabel, Counter>,
    /// Reconciliations this node started, by outcome (completed, failed).
    pub reconcile_exchanges: Family<KindLabel, Counter>,
    /// Reconciliation rounds or exchanges that failed, by reason.
    pub reconcile_failures: Family<ReasonLabel, Counter>,
    /// Attachment fetches given up, by the peer that delivered the message.
    pub attachment_fetches_abandoned: Family<PeerLabel, Counter>,
    /// The peers whose series exist.
    peers: Mutex<Vec<String>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabel {
    pub role: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            exercise: ExerciseCounters::default(),
            received: Counter::default(),
            frames_received: Counter::default(),
            frames_sent: Family::default(),
            gossip_frames_sent: Family::default(),
            announce_bytes: Counter::default(),
            gossip_refused: Family::default(),
            gossip_graft_queued: Counter::default(),
            gossip_shortcuts: Counter::default(),
            gossip_shorter_asked: Counter::default(),
            gossip_shorter_sent: Counter::default(),
            gossip_lazy_confirmed: Counter::default(),
            named_routed: Counter::default(),
            named_not_needed: Counter::default(),
            named_sent_again: Counter::default(),
            accepted: Counter::default(),
            receipts_received: Counter::default(),
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
            storage_errors: Family::default(),
            build_info: Family::default(),
            cert_expiry: Family::default(),
            crl_next_update: Family::default(),
            reload_ok: Gauge::default(),
            reload_success_time: Gauge::default(),
            reload_attempt_time: Gauge::default(),
            scrape_seconds: Gauge::default(),
            assistance_counts: Mutex::default(),
            incident_refusals: Family::default(),
            incident_matches: Counter::default(),
            deferred: Family::default(),
            connections_refused: Family::default(),
            ha_role: Family::default(),
            lease_age_seconds: Gauge::default(),
            takeovers: Counter::default(),
            roster_version: Gauge::default(),
            roster_expires: Gauge::default(),
            roster_expired: Gauge::default(),
            roster_refused: Family::default(),
            roster_forks: Counter::default(),
            reconcile_rounds: Family::default(),
            reconcile_bytes: Family::default(),
            reconcile_items: Family::default(),
            reconcile_exchanges: Family::default(),
            reconcile_failures: Family::default(),
            attachment_fetches_abandoned: Family::default(),
            registry: Registry::default(),
            peers: Mutex::default(),
        };
        let mut root = Registry::default();
        root.register_collector(Box::new(ProcessCollector::new()));
        let r = root.sub_registry_with_prefix("certfed");
        r.register(
            "messages_received",
            "Envelopes received from peers (messages and receipts)",
            m.received.clone(),
        );
        r.register(
            "frames_received",
            "Push frames received from peers (a bundle of receipts counts once)",
            m.frames_received.clone(),
        );
        r.register(
            "frames_sent",
            "Push frames sent to peers, by kind (message: to everyone; named: to named recipients, ciphertext at relays; receipts: one receipt or a bundle of them)",
            m.frames_sent.clone(),
        );
        r.register(
            "gossip_frames_sent",
            "Plumtree control frames sent to peers, by kind (ihave: announcements; graft: requests for missing messages; prune: a link turned lazy; have: announced messages already held)",
            m.gossip_frames_sent.clone(),
        );
        r.register(
            "announce_bytes",
            "Bytes of Plumtree announcements (ihave) sent to peers",
            m.announce_bytes.clone(),
        );
        r.register(
            "gossip_refused",
            "Plumtree input from peers ignored, by reason (rate, malformed, unknown_origin, not_entitled, disabled, link_queue_full)",
            m.gossip_refused.clone(),
        );
        r.register(
            "gossip_graft_queued",
            "Messages queued for peers that asked for them (graft)",
            m.gossip_graft_queued.clone(),
        );
        r.register(
            "gossip_shortcuts",
            "Tree links this node swapped for a way at least gossip.shortcut_hops links shorter from an origin (Plumtree optimisation: a PRUNE to the old link, a GRAFT-ORIGIN to the new)",
            m.gossip_shortcuts.clone(),
        );
        r.register(
            "gossip_shorter_asked",
            "Held messages this node asked a peer for again because the peer announced them over fewer links than this node's copy, which the hop limit had stopped here",
            m.gossip_shorter_asked.clone(),
        );
        r.register(
            "gossip_shorter_sent",
            "Copies sent to peers that asked for one over fewer links, to take a message past relays its hop limit stopped (Gossip.want_shorter)",
            m.gossip_shorter_sent.clone(),
        );
        r.register(
            "gossip_lazy_confirmed",
            "Copies kept queued for lazy peers and dropped because the peer answered that it holds the message (Plumtree HAVE)",
            m.gossip_lazy_confirmed.clone(),
        );
        r.register(
            "named_routed",
            "Messages to named recipients (AMBER and above) sent from this node only toward them, along ways learned from their own messages; copies for the other peers held back until the recipients confirm receipt",
            m.named_routed.clone(),
        );
        r.register(
            "named_not_needed",
            "Held-back copies of routed messages to named recipients dropped because every recipient routed toward confirmed receipt (copies not sent)",
            m.named_not_needed.clone(),
        );
        r.register(
            "named_sent_again",
            "Copies of routed messages to named recipients queued again for peers because a later copy showed they were needed: its sender routed other recipients through this node, or it left its sender after the origin's hold (a way failed: every holder floods it once)",
            m.named_sent_again.clone(),
        );
        r.register(
            "messages_accepted",
            "Messages (alerts, assistance steps) received from peers, verified and stored; receipts are counted in certfed_receipts_received_total",
            m.accepted.clone(),
        );
        r.register(
            "receipts_received",
            "Receipts received from peers, verified and stored",
            m.receipts_received.clone(),
        );
        r.register(
            "messages_duplicate",
            "Envelopes received again and deduplicated",
            m.duplicates.clone(),
        );
        r.register(
            "messages_rejected",
            "Envelopes refused, by reason",
            m.rejected.clone(),
        );
        r.register(
            "signature_verification_failures",
            "Envelopes whose signature did not verify",
            m.signature_failures.clone(),
        );
        r.register(
            "messages_sent",
            "Envelopes delivered to a peer (acknowledged)",
            m.sent.clone(),
        );
        r.register(
            "messages_published",
            "Alerts and assistance messages signed by this node",
            m.published.clone(),
        );
        r.register(
            "messages_relayed",
            "Messages received from a peer and queued for other peers",
            m.relayed.clone(),
        );
        r.register(
            "assistance_requests",
            "Assistance requests known to this node, by state",
            m.assistance.clone(),
        );
        r.register(
            "receipts_sent",
            "Receipts this node signed for origins",
            m.receipts_sent.clone(),
        );
        r.register(
            "reconcile_rounds",
            "Set reconciliation rounds, by kind (initiated by this node, answered for a peer)",
            m.reconcile_rounds.clone(),
        );
        r.register(
            "reconcile_bytes",
            "Bytes of set reconciliation frames, by direction (sent, received)",
            m.reconcile_bytes.clone(),
        );
        r.register(
            "reconcile_items",
            "Items found by set reconciliation, by kind (queued: queued for a peer that lacked them; missing: held by a peer and lacking here; not_entitled: lacking at a peer that policy does not let go; unknown_wanted: asked for and not held; refused_before: lacking at a peer that refused them for good within 24 hours, not offered again; asked_shorter: lacking at a peer, held here at their hop limit, a copy over fewer links asked for; not_compared: held here in a 10-minute bucket of the set too large to read in one round, not compared with that peer, counted once per peer and bucket)",
            m.reconcile_items.clone(),
        );
        r.register(
            "reconcile_exchanges",
            "Set reconciliations this node started, by outcome (completed, failed)",
            m.reconcile_exchanges.clone(),
        );
        r.register(
            "reconcile_failures",
            "Set reconciliation rounds or exchanges that failed, by reason (malformed, window, rate_limited, busy, too_much_work, timeout, peer_refused, unsupported, too_many_rounds, storage)",
            m.reconcile_failures.clone(),
        );
        r.register(
            "attachment_fetches_abandoned",
            "Attachment fetches given up (after 12 failed attempts, or no source holding the attachment for an hour), by the peer that delivered the message",
            m.attachment_fetches_abandoned.clone(),
        );
        r.register(
            "outbox_depth",
            "Messages queued for a peer (0 when its outbox is empty)",
            m.outbox_depth.clone(),
        );
        r.register(
            "peer_up",
            "1 when the link to a peer is up",
            m.peer_up.clone(),
        );
        r.register(
            "peer_last_contact_timestamp_seconds",
            "Unix time of the last successful exchange with a peer",
            m.peer_last_contact.clone(),
        );
        r.register(
            "storage_commit_seconds",
            "Latency of durable store writes",
            m.commit_seconds.clone(),
        );
        r.register(
            "delivery_latency_seconds",
            "Time from queueing to the peer's acknowledgement",
            m.delivery_seconds.clone(),
        );
        r.register(
            "storage_errors",
            "Storage failures, by kind (full: the disk is full; corrupt: the store is damaged; closed, backend: retrying may help; invalid)",
            m.storage_errors.clone(),
        );
        r.register(
            "build_info",
            "Always 1; the version label names the running certfed",
            m.build_info.clone(),
        );
        r.register(
            "messages_deferred",
            "Envelopes from peers refused for now (clock skew, key not pinned yet, storage full); the peer retries them",
            m.deferred.clone(),
        );
        r.register(
            "connections_refused",
            "Connections closed before the TLS handshake because a listener limit was reached, by limit",
            m.connections_refused.clone(),
        );
        r.register(
            "tls_certificate_expiry_timestamp_seconds",
            "Unix time at which a certificate this node uses expires (certificate=node: its TLS certificate; ca: the earliest-expiring trust anchor)",
            m.cert_expiry.clone(),
        );
        r.register(
            "crl_next_update_timestamp_seconds",
            "Unix time of a configured CRL's next update; past it every handshake fails (fail closed)",
            m.crl_next_update.clone(),
        );
        r.register(
            "config_last_reload_successful",
            "1 if the last configuration reload (SIGHUP) succeeded or none was tried, 0 if it was refused",
            m.reload_ok.clone(),
        );
        r.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load (start or reload)",
            m.reload_success_time.clone(),
        );
        r.register(
            "config_last_reload_attempt_timestamp_seconds",
            "Unix time of the last configuration load attempt (start or reload)",
            m.reload_attempt_time.clone(),
        );
        r.register(
            "ha_role",
            "1 for this process's role: single (no active/standby pair), active (holds the lease, serves), standby (waits to take over); 0 for the others",
            m.ha_role.clone(),
        );
        r.register(
            "ha_lease_age_seconds",
            "Seconds since the active member last renewed the lease, as this process last saw it (PostgreSQL pairs; a standby sees it grow when the active stops)",
            m.lease_age_seconds.clone(),
        );
        r.register(
            "ha_takeovers",
            "Times this process took the lease and became the active member",
            m.takeovers.clone(),
        );
        r.register(
            "incident_refusals",
            "Incident contributions from partners left out of the picture, by rule (not_recipient, marking, not_opener, cycle)",
            m.incident_refusals.clone(),
        );
        r.register(
            "incident_matches",
            "Arriving alerts and sightings that share an indicator with an incident this node holds (correlation)",
            m.incident_matches.clone(),
        );
        r.register(
            "metrics_scrape_duration_seconds",
            "Time the previous scrape of /metrics took to refresh its gauges",
            m.scrape_seconds.clone(),
        );
        r.register(
            "roster_version",
            "Version of the federation roster this node holds (0: a static member list, or none yet)",
            m.roster_version.clone(),
        );
        r.register(
            "roster_expires_timestamp_seconds",
            "Unix time the held federation roster expires (0: none)",
            m.roster_expires.clone(),
        );
        r.register(
            "roster_expired",
            "1 while the held federation roster has expired: members stay trusted, nothing new is admitted from it; ask the stewards for a newer version",
            m.roster_expired.clone(),
        );
        r.register(
            "roster_refused",
            "Federation rosters refused (from peers or operators), by the rule they broke",
            m.roster_refused.clone(),
        );
        r.register(
            "roster_forks",
            "Two different federation rosters with the same version seen: the stewards' keys signed two histories (an alarm)",
            m.roster_forks.clone(),
        );
        let x = r.sub_registry_with_prefix("exercise");
        let ex = &m.exercise;
        x.register(
            "messages_received",
            "Envelopes received from peers that claim to be exercise traffic (before verification); real ones are in certfed_messages_received_total",
            ex.received.clone(),
        );
        x.register(
            "messages_accepted",
            "Exercise messages received from peers, verified and stored",
            ex.accepted.clone(),
        );
        x.register(
            "messages_duplicate",
            "Exercise envelopes received again and deduplicated",
            ex.duplicates.clone(),
        );
        x.register(
            "messages_rejected",
            "Verified exercise envelopes refused, by reason (an envelope whose signature fails counts in certfed_messages_rejected_total)",
            ex.rejected.clone(),
        );
        x.register(
            "messages_sent",
            "Exercise envelopes delivered to a peer (acknowledged)",
            ex.sent.clone(),
        );
        x.register(
            "messages_published",
            "Exercise messages signed by this node",
            ex.published.clone(),
        );
        x.register(
            "messages_relayed",
            "Exercise messages received from a peer and queued for other peers",
            ex.relayed.clone(),
        );
        x.register(
            "incident_refusals",
            "Exercise incident contributions from partners left out of the picture, by rule",
            ex.incident_refusals.clone(),
        );
        x.register(
            "incident_matches",
            "Arriving exercise alerts and sightings that share an indicator with an exercise incident held",
            ex.incident_matches.clone(),
        );
        for reason in Rejection::ALL_LABELS {
            for family in [&m.rejected, &m.exercise.rejected] {
                let _ = family.get_or_create(&ReasonLabel {
                    reason: (*reason).to_string(),
                });
            }
        }
        for rule in INCIDENT_RULES {
            for family in [&m.incident_refusals, &m.exercise.incident_refusals] {
                let _ = family.get_or_create(&RuleLabel {
                    rule: rule.to_string(),
                });
            }
        }
        for k in crate::domain::roster::RefusalKind::ALL {
            let _ = m.roster_refused.get_or_create(&ReasonLabel {
                reason: k.label().to_string(),
            });
        }
        for kind in StoreError::ALL_LABELS {
            let _ = m.storage_errors.get_or_create(&KindLabel {
                kind: kind.to_string(),
            });
        }
        m.build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        m.reload_ok.set(1);
        m.registry = root;
        m
    }

    /// The OpenMetrics text exposition (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts a refused envelope: `exercise` only when its signature
    /// verified and its header says so.
    pub fn reject(&self, label: &str, exercise: bool) {
        let family = if exercise {
            &self.exercise.rejected
        } else {
            &self.rejected
        };
        family
            .get_or_create(&ReasonLabel {
                reason: label.to_string(),
            })
            .inc();
    }

    /// Counts an incident contribution left out of the picture.
    pub fn incident_refused(&self, rule: &str, exercise: bool) {
        let family = if exercise {
            &self.exercise.incident_refusals
        } else {
            &self.incident_refusals
        };
        family
            .get_or_create(&RuleLabel {
                rule: rule.to_string(),
            })
            .inc();
    }

    /// Envelopes received from a peer: `exercise` of them claim the flag.
    pub fn count_received(&self, total: u64, exercise: u64) {
        self.received.inc_by(total - exercise.min(total));
        self.exercise.received.inc_by(exercise.min(total));
    }

    /// A peer's message stored.
    pub fn count_accepted(&self, exercise: bool) {
        if exercise {
            self.exercise.accepted.inc();
        } else {
            self.accepted.inc();
        }
    }

    /// A peer's envelope already held.
    pub fn count_duplicate(&self, exercise: bool) {
        if exercise {
            self.exercise.duplicates.inc();
        } else {
            self.duplicates.inc();
        }
    }

    /// A peer's message queued for other peers.
    pub fn count_relayed(&self, exercise: bool) {
        if exercise {
            self.exercise.relayed.inc();
        } else {
            self.relayed.inc();
        }
    }

    /// A message (not a receipt) this node signed.
    pub fn count_published(&self, exercise: bool) {
        if exercise {
            self.exercise.published.inc();
        } else {
            self.published.inc();
        }
    }

    /// Envelopes a peer acknowledged: `exercise` of them exercise traffic.
    pub fn count_sent(&self, peer: &str, total: u64, exercise: u64) {
        let label = self.peer(peer);
        self.sent
            .get_or_create(&label)
            .inc_by(total - exercise.min(total));
        if exercise > 0 {
            self.exercise
                .sent
                .get_or_create(&label)
                .inc_by(exercise.min(total));
        }
    }

    /// An arriving alert or sighting matched an incident held.
    pub fn count_incident_match(&self, exercise: bool) {
        if exercise {
            self.exercise.incident_matches.inc();
        } else {
            self.incident_matches.inc();
        }
    }

    /// A roster refused for the rule `label` (`domain::roster::RefusalKind`).
    pub fn roster_refused(&self, label: &str) {
        self.roster_refused
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

    pub fn reconcile_round(&self, kind: &str) {
        self.reconcile_rounds.get_or_create(&kind_label(kind)).inc();
    }

    pub fn reconcile_bytes(&self, direction: &str, n: u64) {
        self.reconcile_bytes
            .get_or_create(&kind_label(direction))
            .inc_by(n);
    }

    pub fn reconcile_items(&self, kind: &str, n: u64) {
        self.reconcile_items
            .get_or_create(&kind_label(kind))
            .inc_by(n);
    }

    pub fn reconcile_exchange(&self, outcome: &str) {
        self.reconcile_exchanges
            .get_or_create(&kind_label(outcome))
            .inc();
    }

    pub fn reconcile_failure(&self, reason: &str) {
        self.reconcile_failures
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
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

    /// Counts a failed store operation by its kind.
    pub fn storage_error(&self, e: &StoreError) {
        self.storage_errors
            .get_or_create(&KindLabel {
                kind: e.label().to_string(),
            })
            .inc();
    }

    /// Notes that assistance thread `request_id` received a step: the next
    /// scrape replays it.
    pub fn assistance_touched(&self, request_id: &str) {
        self.assistance_counts
            .lock()
            .expect("assistance counts lock")
            .touched
            .insert(request_id.to_string());
    }

    /// Records a configuration load at `now_ms` (start or reload) and whether it succeeded.
    pub fn config_loaded(&self, ok: bool, now_ms: i64) {
        let now = now_ms.div_euclid(1000);
        self.reload_attempt_time.set(now);
        self.reload_ok.set(i64::from(ok));
        if ok {
            self.reload_success_time.set(now);
        }
    }

    /// Sets the expiry of this node's certificate, of the earliest trust
    /// anchor, and the next update of each CRL (unix seconds).
    pub fn set_tls_expiry(&self, node_cert: Option<i64>, ca: Option<i64>, crls: &[(String, i64)]) {
        for (label, v) in [("node", node_cert), ("ca", ca)] {
            let l = CertLabel {
                certificate: label.to_string(),
            };
            match v {
                Some(t) => {
                    self.cert_expiry.get_or_create(&l).set(t);
                }
                None => {
                    self.cert_expiry.remove(&l);
                }
            }
        }
        self.crl_next_update.clear();
        for (file, t) in crls {
            self.crl_next_update
                .get_or_create(&FileLabel { file: file.clone() })
                .set(*t);
        }
    }
}

impl Metrics {
    /// Makes the per-peer series exist for exactly `peers` (at 0 for new
    /// ones); series of peers no longer configured are removed.
    /// Shows `role` (`single`, `active` or `standby`) as the current role.
    pub fn set_role(&self, role: &str) {
        for r in ["single", "active", "standby"] {
            self.ha_role
                .get_or_create(&RoleLabel { role: r.into() })
                .set(i64::from(r == role));
        }
    }

    pub fn set_peers(&self, peers: &[String]) {
        let mut known = self.peers.lock().expect("metrics peers lock");
        for old in known.iter().filter(|o| !peers.contains(o)) {
            let l = self.peer(old);
            self.outbox_depth.remove(&l);
            self.peer_up.remove(&l);
            self.peer_last_contact.remove(&l);
            self.sent.remove(&l);
            self.exercise.sent.remove(&l);
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

    /// Number of peers whose link is up, and of configured peers.
    pub fn peers_up(&self) -> (usize, usize) {
        let known = self.peers.lock().expect("metrics peers lock");
        let up = known
            .iter()
            .filter(|p| self.peer_up.get_or_create(&self.peer(p)).get() == 1)
            .count();
        (up, known.len())
    }
}

/// The standard process metrics (`process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, `process_open_fds`, …) read from
/// `/proc/self` at each scrape, as the Prometheus client libraries name them.
#[derive(Debug)]
struct ProcessCollector {
    start_time: Option<f64>,
}

impl ProcessCollector {
    fn new() -> ProcessCollector {
        let start_time = procfs::process::Process::myself()
            .ok()
            .and_then(|p| p.stat().ok())
            .and_then(|s| {
                let boot = procfs::boot_time_secs().ok()?;
                Some(boot as f64 + s.starttime as f64 / procfs::ticks_per_second() as f64)
            });
        ProcessCollector { start_time }
    }
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> std::fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(me) = procfs::process::Process::myself() else {
            return Ok(());
        };
        if let Ok(stat) = me.stat() {
            let tps = procfs::ticks_per_second() as f64;
            let cpu = (stat.utime + stat.stime) as f64 / tps;
            let m = enc.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(cpu).encode(m)?;
            gauge(
                &mut enc,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                (stat.rss * procfs::page_size()) as f64,
            )?;
            gauge(
                &mut enc,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                stat.vsize as f64,
            )?;
            gauge(
                &mut enc,
                "process_threads",
                "Number of OS threads in the process",
                stat.num_threads as f64,
            )?;
        }
        if let Ok(n) = me.fd_count() {
            gauge(
                &mut enc,
                "process_open_fds",
                "Number of open file descriptors",
                n as f64,
            )?;
        }
        if let Ok(limits) = me.limits()
            && let procfs::process::LimitValue::Value(n) = limits.max_open_files.soft_limit
        {
            gauge(
                &mut enc,
                "process_max_fds",
                "Maximum number of open file descriptors",
                n as f64,
            )?;
        }
        if let Some(t) = self.start_time {
            gauge(
                &mut enc,
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                t,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exercise counts go to `certfed_exercise_*` only; the real families
    /// keep their names and labels and do not move.
    #[test]
    fn exercise_traffic_has_its_own_families() {
        let m = Metrics::new();
        m.set_peers(&["node-b".to_string()]);
        m.count_received(5, 2);
        m.count_accepted(true);
        m.count_accepted(false);
        m.count_duplicate(true);
        m.count_relayed(true);
        m.count_published(true);
        m.count_sent("node-b", 3, 1);
        m.count_incident_match(true);
        m.reject("policy", true);
        m.incident_refused("marking", true);
        let text = m.encode();
        for line in [
            "certfed_messages_received_total 3",
            "certfed_exercise_messages_received_total 2",
            "certfed_messages_accepted_total 1",
            "certfed_exercise_messages_accepted_total 1",
            "certfed_messages_duplicate_total 0",
            "certfed_exercise_messages_duplicate_total 1",
            "certfed_messages_relayed_total 0",
            "certfed_exercise_messages_relayed_total 1",
            "certfed_messages_published_total 0",
            "certfed_exercise_messages_published_total 1",
            "certfed_messages_sent_total{peer=\"node-b\"} 2",
            "certfed_exercise_messages_sent_total{peer=\"node-b\"} 1",
            "certfed_incident_matches_total 0",
            "certfed_exercise_incident_matches_total 1",
            "certfed_messages_rejected_total{reason=\"policy\"} 0",
            "certfed_exercise_messages_rejected_total{reason=\"policy\"} 1",
            "certfed_incident_refusals_total{rule=\"marking\"} 0",
            "certfed_exercise_incident_refusals_total{rule=\"marking\"} 1",
        ] {
            assert!(
                text.contains(&format!("{line}\n")),
                "no {line:?} in\n{text}"
            );
        }
        assert!(
            !text.contains("exercise=\""),
            "no exercise label on any series"
        );
        // A peer removed by a reload loses its exercise series too.
        m.set_peers(&[]);
        assert!(!m.encode().contains("certfed_exercise_messages_sent_total{"));
    }

    /// Every rejection reason is pre-created; a new `Rejection` variant fails
    /// to compile here until its label is listed in `Rejection::ALL_LABELS`.
    #[test]
    fn every_rejection_reason_is_listed_and_precreated() {
        let samples = [
            Rejection::Oversized { size: 1, limit: 0 },
            Rejection::Malformed(String::new()),
            Rejection::UnknownSigner(String::new()),
            Rejection::OriginMismatch {
                claimed: String::new(),
                owner: String::new(),
                key_id: String::new(),
            },
            Rejection::BadSignature,
            Rejection::PayloadMismatch,
            Rejection::ClockSkew {
                ahead_ms: 0,
                limit_ms: 0,
            },
            Rejection::Expired { expires_ms: 0 },
            Rejection::TooOld {
                created_ms: 0,
                age_days: 0,
                limit_days: 0,
            },
            Rejection::InvalidPayload(String::new()),
            Rejection::Policy(String::new()),
            Rejection::Roster {
                kind: "",
                reason: String::new(),
            },
            Rejection::RosterBehind(String::new()),
        ];
        for r in &samples {
            // Exhaustive: adding a variant without a sample is a compile error.
            match r {
                Rejection::Oversized { .. }
                | Rejection::Malformed(_)
                | Rejection::UnknownSigner(_)
                | Rejection::OriginMismatch { .. }
                | Rejection::BadSignature
                | Rejection::PayloadMismatch
                | Rejection::ClockSkew { .. }
                | Rejection::Expired { .. }
                | Rejection::TooOld { .. }
                | Rejection::InvalidPayload(_)
                | Rejection::Policy(_)
                | Rejection::Roster { .. }
                | Rejection::RosterBehind(_) => {}
            }
            assert!(
                Rejection::ALL_LABELS.contains(&r.label()),
                "{} missing from Rejection::ALL_LABELS",
                r.label()
            );
        }
        let text = Metrics::new().encode();
        for l in Rejection::ALL_LABELS {
            assert!(
                text.contains(&format!(
                    "certfed_messages_rejected_total{{reason=\"{l}\"}} 0"
                )),
                "{l} not pre-created:\n{text}"
            );
        }
    }

    #[test]
    fn build_info_process_metrics_and_outbox_zero() {
        let m = Metrics::new();
        m.set_peers(&["node-b".into(), "node-c".into()]);
        m.set_outbox_depths(&[("node-b".into(), 5)]);
        let text = m.encode();
        assert!(
            text.contains(&format!(
                "certfed_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
        assert!(text.contains("certfed_outbox_depth{peer=\"node-b\"} 5"));
        assert!(text.contains("certfed_outbox_depth{peer=\"node-c\"} 0"));
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.contains("process_cpu_seconds_total "), "{text}");
        // Drained: back to 0, not stuck at the last value.
        m.set_outbox_depths(&[]);
        assert!(
            m.encode()
                .contains("certfed_outbox_depth{peer=\"node-b\"} 0")
        );
        // A removed peer loses its series.
        m.set_peers(&["node-c".into()]);
        assert!(!m.encode().contains("peer=\"node-b\""));
    }

    #[test]
    fn materialised_assistance_counts() {
        let mut c = AssistanceCounts::default();
        c.states.insert("r1".into(), "REQUESTED");
        c.states.insert("r2".into(), "REQUESTED");
        c.states.insert("r3".into(), "CLOSED");
        let by = c.by_state();
        assert_eq!(by["REQUESTED"], 2);
        assert_eq!(by["CLOSED"], 1);
    }
}
