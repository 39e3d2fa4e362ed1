//! The federation roster on a running node: bootstrap from the store and the
//! configured roster file, applying a newer roster (from a peer's message or
//! an operator's PublishRoster) without restart, and what GetRoster shows.
//! The rules themselves are pure, in `domain::roster`.
//!
//! Invariants:
//! - A roster is applied only after `domain::roster::check` accepted it on
//!   top of the held one, one change at a time (`Node::roster_lock`), and
//!   only once it is durably in the store's chain: a node restarted after
//!   applying version N starts from version N.
//! - Applying swaps the member keys whole (`domain::roster::trust` over the
//!   kept chain: a removed member's keys are retired with "not in roster vN",
//!   a key past its period is refused), drops what was queued for removed
//!   members, and bumps `Node::subscribe_roster` so the application
//!   re-applies the peer set (links to removed members close both ways).
//! - Every refusal is counted (`certfed_roster_refused_total{reason}`) and
//!   logged, whether the roster came from an operator or as a roster message
//!   from a peer (`service::ingest` calls [`refused`]); a fork is an ERROR and `certfed_roster_forks_total`. The same
//!   roster again (a re-flood) is not an error.
//! - An expired held roster keeps its trust (read-only) and is reported
//!   loudly (`certfed_roster_expired`, a warning per [`EXPIRY_WARN_EVERY_MS`]).
//! - In an active/standby pair only the active member writes the chain: the
//!   standby holds its start roster in memory, follows the newer versions
//!   the active member keeps in the store while it waits (in memory only,
//!   [`follow_store`]), and on taking over holds the newer of its own and the
//!   store's chain, and keeps it ([`take_over`]); its peer set follows what
//!   it holds before its links start, so it never dials a removed member.
use crate::domain::envelope::ms_to_ts;
use crate::domain::keys::KeyRegistry;
use crate::domain::roster::{
    self, Accepted, Anchor, Document, Quorum, Refusal, RefusalKind, Verdict,
};
use crate::proto::v1::{MemberKeyView, Roster, RosterMemberView, RosterView, StewardView};
use crate::service::node::Node;
use crate::service::{ErrorKind, ServiceError};
use crate::storage::{RosterRow, Store, StoreError};

/// Most roster versions read back from the store to rebuild trust.
pub const CHAIN_LIMIT: usize = 10_000;
/// How often an expired roster is warned about again.
pub const EXPIRY_WARN_EVERY_MS: i64 = 3_600_000;

/// Why a roster could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    #[error("roster refused: {0}")]
    Refused(Refusal),
    #[error(
        "this node follows a static [[members]] list and takes no roster; configure [roster] instead"
    )]
    Static,
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl ServiceError for RosterError {
    fn kind(&self) -> ErrorKind {
        match self {
            RosterError::Refused(r) => match r.kind {
                RefusalKind::Oversized | RefusalKind::Malformed => ErrorKind::InvalidArgument,
                _ => ErrorKind::FailedPrecondition,
            },
            RosterError::Static => ErrorKind::FailedPrecondition,
            RosterError::Store(e) => e.kind(),
        }
    }
}

/// What applying a roster did.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The version now held.
    pub version: u64,
    /// What changed (empty when it was already held).
    pub changes: Vec<String>,
    /// The node already held exactly this roster.
    pub already_current: bool,
}

/// The kept chain, oldest first, decoded.
async fn chain(store: &Store) -> Result<Vec<(Document, i64)>, String> {
    let mut rows = store
        .rosters(CHAIN_LIMIT)
        .await
        .map_err(|e| format!("cannot read the roster chain from the store: {e}"))?;
    rows.reverse();
    rows.into_iter()
        .map(|r| {
            roster::parse(&r.bytes)
                .map(|d| (d, r.accepted_ms))
                .map_err(|e| {
                    format!(
                        "the store's roster version {} does not decode: {e}; restore the store from a backup",
                        r.version
                    )
                })
        })
        .collect()
}

/// The member keys the kept chain trusts.
fn trust_of(chain: &[(Document, i64)]) -> Result<KeyRegistry, String> {
    let refs: Vec<&Roster> = chain.iter().map(|(d, _)| &d.roster).collect();
    roster::trust(&refs).map_err(|e| format!("roster member keys: {e}"))
}

/// What a node starts from: the roster chain its store keeps, advanced by
/// the configured roster file if that is newer; else the file alone (checked
/// against the pinned stewards, if any); else the pinned stewards, waiting
/// for a first roster from a peer. Returns the anchor, the member keys it
/// trusts, and notes to log.
pub async fn bootstrap(
    store: &Store,
    pinned: Option<Quorum>,
    file: Option<Document>,
    now_ms: i64,
) -> Result<(Anchor, KeyRegistry, Vec<String>), String> {
    let mut kept = chain(store).await?;
    let mut notes = Vec::new();
    let anchor = match kept.last() {
        Some((doc, accepted_ms)) => {
            let signed_by = roster::verify_signatures(doc, None).unwrap_or_default();
            Anchor::Current(Box::new(Accepted {
                doc: doc.clone(),
                signed_by,
                admitted_by: None,
                accepted_ms: *accepted_ms,
            }))
        }
        None => match (&file, pinned) {
            (None, Some(q)) => {
                notes.push(format!(
                    "no roster yet: waiting for one signed by {} of the {} pinned stewards",
                    q.threshold,
                    q.stewards.len()
                ));
                return Ok((Anchor::Pinned(q), KeyRegistry::default(), notes));
            }
            (None, None) => {
                return Err(
                    "roster: neither a roster file nor pinned stewards to start from".into(),
                );
            }
            (Some(_), q) => match q {
                Some(q) => Anchor::Pinned(q),
                None => {
                    // Trust on first use of the configured file: it needs its
                    // own quorum only.
                    let doc = file.clone().expect("some");
                    let acc = roster::check_first(doc, None, now_ms)
                        .map_err(|r| format!("roster.file: {r}"))?;
                    save(store, &acc.doc, now_ms).await?;
                    kept.push((acc.doc.clone(), now_ms));
                    notes.push(format!(
                        "started from roster version {} (roster.file)",
                        acc.version()
                    ));
                    let keys = trust_of(&kept)?;
                    return Ok((Anchor::Current(Box::new(acc)), keys, notes));
                }
            },
        },
    };
    let mut anchor = anchor;
    if let Some(doc) = file {
        let held = anchor.version();
        if doc.version() > held || held == 0 {
            match roster::check(&anchor, doc, now_ms) {
                Ok(Verdict::Apply(acc)) => {
                    save(store, &acc.doc, now_ms).await?;
                    kept.push((acc.doc.clone(), now_ms));
                    notes.push(format!(
                        "roster version {} from roster.file applied on top of version {held}",
                        acc.version()
                    ));
                    anchor = Anchor::Current(acc);
                }
                Ok(Verdict::Same) => {}
                Err(r) if held == 0 => return Err(format!("roster.file: {r}")),
                Err(r) => notes.push(format!(
                    "roster.file is not applied ({r}); the store's version {held} stays in force"
                )),
            }
        } else if doc.version() < held {
            notes.push(format!(
                "roster.file holds version {}, older than the store's version {held}: the store's is used",
                doc.version()
            ));
        }
    }
    let keys = trust_of(&kept)?;
    Ok((anchor, keys, notes))
}

async fn save(store: &Store, doc: &Document, now_ms: i64) -> Result<(), String> {
    store
        .save_roster(RosterRow {
            version: doc.version(),
            bytes: doc.to_bytes(),
            accepted_ms: now_ms,
        })
        .await
        .or_else(|e| match e {
            // The standby of a PostgreSQL pair writes nothing: it holds the
            // file's roster in memory, and keeps it in the store when it
            // takes over (`take_over`) unless the store has a newer one then.
            StoreError::Fenced(_) => {
                tracing::info!(
                    version = doc.version(),
                    "roster: this process is the standby; the roster is held in memory and kept in the store once this process takes over"
                );
                Ok(())
            }
            e => Err(e),
        })
        .map_err(|e| format!("cannot keep roster version {}: {e}", doc.version()))
}

/// Holds the newest roster of the store's chain `kept` (newer than the
/// held version `held`): in memory only, nothing is written. The peer set
/// follows (the caller has no link running). Returns whether it is now in
/// force.
fn adopt(node: &Node, held: u64, kept: &[(Document, i64)], now_ms: i64) -> bool {
    let Some((doc, accepted_ms)) = kept.last().cloned() else {
        return false;
    };
    let stored = doc.version();
    let keys = match trust_of(kept) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "roster: the store's chain does not give member keys; the roster held stays in force");
            return false;
        }
    };
    let acc = Accepted {
        signed_by: roster::verify_signatures(&doc, None).unwrap_or_default(),
        doc,
        admitted_by: None,
        accepted_ms,
    };
    tracing::info!(
        from = held,
        to = stored,
        "roster: the store holds a newer roster (applied by the other member of the pair); it is now in force"
    );
    record(node, &acc, now_ms);
    node.replace_roster(Anchor::Current(Box::new(acc)), keys);
    // No link runs here (a standby, or a member taking over before its links
    // start): the peer set follows the roster at once, so the links start
    // with it and a removed member is never dialled or listed.
    let peers =
        crate::service::node::roster_peers(&node.configured_peers(), node.roster().as_deref());
    node.peers.replace(peers);
    node.metrics.set_peers(&node.peers.ids());
    true
}

/// The standby of an active/standby pair follows the roster the active
/// member applies while it waits: when the store's chain holds a newer
/// version than the one held (one small read), that version is held in
/// memory — GetNodeInfo and the metrics show it — and nothing is written.
/// Returns whether the roster in force changed. A read failure keeps the
/// held roster (the next call tries again).
pub async fn follow_store(node: &Node, now_ms: i64) -> bool {
    let Some(held) = node.roster() else {
        return false;
    };
    let latest = match node.store.rosters(1).await {
        Ok(rows) => rows.first().map_or(0, |r| r.version),
        Err(e) => {
            tracing::debug!(error = %e, "roster: the standby cannot read the store's latest roster; it tries again");
            return false;
        }
    };
    if latest <= held.version() {
        return false;
    }
    let _one = node.roster_lock.lock().await;
    let Some(held) = node.roster() else {
        return false;
    };
    match chain(&node.store).await {
        Ok(kept)
            if kept
                .last()
                .is_some_and(|(d, _)| d.version() > held.version()) =>
        {
            adopt(node, held.version(), &kept, now_ms)
        }
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(error = %e, "roster: the standby cannot read the store's chain; the roster held stays in force");
            false
        }
    }
}

/// A member of an active/standby pair that just took over: the store's chain
/// may have moved on while it waited (the other member applied rosters), or
/// it may hold a newer roster (from its roster file) that the store lacks.
/// The newer of the two is held, and kept in the store. Returns whether the
/// roster in force changed (the caller re-applies the peer set).
pub async fn take_over(node: &Node, now_ms: i64) -> bool {
    let _one = node.roster_lock.lock().await;
    let Some(held) = node.roster() else {
        return false;
    };
    let mut kept = match chain(&node.store).await {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "roster: cannot reread the chain after taking over; the roster held since start stays in force");
            return false;
        }
    };
    let stored = kept.last().map_or(0, |(d, _)| d.version());
    if stored > held.version() {
        return adopt(node, held.version(), &kept, now_ms);
    } else if let Some(acc) = held.current().filter(|a| a.version() > stored) {
        match save(&node.store, &acc.doc, now_ms).await {
            Ok(()) => {
                kept.push((acc.doc.clone(), now_ms));
                tracing::info!(
                    version = acc.version(),
                    "roster: the roster held in memory is now kept in the store"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "roster: cannot keep the held roster in the store after taking over")
            }
        }
    }
    false
}

/// Counts and logs a refusal (a fork is an alarm).
pub fn refused(node: &Node, r: &Refusal, from: &str) {
    node.metrics.roster_refused(r.kind.label());
    if r.kind == RefusalKind::Fork {
        node.metrics.roster_forks.inc();
        tracing::error!(from, reason = %r, "ROSTER FORK: two different rosters with the same version; the held one stays in force — tell the stewards");
    } else if r.is_temporary() {
        tracing::info!(from, reason = %r, "roster not applied yet");
    } else {
        tracing::warn!(from, reason = %r, "roster refused");
    }
}

/// Checks a serialized SignedRoster against the held roster and applies it
/// (the module invariants). `from` names where it came from, for the logs.
pub async fn apply(
    node: &Node,
    bytes: &[u8],
    from: &str,
    now_ms: i64,
) -> Result<Applied, RosterError> {
    let _one = node.roster_lock.lock().await;
    let Some(anchor) = node.roster() else {
        node.metrics.roster_refused(RefusalKind::Static.label());
        return Err(RosterError::Static);
    };
    let verdict = roster::parse(bytes).and_then(|doc| roster::check(&anchor, doc, now_ms));
    let acc = match verdict {
        Err(r) => {
            refused(node, &r, from);
            return Err(RosterError::Refused(r));
        }
        Ok(Verdict::Same) => {
            return Ok(Applied {
                version: anchor.version(),
                changes: Vec::new(),
                already_current: true,
            });
        }
        Ok(Verdict::Apply(acc)) => acc,
    };
    node.store
        .save_roster(RosterRow {
            version: acc.version(),
            bytes: acc.doc.to_bytes(),
            accepted_ms: now_ms,
        })
        .await?;
    let kept = chain(&node.store)
        .await
        .map_err(|e| RosterError::Store(StoreError::Invalid(e)))?;
    let keys = trust_of(&kept).map_err(|e| RosterError::Store(StoreError::Invalid(e)))?;
    let prev = anchor.current().map(|a| &a.doc.roster);
    let changes = roster::diff(prev, &acc.doc.roster);
    let removed: Vec<String> = prev
        .map(|p| {
            p.members
                .iter()
                .filter(|m| !acc.is_member(&m.id))
                .map(|m| m.id.clone())
                .collect()
        })
        .unwrap_or_default();
    let version = acc.version();
    let signed_by = acc.signed_by.join(", ");
    record(node, &acc, now_ms);
    node.replace_roster(Anchor::Current(acc), keys);
    tracing::info!(from, version, signed_by = %signed_by, changes = %changes.join("; "), "roster applied");
    for m in removed {
        let why = format!("{m} is not in roster v{version}");
        match node.store.drop_outbox(&m, &why, now_ms).await {
            Ok(n) => {
                tracing::info!(member = %m, dropped = n, "removed member: its links close and what was queued for it is dropped")
            }
            Err(e) => {
                node.metrics.storage_error(&e);
                tracing::error!(member = %m, error = %e, "cannot drop what was queued for a removed member");
            }
        }
    }
    Ok(Applied {
        version,
        changes,
        already_current: false,
    })
}

/// Sets the roster gauges.
fn record(node: &Node, acc: &Accepted, now_ms: i64) {
    node.metrics.roster_version.set(acc.version() as i64);
    node.metrics
        .roster_expires
        .set(acc.doc.expires_ms().div_euclid(1000));
    node.metrics
        .roster_expired
        .set(i64::from(acc.doc.is_expired(now_ms)));
}

/// Refreshes the roster gauges and warns about an expired roster (at most
/// once per [`EXPIRY_WARN_EVERY_MS`]; `last_warned_ms` keeps track). Called
/// periodically by the application.
pub fn watch_expiry(node: &Node, now_ms: i64, last_warned_ms: &mut i64) {
    let Some(anchor) = node.roster() else { return };
    let Some(acc) = anchor.current() else { return };
    record(node, acc, now_ms);
    if acc.doc.is_expired(now_ms) && now_ms.saturating_sub(*last_warned_ms) >= EXPIRY_WARN_EVERY_MS
    {
        *last_warned_ms = now_ms;
        tracing::warn!(
            version = acc.version(),
            expired = %crate::domain::text::rfc3339_ms(acc.doc.expires_ms()),
            "the federation roster has EXPIRED: its members stay trusted, but nothing new is admitted from it; ask the stewards to publish a newer version"
        );
    }
}

/// What GetRoster shows: the held roster, who signed it, and the diff from
/// the version before it in this node's chain.
pub async fn view(node: &Node, now_ms: i64) -> Result<RosterView, RosterError> {
    let Some(anchor) = node.roster() else {
        return Ok(RosterView::default());
    };
    let acc = match &*anchor {
        Anchor::Pinned(q) => {
            return Ok(RosterView {
                stewards: q
                    .stewards
                    .iter()
                    .map(|s| StewardView {
                        id: s.id.clone(),
                        key_id: roster::steward_key_id(s),
                    })
                    .collect(),
                threshold: q.threshold,
                ..RosterView::default()
            });
        }
        Anchor::Current(a) => a,
    };
    let rows = node.store.rosters(2).await?;
    let prev = rows
        .iter()
        .find(|r| r.version < acc.version())
        .and_then(|r| roster::parse(&r.bytes).ok());
    let r = &acc.doc.roster;
    Ok(RosterView {
        active: true,
        federation: r.federation.clone(),
        version: r.version,
        issued: r.issued,
        expires: r.expires,
        expired: acc.doc.is_expired(now_ms),
        members: r
            .members
            .iter()
            .map(|m| RosterMemberView {
                id: m.id.clone(),
                display_name: m.display_name.clone(),
                country: m.country.clone(),
                contact: m.contact.clone(),
                exercise_only: m.exercise_only,
                signing_keys: m
                    .signing_keys
                    .iter()
                    .map(|k| MemberKeyView {
                        key_id: roster::member_key_id(k),
                        not_before: k.not_before,
                        not_after: k.not_after,
                    })
                    .collect(),
                tls_cas: m.tls_cas.iter().map(|c| roster::ca_subject(c)).collect(),
                tls_pins: m
                    .tls_pins
                    .iter()
                    .map(|p| p.iter().map(|b| format!("{b:02x}")).collect())
                    .collect(),
            })
            .collect(),
        stewards: r
            .stewards
            .iter()
            .map(|s| StewardView {
                id: s.id.clone(),
                key_id: roster::steward_key_id(s),
            })
            .collect(),
        threshold: r.threshold,
        signed_by: acc.signed_by.clone(),
        previous_version: prev.as_ref().map_or(0, |p| p.version()),
        changes: roster::diff(prev.as_ref().map(|p| &p.roster), r),
        accepted: Some(ms_to_ts(acc.accepted_ms)),
        signed_roster: acc.doc.to_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::roster::{draft, parse, sign};
    use crate::proto::v1::{MemberKey, RosterMember, Steward};
    use crate::storage::{IntegrityCheck, OpenOptions};
    use ed25519_dalek::SigningKey;
    use prost::Message;

    const NOW: i64 = 1_800_000_000_000;
    const DAY: i64 = 86_400_000;

    fn sk(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn stewards() -> Vec<Steward> {
        (1..=3)
            .map(|i| Steward {
                id: format!("s{i}"),
                public_key: sk(100 + i).verifying_key().as_bytes().to_vec(),
            })
            .collect()
    }

    fn member(id: &str, seed: u8) -> RosterMember {
        RosterMember {
            id: id.into(),
            signing_keys: vec![MemberKey {
                public_key: sk(seed).verifying_key().as_bytes().to_vec(),
                not_before: None,
                not_after: None,
            }],
            tls_pins: vec![vec![seed; 32]],
            ..Default::default()
        }
    }

    fn doc(r: &Roster, seeds: &[u8]) -> Document {
        let mut s = draft::unsigned(r);
        for seed in seeds {
            sign(&mut s, &sk(*seed));
        }
        parse(&s.encode_to_vec()).unwrap()
    }

    fn chain() -> (Roster, Roster) {
        let mut v1 = draft::new("eu-test", stewards(), 2, NOW - DAY, NOW + 30 * DAY).unwrap();
        draft::add_member(&mut v1, member("node-a", 1)).unwrap();
        draft::add_member(&mut v1, member("node-b", 2)).unwrap();
        let mut v2 = draft::next(&v1, NOW, NOW + 30 * DAY);
        draft::remove_member(&mut v2, "node-b").unwrap();
        (v1, v2)
    }

    fn store(dir: &std::path::Path) -> Store {
        let opts = OpenOptions {
            node_id: "node-a".into(),
            integrity: IntegrityCheck::Off,
        };
        crate::storage::sqlite::open(dir, &opts).unwrap()
    }

    #[tokio::test]
    async fn bootstrap_starts_from_the_file_then_keeps_the_stores_newer_chain() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let (v1, v2) = chain();
        // First start: the file, on its own quorum, is kept.
        let (a, keys, _) = bootstrap(&s, None, Some(doc(&v1, &[101, 102])), NOW)
            .await
            .unwrap();
        assert_eq!(a.version(), 1);
        assert!(keys.is_member("node-b"));
        // A newer version was applied meanwhile (as from a peer).
        s.save_roster(RosterRow {
            version: 2,
            bytes: doc(&v2, &[101, 103]).to_bytes(),
            accepted_ms: NOW,
        })
        .await
        .unwrap();
        // Restart with the old file: the store's v2 stays, node-b is retired.
        let (a, keys, notes) = bootstrap(&s, None, Some(doc(&v1, &[101, 102])), NOW)
            .await
            .unwrap();
        assert_eq!(a.version(), 2);
        assert!(!keys.is_member("node-b"));
        let b_key = crate::domain::keys::key_id(&sk(2).verifying_key());
        assert_eq!(keys.retired(&b_key), Some("node-b is not in roster v2"));
        assert!(
            notes.iter().any(|n| n.contains("older than the store's")),
            "{notes:?}"
        );
        s.close().await;
    }

    #[tokio::test]
    async fn pinned_stewards_decide_the_first_roster() {
        let (v1, _) = chain();
        let pinned = Quorum::pinned(stewards(), 2).unwrap();
        // Without a file: waiting for one, trusting nobody yet.
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let (a, keys, _) = bootstrap(&s, Some(pinned.clone()), None, NOW)
            .await
            .unwrap();
        assert!(matches!(a, Anchor::Pinned(_)));
        assert!(keys.members().is_empty());
        s.close().await;
        // A file signed by other keys than the pinned stewards is refused.
        let mut other = v1.clone();
        other.stewards = (1..=3)
            .map(|i| Steward {
                id: format!("x{i}"),
                public_key: sk(200 + i).verifying_key().as_bytes().to_vec(),
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let e = bootstrap(
            &s,
            Some(pinned.clone()),
            Some(doc(&other, &[201, 202])),
            NOW,
        )
        .await
        .unwrap_err();
        assert!(e.contains("roster.file") && e.contains("pinned"), "{e}");
        assert!(s.rosters(10).await.unwrap().is_empty(), "nothing kept");
        // An expired file is refused too.
        let e = bootstrap(
            &s,
            Some(pinned.clone()),
            Some(doc(&v1, &[101, 102])),
            NOW + 60 * DAY,
        )
        .await
        .unwrap_err();
        assert!(e.contains("expired"), "{e}");
        // The pinned stewards' own roster is accepted and kept.
        let (a, _, _) = bootstrap(&s, Some(pinned), Some(doc(&v1, &[101, 102])), NOW)
            .await
            .unwrap();
        assert_eq!(a.version(), 1);
        assert_eq!(s.rosters(10).await.unwrap().len(), 1);
        s.close().await;
    }
}
