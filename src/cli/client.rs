//! Operator client subcommands: the Operator API over mutual TLS, with human
//! output by default and JSON with `--json`.
use crate::domain::alert::{
    parse_rsit, parse_sector, parse_severity, parse_tlp, rsit_label, sector_label, severity_label,
    tlp_label,
};
use crate::domain::envelope::ms_to_ts;
use crate::domain::identity::Identity;
use crate::proto::v1::operator_client::OperatorClient;
use crate::proto::v1::*;
use crate::transport::{client, tls};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use tonic::transport::Channel;

/// Where the node is and the operator's credentials. The flags are global, so
/// they may come before or after a nested subcommand (`certfed alert publish
/// --node … --json` and `certfed alert --node … publish` both work).
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// Node address, host:port.
    #[arg(
        long,
        env = "CERTFED_NODE",
        default_value = "127.0.0.1:7701",
        global = true
    )]
    pub node: String,
    /// Federation CA certificate (PEM). Required.
    #[arg(long, env = "CERTFED_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// Operator certificate (PEM). Required.
    #[arg(long, env = "CERTFED_CERT", global = true)]
    pub cert: Option<PathBuf>,
    /// Operator private key (PEM, mode 0600). Required.
    #[arg(long, env = "CERTFED_KEY", global = true)]
    pub key: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum AlertCmd {
    /// Sign and send an alert.
    Publish(PublishArgs),
    /// List alerts held by the node, newest first.
    List {
        /// Minimum severity: low, medium, high, critical.
        #[arg(long)]
        min_severity: Option<String>,
        /// Only this TLP (repeatable): clear, green, amber, amber+strict, red.
        #[arg(long)]
        tlp: Vec<String>,
        /// Only this NIS2 sector (repeatable), e.g. energy.
        #[arg(long)]
        sector: Vec<String>,
        /// Only from this origin node (repeatable).
        #[arg(long)]
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
    /// Show one message with its path.
    Get { message_id: String },
    /// Record that you have seen a message.
    Ack { message_id: String },
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    #[arg(long)]
    pub title: String,
    #[arg(long, default_value = "")]
    pub description: String,
    /// clear, green, amber, amber+strict, red.
    #[arg(long)]
    pub tlp: String,
    /// low, medium, high, critical.
    #[arg(long)]
    pub severity: String,
    /// RSIT class, e.g. malicious-code.
    #[arg(long)]
    pub rsit: Option<String>,
    /// NIS2 sector (repeatable), e.g. energy.
    #[arg(long)]
    pub sector: Vec<String>,
    /// Affected country, ISO 3166-1 alpha-2 (repeatable).
    #[arg(long)]
    pub country: Vec<String>,
    /// Indicator TYPE:VALUE (repeatable); types: ip, cidr, domain, url, email, sha256, sha1, md5, cve, asn, text.
    #[arg(long)]
    pub indicator: Vec<String>,
    /// Reference URL or document id (repeatable).
    #[arg(long)]
    pub reference: Vec<String>,
    /// Recipient node (repeatable). None: the whole federation (clear/green only).
    #[arg(long = "to")]
    pub recipients: Vec<String>,
    /// Expire the alert this many hours from now.
    #[arg(long)]
    pub expires_in_hours: Option<u64>,
    /// Message id of an earlier alert of this node that this one updates.
    #[arg(long)]
    pub supersedes: Option<String>,
    /// With --supersedes: retract that alert instead of updating it.
    #[arg(long)]
    pub retract: bool,
    /// Mark as exercise traffic.
    #[arg(long)]
    pub exercise: bool,
}

/// Connects to the node with the operator's certificate.
pub async fn connect(conn: &Conn) -> anyhow::Result<OperatorClient<Channel>> {
    // Global flags cannot be required by clap itself; say which one is missing.
    let need = |v: &Option<PathBuf>, flag: &str, var: &str| {
        v.clone().with_context(|| {
            format!(
                "missing {flag}: the operator credentials need --ca, --cert and --key (or {var})"
            )
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
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let identity = Identity::from_certificate(material.chain[0].as_ref())
        .map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?;
    if let Identity::Node(n) = &identity {
        bail!(
            "{} is the node certificate of {n}; the Operator API needs an operator certificate (create one with `certfed pki operator`)",
            cert.display()
        );
    }
    let cfg = tls::client_config(&material).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ch = client::channel(&conn.node, cfg, None, Duration::from_secs(5))?;
    Ok(OperatorClient::new(ch).max_decoding_message_size(64 * 1024 * 1024))
}

/// Turns a gRPC error into a sentence that says what to do.
pub fn explain(node: &str, s: tonic::Status) -> anyhow::Error {
    match s.code() {
        tonic::Code::Unavailable => anyhow::anyhow!(
            "cannot reach certfed at {node}: {} (is the node running, and does it trust your certificate's CA?)",
            s.message()
        ),
        tonic::Code::PermissionDenied => anyhow::anyhow!("refused: {}", s.message()),
        tonic::Code::Unauthenticated => anyhow::anyhow!(
            "certificate not accepted by {node}: {} (check --cert/--key and that it is not revoked)",
            s.message()
        ),
        tonic::Code::InvalidArgument => anyhow::anyhow!("invalid request: {}", s.message()),
        c => anyhow::anyhow!("{c:?}: {}", s.message()),
    }
}

fn ts(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.seconds).ok())
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn print(json_out: bool, v: Value, human: impl FnOnce()) {
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        human();
    }
}

fn tlp_str(t: i32) -> &'static str {
    tlp_label(Tlp::try_from(t).unwrap_or(Tlp::Unspecified))
}

fn sev_str(s: i32) -> &'static str {
    severity_label(Severity::try_from(s).unwrap_or(Severity::Unspecified))
}

/// JSON form of an alert.
pub fn alert_json(a: &Alert) -> Value {
    json!({
        "title": a.title,
        "description": a.description,
        "tlp": tlp_str(a.tlp),
        "severity": sev_str(a.severity),
        "rsit_class": rsit_label(RsitClass::try_from(a.rsit_class).unwrap_or(RsitClass::Unspecified)),
        "sectors": a.sectors.iter().map(|s| sector_label(Nis2Sector::try_from(*s).unwrap_or(Nis2Sector::Unspecified))).collect::<Vec<_>>(),
        "affected_countries": a.affected_countries,
        "indicators": a.indicators.iter().map(|i| json!({"type": indicator_name(i.r#type), "value": i.value, "comment": i.comment})).collect::<Vec<_>>(),
        "references": a.references,
        "expires": ts(&a.expires),
        "revision": match Revision::try_from(a.revision) { Ok(Revision::Update) => "update", Ok(Revision::Retraction) => "retraction", _ => "original" },
        "supersedes": a.supersedes,
        "exercise": a.exercise,
    })
}

const INDICATOR_TYPES: &[(&str, IndicatorType)] = &[
    ("ip", IndicatorType::Ip),
    ("cidr", IndicatorType::Cidr),
    ("domain", IndicatorType::Domain),
    ("url", IndicatorType::Url),
    ("email", IndicatorType::Email),
    ("sha256", IndicatorType::Sha256),
    ("sha1", IndicatorType::Sha1),
    ("md5", IndicatorType::Md5),
    ("cve", IndicatorType::Cve),
    ("asn", IndicatorType::Asn),
    ("text", IndicatorType::Text),
];

fn indicator_name(t: i32) -> &'static str {
    INDICATOR_TYPES
        .iter()
        .find(|(_, v)| *v as i32 == t)
        .map(|(n, _)| *n)
        .unwrap_or("unspecified")
}

fn parse_indicator(s: &str) -> anyhow::Result<Indicator> {
    let (t, v) = s
        .split_once(':')
        .with_context(|| format!("--indicator {s:?}: expected TYPE:VALUE, e.g. ip:192.0.2.7"))?;
    let ty = INDICATOR_TYPES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(t))
        .map(|(_, v)| *v)
        .with_context(|| {
            format!(
                "--indicator {s:?}: unknown type {t:?}; use one of {}",
                INDICATOR_TYPES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    Ok(Indicator {
        r#type: ty as i32,
        value: v.to_string(),
        comment: String::new(),
    })
}

/// Builds the PublishAlertRequest from command-line words.
pub fn publish_request(a: &PublishArgs) -> anyhow::Result<PublishAlertRequest> {
    let tlp = parse_tlp(&a.tlp).map_err(|e| anyhow::anyhow!("--tlp: {e}"))?;
    let severity = parse_severity(&a.severity).map_err(|e| anyhow::anyhow!("--severity: {e}"))?;
    let rsit = match &a.rsit {
        Some(r) => parse_rsit(r).map_err(|e| anyhow::anyhow!("--rsit: {e}"))?,
        None => RsitClass::Unspecified,
    };
    let sectors = a
        .sector
        .iter()
        .map(|s| {
            parse_sector(s)
                .map(|x| x as i32)
                .map_err(|e| anyhow::anyhow!("--sector: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let indicators = a
        .indicator
        .iter()
        .map(|s| parse_indicator(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if a.retract && a.supersedes.is_none() {
        bail!("--retract needs --supersedes MESSAGE_ID (the alert to retract)");
    }
    let revision = match (&a.supersedes, a.retract) {
        (None, _) => Revision::Original,
        (Some(_), false) => Revision::Update,
        (Some(_), true) => Revision::Retraction,
    };
    let expires = a
        .expires_in_hours
        .map(|h| ms_to_ts(crate::service::now_ms() + (h as i64) * 3_600_000));
    Ok(PublishAlertRequest {
        alert: Some(Alert {
            title: a.title.clone(),
            description: a.description.clone(),
            tlp: tlp as i32,
            severity: severity as i32,
            rsit_class: rsit as i32,
            sectors,
            affected_countries: a.country.clone(),
            indicators,
            references: a.reference.clone(),
            expires,
            revision: revision as i32,
            supersedes: a.supersedes.clone().unwrap_or_default(),
            exercise: a.exercise,
        }),
        recipients: a.recipients.clone(),
    })
}

pub async fn info(conn: Conn) -> anyhow::Result<()> {
    let mut c = connect(&conn).await?;
    let i = c
        .get_node_info(GetNodeInfoRequest {})
        .await
        .map_err(|s| explain(&conn.node, s))?
        .into_inner();
    print(
        conn.json,
        json!({"node_id": i.node_id, "version": i.version, "listen": i.listen, "signing_key_id": i.signing_key_id,
               "peers": i.peers, "members": i.members, "started": ts(&i.started), "stored_messages": i.stored_messages}),
        || {
            println!("node            {}", i.node_id);
            println!("version         {}", i.version);
            println!("listen          {}", i.listen);
            println!("signing key     {}", i.signing_key_id);
            println!("peers           {}", i.peers.join(", "));
            println!("members         {}", i.members.join(", "));
            println!("started         {}", ts(&i.started));
            println!("stored messages {}", i.stored_messages);
        },
    );
    Ok(())
}

pub async fn alert(conn: Conn, cmd: AlertCmd) -> anyhow::Result<()> {
    let mut c = connect(&conn).await?;
    let node = conn.node.clone();
    match cmd {
        AlertCmd::Publish(a) => {
            let req = publish_request(&a)?;
            let r = c
                .publish_alert(req)
                .await
                .map_err(|s| explain(&node, s))?
                .into_inner();
            print(conn.json, json!({"message_id": r.message_id}), || {
                println!("published {}", r.message_id)
            });
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
                min_severity: match min_severity {
                    Some(s) => parse_severity(&s)
                        .map_err(|e| anyhow::anyhow!("--min-severity: {e}"))?
                        as i32,
                    None => 0,
                },
                tlp: tlp
                    .iter()
                    .map(|t| {
                        parse_tlp(t)
                            .map(|x| x as i32)
                            .map_err(|e| anyhow::anyhow!("--tlp: {e}"))
                    })
                    .collect::<anyhow::Result<_>>()?,
                sectors: sector
                    .iter()
                    .map(|s| {
                        parse_sector(s)
                            .map(|x| x as i32)
                            .map_err(|e| anyhow::anyhow!("--sector: {e}"))
                    })
                    .collect::<anyhow::Result<_>>()?,
                origins: origin,
                include_exercise: exercise,
                ..Default::default()
            };
            let r = c
                .list_alerts(ListAlertsRequest {
                    filter: Some(filter),
                    page_size: limit,
                    page_token,
                })
                .await
                .map_err(|s| explain(&node, s))?
                .into_inner();
            let v = json!({
                "alerts": r.alerts.iter().map(|a| json!({
                    "message_id": a.message_id, "origin": a.origin, "created": ts(&a.created),
                    "received": ts(&a.received), "superseded_by": a.superseded_by,
                    "alert": a.alert.as_ref().map(alert_json),
                })).collect::<Vec<_>>(),
                "next_page_token": r.next_page_token,
            });
            print(conn.json, v, || {
                println!(
                    "{:<36}  {:<10}  {:<16}  {:<8}  {:<20}  TITLE",
                    "MESSAGE ID", "ORIGIN", "TLP", "SEVERITY", "CREATED"
                );
                for a in &r.alerts {
                    let al = a.alert.clone().unwrap_or_default();
                    println!(
                        "{:<36}  {:<10}  {:<16}  {:<8}  {:<20}  {}{}",
                        a.message_id,
                        a.origin,
                        tlp_str(al.tlp),
                        sev_str(al.severity),
                        ts(&a.created),
                        al.title,
                        if a.superseded_by.is_empty() {
                            ""
                        } else {
                            "  (superseded)"
                        }
                    );
                }
                if !r.next_page_token.is_empty() {
                    println!("more: --page-token {}", r.next_page_token);
                }
            });
        }
        AlertCmd::Get { message_id } => {
            let m = c
                .get_message(GetMessageRequest { message_id })
                .await
                .map_err(|s| explain(&node, s))?
                .into_inner();
            let path: Vec<Value> = m
                .path
                .iter()
                .map(|h| json!({"node_id": h.node_id, "at": ts(&h.at)}))
                .collect();
            print(
                conn.json,
                json!({"message_id": m.message_id, "origin": m.origin, "tlp": tlp_str(m.tlp),
                       "recipients": m.recipients, "created": ts(&m.created), "received": ts(&m.received),
                       "path": path, "cursor": m.cursor, "acknowledged": ts(&m.acknowledged),
                       "superseded_by": m.superseded_by, "alert": m.alert.as_ref().map(alert_json)}),
                || {
                    println!("message  {}", m.message_id);
                    println!("origin   {}", m.origin);
                    println!("tlp      {}", tlp_str(m.tlp));
                    if !m.recipients.is_empty() {
                        println!("to       {}", m.recipients.join(", "));
                    }
                    println!("created  {}", ts(&m.created));
                    println!("received {}", ts(&m.received));
                    println!(
                        "path     {}",
                        m.path
                            .iter()
                            .map(|h| h.node_id.as_str())
                            .collect::<Vec<_>>()
                            .join(" -> ")
                    );
                    if let Some(a) = &m.alert {
                        println!("severity {}", sev_str(a.severity));
                        println!("title    {}", a.title);
                        if !a.description.is_empty() {
                            println!("\n{}", a.description);
                        }
                        for i in &a.indicators {
                            println!("  {:<7} {}", indicator_name(i.r#type), i.value);
                        }
                    }
                },
            );
        }
        AlertCmd::Ack { message_id } => {
            let r = c
                .acknowledge_message(AcknowledgeMessageRequest {
                    message_id: message_id.clone(),
                })
                .await
                .map_err(|s| explain(&node, s))?
                .into_inner();
            print(
                conn.json,
                json!({"message_id": message_id, "acknowledged": ts(&r.acknowledged)}),
                || println!("acknowledged {message_id} at {}", ts(&r.acknowledged)),
            );
        }
    }
    Ok(())
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
        _ => "unknown",
    }
}

pub async fn peers(conn: Conn) -> anyhow::Result<()> {
    let mut c = connect(&conn).await?;
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let r = c
            .list_peers(ListPeersRequest {
                page_size: 1000,
                page_token: token,
            })
            .await
            .map_err(|s| explain(&conn.node, s))?
            .into_inner();
        all.extend(r.peers);
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    let v = json!({"peers": all.iter().map(|p| json!({
        "peer_id": p.peer_id, "endpoint": p.endpoint, "state": link_state(p.state),
        "last_contact": ts(&p.last_contact), "outbox_depth": p.outbox_depth, "last_error": p.last_error,
        "max_tlp": tlp_str(p.max_tlp)})).collect::<Vec<_>>()});
    print(conn.json, v, || {
        println!(
            "{:<12}  {:<22}  {:<10}  {:>7}  {:<20}  LAST ERROR",
            "PEER", "ENDPOINT", "STATE", "OUTBOX", "LAST CONTACT"
        );
        for p in &all {
            println!(
                "{:<12}  {:<22}  {:<10}  {:>7}  {:<20}  {}",
                p.peer_id,
                p.endpoint,
                link_state(p.state),
                p.outbox_depth,
                ts(&p.last_contact),
                p.last_error
            );
        }
    });
    Ok(())
}

pub async fn delivery(conn: Conn, message_id: String) -> anyhow::Result<()> {
    let mut c = connect(&conn).await?;
    let d = c
        .get_delivery_status(GetDeliveryStatusRequest { message_id })
        .await
        .map_err(|s| explain(&conn.node, s))?
        .into_inner();
    let v = json!({"message_id": d.message_id, "recipients": d.recipients.iter().map(|r| json!({
        "node_id": r.node_id, "state": delivery_state(r.state), "reason": r.reason,
        "updated": ts(&r.updated), "attempts": r.attempts})).collect::<Vec<_>>()});
    print(conn.json, v, || {
        println!("{:<12}  {:<10}  {:<20}  REASON", "NODE", "STATE", "UPDATED");
        for r in &d.recipients {
            println!(
                "{:<12}  {:<10}  {:<20}  {}",
                r.node_id,
                delivery_state(r.state),
                ts(&r.updated),
                r.reason
            );
        }
    });
    Ok(())
}

pub async fn watch(conn: Conn, from_start: bool, after: u64, count: u64) -> anyhow::Result<()> {
    let mut c = connect(&conn).await?;
    let mut s = c
        .watch(WatchRequest {
            filter: Some(AlertFilter {
                include_exercise: true,
                ..Default::default()
            }),
            after_cursor: after,
            from_start,
        })
        .await
        .map_err(|e| explain(&conn.node, e))?
        .into_inner();
    let mut seen = 0;
    while let Some(ev) = s.message().await.map_err(|e| explain(&conn.node, e))? {
        let m = ev.message.unwrap_or_default();
        let title = m
            .alert
            .as_ref()
            .map(|a| a.title.clone())
            .unwrap_or_default();
        if conn.json {
            println!(
                "{}",
                json!({"cursor": ev.cursor, "message_id": m.message_id, "origin": m.origin,
                       "tlp": tlp_str(m.tlp), "created": ts(&m.created), "alert": m.alert.as_ref().map(alert_json)})
            );
        } else {
            println!(
                "{:>8}  {}  {:<10}  {:<16}  {}",
                ev.cursor,
                m.message_id,
                m.origin,
                tlp_str(m.tlp),
                title
            );
        }
        seen += 1;
        if count > 0 && seen >= count {
            break;
        }
    }
    Ok(())
}
