//! Federation service adapter: peers push envelopes; acknowledgements go back
//! in order, each only after the envelope is durably stored (or refused).
//! Verification of one batch overlaps with the commit of the previous one.
use crate::domain::identity::Identity;
use crate::proto::v1::federation_server::Federation;
use crate::proto::v1::{HelloRequest, HelloResponse, PushAck, PushFrame, PushOutcome};
use crate::service::ingest::{Ingested, ingest};
use crate::service::node::Node;
use crate::transport::server::PeerInfo;
use futures::StreamExt;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Frames verified and committed together.
const BATCH: usize = 512;
/// Batches in the pipeline at once.
const DEPTH: usize = 4;

pub struct FederationApi {
    node: Arc<Node>,
}

impl FederationApi {
    pub fn new(node: Arc<Node>) -> Self {
        FederationApi { node }
    }

    /// The calling node, which must be a configured peer, and the serial of the
    /// certificate it presented.
    fn peer<T>(&self, req: &Request<T>) -> Result<(String, String), Status> {
        let info = req
            .extensions()
            .get::<PeerInfo<Identity>>()
            .ok_or_else(|| Status::unauthenticated("no verified client certificate"))?;
        let who = info.identity.name().to_string();
        allowed(&self.node, &who, &info.serial)?;
        self.node.note_peer_serial(&who, info.serial.clone());
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

fn ack(seq: u64, r: &Ingested) -> PushAck {
    match r {
        Ingested::New(_) => PushAck {
            seq,
            outcome: PushOutcome::Accepted as i32,
            reason: String::new(),
        },
        Ingested::Duplicate => PushAck {
            seq,
            outcome: PushOutcome::Duplicate as i32,
            reason: String::new(),
        },
        Ingested::Rejected(why) => PushAck {
            seq,
            outcome: PushOutcome::Rejected as i32,
            reason: why.to_string(),
        },
    }
}

#[tonic::async_trait]
impl Federation for FederationApi {
    type PushStream = AckStream;

    async fn push(
        &self,
        req: Request<Streaming<PushFrame>>,
    ) -> Result<Response<Self::PushStream>, Status> {
        let (peer, serial) = self.peer(&req)?;
        let mut frames = req.into_inner().ready_chunks(BATCH);
        let (out_tx, out_rx) = mpsc::channel::<Result<PushAck, Status>>(BATCH * 2);
        let (pipe_tx, mut pipe_rx) =
            mpsc::channel::<tokio::task::JoinHandle<Result<Vec<PushAck>, Status>>>(DEPTH);
        let node = self.node.clone();
        let shutdown = node.shutdown.clone();
        let mut reloaded = node.peers.subscribe();
        tokio::spawn(async move {
            loop {
                let chunk = tokio::select! {
                    c = frames.next() => c,
                    _ = reloaded.changed() => Some(Vec::new()),
                    _ = shutdown.cancelled() => None,
                };
                let Some(chunk) = chunk else { break };
                // A reload may have removed this peer or revoked its certificate.
                if let Err(s) = allowed(&node, &peer, &serial) {
                    tracing::warn!(%peer, reason = %s.message(), "closing the push stream");
                    let _ = pipe_tx.send(tokio::spawn(async move { Err(s) })).await;
                    break;
                }
                if chunk.is_empty() {
                    continue;
                }
                let mut seqs = Vec::with_capacity(chunk.len());
                let mut envs = Vec::with_capacity(chunk.len());
                let mut chains = Vec::with_capacity(chunk.len());
                let mut early = Vec::new();
                for f in chunk {
                    match f {
                        Ok(PushFrame {
                            seq,
                            envelope: Some(e),
                            hops,
                        }) => {
                            seqs.push(seq);
                            envs.push(e);
                            chains.push(hops);
                        }
                        Ok(PushFrame {
                            seq,
                            envelope: None,
                            ..
                        }) => early.push(PushAck {
                            seq,
                            outcome: PushOutcome::Rejected as i32,
                            reason: "malformed frame: no envelope".into(),
                        }),
                        Err(s) => {
                            tracing::info!(%peer, status = %s, "push stream ended with an error");
                            break;
                        }
                    }
                }
                let node = node.clone();
                let peer = peer.clone();
                let job = tokio::spawn(async move {
                    let results = ingest(&node, Some(&peer), envs, chains)
                        .await
                        .map_err(|e| Status::unavailable(format!("{e}; retry later")))?;
                    let mut acks = early;
                    acks.extend(seqs.into_iter().zip(results.iter()).map(|(s, r)| ack(s, r)));
                    Ok(acks)
                });
                if pipe_tx.send(job).await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(job) = pipe_rx.recv().await {
                let acks = match job.await {
                    Ok(r) => r,
                    Err(e) => Err(Status::internal(format!("ingest task failed: {e}"))),
                };
                match acks {
                    Ok(acks) => {
                        for a in acks {
                            if out_tx.send(Ok(a)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(s) => {
                        let _ = out_tx.send(Err(s)).await;
                        return;
                    }
                }
            }
        });
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
        Ok(Response::new(HelloResponse {
            node_id: self.node.id.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
        }))
    }
}
