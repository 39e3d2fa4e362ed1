//! Operations on the real binary and real listeners: the systemd notify protocol
//! (READY only once the port accepts, WATCHDOG pings, STOPPING on SIGTERM), the
//! Prometheus endpoint moving with real traffic, and SIGHUP reloads (an invalid
//! file is refused; a CRL revokes an operator certificate for new connections).

use crate::common::*;
use certfed::domain::envelope::{Draft, seal};
use certfed::domain::keys::Signer;
use certfed::proto::v1::*;
use prost::Message;
use std::collections::HashMap;
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_certfed");

// ---------------------------------------------------------------- helpers

/// `certfed serve --config cfg`, stderr (the log) into `log`.
fn serve_cmd(cfg: &Path, log: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(["serve", "--config"])
        .arg(cfg)
        .env("RUST_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    c
}

fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig}");
}

fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("certfed did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the child if a test fails half-way.
struct Guard(Option<Child>);
impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
impl Guard {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits until `log` contains `needle` at least `count` times.
fn wait_log(log: &Path, needle: &str, count: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = read(log);
        if s.matches(needle).count() >= count {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "log never said {needle:?} ({count}x):\n{s}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Notify datagrams, split into lines (one datagram may carry several states).
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

    /// The next datagram, or None after `within`.
    fn recv(&self, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        loop {
            match self.sock.recv(&mut buf) {
                Ok(n) => return Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if Instant::now() > deadline {
                        return None;
                    }
                }
                Err(e) => panic!("notify socket: {e}"),
            }
        }
    }

    /// Reads datagrams until one has the line `want`; returns every line seen before it.
    fn until(&self, want: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(d) = self.recv(left) else {
                panic!("no {want:?} within {within:?}; got {seen:?}");
            };
            for l in d.lines() {
                if l == want {
                    return seen;
                }
                seen.push(l.to_string());
            }
        }
    }

    /// All lines received during `d`.
    fn collect(&self, d: Duration) -> Vec<String> {
        let deadline = Instant::now() + d;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Some(m) = self.recv(deadline.saturating_duration_since(Instant::now())) {
                seen.extend(m.lines().map(str::to_string));
            }
        }
        seen
    }
}

fn node_info(fed: &Fed, cert: &str) -> Result<NodeInfo, tonic::Status> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut op = operator_client(&fed.pki, &fed.addr(0), cert).await;
        op.get_node_info(GetNodeInfoRequest {})
            .await
            .map(|r| r.into_inner())
    })
}

// ------------------------------------------------------------ notify socket

/// Starts node-a under `cmd` with NOTIFY_SOCKET; waits for READY=1 and checks
/// that the gRPC port accepts at that moment. Returns the guard.
fn start_notified(fed: &Fed, notify: &Notify, mut cmd: Command) -> Guard {
    let port = fed.specs[0].port;
    cmd.env("NOTIFY_SOCKET", &notify.path);
    let mut g = Guard(Some(cmd.spawn().unwrap()));
    // Not an assertion on timing: only noted.
    let early = TcpStream::connect(("127.0.0.1", port)).is_ok();
    eprintln!("port bound right after spawn: {early}");
    let before = notify.until("READY=1", Duration::from_secs(20));
    // The ordering property: when READY=1 arrives the listener is bound.
    TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(2),
    )
    .expect("the gRPC port accepts connections when READY=1 is received");
    assert!(
        g.child().try_wait().unwrap().is_none(),
        "still running after READY"
    );
    assert!(
        !before.iter().any(|l| l.starts_with("STOPPING")),
        "{before:?}"
    );
    g
}

#[test]
fn notify_ready_after_bind_watchdog_pings_and_stopping_on_sigterm() {
    let fed = Fed::new(&["node-a"], &[]);
    let cfg = fed.config_path(0);
    let log = fed.pki.path("serve.log");
    let notify = Notify::new();
    let mut cmd = serve_cmd(&cfg, &log);
    cmd.env("WATCHDOG_USEC", "200000");
    let mut g = start_notified(&fed, &notify, cmd);

    // A real call is served, not just a bound socket.
    let info = node_info(&fed, "operator").expect("GetNodeInfo after READY");
    assert_eq!(info.node_id, "node-a");

    // WatchdogSec = 200 ms: pings every 100 ms.
    let lines = notify.collect(Duration::from_millis(1000));
    let pings = lines.iter().filter(|l| *l == "WATCHDOG=1").count();
    assert!(
        pings >= 3,
        "expected WATCHDOG=1 about every 100 ms, got {pings}: {lines:?}"
    );

    signal(g.child(), "TERM");
    notify.until("STOPPING=1", Duration::from_secs(20));
    let status = wait_exit(g.child(), Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "log:\n{}", read(&log));
    assert!(read(&log).contains("SIGTERM"));
}

#[test]
fn watchdog_pid_must_match_the_process() {
    let fed = Fed::new(&["node-a"], &[]);
    let cfg = fed.config_path(0);

    // WATCHDOG_PID equal to the child's pid: `exec` keeps the shell's pid.
    let log = fed.pki.path("same-pid.log");
    let notify = Notify::new();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" serve --config \"$1\"")
        .arg(BIN)
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut g = start_notified(&fed, &notify, cmd);
    let lines = notify.collect(Duration::from_millis(700));
    assert!(
        lines.iter().filter(|l| *l == "WATCHDOG=1").count() >= 2,
        "{lines:?}"
    );
    signal(g.child(), "TERM");
    notify.until("STOPPING=1", Duration::from_secs(20));
    assert_eq!(
        wait_exit(g.child(), Duration::from_secs(20)).code(),
        Some(0)
    );

    // WATCHDOG_PID naming another process: the watchdog is not ours, no pings.
    let log = fed.pki.path("other-pid.log");
    let notify = Notify::new();
    let mut cmd = serve_cmd(&cfg, &log);
    cmd.env("WATCHDOG_USEC", "200000").env("WATCHDOG_PID", "1");
    let mut g = start_notified(&fed, &notify, cmd);
    let lines = notify.collect(Duration::from_millis(700));
    assert!(!lines.iter().any(|l| l == "WATCHDOG=1"), "{lines:?}");
    signal(g.child(), "TERM");
    notify.until("STOPPING=1", Duration::from_secs(20));
    assert_eq!(
        wait_exit(g.child(), Duration::from_secs(20)).code(),
        Some(0)
    );
}

// ------------------------------------------------------------------ metrics

/// Adds a `[metrics]` table (before the first array of tables) to a written config.
pub(crate) fn with_metrics(path: &Path, port: u16) -> PathBuf {
    let s = read(path);
    let at = s.find("\n[[").unwrap_or(s.len());
    let mut out = s.clone();
    out.insert_str(at, &format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    let p = path.with_file_name(format!(
        "metrics-{}",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&p, out).unwrap();
    p
}

/// Plain HTTP/1.1 GET; returns (status, body).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    assert!(
        !head.to_ascii_lowercase().contains("chunked"),
        "expected a sized body: {head}"
    );
    (status, body.to_string())
}

/// `name{labels}` → value, for every sample line.
fn parse_metrics(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

pub(crate) async fn scrape(addr: std::net::SocketAddr) -> HashMap<String, f64> {
    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    parse_metrics(&body)
}

pub(crate) fn get(m: &HashMap<String, f64>, k: &str) -> f64 {
    m.get(k).copied().unwrap_or(0.0)
}

/// Waits (up to 60 s) until the node whose metrics listen at `addr` has
/// ended `links` reconciliations it started (one per link comes when the
/// link does). A test that counts sends exactly waits for them first: a
/// round still running may find a message in flight and ask for it again.
pub(crate) async fn reconciled(addr: std::net::SocketAddr, links: u32) -> bool {
    let ended = |m: HashMap<String, f64>| {
        m.iter()
            .filter(|(k, _)| k.starts_with("certfed_reconcile_exchanges_total"))
            .map(|(_, v)| v)
            .sum::<f64>()
            >= f64::from(links)
    };
    let done = eventually(Duration::from_secs(60), || async {
        ended(scrape(addr).await)
    })
    .await;
    if !done {
        eprintln!("{addr}: fewer than {links} reconciliations ended in 60 s");
    }
    done
}

fn rejected_sum(m: &HashMap<String, f64>) -> f64 {
    m.iter()
        .filter(|(k, _)| k.starts_with("certfed_messages_rejected_total"))
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_traffic_and_rejections() {
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let mut nodes = Vec::new();
    for i in 0..2 {
        let cfg = with_metrics(&fed.config_path(i), free_port());
        let cfg = certfed::config::Config::load(&cfg).unwrap();
        nodes.push(
            certfed::app::start(certfed::app::prepare(cfg).unwrap())
                .await
                .unwrap(),
        );
    }
    let (ma, mb) = (
        nodes[0].metrics_addr.expect("metrics bound"),
        nodes[1].metrics_addr.expect("metrics bound"),
    );

    // Other paths: 404.
    let (status, _) = http_get(ma, "/").await;
    assert_eq!(status, 404);
    let (status, _) = http_get(ma, "/metrics/extra").await;
    assert_eq!(status, 404);

    let up_a = r#"certfed_peer_up{peer="node-b"}"#;
    let up_b = r#"certfed_peer_up{peer="node-a"}"#;
    assert!(
        eventually(Duration::from_secs(20), || async {
            get(&scrape(ma).await, up_a) == 1.0 && get(&scrape(mb).await, up_b) == 1.0
        })
        .await,
        "links up: {:?}",
        scrape(ma).await
    );
    // Each node reconciles with the other when its link comes up; one still
    // running when the alerts go out may find them in flight and ask for
    // them again (a duplicate, correct but not what this test counts).
    assert!(reconciled(ma, 1).await && reconciled(mb, 1).await);
    let a0 = scrape(ma).await;
    let b0 = scrape(mb).await;
    assert_eq!(get(&a0, "certfed_messages_published_total"), 0.0);
    assert_eq!(get(&b0, "certfed_messages_accepted_total"), 0.0);

    let mut op = fed.operator(0).await;
    for i in 0..3 {
        op.publish_alert(PublishAlertRequest {
            alert: Some(green_alert(&format!("metrics {i}"))),
            recipients: vec![],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let sent_a = r#"certfed_messages_sent_total{peer="node-b"}"#;
    assert!(
        eventually(Duration::from_secs(20), || async {
            get(&scrape(mb).await, "certfed_messages_accepted_total") == 3.0
                && get(&scrape(ma).await, sent_a) == 3.0
        })
        .await,
        "a: {:?}\nb: {:?}",
        scrape(ma).await,
        scrape(mb).await
    );
    let a1 = scrape(ma).await;
    let b1 = scrape(mb).await;
    assert_eq!(get(&a1, "certfed_messages_published_total"), 3.0);
    assert_eq!(get(&b1, "certfed_messages_received_total"), 3.0);
    assert_eq!(get(&b1, "certfed_messages_published_total"), 0.0);
    assert_eq!(get(&a1, up_a), 1.0);
    assert!(
        get(
            &a1,
            r#"certfed_peer_last_contact_timestamp_seconds{peer="node-b"}"#
        ) > 0.0
    );
    assert!(
        a1.keys()
            .any(|k| k.starts_with("certfed_storage_commit_seconds_count")),
        "{a1:?}"
    );
    assert_eq!(rejected_sum(&b1), 0.0);

    // A peer's envelope with a broken signature: counted by reason.
    let pem = std::fs::read_to_string(fed.pki.path("node-a.sign.key")).unwrap();
    let a_key = Signer::from_pkcs8_pem("node-a", &pem).unwrap();
    let mut bad = seal(
        &a_key,
        Draft {
            message_id: uuid::Uuid::now_v7().to_string(),
            kind: MessageKind::Alert,
            tlp: Tlp::Green,
            recipients: vec![],
            created_ms: certfed::service::now_ms(),
            expires_ms: None,
            hop_limit: 8,
            exercise: false,
            encrypted: false,
            payload: green_alert("forged").encode_to_vec(),
        },
    );
    bad.signature[0] ^= 1;
    let mut fc = federation_client(&fed.pki, &fed.addr(1), "node-a", Some("node-b")).await;
    let ack = fc
        .push(tokio_stream::iter(vec![PushFrame {
            toward: Vec::new(),
            bundled: Vec::new(),
            gossip: None,
            resent: false,
            returning: false,
            hops: vec![],
            seq: 1,
            envelope: Some(bad),
        }]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .expect("an ack");
    assert_eq!(ack.outcome, PushOutcome::Rejected as i32, "{ack:?}");
    let b2 = scrape(mb).await;
    assert_eq!(
        get(
            &b2,
            r#"certfed_messages_rejected_total{reason="bad_signature"}"#
        ),
        1.0,
        "{b2:?}"
    );
    assert_eq!(rejected_sum(&b2), 1.0);
    assert_eq!(
        get(&b2, "certfed_signature_verification_failures_total"),
        1.0
    );
    assert_eq!(get(&b2, "certfed_messages_received_total"), 4.0);
    assert_eq!(get(&b2, "certfed_messages_accepted_total"), 3.0);

    // Open assistance requests by state.
    let requested = r#"certfed_assistance_requests{state="REQUESTED"}"#;
    assert_eq!(get(&scrape(ma).await, requested), 0.0);
    let mut op_a = fed.operator(0).await;
    op_a.request_assistance(RequestAssistanceRequest {
        request: Some(AssistanceRequest {
            title: "metrics".into(),
            description: "count me".into(),
            tlp: Tlp::Green as i32,
            services: vec![AssistanceService::Forensics as i32],
            ..Default::default()
        }),
        recipients: vec![],
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(get(&scrape(ma).await, requested), 1.0);

    for n in nodes {
        n.shutdown().await.unwrap();
    }
}

// ------------------------------------------------------------------- reload

#[test]
fn sighup_refuses_an_invalid_file_and_applies_a_crl() {
    let fed = Fed::new(&["node-a"], &[]);
    fed.pki.operator("operator2");
    let cfg = fed.config_path(0);
    let good = read(&cfg);
    let log = fed.pki.path("serve.log");
    let mut g = Guard(Some(serve_cmd(&cfg, &log).spawn().unwrap()));
    wait_log(&log, "certfed node ready", 1);
    assert_eq!(node_info(&fed, "operator").unwrap().node_id, "node-a");

    // (a) A certificate file that does not exist: refused, still serving.
    std::fs::write(
        &cfg,
        good.replace("cert = \"node-a.crt\"", "cert = \"nope.crt\""),
    )
    .unwrap();
    signal(g.child(), "HUP");
    let s = wait_log(&log, "reload refused", 1);
    assert!(s.contains("nope.crt"), "names the file:\n{s}");
    assert!(g.child().try_wait().unwrap().is_none(), "still running");
    assert_eq!(node_info(&fed, "operator").unwrap().node_id, "node-a");
    assert_eq!(node_info(&fed, "operator2").unwrap().node_id, "node-a");

    // And an unparsable listen address.
    std::fs::write(
        &cfg,
        good.replace("listen = \"127.0.0.1:", "listen = \"nope:"),
    )
    .unwrap();
    signal(g.child(), "HUP");
    let s = wait_log(&log, "reload refused", 2);
    assert!(s.contains("node.listen"), "names the key:\n{s}");
    assert_eq!(node_info(&fed, "operator").unwrap().node_id, "node-a");

    // (b) Revoke `operator` with a CRL, reload: new connections with it are refused,
    // operator2 still works.
    let serial = certfed::pki::cert_serial_hex(&read(&fed.pki.path("operator.crt"))).unwrap();
    let crl = fed
        .pki
        .ca
        .crl(
            &[serial],
            1,
            ::time::OffsetDateTime::now_utc() + ::time::Duration::days(7),
        )
        .unwrap();
    certfed::pki::write_public(&fed.pki.path("ca.crl"), &crl, true).unwrap();
    let cfg2 = fed.config_path(0); // now with crls = ["ca.crl"]
    assert_eq!(cfg2, cfg);
    assert!(read(&cfg).contains("ca.crl"));
    signal(g.child(), "HUP");
    wait_log(&log, "reload: TLS material", 1);
    let err = node_info(&fed, "operator").expect_err("revoked operator must be refused");
    eprintln!("revoked operator: {err:?}");
    assert_eq!(node_info(&fed, "operator2").unwrap().node_id, "node-a");
    let s = wait_log(&log, "TLS handshake refused", 1);
    assert!(
        s.to_ascii_lowercase().contains("revoked"),
        "the refusal names the revocation:\n{s}"
    );
    assert_eq!(s.matches("reload refused").count(), 2, "{s}");

    signal(g.child(), "TERM");
    let st = wait_exit(g.child(), Duration::from_secs(20));
    assert_eq!(st.code(), Some(0), "{}", read(&log));
}
