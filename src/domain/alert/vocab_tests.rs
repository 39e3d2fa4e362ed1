//! Unit tests of the vocabularies: every label parses back to its value, the `ALL_*`
//! lists are complete, and the ISO 3166 list is complete and sorted.
use super::*;
use crate::proto::v1::{Nis2Sector, Nis2Subsector, RsitClass, RsitType, Severity, Tlp};

#[test]
fn iso_list_is_complete_and_sorted() {
    assert_eq!(ISO_3166_ALPHA2.len(), 249);
    assert!(
        ISO_3166_ALPHA2.windows(2).all(|w| w[0] < w[1]),
        "sorted and unique"
    );
    assert!(
        ISO_3166_ALPHA2
            .iter()
            .all(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
    );
    for c in [
        "UA", "EE", "GB", "US", "JP", "NO", "CH", "SG", "MX", "CA", "AU", "SS", "XK",
    ] {
        assert_eq!(ISO_3166_ALPHA2.contains(&c), c != "XK", "{c}");
    }
}

#[test]
fn severity_parse_and_labels() {
    for s in ALL_SEVERITIES {
        assert_eq!(parse_severity(severity_label(s)), Ok(s));
        assert_eq!(parse_severity(&severity_label(s).to_uppercase()), Ok(s));
        assert_eq!(parse_severity(s.as_str_name()), Ok(s));
    }
    assert_eq!(severity_label(Severity::High), "high");
    for s in ["", "unspecified", "SEVERITY_UNSPECIFIED", "severe"] {
        let e = parse_severity(s).unwrap_err();
        assert!(e.contains("low, medium, high, critical"), "{e}");
    }
}

#[test]
fn sector_parse_and_labels() {
    let expected = [
        "energy",
        "transport",
        "banking",
        "financial",
        "health",
        "drinking-water",
        "waste-water",
        "digital-infrastructure",
        "ict-services",
        "public-administration",
        "space",
        "courier",
        "waste-management",
        "chemical",
        "food",
        "manufacturing",
        "digital-providers",
        "research",
    ];
    for (s, label) in ALL_SECTORS.into_iter().zip(expected) {
        assert_eq!(sector_label(s), label);
        assert_eq!(parse_sector(label), Ok(s));
        assert_eq!(parse_sector(s.as_str_name()), Ok(s));
        assert_eq!(parse_sector(&label.to_uppercase()), Ok(s));
    }
    // Every enum value except UNSPECIFIED is in ALL_SECTORS.
    let n = (0..100)
        .filter(|i| Nis2Sector::try_from(*i).is_ok())
        .count();
    assert_eq!(n, ALL_SECTORS.len() + 1);
    assert_eq!(
        parse_sector("ict service management"),
        Ok(Nis2Sector::IctServiceManagement)
    );
    // The labels certfed used before the MISP nis2 taxonomy still parse.
    for (old, s) in [
        (
            "financial-market-infrastructures",
            Nis2Sector::FinancialMarketInfrastructures,
        ),
        ("ict-service-management", Nis2Sector::IctServiceManagement),
        ("postal-and-courier", Nis2Sector::PostalAndCourier),
        ("chemicals", Nis2Sector::Chemicals),
    ] {
        assert_eq!(parse_sector(old), Ok(s), "{old}");
        assert!(sector_legacy_labels(s).contains(&old));
    }
    for s in ["", "unspecified", "NIS2_SECTOR_UNSPECIFIED", "nuclear"] {
        let e = parse_sector(s).unwrap_err();
        assert!(
            e.contains("energy, transport") && e.contains("research"),
            "{e}"
        );
    }
}

#[test]
fn rsit_parse_and_labels() {
    let expected = [
        "abusive-content",
        "malicious-code",
        "information-gathering",
        "intrusion-attempts",
        "intrusions",
        "availability",
        "information-content-security",
        "fraud",
        "vulnerable",
        "other",
        "test",
    ];
    for (r, label) in ALL_RSIT.into_iter().zip(expected) {
        assert_eq!(rsit_label(r), label);
        assert_eq!(parse_rsit(label), Ok(r));
        assert_eq!(parse_rsit(r.as_str_name()), Ok(r));
    }
    let n = (0..100).filter(|i| RsitClass::try_from(*i).is_ok()).count();
    assert_eq!(n, ALL_RSIT.len() + 1);
    for s in ["", "unspecified", "RSIT_CLASS_UNSPECIFIED", "spam"] {
        let e = parse_rsit(s).unwrap_err();
        assert!(e.contains("abusive-content, malicious-code"), "{e}");
    }
}

/// The RSIT types are exactly the values of the MISP `rsit` taxonomy (version
/// 1003), each under its predicate (class).
#[test]
fn rsit_types_follow_the_misp_taxonomy() {
    let taxonomy: &[(&str, &[&str])] = &[
        ("abusive-content", &["spam", "harmful-speech", "violence"]),
        (
            "malicious-code",
            &[
                "infected-system",
                "c2-server",
                "malware-distribution",
                "malware-configuration",
            ],
        ),
        (
            "information-gathering",
            &["scanner", "sniffing", "social-engineering"],
        ),
        (
            "intrusion-attempts",
            &["ids-alert", "brute-force", "exploit"],
        ),
        (
            "intrusions",
            &[
                "privileged-account-compromise",
                "unprivileged-account-compromise",
                "application-compromise",
                "system-compromise",
                "burglary",
            ],
        ),
        (
            "availability",
            &["dos", "ddos", "misconfiguration", "sabotage", "outage"],
        ),
        (
            "information-content-security",
            &[
                "unauthorised-information-access",
                "unauthorised-information-modification",
                "data-loss",
                "data-leak",
            ],
        ),
        (
            "fraud",
            &[
                "unauthorised-use-of-resources",
                "copyright",
                "masquerade",
                "phishing",
            ],
        ),
        (
            "vulnerable",
            &[
                "weak-crypto",
                "ddos-amplifier",
                "potentially-unwanted-accessible",
                "information-disclosure",
                "vulnerable-system",
            ],
        ),
        ("other", &["other", "undetermined"]),
        ("test", &["test"]),
    ];
    let flat: Vec<(&str, &str)> = taxonomy
        .iter()
        .flat_map(|(c, ts)| ts.iter().map(move |t| (*c, *t)))
        .collect();
    assert_eq!(flat.len(), ALL_RSIT_TYPES.len());
    for (t, (class, label)) in ALL_RSIT_TYPES.into_iter().zip(flat) {
        assert_eq!(rsit_type_label(t), label);
        assert_eq!(rsit_label(rsit_type_class(t)), class);
        assert_eq!(parse_rsit_type(label), Ok(t));
        assert_eq!(parse_rsit_type(t.as_str_name()), Ok(t));
        assert_eq!(parse_rsit_type(&format!("{class}:{label}")), Ok(t));
        assert_eq!(
            parse_vocab_tag(&format!("rsit:{class}=\"{label}\"")),
            Ok(Some(VocabTag::Rsit(rsit_type_class(t), t)))
        );
        assert_eq!(
            rsit_tag(rsit_type_class(t), t).unwrap(),
            format!("rsit:{class}=\"{label}\"")
        );
    }
    let n = (0..200).filter(|i| RsitType::try_from(*i).is_ok()).count();
    assert_eq!(n, ALL_RSIT_TYPES.len() + 1);
    assert_eq!(
        parse_rsit_type("unauthorized-use-of-resources"),
        Ok(RsitType::UnauthorisedUseOfResources)
    );
    let e = parse_rsit_type("fraud:system-compromise").unwrap_err();
    assert!(e.contains("belongs to class intrusions, not fraud"), "{e}");
    let e = parse_rsit_type("nonsense").unwrap_err();
    assert!(e.contains("system-compromise"), "{e}");
    assert_eq!(
        rsit_tag(RsitClass::Intrusions, RsitType::Unspecified).as_deref(),
        Some("rsit:intrusions")
    );
    assert_eq!(
        rsit_tag(RsitClass::Unspecified, RsitType::Unspecified),
        None
    );
}

/// The subsectors are exactly the `impact-subsectors-impacted` values of the MISP
/// `nis2` taxonomy, each under its sector.
#[test]
fn subsectors_follow_the_misp_taxonomy() {
    let labels: Vec<&str> = ALL_SUBSECTORS.iter().map(|s| subsector_label(*s)).collect();
    assert_eq!(
        labels,
        [
            "electricity",
            "district-heating-and-cooling",
            "oil",
            "gas",
            "hydrogen",
            "air",
            "rail",
            "water",
            "road",
            "banking-subsector",
            "financial-subsector",
            "health-subsector",
            "drinking-water-subsector",
            "waste-water-subsector",
            "digital-infrastructure-subsector",
            "ict-management-subsector",
            "public-administration-subsector",
            "space-subsector",
            "courier-subsector",
            "waste-management-subsector",
            "chemical-subsector",
            "food-subsector",
            "medical-devices-subsector",
            "electronic-optical-subsector",
            "electrical-equipment-subsector",
            "machine-tool-subsector",
            "vehicle-manufacturing-subsector",
            "other-transport-equipment-subsector",
            "digital-providers-subsector",
            "research-subsector",
        ]
    );
    for s in ALL_SUBSECTORS {
        assert_eq!(parse_subsector(subsector_label(s)), Ok(s));
        assert_eq!(parse_subsector(s.as_str_name()), Ok(s));
        assert_ne!(subsector_sector(s), Nis2Sector::Unspecified);
        assert_eq!(
            parse_vocab_tag(&subsector_tag(s)),
            Ok(Some(VocabTag::Subsector(s)))
        );
    }
    let n = (0..200)
        .filter(|i| Nis2Subsector::try_from(*i).is_ok())
        .count();
    assert_eq!(n, ALL_SUBSECTORS.len() + 1);
    assert_eq!(subsector_sector(Nis2Subsector::Rail), Nis2Sector::Transport);
    assert_eq!(
        subsector_sector(Nis2Subsector::Electricity),
        Nis2Sector::Energy
    );
    assert_eq!(
        subsector_sector(Nis2Subsector::MedicalDevices),
        Nis2Sector::Manufacturing
    );
    assert_eq!(parse_subsector("banking"), Ok(Nis2Subsector::Banking));
    assert!(parse_subsector("nuclear").unwrap_err().contains("rail"));
    for s in ALL_SECTORS {
        assert_eq!(
            parse_vocab_tag(&sector_tag(s)),
            Ok(Some(VocabTag::Sector(s)))
        );
    }
    assert_eq!(
        sector_tag(Nis2Sector::FinancialMarketInfrastructures),
        "nis2:impact-sectors-impacted=\"financial\""
    );
}

#[test]
fn tlp_machine_tags() {
    for t in crate::domain::policy::ALL_TLPS {
        assert_eq!(parse_tlp_tag(tlp_tag(t)), Ok(Some(t)));
        assert_eq!(parse_vocab_tag(tlp_tag(t)), Ok(Some(VocabTag::Tlp(t))));
    }
    assert_eq!(tlp_tag(Tlp::AmberStrict), "tlp:amber+strict");
    assert_eq!(parse_tlp_tag("tlp:white"), Ok(Some(Tlp::Clear)));
    assert_eq!(parse_tlp_tag("TLP:RED"), Ok(Some(Tlp::Red)));
    assert_eq!(parse_tlp_tag("pap:green"), Ok(None));
    assert!(
        parse_tlp_tag("tlp:ex:chr")
            .unwrap_err()
            .contains("Chatham House")
    );
    assert!(
        parse_tlp_tag("tlp:unclear")
            .unwrap_err()
            .contains("not a TLP 2.0 level")
    );
    assert_eq!(parse_vocab_tag("nis2:impact-severity=\"red\""), Ok(None));
    assert_eq!(parse_vocab_tag("osint:source-type=\"blog-post\""), Ok(None));
    assert!(parse_vocab_tag("nis2:impact-sectors-impacted=\"nuclear\"").is_err());
    assert!(parse_vocab_tag("rsit:nonsense").is_err());
}

/// The integer-keyed lookup accepts exactly the listed codes: every pair of
/// printable ASCII characters, every listed code in lower and mixed case,
/// and texts of other lengths.
#[test]
fn country_check_accepts_exactly_the_list() {
    for a in 0x20u8..0x7f {
        for b in 0x20u8..0x7f {
            let c = String::from_utf8(vec![a, b]).unwrap();
            let listed = ISO_3166_ALPHA2.contains(&c.as_str());
            let upper_listed = ISO_3166_ALPHA2.contains(&c.to_ascii_uppercase().as_str());
            match validate_country(&c) {
                Ok(()) => assert!(listed, "{c:?} accepted"),
                Err(e) if upper_listed && !listed => {
                    assert!(e.contains("must be upper case"), "{c:?}: {e}")
                }
                Err(e) => assert!(!listed && !e.contains("upper case"), "{c:?}: {e}"),
            }
        }
    }
    for c in ["", "E", "EEE", "ÉE", "é", "\u{0}\u{0}", "\u{ffff}"] {
        assert!(validate_country(c).is_err(), "{c:?}");
    }
}
