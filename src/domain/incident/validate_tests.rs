//! Content rules: absurd counts and times, ids, text, and the header facts.
use super::*;
use crate::domain::envelope::ms_to_ts;
use crate::proto::v1::{
    IncidentLink, IncidentMerge, IncidentStatus, IncidentStatusChange, Indicator, IndicatorType,
    MessageKind, Sighting, Tlp,
};
use prost::Message;

const NOW: i64 = 1_750_000_000_000;
const INC: &str = "00000000-0000-7000-8000-000000000001";

fn good() -> Sighting {
    Sighting {
        incident_id: INC.into(),
        indicators: vec![Indicator {
            r#type: IndicatorType::Ip as i32,
            value: "192.0.2.7".into(),
            comment: String::new(),
        }],
        country: "EE".into(),
        observed: Some(ms_to_ts(NOW - 60_000)),
        count: 12,
        tlp: Tlp::Green as i32,
        ..Default::default()
    }
}

fn field(s: &Sighting) -> String {
    validate_sighting(s, NOW).unwrap_err().field
}

#[test]
fn a_good_sighting_passes() {
    validate_sighting(&good(), NOW).unwrap();
}

#[test]
fn absurd_counts_and_times_are_refused() {
    let mut s = good();
    s.count = 0;
    assert_eq!(field(&s), "sighting.count");
    s.count = MAX_SIGHTING_COUNT + 1;
    assert_eq!(field(&s), "sighting.count");
    let mut s = good();
    s.observed = Some(ms_to_ts(NOW + 3_600_000));
    let e = validate_sighting(&s, NOW).unwrap_err();
    assert!(e.rule.contains("future"), "{e}");
    s.observed = Some(ms_to_ts(0));
    assert_eq!(field(&s), "sighting.observed");
    s.observed = Some(prost_types::Timestamp {
        seconds: i64::MAX,
        nanos: 0,
    });
    assert_eq!(field(&s), "sighting.observed");
    s.observed = None;
    assert_eq!(field(&s), "sighting.observed");
}

#[test]
fn sighting_fields_are_checked() {
    let mut s = good();
    s.country = "XX".into();
    assert_eq!(field(&s), "sighting.country");
    let mut s = good();
    s.incident_id = "nope".into();
    assert_eq!(field(&s), "sighting.incident_id");
    let mut s = good();
    s.incident_id.clear();
    s.indicators.clear();
    assert_eq!(field(&s), "sighting.indicators");
    let mut s = good();
    s.note = "bad \u{202e} text".into();
    assert_eq!(field(&s), "sighting.note");
    let mut s = good();
    s.indicators[0].value = "999.1.1.1".into();
    assert_eq!(field(&s), "sighting.indicators[0].value");
    let mut s = good();
    s.indicators = vec![s.indicators[0].clone(); MAX_SIGHTING_INDICATORS + 1];
    assert_eq!(field(&s), "sighting.indicators");
    let mut s = good();
    s.tlp = 0;
    assert_eq!(field(&s), "sighting.tlp");
}

#[test]
fn status_link_merge_rules() {
    let st = IncidentStatusChange {
        incident_id: INC.into(),
        status: IncidentStatus::Open as i32,
        note: String::new(),
    };
    assert_eq!(validate_status(&st).unwrap_err().field, "status.status");
    let l = IncidentLink {
        incident_id: INC.into(),
        message_id: INC.into(),
        note: String::new(),
    };
    assert_eq!(validate_link(&l).unwrap_err().field, "link.message_id");
    let m = IncidentMerge {
        incident_id: INC.into(),
        other_incident_id: INC.into(),
        note: String::new(),
    };
    assert_eq!(
        validate_merge(&m).unwrap_err().field,
        "merge.other_incident_id"
    );
}

#[test]
fn header_and_payload_must_name_the_same_incident() {
    let body = good().encode_to_vec();
    let k = MessageKind::Sighting as i32;
    let f = facts(k, INC, Some(&body), Tlp::Green as i32, NOW).unwrap();
    assert_eq!(f.incident_id.as_deref(), Some(INC));
    assert_eq!(
        f.keys,
        ["i:1:192.0.2.7", "m:i:1:192.0.2.7"],
        "a member is also indexed for correlation"
    );
    let loose = facts(MessageKind::Alert as i32, "", Some(&[]), 2, NOW).unwrap();
    assert!(loose.keys.is_empty() && loose.incident_id.is_none());
    let other = "00000000-0000-7000-8000-000000000002";
    assert!(facts(k, other, Some(&body), Tlp::Green as i32, NOW).is_err());
    assert!(
        facts(k, INC, Some(&body), Tlp::Amber as i32, NOW).is_err(),
        "TLP must equal the envelope's"
    );
    // A relay checks the header alone.
    assert!(facts(k, INC, None, Tlp::Green as i32, NOW).is_ok());
    assert!(facts(k, "garbage", None, Tlp::Green as i32, NOW).is_err());
    // Only alerts and incident messages belong to incidents.
    assert!(facts(MessageKind::Offer as i32, INC, None, 2, NOW).is_err());
    assert!(facts(MessageKind::Alert as i32, INC, None, 2, NOW).is_ok());
}

#[test]
fn indicator_keys_ignore_meaningless_case() {
    let k = |t: IndicatorType, v: &str| {
        indicator_key(&Indicator {
            r#type: t as i32,
            value: v.into(),
            comment: String::new(),
        })
    };
    assert_eq!(
        k(IndicatorType::Domain, "Evil.Example"),
        k(IndicatorType::Domain, "evil.example")
    );
    assert_eq!(
        k(IndicatorType::Asn, "AS64500"),
        k(IndicatorType::Asn, "64500")
    );
    assert_ne!(k(IndicatorType::Text, "A"), k(IndicatorType::Text, "a"));
    assert!(
        k(
            IndicatorType::Url,
            &format!("https://x.example/{}", "a".repeat(500))
        )
        .len()
            <= 80
    );
}

/// The key built in one string is the key of its definition (normal form,
/// then `i:<type>:<form>`, hashed past 80 bytes) — stored keys stay what
/// they were — for every type (and unknown ones), case and `as` prefixes,
/// text that is not ASCII, and lengths on both sides of the hashing limit.
#[test]
fn indicator_keys_are_those_of_their_definition() {
    fn by_definition(ind: &Indicator) -> String {
        use sha2::{Digest, Sha256};
        let v = ind.value.as_str();
        let norm = match IndicatorType::try_from(ind.r#type) {
            Ok(IndicatorType::Text | IndicatorType::Url) => v.to_string(),
            Ok(IndicatorType::Cve) => v.to_ascii_uppercase(),
            Ok(IndicatorType::Asn) => {
                let l = v.to_ascii_lowercase();
                l.strip_prefix("as").unwrap_or(&l).to_string()
            }
            _ => v.to_ascii_lowercase(),
        };
        let key = format!("i:{}:{norm}", ind.r#type);
        if key.len() <= 80 {
            return key;
        }
        let d = Sha256::digest(norm.as_bytes());
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        format!("i:{}#{hex}", ind.r#type)
    }
    let mut values: Vec<String> = [
        "",
        "a",
        "A",
        "as",
        "AS",
        "As64500",
        "AS64500",
        "asn",
        "64500",
        "cve-2024-1234",
        "CVE-2024-1234",
        "Evil.Example",
        "192.0.2.7",
        "2001:DB8::1",
        "Ünïcödé.Example",
        "https://X.example/Path?Q=1",
        "mail@Example.ORG",
        "AbCdEf0123",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for n in 60..=90 {
        values.push(format!("AS{}", "Xy".repeat(n / 2)));
        values.push("é".repeat(n / 2));
        values.push("Z".repeat(n));
    }
    let mut checked = 0;
    for t in -1..=20 {
        for v in &values {
            let ind = Indicator {
                r#type: t,
                value: v.clone(),
                comment: String::new(),
            };
            assert_eq!(indicator_key(&ind), by_definition(&ind), "type {t}, {v:?}");
            checked += 1;
        }
    }
    assert!(checked > 2_000);
}

#[test]
fn an_alerts_keys_decoded_once_are_the_keys_of_its_payload() {
    let ind = |t: IndicatorType, v: &str| Indicator {
        r#type: t as i32,
        value: v.into(),
        comment: String::new(),
    };
    let alert = crate::proto::v1::Alert {
        title: "keys".into(),
        indicators: vec![
            ind(IndicatorType::Domain, "Evil.Example"),
            ind(IndicatorType::Ip, "192.0.2.7"),
            ind(IndicatorType::Domain, "evil.example"),
        ],
        ..Default::default()
    };
    let body = alert.encode_to_vec();
    let k = MessageKind::Alert as i32;
    for inc in ["", INC] {
        let decoded = facts(k, inc, Some(&body), 2, NOW).unwrap();
        let keyed = facts_keyed(k, inc, Some(&body), Some(alert_keys(&alert)), 2, NOW).unwrap();
        assert_eq!(decoded, keyed, "incident {inc:?}");
        assert_eq!(decoded.keys.len(), if inc.is_empty() { 2 } else { 4 });
    }
    // Keys without a readable body (a relay) are not taken.
    let relay = facts_keyed(k, INC, None, Some(alert_keys(&alert)), 2, NOW).unwrap();
    assert!(relay.keys.is_empty());
}

/// The prefixed keys are those of their definition (stored keys stay
/// valid): member, assistance and naming keys of empty, plain, long and
/// non-ASCII texts.
#[test]
fn prefixed_keys_are_those_of_their_definition() {
    let long = "x".repeat(300);
    for s in ["", "i:1:192.0.2.7", INC, "ünïcödé · 東京", long.as_str()] {
        assert_eq!(member_key(s), format!("m:{s}"));
        assert_eq!(assistance_key(s), format!("a:{s}"));
        assert_eq!(naming_key(s), format!("n:{s}"));
    }
}
