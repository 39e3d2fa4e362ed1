//! Peer links: one task per configured peer keeps a mutual-TLS Push stream open
//! and drains that peer's durable outbox through it. Entries leave the outbox
//! only when the peer acknowledges them after its own durable commit. Retries
//! use capped exponential backoff with jitter, reset on successful contact.
use super::{NodeCtx, now_ms};
use crate::config::{Config, PeerSection};
use crate::domain::identity::Identity;
use crate::proto::v1::federation_client::FederationClient;
use crate::proto::v1::{HopChain, PushAck, PushFrame, PushOutcome, SignedEnvelope};
use crate::storage::messages::{DELIVERED, Outcome, REJECTED};
use futures::StreamExt;
use prost::Message;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

/// Messages in flight (sent, not yet acknowledged) per link.
const WINDOW: usize = 8192;
/// Outbox rows read per query.
const PAGE: usize = 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Link state as shown by ListPeers.
#[derive(Debug, Clone, Default)]
pub struct LinkStatus {
    /// 1 connecting, 2 up, 3 down (the `LinkState` proto values).
    pub state: i32,
    pub last_contact_ms: Option<i64>,
    pub last_error: String,
}

/// One running link task.
struct Running {
    peer: PeerSection,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// All links of a node: the current peer set (replaced on reload), each
/// link's status and wake-up signal, and the running link tasks.
pub struct Links {
    peers: Mutex<Arc<Vec<PeerSection>>>,
    status: Mutex<HashMap<String, LinkStatus>>,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    running: Mutex<HashMap<String, Running>>,
    /// Bumped on every reload, so open streams re-check their peer.
    generation: watch::Sender<u64>,
}

impl Links {
    pub fn new(cfg: &Config) -> Links {
        let links = Links {
            peers: Mutex::new(Arc::new(cfg.peers.clone())),
            status: Mutex::default(),
            wakers: Mutex::default(),
            running: Mutex::default(),
            generation: watch::channel(0).0,
        };
        for p in &cfg.peers {
            links.add_state(&p.id);
        }
        links
    }

    fn add_state(&self, id: &str) {
        self.status.lock().expect("links lock").insert(
            id.to_string(),
            LinkStatus {
                state: 1,
                ..Default::default()
            },
        );
        self.wakers
            .lock()
            .expect("links lock")
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(Notify::new()));
    }

    /// The configured peers.
    pub fn peers(&self) -> Arc<Vec<PeerSection>> {
        self.peers.lock().expect("links lock").clone()
    }

    /// Changes on every reload of the peer set or the CRLs.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Whether `id` is a configured peer.
    pub fn is_peer(&self, id: &str) -> bool {
        self.peers().iter().any(|p| p.id == id)
    }

    /// Tells the link to `peer` that its outbox has new entries.
    pub fn wake(&self, peer: &str) {
        if let Some(n) = self.wakers.lock().expect("links lock").get(peer) {
            n.notify_one();
        }
    }

    pub fn status(&self, peer: &str) -> LinkStatus {
        self.status
            .lock()
            .expect("links lock")
            .get(peer)
            .cloned()
            .unwrap_or_default()
    }

    fn update(&self, peer: &str, f: impl FnOnce(&mut LinkStatus)) {
        if let Some(s) = self.status.lock().expect("links lock").get_mut(peer) {
            f(s);
        }
    }

    fn spawn(&self, ctx: &Arc<NodeCtx>, p: PeerSection) {
        let (stop, stop_rx) = watch::channel(false);
        let waker = self
            .wakers
            .lock()
            .expect("links lock")
            .get(&p.id)
            .cloned()
            .expect("waker per peer");
        let task = tokio::spawn(run_link(
            ctx.clone(),
            p.id.clone(),
            p.endpoint.clone(),
            waker,
            stop_rx,
        ));
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
    pub fn start_all(&self, ctx: &Arc<NodeCtx>) {
        for p in self.peers().iter() {
            self.spawn(ctx, p.clone());
        }
    }

    /// Applies a reloaded peer set: links to removed or changed peers stop
    /// (and changed ones start again with the new settings); new peers get a
    /// link; links to unchanged peers keep running untouched, except those whose
    /// certificate (seen at connect) is in `revoked`, which restart (and fail
    /// the handshake against the new CRL).
    pub fn apply(&self, ctx: &Arc<NodeCtx>, new: Vec<PeerSection>, revoked: &HashSet<String>) {
        let mut restart = Vec::new();
        {
            let mut running = self.running.lock().expect("links lock");
            let ids: Vec<String> = running.keys().cloned().collect();
            for id in ids {
                let keep = new.iter().find(|p| p.id == id).filter(|p| {
                    let r = &running[&id];
                    same(&r.peer, p) && !ctx.peer_serial_revoked(&id, revoked)
                });
                if keep.is_none() {
                    let r = running.remove(&id).expect("present");
                    let _ = r.stop.send(true);
                    r.task.abort();
                    tracing::info!(peer = %id, "reload: link stopped");
                    if let Some(p) = new.iter().find(|p| p.id == id) {
                        restart.push(p.clone());
                    }
                }
            }
        }
        let old_ids: HashSet<String> = self.peers().iter().map(|p| p.id.clone()).collect();
        *self.peers.lock().expect("links lock") = Arc::new(new.clone());
        self.status
            .lock()
            .expect("links lock")
            .retain(|id, _| new.iter().any(|p| &p.id == id));
        for p in new.iter().filter(|p| !old_ids.contains(&p.id)) {
            self.add_state(&p.id);
            tracing::info!(peer = %p.id, "reload: new peer");
            self.spawn(ctx, p.clone());
        }
        for p in restart {
            self.spawn(ctx, p);
        }
        self.generation.send_modify(|g| *g += 1);
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

fn same(a: &PeerSection, b: &PeerSection) -> bool {
    (&a.id, &a.endpoint, &a.max_tlp, a.relay) == (&b.id, &b.endpoint, &b.max_tlp, b.relay)
}

fn jitter(d: Duration) -> Duration {
    let f: f64 = rand::random_range(0.5..1.0);
    d.mul_f64(f)
}

async fn run_link(
    ctx: Arc<NodeCtx>,
    peer: String,
    endpoint: String,
    waker: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut shutdown = ctx.shutdown.clone();
    let label = ctx.metrics.peer(&peer);
    loop {
        let stopping = *shutdown.borrow() || *stop.borrow();
        if stopping {
            break;
        }
        ctx.links.update(&peer, |s| s.state = 1);
        let result = tokio::select! {
            r = session(&ctx, &peer, &endpoint, &waker, &mut backoff) => r,
            _ = super::stopped(&mut stop) => Ok(()),
        };
        ctx.metrics.peer_up.get_or_create(&label).set(0);
        match result {
            Ok(()) => break, // shutdown
            Err(e) => {
                tracing::warn!(%peer, %endpoint, error = %e, retry_in = ?backoff, "peer link down");
                ctx.links.update(&peer, |s| {
                    s.state = 3;
                    s.last_error = e;
                });
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(jitter(backoff)) => {}
            _ = crate::node::stopped(&mut shutdown) => break,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

fn contact(ctx: &NodeCtx, peer: &str) {
    let now = now_ms();
    ctx.links.update(peer, |s| {
        s.state = 2;
        s.last_contact_ms = Some(now);
        s.last_error.clear();
    });
    ctx.metrics
        .peer_last_contact
        .get_or_create(&ctx.metrics.peer(peer))
        .set(now / 1000);
}

/// One connected session. Returns Ok on shutdown, Err with a reason otherwise.
async fn session(
    ctx: &Arc<NodeCtx>,
    peer: &str,
    endpoint: &str,
    waker: &Notify,
    backoff: &mut Duration,
) -> Result<(), String> {
    let tls = ctx.tls_client.read().expect("tls lock").clone();
    let sink: crate::transport::client::SerialSink = Arc::default();
    let channel = crate::transport::client::channel_observed(
        endpoint,
        tls,
        Some(Identity::Node(peer.to_string())),
        Duration::from_secs(5),
        Some(sink.clone()),
    )
    .map_err(|e| format!("invalid endpoint: {e}"))?;
    let max = ctx.cfg.limits.max_message_bytes + 64 * 1024;
    let mut client = FederationClient::new(channel)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let (tx, rx) = mpsc::channel::<PushFrame>(1024);
    let response = client
        .push(ReceiverStream::new(rx))
        .await
        .map_err(|s| describe(&s))?;
    let mut acks = response.into_inner().ready_chunks(1024);
    if let Some(serial) = sink.lock().expect("serial sink").clone() {
        ctx.note_peer_serial(peer, serial);
    }
    contact(ctx, peer);
    *backoff = BACKOFF_MIN;
    ctx.metrics
        .peer_up
        .get_or_create(&ctx.metrics.peer(peer))
        .set(1);
    tracing::info!(%peer, %endpoint, "peer link up");

    let mut shutdown = ctx.shutdown.clone();
    // cursor → enqueued time, for everything sent and not yet acknowledged.
    let mut in_flight: BTreeMap<u64, i64> = BTreeMap::new();
    let mut sent_up_to: u64 = 0;
    let mut drained = false;
    loop {
        if !drained && in_flight.len() < WINDOW {
            let want = (WINDOW - in_flight.len()).min(PAGE);
            let items = ctx
                .store
                .outbox(peer.to_string(), sent_up_to, want)
                .await
                .map_err(|e| e.to_string())?;
            drained = items.len() < want;
            for it in items {
                sent_up_to = it.cursor;
                in_flight.insert(it.cursor, it.enqueued_ms);
                let frame = PushFrame {
                    hops: HopChain::decode(it.hops.as_slice())
                        .map(|c| c.hops)
                        .unwrap_or_default(),
                    seq: it.cursor,
                    envelope: Some(SignedEnvelope {
                        header: it.header,
                        payload: it.payload,
                        signature: it.signature,
                    }),
                };
                if tx.send(frame).await.is_err() {
                    return Err("stream closed by peer".into());
                }
            }
            if !drained {
                continue;
            }
        }
        tokio::select! {
            batch = acks.next() => {
                let Some(batch) = batch else {
                    return Err("stream closed by peer".into());
                };
                let mut outcomes = Vec::with_capacity(batch.len());
                for ack in batch {
                    let ack: PushAck = ack.map_err(|s| describe(&s))?;
                    let Some(enq) = in_flight.remove(&ack.seq) else { continue };
                    let (state, reason) = match PushOutcome::try_from(ack.outcome) {
                        Ok(PushOutcome::Accepted) | Ok(PushOutcome::Duplicate) => (DELIVERED, String::new()),
                        _ => {
                            tracing::warn!(%peer, seq = ack.seq, reason = %ack.reason, "peer rejected message");
                            (REJECTED, ack.reason)
                        }
                    };
                    if state == DELIVERED {
                        ctx.metrics.delivery_seconds.observe(((now_ms() - enq).max(0) as f64) / 1000.0);
                    }
                    outcomes.push(Outcome { cursor: ack.seq, state, reason });
                }
                let n = outcomes.len() as u64;
                ctx.store
                    .complete_outbox(peer.to_string(), outcomes, now_ms())
                    .await
                    .map_err(|e| e.to_string())?;
                ctx.metrics.sent.get_or_create(&ctx.metrics.peer(peer)).inc_by(n);
                contact(ctx, peer);
                if in_flight.len() < WINDOW / 2 {
                    drained = false;
                }
            }
            _ = waker.notified() => { drained = false; }
            _ = crate::node::stopped(&mut shutdown) => return Ok(()),
        }
    }
}

/// Turns a gRPC status from a peer into a line for ListPeers and the log.
fn describe(s: &tonic::Status) -> String {
    match s.code() {
        tonic::Code::Unavailable => format!("unavailable: {}", s.message()),
        tonic::Code::PermissionDenied => format!("refused by peer: {}", s.message()),
        c => format!("{c:?}: {}", s.message()),
    }
}
