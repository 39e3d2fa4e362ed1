//! Indicator values ([`validate_indicator`]): each is checked against the syntax of its
//! type (IP, CIDR, domain, URL, e-mail, SHA-256/SHA-1/MD5, CVE, AS number, free text).
//!
//! Strict and never normalising: an indicator is shared exactly as given, so a value
//! with surrounding spaces, an empty label or a non-ASCII domain is refused with the
//! form expected rather than quietly fixed. Only free text may contain spaces. Defanged
//! URL schemes (hxxp, hxxps) are accepted; other defanging (`evil[.]example`) is not.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::proto::v1::{Indicator, IndicatorType};

/// Longest free-text indicator, in characters.
pub const MAX_TEXT_INDICATOR_CHARS: usize = 4096;
/// Longest URL indicator, in characters.
pub const MAX_URL_CHARS: usize = 4096;

/// The rule broken by an unset or unknown indicator type.
pub(super) fn indicator_type_rule(t: i32) -> String {
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
