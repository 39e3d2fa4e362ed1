//! Makes the writer's commits durable off the writer thread.
//!
//! The writer commits with `synchronous=NORMAL`: a commit writes its pages to
//! the write-ahead log and returns without an fsync. A batch holding a
//! durable job is then handed here, and this thread `fdatasync`s the log and
//! only then answers the batch's callers. Meanwhile the writer runs the next
//! transaction, so a commit's sync no longer holds up the next one (with
//! `synchronous=FULL` the writer, and every link waiting for it, stood still
//! for each sync).
//!
//! Invariants:
//! - A durable job's caller hears of success only after an `fdatasync` of
//!   the log that began after its commit had returned: what SQLite's FULL
//!   mode gives (the log's frames carry running checksums, so recovery keeps
//!   a prefix of the commits, and a synced commit is in it).
//! - Batches are answered in the order they committed; one sync covers every
//!   batch queued when it starts.
//! - A failed sync is final. Linux may drop the pages a failed writeback could
//!   not write and report success to a later fsync (PostgreSQL's "fsyncgate",
//!   2018), so nothing after a failure can be trusted to be on disk: the
//!   batches waiting here and every later write are refused with
//!   [`SyncState::refusal`] until the node is restarted, when SQLite recovers
//!   whatever reached the disk and partners send again what was not
//!   acknowledged.
//! - Readers may see a commit before its sync. A caller that answers a
//!   partner from what it read waits for [`SyncState::all_synced`] first
//!   (`Storage::synced`); the writer counts a transaction as begun before it
//!   starts, so a reader that saw its rows also sees the count.
//! - The log is opened once, read-only, and kept open: SQLite takes its
//!   locks on the database and `-shm` files, never on the log, so another
//!   descriptor of it cannot drop them (closing any descriptor of a file
//!   drops the process's POSIX locks on that file). The log is truncated,
//!   never replaced, while the store is open.
use super::WriteJob;
use crate::storage::StoreError;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

/// What the writer, the syncer and readers share about the log's sync.
#[derive(Default)]
pub(super) struct SyncState {
    /// Sequence number of the last transaction the writer began (0: none).
    begun: AtomicU64,
    /// Every transaction up to this one is on disk.
    synced: AtomicU64,
    /// Set by the first failed sync: what failed, on which file.
    failed: OnceLock<String>,
}

impl SyncState {
    /// Called by the writer before it begins a transaction; its number.
    pub fn begin(&self) -> u64 {
        self.begun.fetch_add(1, SeqCst) + 1
    }

    /// True when every transaction begun so far is on disk.
    pub fn all_synced(&self) -> bool {
        self.synced.load(SeqCst) >= self.begun.load(SeqCst)
    }

    /// The error every write gets once a sync has failed.
    pub fn refusal(&self) -> Option<StoreError> {
        self.failed.get().map(|detail| refused(detail))
    }
}

fn refused(detail: &str) -> StoreError {
    StoreError::backend(
        "the write-ahead log could not be synced to disk, so this node refuses every write until it is restarted (the writes of its last moments may not be on disk; partners send again what was not acknowledged). Check the storage volume (dmesg, df -h), then restart the node",
        std::io::Error::other(detail.to_string()),
    )
}

type Batch = (u64, Vec<Box<dyn WriteJob>>);

/// The syncer thread and the queue of committed batches it answers.
pub(super) struct Syncer {
    tx: std::sync::mpsc::Sender<Batch>,
    thread: JoinHandle<()>,
}

impl Syncer {
    /// Starts the thread syncing the log at `wal` (which must exist).
    pub fn start(wal: &std::path::Path, state: Arc<SyncState>) -> Result<Syncer, StoreError> {
        let file = std::fs::File::open(wal).map_err(|e| {
            StoreError::backend(
                format!(
                    "{}: cannot open the write-ahead log to sync it; check the permissions of storage.dir",
                    wal.display()
                ),
                e,
            )
        })?;
        let name = wal.display().to_string();
        Self::start_with(
            move || {
                file.sync_data()
                    .map_err(|e| format!("fdatasync of {name}: {e}"))
            },
            state,
        )
    }

    /// Starts the thread with `sync` as the sync of the log (tests give one
    /// that fails).
    pub fn start_with(
        mut sync: impl FnMut() -> Result<(), String> + Send + 'static,
        state: Arc<SyncState>,
    ) -> Result<Syncer, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel::<Batch>();
        let thread = std::thread::Builder::new()
            .name("certfed-sync".into())
            .spawn(move || {
                let mut group: Vec<Batch> = Vec::new();
                while let Ok(first) = rx.recv() {
                    group.push(first);
                    group.extend(rx.try_iter());
                    let last = group.last().map_or(0, |(seq, _)| *seq);
                    let result = match state.refusal() {
                        Some(e) => Err(e),
                        None => match sync() {
                            Ok(()) => {
                                state.synced.fetch_max(last, SeqCst);
                                Ok(())
                            }
                            Err(detail) => {
                                let e = refused(&detail);
                                if state.failed.set(detail).is_ok() {
                                    tracing::error!(error = %e, "storage: sync failed; every further write is refused");
                                }
                                Err(e)
                            }
                        },
                    };
                    for (_, jobs) in group.drain(..) {
                        for job in jobs {
                            job.finish(result.clone());
                        }
                    }
                }
            })
            .map_err(|e| StoreError::backend("cannot start the sync thread", e))?;
        Ok(Syncer { tx, thread })
    }

    /// Queues the committed batch `seq` (its jobs answered after the sync).
    pub fn submit(&self, seq: u64, jobs: Vec<Box<dyn WriteJob>>) {
        if let Err(std::sync::mpsc::SendError((_, jobs))) = self.tx.send((seq, jobs)) {
            // The thread is gone (it cannot be while the writer runs): the
            // commit's sync cannot be confirmed.
            for job in jobs {
                job.finish(Err(StoreError::Closed));
            }
        }
    }

    /// Answers everything queued, then stops the thread.
    pub fn stop(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Durability;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::oneshot;

    /// A committed job whose own result is `Ok(7)`.
    fn job() -> (
        Box<dyn WriteJob>,
        oneshot::Receiver<Result<i32, StoreError>>,
    ) {
        let (tx, rx) = oneshot::channel();
        let job = super::super::TypedJob {
            f: None::<fn(&rusqlite::Connection) -> Result<i32, StoreError>>,
            result: Some(Ok(7)),
            tx,
            durability: Durability::Durable,
            messages: 0,
        };
        (Box::new(job), rx)
    }

    #[test]
    fn a_batch_is_answered_after_its_sync_and_counted_synced() {
        let state = Arc::new(SyncState::default());
        let syncs = Arc::new(AtomicUsize::new(0));
        let counted = syncs.clone();
        let syncer = Syncer::start_with(
            move || {
                counted.fetch_add(1, SeqCst);
                Ok(())
            },
            state.clone(),
        )
        .unwrap();
        let seq = state.begin();
        assert!(!state.all_synced(), "a transaction begun is not synced");
        let (j, rx) = job();
        syncer.submit(seq, vec![j]);
        assert_eq!(rx.blocking_recv().unwrap().unwrap(), 7);
        assert!(syncs.load(SeqCst) >= 1, "answered without a sync");
        assert!(state.all_synced());
        syncer.stop();
    }

    #[test]
    fn a_failed_sync_refuses_its_batch_and_everything_after_it() {
        let state = Arc::new(SyncState::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        // The first sync fails, later ones "succeed": after a failure a
        // later success proves nothing (the failed pages may be dropped).
        let syncer = Syncer::start_with(
            move || match counted.fetch_add(1, SeqCst) {
                0 => Err("fdatasync of /x/certfed.db-wal: Input/output error (os error 5)".into()),
                _ => Ok(()),
            },
            state.clone(),
        )
        .unwrap();
        let (j, rx) = job();
        syncer.submit(state.begin(), vec![j]);
        let e = rx.blocking_recv().unwrap().unwrap_err().to_string();
        assert!(
            e.contains("could not be synced")
                && e.contains("Input/output error")
                && e.contains("restart the node"),
            "{e}"
        );
        assert!(state.refusal().is_some());
        let (j, rx) = job();
        syncer.submit(state.begin(), vec![j]);
        assert!(rx.blocking_recv().unwrap().is_err());
        assert_eq!(calls.load(SeqCst), 1, "no sync is tried after a failure");
        assert!(!state.all_synced());
        syncer.stop();
    }

    #[test]
    fn stopping_answers_what_is_queued() {
        let state = Arc::new(SyncState::default());
        let syncer = Syncer::start_with(
            || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                Ok(())
            },
            state.clone(),
        )
        .unwrap();
        let rxs: Vec<_> = (0..5)
            .map(|_| {
                let (j, rx) = job();
                syncer.submit(state.begin(), vec![j]);
                rx
            })
            .collect();
        syncer.stop();
        for rx in rxs {
            assert_eq!(rx.blocking_recv().unwrap().unwrap(), 7);
        }
        assert!(state.all_synced());
    }
}
