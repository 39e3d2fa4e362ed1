//! `certfed bench --reconcile`: what set reconciliation costs between two
//! nodes that hold a large shared history and differ by a few messages.
//!
//! Members node-a, node-b and node-c; this process plays node-c. Fill: a and
//! b run in this process, each linked only to c, and c pushes N signed 1 KiB
//! GREEN broadcasts (creation times spread evenly over the last 20 days) to
//! both over Push streams — to b all but M chosen at random (seeded). Neither
//! forwards them (c is their only peer). Then both stop, the link a – b is
//! added to their configurations, and both start again as real `certfed
//! serve` processes: when the link comes up, b reconciles with a, a queues
//! what b lacks in its outbox, and the link delivers it as usual.
//!
//! Measured: the time from starting b until b holds all N (its startup, the
//! reconciliation and the delivery of the M messages), M divided by it
//! (items per second, to compare with the fill's normal ingest speed: pushes
//! accepted per second by both stores together) and the CPU time both
//! nodes used meanwhile (a loaded machine stretches the first, not the
//! second), the reconciliation's
//! rounds, bytes both ways and difference found (b's `ListPeers`), then one
//! more reconciliation once in sync (`ReconcilePeer`), then the speed of
//! normal traffic over the same link: node-c pushes M fresh broadcasts to a,
//! which relays them to b as it relays any message — a custody record signed
//! by a and checked by b, the per-message work of a reconciled message
//! without the rounds (`reconcile_relay_items_per_second`, the "normal
//! ingest speed" the delivery is compared with), and the resident
//! memory of both processes sampled every 250 ms (plus the kernel's
//! `VmHWM`); the nodes run as the shipped systemd unit runs them, with
//! `MALLOC_ARENA_MAX=2` (or the value in this process's environment). Only
//! b starts reconciliations (a has `reconcile.window_days = 0`: it
//! answers, never starts), so the figures are those of one exchange;
//! on a real link both sides start one, each costing about as much.
//!
//! Budgets (the run fails when one is missed): peak RSS of each node at most
//! 100 MiB, b holds all N afterwards, in sync costs one round trip of at
//! most 1 KiB, and with at most 1,000 missing the exchange costs at most
//! 1 MB. Times are printed, not checked (they depend on the machine's load).
use super::memory::{db_mib, proc_cpu_seconds, proc_status_mib, spawn_as_unit};
use crate::app::localfed::Fed;
use crate::proto::v1::*;
use anyhow::{Context, bail};
use rand::SeedableRng;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Resident memory budget of each node.
const RSS_BUDGET_MIB: f64 = 100.0;
/// Reconciliation traffic budget when in sync (one round trip).
const IN_SYNC_BUDGET_BYTES: u64 = 1024;
/// Reconciliation traffic budget with up to 1,000 messages missing.
const SMALL_DIFF_BUDGET_BYTES: u64 = 1_000_000;
/// Creation times are spread over this much of the past.
const SPREAD_MS: i64 = 20 * 86_400_000;
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// How long the nodes get to converge before the run fails.
const CONVERGE_LIMIT: Duration = Duration::from_secs(600);

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

fn mib(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Pushes the frames arriving on `rx` to node `to` as node-c; returns once
/// `expected` are acknowledged as accepted.
async fn push_all(
    fed: &Fed,
    to: usize,
    rx: tokio::sync::mpsc::Receiver<PushFrame>,
    expected: usize,
) -> anyhow::Result<()> {
    let mut client = crate::app::localfed::federation_client(
        &fed.pki,
        &fed.addr(to),
        "node-c",
        Some(&fed.specs[to].id),
    )
    .await;
    let mut acks = client
        .push(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .context("push stream")?
        .into_inner();
    let mut accepted = 0usize;
    while accepted < expected {
        let Some(ack) = acks.message().await? else {
            bail!("push stream ended after {accepted} acks");
        };
        if ack.outcome != PushOutcome::Accepted as i32 {
            bail!("frame {} not accepted: {}", ack.seq, ack.reason);
        }
        accepted += 1;
    }
    Ok(())
}

/// Fills a's store with `messages` broadcasts from node-c and b's with all
/// but `missing` of them; returns the seconds it took.
async fn fill(
    fed: &Fed,
    messages: usize,
    missing: &HashSet<usize>,
    json: bool,
) -> anyhow::Result<f64> {
    let a = fed.try_start(A).await?;
    let b = fed.try_start(B).await?;
    let signer = super::member_signer(fed, "node-c")?;
    let (tx_a, rx_a) = tokio::sync::mpsc::channel::<PushFrame>(super::SIGNED_FEED);
    let (tx_b, rx_b) = tokio::sync::mpsc::channel::<PushFrame>(super::SIGNED_FEED);
    let skip = missing.clone();
    let start_ms = crate::service::now_ms() - SPREAD_MS;
    let step = SPREAD_MS / messages.max(1) as i64;
    let signing = std::thread::Builder::new()
        .name("bench-signer".into())
        .spawn(move || {
            let mut seq_b = 0u64;
            for i in 0..messages {
                let env = super::signed_kib_alert(&signer, i, start_ms + i as i64 * step);
                if !skip.contains(&i) {
                    seq_b += 1;
                    if tx_b
                        .blocking_send(super::origin_frame(seq_b, env.clone()))
                        .is_err()
                    {
                        return None;
                    }
                }
                if tx_a
                    .blocking_send(super::origin_frame(i as u64 + 1, env))
                    .is_err()
                {
                    return None;
                }
                if !json && (i + 1) % 100_000 == 0 {
                    eprintln!("  {:>9} signed and pushed to both", i + 1);
                }
            }
            // Keep the streams open until every ack is in.
            Some((tx_a, tx_b))
        })?;
    let started = Instant::now();
    let (ra, rb) = tokio::join!(
        push_all(fed, A, rx_a, messages),
        push_all(fed, B, rx_b, messages - missing.len())
    );
    ra.context("filling node-a")?;
    rb.context("filling node-b")?;
    let seconds = started.elapsed().as_secs_f64();
    drop(
        signing
            .join()
            .map_err(|_| anyhow::anyhow!("signing thread panicked"))?,
    );
    a.shutdown().await?;
    b.shutdown().await?;
    Ok(seconds)
}

/// Normal traffic over the same link, to compare the delivery with: node-c
/// pushes `count` fresh broadcasts to node-a, which relays them to node-b
/// as it relays any message (a custody record signed by a, checked by b) —
/// the per-message work of a reconciled message, without the rounds.
/// Returns the seconds from the first push until b holds `b_before + count`.
async fn relay(fed: &Fed, count: usize, b_before: u64) -> anyhow::Result<f64> {
    let mut signed = super::SignedStream::start(fed, "node-c", count, 0)?;
    let started = Instant::now();
    push_all(fed, A, signed.frames(), count)
        .await
        .context("pushing the relayed messages to node-a")?;
    signed.finish()?;
    let mut poll = fed.operator(B).await;
    let want = b_before + count as u64;
    loop {
        let n = poll
            .get_node_info(GetNodeInfoRequest {})
            .await
            .map_or(0, |r| r.into_inner().stored_messages);
        if n >= want {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > CONVERGE_LIMIT {
            bail!(
                "node-b holds {n} of {want} after {} s of relayed traffic",
                CONVERGE_LIMIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Peak `VmRSS` of the two node processes, in KiB.
#[derive(Default)]
struct Peaks {
    a_kib: AtomicU64,
    b_kib: AtomicU64,
    stop: AtomicBool,
}

fn sample(peaks: &Arc<Peaks>, pid_a: String, pid_b: String) -> tokio::task::JoinHandle<()> {
    let peaks = peaks.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        while !peaks.stop.load(Ordering::Relaxed) {
            tick.tick().await;
            for (pid, slot) in [(&pid_a, &peaks.a_kib), (&pid_b, &peaks.b_kib)] {
                if let Some(m) = proc_status_mib(pid, "VmRSS") {
                    slot.fetch_max((m * 1024.0) as u64, Ordering::Relaxed);
                }
            }
        }
    })
}

async fn stored(fed: &Fed, i: usize) -> anyhow::Result<u64> {
    let mut op = fed.operator(i).await;
    Ok(op
        .get_node_info(GetNodeInfoRequest {})
        .await
        .with_context(|| format!("GetNodeInfo on {}", fed.specs[i].id))?
        .into_inner()
        .stored_messages)
}

async fn last_reconcile(fed: &Fed, i: usize, peer: &str) -> anyhow::Result<ReconcileView> {
    let mut op = fed.operator(i).await;
    op.list_peers(ListPeersRequest {
        page_size: 0,
        page_token: String::new(),
    })
    .await
    .context("ListPeers")?
    .into_inner()
    .peers
    .into_iter()
    .find(|p| p.peer_id == peer)
    .and_then(|p| p.last_reconcile)
    .with_context(|| format!("{} shows no reconciliation with {peer}", fed.specs[i].id))
}

pub async fn run(messages: usize, missing: usize, json: bool) -> anyhow::Result<()> {
    if missing > messages {
        bail!("--reconcile-missing ({missing}) must not exceed --reconcile-messages ({messages})");
    }
    if !json {
        eprintln!(
            "certfed bench --reconcile: {messages} signed 1 KiB alerts on node-a, node-b missing {missing} of them; filling both stores ..."
        );
    }
    let mut fed = Fed::new(&["node-a", "node-b", "node-c"], &[(A, C), (B, C)]);
    // a answers, never starts; b reconciles when the link comes up, then on request.
    fed.specs[A].extra = "\n[reconcile]\nwindow_days = 0\n".into();
    fed.specs[B].extra = "\n[reconcile]\ninterval_secs = 86400\ntimeout_secs = 600\n".into();
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let skip: HashSet<usize> = rand::seq::index::sample(&mut rng, messages, missing)
        .into_iter()
        .collect();
    let fill_seconds = fill(&fed, messages, &skip, json).await?;
    if !json {
        eprintln!(
            "  filled in {fill_seconds:.1} s; starting node-a and node-b as processes, linked ..."
        );
    }

    let (pa, pb) = (fed.specs[A].port, fed.specs[B].port);
    fed.specs[A].peers.push(("node-b".into(), pb));
    fed.specs[B].peers.push(("node-a".into(), pa));
    // As the shipped systemd unit runs them (MALLOC_ARENA_MAX=2).
    let (mut a, arenas) = spawn_as_unit(&fed, A).await?;
    let peaks = Arc::new(Peaks::default());
    let cpu_a0 = proc_cpu_seconds(&a.pid()).unwrap_or(f64::NAN);
    let started = Instant::now();
    let (mut b, _) = spawn_as_unit(&fed, B).await?;
    let sampler = sample(&peaks, a.pid(), b.pid());
    let expected = messages as u64;
    let mut last_seen = 0;
    let mut last_report = Instant::now();
    // One operator connection for the polling (a handshake every 100 ms
    // would cost node-b CPU the measurement should not include).
    let mut poll = fed.operator(B).await;
    loop {
        let n = poll
            .get_node_info(GetNodeInfoRequest {})
            .await
            .map_or(last_seen, |r| r.into_inner().stored_messages);
        last_seen = n;
        if n >= expected {
            break;
        }
        if !json && last_report.elapsed() > Duration::from_secs(5) {
            last_report = Instant::now();
            let v = last_reconcile(&fed, B, "node-a").await.ok();
            eprintln!(
                "  {:>6.1} s: node-b holds {n} of {expected}; last reconciliation: {}",
                started.elapsed().as_secs_f64(),
                v.map_or("none yet".to_string(), |v| format!(
                    "difference {}, received {}, rounds {}, bytes {} {}",
                    v.difference, v.received, v.rounds, v.bytes, v.error
                ))
            );
        }
        if started.elapsed() > CONVERGE_LIMIT {
            bail!(
                "node-b holds {n} of {expected} after {} s\nnode-a log:\n{}\nnode-b log:\n{}",
                CONVERGE_LIMIT.as_secs(),
                a.log_tail(),
                b.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let converge_seconds = started.elapsed().as_secs_f64();
    // The missing messages delivered per second (b's startup included), and
    // the normal ingest speed to compare with: the fill's accepted pushes per
    // second (two streams, one per store, in parallel).
    let items_per_second = missing as f64 / converge_seconds.max(1e-9);
    let ingest_per_second = (2 * messages - missing) as f64 / fill_seconds.max(1e-9);
    // One link's share of it (two links filled the two stores at once): what
    // the delivery over the one link a - b compares with.
    let ingest_per_link = ingest_per_second / 2.0;
    // CPU both nodes used until then (b from its start, a since b started):
    // on a loaded machine the wall time above waits for CPU, this does not.
    let cpu_a = proc_cpu_seconds(&a.pid()).unwrap_or(f64::NAN) - cpu_a0;
    let cpu_b = proc_cpu_seconds(&b.pid()).unwrap_or(f64::NAN);
    let first = last_reconcile(&fed, B, "node-a").await?;
    // In sync now: one more, on request.
    let mut op_b = fed.operator(B).await;
    let again = op_b
        .reconcile_peer(ReconcilePeerRequest {
            peer_id: "node-a".into(),
            retry_refused: false,
        })
        .await
        .context("ReconcilePeer on node-b")?
        .into_inner()
        .result
        .context("ReconcilePeer answered without a result")?;
    drop(op_b);
    let held_a = stored(&fed, A).await?;
    let held_b = stored(&fed, B).await?;
    // The same number of messages as normal relayed traffic over the link.
    let (relay_cpu0_a, relay_cpu0_b) = (
        proc_cpu_seconds(&a.pid()).unwrap_or(f64::NAN),
        proc_cpu_seconds(&b.pid()).unwrap_or(f64::NAN),
    );
    if !json {
        eprintln!(
            "  converged; now {missing} fresh messages relayed by node-a to node-b as normal traffic ..."
        );
    }
    let relay_seconds = if missing > 0 {
        relay(&fed, missing, held_b).await?
    } else {
        f64::NAN
    };
    let relay_cpu = proc_cpu_seconds(&a.pid()).unwrap_or(f64::NAN) - relay_cpu0_a
        + proc_cpu_seconds(&b.pid()).unwrap_or(f64::NAN)
        - relay_cpu0_b;
    let relay_per_second = missing as f64 / relay_seconds;
    peaks.stop.store(true, Ordering::Relaxed);
    sampler.await?;
    let hwm_a = proc_status_mib(&a.pid(), "VmHWM").unwrap_or(f64::NAN);
    let hwm_b = proc_status_mib(&b.pid(), "VmHWM").unwrap_or(f64::NAN);
    let peak_a = (peaks.a_kib.load(Ordering::Relaxed) as f64 / 1024.0).max(hwm_a);
    let peak_b = (peaks.b_kib.load(Ordering::Relaxed) as f64 / 1024.0).max(hwm_b);
    let db = db_mib(&fed.data_dir(A));
    let exit_b = b.terminate().await?;
    let exit_a = a.terminate().await?;

    if json {
        let v = serde_json::json!({
            "reconcile_messages": messages,
            "reconcile_missing": missing,
            "reconcile_fill_seconds": (fill_seconds * 10.0).round() / 10.0,
            "reconcile_converge_seconds": (converge_seconds * 100.0).round() / 100.0,
            "reconcile_converge_cpu_seconds": ((cpu_a + cpu_b) * 100.0).round() / 100.0,
            "reconcile_items_per_second": items_per_second.round(),
            "reconcile_fill_items_per_second": ingest_per_second.round(),
            "reconcile_fill_items_per_second_per_link": ingest_per_link.round(),
            "reconcile_relay_seconds": (relay_seconds * 100.0).round() / 100.0,
            "reconcile_relay_cpu_seconds": (relay_cpu * 100.0).round() / 100.0,
            "reconcile_relay_items_per_second": relay_per_second.round(),
            "reconcile_rounds": first.rounds,
            "reconcile_bytes": first.bytes,
            "reconcile_difference": first.difference,
            "reconcile_items_received": first.received,
            "reconcile_error": first.error,
            "reconcile_in_sync_rounds": again.rounds,
            "reconcile_in_sync_bytes": again.bytes,
            "reconcile_in_sync_difference": again.difference,
            "reconcile_sender_peak_rss_mib": mib(peak_a),
            "reconcile_receiver_peak_rss_mib": mib(peak_b),
            "reconcile_db_mib": mib(db),
            "reconcile_malloc_arena_max": arenas,
        });
        println!("{v}");
    } else {
        println!(
            "{:<48} {:>12}",
            "metric (node-b reconciles with node-a)", "value"
        );
        println!("{:<48} {:>12}", "messages on node-a", messages);
        println!("{:<48} {:>12}", "missing on node-b", missing);
        println!(
            "{:<48} {:>12.1}",
            "fill seconds (both stores)", fill_seconds
        );
        println!(
            "{:<48} {:>12.2}",
            "seconds to converge (from starting node-b)", converge_seconds
        );
        println!(
            "{:<48} {:>12.2}",
            "CPU seconds of both nodes until then",
            cpu_a + cpu_b
        );
        println!(
            "{:<48} {:>12.0}",
            "missing messages delivered per second", items_per_second
        );
        println!(
            "{:<48} {:>12.0}",
            "normal ingest: fill pushes accepted per second", ingest_per_second
        );
        println!(
            "{:<48} {:>12.0}",
            "  of which per link (two links filled at once)", ingest_per_link
        );
        println!(
            "{:<48} {:>12.0}",
            "normal relayed traffic a -> b per second", relay_per_second
        );
        println!(
            "{:<48} {:>12.2}",
            "  CPU seconds of both nodes for it", relay_cpu
        );
        println!("{:<48} {:>12}", "reconciliation rounds", first.rounds);
        println!(
            "{:<48} {:>12}",
            "reconciliation bytes (both ways)", first.bytes
        );
        println!("{:<48} {:>12}", "difference found", first.difference);
        println!(
            "{:<48} {:>12}",
            "queued by node-a for node-b", first.received
        );
        println!("{:<48} {:>12}", "in sync: rounds", again.rounds);
        println!("{:<48} {:>12}", "in sync: bytes (both ways)", again.bytes);
        println!("{:<48} {:>12.1}", "peak RSS MiB node-a (sender)", peak_a);
        println!("{:<48} {:>12.1}", "peak RSS MiB node-b (receiver)", peak_b);
        println!("{:<48} {:>12.1}", "db size MiB node-a (db + wal + shm)", db);
        println!(
            "{:<48} {:>12}",
            "nodes' MALLOC_ARENA_MAX (as the unit)", arenas
        );
    }

    let mut failures = Vec::new();
    if !first.error.is_empty() {
        failures.push(format!("the reconciliation failed: {}", first.error));
    }
    if !again.error.is_empty() {
        failures.push(format!(
            "the reconciliation in sync failed: {}",
            again.error
        ));
    }
    if held_a != expected || held_b != expected {
        failures.push(format!(
            "node-a holds {held_a}, node-b {held_b}; both should hold {expected}"
        ));
    }
    if first.difference != missing as u64 {
        failures.push(format!(
            "node-b's ListPeers shows a difference of {}, expected {missing}",
            first.difference
        ));
    }
    if first.received != missing as u64 {
        failures.push(format!(
            "node-a queued {} for node-b, expected {missing}",
            first.received
        ));
    }
    if again.rounds > 1 || again.bytes > IN_SYNC_BUDGET_BYTES || again.difference != 0 {
        failures.push(format!(
            "in sync took {} round(s) and {} bytes (difference {}); budget one round trip of at most {IN_SYNC_BUDGET_BYTES} bytes",
            again.rounds, again.bytes, again.difference
        ));
    }
    if missing <= 1000 && first.bytes > SMALL_DIFF_BUDGET_BYTES {
        failures.push(format!(
            "{missing} missing took {} bytes, over the {SMALL_DIFF_BUDGET_BYTES} byte budget",
            first.bytes
        ));
    }
    if peak_a.max(peak_b) > RSS_BUDGET_MIB {
        failures.push(format!(
            "peak RSS {peak_a:.1} MiB (node-a) / {peak_b:.1} MiB (node-b) is over the {RSS_BUDGET_MIB} MiB budget"
        ));
    }
    if !exit_a.success() || !exit_b.success() {
        failures.push(format!(
            "nodes did not exit cleanly on SIGTERM: node-a {exit_a}, node-b {exit_b}"
        ));
    }
    if !failures.is_empty() {
        bail!("reconciliation budget not met: {}", failures.join("; "));
    }
    Ok(())
}
