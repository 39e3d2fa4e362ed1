//! `certfed alert export|import --format stix21|misp` and `certfed feed misp`:
//! the node's alerts to and from the files STIX/TAXII tools and MISP read,
//! through the Operator API (the mapping itself is `domain::exchange`).
//!
//! Invariants:
//! - Import publishes through `PublishAlert`, so every alert is validated as
//!   any publish is. First the whole file is mapped and checked here, then
//!   every alert is checked by the node (`validate_only`); only when all pass
//!   is anything published. Each publish carries a request id derived from
//!   the alert and its recipients, so running the same import again (after an
//!   interruption) publishes nothing twice.
//! - The TLP (`--tlp`, required) and the recipients (`--to`) of an import are
//!   the operator's explicit choice, never read from the file: a file marked
//!   more restrictively than `--tlp` is refused.
//! - Output that quotes partners' text is terminal-safe (`cli::output`);
//!   `--json` prints JSON objects with lowerCamelCase keys, alerts in the
//!   protobuf JSON mapping.
//! - The feed folder is updated in place: each file is written to a temporary
//!   name and renamed, the state file last, so an interrupted run leaves a
//!   consistent feed and the next run completes it.
//! - This file does not use `cli::client` (which refers to these commands):
//!   it receives a connected Operator client.
use super::args::{SeverityArg, TlpArg};
use super::error::{Exit, Failure, explain};
use super::output::{emit, json_pretty, proto_value, term};
use crate::domain::alert::Limits;
use crate::domain::envelope::ms_to_ts;
use crate::domain::exchange::{
    AlertRecord, DEFAULT_INLINE_BYTES, ExportedFile, ImportErrors, ImportOptions, Imported,
    MAX_IMPORT_BYTES, attribute_hashes, export_bundle, export_event, import_bundle, import_events,
    manifest_entry, parse_time, stix_time, uuid_for,
};
use crate::domain::policy::{check_distribution, tlp_label};
use crate::proto::v1::operator_client::OperatorClient;
use crate::proto::v1::{
    Alert, AlertFilter, GetMessageRequest, ListAlertsRequest, MessageKind, PublishAlertRequest, Tlp,
};
use clap::{Args, Subcommand, ValueEnum};
use prost::Message;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use tonic::Code;
use tonic::transport::Channel;

/// The exchange formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A STIX 2.1 bundle (OASIS), TLP 2.0 markings.
    #[value(name = "stix21")]
    Stix21,
    /// MISP event JSON (one event, or {"response": [...]} for several).
    #[value(name = "misp")]
    Misp,
}

/// `certfed alert export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum)]
    pub format: Format,
    /// Message ids of the alerts to export. None: every current alert (see --since).
    #[arg(value_name = "IDS")]
    pub ids: Vec<String>,
    /// Only alerts created at or after this time: RFC 3339 (2025-05-01T00:00:00Z) or an age (90m, 24h, 7d).
    #[arg(long, value_name = "T", value_parser = parse_since)]
    pub since: Option<i64>,
    /// Leave out alerts above this TLP.
    #[arg(long, ignore_case = true, value_name = "TLP")]
    pub max_tlp: Option<TlpArg>,
    /// Include exercise traffic.
    #[arg(long)]
    pub exercise: bool,
    /// Write to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Include the content of attachments up to this many bytes each (MISP `data`, STIX
    /// `payload_bin`); larger ones, and ones not on the node, are described by name, size and
    /// SHA-256 only. 0: describe every attachment without its content.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_INLINE_BYTES)]
    pub inline_max: u64,
}

/// `certfed alert import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Input format.
    #[arg(long, value_enum)]
    pub format: Format,
    /// The STIX bundle or MISP event file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// TLP of every imported alert (required; a file marked more restrictively is refused).
    #[arg(long, ignore_case = true)]
    pub tlp: TlpArg,
    /// Recipient node (repeatable). None: the whole federation (clear/green only).
    #[arg(long = "to", value_name = "NODE")]
    pub recipients: Vec<String>,
    /// Severity of alerts the file gives none for.
    #[arg(long, ignore_case = true)]
    pub severity: Option<SeverityArg>,
    /// Title of the one alert made of a STIX bundle without reports.
    #[arg(long)]
    pub title: Option<String>,
    /// Mark the imported alerts as exercise traffic.
    #[arg(long)]
    pub exercise: bool,
    /// Check everything (here and on the node) and show what would be published; publish nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `certfed feed …`.
#[derive(Subcommand, Debug)]
pub enum FeedCmd {
    /// Write or update a MISP feed folder (manifest.json, one <uuid>.json per alert, hashes.csv).
    Misp {
        /// The feed folder (created if missing; later runs add what is new).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Only alerts created at or after this time: RFC 3339 or an age (24h, 7d).
        #[arg(long, value_name = "T", value_parser = parse_since)]
        since: Option<i64>,
        /// Highest TLP put in the feed (default green: a feed folder is often served over HTTP).
        #[arg(long, ignore_case = true, value_name = "TLP", default_value = "green")]
        max_tlp: TlpArg,
        /// Include exercise traffic.
        #[arg(long)]
        exercise: bool,
    },
}

/// Parses `--since`: an RFC 3339 time or an age (`90m`, `24h`, `7d`) before now.
pub fn parse_since(s: &str) -> Result<i64, String> {
    if let Some(ms) = parse_time(s) {
        return Ok(ms);
    }
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = num
        .parse()
        .ok()
        .filter(|n| *n > 0 && *n < 100_000)
        .ok_or_else(|| format!("{s:?} is neither an RFC 3339 time (2025-05-01T00:00:00Z) nor an age such as 90m, 24h or 7d"))?;
    let unit_ms = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{s:?}: the age unit is m, h or d (e.g. 24h)")),
    };
    Ok(crate::service::now_ms() - n * unit_ms)
}

fn levels_up_to(max: Option<TlpArg>) -> Vec<i32> {
    match max {
        None => vec![],
        Some(m) => crate::domain::policy::ALL_TLPS
            .into_iter()
            .filter(|t| *t as i32 <= m.num())
            .map(|t| t as i32)
            .collect(),
    }
}

/// An alert as listed by the node.
struct Held {
    message_id: String,
    origin: String,
    created_ms: i64,
    alert: Alert,
    cursor: u64,
    superseded: bool,
}

/// Follows `supersedes` back to the root (bounded), with a cache.
async fn records(
    c: &mut OperatorClient<Channel>,
    node: &str,
    held: Vec<Held>,
) -> anyhow::Result<Vec<AlertRecord>> {
    let mut cache: HashMap<String, Option<(String, i64, String)>> = HashMap::new();
    let mut out = Vec::with_capacity(held.len());
    for h in held {
        let mut root = (h.message_id.clone(), h.created_ms);
        let mut prev = h.alert.supersedes.clone();
        for _ in 0..crate::service::exchange::MAX_CHAIN {
            if prev.is_empty() {
                break;
            }
            if !cache.contains_key(&prev) {
                let got = match c
                    .get_message(GetMessageRequest {
                        message_id: prev.clone(),
                    })
                    .await
                {
                    Ok(m) => {
                        let m = m.into_inner();
                        (m.origin == h.origin && m.kind == MessageKind::Alert as i32).then(|| {
                            (
                                m.message_id.clone(),
                                m.created
                                    .as_ref()
                                    .map_or(0, crate::domain::envelope::ts_to_ms),
                                m.alert.map(|a| a.supersedes).unwrap_or_default(),
                            )
                        })
                    }
                    Err(s) if matches!(s.code(), Code::NotFound | Code::PermissionDenied) => None,
                    Err(s) => return Err(explain(node, s)),
                };
                cache.insert(prev.clone(), got);
            }
            match cache.get(&prev).cloned().flatten() {
                Some((id, created, next)) => {
                    root = (id, created);
                    prev = next;
                }
                None => break,
            }
        }
        out.push(AlertRecord {
            message_id: h.message_id,
            origin: h.origin,
            created_ms: h.created_ms,
            alert: h.alert,
            root_id: root.0,
            root_created_ms: root.1,
            attachments: Vec::new(),
        });
    }
    Ok(out)
}

/// Lists current alerts (newest first), stopping at `stop_cursor`.
async fn list_current(
    c: &mut OperatorClient<Channel>,
    node: &str,
    filter: AlertFilter,
    stop_cursor: u64,
) -> anyhow::Result<Vec<Held>> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let r = c
            .list_alerts(ListAlertsRequest {
                filter: Some(filter.clone()),
                page_size: 1000,
                page_token: token,
            })
            .await
            .map_err(|s| explain(node, s))?
            .into_inner();
        for a in r.alerts {
            if a.cursor <= stop_cursor {
                return Ok(out);
            }
            let Some(alert) = a.alert else { continue };
            out.push(Held {
                message_id: a.message_id,
                origin: a.origin,
                created_ms: a
                    .created
                    .as_ref()
                    .map_or(0, crate::domain::envelope::ts_to_ms),
                alert,
                cursor: a.cursor,
                superseded: !a.superseded_by.is_empty(),
            });
        }
        if r.next_page_token.is_empty() {
            return Ok(out);
        }
        token = r.next_page_token;
    }
}

/// Adds each record's attachments: the manifest always, the content (read
/// through GetAttachment, which verifies every chunk) when it is on the node
/// and at most `inline_max` bytes. A malware sample is read only to be
/// zipped the way MISP shares samples (password "infected"); it is never
/// written in the clear.
async fn with_attachments(
    c: &mut OperatorClient<Channel>,
    node: &str,
    recs: &mut [AlertRecord],
    inline_max: u64,
) -> anyhow::Result<()> {
    use crate::proto::v1::{AttachmentState, GetAttachmentRequest, ListAttachmentsRequest};
    use futures::StreamExt;
    for r in recs.iter_mut() {
        let list = match c
            .list_attachments(ListAttachmentsRequest {
                message_id: r.message_id.clone(),
            })
            .await
        {
            Ok(l) => l.into_inner(),
            Err(s) if matches!(s.code(), Code::NotFound | Code::PermissionDenied) => continue,
            Err(s) => return Err(explain(node, s)),
        };
        for st in list.attachments {
            let Some(m) = st.attachment else { continue };
            let mut f = ExportedFile {
                name: m.name.clone(),
                media_type: m.media_type.clone(),
                size: m.size,
                sha256: m.sha256.clone(),
                malicious: m.malicious,
                content: None,
            };
            if st.state == AttachmentState::Available as i32 && m.size <= inline_max {
                let mut stream = c
                    .get_attachment(GetAttachmentRequest {
                        message_id: r.message_id.clone(),
                        name: m.name.clone(),
                        i_know_it_is_malware: m.malicious,
                    })
                    .await
                    .map_err(|s| explain(node, s))?
                    .into_inner();
                let mut content = Vec::with_capacity(m.size as usize);
                while let Some(frame) = stream.next().await {
                    let frame = frame.map_err(|s| explain(node, s))?;
                    content.extend_from_slice(&frame.data);
                    if content.len() as u64 > m.size {
                        anyhow::bail!(
                            "{}: the node sent more than the {} bytes of attachment {}; nothing was exported",
                            term(&r.message_id),
                            m.size,
                            term(&m.name)
                        );
                    }
                }
                f.content = Some(content);
            }
            r.attachments.push(f);
        }
    }
    Ok(())
}

/// `certfed alert export`.
pub async fn export(
    c: &mut OperatorClient<Channel>,
    node: &str,
    json_out: bool,
    a: ExportArgs,
) -> anyhow::Result<()> {
    let held = if a.ids.is_empty() {
        let filter = AlertFilter {
            tlp: levels_up_to(a.max_tlp),
            created_after: a.since.map(ms_to_ts),
            include_exercise: a.exercise,
            ..Default::default()
        };
        let mut all = list_current(c, node, filter, 0).await?;
        all.retain(|h| !h.superseded);
        all.reverse(); // oldest first
        all
    } else {
        let mut out = Vec::new();
        for id in &a.ids {
            let m = c
                .get_message(GetMessageRequest {
                    message_id: id.clone(),
                })
                .await
                .map_err(|s| explain(node, s))?
                .into_inner();
            let Some(alert) = m.alert else {
                return Err(Failure::new(
                    Exit::InvalidArgument,
                    Code::InvalidArgument,
                    format!("{} is not an alert; only alerts are exported", term(id)),
                )
                .into());
            };
            if m.exercise && !a.exercise {
                eprintln!(
                    "certfed: {} is exercise traffic: left out (add --exercise to export exercise alerts, marked certfed:exercise)",
                    term(id)
                );
                continue;
            }
            if a.max_tlp.is_some_and(|mx| m.tlp > mx.num()) {
                eprintln!(
                    "certfed: {} is {}, above --max-tlp: left out",
                    term(id),
                    tlp_label(Tlp::try_from(m.tlp).unwrap_or(Tlp::Unspecified))
                );
                continue;
            }
            out.push(Held {
                message_id: m.message_id,
                origin: m.origin,
                created_ms: m
                    .created
                    .as_ref()
                    .map_or(0, crate::domain::envelope::ts_to_ms),
                alert,
                cursor: m.cursor,
                superseded: false,
            });
        }
        out
    };
    let mut recs = records(c, node, held).await?;
    with_attachments(c, node, &mut recs, a.inline_max).await?;
    let doc = match a.format {
        Format::Stix21 => export_bundle(&recs),
        Format::Misp => match recs.as_slice() {
            [one] => export_event(one),
            many => json!({ "response": many.iter().map(export_event).collect::<Vec<_>>() }),
        },
    };
    let objects = match a.format {
        Format::Stix21 => doc["objects"].as_array().map_or(0, Vec::len),
        Format::Misp => recs.len(),
    };
    match &a.out {
        None => emit(&json_pretty(&doc)),
        Some(path) => {
            let bytes = serde_json::to_vec_pretty(&doc)?;
            write_atomically(path, &bytes)?;
            if json_out {
                emit(&json_pretty(&json!({
                    "file": path.display().to_string(),
                    "alerts": recs.len(),
                    "objects": objects,
                })))
            } else {
                emit(&format!(
                    "wrote {} alert(s) ({} {}) to {}\n",
                    recs.len(),
                    objects,
                    if a.format == Format::Stix21 {
                        "STIX objects"
                    } else {
                        "MISP events"
                    },
                    term(&path.display().to_string())
                ))
            }
        }
    }
}

/// The request id of an imported alert: the same alert to the same recipients
/// always gets the same id, so a repeated import publishes nothing twice.
fn import_request_id(
    req: &PublishAlertRequest,
    files: &[crate::domain::exchange::ImportedFile],
) -> String {
    let digest = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(req.encode_to_vec());
        // The same alert with other evidence is another publish.
        for f in files {
            h.update((f.name.len() as u64).to_be_bytes());
            h.update(f.name.as_bytes());
            h.update([u8::from(f.malicious)]);
            h.update(Sha256::digest(&f.content));
        }
        h.finalize()
    };
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    uuid_for(&format!("import:{hex}")).to_string()
}

fn invalid(msg: impl Into<String>) -> anyhow::Error {
    Failure::new(Exit::InvalidArgument, Code::InvalidArgument, msg).into()
}

fn skipped_json(imported: &Imported) -> Vec<Value> {
    imported
        .skipped
        .iter()
        .map(|s| json!({"object": s.object, "kind": s.kind, "reason": s.reason}))
        .collect()
}

fn skipped_text(s: &mut String, imported: &Imported) {
    if imported.skipped.is_empty() {
        return;
    }
    let _ = writeln!(s, "not imported ({}):", imported.skipped.len());
    for k in &imported.skipped {
        let _ = writeln!(
            s,
            "  {} [{}]: {}",
            term(&k.object),
            term(&k.kind),
            term(&k.reason)
        );
    }
}

/// Publishes an imported alert with its attachments (PublishAlertWithAttachments,
/// each declared with its SHA-256 so the node checks what it received).
async fn publish_with_files(
    c: &mut OperatorClient<Channel>,
    req: PublishAlertRequest,
    files: &[crate::domain::exchange::ImportedFile],
) -> Result<tonic::Response<crate::proto::v1::PublishAlertResponse>, tonic::Status> {
    use crate::proto::v1::{
        Attachment, AttachmentData, PublishUpload, PublishUploadStart, publish_upload,
    };
    use sha2::{Digest, Sha256};
    let declared: Vec<Attachment> = files
        .iter()
        .map(|f| Attachment {
            name: f.name.clone(),
            media_type: f.media_type.clone(),
            size: f.content.len() as u64,
            sha256: Sha256::digest(&f.content).to_vec(),
            malicious: f.malicious,
            key: Vec::new(),
        })
        .collect();
    let mut frames = vec![PublishUpload {
        frame: Some(publish_upload::Frame::Start(PublishUploadStart {
            request: Some(req),
            attachments: declared,
        })),
    }];
    for (i, f) in files.iter().enumerate() {
        for piece in f
            .content
            .chunks(crate::service::attachments::MAX_DATA_FRAME)
        {
            frames.push(PublishUpload {
                frame: Some(publish_upload::Frame::Data(AttachmentData {
                    index: i as u32,
                    data: piece.to_vec(),
                })),
            });
        }
    }
    c.publish_alert_with_attachments(tokio_stream::iter(frames))
        .await
}

/// `certfed alert import`.
pub async fn import(
    c: &mut OperatorClient<Channel>,
    node: &str,
    json_out: bool,
    a: ImportArgs,
) -> anyhow::Result<()> {
    let tlp = a.tlp.0;
    check_distribution(tlp, &a.recipients)
        .map_err(|e| Failure::usage(format!("--tlp/--to: {e}")))?;
    let meta = std::fs::metadata(&a.file)
        .map_err(|e| Failure::usage(format!("{}: cannot read: {e}", a.file.display())))?;
    if meta.len() > MAX_IMPORT_BYTES as u64 {
        return Err(invalid(format!(
            "{}: {} bytes, over the import limit of {MAX_IMPORT_BYTES} bytes; split the file",
            a.file.display(),
            meta.len()
        )));
    }
    let bytes = std::fs::read(&a.file)
        .map_err(|e| Failure::usage(format!("{}: cannot read: {e}", a.file.display())))?;
    let info = c
        .get_node_info(crate::proto::v1::GetNodeInfoRequest::default())
        .await
        .map_err(|s| explain(node, s))?
        .into_inner();
    let opts = ImportOptions {
        max_attachment_bytes: info.max_attachment_bytes,
        tlp,
        severity: a.severity.map(|s| s.0),
        title: a.title.clone(),
        exercise: a.exercise,
        now_ms: crate::service::now_ms(),
        limits: Limits::default(),
    };
    let mapped: Result<Imported, ImportErrors> = match a.format {
        Format::Stix21 => import_bundle(&bytes, &opts),
        Format::Misp => import_events(&bytes, &opts),
    };
    let imported = mapped.map_err(|e| invalid(format!("{}: {e}", a.file.display())))?;
    let requests: Vec<PublishAlertRequest> = imported
        .alerts
        .iter()
        .map(|ia| {
            let mut r = PublishAlertRequest {
                alert: Some(ia.alert.clone()),
                recipients: a.recipients.clone(),
                request_id: String::new(),
                validate_only: false,
                ..Default::default()
            };
            r.request_id = import_request_id(&r, &ia.attachments);
            r
        })
        .collect();
    // The node checks every alert before any is published.
    let mut refused = Vec::new();
    let mut first_code = None;
    for (req, ia) in requests.iter().zip(&imported.alerts) {
        let check = PublishAlertRequest {
            validate_only: true,
            ..req.clone()
        };
        if let Err(s) = c.publish_alert(check).await {
            if matches!(
                s.code(),
                Code::Unavailable | Code::DeadlineExceeded | Code::Unauthenticated
            ) {
                return Err(explain(node, s));
            }
            first_code.get_or_insert(s.code());
            refused.push(format!("{}: {}", term(&ia.source), term(s.message())));
        }
    }
    if let Some(code) = first_code {
        let mut msg = format!(
            "{}: the node refused {} of {} alert(s); nothing was published:",
            a.file.display(),
            refused.len(),
            requests.len()
        );
        for r in &refused {
            let _ = write!(msg, "\n  {r}");
        }
        return Err(Failure::new(super::error::exit_for(code), code, msg).into());
    }
    let to = if a.recipients.is_empty() {
        "the whole federation".to_string()
    } else {
        a.recipients.join(", ")
    };
    if a.dry_run {
        if json_out {
            let mut alerts = Vec::new();
            for ia in &imported.alerts {
                let files: Vec<Value> = ia
                    .attachments
                    .iter()
                    .map(|f| json!({"name": f.name, "mediaType": f.media_type, "size": f.content.len(), "malicious": f.malicious}))
                    .collect();
                alerts.push(json!({"source": ia.source, "alert": proto_value(&ia.alert, "certfed.v1.Alert")?, "attachments": files}));
            }
            return emit(&json_pretty(&json!({
                "dryRun": true,
                "tlp": tlp.as_str_name(),
                "recipients": a.recipients,
                "alerts": alerts,
                "skipped": skipped_json(&imported),
            })));
        }
        let mut s = format!(
            "dry run: would publish {} alert(s) at {} to {} (checked by the node; nothing published)\n",
            imported.alerts.len(),
            tlp_label(tlp),
            term(&to)
        );
        for ia in &imported.alerts {
            let _ = writeln!(
                s,
                "  {}: {} ({} indicator(s), {} attachment(s))",
                term(&ia.source),
                term(&ia.alert.title),
                ia.alert.indicators.len(),
                ia.attachments.len()
            );
            for f in &ia.attachments {
                let _ = writeln!(
                    s,
                    "    {} ({} bytes{})",
                    term(&f.name),
                    f.content.len(),
                    if f.malicious { ", malware sample" } else { "" }
                );
            }
        }
        skipped_text(&mut s, &imported);
        return emit(&s);
    }
    let mut published: Vec<(String, &str, &str)> = Vec::new();
    for (req, ia) in requests.into_iter().zip(&imported.alerts) {
        let sent = if ia.attachments.is_empty() {
            c.publish_alert(req).await
        } else {
            publish_with_files(c, req, &ia.attachments).await
        };
        match sent {
            Ok(r) => published.push((r.into_inner().message_id, &ia.source, &ia.alert.title)),
            Err(s) => {
                let code = s.code();
                let mut msg = format!(
                    "published {} of {} alert(s) before the node answered for {}: {}",
                    published.len(),
                    imported.alerts.len(),
                    term(&ia.source),
                    term(s.message())
                );
                for (id, src, _) in &published {
                    let _ = write!(msg, "\n  published {} from {}", term(id), term(src));
                }
                msg.push_str("\nRun the same command again to publish the rest: alerts already published are not published twice (same request ids).");
                return Err(Failure::new(super::error::exit_for(code), code, msg).into());
            }
        }
    }
    if json_out {
        let list: Vec<Value> = published
            .iter()
            .map(|(id, src, title)| json!({"messageId": id, "source": src, "title": title}))
            .collect();
        return emit(&json_pretty(
            &json!({"published": list, "skipped": skipped_json(&imported)}),
        ));
    }
    let mut s = format!(
        "published {} alert(s) at {} to {}\n",
        published.len(),
        tlp_label(tlp),
        term(&to)
    );
    for (id, src, title) in &published {
        let _ = writeln!(s, "  {} from {}: {}", term(id), term(src), term(title));
    }
    skipped_text(&mut s, &imported);
    emit(&s)
}

/// Writes `bytes` to `path` through a temporary file in the same folder.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", path.display()))
}

/// Name of the feed's state file (the last store cursor written).
pub const FEED_STATE: &str = ".certfed-feed.json";

fn read_json(path: &Path) -> anyhow::Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            anyhow::anyhow!(
                "{}: not valid JSON ({e}); remove it to rebuild the feed, or choose another --out folder",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("{}: cannot read: {e}", path.display())),
    }
}

/// `certfed feed misp`.
pub async fn feed(
    c: &mut OperatorClient<Channel>,
    node: &str,
    json_out: bool,
    cmd: FeedCmd,
) -> anyhow::Result<()> {
    let FeedCmd::Misp {
        out,
        since,
        max_tlp,
        exercise,
    } = cmd;
    std::fs::create_dir_all(&out).map_err(|e| {
        Failure::usage(format!(
            "--out {}: cannot create the folder: {e}",
            out.display()
        ))
    })?;
    let manifest_path = out.join("manifest.json");
    let mut manifest: BTreeMap<String, Value> = match read_json(&manifest_path)? {
        None => BTreeMap::new(),
        Some(Value::Object(m)) => m.into_iter().collect(),
        Some(_) => anyhow::bail!(
            "{}: not a MISP feed manifest (a JSON object of events by uuid); choose another --out folder",
            manifest_path.display()
        ),
    };
    let state_path = out.join(FEED_STATE);
    let state = read_json(&state_path)?;
    let last_cursor = state
        .as_ref()
        .and_then(|s| s["cursor"].as_u64())
        .unwrap_or(0);
    let same_scope = state.as_ref().is_none_or(|s| {
        s["maxTlp"].as_i64() == Some(i64::from(max_tlp.num()))
            && s["exercise"].as_bool() == Some(exercise)
    });
    if !same_scope {
        anyhow::bail!(
            "{}: this feed was written with other --max-tlp/--exercise settings; use a new --out folder for a different feed",
            out.display()
        );
    }
    let filter = AlertFilter {
        tlp: levels_up_to(Some(max_tlp)),
        created_after: since.map(ms_to_ts),
        include_exercise: exercise,
        ..Default::default()
    };
    let held = list_current(c, node, filter, last_cursor).await?;
    let top = held.iter().map(|h| h.cursor).max().unwrap_or(last_cursor);
    let mut recs = records(c, node, held).await?;
    with_attachments(c, node, &mut recs, DEFAULT_INLINE_BYTES).await?;
    // Newest first: the first version seen of an event is its latest.
    let mut written: Vec<(String, Vec<String>)> = Vec::new();
    let mut done = HashSet::new();
    for r in &recs {
        let event = export_event(r);
        let Some((uuid, entry)) = manifest_entry(&event) else {
            continue;
        };
        if !done.insert(uuid.clone()) {
            continue;
        }
        write_atomically(
            &out.join(format!("{uuid}.json")),
            &serde_json::to_vec(&event)?,
        )?;
        manifest.insert(uuid.clone(), entry);
        written.push((uuid, attribute_hashes(&event)));
    }
    // hashes.csv: the lines of events not rewritten, then the new ones.
    let hashes_path = out.join("hashes.csv");
    let old = match std::fs::read_to_string(&hashes_path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => anyhow::bail!("{}: cannot read: {e}", hashes_path.display()),
    };
    let mut csv = String::with_capacity(old.len());
    for line in old.lines() {
        let uuid = line.rsplit(',').next().unwrap_or("");
        if !done.contains(uuid) && !line.trim().is_empty() {
            csv.push_str(line);
            csv.push('\n');
        }
    }
    for (uuid, hashes) in &written {
        for h in hashes {
            let _ = writeln!(csv, "{h},{uuid}");
        }
    }
    write_atomically(&hashes_path, csv.as_bytes())?;
    write_atomically(&manifest_path, &serde_json::to_vec(&manifest)?)?;
    write_atomically(
        &state_path,
        &serde_json::to_vec(&json!({
            "cursor": top,
            "maxTlp": max_tlp.num(),
            "exercise": exercise,
            "updated": stix_time(crate::service::now_ms()),
        }))?,
    )?;
    if json_out {
        return emit(&json_pretty(&json!({
            "dir": out.display().to_string(),
            "written": written.len(),
            "events": manifest.len(),
        })));
    }
    emit(&format!(
        "MISP feed {}: {} event(s) written or updated, {} in all (up to {})\n",
        term(&out.display().to_string()),
        written.len(),
        manifest.len(),
        tlp_label(max_tlp.0)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_times_and_ages() {
        assert_eq!(parse_since("2025-01-01T00:00:00Z"), Ok(1_735_689_600_000));
        let now = crate::service::now_ms();
        let d = parse_since("2d").unwrap();
        assert!((now - d - 2 * 86_400_000).abs() < 10_000);
        for bad in ["", "2w", "x", "-3h", "0h", "yesterday"] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn import_request_ids_depend_on_the_alert_and_recipients() {
        let r = PublishAlertRequest {
            alert: Some(Alert {
                title: "t".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut r2 = r.clone();
        assert_eq!(import_request_id(&r, &[]), import_request_id(&r2, &[]));
        r2.recipients.push("node-b".into());
        assert_ne!(import_request_id(&r, &[]), import_request_id(&r2, &[]));
        let file = |content: &[u8]| crate::domain::exchange::ImportedFile {
            name: "a.pcap".into(),
            media_type: "application/vnd.tcpdump.pcap".into(),
            malicious: false,
            content: content.to_vec(),
            source: Default::default(),
        };
        assert_ne!(
            import_request_id(&r, &[file(b"one")]),
            import_request_id(&r, &[file(b"two")])
        );
        assert_ne!(
            import_request_id(&r, &[]),
            import_request_id(&r, &[file(b"one")])
        );
    }
}
