//! `certfed bench --attachments`: evidence through one relay.
//!
//! The line node-a – node-b – node-c: node-b runs as a real `certfed serve`
//! process (the relay, which fetches and passes on ciphertext), node-a and
//! node-c run in this process. An operator uploads one TLP:AMBER attachment
//! of `--attachment-mib` MiB to node-a for node-c; the benchmark measures the
//! time from the end of the upload until node-c holds the attachment complete
//! and verified (b fetches it from a, c from b: two transfers in series), the
//! upload throughput at the origin (encrypting and writing), node-b's peak
//! resident memory (`VmRSS` sampled every 100 ms and the kernel's `VmHWM`),
//! and the delivery latency of CRITICAL alerts published from a to c during
//! the transfer against the same alerts with the line idle.
//!
//! Budgets from issue 16: at least 100 MB/s through the relay on loopback,
//! node-b's RSS under 64 MiB throughout.
use crate::app::bench::memory::{proc_status_mib, spawn};
use crate::app::localfed::Fed;
use crate::proto::v1::operator_client::OperatorClient;
use crate::proto::v1::*;
use anyhow::bail;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const RSS_BUDGET_MIB: f64 = 64.0;
const THROUGHPUT_TARGET_MB_S: f64 = 100.0;

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Publishes a CRITICAL AMBER alert from a to c; returns the time until c holds it.
async fn alert_latency(
    op_a: &mut OperatorClient<Channel>,
    op_c: &mut OperatorClient<Channel>,
    n: usize,
) -> anyhow::Result<f64> {
    let mut alert = super::kib_alert(n);
    alert.tlp = Tlp::Amber as i32;
    alert.severity = Severity::Critical as i32;
    let t = Instant::now();
    let id = op_a
        .publish_alert(PublishAlertRequest {
            alert: Some(alert),
            recipients: vec!["node-c".into()],
            ..Default::default()
        })
        .await?
        .into_inner()
        .message_id;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if op_c
            .get_message(GetMessageRequest {
                message_id: id.clone(),
            })
            .await
            .is_ok()
        {
            return Ok(t.elapsed().as_secs_f64() * 1000.0);
        }
        if Instant::now() > deadline {
            bail!("alert {id} did not reach node-c within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

pub async fn run(mib: u64, json: bool) -> anyhow::Result<()> {
    let size = mib * 1024 * 1024;
    if !json {
        eprintln!(
            "certfed bench --attachments: a {mib} MiB TLP:AMBER attachment from node-a to node-c through node-b (a process) ..."
        );
    }
    let mut fed = Fed::new(&["node-a", "node-b", "node-c"], &[(0, 1), (1, 2)]).sqlite();
    let limit = format!(
        "max_attachment_bytes = {0}\neager_attachment_bytes = {0}",
        size.max(64 << 20)
    );
    for spec in &mut fed.specs {
        spec.extra = limit.clone();
    }
    let a = fed.start(0).await;
    let c = fed.start(2).await;
    let mut node_b = spawn(&fed, 1).await?;
    let pid = node_b.pid();
    let mut op_a = fed.operator(0).await;
    let mut op_c = fed.operator(2).await;

    // Idle alert latency (the line is up once the first alert arrives).
    alert_latency(&mut op_a, &mut op_c, 0).await?;
    let mut idle = Vec::new();
    for i in 1..=10 {
        idle.push(alert_latency(&mut op_a, &mut op_c, i).await?);
    }

    // b's resident memory, sampled throughout.
    let peak_kib = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak_kib, stop, pid) = (peak_kib.clone(), stop.clone(), pid.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(m) = proc_status_mib(&pid, "VmRSS") {
                    peak_kib.fetch_max((m * 1024.0) as u64, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // Upload: pseudo-random content generated piece by piece (never whole).
    let (tx, rx) = tokio::sync::mpsc::channel::<PublishUpload>(4);
    let mut req = PublishAlertRequest {
        alert: Some(super::kib_alert(1_000_000)),
        recipients: vec!["node-c".into()],
        ..Default::default()
    };
    if let Some(a) = req.alert.as_mut() {
        a.tlp = Tlp::Amber as i32;
    }
    tx.send(PublishUpload {
        frame: Some(publish_upload::Frame::Start(PublishUploadStart {
            request: Some(req),
            attachments: vec![Attachment {
                name: "bench.pcap".into(),
                size,
                ..Default::default()
            }],
        })),
    })
    .await?;
    tokio::spawn(async move {
        let mut left = size;
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        while left > 0 {
            let n = left.min(1 << 20) as usize;
            let mut piece = vec![0u8; n];
            for w in piece.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let b = x.to_le_bytes();
                w.copy_from_slice(&b[..w.len()]);
            }
            left -= n as u64;
            let frame = PublishUpload {
                frame: Some(publish_upload::Frame::Data(AttachmentData {
                    index: 0,
                    data: piece,
                })),
            };
            if tx.send(frame).await.is_err() {
                return;
            }
        }
    });
    let t0 = Instant::now();
    let id = op_a
        .publish_alert_with_attachments(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner()
        .message_id;
    let upload_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();

    // CRITICAL alerts during the transfer.
    let mut busy = Vec::new();
    let mut k = 100;
    let transfer_s = loop {
        let r = op_c
            .list_attachments(ListAttachmentsRequest {
                message_id: id.clone(),
            })
            .await;
        if r.as_ref().is_ok_and(|r| {
            r.get_ref()
                .attachments
                .iter()
                .all(|s| s.state == AttachmentState::Available as i32)
        }) {
            break t1.elapsed().as_secs_f64();
        }
        if t1.elapsed() > Duration::from_secs(600) {
            bail!(
                "node-c did not get the attachment within 600 s:\n{}",
                node_b.log_tail()
            );
        }
        if busy.len() < 50 {
            k += 1;
            busy.push(alert_latency(&mut op_a, &mut op_c, k).await?);
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let hwm = proc_status_mib(&pid, "VmHWM").unwrap_or(0.0);
    let peak = (peak_kib.load(Ordering::Relaxed) as f64 / 1024.0).max(hwm);
    let mb = size as f64 / 1e6;
    let through = mb / transfer_s;
    let upload_rate = mb / upload_s;
    let _ = node_b.terminate().await;
    drop((a, c));
    let out = serde_json::json!({
        "attachment_mib": mib,
        "attachment_upload_mb_per_s": round1(upload_rate),
        "attachment_relay_mb_per_s": round1(through),
        "attachment_relay_seconds": round1(transfer_s),
        "attachment_relay_peak_rss_mib": round1(peak),
        "attachment_alert_idle_p50_ms": round1(median(idle)),
        "attachment_alert_during_transfer_p50_ms": round1(median(busy.clone())),
        "attachment_alert_during_transfer_max_ms": round1(busy.iter().copied().fold(0.0, f64::max)),
        "attachment_alerts_during_transfer": busy.len(),
        "attachment_rss_within_budget": peak < RSS_BUDGET_MIB,
        "attachment_throughput_target_met": through >= THROUGHPUT_TARGET_MB_S,
    });
    if json {
        println!("{out}");
    } else {
        println!("attachment through one relay (a → b → c, AMBER, {mib} MiB)");
        println!("  upload at the origin           {:>8.1} MB/s", upload_rate);
        println!(
            "  a → b → c until verified at c  {:>8.1} MB/s  ({:.1} s; target ≥ {THROUGHPUT_TARGET_MB_S} MB/s)",
            through, transfer_s
        );
        println!(
            "  node-b peak RSS                {peak:>8.1} MiB  (budget < {RSS_BUDGET_MIB} MiB)"
        );
        println!(
            "  CRITICAL alert a → c, idle     {:>8.1} ms  (p50)",
            out["attachment_alert_idle_p50_ms"]
        );
        println!(
            "  … during the transfer          {:>8.1} ms  (p50 of {}, max {} ms)",
            out["attachment_alert_during_transfer_p50_ms"],
            busy.len(),
            out["attachment_alert_during_transfer_max_ms"]
        );
    }
    Ok(())
}
