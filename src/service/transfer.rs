//! Attachment transfer between nodes (issue 16): serving `FetchAttachment`
//! to peers, and fetching a message's attachments from the peer that
//! delivered it.
//!
//! Invariants:
//! - Only the stored form travels: ciphertext for an encrypted message, so a
//!   relay never holds or sends a plaintext byte of AMBER+ evidence.
//! - A chunk is appended to `<i>.part` only after `domain::attachment::
//!   Assembly` has checked it against the digest list, and the list against
//!   the signed root; `<i>.part` therefore always holds a prefix of verified
//!   chunks. After a crash or a broken stream the fetch resumes at the first
//!   chunk not on disk (a torn tail is cut off), so verified chunks are never
//!   sent again. The complete file is synced and renamed to `<i>.blob`.
//! - A refused chunk (corrupt, out of order, wrong length) ends that attempt
//!   with a warning naming the peer; the next attempt asks the next source
//!   (the delivering peer first, then every other configured peer) from the
//!   same chunk, with capped backoff; after [`MAX_ATTEMPTS`] the fetch is
//!   abandoned with an error in the log and `.part` left (state "fetching").
//! - Peers fetch only messages this node queued for them (a delivery row).
//!   A relay passes chunks on while it is still fetching them (cut-through):
//!   once the digest list is on disk it serves `<i>.part`, reading each
//!   chunk only when the whole chunk is there (so only verified chunks), and
//!   waits for the next; a fetch that stops growing for [`STALL`] ends the
//!   stream with a reason (the peer retries). So a relay adds a chunk's
//!   delay, not a whole file's. A relay that cannot read a message drops its
//!   copy once every peer it queued the message for reported `done`.
//! - One fetch per message at a time ([`Fetching`]); at most one chunk per
//!   stream in memory on each side (bounded channels of one or two chunks).
use crate::domain::attachment::{Assembly, Layout};
use crate::proto::v1::federation_client::FederationClient;
use crate::proto::v1::{AttachmentBlob, AttachmentChunk, EnvelopeHeader, FetchAttachmentRequest};
use crate::service::arrivals::Follower;
use crate::service::attachments::root_dir;
use crate::service::node::Node;
use crate::service::peers::expect_member;
use crate::storage::StoredMessage;
use prost::Message;
use std::io::{Seek, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Attempts before a fetch is abandoned.
pub const MAX_ATTEMPTS: u32 = 12;
/// Tries while no source holds the attachment yet (the first few 100 ms
/// apart, doubling, then one a second: about an hour in all).
pub const MAX_WAITS: u32 = 3600;
/// Largest frame on a fetch stream (a chunk and its framing).
pub const MAX_CHUNK_FRAME: usize = 4 * 1024 * 1024;
/// A partial file served (cut-through) that grows no further for this long
/// ends the stream.
pub const STALL: Duration = Duration::from_secs(30);

/// How one fetch attempt ended.
enum Attempt {
    /// The source does not hold it (yet): wait and try again.
    NotYet(String),
    /// A refused chunk, a broken stream, a fault: counted toward abandoning.
    Failed(String),
}

/// Why a fetch request is refused.
#[derive(Debug)]
pub enum ServeError {
    NotFound(String),
    Denied(String),
    NotYet(String),
    Internal(String),
}

fn blobs_of(m: &StoredMessage) -> Vec<AttachmentBlob> {
    EnvelopeHeader::decode(m.header.as_slice())
        .map(|h| h.attachments)
        .unwrap_or_default()
}

/// Serves `FetchAttachment` to `peer`: the digest list then the chunks from
/// `from_chunk`, or records `done`.
pub async fn serve(
    node: &Arc<Node>,
    peer: &str,
    req: FetchAttachmentRequest,
) -> Result<mpsc::Receiver<Result<AttachmentChunk, String>>, ServeError> {
    let m = node
        .store
        .get_message(&req.message_id)
        .await
        .map_err(|e| ServeError::Internal(e.to_string()))?
        .ok_or_else(|| ServeError::NotFound(format!("no message {} here", req.message_id)))?;
    let rows = node
        .store
        .delivery(&req.message_id)
        .await
        .map_err(|e| ServeError::Internal(e.to_string()))?;
    if !rows.iter().any(|r| r.peer == peer) {
        return Err(ServeError::Denied(format!(
            "{} was not queued for {peer} here",
            req.message_id
        )));
    }
    let blobs = blobs_of(&m);
    let i = req.index as usize;
    let Some(blob) = blobs.get(i).cloned() else {
        return Err(ServeError::NotFound(format!(
            "{} has no attachment {i}",
            req.message_id
        )));
    };
    let root = root_dir(node).map_err(|e| ServeError::Internal(e.to_string()))?;
    let dir = root.join(&m.message_id);
    let (tx, rx) = mpsc::channel(1);
    if req.done {
        let marker = dir.join(format!("{i}.done-{peer}"));
        let _ = std::fs::write(&marker, b"");
        drop_if_passed_on(node, &m, &dir, &blobs, &rows).await;
        return Ok(rx);
    }
    let path = dir.join(format!("{i}.blob"));
    let complete = |p: &Path| std::fs::metadata(p).ok().map(|x| x.len()) == Some(blob.size);
    let not_yet = || {
        // On demand: a relay or a recipient that does not hold it yet starts
        // fetching it now (one fetch per message); the caller retries.
        if let Some(from) = m.from_peer.clone() {
            spawn_fetch(node.clone(), m.message_id.clone(), from);
        }
        ServeError::NotYet(format!(
            "attachment {i} of {} is still being fetched by {}; retry later",
            req.message_id, node.id
        ))
    };
    let digests_path = dir.join(format!("{i}.digests"));
    let (mut file, growing) = if complete(&path) {
        let f = std::fs::File::open(&path).map_err(|e| ServeError::Internal(format!("{e}")))?;
        (f, false)
    } else if digests_path.exists() {
        // Cut-through: the verified prefix now, the rest as it comes. The
        // open handle follows the file through its rename to `.blob`.
        match std::fs::File::open(dir.join(format!("{i}.part"))) {
            Ok(f) => {
                if let Some(from) = m.from_peer.clone() {
                    spawn_fetch(node.clone(), m.message_id.clone(), from);
                }
                (f, true)
            }
            Err(_) if complete(&path) => {
                let f =
                    std::fs::File::open(&path).map_err(|e| ServeError::Internal(format!("{e}")))?;
                (f, false)
            }
            Err(_) => return Err(not_yet()),
        }
    } else {
        return Err(not_yet());
    };
    let digests = std::fs::read(&digests_path)
        .map_err(|e| ServeError::Internal(format!("digest list: {e}")))?;
    let layout = Layout::of(&blob).map_err(|e| ServeError::Internal(e.to_string()))?;
    let from = req.from_chunk.min(layout.count());
    let rate = node.cfg.limits.attachment_bytes_per_sec;
    let pacer = node.clone();
    let to = peer.to_string();
    tracing::info!(message_id = %m.message_id, attachment = i, %peer, from_chunk = from, cut_through = growing, "serving attachment");
    let me = node.id.clone();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let first = AttachmentChunk {
            digests,
            chunk: 0,
            data: Vec::new(),
        };
        if tx.blocking_send(Ok(first)).is_err() {
            return;
        }
        if file
            .seek(std::io::SeekFrom::Start(layout.offset_of(from)))
            .is_err()
        {
            return;
        }
        for chunk in from..layout.count() {
            // A partial file: wait until this whole chunk is on disk (whole
            // chunks there are verified ones).
            if growing {
                let need = layout.offset_of(chunk) + layout.len_of(chunk);
                let (mut last, mut since) = (0u64, std::time::Instant::now());
                loop {
                    let len = file.metadata().map(|x| x.len()).unwrap_or(0);
                    if len >= need {
                        break;
                    }
                    if len != last {
                        (last, since) = (len, std::time::Instant::now());
                    }
                    if since.elapsed() > STALL || tx.is_closed() {
                        let _ = tx.blocking_send(Err(format!(
                            "{me} holds only {len} bytes of it and received nothing more for {} s; retry later",
                            STALL.as_secs()
                        )));
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            let mut data = vec![0u8; layout.len_of(chunk) as usize];
            if let Err(e) = file.read_exact(&mut data) {
                let _ = tx.blocking_send(Err(format!("reading chunk {chunk}: {e}")));
                return;
            }
            // Bandwidth bound, shared with every other transfer to or from
            // this peer: wait for this chunk's slot.
            let wait = pacer.pacers.wait(&to, data.len() as u64, rate);
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            if tx
                .blocking_send(Ok(AttachmentChunk {
                    digests: Vec::new(),
                    chunk,
                    data,
                }))
                .is_err()
            {
                return;
            }
        }
    });
    Ok(rx)
}

/// A relay that cannot read the message drops its copy when every peer it
/// queued the message for holds every attachment.
async fn drop_if_passed_on(
    node: &Node,
    m: &StoredMessage,
    dir: &Path,
    blobs: &[AttachmentBlob],
    rows: &[crate::storage::DeliveryRow],
) {
    if m.readable {
        return;
    }
    // A peer whose held-back copy was not needed (`domain::routes`) never
    // fetches them.
    let not_needed = crate::proto::v1::DeliveryState::NotNeeded as i32;
    let all = rows
        .iter()
        .filter(|r| r.state != not_needed)
        .all(|r| (0..blobs.len()).all(|i| dir.join(format!("{i}.done-{}", r.peer)).exists()));
    if all {
        crate::service::attachments::remove_dir(dir.to_path_buf()).await;
        tracing::info!(message_id = %m.message_id, node = %node.id, "relayed attachments passed on to every peer; ciphertext dropped");
    }
}

/// Whether this node wants a message's attachments: it can read the message
/// (a recipient) or queued it for peers (a relay passes the ciphertext on).
async fn wanted(node: &Node, m: &StoredMessage) -> bool {
    if m.readable {
        return true;
    }
    node.store
        .delivery(&m.message_id)
        .await
        .map(|rows| !rows.is_empty())
        .unwrap_or(false)
}

/// Starts fetching a message's attachments from `from` unless a fetch of it
/// is running already.
pub fn spawn_fetch(node: Arc<Node>, message_id: String, from: String) {
    {
        let mut f = node.fetching.0.lock().unwrap_or_else(|e| e.into_inner());
        if !f.insert(message_id.clone()) {
            return;
        }
    }
    tokio::spawn(async move {
        let r = fetch_message(&node, &message_id, &from).await;
        node.fetching
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&message_id);
        if let Err(e) = r {
            node.metrics
                .attachment_fetches_abandoned
                .get_or_create(&crate::service::metrics::PeerLabel { peer: from.clone() })
                .inc();
            tracing::error!(%message_id, peer = %from, error = %e, "attachment fetch abandoned");
        }
    });
}

/// The fetcher: on start, resumes every unfinished fetch (`*.part` files);
/// then, for every new message with attachments that this node wants, fetches
/// them from the delivering peer when their content totals at most
/// `limits.eager_attachment_bytes` (larger ones on demand).
pub async fn run(node: Arc<Node>) {
    let stored = node.stored.subscribe();
    let cursor = node.store.last_cursor().await.unwrap_or(0);
    // Only read here: the folder is created by the first attachment.
    let root = node.cfg.storage.dir.join("attachments");
    if !node.cfg.storage.dir.as_os_str().is_empty() && root.is_dir() {
        for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let unfinished = std::fs::read_dir(e.path())
                .into_iter()
                .flatten()
                .flatten()
                .any(|f| f.file_name().to_string_lossy().ends_with(".part"));
            if unfinished
                && let Ok(Some(m)) = node.store.get_message(&id).await
                && let Some(from) = m.from_peer.clone()
            {
                spawn_fetch(node.clone(), id, from);
            }
        }
    }
    let mut follow = Follower::new(stored, cursor, |a| &a.fetcher);
    while let Some(batch) = follow
        .next(&node.store, &node.arrivals, &node.shutdown)
        .await
    {
        for a in batch {
            // Handed over by the commit (`service::arrivals`): only a message
            // with attachments from a peer is read again.
            let Some(from) = a.from_peer.clone().filter(|_| a.attachments) else {
                continue;
            };
            let Ok(Some(m)) = node.store.get_message(&a.message_id).await else {
                continue;
            };
            let blobs = blobs_of(&m);
            if blobs.is_empty() {
                continue;
            }
            let encrypted = EnvelopeHeader::decode(m.header.as_slice())
                .map(|h| h.encrypted)
                .unwrap_or(false);
            let total: u64 = blobs
                .iter()
                .map(|b| crate::domain::attachment::content_size(b, encrypted))
                .sum();
            if total <= node.cfg.limits.eager_attachment_bytes && wanted(&node, &m).await {
                spawn_fetch(node.clone(), m.message_id.clone(), from);
            }
        }
    }
}

/// Sources to try, the delivering peer first.
fn sources(node: &Node, first: &str) -> Vec<(String, String)> {
    let peers = node.configured_peers();
    let mut out: Vec<(String, String)> = peers
        .iter()
        .filter(|p| p.id == first)
        .chain(peers.iter().filter(|p| p.id != first))
        .map(|p| (p.id.clone(), p.endpoint.to_string()))
        .collect();
    out.dedup();
    out
}

/// Fetches every attachment of a message not complete here yet.
async fn fetch_message(node: &Arc<Node>, message_id: &str, from: &str) -> Result<(), String> {
    let m = node
        .store
        .get_message(message_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{message_id} is no longer stored"))?;
    let blobs = blobs_of(&m);
    let dir = root_dir(node).map_err(|e| e.to_string())?.join(message_id);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (i, blob) in blobs.iter().enumerate() {
        let done = dir.join(format!("{i}.blob"));
        if std::fs::metadata(&done).ok().map(|x| x.len()) == Some(blob.size) {
            continue;
        }
        // Created first, so a restart finds and resumes the fetch.
        let part = dir.join(format!("{i}.part"));
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&part)
            .map_err(|e| format!("{}: {e}", part.display()))?;
        let list = sources(node, from);
        let mut backoff = Duration::from_millis(200);
        let mut attempt = 0;
        let mut attempt_source = 0usize;
        let mut waits = 0u32;
        loop {
            if node.shutdown.is_cancelled() {
                return Ok(());
            }
            let (peer, endpoint) = &list[attempt_source % list.len().max(1)];
            match fetch_one(node, message_id, i, blob, &dir, peer, endpoint).await {
                Ok(()) => {
                    tracing::info!(%message_id, attachment = i, %peer, bytes = blob.size, "attachment fetched and verified");
                    let _ = report_done(node, message_id, i, peer, endpoint).await;
                    break;
                }
                Err(Attempt::NotYet(e)) => {
                    // The source is still fetching it itself: wait, do not
                    // count it as a failure (bounded by MAX_WAITS).
                    waits += 1;
                    attempt_source += 1;
                    tracing::debug!(%message_id, attachment = i, %peer, error = %e, "source does not hold the attachment yet");
                    if waits >= MAX_WAITS {
                        return Err(format!(
                            "attachment {i}: no source holds it after {waits} tries, last: {e}"
                        ));
                    }
                    // A relay that just got the message is about to start its
                    // own fetch: ask again soon, then once a second.
                    let wait = Duration::from_millis((100u64 << waits.min(4)).min(1000));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = node.shutdown.cancelled() => return Ok(()),
                    }
                }
                Err(Attempt::Failed(e)) => {
                    attempt += 1;
                    attempt_source += 1;
                    tracing::warn!(%message_id, attachment = i, %peer, error = %e, attempt, "attachment fetch interrupted; retrying");
                    if attempt >= MAX_ATTEMPTS {
                        return Err(format!(
                            "attachment {i}: {MAX_ATTEMPTS} attempts failed, last: {e}"
                        ));
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = node.shutdown.cancelled() => return Ok(()),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
    Ok(())
}

fn client(
    node: &Node,
    peer: &str,
    endpoint: &str,
) -> Result<FederationClient<tonic::transport::Channel>, String> {
    let channel = crate::transport::client::channel(
        endpoint,
        node.tls_client(),
        Some(expect_member(peer, node.roster())),
        Duration::from_secs(5),
    )
    .map_err(|e| format!("invalid endpoint {endpoint}: {e}"))?;
    Ok(FederationClient::new(channel)
        .max_decoding_message_size(MAX_CHUNK_FRAME)
        .max_encoding_message_size(MAX_CHUNK_FRAME))
}

async fn report_done(
    node: &Node,
    message_id: &str,
    index: usize,
    peer: &str,
    endpoint: &str,
) -> Result<(), String> {
    let mut c = client(node, peer, endpoint)?;
    c.fetch_attachment(FetchAttachmentRequest {
        message_id: message_id.into(),
        index: index as u32,
        from_chunk: 0,
        done: true,
    })
    .await
    .map_err(|s| s.message().to_string())?;
    Ok(())
}

/// One attempt: resumes `<i>.part` at its verified prefix and appends
/// verified chunks until complete, then renames it to `<i>.blob`.
async fn fetch_one(
    node: &Node,
    message_id: &str,
    i: usize,
    blob: &AttachmentBlob,
    dir: &Path,
    peer: &str,
    endpoint: &str,
) -> Result<(), Attempt> {
    let layout = Layout::of(blob).map_err(|e| Attempt::Failed(e.to_string()))?;
    let part = dir.join(format!("{i}.part"));
    // The verified prefix: whole chunks only (a torn tail is cut off).
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let verified = u32::try_from(have / u64::from(layout.chunk_size)).unwrap_or(u32::MAX);
    let verified = verified.min(layout.count());
    let mut c = client(node, peer, endpoint).map_err(Attempt::Failed)?;
    let mut stream = tokio::time::timeout(
        Duration::from_secs(30),
        c.fetch_attachment(FetchAttachmentRequest {
            message_id: message_id.into(),
            index: i as u32,
            from_chunk: verified,
            done: false,
        }),
    )
    .await
    .map_err(|_| Attempt::Failed(format!("{peer} did not answer within 30 s")))?
    .map_err(|s| {
        let m = format!("{peer}: {}", s.message());
        if matches!(
            s.code(),
            tonic::Code::Unavailable | tonic::Code::NotFound | tonic::Code::PermissionDenied
        ) {
            Attempt::NotYet(m)
        } else {
            Attempt::Failed(m)
        }
    })?
    .into_inner();
    fetch_stream(
        node,
        message_id,
        i,
        blob,
        dir,
        peer,
        layout,
        verified,
        &mut stream,
    )
    .await
    .map_err(Attempt::Failed)
}

/// Receives one fetch stream into `<i>.part` (see [`fetch_one`]).
#[allow(clippy::too_many_arguments)]
async fn fetch_stream(
    node: &Node,
    message_id: &str,
    i: usize,
    blob: &AttachmentBlob,
    dir: &Path,
    peer: &str,
    layout: Layout,
    verified: u32,
    stream: &mut tonic::Streaming<AttachmentChunk>,
) -> Result<(), String> {
    let (pacers, rate) = (&node.pacers, node.cfg.limits.attachment_bytes_per_sec);
    let part = dir.join(format!("{i}.part"));
    let first = next_frame(stream, peer)
        .await?
        .ok_or("stream ended at once")?;
    if verified > 0 {
        tracing::info!(%message_id, attachment = i, %peer, from_chunk = verified, "resuming attachment fetch after the chunks already verified");
    }
    let mut assembly = Assembly::new(blob, &first.digests)
        .map_err(|e| format!("{peer}: {e}"))?
        .resume(verified);
    let digests_path = dir.join(format!("{i}.digests"));
    if !digests_path.exists() {
        std::fs::write(&digests_path, &first.digests).map_err(|e| e.to_string())?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&part)
        .map_err(|e| format!("{}: {e}", part.display()))?;
    let start = layout.offset_of(verified).min(layout.size);
    file.set_len(start).map_err(|e| e.to_string())?;
    file.seek(std::io::SeekFrom::Start(start))
        .map_err(|e| e.to_string())?;
    let mut unsynced: u64 = 0;
    while !assembly.is_complete() {
        let Some(f) = next_frame(stream, peer).await? else {
            file.sync_data().map_err(|e| e.to_string())?;
            return Err(format!(
                "{peer} ended the stream at chunk {} of {}",
                assembly.next(),
                layout.count()
            ));
        };
        // Nothing refused is ever written.
        assembly
            .accept(f.chunk, &f.data)
            .map_err(|e| format!("refused from {peer}: {e}"))?;
        // Bandwidth bound, shared with every other transfer to or from this peer.
        let wait = pacers.wait(peer, f.data.len() as u64, rate);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let data = f.data;
        file = tokio::task::spawn_blocking(move || file.write_all(&data).map(|_| file))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{}: {e}", part.display()))?;
        unsynced += layout.chunk_size as u64;
        if unsynced >= 16 << 20 {
            file.sync_data().map_err(|e| e.to_string())?;
            unsynced = 0;
        }
    }
    file.sync_all().map_err(|e| e.to_string())?;
    let done = dir.join(format!("{i}.blob"));
    std::fs::rename(&part, &done).map_err(|e| format!("{}: {e}", done.display()))?;
    Ok(())
}

async fn next_frame(
    stream: &mut tonic::Streaming<AttachmentChunk>,
    peer: &str,
) -> Result<Option<AttachmentChunk>, String> {
    tokio::time::timeout(Duration::from_secs(60), stream.message())
        .await
        .map_err(|_| format!("{peer} sent nothing for 60 s"))?
        .map_err(|s| format!("{peer}: {}", s.message()))
}

/// On demand (an operator asks for an attachment not here yet): starts the
/// fetch from the delivering peer if the message has attachments missing.
pub async fn on_demand(node: &Arc<Node>, message_id: &str) {
    let Ok(Some(m)) = node.store.get_message(message_id).await else {
        return;
    };
    let Some(from) = m.from_peer.clone() else {
        return;
    };
    let Ok(root) = root_dir(node) else {
        return;
    };
    let dir = root.join(message_id);
    let missing = blobs_of(&m).iter().enumerate().any(|(i, b)| {
        std::fs::metadata(dir.join(format!("{i}.blob")))
            .ok()
            .map(|x| x.len())
            != Some(b.size)
    });
    if missing && m.readable {
        spawn_fetch(node.clone(), m.message_id, from);
    }
}
