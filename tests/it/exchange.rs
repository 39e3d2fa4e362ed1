//! STIX 2.1, MISP and TAXII 2.1 against real nodes: the real `certfed` binary
//! exports and imports, writes a MISP feed, and a node serves TAXII over
//! mutual TLS; the ecosystem's own tools (OASIS stix2-validator, stix2,
//! taxii2-client; PyMISP and misp-stix), driven by `tests/py/exchange.py`,
//! check what certfed writes and write what certfed reads. Without those
//! tools the tool checks are skipped loudly (with `CI` set, a failure); the
//! refusals of bad input and the raw HTTP checks run everywhere.
use crate::common::*;
use certfed::proto::v1::operator_client::OperatorClient;
use certfed::proto::v1::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_certfed");

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/exchange.py")
}

/// Whether the Python tools are installed; a failure in CI when they are not.
fn tools() -> bool {
    let ok = Command::new("python3")
        .arg(script())
        .arg("tools")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "stix2-validator, stix2, taxii2-client, pymisp or misp-stix is not installed; CI must install them (see .ci/run)"
        );
    }
    eprintln!(
        "\n*** the STIX/TAXII/MISP Python tools are not installed: SKIPPING their checks (see .ci/run; with CI=1 this is a failure) ***\n"
    );
    false
}

/// Runs a check of `tests/py/exchange.py`; panics with its output if it fails.
fn py(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Value {
    // requests lets these override a session's `verify` (psf/requests#3829):
    // the tools must trust the federation CA they are given, nothing else.
    let out = Command::new("python3")
        .arg(script())
        .args(args.iter().map(|a| a.as_ref()))
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail = &stderr[stderr.len().saturating_sub(3000)..];
    assert!(
        out.status.success(),
        "exchange.py {:?} failed:\nstdout: {stdout}\nstderr (end): {tail}",
        args.iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("null")).unwrap_or(Value::Null)
}

struct Nodes {
    fed: Fed,
    rt: tokio::runtime::Runtime,
    nodes: Vec<certfed::app::RunningNode>,
}

impl Nodes {
    /// `ids` in a line, node `taxii` (if any) with a TAXII listener.
    fn line(ids: &[&str], taxii: Option<usize>) -> Nodes {
        let edges: Vec<(usize, usize)> = (1..ids.len()).map(|i| (i - 1, i)).collect();
        let mut fed = Fed::new(ids, &edges);
        if let Some(i) = taxii {
            fed.specs[i].extra = format!("\n[taxii]\nlisten = \"127.0.0.1:{}\"\n", free_port());
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let nodes = rt.block_on(async {
            let mut v = vec![];
            for i in 0..ids.len() {
                v.push(fed.start(i).await);
            }
            v
        });
        Nodes { fed, rt, nodes }
    }

    fn op(&self, i: usize) -> OperatorClient<Channel> {
        self.rt.block_on(self.fed.operator(i))
    }

    fn publish(&self, i: usize, alert: Alert, to: &[&str]) -> String {
        self.rt.block_on(publish_on(&self.fed, i, alert, to))
    }

    fn count(&self, i: usize) -> usize {
        let mut op = self.op(i);
        self.rt.block_on(async {
            let mut n = 0;
            let mut token = String::new();
            loop {
                let r = op
                    .list_alerts(ListAlertsRequest {
                        filter: Some(AlertFilter {
                            include_exercise: true,
                            ..Default::default()
                        }),
                        page_size: 1000,
                        page_token: token,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                n += r.alerts.len();
                if r.next_page_token.is_empty() {
                    return n;
                }
                token = r.next_page_token;
            }
        })
    }

    fn get(&self, i: usize, id: &str) -> MessageView {
        let mut op = self.op(i);
        self.rt
            .block_on(op.get_message(GetMessageRequest {
                message_id: id.into(),
            }))
            .unwrap()
            .into_inner()
    }

    /// The binary as the operator of node `i`.
    fn cli(&self, i: usize, args: &[&str]) -> Output {
        let pki = &self.fed.pki;
        Command::new(BIN)
            .env("RUST_LOG", "error")
            .env("CERTFED_NODE", self.fed.addr(i))
            .env("CERTFED_CA", pki.ca_path())
            .env("CERTFED_CERT", pki.path("operator.crt"))
            .env("CERTFED_KEY", pki.path("operator.key"))
            .args(args)
            .output()
            .unwrap()
    }

    fn stop(self) {
        let Nodes { rt, nodes, .. } = self;
        rt.block_on(async {
            for n in nodes {
                n.shutdown().await.unwrap();
            }
        });
    }
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The exit code and stderr of a command that must fail.
fn failed(out: &Output) -> (i32, String) {
    assert!(
        !out.status.success(),
        "should fail; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ind(t: IndicatorType, v: &str, c: &str) -> Indicator {
    Indicator {
        r#type: t as i32,
        value: v.into(),
        comment: c.into(),
    }
}

/// An alert using every field the mappings carry.
fn rich_alert(title: &str, tlp: Tlp) -> Alert {
    Alert {
        title: title.into(),
        description: "Wiper deployed through a VPN appliance.\nSecond paragraph.".into(),
        tlp: tlp as i32,
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
            ind(IndicatorType::Url, "https://evil.example/it's/x?a=1", ""),
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
        expires: Some(prost_types::Timestamp {
            seconds: 4_102_444_800,
            nanos: 0,
        }),
        ..Default::default()
    }
}

#[test]
fn stix_export_passes_the_oasis_tools_and_a_stix_round_trip_keeps_supported_fields() {
    let n = Nodes::line(&["node-a", "node-b"], None);
    let dir = tempfile::tempdir().unwrap();
    let first = n.publish(
        0,
        rich_alert("Wiper against rail operators", Tlp::Green),
        &[],
    );
    let mut upd = rich_alert("Wiper against rail operators (update)", Tlp::Green);
    upd.revision = Revision::Update as i32;
    upd.supersedes = first.clone();
    let second = n.publish(0, upd, &[]);
    n.publish(0, rich_alert("Amber for b", Tlp::Amber), &["node-b"]);

    // All current alerts: the update replaces the original (same report id).
    let all = dir.path().join("all.json");
    let out = ok(&n.cli(
        0,
        &[
            "alert",
            "export",
            "--format",
            "stix21",
            "--out",
            all.to_str().unwrap(),
        ],
    ));
    assert!(out.contains("wrote 2 alert(s)"), "{out}");
    let bundle: Value = serde_json::from_slice(&std::fs::read(&all).unwrap()).unwrap();
    let reports: Vec<&Value> = bundle["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["type"] == "report")
        .collect();
    assert_eq!(reports.len(), 2);
    assert!(
        reports
            .iter()
            .any(|r| r["name"] == "Wiper against rail operators (update)")
    );
    // By id, to stdout: deterministic, and the update keeps the original's report id.
    let one = ok(&n.cli(0, &["alert", "export", "--format", "stix21", &second]));
    assert_eq!(
        one,
        ok(&n.cli(0, &["alert", "export", "--format", "stix21", &second]))
    );
    let orig = ok(&n.cli(0, &["alert", "export", "--format", "stix21", &first]));
    let report_of = |s: &str| -> Value {
        let v: Value = serde_json::from_str(s).unwrap();
        v["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["type"] == "report")
            .cloned()
            .unwrap()
    };
    assert_eq!(report_of(&one)["id"], report_of(&orig)["id"]);
    assert!(report_of(&one)["modified"].as_str() > report_of(&orig)["modified"].as_str());

    if !tools() {
        n.stop();
        return;
    }
    let v = py(&[&"stix-validate", &all]);
    assert!(v["types"].as_array().unwrap().len() >= 7, "{v}");

    // A bundle written by the OASIS stix2 library: import, export, compare.
    let ext = dir.path().join("external.json");
    py(&[&"stix-make", &ext]);
    let before = n.count(0);
    let out = ok(&n.cli(
        0,
        &[
            "alert",
            "import",
            "--format",
            "stix21",
            ext.to_str().unwrap(),
            "--tlp",
            "green",
            "--json",
        ],
    ));
    let v: Value = serde_json::from_str(&out).unwrap();
    let published = v["published"].as_array().unwrap();
    assert_eq!(published.len(), 1, "{v}");
    assert_eq!(n.count(0), before + 1);
    let id = published[0]["messageId"].as_str().unwrap();
    let back = dir.path().join("back.json");
    ok(&n.cli(
        0,
        &[
            "alert",
            "export",
            "--format",
            "stix21",
            id,
            "--out",
            back.to_str().unwrap(),
        ],
    ));
    py(&[&"stix-compare", &ext, &back]);
    n.stop();
}

#[test]
fn misp_events_and_feed_load_in_pymisp_and_convert_with_misp_stix() {
    let n = Nodes::line(&["node-a", "node-b"], None);
    let dir = tempfile::tempdir().unwrap();
    let green = n.publish(
        0,
        rich_alert("Wiper against rail operators", Tlp::Green),
        &[],
    );
    n.publish(0, rich_alert("Amber for b", Tlp::Amber), &["node-b"]);

    // The feed: GREEN and below by default; the AMBER alert stays out.
    let feed = dir.path().join("feed");
    let out = ok(&n.cli(
        0,
        &["feed", "misp", "--out", feed.to_str().unwrap(), "--json"],
    ));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["written"].as_u64(), v["events"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(feed.join("manifest.json")).unwrap()).unwrap();
    let first_uuid = manifest.as_object().unwrap().keys().next().unwrap().clone();
    let first_file = std::fs::read(feed.join(format!("{first_uuid}.json"))).unwrap();
    // Incremental: a later run writes only what is new.
    let v: Value = serde_json::from_str(&ok(&n.cli(
        0,
        &["feed", "misp", "--out", feed.to_str().unwrap(), "--json"],
    )))
    .unwrap();
    assert_eq!(v["written"], 0, "{v}");
    n.publish(0, rich_alert("Second wave", Tlp::Clear), &[]);
    let v: Value = serde_json::from_str(&ok(&n.cli(
        0,
        &["feed", "misp", "--out", feed.to_str().unwrap(), "--json"],
    )))
    .unwrap();
    assert_eq!(
        (v["written"].as_u64(), v["events"].as_u64()),
        (Some(1), Some(2)),
        "{v}"
    );
    assert_eq!(
        std::fs::read(feed.join(format!("{first_uuid}.json"))).unwrap(),
        first_file
    );
    let (code, err) = failed(&n.cli(
        0,
        &[
            "feed",
            "misp",
            "--out",
            feed.to_str().unwrap(),
            "--max-tlp",
            "clear",
        ],
    ));
    assert_eq!(code, 1);
    assert!(err.contains("other --max-tlp"), "{err}");

    let ev = dir.path().join("event.json");
    ok(&n.cli(
        0,
        &[
            "alert",
            "export",
            "--format",
            "misp",
            &green,
            "--out",
            ev.to_str().unwrap(),
        ],
    ));
    if !tools() {
        n.stop();
        return;
    }
    let v = py(&[&"misp-check", &ev]);
    assert_eq!(v[0]["attributes"], 14, "{v}");
    assert!(
        v[0]["stix_types"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "indicator"),
        "{v}"
    );
    let v = py(&[&"misp-feed", &feed]);
    assert_eq!(v["events"].as_array().unwrap().len(), 2, "{v}");

    // An event written by PyMISP: import, export, compare; misp-stix converts the result.
    let ext = dir.path().join("pymisp.json");
    py(&[&"misp-make", &ext]);
    let out = ok(&n.cli(
        0,
        &[
            "alert",
            "import",
            "--format",
            "misp",
            ext.to_str().unwrap(),
            "--tlp",
            "green",
            "--json",
        ],
    ));
    let v: Value = serde_json::from_str(&out).unwrap();
    let id = v["published"][0]["messageId"].as_str().unwrap().to_string();
    let back = dir.path().join("back.json");
    ok(&n.cli(
        0,
        &[
            "alert",
            "export",
            "--format",
            "misp",
            &id,
            "--out",
            back.to_str().unwrap(),
        ],
    ));
    py(&[&"misp-compare", &ext, &back]);
    py(&[&"misp-check", &back]);
    n.stop();
}

fn write(dir: &Path, name: &str, v: &Value) -> String {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
    p.to_str().unwrap().to_string()
}

const RED: &str = "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1";

fn report(id: &str, refs: &[&str], markings: &[&str]) -> Value {
    json!({
        "type": "report", "spec_version": "2.1", "id": id,
        "created": "2025-01-01T00:00:00.000Z", "modified": "2025-01-01T00:00:00.000Z",
        "name": format!("report {id}"), "published": "2025-01-01T00:00:00.000Z",
        "report_types": ["threat-report"], "object_refs": refs,
        "object_marking_refs": markings, "labels": ["certfed:severity=\"low\""],
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
fn imports_refuse_bad_files_and_never_publish_part_of_one() {
    let n = Nodes::line(&["node-a", "node-b"], None);
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let r1 = "report--11111111-1111-4111-8111-111111111111";
    let r2 = "report--22222222-2222-4222-8222-222222222222";
    let i1 = "indicator--33333333-3333-4333-8333-333333333333";
    let i2 = "indicator--44444444-4444-4444-8444-444444444444";
    let good = json!({"type": "bundle", "id": "bundle--55555555-5555-4555-8555-555555555555", "objects": [
        report(r1, &[i1], &[]), indicator(i1, "[domain-name:value = 'one.example']"),
        report(r2, &[i2], &[]), indicator(i2, "[domain-name:value = 'two.example']"),
    ]});
    let import = |file: &str, extra: &[&str]| {
        let mut args = vec!["alert", "import", "--format", "stix21", file];
        args.extend_from_slice(extra);
        n.cli(0, &args)
    };
    let before = n.count(0);

    // Malformed JSON.
    std::fs::write(
        dir.join("bad.json"),
        b"{\"type\": \"bundle\", \"objects\": [",
    )
    .unwrap();
    let (code, err) = failed(&import(
        dir.join("bad.json").to_str().unwrap(),
        &["--tlp", "green"],
    ));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("malformed JSON at line 1") && err.contains("nothing was published"),
        "{err}"
    );

    // The second report's pattern cannot be represented: neither report is published.
    let mut partial = good.clone();
    partial["objects"][3]["pattern"] =
        json!("[domain-name:value = 'two.example'] FOLLOWEDBY [url:value = 'http://two.example/']");
    let (code, err) = failed(&import(
        &write(dir, "partial.json", &partial),
        &["--tlp", "green"],
    ));
    assert_eq!(code, 3);
    assert!(
        err.contains(&format!("{i2} pattern: cannot be represented")) && err.contains("FOLLOWEDBY"),
        "{err}"
    );

    // A marking that importing would lower.
    let mut red = good.clone();
    red["objects"][0]["object_marking_refs"] = json!([RED]);
    let (code, err) = failed(&import(
        &write(dir, "red.json", &red),
        &["--tlp", "amber", "--to", "node-b"],
    ));
    assert_eq!(code, 3);
    assert!(err.contains(&format!("{r1} object_marking_refs: marked TLP:RED; importing at TLP:AMBER would lower the marking")), "{err}");

    // An oversized description names the report and field.
    let mut big = good.clone();
    big["objects"][0]["description"] = json!("x".repeat(300 * 1024));
    let (code, err) = failed(&import(&write(dir, "big.json", &big), &["--tlp", "green"]));
    assert_eq!(code, 3);
    assert!(
        err.contains(&format!("{r1} description: the description is")),
        "{err}"
    );

    // Flags: AMBER needs named recipients (usage, exit 2); an unknown recipient
    // is refused by the node's own check before anything is published.
    let file = write(dir, "good.json", &good);
    let (code, err) = failed(&import(&file, &["--tlp", "amber"]));
    assert_eq!(code, 2, "{err}");
    let (code, err) = failed(&import(&file, &["--tlp", "amber", "--to", "node-zz"]));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("the node refused 2 of 2 alert(s); nothing was published")
            && err.contains("node-zz"),
        "{err}"
    );
    assert_eq!(
        n.count(0),
        before,
        "nothing was published by the refused imports"
    );

    // Dry run: checked by the node, nothing published.
    let out = ok(&import(&file, &["--tlp", "green", "--dry-run", "--json"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["dryRun"].as_bool(), v["alerts"].as_array().map(Vec::len)),
        (Some(true), Some(2)),
        "{v}"
    );
    assert_eq!(v["alerts"][0]["alert"]["tlp"], "TLP_GREEN");
    assert!(
        ok(&import(&file, &["--tlp", "green", "--dry-run"]))
            .starts_with("dry run: would publish 2 alert(s) at TLP:GREEN")
    );
    assert_eq!(n.count(0), before);

    // The real import, twice: the second publishes nothing new (same ids).
    let ids = |out: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(out).unwrap();
        v["published"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["messageId"].as_str().unwrap().to_string())
            .collect()
    };
    let first = ids(&ok(&import(&file, &["--tlp", "green", "--json"])));
    assert_eq!(first.len(), 2);
    assert_eq!(n.count(0), before + 2);
    assert_eq!(
        ids(&ok(&import(&file, &["--tlp", "green", "--json"]))),
        first
    );
    assert_eq!(n.count(0), before + 2);
    let m = n.get(0, &first[0]);
    assert_eq!(m.tlp, Tlp::Green as i32);
    assert_eq!(m.alert.unwrap().indicators[0].value, "one.example");

    // MISP: a tlp:red tag is not lowered; an undefined threat level needs --severity.
    let ev = json!({"Event": {"uuid": "5f0c1e2a-0000-4000-8000-000000000001", "info": "x", "threat_level_id": "4",
        "Tag": [{"name": "tlp:red"}], "Attribute": [{"type": "domain", "value": "three.example"}]}});
    let f = write(dir, "ev.json", &ev);
    let (code, err) = failed(&n.cli(
        0,
        &[
            "alert", "import", "--format", "misp", &f, "--tlp", "amber", "--to", "node-b",
        ],
    ));
    assert_eq!(code, 3);
    assert!(
        err.contains("tagged tlp:red; importing at TLP:AMBER would lower the marking"),
        "{err}"
    );
    let out = ok(&n.cli(
        0,
        &[
            "alert",
            "import",
            "--format",
            "misp",
            &f,
            "--tlp",
            "red",
            "--to",
            "node-b",
            "--severity",
            "medium",
        ],
    ));
    assert!(
        out.contains("published 1 alert(s) at TLP:RED to node-b"),
        "{out}"
    );
    assert_eq!(n.count(0), before + 3);
    n.stop();
}

/// A minimal HTTPS/1.1 client with a client certificate (or none).
async fn https(
    addr: std::net::SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, Vec<(String, String)>, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tls = tls.expect("client config");
    let mut cfg = (*tls).clone();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n",
        addr.port()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .await
        .or_else(|e| if buf.is_empty() { Err(e) } else { Ok(0) })?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let hs = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, hs, body.to_string()))
}

fn header<'a>(hs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    hs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn taxii_serves_operators_only_what_this_node_may_read() {
    // a - b - c: node-b serves TAXII; a's AMBER alert to c passes b encrypted.
    let n = Nodes::line(&["node-a", "node-b", "node-c"], Some(1));
    let addr = n.nodes[1].taxii_addr.expect("taxii is on");
    let mut greens = vec![];
    for i in 0..3 {
        greens.push(n.publish(1, rich_alert(&format!("green {i}"), Tlp::Green), &[]));
    }
    let mut upd = rich_alert("green 0 (update)", Tlp::Green);
    upd.revision = Revision::Update as i32;
    upd.supersedes = greens[0].clone();
    n.publish(1, upd, &[]);
    // An alert with evidence: TAXII describes the file, never serves its bytes.
    let evidence = b"EVIDENCE-FOR-TAXII ".repeat(500);
    {
        let mut op = n.op(1);
        let frames = vec![
            PublishUpload {
                frame: Some(publish_upload::Frame::Start(PublishUploadStart {
                    request: Some(PublishAlertRequest {
                        alert: Some(rich_alert("with evidence", Tlp::Green)),
                        ..Default::default()
                    }),
                    attachments: vec![Attachment {
                        name: "grid.pcap".into(),
                        size: evidence.len() as u64,
                        ..Default::default()
                    }],
                })),
            },
            PublishUpload {
                frame: Some(publish_upload::Frame::Data(AttachmentData {
                    index: 0,
                    data: evidence.clone(),
                })),
            },
        ];
        n.rt.block_on(op.publish_alert_with_attachments(tokio_stream::iter(frames)))
            .unwrap();
    }
    let mut ex = rich_alert("exercise inject", Tlp::Green);
    ex.exercise = true;
    n.publish(1, ex, &[]);
    n.publish(1, rich_alert("amber for c", Tlp::Amber), &["node-c"]);
    let relayed = n.publish(
        0,
        rich_alert("a to c, relayed by b", Tlp::Amber),
        &["node-c"],
    );
    assert!(
        n.rt.block_on(arrives(&n.fed, 2, &relayed, Duration::from_secs(30))),
        "the relay did not happen"
    );

    let pki = &n.fed.pki;
    let op = Some(pki.client_tls("operator"));
    let get = |path: &str, hs: &[(&str, &str)]| {
        n.rt.block_on(https(addr, op.clone(), "GET", path, hs))
            .unwrap()
    };
    let media = "application/taxii+json;version=2.1";
    let (status, hs, body) = get("/taxii2/", &[("Accept", media)]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&hs, "content-type"), Some(media));
    let disc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        disc["api_roots"][0],
        format!("https://localhost:{}/certfed/", addr.port())
    );
    let (_, _, body) = get("/certfed/collections/", &[]);
    let cols: Value = serde_json::from_str(&body).unwrap();
    let cols = cols["collections"].as_array().unwrap().clone();
    assert_eq!(cols.len(), 5);
    let col = |title: &str| {
        cols.iter()
            .find(|c| c["title"].as_str().unwrap().starts_with(title))
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let green = col("TLP:GREEN");
    let amber = col("TLP:AMBER ");

    // Objects: paging with limit and next, date-added headers, no duplicates.
    let mut ids = vec![];
    let mut next = String::new();
    let mut pages = 0;
    loop {
        let q = if next.is_empty() {
            "limit=7".to_string()
        } else {
            format!("limit=7&next={next}")
        };
        let (status, hs, body) = get(
            &format!("/certfed/collections/{green}/objects/?{q}"),
            &[("Accept", media)],
        );
        assert_eq!(status, 200, "{body}");
        let env: Value = serde_json::from_str(&body).unwrap();
        let objs = env["objects"].as_array().cloned().unwrap_or_default();
        assert!(objs.len() <= 7);
        if !objs.is_empty() {
            assert!(
                header(&hs, "x-taxii-date-added-first").is_some()
                    && header(&hs, "x-taxii-date-added-last").is_some()
            );
        }
        ids.extend(objs.iter().map(|o| o["id"].as_str().unwrap().to_string()));
        pages += 1;
        if env["more"] != true {
            assert!(env.get("next").is_none());
            break;
        }
        next = env["next"].as_str().unwrap().to_string();
    }
    assert!(pages > 3, "{pages}");
    let titles: Vec<String> = {
        let (_, _, body) = get(
            &format!("/certfed/collections/{green}/objects/?match[type]=report"),
            &[],
        );
        let env: Value = serde_json::from_str(&body).unwrap();
        env["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        titles,
        ["green 1", "green 2", "green 0 (update)", "with evidence"],
        "current, real alerts only"
    );
    {
        use sha2::Digest;
        let (_, _, body) = get(
            &format!("/certfed/collections/{green}/objects/?match[type]=file,artifact"),
            &[],
        );
        let env: Value = serde_json::from_str(&body).unwrap();
        let objs = env["objects"].as_array().cloned().unwrap_or_default();
        let want: String = sha2::Sha256::digest(&evidence)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(
            objs.iter().any(|o| o["type"] == "file"
                && o["name"] == "grid.pcap"
                && o["size"] == evidence.len() as u64
                && o["hashes"]["SHA-256"] == want.as_str()),
            "the evidence is described: {objs:?}"
        );
        assert!(
            objs.iter().all(|o| o["type"] != "artifact"),
            "no bytes through TAXII: {objs:?}"
        );
    }
    let (_, _, body) = get(
        &format!("/certfed/collections/{amber}/objects/?match%5Btype%5D=report"),
        &[],
    );
    let env: Value = serde_json::from_str(&body).unwrap();
    let titles: Vec<&str> = env["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        ["amber for c"],
        "the relayed a→c alert is not readable here and never served"
    );
    let (status, _, _) = get(
        &format!(
            "/certfed/collections/{green}/objects/indicator--00000000-0000-4000-8000-000000000000/"
        ),
        &[],
    );
    assert_eq!(status, 404);

    // Refusals: bad parameters, media types, writes, unknown collections, node certificates.
    for (path, want) in [
        (
            format!("/certfed/collections/{green}/objects/?added_after=yesterday"),
            400,
        ),
        (
            format!("/certfed/collections/{green}/objects/?next=zz"),
            400,
        ),
        (
            "/certfed/collections/00000000-0000-4000-8000-000000000000/".to_string(),
            404,
        ),
        ("/nowhere/".to_string(), 404),
    ] {
        let (status, hs, body) = get(&path, &[]);
        assert_eq!(status, want, "{path}: {body}");
        assert_eq!(header(&hs, "content-type"), Some(media));
        let e: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(e["http_status"], want.to_string());
        assert!(
            e["title"].is_string() && e["description"].is_string(),
            "{e}"
        );
    }
    let (status, _, _) = get(
        "/taxii2/",
        &[("Accept", "application/taxii+json;version=2.0")],
    );
    assert_eq!(status, 406);
    let (status, _, _) =
        n.rt.block_on(https(
            addr,
            op.clone(),
            "POST",
            &format!("/certfed/collections/{green}/objects/"),
            &[],
        ))
        .unwrap();
    assert_eq!(status, 403);
    let (status, _, _) =
        n.rt.block_on(https(addr, op.clone(), "DELETE", "/taxii2/", &[]))
            .unwrap();
    assert_eq!(status, 405);
    let (status, _, body) =
        n.rt.block_on(https(
            addr,
            Some(pki.client_tls("node-a")),
            "GET",
            "/taxii2/",
            &[],
        ))
        .unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("operator certificate"), "{body}");

    if tools() {
        let url = format!("https://localhost:{}/taxii2/", addr.port());
        let (ca, crt, key) = (
            pki.ca_path(),
            pki.path("operator.crt"),
            pki.path("operator.key"),
        );
        let v = py(&[&"taxii", &url, &ca, &crt, &key]);
        let g = &v["collections"]["TLP:GREEN alerts of node-b"];
        assert_eq!(g["unique"], g["ids"].as_array().unwrap().len(), "{v}");
        assert_eq!(g["ids"].as_array().unwrap().len(), ids.len(), "{v}");
        assert!(g["pages"].as_u64().unwrap() > 3, "{v}");
        assert_eq!(g["reports"], 4, "{v}");
        assert_eq!(g["can_write"], false);
        assert!(
            g["added_after_count"].as_u64().unwrap() + 2 == g["manifest"].as_u64().unwrap(),
            "{v}"
        );
        assert_eq!(g["get_object"].as_array().unwrap().len(), 1, "{v}");
        // No client certificate, a certificate of another CA, a node certificate.
        let v = py(&[&"taxii-refused", &url, &ca]);
        assert_eq!(v["refused"], "tls", "{v}");
        let other = Pki::new();
        other.operator("intruder");
        let v = py(&[
            &"taxii-refused",
            &url,
            &ca,
            &other.path("intruder.crt"),
            &other.path("intruder.key"),
        ]);
        assert_eq!(v["refused"], "tls", "{v}");
        let v = py(&[
            &"taxii-refused",
            &url,
            &ca,
            &pki.path("node-a.crt"),
            &pki.path("node-a.key"),
        ]);
        assert_eq!(
            (v["refused"].as_str(), v["status"].as_u64()),
            (Some("http"), Some(403)),
            "{v}"
        );
        assert_eq!(v["content_type"], media);
    }
    n.stop();
}

/// A poll for what is new (`added_after`, no `next`) starts after what was
/// received before its window, found by bisection, not at the store's first
/// message: behind more than a scan budget of older alerts (5,000 messages a
/// request), the first page holds the new alert and says there is no more.
/// Read from the start, it came back empty with `more` true. The older
/// alerts are pushed by node-a, then aged two hours in node-b's store while
/// it is stopped (receipt times within a minute of `added_after` are read
/// anyway: `RECEIPT_ORDER_MARGIN_MS`).
#[test]
fn a_poll_for_what_is_new_does_not_read_the_older_store() {
    use crate::fedtools::{frame, push_as, signed_alert, signer_from};
    let mut n = Nodes::line(&["node-a", "node-b"], Some(1));
    let older = certfed::domain::exchange::SCAN_BUDGET + 200;
    let signer = signer_from(&n.fed.pki, "node-a");
    let now = certfed::service::now_ms();
    let frames: Vec<PushFrame> = (0..older)
        .map(|i| {
            frame(
                i as u64 + 1,
                signed_alert(&signer, &format!("older {i}"), now),
            )
        })
        .collect();
    n.rt.block_on(async {
        let mut acks = push_as(&n.fed, 1, "node-b", "node-a", frames).await;
        for _ in 0..older {
            let ack = acks.message().await.unwrap().expect("an ack per frame");
            assert_eq!(ack.outcome, PushOutcome::Accepted as i32, "{}", ack.reason);
        }
    });
    let b = n.nodes.remove(1);
    n.rt.block_on(b.shutdown()).unwrap();
    let age = "UPDATE messages SET received_ms = received_ms - 7200000 WHERE origin = 'node-a'";
    let aged = match &n.fed.backend {
        Backend::Sqlite => rusqlite::Connection::open(n.fed.data_dir(1).join("certfed.db"))
            .unwrap()
            .execute(age, [])
            .unwrap() as u64,
        Backend::Postgres { .. } => n.rt.block_on(async {
            let (db, conn) = tokio_postgres::connect(&n.fed.db_url(1), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            db.execute(age, &[]).await.unwrap()
        }),
    };
    assert_eq!(aged, older as u64);
    let b = n.rt.block_on(n.fed.start(1));
    n.nodes.insert(1, b);
    let addr = n.nodes[1].taxii_addr.expect("taxii is on");
    let after = certfed::domain::exchange::format_time_us(certfed::service::now_ms() * 1000);
    std::thread::sleep(Duration::from_millis(20));
    n.publish(1, rich_alert("what is new", Tlp::Green), &[]);
    let op = Some(n.fed.pki.client_tls("operator"));
    let get = |path: &str| {
        let (status, _, body) =
            n.rt.block_on(https(addr, op.clone(), "GET", path, &[]))
                .unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str::<Value>(&body).unwrap()
    };
    let green = get("/certfed/collections/")["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["title"].as_str().unwrap().starts_with("TLP:GREEN"))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let page = get(&format!(
        "/certfed/collections/{green}/objects/?added_after={after}"
    ));
    let objects = page["objects"].as_array().cloned().unwrap_or_default();
    assert!(
        objects
            .iter()
            .any(|o| o["type"] == "report" && o["name"] == "what is new"),
        "the new alert is on the first page: {page}"
    );
    assert_eq!(page["more"], false, "{page}");
    assert!(
        !objects
            .iter()
            .any(|o| o["name"].as_str().is_some_and(|t| t.starts_with("older"))),
        "nothing older than added_after: {page}"
    );
    // Without added_after the store is read from its first message, a scan
    // budget at a time.
    let first = get(&format!("/certfed/collections/{green}/objects/?limit=5"));
    assert_eq!(first["more"], true, "{first}");
    n.stop();
}

/// `PublishAlertRequest.validate_only` (what `alert import` checks with):
/// the same answers as a publish, nothing signed or stored, the request id
/// left free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_only_checks_like_a_publish_and_stores_nothing() {
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let a = fed.start(0).await;
    let mut op = fed.operator(0).await;
    let key = uuid::Uuid::now_v7().to_string();
    let req = |alert: Alert, to: &[&str], validate_only: bool| PublishAlertRequest {
        alert: Some(alert),
        recipients: to.iter().map(|s| s.to_string()).collect(),
        request_id: key.clone(),
        validate_only,
        ..Default::default()
    };
    let r = op
        .publish_alert(req(rich_alert("check", Tlp::Green), &[], true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.message_id, "");
    let listed = |op: &mut OperatorClient<Channel>| {
        let mut op = op.clone();
        async move {
            op.list_alerts(ListAlertsRequest::default())
                .await
                .unwrap()
                .into_inner()
                .alerts
                .len()
        }
    };
    assert_eq!(listed(&mut op).await, 0, "validate_only stores nothing");
    let e = op
        .publish_alert(req(rich_alert("amber", Tlp::Amber), &[], true))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let mut bad = rich_alert("bad type", Tlp::Green);
    bad.rsit_class = RsitClass::Fraud as i32;
    let e = op.publish_alert(req(bad, &[], true)).await.unwrap_err();
    assert!(e.message().contains("alert.rsit_type"), "{e:?}");
    let e = op
        .publish_alert(req(rich_alert("to nobody", Tlp::Amber), &["node-zz"], true))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    // The request id is still free for the real publish.
    let id = op
        .publish_alert(req(rich_alert("check", Tlp::Green), &[], false))
        .await
        .unwrap()
        .into_inner()
        .message_id;
    assert!(!id.is_empty());
    assert_eq!(listed(&mut op).await, 1);
    a.shutdown().await.unwrap();
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Waits until node `i` holds both attachments of `id` and returns their
/// content by name.
fn contents(n: &Nodes, i: usize, id: &str) -> std::collections::BTreeMap<String, (bool, Vec<u8>)> {
    let mut op = n.op(i);
    n.rt.block_on(async {
        let mut out = std::collections::BTreeMap::new();
        let list = op
            .list_attachments(ListAttachmentsRequest {
                message_id: id.into(),
            })
            .await
            .unwrap()
            .into_inner();
        for s in list.attachments {
            let m = s.attachment.unwrap();
            let (_, data) = crate::attachments::download(&mut op, id, &m.name, true)
                .await
                .unwrap();
            out.insert(m.name, (m.malicious, data));
        }
        out
    })
}

#[test]
fn attachments_travel_as_misp_samples_and_stix_artifacts_and_come_back() {
    let n = Nodes::line(&["node-a", "node-b"], None);
    let dir = tempfile::tempdir().unwrap();
    let pcap_bytes: Vec<u8> = (0..300_000u32)
        .map(|i| (i % 251) as u8)
        .chain(b"EXCHANGE-MARKER".iter().copied())
        .collect();
    let sample_bytes = b"MZ\x90\x00 fake dropper for the exchange test".to_vec();
    let pcap = dir.path().join("capture.pcap");
    let sample = dir.path().join("dropper.exe");
    std::fs::write(&pcap, &pcap_bytes).unwrap();
    std::fs::write(&sample, &sample_bytes).unwrap();
    let out = ok(&n.cli(
        0,
        &[
            "alert",
            "publish",
            "--title",
            "Evidence for the partners' tools",
            "--tlp",
            "green",
            "--severity",
            "high",
            "--attach",
            pcap.to_str().unwrap(),
            "--attach",
            &format!("{},malware", sample.display()),
            "--json",
        ],
    ));
    let id = serde_json::from_str::<Value>(&out).unwrap()["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let export = |format: &str, file: &str, extra: &[&str]| {
        let mut args = vec!["alert", "export", "--format", format, &id, "--out", file];
        args.extend_from_slice(extra);
        ok(&n.cli(0, &args));
    };
    export("misp", &path("ev.json"), &[]);
    export("stix21", &path("bundle.json"), &[]);
    export("misp", &path("thin.json"), &["--inline-max", "0"]);
    export("stix21", &path("thin-bundle.json"), &["--inline-max", "0"]);
    // The sample never leaves in the clear.
    let ev_text = std::fs::read_to_string(path("ev.json")).unwrap();
    let ev: Value = serde_json::from_str(&ev_text).unwrap();
    let ms = ev["Event"]["Attribute"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "malware-sample")
        .unwrap()
        .clone();
    use base64::Engine as _;
    let zipped = base64::engine::general_purpose::STANDARD
        .decode(ms["data"].as_str().unwrap())
        .unwrap();
    assert!(!zipped.windows(16).any(|w| w == &sample_bytes[..16]));

    let want_pcap = sha256_hex(&pcap_bytes);
    let want_sample = sha256_hex(&sample_bytes);
    if tools() {
        let v = py(&[&"misp-evidence", &path("ev.json")]);
        assert_eq!(v["attachment"]["capture.pcap"], want_pcap.as_str(), "{v}");
        assert_eq!(
            v["malware-sample"]["dropper.exe"],
            want_sample.as_str(),
            "{v}"
        );
        // PyMISP loads it and misp-stix converts it to STIX that validates.
        let v = py(&[&"misp-check", &path("ev.json")]);
        let types = v[0]["stix_types"].to_string();
        assert!(types.contains("artifact") && types.contains("file"), "{v}");
        let v = py(&[&"misp-evidence", &path("thin.json")]);
        assert_eq!(v["described"].as_array().unwrap().len(), 2, "{v}");
        py(&[&"misp-check", &path("thin.json")]);
        // The OASIS validator accepts the bundle; stix2 reads the content back.
        py(&[&"stix-validate", &path("bundle.json")]);
        let v = py(&[&"stix-evidence", &path("bundle.json")]);
        assert_eq!(v["files"]["capture.pcap"], want_pcap.as_str(), "{v}");
        assert_eq!(v["files"]["dropper.exe"], want_sample.as_str(), "{v}");
        assert_eq!(v["samples"], json!(["dropper.exe"]), "{v}");
        py(&[&"stix-validate", &path("thin-bundle.json")]);
        let v = py(&[&"stix-evidence", &path("thin-bundle.json")]);
        assert_eq!(v["described"].as_array().unwrap().len(), 2, "{v}");
    }

    // Both files come back as an alert with the same attachments, on another node.
    // (The STIX import goes to node-a only: the same alert with the same
    // evidence to the same recipients is the same publish, by design.)
    for (file, format, to) in [
        ("ev.json", "misp", None),
        ("bundle.json", "stix21", Some("node-a")),
    ] {
        let mut args = vec![
            "alert",
            "import",
            "--format",
            format,
            &path(file),
            "--tlp",
            "green",
            "--json",
        ]
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
        if let Some(to) = to {
            args.extend(["--to".to_string(), to.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = ok(&n.cli(1, &args));
        let v: Value = serde_json::from_str(&out).unwrap();
        let back = v["published"][0]["messageId"].as_str().unwrap().to_string();
        let got = contents(&n, 1, &back);
        assert_eq!(got.len(), 2, "{file}: {:?}", got.keys());
        assert_eq!(got["capture.pcap"], (false, pcap_bytes.clone()), "{file}");
        assert_eq!(got["dropper.exe"], (true, sample_bytes.clone()), "{file}");
    }

    // An event a MISP instance shares (the sample zipped by Info-ZIP).
    if tools() && Command::new("zip").arg("-v").output().is_ok() {
        py(&[
            &"misp-make-evidence",
            &path("misp-made.json"),
            &pcap,
            &sample,
        ]);
        let out = ok(&n.cli(
            0,
            &[
                "alert",
                "import",
                "--format",
                "misp",
                &path("misp-made.json"),
                "--tlp",
                "green",
                "--json",
            ],
        ));
        let v: Value = serde_json::from_str(&out).unwrap();
        let made = v["published"][0]["messageId"].as_str().unwrap().to_string();
        let got = contents(&n, 0, &made);
        assert_eq!(got["capture.pcap"], (false, pcap_bytes.clone()));
        assert_eq!(got["dropper.exe"], (true, sample_bytes.clone()));
    }

    // A file that lies about its sample is refused, naming the attribute; nothing is published.
    let own = |n: &Nodes| {
        let mut op = n.op(1);
        n.rt.block_on(op.list_alerts(ListAlertsRequest {
            filter: Some(AlertFilter {
                origins: vec!["node-b".into()],
                ..Default::default()
            }),
            page_size: 1000,
            page_token: String::new(),
        }))
        .unwrap()
        .into_inner()
        .alerts
        .len()
    };
    let before = own(&n);
    assert_eq!(before, 2);
    let mut lying = ev.clone();
    for a in lying["Event"]["Attribute"].as_array_mut().unwrap() {
        if a["type"] == "malware-sample" {
            a["value"] = json!(format!("dropper.exe|{}", "0".repeat(32)));
        }
    }
    let lying_path = write(dir.path(), "lying.json", &lying);
    let (code, err) = failed(&n.cli(
        1,
        &[
            "alert",
            "import",
            "--format",
            "misp",
            &lying_path,
            "--tlp",
            "green",
        ],
    ));
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(&format!("attribute {} value", ms["uuid"].as_str().unwrap()))
            && err.contains("lies"),
        "{err}"
    );
    assert_eq!(own(&n), before);
    n.stop();
}
