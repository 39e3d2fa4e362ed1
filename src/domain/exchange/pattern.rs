//! STIX 2.1 patterns for certfed's indicator types: [`build`] writes the
//! pattern of an indicator, [`parse`] reads back the patterns certfed can
//! represent.
//!
//! What maps (both ways):
//!
//! | certfed | STIX pattern |
//! |---|---|
//! | ip, cidr (IPv4) | `[ipv4-addr:value = '…']` |
//! | ip, cidr (IPv6) | `[ipv6-addr:value = '…']` |
//! | domain | `[domain-name:value = '…']` |
//! | url | `[url:value = '…']` |
//! | email | `[email-addr:value = '…']` (also read: `email-message:from_ref.value`, `sender_ref.value`) |
//! | sha256, sha1, md5 | `[file:hashes.'SHA-256' = '…']`, `'SHA-1'`, `MD5` |
//! | asn | `[autonomous-system:number = 64500]` |
//!
//! CVE identifiers become `vulnerability` objects and free text becomes a
//! `note`: no pattern (`build` returns `None`).
//!
//! Invariants: `parse(build(i))` gives back `i` (the AS number in its `AS…`
//! form). A pattern is read only if it is one comparison with `=`, or several
//! joined by `OR` (inside one `[…]` or as `[…] OR […]`): each comparison is
//! then an indicator on its own. Anything else — `AND`, `FOLLOWEDBY`, `NOT`,
//! other operators, qualifiers (`WITHIN`, `REPEATS`, `START`/`STOP`), typed
//! literals, object paths certfed has no type for — is an error saying what
//! cannot be represented; nothing is approximated. The reader is linear and
//! bounded by [`MAX_PATTERN_CHARS`].
use crate::proto::v1::{Indicator, IndicatorType};
use std::net::IpAddr;

/// Longest pattern read, in characters.
pub const MAX_PATTERN_CHARS: usize = 16 * 1024;

/// A pattern literal: `'` and `\` escaped.
fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn is_v6(addr: &str) -> bool {
    matches!(addr.parse::<IpAddr>(), Ok(IpAddr::V6(_)))
}

/// The STIX pattern of an indicator; `None` for types without one (CVE, text).
pub fn build(ind: &Indicator) -> Option<String> {
    let v = ind.value.as_str();
    let t = IndicatorType::try_from(ind.r#type).ok()?;
    let (path, literal) = match t {
        IndicatorType::Ip => (
            if is_v6(v) {
                "ipv6-addr:value"
            } else {
                "ipv4-addr:value"
            },
            quote(v),
        ),
        IndicatorType::Cidr => {
            let addr = v.split('/').next().unwrap_or(v);
            (
                if is_v6(addr) {
                    "ipv6-addr:value"
                } else {
                    "ipv4-addr:value"
                },
                quote(v),
            )
        }
        IndicatorType::Domain => ("domain-name:value", quote(v)),
        IndicatorType::Url => ("url:value", quote(v)),
        IndicatorType::Email => ("email-addr:value", quote(v)),
        IndicatorType::Sha256 => ("file:hashes.'SHA-256'", quote(v)),
        IndicatorType::Sha1 => ("file:hashes.'SHA-1'", quote(v)),
        IndicatorType::Md5 => ("file:hashes.MD5", quote(v)),
        IndicatorType::Asn => {
            let digits = v.trim_start_matches(['A', 'S', 'a', 's']);
            (
                "autonomous-system:number",
                digits.parse::<u32>().ok()?.to_string(),
            )
        }
        IndicatorType::Cve | IndicatorType::Text | IndicatorType::Unspecified => return None,
    };
    Some(format!("[{path} = {literal}]"))
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    Paren,
    Str(String),
    Int(String),
    Path(String),
    Op(String),
    Word(String),
}

fn lex(p: &str) -> Result<Vec<Tok>, String> {
    let cs: Vec<char> = p.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        match c {
            '[' => {
                out.push(Tok::Open);
                i += 1;
            }
            ']' => {
                out.push(Tok::Close);
                i += 1;
            }
            '(' | ')' => {
                out.push(Tok::Paren);
                i += 1;
            }
            '\'' => {
                let (s, next) = string_literal(&cs, i)?;
                out.push(Tok::Str(s));
                i = next;
            }
            '=' => {
                out.push(Tok::Op("=".into()));
                i += 1;
            }
            '!' | '<' | '>' => {
                let two = cs.get(i + 1) == Some(&'=');
                out.push(Tok::Op(if two { format!("{c}=") } else { c.to_string() }));
                i += if two { 2 } else { 1 };
            }
            c if c.is_ascii_digit()
                || (c == '-' && cs.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let start = i;
                i += 1;
                while i < cs.len() && (cs[i].is_ascii_digit() || cs[i] == '.') {
                    i += 1;
                }
                out.push(Tok::Int(cs[start..i].iter().collect()));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                // A typed literal: t'…', h'…', b'…'.
                if matches!(c, 't' | 'h' | 'b') && cs.get(i + 1) == Some(&'\'') {
                    return Err(format!(
                        "{} literals ({c}'…') cannot be represented; certfed indicators compare text",
                        match c {
                            't' => "timestamp",
                            'h' => "hex",
                            _ => "binary",
                        }
                    ));
                }
                let start = i;
                while i < cs.len() && (cs[i].is_ascii_alphanumeric() || matches!(cs[i], '_' | '-'))
                {
                    i += 1;
                }
                if cs.get(i) == Some(&':') {
                    // An object path: type:property, dotted, quoted keys, list indexes.
                    i += 1;
                    while i < cs.len() {
                        match cs[i] {
                            ch if ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.') => {
                                i += 1
                            }
                            '\'' => {
                                let (_, next) = string_literal(&cs, i)?;
                                i = next;
                            }
                            '[' if matches!(cs.get(i + 1), Some('*') | Some('0'..='9')) => {
                                while i < cs.len() && cs[i] != ']' {
                                    i += 1;
                                }
                                i += 1;
                            }
                            _ => break,
                        }
                    }
                    out.push(Tok::Path(cs[start..i.min(cs.len())].iter().collect()));
                } else {
                    out.push(Tok::Word(
                        cs[start..i].iter().collect::<String>().to_ascii_uppercase(),
                    ));
                }
            }
            other => {
                return Err(format!(
                    "unexpected character {other:?} at position {}",
                    i + 1
                ));
            }
        }
    }
    Ok(out)
}

/// A `'…'` literal starting at `cs[start]`; returns its value and the index after it.
fn string_literal(cs: &[char], start: usize) -> Result<(String, usize), String> {
    let mut s = String::new();
    let mut i = start + 1;
    while i < cs.len() {
        match cs[i] {
            '\\' => match cs.get(i + 1) {
                Some(&c @ ('\\' | '\'')) => {
                    s.push(c);
                    i += 2;
                }
                _ => {
                    return Err(format!(
                        "invalid escape in a string literal at position {}: only \\' and \\\\ are allowed",
                        i + 1
                    ));
                }
            },
            '\'' => return Ok((s, i + 1)),
            c => {
                s.push(c);
                i += 1;
            }
        }
    }
    Err("unterminated string literal (a ' is missing)".into())
}

/// The certfed type of an object path, or why there is none.
fn path_type(path: &str) -> Result<PathKind, String> {
    let lower = path.to_ascii_lowercase();
    let kind = match lower.as_str() {
        "ipv4-addr:value" | "ipv6-addr:value" => PathKind::Address,
        "domain-name:value" => PathKind::Plain(IndicatorType::Domain),
        "url:value" => PathKind::Plain(IndicatorType::Url),
        "email-addr:value" | "email-message:from_ref.value" | "email-message:sender_ref.value" => {
            PathKind::Plain(IndicatorType::Email)
        }
        "autonomous-system:number" => PathKind::Asn,
        l if l.starts_with("file:hashes.") => {
            let algo: String = l["file:hashes.".len()..]
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect();
            match algo.as_str() {
                "sha256" => PathKind::Plain(IndicatorType::Sha256),
                "sha1" => PathKind::Plain(IndicatorType::Sha1),
                "md5" => PathKind::Plain(IndicatorType::Md5),
                _ => {
                    return Err(format!(
                        "{path}: certfed carries SHA-256, SHA-1 and MD5 file hashes only"
                    ));
                }
            }
        }
        _ => {
            return Err(format!(
                "{path}: certfed has no indicator type for this object path (it carries ipv4-addr, ipv6-addr, domain-name, url, email-addr, file hashes and autonomous-system values)"
            ));
        }
    };
    Ok(kind)
}

enum PathKind {
    Address,
    Asn,
    Plain(IndicatorType),
}

fn keyword_error(w: &str) -> String {
    match w {
        "AND" => "AND (several conditions that must all hold) cannot be split into independent indicators".into(),
        "FOLLOWEDBY" => "FOLLOWEDBY (a sequence of observations) cannot be represented as indicators".into(),
        "NOT" => "NOT (a negated comparison) cannot be represented as an indicator".into(),
        "WITHIN" | "REPEATS" | "START" | "STOP" => {
            format!("the {w} qualifier cannot be represented: certfed indicators have no time window or count")
        }
        "LIKE" | "MATCHES" | "IN" | "ISSUBSET" | "ISSUPERSET" | "EXISTS" => {
            format!("the {w} operator cannot be represented: certfed indicators are exact values (=)")
        }
        other => format!("unexpected {other:?}"),
    }
}

/// Reads a pattern into indicators (type and value; no comment), or says why
/// it cannot be represented.
pub fn parse(pattern: &str) -> Result<Vec<Indicator>, String> {
    let n = pattern.chars().count();
    if n > MAX_PATTERN_CHARS {
        return Err(format!(
            "the pattern is {n} characters, over the limit of {MAX_PATTERN_CHARS}"
        ));
    }
    let toks = lex(pattern)?;
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        // One observation expression: '[' comparison (OR comparison)* ']'.
        match toks.get(i) {
            Some(Tok::Open) => i += 1,
            Some(Tok::Paren) => {
                return Err(
                    "parenthesised expressions cannot be represented; write [a = 'x'] OR [b = 'y']"
                        .into(),
                );
            }
            Some(Tok::Word(w)) => return Err(keyword_error(w)),
            _ => return Err("expected '[' to start an observation expression".into()),
        }
        loop {
            let path = match toks.get(i) {
                Some(Tok::Path(p)) => p.clone(),
                Some(Tok::Word(w)) => return Err(keyword_error(w)),
                Some(Tok::Paren) => {
                    return Err("parenthesised expressions cannot be represented".into());
                }
                _ => return Err("expected an object path such as ipv4-addr:value".into()),
            };
            let kind = path_type(&path)?;
            i += 1;
            match toks.get(i) {
                Some(Tok::Op(op)) if op == "=" => i += 1,
                Some(Tok::Op(op)) => {
                    return Err(format!(
                        "the {op} operator cannot be represented: certfed indicators are exact values (=)"
                    ));
                }
                Some(Tok::Word(w)) => return Err(keyword_error(w)),
                _ => return Err(format!("expected '=' after {path}")),
            }
            let value = match (toks.get(i), &kind) {
                (Some(Tok::Str(s)), _) => s.clone(),
                (Some(Tok::Int(n)), PathKind::Asn) => n.clone(),
                (Some(Tok::Int(n)), _) => {
                    return Err(format!("{path} compares text: write '{n}' in quotes"));
                }
                _ => return Err(format!("expected a value after {path} =")),
            };
            i += 1;
            out.push(indicator(&kind, &path, value)?);
            match toks.get(i) {
                Some(Tok::Word(w)) if w == "OR" => i += 1,
                Some(Tok::Close) => {
                    i += 1;
                    break;
                }
                Some(Tok::Word(w)) => return Err(keyword_error(w)),
                _ => return Err("expected OR or ']'".into()),
            }
        }
        match toks.get(i) {
            None => return Ok(out),
            Some(Tok::Word(w)) if w == "OR" => i += 1,
            Some(Tok::Word(w)) => return Err(keyword_error(w)),
            Some(_) => return Err("expected OR between observation expressions".into()),
        }
    }
}

fn indicator(kind: &PathKind, path: &str, value: String) -> Result<Indicator, String> {
    let (t, value) = match kind {
        PathKind::Address => {
            let t = if value.contains('/') {
                IndicatorType::Cidr
            } else {
                IndicatorType::Ip
            };
            (t, value)
        }
        PathKind::Asn => {
            let n: u64 = value
                .trim()
                .parse()
                .map_err(|_| format!("{path}: {value:?} is not an AS number"))?;
            (IndicatorType::Asn, format!("AS{n}"))
        }
        PathKind::Plain(t) => (*t, value),
    };
    Ok(Indicator {
        r#type: t as i32,
        value,
        comment: String::new(),
    })
}
