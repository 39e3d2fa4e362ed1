//! Range-based set reconciliation (Aljoscha Meyer, "Range-Based Set
//! Reconciliation", 2023; the Negentropy protocol is the model) as a pure
//! state machine: no I/O, no clock. Two nodes find which messages of a shared
//! set one holds and the other lacks, at a cost that grows with the
//! difference, not with the set.
//!
//! Items are keyed by (creation time, message id) ([`Key`]); each has a hash
//! ([`item_hash`]). A range's fingerprint is a hash of the lane-wise sum of
//! its items' hashes and of their count ([`Acc`]), so sums of disjoint parts
//! add up: a store can keep per-time-bucket sums up to date on insert and
//! purge, and answer coarse ranges from those sums alone.
//!
//! The machine reads a set through [`BucketView`]: per-bucket sums, plus the
//! items of those buckets it was given. When a step needs the items of a
//! bucket it has not been given, it answers [`Error::Need`] with every such
//! bucket it found; the caller loads them and runs the step again (steps are
//! deterministic), so the caller never loads more than the buckets at range
//! edges and the small ranges being compared.
//!
//! A round ([`process`]) reads the other side's [`Frame`] (consecutive ranges
//! from `since` to [`Key::END`]) and answers each range:
//! - `Skip`: nothing.
//! - `Fingerprint`: equal to ours → `Skip`; else, if we hold at most
//!   [`Limits::ids_threshold`] items there, `Ids` (all of them); else the
//!   range split into up to [`Limits::branch`] parts of about equal count,
//!   each with our fingerprint. A range over several buckets is split at
//!   bucket starts (a large bucket is a part of its own), so both sides
//!   answer those parts from their sums and read only the buckets that
//!   differ; a range within one bucket is split between its items.
//! - `Ids` (all of theirs): ours that they lack are to be sent
//!   ([`Step::send`]); theirs we lack go back as `Want`. If we hold more than
//!   [`Limits::max_compare`] items there, the range is split instead (or, if
//!   they hold nothing there, the whole range is to be sent:
//!   [`Step::send_ranges`], paged by the caller).
//! - `Want`: items of ours they asked for ([`Step::wanted`]); ids we do not
//!   hold are ignored and counted ([`Step::unknown_wanted`]).
//!
//! Invariants (tested here, including a property test over random sets):
//! - Any two sets converge: when both sides run rounds until a frame is done
//!   ([`Frame::is_done`]), each side has learned exactly the items of its own
//!   set the other lacks (send ∪ send_ranges ∪ wanted).
//! - Two equal sets take one round trip of a few dozen bytes.
//! - Traffic is bounded by a function of the difference d and the set size
//!   n: O((d + 1) · branch · log_branch(n)) ranges.
//! - A frame from the other side is untrusted: [`validate`] refuses more than
//!   [`Limits::accept_ranges`] ranges, bounds out of order or not ending at
//!   [`Key::END`], id lists longer than [`Limits::ids_threshold`] and
//!   malformed fingerprints or ids, naming the range.
//! - Work per round is bounded by the number of ranges and the buckets they
//!   touch; a reply never has more than [`Limits::max_ranges`] ranges (the
//!   tail is folded into one fingerprint range, to be refined next round).
//! - Items loaded per round are bounded too: once the buckets a round needs
//!   pass [`Limits::max_load`] items, each later range that needs items is
//!   answered with our fingerprint of that same range (from the sums: the
//!   other side refines it next round, within its own budget) and the
//!   ranges that need none are still answered; only a range whose
//!   fingerprint itself needs items ends the reply with one fingerprint
//!   range over the rest of the set (from the last bound it needs no more
//!   buckets for: skipped ranges before it are folded in, so a frame whose
//!   ranges start inside unread buckets loads none of them). So a large set
//!   with differences spread everywhere takes more rounds, never more
//!   memory, and no range is refined again from the top. The first range that needs items is always
//!   answered, so every round makes progress.
//! - A bucket the caller marks too large to read ([`BucketView::set_opaque`])
//!   is never asked for again: a range whose answer needs its items (and no
//!   others') is answered with `Skip` for its part within such buckets and
//!   with our fingerprint for the rest, for the other side to refine; a
//!   frame or fold starting inside one skips to its end. Every difference
//!   outside those buckets is still found (property test), and no exchange
//!   stalls on them.
use crate::domain::policy::broadcastable;
use crate::proto::v1::{ReconcileFrame, ShortIds, SyncBound, SyncRange, Tlp, sync_range};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Domain-separation prefix of item hashes.
pub const ITEM_CONTEXT: &[u8] = b"certfed.v1.sync\x00";
/// Bytes of a short id (a prefix of the item hash) in id lists.
pub const SHORT: usize = 8;
/// Bytes of a fingerprint.
pub const FINGERPRINT: usize = 16;

/// A position in the order of items: creation time (unix ms), then the
/// message id's 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub created_ms: i64,
    pub id: [u8; 16],
}

impl Key {
    /// After every item.
    pub const END: Key = Key {
        created_ms: i64::MAX,
        id: [0xff; 16],
    };

    /// The first position at time `created_ms`.
    pub fn at(created_ms: i64) -> Key {
        Key {
            created_ms,
            id: [0; 16],
        }
    }

    /// The shortest bound `b` with `prev < b <= self` (for compact frames).
    pub fn bound_after(&self, prev: &Key) -> Key {
        if prev.created_ms < self.created_ms {
            return Key::at(self.created_ms);
        }
        let mut id = [0u8; 16];
        for (i, (mine, theirs)) in self.id.iter().zip(prev.id.iter()).enumerate() {
            id[i] = *mine;
            if mine != theirs {
                break;
            }
        }
        Key {
            created_ms: self.created_ms,
            id,
        }
    }
}

/// The audience of a broadcast in the reconciliation index.
pub const BROADCAST: &str = "*";
/// The audience of a relayable directed message (see [`audiences`]).
pub const RELAYED: &str = "+";

/// The audiences a message is reconciled under on node `me`. A link between
/// `me` and peer P reconciles the messages listed under [`BROADCAST`],
/// [`RELAYED`] or P; every node computes the same lists from the signed
/// header alone, so both sides of a link describe the same set:
/// - a broadcast (no named recipients): [`BROADCAST`], on every holder;
/// - a relayable directed message (named recipients, CLEAR or GREEN, not end-to-end
///   encrypted, not a receipt: `flooded`): [`RELAYED`], on every holder,
///   relays included. Relay links flood it like a broadcast
///   (`policy::route_to_peer`) and relays keep it readable, so a relay
///   reconciles it with its peers: a member restored behind a relay gets
///   back what a non-adjacent member addressed to it;
/// - any other directed message (end-to-end encrypted: relays drop their
///   ciphertext once delivered, so they cannot hold it for a later
///   reconciliation; a receipt: it goes back along its message's path only,
///   so most links never carry it): each other party (origin and named
///   recipients) on a party, nothing on a relay — a link reconciles those
///   both nodes are parties to.
///
/// The lists never overlap, so a message counts once in a link's set. What
/// actually goes to a peer is still decided by the forwarding policy
/// (`admission::entitled`), never by the list.
pub fn audiences(
    me: &str,
    origin: &str,
    recipients: &[String],
    tlp: Tlp,
    encrypted: bool,
    flooded: bool,
) -> Vec<String> {
    if recipients.is_empty() {
        return vec![BROADCAST.to_string()];
    }
    if flooded && broadcastable(tlp) && !encrypted {
        return vec![RELAYED.to_string()];
    }
    if origin != me && !recipients.iter().any(|r| r == me) {
        return Vec::new();
    }
    let mut out: Vec<String> = std::iter::once(origin)
        .chain(recipients.iter().map(String::as_str))
        .filter(|m| *m != me && *m != BROADCAST && *m != RELAYED)
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The 16 bytes of a message id in canonical UUID form (lower-case,
/// hyphenated: the only form that can be found again from the bytes);
/// `None` for any other text. Reconciliation items and tree ids use these.
///
/// Read in one pass over the text (it runs several times for each arriving
/// message): the same answer as parsing it as a UUID and requiring its
/// lower-case hyphenated encoding to be the text again (unit test
/// `id_bytes_agrees_with_parsing_and_encoding_again`).
pub fn id_bytes(message_id: &str) -> Option<[u8; 16]> {
    let text = message_id.as_bytes();
    if text.len() != uuid::fmt::Hyphenated::LENGTH {
        return None;
    }
    let mut out = [0u8; 16];
    let mut nibble = 0usize;
    for (i, &c) in text.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        out[nibble / 2] |= if nibble.is_multiple_of(2) { v << 4 } else { v };
        nibble += 1;
    }
    Some(out)
}

/// The hash of an item, from its message id's 16 bytes.
pub fn item_hash(id: &[u8; 16]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(ITEM_CONTEXT);
    h.update(id);
    h.finalize().into()
}

/// One item of a set: its key and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    pub key: Key,
    pub hash: [u8; 32],
}

impl Item {
    pub fn new(key: Key) -> Item {
        Item {
            key,
            hash: item_hash(&key.id),
        }
    }

    /// The short id sent in id lists.
    pub fn short(&self) -> [u8; SHORT] {
        let mut s = [0u8; SHORT];
        s.copy_from_slice(&self.hash[..SHORT]);
        s
    }
}

/// The count and lane-wise sum (four wrapping u64, little-endian) of item
/// hashes of a part of a set. Sums of disjoint parts add up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Acc {
    pub count: u64,
    pub lanes: [u64; 4],
}

impl Acc {
    /// The lanes of a hash.
    pub fn lanes_of(hash: &[u8; 32]) -> [u64; 4] {
        let mut l = [0u64; 4];
        for (i, lane) in l.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&hash[i * 8..i * 8 + 8]);
            *lane = u64::from_le_bytes(b);
        }
        l
    }

    pub fn add_item(&mut self, hash: &[u8; 32]) {
        self.merge(&Acc {
            count: 1,
            lanes: Acc::lanes_of(hash),
        });
    }

    pub fn merge(&mut self, o: &Acc) {
        self.count = self.count.wrapping_add(o.count);
        for i in 0..4 {
            self.lanes[i] = self.lanes[i].wrapping_add(o.lanes[i]);
        }
    }

    /// The fingerprint sent for a range.
    pub fn fingerprint(&self) -> [u8; FINGERPRINT] {
        let mut h = Sha256::new();
        for l in self.lanes {
            h.update(l.to_le_bytes());
        }
        h.update(self.count.to_le_bytes());
        let d = h.finalize();
        let mut f = [0u8; FINGERPRINT];
        f.copy_from_slice(&d[..FINGERPRINT]);
        f
    }
}

/// What one side says about one range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Skip,
    Fingerprint([u8; FINGERPRINT]),
    Ids(Vec<[u8; SHORT]>),
    Want(Vec<[u8; SHORT]>),
}

/// One range: from the previous range's upper bound (the first: `since`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub upper: Key,
    pub mode: Mode,
}

/// The ranges of one round, covering `[since, END)` in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    pub ranges: Vec<Range>,
}

impl Frame {
    /// Nothing left to say: every range is skipped.
    pub fn is_done(&self) -> bool {
        self.ranges.iter().all(|r| r.mode == Mode::Skip)
    }
}

/// Protocol constants and bounds on work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Parts a mismatched range is split into.
    pub branch: usize,
    /// Most items listed as ids instead of splitting further (and most ids
    /// accepted in one range of a frame).
    pub ids_threshold: usize,
    /// Most items compared in one range against the other side's id list.
    pub max_compare: usize,
    /// Most ranges in a frame this side sends (its replies).
    pub max_ranges: usize,
    /// Most ranges accepted in a frame from the other side (at least
    /// `max_ranges`): [`LEGACY_RANGES`] from nodes that announce nothing,
    /// up to [`MAX_RANGES`] between nodes that announce it.
    pub accept_ranges: usize,
    /// Items a round loads (the buckets its ranges need) before it folds
    /// the remaining ranges into one fingerprint range, to be refined in
    /// later rounds (the first range needing items is always answered).
    pub max_load: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            branch: 16,
            ids_threshold: 32,
            max_compare: 4096,
            // What every certfed accepts; the service raises both between
            // nodes that announce more (and shrinks a frame that would not
            // fit the receiver's byte limit).
            max_ranges: LEGACY_RANGES,
            accept_ranges: LEGACY_RANGES,
            // ~56 bytes an item: about 11 MB of items a round.
            max_load: 200_000,
        }
    }
}

/// Ranges a frame may have between nodes that announce nothing more (every
/// certfed accepts this many).
pub const LEGACY_RANGES: usize = 1024;
/// Most ranges a frame may have between nodes that announce it (Hello
/// `reconcile_max_ranges`): a difference of ~1,000 spread over a large set
/// is then refined a whole level per round instead of 1,024 ranges at a
/// time.
pub const MAX_RANGES: usize = 16_384;

/// Fewest ranges a reply is shrunk to when it would not fit the receiver's
/// byte limit ([`process_within`]): a few splits' worth of ranges of at most
/// ~300 bytes, under 20 KiB (below any certfed's smallest request limit,
/// 1 KiB + 64 KiB).
pub const MIN_RANGES: usize = 64;

impl Limits {
    /// Most ranges accepted from the other side.
    pub fn accepted(&self) -> usize {
        self.accept_ranges.max(self.max_ranges)
    }
}

/// Why a step could not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Load the items of these buckets ([`BucketView::load`]) and run the
    /// step again.
    Need(Vec<i64>),
    /// The other side's frame breaks the protocol (what, naming the range).
    Malformed(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Need(b) => write!(f, "the items of {} bucket(s) are needed", b.len()),
            Error::Malformed(m) => write!(f, "malformed reconciliation frame: {m}"),
        }
    }
}

/// A read-only view of one set: per-bucket sums (buckets of `width_ms` of
/// creation time), and the items of the buckets loaded so far.
#[derive(Debug, Clone)]
pub struct BucketView {
    width_ms: i64,
    sums: BTreeMap<i64, Acc>,
    loaded: HashMap<i64, Vec<Item>>,
    loaded_items: usize,
    /// Buckets too large to read (see [`BucketView::set_opaque`]).
    opaque: BTreeSet<i64>,
}

/// Buckets whose items a step found missing (collected over a whole step).
type Missing = BTreeSet<i64>;

impl BucketView {
    /// A view from per-bucket sums (bucket index → sum; buckets not listed
    /// are empty). Panics if `width_ms` is not positive.
    pub fn new(width_ms: i64, sums: impl IntoIterator<Item = (i64, Acc)>) -> BucketView {
        assert!(width_ms > 0, "bucket width must be positive");
        BucketView {
            width_ms,
            sums: sums.into_iter().filter(|(_, a)| a.count > 0).collect(),
            loaded: HashMap::new(),
            loaded_items: 0,
            opaque: BTreeSet::new(),
        }
    }

    /// A view of a whole set held in memory (tests, small sets).
    pub fn of_items(width_ms: i64, items: impl IntoIterator<Item = Item>) -> BucketView {
        let mut by: BTreeMap<i64, Vec<Item>> = BTreeMap::new();
        for it in items {
            by.entry(it.key.created_ms.div_euclid(width_ms))
                .or_default()
                .push(it);
        }
        let sums = by
            .iter()
            .map(|(b, v)| {
                let mut a = Acc::default();
                v.iter().for_each(|i| a.add_item(&i.hash));
                (*b, a)
            })
            .collect::<Vec<_>>();
        let mut view = BucketView::new(width_ms, sums);
        for (b, v) in by {
            view.load(b, v);
        }
        view
    }

    /// The bucket of a creation time.
    pub fn bucket_of(&self, created_ms: i64) -> i64 {
        created_ms.div_euclid(self.width_ms)
    }

    /// The creation-time span `[from, to)` of a bucket.
    pub fn span(&self, bucket: i64) -> (i64, i64) {
        let from = bucket.saturating_mul(self.width_ms);
        (from, from.saturating_add(self.width_ms))
    }

    /// Gives the items of a bucket (any order; items of other buckets are
    /// ignored).
    pub fn load(&mut self, bucket: i64, mut items: Vec<Item>) {
        items.retain(|i| self.bucket_of(i.key.created_ms) == bucket);
        items.sort_by_key(|i| i.key);
        self.loaded_items += items.len();
        if let Some(old) = self.loaded.insert(bucket, items) {
            self.loaded_items -= old.len();
        }
    }

    /// Whether a range may end at `bound` without the items of its bucket:
    /// the end of the set, a bucket's start, or in a loaded or empty bucket.
    fn answers_at(&self, bound: &Key) -> bool {
        let b = self.bucket_of(bound.created_ms);
        *bound == Key::END
            || *bound == Key::at(self.span(b).0)
            || self.loaded.contains_key(&b)
            || !self.sums.contains_key(&b)
    }

    /// Marks a bucket as too large to read (its items will not be given):
    /// a step that needs its items answers the part of the range within it
    /// with `Skip` and the rest of the range with our fingerprint, so the
    /// rest of the set is still compared (see the module documentation).
    pub fn set_opaque(&mut self, bucket: i64) {
        self.opaque.insert(bucket);
    }

    /// Whether `bucket` was marked too large to read.
    pub fn is_opaque(&self, bucket: i64) -> bool {
        self.opaque.contains(&bucket)
    }

    /// The end of the bucket `k` lies in, when that bucket is too large to
    /// read and `k` is past its start (a range from `k` would need its items).
    fn opaque_end(&self, k: &Key) -> Option<Key> {
        let b = self.bucket_of(k.created_ms);
        let (from, to) = self.span(b);
        (self.opaque.contains(&b) && *k != Key::END && *k != Key::at(from)).then(|| Key::at(to))
    }

    /// Whether the items of `bucket` were given.
    pub fn is_loaded(&self, bucket: i64) -> bool {
        self.loaded.contains_key(&bucket)
    }

    /// Items loaded so far (to bound memory).
    pub fn loaded_items(&self) -> usize {
        self.loaded_items
    }

    /// Items in bucket `b` (from its sum).
    pub fn count_of(&self, b: i64) -> u64 {
        self.sums.get(&b).map_or(0, |a| a.count)
    }

    /// Items in the whole view.
    pub fn total(&self) -> u64 {
        self.sums.values().map(|a| a.count).sum()
    }

    /// Non-empty buckets intersecting `[lo, hi)`, with whether each lies
    /// wholly inside.
    fn buckets(&self, lo: &Key, hi: &Key) -> Vec<(i64, bool)> {
        if lo >= hi {
            return Vec::new();
        }
        let first = self.bucket_of(lo.created_ms);
        let last = self.bucket_of(hi.created_ms);
        self.sums
            .range(first..=last)
            // A bucket starting at `hi` holds nothing of the range (bounds
            // at bucket starts are the common case: no edge to read there).
            .filter(|(b, _)| Key::at(self.span(**b).0) < *hi)
            .map(|(b, _)| {
                let (from, to) = self.span(*b);
                let inside = *lo <= Key::at(from) && (Key::at(to) <= *hi || *hi == Key::END);
                (*b, inside)
            })
            .collect()
    }

    fn items_of<'a>(&'a self, b: i64, lo: &Key, hi: &Key) -> Option<&'a [Item]> {
        let v = self.loaded.get(&b)?;
        let start = v.partition_point(|i| i.key < *lo);
        let end = v.partition_point(|i| i.key < *hi);
        Some(&v[start..end.max(start)])
    }

    /// Count and sum of the items in `[lo, hi)`; adds the buckets it needs
    /// (and lacks) to `missing`.
    fn summary(&self, lo: &Key, hi: &Key, missing: &mut Missing) -> Option<Acc> {
        let mut acc = Acc::default();
        let mut ok = true;
        for (b, inside) in self.buckets(lo, hi) {
            if inside {
                acc.merge(&self.sums[&b]);
            } else if let Some(items) = self.items_of(b, lo, hi) {
                items.iter().for_each(|i| acc.add_item(&i.hash));
            } else {
                missing.insert(b);
                ok = false;
            }
        }
        ok.then_some(acc)
    }

    /// Every item in `[lo, hi)`, in order.
    fn items(&self, lo: &Key, hi: &Key, missing: &mut Missing) -> Option<Vec<Item>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (b, _) in self.buckets(lo, hi) {
            match self.items_of(b, lo, hi) {
                Some(items) => out.extend_from_slice(items),
                None => {
                    missing.insert(b);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// Inner bounds splitting `[lo, hi)` (holding `total` items) into at
    /// most `parts` ranges of about equal count.
    fn split(
        &self,
        lo: &Key,
        hi: &Key,
        total: u64,
        parts: usize,
        missing: &mut Missing,
    ) -> Option<Vec<Key>> {
        let target = total.div_ceil(parts.max(1) as u64).max(1);
        // A range over several buckets is split at bucket starts only (a
        // bucket larger than a part is a part of its own): both sides then
        // answer the parts from their sums, and only the buckets that turn
        // out to differ are read item by item, in a later round. Splitting
        // inside buckets would read every bucket of the range on both sides,
        // though a sparse difference touches few of them. When that leaves
        // one part (one bucket holds the range's items), it is split by items.
        let buckets = self.buckets(lo, hi);
        if buckets.len() >= 2 {
            let units = self.units(lo, hi, &buckets, u64::MAX, missing)?;
            let bounds = place(&units, lo, hi, target, parts);
            if !bounds.is_empty() {
                return Some(bounds);
            }
        }
        let units = self.units(lo, hi, &buckets, target, missing)?;
        Some(place(&units, lo, hi, target, parts))
    }

    /// The units a split of `[lo, hi)` places its bounds between, in order:
    /// (a bound just before the unit's first item, count). A bucket wholly
    /// inside holding at most `whole_up_to` items is one unit; any other
    /// bucket gives one unit per item (its items are needed: when missing,
    /// it is added to `missing` and `None` returned).
    fn units(
        &self,
        lo: &Key,
        hi: &Key,
        buckets: &[(i64, bool)],
        whole_up_to: u64,
        missing: &mut Missing,
    ) -> Option<Vec<(Key, u64)>> {
        let mut units: Vec<(Key, u64)> = Vec::new();
        let mut ok = true;
        for (b, inside) in buckets {
            let count = self.sums[b].count;
            if *inside && count <= whole_up_to {
                let (from, _) = self.span(*b);
                units.push((Key::at(from), count));
                continue;
            }
            match self.items_of(*b, lo, hi) {
                Some(items) => {
                    // Within a bucket, the shortest bound after the previous
                    // item; the first item of a bucket, its creation time
                    // (every earlier item is in an earlier bucket).
                    let mut prev: Option<Key> = None;
                    for it in items {
                        let bound = match prev {
                            Some(p) => it.key.bound_after(&p),
                            None => Key::at(it.key.created_ms),
                        };
                        units.push((bound, 1));
                        prev = Some(it.key);
                    }
                }
                None => {
                    missing.insert(*b);
                    ok = false;
                }
            }
        }
        ok.then_some(units)
    }
}

/// Inner bounds between `units` (see [`BucketView::units`]) splitting
/// `[lo, hi)` into at most `parts` ranges of about `target` items each.
fn place(units: &[(Key, u64)], lo: &Key, hi: &Key, target: u64, parts: usize) -> Vec<Key> {
    let mut bounds = Vec::new();
    let mut acc = 0u64;
    let mut next = target;
    for (i, (_, count)) in units.iter().enumerate() {
        acc += count;
        if acc >= next && i + 1 < units.len() && bounds.len() + 1 < parts {
            let b = units[i + 1].0;
            if b > *lo && b < *hi && bounds.last().is_none_or(|l| *l < b) {
                bounds.push(b);
            }
            while next <= acc {
                next += target;
            }
        }
    }
    bounds
}

impl Step {
    /// Items of ours the other side lacks that this round found (listed,
    /// asked for, or in whole ranges).
    pub fn they_lack(&self) -> u64 {
        (self.send.len() + self.wanted.len()) as u64 + self.send_range_items
    }

    /// Items of the difference this round found: ours the other side lacks
    /// (listed, asked for, or in whole ranges) and theirs we lack.
    pub fn difference(&self) -> u64 {
        (self.send.len() + self.wanted.len() + self.want) as u64 + self.send_range_items
    }
}

/// What one round learned and what to answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// The frame to send back (done when every range is skipped).
    pub reply: Frame,
    /// Our items the other side lacks (found by comparing id lists).
    pub send: Vec<Key>,
    /// Ranges of ours of which the other side holds nothing: every item in
    /// them is to be sent (the caller pages through them).
    pub send_ranges: Vec<(Key, Key)>,
    /// Items of ours in [`Step::send_ranges`] (from the sums: what the
    /// other side lacks there).
    pub send_range_items: u64,
    /// Our items the other side asked for.
    pub wanted: Vec<Key>,
    /// Items the other side holds and we lack, asked for in the reply.
    pub want: usize,
    /// Ids the other side asked for that we do not hold in that range.
    pub unknown_wanted: usize,
}

/// The first frame of an exchange: the whole set `[since, END)` by one
/// fingerprint.
pub fn initiate(since: i64, view: &BucketView) -> Result<Frame, Error> {
    let mut missing = Missing::new();
    match tail(view, &Key::at(since), &mut missing) {
        Some(ranges) => Ok(Frame { ranges }),
        None => Err(Error::Need(missing.into_iter().collect())),
    }
}

/// One fingerprint range over `[from, END)`, after a skipped range to the
/// end of `from`'s bucket when that bucket is too large to read
/// ([`BucketView::set_opaque`]); `None` (and the buckets needed added to
/// `missing`) when edge buckets are to be loaded first.
fn tail(view: &BucketView, from: &Key, missing: &mut Missing) -> Option<Vec<Range>> {
    let mut out = Vec::with_capacity(2);
    let mut from = *from;
    if let Some(end) = view.opaque_end(&from) {
        out.push(skip(end));
        from = end;
    }
    out.push(fingerprint(view, &from, &Key::END, missing)?);
    Some(out)
}

/// `[lo, hi)` as one range with our fingerprint; `None` (and the buckets
/// needed added to `missing`) when edge buckets are to be loaded first.
fn fingerprint(view: &BucketView, lo: &Key, hi: &Key, missing: &mut Missing) -> Option<Range> {
    let acc = view.summary(lo, hi, missing)?;
    Some(Range {
        upper: *hi,
        mode: Mode::Fingerprint(acc.fingerprint()),
    })
}

/// Checks a frame from the other side against the protocol's rules.
pub fn validate(since: i64, frame: &Frame, limits: &Limits) -> Result<(), Error> {
    let bad = |m: String| Err(Error::Malformed(m));
    if frame.ranges.is_empty() {
        return bad("no ranges: a frame covers the set from since_ms to the end".into());
    }
    if frame.ranges.len() > limits.accepted() {
        return bad(format!(
            "{} ranges; at most {} per frame",
            frame.ranges.len(),
            limits.accepted()
        ));
    }
    let mut lower = Key::at(since);
    for (i, r) in frame.ranges.iter().enumerate() {
        if r.upper <= lower {
            return bad(format!(
                "range {i}: its upper bound is not after the previous bound (bounds must increase)"
            ));
        }
        match &r.mode {
            Mode::Ids(ids) | Mode::Want(ids) if ids.len() > limits.ids_threshold => {
                return bad(format!(
                    "range {i}: {} ids; at most {} per range",
                    ids.len(),
                    limits.ids_threshold
                ));
            }
            _ => {}
        }
        lower = r.upper;
    }
    if lower != Key::END {
        return bad("the last range does not end at the end of the set".into());
    }
    Ok(())
}

/// Answers the other side's frame (see the module documentation). Run it
/// again after loading the buckets of [`Error::Need`].
pub fn process(
    since: i64,
    frame: &Frame,
    view: &BucketView,
    limits: &Limits,
) -> Result<Step, Error> {
    validate(since, frame, limits)?;
    let mut missing = Missing::new();
    let mut step = Step::default();
    let mut out: Vec<Range> = Vec::new();
    let mut lower = Key::at(since);
    // Items of the buckets this round asked for so far (beyond those loaded).
    let mut pending: u64 = 0;
    let mut answered_one = false;
    // Ranges of the reply once compacted (consecutive skips merged), and
    // whether the last one is a skip.
    let mut replied = 0usize;
    let mut last_skip = false;
    let mut next = 0;
    while let Some(r) = frame.ranges.get(next) {
        next += 1;
        let (lo, hi) = (lower, r.upper);
        lower = r.upper;
        if r.mode == Mode::Skip {
            out.push(skip(hi));
            if !last_skip {
                replied += 1;
                last_skip = true;
            }
            continue;
        }
        // A reply is at most `max_ranges` ranges: once this range could
        // pass it (a split adds up to `branch`), the rest is one fingerprint
        // range, refined in later rounds — answering it now would only load
        // and split what `fold` then throws away.
        if answered_one && replied + limits.branch + 1 >= limits.max_ranges {
            fold_rest(view, &lo, &mut out, &mut missing);
            break;
        }
        let mut mine = Missing::new();
        let before = out.len();
        answer_range(
            &lo, &hi, &r.mode, view, limits, &mut step, &mut out, &mut mine,
        );
        // Buckets too large to read are never loaded: a range that needs
        // only their items is answered around them.
        let opaque: Vec<i64> = mine
            .iter()
            .copied()
            .filter(|b| view.is_opaque(*b))
            .collect();
        if !opaque.is_empty() {
            mine.retain(|b| !view.is_opaque(*b));
            if out.len() == before && mine.is_empty() {
                answer_opaque(&lo, &hi, &opaque, view, &mut out, &mut mine);
            }
        }
        for added in &out[before..] {
            let skipped = added.mode == Mode::Skip;
            if !(skipped && last_skip) {
                replied += 1;
            }
            last_skip = skipped;
        }
        let new: Vec<i64> = mine.difference(&missing).copied().collect();
        let extra: u64 = new.iter().map(|b| view.count_of(*b)).sum();
        if answered_one
            && extra > 0
            && view.loaded_items() as u64 + pending + extra > limits.max_load as u64
        {
            // Over the round's budget: this range is answered with our
            // fingerprint of it (from the sums), for the other side to
            // refine next round with its own budget; the ranges after it
            // are still answered when they need no items (a split at bucket
            // starts, a match). Only when even that needs items is the rest
            // one fingerprint range, refined in later rounds.
            // Ranges inside a bucket that is not loaded (the parts of a
            // bucket split by items) are answered together, up to the next
            // bound its sums can answer: the bucket's end.
            let mut upper = hi;
            while !view.answers_at(&upper)
                && let Some(r) = frame.ranges.get(next)
            {
                upper = r.upper;
                next += 1;
            }
            lower = upper;
            let mut edge = Missing::new();
            if let Some(range) = fingerprint(view, &lo, &upper, &mut edge) {
                out.push(range);
                replied += 1;
                last_skip = false;
                continue;
            }
            fold_within(view, since, &mut out, &mut missing);
            break;
        }
        if out.len() == before && !mine.is_empty() {
            // Not answered yet (its buckets are to be loaded): count it as
            // the split it may become, so that the ranges after a full reply
            // ask for no loads either.
            replied += limits.branch;
            last_skip = false;
        }
        pending += extra;
        missing.extend(new);
        answered_one = true;
    }
    if !missing.is_empty() {
        return Err(Error::Need(missing.into_iter().collect()));
    }
    step.wanted.sort();
    step.reply = fold(since, compact(out), view, limits)?;
    Ok(step)
}

/// Ends a reply with one fingerprint range over `[lo, END)` (to be refined
/// in later rounds); adds the edge buckets it needs and lacks to `missing`.
fn fold_rest(view: &BucketView, lo: &Key, out: &mut Vec<Range>, missing: &mut Missing) {
    let mut edge = Missing::new();
    match tail(view, lo, &mut edge) {
        Some(ranges) => out.extend(ranges),
        None => missing.extend(edge),
    }
}

/// Answers `[lo, hi)`, whose answer needs the items of `opaque` (buckets too
/// large to read) and no others: the parts within those buckets are skipped,
/// each other part gets our fingerprint, for the other side to refine (it
/// needs none of those items). Adds the buckets it needs to `missing` (and
/// then answers nothing).
fn answer_opaque(
    lo: &Key,
    hi: &Key,
    opaque: &[i64],
    view: &BucketView,
    out: &mut Vec<Range>,
    missing: &mut Missing,
) {
    let mut parts = Vec::with_capacity(2 * opaque.len() + 1);
    let mut pos = *lo;
    for b in opaque {
        let (from, to) = view.span(*b);
        let (from, to) = (Key::at(from).max(*lo), Key::at(to).min(*hi));
        if to <= pos {
            continue;
        }
        if from > pos {
            let Some(range) = fingerprint(view, &pos, &from, missing) else {
                return;
            };
            parts.push(range);
        }
        parts.push(skip(to));
        pos = to;
    }
    if pos < *hi {
        let Some(range) = fingerprint(view, &pos, hi, missing) else {
            return;
        };
        parts.push(range);
    }
    out.extend(parts);
}

/// Ends a reply over the round's budget with one fingerprint range to
/// [`Key::END`], reading no bucket beyond those the round already reads: a
/// range starting inside a bucket that is not loaded (a skipped range ended
/// there) would need it, so the skipped ranges before it are folded in too,
/// back to a bound that needs none. One pass back over the reply and one
/// summary (not one per range dropped: a frame of many skipped ranges costs
/// the ranges plus the buckets, not their product).
fn fold_within(view: &BucketView, since: i64, out: &mut Vec<Range>, missing: &mut Missing) {
    while out
        .last()
        .is_some_and(|r| r.mode == Mode::Skip && !view.answers_at(&r.upper))
    {
        out.pop();
    }
    let from = out.last().map_or(Key::at(since), |r| r.upper);
    let mut edge = Missing::new();
    match tail(view, &from, &mut edge) {
        Some(ranges) => out.extend(ranges),
        // Only a bound of an answered range, or the start of the set, can
        // still fall in an unread bucket: that one is needed.
        None => missing.extend(edge),
    }
}

/// Answers one range of the other side's frame (see [`process`]); adds the
/// buckets it needs and lacks to `missing` (and then answers nothing).
#[allow(clippy::too_many_arguments)]
fn answer_range(
    lo: &Key,
    hi: &Key,
    mode: &Mode,
    view: &BucketView,
    limits: &Limits,
    step: &mut Step,
    out: &mut Vec<Range>,
    missing: &mut Missing,
) {
    let (lo, hi) = (*lo, *hi);
    match mode {
        Mode::Skip => out.push(skip(hi)),
        Mode::Fingerprint(theirs) => {
            let Some(ours) = view.summary(&lo, &hi, missing) else {
                return;
            };
            if ours.fingerprint() == *theirs {
                out.push(skip(hi));
            } else if ours.count <= limits.ids_threshold as u64 {
                if let Some(items) = view.items(&lo, &hi, missing) {
                    out.push(Range {
                        upper: hi,
                        mode: Mode::Ids(items.iter().map(Item::short).collect()),
                    });
                }
            } else if let Some(parts) = split_ranges(view, &lo, &hi, ours.count, limits, missing) {
                out.extend(parts);
            }
        }
        Mode::Ids(theirs) => {
            let Some(ours) = view.summary(&lo, &hi, missing) else {
                return;
            };
            if ours.count > limits.max_compare as u64 {
                if theirs.is_empty() {
                    step.send_ranges.push((lo, hi));
                    step.send_range_items += ours.count;
                    out.push(skip(hi));
                } else if let Some(parts) =
                    split_ranges(view, &lo, &hi, ours.count, limits, missing)
                {
                    out.extend(parts);
                }
                return;
            }
            let Some(items) = view.items(&lo, &hi, missing) else {
                return;
            };
            let theirs_set: HashSet<[u8; SHORT]> = theirs.iter().copied().collect();
            let ours_set: HashSet<[u8; SHORT]> = items.iter().map(Item::short).collect();
            step.send.extend(
                items
                    .iter()
                    .filter(|i| !theirs_set.contains(&i.short()))
                    .map(|i| i.key),
            );
            let mut want: Vec<[u8; SHORT]> = theirs
                .iter()
                .filter(|s| !ours_set.contains(*s))
                .copied()
                .collect();
            want.dedup();
            step.want += want.len();
            out.push(if want.is_empty() {
                skip(hi)
            } else {
                Range {
                    upper: hi,
                    mode: Mode::Want(want),
                }
            });
        }
        Mode::Want(ids) => {
            let Some(ours) = view.summary(&lo, &hi, missing) else {
                return;
            };
            if ours.count > limits.max_compare as u64 {
                // Not a range we listed: ask again from its fingerprint.
                step.unknown_wanted += ids.len();
                out.push(Range {
                    upper: hi,
                    mode: Mode::Fingerprint(ours.fingerprint()),
                });
                return;
            }
            let Some(items) = view.items(&lo, &hi, missing) else {
                return;
            };
            let by_short: HashMap<[u8; SHORT], Key> =
                items.iter().map(|i| (i.short(), i.key)).collect();
            let asked: HashSet<[u8; SHORT]> = ids.iter().copied().collect();
            for s in asked {
                match by_short.get(&s) {
                    Some(k) => step.wanted.push(*k),
                    None => step.unknown_wanted += 1,
                }
            }
            out.push(skip(hi));
        }
    }
}

fn skip(upper: Key) -> Range {
    Range {
        upper,
        mode: Mode::Skip,
    }
}

/// `[lo, hi)` split into parts, each with our fingerprint.
fn split_ranges(
    view: &BucketView,
    lo: &Key,
    hi: &Key,
    count: u64,
    limits: &Limits,
    missing: &mut Missing,
) -> Option<Vec<Range>> {
    let bounds = view.split(lo, hi, count, limits.branch, missing)?;
    let mut parts = Vec::with_capacity(bounds.len() + 1);
    let mut from = *lo;
    for upper in bounds.into_iter().chain(std::iter::once(*hi)) {
        parts.push(fingerprint(view, &from, &upper, missing)?);
        from = upper;
    }
    Some(parts)
}

/// Merges consecutive skipped ranges.
fn compact(ranges: Vec<Range>) -> Vec<Range> {
    let mut out: Vec<Range> = Vec::with_capacity(ranges.len());
    for r in ranges {
        if r.mode == Mode::Skip
            && let Some(last) = out.last_mut()
            && last.mode == Mode::Skip
        {
            last.upper = r.upper;
            continue;
        }
        out.push(r);
    }
    out
}

/// [`process`] with a reply of at most `max_bytes` encoded ([`to_proto`]): a
/// reply that is larger is made again with half the ranges (the tail folded
/// into one fingerprint range, refined in a later round), down to
/// [`MIN_RANGES`]. Deterministic like [`process`]: after [`Error::Need`], load
/// and run it again.
pub fn process_within(
    since: i64,
    frame: &Frame,
    view: &BucketView,
    limits: &Limits,
    max_bytes: usize,
) -> Result<Step, Error> {
    let mut lim = *limits;
    loop {
        let step = process(since, frame, view, &lim)?;
        if lim.max_ranges <= MIN_RANGES
            || prost::Message::encoded_len(&to_proto(since, &step.reply)) <= max_bytes
        {
            return Ok(step);
        }
        lim.max_ranges = (lim.max_ranges / 2).max(MIN_RANGES);
    }
}

/// Keeps a reply within `max_ranges`: the tail becomes one fingerprint range.
fn fold(
    since: i64,
    mut ranges: Vec<Range>,
    view: &BucketView,
    limits: &Limits,
) -> Result<Frame, Error> {
    let max = limits.max_ranges.max(2);
    if ranges.len() > max {
        // The tail is one range, or two when it starts in a bucket too large
        // to read (a skip to that bucket's end first): then one answered
        // range fewer is kept.
        let mut keep = max - 1;
        loop {
            let from = match keep {
                0 => Key::at(since),
                k => ranges[k - 1].upper,
            };
            let mut missing = Missing::new();
            let Some(tail) = tail(view, &from, &mut missing) else {
                return Err(Error::Need(missing.into_iter().collect()));
            };
            if keep + tail.len() <= max || keep == 0 {
                ranges.truncate(keep);
                ranges.extend(tail);
                break;
            }
            keep -= 1;
        }
    }
    Ok(Frame { ranges })
}

/// Encodes a frame for the wire (bounds as deltas from the previous one).
pub fn to_proto(since: i64, frame: &Frame) -> ReconcileFrame {
    let mut prev = since;
    let ranges = frame
        .ranges
        .iter()
        .map(|r| {
            let upper = if r.upper == Key::END {
                SyncBound {
                    end: true,
                    ..Default::default()
                }
            } else {
                let delta = r.upper.created_ms.wrapping_sub(prev);
                prev = r.upper.created_ms;
                let keep = r
                    .upper
                    .id
                    .iter()
                    .rposition(|b| *b != 0)
                    .map_or(0, |p| p + 1);
                SyncBound {
                    created_delta_ms: delta,
                    id_prefix: r.upper.id[..keep].to_vec(),
                    end: false,
                }
            };
            let join = |ids: &[[u8; SHORT]]| ShortIds { ids: ids.concat() };
            let mode = match &r.mode {
                Mode::Skip => sync_range::Mode::Skip(true),
                Mode::Fingerprint(f) => sync_range::Mode::Fingerprint(f.to_vec()),
                Mode::Ids(ids) => sync_range::Mode::Ids(join(ids)),
                Mode::Want(ids) => sync_range::Mode::Want(join(ids)),
            };
            SyncRange {
                upper: Some(upper),
                mode: Some(mode),
            }
        })
        .collect();
    ReconcileFrame { ranges }
}

/// Decodes a frame from the wire, refusing what cannot be a frame (the
/// rules between ranges are [`validate`]'s). Checks the range count before
/// decoding anything else.
pub fn from_proto(since: i64, f: &ReconcileFrame, limits: &Limits) -> Result<Frame, Error> {
    let bad = |m: String| Err(Error::Malformed(m));
    if f.ranges.len() > limits.accepted() {
        return bad(format!(
            "{} ranges; at most {} per frame",
            f.ranges.len(),
            limits.accepted()
        ));
    }
    let mut prev = since;
    let mut ranges = Vec::with_capacity(f.ranges.len());
    for (i, r) in f.ranges.iter().enumerate() {
        let Some(b) = &r.upper else {
            return bad(format!("range {i}: no upper bound"));
        };
        let upper = if b.end {
            Key::END
        } else {
            if b.id_prefix.len() > 16 {
                return bad(format!(
                    "range {i}: id prefix of {} bytes; at most 16",
                    b.id_prefix.len()
                ));
            }
            let Some(created) = prev.checked_add(b.created_delta_ms) else {
                return bad(format!("range {i}: creation time out of range"));
            };
            prev = created;
            let mut id = [0u8; 16];
            id[..b.id_prefix.len()].copy_from_slice(&b.id_prefix);
            Key {
                created_ms: created,
                id,
            }
        };
        let split = |ids: &ShortIds| -> Result<Vec<[u8; SHORT]>, Error> {
            if !ids.ids.len().is_multiple_of(SHORT) {
                return Err(Error::Malformed(format!(
                    "range {i}: id list of {} bytes is not a whole number of {SHORT}-byte ids",
                    ids.ids.len()
                )));
            }
            if ids.ids.len() / SHORT > limits.ids_threshold {
                return Err(Error::Malformed(format!(
                    "range {i}: {} ids; at most {} per range",
                    ids.ids.len() / SHORT,
                    limits.ids_threshold
                )));
            }
            Ok(ids
                .ids
                .chunks_exact(SHORT)
                .map(|c| {
                    let mut s = [0u8; SHORT];
                    s.copy_from_slice(c);
                    s
                })
                .collect())
        };
        let mode = match &r.mode {
            None => return bad(format!("range {i}: no mode")),
            Some(sync_range::Mode::Skip(_)) => Mode::Skip,
            Some(sync_range::Mode::Fingerprint(f)) => {
                let Ok(fp) = <[u8; FINGERPRINT]>::try_from(f.as_slice()) else {
                    return bad(format!(
                        "range {i}: fingerprint of {} bytes; it is {FINGERPRINT}",
                        f.len()
                    ));
                };
                Mode::Fingerprint(fp)
            }
            Some(sync_range::Mode::Ids(ids)) => Mode::Ids(split(ids)?),
            Some(sync_range::Mode::Want(ids)) => Mode::Want(split(ids)?),
        };
        ranges.push(Range { upper, mode });
    }
    Ok(Frame { ranges })
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
