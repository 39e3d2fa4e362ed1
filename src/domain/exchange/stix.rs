//! Alerts ⇄ STIX 2.1 bundles (OASIS STIX 2.1, with the TLP 2.0 marking
//! definitions of the OASIS extension
//! `extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d`).
//!
//! Export ([`export_bundle`], [`record_objects`]) writes, for each alert:
//!
//! | certfed | STIX 2.1 |
//! |---|---|
//! | origin member | `identity` (`identity_class` organization, name = member id), `created_by_ref` of every object |
//! | alert | `report` (`report_types` threat-report): title → `name`, description, created → `published`; update → a new version of the same report (same id, later `modified`); retraction → `revoked: true` |
//! | TLP | `object_marking_refs` to the TLP 2.0 marking definition (included) |
//! | RSIT class/type, NIS2 sectors/subsectors, severity, exercise | report `labels`: `rsit:intrusions="system-compromise"`, `nis2:impact-sectors-impacted="energy"`, `nis2:impact-subsectors-impacted="rail"`, `certfed:severity="high"`, `certfed:exercise` |
//! | affected country | `location` (`country`) in `object_refs`, one per alert and country |
//! | ip, cidr, domain, url, email, sha256, sha1, md5, asn | `indicator` with a STIX pattern ([`super::pattern`]); comment → `description`; expiry → `valid_until` |
//! | cve | `vulnerability` (name and `external_references` source `cve`) |
//! | text | `note` (`content`; comment → `abstract`) referring to the report |
//! | references | report `external_references` (`url`, or `external_id`), source `reference` |
//! | message id | report `external_references` source `certfed` |
//! | attachment | `file` (name, size, `hashes`, `mime_type`) with `content_ref` to an `artifact` (`payload_bin`) when the content is included; a malware sample's artifact is MISP's zip (`encryption_algorithm` mime-type-indicated, `decryption_key` infected) and a `malware` (`is_family` false) refers to the file in `sample_refs` |
//!
//! Ids are UUIDv5 ([`super::common::uuid_for`]) of the root alert (and the
//! value, for indicators and locations), so a re-export or an update replaces
//! rather than duplicates. A member's identity and the TLP marking
//! definitions are shared by every alert ([`is_shared`]): the same object in
//! every export (an identity's `created`/`modified` is the Unix epoch: its
//! content never changes).
//!
//! Import ([`import_bundle`]) reads the same mapping back, and from other
//! tools: each `report` (not revoked) is one alert of the objects it refers
//! to (indicators with representable patterns, vulnerabilities, locations,
//! the observables `ipv4-addr`, `ipv6-addr`, `domain-name`, `url`,
//! `email-addr`, `file` hashes, `autonomous-system`, and notes; a `file`
//! with `content_ref`, an `artifact`, and the `sample_refs` of a `malware`
//! become attachments, checked against every stated hash and size); a bundle
//! without reports is one alert of all its indicators, titled by the
//! operator. Everything else is listed as skipped, never dropped silently.
//! An object marked more restrictively than the import's TLP, a marking that
//! cannot be read, a pattern that cannot be represented, malformed JSON or
//! a value the alert rules refuse is an error naming the object and field,
//! and nothing is imported.
use super::common::{
    AlertRecord, ImportErrors, ImportOptions, Imported, ImportedAlert, ImportedFile,
    MAX_IMPORT_BYTES, MAX_IMPORT_OBJECTS, Provenance, Skipped, Source, check_imported, parse_time,
    stix_time, uuid_for,
};
use super::evidence::{
    SAMPLE_PASSWORD, b64, check_hashes, hex, md5_hex, sha256_hex, unb64, unzip_sample, zip_sample,
};
use super::pattern;
use crate::domain::alert::{
    VocabTag, parse_severity, parse_vocab_tag, rsit_tag, sector_tag, severity_label,
    split_machine_tag, subsector_tag, validate_country, validate_indicator,
};
use crate::domain::policy::tlp_label;
use crate::proto::v1::{
    Alert, Indicator, IndicatorType, Nis2Sector, Nis2Subsector, RsitClass, RsitType, Severity, Tlp,
};
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};

/// The OASIS TLP 2.0 extension definition.
pub const TLP2_EXTENSION: &str = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d";

/// The TLP 2.0 marking definition ids of the OASIS extension, and the TLP 1.0
/// ids of the STIX 2.1 specification (read on import).
const TLP2_IDS: [(Tlp, &str); 5] = [
    (
        Tlp::Clear,
        "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    ),
    (
        Tlp::Green,
        "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    ),
    (
        Tlp::Amber,
        "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    ),
    (
        Tlp::AmberStrict,
        "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    ),
    (
        Tlp::Red,
        "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
    ),
];
const TLP1_IDS: [(Tlp, &str); 4] = [
    (
        Tlp::Clear,
        "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9",
    ),
    (
        Tlp::Green,
        "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da",
    ),
    (
        Tlp::Amber,
        "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82",
    ),
    (
        Tlp::Red,
        "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
    ),
];

/// The `created` of the TLP 2.0 marking definitions, as the extension gives them.
const TLP2_CREATED: &str = "2022-10-01T00:00:00.000Z";
/// `created`/`modified` of objects whose content never changes (identities).
const EPOCH: &str = "1970-01-01T00:00:00.000Z";

/// The id of the TLP 2.0 marking definition of `tlp`.
pub fn tlp_marking_id(tlp: Tlp) -> &'static str {
    TLP2_IDS
        .iter()
        .find(|(t, _)| *t == tlp)
        .map_or(TLP2_IDS[4].1, |(_, id)| id)
}

/// The TLP 2.0 marking definition object of `tlp`.
pub fn tlp_marking(tlp: Tlp) -> Value {
    let word = tlp_label(tlp)
        .trim_start_matches("TLP:")
        .to_ascii_lowercase();
    json!({
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": tlp_marking_id(tlp),
        "created": TLP2_CREATED,
        "name": tlp_label(tlp),
        "extensions": {
            TLP2_EXTENSION: {"extension_type": "property-extension", "tlp_2_0": word}
        }
    })
}

/// `type--uuid` of a name.
fn sid(kind: &str, name: &str) -> String {
    format!("{kind}--{}", uuid_for(name))
}

/// Whether an object of [`record_objects`] is shared by every alert of its
/// origin or TLP (a marking definition, an identity) rather than the alert's own.
pub fn is_shared(o: &Value) -> bool {
    matches!(
        o.get("type").and_then(Value::as_str),
        Some("marking-definition" | "identity")
    )
}

/// The identity id of a member.
pub fn identity_id(member: &str) -> String {
    sid("identity", &format!("member:{member}"))
}

/// The report id of an alert's revision chain.
pub fn report_id(root: &str) -> String {
    sid("report", &format!("report:{root}"))
}

/// The name the id of an indicator-like object is derived from.
pub fn indicator_name(root: &str, ind: &Indicator) -> String {
    let t = IndicatorType::try_from(ind.r#type).unwrap_or(IndicatorType::Unspecified);
    format!("indicator:{root}:{}:{}", t.as_str_name(), ind.value)
}

fn identity(member: &str) -> Value {
    json!({
        "type": "identity",
        "spec_version": "2.1",
        "id": identity_id(member),
        "created": EPOCH,
        "modified": EPOCH,
        "name": member,
        "identity_class": "organization",
        "description": "certfed federation member",
    })
}

/// The report labels (machine tags) of an alert.
pub fn alert_labels(a: &Alert) -> Vec<String> {
    let mut labels = Vec::new();
    let class = RsitClass::try_from(a.rsit_class).unwrap_or(RsitClass::Unspecified);
    let ty = RsitType::try_from(a.rsit_type).unwrap_or(RsitType::Unspecified);
    labels.extend(rsit_tag(class, ty));
    for s in &a.sectors {
        if let Ok(s) = Nis2Sector::try_from(*s) {
            labels.push(sector_tag(s));
        }
    }
    for s in &a.subsectors {
        if let Ok(s) = Nis2Subsector::try_from(*s) {
            labels.push(subsector_tag(s));
        }
    }
    let sev = Severity::try_from(a.severity).unwrap_or(Severity::Unspecified);
    labels.push(format!("certfed:severity=\"{}\"", severity_label(sev)));
    if a.exercise {
        labels.push("certfed:exercise".to_string());
    }
    labels
}

/// Every STIX object of one alert: its TLP marking definition, the origin's
/// identity, the report, and what the report refers to.
pub fn record_objects(r: &AlertRecord) -> Vec<Value> {
    let a = &r.alert;
    let tlp = r.tlp();
    let marking = tlp_marking_id(tlp);
    let creator = identity_id(&r.origin);
    let report = report_id(&r.root_id);
    let created = stix_time(r.root_created_ms);
    let modified = stix_time(r.created_ms.max(r.root_created_ms));
    let revoked = r.is_retraction();
    let common = |kind: &str, id: String| {
        let mut m = Map::new();
        m.insert("type".into(), kind.into());
        m.insert("spec_version".into(), "2.1".into());
        m.insert("id".into(), id.into());
        m.insert("created".into(), created.clone().into());
        m.insert("modified".into(), modified.clone().into());
        m.insert("created_by_ref".into(), creator.clone().into());
        m.insert("object_marking_refs".into(), json!([marking]));
        if revoked {
            m.insert("revoked".into(), true.into());
        }
        m
    };
    let mut objects = vec![tlp_marking(tlp), identity(&r.origin)];
    let mut refs: Vec<String> = Vec::new();
    let mut notes = Vec::new();
    let mut others = Vec::new();
    for cc in &a.affected_countries {
        let mut o = common(
            "location",
            sid("location", &format!("location:{}:{cc}", r.root_id)),
        );
        o.insert("name".into(), cc.clone().into());
        o.insert("country".into(), cc.clone().into());
        refs.push(o["id"].as_str().unwrap_or_default().to_string());
        others.push(Value::Object(o));
    }
    let expires = a
        .expires
        .as_ref()
        .map(crate::domain::envelope::ts_to_ms)
        .filter(|e| *e > r.root_created_ms);
    for ind in &a.indicators {
        let name = indicator_name(&r.root_id, ind);
        let t = IndicatorType::try_from(ind.r#type).unwrap_or(IndicatorType::Unspecified);
        if let Some(p) = pattern::build(ind) {
            let mut o = common("indicator", sid("indicator", &name));
            o.insert("name".into(), ind.value.clone().into());
            if !ind.comment.is_empty() {
                o.insert("description".into(), ind.comment.clone().into());
            }
            o.insert("pattern".into(), p.into());
            o.insert("pattern_type".into(), "stix".into());
            o.insert("pattern_version".into(), "2.1".into());
            o.insert("valid_from".into(), created.clone().into());
            if let Some(e) = expires {
                o.insert("valid_until".into(), stix_time(e).into());
            }
            refs.push(o["id"].as_str().unwrap_or_default().to_string());
            others.push(Value::Object(o));
        } else if t == IndicatorType::Cve {
            let cve = ind.value.to_ascii_uppercase();
            let mut o = common("vulnerability", sid("vulnerability", &name));
            o.insert("name".into(), cve.clone().into());
            if !ind.comment.is_empty() {
                o.insert("description".into(), ind.comment.clone().into());
            }
            o.insert(
                "external_references".into(),
                json!([{"source_name": "cve", "external_id": cve}]),
            );
            refs.push(o["id"].as_str().unwrap_or_default().to_string());
            others.push(Value::Object(o));
        } else {
            let mut o = common("note", sid("note", &name));
            o.insert("content".into(), ind.value.clone().into());
            if !ind.comment.is_empty() {
                o.insert("abstract".into(), ind.comment.clone().into());
            }
            o.insert("object_refs".into(), json!([report]));
            notes.push(Value::Object(o));
        }
    }
    for (i, f) in r.attachments.iter().enumerate() {
        let key = format!("attachment:{}:{i}:{}", r.root_id, f.name);
        let file_id = sid("file", &key);
        let mut file = Map::new();
        file.insert("type".into(), "file".into());
        file.insert("spec_version".into(), "2.1".into());
        file.insert("id".into(), file_id.clone().into());
        file.insert("name".into(), f.name.clone().into());
        file.insert("size".into(), f.size.into());
        let mut hashes = Map::new();
        hashes.insert("SHA-256".into(), hex(&f.sha256).into());
        if let Some(c) = &f.content {
            hashes.insert("MD5".into(), md5_hex(c).into());
        }
        file.insert("hashes".into(), Value::Object(hashes));
        if !f.malicious {
            file.insert("mime_type".into(), f.media_type.clone().into());
        }
        let sample = match (&f.content, f.malicious) {
            (Some(c), true) => zip_sample(&f.name, c).ok().map(|(z, _)| z),
            _ => None,
        };
        let payload = match (&f.content, sample) {
            (Some(_), Some(zip)) => Some((zip, true)),
            (Some(c), None) if !f.malicious => Some((c.clone(), false)),
            _ => None,
        };
        if let Some((bytes, zipped)) = payload {
            let art_id = sid("artifact", &key);
            let mut art = Map::new();
            art.insert("type".into(), "artifact".into());
            art.insert("spec_version".into(), "2.1".into());
            art.insert("id".into(), art_id.clone().into());
            if zipped {
                // MISP's malware-sample convention, as misp-stix writes it.
                art.insert("mime_type".into(), "application/zip".into());
                art.insert("encryption_algorithm".into(), "mime-type-indicated".into());
                art.insert("decryption_key".into(), SAMPLE_PASSWORD.into());
            } else {
                art.insert("mime_type".into(), f.media_type.clone().into());
            }
            art.insert("payload_bin".into(), b64(&bytes).into());
            art.insert("hashes".into(), json!({"SHA-256": sha256_hex(&bytes)}));
            art.insert("object_marking_refs".into(), json!([marking]));
            file.insert("content_ref".into(), art_id.into());
            others.push(Value::Object(art));
        }
        file.insert("object_marking_refs".into(), json!([marking]));
        refs.push(file_id.clone());
        others.push(Value::Object(file));
        if f.malicious {
            let mut m = common("malware", sid("malware", &key));
            m.insert("name".into(), f.name.clone().into());
            m.insert("is_family".into(), false.into());
            m.insert("sample_refs".into(), json!([file_id]));
            refs.push(m["id"].as_str().unwrap_or_default().to_string());
            others.push(Value::Object(m));
        }
    }
    let mut rep = common("report", report.clone());
    rep.insert("name".into(), a.title.clone().into());
    if !a.description.is_empty() {
        rep.insert("description".into(), a.description.clone().into());
    }
    rep.insert("report_types".into(), json!(["threat-report"]));
    rep.insert("published".into(), modified.clone().into());
    if refs.is_empty() {
        refs.push(creator.clone());
    }
    rep.insert("object_refs".into(), json!(refs));
    rep.insert("labels".into(), json!(alert_labels(a)));
    let mut ext = vec![json!({
        "source_name": "certfed",
        "external_id": r.message_id,
        "description": format!("certfed message id; origin {}", r.origin),
    })];
    for reference in &a.references {
        ext.push(if reference.contains("://") {
            json!({"source_name": "reference", "url": reference})
        } else {
            json!({"source_name": "reference", "external_id": reference})
        });
    }
    rep.insert("external_references".into(), json!(ext));
    objects.push(Value::Object(rep));
    objects.extend(others);
    objects.extend(notes);
    objects
}

/// A bundle of the objects of `records`, each object version once, with an id
/// derived from the message ids (the same records give the same bundle; no
/// records: a bundle without `objects`).
pub fn export_bundle(records: &[AlertRecord]) -> Value {
    let mut seen = HashSet::new();
    let mut objects = Vec::new();
    for r in records {
        for o in record_objects(r) {
            let key = (
                o["id"].as_str().unwrap_or_default().to_string(),
                o["modified"].as_str().unwrap_or_default().to_string(),
            );
            if seen.insert(key) {
                objects.push(o);
            }
        }
    }
    let ids: Vec<&str> = records.iter().map(|r| r.message_id.as_str()).collect();
    let mut bundle = json!({
        "type": "bundle",
        "id": sid("bundle", &format!("bundle:{}", ids.join(","))),
    });
    // A bundle's `objects`, when present, is never empty.
    if !objects.is_empty() {
        bundle["objects"] = Value::Array(objects);
    }
    bundle
}

// ---------------------------------------------------------------- import

/// The TLP a marking definition stands for, if it is a TLP marking.
fn marking_tlp(m: &Value) -> Option<Result<Tlp, String>> {
    if let Some(ext) = m.get("extensions").and_then(|e| e.get(TLP2_EXTENSION)) {
        let level = ext.get("tlp_2_0").and_then(Value::as_str).unwrap_or("");
        return Some(
            crate::domain::alert::parse_tlp_tag(&format!("tlp:{level}"))
                .and_then(|t| t.ok_or_else(|| format!("unknown tlp_2_0 value {level:?}"))),
        );
    }
    if m.get("definition_type").and_then(Value::as_str) == Some("tlp") {
        let level = m
            .get("definition")
            .and_then(|d| d.get("tlp"))
            .and_then(Value::as_str)
            .unwrap_or("");
        return Some(
            crate::domain::alert::parse_tlp_tag(&format!("tlp:{level}"))
                .and_then(|t| t.ok_or_else(|| format!("unknown TLP level {level:?}"))),
        );
    }
    let name = m.get("name").and_then(Value::as_str).unwrap_or("");
    if name.to_ascii_lowercase().starts_with("tlp:") {
        return Some(
            crate::domain::alert::parse_tlp_tag(name)
                .and_then(|t| t.ok_or_else(|| format!("unknown TLP {name:?}"))),
        );
    }
    None
}

/// What a marking reference means.
#[derive(Debug, Clone)]
enum Marking {
    Tlp(Tlp),
    /// A marking that is not a TLP level (statement, PAP, …): not carried.
    Other(String),
}

struct Bundle<'a> {
    /// Latest version of each object by id.
    by_id: HashMap<&'a str, &'a Value>,
    /// Ids in file order (each once).
    order: Vec<&'a str>,
    markings: HashMap<String, Marking>,
}

fn str_field<'a>(o: &'a Value, k: &str) -> Option<&'a str> {
    o.get(k).and_then(Value::as_str)
}

fn id_of(o: &Value) -> &str {
    str_field(o, "id").unwrap_or("")
}

fn type_of(o: &Value) -> &str {
    str_field(o, "type").unwrap_or("")
}

/// Parses and indexes a bundle; structural problems are errors.
fn read_bundle(v: &Value) -> Result<Bundle<'_>, ImportErrors> {
    let obj = v.as_object().ok_or_else(|| {
        ImportErrors::one(
            "",
            "",
            "the file is not a JSON object; a STIX 2.1 bundle starts with {\"type\": \"bundle\"",
        )
    })?;
    if obj.get("type").and_then(Value::as_str) != Some("bundle") {
        return Err(ImportErrors::one(
            "",
            "type",
            "not a STIX bundle: the top-level object needs \"type\": \"bundle\" (export from your platform as a STIX 2.1 bundle)",
        ));
    }
    let objects = obj
        .get("objects")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ImportErrors::one(
                str_field(v, "id").unwrap_or(""),
                "objects",
                "missing or not a list",
            )
        })?;
    if objects.len() > MAX_IMPORT_OBJECTS {
        return Err(ImportErrors::one(
            str_field(v, "id").unwrap_or(""),
            "objects",
            format!(
                "{} objects, over the limit of {MAX_IMPORT_OBJECTS} per import; split the bundle",
                objects.len()
            ),
        ));
    }
    let mut errors = ImportErrors::default();
    let mut by_id: HashMap<&str, &Value> = HashMap::with_capacity(objects.len());
    let mut order = Vec::with_capacity(objects.len());
    for (i, o) in objects.iter().enumerate() {
        let (Some(t), Some(id)) = (str_field(o, "type"), str_field(o, "id")) else {
            errors.push(
                "",
                &format!("objects[{i}]"),
                "an object needs string \"type\" and \"id\" properties",
            );
            continue;
        };
        if !id.starts_with(&format!("{t}--")) {
            errors.push(
                id,
                "id",
                format!("does not start with its type {t:?} and \"--\""),
            );
            continue;
        }
        match by_id.get(id) {
            Some(prev) => {
                // Several versions: keep the latest (by modified).
                let newer = str_field(o, "modified").and_then(parse_time)
                    > str_field(prev, "modified").and_then(parse_time);
                if newer {
                    by_id.insert(id, o);
                }
            }
            None => {
                by_id.insert(id, o);
                order.push(id);
            }
        }
    }
    let mut markings = HashMap::new();
    for (t, id) in TLP2_IDS.iter().chain(TLP1_IDS.iter()) {
        markings.insert(id.to_string(), Marking::Tlp(*t));
    }
    for id in &order {
        let o = by_id[id];
        if type_of(o) != "marking-definition" {
            continue;
        }
        match marking_tlp(o) {
            Some(Ok(t)) => {
                markings.insert(id.to_string(), Marking::Tlp(t));
            }
            Some(Err(e)) => errors.push(id, "definition", e),
            None => {
                let what = str_field(o, "name")
                    .or_else(|| {
                        o.get("definition")
                            .and_then(|d| d.get("statement"))
                            .and_then(Value::as_str)
                    })
                    .unwrap_or("marking");
                markings
                    .entry(id.to_string())
                    .or_insert_with(|| Marking::Other(what.to_string()));
            }
        }
    }
    errors.into_result()?;
    Ok(Bundle {
        by_id,
        order,
        markings,
    })
}

/// One alert being built from a report (or from a bundle without reports).
struct Draft {
    alert: Alert,
    prov: Provenance,
    /// Indicator expiries (valid_until) seen, to carry a common one.
    valid_until: Vec<Option<i64>>,
    /// Attachments (from `file`/`artifact` objects with content), and the
    /// id of the object each came from.
    files: Vec<ImportedFile>,
    file_ids: Vec<String>,
}

/// The content of an `artifact`, and whether it was a MISP-style sample zip.
enum Payload {
    Content(Vec<u8>, bool),
    /// Only a `url`: certfed does not fetch.
    Url(String),
}

/// The import of one bundle.
struct Importer<'a, 'b> {
    b: &'b Bundle<'a>,
    opts: &'b ImportOptions,
    errors: ImportErrors,
    skipped: Vec<Skipped>,
    /// Objects some alert took (or deliberately passed over).
    used: HashSet<&'a str>,
    /// Markings not carried, already listed.
    listed_markings: HashSet<String>,
}

impl<'a> Importer<'a, '_> {
    fn skip(&mut self, object: &str, kind: &str, reason: impl Into<String>) {
        self.skipped.push(Skipped {
            object: object.to_string(),
            kind: kind.to_string(),
            reason: reason.into(),
        });
    }

    /// Checks the markings of `o` against the import's TLP.
    fn check_markings(&mut self, o: &Value) {
        let id = id_of(o).to_string();
        let mut refs: Vec<(String, String)> = Vec::new();
        if let Some(list) = o.get("object_marking_refs") {
            match list.as_array() {
                Some(list) => {
                    for r in list {
                        match r.as_str() {
                            Some(r) => refs.push((r.to_string(), "object_marking_refs".into())),
                            None => self.errors.push(
                                &id,
                                "object_marking_refs",
                                "entries must be marking-definition ids",
                            ),
                        }
                    }
                }
                None => self.errors.push(
                    &id,
                    "object_marking_refs",
                    "must be a list of marking-definition ids",
                ),
            }
        }
        if let Some(g) = o.get("granular_markings").and_then(Value::as_array) {
            for m in g {
                if let Some(r) = str_field(m, "marking_ref") {
                    refs.push((r.to_string(), "granular_markings".into()));
                }
            }
        }
        for (r, field) in refs {
            match self.b.markings.get(&r).cloned() {
                Some(Marking::Tlp(t)) if t as i32 > self.opts.tlp as i32 => self.errors.push(
                    &id,
                    &field,
                    format!(
                        "marked {}; importing at {} would lower the marking: import with --tlp {} (and its recipients), or leave this object out",
                        tlp_label(t),
                        tlp_label(self.opts.tlp),
                        tlp_label(t).trim_start_matches("TLP:").to_ascii_lowercase()
                    ),
                ),
                Some(Marking::Tlp(_)) => {}
                Some(Marking::Other(what)) => {
                    if self.listed_markings.insert(r.clone()) {
                        self.skip(&r, "marking-definition", format!("{what:?} is not a TLP level; certfed does not carry it"));
                    }
                }
                None => self.errors.push(
                    &id,
                    &field,
                    format!(
                        "refers to {} which is neither in the bundle nor a known TLP marking, so certfed cannot tell whether importing would lower it; include the marking definition",
                        crate::domain::text::quote(&r)
                    ),
                ),
            }
        }
        // A tlp: label is a marking too.
        if let Some(labels) = o.get("labels").and_then(Value::as_array) {
            for l in labels.iter().filter_map(Value::as_str) {
                match crate::domain::alert::parse_tlp_tag(l) {
                    Ok(Some(t)) if t as i32 > self.opts.tlp as i32 => self.errors.push(
                        &id,
                        "labels",
                        format!(
                            "labelled {l}; importing at {} would lower the marking: import with a stricter --tlp",
                            tlp_label(self.opts.tlp)
                        ),
                    ),
                    Ok(_) => {}
                    Err(e) => self.errors.push(&id, "labels", e),
                }
            }
        }
    }

    fn text(&mut self, o: &Value, field: &str) -> String {
        match o.get(field) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                self.errors.push(id_of(o), field, "must be a string");
                String::new()
            }
        }
    }

    /// Adds what object `id` contributes to `d`.
    fn add_object(&mut self, d: &mut Draft, id: &'a str, report: &str) {
        let Some(o) = self.b.by_id.get(id).copied() else {
            self.skip(
                id,
                "reference",
                format!("{report} refers to it but it is not in the bundle"),
            );
            return;
        };
        self.used.insert(id);
        let t = type_of(o);
        if o.get("revoked").and_then(Value::as_bool) == Some(true) && t != "identity" {
            self.skip(id, t, "revoked by its producer");
            return;
        }
        match t {
            "indicator" => {
                self.check_markings(o);
                self.add_indicator(d, o)
            }
            "vulnerability" => {
                self.check_markings(o);
                let name = self.text(o, "name");
                let cve = o
                    .get("external_references")
                    .and_then(Value::as_array)
                    .and_then(|refs| {
                        refs.iter().find(|r| {
                            str_field(r, "source_name")
                                .is_some_and(|s| s.eq_ignore_ascii_case("cve"))
                        })
                    })
                    .and_then(|r| str_field(r, "external_id"))
                    .map(str::to_string)
                    .unwrap_or(name);
                let ind = Indicator {
                    r#type: IndicatorType::Cve as i32,
                    value: cve,
                    comment: self.text(o, "description"),
                };
                if validate_indicator(&ind).is_err() {
                    self.skip(id, t, "no CVE identifier (name or external reference \"cve\"); certfed carries vulnerabilities by CVE id");
                    return;
                }
                self.push_indicator(d, ind, Source::new(id, "name"), None);
            }
            "location" => match str_field(o, "country") {
                Some(cc) => {
                    let cc = cc.to_ascii_uppercase();
                    if let Err(e) = validate_country(&cc) {
                        self.errors.push(id, "country", e);
                    } else if !d.alert.affected_countries.contains(&cc) {
                        d.alert.affected_countries.push(cc);
                        d.prov.countries.push(Source::new(id, "country"));
                    }
                }
                None => self.skip(
                    id,
                    t,
                    "not a country; certfed carries affected countries (ISO 3166-1 codes) only",
                ),
            },
            "note" => {
                self.check_markings(o);
                let ind = Indicator {
                    r#type: IndicatorType::Text as i32,
                    value: self.text(o, "content"),
                    comment: self.text(o, "abstract"),
                };
                self.push_indicator(d, ind, Source::new(id, "content"), None);
            }
            "ipv4-addr" | "ipv6-addr" | "domain-name" | "url" | "email-addr" => {
                self.check_markings(o);
                let value = self.text(o, "value");
                let ty = match t {
                    "ipv4-addr" | "ipv6-addr" if value.contains('/') => IndicatorType::Cidr,
                    "ipv4-addr" | "ipv6-addr" => IndicatorType::Ip,
                    "domain-name" => IndicatorType::Domain,
                    "url" => IndicatorType::Url,
                    _ => IndicatorType::Email,
                };
                let ind = Indicator {
                    r#type: ty as i32,
                    value,
                    comment: String::new(),
                };
                self.push_indicator(d, ind, Source::new(id, "value"), None);
            }
            "autonomous-system" => {
                self.check_markings(o);
                match o.get("number").and_then(Value::as_u64) {
                    Some(n) => {
                        let ind = Indicator {
                            r#type: IndicatorType::Asn as i32,
                            value: format!("AS{n}"),
                            comment: String::new(),
                        };
                        self.push_indicator(d, ind, Source::new(id, "number"), None);
                    }
                    None => self.errors.push(id, "number", "must be a whole number"),
                }
            }
            "file" if o.get("content_ref").is_some() => self.add_file(d, id, false),
            "artifact" => self.add_file(d, id, false),
            "malware"
                if o.get("sample_refs")
                    .and_then(Value::as_array)
                    .is_some_and(|r| !r.is_empty()) =>
            {
                self.check_markings(o);
                let refs: Vec<&'a str> = o["sample_refs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                for r in refs {
                    self.add_file(d, r, true);
                }
            }
            "file" => {
                self.check_markings(o);
                let mut any = false;
                if let Some(h) = o.get("hashes").and_then(Value::as_object) {
                    for (k, v) in h {
                        let ty = match k.to_ascii_uppercase().replace('-', "").as_str() {
                            "SHA256" => IndicatorType::Sha256,
                            "SHA1" => IndicatorType::Sha1,
                            "MD5" => IndicatorType::Md5,
                            _ => {
                                self.skip(id, "file", format!("hash {k:?} not carried (certfed carries SHA-256, SHA-1, MD5)"));
                                continue;
                            }
                        };
                        let ind = Indicator {
                            r#type: ty as i32,
                            value: v.as_str().unwrap_or("").to_string(),
                            comment: self.text(o, "name"),
                        };
                        self.push_indicator(d, ind, Source::new(id, &format!("hashes.{k}")), None);
                        any = true;
                    }
                }
                if !any {
                    self.skip(id, t, "no SHA-256, SHA-1 or MD5 hash to carry");
                }
            }
            "identity" | "marking-definition" | "extension-definition" => {}
            other => self.skip(id, other, "certfed has no mapping for this object type"),
        }
    }

    /// Adds the content of a `file` (through `content_ref`) or an
    /// `artifact` as an attachment, checked against every hash and size the
    /// bundle states. `malicious`: a malware's sample (also any MISP-style
    /// sample zip).
    fn add_file(&mut self, d: &mut Draft, id: &'a str, malicious: bool) {
        if let Some(i) = d.file_ids.iter().position(|f| f == id) {
            d.files[i].malicious |= malicious;
            return;
        }
        let Some(o) = self.b.by_id.get(id).copied() else {
            self.skip(
                id,
                "reference",
                "a sample or file referred to but not in the bundle",
            );
            return;
        };
        self.used.insert(id);
        self.check_markings(o);
        let max = self.opts.max_attachment_bytes;
        let (name, art_id, art) = match type_of(o) {
            "file" => {
                let Some(name) = str_field(o, "name") else {
                    self.errors.push(
                        id,
                        "name",
                        "missing: certfed needs the file name to attach its content",
                    );
                    return;
                };
                let Some(art_id) = str_field(o, "content_ref") else {
                    // A sample known by its hashes only.
                    self.add_object(d, id, "malware");
                    return;
                };
                let Some(art) = self.b.by_id.get(art_id).copied() else {
                    self.errors.push(
                        id,
                        "content_ref",
                        format!(
                            "refers to {} which is not in the bundle",
                            crate::domain::text::quote(art_id)
                        ),
                    );
                    return;
                };
                self.used.insert(art_id);
                self.check_markings(art);
                (name.to_string(), art_id, art)
            }
            "artifact" => {
                let name = str_field(o, "x_misp_filename")
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{}.bin", id.trim_start_matches("artifact--")));
                (name, id, o)
            }
            other => {
                self.skip(
                    id,
                    other,
                    "a malware sample must be a file or an artifact; not carried",
                );
                return;
            }
        };
        let (content, zipped) = match self.payload(art_id, art, max) {
            Ok(Payload::Content(c, z)) => (c, z),
            Ok(Payload::Url(url)) => {
                self.skip(art_id, "artifact", format!("content only at {} (url): certfed does not fetch it; download it and attach it with certfed alert publish --attach", crate::domain::text::quote(&url)));
                return;
            }
            Err((field, e)) => {
                self.errors.push(art_id, field, e);
                return;
            }
        };
        if type_of(o) == "file" {
            if let Some(h) = o.get("hashes").and_then(Value::as_object)
                && let Err(e) = check_hashes(h, &content)
            {
                self.errors.push(id, "hashes", e);
                return;
            }
            if let Some(size) = o.get("size").and_then(Value::as_u64)
                && size != content.len() as u64
            {
                self.errors.push(id, "size", format!("says {size} bytes but the content has {}: the file lies about its content (or was altered); nothing is imported", content.len()));
                return;
            }
        }
        let malicious = malicious || zipped;
        let media_type = if malicious {
            crate::domain::attachment::DEFAULT_MEDIA_TYPE.to_string()
        } else {
            str_field(o, "mime_type")
                .or_else(|| str_field(art, "mime_type"))
                .map(str::to_string)
                .unwrap_or_else(|| {
                    crate::domain::attachment::media_type_for_name(&name).to_string()
                })
        };
        d.files.push(ImportedFile {
            name,
            media_type,
            malicious,
            content,
            source: Source::new(id, "name"),
        });
        d.file_ids.push(id.to_string());
    }

    /// The content of an artifact: `payload_bin` checked against its
    /// `hashes`, unzipped when it is a MISP-style sample zip
    /// (`encryption_algorithm` "mime-type-indicated", `decryption_key`).
    fn payload(&self, id: &str, art: &Value, max: u64) -> Result<Payload, (&'static str, String)> {
        let _ = id;
        let Some(text) = str_field(art, "payload_bin") else {
            return match str_field(art, "url") {
                Some(u) => Ok(Payload::Url(u.to_string())),
                None => Err((
                    "payload_bin",
                    "missing, and no url: the artifact has no content".into(),
                )),
            };
        };
        let enc = str_field(art, "encryption_algorithm");
        let bound = if enc.is_some() {
            max.saturating_add(64 * 1024)
        } else {
            max
        };
        let raw = unb64(text, bound).map_err(|e| ("payload_bin", e))?;
        if let Some(h) = art.get("hashes").and_then(Value::as_object) {
            check_hashes(h, &raw).map_err(|e| ("hashes", e))?;
        }
        match enc {
            None => Ok(Payload::Content(raw, false)),
            Some("mime-type-indicated")
                if str_field(art, "mime_type") == Some("application/zip") =>
            {
                let pw = str_field(art, "decryption_key").ok_or((
                    "decryption_key",
                    "missing: an encrypted zip needs its password (MISP uses \"infected\")"
                        .to_string(),
                ))?;
                let sample = unzip_sample(&raw, pw, max).map_err(|e| ("payload_bin", e))?;
                Ok(Payload::Content(sample.content, true))
            }
            Some(other) => Err((
                "encryption_algorithm",
                format!(
                    "{other:?}: certfed reads artifacts in clear or MISP-style sample zips (mime-type-indicated, application/zip)"
                ),
            )),
        }
    }

    fn add_indicator(&mut self, d: &mut Draft, o: &'a Value) {
        let id = id_of(o);
        let pt = str_field(o, "pattern_type").unwrap_or("stix");
        if pt != "stix" {
            self.skip(
                id,
                "indicator",
                format!("pattern_type {pt:?}: certfed reads STIX patterns only"),
            );
            return;
        }
        let Some(p) = str_field(o, "pattern") else {
            self.errors
                .push(id, "pattern", "missing: an indicator needs a pattern");
            return;
        };
        let comment = self.text(o, "description");
        let valid_until = str_field(o, "valid_until").and_then(parse_time);
        match pattern::parse(p) {
            Ok(inds) => {
                for mut ind in inds {
                    ind.comment = comment.clone();
                    self.push_indicator(d, ind, Source::new(id, "pattern"), Some(valid_until));
                }
            }
            Err(e) => self
                .errors
                .push(id, "pattern", format!("cannot be represented: {e}")),
        }
    }

    fn push_indicator(
        &mut self,
        d: &mut Draft,
        ind: Indicator,
        src: Source,
        valid_until: Option<Option<i64>>,
    ) {
        if let Err(e) = validate_indicator(&ind) {
            self.errors.push(&src.object, &src.field, e);
            return;
        }
        if let Some(v) = valid_until {
            d.valid_until.push(v);
        }
        d.alert.indicators.push(ind);
        d.prov.indicators.push(src);
    }

    /// Applies a report's labels (machine tags).
    fn labels(&mut self, d: &mut Draft, o: &Value) {
        let id = id_of(o);
        let Some(labels) = o.get("labels").and_then(Value::as_array) else {
            return;
        };
        for l in labels.iter().filter_map(Value::as_str) {
            match parse_vocab_tag(l) {
                Ok(Some(VocabTag::Tlp(_))) => {} // checked with the markings
                Ok(Some(VocabTag::Rsit(c, t))) => {
                    if d.alert.rsit_class != 0 && d.alert.rsit_class != c as i32 {
                        self.errors.push(
                            id,
                            "labels",
                            format!("two RSIT classes ({l} and an earlier one); an alert has one"),
                        );
                    }
                    d.alert.rsit_class = c as i32;
                    if t != RsitType::Unspecified {
                        d.alert.rsit_type = t as i32;
                    }
                }
                Ok(Some(VocabTag::Sector(s))) => {
                    if !d.alert.sectors.contains(&(s as i32)) {
                        d.alert.sectors.push(s as i32);
                    }
                }
                Ok(Some(VocabTag::Subsector(s))) => {
                    if !d.alert.subsectors.contains(&(s as i32)) {
                        d.alert.subsectors.push(s as i32);
                    }
                    let sector = crate::domain::alert::subsector_sector(s) as i32;
                    if !d.alert.sectors.contains(&sector) {
                        d.alert.sectors.push(sector);
                    }
                }
                Ok(None) => match split_machine_tag(l) {
                    Some((ns, pred, value)) if ns == "certfed" && pred == "severity" => {
                        match parse_severity(value.as_deref().unwrap_or("")) {
                            Ok(s) => d.alert.severity = s as i32,
                            Err(e) => self.errors.push(id, "labels", e),
                        }
                    }
                    Some((ns, pred, None)) if ns == "certfed" && pred == "exercise" => {
                        d.alert.exercise = true
                    }
                    _ => self.skip(
                        id,
                        "label",
                        format!("{} is not carried", crate::domain::text::quote(l)),
                    ),
                },
                Err(e) => self.errors.push(id, "labels", e),
            }
        }
    }

    fn references(&mut self, d: &mut Draft, o: &Value) {
        let id = id_of(o);
        let Some(refs) = o.get("external_references").and_then(Value::as_array) else {
            return;
        };
        for (i, r) in refs.iter().enumerate() {
            let source = str_field(r, "source_name").unwrap_or("");
            if source == "certfed" {
                continue; // the message id of the export, not a reference
            }
            let text = match (str_field(r, "url"), str_field(r, "external_id")) {
                (Some(url), _) => url.to_string(),
                (None, Some(ext)) if source == "reference" || source.is_empty() => ext.to_string(),
                (None, Some(ext)) => format!("{source}:{ext}"),
                (None, None) => {
                    self.skip(
                        id,
                        "external_reference",
                        format!("external_references[{i}] has neither url nor external_id"),
                    );
                    continue;
                }
            };
            if !d.alert.references.contains(&text) {
                d.alert.references.push(text);
                d.prov
                    .references
                    .push(Source::new(id, &format!("external_references[{i}]")));
            }
        }
    }

    fn finish(&mut self, mut d: Draft, source: &str) -> Option<ImportedAlert> {
        if d.alert.severity == 0 {
            match self.opts.severity {
                Some(s) => d.alert.severity = s as i32,
                None => {
                    self.errors.push(source, "labels", "no severity (label certfed:severity=\"…\"): pass --severity for alerts that carry none");
                    return None;
                }
            }
        }
        // A common expiry of all the alert's indicators becomes the alert's.
        if let Some(first) = d.valid_until.first().copied().flatten()
            && d.valid_until.iter().all(|v| *v == Some(first))
        {
            if first > self.opts.now_ms {
                d.alert.expires = Some(crate::domain::envelope::ms_to_ts(first));
            } else {
                self.skip(
                    source,
                    "valid_until",
                    format!(
                        "the indicators expired at {}; the alert is imported without an expiry",
                        stix_time(first)
                    ),
                );
            }
        }
        d.alert.tlp = self.opts.tlp as i32;
        d.alert.exercise |= self.opts.exercise;
        Some(ImportedAlert {
            alert: d.alert,
            source: source.to_string(),
            provenance: d.prov,
            attachments: d.files,
        })
    }

    fn draft(whole: &str) -> Draft {
        Draft {
            alert: Alert::default(),
            prov: Provenance {
                whole: Source::new(whole, ""),
                ..Default::default()
            },
            valid_until: Vec::new(),
            files: Vec::new(),
            file_ids: Vec::new(),
        }
    }
}

/// Reads a STIX 2.1 bundle into the alerts it describes (see the module
/// documentation), checked against the alert rules.
pub fn import_bundle(bytes: &[u8], opts: &ImportOptions) -> Result<Imported, ImportErrors> {
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
    let b = read_bundle(&v)?;
    let mut imp = Importer {
        b: &b,
        opts,
        errors: ImportErrors::default(),
        skipped: Vec::new(),
        used: HashSet::new(),
        listed_markings: HashSet::new(),
    };
    // Notes that refer to a report join that report's alert.
    let mut notes_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for id in &b.order {
        let o = b.by_id[id];
        if type_of(o) == "note"
            && let Some(refs) = o.get("object_refs").and_then(Value::as_array)
        {
            for r in refs.iter().filter_map(Value::as_str) {
                if b.by_id.get(r).is_some_and(|x| type_of(x) == "report") {
                    notes_of.entry(r).or_default().push(id);
                }
            }
        }
    }
    let mut alerts = Vec::new();
    let reports: Vec<&str> = b
        .order
        .iter()
        .copied()
        .filter(|id| type_of(b.by_id[id]) == "report")
        .collect();
    for rid in &reports {
        let o = b.by_id[rid];
        imp.used.insert(rid);
        if o.get("revoked").and_then(Value::as_bool) == Some(true) {
            imp.skip(rid, "report", "revoked by its producer: not imported");
            for n in notes_of.get(rid).into_iter().flatten() {
                imp.used.insert(n);
            }
            continue;
        }
        imp.check_markings(o);
        let mut d = Importer::draft(rid);
        d.alert.title = imp.text(o, "name");
        d.prov.title = Source::new(rid, "name");
        d.alert.description = imp.text(o, "description");
        d.prov.description = Source::new(rid, "description");
        imp.labels(&mut d, o);
        imp.references(&mut d, o);
        match o.get("object_refs").and_then(Value::as_array) {
            Some(refs) => {
                for r in refs {
                    match r.as_str() {
                        Some(r) => imp.add_object(&mut d, r, rid),
                        None => imp
                            .errors
                            .push(rid, "object_refs", "entries must be object ids"),
                    }
                }
            }
            None => imp.errors.push(
                rid,
                "object_refs",
                "missing: a report lists the objects it is about",
            ),
        }
        for n in notes_of.get(rid).into_iter().flatten() {
            if !imp.used.contains(n) {
                imp.add_object(&mut d, n, rid);
            }
        }
        if let Some(a) = imp.finish(d, rid) {
            alerts.push(a);
        }
    }
    let leftovers: Vec<&str> = b
        .order
        .iter()
        .copied()
        .filter(|id| !imp.used.contains(id))
        .filter(|id| {
            !matches!(
                type_of(b.by_id[id]),
                "identity" | "marking-definition" | "extension-definition"
            )
        })
        .collect();
    if reports.is_empty() {
        let carried = leftovers.iter().any(|id| {
            matches!(
                type_of(b.by_id[id]),
                "indicator"
                    | "vulnerability"
                    | "ipv4-addr"
                    | "ipv6-addr"
                    | "domain-name"
                    | "url"
                    | "email-addr"
                    | "file"
                    | "artifact"
                    | "autonomous-system"
            )
        });
        let bundle_id = str_field(&v, "id").unwrap_or("bundle");
        match (&opts.title, carried) {
            (_, false) => imp.errors.push(bundle_id, "objects", "nothing to import: no report, indicator, vulnerability or observable certfed can carry"),
            (None, true) => imp.errors.push(
                bundle_id,
                "objects",
                "the bundle has no report: pass --title to import its indicators as one alert",
            ),
            (Some(title), true) => {
                let mut d = Importer::draft(bundle_id);
                d.alert.title = title.clone();
                d.prov.title = Source::new("", "--title");
                d.prov.description = Source::new(bundle_id, "description");
                for id in &leftovers {
                    imp.add_object(&mut d, id, bundle_id);
                }
                if let Some(a) = imp.finish(d, bundle_id) {
                    alerts.push(a);
                }
            }
        }
    } else {
        for id in leftovers {
            let t = type_of(b.by_id[id]).to_string();
            imp.skip(id, &t, "not referred to by any report in the bundle");
        }
    }
    let Importer {
        mut errors,
        skipped,
        ..
    } = imp;
    if alerts.is_empty() && errors.is_empty() {
        errors.push(
            str_field(&v, "id").unwrap_or("bundle"),
            "objects",
            format!(
                "nothing to import: {} report(s), all revoked",
                reports.len()
            ),
        );
    }
    errors.into_result()?;
    let mut imported = Imported { alerts, skipped };
    check_imported(&mut imported, opts)?;
    Ok(imported)
}
