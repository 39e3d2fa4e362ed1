//! `certfed assist request|offer|decide|update|list|show`.
//!
//! Same invariants as `cli::client`: JSON is the API response in the protobuf
//! JSON mapping; text shown is escaped for the terminal; choice flags are
//! `ValueEnum`s (a wrong word is a usage error before anything is sent).
// Requests end with `..Default::default()` on purpose: a new optional proto field
// (e.g. a request id) keeps its default here until the CLI sets it.
#![allow(clippy::needless_update)]
use super::args::{
    FundingArg, RsitArg, SectorArg, ServiceArg, SeverityArg, StateArg, TargetStateArg, TlpArg,
    service_word,
};
use super::client::{Conn, connect, show, ts};
use super::error::explain;
use super::output::{term, term_block};
use crate::domain::assistance::{offer_state_label, state_label};
use crate::domain::envelope::ms_to_ts;
use crate::proto::v1::*;
use clap::{Args, Subcommand};
use std::fmt::Write as _;

#[derive(Subcommand, Debug)]
pub enum AssistCmd {
    /// Ask partners for assistance (this node is the requester).
    Request(Box<RequestArgs>),
    /// Offer assistance on a request (this node is the donor).
    Offer(OfferArgs),
    /// Accept or decline an offer (requester only).
    Decide {
        /// Offer id (from `assist show`).
        offer_id: String,
        /// Accept the offer.
        #[arg(long, conflicts_with = "decline", required_unless_present = "decline")]
        accept: bool,
        /// Decline the offer.
        #[arg(long)]
        decline: bool,
        /// A note for the donor.
        #[arg(long, default_value = "")]
        note: String,
        /// Attach evidence (repeatable): a file, or FILE,malware for a malware sample.
        #[arg(long, value_parser = crate::cli::args::parse_attach, value_name = "FILE[,malware]")]
        attach: Vec<crate::cli::args::AttachArg>,
    },
    /// Move a request (requester) or withdraw your own offer (donor).
    Update {
        /// Request id.
        request_id: String,
        /// Target state of the request.
        #[arg(
            long,
            ignore_case = true,
            required_unless_present = "withdraw_offer",
            conflicts_with = "withdraw_offer"
        )]
        state: Option<TargetStateArg>,
        /// Withdraw this offer of yours instead.
        #[arg(long, value_name = "OFFER_ID")]
        withdraw_offer: Option<String>,
        /// A note recorded with the step.
        #[arg(long, default_value = "")]
        note: String,
        /// Attach evidence (repeatable): a file, or FILE,malware for a malware sample.
        #[arg(long, value_parser = crate::cli::args::parse_attach, value_name = "FILE[,malware]")]
        attach: Vec<crate::cli::args::AttachArg>,
    },
    /// List assistance requests known to the node.
    List {
        /// Only requests in this state (repeatable).
        #[arg(long, ignore_case = true)]
        state: Vec<StateArg>,
        /// Page size.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue from a previous listing's next page token.
        #[arg(long, default_value = "")]
        page_token: String,
        /// Include exercise requests.
        #[arg(long)]
        exercise: bool,
    },
    /// One request with its offers and signed history.
    Show {
        /// Request id.
        request_id: String,
    },
}

#[derive(Args, Debug)]
pub struct RequestArgs {
    /// Title (one line).
    #[arg(long)]
    pub title: String,
    /// What is needed and why.
    #[arg(long)]
    pub description: String,
    /// TLP marking of the request and of every later step.
    #[arg(long, ignore_case = true)]
    pub tlp: TlpArg,
    /// Service requested (repeatable).
    #[arg(long = "service", required = true, ignore_case = true)]
    pub services: Vec<ServiceArg>,
    /// Affected NIS2 sector.
    #[arg(long, ignore_case = true)]
    pub sector: Option<SectorArg>,
    /// The affected entity is important (default: essential).
    #[arg(long)]
    pub important: bool,
    /// RSIT incident class.
    #[arg(long, ignore_case = true)]
    pub rsit: Option<RsitArg>,
    /// Severity.
    #[arg(long, default_value = "high", ignore_case = true)]
    pub severity: SeverityArg,
    /// The incident spills over borders.
    #[arg(long)]
    pub cross_border: bool,
    /// Estimated person-days needed.
    #[arg(long, default_value_t = 0)]
    pub person_days: u32,
    /// Help is needed on site (default: remote).
    #[arg(long)]
    pub on_site: bool,
    /// Mitigation already done.
    #[arg(long, default_value = "")]
    pub mitigation: String,
    /// Offers needed within this many hours.
    #[arg(long, value_name = "HOURS")]
    pub deadline_hours: Option<u64>,
    /// Linked alert message id (repeatable).
    #[arg(long = "alert", value_name = "MESSAGE_ID")]
    pub linked_alerts: Vec<String>,
    /// Exercise traffic (a scenario inject): every later step is exercise too.
    #[arg(long)]
    pub exercise: bool,
    /// Recipient node (repeatable). None: the whole federation (clear/green only).
    #[arg(long = "to", value_name = "NODE")]
    pub recipients: Vec<String>,
    /// Attach evidence (repeatable): a file, or FILE,malware for a malware sample.
    #[arg(long, value_parser = crate::cli::args::parse_attach, value_name = "FILE[,malware]")]
    pub attach: Vec<crate::cli::args::AttachArg>,
}

#[derive(Args, Debug)]
pub struct OfferArgs {
    /// Request id.
    pub request_id: String,
    /// What is offered (one line).
    #[arg(long)]
    pub summary: String,
    /// Capability offered (repeatable).
    #[arg(long = "capability", ignore_case = true)]
    pub capabilities: Vec<ServiceArg>,
    /// Person-days offered.
    #[arg(long, default_value_t = 0)]
    pub person_days: u32,
    /// Conditions of the offer.
    #[arg(long, default_value = "")]
    pub conditions: String,
    /// Funding channel.
    #[arg(long, default_value = "bilateral", ignore_case = true)]
    pub funding: FundingArg,
    /// Attach evidence (repeatable): a file, or FILE,malware for a malware sample.
    #[arg(long, value_parser = crate::cli::args::parse_attach, value_name = "FILE[,malware]")]
    pub attach: Vec<crate::cli::args::AttachArg>,
}

fn st(v: i32) -> &'static str {
    state_label(AssistanceState::try_from(v).unwrap_or(AssistanceState::Unspecified))
}

fn services(v: &[i32]) -> String {
    v.iter()
        .map(|s| {
            service_word(AssistanceService::try_from(*s).unwrap_or(AssistanceService::Unspecified))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn view_text(v: &AssistanceView) -> String {
    let r = v.request.clone().unwrap_or_default();
    let mut s = String::new();
    let _ = writeln!(s, "request   {}", term(&v.request_id));
    let _ = writeln!(s, "requester {}", term(&v.requester));
    let _ = writeln!(
        s,
        "state     {}{}",
        st(v.state),
        if v.overdue {
            "  (OVERDUE: deadline passed, no accepted offer)"
        } else {
            ""
        }
    );
    let _ = writeln!(s, "title     {}", term(&r.title));
    let _ = writeln!(s, "services  {}", services(&r.services));
    if r.deadline.is_some() {
        let _ = writeln!(s, "deadline  {}", ts(&r.deadline));
    }
    if !r.description.is_empty() {
        let _ = writeln!(s, "\n{}\n", term_block(&r.description));
    }
    if !v.offers.is_empty() {
        let _ = writeln!(s, "offers:");
        for o in &v.offers {
            let _ = writeln!(
                s,
                "  {}  {:<10} {:<9} {}",
                term(&o.offer_id),
                term(&o.donor),
                offer_state_label(OfferState::try_from(o.state).unwrap_or(OfferState::Unspecified)),
                term(o.offer.as_ref().map(|x| x.summary.as_str()).unwrap_or(""))
            );
        }
    }
    let _ = writeln!(s, "history:");
    for h in &v.history {
        let _ = writeln!(
            s,
            "  {:<20} {:<10} {}{}",
            ts(&h.at),
            term(&h.actor),
            term(&h.action),
            if h.note.is_empty() {
                String::new()
            } else {
                format!(" — {}", term(&h.note))
            }
        );
    }
    s
}

/// Signs `step` with the files of `attach` (PublishStepWithAttachments).
async fn with_files(
    conn: &Conn,
    step: step_upload_start::Step,
    attach: &[crate::cli::args::AttachArg],
) -> anyhow::Result<()> {
    let (declared, files) = super::client::declare_files(attach).await?;
    let first = StepUpload {
        frame: Some(step_upload::Frame::Start(StepUploadStart {
            step: Some(step),
            attachments: declared,
        })),
    };
    let (frames, reader) = super::client::upload_frames(first, files, |d| StepUpload {
        frame: Some(step_upload::Frame::Data(d)),
    });
    let mut c = connect(conn).await?;
    let r = c.publish_step_with_attachments(frames).await;
    if let Ok(Err(e)) = reader.await {
        return Err(super::error::Failure::usage(format!(
            "reading the attachments: {e}"
        )));
    }
    let r = r.map_err(|s| explain(&conn.node, s))?.into_inner();
    show(conn.json, &r, "certfed.v1.StepUploadResponse", || {
        format!(
            "signed {} with {} attachment(s){}\n",
            term(&r.message_id),
            attach.len(),
            if r.state == 0 {
                String::new()
            } else {
                format!("; request is now {}", st(r.state))
            }
        )
    })
}

pub async fn run(conn: Conn, cmd: AssistCmd) -> anyhow::Result<()> {
    let mut c = connect(&conn).await?;
    let node = conn.node.clone();
    let ex = |s| explain(&node, s);
    let json = conn.json;
    match cmd {
        AssistCmd::Request(a) => {
            let request = AssistanceRequest {
                title: a.title,
                description: a.description,
                tlp: a.tlp.num(),
                services: a.services.iter().map(|s| s.num()).collect(),
                sector: a.sector.map_or(0, |s| s.num()),
                entity_category: if a.important {
                    EntityCategory::Important as i32
                } else {
                    EntityCategory::Essential as i32
                },
                rsit_class: a.rsit.map_or(0, |r| r.num()),
                severity: a.severity.num(),
                cross_border: a.cross_border,
                needs: Some(EstimatedNeeds {
                    skills: vec![],
                    person_days: a.person_days,
                    on_site: a.on_site,
                }),
                mitigation_done: a.mitigation,
                deadline: a.deadline_hours.map(|h| {
                    ms_to_ts(
                        crate::service::now_ms()
                            .saturating_add((h as i64).saturating_mul(3_600_000)),
                    )
                }),
                linked_alerts: a.linked_alerts,
                ..Default::default()
            };
            let call = RequestAssistanceRequest {
                request: Some(request),
                recipients: a.recipients,
                request_id: uuid::Uuid::now_v7().to_string(),
                exercise: a.exercise,
            };
            if !a.attach.is_empty() {
                return with_files(&conn, step_upload_start::Step::Request(call), &a.attach).await;
            }
            let r = c.request_assistance(call).await.map_err(ex)?.into_inner();
            show(json, &r, "certfed.v1.RequestAssistanceResponse", || {
                format!("requested {}\n", term(&r.request_id))
            })
        }
        AssistCmd::Offer(o) => {
            let offer = Offer {
                summary: o.summary,
                capabilities: o.capabilities.iter().map(|s| s.num()).collect(),
                capacity_person_days: o.person_days,
                conditions: o.conditions,
                funding: o.funding.num(),
                ..Default::default()
            };
            let call = OfferAssistanceRequest {
                request_id: o.request_id,
                offer: Some(offer),
                client_request_id: uuid::Uuid::now_v7().to_string(),
            };
            if !o.attach.is_empty() {
                return with_files(&conn, step_upload_start::Step::Offer(call), &o.attach).await;
            }
            let r = c.offer_assistance(call).await.map_err(ex)?.into_inner();
            show(json, &r, "certfed.v1.OfferAssistanceResponse", || {
                format!("offered {}\n", term(&r.offer_id))
            })
        }
        AssistCmd::Decide {
            offer_id,
            accept,
            decline: _,
            note,
            attach,
        } => {
            let call = DecideOfferRequest {
                offer_id,
                accept,
                note,
                request_id: uuid::Uuid::now_v7().to_string(),
            };
            if !attach.is_empty() {
                return with_files(&conn, step_upload_start::Step::Decision(call), &attach).await;
            }
            let r = c.decide_offer(call).await.map_err(ex)?.into_inner();
            show(json, &r, "certfed.v1.DecideOfferResponse", || {
                format!("request is now {}\n", st(r.state))
            })
        }
        AssistCmd::Update {
            request_id,
            state,
            withdraw_offer,
            note,
            attach,
        } => {
            let call = UpdateAssistanceRequest {
                request_id,
                state: state.map_or(0, |s| s.num()),
                note,
                withdraw_offer_id: withdraw_offer.unwrap_or_default(),
                client_request_id: uuid::Uuid::now_v7().to_string(),
            };
            if !attach.is_empty() {
                return with_files(&conn, step_upload_start::Step::Update(call), &attach).await;
            }
            let r = c.update_assistance(call).await.map_err(ex)?.into_inner();
            show(json, &r, "certfed.v1.UpdateAssistanceResponse", || {
                format!("request is now {}\n", st(r.state))
            })
        }
        AssistCmd::List {
            state,
            limit,
            page_token,
            exercise,
        } => {
            let r = c
                .list_assistance_requests(ListAssistanceRequestsRequest {
                    page_size: limit,
                    page_token,
                    states: state.iter().map(|s| s.num()).collect(),
                    include_exercise: exercise,
                })
                .await
                .map_err(ex)?
                .into_inner();
            show(
                json,
                &r,
                "certfed.v1.ListAssistanceRequestsResponse",
                || {
                    let mut s = String::new();
                    let _ = writeln!(
                        s,
                        "{:<36}  {:<10}  {:<10}  {:>6}  TITLE",
                        "REQUEST ID", "REQUESTER", "STATE", "OFFERS"
                    );
                    for v in &r.requests {
                        let _ = writeln!(
                            s,
                            "{:<36}  {:<10}  {:<10}  {:>6}  {}{}{}",
                            term(&v.request_id),
                            term(&v.requester),
                            st(v.state),
                            v.offers.len(),
                            if v.exercise { "[EXERCISE] " } else { "" },
                            term(v.request.as_ref().map(|x| x.title.as_str()).unwrap_or("")),
                            if v.overdue { "  (OVERDUE)" } else { "" }
                        );
                    }
                    if !r.next_page_token.is_empty() {
                        let _ = writeln!(s, "more: --page-token {}", term(&r.next_page_token));
                    }
                    s
                },
            )
        }
        AssistCmd::Show { request_id } => {
            let v = c
                .get_assistance_request(GetAssistanceRequestRequest {
                    request_id,
                    ..Default::default()
                })
                .await
                .map_err(ex)?
                .into_inner();
            show(json, &v, "certfed.v1.AssistanceView", || view_text(&v))
        }
    }
}
