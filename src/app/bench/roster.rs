//! `certfed bench --roster [N]`: how long a signed roster takes to reach
//! and be applied by every node. N in-process nodes (real PKI, real TLS,
//! real stores on disk) in a ring with chords, started from roster v1
//! (stewards 2-of-3); v2 is published on one node and flooded; for every
//! node, the time from the publish to the moment it applied v2 (seen
//! through its own roster watch, so nothing is polled).
//!
//! Invariants: every node must apply v2 within the deadline, or the bench
//! fails naming the nodes that did not; nothing here is timed in a test.
use crate::app::localfed::{Fed, write_config};
use crate::domain::keys::public_from_pem;
use crate::domain::roster::{self, draft};
use crate::proto::v1::{MemberKey, PublishRosterRequest, RosterMember, Steward};
use anyhow::Context;
use prost::Message;
use std::time::{Duration, Instant};

/// How long every node has to apply the new roster.
const DEADLINE: Duration = Duration::from_secs(120);

/// The ring, plus a chord from every even node to the node N/3 ahead.
fn topology(n: usize) -> Vec<(usize, usize)> {
    let mut edges: Vec<(usize, usize)> = (0..n).map(|i| (i, (i + 1) % n)).collect();
    if n > 6 {
        for i in (0..n).step_by(2) {
            let j = (i + n / 3) % n;
            if !edges.contains(&(i, j)) && !edges.contains(&(j, i)) && i != j {
                edges.push((i, j));
            }
        }
    }
    edges
}

pub async fn run(nodes: usize, json: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        (3..=100).contains(&nodes),
        "--roster: between 3 and 100 nodes"
    );
    let ids: Vec<String> = (0..nodes).map(|i| format!("node-{i:02}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let fed = Fed::new(&id_refs, &topology(nodes));
    let now = crate::service::now_ms();
    let stewards: Vec<_> = (0..3)
        .map(|_| crate::pki::new_signing_key())
        .collect::<anyhow::Result<_>>()?;
    let steward_list = stewards
        .iter()
        .enumerate()
        .map(|(i, k)| {
            Ok(Steward {
                id: format!("s{}", i + 1),
                public_key: public_from_pem(&k.public_pem)
                    .map_err(anyhow::Error::msg)?
                    .as_bytes()
                    .to_vec(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ca = crate::transport::tls::load_certs(&fed.pki.ca_path())
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .into_iter()
        .map(|c| c.as_ref().to_vec())
        .collect::<Vec<_>>();
    let mut v1 = draft::new("bench-fed", steward_list, 2, now - 60_000, now + 86_400_000)
        .map_err(anyhow::Error::msg)?;
    for id in &ids {
        let pem = std::fs::read_to_string(fed.pki.path(&format!("{id}.sign.pub")))?;
        let vk = public_from_pem(&pem).map_err(anyhow::Error::msg)?;
        draft::add_member(
            &mut v1,
            RosterMember {
                id: id.clone(),
                signing_keys: vec![MemberKey {
                    public_key: vk.as_bytes().to_vec(),
                    not_before: None,
                    not_after: None,
                }],
                tls_cas: ca.clone(),
                ..Default::default()
            },
        )
        .map_err(anyhow::Error::msg)?;
    }
    let sign = |r: &crate::proto::v1::Roster| -> anyhow::Result<Vec<u8>> {
        let mut s = draft::unsigned(r);
        for k in &stewards[..2] {
            roster::sign(&mut s, &crate::pki::parse_signing_key(&k.private_pem)?);
        }
        Ok(s.encode_to_vec())
    };
    std::fs::write(fed.pki.path("roster-v1.roster"), roster::armor(&sign(&v1)?))?;
    let mut running = Vec::new();
    for (i, spec) in fed.specs.iter().enumerate() {
        let path = write_config(&fed.pki, spec, &[], &fed.data_dir(i));
        let mut text = std::fs::read_to_string(&path)?;
        text.push_str("\n[roster]\nfile = \"roster-v1.roster\"\n");
        std::fs::write(&path, text)?;
        let cfg = crate::config::Config::load(&path)?;
        running.push(crate::app::start(crate::app::prepare(cfg)?).await?);
    }
    // Let the links come up before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let v2 = draft::next(&v1, crate::service::now_ms(), now + 86_400_000);
    let bytes = sign(&v2)?;
    let watches: Vec<_> = running.iter().map(|n| n.node.subscribe_roster()).collect();
    let mut op = fed.operator(0).await;
    let started = Instant::now();
    op.publish_roster(PublishRosterRequest {
        signed_roster: bytes,
    })
    .await
    .context("publishing v2 on node-00")?;
    let publish_ms = started.elapsed().as_secs_f64() * 1000.0;
    let waits = watches.into_iter().map(|mut w| async move {
        let seen = tokio::time::timeout(DEADLINE, w.wait_for(|v| *v >= 2)).await;
        seen.ok()
            .and_then(Result::ok)
            .map(|_| started.elapsed().as_secs_f64() * 1000.0)
    });
    let times = futures::future::join_all(waits).await;
    let missing: Vec<&str> = times
        .iter()
        .zip(&ids)
        .filter(|(t, _)| t.is_none())
        .map(|(_, id)| id.as_str())
        .collect();
    for n in running {
        n.shutdown().await?;
    }
    anyhow::ensure!(
        missing.is_empty(),
        "roster v2 not applied within {DEADLINE:?} by {}",
        missing.join(", ")
    );
    let mut t: Vec<f64> = times.into_iter().flatten().collect();
    t.sort_by(f64::total_cmp);
    let p50 = t[t.len() / 2];
    let max = t[t.len() - 1];
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?").to_string();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "phase": "roster",
                "nodes": nodes,
                "edges": topology(nodes).len(),
                "publish_ms": publish_ms,
                "applied_p50_ms": p50,
                "applied_max_ms": max,
                "loadavg_1m": load,
            })
        );
    } else {
        println!(
            "roster apply across {nodes} nodes ({} links), load {load}",
            topology(nodes).len()
        );
        println!("  PublishRoster on node-00 (applied there)  {publish_ms:9.1} ms");
        println!("  applied by every node: p50 {p50:9.1} ms   max {max:9.1} ms");
    }
    Ok(())
}
