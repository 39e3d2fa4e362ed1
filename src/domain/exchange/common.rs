//! What the STIX and MISP mappings share: the alert as exported
//! ([`AlertRecord`]), what an import produces ([`Imported`]) or why it fails
//! ([`ImportErrors`]), deterministic ids, timestamps, and the final check of
//! imported alerts against the alert rules with errors that name the object
//! and the field of the file they came from.
//!
//! Invariants:
//! - Ids are UUIDv5 in one certfed namespace, from names built of message ids
//!   and values ([`uuid_for`]): exporting the same message twice gives the same
//!   ids, and an update of an alert gives the same ids as the alert it updates
//!   (its *root*), so a consumer updates rather than duplicates.
//! - An import either yields alerts that pass [`validate_alert`] (as the node
//!   will check them again) or fails with every problem found, each naming an
//!   object id (or MISP uuid) and a field; it never yields part of a file.
//! - Pure: no clock (`now_ms` is an argument), no files, no network.
use crate::domain::alert::{Limits, ValidationError, validate_alert};
use crate::proto::v1::{Alert, Severity, Tlp};
use prost::Message;

/// Largest file `certfed alert import` reads, in bytes.
pub const MAX_IMPORT_BYTES: usize = 64 * 1024 * 1024;
/// Most objects (STIX) or attributes (MISP) in one import.
pub const MAX_IMPORT_OBJECTS: usize = 100_000;
/// Most problems listed in one [`ImportErrors`].
pub const MAX_LISTED_ERRORS: usize = 100;

/// One alert as this node holds it, ready to map: the message, its origin and
/// creation time, and the first alert of its revision chain (the *root*: the
/// alert itself for an original, the alert an update or retraction supersedes,
/// followed back to the original as far as this node holds the chain).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRecord {
    pub message_id: String,
    pub origin: String,
    pub created_ms: i64,
    pub alert: Alert,
    pub root_id: String,
    pub root_created_ms: i64,
    /// The alert's evidence attachments (issue 16), with their content where
    /// the export includes it.
    pub attachments: Vec<ExportedFile>,
}

impl AlertRecord {
    /// A record of an original alert (its own root).
    pub fn original(message_id: &str, origin: &str, created_ms: i64, alert: Alert) -> Self {
        AlertRecord {
            message_id: message_id.to_string(),
            origin: origin.to_string(),
            created_ms,
            alert,
            root_id: message_id.to_string(),
            root_created_ms: created_ms,
            attachments: Vec::new(),
        }
    }

    /// Whether the alert withdraws the one it supersedes.
    pub fn is_retraction(&self) -> bool {
        self.alert.revision == crate::proto::v1::Revision::Retraction as i32
    }

    /// The TLP of the alert (UNSPECIFIED for an unknown value).
    pub fn tlp(&self) -> Tlp {
        Tlp::try_from(self.alert.tlp).unwrap_or(Tlp::Unspecified)
    }
}

/// The UUIDv5 of `name` in the certfed exchange namespace.
pub fn uuid_for(name: &str) -> uuid::Uuid {
    let ns = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"urn:certfed:exchange");
    uuid::Uuid::new_v5(&ns, name.as_bytes())
}

/// `YYYY-MM-DDTHH:MM:SS.sssZ` (the STIX timestamp form, UTC, milliseconds).
pub fn stix_time(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// `YYYY-MM-DD` of a time (UTC).
pub fn date_of(ms: i64) -> String {
    stix_time(ms)[..10].to_string()
}

/// Reads an RFC 3339 timestamp (STIX and TAXII form) to unix milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// One attachment of an exported alert: its manifest and, when the export
/// includes it, its content (verified by the node that served it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportedFile {
    pub name: String,
    pub media_type: String,
    pub size: u64,
    /// SHA-256 of the content (32 bytes).
    pub sha256: Vec<u8>,
    pub malicious: bool,
    /// The content; `None` when it is not on the node or over the inline limit.
    pub content: Option<Vec<u8>>,
}

/// One attachment an import publishes with its alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedFile {
    pub name: String,
    pub media_type: String,
    pub malicious: bool,
    pub content: Vec<u8>,
    /// The object and field of the file it came from.
    pub source: Source,
}

/// Where a field of an imported alert came from: an object id (STIX) or uuid
/// (MISP) and the field inside it, as the operator finds them in the file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Source {
    pub object: String,
    pub field: String,
}

impl Source {
    pub fn new(object: &str, field: &str) -> Source {
        Source {
            object: object.to_string(),
            field: field.to_string(),
        }
    }
}

/// Where each part of an imported alert came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Provenance {
    /// The object the alert as a whole was built from.
    pub whole: Source,
    pub title: Source,
    pub description: Source,
    pub indicators: Vec<Source>,
    pub references: Vec<Source>,
    pub countries: Vec<Source>,
}

/// One alert an import would publish.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedAlert {
    pub alert: Alert,
    /// The object it was built from (a STIX report id, a MISP event uuid).
    pub source: String,
    pub provenance: Provenance,
    /// Evidence the file carries for it (MISP `attachment`/`malware-sample`,
    /// STIX `artifact`), published with it as attachments.
    pub attachments: Vec<ImportedFile>,
}

/// Something in the file that is not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Object id (STIX), attribute or tag (MISP).
    pub object: String,
    /// Its type (`malware`, `relationship`, `ip-dst|port`, `tag` …).
    pub kind: String,
    pub reason: String,
}

/// What an import produces: the alerts to publish and what was left out.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Imported {
    pub alerts: Vec<ImportedAlert>,
    pub skipped: Vec<Skipped>,
}

/// One problem that stops an import, naming the object and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    pub object: String,
    pub field: String,
    pub problem: String,
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.object.is_empty(), self.field.is_empty()) {
            (true, true) => write!(f, "{}", self.problem),
            (true, false) => write!(f, "{}: {}", self.field, self.problem),
            (false, true) => write!(f, "{}: {}", self.object, self.problem),
            (false, false) => write!(f, "{} {}: {}", self.object, self.field, self.problem),
        }
    }
}

/// Every problem found in a file (at most [`MAX_LISTED_ERRORS`] listed, and
/// how many more there were). Nothing of the file is published.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportErrors {
    pub errors: Vec<ImportError>,
    /// Problems found beyond the listed ones.
    pub more: usize,
}

impl ImportErrors {
    /// A single problem.
    pub fn one(object: &str, field: &str, problem: impl Into<String>) -> ImportErrors {
        let mut e = ImportErrors::default();
        e.push(object, field, problem);
        e
    }

    pub fn push(&mut self, object: &str, field: &str, problem: impl Into<String>) {
        if self.errors.len() < MAX_LISTED_ERRORS {
            self.errors.push(ImportError {
                object: object.to_string(),
                field: field.to_string(),
                problem: problem.into(),
            });
        } else {
            self.more += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// `Err(self)` if a problem was found.
    pub fn into_result(self) -> Result<(), ImportErrors> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl std::fmt::Display for ImportErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.errors.len() + self.more;
        write!(
            f,
            "{n} problem{} in the file; nothing was published:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        if self.more > 0 {
            write!(f, "\n  … and {} more", self.more)?;
        }
        Ok(())
    }
}

impl std::error::Error for ImportErrors {}

/// What the operator decided for an import (command-line flags).
#[derive(Debug, Clone, PartialEq)]
pub struct ImportOptions {
    /// The TLP every imported alert is published at. A file marked more
    /// restrictively is refused: importing would lower its marking.
    pub tlp: Tlp,
    /// Severity of alerts the file gives none for (none: such an alert is an error).
    pub severity: Option<Severity>,
    /// Title of the one alert made of a file without reports (STIX only).
    pub title: Option<String>,
    /// Mark every imported alert as exercise traffic.
    pub exercise: bool,
    /// Now, in unix milliseconds (expiry checks).
    pub now_ms: i64,
    /// The alert limits to check against.
    pub limits: Limits,
    /// The node's `limits.max_attachment_bytes`: most bytes of attachments
    /// per alert (0: the file may carry none).
    pub max_attachment_bytes: u64,
}

/// Checks every imported alert as the node will (`validate_alert`), naming the
/// object and field of the file for each failure. Indicators that repeat a
/// type and value already in the same alert are dropped first (listed in
/// `skipped`).
pub fn check_imported(imported: &mut Imported, opts: &ImportOptions) -> Result<(), ImportErrors> {
    let mut errors = ImportErrors::default();
    for a in &mut imported.alerts {
        dedupe_indicators(a, &mut imported.skipped);
        check_one(a, opts, &mut errors);
    }
    errors.into_result()
}

fn dedupe_indicators(a: &mut ImportedAlert, skipped: &mut Vec<Skipped>) {
    let mut seen = std::collections::HashSet::new();
    let mut keep_ind = Vec::with_capacity(a.alert.indicators.len());
    let mut keep_src = Vec::with_capacity(a.alert.indicators.len());
    let sources = std::mem::take(&mut a.provenance.indicators);
    for (ind, src) in std::mem::take(&mut a.alert.indicators)
        .into_iter()
        .zip(sources)
    {
        if seen.insert((ind.r#type, ind.value.clone())) {
            keep_ind.push(ind);
            keep_src.push(src);
        } else {
            skipped.push(Skipped {
                object: src.object,
                kind: "duplicate".into(),
                reason: format!(
                    "the same indicator ({}) is already in the alert from {}",
                    crate::domain::text::quote(&ind.value),
                    a.source
                ),
            });
        }
    }
    a.alert.indicators = keep_ind;
    a.provenance.indicators = keep_src;
}

/// Checks the attachments an alert would carry: how many, their names, and
/// their total size against the node's `limits.max_attachment_bytes`.
fn check_files(a: &ImportedAlert, opts: &ImportOptions, errors: &mut ImportErrors) {
    use crate::domain::attachment::{MAX_ATTACHMENTS, check_media_type, check_name};
    if a.attachments.len() > MAX_ATTACHMENTS {
        errors.push(
            &a.provenance.whole.object,
            "",
            format!(
                "{} attachments, at most {MAX_ATTACHMENTS} per alert; split the event or report",
                a.attachments.len()
            ),
        );
    }
    let mut total: u64 = 0;
    for (i, f) in a.attachments.iter().enumerate() {
        let src = &f.source;
        if let Err(e) = check_name("name", &f.name) {
            errors.push(&src.object, &src.field, e.to_string());
        }
        if let Err(e) = check_media_type("media type", &f.media_type) {
            errors.push(&src.object, &src.field, e.to_string());
        }
        if a.attachments[..i].iter().any(|g| g.name == f.name) {
            errors.push(
                &src.object,
                &src.field,
                format!(
                    "a second attachment named {} in the same alert; names are unique within a message",
                    crate::domain::text::quote(&f.name)
                ),
            );
        }
        total = total.saturating_add(f.content.len() as u64);
    }
    if total > opts.max_attachment_bytes {
        errors.push(
            &a.provenance.whole.object,
            "",
            format!(
                "its attachments hold {total} bytes in all, over the node's limits.max_attachment_bytes = {}; leave some out or raise the limit on every node",
                opts.max_attachment_bytes
            ),
        );
    }
}

fn check_one(a: &ImportedAlert, opts: &ImportOptions, errors: &mut ImportErrors) {
    check_files(a, opts, errors);
    let p = &a.provenance;
    let max = opts.limits.max_message_bytes;
    if a.alert.description.len() > max.saturating_mul(3) / 4 {
        errors.push(
            &p.description.object,
            &p.description.field,
            format!(
                "the description is {} bytes; an alert holds at most {max} bytes in all (limits.max_message_bytes): shorten it and give the full text as a reference",
                a.alert.description.len()
            ),
        );
        return;
    }
    let len = a.alert.encoded_len();
    if let Err(e) = validate_alert(&a.alert, opts.now_ms, len, &opts.limits) {
        let (src, problem) = locate(&e, p, len, max);
        errors.push(&src.object, &src.field, problem);
    }
}

/// The object and field of the file a validation failure is about.
fn locate(e: &ValidationError, p: &Provenance, len: usize, max: usize) -> (Source, String) {
    let indexed = |prefix: &str, list: &[Source]| -> Option<Source> {
        let rest = e.field.strip_prefix(prefix)?;
        let i: usize = rest.split(']').next()?.parse().ok()?;
        list.get(i).cloned()
    };
    let src = match e.field.as_str() {
        "alert" => {
            return (
                Source::new(&p.whole.object, "object_refs"),
                format!(
                    "the alert made of it would be {len} bytes, over the node's limit of {max} bytes (limits.max_message_bytes); split it into smaller reports or events"
                ),
            );
        }
        "alert.title" => p.title.clone(),
        "alert.description" => p.description.clone(),
        f if f.starts_with("alert.indicators[") => {
            indexed("alert.indicators[", &p.indicators).unwrap_or_else(|| p.whole.clone())
        }
        f if f.starts_with("alert.references[") => {
            indexed("alert.references[", &p.references).unwrap_or_else(|| p.whole.clone())
        }
        f if f.starts_with("alert.affected_countries[") => {
            indexed("alert.affected_countries[", &p.countries).unwrap_or_else(|| p.whole.clone())
        }
        _ => p.whole.clone(),
    };
    (src, format!("{} ({})", e.rule, e.field))
}
