//! Alerts ⇄ MISP events (the MISP core format as PyMISP reads it and MISP
//! feeds carry it), and the files of a MISP feed folder.
//!
//! Export ([`export_event`]):
//!
//! | certfed | MISP event |
//! |---|---|
//! | alert | event: title → `info`; created → `date`, `timestamp`, `publish_timestamp`; `published` true |
//! | origin member | `Orgc` (name = member id) |
//! | description | an `EventReport` named "Description" |
//! | TLP | tag `tlp:clear` … `tlp:red`, and `distribution` (CLEAR → 3 all communities, GREEN → 1 this community, AMBER/AMBER+STRICT/RED → 0 your organisation only) |
//! | RSIT class/type, NIS2 sectors/subsectors | tags `rsit:…`, `nis2:impact-sectors-impacted="…"`, `nis2:impact-subsectors-impacted="…"` |
//! | severity | `threat_level_id` (critical and high → 1, medium → 2, low → 3) and tag `certfed:severity="…"` |
//! | countries, expiry, exercise, retraction | tags `certfed:country="EE"`, `certfed:expires="<RFC 3339>"`, `certfed:exercise`, `certfed:retracted` |
//! | ip / cidr, domain, url, email, sha256, sha1, md5, cve, asn, text | attributes `ip-dst`, `domain`, `url`, `email`, `sha256`, `sha1`, `md5`, `vulnerability`, `AS`, `text` (category "Other"); comment → `comment`; `to_ids` for the first seven (false once retracted) |
//! | references | attributes `link` (URLs) or `text` in category "External analysis" |
//! | attachments | `attachment` (value the name, `data` base64); a malware sample `malware-sample` (value `filename\|md5`, `data` MISP's zip with password "infected"); content not included: `filename\|sha256` ([`super::evidence`]) |
//!
//! The event uuid is the uuid of the STIX report of the same alert, and an
//! attribute's uuid the uuid of the STIX indicator of the same value (both
//! from the root alert, [`super::stix`]), so an update replaces the event and
//! MISP's own STIX export of it keeps certfed's ids.
//!
//! Import ([`import_events`]) reads one event (`{"Event": …}` or bare), a
//! list of them, or a REST search answer (`{"response": […]}`), and reads
//! back the mapping above; attributes of MISP objects are read like event
//! attributes, and `ip-src`, `hostname`, `email-src`, `email-dst` and
//! `filename|<hash>` are read too; `attachment` and `malware-sample`
//! attributes with `data` become attachments (the sample's MD5 in the value,
//! the zip's entry name and the content must agree, and everything is bounded
//! by the node's `limits.max_attachment_bytes`). A TLP tag or a `distribution` stricter
//! than the import's TLP is an error (it would lower the marking); attribute
//! types and tags certfed does not carry are listed as skipped.
//!
//! Feed ([`manifest_entry`], [`attribute_hashes`]): the `manifest.json` entry
//! of an event and its `hashes.csv` lines (MD5 of each attribute value, as
//! PyMISP's `feed_meta_generator` writes them).
use super::common::{
    AlertRecord, ExportedFile, ImportErrors, ImportOptions, Imported, ImportedAlert, ImportedFile,
    MAX_IMPORT_BYTES, MAX_IMPORT_OBJECTS, Provenance, Skipped, Source, check_imported, date_of,
    parse_time, stix_time, uuid_for,
};
use super::evidence::{SAMPLE_PASSWORD, b64, hex, unb64, unzip_sample, zip_sample};
use super::stix::{alert_labels, indicator_name};
use crate::domain::alert::{
    VocabTag, parse_severity, parse_vocab_tag, split_machine_tag, subsector_sector, tlp_tag,
    validate_country, validate_indicator,
};
use crate::domain::attachment::media_type_for_name;
use crate::domain::policy::tlp_label;
use crate::proto::v1::{Indicator, IndicatorType, Revision, RsitType, Severity, Tlp};
use serde_json::{Value, json};

/// The uuid of the MISP event of an alert's revision chain.
pub fn event_uuid(root: &str) -> String {
    uuid_for(&format!("report:{root}")).to_string()
}

fn tag_colour(name: &str) -> &'static str {
    match name {
        "tlp:red" => "#FF2B2B",
        "tlp:amber" | "tlp:amber+strict" => "#FFC000",
        "tlp:green" => "#33FF00",
        _ => "#ffffff",
    }
}

fn tag(name: &str) -> Value {
    json!({"name": name, "colour": tag_colour(name), "local": false, "relationship_type": ""})
}

/// MISP `distribution` of a TLP.
pub fn distribution(tlp: Tlp) -> &'static str {
    match tlp {
        Tlp::Clear => "3",
        Tlp::Green => "1",
        _ => "0",
    }
}

fn threat_level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "1",
        Severity::Medium => "2",
        Severity::Low => "3",
        Severity::Unspecified => "4",
    }
}

/// MISP attribute type and category of an indicator.
fn attribute_type(t: IndicatorType) -> (&'static str, &'static str, bool) {
    match t {
        IndicatorType::Ip | IndicatorType::Cidr => ("ip-dst", "Network activity", true),
        IndicatorType::Domain => ("domain", "Network activity", true),
        IndicatorType::Url => ("url", "Network activity", true),
        IndicatorType::Email => ("email", "Payload delivery", true),
        IndicatorType::Sha256 => ("sha256", "Payload delivery", true),
        IndicatorType::Sha1 => ("sha1", "Payload delivery", true),
        IndicatorType::Md5 => ("md5", "Payload delivery", true),
        IndicatorType::Cve => ("vulnerability", "External analysis", false),
        IndicatorType::Asn => ("AS", "Network activity", false),
        IndicatorType::Text | IndicatorType::Unspecified => ("text", "Other", false),
    }
}

/// The MISP event (`{"Event": …}`) of one alert.
pub fn export_event(r: &AlertRecord) -> Value {
    let a = &r.alert;
    let ts = (r.created_ms.max(r.root_created_ms) / 1000).to_string();
    let retracted = r.is_retraction();
    let tlp = r.tlp();
    let mut tags = vec![tag(tlp_tag(tlp))];
    tags.extend(alert_labels(a).iter().map(|l| tag(l)));
    for cc in &a.affected_countries {
        tags.push(tag(&format!("certfed:country=\"{cc}\"")));
    }
    if let Some(e) = &a.expires {
        let ms = crate::domain::envelope::ts_to_ms(e);
        tags.push(tag(&format!("certfed:expires=\"{}\"", stix_time(ms))));
    }
    if retracted {
        tags.push(tag("certfed:retracted"));
    }
    let attribute =
        |uuid_name: &str, ty: &str, cat: &str, value: &str, comment: &str, to_ids: bool| {
            json!({
                "uuid": uuid_for(uuid_name).to_string(),
                "type": ty,
                "category": cat,
                "value": value,
                "comment": comment,
                "to_ids": to_ids && !retracted,
                "distribution": "5",
                "timestamp": ts,
                "disable_correlation": false,
                "deleted": false,
            })
        };
    let mut attrs = Vec::new();
    for ind in &a.indicators {
        let t = IndicatorType::try_from(ind.r#type).unwrap_or(IndicatorType::Unspecified);
        let (ty, cat, ids) = attribute_type(t);
        let value = if t == IndicatorType::Cve {
            ind.value.to_ascii_uppercase()
        } else {
            ind.value.clone()
        };
        attrs.push(attribute(
            &indicator_name(&r.root_id, ind),
            ty,
            cat,
            &value,
            &ind.comment,
            ids,
        ));
    }
    for reference in &a.references {
        let ty = if reference.contains("://") {
            "link"
        } else {
            "text"
        };
        attrs.push(attribute(
            &format!("reference:{}:{reference}", r.root_id),
            ty,
            "External analysis",
            reference,
            "",
            false,
        ));
    }
    for (i, f) in r.attachments.iter().enumerate() {
        attrs.push(attachment_attribute(r, i, f, &ts, retracted));
    }
    let mut event = json!({
        "uuid": event_uuid(&r.root_id),
        "info": a.title,
        "date": date_of(r.root_created_ms),
        "timestamp": ts,
        "publish_timestamp": ts,
        "published": true,
        "analysis": "2",
        "threat_level_id": threat_level(Severity::try_from(a.severity).unwrap_or(Severity::Unspecified)),
        "distribution": distribution(tlp),
        "extends_uuid": "",
        "protected": false,
        "Orgc": {"name": r.origin, "uuid": uuid_for(&format!("member:{}", r.origin)).to_string()},
        "Tag": tags,
        "Attribute": attrs,
    });
    if !a.description.is_empty() {
        event["EventReport"] = json!([{
            "uuid": uuid_for(&format!("misp-report:{}", r.root_id)).to_string(),
            "name": "Description",
            "content": a.description,
            "distribution": "5",
            "timestamp": ts,
            "deleted": false,
        }]);
    }
    json!({ "Event": event })
}

/// The MISP attribute of an attachment: `attachment` (value the file name,
/// `data` the content in base64), `malware-sample` for a malicious one
/// (value `filename|md5`, `data` the zip MISP expects, password
/// "infected"), or, when the content is not included, `filename|sha256`
/// with a comment saying so.
fn attachment_attribute(
    r: &AlertRecord,
    i: usize,
    f: &ExportedFile,
    ts: &str,
    retracted: bool,
) -> Value {
    let mut a = json!({
        "uuid": uuid_for(&format!("attachment:{}:{i}:{}", r.root_id, f.name)).to_string(),
        "distribution": "5",
        "timestamp": ts,
        "disable_correlation": false,
        "deleted": false,
        "comment": "",
    });
    let sample = match (&f.content, f.malicious) {
        (Some(c), true) => zip_sample(&f.name, c).ok(),
        _ => None,
    };
    match (&f.content, sample) {
        (Some(_), Some((zip, md5))) => {
            a["type"] = "malware-sample".into();
            a["category"] = "Payload delivery".into();
            a["value"] = format!("{}|{md5}", f.name).into();
            a["data"] = b64(&zip).into();
            a["to_ids"] = (!retracted).into();
        }
        (Some(c), None) if !f.malicious => {
            a["type"] = "attachment".into();
            a["category"] = "External analysis".into();
            a["value"] = f.name.clone().into();
            a["data"] = b64(c).into();
            a["to_ids"] = false.into();
            if f.media_type != media_type_for_name(&f.name) {
                a["comment"] = format!("media type {}", f.media_type).into();
            }
        }
        _ => {
            a["type"] = "filename|sha256".into();
            a["category"] = if f.malicious {
                "Payload delivery"
            } else {
                "External analysis"
            }
            .into();
            a["value"] = format!("{}|{}", f.name, hex(&f.sha256)).into();
            a["to_ids"] = (f.malicious && !retracted).into();
            a["comment"] = format!(
                "certfed attachment ({} bytes{}) not included in this export: fetch it with certfed attachment get {} {}",
                f.size,
                if f.malicious { ", malware sample" } else { "" },
                r.message_id,
                f.name
            )
            .into();
        }
    }
    a
}

/// The `manifest.json` entry of an event (`{"Event": …}` or bare): its uuid and
/// what a MISP instance reads before fetching the event file.
pub fn manifest_entry(event: &Value) -> Option<(String, Value)> {
    let e = event.get("Event").unwrap_or(event);
    let uuid = e.get("uuid")?.as_str()?.to_string();
    let entry = json!({
        "Orgc": e.get("Orgc").cloned().unwrap_or(Value::Null),
        "Tag": e.get("Tag").cloned().unwrap_or_else(|| json!([])),
        "info": e.get("info").cloned().unwrap_or(Value::Null),
        "date": e.get("date").cloned().unwrap_or(Value::Null),
        "analysis": e.get("analysis").cloned().unwrap_or(Value::Null),
        "threat_level_id": e.get("threat_level_id").cloned().unwrap_or(Value::Null),
        "timestamp": e.get("timestamp").cloned().unwrap_or(Value::Null),
    });
    Some((uuid, entry))
}

/// The MD5 (hex) of each attribute value of an event, both halves of a
/// composite (`a|b`) value apart: the `hashes.csv` lines are `<md5>,<event uuid>`.
pub fn attribute_hashes(event: &Value) -> Vec<String> {
    use md5::{Digest, Md5};
    let e = event.get("Event").unwrap_or(event);
    let mut out = Vec::new();
    let mut add = |a: &Value| {
        let ty = a.get("type").and_then(Value::as_str).unwrap_or("");
        let v = match a.get("value") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => return,
        };
        let parts: Vec<&str> = if ty.contains('|') || ty == "malware-sample" {
            v.split('|').collect()
        } else {
            vec![v.as_str()]
        };
        for p in parts {
            out.push(format!("{:x}", Md5::digest(p.as_bytes())));
        }
    };
    for a in e
        .get("Attribute")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        add(a);
    }
    for o in e
        .get("Object")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for a in o
            .get("Attribute")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            add(a);
        }
    }
    out
}

// ---------------------------------------------------------------- import

/// The content of an `attachment` attribute (`data`, base64), if present.
/// Its media type is the one a certfed export names in the comment ("media
/// type …"), else the one of its extension.
fn read_attachment(
    aname: &str,
    a: &Value,
    value: &str,
    comment: &str,
    max: u64,
) -> Result<Option<ImportedFile>, (&'static str, String)> {
    let data = match a.get("data") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(d)) if d.is_empty() => return Ok(None),
        Some(Value::String(d)) => d,
        Some(_) => return Err(("data", "must be the content in base64 (a string)".into())),
    };
    let content = unb64(data, max).map_err(|e| ("data", e))?;
    let media_type = comment
        .strip_prefix("media type ")
        .map(str::to_string)
        .unwrap_or_else(|| media_type_for_name(value).to_string());
    Ok(Some(ImportedFile {
        name: value.to_string(),
        media_type,
        malicious: false,
        content,
        source: Source::new(aname, "value"),
    }))
}

/// A `malware-sample` attribute: value `filename|md5`, `data` the zip
/// (password "infected") holding `<md5>` and `<md5>.filename.txt`. The MD5 of
/// the value, the zip's entry name and the sample must agree.
fn read_sample(
    aname: &str,
    a: &Value,
    value: &str,
    max: u64,
) -> Result<ImportedFile, (&'static str, String)> {
    let Some(Value::String(data)) = a.get("data") else {
        return Err((
            "data",
            "must be the sample's zip in base64 (a string)".into(),
        ));
    };
    // The zip of an incompressible sample is a little larger than the sample.
    let zip = unb64(data, max.saturating_add(64 * 1024)).map_err(|e| ("data", e))?;
    let sample = unzip_sample(&zip, SAMPLE_PASSWORD, max).map_err(|e| ("data", e))?;
    let (file, md5) = match value.rsplit_once('|') {
        Some((f, m)) => (f, Some(m)),
        None => (value, None),
    };
    if let Some(m) = md5
        && !m.eq_ignore_ascii_case(&sample.md5)
    {
        return Err((
            "value",
            format!(
                "says MD5 {m} but the sample in data has MD5 {}: the attribute lies about its sample (or was altered); nothing is imported",
                sample.md5
            ),
        ));
    }
    let name = if !file.is_empty() {
        file.to_string()
    } else {
        sample.filename.clone().unwrap_or(sample.md5.clone())
    };
    Ok(ImportedFile {
        name,
        media_type: crate::domain::attachment::DEFAULT_MEDIA_TYPE.to_string(),
        malicious: true,
        content: sample.content,
        source: Source::new(aname, "value"),
    })
}

/// The least restrictive TLP a MISP distribution level allows, if any.
fn distribution_floor(d: &Value) -> Option<(Tlp, &'static str)> {
    let n = match d {
        Value::String(s) => s.parse::<u8>().ok()?,
        Value::Number(n) => u8::try_from(n.as_u64()?).ok()?,
        _ => return None,
    };
    match n {
        0 => Some((Tlp::AmberStrict, "your organisation only")),
        1 => Some((Tlp::Green, "this community only")),
        2 => Some((Tlp::Green, "connected communities")),
        4 => Some((Tlp::Amber, "a sharing group")),
        _ => None,
    }
}

fn string_of(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// The events of a file, each with the name errors use for it.
fn events(v: &Value) -> Result<Vec<(String, &Value)>, ImportErrors> {
    let list: Vec<&Value> = match v {
        Value::Object(o) if o.contains_key("response") => match o.get("response") {
            Some(Value::Array(a)) => a.iter().collect(),
            _ => {
                return Err(ImportErrors::one(
                    "",
                    "response",
                    "must be a list of events",
                ));
            }
        },
        Value::Object(_) => vec![v],
        Value::Array(a) => a.iter().collect(),
        _ => {
            return Err(ImportErrors::one(
                "",
                "",
                "not a MISP event: expected {\"Event\": {…}}, a list of events or {\"response\": […]}",
            ));
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.into_iter().enumerate() {
        let e = item.get("Event").unwrap_or(item);
        if !e.is_object() || e.get("info").is_none() {
            return Err(ImportErrors::one(
                "",
                &format!("events[{i}]"),
                "not a MISP event (no \"info\"): expected {\"Event\": {\"info\": …, \"Attribute\": […]}}",
            ));
        }
        let name = e
            .get("uuid")
            .and_then(Value::as_str)
            .map(|u| format!("event {u}"))
            .unwrap_or_else(|| format!("events[{i}]"));
        out.push((name, e));
    }
    Ok(out)
}

/// Reads MISP events into the alerts they describe (see the module
/// documentation), checked against the alert rules.
pub fn import_events(bytes: &[u8], opts: &ImportOptions) -> Result<Imported, ImportErrors> {
    if bytes.len() > MAX_IMPORT_BYTES {
        return Err(ImportErrors::one(
            "",
            "",
            format!(
                "the file is {} bytes, over the limit of {MAX_IMPORT_BYTES}; split it",
                bytes.len()
            ),
        ));
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        ImportErrors::one(
            "",
            "",
            format!(
                "malformed JSON at line {} column {}: {e}",
                e.line(),
                e.column()
            ),
        )
    })?;
    let evs = events(&v)?;
    let total: usize = evs
        .iter()
        .map(|(_, e)| {
            e.get("Attribute")
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
                + e.get("Object").and_then(Value::as_array).map_or(0, |os| {
                    os.iter()
                        .map(|o| {
                            o.get("Attribute")
                                .and_then(Value::as_array)
                                .map_or(0, Vec::len)
                        })
                        .sum()
                })
        })
        .sum();
    if total > MAX_IMPORT_OBJECTS {
        return Err(ImportErrors::one(
            "",
            "Attribute",
            format!(
                "{total} attributes, over the limit of {MAX_IMPORT_OBJECTS} per import; split the file"
            ),
        ));
    }
    let mut errors = ImportErrors::default();
    let mut skipped = Vec::new();
    let mut alerts = Vec::new();
    for (name, e) in evs {
        if let Some(a) = import_event(&name, e, opts, &mut errors, &mut skipped) {
            alerts.push(a);
        }
    }
    if alerts.is_empty() && errors.is_empty() {
        errors.push(
            "",
            "",
            "nothing to import: every event is retracted (tag certfed:retracted)",
        );
    }
    errors.into_result()?;
    let mut imported = Imported { alerts, skipped };
    check_imported(&mut imported, opts)?;
    Ok(imported)
}

fn tag_names(v: &Value) -> Vec<String> {
    v.get("Tag")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("name").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// Checks the TLP tags and distribution of `v` (event or attribute) against the import's TLP.
fn check_marking(object: &str, v: &Value, tlp: Tlp, has_tlp_tag: bool, errors: &mut ImportErrors) {
    for t in tag_names(v) {
        match crate::domain::alert::parse_tlp_tag(&t) {
            Ok(Some(level)) if level as i32 > tlp as i32 => errors.push(
                object,
                "Tag",
                format!(
                    "tagged {t}; importing at {} would lower the marking: import with --tlp {}",
                    tlp_label(tlp),
                    tlp_label(level)
                        .trim_start_matches("TLP:")
                        .to_ascii_lowercase()
                ),
            ),
            Ok(_) => {}
            Err(e) => errors.push(object, "Tag", e),
        }
    }
    if !has_tlp_tag
        && let Some((floor, what)) = v.get("distribution").and_then(distribution_floor)
        && floor as i32 > tlp as i32
    {
        errors.push(
            object,
            "distribution",
            format!(
                "shared with {what} and no TLP tag; importing at {} could widen it: import with --tlp {} or stricter",
                tlp_label(tlp),
                tlp_label(floor).trim_start_matches("TLP:").to_ascii_lowercase()
            ),
        );
    }
}

fn import_event(
    name: &str,
    e: &Value,
    opts: &ImportOptions,
    errors: &mut ImportErrors,
    skipped: &mut Vec<Skipped>,
) -> Option<ImportedAlert> {
    let skip = |skipped: &mut Vec<Skipped>, object: &str, kind: &str, reason: String| {
        skipped.push(Skipped {
            object: object.to_string(),
            kind: kind.to_string(),
            reason,
        })
    };
    let tags = tag_names(e);
    if tags.iter().any(|t| t == "certfed:retracted") {
        skip(
            skipped,
            name,
            "event",
            "retracted by its origin (tag certfed:retracted): not imported".into(),
        );
        return None;
    }
    let event_tlp_tag = tags
        .iter()
        .any(|t| matches!(crate::domain::alert::parse_tlp_tag(t), Ok(Some(_))));
    check_marking(name, e, opts.tlp, event_tlp_tag, errors);

    let mut alert = crate::proto::v1::Alert {
        title: string_of(e.get("info")),
        tlp: opts.tlp as i32,
        revision: Revision::Original as i32,
        exercise: opts.exercise,
        ..Default::default()
    };
    let mut prov = Provenance {
        whole: Source::new(name, ""),
        title: Source::new(name, "info"),
        description: Source::new(name, "EventReport"),
        ..Default::default()
    };
    for t in &tags {
        match parse_vocab_tag(t) {
            Ok(Some(VocabTag::Tlp(_))) => {}
            Ok(Some(VocabTag::Rsit(c, ty))) => {
                if alert.rsit_class != 0 && alert.rsit_class != c as i32 {
                    errors.push(
                        name,
                        "Tag",
                        format!("two RSIT classes ({t} and an earlier one); an alert has one"),
                    );
                }
                alert.rsit_class = c as i32;
                if ty != RsitType::Unspecified {
                    alert.rsit_type = ty as i32;
                }
            }
            Ok(Some(VocabTag::Sector(s))) => {
                if !alert.sectors.contains(&(s as i32)) {
                    alert.sectors.push(s as i32);
                }
            }
            Ok(Some(VocabTag::Subsector(s))) => {
                if !alert.subsectors.contains(&(s as i32)) {
                    alert.subsectors.push(s as i32);
                }
                let sector = subsector_sector(s) as i32;
                if !alert.sectors.contains(&sector) {
                    alert.sectors.push(sector);
                }
            }
            Ok(None) => match split_machine_tag(t) {
                Some((ns, pred, value)) if ns == "certfed" => match (pred.as_str(), value) {
                    ("severity", Some(v)) => match parse_severity(&v) {
                        Ok(s) => alert.severity = s as i32,
                        Err(err) => errors.push(name, "Tag", err),
                    },
                    ("exercise", None) => alert.exercise = true,
                    ("country", Some(cc)) => match validate_country(&cc) {
                        Ok(()) => {
                            if !alert.affected_countries.contains(&cc) {
                                alert.affected_countries.push(cc);
                                prov.countries.push(Source::new(name, "Tag"));
                            }
                        }
                        Err(err) => errors.push(name, "Tag", err),
                    },
                    ("expires", Some(when)) => match parse_time(&when) {
                        Some(ms) if ms > opts.now_ms => {
                            alert.expires = Some(crate::domain::envelope::ms_to_ts(ms));
                        }
                        Some(_) => skip(
                            skipped,
                            name,
                            "tag",
                            format!(
                                "{t}: already expired; the alert is imported without an expiry"
                            ),
                        ),
                        None => errors.push(name, "Tag", format!("{t}: not an RFC 3339 time")),
                    },
                    _ => skip(
                        skipped,
                        name,
                        "tag",
                        format!("{} is not carried", crate::domain::text::quote(t)),
                    ),
                },
                _ => skip(
                    skipped,
                    name,
                    "tag",
                    format!("{} is not carried", crate::domain::text::quote(t)),
                ),
            },
            Err(err) => errors.push(name, "Tag", err),
        }
    }
    if alert.severity == 0 {
        alert.severity = match string_of(e.get("threat_level_id")).as_str() {
            "1" => Severity::High as i32,
            "2" => Severity::Medium as i32,
            "3" => Severity::Low as i32,
            _ => match opts.severity {
                Some(s) => s as i32,
                None => {
                    errors.push(
                        name,
                        "threat_level_id",
                        "undefined threat level and no certfed:severity tag: pass --severity",
                    );
                    0
                }
            },
        };
    }
    // Description: the event reports (one: its content; several: each under its name).
    let reports: Vec<&Value> = e
        .get("EventReport")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| r.get("deleted").and_then(Value::as_bool) != Some(true))
        .collect();
    alert.description = match reports.as_slice() {
        [] => String::new(),
        [one] => string_of(one.get("content")),
        many => many
            .iter()
            .map(|r| {
                format!(
                    "## {}\n\n{}",
                    string_of(r.get("name")),
                    string_of(r.get("content"))
                )
            })
            .collect::<Vec<_>>()
            .join("\n\n"),
    };
    // Attributes, then the attributes of MISP objects.
    let mut attrs: Vec<(&Value, Option<String>)> = e
        .get("Attribute")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|a| (a, None))
        .collect();
    for o in e
        .get("Object")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let oname = string_of(o.get("name"));
        for a in o
            .get("Attribute")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            attrs.push((a, Some(oname.clone())));
        }
    }
    let mut files: Vec<ImportedFile> = Vec::new();
    for (i, (a, object)) in attrs.into_iter().enumerate() {
        let aname = a
            .get("uuid")
            .and_then(Value::as_str)
            .map(|u| format!("attribute {u}"))
            .unwrap_or_else(|| format!("{name} Attribute[{i}]"));
        if a.get("deleted").and_then(Value::as_bool) == Some(true) {
            skip(skipped, &aname, "attribute", "deleted in MISP".into());
            continue;
        }
        let atags = tag_names(a);
        let has_tag = atags
            .iter()
            .any(|t| matches!(crate::domain::alert::parse_tlp_tag(t), Ok(Some(_))));
        check_marking(&aname, a, opts.tlp, has_tag, errors);
        let ty = string_of(a.get("type"));
        let category = string_of(a.get("category"));
        let value = string_of(a.get("value"));
        let mut comment = string_of(a.get("comment"));
        if let Some(o) = &object
            && comment.is_empty()
        {
            comment = format!("from MISP object {o}");
        }
        let (itype, value) = match ty.as_str() {
            "ip-dst" | "ip-src" if value.contains('/') => (IndicatorType::Cidr, value),
            "ip-dst" | "ip-src" => (IndicatorType::Ip, value),
            "domain" | "hostname" => (IndicatorType::Domain, value),
            "url" => (IndicatorType::Url, value),
            "email" | "email-src" | "email-dst" => (IndicatorType::Email, value),
            "sha256" => (IndicatorType::Sha256, value),
            "sha1" => (IndicatorType::Sha1, value),
            "md5" => (IndicatorType::Md5, value),
            "vulnerability" => (IndicatorType::Cve, value),
            "AS" => {
                let v = if value.to_ascii_uppercase().starts_with("AS") {
                    value
                } else {
                    format!("AS{value}")
                };
                (IndicatorType::Asn, v)
            }
            "filename|sha256" | "filename|sha1" | "filename|md5" => {
                let (file, hash) = value.split_once('|').unwrap_or(("", value.as_str()));
                let t = match &ty[9..] {
                    "sha256" => IndicatorType::Sha256,
                    "sha1" => IndicatorType::Sha1,
                    _ => IndicatorType::Md5,
                };
                comment = if comment.is_empty() {
                    format!("file name: {file}")
                } else {
                    format!("{comment} (file name: {file})")
                };
                (t, hash.to_string())
            }
            "attachment" => {
                match read_attachment(&aname, a, &value, &comment, opts.max_attachment_bytes) {
                    Ok(Some(f)) => files.push(f),
                    Ok(None) => skip(
                        skipped,
                        &aname,
                        "attachment",
                        "no data: the file's content is not in the event (export it from MISP with attachments included)".into(),
                    ),
                    Err((field, e)) => errors.push(&aname, field, e),
                }
                continue;
            }
            "malware-sample" if a.get("data").is_some_and(|d| !d.is_null()) => {
                match read_sample(&aname, a, &value, opts.max_attachment_bytes) {
                    Ok(f) => files.push(f),
                    Err((field, e)) => errors.push(&aname, field, e),
                }
                continue;
            }
            "malware-sample" => {
                // A sample without its zip: its MD5 is still an indicator.
                let (file, hash) = value.rsplit_once('|').unwrap_or(("", value.as_str()));
                comment = if comment.is_empty() {
                    format!("malware sample (not in the event): {file}")
                } else {
                    format!("{comment} (malware sample not in the event: {file})")
                };
                (IndicatorType::Md5, hash.to_string())
            }
            "link" => {
                alert.references.push(value);
                prov.references.push(Source::new(&aname, "value"));
                continue;
            }
            "text" if category == "External analysis" => {
                alert.references.push(value);
                prov.references.push(Source::new(&aname, "value"));
                continue;
            }
            "text" => (IndicatorType::Text, value),
            other => {
                skip(
                    skipped,
                    &aname,
                    other,
                    format!("attribute type {other:?} has no certfed indicator type"),
                );
                continue;
            }
        };
        let ind = Indicator {
            r#type: itype as i32,
            value,
            comment,
        };
        if let Err(err) = validate_indicator(&ind) {
            errors.push(&aname, "value", err);
            continue;
        }
        alert.indicators.push(ind);
        prov.indicators.push(Source::new(&aname, "value"));
    }
    Some(ImportedAlert {
        alert,
        source: name.to_string(),
        provenance: prov,
        attachments: files,
    })
}
