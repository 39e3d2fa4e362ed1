//! An active/standby pair on a REAL PostgreSQL, with real `certfed serve`
//! processes: node-b runs twice (same identity, same database, two ports),
//! its peers list both addresses. Faults: `kill -9` of the active member in
//! the middle of a 5,000-alert stream, SIGSTOP of the active past its lease
//! and SIGCONT, a PostgreSQL crash (`pg_ctl -m immediate`) and restart
//! mid-stream, an unreachable database.
//! Every test asserts on the final state (each alert stored exactly once on
//! every node and relayed on), never on timing; every wait is bounded.
//!
//! Needs `CERTFED_TEST_PG_URL` (`.ci/postgres` starts a server): without it
//! the tests are skipped with a loud message, except in CI, where they fail.

use crate::common::*;
use certfed::proto::v1::operator_client::OperatorClient;
use certfed::proto::v1::*;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_certfed");
/// Generous bound for every wait.
const WAIT: Duration = Duration::from_secs(90);
const PUBLISHERS: usize = 16;

/// The PostgreSQL server to use, or `None` (skip) outside CI.
fn server() -> Option<String> {
    pg_server()
}

/// A `certfed serve` process, killed and reaped when dropped.
struct Proc {
    child: Option<Child>,
    log: PathBuf,
    addr: String,
}

impl Proc {
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let ok = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status()
                .unwrap()
                .success();
            assert!(ok, "kill {sig}");
        }
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = s.len().saturating_sub(4000);
        s.get(start..).unwrap_or(&s).to_string()
    }

    /// The exit status, once the process has ended.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A stopped process must be continued to die cleanly.
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .stderr(Stdio::null())
                .status();
        }
        self.kill9();
    }
}

fn start_proc(fed: &Fed, cfg: &Path, name: &str, addr: String) -> Proc {
    let log = fed.pki.path(&format!("{name}.log"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(cfg)
        .env("RUST_LOG", "warn,certfed::app=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(file))
        .spawn()
        .unwrap();
    Proc {
        child: Some(child),
        log,
        addr,
    }
}

async fn op_at(fed: &Fed, addr: &str) -> OperatorClient<Channel> {
    operator_client(&fed.pki, addr, "operator").await
}

async fn info(fed: &Fed, addr: &str) -> Option<NodeInfo> {
    let mut op = op_at(fed, addr).await;
    op.get_node_info(GetNodeInfoRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// Waits until the process at `p.addr` reports `role` (a standby: once it
/// has read the lease and names the active member).
async fn await_role(fed: &Fed, p: &mut Proc, role: PairRole) -> NodeInfo {
    let addr = p.addr.clone();
    let seen: Arc<std::sync::Mutex<Option<NodeInfo>>> = Arc::default();
    let ok = eventually(WAIT, || {
        let addr = addr.clone();
        let seen = seen.clone();
        async move {
            let i = info(fed, &addr).await;
            let hit = i.as_ref().is_some_and(|i| {
                i.role == role as i32 && (role != PairRole::Standby || !i.active_member.is_empty())
            });
            *seen.lock().unwrap() = i;
            hit
        }
    })
    .await;
    let last = seen.lock().unwrap().clone();
    if !ok {
        panic!(
            "{addr} never became {role:?} (last: {last:?}, exit: {:?}); log:\n{}",
            p.exited(),
            p.log_tail()
        );
    }
    last.unwrap()
}

/// Starts node `i` (not a pair member) as a process and waits for it.
async fn spawn_node(fed: &Fed, i: usize) -> Proc {
    let mut p = start_proc(fed, &fed.config_path(i), &fed.specs[i].id, fed.addr(i));
    let addr = p.addr.clone();
    let up = eventually(WAIT, || {
        let addr = addr.clone();
        async move { info(fed, &addr).await.is_some() }
    })
    .await;
    assert!(
        up,
        "{} did not come up ({:?}):\n{}",
        fed.specs[i].id,
        p.exited(),
        p.log_tail()
    );
    p
}

/// Starts both members of node `i`: the first becomes active, the second
/// standby.
async fn spawn_pair(fed: &Fed, i: usize) -> (Proc, Proc) {
    let id = fed.specs[i].id.clone();
    let mut active = start_proc(fed, &fed.config_path(i), &format!("{id}-1"), fed.addr(i));
    let first = await_role(fed, &mut active, PairRole::Active).await;
    let standby_addr = format!("127.0.0.1:{}", fed.specs[i].standby_port.unwrap());
    let mut standby = start_proc(
        fed,
        &fed.standby_config_path(i),
        &format!("{id}-2"),
        standby_addr,
    );
    let second = await_role(fed, &mut standby, PairRole::Standby).await;
    assert_eq!(first.storage_backend, "postgres");
    assert_eq!(second.active_member, first.member, "{second:?}");
    (active, standby)
}

async fn stored_at(fed: &Fed, addr: &str) -> Option<u64> {
    info(fed, addr).await.map(|i| i.stored_messages)
}

async fn outbox_depth(fed: &Fed, addr: &str, peer: &str) -> Option<u64> {
    let mut op = op_at(fed, addr).await;
    let r = op
        .list_peers(ListPeersRequest {
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .ok()?
        .into_inner();
    r.peers
        .into_iter()
        .find(|p| p.peer_id == peer)
        .map(|p| p.outbox_depth)
}

async fn all_alert_ids(fed: &Fed, addr: &str) -> Vec<String> {
    let mut op = op_at(fed, addr).await;
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let r = op
            .list_alerts(ListAlertsRequest {
                filter: None,
                page_size: 1000,
                page_token: token,
            })
            .await
            .expect("ListAlerts")
            .into_inner();
        ids.extend(r.alerts.into_iter().map(|a| a.message_id));
        if r.next_page_token.is_empty() {
            return ids;
        }
        token = r.next_page_token;
    }
}

/// Publishes `n` GREEN alerts at `addr` with concurrent callers, each with
/// its own idempotency key. A temporary refusal (UNAVAILABLE: the node's
/// database is away) is retried with the same key, as `certfed alert publish`
/// would be, so an alert committed before its answer was lost is not
/// published twice; any other failure fails the test. `done` counts
/// successes.
fn publish(
    op: OperatorClient<Channel>,
    n: usize,
    tag: &'static str,
    done: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..PUBLISHERS {
            let mut op = op.clone();
            let next = next.clone();
            let done = done.clone();
            workers.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                loop {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    if k >= n {
                        return ids;
                    }
                    let key = uuid::Uuid::now_v7().to_string();
                    let deadline = tokio::time::Instant::now() + WAIT;
                    let r = loop {
                        let r = op
                            .publish_alert(PublishAlertRequest {
                                alert: Some(green_alert(&format!("{tag} {k}"))),
                                recipients: vec![],
                                request_id: key.clone(),
                                ..Default::default()
                            })
                            .await;
                        match r {
                            Err(e)
                                if e.code() == tonic::Code::Unavailable
                                    && tokio::time::Instant::now() < deadline =>
                            {
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                            r => break r,
                        }
                    };
                    let r = r.unwrap_or_else(|e| panic!("PublishAlert {k} failed: {e}"));
                    ids.push(r.into_inner().message_id);
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        let mut ids = Vec::new();
        for w in workers {
            ids.extend(w.await.expect("publisher task"));
        }
        ids
    })
}

/// Waits until `to` holds `want` messages and `from`'s outbox for `peer` is
/// empty; panics with the logs otherwise.
async fn await_settled(fed: &Fed, from: &str, peer: &str, to: &str, want: u64, logs: &[&Proc]) {
    let ok = eventually(WAIT * 2, || async move {
        stored_at(fed, to).await == Some(want) && outbox_depth(fed, from, peer).await == Some(0)
    })
    .await;
    if !ok {
        let mut text = String::new();
        for p in logs {
            text.push_str(&format!("\n--- {} log:\n{}", p.addr, p.log_tail()));
        }
        panic!(
            "not settled: {to} holds {:?} (want {want}); {from}'s outbox for {peer}: {:?}{text}",
            stored_at(fed, to).await,
            outbox_depth(fed, from, peer).await,
        );
    }
}

fn assert_exactly(ids: &[String], expected: &HashSet<String>, what: &str) {
    let set: HashSet<&String> = ids.iter().collect();
    assert_eq!(set.len(), ids.len(), "{what}: a message id appears twice");
    assert_eq!(ids.len(), expected.len(), "{what}: wrong number of alerts");
    for id in expected {
        assert!(set.contains(id), "{what}: {id} is missing");
    }
}

/// The line a - b - c on PostgreSQL, node-b as a pair.
fn line_with_pair(server: &str) -> Fed {
    let mut fed = Fed::line().postgres(server);
    fed.add_standby(1);
    fed
}

async fn health(fed: &Fed, addr: &str, service: &str) -> i32 {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let ch = certfed::transport::client::channel(
        addr,
        fed.pki.client_tls("operator"),
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    HealthClient::new(ch)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.into_inner().status)
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_killed_mid_stream_the_standby_takes_over_and_nothing_is_lost_or_doubled() {
    const N: usize = 5000;
    let Some(server) = server() else { return };
    let fed = line_with_pair(&server);
    let a = spawn_node(&fed, 0).await;
    let c = spawn_node(&fed, 2).await;
    let (mut b1, mut b2) = spawn_pair(&fed, 1).await;

    // The standby refuses work, names the active, and says NOT_SERVING.
    assert_eq!(health(&fed, &b2.addr, "certfed.v1.Operator").await, 2);
    assert_eq!(health(&fed, &b2.addr, "certfed.v1.Federation").await, 2);
    assert_eq!(health(&fed, &b1.addr, "certfed.v1.Operator").await, 1);
    let refused = op_at(&fed, &b2.addr)
        .await
        .publish_alert(PublishAlertRequest {
            alert: Some(green_alert("to the standby")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert!(
        refused.message().contains("standby of node node-b")
            && refused.message().contains("active is"),
        "{}",
        refused.message()
    );

    let done = Arc::new(AtomicUsize::new(0));
    let publisher = publish(fed.operator(0).await, N, "pair-kill", done.clone());
    // Kill the active once it is ingesting.
    let ingesting = eventually(WAIT, || async {
        stored_at(&fed, &b1.addr).await.unwrap_or(0) >= 300
    })
    .await;
    assert!(ingesting, "b never ingested; log:\n{}", b1.log_tail());
    b1.kill9();
    eprintln!(
        "node-b's active member killed at {} published",
        done.load(Ordering::SeqCst)
    );
    let took_over = await_role(&fed, &mut b2, PairRole::Active).await;
    assert!(took_over.lease_epoch >= 2, "{took_over:?}");

    let published = tokio::time::timeout(WAIT * 3, publisher)
        .await
        .expect("publishing finishes")
        .expect("publisher");
    assert_eq!(
        published.len(),
        N,
        "node-a stays up and accepts every alert"
    );
    let b = b2.addr.clone();
    await_settled(&fed, &fed.addr(0), "node-b", &b, N as u64, &[&a, &b2]).await;
    await_settled(&fed, &b, "node-c", &fed.addr(2), N as u64, &[&b2, &c]).await;
    let expected: HashSet<String> = published.into_iter().collect();
    assert_exactly(&all_alert_ids(&fed, &b).await, &expected, "node-b");
    assert_exactly(
        &all_alert_ids(&fed, &fed.addr(2)).await,
        &expected,
        "node-c",
    );

    // The CLI finds the active member among both addresses.
    let out = Command::new(BIN)
        .args(["info", "--json", "--node"])
        .arg(format!("{},{}", fed.addr(1), b))
        .arg("--ca")
        .arg(fed.pki.ca_path())
        .arg("--cert")
        .arg(fed.pki.path("operator.crt"))
        .arg("--key")
        .arg(fed.pki.path("operator.key"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("PAIR_ROLE_ACTIVE"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_active_is_fenced_when_it_resumes_and_steps_down() {
    const N: usize = 1500;
    let Some(server) = server() else { return };
    let fed = line_with_pair(&server);
    let a = spawn_node(&fed, 0).await;
    let c = spawn_node(&fed, 2).await;
    let (mut b1, mut b2) = spawn_pair(&fed, 1).await;

    let done = Arc::new(AtomicUsize::new(0));
    let publisher = publish(fed.operator(0).await, N, "pair-stop", done.clone());
    let ingesting = eventually(WAIT, || async {
        stored_at(&fed, &b1.addr).await.unwrap_or(0) >= 100
    })
    .await;
    assert!(ingesting, "b never ingested; log:\n{}", b1.log_tail());
    b1.signal("-STOP");
    // Past its lease, the standby takes over.
    let took_over = await_role(&fed, &mut b2, PairRole::Active).await;
    assert!(took_over.lease_epoch >= 2, "{took_over:?}");
    b1.signal("-CONT");
    // The old active finds the lease moved, writes nothing more, and exits
    // non-zero so that its service manager restarts it as the standby.
    let stepped_down = eventually(WAIT, || {
        let st = b1.exited();
        async move { st.is_some() }
    })
    .await;
    assert!(
        stepped_down,
        "the old active kept running:\n{}",
        b1.log_tail()
    );
    let st = b1.exited().unwrap();
    assert!(!st.success(), "{st:?}");
    let log = b1.log_tail();
    assert!(log.contains("lease"), "{log}");

    let published = tokio::time::timeout(WAIT * 3, publisher)
        .await
        .expect("publishing finishes")
        .expect("publisher");
    assert_eq!(published.len(), N);
    let b = b2.addr.clone();
    await_settled(&fed, &fed.addr(0), "node-b", &b, N as u64, &[&a, &b2]).await;
    await_settled(&fed, &b, "node-c", &fed.addr(2), N as u64, &[&b2, &c]).await;
    let expected: HashSet<String> = published.into_iter().collect();
    assert_exactly(&all_alert_ids(&fed, &b).await, &expected, "node-b");
    assert_exactly(
        &all_alert_ids(&fed, &fed.addr(2)).await,
        &expected,
        "node-c",
    );

    // Restarted (as systemd would), the old member comes back as standby.
    let standby_cfg = fed.config_path(1);
    let mut again = start_proc(&fed, &standby_cfg, "node-b-1-again", fed.addr(1));
    let i = await_role(&fed, &mut again, PairRole::Standby).await;
    assert_eq!(i.active_member, took_over.member);
}

/// A private PostgreSQL cluster (the test restarts or reconfigures it),
/// started with `.ci/postgres` in a temporary folder.
pub(crate) struct Cluster {
    dir: tempfile::TempDir,
    /// A role that may create databases, over TCP on 127.0.0.1.
    pub(crate) url: String,
    ctl: String,
}

impl Cluster {
    /// The cluster's data folder (owned by the postgres user).
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("pg").join("data")
    }

    /// Runs `pg_ctl ARGS` on the cluster as the postgres user.
    pub(crate) fn pg_ctl(&self, args: &str) {
        let ok = Command::new("su")
            .args(["postgres", "-c", &format!("{} {args}", self.ctl)])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "pg_ctl {args}");
    }

    pub(crate) fn start() -> Cluster {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // The cluster runs as the postgres user: it must reach its folder.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/postgres");
        let port = free_port().to_string();
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(dir.path().join("pg"))
            .arg(&port)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let var = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}='")))
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or_else(|| panic!("{name} in {text}"))
                .to_string()
        };
        Cluster {
            url: var("CERTFED_TEST_PG_URL"),
            ctl: var("CERTFED_TEST_PG_CTL"),
            dir,
        }
    }

    /// Restarts the server the way a crash does: `-m immediate` ends every
    /// process without a checkpoint, and the server recovers from its WAL.
    pub(crate) fn restart(&self) {
        self.pg_ctl("-m immediate -w restart");
    }

    /// Crashes the server (`-m immediate`), keeps it down for `down`, and
    /// starts it again on the same port (recovering from its WAL).
    pub(crate) fn down_for(&self, down: Duration) {
        // `pg_ctl start` reads postgresql.conf, not the options of the first
        // start: the same port, address and socket folder go there first.
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.opts")).unwrap();
        let opt = |flag: &str| {
            let pat = format!("\"{flag}\" \"");
            let at = text
                .find(&pat)
                .unwrap_or_else(|| panic!("{flag} in {text}"))
                + pat.len();
            text[at..].split('"').next().unwrap().to_string()
        };
        let conf = self.data_dir().join("postgresql.conf");
        let mut c = std::fs::read_to_string(&conf).unwrap();
        c.push_str(&format!(
            "\nport = {}\nunix_socket_directories = '{}'\nlisten_addresses = '127.0.0.1'\nmax_connections = 400\n",
            opt("-p"),
            opt("-k")
        ));
        std::fs::write(&conf, c).unwrap();
        self.pg_ctl("-m immediate -w stop");
        std::thread::sleep(down);
        let log = self.dir.path().join("pg").join("log-after");
        self.pg_ctl(&format!("-w -l {} start", log.display()));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/postgres");
        let _ = Command::new("bash")
            .arg(script)
            .arg("stop")
            .arg(self.dir.path().join("pg"))
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_crashed_and_restarted_mid_stream_loses_nothing() {
    const N: usize = 2000;
    if server().is_none() {
        return;
    }
    let cluster = Cluster::start();
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]).postgres(&cluster.url);
    let a = spawn_node(&fed, 0).await;
    let b = spawn_node(&fed, 1).await;
    let done = Arc::new(AtomicUsize::new(0));
    let publisher = publish(fed.operator(0).await, N, "pg-restart", done.clone());
    let ingesting = eventually(WAIT, || async {
        stored_at(&fed, &fed.addr(1)).await.unwrap_or(0) >= 200
    })
    .await;
    assert!(ingesting, "b never ingested; log:\n{}", b.log_tail());
    cluster.restart();
    eprintln!(
        "PostgreSQL restarted at {} published",
        done.load(Ordering::SeqCst)
    );
    // Publishing on a is refused (UNAVAILABLE) while its database is down:
    // the publisher retries those calls with the same idempotency key.
    let published = tokio::time::timeout(WAIT * 3, publisher).await;
    let published = match published {
        Ok(Ok(ids)) => ids,
        other => panic!("publisher: {other:?}; log of a:\n{}", a.log_tail()),
    };
    assert_eq!(published.len(), N, "every alert is accepted in the end");
    let want = N as u64;
    await_settled(&fed, &fed.addr(0), "node-b", &fed.addr(1), want, &[&a, &b]).await;
    let expected: HashSet<String> = published.into_iter().collect();
    assert_exactly(
        &all_alert_ids(&fed, &fed.addr(1)).await,
        &expected,
        "node-b",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_refused_at_start_without_the_password() {
    let pki = Pki::new();
    pki.node("node-a");
    let spec = NodeSpec {
        id: "node-a".into(),
        port: free_port(),
        peers: vec![],
        extra: String::new(),
        handshake_timeout_secs: 2,
        peer_alternates: vec![],
        standby_port: None,
    };
    let port = free_port();
    let cfg = write_config_with(
        &pki,
        &spec,
        &["node-a"],
        &format!(
            "backend = \"postgres\"\nurl = \"postgresql://certfed:very-secret-pw@127.0.0.1:{port}/certfed\""
        ),
        "node-a.toml",
    );
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "database certfed on 127.0.0.1:{port} as user certfed"
        )) && err.contains("check that PostgreSQL runs"),
        "{err}"
    );
    assert!(!err.contains("very-secret-pw"), "{err}");
    // The benchmark on an unreachable server: an error before any node
    // starts, naming the server, not the password (no panic).
    let out = Command::new(BIN)
        .args([
            "bench",
            "--json",
            "--messages",
            "10",
            "--storage",
            "postgres",
        ])
        .arg("--pg-url")
        .arg(format!(
            "postgresql://certfed:very-secret-pw@127.0.0.1:{port}/postgres"
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("bench --storage postgres: storage: cannot connect to database postgres on 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(
        !err.contains("very-secret-pw") && !err.contains("panicked"),
        "{err}"
    );
    // A password file readable by others is refused before anything starts.
    let pw = pki.path("db.password");
    std::fs::write(&pw, "s3cret\n").unwrap();
    let cfg = write_config_with(
        &pki,
        &spec,
        &["node-a"],
        &format!(
            "backend = \"postgres\"\nurl = \"postgresql://certfed@127.0.0.1:{port}/certfed\"\npassword_file = \"{}\"",
            pw.display()
        ),
        "node-a.toml",
    );
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("storage.password_file") && err.contains("chmod 600"),
        "{err}"
    );
}

/// Runs `certfed` in `dir` (the roster tools), which must succeed.
fn roster_tool(dir: &Path, args: &[&str]) {
    let out = Command::new(BIN)
        .current_dir(dir)
        .env("RUST_LOG", "error")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "certfed {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_that_takes_over_holds_the_roster_the_active_applied() {
    let Some(server) = server() else { return };
    let mut fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]).postgres(&server);
    fed.add_standby(1);
    let dir = fed.pki.dir.path();
    // Roster v1 (node-a, node-b; stewards 2-of-2), then v2 without node-a.
    for s in ["s1", "s2"] {
        roster_tool(dir, &["pki", "signing-key", "--id", s]);
    }
    roster_tool(
        dir,
        &[
            "roster",
            "init",
            "--out",
            "roster-v1.roster",
            "--federation",
            "pair-fed",
            "--steward",
            "s1=s1.sign.pub",
            "--steward",
            "s2=s2.sign.pub",
            "--threshold",
            "2",
        ],
    );
    for id in ["node-a", "node-b"] {
        roster_tool(
            dir,
            &[
                "roster",
                "add-member",
                "roster-v1.roster",
                "--id",
                id,
                "--signing-key",
                &format!("{id}.sign.pub"),
                "--tls-ca",
                "ca.crt",
            ],
        );
    }
    roster_tool(
        dir,
        &[
            "roster",
            "init",
            "--from",
            "roster-v1.roster",
            "--out",
            "roster-v2.roster",
        ],
    );
    roster_tool(
        dir,
        &[
            "roster",
            "remove-member",
            "roster-v2.roster",
            "--id",
            "node-a",
        ],
    );
    for f in ["roster-v1.roster", "roster-v2.roster"] {
        for k in ["s1.sign.key", "s2.sign.key"] {
            roster_tool(dir, &["roster", "sign", f, "--key", k]);
        }
    }
    // Both members of node-b start from roster.file v1 (no [[members]]).
    let storage = fed.storage_toml(1);
    let mut standby_spec = fed.specs[1].clone();
    standby_spec.port = standby_spec.standby_port.unwrap();
    let with_roster = |path: PathBuf| {
        let mut s = std::fs::read_to_string(&path).unwrap();
        s.push_str("\n[roster]\nfile = \"roster-v1.roster\"\n");
        std::fs::write(&path, s).unwrap();
        path
    };
    let cfg1 = with_roster(write_config_with(
        &fed.pki,
        &fed.specs[1],
        &[],
        &storage,
        "b1.toml",
    ));
    let b2_metrics: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg2 = crate::ops::with_metrics(
        &with_roster(write_config_with(
            &fed.pki,
            &standby_spec,
            &[],
            &storage,
            "b2.toml",
        )),
        b2_metrics.port(),
    );
    let mut b1 = start_proc(&fed, &cfg1, "node-b-1", fed.addr(1));
    await_role(&fed, &mut b1, PairRole::Active).await;
    let mut b2 = start_proc(
        &fed,
        &cfg2,
        "node-b-2",
        format!("127.0.0.1:{}", standby_spec.port),
    );
    await_role(&fed, &mut b2, PairRole::Standby).await;
    assert_eq!(info(&fed, &b2.addr).await.unwrap().roster_version, 1);
    let node_a_up = r#"certfed_peer_up{peer="node-a"}"#;
    let m = crate::ops::scrape(b2_metrics).await;
    assert!(m.contains_key(node_a_up), "v1 lists node-a: {m:?}");

    // The active member applies v2 (kept in the shared store) and dies.
    let text = std::fs::read_to_string(dir.join("roster-v2.roster")).unwrap();
    let applied = op_at(&fed, &b1.addr)
        .await
        .publish_roster(PublishRosterRequest {
            signed_roster: certfed::domain::roster::dearmor(&text).unwrap(),
        })
        .await
        .expect("v2 applies on the active member")
        .into_inner();
    assert_eq!(applied.version, 2, "{applied:?}");
    // The standby follows while it waits: GetNodeInfo shows v2, and it is
    // still the standby (it wrote nothing: every write of a standby is fenced).
    let followed = eventually(WAIT, || async {
        info(&fed, &b2.addr)
            .await
            .is_some_and(|i| i.roster_version == 2)
    })
    .await;
    let now = info(&fed, &b2.addr).await.unwrap();
    assert!(
        followed,
        "the standby shows roster v{} while the active applied v2; log:\n{}",
        now.roster_version,
        b2.log_tail()
    );
    assert_eq!(now.role, PairRole::Standby as i32, "{now:?}");
    // Its peer set follows too, before any link starts: node-a is gone.
    let m = crate::ops::scrape(b2_metrics).await;
    assert!(
        !m.contains_key(node_a_up),
        "the standby holding v2 still lists node-a: {m:?}"
    );
    b1.kill9();

    // The standby takes over holding v2, not the v1 it started from, and
    // no longer links to the member v2 removed.
    let took_over = await_role(&fed, &mut b2, PairRole::Active).await;
    let held = eventually(WAIT, || async {
        info(&fed, &b2.addr)
            .await
            .is_some_and(|i| i.roster_version == 2)
    })
    .await;
    assert!(
        held,
        "the new active member holds roster v{} after taking over ({took_over:?}); log:\n{}",
        info(&fed, &b2.addr).await.map_or(0, |i| i.roster_version),
        b2.log_tail()
    );
    let peers = op_at(&fed, &b2.addr)
        .await
        .list_peers(ListPeersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .peers;
    assert!(
        peers.iter().all(|p| p.peer_id != "node-a"),
        "node-a left in v2: {peers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_whose_database_is_lost_mid_stream_loses_nothing_and_ends_with_one_active() {
    const N: usize = 2000;
    if server().is_none() {
        return;
    }
    let cluster = Cluster::start();
    let mut fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]).postgres(&cluster.url);
    fed.add_standby(1);
    let a = spawn_node(&fed, 0).await;
    let (b1, b2) = spawn_pair(&fed, 1).await;
    let mut members = [Some(b1), Some(b2)];
    let addrs: Vec<String> = members
        .iter()
        .map(|m| m.as_ref().unwrap().addr.clone())
        .collect();

    let done = Arc::new(AtomicUsize::new(0));
    let publisher = publish(fed.operator(0).await, N, "pair-db-lost", done.clone());
    let ingesting = eventually(WAIT, || async {
        stored_at(&fed, &addrs[0]).await.unwrap_or(0) >= 200
    })
    .await;
    assert!(ingesting, "b never ingested");
    // PostgreSQL crashes and stays away past the lease (3 s), then returns.
    cluster.down_for(Duration::from_secs(6));
    eprintln!(
        "PostgreSQL back after 6 s down, at {} published",
        done.load(Ordering::SeqCst)
    );
    let published = match tokio::time::timeout(WAIT * 3, publisher).await {
        Ok(Ok(ids)) => ids,
        other => panic!("publisher: {other:?}; log of a:\n{}", a.log_tail()),
    };
    assert_eq!(published.len(), N, "every alert is accepted in the end");

    // One active member afterwards. A member that found its lease gone
    // exited (non-zero); restarted, as its service manager would, it is the
    // standby.
    let one_active = eventually(WAIT, || async {
        let mut active = 0;
        for addr in &addrs {
            if info(&fed, addr)
                .await
                .is_some_and(|i| i.role == PairRole::Active as i32)
            {
                active += 1;
            }
        }
        active == 1
    })
    .await;
    assert!(one_active, "not exactly one active member after the outage");
    let active = {
        let mut found = None;
        for (k, addr) in addrs.iter().enumerate() {
            if info(&fed, addr)
                .await
                .is_some_and(|i| i.role == PairRole::Active as i32)
            {
                found = Some(k);
            }
        }
        found.expect("an active member")
    };
    let other = 1 - active;
    if let Some(st) = members[other].as_mut().unwrap().exited() {
        assert!(
            !st.success(),
            "a member that lost its lease exits non-zero: {st:?}"
        );
        let cfg = if other == 0 {
            fed.config_path(1)
        } else {
            fed.standby_config_path(1)
        };
        members[other] = Some(start_proc(
            &fed,
            &cfg,
            &format!("node-b-again-{other}"),
            addrs[other].clone(),
        ));
    }
    let standby = await_role(&fed, members[other].as_mut().unwrap(), PairRole::Standby).await;
    let active_info = info(&fed, &addrs[active]).await.unwrap();
    assert_eq!(standby.active_member, active_info.member, "{standby:?}");

    // Every alert stored exactly once on node-b, a's outbox for it empty.
    let logs: Vec<&Proc> = std::iter::once(&a)
        .chain(members.iter().flatten())
        .collect();
    await_settled(
        &fed,
        &fed.addr(0),
        "node-b",
        &addrs[active],
        N as u64,
        &logs,
    )
    .await;
    let expected: HashSet<String> = published.into_iter().collect();
    assert_exactly(
        &all_alert_ids(&fed, &addrs[active]).await,
        &expected,
        "node-b",
    );
    assert_exactly(
        &all_alert_ids(&fed, &fed.addr(0)).await,
        &expected,
        "node-a",
    );
}
