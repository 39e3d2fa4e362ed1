//! `certfed bench --disk`: the disk a node's store takes per message, and how
//! retention bounds it.
//!
//! The line node-a – node-b – node-c, b and c started in this process; this
//! process plays node-a and pushes N signed 1 KiB GREEN alerts to b over one
//! Push stream. b stores each (a relay: message, chain of custody, a delivery
//! row for c) and forwards it to c (a recipient). Measured once c holds all N:
//! each store's files (database + WAL) and the bytes in use. Then a retention
//! pass as if `storage.retention_days` had gone by purges everything on both
//! (freed pages stay in the file, free for reuse), and N fresh alerts are
//! pushed again: the files must not grow by more than a few percent, which
//! is how retention bounds the disk a node uses.
//!
//! Nothing here is a budget check except that refill reuses freed space.
use crate::app::localfed::Fed;
use crate::proto::v1::*;
use crate::service::node::Node;
use crate::storage::Space;
use anyhow::{Context, bail};
use std::time::{Duration, Instant};

/// Largest growth of the files on refill after a purge, in percent.
const REFILL_GROWTH_BUDGET_PCT: f64 = 5.0;

fn mib(bytes: u64) -> f64 {
    ((bytes as f64 / (1024.0 * 1024.0)) * 10.0).round() / 10.0
}

fn per_msg(bytes: u64, n: usize) -> u64 {
    bytes / n.max(1) as u64
}

/// Pushes `n` fresh signed 1 KiB alerts to node 1 as node-a, signed on a
/// thread of its own; waits until every one is acknowledged as accepted.
async fn push_alerts(fed: &Fed, n: usize, from: usize) -> anyhow::Result<f64> {
    let mut signed = super::SignedStream::start(fed, "node-a", n, from)?;
    let mut client =
        crate::app::localfed::federation_client(&fed.pki, &fed.addr(1), "node-a", Some("node-b"))
            .await;
    let started = Instant::now();
    let mut acks = client
        .push(tokio_stream::wrappers::ReceiverStream::new(signed.frames()))
        .await
        .context("push stream")?
        .into_inner();
    let mut accepted = 0usize;
    while accepted < n {
        let Some(ack) = acks.message().await? else {
            bail!("push stream ended after {accepted} acks");
        };
        if ack.outcome != PushOutcome::Accepted as i32 {
            bail!("frame {} not accepted: {}", ack.seq, ack.reason);
        }
        accepted += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    signed.finish()?;
    Ok(seconds)
}

/// Waits until `node` holds `n` messages (receipts not counted).
async fn until_holds(node: &Node, n: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let held = node.store.message_count().await?;
        if held >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{} holds {held} of {n} messages after an hour", node.id);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn run(messages: usize, json: bool) -> anyhow::Result<()> {
    let say = |s: String| {
        if !json {
            eprintln!("{s}");
        }
    };
    say(format!(
        "certfed bench --disk: {messages} signed 1 KiB alerts pushed to node-b, relayed to node-c; purge; refill ..."
    ));
    // Measures SQLite files (and the process's memory on them) whatever the
    // test environment's backend.
    let fed = Fed::new(&["node-a", "node-b", "node-c"], &[(0, 1), (1, 2)]).sqlite();
    let b = fed.try_start(1).await?;
    let c = fed.try_start(2).await?;

    let seconds = push_alerts(&fed, messages, 0).await?;
    until_holds(&c.node, messages as u64).await?;
    say(format!("  filled in {seconds:.1} s"));
    let full_b: Space = b.node.store.space().await?;
    let full_c: Space = c.node.store.space().await?;

    // A pass as if the default retention (plus a day) had gone by.
    let later = crate::service::now_ms()
        + i64::try_from(b.node.cfg.storage.retention_for(Tlp::Green).as_millis())?
        + 86_400_000;
    let started = Instant::now();
    let (pb, pc) = tokio::join!(
        crate::service::retention::purge_once(&b.node, later),
        crate::service::retention::purge_once(&c.node, later)
    );
    let (pb, pc) = (pb?, pc?);
    let purge_seconds = started.elapsed().as_secs_f64();
    say(format!(
        "  purged {} + {} messages in {purge_seconds:.1} s",
        pb.messages, pc.messages
    ));
    let purged_b = b.node.store.space().await?;
    let purged_c = c.node.store.space().await?;

    let seconds2 = push_alerts(&fed, messages, messages).await?;
    until_holds(&c.node, messages as u64).await?;
    say(format!("  refilled in {seconds2:.1} s"));
    let refill_b = b.node.store.space().await?;
    let refill_c = c.node.store.space().await?;
    b.shutdown().await?;
    c.shutdown().await?;

    let growth = |before: Space, after: Space| {
        (after.file_bytes as f64 / before.file_bytes.max(1) as f64 - 1.0) * 100.0
    };
    let (grow_b, grow_c) = (growth(full_b, refill_b), growth(full_c, refill_c));
    let used = |s: Space| s.used_bytes();
    if json {
        let v = serde_json::json!({
            "disk_messages": messages,
            "disk_relay_bytes_per_msg": per_msg(used(full_b), messages),
            "disk_recipient_bytes_per_msg": per_msg(used(full_c), messages),
            "disk_relay_file_mib": mib(full_b.file_bytes),
            "disk_recipient_file_mib": mib(full_c.file_bytes),
            "disk_purged_messages": pb.messages + pc.messages,
            "disk_purge_seconds": (purge_seconds * 10.0).round() / 10.0,
            "disk_relay_free_after_purge_mib": mib(purged_b.free_bytes),
            "disk_recipient_free_after_purge_mib": mib(purged_c.free_bytes),
            "disk_relay_refill_growth_pct": (grow_b * 10.0).round() / 10.0,
            "disk_recipient_refill_growth_pct": (grow_c * 10.0).round() / 10.0,
        });
        println!("{v}");
    } else {
        println!("{:<52} {:>12}", "metric", "value");
        println!("{:<52} {:>12}", "messages (signed 1 KiB alerts)", messages);
        println!(
            "{:<52} {:>12}",
            "relay node-b: bytes per message in use",
            per_msg(used(full_b), messages)
        );
        println!(
            "{:<52} {:>12}",
            "recipient node-c: bytes per message in use",
            per_msg(used(full_c), messages)
        );
        println!(
            "{:<52} {:>12.1}",
            "relay node-b: files MiB (db + wal)",
            mib(full_b.file_bytes)
        );
        println!(
            "{:<52} {:>12.1}",
            "recipient node-c: files MiB (db + wal)",
            mib(full_c.file_bytes)
        );
        println!(
            "{:<52} {:>12.1}",
            "purge of both stores, seconds", purge_seconds
        );
        println!(
            "{:<52} {:>12.1}",
            "relay node-b: free MiB after purge",
            mib(purged_b.free_bytes)
        );
        println!(
            "{:<52} {:>12.1}",
            "relay node-b: file growth on refill, %", grow_b
        );
        println!(
            "{:<52} {:>12.1}",
            "recipient node-c: file growth on refill, %", grow_c
        );
    }
    if grow_b.max(grow_c) > REFILL_GROWTH_BUDGET_PCT {
        bail!(
            "the files grew by {:.1} % when refilled after a purge (budget {REFILL_GROWTH_BUDGET_PCT} %): freed space is not reused",
            grow_b.max(grow_c)
        );
    }
    Ok(())
}
