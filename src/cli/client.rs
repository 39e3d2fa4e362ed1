//! Operator client subcommands: the Operator API over mutual TLS, with text
//! for people by default and, with `--json`, the response message in the
//! protobuf JSON mapping (what grpcurl prints for the same call).
//!
//! Invariants: every value shown in text goes through `output::term` (a
//! partner's text cannot drive the terminal); request messages are built with
//! `..Default::default()` so new optional proto fields keep their defaults;
//! a wrong flag value is a usage error (exit 2) before anything is sent.
// Requests end with `..Default::default()` on purpose: a new optional proto field
// (e.g. a request id) keeps its default here until the CLI sets it.
#![allow(clippy::needless_update)]
use crate::cli::args::{SectorArg, SeverityArg, TlpArg, indicator_word, parse_indicator, tlp_word};
use crate::cli::error::{Failure, explain};
use crate::cli::output::{emit, json_line, json_pretty, proto_value, term, term_block};
use crate::domain::alert::{
    rsit_label, rsit_type_label, sector_label, severity_label, subsector_label,
};
use crate::domain::envelope::ms_to_ts;
use crate::domain::identity::Identity;
use crate::proto::v1::operator_client::OperatorClient;
use crate::proto::v1::*;
use crate::transport::{client, tls};
use clap::{Args, Subcommand};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;
use tonic::transport::Channel;

/// The port of the packaged configuration (`/etc/certfed/certfed.toml`).
pub const DEFAULT_NODE: &str = "127.0.0.1:7700";

/// Where the node is and the operator's credentials. The flags are global, so
/// they may come before or after a nested subcommand (`certfed alert publish
/// --node … --json` and `certfed alert --node … publish` both work).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Connection")]
pub struct Conn {
    /// Node address, host:port (the packaged configuration listens on 7700).
    /// For an active/standby pair, both addresses separated by a comma
    /// (a:7700,b:7700): the one whose health says SERVING is used.
    #[arg(long, env = "CERTFED_NODE", hide_env_values = true, default_value = DEFAULT_NODE, global = true, value_name = "HOST:PORT[,HOST:PORT]")]
    pub node: String,
    /// Federation CA certificate (PEM). Required.
    #[arg(
        long,
        env = "CERTFED_CA",
        hide_env_values = true,
        global = true,
        value_name = "FILE"
    )]
    pub ca: Option<PathBuf>,
    /// Operator certificate (PEM). Required.
    #[arg(
        long,
        env = "CERTFED_CERT",
        hide_env_values = true,
        global = true,
        value_name = "FILE"
    )]
    pub cert: Option<PathBuf>,
    /// Operator private key (PEM, mode 0600). Required.
    #[arg(
        long,
        env = "CERTFED_KEY",
        hide_env_values = true,
        global = true,
        value_name = "FILE"
    )]
    pub key: Option<PathBuf>,
    /// Print the API response as JSON (protobuf JSON mapping, as grpcurl prints it).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum AlertCmd {
    /// Sign and send an alert.
    Publish(Box<PublishArgs>),
    /// List alerts held by the node, newest first.
    List {
        /// Minimum severity.
        #[arg(long, ignore_case = true)]
        min_severity: Option<SeverityArg>,
        /// Only this TLP (repeatable).
        #[arg(long, ignore_case = true)]
        tlp: Vec<TlpArg>,
        /// Only this NIS2 sector (repeatable).
        #[arg(long, ignore_case = true)]
        sector: Vec<SectorArg>,
        /// Only from this origin node (repeatable).
        #[arg(long, value_name = "NODE")]
        origin: Vec<String>,
        /// Include exercise traffic.
        #[arg(long)]
        exercise: bool,
        /// Page size.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue from a previous listing's next page token.
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Show one message: origin, payload, path and chain of custody, and
    /// whether it was superseded or retracted.
    Get {
        /// Message id.
        message_id: String,
    },
    /// Record that you have seen a message (a receipt goes to its origin).
    Ack {
        /// Message id.
        message_id: String,
    },
    /// Write alerts as a STIX 2.1 bundle or MISP events.
    Export(Box<crate::cli::exchange::ExportArgs>),
    /// Publish the alerts of a STIX 2.1 bundle or MISP event file (all or nothing).
    Import(Box<crate::cli::exchange::ImportArgs>),
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// Title (one line).
    #[arg(long)]
    pub title: String,
    /// Description (free text).
    #[arg(long, default_value = "")]
    pub description: String,
    /// TLP marking.
    #[arg(long, ignore_case = true)]
    pub tlp: TlpArg,
    /// Severity.
    #[arg(long, ignore_case = true)]
    pub severity: SeverityArg,
    /// RSIT incident class.
    #[arg(long, ignore_case = true)]
    pub rsit: Option<crate::cli::args::RsitArg>,
    /// RSIT incident type within the class (MISP rsit taxonomy, e.g. system-compromise).
    #[arg(long, ignore_case = true, value_name = "TYPE")]
    pub rsit_type: Option<crate::cli::args::RsitTypeArg>,
    /// NIS2 sector (repeatable).
    #[arg(long, ignore_case = true)]
    pub sector: Vec<SectorArg>,
    /// NIS2 subsector (repeatable; its sector must be given with --sector too).
    #[arg(long, ignore_case = true)]
    pub subsector: Vec<crate::cli::args::SubsectorArg>,
    /// Affected country, ISO 3166-1 alpha-2 (repeatable).
    #[arg(long, value_name = "CC")]
    pub country: Vec<String>,
    /// Indicator TYPE:VALUE (repeatable); types: ip, cidr, domain, url, email, sha256, sha1, md5, cve, asn, text.
    #[arg(long, value_parser = parse_indicator, value_name = "TYPE:VALUE")]
    pub indicator: Vec<Indicator>,
    /// Reference URL or document id (repeatable).
    #[arg(long)]
    pub reference: Vec<String>,
    /// Recipient node (repeatable). None: the whole federation (clear/green only).
    #[arg(long = "to", value_name = "NODE")]
    pub recipients: Vec<String>,
    /// Expire the alert this many hours from now.
    #[arg(long, value_name = "HOURS")]
    pub expires_in_hours: Option<u64>,
    /// Message id of an earlier alert of this node that this one updates.
    #[arg(long, value_name = "MESSAGE_ID")]
    pub supersedes: Option<String>,
    /// With --supersedes: retract that alert instead of updating it.
    #[arg(long, requires = "supersedes")]
    pub retract: bool,
    /// Mark as exercise traffic.
    #[arg(long)]
    pub exercise: bool,
    /// Open an incident with this alert (its message id becomes the incident id).
    #[arg(long, conflicts_with = "incident")]
    pub open_incident: bool,
    /// Contribute this alert to an incident (its TLP at least the incident's).
    #[arg(long, value_name = "INCIDENT_ID")]
    pub incident: Option<String>,
    /// Attach an evidence file (repeatable); `FILE,malware` flags a malware
    /// sample. Encrypted end to end for TLP:AMBER and above; the alert is
    /// published only once every file has reached the node complete.
    #[arg(long, value_parser = crate::cli::args::parse_attach, value_name = "FILE[,malware]")]
    pub attach: Vec<crate::cli::args::AttachArg>,
}

/// Connects to the node with the operator's certificate.
pub async fn connect(conn: &Conn) -> anyhow::Result<OperatorClient<Channel>> {
    // Global flags cannot be required by clap itself; say which one is missing.
    let need = |v: &Option<PathBuf>, flag: &str, var: &str| {
        v.clone().ok_or_else(|| {
            Failure::usage(format!(
                "missing {flag}: the operator credentials need --ca, --cert and --key (or {var})"
            ))
        })
    };
    let ca = need(&conn.ca, "--ca", "CERTFED_CA")?;
    let cert = need(&conn.cert, "--cert", "CERTFED_CERT")?;
    let key = need(&conn.key, "--key", "CERTFED_KEY")?;
    let material = tls::load_material(&tls::TlsFiles {
        ca,
        cert: cert.clone(),
        key,
        crls: vec![],
    })
    .map_err(|e| Failure::usage(e.to_string()))?;
    let identity = Identity::from_certificate(material.chain[0].as_ref())
        .map_err(|e| Failure::usage(format!("{}: {e}", cert.display())))?;
    if let Identity::Node(n) = &identity {
        return Err(Failure::usage(format!(
            "{} is the node certificate of {n}; the Operator API needs an operator certificate (create one with `certfed pki operator`)",
            cert.display()
        )));
    }
    let cfg = tls::client_config(&material).map_err(|e| Failure::usage(e.to_string()))?;
    let addrs: Vec<&str> = conn
        .node
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    let channel = |addr: &str| {
        client::channel(addr, cfg.clone(), None, Duration::from_secs(5))
            .map_err(|e| Failure::usage(format!("--node {addr}: {e:#}")))
    };
    let ch = match addrs.as_slice() {
        [] => return Err(Failure::usage("--node: give host:port".to_string())),
        [one] => channel(one)?,
        several => {
            let mut answers = Vec::new();
            let mut found = None;
            for addr in several {
                let ch = channel(addr)?;
                match serving(ch.clone()).await {
                    Ok(()) => {
                        found = Some(ch);
                        break;
                    }
                    Err(why) => answers.push(format!("{addr}: {why}")),
                }
            }
            found.ok_or_else(|| {
                anyhow::Error::from(Failure::new(
                    crate::cli::error::exit_for(tonic::Code::Unavailable),
                    tonic::Code::Unavailable,
                    format!(
                    "no address of --node {} serves the Operator API now ({}); during a takeover the standby becomes active within storage.lease_secs: retry shortly",
                    conn.node,
                    answers.join("; ")
                ),
                ))
            })?
        }
    };
    Ok(OperatorClient::new(ch).max_decoding_message_size(64 * 1024 * 1024))
}

/// Whether the node behind `ch` serves the Operator API (the active member
/// of a pair does; a standby answers NOT_SERVING).
async fn serving(ch: Channel) -> Result<(), String> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mut h = HealthClient::new(ch);
    let ask = h.check(HealthCheckRequest {
        service: "certfed.v1.Operator".into(),
    });
    match tokio::time::timeout(Duration::from_secs(5), ask).await {
        Err(_) => Err("no answer within 5 s".into()),
        Ok(Err(s)) => Err(format!("{:?}: {}", s.code(), term(s.message()))),
        Ok(Ok(r)) => match r.into_inner().status {
            1 => Ok(()),
            2 => Err("NOT_SERVING (a standby, or stopping)".into()),
            other => Err(format!("health status {other}")),
        },
    }
}

/// RFC 3339 in UTC, to the second (empty when unset).
pub fn ts(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.seconds).ok())
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Prints `msg` (of proto type `type_name`) as JSON, or `text` for people.
pub fn show<M: prost::Message>(
    json: bool,
    msg: &M,
    type_name: &str,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        emit(&json_pretty(&proto_value(msg, type_name)?))
    } else {
        emit(&text())
    }
}

pub fn tlp_str(t: i32) -> &'static str {
    crate::domain::policy::tlp_label(Tlp::try_from(t).unwrap_or(Tlp::Unspecified))
}

pub fn sev_str(s: i32) -> &'static str {
    severity_label(Severity::try_from(s).unwrap_or(Severity::Unspecified))
}

pub fn kind_str(k: i32) -> &'static str {
    match MessageKind::try_from(k) {
        Ok(MessageKind::Alert) => "alert",
        Ok(MessageKind::AssistanceRequest) => "assistance request",
        Ok(MessageKind::Offer) => "assistance offer",
        Ok(MessageKind::Decision) => "assistance decision",
        Ok(MessageKind::Status) => "assistance status",
        Ok(MessageKind::Receipt) => "receipt",
        Ok(MessageKind::Sighting) => "sighting",
        Ok(MessageKind::IncidentStatus) => "incident status",
        Ok(MessageKind::IncidentLink) => "incident link",
        Ok(MessageKind::IncidentMerge) => "incident merge",
        Ok(MessageKind::Roster) => "roster",
        _ => "unknown",
    }
}

/// Builds the PublishAlertRequest from command-line words.
pub fn publish_request(a: &PublishArgs) -> PublishAlertRequest {
    let revision = match (&a.supersedes, a.retract) {
        (None, _) => Revision::Original,
        (Some(_), false) => Revision::Update,
        (Some(_), true) => Revision::Retraction,
    };
    let expires = a.expires_in_hours.map(|h| {
        ms_to_ts(crate::service::now_ms().saturating_add((h as i64).saturating_mul(3_600_000)))
    });
    PublishAlertRequest {
        alert: Some(Alert {
            title: a.title.clone(),
            description: a.description.clone(),
            tlp: a.tlp.num(),
            severity: a.severity.num(),
            rsit_class: a.rsit.map_or(0, |r| r.num()),
            sectors: a.sector.iter().map(|s| s.num()).collect(),
            affected_countries: a.country.clone(),
            indicators: a.indicator.clone(),
            references: a.reference.clone(),
            expires,
            revision: revision as i32,
            supersedes: a.supersedes.clone().unwrap_or_default(),
            exercise: a.exercise,
            rsit_type: a.rsit_type.map_or(0, |t| t.num()),
            subsectors: a.subsector.iter().map(|s| s.num()).collect(),
        }),
        recipients: a.recipients.clone(),
        request_id: uuid::Uuid::now_v7().to_string(),
        open_incident: a.open_incident,
        incident_id: a.incident.clone().unwrap_or_default(),
        validate_only: false,
    }
}

pub async fn info(conn: Conn) -> anyhow::Result<()> {
    let mut c = connect(&conn).await?;
    let i = c
        .get_node_info(GetNodeInfoRequest::default())
        .await
        .map_err(|s| explain(&conn.node, s))?
        .into_inner();
    show(conn.json, &i, "certfed.v1.NodeInfo", || {
        let mut s = String::new();
        let _ = writeln!(s, "node            {}", term(&i.node_id));
        let _ = writeln!(s, "version         {}", term(&i.version));
        let _ = writeln!(s, "listen          {}", term(&i.listen));
        let _ = writeln!(s, "signing key     {}", term(&i.signing_key_id));
        if !i.next_signing_key_id.is_empty() {
            let _ = writeln!(
                s,
                "next key        {} (used once a roster lists it)",
                term(&i.next_signing_key_id)
            );
        }
        let _ = writeln!(s, "peers           {}", term(&i.peers.join(", ")));
        let _ = writeln!(s, "members         {}", term(&i.members.join(", ")));
        let _ = writeln!(s, "started         {}", ts(&i.started));
        let _ = writeln!(s, "stored messages {}", i.stored_messages);
        if i.roster_version > 0 {
            let _ = writeln!(
                s,
                "roster          version {}, expires {}",
                i.roster_version,
                ts(&i.roster_expires)
            );
        }
        s
    })
}

/// Text of one alert's payload fields (shared by `alert get` and `watch`).
fn alert_text(s: &mut String, a: &Alert) {
    let _ = writeln!(s, "title       {}", term(&a.title));
    let _ = writeln!(s, "severity    {}", sev_str(a.severity));
    let _ = writeln!(
        s,
        "rsit class  {}",
        rsit_label(RsitClass::try_from(a.rsit_class).unwrap_or(RsitClass::Unspecified))
    );
    if a.rsit_type != 0 {
        let _ = writeln!(
            s,
            "rsit type   {}",
            rsit_type_label(RsitType::try_from(a.rsit_type).unwrap_or(RsitType::Unspecified))
        );
    }
    if !a.sectors.is_empty() {
        let sectors: Vec<&str> = a
            .sectors
            .iter()
            .map(|x| sector_label(Nis2Sector::try_from(*x).unwrap_or(Nis2Sector::Unspecified)))
            .collect();
        let _ = writeln!(s, "sectors     {}", sectors.join(", "));
    }
    if !a.subsectors.is_empty() {
        let subs: Vec<&str> = a
            .subsectors
            .iter()
            .map(|x| {
                subsector_label(Nis2Subsector::try_from(*x).unwrap_or(Nis2Subsector::Unspecified))
            })
            .collect();
        let _ = writeln!(s, "subsectors  {}", subs.join(", "));
    }
    if !a.affected_countries.is_empty() {
        let _ = writeln!(s, "countries   {}", term(&a.affected_countries.join(", ")));
    }
    if a.expires.is_some() {
        let _ = writeln!(s, "expires     {}", ts(&a.expires));
    }
    match Revision::try_from(a.revision) {
        Ok(Revision::Update) => {
            let _ = writeln!(s, "revision    update of {}", term(&a.supersedes));
        }
        Ok(Revision::Retraction) => {
            let _ = writeln!(s, "revision    RETRACTION of {}", term(&a.supersedes));
        }
        _ => {}
    }
    if a.exercise {
        let _ = writeln!(s, "exercise    yes (exercise traffic, not a real incident)");
    }
    for r in &a.references {
        let _ = writeln!(s, "reference   {}", term(r));
    }
    if !a.indicators.is_empty() {
        let _ = writeln!(s, "indicators");
        for i in &a.indicators {
            let _ = writeln!(
                s,
                "  {:<7} {}{}",
                indicator_word(i.r#type),
                term(&i.value),
                if i.comment.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", term(&i.comment))
                }
            );
        }
    }
    if !a.description.is_empty() {
        let _ = writeln!(s, "\n{}", term_block(&a.description));
    }
}

pub async fn alert(conn: Conn, cmd: AlertCmd) -> anyhow::Result<()> {
    let mut c = connect(&conn).await?;
    let node = conn.node.clone();
    match cmd {
        AlertCmd::Export(a) => crate::cli::exchange::export(&mut c, &node, conn.json, *a).await,
        AlertCmd::Import(a) => crate::cli::exchange::import(&mut c, &node, conn.json, *a).await,
        AlertCmd::Publish(a) if !a.attach.is_empty() => {
            publish_with_attachments(&conn, publish_request(&a), &a.attach).await
        }
        AlertCmd::Publish(a) => {
            let r = c
                .publish_alert(publish_request(&a))
                .await
                .map_err(|s| explain(&node, s))?
                .into_inner();
            show(conn.json, &r, "certfed.v1.PublishAlertResponse", || {
                format!("published {}\n", term(&r.message_id))
            })
        }
        AlertCmd::List {
            min_severity,
            tlp,
            sector,
            origin,
            exercise,
            limit,
            page_token,
        } => {
            let filter = AlertFilter {
                min_severity: min_severity.map_or(0, |s| s.num()),
                tlp: tlp.iter().map(|t| t.num()).collect(),
                sectors: sector.iter().map(|s| s.num()).collect(),
                origins: origin,
                include_exercise: exercise,
                ..Default::default()
            };
            let r = c
                .list_alerts(ListAlertsRequest {
                    filter: Some(filter),
                    page_size: limit,
                    page_token,
                    ..Default::default()
                })
                .await
                .map_err(|s| explain(&node, s))?
                .into_inner();
            show(conn.json, &r, "certfed.v1.ListAlertsResponse", || {
                let mut s = String::new();
                let _ = writeln!(
                    s,
                    "{:<36}  {:<10}  {:<16}  {:<8}  {:<20}  TITLE",
                    "MESSAGE ID", "ORIGIN", "TLP", "SEVERITY", "CREATED"
                );
                for a in &r.alerts {
                    let al = a.alert.clone().unwrap_or_default();
                    let _ = writeln!(
                        s,
                        "{:<36}  {:<10}  {:<16}  {:<8}  {:<20}  {}{}{}",
                        term(&a.message_id),
                        term(&a.origin),
                        tlp_str(al.tlp),
                        sev_str(al.severity),
                        ts(&a.created),
                        if al.exercise { "[EXERCISE] " } else { "" },
                        term(&al.title),
                        if a.superseded_by.is_empty() {
                            ""
                        } else {
                            "  (superseded)"
                        }
                    );
                }
                if !r.next_page_token.is_empty() {
                    let _ = writeln!(s, "more: --page-token {}", term(&r.next_page_token));
                }
                s
            })
        }
        AlertCmd::Get { message_id } => {
            let m = c
                .get_message(GetMessageRequest {
                    message_id,
                    ..Default::default()
                })
                .await
                .map_err(|s| explain(&node, s))?
                .into_inner();
            // Whether a superseding message is an update or a retraction.
            let superseded = if m.superseded_by.is_empty() {
                None
            } else {
                let later = c
                    .get_message(GetMessageRequest {
                        message_id: m.superseded_by.clone(),
                        ..Default::default()
                    })
                    .await
                    .ok()
                    .map(|r| r.into_inner());
                let what = match later
                    .as_ref()
                    .and_then(|l| l.alert.as_ref())
                    .map(|a| Revision::try_from(a.revision))
                {
                    Some(Ok(Revision::Retraction)) => "RETRACTED by",
                    Some(_) => "superseded (updated) by",
                    None => "superseded by",
                };
                Some(format!("{what} {}", term(&m.superseded_by)))
            };
            show(conn.json, &m, "certfed.v1.MessageView", || {
                let mut s = String::new();
                let _ = writeln!(s, "message     {}", term(&m.message_id));
                let _ = writeln!(s, "kind        {}", kind_str(m.kind));
                let _ = writeln!(s, "origin      {}", term(&m.origin));
                let _ = writeln!(s, "tlp         {}", tlp_str(m.tlp));
                if !m.recipients.is_empty() {
                    let _ = writeln!(s, "to          {}", term(&m.recipients.join(", ")));
                }
                let _ = writeln!(s, "created     {}", ts(&m.created));
                let _ = writeln!(s, "received    {}", ts(&m.received));
                if m.acknowledged.is_some() {
                    let _ = writeln!(s, "acknowledged {}", ts(&m.acknowledged));
                }
                if let Some(sup) = &superseded {
                    let _ = writeln!(s, "status      {sup}");
                }
                if !m.request_id.is_empty() {
                    let _ = writeln!(s, "request     {}", term(&m.request_id));
                }
                let path: Vec<String> = m
                    .path
                    .iter()
                    .map(|h| format!("{} ({})", term(&h.node_id), ts(&h.at)))
                    .collect();
                let _ = writeln!(s, "path        {}", path.join(" -> "));
                for h in &m.custody {
                    let _ = writeln!(
                        s,
                        "custody     {} received from {} at {}, forwarded to [{}]{}",
                        term(&h.relay),
                        term(&h.received_from),
                        ts(&h.received_at),
                        term(&h.forwarded_to.join(", ")),
                        if h.decision.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", term(&h.decision))
                        }
                    );
                }
                if let Some(a) = &m.alert {
                    alert_text(&mut s, a);
                }
                s
            })
        }
        AlertCmd::Ack { message_id } => {
            let r = c
                .acknowledge_message(AcknowledgeMessageRequest {
                    message_id: message_id.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|s| explain(&node, s))?
                .into_inner();
            show(
                conn.json,
                &r,
                "certfed.v1.AcknowledgeMessageResponse",
                || {
                    format!(
                        "acknowledged {} at {}\n",
                        term(&message_id),
                        ts(&r.acknowledged)
                    )
                },
            )
        }
    }
}

fn link_state(s: i32) -> &'static str {
    match LinkState::try_from(s) {
        Ok(LinkState::Up) => "up",
        Ok(LinkState::Down) => "down",
        Ok(LinkState::Connecting) => "connecting",
        _ => "unknown",
    }
}

fn delivery_state(s: i32) -> &'static str {
    match DeliveryState::try_from(s) {
        Ok(DeliveryState::Queued) => "queued",
        Ok(DeliveryState::Delivered) => "delivered",
        Ok(DeliveryState::Rejected) => "rejected",
        Ok(DeliveryState::Relayed) => "relayed",
        Ok(DeliveryState::Acknowledged) => "acknowledged",
        Ok(DeliveryState::Deferred) => "deferred",
        Ok(DeliveryState::NotNeeded) => "not needed",
        _ => "unknown",
    }
}

/// One line about a reconciliation.
fn reconcile_line(r: &ReconcileView) -> String {
    let mut what = format!(
        "difference {}, sent {}, received {}, {} round(s), {} bytes",
        r.difference, r.sent, r.received, r.rounds, r.bytes
    );
    if r.refused_before > 0 {
        what.push_str(&format!(
            ", {} not offered again (refused by the peer within 24 h)",
            r.refused_before
        ));
    }
    if r.error.is_empty() {
        format!("{} (started by {}): {what}", ts(&r.at), term(&r.started_by))
    } else {
        format!(
            "{} (started by {}): FAILED: {} ({what})",
            ts(&r.at),
            term(&r.started_by),
            term(&r.error)
        )
    }
}

pub async fn peers(
    conn: Conn,
    reconcile: Option<String>,
    retry_refused: bool,
) -> anyhow::Result<()> {
    let mut c = connect(&conn).await?;
    if let Some(peer_id) = reconcile {
        let r = c
            .reconcile_peer(ReconcilePeerRequest {
                peer_id,
                retry_refused,
            })
            .await
            .map_err(|s| explain(&conn.node, s))?
            .into_inner();
        let view = r.result.clone().unwrap_or_default();
        show(conn.json, &r, "certfed.v1.ReconcilePeerResponse", || {
            format!("reconciled: {}\n", reconcile_line(&view))
        })?;
        if !view.error.is_empty() {
            anyhow::bail!("reconciliation failed: {}", view.error);
        }
        return Ok(());
    }
    let mut all = ListPeersResponse::default();
    let mut token = String::new();
    loop {
        let r = c
            .list_peers(ListPeersRequest {
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
            .await
            .map_err(|s| explain(&conn.node, s))?
            .into_inner();
        all.peers.extend(r.peers);
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    show(conn.json, &all, "certfed.v1.ListPeersResponse", || {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<12}  {:<22}  {:<10}  {:<16}  {:>7}  {:<20}  {:<11}  LAST ERROR",
            "PEER", "ENDPOINT", "STATE", "MAX TLP", "OUTBOX", "LAST CONTACT", "ROSTER"
        );
        for p in &all.peers {
            // The peer's roster version (Hello); "behind" when older than ours.
            let roster = match (p.roster_version, p.roster_behind) {
                (0, _) => "-".to_string(),
                (v, true) => format!("v{v} behind"),
                (v, false) => format!("v{v}"),
            };
            let _ = writeln!(
                s,
                "{:<12}  {:<22}  {:<10}  {:<16}  {:>7}  {:<20}  {:<11}  {}",
                term(&p.peer_id),
                term(&p.endpoint),
                link_state(p.state),
                tlp_str(p.max_tlp),
                p.outbox_depth,
                ts(&p.last_contact),
                roster,
                term(&p.last_error)
            );
        }
        for p in &all.peers {
            if let Some(r) = &p.last_reconcile {
                let _ = writeln!(
                    s,
                    "{}: last reconciliation {}",
                    term(&p.peer_id),
                    reconcile_line(r)
                );
            }
        }
        s
    })
}

pub async fn delivery(conn: Conn, message_id: String) -> anyhow::Result<()> {
    let mut c = connect(&conn).await?;
    let d = c
        .get_delivery_status(GetDeliveryStatusRequest {
            message_id,
            ..Default::default()
        })
        .await
        .map_err(|s| explain(&conn.node, s))?
        .into_inner();
    show(conn.json, &d, "certfed.v1.DeliveryStatus", || {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<12}  {:<12}  {:<20}  {:>8}  REASON",
            "NODE", "STATE", "UPDATED", "ATTEMPTS"
        );
        for r in &d.recipients {
            let _ = writeln!(
                s,
                "{:<12}  {:<12}  {:<20}  {:>8}  {}",
                term(&r.node_id),
                delivery_state(r.state),
                ts(&r.updated),
                r.attempts,
                term(&r.reason)
            );
        }
        s
    })
}

/// `certfed watch`: one line per stored message; with `--json` one
/// `WatchEvent` per line (JSON Lines). Real traffic only unless `exercise`
/// (then exercise messages are marked `[EXERCISE]`).
pub async fn watch(
    conn: Conn,
    from_start: bool,
    after: u64,
    count: u64,
    exercise: bool,
) -> anyhow::Result<()> {
    let mut c = connect(&conn).await?;
    let mut s = c
        .watch(WatchRequest {
            filter: Some(AlertFilter {
                include_exercise: exercise,
                ..Default::default()
            }),
            after_cursor: after,
            from_start,
            ..Default::default()
        })
        .await
        .map_err(|e| explain(&conn.node, e))?
        .into_inner();
    let mut seen = 0;
    while let Some(ev) = s.message().await.map_err(|e| explain(&conn.node, e))? {
        if conn.json {
            emit(&json_line(&proto_value(&ev, "certfed.v1.WatchEvent")?))?;
        } else {
            let m = ev.message.clone().unwrap_or_default();
            let (title, tlp) = match &m.alert {
                Some(a) => (
                    a.title.as_str(),
                    tlp_word(Tlp::try_from(a.tlp).unwrap_or(Tlp::Unspecified)),
                ),
                None => (
                    "",
                    tlp_word(Tlp::try_from(m.tlp).unwrap_or(Tlp::Unspecified)),
                ),
            };
            emit(&format!(
                "{:>8}  {}  {:<10}  {:<20}  {:<12}  {}{}\n",
                ev.cursor,
                term(&m.message_id),
                term(&m.origin),
                kind_str(m.kind),
                tlp,
                if m.exercise { "[EXERCISE] " } else { "" },
                term(title)
            ))?;
            if !m.incident_id.is_empty() {
                emit(&format!("          in incident {}\n", term(&m.incident_id)))?;
            }
            for x in &ev.incident_matches {
                emit(&format!(
                    "          matches incident {} on {}; link it: certfed incident link {} {}\n",
                    term(&x.incident_id),
                    term(&x.indicator.clone().unwrap_or_default().value),
                    term(&x.incident_id),
                    term(&x.message_id)
                ))?;
            }
        }
        seen += 1;
        if count > 0 && seen >= count {
            break;
        }
    }
    Ok(())
}

/// Opens the files of `attach` and declares them (name, media type, size,
/// malicious flag), as the upload RPCs take them.
pub async fn declare_files(
    attach: &[crate::cli::args::AttachArg],
) -> anyhow::Result<(Vec<Attachment>, Vec<(tokio::fs::File, u64)>)> {
    let mut declared = Vec::new();
    let mut files = Vec::new();
    for a in attach {
        let shown = a.path.display().to_string();
        let file = tokio::fs::File::open(&a.path)
            .await
            .map_err(|e| Failure::usage(format!("--attach {shown}: cannot open: {e}")))?;
        let meta = file
            .metadata()
            .await
            .map_err(|e| Failure::usage(format!("--attach {shown}: {e}")))?;
        if !meta.is_file() {
            return Err(Failure::usage(format!(
                "--attach {shown}: not a regular file"
            )));
        }
        let name = a.path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            Failure::usage(format!("--attach {shown}: the file name is not UTF-8"))
        })?;
        declared.push(Attachment {
            name: name.to_string(),
            media_type: crate::cli::args::media_type_of(&a.path).to_string(),
            size: meta.len(),
            malicious: a.malicious,
            ..Default::default()
        });
        files.push((file, meta.len()));
    }
    Ok((declared, files))
}

/// The frames of an upload: `first`, then the files' content in 1 MiB
/// pieces (`wrap` makes a frame of a piece). A read error ends the stream
/// early, so the node publishes nothing; the task's result says why.
pub fn upload_frames<T: Send + 'static>(
    first: T,
    files: Vec<(tokio::fs::File, u64)>,
    wrap: fn(AttachmentData) -> T,
) -> (
    tokio_stream::wrappers::ReceiverStream<T>,
    tokio::task::JoinHandle<Result<(), String>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<T>(4);
    let reader = tokio::spawn(async move {
        if tx.send(first).await.is_err() {
            return Ok(());
        }
        for (index, (mut file, size)) in files.into_iter().enumerate() {
            let mut left = size;
            while left > 0 {
                let mut buf = vec![0u8; (1usize << 20).min(left as usize)];
                if let Err(e) = tokio::io::AsyncReadExt::read_exact(&mut file, &mut buf).await {
                    return Err(format!(
                        "attachment {index}: {e} (the file changed while read?)"
                    ));
                }
                left -= buf.len() as u64;
                let frame = wrap(AttachmentData {
                    index: index as u32,
                    data: buf,
                });
                if tx.send(frame).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    });
    (tokio_stream::wrappers::ReceiverStream::new(rx), reader)
}

/// Publishes `req` with the files of `attach`, streamed to the node.
pub async fn publish_with_attachments(
    conn: &Conn,
    req: PublishAlertRequest,
    attach: &[crate::cli::args::AttachArg],
) -> anyhow::Result<()> {
    let (declared, files) = declare_files(attach).await?;
    let first = PublishUpload {
        frame: Some(publish_upload::Frame::Start(PublishUploadStart {
            request: Some(req),
            attachments: declared,
        })),
    };
    let (frames, reader) = upload_frames(first, files, |d| PublishUpload {
        frame: Some(publish_upload::Frame::Data(d)),
    });
    let mut c = connect(conn).await?;
    let r = c.publish_alert_with_attachments(frames).await;
    if let Ok(Err(e)) = reader.await {
        return Err(Failure::usage(format!("reading the attachments: {e}")));
    }
    let r = r.map_err(|s| explain(&conn.node, s))?.into_inner();
    show(conn.json, &r, "certfed.v1.PublishAlertResponse", || {
        format!("published {}\n", term(&r.message_id))
    })
}
