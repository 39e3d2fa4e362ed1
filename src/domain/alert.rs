//! TEMPORARY placeholder until the alert-validation branch merges.
use crate::proto::v1::*;
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_indicators: usize,
    pub max_title_chars: usize,
}
impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 256 * 1024,
            max_indicators: 10_000,
            max_title_chars: 200,
        }
    }
}
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct ValidationError {
    pub field: String,
    pub rule: String,
}
pub fn validate_alert(a: &Alert, _c: i64, _l: usize, _lim: &Limits) -> Result<(), ValidationError> {
    if a.title.trim().is_empty() {
        return Err(ValidationError {
            field: "alert.title".into(),
            rule: "required".into(),
        });
    }
    Ok(())
}
pub fn parse_tlp(s: &str) -> Result<Tlp, String> {
    match s.to_ascii_lowercase().as_str() {
        "clear" => Ok(Tlp::Clear),
        "green" => Ok(Tlp::Green),
        "amber" => Ok(Tlp::Amber),
        "amber+strict" => Ok(Tlp::AmberStrict),
        "red" => Ok(Tlp::Red),
        _ => Err(format!("unknown TLP {s:?}")),
    }
}
pub fn parse_severity(s: &str) -> Result<Severity, String> {
    match s {
        "low" => Ok(Severity::Low),
        "medium" => Ok(Severity::Medium),
        "high" => Ok(Severity::High),
        "critical" => Ok(Severity::Critical),
        _ => Err(format!("unknown severity {s:?}")),
    }
}
pub fn tlp_label(t: Tlp) -> &'static str {
    match t {
        Tlp::Clear => "TLP:CLEAR",
        Tlp::Green => "TLP:GREEN",
        Tlp::Amber => "TLP:AMBER",
        Tlp::AmberStrict => "TLP:AMBER+STRICT",
        Tlp::Red => "TLP:RED",
        Tlp::Unspecified => "TLP:UNSPECIFIED",
    }
}
pub fn severity_label(s: Severity) -> &'static str {
    match s {
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
        Severity::Unspecified => "unspecified",
    }
}
pub fn parse_sector(s: &str) -> Result<Nis2Sector, String> {
    Nis2Sector::from_str_name(s).ok_or(format!("bad {s}"))
}
pub fn parse_rsit(s: &str) -> Result<RsitClass, String> {
    RsitClass::from_str_name(s).ok_or(format!("bad {s}"))
}
pub fn sector_label(s: Nis2Sector) -> &'static str {
    s.as_str_name()
}
pub fn rsit_label(s: RsitClass) -> &'static str {
    s.as_str_name()
}
