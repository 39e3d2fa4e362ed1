//! Unit tests of the exchange mappings, without I/O: STIX patterns both ways,
//! alert → STIX → alert and alert → MISP → alert round trips, deterministic
//! ids, every refusal of a bad file (named by object and field), and the
//! TAXII query, token and paging rules.
use super::*;
use crate::domain::alert::Limits;
use crate::proto::v1::{
    Alert, Indicator, IndicatorType, Nis2Sector, Nis2Subsector, Revision, RsitClass, RsitType,
    Severity, Tlp,
};
use serde_json::{Value, json};

const NOW: i64 = 1_750_000_000_000;

fn ind(t: IndicatorType, v: &str, c: &str) -> Indicator {
    Indicator {
        r#type: t as i32,
        value: v.into(),
        comment: c.into(),
    }
}

fn full_alert() -> Alert {
    Alert {
        title: "Wiper against rail operators".into(),
        description: "Two operators hit.\nDetails follow.".into(),
        tlp: Tlp::Amber as i32,
        severity: Severity::Critical as i32,
        rsit_class: RsitClass::Intrusions as i32,
        rsit_type: RsitType::SystemCompromise as i32,
        sectors: vec![Nis2Sector::Transport as i32, Nis2Sector::Energy as i32],
        subsectors: vec![Nis2Subsector::Rail as i32],
        affected_countries: vec!["EE".into(), "UA".into()],
        indicators: vec![
            ind(IndicatorType::Ip, "192.0.2.7", "C2"),
            ind(IndicatorType::Ip, "2001:db8::7", ""),
            ind(IndicatorType::Cidr, "198.51.100.0/24", ""),
            ind(IndicatorType::Domain, "evil.example", "dropper host"),
            ind(IndicatorType::Url, "https://evil.example/it's?a=1", ""),
            ind(IndicatorType::Email, "phish@evil.example", ""),
            ind(IndicatorType::Sha256, &"ab".repeat(32), "wiper"),
            ind(IndicatorType::Sha1, &"cd".repeat(20), ""),
            ind(IndicatorType::Md5, &"ef".repeat(16), ""),
            ind(IndicatorType::Cve, "CVE-2024-3400", "entry point"),
            ind(IndicatorType::Asn, "AS64500", ""),
            ind(
                IndicatorType::Text,
                "seen after a fake invoice",
                "analyst note",
            ),
        ],
        references: vec![
            "https://cert.example/advisory/7".into(),
            "CERT-EE-2025-001".into(),
        ],
        expires: Some(crate::domain::envelope::ms_to_ts(NOW + 86_400_000)),
        revision: Revision::Original as i32,
        supersedes: String::new(),
        exercise: false,
    }
}

fn record(a: Alert) -> AlertRecord {
    AlertRecord::original(
        "0196f3c0-0000-7000-8000-000000000001",
        "node-a",
        NOW - 60_000,
        a,
    )
}

fn opts(tlp: Tlp) -> ImportOptions {
    ImportOptions {
        tlp,
        severity: None,
        title: None,
        exercise: false,
        now_ms: NOW,
        limits: Limits::default(),
        max_attachment_bytes: 64 << 20,
    }
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// The alert as an import gives it back: what the mapping carries.
fn carried(mut a: Alert) -> Alert {
    a.tlp = Tlp::Amber as i32;
    a
}

#[test]
fn patterns_round_trip_and_refuse_what_they_cannot_represent() {
    for i in full_alert().indicators {
        match build_pattern(&i) {
            Some(p) => {
                let back = parse_pattern(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
                assert_eq!(back.len(), 1, "{p}");
                assert_eq!(
                    (back[0].r#type, back[0].value.as_str()),
                    (i.r#type, i.value.as_str()),
                    "{p}"
                );
            }
            None => assert!(matches!(
                IndicatorType::try_from(i.r#type).unwrap(),
                IndicatorType::Cve | IndicatorType::Text
            )),
        }
    }
    assert_eq!(
        build_pattern(&ind(IndicatorType::Url, "https://x.example/a'b\\c", "")).unwrap(),
        "[url:value = 'https://x.example/a\\'b\\\\c']"
    );
    assert_eq!(
        build_pattern(&ind(IndicatorType::Asn, "64500", "")).unwrap(),
        "[autonomous-system:number = 64500]"
    );
    let two = parse_pattern("[ipv4-addr:value = '192.0.2.1' OR domain-name:value = 'a.example'] OR [file:hashes.SHA256 = 'aa']").unwrap();
    assert_eq!(two.len(), 3);
    assert_eq!(two[2].r#type, IndicatorType::Sha256 as i32);
    let e = parse_pattern("[email-message:from_ref.value = 'x@y.example']").unwrap();
    assert_eq!(e[0].r#type, IndicatorType::Email as i32);
    for (p, why) in [
        (
            "[ipv4-addr:value = '1.2.3.4' AND domain-name:value = 'a.example']",
            "AND",
        ),
        (
            "[ipv4-addr:value = '1.2.3.4'] FOLLOWEDBY [ipv4-addr:value = '1.2.3.5']",
            "FOLLOWEDBY",
        ),
        ("[ipv4-addr:value = '1.2.3.4'] WITHIN 300 SECONDS", "WITHIN"),
        ("[ipv4-addr:value != '1.2.3.4']", "!="),
        ("[domain-name:value MATCHES '^evil']", "MATCHES"),
        ("[ipv4-addr:value NOT = '1.2.3.4']", "NOT"),
        (
            "[x509-certificate:serial_number = '01']",
            "x509-certificate",
        ),
        ("[file:hashes.'SHA-512' = 'aa']", "SHA-256, SHA-1 and MD5"),
        ("[file:name = 'a.exe']", "file:name"),
        ("[ipv4-addr:value = '1.2.3.4'", "expected OR or ']'"),
        ("([ipv4-addr:value = '1.2.3.4'])", "parenthesised"),
        ("[ipv4-addr:value = 'x]", "unterminated"),
        (
            "[file:created = t'2020-01-01T00:00:00Z']",
            "timestamp literals",
        ),
        ("", "expected '['"),
    ] {
        let e = parse_pattern(p).expect_err(p);
        assert!(e.contains(why), "{p}: {e}");
    }
    let huge = format!("[url:value = '{}']", "a".repeat(MAX_PATTERN_CHARS));
    assert!(parse_pattern(&huge).unwrap_err().contains("over the limit"));
}

#[test]
fn stix_export_is_deterministic_and_round_trips() {
    let rec = record(full_alert());
    let b1 = export_bundle(std::slice::from_ref(&rec));
    let b2 = export_bundle(std::slice::from_ref(&rec));
    assert_eq!(b1, b2, "the same alert exports to the same bundle");
    let objects = b1["objects"].as_array().unwrap();
    let report = objects.iter().find(|o| o["type"] == "report").unwrap();
    assert_eq!(report["id"], report_id(&rec.message_id));
    assert_eq!(report["created_by_ref"], identity_id("node-a"));
    assert_eq!(report["object_marking_refs"][0], tlp_marking_id(Tlp::Amber));
    let labels: Vec<&str> = report["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        labels.contains(&"rsit:intrusions=\"system-compromise\""),
        "{labels:?}"
    );
    assert!(
        labels.contains(&"nis2:impact-subsectors-impacted=\"rail\""),
        "{labels:?}"
    );
    assert!(
        labels.contains(&"certfed:severity=\"critical\""),
        "{labels:?}"
    );
    let types: Vec<&str> = objects
        .iter()
        .map(|o| o["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.iter().filter(|t| **t == "indicator").count(), 10);
    assert_eq!(types.iter().filter(|t| **t == "vulnerability").count(), 1);
    assert_eq!(types.iter().filter(|t| **t == "note").count(), 1);
    assert_eq!(types.iter().filter(|t| **t == "location").count(), 2);
    let marking = objects
        .iter()
        .find(|o| o["type"] == "marking-definition")
        .unwrap();
    assert_eq!(marking["extensions"][TLP2_EXTENSION]["tlp_2_0"], "amber");

    let got = import_bundle(&bytes(&b1), &opts(Tlp::Amber)).unwrap();
    assert_eq!(got.alerts.len(), 1);
    assert_eq!(got.alerts[0].alert, carried(full_alert()));
    assert_eq!(got.alerts[0].source, report_id(&rec.message_id));
    assert!(got.skipped.is_empty(), "{:?}", got.skipped);
}

#[test]
fn an_update_is_a_new_version_of_the_same_objects_and_a_retraction_revokes() {
    let orig = record(full_alert());
    let mut upd = full_alert();
    upd.title = "Wiper against rail operators (update)".into();
    upd.revision = Revision::Update as i32;
    upd.supersedes = orig.message_id.clone();
    let upd = AlertRecord {
        message_id: "0196f3c0-0000-7000-8000-000000000002".into(),
        created_ms: NOW,
        alert: upd,
        ..orig.clone()
    };
    let a = record_objects(&orig);
    let b = record_objects(&upd);
    let rep = |objs: &[Value]| {
        objs.iter()
            .find(|o| o["type"] == "report")
            .cloned()
            .unwrap()
    };
    assert_eq!(rep(&a)["id"], rep(&b)["id"]);
    assert_eq!(rep(&a)["created"], rep(&b)["created"]);
    assert!(rep(&a)["modified"].as_str() < rep(&b)["modified"].as_str());
    let ids = |objs: &[Value]| objs.iter().map(|o| o["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b), "an update keeps every id");
    let both = export_bundle(&[orig.clone(), upd.clone()]);
    let n = both["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["type"] == "report")
        .count();
    assert_eq!(n, 2, "both versions of the report, each once");

    let mut ret = upd.clone();
    ret.alert.revision = Revision::Retraction as i32;
    let r = record_objects(&ret);
    assert_eq!(rep(&r)["revoked"], true);
    let got = import_bundle(&bytes(&export_bundle(&[ret])), &opts(Tlp::Amber)).unwrap_err();
    assert!(got.to_string().contains("nothing to import"), "{got}");
}

#[test]
fn stix_import_refuses_lowering_markings_and_unknown_markings() {
    let b = export_bundle(&[record(full_alert())]);
    let e = import_bundle(&bytes(&b), &opts(Tlp::Green)).unwrap_err();
    let rid = report_id("0196f3c0-0000-7000-8000-000000000001");
    assert!(
        e.errors.iter().any(|x| x.object == rid
            && x.field == "object_marking_refs"
            && x.problem.contains("would lower the marking")),
        "{e}"
    );
    assert!(e.to_string().contains("nothing was published"), "{e}");
    // Importing at a stricter level is allowed.
    assert!(import_bundle(&bytes(&b), &opts(Tlp::Red)).is_ok());

    let mut b = b;
    b["objects"][2]["object_marking_refs"] =
        json!(["marking-definition--00000000-0000-4000-8000-000000000000"]);
    let e = import_bundle(&bytes(&b), &opts(Tlp::Red)).unwrap_err();
    assert!(
        e.to_string()
            .contains("cannot tell whether importing would lower it"),
        "{e}"
    );
}

fn report(refs: Value) -> Value {
    json!({
        "type": "report", "spec_version": "2.1", "id": "report--1b5c3a54-5b8d-4a9e-9a59-8f6a0c1b2c3d",
        "created": "2025-01-01T00:00:00.000Z", "modified": "2025-01-01T00:00:00.000Z",
        "name": "From another tool", "published": "2025-01-01T00:00:00.000Z",
        "report_types": ["threat-report"], "object_refs": refs,
        "labels": ["certfed:severity=\"medium\"", "malware-family:x"],
    })
}

fn indicator(id: &str, pattern: &str) -> Value {
    json!({
        "type": "indicator", "spec_version": "2.1", "id": id,
        "created": "2025-01-01T00:00:00.000Z", "modified": "2025-01-01T00:00:00.000Z",
        "pattern": pattern, "pattern_type": "stix", "valid_from": "2025-01-01T00:00:00.000Z",
    })
}

#[test]
fn stix_import_lists_what_it_does_not_carry_and_names_bad_objects() {
    let ind1 = "indicator--11111111-1111-4111-8111-111111111111";
    let mal = "malware--22222222-2222-4222-8222-222222222222";
    let rel = "relationship--33333333-3333-4333-8333-333333333333";
    let yara = "indicator--44444444-4444-4444-8444-444444444444";
    let bundle = json!({"type": "bundle", "id": "bundle--55555555-5555-4555-8555-555555555555", "objects": [
        report(json!([ind1, mal, yara, "indicator--66666666-6666-4666-8666-666666666666"])),
        indicator(ind1, "[domain-name:value = 'evil.example']"),
        {"type": "malware", "spec_version": "2.1", "id": mal, "created": "2025-01-01T00:00:00Z", "modified": "2025-01-01T00:00:00Z", "name": "x", "is_family": true},
        {"type": "relationship", "spec_version": "2.1", "id": rel, "created": "2025-01-01T00:00:00Z", "modified": "2025-01-01T00:00:00Z", "relationship_type": "indicates", "source_ref": ind1, "target_ref": mal},
        {"type": "indicator", "spec_version": "2.1", "id": yara, "created": "2025-01-01T00:00:00Z", "modified": "2025-01-01T00:00:00Z", "pattern": "rule x {}", "pattern_type": "yara", "valid_from": "2025-01-01T00:00:00Z"},
    ]});
    let got = import_bundle(&bytes(&bundle), &opts(Tlp::Green)).unwrap();
    assert_eq!(got.alerts.len(), 1);
    let a = &got.alerts[0].alert;
    assert_eq!(a.severity, Severity::Medium as i32);
    assert_eq!(a.tlp, Tlp::Green as i32);
    assert_eq!(a.indicators.len(), 1);
    let kinds: Vec<(&str, &str)> = got
        .skipped
        .iter()
        .map(|s| (s.object.as_str(), s.kind.as_str()))
        .collect();
    for want in [
        (mal, "malware"),
        (rel, "relationship"),
        (yara, "indicator"),
        (
            "indicator--66666666-6666-4666-8666-666666666666",
            "reference",
        ),
    ] {
        assert!(kinds.contains(&want), "{want:?} not in {kinds:?}");
    }
    assert!(
        got.skipped
            .iter()
            .any(|s| s.kind == "label" && s.reason.contains("malware-family:x"))
    );

    // A pattern certfed cannot represent is an error naming the object and field.
    let mut bad = bundle.clone();
    bad["objects"][1]["pattern"] =
        json!("[domain-name:value = 'a.example' AND url:value = 'http://a.example/']");
    let e = import_bundle(&bytes(&bad), &opts(Tlp::Green)).unwrap_err();
    assert_eq!(
        (e.errors[0].object.as_str(), e.errors[0].field.as_str()),
        (ind1, "pattern")
    );
    assert!(e.errors[0].problem.contains("AND"), "{e}");
    // A value the indicator rules refuse, too.
    bad["objects"][1]["pattern"] = json!("[domain-name:value = 'not a domain']");
    let e = import_bundle(&bytes(&bad), &opts(Tlp::Green)).unwrap_err();
    assert_eq!(
        (e.errors[0].object.as_str(), e.errors[0].field.as_str()),
        (ind1, "pattern")
    );
    // Without a severity label or --severity.
    let mut nosev = bundle.clone();
    nosev["objects"][0]["labels"] = json!([]);
    let e = import_bundle(&bytes(&nosev), &opts(Tlp::Green)).unwrap_err();
    assert!(e.to_string().contains("--severity"), "{e}");
    let mut o = opts(Tlp::Green);
    o.severity = Some(Severity::Low);
    assert_eq!(
        import_bundle(&bytes(&nosev), &o).unwrap().alerts[0]
            .alert
            .severity,
        Severity::Low as i32
    );
}

#[test]
fn stix_import_refuses_malformed_and_oversized_input() {
    let e = import_bundle(b"{\"type\": \"bundle\", \"objects\": [", &opts(Tlp::Green)).unwrap_err();
    assert!(e.to_string().contains("malformed JSON at line 1"), "{e}");
    let e = import_bundle(b"[1,2]", &opts(Tlp::Green)).unwrap_err();
    assert!(e.to_string().contains("not a JSON object"), "{e}");
    let e = import_bundle(br#"{"type": "report"}"#, &opts(Tlp::Green)).unwrap_err();
    assert!(e.to_string().contains("not a STIX bundle"), "{e}");
    let e = import_bundle(
        br#"{"type": "bundle", "id": "bundle--x", "objects": [{"id": "x"}]}"#,
        &opts(Tlp::Green),
    )
    .unwrap_err();
    assert_eq!(e.errors[0].field, "objects[0]");

    // An oversized description names the report and its description.
    let mut a = full_alert();
    a.description = "x".repeat(300 * 1024);
    let b = export_bundle(&[record(a)]);
    let e = import_bundle(&bytes(&b), &opts(Tlp::Amber)).unwrap_err();
    assert_eq!(e.errors[0].field, "description", "{e}");
    assert!(
        e.errors[0].problem.contains("limits.max_message_bytes"),
        "{e}"
    );

    // Deeply nested JSON is refused by the parser, not by a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(import_bundle(deep.as_bytes(), &opts(Tlp::Green)).is_err());
}

#[test]
fn stix_import_handles_thousands_of_objects() {
    // 5000 indicators in one report: within max_indicators but over the
    // message size limit — one clear error naming the report.
    let mut objects = vec![];
    let mut refs = vec![];
    for i in 0..5000u32 {
        let id = format!("indicator--{}", uuid_for(&format!("t{i}")));
        refs.push(json!(id));
        objects.push(indicator(
            &id,
            &format!(
                "[url:value = 'https://download.evil.example/campaign/2025/payload-{i:05}.bin']"
            ),
        ));
    }
    objects.insert(0, report(json!(refs)));
    let bundle = json!({"type": "bundle", "id": "bundle--55555555-5555-4555-8555-555555555555", "objects": objects});
    let e = import_bundle(&bytes(&bundle), &opts(Tlp::Green)).expect_err("over the size limit");
    assert_eq!(e.errors.len(), 1, "{e}");
    assert_eq!(e.errors[0].field, "object_refs");
    assert!(e.errors[0].problem.contains("split it"), "{e}");
    // With a larger limit the same bundle imports as one alert.
    let mut o = opts(Tlp::Green);
    o.limits.max_message_bytes = 1024 * 1024;
    assert_eq!(
        import_bundle(&bytes(&bundle), &o).unwrap().alerts[0]
            .alert
            .indicators
            .len(),
        5000
    );
    // Over the object limit: refused before any work.
    let many: Vec<Value> = (0..MAX_IMPORT_OBJECTS + 1).map(|_| json!({})).collect();
    let e = import_bundle(
        &bytes(&json!({"type": "bundle", "id": "bundle--x", "objects": many})),
        &opts(Tlp::Green),
    )
    .unwrap_err();
    assert!(e.to_string().contains("over the limit"), "{e}");
}

#[test]
fn a_bundle_without_reports_needs_a_title() {
    let bundle = json!({"type": "bundle", "id": "bundle--55555555-5555-4555-8555-555555555555", "objects": [
        indicator("indicator--11111111-1111-4111-8111-111111111111", "[url:value = 'http://a.example/x']"),
        {"type": "ipv4-addr", "spec_version": "2.1", "id": "ipv4-addr--22222222-2222-4222-8222-222222222222", "value": "192.0.2.9"},
    ]});
    let e = import_bundle(&bytes(&bundle), &opts(Tlp::Green)).unwrap_err();
    assert!(e.to_string().contains("--title"), "{e}");
    let mut o = opts(Tlp::Green);
    o.title = Some("Feed of the day".into());
    o.severity = Some(Severity::Low);
    let got = import_bundle(&bytes(&bundle), &o).unwrap();
    assert_eq!(got.alerts[0].alert.title, "Feed of the day");
    assert_eq!(got.alerts[0].alert.indicators.len(), 2);
}

#[test]
fn misp_event_round_trips_and_matches_the_stix_ids() {
    let rec = record(full_alert());
    let ev = export_event(&rec);
    let e = &ev["Event"];
    assert_eq!(
        e["uuid"],
        report_id(&rec.message_id).trim_start_matches("report--")
    );
    assert_eq!(e["Orgc"]["name"], "node-a");
    assert_eq!(e["threat_level_id"], "1");
    assert_eq!(e["distribution"], "0");
    let tags: Vec<&str> = e["Tag"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for t in [
        "tlp:amber",
        "rsit:intrusions=\"system-compromise\"",
        "nis2:impact-sectors-impacted=\"transport\"",
        "nis2:impact-subsectors-impacted=\"rail\"",
        "certfed:severity=\"critical\"",
        "certfed:country=\"EE\"",
    ] {
        assert!(tags.contains(&t), "{t} not in {tags:?}");
    }
    let types: Vec<&str> = e["Attribute"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    for t in [
        "ip-dst",
        "domain",
        "url",
        "email",
        "sha256",
        "sha1",
        "md5",
        "vulnerability",
        "AS",
        "text",
        "link",
    ] {
        assert!(types.contains(&t), "{t} not in {types:?}");
    }
    let got = import_events(&bytes(&ev), &opts(Tlp::Amber)).unwrap();
    assert_eq!(got.alerts.len(), 1);
    assert_eq!(got.alerts[0].alert, carried(full_alert()));
    assert!(got.skipped.is_empty(), "{:?}", got.skipped);
    // Several events in a REST answer, and a bare event, load too.
    let many = json!({"response": [ev.clone(), ev["Event"].clone()]});
    assert_eq!(
        import_events(&bytes(&many), &opts(Tlp::Amber))
            .unwrap()
            .alerts
            .len(),
        2
    );
}

#[test]
fn misp_import_refuses_lowering_and_reads_other_tools_events() {
    let ev = export_event(&record(full_alert()));
    let e = import_events(&bytes(&ev), &opts(Tlp::Green)).unwrap_err();
    assert!(
        e.errors
            .iter()
            .any(|x| x.field == "Tag" && x.problem.contains("tagged tlp:amber")),
        "{e}"
    );

    let other = json!({"Event": {
        "uuid": "5f0c1e2a-0000-4000-8000-000000000001", "info": "Phishing wave", "threat_level_id": "2",
        "distribution": "0", "Tag": [{"name": "osint:source-type=\"blog-post\""}, {"name": "tlp:ex:chr"}],
        "Attribute": [
            {"uuid": "5f0c1e2a-0000-4000-8000-0000000000a1", "type": "ip-src", "category": "Network activity", "value": "203.0.113.5"},
            {"uuid": "5f0c1e2a-0000-4000-8000-0000000000a2", "type": "ip-dst|port", "category": "Network activity", "value": "203.0.113.5|443"},
            {"uuid": "5f0c1e2a-0000-4000-8000-0000000000a3", "type": "filename|sha256", "category": "Payload delivery", "value": format!("inv.exe|{}", "a".repeat(64))},
        ],
        "Object": [{"name": "domain-ip", "Attribute": [{"uuid": "5f0c1e2a-0000-4000-8000-0000000000a4", "type": "domain", "value": "phish.example"}]}],
    }});
    let e = import_events(&bytes(&other), &opts(Tlp::Green)).unwrap_err();
    assert!(e.to_string().contains("Chatham House"), "{e}");
    let mut ok = other.clone();
    ok["Event"]["Tag"] = json!([{"name": "osint:source-type=\"blog-post\""}]);
    // distribution 0 without a TLP tag: importing at GREEN could widen it.
    let e = import_events(&bytes(&ok), &opts(Tlp::Green)).unwrap_err();
    assert_eq!(e.errors[0].field, "distribution", "{e}");
    let got = import_events(&bytes(&ok), &opts(Tlp::AmberStrict)).unwrap();
    let a = &got.alerts[0].alert;
    assert_eq!(a.severity, Severity::Medium as i32);
    assert_eq!(a.indicators.len(), 3, "{:?}", a.indicators);
    assert!(a.indicators[1].comment.contains("inv.exe"));
    assert!(got.skipped.iter().any(|s| s.kind == "ip-dst|port"));
    assert!(got.skipped.iter().any(|s| s.kind == "tag"));
    // A bad value names the attribute and field.
    let mut bad = ok.clone();
    bad["Event"]["Attribute"][0]["value"] = json!("300.1.1.1");
    let e = import_events(&bytes(&bad), &opts(Tlp::AmberStrict)).unwrap_err();
    assert_eq!(
        e.errors[0].object,
        "attribute 5f0c1e2a-0000-4000-8000-0000000000a1"
    );
    assert_eq!(e.errors[0].field, "value");
    let e = import_events(b"{\"Event\": {\"nope\": 1}}", &opts(Tlp::Green)).unwrap_err();
    assert!(e.to_string().contains("no \"info\""), "{e}");
}

#[test]
fn feed_manifest_and_hashes() {
    let ev = export_event(&record(full_alert()));
    let (uuid, entry) = manifest_entry(&ev).unwrap();
    assert_eq!(uuid, ev["Event"]["uuid"]);
    assert_eq!(entry["info"], "Wiper against rail operators");
    assert_eq!(entry["Orgc"]["name"], "node-a");
    let hashes = attribute_hashes(&ev);
    assert_eq!(
        hashes.len(),
        ev["Event"]["Attribute"].as_array().unwrap().len()
    );
    // md5("192.0.2.7")
    assert!(
        hashes.contains(&"e9cc93d8ae23cfc5941cec7cc4ee788a".to_string()),
        "md5 of 192.0.2.7 in {hashes:?}"
    );
    let composite =
        json!({"Event": {"uuid": "u", "Attribute": [{"type": "filename|md5", "value": "a|b"}]}});
    assert_eq!(
        attribute_hashes(&composite),
        vec![
            "0cc175b9c0f1b6a831c399e269772661".to_string(),
            "92eb5ffee6ae2fec3ad71c777531578f".to_string()
        ]
    );
}

#[test]
fn taxii_queries_tokens_and_collections() {
    let q = parse_query([
        ("added_after", "2025-01-01T00:00:00.123456Z"),
        ("limit", "5000"),
        ("match[type]", "indicator,report"),
        ("match[id]", "report--x"),
        ("next", "42-3"),
    ])
    .unwrap();
    assert_eq!(q.limit, MAX_LIMIT);
    assert_eq!(q.added_after_us, Some(1_735_689_600_123_456));
    assert_eq!(q.types, ["indicator", "report"]);
    assert_eq!(
        q.next,
        Some(Token {
            cursor: 42,
            index: 3
        })
    );
    for (k, v) in [
        ("added_after", "yesterday"),
        ("limit", "0"),
        ("limit", "-1"),
        ("next", "abc"),
        ("match[version]", "newest"),
        ("match[foo]", "x"),
    ] {
        let e = parse_query([(k, v)]).unwrap_err();
        assert_eq!(e.status, 400, "{k}={v}");
    }
    assert_eq!(
        Token::decode(
            &Token {
                cursor: 7,
                index: 0
            }
            .encode()
        ),
        Some(Token {
            cursor: 7,
            index: 0
        })
    );
    assert_eq!(collections(Tlp::Green).len(), 2);
    assert_eq!(collections(Tlp::Red).len(), 5);
    assert_eq!(collection_id(Tlp::Green), collections(Tlp::Red)[1].id);
    assert_eq!(
        format_time_us(1_735_689_600_123_456),
        "2025-01-01T00:00:00.123456Z"
    );
}

/// A first page with `added_after` may skip what was received a margin
/// before it; a page resumed from a token reads from the token.
#[test]
fn taxii_first_pages_skip_what_was_received_before_the_window() {
    let q = parse_query([("added_after", "2025-01-01T00:00:00.123456Z")]).unwrap();
    let page = Page::new(q);
    assert_eq!(
        page.skip_received_by_ms(),
        Some(1_735_689_600_123 - RECEIPT_ORDER_MARGIN_MS)
    );
    // Everything received by then is before the window, to its last object.
    let by = page.skip_received_by_ms().unwrap();
    assert!(page.before_window(by));
    assert!(!page.before_window(by + RECEIPT_ORDER_MARGIN_MS + 1));
    let resumed = parse_query([
        ("added_after", "2025-01-01T00:00:00.123456Z"),
        ("next", "42-3"),
    ])
    .unwrap();
    assert_eq!(Page::new(resumed).skip_received_by_ms(), None);
    assert_eq!(
        Page::new(parse_query([("limit", "2")]).unwrap()).skip_received_by_ms(),
        None
    );
}

fn objs(n: usize, tag: &str) -> Vec<Value> {
    (0..n).map(|i| json!({"type": "indicator", "id": format!("indicator--{tag}-{i}"), "modified": "2025-01-01T00:00:00.000Z"})).collect()
}

#[test]
fn taxii_pages_cut_inside_messages_and_resume_exactly() {
    // Messages 1..=3 with 3 objects each; pages of 2.
    let stored = |c: u64| 1_000_000 + c as i64;
    let mut seen = vec![];
    let mut q = parse_query([("limit", "2")]).unwrap();
    loop {
        let mut page = Page::new(q.clone());
        for c in page.start().max(1)..=3 {
            if page.offer(c, stored(c), objs(3, &c.to_string())) == Feed::Done {
                break;
            }
        }
        seen.extend(
            page.objects
                .iter()
                .map(|(_, o)| o["id"].as_str().unwrap().to_string()),
        );
        match page.next {
            Some(t) => q.next = Some(t),
            None => break,
        }
    }
    assert_eq!(seen.len(), 9, "{seen:?}");
    seen.dedup();
    assert_eq!(seen.len(), 9);

    // added_after per object: resume from the last date_added of a page.
    let mut page = Page::new(parse_query([("limit", "4")]).unwrap());
    for c in 1..=3 {
        if page.offer(c, stored(c), objs(3, &c.to_string())) == Feed::Done {
            break;
        }
    }
    let (_, last) = page.window().unwrap();
    assert!(page.more());
    let mut rest = Page::new(parse_query([("added_after", last.as_str())]).unwrap());
    for c in 1..=3 {
        rest.offer(c, stored(c), objs(3, &c.to_string()));
    }
    assert_eq!(rest.objects.len(), 5, "{:?}", rest.objects);
    assert!(!rest.more());
    assert!(rest.envelope().get("next").is_none());

    // The scan budget bounds a request that finds nothing.
    let mut empty = Page::new(parse_query([("match[type]", "malware")]).unwrap());
    let mut c = 1;
    while empty.offer(c, stored(c), objs(1, "x")) == Feed::More {
        c += 1;
    }
    assert_eq!(c as usize, SCAN_BUDGET);
    assert!(empty.more() && empty.objects.is_empty());
    assert_eq!(empty.envelope()["next"], format!("{}-0", SCAN_BUDGET + 1));
}
