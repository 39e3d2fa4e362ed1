//! The storage interface: what a node keeps on disk, as typed rows behind one
//! trait, [`Storage`], so that backends can be swapped without touching callers.
//! [`sqlite`] is the embedded default.
//!
//! Invariants every backend keeps (checked by the shared conformance suite in
//! `conformance.rs`, which every backend must pass):
//! - A message is stored at most once, keyed by its message id; a second insert
//!   of the same id writes nothing and reports [`Stored::Duplicate`].
//! - A message and its outbox rows (one per target peer) are committed together.
//! - [`Durability::Durable`] writes are on stable storage before the call
//!   returns; [`Durability::Lazy`] writes survive a crash of the process and
//!   become durable with the next durable write.
//! - Cursors increase with insertion order and are never reused; writes queued
//!   with [`Storage::insert_queued`] are applied in the order they were queued.
//! - Whatever the order in which an alert and its update (or retraction)
//!   arrive, the alert ends up marked superseded by the latest of its origin's
//!   updates (latest creation time, ties broken by message id).
//! - An outbox entry deferred until a time is not returned by
//!   [`Storage::outbox`] before that time.
//! - Nothing here interprets payloads: rows carry the bytes the caller gives.
//! - A client's request id is claimed at most once within its window
//!   ([`Storage::claim_request`]); a completed record is never dropped early.
//! - A store belongs to one node: it records the node id it was created for and
//!   refuses to open for another ([`OpenOptions::node_id`]).
//! - A damaged store is never served: opening runs an integrity check
//!   ([`IntegrityCheck`]) and refuses a store whose database was truncated,
//!   deleted or scribbled on; damage found later ([`StoreError::Corrupt`])
//!   stops every further write.
//! - The federation roster chain ([`Storage::save_roster`]) keeps one roster
//!   per version, durably; a different roster under a version already kept
//!   is refused, never written over.
//! - A message's correlation keys ([`NewMessage::keys`]) are written with it
//!   and deleted with it.
//! - [`Storage::purge`] deletes a message together with its outbox, delivery,
//!   receipt and key rows, in bounded batches that share the writer with everyone
//!   else, and never touches an assistance thread the caller says to keep.
//! - Set reconciliation index: a message stored with a [`SyncEntry`] has one
//!   item per audience, and the per-(audience, bucket) sums
//!   ([`Storage::sync_buckets`]) always equal the count and lane-wise
//!   wrapping sum of the hashes of the items listed by
//!   [`Storage::sync_items`] in that bucket: maintained in the same commit as
//!   the insert and the purge, never by a scan.
//!
//! - A store shared by an active/standby pair is fenced by its [`Lease`]: a
//!   member writes only while it holds the lease, and a write that finds the
//!   lease moved is refused ([`StoreError::Fenced`]), as is every later one.
//!
//! This module names no database type: errors carry their source as a boxed
//! error, so nothing above `storage/` depends on a driver.
pub mod postgres;
pub mod sqlite;

#[cfg(test)]
pub(crate) mod conformance;

use crate::proto::v1::DeliveryState;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A write that is queued; resolves once it is committed (or failed).
pub type Pending<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// A handle to the node's store; cheap to clone.
pub type Store = Arc<dyn Storage>;

/// The cursor of the last message received at or before `ms` (0: none), by
/// bisection over cursors: about log2(highest cursor) seeks whatever the store
/// holds. Exact when receipt times follow cursor order, which they do but
/// for batches committed in another order than they were admitted (a few
/// milliseconds; seconds under load) and a clock stepped back: callers ask
/// with a margin.
pub async fn cursor_received_by(store: &dyn Storage, ms: i64) -> Result<u64, StoreError> {
    let Some((first, received)) = store.received_from(0).await? else {
        return Ok(0);
    };
    if received > ms {
        return Ok(0);
    }
    // `lo` is always a held cursor received at or before `ms`.
    let (mut lo, mut hi) = (first, store.last_cursor().await?);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        match store.received_from(mid).await? {
            Some((c, r)) if r <= ms => lo = c,
            _ => hi = mid - 1,
        }
    }
    Ok(lo)
}

/// A storage failure, classified by what the caller can do about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store is closed (the node is shutting down).
    #[error("storage: the store is closed")]
    Closed,
    /// The disk (or the database's quota) is full. Temporary: retry once space returns.
    #[error("storage: disk full ({0}); free space on the storage volume")]
    Full(String),
    /// The database is damaged. Retrying cannot help: restore from a backup.
    /// Once a backend has seen this, it refuses every further write.
    #[error(
        "storage: the database is damaged ({0}); retrying cannot help: stop the node and restore the store from a backup (README, \"Backup and restore\")"
    )]
    Corrupt(String),
    /// Any other failure of the backend; the driver's error is kept as the source.
    #[error("storage: {context}: {source}")]
    Backend {
        context: String,
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// A refusal by the store's own rules (e.g. a schema newer than this build).
    #[error("{0}")]
    Invalid(String),
    /// This process may not write: it is the standby of an active/standby
    /// pair, or it lost the lease to the other member. Temporary for callers
    /// (the active member takes the work).
    #[error("storage: not the active member: {0}")]
    Fenced(String),
}

impl StoreError {
    /// Wraps a backend error with what was being done.
    pub fn backend(
        context: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        StoreError::Backend {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    /// Whether retrying later may succeed (full disk, closed store, transient
    /// backend failure) as opposed to a condition retrying cannot fix.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            StoreError::Closed
                | StoreError::Full(_)
                | StoreError::Backend { .. }
                | StoreError::Fenced(_)
        )
    }

    /// Short label of the kind of failure, for metrics and logs.
    /// Every [`StoreError::label`], for metrics that list them from the start.
    pub const ALL_LABELS: [&'static str; 6] =
        ["closed", "full", "corrupt", "backend", "invalid", "fenced"];

    pub fn label(&self) -> &'static str {
        match self {
            StoreError::Closed => "closed",
            StoreError::Full(_) => "full",
            StoreError::Corrupt(_) => "corrupt",
            StoreError::Backend { .. } => "backend",
            StoreError::Invalid(_) => "invalid",
            StoreError::Fenced(_) => "fenced",
        }
    }
}

/// A member's role after a [`Lease::tick`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseRole {
    /// This member holds the lease with this epoch and may write.
    Active { epoch: u64 },
    /// Another member (`active`, its name) holds the lease with `epoch`.
    Standby { epoch: u64, active: String },
}

/// What one [`Lease::tick`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTick {
    pub role: LeaseRole,
    /// The other member of the pair, if it was seen recently.
    pub other: Option<String>,
    /// Milliseconds since the lease was last taken or renewed (by anyone).
    pub renewed_age_ms: i64,
}

/// The active/standby lease of a store shared by two processes of one node.
/// Only the holder writes; the store refuses writes otherwise.
#[async_trait::async_trait]
pub trait Lease: Send + Sync {
    /// Renews the lease if this member holds it, takes it if it is free or
    /// expired, and reports the role. An error [`StoreError::Fenced`] means
    /// this member held the lease and lost it: it must step down.
    async fn tick(&self) -> Result<LeaseTick, StoreError>;
    /// Gives the lease up (at shutdown, after the last write), so the other
    /// member takes over at once.
    async fn release(&self);
    /// Tells (once) why this member lost the lease, when a write found out.
    fn lost(&self) -> tokio::sync::watch::Receiver<Option<String>>;
    /// This member's name in the lease.
    fn holder(&self) -> &str;
}

/// How thoroughly a store is checked for damage when it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IntegrityCheck {
    /// Every page's structure (SQLite `quick_check`): a few seconds per GB.
    #[default]
    Quick,
    /// Also every index against its table (SQLite `integrity_check`): slower.
    Full,
    /// No check at start (the file header is still checked).
    Off,
}

/// What a backend needs to open a node's store.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// The node the store belongs to: recorded in a new store, and a store
    /// recorded for another node is refused.
    pub node_id: String,
    /// The check run before the store is used.
    pub integrity: IntegrityCheck,
}

impl OpenOptions {
    pub fn new(node_id: impl Into<String>) -> OpenOptions {
        OpenOptions {
            node_id: node_id.into(),
            integrity: IntegrityCheck::Quick,
        }
    }
}

/// The correlation keys a stored message was inserted with
/// ([`NewMessage::keys`]), found again from its row: its kind, its signed
/// header, and its readable body (`None` when this node cannot read it).
pub type KeysOf = fn(kind: i32, header: &[u8], body: Option<&[u8]>) -> Vec<String>;

/// One retention batch: which messages are old enough to delete.
#[derive(Debug, Clone, Default)]
pub struct PurgePlan {
    /// Per TLP (wire value): messages created before this time (unix ms) are
    /// deleted. Messages of a TLP not listed are never deleted.
    pub cutoffs: Vec<(i32, i64)>,
    /// Assistance threads (request ids) kept whole, whatever their age.
    pub keep_requests: Vec<String>,
    /// Rejection audit rows recorded before this time are deleted.
    pub rejections_before_ms: i64,
    /// Relayed ciphertext (a message this node cannot read) received before
    /// this time and queued for no peer any more is emptied (the signed
    /// header stays; 0, the default: none).
    pub relayed_before_ms: i64,
    /// Most messages (and, separately, audit rows and emptied ciphertexts)
    /// touched by one call.
    pub limit: usize,
    /// The keys each deleted message was inserted with: the SQLite store
    /// keeps no index of keys by message (one B-tree entry less per key on
    /// every insert) and deletes exactly these. Required when `cutoffs` can
    /// select a message: a purge that would delete one without it fails
    /// (`StoreError::Invalid`) and deletes nothing.
    pub keys_of: Option<KeysOf>,
}

impl PurgePlan {
    /// [`PurgePlan::keys_of`], or the refusal of a plan that would delete
    /// messages without it (every store asks before it deletes any).
    pub fn key_finder(&self) -> Result<KeysOf, StoreError> {
        self.keys_of.ok_or_else(|| {
            StoreError::Invalid(
                "storage: a purge plan that deletes messages must say how to find their keys (keys_of); nothing was deleted".into(),
            )
        })
    }

    /// The cutoff that applies to messages of TLP `tlp` (`None`: kept).
    pub fn cutoff(&self, tlp: i32) -> Option<i64> {
        self.cutoffs
            .iter()
            .find(|(t, _)| *t == tlp)
            .map(|(_, c)| *c)
    }

    /// The latest cutoff of all: no message created at or after it is deleted.
    pub fn latest_cutoff(&self) -> i64 {
        self.cutoffs
            .iter()
            .map(|(_, c)| *c)
            .max()
            .unwrap_or(i64::MIN)
    }
}

/// What one [`Storage::purge`] call deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Messages deleted (with their outbox, delivery and receipt rows).
    pub messages: u64,
    /// Rejection audit rows deleted.
    pub rejections: u64,
    /// Relayed ciphertexts emptied.
    pub ciphertexts: u64,
}

/// The disk space a store takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Space {
    /// Bytes of the store's files (database and write-ahead log).
    pub file_bytes: u64,
    /// Of those, the write-ahead log (transient: folded into the database
    /// and cut back after checkpoints).
    pub wal_bytes: u64,
    /// Bytes of the database freed by deletes (a purge) and reused by new
    /// data before the files grow.
    pub free_bytes: u64,
}

impl Space {
    /// Bytes of the database holding data (neither free nor log).
    pub fn used_bytes(&self) -> u64 {
        self.file_bytes
            .saturating_sub(self.wal_bytes)
            .saturating_sub(self.free_bytes)
    }
}

/// How durable a write must be before the call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On stable storage (fsync) before returning.
    Durable,
    /// Survives a crash of the process; durable with the next durable write.
    /// For data whose loss in a power failure is harmless (receipts, outbox
    /// bookkeeping whose loss only causes a deduplicated resend).
    Lazy,
}

/// One hop of the path a message took.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hop {
    pub node: String,
    pub at_ms: i64,
}

/// Receipt facts to record with a receipt message addressed to this node:
/// for each of `ids` that this node (`me`) originated, `from` reported `state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptRows {
    pub me: String,
    pub from: String,
    pub ids: Vec<String>,
    pub state: i32,
    pub reason: String,
    pub at_ms: i64,
}

/// A recipient's receipt for one message, as kept by the origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptRow {
    pub node: String,
    pub state: i32,
    pub reason: String,
    pub at_ms: i64,
}

/// A verified message about to be stored.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub message_id: String,
    pub origin: String,
    pub kind: i32,
    pub tlp: i32,
    pub severity: i32,
    pub sectors_mask: i64,
    pub exercise: bool,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub received_ms: i64,
    /// Direct peer it came from; `None` if this node originated it.
    pub from_peer: Option<String>,
    pub path: Vec<Hop>,
    pub header: Vec<u8>,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
    /// Peers to queue it for, in the same transaction.
    pub targets: Vec<String>,
    /// Peers to queue it for held back until `park_until_ms` (Plumtree's
    /// lazy links: they get an announcement now, the full copy only if they
    /// do not answer that they hold it; see `service::tree`). Durable like
    /// the other outbox rows, so a crash loses no announced message.
    pub parked: Vec<String>,
    pub park_until_ms: i64,
    /// For alert updates and retractions: the message id superseded.
    pub supersedes: Option<String>,
    /// Whether this node can read the payload (false: an end-to-end encrypted
    /// message this node only relays).
    pub readable: bool,
    /// The decrypted payload, when the envelope's payload is encrypted and this
    /// node is a recipient (or the origin).
    pub plain: Option<Vec<u8>>,
    /// For assistance messages: the request they belong to.
    pub request_id: Option<String>,
    /// For a receipt addressed to this node: what to record.
    pub receipt: Option<ReceiptRows>,
    /// Its items in the reconciliation index (`None`: not reconciled).
    pub sync: Option<SyncEntry>,
    /// Serialized `HopChain`: the verified chain received, plus this node's own
    /// signed record when it relays the message.
    pub hops: Vec<u8>,
    /// The incident it belongs to (from its signed header), if any.
    pub incident_id: Option<String>,
    /// Correlation keys (indicators, alerts an assistance request names),
    /// indexed so that [`Storage::keyed`] finds the message by them.
    pub keys: Vec<String>,
}

/// Delivery state text of an outbox row held back for a lazy link.
pub const PARKED_REASON: &str =
    "announced over a lazy link; sent in full unless the peer answers that it holds it";

/// Width of a reconciliation bucket: items are summed per audience and per
/// [`SYNC_BUCKET_MS`] of creation time. Measured against one minute with
/// `certfed bench --reconcile` (1,000 of 1,000,000 missing): ten minutes
/// cost half the CPU, since every round reads the sums of every bucket in
/// the window and ten times as many buckets cost more than the items of the
/// few buckets a round splits.
pub const SYNC_BUCKET_MS: i64 = 600_000;

/// How a message takes part in set reconciliation (`domain::reconcile`): the
/// caller decides; the store only keeps the items and their sums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncEntry {
    /// The audiences it is listed under ("*" for a broadcast; else the
    /// member ids, other than this node, that are its origin or recipients).
    pub audiences: Vec<String>,
    /// The message id's 16 bytes (the item's key is (created_ms, id)).
    pub id: [u8; 16],
    /// The item's hash.
    pub hash: [u8; 32],
}

/// The sum of one bucket of one or more audiences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncBucket {
    /// Bucket index: creation time divided by [`SYNC_BUCKET_MS`] (floor).
    pub bucket: i64,
    pub count: u64,
    /// Lane-wise wrapping sum of the items' hashes, as four little-endian u64.
    pub lanes: [u64; 4],
}

impl SyncBucket {
    /// Adds (or, with `sign` -1, removes) one hash.
    pub fn add(&mut self, hash: &[u8; 32], sign: i64) {
        self.count = self.count.wrapping_add_signed(sign);
        for (i, lane) in self.lanes.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&hash[i * 8..i * 8 + 8]);
            let v = u64::from_le_bytes(b);
            *lane = if sign >= 0 {
                lane.wrapping_add(v)
            } else {
                lane.wrapping_sub(v)
            };
        }
    }

    /// Adds another bucket's sums.
    pub fn merge(&mut self, o: &SyncBucket) {
        self.count = self.count.wrapping_add(o.count);
        for i in 0..4 {
            self.lanes[i] = self.lanes[i].wrapping_add(o.lanes[i]);
        }
    }
}

/// A position in reconciliation order: (creation time, id bytes).
pub type SyncPos = (i64, [u8; 16]);

/// One listed item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncItem {
    pub created_ms: i64,
    pub id: [u8; 16],
    pub hash: [u8; 32],
}

/// A message to queue again for a peer (reconciliation found it lacks it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requeue {
    pub message_id: String,
    /// A new chain of custody to send the message with to this peer (this
    /// node's own record appended, when it never forwarded the message
    /// before): kept with the peer's outbox entry (`OutboxItem::hops`), the
    /// stored message is not rewritten, unless `replaces_stored`.
    pub hops: Option<Vec<u8>>,
    /// With this path (the nodes before this one), the chain also replaces
    /// the stored message's chain and path (a message held at its hop limit
    /// that came again over a shorter path: the shorter way is the one it is
    /// held with from now on).
    pub replaces_stored: Option<Vec<Hop>>,
}

/// Result of storing one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Newly stored at this cursor.
    New(u64),
    /// Already held: nothing written.
    Duplicate,
}

/// A stored message.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub cursor: u64,
    pub message_id: String,
    pub origin: String,
    pub kind: i32,
    pub tlp: i32,
    pub created_ms: i64,
    pub received_ms: i64,
    pub from_peer: Option<String>,
    pub path: Vec<Hop>,
    pub header: Vec<u8>,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
    pub superseded_by: Option<String>,
    pub acknowledged_ms: Option<i64>,
    pub readable: bool,
    pub plain: Option<Vec<u8>>,
    pub request_id: Option<String>,
    pub hops: Option<Vec<u8>>,
}

impl StoredMessage {
    /// The readable payload: the decrypted one if the envelope was encrypted.
    pub fn body(&self) -> &[u8] {
        self.plain.as_deref().unwrap_or(&self.payload)
    }

    /// Whether it was signed as exercise traffic (the envelope header's
    /// flag; an undecodable header counts as exercise, so it is never shown
    /// as real).
    pub fn is_exercise(&self) -> bool {
        use prost::Message as _;
        crate::proto::v1::EnvelopeHeader::decode(self.header.as_slice())
            .map_or(true, |h| h.exercise)
    }
}

/// An outbox entry with the envelope parts to send.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub cursor: u64,
    pub enqueued_ms: i64,
    /// How many times the peer deferred it so far (for the retry backoff).
    pub deferrals: u32,
    /// Serialized `HopChain` to send along.
    pub hops: Vec<u8>,
    pub header: Vec<u8>,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

/// The outcome a peer gave for one outbox entry.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub cursor: u64,
    pub state: DeliveryState,
    pub reason: String,
}

/// A peer's temporary refusal of one outbox entry: keep it, retry later.
#[derive(Debug, Clone)]
pub struct Deferral {
    pub cursor: u64,
    pub reason: String,
    /// Not offered again before this time.
    pub next_attempt_ms: i64,
}

/// Per-peer delivery state of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub peer: String,
    pub state: i32,
    pub reason: String,
    pub attempts: u32,
    pub updated_ms: i64,
    /// For a deferred entry: when it is offered again.
    pub next_attempt_ms: Option<i64>,
}

/// An envelope this node refused, for the audit table.
#[derive(Debug, Clone)]
pub struct RejectionRow {
    pub from_peer: String,
    pub message_id: String,
    pub reason: String,
}

/// A client-chosen request id (AIP-155 `request_id`) and what the action it
/// names did: kept so that a retry returns the original result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// The request id, in canonical form (lower-case hyphenated UUID).
    pub request_id: String,
    /// Digest of the operation and its request body: a retry must match it.
    pub fingerprint: Vec<u8>,
    /// Id of the message the action signs, chosen before it is signed.
    pub message_id: String,
    /// The encoded answer, once the action succeeded (`None`: claimed, not
    /// yet known to have finished).
    pub response: Option<Vec<u8>>,
    /// When it was claimed (unix ms).
    pub created_ms: i64,
}

/// Result of claiming a request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// New: recorded (durably) as given.
    Claimed,
    /// Already held, within its window: the record as stored.
    Held(RequestRecord),
}

/// One version of the federation roster this node accepted (its chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterRow {
    pub version: u64,
    /// The serialized SignedRoster, as accepted.
    pub bytes: Vec<u8>,
    /// When this node accepted it (unix ms).
    pub accepted_ms: i64,
}

/// Filters of alert listings; empty vectors and `None` do not filter.
#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    pub min_severity: i32,
    pub tlps: Vec<i32>,
    pub sectors_mask: i64,
    pub origins: Vec<String>,
    pub created_after_ms: Option<i64>,
    pub created_before_ms: Option<i64>,
    pub include_exercise: bool,
}

/// A listing filtered by at most [`BY_ORIGIN`] origins, as one query per
/// origin (each reads that origin's alerts newest first through the
/// `messages_origin` index, stopping at its page); `None` for the others.
pub fn by_origin(q: &AlertQuery) -> Option<Vec<AlertQuery>> {
    let origins: std::collections::BTreeSet<&String> = q.origins.iter().collect();
    (!origins.is_empty() && origins.len() <= BY_ORIGIN).then(|| {
        origins
            .into_iter()
            .map(|o| AlertQuery {
                origins: vec![o.clone()],
                ..q.clone()
            })
            .collect()
    })
}

/// Most origins of a listing read one by one; a filter naming more (as
/// many as a federation has members, and more) walks the alerts once.
pub const BY_ORIGIN: usize = 64;

/// The `limit` newest of the pages read per origin.
pub fn newest(mut all: Vec<StoredMessage>, limit: usize) -> Vec<StoredMessage> {
    all.sort_unstable_by_key(|m| std::cmp::Reverse(m.cursor));
    all.truncate(limit);
    all
}

/// What a node keeps. Every method is a complete unit of work: it either
/// happens entirely or not at all.
#[async_trait::async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Stores messages with dedup by message id, each new one with its outbox
    /// and delivery rows, its receipt facts and the supersede mark it carries,
    /// in one commit. Results are in input order.
    async fn insert(
        &self,
        msgs: Vec<NewMessage>,
        durability: Durability,
    ) -> Result<Vec<Stored>, StoreError>;

    /// Like [`Storage::insert`], but returns as soon as the write is queued,
    /// with a future that resolves when it is committed. Writes are applied
    /// (and given cursors) in the order their `insert_queued` calls returned,
    /// so a caller can keep several batches in flight and still have them
    /// stored in order.
    async fn insert_queued(
        &self,
        msgs: Vec<NewMessage>,
        durability: Durability,
    ) -> Result<Pending<Vec<Stored>>, StoreError>;

    /// Number of stored messages, receipts not counted.
    async fn message_count(&self) -> Result<u64, StoreError>;

    /// Which of `message_ids` are held: one lookup of the message-id index
    /// each, nothing decoded (ingest recognises a duplicate with it before
    /// any signature is checked). Ids not held are left out.
    async fn held(
        &self,
        message_ids: Vec<String>,
    ) -> Result<std::collections::HashSet<String>, StoreError>;

    /// The ids of the messages this node relays as ciphertext (it cannot
    /// read them) whose ciphertext it still keeps (`storage.relay_keep_secs`),
    /// latest arrival first (then latest cursor), at most `limit`: read from
    /// the relayed-ciphertext index alone, nothing decoded.
    async fn relayed_kept(&self, limit: usize) -> Result<Vec<String>, StoreError>;

    /// One message by id.
    async fn get_message(&self, message_id: &str) -> Result<Option<StoredMessage>, StoreError>;

    /// The held messages among `message_ids`, in one read (ids not held are
    /// left out; order unspecified). Reconciliation reads what it queues
    /// with it, a batch at a time, instead of one read per message.
    async fn get_messages(
        &self,
        message_ids: Vec<String>,
    ) -> Result<Vec<StoredMessage>, StoreError>;

    /// Messages stored after `cursor`, oldest first.
    async fn messages_after(
        &self,
        cursor: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError>;

    /// Highest cursor in the store (0 when empty).
    async fn last_cursor(&self) -> Result<u64, StoreError>;

    /// The first message stored at or after `cursor`: its cursor and when
    /// this node received it (unix ms); `None` past the last. One seek of
    /// the primary key ([`cursor_received_by`] bisects with it).
    async fn received_from(&self, cursor: u64) -> Result<Option<(u64, i64)>, StoreError>;

    /// Every readable message of an assistance thread (the request and its
    /// steps), in cursor order.
    async fn thread(&self, request_id: &str) -> Result<Vec<StoredMessage>, StoreError>;

    /// Readable messages of `kind`, newest first, with cursor below `before`
    /// (0: from the newest).
    async fn by_kind(
        &self,
        kind: i32,
        before: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError>;

    /// Readable alerts matching `q`, newest first, with cursor below `before`
    /// (0: from the newest).
    async fn list_alerts(
        &self,
        q: AlertQuery,
        before: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError>;

    /// Up to `limit` outbox entries for `peer` after cursor `after`, in cursor
    /// order, leaving out entries deferred until after `now_ms`.
    async fn outbox(
        &self,
        peer: &str,
        after: u64,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError>;

    /// Up to `limit` deferred outbox entries for `peer` that are due at
    /// `now_ms`, after cursor `after`, in cursor order.
    async fn outbox_due(
        &self,
        peer: &str,
        after: u64,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError>;

    /// The earliest time after `now_ms` at which a deferred entry for `peer`
    /// becomes due, if any.
    async fn outbox_next_due(&self, peer: &str, now_ms: i64) -> Result<Option<i64>, StoreError>;

    /// Records a peer's temporary refusals: the entries stay in its outbox,
    /// not offered again before their `next_attempt_ms`; their delivery state
    /// becomes DEFERRED with the reason. Lazy, like [`Storage::complete_outbox`].
    async fn defer_outbox(
        &self,
        peer: &str,
        deferrals: Vec<Deferral>,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Records a peer's outcomes: removes the entries from its outbox and
    /// updates their delivery state (relayed ciphertext nobody needs any more
    /// is emptied later, by [`Storage::purge`] with
    /// [`PurgePlan::relayed_before_ms`]). Lazy: if lost in a power failure, the entries
    /// are sent again and the peer answers DUPLICATE.
    async fn complete_outbox(
        &self,
        peer: &str,
        outcomes: Vec<Outcome>,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Outbox depth per peer that has queued entries.
    async fn outbox_depths(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// Delivery state of a message per peer.
    async fn delivery(&self, message_id: &str) -> Result<Vec<DeliveryRow>, StoreError>;

    /// Receipts recipients sent for a message this node originated.
    async fn receipts(&self, message_id: &str) -> Result<Vec<ReceiptRow>, StoreError>;

    /// Records refused envelopes for audit (lazy).
    async fn record_rejections(
        &self,
        rows: Vec<RejectionRow>,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// Marks a readable message as seen by an operator; returns the time (the
    /// first one if it was already set), `None` if no such readable message.
    async fn acknowledge(&self, message_id: &str, now_ms: i64) -> Result<Option<i64>, StoreError>;

    /// Claims a client's request id: if a record for `rec.request_id` created
    /// at or after `expired_before_ms` exists, returns it untouched
    /// ([`Claim::Held`]); otherwise stores `rec` durably ([`Claim::Claimed`]).
    /// Records created before `expired_before_ms` are purged in the same unit
    /// of work. Atomic: of two concurrent claims of one id, one is `Claimed`.
    async fn claim_request(
        &self,
        rec: RequestRecord,
        expired_before_ms: i64,
    ) -> Result<Claim, StoreError>;

    /// Records the answer of a claimed request id (lazy: if lost, a retry
    /// finds the claim and looks the message up).
    async fn complete_request(&self, request_id: &str, response: Vec<u8>)
    -> Result<(), StoreError>;

    /// Drops a claim whose action failed before signing anything, so the id
    /// can be used again. A completed record is never dropped.
    async fn release_request(&self, request_id: &str) -> Result<(), StoreError>;
    /// Distinct assistance request ids with at least one readable message
    /// created before `before_ms`: the threads a purge must decide about.
    async fn requests_created_before(&self, before_ms: i64) -> Result<Vec<String>, StoreError>;

    /// Deletes up to `plan.limit` messages older than their cutoff, oldest
    /// first, each with its outbox, delivery and receipt rows, never one of a
    /// thread in `plan.keep_requests`; up to `plan.limit` old rejection
    /// audit rows; and empties up to `plan.limit` relayed ciphertexts
    /// received before `plan.relayed_before_ms` that no outbox holds any
    /// more. One small unit of work: call again until it touches fewer
    /// than `plan.limit` of each. Lazy: if lost in a power failure, the next
    /// pass deletes the rows again.
    async fn purge(&self, plan: PurgePlan) -> Result<Purged, StoreError>;

    /// The disk space the store takes, and how much of it is free for reuse.
    async fn space(&self) -> Result<Space, StoreError>;

    /// Reconciliation sums of every non-empty bucket from the one holding
    /// `from_ms` on, of the items listed under any of `audiences` (each
    /// message counts once per audience it is listed under), in bucket
    /// order. Reads only the sums (one row per audience and bucket).
    async fn sync_buckets(
        &self,
        audiences: &[String],
        from_ms: i64,
    ) -> Result<Vec<SyncBucket>, StoreError>;

    /// Up to `limit` items listed under `audience` with `from <= (created_ms,
    /// id) < to`, in that order (reads the index, not the messages).
    async fn sync_items(
        &self,
        audience: &str,
        from: SyncPos,
        to: SyncPos,
        limit: usize,
    ) -> Result<Vec<SyncItem>, StoreError>;

    /// Of `message_ids`, those whose delivery to `peer` is REJECTED (the
    /// peer refused them for good: signature, policy, payload) with the
    /// refusal recorded at or after `since_ms`. Reconciliation does not
    /// offer them again until the refusal is older.
    async fn refused_by(
        &self,
        peer: &str,
        message_ids: Vec<String>,
        since_ms: i64,
    ) -> Result<Vec<String>, StoreError>;

    /// Queues held messages for `peer` again, as a new message would be
    /// (outbox and delivery rows, QUEUED), offered at once also to a link
    /// already past their cursor: the entry is due now (`outbox_due`). An
    /// entry already queued is made due now. A message not held, or held only
    /// as relayed ciphertext already dropped, is skipped. Returns how many
    /// were queued. Lazy: if lost, the next reconciliation queues them again.
    async fn requeue(
        &self,
        peer: &str,
        items: Vec<Requeue>,
        now_ms: i64,
    ) -> Result<u64, StoreError>;
    /// Messages (readable or not) that belong to one of `incident_ids` or are
    /// one of them, in cursor order, at most `limit`.
    async fn incident_messages(
        &self,
        incident_ids: Vec<String>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError>;

    /// Messages that open an incident (their incident id is their own id),
    /// newest first, with cursor below `before` (0: from the newest).
    async fn incident_openers(
        &self,
        before: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError>;

    /// `(key, message_id)` for every message indexed under one of `keys`
    /// (see [`NewMessage::keys`]), at most `limit`, by key then message id.
    async fn keyed(
        &self,
        keys: Vec<String>,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError>;

    /// `(key, incident_id)`, each pair once, for the messages indexed under one
    /// of `keys` that belong to an incident, at most `limit`, by key then
    /// incident id. The cost follows the incident members under those keys,
    /// not every message that ever carried them.
    async fn keyed_incidents(
        &self,
        keys: Vec<String>,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError>;

    // --- The federation roster chain (issue 14; `service::roster`). ---

    /// Keeps an accepted roster version, durably. Saving the same version
    /// with the same bytes again is a no-op; with other bytes it is refused
    /// ([`StoreError::Invalid`]) and the kept one stays.
    async fn save_roster(&self, row: RosterRow) -> Result<(), StoreError>;

    /// The `limit` latest kept roster versions, newest first.
    async fn rosters(&self, limit: usize) -> Result<Vec<RosterRow>, StoreError>;

    /// Drops everything queued for `peer` (a member the roster removed): its
    /// outbox rows go, their delivery rows become REJECTED with `reason`.
    /// Returns how many were dropped.
    async fn drop_outbox(&self, peer: &str, reason: &str, now_ms: i64) -> Result<u64, StoreError>;

    /// Commits everything queued, then stops accepting work. Later calls fail
    /// with [`StoreError::Closed`].
    async fn close(&self);
}
