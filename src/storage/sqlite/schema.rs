//! Versioned schema migrations, tracked in `PRAGMA user_version`, and the
//! store's own metadata (`store_meta`: the node id the store belongs to).
//! Migrations only ever append; a schema newer than this build is refused.
use crate::storage::StoreError;
use rusqlite::Connection;

/// Migrations in order; entry `i` brings the schema from version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: messages, per-peer outbox, delivery states, rejection audit.
    r#"
    CREATE TABLE messages (
        cursor          INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id      TEXT NOT NULL UNIQUE,
        origin          TEXT NOT NULL,
        kind            INTEGER NOT NULL,
        tlp             INTEGER NOT NULL,
        severity        INTEGER NOT NULL DEFAULT 0,
        sectors         INTEGER NOT NULL DEFAULT 0,
        exercise        INTEGER NOT NULL DEFAULT 0,
        created_ms      INTEGER NOT NULL,
        expires_ms      INTEGER,
        received_ms     INTEGER NOT NULL,
        from_peer       TEXT,
        path            TEXT NOT NULL DEFAULT '[]',
        header          BLOB NOT NULL,
        payload         BLOB NOT NULL,
        signature       BLOB NOT NULL,
        superseded_by   TEXT,
        acknowledged_ms INTEGER
    );
    CREATE INDEX messages_kind_created ON messages(kind, created_ms);
    CREATE TABLE outbox (
        peer        TEXT NOT NULL,
        cursor      INTEGER NOT NULL,
        enqueued_ms INTEGER NOT NULL,
        PRIMARY KEY (peer, cursor)
    ) WITHOUT ROWID;
    CREATE TABLE delivery (
        message_id TEXT NOT NULL,
        peer       TEXT NOT NULL,
        state      INTEGER NOT NULL,
        reason     TEXT NOT NULL DEFAULT '',
        attempts   INTEGER NOT NULL DEFAULT 0,
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY (message_id, peer)
    ) WITHOUT ROWID;
    CREATE TABLE rejections (
        id         INTEGER PRIMARY KEY,
        at_ms      INTEGER NOT NULL,
        from_peer  TEXT NOT NULL,
        message_id TEXT NOT NULL,
        reason     TEXT NOT NULL
    );
    "#,
    // 2: end-to-end encryption (plaintext kept only where this node is a
    // recipient; relays keep ciphertext until forwarded) and assistance threads.
    r#"
    ALTER TABLE messages ADD COLUMN readable INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE messages ADD COLUMN plain BLOB;
    ALTER TABLE messages ADD COLUMN request_id TEXT;
    CREATE INDEX messages_request ON messages(request_id) WHERE request_id IS NOT NULL;
    "#,
    // 3: receipts from recipients, kept by the origin.
    r#"
    CREATE TABLE receipts (
        message_id TEXT NOT NULL,
        node       TEXT NOT NULL,
        state      INTEGER NOT NULL,
        reason     TEXT NOT NULL DEFAULT '',
        at_ms      INTEGER NOT NULL,
        PRIMARY KEY (message_id, node)
    ) WITHOUT ROWID;
    "#,
    // 4: the signed chain of custody received with each message (plus this
    // node's own record when it relays).
    r#"
    ALTER TABLE messages ADD COLUMN hops BLOB;
    "#,
    // 5: client-chosen request ids of operator actions (idempotent retries,
    // AIP-155), kept for a window and then purged.
    r#"
    CREATE TABLE request_ids (
        request_id  TEXT PRIMARY KEY,
        fingerprint BLOB NOT NULL,
        message_id  TEXT NOT NULL,
        response    BLOB,
        created_ms  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX request_ids_created ON request_ids(created_ms);
    "#,
    // 6: who the store belongs to (node id, creation time), and an index for
    // the retention purge (oldest first, per TLP).
    r#"
    CREATE TABLE store_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX messages_tlp_created ON messages(tlp, created_ms);
    "#,
    // 7: deliveries a peer deferred (a temporary refusal: kept in the outbox,
    // offered again from `not_before_ms`), and supersede marks waiting for an
    // original that has not arrived yet (an update that overtook it).
    r#"
    ALTER TABLE outbox ADD COLUMN not_before_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE outbox ADD COLUMN deferrals INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX outbox_deferred ON outbox(peer, not_before_ms) WHERE not_before_ms > 0;
    ALTER TABLE delivery ADD COLUMN next_attempt_ms INTEGER;
    CREATE TABLE pending_supersede (
        original   TEXT NOT NULL,
        origin     TEXT NOT NULL,
        by_id      TEXT NOT NULL REFERENCES messages(message_id) ON DELETE CASCADE,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (original, by_id)
    ) WITHOUT ROWID;
    CREATE INDEX pending_supersede_by ON pending_supersede(by_id);
    "#,
    // 8: find a message's outbox rows by cursor alone (the relay purge after an
    // acknowledgement asks whether any peer still waits for it; without this
    // index that question scans the whole outbox).
    r#"
    CREATE INDEX outbox_cursor ON outbox(cursor);
    "#,
    // 9: incidents across partners: the incident a message belongs to (from its
    // signed header) and correlation keys (indicators; alerts named by
    // assistance requests), so an arrival is matched without a scan.
    r#"
    ALTER TABLE messages ADD COLUMN incident_id TEXT;
    CREATE INDEX messages_incident ON messages(incident_id) WHERE incident_id IS NOT NULL;
    CREATE TABLE message_keys (
        key        TEXT NOT NULL,
        message_id TEXT NOT NULL,
        PRIMARY KEY (key, message_id)
    ) WITHOUT ROWID;
    CREATE INDEX message_keys_message ON message_keys(message_id);
    "#,
    // 10 (issue 14): the chain of federation rosters this node accepted, one
    // signed roster per version.
    r#"
    CREATE TABLE rosters (
        version     INTEGER PRIMARY KEY,
        bytes       BLOB NOT NULL,
        accepted_ms INTEGER NOT NULL
    );
    "#,
    // 11 (issue 12): set reconciliation index: one item per (audience, message) in
    // (created, id) order, and per-(audience, 10-minute bucket) count and
    // lane-wise sums of the items' hashes, kept up to date on insert and purge
    // so that coarse ranges are answered without a scan. Messages stored
    // before this version are not indexed.
    r#"
    CREATE TABLE sync_items (
        audience   TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        id         BLOB NOT NULL,
        cursor     INTEGER NOT NULL,
        hash       BLOB NOT NULL,
        PRIMARY KEY (audience, created_ms, id)
    ) WITHOUT ROWID;
    CREATE INDEX sync_items_cursor ON sync_items(cursor);
    CREATE TABLE sync_buckets (
        audience TEXT NOT NULL,
        bucket   INTEGER NOT NULL,
        count    INTEGER NOT NULL,
        l0 INTEGER NOT NULL, l1 INTEGER NOT NULL, l2 INTEGER NOT NULL, l3 INTEGER NOT NULL,
        PRIMARY KEY (audience, bucket)
    ) WITHOUT ROWID;
    "#,
    // 12: stored messages counted per kind, kept up to date in the insert and
    // purge transactions, so that GetNodeInfo answers without a scan (a COUNT
    // over a million stored messages cost about a second of CPU per call).
    r#"
    CREATE TABLE message_counts (
        kind INTEGER PRIMARY KEY,
        n    INTEGER NOT NULL
    );
    INSERT INTO message_counts (kind, n) SELECT kind, COUNT(*) FROM messages GROUP BY kind;
    "#,
    // 13: the chain of custody a message is sent again with (reconciliation,
    // grafts: this node's own record appended) is kept with that peer's
    // outbox entry, not written into the stored message: queueing 100,000
    // messages again no longer rewrites 100,000 message rows (random pages
    // of the largest table), and each peer's record names that peer.
    r#"
    ALTER TABLE outbox ADD COLUMN hops BLOB;
    "#,
    // 14: relayed ciphertext still kept (a relay empties it a while after
    // every peer has it, not at once: until then it answers requests for a
    // shorter copy, `domain::hop_limit`); the emptying pass reads only these.
    r#"
    CREATE INDEX messages_relayed ON messages(received_ms) WHERE readable = 0 AND payload != x'';
    "#,
    // 15: the (kind, created) index goes: every alert listing read and
    // sorted all alerts through it (a listing now walks cursors backwards
    // and stops at its page), and each insert paid for it. The kinds listed
    // by kind (assistance requests) get a partial index that alerts and
    // receipts, nearly every insert, skip. The messages that open an
    // incident get one too: listing incidents walked every message
    // backwards to find the few that do.
    r#"
    DROP INDEX messages_kind_created;
    CREATE INDEX messages_kind ON messages(kind) WHERE kind NOT IN (1, 6);
    CREATE INDEX messages_openers ON messages(cursor) WHERE incident_id = message_id;
    "#,
    // 16: alerts by origin, newest first: a listing filtered by origin
    // walked every alert backwards until its page was full, the whole store
    // for an origin that sent few (`queries::list_alerts`).
    r#"
    CREATE INDEX messages_origin ON messages(origin, cursor) WHERE kind = 1;
    "#,
    // 17: a message's reconciliation audiences are kept in its row (a JSON
    // list, NULL when it has no items), and the purge finds its items by
    // their primary key: the by-cursor index of `sync_items`, one more
    // B-tree entry in every insert for the purge alone, goes. Rows stored
    // before this version (cursor up to `sync_legacy_cursor`) have no list:
    // the purge looks for their items under every audience.
    r#"
    ALTER TABLE messages ADD COLUMN sync_audiences TEXT;
    INSERT OR REPLACE INTO store_meta (key, value)
        SELECT 'sync_legacy_cursor', CAST(COALESCE(MAX(cursor), 0) AS TEXT) FROM messages;
    DROP INDEX sync_items_cursor;
    "#,
    // 18: the correlation keys' by-message index goes too (one B-tree entry
    // per key in every insert, for the purge alone): the purge finds a
    // message's key rows by their primary key, from the keys its row gives
    // again (`PurgePlan::keys_of`, the same derivation admission used).
    r#"
    DROP INDEX message_keys_message;
    "#,
];

/// The schema version this build writes.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// The node id recorded in the store, if any (none in a store created before
/// version 6, until it is opened once by this build).
pub fn owner(conn: &Connection) -> Result<Option<String>, StoreError> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row(
            "SELECT value FROM store_meta WHERE key = 'node_id'",
            [],
            |r| r.get(0),
        )
        .optional()?)
}

/// Records the node the store belongs to and when it was recorded.
pub fn set_owner(conn: &Connection, node_id: &str, now_ms: i64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO store_meta (key, value) VALUES ('node_id', ?1), ('owner_recorded_ms', ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        rusqlite::params![node_id, now_ms.to_string()],
    )?;
    Ok(())
}

/// Applies every migration above the database's version, each in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > CURRENT_VERSION {
        return Err(StoreError::Invalid(format!(
            "storage: database schema version {version} is newer than this certfed knows ({CURRENT_VERSION}); run a newer certfed or restore a backup"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "storage: schema migrated");
    }
    Ok(())
}
