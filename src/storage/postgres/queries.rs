//! The SQL of the PostgreSQL backend, one function per unit of work, each run
//! on the session the backend hands it (the writer's open transaction, or a
//! pooled read session). Same semantics as `storage/sqlite/queries.rs`, which
//! the shared conformance suite checks for both.
//!
//! Throughput: statements of one unit are pipelined (issued together, answered
//! in order) wherever one does not depend on another's answer, so a Push
//! chunk of many messages costs one round trip for the messages, not one
//! each. All the messages of a write, with their correlation keys, outbox
//! rows and delivery rows, go in ONE statement of column arrays (`unnest`):
//! one plan and one execution per write, not per message.
//!
//! Supersede marks never depend on arrival order: an update whose original is
//! not held yet waits in `pending_supersede`; both ways of applying a mark
//! keep the latest update (creation time, then message id, byte order).
use crate::proto::v1::{DeliveryState, MessageKind};
use crate::storage::{
    AlertQuery, Claim, Deferral, DeliveryRow, NewMessage, OutboxItem, Outcome, PARKED_REASON,
    PurgePlan, Purged, ReceiptRow, RejectionRow, RequestRecord, Requeue, RosterRow, SYNC_BUCKET_MS,
    StoreError, Stored, StoredMessage, SyncBucket, SyncEntry, SyncItem, SyncPos,
};
use deadpool_postgres::ClientWrapper;
use futures::future::try_join_all;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::pg_err;

const MSG_COLS: &str = "cursor, message_id, origin, kind, tlp, created_ms, received_ms, from_peer, path, header, payload, signature, superseded_by, acknowledged_ms, readable, plain, request_id, hops";

type Params<'a> = Vec<&'a (dyn ToSql + Sync)>;

fn row_to_msg(r: &Row) -> Result<StoredMessage, StoreError> {
    let get = |e: tokio_postgres::Error| {
        StoreError::Corrupt(format!("a stored message row does not decode: {e}"))
    };
    let path: String = r.try_get(8).map_err(get)?;
    Ok(StoredMessage {
        cursor: r.try_get::<_, i64>(0).map_err(get)? as u64,
        message_id: r.try_get(1).map_err(get)?,
        origin: r.try_get(2).map_err(get)?,
        kind: r.try_get(3).map_err(get)?,
        tlp: r.try_get(4).map_err(get)?,
        created_ms: r.try_get(5).map_err(get)?,
        received_ms: r.try_get(6).map_err(get)?,
        from_peer: r.try_get(7).map_err(get)?,
        path: serde_json::from_str(&path).map_err(|e| {
            StoreError::Corrupt(format!("a stored message path does not decode: {e}"))
        })?,
        header: r.try_get(9).map_err(get)?,
        payload: r.try_get(10).map_err(get)?,
        signature: r.try_get(11).map_err(get)?,
        superseded_by: r.try_get(12).map_err(get)?,
        acknowledged_ms: r.try_get(13).map_err(get)?,
        readable: r.try_get(14).map_err(get)?,
        plain: r.try_get(15).map_err(get)?,
        request_id: r.try_get(16).map_err(get)?,
        hops: r.try_get(17).map_err(get)?,
    })
}

fn rows_to_msgs(rows: Vec<Row>) -> Result<Vec<StoredMessage>, StoreError> {
    rows.iter().map(row_to_msg).collect()
}

/// Every message of a write, its correlation keys, outbox rows and delivery
/// rows in ONE statement: each column is an array (one element per message,
/// or per (message, key) / (message, peer) pair), unnested on the server, so
/// a Push chunk of a thousand messages is one statement, one plan, one round
/// trip. Messages are inserted in input order (`ORDER BY ord`), so their
/// cursors follow it; the message ids must be distinct (the caller keeps the
/// first of each). Returns (message id, cursor) of each message stored anew
/// (nothing for an id already held).
const INSERT_MANY: &str = r#"
WITH m AS (
  INSERT INTO messages (message_id, origin, kind, tlp, severity, sectors, exercise, created_ms, expires_ms, received_ms, from_peer, path, header, payload, signature, readable, plain, request_id, hops, incident_id)
  SELECT message_id, origin, kind, tlp, severity, sectors, exercise, created_ms, expires_ms, received_ms, from_peer, path, header, payload, signature, readable, plain, request_id, hops, incident_id
  FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::int[], $6::bigint[], $7::bool[], $8::bigint[], $9::bigint[], $10::bigint[], $11::text[], $12::text[], $13::bytea[], $14::bytea[], $15::bytea[], $16::bool[], $17::bytea[], $18::text[], $19::bytea[], $20::text[])
    WITH ORDINALITY AS t(message_id, origin, kind, tlp, severity, sectors, exercise, created_ms, expires_ms, received_ms, from_peer, path, header, payload, signature, readable, plain, request_id, hops, incident_id, ord)
  ORDER BY ord
  ON CONFLICT (message_id) DO NOTHING
  RETURNING cursor, message_id, received_ms
), k AS (
  INSERT INTO message_keys (key, message_id, incident_id)
  SELECT t.key, t.message_id, t.incident_id FROM unnest($21::text[], $22::text[], $30::text[]) AS t(message_id, key, incident_id)
    JOIN m USING (message_id)
  ON CONFLICT DO NOTHING
), o AS (
  INSERT INTO outbox (peer, cursor, enqueued_ms)
  SELECT t.peer, m.cursor, m.received_ms FROM unnest($23::text[], $24::text[]) AS t(message_id, peer)
    JOIN m USING (message_id)
  ON CONFLICT DO NOTHING
), d AS (
  INSERT INTO delivery (message_id, peer, state, reason, attempts, updated_ms)
  SELECT t.message_id, t.peer, $25, '', 0, m.received_ms FROM unnest($23::text[], $24::text[]) AS t(message_id, peer)
    JOIN m USING (message_id)
  ON CONFLICT (message_id, peer) DO UPDATE SET state = excluded.state, reason = '',
    attempts = 0, updated_ms = excluded.updated_ms, next_attempt_ms = NULL
), po AS (
  INSERT INTO outbox (peer, cursor, enqueued_ms, not_before_ms)
  SELECT t.peer, m.cursor, m.received_ms, t.until FROM unnest($26::text[], $27::text[], $28::bigint[]) AS t(message_id, peer, until)
    JOIN m USING (message_id)
  ON CONFLICT DO NOTHING
), pd AS (
  INSERT INTO delivery (message_id, peer, state, reason, attempts, updated_ms)
  SELECT t.message_id, t.peer, $25, $29, 0, m.received_ms FROM unnest($26::text[], $27::text[], $28::bigint[]) AS t(message_id, peer, until)
    JOIN m USING (message_id)
  ON CONFLICT (message_id, peer) DO UPDATE SET state = excluded.state, reason = excluded.reason,
    attempts = 0, updated_ms = excluded.updated_ms, next_attempt_ms = NULL
)
SELECT message_id, cursor FROM m
"#;

/// Inserts messages with dedup, queueing each new one for its targets, then
/// records receipts and supersede marks.
pub async fn insert_messages(
    c: &ClientWrapper,
    msgs: &[&NewMessage],
) -> Result<Vec<Stored>, StoreError> {
    let e = |w: &'static str| move |x| pg_err(w, x);
    let st = c
        .prepare_cached(INSERT_MANY)
        .await
        .map_err(e("cannot prepare the insert"))?;
    // The first of each message id is inserted; a later copy in the same
    // write is a duplicate of it (as if inserted after it).
    let mut seen = std::collections::HashSet::with_capacity(msgs.len());
    let unique: Vec<&NewMessage> = msgs
        .iter()
        .copied()
        .filter(|m| seen.insert(m.message_id.as_str()))
        .collect();
    let paths: Vec<String> = unique
        .iter()
        .map(|m| serde_json::to_string(&m.path))
        .collect::<Result<_, _>>()
        .map_err(|x| StoreError::Invalid(format!("storage: cannot encode a path: {x}")))?;
    let ids: Vec<&str> = unique.iter().map(|m| m.message_id.as_str()).collect();
    let origins: Vec<&str> = unique.iter().map(|m| m.origin.as_str()).collect();
    let kinds: Vec<i32> = unique.iter().map(|m| m.kind).collect();
    let tlps: Vec<i32> = unique.iter().map(|m| m.tlp).collect();
    let severities: Vec<i32> = unique.iter().map(|m| m.severity).collect();
    let sectors: Vec<i64> = unique.iter().map(|m| m.sectors_mask).collect();
    let exercise: Vec<bool> = unique.iter().map(|m| m.exercise).collect();
    let created: Vec<i64> = unique.iter().map(|m| m.created_ms).collect();
    let expires: Vec<Option<i64>> = unique.iter().map(|m| m.expires_ms).collect();
    let received: Vec<i64> = unique.iter().map(|m| m.received_ms).collect();
    let from: Vec<Option<&str>> = unique.iter().map(|m| m.from_peer.as_deref()).collect();
    let path_refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let headers: Vec<&[u8]> = unique.iter().map(|m| &m.header[..]).collect();
    let payloads: Vec<&[u8]> = unique.iter().map(|m| &m.payload[..]).collect();
    let signatures: Vec<&[u8]> = unique.iter().map(|m| &m.signature[..]).collect();
    let readable: Vec<bool> = unique.iter().map(|m| m.readable).collect();
    let plain: Vec<Option<&[u8]>> = unique.iter().map(|m| m.plain.as_deref()).collect();
    let requests: Vec<Option<&str>> = unique.iter().map(|m| m.request_id.as_deref()).collect();
    let hops: Vec<&[u8]> = unique.iter().map(|m| &m.hops[..]).collect();
    let incidents: Vec<Option<&str>> = unique.iter().map(|m| m.incident_id.as_deref()).collect();
    // (message, key), (message, full-copy target) and (message, parked peer)
    // pairs. Parked peers (lazy links) never overlap the full-copy targets:
    // one statement may not touch a delivery row twice.
    let (mut key_ids, mut keys, mut key_incidents) = (Vec::new(), Vec::new(), Vec::new());
    let (mut target_ids, mut targets) = (Vec::new(), Vec::new());
    let (mut parked_ids, mut parked, mut parked_until) = (Vec::new(), Vec::new(), Vec::new());
    for m in &unique {
        let mut ks: Vec<&str> = m.keys.iter().map(String::as_str).collect();
        ks.sort_unstable();
        ks.dedup();
        for k in ks {
            key_ids.push(m.message_id.as_str());
            keys.push(k);
            key_incidents.push(m.incident_id.as_deref());
        }
        let mut t: Vec<&str> = m.targets.iter().map(String::as_str).collect();
        t.sort_unstable();
        t.dedup();
        let mut p: Vec<&str> = m
            .parked
            .iter()
            .map(String::as_str)
            .filter(|x| !t.contains(x))
            .collect();
        p.sort_unstable();
        p.dedup();
        for peer in t {
            target_ids.push(m.message_id.as_str());
            targets.push(peer);
        }
        for peer in p {
            parked_ids.push(m.message_id.as_str());
            parked.push(peer);
            parked_until.push(m.park_until_ms.max(1));
        }
    }
    let queued = DeliveryState::Queued as i32;
    let params: Params = vec![
        &ids,
        &origins,
        &kinds,
        &tlps,
        &severities,
        &sectors,
        &exercise,
        &created,
        &expires,
        &received,
        &from,
        &path_refs,
        &headers,
        &payloads,
        &signatures,
        &readable,
        &plain,
        &requests,
        &hops,
        &incidents,
        &key_ids,
        &keys,
        &target_ids,
        &targets,
        &queued,
        &parked_ids,
        &parked,
        &parked_until,
        &PARKED_REASON,
        &key_incidents,
    ];
    let rows = c
        .query(&st, &params)
        .await
        .map_err(e("cannot insert messages"))?;
    let mut new: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    for r in &rows {
        let id: String = r.try_get(0).map_err(|x| {
            StoreError::Corrupt(format!("a stored message id does not decode: {x}"))
        })?;
        let cursor: i64 = r
            .try_get(1)
            .map_err(|x| StoreError::Corrupt(format!("a new cursor does not decode: {x}")))?;
        new.insert(id, cursor);
    }
    // Each id answers New once (its first copy), Duplicate after.
    let out: Vec<Stored> = msgs
        .iter()
        .map(|m| match new.remove(&m.message_id) {
            Some(cursor) => Stored::New(cursor as u64),
            None => Stored::Duplicate,
        })
        .collect();
    // Supersede marks first, in input order (rare: updates and retractions):
    // a mark remembered here is seen by the check for waiting marks below.
    for (m, s) in msgs.iter().zip(&out) {
        if let (Stored::New(_), Some(old)) = (s, &m.supersedes) {
            supersede(c, m, old).await?;
        }
    }
    // What follows does not depend on each other's answers: issued together
    // (pipelined), one round trip for all of them.
    let mut counts: std::collections::BTreeMap<i32, i64> = Default::default();
    for (m, s) in msgs.iter().zip(&out) {
        if let Stored::New(_) = s {
            *counts.entry(m.kind).or_default() += 1;
        }
    }
    // Receipt facts, for new receipts only.
    let rc = c
        .prepare_cached(
            "INSERT INTO receipts (message_id, node, state, reason, at_ms)
             SELECT $1, $2, $3, $4, $5 WHERE EXISTS
               (SELECT 1 FROM messages WHERE message_id = $1 AND origin = $6)
             ON CONFLICT (message_id, node) DO UPDATE SET
               state = excluded.state, reason = excluded.reason, at_ms = excluded.at_ms
             WHERE receipts.state != 2",
        )
        .await
        .map_err(e("cannot prepare receipts"))?;
    let mut receipts = Vec::new();
    for (m, s) in msgs.iter().zip(&out) {
        if let (Stored::New(_), Some(r)) = (s, &m.receipt) {
            for id in &r.ids {
                let rc = &rc;
                receipts.push(async move {
                    c.execute(rc, &[id, &r.from, &r.state, &r.reason, &r.at_ms, &r.me])
                        .await
                });
            }
        }
    }
    let receipts = async {
        if receipts.is_empty() {
            return Ok(());
        }
        try_join_all(receipts)
            .await
            .map(|_| ())
            .map_err(e("cannot record receipts"))
    };
    // The reconciliation index, in the same transaction as the messages; the
    // bucket sums once per touched bucket, not once per message.
    let listed: Vec<(i64, i64, &SyncEntry)> = msgs
        .iter()
        .zip(&out)
        .filter_map(|(m, s)| match (s, &m.sync) {
            (Stored::New(cursor), Some(sync)) => Some((*cursor as i64, m.created_ms, sync)),
            _ => None,
        })
        .collect();
    let waiting = async {
        let st = c
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM pending_supersede)")
            .await
            .map_err(e("cannot prepare a read"))?;
        c.query_one(&st, &[])
            .await
            .map(|r| r.get::<_, bool>(0))
            .map_err(e("cannot look for waiting supersede marks"))
    };
    let ((), (), touched, waiting) = futures::try_join!(
        count_apply(c, counts),
        receipts,
        sync_add(c, &listed),
        waiting
    )?;
    for ((audience, bucket), hashes) in touched {
        bucket_apply(c, &audience, bucket, &hashes, 1).await?;
    }
    if waiting {
        for (m, s) in msgs.iter().zip(&out) {
            if let Stored::New(cursor) = s {
                apply_waiting(c, m, *cursor as i64).await?;
            }
        }
    }
    Ok(out)
}

/// Marks `old` superseded by `m` (if held, of the same origin and of the same
/// exercise flag, unless a
/// later update already did); if `old` is not held, remembers the mark.
async fn supersede(c: &ClientWrapper, m: &NewMessage, old: &str) -> Result<(), StoreError> {
    let held = c
        .query_opt("SELECT 1 FROM messages WHERE message_id = $1", &[&old])
        .await
        .map_err(|x| pg_err("cannot look up a superseded message", x))?
        .is_some();
    if held {
        c.execute(
            "UPDATE messages SET superseded_by = $1
             WHERE message_id = $2 AND origin = $3 AND exercise = $5
               AND (superseded_by IS NULL OR NOT EXISTS (
                   SELECT 1 FROM messages s WHERE s.message_id = messages.superseded_by
                   AND (s.created_ms, s.message_id) > ($4, $1)))",
            &[&m.message_id, &old, &m.origin, &m.created_ms, &m.exercise],
        )
        .await
        .map_err(|x| pg_err("cannot mark a superseded message", x))?;
    } else {
        c.execute(
            "INSERT INTO pending_supersede (original, origin, by_id, created_ms)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&old, &m.origin, &m.message_id, &m.created_ms],
        )
        .await
        .map_err(|x| pg_err("cannot remember a supersede mark", x))?;
    }
    Ok(())
}

/// Applies the latest update that arrived before `m` itself, if any.
async fn apply_waiting(c: &ClientWrapper, m: &NewMessage, cursor: i64) -> Result<(), StoreError> {
    let e = |w: &'static str| move |x| pg_err(w, x);
    let waiting = c
        .query_opt(
            "SELECT by_id, created_ms FROM pending_supersede WHERE original = $1 AND origin = $2
               AND EXISTS (SELECT 1 FROM messages u
                           WHERE u.message_id = pending_supersede.by_id AND u.exercise = $3)
             ORDER BY created_ms DESC, by_id DESC LIMIT 1",
            &[&m.message_id, &m.origin, &m.exercise],
        )
        .await
        .map_err(e("cannot read waiting supersede marks"))?;
    if let Some(w) = waiting {
        let by: String = w.get(0);
        let created: i64 = w.get(1);
        c.execute(
            "UPDATE messages SET superseded_by = $1 WHERE cursor = $2
               AND (superseded_by IS NULL OR NOT EXISTS (
                   SELECT 1 FROM messages s WHERE s.message_id = messages.superseded_by
                   AND (s.created_ms, s.message_id) > ($3, $1)))",
            &[&by, &cursor, &created],
        )
        .await
        .map_err(e("cannot apply a waiting supersede mark"))?;
        c.execute(
            "DELETE FROM pending_supersede WHERE original = $1",
            &[&m.message_id],
        )
        .await
        .map_err(e("cannot clear waiting supersede marks"))?;
    }
    Ok(())
}

/// Adds messages stored (or, negative, removed) per kind to `message_counts`.
async fn count_apply(
    c: &ClientWrapper,
    counts: std::collections::BTreeMap<i32, i64>,
) -> Result<(), StoreError> {
    let (kinds, ns): (Vec<i32>, Vec<i64>) = counts.into_iter().filter(|(_, n)| *n != 0).unzip();
    if kinds.is_empty() {
        return Ok(());
    }
    let st = c
        .prepare_cached(
            "INSERT INTO message_counts (kind, n)
             SELECT * FROM unnest($1::int[], $2::bigint[])
             ON CONFLICT (kind) DO UPDATE SET n = message_counts.n + excluded.n",
        )
        .await
        .map_err(|x| pg_err("cannot prepare the message count", x))?;
    c.execute(&st, &[&kinds, &ns])
        .await
        .map_err(|x| pg_err("cannot count stored messages", x))?;
    Ok(())
}

pub async fn message_count(c: &ClientWrapper) -> Result<u64, StoreError> {
    let n: i64 = c
        .query_one(
            "SELECT COALESCE(SUM(n), 0)::BIGINT FROM message_counts WHERE kind != $1",
            &[&(MessageKind::Receipt as i32)],
        )
        .await
        .map_err(|x| pg_err("cannot count messages", x))?
        .get(0);
    Ok(n as u64)
}

/// The ids of `ids` that are stored (one statement, the unique index).
pub async fn held(
    c: &ClientWrapper,
    ids: &[String],
) -> Result<std::collections::HashSet<String>, StoreError> {
    let st = c
        .prepare_cached("SELECT message_id FROM messages WHERE message_id = ANY($1)")
        .await
        .map_err(|x| pg_err("cannot prepare a read", x))?;
    let rows = c
        .query(&st, &[&ids])
        .await
        .map_err(|x| pg_err("cannot read message ids", x))?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

/// The relayed ciphertext still kept (the partial index `messages_relayed`),
/// latest arrival first.
pub async fn relayed_kept(c: &ClientWrapper, limit: usize) -> Result<Vec<String>, StoreError> {
    let st = c
        .prepare_cached(
            "SELECT message_id FROM messages
             WHERE NOT readable AND octet_length(payload) > 0
             ORDER BY received_ms DESC, cursor DESC LIMIT $1",
        )
        .await
        .map_err(|x| pg_err("cannot prepare a read", x))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = c
        .query(&st, &[&limit])
        .await
        .map_err(|x| pg_err("cannot read the relayed ciphertext kept", x))?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}

pub async fn get_message(
    c: &ClientWrapper,
    message_id: &str,
) -> Result<Option<StoredMessage>, StoreError> {
    let st = c
        .prepare_cached(&format!(
            "SELECT {MSG_COLS} FROM messages WHERE message_id = $1"
        ))
        .await
        .map_err(|x| pg_err("cannot prepare a read", x))?;
    c.query_opt(&st, &[&message_id])
        .await
        .map_err(|x| pg_err("cannot read a message", x))?
        .as_ref()
        .map(row_to_msg)
        .transpose()
}

/// The held messages among `ids`.
pub async fn get_messages(
    c: &ClientWrapper,
    ids: &[String],
) -> Result<Vec<StoredMessage>, StoreError> {
    msgs(
        c,
        &format!("SELECT {MSG_COLS} FROM messages WHERE message_id = ANY($1)"),
        vec![&ids],
    )
    .await
}

async fn msgs(
    c: &ClientWrapper,
    sql: &str,
    params: Params<'_>,
) -> Result<Vec<StoredMessage>, StoreError> {
    let st = c
        .prepare_cached(sql)
        .await
        .map_err(|x| pg_err("cannot prepare a read", x))?;
    rows_to_msgs(
        c.query(&st, &params)
            .await
            .map_err(|x| pg_err("cannot read messages", x))?,
    )
}

/// Messages that belong to one of `ids` or are one of them, in cursor order.
pub async fn incident_messages(
    c: &ClientWrapper,
    ids: &[String],
    limit: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let limit = limit as i64;
    msgs(
        c,
        &format!(
            "SELECT {MSG_COLS} FROM messages
             WHERE incident_id = ANY($1) OR message_id = ANY($1)
             ORDER BY cursor LIMIT $2"
        ),
        vec![&ids, &limit],
    )
    .await
}

/// Messages that open an incident, newest first, below cursor `before` (0: from the newest).
pub async fn incident_openers(
    c: &ClientWrapper,
    before: u64,
    limit: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let (before, limit) = (before as i64, limit as i64);
    msgs(
        c,
        &format!(
            "SELECT {MSG_COLS} FROM messages
             WHERE incident_id IS NOT NULL AND incident_id = message_id
               AND ($1::bigint = 0 OR cursor < $1)
             ORDER BY cursor DESC LIMIT $2"
        ),
        vec![&before, &limit],
    )
    .await
}

/// `(key, message_id)` pairs indexed under one of `keys`.
pub async fn keyed(
    c: &ClientWrapper,
    keys: &[String],
    limit: usize,
) -> Result<Vec<(String, String)>, StoreError> {
    let limit = limit as i64;
    let rows = c
        .query(
            "SELECT key, message_id FROM message_keys WHERE key = ANY($1)
             ORDER BY key COLLATE \"C\", message_id COLLATE \"C\" LIMIT $2",
            &[&keys, &limit],
        )
        .await
        .map_err(|x| pg_err("cannot read correlation keys", x))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// `(key, incident_id)` pairs of incident members indexed under `keys`.
pub async fn keyed_incidents(
    c: &ClientWrapper,
    keys: &[String],
    limit: usize,
) -> Result<Vec<(String, String)>, StoreError> {
    let limit = limit as i64;
    // Served by the partial index of incident members (message_keys_incident).
    let st = c
        .prepare_cached(
            "SELECT DISTINCT key, incident_id FROM message_keys
             WHERE key = ANY($1) AND incident_id IS NOT NULL
             ORDER BY 1, 2 LIMIT $2",
        )
        .await
        .map_err(|x| pg_err("cannot prepare a read", x))?;
    let rows = c
        .query(&st, &[&keys, &limit])
        .await
        .map_err(|x| pg_err("cannot read incident correlation keys", x))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub async fn messages_after(
    c: &ClientWrapper,
    cursor: u64,
    limit: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let (cursor, limit) = (cursor as i64, limit as i64);
    msgs(
        c,
        &format!("SELECT {MSG_COLS} FROM messages WHERE cursor > $1 ORDER BY cursor LIMIT $2"),
        vec![&cursor, &limit],
    )
    .await
}

pub async fn thread(c: &ClientWrapper, request_id: &str) -> Result<Vec<StoredMessage>, StoreError> {
    msgs(
        c,
        &format!(
            "SELECT {MSG_COLS} FROM messages WHERE request_id = $1 AND readable ORDER BY cursor"
        ),
        vec![&request_id],
    )
    .await
}

pub async fn by_kind(
    c: &ClientWrapper,
    kind: i32,
    before: u64,
    limit: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let (before, limit) = (before as i64, limit as i64);
    // The condition of the partial index `messages_kind` (schema 9), for
    // the kinds it holds.
    let indexed = if kind == MessageKind::Alert as i32 || kind == MessageKind::Receipt as i32 {
        ""
    } else {
        " AND kind NOT IN (1, 6)"
    };
    msgs(
        c,
        &format!(
            "SELECT {MSG_COLS} FROM messages WHERE kind = $1{indexed} AND readable AND ($2::bigint = 0 OR cursor < $2)
             ORDER BY cursor DESC LIMIT $3"
        ),
        vec![&kind, &before, &limit],
    )
    .await
}

/// The first message at or after `cursor`: its cursor and receipt time.
pub async fn received_from(
    c: &ClientWrapper,
    cursor: u64,
) -> Result<Option<(u64, i64)>, StoreError> {
    let cursor = i64::try_from(cursor).unwrap_or(i64::MAX);
    let row = c
        .query_opt(
            "SELECT cursor, received_ms FROM messages WHERE cursor >= $1 ORDER BY cursor LIMIT 1",
            &[&cursor],
        )
        .await
        .map_err(|x| pg_err("cannot read a receipt time", x))?;
    Ok(row.map(|r| (r.get::<_, i64>(0) as u64, r.get(1))))
}

pub async fn last_cursor(c: &ClientWrapper) -> Result<u64, StoreError> {
    let n: i64 = c
        .query_one("SELECT COALESCE(MAX(cursor), 0)::BIGINT FROM messages", &[])
        .await
        .map_err(|x| pg_err("cannot read the last cursor", x))?
        .get(0);
    Ok(n as u64)
}

pub async fn list_alerts(
    c: &ClientWrapper,
    q: &AlertQuery,
    before: u64,
    limit: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    match crate::storage::by_origin(q) {
        Some(each) => {
            let mut out = Vec::new();
            for q in &each {
                out.extend(list_alerts_query(c, q, before, limit).await?);
            }
            Ok(crate::storage::newest(out, limit))
        }
        None => list_alerts_query(c, q, before, limit).await,
    }
}

/// One query of [`list_alerts`]: cursors walked backwards, or for one origin
/// its alerts through `messages_origin` (a partial index of alerts, which
/// the literal kind lets the planner use in a generic plan too).
async fn list_alerts_query(
    c: &ClientWrapper,
    q: &AlertQuery,
    before: u64,
    limit: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let alert = MessageKind::Alert as i32;
    let before = before as i64;
    let limit = limit as i64;
    let (mut sql, mut params): (String, Params) = match q.origins.as_slice() {
        [origin] => (
            format!("SELECT {MSG_COLS} FROM messages WHERE kind = 1 AND origin = $1 AND readable"),
            vec![origin],
        ),
        // `kind + 0`: not through `messages_origin` (all alerts, whose
        // origins the planner would read and sort by cursor for each page).
        _ => (
            format!("SELECT {MSG_COLS} FROM messages WHERE (kind + 0) = $1 AND readable"),
            vec![&alert],
        ),
    };
    if before > 0 {
        params.push(&before);
        sql.push_str(&format!(" AND cursor < ${}", params.len()));
    }
    if q.min_severity > 0 {
        params.push(&q.min_severity);
        sql.push_str(&format!(" AND severity >= ${}", params.len()));
    }
    if !q.tlps.is_empty() {
        params.push(&q.tlps);
        // `tlp + 0`: not through the purge's (tlp, created) index, which
        // would read and sort every message of those TLPs.
        sql.push_str(&format!(" AND (tlp + 0) = ANY(${})", params.len()));
    }
    if q.sectors_mask != 0 {
        params.push(&q.sectors_mask);
        sql.push_str(&format!(" AND (sectors & ${}) != 0", params.len()));
    }
    if q.origins.len() > 1 {
        params.push(&q.origins);
        sql.push_str(&format!(" AND origin = ANY(${})", params.len()));
    }
    if let Some(a) = &q.created_after_ms {
        params.push(a);
        sql.push_str(&format!(" AND created_ms >= ${}", params.len()));
    }
    if let Some(b) = &q.created_before_ms {
        params.push(b);
        sql.push_str(&format!(" AND created_ms < ${}", params.len()));
    }
    if !q.include_exercise {
        sql.push_str(" AND NOT exercise");
    }
    params.push(&limit);
    sql.push_str(&format!(" ORDER BY cursor DESC LIMIT ${}", params.len()));
    msgs(c, &sql, params).await
}

const OUTBOX_COLS: &str = "o.cursor, o.enqueued_ms, o.deferrals, m.header, m.payload, m.signature, COALESCE(o.hops, m.hops, '\\x'::bytea)";

fn row_to_item(r: &Row) -> Result<OutboxItem, StoreError> {
    let get = |e: tokio_postgres::Error| {
        StoreError::Corrupt(format!("a stored outbox row does not decode: {e}"))
    };
    Ok(OutboxItem {
        cursor: r.try_get::<_, i64>(0).map_err(get)? as u64,
        enqueued_ms: r.try_get(1).map_err(get)?,
        deferrals: r.try_get::<_, i32>(2).map_err(get)?.max(0) as u32,
        header: r.try_get(3).map_err(get)?,
        payload: r.try_get(4).map_err(get)?,
        signature: r.try_get(5).map_err(get)?,
        hops: r.try_get(6).map_err(get)?,
    })
}

async fn items(
    c: &ClientWrapper,
    sql: &str,
    params: Params<'_>,
) -> Result<Vec<OutboxItem>, StoreError> {
    let st = c
        .prepare_cached(sql)
        .await
        .map_err(|x| pg_err("cannot prepare an outbox read", x))?;
    c.query(&st, &params)
        .await
        .map_err(|x| pg_err("cannot read the outbox", x))?
        .iter()
        .map(row_to_item)
        .collect()
}

pub async fn outbox(
    c: &ClientWrapper,
    peer: &str,
    after: u64,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<OutboxItem>, StoreError> {
    let (after, limit) = (after as i64, limit as i64);
    items(
        c,
        &format!(
            "SELECT {OUTBOX_COLS} FROM outbox o JOIN messages m ON m.cursor = o.cursor
             WHERE o.peer = $1 AND o.cursor > $2 AND o.not_before_ms <= $3
             ORDER BY o.cursor LIMIT $4"
        ),
        vec![&peer, &after, &now_ms, &limit],
    )
    .await
}

pub async fn outbox_due(
    c: &ClientWrapper,
    peer: &str,
    after: u64,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<OutboxItem>, StoreError> {
    let (after, limit) = (after as i64, limit as i64);
    items(
        c,
        &format!(
            "SELECT {OUTBOX_COLS} FROM outbox o JOIN messages m ON m.cursor = o.cursor
             WHERE o.peer = $1 AND o.not_before_ms > 0 AND o.not_before_ms <= $3 AND o.cursor > $2
             ORDER BY o.cursor LIMIT $4"
        ),
        vec![&peer, &after, &now_ms, &limit],
    )
    .await
}

pub async fn outbox_next_due(
    c: &ClientWrapper,
    peer: &str,
    now_ms: i64,
) -> Result<Option<i64>, StoreError> {
    Ok(c.query_one(
        "SELECT MIN(not_before_ms) FROM outbox WHERE peer = $1 AND not_before_ms > $2",
        &[&peer, &now_ms],
    )
    .await
    .map_err(|x| pg_err("cannot read deferred entries", x))?
    .get(0))
}

pub async fn defer_outbox(
    c: &ClientWrapper,
    peer: &str,
    deferrals: &[Deferral],
    now_ms: i64,
) -> Result<(), StoreError> {
    let cursors: Vec<i64> = deferrals.iter().map(|d| d.cursor as i64).collect();
    // Never 0: that would read as "not deferred".
    let next: Vec<i64> = deferrals.iter().map(|d| d.next_attempt_ms.max(1)).collect();
    let reasons: Vec<&str> = deferrals.iter().map(|d| d.reason.as_str()).collect();
    let deferred = DeliveryState::Deferred as i32;
    let pa: [&(dyn ToSql + Sync); 3] = [&peer, &cursors, &next];
    let pb: [&(dyn ToSql + Sync); 6] = [&peer, &deferred, &now_ms, &cursors, &next, &reasons];
    let ob = c.execute(
        "UPDATE outbox o SET not_before_ms = u.next, deferrals = o.deferrals + 1
         FROM unnest($2::bigint[], $3::bigint[]) AS u(cursor, next)
         WHERE o.peer = $1 AND o.cursor = u.cursor",
        &pa,
    );
    let dl = c.execute(
        "UPDATE delivery d SET state = $2, reason = u.reason, attempts = d.attempts + 1,
             updated_ms = $3, next_attempt_ms = u.next
         FROM unnest($4::bigint[], $5::bigint[], $6::text[]) AS u(cursor, next, reason)
         JOIN messages m ON m.cursor = u.cursor
         WHERE d.peer = $1 AND d.message_id = m.message_id",
        &pb,
    );
    futures::try_join!(ob, dl).map_err(|x| pg_err("cannot record deferrals", x))?;
    Ok(())
}

pub async fn complete_outbox(
    c: &ClientWrapper,
    peer: &str,
    outcomes: &[Outcome],
    now_ms: i64,
) -> Result<(), StoreError> {
    let cursors: Vec<i64> = outcomes.iter().map(|o| o.cursor as i64).collect();
    let states: Vec<i32> = outcomes.iter().map(|o| o.state as i32).collect();
    let reasons: Vec<&str> = outcomes.iter().map(|o| o.reason.as_str()).collect();
    let pc: [&(dyn ToSql + Sync); 2] = [&peer, &cursors];
    let pd: [&(dyn ToSql + Sync); 5] = [&peer, &now_ms, &cursors, &states, &reasons];
    let del = c.execute(
        "DELETE FROM outbox WHERE peer = $1 AND cursor = ANY($2)",
        &pc,
    );
    let upd = c.execute(
        "UPDATE delivery d SET state = u.state, reason = u.reason, attempts = d.attempts + 1,
             updated_ms = $2, next_attempt_ms = NULL
         FROM unnest($3::bigint[], $4::int[], $5::text[]) AS u(cursor, state, reason)
         JOIN messages m ON m.cursor = u.cursor
         WHERE d.peer = $1 AND d.message_id = m.message_id",
        &pd,
    );
    // (Relayed ciphertext nobody needs any more is emptied by `purge`, a
    // while later: a relay answers requests for a shorter copy with it.)
    futures::try_join!(del, upd).map_err(|x| pg_err("cannot record outcomes", x))?;
    Ok(())
}

pub async fn outbox_depths(c: &ClientWrapper) -> Result<Vec<(String, u64)>, StoreError> {
    Ok(c.query(
        "SELECT peer, COUNT(*) FROM outbox GROUP BY peer ORDER BY peer",
        &[],
    )
    .await
    .map_err(|x| pg_err("cannot count the outboxes", x))?
    .iter()
    .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
    .collect())
}

pub async fn delivery(c: &ClientWrapper, message_id: &str) -> Result<Vec<DeliveryRow>, StoreError> {
    Ok(c.query(
        "SELECT peer, state, reason, attempts, updated_ms, next_attempt_ms FROM delivery
             WHERE message_id = $1 ORDER BY peer",
        &[&message_id],
    )
    .await
    .map_err(|x| pg_err("cannot read delivery states", x))?
    .iter()
    .map(|r| DeliveryRow {
        peer: r.get(0),
        state: r.get(1),
        reason: r.get(2),
        attempts: r.get::<_, i32>(3).max(0) as u32,
        updated_ms: r.get(4),
        next_attempt_ms: r.get(5),
    })
    .collect())
}

pub async fn receipts(c: &ClientWrapper, message_id: &str) -> Result<Vec<ReceiptRow>, StoreError> {
    Ok(c.query(
        "SELECT node, state, reason, at_ms FROM receipts WHERE message_id = $1 ORDER BY node",
        &[&message_id],
    )
    .await
    .map_err(|x| pg_err("cannot read receipts", x))?
    .iter()
    .map(|r| ReceiptRow {
        node: r.get(0),
        state: r.get(1),
        reason: r.get(2),
        at_ms: r.get(3),
    })
    .collect())
}

pub async fn record_rejections(
    c: &ClientWrapper,
    rows: &[RejectionRow],
    now_ms: i64,
) -> Result<(), StoreError> {
    let from: Vec<&str> = rows.iter().map(|r| r.from_peer.as_str()).collect();
    let ids: Vec<&str> = rows.iter().map(|r| r.message_id.as_str()).collect();
    let reasons: Vec<&str> = rows.iter().map(|r| r.reason.as_str()).collect();
    c.execute(
        "INSERT INTO rejections (at_ms, from_peer, message_id, reason)
         SELECT $1, f, m, r FROM unnest($2::text[], $3::text[], $4::text[]) AS u(f, m, r)",
        &[&now_ms, &from, &ids, &reasons],
    )
    .await
    .map_err(|x| pg_err("cannot record rejections", x))?;
    Ok(())
}

pub async fn acknowledge(
    c: &ClientWrapper,
    message_id: &str,
    now_ms: i64,
) -> Result<Option<i64>, StoreError> {
    Ok(c.query_opt(
        "UPDATE messages SET acknowledged_ms = COALESCE(acknowledged_ms, $1)
             WHERE message_id = $2 AND readable RETURNING acknowledged_ms",
        &[&now_ms, &message_id],
    )
    .await
    .map_err(|x| pg_err("cannot acknowledge", x))?
    .and_then(|r| r.get(0)))
}

pub async fn claim_request(
    c: &ClientWrapper,
    rec: &RequestRecord,
    expired_before_ms: i64,
) -> Result<Claim, StoreError> {
    let e = |w: &'static str| move |x| pg_err(w, x);
    c.execute(
        "DELETE FROM request_ids WHERE created_ms < $1",
        &[&expired_before_ms],
    )
    .await
    .map_err(e("cannot purge request ids"))?;
    let held = c
        .query_opt(
            "SELECT fingerprint, message_id, response, created_ms FROM request_ids WHERE request_id = $1",
            &[&rec.request_id],
        )
        .await
        .map_err(e("cannot read a request id"))?;
    if let Some(r) = held {
        return Ok(Claim::Held(RequestRecord {
            request_id: rec.request_id.clone(),
            fingerprint: r.get(0),
            message_id: r.get(1),
            response: r.get(2),
            created_ms: r.get(3),
        }));
    }
    c.execute(
        "INSERT INTO request_ids (request_id, fingerprint, message_id, response, created_ms)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &rec.request_id,
            &rec.fingerprint,
            &rec.message_id,
            &rec.response,
            &rec.created_ms,
        ],
    )
    .await
    .map_err(e("cannot claim a request id"))?;
    Ok(Claim::Claimed)
}

pub async fn complete_request(
    c: &ClientWrapper,
    request_id: &str,
    response: &[u8],
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE request_ids SET response = $2 WHERE request_id = $1",
        &[&request_id, &response],
    )
    .await
    .map_err(|x| pg_err("cannot complete a request id", x))?;
    Ok(())
}

pub async fn release_request(c: &ClientWrapper, request_id: &str) -> Result<(), StoreError> {
    c.execute(
        "DELETE FROM request_ids WHERE request_id = $1 AND response IS NULL",
        &[&request_id],
    )
    .await
    .map_err(|x| pg_err("cannot release a request id", x))?;
    Ok(())
}

pub async fn requests_created_before(
    c: &ClientWrapper,
    before_ms: i64,
) -> Result<Vec<String>, StoreError> {
    Ok(c.query(
        "SELECT DISTINCT request_id FROM messages
             WHERE request_id IS NOT NULL AND readable AND created_ms < $1",
        &[&before_ms],
    )
    .await
    .map_err(|x| pg_err("cannot list old threads", x))?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

pub async fn purge(c: &ClientWrapper, plan: &PurgePlan) -> Result<Purged, StoreError> {
    let e = |w: &'static str| move |x| pg_err(w, x);
    let mut cursors: Vec<i64> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    for (tlp, cutoff) in &plan.cutoffs {
        let room = plan.limit.saturating_sub(cursors.len()) as i64;
        if room == 0 {
            break;
        }
        let rows = c
            .query(
                "SELECT cursor, message_id FROM messages
                 WHERE tlp = $1 AND created_ms < $2
                   AND (request_id IS NULL OR NOT (request_id = ANY($3)))
                 ORDER BY created_ms LIMIT $4",
                &[tlp, cutoff, &plan.keep_requests, &room],
            )
            .await
            .map_err(e("cannot choose messages to purge"))?;
        for r in rows {
            cursors.push(r.get(0));
            ids.push(r.get(1));
        }
    }
    if !cursors.is_empty() {
        // This store finds key rows by message (its `message_keys_message`
        // index) and needs no `keys_of`; the plan must carry it all the same,
        // as for every store.
        plan.key_finder()?;
        let pc: [&(dyn ToSql + Sync); 1] = [&cursors];
        let pi: [&(dyn ToSql + Sync); 1] = [&ids];
        let ob = c.execute("DELETE FROM outbox WHERE cursor = ANY($1)", &pc);
        let dl = c.execute("DELETE FROM delivery WHERE message_id = ANY($1)", &pi);
        let rc = c.execute("DELETE FROM receipts WHERE message_id = ANY($1)", &pi);
        let ks = c.execute("DELETE FROM message_keys WHERE message_id = ANY($1)", &pi);
        futures::try_join!(ob, dl, rc, ks).map_err(e("cannot purge rows of old messages"))?;
        sync_remove(c, &cursors).await?;
        let gone = c
            .query(
                "DELETE FROM messages WHERE cursor = ANY($1) RETURNING kind",
                &[&cursors],
            )
            .await
            .map_err(e("cannot purge old messages"))?;
        let mut counts: std::collections::BTreeMap<i32, i64> = Default::default();
        for r in gone {
            *counts.entry(r.get::<_, i32>(0)).or_default() -= 1;
        }
        count_apply(c, counts).await?;
    }
    let limit = plan.limit as i64;
    let rejections = c
        .execute(
            "DELETE FROM rejections WHERE id IN
               (SELECT id FROM rejections WHERE at_ms < $1 ORDER BY id LIMIT $2)",
            &[&plan.rejections_before_ms, &limit],
        )
        .await
        .map_err(e("cannot purge rejections"))?;
    // A relay keeps only ciphertext of what it cannot read, and only until
    // every peer it was queued for has it and the grace the plan gives has
    // passed (the partial index `messages_relayed` holds exactly these rows).
    let ciphertexts = c
        .execute(
            "UPDATE messages SET payload = '\\x'::bytea WHERE cursor IN
               (SELECT cursor FROM messages
                WHERE NOT readable AND octet_length(payload) > 0 AND received_ms < $1
                  AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.cursor = messages.cursor)
                ORDER BY received_ms LIMIT $2)",
            &[&plan.relayed_before_ms, &limit],
        )
        .await
        .map_err(e("cannot empty relayed ciphertext"))?;
    Ok(Purged {
        messages: cursors.len() as u64,
        rejections,
        ciphertexts,
    })
}

pub async fn space(c: &ClientWrapper) -> Result<i64, StoreError> {
    Ok(
        c.query_one("SELECT pg_database_size(current_database())", &[])
            .await
            .map_err(|x| pg_err("cannot read the database size", x))?
            .get(0),
    )
}

/// Keeps an accepted roster version; the same bytes again are a no-op, other
/// bytes under a kept version are refused (the kept one stays).
pub async fn save_roster(c: &ClientWrapper, row: &RosterRow) -> Result<(), StoreError> {
    let version = i64::try_from(row.version)
        .map_err(|_| StoreError::Invalid(format!("roster version {} is too large", row.version)))?;
    c.execute(
        "INSERT INTO rosters (version, bytes, accepted_ms) VALUES ($1, $2, $3)
         ON CONFLICT (version) DO NOTHING",
        &[&version, &row.bytes, &row.accepted_ms],
    )
    .await
    .map_err(|x| pg_err("cannot keep the roster", x))?;
    let kept: Vec<u8> = c
        .query_one("SELECT bytes FROM rosters WHERE version = $1", &[&version])
        .await
        .map_err(|x| pg_err("cannot read the kept roster", x))?
        .try_get(0)
        .map_err(|e| StoreError::Corrupt(format!("a kept roster row does not decode: {e}")))?;
    if kept != row.bytes {
        return Err(StoreError::Invalid(format!(
            "roster version {} is already kept with other bytes; the kept one stays",
            row.version
        )));
    }
    Ok(())
}

/// The latest `limit` kept roster versions, newest first.
pub async fn rosters(c: &ClientWrapper, limit: usize) -> Result<Vec<RosterRow>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    c.query(
        "SELECT version, bytes, accepted_ms FROM rosters ORDER BY version DESC LIMIT $1",
        &[&limit],
    )
    .await
    .map_err(|x| pg_err("cannot read the kept rosters", x))?
    .iter()
    .map(|r| {
        let bad = |e: tokio_postgres::Error| {
            StoreError::Corrupt(format!("a kept roster row does not decode: {e}"))
        };
        Ok(RosterRow {
            version: r.try_get::<_, i64>(0).map_err(bad)?.max(0) as u64,
            bytes: r.try_get(1).map_err(bad)?,
            accepted_ms: r.try_get(2).map_err(bad)?,
        })
    })
    .collect()
}

/// Drops every outbox row of `peer`; their delivery rows become REJECTED
/// with `reason`. Both in the writer's transaction: all or nothing.
pub async fn drop_outbox(
    c: &ClientWrapper,
    peer: &str,
    reason: &str,
    now_ms: i64,
) -> Result<u64, StoreError> {
    c.execute(
        "UPDATE delivery SET state = $1, reason = $2, updated_ms = $3, next_attempt_ms = NULL
         WHERE peer = $4 AND message_id IN
             (SELECT m.message_id FROM outbox o JOIN messages m ON m.cursor = o.cursor
              WHERE o.peer = $4)",
        &[&(DeliveryState::Rejected as i32), &reason, &now_ms, &peer],
    )
    .await
    .map_err(|x| pg_err("cannot reject the dropped deliveries", x))?;
    c.execute("DELETE FROM outbox WHERE peer = $1", &[&peer])
        .await
        .map_err(|x| pg_err("cannot drop the outbox", x))
}

/// The reconciliation bucket of a creation time.
fn bucket_of(created_ms: i64) -> i64 {
    created_ms.div_euclid(SYNC_BUCKET_MS)
}

fn sync_corrupt(what: &str) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
    move |e| StoreError::Corrupt(format!("{what} does not decode: {e}"))
}

/// Adds (`sign` 1) or removes (-1) hashes to the sums of (audience,
/// bucket): read, changed with wrapping arithmetic here, written back (the
/// single writer's transaction makes this safe).
async fn bucket_apply(
    c: &ClientWrapper,
    audience: &str,
    bucket: i64,
    hashes: &[[u8; 32]],
    sign: i64,
) -> Result<(), StoreError> {
    let e = |w: &'static str| move |x| pg_err(w, x);
    let read = c
        .prepare_cached(
            "SELECT count, l0, l1, l2, l3 FROM sync_buckets WHERE audience = $1 AND bucket = $2",
        )
        .await
        .map_err(e("cannot prepare a read of a reconciliation bucket"))?;
    let row = c
        .query_opt(&read, &[&audience, &bucket])
        .await
        .map_err(e("cannot read a reconciliation bucket"))?;
    let mut cur = SyncBucket {
        bucket,
        ..SyncBucket::default()
    };
    if let Some(r) = row {
        let bad = sync_corrupt("a sync_buckets row");
        cur.count = r.try_get::<_, i64>(0).map_err(&bad)? as u64;
        for (i, lane) in cur.lanes.iter_mut().enumerate() {
            *lane = r.try_get::<_, i64>(i + 1).map_err(&bad)? as u64;
        }
    }
    for h in hashes {
        cur.add(h, sign);
    }
    if cur.count == 0 {
        c.execute(
            "DELETE FROM sync_buckets WHERE audience = $1 AND bucket = $2",
            &[&audience, &bucket],
        )
        .await
        .map_err(e("cannot drop an empty reconciliation bucket"))?;
        return Ok(());
    }
    let l = cur.lanes.map(|x| x as i64);
    let write = c
        .prepare_cached(
            "INSERT INTO sync_buckets (audience, bucket, count, l0, l1, l2, l3)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (audience, bucket) DO UPDATE SET count = excluded.count,
               l0 = excluded.l0, l1 = excluded.l1, l2 = excluded.l2, l3 = excluded.l3",
        )
        .await
        .map_err(e("cannot prepare a write of a reconciliation bucket"))?;
    c.execute(
        &write,
        &[
            &audience,
            &bucket,
            &(cur.count as i64),
            &l[0],
            &l[1],
            &l[2],
            &l[3],
        ],
    )
    .await
    .map_err(e("cannot write a reconciliation bucket"))?;
    Ok(())
}

/// Lists a new message in the reconciliation index.
/// Hashes listed or unlisted in one write, by (audience, bucket).
type Touched = std::collections::BTreeMap<(String, i64), Vec<[u8; 32]>>;

/// Lists new messages (cursor, creation time, entry) in the reconciliation
/// index in ONE statement; returns the hashes actually listed, by (audience,
/// bucket), for the caller to add to the bucket sums.
async fn sync_add(
    c: &ClientWrapper,
    listed: &[(i64, i64, &SyncEntry)],
) -> Result<Touched, StoreError> {
    let mut touched: Touched = Default::default();
    let (mut aud, mut created, mut ids, mut cursors, mut hashes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (cursor, created_ms, entry) in listed {
        for a in &entry.audiences {
            aud.push(a.as_str());
            created.push(*created_ms);
            ids.push(&entry.id[..]);
            cursors.push(*cursor);
            hashes.push(&entry.hash[..]);
        }
    }
    if aud.is_empty() {
        return Ok(touched);
    }
    let st = c
        .prepare_cached(
            "INSERT INTO sync_items (audience, created_ms, id, cursor, hash)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::bigint[], $5::bytea[])
             ON CONFLICT DO NOTHING RETURNING audience, created_ms, hash",
        )
        .await
        .map_err(|x| pg_err("cannot prepare the reconciliation listing", x))?;
    let rows = c
        .query(&st, &[&aud, &created, &ids, &cursors, &hashes])
        .await
        .map_err(|x| pg_err("cannot list messages for reconciliation", x))?;
    let bad = sync_corrupt("a listed sync_items row");
    for r in rows {
        let audience: String = r.try_get(0).map_err(&bad)?;
        let created: i64 = r.try_get(1).map_err(&bad)?;
        let hash: Vec<u8> = r.try_get(2).map_err(&bad)?;
        let hash: [u8; 32] = hash.as_slice().try_into().map_err(|_| {
            StoreError::Corrupt(format!("sync_items: a listed hash of {} bytes", hash.len()))
        })?;
        touched
            .entry((audience, bucket_of(created)))
            .or_default()
            .push(hash);
    }
    Ok(touched)
}

/// Removes messages (by cursor) from the reconciliation index: one statement
/// for the items, then one update per touched (audience, bucket).
async fn sync_remove(c: &ClientWrapper, cursors: &[i64]) -> Result<(), StoreError> {
    let rows = c
        .query(
            "DELETE FROM sync_items WHERE cursor = ANY($1) RETURNING audience, created_ms, hash, cursor",
            &[&cursors],
        )
        .await
        .map_err(|x| pg_err("cannot unlist purged messages", x))?;
    let mut touched: Touched = Default::default();
    let bad = sync_corrupt("a sync_items row");
    for r in rows {
        let audience: String = r.try_get(0).map_err(&bad)?;
        let created: i64 = r.try_get(1).map_err(&bad)?;
        let hash: Vec<u8> = r.try_get(2).map_err(&bad)?;
        let cursor: i64 = r.try_get(3).map_err(&bad)?;
        let hash: [u8; 32] = hash.as_slice().try_into().map_err(|_| {
            StoreError::Corrupt(format!(
                "sync_items: an item hash of {} bytes (cursor {cursor})",
                hash.len()
            ))
        })?;
        touched
            .entry((audience, bucket_of(created)))
            .or_default()
            .push(hash);
    }
    for ((audience, bucket), hashes) in touched {
        bucket_apply(c, &audience, bucket, &hashes, -1).await?;
    }
    Ok(())
}

/// Per-bucket sums from the bucket of `from_ms` on, over `audiences`.
pub async fn sync_buckets(
    c: &ClientWrapper,
    audiences: &[String],
    from_ms: i64,
) -> Result<Vec<SyncBucket>, StoreError> {
    let mut uniq: Vec<&str> = audiences.iter().map(String::as_str).collect();
    uniq.sort_unstable();
    uniq.dedup();
    let rows = c
        .query(
            "SELECT bucket, count, l0, l1, l2, l3 FROM sync_buckets
             WHERE audience = ANY($1) AND bucket >= $2 ORDER BY bucket",
            &[&uniq, &bucket_of(from_ms)],
        )
        .await
        .map_err(|x| pg_err("cannot read the reconciliation sums", x))?;
    let mut all: std::collections::BTreeMap<i64, SyncBucket> = Default::default();
    let bad = sync_corrupt("a sync_buckets row");
    for r in rows {
        let mut b = SyncBucket {
            bucket: r.try_get(0).map_err(&bad)?,
            count: r.try_get::<_, i64>(1).map_err(&bad)? as u64,
            lanes: [0; 4],
        };
        for (i, lane) in b.lanes.iter_mut().enumerate() {
            *lane = r.try_get::<_, i64>(i + 2).map_err(&bad)? as u64;
        }
        all.entry(b.bucket)
            .or_insert(SyncBucket {
                bucket: b.bucket,
                ..SyncBucket::default()
            })
            .merge(&b);
    }
    Ok(all.into_values().collect())
}

/// Items of one audience in `[from, to)`, in order.
pub async fn sync_items(
    c: &ClientWrapper,
    audience: &str,
    from: SyncPos,
    to: SyncPos,
    limit: usize,
) -> Result<Vec<SyncItem>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = c
        .query(
            "SELECT created_ms, id, hash FROM sync_items
             WHERE audience = $1 AND (created_ms, id) >= ($2, $3) AND (created_ms, id) < ($4, $5)
             ORDER BY created_ms, id LIMIT $6",
            &[&audience, &from.0, &&from.1[..], &to.0, &&to.1[..], &limit],
        )
        .await
        .map_err(|x| pg_err("cannot read reconciliation items", x))?;
    let bad = sync_corrupt("a sync_items row");
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let created_ms: i64 = r.try_get(0).map_err(&bad)?;
        let id: Vec<u8> = r.try_get(1).map_err(&bad)?;
        let hash: Vec<u8> = r.try_get(2).map_err(&bad)?;
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
pub async fn refused_by(
    c: &ClientWrapper,
    peer: &str,
    ids: &[String],
    since_ms: i64,
) -> Result<Vec<String>, StoreError> {
    let rejected = DeliveryState::Rejected as i32;
    let st = c
        .prepare_cached(
            "SELECT message_id FROM delivery
             WHERE peer = $1 AND state = $2 AND updated_ms >= $3 AND message_id = ANY($4)",
        )
        .await
        .map_err(|x| pg_err("cannot prepare a read", x))?;
    Ok(c.query(&st, &[&peer, &rejected, &since_ms, &ids])
        .await
        .map_err(|x| pg_err("cannot read refused deliveries", x))?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect())
}

/// Queues held messages for `peer` again (see `Storage::requeue`).
pub async fn requeue(
    c: &ClientWrapper,
    peer: &str,
    items: &[Requeue],
    now_ms: i64,
) -> Result<u64, StoreError> {
    let e = |w: &'static str| move |x| pg_err(w, x);
    let now = now_ms.max(1);
    let queued = DeliveryState::Queued as i32;
    let mut n = 0;
    for it in items {
        let Some(row) = c
            .query_opt(
                "SELECT cursor FROM messages WHERE message_id = $1 AND length(payload) > 0",
                &[&it.message_id],
            )
            .await
            .map_err(e("cannot look up a message to queue again"))?
        else {
            continue;
        };
        let cursor: i64 = row.get(0);
        if let (Some(h), Some(path)) = (&it.hops, &it.replaces_stored) {
            let path = serde_json::to_string(path)
                .map_err(|x| StoreError::Invalid(format!("storage: cannot encode a path: {x}")))?;
            c.execute(
                "UPDATE messages SET hops = $1, path = $2 WHERE cursor = $3",
                &[h, &path, &cursor],
            )
            .await
            .map_err(e("cannot record the chain of custody"))?;
        }
        // The new chain goes with this peer's entry (the message row is
        // not rewritten unless it replaces the stored one, above).
        c.execute(
            "INSERT INTO outbox (peer, cursor, enqueued_ms, not_before_ms, hops) VALUES ($1, $2, $3, $3, $4)
             ON CONFLICT (peer, cursor) DO UPDATE SET not_before_ms = excluded.not_before_ms,
               hops = COALESCE(excluded.hops, outbox.hops)",
            &[&peer, &cursor, &now, &it.hops],
        )
        .await
        .map_err(e("cannot queue a message again"))?;
        c.execute(
            "INSERT INTO delivery (message_id, peer, state, reason, attempts, updated_ms)
             VALUES ($1, $2, $3, 'queued again by reconciliation', 0, $4)
             ON CONFLICT (message_id, peer) DO UPDATE SET state = excluded.state,
               reason = excluded.reason, updated_ms = excluded.updated_ms, next_attempt_ms = NULL",
            &[&it.message_id, &peer, &queued, &now],
        )
        .await
        .map_err(e("cannot record the delivery queued again"))?;
        n += 1;
    }
    Ok(n)
}
