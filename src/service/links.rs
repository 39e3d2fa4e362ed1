//! Peer links: one task per configured peer keeps a mutual-TLS Push stream open
//! and drains that peer's durable outbox through it. Entries leave the outbox
//! only when the peer acknowledges them after its own durable commit. Retries
//! use capped exponential backoff with jitter, reset on successful contact.
//!
//! [`LinkTasks`] owns the running tasks (the application holds it); the state
//! they share with the services (status, wakers, the peer set) is `peers::Peers`.
use crate::config::PeerSection;
use crate::proto::v1::federation_client::FederationClient;
use crate::proto::v1::{
    DeliveryState, HopChain, LinkState, PushAck, PushFrame, PushOutcome, SignedEnvelope,
};
use crate::service::node::Node;
use crate::service::now_ms;
use crate::service::peers::expect_node;
use crate::storage::Outcome;
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
    let endpoint = peer.endpoint.to_string();
    loop {
        if node.shutdown.is_cancelled() || *stop.borrow() {
            break;
        }
        node.peers.update(&id, |s| s.state = LinkState::Connecting);
        let result = tokio::select! {
            r = session(&node, &id, &endpoint, &waker, &mut backoff) => r,
            _ = stop.wait_for(|s| *s) => Ok(()),
        };
        node.metrics.peer_up.get_or_create(&label).set(0);
        match result {
            Ok(()) => break, // shutdown
            Err(e) => {
                tracing::warn!(peer = %id, %endpoint, error = %e, retry_in = ?backoff, "peer link down");
                node.peers.update(&id, |s| {
                    s.state = LinkState::Down;
                    s.last_error = e;
                });
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(jitter(backoff)) => {}
            _ = node.shutdown.cancelled() => break,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

fn contact(node: &Node, peer: &str) {
    let now = now_ms();
    node.peers.update(peer, |s| {
        s.state = LinkState::Up;
        s.last_contact_ms = Some(now);
        s.last_error.clear();
    });
    node.metrics
        .peer_last_contact
        .get_or_create(&node.metrics.peer(peer))
        .set(now / 1000);
}
/// One connected session. Returns Ok on shutdown, Err with a reason otherwise.
async fn session(
    node: &Arc<Node>,
    peer: &str,
    endpoint: &str,
    waker: &Notify,
    backoff: &mut Duration,
) -> Result<(), String> {
    let tls = node.tls_client();
    let sink: crate::transport::client::SerialSink = Arc::default();
    let channel = crate::transport::client::channel_observed(
        endpoint,
        tls,
        Some(expect_node(peer)),
        Duration::from_secs(5),
        Some(sink.clone()),
    )
    .map_err(|e| format!("invalid endpoint: {e}"))?;
    let max = node.cfg.limits.max_message_bytes + 64 * 1024;
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
        node.note_peer_serial(peer, serial);
    }
    contact(node, peer);
    *backoff = BACKOFF_MIN;
    node.metrics
        .peer_up
        .get_or_create(&node.metrics.peer(peer))
        .set(1);
    tracing::info!(%peer, %endpoint, "peer link up");

    // cursor → enqueued time, for everything sent and not yet acknowledged.
    let mut in_flight: BTreeMap<u64, i64> = BTreeMap::new();
    let mut sent_up_to: u64 = 0;
    let mut drained = false;
    loop {
        if !drained && in_flight.len() < WINDOW {
            let want = (WINDOW - in_flight.len()).min(PAGE);
            let items = node
                .store
                .outbox(peer, sent_up_to, want)
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
                        Ok(PushOutcome::Accepted) | Ok(PushOutcome::Duplicate) => (DeliveryState::Delivered, String::new()),
                        _ => {
                            tracing::warn!(%peer, seq = ack.seq, reason = %ack.reason, "peer rejected message");
                            (DeliveryState::Rejected, ack.reason)
                        }
                    };
                    if state == DeliveryState::Delivered {
                        node.metrics.delivery_seconds.observe(((now_ms() - enq).max(0) as f64) / 1000.0);
                    }
                    outcomes.push(Outcome { cursor: ack.seq, state, reason });
                }
                let n = outcomes.len() as u64;
                node.store
                    .complete_outbox(peer, outcomes, now_ms())
                    .await
                    .map_err(|e| e.to_string())?;
                node.metrics.sent.get_or_create(&node.metrics.peer(peer)).inc_by(n);
                contact(node, peer);
                if in_flight.len() < WINDOW / 2 {
                    drained = false;
                }
            }
            _ = waker.notified() => { drained = false; }
            _ = node.shutdown.cancelled() => return Ok(()),
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
