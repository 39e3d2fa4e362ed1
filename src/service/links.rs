//! Peer links: one task per configured peer keeps a mutual-TLS Push stream open
//! and drains that peer's durable outbox through it. Entries leave the outbox
//! only when the peer acknowledges them after its own durable commit.
//!
//! Invariants:
//! - Each session starts with Hello, which tells the peer's
//!   `limits.max_message_bytes`; an envelope larger than that is not sent but
//!   marked REJECTED with the peer's limit as the reason (shown by
//!   GetDeliveryStatus, and by ListPeers as the link's last error), and the
//!   link moves on.
//! - A DEFERRED acknowledgement (a temporary refusal) keeps the entry: it is
//!   offered again after a per-message backoff (never before the peer's hint),
//!   while the rest of the queue flows; GetDeliveryStatus shows "deferred:
//!   reason; next try at ...". REJECTED is final.
//! - A link never waits silently: with messages in flight and no
//!   acknowledgement for `limits.ack_timeout_secs`, the session ends with that
//!   reason and reconnects; HTTP/2 keepalive (see `transport::client`) ends a
//!   session whose peer stopped answering.
//! - Reconnects use capped exponential backoff with jitter, reset only after
//!   the peer accepted something (not merely on connect); a backoff is cut
//!   short when the peer connects to this node (it is reachable again).
//! - The link's last error keeps the last meaningful reason (see `peers`).
//! - A peer with several addresses (`endpoints`, an active/standby pair) is
//!   tried address by address: the link stays on the one that answered, moves
//!   to the next at once when it fails (a standby answers UNAVAILABLE
//!   "standby of node X"), and backs off only after every address failed.
//!
//! [`LinkTasks`] owns the running tasks (the application holds it); the state
//! they share with the services (status, wakers, the peer set) is `peers::Peers`.
use crate::config::PeerSection;
use crate::domain::envelope::ms_to_ts;
use crate::proto::v1::MessageKind;
use crate::proto::v1::federation_client::FederationClient;
use crate::proto::v1::{
    DeliveryState, EnvelopeHeader, HelloRequest, HopChain, HopRecord, LinkState, PushAck,
    PushFrame, PushOutcome, SignedEnvelope,
};
use crate::service::limits::bounded;
use crate::service::node::Node;
use crate::service::now_ms;
use crate::service::peers::{LinkError, expect_member};
use crate::storage::{Deferral, OutboxItem, Outcome};
use futures::StreamExt;
use prost::Message;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

/// Messages in flight (sent, not yet acknowledged) per link.
const WINDOW: usize = 8192;
/// Outbox rows read per query.
const PAGE: usize = 1024;
/// Reconnect backoff: doubles after each failed session, from MIN to MAX
/// (with jitter); back to MIN only once the peer accepted something.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Retry delay of a message the peer deferred: doubles with each deferral of
/// that message, from MIN to MAX; never before the peer's own hint, and
/// never later than MAX.
const DEFER_MIN: Duration = Duration::from_secs(1);
const DEFER_MAX: Duration = Duration::from_secs(300);
/// Time the peer has to answer Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Lean receipts: receipts read from a link's outbox wait RECEIPT_GATHER
/// for more, and a link sends at most one bundle of them per
/// RECEIPT_INTERVAL (a full bundle goes at once); then they go as one
/// bundled frame. Messages never wait for them. Receipts are status, not
/// alerts: an idle link passes one on within a quarter second, a busy one
/// merges a second's receipts of a whole subtree and of many messages into
/// one frame.
const RECEIPT_GATHER: Duration = Duration::from_millis(250);
const RECEIPT_INTERVAL: Duration = Duration::from_secs(1);
const BUNDLE_MAX_FRAMES: usize = 256;
const BUNDLE_MAX_BYTES: usize = 256 * 1024;

/// Receipts read from the outbox and not sent yet (lean receipts).
#[derive(Default)]
struct Held {
    frames: Vec<PushFrame>,
    bytes: usize,
    /// When the first of them was read.
    since: Option<Instant>,
    /// When the last bundle went.
    last: Option<Instant>,
}

impl Held {
    /// Holds `frame`; returns a full bundle to send first when it would not
    /// fit (at most BUNDLE_MAX_FRAMES frames, BUNDLE_MAX_BYTES bytes).
    fn add(&mut self, frame: PushFrame) -> Option<Vec<PushFrame>> {
        let size = frame.encoded_len();
        let full = (self.bytes + size > BUNDLE_MAX_BYTES || self.frames.len() == BUNDLE_MAX_FRAMES)
            .then(|| self.take());
        self.since.get_or_insert_with(Instant::now);
        self.bytes += size;
        self.frames.push(frame);
        full
    }

    /// When what is held goes: RECEIPT_GATHER after the first of it was
    /// read, and not sooner than RECEIPT_INTERVAL after the last bundle.
    fn due(&self) -> Option<Instant> {
        let since = self.since? + RECEIPT_GATHER;
        Some(self.last.map_or(since, |l| since.max(l + RECEIPT_INTERVAL)))
    }

    /// Everything held, as one bundle; nothing is held afterwards.
    fn take(&mut self) -> Vec<PushFrame> {
        self.bytes = 0;
        self.since = None;
        self.last = Some(Instant::now());
        std::mem::take(&mut self.frames)
    }
}

/// Sends one frame (a carrier of `bundled` ones when there are several).
async fn send_frame(
    node: &Node,
    tx: &mpsc::Sender<PushFrame>,
    peer: &str,
    mut frames: Vec<PushFrame>,
    kind: &str,
    ack_timeout: Duration,
) -> Result<(), LinkError> {
    let frame = if frames.len() == 1 {
        frames.pop().expect("one frame")
    } else {
        PushFrame {
            seq: 0,
            envelope: None,
            hops: Vec::new(),
            returning: false,
            bundled: frames,
            gossip: None,
            resent: false,
            toward: Vec::new(),
        }
    };
    node.metrics
        .frames_sent
        .get_or_create(&crate::service::metrics::KindLabel { kind: kind.into() })
        .inc();
    match tokio::time::timeout(ack_timeout, tx.send(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(LinkError::generic("stream closed by peer")),
        Err(_) => Err(LinkError::meaningful(format!(
            "{peer} took nothing from the stream for {} s; reconnecting",
            ack_timeout.as_secs()
        ))),
    }
}

/// One running link task.
struct Running {
    peer: PeerSection,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// The running link tasks of a node.
#[derive(Default)]
pub struct LinkTasks {
    running: Mutex<HashMap<String, Running>>,
}

impl LinkTasks {
    fn spawn(&self, node: &Arc<Node>, p: PeerSection) {
        let (stop, stop_rx) = watch::channel(false);
        let Some(waker) = node.peers.waker(&p.id) else {
            return;
        };
        let task = tokio::spawn(run_link(node.clone(), p.clone(), waker, stop_rx));
        self.running.lock().expect("links lock").insert(
            p.id.clone(),
            Running {
                peer: p,
                stop,
                task,
            },
        );
    }

    /// Starts one link task per configured peer.
    pub fn start_all(&self, node: &Arc<Node>) {
        for p in node.peers.list().iter() {
            self.spawn(node, p.clone());
        }
    }

    /// Applies a reloaded peer set: links to removed or changed peers stop
    /// (and changed ones start again with the new settings); new peers get a
    /// link; links to unchanged peers keep running untouched, except those whose
    /// certificate (seen at connect) is in `revoked`, which restart (and fail
    /// the handshake against the new CRL).
    pub fn apply(&self, node: &Arc<Node>, new: Vec<PeerSection>, revoked: &HashSet<String>) {
        let mut restart = Vec::new();
        {
            let mut running = self.running.lock().expect("links lock");
            let ids: Vec<String> = running.keys().cloned().collect();
            for id in ids {
                let keep = new.iter().find(|p| p.id == id).filter(|p| {
                    running[&id].peer == **p && !node.peer_serial_revoked(&id, revoked)
                });
                if keep.is_none() {
                    let r = running.remove(&id).expect("present");
                    let _ = r.stop.send(true);
                    r.task.abort();
                    tracing::info!(peer = %id, "reload: link stopped");
                    if let Some(p) = new.iter().find(|p| p.id == id) {
                        // Its section changed: what it refused may go now.
                        node.reconcile
                            .forget_refusals(&id, crate::service::now_ms());
                        restart.push(p.clone());
                    }
                }
            }
        }
        let old_ids: HashSet<String> = node.peers.ids().into_iter().collect();
        node.peers.replace(new.clone());
        node.metrics.set_peers(&node.peers.ids());
        for p in new.iter().filter(|p| !old_ids.contains(&p.id)) {
            tracing::info!(peer = %p.id, "reload: new peer");
            self.spawn(node, p.clone());
        }
        for p in restart {
            self.spawn(node, p);
        }
    }

    /// Stops every link; returns the tasks to await.
    pub fn stop_all(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.running
            .lock()
            .expect("links lock")
            .drain()
            .map(|(_, r)| {
                let _ = r.stop.send(true);
                r.task
            })
            .collect()
    }
}

fn jitter(d: Duration) -> Duration {
    let f: f64 = rand::random_range(0.5..1.0);
    d.mul_f64(f)
}

async fn run_link(
    node: Arc<Node>,
    peer: PeerSection,
    waker: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    let label = node.metrics.peer(&peer.id);
    let id = peer.id.clone();
    // Several addresses (an active/standby pair): tried in order; the link
    // stays on the one that answered until it fails, then moves to the next
    // at once, and backs off only once every address failed in a row.
    let endpoints: Vec<String> = peer.endpoints.iter().map(|e| e.to_string()).collect();
    let mut at = 0usize;
    let mut misses = 0usize;
    let reachable = node.peers.reachable_signal(&id);
    // Reconciliation with this peer lives and dies with its link task.
    struct Abort(tokio::task::JoinHandle<()>);
    impl Drop for Abort {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _reconcile = Abort(tokio::spawn(crate::service::reconcile::run_loop(
        node.clone(),
        id.clone(),
    )));
    loop {
        if node.shutdown.is_cancelled() || *stop.borrow() {
            break;
        }
        let endpoint = endpoints
            .get(at)
            .cloned()
            .unwrap_or_else(|| peer.endpoint.to_string());
        node.peers.update(&id, |s| s.state = LinkState::Connecting);
        let mut up = false;
        let result = tokio::select! {
            r = session(&node, &id, &endpoint, &waker, &mut backoff, &mut up) => r,
            _ = stop.wait_for(|s| *s) => Ok(()),
        };
        node.metrics.peer_up.get_or_create(&label).set(0);
        match result {
            Ok(()) => break, // shutdown
            Err(e) => {
                tracing::warn!(peer = %id, %endpoint, error = %e.text, retry_in = ?backoff, "peer link down");
                node.peers.update(&id, |s| s.failed(e));
            }
        }
        misses = if up { 1 } else { misses + 1 };
        if endpoints.len() > 1 {
            at = (at + 1) % endpoints.len();
            if misses < endpoints.len() {
                // The next address may be the active member: try it now.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                    _ = node.shutdown.cancelled() => break,
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        }
        misses = 0;
        let peer_back = async {
            match &reachable {
                Some(r) => r.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(jitter(backoff)) => {}
            _ = peer_back => {
                tracing::info!(peer = %id, "the peer connected to us: reconnecting now");
            }
            _ = node.shutdown.cancelled() => break,
            _ = stop.wait_for(|s| *s) => break,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// The peer answered: the link is up (and any outage is over).
fn contact(node: &Node, peer: &str) {
    let now = now_ms();
    node.peers.update(peer, |s| s.up(now));
    node.metrics
        .peer_last_contact
        .get_or_create(&node.metrics.peer(peer))
        .set(now / 1000);
}

/// When to offer again an entry the peer deferred for the `n`-th time
/// (`n` from 1), given the peer's hint (0: none).
fn next_attempt(now: i64, n: u32, hint_ms: u64) -> i64 {
    let backoff = DEFER_MIN
        .saturating_mul(1u32 << (n.saturating_sub(1)).min(16))
        .min(DEFER_MAX);
    let backoff = backoff.mul_f64(rand::random_range(0.8..1.0));
    let wait = backoff.max(Duration::from_millis(hint_ms)).min(DEFER_MAX);
    now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
}

/// A time for "next try at" texts (UTC, RFC 3339, seconds).
fn rfc3339(ms: i64) -> String {
    let ts = ms_to_ts(ms);
    time::OffsetDateTime::from_unix_timestamp(ts.seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms after the epoch"))
}

/// What was sent and not yet acknowledged: cursor → (enqueued time, times
/// the peer deferred it before).
/// Per cursor in flight: when it was queued, how often it was deferred, the
/// roster version it carries (a roster message: once the peer takes it, the
/// peer holds at least that version), and whether it is exercise traffic
/// (counted apart in the metrics).
type InFlight = BTreeMap<u64, (i64, u32, Option<u64>, bool)>;

/// One connected session. Returns Ok on shutdown, Err with a reason otherwise.
async fn session(
    node: &Arc<Node>,
    peer: &str,
    endpoint: &str,
    waker: &Notify,
    backoff: &mut Duration,
    up: &mut bool,
) -> Result<(), LinkError> {
    let tls = node.tls_client();
    let sink: crate::transport::client::SerialSink = Arc::default();
    let channel = crate::transport::client::channel_observed(
        endpoint,
        tls,
        Some(expect_member(peer, node.roster())),
        Duration::from_secs(5),
        Some(sink.clone()),
    )
    .map_err(|e| LinkError::meaningful(format!("invalid endpoint: {e}")))?;
    let max = node.cfg.limits.max_message_bytes + 64 * 1024;
    let mut client = FederationClient::new(channel)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    // Hello: is it the node we expect, and how large may envelopes be?
    let hello = tokio::time::timeout(
        HELLO_TIMEOUT,
        client.hello(HelloRequest {
            node_id: node.id.clone(),
            roster_version: node.roster_version(),
        }),
    )
    .await
    .map_err(|_| {
        LinkError::meaningful(format!(
            "{peer} did not answer Hello within {} s",
            HELLO_TIMEOUT.as_secs()
        ))
    })?;
    let (peer_limit, peer_roster, bundles, gossip, ranges) = match hello {
        Ok(r) => {
            let r = r.into_inner();
            (
                Some(r.max_message_bytes).filter(|m| *m > 0),
                Some(r.roster_version),
                r.accepts_bundles,
                r.accepts_gossip,
                Some(r.reconcile_max_ranges).filter(|m| *m > 0),
            )
        }
        Err(s) if s.code() == tonic::Code::Unimplemented => (None, None, false, false, None),
        Err(s) => return Err(describe(peer, &s)),
    };
    node.peers.update(peer, |s| {
        s.peer_max_message_bytes = peer_limit;
        s.peer_reconcile_ranges = ranges;
        if peer_roster.is_some() {
            s.peer_roster_version = peer_roster;
        }
    });
    if let Some(theirs) = peer_roster {
        catch_up_roster(node, peer, theirs).await;
    }
    let (tx, rx) = mpsc::channel::<PushFrame>(1024);
    let response = client
        .push(ReceiverStream::new(rx))
        .await
        .map_err(|s| describe(peer, &s))?;
    let mut acks = response.into_inner().ready_chunks(1024);
    if let Some(serial) = sink.lock().expect("serial sink").clone() {
        node.note_peer_serial(peer, serial);
    }
    contact(node, peer);
    *up = true;
    node.metrics
        .peer_up
        .get_or_create(&node.metrics.peer(peer))
        .set(1);
    tracing::info!(%peer, %endpoint, max_message_bytes = ?peer_limit, "peer link up");
    node.reconcile.link_up(peer);
    let requeued = node.reconcile.requeued(peer);
    // Plumtree: while this session runs, the peer is in the tree (when both
    // sides take part) and its frames go out on this stream.
    struct InTree<'a>(&'a Node, &'a str, u64);
    impl Drop for InTree<'_> {
        fn drop(&mut self) {
            self.0.gossip.link_down(self.1, self.2);
        }
    }
    // A way to members through this peer holds only while the link is up
    // (`domain::routes`).
    struct Ways<'a>(&'a Node, &'a str);
    impl Drop for Ways<'_> {
        fn drop(&mut self) {
            self.0.routes.lock().expect("routes lock").link_down(self.1);
        }
    }
    let _ways = Ways(node, peer);
    let (_in_tree, mut gossip_frames) = if gossip && node.gossip.enabled() {
        let (generation, rx) = node.gossip.link_up(peer);
        // What this node holds at its hop limit is announced to the peer
        // again: it may have been down when it came.
        tokio::spawn(crate::service::gossip::announce_stopped(
            node.clone(),
            peer.to_string(),
        ));
        (Some(InTree(node, peer, generation)), Some(rx))
    } else {
        (None, None)
    };

    let ack_timeout = node.cfg.limits.ack_timeout();
    // Acknowledgements are recorded by a task of their own: the link sends
    // on while they commit (`service::acks`).
    let mut recorder = crate::service::acks::Recorder::start(node.clone(), peer.to_string());
    let mut in_flight = InFlight::new();
    let mut sent_up_to: u64 = 0;
    let mut drained = false;
    // Deferred entries: when the next one is due, and the sweep through the
    // due ones (by cursor) while it runs.
    let mut next_due = node
        .store
        .outbox_next_due(peer, now_ms())
        .await
        .map_err(|e| store_failed(node, e))?;
    let mut sweep: Option<u64> = None;
    // Last time the peer answered while something was in flight.
    let mut progress = Instant::now();
    let session_start = now_ms();
    // Lean receipts: receipts read from the outbox wait here and go as one
    // bundled frame (`Held::due`: RECEIPT_GATHER after the first of them, at
    // most one bundle per RECEIPT_INTERVAL); a message never waits for them.
    let mut held = Held::default();
    loop {
        if in_flight.len() < WINDOW && (!drained || sweep.is_some()) {
            let want = (WINDOW - in_flight.len()).min(PAGE);
            let now = now_ms();
            let (items, sweeping) = match sweep {
                Some(after) => (node.store.outbox_due(peer, after, now, want).await, true),
                None => (node.store.outbox(peer, sent_up_to, now, want).await, false),
            };
            let items = items.map_err(|e| store_failed(node, e))?;
            let full_page = items.len() == want;
            if sweeping {
                sweep = items.last().map(|i| i.cursor).filter(|_| full_page);
                if sweep.is_none() {
                    next_due = node
                        .store
                        .outbox_next_due(peer, now)
                        .await
                        .map_err(|e| store_failed(node, e))?;
                }
            } else {
                drained = !full_page;
                if let Some(last) = items.last() {
                    sent_up_to = last.cursor;
                }
            }
            if in_flight.is_empty() {
                progress = Instant::now();
            }
            let mut too_large = Vec::new();
            for it in items {
                if in_flight.contains_key(&it.cursor) {
                    continue;
                }
                let (cursor, enqueued, deferrals) = (it.cursor, it.enqueued_ms, it.deferrals);
                let roster = roster_version_of(&it.header, &it.payload);
                let header = EnvelopeHeader::decode(it.header.as_slice()).ok();
                let receipt = header
                    .as_ref()
                    .is_some_and(|h| h.kind == MessageKind::Receipt as i32);
                let exercise = header.as_ref().is_some_and(|h| h.exercise);
                let named = header.as_ref().is_some_and(|h| !h.recipients.is_empty());
                // Sent again, or after a deferral or a parked wait: a
                // duplicate of it must not prune the peer's tree link.
                let resent = sweeping || enqueued < session_start;
                let mut frame = to_frame(peer, it);
                frame.resent = resent;
                // Routing to named recipients: which of them this peer is
                // the way to (a copy sent again floods: no hint).
                if let Some(h) = header.as_ref().filter(|h| {
                    !resent && !h.recipients.is_empty() && h.kind != MessageKind::Receipt as i32
                }) {
                    frame.toward = node
                        .routes
                        .lock()
                        .expect("routes lock")
                        .hint(&h.message_id, peer);
                }
                let size = frame.envelope.as_ref().map_or(0, |e| e.encoded_len());
                if let Some(limit) = peer_limit.filter(|l| size as u64 > *l) {
                    too_large.push((cursor, size, limit));
                    continue;
                }
                in_flight.insert(cursor, (enqueued, deferrals, roster, exercise));
                if !(bundles && receipt) {
                    let kind = match (receipt, named) {
                        (true, _) => "receipts",
                        (false, true) => "named",
                        (false, false) => "message",
                    };
                    send_frame(node, &tx, peer, vec![frame], kind, ack_timeout).await?;
                    continue;
                }
                if let Some(full) = held.add(frame) {
                    send_frame(node, &tx, peer, full, "receipts", ack_timeout).await?;
                }
            }
            // Nothing more can be read until acknowledgements come: the
            // held receipts go now rather than at their deadline.
            if in_flight.len() >= WINDOW && !held.frames.is_empty() {
                send_frame(node, &tx, peer, held.take(), "receipts", ack_timeout).await?;
            }
            if !too_large.is_empty() {
                refuse_too_large(node, peer, too_large).await?;
            }
            if !drained || sweep.is_some() {
                continue;
            }
        }
        let due_in =
            next_due.map(|t| Duration::from_millis(u64::try_from(t - now_ms()).unwrap_or(0)));
        let stalled = progress + ack_timeout;
        let gathered = held.due();
        tokio::select! {
            _ = tokio::time::sleep_until(gathered.unwrap_or(stalled)), if gathered.is_some() => {
                send_frame(node, &tx, peer, held.take(), "receipts", ack_timeout).await?;
            }
            batch = acks.next() => {
                let Some(batch) = batch else {
                    return Err(LinkError::generic("stream closed by peer"));
                };
                progress = Instant::now();
                let mut acks = Vec::with_capacity(batch.len());
                for ack in batch {
                    acks.push(ack.map_err(|s| describe(peer, &s))?);
                }
                let accepted =
                    record_acks(node, peer, acks, &mut in_flight, &mut next_due, &recorder).await?;
                if accepted {
                    // Progress: the peer takes messages again.
                    *backoff = BACKOFF_MIN;
                }
                contact(node, peer);
                if in_flight.len() < WINDOW / 2 {
                    drained = false;
                }
            }
            _ = tokio::time::sleep(due_in.unwrap_or_default()), if due_in.is_some() && sweep.is_none() => {
                next_due = None;
                sweep = Some(0);
            }
            _ = tokio::time::sleep_until(stalled), if !in_flight.is_empty() => {
                let oldest = in_flight.keys().next().copied().unwrap_or_default();
                return Err(LinkError::meaningful(format!(
                    "no acknowledgement from {peer} for {} s with {} message(s) in flight (oldest outbox cursor {oldest}); reconnecting",
                    ack_timeout.as_secs(),
                    in_flight.len()
                )));
            }
            _ = waker.notified() => {
                drained = false;
                // Plumtree: a copy parked for this peer falls due later.
                if let Some(t) = node.gossip.take_due(peer) {
                    next_due = Some(next_due.map_or(t, |d| d.min(t)));
                }
            }
            Some(g) = async {
                match gossip_frames.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                let frame = PushFrame {
                    seq: 0,
                    envelope: None,
                    hops: Vec::new(),
                    returning: false,
                    bundled: Vec::new(),
                    gossip: Some(g),
                    resent: false,
                    toward: Vec::new(),
                };
                match tokio::time::timeout(ack_timeout, tx.send(frame)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(LinkError::generic("stream closed by peer")),
                    Err(_) => return Err(LinkError::meaningful(format!(
                        "{peer} took nothing from the stream for {} s; reconnecting",
                        ack_timeout.as_secs()
                    ))),
                }
            }
            // Reconciliation queued entries again (due now, maybe below
            // the cursor this session has passed): sweep the due ones.
            _ = requeued.notified(), if sweep.is_none() => {
                next_due = None;
                sweep = Some(0);
            }
            e = recorder.failed() => return Err(store_failed(node, e)),
            _ = node.shutdown.cancelled() => return Ok(()),
        }
    }
}

/// The frame for an outbox entry to `peer`. An entry that names the peer
/// as its origin or on its chain can only have been queued by
/// reconciliation (forwarding never sends a message back): it is marked
/// `returning`.
fn to_frame(peer: &str, it: OutboxItem) -> PushFrame {
    let hops = HopChain::decode(it.hops.as_slice())
        .map(|c| c.hops)
        .unwrap_or_default();
    let returning = EnvelopeHeader::decode(it.header.as_slice()).is_ok_and(|h| h.origin == peer)
        || hops
            .iter()
            .any(|h| HopRecord::decode(h.record.as_slice()).is_ok_and(|r| r.relay == peer));
    PushFrame {
        bundled: Vec::new(),
        gossip: None,
        resent: false,
        toward: Vec::new(),
        hops,
        returning,
        seq: it.cursor,
        envelope: Some(SignedEnvelope {
            header: it.header,
            payload: it.payload,
            signature: it.signature,
        }),
    }
}

/// Marks entries larger than the peer accepts as REJECTED (they are never
/// sent), and shows the last one on the link.
async fn refuse_too_large(
    node: &Node,
    peer: &str,
    items: Vec<(u64, usize, u64)>,
) -> Result<(), LinkError> {
    let mut note = String::new();
    let outcomes = items
        .into_iter()
        .map(|(cursor, size, limit)| {
            let reason = format!(
                "not sent: the envelope is {size} bytes, over {peer}'s limit of {limit} bytes (its limits.max_message_bytes); {peer} would refuse it"
            );
            tracing::warn!(%peer, cursor, size, limit, "message larger than the peer accepts; marked rejected");
            note = format!("outbox cursor {cursor} {reason}");
            Outcome {
                cursor,
                state: DeliveryState::Rejected,
                reason,
            }
        })
        .collect();
    node.store
        .complete_outbox(peer, outcomes, now_ms())
        .await
        .map_err(|e| store_failed(node, e))?;
    node.peers.update(peer, |s| s.note_delivery(note));
    Ok(())
}

/// Records a batch of acknowledgements; true if the peer accepted (or already
/// held) at least one message.
async fn record_acks(
    node: &Node,
    peer: &str,
    acks: Vec<PushAck>,
    in_flight: &mut InFlight,
    next_due: &mut Option<i64>,
    recorder: &crate::service::acks::Recorder,
) -> Result<bool, LinkError> {
    let now = now_ms();
    let mut outcomes = Vec::with_capacity(acks.len());
    let mut deferrals = Vec::new();
    let mut accepted = false;
    let mut exercise_delivered = 0u64;
    for ack in acks {
        let Some((enq, deferred_before, roster, exercise)) = in_flight.remove(&ack.seq) else {
            continue;
        };
        match PushOutcome::try_from(ack.outcome) {
            Ok(PushOutcome::Accepted) | Ok(PushOutcome::Duplicate) => {
                accepted = true;
                exercise_delivered += u64::from(exercise);
                if let Some(v) = roster {
                    node.peers.note_roster(peer, v);
                }
                node.metrics
                    .delivery_seconds
                    .observe(((now - enq).max(0) as f64) / 1000.0);
                outcomes.push(Outcome {
                    cursor: ack.seq,
                    state: DeliveryState::Delivered,
                    reason: String::new(),
                });
            }
            Ok(PushOutcome::Deferred) => {
                let at = next_attempt(now, deferred_before + 1, ack.retry_after_ms);
                tracing::info!(%peer, seq = ack.seq, reason = %ack.reason, next_try = %rfc3339(at), "peer deferred a message");
                *next_due = Some(next_due.map_or(at, |d| d.min(at)));
                deferrals.push(Deferral {
                    cursor: ack.seq,
                    reason: format!(
                        "deferred: {}; next try at {}",
                        bounded(&ack.reason),
                        rfc3339(at)
                    ),
                    next_attempt_ms: at,
                });
            }
            _ => {
                tracing::warn!(%peer, seq = ack.seq, reason = %ack.reason, "peer rejected message");
                outcomes.push(Outcome {
                    cursor: ack.seq,
                    state: DeliveryState::Rejected,
                    reason: bounded(&ack.reason),
                });
            }
        }
    }
    let delivered = outcomes
        .iter()
        .filter(|o| o.state == DeliveryState::Delivered)
        .count() as u64;
    if let Some(last) = deferrals.last() {
        let note = format!("outbox cursor {} {}", last.cursor, last.reason);
        node.peers.update(peer, |s| s.note_delivery(note));
    }
    recorder
        .send(crate::service::acks::Acked {
            outcomes,
            deferrals,
            now_ms: now,
        })
        .await
        .map_err(|e| store_failed(node, e))?;
    node.metrics.count_sent(peer, delivered, exercise_delivered);
    Ok(accepted)
}

/// A storage failure on this node ends the session (and is counted).
fn store_failed(node: &Node, e: crate::storage::StoreError) -> LinkError {
    node.metrics.storage_error(&e);
    LinkError::meaningful(format!("this node's storage failed: {e}"))
}

/// Turns a gRPC status from a peer into a line for ListPeers and the log,
/// with the whole chain of causes (a bare "transport error" says nothing),
/// and says whether it names a cause.
fn describe(peer: &str, s: &tonic::Status) -> LinkError {
    let mut text = s.message().to_string();
    let mut src = std::error::Error::source(s);
    while let Some(e) = src {
        let m = e.to_string();
        if !m.is_empty() && !text.contains(&m) {
            text = if text.is_empty() {
                m
            } else {
                format!("{text}: {m}")
            };
        }
        src = e.source();
    }
    let lower = text.to_lowercase();
    if lower.contains("keep-alive timed out") || lower.contains("keepalive timed out") {
        return LinkError::meaningful(format!(
            "{peer} stopped answering (HTTP/2 keepalive timed out): a network partition or a hung peer; reconnecting"
        ));
    }
    let lost = [
        "broken pipe",
        "connection reset",
        "error reading a body",
        "connection closed",
    ]
    .iter()
    .any(|k| lower.contains(k));
    if lost {
        let silent = crate::transport::client::KEEPALIVE_INTERVAL
            + crate::transport::client::KEEPALIVE_TIMEOUT;
        text = format!(
            "{text}: the connection to {peer} was lost (closed by the peer, or keepalive pings unanswered for {} s)",
            silent.as_secs()
        );
    }
    let text = match s.code() {
        tonic::Code::Unavailable => format!("unavailable: {text}"),
        tonic::Code::PermissionDenied => format!("refused by peer: {text}"),
        c => format!("{c:?}: {text}"),
    };
    let names_a_cause = !matches!(
        s.code(),
        tonic::Code::Cancelled
            | tonic::Code::Unknown
            | tonic::Code::Unavailable
            | tonic::Code::Aborted
            | tonic::Code::Internal
    ) || [
        "certificate",
        "revoked",
        "handshake",
        "alert",
        "timed out",
        "not a configured peer",
        "presented",
        "standby of node",
    ]
    .iter()
    .any(|k| lower.contains(k));
    LinkError {
        text: bounded(&text),
        meaningful: names_a_cause,
    }
}

/// The roster version a queued message carries, if it is a roster message.
fn roster_version_of(header: &[u8], payload: &[u8]) -> Option<u64> {
    let h = crate::proto::v1::EnvelopeHeader::decode(header).ok()?;
    if h.kind != crate::proto::v1::MessageKind::Roster as i32 {
        return None;
    }
    crate::domain::roster::parse(payload)
        .ok()
        .map(|d| d.version())
}

/// A peer on an older roster than this node (it just joined and missed the
/// flood, or it was cut off) is sent the held roster, addressed to it alone;
/// it checks it like any other. Once per link start while it is behind.
async fn catch_up_roster(node: &Node, peer: &str, theirs: u64) {
    let Some(anchor) = node.roster() else { return };
    let Some(cur) = anchor.current() else { return };
    if theirs >= cur.version() {
        return;
    }
    let out = crate::service::ingest::Outgoing {
        kind: crate::proto::v1::MessageKind::Roster,
        tlp: crate::proto::v1::Tlp::Clear,
        recipients: vec![peer.to_string()],
        expires_ms: None,
        exercise: false,
        created_ms: None,
        payload: cur.doc.to_bytes(),
    };
    match crate::service::ingest::originate(node, out).await {
        Ok((id, _)) => {
            tracing::info!(%peer, theirs, ours = cur.version(), message_id = %id, "peer holds an older roster: sent it ours")
        }
        Err(e) => {
            tracing::warn!(%peer, error = %e, "cannot send the held roster to a peer on an older one")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferral_backoff_grows_respects_the_hint_and_is_capped() {
        let now = 1_000_000;
        let wait = |n, hint| next_attempt(now, n, hint) - now;
        assert!((800..=1_000).contains(&wait(1, 0)), "{}", wait(1, 0));
        assert!((3_200..=4_000).contains(&wait(3, 0)), "{}", wait(3, 0));
        assert_eq!(wait(1, 15_000), 15_000, "never before the peer's hint");
        assert!((240_000..=300_000).contains(&wait(40, 0)), "capped");
        assert_eq!(wait(1, u64::MAX), 300_000, "a huge hint is capped too");
    }

    #[test]
    fn a_generic_failure_does_not_hide_the_meaningful_one() {
        use crate::service::peers::LinkStatus;
        let mut st = LinkStatus::default();
        let revoked = describe(
            "node-b",
            &tonic::Status::unavailable("invalid peer certificate: Revoked"),
        );
        assert!(revoked.meaningful);
        st.failed(revoked);
        st.failed(describe(
            "node-b",
            &tonic::Status::unknown("transport error"),
        ));
        st.failed(describe("node-b", &tonic::Status::cancelled("Cancelled")));
        assert!(
            st.last_error.contains("Revoked") && st.last_error.contains("Cancelled"),
            "{}",
            st.last_error
        );
        st.up(5);
        assert_eq!(st.last_error, "", "a working link shows no old error");
        st.failed(describe(
            "node-b",
            &tonic::Status::unknown("transport error"),
        ));
        assert!(!st.last_error.contains("Revoked"), "{}", st.last_error);
    }

    #[test]
    fn peer_reasons_are_bounded() {
        let long = "é".repeat(10_000);
        let b = bounded(&long);
        assert!(b.len() <= 520, "{}", b.len());
    }
}
