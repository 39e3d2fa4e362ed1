//! The picture's rules, one behaviour per test: membership, marking, roles,
//! merges, cycles, escalation, what a non-recipient sees.
use super::*;
use crate::domain::envelope::ms_to_ts;
use crate::proto::v1::{
    Alert, AssistanceRequest, AssistanceState, IncidentLink, IncidentMerge, IncidentStatus,
    IncidentStatusChange, Indicator, IndicatorType, MessageKind, Nis2Sector, Revision, Severity,
    Sighting, Tlp,
};

pub(super) fn id(n: u32) -> String {
    format!("00000000-0000-7000-8000-{n:012}")
}

pub(super) fn ind(v: &str) -> Indicator {
    Indicator {
        r#type: IndicatorType::Domain as i32,
        value: v.into(),
        comment: String::new(),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn alert_c(
    n: u32,
    origin: &str,
    incident: u32,
    tlp: Tlp,
    to: &[&str],
    at: i64,
    sev: Severity,
    sector: Nis2Sector,
    country: &str,
    inds: &[&str],
) -> Contribution {
    Contribution {
        exercise: false,
        message_id: id(n),
        origin: origin.into(),
        kind: MessageKind::Alert,
        tlp,
        recipients: to.iter().map(|s| s.to_string()).collect(),
        created_ms: at,
        incident_id: id(incident),
        body: Some(Body::Alert(Alert {
            title: format!("alert {n}"),
            tlp: tlp as i32,
            severity: sev as i32,
            sectors: vec![sector as i32],
            affected_countries: vec![country.into()],
            indicators: inds.iter().map(|v| ind(v)).collect(),
            ..Default::default()
        })),
    }
}

pub(super) fn opener(n: u32, origin: &str, tlp: Tlp, to: &[&str], at: i64) -> Contribution {
    alert_c(
        n,
        origin,
        n,
        tlp,
        to,
        at,
        Severity::High,
        Nis2Sector::Energy,
        "UA",
        &["evil.example"],
    )
}

pub(super) fn sighting_c(
    n: u32,
    origin: &str,
    incident: u32,
    tlp: Tlp,
    to: &[&str],
    at: i64,
    sev: Severity,
) -> Contribution {
    Contribution {
        exercise: false,
        message_id: id(n),
        origin: origin.into(),
        kind: MessageKind::Sighting,
        tlp,
        recipients: to.iter().map(|s| s.to_string()).collect(),
        created_ms: at,
        incident_id: id(incident),
        body: Some(Body::Sighting(Sighting {
            incident_id: id(incident),
            indicators: vec![ind("evil.example")],
            country: "PL".into(),
            sector: Nis2Sector::Transport as i32,
            observed: Some(ms_to_ts(at - 10)),
            count: 3,
            severity: sev as i32,
            tlp: tlp as i32,
            ..Default::default()
        })),
    }
}

fn status_c(n: u32, origin: &str, incident: u32, at: i64, st: IncidentStatus) -> Contribution {
    Contribution {
        exercise: false,
        message_id: id(n),
        origin: origin.into(),
        kind: MessageKind::IncidentStatus,
        tlp: Tlp::Green,
        recipients: vec![],
        created_ms: at,
        incident_id: id(incident),
        body: Some(Body::Status(IncidentStatusChange {
            incident_id: id(incident),
            status: st as i32,
            note: "n".into(),
        })),
    }
}

pub(super) fn link_c(n: u32, origin: &str, incident: u32, target: u32, at: i64) -> Contribution {
    Contribution {
        exercise: false,
        message_id: id(n),
        origin: origin.into(),
        kind: MessageKind::IncidentLink,
        tlp: Tlp::Green,
        recipients: vec![],
        created_ms: at,
        incident_id: id(incident),
        body: Some(Body::Link(IncidentLink {
            incident_id: id(incident),
            message_id: id(target),
            note: String::new(),
        })),
    }
}

pub(super) fn merge_c(n: u32, origin: &str, incident: u32, other: u32, at: i64) -> Contribution {
    Contribution {
        exercise: false,
        message_id: id(n),
        origin: origin.into(),
        kind: MessageKind::IncidentMerge,
        tlp: Tlp::Green,
        recipients: vec![],
        created_ms: at,
        incident_id: id(incident),
        body: Some(Body::Merge(IncidentMerge {
            incident_id: id(incident),
            other_incident_id: id(other),
            note: String::new(),
        })),
    }
}

#[test]
fn no_opener_no_picture() {
    let s = sighting_c(2, "b", 1, Tlp::Green, &[], 10, Severity::Low);
    assert!(picture(&id(1), &[s]).is_none());
}

#[test]
fn escalation_across_partners_and_sectors() {
    let held = vec![
        opener(1, "a", Tlp::Green, &[], 100),
        sighting_c(2, "b", 1, Tlp::Green, &[], 200, Severity::Medium),
        alert_c(
            3,
            "c",
            1,
            Tlp::Green,
            &[],
            300,
            Severity::Critical,
            Nis2Sector::Health,
            "DE",
            &["evil.example", "cdn.evil.example"],
        ),
    ];
    let s = picture(&id(1), &held).unwrap();
    assert_eq!(s.incident_id, id(1));
    assert_eq!(s.opener, "a");
    assert_eq!(s.partners_affected, ["a", "b", "c"]);
    assert_eq!(s.countries, ["DE", "PL", "UA"]);
    assert_eq!(
        s.sectors,
        [
            Nis2Sector::Energy as i32,
            Nis2Sector::Transport as i32,
            Nis2Sector::Health as i32
        ]
    );
    assert_eq!(s.severity, Severity::Critical as i32);
    let sev: Vec<i32> = s.timeline.iter().map(|p| p.severity_now).collect();
    assert_eq!(
        sev,
        [
            Severity::High as i32,
            Severity::High as i32,
            Severity::Critical as i32
        ]
    );
    let affected: Vec<u32> = s.timeline.iter().map(|p| p.affected_partners).collect();
    assert_eq!(affected, [1, 2, 3]);
    // The shared indicator: three partners, 1 + 3 + 1 observations.
    let top = &s.indicators[0];
    assert_eq!(top.indicator.as_ref().unwrap().value, "evil.example");
    assert_eq!(top.partners, ["a", "b", "c"]);
    assert_eq!(top.observations, 5);
    assert_eq!(s.partners.len(), 3);
    assert_eq!(s.contributions, 3);
    assert!(s.refused.is_empty() && s.restricted.is_empty());
    assert_eq!(s.digest, digest(&s));
}

#[test]
fn restricted_contributions_are_counted_not_shown() {
    let mut hidden = sighting_c(2, "c", 1, Tlp::Amber, &["a"], 200, Severity::Critical);
    hidden.body = None;
    let s = picture(&id(1), &[opener(1, "a", Tlp::Green, &[], 100), hidden]).unwrap();
    assert_eq!(s.restricted.len(), 1);
    let r = &s.restricted[0];
    assert_eq!((r.origin.as_str(), r.count), ("c", 1));
    assert_eq!(r.tlp, Tlp::Amber as i32);
    assert_eq!(r.kind, MessageKind::Sighting as i32);
    // Nothing of its content: not affected, not in the timeline, severity unchanged.
    assert_eq!(s.partners_affected, ["a"]);
    assert_eq!(s.timeline.len(), 1);
    assert_eq!(s.severity, Severity::High as i32);
    assert!(!s.countries.contains(&"PL".to_string()));
}

#[test]
fn wider_sighting_is_refused_with_reason() {
    let held = vec![
        opener(1, "a", Tlp::Amber, &["b", "c"], 100),
        sighting_c(2, "b", 1, Tlp::Green, &[], 200, Severity::Low),
        sighting_c(3, "c", 1, Tlp::Amber, &["a", "d"], 300, Severity::Low),
        sighting_c(4, "b", 1, Tlp::Red, &["a"], 400, Severity::Low),
    ];
    let s = picture(&id(1), &held).unwrap();
    let reasons: Vec<&str> = s.refused.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(s.refused.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].contains("TLP:GREEN, wider than the TLP:AMBER"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("sent to d"), "{reasons:?}");
    // The more restricted one is fine.
    assert_eq!(s.partners_affected, ["a", "b"]);
}

#[test]
fn contribution_from_a_non_recipient_is_refused() {
    let held = vec![
        opener(1, "a", Tlp::Amber, &["b"], 100),
        sighting_c(2, "z", 1, Tlp::Amber, &["a", "b"], 200, Severity::Low),
    ];
    let s = picture(&id(1), &held).unwrap();
    assert_eq!(s.refused.len(), 1);
    assert!(
        s.refused[0]
            .reason
            .contains("z is not among the recipients")
    );
    assert_eq!(s.partners_affected, ["a"]);
}

#[test]
fn only_the_opener_changes_the_status() {
    let held = vec![
        opener(1, "a", Tlp::Green, &[], 100),
        status_c(2, "a", 1, 200, IncidentStatus::Contained),
        status_c(3, "b", 1, 300, IncidentStatus::Resolved),
    ];
    let s = picture(&id(1), &held).unwrap();
    assert_eq!(s.status, IncidentStatus::Contained as i32);
    assert_eq!(s.refused.len(), 1);
    assert!(s.refused[0].reason.contains("only the opener a"));
}

#[test]
fn merge_needs_both_openers() {
    let one_sided = vec![
        opener(1, "a", Tlp::Green, &[], 100),
        opener(2, "b", Tlp::Green, &[], 150),
        sighting_c(3, "c", 2, Tlp::Green, &[], 200, Severity::Low),
        merge_c(4, "a", 1, 2, 300),
    ];
    let s = picture(&id(1), &one_sided).unwrap();
    assert!(s.merged.is_empty());
    assert_eq!(s.pending_merges.len(), 1);
    assert_eq!(s.partners_affected, ["a"]);
    let other_side = picture(&id(2), &one_sided).unwrap();
    assert_eq!(
        other_side.pending_merges.len(),
        1,
        "the other opener sees the proposal"
    );

    // A non-opener cannot accept in b's name.
    let mut forged = one_sided.clone();
    forged.push(merge_c(5, "c", 2, 1, 400));
    let s = picture(&id(1), &forged).unwrap();
    assert!(s.merged.is_empty());

    let mut agreed = one_sided.clone();
    agreed.push(merge_c(5, "b", 2, 1, 400));
    let s1 = picture(&id(1), &agreed).unwrap();
    let s2 = picture(&id(2), &agreed).unwrap();
    assert_eq!(s1, s2, "both ids show the merged incident");
    assert_eq!(s1.incident_id, id(1), "under the older id");
    assert_eq!(s1.merged, [id(2)]);
    assert_eq!(s1.partners_affected, ["a", "b", "c"]);
    assert!(s1.pending_merges.is_empty());
}

#[test]
fn link_cycles_are_refused() {
    let held = vec![
        opener(1, "a", Tlp::Green, &[], 100),
        opener(2, "b", Tlp::Green, &[], 150),
        link_c(3, "a", 1, 2, 200),
        link_c(4, "b", 2, 1, 300),
    ];
    let s = picture(&id(1), &held).unwrap();
    assert_eq!(s.parts, [id(2)]);
    assert_eq!(
        s.partners_affected,
        ["a", "b"],
        "the part's contributions count"
    );
    let s2 = picture(&id(2), &held).unwrap();
    assert_eq!(s2.part_of, [id(1)]);
    assert_eq!(s2.refused.len(), 1);
    assert!(s2.refused[0].reason.contains("cycle"));
}

#[test]
fn linked_messages_and_assistance_join() {
    let loose = Contribution {
        incident_id: String::new(),
        ..alert_c(
            5,
            "d",
            5,
            Tlp::Green,
            &[],
            120,
            Severity::Low,
            Nis2Sector::Banking,
            "EE",
            &["x.example"],
        )
    };
    let req = Contribution {
        exercise: false,
        message_id: id(6),
        origin: "a".into(),
        kind: MessageKind::AssistanceRequest,
        tlp: Tlp::Amber,
        recipients: vec!["b".into()],
        created_ms: 130,
        incident_id: String::new(),
        body: Some(Body::Assistance {
            request: AssistanceRequest {
                title: "help".into(),
                linked_alerts: vec![id(1)],
                ..Default::default()
            },
            state: AssistanceState::Offered,
        }),
    };
    let held = vec![
        opener(1, "a", Tlp::Green, &[], 100),
        loose,
        req,
        link_c(7, "b", 1, 5, 200),
    ];
    let s = picture(&id(1), &held).unwrap();
    assert_eq!(s.partners_affected, ["a", "d"]);
    assert_eq!(s.assistance.len(), 1);
    assert_eq!(s.assistance[0].state, AssistanceState::Offered as i32);
    assert_eq!(s.assistance[0].title, "help");
}

#[test]
fn updates_replace_and_retractions_remove() {
    let mut upd = alert_c(
        2,
        "a",
        1,
        Tlp::Green,
        &[],
        200,
        Severity::Critical,
        Nis2Sector::Energy,
        "UA",
        &[],
    );
    if let Some(Body::Alert(a)) = &mut upd.body {
        a.revision = Revision::Update as i32;
        a.supersedes = id(1);
        a.title = "updated".into();
    }
    let s = picture(&id(1), &[opener(1, "a", Tlp::Green, &[], 100), upd.clone()]).unwrap();
    assert_eq!(s.title, "updated");
    assert_eq!(s.severity, Severity::Critical as i32);
    let mut b = sighting_c(3, "b", 1, Tlp::Green, &[], 250, Severity::Unspecified);
    let mut ret = alert_c(
        4,
        "b",
        1,
        Tlp::Green,
        &[],
        300,
        Severity::Low,
        Nis2Sector::Energy,
        "UA",
        &[],
    );
    b.message_id = id(3);
    if let Some(Body::Alert(a)) = &mut ret.body {
        a.revision = Revision::Retraction as i32;
        a.supersedes = id(1);
    }
    // b cannot retract a's alert: it is not the origin.
    let s = picture(&id(1), &[opener(1, "a", Tlp::Green, &[], 100), upd, b, ret]).unwrap();
    assert_eq!(s.title, "updated");
}

#[test]
fn marking_rules_for_the_origin() {
    let to = ["b".to_string()];
    let aud = Audience {
        exercise: false,
        opener: "a",
        tlp: Tlp::Amber,
        recipients: &to,
    };
    assert!(check_contribution("i", &aud, "b", Tlp::Amber, &["a".into()]).is_ok());
    assert!(check_contribution("i", &aud, "b", Tlp::Red, &["a".into()]).is_ok());
    assert!(check_contribution("i", &aud, "b", Tlp::Green, &[]).is_err());
    assert!(check_contribution("i", &aud, "b", Tlp::Amber, &[]).is_err());
    assert!(check_contribution("i", &aud, "c", Tlp::Amber, &["a".into()]).is_err());
    assert!(
        refusal(
            "i",
            &aud,
            "b",
            MessageKind::IncidentStatus,
            Tlp::Amber,
            &["a".into()],
            false
        )
        .is_some()
    );
    assert!(
        refusal(
            "i",
            &aud,
            "a",
            MessageKind::IncidentStatus,
            Tlp::Amber,
            &["b".into()],
            false
        )
        .is_none()
    );
}

#[test]
fn exercise_and_real_never_join_link_or_merge() {
    let ex = |mut c: Contribution| {
        c.exercise = true;
        c
    };
    // A real incident (1), an exercise incident (2) by the same partners.
    let held = vec![
        opener(1, "a", Tlp::Green, &[], 100),
        ex(opener(2, "b", Tlp::Green, &[], 150)),
        // An exercise sighting into the real incident, a real one into the
        // exercise incident: both refused.
        ex(sighting_c(
            3,
            "c",
            1,
            Tlp::Green,
            &[],
            200,
            Severity::Critical,
        )),
        sighting_c(4, "c", 2, Tlp::Green, &[], 210, Severity::Critical),
        // The exercise opener links the real incident into its own.
        ex(link_c(5, "b", 2, 1, 300)),
        // Both openers agree to merge: still not merged.
        merge_c(6, "a", 1, 2, 400),
        ex(merge_c(7, "b", 2, 1, 410)),
        // A same-flag contribution joins.
        ex(sighting_c(8, "d", 2, Tlp::Green, &[], 500, Severity::Low)),
    ];
    let real = picture(&id(1), &held).unwrap();
    assert!(!real.exercise);
    assert!(
        real.merged.is_empty() && real.part_of.is_empty(),
        "{real:?}"
    );
    assert_eq!(real.partners_affected, ["a"], "no exercise sighting counts");
    let refused: Vec<(&str, &str)> = real
        .refused
        .iter()
        .map(|r| (r.message_id.as_str(), r.reason.as_str()))
        .collect();
    assert!(
        refused
            .iter()
            .any(|(m, r)| *m == id(3) && r.contains("exercise sighting cannot join real message")),
        "{refused:?}"
    );
    assert!(
        refused.iter().any(
            |(m, r)| *m == id(6) && r.contains("real merge cannot merge with exercise message")
        ),
        "{refused:?}"
    );

    let exs = picture(&id(2), &held).unwrap();
    assert!(exs.exercise);
    assert!(exs.parts.is_empty() && exs.merged.is_empty(), "{exs:?}");
    assert_eq!(exs.partners_affected, ["b", "d"]);
    let reasons: Vec<&str> = exs.refused.iter().map(|r| r.reason.as_str()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("real sighting cannot join exercise message")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("exercise link cannot link to real message")),
        "{reasons:?}"
    );
}
