//! `certfed demo`: a real local federation of five partner nodes on loopback
//! (fresh temporary PKI, real TLS, real SQLite, in-process nodes) playing a short
//! scenario after the EEAS cyber-incident exercise (seed 004): an intrusion in one
//! partner's energy sector escalates to transport across borders, and alerts
//! spread through relays to partners with no direct link to the origin. It
//! prints a timeline of who knew what, and when. Then the hardest-hit partner
//! requests assistance under TLP:AMBER; two partners offer, one is accepted and
//! deployed, and every recipient's view of the request converges.
//!
//! The alerts tell one incident: the first opens it, the others join it;
//! partners report sightings (one under TLP:AMBER to the opener alone), a
//! partner outside it reports the same infrastructure and the opener links the
//! correlation match; the assistance request names the incident. Each partner
//! shows its picture (partners holding the same contributions show the same
//! digest; the relay of the AMBER sighting counts it without reading it), and
//! the demo ends by writing the opener's HTML situation report.
use crate::app::localfed::Fed;
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

pub async fn run(report: std::path::PathBuf) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let fed = Fed::new(&NODES, &LINKS).sqlite();
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
                // Assistance steps are followed separately below.
                if m.alert.is_none() {
                    continue;
                }
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

    let publish = |i: usize, a: Alert, open_incident: bool, incident_id: String| {
        let fed = &fed;
        async move {
            let mut op = fed.operator(i).await;
            println!(
                "[{:>7.3}s] {:<8} PUBLISHES {} {} \"{}\"",
                t0.elapsed().as_secs_f64(),
                NODES[i],
                crate::domain::policy::tlp_label(Tlp::try_from(a.tlp).unwrap_or(Tlp::Unspecified)),
                crate::domain::alert::severity_label(
                    Severity::try_from(a.severity).unwrap_or(Severity::Unspecified)
                ),
                a.title
            );
            op.publish_alert(PublishAlertRequest {
                alert: Some(a),
                recipients: vec![],
                open_incident,
                incident_id,
                ..Default::default()
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
        true,
        String::new(),
    )
    .await?;
    let incident = first.clone();
    println!(
        "[{:>7.3}s] {:<8} OPENS INCIDENT {} with it",
        t0.elapsed().as_secs_f64(),
        NODES[0],
        &incident[..8]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    // An update stays in the incident of the alert it supersedes.
    publish(0, upd, false, String::new()).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
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
        false,
        incident.clone(),
    )
    .await?;
    // 4. Sightings, a correlated alert, and the assistance request, all tied
    //    to the incident; the picture every partner can show.
    let story = incident_story(&fed, t0, &incident, &publish).await;
    // 5. The hardest-hit partner asks for help; two partners offer.
    let assistance = assistance(&fed, t0, &incident).await;
    let report = match (&story, &assistance) {
        (Ok(()), Ok(_)) => picture(&fed, t0, &incident, report).await,
        _ => Ok(Vec::new()),
    };

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
    story?;
    if !complete || ids.len() != 4 {
        anyhow::bail!("not every partner received every alert");
    }
    println!(
        "\nAll {} partners received all {} alerts, each exactly once, through relays where no direct link exists.",
        NODES.len(),
        ids.len()
    );
    let views = assistance?;
    println!("\nThe assistance request as each partner sees it:");
    for line in &views {
        println!("  {line}");
    }
    println!(
        "\nRequester and both donors agree on the request; partners it was not addressed to cannot read it."
    );
    println!("\nThe incident as each partner sees it:");
    for line in report? {
        println!("  {line}");
    }
    Ok(())
}

fn sighting(
    incident: &str,
    country: &str,
    sector: Nis2Sector,
    count: u64,
    sev: Severity,
    tlp: Tlp,
) -> Sighting {
    Sighting {
        incident_id: incident.into(),
        indicators: vec![Indicator {
            r#type: IndicatorType::Domain as i32,
            value: "update-scada.example".into(),
            comment: String::new(),
        }],
        country: country.into(),
        sector: sector as i32,
        count,
        severity: sev as i32,
        tlp: tlp as i32,
        ..Default::default()
    }
}

/// Partners report sightings (one of them TLP:AMBER to the opener alone), a
/// partner outside the incident reports the same infrastructure, the opener
/// sees the correlation match and links it, and sets the status.
async fn incident_story<F, Fut>(
    fed: &Fed,
    t0: Instant,
    incident: &str,
    publish: &F,
) -> anyhow::Result<()>
where
    F: Fn(usize, Alert, bool, String) -> Fut,
    Fut: std::future::Future<Output = Result<String, tonic::Status>>,
{
    // Every partner must hold the opening alert before it can contribute.
    let deadline = Instant::now() + Duration::from_secs(10);
    for (i, name) in NODES.iter().enumerate().skip(1) {
        while fed
            .operator(i)
            .await
            .get_situation(GetSituationRequest {
                incident_id: incident.into(),
            })
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                anyhow::bail!("{name} never received the incident");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let sightings = [
        (
            2,
            sighting(
                incident,
                "DE",
                Nis2Sector::Health,
                4,
                Severity::High,
                Tlp::Green,
            ),
            vec![],
        ),
        (
            3,
            sighting(
                incident,
                "EE",
                Nis2Sector::DigitalInfrastructure,
                12,
                Severity::Critical,
                Tlp::Amber,
            ),
            vec![NODES[0].to_string()],
        ),
    ];
    for (i, s, to) in sightings {
        println!(
            "{} {:<8} SIGHTS   the incident: {} {}, {} observed{}",
            at(t0),
            NODES[i],
            s.country,
            crate::domain::alert::sector_label(
                Nis2Sector::try_from(s.sector).unwrap_or(Nis2Sector::Unspecified)
            ),
            s.count,
            if to.is_empty() {
                " (TLP:GREEN)".to_string()
            } else {
                format!(" (TLP:AMBER, to {} only)", to.join(", "))
            }
        );
        fed.operator(i)
            .await
            .report_sighting(ReportSightingRequest {
                sighting: Some(s),
                recipients: to,
                ..Default::default()
            })
            .await?;
    }
    // A partner outside the incident reports the same infrastructure.
    let loose = publish(
        4,
        alert(
            "Scanning of interconnector VPN gateways",
            "Mass scanning from one address against VPN gateways of energy interconnectors.",
            Severity::Medium,
            &[Nis2Sector::DigitalInfrastructure],
            &["FR"],
            &[(IndicatorType::Ip, "203.0.113.45")],
        ),
        false,
        String::new(),
    )
    .await?;
    let mut op = fed.operator(0).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = op
            .get_situation(GetSituationRequest {
                incident_id: incident.into(),
            })
            .await?
            .into_inner();
        if let Some(m) = s.matches.iter().find(|m| m.message_id == loose) {
            println!(
                "{} {:<8} CORRELATION: {}'s alert shares {} with the incident",
                at(t0),
                NODES[0],
                m.origin,
                m.indicator.clone().unwrap_or_default().value
            );
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!("the correlation match never showed on {}", NODES[0]);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("{} {:<8} LINKS it into the incident", at(t0), NODES[0]);
    op.link_to_incident(LinkToIncidentRequest {
        incident_id: incident.into(),
        message_id: loose,
        note: "same scanning infrastructure".into(),
        ..Default::default()
    })
    .await?;
    println!("{} {:<8} sets the status INVESTIGATING", at(t0), NODES[0]);
    op.set_incident_status(SetIncidentStatusRequest {
        incident_id: incident.into(),
        status: IncidentStatus::Investigating as i32,
        note: "joint analysis with cert-pl and cert-de".into(),
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// Waits until the partners that hold the same contributions show the same
/// picture, prints each partner's picture, and writes the opener's as HTML.
async fn picture(
    fed: &Fed,
    t0: Instant,
    incident: &str,
    report: std::path::PathBuf,
) -> anyhow::Result<Vec<String>> {
    let get = |i: usize| async move {
        fed.operator(i)
            .await
            .get_situation(GetSituationRequest {
                incident_id: incident.into(),
            })
            .await
            .map(|r| r.into_inner())
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let pictures = loop {
        let mut all = Vec::new();
        for i in 0..NODES.len() {
            all.push(get(i).await?);
        }
        // Everyone has the status and the linked alert; the opener reads
        // cert-ee's AMBER sighting, cert-pl relayed it and only counts it.
        let done = all.iter().all(|s| {
            s.status == IncidentStatus::Investigating as i32 && s.partners_affected.len() >= 4
        }) && all[0].partners_affected.len() == 5
            && all[0]
                .assistance
                .iter()
                .any(|a| a.state == AssistanceState::Deployed as i32)
            && all[1].restricted.iter().map(|r| r.count).sum::<u32>() == 1;
        if done {
            break all;
        }
        if Instant::now() > deadline {
            anyhow::bail!("the partners' pictures of the incident did not converge");
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    let mut lines = Vec::new();
    for (i, s) in pictures.iter().enumerate() {
        let hidden: u32 = s.restricted.iter().map(|r| r.count).sum();
        lines.push(format!(
            "{:<8} severity {}, {} partners affected in {} countries and {} sectors, {} contributions{}, digest {}",
            NODES[i],
            crate::domain::alert::severity_label(
                Severity::try_from(s.severity).unwrap_or(Severity::Unspecified)
            ),
            s.partners_affected.len(),
            s.countries.len(),
            s.sectors.len(),
            s.contributions,
            if hidden > 0 {
                format!(" + {hidden} it cannot read")
            } else {
                String::new()
            },
            &s.digest[..12]
        ));
    }
    let page = crate::app::report::render(&pictures[0], NODES[0], crate::service::now_ms());
    std::fs::write(&report, &page)
        .map_err(|e| anyhow::anyhow!("{}: cannot write the report: {e}", report.display()))?;
    lines.push(format!(
        "{} situation report of {} written to {} ({} bytes): open it in a browser",
        at(t0),
        NODES[0],
        report.display(),
        page.len()
    ));
    Ok(lines)
}

const REQUESTER: usize = 0;
const DONORS: [usize; 2] = [1, 2];

fn at(t0: Instant) -> String {
    format!("[{:>7.3}s]", t0.elapsed().as_secs_f64())
}

async fn view(fed: &Fed, i: usize, id: &str) -> Option<AssistanceView> {
    let mut op = fed.operator(i).await;
    op.get_assistance_request(GetAssistanceRequestRequest {
        request_id: id.into(),
    })
    .await
    .ok()
    .map(|r| r.into_inner())
}

/// What every recipient must agree on: state, offers and their states, the signed steps.
type Essence = (i32, Vec<(String, i32)>, Vec<String>);

fn essence(v: &AssistanceView) -> Essence {
    (
        v.state,
        v.offers
            .iter()
            .map(|o| (o.offer_id.clone(), o.state))
            .collect(),
        v.history.iter().map(|h| h.message_id.clone()).collect(),
    )
}

/// Waits until requester and donors all see the request satisfying `done` with
/// the same essence.
async fn converge(
    fed: &Fed,
    id: &str,
    what: &str,
    done: impl Fn(&AssistanceView) -> bool,
) -> anyhow::Result<AssistanceView> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut views = Vec::new();
        for i in std::iter::once(REQUESTER).chain(DONORS) {
            views.push(view(fed, i, id).await);
        }
        if let Some(Some(first)) = views.first()
            && views.iter().all(|v| {
                v.as_ref()
                    .is_some_and(|v| done(v) && essence(v) == essence(first))
            })
        {
            return Ok(first.clone());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the partners' views of assistance request {id} did not converge on {what}"
            );
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

fn state_word(s: i32) -> &'static str {
    crate::domain::assistance::state_label(
        AssistanceState::try_from(s).unwrap_or(AssistanceState::Unspecified),
    )
}

fn offer_word(s: i32) -> &'static str {
    crate::domain::assistance::offer_state_label(
        OfferState::try_from(s).unwrap_or(OfferState::Unspecified),
    )
}

/// cert-ua requests incident response and forensics under TLP:AMBER from cert-pl
/// and cert-de; both offer; cert-ua accepts one, declines the other and reports
/// the team deployed. Returns one line per node describing what it sees.
async fn assistance(fed: &Fed, t0: Instant, incident: &str) -> anyhow::Result<Vec<String>> {
    let req = AssistanceRequest {
        title: "Grid wiper: incident response and ICS forensics needed".into(),
        description: "Wiper on SCADA jump hosts at a transmission system operator; \
                      interconnectors affected."
            .into(),
        tlp: Tlp::Amber as i32,
        services: vec![
            AssistanceService::IncidentResponse as i32,
            AssistanceService::Forensics as i32,
        ],
        sector: Nis2Sector::Energy as i32,
        entity_category: EntityCategory::Essential as i32,
        rsit_class: RsitClass::Intrusions as i32,
        severity: Severity::Critical as i32,
        cross_border: true,
        needs: Some(EstimatedNeeds {
            skills: vec!["ICS forensics".into(), "incident handling".into()],
            person_days: 30,
            on_site: true,
        }),
        linked_alerts: vec![incident.to_string()],
        ..Default::default()
    };
    let recipients: Vec<String> = DONORS.iter().map(|&i| NODES[i].to_string()).collect();
    println!(
        "{} {:<8} REQUESTS ASSISTANCE TLP:AMBER to {}: incident response + forensics (energy, essential entity, critical, cross-border)",
        at(t0),
        NODES[REQUESTER],
        recipients.join(", ")
    );
    let rid = fed
        .operator(REQUESTER)
        .await
        .request_assistance(RequestAssistanceRequest {
            request: Some(req),
            recipients,
            ..Default::default()
        })
        .await?
        .into_inner()
        .request_id;
    converge(fed, &rid, "REQUESTED", |v| {
        v.state == AssistanceState::Requested as i32
    })
    .await?;
    println!(
        "{} {:<8} and {} have received and decrypted the request",
        at(t0),
        NODES[DONORS[0]],
        NODES[DONORS[1]]
    );

    let offers = [
        (
            DONORS[0],
            "Rapid response team: 3 incident handlers on site within 24 h",
            vec![AssistanceService::IncidentResponse as i32],
            15,
            FundingChannel::CybersecurityReserve,
        ),
        (
            DONORS[1],
            "Remote ICS forensics: 2 analysts",
            vec![AssistanceService::Forensics as i32],
            10,
            FundingChannel::Bilateral,
        ),
    ];
    let mut offer_ids = Vec::new();
    for (i, summary, caps, days, funding) in offers {
        println!("{} {:<8} OFFERS   \"{summary}\"", at(t0), NODES[i]);
        let id = fed
            .operator(i)
            .await
            .offer_assistance(OfferAssistanceRequest {
                request_id: rid.clone(),
                offer: Some(Offer {
                    summary: summary.into(),
                    capabilities: caps,
                    capacity_person_days: days,
                    funding: funding as i32,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?
            .into_inner()
            .offer_id;
        offer_ids.push(id);
    }
    converge(fed, &rid, "two offers", |v| v.offers.len() == 2).await?;

    let mut op = fed.operator(REQUESTER).await;
    for (k, accept) in [(0, true), (1, false)] {
        println!(
            "{} {:<8} {} the offer of {}",
            at(t0),
            NODES[REQUESTER],
            if accept { "ACCEPTS " } else { "DECLINES" },
            NODES[DONORS[k]]
        );
        op.decide_offer(DecideOfferRequest {
            offer_id: offer_ids[k].clone(),
            accept,
            note: if accept {
                "on-site response needed first".into()
            } else {
                "thank you; covered for now".into()
            },
            ..Default::default()
        })
        .await?;
    }
    println!(
        "{} {:<8} marks the request DEPLOYED",
        at(t0),
        NODES[REQUESTER]
    );
    op.update_assistance(UpdateAssistanceRequest {
        request_id: rid.clone(),
        state: AssistanceState::Deployed as i32,
        note: "team on site".into(),
        withdraw_offer_id: String::new(),
        ..Default::default()
    })
    .await?;
    let v = converge(fed, &rid, "DEPLOYED", |v| {
        v.state == AssistanceState::Deployed as i32
            && v.offers
                .iter()
                .all(|o| o.state != OfferState::Pending as i32)
    })
    .await?;
    println!(
        "{} all recipients agree: DEPLOYED, {} signed steps",
        at(t0),
        v.history.len()
    );

    let mut lines = Vec::new();
    for (i, name) in NODES.iter().enumerate() {
        let line = match view(fed, i, &rid).await {
            Some(v) if i == REQUESTER || DONORS.contains(&i) => format!(
                "{name:<8} {} {} (offers: {})",
                &rid[..8.min(rid.len())],
                state_word(v.state),
                v.offers
                    .iter()
                    .map(|o| format!("{} {}", o.donor, offer_word(o.state)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(_) => anyhow::bail!("{name} is not a recipient but can read the request"),
            None if i == REQUESTER || DONORS.contains(&i) => {
                anyhow::bail!("{name} cannot see the request it should")
            }
            None => format!("{name:<8} (relays only; cannot read)"),
        };
        lines.push(line);
    }
    Ok(lines)
}
