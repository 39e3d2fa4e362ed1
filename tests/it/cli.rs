//! The real `certfed` binary's operator commands against real nodes (in-process,
//! peer-linked, mutual TLS on 127.0.0.1): JSON output parsed and checked, human
//! tables, credentials from flags and from CERTFED_* variables, and the errors an
//! operator sees for the usual mistakes.

use crate::common::*;
use serde_json::Value;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_certfed");

/// The binary with no CERTFED_* variables inherited.
fn bare() -> Command {
    let mut c = Command::new(BIN);
    for v in ["CERTFED_NODE", "CERTFED_CA", "CERTFED_CERT", "CERTFED_KEY"] {
        c.env_remove(v);
    }
    c.env("RUST_LOG", "error");
    c
}

/// Credentials as flags (`--node --ca --cert --key`), then the command words.
/// clap flattens `Conn` into the subcommand, so they go after the subcommand name.
fn run(pki: &Pki, node: &str, cert: &str, cmd: &[&str], rest: &[&str]) -> Output {
    let (crt, key) = (
        pki.path(&format!("{cert}.crt")),
        pki.path(&format!("{cert}.key")),
    );
    bare()
        .args(cmd)
        .args(["--node", node, "--ca"])
        .arg(pki.ca_path())
        .arg("--cert")
        .arg(crt)
        .arg("--key")
        .arg(key)
        .args(rest)
        .output()
        .unwrap()
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

fn json(out: &Output) -> Value {
    let s = ok(out);
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "should fail; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Retries `f` until it returns Some (the federation is asynchronous).
fn eventually_some<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Nodes {
    fed: Fed,
    rt: tokio::runtime::Runtime,
    nodes: Vec<certfed::app::RunningNode>,
}

impl Nodes {
    /// node-a <-> node-b, started in this process on a runtime that keeps
    /// serving while the test thread runs the binary.
    fn pair() -> Nodes {
        let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let nodes = rt.block_on(async { vec![fed.start(0).await, fed.start(1).await] });
        Nodes { fed, rt, nodes }
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

#[test]
fn operator_commands_print_json_and_tables() {
    let n = Nodes::pair();
    let pki = &n.fed.pki;
    let (a, b) = (n.fed.addr(0), n.fed.addr(1));

    // info
    let v = json(&run(pki, &a, "operator", &["info"], &["--json"]));
    assert_eq!(v["nodeId"], "node-a");
    assert_eq!(v["listen"].as_str().unwrap(), a);
    assert!(v["peers"].as_array().unwrap().iter().any(|p| p == "node-b"));
    let members = v["members"].as_array().unwrap();
    assert!(members.iter().any(|m| m == "node-b"), "{v}");
    assert_eq!(v["signingKeyId"].as_str().unwrap().len(), 16);

    // The same with credentials from the environment only.
    let out = bare()
        .args(["info", "--json"])
        .env("CERTFED_NODE", &b)
        .env("CERTFED_CA", pki.ca_path())
        .env("CERTFED_CERT", pki.path("operator.crt"))
        .env("CERTFED_KEY", pki.path("operator.key"))
        .output()
        .unwrap();
    assert_eq!(json(&out)["nodeId"], "node-b");

    // alert publish
    let v = json(&run(
        pki,
        &a,
        "operator",
        &["alert", "publish"],
        &[
            "--json",
            "--title",
            "Wiper on SCADA jump hosts",
            "--description",
            "seen at a TSO",
            "--tlp",
            "green",
            "--severity",
            "high",
            "--rsit",
            "intrusions",
            "--sector",
            "energy",
            "--country",
            "UA",
            "--indicator",
            "ip:203.0.113.45",
            "--indicator",
            "domain:update-scada.example",
        ],
    ));
    let id = v["messageId"].as_str().expect("messageId").to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");

    // alert list on the origin and, once relayed, on the peer.
    let v = json(&run(pki, &a, "operator", &["alert", "list"], &["--json"]));
    let alerts = v["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{v}");
    assert_eq!(alerts[0]["messageId"], id.as_str());
    assert_eq!(alerts[0]["origin"], "node-a");
    assert_eq!(alerts[0]["alert"]["title"], "Wiper on SCADA jump hosts");
    assert_eq!(alerts[0]["alert"]["tlp"], "TLP_GREEN");
    assert_eq!(alerts[0]["alert"]["sectors"][0], "NIS2_SECTOR_ENERGY");
    // Credentials before the nested subcommand work too.
    let out = bare()
        .args(["alert", "--node", &a, "--ca"])
        .arg(pki.ca_path())
        .arg("--cert")
        .arg(pki.path("operator.crt"))
        .arg("--key")
        .arg(pki.path("operator.key"))
        .args(["list", "--json"])
        .output()
        .unwrap();
    assert_eq!(json(&out)["alerts"][0]["messageId"], id.as_str());
    let v = eventually_some("the alert on node-b", || {
        let v = json(&run(pki, &b, "operator", &["alert", "list"], &["--json"]));
        (v["alerts"].as_array().is_some_and(|a| a.len() == 1)).then_some(v)
    });
    assert_eq!(v["alerts"][0]["messageId"], id.as_str());

    // alert get on the receiver: origin, path, payload.
    let v = json(&run(
        pki,
        &b,
        "operator",
        &["alert", "get", &id],
        &["--json"],
    ));
    assert_eq!(v["messageId"], id.as_str());
    assert_eq!(v["origin"], "node-a");
    assert_eq!(v["tlp"], "TLP_GREEN");
    assert_eq!(v["kind"], "MESSAGE_KIND_ALERT");
    assert!(
        v["envelope"]["signature"].is_string(),
        "envelope included: {v}"
    );
    let path: Vec<&str> = v["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["nodeId"].as_str().unwrap())
        .collect();
    assert_eq!(path, ["node-a"], "{v}");
    let inds = v["alert"]["indicators"].as_array().unwrap();
    assert_eq!(inds.len(), 2);
    assert_eq!(inds[0]["type"], "INDICATOR_TYPE_IP");
    assert_eq!(inds[0]["value"], "203.0.113.45");
    assert_eq!(v["alert"]["affectedCountries"][0], "UA");

    // peers and delivery at the origin.
    let v = eventually_some("link up", || {
        let v = json(&run(pki, &a, "operator", &["peers"], &["--json"]));
        (v["peers"][0]["state"] == "LINK_STATE_UP").then_some(v)
    });
    assert_eq!(v["peers"].as_array().unwrap().len(), 1);
    assert_eq!(v["peers"][0]["peerId"], "node-b");
    assert_eq!(v["peers"][0]["endpoint"].as_str().unwrap(), b);
    let v = eventually_some("delivered to node-b", || {
        let v = json(&run(pki, &a, "operator", &["delivery", &id], &["--json"]));
        (v["recipients"][0]["state"] == "DELIVERY_STATE_DELIVERED").then_some(v)
    });
    assert_eq!(v["messageId"], id.as_str());
    assert_eq!(v["recipients"][0]["nodeId"], "node-b");
    assert_eq!(v["recipients"].as_array().unwrap().len(), 1);

    // Human output: tables with headers.
    let s = ok(&run(pki, &a, "operator", &["peers"], &[]));
    assert!(
        s.contains("PEER") && s.contains("ENDPOINT") && s.contains("STATE"),
        "{s}"
    );
    assert!(s.contains("node-b"), "{s}");
    let s = ok(&run(pki, &b, "operator", &["alert", "list"], &[]));
    assert!(s.contains("MESSAGE ID") && s.contains("ORIGIN"), "{s}");
    assert!(
        s.contains(&id) && s.contains("Wiper on SCADA jump hosts"),
        "{s}"
    );
    let s = ok(&run(pki, &a, "operator", &["info"], &[]));
    assert!(s.contains("node            node-a"), "{s}");

    // Assistance: node-a asks node-b under AMBER, node-b offers, node-a accepts.
    let v = json(&run(
        pki,
        &a,
        "operator",
        &["assist", "request"],
        &[
            "--json",
            "--title",
            "Grid wiper: forensics needed",
            "--description",
            "ICS forensics on site",
            "--tlp",
            "amber",
            "--service",
            "incident-response",
            "--service",
            "forensics",
            "--sector",
            "energy",
            "--severity",
            "critical",
            "--cross-border",
            "--person-days",
            "20",
            "--to",
            "node-b",
        ],
    ));
    let rid = v["requestId"].as_str().expect("requestId").to_string();
    let v = json(&run(
        pki,
        &a,
        "operator",
        &["assist", "show", &rid],
        &["--json"],
    ));
    assert_eq!(v["requestId"], rid.as_str());
    assert_eq!(v["requester"], "node-a");
    assert_eq!(v["state"], "ASSISTANCE_STATE_REQUESTED");
    assert_eq!(v["request"]["title"], "Grid wiper: forensics needed");
    assert_eq!(
        v["request"]["services"],
        serde_json::json!([
            "ASSISTANCE_SERVICE_INCIDENT_RESPONSE",
            "ASSISTANCE_SERVICE_FORENSICS"
        ])
    );
    // The recipient sees it, asked with credentials from the environment.
    let show_b = |rid: &str| {
        bare()
            .args(["assist", "show", rid, "--json"])
            .env("CERTFED_NODE", &b)
            .env("CERTFED_CA", pki.ca_path())
            .env("CERTFED_CERT", pki.path("operator.crt"))
            .env("CERTFED_KEY", pki.path("operator.key"))
            .output()
            .unwrap()
    };
    let v = eventually_some("the request on node-b", || {
        let out = show_b(&rid);
        out.status.success().then(|| json(&out))
    });
    assert_eq!(v["requester"], "node-a");
    assert_eq!(v["state"], "ASSISTANCE_STATE_REQUESTED");

    let v = json(&run(
        pki,
        &b,
        "operator",
        &["assist", "offer", &rid],
        &[
            "--json",
            "--summary",
            "Two ICS forensics analysts",
            "--capability",
            "forensics",
            "--person-days",
            "10",
            "--funding",
            "reserve",
        ],
    ));
    let oid = v["offerId"].as_str().expect("offerId").to_string();
    eventually_some("the offer on node-a", || {
        let v = json(&run(
            pki,
            &a,
            "operator",
            &["assist", "show", &rid],
            &["--json"],
        ));
        (v["state"] == "ASSISTANCE_STATE_OFFERED").then_some(())
    });
    let v = json(&run(
        pki,
        &a,
        "operator",
        &["assist", "decide", &oid],
        &["--json", "--accept", "--note", "welcome"],
    ));
    assert_eq!(v["state"], "ASSISTANCE_STATE_ACCEPTED");
    let v = json(&run(pki, &a, "operator", &["assist", "list"], &["--json"]));
    let reqs = v["requests"].as_array().unwrap();
    assert_eq!(reqs.len(), 1, "{v}");
    assert_eq!(reqs[0]["requestId"], rid.as_str());
    assert_eq!(reqs[0]["offers"][0]["offerId"], oid.as_str());
    assert_eq!(reqs[0]["offers"][0]["donor"], "node-b");
    assert_eq!(reqs[0]["offers"][0]["state"], "OFFER_STATE_ACCEPTED");
    let v = eventually_some("ACCEPTED on node-b", || {
        let out = show_b(&rid);
        let v = json(&out);
        (v["state"] == "ASSISTANCE_STATE_ACCEPTED").then_some(v)
    });
    assert_eq!(v["history"].as_array().unwrap().len(), 3, "{v}");

    n.stop();
}

/// The exit code of a finished command.
fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed by a signal")
}

/// stderr of a failed `--json` command: one JSON object `{"code", "message"}`.
fn json_error(out: &Output) -> Value {
    let err = failed(out);
    let line = err.trim();
    assert_eq!(line.lines().count(), 1, "one line: {err}");
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {err}"));
    assert!(v["code"].is_i64() && v["message"].is_string(), "{v}");
    v
}

#[test]
fn operator_mistakes_fail_with_a_sentence_and_a_distinct_exit_code() {
    let n = Nodes::pair();
    let pki = &n.fed.pki;
    let (a, b) = (n.fed.addr(0), n.fed.addr(1));

    // Nobody listens there: unreachable, exit 6 (gRPC UNAVAILABLE = 14 in JSON).
    let nowhere = format!("127.0.0.1:{}", free_port());
    let out = run(pki, &nowhere, "operator", &["info"], &[]);
    let err = failed(&out);
    assert!(err.contains("cannot reach"), "{err}");
    assert!(err.contains(&nowhere), "{err}");
    assert_eq!(code(&out), 6, "{err}");
    let out = run(pki, &nowhere, "operator", &["info"], &["--json"]);
    assert_eq!(json_error(&out)["code"], 14);
    assert_eq!(code(&out), 6);

    // A node certificate is not an operator certificate: a usage error, exit 2.
    let out = run(pki, &a, "node-a", &["peers"], &["--json"]);
    let v = json_error(&out);
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("operator certificate") && msg.contains("node-a"),
        "{v}"
    );
    assert_eq!(code(&out), 2);

    // An unknown TLP word: clap names the flag and the accepted words, exit 2;
    // nothing is sent.
    let out = run(
        pki,
        &a,
        "operator",
        &["alert", "publish"],
        &["--title", "x", "--tlp", "purple", "--severity", "high"],
    );
    let err = failed(&out);
    assert_eq!(code(&out), 2, "{err}");
    assert!(err.contains("--tlp"), "{err}");
    assert!(err.contains("purple"), "{err}");
    for w in ["clear", "green", "amber", "amber+strict", "red"] {
        assert!(err.contains(w), "names {w}: {err}");
    }
    // The same with --json: JSON on stderr, still exit 2.
    let out = run(
        pki,
        &a,
        "operator",
        &["alert", "publish"],
        &[
            "--json",
            "--title",
            "x",
            "--tlp",
            "purple",
            "--severity",
            "high",
        ],
    );
    let v = json_error(&out);
    assert_eq!(v["code"], 3);
    assert!(v["message"].as_str().unwrap().contains("purple"), "{v}");
    assert_eq!(code(&out), 2);
    let v = json(&run(pki, &a, "operator", &["alert", "list"], &["--json"]));
    assert!(v.get("alerts").is_none(), "nothing was published: {v}");

    // Missing credentials: names the flag or variable, exit 2.
    let out = bare().args(["info", "--node", &a]).output().unwrap();
    let err = failed(&out);
    assert!(err.contains("--ca"), "{err}");
    assert_eq!(code(&out), 2);

    // An unknown message id: not found, exit 4 (gRPC NOT_FOUND = 5 in JSON).
    let missing = "00000000-0000-7000-8000-000000000000";
    let out = run(pki, &a, "operator", &["alert", "get", missing], &[]);
    let err = failed(&out);
    assert_eq!(code(&out), 4, "{err}");
    let out = run(pki, &a, "operator", &["delivery", missing], &["--json"]);
    assert_eq!(json_error(&out)["code"], 5);
    assert_eq!(code(&out), 4);

    // Refused as invalid by the node: an AMBER broadcast, exit 3.
    let out = run(
        pki,
        &a,
        "operator",
        &["alert", "publish"],
        &["--title", "x", "--tlp", "amber", "--severity", "high"],
    );
    let err = failed(&out);
    assert_eq!(code(&out), 3, "{err}");
    assert!(err.contains("recipients"), "{err}");

    // Permission denied by the node: node-b may not move node-a's request (exit 5);
    // not possible in the current state: completing a request nobody accepted (exit 7).
    let rid = json(&run(
        pki,
        &a,
        "operator",
        &["assist", "request"],
        &[
            "--json",
            "--title",
            "t",
            "--description",
            "d",
            "--tlp",
            "green",
            "--service",
            "forensics",
        ],
    ))["requestId"]
        .as_str()
        .unwrap()
        .to_string();
    eventually_some("the request on node-b", || {
        let out = run(pki, &b, "operator", &["assist", "show", &rid], &[]);
        out.status.success().then_some(())
    });
    let out = run(
        pki,
        &b,
        "operator",
        &["assist", "update", &rid],
        &["--state", "closed"],
    );
    let err = failed(&out);
    assert_eq!(code(&out), 5, "{err}");
    let out = run(
        pki,
        &a,
        "operator",
        &["assist", "update", &rid],
        &["--state", "completed", "--json"],
    );
    assert_eq!(json_error(&out)["code"], 9, "FAILED_PRECONDITION");
    assert_eq!(code(&out), 7);

    n.stop();
}

/// `certfed … | head -1` style: the reader is gone before certfed writes. No
/// panic (exit 101 before), no message, exit 0.
#[test]
fn closed_stdout_is_not_a_panic() {
    let n = Nodes::pair();
    let pki = &n.fed.pki;
    let a = n.fed.addr(0);
    for args in [
        &["info", "--json"][..],
        &["peers"][..],
        &["completions", "bash"][..],
    ] {
        let mut cmd = bare();
        cmd.args(args)
            .args(["--node", &a, "--ca"])
            .arg(pki.ca_path())
            .arg("--cert")
            .arg(pki.path("operator.crt"))
            .arg("--key")
            .arg(pki.path("operator.key"));
        if args[0] == "completions" {
            cmd = bare();
            cmd.args(args);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the pipe's read end: closed before any write
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
    // And through a shell pipe, as an operator types it.
    let script = format!(
        "set -o pipefail; \"$0\" info --json --node {a} --ca \"$1\" --cert \"$2\" --key \"$3\" | head -1"
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg(BIN)
        .arg(pki.ca_path())
        .arg(pki.path("operator.crt"))
        .arg(pki.path("operator.key"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{\n");
    n.stop();
}
