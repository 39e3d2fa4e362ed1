//! Messages just stored, handed by the commit to the tasks that follow every
//! arrival (incident correlation counting, the attachment fetcher), so that
//! they neither read the store again nor decode the payload: what they need
//! of a message was known when it was admitted ([`Arrival`]).
//!
//! Invariants:
//! - A follower sees every stored message after its starting cursor exactly
//!   once, in cursor order — the store stays the source of truth. It takes
//!   handed-over arrivals only as a contiguous run starting right after its
//!   own cursor; anything else (a cursor the run lacks: a message whose
//!   commit has not been handed over yet, a cursor the backend skipped, a
//!   cache that was full) makes it read the store after its cursor — only
//!   up to the first arrival its cache holds, at most a page — and the
//!   arrivals at or below its cursor are dropped from its cache.
//! - Each follower's cache is bounded ([`ArrivalCache::CAPACITY`]): when it is
//!   full, a new arrival is not kept (the follower reads it from the store).
//! - The commit hands arrivals over before it advances `Node::stored`, so a
//!   follower woken by that finds them.
use crate::domain::incident::message_keys;
use crate::proto::v1::{EnvelopeHeader, MessageKind};
use crate::storage::{NewMessage, Store, StoredMessage};
use prost::Message;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the followers need of a stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub cursor: u64,
    pub message_id: String,
    pub origin: String,
    /// The peer it came from (`None`: this node's own).
    pub from_peer: Option<String>,
    pub kind: i32,
    pub exercise: bool,
    pub readable: bool,
    /// The incident its signed header names.
    pub incident_id: Option<String>,
    /// Its correlation keys, as stored (`domain::incident::keys`).
    pub keys: Vec<String>,
    /// Its signed header lists attachments.
    pub attachments: bool,
}

impl Arrival {
    /// The arrival of `m`, stored at `cursor` (`attachments`: its header
    /// lists some; admission knew).
    pub fn of_new(m: &NewMessage, cursor: u64, attachments: bool) -> Arrival {
        Arrival {
            cursor,
            message_id: m.message_id.clone(),
            origin: m.origin.clone(),
            from_peer: m.from_peer.clone(),
            kind: m.kind,
            exercise: m.exercise,
            readable: m.readable,
            incident_id: m.incident_id.clone(),
            keys: m.keys.clone(),
            attachments,
        }
    }

    /// The arrival of a message read back from the store (the keys and the
    /// header's facts derived again, as admission derived them).
    pub fn of_stored(m: &StoredMessage) -> Arrival {
        let header = EnvelopeHeader::decode(m.header.as_slice());
        // As `StoredMessage::is_exercise`: a header that does not decode
        // counts as exercise traffic (never mixed with real).
        let exercise = header.as_ref().map_or(true, |h| h.exercise);
        let header = header.unwrap_or_default();
        let keys = if m.readable {
            message_keys(m.kind, m.body())
        } else {
            Vec::new()
        };
        Arrival {
            cursor: m.cursor,
            message_id: m.message_id.clone(),
            origin: m.origin.clone(),
            from_peer: m.from_peer.clone(),
            kind: m.kind,
            exercise,
            readable: m.readable,
            incident_id: (!header.incident_id.is_empty()).then_some(header.incident_id),
            keys,
            attachments: !header.attachments.is_empty(),
        }
    }

    /// The keys of its indicators (a readable alert or sighting), each once,
    /// in order.
    pub fn indicator_keys(&self) -> impl Iterator<Item = &str> {
        let indicators = self.readable
            && (self.kind == MessageKind::Alert as i32
                || self.kind == MessageKind::Sighting as i32);
        self.keys
            .iter()
            .filter(move |k| indicators && k.starts_with("i:"))
            .map(String::as_str)
    }
}

/// One follower's arrivals not taken yet, by cursor (bounded).
#[derive(Default)]
pub struct ArrivalCache(Mutex<BTreeMap<u64, Arc<Arrival>>>);

impl ArrivalCache {
    /// Most arrivals kept for one follower.
    pub const CAPACITY: usize = 8_192;

    /// Keeps `a` unless the cache is full.
    pub fn put(&self, a: Arc<Arrival>) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() < Self::CAPACITY {
            m.insert(a.cursor, a);
        }
    }

    /// Drops everything at or below `cursor`, then takes the contiguous run
    /// of at most `max` arrivals from `cursor + 1` (empty: the next one is
    /// not here).
    pub fn take_run(&self, cursor: u64, max: usize) -> Vec<Arc<Arrival>> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *m = m.split_off(&(cursor + 1));
        let mut run = Vec::new();
        let mut next = cursor + 1;
        while run.len() < max {
            match m.remove(&next) {
                Some(a) => run.push(a),
                None => break,
            }
            next += 1;
        }
        run
    }

    /// The first cursor kept after `cursor` (after a
    /// [`take_run`](Self::take_run) from `cursor` that came back empty:
    /// where the gap before the arrivals handed over ends).
    pub fn first_after(&self, cursor: u64) -> Option<u64> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.range(cursor.saturating_add(1)..).next().map(|(c, _)| *c)
    }

    /// How many arrivals are kept.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The caches of the node's followers.
#[derive(Default)]
pub struct Arrivals {
    /// Incident correlation counting (`service::incidents::run`).
    pub incidents: ArrivalCache,
    /// The attachment fetcher (`service::transfer::run`).
    pub fetcher: ArrivalCache,
    /// Commits queued whose arrivals are not handed over yet.
    commits: Arc<Mutex<Commits>>,
}

/// Tickets of queued commits: the next one, and those still open.
#[derive(Default)]
struct Commits {
    next: u64,
    open: std::collections::BTreeSet<u64>,
}

/// A queued commit whose arrivals are not handed over yet; closed when
/// dropped (after the hand-over, or when the commit fails or is abandoned).
pub struct CommitTicket {
    id: u64,
    commits: Arc<Mutex<Commits>>,
}

impl Drop for CommitTicket {
    fn drop(&mut self) {
        let mut c = self.commits.lock().unwrap_or_else(|e| e.into_inner());
        c.open.remove(&self.id);
    }
}

impl Arrivals {
    /// Hands a committed arrival to every follower.
    pub fn put(&self, a: Arrival) {
        let a = Arc::new(a);
        self.incidents.put(a.clone());
        self.fetcher.put(a);
    }

    /// Opens a ticket for a commit about to be queued (before it is: a
    /// commit that takes lower cursors than one handed over already was
    /// queued, so ticketed, before it).
    pub fn open_commit(&self) -> CommitTicket {
        let mut c = self.commits.lock().unwrap_or_else(|e| e.into_inner());
        let id = c.next;
        c.next += 1;
        c.open.insert(id);
        CommitTicket {
            id,
            commits: self.commits.clone(),
        }
    }

    /// Tickets opened so far.
    fn commits_opened(&self) -> u64 {
        self.commits.lock().unwrap_or_else(|e| e.into_inner()).next
    }

    /// Whether every ticket below `need` is closed.
    fn commits_closed_below(&self, need: u64) -> bool {
        let c = self.commits.lock().unwrap_or_else(|e| e.into_inner());
        c.open.range(..need).next().is_none()
    }
}

/// Rows read from the store at a time when the handed-over run breaks.
const PAGE: usize = 256;

/// Longest wait for the arrivals of a gap before the ones handed over
/// already. Commits finish in their own tasks: a receipt's can hand over
/// before the batches of a peer's stream committed just ahead of it (on a
/// single link at about 47,000 alerts/s such gaps, three batches of 1,536
/// messages, were a quarter of everything stored, read back and decoded
/// again). A follower waits while a commit queued before it saw the gap has
/// not handed over (its ticket is open); a gap no such commit fills (a
/// cursor the backend skipped: PostgreSQL's sequence moves on a conflicting
/// insert; arrivals a full cache did not keep) is read as soon as they have.
/// The bound covers a ticket closed without a notification.
const GAP_WAIT: std::time::Duration = std::time::Duration::from_millis(1_000);

/// Follows what the node stores after `cursor`, batch by batch, from one of
/// its caches (`which`) or else from the store.
pub struct Follower {
    cursor: u64,
    notes: watch::Receiver<u64>,
    which: fn(&Arrivals) -> &ArrivalCache,
    /// Gaps before arrivals up to this cursor were waited for already:
    /// read from the store without waiting again.
    waited_up_to: u64,
}

impl Follower {
    /// Follows from `cursor` (subscribe before reading it, so that nothing
    /// stored in between is missed: pass `node.stored.subscribe()`).
    pub fn new(
        notes: watch::Receiver<u64>,
        cursor: u64,
        which: fn(&Arrivals) -> &ArrivalCache,
    ) -> Follower {
        Follower {
            cursor,
            notes,
            which,
            waited_up_to: 0,
        }
    }

    /// The next batch of arrivals after the ones returned so far, in cursor
    /// order, from the node's `store`, `arrivals` and `shutdown`; waits for
    /// one. `None` when the node stops.
    pub async fn next(
        &mut self,
        store: &Store,
        arrivals: &Arrivals,
        shutdown: &CancellationToken,
    ) -> Option<Vec<Arc<Arrival>>> {
        loop {
            let cache = (self.which)(arrivals);
            let run = cache.take_run(self.cursor, PAGE);
            if let Some(last) = run.last() {
                self.cursor = last.cursor;
                return Some(run);
            }
            let latest = *self.notes.borrow_and_update();
            if latest > self.cursor
                && let Some(first) = cache.first_after(self.cursor)
                && first > self.waited_up_to
            {
                // Arrivals after a gap are here: wait while a commit queued
                // before now may still hand the gap over (each hand-over
                // closes its ticket, then notifies).
                let need = arrivals.commits_opened();
                let deadline = tokio::time::Instant::now() + GAP_WAIT;
                loop {
                    if cache.first_after(self.cursor) == Some(self.cursor + 1) {
                        // Handed over (perhaps in part: a later gap before
                        // `first` is waited for again).
                        break;
                    }
                    if arrivals.commits_closed_below(need) {
                        // No commit that could fill it is left: read it.
                        self.waited_up_to = first;
                        break;
                    }
                    tokio::select! {
                        n = self.notes.changed() => {
                            if n.is_err() {
                                return None;
                            }
                        }
                        _ = tokio::time::sleep_until(deadline) => {
                            self.waited_up_to = first;
                            break;
                        }
                        _ = shutdown.cancelled() => return None,
                    }
                }
                continue;
            }
            if latest > self.cursor {
                // Only the gap before the arrivals already handed over is
                // read (a commit handed over a moment later than the next
                // one, or a cursor skipped): not a whole page of messages
                // the cache holds.
                let limit = match cache.first_after(self.cursor) {
                    Some(first) if first > self.cursor + 1 => {
                        usize::try_from(first - self.cursor - 1).map_or(PAGE, |gap| gap.min(PAGE))
                    }
                    _ => PAGE,
                };
                match store.messages_after(self.cursor, limit).await {
                    Ok(rows) => match rows.last() {
                        Some(last) => {
                            self.cursor = last.cursor;
                            return Some(
                                rows.iter()
                                    .map(|m| Arc::new(Arrival::of_stored(m)))
                                    .collect(),
                            );
                        }
                        // Purged before it was read: nothing to follow up to there.
                        None => {
                            self.cursor = latest;
                            continue;
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read newly stored messages; trying again at the next commit");
                    }
                }
            }
            tokio::select! {
                n = self.notes.changed() => {
                    // The node is gone.
                    if n.is_err() {
                        return None;
                    }
                }
                _ = shutdown.cancelled() => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(cursor: u64) -> Arc<Arrival> {
        Arc::new(Arrival {
            cursor,
            message_id: format!("m{cursor}"),
            origin: "node-a".into(),
            from_peer: Some("node-a".into()),
            kind: MessageKind::Alert as i32,
            exercise: false,
            readable: true,
            incident_id: None,
            keys: vec![
                "a:x".into(),
                "i:3:evil.example".into(),
                "i:4:192.0.2.1".into(),
            ],
            attachments: false,
        })
    }

    fn cursors(run: &[Arc<Arrival>]) -> Vec<u64> {
        run.iter().map(|a| a.cursor).collect()
    }

    #[test]
    fn a_run_is_taken_only_from_right_after_the_cursor() {
        let c = ArrivalCache::default();
        for i in [3, 4, 5, 7, 8] {
            c.put(a(i));
        }
        // 1 and 2 are not here (not handed over yet, or skipped): nothing.
        assert!(c.take_run(0, 256).is_empty());
        // After reading 1..=2 from the store: 3, 4, 5, and not past the gap.
        assert_eq!(cursors(&c.take_run(2, 256)), vec![3, 4, 5]);
        assert!(c.take_run(5, 256).is_empty(), "6 is missing");
        // After reading 6..=7 from the store: 7 is dropped as stale, 8 taken.
        assert_eq!(cursors(&c.take_run(7, 256)), vec![8]);
        assert!(c.is_empty());
    }

    #[test]
    fn a_run_is_at_most_max_and_the_rest_stays() {
        let c = ArrivalCache::default();
        for i in 1..=10 {
            c.put(a(i));
        }
        assert_eq!(cursors(&c.take_run(0, 4)), vec![1, 2, 3, 4]);
        assert_eq!(c.len(), 6);
        assert_eq!(cursors(&c.take_run(4, 256)), vec![5, 6, 7, 8, 9, 10]);
    }

    #[test]
    fn arrivals_older_than_the_cursor_are_dropped() {
        let c = ArrivalCache::default();
        for i in [1, 2, 3] {
            c.put(a(i));
        }
        // A commit handed over late: the follower read past it already.
        assert!(c.take_run(5, 256).is_empty());
        assert!(c.is_empty());
    }

    /// A ticket is open from before its commit is queued until it is
    /// dropped; a follower asks whether every ticket opened before a moment
    /// is closed, whatever the order they close in.
    #[test]
    fn tickets_tell_which_commits_may_still_hand_over() {
        let arrivals = Arrivals::default();
        assert!(arrivals.commits_closed_below(arrivals.commits_opened()));
        let (t0, t1) = (arrivals.open_commit(), arrivals.open_commit());
        let need = arrivals.commits_opened();
        let t2 = arrivals.open_commit();
        assert!(!arrivals.commits_closed_below(need));
        drop(t1);
        assert!(!arrivals.commits_closed_below(need), "t0 is still open");
        drop(t0);
        assert!(arrivals.commits_closed_below(need), "t2 came after");
        assert!(!arrivals.commits_closed_below(arrivals.commits_opened()));
        drop(t2);
        assert!(arrivals.commits_closed_below(arrivals.commits_opened()));
    }

    #[test]
    fn a_full_cache_keeps_nothing_more() {
        let c = ArrivalCache::default();
        for i in 1..=(ArrivalCache::CAPACITY as u64 + 10) {
            c.put(a(i));
        }
        assert_eq!(c.len(), ArrivalCache::CAPACITY);
        let run = c.take_run(0, usize::MAX);
        assert_eq!(run.len(), ArrivalCache::CAPACITY);
        // What was not kept is read from the store: the run stops before it.
        assert_eq!(run.last().unwrap().cursor, ArrivalCache::CAPACITY as u64);
    }

    /// The follower against a real store: a run handed over is taken as is;
    /// where it breaks (a commit not handed over yet, a cache that dropped
    /// one), the store is read after the follower's cursor, only up to the
    /// next arrival handed over; every message comes once, in order; stale
    /// arrivals are not taken again.
    #[tokio::test]
    async fn the_follower_takes_handed_runs_and_reads_the_store_where_they_break() {
        use crate::storage::conformance::msg;
        use crate::storage::{Durability, OpenOptions, Stored};
        let dir = tempfile::tempdir().unwrap();
        let store = crate::storage::sqlite::open(dir.path(), &OpenOptions::new("node-b")).unwrap();
        let arrivals = Arrivals::default();
        let (stored, notes) = watch::channel(0u64);
        let shutdown = CancellationToken::new();
        let mut follow = Follower::new(notes, 0, |a| &a.incidents);
        // Stores `ids`, hands over those in `handed` (marked as handed), and
        // tells the follower.
        let commit = async |ids: &[&str], handed: &[&str]| {
            let rows: Vec<NewMessage> = ids
                .iter()
                .map(|id| {
                    let mut m = msg(id, "node-a", MessageKind::Alert, &[]);
                    m.from_peer = Some("node-a".into());
                    m
                })
                .collect();
            let got = store
                .insert(rows.clone(), Durability::Durable)
                .await
                .unwrap();
            let mut last = 0;
            for (m, s) in rows.iter().zip(got) {
                let Stored::New(c) = s else {
                    panic!("{} not stored", m.message_id)
                };
                last = c;
                if handed.contains(&m.message_id.as_str()) {
                    let mut a = Arrival::of_new(m, c, false);
                    a.keys = vec!["handed".into()];
                    arrivals.put(a);
                }
            }
            stored.send_replace(last);
        };
        let mut next = async || {
            let batch = follow.next(&store, &arrivals, &shutdown).await.unwrap();
            batch
                .iter()
                .map(|a| {
                    format!(
                        "{}{}",
                        a.message_id,
                        if a.keys.is_empty() { "" } else { "*" }
                    )
                })
                .collect::<Vec<_>>()
        };
        // m1 never handed over (no commit is queued that could): the store
        // is read for m1 alone (the gap before what was handed over), then
        // m2 and m3 come from the cache.
        commit(&["m1", "m2", "m3"], &["m2", "m3"]).await;
        assert_eq!(next().await, vec!["m1"]);
        assert_eq!(next().await, vec!["m2*", "m3*"]);
        // Handed over whole: taken from the cache (marked).
        commit(&["m4", "m5"], &["m4", "m5"]).await;
        assert_eq!(next().await, vec!["m4*", "m5*"]);
        // m6 and m7 missing from the run: read from the store, up to m8.
        commit(&["m6", "m7", "m8", "m9"], &["m8", "m9"]).await;
        assert_eq!(next().await, vec!["m6", "m7"]);
        assert_eq!(next().await, vec!["m8*", "m9*"]);
        // Nothing handed over after the cursor: a page of the store.
        commit(&["m10", "m11"], &[]).await;
        assert_eq!(next().await, vec!["m10", "m11"]);
        // A late hand-over of what the follower read already (m11): stale,
        // dropped, never taken again; m12 from the cache.
        let late = store.get_message("m11").await.unwrap().unwrap();
        let mut a = Arrival::of_stored(&late);
        a.keys = vec!["late".into()];
        arrivals.put(a);
        commit(&["m12"], &["m12"]).await;
        assert_eq!(next().await, vec!["m12*"]);
        // m13's commit, queued first (its ticket open), hands over after
        // m14's (finished in another task): the follower waits for it
        // instead of reading the store.
        let ticket = arrivals.open_commit();
        commit(&["m13", "m14"], &["m14"]).await;
        let m13 = store.get_message("m13").await.unwrap().unwrap();
        let late = async {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let mut a = Arrival::of_stored(&m13);
            a.keys = vec!["handed".into()];
            arrivals.put(a);
            drop(ticket);
            stored.send_modify(|_| {});
        };
        let (got, ()) = tokio::join!(next(), late);
        assert_eq!(got, vec!["m13*", "m14*"]);
        assert!(arrivals.incidents.is_empty());
        // The node stops: no more batches.
        shutdown.cancel();
        assert!(follow.next(&store, &arrivals, &shutdown).await.is_none());
        store.close().await;
    }

    #[test]
    fn indicator_keys_are_those_of_a_readable_alert_or_sighting() {
        let x = a(1);
        assert_eq!(
            x.indicator_keys().collect::<Vec<_>>(),
            vec!["i:3:evil.example", "i:4:192.0.2.1"]
        );
        let mut y = (*x).clone();
        y.readable = false;
        assert_eq!(y.indicator_keys().count(), 0);
        y.readable = true;
        y.kind = MessageKind::AssistanceRequest as i32;
        assert_eq!(y.indicator_keys().count(), 0);
    }
}
