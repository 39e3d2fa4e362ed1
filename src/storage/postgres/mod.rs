//! The PostgreSQL backend: the node's store in a PostgreSQL database
//! (`storage.url`), for nodes that must survive the loss of a server. Two
//! `certfed serve` processes of one node may share the database as an
//! active/standby pair; exactly one of them writes (see [`lease`]).
//!
//! Invariants (besides those of every backend, checked by the shared
//! conformance suite):
//! - One writer task per process does every write: it drains the queued
//!   write jobs (at most `MAX_BATCH` jobs and `MAX_BATCH_ROWS` rows, so a
//!   transaction stays short), runs them in ONE transaction (each job in a savepoint of its
//!   own, so a failing job rolls back alone), commits once, and only then
//!   answers each caller (group commit). A batch with a durable job commits
//!   with `synchronous_commit = on`: the WAL is flushed (and, if the operator
//!   configured synchronous replicas, replicated) before any caller hears of
//!   it. A batch of lazy jobs only commits with `synchronous_commit = off`.
//! - Consecutive insert jobs of a batch (concurrent `PublishAlert` calls,
//!   Push chunks) are stored by ONE pipelined call in one savepoint; only if
//!   that fails are they run again one by one, each in its own savepoint, so
//!   that a bad job still fails alone.
//! - Writes are applied, and given cursors, in the order they were queued.
//! - Fencing: a store opened for an active/standby pair refuses every write
//!   until its lease makes it active, and every write transaction first
//!   takes a share lock on the lease row *with this member's epoch*: if the
//!   lease moved to another member (a paused or partitioned old active), the
//!   transaction finds no row, writes nothing, and every later write is
//!   refused ([`StoreError::Fenced`]). A takeover updates that row, so it
//!   waits for a write in progress to end, and a write that starts after it
//!   sees the new epoch.
//! - Opening migrates the schema (refusing one newer than this build),
//!   checks the node id recorded in the database (refusing another node's),
//!   and names user, host and database in every error, never the password.
//! - A row that does not decode is damage ([`StoreError::Corrupt`]): logged at
//!   ERROR once, and every later write is refused.
//!
//! No type of the PostgreSQL driver leaves this folder.
pub mod admin;
mod connect;
pub mod lease;
mod queries;
mod schema;

pub use connect::{PgTarget, redact};

use super::{
    AlertQuery, Claim, Deferral, DeliveryRow, Durability, NewMessage, OpenOptions, OutboxItem,
    Outcome, Pending, PurgePlan, Purged, ReceiptRow, RejectionRow, RequestRecord, Requeue,
    RosterRow, Space, Storage, StoreError, Stored, StoredMessage, SyncBucket, SyncItem, SyncPos,
};
use deadpool_postgres::{Object, Pool};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{mpsc, oneshot, watch};

/// Most jobs folded into one commit.
const MAX_BATCH: usize = 1024;
/// Most messages (or other rows) written by one commit: a transaction holds
/// a share lock on the lease row until it ends, and must stay well within the
/// lease's 2 s lock timeout, or the renewal fails while the writer is busy.
const MAX_BATCH_ROWS: usize = 4096;
/// Sessions kept: the writer, the lease, and readers.
const POOL_SIZE: usize = 12;

/// Classifies a driver error: a full disk, damage, refused credentials and a
/// lost connection are told apart, because callers treat them differently.
pub(crate) fn pg_err(context: &str, e: tokio_postgres::Error) -> StoreError {
    use tokio_postgres::error::SqlState;
    let code = e.code().cloned();
    let text = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => chain(&e),
    };
    match code {
        Some(c) if c == SqlState::DISK_FULL || c == SqlState::OUT_OF_MEMORY => {
            StoreError::Full(format!("{context}: {text}"))
        }
        Some(c) if c == SqlState::DATA_CORRUPTED || c == SqlState::INDEX_CORRUPTED => {
            StoreError::Corrupt(format!("{context}: {text}"))
        }
        _ => StoreError::Backend {
            context: context.to_string(),
            source: Arc::new(Described(text)),
        },
    }
}

/// An error with its causes, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut t = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let m = s.to_string();
        if !t.contains(&m) {
            t = format!("{t}: {m}");
        }
        src = s.source();
    }
    t
}

/// A driver error reduced to its text (the driver's type stays here).
#[derive(Debug)]
struct Described(String);
impl std::fmt::Display for Described {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Described {}

/// Who may write, as the lease last said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FenceState {
    /// Not part of a pair (tools, tests, a single node without lease).
    Open,
    /// A standby: every write is refused.
    Standby,
    /// The active member with this epoch: writes check it.
    Active { epoch: i64 },
    /// The lease moved away: every write is refused, for good.
    Lost(String),
}

/// The fence shared by the store and its lease.
pub(crate) struct Fence {
    pub(crate) holder: String,
    state: Mutex<FenceState>,
    /// Set once when a write finds the lease gone (the process must step down).
    lost: watch::Sender<Option<String>>,
}

impl Fence {
    fn new(holder: String, state: FenceState) -> Arc<Fence> {
        Arc::new(Fence {
            holder,
            state: Mutex::new(state),
            lost: watch::channel(None).0,
        })
    }

    pub(crate) fn get(&self) -> FenceState {
        self.state.lock().expect("fence lock").clone()
    }

    pub(crate) fn set(&self, s: FenceState) {
        let mut cur = self.state.lock().expect("fence lock");
        if matches!(*cur, FenceState::Lost(_)) {
            return;
        }
        if let FenceState::Lost(why) = &s {
            self.lost.send_replace(Some(why.clone()));
        }
        *cur = s;
    }
}

/// What a write job does.
enum Op {
    Insert(Vec<NewMessage>),
    Defer(String, Vec<Deferral>, i64),
    Complete(String, Vec<Outcome>, i64),
    Reject(Vec<RejectionRow>, i64),
    Ack(String, i64),
    Claim(RequestRecord, i64),
    CompleteRequest(String, Vec<u8>),
    Release(String),
    Purge(PurgePlan),
    SaveRoster(RosterRow),
    Requeue(String, Vec<Requeue>, i64),
    DropOutbox(String, String, i64),
    #[cfg(test)]
    Raw(String),
}

impl Op {
    /// The rows a job writes, roughly (the batch bound counts them).
    fn rows(&self) -> usize {
        match self {
            Op::Insert(m) => m.len().max(1),
            Op::Defer(_, d, _) => d.len().max(1),
            Op::Complete(_, o, _) => o.len().max(1),
            Op::Reject(r, _) => r.len().max(1),
            Op::Requeue(_, r, _) => r.len().max(1),
            _ => 1,
        }
    }
}

/// What a write job returns.
enum Done {
    Stored(Vec<Stored>),
    Unit,
    Ack(Option<i64>),
    Claim(Claim),
    Purged(Purged),
    Count(u64),
}

struct Job {
    op: Op,
    durability: Durability,
    result: Option<Result<Done, StoreError>>,
    tx: oneshot::Sender<Result<Done, StoreError>>,
}

/// The PostgreSQL store; cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    fence: Arc<Fence>,
    describe: String,
    damaged: OnceLock<String>,
}

/// Options of a member of an active/standby pair.
#[derive(Debug, Clone)]
pub struct PairOptions {
    /// This member's name in the lease (host and listen address).
    pub holder: String,
    /// How long a lease lasts without renewal.
    pub lease: std::time::Duration,
}

/// Opens the store in the database `target` names, for node `opts.node_id`.
/// With `pair`, the store is fenced: it refuses writes until the returned
/// lease makes this member active.
pub async fn open(
    target: &PgTarget,
    opts: &OpenOptions,
    pair: Option<PairOptions>,
) -> Result<(PgStore, Option<lease::PgLease>), StoreError> {
    let parsed = connect::parse(target)?;
    let describe = parsed.target.to_string();
    let pool = connect::pool(&parsed, POOL_SIZE)?;
    let mut first = pool.get().await.map_err(|e| refuse_connect(&parsed, e))?;
    schema::migrate(&mut first, &opts.node_id, &describe, now_ms())
        .await
        .map_err(|e| match e {
            StoreError::Backend { context, source } => StoreError::Invalid(format!(
                "storage: {describe}: {context}: {source}; check that the role may create tables in that database"
            )),
            other => other,
        })?;
    drop(first);
    let fence = Fence::new(
        pair.as_ref().map(|p| p.holder.clone()).unwrap_or_default(),
        if pair.is_some() {
            FenceState::Standby
        } else {
            FenceState::Open
        },
    );
    let (tx, rx) = mpsc::channel::<Job>(8192);
    let inner = Arc::new(Inner {
        pool: pool.clone(),
        writer: Mutex::new(Some(tx)),
        task: Mutex::new(None),
        fence: fence.clone(),
        describe: describe.clone(),
        damaged: OnceLock::new(),
    });
    let task = tokio::spawn(writer_loop(pool.clone(), fence.clone(), rx));
    *inner.task.lock().expect("task lock") = Some(task);
    tracing::info!(database = %describe, pair = pair.is_some(), "storage: postgres store open");
    // The lease has sessions of its own: busy readers never delay a renewal.
    let lease = match pair {
        Some(p) => Some(lease::PgLease::new(connect::pool(&parsed, 2)?, fence, p)),
        None => None,
    };
    Ok((PgStore { inner }, lease))
}

/// The refusal when the database cannot be reached, refuses the login, or
/// fails the TLS checks; the hint names what to fix.
fn refuse_connect(p: &connect::Parsed, e: deadpool_postgres::PoolError) -> StoreError {
    let describe = &p.target;
    let text = match &e {
        deadpool_postgres::PoolError::Backend(b) => match b.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => chain(b),
        },
        other => other.to_string(),
    };
    let lower = text.to_ascii_lowercase();
    let ca = p
        .ca_file()
        .map_or_else(|| "none".to_string(), |c| c.display().to_string());
    let hint = if lower.contains("unknownissuer")
        || lower.contains("unknown issuer")
        || lower.contains("badsignature")
    {
        format!(
            "the database server's certificate is not signed by the CA in sslrootcert ({ca}): point sslrootcert at the CA that signed the server's certificate"
        )
    } else if lower.contains("not valid for name") || lower.contains("notvalidforname") {
        format!(
            "the database server's certificate does not name the host in storage.url ({}): use a host name the certificate names, or have the certificate reissued for this one",
            describe.hosts
        )
    } else if p.ca_file().is_some()
        && (lower.contains("expired") || lower.contains("not valid yet"))
    {
        "the database server's certificate is outside its validity period: have it renewed (and check this machine's clock)".to_string()
    } else if lower.contains("server does not support tls") {
        "the database server does not offer TLS: set ssl = on (with its certificate and key) in its postgresql.conf".to_string()
    } else if lower.contains("no encryption") {
        "the server accepts this user only over TLS: add sslmode=verify-full&sslrootcert=/path/to/ca.crt (the CA of the server's certificate) to storage.url".to_string()
    } else if text.contains("28P01") || text.contains("28000") || text.contains("password") {
        "check the user in storage.url and the password (storage.password_file or CERTFED__STORAGE__PASSWORD)".to_string()
    } else if text.contains("3D000") {
        "create the database first (README, \"PostgreSQL storage\")".to_string()
    } else {
        "check that PostgreSQL runs and that storage.url names its host and port".to_string()
    };
    StoreError::Invalid(format!(
        "storage: cannot connect to {describe}: {text}; {hint}"
    ))
}

/// A pool error while running.
fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(b) => pg_err("cannot connect to the database", b),
        other => StoreError::backend(
            "cannot get a database session",
            Described(other.to_string()),
        ),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Runs one job's statements on the writer's session.
async fn run_op(c: &Object, op: &Op) -> Result<Done, StoreError> {
    Ok(match op {
        Op::Insert(m) => {
            let refs: Vec<&NewMessage> = m.iter().collect();
            Done::Stored(queries::insert_messages(c, &refs).await?)
        }
        Op::Defer(p, d, now) => {
            queries::defer_outbox(c, p, d, *now).await?;
            Done::Unit
        }
        Op::Complete(p, o, now) => {
            queries::complete_outbox(c, p, o, *now).await?;
            Done::Unit
        }
        Op::Reject(r, now) => {
            queries::record_rejections(c, r, *now).await?;
            Done::Unit
        }
        Op::Ack(id, now) => Done::Ack(queries::acknowledge(c, id, *now).await?),
        Op::Claim(r, exp) => Done::Claim(queries::claim_request(c, r, *exp).await?),
        Op::CompleteRequest(id, resp) => {
            queries::complete_request(c, id, resp).await?;
            Done::Unit
        }
        Op::Release(id) => {
            queries::release_request(c, id).await?;
            Done::Unit
        }
        Op::Purge(p) => Done::Purged(queries::purge(c, p).await?),
        Op::SaveRoster(r) => {
            queries::save_roster(c, r).await?;
            Done::Unit
        }
        Op::Requeue(peer, items, now) => Done::Count(queries::requeue(c, peer, items, *now).await?),
        Op::DropOutbox(peer, reason, now) => {
            Done::Count(queries::drop_outbox(c, peer, reason, *now).await?)
        }
        #[cfg(test)]
        Op::Raw(sql) => {
            c.batch_execute(sql)
                .await
                .map_err(|e| pg_err("test statement", e))?;
            Done::Unit
        }
    })
}

async fn exec(c: &Object, sql: &str, what: &str) -> Result<(), StoreError> {
    c.batch_execute(sql).await.map_err(|e| pg_err(what, e))
}

/// Runs one batch in one transaction. `Err` means the transaction failed as a
/// whole (nothing of it is kept); `Ok` means it committed and each job holds
/// its own result.
async fn run_batch(pool: &Pool, fence: &Fence, batch: &mut [Job]) -> Result<(), StoreError> {
    let epoch = match fence.get() {
        FenceState::Open => None,
        FenceState::Active { epoch } => Some(epoch),
        FenceState::Standby => {
            return Err(StoreError::Fenced(
                "this process is the standby of an active/standby pair; only the active member writes".into(),
            ));
        }
        FenceState::Lost(why) => return Err(StoreError::Fenced(why)),
    };
    let c = pool.get().await.map_err(pool_err)?;
    let durable = batch.iter().any(|j| j.durability == Durability::Durable);
    let begin = if durable {
        "BEGIN"
    } else {
        "BEGIN; SET LOCAL synchronous_commit = off"
    };
    let r = run_in_transaction(&c, begin, fence, epoch, batch).await;
    match r {
        Ok(()) => exec(&c, "COMMIT", "cannot commit").await,
        Err(e) => {
            let _ = c.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Begins the transaction (`begin`), checks the lease, runs the batch. The
/// lease check is issued together with `BEGIN` (one round trip); it still
/// runs inside the transaction, before any of the batch's writes.
async fn run_in_transaction(
    c: &Object,
    begin: &str,
    fence: &Fence,
    epoch: Option<i64>,
    batch: &mut [Job],
) -> Result<(), StoreError> {
    let Some(epoch) = epoch else {
        exec(c, begin, "cannot begin a transaction").await?;
        return run_jobs(c, batch).await;
    };
    let (_, held) = futures::try_join!(exec(c, begin, "cannot begin a transaction"), async {
        let st = c
            .prepare_cached(
                "SELECT 1 FROM lease WHERE id = 1 AND epoch = $1 AND holder = $2 FOR SHARE",
            )
            .await
            .map_err(|e| pg_err("cannot prepare the lease check", e))?;
        c.query_opt(&st, &[&epoch, &fence.holder])
            .await
            .map_err(|e| pg_err("cannot check the lease", e))
    })?;
    {
        if held.is_none() {
            let now = c
                .query_opt("SELECT epoch, holder FROM lease WHERE id = 1", &[])
                .await
                .ok()
                .flatten()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)));
            let why = match now {
                Some((e, h)) => format!(
                    "the lease moved from epoch {epoch} ({}) to epoch {e} held by {h}: another member took over; this process must not write again",
                    fence.holder
                ),
                None => format!(
                    "the lease row is gone (epoch {epoch}); this process must not write again"
                ),
            };
            tracing::error!(reason = %why, "storage: write refused: fenced");
            fence.set(FenceState::Lost(why.clone()));
            return Err(StoreError::Fenced(why));
        }
    }
    run_jobs(c, batch).await
}

/// Runs the jobs of a batch in the open transaction.
async fn run_jobs(c: &Object, batch: &mut [Job]) -> Result<(), StoreError> {
    if batch.len() == 1 {
        let r = run_op(c, &batch[0].op).await;
        let failed = r.as_ref().err().cloned();
        batch[0].result = Some(r);
        // The job's own failure: nothing of the transaction is kept; the job
        // is answered with its error (finish keeps it).
        return match failed {
            Some(_) => Err(Rollback.into()),
            None => Ok(()),
        };
    }
    let mut start = 0;
    while start < batch.len() {
        // A run of inserts (concurrent PublishAlert calls, Push chunks) is
        // stored by one call: its statements are pipelined together and the
        // per-message bookkeeping (counts, reconciliation index) is written
        // once for the run, not once per job.
        let end = start
            + batch[start..]
                .iter()
                .take_while(|j| matches!(j.op, Op::Insert(_)))
                .count();
        if end - start > 1 && insert_run(c, &mut batch[start..end]).await? {
            start = end;
            continue;
        }
        // One job at a time, each in its own savepoint (also a run whose
        // joint insert failed: each job then fails or succeeds alone).
        let one = start + 1;
        let end = if end - start > 1 { end } else { one };
        for job in batch[start..end].iter_mut() {
            run_alone(c, job).await?;
        }
        start = end;
    }
    Ok(())
}

/// Runs one job in a savepoint of its own.
async fn run_alone(c: &Object, job: &mut Job) -> Result<(), StoreError> {
    exec(c, "SAVEPOINT job", "cannot open a savepoint").await?;
    let r = run_op(c, &job.op).await;
    let end = if r.is_ok() {
        "RELEASE SAVEPOINT job"
    } else {
        "ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job"
    };
    job.result = Some(r);
    exec(c, end, "cannot close a savepoint").await
}

/// Stores a run of insert jobs with one call, in one savepoint, answering
/// each job with its own messages' results (in queue order, so cursors
/// follow the queue). `Ok(false)`: the joint insert failed and was rolled
/// back; the caller runs the jobs one by one so that only the bad one fails.
async fn insert_run(c: &Object, run: &mut [Job]) -> Result<bool, StoreError> {
    let msgs: Vec<&NewMessage> = run
        .iter()
        .flat_map(|j| match &j.op {
            Op::Insert(m) => m.iter().collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .collect();
    // The savepoint and the insert are issued together (one round trip); a
    // savepoint that fails aborts the transaction, so the insert fails too.
    let (opened, inserted) = futures::join!(
        exec(c, "SAVEPOINT run", "cannot open a savepoint"),
        queries::insert_messages(c, &msgs)
    );
    opened?;
    match inserted {
        Ok(stored) => {
            exec(c, "RELEASE SAVEPOINT run", "cannot close a savepoint").await?;
            let mut rest = stored.into_iter();
            for job in run.iter_mut() {
                let n = match &job.op {
                    Op::Insert(m) => m.len(),
                    _ => 0,
                };
                job.result = Some(Ok(Done::Stored(rest.by_ref().take(n).collect())));
            }
            Ok(true)
        }
        Err(e) => {
            tracing::debug!(error = %e, jobs = run.len(), "storage: a joint insert failed; storing its jobs one by one");
            exec(
                c,
                "ROLLBACK TO SAVEPOINT run; RELEASE SAVEPOINT run",
                "cannot close a savepoint",
            )
            .await?;
            Ok(false)
        }
    }
}

/// The single job of a batch failed: roll back, answer it with its own error.
struct Rollback;
impl From<Rollback> for StoreError {
    fn from(_: Rollback) -> StoreError {
        StoreError::Invalid(ROLLBACK_MARK.into())
    }
}
const ROLLBACK_MARK: &str = "storage: internal: single job rolled back";

async fn writer_loop(pool: Pool, fence: Arc<Fence>, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    // A job that would have made the last batch too large starts the next.
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(j) => j,
            None => match rx.recv().await {
                Some(j) => j,
                None => break,
            },
        };
        let mut rows = first.op.rows();
        batch.push(first);
        while batch.len() < MAX_BATCH && rows < MAX_BATCH_ROWS {
            match rx.try_recv() {
                Ok(j) if rows + j.op.rows() > MAX_BATCH_ROWS => {
                    carried = Some(j);
                    break;
                }
                Ok(j) => {
                    rows += j.op.rows();
                    batch.push(j);
                }
                Err(_) => break,
            }
        }
        let result = run_batch(&pool, &fence, &mut batch).await;
        let own_failure = matches!(&result, Err(StoreError::Invalid(m)) if m == ROLLBACK_MARK);
        if let Err(e) = &result
            && !own_failure
        {
            tracing::error!(error = %e, jobs = batch.len(), "storage: transaction failed; every write in it is refused");
        }
        for mut job in batch.drain(..) {
            let answer = match (&result, job.result.take()) {
                (Err(_), Some(Err(own))) if own_failure => Err(own),
                (Err(e), _) => Err(e.clone()),
                (Ok(()), Some(r)) => r,
                (Ok(()), None) => Err(StoreError::Invalid(
                    "storage: internal error: a write job was answered without running".into(),
                )),
            };
            let _ = job.tx.send(answer);
        }
    }
}

impl PgStore {
    /// Remembers the first damage seen: from then on every write is refused.
    fn note<T>(&self, r: &Result<T, StoreError>) {
        if let Err(StoreError::Corrupt(detail)) = r
            && self.inner.damaged.set(detail.clone()).is_ok()
        {
            tracing::error!(database = %self.inner.describe, error = %detail, "storage: the database is damaged; every further write is refused. Stop the node and restore the database from a backup");
        }
    }

    async fn enqueue(&self, durability: Durability, op: Op) -> Result<Pending<Done>, StoreError> {
        if let Some(d) = self.inner.damaged.get() {
            return Err(StoreError::Corrupt(format!(
                "writes stopped after damage was found: {d}"
            )));
        }
        let (tx, rx) = oneshot::channel();
        let sender = self
            .inner
            .writer
            .lock()
            .expect("writer lock")
            .clone()
            .ok_or(StoreError::Closed)?;
        sender
            .send(Job {
                op,
                durability,
                result: None,
                tx,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        let me = self.clone();
        Ok(Box::pin(async move {
            let r = rx.await.map_err(|_| StoreError::Closed)?;
            me.note(&r);
            r
        }))
    }

    async fn write(&self, durability: Durability, op: Op) -> Result<Done, StoreError> {
        self.enqueue(durability, op).await?.await
    }

    async fn unit(&self, durability: Durability, op: Op) -> Result<(), StoreError> {
        match self.write(durability, op).await? {
            Done::Unit => Ok(()),
            _ => Err(mismatch()),
        }
    }

    /// A read session from the pool.
    async fn reader(&self) -> Result<Object, StoreError> {
        if self.inner.writer.lock().expect("writer lock").is_none() {
            return Err(StoreError::Closed);
        }
        self.inner.pool.get().await.map_err(pool_err)
    }

    fn read_note<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        self.note(&r);
        r
    }

    /// A receiver told (once) why this member lost its lease.
    pub fn lost(&self) -> watch::Receiver<Option<String>> {
        self.inner.fence.lost.subscribe()
    }
}

fn mismatch() -> StoreError {
    StoreError::Invalid(
        "storage: internal error: a write job returned another kind of answer".into(),
    )
}

#[async_trait::async_trait]
impl Storage for PgStore {
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
        let p = self.enqueue(durability, Op::Insert(msgs)).await?;
        Ok(Box::pin(async move {
            match p.await? {
                Done::Stored(s) => Ok(s),
                _ => Err(mismatch()),
            }
        }))
    }

    async fn message_count(&self) -> Result<u64, StoreError> {
        let c = self.reader().await?;
        self.read_note(queries::message_count(&c).await)
    }

    async fn held(
        &self,
        message_ids: Vec<String>,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        if message_ids.is_empty() {
            return Ok(Default::default());
        }
        let c = self.reader().await?;
        self.read_note(queries::held(&c, &message_ids).await)
    }

    async fn relayed_kept(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let c = self.reader().await?;
        self.read_note(queries::relayed_kept(&c, limit).await)
    }

    async fn get_message(&self, message_id: &str) -> Result<Option<StoredMessage>, StoreError> {
        let c = self.reader().await?;
        self.read_note(queries::get_message(&c, message_id).await)
    }

    async fn get_messages(
        &self,
        message_ids: Vec<String>,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        if message_ids.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.reader().await?;
        self.read_note(queries::get_messages(&c, &message_ids).await)
    }

    async fn messages_after(
        &self,
        cursor: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let c = self.reader().await?;
        self.read_note(queries::messages_after(&c, cursor, limit).await)
    }

    async fn incident_messages(
        &self,
        incident_ids: Vec<String>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let c = self.reader().await?;
        self.read_note(queries::incident_messages(&c, &incident_ids, limit).await)
    }

    async fn incident_openers(
        &self,
        before: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let c = self.reader().await?;
        self.read_note(queries::incident_openers(&c, before, limit).await)
    }

    async fn keyed(
        &self,
        keys: Vec<String>,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let c = self.reader().await?;
        self.read_note(queries::keyed(&c, &keys, limit).await)
    }

    async fn keyed_incidents(
        &self,
        keys: Vec<String>,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let c = self.reader().await?;
        self.read_note(queries::keyed_incidents(&c, &keys, limit).await)
    }

    async fn last_cursor(&self) -> Result<u64, StoreError> {
        let c = self.reader().await?;
        self.read_note(queries::last_cursor(&c).await)
    }

    async fn received_from(&self, cursor: u64) -> Result<Option<(u64, i64)>, StoreError> {
        let c = self.reader().await?;
        self.read_note(queries::received_from(&c, cursor).await)
    }

    async fn thread(&self, request_id: &str) -> Result<Vec<StoredMessage>, StoreError> {
        let c = self.reader().await?;
        self.read_note(queries::thread(&c, request_id).await)
    }

    async fn by_kind(
        &self,
        kind: i32,
        before: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let c = self.reader().await?;
        self.read_note(queries::by_kind(&c, kind, before, limit).await)
    }

    async fn list_alerts(
        &self,
        q: AlertQuery,
        before: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let c = self.reader().await?;
        self.read_note(queries::list_alerts(&c, &q, before, limit).await)
    }

    async fn outbox(
        &self,
        peer: &str,
        after: u64,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let c = self.reader().await?;
        self.read_note(queries::outbox(&c, peer, after, now_ms, limit).await)
    }

    async fn outbox_due(
        &self,
        peer: &str,
        after: u64,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let c = self.reader().await?;
        self.read_note(queries::outbox_due(&c, peer, after, now_ms, limit).await)
    }

    async fn outbox_next_due(&self, peer: &str, now_ms: i64) -> Result<Option<i64>, StoreError> {
        let c = self.reader().await?;
        self.read_note(queries::outbox_next_due(&c, peer, now_ms).await)
    }

    async fn defer_outbox(
        &self,
        peer: &str,
        deferrals: Vec<Deferral>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.unit(
            Durability::Lazy,
            Op::Defer(peer.to_string(), deferrals, now_ms),
        )
        .await
    }

    async fn complete_outbox(
        &self,
        peer: &str,
        outcomes: Vec<Outcome>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.unit(
            Durability::Lazy,
            Op::Complete(peer.to_string(), outcomes, now_ms),
        )
        .await
    }

    async fn outbox_depths(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let c = self.reader().await?;
        self.read_note(queries::outbox_depths(&c).await)
    }

    async fn delivery(&self, message_id: &str) -> Result<Vec<DeliveryRow>, StoreError> {
        let c = self.reader().await?;
        self.read_note(queries::delivery(&c, message_id).await)
    }

    async fn receipts(&self, message_id: &str) -> Result<Vec<ReceiptRow>, StoreError> {
        let c = self.reader().await?;
        self.read_note(queries::receipts(&c, message_id).await)
    }

    async fn record_rejections(
        &self,
        rows: Vec<RejectionRow>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.unit(Durability::Lazy, Op::Reject(rows, now_ms)).await
    }

    async fn acknowledge(&self, message_id: &str, now_ms: i64) -> Result<Option<i64>, StoreError> {
        match self
            .write(Durability::Durable, Op::Ack(message_id.to_string(), now_ms))
            .await?
        {
            Done::Ack(a) => Ok(a),
            _ => Err(mismatch()),
        }
    }

    async fn claim_request(
        &self,
        rec: RequestRecord,
        expired_before_ms: i64,
    ) -> Result<Claim, StoreError> {
        match self
            .write(Durability::Durable, Op::Claim(rec, expired_before_ms))
            .await?
        {
            Done::Claim(c) => Ok(c),
            _ => Err(mismatch()),
        }
    }

    async fn complete_request(
        &self,
        request_id: &str,
        response: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.unit(
            Durability::Lazy,
            Op::CompleteRequest(request_id.to_string(), response),
        )
        .await
    }

    async fn release_request(&self, request_id: &str) -> Result<(), StoreError> {
        self.unit(Durability::Lazy, Op::Release(request_id.to_string()))
            .await
    }

    async fn requests_created_before(&self, before_ms: i64) -> Result<Vec<String>, StoreError> {
        let c = self.reader().await?;
        self.read_note(queries::requests_created_before(&c, before_ms).await)
    }

    async fn purge(&self, plan: PurgePlan) -> Result<Purged, StoreError> {
        match self.write(Durability::Lazy, Op::Purge(plan)).await? {
            Done::Purged(p) => Ok(p),
            _ => Err(mismatch()),
        }
    }

    async fn space(&self) -> Result<Space, StoreError> {
        let c = self.reader().await?;
        let bytes = self.read_note(queries::space(&c).await)?;
        Ok(Space {
            file_bytes: bytes.max(0) as u64,
            wal_bytes: 0,
            free_bytes: 0,
        })
    }

    async fn save_roster(&self, row: RosterRow) -> Result<(), StoreError> {
        self.unit(Durability::Durable, Op::SaveRoster(row)).await
    }

    async fn rosters(&self, limit: usize) -> Result<Vec<RosterRow>, StoreError> {
        let c = self.reader().await?;
        self.read_note(queries::rosters(&c, limit).await)
    }

    async fn drop_outbox(&self, peer: &str, reason: &str, now_ms: i64) -> Result<u64, StoreError> {
        let op = Op::DropOutbox(peer.to_string(), reason.to_string(), now_ms);
        match self.write(Durability::Durable, op).await? {
            Done::Count(n) => Ok(n),
            _ => Err(mismatch()),
        }
    }

    async fn sync_buckets(
        &self,
        audiences: &[String],
        from_ms: i64,
    ) -> Result<Vec<SyncBucket>, StoreError> {
        let c = self.reader().await?;
        self.read_note(queries::sync_buckets(&c, audiences, from_ms).await)
    }

    async fn sync_items(
        &self,
        audience: &str,
        from: SyncPos,
        to: SyncPos,
        limit: usize,
    ) -> Result<Vec<SyncItem>, StoreError> {
        let c = self.reader().await?;
        self.read_note(queries::sync_items(&c, audience, from, to, limit).await)
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
        let c = self.reader().await?;
        self.read_note(queries::refused_by(&c, peer, &message_ids, since_ms).await)
    }

    async fn requeue(
        &self,
        peer: &str,
        items: Vec<Requeue>,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let op = Op::Requeue(peer.to_string(), items, now_ms);
        match self.write(Durability::Lazy, op).await? {
            Done::Count(n) => Ok(n),
            _ => Err(mismatch()),
        }
    }

    async fn close(&self) {
        self.inner.writer.lock().expect("writer lock").take();
        let task = self.inner.task.lock().expect("task lock").take();
        if let Some(t) = task {
            let _ = t.await;
        }
        self.inner.pool.close();
    }
}

#[cfg(test)]
pub(crate) mod tests;
