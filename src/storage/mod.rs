//! The embedded store: SQLite (WAL, synchronous=FULL) in `storage.dir`, with
//! versioned migrations, an exclusive directory lock, one writer thread doing
//! group commit, and a small pool of read connections.
//!
//! Every write is a closure run inside a savepoint of a shared transaction; the
//! writer drains whatever jobs are queued, commits once (one fsync for the
//! batch) and only then answers each caller. A failing job rolls back its own
//! savepoint and leaves the others untouched.
pub mod messages;
mod schema;

use rusqlite::{Connection, OpenFlags};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};

/// A storage failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Io(String),
    #[error("storage: database error: {0}")]
    Sql(String),
    #[error("storage: the store is closed")]
    Closed,
    #[error("{0}")]
    Invalid(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sql(e.to_string())
    }
}

type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type Run = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;

/// A write job; `lazy` jobs may be committed without their own fsync.
struct Job {
    run: Run,
    lazy: bool,
}

/// Most jobs folded into one commit.
const MAX_BATCH: usize = 2048;
const DB_FILE: &str = "certfed.db";
const LOCK_FILE: &str = "LOCK";

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Option<mpsc::Sender<Job>>>,
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
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) the store in `dir`. Refuses if another process
    /// holds the directory lock, or if the schema is newer than this build knows.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        create_private_dir(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| {
                StoreError::Io(format!(
                    "{}: cannot open lock file: {e}",
                    lock_path.display()
                ))
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Io(format!(
                    "storage.dir {} is in use by another certfed process (lock {} is held); stop that process or choose another storage.dir",
                    dir.display(),
                    lock_path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::Io(format!(
                    "{}: cannot lock: {e}",
                    lock_path.display()
                )));
            }
        }
        let db_path = dir.join(DB_FILE);
        let mut conn = open_conn(&db_path, false)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Io(format!(
                "{}: cannot enable WAL journal (got {mode}); is the file system local?",
                db_path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        schema::migrate(&mut conn)?;
        let (tx, rx) = mpsc::channel::<Job>(8192);
        let thread = std::thread::Builder::new()
            .name("certfed-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| StoreError::Io(format!("cannot start writer thread: {e}")))?;
        Ok(Store {
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
    /// of is durably committed. An `Err` from `f` rolls back only `f`'s changes.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(f, false).await
    }

    /// Like [`Store::write`], but a batch of only lazy jobs is committed without
    /// an fsync (WAL, `synchronous=NORMAL`): it survives a crash of the process,
    /// and becomes durable against power loss with the next durable commit,
    /// which syncs the WAL it follows. For bookkeeping whose loss is harmless
    /// (e.g. outbox rows a peer acknowledged: a resend is deduplicated).
    pub async fn write_lazy<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(f, true).await
    }

    async fn submit<T, F>(&self, f: F, lazy: bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let run: Run = Box::new(move |conn| {
            let result = f(conn);
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit| {
                let _ = tx.send(commit.and(result));
            });
            (ok, reply)
        });
        let job = Job { run, lazy };
        let sender = self
            .inner
            .writer
            .lock()
            .expect("writer lock")
            .clone()
            .ok_or(StoreError::Closed)?;
        sender.send(job).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a read connection (a snapshot of committed data) off the async runtime.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
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
            if pool.len() < 8 {
                pool.push(conn);
            }
            r
        })
        .await
        .map_err(|e| StoreError::Io(format!("read task failed: {e}")))?
    }

    /// Stops the writer after it has committed everything queued, and waits for it.
    pub fn close(&self) {
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
        .map_err(|e| StoreError::Io(format!("storage.dir {}: cannot create: {e}", dir.display())))
}

fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut synchronous_full = true;
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
        let want_full = batch.iter().any(|j| !j.lazy);
        if want_full != synchronous_full {
            let mode = if want_full { "FULL" } else { "NORMAL" };
            match conn.pragma_update(None, "synchronous", mode) {
                Ok(()) => synchronous_full = want_full,
                Err(e) => tracing::error!(error = %e, "storage: cannot set synchronous"),
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            tracing::error!(error = %e, "storage: cannot begin transaction");
            // Dropping the jobs tells their callers the store failed.
            batch.clear();
            continue;
        }
        for job in batch.drain(..) {
            if let Err(e) = conn.execute_batch("SAVEPOINT job") {
                // Without a savepoint a failing job could not be undone alone:
                // do not run it (dropping it tells its caller the store failed).
                tracing::error!(error = %e, "storage: cannot open savepoint; job refused");
                continue;
            }
            let (ok, reply) = (job.run)(&conn);
            let end = if ok {
                "RELEASE job"
            } else {
                "ROLLBACK TO job; RELEASE job"
            };
            if let Err(e) = conn.execute_batch(end) {
                tracing::error!(error = %e, "storage: savepoint end failed");
            }
            replies.push(reply);
        }
        let commit = conn.execute_batch("COMMIT").map_err(StoreError::from);
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for r in replies {
            r(commit.clone());
        }
    }
    // Channel closed: checkpoint the WAL so the database file is self-contained.
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
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
    fn failing_job_rolls_back_alone_in_a_shared_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        rt().block_on(async {
            let mut jobs = Vec::new();
            for i in 0..50i64 {
                let s = store.clone();
                jobs.push(tokio::spawn(async move {
                    s.write(move |c| {
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
        store.close();
    }

    #[test]
    fn lock_refuses_second_open_and_data_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).err().expect("second open refused");
        assert!(
            err.to_string()
                .contains("in use by another certfed process"),
            "{err}"
        );
        rt().block_on(async {
            store
                .write_lazy(|c| {
                    c.execute("INSERT INTO rejections (at_ms, from_peer, message_id, reason) VALUES (1, 'p', 'm', 'lazy')", [])?;
                    Ok(())
                })
                .await
                .unwrap();
        });
        store.close();
        drop(store);
        let again = Store::open(dir.path()).unwrap();
        let n: i64 = rt()
            .block_on(
                again.read(|c| {
                    Ok(c.query_row("SELECT COUNT(*) FROM rejections", [], |r| r.get(0))?)
                }),
            )
            .unwrap();
        assert_eq!(n, 1, "a lazy commit survives a clean close");
        again.close();
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path()).unwrap().close();
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.pragma_update(None, "user_version", schema::CURRENT_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = Store::open(dir.path()).err().expect("refused");
        assert!(err.to_string().contains("newer than this certfed"), "{err}");
    }

    #[test]
    fn writes_after_close_fail_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.close();
        let r = rt().block_on(store.write(|_| Ok(())));
        assert!(matches!(r, Err(StoreError::Closed)));
    }
}
