//! Tests of the roster rules: every refusal the module documents, trust
//! derivation, diffs, armor, drafts; and property tests of the quorum rule
//! (accepted exactly when both thresholds are met) and of tampering (no
//! altered roster is ever accepted).
use super::*;
use crate::domain::envelope::ms_to_ts;
use crate::proto::v1::MessageKind;
use ed25519_dalek::SigningKey;
use proptest::prelude::*;

const NOW: i64 = 1_800_000_000_000;
const DAY: i64 = 86_400_000;

fn sk(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn steward(id: &str, seed: u8) -> Steward {
    Steward {
        id: id.into(),
        public_key: sk(seed).verifying_key().as_bytes().to_vec(),
    }
}

/// Stewards s1..s5 use seeds 101..105; member keys seeds 1..50.
fn stewards(n: u8) -> Vec<Steward> {
    (1..=n)
        .map(|i| steward(&format!("s{i}"), 100 + i))
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
        tls_cas: vec![],
        tls_pins: vec![vec![seed; 32]],
        display_name: format!("CERT {id}"),
        country: "EE".into(),
        contact: "soc@example.org".into(),
        exercise_only: false,
    }
}

/// Version 1 of "eu-test": members a, b, c; stewards s1-s3, threshold 2.
fn v1() -> Roster {
    let mut r = draft::new("eu-test", stewards(3), 2, NOW - DAY, NOW + 365 * DAY).unwrap();
    for (id, seed) in [("node-a", 1), ("node-b", 2), ("node-c", 3)] {
        draft::add_member(&mut r, member(id, seed)).unwrap();
    }
    r
}

/// `r` signed by the stewards with the given seeds.
fn signed(r: &Roster, seeds: &[u8]) -> Document {
    let mut s = draft::unsigned(r);
    for seed in seeds {
        sign(&mut s, &sk(*seed));
    }
    parse(&s.encode_to_vec()).unwrap()
}

fn accepted_v1() -> Anchor {
    let a = check_first(signed(&v1(), &[101, 102]), None, NOW).unwrap();
    Anchor::Current(Box::new(a))
}

fn kind(r: Result<Verdict, Refusal>) -> RefusalKind {
    r.expect_err("refused").kind
}

#[test]
fn a_first_roster_needs_its_own_quorum_and_is_not_expired() {
    let a = check_first(signed(&v1(), &[101, 103]), None, NOW).unwrap();
    assert_eq!(a.signed_by, vec!["s1", "s3"]);
    assert_eq!(a.version(), 1);
    let e = check_first(signed(&v1(), &[101]), None, NOW).unwrap_err();
    assert_eq!(e.kind, RefusalKind::TooFewSignatures);
    assert!(
        e.reason
            .contains("signed by 1 of version 1's stewards (s1); 2 are needed"),
        "{e}"
    );
    let e = check_first(signed(&v1(), &[101, 102]), None, NOW + 400 * DAY).unwrap_err();
    assert_eq!(e.kind, RefusalKind::Expired);
    assert!(e.reason.contains("introduces nothing"), "{e}");
    // The same signature twice counts once.
    let mut s = draft::unsigned(&v1());
    sign(&mut s, &sk(101));
    let dup = s.signatures[0].clone();
    s.signatures.push(dup);
    let doc = parse(&s.encode_to_vec()).unwrap();
    assert_eq!(
        check_first(doc, None, NOW).unwrap_err().kind,
        RefusalKind::TooFewSignatures
    );
}

#[test]
fn pinned_stewards_must_sign_the_first_roster() {
    let pinned = Quorum::pinned(stewards(3), 2).unwrap();
    let anchor = Anchor::Pinned(pinned.clone());
    assert!(matches!(
        check(&anchor, signed(&v1(), &[101, 102]), NOW),
        Ok(Verdict::Apply(_))
    ));
    // A roster of other stewards, properly self-signed, is refused.
    let mut other = v1();
    draft::set_stewards(&mut other, vec![steward("x1", 120), steward("x2", 121)], 2).unwrap();
    let e = check(&anchor, signed(&other, &[120, 121]), NOW).unwrap_err();
    assert_eq!(e.kind, RefusalKind::TooFewSignatures);
    assert!(e.reason.contains("the configured (pinned) stewards"), "{e}");
    assert!(Quorum::pinned(stewards(2), 3).is_err());
}

#[test]
fn non_steward_and_bad_signatures_refuse_the_roster_whole() {
    let e = check_first(signed(&v1(), &[101, 102, 55]), None, NOW).unwrap_err();
    assert_eq!(e.kind, RefusalKind::NonSteward);
    assert!(e.reason.contains("not a steward of version 1"), "{e}");
    // A valid signature made over other bytes does not verify.
    let mut s = draft::unsigned(&v1());
    sign(&mut s, &sk(101));
    sign(&mut s, &sk(102));
    let mut other = v1();
    other.members[0].contact = "changed@example.org".into();
    s.roster = other.encode_to_vec();
    let e = check_first(parse(&s.encode_to_vec()).unwrap(), None, NOW).unwrap_err();
    assert_eq!(e.kind, RefusalKind::BadSignature);
    assert!(e.reason.contains("does not verify"), "{e}");
    // A signature of the wrong length is malformed.
    let mut s = draft::unsigned(&v1());
    sign(&mut s, &sk(101));
    s.signatures[0].signature.pop();
    let e = check_first(parse(&s.encode_to_vec()).unwrap(), None, NOW).unwrap_err();
    assert_eq!(e.kind, RefusalKind::Malformed);
}

#[test]
fn the_next_version_needs_both_quorums() {
    let anchor = accepted_v1();
    let mut v2 = draft::next(&v1().clone(), NOW, NOW + 365 * DAY);
    draft::add_member(&mut v2, member("node-f", 6)).unwrap();
    let Ok(Verdict::Apply(a)) = check(&anchor, signed(&v2, &[102, 103]), NOW) else {
        panic!("v2 signed by 2 of 3 is applied");
    };
    assert_eq!(a.version(), 2);
    assert_eq!(a.signed_by, vec!["s2", "s3"]);
    assert_eq!(a.admitted_by.as_ref().unwrap().version, Some(1));
    // New stewards signing alone: the steward set change lacks the old quorum.
    let mut v2b = draft::next(&v1(), NOW, NOW + 365 * DAY);
    draft::set_stewards(&mut v2b, vec![steward("n1", 130), steward("n2", 131)], 2).unwrap();
    let e = check(&anchor, signed(&v2b, &[130, 131]), NOW).unwrap_err();
    assert_eq!(e.kind, RefusalKind::TooFewSignatures);
    assert!(e.reason.contains("version 1's stewards"), "{e}");
    // With the old quorum too, the handover is accepted.
    assert!(matches!(
        check(&anchor, signed(&v2b, &[130, 131, 101, 102]), NOW),
        Ok(Verdict::Apply(_))
    ));
    // The old quorum alone is not enough when the new stewards do not sign.
    let e = check(&anchor, signed(&v2b, &[101, 102, 103]), NOW).unwrap_err();
    assert_eq!(e.kind, RefusalKind::TooFewSignatures);
    assert!(e.reason.contains("version 2's stewards"), "{e}");
}

#[test]
fn versions_only_increase_and_forks_are_named() {
    let anchor = accepted_v1();
    // The same bytes: a re-flood.
    assert_eq!(
        check(&anchor, signed(&v1(), &[101, 102]), NOW),
        Ok(Verdict::Same)
    );
    assert_eq!(
        check(&anchor, signed(&v1(), &[102, 103]), NOW),
        Ok(Verdict::Same),
        "other signatures over the same bytes are the same roster"
    );
    // Another version 1, signed by the quorum: a fork.
    let mut other = v1();
    draft::add_member(&mut other, member("node-x", 9)).unwrap();
    let e = check(&anchor, signed(&other, &[101, 102]), NOW).unwrap_err();
    assert_eq!(e.kind, RefusalKind::Fork);
    assert!(e.reason.starts_with("FORK"), "{e}");
    // ... and one without the quorum is just a bad roster, not an alarm.
    assert_eq!(
        kind(check(&anchor, signed(&other, &[101]), NOW)),
        RefusalKind::TooFewSignatures
    );
    // A lower version: rollback.
    let Ok(Verdict::Apply(a2)) = check(
        &anchor,
        signed(&draft::next(&v1(), NOW, NOW + DAY), &[101, 102]),
        NOW,
    ) else {
        panic!()
    };
    let anchor2 = Anchor::Current(a2);
    let e = check(&anchor2, signed(&v1(), &[101, 102]), NOW).unwrap_err();
    assert_eq!(e.kind, RefusalKind::Rollback);
    assert!(e.reason.contains("older than the version 2"), "{e}");
}

#[test]
fn a_version_ahead_waits_only_with_its_own_quorum() {
    let anchor = accepted_v1();
    let v2 = draft::next(&v1(), NOW, NOW + DAY);
    let v3 = draft::next(&v2, NOW, NOW + DAY);
    let e = check(&anchor, signed(&v3, &[101, 102]), NOW).unwrap_err();
    assert_eq!(e.kind, RefusalKind::Ahead);
    assert!(e.is_temporary());
    assert!(e.reason.contains("follows version 2"), "{e}");
    assert!(matches!(e.to_rejection(), Rejection::RosterBehind(_)));
    assert_eq!(
        crate::domain::admission::deferrable(&e.to_rejection()),
        Some(0)
    );
    let e = check(&anchor, signed(&v3, &[101]), NOW).unwrap_err();
    assert_eq!(e.kind, RefusalKind::TooFewSignatures);
    assert!(!e.is_temporary());
    assert_eq!(
        crate::domain::admission::deferrable(&e.to_rejection()),
        None
    );
}

#[test]
fn expired_and_foreign_rosters_introduce_nothing() {
    let anchor = accepted_v1();
    let v2 = draft::next(&v1(), NOW - 10 * DAY, NOW - DAY);
    assert_eq!(
        kind(check(&anchor, signed(&v2, &[101, 102]), NOW)),
        RefusalKind::Expired
    );
    let mut f = draft::next(&v1(), NOW, NOW + DAY);
    f.federation = "other-fed".into();
    let e = check(&anchor, signed(&f, &[101, 102]), NOW).unwrap_err();
    assert_eq!(e.kind, RefusalKind::WrongFederation);
    assert!(e.reason.contains("\"other-fed\""), "{e}");
}

#[test]
fn oversized_and_malformed_bytes_are_refused() {
    let e = parse(&vec![0u8; MAX_ROSTER_BYTES + 1]).unwrap_err();
    assert_eq!(e.kind, RefusalKind::Oversized);
    let e = parse(b"\xff\xff\xff\xff").unwrap_err();
    assert_eq!(e.kind, RefusalKind::Malformed);
    let s = SignedRoster {
        roster: b"\x0a\xffgarbage".to_vec(),
        signatures: vec![],
    };
    assert_eq!(
        parse(&s.encode_to_vec()).unwrap_err().kind,
        RefusalKind::Malformed
    );
    let s = SignedRoster {
        roster: v1().encode_to_vec(),
        signatures: vec![RosterSignature::default(); MAX_SIGNATURES + 1],
    };
    assert!(
        parse(&s.encode_to_vec())
            .unwrap_err()
            .reason
            .contains("signatures")
    );
}

#[test]
fn the_shape_rules_name_the_field() {
    let bad = |f: &dyn Fn(&mut Roster), want: &str| {
        let mut r = v1();
        f(&mut r);
        let e = check_shape(&r).unwrap_err();
        assert!(e.contains(want), "{want}: {e}");
        let e = parse(&draft::unsigned(&r).encode_to_vec()).unwrap_err();
        assert_eq!(e.kind, RefusalKind::Malformed);
    };
    bad(&|r| r.federation = "Bad Name".into(), "federation");
    bad(&|r| r.version = 0, "version");
    bad(&|r| r.expires = r.issued, "expires: must be after issued");
    bad(&|r| r.issued = None, "issued: required");
    bad(&|r| r.threshold = 0, "threshold");
    bad(&|r| r.threshold = 4, "threshold");
    bad(&|r| r.stewards.clear(), "stewards");
    bad(&|r| r.stewards[1].id = "s1".into(), "listed twice");
    bad(
        &|r| r.stewards[1].public_key = r.stewards[0].public_key.clone(),
        "another steward",
    );
    bad(&|r| r.stewards[0].public_key = vec![1; 5], "32-byte");
    // The identity point (a weak key: anyone can sign for it).
    let mut weak = vec![0u8; 32];
    weak[0] = 1;
    let w = weak.clone();
    bad(
        &move |r| r.stewards[0].public_key = w.clone(),
        "stewards[0].public_key: a weak Ed25519 key",
    );
    bad(
        &move |r| r.members[0].signing_keys[0].public_key = weak.clone(),
        "members[0].signing_keys[0].public_key: a weak Ed25519 key",
    );
    bad(
        &|r| r.members[1].id = "node-a".into(),
        "members[1].id: node-a is listed twice",
    );
    bad(
        &|r| r.members[1].signing_keys = r.members[0].signing_keys.clone(),
        "is listed for node-a too",
    );
    bad(
        &|r| r.members[0].signing_keys[0].public_key = r.stewards[0].public_key.clone(),
        "steward's key",
    );
    bad(&|r| r.members[0].signing_keys.clear(), "signing_keys");
    bad(
        &|r| {
            r.members[0].tls_pins.clear();
            r.members[0].tls_cas.clear();
        },
        "neither a CA",
    );
    bad(
        &|r| r.members[0].tls_pins[0].pop().map(|_| ()).unwrap(),
        "32-byte SHA-256",
    );
    bad(
        &|r| r.members[0].tls_cas = vec![vec![1, 2, 3]],
        "tls_cas[0]: not a DER",
    );
    bad(&|r| r.members[0].country = "ee".into(), "country");
    bad(
        &|r| r.members[0].display_name = "evil\u{1b}[2J".into(),
        "display_name",
    );
    bad(&|r| r.members[0].contact = "x".repeat(501), "contact");
    bad(
        &|r| {
            r.members[0].signing_keys[0].not_before = Some(ms_to_ts(NOW));
            r.members[0].signing_keys[0].not_after = Some(ms_to_ts(NOW));
        },
        "not_after: must be after not_before",
    );
}

#[test]
fn ca_certificates_are_checked() {
    let ca = test_ca_der(true);
    let mut r = v1();
    r.members[0].tls_cas = vec![ca.clone()];
    check_shape(&r).unwrap();
    assert!(ca_subject(&ca).contains("roster test CA"));
    r.members[0].tls_cas = vec![test_ca_der(false)];
    let e = check_shape(&r).unwrap_err();
    assert!(e.contains("not a CA certificate"), "{e}");
    let mut trailing = ca.clone();
    trailing.push(0);
    r.members[0].tls_cas = vec![trailing];
    assert!(check_shape(&r).unwrap_err().contains("trailing"));
}

fn test_ca_der(is_ca: bool) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "roster test CA");
    if is_ca {
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    p.self_signed(&key).unwrap().der().to_vec()
}

#[test]
fn trust_gives_keys_with_periods_and_names_who_left() {
    let r1 = v1();
    let mut r2 = draft::next(&r1, NOW, NOW + DAY);
    draft::remove_member(&mut r2, "node-c").unwrap();
    draft::rotate_key(&mut r2, "node-b", &sk(22).verifying_key(), NOW, NOW - DAY).unwrap();
    let reg = trust(&[&r1, &r2]).unwrap();
    let kid = |seed: u8| key_id(&sk(seed).verifying_key());
    assert!(reg.is_member("node-a") && reg.is_member("node-b") && !reg.is_member("node-c"));
    assert_eq!(reg.retired(&kid(3)), Some("node-c is not in roster v2"));
    assert!(reg.get(&kid(3)).is_none());
    // node-b's old key: messages created up to the rotation pass, later ones not.
    assert!(reg.check_use(&kid(2), NOW - 1).is_ok());
    assert!(reg.check_use(&kid(2), NOW).is_ok());
    let e = reg.check_use(&kid(2), NOW + 1).unwrap_err();
    assert!(
        e.contains("was valid until") && e.contains("rotated"),
        "{e}"
    );
    assert!(reg.check_use(&kid(22), NOW + 1).is_ok());
    assert_eq!(reg.keys_of("node-b").len(), 2);
    // A key dropped from a member that stays.
    let mut r3 = draft::next(&r2, NOW, NOW + DAY);
    r3.members
        .iter_mut()
        .find(|m| m.id == "node-b")
        .unwrap()
        .signing_keys
        .remove(0);
    let reg = trust(&[&r1, &r2, &r3]).unwrap();
    assert_eq!(
        reg.retired(&kid(2)).unwrap(),
        format!("key {} of node-b is no longer listed in roster v3", kid(2))
    );
    assert_eq!(reg.retired(&kid(3)), Some("node-c is not in roster v3"));
}

#[test]
fn envelopes_signed_by_retired_or_expired_keys_are_refused_for_good() {
    use crate::domain::envelope::{Draft, VerifyLimits, seal, verify};
    use crate::domain::keys::Signer;
    let r1 = v1();
    let mut r2 = draft::next(&r1, NOW, NOW + DAY);
    draft::remove_member(&mut r2, "node-c").unwrap();
    draft::rotate_key(&mut r2, "node-b", &sk(22).verifying_key(), NOW, NOW - DAY).unwrap();
    let reg = trust(&[&r1, &r2]).unwrap();
    let lim = VerifyLimits {
        max_message_bytes: 65536,
        max_clock_skew_ms: 60_000,
        max_message_age_ms: 30 * DAY,
    };
    let env = |who: &str, seed: u8, at: i64| {
        seal(
            &Signer::new(who, sk(seed)),
            Draft {
                message_id: uuid::Uuid::now_v7().to_string(),
                kind: MessageKind::Alert,
                tlp: Tlp::Green,
                recipients: vec![],
                created_ms: at,
                expires_ms: None,
                hop_limit: 8,
                exercise: false,
                encrypted: false,
                payload: b"x".to_vec(),
            },
        )
    };
    let r = verify(&reg, &env("node-c", 3, NOW), NOW, &lim).unwrap_err();
    assert!(
        matches!(
            &r,
            Rejection::Roster {
                kind: "not_in_roster",
                ..
            }
        ),
        "{r:?}"
    );
    assert!(r.to_string().contains("node-c is not in roster v2"), "{r}");
    assert_eq!(crate::domain::admission::deferrable(&r), None, "final");
    // The old key before the rotation still verifies; after it, refused.
    assert!(verify(&reg, &env("node-b", 2, NOW - 1000), NOW, &lim).is_ok());
    let r = verify(&reg, &env("node-b", 2, NOW + 1000), NOW + 2000, &lim).unwrap_err();
    assert!(
        matches!(
            &r,
            Rejection::Roster {
                kind: "key_not_valid",
                ..
            }
        ),
        "{r:?}"
    );
    assert!(verify(&reg, &env("node-b", 22, NOW + 1000), NOW + 2000, &lim).is_ok());
    // A key nobody ever listed stays a temporary refusal (a roster may be late).
    let r = verify(&reg, &env("node-z", 77, NOW), NOW, &lim).unwrap_err();
    assert!(matches!(r, Rejection::UnknownSigner(_)));
    assert_eq!(crate::domain::admission::deferrable(&r), Some(0));
}

#[test]
fn rotate_key_ends_open_keys_and_drops_long_ended_ones() {
    let mut r = v1();
    draft::rotate_key(&mut r, "node-a", &sk(11).verifying_key(), NOW, NOW - DAY).unwrap();
    let keys = &r.members[0].signing_keys;
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].not_after, Some(ms_to_ts(NOW)));
    assert_eq!(keys[1].not_after, None);
    // A second rotation a week later drops the key that ended before it.
    draft::rotate_key(
        &mut r,
        "node-a",
        &sk(12).verifying_key(),
        NOW + 7 * DAY,
        NOW + 7 * DAY,
    )
    .unwrap();
    let keys = &r.members[0].signing_keys;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(
        keys[0].public_key,
        sk(11).verifying_key().as_bytes().to_vec()
    );
    assert!(draft::rotate_key(&mut r, "node-a", &sk(12).verifying_key(), NOW, NOW).is_err());
    assert!(draft::rotate_key(&mut r, "node-q", &sk(13).verifying_key(), NOW, NOW).is_err());
    assert!(draft::add_member(&mut r, member("node-a", 14)).is_err());
    assert!(draft::remove_member(&mut r, "node-q").is_err());
}

#[test]
fn diffs_say_what_changed() {
    let r1 = v1();
    let mut r2 = draft::next(&r1, NOW, NOW + 2 * DAY);
    draft::add_member(&mut r2, member("node-f", 6)).unwrap();
    draft::remove_member(&mut r2, "node-c").unwrap();
    draft::rotate_key(&mut r2, "node-b", &sk(22).verifying_key(), NOW, NOW - DAY).unwrap();
    r2.members[0].contact = "new@example.org".into();
    draft::set_stewards(&mut r2, stewards(4), 3).unwrap();
    let d = diff(Some(&r1), &r2);
    let has = |s: &str| assert!(d.iter().any(|l| l.contains(s)), "{s} not in {d:#?}");
    has("+ member node-f (\"CERT node-f\")");
    has("- member node-c: removed");
    has(&format!(
        "~ member node-b: + signing key {}",
        key_id(&sk(22).verifying_key())
    ));
    has("~ member node-b: signing key");
    has("~ member node-a: contact \"soc@example.org\" -> \"new@example.org\"");
    has("+ steward s4");
    has("threshold 2 -> 3 of 4");
    has("expires");
    assert!(diff(Some(&r1), &r1).is_empty());
    assert_eq!(
        diff(None, &r1).len(),
        1 + 3 + 3 + 1,
        "{:#?}",
        diff(None, &r1)
    );
}

#[test]
fn armor_round_trips_and_names_what_is_wrong() {
    let bytes = signed(&v1(), &[101, 102]).to_bytes();
    let text = armor(&bytes);
    assert!(text.starts_with(ARMOR_BEGIN) && text.trim_end().ends_with(ARMOR_END));
    assert!(
        text.lines()
            .all(|l| l.len() <= 64 || l.starts_with("-----"))
    );
    assert_eq!(dearmor(&text).unwrap(), bytes);
    assert_eq!(dearmor(&format!("comment\n{text}")).unwrap(), bytes);
    assert!(dearmor("hello").unwrap_err().contains("not a roster file"));
    assert!(
        dearmor(&text[..text.len() - 20])
            .unwrap_err()
            .contains("cut short")
    );
    assert!(dearmor(&text.replace('A', "*")).is_err());
}

#[test]
fn roster_messages_are_clear_and_follow_the_held_roster() {
    let anchor = accepted_v1();
    let h = |tlp: Tlp, encrypted: bool| EnvelopeHeader {
        tlp: tlp as i32,
        encrypted,
        kind: MessageKind::Roster as i32,
        ..Default::default()
    };
    let v2 = signed(&draft::next(&v1(), NOW, NOW + DAY), &[101, 102]).to_bytes();
    admit_message(Some(&anchor), &h(Tlp::Clear, false), &v2, NOW).unwrap();
    let r = admit_message(Some(&anchor), &h(Tlp::Green, false), &v2, NOW).unwrap_err();
    assert!(matches!(r, Rejection::Policy(_)), "{r:?}");
    let r = admit_message(None, &h(Tlp::Clear, false), &v2, NOW).unwrap_err();
    assert_eq!(refusal_of(&r).unwrap().kind, RefusalKind::Static);
    assert!(r.to_string().contains("static [[members]]"), "{r}");
    let r = admit_message(Some(&anchor), &h(Tlp::Clear, false), b"junk", NOW).unwrap_err();
    assert_eq!(refusal_of(&r).unwrap().kind, RefusalKind::Malformed);
    // The same roster again is admitted (a re-flood).
    let same = signed(&v1(), &[101, 102]).to_bytes();
    admit_message(Some(&anchor), &h(Tlp::Clear, false), &same, NOW).unwrap();
    for k in RefusalKind::ALL {
        assert_eq!(RefusalKind::from_label(k.label()), Some(k));
    }
}

#[test]
fn tls_anchors_list_cas_and_pins_per_member() {
    let mut r = v1();
    r.members[0].tls_cas = vec![test_ca_der(true)];
    let a = tls_anchors(&r);
    assert_eq!(a.len(), 3);
    assert_eq!(a[0].member, "node-a");
    assert_eq!(a[0].cas.len(), 1);
    assert_eq!(a[1].pins, vec![[2u8; 32]]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Version 2 is applied exactly when at least k1 of version 1's n1
    /// stewards and at least k2 of its own n2 stewards signed it, whoever
    /// they are (stewards may be shared between the versions).
    #[test]
    fn applied_exactly_when_both_quorums_are_met(
        n1 in 1u8..=5, k1 in 1u32..=5, n2 in 1u8..=5, k2 in 1u32..=5,
        shift in 0u8..=5,
        signers in proptest::collection::vec(any::<bool>(), 10),
    ) {
        let k1 = k1.min(u32::from(n1));
        let k2 = k2.min(u32::from(n2));
        // Version 1's stewards use seeds 101.., version 2's start `shift` later.
        let old: Vec<Steward> = (0..n1).map(|i| steward(&format!("s{}", 101 + i), 101 + i)).collect();
        let new: Vec<Steward> = (0..n2)
            .map(|i| steward(&format!("s{}", 101 + shift + i), 101 + shift + i))
            .collect();
        let mut r1 = v1();
        draft::set_stewards(&mut r1, old.clone(), k1).unwrap();
        let a1 = check_first(
            signed(&r1, &(0..n1).map(|i| 101 + i).collect::<Vec<_>>()), None, NOW,
        ).unwrap();
        let mut r2 = draft::next(&r1, NOW, NOW + DAY);
        draft::set_stewards(&mut r2, new.clone(), k2).unwrap();
        // Candidate signers: every steward of either version, picked by `signers`.
        let mut all: Vec<u8> = (0..n1).map(|i| 101 + i).chain((0..n2).map(|i| 101 + shift + i)).collect();
        all.sort();
        all.dedup();
        let chosen: Vec<u8> = all.iter().zip(signers.iter().cycle()).filter(|(_, s)| **s).map(|(x, _)| *x).collect();
        let got_old = old.iter().filter(|s| chosen.iter().any(|c| steward(&s.id, *c).public_key == s.public_key)).count() as u32;
        let got_new = new.iter().filter(|s| chosen.iter().any(|c| steward(&s.id, *c).public_key == s.public_key)).count() as u32;
        let verdict = check(&Anchor::Current(Box::new(a1)), signed(&r2, &chosen), NOW);
        if got_old >= k1 && got_new >= k2 {
            prop_assert!(matches!(verdict, Ok(Verdict::Apply(_))), "{verdict:?}");
        } else {
            prop_assert_eq!(verdict.unwrap_err().kind, RefusalKind::TooFewSignatures);
        }
    }

    /// No roster altered after signing is ever applied: flipping any byte
    /// of the signed bytes is refused (malformed, or a signature that does
    /// not verify), never accepted.
    #[test]
    fn tampered_rosters_are_never_applied(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let anchor = accepted_v1();
        let v2 = draft::next(&v1(), NOW, NOW + DAY);
        let mut s = draft::unsigned(&v2);
        sign(&mut s, &sk(101));
        sign(&mut s, &sk(102));
        let i = pos.index(s.roster.len());
        s.roster[i] ^= 1 << bit;
        if let Ok(doc) = parse(&s.encode_to_vec()) {
            let r = check(&anchor, doc, NOW);
            prop_assert!(!matches!(r, Ok(Verdict::Apply(_))), "tampered byte {i} accepted");
        }
    }

    /// Arbitrary bytes never panic the parser, and whatever decodes is
    /// refused without the stewards' signatures.
    #[test]
    fn arbitrary_bytes_are_refused_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(doc) = parse(&bytes) {
            prop_assert!(check(&accepted_v1(), doc, NOW).is_err() || bytes.is_empty());
        }
    }

    /// The verdict follows the version: lower is a rollback, the held one
    /// with other bytes a fork, two or more ahead waits, one ahead applies.
    #[test]
    fn the_version_decides_the_verdict(ahead in 0u64..4, lower in any::<bool>()) {
        let r1 = draft::next(&v1(), NOW, NOW + DAY); // version 2 held
        let a = check_first(signed(&r1, &[101, 102]), None, NOW).unwrap();
        let anchor = Anchor::Current(Box::new(a));
        let mut r = r1.clone();
        r.version = if lower { 1 } else { 2 + ahead };
        r.members[0].contact = "changed@example.org".into();
        let verdict = check(&anchor, signed(&r, &[101, 102]), NOW);
        let want = match (lower, ahead) {
            (true, _) => Some(RefusalKind::Rollback),
            (false, 0) => Some(RefusalKind::Fork),
            (false, 1) => None,
            _ => Some(RefusalKind::Ahead),
        };
        match want {
            None => prop_assert!(matches!(verdict, Ok(Verdict::Apply(_)))),
            Some(k) => prop_assert_eq!(verdict.unwrap_err().kind, k),
        }
    }
}

/// A CA named `name` (DER and its issuer), and a leaf it issues.
fn ca_and_leaf(name: &str) -> (Vec<u8>, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_der = p.self_signed(&key).unwrap().der().to_vec();
    let issuer = rcgen::Issuer::new(p, key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    (ca_der, leaf.der().to_vec())
}

#[test]
fn only_the_members_own_ca_or_pin_vouches_for_its_certificate() {
    let (ca_x, leaf_x) = ca_and_leaf("CA of node-a");
    let (ca_y, leaf_y) = ca_and_leaf("CA of node-b");
    // Same subject as X's CA, other key: a name match alone is not enough.
    let (ca_x_forged, leaf_forged) = ca_and_leaf("CA of node-a");
    let mut r = v1();
    r.members[0].tls_cas = vec![ca_x.clone()];
    r.members[0].tls_pins.clear();
    r.members[1].tls_cas = vec![ca_y];
    vouches(&r, "node-a", &leaf_x).unwrap();
    let e = vouches(&r, "node-a", &leaf_y).unwrap_err();
    assert!(
        e.contains("another member's CA cannot vouch for node-a"),
        "{e}"
    );
    assert!(e.contains("CA of node-b"), "{e}");
    assert!(
        vouches(&r, "node-a", &leaf_forged).is_err(),
        "same issuer name, other key"
    );
    let _ = ca_x_forged;
    // A pin vouches whatever the issuer.
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf_y).unwrap();
    use sha2::Digest as _;
    r.members[0].tls_pins = vec![sha2::Sha256::digest(cert.public_key().raw).to_vec()];
    vouches(&r, "node-a", &leaf_y).unwrap();
    let e = vouches(&r, "node-z", &leaf_x).unwrap_err();
    assert!(e.contains("node-z is not in roster v1"), "{e}");
    assert!(
        vouches(&r, "node-a", b"garbage")
            .unwrap_err()
            .contains("does not parse")
    );
}

/// A root CA named `name`, an intermediate it issues (DER each), and the
/// intermediate as an issuer.
fn root_and_intermediate(name: &str) -> (Vec<u8>, Vec<u8>, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let root_der = p.self_signed(&key).unwrap().der().to_vec();
    let root = rcgen::Issuer::new(p, key);
    let ikey = rcgen::KeyPair::generate().unwrap();
    let mut ip = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ip.distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} issuing"));
    ip.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    let inter_der = ip.signed_by(&ikey, &root).unwrap().der().to_vec();
    (root_der, inter_der, rcgen::Issuer::new(ip, ikey))
}

fn leaf_of(issuer: &rcgen::Issuer<'static, rcgen::KeyPair>) -> Vec<u8> {
    let k = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&k, issuer)
        .unwrap()
        .der()
        .to_vec()
}

#[test]
fn a_members_ca_vouches_through_the_intermediates_the_peer_presents() {
    let (root_x, inter_x, issuing_x) = root_and_intermediate("CA of node-a");
    let (root_y, inter_y, issuing_y) = root_and_intermediate("CA of node-b");
    let mut r = v1();
    r.members[0].tls_cas = vec![root_x.clone()];
    r.members[0].tls_pins.clear();
    r.members[1].tls_cas = vec![root_y];
    r.members[1].tls_pins.clear();
    let leaf_x = leaf_of(&issuing_x);
    let leaf_y = leaf_of(&issuing_y);
    // Through the presented intermediate, to the root the roster lists.
    vouches_chain(&r, "node-a", &leaf_x, &[&inter_x]).unwrap();
    // Without the intermediate the leaf alone does not reach the root.
    let e = vouches(&r, "node-a", &leaf_x).unwrap_err();
    assert!(e.contains("does not chain to a CA"), "{e}");
    // Another member's intermediate (under its own root) cannot vouch for
    // node-a, presented alone or beside node-a's own intermediate.
    assert!(vouches_chain(&r, "node-a", &leaf_y, &[&inter_y]).is_err());
    assert!(vouches_chain(&r, "node-a", &leaf_y, &[&inter_y, &inter_x]).is_err());
    vouches_chain(&r, "node-b", &leaf_y, &[&inter_y]).unwrap();
    // The roster may also list the intermediate itself.
    r.members[0].tls_cas = vec![inter_x.clone()];
    vouches(&r, "node-a", &leaf_x).unwrap();
    // A presented "intermediate" that is not a CA is not followed.
    let (ca_z, not_ca) = ca_and_leaf("CA of node-a issuing");
    let _ = ca_z;
    r.members[0].tls_cas = vec![root_x];
    assert!(vouches_chain(&r, "node-a", &leaf_x, &[&not_ca]).is_err());
}

#[test]
fn only_this_nodes_own_ca_issues_its_operators() {
    let (ca_a, op_a) = ca_and_leaf("CA of node-a");
    let (ca_b, op_b) = ca_and_leaf("CA of node-b");
    let (root_a, inter_a, issuing_a) = root_and_intermediate("Root of node-a");
    let mut r = v1();
    r.members[0].tls_cas = vec![ca_a.clone(), root_a];
    r.members[1].tls_cas = vec![ca_b];
    vouches_operator(&r, "node-a", "alice", &op_a, &[]).unwrap();
    vouches_operator(&r, "node-a", "alice", &leaf_of(&issuing_a), &[&inter_a]).unwrap();
    // Another member's CA cannot mint an operator of node-a.
    let e = vouches_operator(&r, "node-a", "mallory", &op_b, &[]).unwrap_err();
    assert!(
        e.contains("issue operator certificates from node-a's own CA"),
        "{e}"
    );
    vouches_operator(&r, "node-b", "bob", &op_b, &[]).unwrap();
    assert!(vouches_operator(&r, "node-b", "bob", &op_a, &[]).is_err());
    // Pins only for this node, or a node the roster does not list: tls.ca
    // alone decides (the node's operators keep access).
    r.members[1].tls_cas.clear();
    vouches_operator(&r, "node-b", "bob", &op_a, &[]).unwrap();
    vouches_operator(&r, "node-z", "zed", &op_a, &[]).unwrap();
}
