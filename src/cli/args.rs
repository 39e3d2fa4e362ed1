//! The choice flags of the command line as `clap::ValueEnum`s, so `--help`
//! lists the accepted words, shells complete them, and a wrong word is a
//! usage error (exit 2) naming the flag and the accepted values before
//! anything is sent.
//!
//! Invariant: the words are the domain's own labels (`domain::alert`,
//! `domain::policy`), never a second list; each value also accepts its proto
//! enum name (`TLP_AMBER_STRICT`, `NIS2_SECTOR_ENERGY`) as a hidden alias.
use crate::domain::alert::{
    ALL_RSIT, ALL_RSIT_TYPES, ALL_SECTORS, ALL_SEVERITIES, ALL_SUBSECTORS, rsit_label,
    rsit_type_label, sector_label, sector_legacy_labels, severity_label, subsector_label,
};
use crate::proto::v1::{
    AssistanceService, AssistanceState, FundingChannel, Indicator, IndicatorType, Nis2Sector,
    Nis2Subsector, RsitClass, RsitType, Severity, Tlp,
};
use clap::builder::PossibleValue;

/// Defines a `ValueEnum` wrapper around a proto enum from a list of values
/// and a label function.
macro_rules! value_enum {
    ($(#[$doc:meta])* $arg:ident($proto:ty), $all:expr, $label:expr) => {
        value_enum!($(#[$doc])* $arg($proto), $all, $label, |_| &[]);
    };
    ($(#[$doc:meta])* $arg:ident($proto:ty), $all:expr, $label:expr, $aliases:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $arg(pub $proto);

        impl clap::ValueEnum for $arg {
            fn value_variants<'a>() -> &'a [Self] {
                static ALL: std::sync::OnceLock<Vec<$arg>> = std::sync::OnceLock::new();
                ALL.get_or_init(|| $all.iter().map(|v| $arg(*v)).collect())
            }

            fn to_possible_value(&self) -> Option<PossibleValue> {
                let label: fn($proto) -> &'static str = $label;
                let aliases: fn($proto) -> &'static [&'static str] = $aliases;
                Some(
                    PossibleValue::new(label(self.0))
                        .alias(self.0.as_str_name())
                        .aliases(aliases(self.0).iter().copied()),
                )
            }
        }

        impl $arg {
            /// The proto enum number.
            pub fn num(self) -> i32 {
                self.0 as i32
            }
        }
    };
}

/// TLP 2.0 words as typed on the command line.
pub fn tlp_word(t: Tlp) -> &'static str {
    match t {
        Tlp::Unspecified => "unspecified",
        Tlp::Clear => "clear",
        Tlp::Green => "green",
        Tlp::Amber => "amber",
        Tlp::AmberStrict => "amber+strict",
        Tlp::Red => "red",
    }
}

/// A TLP 2.0 marking: clear, green, amber, amber+strict, red.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlpArg(pub Tlp);

impl clap::ValueEnum for TlpArg {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            TlpArg(Tlp::Clear),
            TlpArg(Tlp::Green),
            TlpArg(Tlp::Amber),
            TlpArg(Tlp::AmberStrict),
            TlpArg(Tlp::Red),
        ]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        let help = match self.0 {
            Tlp::Clear => "no limit on disclosure; may be broadcast",
            Tlp::Green => "the community; may be broadcast, not public",
            Tlp::Amber => "recipients' organisations and clients; named recipients, encrypted",
            Tlp::AmberStrict => "recipients' organisations only; named recipients, encrypted",
            Tlp::Red => "named recipients only, encrypted",
            Tlp::Unspecified => "",
        };
        let mut v = PossibleValue::new(tlp_word(self.0))
            .help(help)
            .alias(self.0.as_str_name());
        match self.0 {
            Tlp::Clear => v = v.alias("white"),
            Tlp::AmberStrict => v = v.aliases(["amber-strict", "amber_strict"]),
            _ => {}
        }
        Some(v)
    }
}

impl TlpArg {
    pub fn num(self) -> i32 {
        self.0 as i32
    }
}

value_enum!(
    /// Severity: low, medium, high, critical.
    SeverityArg(Severity),
    ALL_SEVERITIES,
    severity_label
);
value_enum!(
    /// A NIS2 sector (Annex I and II), as in the MISP nis2 taxonomy; the
    /// labels certfed used before stay accepted.
    SectorArg(Nis2Sector),
    ALL_SECTORS,
    sector_label,
    sector_legacy_labels
);
value_enum!(
    /// A NIS2 subsector (MISP nis2 taxonomy).
    SubsectorArg(Nis2Subsector),
    ALL_SUBSECTORS,
    subsector_label
);
value_enum!(
    /// An RSIT incident class.
    RsitArg(RsitClass),
    ALL_RSIT,
    rsit_label
);
value_enum!(
    /// An RSIT incident type (MISP rsit taxonomy).
    RsitTypeArg(RsitType),
    ALL_RSIT_TYPES,
    rsit_type_label
);

const ALL_STATES: [AssistanceState; 7] = [
    AssistanceState::Requested,
    AssistanceState::Offered,
    AssistanceState::Accepted,
    AssistanceState::Deployed,
    AssistanceState::Completed,
    AssistanceState::Closed,
    AssistanceState::Withdrawn,
];

/// Lower-case word of an assistance state.
pub fn state_word(s: AssistanceState) -> &'static str {
    match s {
        AssistanceState::Unspecified => "unspecified",
        AssistanceState::Requested => "requested",
        AssistanceState::Offered => "offered",
        AssistanceState::Accepted => "accepted",
        AssistanceState::Deployed => "deployed",
        AssistanceState::Completed => "completed",
        AssistanceState::Closed => "closed",
        AssistanceState::Withdrawn => "withdrawn",
    }
}

value_enum!(
    /// An assistance request's state.
    StateArg(AssistanceState),
    ALL_STATES,
    state_word
);

const TARGET_STATES: [AssistanceState; 4] = [
    AssistanceState::Deployed,
    AssistanceState::Completed,
    AssistanceState::Closed,
    AssistanceState::Withdrawn,
];

value_enum!(
    /// A state the requester may move its request to.
    TargetStateArg(AssistanceState),
    TARGET_STATES,
    state_word
);

/// The services of the assistance workflow, with their command-line words.
pub const SERVICES: [(AssistanceService, &str); 9] = [
    (AssistanceService::IncidentResponse, "incident-response"),
    (AssistanceService::Forensics, "forensics"),
    (AssistanceService::MalwareAnalysis, "malware-analysis"),
    (AssistanceService::DdosMitigation, "ddos-mitigation"),
    (AssistanceService::ThreatHunting, "threat-hunting"),
    (
        AssistanceService::VulnerabilityAssessment,
        "vulnerability-assessment",
    ),
    (AssistanceService::Recovery, "recovery"),
    (AssistanceService::ThreatIntelligence, "threat-intelligence"),
    (AssistanceService::EquipmentLicences, "equipment-licences"),
];

/// Command-line word of an assistance service.
pub fn service_word(s: AssistanceService) -> &'static str {
    SERVICES
        .iter()
        .find(|(v, _)| *v == s)
        .map_or("unspecified", |(_, w)| w)
}

value_enum!(
    /// An assistance service (requested or offered).
    ServiceArg(AssistanceService),
    SERVICES.map(|(s, _)| s),
    service_word
);

/// Command-line word of a funding channel.
pub fn funding_word(f: FundingChannel) -> &'static str {
    match f {
        FundingChannel::Unspecified => "unspecified",
        FundingChannel::Bilateral => "bilateral",
        FundingChannel::CybersecurityReserve => "reserve",
        FundingChannel::DonorCoalition => "coalition",
    }
}

value_enum!(
    /// How an offer is funded.
    FundingArg(FundingChannel),
    [
        FundingChannel::Bilateral,
        FundingChannel::CybersecurityReserve,
        FundingChannel::DonorCoalition
    ],
    funding_word
);

/// The indicator types with their command-line words.
pub const INDICATOR_TYPES: [(IndicatorType, &str); 11] = [
    (IndicatorType::Ip, "ip"),
    (IndicatorType::Cidr, "cidr"),
    (IndicatorType::Domain, "domain"),
    (IndicatorType::Url, "url"),
    (IndicatorType::Email, "email"),
    (IndicatorType::Sha256, "sha256"),
    (IndicatorType::Sha1, "sha1"),
    (IndicatorType::Md5, "md5"),
    (IndicatorType::Cve, "cve"),
    (IndicatorType::Asn, "asn"),
    (IndicatorType::Text, "text"),
];

value_enum!(
    /// An incident status an opener sets: investigating, contained, resolved.
    IncidentStatusArg(crate::proto::v1::IncidentStatus),
    [
        crate::proto::v1::IncidentStatus::Investigating,
        crate::proto::v1::IncidentStatus::Contained,
        crate::proto::v1::IncidentStatus::Resolved,
    ],
    crate::domain::incident::status_label
);

/// Command-line word of an indicator type.
pub fn indicator_word(t: i32) -> &'static str {
    INDICATOR_TYPES
        .iter()
        .find(|(v, _)| *v as i32 == t)
        .map_or("unspecified", |(_, w)| w)
}

/// Parses `TYPE:VALUE` (clap value parser for `--indicator`).
pub fn parse_indicator(s: &str) -> Result<Indicator, String> {
    let words = || {
        INDICATOR_TYPES
            .iter()
            .map(|(_, w)| *w)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (t, v) = s
        .split_once(':')
        .ok_or_else(|| format!("expected TYPE:VALUE, e.g. ip:192.0.2.7; types: {}", words()))?;
    let ty = INDICATOR_TYPES
        .iter()
        .find(|(_, w)| w.eq_ignore_ascii_case(t))
        .map(|(v, _)| *v)
        .ok_or_else(|| format!("unknown indicator type {t:?}; use one of {}", words()))?;
    Ok(Indicator {
        r#type: ty as i32,
        value: v.to_string(),
        comment: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn words_parse_case_insensitively_and_by_enum_name() {
        assert_eq!(
            TlpArg::from_str("amber+strict", true).unwrap().0,
            Tlp::AmberStrict
        );
        assert_eq!(
            TlpArg::from_str("TLP_AMBER_STRICT", true).unwrap().0,
            Tlp::AmberStrict
        );
        assert_eq!(TlpArg::from_str("Green", true).unwrap().0, Tlp::Green);
        assert!(TlpArg::from_str("purple", true).is_err());
        assert_eq!(
            SectorArg::from_str("ict-service-management", true)
                .unwrap()
                .0,
            Nis2Sector::IctServiceManagement
        );
        assert_eq!(SeverityArg::value_variants().len(), 4);
        assert_eq!(SectorArg::value_variants().len(), 18);
        assert_eq!(RsitArg::value_variants().len(), 11);
        assert_eq!(
            ServiceArg::from_str("forensics", false).unwrap().0,
            AssistanceService::Forensics
        );
        assert_eq!(
            FundingArg::from_str("reserve", false).unwrap().0,
            FundingChannel::CybersecurityReserve
        );
        assert!(parse_indicator("ip:192.0.2.1").is_ok());
        assert!(parse_indicator("nonsense").is_err());
        assert!(
            parse_indicator("colour:red")
                .unwrap_err()
                .contains("sha256")
        );
    }
}

/// One `--attach FILE[,malware]`.
#[derive(Debug, Clone)]
pub struct AttachArg {
    pub path: std::path::PathBuf,
    pub malicious: bool,
}

/// Parses `FILE` or `FILE,malware`.
pub fn parse_attach(s: &str) -> Result<AttachArg, String> {
    let (path, malicious) = match s.rsplit_once(',') {
        Some((p, "malware")) => (p, true),
        Some((_, other)) if other.bytes().all(|b| b.is_ascii_alphabetic()) => {
            return Err(format!(
                "unknown flag {other:?} after the file name; write FILE or FILE,malware"
            ));
        }
        _ => (s, false),
    };
    if path.is_empty() {
        return Err("give a file name: --attach FILE[,malware]".into());
    }
    Ok(AttachArg {
        path: std::path::PathBuf::from(path),
        malicious,
    })
}

/// The media type named by a file's extension (the common evidence kinds).
pub fn media_type_of(path: &std::path::Path) -> &'static str {
    crate::domain::attachment::media_type_for_name(
        path.file_name().and_then(|n| n.to_str()).unwrap_or(""),
    )
}
