//! What operations teams plug in: Prometheus (a real `promtool check metrics`
//! on a live node's /metrics, `promtool check rules` and `test rules` on the
//! shipped alert rules, every metric the rules and the Grafana dashboard use
//! present), the systemd notify protocol (a real NOTIFY_SOCKET listener:
//! STATUS lines, RELOADING=1 with MONOTONIC_USEC, a refused reload said in
//! STATUS), journald priorities and the operator audit log of the real
//! binary, health NOT_SERVING on shutdown, `check-config`, and a partner
//! whose DNS name does not resolve.

#![allow(clippy::needless_update)] // requests keep new proto fields at their defaults
use crate::common::*;
use certfed::proto::v1::*;
use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_certfed");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The real promtool, or None outside CI (with a loud message); a failure in CI.
fn promtool() -> Option<String> {
    if Command::new("promtool").arg("--version").output().is_ok() {
        return Some("promtool".into());
    }
    if std::env::var_os("CI").is_some() {
        panic!("promtool is not installed; CI must install it (apt-get install prometheus)");
    }
    eprintln!(
        "\n*** promtool not found: SKIPPING (apt-get install prometheus; with CI=1 this is a failure) ***\n"
    );
    None
}

/// Plain HTTP/1.1 GET with an optional Accept header: (content-type, body).
async fn http_get(addr: std::net::SocketAddr, accept: Option<&str>) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{accept}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    (ctype, body.to_string())
}

fn samples(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

async fn scrape(addr: std::net::SocketAddr) -> HashMap<String, f64> {
    samples(&http_get(addr, None).await.1)
}

fn get(m: &HashMap<String, f64>, k: &str) -> f64 {
    *m.get(k).unwrap_or_else(|| panic!("no series {k}"))
}

/// Metric names (certfed_*, process_*) used in a rules or dashboard file.
fn names_used(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text
        .match_indices("certfed_")
        .chain(text.match_indices("process_"))
    {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // Alert names such as CertfedPeerDown are CamelCase: not these.
        if name.len() > "certfed_".len() && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

fn run_promtool(bin: &str, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(bin)
        .args(args)
        .current_dir(ROOT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut i = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            i.write_all(s.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_cover_rules_and_dashboard() {
    // node-a peers with node-b and node-c; a CRL is configured.
    let mut fed = Fed::new(&["node-a", "node-b", "node-c"], &[(0, 1), (0, 2)]);
    let next = ::time::OffsetDateTime::now_utc() + ::time::Duration::days(30);
    let crl = fed.pki.ca.crl(&[], 1, next).unwrap();
    certfed::pki::write_public(&fed.pki.path("ca.crl"), &crl, false).unwrap();
    for spec in fed.specs.iter_mut() {
        spec.extra = format!("\n[metrics]\nlisten = \"127.0.0.1:{}\"\n", free_port());
    }
    // Only node-a runs: both outboxes fill.
    let a = fed.start(0).await;
    let ma = a.metrics_addr.expect("metrics bound");
    let mut op = fed.operator(0).await;
    for i in 0..3 {
        op.publish_alert(PublishAlertRequest {
            alert: Some(green_alert(&format!("m{i}"))),
            recipients: vec![],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let ob = r#"certfed_outbox_depth{peer="node-b"}"#;
    let oc = r#"certfed_outbox_depth{peer="node-c"}"#;
    let m = scrape(ma).await;
    assert_eq!(get(&m, ob), 3.0);
    assert_eq!(get(&m, oc), 3.0);
    // Every reason exists at 0 before any rejection; build and reload info.
    for r in certfed::domain::envelope::Rejection::ALL_LABELS {
        assert_eq!(
            get(
                &m,
                &format!("certfed_messages_rejected_total{{reason=\"{r}\"}}")
            ),
            0.0
        );
    }
    assert_eq!(
        get(
            &m,
            &format!(
                "certfed_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0
    );
    assert_eq!(get(&m, "certfed_config_last_reload_successful"), 1.0);
    let now = ::time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    let node_exp = get(
        &m,
        r#"certfed_tls_certificate_expiry_timestamp_seconds{certificate="node"}"#,
    );
    assert!(node_exp > now, "{node_exp}");
    assert!(
        get(
            &m,
            r#"certfed_tls_certificate_expiry_timestamp_seconds{certificate="ca"}"#
        ) > now
    );
    let crl_key = m
        .keys()
        .find(|k| k.starts_with("certfed_crl_next_update_timestamp_seconds{"))
        .expect("CRL next update")
        .clone();
    assert_eq!(get(&m, &crl_key), next.unix_timestamp() as f64);
    assert!(get(&m, "process_resident_memory_bytes") > 0.0);
    assert!(get(&m, "process_open_fds") > 0.0);

    // node-b comes up: its outbox drains back to 0 (not stuck at 3); node-c's stays.
    let b = fed.start(1).await;
    assert!(
        eventually(Duration::from_secs(30), || async {
            scrape(ma).await.get(ob) == Some(&0.0)
        })
        .await,
        "outbox to node-b never back to 0: {:?}",
        scrape(ma).await
    );
    assert_eq!(get(&scrape(ma).await, oc), 3.0);
    // Receipts from node-b are counted apart from messages.
    assert!(
        eventually(Duration::from_secs(30), || async {
            scrape(ma).await.get("certfed_receipts_received_total") >= Some(&1.0)
        })
        .await
    );
    let m = scrape(ma).await;
    assert_eq!(
        get(&m, "certfed_messages_accepted_total"),
        0.0,
        "receipts are not messages"
    );
    let mb = scrape(b.metrics_addr.unwrap()).await;
    assert_eq!(get(&mb, "certfed_messages_accepted_total"), 3.0);
    assert_eq!(get(&mb, "certfed_receipts_received_total"), 0.0);

    // Assistance counts follow state changes (materialised, not replayed from scratch).
    let requested = r#"certfed_assistance_requests{state="REQUESTED"}"#;
    let offered = r#"certfed_assistance_requests{state="OFFERED"}"#;
    assert_eq!(get(&scrape(ma).await, requested), 0.0);
    let rid = op
        .request_assistance(RequestAssistanceRequest {
            request: Some(AssistanceRequest {
                title: "t".into(),
                description: "d".into(),
                tlp: Tlp::Green as i32,
                services: vec![AssistanceService::Forensics as i32],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .request_id;
    assert_eq!(get(&scrape(ma).await, requested), 1.0);
    assert!(arrives(&fed, 1, &rid, Duration::from_secs(30)).await);
    let mut op_b = fed.operator(1).await;
    op_b.offer_assistance(OfferAssistanceRequest {
        request_id: rid.clone(),
        offer: Some(Offer {
            summary: "help".into(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(
        eventually(Duration::from_secs(30), || async {
            let m = scrape(ma).await;
            m.get(offered) == Some(&1.0) && m.get(requested) == Some(&0.0)
        })
        .await,
        "{:?}",
        scrape(ma).await
    );

    // Content types: OpenMetrics when asked for, text 0.0.4 otherwise.
    let (ctype, body) = http_get(
        ma,
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
    )
    .await;
    assert!(
        ctype.starts_with("application/openmetrics-text; version=1.0.0"),
        "{ctype}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    let (ctype, text) = http_get(ma, None).await;
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    assert!(!text.contains("# EOF"));

    // Every metric the alert rules and the dashboard use exists.
    let rules =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/prometheus/alerts.yml")).unwrap();
    let dash =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/grafana/certfed.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dash).expect("dashboard is JSON");
    assert!(dashboard["panels"].as_array().unwrap().len() >= 8);
    let present: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for name in names_used(&rules).into_iter().chain(names_used(&dash)) {
        assert!(
            present.contains(&name.as_str()),
            "{name} is used by deploy/ but not exposed:\n{text}"
        );
    }

    // promtool: the live exposition is clean, the rules load and their unit tests pass.
    if let Some(p) = promtool() {
        let (ok, out) = run_promtool(&p, &["check", "metrics"], Some(&text));
        assert!(
            ok && out.trim().is_empty(),
            "promtool check metrics:\n{out}"
        );
        let (ok, out) = run_promtool(
            &p,
            &["check", "rules", "deploy/prometheus/alerts.yml"],
            None,
        );
        assert!(ok, "{out}");
        let (ok, out) = run_promtool(
            &p,
            &["test", "rules", "deploy/prometheus/alerts_test.yml"],
            None,
        );
        assert!(ok, "{out}");
        // The check can fail: an OpenMetrics body is not clean text format.
        let (_, om) = run_promtool(&p, &["check", "metrics"], Some(&body));
        assert!(
            !om.trim().is_empty(),
            "promtool accepted OpenMetrics as text: test is blind"
        );
    }

    // A refused reload shows in the metrics; a good one clears it.
    let cfg = fed.config_path(0);
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        good.replace("cert = \"node-a.crt\"", "cert = \"nope.crt\""),
    )
    .unwrap();
    assert!(a.reload(&cfg).is_err());
    assert_eq!(
        get(&scrape(ma).await, "certfed_config_last_reload_successful"),
        0.0
    );
    std::fs::write(&cfg, &good).unwrap();
    a.reload(&cfg).unwrap();
    assert_eq!(
        get(&scrape(ma).await, "certfed_config_last_reload_successful"),
        1.0
    );

    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_health_service_goes_not_serving_on_shutdown() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let fed = Fed::new(&["node-a"], &[]);
    let a = fed.start(0).await;
    let ch = certfed::transport::client::channel(
        &fed.addr(0),
        fed.pki.client_tls("operator"),
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    let mut streams = Vec::new();
    for svc in ["", "certfed.v1.Operator", "certfed.v1.Federation"] {
        let mut h = HealthClient::new(ch.clone());
        let mut s = h
            .watch(HealthCheckRequest {
                service: svc.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let first = s.message().await.unwrap().unwrap();
        assert_eq!(first.status, ServingStatus::Serving as i32, "{svc:?}");
        streams.push((svc, s));
    }
    let node = a.node.clone();
    let stop = tokio::spawn(a.shutdown());
    node.shutdown.cancel();
    for (svc, mut s) in streams {
        let next = tokio::time::timeout(Duration::from_secs(20), s.message())
            .await
            .unwrap_or_else(|_| panic!("{svc:?}: no status change on shutdown"));
        let st = next.ok().flatten().map(|m| m.status);
        assert_eq!(
            st,
            Some(ServingStatus::NotServing as i32),
            "{svc:?} must say NOT_SERVING before the stream ends"
        );
    }
    stop.await.unwrap().unwrap();
}

// ------------------------------------------------------- the real binary

struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    assert!(
        Command::new("kill")
            .args([&format!("-{sig}"), &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn wait_log(log: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = read(log);
        if s.contains(needle) {
            return s;
        }
        assert!(Instant::now() < deadline, "log never said {needle:?}:\n{s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Notify {
    sock: UnixDatagram,
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Notify {
    fn new() -> Notify {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Notify {
            sock,
            _dir: dir,
            path,
        }
    }

    /// Datagrams until one contains a line starting with `want`; returns that datagram's lines.
    fn until(&self, want: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut buf = [0u8; 8192];
        let mut seen = Vec::new();
        loop {
            assert!(Instant::now() < deadline, "no {want:?}; got {seen:?}");
            if let Ok(n) = self.sock.recv(&mut buf) {
                let d = String::from_utf8_lossy(&buf[..n]).into_owned();
                let lines: Vec<String> = d.lines().map(str::to_string).collect();
                if lines.iter().any(|l| l.starts_with(want)) {
                    return lines;
                }
                seen.extend(lines);
            }
        }
    }
}

/// Config of node-a (peer node-b) whose peer endpoint is a DNS name that does
/// not resolve (`.invalid` is reserved for that, RFC 2606).
fn unresolvable_peer_config(fed: &Fed) -> PathBuf {
    let cfg = fed.config_path(0);
    let s = read(&cfg);
    let from = format!("endpoint = \"127.0.0.1:{}\"", fed.specs[1].port);
    assert!(s.contains(&from), "{s}");
    let out = cfg.with_file_name("node-a-dns.toml");
    std::fs::write(
        &out,
        s.replace(
            &from,
            &format!("endpoint = \"node-b.invalid:{}\"", fed.specs[1].port),
        ),
    )
    .unwrap();
    out
}

#[test]
fn journald_priorities_audit_log_notify_status_and_unresolvable_peer() {
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let cfg = unresolvable_peer_config(&fed);
    let log = fed.pki.path("serve.log");
    let file = std::fs::File::create(&log).unwrap();
    let journal = {
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata().unwrap();
        format!("{}:{}", m.dev(), m.ino())
    };
    let notify = Notify::new();
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .env("JOURNAL_STREAM", &journal)
        .env("NOTIFY_SOCKET", &notify.path)
        .env_remove("WATCHDOG_USEC")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    let mut g = Guard(child);

    // READY=1 with a STATUS line; the unresolvable partner did not stop the start.
    let ready = notify.until("READY=1");
    let status = ready
        .iter()
        .find(|l| l.starts_with("STATUS="))
        .unwrap_or_else(|| panic!("READY without STATUS: {ready:?}"));
    assert!(status.contains("peers up 0/1"), "{status}");
    assert!(status.contains("last reload: none"), "{status}");

    // ListPeers shows why the link is down, naming the host.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let peer = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut op = fed.operator(0).await;
            let r = op
                .list_peers(ListPeersRequest::default())
                .await
                .unwrap()
                .into_inner();
            let p = r.peers[0].clone();
            if !p.last_error.is_empty() {
                break p;
            }
            assert!(
                Instant::now() < deadline,
                "no last_error for the unresolvable peer: {p:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert_eq!(peer.peer_id, "node-b");
    let why = peer.last_error.to_ascii_lowercase();
    assert!(
        why.contains("node-b.invalid") || why.contains("lookup") || why.contains("resolve"),
        "last_error should say the name did not resolve: {peer:?}"
    );
    assert_ne!(peer.state, LinkState::Up as i32);

    // An operator action (info + operator name + message id) and a permission
    // denial (warn), through the real binary's log.
    let id = rt.block_on(async {
        let mut op = fed.operator(0).await;
        let id = op
            .publish_alert(PublishAlertRequest {
                alert: Some(green_alert("audit me")),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .message_id;
        let mut as_node = operator_client(&fed.pki, &fed.addr(0), "node-b").await;
        assert!(as_node.get_node_info(GetNodeInfoRequest {}).await.is_err());
        id
    });
    let s = wait_log(&log, "permission denied");
    let line_with = |needle: &str| -> String {
        s.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{s}"))
            .to_string()
    };
    let audit = s
        .lines()
        .find(|l| l.contains("operator action") && l.contains(&id))
        .unwrap_or_else(|| panic!("no audit line for {id}:\n{s}"))
        .to_string();
    assert!(audit.starts_with("<6>"), "{audit}");
    assert!(
        audit.contains("operator=operator") || audit.contains("operator=\"operator\""),
        "{audit}"
    );
    assert!(audit.contains("publish alert"), "{audit}");
    assert!(
        !audit.contains("audit me"),
        "titles are not logged at info: {audit}"
    );
    assert!(line_with("permission denied").starts_with("<4>"));
    assert!(line_with("peer link down").starts_with("<4>"));
    let start = line_with("certfed starting");
    assert!(
        start.starts_with("<6>") && start.contains(env!("CARGO_PKG_VERSION")),
        "{start}"
    );
    // Every line carries a priority; no Rust debug forms.
    for l in s.lines().filter(|l| !l.is_empty()) {
        assert!(
            l.starts_with('<') && l.as_bytes()[2] == b'>',
            "no priority: {l}"
        );
    }
    assert!(
        !s.contains("Some(") && !s.contains("Operator(\""),
        "debug form in log:\n{s}"
    );

    // SIGHUP with a broken file: RELOADING=1 with MONOTONIC_USEC, then READY=1
    // and a STATUS saying it was refused.
    let good = read(&cfg);
    std::fs::write(
        &cfg,
        good.replace("cert = \"node-a.crt\"", "cert = \"nope.crt\""),
    )
    .unwrap();
    signal(&g.0, "HUP");
    let reloading = notify.until("RELOADING=1");
    let usec = reloading
        .iter()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {reloading:?}"));
    assert!(usec.parse::<u64>().unwrap() > 0);
    let after = notify.until("READY=1");
    let status = after.iter().find(|l| l.starts_with("STATUS=")).unwrap();
    assert!(
        status.contains("REFUSED") && status.contains("nope.crt"),
        "{status}"
    );
    // A good file: applied.
    std::fs::write(&cfg, &good).unwrap();
    signal(&g.0, "HUP");
    notify.until("RELOADING=1");
    let after = notify.until("READY=1");
    let status = after.iter().find(|l| l.starts_with("STATUS=")).unwrap();
    assert!(status.contains("applied"), "{status}");
    let s = read(&log);
    assert!(
        s.lines()
            .any(|l| l.starts_with("<3>") && l.contains("reload refused")),
        "a refused reload is an error:\n{s}"
    );

    signal(&g.0, "TERM");
    notify.until("STOPPING=1");
    let deadline = Instant::now() + Duration::from_secs(30);
    let st = loop {
        if let Some(st) = g.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(st.code(), Some(0), "{}", read(&log));
}

#[test]
fn check_config_validates_exactly_as_serve() {
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let good = fed.config_path(0);
    let check = |cfg: &Path| {
        Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(cfg)
            .output()
            .unwrap()
    };
    let serve_refuses = |cfg: &Path| {
        let out = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(cfg)
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let out = check(&good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    // A partner name that does not resolve is not a configuration error.
    let out = check(&unresolvable_peer_config(&fed));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let variant = |name: &str, from: &str, to: &str| {
        let s = read(&good);
        assert!(s.contains(from), "{from}");
        let p = good.with_file_name(name);
        std::fs::write(&p, s.replace(from, to)).unwrap();
        p
    };
    let cases = [
        (
            variant("c1.toml", "cert = \"node-a.crt\"", "cert = \"nope.crt\""),
            "nope.crt",
        ),
        (
            variant("c2.toml", "[storage]", "[storage]\ncolour = \"blue\""),
            "colour",
        ),
        (
            variant(
                "c3.toml",
                "cert = \"node-a.crt\"\nkey = \"node-a.key\"",
                "cert = \"node-b.crt\"\nkey = \"node-b.key\"",
            ),
            "node.id",
        ),
        (
            variant(
                "c4.toml",
                "endpoint = \"127.0.0.1:",
                "endpoint = \"no port here",
            ),
            "peers[0].endpoint",
        ),
    ];
    for (cfg, needle) in &cases {
        let out = check(cfg);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", cfg.display());
        assert!(err.contains(needle), "{needle}: {err}");
        // serve refuses the same file for the same reason.
        assert!(serve_refuses(cfg).contains(needle));
    }
    // A private key readable by others: same refusal as serve.
    use std::os::unix::fs::PermissionsExt;
    let key = fed.pki.path("node-a.sign.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = check(&good);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(check(&good).status.success());
}
