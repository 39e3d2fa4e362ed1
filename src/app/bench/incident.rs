//! `certfed bench --incident`: what the shared picture and correlation cost on
//! one real node (real TLS, real SQLite on disk, the Operator API).
//!
//! node-a opens an incident on a common ("hot") indicator. Measured:
//!
//! - **correlation** of an arriving alert that carries the hot indicator
//!   (`service::incidents::watch_matches`, what Watch and the counting task
//!   run per arrival), first with an empty history, then after N loose alerts
//!   carrying the same indicator were stored, then after M sightings joined the
//!   incident: the first two must cost the same (the member index,
//!   `Storage::keyed_incidents`, reads incident members only); the third grows
//!   with the members that carry the indicator;
//! - **GetSituation** of the incident with its M contributions (the pure
//!   picture over everything loaded, plus the correlation matches), and
//!   **ListIncidents**, over gRPC, median and 95th percentile.
//!
//! Every timed call must answer what the setup implies (one match, M+1
//! contributions), or the run fails: a fast wrong answer is no number.
use super::percentile;
use crate::app::localfed::Fed;
use crate::domain::envelope::ms_to_ts;
use crate::proto::v1::*;
use crate::service::incidents::watch_matches;
use anyhow::{Context, bail};
use futures::StreamExt;
use std::time::Instant;

/// Requests in flight while the setup publishes.
const CONCURRENCY: usize = 8;
/// Timed correlation lookups per measurement.
const LOOKUPS: usize = 200;
/// Timed GetSituation / ListIncidents calls.
const CALLS: usize = 20;
const HOT: &str = "cdn-shared.example";
const COUNTRIES: [&str; 6] = ["EE", "LV", "LT", "PL", "DE", "UA"];
const SECTORS: [Nis2Sector; 4] = [
    Nis2Sector::Energy,
    Nis2Sector::Transport,
    Nis2Sector::Health,
    Nis2Sector::DigitalInfrastructure,
];

fn domain(value: String) -> Indicator {
    Indicator {
        r#type: IndicatorType::Domain as i32,
        value,
        comment: String::new(),
    }
}

fn alert(title: String) -> Alert {
    Alert {
        title,
        description: "benchmark".into(),
        tlp: Tlp::Green as i32,
        severity: Severity::Medium as i32,
        sectors: vec![Nis2Sector::Energy as i32],
        affected_countries: vec!["EE".into()],
        indicators: vec![domain(HOT.into())],
        ..Default::default()
    }
}

/// Publishes `reqs` with [`CONCURRENCY`] in flight; fails on the first error.
async fn publish_all(
    op: &crate::proto::v1::operator_client::OperatorClient<tonic::transport::Channel>,
    reqs: Vec<PublishAlertRequest>,
) -> anyhow::Result<()> {
    let results: Vec<_> = futures::stream::iter(reqs)
        .map(|r| {
            let mut op = op.clone();
            async move { op.publish_alert(r).await }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for r in results {
        r.context("publish")?;
    }
    Ok(())
}

/// Median and 95th percentile, in ms, of `LOOKUPS` correlations of `probe`.
async fn correlation(
    node: &crate::service::node::Node,
    probe: &crate::storage::StoredMessage,
    incident: &str,
) -> anyhow::Result<(f64, f64)> {
    let mut ms = Vec::with_capacity(LOOKUPS);
    for _ in 0..LOOKUPS {
        let t = Instant::now();
        let found = watch_matches(node, probe).await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if found.len() != 1 || found[0].incident_id != incident {
            bail!("correlation answered {found:?}, expected one match with {incident}");
        }
    }
    ms.sort_by(f64::total_cmp);
    Ok((percentile(&ms, 0.5), percentile(&ms, 0.95)))
}

pub async fn run(contributions: usize, noise: usize, json: bool) -> anyhow::Result<()> {
    if !json {
        eprintln!(
            "certfed bench --incident: one incident, {noise} loose alerts on its indicator, {contributions} sightings ..."
        );
    }
    let fed = Fed::new(&["node-a"], &[]);
    let a = fed.try_start(0).await?;
    let op = fed.operator(0).await;
    let incident = op
        .clone()
        .publish_alert(PublishAlertRequest {
            alert: Some(alert("Campaign on shared infrastructure".into())),
            open_incident: true,
            ..Default::default()
        })
        .await?
        .into_inner()
        .message_id;
    let probe_id = op
        .clone()
        .publish_alert(PublishAlertRequest {
            alert: Some(alert("Probe: seen here too".into())),
            ..Default::default()
        })
        .await?
        .into_inner()
        .message_id;
    let probe = a
        .node
        .store
        .get_message(&probe_id)
        .await?
        .context("the probe alert is stored")?;
    let empty = correlation(&a.node, &probe, &incident).await?;

    let t = Instant::now();
    publish_all(
        &op,
        (0..noise)
            .map(|i| PublishAlertRequest {
                alert: Some(alert(format!("Loose alert {i}"))),
                ..Default::default()
            })
            .collect(),
    )
    .await?;
    let noise_s = t.elapsed().as_secs_f64();
    let after_noise = correlation(&a.node, &probe, &incident).await?;

    let observed = ms_to_ts(crate::service::now_ms() - 60_000);
    let t = Instant::now();
    let sightings: Vec<_> = (0..contributions)
        .map(|i| ReportSightingRequest {
            sighting: Some(Sighting {
                incident_id: incident.clone(),
                indicators: vec![domain(HOT.into()), domain(format!("host-{i}.example"))],
                country: COUNTRIES[i % COUNTRIES.len()].into(),
                sector: SECTORS[i % SECTORS.len()] as i32,
                observed: Some(observed),
                count: 1 + (i as u64 % 50),
                severity: Severity::Medium as i32,
                tlp: Tlp::Green as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let results: Vec<_> = futures::stream::iter(sightings)
        .map(|r| {
            let mut op = op.clone();
            async move { op.report_sighting(r).await }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for r in results {
        r.context("report sighting")?;
    }
    let sight_s = t.elapsed().as_secs_f64();
    let with_members = correlation(&a.node, &probe, &incident).await?;

    let mut situation_ms = Vec::with_capacity(CALLS);
    let mut list_ms = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        let s = op
            .clone()
            .get_situation(GetSituationRequest {
                incident_id: incident.clone(),
            })
            .await?
            .into_inner();
        situation_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if s.contributions as usize != contributions + 1 {
            bail!(
                "the picture shows {} contributions, expected {}",
                s.contributions,
                contributions + 1
            );
        }
        let t = Instant::now();
        let l = op
            .clone()
            .list_incidents(ListIncidentsRequest::default())
            .await?
            .into_inner();
        list_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if l.incidents.len() != 1 {
            bail!(
                "ListIncidents shows {} incidents, expected 1",
                l.incidents.len()
            );
        }
    }
    situation_ms.sort_by(f64::total_cmp);
    list_ms.sort_by(f64::total_cmp);
    a.shutdown().await?;

    let r = |x: f64| (x * 1000.0).round() / 1000.0;
    let rows = [
        ("correlation_empty_p50_ms", r(empty.0)),
        ("correlation_empty_p95_ms", r(empty.1)),
        ("correlation_after_noise_p50_ms", r(after_noise.0)),
        ("correlation_after_noise_p95_ms", r(after_noise.1)),
        ("correlation_with_members_p50_ms", r(with_members.0)),
        ("correlation_with_members_p95_ms", r(with_members.1)),
        ("get_situation_p50_ms", r(percentile(&situation_ms, 0.5))),
        ("get_situation_p95_ms", r(percentile(&situation_ms, 0.95))),
        ("list_incidents_p50_ms", r(percentile(&list_ms, 0.5))),
        ("list_incidents_p95_ms", r(percentile(&list_ms, 0.95))),
        ("loose_alerts_per_s", r(noise as f64 / noise_s)),
        ("sightings_per_s", r(contributions as f64 / sight_s)),
    ];
    if json {
        let mut v = serde_json::Map::new();
        for (k, x) in rows {
            v.insert(k.into(), serde_json::json!(x));
        }
        v.insert("loose_alerts".into(), noise.into());
        v.insert("sightings".into(), contributions.into());
        println!("{}", serde_json::Value::Object(v));
    } else {
        println!("{:<44} {:>12}", "metric", "value");
        for (k, x) in rows {
            println!("{k:<44} {x:>12.3}");
        }
        println!("{:<44} {:>12}", "loose alerts on the indicator", noise);
        println!("{:<44} {:>12}", "sightings in the incident", contributions);
    }
    Ok(())
}
