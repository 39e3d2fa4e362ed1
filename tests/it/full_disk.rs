//! A full disk on the receiver: the receiver logs it at ERROR and counts it
//! (`certfed_storage_errors_total{kind="full"}`), its peer sees a temporary
//! refusal (DEFERRED, the messages stay queued, the link stays up instead of
//! reconnecting in a loop), and everything is delivered by itself once space
//! returns. The receiver's storage is a size-limited tmpfs (the tests run as
//! root); it is unmounted at the end, also when the test fails.

use crate::common::*;
use crate::fedtools::*;
use certfed::proto::v1::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A tmpfs mounted for the test; the node using it is killed and the mount
/// removed on drop.
struct Tmpfs {
    dir: PathBuf,
    node: Option<Proc>,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount tmpfs on {} (the tests need root): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            dir: dir.to_path_buf(),
            node: None,
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Some(mut p) = self.node.take() {
            p.kill();
        }
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Writes `dir/filler` until the file system is full.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    while f.write_all(&chunk).is_ok() {}
    while f.write_all(&[0u8; 512]).is_ok() {}
    let _ = f.sync_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_on_the_receiver_defers_and_recovers_by_itself() {
    let mut fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]).sqlite();
    let metrics = format!("127.0.0.1:{}", free_port());
    fed.specs[1].extra = format!("\n[metrics]\nlisten = \"{metrics}\"\n");
    let mut disk = Tmpfs::mount(&fed.data_dir(1), "16m");
    disk.node = Some(spawn_node(&fed, 1, "info").await);
    let a = fed.start(0).await;
    let first = publish_on(&fed, 0, green_alert("before the disk fills"), &[]).await;
    assert!(arrives(&fed, 1, &first, WAIT).await);

    fill(&fed.data_dir(1));
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(publish_on(&fed, 0, green_alert(&format!("while full {i}")), &[]).await);
    }
    let deferred = eventually(WAIT, || async {
        delivery_to(&fed, 0, &ids[0], "node-b")
            .await
            .is_some_and(|d| {
                d.state == DeliveryState::Deferred as i32 && d.reason.contains("disk full")
            })
    })
    .await;
    let d = delivery_to(&fed, 0, &ids[0], "node-b").await;
    assert!(deferred, "a sees a temporary refusal: {d:?}");
    let p = peer_view(&fed, 0, "node-b").await.unwrap();
    assert_eq!(p.state, LinkState::Up as i32, "no reconnect loop: {p:?}");
    assert_eq!(p.outbox_depth, 20, "everything stays queued");

    let log = disk.node.as_ref().unwrap().log();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("disk full")),
        "the receiver logs the full disk at ERROR:\n{log}"
    );
    assert!(!log.contains("no such savepoint"), "{log}");
    if std::env::var_os("SHOW_LOG").is_some() {
        eprintln!("{log}");
    }
    let m = scrape(&metrics).await;
    assert!(
        sample(&m, "certfed_storage_errors_total{kind=\"full\"}") >= 1.0,
        "the receiver counts it:\n{m}"
    );

    // Space returns: delivered without anyone doing anything else.
    std::fs::remove_file(fed.data_dir(1).join("filler")).unwrap();
    for id in &ids {
        assert!(arrives(&fed, 1, id, Duration::from_secs(120)).await);
    }
    let drained = eventually(WAIT, || async {
        peer_view(&fed, 0, "node-b")
            .await
            .is_some_and(|p| p.outbox_depth == 0)
    })
    .await;
    assert!(drained);
    a.shutdown().await.unwrap();
    drop(disk);
}
