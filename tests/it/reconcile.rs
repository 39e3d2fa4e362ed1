//! Set reconciliation between real nodes (real TLS, real SQLite on disk, and
//! a real PostgreSQL for the `_postgres` variants):
//! - a node restored from its own online backup (the README's `sqlite3
//!   .backup`, or `pg_dump`/`pg_restore` of its database) on a line of three, with traffic before and during the
//!   restore: every node ends with the same alerts, and the assistance request
//!   withdrawn after the backup is WITHDRAWN again on the restored node (not
//!   REQUESTED forever);
//! - a node started on an empty store with its old identity (its folder
//!   removed; on PostgreSQL every table of its database dropped) gets back
//!   what its peer holds for it, its own messages included;
//! - on a line a - b - c, c started on an empty store gets back from its
//!   relay b what a (not its peer) addressed to it and its own message to a,
//!   and nothing sealed for b alone;
//! - a peer added late receives the window's history it is entitled to and
//!   nothing else (an AMBER message for another member stays away);
//! - a message a peer deferred for clock skew is delivered by the
//!   reconciliation that follows the fix, long before the deferral's retry;
//! - a message a peer refused for good is not offered to it again, also
//!   after it restarts with the same certificate, until its refusals are
//!   forgotten: by the operator (`retry_refused`), by a certificate renewed
//!   on the peer, or by a reload changing its peer section; then the next
//!   reconciliation offers it and the peer (its cause fixed) stores it;
//! - a ten-minute bucket holding more items than a round may read is not
//!   compared, and everything else the two sides lack is still delivered;
//! - hostile reconciliation frames are refused with a status naming the
//!   problem, rate-limited, and the link keeps carrying messages.
use crate::common::*;
use crate::fedtools::*;
use certfed::proto::v1::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Reconcile often in tests (the default is every 300 s).
const FAST: &str = "\n[reconcile]\ninterval_secs = 5\n";

async fn alert_set(fed: &Fed, i: usize) -> BTreeSet<String> {
    alert_ids_oldest_first(fed, i).await.into_iter().collect()
}

fn amber_request(title: &str) -> AssistanceRequest {
    AssistanceRequest {
        title: title.into(),
        description: "ransomware on a hospital network; need incident response".into(),
        tlp: Tlp::Amber as i32,
        services: vec![AssistanceService::IncidentResponse as i32],
        sector: Nis2Sector::Health as i32,
        entity_category: EntityCategory::Essential as i32,
        rsit_class: RsitClass::MaliciousCode as i32,
        severity: Severity::High as i32,
        ..Default::default()
    }
}

async fn assistance_state(fed: &Fed, i: usize, id: &str) -> Option<i32> {
    let mut op = fed.operator(i).await;
    op.get_assistance_request(GetAssistanceRequestRequest {
        request_id: id.into(),
    })
    .await
    .ok()
    .map(|v| v.into_inner().state)
}

/// The README's online backup: `sqlite3 certfed.db ".backup FILE"`.
/// Runs one reconciliation of node `i` with `peer` now (ReconcilePeer) and
/// returns what it found.
async fn reconcile_now(fed: &Fed, i: usize, peer: &str, retry_refused: bool) -> ReconcileView {
    fed.operator(i)
        .await
        .reconcile_peer(ReconcilePeerRequest {
            peer_id: peer.into(),
            retry_refused,
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap()
}

fn online_backup(data_dir: &Path, to: &Path) {
    let out = std::process::Command::new("sqlite3")
        .arg(data_dir.join("certfed.db"))
        .arg(format!(".backup {}", to.display()))
        .output()
        .expect("sqlite3 runs (apt-get install sqlite3)");
    assert!(out.status.success(), "{out:?}");
}

/// The README's restore: the backup as certfed.db, stale WAL and SHM gone.
fn restore(data_dir: &Path, from: &Path) {
    std::fs::copy(from, data_dir.join("certfed.db")).unwrap();
    for f in ["certfed.db-wal", "certfed.db-shm"] {
        let _ = std::fs::remove_file(data_dir.join(f));
    }
}

/// Runs a PostgreSQL client tool (`pg_dump`, `pg_restore`), which must succeed.
fn pg_tool(tool: &str, args: &[&str]) {
    let out = std::process::Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} runs (apt-get install postgresql-client): {e}"));
    assert!(
        out.status.success(),
        "{tool} {}: {}",
        args.first().unwrap_or(&""),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A backup of node `i`'s store while it runs: SQLite's online backup, or
/// the README's `pg_dump -Fc` of the node's database.
fn backup_node(fed: &Fed, i: usize, to: &Path) {
    match &fed.backend {
        Backend::Sqlite => online_backup(&fed.data_dir(i), to),
        Backend::Postgres { .. } => {
            let url = fed.db_url(i);
            pg_tool(
                "pg_dump",
                &["-Fc", "-f", &to.display().to_string(), "-d", &url],
            );
        }
    }
}

/// Node `i`'s store (the node stopped) replaced by the backup: the file
/// copied back, or the README's `pg_restore --clean` into its database.
fn restore_node(fed: &Fed, i: usize, from: &Path) {
    match &fed.backend {
        Backend::Sqlite => restore(&fed.data_dir(i), from),
        Backend::Postgres { .. } => {
            let url = fed.db_url(i);
            pg_tool(
                "pg_restore",
                &[
                    "--clean",
                    "--if-exists",
                    "--no-owner",
                    "-d",
                    &url,
                    &from.display().to_string(),
                ],
            );
        }
    }
}

/// Node `i`'s store emptied (the node stopped): its folder removed, and on
/// PostgreSQL every table of its database dropped. It starts again with its
/// old identity on an empty store.
async fn empty_node(fed: &Fed, i: usize) {
    match &fed.backend {
        Backend::Sqlite => std::fs::remove_dir_all(fed.data_dir(i)).unwrap(),
        // The folder holds attachment files only, once there are any.
        Backend::Postgres { .. } => {
            let _ = std::fs::remove_dir_all(fed.data_dir(i));
        }
    }
    if let Backend::Postgres { .. } = &fed.backend {
        certfed::storage::postgres::admin::execute(
            &fed.db_url(i),
            "DROP SCHEMA public CASCADE; CREATE SCHEMA public",
        )
        .await
        .expect("the node's tables dropped");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restored_from_backup_converges_with_its_line() {
    // SQLite files: the README's sqlite3 backup and restore.
    restored_from_backup(Fed::line().sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restored_from_backup_converges_with_its_line_on_postgres() {
    // The README's pg_dump and pg_restore of the node's database.
    let Some(server) = pg_server() else { return };
    restored_from_backup(Fed::line().postgres(&server)).await;
}

async fn restored_from_backup(mut fed: Fed) {
    for s in &mut fed.specs {
        s.extra = FAST.into();
    }
    let a = fed.start(0).await;
    let mut b = Some(fed.start(1).await);
    let c = fed.start(2).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(publish_on(&fed, i, green_alert(&format!("before backup {i}")), &[]).await);
    }
    let mut op_a = fed.operator(0).await;
    let rid = op_a
        .request_assistance(RequestAssistanceRequest {
            request: Some(amber_request("before backup")),
            recipients: vec!["node-b".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .request_id;
    for id in &ids {
        for i in 0..3 {
            assert!(arrives(&fed, i, id, WAIT).await, "{id} reaches node {i}");
        }
    }
    assert!(
        eventually(WAIT, || async {
            assistance_state(&fed, 1, &rid).await == Some(AssistanceState::Requested as i32)
        })
        .await
    );

    let backup = fed.data.path().join("b-backup.db");
    backup_node(&fed, 1, &backup);

    // After the backup: alerts from every node (b's own too), and a's
    // withdrawal of its request.
    for i in 0..3 {
        ids.push(publish_on(&fed, i, green_alert(&format!("after backup {i}")), &[]).await);
    }
    op_a.update_assistance(UpdateAssistanceRequest {
        request_id: rid.clone(),
        state: AssistanceState::Withdrawn as i32,
        note: "handled locally".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    for id in &ids {
        for i in 0..3 {
            assert!(arrives(&fed, i, id, WAIT).await, "{id} reaches node {i}");
        }
    }
    assert!(
        eventually(WAIT, || async {
            assistance_state(&fed, 1, &rid).await == Some(AssistanceState::Withdrawn as i32)
        })
        .await
    );

    // Restore b from the backup while a and c keep publishing.
    b.take().unwrap().shutdown().await.unwrap();
    restore_node(&fed, 1, &backup);
    ids.push(publish_on(&fed, 0, green_alert("while b is down"), &[]).await);
    ids.push(publish_on(&fed, 2, green_alert("while b is down, from c"), &[]).await);
    let b = fed.start(1).await;
    assert_eq!(
        assistance_state(&fed, 1, &rid).await,
        Some(AssistanceState::Requested as i32),
        "the restored store has the request but not its withdrawal"
    );
    ids.push(publish_on(&fed, 1, green_alert("b after the restore"), &[]).await);

    // Every node converges to the same alerts; the request is WITHDRAWN on
    // both a and b again.
    let all: BTreeSet<String> = ids.iter().cloned().collect();
    let converged = eventually(WAIT, || async {
        let sets = [
            alert_set(&fed, 0).await,
            alert_set(&fed, 1).await,
            alert_set(&fed, 2).await,
        ];
        sets.iter().all(|s| *s == all)
    })
    .await;
    assert!(
        converged,
        "a {:?}\nb {:?}\nc {:?}\nwant {all:?}",
        alert_set(&fed, 0).await,
        alert_set(&fed, 1).await,
        alert_set(&fed, 2).await
    );
    assert!(
        eventually(WAIT, || async {
            assistance_state(&fed, 1, &rid).await == Some(AssistanceState::Withdrawn as i32)
        })
        .await,
        "REQUESTED on the restored node turns WITHDRAWN, as on the requester"
    );
    assert_eq!(
        assistance_state(&fed, 0, &rid).await,
        Some(AssistanceState::Withdrawn as i32)
    );
    // b's own alert published after the backup came back, readable.
    let own = &ids[4];
    let m = fed
        .operator(1)
        .await
        .get_message(GetMessageRequest {
            message_id: own.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.origin, "node-b");

    // ListPeers shows the reconciliations.
    let view = peer_view(&fed, 1, "node-a").await.unwrap();
    let r = view
        .last_reconcile
        .expect("a reconciliation with node-a is shown");
    assert!(r.error.is_empty(), "{r:?}");
    assert!(r.at.is_some());
    for n in [a, b, c] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_store_with_the_old_identity_gets_its_history_back() {
    // SQLite files: the store's folder is removed.
    emptied_store(Fed::new(&["node-a", "node-b"], &[(0, 1)]).sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_postgres_store_with_the_old_identity_gets_its_history_back() {
    // Every table of node-b's database dropped.
    let Some(server) = pg_server() else { return };
    emptied_store(Fed::new(&["node-a", "node-b"], &[(0, 1)]).postgres(&server)).await;
}

async fn emptied_store(mut fed: Fed) {
    for s in &mut fed.specs {
        s.extra = FAST.into();
    }
    let a = fed.start(0).await;
    let b = fed.start(1).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(publish_on(&fed, i % 2, green_alert(&format!("history {i}")), &[]).await);
    }
    // AMBER for b only: b is a named recipient, so it comes back readable.
    let mut amber = green_alert("amber for b");
    amber.tlp = Tlp::Amber as i32;
    let amber_id = publish_on(&fed, 0, amber, &["node-b"]).await;
    ids.push(amber_id.clone());
    for id in &ids {
        assert!(arrives(&fed, 1, id, WAIT).await);
        assert!(arrives(&fed, 0, id, WAIT).await);
    }
    b.shutdown().await.unwrap();
    // The whole folder goes (marker included), and on PostgreSQL every
    // table: a new, empty store.
    empty_node(&fed, 1).await;
    let b = fed.start(1).await;
    let want: BTreeSet<String> = ids.iter().cloned().collect();
    assert!(
        eventually(WAIT, || async { alert_set(&fed, 1).await == want }).await,
        "b gets back its history: {:?}",
        alert_set(&fed, 1).await
    );
    // Its own alerts come back too, and the AMBER one is readable.
    assert!(holds(&fed, 1, &ids[1]).await);
    let m = fed
        .operator(1)
        .await
        .get_message(GetMessageRequest {
            message_id: amber_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.origin, "node-a");

    // Metrics count the rounds, bytes and items; GetNodeInfo shows the window.
    let info = fed
        .operator(0)
        .await
        .get_node_info(GetNodeInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.reconcile_window_days, 30);
    assert_eq!(info.reconcile_interval_secs, 5);
    let a_view = peer_view(&fed, 0, "node-b").await.unwrap();
    let r = a_view.last_reconcile.expect("shown");
    assert!(r.error.is_empty(), "{r:?}");
    // Reconcile now, on request: nothing differs any more (once what is
    // still in flight — b's receipts for what came back — has landed).
    let f = &fed;
    let reconcile_now = move || reconcile_now(f, 0, "node-b", false);
    let deadline = std::time::Instant::now() + WAIT;
    let mut now = reconcile_now().await;
    while !(now.error.is_empty() && (now.difference, now.rounds) == (0, 1))
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        now = reconcile_now().await;
    }
    assert!(now.error.is_empty(), "{now:?}");
    assert_eq!((now.difference, now.rounds), (0, 1), "{now:?}");
    assert!(now.bytes < 1024, "in sync: {} bytes", now.bytes);
    let err = fed
        .operator(0)
        .await
        .reconcile_peer(ReconcilePeerRequest {
            peer_id: "node-x".into(),
            retry_refused: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// Line a - b - c: c starts on an empty store with its old identity and gets
/// back, from its relay b, what a (not its peer) addressed to it, and its own
/// message to a; AMBER sealed for b stays away from c (b is its only party
/// on that link).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_gives_back_what_a_non_adjacent_member_sent_through_it() {
    // SQLite files: the store's folder is removed.
    let mut fed = Fed::line().sqlite();
    for s in &mut fed.specs {
        s.extra = FAST.into();
    }
    let a = fed.start(0).await;
    let b = fed.start(1).await;
    let c = fed.start(2).await;
    let a_to_c = publish_on(&fed, 0, green_alert("a to c, through b"), &["node-c"]).await;
    let c_to_a = publish_on(&fed, 2, green_alert("c to a, through b"), &["node-a"]).await;
    let broadcast = publish_on(&fed, 0, green_alert("a to everyone"), &[]).await;
    let mut amber = green_alert("amber for b only");
    amber.tlp = Tlp::Amber as i32;
    let amber_for_b = publish_on(&fed, 0, amber, &["node-b"]).await;
    for id in [&a_to_c, &broadcast] {
        assert!(arrives(&fed, 2, id, WAIT).await, "{id} reaches c");
    }
    assert!(arrives(&fed, 0, &c_to_a, WAIT).await);
    assert!(arrives(&fed, 1, &amber_for_b, WAIT).await);
    c.shutdown().await.unwrap();
    std::fs::remove_dir_all(fed.data_dir(2)).unwrap();
    let c = fed.start(2).await;
    for id in [&a_to_c, &c_to_a, &broadcast] {
        assert!(
            arrives(&fed, 2, id, WAIT).await,
            "{id} comes back to c from its relay b"
        );
    }
    let m = fed
        .operator(2)
        .await
        .get_message(GetMessageRequest {
            message_id: a_to_c.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.origin, "node-a");
    // Once b and c agree (a reconciliation finding no difference), the AMBER
    // message sealed for b alone has not come to c in any form.
    let f = &fed;
    let settled = eventually(WAIT, || async move {
        let r = reconcile_now(f, 2, "node-b", false).await;
        r.error.is_empty() && r.difference == 0
    })
    .await;
    assert!(settled, "{:?}", peer_view(&fed, 2, "node-b").await);
    assert!(
        !holds(&fed, 2, &amber_for_b).await,
        "AMBER for b only is not given to c"
    );
    for n in [a, b, c] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_peer_gets_the_history_it_is_entitled_to_and_nothing_else() {
    let mut fed = Fed::new(&["node-a", "node-b", "node-c"], &[(0, 1)]);
    for s in &mut fed.specs {
        s.extra = FAST.into();
    }
    let a = fed.start(0).await;
    let b = fed.start(1).await;
    let broadcast = publish_on(&fed, 0, green_alert("for everyone"), &[]).await;
    let from_b = publish_on(&fed, 1, green_alert("b's, for everyone"), &[]).await;
    let mut amber = green_alert("amber for b and c");
    amber.tlp = Tlp::Amber as i32;
    let for_bc = publish_on(&fed, 0, amber.clone(), &["node-b", "node-c"]).await;
    amber.title = "amber for b only".into();
    let for_b = publish_on(&fed, 0, amber, &["node-b"]).await;
    for id in [&broadcast, &from_b, &for_bc, &for_b] {
        assert!(arrives(&fed, 1, id, WAIT).await);
        assert!(arrives(&fed, 0, id, WAIT).await);
    }
    // c joins: a peers with it (reload), c starts.
    let (pa, pc) = (fed.specs[0].port, fed.specs[2].port);
    fed.specs[0].peers.push(("node-c".into(), pc));
    fed.specs[2].peers.push(("node-a".into(), pa));
    a.reload(&fed.config_path(0)).unwrap();
    let c = fed.start(2).await;
    for id in [&broadcast, &from_b, &for_bc] {
        assert!(
            arrives(&fed, 2, id, WAIT).await,
            "{id} reaches the late peer"
        );
    }
    // Another reconciliation runs; the AMBER message for b alone never comes.
    let r = reconcile_now(&fed, 2, "node-a", false).await;
    assert!(r.error.is_empty(), "{r:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !holds(&fed, 2, &for_b).await,
        "not entitled: AMBER for b only"
    );
    let mut op_c = fed.operator(2).await;
    let err = op_c
        .get_message(GetMessageRequest {
            message_id: for_b.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    for n in [a, b, c] {
        n.shutdown().await.unwrap();
    }
}

/// Pushes `envs` to node `i` as node-c (each accepted).
async fn push_as_c(fed: &Fed, i: usize, envs: Vec<SignedEnvelope>) {
    let n = envs.len();
    let to = fed.specs[i].id.clone();
    let mut fc = federation_client(&fed.pki, &fed.addr(i), "node-c", Some(&to)).await;
    let (tx, rx) = tokio::sync::mpsc::channel(n + 1);
    for (k, e) in envs.into_iter().enumerate() {
        tx.send(frame(k as u64 + 1, e)).await.unwrap();
    }
    let mut acks = fc
        .push(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for _ in 0..n {
        let ack = acks.message().await.unwrap().expect("an ack per frame");
        assert_eq!(ack.outcome, PushOutcome::Accepted as i32, "{ack:?}");
    }
}

/// A history spread over weeks lies in many sparse buckets, whose items a
/// round loads a few at a time: the late peer still gets all of it (a round
/// once gave up after 16 loads, failing every such reconciliation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_peer_gets_a_history_spread_over_weeks() {
    const N: usize = 1000;
    let mut fed = Fed::new(&["node-a", "node-b", "node-c"], &[(0, 2)]);
    for s in &mut fed.specs {
        s.extra = FAST.into();
    }
    let a = fed.start(0).await;
    // The test plays node-c (not started): N alerts created over 20 days.
    let signer = signer_from(&fed.pki, "node-c");
    let start = certfed::service::now_ms() - 20 * 86_400_000;
    let step = 20 * 86_400_000 / N as i64;
    let envs: Vec<SignedEnvelope> = (0..N)
        .map(|i| signed_alert(&signer, &format!("old alert {i}"), start + i as i64 * step))
        .collect();
    let ids: BTreeSet<String> = envs.iter().map(id_of).collect();
    push_as_c(&fed, 0, envs).await;
    // b joins.
    let (pa, pb) = (fed.specs[0].port, fed.specs[1].port);
    fed.specs[0].peers.push(("node-b".into(), pb));
    fed.specs[1].peers.push(("node-a".into(), pa));
    a.reload(&fed.config_path(0)).unwrap();
    let b = fed.start(1).await;
    let got_all = eventually(WAIT, || async { alert_set(&fed, 1).await == ids }).await;
    let view = peer_view(&fed, 1, "node-a")
        .await
        .and_then(|p| p.last_reconcile);
    assert!(
        got_all,
        "node-b got {} of {N}; last reconciliation: {view:?}",
        alert_set(&fed, 1).await.len()
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// A flood of messages created within one ten-minute bucket, more than a
/// round may read (`reconcile.max_round_items`, 100 here), held by both
/// sides and differing: that bucket is not compared (logged, counted as
/// `not_compared`), and everything else the two lack is still found and
/// delivered. Before, every round that reached the bucket failed with
/// RESOURCE_EXHAUSTED, and the whole link's reconciliation with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_too_large_to_read_does_not_stop_a_links_reconciliation() {
    let mut fed = Fed::new(&["node-a", "node-b", "node-c"], &[(0, 2), (1, 2)]);
    let metrics: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    for (i, m) in metrics.iter().enumerate() {
        fed.specs[i].extra = format!(
            "\n[reconcile]\ninterval_secs = 3600\nmax_round_items = 100\n\n[metrics]\nlisten = \"{m}\"\n"
        );
    }
    let a = fed.start(0).await;
    let b = fed.start(1).await;
    // The test plays node-c (not started). A flood two days ago within one
    // bucket: 150 at a, 130 of them at b; and 12 alerts each only a or
    // only b holds, spread over other days.
    let signer = signer_from(&fed.pki, "node-c");
    let day = 86_400_000i64;
    let now = certfed::service::now_ms();
    let flood_at = (now - 2 * day) / 600_000 * 600_000;
    let flood: Vec<SignedEnvelope> = (0..150)
        .map(|i| signed_alert(&signer, &format!("flood {i}"), flood_at + 1_000 + i * 100))
        .collect();
    let spread = |tag: &str, first_day: i64| -> Vec<SignedEnvelope> {
        (0..12)
            .map(|i| {
                let at = now - (first_day + i % 3) * day - i * 3_600_000;
                signed_alert(&signer, &format!("{tag} {i}"), at)
            })
            .collect()
    };
    let (only_a, only_b) = (spread("only a", 3), spread("only b", 6));
    let ids = |v: &[SignedEnvelope]| -> BTreeSet<String> { v.iter().map(id_of).collect() };
    let (flood_ids, a_ids, b_ids) = (ids(&flood), ids(&only_a), ids(&only_b));
    let missing_at_b = ids(&flood[130..]);
    push_as_c(&fed, 0, flood.iter().cloned().chain(only_a).collect()).await;
    push_as_c(
        &fed,
        1,
        flood[..130].iter().cloned().chain(only_b).collect(),
    )
    .await;
    // a and b peer up (reload): what each lacks can come only from
    // reconciliation.
    let (pa, pb) = (fed.specs[0].port, fed.specs[1].port);
    fed.specs[0].peers.push(("node-b".into(), pb));
    fed.specs[1].peers.push(("node-a".into(), pa));
    a.reload(&fed.config_path(0)).unwrap();
    b.reload(&fed.config_path(1)).unwrap();
    let a_all: BTreeSet<String> = flood_ids.union(&a_ids).chain(&b_ids).cloned().collect();
    let b_all: BTreeSet<String> = flood_ids
        .difference(&missing_at_b)
        .chain(&a_ids)
        .chain(&b_ids)
        .cloned()
        .collect();
    let converged = eventually(WAIT, || async {
        alert_set(&fed, 0).await == a_all && alert_set(&fed, 1).await == b_all
    })
    .await;
    let view = peer_view(&fed, 0, "node-b")
        .await
        .and_then(|p| p.last_reconcile);
    assert!(
        converged,
        "a holds {} of {}, b {} of {}; a's last reconciliation with b: {view:?}",
        alert_set(&fed, 0).await.len(),
        a_all.len(),
        alert_set(&fed, 1).await.len(),
        b_all.len()
    );
    // Another exchange ends without an error; the bucket stays uncompared
    // (b never gets the 20 of the flood it lacks), counted once.
    let r = reconcile_now(&fed, 0, "node-b", false).await;
    assert!(r.error.is_empty(), "{r:?}");
    let r = reconcile_now(&fed, 1, "node-a", false).await;
    assert!(r.error.is_empty(), "{r:?}");
    assert_eq!(alert_set(&fed, 1).await, b_all);
    let counted: Vec<f64> = futures::future::join_all(metrics.iter().map(|m| async move {
        sample(
            &scrape(m).await,
            "certfed_reconcile_items_total{kind=\"not_compared\"}",
        )
    }))
    .await;
    assert!(
        counted.iter().any(|n| *n >= 130.0) && counted.iter().all(|n| *n <= 300.0),
        "not_compared at a, b: {counted:?}"
    );
    for n in [a, b] {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_deferred_for_clock_skew_is_delivered_by_the_next_reconciliation() {
    // The test plays node-c, whose clock is 90 s ahead, pushing to a; b
    // allows 2 s of skew and defers it (retry in about 90 s).
    let mut fed = Fed::new(&["node-a", "node-b", "node-c"], &[(0, 1), (0, 2)]);
    fed.specs[0].extra = format!("max_clock_skew_secs = 300{FAST}");
    fed.specs[1].extra = format!("max_clock_skew_secs = 2{FAST}");
    let a = fed.start(0).await;
    let b = fed.start(1).await;
    let c_key = signer_from(&fed.pki, "node-c");
    let ahead = signed_alert(
        &c_key,
        "from a clock 90 s ahead",
        certfed::service::now_ms() + 90_000,
    );
    let ahead_id = id_of(&ahead);
    let mut fc = federation_client(&fed.pki, &fed.addr(0), "node-c", Some("node-a")).await;
    let ack = fc
        .push(tokio_stream::iter(vec![frame(1, ahead)]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ack.outcome, PushOutcome::Accepted as i32, "{ack:?}");
    assert!(
        eventually(WAIT, || async {
            delivery_to(&fed, 0, &ahead_id, "node-b")
                .await
                .is_some_and(|d| d.state == DeliveryState::Deferred as i32)
        })
        .await,
        "b defers it"
    );
    // b's clock check is fixed (its operator allows the skew) and b restarts;
    // the reconciliation on link-up delivers it, long before the retry.
    b.shutdown().await.unwrap();
    fed.specs[1].extra = format!("max_clock_skew_secs = 300{FAST}");
    let b = fed.start(1).await;
    assert!(
        arrives(&fed, 1, &ahead_id, Duration::from_secs(40)).await,
        "delivered by reconciliation, not after the deferral's 90 s"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// Runs one reconciliation of node `i` with `peer` (ReconcilePeer) once the
/// link is up again after a restart or reload: retried while it is not.
async fn reconcile_when_up(fed: &Fed, i: usize, peer: &str, retry_refused: bool) -> ReconcileView {
    let mut op = fed.operator(i).await;
    let mut last = None;
    for _ in 0..60 {
        match op
            .reconcile_peer(ReconcilePeerRequest {
                peer_id: peer.into(),
                retry_refused,
            })
            .await
        {
            Ok(r) => return r.into_inner().result.unwrap(),
            Err(s) => last = Some(s),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("ReconcilePeer kept failing: {last:?}");
}

/// A federation a - b where b refuses exercise traffic (`exercise.accept =
/// false`, a refusal for good), both running.
async fn b_refuses_exercises() -> (Fed, certfed::app::RunningNode, certfed::app::RunningNode) {
    let mut fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    fed.specs[1].extra = "\n[exercise]\naccept = false\n".into();
    let a = fed.start(0).await;
    let b = fed.start(1).await;
    (fed, a, b)
}

/// a publishes an exercise alert; b refuses it for good (REJECTED) and the
/// next reconciliation finds b lacks it but does not offer it again.
/// Returns its id.
async fn refused_by_b(fed: &Fed, title: &str) -> String {
    let x = publish_on(
        fed,
        0,
        Alert {
            exercise: true,
            ..green_alert(title)
        },
        &[],
    )
    .await;
    assert!(
        eventually(WAIT, || async {
            delivery_to(fed, 0, &x, "node-b")
                .await
                .is_some_and(|d| d.state == DeliveryState::Rejected as i32)
        })
        .await,
        "b refuses the exercise alert"
    );
    let r = reconcile_now(fed, 0, "node-b", false).await;
    assert!(r.error.is_empty(), "{r:?}");
    assert_eq!(
        (r.sent, r.refused_before),
        (0, 1),
        "found lacking, not offered again: {r:?}"
    );
    let d = delivery_to(fed, 0, &x, "node-b").await.unwrap();
    assert_eq!(d.state, DeliveryState::Rejected as i32, "{d:?}");
    x
}

/// A message the peer refused for good (here: exercise traffic at a node
/// with `exercise.accept = false`, a policy refusal) is not offered to it
/// again by the next reconciliation, which says so; it stays REJECTED, also
/// after the peer restarts with the same certificate; once the operator asks
/// to retry (`retry_refused`) it is offered again and delivered (the cause
/// was fixed meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_peer_refused_for_good_is_not_offered_again() {
    let (mut fed, a, b) = b_refuses_exercises().await;
    let x = refused_by_b(&fed, "EXERCISE refused by b").await;

    // The cause is fixed on b (it accepts exercises now) and b restarts with
    // the same certificate: the refusal is still remembered ...
    b.shutdown().await.unwrap();
    fed.specs[1].extra = "\n[exercise]\naccept = true\n".into();
    let b = fed.start(1).await;
    let r = reconcile_when_up(&fed, 0, "node-b", false).await;
    assert!(r.error.is_empty(), "{r:?}");
    assert_eq!(
        (r.sent, r.refused_before),
        (0, 1),
        "still remembered: {r:?}"
    );
    // ... until the operator asks to retry it: offered again, and b takes it.
    let r = reconcile_when_up(&fed, 0, "node-b", true).await;
    assert!(r.error.is_empty(), "{r:?}");
    assert_eq!(
        (r.sent, r.refused_before),
        (1, 0),
        "the refusal is forgotten: offered again: {r:?}"
    );
    assert!(arrives(&fed, 1, &x, WAIT).await, "b holds it now");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// A peer that presents a certificate this node has not seen from it before
/// (here: b's certificate re-issued, new serial and TLS key, same identity
/// and signing key, while b's operator fixes the cause of its refusal) gets
/// its refusals offered again by the next reconciliation, without
/// `retry_refused` (`Node::note_peer_serial`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_a_renewed_certificate_is_offered_its_refusals_again() {
    let (mut fed, a, b) = b_refuses_exercises().await;
    let x = refused_by_b(&fed, "EXERCISE refused by b until its renewal").await;

    b.shutdown().await.unwrap();
    let old = std::fs::read_to_string(fed.pki.path("node-b.crt")).unwrap();
    let old = certfed::pki::cert_serial_hex(&old).unwrap();
    let renewed = fed.pki.node("node-b");
    assert_ne!(renewed.serial_hex, old, "a new certificate, a new serial");
    fed.specs[1].extra = "\n[exercise]\naccept = true\n".into();
    let b = fed.start(1).await;
    // Once the restarted b's link to a is up, a has seen the renewed
    // certificate (b's Hello presents it).
    assert!(
        eventually(WAIT, || async {
            peer_view(&fed, 1, "node-a")
                .await
                .is_some_and(|p| p.state == LinkState::Up as i32)
        })
        .await,
        "b's link to a comes up"
    );
    // Offered again: by this reconciliation, or already by the one either
    // side ran when the link came up (then b no longer lacks it).
    let r = reconcile_when_up(&fed, 0, "node-b", false).await;
    assert!(r.error.is_empty(), "{r:?}");
    assert_eq!(
        r.refused_before, 0,
        "the refusal went with the old certificate: {r:?}"
    );
    assert!(
        arrives(&fed, 1, &x, WAIT).await,
        "b holds it, without retry_refused"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// A reload that changes a peer's section restarts its link and forgets the
/// peer's refusals (`LinkTasks::apply`): here a caps b at TLP:GREEN (the
/// GREEN exercise alert stays eligible) after b's operator fixed the cause
/// and restarted b with the same certificate, which alone forgets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_peer_section_forgets_its_refusals() {
    let (mut fed, a, b) = b_refuses_exercises().await;
    let x = refused_by_b(&fed, "EXERCISE refused by b until a's reload").await;

    b.shutdown().await.unwrap();
    fed.specs[1].extra = "\n[exercise]\naccept = true\n".into();
    let b = fed.start(1).await;
    let r = reconcile_when_up(&fed, 0, "node-b", false).await;
    assert!(r.error.is_empty(), "{r:?}");
    assert_eq!(
        (r.sent, r.refused_before),
        (0, 1),
        "before the reload, still remembered: {r:?}"
    );
    let endpoint = format!("endpoint = \"{}\"\n", fed.addr(1));
    let changed = edited(
        &fed.config_path(0),
        "node-a.capped.toml",
        &endpoint,
        &format!("{endpoint}max_tlp = \"green\"\n"),
    );
    a.reload(&changed).unwrap();
    let v = peer_view(&fed, 0, "node-b").await.unwrap();
    assert_eq!(v.max_tlp, Tlp::Green as i32, "the section changed: {v:?}");
    // Offered again: by this reconciliation, or already by the one either
    // side ran when the restarted link came up (then b no longer lacks it).
    let r = reconcile_when_up(&fed, 0, "node-b", false).await;
    assert!(r.error.is_empty(), "{r:?}");
    assert_eq!(r.refused_before, 0, "the reload forgot the refusal: {r:?}");
    assert!(
        arrives(&fed, 1, &x, WAIT).await,
        "b holds it, without retry_refused"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

fn fp_frame(ranges: Vec<SyncRange>) -> Option<ReconcileFrame> {
    Some(ReconcileFrame { ranges })
}

fn end() -> Option<SyncBound> {
    Some(SyncBound {
        end: true,
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_reconciliation_frames_are_refused_and_the_link_goes_on() {
    let mut fed = Fed::new(&["node-a", "node-b", "node-c"], &[(0, 1), (1, 2)]);
    for s in &mut fed.specs {
        s.extra = "\n[reconcile]\ninterval_secs = 3600\nmax_rounds_per_minute = 10\n".into();
    }
    let a = fed.start(0).await;
    let b = fed.start(1).await;
    // b holds an AMBER message for c only, and a broadcast.
    let mut amber = green_alert("amber for c only");
    amber.tlp = Tlp::Amber as i32;
    let for_c = publish_on(&fed, 1, amber, &["node-c"]).await;
    let broadcast = publish_on(&fed, 1, green_alert("for everyone"), &[]).await;
    assert!(arrives(&fed, 0, &broadcast, WAIT).await);
    // The real node-a's own reconciliation with b (when its link came up)
    // has ended: one running would make b answer the test's rounds with
    // "already running" instead of judging their frames.
    let f = &fed;
    assert!(
        eventually(WAIT, || async move {
            peer_view(f, 0, "node-b")
                .await
                .and_then(|p| p.last_reconcile)
                .is_some_and(|r| r.at.is_some())
        })
        .await,
        "node-a reconciled with b once its link came up"
    );

    // The test plays node-a.
    let mut fc = federation_client(&fed.pki, &fed.addr(1), "node-a", Some("node-b")).await;
    let now = certfed::service::now_ms();
    let since = now - 86_400_000;
    let call = |since_ms: i64, frame: Option<ReconcileFrame>| ReconcileRequest {
        since_ms,
        frame,
        round: 1,
        ..Default::default()
    };
    let cases: Vec<(&str, ReconcileRequest, tonic::Code, &str)> = vec![
        (
            "no ranges",
            call(since, fp_frame(vec![])),
            tonic::Code::InvalidArgument,
            "no ranges",
        ),
        (
            "not ending at the end",
            call(
                since,
                fp_frame(vec![SyncRange {
                    upper: Some(SyncBound {
                        created_delta_ms: 10,
                        ..Default::default()
                    }),
                    mode: Some(sync_range::Mode::Skip(true)),
                }]),
            ),
            tonic::Code::InvalidArgument,
            "end of the set",
        ),
        (
            "bounds going back",
            call(
                since,
                fp_frame(vec![
                    SyncRange {
                        upper: Some(SyncBound {
                            created_delta_ms: 10,
                            ..Default::default()
                        }),
                        mode: Some(sync_range::Mode::Skip(true)),
                    },
                    SyncRange {
                        upper: Some(SyncBound {
                            created_delta_ms: -5,
                            ..Default::default()
                        }),
                        mode: Some(sync_range::Mode::Skip(true)),
                    },
                    SyncRange {
                        upper: end(),
                        mode: Some(sync_range::Mode::Skip(true)),
                    },
                ]),
            ),
            tonic::Code::InvalidArgument,
            "increase",
        ),
        (
            "a fingerprint of 3 bytes",
            call(
                since,
                fp_frame(vec![SyncRange {
                    upper: end(),
                    mode: Some(sync_range::Mode::Fingerprint(vec![1, 2, 3])),
                }]),
            ),
            tonic::Code::InvalidArgument,
            "fingerprint of 3 bytes",
        ),
        (
            "an absurd id list",
            call(
                since,
                fp_frame(vec![SyncRange {
                    upper: end(),
                    mode: Some(sync_range::Mode::Ids(ShortIds {
                        ids: vec![7; 8 * 5000],
                    })),
                }]),
            ),
            tonic::Code::InvalidArgument,
            "5000 ids",
        ),
        (
            "ten years of history",
            call(
                now - 3650 * 86_400_000,
                fp_frame(vec![SyncRange {
                    upper: end(),
                    mode: Some(sync_range::Mode::Fingerprint(vec![0; 16])),
                }]),
            ),
            tonic::Code::OutOfRange,
            "window",
        ),
    ];
    for (name, req, code, needle) in cases {
        // The real node-a may start a round of its own at any time (its link
        // coming up again): b then says so, and the frame is sent again.
        let mut tries = 0;
        let err = loop {
            let err = fc.reconcile(req.clone()).await.unwrap_err();
            tries += 1;
            if err.code() == tonic::Code::ResourceExhausted
                && err.message().contains("already running")
                && tries < 50
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            break err;
        };
        assert_eq!(err.code(), code, "{name}: {err:?}");
        assert!(err.message().contains(needle), "{name}: {}", err.message());
    }

    // Asking for everything (an empty id list over the whole set) queues
    // only what policy lets go to node-a: the broadcast and node-a's own
    // DELIVERED receipt for it (a peer gets its own messages back), not the
    // AMBER message for c. Wait for that receipt so the count is exact.
    assert!(
        eventually(WAIT, || async {
            b.node.metrics.receipts_received.get() >= 1
        })
        .await,
        "node-a's receipt for the broadcast reaches node-b"
    );
    let greedy = fc
        .reconcile(call(
            since,
            fp_frame(vec![SyncRange {
                upper: end(),
                mode: Some(sync_range::Mode::Ids(ShortIds { ids: vec![] })),
            }]),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        greedy.queued, 2,
        "only the broadcast and node-a's receipt: {greedy:?}"
    );

    // A flood: beyond 10 rounds a minute, RESOURCE_EXHAUSTED.
    let mut exhausted = None;
    for _ in 0..20 {
        let r = fc
            .reconcile(call(
                since,
                fp_frame(vec![SyncRange {
                    upper: end(),
                    mode: Some(sync_range::Mode::Fingerprint(vec![0; 16])),
                }]),
            ))
            .await;
        if let Err(e) = r {
            exhausted = Some(e);
            break;
        }
    }
    let e = exhausted.expect("the flood is cut off");
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message().contains("max_rounds_per_minute"),
        "{}",
        e.message()
    );

    // The link carries messages as before; the refusals are counted.
    let after = publish_on(&fed, 1, green_alert("after the hostile frames"), &[]).await;
    assert!(arrives(&fed, 0, &after, WAIT).await);
    assert!(!holds(&fed, 0, &for_c).await);
    let text = fed
        .operator(1)
        .await
        .list_peers(ListPeersRequest::default())
        .await
        .unwrap()
        .into_inner();
    let pa = text.peers.iter().find(|p| p.peer_id == "node-a").unwrap();
    assert_eq!(pa.state, LinkState::Up as i32);
    let m = &b.node.metrics;
    let refused = |reason: &str| {
        m.reconcile_failures
            .get_or_create(&certfed::service::metrics::ReasonLabel {
                reason: reason.into(),
            })
            .get()
    };
    assert!(refused("malformed") >= 5, "{}", refused("malformed"));
    assert!(refused("window") >= 1);
    assert!(refused("rate_limited") >= 1);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// `n` ranges of one millisecond each (the last to the end), each with a
/// fingerprint no set has.
fn many_fingerprints(n: usize) -> Option<ReconcileFrame> {
    many_ranges(n, sync_range::Mode::Fingerprint(vec![7; 16]))
}

/// `n` ranges of one millisecond each (the last to the end), all `mode`.
fn many_ranges(n: usize, mode: sync_range::Mode) -> Option<ReconcileFrame> {
    fp_frame(
        (0..n)
            .map(|i| SyncRange {
                upper: if i + 1 == n {
                    end()
                } else {
                    Some(SyncBound {
                        created_delta_ms: 1,
                        ..Default::default()
                    })
                },
                mode: Some(mode.clone()),
            })
            .collect(),
    )
}

/// Hello announces how many ranges a Reconcile frame may have; a caller that
/// says nothing (an older certfed) still gets answers of at most 1,024
/// ranges, one that asks for more gets them, and frames beyond the
/// announced count are refused naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_take_as_many_ranges_as_both_sides_announce() {
    let mut fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    for s in &mut fed.specs {
        s.extra = "\n[reconcile]\ninterval_secs = 3600\n".into();
    }
    let b = fed.start(1).await;
    // The test plays node-a.
    let mut fc = federation_client(&fed.pki, &fed.addr(1), "node-a", Some("node-b")).await;
    let hello = fc
        .hello(HelloRequest {
            node_id: "node-a".into(),
            roster_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hello.reconcile_max_ranges, 16_384);
    let since = certfed::service::now_ms() - 86_400_000;
    let ask = |frame: Option<ReconcileFrame>, max_ranges: u32| ReconcileRequest {
        since_ms: since,
        frame,
        round: 1,
        max_ranges,
    };
    // 3,000 ranges: more than an older node accepted. Each is answered (an
    // empty id list: b holds nothing there).
    let old = fc
        .reconcile(ask(many_fingerprints(3000), 0))
        .await
        .unwrap()
        .into_inner();
    let n = old.frame.unwrap().ranges.len();
    assert!((2..=1024).contains(&n), "an older caller gets {n} ranges");
    let new = fc
        .reconcile(ask(many_fingerprints(3000), 16_384))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(new.frame.unwrap().ranges.len(), 3000);
    let err = fc
        .reconcile(ask(
            many_ranges(16_385, sync_range::Mode::Skip(true)),
            16_384,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("16385 ranges; at most 16384"),
        "{}",
        err.message()
    );
    b.shutdown().await.unwrap();
}
