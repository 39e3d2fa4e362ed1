//! The TAXII 2.1 rules of certfed's read-only server, without I/O: the
//! collections (one per TLP level), the documents (discovery, API root,
//! collections, envelope, manifest, versions, error), the query parameters,
//! the `next` token and the paging of a collection's objects.
//!
//! Invariants:
//! - A collection holds the STIX objects ([`super::stix::record_objects`]) of
//!   the readable, current (not superseded), real (not exercise) alerts of one
//!   TLP level, in store order. Collection ids are UUIDv5 of the level, stable
//!   across restarts and nodes.
//! - `date_added` of an object is when this node stored its message, in
//!   microseconds, plus the object's index within the message (up to 999), so
//!   objects of one message have distinct, increasing times and a client that
//!   resumes with `added_after` = the last `X-TAXII-Date-Added-Last` misses
//!   nothing, even when a page ends inside a message.
//! - A page holds at most `limit` objects (default [`DEFAULT_LIMIT`], at most
//!   [`MAX_LIMIT`]) and about [`MAX_PAGE_BYTES`]; `next` (an opaque token:
//!   the store cursor and object index to continue from) is set exactly when
//!   `more` is true. A request reads at most [`SCAN_BUDGET`] messages: a page
//!   may come back short, even empty, with `more` true — it never spins.
//! - A first page with `added_after` (no `next`) is read from the last
//!   message received [`RECEIPT_ORDER_MARGIN_MS`] before it
//!   ([`Page::skip_received_by_ms`]), not from the store's first: a poll
//!   for what is new costs the same whatever the store holds.
//! - Each object version appears once per page.
use super::common::uuid_for;
use crate::domain::policy::{ALL_TLPS, tlp_label};
use crate::proto::v1::Tlp;
use serde_json::{Value, json};
use std::collections::HashSet;

/// The TAXII 2.1 media type of every response.
pub const TAXII_MEDIA_TYPE: &str = "application/taxii+json;version=2.1";
/// The media type of the objects in a collection.
pub const STIX_MEDIA_TYPE: &str = "application/stix+json;version=2.1";
/// Path of the API root (under the server's address).
pub const API_ROOT_PATH: &str = "/certfed/";
/// Objects per page when the client names no `limit`.
pub const DEFAULT_LIMIT: usize = 100;
/// Most objects per page.
pub const MAX_LIMIT: usize = 1000;
/// About the largest page, in bytes of JSON (also the API root's `max_content_length`).
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Most messages read to answer one request.
pub const SCAN_BUDGET: usize = 5000;
/// How far before `added_after` a first page starts reading (receipt time,
/// ms): receipt times follow store order but for batches committed in
/// another order than they were admitted.
pub const RECEIPT_ORDER_MARGIN_MS: i64 = 60_000;

/// One collection: the alerts of one TLP level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collection {
    pub id: String,
    pub tlp: Tlp,
}

/// The id of the collection of `tlp`.
pub fn collection_id(tlp: Tlp) -> String {
    uuid_for(&format!("taxii-collection:{}", tlp_label(tlp))).to_string()
}

/// The collections a caller may read: every level up to `max`.
pub fn collections(max: Tlp) -> Vec<Collection> {
    ALL_TLPS
        .into_iter()
        .filter(|t| *t as i32 <= max as i32)
        .map(|tlp| Collection {
            id: collection_id(tlp),
            tlp,
        })
        .collect()
}

/// The collection resource.
pub fn collection_json(c: &Collection, node: &str) -> Value {
    json!({
        "id": c.id,
        "title": format!("{} alerts of {node}", tlp_label(c.tlp)),
        "description": format!(
            "Current {} incident alerts this node ({node}) can read, as STIX 2.1 reports, indicators, vulnerabilities and notes; read-only.",
            tlp_label(c.tlp)
        ),
        "can_read": true,
        "can_write": false,
        "media_types": [STIX_MEDIA_TYPE],
    })
}

/// The discovery resource; `base` is `https://host:port` as the client reached us.
pub fn discovery(base: &str, node: &str) -> Value {
    let root = format!("{base}{API_ROOT_PATH}");
    json!({
        "title": format!("certfed node {node}"),
        "description": "Incident alerts of a certfed federation node, read-only (TAXII 2.1 over mutual TLS with operator certificates).",
        "default": root,
        "api_roots": [root],
    })
}

/// The API root resource.
pub fn api_root(node: &str) -> Value {
    json!({
        "title": format!("certfed {node}"),
        "description": "Collections per TLP level of the alerts this node can read.",
        "versions": [TAXII_MEDIA_TYPE],
        "max_content_length": MAX_PAGE_BYTES,
    })
}

/// A TAXII error message.
pub fn error_json(status: u16, title: &str, description: &str) -> Value {
    json!({
        "title": title,
        "description": description,
        "http_status": status.to_string(),
    })
}

/// Where to continue: the store cursor of a message and an object index in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub cursor: u64,
    pub index: usize,
}

impl Token {
    pub fn encode(&self) -> String {
        format!("{}-{}", self.cursor, self.index)
    }

    pub fn decode(s: &str) -> Option<Token> {
        let (c, i) = s.split_once('-')?;
        if c.is_empty() || i.is_empty() || !c.bytes().chain(i.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let cursor = c.parse().ok()?;
        let index = i.parse().ok()?;
        (cursor <= i64::MAX as u64 && index < 10_000_000).then_some(Token { cursor, index })
    }
}

/// `match[version]` choices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    Last,
    First,
    All,
    At(String),
}

/// The parameters of an objects or manifest request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Query {
    /// Only objects added after this time (microseconds since the epoch).
    pub added_after_us: Option<i64>,
    pub limit: usize,
    pub next: Option<Token>,
    pub ids: Vec<String>,
    pub types: Vec<String>,
    pub versions: Vec<Version>,
    pub spec_versions: Vec<String>,
}

/// A request the server refuses: HTTP status and a sentence for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub title: &'static str,
    pub description: String,
}

fn bad(description: String) -> Refused {
    Refused {
        status: 400,
        title: "invalid request parameter",
        description,
    }
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Microseconds since the epoch of an RFC 3339 time.
pub fn parse_time_us(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).ok()
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn format_time_us(us: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Reads decoded query parameters (name, value) of an objects or manifest request.
pub fn parse_query<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Query, Refused> {
    let mut q = Query {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    for (k, v) in params {
        match k {
            "added_after" => {
                q.added_after_us = Some(parse_time_us(v).ok_or_else(|| {
                    bad(format!(
                        "added_after: {} is not an RFC 3339 time such as 2024-05-01T00:00:00Z",
                        crate::domain::text::quote(v)
                    ))
                })?);
            }
            "limit" => {
                let n: usize = v.parse().map_err(|_| {
                    bad(format!(
                        "limit: {} is not a positive whole number",
                        crate::domain::text::quote(v)
                    ))
                })?;
                if n == 0 {
                    return Err(bad("limit: must be at least 1".into()));
                }
                q.limit = n.min(MAX_LIMIT);
            }
            "next" => {
                q.next = Some(Token::decode(v).ok_or_else(|| {
                    bad(format!(
                        "next: {} is not a token this server gave out; start again without next",
                        crate::domain::text::quote(v)
                    ))
                })?);
            }
            "match[id]" => q.ids.extend(list(v)),
            "match[type]" => q.types.extend(list(v)),
            "match[spec_version]" => q.spec_versions.extend(list(v)),
            "match[version]" => {
                for w in list(v) {
                    q.versions.push(match w.as_str() {
                        "last" => Version::Last,
                        "first" => Version::First,
                        "all" => Version::All,
                        t if parse_time_us(t).is_some() => Version::At(t.to_string()),
                        _ => {
                            return Err(bad(format!(
                                "match[version]: {} is not last, first, all or a timestamp",
                                crate::domain::text::quote(&w)
                            )));
                        }
                    });
                }
            }
            other if other.starts_with("match[") => {
                return Err(bad(format!(
                    "{}: this server filters on match[id], match[type], match[version] and match[spec_version] only",
                    crate::domain::text::quote(other)
                )));
            }
            _ => {} // unknown parameters are ignored, as HTTP servers do
        }
    }
    Ok(q)
}

/// The version (modified, else created) of an object.
pub fn version_of(o: &Value) -> &str {
    o.get("modified")
        .or_else(|| o.get("created"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

impl Query {
    /// Whether an object passes the `match[…]` filters.
    pub fn matches(&self, o: &Value) -> bool {
        let id = o.get("id").and_then(Value::as_str).unwrap_or("");
        let ty = o.get("type").and_then(Value::as_str).unwrap_or("");
        if !self.ids.is_empty() && !self.ids.iter().any(|x| x == id) {
            return false;
        }
        if !self.types.is_empty() && !self.types.iter().any(|x| x == ty) {
            return false;
        }
        if !self.spec_versions.is_empty() && !self.spec_versions.iter().any(|x| x == "2.1") {
            return false;
        }
        if self.versions.is_empty() {
            return true;
        }
        let version = version_of(o);
        self.versions.iter().any(|v| match v {
            Version::Last | Version::All => true,
            Version::First => o.get("created").and_then(Value::as_str) == Some(version),
            Version::At(t) => parse_time_us(t) == parse_time_us(version),
        })
    }
}

/// A page of a collection being filled from messages in store order.
#[derive(Debug)]
pub struct Page {
    q: Query,
    /// (date_added in µs, object)
    pub objects: Vec<(i64, Value)>,
    bytes: usize,
    seen: HashSet<(String, String)>,
    full: bool,
    /// Set once the page is full and another object is waiting.
    pub next: Option<Token>,
    scanned: usize,
}

/// What the reader should do after offering a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// Offer the next message.
    More,
    /// The page is complete.
    Done,
}

impl Page {
    pub fn new(q: Query) -> Page {
        Page {
            q,
            objects: Vec::new(),
            bytes: 0,
            seen: HashSet::new(),
            full: false,
            next: None,
            scanned: 0,
        }
    }

    /// The store cursor to start reading at (inclusive).
    pub fn start(&self) -> u64 {
        self.q.next.map_or(0, |t| t.cursor)
    }

    /// For a first page (no `next` token) with `added_after`: the receipt
    /// time (ms) up to which messages need not be read, less
    /// [`RECEIPT_ORDER_MARGIN_MS`]; the reader starts after the last message
    /// received by then instead of at the store's first (a poll for what is
    /// new no longer reads the whole store, [`SCAN_BUDGET`] messages a page).
    pub fn skip_received_by_ms(&self) -> Option<i64> {
        if self.q.next.is_some() {
            return None;
        }
        self.q
            .added_after_us
            .map(|a| a.div_euclid(1000).saturating_sub(RECEIPT_ORDER_MARGIN_MS))
    }

    /// Whether every object of a message stored at `stored_ms` is at or before
    /// `added_after` (so its objects need not be built).
    pub fn before_window(&self, stored_ms: i64) -> bool {
        self.q
            .added_after_us
            .is_some_and(|a| stored_ms.saturating_mul(1000).saturating_add(999) <= a)
    }

    /// Offers the objects of the message at `cursor`, stored at `stored_ms`
    /// (`objects` empty for a message that is not in the collection).
    pub fn offer(&mut self, cursor: u64, stored_ms: i64, objects: Vec<Value>) -> Feed {
        self.scanned += 1;
        let skip_to = match self.q.next {
            Some(t) if t.cursor == cursor => t.index,
            _ => 0,
        };
        for (i, o) in objects.into_iter().enumerate().skip(skip_to) {
            let added = stored_ms
                .saturating_mul(1000)
                .saturating_add(i.min(999) as i64);
            if self.q.added_after_us.is_some_and(|a| added <= a) || !self.q.matches(&o) {
                continue;
            }
            let key = (
                o.get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                version_of(&o).to_string(),
            );
            if self.seen.contains(&key) {
                continue;
            }
            if self.full {
                self.next = Some(Token { cursor, index: i });
                return Feed::Done;
            }
            let size = o.to_string().len() + 2;
            if !self.objects.is_empty() && self.bytes + size > MAX_PAGE_BYTES {
                self.next = Some(Token { cursor, index: i });
                return Feed::Done;
            }
            self.bytes += size;
            self.seen.insert(key);
            self.objects.push((added, o));
            if self.objects.len() >= self.q.limit {
                self.full = true;
            }
        }
        if self.scanned >= SCAN_BUDGET {
            self.next = Some(Token {
                cursor: cursor + 1,
                index: 0,
            });
            return Feed::Done;
        }
        Feed::More
    }

    pub fn more(&self) -> bool {
        self.next.is_some()
    }

    /// `date_added` of the first and last object.
    pub fn window(&self) -> Option<(String, String)> {
        let first = self.objects.first()?.0;
        let last = self.objects.last()?.0;
        Some((format_time_us(first), format_time_us(last)))
    }

    fn envelope_head(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("more".into(), self.more().into());
        if let Some(t) = self.next {
            m.insert("next".into(), t.encode().into());
        }
        m
    }

    /// The envelope of an objects request.
    pub fn envelope(&self) -> Value {
        let mut m = self.envelope_head();
        if !self.objects.is_empty() {
            m.insert(
                "objects".into(),
                self.objects
                    .iter()
                    .map(|(_, o)| o.clone())
                    .collect::<Vec<_>>()
                    .into(),
            );
        }
        Value::Object(m)
    }

    /// The manifest of the page.
    pub fn manifest(&self) -> Value {
        let mut m = self.envelope_head();
        if !self.objects.is_empty() {
            let records: Vec<Value> = self
                .objects
                .iter()
                .map(|(added, o)| {
                    json!({
                        "id": o.get("id").cloned().unwrap_or(Value::Null),
                        "date_added": format_time_us(*added),
                        "version": version_of(o),
                        "media_type": STIX_MEDIA_TYPE,
                    })
                })
                .collect();
            m.insert("objects".into(), records.into());
        }
        Value::Object(m)
    }

    /// The versions of the page's objects (the versions endpoint).
    pub fn versions(&self) -> Value {
        let mut m = self.envelope_head();
        let vs: Vec<&str> = self.objects.iter().map(|(_, o)| version_of(o)).collect();
        if !vs.is_empty() {
            m.insert("versions".into(), json!(vs));
        }
        Value::Object(m)
    }
}
