//! The operator vocabularies: severities, NIS2 sectors, RSIT classes and ISO 3166-1
//! country codes (the TLP words live in [`crate::domain::policy`]).
//!
//! Each enum has one display label per value (`*_label`) and a parser (`parse_*`) that
//! reads back every label and the proto enum name, case-insensitively; UNSPECIFIED is
//! never a parse result, and an unknown word is an error listing the accepted ones. The
//! `ALL_*` lists hold every value but UNSPECIFIED, in display order. Country codes are
//! checked, not parsed: only officially assigned codes, in upper case, pass.
use crate::proto::v1::{Nis2Sector, RsitClass, Severity};

const SEVERITY_WORDS: &str = "low, medium, high, critical";

/// All severities except UNSPECIFIED, lowest first.
pub const ALL_SEVERITIES: [Severity; 4] = [
    Severity::Low,
    Severity::Medium,
    Severity::High,
    Severity::Critical,
];
/// All NIS2 sectors except UNSPECIFIED (Annex I, then Annex II).
pub const ALL_SECTORS: [Nis2Sector; 18] = [
    Nis2Sector::Energy,
    Nis2Sector::Transport,
    Nis2Sector::Banking,
    Nis2Sector::FinancialMarketInfrastructures,
    Nis2Sector::Health,
    Nis2Sector::DrinkingWater,
    Nis2Sector::WasteWater,
    Nis2Sector::DigitalInfrastructure,
    Nis2Sector::IctServiceManagement,
    Nis2Sector::PublicAdministration,
    Nis2Sector::Space,
    Nis2Sector::PostalAndCourier,
    Nis2Sector::WasteManagement,
    Nis2Sector::Chemicals,
    Nis2Sector::Food,
    Nis2Sector::Manufacturing,
    Nis2Sector::DigitalProviders,
    Nis2Sector::Research,
];
/// All RSIT classes except UNSPECIFIED.
pub const ALL_RSIT: [RsitClass; 11] = [
    RsitClass::AbusiveContent,
    RsitClass::MaliciousCode,
    RsitClass::InformationGathering,
    RsitClass::IntrusionAttempts,
    RsitClass::Intrusions,
    RsitClass::Availability,
    RsitClass::InformationContentSecurity,
    RsitClass::Fraud,
    RsitClass::Vulnerable,
    RsitClass::Other,
    RsitClass::Test,
];

/// Display label of a severity: `low`, `medium`, `high`, `critical`.
pub fn severity_label(s: Severity) -> &'static str {
    match s {
        Severity::Unspecified => "unspecified",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// Parses `low|medium|high|critical` (case-insensitive; also the enum names `SEVERITY_HIGH`).
pub fn parse_severity(s: &str) -> Result<Severity, String> {
    let w = s.trim().to_ascii_lowercase();
    let w = w.strip_prefix("severity_").unwrap_or(&w);
    ALL_SEVERITIES
        .into_iter()
        .find(|v| severity_label(*v) == w)
        .ok_or_else(|| format!("unknown severity {s:?}; use one of: {SEVERITY_WORDS}"))
}

/// Display label of a NIS2 sector, e.g. `energy`, `ict-service-management`.
pub fn sector_label(s: Nis2Sector) -> &'static str {
    match s {
        Nis2Sector::Unspecified => "unspecified",
        Nis2Sector::Energy => "energy",
        Nis2Sector::Transport => "transport",
        Nis2Sector::Banking => "banking",
        Nis2Sector::FinancialMarketInfrastructures => "financial-market-infrastructures",
        Nis2Sector::Health => "health",
        Nis2Sector::DrinkingWater => "drinking-water",
        Nis2Sector::WasteWater => "waste-water",
        Nis2Sector::DigitalInfrastructure => "digital-infrastructure",
        Nis2Sector::IctServiceManagement => "ict-service-management",
        Nis2Sector::PublicAdministration => "public-administration",
        Nis2Sector::Space => "space",
        Nis2Sector::PostalAndCourier => "postal-and-courier",
        Nis2Sector::WasteManagement => "waste-management",
        Nis2Sector::Chemicals => "chemicals",
        Nis2Sector::Food => "food",
        Nis2Sector::Manufacturing => "manufacturing",
        Nis2Sector::DigitalProviders => "digital-providers",
        Nis2Sector::Research => "research",
    }
}

/// Lower-cases, drops an enum-name prefix and writes `_`/spaces as `-`.
fn normalise_label(s: &str, enum_prefix: &str) -> String {
    let w = s.trim().to_ascii_lowercase();
    let w = w.strip_prefix(enum_prefix).unwrap_or(&w);
    w.replace(['_', ' '], "-")
}

fn words<T: Copy>(all: &[T], label: fn(T) -> &'static str) -> String {
    all.iter().map(|v| label(*v)).collect::<Vec<_>>().join(", ")
}

/// Parses a NIS2 sector label (`ict-service-management`) or enum name
/// (`NIS2_SECTOR_ICT_SERVICE_MANAGEMENT`), case-insensitive.
pub fn parse_sector(s: &str) -> Result<Nis2Sector, String> {
    let w = normalise_label(s, "nis2_sector_");
    ALL_SECTORS
        .into_iter()
        .find(|v| sector_label(*v) == w)
        .ok_or_else(|| {
            format!(
                "unknown NIS2 sector {s:?}; use one of: {}",
                words(&ALL_SECTORS, sector_label)
            )
        })
}

/// Display label of an RSIT class, e.g. `malicious-code`.
pub fn rsit_label(r: RsitClass) -> &'static str {
    match r {
        RsitClass::Unspecified => "unspecified",
        RsitClass::AbusiveContent => "abusive-content",
        RsitClass::MaliciousCode => "malicious-code",
        RsitClass::InformationGathering => "information-gathering",
        RsitClass::IntrusionAttempts => "intrusion-attempts",
        RsitClass::Intrusions => "intrusions",
        RsitClass::Availability => "availability",
        RsitClass::InformationContentSecurity => "information-content-security",
        RsitClass::Fraud => "fraud",
        RsitClass::Vulnerable => "vulnerable",
        RsitClass::Other => "other",
        RsitClass::Test => "test",
    }
}

/// Parses an RSIT class label (`malicious-code`) or enum name (`RSIT_CLASS_MALICIOUS_CODE`),
/// case-insensitive.
pub fn parse_rsit(s: &str) -> Result<RsitClass, String> {
    let w = normalise_label(s, "rsit_class_");
    ALL_RSIT
        .into_iter()
        .find(|v| rsit_label(*v) == w)
        .ok_or_else(|| {
            format!(
                "unknown RSIT class {s:?}; use one of: {}",
                words(&ALL_RSIT, rsit_label)
            )
        })
}

/// The 249 officially assigned ISO 3166-1 alpha-2 codes, sorted.
#[rustfmt::skip]
pub const ISO_3166_ALPHA2: &[&str] = &[
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS", "BT", "BV", "BW", "BY", "BZ",
    "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ",
    "DE", "DJ", "DK", "DM", "DO", "DZ",
    "EC", "EE", "EG", "EH", "ER", "ES", "ET",
    "FI", "FJ", "FK", "FM", "FO", "FR",
    "GA", "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY",
    "HK", "HM", "HN", "HR", "HT", "HU",
    "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT",
    "JE", "JM", "JO", "JP",
    "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ",
    "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY",
    "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ",
    "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ",
    "OM",
    "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY",
    "QA",
    "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST", "SV", "SX", "SY", "SZ",
    "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR", "TT", "TV", "TW", "TZ",
    "UA", "UG", "UM", "US", "UY", "UZ",
    "VA", "VC", "VE", "VG", "VI", "VN", "VU",
    "WF", "WS",
    "YE", "YT",
    "ZA", "ZM", "ZW",
];

/// Checks an affected-country entry: an upper-case ISO 3166-1 alpha-2 code.
pub fn validate_country(c: &str) -> Result<(), String> {
    if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(format!(
            "{c:?} is not a two-letter ISO 3166-1 alpha-2 country code (e.g. \"EE\", \"UA\")"
        ));
    }
    let upper = c.to_ascii_uppercase();
    if ISO_3166_ALPHA2.binary_search(&upper.as_str()).is_ok() && upper != c {
        return Err(format!("{c:?} must be upper case: write {upper:?}"));
    }
    if ISO_3166_ALPHA2.binary_search(&c).is_ok() {
        return Ok(());
    }
    let hint = match upper.as_str() {
        "UK" => "; use \"GB\" for the United Kingdom",
        "EL" => "; use \"GR\" for Greece",
        "EU" => "; list the affected member states instead",
        _ => "",
    };
    Err(format!(
        "{c:?} is not an assigned ISO 3166-1 alpha-2 country code{hint}"
    ))
}
