//! The README's grpcurl cookbook, run top to bottom as written against a real
//! line federation a - b - c (in-process nodes, real TLS), with the real
//! grpcurl and jq. Only what must differ on a test machine is substituted: the
//! test PKI for `certs-example/`, free ports for 7701-7703, and longer pauses
//! for a loaded machine. With `CI` set, a missing grpcurl or jq is a failure.

use crate::common::*;
use std::process::Command;

/// The first ```sh block after the "## grpcurl cookbook" heading.
fn cookbook() -> String {
    let readme = include_str!("../../README.md");
    let at = readme
        .find("## grpcurl cookbook")
        .expect("README has a grpcurl cookbook");
    let rest = &readme[at..];
    let start = rest.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let end = rest[start..].find("```").expect("closed block") + start;
    rest[start..end].to_string()
}

fn tool(name: &str, version_arg: &str) -> bool {
    if Command::new(name).arg(version_arg).output().is_ok() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{name} is not installed; CI must install it (see .ci/run)");
    }
    eprintln!(
        "\n*** {name} not found: SKIPPING the README cookbook test (with CI=1 this is a failure) ***\n"
    );
    false
}

#[test]
fn readme_grpcurl_cookbook_runs_top_to_bottom() {
    if !tool("grpcurl", "-version") | !tool("jq", "--version") {
        return;
    }
    let script = cookbook();
    assert!(script.contains("MESSAGE_ID=$(") && script.contains("OFFER_ID=$("));
    let fed = Fed::line();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let nodes =
        rt.block_on(async { vec![fed.start(0).await, fed.start(1).await, fed.start(2).await] });
    let pki = &fed.pki;
    let mut s = script
        .replace("certs-example/ca.crt", &pki.ca_path().display().to_string())
        .replace(
            "certs-example/operator.crt",
            &pki.path("operator.crt").display().to_string(),
        )
        .replace(
            "certs-example/operator.key",
            &pki.path("operator.key").display().to_string(),
        )
        .replace("127.0.0.1:7701", &fed.addr(0))
        .replace("127.0.0.1:7702", &fed.addr(1))
        .replace("127.0.0.1:7703", &fed.addr(2))
        .replace("sleep 2", "sleep 6");
    assert!(!s.contains("certs-example") && !s.contains(":770"), "{s}");
    // Fail on the first failing command, as a careful reader would notice it.
    s.insert_str(0, "set -euo pipefail\n");
    let out = Command::new("bash")
        .arg("-c")
        .arg(&s)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the cookbook failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- script\n{s}"
    );
    for want in [
        "certfed.v1.Operator",
        "SERVING",
        "\"nodeId\": \"node-a\"",
        "Phishing wave",             // ListAlerts on node-c, relayed by node-b
        "\"path\"",                  // GetMessage
        "\"peerId\": \"node-a\"",    // ListPeers on node-b
        "\"acknowledged\"",          // AcknowledgeMessage
        "ASSISTANCE_STATE_OFFERED",  // the OFFERED listing is not empty
        "OFFER_STATE_WITHDRAWN",     // the first offer, withdrawn
        "ASSISTANCE_STATE_DEPLOYED", // the final state on node-a
    ] {
        assert!(
            stdout.contains(want),
            "cookbook output lacks {want:?}:\n{stdout}\n{stderr}"
        );
    }
    rt.block_on(async {
        for n in nodes {
            n.shutdown().await.unwrap();
        }
    });
}
