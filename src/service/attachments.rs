//! Evidence attachments on this node (issue 16): the operator's upload (a
//! stream turned into verified files, then the alert published), the listing
//! with each attachment's state, and the download (a stream of verified
//! content). The rules — framing, STREAM encryption, chunk verification,
//! manifest checks — are `domain::attachment`; this module does the I/O.
//!
//! Invariants:
//! - Files live under `storage.dir/attachments/`: one folder per message
//!   (`<message id>/<i>.blob`, the stored form, and `<i>.digests`, the chunk
//!   digest list). An upload is written in `.upload-<uuid>/`, each file
//!   flushed and synced, and the folder is renamed to the message id only when
//!   every attachment is complete and verified, just before the message is
//!   signed; an upload that fails, ends early or lies about a size leaves
//!   nothing behind ([`Uploaded`] removes its folder when dropped) and
//!   publishes nothing.
//! - Content is never held whole in memory: the upload passes through a
//!   bounded channel to one blocking writer (at most a few frames and one
//!   chunk in flight); the download reads, verifies and sends one chunk at a
//!   time through a bounded channel.
//! - Every chunk served is verified again against the signed digest list
//!   (and decrypted, for an encrypted message) before a byte of it leaves the
//!   node; the content's SHA-256 is checked at the end. A corrupt copy ends
//!   the stream with DATA_LOSS.
//! - The STREAM key never leaves the node through the Operator API: every
//!   manifest it answers with has `key` cleared.
use crate::domain::attachment::{
    self, Assembly, AttachmentError, Builder, DEFAULT_MEDIA_TYPE, Digest32, Reader,
};
use crate::proto::v1::{
    Attachment, AttachmentBlob, AttachmentData, AttachmentList, AttachmentState, AttachmentStatus,
    EnvelopeHeader, ListAttachmentsResponse, PublishUploadStart,
};
use crate::service::alerts::{self, AlertError};
use crate::service::node::Node;
use crate::service::{ErrorKind, InvalidArgument, ServiceError, check_id};
use crate::storage::StoreError;
use futures::{Stream, StreamExt};
use prost::Message;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// Largest `AttachmentData.data`, in bytes.
pub const MAX_DATA_FRAME: usize = 1 << 20;
/// Frames buffered between the upload stream and the writer.
const UPLOAD_QUEUE: usize = 4;
/// Chunks buffered between the reader and the download stream.
const DOWNLOAD_QUEUE: usize = 2;

/// Why an attachment operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("{0}")]
    Invalid(#[from] InvalidArgument),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    DataLoss(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Alert(#[from] AlertError),
    #[error("{0}")]
    Assist(#[from] crate::service::assistance::AssistError),
    #[error("{0}")]
    Incident(#[from] crate::service::incidents::IncidentError),
}

impl ServiceError for AttachError {
    fn kind(&self) -> ErrorKind {
        match self {
            AttachError::Invalid(_) => ErrorKind::InvalidArgument,
            AttachError::NotFound(_) => ErrorKind::NotFound,
            AttachError::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            AttachError::PermissionDenied(_) => ErrorKind::PermissionDenied,
            AttachError::DataLoss(_) => ErrorKind::DataLoss,
            AttachError::Internal(_) => ErrorKind::Internal,
            AttachError::Store(e) => e.kind(),
            AttachError::Alert(e) => e.kind(),
            AttachError::Assist(e) => e.kind(),
            AttachError::Incident(e) => e.kind(),
        }
    }
}

fn invalid(field: impl Into<String>, why: impl std::fmt::Display) -> AttachError {
    AttachError::Invalid(InvalidArgument::new(field, why))
}

fn io(what: &str, path: &Path, e: std::io::Error) -> AttachError {
    AttachError::Internal(format!(
        "{what} {}: {e}; check the disk and the permissions of storage.dir",
        path.display()
    ))
}

/// `storage.dir/attachments`, created on first use (mode 0700).
pub fn root_dir(node: &Node) -> Result<PathBuf, AttachError> {
    let dir = &node.cfg.storage.dir;
    if dir.as_os_str().is_empty() {
        return Err(AttachError::FailedPrecondition(
            "attachments are kept under storage.dir, which this node does not set; set storage.dir (also with storage.backend = \"postgres\")".into(),
        ));
    }
    let root = dir.join("attachments");
    if !root.is_dir() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(|e| io("cannot create", &root, e))?;
    }
    Ok(root)
}

/// The folder of a message's attachments.
fn message_dir(root: &Path, message_id: &str) -> PathBuf {
    root.join(message_id)
}

/// Attachments uploaded, complete and verified, in a temporary folder until
/// [`Uploaded::place`] renames it to the message id. Dropped unplaced (an
/// error, or a retried request that publishes nothing), it removes its folder.
#[derive(Debug)]
pub struct Uploaded {
    dir: PathBuf,
    list: Vec<Attachment>,
    blobs: Vec<AttachmentBlob>,
    encrypted: bool,
    placed: bool,
}

#[async_trait::async_trait]
impl alerts::Attach for Uploaded {
    fn encrypted(&self) -> bool {
        self.encrypted
    }

    /// Moves the files to the message's folder.
    async fn place(
        mut self: Box<Self>,
        node: &Node,
        message_id: &str,
    ) -> Result<(AttachmentList, Vec<AttachmentBlob>, PathBuf), String> {
        self.place_files(node, message_id)
            .await
            .map_err(|e| e.to_string())
    }
}

impl Uploaded {
    async fn place_files(
        &mut self,
        node: &Node,
        message_id: &str,
    ) -> Result<(AttachmentList, Vec<AttachmentBlob>, PathBuf), AttachError> {
        let root = root_dir(node)?;
        let to = message_dir(&root, message_id);
        let from = self.dir.clone();
        let to2 = to.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::rename(&from, &to2).map_err(|e| io("cannot rename", &from, e))?;
            std::fs::File::open(&root)
                .and_then(|d| d.sync_all())
                .map_err(|e| io("cannot sync", &root, e))
        })
        .await
        .map_err(|e| AttachError::Internal(format!("attachment task failed: {e}")))??;
        self.placed = true;
        let list = AttachmentList {
            attachments: std::mem::take(&mut self.list),
        };
        Ok((list, std::mem::take(&mut self.blobs), to))
    }
}

impl Drop for Uploaded {
    fn drop(&mut self) {
        if !self.placed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Removes a message's attachment folder (best effort).
pub async fn remove_dir(dir: PathBuf) {
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
}

/// PublishAlertWithAttachments: checks the alert and the declared
/// attachments first (so a bad alert is refused before any byte is sent),
/// takes the content, and publishes when every attachment is complete.
pub async fn upload<S, E>(
    node: &Node,
    start: PublishUploadStart,
    frames: S,
) -> Result<String, AttachError>
where
    S: Stream<Item = Result<AttachmentData, E>> + Unpin,
    E: std::fmt::Display,
{
    let req = start.request.ok_or_else(|| {
        invalid(
            "start.request",
            "required: the PublishAlertRequest to publish with the attachments",
        )
    })?;
    if req.validate_only {
        return Err(invalid(
            "start.request.validate_only",
            "not allowed with attachments; use PublishAlert to validate the alert alone",
        ));
    }
    let tlp = req
        .alert
        .as_ref()
        .map(|a| a.tlp)
        .and_then(|t| crate::proto::v1::Tlp::try_from(t).ok())
        .unwrap_or(crate::proto::v1::Tlp::Unspecified);
    alerts::validate_publish(node, req.clone()).await?;
    let encrypted = crate::domain::policy::requires_e2e(tlp);
    let up = receive(node, start.attachments, encrypted, frames).await?;
    let n = up.list.len();
    let bytes = up.list.iter().map(|a| a.size).sum::<u64>();
    let message_id = alerts::publish_with(node, req, Some(Box::new(up))).await?;
    tracing::info!(%message_id, attachments = n, bytes, "attachments stored");
    Ok(message_id)
}

/// PublishStepWithAttachments: the step's TLP is its request's (a new
/// request's own); the attachments are taken like an alert's, and the step is
/// signed only when all are complete (the state machine may still refuse it:
/// then nothing is published and the files are removed).
pub async fn upload_step<S, E>(
    node: &Node,
    start: crate::proto::v1::StepUploadStart,
    frames: S,
) -> Result<crate::proto::v1::StepUploadResponse, AttachError>
where
    S: Stream<Item = Result<AttachmentData, E>> + Unpin,
    E: std::fmt::Display,
{
    use crate::proto::v1::step_upload_start::Step as S1;
    use crate::service::assistance;
    let step = start.step.ok_or_else(|| {
        invalid(
            "start.step",
            "required: the request, offer, decision or update to sign with the attachments",
        )
    })?;
    let request_of = |id: &str| {
        let id = id.to_string();
        async move {
            check_id("request_id", &id, "assistance request id")?;
            let m = node.store.get_message(&id).await?;
            match m {
                Some(m)
                    if m.readable
                        && m.kind == crate::proto::v1::MessageKind::AssistanceRequest as i32 =>
                {
                    Ok(crate::proto::v1::Tlp::try_from(m.tlp)
                        .unwrap_or(crate::proto::v1::Tlp::Unspecified))
                }
                _ => Err(AttachError::NotFound(format!(
                    "no assistance request {id} on this node (it may not have reached this node yet)"
                ))),
            }
        }
    };
    let tlp = match &step {
        S1::Request(r) => {
            let req = r.request.as_ref().ok_or_else(|| {
                invalid("start.request.request", "required: the assistance request")
            })?;
            crate::domain::assistance::validate_request(req, crate::service::now_ms()).map_err(
                |e| AttachError::Assist(crate::service::assistance::AssistError::from(e)),
            )?;
            crate::proto::v1::Tlp::try_from(req.tlp).unwrap_or(crate::proto::v1::Tlp::Unspecified)
        }
        S1::Offer(o) => request_of(&o.request_id).await?,
        S1::Update(u) => request_of(&u.request_id).await?,
        S1::Decision(d) => {
            check_id("offer_id", &d.offer_id, "offer id")?;
            let rid = node
                .store
                .get_message(&d.offer_id)
                .await?
                .filter(|m| m.readable && m.kind == crate::proto::v1::MessageKind::Offer as i32)
                .and_then(|m| m.request_id)
                .ok_or_else(|| {
                    AttachError::NotFound(format!("no offer {} on this node", d.offer_id))
                })?;
            request_of(&rid).await?
        }
    };
    let encrypted = crate::domain::policy::requires_e2e(tlp);
    let up: Option<Box<dyn alerts::Attach>> = Some(Box::new(
        receive(node, start.attachments, encrypted, frames).await?,
    ));
    let (message_id, state) = match step {
        S1::Request(r) => {
            let id = assistance::request_with(
                node,
                r.request,
                r.recipients,
                r.request_id,
                r.exercise,
                up,
            )
            .await?;
            (id, crate::proto::v1::AssistanceState::Requested)
        }
        S1::Offer(o) => {
            let id = assistance::offer_with(node, o.request_id, o.offer, o.client_request_id, up)
                .await?;
            (id, crate::proto::v1::AssistanceState::Unspecified)
        }
        S1::Decision(d) => {
            assistance::decide_with(node, d.offer_id, d.accept, d.note, d.request_id, up).await?
        }
        S1::Update(u) => {
            assistance::update_with(
                node,
                u.request_id,
                u.state,
                u.note,
                u.withdraw_offer_id,
                u.client_request_id,
                up,
            )
            .await?
        }
    };
    tracing::info!(%message_id, "assistance step with attachments stored");
    Ok(crate::proto::v1::StepUploadResponse {
        message_id,
        state: state as i32,
    })
}

/// ReportSightingWithAttachments: the attachments ride on the sighting's TLP
/// (its incident's when it names one and sets none) and the sighting is
/// signed only when all are complete (a refused sighting publishes nothing
/// and its files are removed).
pub async fn upload_sighting<S, E>(
    node: &Node,
    start: crate::proto::v1::SightingUploadStart,
    frames: S,
) -> Result<String, AttachError>
where
    S: Stream<Item = Result<AttachmentData, E>> + Unpin,
    E: std::fmt::Display,
{
    let req = start.sighting.ok_or_else(|| {
        invalid(
            "start.sighting",
            "required: the sighting to sign with the attachments",
        )
    })?;
    let tlp = crate::service::incidents::sighting_tlp(node, &req).await?;
    let encrypted = crate::domain::policy::requires_e2e(tlp);
    let up: Box<dyn alerts::Attach> =
        Box::new(receive(node, start.attachments, encrypted, frames).await?);
    let message_id = crate::service::incidents::sight_with(node, req, Some(up)).await?;
    tracing::info!(%message_id, "sighting with attachments stored");
    Ok(message_id)
}

/// Takes the declared attachments' content from `frames` into a temporary
/// folder, encrypted when `encrypted`: complete and verified, or an error
/// (and nothing left on disk).
async fn receive<S, E>(
    node: &Node,
    declared: Vec<Attachment>,
    encrypted: bool,
    mut frames: S,
) -> Result<Uploaded, AttachError>
where
    S: Stream<Item = Result<AttachmentData, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut declared = declared;
    if declared.is_empty() {
        return Err(invalid(
            "start.attachments",
            "no attachment declared; use PublishAlert for an alert without attachments",
        ));
    }
    for (i, a) in declared.iter_mut().enumerate() {
        if a.media_type.is_empty() {
            a.media_type = DEFAULT_MEDIA_TYPE.into();
        }
        if !a.key.is_empty() {
            return Err(invalid(
                format!("start.attachments[{i}].key"),
                "must be empty: the node chooses a fresh key for each attachment",
            ));
        }
        if !a.sha256.is_empty() && a.sha256.len() != 32 {
            return Err(invalid(
                format!("start.attachments[{i}].sha256"),
                "must be empty or 32 bytes (the SHA-256 of the content)",
            ));
        }
    }
    attachment::check_declared(&declared, node.cfg.limits.max_attachment_bytes)
        .map_err(|e| invalid("start.attachments", e))?;
    let root = root_dir(node)?;
    let dir = root.join(format!(".upload-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir(&dir).map_err(|e| io("cannot create", &dir, e))?;
    // From here on the folder is removed on every error path.
    let mut up = Uploaded {
        dir: dir.clone(),
        list: Vec::new(),
        blobs: Vec::new(),
        encrypted,
        placed: false,
    };
    let (tx, rx) = std::sync::mpsc::sync_channel::<(u32, Vec<u8>)>(UPLOAD_QUEUE);
    let writer_dir = dir.clone();
    let writer_declared = declared.clone();
    let writer = tokio::task::spawn_blocking(move || {
        write_files(&writer_dir, writer_declared, encrypted, rx)
    });
    let mut stream_error = None;
    while let Some(frame) = frames.next().await {
        match frame {
            Ok(d) => {
                if d.data.len() > MAX_DATA_FRAME {
                    stream_error = Some(invalid(
                        "data.data",
                        format!(
                            "{} bytes in one frame, at most {MAX_DATA_FRAME}",
                            d.data.len()
                        ),
                    ));
                    break;
                }
                // The writer stops at its first error: its answer says why.
                if tx.send((d.index, d.data)).is_err() {
                    break;
                }
            }
            Err(e) => {
                stream_error = Some(invalid(
                    "stream",
                    format!("the upload stream failed ({e}); nothing was published, upload again"),
                ));
                break;
            }
        }
    }
    drop(tx);
    let written = writer
        .await
        .map_err(|e| AttachError::Internal(format!("attachment writer failed: {e}")))?;
    if let Some(e) = stream_error {
        return Err(e);
    }
    let (list, blobs) = written?;
    up.list = list;
    up.blobs = blobs;
    Ok(up)
}

/// One attachment being written: its builder and its file.
struct Current {
    builder: Builder,
    file: std::io::BufWriter<std::fs::File>,
    key: Option<Digest32>,
}

/// The blocking writer of an upload: takes `(index, data)` in order, writes
/// each attachment's stored form and digest list, and returns the manifests
/// and blobs once every attachment has exactly its declared size.
fn write_files(
    dir: &Path,
    declared: Vec<Attachment>,
    encrypted: bool,
    rx: std::sync::mpsc::Receiver<(u32, Vec<u8>)>,
) -> Result<(Vec<Attachment>, Vec<AttachmentBlob>), AttachError> {
    let n = declared.len();
    let open = |i: usize| -> Result<Current, AttachError> {
        let path = dir.join(format!("{i}.blob"));
        let file = std::fs::File::create(&path).map_err(|e| io("cannot create", &path, e))?;
        let key = encrypted.then(rand::random::<Digest32>);
        Ok(Current {
            builder: Builder::new(key),
            file: std::io::BufWriter::with_capacity(1 << 16, file),
            key,
        })
    };
    let mut list = Vec::with_capacity(n);
    let mut blobs = Vec::with_capacity(n);
    let mut cur = Some(open(0)?);
    // Completes the current attachment (and any empty ones after it) once it
    // has all its bytes, and opens the next one.
    let mut advance = |cur: &mut Option<Current>, i: &mut usize| -> Result<(), AttachError> {
        while let Some(done) = cur.take_if(|c| c.builder.content_size() == declared[*i].size) {
            let d = &declared[*i];
            let (last, built) = done.builder.finish();
            let path = dir.join(format!("{i}.blob"));
            let mut file = done.file;
            file.write_all(&last)
                .and_then(|_| file.flush())
                .map_err(|e| io("cannot write", &path, e))?;
            file.get_ref()
                .sync_all()
                .map_err(|e| io("cannot sync", &path, e))?;
            if !d.sha256.is_empty() && d.sha256.as_slice() != built.content_sha256.as_slice() {
                return Err(invalid(
                    format!("start.attachments[{i}].sha256"),
                    format!(
                        "{}: the content received does not match the declared SHA-256; nothing was published",
                        crate::domain::text::quote(&d.name)
                    ),
                ));
            }
            let dpath = dir.join(format!("{i}.digests"));
            std::fs::write(&dpath, attachment::encode_digests(&built.digests))
                .and_then(|_| std::fs::File::open(&dpath)?.sync_all())
                .map_err(|e| io("cannot write", &dpath, e))?;
            list.push(Attachment {
                name: d.name.clone(),
                media_type: d.media_type.clone(),
                size: built.content_size,
                sha256: built.content_sha256.to_vec(),
                malicious: d.malicious,
                key: done.key.map(|k| k.to_vec()).unwrap_or_default(),
            });
            blobs.push(built.blob);
            *i += 1;
            if *i < n {
                *cur = Some(open(*i)?);
            }
        }
        Ok(())
    };
    let mut i = 0usize;
    advance(&mut cur, &mut i)?;
    for (index, data) in rx {
        let index = index as usize;
        if i >= n {
            return Err(invalid(
                format!("data[{index}]"),
                "more content after every attachment has its declared size; sizes must be exact",
            ));
        }
        let size = declared[i].size;
        let Some(c) = cur.as_mut() else {
            return Err(AttachError::Internal(
                "attachment writer lost its file".into(),
            ));
        };
        let have = c.builder.content_size();
        if index != i {
            return Err(invalid(
                format!("data.index = {index}"),
                format!(
                    "content for attachment {index} while attachment {i} has {have} of its {size} bytes; send the attachments one after another, each complete"
                ),
            ));
        }
        if have + data.len() as u64 > size {
            return Err(invalid(
                format!("start.attachments[{i}].size"),
                format!(
                    "{}: more than the declared {size} bytes arrived; the size must be exact, nothing was published",
                    crate::domain::text::quote(&declared[i].name)
                ),
            ));
        }
        for chunk in c.builder.write(&data) {
            c.file
                .write_all(&chunk)
                .map_err(|e| io("cannot write", &dir.join(format!("{i}.blob")), e))?;
        }
        advance(&mut cur, &mut i)?;
    }
    if i < n {
        return Err(invalid(
            format!("start.attachments[{i}]"),
            format!(
                "{}: the upload ended after {} of its {} bytes; nothing was published, upload again",
                crate::domain::text::quote(&declared[i].name),
                cur.as_ref().map_or(0, |c| c.builder.content_size()),
                declared[i].size
            ),
        ));
    }
    Ok((list, blobs))
}

/// A readable message's attachment manifests (with keys) and signed blobs.
async fn manifests(
    node: &Node,
    message_id: &str,
) -> Result<(Vec<Attachment>, Vec<AttachmentBlob>), AttachError> {
    check_id("message_id", message_id, "message id")?;
    let m = match node.store.get_message(message_id).await? {
        Some(m) if !m.readable => {
            return Err(AttachError::PermissionDenied(format!(
                "{message_id} is end-to-end encrypted for other nodes; this node only relays it and cannot read its attachments"
            )));
        }
        Some(m) => m,
        None => {
            return Err(AttachError::NotFound(format!(
                "no message {message_id} on this node"
            )));
        }
    };
    let header = EnvelopeHeader::decode(m.header.as_slice())
        .map_err(|e| AttachError::DataLoss(format!("stored header does not decode: {e}")))?;
    let list = AttachmentList::decode(m.body())
        .map_err(|e| AttachError::DataLoss(format!("stored payload does not decode: {e}")))?;
    if list.attachments.len() != header.attachments.len() {
        return Err(AttachError::DataLoss(format!(
            "{message_id}: the payload lists {} attachments and the header {}",
            list.attachments.len(),
            header.attachments.len()
        )));
    }
    Ok((list.attachments, header.attachments))
}

/// The manifest as the Operator API shows it: without the key.
fn public(a: &Attachment) -> Attachment {
    Attachment {
        key: Vec::new(),
        ..a.clone()
    }
}

/// Where attachment `i` of a message is on this node, and how far.
fn state_of(dir: &Path, i: usize, blob: &AttachmentBlob) -> (AttachmentState, u32) {
    let len = |p: PathBuf| std::fs::metadata(p).ok().map(|m| m.len());
    if len(dir.join(format!("{i}.blob"))) == Some(blob.size) {
        return (AttachmentState::Available, 100);
    }
    match len(dir.join(format!("{i}.part"))) {
        Some(have) => {
            let pct = (have.min(blob.size) * 100)
                .checked_div(blob.size)
                .unwrap_or(0);
            (AttachmentState::Fetching, pct.min(99) as u32)
        }
        None => (AttachmentState::NotFetched, 0),
    }
}

/// ListAttachments: every attachment of a readable message and its state.
pub async fn list(node: &Node, message_id: &str) -> Result<ListAttachmentsResponse, AttachError> {
    let (list, blobs) = manifests(node, message_id).await?;
    let dir = message_dir(&root_dir(node)?, message_id);
    let attachments = list
        .iter()
        .zip(&blobs)
        .enumerate()
        .map(|(i, (a, b))| {
            let (state, percent) = state_of(&dir, i, b);
            AttachmentStatus {
                attachment: Some(public(a)),
                state: state as i32,
                percent,
            }
        })
        .collect();
    Ok(ListAttachmentsResponse {
        message_id: message_id.to_string(),
        attachments,
    })
}

/// GetAttachment: the manifest (without key) and a bounded stream of verified
/// content, chunk by chunk.
pub async fn download(
    node: &Node,
    message_id: &str,
    name: &str,
    i_know_it_is_malware: bool,
) -> Result<(Attachment, mpsc::Receiver<Result<Vec<u8>, AttachError>>), AttachError> {
    let (list, blobs) = manifests(node, message_id).await?;
    let Some(i) = list.iter().position(|a| a.name == name) else {
        return Err(AttachError::NotFound(format!(
            "{message_id} has no attachment named {}; list them with `certfed attachment list {message_id}`",
            crate::domain::text::quote(name)
        )));
    };
    let (manifest, blob) = (list[i].clone(), blobs[i].clone());
    if manifest.malicious && !i_know_it_is_malware {
        return Err(AttachError::FailedPrecondition(format!(
            "{} is flagged as a malware sample; it is sent only with i_know_it_is_malware (certfed attachment get … --i-know-it-is-malware)",
            crate::domain::text::quote(name)
        )));
    }
    let dir = message_dir(&root_dir(node)?, message_id);
    let (state, percent) = state_of(&dir, i, &blob);
    match state {
        AttachmentState::Available => {}
        AttachmentState::Fetching => {
            return Err(AttachError::FailedPrecondition(format!(
                "{} is still being fetched ({percent} %); try again when it is available",
                crate::domain::text::quote(name)
            )));
        }
        _ => {
            return Err(AttachError::FailedPrecondition(format!(
                "{} is not on this node (not yet fetched from the peer that delivered the message)",
                crate::domain::text::quote(name)
            )));
        }
    }
    let digests = std::fs::read(dir.join(format!("{i}.digests")))
        .map_err(|e| io("cannot read", &dir.join(format!("{i}.digests")), e))?;
    let check = Assembly::new(&blob, &digests).map_err(|e| AttachError::DataLoss(e.to_string()))?;
    let reader = Reader::new(&manifest, &blob).map_err(|e| AttachError::DataLoss(e.to_string()))?;
    let path = dir.join(format!("{i}.blob"));
    let file = std::fs::File::open(&path).map_err(|e| io("cannot open", &path, e))?;
    let (tx, rx) = mpsc::channel(DOWNLOAD_QUEUE);
    tokio::task::spawn_blocking(move || read_file(file, check, reader, tx));
    Ok((public(&manifest), rx))
}

/// The blocking reader of a download: every chunk checked against its
/// digest, decrypted, and sent; the content's SHA-256 checked at the end.
fn read_file(
    mut file: std::fs::File,
    mut check: Assembly,
    mut reader: Reader,
    tx: mpsc::Sender<Result<Vec<u8>, AttachError>>,
) {
    let layout = check.layout();
    let fail = |e: AttachmentError| {
        tracing::error!(error = %e, "stored attachment is corrupt");
        AttachError::DataLoss(format!("the stored copy is corrupt: {e}"))
    };
    for index in 0..layout.count() {
        let mut chunk = vec![0u8; layout.len_of(index) as usize];
        if let Err(e) = file.read_exact(&mut chunk) {
            let _ = tx.blocking_send(Err(AttachError::DataLoss(format!(
                "the stored copy ends early ({e})"
            ))));
            return;
        }
        let content = check
            .accept(index, &chunk)
            .map_err(fail)
            .and_then(|_| reader.chunk(chunk).map_err(fail));
        let stop = content.is_err();
        if tx.blocking_send(content).is_err() || stop {
            return;
        }
    }
    if let Err(e) = reader.finish() {
        let _ = tx.blocking_send(Err(fail(e)));
    }
}
