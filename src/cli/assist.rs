//! `certfed assist request|offer|decide|update|list|show`.
use super::client::{Conn, connect, explain};
use crate::domain::alert::{parse_rsit, parse_sector, parse_severity};
use crate::domain::assistance::{offer_state_label, state_label};
use crate::domain::envelope::ms_to_ts;
use crate::domain::policy::parse_tlp;
use crate::proto::v1::*;
use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

#[derive(Subcommand, Debug)]
pub enum AssistCmd {
    /// Ask partners for assistance (this node is the requester).
    Request(RequestArgs),
    /// Offer assistance on a request (this node is the donor).
    Offer(OfferArgs),
    /// Accept or decline an offer (requester only).
    Decide {
        offer_id: String,
        /// Accept the offer (default: decline unless --accept).
        #[arg(long, conflicts_with = "decline")]
        accept: bool,
        #[arg(long)]
        decline: bool,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Move a request: deployed, completed, closed, withdrawn (requester), or
    /// withdraw your own offer with --withdraw-offer.
    Update {
        request_id: String,
        /// Target state: deployed, completed, closed, withdrawn.
        #[arg(long)]
        state: Option<String>,
        /// Withdraw this offer of yours instead.
        #[arg(long)]
        withdraw_offer: Option<String>,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// List assistance requests known to the node.
    List {
        /// Only requests in this state (repeatable).
        #[arg(long)]
        state: Vec<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One request with its offers and signed history.
    Show { request_id: String },
}

#[derive(Args, Debug)]
pub struct RequestArgs {
    #[arg(long)]
    pub title: String,
    #[arg(long)]
    pub description: String,
    /// clear, green, amber, amber+strict, red.
    #[arg(long)]
    pub tlp: String,
    /// Service (repeatable): incident-response, forensics, malware-analysis,
    /// ddos-mitigation, threat-hunting, vulnerability-assessment, recovery,
    /// threat-intelligence, equipment-licences.
    #[arg(long = "service", required = true)]
    pub services: Vec<String>,
    /// Affected NIS2 sector, e.g. energy.
    #[arg(long)]
    pub sector: Option<String>,
    /// The affected entity is essential (default) or important.
    #[arg(long)]
    pub important: bool,
    #[arg(long)]
    pub rsit: Option<String>,
    #[arg(long, default_value = "high")]
    pub severity: String,
    #[arg(long)]
    pub cross_border: bool,
    #[arg(long, default_value_t = 0)]
    pub person_days: u32,
    #[arg(long)]
    pub on_site: bool,
    #[arg(long, default_value = "")]
    pub mitigation: String,
    /// Offers needed within this many hours.
    #[arg(long)]
    pub deadline_hours: Option<u64>,
    /// Linked alert message id (repeatable).
    #[arg(long = "alert")]
    pub linked_alerts: Vec<String>,
    /// Recipient node (repeatable). None: the whole federation (clear/green only).
    #[arg(long = "to")]
    pub recipients: Vec<String>,
}

#[derive(Args, Debug)]
pub struct OfferArgs {
    pub request_id: String,
    #[arg(long)]
    pub summary: String,
    /// Capability (repeatable), same words as `request --service`.
    #[arg(long = "capability")]
    pub capabilities: Vec<String>,
    #[arg(long, default_value_t = 0)]
    pub person_days: u32,
    #[arg(long, default_value = "")]
    pub conditions: String,
    /// bilateral, reserve, coalition.
    #[arg(long, default_value = "bilateral")]
    pub funding: String,
}

const SERVICES: &[(&str, AssistanceService)] = &[
    ("incident-response", AssistanceService::IncidentResponse),
    ("forensics", AssistanceService::Forensics),
    ("malware-analysis", AssistanceService::MalwareAnalysis),
    ("ddos-mitigation", AssistanceService::DdosMitigation),
    ("threat-hunting", AssistanceService::ThreatHunting),
    (
        "vulnerability-assessment",
        AssistanceService::VulnerabilityAssessment,
    ),
    ("recovery", AssistanceService::Recovery),
    ("threat-intelligence", AssistanceService::ThreatIntelligence),
    ("equipment-licences", AssistanceService::EquipmentLicences),
];

fn service(s: &str) -> anyhow::Result<i32> {
    SERVICES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(s))
        .map(|(_, v)| *v as i32)
        .with_context(|| {
            format!(
                "unknown service {s:?}; use one of {}",
                SERVICES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

fn service_name(v: i32) -> &'static str {
    SERVICES
        .iter()
        .find(|(_, x)| *x as i32 == v)
        .map(|(n, _)| *n)
        .unwrap_or("unspecified")
}

fn parse_state(s: &str) -> anyhow::Result<i32> {
    let up = s.to_ascii_uppercase();
    AssistanceState::from_str_name(&format!("ASSISTANCE_STATE_{up}"))
        .filter(|s| *s != AssistanceState::Unspecified)
        .map(|s| s as i32)
        .with_context(|| format!("unknown state {s:?}; use requested, offered, accepted, deployed, completed, closed, withdrawn"))
}

fn st(v: i32) -> &'static str {
    state_label(AssistanceState::try_from(v).unwrap_or(AssistanceState::Unspecified))
}

fn view_json(v: &AssistanceView) -> Value {
    let r = v.request.clone().unwrap_or_default();
    json!({
        "request_id": v.request_id, "requester": v.requester, "state": st(v.state), "overdue": v.overdue,
        "title": r.title, "description": r.description,
        "services": r.services.iter().map(|s| service_name(*s)).collect::<Vec<_>>(),
        "offers": v.offers.iter().map(|o| json!({
            "offer_id": o.offer_id, "donor": o.donor,
            "state": offer_state_label(OfferState::try_from(o.state).unwrap_or(OfferState::Unspecified)),
            "summary": o.offer.as_ref().map(|x| x.summary.clone()).unwrap_or_default(),
            "decision_note": o.decision_note})).collect::<Vec<_>>(),
        "history": v.history.iter().map(|h| json!({
            "message_id": h.message_id, "actor": h.actor, "action": h.action, "note": h.note,
            "at": h.at.as_ref().map(|t| t.seconds)})).collect::<Vec<_>>(),
    })
}

fn print_view(v: &AssistanceView) {
    let r = v.request.clone().unwrap_or_default();
    println!("request   {}", v.request_id);
    println!("requester {}", v.requester);
    println!(
        "state     {}{}",
        st(v.state),
        if v.overdue {
            "  (OVERDUE: deadline passed, no accepted offer)"
        } else {
            ""
        }
    );
    println!("title     {}", r.title);
    println!(
        "services  {}",
        r.services
            .iter()
            .map(|s| service_name(*s))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !v.offers.is_empty() {
        println!("offers:");
        for o in &v.offers {
            println!(
                "  {}  {:<10} {:<9} {}",
                o.offer_id,
                o.donor,
                offer_state_label(OfferState::try_from(o.state).unwrap_or(OfferState::Unspecified)),
                o.offer.as_ref().map(|x| x.summary.as_str()).unwrap_or("")
            );
        }
    }
    println!("history:");
    for h in &v.history {
        println!(
            "  {:<10} {}{}",
            h.actor,
            h.action,
            if h.note.is_empty() {
                String::new()
            } else {
                format!(" — {}", h.note)
            }
        );
    }
}

pub async fn run(conn: Conn, cmd: AssistCmd) -> anyhow::Result<()> {
    let mut c = connect(&conn).await?;
    let node = conn.node.clone();
    let ex = |s| explain(&node, s);
    match cmd {
        AssistCmd::Request(a) => {
            let request = AssistanceRequest {
                title: a.title,
                description: a.description,
                tlp: parse_tlp(&a.tlp).map_err(|e| anyhow::anyhow!("--tlp: {e}"))? as i32,
                services: a
                    .services
                    .iter()
                    .map(|s| service(s))
                    .collect::<anyhow::Result<_>>()?,
                sector: match &a.sector {
                    Some(s) => {
                        parse_sector(s).map_err(|e| anyhow::anyhow!("--sector: {e}"))? as i32
                    }
                    None => 0,
                },
                entity_category: if a.important {
                    EntityCategory::Important as i32
                } else {
                    EntityCategory::Essential as i32
                },
                rsit_class: match &a.rsit {
                    Some(r) => parse_rsit(r).map_err(|e| anyhow::anyhow!("--rsit: {e}"))? as i32,
                    None => 0,
                },
                severity: parse_severity(&a.severity)
                    .map_err(|e| anyhow::anyhow!("--severity: {e}"))?
                    as i32,
                cross_border: a.cross_border,
                needs: Some(EstimatedNeeds {
                    skills: vec![],
                    person_days: a.person_days,
                    on_site: a.on_site,
                }),
                mitigation_done: a.mitigation,
                deadline: a
                    .deadline_hours
                    .map(|h| ms_to_ts(crate::service::now_ms() + h as i64 * 3_600_000)),
                contacts: vec![],
                linked_alerts: a.linked_alerts,
            };
            let r = c
                .request_assistance(RequestAssistanceRequest {
                    request: Some(request),
                    recipients: a.recipients,
                    request_id: uuid::Uuid::now_v7().to_string(),
                })
                .await
                .map_err(ex)?
                .into_inner();
            if conn.json {
                println!("{}", json!({"request_id": r.request_id}));
            } else {
                println!("requested {}", r.request_id);
            }
        }
        AssistCmd::Offer(o) => {
            let funding = match o.funding.as_str() {
                "bilateral" => FundingChannel::Bilateral,
                "reserve" => FundingChannel::CybersecurityReserve,
                "coalition" => FundingChannel::DonorCoalition,
                f => anyhow::bail!("--funding {f:?}: use bilateral, reserve or coalition"),
            };
            let offer = Offer {
                summary: o.summary,
                capabilities: o
                    .capabilities
                    .iter()
                    .map(|s| service(s))
                    .collect::<anyhow::Result<_>>()?,
                capacity_person_days: o.person_days,
                conditions: o.conditions,
                funding: funding as i32,
                ..Default::default()
            };
            let r = c
                .offer_assistance(OfferAssistanceRequest {
                    request_id: o.request_id,
                    offer: Some(offer),
                    client_request_id: uuid::Uuid::now_v7().to_string(),
                })
                .await
                .map_err(ex)?
                .into_inner();
            if conn.json {
                println!("{}", json!({"offer_id": r.offer_id}));
            } else {
                println!("offered {}", r.offer_id);
            }
        }
        AssistCmd::Decide {
            offer_id,
            accept,
            decline,
            note,
        } => {
            if accept == decline {
                anyhow::bail!("say --accept or --decline");
            }
            let r = c
                .decide_offer(DecideOfferRequest {
                    offer_id,
                    accept,
                    note,
                    request_id: uuid::Uuid::now_v7().to_string(),
                })
                .await
                .map_err(ex)?
                .into_inner();
            if conn.json {
                println!("{}", json!({"state": st(r.state)}));
            } else {
                println!("request is now {}", st(r.state));
            }
        }
        AssistCmd::Update {
            request_id,
            state,
            withdraw_offer,
            note,
        } => {
            let state = match &state {
                Some(s) => parse_state(s)?,
                None => 0,
            };
            let r = c
                .update_assistance(UpdateAssistanceRequest {
                    request_id,
                    state,
                    note,
                    withdraw_offer_id: withdraw_offer.unwrap_or_default(),
                    client_request_id: uuid::Uuid::now_v7().to_string(),
                })
                .await
                .map_err(ex)?
                .into_inner();
            if conn.json {
                println!("{}", json!({"state": st(r.state)}));
            } else {
                println!("request is now {}", st(r.state));
            }
        }
        AssistCmd::List { state, limit } => {
            let states = state
                .iter()
                .map(|s| parse_state(s))
                .collect::<anyhow::Result<_>>()?;
            let r = c
                .list_assistance_requests(ListAssistanceRequestsRequest {
                    page_size: limit,
                    page_token: String::new(),
                    states,
                })
                .await
                .map_err(ex)?
                .into_inner();
            if conn.json {
                println!(
                    "{}",
                    json!({"requests": r.requests.iter().map(view_json).collect::<Vec<_>>(), "next_page_token": r.next_page_token})
                );
            } else {
                println!(
                    "{:<36}  {:<10}  {:<10}  {:>6}  TITLE",
                    "REQUEST ID", "REQUESTER", "STATE", "OFFERS"
                );
                for v in &r.requests {
                    println!(
                        "{:<36}  {:<10}  {:<10}  {:>6}  {}{}",
                        v.request_id,
                        v.requester,
                        st(v.state),
                        v.offers.len(),
                        v.request.as_ref().map(|x| x.title.as_str()).unwrap_or(""),
                        if v.overdue { "  (OVERDUE)" } else { "" }
                    );
                }
            }
        }
        AssistCmd::Show { request_id } => {
            let v = c
                .get_assistance_request(GetAssistanceRequestRequest { request_id })
                .await
                .map_err(ex)?
                .into_inner();
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&view_json(&v))?);
            } else {
                print_view(&v);
            }
        }
    }
    Ok(())
}
