//! Unit tests of [`validate_indicator`]: accepted and refused values for every indicator
//! type, each refusal saying what is wrong.
use super::*;
use crate::proto::v1::{Indicator, IndicatorType};

fn ind(t: IndicatorType, v: &str) -> Indicator {
    Indicator {
        r#type: t as i32,
        value: v.to_string(),
        comment: String::new(),
    }
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
