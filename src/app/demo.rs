//! `certfed demo`: a real local federation of five partner nodes on loopback
//! (fresh temporary PKI, real TLS, real SQLite, in-process nodes) playing the
//! scenario file `deploy/exercises/demo.toml` (embedded in the binary, so the
//! demo runs from any folder) with the exercise engine (`app::exercise`), told
//! as a story (`Narration::Story`): after the EEAS cyber-incident exercise
//! (seed 004), an intrusion in one partner's energy sector escalates to
//! transport across borders, and alerts spread through relays to partners
//! with no direct link to the origin. It prints a timeline of who knew what,
//! and when. Then the hardest-hit partner requests assistance under
//! TLP:AMBER; two partners offer, one is accepted and deployed, and every
//! recipient's view of the request converges.
//!
//! The alerts tell one incident: the first opens it, the others join it;
//! partners report sightings (one under TLP:AMBER to the opener alone), a
//! partner outside it reports the same infrastructure and the opener links the
//! correlation match; the assistance request names the incident. Each partner
//! shows its picture (partners holding the same contributions show the same
//! digest; the relay of the AMBER sighting counts it without reading it), and
//! the demo ends by writing the opener's HTML situation report.
//!
//! Invariants:
//! - The story is the scenario file's: nothing here names a partner, an alert
//!   or a step. What follows the play (the table of who knew what, the views
//!   of the assistance request, the incident pictures) is derived from the
//!   scenario and the run's record.
//! - The scenario says `exercise = false`: the demo's messages are ordinary
//!   (real) traffic on its throw-away federation, as they always were.
//! - Exit non-zero when an alert did not reach every partner or a view did
//!   not converge (bounded waits).
use crate::app::exercise::{LocalFed, Narration, play_told};
use crate::domain::exercise::scenario::{Action, Scenario, parse};
use crate::domain::exercise::score::Record;
use crate::proto::v1::*;
use std::time::{Duration, Instant};

/// The demo's scenario, as shipped in `deploy/exercises/demo.toml`.
pub const SCENARIO: &str = include_str!("../../deploy/exercises/demo.toml");

pub async fn run(report: std::path::PathBuf) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let t0_ms = crate::service::now_ms();
    let s =
        parse(SCENARIO, t0_ms).map_err(|e| anyhow::anyhow!("deploy/exercises/demo.toml: {e}"))?;
    let local = LocalFed::start(&s).await?;
    println!(
        "certfed demo: {} partner nodes on loopback, fresh PKI in {}",
        s.participants.len(),
        local.fed.pki.dir.path().display()
    );
    for (a, b) in &s.links {
        println!(
            "  link {:<8} <-> {}",
            s.participants[*a].id, s.participants[*b].id
        );
    }
    let played = play_told(
        &s,
        local.clients.clone(),
        1.0,
        "local",
        Narration::Story(t0),
    )
    .await;
    let after = match &played {
        Ok(record) => {
            let views = assistance(&local, &s, record, t0).await;
            let pictures = match &views {
                Ok(_) => picture(&local, &s, record, t0, report).await,
                Err(_) => Ok(Vec::new()),
            };
            Some((views, pictures))
        }
        Err(_) => None,
    };
    local.stop().await?;
    let record = played?;
    let (views, pictures) = after.expect("played");

    // Who knew what, and when.
    let alerts: Vec<_> = record
        .injects
        .iter()
        .filter(|r| r.kind == "alert")
        .collect();
    println!("\nWho knew what, and when (seconds since the demo started):");
    print!("{:<48}", "alert");
    for (id, _) in &record.participants {
        print!(" {:>8}", id);
    }
    println!();
    let mut complete = true;
    for r in &alerts {
        let short: String = r.summary.chars().take(46).collect();
        print!("{:<48}", short);
        for (id, _) in &record.participants {
            let at = if *id == r.from {
                r.sent_ms
            } else {
                r.seen
                    .iter()
                    .find(|x| x.node == *id)
                    .and_then(|x| x.stored_ms)
            };
            match at {
                Some(ms) => print!(" {:>8.3}", (ms - t0_ms) as f64 / 1000.0),
                None => {
                    complete = false;
                    print!(" {:>8}", "-")
                }
            }
        }
        println!();
    }
    if !complete || alerts.is_empty() {
        anyhow::bail!("not every partner received every alert");
    }
    println!(
        "\nAll {} partners received all {} alerts, each exactly once, through relays where no direct link exists.",
        record.participants.len(),
        alerts.len()
    );
    let views = views?;
    println!("\nThe assistance request as each partner sees it:");
    for line in &views {
        println!("  {line}");
    }
    println!(
        "\nRequester and donors agree on the request; partners it was not addressed to cannot read it."
    );
    println!("\nThe incident as each partner sees it:");
    for line in pictures? {
        println!("  {line}");
    }
    Ok(())
}

/// The message id the run got for inject `id`.
fn sent<'a>(record: &'a Record, id: &str) -> anyhow::Result<&'a str> {
    record
        .injects
        .iter()
        .find(|r| r.id == id)
        .and_then(|r| r.message_id.as_deref())
        .ok_or_else(|| anyhow::anyhow!("inject {id} of the demo scenario was not sent"))
}

/// Waits until every partner's picture of the incident the scenario opens
/// holds still (the same over two reads) with the status the scenario last
/// set, prints each partner's picture, and writes the opener's as HTML.
async fn picture(
    local: &LocalFed,
    s: &Scenario,
    record: &Record,
    t0: Instant,
    report: std::path::PathBuf,
) -> anyhow::Result<Vec<String>> {
    let Some(opening) = s.injects.iter().find(|i| {
        matches!(
            i.action,
            Action::Alert {
                open_incident: true,
                ..
            }
        )
    }) else {
        return Ok(Vec::new());
    };
    let incident = sent(record, &opening.id)?.to_string();
    let status = s
        .injects
        .iter()
        .filter_map(|i| match &i.action {
            Action::IncidentStatus {
                incident, status, ..
            } if *incident == opening.id => Some(*status as i32),
            _ => None,
        })
        .next_back();
    let get = |i: usize| {
        let mut op = local.clients[i].clone();
        let incident = incident.clone();
        async move {
            op.get_situation(GetSituationRequest {
                incident_id: incident,
            })
            .await
            .map(|r| r.into_inner())
        }
    };
    let shape = |s: &Situation| {
        (
            s.status,
            s.contributions,
            s.restricted.iter().map(|r| r.count).sum::<u32>(),
            s.partners_affected.len(),
            s.digest.clone(),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last: Option<Vec<Situation>> = None;
    let pictures = loop {
        let mut all = Vec::new();
        for i in 0..s.participants.len() {
            all.push(get(i).await?);
        }
        let settled = status.is_none_or(|st| all.iter().all(|p| p.status == st))
            && last.as_ref().is_some_and(|l| {
                l.iter().map(shape).collect::<Vec<_>>() == all.iter().map(shape).collect::<Vec<_>>()
            });
        if settled {
            break all;
        }
        if Instant::now() > deadline {
            anyhow::bail!("the partners' pictures of the incident did not converge");
        }
        last = Some(all);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut lines = Vec::new();
    for (i, p) in pictures.iter().enumerate() {
        let hidden: u32 = p.restricted.iter().map(|r| r.count).sum();
        lines.push(format!(
            "{:<8} severity {}, {} partners affected in {} countries and {} sectors, {} contributions{}, digest {}",
            s.participants[i].id,
            crate::domain::alert::severity_label(
                Severity::try_from(p.severity).unwrap_or(Severity::Unspecified)
            ),
            p.partners_affected.len(),
            p.countries.len(),
            p.sectors.len(),
            p.contributions,
            if hidden > 0 {
                format!(" + {hidden} it cannot read")
            } else {
                String::new()
            },
            &p.digest[..12.min(p.digest.len())]
        ));
    }
    let opener = &s.participants[opening.from].id;
    let page =
        crate::app::report::render(&pictures[opening.from], opener, crate::service::now_ms());
    std::fs::write(&report, &page)
        .map_err(|e| anyhow::anyhow!("{}: cannot write the report: {e}", report.display()))?;
    lines.push(format!(
        "{} situation report of {opener} written to {} ({} bytes): open it in a browser",
        at(t0),
        report.display(),
        page.len()
    ));
    Ok(lines)
}

fn at(t0: Instant) -> String {
    format!("[{:>7.3}s]", t0.elapsed().as_secs_f64())
}

async fn view(local: &LocalFed, i: usize, id: &str) -> Option<AssistanceView> {
    let mut op = local.clients[i].clone();
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

/// Waits until the requester and the recipients of the scenario's assistance
/// request all see it in the state the scenario last set, every offer
/// decided, with the same essence; returns one line per participant saying
/// what it sees (non-recipients must not be able to read it).
async fn assistance(
    local: &LocalFed,
    s: &Scenario,
    record: &Record,
    t0: Instant,
) -> anyhow::Result<Vec<String>> {
    let Some(req) = s
        .injects
        .iter()
        .find(|i| matches!(i.action, Action::AssistanceRequest { .. }))
    else {
        return Ok(Vec::new());
    };
    let rid = sent(record, &req.id)?.to_string();
    let audience: Vec<usize> = std::iter::once(req.from)
        .chain(s.participants.iter().enumerate().filter_map(|(i, p)| {
            (req.to.is_empty() && i != req.from || req.to.contains(&p.id)).then_some(i)
        }))
        .collect();
    let state = s
        .injects
        .iter()
        .filter_map(|i| match &i.action {
            Action::AssistanceStatus { request, state, .. } if *request == req.id => {
                Some(*state as i32)
            }
            _ => None,
        })
        .next_back();
    let deadline = Instant::now() + Duration::from_secs(10);
    let agreed = loop {
        let mut views = Vec::new();
        for &i in &audience {
            views.push(view(local, i, &rid).await);
        }
        if let Some(Some(first)) = views.first()
            && views.iter().all(|v| {
                v.as_ref().is_some_and(|v| {
                    state.is_none_or(|st| v.state == st)
                        && v.offers
                            .iter()
                            .all(|o| o.state != OfferState::Pending as i32)
                        && essence(v) == essence(first)
                })
            })
        {
            break first.clone();
        }
        if Instant::now() > deadline {
            anyhow::bail!("the partners' views of assistance request {rid} did not converge");
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    println!(
        "{} all recipients agree: {}, {} signed steps",
        at(t0),
        state_word(agreed.state),
        agreed.history.len()
    );
    let mut lines = Vec::new();
    for (i, p) in s.participants.iter().enumerate() {
        let name = &p.id;
        let line = match view(local, i, &rid).await {
            Some(v) if audience.contains(&i) => format!(
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
            None if audience.contains(&i) => {
                anyhow::bail!("{name} cannot see the request it should")
            }
            None => format!("{name:<8} (relays only; cannot read)"),
        };
        lines.push(line);
    }
    Ok(lines)
}
