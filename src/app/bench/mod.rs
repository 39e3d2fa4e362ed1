//! `certfed bench`: the standard benchmark on loopback. It builds a fresh
//! temporary federation (real PKI, real TLS, real SQLite on disk) in this process
//! and measures:
//!
//! - **ingest**: one node fed by a peer's Push stream with signed 1 KiB alerts;
//!   messages verified, durably committed and acknowledged per second;
//! - **relay**: per-hop latency at a moderate load (default 1,000 msgs/s): from
//!   the moment node-a has stored an alert (signed, durably committed, queued
//!   for b) to the moment its peer node-b has verified and committed it, each
//!   seen through that node's Watch stream so the observation cost cancels;
//!   and the same for two hops to node-c.
//!
//! Both phases also report the CPU time this process spent in them (per
//! message, and as cores kept busy): the ingest rate is cores over CPU per
//! alert, and the CPU per alert is the figure that moves less when the
//! machine is shared.
//!
//! With `--storage postgres` both phases run on PostgreSQL (see
//! [`pgserver`]): every node keeps its store in a fresh database on the
//! server `--pg-url` names, or on a throw-away local cluster.
//!
//! With `--memory` only the memory phase runs (see [`memory`]): node-b as a
//! real `certfed serve` process, its peer node-c down, and a million alerts
//! queued for node-c; b's resident memory is sampled from `/proc`.
//!
//! With `--disk` only the disk phase runs (see [`disk`]): bytes per stored
//! message on a relay and on a recipient, a retention purge, and a refill that
//! must reuse the freed space.
//!
//! With `--reconcile` only the reconciliation phase runs (see [`reconcile`]):
//! two nodes holding N shared messages, one missing M of them, linked: time
//! to converge, reconciliation rounds and bytes, peak RSS of both.
//! With `--federation [N]` only the federation phase runs (see
//! [`federation`]): N real `certfed serve` processes (default 37) in a seeded
//! random topology of degree 3–5, GREEN broadcasts and AMBER alerts to named
//! recipients from random origins; latencies, envelopes and receipts per
//! delivery, memory per node, exactness.
//! With `--roster [N]` only the roster phase runs (see [`roster`]): N nodes
//! on roster v1, v2 published on one; time until every node applied it.
//! With `--incident` only the incident phase runs (see [`incident`]): the cost
//! of correlating an arrival on a common indicator (with and without history),
//! and of GetSituation and ListIncidents for an incident with many sightings.
//! With `--signatures` only the signature phase runs (see [`signatures`]):
//! µs to seal one 1 KiB alert and to check one in batches of 1 to 512, and
//! the curve25519-dalek backend the processor runs.
pub mod attachments;
pub mod disk;
pub mod federation;
pub mod incident;
pub mod memory;
pub mod pgserver;
pub mod reconcile;
pub mod roster;
pub mod signatures;

use crate::app::localfed::{Backend, Fed};
use crate::domain::envelope::{Draft, seal};
use crate::domain::keys::Signer;
use crate::proto::v1::*;
use anyhow::{Context, bail};
use futures::StreamExt;
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Signed alerts pushed in the ingest phase.
    #[arg(long, default_value_t = 60_000)]
    pub messages: usize,
    /// Give each alert of the ingest phase indicators no other alert carries
    /// (an address and a SHA-256 of its own), as partners' alerts do, instead
    /// of the two every alert shares: the store's correlation index then takes
    /// its inserts all over its key range, not at two places.
    #[arg(long)]
    pub distinct_indicators: bool,
    /// Publish rate of the relay phase (messages per second).
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Duration of the relay phase in seconds.
    #[arg(long, default_value_t = 5)]
    pub seconds: u32,
    /// Run only the memory phase: queue alerts for a peer that stays down and
    /// sample the relaying node's resident memory (Linux, reads /proc).
    #[arg(long)]
    pub memory: bool,
    /// Signed alerts queued in the memory phase.
    #[arg(long, default_value_t = 1_000_000)]
    pub memory_messages: usize,
    /// Run only the disk phase: bytes per stored message, then a retention
    /// purge and a refill that must reuse the freed space.
    #[arg(long, conflicts_with = "memory")]
    pub disk: bool,
    /// Signed alerts stored (and later purged) in the disk phase.
    #[arg(long, default_value_t = 1_000_000)]
    pub disk_messages: usize,
    /// Run only the reconciliation phase: two linked nodes, one missing some
    /// of the other's messages; time to converge, traffic, peak RSS.
    #[arg(long, conflicts_with_all = ["memory", "disk"])]
    pub reconcile: bool,
    /// Signed alerts both nodes hold in the reconciliation phase.
    #[arg(long, default_value_t = 1_000_000)]
    pub reconcile_messages: usize,
    /// Of those, how many the receiving node lacks (chosen at random).
    #[arg(long, default_value_t = 1_000)]
    pub reconcile_missing: usize,
    /// Run only the roster phase: N in-process nodes (default 10) on roster
    /// v1; v2 published on one node; time until every node applied it.
    #[arg(long, num_args = 0..=1, default_missing_value = "10", value_name = "N",
          conflicts_with_all = ["memory", "disk", "reconcile", "incident", "federation"])]
    pub roster: Option<usize>,
    /// Run only the incident phase: correlation of an arrival on a common
    /// indicator, GetSituation and ListIncidents of a large incident.
    #[arg(long, conflicts_with_all = ["memory", "disk"])]
    pub incident: bool,
    /// Sightings reported into the incident in the incident phase.
    #[arg(long, default_value_t = 2000)]
    pub incident_sightings: usize,
    /// Loose alerts (in no incident) carrying the incident's indicator in the
    /// incident phase.
    #[arg(long, default_value_t = 5000)]
    pub incident_noise: usize,
    /// Run only the federation phase: N real node processes (default 37) in a
    /// seeded random topology of degree 3 to 5, playing GREEN broadcasts and
    /// AMBER alerts to named recipients from random origins.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "37",
          conflicts_with_all = ["memory", "disk", "reconcile", "incident"])]
    pub federation: Option<usize>,
    /// Seed of the federation phase's topology, origins and recipients.
    #[arg(long, default_value_t = 13)]
    pub federation_seed: u64,
    /// GREEN broadcasts played in the federation phase.
    #[arg(long, default_value_t = 200)]
    pub federation_green: usize,
    /// AMBER alerts (to named recipients) played in the federation phase.
    #[arg(long, default_value_t = 20)]
    pub federation_amber: usize,
    /// Named recipients of each AMBER alert in the federation phase.
    #[arg(long, default_value_t = 3)]
    pub federation_recipients: usize,
    /// Alerts per second in the federation phase.
    #[arg(long, default_value_t = 10.0)]
    pub federation_rate: f64,
    /// Nodes killed (SIGKILL) a third of the way through the federation phase
    /// and restarted 2 s later (the variant: 3); the run must stay exact.
    #[arg(long, default_value_t = 0)]
    pub federation_kill: usize,
    /// Seconds the federation phase waits, after the last publish, for every
    /// eligible node to show every alert before it counts the rest missing.
    #[arg(long, default_value_t = 60)]
    pub federation_settle: u64,
    /// Federation phase with Plumtree off on every node (`gossip.plumtree =
    /// false`): every message floods over every link policy allows, as
    /// before issue 13's trees; to compare in one build.
    #[arg(long)]
    pub federation_flood: bool,
    /// Federation phase from a fresh start: the warm-up sends one broadcast
    /// from node 0 only, so the first message of each other origin pays its
    /// Plumtree tree's formation (a flood) inside the measurement. By
    /// default the warm-up sends one broadcast from every node, and the
    /// load meets the trees of a running federation (the steady state).
    #[arg(long, conflicts_with = "federation_warm_trees")]
    pub federation_cold_trees: bool,
    /// The steady state (one warm-up broadcast from every node): the
    /// default, so this changes nothing; kept so that older command lines
    /// still run.
    #[arg(long)]
    pub federation_warm_trees: bool,
    /// Seconds the federation phase measures the nodes' CPU with no traffic
    /// (after the warm-up settled and every Watch stream is open, before
    /// the load): the fixed cost of timers, keepalives and idle tasks. 0
    /// measures nothing.
    #[arg(long, default_value_t = 0)]
    pub federation_idle_seconds: u64,
    /// Hop limit the federation phase's nodes sign into their alerts
    /// (`limits.hop_limit`; the default is the node's, 8). A lower one
    /// stresses relays that get a message at the limit: a GREEN alert is then
    /// owed only to the nodes within that many links of its origin, an AMBER
    /// alert to its recipients among them.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub federation_hop_limit: Option<u32>,
    /// Where the nodes keep their stores in the ingest and relay phases.
    #[arg(long, value_enum, default_value_t = BenchStorage::Sqlite)]
    pub storage: BenchStorage,
    /// With `--storage postgres`: a PostgreSQL server whose role may create
    /// databases (one fresh database per node, dropped afterwards). Without
    /// it, a throw-away local cluster is started (Debian's postgresql).
    #[arg(
        long,
        env = "CERTFED_BENCH_PG_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub pg_url: Option<String>,
    /// Run only the attachment phase: one TLP:AMBER attachment from node-a to
    /// node-c through node-b (a process): throughput, node-b's peak RSS, and
    /// CRITICAL alert latency during the transfer.
    #[arg(long, conflicts_with_all = ["memory", "disk", "reconcile", "incident"])]
    pub attachments: bool,
    /// Size of the attachment in the attachment phase, in MiB.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    pub attachment_mib: u64,
    /// Run only the signature phase: µs to seal one 1 KiB alert and to check
    /// one as admission does, in batches of 1, 16, 64 and 512, and the
    /// curve25519-dalek backend this processor runs.
    #[arg(long, conflicts_with_all = ["memory", "disk", "reconcile", "incident", "roster", "federation", "attachments"])]
    pub signatures: bool,
}

/// The storage backend a benchmark measures.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchStorage {
    Sqlite,
    Postgres,
}

/// A GREEN alert whose serialized form is about 1 KiB, with the two
/// indicators every such alert carries.
pub fn kib_alert(i: usize) -> Alert {
    kib_alert_with(i, false)
}

/// [`kib_alert`], with indicators of its own when `distinct` (an IPv6
/// documentation address and a SHA-256, both derived from `i`).
pub fn kib_alert_with(i: usize, distinct: bool) -> Alert {
    let mut a = Alert {
        title: format!("Benchmark alert {i}"),
        description: String::new(),
        tlp: Tlp::Green as i32,
        severity: Severity::Medium as i32,
        rsit_class: RsitClass::MaliciousCode as i32,
        sectors: vec![Nis2Sector::Energy as i32, Nis2Sector::Transport as i32],
        affected_countries: vec!["EE".into(), "UA".into()],
        indicators: vec![
            Indicator {
                r#type: IndicatorType::Ip as i32,
                value: "192.0.2.7".into(),
                comment: String::new(),
            },
            Indicator {
                r#type: IndicatorType::Sha256 as i32,
                value: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
                comment: String::new(),
            },
        ],
        ..Default::default()
    };
    if distinct {
        a.indicators[0].value = format!("2001:db8::{:x}:{:x}", i >> 16, i & 0xffff);
        a.indicators[1].value = crate::domain::exchange::sha256_hex(&(i as u64).to_le_bytes());
    }
    let pad = 1024usize.saturating_sub(a.encoded_len() + 3);
    a.description = "x".repeat(pad);
    a
}

/// A signed 1 KiB GREEN alert from `signer`, as a peer would push it.
pub fn signed_kib_alert(signer: &Signer, i: usize, created_ms: i64) -> SignedEnvelope {
    signed_alert(signer, &kib_alert(i), created_ms)
}

/// `alert`, signed by `signer` as a GREEN broadcast created at `created_ms`.
fn signed_alert(signer: &Signer, alert: &Alert, created_ms: i64) -> SignedEnvelope {
    seal(signer, alert_draft(alert, created_ms))
}

/// `alert` as the draft of a GREEN broadcast created at `created_ms` (a fresh
/// id, no expiry, hop limit 8), ready to seal; the integration tests seal
/// their plain alerts through it too.
pub fn alert_draft(alert: &Alert, created_ms: i64) -> Draft {
    Draft {
        message_id: uuid::Uuid::now_v7().to_string(),
        kind: MessageKind::Alert,
        tlp: Tlp::Green,
        recipients: vec![],
        created_ms,
        expires_ms: None,
        hop_limit: 8,
        exercise: false,
        encrypted: false,
        payload: alert.encode_to_vec(),
    }
}

/// The signing key of member `id` of the benchmark's PKI.
fn member_signer(fed: &Fed, id: &str) -> anyhow::Result<Signer> {
    let pem = std::fs::read_to_string(fed.pki.path(&format!("{id}.sign.key")))?;
    Signer::from_pkcs8_pem(id, &pem).map_err(anyhow::Error::msg)
}

/// A Push frame carrying `env` as its origin pushes it (no custody records).
fn origin_frame(seq: u64, env: SignedEnvelope) -> PushFrame {
    PushFrame {
        bundled: Vec::new(),
        gossip: None,
        resent: false,
        toward: Vec::new(),
        returning: false,
        hops: vec![],
        seq,
        envelope: Some(env),
    }
}

/// Signed frames buffered between a signing thread and its Push stream.
const SIGNED_FEED: usize = 1024;

/// `n` fresh 1 KiB alerts signed by member `id` (numbered `from + i`,
/// created when signed) on a thread of its own, streamed as Push frames with
/// seq 1..=n into a bounded channel: the benchmark never holds more than
/// [`SIGNED_FEED`] of them, and signing is not the receiver's work.
struct SignedStream {
    rx: Option<tokio::sync::mpsc::Receiver<PushFrame>>,
    thread: std::thread::JoinHandle<Option<tokio::sync::mpsc::Sender<PushFrame>>>,
}

impl SignedStream {
    fn start(fed: &Fed, id: &str, n: usize, from: usize) -> anyhow::Result<SignedStream> {
        let signer = member_signer(fed, id)?;
        let (tx, rx) = tokio::sync::mpsc::channel::<PushFrame>(SIGNED_FEED);
        let thread = std::thread::Builder::new()
            .name("bench-signer".into())
            .spawn(move || {
                for i in 0..n {
                    let env = signed_kib_alert(&signer, from + i, crate::service::now_ms());
                    if tx.blocking_send(origin_frame(i as u64 + 1, env)).is_err() {
                        return None;
                    }
                }
                // Keep the stream open until every ack is in.
                Some(tx)
            })?;
        Ok(SignedStream {
            rx: Some(rx),
            thread,
        })
    }

    /// The frames, for the Push stream (once).
    fn frames(&mut self) -> tokio::sync::mpsc::Receiver<PushFrame> {
        self.rx.take().expect("the frames are taken once")
    }

    /// Ends the stream (once every ack is in) and the signing thread.
    fn finish(self) -> anyhow::Result<()> {
        drop(
            self.thread
                .join()
                .map_err(|_| anyhow::anyhow!("signing thread panicked"))?,
        );
        Ok(())
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

struct Ingest {
    messages: usize,
    seconds: f64,
    /// CPU time (user + system) of this process over those seconds: the
    /// ingesting node and the benchmark's side of the link (its TLS and
    /// HTTP/2; the alerts were signed before the clock started).
    cpu_seconds: f64,
    /// Median time of a first page of ListAlerts (50) over what was
    /// ingested: without a filter, and for TLP:GREEN.
    list_ms: f64,
    list_tlp_ms: f64,
    /// The same for an origin that sent one alert of them all.
    list_origin_ms: f64,
}

/// Alerts on the first page the listing measurement asks for.
const LIST_PAGE: usize = 50;

/// Median milliseconds of five first pages of [`LIST_PAGE`] alerts matching
/// `filter`, on a node holding `held` of them (each page must hold what
/// the node holds, up to the page size).
async fn list_page_ms(
    op: &mut operator_client::OperatorClient<tonic::transport::Channel>,
    filter: AlertFilter,
    held: usize,
) -> anyhow::Result<f64> {
    let want = held.min(LIST_PAGE);
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let page = op
            .list_alerts(ListAlertsRequest {
                filter: Some(filter.clone()),
                page_size: LIST_PAGE as u32,
                page_token: String::new(),
            })
            .await
            .context("ListAlerts after the ingest")?
            .into_inner();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        if page.alerts.len() != want {
            bail!(
                "ListAlerts after the ingest gave {} alerts, not {want}",
                page.alerts.len()
            );
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(percentile(&times, 0.5))
}

/// A federation on `backend`.
fn on(fed: Fed, backend: &Backend) -> Fed {
    match backend {
        Backend::Sqlite => fed.sqlite(),
        Backend::Postgres { admin_url } => fed.postgres(admin_url),
    }
}

async fn bench_ingest(
    messages: usize,
    distinct: bool,
    backend: &Backend,
) -> anyhow::Result<Ingest> {
    // node-b listens; the benchmark plays its peer node-a.
    let fed = on(Fed::new(&["node-a", "node-b"], &[(0, 1)]), backend);
    let b = fed.try_start(1).await?;
    let mut op = fed.operator(1).await;
    // One alert of node-b's own, under all of node-a's: a listing for
    // node-b must not read node-a's.
    op.publish_alert(PublishAlertRequest {
        alert: Some(kib_alert(0)),
        recipients: vec![],
        ..Default::default()
    })
    .await
    .context("node-b's own alert")?;
    let signer = member_signer(&fed, "node-a")?;
    let now = crate::service::now_ms();
    // Signing is the origin's work, not the receiver's: done before the clock starts.
    let frames: Vec<PushFrame> = (0..messages)
        .map(|i| {
            let alert = kib_alert_with(i, distinct);
            origin_frame(i as u64 + 1, signed_alert(&signer, &alert, now))
        })
        .collect();
    let mut client =
        crate::app::localfed::federation_client(&fed.pki, &fed.addr(1), "node-a", Some("node-b"))
            .await;
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    let started = Instant::now();
    let cpu_started = memory::own_cpu_seconds();
    let mut acks = client
        .push(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .context("push stream")?
        .into_inner();
    let feeder = tokio::spawn(async move {
        for f in frames {
            if tx.send(f).await.is_err() {
                break;
            }
        }
        // Keep the stream open until every ack is in.
        tx
    });
    let mut accepted = 0usize;
    while accepted < messages {
        let Some(ack) = acks.message().await? else {
            bail!("stream ended after {accepted} acks");
        };
        if ack.outcome != PushOutcome::Accepted as i32 {
            bail!("frame {} not accepted: {}", ack.seq, ack.reason);
        }
        accepted += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = cpu_since(cpu_started);
    drop(feeder.await?);
    let held = messages + 1;
    let list_ms = list_page_ms(&mut op, AlertFilter::default(), held).await?;
    let green = AlertFilter {
        tlp: vec![Tlp::Green as i32],
        ..Default::default()
    };
    let list_tlp_ms = list_page_ms(&mut op, green, held).await?;
    let own = AlertFilter {
        origins: vec!["node-b".into()],
        ..Default::default()
    };
    let list_origin_ms = list_page_ms(&mut op, own, 1).await?;
    b.shutdown().await?;
    Ok(Ingest {
        messages,
        seconds,
        cpu_seconds,
        list_ms,
        list_tlp_ms,
        list_origin_ms,
    })
}

struct Relay {
    sent: usize,
    hop1: Vec<f64>,
    hop2: Vec<f64>,
    seconds: f64,
    /// CPU time of this process while the alerts were published: the three
    /// nodes, the publishing operator and the three Watch streams.
    cpu_seconds: f64,
}

/// CPU seconds this process used since `start` (NaN when `/proc` cannot
/// tell).
fn cpu_since(start: Option<f64>) -> f64 {
    match (start, memory::own_cpu_seconds()) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    }
}

async fn bench_relay(rate: u32, seconds: u32, backend: &Backend) -> anyhow::Result<Relay> {
    let fed = on(Fed::line(), backend);
    let a = fed.try_start(0).await?;
    let b = fed.try_start(1).await?;
    let c = fed.try_start(2).await?;
    let op_a = fed.operator(0).await;
    let sent: Arc<Mutex<HashSet<String>>> = Arc::default();
    // Let the links come up before measuring.
    let mut warm = op_a.clone();
    let id = warm
        .publish_alert(PublishAlertRequest {
            alert: Some(kib_alert(0)),
            recipients: vec![],
            ..Default::default()
        })
        .await?
        .into_inner()
        .message_id;
    let mut op_c = fed.operator(2).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while op_c
        .get_message(GetMessageRequest {
            message_id: id.clone(),
        })
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("warm-up alert did not cross the line");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut watchers = Vec::new();
    for i in [0usize, 1, 2] {
        let mut op = fed.operator(i).await;
        let stream = op
            .watch(WatchRequest {
                filter: None,
                after_cursor: 0,
                from_start: false,
            })
            .await?
            .into_inner();
        watchers.push(tokio::spawn(async move {
            // Arrival times by id; matched with send times once the run is over
            // (an arrival may beat the publisher's own response).
            let mut seen = HashMap::new();
            let mut stream = stream;
            while let Some(Ok(ev)) = stream.next().await {
                let at = Instant::now();
                if let Some(m) = ev.message {
                    seen.insert(m.message_id, at);
                }
            }
            seen
        }));
    }

    let total = (rate * seconds) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let cpu_started = memory::own_cpu_seconds();
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        tick.tick().await;
        let mut op = op_a.clone();
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            let r = op
                .publish_alert(PublishAlertRequest {
                    alert: Some(kib_alert(i + 1)),
                    recipients: vec![],
                    ..Default::default()
                })
                .await;
            if let Ok(r) = r {
                sent.lock().expect("lock").insert(r.into_inner().message_id);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_seconds = cpu_since(cpu_started);
    // Let the last messages arrive, then stop the nodes (which ends the watches).
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.shutdown().await?;
    b.shutdown().await?;
    c.shutdown().await?;
    // Per hop: when b (and c) stored it, minus when a stored it, each seen
    // through the node's own Watch stream, so the observation cost cancels.
    let sent = sent.lock().expect("lock").clone();
    let mut seen = Vec::new();
    for w in watchers {
        seen.push(w.await?);
    }
    let hop = |to: usize| {
        let mut l: Vec<f64> = sent
            .iter()
            .filter_map(|id| {
                let (t0, t) = (seen[0].get(id)?, seen[to].get(id)?);
                Some(t.saturating_duration_since(*t0).as_secs_f64() * 1000.0)
            })
            .collect();
        l.sort_by(f64::total_cmp);
        l
    };
    let (hop1, hop2) = (hop(1), hop(2));
    Ok(Relay {
        sent: total,
        hop1,
        hop2,
        seconds: elapsed,
        cpu_seconds,
    })
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.signatures {
        return signatures::run(args.json).await;
    }
    if args.memory {
        return memory::run(args.memory_messages, args.json).await;
    }
    if args.disk {
        return disk::run(args.disk_messages, args.json).await;
    }
    if args.incident {
        return incident::run(args.incident_sightings, args.incident_noise, args.json).await;
    }
    if let Some(nodes) = args.roster {
        return roster::run(nodes, args.json).await;
    }
    if let Some(nodes) = args.federation {
        let plan = federation::Plan {
            nodes,
            seed: args.federation_seed,
            green: args.federation_green,
            amber: args.federation_amber,
            recipients: args.federation_recipients,
            rate: args.federation_rate,
            kill: args.federation_kill,
            settle_secs: args.federation_settle,
            flood: args.federation_flood,
            warm_trees: !args.federation_cold_trees,
            idle_secs: args.federation_idle_seconds,
            hop_limit: args.federation_hop_limit,
        };
        return federation::run(plan, args.json).await;
    }
    if args.attachments {
        return attachments::run(args.attachment_mib, args.json).await;
    }
    if args.reconcile {
        return reconcile::run(args.reconcile_messages, args.reconcile_missing, args.json).await;
    }
    let server = match args.storage {
        BenchStorage::Sqlite => None,
        BenchStorage::Postgres => {
            let url = args.pg_url.clone();
            Some(tokio::task::spawn_blocking(move || pgserver::Server::get(url)).await??)
        }
    };
    if let Some(s) = &server {
        // A server that cannot be reached, or a role that may not create
        // databases, is an error here, before any node starts.
        use crate::storage::postgres::admin;
        let probe = admin::create_database(&s.url, "probe")
            .await
            .map_err(|e| anyhow::anyhow!("certfed bench --storage postgres: {e}"))?;
        admin::drop_database(&s.url, &probe)
            .await
            .map_err(|e| anyhow::anyhow!("certfed bench --storage postgres: {e}"))?;
    }
    let (backend, storage) = match &server {
        None => (Backend::Sqlite, "sqlite".to_string()),
        Some(s) => (
            Backend::Postgres {
                admin_url: s.url.clone(),
            },
            match &s.cluster {
                Some(c) => format!("postgres (throw-away local cluster, {})", c.version),
                None => "postgres (--pg-url)".to_string(),
            },
        ),
    };
    if !args.json {
        eprintln!(
            "certfed bench: storage {storage}; ingest {} signed 1 KiB alerts, then relay at {} msgs/s for {} s ...",
            args.messages, args.rate, args.seconds
        );
    }
    let load_before = memory::load_average();
    let ingest = bench_ingest(args.messages, args.distinct_indicators, &backend).await?;
    let relay = bench_relay(args.rate, args.seconds, &backend).await?;
    // Stops a throw-away cluster (after the federations dropped their databases).
    drop(server);
    let ingest_rate = ingest.messages as f64 / ingest.seconds;
    // CPU per message and cores kept busy: the rate is their quotient, and
    // on a shared machine the CPU an alert costs moves less than the rate.
    let ingest_cpu_us = ingest.cpu_seconds * 1e6 / ingest.messages as f64;
    let ingest_cores = ingest.cpu_seconds / ingest.seconds;
    let relay_cpu_ms = relay.cpu_seconds * 1e3 / relay.sent.max(1) as f64;
    let relay_cores = relay.cpu_seconds / relay.seconds;
    let p50 = percentile(&relay.hop1, 0.50);
    let p99 = percentile(&relay.hop1, 0.99);
    let p50_2 = percentile(&relay.hop2, 0.50);
    let p99_2 = percentile(&relay.hop2, 0.99);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    // Whether each alert carried indicators of its own (--distinct-indicators).
    let indicators = if args.distinct_indicators {
        "distinct"
    } else {
        "shared"
    };
    if args.json {
        let v = serde_json::json!({
            "storage": storage,
            "ingest_msgs_per_s": (ingest_rate * 10.0).round() / 10.0,
            "ingest_messages": ingest.messages,
            "ingest_seconds": ingest.seconds,
            "ingest_indicators": indicators,
            "ingest_cpu_us_per_msg": (ingest_cpu_us * 10.0).round() / 10.0,
            "ingest_cores_busy": (ingest_cores * 100.0).round() / 100.0,
            "list_alerts_ms": ingest.list_ms,
            "list_alerts_tlp_ms": ingest.list_tlp_ms,
            "list_alerts_origin_ms": ingest.list_origin_ms,
            "relay_p50_ms": p50,
            "relay_p99_ms": p99,
            "relay_two_hop_p50_ms": p50_2,
            "relay_two_hop_p99_ms": p99_2,
            "relay_messages": relay.sent,
            "relay_delivered_one_hop": relay.hop1.len(),
            "relay_delivered_two_hops": relay.hop2.len(),
            "relay_offered_rate_msgs_per_s": args.rate,
            "relay_achieved_rate_msgs_per_s": relay.sent as f64 / relay.seconds,
            "relay_cpu_ms_per_msg": (relay_cpu_ms * 1000.0).round() / 1000.0,
            "relay_cores_busy": (relay_cores * 100.0).round() / 100.0,
            "cores": cores,
            "load_average_before": load_before,
        });
        println!("{v}");
    } else {
        println!("{:<44} {:>12}", "metric", "value");
        println!("{:<44} {:>12}", "storage", storage);
        println!(
            "{:<44} {:>12.0}",
            "ingest_msgs_per_s (verify+commit+ack)", ingest_rate
        );
        println!("{:<44} {:>12}", "ingest messages", ingest.messages);
        println!("{:<44} {:>12}", "ingest indicators", indicators);
        println!(
            "{:<44} {:>12.1}",
            "ingest CPU us per message (node + sender)", ingest_cpu_us
        );
        println!("{:<44} {:>12.2}", "ingest cores busy", ingest_cores);
        println!(
            "{:<44} {:>12.3}",
            "list_alerts_ms (first 50 of them)", ingest.list_ms
        );
        println!(
            "{:<44} {:>12.3}",
            "list_alerts_tlp_ms (first 50, TLP:GREEN)", ingest.list_tlp_ms
        );
        println!(
            "{:<44} {:>12.3}",
            "list_alerts_origin_ms (an origin's one alert)", ingest.list_origin_ms
        );
        println!("{:<44} {:>12.3}", "relay_p50_ms (one hop)", p50);
        println!("{:<44} {:>12.3}", "relay_p99_ms (one hop)", p99);
        println!("{:<44} {:>12.3}", "relay p50 ms (two hops, a->b->c)", p50_2);
        println!("{:<44} {:>12.3}", "relay p99 ms (two hops, a->b->c)", p99_2);
        println!(
            "{:<44} {:>12}",
            "relay messages delivered one hop / two",
            format!("{}/{}", relay.hop1.len(), relay.hop2.len())
        );
        println!(
            "{:<44} {:>12.0}",
            "relay achieved rate msgs/s",
            relay.sent as f64 / relay.seconds
        );
        println!(
            "{:<44} {:>12.3}",
            "relay CPU ms per message (3 nodes + clients)", relay_cpu_ms
        );
        println!("{:<44} {:>12.2}", "relay cores busy", relay_cores);
        println!("{:<44} {:>12}", "cores", cores);
        println!(
            "{:<44} {:>12}",
            "load average before (1/5/15 min)", load_before
        );
    }
    if relay.hop1.len() < relay.sent || relay.hop2.len() < relay.sent {
        bail!(
            "relay lost messages: sent {}, one hop {}, two hops {}",
            relay.sent,
            relay.hop1.len(),
            relay.hop2.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::alert::{Limits, validate_alert};

    fn values(a: &Alert) -> Vec<String> {
        a.indicators.iter().map(|i| i.value.clone()).collect()
    }

    /// `--distinct-indicators` gives every alert indicators of its own that
    /// a node accepts, at the same size; without it all alerts share theirs.
    #[test]
    fn distinct_indicators_differ_per_alert_and_pass_validation() {
        let now = crate::service::now_ms();
        let mut seen = HashSet::new();
        for i in [0, 1, 2, 65_535, 65_536, 16_777_216] {
            let a = kib_alert_with(i, true);
            validate_alert(&a, now, a.encoded_len(), &Limits::default())
                .unwrap_or_else(|e| panic!("alert {i}: {e:?}"));
            assert!(
                (1000..=1030).contains(&a.encoded_len()),
                "{}",
                a.encoded_len()
            );
            for v in values(&a) {
                assert!(seen.insert(v.clone()), "{v} repeated (alert {i})");
            }
        }
        assert_eq!(values(&kib_alert(1)), values(&kib_alert(2)), "shared");
        assert_ne!(values(&kib_alert_with(1, true)), values(&kib_alert(1)));
    }
}
