//! The SQL of the SQLite backend, one function per unit of work, each run on
//! the connection the backend hands it (the writer's transaction or a read
//! snapshot). Message rows are inserted with dedup (and the outbox rows for each
//! target peer in the same transaction); a path that does not decode is an
//! error, never silently empty.
//!
//! Supersede marks do not depend on arrival order: an update whose original
//! is not held yet is remembered in `pending_supersede` and applied when the
//! original arrives; of several updates, the latest (creation time, then
//! message id) wins.
use crate::proto::v1::{DeliveryState, MessageKind};
use crate::storage::{
    AlertQuery, Claim, Deferral, DeliveryRow, NewMessage, OutboxItem, Outcome, PARKED_REASON,
    PurgePlan, Purged, ReceiptRow, RejectionRow, RequestRecord, Requeue, RosterRow, SYNC_BUCKET_MS,
    StoreError, Stored, StoredMessage, SyncBucket, SyncEntry, SyncItem, SyncPos,
};
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use std::collections::{BTreeMap, BTreeSet};

// The kinds left out of the partial index `messages_kind` (schema 15, which
// names them by number).
const _: () = assert!(MessageKind::Alert as i32 == 1 && MessageKind::Receipt as i32 == 6);

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
        path: serde_json::from_str(&path).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(8, rusqlite::types::Type::Text, Box::new(e))
        })?,
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
        "INSERT OR IGNORE INTO messages (message_id, origin, kind, tlp, severity, sectors, exercise, created_ms, expires_ms, received_ms, from_peer, path, header, payload, signature, readable, plain, request_id, hops, incident_id, sync_audiences)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
    )?;
    let mut out = Vec::with_capacity(msgs.len());
    let mut deltas = BucketDeltas::default();
    let mut counts = KindCounts::default();
    // Updates that overtook their original are rare: look for them only when
    // some are waiting.
    let mut any_pending = c
        .prepare_cached("SELECT 1 FROM pending_supersede LIMIT 1")?
        .exists([])?;
    for m in msgs {
        let path = serde_json::to_string(&m.path)
            .map_err(|e| StoreError::Invalid(format!("storage: cannot encode a path: {e}")))?;
        // Where the purge finds its reconciliation items (see `sync_remove`).
        let audiences = match &m.sync {
            Some(sync) => Some(serde_json::to_string(&sync.audiences).map_err(|e| {
                StoreError::Invalid(format!("storage: cannot encode audiences: {e}"))
            })?),
            None => None,
        };
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
            m.hops,
            m.incident_id,
            audiences
        ])?;
        if n == 0 {
            out.push(Stored::Duplicate);
            continue;
        }
        let cursor = c.last_insert_rowid();
        *counts.0.entry(m.kind).or_default() += 1;
        if let Some(sync) = &m.sync {
            sync_add(c, cursor, m.created_ms, sync, &mut deltas)?;
        }
        if !m.keys.is_empty() {
            let mut k = c.prepare_cached(
                "INSERT OR IGNORE INTO message_keys (key, message_id) VALUES (?1, ?2)",
            )?;
            for key in &m.keys {
                k.execute(params![key, m.message_id])?;
            }
        }
        if !m.targets.is_empty() {
            let mut ob = c.prepare_cached(
                "INSERT OR IGNORE INTO outbox (peer, cursor, enqueued_ms) VALUES (?1, ?2, ?3)",
            )?;
            let mut dl = c.prepare_cached(
                "INSERT OR REPLACE INTO delivery (message_id, peer, state, reason, attempts, updated_ms) VALUES (?1, ?2, ?3, '', 0, ?4)",
            )?;
            for t in &m.targets {
                ob.execute(params![t, cursor, m.received_ms])?;
                dl.execute(params![
                    m.message_id,
                    t,
                    DeliveryState::Queued as i32,
                    m.received_ms
                ])?;
            }
        }
        if !m.parked.is_empty() {
            let mut ob = c.prepare_cached(
                "INSERT OR IGNORE INTO outbox (peer, cursor, enqueued_ms, not_before_ms) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut dl = c.prepare_cached(
                "INSERT OR REPLACE INTO delivery (message_id, peer, state, reason, attempts, updated_ms) VALUES (?1, ?2, ?3, ?4, 0, ?5)",
            )?;
            for t in &m.parked {
                ob.execute(params![t, cursor, m.received_ms, m.park_until_ms.max(1)])?;
                dl.execute(params![
                    m.message_id,
                    t,
                    DeliveryState::Queued as i32,
                    PARKED_REASON,
                    m.received_ms
                ])?;
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
            any_pending |= supersede(c, m, old)?;
        }
        // An update of this message may have arrived before it.
        let waiting: Option<String> = if any_pending {
            c.prepare_cached(
                "SELECT by_id FROM pending_supersede WHERE original = ?1 AND origin = ?2
                   AND EXISTS (SELECT 1 FROM messages u
                               WHERE u.message_id = pending_supersede.by_id AND u.exercise = ?3)
                 ORDER BY created_ms DESC, by_id DESC LIMIT 1",
            )?
            .query_row(params![m.message_id, m.origin, m.exercise], |r| r.get(0))
            .optional()?
        } else {
            None
        };
        if let Some(by) = waiting {
            c.prepare_cached("UPDATE messages SET superseded_by = ?1 WHERE cursor = ?2")?
                .execute(params![by, cursor])?;
            c.prepare_cached("DELETE FROM pending_supersede WHERE original = ?1")?
                .execute([&m.message_id])?;
        }
        out.push(Stored::New(cursor as u64));
    }
    deltas.apply(c)?;
    counts.apply(c)?;
    Ok(out)
}

/// Messages added (or, negative, removed) per kind over one write, applied
/// to `message_counts` once per kind at its end.
#[derive(Default)]
struct KindCounts(BTreeMap<i32, i64>);

impl KindCounts {
    fn apply(self, c: &Connection) -> Result<(), StoreError> {
        let mut st = c.prepare_cached(
            "INSERT INTO message_counts (kind, n) VALUES (?1, ?2)
             ON CONFLICT (kind) DO UPDATE SET n = n + excluded.n",
        )?;
        for (kind, n) in self.0 {
            if n != 0 {
                st.execute(params![kind, n])?;
            }
        }
        Ok(())
    }
}

/// Marks `old` (if held, issued by the same origin, and exercise exactly when
/// `m` is: `domain::exercise`) as superseded by the
/// new message `m`, unless a later update already superseded it; if `old` is
/// not held yet, remembers the mark for when it arrives (and returns true).
fn supersede(c: &Connection, m: &NewMessage, old: &str) -> Result<bool, StoreError> {
    let held = c
        .prepare_cached("SELECT 1 FROM messages WHERE message_id = ?1")?
        .exists([old])?;
    if held {
        c.prepare_cached(
            "UPDATE messages SET superseded_by = ?1
             WHERE message_id = ?2 AND origin = ?3 AND exercise = ?5
               AND (superseded_by IS NULL OR NOT EXISTS (
                   SELECT 1 FROM messages s WHERE s.message_id = messages.superseded_by
                   AND (s.created_ms, s.message_id) > (?4, ?1)))",
        )?
        .execute(params![
            m.message_id,
            old,
            m.origin,
            m.created_ms,
            m.exercise
        ])?;
    } else {
        c.prepare_cached(
            "INSERT OR IGNORE INTO pending_supersede (original, origin, by_id, created_ms)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![old, m.origin, m.message_id, m.created_ms])?;
    }
    Ok(!held)
}

/// Number of stored messages, receipts not counted.
pub fn message_count(c: &Connection) -> Result<u64, StoreError> {
    Ok(
        c.prepare_cached("SELECT COALESCE(SUM(n), 0) FROM message_counts WHERE kind != ?1")?
            .query_row([MessageKind::Receipt as i32], |r| r.get::<_, i64>(0))?
            .max(0) as u64,
    )
}

/// The ids of `ids` that are stored (one lookup of the unique index each,
/// all in one read transaction: outside one, each lookup would take and
/// release the database's read lock on its own — two `fcntl` calls and a
/// read of the log's index header per id).
pub fn held(
    c: &Connection,
    ids: Vec<String>,
) -> Result<std::collections::HashSet<String>, StoreError> {
    let tx = (ids.len() > 1)
        .then(|| c.unchecked_transaction())
        .transpose()?;
    let mut st = c.prepare_cached("SELECT 1 FROM messages WHERE message_id = ?1")?;
    let mut out = std::collections::HashSet::new();
    for id in ids {
        if st.exists([&id])? {
            out.insert(id);
        }
    }
    if let Some(tx) = tx {
        // Read only: nothing to commit, the snapshot is let go.
        tx.rollback()?;
    }
    Ok(out)
}

/// The relayed ciphertext still kept (the partial index `messages_relayed`),
/// latest arrival first.
pub fn relayed_kept(c: &Connection, limit: usize) -> Result<Vec<String>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT message_id FROM messages INDEXED BY messages_relayed
         WHERE readable = 0 AND payload != x''
         ORDER BY received_ms DESC, cursor DESC LIMIT ?1",
    )?;
    let rows = st.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<String>, _>>()?)
}

pub fn get_message(c: &Connection, message_id: &str) -> Result<Option<StoredMessage>, StoreError> {
    Ok(c.prepare_cached(&format!(
        "SELECT {MSG_COLS} FROM messages WHERE message_id = ?1"
    ))?
    .query_row([message_id], row_to_msg)
    .optional()?)
}

/// The held messages among `ids` (one lookup of the message-id index each).
pub fn get_messages(c: &Connection, ids: &[String]) -> Result<Vec<StoredMessage>, StoreError> {
    let ids = serde_json::to_string(ids)
        .map_err(|e| StoreError::Invalid(format!("storage: cannot encode ids: {e}")))?;
    let mut st = c.prepare_cached(&format!(
        "SELECT {MSG_COLS} FROM messages
         WHERE message_id IN (SELECT value FROM json_each(?1))"
    ))?;
    let rows = st.query_map([ids], row_to_msg)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Messages stored after `cursor`, oldest first.
pub fn messages_after(
    c: &Connection,
    cursor: u64,
    limit: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {MSG_COLS} FROM messages WHERE cursor > ?1 ORDER BY cursor LIMIT ?2"
    ))?;
    let rows = st.query_map(params![cursor as i64, limit as i64], row_to_msg)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Every readable message of an assistance thread (the request and its steps).
pub fn thread(c: &Connection, request_id: &str) -> Result<Vec<StoredMessage>, StoreError> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {MSG_COLS} FROM messages WHERE request_id = ?1 AND readable = 1 ORDER BY cursor"
    ))?;
    let rows = st.query_map([request_id], row_to_msg)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The query of [`by_kind`]: kinds other than alerts and receipts name the
/// condition of the partial index `messages_kind` (the planner uses a
/// partial index only for a query that repeats its condition), which reads
/// them in cursor order; alerts and receipts are read by cursor alone.
pub(super) fn by_kind_sql(kind: i32) -> String {
    let indexed = if kind == MessageKind::Alert as i32 || kind == MessageKind::Receipt as i32 {
        ""
    } else {
        " AND kind NOT IN (1, 6)"
    };
    format!(
        "SELECT {MSG_COLS} FROM messages WHERE kind = ?1{indexed} AND readable = 1 AND (?2 = 0 OR cursor < ?2)
         ORDER BY cursor DESC LIMIT ?3"
    )
}

/// Readable messages of `kind`, newest first, with cursor below `before` (0: from the newest).
pub fn by_kind(
    c: &Connection,
    kind: i32,
    before: u64,
    limit: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let mut st = c.prepare_cached(&by_kind_sql(kind))?;
    let rows = st.query_map(params![kind, before as i64, limit as i64], row_to_msg)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The first message at or after `cursor`: its cursor and receipt time.
pub fn received_from(c: &Connection, cursor: u64) -> Result<Option<(u64, i64)>, StoreError> {
    Ok(c.prepare_cached(
        "SELECT cursor, received_ms FROM messages WHERE cursor >= ?1 ORDER BY cursor LIMIT 1",
    )?
    .query_row([i64::try_from(cursor).unwrap_or(i64::MAX)], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
    })
    .optional()?)
}

/// Highest cursor in the store (0 when empty).
pub fn last_cursor(c: &Connection) -> Result<u64, StoreError> {
    Ok(
        c.prepare_cached("SELECT COALESCE(MAX(cursor), 0) FROM messages")?
            .query_row([], |r| r.get::<_, i64>(0))? as u64,
    )
}

/// Readable alerts matching `q`, newest first, with cursor below `before` (0: from the newest).
pub fn list_alerts(
    c: &Connection,
    q: &AlertQuery,
    before: u64,
    limit: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let run = |q: &AlertQuery| -> Result<Vec<StoredMessage>, StoreError> {
        let (sql, args) = list_alerts_sql(q, before, limit);
        let mut st = c.prepare(&sql)?;
        let rows = st.query_map(params_from_iter(args), row_to_msg)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    };
    match crate::storage::by_origin(q) {
        Some(each) => {
            let mut out = Vec::new();
            for q in each {
                out.extend(run(&q)?);
            }
            Ok(crate::storage::newest(out, limit))
        }
        None => run(q),
    }
}

/// The query of [`list_alerts`] and its arguments: it walks cursors
/// backwards and stops at `limit` matches, whatever the filters (no index on
/// kind or TLP serves it: through one, every listing read and sorted all the
/// alerts it covered); for one origin, that origin's alerts only
/// (`messages_origin`, in cursor order).
pub(super) fn list_alerts_sql(
    q: &AlertQuery,
    before: u64,
    limit: usize,
) -> (String, Vec<rusqlite::types::Value>) {
    let (mut sql, mut args): (String, Vec<rusqlite::types::Value>) = match q.origins.as_slice() {
        // One origin: its alerts through `messages_origin` (a partial index
        // of alerts, which the literal kind lets the planner use).
        [origin] => (
            format!(
                "SELECT {MSG_COLS} FROM messages WHERE kind = 1 AND origin = ? AND readable = 1"
            ),
            vec![origin.clone().into()],
        ),
        _ => (
            format!("SELECT {MSG_COLS} FROM messages WHERE kind = ? AND readable = 1"),
            vec![(MessageKind::Alert as i32).into()],
        ),
    };
    if before > 0 {
        sql.push_str(" AND cursor < ?");
        args.push((before as i64).into());
    }
    if q.min_severity > 0 {
        sql.push_str(" AND severity >= ?");
        args.push(q.min_severity.into());
    }
    if !q.tlps.is_empty() {
        // `+tlp`: not through the purge's (tlp, created) index, which would
        // read and sort every message of those TLPs.
        sql.push_str(&format!(
            " AND +tlp IN ({})",
            vec!["?"; q.tlps.len()].join(",")
        ));
        args.extend(q.tlps.iter().map(|t| (*t).into()));
    }
    if q.sectors_mask != 0 {
        sql.push_str(" AND (sectors & ?) != 0");
        args.push(q.sectors_mask.into());
    }
    if q.origins.len() > 1 {
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
    (sql, args)
}

const OUTBOX_COLS: &str = "o.cursor, o.enqueued_ms, o.deferrals, m.header, m.payload, m.signature, COALESCE(o.hops, m.hops, x'')";

fn row_to_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxItem> {
    Ok(OutboxItem {
        cursor: r.get::<_, i64>(0)? as u64,
        enqueued_ms: r.get(1)?,
        deferrals: r.get(2)?,
        header: r.get(3)?,
        payload: r.get(4)?,
        signature: r.get(5)?,
        hops: r.get(6)?,
    })
}

/// Up to `limit` outbox entries for `peer` after `after` (cursor order),
/// leaving out those deferred beyond `now_ms`.
pub fn outbox(
    c: &Connection,
    peer: &str,
    after: u64,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<OutboxItem>, StoreError> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {OUTBOX_COLS}
         FROM outbox o JOIN messages m ON m.cursor = o.cursor
         WHERE o.peer = ?1 AND o.cursor > ?2 AND o.not_before_ms <= ?3
         ORDER BY o.cursor LIMIT ?4"
    ))?;
    let rows = st.query_map(
        params![peer, after as i64, now_ms, limit as i64],
        row_to_item,
    )?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Deferred outbox entries for `peer` due at `now_ms`, after `after`.
pub fn outbox_due(
    c: &Connection,
    peer: &str,
    after: u64,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<OutboxItem>, StoreError> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {OUTBOX_COLS}
         FROM outbox o JOIN messages m ON m.cursor = o.cursor
         WHERE o.peer = ?1 AND o.not_before_ms > 0 AND o.not_before_ms <= ?3 AND o.cursor > ?2
         ORDER BY o.cursor LIMIT ?4"
    ))?;
    let rows = st.query_map(
        params![peer, after as i64, now_ms, limit as i64],
        row_to_item,
    )?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// [`outbox_next_due`]'s statement: the literal `not_before_ms > 0` lets the
/// partial index `outbox_deferred` serve it under the planner stability
/// guarantee (see the module docs of `sqlite`).
pub(super) const OUTBOX_NEXT_DUE: &str = "SELECT MIN(not_before_ms) FROM outbox
         WHERE peer = ?1 AND not_before_ms > 0 AND not_before_ms > ?2";

/// The earliest time after `now_ms` at which a deferred entry becomes due.
pub fn outbox_next_due(c: &Connection, peer: &str, now_ms: i64) -> Result<Option<i64>, StoreError> {
    Ok(c.prepare_cached(OUTBOX_NEXT_DUE)?
        .query_row(params![peer, now_ms], |r| r.get(0))?)
}

/// Keeps deferred entries, not to be offered before their next attempt.
pub fn defer_outbox(
    c: &Connection,
    peer: &str,
    deferrals: &[Deferral],
    now_ms: i64,
) -> Result<(), StoreError> {
    let mut ob = c.prepare_cached(
        "UPDATE outbox SET not_before_ms = ?1, deferrals = deferrals + 1
         WHERE peer = ?2 AND cursor = ?3",
    )?;
    let mut dl = c.prepare_cached(
        "UPDATE delivery SET state = ?1, reason = ?2, attempts = attempts + 1, updated_ms = ?3,
             next_attempt_ms = ?4
         WHERE peer = ?5 AND message_id = (SELECT message_id FROM messages WHERE cursor = ?6)",
    )?;
    for d in deferrals {
        // Never 0: that would read as "not deferred".
        let next = d.next_attempt_ms.max(1);
        ob.execute(params![next, peer, d.cursor as i64])?;
        dl.execute(params![
            DeliveryState::Deferred as i32,
            d.reason,
            now_ms,
            next,
            peer,
            d.cursor as i64
        ])?;
    }
    Ok(())
}

/// Removes acknowledged entries from `peer`'s outbox and records their
/// delivery state.
pub fn complete_outbox(
    c: &Connection,
    peer: &str,
    outcomes: &[Outcome],
    now_ms: i64,
) -> Result<(), StoreError> {
    let mut del = c.prepare_cached("DELETE FROM outbox WHERE peer = ?1 AND cursor = ?2")?;
    let mut upd = c.prepare_cached(
        "UPDATE delivery SET state = ?1, reason = ?2, attempts = attempts + 1, updated_ms = ?3,
             next_attempt_ms = NULL
         WHERE peer = ?4 AND message_id = (SELECT message_id FROM messages WHERE cursor = ?5)",
    )?;
    for o in outcomes {
        del.execute(params![peer, o.cursor as i64])?;
        upd.execute(params![
            o.state as i32,
            o.reason,
            now_ms,
            peer,
            o.cursor as i64
        ])?;
    }
    // (Relayed ciphertext nobody needs any more is emptied by `purge`, a
    // while later: a relay answers requests for a shorter copy with it.)
    Ok(())
}

/// Outbox depth per peer.
pub fn outbox_depths(c: &Connection) -> Result<Vec<(String, u64)>, StoreError> {
    let mut st = c.prepare_cached("SELECT peer, COUNT(*) FROM outbox GROUP BY peer")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Delivery state of a message per peer.
pub fn delivery(c: &Connection, message_id: &str) -> Result<Vec<DeliveryRow>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT peer, state, reason, attempts, updated_ms, next_attempt_ms FROM delivery WHERE message_id = ?1 ORDER BY peer",
    )?;
    let rows = st.query_map([message_id], |r| {
        Ok(DeliveryRow {
            peer: r.get(0)?,
            state: r.get(1)?,
            reason: r.get(2)?,
            attempts: r.get(3)?,
            updated_ms: r.get(4)?,
            next_attempt_ms: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Receipts recipients sent for a message this node originated.
pub fn receipts(c: &Connection, message_id: &str) -> Result<Vec<ReceiptRow>, StoreError> {
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
}

/// Records refused envelopes for audit.
pub fn record_rejections(
    c: &Connection,
    rows: &[RejectionRow],
    now_ms: i64,
) -> Result<(), StoreError> {
    let mut st = c.prepare_cached(
        "INSERT INTO rejections (at_ms, from_peer, message_id, reason) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for r in rows {
        st.execute(params![now_ms, r.from_peer, r.message_id, r.reason])?;
    }
    Ok(())
}

/// Marks a message as seen by an operator; returns the time (the first one if already set).
pub fn acknowledge(
    c: &Connection,
    message_id: &str,
    now_ms: i64,
) -> Result<Option<i64>, StoreError> {
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
}

/// Purges expired request ids, then returns the live record for `rec`'s id or
/// inserts `rec`.
pub fn claim_request(
    c: &Connection,
    rec: &RequestRecord,
    expired_before_ms: i64,
) -> Result<Claim, StoreError> {
    c.prepare_cached("DELETE FROM request_ids WHERE created_ms < ?1")?
        .execute(params![expired_before_ms])?;
    let held = c
        .prepare_cached(
            "SELECT fingerprint, message_id, response, created_ms FROM request_ids WHERE request_id = ?1",
        )?
        .query_row(params![rec.request_id], |r| {
            Ok(RequestRecord {
                request_id: rec.request_id.clone(),
                fingerprint: r.get(0)?,
                message_id: r.get(1)?,
                response: r.get(2)?,
                created_ms: r.get(3)?,
            })
        })
        .optional()?;
    if let Some(h) = held {
        return Ok(Claim::Held(h));
    }
    c.prepare_cached(
        "INSERT INTO request_ids (request_id, fingerprint, message_id, response, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        rec.request_id,
        rec.fingerprint,
        rec.message_id,
        rec.response,
        rec.created_ms
    ])?;
    Ok(Claim::Claimed)
}

/// Records the answer of a claimed request id.
pub fn complete_request(
    c: &Connection,
    request_id: &str,
    response: &[u8],
) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE request_ids SET response = ?2 WHERE request_id = ?1")?
        .execute(params![request_id, response])?;
    Ok(())
}

/// Drops a claim that has no answer.
pub fn release_request(c: &Connection, request_id: &str) -> Result<(), StoreError> {
    c.prepare_cached("DELETE FROM request_ids WHERE request_id = ?1 AND response IS NULL")?
        .execute(params![request_id])?;
    Ok(())
}

/// Distinct request ids of readable assistance messages created before `before_ms`.
pub fn requests_created_before(c: &Connection, before_ms: i64) -> Result<Vec<String>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT DISTINCT request_id FROM messages
         WHERE request_id IS NOT NULL AND readable = 1 AND created_ms < ?1",
    )?;
    let rows = st.query_map([before_ms], |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Deletes one key row of a purged message: a search of `message_keys`'
/// primary key (a test checks the plan; no index finds keys by message).
pub(super) const KEY_DELETE: &str = "DELETE FROM message_keys WHERE key = ?1 AND message_id = ?2";

/// Column `i` of `r`, a BLOB, read in place.
fn blob<'r>(r: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r [u8], StoreError> {
    r.get_ref(i)?.as_blob().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Blob, Box::new(e))
            .into()
    })
}

/// Deletes up to `plan.limit` messages past their TLP's cutoff (oldest first,
/// never one of a kept thread) with their outbox, delivery, receipt and key rows
/// and the supersede marks they left (no foreign key cascades them: see `open_conn`),
/// and up to `plan.limit` old rejection audit rows. A message's key rows are
/// those `plan.keys_of` gives for its row (no index finds them by message).
pub fn purge(c: &Connection, plan: &PurgePlan) -> Result<Purged, StoreError> {
    let keep = serde_json::to_string(&plan.keep_requests)
        .map_err(|e| StoreError::Invalid(format!("storage: cannot encode a purge plan: {e}")))?;
    let mut victims: Vec<Victim> = Vec::new();
    let mut sel = c.prepare_cached(
        "SELECT cursor, message_id, kind, created_ms, sync_audiences, header, readable,
                coalesce(plain, payload)
         FROM messages
         WHERE tlp = ?1 AND created_ms < ?2
           AND (request_id IS NULL OR request_id NOT IN (SELECT value FROM json_each(?3)))
         ORDER BY created_ms LIMIT ?4",
    )?;
    for (tlp, cutoff) in &plan.cutoffs {
        let room = plan.limit.saturating_sub(victims.len());
        if room == 0 {
            break;
        }
        let mut rows = sel.query(params![tlp, cutoff, keep, room as i64])?;
        while let Some(r) = rows.next()? {
            let keys_of = plan.key_finder()?;
            let kind: i32 = r.get(2)?;
            let readable: bool = r.get(6)?;
            // The body is read in place (a message's payload can be large).
            let body = if readable { Some(blob(r, 7)?) } else { None };
            victims.push(Victim {
                cursor: r.get(0)?,
                id: r.get(1)?,
                kind,
                created_ms: r.get(3)?,
                audiences: r.get(4)?,
                keys: keys_of(kind, blob(r, 5)?, body),
            });
        }
    }
    if !victims.is_empty() {
        // The peers with an outbox, found by seeking the primary key (cheap
        // even with millions of queued rows).
        let peers = distinct_first_column(
            c,
            "SELECT peer FROM outbox WHERE peer > ?1 ORDER BY peer LIMIT 1",
        )?;
        let mut ob = c.prepare_cached("DELETE FROM outbox WHERE peer = ?1 AND cursor = ?2")?;
        let mut dl = c.prepare_cached("DELETE FROM delivery WHERE message_id = ?1")?;
        let mut rc = c.prepare_cached("DELETE FROM receipts WHERE message_id = ?1")?;
        let mut msg = c.prepare_cached("DELETE FROM messages WHERE cursor = ?1")?;
        let mut keys = c.prepare_cached(KEY_DELETE)?;
        // Supersede marks this message left for an original not yet held.
        let mut marks = c.prepare_cached("DELETE FROM pending_supersede WHERE by_id = ?1")?;
        let mut deltas = BucketDeltas::default();
        let mut counts = KindCounts::default();
        let mut legacy = LegacyItems::default();
        for v in &victims {
            let (cursor, id) = (&v.cursor, &v.id);
            *counts.0.entry(v.kind).or_default() -= 1;
            sync_remove(c, v, &mut legacy, &mut deltas)?;
            for p in &peers {
                ob.execute(params![p, cursor])?;
            }
            dl.execute([id])?;
            rc.execute([id])?;
            for key in &v.keys {
                keys.execute(params![key, id])?;
            }
            marks.execute([id])?;
            msg.execute([cursor])?;
        }
        deltas.apply(c)?;
        counts.apply(c)?;
    }
    let rejections = c
        .prepare_cached(
            "DELETE FROM rejections WHERE id IN
               (SELECT id FROM rejections WHERE at_ms < ?1 ORDER BY id LIMIT ?2)",
        )?
        .execute(params![plan.rejections_before_ms, plan.limit as i64])?;
    // A relay keeps only ciphertext of what it cannot read, and only until
    // every peer it was queued for has it and the grace the plan gives has
    // passed (the partial index `messages_relayed` holds exactly these rows).
    let ciphertexts = c
        .prepare_cached(
            "UPDATE messages SET payload = x'' WHERE cursor IN
               (SELECT cursor FROM messages INDEXED BY messages_relayed
                WHERE readable = 0 AND payload != x'' AND received_ms < ?1
                  AND NOT EXISTS (SELECT 1 FROM outbox WHERE outbox.cursor = messages.cursor)
                ORDER BY received_ms LIMIT ?2)",
        )?
        .execute(params![plan.relayed_before_ms, plan.limit as i64])?;
    Ok(Purged {
        messages: victims.len() as u64,
        rejections: rejections as u64,
        ciphertexts: ciphertexts as u64,
    })
}

/// Keeps an accepted roster version; the same bytes again are a no-op, other
/// bytes under a kept version are refused.
pub fn save_roster(c: &Connection, row: &RosterRow) -> Result<(), StoreError> {
    let version = i64::try_from(row.version)
        .map_err(|_| StoreError::Invalid(format!("roster version {} is too large", row.version)))?;
    c.prepare_cached(
        "INSERT INTO rosters (version, bytes, accepted_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (version) DO NOTHING",
    )?
    .execute(params![version, row.bytes, row.accepted_ms])?;
    let kept: Vec<u8> = c
        .prepare_cached("SELECT bytes FROM rosters WHERE version = ?1")?
        .query_row(params![version], |r| r.get(0))?;
    if kept != row.bytes {
        return Err(StoreError::Invalid(format!(
            "roster version {} is already kept with other bytes; the kept one stays",
            row.version
        )));
    }
    Ok(())
}

/// The reconciliation bucket of a creation time.
fn bucket_of(created_ms: i64) -> i64 {
    created_ms.div_euclid(SYNC_BUCKET_MS)
}

fn lanes_to_sql(b: &SyncBucket) -> [i64; 4] {
    b.lanes.map(|l| l as i64)
}

/// Changes to bucket sums gathered over one write (an insert batch or a
/// purge) and written once per touched bucket at its end: one read and one
/// write per bucket, not per message.
#[derive(Default)]
struct BucketDeltas(BTreeMap<(String, i64), SyncBucket>);

impl BucketDeltas {
    fn add(&mut self, audience: &str, created_ms: i64, hash: &[u8; 32], sign: i64) {
        let bucket = bucket_of(created_ms);
        self.0
            .entry((audience.to_string(), bucket))
            .or_insert(SyncBucket {
                bucket,
                ..SyncBucket::default()
            })
            .add(hash, sign);
    }

    fn apply(self, c: &Connection) -> Result<(), StoreError> {
        for ((audience, bucket), delta) in self.0 {
            bucket_apply(c, &audience, bucket, &delta)?;
        }
        Ok(())
    }
}

/// Adds `delta` (whose count wraps below zero for removals) to the sums of
/// (audience, bucket).
fn bucket_apply(
    c: &Connection,
    audience: &str,
    bucket: i64,
    delta: &SyncBucket,
) -> Result<(), StoreError> {
    let mut cur: SyncBucket = c
        .prepare_cached(
            "SELECT count, l0, l1, l2, l3 FROM sync_buckets WHERE audience = ?1 AND bucket = ?2",
        )?
        .query_row(params![audience, bucket], |r| {
            Ok(SyncBucket {
                bucket,
                count: r.get::<_, i64>(0)? as u64,
                lanes: [
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                    r.get::<_, i64>(3)? as u64,
                    r.get::<_, i64>(4)? as u64,
                ],
            })
        })
        .optional()?
        .unwrap_or(SyncBucket {
            bucket,
            ..SyncBucket::default()
        });
    cur.merge(delta);
    if cur.count == 0 {
        c.prepare_cached("DELETE FROM sync_buckets WHERE audience = ?1 AND bucket = ?2")?
            .execute(params![audience, bucket])?;
        return Ok(());
    }
    let l = lanes_to_sql(&cur);
    c.prepare_cached(
        "INSERT INTO sync_buckets (audience, bucket, count, l0, l1, l2, l3)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (audience, bucket) DO UPDATE SET count = excluded.count,
           l0 = excluded.l0, l1 = excluded.l1, l2 = excluded.l2, l3 = excluded.l3",
    )?
    .execute(params![
        audience,
        bucket,
        cur.count as i64,
        l[0],
        l[1],
        l[2],
        l[3]
    ])?;
    Ok(())
}

/// Lists a new message in the reconciliation index.
fn sync_add(
    c: &Connection,
    cursor: i64,
    created_ms: i64,
    e: &SyncEntry,
    deltas: &mut BucketDeltas,
) -> Result<(), StoreError> {
    let mut ins = c.prepare_cached(
        "INSERT OR IGNORE INTO sync_items (audience, created_ms, id, cursor, hash)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for a in &e.audiences {
        if ins.execute(params![a, created_ms, &e.id[..], cursor, &e.hash[..]])? == 1 {
            deltas.add(a, created_ms, &e.hash, 1);
        }
    }
    Ok(())
}

/// The latest `limit` kept roster versions, newest first.
pub fn rosters(c: &Connection, limit: usize) -> Result<Vec<RosterRow>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT version, bytes, accepted_ms FROM rosters ORDER BY version DESC LIMIT ?1",
    )?;
    let rows = st.query_map(params![limit as i64], |r| {
        Ok(RosterRow {
            version: r.get::<_, i64>(0)? as u64,
            bytes: r.get(1)?,
            accepted_ms: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Drops every outbox row of `peer`; their delivery rows become REJECTED
/// with `reason`.
pub fn drop_outbox(
    c: &Connection,
    peer: &str,
    reason: &str,
    now_ms: i64,
) -> Result<u64, StoreError> {
    c.prepare_cached(
        "UPDATE delivery SET state = ?1, reason = ?2, updated_ms = ?3, next_attempt_ms = NULL
         WHERE peer = ?4 AND message_id IN
             (SELECT m.message_id FROM outbox o JOIN messages m ON m.cursor = o.cursor
              WHERE o.peer = ?4)",
    )?
    .execute(params![
        DeliveryState::Rejected as i32,
        reason,
        now_ms,
        peer
    ])?;
    let n = c
        .prepare_cached("DELETE FROM outbox WHERE peer = ?1")?
        .execute(params![peer])?;
    Ok(n as u64)
}

/// The distinct values of a primary key's first column, in order, one seek
/// each: `next` selects the first value after `?1` (a few seeks where a scan
/// would read every row).
fn distinct_first_column(c: &Connection, next: &str) -> Result<Vec<String>, StoreError> {
    let mut st = c.prepare_cached(next)?;
    let mut all: Vec<String> = Vec::new();
    let mut after = String::new();
    while let Some(v) = st
        .query_row([&after], |r| r.get::<_, String>(0))
        .optional()?
    {
        after.clone_from(&v);
        all.push(v);
    }
    Ok(all)
}

/// A message the purge deletes.
struct Victim {
    cursor: i64,
    id: String,
    kind: i32,
    created_ms: i64,
    /// Its reconciliation audiences (JSON), as stored with it since schema 17.
    audiences: Option<String>,
    /// Its correlation keys (`PurgePlan::keys_of`).
    keys: Vec<String>,
}

/// For messages stored before schema 17 (no audiences in their row): the
/// cursor up to which rows have none, and every audience listed, read once
/// per purge when first needed.
#[derive(Default)]
struct LegacyItems {
    below: Option<i64>,
    all: Option<Vec<String>>,
}

impl LegacyItems {
    /// The audiences to look under for `v`'s items (those of older rows read
    /// once, then lent).
    fn audiences(
        &mut self,
        c: &Connection,
        v: &Victim,
    ) -> Result<std::borrow::Cow<'_, [String]>, StoreError> {
        if let Some(a) = &v.audiences {
            return serde_json::from_str::<Vec<String>>(a)
                .map(Into::into)
                .map_err(|e| {
                    StoreError::Corrupt(format!(
                        "messages: the reconciliation audiences of cursor {} do not decode: {e}",
                        v.cursor
                    ))
                });
        }
        let below = match self.below {
            Some(b) => b,
            None => {
                // Migration 17 writes it (0 for a store created at 17 or
                // later); without it the older rows' items would stay behind
                // with their sums.
                let v = c
                    .prepare_cached(
                        "SELECT value FROM store_meta WHERE key = 'sync_legacy_cursor'",
                    )?
                    .query_row([], |r| r.get::<_, String>(0))
                    .optional()?;
                let b = v.as_deref().and_then(|v| v.parse().ok()).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "store_meta: sync_legacy_cursor is {}, not a cursor (migration 17 writes it)",
                        v.as_deref().map_or("missing".into(), |v| format!("{v:?}"))
                    ))
                })?;
                *self.below.insert(b)
            }
        };
        if v.cursor > below {
            // Stored with no reconciliation items.
            return Ok(Vec::new().into());
        }
        let all = match &mut self.all {
            Some(all) => all,
            // The audiences, found by seeking the primary key.
            none => none.insert(distinct_first_column(
                c,
                "SELECT audience FROM sync_items WHERE audience > ?1 ORDER BY audience LIMIT 1",
            )?),
        };
        Ok(all.as_slice().into())
    }
}

/// Deletes one message's item under one audience: a search of the primary
/// key (audience, created_ms, id), the cursor checked on the rows found.
pub(super) const SYNC_ITEM_DELETE: &str =
    "DELETE FROM sync_items WHERE audience = ?1 AND created_ms = ?2 AND cursor = ?3 RETURNING hash";

/// Removes a message from the reconciliation index: its items are looked up
/// by their primary key under each of its audiences (the cursor check keeps
/// another message's item of the same millisecond).
fn sync_remove(
    c: &Connection,
    v: &Victim,
    legacy: &mut LegacyItems,
    deltas: &mut BucketDeltas,
) -> Result<(), StoreError> {
    let audiences = legacy.audiences(c, v)?;
    if audiences.is_empty() {
        return Ok(());
    }
    let cursor = v.cursor;
    let mut del = c.prepare_cached(SYNC_ITEM_DELETE)?;
    for audience in audiences.iter() {
        let hashes: Vec<Vec<u8>> = del
            .query_map(params![audience, v.created_ms, cursor], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for hash in hashes {
            let hash: [u8; 32] = hash.as_slice().try_into().map_err(|_| {
                StoreError::Corrupt(format!(
                    "sync_items: an item hash of {} bytes (cursor {cursor})",
                    hash.len()
                ))
            })?;
            deltas.add(audience, v.created_ms, &hash, -1);
        }
    }
    Ok(())
}

/// Per-bucket sums from the bucket of `from_ms` on, over `audiences`.
pub fn sync_buckets(
    c: &Connection,
    audiences: &[String],
    from_ms: i64,
) -> Result<Vec<SyncBucket>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT bucket, count, l0, l1, l2, l3 FROM sync_buckets
         WHERE audience = ?1 AND bucket >= ?2 ORDER BY bucket",
    )?;
    let mut all: BTreeMap<i64, SyncBucket> = Default::default();
    let mut seen = std::collections::HashSet::new();
    for a in audiences {
        if !seen.insert(a) {
            continue;
        }
        let rows = st.query_map(params![a, bucket_of(from_ms)], |r| {
            Ok(SyncBucket {
                bucket: r.get(0)?,
                count: r.get::<_, i64>(1)? as u64,
                lanes: [
                    r.get::<_, i64>(2)? as u64,
                    r.get::<_, i64>(3)? as u64,
                    r.get::<_, i64>(4)? as u64,
                    r.get::<_, i64>(5)? as u64,
                ],
            })
        })?;
        for b in rows {
            let b = b?;
            all.entry(b.bucket)
                .or_insert(SyncBucket {
                    bucket: b.bucket,
                    ..SyncBucket::default()
                })
                .merge(&b);
        }
    }
    Ok(all.into_values().collect())
}

/// Items of one audience in `[from, to)`, in order.
pub fn sync_items(
    c: &Connection,
    audience: &str,
    from: SyncPos,
    to: SyncPos,
    limit: usize,
) -> Result<Vec<SyncItem>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT created_ms, id, hash FROM sync_items
         WHERE audience = ?1 AND (created_ms, id) >= (?2, ?3) AND (created_ms, id) < (?4, ?5)
         ORDER BY created_ms, id LIMIT ?6",
    )?;
    let rows = st.query_map(
        params![audience, from.0, &from.1[..], to.0, &to.1[..], limit as i64],
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (created_ms, id, hash) = row?;
        let (Ok(id), Ok(hash)) = (
            <[u8; 16]>::try_from(id.as_slice()),
            <[u8; 32]>::try_from(hash.as_slice()),
        ) else {
            return Err(StoreError::Corrupt(format!(
                "sync_items: an item of audience {audience} at {created_ms} has a malformed id or hash"
            )));
        };
        out.push(SyncItem {
            created_ms,
            id,
            hash,
        });
    }
    Ok(out)
}

/// Of `ids`, those `peer` refused at or after `since_ms` (see
/// `Storage::refused_by`).
pub fn refused_by(
    c: &Connection,
    peer: &str,
    ids: &[String],
    since_ms: i64,
) -> Result<Vec<String>, StoreError> {
    let ids = serde_json::to_string(ids)
        .map_err(|e| StoreError::Invalid(format!("storage: cannot encode ids: {e}")))?;
    let mut st = c.prepare_cached(
        "SELECT message_id FROM delivery
         WHERE peer = ?1 AND state = ?2 AND updated_ms >= ?3
           AND message_id IN (SELECT value FROM json_each(?4))",
    )?;
    let rows = st.query_map(
        params![peer, DeliveryState::Rejected as i32, since_ms, ids],
        |r| r.get::<_, String>(0),
    )?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Queues held messages for `peer` again (see `Storage::requeue`).
pub fn requeue(
    c: &Connection,
    peer: &str,
    items: &[Requeue],
    now_ms: i64,
) -> Result<u64, StoreError> {
    let mut find = c.prepare_cached(
        "SELECT cursor FROM messages WHERE message_id = ?1 AND length(payload) > 0",
    )?;
    // The new chain goes with this peer's entry (the message row is not
    // rewritten, unless the chain replaces the stored one).
    let mut stored =
        c.prepare_cached("UPDATE messages SET hops = ?1, path = ?2 WHERE cursor = ?3")?;
    let mut ob = c.prepare_cached(
        "INSERT INTO outbox (peer, cursor, enqueued_ms, not_before_ms, hops) VALUES (?1, ?2, ?3, ?3, ?4)
         ON CONFLICT (peer, cursor) DO UPDATE SET not_before_ms = excluded.not_before_ms,
           hops = COALESCE(excluded.hops, outbox.hops)",
    )?;
    let mut dl = c.prepare_cached(
        "INSERT INTO delivery (message_id, peer, state, reason, attempts, updated_ms)
         VALUES (?1, ?2, ?3, 'queued again by reconciliation', 0, ?4)
         ON CONFLICT (message_id, peer) DO UPDATE SET state = excluded.state,
           reason = excluded.reason, updated_ms = excluded.updated_ms, next_attempt_ms = NULL",
    )?;
    let now = now_ms.max(1);
    let mut n = 0;
    for it in items {
        let Some(cursor) = find
            .query_row([&it.message_id], |r| r.get::<_, i64>(0))
            .optional()?
        else {
            continue;
        };
        if let (Some(h), Some(path)) = (&it.hops, &it.replaces_stored) {
            let path = serde_json::to_string(path)
                .map_err(|e| StoreError::Invalid(format!("storage: cannot encode a path: {e}")))?;
            stored.execute(params![h, path, cursor])?;
        }
        ob.execute(params![peer, cursor, now, it.hops])?;
        dl.execute(params![
            it.message_id,
            peer,
            DeliveryState::Queued as i32,
            now
        ])?;
        n += 1;
    }
    Ok(n)
}

/// Messages that belong to one of `ids` or are one of them, in cursor order.
pub fn incident_messages(
    c: &Connection,
    ids: &[String],
    limit: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let ids = serde_json::to_string(ids)
        .map_err(|e| StoreError::Invalid(format!("storage: cannot encode ids: {e}")))?;
    let mut st = c.prepare_cached(&format!(
        "SELECT {MSG_COLS} FROM messages
         WHERE incident_id IN (SELECT value FROM json_each(?1))
            OR message_id IN (SELECT value FROM json_each(?1))
         ORDER BY cursor LIMIT ?2"
    ))?;
    let rows = st.query_map(params![ids, limit as i64], row_to_msg)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// What [`incident_openers`] reads: the condition of the partial index
/// `messages_openers`, so that it reads the openers only.
pub(super) const INCIDENT_OPENERS: &str = "FROM messages
     WHERE incident_id = message_id AND (?1 = 0 OR cursor < ?1)
     ORDER BY cursor DESC LIMIT ?2";

/// Messages that open an incident, newest first, below cursor `before` (0: from the newest).
pub fn incident_openers(
    c: &Connection,
    before: u64,
    limit: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let mut st = c.prepare_cached(&format!("SELECT {MSG_COLS} {INCIDENT_OPENERS}"))?;
    let rows = st.query_map(params![before as i64, limit as i64], row_to_msg)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// `(key, message_id)` pairs indexed under one of `keys`.
pub fn keyed(
    c: &Connection,
    keys: &[String],
    limit: usize,
) -> Result<Vec<(String, String)>, StoreError> {
    let keys = keys_json(keys)?;
    let mut st = c.prepare_cached(
        "SELECT key, message_id FROM message_keys
         WHERE key IN (SELECT value FROM json_each(?1))
         ORDER BY key, message_id LIMIT ?2",
    )?;
    let rows = st.query_map(params![keys, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// `keys` as the JSON list the key queries read through `json_each`.
fn keys_json(keys: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(keys)
        .map_err(|e| StoreError::Invalid(format!("storage: cannot encode keys: {e}")))
}

/// The statement of [`keyed_incidents_within`]: each key is a search of
/// `message_keys`' primary key (a test checks the plan).
pub(super) const KEYED_INCIDENTS_WITHIN: &str = "SELECT k.key, m.incident_id FROM
   (SELECT key, message_id FROM message_keys
    WHERE key IN (SELECT value FROM json_each(?1)) LIMIT ?2) AS k
 LEFT JOIN messages m ON m.message_id = k.message_id";

/// [`keyed_incidents`], when the key index holds at most `cap` rows under
/// `keys` (members of incidents or not): then the same pairs, in the same
/// order; `None` when it holds more (ask [`keyed_incidents`]). Reads at most
/// `cap` + 1 index rows and the messages they name, whatever the store holds.
pub fn keyed_incidents_within(
    c: &Connection,
    keys: &[String],
    limit: usize,
    cap: usize,
) -> Result<Option<Vec<(String, String)>>, StoreError> {
    let keys = keys_json(keys)?;
    let mut st = c.prepare_cached(KEYED_INCIDENTS_WITHIN)?;
    let rows = st.query_map(params![keys, cap as i64 + 1], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
    })?;
    let rows = rows.collect::<Result<Vec<_>, _>>()?;
    if rows.len() > cap {
        return Ok(None);
    }
    let pairs: BTreeSet<(String, String)> = rows
        .into_iter()
        .filter_map(|(key, incident)| Some((key, incident?)))
        .collect();
    Ok(Some(pairs.into_iter().take(limit).collect()))
}

/// `(key, incident_id)` pairs of incident members indexed under `keys`.
pub fn keyed_incidents(
    c: &Connection,
    keys: &[String],
    limit: usize,
) -> Result<Vec<(String, String)>, StoreError> {
    let keys = keys_json(keys)?;
    let mut st = c.prepare_cached(
        "SELECT DISTINCT k.key, m.incident_id FROM message_keys k
         JOIN messages m ON m.message_id = k.message_id
         WHERE k.key IN (SELECT value FROM json_each(?1)) AND m.incident_id IS NOT NULL
         ORDER BY k.key, m.incident_id LIMIT ?2",
    )?;
    let rows = st.query_map(params![keys, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
