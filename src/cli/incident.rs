//! `certfed incident list|show|link|sight|status|merge|report`.
//!
//! Same invariants as `cli::client`: JSON is the API response in the protobuf
//! JSON mapping; text shown is escaped for the terminal; choice flags are
//! `ValueEnum`s. `report --html FILE` writes one self-contained page
//! (`app::report`) through a temporary file renamed into place, so a reader
//! never sees half a report.
// Requests end with `..Default::default()` on purpose: a new optional proto field
// keeps its default here until the CLI sets it.
#![allow(clippy::needless_update)]
use super::args::{
    IncidentStatusArg, SectorArg, SeverityArg, TlpArg, indicator_word, parse_indicator,
};
use super::client::{Conn, connect, kind_str, sev_str, show, tlp_str, ts};
use super::error::{Failure, explain};
use super::output::{emit, term, term_block};
use crate::domain::assistance::state_label;
use crate::domain::envelope::ms_to_ts;
use crate::domain::incident::status_label;
use crate::proto::v1::*;
use clap::{Args, Subcommand};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum IncidentCmd {
    /// Incidents this node holds, newest first.
    List {
        /// Include resolved incidents.
        #[arg(long)]
        all: bool,
        /// Page size.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue from a previous listing's next page token.
        #[arg(long, default_value = "")]
        page_token: String,
        /// Include exercise incidents.
        #[arg(long)]
        exercise: bool,
    },
    /// The shared picture of one incident as this node sees it.
    Show {
        /// Incident id (the message id of the alert that opened it).
        incident_id: String,
    },
    /// Declare a message (alert, sighting, assistance request, incident) part of an incident.
    Link {
        /// Incident id.
        incident_id: String,
        /// The message to link (e.g. a correlation match shown by `incident show` or `watch`).
        message_id: String,
        /// Why.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Report a sighting: "we observe this too" (of an incident, or of indicators alone).
    Sight(Box<SightArgs>),
    /// Change an incident's status (its opener only).
    Status {
        /// Incident id.
        incident_id: String,
        /// The new status.
        #[arg(ignore_case = true)]
        status: IncidentStatusArg,
        /// A note recorded with the change.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Say that an incident this node opened and another are one (takes effect
    /// once the other's opener says the same).
    Merge {
        /// The incident this node opened.
        incident_id: String,
        /// The incident it is the same as.
        other_incident_id: String,
        /// Why.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Write the situation report: one self-contained HTML page with the
    /// escalation timeline, partners × sectors, indicators and assistance.
    Report {
        /// Incident id.
        incident_id: String,
        /// Output file (written whole, then renamed into place).
        #[arg(long, value_name = "FILE")]
        html: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct SightArgs {
    /// The incident observed. Omit to report indicators alone.
    pub incident_id: Option<String>,
    /// Where it was observed: ISO 3166-1 alpha-2 country code.
    #[arg(long, value_name = "CC")]
    pub country: String,
    /// NIS2 sector hit.
    #[arg(long, ignore_case = true)]
    pub sector: Option<SectorArg>,
    /// Indicator TYPE:VALUE observed (repeatable); types: ip, cidr, domain, url, email, sha256, sha1, md5, cve, asn, text.
    #[arg(long, value_parser = parse_indicator, value_name = "TYPE:VALUE")]
    pub indicator: Vec<Indicator>,
    /// How many times (or entities).
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    /// How severe it is here.
    #[arg(long, ignore_case = true)]
    pub severity: Option<SeverityArg>,
    /// When it was observed (RFC 3339, e.g. 2025-03-01T10:00:00Z; default: now).
    #[arg(long, value_name = "TIME")]
    pub observed: Option<String>,
    /// TLP marking (default: the incident's).
    #[arg(long, ignore_case = true)]
    pub tlp: Option<TlpArg>,
    /// Recipient node (repeatable). Default: the incident's audience.
    #[arg(long = "to", value_name = "NODE")]
    pub recipients: Vec<String>,
    /// Analyst note.
    #[arg(long, default_value = "")]
    pub note: String,
    /// Exercise traffic: a sighting of no incident is signed as exercise;
    /// on an incident, the incident must be an exercise one (refused on a
    /// real incident). Without it, a sighting takes its incident's flag.
    #[arg(long)]
    pub exercise: bool,
    /// Attach evidence (repeatable): a file, or FILE,malware for a malware
    /// sample. It rides on the sighting's TLP and audience (encrypted end to
    /// end for TLP:AMBER and above); the sighting is signed only once every
    /// file has reached the node complete.
    #[arg(long, value_parser = crate::cli::args::parse_attach, value_name = "FILE[,malware]")]
    pub attach: Vec<crate::cli::args::AttachArg>,
}

fn request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn status_word(v: i32) -> &'static str {
    status_label(IncidentStatus::try_from(v).unwrap_or(IncidentStatus::Unspecified))
}

fn sector_word(v: i32) -> &'static str {
    crate::domain::alert::sector_label(Nis2Sector::try_from(v).unwrap_or(Nis2Sector::Unspecified))
}

/// The picture for people.
pub fn situation_text(s: &Situation) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "incident {}  {}  {}  severity {}  opened {} by {}",
        term(&s.incident_id),
        tlp_str(s.tlp),
        status_word(s.status),
        sev_str(s.severity),
        ts(&s.opened),
        term(&s.opener)
    );
    if s.exercise {
        let _ = writeln!(o, "  EXERCISE: an exercise incident, not a real one");
    }
    if !s.title.is_empty() {
        let _ = writeln!(o, "  {}", term(&s.title));
    }
    if !s.status_note.is_empty() {
        let _ = writeln!(o, "  status note: {}", term_block(&s.status_note));
    }
    let join = |v: &[String]| term(&v.join(", ")).into_owned();
    let _ = writeln!(
        o,
        "affected: {} partner(s): {}\nreporting: {}\ncountries: {}\nsectors:   {}",
        s.partners_affected.len(),
        join(&s.partners_affected),
        join(&s.partners_reporting),
        join(&s.countries),
        s.sectors
            .iter()
            .map(|x| sector_word(*x))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (label, v) in [
        ("merged", &s.merged),
        ("parts", &s.parts),
        ("part of", &s.part_of),
    ] {
        if !v.is_empty() {
            let _ = writeln!(o, "{label}: {}", join(v));
        }
    }
    let _ = writeln!(o, "\ntimeline ({} contributions):", s.contributions);
    for p in &s.timeline {
        let _ = writeln!(
            o,
            "  {}  {:<10}  {:<15}  {:<16}  now {:<8}  {} affected  {}",
            ts(&p.at),
            term(&p.partner),
            kind_str(p.kind),
            tlp_str(p.tlp),
            sev_str(p.severity_now),
            p.affected_partners,
            term(&p.summary)
        );
    }
    if !s.indicators.is_empty() {
        let _ = writeln!(o, "\nindicators:");
        for i in &s.indicators {
            let ind = i.indicator.clone().unwrap_or_default();
            let _ = writeln!(
                o,
                "  {:<7} {}  seen by {} ({})  first {}  last {}  observations {}",
                indicator_word(ind.r#type),
                term(&ind.value),
                i.partners.len(),
                join(&i.partners),
                ts(&i.first_seen),
                ts(&i.last_seen),
                i.observations
            );
        }
    }
    if !s.assistance.is_empty() {
        let _ = writeln!(o, "\nassistance:");
        for a in &s.assistance {
            let st = AssistanceState::try_from(a.state).unwrap_or(AssistanceState::Unspecified);
            let _ = writeln!(
                o,
                "  {}  {}  {}  {}",
                term(&a.request_id),
                term(&a.requester),
                if st == AssistanceState::Unspecified {
                    "(not readable here)"
                } else {
                    state_label(st)
                },
                term(&a.title)
            );
        }
    }
    if !s.restricted.is_empty() {
        let _ = writeln!(o, "\nknown only to others (counts, not content):");
        for r in &s.restricted {
            let _ = writeln!(
                o,
                "  {} {} {} from {}",
                r.count,
                tlp_str(r.tlp),
                kind_str(r.kind),
                term(&r.origin)
            );
        }
    }
    if !s.pending_merges.is_empty() {
        let _ = writeln!(o, "\nmerges waiting for the other opener:");
        for m in &s.pending_merges {
            let _ = writeln!(
                o,
                "  {} proposed {} = {}",
                term(&m.proposed_by),
                term(&m.incident_id),
                term(&m.other_incident_id)
            );
        }
    }
    if !s.refused.is_empty() {
        let _ = writeln!(o, "\nrefused contributions:");
        for r in &s.refused {
            let _ = writeln!(
                o,
                "  {} {} from {}: {}",
                term(&r.message_id),
                kind_str(r.kind),
                term(&r.origin),
                term(&r.reason)
            );
        }
    }
    if !s.matches.is_empty() {
        let _ = writeln!(
            o,
            "\ncorrelation matches (link with `certfed incident link ID MESSAGE_ID`):"
        );
        for m in &s.matches {
            let _ = writeln!(
                o,
                "  {} {} from {} shares {}",
                term(&m.message_id),
                kind_str(m.kind),
                term(&m.origin),
                term(&m.indicator.clone().unwrap_or_default().value)
            );
        }
    }
    let _ = writeln!(o, "\ndigest {}", term(&s.digest));
    o
}

/// Writes `text` to `path` through a temporary file in the same folder.
fn write_whole(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .map_err(|e| anyhow::anyhow!("{}: cannot write there: {e}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.error))?;
    Ok(())
}

fn parse_time(s: &str) -> anyhow::Result<prost_types::Timestamp> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            Failure::usage(format!(
                "--observed: {} is not an RFC 3339 time such as 2025-03-01T10:00:00Z ({e})",
                term(s)
            ))
        })?;
    Ok(ms_to_ts(
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX),
    ))
}

pub async fn run(conn: Conn, cmd: IncidentCmd) -> anyhow::Result<()> {
    let json = conn.json;
    if let IncidentCmd::Sight(a) = &cmd
        && let Some(t) = &a.observed
    {
        // A bad time is a usage error before anything is sent.
        parse_time(t)?;
    }
    let mut c = connect(&conn).await?;
    let node = conn.node.clone();
    let ex = |s| explain(&node, s);
    match cmd {
        IncidentCmd::List {
            all,
            limit,
            page_token,
            exercise,
        } => {
            let r = c
                .list_incidents(ListIncidentsRequest {
                    page_size: limit,
                    page_token,
                    include_resolved: all,
                    include_exercise: exercise,
                })
                .await
                .map_err(ex)?
                .into_inner();
            show(json, &r, "certfed.v1.ListIncidentsResponse", || {
                let mut s = String::new();
                let _ = writeln!(
                    s,
                    "{:<36}  {:<10}  {:<16}  {:<13}  {:<8}  {:>8}  {:>7}  TITLE",
                    "INCIDENT", "OPENER", "TLP", "STATUS", "SEVERITY", "AFFECTED", "MATCHES"
                );
                for i in &r.incidents {
                    let _ = writeln!(
                        s,
                        "{:<36}  {:<10}  {:<16}  {:<13}  {:<8}  {:>8}  {:>7}  {}{}",
                        term(&i.incident_id),
                        term(&i.opener),
                        tlp_str(i.tlp),
                        status_word(i.status),
                        sev_str(i.severity),
                        i.partners_affected,
                        i.matches,
                        if i.exercise { "[EXERCISE] " } else { "" },
                        term(&i.title)
                    );
                }
                if !r.next_page_token.is_empty() {
                    let _ = writeln!(s, "more: --page-token {}", term(&r.next_page_token));
                }
                s
            })
        }
        IncidentCmd::Show { incident_id } => {
            let r = c
                .get_situation(GetSituationRequest { incident_id })
                .await
                .map_err(ex)?
                .into_inner();
            show(json, &r, "certfed.v1.Situation", || situation_text(&r))
        }
        IncidentCmd::Link {
            incident_id,
            message_id,
            note,
        } => {
            let r = c
                .link_to_incident(LinkToIncidentRequest {
                    incident_id,
                    message_id,
                    note,
                    request_id: request_id(),
                    ..Default::default()
                })
                .await
                .map_err(ex)?
                .into_inner();
            show(json, &r, "certfed.v1.LinkToIncidentResponse", || {
                format!("linked ({})\n", term(&r.message_id))
            })
        }
        IncidentCmd::Sight(a) => {
            let observed = a.observed.as_deref().map(parse_time).transpose()?;
            let req = ReportSightingRequest {
                sighting: Some(Sighting {
                    incident_id: a.incident_id.unwrap_or_default(),
                    indicators: a.indicator,
                    country: a.country,
                    sector: a.sector.map_or(0, |s| s.num()),
                    observed,
                    count: a.count,
                    severity: a.severity.map_or(0, |s| s.num()),
                    note: a.note,
                    tlp: a.tlp.map_or(0, |t| t.num()),
                }),
                recipients: a.recipients,
                request_id: request_id(),
                exercise: a.exercise.then_some(true),
            };
            let r = if a.attach.is_empty() {
                c.report_sighting(req).await.map_err(ex)?.into_inner()
            } else {
                let (declared, files) = super::client::declare_files(&a.attach).await?;
                let first = SightingUpload {
                    frame: Some(sighting_upload::Frame::Start(SightingUploadStart {
                        sighting: Some(req),
                        attachments: declared,
                    })),
                };
                let (frames, reader) =
                    super::client::upload_frames(first, files, |d| SightingUpload {
                        frame: Some(sighting_upload::Frame::Data(d)),
                    });
                let r = c.report_sighting_with_attachments(frames).await;
                if let Ok(Err(e)) = reader.await {
                    return Err(Failure::usage(format!("reading the attachments: {e}")));
                }
                r.map_err(ex)?.into_inner()
            };
            let n = a.attach.len();
            show(json, &r, "certfed.v1.ReportSightingResponse", || {
                if n == 0 {
                    format!("sighting reported ({})\n", term(&r.message_id))
                } else {
                    format!(
                        "sighting reported ({}) with {n} attachment(s)\n",
                        term(&r.message_id)
                    )
                }
            })
        }
        IncidentCmd::Status {
            incident_id,
            status,
            note,
        } => {
            let r = c
                .set_incident_status(SetIncidentStatusRequest {
                    incident_id,
                    status: status.num(),
                    note,
                    request_id: request_id(),
                    ..Default::default()
                })
                .await
                .map_err(ex)?
                .into_inner();
            show(json, &r, "certfed.v1.SetIncidentStatusResponse", || {
                format!(
                    "status {} ({})\n",
                    status_label(status.0),
                    term(&r.message_id)
                )
            })
        }
        IncidentCmd::Merge {
            incident_id,
            other_incident_id,
            note,
        } => {
            let r = c
                .merge_incidents(MergeIncidentsRequest {
                    incident_id,
                    other_incident_id,
                    note,
                    request_id: request_id(),
                    ..Default::default()
                })
                .await
                .map_err(ex)?
                .into_inner();
            show(json, &r, "certfed.v1.MergeIncidentsResponse", || {
                if r.merged {
                    format!(
                        "merged: the incidents are one now ({})\n",
                        term(&r.message_id)
                    )
                } else {
                    format!(
                        "merge proposed; it takes effect once the other incident's opener merges too ({})\n",
                        term(&r.message_id)
                    )
                }
            })
        }
        IncidentCmd::Report { incident_id, html } => {
            let s = c
                .get_situation(GetSituationRequest { incident_id })
                .await
                .map_err(ex)?
                .into_inner();
            let me = c
                .get_node_info(GetNodeInfoRequest {})
                .await
                .map_err(ex)?
                .into_inner()
                .node_id;
            let page = crate::app::report::render(&s, &me, crate::service::now_ms());
            write_whole(&html, &page)?;
            if json {
                show(true, &s, "certfed.v1.Situation", String::new)
            } else {
                emit(&format!(
                    "wrote {} ({} bytes): incident {}, {} contributions\n",
                    term(&html.display().to_string()),
                    page.len(),
                    term(&s.incident_id),
                    s.contributions
                ))
            }
        }
    }
}
