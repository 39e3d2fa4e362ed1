//! Versioned schema migrations of the PostgreSQL backend, tracked in
//! `store_meta` (`schema_version`), and the store's own metadata (the node id
//! the database belongs to). Migrations only ever append; a schema newer than
//! this build is refused; two processes opening one database at once migrate
//! it once (the whole step runs under a transaction-scoped advisory lock).
//!
//! The tables mirror the SQLite backend's (same names, same meaning) so the
//! two stay easy to compare; text compared for ordering uses the "C"
//! collation (byte order, as SQLite compares), and the active/standby lease
//! (`lease`, one row) and the members of the pair (`ha_members`) live here too.
use crate::storage::StoreError;
use deadpool_postgres::Object;

/// Migrations in order; entry `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the whole store as of SQLite schema version 8, plus the lease.
    r#"
    CREATE TABLE messages (
        cursor          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        message_id      TEXT COLLATE "C" NOT NULL UNIQUE,
        origin          TEXT COLLATE "C" NOT NULL,
        kind            INTEGER NOT NULL,
        tlp             INTEGER NOT NULL,
        severity        INTEGER NOT NULL DEFAULT 0,
        sectors         BIGINT NOT NULL DEFAULT 0,
        exercise        BOOLEAN NOT NULL DEFAULT false,
        created_ms      BIGINT NOT NULL,
        expires_ms      BIGINT,
        received_ms     BIGINT NOT NULL,
        from_peer       TEXT COLLATE "C",
        path            TEXT NOT NULL DEFAULT '[]',
        header          BYTEA NOT NULL,
        payload         BYTEA NOT NULL,
        signature       BYTEA NOT NULL,
        superseded_by   TEXT COLLATE "C",
        acknowledged_ms BIGINT,
        readable        BOOLEAN NOT NULL DEFAULT true,
        plain           BYTEA,
        request_id      TEXT COLLATE "C",
        hops            BYTEA
    );
    CREATE INDEX messages_kind_created ON messages(kind, created_ms);
    CREATE INDEX messages_request ON messages(request_id) WHERE request_id IS NOT NULL;
    CREATE INDEX messages_tlp_created ON messages(tlp, created_ms);
    CREATE TABLE outbox (
        peer          TEXT COLLATE "C" NOT NULL,
        cursor        BIGINT NOT NULL,
        enqueued_ms   BIGINT NOT NULL,
        not_before_ms BIGINT NOT NULL DEFAULT 0,
        deferrals     INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (peer, cursor)
    );
    CREATE INDEX outbox_cursor ON outbox(cursor);
    CREATE INDEX outbox_deferred ON outbox(peer, not_before_ms) WHERE not_before_ms > 0;
    CREATE TABLE delivery (
        message_id      TEXT COLLATE "C" NOT NULL,
        peer            TEXT COLLATE "C" NOT NULL,
        state           INTEGER NOT NULL,
        reason          TEXT NOT NULL DEFAULT '',
        attempts        INTEGER NOT NULL DEFAULT 0,
        updated_ms      BIGINT NOT NULL,
        next_attempt_ms BIGINT,
        PRIMARY KEY (message_id, peer)
    );
    CREATE TABLE rejections (
        id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at_ms      BIGINT NOT NULL,
        from_peer  TEXT NOT NULL,
        message_id TEXT NOT NULL,
        reason     TEXT NOT NULL
    );
    CREATE TABLE receipts (
        message_id TEXT COLLATE "C" NOT NULL,
        node       TEXT COLLATE "C" NOT NULL,
        state      INTEGER NOT NULL,
        reason     TEXT NOT NULL DEFAULT '',
        at_ms      BIGINT NOT NULL,
        PRIMARY KEY (message_id, node)
    );
    CREATE TABLE request_ids (
        request_id  TEXT COLLATE "C" PRIMARY KEY,
        fingerprint BYTEA NOT NULL,
        message_id  TEXT NOT NULL,
        response    BYTEA,
        created_ms  BIGINT NOT NULL
    );
    CREATE INDEX request_ids_created ON request_ids(created_ms);
    CREATE TABLE pending_supersede (
        original   TEXT COLLATE "C" NOT NULL,
        origin     TEXT COLLATE "C" NOT NULL,
        by_id      TEXT COLLATE "C" NOT NULL REFERENCES messages(message_id) ON DELETE CASCADE,
        created_ms BIGINT NOT NULL,
        PRIMARY KEY (original, by_id)
    );
    CREATE INDEX pending_supersede_by ON pending_supersede(by_id);
    CREATE TABLE lease (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        epoch       BIGINT NOT NULL,
        holder      TEXT NOT NULL,
        acquired_at TIMESTAMPTZ NOT NULL,
        renewed_at  TIMESTAMPTZ NOT NULL,
        expires_at  TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE ha_members (
        holder  TEXT PRIMARY KEY,
        seen_at TIMESTAMPTZ NOT NULL
    );
    "#,
    // 2: incidents across partners (SQLite's migration 9): the incident a
    // message belongs to and its correlation keys.
    r#"
    ALTER TABLE messages ADD COLUMN incident_id TEXT;
    CREATE INDEX messages_incident ON messages(incident_id) WHERE incident_id IS NOT NULL;
    CREATE TABLE message_keys (
        key        TEXT NOT NULL,
        message_id TEXT NOT NULL,
        PRIMARY KEY (key, message_id)
    );
    CREATE INDEX message_keys_message ON message_keys(message_id);
    "#,
    // 3: the chain of federation rosters this node accepted (issue 14;
    // SQLite's migration 10), one signed roster per version.
    r#"
    CREATE TABLE rosters (
        version     BIGINT PRIMARY KEY,
        bytes       BYTEA NOT NULL,
        accepted_ms BIGINT NOT NULL
    );
    "#,
    // 4: the set reconciliation index (issue 12; SQLite's migration 11): one
    // item per (audience, message) in (created, id) order, and per-(audience,
    // 10-minute bucket) count and lane-wise wrapping sums of the items'
    // hashes (u64 lanes stored as their BIGINT bit patterns), kept up to date
    // on insert and purge. Messages stored before this version are not indexed.
    r#"
    CREATE TABLE sync_items (
        audience   TEXT COLLATE "C" NOT NULL,
        created_ms BIGINT NOT NULL,
        id         BYTEA NOT NULL,
        cursor     BIGINT NOT NULL,
        hash       BYTEA NOT NULL,
        PRIMARY KEY (audience, created_ms, id)
    );
    CREATE INDEX sync_items_cursor ON sync_items(cursor);
    CREATE TABLE sync_buckets (
        audience TEXT COLLATE "C" NOT NULL,
        bucket   BIGINT NOT NULL,
        count    BIGINT NOT NULL,
        l0 BIGINT NOT NULL, l1 BIGINT NOT NULL, l2 BIGINT NOT NULL, l3 BIGINT NOT NULL,
        PRIMARY KEY (audience, bucket)
    );
    "#,
    // 5: stored messages counted per kind, kept up to date in the insert and
    // purge transactions (SQLite's migration 12), so that GetNodeInfo answers
    // without a scan.
    r#"
    CREATE TABLE message_counts (
        kind INTEGER PRIMARY KEY,
        n    BIGINT NOT NULL
    );
    INSERT INTO message_counts (kind, n) SELECT kind, COUNT(*) FROM messages GROUP BY kind;
    "#,
    // 6: correlation keys compared in byte order (the "C" collation, as
    // SQLite compares: no locale comparison on every index step of an
    // insert), and each key row carries its message's incident, with an
    // index of incident members only: finding the incidents under a key
    // costs the members under it, not every message that ever carried it.
    r#"
    ALTER TABLE message_keys
        ALTER COLUMN key TYPE TEXT COLLATE "C",
        ALTER COLUMN message_id TYPE TEXT COLLATE "C",
        ADD COLUMN incident_id TEXT COLLATE "C";
    UPDATE message_keys k SET incident_id = m.incident_id FROM messages m
        WHERE m.message_id = k.message_id AND m.incident_id IS NOT NULL;
    CREATE INDEX message_keys_incident ON message_keys(key, incident_id)
        WHERE incident_id IS NOT NULL;
    "#,
    // 7: the chain of custody a message is sent again with (reconciliation,
    // grafts) is kept with that peer's outbox entry, not written into the
    // stored message (see the SQLite schema, migration 13).
    r#"
    ALTER TABLE outbox ADD COLUMN IF NOT EXISTS hops BYTEA;
    "#,
    // 8: relayed ciphertext still kept (see the SQLite schema, migration 14).
    r#"
    CREATE INDEX IF NOT EXISTS messages_relayed ON messages(received_ms)
        WHERE NOT readable AND octet_length(payload) > 0;
    "#,
    // 9: the (kind, created) index goes; the kinds listed by kind and the
    // messages that open an incident get partial indexes (see the SQLite
    // schema, migration 15). Without
    // statistics (a table just filled, before autovacuum analyzes it) the
    // planner read every alert through it for each page of a listing.
    r#"
    DROP INDEX IF EXISTS messages_kind_created;
    CREATE INDEX IF NOT EXISTS messages_kind ON messages(kind) WHERE kind NOT IN (1, 6);
    CREATE INDEX IF NOT EXISTS messages_openers ON messages(cursor) WHERE incident_id = message_id;
    "#,
    // 10: alerts by origin, newest first (see the SQLite schema, migration 16).
    r#"
    CREATE INDEX IF NOT EXISTS messages_origin ON messages(origin, cursor) WHERE kind = 1;
    "#,
];

/// The schema version this build writes.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// Advisory lock key held while migrating (any constant; "certfed" in ASCII).
const MIGRATE_LOCK: i64 = 0x0063_6572_7466_6564;

/// Applies every migration above the database's version and checks (or
/// records) the node the store belongs to, in one transaction.
pub async fn migrate(
    client: &mut Object,
    node_id: &str,
    describe: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let e = |what: &str, err: tokio_postgres::Error| super::pg_err(what, err);
    let tx = client
        .transaction()
        .await
        .map_err(|x| e("cannot begin the migration", x))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .await
        .map_err(|x| e("cannot lock the schema", x))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    )
    .await
    .map_err(|x| e("cannot create store_meta", x))?;
    let version: i64 = tx
        .query_opt(
            "SELECT value FROM store_meta WHERE key = 'schema_version'",
            &[],
        )
        .await
        .map_err(|x| e("cannot read the schema version", x))?
        .map(|r| r.get::<_, String>(0))
        .map_or(Ok(0), |v| v.parse::<i64>())
        .map_err(|_| {
            StoreError::Corrupt(format!(
                "{describe}: store_meta.schema_version is not a number"
            ))
        })?;
    if version > CURRENT_VERSION {
        return Err(StoreError::Invalid(format!(
            "storage: {describe}: database schema version {version} is newer than this certfed knows ({CURRENT_VERSION}); run a newer certfed or restore a backup"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(sql)
            .await
            .map_err(|x| e(&format!("cannot apply schema migration {}", i + 1), x))?;
        tracing::info!(version = i + 1, "storage: schema migrated (postgres)");
    }
    tx.execute(
        "INSERT INTO store_meta (key, value) VALUES ('schema_version', $1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&CURRENT_VERSION.to_string()],
    )
    .await
    .map_err(|x| e("cannot record the schema version", x))?;
    let owner: Option<String> = tx
        .query_opt("SELECT value FROM store_meta WHERE key = 'node_id'", &[])
        .await
        .map_err(|x| e("cannot read the store owner", x))?
        .map(|r| r.get(0));
    match owner {
        Some(o) if o != node_id => {
            return Err(StoreError::Invalid(format!(
                "storage: {describe} holds the store of node {o} (recorded in its store_meta table), but node.id is {node_id}: a node never serves another node's messages and outboxes. Point storage.url at this node's own database"
            )));
        }
        Some(_) => {}
        None => {
            tx.execute(
                "INSERT INTO store_meta (key, value) VALUES ('node_id', $1), ('owner_recorded_ms', $2)",
                &[&node_id, &now_ms.to_string()],
            )
            .await
            .map_err(|x| e("cannot record the store owner", x))?;
        }
    }
    tx.commit()
        .await
        .map_err(|x| e("cannot commit the migration", x))?;
    Ok(())
}
