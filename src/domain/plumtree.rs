//! Epidemic broadcast trees (Plumtree: Leitão, Pereira, Rodrigues, SRDS
//! 2007) as a pure state machine: one node's view of its links. The caller
//! feeds [`Event`]s with the current time and performs the [`Action`]s it
//! gets back; it calls [`Plumtree::handle`] with [`Event::Tick`] at
//! [`Plumtree::next_deadline`]. No I/O, no clock, no randomness.
//!
//! Rules (the paper's, with the changes named):
//! - **One tree per origin** (the paper's single tree, kept per source as
//!   its section on multiple senders suggests): a link is eager or lazy
//!   *for the messages of one origin*. A single shared tree is pruned by
//!   every origin's duplicates, so each origin's messages follow links that
//!   were first for someone else — long paths and grafts; per origin, the
//!   eager links settle on that origin's first-arrival (lowest-latency)
//!   tree. Origins are bounded (`max_origins`; beyond it a new origin's
//!   messages go over every link, as flooding).
//! - Every link starts **eager** for every origin. A message seen for the
//!   first time is delivered once, pushed in full to the peers eager for
//!   its origin and announced ("I have", batched per peer for
//!   `ihave_batch_ms`, at most `ihave_batch_max` ids a batch) to the peers
//!   lazy for it, never to the peer it came from; that peer becomes eager
//!   for the origin.
//! - A full message seen again moves its sender to **lazy** for the
//!   message's origin (remembered with the id, never taken from the
//!   duplicate) and answers it with PRUNE naming the origin (again at each
//!   duplicate: the sender's side may not know yet); PRUNE moves
//!   the sender to lazy for the origins named (all known origins when it
//!   names none: an older peer's prune). So each origin's eager links
//!   shrink to a tree formed by first arrivals.
//! - An announcement of a message not held starts a timer
//!   (`graft_timeout_ms`); when it expires the node GRAFTs the next
//!   announcer in turn (that link becomes eager; the answer is the full
//!   message) and sets the timer again. Change from the paper: announcers
//!   are tried round robin, not dropped after one try, so a lost or
//!   refused graft is retried until a live announcer answers or the peers
//!   go away.
//! - GRAFT makes the sender eager for the origins of the ids asked that
//!   are held here, and is answered with the full message of each.
//! - **Shortcuts** (the paper's optimisation, by hop count, made before
//!   it breaks): every full copy and announcement carries the links the
//!   message crossed to reach its sender. An announcement from a lazy peer
//!   showing a way from the origin at least `shortcut_hops` links shorter
//!   than the way the message came asks that peer to push the origin's
//!   messages too (GRAFT-ORIGIN: the link turns eager, nothing is sent
//!   again); the old link stays. A duplicate that came at least
//!   `shortcut_hops` links shorter than the first copy prunes the first
//!   copy's link instead of its own. So a link leaves the tree only when
//!   another has just delivered the same message over a shorter way: a
//!   shortcut through a node that in fact gets the messages from here
//!   (depths differ from message to message while first arrivals take
//!   detours) delivers nothing and cuts nothing off. Under load first
//!   arrivals take detours and form deep trees; this moves each node to
//!   its fewest-hops way. Hop counts are the sender's claim (a duplicate is
//!   not verified): a peer that lies only becomes a tree link that, if it
//!   then withholds, costs a graft timeout per message.
//! - A peer that goes down leaves every set; a peer that comes up is eager
//!   for every origin. It stays an announcer of the missing ids it
//!   announced: skipped while its link is down (no try counted, looked at
//!   again every `graft_timeout_ms`) and grafted in turn once it is back,
//!   since a relay at a hop limit keeps no copy queued for this node
//!   (`domain::hop_limit`). A missing id is forgotten after `remember_ms`
//!   or `max_graft_tries` grafts (reconciliation heals the rest).
//! - Addition for durable lazy links: an announcement is answered with
//!   HAVE (batched like announcements) once the message is held here —
//!   at once when it already was ([`Plumtree::held_announced`]), or when it
//!   arrives by another link (to every announcer but the peer it came
//!   from). The announcer keeps a full copy queued for a lazy peer until
//!   that HAVE, a GRAFT or a timeout, so no announcement lost to a crash,
//!   a full queue or a dropped link can lose a message.
//!
//! Invariants: a message is delivered at most once per node; for every
//! origin a peer that is up is either eager or lazy, never both; lazy sets
//! hold only peers that are up; state is
//! bounded: ids received are remembered for `remember_ms` (the store is
//! the long-term memory: the caller passes [`Event::Gossip`] only for
//! messages it newly stored, or asks [`Plumtree::holds`]), announcers per
//! missing id are capped at `max_announcers`, missing ids at `max_missing`
//! (and at `max_missing_per_peer` announced by any one peer), pending announcements per
//! peer at `ihave_batch_max` (a full batch is sent at once).
//!
//! Policy is the caller's: for a message that may not cross a link
//! (`domain::admission::targets` decides), the caller drops the actions
//! naming that peer; the machine never decides who may read what.
//!
//! The node (`service::gossip`) drives it with [`Plumtree::stored`] and
//! [`Plumtree::duplicate`] instead of [`Event::Gossip`]: full copies go
//! through its durable outbox to the peers [`split`] leaves eager, and
//! only the lazy peers policy allows are announced to. Every table is
//! capped (`max_received`, `max_missing`, announcers per id, batch size,
//! `max_graft_tries` per id), so a peer's flood of announcements changes
//! nothing beyond them.
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// Splits the peers policy lets a message go to (`targets`, from
/// `domain::admission::targets`) into those that get it in full (eager
/// links, and peers not in the tree: links without Plumtree, or down, whose
/// durable outbox delivers later) and those that get an announcement only
/// (lazy links). Never adds a peer.
pub fn split(targets: &[String], lazy: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    targets.iter().cloned().partition(|t| !lazy.contains(t))
}

/// Timing and size knobs.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long a node waits after an announcement before it grafts.
    pub graft_timeout_ms: i64,
    /// How long announcements for one peer are gathered before they go.
    pub ihave_batch_ms: i64,
    /// Most ids in one announcement (a full batch goes at once).
    pub ihave_batch_max: usize,
    /// How long a received id is remembered here.
    pub remember_ms: i64,
    /// Most announcers remembered per missing id.
    pub max_announcers: usize,
    /// Most received ids remembered (the oldest are forgotten first). A
    /// forgotten id costs nothing but tree shaping: its duplicates are still
    /// recognised by the store, its announcements answered from it.
    pub max_received: usize,
    /// Most missing ids waited for at once (further announcements of new
    /// ids are ignored until there is room; reconciliation heals).
    pub max_missing: usize,
    /// Most missing ids one peer may be an announcer of (so that one peer's
    /// flood of announcements cannot crowd out the others').
    pub max_missing_per_peer: usize,
    /// Grafts sent for one missing id before it is given up.
    pub max_graft_tries: u32,
    /// Most origins with a tree of their own (a new origin beyond it is
    /// sent over every link: flooding, never a loss).
    pub max_origins: usize,
    /// How many links shorter another way from an origin must be for the
    /// node to swap its tree link for it (0: never).
    pub shortcut_hops: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            graft_timeout_ms: 150,
            ihave_batch_ms: 25,
            ihave_batch_max: 256,
            remember_ms: 10 * 60_000,
            max_announcers: 8,
            // ~240 bytes each: 4 MiB at most. Ten minutes of a busy
            // federation (10 alerts/s, `remember_ms`) fit; a burst (a
            // reconciliation delivering 100,000) keeps only its last ones
            // (65,536 held 15 MiB of such a receiver's heap).
            max_received: 16_384,
            max_missing: 4_096,
            max_missing_per_peer: 1_024,
            max_graft_tries: 16,
            max_origins: 4_096,
            shortcut_hops: 1,
        }
    }
}

/// What happened to this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// This node (`origin`, its own id) originates message `id`.
    Broadcast { id: String, origin: String },
    /// A peer sent the full message `id`, originated by `origin`, that
    /// crossed `hops` links to get here (1: from its origin).
    Gossip {
        from: String,
        id: String,
        origin: String,
        hops: u32,
    },
    /// A peer announces that it holds these messages; `hops`, when not
    /// empty, the links each crossed to reach the peer (an older peer
    /// sends none).
    IHave {
        from: String,
        ids: Vec<String>,
        hops: Vec<u32>,
    },
    /// A peer found this link a shorter way from `origins` than its tree's:
    /// the link becomes eager for them (nothing is sent again).
    GraftOrigins { from: String, origins: Vec<String> },
    /// A peer asks for these messages in full (and makes the link eager).
    Graft { from: String, ids: Vec<String> },
    /// A peer received a message twice and turns the link lazy for the
    /// messages of `origins` (all known origins when empty: an older peer).
    Prune { from: String, origins: Vec<String> },
    /// A link came up.
    PeerUp(String),
    /// A link went down (or the peer left).
    PeerDown(String),
    /// Time passed (call at [`Plumtree::next_deadline`]).
    Tick,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Hand message `id` to the node (store it, tell Watch): once per id.
    Deliver(String),
    /// Send the full message `id` to `to`.
    Gossip { to: String, id: String },
    /// Announce these ids to `to`, each with the links it crossed to get
    /// here (0: this node is its origin).
    IHave {
        to: String,
        ids: Vec<String>,
        hops: Vec<u32>,
    },
    /// Ask `to` to send `origin`'s messages over this link in full from now
    /// on (a shortcut into the tree), without sending any again.
    GraftOrigin { to: String, origin: String },
    /// Ask `to` for these messages in full.
    Graft { to: String, ids: Vec<String> },
    /// Tell `to` that its link is now lazy for `origin`'s messages.
    Prune { to: String, origin: String },
    /// Tell `to` that these messages it announced are held here (it may
    /// drop the full copies it kept queued for this node).
    Have { to: String, ids: Vec<String> },
}

#[derive(Debug, Clone)]
struct Missing {
    announcers: VecDeque<String>,
    due_ms: i64,
    first_ms: i64,
    tries: u32,
    /// The announcer with the shortest way, and its length (links to it).
    best: Option<(String, u32)>,
}

/// What is remembered of a message received here.
#[derive(Debug, Clone)]
struct Got {
    /// Its origin (empty: a refused message, which shapes no tree).
    origin: String,
    /// Links it crossed to get here, by the way remembered (0: originated
    /// here).
    hops: u32,
    /// The peer of that way (`None`: originated here).
    from: Option<String>,
}

/// One node's Plumtree state.
#[derive(Debug, Clone)]
pub struct Plumtree {
    cfg: Config,
    /// Peers whose link is up (in the trees).
    up: BTreeSet<String>,
    /// Per origin: the up peers whose link is lazy for its messages (the
    /// others are eager for it).
    lazy: BTreeMap<String, BTreeSet<String>>,
    /// Peers that pruned without naming origins (older peers): lazy for
    /// every origin known then and every origin first seen later, until an
    /// arrival or a graft makes them eager for one.
    prune_all: BTreeSet<String>,
    /// Ids received, with when and their origin (forgotten after
    /// `remember_ms`, or when more than `max_received` are held), and
    /// their order of arrival.
    received: HashMap<String, Got>,
    order: VecDeque<(i64, String)>,
    missing: BTreeMap<String, Missing>,
    /// Per peer: how many missing ids it is an announcer of.
    announced: BTreeMap<String, usize>,
    /// Announcements waiting for their batch, per peer (ids, and the
    /// links each crossed to get here), and when it goes.
    pending: BTreeMap<String, (Vec<(String, u32)>, i64)>,
    /// HAVE answers waiting for their batch, per peer, and when it goes.
    pending_have: BTreeMap<String, (Vec<String>, i64)>,
    /// Per origin with a tree here (so at most `max_origins`): the peer of
    /// the last shortcut taken.
    tree_link: BTreeMap<String, String>,
}

impl Plumtree {
    /// A node whose links to `peers` are up (all eager).
    pub fn new(cfg: Config, peers: impl IntoIterator<Item = String>) -> Plumtree {
        Plumtree {
            cfg,
            up: peers.into_iter().collect(),
            lazy: BTreeMap::new(),
            prune_all: BTreeSet::new(),
            received: HashMap::new(),
            order: VecDeque::new(),
            missing: BTreeMap::new(),
            announced: BTreeMap::new(),
            pending: BTreeMap::new(),
            pending_have: BTreeMap::new(),
            tree_link: BTreeMap::new(),
        }
    }

    /// The up peers eager for `origin`'s messages.
    pub fn eager(&self, origin: &str) -> BTreeSet<String> {
        match self.lazy.get(origin) {
            Some(l) => self.up.difference(l).cloned().collect(),
            None => self.up.clone(),
        }
    }

    /// The up peers lazy for `origin`'s messages.
    pub fn lazy(&self, origin: &str) -> BTreeSet<String> {
        self.lazy.get(origin).cloned().unwrap_or_default()
    }

    /// The up peers that are lazy for at least one origin.
    pub fn lazy_peers(&self) -> BTreeSet<String> {
        self.lazy.values().flatten().cloned().collect()
    }

    /// Origins with a tree here (for tests and gauges).
    pub fn origins(&self) -> usize {
        self.lazy.len()
    }

    /// The peers whose link is up.
    pub fn up(&self) -> &BTreeSet<String> {
        &self.up
    }

    /// Makes `p` lazy for `origin`; false when it already was, is not up,
    /// or `origin` is new and `max_origins` are tracked (it stays eager).
    fn make_lazy(&mut self, origin: &str, p: &str) -> bool {
        if !self.up.contains(p) {
            return false;
        }
        if !self.lazy.contains_key(origin) && self.lazy.len() >= self.cfg.max_origins {
            return false;
        }
        self.lazy
            .entry(origin.to_string())
            .or_default()
            .insert(p.to_string())
    }

    /// Makes `p` eager for `origin`.
    fn make_eager(&mut self, origin: &str, p: &str) {
        if let Some(l) = self.lazy.get_mut(origin) {
            l.remove(p);
        }
    }

    /// The links `id` crossed to get here by the way remembered (0:
    /// originated here), if it was received within `remember_ms`.
    pub fn hops_of(&self, id: &str) -> Option<u32> {
        self.received.get(id).map(|g| g.hops)
    }

    /// Whether `id` was received here (within `remember_ms`).
    pub fn holds(&self, id: &str) -> bool {
        self.received.contains_key(id)
    }

    /// Ids announced but not received yet.
    pub fn missing(&self) -> impl Iterator<Item = &str> {
        self.missing.keys().map(String::as_str)
    }

    /// When [`Event::Tick`] is next due (a graft timer or a batch), if ever.
    pub fn next_deadline(&self) -> Option<i64> {
        let graft = self.missing.values().map(|m| m.due_ms).min();
        let batch = self
            .pending
            .values()
            .map(|(_, at)| *at)
            .chain(self.pending_have.values().map(|(_, at)| *at))
            .min();
        match (graft, batch) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Applies `ev` at time `now_ms`; returns what to do, in order.
    pub fn handle(&mut self, now_ms: i64, ev: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match ev {
            Event::Broadcast { id, origin } => {
                self.first_arrival(now_ms, None, id, origin, 0, &mut out)
            }
            Event::Gossip {
                from,
                id,
                origin,
                hops,
            } => {
                if self.received.contains_key(&id) {
                    // A duplicate: this link is not needed for its origin
                    // (unless it is the shorter way).
                    out.extend(self.duplicate(&from, &id, hops));
                } else {
                    self.first_arrival(now_ms, Some(from), id, origin, hops, &mut out);
                }
            }
            Event::IHave { from, ids, hops } => {
                if !self.is_up(&from) {
                    return out;
                }
                // Hop counts only when there is one per id.
                let hops = if hops.len() == ids.len() {
                    hops
                } else {
                    Vec::new()
                };
                for (k, id) in ids.into_iter().enumerate() {
                    let h = hops.get(k).copied();
                    if self.received.contains_key(&id) {
                        if let Some(h) = h {
                            self.announced_way(&from, &id, h, &mut out);
                        }
                        continue;
                    }
                    let mine = self.announced.get(&from).copied().unwrap_or(0);
                    if mine >= self.cfg.max_missing_per_peer {
                        break;
                    }
                    if !self.missing.contains_key(&id) && self.missing.len() >= self.cfg.max_missing
                    {
                        continue;
                    }
                    let due = now_ms + self.cfg.graft_timeout_ms;
                    let m = self.missing.entry(id).or_insert_with(|| Missing {
                        announcers: VecDeque::new(),
                        due_ms: due,
                        first_ms: now_ms,
                        tries: 0,
                        best: None,
                    });
                    if !m.announcers.contains(&from) && m.announcers.len() < self.cfg.max_announcers
                    {
                        m.announcers.push_back(from.clone());
                        *self.announced.entry(from.clone()).or_default() += 1;
                    }
                    if let Some(h) = h
                        && m.announcers.contains(&from)
                        && m.best.as_ref().is_none_or(|(_, b)| h < *b)
                    {
                        m.best = Some((from.clone(), h));
                    }
                }
            }
            Event::GraftOrigins { from, origins } => {
                if self.is_up(&from) {
                    for o in origins {
                        self.make_eager(&o, &from);
                    }
                }
            }
            Event::Graft { from, ids } => {
                if !self.is_up(&from) {
                    return out;
                }
                for id in ids {
                    if let Some(origin) = self.received.get(&id).map(|g| g.origin.clone()) {
                        self.make_eager(&origin, &from);
                        out.push(Action::Gossip {
                            to: from.clone(),
                            id,
                        });
                    }
                }
            }
            Event::Prune { from, origins } => {
                if origins.is_empty() {
                    if self.is_up(&from) {
                        self.prune_all.insert(from.clone());
                    }
                    let known: Vec<String> = self.lazy.keys().cloned().collect();
                    for o in known {
                        self.make_lazy(&o, &from);
                    }
                } else {
                    for o in origins {
                        self.make_lazy(&o, &from);
                        // The peer this node took as its shortcut for `o`
                        // pruned it: a copy from here crossed one from
                        // there, and that side stops pushing too. Asked
                        // again (after its PRUNE, so it lands after that
                        // side's change whatever else the link carries).
                        if self.tree_link.get(&o).is_some_and(|t| *t == from) && self.is_up(&from) {
                            self.ask_to_push(&o, &from, &mut out);
                        }
                    }
                }
            }
            Event::PeerUp(p) => {
                for l in self.lazy.values_mut() {
                    l.remove(&p);
                }
                self.prune_all.remove(&p);
                self.up.insert(p);
            }
            Event::PeerDown(p) => {
                self.up.remove(&p);
                self.prune_all.remove(&p);
                for l in self.lazy.values_mut() {
                    l.remove(&p);
                }
                self.pending.remove(&p);
                self.pending_have.remove(&p);
                // Missing ids it announced keep it as an announcer: grafted
                // when its link is up again (a relay at a hop limit keeps no
                // copy queued for this node; `domain::hop_limit`).
            }
            Event::Tick => self.tick(now_ms, &mut out),
        }
        out
    }

    /// Whether `p` is in the trees (its link is up).
    pub fn is_up(&self, p: &str) -> bool {
        self.up.contains(p)
    }

    /// Ids waiting for their graft timer, announcements waiting for their
    /// batch, and ids remembered (for gauges and tests).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            self.missing.len(),
            self.pending
                .values()
                .map(|(ids, _)| ids.len())
                .chain(self.pending_have.values().map(|(ids, _)| ids.len()))
                .sum(),
            self.received.len(),
        )
    }

    /// The caller stored message `id` of `origin`, new here, from peer
    /// `from` (`None`: this node originated it) over `hops` links (0 when
    /// originated here) and queued full copies itself (to the peers
    /// [`split`] left eager). Records it, makes `from` eager for `origin`
    /// (it served this node first), and queues announcements to `announce`
    /// (the lazy peers policy allows) for their batches. Returns the
    /// batches that filled up, and a shortcut's PRUNE and GRAFT-ORIGIN
    /// when a peer had announced it over a shorter way. A known id changes
    /// nothing.
    pub fn stored(
        &mut self,
        now_ms: i64,
        from: Option<&str>,
        id: String,
        origin: &str,
        hops: u32,
        announce: &[String],
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if self.received.contains_key(&id) {
            return out;
        }
        self.remember(now_ms, from, &id, origin, hops, &mut out);
        for p in announce {
            if Some(p.as_str()) == from || !self.is_up(p) {
                continue;
            }
            self.announce(now_ms, p.clone(), id.clone(), &mut out);
        }
        out
    }

    /// Whether `id` is still remembered as received here (what
    /// [`Plumtree::announce_only`] can announce).
    pub fn remembers(&self, id: &str) -> bool {
        self.received.contains_key(id)
    }

    /// Announces held message `id` to `peers` (those up), with the links it
    /// crossed to get here: for a message the caller may not send them in
    /// full (its hop limit; `domain::hop_limit`). Returns the batches that
    /// filled up. Nothing for an id not remembered.
    pub fn announce_only(&mut self, now_ms: i64, id: &str, peers: &[String]) -> Vec<Action> {
        let mut out = Vec::new();
        if !self.received.contains_key(id) {
            return out;
        }
        for p in peers {
            if self.is_up(p) {
                self.announce(now_ms, p.clone(), id.to_string(), &mut out);
            }
        }
        out
    }

    /// Message `id`, already held, arrived again from `from` over `hops`
    /// links: that link is not needed for the messages of its origin (the
    /// one recorded when it was first received; nothing when the id is no
    /// longer remembered) — unless it is a way at least `shortcut_hops`
    /// shorter than the remembered one: then the remembered way's link is
    /// pruned instead and this one kept. Returns the frames to send: a
    /// PRUNE for each duplicate pushed over a link lazy here (the peer still
    /// pushes: its side may not know yet).
    pub fn duplicate(&mut self, from: &str, id: &str, hops: u32) -> Vec<Action> {
        let Some(got) = self.received.get(id).cloned() else {
            return Vec::new();
        };
        let origin = got.origin;
        if origin.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        if self.shorter(hops, got.hops)
            && let Some(old) = got.from.filter(|p| p != from)
        {
            // Both ways delivered it: the longer one goes. The shorter
            // one is asked to keep pushing (GRAFT-ORIGIN): its copy may
            // have crossed one from here, which it answers with PRUNE.
            self.prune(&origin, &old, &mut out);
            if self.is_up(from) {
                self.ask_to_push(&origin, from, &mut out);
            }
            if let Some(g) = self.received.get_mut(id) {
                g.hops = hops;
                g.from = Some(from.to_string());
            }
            return out;
        }
        self.prune(&origin, from, &mut out);
        out
    }

    /// Counts again, per peer, the missing ids it announced.
    fn recount(&mut self) {
        self.announced.clear();
        for m in self.missing.values() {
            for a in &m.announcers {
                *self.announced.entry(a.clone()).or_default() += 1;
            }
        }
    }

    /// Whether a way of `hops` links is shorter enough than one of `than`
    /// to swap the tree link for it.
    fn shorter(&self, hops: u32, than: u32) -> bool {
        self.cfg.shortcut_hops > 0 && hops.saturating_add(self.cfg.shortcut_hops) <= than
    }

    /// A shorter way announced by `new`: asks it to push `origin`'s
    /// messages too (GRAFT-ORIGIN). The link they come by now is kept until
    /// a duplicate shows which way is shorter (make before break): a way
    /// that turns out to lead back through this node never cuts it off.
    /// Nothing when `new` is not up, `origin` has no tree here (beyond
    /// `max_origins`) or `new` was asked already.
    fn graft_shortcut(&mut self, origin: &str, new: &str, out: &mut Vec<Action>) {
        if !self.is_up(new)
            || !self.lazy.contains_key(origin)
            || self.tree_link.get(origin).is_some_and(|p| p == new)
        {
            return;
        }
        self.ask_to_push(origin, new, out);
    }

    /// Takes `p` as the tree link for `origin`: eager here, GRAFT-ORIGIN
    /// sent, remembered (only for origins with a tree here, so the table
    /// stays within `max_origins`).
    fn ask_to_push(&mut self, origin: &str, p: &str, out: &mut Vec<Action>) {
        self.make_eager(origin, p);
        out.push(Action::GraftOrigin {
            to: p.to_string(),
            origin: origin.to_string(),
        });
        if self.lazy.contains_key(origin) {
            self.tree_link.insert(origin.to_string(), p.to_string());
        }
    }

    /// Turns `p` lazy for `origin` and tells it (PRUNE).
    fn prune(&mut self, origin: &str, p: &str, out: &mut Vec<Action>) {
        if self.tree_link.get(origin).is_some_and(|t| t == p) {
            self.tree_link.remove(origin);
        }
        self.make_lazy(origin, p);
        // Told again when it pushes again: its side may be eager while this
        // side already took it for lazy (a graft or shortcut answered late).
        if self.lazy.get(origin).is_some_and(|l| l.contains(p)) {
            out.push(Action::Prune {
                to: p.to_string(),
                origin: origin.to_string(),
            });
        }
    }

    /// `from` announced `id`, held here, which crossed `hops` links to get
    /// to it: a shortcut when that way is shorter enough than the one
    /// remembered.
    fn announced_way(&mut self, from: &str, id: &str, hops: u32, out: &mut Vec<Action>) {
        let Some(got) = self.received.get(id) else {
            return;
        };
        let way = hops.saturating_add(1);
        if got.origin.is_empty() || !self.shorter(way, got.hops) {
            return;
        }
        let (origin, old) = (got.origin.clone(), got.from.clone());
        // Only a peer this node does not push the origin's messages to: one
        // it pushes to may get them from it (its way for this message was a
        // detour), and taking it as the tree link would make a cycle that
        // only graft timeouts break.
        if !self.lazy.get(&origin).is_some_and(|l| l.contains(from)) {
            return;
        }
        if old.is_some_and(|p| p != from) {
            self.graft_shortcut(&origin, from, out);
        }
    }

    /// Records `id` as received (from `from`, over `hops` links); the
    /// peers that announced it while it was missing get a HAVE (`from` has
    /// it already), and the one that announced it over the shortest way is
    /// the tree link for its origin when that way is shorter enough.
    fn remember(
        &mut self,
        now_ms: i64,
        from: Option<&str>,
        id: &str,
        origin: &str,
        hops: u32,
        out: &mut Vec<Action>,
    ) {
        let mut best = None;
        if let Some(m) = self.missing.remove(id) {
            best = m.best;
            for a in m.announcers {
                if let Some(n) = self.announced.get_mut(&a) {
                    *n = n.saturating_sub(1);
                }
                if Some(a.as_str()) != from && self.is_up(&a) {
                    self.have(now_ms, a, id.to_string(), out);
                }
            }
        }
        // A new origin's tree starts with every link eager but those an
        // older peer pruned for everything.
        if !origin.is_empty()
            && !self.lazy.contains_key(origin)
            && self.lazy.len() < self.cfg.max_origins
        {
            self.lazy.insert(origin.to_string(), self.prune_all.clone());
        }
        // The peer that served it first is eager for its origin.
        if let Some(f) = from {
            self.make_eager(origin, f);
        }
        self.received.insert(
            id.to_string(),
            Got {
                origin: origin.to_string(),
                hops,
                from: from.map(str::to_string),
            },
        );
        if let (Some((a, h)), false) = (best, origin.is_empty()) {
            self.announced_way(&a, id, h, out);
        }
        self.order.push_back((now_ms, id.to_string()));
        while self.order.len() > self.cfg.max_received {
            if let Some((_, old)) = self.order.pop_front() {
                self.received.remove(&old);
            }
        }
    }

    /// Message `id`, which travels outside the trees (to named recipients:
    /// routed toward them or flooded), is held here now, received from
    /// `from` over `hops` links: no longer missing (the peers that
    /// announced it get a HAVE) and it can be announced
    /// ([`Plumtree::announce_only`]: stopped at its hop limit here). It
    /// shapes no tree (no origin, like a refused message). Nothing for an id
    /// already remembered.
    pub fn untracked(
        &mut self,
        now_ms: i64,
        from: Option<&str>,
        id: &str,
        hops: u32,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if !self.received.contains_key(id) {
            self.remember(now_ms, from, id, "", hops, &mut out);
        }
        out
    }

    /// This node refused message `id` (policy, an invalid payload, …: the
    /// message itself, verified; a copy whose signature or chain of custody
    /// fails says nothing of the message its header names, and the caller
    /// does not call this for it): it is no longer waited for — no graft
    /// asks for it again — and later announcements of it are ignored for
    /// `remember_ms`. No HAVE is sent
    /// (the node does not hold it); an announcer's kept copy comes once.
    pub fn refused(&mut self, now_ms: i64, id: &str) {
        if let Some(m) = self.missing.remove(id) {
            for a in m.announcers {
                if let Some(n) = self.announced.get_mut(&a) {
                    *n = n.saturating_sub(1);
                }
            }
        }
        if !self.received.contains_key(id) {
            // No origin: a refused message shapes no tree.
            self.received.insert(
                id.to_string(),
                Got {
                    origin: String::new(),
                    hops: 0,
                    from: None,
                },
            );
            self.order.push_back((now_ms, id.to_string()));
            while self.order.len() > self.cfg.max_received {
                if let Some((_, old)) = self.order.pop_front() {
                    self.received.remove(&old);
                }
            }
        }
    }

    /// `from` announced `ids`, which this node already holds (the caller
    /// looked them up in its store), with `hops` (one per id, or none from
    /// an older peer): they are answered with HAVE, batched, and a shorter
    /// way among them is taken as a shortcut. Nothing for a peer that is
    /// not up.
    pub fn held_announced(
        &mut self,
        now_ms: i64,
        from: &str,
        ids: Vec<String>,
        hops: &[u32],
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if !self.is_up(from) {
            return out;
        }
        let hops = if hops.len() == ids.len() { hops } else { &[] };
        for (k, id) in ids.into_iter().enumerate() {
            if let Some(&h) = hops.get(k) {
                self.announced_way(from, &id, h, &mut out);
            }
            self.have(now_ms, from.to_string(), id, &mut out);
        }
        out
    }

    fn have(&mut self, now_ms: i64, p: String, id: String, out: &mut Vec<Action>) {
        let at = now_ms + self.cfg.ihave_batch_ms;
        let (ids, _) = self
            .pending_have
            .entry(p.clone())
            .or_insert((Vec::new(), at));
        ids.push(id);
        if ids.len() >= self.cfg.ihave_batch_max {
            let ids = std::mem::take(ids);
            self.pending_have.remove(&p);
            out.push(Action::Have { to: p, ids });
        }
    }

    fn announce(&mut self, now_ms: i64, p: String, id: String, out: &mut Vec<Action>) {
        let at = now_ms + self.cfg.ihave_batch_ms;
        let hops = self.received.get(&id).map_or(0, |g| g.hops);
        let (ids, _) = self.pending.entry(p.clone()).or_insert((Vec::new(), at));
        ids.push((id, hops));
        if ids.len() >= self.cfg.ihave_batch_max {
            let ids = std::mem::take(ids);
            self.pending.remove(&p);
            out.push(ihave(p, ids));
        }
    }

    fn first_arrival(
        &mut self,
        now_ms: i64,
        from: Option<String>,
        id: String,
        origin: String,
        hops: u32,
        out: &mut Vec<Action>,
    ) {
        self.remember(now_ms, from.as_deref(), &id, &origin, hops, out);
        out.push(Action::Deliver(id.clone()));
        for p in self.eager(&origin) {
            if Some(&p) != from.as_ref() {
                out.push(Action::Gossip {
                    to: p,
                    id: id.clone(),
                });
            }
        }
        let lazy: Vec<String> = self
            .lazy(&origin)
            .into_iter()
            .filter(|p| Some(p) != from.as_ref())
            .collect();
        for p in lazy {
            self.announce(now_ms, p, id.clone(), out);
        }
    }

    fn tick(&mut self, now_ms: i64, out: &mut Vec<Action>) {
        let due: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, (_, at))| *at <= now_ms)
            .map(|(p, _)| p.clone())
            .collect();
        for p in due {
            if let Some((ids, _)) = self.pending.remove(&p)
                && !ids.is_empty()
            {
                out.push(ihave(p, ids));
            }
        }
        let due: Vec<String> = self
            .pending_have
            .iter()
            .filter(|(_, (_, at))| *at <= now_ms)
            .map(|(p, _)| p.clone())
            .collect();
        for p in due {
            if let Some((ids, _)) = self.pending_have.remove(&p)
                && !ids.is_empty()
            {
                out.push(Action::Have { to: p, ids });
            }
        }
        // Grafts: the next announcer in turn, one GRAFT per peer per tick.
        let mut grafts: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let remember = self.cfg.remember_ms;
        let tries = self.cfg.max_graft_tries;
        let before = self.missing.len();
        self.missing.retain(|_, m| {
            now_ms - m.first_ms <= remember && !m.announcers.is_empty() && m.tries < tries
        });
        if self.missing.len() != before {
            self.recount();
        }
        for (id, m) in self.missing.iter_mut().filter(|(_, m)| m.due_ms <= now_ms) {
            m.due_ms = now_ms + self.cfg.graft_timeout_ms;
            // The next announcer in turn whose link is up; none up: looked
            // at again after a timeout, no try counted.
            let mut next = None;
            for _ in 0..m.announcers.len() {
                let Some(a) = m.announcers.pop_front() else {
                    break;
                };
                m.announcers.push_back(a.clone());
                if self.up.contains(&a) {
                    next = Some(a);
                    break;
                }
            }
            let Some(to) = next else {
                continue;
            };
            m.tries += 1;
            grafts.entry(to).or_default().push(id.clone());
        }
        // The answer (the full message) makes the link eager for the
        // message's origin when it arrives (`stored` / `Event::Gossip`).
        for (to, ids) in grafts {
            out.push(Action::Graft { to, ids });
        }
        while let Some((at, _)) = self.order.front() {
            if now_ms - *at <= remember {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.received.remove(&old);
            }
        }
    }
}

/// An announcement of `ids` (with their hop counts) to `to`.
fn ihave(to: String, ids: Vec<(String, u32)>) -> Action {
    let (ids, hops) = ids.into_iter().unzip();
    Action::IHave { to, ids, hops }
}

#[cfg(test)]
#[path = "plumtree_tests.rs"]
mod tests;
