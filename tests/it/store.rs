//! A damaged store is detected at start and never served: the real `certfed`
//! binary refuses a store truncated to 0 bytes, one with scribbled pages, one
//! whose database was deleted (the folder kept), and another node's store —
//! each with an error naming the file and the way out (restore, or move the
//! folder aside). Moving the folder aside starts the node empty. Damage met
//! while running answers DATA_LOSS (never UNAVAILABLE "retry later") and stops
//! every write.

use crate::common::*;
use certfed::app::{prepare, start};
use certfed::proto::v1::*;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_certfed");

/// Runs `certfed serve` and waits for it to exit (it must refuse to start).
fn serve_refused(config: &Path) -> String {
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "certfed served a damaged store: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out: Output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "must exit non-zero: {stderr}");
    stderr
}

/// `config` with its `storage.dir` replaced by `dir`, written beside it.
fn with_storage(config: &Path, dir: &Path, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(config).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("dir = "))
        .expect("storage.dir line")
        .to_string();
    let out = config.with_file_name(format!("{name}.toml"));
    std::fs::write(
        &out,
        text.replacen(&line, &format!("dir = \"{}\"", dir.display()), 1),
    )
    .unwrap();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Starts node 0 in this process, publishes `n` alerts and stops it cleanly
/// (the WAL is checkpointed into certfed.db).
async fn node_with_alerts(fed: &Fed, n: usize) -> Vec<String> {
    let node = fed.start(0).await;
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(publish_on(fed, 0, green_alert(&format!("store test {i}")), &[]).await);
    }
    node.shutdown().await.unwrap();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_vanished_and_foreign_stores_are_refused_at_start() {
    let fed = Fed::new(&["node-a", "node-b"], &[]).sqlite();
    node_with_alerts(&fed, 300).await;
    let good = fed.data_dir(0);
    let config = fed.config_path(0);
    let db = |dir: &Path| dir.join("certfed.db");
    let case = |name: &str| {
        let dir = fed.data.path().join(name);
        copy_dir(&good, &dir);
        (dir.clone(), with_storage(&config, &dir, name))
    };
    let restore_or_move = |err: &str, dir: &Path| {
        assert!(err.contains("Restore certfed.db from a backup"), "{err}");
        assert!(
            err.contains(&format!("mv {} {}.", dir.display(), dir.display())),
            "{err}"
        );
    };

    // Truncated to 0 bytes: not a fresh node.
    let (dir, cfg) = case("truncated");
    std::fs::File::options()
        .write(true)
        .open(db(&dir))
        .unwrap()
        .set_len(0)
        .unwrap();
    let err = serve_refused(&cfg);
    assert!(
        err.contains(&format!("{} is empty (0 bytes)", db(&dir).display())),
        "{err}"
    );
    assert!(
        err.contains("certfed.marker") && err.contains("node-a"),
        "{err}"
    );
    restore_or_move(&err, &dir);
    assert_eq!(
        std::fs::metadata(db(&dir)).unwrap().len(),
        0,
        "nothing written"
    );

    // Scribbled pages in the middle of the file.
    let (dir, cfg) = case("scribbled");
    let len = std::fs::metadata(db(&dir)).unwrap().len();
    assert!(len > 128 * 1024, "a store with data: {len} bytes");
    let mut f = std::fs::File::options().write(true).open(db(&dir)).unwrap();
    f.seek(SeekFrom::Start(len / 2)).unwrap();
    f.write_all(
        &(0..16_384u32)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    drop(f);
    let err = serve_refused(&cfg);
    assert!(
        err.contains(&format!("{} is damaged", db(&dir).display())),
        "{err}"
    );
    restore_or_move(&err, &dir);

    // The database deleted, the folder kept.
    let (dir, cfg) = case("deleted");
    std::fs::remove_file(db(&dir)).unwrap();
    let err = serve_refused(&cfg);
    assert!(
        err.contains(&format!("{} is missing", db(&dir).display())),
        "{err}"
    );
    restore_or_move(&err, &dir);
    assert!(!db(&dir).exists(), "no empty database was created");

    // Another node's store: node-b pointed at node-a's folder.
    let (dir, _) = case("foreign");
    let cfg_b = with_storage(&fed.config_path(1), &dir, "foreign-b");
    let err = serve_refused(&cfg_b);
    assert!(
        err.contains("holds the store of node node-a") && err.contains("node.id is node-b"),
        "{err}"
    );

    // The way out the error names: move the folder aside, start empty.
    let (dir, cfg) = case("moved");
    std::fs::remove_file(db(&dir)).unwrap();
    serve_refused(&cfg);
    std::fs::rename(&dir, dir.with_extension("damaged")).unwrap();
    let node = start(prepare(certfed::config::Config::load(&cfg).unwrap()).unwrap())
        .await
        .expect("an empty folder starts a new store");
    assert_eq!(node.node.store.message_count().await.unwrap(), 0);
    node.shutdown().await.unwrap();

    // The untouched store still starts, with everything in it.
    let node = fed.start(0).await;
    assert_eq!(node.node.store.message_count().await.unwrap(), 300);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_found_while_serving_is_data_loss_and_stops_writes() {
    let fed = Fed::new(&["node-a"], &[]).sqlite();
    node_with_alerts(&fed, 300).await;
    // Scribble the second half (the newest messages' pages) and start with
    // the check off, as an operator of a huge store might: the damage is met
    // by the first read instead.
    let db = fed.data_dir(0).join("certfed.db");
    let len = std::fs::metadata(&db).unwrap().len();
    let mut f = std::fs::File::options().write(true).open(&db).unwrap();
    f.seek(SeekFrom::Start(len / 2)).unwrap();
    f.write_all(&vec![0x5a; (len - len / 2) as usize]).unwrap();
    drop(f);
    let text = std::fs::read_to_string(fed.config_path(0)).unwrap();
    let cfg = fed.config_path(0).with_file_name("unchecked.toml");
    std::fs::write(
        &cfg,
        text.replacen("[storage]\n", "[storage]\nintegrity_check = \"off\"\n", 1),
    )
    .unwrap();
    let node = start(prepare(certfed::config::Config::load(&cfg).unwrap()).unwrap())
        .await
        .unwrap();
    let mut op = fed.operator(0).await;
    let err = op
        .list_alerts(ListAlertsRequest::default())
        .await
        .expect_err("damaged pages cannot be listed");
    assert_eq!(err.code(), tonic::Code::DataLoss, "{err:?}");
    assert!(!err.message().contains("retry later"), "{}", err.message());
    assert!(err.message().contains("restore"), "{}", err.message());
    let err = op
        .publish_alert(PublishAlertRequest {
            alert: Some(green_alert("into a broken file")),
            ..Default::default()
        })
        .await
        .expect_err("no write into a damaged store");
    assert_eq!(err.code(), tonic::Code::DataLoss, "{err:?}");
    assert!(
        err.message().contains("writes stopped"),
        "{}",
        err.message()
    );
    node.shutdown().await.unwrap();
}
