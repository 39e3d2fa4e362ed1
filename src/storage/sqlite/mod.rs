//! The embedded SQLite backend: one database file (WAL, `synchronous=FULL`) in
//! `storage.dir`, with versioned migrations, an exclusive directory lock, one
//! writer thread doing group commit, and a small pool of read connections.
//!
//! Every write is a job run inside a savepoint of a shared transaction; the
//! writer drains whatever jobs are queued, commits once (one fsync for the
//! batch) and only then answers each caller. A job that returns an error rolls
//! back its own savepoint and leaves the others untouched. If the transaction
//! itself fails (cannot begin, a savepoint cannot be opened or closed, the
//! commit fails — a full disk does this), every job of the batch is answered
//! with that error and nothing of the batch is kept.
//!
//! No type of the SQLite driver leaves this folder.
mod queries;
mod schema;

use super::{
    AlertQuery, Deferral, DeliveryRow, Durability, NewMessage, OutboxItem, Outcome, Pending,
    ReceiptRow, RejectionRow, Storage, Store, StoreError, Stored, StoredMessage,
};
use rusqlite::{Connection, OpenFlags};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};

/// Classifies a driver error: a full disk and a damaged file are told apart
/// from other failures, because callers treat them differently.
pub(crate) fn sql_err(context: &str, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
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
}

struct TypedJob<T, F> {
    f: Option<F>,
    result: Option<Result<T, StoreError>>,
    tx: oneshot::Sender<Result<T, StoreError>>,
    durability: Durability,
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
}

/// Most jobs folded into one commit.
const MAX_BATCH: usize = 2048;
/// Read connections kept open for reuse.
const READ_POOL: usize = 8;
const DB_FILE: &str = "certfed.db";
const LOCK_FILE: &str = "LOCK";

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
    _lock: File,
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
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Opens (creating if needed) the SQLite store in `dir`, as a [`Store`].
pub fn open(dir: &Path) -> Result<Store, StoreError> {
    Ok(Arc::new(SqliteStore::open(dir)?))
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`. Refuses if another process
    /// holds the directory lock, or if the schema is newer than this build knows.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
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
        let mut conn = open_conn(&db_path, false)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Invalid(format!(
                "{}: cannot enable WAL journal (got {mode}); is the file system local?",
                db_path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        schema::migrate(&mut conn)?;
        let (tx, rx) = mpsc::channel::<Box<dyn WriteJob>>(8192);
        let thread = std::thread::Builder::new()
            .name("certfed-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| io("cannot start the writer thread".into(), e))?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
                readers: Mutex::new(Vec::new()),
                db_path,
                _lock: lock,
            }),
        })
    }

    /// Runs `f` in the writer's transaction; resolves once the batch it was part
    /// of is committed as durably as `durability` asks. An `Err` from `f` rolls
    /// back only `f`'s changes.
    async fn write<T, F>(&self, durability: Durability, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.enqueue(durability, f).await?.await
    }

    /// Queues `f` for the writer and returns once it is queued (behind
    /// everything queued before), with a future that resolves on commit.
    async fn enqueue<T, F>(&self, durability: Durability, f: F) -> Result<Pending<T>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Box<dyn WriteJob> = Box::new(TypedJob {
            f: Some(f),
            result: None,
            tx,
            durability,
        });
        let sender = self
            .inner
            .writer
            .lock()
            .expect("writer lock")
            .clone()
            .ok_or(StoreError::Closed)?;
        sender.send(job).await.map_err(|_| StoreError::Closed)?;
        Ok(Box::pin(async move {
            rx.await.map_err(|_| StoreError::Closed)?
        }))
    }

    /// Runs `f` on a read connection (a snapshot of committed data) off the async runtime.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner.readers.lock().expect("readers lock").pop();
            let conn = match conn {
                Some(c) => c,
                None => open_conn(&inner.db_path, true)?,
            };
            let r = f(&conn);
            let mut pool = inner.readers.lock().expect("readers lock");
            if pool.len() < READ_POOL {
                pool.push(conn);
            }
            r
        })
        .await
        .map_err(|e| StoreError::Invalid(format!("storage: read task failed: {e}")))?
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

/// Runs one batch in one transaction. `Err` means the transaction failed as a
/// whole (nothing of it is kept).
fn run_batch(conn: &Connection, batch: &mut [Box<dyn WriteJob>]) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| sql_err("cannot begin a transaction", e))?;
    for job in batch.iter_mut() {
        let step = conn
            .execute_batch("SAVEPOINT job")
            .map_err(|e| sql_err("cannot open a savepoint", e))
            .and_then(|()| {
                let end = if job.run(conn) {
                    "RELEASE job"
                } else {
                    "ROLLBACK TO job; RELEASE job"
                };
                conn.execute_batch(end)
                    .map_err(|e| sql_err("cannot close a savepoint", e))
            });
        if let Err(e) = step {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    conn.execute_batch("COMMIT").map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        sql_err("cannot commit", e)
    })
}

fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<Box<dyn WriteJob>>) {
    let mut batch: Vec<Box<dyn WriteJob>> = Vec::with_capacity(MAX_BATCH);
    let mut synchronous_full = true;
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
        let result = result.and_then(|()| run_batch(&conn, &mut batch));
        if let Err(e) = &result {
            tracing::error!(error = %e, jobs = batch.len(), "storage: transaction failed; every write in it is refused");
        }
        for job in batch.drain(..) {
            job.finish(result.clone());
        }
    }
    // Channel closed: checkpoint the WAL so the database file is self-contained.
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
}

#[async_trait::async_trait]
impl Storage for SqliteStore {
    async fn insert(
        &self,
        msgs: Vec<NewMessage>,
        durability: Durability,
    ) -> Result<Vec<Stored>, StoreError> {
        self.write(durability, move |c| queries::insert_messages(c, &msgs))
            .await
    }

    async fn insert_queued(
        &self,
        msgs: Vec<NewMessage>,
        durability: Durability,
    ) -> Result<Pending<Vec<Stored>>, StoreError> {
        self.enqueue(durability, move |c| queries::insert_messages(c, &msgs))
            .await
    }

    async fn message_count(&self) -> Result<u64, StoreError> {
        self.read(queries::message_count).await
    }

    async fn get_message(&self, message_id: &str) -> Result<Option<StoredMessage>, StoreError> {
        let id = message_id.to_string();
        self.read(move |c| queries::get_message(c, &id)).await
    }

    async fn messages_after(
        &self,
        cursor: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.read(move |c| queries::messages_after(c, cursor, limit))
            .await
    }

    async fn last_cursor(&self) -> Result<u64, StoreError> {
        self.read(queries::last_cursor).await
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
        self.read(move |c| queries::outbox(c, &peer, after, now_ms, limit))
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
        self.read(move |c| queries::outbox_due(c, &peer, after, now_ms, limit))
            .await
    }

    async fn outbox_next_due(&self, peer: &str, now_ms: i64) -> Result<Option<i64>, StoreError> {
        let peer = peer.to_string();
        self.read(move |c| queries::outbox_next_due(c, &peer, now_ms))
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

    #[test]
    fn conformance() {
        rt().block_on(crate::storage::conformance::run_all(|dir| {
            open(dir).expect("open sqlite store")
        }));
    }

    #[test]
    fn failing_job_rolls_back_alone_in_a_shared_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
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
    fn a_failed_transaction_fails_every_job_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
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
        let store = SqliteStore::open(dir.path()).unwrap();
        let err = SqliteStore::open(dir.path())
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
        let again = SqliteStore::open(dir.path()).unwrap();
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
        SqliteStore::open(dir.path()).unwrap().close_blocking();
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.pragma_update(None, "user_version", schema::CURRENT_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = SqliteStore::open(dir.path()).err().expect("refused");
        assert!(err.to_string().contains("newer than this certfed"), "{err}");
    }

    #[test]
    fn writes_after_close_fail_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store.close_blocking();
        let r = rt().block_on(store.write(Durability::Durable, |_| Ok(())));
        assert!(matches!(r, Err(StoreError::Closed)));
    }
}
