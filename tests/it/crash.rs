//! Crash safety with real processes: `kill -9` of the receiver or the sender in
//! the middle of a stream loses nothing and stores nothing twice, and an alert
//! whose PublishAlert returned survives an immediate `kill -9`.
//!
//! The kills happen "at some moment": the tests only assert on the final state,
//! never on timing. Every wait is bounded.

use crate::common::*;
use certfed::proto::v1::operator_client::OperatorClient;
use certfed::proto::v1::*;
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_certfed");
/// Generous bound for every wait.
const WAIT: Duration = Duration::from_secs(60);
/// Concurrent publishers (the node folds their commits together).
const PUBLISHERS: usize = 16;

/// A certfed process; killed (SIGKILL) and reaped when dropped, so nodes die
/// with the test even when it panics.
struct Proc {
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// `kill -9` and reap.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = s.len().saturating_sub(4000);
        s.get(start..).unwrap_or(&s).to_string()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts node `i` as a `certfed serve` process on its config and storage; its
/// log is appended to `<id>.log` in the PKI folder (a file, so a full pipe can
/// never stall the node).
async fn spawn(fed: &Fed, i: usize) -> Proc {
    let cfg = fed.config_path(i);
    let log = fed.pki.path(&format!("{}.log", fed.specs[i].id));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(file))
        .spawn()
        .unwrap();
    let mut p = Proc {
        child: Some(child),
        log,
    };
    let up = eventually(WAIT, || async move {
        let mut op = fed.operator(i).await;
        op.get_node_info(GetNodeInfoRequest {}).await.is_ok()
    })
    .await;
    if !up {
        let exited = p.child.as_mut().unwrap().try_wait().ok().flatten();
        panic!(
            "{} did not come up (exit: {exited:?}); log:\n{}",
            fed.specs[i].id,
            p.log_tail()
        );
    }
    p
}

async fn stored(op: &mut OperatorClient<Channel>) -> Option<u64> {
    op.get_node_info(GetNodeInfoRequest {})
        .await
        .ok()
        .map(|r| r.into_inner().stored_messages)
}

async fn outbox_depth(op: &mut OperatorClient<Channel>, peer: &str) -> Option<u64> {
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

/// Every alert id on the node, in listing order (paginated ListAlerts).
async fn all_alert_ids(op: &mut OperatorClient<Channel>) -> Vec<String> {
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

/// Publishes `n` GREEN alerts on node `i` with [`PUBLISHERS`] concurrent
/// callers. Returns the ids whose PublishAlert succeeded; with `stop_on_error`
/// a caller stops at its first failure (the node was killed), otherwise a
/// failure fails the test. `done` counts successes as they happen.
fn publish(
    op: OperatorClient<Channel>,
    n: usize,
    tag: &'static str,
    stop_on_error: bool,
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
                    let r = op
                        .publish_alert(PublishAlertRequest {
                            alert: Some(green_alert(&format!("{tag} {k}"))),
                            recipients: vec![],
                            ..Default::default()
                        })
                        .await;
                    match r {
                        Ok(r) => {
                            ids.push(r.into_inner().message_id);
                            done.fetch_add(1, Ordering::SeqCst);
                        }
                        // The node was killed: this call may or may not have been stored.
                        Err(_) if stop_on_error => return ids,
                        Err(e) => panic!("PublishAlert {k} failed: {e}"),
                    }
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

/// Waits until node `to` holds `want` messages and node `from`'s outbox for it
/// is empty; panics (with both logs) otherwise.
async fn await_settled(fed: &Fed, from: usize, to: usize, want: u64, procs: (&Proc, &Proc)) {
    let peer = fed.specs[to].id.clone();
    let ok = eventually(WAIT, || {
        let peer = peer.clone();
        async move {
            let mut op_to = fed.operator(to).await;
            let mut op_from = fed.operator(from).await;
            stored(&mut op_to).await == Some(want)
                && outbox_depth(&mut op_from, &peer).await == Some(0)
        }
    })
    .await;
    if !ok {
        let mut op_to = fed.operator(to).await;
        let mut op_from = fed.operator(from).await;
        panic!(
            "not settled: {} holds {:?} (want {want}), {}'s outbox for it: {:?}\n--- {} log:\n{}\n--- {} log:\n{}",
            fed.specs[to].id,
            stored(&mut op_to).await,
            fed.specs[from].id,
            outbox_depth(&mut op_from, &peer).await,
            fed.specs[from].id,
            procs.0.log_tail(),
            fed.specs[to].id,
            procs.1.log_tail(),
        );
    }
}

/// `ids` has no repeats and is exactly the set `expected`.
fn assert_exactly(ids: &[String], expected: &HashSet<String>, what: &str) {
    let set: HashSet<&String> = ids.iter().collect();
    assert_eq!(set.len(), ids.len(), "{what}: a message id appears twice");
    assert_eq!(ids.len(), expected.len(), "{what}: wrong number of alerts");
    for id in expected {
        assert!(set.contains(id), "{what}: {id} is missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_killed_mid_stream_loses_nothing_and_stores_nothing_twice() {
    const N: usize = 3000;
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let a = spawn(&fed, 0).await;
    let mut b = spawn(&fed, 1).await;

    let done = Arc::new(AtomicUsize::new(0));
    let publisher = publish(fed.operator(0).await, N, "rx-kill", false, done.clone());

    // Kill b once it is ingesting (it holds some, not yet all).
    let mut op_b = fed.operator(1).await;
    let at_kill = AtomicU64::new(0);
    let ingesting = eventually(WAIT, || {
        let mut op_b = op_b.clone();
        let at_kill = &at_kill;
        async move {
            let n = stored(&mut op_b).await.unwrap_or(0);
            at_kill.store(n, Ordering::SeqCst);
            n >= 50
        }
    })
    .await;
    b.kill9();
    assert!(
        ingesting,
        "b never started ingesting; log:\n{}",
        b.log_tail()
    );
    eprintln!(
        "node-b killed holding {} of {N}",
        at_kill.load(Ordering::SeqCst)
    );

    let published = tokio::time::timeout(WAIT * 3, publisher)
        .await
        .expect("publishing finishes")
        .expect("publisher");
    assert_eq!(
        published.len(),
        N,
        "a node that stays up accepts every alert"
    );

    let b = spawn(&fed, 1).await;
    await_settled(&fed, 0, 1, N as u64, (&a, &b)).await;

    op_b = fed.operator(1).await;
    let on_b = all_alert_ids(&mut op_b).await;
    let expected: HashSet<String> = published.into_iter().collect();
    assert_exactly(&on_b, &expected, "node-b");
    let mut op_a = fed.operator(0).await;
    assert_exactly(&all_alert_ids(&mut op_a).await, &expected, "node-a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_killed_while_outbox_drains_delivers_everything_exactly_once() {
    const N: usize = 3000;
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let mut a = spawn(&fed, 0).await;

    // b is down while a accepts all N, so a's outbox holds them all.
    let done = Arc::new(AtomicUsize::new(0));
    let published = tokio::time::timeout(
        WAIT * 3,
        publish(fed.operator(0).await, N, "tx-kill", false, done),
    )
    .await
    .expect("publishing finishes")
    .expect("publisher");
    assert_eq!(published.len(), N);
    let mut op_a = fed.operator(0).await;
    assert_eq!(outbox_depth(&mut op_a, "node-b").await, Some(N as u64));

    // Start b; kill a once the drain has begun (b holds some).
    let b = spawn(&fed, 1).await;
    let mut op_b = fed.operator(1).await;
    let began = eventually(WAIT, || {
        let mut op_b = op_b.clone();
        async move { stored(&mut op_b).await.unwrap_or(0) > 0 }
    })
    .await;
    let depth = outbox_depth(&mut op_a, "node-b").await;
    a.kill9();
    assert!(began, "a never started draining to b");
    eprintln!("node-a killed with outbox depth {depth:?} of {N}");

    let a = spawn(&fed, 0).await;
    await_settled(&fed, 0, 1, N as u64, (&a, &b)).await;

    op_b = fed.operator(1).await;
    let expected: HashSet<String> = published.into_iter().collect();
    assert_exactly(&all_alert_ids(&mut op_b).await, &expected, "node-b");
    let mut op_a = fed.operator(0).await;
    assert_exactly(&all_alert_ids(&mut op_a).await, &expected, "node-a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_killed_while_publishing_delivers_every_accepted_alert_once() {
    const N: usize = 3000;
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let mut a = spawn(&fed, 0).await;
    let b = spawn(&fed, 1).await;

    let done = Arc::new(AtomicUsize::new(0));
    let publisher = publish(fed.operator(0).await, N, "pub-kill", true, done.clone());
    let halfway = eventually(WAIT * 3, || {
        let done = done.clone();
        async move { done.load(Ordering::SeqCst) >= N / 2 }
    })
    .await;
    let mut op_a = fed.operator(0).await;
    let depth = outbox_depth(&mut op_a, "node-b").await;
    a.kill9();
    assert!(halfway, "publishing stalled; log:\n{}", a.log_tail());
    let acked = tokio::time::timeout(WAIT, publisher)
        .await
        .expect("publishers stop once a is gone")
        .expect("publisher");
    eprintln!(
        "node-a killed after {} accepted publishes, outbox depth {depth:?}",
        acked.len()
    );

    let a = spawn(&fed, 0).await;
    // Calls cut by the kill may or may not have been stored: whatever a holds
    // after the restart must reach b, once; everything acknowledged must be there.
    op_a = fed.operator(0).await;
    let on_a = all_alert_ids(&mut op_a).await;
    let held: HashSet<String> = on_a.iter().cloned().collect();
    assert_eq!(held.len(), on_a.len(), "node-a: a message id appears twice");
    for id in &acked {
        assert!(held.contains(id), "accepted alert {id} lost by node-a");
    }
    await_settled(&fed, 0, 1, held.len() as u64, (&a, &b)).await;
    let mut op_b = fed.operator(1).await;
    assert_exactly(&all_alert_ids(&mut op_b).await, &held, "node-b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_alert_survives_kill_right_after_publish() {
    let fed = Fed::new(&["node-a", "node-b"], &[(0, 1)]);
    let mut ids = Vec::new();
    // b stays down: the alerts also have to survive in a's outbox.
    for round in 0..3 {
        let mut a = spawn(&fed, 0).await;
        let mut op = fed.operator(0).await;
        let id = op
            .publish_alert(PublishAlertRequest {
                alert: Some(green_alert(&format!("kill right after {round}"))),
                recipients: vec![],
                ..Default::default()
            })
            .await
            .expect("PublishAlert")
            .into_inner()
            .message_id;
        a.kill9();
        ids.push(id);

        let _a = spawn(&fed, 0).await;
        let mut op = fed.operator(0).await;
        for id in &ids {
            let m = op
                .get_message(GetMessageRequest {
                    message_id: id.clone(),
                })
                .await
                .unwrap_or_else(|e| panic!("accepted alert {id} lost after kill -9: {e}"));
            assert_eq!(m.into_inner().origin, "node-a");
        }
        assert_eq!(stored(&mut op).await, Some(ids.len() as u64));
        assert_eq!(
            outbox_depth(&mut op, "node-b").await,
            Some(ids.len() as u64)
        );
    }

    let a = spawn(&fed, 0).await;
    let b = spawn(&fed, 1).await;
    await_settled(&fed, 0, 1, ids.len() as u64, (&a, &b)).await;
    let mut op_b = fed.operator(1).await;
    let expected: HashSet<String> = ids.into_iter().collect();
    assert_exactly(&all_alert_ids(&mut op_b).await, &expected, "node-b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_mid_stream_forwards_everything_exactly_once() {
    const N: usize = 2000;
    // a - b - c: b stores what a pushes and queues it for c in one commit.
    let fed = Fed::line();
    let a = spawn(&fed, 0).await;
    let mut b = spawn(&fed, 1).await;
    let c = spawn(&fed, 2).await;

    let done = Arc::new(AtomicUsize::new(0));
    let publisher = publish(fed.operator(0).await, N, "relay-kill", false, done);
    let op_c = fed.operator(2).await;
    let relaying = eventually(WAIT, || {
        let mut op_c = op_c.clone();
        async move { stored(&mut op_c).await.unwrap_or(0) >= 50 }
    })
    .await;
    b.kill9();
    assert!(relaying, "b never relayed to c; log:\n{}", b.log_tail());

    let published = tokio::time::timeout(WAIT * 3, publisher)
        .await
        .expect("publishing finishes")
        .expect("publisher");
    assert_eq!(published.len(), N);

    let b = spawn(&fed, 1).await;
    await_settled(&fed, 0, 1, N as u64, (&a, &b)).await;
    await_settled(&fed, 1, 2, N as u64, (&b, &c)).await;

    let expected: HashSet<String> = published.into_iter().collect();
    let mut op_b = fed.operator(1).await;
    assert_exactly(&all_alert_ids(&mut op_b).await, &expected, "node-b");
    let mut op_c = fed.operator(2).await;
    assert_exactly(&all_alert_ids(&mut op_c).await, &expected, "node-c");
    // What b owes a (c's receipts for a's alerts, travelling back hop by hop)
    // drains; a's own alerts never go back to it (checked exactly below).
    let drained = eventually(WAIT, || {
        let mut op_b = op_b.clone();
        async move { outbox_depth(&mut op_b, "node-a").await == Some(0) }
    })
    .await;
    assert!(
        drained,
        "b's outbox for a never drained: {:?}\n--- b log:\n{}",
        outbox_depth(&mut op_b, "node-a").await,
        b.log_tail()
    );
    let mut op_a = fed.operator(0).await;
    assert_exactly(&all_alert_ids(&mut op_a).await, &expected, "node-a");
}
