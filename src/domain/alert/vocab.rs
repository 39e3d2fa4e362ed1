//! The operator vocabularies: severities, NIS2 sectors and subsectors, RSIT classes
//! and types, TLP machine tags and ISO 3166-1 country codes (the TLP words live in
//! [`crate::domain::policy`]).
//!
//! The labels are the values of the machine-readable taxonomies MISP and the CSIRT
//! community use (MISP taxonomies `tlp`, `rsit`, `nis2`), so a label is also the value
//! of a machine tag: `tlp:amber+strict`, `rsit:intrusions="system-compromise"`,
//! `nis2:impact-sectors-impacted="financial"`.
//!
//! Each enum has one display label per value (`*_label`) and a parser (`parse_*`) that
//! reads back every label, the proto enum name and the labels certfed used before it
//! followed the taxonomies (e.g. `financial-market-infrastructures` for `financial`),
//! case-insensitively: the enum numbers never change, so no stored or relayed message
//! changes meaning, and old words keep working. UNSPECIFIED is never a parse result,
//! and an unknown word is an error listing the accepted ones. The `ALL_*` lists hold
//! every value but UNSPECIFIED, in display (taxonomy) order. Each RSIT type belongs to
//! one class ([`rsit_type_class`]), each NIS2 subsector to one sector
//! ([`subsector_sector`]). Country codes are checked, not parsed: only officially
//! assigned codes, in upper case, pass.
use crate::proto::v1::{Nis2Sector, Nis2Subsector, RsitClass, RsitType, Severity, Tlp};

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

/// Display label of a NIS2 sector: the value of the MISP `nis2` taxonomy
/// (`nis2:impact-sectors-impacted`), e.g. `energy`, `financial`, `ict-services`.
pub fn sector_label(s: Nis2Sector) -> &'static str {
    match s {
        Nis2Sector::Unspecified => "unspecified",
        Nis2Sector::Energy => "energy",
        Nis2Sector::Transport => "transport",
        Nis2Sector::Banking => "banking",
        Nis2Sector::FinancialMarketInfrastructures => "financial",
        Nis2Sector::Health => "health",
        Nis2Sector::DrinkingWater => "drinking-water",
        Nis2Sector::WasteWater => "waste-water",
        Nis2Sector::DigitalInfrastructure => "digital-infrastructure",
        Nis2Sector::IctServiceManagement => "ict-services",
        Nis2Sector::PublicAdministration => "public-administration",
        Nis2Sector::Space => "space",
        Nis2Sector::PostalAndCourier => "courier",
        Nis2Sector::WasteManagement => "waste-management",
        Nis2Sector::Chemicals => "chemical",
        Nis2Sector::Food => "food",
        Nis2Sector::Manufacturing => "manufacturing",
        Nis2Sector::DigitalProviders => "digital-providers",
        Nis2Sector::Research => "research",
    }
}

/// The labels certfed used for NIS2 sectors before it followed the MISP `nis2`
/// taxonomy; still accepted as input (`parse_sector`, the command line).
pub fn sector_legacy_labels(s: Nis2Sector) -> &'static [&'static str] {
    match s {
        Nis2Sector::FinancialMarketInfrastructures => &["financial-market-infrastructures"],
        Nis2Sector::IctServiceManagement => &["ict-service-management"],
        Nis2Sector::PostalAndCourier => &["postal-and-courier"],
        Nis2Sector::Chemicals => &["chemicals"],
        _ => &[],
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

/// Parses a NIS2 sector label (`ict-services`), a label certfed used before
/// (`ict-service-management`) or the enum name (`NIS2_SECTOR_ICT_SERVICE_MANAGEMENT`),
/// case-insensitive.
pub fn parse_sector(s: &str) -> Result<Nis2Sector, String> {
    let w = normalise_label(s, "nis2_sector_");
    ALL_SECTORS
        .into_iter()
        .find(|v| {
            sector_label(*v) == w
                || sector_legacy_labels(*v).contains(&w.as_str())
                || normalise_label(v.as_str_name(), "nis2_sector_") == w
        })
        .ok_or_else(|| {
            format!(
                "unknown NIS2 sector {}; use one of: {}",
                crate::domain::text::quote(s),
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

/// All RSIT types except UNSPECIFIED, in the order of the MISP `rsit` taxonomy.
pub const ALL_RSIT_TYPES: [RsitType; 39] = [
    RsitType::Spam,
    RsitType::HarmfulSpeech,
    RsitType::Violence,
    RsitType::InfectedSystem,
    RsitType::C2Server,
    RsitType::MalwareDistribution,
    RsitType::MalwareConfiguration,
    RsitType::Scanner,
    RsitType::Sniffing,
    RsitType::SocialEngineering,
    RsitType::IdsAlert,
    RsitType::BruteForce,
    RsitType::Exploit,
    RsitType::PrivilegedAccountCompromise,
    RsitType::UnprivilegedAccountCompromise,
    RsitType::ApplicationCompromise,
    RsitType::SystemCompromise,
    RsitType::Burglary,
    RsitType::Dos,
    RsitType::Ddos,
    RsitType::Misconfiguration,
    RsitType::Sabotage,
    RsitType::Outage,
    RsitType::UnauthorisedInformationAccess,
    RsitType::UnauthorisedInformationModification,
    RsitType::DataLoss,
    RsitType::DataLeak,
    RsitType::UnauthorisedUseOfResources,
    RsitType::Copyright,
    RsitType::Masquerade,
    RsitType::Phishing,
    RsitType::WeakCrypto,
    RsitType::DdosAmplifier,
    RsitType::PotentiallyUnwantedAccessible,
    RsitType::InformationDisclosure,
    RsitType::VulnerableSystem,
    RsitType::Other,
    RsitType::Undetermined,
    RsitType::Test,
];

/// The MISP `rsit` value of an RSIT type (e.g. `system-compromise`); the class is
/// [`rsit_type_class`].
pub fn rsit_type_label(t: RsitType) -> &'static str {
    match t {
        RsitType::Unspecified => "unspecified",
        RsitType::Spam => "spam",
        RsitType::HarmfulSpeech => "harmful-speech",
        RsitType::Violence => "violence",
        RsitType::InfectedSystem => "infected-system",
        RsitType::C2Server => "c2-server",
        RsitType::MalwareDistribution => "malware-distribution",
        RsitType::MalwareConfiguration => "malware-configuration",
        RsitType::Scanner => "scanner",
        RsitType::Sniffing => "sniffing",
        RsitType::SocialEngineering => "social-engineering",
        RsitType::IdsAlert => "ids-alert",
        RsitType::BruteForce => "brute-force",
        RsitType::Exploit => "exploit",
        RsitType::PrivilegedAccountCompromise => "privileged-account-compromise",
        RsitType::UnprivilegedAccountCompromise => "unprivileged-account-compromise",
        RsitType::ApplicationCompromise => "application-compromise",
        RsitType::SystemCompromise => "system-compromise",
        RsitType::Burglary => "burglary",
        RsitType::Dos => "dos",
        RsitType::Ddos => "ddos",
        RsitType::Misconfiguration => "misconfiguration",
        RsitType::Sabotage => "sabotage",
        RsitType::Outage => "outage",
        RsitType::UnauthorisedInformationAccess => "unauthorised-information-access",
        RsitType::UnauthorisedInformationModification => "unauthorised-information-modification",
        RsitType::DataLoss => "data-loss",
        RsitType::DataLeak => "data-leak",
        RsitType::UnauthorisedUseOfResources => "unauthorised-use-of-resources",
        RsitType::Copyright => "copyright",
        RsitType::Masquerade => "masquerade",
        RsitType::Phishing => "phishing",
        RsitType::WeakCrypto => "weak-crypto",
        RsitType::DdosAmplifier => "ddos-amplifier",
        RsitType::PotentiallyUnwantedAccessible => "potentially-unwanted-accessible",
        RsitType::InformationDisclosure => "information-disclosure",
        RsitType::VulnerableSystem => "vulnerable-system",
        RsitType::Other => "other",
        RsitType::Undetermined => "undetermined",
        RsitType::Test => "test",
    }
}

/// The RSIT class an RSIT type belongs to (UNSPECIFIED for UNSPECIFIED).
pub fn rsit_type_class(t: RsitType) -> RsitClass {
    match t {
        RsitType::Unspecified => RsitClass::Unspecified,
        RsitType::Spam | RsitType::HarmfulSpeech | RsitType::Violence => RsitClass::AbusiveContent,
        RsitType::InfectedSystem
        | RsitType::C2Server
        | RsitType::MalwareDistribution
        | RsitType::MalwareConfiguration => RsitClass::MaliciousCode,
        RsitType::Scanner | RsitType::Sniffing | RsitType::SocialEngineering => {
            RsitClass::InformationGathering
        }
        RsitType::IdsAlert | RsitType::BruteForce | RsitType::Exploit => {
            RsitClass::IntrusionAttempts
        }
        RsitType::PrivilegedAccountCompromise
        | RsitType::UnprivilegedAccountCompromise
        | RsitType::ApplicationCompromise
        | RsitType::SystemCompromise
        | RsitType::Burglary => RsitClass::Intrusions,
        RsitType::Dos
        | RsitType::Ddos
        | RsitType::Misconfiguration
        | RsitType::Sabotage
        | RsitType::Outage => RsitClass::Availability,
        RsitType::UnauthorisedInformationAccess
        | RsitType::UnauthorisedInformationModification
        | RsitType::DataLoss
        | RsitType::DataLeak => RsitClass::InformationContentSecurity,
        RsitType::UnauthorisedUseOfResources
        | RsitType::Copyright
        | RsitType::Masquerade
        | RsitType::Phishing => RsitClass::Fraud,
        RsitType::WeakCrypto
        | RsitType::DdosAmplifier
        | RsitType::PotentiallyUnwantedAccessible
        | RsitType::InformationDisclosure
        | RsitType::VulnerableSystem => RsitClass::Vulnerable,
        RsitType::Other | RsitType::Undetermined => RsitClass::Other,
        RsitType::Test => RsitClass::Test,
    }
}

/// All NIS2 subsectors except UNSPECIFIED, in the order of the MISP `nis2` taxonomy.
pub const ALL_SUBSECTORS: [Nis2Subsector; 30] = [
    Nis2Subsector::Electricity,
    Nis2Subsector::DistrictHeatingAndCooling,
    Nis2Subsector::Oil,
    Nis2Subsector::Gas,
    Nis2Subsector::Hydrogen,
    Nis2Subsector::Air,
    Nis2Subsector::Rail,
    Nis2Subsector::Water,
    Nis2Subsector::Road,
    Nis2Subsector::Banking,
    Nis2Subsector::Financial,
    Nis2Subsector::Health,
    Nis2Subsector::DrinkingWater,
    Nis2Subsector::WasteWater,
    Nis2Subsector::DigitalInfrastructure,
    Nis2Subsector::IctManagement,
    Nis2Subsector::PublicAdministration,
    Nis2Subsector::Space,
    Nis2Subsector::Courier,
    Nis2Subsector::WasteManagement,
    Nis2Subsector::Chemical,
    Nis2Subsector::Food,
    Nis2Subsector::MedicalDevices,
    Nis2Subsector::ElectronicOptical,
    Nis2Subsector::ElectricalEquipment,
    Nis2Subsector::MachineTool,
    Nis2Subsector::VehicleManufacturing,
    Nis2Subsector::OtherTransportEquipment,
    Nis2Subsector::DigitalProviders,
    Nis2Subsector::Research,
];

/// The MISP `nis2` value of a subsector (`nis2:impact-subsectors-impacted`), e.g.
/// `rail`, `banking-subsector`.
pub fn subsector_label(s: Nis2Subsector) -> &'static str {
    match s {
        Nis2Subsector::Unspecified => "unspecified",
        Nis2Subsector::Electricity => "electricity",
        Nis2Subsector::DistrictHeatingAndCooling => "district-heating-and-cooling",
        Nis2Subsector::Oil => "oil",
        Nis2Subsector::Gas => "gas",
        Nis2Subsector::Hydrogen => "hydrogen",
        Nis2Subsector::Air => "air",
        Nis2Subsector::Rail => "rail",
        Nis2Subsector::Water => "water",
        Nis2Subsector::Road => "road",
        Nis2Subsector::Banking => "banking-subsector",
        Nis2Subsector::Financial => "financial-subsector",
        Nis2Subsector::Health => "health-subsector",
        Nis2Subsector::DrinkingWater => "drinking-water-subsector",
        Nis2Subsector::WasteWater => "waste-water-subsector",
        Nis2Subsector::DigitalInfrastructure => "digital-infrastructure-subsector",
        Nis2Subsector::IctManagement => "ict-management-subsector",
        Nis2Subsector::PublicAdministration => "public-administration-subsector",
        Nis2Subsector::Space => "space-subsector",
        Nis2Subsector::Courier => "courier-subsector",
        Nis2Subsector::WasteManagement => "waste-management-subsector",
        Nis2Subsector::Chemical => "chemical-subsector",
        Nis2Subsector::Food => "food-subsector",
        Nis2Subsector::MedicalDevices => "medical-devices-subsector",
        Nis2Subsector::ElectronicOptical => "electronic-optical-subsector",
        Nis2Subsector::ElectricalEquipment => "electrical-equipment-subsector",
        Nis2Subsector::MachineTool => "machine-tool-subsector",
        Nis2Subsector::VehicleManufacturing => "vehicle-manufacturing-subsector",
        Nis2Subsector::OtherTransportEquipment => "other-transport-equipment-subsector",
        Nis2Subsector::DigitalProviders => "digital-providers-subsector",
        Nis2Subsector::Research => "research-subsector",
    }
}

/// The NIS2 sector a subsector belongs to (UNSPECIFIED for UNSPECIFIED).
pub fn subsector_sector(s: Nis2Subsector) -> Nis2Sector {
    match s {
        Nis2Subsector::Unspecified => Nis2Sector::Unspecified,
        Nis2Subsector::Electricity
        | Nis2Subsector::DistrictHeatingAndCooling
        | Nis2Subsector::Oil
        | Nis2Subsector::Gas
        | Nis2Subsector::Hydrogen => Nis2Sector::Energy,
        Nis2Subsector::Air | Nis2Subsector::Rail | Nis2Subsector::Water | Nis2Subsector::Road => {
            Nis2Sector::Transport
        }
        Nis2Subsector::Banking => Nis2Sector::Banking,
        Nis2Subsector::Financial => Nis2Sector::FinancialMarketInfrastructures,
        Nis2Subsector::Health => Nis2Sector::Health,
        Nis2Subsector::DrinkingWater => Nis2Sector::DrinkingWater,
        Nis2Subsector::WasteWater => Nis2Sector::WasteWater,
        Nis2Subsector::DigitalInfrastructure => Nis2Sector::DigitalInfrastructure,
        Nis2Subsector::IctManagement => Nis2Sector::IctServiceManagement,
        Nis2Subsector::PublicAdministration => Nis2Sector::PublicAdministration,
        Nis2Subsector::Space => Nis2Sector::Space,
        Nis2Subsector::Courier => Nis2Sector::PostalAndCourier,
        Nis2Subsector::WasteManagement => Nis2Sector::WasteManagement,
        Nis2Subsector::Chemical => Nis2Sector::Chemicals,
        Nis2Subsector::Food => Nis2Sector::Food,
        Nis2Subsector::MedicalDevices
        | Nis2Subsector::ElectronicOptical
        | Nis2Subsector::ElectricalEquipment
        | Nis2Subsector::MachineTool
        | Nis2Subsector::VehicleManufacturing
        | Nis2Subsector::OtherTransportEquipment => Nis2Sector::Manufacturing,
        Nis2Subsector::DigitalProviders => Nis2Sector::DigitalProviders,
        Nis2Subsector::Research => Nis2Sector::Research,
    }
}

/// Parses an RSIT type: its MISP value (`system-compromise`), optionally after its
/// class (`intrusions:system-compromise`, `rsit:intrusions="system-compromise"`), or
/// the enum name (`RSIT_TYPE_SYSTEM_COMPROMISE`), case-insensitive. The old spelling
/// `unauthorized-use-of-resources` (taxonomy version 2) is read as today's
/// `unauthorised-use-of-resources`. A class given with the type must be its class.
pub fn parse_rsit_type(s: &str) -> Result<RsitType, String> {
    let lower = s.trim().to_ascii_lowercase();
    let body = lower.strip_prefix("rsit:").unwrap_or(&lower);
    let (class, ty) = match body.split_once(['=', ':']) {
        Some((c, t)) => (Some(c.trim()), t.trim().trim_matches('"')),
        None => (None, body),
    };
    let w = normalise_label(ty, "rsit_type_");
    let w = if w == "unauthorized-use-of-resources" {
        "unauthorised-use-of-resources".to_string()
    } else {
        w
    };
    let found = ALL_RSIT_TYPES
        .into_iter()
        .find(|v| rsit_type_label(*v) == w || normalise_label(v.as_str_name(), "rsit_type_") == w);
    let Some(t) = found else {
        return Err(format!(
            "unknown RSIT type {}; use one of the types of the MISP rsit taxonomy: {}",
            crate::domain::text::quote(s),
            words(&ALL_RSIT_TYPES, rsit_type_label)
        ));
    };
    if let Some(c) = class {
        let c = parse_rsit(c)?;
        if rsit_type_class(t) != c {
            return Err(format!(
                "RSIT type {} belongs to class {}, not {}",
                rsit_type_label(t),
                rsit_label(rsit_type_class(t)),
                rsit_label(c)
            ));
        }
    }
    Ok(t)
}

/// Parses a NIS2 subsector: its MISP value (`rail`, `banking-subsector`), the value
/// without `-subsector`, or the enum name (`NIS2_SUBSECTOR_RAIL`), case-insensitive.
pub fn parse_subsector(s: &str) -> Result<Nis2Subsector, String> {
    let w = normalise_label(s, "nis2_subsector_");
    ALL_SUBSECTORS
        .into_iter()
        .find(|v| {
            let l = subsector_label(*v);
            l == w
                || l.strip_suffix("-subsector") == Some(w.as_str())
                || normalise_label(v.as_str_name(), "nis2_subsector_") == w
        })
        .ok_or_else(|| {
            format!(
                "unknown NIS2 subsector {}; use one of: {}",
                crate::domain::text::quote(s),
                words(&ALL_SUBSECTORS, subsector_label)
            )
        })
}

/// The MISP machine tag of a TLP: `tlp:clear`, `tlp:green`, `tlp:amber`,
/// `tlp:amber+strict`, `tlp:red`.
pub fn tlp_tag(t: Tlp) -> &'static str {
    match t {
        Tlp::Unspecified => "tlp:unspecified",
        Tlp::Clear => "tlp:clear",
        Tlp::Green => "tlp:green",
        Tlp::Amber => "tlp:amber",
        Tlp::AmberStrict => "tlp:amber+strict",
        Tlp::Red => "tlp:red",
    }
}

/// Reads a `tlp:` machine tag. `Ok(None)`: not a TLP tag (another namespace).
/// `tlp:white` (TLP 1.0) is CLEAR, as TLP 2.0 prescribes; `tlp:ex:chr` (an
/// attribution rule, not a level) and `tlp:unclear` are errors, since certfed
/// cannot carry them and must not drop a restriction silently.
pub fn parse_tlp_tag(tag: &str) -> Result<Option<Tlp>, String> {
    let t = tag.trim().to_ascii_lowercase();
    let Some(level) = t.strip_prefix("tlp:") else {
        return Ok(None);
    };
    match level {
        "clear" | "white" => Ok(Some(Tlp::Clear)),
        "green" => Ok(Some(Tlp::Green)),
        "amber" => Ok(Some(Tlp::Amber)),
        "amber+strict" => Ok(Some(Tlp::AmberStrict)),
        "red" => Ok(Some(Tlp::Red)),
        "ex:chr" => Err(format!(
            "{}: the Chatham House Rule tag (do not attribute the source) cannot be carried by certfed; remove it once the source agrees, or do not import this",
            crate::domain::text::quote(tag)
        )),
        _ => Err(format!(
            "{} is not a TLP 2.0 level; use tlp:clear, tlp:green, tlp:amber, tlp:amber+strict or tlp:red",
            crate::domain::text::quote(tag)
        )),
    }
}

/// The MISP machine tag of an RSIT class and type: `rsit:intrusions="system-compromise"`,
/// or `rsit:intrusions` when the type is not set. `None` when the class is not set.
pub fn rsit_tag(class: RsitClass, ty: RsitType) -> Option<String> {
    if class == RsitClass::Unspecified {
        return None;
    }
    Some(
        if ty == RsitType::Unspecified || rsit_type_class(ty) != class {
            format!("rsit:{}", rsit_label(class))
        } else {
            format!("rsit:{}=\"{}\"", rsit_label(class), rsit_type_label(ty))
        },
    )
}

/// The MISP machine tag of a NIS2 sector: `nis2:impact-sectors-impacted="energy"`.
pub fn sector_tag(s: Nis2Sector) -> String {
    format!("nis2:impact-sectors-impacted=\"{}\"", sector_label(s))
}

/// The MISP machine tag of a NIS2 subsector: `nis2:impact-subsectors-impacted="rail"`.
pub fn subsector_tag(s: Nis2Subsector) -> String {
    format!("nis2:impact-subsectors-impacted=\"{}\"", subsector_label(s))
}

/// What a vocabulary machine tag says (see [`parse_vocab_tag`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabTag {
    Tlp(Tlp),
    Rsit(RsitClass, RsitType),
    Sector(Nis2Sector),
    Subsector(Nis2Subsector),
}

/// Splits a machine tag `namespace:predicate="value"` (the value optional) into
/// its parts, lower-cased namespace and predicate, value without quotes.
pub fn split_machine_tag(tag: &str) -> Option<(String, String, Option<String>)> {
    let (ns, rest) = tag.trim().split_once(':')?;
    let (pred, value) = match rest.split_once('=') {
        Some((p, v)) => {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            (p.trim(), Some(v.to_string()))
        }
        None => (rest.trim(), None),
    };
    Some((
        ns.trim().to_ascii_lowercase(),
        pred.to_ascii_lowercase(),
        value,
    ))
}

/// Reads a machine tag of the `tlp`, `rsit` and `nis2` namespaces. `Ok(None)`: a tag
/// of another namespace, or a `nis2` predicate certfed does not carry (e.g.
/// `nis2:impact-severity`). An unknown value inside a known predicate is an error.
pub fn parse_vocab_tag(tag: &str) -> Result<Option<VocabTag>, String> {
    if let Some(t) = parse_tlp_tag(tag)? {
        return Ok(Some(VocabTag::Tlp(t)));
    }
    let Some((ns, pred, value)) = split_machine_tag(tag) else {
        return Ok(None);
    };
    match ns.as_str() {
        "rsit" => {
            let class = parse_rsit(&pred)?;
            let ty = match value {
                Some(v) => parse_rsit_type(&format!("{pred}:{v}"))?,
                None => RsitType::Unspecified,
            };
            Ok(Some(VocabTag::Rsit(class, ty)))
        }
        "nis2" => match (pred.as_str(), value) {
            ("impact-sectors-impacted", Some(v)) => {
                parse_sector(&v).map(|s| Some(VocabTag::Sector(s)))
            }
            ("impact-subsectors-impacted", Some(v)) => {
                parse_subsector(&v).map(|s| Some(VocabTag::Subsector(s)))
            }
            _ => Ok(None),
        },
        _ => Ok(None),
    }
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
    // An assigned code, as nearly every entry is: two bytes compared as one
    // integer, no allocation (the error paths below may allocate).
    if assigned_country(c) {
        return Ok(());
    }
    if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(format!(
            "{c:?} is not a two-letter ISO 3166-1 alpha-2 country code (e.g. \"EE\", \"UA\")"
        ));
    }
    let upper = c.to_ascii_uppercase();
    if assigned_country(&upper) {
        return Err(format!("{c:?} must be upper case: write {upper:?}"));
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

/// Whether `c` is in [`ISO_3166_ALPHA2`] (sorted, every entry two ASCII
/// letters, so ordering the codes as big-endian integers orders them as
/// strings).
fn assigned_country(c: &str) -> bool {
    fn key(s: &str) -> u16 {
        match s.as_bytes() {
            [a, b] => u16::from_be_bytes([*a, *b]),
            _ => u16::MAX,
        }
    }
    let k = key(c);
    k != u16::MAX && ISO_3166_ALPHA2.binary_search_by_key(&k, |e| key(e)).is_ok()
}
