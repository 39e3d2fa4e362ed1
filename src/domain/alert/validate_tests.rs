//! Unit tests of [`validate_alert`]: each rule fails on the right field (proto path) with
//! words an operator can act on, and a complete, well-formed alert passes.
use super::*;
use crate::proto::v1::{
    Alert, Indicator, IndicatorType, Nis2Sector, Nis2Subsector, Revision, RsitClass, RsitType,
    Severity, Tlp,
};
use prost::Message;
use prost_types::Timestamp;

const CREATED: i64 = 1_700_000_000_000;

fn ind(t: IndicatorType, v: &str) -> Indicator {
    Indicator {
        r#type: t as i32,
        value: v.to_string(),
        comment: String::new(),
    }
}

fn good() -> Alert {
    Alert {
        title: "Ransomware campaign against hospitals".into(),
        description: "details".into(),
        tlp: Tlp::Amber as i32,
        severity: Severity::High as i32,
        rsit_class: RsitClass::MaliciousCode as i32,
        rsit_type: RsitType::C2Server as i32,
        sectors: vec![Nis2Sector::Health as i32, Nis2Sector::Energy as i32],
        subsectors: vec![Nis2Subsector::Electricity as i32],
        affected_countries: vec!["EE".into(), "UA".into()],
        indicators: vec![
            ind(IndicatorType::Ip, "192.0.2.7"),
            ind(IndicatorType::Cidr, "198.51.100.0/24"),
            ind(IndicatorType::Domain, "evil.example"),
            ind(IndicatorType::Url, "https://evil.example/payload"),
            ind(IndicatorType::Email, "phish@evil.example"),
            ind(IndicatorType::Sha256, &"a".repeat(64)),
            ind(IndicatorType::Sha1, &"B".repeat(40)),
            ind(IndicatorType::Md5, &"0".repeat(32)),
            ind(IndicatorType::Cve, "CVE-2024-3400"),
            ind(IndicatorType::Asn, "AS64500"),
            ind(IndicatorType::Text, "seen in phishing wave 3"),
        ],
        references: vec!["https://cert.example/advisory/1".into()],
        expires: Some(Timestamp {
            seconds: CREATED / 1000 + 86_400,
            nanos: 0,
        }),
        revision: Revision::Original as i32,
        supersedes: String::new(),
        exercise: false,
    }
}

fn check(a: &Alert) -> Result<(), ValidationError> {
    validate_alert(a, CREATED, a.encoded_len(), &Limits::default())
}

/// Asserts the alert fails on `field` with a message containing `fragment`.
#[track_caller]
fn fails(a: &Alert, field: &str, fragment: &str) {
    let e = check(a).expect_err("expected a validation error");
    assert_eq!(e.field, field, "wrong field in {e}");
    assert!(
        e.rule.contains(fragment),
        "{e:?} does not mention {fragment:?}"
    );
    assert!(e.to_string().starts_with(&format!("{field}: ")));
}

#[test]
fn limits_default() {
    let l = Limits::default();
    assert_eq!(l.max_message_bytes, 262_144);
    assert_eq!(l.max_indicators, 10_000);
    assert_eq!(l.max_title_chars, 200);
}

#[test]
fn good_alert_passes() {
    check(&good()).unwrap();
    // Minimal alert: only the required fields.
    let a = Alert {
        title: "x".into(),
        tlp: Tlp::Clear as i32,
        severity: Severity::Low as i32,
        ..Default::default()
    };
    check(&a).unwrap();
}

#[test]
fn size_limit() {
    let a = good();
    let l = Limits {
        max_message_bytes: 100,
        ..Limits::default()
    };
    let e = validate_alert(&a, CREATED, 101, &l).unwrap_err();
    assert_eq!(e.field, "alert");
    assert_eq!(
        e.rule,
        "alert is 101 bytes, over the node's limit of 100 bytes (limits.max_message_bytes); split it or raise the limit"
    );
    validate_alert(&a, CREATED, 100, &l).unwrap();
}

#[test]
fn title_rules() {
    let mut a = good();
    a.title = String::new();
    fails(&a, "alert.title", "required");
    a.title = "   \t".into();
    fails(&a, "alert.title", "required");
    a.title = "é".repeat(200);
    check(&a).unwrap();
    a.title = "é".repeat(201);
    fails(&a, "alert.title", "201 characters, over the limit of 200");
}

#[test]
fn tlp_rules() {
    let mut a = good();
    a.tlp = Tlp::Unspecified as i32;
    fails(&a, "alert.tlp", "required");
    a.tlp = 42;
    fails(&a, "alert.tlp", "unknown TLP value 42");
    for t in ALL_TLPS {
        a.tlp = t as i32;
        check(&a).unwrap();
    }
}

#[test]
fn severity_rules() {
    let mut a = good();
    a.severity = 0;
    fails(&a, "alert.severity", "required");
    a.severity = -1;
    fails(&a, "alert.severity", "unknown severity value -1");
    for s in ALL_SEVERITIES {
        a.severity = s as i32;
        check(&a).unwrap();
    }
}

#[test]
fn rsit_rules() {
    let mut a = good();
    a.rsit_type = 0;
    a.rsit_class = 0;
    check(&a).unwrap();
    a.rsit_class = 99;
    fails(&a, "alert.rsit_class", "unknown RSIT class value 99");
}

#[test]
fn rsit_type_rules() {
    let mut a = good();
    a.rsit_type = 0;
    check(&a).unwrap();
    a.rsit_class = 0;
    check(&a).unwrap();
    a.rsit_type = RsitType::SystemCompromise as i32;
    fails(
        &a,
        "alert.rsit_type",
        "system-compromise needs its class: set rsit_class to RSIT_CLASS_INTRUSIONS",
    );
    a.rsit_class = RsitClass::Fraud as i32;
    fails(
        &a,
        "alert.rsit_type",
        "belongs to class intrusions, not fraud",
    );
    a.rsit_class = RsitClass::Intrusions as i32;
    check(&a).unwrap();
    a.rsit_type = 999;
    fails(&a, "alert.rsit_type", "unknown RSIT type value 999");
}

#[test]
fn subsector_rules() {
    let mut a = good();
    a.subsectors = vec![Nis2Subsector::Rail as i32];
    fails(
        &a,
        "alert.subsectors[0]",
        "subsector rail belongs to sector transport; list NIS2_SECTOR_TRANSPORT in sectors too",
    );
    a.sectors.push(Nis2Sector::Transport as i32);
    check(&a).unwrap();
    a.subsectors.push(Nis2Subsector::Rail as i32);
    fails(&a, "alert.subsectors[1]", "listed twice");
    a.subsectors = vec![0];
    fails(&a, "alert.subsectors[0]", "NIS2_SUBSECTOR_UNSPECIFIED");
    a.subsectors = vec![777];
    fails(
        &a,
        "alert.subsectors[0]",
        "unknown NIS2 subsector value 777",
    );
}

#[test]
fn sector_rules() {
    let mut a = good();
    a.sectors = vec![Nis2Sector::Energy as i32, 0];
    fails(
        &a,
        "alert.sectors[1]",
        "NIS2_SECTOR_UNSPECIFIED is not a sector",
    );
    a.sectors = vec![19];
    fails(&a, "alert.sectors[0]", "unknown NIS2 sector value 19");
    a.sectors = vec![1, 2, 1];
    fails(&a, "alert.sectors[2]", "energy is listed twice");
    a.sectors = ALL_SECTORS.iter().map(|s| *s as i32).collect();
    check(&a).unwrap();
    a.sectors.clear();
    a.subsectors.clear();
    check(&a).unwrap();
}

#[test]
fn country_rules() {
    let mut a = good();
    a.affected_countries = vec!["EE".into(), "ee".into()];
    fails(
        &a,
        "alert.affected_countries[1]",
        "must be upper case: write \"EE\"",
    );
    a.affected_countries = vec!["EST".into()];
    fails(&a, "alert.affected_countries[0]", "not a two-letter");
    a.affected_countries = vec!["E1".into()];
    fails(&a, "alert.affected_countries[0]", "not a two-letter");
    a.affected_countries = vec!["QQ".into()];
    fails(
        &a,
        "alert.affected_countries[0]",
        "not an assigned ISO 3166-1 alpha-2",
    );
    a.affected_countries = vec!["UK".into()];
    fails(&a, "alert.affected_countries[0]", "use \"GB\"");
    a.affected_countries = vec!["EL".into()];
    fails(&a, "alert.affected_countries[0]", "use \"GR\"");
    a.affected_countries = vec!["zz".into()];
    fails(&a, "alert.affected_countries[0]", "not an assigned");
    a.affected_countries = ISO_3166_ALPHA2.iter().map(|c| c.to_string()).collect();
    check(&a).unwrap();
}

#[test]
fn indicator_count_limit() {
    let mut a = good();
    a.indicators = vec![ind(IndicatorType::Ip, "192.0.2.1"); 3];
    let l = Limits {
        max_indicators: 2,
        ..Limits::default()
    };
    let e = validate_alert(&a, CREATED, 10, &l).unwrap_err();
    assert_eq!(e.field, "alert.indicators");
    assert!(
        e.rule.contains("3 indicators, over the node's limit of 2"),
        "{e}"
    );
    a.indicators.pop();
    validate_alert(&a, CREATED, 10, &l).unwrap();
}

#[test]
fn indicator_type_required() {
    let mut a = good();
    a.indicators[2] = ind(IndicatorType::Unspecified, "evil.example");
    fails(
        &a,
        "alert.indicators[2].type",
        "required: set the indicator type",
    );
    a.indicators[2].r#type = 77;
    fails(
        &a,
        "alert.indicators[2].type",
        "unknown indicator type value 77",
    );
    assert!(validate_indicator(&a.indicators[2]).is_err());
}

#[test]
fn indicator_value_field_path() {
    let mut a = good();
    a.indicators[3] = ind(IndicatorType::Ip, "999.1.1.1");
    fails(
        &a,
        "alert.indicators[3].value",
        "not an IPv4 or IPv6 address",
    );
}

#[test]
fn reference_rules() {
    let mut a = good();
    a.references = vec!["ok".into(), " ".into()];
    fails(&a, "alert.references[1]", "empty reference");
    a.references = vec!["x".repeat(2049)];
    fails(
        &a,
        "alert.references[0]",
        "2049 characters, over the limit of 2048",
    );
    a.references = vec!["x".repeat(2048), "ENISA-2024-17".into()];
    check(&a).unwrap();
}

#[test]
fn expires_rules() {
    let mut a = good();
    a.expires = Some(Timestamp {
        seconds: CREATED / 1000,
        nanos: 0,
    });
    fails(&a, "alert.expires", "not after the creation time");
    a.expires = Some(Timestamp {
        seconds: CREATED / 1000 - 10,
        nanos: 0,
    });
    fails(&a, "alert.expires", "not after the creation time");
    a.expires = Some(Timestamp {
        seconds: CREATED / 1000,
        nanos: 1_000_000,
    });
    check(&a).unwrap();
    a.expires = Some(Timestamp {
        seconds: CREATED / 1000 + 1,
        nanos: -1,
    });
    fails(&a, "alert.expires", "invalid timestamp");
    // Extremes never overflow: they are refused as dates no one can mean.
    a.expires = Some(Timestamp {
        seconds: i64::MAX,
        nanos: 999_999_999,
    });
    fails(&a, "alert.expires", "outside years 0001 to 9999");
    a.expires = Some(Timestamp {
        seconds: 253_402_300_799,
        nanos: 999_999_999,
    });
    check(&a).unwrap();
    a.expires = Some(Timestamp {
        seconds: i64::MIN,
        nanos: 0,
    });
    fails(&a, "alert.expires", "outside years 0001 to 9999");
    a.expires = None;
    check(&a).unwrap();
}

#[test]
fn revision_rules() {
    let mut a = good();
    a.revision = Revision::Update as i32;
    fails(&a, "alert.supersedes", "required for REVISION_UPDATE");
    a.supersedes = "  ".into();
    fails(&a, "alert.supersedes", "required for REVISION_UPDATE");
    a.revision = Revision::Retraction as i32;
    a.supersedes = String::new();
    fails(&a, "alert.supersedes", "required for REVISION_RETRACTION");
    a.supersedes = "0190f5f2-7d3c-7a8b-9c1d-2e3f4a5b6c7d".into();
    check(&a).unwrap();
    a.revision = Revision::Update as i32;
    check(&a).unwrap();
    a.revision = Revision::Original as i32;
    fails(
        &a,
        "alert.supersedes",
        "an ORIGINAL alert supersedes nothing",
    );
    a.revision = 9;
    fails(&a, "alert.revision", "unknown revision value 9");
}

#[test]
fn expiry_must_be_a_real_date() {
    let mut a = good();
    a.expires = Some(Timestamp {
        seconds: i64::MAX / 2,
        nanos: 0,
    });
    fails(&a, "alert.expires", "outside years 0001 to 9999");
}

#[test]
fn supersedes_must_be_a_message_id() {
    let mut a = good();
    a.revision = Revision::Update as i32;
    a.supersedes = "not-an-id".into();
    fails(&a, "alert.supersedes", "is not a message id");
    a.supersedes = "x".repeat(20_000);
    let e = check(&a).unwrap_err();
    assert!(
        e.rule.len() < 300,
        "the input is not echoed whole: {}",
        e.rule.len()
    );
}

#[test]
fn every_free_text_field_refuses_control_and_bidi_characters() {
    type Set = fn(&mut Alert, &str);
    let fields: &[(&str, Set)] = &[
        ("alert.title", |a, s| a.title = format!("t{s}")),
        ("alert.description", |a, s| a.description = format!("d{s}")),
        ("alert.indicators[10].value", |a, s| {
            a.indicators[10].value = format!("v{s}")
        }),
        ("alert.indicators[0].comment", |a, s| {
            a.indicators[0].comment = format!("c{s}")
        }),
        ("alert.references[0]", |a, s| {
            a.references[0] = format!("r{s}")
        }),
    ];
    for (field, set) in fields {
        for bad in [
            "\u{1b}[31m",
            "\u{9b}",
            "\u{202e}",
            "\u{2067}",
            "\u{7f}",
            "\r",
        ] {
            let mut a = good();
            set(&mut a, bad);
            let e = check(&a).expect_err(field);
            assert_eq!(&e.field, field, "{bad:?}: {e}");
            assert!(e.rule.contains("U+"), "{e}");
        }
        let mut a = good();
        set(&mut a, "é ✓ 日本");
        check(&a).unwrap();
    }
    // Line breaks: in the description, not in the title.
    let mut a = good();
    a.description = "line 1\r\nline 2\n\tmore".into();
    check(&a).unwrap();
    a.title = "two\nlines".into();
    fails(&a, "alert.title", "single line");
}
