//! Unit tests of the vocabularies: every label parses back to its value, the `ALL_*`
//! lists are complete, and the ISO 3166 list is complete and sorted.
use super::*;
use crate::proto::v1::{Nis2Sector, RsitClass, Severity};

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
        "financial-market-infrastructures",
        "health",
        "drinking-water",
        "waste-water",
        "digital-infrastructure",
        "ict-service-management",
        "public-administration",
        "space",
        "postal-and-courier",
        "waste-management",
        "chemicals",
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
