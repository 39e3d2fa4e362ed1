//! `certfed demo`: a real local federation of five partner nodes on loopback
//! (fresh temporary PKI, real TLS, real SQLite, in-process nodes) playing a short
//! scenario after the EEAS cyber-incident exercise (seed 004): an intrusion in one
//! partner's energy sector escalates to transport across borders, and alerts
//! spread through relays to partners with no direct link to the origin. It
//! prints a timeline of who knew what, and when.
use crate::localfed::Fed;
use crate::proto::v1::*;
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Partner nodes and their bilateral links (not a full mesh: most pairs talk
/// only through relays).
const NODES: [&str; 5] = ["cert-ua", "cert-pl", "cert-de", "cert-ee", "cert-eu"];
const LINKS: [(usize, usize); 5] = [(0, 1), (1, 2), (1, 3), (2, 4), (3, 4)];

#[derive(Clone)]
struct Seen {
    node: String,
    at: Duration,
    message_id: String,
    title: String,
    path: Vec<String>,
}

fn alert(
    title: &str,
    desc: &str,
    sev: Severity,
    sectors: &[Nis2Sector],
    countries: &[&str],
    ind: &[(IndicatorType, &str)],
) -> Alert {
    Alert {
        title: title.into(),
        description: desc.into(),
        tlp: Tlp::Green as i32,
        severity: sev as i32,
        rsit_class: RsitClass::Intrusions as i32,
        sectors: sectors.iter().map(|s| *s as i32).collect(),
        affected_countries: countries.iter().map(|c| c.to_string()).collect(),
        indicators: ind
            .iter()
            .map(|(t, v)| Indicator {
                r#type: *t as i32,
                value: v.to_string(),
                comment: String::new(),
            })
            .collect(),
        ..Default::default()
    }
}

pub async fn run() -> anyhow::Result<()> {
    let t0 = Instant::now();
    let fed = Fed::new(&NODES, &LINKS);
    println!(
        "certfed demo: {} partner nodes on loopback, fresh PKI in {}",
        NODES.len(),
        fed.pki.dir.path().display()
    );
    for (a, b) in LINKS {
        println!("  link {:<8} <-> {}", NODES[a], NODES[b]);
    }
    let mut running = Vec::new();
    for i in 0..NODES.len() {
        running.push(fed.try_start(i).await?);
    }
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let mut watchers = Vec::new();
    for (i, name) in NODES.iter().enumerate() {
        let mut op = fed.operator(i).await;
        let mut stream = op
            .watch(WatchRequest {
                filter: None,
                after_cursor: 0,
                from_start: true,
            })
            .await?
            .into_inner();
        let seen = seen.clone();
        let name = name.to_string();
        watchers.push(tokio::spawn(async move {
            while let Some(Ok(ev)) = stream.next().await {
                let m = ev.message.unwrap_or_default();
                let s = Seen {
                    node: name.clone(),
                    at: t0.elapsed(),
                    message_id: m.message_id.clone(),
                    title: m.alert.map(|a| a.title).unwrap_or_default(),
                    path: m.path.iter().map(|h| h.node_id.clone()).collect(),
                };
                println!(
                    "[{:>7.3}s] {:<8} knows   {:<46} path {}",
                    s.at.as_secs_f64(),
                    s.node,
                    format!("\"{}\"", s.title),
                    if s.path.first() == Some(&s.node) {
                        "(its own alert)".to_string()
                    } else {
                        format!("{} -> {}", s.path.join(" -> "), s.node)
                    }
                );
                seen.lock().expect("lock").push(s);
            }
        }));
    }

    let publish = |i: usize, a: Alert| {
        let fed = &fed;
        async move {
            let mut op = fed.operator(i).await;
            println!(
                "[{:>7.3}s] {:<8} PUBLISHES {} {} \"{}\"",
                t0.elapsed().as_secs_f64(),
                NODES[i],
                crate::domain::alert::tlp_label(Tlp::try_from(a.tlp).unwrap_or(Tlp::Unspecified)),
                crate::domain::alert::severity_label(
                    Severity::try_from(a.severity).unwrap_or(Severity::Unspecified)
                ),
                a.title
            );
            op.publish_alert(PublishAlertRequest {
                alert: Some(a),
                recipients: vec![],
            })
            .await
            .map(|r| r.into_inner().message_id)
        }
    };

    // 1. Energy-sector intrusion at the origin partner.
    let first = publish(
        0,
        alert(
            "Intrusion at a national power grid operator",
            "Wiper activity on SCADA jump hosts at a transmission system operator.",
            Severity::High,
            &[Nis2Sector::Energy],
            &["UA"],
            &[
                (IndicatorType::Ip, "203.0.113.45"),
                (IndicatorType::Domain, "update-scada.example"),
            ],
        ),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(700)).await;
    // 2. The origin updates it: escalation across borders.
    let mut upd = alert(
        "UPDATE: grid intrusion spreads to cross-border interconnectors",
        "Same actor seen at an interconnector operator; severity raised.",
        Severity::Critical,
        &[Nis2Sector::Energy],
        &["UA", "PL"],
        &[
            (IndicatorType::Ip, "203.0.113.45"),
            (
                IndicatorType::Sha256,
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            ),
        ],
    );
    upd.revision = Revision::Update as i32;
    upd.supersedes = first;
    publish(0, upd).await?;
    tokio::time::sleep(Duration::from_millis(700)).await;
    // 3. A neighbour sees the same actor in transport.
    publish(
        1,
        alert(
            "Rail signalling disruption linked to the grid intrusion",
            "Same infrastructure contacted from a rail operator's network.",
            Severity::Critical,
            &[Nis2Sector::Transport],
            &["PL", "DE"],
            &[
                (IndicatorType::Domain, "update-scada.example"),
                (IndicatorType::Cve, "CVE-2024-3400"),
            ],
        ),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    for n in running {
        n.shutdown().await?;
    }
    for w in watchers {
        let _ = w.await;
    }

    // Who knew what, and when.
    let seen = seen.lock().expect("lock").clone();
    let mut ids: Vec<(String, String)> = Vec::new();
    for s in &seen {
        if !ids.iter().any(|(id, _)| id == &s.message_id) {
            ids.push((s.message_id.clone(), s.title.clone()));
        }
    }
    println!("\nWho knew what, and when (seconds since the demo started):");
    print!("{:<48}", "alert");
    for n in NODES {
        print!(" {:>8}", n);
    }
    println!();
    let mut complete = true;
    for (id, title) in &ids {
        let short: String = title.chars().take(46).collect();
        print!("{:<48}", short);
        for n in NODES {
            match seen.iter().find(|s| &s.message_id == id && s.node == n) {
                Some(s) => print!(" {:>8.3}", s.at.as_secs_f64()),
                None => {
                    complete = false;
                    print!(" {:>8}", "-")
                }
            }
        }
        println!();
    }
    if !complete || ids.len() != 3 {
        anyhow::bail!("not every partner received every alert");
    }
    println!(
        "\nAll {} partners received all {} alerts, each exactly once, through relays where no direct link exists.",
        NODES.len(),
        ids.len()
    );
    Ok(())
}
