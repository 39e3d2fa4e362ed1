//! Unit tests of attachments in the exchange formats: alert with a capture
//! and a malware sample → MISP / STIX → back, MISP's sample zip convention,
//! and every refusal of a file that lies about or exceeds its evidence.
use super::*;
use crate::domain::alert::Limits;
use crate::proto::v1::{Alert, Severity, Tlp};
use serde_json::{Value, json};

const NOW: i64 = 1_750_000_000_000;
const PCAP: &[u8] = b"\xd4\xc3\xb2\xa1 a small capture CERTFED-MARKER";
const SAMPLE: &[u8] = b"MZ\x90\x00 not really a PE, but flagged malicious";

fn sha(b: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(b).to_vec()
}

fn file(name: &str, media: &str, content: &[u8], malicious: bool, inline: bool) -> ExportedFile {
    ExportedFile {
        name: name.into(),
        media_type: media.into(),
        size: content.len() as u64,
        sha256: sha(content),
        malicious,
        content: inline.then(|| content.to_vec()),
    }
}

fn record(inline: bool) -> AlertRecord {
    let alert = Alert {
        title: "Wiper with evidence".into(),
        tlp: Tlp::Amber as i32,
        severity: Severity::High as i32,
        ..Default::default()
    };
    let mut r = AlertRecord::original(
        "0196f3c0-0000-7000-8000-00000000000a",
        "node-a",
        NOW - 1000,
        alert,
    );
    r.attachments = vec![
        file(
            "capture.pcap",
            "application/vnd.tcpdump.pcap",
            PCAP,
            false,
            inline,
        ),
        file(
            "dropper.exe",
            "application/octet-stream",
            SAMPLE,
            true,
            inline,
        ),
    ];
    r
}

fn opts(max: u64) -> ImportOptions {
    ImportOptions {
        tlp: Tlp::Amber,
        severity: None,
        title: None,
        exercise: false,
        now_ms: NOW,
        limits: Limits::default(),
        max_attachment_bytes: max,
    }
}

fn attrs(event: &Value) -> Vec<Value> {
    event["Event"]["Attribute"].as_array().unwrap().clone()
}

fn attr_of<'a>(list: &'a mut [Value], ty: &str) -> &'a mut Value {
    list.iter_mut()
        .find(|a| a["type"] == ty)
        .unwrap_or_else(|| panic!("no {ty} attribute"))
}

#[test]
fn sample_zip_follows_misps_convention_and_reads_back() {
    let (zip, md5) = zip_sample("dropper.exe", SAMPLE).unwrap();
    assert_eq!(md5, evidence::md5_hex(SAMPLE));
    // Encrypted: the sample is not in the zip in the clear.
    assert!(!zip.windows(SAMPLE.len()).any(|w| w == SAMPLE));
    let s = unzip_sample(&zip, SAMPLE_PASSWORD, 1 << 20).unwrap();
    assert_eq!(s.content, SAMPLE);
    assert_eq!(s.md5, md5);
    assert_eq!(s.filename.as_deref(), Some("dropper.exe"));
    let e = unzip_sample(&zip, "not-infected", 1 << 20).unwrap_err();
    assert!(e.contains("password") || e.contains("decrypt"), "{e}");
    // Never inflates past the bound.
    let e = unzip_sample(&zip, SAMPLE_PASSWORD, 8).unwrap_err();
    assert!(e.contains("more than 8 bytes"), "{e}");
    let e = unzip_sample(b"PK not a zip", SAMPLE_PASSWORD, 1 << 20).unwrap_err();
    assert!(e.contains("not a zip"), "{e}");
}

#[test]
fn misp_export_carries_attachment_and_malware_sample_and_reads_back() {
    let ev = export_event(&record(true));
    let mut list = attrs(&ev);
    let att = attr_of(&mut list, "attachment").clone();
    assert_eq!(att["value"], "capture.pcap");
    assert_eq!(
        evidence::unb64(att["data"].as_str().unwrap(), 1 << 20).unwrap(),
        PCAP
    );
    let ms = attr_of(&mut list, "malware-sample").clone();
    assert_eq!(
        ms["value"],
        format!("dropper.exe|{}", evidence::md5_hex(SAMPLE))
    );
    assert_eq!(ms["to_ids"], true);
    let zip = evidence::unb64(ms["data"].as_str().unwrap(), 1 << 20).unwrap();
    assert_eq!(
        unzip_sample(&zip, "infected", 1 << 20).unwrap().content,
        SAMPLE
    );

    let back = import_events(&serde_json::to_vec(&ev).unwrap(), &opts(1 << 20)).unwrap();
    let files = &back.alerts[0].attachments;
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(
        (
            files[0].name.as_str(),
            files[0].content.as_slice(),
            files[0].malicious
        ),
        ("capture.pcap", PCAP, false)
    );
    assert_eq!(files[0].media_type, "application/vnd.tcpdump.pcap");
    assert_eq!(
        (
            files[1].name.as_str(),
            files[1].content.as_slice(),
            files[1].malicious
        ),
        ("dropper.exe", SAMPLE, true)
    );
}

#[test]
fn misp_export_without_content_describes_the_file() {
    let ev = export_event(&record(false));
    let list = attrs(&ev);
    let described: Vec<&Value> = list
        .iter()
        .filter(|a| a["type"] == "filename|sha256")
        .collect();
    assert_eq!(described.len(), 2);
    assert!(described.iter().all(|a| a.get("data").is_none()));
    assert_eq!(
        described[0]["value"],
        format!("capture.pcap|{}", evidence::hex(&sha(PCAP)))
    );
    assert!(
        described[1]["comment"]
            .as_str()
            .unwrap()
            .contains("malware sample")
    );
}

#[test]
fn misp_import_refuses_lying_or_oversized_evidence_naming_it() {
    let ev = export_event(&record(true));
    // A malware-sample whose value names another MD5.
    let mut bad = ev.clone();
    let list = bad["Event"]["Attribute"].as_array_mut().unwrap();
    let ms = attr_of(list, "malware-sample");
    let uuid = ms["uuid"].as_str().unwrap().to_string();
    ms["value"] = format!("dropper.exe|{}", "0".repeat(32)).into();
    let e = import_events(&serde_json::to_vec(&bad).unwrap(), &opts(1 << 20))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("attribute {uuid} value")) && e.contains("lies"),
        "{e}"
    );
    // A sample zipped with another password.
    let mut bad = ev.clone();
    let list = bad["Event"]["Attribute"].as_array_mut().unwrap();
    attr_of(list, "malware-sample")["data"] = json!(evidence::b64(b"definitely not a zip"));
    let e = import_events(&serde_json::to_vec(&bad).unwrap(), &opts(1 << 20))
        .unwrap_err()
        .to_string();
    assert!(e.contains("data") && e.contains("not a zip"), "{e}");
    // Malformed base64.
    let mut bad = ev.clone();
    let list = bad["Event"]["Attribute"].as_array_mut().unwrap();
    attr_of(list, "attachment")["data"] = json!("@@@@");
    let e = import_events(&serde_json::to_vec(&bad).unwrap(), &opts(1 << 20))
        .unwrap_err()
        .to_string();
    assert!(e.contains("base64"), "{e}");
    // Over the node's limit (the two files hold PCAP + SAMPLE bytes).
    let limit = (PCAP.len() + SAMPLE.len() - 1) as u64;
    let e = import_events(&serde_json::to_vec(&ev).unwrap(), &opts(limit))
        .unwrap_err()
        .to_string();
    assert!(e.contains("limits.max_attachment_bytes"), "{e}");
    // A path as a file name.
    let mut bad = ev.clone();
    let list = bad["Event"]["Attribute"].as_array_mut().unwrap();
    attr_of(list, "attachment")["value"] = json!("../../etc/passwd");
    let e = import_events(&serde_json::to_vec(&bad).unwrap(), &opts(1 << 20))
        .unwrap_err()
        .to_string();
    assert!(e.contains("path"), "{e}");
    // An attachment without data is listed as skipped, not silently dropped.
    let mut thin = ev.clone();
    let list = thin["Event"]["Attribute"].as_array_mut().unwrap();
    attr_of(list, "attachment")
        .as_object_mut()
        .unwrap()
        .remove("data");
    let got = import_events(&serde_json::to_vec(&thin).unwrap(), &opts(1 << 20)).unwrap();
    assert_eq!(got.alerts[0].attachments.len(), 1);
    assert!(
        got.skipped
            .iter()
            .any(|s| s.kind == "attachment" && s.reason.contains("no data")),
        "{:?}",
        got.skipped
    );
}

fn objects<'a>(b: &'a Value, ty: &str) -> Vec<&'a Value> {
    b["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["type"] == ty)
        .collect()
}

#[test]
fn stix_export_carries_artifacts_and_a_malware_sample_and_reads_back() {
    let b = export_bundle(&[record(true)]);
    let files = objects(&b, "file");
    assert_eq!(files.len(), 2);
    let arts = objects(&b, "artifact");
    assert_eq!(arts.len(), 2);
    let pcap_art = arts
        .iter()
        .find(|a| a["mime_type"] == "application/vnd.tcpdump.pcap")
        .unwrap();
    assert_eq!(
        evidence::unb64(pcap_art["payload_bin"].as_str().unwrap(), 1 << 20).unwrap(),
        PCAP
    );
    let zip_art = arts
        .iter()
        .find(|a| a["mime_type"] == "application/zip")
        .unwrap();
    assert_eq!(zip_art["encryption_algorithm"], "mime-type-indicated");
    assert_eq!(zip_art["decryption_key"], "infected");
    let mal = objects(&b, "malware");
    assert_eq!(mal.len(), 1);
    assert_eq!(mal[0]["is_family"], false);
    let sample_file = mal[0]["sample_refs"][0].as_str().unwrap();
    assert!(
        files
            .iter()
            .any(|f| f["id"] == sample_file && f["name"] == "dropper.exe")
    );
    let report = objects(&b, "report")[0];
    assert!(
        report["object_refs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == sample_file)
    );

    let back = import_bundle(&serde_json::to_vec(&b).unwrap(), &opts(1 << 20)).unwrap();
    let got = &back.alerts[0].attachments;
    assert_eq!(got.len(), 2, "{got:?} skipped {:?}", back.skipped);
    let pcap = got.iter().find(|f| f.name == "capture.pcap").unwrap();
    assert_eq!((pcap.content.as_slice(), pcap.malicious), (PCAP, false));
    assert_eq!(pcap.media_type, "application/vnd.tcpdump.pcap");
    let s = got.iter().find(|f| f.name == "dropper.exe").unwrap();
    assert_eq!((s.content.as_slice(), s.malicious), (SAMPLE, true));
    // Described-only attachments: a file with its SHA-256, no artifact.
    let thin = export_bundle(&[record(false)]);
    assert!(objects(&thin, "artifact").is_empty());
    assert_eq!(
        objects(&thin, "file")[0]["hashes"]["SHA-256"],
        evidence::hex(&sha(PCAP))
    );
}

#[test]
fn stix_import_refuses_lying_hashes_and_sizes_and_skips_url_only_artifacts() {
    let b = export_bundle(&[record(true)]);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = b.clone();
        for o in c["objects"].as_array_mut().unwrap() {
            f(o);
        }
        import_bundle(&serde_json::to_vec(&c).unwrap(), &opts(1 << 20))
    };
    let e = with(&|o| {
        if o["type"] == "file" && o["name"] == "capture.pcap" {
            o["hashes"]["SHA-256"] = json!("00".repeat(32));
        }
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("hashes") && e.contains("lies"), "{e}");
    let e = with(&|o| {
        if o["type"] == "file" && o["name"] == "capture.pcap" {
            o["size"] = json!(999_999);
        }
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("size") && e.contains("999999"), "{e}");
    let e = with(&|o| {
        if o["type"] == "artifact" && o["mime_type"] == "application/zip" {
            o["decryption_key"] = json!("wrong");
        }
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("payload_bin"), "{e}");
    let got = with(&|o| {
        if o["type"] == "artifact" && o["mime_type"] != "application/zip" {
            o.as_object_mut().unwrap().remove("payload_bin");
            o["url"] = json!("https://files.example/capture.pcap");
        }
    })
    .unwrap();
    assert_eq!(got.alerts[0].attachments.len(), 1);
    assert!(
        got.skipped
            .iter()
            .any(|s| s.kind == "artifact" && s.reason.contains("does not fetch")),
        "{:?}",
        got.skipped
    );
    let e = import_bundle(&serde_json::to_vec(&b).unwrap(), &opts(4))
        .unwrap_err()
        .to_string();
    assert!(e.contains("limits.max_attachment_bytes"), "{e}");
}
