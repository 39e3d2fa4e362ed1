//! Property: the picture is a function of the set of contributions. Any
//! delivery order, with any duplicates, gives the same picture; and two nodes
//! holding the same set show the same picture (same digest).
use super::picture_tests::{alert_c, id, link_c, merge_c, opener, sighting_c};
use super::*;
use crate::proto::v1::{Nis2Sector, Severity, Tlp};
use proptest::prelude::*;

/// A campaign with every kind of rule in play: three partners with different
/// TLPs, a refused (wider) sighting, an unreadable one, a merge agreed by both
/// openers, a one-sided one, a link and a cycle.
fn campaign() -> Vec<Contribution> {
    let mut hidden = sighting_c(12, "c", 1, Tlp::Red, &["a"], 220, Severity::Critical);
    hidden.body = None;
    let amber = |mut c: Contribution| {
        c.tlp = Tlp::Amber;
        c.recipients = vec!["a".into(), "b".into()];
        c
    };
    vec![
        opener(1, "a", Tlp::Green, &[], 100),
        sighting_c(10, "b", 1, Tlp::Green, &[], 150, Severity::Medium),
        sighting_c(11, "c", 1, Tlp::Amber, &["a", "b"], 200, Severity::High),
        hidden,
        alert_c(
            13,
            "b",
            1,
            Tlp::Green,
            &[],
            250,
            Severity::Critical,
            Nis2Sector::Transport,
            "PL",
            &["evil.example", "b.example"],
        ),
        opener(2, "b", Tlp::Green, &[], 120),
        sighting_c(14, "c", 2, Tlp::Green, &[], 260, Severity::Low),
        merge_c(15, "a", 1, 2, 300),
        merge_c(16, "b", 2, 1, 310),
        opener(3, "c", Tlp::Amber, &["a", "b"], 130),
        sighting_c(17, "a", 3, Tlp::Green, &[], 320, Severity::Low),
        link_c(18, "a", 1, 3, 330),
        amber(link_c(19, "c", 3, 1, 340)),
        amber(merge_c(20, "c", 3, 1, 350)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_order_and_duplicates_give_the_same_picture(
        order in Just(campaign()).prop_shuffle(),
        dups in proptest::collection::vec(0usize..14, 0..10),
        root in prop_oneof![Just(1u32), Just(2u32), Just(3u32)],
    ) {
        let reference = picture(&id(root), &campaign()).unwrap();
        let mut held = order.clone();
        for d in dups {
            held.push(order[d % order.len()].clone());
        }
        let s = picture(&id(root), &held).unwrap();
        prop_assert_eq!(&s.digest, &reference.digest);
        prop_assert_eq!(s, reference);
    }

    #[test]
    fn two_nodes_with_the_same_set_agree(
        a in Just(campaign()).prop_shuffle(),
        b in Just(campaign()).prop_shuffle(),
    ) {
        let sa = picture(&id(1), &a).unwrap();
        let sb = picture(&id(1), &b).unwrap();
        prop_assert_eq!(sa.digest, sb.digest);
    }

    #[test]
    fn a_subset_never_shows_more_than_it_holds(
        keep in proptest::collection::vec(any::<bool>(), 14),
    ) {
        let all = campaign();
        let held: Vec<Contribution> = all
            .iter()
            .zip(keep.iter().chain(std::iter::repeat(&true)))
            .filter(|(c, k)| **k || c.message_id == id(1))
            .map(|(c, _)| c.clone())
            .collect();
        let s = picture(&id(1), &held).unwrap();
        // Every partner shown as affected has a readable alert or sighting held.
        for p in &s.partners_affected {
            prop_assert!(held.iter().any(|c| &c.origin == p && c.body.is_some()));
        }
        prop_assert_eq!(s.digest.clone(), digest(&s));
    }
}

#[test]
fn campaign_picture_is_what_the_rules_say() {
    let s = picture(&id(1), &campaign()).unwrap();
    assert_eq!(s.merged, [id(2)], "merge agreed by both openers");
    assert_eq!(s.parts, [id(3)]);
    assert!(
        s.refused.iter().any(|r| r.reason.contains("cycle")),
        "{:?}",
        s.refused
    );
    assert!(
        s.refused
            .iter()
            .any(|r| r.message_id == id(17) && r.reason.contains("wider")),
        "{:?}",
        s.refused
    );
    assert_eq!(s.restricted.len(), 1);
    assert_eq!(s.pending_merges.len(), 1, "c's one-sided merge");
}
