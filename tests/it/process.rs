//! The real `certfed` binary: bad configuration exits non-zero naming the key or
//! file; a second process on the same storage is refused; SIGTERM exits 0.

use crate::common::*;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_certfed");

fn serve(config: &Path) -> Output {
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("certfed serve with a bad configuration did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_refused(config: &Path, needles: &[&str]) {
    let out = serve(config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "must exit non-zero; stderr: {stderr}"
    );
    for n in needles {
        assert!(stderr.contains(n), "stderr should name {n:?}: {stderr}");
    }
}

fn edit(path: &Path, from: &str, to: &str) -> std::path::PathBuf {
    let s = std::fs::read_to_string(path).unwrap();
    assert!(s.contains(from), "config has no {from:?}");
    let out = path.with_file_name(format!(
        "edited-{}",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&out, s.replacen(from, to, 1)).unwrap();
    out
}

#[test]
fn bad_configuration_is_refused_naming_the_problem() {
    let fed = Fed::new(&["node-a"], &[]);
    let good = fed.config_path(0);

    assert_refused(
        &fed.pki.path("missing.toml"),
        &["missing.toml", "not found"],
    );

    let unknown = edit(&good, "[storage]", "[storage]\ncolour = \"blue\"");
    assert_refused(&unknown, &["colour"]);

    let port = fed.specs[0].port;
    let bad_addr = edit(&good, &format!("127.0.0.1:{port}"), "127.0.0.1:notaport");
    assert_refused(&bad_addr, &["node.listen", "127.0.0.1:notaport"]);

    let missing_cert = edit(&good, "cert = \"node-a.crt\"", "cert = \"nope.crt\"");
    assert_refused(&missing_cert, &["tls.cert", "nope.crt"]);

    let bad_tlp = edit(
        &good,
        "[log]",
        "[[peers]]\nid = \"node-b\"\nendpoint = \"127.0.0.1:1\"\nmax_tlp = \"purple\"\n\n[log]",
    );
    assert_refused(&bad_tlp, &["peers[0].max_tlp"]);

    // A private key readable by others.
    use std::os::unix::fs::PermissionsExt;
    let key = fed.pki.path("node-a.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_refused(&good, &["node-a.key", "chmod 600"]);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Certificate of another node than node.id.
    fed.pki.node("node-z");
    let wrong_id = edit(
        &good,
        "cert = \"node-a.crt\"\nkey = \"node-a.key\"",
        "cert = \"node-z.crt\"\nkey = \"node-z.key\"",
    );
    assert_refused(&wrong_id, &["tls.cert", "node-z"]);

    // Environment override of a key, also validated.
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&good)
        .env("CERTFED__NODE__LISTEN", "nowhere")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("node.listen"));

    // Port in use.
    let blocker = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    assert_refused(&good, &["node.listen", "in use"]);
    drop(blocker);
}

fn start_process(config: &Path) -> Child {
    Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "node did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_exits_zero_and_second_process_on_same_storage_is_refused() {
    // SQLite: one process per folder (on PostgreSQL a second process of the
    // node is the standby of a pair: tests/it/pair.rs).
    let fed = Fed::new(&["node-a"], &[]).sqlite();
    let cfg = fed.config_path(0);
    let mut child = start_process(&cfg);
    wait_listening(fed.specs[0].port);

    // Same storage dir, other port: refused with a clear message.
    let other = edit(
        &cfg,
        &format!("127.0.0.1:{}", fed.specs[0].port),
        &format!("127.0.0.1:{}", free_port()),
    );
    assert_refused(&other, &["in use by another certfed process"]);

    // A real call works, then SIGTERM.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut op = fed.operator(0).await;
        let info = op
            .get_node_info(certfed::proto::v1::GetNodeInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.node_id, "node-a");
    });
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "node did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(0), "clean shutdown exits 0; log: {err}");
    assert!(err.contains("SIGTERM"), "{err}");
}
