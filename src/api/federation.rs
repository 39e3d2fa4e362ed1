//! Federation service adapter: peers push envelopes; acknowledgements go back
//! in order, each only after the envelope is durably stored (or refused).
//!
//! Invariants:
//! - Envelopes of one stream are stored (given cursors) in the order the
//!   stream carried them: batches are verified concurrently (verification of
//!   the next batches overlaps the commit of the previous one) but their
//!   commits are queued in stream order (`ingest::submit`), and their
//!   acknowledgements sent in that order.
//! - Any error on the incoming stream (a frame that does not decode, a frame
//!   over the transport limit, a carrier bringing more than `MAX_BUNDLED`
//!   frames, the peer gone) ends the stream once: the frames before it are
//!   answered, then the stream closes with a status saying why, logged once.
//!   The failed request stream is never polled again.
//! - A batch holds at most `BATCH` + `MAX_BUNDLED` frames: when the frames
//!   carriers bring fill one, it goes to verification before the rest of
//!   the chunk is read, so the acknowledgements in flight (`DEPTH` batches a
//!   stage) are bounded whatever the frames carry.
//! - A peer removed by a reload, or whose certificate a reloaded CRL revokes,
//!   has its open streams closed with PERMISSION_DENIED saying why.
//! - A temporary refusal (clock skew, signing key not pinned yet, storage full
//!   or unavailable here) is acknowledged DEFERRED: the sender keeps the
//!   envelope and retries it.
use crate::domain::identity::Identity;
use crate::proto::v1::federation_server::Federation;
use crate::proto::v1::{
    AttachmentChunk, FetchAttachmentRequest, HelloRequest, HelloResponse, PushAck, PushFrame,
    PushOutcome, ReconcileRequest, ReconcileResponse,
};
use crate::service::ingest::{Committing, Ingested, Prepared, prepare, submit};
use crate::service::node::Node;
use crate::transport::server::PeerInfo;
use futures::StreamExt;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

/// Frames verified and committed together.
const BATCH: usize = 512;
/// Batches in each stage of the pipeline at once.
const DEPTH: usize = 4;
/// Most frames one carrier frame may bring (a sender packs at most
/// `service::links::BUNDLE_MAX_FRAMES`). Each is answered on its own: without
/// a bound, a carrier of empty frames (three bytes each) would turn one frame
/// within the transport limit into a hundred thousand acknowledgements.
const MAX_BUNDLED: usize = 1024;

pub struct FederationApi {
    node: Arc<Node>,
}

impl FederationApi {
    pub fn new(node: Arc<Node>) -> Self {
        FederationApi { node }
    }

    /// The calling node, which must be a configured peer, and the serial of the
    /// certificate it presented. A call from a peer shows it is reachable: a
    /// link to it waiting out a reconnect backoff tries again at once.
    fn peer<T>(&self, req: &Request<T>) -> Result<(String, String), Status> {
        let info = req
            .extensions()
            .get::<PeerInfo<Identity>>()
            .ok_or_else(|| Status::unauthenticated("no verified client certificate"))?;
        let who = info.identity.name().to_string();
        allowed(&self.node, &who, &info.serial)?;
        self.node.note_peer_serial(&who, info.serial.clone());
        self.node.peers.reachable(&who);
        Ok((who, info.serial.clone()))
    }
}

/// Whether `who`, presenting certificate `serial`, may push to this node now:
/// it must still be a configured peer, and its certificate not revoked by the
/// CRLs currently loaded (both can change on reload).
fn allowed(node: &Node, who: &str, serial: &str) -> Result<(), Status> {
    if !node.peers.is_peer(who) {
        return Err(Status::permission_denied(format!(
            "{who} is not a configured peer of {}; add it to [[peers]] on both sides",
            node.id
        )));
    }
    if node.revoked().contains(serial) {
        return Err(Status::permission_denied(format!(
            "the certificate {who} presented (serial {serial}) has been revoked"
        )));
    }
    Ok(())
}

type AckStream = Pin<Box<dyn futures::Stream<Item = Result<PushAck, Status>> + Send>>;

fn ack(seq: u64, r: Ingested) -> PushAck {
    let (outcome, reason, retry_after_ms) = match r {
        Ingested::New(_) => (PushOutcome::Accepted, String::new(), 0),
        Ingested::Duplicate => (PushOutcome::Duplicate, String::new(), 0),
        Ingested::Rejected(why) => (PushOutcome::Rejected, why.to_string(), 0),
        Ingested::Deferred {
            reason,
            retry_after_ms,
        } => (PushOutcome::Deferred, reason, retry_after_ms),
    };
    PushAck {
        seq,
        outcome: outcome as i32,
        reason,
        retry_after_ms,
    }
}

/// The frames of one batch in stream order: each frame's seq, and the ack
/// already decided for frames refused before ingest (no envelope).
#[derive(Default)]
struct Frames {
    seqs: Vec<u64>,
    early: Vec<Option<PushAck>>,
}

impl Frames {
    /// The acks of the batch in stream order, `results` filling the frames
    /// that went through ingest.
    fn acks(self, results: impl IntoIterator<Item = Ingested>) -> Vec<PushAck> {
        let mut results = results.into_iter();
        self.seqs
            .into_iter()
            .zip(self.early)
            .map(|(seq, early)| {
                early.unwrap_or_else(|| {
                    let r = results.next().unwrap_or_else(|| Ingested::Deferred {
                        reason: "internal error: no result for this frame; retry".into(),
                        retry_after_ms: 0,
                    });
                    ack(seq, r)
                })
            })
            .collect()
    }
}

/// Stage 1 → 2: a batch being verified, or the end of the stream.
enum Verifying {
    Batch(JoinHandle<Prepared>, Frames),
    End(Status),
}

/// Stage 2 → 3: a batch whose commit is queued, or the end of the stream.
enum Storing {
    Batch(Box<Committing>, Frames),
    End(Status),
}

/// The status that ends a stream whose request side failed with `s`, and
/// the log line, once.
fn stream_failed(node: &Node, peer: &str, s: &Status) -> Status {
    let limit = node.cfg.limits.max_message_bytes;
    let (status, hostile) = match s.code() {
        Code::OutOfRange | Code::ResourceExhausted => (
            Status::out_of_range(format!(
                "a frame is over {}'s transport limit ({}); it accepts envelopes up to limits.max_message_bytes = {limit} bytes plus 64 KiB of framing. The stream is closed; the frames before it were answered",
                node.id,
                s.message()
            )),
            true,
        ),
        Code::Internal => (
            Status::invalid_argument(format!(
                "a frame does not decode as a PushFrame ({}). The stream is closed; the frames before it were answered",
                s.message()
            )),
            true,
        ),
        c => (
            Status::new(c, format!("the push stream failed: {}", s.message())),
            false,
        ),
    };
    if hostile {
        return ended_by_peer(peer, status);
    }
    tracing::info!(%peer, code = ?status.code(), reason = %status.message(), "push stream ended: the peer went away");
    status
}

/// A stream ended by what `peer` sent: logged once, as a warning.
fn ended_by_peer(peer: &str, status: Status) -> Status {
    tracing::warn!(%peer, code = ?status.code(), reason = %status.message(), "push stream ended with an error");
    status
}

#[tonic::async_trait]
impl Federation for FederationApi {
    type PushStream = AckStream;

    async fn push(
        &self,
        req: Request<Streaming<PushFrame>>,
    ) -> Result<Response<Self::PushStream>, Status> {
        let (peer, serial) = self.peer(&req)?;
        let frames = req.into_inner().ready_chunks(BATCH);
        let (out_tx, out_rx) = mpsc::channel::<Result<PushAck, Status>>(BATCH * 2);
        let (verify_tx, verify_rx) = mpsc::channel::<Verifying>(DEPTH);
        let (store_tx, store_rx) = mpsc::channel::<Storing>(DEPTH);
        tokio::spawn(read_frames(
            self.node.clone(),
            peer.clone(),
            serial,
            frames,
            verify_tx,
        ));
        tokio::spawn(queue_commits(self.node.clone(), peer, verify_rx, store_tx));
        tokio::spawn(answer(self.node.clone(), store_rx, out_tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    async fn hello(&self, req: Request<HelloRequest>) -> Result<Response<HelloResponse>, Status> {
        let (peer, _) = self.peer(&req)?;
        let claimed = &req.get_ref().node_id;
        if !claimed.is_empty() && claimed != &peer {
            return Err(Status::permission_denied(format!(
                "hello claims {claimed} but the certificate is {peer}'s"
            )));
        }
        let theirs = req.get_ref().roster_version;
        self.node
            .peers
            .update(&peer, |s| s.peer_roster_version = Some(theirs));
        Ok(Response::new(HelloResponse {
            node_id: self.node.id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            max_message_bytes: self.node.cfg.limits.max_message_bytes as u64,
            roster_version: self.node.roster_version(),
            accepts_bundles: true,
            accepts_gossip: self.node.gossip.enabled(),
            reconcile_max_ranges: crate::domain::reconcile::MAX_RANGES as u32,
        }))
    }

    type FetchAttachmentStream =
        Pin<Box<dyn futures::Stream<Item = Result<AttachmentChunk, Status>> + Send>>;

    async fn fetch_attachment(
        &self,
        req: Request<FetchAttachmentRequest>,
    ) -> Result<Response<Self::FetchAttachmentStream>, Status> {
        use crate::service::transfer::{ServeError, serve};
        let (peer, _) = self.peer(&req)?;
        let rx = serve(&self.node, &peer, req.into_inner())
            .await
            .map_err(|e| match e {
                ServeError::NotFound(m) => Status::not_found(m),
                ServeError::Denied(m) => Status::permission_denied(m),
                ServeError::NotYet(m) => Status::unavailable(m),
                ServeError::Internal(m) => Status::internal(crate::api::error::bounded(m)),
            })?;
        let stream = ReceiverStream::new(rx).map(|r| r.map_err(Status::data_loss));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn reconcile(
        &self,
        req: Request<ReconcileRequest>,
    ) -> Result<Response<ReconcileResponse>, Status> {
        let (peer, _) = self.peer(&req)?;
        let answer = crate::service::reconcile::respond(&self.node, &peer, req.into_inner())
            .await
            .map_err(crate::api::error::status)?;
        Ok(Response::new(answer))
    }
}

/// Stage 1: reads frames in batches and starts verifying each batch; ends at
/// the first error of the stream (never polling it again), when the peer is
/// no longer allowed, or at shutdown.
async fn read_frames(
    node: Arc<Node>,
    peer: String,
    serial: String,
    mut frames: futures::stream::ReadyChunks<Streaming<PushFrame>>,
    tx: mpsc::Sender<Verifying>,
) {
    let shutdown = node.shutdown.clone();
    let mut reloaded = node.peers.subscribe();
    loop {
        let chunk = tokio::select! {
            c = frames.next() => c,
            _ = reloaded.changed() => Some(Vec::new()),
            _ = shutdown.cancelled() => {
                let why = format!("{} is shutting down; reconnect later", node.id);
                let _ = tx.send(Verifying::End(Status::unavailable(why))).await;
                return;
            }
        };
        let Some(chunk) = chunk else { return };
        // A reload may have removed this peer or revoked its certificate.
        if let Err(s) = allowed(&node, &peer, &serial) {
            tracing::warn!(%peer, reason = %s.message(), "closing the push stream");
            let _ = tx.send(Verifying::End(s)).await;
            return;
        }
        if chunk.is_empty() {
            continue;
        }
        let mut batch = Frames {
            seqs: Vec::with_capacity(chunk.len()),
            early: Vec::with_capacity(chunk.len()),
        };
        let mut envs = Vec::with_capacity(chunk.len());
        let mut chains = Vec::with_capacity(chunk.len());
        // The status that ends the stream, if a frame does (sent after the
        // frames before it are handed on).
        let mut ended = None;
        for f in chunk {
            let mut f = match f {
                Ok(f) => f,
                Err(s) => {
                    ended = Some(stream_failed(&node, &peer, &s));
                    break;
                }
            };
            // Plumtree control (announcements, grafts, prunes): handled
            // here, in stream order; a frame with nothing else is not
            // acknowledged.
            if let Some(g) = f.gossip.take() {
                crate::service::gossip::received(&node, &peer, g).await;
                if f.envelope.is_none() && f.bundled.is_empty() {
                    continue;
                }
            }
            node.metrics.frames_received.inc();
            // Lean receipts: a carrier frame (no envelope) brings frames
            // that are taken one by one, as if sent alone.
            let inner = std::mem::take(&mut f.bundled);
            if inner.len() > MAX_BUNDLED {
                ended = Some(ended_by_peer(
                    &peer,
                    Status::invalid_argument(format!(
                        "a frame brings {} bundled frames; {} takes at most {MAX_BUNDLED} in one. The stream is closed; the frames before it were answered",
                        inner.len(),
                        node.id
                    )),
                ));
                break;
            }
            let carrier = f.envelope.is_none() && !inner.is_empty();
            let own = (!carrier).then_some((f, false));
            for (f, nested) in own.into_iter().chain(inner.into_iter().map(|f| (f, true))) {
                let PushFrame {
                    seq,
                    envelope,
                    hops,
                    returning,
                    bundled,
                    gossip: _,
                    resent,
                    toward,
                } = f;
                let malformed = match (&envelope, nested && !bundled.is_empty()) {
                    (_, true) => Some("malformed frame: a bundled frame carries no frames"),
                    (None, _) => Some("malformed frame: no envelope"),
                    (Some(_), false) => None,
                };
                batch.seqs.push(seq);
                match (malformed, envelope) {
                    (None, Some(e)) => {
                        batch.early.push(None);
                        envs.push(e);
                        chains.push(crate::service::ingest::Custody {
                            hops,
                            returning,
                            resent,
                            shorter: false,
                            toward,
                        });
                    }
                    (why, _) => batch.early.push(Some(PushAck {
                        seq,
                        outcome: PushOutcome::Rejected as i32,
                        reason: why.unwrap_or("malformed frame").into(),
                        retry_after_ms: 0,
                    })),
                }
            }
            // Frames that carriers brought filled the batch: it goes now.
            if batch.seqs.len() >= BATCH {
                let full = std::mem::take(&mut batch);
                let (e, c) = (std::mem::take(&mut envs), std::mem::take(&mut chains));
                if !verify(&node, &peer, &tx, full, e, c).await {
                    return;
                }
            }
        }
        if !batch.seqs.is_empty() && !verify(&node, &peer, &tx, batch, envs, chains).await {
            return;
        }
        if let Some(s) = ended {
            let _ = tx.send(Verifying::End(s)).await;
            return;
        }
    }
}

/// Starts verifying `batch` (its envelopes and their chains) and hands it to
/// stage 2; false when stage 2 is gone.
async fn verify(
    node: &Arc<Node>,
    peer: &str,
    tx: &mpsc::Sender<Verifying>,
    batch: Frames,
    envs: Vec<crate::proto::v1::SignedEnvelope>,
    chains: Vec<crate::service::ingest::Custody>,
) -> bool {
    let node = node.clone();
    let peer = peer.to_string();
    let job = tokio::spawn(async move { prepare(&node, Some(&peer), envs, chains).await });
    tx.send(Verifying::Batch(job, batch)).await.is_ok()
}

/// Stage 2: takes verified batches in stream order and queues their commits
/// in that order (the store applies them in queue order).
async fn queue_commits(
    node: Arc<Node>,
    peer: String,
    mut rx: mpsc::Receiver<Verifying>,
    tx: mpsc::Sender<Storing>,
) {
    while let Some(step) = rx.recv().await {
        let next = match step {
            Verifying::Batch(job, frames) => {
                let prepared = match job.await {
                    Ok(p) => p,
                    Err(e) => Prepared::lost(
                        Some(&peer),
                        frames.early.iter().filter(|a| a.is_none()).count(),
                        format!("verification task failed: {e}"),
                    ),
                };
                Storing::Batch(Box::new(submit(&node, prepared).await), frames)
            }
            Verifying::End(s) => Storing::End(s),
        };
        let end = matches!(next, Storing::End(_));
        if tx.send(next).await.is_err() || end {
            return;
        }
    }
}

/// Stage 3: awaits each commit in order and sends the acknowledgements; sends
/// the status that ends the stream, if any, after them.
async fn answer(
    node: Arc<Node>,
    mut rx: mpsc::Receiver<Storing>,
    out: mpsc::Sender<Result<PushAck, Status>>,
) {
    while let Some(step) = rx.recv().await {
        let (committing, frames) = match step {
            Storing::Batch(c, f) => (c, f),
            Storing::End(s) => {
                let _ = out.send(Err(s)).await;
                return;
            }
        };
        let acks = match committing.finish(&node).await {
            Ok(r) => frames.acks(r),
            Err(e) => {
                let _ = out
                    .send(Err(Status::internal(format!(
                        "{} cannot take envelopes: {e}",
                        node.id
                    ))))
                    .await;
                return;
            }
        };
        for a in acks {
            if out.send(Ok(a)).await.is_err() {
                return;
            }
        }
    }
}
