//! `certfed demo` as an operator runs it: the real binary, five nodes, the alert
//! scenario, the incident and the assistance exchange; exit 0 with the key
//! lines printed and the HTML situation report written. The story comes from
//! `deploy/exercises/demo.toml`, played by the exercise engine; the demo runs
//! from a folder that does not hold that file.
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_certfed");

#[test]
fn demo_runs_alerts_and_assistance_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let report = dir.path().join("report.html");
    let mut child = Command::new(BIN)
        .arg("demo")
        .arg("--report")
        .arg(&report)
        // The story is embedded: the demo runs from any folder.
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "certfed demo did not finish within 60 s; stdout so far:\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = std::fs::read_to_string(&out_path).unwrap();
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert_eq!(status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    eprintln!("demo took {:?}", started.elapsed());

    for needle in [
        "certfed demo: 5 partner nodes on loopback",
        "link cert-ua  <-> cert-pl",
        "cert-ua  PUBLISHES TLP:GREEN high \"Intrusion at a national power grid operator\"",
        "path cert-ua -> cert-pl -> cert-de",
        "All 5 partners received all 4 alerts, each exactly once",
        "cert-ua  OPENS INCIDENT",
        "cert-ee  SIGHTS   the incident: EE digital-infrastructure, 12 observed (TLP:AMBER, to cert-ua only)",
        "cert-ua  CORRELATION: cert-eu's alert shares 203.0.113.45 with the incident",
        "cert-ua  LINKS it into the incident",
        "cert-ua  sets the status INVESTIGATING",
        "cert-pl and cert-de have received and decrypted the request",
        "cert-ua  severity critical, 5 partners affected",
        "cert-pl  severity critical, 4 partners affected in 4 countries and 4 sectors, 7 contributions + 1 it cannot read",
        "situation report of cert-ua written to",
        "cert-ua  REQUESTS ASSISTANCE TLP:AMBER to cert-pl, cert-de: incident response + forensics (energy, essential entity, critical, cross-border)",
        "cert-pl  OFFERS",
        "cert-de  OFFERS",
        "cert-ua  ACCEPTS  the offer of cert-pl",
        "cert-ua  DECLINES the offer of cert-de",
        "cert-ua  marks the request DEPLOYED",
        "all recipients agree: DEPLOYED",
        "cert-ee  (relays only; cannot read)",
        "cert-eu  (relays only; cannot read)",
    ] {
        assert!(out.contains(needle), "stdout lacks {needle:?}:\n{out}");
    }
    // Every recipient's final view: the same state and offer decisions.
    for node in ["cert-ua", "cert-pl", "cert-de"] {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(node) && l.contains("(offers:"))
            .unwrap_or_else(|| panic!("no final view line for {node}:\n{out}"));
        assert!(
            line.contains("DEPLOYED (offers: cert-pl ACCEPTED, cert-de DECLINED)"),
            "{line}"
        );
    }
    // The alert table has a row per alert with a time for every partner.
    let header = out
        .lines()
        .find(|l| l.starts_with("alert "))
        .expect("table header");
    for n in ["cert-ua", "cert-pl", "cert-de", "cert-ee", "cert-eu"] {
        assert!(header.contains(n), "{header}");
    }
    let rows: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("alert "))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(rows.len(), 4, "{rows:?}");
    for r in rows {
        assert!(!r.contains(" - "), "a partner missed an alert: {r}");
    }
    // The demo ends by writing the situation report: one self-contained page.
    let page = std::fs::read_to_string(&report).expect("the demo wrote its report");
    assert!(page.contains("<svg") && page.contains("id=\"timeline\""));
    assert!(page.contains("Grid wiper: incident response and ICS forensics needed"));
}
