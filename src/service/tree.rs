//! Epidemic broadcast trees over the links: the state around the pure
//! `domain::plumtree` machine (one per node, behind a lock; `service::gossip`
//! takes the peers' frames and fires the timers). The links
//! (`service::links`) tell it which peers are in the tree and carry its
//! frames; ingest asks it which of a message's targets are lazy and tells it
//! what was stored; the Federation API hands the peers' frames to
//! `service::gossip`, whose `run` fires the timers (announcement batches,
//! grafts).
//!
//! Invariants:
//! - Policy first: the machine only ever narrows what
//!   `domain::admission::targets` chose. A message goes in full to the
//!   targets that are eager or not in the tree (durable outbox, as before)
//!   and is announced to the lazy targets; a graft is answered only with
//!   messages `domain::admission::entitled` lets go to the asking peer, and
//!   through the normal path (the outbox: verified, stored, acknowledged,
//!   receipted at the peer).
//! - A peer is in the tree only while this node's link to it is up and the
//!   peer announced `accepts_gossip` in Hello; every other peer gets every
//!   message in full (an old peer keeps plain flooding). With
//!   `gossip.plumtree = false` this node announces no support and the
//!   machine is never used.
//! - Announcements are durable: a lazy target gets an outbox row like any
//!   other, parked until `gossip.lazy_hold_ms` (in the same commit as the
//!   message), and an announcement. The peer's HAVE drops the row, its
//!   GRAFT releases it at once, and without either the full copy goes when
//!   the row falls due (marked `resent`). So a crash, a full frame queue or
//!   a dropped link costs at most a duplicate, never a message; the
//!   in-memory map from announced ids to outbox rows is only a shortcut
//!   (bounded; what it forgets is sent in full).
//! - A duplicate prunes a link only when it was pushed eagerly: not for a
//!   frame marked `resent` or `returning` (a copy sent again after a
//!   reconnect is no sign of a redundant path).
//! - Only broadcasts take part: not receipts (they go back the way their
//!   messages came), not messages to named recipients (they go along ways
//!   toward their recipients, `domain::routes`, or flood: a relay drops
//!   their ciphertext once delivered, so it could not answer a graft for
//!   them later), and only ids in
//!   canonical UUID form (they are announced as 16 bytes).
//! - A peer's frames are untrusted: at most [`MAX_IDS`] ids of each kind a
//!   frame, [`MAX_IDS_PER_SEC`] ids a second per peer (the excess ignored),
//!   the machine's tables capped (`plumtree::Config`); ignored input is
//!   counted in `certfed_gossip_refused_total{reason}`, never logged per
//!   frame. Frames to a peer go through a bounded queue; when it is full the
//!   frame is dropped (announcements are hints: a missed one costs a
//!   duplicate or a graft, reconciliation heals the rest).
use crate::config::GossipSection;
use crate::domain::plumtree::{Action, Config, Event, Plumtree};
use crate::domain::reconcile::id_bytes;
use crate::proto::v1::Gossip as Frame;
use crate::proto::v1::{EnvelopeHeader, MessageKind};
use crate::service::metrics::Metrics;
use crate::service::metrics::{KindLabel, ReasonLabel};
use crate::service::now_ms;
use prost::Message;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use tokio::sync::{Notify, mpsc};

/// Most ids of one kind (ihave, graft) in one frame.
pub const MAX_IDS: usize = 1024;
/// Most ids (ihave and graft together) taken from one peer per second.
pub const MAX_IDS_PER_SEC: u32 = 8192;
/// Least time between two reads of the store for one peer's link-up
/// announcements (`Tree::store_announce_due`).
pub const STORE_ANNOUNCE_MS: i64 = 60_000;
/// Frames waiting for one link.
const LINK_QUEUE: usize = 256;
/// Announced ids remembered with their parked outbox rows (the oldest are
/// forgotten first; their rows go in full when due).
const MAX_PARKED: usize = 200_000;

/// The tree of one node and the links that carry its frames.
pub struct Tree {
    pub enabled: bool,
    /// How long a lazy peer's copy is held back (`gossip.lazy_hold_ms`).
    hold_ms: i64,
    inner: Mutex<Inner>,
    /// Wakes `gossip::run` when a deadline may have moved.
    pub timer: Notify,
}

pub struct Inner {
    pub tree: Plumtree,
    /// Links up with peers that take gossip: generation and frame queue.
    links: HashMap<String, (u64, mpsc::Sender<Frame>)>,
    generation: u64,
    /// Per peer: the second of the window and the ids taken in it.
    rate: HashMap<String, (i64, u32)>,
    /// Per peer: ids announced to it and the outbox cursor of their parked
    /// copy; and the order they were parked in (for the cap and expiry).
    parked: HashMap<String, HashMap<String, u64>>,
    parked_order: std::collections::VecDeque<(i64, String, String)>,
    /// Per peer: the earliest parked copy due since its link last asked.
    parked_due: HashMap<String, i64>,
    /// Per peer: when its link's coming up last read the store for what is
    /// stopped here (`gossip::announce_stopped`).
    store_announced: HashMap<String, i64>,
}

/// Whether a message takes part in the tree (see the module docs): a
/// broadcast (no named recipients, not sealed), not a receipt, with an id in
/// canonical UUID form.
pub fn tree_routed(h: &EnvelopeHeader) -> bool {
    h.kind != MessageKind::Receipt as i32
        && h.recipients.is_empty()
        && !h.encrypted
        && id_bytes(&h.message_id).is_some()
}

pub fn to_ids(m: &Metrics, bytes: &[Vec<u8>]) -> Option<Vec<String>> {
    let mut out = Vec::with_capacity(bytes.len());
    for b in bytes {
        let Ok(a) = <[u8; 16]>::try_from(b.as_slice()) else {
            refuse(m, "malformed", 1);
            return None;
        };
        out.push(uuid::Uuid::from_bytes(a).to_string());
    }
    Some(out)
}

pub fn refuse(m: &Metrics, reason: &str, n: u64) {
    m.gossip_refused
        .get_or_create(&ReasonLabel {
            reason: reason.into(),
        })
        .inc_by(n);
}

impl Tree {
    pub fn new(cfg: &GossipSection) -> Tree {
        let machine = Config {
            graft_timeout_ms: i64::try_from(cfg.graft_timeout_ms).unwrap_or(500),
            ihave_batch_ms: i64::try_from(cfg.ihave_batch_ms).unwrap_or(25),
            shortcut_hops: cfg.shortcut_hops,
            ..Config::default()
        };
        Tree {
            enabled: cfg.plumtree,
            hold_ms: i64::try_from(cfg.lazy_hold_ms()).unwrap_or(5_000),
            inner: Mutex::new(Inner {
                tree: Plumtree::new(machine, Vec::new()),
                links: HashMap::new(),
                generation: 0,
                rate: HashMap::new(),
                parked: HashMap::new(),
                parked_order: std::collections::VecDeque::new(),
                parked_due: HashMap::new(),
                store_announced: HashMap::new(),
            }),
            timer: Notify::new(),
        }
    }

    /// Whether the store may be read now for what is stopped here, to be
    /// announced to `peer` whose link came up: at most once per
    /// [`STORE_ANNOUNCE_MS`] per peer (recorded when it says yes), so that a
    /// link that comes up again and again does not read it each time (what
    /// it found is remembered as stopped, and announced from memory).
    pub fn store_announce_due(&self, peer: &str, now_ms: i64) -> bool {
        let mut g = self.lock();
        let due = g
            .store_announced
            .get(peer)
            .is_none_or(|last| now_ms - last >= STORE_ANNOUNCE_MS);
        if due {
            g.store_announced.insert(peer.to_string(), now_ms);
        }
        due
    }

    /// Whether this node takes part (`gossip.plumtree`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// How long a lazy peer's copy is held back before it goes in full.
    pub fn hold_ms(&self) -> i64 {
        self.hold_ms
    }

    /// The earliest parked copy for `peer` due since the last call (its
    /// link folds it into its timer).
    pub fn take_due(&self, peer: &str) -> Option<i64> {
        if !self.enabled {
            return None;
        }
        self.lock().parked_due.remove(peer)
    }

    /// Copies parked for `peers` (not announced: messages routed to named
    /// recipients) fall due at `due`: their links fold it into their timers.
    pub fn park_due(&self, peers: &[String], due: i64) {
        if !self.enabled {
            return;
        }
        let mut g = self.lock();
        for p in peers {
            let d = g.parked_due.entry(p.clone()).or_insert(due);
            *d = (*d).min(due);
        }
    }

    /// `peer` answered that it holds `ids` (HAVE): the outbox cursors of
    /// the copies parked for it, forgotten here (the caller completes them).
    pub fn have(&self, peer: &str, ids: &[String]) -> Vec<u64> {
        let mut g = self.lock();
        let Some(map) = g.parked.get_mut(peer) else {
            return Vec::new();
        };
        let out = ids.iter().filter_map(|i| map.remove(i)).collect();
        if map.is_empty() {
            g.parked.remove(peer);
        }
        out
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("gossip lock")
    }

    /// The link to `peer` came up and the peer takes gossip: it joins the
    /// tree (eager). Returns the link's generation (for [`Tree::link_down`])
    /// and the frames to send it.
    pub fn link_up(&self, peer: &str) -> (u64, mpsc::Receiver<Frame>) {
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        let mut g = self.lock();
        g.generation += 1;
        let generation = g.generation;
        g.links.insert(peer.to_string(), (generation, tx));
        g.tree.handle(now_ms(), Event::PeerUp(peer.to_string()));
        (generation, rx)
    }

    /// The link of `generation` went down: the peer leaves the tree (and
    /// every list of announcers) unless a newer link to it is up.
    pub fn link_down(&self, peer: &str, generation: u64) {
        let mut g = self.lock();
        if g.links.get(peer).is_some_and(|(n, _)| *n == generation) {
            g.links.remove(peer);
            g.tree.handle(now_ms(), Event::PeerDown(peer.to_string()));
        }
    }

    /// The peers that get announcements instead of full copies of
    /// `origin`'s messages now (one tree per origin).
    pub fn lazy(&self, origin: &str) -> BTreeSet<String> {
        if !self.enabled {
            return BTreeSet::new();
        }
        self.lock().tree.lazy(origin)
    }

    /// Missing ids waited for, announcements waiting for their batch, ids
    /// remembered (bounded: `domain::plumtree::Config`).
    pub fn sizes(&self) -> (usize, usize, usize) {
        self.lock().tree.sizes()
    }

    /// Peers in the trees (links up) and peers lazy for at least one
    /// origin, for tests and views.
    pub fn sets(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let g = self.lock();
        (g.tree.up().clone(), g.tree.lazy_peers())
    }

    /// This node stored `id` of `origin`, new, at outbox cursor `cursor`,
    /// from `from` (`None`: its own) over `hops` links (0: its own), queued
    /// full copies for its eager targets and parked copies for `announce`,
    /// the lazy targets.
    #[allow(clippy::too_many_arguments)]
    pub fn stored(
        &self,
        m: &Metrics,
        from: Option<&str>,
        id: &str,
        origin: &str,
        hops: u32,
        announce: &[String],
        cursor: u64,
    ) {
        if !self.enabled {
            return;
        }
        let now = now_ms();
        let mut g = self.lock();
        let due = now + self.hold_ms;
        for p in announce {
            g.parked
                .entry(p.clone())
                .or_default()
                .insert(id.to_string(), cursor);
            g.parked_order.push_back((now, p.clone(), id.to_string()));
            let d = g.parked_due.entry(p.clone()).or_insert(due);
            *d = (*d).min(due);
        }
        // Forget what is past due (its copy went in full) or over the cap.
        while let Some((at, _, _)) = g.parked_order.front() {
            if g.parked_order.len() <= MAX_PARKED && *at + self.hold_ms > now {
                break;
            }
            if let Some((_, p, i)) = g.parked_order.pop_front()
                && let Some(map) = g.parked.get_mut(&p)
            {
                map.remove(&i);
                if map.is_empty() {
                    g.parked.remove(&p);
                }
            }
        }
        let out = g
            .tree
            .stored(now, from, id.to_string(), origin, hops, announce);
        dispatch(m, &mut g, out);
        drop(g);
        self.timer.notify_one();
    }

    /// Of `ids`, those the trees still remember as received here (what
    /// [`Tree::announce_only`] can announce); none without Plumtree.
    pub fn remembered(&self, ids: Vec<(String, usize)>) -> Vec<(String, usize)> {
        if !self.enabled {
            return Vec::new();
        }
        let g = self.lock();
        ids.into_iter()
            .filter(|(id, _)| g.tree.remembers(id))
            .collect()
    }

    /// Announces held broadcast `id` to `peers` without parking a copy for
    /// them: its hop limit keeps it from going to them (`domain::hop_limit`:
    /// a peer that lacks it grafts, which asks for a shorter way).
    pub fn announce_only(&self, m: &Metrics, id: &str, peers: &[String]) {
        if !self.enabled {
            return;
        }
        let mut g = self.lock();
        let out = g.tree.announce_only(now_ms(), id, peers);
        dispatch(m, &mut g, out);
        drop(g);
        self.timer.notify_one();
    }

    /// Message `id`, which travels outside the trees (named recipients), is
    /// stored here, received from `from` over `hops` links (see
    /// [`Plumtree::untracked`](crate::domain::plumtree::Plumtree::untracked)).
    pub fn untracked(&self, m: &Metrics, from: Option<&str>, id: &str, hops: u32) {
        if !self.enabled {
            return;
        }
        let mut g = self.lock();
        let out = g.tree.untracked(now_ms(), from, id, hops);
        dispatch(m, &mut g, out);
    }

    /// This node refused message `id` from a peer: it is not grafted again.
    pub fn refused(&self, id: &str) {
        if !self.enabled {
            return;
        }
        self.lock().tree.refused(now_ms(), id);
    }

    /// Tree-routed message `id`, held here, arrived again from `from` over
    /// `hops` links (the length its unverified chain claims, plus one).
    pub fn duplicate(&self, m: &Metrics, from: &str, id: &str, hops: u32) {
        if !self.enabled {
            return;
        }
        let mut g = self.lock();
        let out = g.tree.duplicate(from, id, hops);
        dispatch(m, &mut g, out);
    }

    /// Asks `peers` (those in the tree) for a copy of `id` that crossed at
    /// most `k` links to reach them (`Gossip.want_shorter`: see
    /// `domain::hop_limit`). Returns how many were asked.
    pub fn want_shorter(&self, m: &Metrics, peers: &[String], id: &str, k: usize) -> usize {
        let (Some(b), Ok(k)) = (id_bytes(id), u32::try_from(k)) else {
            return 0;
        };
        if !self.enabled {
            return 0;
        }
        let g = self.lock();
        let mut asked = 0;
        for p in peers {
            let Some((_, tx)) = g.links.get(p) else {
                continue;
            };
            let f = Frame {
                want_shorter: vec![b.to_vec()],
                want_shorter_hops: vec![k],
                ..Default::default()
            };
            if tx.try_send(f).is_ok() {
                asked += 1;
                m.gossip_frames_sent
                    .get_or_create(&KindLabel {
                        kind: "want_shorter".into(),
                    })
                    .inc();
            } else {
                refuse(m, "link_queue_full", 1);
            }
        }
        asked
    }

    /// Takes `n` ids from `peer` against its rate; returns how many fit.
    pub fn take(&self, peer: &str, n: usize) -> usize {
        let sec = now_ms() / 1000;
        let mut g = self.lock();
        let (at, used) = g.rate.entry(peer.to_string()).or_insert((sec, 0));
        if *at != sec {
            *at = sec;
            *used = 0;
        }
        let room = MAX_IDS_PER_SEC.saturating_sub(*used) as usize;
        let k = n.min(room);
        *used += k as u32;
        k
    }
}

/// Performs the machine's actions: frames to peers (full copies are the
/// outbox's, so `Gossip` and `Deliver` are not acted on here).
pub fn dispatch(m: &Metrics, g: &mut Inner, actions: Vec<Action>) {
    let mut frames = Vec::new();
    for a in actions {
        match a {
            Action::IHave { to, ids, hops } => {
                let (ihave, hops): (Vec<Vec<u8>>, Vec<u32>) = ids
                    .iter()
                    .zip(hops)
                    .filter_map(|(i, h)| Some((id_bytes(i)?.to_vec(), h)))
                    .unzip();
                for (ihave, hops) in ihave.chunks(MAX_IDS).zip(hops.chunks(MAX_IDS)) {
                    let f = Frame {
                        ihave: ihave.to_vec(),
                        ihave_hops: hops.to_vec(),
                        ..Default::default()
                    };
                    frames.push((to.clone(), f, "ihave"));
                }
            }
            Action::GraftOrigin { to, origin } => {
                m.gossip_shortcuts.inc();
                frames.push((
                    to,
                    Frame {
                        graft_origins: vec![origin],
                        ..Default::default()
                    },
                    "graft_origins",
                ))
            }
            Action::Graft { to, ids } => {
                let graft: Vec<Vec<u8>> = ids
                    .iter()
                    .filter_map(|i| id_bytes(i))
                    .map(|b| b.to_vec())
                    .collect();
                for graft in graft.chunks(MAX_IDS) {
                    let f = Frame {
                        graft: graft.to_vec(),
                        ..Default::default()
                    };
                    frames.push((to.clone(), f, "graft"));
                }
            }
            Action::Have { to, ids } => {
                let have: Vec<Vec<u8>> = ids
                    .iter()
                    .filter_map(|i| id_bytes(i))
                    .map(|b| b.to_vec())
                    .collect();
                for have in have.chunks(MAX_IDS) {
                    let f = Frame {
                        have: have.to_vec(),
                        ..Default::default()
                    };
                    frames.push((to.clone(), f, "have"));
                }
            }
            Action::Prune { to, origin } => frames.push((
                to,
                Frame {
                    prune: true,
                    prune_origins: vec![origin],
                    ..Default::default()
                },
                "prune",
            )),
            Action::Gossip { .. } | Action::Deliver(_) => {}
        }
    }
    for (to, frame, kind) in frames {
        let Some((_, tx)) = g.links.get(&to) else {
            continue;
        };
        let bytes = frame.encoded_len() as u64;
        if tx.try_send(frame).is_ok() {
            m.gossip_frames_sent
                .get_or_create(&KindLabel { kind: kind.into() })
                .inc();
            if kind == "ihave" {
                m.announce_bytes.inc_by(bytes);
            }
        } else {
            m.gossip_refused
                .get_or_create(&ReasonLabel {
                    reason: "link_queue_full".into(),
                })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_read_for_a_peers_link_up_at_most_once_a_minute() {
        let t = Tree::new(&GossipSection::default());
        assert!(t.store_announce_due("node-b", 1_000), "the first link-up");
        assert!(
            !t.store_announce_due("node-b", 1_000 + STORE_ANNOUNCE_MS - 1),
            "again within the minute: from memory only"
        );
        assert!(
            t.store_announce_due("node-c", 2_000),
            "another peer is its own"
        );
        assert!(
            t.store_announce_due("node-b", 1_000 + STORE_ANNOUNCE_MS),
            "a minute after the last read"
        );
        assert!(
            !t.store_announce_due("node-b", 1_000 + STORE_ANNOUNCE_MS + 1),
            "counted from that read"
        );
    }
}
