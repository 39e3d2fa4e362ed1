//! The embedded SQLite backend: one database file (WAL, `synchronous=FULL`) in
//! `storage.dir`, with versioned migrations, an exclusive directory lock, one
//! writer thread doing group commit, and a small pool of read connections.
//!
//! Every write is a job run inside a savepoint of a shared transaction; the
//! writer drains whatever jobs are queued, commits once (one fsync for the
//! batch) and only then answers each caller. A job that returns an error rolls
//! back its own savepoint and leaves the others untouched. A job alone in its
//! batch runs in the transaction without a savepoint (which would first copy
//! every page it changes into a sub-journal); if it fails, the transaction is
//! rolled back, which undoes exactly that job. If the transaction itself
//! fails (cannot begin, a savepoint cannot be opened or closed, the commit
//! fails — a full disk does this), every job of the batch is answered with
//! that error and nothing of the batch is kept.
//!
//! A savepoint's copies stay in memory up to 120 KiB (SQLite's
//! `SQLITE_STMTJRNL_SPILL`, set for the bundled build in `.cargo/config.toml`),
//! past which they spill to a temporary file: at SQLite's default of 64 KiB,
//! less than one stored message's pages, each commit of several jobs created
//! and unlinked one. It must stay under 128 KiB: a spill writes its first
//! chunk in one call, and SQLite's unix VFS writes at most 128 KiB - 1 bytes
//! a call, failing larger ones as a full disk.
//!
//! Each connection keeps a page cache of its own ([`WRITER_CACHE_KIB`],
//! [`READER_CACHE_KIB`]; the writer's is [`LARGE_CACHE_KIB`] for the length
//! of a transaction storing many messages, so that its dirty pages do not
//! push out the index pages it walks): the bundled build undefines
//! libsqlite3-sys's `SQLITE_ENABLE_MEMORY_MANAGEMENT`, under which all
//! connections of the process share one cache behind a mutex that every page
//! fetch takes.
//!
//! Small reads on the message path (a duplicate check, a message by id, the
//! next page of an outbox or of new messages, an arrival's incident matches
//! when the key index yields at most `INLINE_ROWS` rows) run
//! on the calling thread (`SqliteStore::read_small`, `read_page`): on a
//! 37-node federation, handing each to the blocking pool and back (futex
//! wake-ups and parking) cost more CPU than the reads themselves.
//!
//! Checkpoints (copying the write-ahead log back into the database file, with
//! an fsync of that file) never run on the writer: SQLite's automatic
//! checkpoint is off on the writer's connection, and a checkpointer thread
//! with its own connection runs a PASSIVE checkpoint (which never blocks the
//! writer nor readers) whenever the writer has seen the log pass
//! [`CHECKPOINT_AT`] bytes after a commit. A commit therefore costs its own
//! pages and one fsync of the log, never a checkpoint (a single-message
//! commit writes about 14 pages: at 1,000 of them a second the automatic
//! checkpoint ran every ~70 commits, inside one of them, with an fsync of
//! the database file: 4-36 ms seen on a busy disk).
//!
//! Opening refuses, with an error that names the file and says what to do,
//! instead of serving or writing to a store it cannot trust:
//! - a database that fails the integrity check (`quick_check` by default);
//! - a folder whose marker file (`certfed.marker`, written when the store was
//!   created) says a store lived here while `certfed.db` is missing or empty:
//!   the database was deleted or truncated, and starting empty would silently
//!   drop every message the node held;
//! - a store recorded (in the marker or in the database) for another node id.
//!
//! Damage found while running (`SQLITE_CORRUPT`, a row that does not decode)
//! is [`StoreError::Corrupt`]: logged at ERROR once, and every later write is
//! refused with it, so nothing more is written into a broken file.
//!
//! Every connection runs with the query planner stability guarantee (QPSG):
//! a cached statement keeps its plan whatever values are bound to it. Without
//! it SQLite recompiles a statement at every step whose bound parameter could
//! decide whether a partial index applies (`not_before_ms > ?` against the
//! index on `not_before_ms > 0`) — a full SQL parse per call, which was an
//! eighth of a busy node's CPU. Queries that should use a partial index
//! repeat its condition literally (`AND not_before_ms > 0`).
//!
//! No type of the SQLite driver leaves this folder.
mod queries;
mod schema;

use super::{
    AlertQuery, Claim, Deferral, DeliveryRow, Durability, IntegrityCheck, NewMessage, OpenOptions,
    OutboxItem, Outcome, Pending, PurgePlan, Purged, ReceiptRow, RejectionRow, RequestRecord,
    Requeue, RosterRow, Space, Storage, Store, StoreError, Stored, StoredMessage, SyncBucket,
    SyncItem, SyncPos,
};
use rusqlite::{Connection, OpenFlags};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};

/// Classifies a driver error: a full disk and a damaged file are told apart
/// from other failures, because callers treat them differently.
pub(crate) fn sql_err(context: &str, e: rusqlite::Error) -> StoreError {
    use rusqlite::{Error as E, ErrorCode};
    // A row this backend wrote that no longer decodes was damaged on disk
    // (a NULL where a value was expected is a query's fault, not damage).
    if matches!(
        e,
        E::FromSqlConversionFailure(..) | E::IntegralValueOutOfRange(..) | E::Utf8Error(..)
    ) || matches!(e, E::InvalidColumnType(_, _, t) if t != rusqlite::types::Type::Null)
    {
        return StoreError::Corrupt(format!("{context}: a stored row does not decode: {e}"));
    }
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::Full(format!("{context}: {e}")),
        Some(ErrorCode::DatabaseCorrupt) | Some(ErrorCode::NotADatabase) => {
            StoreError::Corrupt(format!("{context}: {e}"))
        }
        _ => StoreError::backend(context, e),
    }
}

/// `?` on driver errors inside this backend.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        sql_err("database error", e)
    }
}

/// A unit of work for the writer thread.
trait WriteJob: Send {
    /// Runs the job in the open transaction; true if it succeeded.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller: with the job's own result if the batch committed,
    /// else with the batch's error.
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
    fn durability(&self) -> Durability;
    /// Messages the job stores (0 for other work): how large its share of
    /// the transaction's dirty pages is ([`LARGE_TRANSACTION`]).
    fn messages(&self) -> usize;
}

struct TypedJob<T, F> {
    f: Option<F>,
    result: Option<Result<T, StoreError>>,
    tx: oneshot::Sender<Result<T, StoreError>>,
    durability: Durability,
    messages: usize,
}

impl<T, F> WriteJob for TypedJob<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let f = self.f.take().expect("a job runs once");
        let r = f(conn);
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let answer = match (commit, self.result) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(r)) => r,
            (Ok(()), None) => Err(StoreError::Invalid(
                "storage: internal error: a write job was answered without running".into(),
            )),
        };
        let _ = self.tx.send(answer);
    }

    fn durability(&self) -> Durability {
        self.durability
    }

    fn messages(&self) -> usize {
        self.messages
    }
}

/// Most jobs folded into one commit.
const MAX_BATCH: usize = 2048;
/// Size of the write-ahead log past which the checkpointer is woken: four
/// times SQLite's automatic threshold of 1,000 pages, so a page written by
/// many commits (an index's last leaf, the counts, a bucket sum) is copied to
/// the database file once per checkpoint, a quarter as often.
pub const CHECKPOINT_AT: u64 = 16 * 1024 * 1024;
/// Read connections kept open for reuse.
const READ_POOL: usize = 8;
/// Most rows (or ids) a read may touch to run on the calling task's thread
/// instead of the blocking pool (`SqliteStore::read_small`). A page asked
/// for more rows reads this many here and the rest, if the first part comes
/// back full, on the pool (`SqliteStore::read_page`): on a federation link
/// a page usually holds a few rows; a single link at full speed reads full
/// pages of 1,024, which read here held up the async workers (ingest fell
/// by a third when they were).
const INLINE_ROWS: usize = 32;

/// Page cache of each read connection, in KiB (SQLite's default is 2,000
/// KiB per connection). In WAL mode a reader's cache is discarded whenever
/// the database changed since its last read, which on a node receiving
/// traffic is every read: a larger cache holds nothing reused, only memory
/// (eight pooled readers at the default held 17 MiB of a 100,000-message
/// reconciliation's receiver, `certfed bench --reconcile`).
const READER_CACHE_KIB: i64 = 256;
/// Page cache of the write connection, in KiB (half SQLite's default). Its
/// cache stays valid across its own commits, and what it reuses is the right
/// edge of each index that appends go to and the interior pages above it,
/// well under this; the rest fills it only with pages written once. In the
/// 37-node benchmark it was the largest user of each node's heap (1.2 MiB
/// of 2.8 MiB, growing with the store); at 1,024 KiB the nodes' resident
/// memory fell by 0.7–1.0 MiB and ingest of 250,000 alerts measured the same
/// (`certfed bench --federation`, `certfed bench --messages 250000`).
/// A transaction storing many messages runs with [`LARGE_CACHE_KIB`].
const WRITER_CACHE_KIB: i64 = 1024;
/// Dirty pages a write transaction may hold in memory before it writes some
/// to the log ahead of its commit (16 MiB of 4 KiB pages; the cache itself
/// is [`WRITER_CACHE_KIB`]). A full batch of ingested alerts dirties about 3
/// MiB; a spill before then cost the writer 3 µs per alert, much of it the
/// same pages written twice. Larger transactions (a migration building an
/// index over a large store) still spill, so their memory stays bounded.
const SPILL_PAGES: i64 = 4096;
/// Messages stored by one transaction from which the writer's cache is
/// [`LARGE_CACHE_KIB`] while it runs. Each message dirties about two pages,
/// new or changed; with more dirty pages than [`WRITER_CACHE_KIB`] holds,
/// SQLite recycled every clean page for each page it fetched — the roots
/// and interior pages of the indexes each insert walks — and read them
/// again from the file, about one read per two messages of an ingested
/// batch.
const LARGE_TRANSACTION: usize = 32;
/// The writer's cache while a large transaction runs: its dirty pages up
/// to [`SPILL_PAGES`] (4 KiB each) and [`WRITER_CACHE_KIB`] beside them.
/// Pages are allocated as they are used, and freed down to
/// [`WRITER_CACHE_KIB`] after the commit.
const LARGE_CACHE_KIB: i64 = WRITER_CACHE_KIB + SPILL_PAGES * 4;
/// Prepared statements kept per connection (see [`open_conn`]).
const STATEMENT_CACHE: usize = 256;
/// The database file in `storage.dir`.
pub const DB_FILE: &str = "certfed.db";
const LOCK_FILE: &str = "LOCK";
/// Written once the store exists: its presence with a missing or empty
/// database means the database was lost, not that the node is new.
pub const MARKER_FILE: &str = "certfed.marker";

/// The SQLite store; cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Option<mpsc::Sender<Box<dyn WriteJob>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    db_path: PathBuf,
    /// Set when damage is first seen; every later write is refused with it.
    damaged: OnceLock<String>,
    _lock: File,
}

impl Inner {
    /// Runs `f` on a pooled read connection (opened when the pool is empty;
    /// at most [`READ_POOL`] are kept).
    fn with_reader<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError>,
    {
        let conn = self.readers.lock().expect("readers lock").pop();
        let conn = match conn {
            Some(c) => c,
            None => open_conn(&self.db_path, true)?,
        };
        let r = f(&conn);
        let mut pool = self.readers.lock().expect("readers lock");
        if pool.len() < READ_POOL {
            pool.push(conn);
        }
        r
    }
}

fn open_conn(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| sql_err(&format!("{}: cannot open", path.display()), e))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // No foreign-key enforcement: with it on, every message insert (the
    // parent of `pending_supersede`) ran the key checks inside a statement
    // journal, copying each page it first touched (1.5 µs of the writer's
    // CPU per ingested alert). The one cascade it gave, dropping the
    // supersede marks of a purged update, is done by the purge itself.
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    // A transaction keeps up to SPILL_PAGES dirty pages in memory until it
    // commits, instead of writing them to the log early once the cache is
    // full: the pages it keeps changing (an index's last leaf and the pages
    // above it) were written to the log again each time they were spilled.
    conn.pragma_update(None, "cache_spill", SPILL_PAGES)?;
    let cache_kib = if read_only {
        READER_CACHE_KIB
    } else {
        WRITER_CACHE_KIB
    };
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    // Room for every statement this backend caches (rusqlite keeps 16 by
    // default; more distinct statements than that evict each other and each
    // miss is a full SQL parse).
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Opens (creating if needed) the SQLite store in `dir`, as a [`Store`].
pub fn open(dir: &Path, opts: &OpenOptions) -> Result<Store, StoreError> {
    Ok(Arc::new(SqliteStore::open(dir, opts)?))
}

/// Size in bytes of the database file in `dir` (0 if there is none): lets the
/// caller tell a service manager how long the integrity check may take.
pub fn db_size(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(DB_FILE)).map_or(0, |m| m.len())
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir` for node `opts.node_id`.
    /// Refuses if another process holds the directory lock, if the schema is
    /// newer than this build knows, if the database is damaged, missing or
    /// truncated while the folder's marker says a store lived here, or if the
    /// store belongs to another node (see the module documentation).
    pub fn open(dir: &Path, opts: &OpenOptions) -> Result<SqliteStore, StoreError> {
        create_private_dir(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let io = |what: String, e: std::io::Error| StoreError::backend(what, e);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io(format!("{}: cannot open lock file", lock_path.display()), e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Invalid(format!(
                    "storage.dir {} is in use by another certfed process (lock {} is held); stop that process or choose another storage.dir",
                    dir.display(),
                    lock_path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io(format!("{}: cannot lock", lock_path.display()), e));
            }
        }
        let db_path = dir.join(DB_FILE);
        let marker_path = dir.join(MARKER_FILE);
        let marker = marker::read(&marker_path)?;
        if let Some(m) = &marker
            && m.node_id != opts.node_id
        {
            return Err(refuse::foreign(
                dir,
                &marker_path,
                &m.node_id,
                &opts.node_id,
            ));
        }
        let db_len = match std::fs::metadata(&db_path) {
            Ok(m) => Some(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(format!("{}: cannot read", db_path.display()), e)),
        };
        let fresh = match (db_len, &marker) {
            (None | Some(0), Some(m)) => {
                return Err(refuse::vanished(dir, &db_path, db_len, &marker_path, m));
            }
            (None | Some(0), None) => {
                let wal = dir.join(format!("{DB_FILE}-wal"));
                if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
                    return Err(refuse::damaged(
                        dir,
                        &db_path,
                        &format!(
                            "the database file is {} but its write-ahead log {} is not empty",
                            if db_len.is_none() { "missing" } else { "empty" },
                            wal.display()
                        ),
                    ));
                }
                true
            }
            (Some(_), _) => false,
        };
        // Damage met anywhere while opening is refused the same way.
        let damaged = |e: StoreError| match e {
            StoreError::Corrupt(detail) => refuse::damaged(dir, &db_path, &detail),
            other => other,
        };
        let mut conn = open_conn(&db_path, false)?;
        let started = std::time::Instant::now();
        check(
            &conn,
            if fresh {
                IntegrityCheck::Off
            } else {
                opts.integrity
            },
        )
        .map_err(damaged)?;
        if !fresh && opts.integrity != IntegrityCheck::Off {
            tracing::info!(
                file = %db_path.display(),
                bytes = db_len.unwrap_or(0),
                check = ?opts.integrity,
                seconds = started.elapsed().as_secs_f64(),
                "storage: integrity check passed"
            );
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        // The WAL is truncated back to this size after a checkpoint, so a
        // burst of writes (or a purge) does not leave a large file behind;
        // and the file is larger than this only while more than this much of
        // log has not been checkpointed (what wakes the checkpointer).
        conn.pragma_update(None, "journal_size_limit", CHECKPOINT_AT as i64)?;
        schema::migrate(&mut conn).map_err(damaged)?;
        match schema::owner(&conn).map_err(damaged)? {
            Some(owner) if owner != opts.node_id => {
                return Err(refuse::foreign(dir, &db_path, &owner, &opts.node_id));
            }
            Some(_) => {}
            None => {
                schema::set_owner(&conn, &opts.node_id, now_ms())?;
                if !fresh {
                    tracing::info!(node = %opts.node_id, file = %db_path.display(), "storage: recorded the owner of a store created by an older certfed");
                }
            }
        }
        if marker.is_none() {
            marker::write(dir, &marker_path, &opts.node_id, now_ms())?;
        }
        // Checkpoints run on their own thread (see the module doc).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = Checkpointer::start(&db_path)?;
        let (tx, rx) = mpsc::channel::<Box<dyn WriteJob>>(8192);
        let thread = std::thread::Builder::new()
            .name("certfed-writer".into())
            .spawn(move || writer_loop(conn, rx, checkpointer))
            .map_err(|e| io("cannot start the writer thread".into(), e))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
                readers: Mutex::new(Vec::new()),
                db_path,
                damaged: OnceLock::new(),
                _lock: lock,
            }),
        })
    }

    /// Remembers the first damage seen (logged at ERROR once): from then on
    /// every write is refused.
    fn note<T>(&self, r: &Result<T, StoreError>) {
        if let Err(StoreError::Corrupt(detail)) = r
            && self.inner.damaged.set(detail.clone()).is_ok()
        {
            tracing::error!(
                file = %self.inner.db_path.display(),
                error = %detail,
                "storage: the database is damaged; every further write is refused. Stop the node and restore certfed.db from a backup"
            );
        }
    }

    /// Runs `f` in the writer's transaction; resolves once the batch it was part
    /// of is committed as durably as `durability` asks. An `Err` from `f` rolls
    /// back only `f`'s changes.
    async fn write<T, F>(&self, durability: Durability, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.enqueue(durability, 0, f).await?.await
    }

    /// Queues `f` (which stores `messages` messages) for the writer and
    /// returns once it is queued (behind everything queued before), with a
    /// future that resolves on commit.
    async fn enqueue<T, F>(
        &self,
        durability: Durability,
        messages: usize,
        f: F,
    ) -> Result<Pending<T>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        if let Some(d) = self.inner.damaged.get() {
            return Err(StoreError::Corrupt(format!(
                "writes stopped after damage was found: {d}"
            )));
        }
        let (tx, rx) = oneshot::channel();
        let job: Box<dyn WriteJob> = Box::new(TypedJob {
            f: Some(f),
            result: None,
            tx,
            durability,
            messages,
        });
        let sender = self
            .inner
            .writer
            .lock()
            .expect("writer lock")
            .clone()
            .ok_or(StoreError::Closed)?;
        sender.send(job).await.map_err(|_| StoreError::Closed)?;
        let me = self.clone();
        Ok(Box::pin(async move {
            let r = rx.await.map_err(|_| StoreError::Closed)?;
            me.note(&r);
            r
        }))
    }

    /// Runs `f` on a read connection (a snapshot of committed data) off the async runtime.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        let r = tokio::task::spawn_blocking(move || inner.with_reader(f))
            .await
            .map_err(|e| StoreError::Invalid(format!("storage: read task failed: {e}")))?;
        self.note(&r);
        r
    }

    /// Runs `f` on a read connection on the calling thread when `rows` (the
    /// most rows or ids it may touch) is at most [`INLINE_ROWS`], else like
    /// [`read`](Self::read). For the small, frequent reads of the message
    /// path (a duplicate check, a message by id, the next page of an outbox
    /// or of new messages): indexed lookups answered from SQLite's page
    /// cache, cheaper than the two thread hand-offs of the blocking pool
    /// (waking a pool thread, then waking the task again).
    async fn read_small<T, F>(&self, rows: usize, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        if rows > INLINE_ROWS {
            return self.read(f).await;
        }
        let r = self.inner.with_reader(f);
        self.note(&r);
        r
    }

    /// A page of at most `limit` rows after cursor `after` (`page(c, after,
    /// n)` reads at most `n` rows after `after`, in cursor order): the first
    /// [`INLINE_ROWS`] on the calling thread, the rest, when those come back
    /// full, on the blocking pool — the same rows as one read of `limit`.
    async fn read_page<T, F>(
        &self,
        after: u64,
        limit: usize,
        cursor_of: fn(&T) -> u64,
        page: F,
    ) -> Result<Vec<T>, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection, u64, usize) -> Result<Vec<T>, StoreError> + Send + Clone + 'static,
    {
        let first = limit.min(INLINE_ROWS);
        let here = page.clone();
        let mut rows = self
            .read_small(first, move |c| here(c, after, first))
            .await?;
        if rows.len() == first && limit > first {
            let from = rows.last().map_or(after, cursor_of);
            let rest = limit - first;
            rows.extend(self.read(move |c| page(c, from, rest)).await?);
        }
        Ok(rows)
    }

    /// Stops the writer after it has committed everything queued, and waits for it.
    fn close_blocking(&self) {
        self.inner.writer.lock().expect("writer lock").take();
        if let Some(t) = self.inner.thread.lock().expect("thread lock").take() {
            let _ = t.join();
        }
        self.inner.readers.lock().expect("readers lock").clear();
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Switches the database to WAL and runs the integrity check `mode` asks for.
/// Damage (also a file that is not a database at all) is [`StoreError::Corrupt`]
/// with what was found.
fn check(conn: &Connection, mode: IntegrityCheck) -> Result<(), StoreError> {
    let mode_set: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(|e| sql_err("cannot open", e))?;
    if !mode_set.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Invalid(format!(
            "storage: cannot enable the WAL journal (got {mode_set}); is the file system local?"
        )));
    }
    let pragma = match mode {
        IntegrityCheck::Off => return Ok(()),
        IntegrityCheck::Quick => "quick_check",
        IntegrityCheck::Full => "integrity_check",
    };
    // At most 5 findings: enough to name the damage, bounded in size.
    let findings: Vec<String> = conn
        .prepare(&format!("PRAGMA {pragma}(5)"))
        .and_then(|mut st| {
            st.query_map([], |r| r.get::<_, String>(0))
                .and_then(|rows| rows.collect())
        })
        .map_err(|e| sql_err(pragma, e))?;
    if findings.len() == 1 && findings[0] == "ok" {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!(
            "{pragma} found: {}",
            findings.join("; ")
        )))
    }
}

/// The marker file: `node_id` and `created_ms` as `key = value` lines.
mod marker {
    use crate::storage::StoreError;
    use std::io::Write;
    use std::path::Path;

    pub struct Marker {
        pub node_id: String,
        pub created_ms: i64,
    }

    /// Reads the marker; `None` if there is none.
    pub fn read(path: &Path) -> Result<Option<Marker>, StoreError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(StoreError::backend(
                    format!("{}: cannot read the store marker", path.display()),
                    e,
                ));
            }
        };
        let field = |key: &str| {
            text.lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().trim_matches('"').to_string())
        };
        match field("node_id") {
            Some(node_id) if !node_id.is_empty() => Ok(Some(Marker {
                node_id,
                created_ms: field("created_ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            })),
            _ => Err(StoreError::Invalid(format!(
                "storage: {} is not a certfed store marker (no node_id line); if it was edited, restore it: node_id = \"<this node's id>\"",
                path.display()
            ))),
        }
    }

    /// Writes the marker atomically (temporary file, fsync, rename, fsync of
    /// the folder), mode 0600.
    pub fn write(dir: &Path, path: &Path, node_id: &str, now_ms: i64) -> Result<(), StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        let io = |e: std::io::Error| {
            StoreError::backend(
                format!("{}: cannot write the store marker", path.display()),
                e,
            )
        };
        let tmp = path.with_extension("marker.tmp");
        let text = format!(
            "# certfed store marker: this folder holds the store of one certfed node.\n\
             # While this file exists, certfed refuses to start if certfed.db is missing or\n\
             # empty (the database was lost): restore certfed.db from a backup, or move the\n\
             # whole folder aside to start the node empty on purpose. Do not delete it.\n\
             node_id = \"{node_id}\"\n\
             created_ms = {now_ms}\n"
        );
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }
}

/// The refusals at open, each naming the file and saying what to do.
mod refuse {
    use super::marker::Marker;
    use crate::storage::StoreError;
    use std::path::Path;

    /// `path` quoted for a POSIX shell when it needs to be.
    fn sh(path: &Path) -> String {
        let s = path.display().to_string();
        if s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%,".contains(c))
        {
            s
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    }

    /// What to do instead of serving a store that cannot be trusted.
    fn remedy(dir: &Path) -> String {
        format!(
            "Restore certfed.db from a backup (README, \"Backup and restore\"). To start this node EMPTY on purpose instead (its messages are gone and peers will not send them again), move the folder aside and start again: mv {d} {d}.damaged-$(date +%Y%m%d-%H%M%S) (or set storage.dir to an empty folder)",
            d = sh(dir)
        )
    }

    pub fn damaged(dir: &Path, db: &Path, detail: &str) -> StoreError {
        let detail: String = detail.chars().take(600).collect();
        StoreError::Invalid(format!(
            "storage: {} is damaged ({detail}); certfed refuses to serve or write to a damaged store. {}",
            db.display(),
            remedy(dir)
        ))
    }

    pub fn vanished(
        dir: &Path,
        db: &Path,
        len: Option<u64>,
        marker: &Path,
        m: &Marker,
    ) -> StoreError {
        let what = if len.is_none() {
            "is missing"
        } else {
            "is empty (0 bytes)"
        };
        StoreError::Invalid(format!(
            "storage: {} {what}, but {} says this folder holds the store of node {} (created at unix ms {}): the database was deleted or truncated, and starting would silently run the node without its messages. {}",
            db.display(),
            marker.display(),
            m.node_id,
            m.created_ms,
            remedy(dir)
        ))
    }

    pub fn foreign(dir: &Path, recorded_in: &Path, owner: &str, me: &str) -> StoreError {
        StoreError::Invalid(format!(
            "storage: {} holds the store of node {owner} (recorded in {}), but node.id is {me}: a node never serves another node's messages and outboxes. Set storage.dir to this node's own folder; to start {me} empty there instead, move the folder aside: mv {d} {d}.{owner}-$(date +%Y%m%d-%H%M%S)",
            dir.display(),
            recorded_in.display(),
            d = sh(dir)
        ))
    }
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            StoreError::backend(format!("storage.dir {}: cannot create", dir.display()), e)
        })
}

/// Runs one transaction-control statement (`BEGIN`, `SAVEPOINT`, `RELEASE`,
/// `COMMIT`) from the connection's statement cache: they run several times
/// per commit, and `execute_batch` parsed them again each time.
fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Runs one batch in one transaction. `Err` means the transaction failed as a
/// whole (nothing of it is kept).
fn run_batch(conn: &Connection, batch: &mut [Box<dyn WriteJob>]) -> Result<(), StoreError> {
    exec_cached(conn, "BEGIN IMMEDIATE").map_err(|e| sql_err("cannot begin a transaction", e))?;
    // A job alone in its batch (the usual case below saturation) needs no
    // savepoint: the transaction is its own, and a savepoint would copy every
    // page the job changes into a sub-journal first.
    if let [job] = batch {
        if !job.run(conn) {
            // The job answers with its own error; nothing of it is kept.
            return match conn.execute_batch("ROLLBACK") {
                Ok(()) => Ok(()),
                Err(_) if conn.is_autocommit() => Ok(()),
                Err(e) => Err(sql_err("cannot roll back", e)),
            };
        }
        return commit(conn);
    }
    for job in batch.iter_mut() {
        let step = exec_cached(conn, "SAVEPOINT job")
            .map_err(|e| sql_err("cannot open a savepoint", e))
            .and_then(|()| {
                if job.run(conn) {
                    exec_cached(conn, "RELEASE job")
                } else {
                    conn.execute_batch("ROLLBACK TO job; RELEASE job")
                }
                .map_err(|e| sql_err("cannot close a savepoint", e))
            });
        if let Err(e) = step {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    commit(conn)
}

/// Sets the connection's page cache to `kib` KiB (shrinking it frees the
/// unused pages over it). A failure costs speed, not data: the writes go on,
/// and the first failure is logged (`warned` keeps a failing resize at every
/// large transaction from filling the log).
fn set_cache_kib(conn: &Connection, kib: i64, warned: &mut bool) {
    if let Err(e) = conn.pragma_update(None, "cache_size", -kib)
        && !std::mem::replace(warned, true)
    {
        tracing::warn!(error = %e, kib, "storage: cannot size the writer's page cache; writes go on with the cache it has (logged once)");
    }
}

fn commit(conn: &Connection) -> Result<(), StoreError> {
    exec_cached(conn, "COMMIT").map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        sql_err("cannot commit", e)
    })
}

/// The checkpointer thread and how to wake it.
struct Checkpointer {
    wake: std::sync::mpsc::SyncSender<()>,
    thread: JoinHandle<()>,
    wal: PathBuf,
}

impl Checkpointer {
    fn start(db_path: &Path) -> Result<Checkpointer, StoreError> {
        let conn = open_conn(db_path, false)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let (wake, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("certfed-checkpoint".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    // PASSIVE: copies what no reader still needs, waits for
                    // nobody; what is left goes at the next wake-up.
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "storage: checkpoint failed; retried after the next commit");
                    }
                }
            })
            .map_err(|e| StoreError::backend("cannot start the checkpoint thread", e))?;
        let mut wal = db_path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(Checkpointer {
            wake,
            thread,
            wal: PathBuf::from(wal),
        })
    }

    /// After a commit: wakes the checkpointer when the log has grown past
    /// [`CHECKPOINT_AT`] (never waits; a wake-up already pending suffices).
    /// The file size tells: `journal_size_limit` is [`CHECKPOINT_AT`], so the
    /// first commit after a completed checkpoint truncates the file to it.
    fn after_commit(&self) {
        if std::fs::metadata(&self.wal).is_ok_and(|m| m.len() > CHECKPOINT_AT) {
            let _ = self.wake.try_send(());
        }
    }

    /// Stops the thread once its checkpoint in progress is done.
    fn stop(self) {
        drop(self.wake);
        let _ = self.thread.join();
    }
}

fn writer_loop(
    conn: Connection,
    mut rx: mpsc::Receiver<Box<dyn WriteJob>>,
    checkpointer: Checkpointer,
) {
    let mut batch: Vec<Box<dyn WriteJob>> = Vec::with_capacity(MAX_BATCH);
    let mut synchronous_full = true;
    let mut cache_warned = false;
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let want_full = batch.iter().any(|j| j.durability() == Durability::Durable);
        let mut result = Ok(());
        if want_full != synchronous_full {
            let mode = if want_full { "FULL" } else { "NORMAL" };
            match conn.pragma_update(None, "synchronous", mode) {
                Ok(()) => synchronous_full = want_full,
                Err(e) => result = Err(sql_err("cannot set the sync mode", e)),
            }
        }
        // A transaction storing many messages gets a cache that holds its
        // dirty pages and the pages it keeps reading beside them; back to
        // WRITER_CACHE_KIB after it (which frees what is over).
        let large = batch.iter().map(|j| j.messages()).sum::<usize>() >= LARGE_TRANSACTION;
        if large {
            set_cache_kib(&conn, LARGE_CACHE_KIB, &mut cache_warned);
        }
        let result = result.and_then(|()| run_batch(&conn, &mut batch));
        if large {
            set_cache_kib(&conn, WRITER_CACHE_KIB, &mut cache_warned);
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, jobs = batch.len(), "storage: transaction failed; every write in it is refused");
        }
        for job in batch.drain(..) {
            job.finish(result.clone());
        }
        checkpointer.after_commit();
    }
    // Channel closed: checkpoint the WAL so the database file is self-contained.
    checkpointer.stop();
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
}

#[async_trait::async_trait]
impl Storage for SqliteStore {
    async fn insert(
        &self,
        msgs: Vec<NewMessage>,
        durability: Durability,
    ) -> Result<Vec<Stored>, StoreError> {
        self.insert_queued(msgs, durability).await?.await
    }

    async fn insert_queued(
        &self,
        msgs: Vec<NewMessage>,
        durability: Durability,
    ) -> Result<Pending<Vec<Stored>>, StoreError> {
        let n = msgs.len();
        self.enqueue(durability, n, move |c| queries::insert_messages(c, &msgs))
            .await
    }

    async fn message_count(&self) -> Result<u64, StoreError> {
        self.read(queries::message_count).await
    }

    async fn held(
        &self,
        message_ids: Vec<String>,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        if message_ids.is_empty() {
            return Ok(Default::default());
        }
        let n = message_ids.len();
        self.read_small(n, move |c| queries::held(c, message_ids))
            .await
    }

    async fn relayed_kept(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        self.read_small(limit, move |c| queries::relayed_kept(c, limit))
            .await
    }

    async fn get_message(&self, message_id: &str) -> Result<Option<StoredMessage>, StoreError> {
        let id = message_id.to_string();
        self.read_small(1, move |c| queries::get_message(c, &id))
            .await
    }

    async fn get_messages(
        &self,
        message_ids: Vec<String>,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        if message_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.read(move |c| queries::get_messages(c, &message_ids))
            .await
    }

    async fn messages_after(
        &self,
        cursor: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.read_page(
            cursor,
            limit,
            |m: &StoredMessage| m.cursor,
            queries::messages_after,
        )
        .await
    }

    async fn last_cursor(&self) -> Result<u64, StoreError> {
        self.read_small(1, queries::last_cursor).await
    }

    async fn received_from(&self, cursor: u64) -> Result<Option<(u64, i64)>, StoreError> {
        self.read_small(1, move |c| queries::received_from(c, cursor))
            .await
    }

    async fn thread(&self, request_id: &str) -> Result<Vec<StoredMessage>, StoreError> {
        let id = request_id.to_string();
        self.read(move |c| queries::thread(c, &id)).await
    }

    async fn by_kind(
        &self,
        kind: i32,
        before: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.read(move |c| queries::by_kind(c, kind, before, limit))
            .await
    }

    async fn incident_messages(
        &self,
        incident_ids: Vec<String>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.read(move |c| queries::incident_messages(c, &incident_ids, limit))
            .await
    }

    async fn incident_openers(
        &self,
        before: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.read(move |c| queries::incident_openers(c, before, limit))
            .await
    }

    async fn keyed(
        &self,
        keys: Vec<String>,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.read(move |c| queries::keyed(c, &keys, limit)).await
    }

    async fn keyed_incidents(
        &self,
        keys: Vec<String>,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        // Asked for every arrival Watch shows and the counting task counts,
        // and nearly always answered by none or a few rows (member keys exist
        // only for incident members): asked here first with the key index's
        // rows capped at INLINE_ROWS, and on the pool only when the cap is
        // reached (the hand-off to the pool and back sat on Watch's way to
        // showing each arrival).
        if keys.len() <= INLINE_ROWS {
            let probe = keys.clone();
            let inline = self
                .read_small(keys.len(), move |c| {
                    queries::keyed_incidents_within(c, &probe, limit, INLINE_ROWS)
                })
                .await?;
            if let Some(rows) = inline {
                return Ok(rows);
            }
        }
        self.read(move |c| queries::keyed_incidents(c, &keys, limit))
            .await
    }

    async fn list_alerts(
        &self,
        q: AlertQuery,
        before: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.read(move |c| queries::list_alerts(c, &q, before, limit))
            .await
    }

    async fn outbox(
        &self,
        peer: &str,
        after: u64,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let peer = peer.to_string();
        self.read_page(
            after,
            limit,
            |i: &OutboxItem| i.cursor,
            move |c, after, n| queries::outbox(c, &peer, after, now_ms, n),
        )
        .await
    }

    async fn outbox_due(
        &self,
        peer: &str,
        after: u64,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let peer = peer.to_string();
        self.read_page(
            after,
            limit,
            |i: &OutboxItem| i.cursor,
            move |c, after, n| queries::outbox_due(c, &peer, after, now_ms, n),
        )
        .await
    }

    async fn outbox_next_due(&self, peer: &str, now_ms: i64) -> Result<Option<i64>, StoreError> {
        let peer = peer.to_string();
        self.read_small(1, move |c| queries::outbox_next_due(c, &peer, now_ms))
            .await
    }

    async fn defer_outbox(
        &self,
        peer: &str,
        deferrals: Vec<Deferral>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let peer = peer.to_string();
        self.write(Durability::Lazy, move |c| {
            queries::defer_outbox(c, &peer, &deferrals, now_ms)
        })
        .await
    }

    async fn complete_outbox(
        &self,
        peer: &str,
        outcomes: Vec<Outcome>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let peer = peer.to_string();
        self.write(Durability::Lazy, move |c| {
            queries::complete_outbox(c, &peer, &outcomes, now_ms)
        })
        .await
    }

    async fn outbox_depths(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(queries::outbox_depths).await
    }

    async fn delivery(&self, message_id: &str) -> Result<Vec<DeliveryRow>, StoreError> {
        let id = message_id.to_string();
        self.read(move |c| queries::delivery(c, &id)).await
    }

    async fn receipts(&self, message_id: &str) -> Result<Vec<ReceiptRow>, StoreError> {
        let id = message_id.to_string();
        self.read(move |c| queries::receipts(c, &id)).await
    }

    async fn record_rejections(
        &self,
        rows: Vec<RejectionRow>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.write(Durability::Lazy, move |c| {
            queries::record_rejections(c, &rows, now_ms)
        })
        .await
    }

    async fn acknowledge(&self, message_id: &str, now_ms: i64) -> Result<Option<i64>, StoreError> {
        let id = message_id.to_string();
        self.write(Durability::Durable, move |c| {
            queries::acknowledge(c, &id, now_ms)
        })
        .await
    }

    async fn claim_request(
        &self,
        rec: RequestRecord,
        expired_before_ms: i64,
    ) -> Result<Claim, StoreError> {
        self.write(Durability::Durable, move |c| {
            queries::claim_request(c, &rec, expired_before_ms)
        })
        .await
    }

    async fn complete_request(
        &self,
        request_id: &str,
        response: Vec<u8>,
    ) -> Result<(), StoreError> {
        let id = request_id.to_string();
        self.write(Durability::Lazy, move |c| {
            queries::complete_request(c, &id, &response)
        })
        .await
    }

    async fn release_request(&self, request_id: &str) -> Result<(), StoreError> {
        let id = request_id.to_string();
        self.write(Durability::Lazy, move |c| queries::release_request(c, &id))
            .await
    }

    async fn requests_created_before(&self, before_ms: i64) -> Result<Vec<String>, StoreError> {
        self.read(move |c| queries::requests_created_before(c, before_ms))
            .await
    }

    async fn purge(&self, plan: PurgePlan) -> Result<Purged, StoreError> {
        self.write(Durability::Lazy, move |c| queries::purge(c, &plan))
            .await
    }

    async fn sync_buckets(
        &self,
        audiences: &[String],
        from_ms: i64,
    ) -> Result<Vec<SyncBucket>, StoreError> {
        let audiences = audiences.to_vec();
        self.read(move |c| queries::sync_buckets(c, &audiences, from_ms))
            .await
    }

    async fn sync_items(
        &self,
        audience: &str,
        from: SyncPos,
        to: SyncPos,
        limit: usize,
    ) -> Result<Vec<SyncItem>, StoreError> {
        let audience = audience.to_string();
        self.read(move |c| queries::sync_items(c, &audience, from, to, limit))
            .await
    }

    async fn refused_by(
        &self,
        peer: &str,
        message_ids: Vec<String>,
        since_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        if message_ids.is_empty() {
            return Ok(Vec::new());
        }
        let peer = peer.to_string();
        self.read(move |c| queries::refused_by(c, &peer, &message_ids, since_ms))
            .await
    }

    async fn requeue(
        &self,
        peer: &str,
        items: Vec<Requeue>,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let peer = peer.to_string();
        self.write(Durability::Lazy, move |c| {
            queries::requeue(c, &peer, &items, now_ms)
        })
        .await
    }

    async fn space(&self) -> Result<Space, StoreError> {
        let wal = PathBuf::from(format!("{}-wal", self.inner.db_path.display()));
        self.read(move |c| {
            let pragma = |name: &str| -> Result<u64, StoreError> {
                Ok(c.pragma_query_value(None, name, |r| r.get::<_, i64>(0))? as u64)
            };
            let page = pragma("page_size")?;
            let wal_bytes = std::fs::metadata(&wal).map_or(0, |m| m.len());
            Ok(Space {
                file_bytes: page * pragma("page_count")? + wal_bytes,
                wal_bytes,
                free_bytes: page * pragma("freelist_count")?,
            })
        })
        .await
    }

    async fn save_roster(&self, row: RosterRow) -> Result<(), StoreError> {
        self.write(Durability::Durable, move |c| queries::save_roster(c, &row))
            .await
    }

    async fn rosters(&self, limit: usize) -> Result<Vec<RosterRow>, StoreError> {
        self.read(move |c| queries::rosters(c, limit)).await
    }

    async fn drop_outbox(&self, peer: &str, reason: &str, now_ms: i64) -> Result<u64, StoreError> {
        let (peer, reason) = (peer.to_string(), reason.to_string());
        self.write(Durability::Durable, move |c| {
            queries::drop_outbox(c, &peer, &reason, now_ms)
        })
        .await
    }

    async fn close(&self) {
        let s = self.clone();
        let _ = tokio::task::spawn_blocking(move || s.close_blocking()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    fn opts() -> OpenOptions {
        OpenOptions::new("node-a")
    }

    /// The bundled SQLite gets its compile-time options from the checkout's
    /// `.cargo/config.toml` (`LIBSQLITE3_FLAGS`). A build that missed them
    /// (the variable set otherwise in the environment, or cargo run from
    /// outside the checkout) fails here instead of running slower, spilling
    /// every multi-job commit's savepoints to a temporary file, or with one
    /// page cache shared by every connection. `HAVE_FDATASYNC` is not listed
    /// by SQLite; it comes with the options checked here.
    #[test]
    fn sqlite_is_compiled_with_this_checkouts_options() {
        let c = Connection::open_in_memory().unwrap();
        let options: Vec<String> = c
            .prepare("PRAGMA compile_options")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for want in ["STMTJRNL_SPILL=122880", "DEFAULT_MEMSTATUS=0"] {
            assert!(
                options.iter().any(|o| o == want),
                "SQLite was built without {want} (LIBSQLITE3_FLAGS of .cargo/config.toml); it has {options:?}"
            );
        }
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "SQLite was built with ENABLE_MEMORY_MANAGEMENT (one page cache for all connections behind a mutex; LIBSQLITE3_FLAGS of .cargo/config.toml undefines it)"
        );
    }

    /// A store of node-a in `dir` as a build of schema `version` left it,
    /// with the rows `fill` writes (the next open migrates it).
    fn store_at_schema(dir: &Path, version: usize, fill: impl FnOnce(&rusqlite::Transaction<'_>)) {
        let mut conn = Connection::open(dir.join(DB_FILE)).unwrap();
        let tx = conn.transaction().unwrap();
        for sql in &schema::MIGRATIONS[..version] {
            tx.execute_batch(sql).unwrap();
        }
        tx.pragma_update(None, "user_version", version as i64)
            .unwrap();
        schema::set_owner(&tx, "node-a", 1).unwrap();
        fill(&tx);
        tx.commit().unwrap();
    }
    /// The inline question for an arrival's incident matches gives exactly
    /// what the full one gives whenever the key index holds at most the cap
    /// under the keys (key rows of messages in no incident and of messages
    /// not held included), and declines otherwise: random stores, key sets,
    /// caps and limits.
    #[test]
    fn incident_matches_asked_inline_agree_with_the_full_question() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        let (mut answered, mut declined) = (0, 0);
        for round in 0..40 {
            let dir = tempfile::tempdir().unwrap();
            let n = rng.random_range(0..50);
            let rows: Vec<(String, Option<u8>, Vec<u8>)> = (0..n)
                .map(|i| {
                    let incident = rng.random_bool(0.6).then(|| rng.random_range(0..4u8));
                    let keys = (0..6u8).filter(|_| rng.random_bool(0.3)).collect();
                    (format!("msg-{round}-{i:02}"), incident, keys)
                })
                .collect();
            store_at_schema(dir.path(), schema::MIGRATIONS.len(), |tx| {
                for (id, incident, keys) in &rows {
                    tx.execute(
                        "INSERT INTO messages (message_id, origin, kind, tlp, created_ms, received_ms, header, payload, signature, incident_id)
                         VALUES (?1, 'node-b', 1, 2, 5, 5, x'', x'', x'', ?2)",
                        rusqlite::params![id, incident.map(|k| format!("incident-{k}"))],
                    )
                    .unwrap();
                    for k in keys {
                        tx.execute(
                            "INSERT INTO message_keys (key, message_id) VALUES (?1, ?2)",
                            rusqlite::params![format!("m:k{k}"), id],
                        )
                        .unwrap();
                    }
                }
                // A key row whose message is not held.
                tx.execute(
                    "INSERT INTO message_keys (key, message_id) VALUES ('m:k0', 'gone')",
                    [],
                )
                .unwrap();
            });
            let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
            for _ in 0..20 {
                let keys: Vec<String> = (0..7u8)
                    .filter(|_| rng.random_bool(0.4))
                    .map(|k| format!("m:k{k}"))
                    .collect();
                let (limit, cap) = (rng.random_range(1..12), rng.random_range(0..40));
                let under: usize = keys
                    .iter()
                    .map(|k| {
                        c.query_row(
                            "SELECT COUNT(*) FROM message_keys WHERE key = ?1",
                            [k],
                            |r| r.get::<_, i64>(0),
                        )
                        .unwrap() as usize
                    })
                    .sum();
                let full = queries::keyed_incidents(&c, &keys, limit).unwrap();
                let inline = queries::keyed_incidents_within(&c, &keys, limit, cap).unwrap();
                if under <= cap {
                    assert_eq!(
                        inline.as_ref(),
                        Some(&full),
                        "{keys:?} limit {limit} cap {cap}"
                    );
                    answered += 1;
                } else {
                    assert_eq!(inline, None, "{under} rows, cap {cap}");
                    declined += 1;
                }
            }
        }
        assert!(
            answered > 100 && declined > 100,
            "{answered} answered, {declined} declined"
        );
        // Run on the async workers: each key a search of the index, never a
        // scan of it (which a key held by nobody would run to its end).
        let dir = tempfile::tempdir().unwrap();
        store_at_schema(dir.path(), schema::MIGRATIONS.len(), |_| {});
        let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
        let plan: Vec<String> = c
            .prepare(&format!(
                "EXPLAIN QUERY PLAN {}",
                queries::KEYED_INCIDENTS_WITHIN
            ))
            .unwrap()
            .query_map(rusqlite::params!["[\"m:k0\"]", 33], |r| {
                r.get::<_, String>(3)
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter()
                .any(|p| p.starts_with("SEARCH message_keys USING PRIMARY KEY (key=?)")),
            "{plan:?}"
        );
        assert!(
            !plan.iter().any(|p| p.contains("SCAN message_keys")),
            "{plan:?}"
        );
        // The purge deletes each key row by the primary key (migration 18
        // dropped the by-message index).
        let plan = plan_of(
            &c,
            queries::KEY_DELETE,
            vec!["m:k0".to_string().into(), "gone".to_string().into()],
        );
        assert!(
            plan.iter()
                .any(|p| p
                    .starts_with("SEARCH message_keys USING PRIMARY KEY (key=? AND message_id=?)")),
            "{plan:?}"
        );
        let by_message: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'message_keys_message'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(by_message, 0, "the by-message index is gone");
    }

    /// Reconciliation items are found by their primary key when purged
    /// (migration 17 dropped their by-cursor index): under the audiences kept
    /// in the message's row, and for rows stored before schema 17 (no list)
    /// under every audience. Both kinds go with their sums; an item of a
    /// message stored after the migration in the same millisecond stays.
    #[test]
    fn purged_items_are_found_without_the_cursor_index() {
        use crate::proto::v1::{MessageKind, Tlp};
        use crate::storage::{PurgePlan, SyncEntry};
        let dir = tempfile::tempdir().unwrap();
        // A schema-16 store: migration 17 records where its rows end.
        store_at_schema(dir.path(), 16, |tx| {
            tx.execute(
                "INSERT INTO messages (message_id, origin, kind, tlp, created_ms, received_ms, header, payload, signature)
                 VALUES ('old', 'node-b', 1, 2, 5, 5, x'', x'', x'')",
                [],
            )
            .unwrap();
        });
        let store = SqliteStore::open(dir.path(), &opts()).unwrap();
        let sql = |q: &'static str| {
            rt().block_on(store.write(Durability::Lazy, move |c| {
                Ok(c.query_row(q, [], |r| r.get::<_, String>(0))?)
            }))
            .unwrap()
        };
        assert_eq!(
            sql("SELECT value FROM store_meta WHERE key = 'sync_legacy_cursor'"),
            "1"
        );
        assert_eq!(
            sql("SELECT COUNT(*) || '' FROM sqlite_master WHERE name = 'sync_items_cursor'"),
            "0"
        );
        let synced = |n: u8, created_ms: i64, tlp: Tlp, audiences: &[&str]| {
            let mut m = crate::storage::conformance::msg(
                &format!("00000000-0000-7000-8000-0000000000{n:02x}"),
                "node-b",
                MessageKind::Alert,
                &[],
            );
            m.created_ms = created_ms;
            m.tlp = tlp as i32;
            m.sync = Some(SyncEntry {
                audiences: audiences.iter().map(|a| a.to_string()).collect(),
                id: [n; 16],
                hash: [n; 32],
            });
            m
        };
        rt().block_on(store.insert(
            vec![
                synced(1, 100, Tlp::Green, &["*"]),
                synced(2, 100, Tlp::Green, &["node-c", "node-d"]),
                synced(3, 100, Tlp::Amber, &["*", "node-c"]),
            ],
            Durability::Durable,
        ))
        .unwrap();
        // Messages 1 and 2 as rows stored before schema 17 look: no list.
        rt().block_on(store.write(Durability::Durable, |c| {
            c.execute(
                "UPDATE messages SET sync_audiences = NULL WHERE cursor <= 3",
                [],
            )?;
            c.execute(
                "UPDATE store_meta SET value = '3' WHERE key = 'sync_legacy_cursor'",
                [],
            )?;
            Ok(())
        }))
        .unwrap();
        let count = |q: &'static str| sql(q).parse::<i64>().unwrap();
        assert_eq!(count("SELECT COUNT(*) || '' FROM sync_items"), 5);
        let plan = |tlp: Tlp| PurgePlan {
            cutoffs: vec![(tlp as i32, 1_000)],
            limit: 100,
            keys_of: Some(crate::storage::conformance::keys_in_body),
            ..Default::default()
        };
        let purged = rt().block_on(store.purge(plan(Tlp::Green))).unwrap();
        assert_eq!(purged.messages, 3, "the schema-16 row and messages 1 and 2");
        assert_eq!(
            sql("SELECT group_concat(audience, ',') FROM sync_items"),
            "*,node-c",
            "message 3's items stay"
        );
        assert_eq!(
            count("SELECT SUM(count) || '' FROM sync_buckets"),
            2,
            "the purged items' sums are gone"
        );
        let purged = rt().block_on(store.purge(plan(Tlp::Amber))).unwrap();
        assert_eq!(purged.messages, 1);
        assert_eq!(count("SELECT COUNT(*) || '' FROM sync_items"), 0);
        assert_eq!(count("SELECT COUNT(*) || '' FROM sync_buckets"), 0);
        // The purge's lookup is a search of the primary key, not a scan.
        let plan_rows: Vec<String> = rt()
            .block_on(store.write(Durability::Lazy, |c| {
                let mut st =
                    c.prepare(&format!("EXPLAIN QUERY PLAN {}", queries::SYNC_ITEM_DELETE))?;
                let r = st
                    .query_map(rusqlite::params!["*", 1, 1], |r| r.get::<_, String>(3))?
                    .collect::<Result<_, _>>()?;
                Ok(r)
            }))
            .unwrap();
        assert!(
            plan_rows
                .iter()
                .any(|p| p.contains("sync_items USING PRIMARY KEY (audience=? AND created_ms=?)")),
            "{plan_rows:?}"
        );
        assert!(
            !plan_rows.iter().any(|p| p.starts_with("SCAN sync_items")),
            "{plan_rows:?}"
        );
        store.close_blocking();
    }

    /// A message row whose reconciliation audiences do not decode makes the
    /// purge report a corrupt store naming the row, and the purge's
    /// transaction is not applied (the message and its item stay).
    #[test]
    fn a_purge_refuses_audiences_that_do_not_decode() {
        a_purge_is_refused_on(
            "UPDATE messages SET sync_audiences = '[\"*\"'",
            "audiences of cursor 1",
        );
    }

    /// Where the rows without an audience list end is part of the store: a
    /// purge reaching such a row with it missing or garbled is refused the
    /// same way (their items would otherwise stay behind with their sums).
    #[test]
    fn a_purge_refuses_a_missing_or_garbled_legacy_mark() {
        for corrupt in [
            "UPDATE store_meta SET value = 'x' WHERE key = 'sync_legacy_cursor'",
            "DELETE FROM store_meta WHERE key = 'sync_legacy_cursor'",
        ] {
            a_purge_is_refused_on(
                &format!("UPDATE messages SET sync_audiences = NULL; {corrupt}"),
                "sync_legacy_cursor is",
            );
        }
    }

    /// One alert with a reconciliation item is stored, `corrupt` is run on
    /// the store, and a purge that reaches the alert must fail as a corrupt
    /// store (naming `names`) with nothing of it applied.
    fn a_purge_is_refused_on(corrupt: &str, names: &str) {
        use crate::proto::v1::{MessageKind, Tlp};
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), &opts()).unwrap();
        let mut m = crate::storage::conformance::msg(
            "00000000-0000-7000-8000-000000000001",
            "node-b",
            MessageKind::Alert,
            &[],
        );
        m.created_ms = 100;
        m.sync = Some(crate::storage::SyncEntry {
            audiences: vec!["*".into()],
            id: [1; 16],
            hash: [1; 32],
        });
        rt().block_on(store.insert(vec![m], Durability::Durable))
            .unwrap();
        let corrupt = corrupt.to_string();
        rt().block_on(store.write(Durability::Durable, move |c| {
            c.execute_batch(&corrupt)?;
            Ok(())
        }))
        .unwrap();
        let err = rt()
            .block_on(store.purge(crate::storage::PurgePlan {
                cutoffs: vec![(Tlp::Green as i32, 1_000)],
                limit: 100,
                keys_of: Some(crate::storage::conformance::keys_in_body),
                ..Default::default()
            }))
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains(names)),
            "{err:?}"
        );
        let held: (i64, i64) = rt()
            .block_on(store.read(|c| {
                Ok(c.query_row(
                    "SELECT (SELECT COUNT(*) FROM messages), (SELECT COUNT(*) FROM sync_items)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            }))
            .unwrap();
        assert_eq!(held, (1, 1));
        store.close_blocking();
    }

    #[test]
    fn conformance() {
        rt().block_on(crate::storage::conformance::run_all(|dir| {
            open(dir, &opts()).expect("open sqlite store")
        }));
    }

    /// The purge removes the supersede mark an update left for an original
    /// not held yet (no foreign key cascades it), and that original, when it
    /// arrives after the purge, is not marked superseded by the purged update.
    #[test]
    fn a_purged_update_leaves_no_supersede_mark() {
        use crate::proto::v1::{MessageKind, Tlp};
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), &opts()).unwrap();
        let marks = |store: &SqliteStore| {
            rt().block_on(store.write(Durability::Lazy, |c| {
                Ok(
                    c.query_row("SELECT COUNT(*) FROM pending_supersede", [], |r| {
                        r.get::<_, i64>(0)
                    })?,
                )
            }))
            .unwrap()
        };
        let original = "00000000-0000-7000-8000-000000000001";
        let mut update = crate::storage::conformance::msg(
            "00000000-0000-7000-8000-000000000002",
            "node-x",
            MessageKind::Alert,
            &[],
        );
        update.supersedes = Some(original.into());
        update.created_ms = 100;
        rt().block_on(store.insert(vec![update], Durability::Durable))
            .unwrap();
        assert_eq!(marks(&store), 1, "the update waits for its original");
        let purged = rt()
            .block_on(store.purge(crate::storage::PurgePlan {
                cutoffs: vec![(Tlp::Green as i32, 500)],
                limit: 100,
                keys_of: Some(crate::storage::conformance::keys_in_body),
                ..Default::default()
            }))
            .unwrap();
        assert_eq!(purged.messages, 1);
        assert_eq!(marks(&store), 0, "the purged update's mark is gone");
        let mut late =
            crate::storage::conformance::msg(original, "node-x", MessageKind::Alert, &[]);
        late.created_ms = 10_000;
        rt().block_on(store.insert(vec![late], Durability::Durable))
            .unwrap();
        let got = rt().block_on(store.get_message(original)).unwrap().unwrap();
        assert_eq!(got.superseded_by, None);
        store.close_blocking();
    }

    /// A cached statement is not recompiled when new values are bound to it,
    /// and the deferred-row lookup still uses its partial index. Without the
    /// planner stability guarantee every call of `outbox_next_due` re-parsed
    /// its SQL (`not_before_ms > ?2` may or may not imply the index's
    /// `not_before_ms > 0`, so SQLite re-plans for each value).
    #[test]
    fn hot_statements_are_not_recompiled_per_call() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), &opts()).unwrap();
        for read_only in [true, false] {
            let conn = open_conn(&store.inner.db_path, read_only).unwrap();
            for now in [0i64, 1_000, 2_000_000, -5, 7] {
                queries::outbox_next_due(&conn, "node-b", now).unwrap();
            }
            let st = conn.prepare_cached(queries::OUTBOX_NEXT_DUE).unwrap();
            assert_eq!(
                st.get_status(rusqlite::StatementStatus::RePrepare),
                0,
                "outbox_next_due was recompiled (read_only {read_only})"
            );
            drop(st);
            // The cache holds more than rusqlite's default 16 statements: the
            // statement survives 40 others and is run again, not re-parsed.
            for k in 0..40 {
                conn.prepare_cached(&format!("SELECT {k} + ?1"))
                    .unwrap()
                    .query_row([1], |r| r.get::<_, i64>(0))
                    .unwrap();
            }
            queries::outbox_next_due(&conn, "node-b", 3).unwrap();
            let st = conn.prepare_cached(queries::OUTBOX_NEXT_DUE).unwrap();
            assert_eq!(
                st.get_status(rusqlite::StatementStatus::Run),
                6,
                "outbox_next_due was evicted from the statement cache (read_only {read_only})"
            );
            drop(st);
            // Partial indexes stay usable under the guarantee.
            for (sql, index) in [
                (queries::OUTBOX_NEXT_DUE, "outbox_deferred"),
                (
                    "SELECT cursor FROM messages WHERE request_id = ?1 AND readable = 1 ORDER BY cursor",
                    "messages_request",
                ),
                (
                    "SELECT cursor FROM messages WHERE incident_id IN (SELECT value FROM json_each(?1))",
                    "messages_incident",
                ),
            ] {
                let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
                let n = st.parameter_count();
                let plan: Vec<String> = st
                    .query_map(rusqlite::params_from_iter(vec!["[]"; n]), |r| {
                        r.get::<_, String>(3)
                    })
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                assert!(
                    plan.iter().any(|p| p.contains(index)),
                    "{sql}: does not use its partial index {index}: {plan:?}"
                );
            }
        }
    }

    /// The plan of `sql` run with `args`.
    fn plan_of(c: &Connection, sql: &str, args: Vec<rusqlite::types::Value>) -> Vec<String> {
        let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        st.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Listings read newest first and stop at their limit: no plan sorts
    /// (a temporary B-tree is every matching row read and sorted: through
    /// the old (kind, created) index, every alert for each page), and
    /// assistance requests, incident openers and one origin's alerts are
    /// read through their partial indexes.
    #[test]
    fn listings_read_by_cursor_without_sorting() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), &opts()).unwrap();
        let conn = open_conn(&store.inner.db_path, true).unwrap();
        let everything = AlertQuery {
            min_severity: 2,
            tlps: vec![1, 2],
            sectors_mask: 5,
            // Two: one origin is read through its own index (below).
            origins: vec!["node-b".into(), "node-c".into()],
            created_after_ms: Some(1),
            created_before_ms: Some(2),
            include_exercise: false,
        };
        for (q, before) in [
            (
                AlertQuery {
                    origins: vec!["node-b".into()],
                    ..Default::default()
                },
                0,
            ),
            (
                AlertQuery {
                    origins: vec!["node-b".into()],
                    ..everything.clone()
                },
                42,
            ),
        ] {
            let (sql, args) = queries::list_alerts_sql(&q, before, 50);
            let plan = plan_of(&conn, &sql, args);
            assert!(
                plan.iter().any(|p| p.contains("messages_origin"))
                    && !plan.iter().any(|p| p.contains("TEMP B-TREE")),
                "{q:?}: one origin's alerts, newest first: {plan:?}"
            );
        }
        for (q, before) in [
            (AlertQuery::default(), 0),
            (AlertQuery::default(), 42),
            (
                AlertQuery {
                    tlps: vec![2],
                    ..Default::default()
                },
                0,
            ),
            (everything, 42),
        ] {
            let (sql, args) = queries::list_alerts_sql(&q, before, 50);
            let plan = plan_of(&conn, &sql, args);
            assert!(
                !plan.iter().any(|p| p.contains("TEMP B-TREE"))
                    && !plan.iter().any(|p| p.contains("INDEX")),
                "{q:?}: the listing does not walk cursors: {plan:?}"
            );
        }
        let kind = |k: crate::proto::v1::MessageKind| {
            let args = vec![(k as i64).into(), 0i64.into(), 50i64.into()];
            plan_of(&conn, &queries::by_kind_sql(k as i32), args)
        };
        let plan = kind(crate::proto::v1::MessageKind::AssistanceRequest);
        assert!(
            plan.iter().any(|p| p.contains("messages_kind"))
                && !plan.iter().any(|p| p.contains("TEMP B-TREE")),
            "assistance requests: {plan:?}"
        );
        let args = vec![0i64.into(), 16i64.into()];
        let plan = plan_of(
            &conn,
            &format!("SELECT cursor {}", queries::INCIDENT_OPENERS),
            args,
        );
        assert!(
            plan.iter().any(|p| p.contains("messages_openers"))
                && !plan.iter().any(|p| p.contains("TEMP B-TREE")),
            "incident openers: {plan:?}"
        );
        let plan = kind(crate::proto::v1::MessageKind::Alert);
        assert!(
            !plan.iter().any(|p| p.contains("TEMP B-TREE")),
            "alerts: {plan:?}"
        );
        drop(conn);
        store.close_blocking();
    }

    /// A store written by schema 14 (with the (kind, created) index) is
    /// migrated in place: its alerts (all, and by origin) and assistance
    /// requests list as before, newest first, through the plans checked above.
    #[test]
    fn a_schema_14_store_lists_the_same_after_migration() {
        let dir = tempfile::tempdir().unwrap();
        store_at_schema(dir.path(), 14, |tx| {
            for (i, kind) in [1, 2, 1, 6, 2, 1].into_iter().enumerate() {
                tx.execute(
                    "INSERT INTO messages (message_id, origin, kind, tlp, created_ms, received_ms, header, payload, signature)
                     VALUES (?1, 'node-b', ?2, 2, ?3, ?3, x'', x'', x'')",
                    rusqlite::params![format!("m{i}"), kind, 100 + i as i64],
                )
                .unwrap();
            }
        });
        let store = SqliteStore::open(dir.path(), &opts()).unwrap();
        rt().block_on(async {
            let ids = |v: Vec<StoredMessage>| v.into_iter().map(|m| m.message_id).collect::<Vec<_>>();
            assert_eq!(
                ids(store.list_alerts(AlertQuery::default(), 0, 10).await.unwrap()),
                ["m5", "m2", "m0"]
            );
            assert_eq!(
                ids(store.list_alerts(AlertQuery::default(), 6, 1).await.unwrap()),
                ["m2"],
                "a page below cursor 6 (m5)"
            );
            let requests = store
                .by_kind(crate::proto::v1::MessageKind::AssistanceRequest as i32, 0, 10)
                .await
                .unwrap();
            assert_eq!(ids(requests), ["m4", "m1"]);
            let by_origin = |o: &str| AlertQuery {
                origins: vec![o.into()],
                ..Default::default()
            };
            assert_eq!(
                ids(store.list_alerts(by_origin("node-b"), 0, 10).await.unwrap()),
                ["m5", "m2", "m0"],
                "an origin's alerts through the index built by migration 16"
            );
            assert!(store.list_alerts(by_origin("node-c"), 0, 10).await.unwrap().is_empty());
            let indexes: Vec<String> = store
                .read(|c| {
                    let mut st = c.prepare(
                        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages' AND name LIKE 'messages_kind%'",
                    )?;
                    let r = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
                    Ok(r)
                })
                .await
                .unwrap();
            assert_eq!(indexes, ["messages_kind"]);
        });
        store.close_blocking();
    }

    #[test]
    fn failing_job_rolls_back_alone_in_a_shared_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), &opts()).unwrap();
        rt().block_on(async {
            let mut jobs = Vec::new();
            for i in 0..50i64 {
                let s = store.clone();
                jobs.push(tokio::spawn(async move {
                    s.write(Durability::Durable, move |c| {
                        c.execute(
                            "INSERT INTO rejections (at_ms, from_peer, message_id, reason) VALUES (?1, 'p', 'm', 'r')",
                            [i],
                        )?;
                        if i % 5 == 0 {
                            return Err(StoreError::Invalid(format!("job {i} fails")));
                        }
                        Ok(i)
                    })
                    .await
                }));
            }
            let mut failed = 0;
            for j in jobs {
                if j.await.unwrap().is_err() {
                    failed += 1;
                }
            }
            assert_eq!(failed, 10);
            let rows: i64 = store
                .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM rejections", [], |r| r.get(0))?))
                .await
                .unwrap();
            assert_eq!(rows, 40, "only the failing jobs' writes are undone");
            let bad: i64 = store
                .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM rejections WHERE at_ms % 5 = 0", [], |r| r.get(0))?))
                .await
                .unwrap();
            assert_eq!(bad, 0);
        });
        store.close_blocking();
    }

    #[test]
    fn a_lone_job_runs_without_a_savepoint_and_a_failing_one_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), &opts()).unwrap();
        rt().block_on(async {
            // Alone in its batch (nothing else queued): no savepoint to go
            // back to, so no sub-journal copy of the pages it changes.
            let savepoint = store
                .write(Durability::Durable, |c| {
                    Ok(c.execute_batch("ROLLBACK TO job").is_ok())
                })
                .await
                .unwrap();
            assert!(!savepoint, "a lone job ran inside a savepoint");
            let failed = store
                .write(Durability::Durable, |c| {
                    c.execute(
                        "INSERT INTO rejections (at_ms, from_peer, message_id, reason) VALUES (1, 'p', 'm', 'r')",
                        [],
                    )?;
                    Err::<(), _>(StoreError::Invalid("the job fails".into()))
                })
                .await;
            assert!(matches!(failed, Err(StoreError::Invalid(m)) if m == "the job fails"));
            // The writer goes on, and the failed job left nothing.
            store
                .write(Durability::Durable, |c| {
                    c.execute(
                        "INSERT INTO rejections (at_ms, from_peer, message_id, reason) VALUES (2, 'p', 'm', 'r')",
                        [],
                    )?;
                    Ok(())
                })
                .await
                .unwrap();
            let rows: Vec<i64> = store
                .read(|c| {
                    let mut st = c.prepare("SELECT at_ms FROM rejections ORDER BY at_ms")?;
                    let r = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
                    Ok(r)
                })
                .await
                .unwrap();
            assert_eq!(rows, vec![2]);
        });
        store.close_blocking();
    }

    /// The small reads of the message path run on the calling thread, not
    /// on the blocking pool: they are answered while the pool's only thread
    /// is busy (each would wait for it otherwise; the deadline is generous,
    /// a failure is a hang); a large read still goes to the pool.
    /// A page longer than what is read on the calling thread is the same
    /// rows as one read: the rest follows from the last cursor of the first
    /// part, in order, up to the limit.
    #[test]
    fn a_page_read_in_two_parts_is_the_page() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), &opts()).unwrap();
        rt().block_on(async {
            let n = INLINE_ROWS as i64 * 2 + 5;
            store
                .write(Durability::Durable, move |c| {
                    for at in 1..=n {
                        c.execute(
                            "INSERT INTO rejections (at_ms, from_peer, message_id, reason) VALUES (?1, 'p', 'm', 'r')",
                            [at],
                        )?;
                    }
                    Ok(())
                })
                .await
                .unwrap();
            let page = |c: &Connection, after: u64, limit: usize| {
                let mut st = c.prepare(
                    "SELECT at_ms FROM rejections WHERE at_ms > ?1 ORDER BY at_ms LIMIT ?2",
                )?;
                let r = st
                    .query_map(rusqlite::params![after as i64, limit as i64], |r| {
                        r.get::<_, i64>(0).map(|v| v as u64)
                    })?
                    .collect::<Result<Vec<u64>, _>>()?;
                Ok(r)
            };
            for (after, limit) in [(0, 10), (0, INLINE_ROWS), (0, INLINE_ROWS + 1), (3, 1024), (60, 7)] {
                let got = store.read_page(after, limit, |x| *x, page).await.unwrap();
                let want: Vec<u64> = (after + 1..=n as u64).take(limit).collect();
                assert_eq!(got, want, "after {after}, limit {limit}");
            }
        });
        store.close_blocking();
    }

    #[test]
    fn small_reads_run_on_the_calling_thread() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), &opts()).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (release, wait) = std::sync::mpsc::channel::<()>();
            let busy = tokio::task::spawn_blocking(move || wait.recv());
            let reads = async {
                assert!(
                    store
                        .held(vec!["m-1".into(), "m-2".into()])
                        .await
                        .unwrap()
                        .is_empty()
                );
                assert!(store.get_message("m-1").await.unwrap().is_none());
                assert!(store.messages_after(0, 256).await.unwrap().is_empty());
                assert_eq!(store.last_cursor().await.unwrap(), 0);
                assert!(store.outbox("node-b", 0, 1, 1024).await.unwrap().is_empty());
                assert!(
                    store
                        .outbox_due("node-b", 0, 1, 1024)
                        .await
                        .unwrap()
                        .is_empty()
                );
                assert!(store.outbox_next_due("node-b", 1).await.unwrap().is_none());
                let here = std::thread::current().id();
                let on = store
                    .read_small(INLINE_ROWS, |_| Ok(std::thread::current().id()))
                    .await
                    .unwrap();
                assert_eq!(on, here);
            };
            tokio::time::timeout(std::time::Duration::from_secs(30), reads)
                .await
                .expect("a small read waited for the blocking pool");
            // Larger than that: the pool (answered once it is free).
            let here = std::thread::current().id();
            let large = store.read_small(INLINE_ROWS + 1, |_| Ok(std::thread::current().id()));
            release.send(()).unwrap();
            assert_ne!(large.await.unwrap(), here);
            busy.await.unwrap().unwrap();
        });
        store.close_blocking();
    }

    /// Read system calls made so far by the calling thread.
    fn thread_reads() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").expect("/proc/thread-self/io");
        io.lines()
            .find_map(|l| l.strip_prefix("syscr:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("syscr in /proc/thread-self/io")
    }

    /// A transaction storing many messages dirties more pages than the
    /// writer's usual cache holds; SQLite then recycled every clean page at
    /// each fetch — the roots and interior pages of the indexes each insert
    /// walks — and read them from the file again, about one read for every
    /// two messages. It now runs with a cache that holds them, and the cache
    /// is back to its usual size after the commit.
    #[test]
    fn large_transactions_keep_the_pages_they_walk() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), &opts()).unwrap();
        const BATCHES: u32 = 12;
        const PER_BATCH: u32 = 1500;
        let batch = |b: u32| -> Vec<NewMessage> {
            (0..PER_BATCH)
                .map(|i| {
                    let n = b * PER_BATCH + i;
                    let id = format!("00000000-0000-7000-8000-{n:012}");
                    let mut m = crate::storage::conformance::msg(
                        &id,
                        "node-b",
                        crate::proto::v1::MessageKind::Alert,
                        &[],
                    );
                    m.created_ms = 1_000 + i64::from(n);
                    m.payload = vec![b'x'; 1024];
                    m.keys = vec!["ip:192.0.2.1".into(), "sha256:00ff".into()];
                    let mut idb = [0u8; 16];
                    idb[12..].copy_from_slice(&n.to_be_bytes());
                    m.sync = Some(crate::storage::SyncEntry {
                        audiences: vec!["*".into()],
                        id: idb,
                        hash: [7; 32],
                    });
                    m
                })
                .collect()
        };
        let pragma = |c: &Connection| -> Result<i64, StoreError> {
            Ok(c.pragma_query_value(None, "cache_size", |r| r.get(0))?)
        };
        rt().block_on(async {
            // The first batch builds the tables' first levels.
            store.insert(batch(0), Durability::Lazy).await.unwrap();
            let before = store.write(Durability::Lazy, |_| Ok(thread_reads())).await.unwrap();
            for b in 1..BATCHES {
                store.insert(batch(b), Durability::Lazy).await.unwrap();
            }
            let reads = store.write(Durability::Lazy, |_| Ok(thread_reads())).await.unwrap() - before;
            let stored = u64::from((BATCHES - 1) * PER_BATCH);
            assert!(
                reads * 20 < stored,
                "the writer read {reads} times from the file while it stored {stored} messages in batches of {PER_BATCH}"
            );
            let usual = store.write(Durability::Lazy, pragma).await.unwrap();
            assert_eq!(usual, -WRITER_CACHE_KIB, "the cache is back to its usual size");
            let during = store
                .enqueue(Durability::Lazy, LARGE_TRANSACTION, pragma)
                .await
                .unwrap()
                .await
                .unwrap();
            assert_eq!(during, -LARGE_CACHE_KIB);
            let after = store.write(Durability::Lazy, pragma).await.unwrap();
            assert_eq!(after, -WRITER_CACHE_KIB);
        });
    }

    #[test]
    fn checkpoints_run_off_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), &opts()).unwrap();
        let db = dir.path().join(DB_FILE);
        rt().block_on(async {
            let auto: i64 = store
                .write(Durability::Lazy, |c| {
                    Ok(c.pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))?)
                })
                .await
                .unwrap();
            assert_eq!(auto, 0, "the writer must not checkpoint inside a commit");
            let before = std::fs::metadata(&db).unwrap().len();
            // Past the threshold: the checkpointer copies the log back.
            let blob = vec![7u8; 64 * 1024];
            for i in 0..(2 * CHECKPOINT_AT as usize / blob.len()) {
                let b = blob.clone();
                store
                    .write(Durability::Lazy, move |c| {
                        c.execute(
                            "INSERT INTO rejections (at_ms, from_peer, message_id, reason) VALUES (?1, 'p', 'm', ?2)",
                            rusqlite::params![i as i64, b],
                        )?;
                        Ok(())
                    })
                    .await
                    .unwrap();
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while std::fs::metadata(&db).unwrap().len() < before + CHECKPOINT_AT {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the log was not checkpointed into {}",
                    db.display()
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        rt().block_on(async {
            // The next commit starts the log over and truncates it to the
            // limit: the checkpointer is not woken after every commit.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            let wal = dir.path().join(format!("{DB_FILE}-wal"));
            loop {
                store
                    .write(Durability::Lazy, |c| {
                        c.execute(
                            "INSERT INTO rejections (at_ms, from_peer, message_id, reason) VALUES (-1, 'p', 'm', 'r')",
                            [],
                        )?;
                        Ok(())
                    })
                    .await
                    .unwrap();
                if std::fs::metadata(&wal).unwrap().len() <= CHECKPOINT_AT {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the log stays over {CHECKPOINT_AT} bytes after checkpoints"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        });
        store.close_blocking();
        // Closing still leaves a self-contained database file.
        let wal = dir.path().join(format!("{DB_FILE}-wal"));
        assert!(std::fs::metadata(&wal).map_or(0, |m| m.len()) == 0);
    }

    #[test]
    fn a_failed_transaction_fails_every_job_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), &opts()).unwrap();
        rt().block_on(async {
            // A job that ends the shared transaction itself makes the next
            // savepoint or the commit fail: every job of the batch must learn it.
            let mut jobs = Vec::new();
            for i in 0..20i64 {
                let s = store.clone();
                jobs.push(tokio::spawn(async move {
                    s.write(Durability::Durable, move |c| {
                        c.execute(
                            "INSERT INTO rejections (at_ms, from_peer, message_id, reason) VALUES (?1, 'p', 'm', 'r')",
                            [i],
                        )?;
                        if i == 3 {
                            c.execute_batch("ROLLBACK")?;
                        }
                        Ok(())
                    })
                    .await
                }));
            }
            let results: Vec<_> = futures::future::join_all(jobs)
                .await
                .into_iter()
                .map(|j| j.unwrap())
                .collect();
            let rows: i64 = store
                .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM rejections", [], |r| r.get(0))?))
                .await
                .unwrap();
            let ok = results.iter().filter(|r| r.is_ok()).count() as i64;
            assert_eq!(rows, ok, "a job is answered Ok exactly when its write is kept");
            assert!(results.iter().any(|r| r.is_err()), "the broken batch is reported");
        });
        store.close_blocking();
    }

    #[test]
    fn lock_refuses_second_open_and_data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), &opts()).unwrap();
        let err = SqliteStore::open(dir.path(), &opts())
            .err()
            .expect("second open refused");
        assert!(
            err.to_string()
                .contains("in use by another certfed process"),
            "{err}"
        );
        rt().block_on(async {
            store
                .write(Durability::Lazy, |c| {
                    c.execute("INSERT INTO rejections (at_ms, from_peer, message_id, reason) VALUES (1, 'p', 'm', 'lazy')", [])?;
                    Ok(())
                })
                .await
                .unwrap();
        });
        store.close_blocking();
        drop(store);
        let again = SqliteStore::open(dir.path(), &opts()).unwrap();
        let n: i64 = rt()
            .block_on(
                again.read(|c| {
                    Ok(c.query_row("SELECT COUNT(*) FROM rejections", [], |r| r.get(0))?)
                }),
            )
            .unwrap();
        assert_eq!(n, 1, "a lazy commit survives a clean close");
        again.close_blocking();
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        SqliteStore::open(dir.path(), &opts())
            .unwrap()
            .close_blocking();
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.pragma_update(None, "user_version", schema::CURRENT_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = SqliteStore::open(dir.path(), &opts())
            .err()
            .expect("refused");
        assert!(err.to_string().contains("newer than this certfed"), "{err}");
    }

    #[test]
    fn writes_after_close_fail_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), &opts()).unwrap();
        store.close_blocking();
        let r = rt().block_on(store.write(Durability::Durable, |_| Ok(())));
        assert!(matches!(r, Err(StoreError::Closed)));
    }

    fn open_err(dir: &Path, node: &str) -> String {
        match SqliteStore::open(dir, &OpenOptions::new(node)) {
            Ok(s) => {
                s.close_blocking();
                panic!("the store in {} was opened", dir.display())
            }
            Err(e) => e.to_string(),
        }
    }

    /// A closed store holding `n` rows in a table of its own (a few hundred KB).
    fn filled_store(dir: &Path, n: i64) {
        let store = SqliteStore::open(dir, &opts()).unwrap();
        rt().block_on(async {
            store
                .write(Durability::Durable, move |c| {
                    for i in 0..n {
                        c.execute(
                            "INSERT INTO rejections (at_ms, from_peer, message_id, reason) VALUES (?1, 'p', ?2, ?3)",
                            rusqlite::params![i, format!("m{i}"), "r".repeat(200)],
                        )?;
                    }
                    Ok(())
                })
                .await
                .unwrap();
        });
        store.close_blocking();
    }

    #[test]
    fn a_new_store_records_its_node_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        SqliteStore::open(dir.path(), &opts())
            .unwrap()
            .close_blocking();
        let marker = std::fs::read_to_string(dir.path().join(MARKER_FILE)).unwrap();
        assert!(marker.contains("node_id = \"node-a\""), "{marker}");
        SqliteStore::open(dir.path(), &opts())
            .unwrap()
            .close_blocking();
    }

    #[test]
    fn a_truncated_or_deleted_database_is_refused_not_started_empty() {
        let dir = tempfile::tempdir().unwrap();
        filled_store(dir.path(), 10);
        let db = dir.path().join(DB_FILE);
        std::fs::File::options()
            .write(true)
            .open(&db)
            .unwrap()
            .set_len(0)
            .unwrap();
        let e = open_err(dir.path(), "node-a");
        assert!(e.contains("is empty (0 bytes)"), "{e}");
        assert!(e.contains(MARKER_FILE) && e.contains("node-a"), "{e}");
        assert!(e.contains("Restore certfed.db from a backup"), "{e}");
        assert!(e.contains(&format!("mv {}", dir.path().display())), "{e}");
        assert_eq!(std::fs::metadata(&db).unwrap().len(), 0, "nothing written");
        std::fs::remove_file(&db).unwrap();
        let e = open_err(dir.path(), "node-a");
        assert!(e.contains("is missing"), "{e}");
        assert!(!db.exists(), "no new database was created");
    }

    #[test]
    fn scribbled_pages_are_found_at_open() {
        use std::io::{Seek, SeekFrom, Write};
        let dir = tempfile::tempdir().unwrap();
        filled_store(dir.path(), 2000);
        let db = dir.path().join(DB_FILE);
        let len = std::fs::metadata(&db).unwrap().len();
        assert!(len > 64 * 1024, "{len}");
        let mut f = std::fs::File::options().write(true).open(&db).unwrap();
        f.seek(SeekFrom::Start(len / 2)).unwrap();
        let junk: Vec<u8> = (0..8192u32).map(|i| (i * 7919 % 251) as u8).collect();
        f.write_all(&junk).unwrap();
        drop(f);
        let e = open_err(dir.path(), "node-a");
        assert!(e.contains("is damaged (quick_check"), "{e}");
        assert!(e.contains("Restore certfed.db from a backup"), "{e}");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        filled_store(dir.path(), 10);
        std::fs::write(dir.path().join(DB_FILE), vec![0x5a; 8192]).unwrap();
        let e = open_err(dir.path(), "node-a");
        assert!(
            e.contains("is damaged") && e.contains("not a database"),
            "{e}"
        );
    }

    #[test]
    fn another_nodes_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        filled_store(dir.path(), 1);
        let e = open_err(dir.path(), "node-b");
        assert!(
            e.contains("holds the store of node node-a") && e.contains("node.id is node-b"),
            "{e}"
        );
        // The database alone (copied into a fresh folder) still knows its owner.
        let other = tempfile::tempdir().unwrap();
        std::fs::copy(dir.path().join(DB_FILE), other.path().join(DB_FILE)).unwrap();
        let e = open_err(other.path(), "node-b");
        assert!(
            e.contains(&format!(
                "recorded in {}",
                other.path().join(DB_FILE).display()
            )),
            "{e}"
        );
        // ... and is accepted, as a restore, by its own node.
        SqliteStore::open(other.path(), &opts())
            .unwrap()
            .close_blocking();
        assert!(other.path().join(MARKER_FILE).exists());
    }

    #[test]
    fn a_store_from_before_owners_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        filled_store(dir.path(), 3);
        std::fs::remove_file(dir.path().join(MARKER_FILE)).unwrap();
        let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
        c.execute("DELETE FROM store_meta", []).unwrap();
        drop(c);
        SqliteStore::open(dir.path(), &OpenOptions::new("node-z"))
            .unwrap()
            .close_blocking();
        let e = open_err(dir.path(), "node-a");
        assert!(e.contains("holds the store of node node-z"), "{e}");
    }

    #[test]
    fn damage_found_while_running_stops_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), &opts()).unwrap();
        rt().block_on(async {
            // A row whose path does not decode, as a scribbled page would leave it.
            store
                .write(Durability::Durable, |c| {
                    c.execute(
                        "INSERT INTO messages (message_id, origin, kind, tlp, created_ms, received_ms, path, header, payload, signature)
                         VALUES ('m1', 'node-b', 1, 2, 1, 1, 'not json', x'', x'', x'')",
                        [],
                    )?;
                    Ok(())
                })
                .await
                .unwrap();
            let e = store.get_message("m1").await.unwrap_err();
            assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
            let w = store
                .record_rejections(
                    vec![RejectionRow {
                        from_peer: "p".into(),
                        message_id: "x".into(),
                        reason: "r".into(),
                    }],
                    1,
                )
                .await
                .unwrap_err();
            assert!(matches!(w, StoreError::Corrupt(_)), "{w:?}");
            assert!(!w.is_temporary());
            assert!(w.to_string().contains("writes stopped"), "{w}");
        });
        store.close_blocking();
    }

    #[test]
    fn scribbled_pages_found_at_runtime_are_corrupt_not_temporary() {
        use std::io::{Seek, SeekFrom, Write};
        let dir = tempfile::tempdir().unwrap();
        filled_store(dir.path(), 2000);
        let db = dir.path().join(DB_FILE);
        let len = std::fs::metadata(&db).unwrap().len();
        let mut f = std::fs::File::options().write(true).open(&db).unwrap();
        // The second half: pages of the filled table only (the schema and
        // the store's metadata were written first).
        f.seek(SeekFrom::Start(len / 2)).unwrap();
        f.write_all(&vec![0xa5; (len - len / 2) as usize]).unwrap();
        drop(f);
        let unchecked = OpenOptions {
            integrity: IntegrityCheck::Off,
            ..opts()
        };
        let store = SqliteStore::open(dir.path(), &unchecked).unwrap();
        let r = rt().block_on(store.read(|c| {
            let n: i64 = c
                .query_row("SELECT SUM(LENGTH(reason)) FROM rejections", [], |r| {
                    r.get(0)
                })
                .map_err(|e| sql_err("reading", e))?;
            Ok(n)
        }));
        let e = r.expect_err("a scribbled table cannot be read");
        assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
        assert!(!e.is_temporary());
        let w = rt().block_on(store.write(Durability::Durable, |_| Ok(())));
        assert!(matches!(w, Err(StoreError::Corrupt(_))), "{w:?}");
        store.close_blocking();
    }
}
