//! The active/standby lease: one row (`lease`) in the node's database, with a
//! monotonically increasing epoch, the holder's name and an expiry on the
//! DATABASE's clock (the members' clocks never matter).
//!
//! Invariants:
//! - A member becomes active only by the one statement that takes the row:
//!   when it is free (no row yet), expired, or left by an earlier run of the
//!   same member (same host and listen address: a process that could bind
//!   that address knows the earlier one is gone). Taking it increments the
//!   epoch; of two members trying at once, exactly one gets it.
//! - The active renews the row while its epoch is unchanged; a renewal that
//!   finds another epoch means this member lost the lease: the fence goes to
//!   `Lost` and every later write is refused (see `mod.rs`).
//! - Every statement here runs with a short `lock_timeout`: a paused old
//!   active holding the row's lock delays a takeover (until the server ends
//!   its idle transaction), but never wedges the lease task.
//! - Members record when they were last seen (`ha_members`), so each can name
//!   the other member of the pair.
use super::{Fence, FenceState, PairOptions, pg_err, pool_err};
use crate::storage::{Lease, LeaseRole, LeaseTick, StoreError};
use deadpool_postgres::Pool;
use std::sync::Arc;

/// The lease of one member, over the store's pool.
pub struct PgLease {
    pool: Pool,
    fence: Arc<Fence>,
    opts: PairOptions,
}

impl PgLease {
    pub(crate) fn new(pool: Pool, fence: Arc<Fence>, opts: PairOptions) -> PgLease {
        PgLease { pool, fence, opts }
    }

    async fn tick_inner(&self) -> Result<LeaseTick, StoreError> {
        let e = |w: &'static str| move |x| pg_err(w, x);
        let mut c = self.pool.get().await.map_err(pool_err)?;
        let mine = match self.fence.get() {
            FenceState::Active { epoch } => epoch,
            FenceState::Lost(why) => return Err(StoreError::Fenced(why)),
            _ => 0,
        };
        let secs = self.opts.lease.as_secs_f64();
        let holder = &self.fence.holder;
        let tx = c.transaction().await.map_err(e("cannot begin"))?;
        tx.batch_execute("SET LOCAL lock_timeout = '2s'")
            .await
            .map_err(e("cannot set lock_timeout"))?;
        tx.execute(
            "INSERT INTO ha_members (holder, seen_at) VALUES ($1, now())
             ON CONFLICT (holder) DO UPDATE SET seen_at = now()",
            &[holder],
        )
        .await
        .map_err(e("cannot record this member"))?;
        let taken = tx
            .query_opt(
                "INSERT INTO lease AS l (id, epoch, holder, acquired_at, renewed_at, expires_at)
                 VALUES (1, 1, $1, now(), now(), now() + make_interval(secs => $2))
                 ON CONFLICT (id) DO UPDATE SET
                   epoch = CASE WHEN l.holder = excluded.holder AND l.epoch = $3
                                THEN l.epoch ELSE l.epoch + 1 END,
                   acquired_at = CASE WHEN l.holder = excluded.holder AND l.epoch = $3
                                THEN l.acquired_at ELSE now() END,
                   holder = excluded.holder, renewed_at = now(), expires_at = excluded.expires_at
                 WHERE (l.holder = excluded.holder AND l.epoch = $3)
                    OR l.expires_at < now()
                    OR l.holder = excluded.holder
                 RETURNING epoch",
                &[holder, &secs, &mine],
            )
            .await
            .map_err(e("cannot take or renew the lease"))?
            .map(|r| r.get::<_, i64>(0));
        let current = tx
            .query_one(
                "SELECT epoch, holder, EXTRACT(EPOCH FROM (now() - renewed_at))::float8 FROM lease WHERE id = 1",
                &[],
            )
            .await
            .map_err(e("cannot read the lease"))?;
        let window = secs * 3.0;
        let other = tx
            .query_opt(
                "SELECT holder FROM ha_members WHERE holder != $1
                   AND seen_at > now() - make_interval(secs => $2)
                 ORDER BY seen_at DESC LIMIT 1",
                &[holder, &window],
            )
            .await
            .map_err(e("cannot read the members"))?
            .map(|r| r.get::<_, String>(0));
        tx.commit().await.map_err(e("cannot commit the lease"))?;
        let (epoch, active, age): (i64, String, f64) =
            (current.get(0), current.get(1), current.get(2));
        let role = match taken {
            Some(got) if mine != 0 && got != mine => {
                // Re-taken after someone else held it in between: what this
                // process believed is stale.
                let why = format!(
                    "the lease moved away from epoch {mine} and was taken again as epoch {got}: another member was active in between; this process must not write again"
                );
                self.fence.set(FenceState::Lost(why.clone()));
                return Err(StoreError::Fenced(why));
            }
            Some(got) => {
                if mine == 0 {
                    self.fence.set(FenceState::Active { epoch: got });
                }
                LeaseRole::Active {
                    epoch: got.max(0) as u64,
                }
            }
            None if mine != 0 => {
                let why = format!(
                    "the lease moved from epoch {mine} to epoch {epoch} held by {active}: another member took over; this process must not write again"
                );
                tracing::error!(reason = %why, "storage: lease lost");
                self.fence.set(FenceState::Lost(why.clone()));
                return Err(StoreError::Fenced(why));
            }
            None => LeaseRole::Standby {
                epoch: epoch.max(0) as u64,
                active,
            },
        };
        Ok(LeaseTick {
            role,
            other,
            renewed_age_ms: (age * 1000.0).max(0.0) as i64,
        })
    }
}

#[async_trait::async_trait]
impl Lease for PgLease {
    async fn tick(&self) -> Result<LeaseTick, StoreError> {
        self.tick_inner().await
    }

    async fn release(&self) {
        let FenceState::Active { epoch } = self.fence.get() else {
            return;
        };
        // Writes are over (the store was closed first): let the standby in now.
        self.fence
            .set(FenceState::Lost("released at shutdown".into()));
        if let Ok(c) = self.pool.get().await {
            let r = c
                .execute(
                    "UPDATE lease SET expires_at = now() - interval '1 second'
                     WHERE id = 1 AND epoch = $1 AND holder = $2",
                    &[&epoch, &self.fence.holder],
                )
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %pg_err("cannot release the lease", e), "the standby takes over when the lease expires instead");
            }
        }
    }

    fn lost(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.fence.lost.subscribe()
    }

    fn holder(&self) -> &str {
        &self.fence.holder
    }
}
