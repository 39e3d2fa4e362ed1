//! Message rows: insert with dedup (and the outbox rows for each target peer in
//! the same transaction), lookups, listings, outbox reads and delivery state.
use super::{Store, StoreError};
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde::{Deserialize, Serialize};

/// Delivery state codes (the `DeliveryState` proto enum values).
pub const QUEUED: i32 = 1;
pub const DELIVERED: i32 = 2;
pub const REJECTED: i32 = 3;

/// One hop of the path a message took.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hop {
    pub node: String,
    pub at_ms: i64,
}

/// Receipt facts to record with a receipt message addressed to this node:
/// for each of `ids` that this node (`me`) originated, `from` reported `state`.
#[derive(Debug, Clone)]
pub struct ReceiptRows {
    pub me: String,
    pub from: String,
    pub ids: Vec<String>,
    pub state: i32,
    pub reason: String,
    pub at_ms: i64,
}

/// A recipient's receipt for one message, as kept by the origin.
#[derive(Debug, Clone)]
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
    /// Serialized `HopChain`: the verified chain received, plus this node's own
    /// signed record when it relays the message.
    pub hops: Vec<u8>,
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
}

/// An outbox entry with the envelope parts to send.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub cursor: u64,
    pub enqueued_ms: i64,
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
    pub state: i32,
    pub reason: String,
}

/// Per-peer delivery state of one message.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub peer: String,
    pub state: i32,
    pub reason: String,
    pub attempts: u32,
    pub updated_ms: i64,
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

const MSG_COLS: &str = "cursor, message_id, origin, kind, tlp, created_ms, received_ms, from_peer, path, header, payload, signature, superseded_by, acknowledged_ms, readable, plain, request_id, hops";

fn row_to_msg(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    let path: String = r.get(8)?;
    Ok(StoredMessage {
        cursor: r.get::<_, i64>(0)? as u64,
        message_id: r.get(1)?,
        origin: r.get(2)?,
        kind: r.get(3)?,
        tlp: r.get(4)?,
        created_ms: r.get(5)?,
        received_ms: r.get(6)?,
        from_peer: r.get(7)?,
        path: serde_json::from_str(&path).unwrap_or_default(),
        header: r.get(9)?,
        payload: r.get(10)?,
        signature: r.get(11)?,
        superseded_by: r.get(12)?,
        acknowledged_ms: r.get(13)?,
        readable: r.get(14)?,
        plain: r.get(15)?,
        request_id: r.get(16)?,
        hops: r.get(17)?,
    })
}

/// Inserts messages with dedup, queueing each new one for its targets.
pub fn insert_messages(c: &Connection, msgs: &[NewMessage]) -> Result<Vec<Stored>, StoreError> {
    let mut ins = c.prepare_cached(
        "INSERT OR IGNORE INTO messages (message_id, origin, kind, tlp, severity, sectors, exercise, created_ms, expires_ms, received_ms, from_peer, path, header, payload, signature, readable, plain, request_id, hops)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
    )?;
    let mut out = Vec::with_capacity(msgs.len());
    for m in msgs {
        let path =
            serde_json::to_string(&m.path).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let n = ins.execute(params![
            m.message_id,
            m.origin,
            m.kind,
            m.tlp,
            m.severity,
            m.sectors_mask,
            m.exercise,
            m.created_ms,
            m.expires_ms,
            m.received_ms,
            m.from_peer,
            path,
            m.header,
            m.payload,
            m.signature,
            m.readable,
            m.plain,
            m.request_id,
            m.hops
        ])?;
        if n == 0 {
            out.push(Stored::Duplicate);
            continue;
        }
        let cursor = c.last_insert_rowid();
        if !m.targets.is_empty() {
            let mut ob = c.prepare_cached(
                "INSERT OR IGNORE INTO outbox (peer, cursor, enqueued_ms) VALUES (?1, ?2, ?3)",
            )?;
            let mut dl = c.prepare_cached(
                "INSERT OR REPLACE INTO delivery (message_id, peer, state, reason, attempts, updated_ms) VALUES (?1, ?2, ?3, '', 0, ?4)",
            )?;
            for t in &m.targets {
                ob.execute(params![t, cursor, m.received_ms])?;
                dl.execute(params![m.message_id, t, QUEUED, m.received_ms])?;
            }
        }
        if let Some(r) = &m.receipt {
            // An acknowledgement is never downgraded by a later delivery receipt.
            let mut rc = c.prepare_cached(
                "INSERT INTO receipts (message_id, node, state, reason, at_ms)
                 SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS
                   (SELECT 1 FROM messages WHERE message_id = ?1 AND origin = ?6)
                 ON CONFLICT (message_id, node) DO UPDATE SET
                   state = excluded.state, reason = excluded.reason, at_ms = excluded.at_ms
                 WHERE receipts.state != 2",
            )?;
            for id in &r.ids {
                rc.execute(params![id, r.from, r.state, r.reason, r.at_ms, r.me])?;
            }
        }
        if let Some(old) = &m.supersedes {
            c.prepare_cached(
                "UPDATE messages SET superseded_by = ?1 WHERE message_id = ?2 AND origin = ?3 AND superseded_by IS NULL",
            )?
            .execute(params![m.message_id, old, m.origin])?;
        }
        out.push(Stored::New(cursor as u64));
    }
    Ok(out)
}

impl Store {
    /// Stores messages (one durable commit shared with other writers).
    pub async fn insert(&self, msgs: Vec<NewMessage>) -> Result<Vec<Stored>, StoreError> {
        self.write(move |c| insert_messages(c, &msgs)).await
    }

    /// Stores messages whose loss in a power failure is harmless (receipts,
    /// which are best-effort): committed without an fsync of their own.
    pub async fn insert_lazy(&self, msgs: Vec<NewMessage>) -> Result<Vec<Stored>, StoreError> {
        self.write_lazy(move |c| insert_messages(c, &msgs)).await
    }

    /// Number of stored messages, receipts not counted.
    pub async fn message_count(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM messages WHERE kind != ?1",
                [crate::proto::v1::MessageKind::Receipt as i32],
                |r| r.get::<_, i64>(0),
            )? as u64)
        })
        .await
    }

    pub async fn get_message(
        &self,
        message_id: String,
    ) -> Result<Option<StoredMessage>, StoreError> {
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {MSG_COLS} FROM messages WHERE message_id = ?1"),
                [&message_id],
                row_to_msg,
            )
            .optional()?)
        })
        .await
    }

    /// Messages stored after `cursor`, oldest first.
    pub async fn messages_after(
        &self,
        cursor: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {MSG_COLS} FROM messages WHERE cursor > ?1 ORDER BY cursor LIMIT ?2"
            ))?;
            let rows = st.query_map(params![cursor as i64, limit as i64], row_to_msg)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Every readable message of an assistance thread (the request and its steps).
    pub async fn thread(&self, request_id: String) -> Result<Vec<StoredMessage>, StoreError> {
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {MSG_COLS} FROM messages WHERE request_id = ?1 AND readable = 1 ORDER BY cursor"
            ))?;
            let rows = st.query_map([request_id], row_to_msg)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Readable assistance requests, newest first, with cursor below `before`
    /// (0: from the newest).
    pub async fn requests(
        &self,
        kind: i32,
        before: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {MSG_COLS} FROM messages WHERE kind = ?1 AND readable = 1 AND (?2 = 0 OR cursor < ?2)
                 ORDER BY cursor DESC LIMIT ?3"
            ))?;
            let rows = st.query_map(params![kind, before as i64, limit as i64], row_to_msg)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Highest cursor in the store (0 when empty).
    pub async fn last_cursor(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            Ok(
                c.query_row("SELECT COALESCE(MAX(cursor), 0) FROM messages", [], |r| {
                    r.get::<_, i64>(0)
                })? as u64,
            )
        })
        .await
    }

    /// Alerts matching `q`, newest first, with cursor below `before` (0: from the newest).
    pub async fn list_alerts(
        &self,
        kind: i32,
        q: AlertQuery,
        before: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.read(move |c| {
            let mut sql =
                format!("SELECT {MSG_COLS} FROM messages WHERE kind = ? AND readable = 1");
            let mut args: Vec<rusqlite::types::Value> = vec![kind.into()];
            if before > 0 {
                sql.push_str(" AND cursor < ?");
                args.push((before as i64).into());
            }
            if q.min_severity > 0 {
                sql.push_str(" AND severity >= ?");
                args.push(q.min_severity.into());
            }
            if !q.tlps.is_empty() {
                sql.push_str(&format!(
                    " AND tlp IN ({})",
                    vec!["?"; q.tlps.len()].join(",")
                ));
                args.extend(q.tlps.iter().map(|t| (*t).into()));
            }
            if q.sectors_mask != 0 {
                sql.push_str(" AND (sectors & ?) != 0");
                args.push(q.sectors_mask.into());
            }
            if !q.origins.is_empty() {
                sql.push_str(&format!(
                    " AND origin IN ({})",
                    vec!["?"; q.origins.len()].join(",")
                ));
                args.extend(q.origins.iter().map(|o| o.clone().into()));
            }
            if let Some(a) = q.created_after_ms {
                sql.push_str(" AND created_ms >= ?");
                args.push(a.into());
            }
            if let Some(b) = q.created_before_ms {
                sql.push_str(" AND created_ms < ?");
                args.push(b.into());
            }
            if !q.include_exercise {
                sql.push_str(" AND exercise = 0");
            }
            sql.push_str(" ORDER BY cursor DESC LIMIT ?");
            args.push((limit as i64).into());
            let mut st = c.prepare(&sql)?;
            let rows = st.query_map(params_from_iter(args), row_to_msg)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Up to `limit` outbox entries for `peer` after `after` (cursor order).
    pub async fn outbox(
        &self,
        peer: String,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT o.cursor, o.enqueued_ms, m.header, m.payload, m.signature, COALESCE(m.hops, x'')
                 FROM outbox o JOIN messages m ON m.cursor = o.cursor
                 WHERE o.peer = ?1 AND o.cursor > ?2 ORDER BY o.cursor LIMIT ?3",
            )?;
            let rows = st.query_map(params![peer, after as i64, limit as i64], |r| {
                Ok(OutboxItem {
                    cursor: r.get::<_, i64>(0)? as u64,
                    enqueued_ms: r.get(1)?,
                    header: r.get(2)?,
                    payload: r.get(3)?,
                    signature: r.get(4)?,
                    hops: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Records the peer's outcomes: removes the entries from the outbox and
    /// updates delivery state, in one lazy commit: if it is lost in a power
    /// failure, the entries are sent again and the peer answers DUPLICATE.
    pub async fn complete_outbox(
        &self,
        peer: String,
        outcomes: Vec<Outcome>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.write_lazy(move |c| {
            let mut del = c.prepare_cached("DELETE FROM outbox WHERE peer = ?1 AND cursor = ?2")?;
            let mut upd = c.prepare_cached(
                "UPDATE delivery SET state = ?1, reason = ?2, attempts = attempts + 1, updated_ms = ?3
                 WHERE peer = ?4 AND message_id = (SELECT message_id FROM messages WHERE cursor = ?5)",
            )?;
            for o in &outcomes {
                del.execute(params![peer, o.cursor as i64])?;
                upd.execute(params![o.state, o.reason, now_ms, peer, o.cursor as i64])?;
            }
            // A relay keeps only ciphertext of what it cannot read, and only
            // until every peer it was queued for has acknowledged it.
            let mut purge = c.prepare_cached(
                "UPDATE messages SET payload = x'' WHERE cursor = ?1 AND readable = 0
                 AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.cursor = ?1)",
            )?;
            for o in &outcomes {
                purge.execute(params![o.cursor as i64])?;
            }
            Ok(())
        })
        .await
    }

    /// Outbox depth per peer.
    pub async fn outbox_depths(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached("SELECT peer, COUNT(*) FROM outbox GROUP BY peer")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Delivery state of a message per peer.
    pub async fn delivery(&self, message_id: String) -> Result<Vec<DeliveryRow>, StoreError> {
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT peer, state, reason, attempts, updated_ms FROM delivery WHERE message_id = ?1 ORDER BY peer",
            )?;
            let rows = st.query_map([message_id], |r| {
                Ok(DeliveryRow {
                    peer: r.get(0)?,
                    state: r.get(1)?,
                    reason: r.get(2)?,
                    attempts: r.get(3)?,
                    updated_ms: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Receipts recipients sent for a message this node originated.
    pub async fn receipts(&self, message_id: String) -> Result<Vec<ReceiptRow>, StoreError> {
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT node, state, reason, at_ms FROM receipts WHERE message_id = ?1 ORDER BY node",
            )?;
            let rows = st.query_map([message_id], |r| {
                Ok(ReceiptRow {
                    node: r.get(0)?,
                    state: r.get(1)?,
                    reason: r.get(2)?,
                    at_ms: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Records refused envelopes for audit.
    pub async fn record_rejections(
        &self,
        rows: Vec<(String, String, String)>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.write_lazy(move |c| {
            let mut st = c.prepare_cached(
                "INSERT INTO rejections (at_ms, from_peer, message_id, reason) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (peer, id, reason) in &rows {
                st.execute(params![now_ms, peer, id, reason])?;
            }
            Ok(())
        })
        .await
    }

    /// Marks a message as seen by an operator; returns the time (the first one if already set).
    pub async fn acknowledge(
        &self,
        message_id: String,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        self.write(move |c| {
            c.execute(
                "UPDATE messages SET acknowledged_ms = COALESCE(acknowledged_ms, ?1) WHERE message_id = ?2 AND readable = 1",
                params![now_ms, message_id],
            )?;
            Ok(c.query_row(
                "SELECT acknowledged_ms FROM messages WHERE message_id = ?1 AND readable = 1",
                [message_id],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
        })
        .await
    }
}
