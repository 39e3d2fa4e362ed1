//! Tests of the reconciliation state machine: deterministic exchanges between
//! two in-memory sets (buckets loaded on demand, as a store would), hostile
//! frames, and a property test that any two sets converge with traffic
//! bounded by the difference.
use super::*;
use proptest::prelude::*;
use prost::Message;
use std::collections::BTreeSet;

fn key(created_ms: i64, n: u64) -> Key {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(created_ms as u64).to_be_bytes());
    id[8..].copy_from_slice(&n.to_be_bytes());
    Key { created_ms, id }
}

/// One side: its whole set (the "store") and the view the machine sees,
/// which starts with bucket sums only.
struct Side {
    items: BTreeMap<i64, Vec<Item>>,
    view: BucketView,
    loads: usize,
    /// Start every step from the sums alone, as the service does (its view
    /// lives for one round), recording the most items a step loaded.
    fresh: bool,
    max_loaded: usize,
    /// Most bytes of a reply (`process_within`).
    max_bytes: usize,
    /// The largest reply made.
    largest: usize,
    /// Buckets holding more items than this are never loaded: marked too
    /// large to read when a step needs them, as the service does.
    too_large: Option<u64>,
    /// Buckets a step found too large to read.
    marked: BTreeSet<i64>,
    /// The most items of one bucket loaded.
    largest_bucket: usize,
}

impl Side {
    fn new(width: i64, keys: &BTreeSet<Key>) -> Side {
        let all = BucketView::of_items(width, keys.iter().map(|k| Item::new(*k)));
        let mut items: BTreeMap<i64, Vec<Item>> = BTreeMap::new();
        for k in keys {
            items
                .entry(k.created_ms.div_euclid(width))
                .or_default()
                .push(Item::new(*k));
        }
        let sums: Vec<(i64, Acc)> = all.sums.iter().map(|(b, a)| (*b, *a)).collect();
        Side {
            items,
            view: BucketView::new(width, sums),
            loads: 0,
            fresh: false,
            max_loaded: 0,
            max_bytes: usize::MAX,
            largest: 0,
            too_large: None,
            marked: BTreeSet::new(),
            largest_bucket: 0,
        }
    }

    /// Loads a bucket a step needs, or marks it too large to read; a step
    /// asking again for a bucket marked so is a bug.
    fn give(&mut self, b: i64) {
        assert!(
            !self.view.is_opaque(b),
            "a step asked for bucket {b}, marked too large"
        );
        if self.too_large.is_some_and(|n| self.view.count_of(b) > n) {
            self.view.set_opaque(b);
            self.marked.insert(b);
            return;
        }
        self.loads += 1;
        let items = self.items.get(&b).cloned().unwrap_or_default();
        self.largest_bucket = self.largest_bucket.max(items.len());
        self.view.load(b, items);
    }

    /// Runs a step, loading buckets as asked (like the service does).
    fn step(&mut self, since: i64, frame: &Frame, limits: &Limits) -> Result<Step, Error> {
        if self.fresh {
            let sums: Vec<(i64, Acc)> = self.view.sums.iter().map(|(b, a)| (*b, *a)).collect();
            self.view = BucketView::new(self.view.width_ms, sums);
        }
        for _ in 0..100 {
            let r = process_within(since, frame, &self.view, limits, self.max_bytes);
            self.max_loaded = self.max_loaded.max(self.view.loaded_items());
            if let Ok(s) = &r {
                self.largest = self.largest.max(to_proto(since, &s.reply).encoded_len());
            }
            match r {
                Err(Error::Need(buckets)) => {
                    for b in buckets {
                        self.give(b);
                    }
                }
                r => return r,
            }
        }
        panic!("a step kept needing buckets");
    }

    fn first(&mut self, since: i64) -> Frame {
        loop {
            match initiate(since, &self.view) {
                Ok(f) => return f,
                Err(Error::Need(buckets)) => {
                    for b in buckets {
                        self.give(b);
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Every key of this side in `[lo, hi)`.
    fn range(&self, lo: &Key, hi: &Key) -> Vec<Key> {
        self.items
            .values()
            .flatten()
            .map(|i| i.key)
            .filter(|k| k >= lo && k < hi)
            .collect()
    }
}

#[derive(Debug, Default)]
struct Outcome {
    /// What each side learned to send to the other.
    a_sends: BTreeSet<Key>,
    b_sends: BTreeSet<Key>,
    /// What each side's steps counted as the difference (ListPeers).
    a_difference: u64,
    b_difference: u64,
    bytes: usize,
    round_trips: usize,
}

fn learned(side: &Side, step: &Step, into: &mut BTreeSet<Key>) {
    into.extend(step.send.iter().copied());
    into.extend(step.wanted.iter().copied());
    for (lo, hi) in &step.send_ranges {
        into.extend(side.range(lo, hi));
    }
}

/// A (initiator) and B (responder) exchange frames until A has nothing to say.
fn exchange(a: &BTreeSet<Key>, b: &BTreeSet<Key>, width: i64, limits: &Limits) -> Outcome {
    exchange_with(Side::new(width, a), Side::new(width, b), limits).0
}

/// [`exchange`] between two given sides (returned for inspection).
fn exchange_with(sa: Side, sb: Side, limits: &Limits) -> (Outcome, Side, Side) {
    exchange_since(0, sa, sb, limits)
}

/// [`exchange_with`] over the set from `since`.
fn exchange_since(
    since: i64,
    mut sa: Side,
    mut sb: Side,
    limits: &Limits,
) -> (Outcome, Side, Side) {
    let mut out = Outcome::default();
    let mut frame = sa.first(since);
    for _ in 0..200 {
        out.round_trips += 1;
        out.bytes += to_proto(since, &frame).encoded_len();
        let rb = sb.step(since, &frame, limits).expect("B answers");
        learned(&sb, &rb, &mut out.b_sends);
        out.b_difference += rb.difference();
        out.bytes += to_proto(since, &rb.reply).encoded_len();
        let ra = sa.step(since, &rb.reply, limits).expect("A answers");
        learned(&sa, &ra, &mut out.a_sends);
        out.a_difference += ra.difference();
        if ra.reply.is_done() {
            return (out, sa, sb);
        }
        frame = ra.reply;
    }
    panic!("no convergence in 200 rounds");
}

fn check_converges(a: &BTreeSet<Key>, b: &BTreeSet<Key>, width: i64, limits: &Limits) -> Outcome {
    let out = exchange(a, b, width, limits);
    let a_only: BTreeSet<Key> = a.difference(b).copied().collect();
    let b_only: BTreeSet<Key> = b.difference(a).copied().collect();
    assert_eq!(out.a_sends, a_only, "A learns exactly what B lacks");
    assert_eq!(out.b_sends, b_only, "B learns exactly what A lacks");
    out
}

fn spread(n: u64, span_ms: i64) -> BTreeSet<Key> {
    (0..n)
        .map(|i| key((i as i64 * span_ms) / n as i64, i))
        .collect()
}

#[test]
fn equal_sets_take_one_round_trip_of_a_few_bytes() {
    let a = spread(100_000, 30 * 86_400_000);
    let out = check_converges(&a, &a, 600_000, &Limits::default());
    assert_eq!(out.round_trips, 1);
    assert!(out.bytes < 100, "{} bytes", out.bytes);
}

#[test]
fn empty_sets_and_one_empty_side() {
    let none = BTreeSet::new();
    check_converges(&none, &none, 1000, &Limits::default());
    let a = spread(10_000, 10_000_000);
    // The empty side's id list makes the other send whole ranges, not ids.
    let out = check_converges(&a, &none, 1000, &Limits::default());
    assert!(out.bytes < 20_000, "{} bytes", out.bytes);
    check_converges(&none, &a, 1000, &Limits::default());
}

#[test]
fn a_thousand_missing_of_a_hundred_thousand_is_cheap() {
    let b = spread(100_000, 30 * 86_400_000);
    let mut a = b.clone();
    let mut x: u64 = 7;
    for _ in 0..1000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let k = *b.iter().nth((x >> 33) as usize % b.len()).unwrap();
        a.remove(&k);
    }
    let d = b.len() - a.len();
    let out = check_converges(&a, &b, 600_000, &Limits::default());
    // Frames of at most 1,024 ranges (Limits::max_ranges) fold their tail
    // into one range refined in a later round: a dozen-odd round trips.
    assert!(out.round_trips <= 16, "{} round trips", out.round_trips);
    // About 300 bytes per missing item here (the README has the 1,000,000 figure).
    assert!(out.bytes < d * 600, "{} bytes for {d} missing", out.bytes);
}

/// The 1,000,000-message case in small: differences in nearly every bucket,
/// a load budget a fifth of the set. Each round loads at most about the
/// budget (plus the one range always answered), and the sets still converge.
#[test]
fn a_load_budget_spreads_the_work_over_rounds_and_still_converges() {
    let limits = Limits {
        max_load: 8_000,
        ..Limits::default()
    };
    let width = 10_000;
    // 40,000 items over 400 buckets of 100; 400 missing, about one a bucket.
    let b = spread(40_000, 400 * width);
    let a: BTreeSet<Key> = b.iter().copied().filter(|k| k.id[15] % 100 != 3).collect();
    assert!(b.len() - a.len() >= 300);
    let mut sa = Side::new(width, &a);
    let mut sb = Side::new(width, &b);
    sa.fresh = true;
    sb.fresh = true;
    let (out, sa, sb) = exchange_with(sa, sb, &limits);
    let a_only: BTreeSet<Key> = a.difference(&b).copied().collect();
    let b_only: BTreeSet<Key> = b.difference(&a).copied().collect();
    assert_eq!(out.a_sends, a_only);
    assert_eq!(out.b_sends, b_only, "B learns exactly what A lacks");
    // The budget plus one range's buckets (a split range needs at most its
    // edge buckets and those it splits by items: a few buckets of 100).
    for (who, side) in [("A", &sa), ("B", &sb)] {
        assert!(
            side.max_loaded <= 8_000 + 2_000,
            "{who} loaded {} items in one round (budget 8,000)",
            side.max_loaded
        );
    }
    // Without the budget the same exchange loads more in a round (every
    // bucket holding a difference: about a third of them).
    let mut ua = Side::new(width, &a);
    let mut ub = Side::new(width, &b);
    ua.fresh = true;
    ub.fresh = true;
    let (_, ua, ub) = exchange_with(ua, ub, &Limits::default());
    assert!(
        ua.max_loaded.max(ub.max_loaded) > 8_000 + 2_000,
        "unbudgeted: {} / {}",
        ua.max_loaded,
        ub.max_loaded
    );
    // Five budgets' worth of set (as 1,000,000 items are for the default):
    // within the service's MAX_ROUNDS.
    assert!(out.round_trips <= 40, "{} round trips", out.round_trips);
}

#[test]
fn everything_in_one_bucket_is_split_by_items() {
    // A burst: every message within one bucket.
    let b: BTreeSet<Key> = (0..20_000)
        .map(|i| key(5_000 + (i % 7) as i64, i))
        .collect();
    let mut a = b.clone();
    for i in (0..20_000).step_by(997) {
        a.remove(&key(5_000 + (i % 7) as i64, i));
    }
    a.insert(key(5_003, 1_000_000));
    check_converges(&a, &b, 600_000, &Limits::default());
}

/// A sparse difference reads only the buckets it touches: a range over
/// several buckets is split at bucket starts (both sides answer from their
/// sums), so only the buckets holding a difference are read item by item.
#[test]
fn a_sparse_difference_reads_only_the_buckets_it_touches() {
    let width = 1_000;
    // 200 buckets of 100 items; A lacks one item in each of 3 buckets.
    let b = spread(20_000, 200 * width);
    let gone = [key(12_340, 1_234), key(77_770, 7_777), key(150_010, 15_001)];
    assert!(gone.iter().all(|k| b.contains(k)));
    let a: BTreeSet<Key> = b.iter().copied().filter(|k| !gone.contains(k)).collect();
    let mut sa = Side::new(width, &a);
    let mut sb = Side::new(width, &b);
    sa.fresh = true;
    sb.fresh = true;
    let (out, sa, sb) = exchange_with(sa, sb, &Limits::default());
    assert_eq!(out.b_sends, gone.iter().copied().collect::<BTreeSet<Key>>());
    // Each differing bucket is read by each side in the few rounds that
    // compare inside it (plus the edge bucket of `since`); splitting inside
    // buckets read every bucket of each mismatched range (~13 a range).
    assert!(
        sa.loads + sb.loads <= 3 * 8,
        "{} + {} buckets read for 3 differing buckets",
        sa.loads,
        sb.loads
    );
}

#[test]
fn small_frames_fold_their_tail_and_still_converge() {
    let limits = Limits {
        max_ranges: 40,
        ..Limits::default()
    };
    let b = spread(5_000, 1_000_000);
    let a: BTreeSet<Key> = b.iter().copied().filter(|k| k.id[15] % 50 != 0).collect();
    check_converges(&a, &b, 10_000, &limits);
}

#[test]
fn hostile_frames_are_refused_naming_the_rule() {
    let limits = Limits::default();
    let view = BucketView::of_items(1000, (0..10).map(|i| Item::new(key(i * 100, i as u64))));
    let err = |f: Frame| match process(0, &f, &view, &limits) {
        Err(Error::Malformed(m)) => m,
        other => panic!("accepted: {other:?}"),
    };
    assert!(err(Frame::default()).contains("no ranges"));
    let m = err(Frame {
        ranges: vec![
            Range {
                upper: Key::at(500),
                mode: Mode::Skip,
            },
            Range {
                upper: Key::at(400),
                mode: Mode::Skip,
            },
            Range {
                upper: Key::END,
                mode: Mode::Skip,
            },
        ],
    });
    assert!(m.contains("range 1") && m.contains("increase"), "{m}");
    let m = err(Frame {
        ranges: vec![Range {
            upper: Key::at(400),
            mode: Mode::Skip,
        }],
    });
    assert!(m.contains("end of the set"), "{m}");
    let m = err(Frame {
        ranges: vec![Range {
            upper: Key::END,
            mode: Mode::Ids(vec![[0; SHORT]; 33]),
        }],
    });
    assert!(m.contains("33 ids"), "{m}");
    let many = Frame {
        ranges: (1..=20_000)
            .map(|i| Range {
                upper: if i == 20_000 { Key::END } else { Key::at(i) },
                mode: Mode::Skip,
            })
            .collect(),
    };
    assert!(err(many.clone()).contains("at most 1024"));
    // The wire decoder refuses before building anything.
    let wire = to_proto(0, &many);
    assert!(
        matches!(from_proto(0, &wire, &limits), Err(Error::Malformed(m)) if m.contains("at most"))
    );
    let mut wire = to_proto(
        0,
        &Frame {
            ranges: vec![Range {
                upper: Key::END,
                mode: Mode::Fingerprint([1; FINGERPRINT]),
            }],
        },
    );
    if let Some(sync_range::Mode::Fingerprint(f)) = &mut wire.ranges[0].mode {
        f.truncate(3);
    }
    assert!(
        matches!(from_proto(0, &wire, &limits), Err(Error::Malformed(m)) if m.contains("fingerprint of 3 bytes"))
    );
    let bad_ids = ReconcileFrame {
        ranges: vec![SyncRange {
            upper: Some(SyncBound {
                end: true,
                ..Default::default()
            }),
            mode: Some(sync_range::Mode::Ids(ShortIds { ids: vec![1; 9] })),
        }],
    };
    assert!(
        matches!(from_proto(0, &bad_ids, &limits), Err(Error::Malformed(m)) if m.contains("whole number"))
    );
    let overflow = ReconcileFrame {
        ranges: vec![SyncRange {
            upper: Some(SyncBound {
                created_delta_ms: i64::MAX,
                ..Default::default()
            }),
            mode: Some(sync_range::Mode::Skip(true)),
        }],
    };
    assert!(from_proto(10, &overflow, &limits).is_err());
}

#[test]
fn wanted_ids_we_do_not_hold_are_counted_not_invented() {
    let limits = Limits::default();
    let view = BucketView::of_items(1000, (0..10).map(|i| Item::new(key(i * 100, i as u64))));
    let held = Item::new(key(300, 3)).short();
    let step = process(
        0,
        &Frame {
            ranges: vec![Range {
                upper: Key::END,
                mode: Mode::Want(vec![held, [9; SHORT], [8; SHORT]]),
            }],
        },
        &view,
        &limits,
    )
    .unwrap();
    assert_eq!(step.wanted, vec![key(300, 3)]);
    assert_eq!(step.unknown_wanted, 2);
    assert!(step.reply.is_done());
}

#[test]
fn wire_round_trip_keeps_frames() {
    let b = spread(3_000, 1_000_000);
    let mut side = Side::new(10_000, &b);
    let first = side.first(0);
    let empty = Side::new(10_000, &BTreeSet::new());
    let step = process(0, &first, &empty.view, &Limits::default()).unwrap();
    let frames = [first, step.reply];
    for f in frames {
        let back = from_proto(0, &to_proto(0, &f), &Limits::default()).unwrap();
        assert_eq!(back, f);
    }
}

#[test]
fn bounds_are_short_and_ordered() {
    let a = key(10, 5);
    let mut b = a;
    b.id[12] = 9;
    let bound = b.bound_after(&a);
    assert!(a < bound && bound <= b);
    assert_eq!(&bound.id[13..], &[0, 0, 0]);
    assert_eq!(key(11, 0).bound_after(&a), Key::at(11));
}

fn set_strategy() -> impl Strategy<Value = (BTreeSet<Key>, BTreeSet<Key>, i64)> {
    (
        proptest::collection::btree_set((0i64..50_000, 0u64..8), 0..600),
        proptest::collection::btree_set((0i64..50_000, 0u64..8), 0..600),
        proptest::collection::btree_set((0i64..50_000, 0u64..8), 0..40),
        prop_oneof![Just(1i64), Just(97), Just(5_000), Just(1_000_000)],
    )
        .prop_map(|(only_a, only_b, shared, width)| {
            let k = |(t, n): (i64, u64)| key(t, n);
            let mut a: BTreeSet<Key> = shared.iter().copied().map(k).collect();
            let mut b = a.clone();
            // Mostly shared sets, with random differences on each side.
            for (i, x) in only_a.into_iter().enumerate() {
                a.insert(k(x));
                if i % 3 != 0 {
                    b.insert(k(x));
                }
            }
            for (i, x) in only_b.into_iter().enumerate() {
                b.insert(k(x));
                if i % 4 != 0 {
                    a.insert(k(x));
                }
            }
            (a, b, width)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Any two sets converge, and traffic is bounded by the difference:
    /// at most (d + 1) · branch · depth ranges of at most 40 bytes, plus
    /// the id lists.
    #[test]
    fn any_two_sets_converge_with_traffic_bounded_by_the_difference((a, b, width) in set_strategy()) {
        let limits = Limits { branch: 4, ids_threshold: 8, ..Limits::default() };
        let out = check_converges(&a, &b, width, &limits);
        let d = a.symmetric_difference(&b).count();
        let n = a.len().max(b.len()).max(2) as f64;
        let depth = n.log(limits.branch as f64).ceil() as usize + 2;
        let bound = 64 + (d + 1) * depth * limits.branch * 40 + d * 24 * depth;
        prop_assert!(out.bytes <= bound, "{} bytes for d={d}, n={n}: bound {bound}", out.bytes);
        if d == 0 {
            prop_assert_eq!(out.round_trips, 1);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// With a tiny load budget and views rebuilt every round (as the
    /// service runs), any two sets still converge exactly.
    #[test]
    fn a_tiny_load_budget_still_converges((a, b, width) in set_strategy()) {
        let limits = Limits { branch: 4, ids_threshold: 8, max_load: 150, ..Limits::default() };
        let mut sa = Side::new(width, &a);
        let mut sb = Side::new(width, &b);
        sa.fresh = true;
        sb.fresh = true;
        let (out, _, _) = exchange_with(sa, sb, &limits);
        let a_only: BTreeSet<Key> = a.difference(&b).copied().collect();
        let b_only: BTreeSet<Key> = b.difference(&a).copied().collect();
        prop_assert_eq!(out.a_sends, a_only);
        prop_assert_eq!(out.b_sends, b_only);
    }
}

/// A reply is full after about `max_ranges / branch` split ranges: the
/// rest of the frame is folded before anything is loaded for it, so a round
/// asks for the buckets of the ranges it answers only (not of every
/// mismatched range in the frame, which `fold` would throw away).
#[test]
fn a_full_reply_loads_nothing_for_the_ranges_it_folds() {
    let limits = Limits {
        max_ranges: 64,
        branch: 4,
        ids_threshold: 2,
        ..Limits::default()
    };
    let width = 1_000;
    // 64 buckets of 20 items; B lacks one item in every bucket.
    let a = spread(1_280, 64 * width);
    let b: BTreeSet<Key> = a.iter().copied().filter(|k| k.id[15] % 20 != 7).collect();
    let va = BucketView::of_items(width, a.iter().map(|k| Item::new(*k)));
    // A's frame: one fingerprint range per bucket (every one differs), as
    // many as a frame may hold.
    let mut ranges: Vec<Range> = (0..64)
        .map(|bk| {
            let mut m = Missing::new();
            let acc = va
                .summary(&Key::at(bk * width), &Key::at((bk + 1) * width), &mut m)
                .expect("all loaded");
            Range {
                upper: Key::at((bk + 1) * width),
                mode: Mode::Fingerprint(acc.fingerprint()),
            }
        })
        .collect();
    ranges.last_mut().unwrap().upper = Key::END;
    let frame = Frame { ranges };
    let sb = Side::new(width, &b);
    let need = match process(0, &frame, &sb.view, &limits) {
        Err(Error::Need(buckets)) => buckets,
        other => panic!("expected a load request, got {other:?}"),
    };
    assert!(
        need.len() <= limits.max_ranges / limits.branch + 2,
        "asked for {} buckets for a reply of at most {} ranges",
        need.len(),
        limits.max_ranges
    );
    // Loading what it asks for (again, as the service does) completes the
    // step with few buckets loaded, and the reply is within the cap.
    let mut view = sb.view.clone();
    let mut loaded = 0;
    let mut ask = need;
    let step = loop {
        for bk in ask {
            view.load(bk, sb.items.get(&bk).cloned().unwrap_or_default());
            loaded += 1;
        }
        match process(0, &frame, &view, &limits) {
            Ok(step) => break step,
            Err(Error::Need(more)) => ask = more,
            Err(e) => panic!("{e}"),
        }
    };
    assert!(
        loaded <= limits.max_ranges / limits.branch + 4,
        "{loaded} of 64 buckets loaded in all"
    );
    assert!(step.reply.ranges.len() <= limits.max_ranges);
    assert_eq!(step.reply.ranges.last().unwrap().upper, Key::END);
}

#[test]
fn audiences_put_relay_copies_of_relayable_messages_in_the_links_set() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let to_c = s(&["node-c"]);
    // A broadcast: every holder, one audience.
    for me in ["node-a", "node-b", "node-c"] {
        assert_eq!(
            audiences(me, "node-a", &[], Tlp::Green, false, true),
            s(&[BROADCAST])
        );
    }
    // GREEN a -> c, not encrypted: the relay b lists it as the parties do,
    // so the b-c link reconciles it.
    for me in ["node-a", "node-b", "node-c"] {
        assert_eq!(
            audiences(me, "node-a", &to_c, Tlp::Green, false, true),
            s(&[RELAYED]),
            "{me}"
        );
    }
    // End-to-end encrypted (AMBER, or GREEN sealed): parties only; the
    // relay lists nothing (it drops its ciphertext once delivered).
    for (tlp, enc) in [(Tlp::Amber, true), (Tlp::Green, true), (Tlp::Red, true)] {
        assert!(audiences("node-b", "node-a", &to_c, tlp, enc, true).is_empty());
        assert_eq!(
            audiences("node-c", "node-a", &to_c, tlp, enc, true),
            s(&["node-a"])
        );
        assert_eq!(
            audiences(
                "node-a",
                "node-a",
                &s(&["node-c", "node-d"]),
                tlp,
                enc,
                true
            ),
            s(&["node-c", "node-d"])
        );
    }
    // A receipt (GREEN, to the origin) goes back along its message's path
    // only: parties only, as before.
    assert!(
        audiences(
            "node-b",
            "node-c",
            &s(&["node-a"]),
            Tlp::Green,
            false,
            false
        )
        .is_empty()
    );
    assert_eq!(
        audiences(
            "node-a",
            "node-c",
            &s(&["node-a"]),
            Tlp::Green,
            false,
            false
        ),
        s(&["node-c"])
    );
}

#[test]
fn the_difference_counts_every_item_of_a_range_sent_whole() {
    // 10,000 items against none: sent as whole ranges (more than
    // max_compare each); the count is the items, not the ranges.
    let a = spread(10_000, 10_000_000);
    let none = BTreeSet::new();
    let out = check_converges(&a, &none, 1000, &Limits::default());
    assert_eq!(out.a_difference, 10_000);
    let out = check_converges(&none, &a, 1000, &Limits::default());
    assert_eq!(out.b_difference, 10_000);
    // Mixed: every side counts at least what the other lacked of its own.
    let b: BTreeSet<Key> = a.iter().copied().filter(|k| k.id[15] % 3 != 0).collect();
    let out = check_converges(&a, &b, 1000, &Limits::default());
    assert!(out.a_difference >= (a.len() - b.len()) as u64, "{out:?}");
}

#[test]
fn larger_frames_take_fewer_rounds_and_smaller_ones_are_refused_beyond_their_cap() {
    let b = spread(200_000, 30 * 86_400_000);
    let mut a = b.clone();
    let mut x: u64 = 11;
    for _ in 0..1000 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let k = *b.iter().nth((x >> 33) as usize % b.len()).unwrap();
        a.remove(&k);
    }
    let legacy = check_converges(&a, &b, 600_000, &Limits::default());
    let wide = Limits {
        max_ranges: MAX_RANGES,
        accept_ranges: MAX_RANGES,
        ..Limits::default()
    };
    let raised = check_converges(&a, &b, 600_000, &wide);
    assert!(
        raised.round_trips * 2 <= legacy.round_trips,
        "{} round trips with {MAX_RANGES} ranges, {} with {LEGACY_RANGES}",
        raised.round_trips,
        legacy.round_trips
    );
    // A node that announced nothing accepts LEGACY_RANGES, and a frame
    // beyond what a node accepts is refused naming the count.
    let big = Frame {
        ranges: (1..=LEGACY_RANGES as i64 + 1)
            .map(|i| Range {
                upper: if i == LEGACY_RANGES as i64 + 1 {
                    Key::END
                } else {
                    Key::at(i)
                },
                mode: Mode::Skip,
            })
            .collect(),
    };
    let e = validate(0, &big, &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("1025 ranges; at most 1024"), "{e}");
    validate(0, &big, &wide).unwrap();
    let wire = to_proto(0, &big);
    assert!(from_proto(0, &wire, &Limits::default()).is_err());
    assert_eq!(from_proto(0, &wire, &wide).unwrap(), big);
}

#[test]
fn replies_shrink_to_the_receivers_byte_limit_and_still_converge() {
    let b = spread(60_000, 30 * 86_400_000);
    let a: BTreeSet<Key> = b.iter().copied().filter(|k| k.id[15] % 7 != 0).collect();
    let wide = Limits {
        max_ranges: MAX_RANGES,
        accept_ranges: MAX_RANGES,
        ..Limits::default()
    };
    // Unbounded, some reply passes 16 KiB (so the bound below is felt).
    let (_, sa, sb) = exchange_with(Side::new(600_000, &a), Side::new(600_000, &b), &wide);
    assert!(
        sa.largest.max(sb.largest) > 16 * 1024,
        "{} {}",
        sa.largest,
        sb.largest
    );
    // Bounded to 16 KiB: every reply fits, and the sets converge.
    let (mut sa, mut sb) = (Side::new(600_000, &a), Side::new(600_000, &b));
    sa.max_bytes = 16 * 1024;
    sb.max_bytes = 16 * 1024;
    let (out, sa, sb) = exchange_with(sa, sb, &wide);
    assert!(
        sa.largest <= 16 * 1024 && sb.largest <= 16 * 1024,
        "{} {}",
        sa.largest,
        sb.largest
    );
    let b_only: BTreeSet<Key> = b.difference(&a).copied().collect();
    assert_eq!(out.b_sends, b_only);
    assert!(out.a_sends.is_empty());
}

/// The bench's case in memory (`cargo test --lib sim_bench -- --ignored
/// --nocapture`, SIM_N / SIM_M items / missing): round trips, bytes and items
/// loaded per side, with views rebuilt every round and the service's limits.
#[test]
#[ignore]
fn sim_bench() {
    let n: u64 = std::env::var("SIM_N").map_or(1_000_000, |v| v.parse().unwrap());
    let m: usize = std::env::var("SIM_M").map_or(1_000, |v| v.parse().unwrap());
    let width: i64 = std::env::var("SIM_W").map_or(600_000, |v| v.parse().unwrap());
    let a = spread(n, 20 * 86_400_000);
    let mut b = a.clone();
    let mut x: u64 = 11;
    let keys: Vec<Key> = a.iter().copied().collect();
    while a.len() - b.len() < m {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        b.remove(&keys[(x >> 33) as usize % keys.len()]);
    }
    let limits = Limits {
        max_ranges: MAX_RANGES,
        accept_ranges: MAX_RANGES,
        ..Limits::default()
    };
    // b initiates (as in the bench); a answers.
    let mut sb = Side::new(width, &b);
    let mut sa = Side::new(width, &a);
    sb.fresh = true;
    sa.fresh = true;
    sb.max_bytes = 320 * 1024 - 1024;
    sa.max_bytes = 4 * 1024 * 1024 - 1024;
    let count = |s: &Side| -> usize { s.view.loaded_items() };
    let mut frame = sb.first(0);
    let (mut la, mut lb, mut bytes) = (0usize, 0usize, 0usize);
    let mut found = 0u64;
    for round in 1..=200 {
        bytes += to_proto(0, &frame).encoded_len();
        let ra = sa.step(0, &frame, &limits).expect("a answers");
        la += count(&sa);
        found += ra.they_lack();
        bytes += to_proto(0, &ra.reply).encoded_len();
        let rb = sb.step(0, &ra.reply, &limits).expect("b answers");
        lb += count(&sb);
        eprintln!(
            "round {round}: ranges {} / {}, loaded a {} b {}, found {found}",
            frame.ranges.len(),
            ra.reply.ranges.len(),
            count(&sa),
            count(&sb)
        );
        if rb.reply.is_done() {
            eprintln!("done: {round} rounds, {bytes} bytes, loaded a {la} b {lb}, found {found}");
            assert_eq!(found as usize, m);
            return;
        }
        frame = rb.reply;
    }
    panic!("not done");
}

/// A hostile frame whose fingerprint ranges each start inside a bucket
/// (after a skipped range ending there) cannot make a round over its budget
/// load those buckets one after another: past the budget, a range the sums
/// cannot answer ends the reply without reading more.
#[test]
fn ranges_starting_inside_unread_buckets_keep_a_round_within_its_budget() {
    let limits = Limits {
        max_load: 150,
        ..Limits::default()
    };
    let width = 1_000;
    // 100 buckets of 100 items.
    let b = spread(10_000, 100 * width);
    let sb = Side::new(width, &b);
    let bogus = Mode::Fingerprint([7; FINGERPRINT]);
    let mut ranges = vec![
        Range {
            upper: Key::at(500),
            mode: bogus.clone(),
        },
        Range {
            upper: Key::at(width),
            mode: bogus.clone(),
        },
    ];
    for k in 1..99 {
        ranges.push(Range {
            upper: Key::at(k * width + 500),
            mode: Mode::Skip,
        });
        ranges.push(Range {
            upper: Key::at((k + 1) * width),
            mode: bogus.clone(),
        });
    }
    ranges.push(Range {
        upper: Key::END,
        mode: Mode::Skip,
    });
    let frame = Frame { ranges };
    let mut view = sb.view.clone();
    let mut passes = 0;
    let step = loop {
        match process(0, &frame, &view, &limits) {
            Ok(step) => break step,
            Err(Error::Need(more)) => {
                passes += 1;
                for bk in more {
                    view.load(bk, sb.items.get(&bk).cloned().unwrap_or_default());
                }
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(
        view.loaded_items() <= 150 + 2 * 100,
        "{} items loaded in {passes} passes for a budget of 150",
        view.loaded_items()
    );
    assert!(passes <= 3, "{passes} passes");
    assert_eq!(step.reply.ranges.last().unwrap().upper, Key::END);
}

/// Only the canonical form of a UUID gives its bytes: upper case, braces,
/// a URN, no hyphens or anything else is `None` (the bytes could not give
/// the id back).
#[test]
fn only_canonical_ids_give_bytes() {
    let id = "0192f0c1-7a2b-7c3d-8e4f-a0b1c2d3e4f5";
    let bytes = id_bytes(id).expect("canonical");
    assert_eq!(uuid::Uuid::from_bytes(bytes).to_string(), id);
    for other in [
        "0192F0C1-7A2B-7C3D-8E4F-A0B1C2D3E4F5",
        "{0192f0c1-7a2b-7c3d-8e4f-a0b1c2d3e4f5}",
        "urn:uuid:0192f0c1-7a2b-7c3d-8e4f-a0b1c2d3e4f5",
        "0192f0c17a2b7c3d8e4fa0b1c2d3e4f5",
        "0192f0c1-7a2b-7c3d-8e4f-a0b1c2d3e4f",
        "not an id",
        "",
    ] {
        assert_eq!(id_bytes(other), None, "{other}");
    }
}

/// The one-pass reading of an id agrees with its definition (parse as a
/// UUID, then the lower-case hyphenated encoding must be the text again) on
/// canonical ids, every one-byte change of them (each byte value at each
/// place, those that stay UTF-8), every length up to 40 and random texts of
/// the id's alphabet.
#[test]
fn id_bytes_agrees_with_parsing_and_encoding_again() {
    use rand::{Rng, SeedableRng};
    fn by_definition(id: &str) -> Option<[u8; 16]> {
        let u = uuid::Uuid::parse_str(id).ok()?;
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        (*u.hyphenated().encode_lower(&mut buf) == *id).then_some(*u.as_bytes())
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(36);
    let mut tried = 0usize;
    let mut canonical = 0usize;
    let mut check = |text: &[u8]| {
        let Ok(s) = std::str::from_utf8(text) else {
            return;
        };
        let want = by_definition(s);
        assert_eq!(id_bytes(s), want, "{s:?}");
        tried += 1;
        canonical += usize::from(want.is_some());
    };
    for _ in 0..64 {
        let id = uuid::Uuid::from_bytes(rng.random()).to_string();
        check(id.as_bytes());
        for place in 0..id.len() {
            for b in 0..=255u8 {
                let mut t = id.clone().into_bytes();
                t[place] = b;
                check(&t);
            }
        }
        check(id.to_uppercase().as_bytes());
        check(id.replace('-', "").as_bytes());
        check(format!("{{{id}}}").as_bytes());
    }
    let alphabet = b"0123456789abcdefABCDEF-{}:xg ";
    for len in 0..=40 {
        for _ in 0..200 {
            let t: Vec<u8> = (0..len)
                .map(|i| {
                    if len == 36 && matches!(i, 8 | 13 | 18 | 23) && rng.random_bool(0.9) {
                        b'-'
                    } else {
                        alphabet[rng.random_range(0..alphabet.len())]
                    }
                })
                .collect();
            check(&t);
        }
    }
    assert!(
        tried > 300_000 && canonical > 64,
        "{tried} tried, {canonical} canonical"
    );
}

/// Keys of `set` outside the buckets (of `width`) that hold more than
/// `limit` items on either side.
fn outside_large(
    set: &BTreeSet<Key>,
    a: &BTreeSet<Key>,
    b: &BTreeSet<Key>,
    width: i64,
    limit: u64,
) -> BTreeSet<Key> {
    let mut counts: BTreeMap<(bool, i64), u64> = BTreeMap::new();
    for (side, keys) in [(true, a), (false, b)] {
        for k in keys {
            *counts
                .entry((side, k.created_ms.div_euclid(width)))
                .or_default() += 1;
        }
    }
    let large = |k: &Key| {
        let bucket = k.created_ms.div_euclid(width);
        [true, false]
            .iter()
            .any(|s| counts.get(&(*s, bucket)).is_some_and(|n| *n > limit))
    };
    set.iter().filter(|k| !large(k)).copied().collect()
}

/// A bucket too large to read (a flood of messages created within one
/// bucket's span, on both sides, differing) is skipped; every difference
/// elsewhere is still found, in a few rounds, and nothing in it is sent.
/// Before, a round that needed such a bucket failed, and with it the whole
/// link's reconciliation.
#[test]
fn a_bucket_too_large_to_read_is_skipped_and_the_rest_converges() {
    let width = 1_000;
    let limits = Limits {
        branch: 4,
        ids_threshold: 8,
        ..Limits::default()
    };
    let shared = spread(2_000, 40_000);
    let flood = |from: u64, n: u64| -> BTreeSet<Key> {
        (from..from + n)
            .map(|i| key(25_000 + (i as i64 % 1_000), 1_000_000 + i))
            .collect()
    };
    let mut a = shared.clone();
    let mut b = shared.clone();
    // Bucket 25: 400 shared, 20 only at A, 10 only at B.
    a.extend(flood(0, 420));
    b.extend(flood(0, 400));
    b.extend(flood(5_000, 10));
    // Differences elsewhere, before and after it.
    for i in 0..30 {
        a.insert(key(i * 1_300 + 7, 9_000 + i as u64));
        b.insert(key(i * 1_100 + 3, 8_000 + i as u64));
    }
    for (label, since) in [("whole set", 0), ("since inside the large bucket", 25_500)] {
        let set = |s: &BTreeSet<Key>| -> BTreeSet<Key> {
            s.iter()
                .filter(|k| k.created_ms >= since)
                .copied()
                .collect()
        };
        let (a_in, b_in) = (set(&a), set(&b));
        let mut sa = Side::new(width, &a);
        let mut sb = Side::new(width, &b);
        for s in [&mut sa, &mut sb] {
            s.too_large = Some(300);
            s.fresh = true;
        }
        let (out, sa, sb) = exchange_since(since, sa, sb, &limits);
        let a_only: BTreeSet<Key> = a_in.difference(&b_in).copied().collect();
        let b_only: BTreeSet<Key> = b_in.difference(&a_in).copied().collect();
        assert_eq!(
            out.a_sends,
            outside_large(&a_only, &a, &b, width, 300),
            "{label}: A learns what B lacks outside the large bucket"
        );
        assert_eq!(
            out.b_sends,
            outside_large(&b_only, &a, &b, width, 300),
            "{label}: B learns what A lacks outside the large bucket"
        );
        assert_eq!(
            out.a_sends.len(),
            if since == 0 { 30 } else { 10 },
            "{label}"
        );
        assert!(
            out.round_trips <= 8,
            "{label}: {} round trips",
            out.round_trips
        );
        assert_eq!(
            sa.marked
                .union(&sb.marked)
                .copied()
                .collect::<BTreeSet<_>>(),
            BTreeSet::from([25]),
            "{label}"
        );
        assert!(
            sa.largest_bucket <= 300 && sb.largest_bucket <= 300,
            "{label}"
        );
    }
}

/// The bucket is too large on one side only (the other holds fewer of that
/// span, and reads them): the other side's parts of it are skipped by the
/// first, the rest converges.
#[test]
fn a_bucket_too_large_on_one_side_only_is_skipped_there() {
    let width = 1_000;
    let limits = Limits {
        branch: 4,
        ids_threshold: 8,
        ..Limits::default()
    };
    let mut a = spread(500, 20_000);
    let mut b = a.clone();
    for i in 0..400u64 {
        let k = key(7_000 + (i as i64 % 997), 50_000 + i);
        a.insert(k);
        if i % 3 == 0 {
            b.insert(k);
        }
    }
    a.insert(key(15_001, 1));
    b.insert(key(2_002, 2));
    let mut sa = Side::new(width, &a);
    let mut sb = Side::new(width, &b);
    sa.too_large = Some(300);
    sb.too_large = Some(300);
    let (out, sa, sb) = exchange_with(sa, sb, &limits);
    assert_eq!(out.a_sends, BTreeSet::from([key(15_001, 1)]));
    assert_eq!(out.b_sends, BTreeSet::from([key(2_002, 2)]));
    assert_eq!(
        (sa.marked, sb.marked),
        (BTreeSet::from([7]), BTreeSet::new())
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// With buckets too large to read (some, all or none, on either side),
    /// an exchange still ends; what each side learns is exactly the
    /// difference outside those buckets, plus, within them, only items the
    /// other side lacks.
    #[test]
    fn buckets_too_large_to_read_never_stall_an_exchange(
        (a, b, width) in set_strategy(),
        limit in prop_oneof![Just(3u64), Just(20), Just(60), Just(250)],
        tiny_budget in any::<bool>(),
    ) {
        let limits = Limits {
            branch: 4,
            ids_threshold: 8,
            max_load: if tiny_budget { 150 } else { Limits::default().max_load },
            ..Limits::default()
        };
        let mut sa = Side::new(width, &a);
        let mut sb = Side::new(width, &b);
        for s in [&mut sa, &mut sb] {
            s.too_large = Some(limit);
            s.fresh = true;
        }
        let (out, _, _) = exchange_with(sa, sb, &limits);
        let a_only: BTreeSet<Key> = a.difference(&b).copied().collect();
        let b_only: BTreeSet<Key> = b.difference(&a).copied().collect();
        prop_assert!(out.a_sends.is_subset(&a_only));
        prop_assert!(out.b_sends.is_subset(&b_only));
        prop_assert!(outside_large(&a_only, &a, &b, width, limit).is_subset(&out.a_sends));
        prop_assert!(outside_large(&b_only, &a, &b, width, limit).is_subset(&out.b_sends));
    }
}
