//! Alert validation and the operator vocabularies (TLP, severity, NIS2 sectors, RSIT).
//!
//! [`validate_alert`] is applied to an alert before the origin signs it and again by
//! every node that receives it. Every failure is a [`ValidationError`] naming the proto
//! field (e.g. `alert.indicators[3].value`) and the rule broken, in words an operator
//! can act on. Pure functions: no I/O.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::domain::policy::tlp_from_wire;
use crate::proto::v1::{
    Alert, Indicator, IndicatorType, Nis2Sector, Revision, RsitClass, Severity,
};

/// The TLP vocabulary lives in [`crate::domain::policy`]; re-exported for callers that
/// reach it through `domain::alert`.
pub use crate::domain::policy::{ALL_TLPS, parse_tlp, tlp_label};

/// Size and count limits applied to alerts (from the node's configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest serialized alert accepted, in bytes.
    pub max_message_bytes: usize,
    /// Most indicators in one alert.
    pub max_indicators: usize,
    /// Longest title, in characters.
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

/// A validation failure naming the field (proto path like "alert.indicators[3].value")
/// and the rule broken, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct ValidationError {
    /// Proto path of the offending field.
    pub field: String,
    /// The rule broken and how to fix it.
    pub rule: String,
}

impl ValidationError {
    fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

/// Longest free-text indicator, in characters.
pub const MAX_TEXT_INDICATOR_CHARS: usize = 4096;
/// Longest reference, in characters.
pub const MAX_REFERENCE_CHARS: usize = 2048;
/// Longest URL indicator, in characters.
pub const MAX_URL_CHARS: usize = 4096;

const SEVERITY_WORDS: &str = "low, medium, high, critical";

/// Validates an alert about to be signed or just received. `created_unix_ms` is the
/// envelope creation time; `encoded_len` the size of the serialized alert.
pub fn validate_alert(
    alert: &Alert,
    created_unix_ms: i64,
    encoded_len: usize,
    limits: &Limits,
) -> Result<(), ValidationError> {
    if encoded_len > limits.max_message_bytes {
        return Err(ValidationError::new(
            "alert",
            format!(
                "alert is {encoded_len} bytes, over the node's limit of {} bytes (limits.max_message_bytes); split it or raise the limit",
                limits.max_message_bytes
            ),
        ));
    }

    // title
    if alert.title.trim().is_empty() {
        return Err(ValidationError::new(
            "alert.title",
            "required: give the alert a short headline (not only spaces)",
        ));
    }
    let title_chars = alert.title.chars().count();
    if title_chars > limits.max_title_chars {
        return Err(ValidationError::new(
            "alert.title",
            format!(
                "title is {title_chars} characters, over the limit of {}; shorten it and put details in the description",
                limits.max_title_chars
            ),
        ));
    }

    // tlp
    tlp_from_wire(alert.tlp).map_err(|rule| ValidationError::new("alert.tlp", rule))?;

    // severity
    match Severity::try_from(alert.severity) {
        Ok(Severity::Unspecified) => {
            return Err(ValidationError::new(
                "alert.severity",
                "required: set the severity to SEVERITY_LOW, SEVERITY_MEDIUM, SEVERITY_HIGH or SEVERITY_CRITICAL",
            ));
        }
        Ok(_) => {}
        Err(_) => {
            return Err(ValidationError::new(
                "alert.severity",
                format!(
                    "unknown severity value {}; use SEVERITY_LOW, SEVERITY_MEDIUM, SEVERITY_HIGH or SEVERITY_CRITICAL",
                    alert.severity
                ),
            ));
        }
    }

    // rsit_class (unspecified allowed)
    if RsitClass::try_from(alert.rsit_class).is_err() {
        return Err(ValidationError::new(
            "alert.rsit_class",
            format!(
                "unknown RSIT class value {}; use one of the RSIT_CLASS_* values (or leave it unset if the class is not known yet)",
                alert.rsit_class
            ),
        ));
    }

    // sectors
    for (i, &s) in alert.sectors.iter().enumerate() {
        let field = format!("alert.sectors[{i}]");
        match Nis2Sector::try_from(s) {
            Ok(Nis2Sector::Unspecified) => {
                return Err(ValidationError::new(
                    field,
                    "NIS2_SECTOR_UNSPECIFIED is not a sector; name the affected sector or remove the entry",
                ));
            }
            Ok(_) => {}
            Err(_) => {
                return Err(ValidationError::new(
                    field,
                    format!("unknown NIS2 sector value {s}; use one of the NIS2_SECTOR_* values"),
                ));
            }
        }
        if alert.sectors[..i].contains(&s) {
            return Err(ValidationError::new(
                field,
                format!(
                    "sector {} is listed twice; list each sector once",
                    Nis2Sector::try_from(s).map(sector_label).unwrap_or("?")
                ),
            ));
        }
    }

    // affected_countries
    for (i, c) in alert.affected_countries.iter().enumerate() {
        validate_country(c)
            .map_err(|rule| ValidationError::new(format!("alert.affected_countries[{i}]"), rule))?;
    }

    // indicators
    if alert.indicators.len() > limits.max_indicators {
        return Err(ValidationError::new(
            "alert.indicators",
            format!(
                "{} indicators, over the node's limit of {} (limits.max_indicators); split them over several alerts",
                alert.indicators.len(),
                limits.max_indicators
            ),
        ));
    }
    for (i, ind) in alert.indicators.iter().enumerate() {
        match IndicatorType::try_from(ind.r#type) {
            Ok(IndicatorType::Unspecified) | Err(_) => {
                return Err(ValidationError::new(
                    format!("alert.indicators[{i}].type"),
                    indicator_type_rule(ind.r#type),
                ));
            }
            Ok(_) => {}
        }
        validate_indicator(ind)
            .map_err(|rule| ValidationError::new(format!("alert.indicators[{i}].value"), rule))?;
    }

    // references
    for (i, r) in alert.references.iter().enumerate() {
        let field = format!("alert.references[{i}]");
        if r.trim().is_empty() {
            return Err(ValidationError::new(
                field,
                "empty reference; give a URL or document identifier, or remove the entry",
            ));
        }
        let n = r.chars().count();
        if n > MAX_REFERENCE_CHARS {
            return Err(ValidationError::new(
                field,
                format!("reference is {n} characters, over the limit of {MAX_REFERENCE_CHARS}"),
            ));
        }
    }

    // expires
    if let Some(ts) = &alert.expires {
        if !(0..1_000_000_000).contains(&ts.nanos) {
            return Err(ValidationError::new(
                "alert.expires",
                format!(
                    "invalid timestamp: nanos {} is outside 0..999999999",
                    ts.nanos
                ),
            ));
        }
        let expires_ms = i128::from(ts.seconds) * 1000 + i128::from(ts.nanos) / 1_000_000;
        if expires_ms <= i128::from(created_unix_ms) {
            return Err(ValidationError::new(
                "alert.expires",
                format!(
                    "expires ({expires_ms} ms since the epoch) is not after the creation time ({created_unix_ms} ms); set a later expiry or leave it unset"
                ),
            ));
        }
    }

    // revision / supersedes
    match Revision::try_from(alert.revision) {
        Ok(Revision::Original) => {
            if !alert.supersedes.is_empty() {
                return Err(ValidationError::new(
                    "alert.supersedes",
                    "an ORIGINAL alert supersedes nothing; leave supersedes empty, or set revision to REVISION_UPDATE or REVISION_RETRACTION",
                ));
            }
        }
        Ok(rev @ (Revision::Update | Revision::Retraction)) => {
            if alert.supersedes.trim().is_empty() {
                return Err(ValidationError::new(
                    "alert.supersedes",
                    format!(
                        "required for {}: give the message id of the alert this one {}",
                        rev.as_str_name(),
                        if rev == Revision::Update {
                            "updates"
                        } else {
                            "retracts"
                        }
                    ),
                ));
            }
        }
        Err(_) => {
            return Err(ValidationError::new(
                "alert.revision",
                format!(
                    "unknown revision value {}; use REVISION_ORIGINAL, REVISION_UPDATE or REVISION_RETRACTION",
                    alert.revision
                ),
            ));
        }
    }
    Ok(())
}

fn indicator_type_rule(t: i32) -> String {
    if t == IndicatorType::Unspecified as i32 {
        "required: set the indicator type (INDICATOR_TYPE_IP, _CIDR, _DOMAIN, _URL, _EMAIL, _SHA256, _SHA1, _MD5, _CVE, _ASN or _TEXT)".to_string()
    } else {
        format!("unknown indicator type value {t}; use one of the INDICATOR_TYPE_* values")
    }
}

/// Validates one indicator: its type must be set and its value valid for the type.
/// The error text says what is wrong and which form is expected.
pub fn validate_indicator(ind: &Indicator) -> Result<(), String> {
    let t = match IndicatorType::try_from(ind.r#type) {
        Ok(IndicatorType::Unspecified) | Err(_) => return Err(indicator_type_rule(ind.r#type)),
        Ok(t) => t,
    };
    let v = ind.value.as_str();
    if t == IndicatorType::Text {
        if v.trim().is_empty() {
            return Err("empty text indicator; give the text or remove the indicator".to_string());
        }
        let n = v.chars().count();
        if n > MAX_TEXT_INDICATOR_CHARS {
            return Err(format!(
                "text indicator is {n} characters, over the limit of {MAX_TEXT_INDICATOR_CHARS}"
            ));
        }
        return Ok(());
    }
    if v.is_empty() {
        return Err(format!(
            "empty value; give the {} or remove the indicator",
            type_noun(t)
        ));
    }
    if v.trim() != v {
        return Err(format!("{v:?} has leading or trailing spaces; remove them"));
    }
    match t {
        IndicatorType::Ip => v.parse::<IpAddr>().map(|_| ()).map_err(|_| {
            format!("{v:?} is not an IPv4 or IPv6 address (e.g. 192.0.2.7 or 2001:db8::7)")
        }),
        IndicatorType::Cidr => validate_cidr(v),
        IndicatorType::Domain => validate_domain(v),
        IndicatorType::Url => validate_url(v),
        IndicatorType::Email => validate_email(v),
        IndicatorType::Sha256 => validate_hex(v, 64, "SHA-256"),
        IndicatorType::Sha1 => validate_hex(v, 40, "SHA-1"),
        IndicatorType::Md5 => validate_hex(v, 32, "MD5"),
        IndicatorType::Cve => validate_cve(v),
        IndicatorType::Asn => validate_asn(v),
        IndicatorType::Text | IndicatorType::Unspecified => Ok(()),
    }
}

fn type_noun(t: IndicatorType) -> &'static str {
    match t {
        IndicatorType::Ip => "IP address",
        IndicatorType::Cidr => "network in CIDR notation",
        IndicatorType::Domain => "domain name",
        IndicatorType::Url => "URL",
        IndicatorType::Email => "e-mail address",
        IndicatorType::Sha256 => "SHA-256 digest",
        IndicatorType::Sha1 => "SHA-1 digest",
        IndicatorType::Md5 => "MD5 digest",
        IndicatorType::Cve => "CVE identifier",
        IndicatorType::Asn => "AS number",
        IndicatorType::Text | IndicatorType::Unspecified => "text",
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn validate_cidr(v: &str) -> Result<(), String> {
    let usage = "use address/prefix, e.g. 198.51.100.0/24 or 2001:db8::/32";
    let Some((addr, prefix)) = v.split_once('/') else {
        return Err(format!("{v:?} has no /prefix; {usage}"));
    };
    let max: u32 = if addr.parse::<Ipv4Addr>().is_ok() {
        32
    } else if addr.parse::<Ipv6Addr>().is_ok() {
        128
    } else {
        return Err(format!("{addr:?} is not an IPv4 or IPv6 address; {usage}"));
    };
    // Digits only (rejects "+8", " 8"); at most 3 digits keeps the parse in range.
    if !all_digits(prefix) || prefix.len() > 3 {
        return Err(format!("prefix {prefix:?} is not a number; {usage}"));
    }
    let p: u32 = prefix
        .parse()
        .map_err(|_| format!("prefix {prefix:?} is not a number; {usage}"))?;
    if p > max {
        return Err(format!(
            "prefix /{p} is out of range: 0..{max} for this address family"
        ));
    }
    Ok(())
}

fn validate_domain(v: &str) -> Result<(), String> {
    if !v.is_ascii() {
        return Err(format!(
            "{v:?} is not an ASCII domain name; give internationalised names in their punycode (xn--) form"
        ));
    }
    if v.len() > 253 {
        return Err(format!(
            "domain name is {} characters, over the DNS limit of 253",
            v.len()
        ));
    }
    if !v.contains('.') {
        return Err(format!(
            "{v:?} has no dot; give a fully qualified name such as evil.example"
        ));
    }
    let labels: Vec<&str> = v.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Err(format!(
                "{v:?} has an empty label (leading, trailing or doubled dot); write it as e.g. evil.example"
            ));
        }
        if label.len() > 63 {
            return Err(format!("label {label:?} is longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "label {label:?} may contain only letters, digits and '-' (no spaces, '_', '/', ':' or other characters)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} may not begin or end with '-'"));
        }
    }
    if labels.last().is_some_and(|tld| all_digits(tld)) {
        return Err(format!(
            "{v:?} ends in a numeric label; an address is an ip indicator, not a domain"
        ));
    }
    Ok(())
}

/// Schemes accepted in URL indicators (case-insensitive); hxxp/hxxps are the defanged forms.
pub const URL_SCHEMES: &[&str] = &["http", "https", "ftp", "hxxp", "hxxps"];

fn validate_url(v: &str) -> Result<(), String> {
    let usage = "use an absolute URL such as https://evil.example/payload (schemes: http, https, ftp, hxxp, hxxps)";
    let n = v.chars().count();
    if n > MAX_URL_CHARS {
        return Err(format!(
            "URL is {n} characters, over the limit of {MAX_URL_CHARS}"
        ));
    }
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{v:?} contains spaces or control characters; percent-encode them"
        ));
    }
    let Some((scheme, rest)) = v.split_once("://") else {
        return Err(format!("{v:?} has no scheme; {usage}"));
    };
    if !URL_SCHEMES.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
        return Err(format!("scheme {scheme:?} is not accepted; {usage}"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if hostport.is_empty() {
        return Err(format!("{v:?} has no host; {usage}"));
    }
    let (host, port) = if let Some(after) = hostport.strip_prefix('[') {
        let Some((h, tail)) = after.split_once(']') else {
            return Err(format!("{v:?}: unclosed '[' around an IPv6 host"));
        };
        if h.parse::<Ipv6Addr>().is_err() {
            return Err(format!("[{h}] is not an IPv6 address"));
        }
        match tail {
            "" => return Ok(()),
            t => match t.strip_prefix(':') {
                Some(p) => (None, Some(p)),
                None => return Err(format!("{v:?}: unexpected {t:?} after the IPv6 host")),
            },
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(hostport), None),
        }
    };
    if let Some(p) = port
        && (!all_digits(p) || p.len() > 5 || p.parse::<u32>().map_or(true, |n| n > 65535))
    {
        return Err(format!("port {p:?} is not a number in 0..65535"));
    }
    if let Some(h) = host {
        if h.is_empty() {
            return Err(format!("{v:?} has no host; {usage}"));
        }
        if h.parse::<Ipv4Addr>().is_err() {
            validate_domain(h).map_err(|e| format!("host: {e}"))?;
        }
    }
    Ok(())
}

fn validate_email(v: &str) -> Result<(), String> {
    let Some((local, domain)) = v.rsplit_once('@') else {
        return Err(format!(
            "{v:?} has no '@'; use local@domain, e.g. phish@evil.example"
        ));
    };
    if local.is_empty() {
        return Err(format!("{v:?} has an empty local part before '@'"));
    }
    if local.len() > 64 {
        return Err(format!("local part {local:?} is longer than 64 characters"));
    }
    let ok_local = local
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    if !ok_local || local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(format!(
            "local part {local:?} has characters not allowed in an e-mail address (letters, digits, '.', and !#$%&'*+-/=?^_`{{|}}~; no spaces, no '@', no leading, trailing or doubled '.')"
        ));
    }
    validate_domain(domain).map_err(|e| format!("domain after '@': {e}"))
}

fn validate_hex(v: &str, len: usize, what: &str) -> Result<(), String> {
    if v.len() != len {
        return Err(format!(
            "a {what} digest is {len} hex digits, this value has {}",
            v.chars().count()
        ));
    }
    if !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{v:?} is not hexadecimal; a {what} digest uses only 0-9 and a-f"
        ));
    }
    Ok(())
}

fn validate_cve(v: &str) -> Result<(), String> {
    let usage = "use the form CVE-YYYY-NNNN (4 or more digits), e.g. CVE-2024-3400";
    let parts: Vec<&str> = v.split('-').collect();
    if parts.len() != 3 || !parts[0].eq_ignore_ascii_case("CVE") {
        return Err(format!("{v:?} is not a CVE identifier; {usage}"));
    }
    let (year, num) = (parts[1], parts[2]);
    if year.len() != 4 || !all_digits(year) || year < "1999" {
        return Err(format!(
            "year {year:?} is not a 4-digit year from 1999; {usage}"
        ));
    }
    if num.len() < 4 || !all_digits(num) {
        return Err(format!(
            "sequence number {num:?} must be 4 or more digits; {usage}"
        ));
    }
    Ok(())
}

fn validate_asn(v: &str) -> Result<(), String> {
    let usage = "use AS64500 or 64500 (1 to 4294967295)";
    let digits = if v.len() >= 2 && v[..2].eq_ignore_ascii_case("AS") {
        &v[2..]
    } else {
        v
    };
    if !all_digits(digits) || digits.len() > 10 {
        return Err(format!("{v:?} is not an AS number; {usage}"));
    }
    match digits.parse::<u64>() {
        Ok(n) if (1..=u64::from(u32::MAX)).contains(&n) => Ok(()),
        _ => Err(format!("AS number {digits} is out of range; {usage}")),
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

// ---- vocabularies -------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::Tlp;
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
            sectors: vec![Nis2Sector::Health as i32, Nis2Sector::Energy as i32],
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
        a.rsit_class = 0;
        check(&a).unwrap();
        a.rsit_class = 99;
        fails(&a, "alert.rsit_class", "unknown RSIT class value 99");
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

    #[track_caller]
    fn ok(t: IndicatorType, v: &str) {
        if let Err(e) = validate_indicator(&ind(t, v)) {
            panic!("{t:?} {v:?} should be valid: {e}");
        }
    }

    #[track_caller]
    fn bad(t: IndicatorType, v: &str, fragment: &str) {
        match validate_indicator(&ind(t, v)) {
            Ok(()) => panic!("{t:?} {v:?} should be invalid"),
            Err(e) => assert!(
                e.contains(fragment),
                "{t:?} {v:?}: {e:?} lacks {fragment:?}"
            ),
        }
    }

    #[test]
    fn common_value_rules() {
        bad(IndicatorType::Ip, "", "empty value");
        bad(
            IndicatorType::Domain,
            " evil.example",
            "leading or trailing spaces",
        );
        bad(
            IndicatorType::Sha256,
            &format!("{}\n", "a".repeat(64)),
            "leading or trailing spaces",
        );
    }

    #[test]
    fn ip_values() {
        use IndicatorType::Ip;
        for v in [
            "192.0.2.7",
            "0.0.0.0",
            "2001:db8::7",
            "::1",
            "::ffff:192.0.2.1",
        ] {
            ok(Ip, v);
        }
        for v in [
            "192.0.2",
            "192.0.2.256",
            "192.0.2.7/32",
            "2001:db8:::1",
            "evil.example",
            "01.2.3.4x",
        ] {
            bad(Ip, v, "not an IPv4 or IPv6 address");
        }
    }

    #[test]
    fn cidr_values() {
        use IndicatorType::Cidr;
        for v in [
            "198.51.100.0/24",
            "0.0.0.0/0",
            "10.0.0.1/32",
            "2001:db8::/32",
            "::/128",
        ] {
            ok(Cidr, v);
        }
        bad(Cidr, "198.51.100.0", "no /prefix");
        bad(Cidr, "198.51.100.0/33", "out of range: 0..32");
        bad(Cidr, "2001:db8::/129", "out of range: 0..128");
        bad(Cidr, "198.51.100.0/+8", "not a number");
        bad(Cidr, "198.51.100.0/", "not a number");
        bad(Cidr, "198.51.100.0/24/8", "not a number");
        bad(Cidr, "198.51.100.0/0024", "not a number");
        bad(Cidr, "evil.example/24", "not an IPv4 or IPv6 address");
    }

    #[test]
    fn domain_values() {
        use IndicatorType::Domain;
        let long_ok = format!("{}.example", vec!["a".repeat(63); 3].join("."));
        for v in [
            "evil.example",
            "a.b.c.example",
            "xn--bcher-kva.example",
            "EVIL.Example",
            "1.2.3.example",
            long_ok.as_str(),
        ] {
            ok(Domain, v);
        }
        bad(Domain, "localhost", "has no dot");
        bad(Domain, "evil.example.", "empty label");
        bad(Domain, ".evil.example", "empty label");
        bad(Domain, "evil..example", "empty label");
        bad(Domain, "evil.example/path", "only letters, digits and '-'");
        bad(Domain, "ev il.example", "only letters, digits and '-'");
        bad(Domain, "evil_x.example", "only letters, digits and '-'");
        bad(Domain, "-evil.example", "may not begin or end with '-'");
        bad(Domain, "evil-.example", "may not begin or end with '-'");
        bad(
            Domain,
            &format!("{}.example", "a".repeat(64)),
            "longer than 63",
        );
        bad(
            Domain,
            &format!("{}.example", vec!["a".repeat(63); 4].join(".")),
            "over the DNS limit of 253",
        );
        bad(Domain, "bücher.example", "punycode");
        bad(Domain, "192.0.2.7", "numeric label");
    }

    #[test]
    fn url_values() {
        use IndicatorType::Url;
        for v in [
            "https://evil.example/payload",
            "http://evil.example",
            "HTTPS://evil.example:8443/a?b=c#d",
            "ftp://user:pw@files.evil.example/x",
            "hxxp://evil.example/x",
            "hxxps://evil.example/x",
            "http://192.0.2.7:8080/x",
            "http://[2001:db8::1]:8080/x",
            "http://[2001:db8::1]",
            "https://evil.example?q=1",
        ] {
            ok(Url, v);
        }
        bad(Url, "evil.example/payload", "has no scheme");
        bad(
            Url,
            "javascript://evil.example",
            "scheme \"javascript\" is not accepted",
        );
        bad(Url, "file:///etc/passwd", "scheme \"file\" is not accepted");
        bad(Url, "https:///path", "has no host");
        bad(Url, "https://user@/path", "has no host");
        bad(
            Url,
            "https://evil .example/",
            "spaces or control characters",
        );
        bad(Url, "https://evil.example:99999/", "port \"99999\"");
        bad(Url, "https://evil.example:ab/", "port \"ab\"");
        bad(Url, "https://:80/", "has no host");
        bad(Url, "https://ev!l.example/", "host:");
        bad(Url, "https://[2001:db8::1/", "unclosed '['");
        bad(Url, "https://[nope]/", "not an IPv6 address");
        bad(Url, "https://[::1]x/", "unexpected");
        bad(
            Url,
            &format!("https://evil.example/{}", "a".repeat(MAX_URL_CHARS)),
            "over the limit",
        );
    }

    #[test]
    fn email_values() {
        use IndicatorType::Email;
        for v in [
            "phish@evil.example",
            "first.last+tag@mail.evil.example",
            "O'Brien@evil.example",
        ] {
            ok(Email, v);
        }
        bad(Email, "evil.example", "has no '@'");
        bad(Email, "@evil.example", "empty local part");
        bad(
            Email,
            "a b@evil.example",
            "not allowed in an e-mail address",
        );
        bad(Email, ".a@evil.example", "not allowed");
        bad(Email, "a..b@evil.example", "not allowed");
        bad(Email, "a@b@evil.example", "not allowed");
        bad(Email, "phish@localhost", "domain after '@'");
        bad(Email, "phish@", "domain after '@'");
        bad(
            Email,
            &format!("{}@evil.example", "a".repeat(65)),
            "longer than 64",
        );
    }

    #[test]
    fn hash_values() {
        use IndicatorType::{Md5, Sha1, Sha256};
        ok(Sha256, &"0123456789abcdefABCDEF".repeat(3)[..64]);
        ok(Sha1, &"f".repeat(40));
        ok(Md5, "D41D8CD98F00B204E9800998ECF8427E");
        bad(Sha256, &"a".repeat(63), "64 hex digits, this value has 63");
        bad(Sha256, &"a".repeat(40), "64 hex digits");
        bad(Sha1, &"a".repeat(64), "40 hex digits, this value has 64");
        bad(Md5, &"a".repeat(33), "32 hex digits");
        bad(Md5, &"g".repeat(32), "not hexadecimal");
        bad(Sha1, &format!("{}z", "a".repeat(39)), "not hexadecimal");
    }

    #[test]
    fn cve_values() {
        use IndicatorType::Cve;
        for v in [
            "CVE-2024-3400",
            "CVE-1999-0001",
            "CVE-2021-44228",
            "cve-2024-1234567",
        ] {
            ok(Cve, v);
        }
        bad(Cve, "2024-3400", "not a CVE identifier");
        bad(Cve, "CVE-2024", "not a CVE identifier");
        bad(Cve, "CVE-2024-3400-1", "not a CVE identifier");
        bad(Cve, "CAN-2024-3400", "not a CVE identifier");
        bad(Cve, "CVE-24-3400", "4-digit year");
        bad(Cve, "CVE-1998-3400", "4-digit year");
        bad(Cve, "CVE-2024-340", "4 or more digits");
        bad(Cve, "CVE-2024-34a0", "4 or more digits");
    }

    #[test]
    fn asn_values() {
        use IndicatorType::Asn;
        for v in ["AS64500", "64500", "as1", "1", "4294967295", "AS4294967295"] {
            ok(Asn, v);
        }
        bad(Asn, "AS0", "out of range");
        bad(Asn, "0", "out of range");
        bad(Asn, "4294967296", "out of range");
        bad(Asn, "AS", "not an AS number");
        bad(Asn, "ASN64500", "not an AS number");
        bad(Asn, "AS-1", "not an AS number");
        bad(Asn, "AS+1", "not an AS number");
        bad(Asn, "99999999999999999999", "not an AS number");
    }

    #[test]
    fn text_values() {
        use IndicatorType::Text;
        ok(Text, " anything at all, even with spaces ");
        ok(Text, &"é".repeat(MAX_TEXT_INDICATOR_CHARS));
        bad(Text, "", "empty text indicator");
        bad(Text, "  ", "empty text indicator");
        bad(
            Text,
            &"x".repeat(MAX_TEXT_INDICATOR_CHARS + 1),
            "4097 characters, over the limit of 4096",
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
        a.expires = Some(Timestamp {
            seconds: i64::MAX,
            nanos: 999_999_999,
        });
        check(&a).unwrap();
        a.expires = Some(Timestamp {
            seconds: i64::MIN,
            nanos: 0,
        });
        fails(&a, "alert.expires", "not after");
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
}
