//! Stored alerts for the exchange mappings (`domain::exchange`): a stored
//! alert with the root of its revision chain ([`record`]), and one page of a
//! TAXII collection ([`taxii_page`]).
//!
//! Invariants:
//! - Only readable alerts are mapped: a message this node only relays
//!   (end-to-end encrypted for others) is never read, never served.
//! - A TAXII collection serves the current version of each real alert of its
//!   TLP level: superseded alerts (their update or retraction comes later in
//!   the store) and exercise traffic are left out.
//! - The root chain is followed through at most [`MAX_CHAIN`] messages; where
//!   the store lacks an earlier alert, the earliest one held is the root.
//! - One page reads at most `domain::exchange::SCAN_BUDGET` messages.
//! - Objects shared by alerts (a TLP marking definition, an origin's
//!   identity) are served once per collection, with the first current alert
//!   that uses them: a later alert leaves them out when an earlier current
//!   alert of the collection (of the same origin, for an identity) exists.
use crate::domain::exchange::{AlertRecord, Feed, Page, Query, is_shared, record_objects};
use crate::proto::v1::{Alert, MessageKind, Tlp};
use crate::service::node::Node;
use crate::storage::{AlertQuery, StoreError, StoredMessage};
use prost::Message;
use std::collections::HashSet;

/// Longest revision chain followed back to its root.
pub const MAX_CHAIN: usize = 64;

/// Messages read from the store at a time.
const BATCH: usize = 256;

/// The alert of a stored message with its root, if it is a readable alert.
pub async fn record(node: &Node, m: &StoredMessage) -> Result<Option<AlertRecord>, StoreError> {
    if !m.readable || m.kind != MessageKind::Alert as i32 {
        return Ok(None);
    }
    let Ok(alert) = Alert::decode(m.body()) else {
        return Ok(None);
    };
    let mut root_id = m.message_id.clone();
    let mut root_created_ms = m.created_ms;
    let mut prev = alert.supersedes.clone();
    for _ in 0..MAX_CHAIN {
        if prev.is_empty() {
            break;
        }
        let Some(p) = node.store.get_message(&prev).await? else {
            break;
        };
        if p.origin != m.origin || p.kind != MessageKind::Alert as i32 || !p.readable {
            break;
        }
        root_id = p.message_id.clone();
        root_created_ms = p.created_ms;
        prev = Alert::decode(p.body())
            .map(|a| a.supersedes)
            .unwrap_or_default();
    }
    Ok(Some(AlertRecord {
        message_id: m.message_id.clone(),
        origin: m.origin.clone(),
        created_ms: m.created_ms,
        alert,
        root_id,
        root_created_ms,
        // TAXII describes the alert's evidence (a STIX `file` with name,
        // size, SHA-256 and media type; a `malware` for a sample) without
        // its bytes: those travel through the federation, `certfed
        // attachment get` and `certfed alert export`.
        attachments: evidence_of(m),
    }))
}

/// The manifests of a readable message's attachments, without content.
fn evidence_of(m: &StoredMessage) -> Vec<crate::domain::exchange::ExportedFile> {
    crate::proto::v1::AttachmentList::decode(m.body())
        .map(|l| l.attachments)
        .unwrap_or_default()
        .into_iter()
        .map(|a| crate::domain::exchange::ExportedFile {
            name: a.name,
            media_type: a.media_type,
            size: a.size,
            sha256: a.sha256,
            malicious: a.malicious,
            content: None,
        })
        .collect()
}

/// Whether the collection of `tlp` holds a current alert (of `origin`, if
/// given) stored before cursor `before`. A search that finds only superseded
/// alerts for long gives up with `false` (the shared object is then served
/// again rather than never).
async fn earlier_current(
    node: &Node,
    tlp: Tlp,
    origin: Option<&str>,
    before: u64,
) -> Result<bool, StoreError> {
    const ROWS: usize = 64;
    let q = AlertQuery {
        tlps: vec![tlp as i32],
        origins: origin.map(|o| vec![o.to_string()]).unwrap_or_default(),
        ..Default::default()
    };
    let mut cursor = before;
    for _ in 0..MAX_CHAIN {
        let rows = node.store.list_alerts(q.clone(), cursor, ROWS).await?;
        if rows.iter().any(|m| m.superseded_by.is_none()) {
            return Ok(true);
        }
        match rows.last() {
            Some(m) if rows.len() == ROWS => cursor = m.cursor,
            _ => return Ok(false),
        }
    }
    Ok(false)
}

/// The STIX objects a message contributes to the collection of `tlp` (none
/// for a message outside it). `shared` remembers, for this request, which
/// shared objects an earlier alert already carries.
async fn collection_objects(
    node: &Node,
    m: &StoredMessage,
    tlp: Tlp,
    shared: &mut HashSet<String>,
) -> Result<Vec<serde_json::Value>, StoreError> {
    if m.tlp != tlp as i32 || m.superseded_by.is_some() {
        return Ok(Vec::new());
    }
    let r = match record(node, m).await? {
        Some(r) if !r.alert.exercise => r,
        _ => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    for o in record_objects(&r) {
        if is_shared(&o) {
            let id = o["id"].as_str().unwrap_or_default().to_string();
            let carried_before = shared.contains(&id) || {
                let origin = (o["type"] == "identity").then_some(r.origin.as_str());
                earlier_current(node, tlp, origin, m.cursor).await?
            };
            shared.insert(id);
            if carried_before {
                continue;
            }
        }
        out.push(o);
    }
    Ok(out)
}

/// One page of the TAXII collection of `tlp` for `query`.
pub async fn taxii_page(node: &Node, tlp: Tlp, query: Query) -> Result<Page, StoreError> {
    let mut shared = HashSet::new();
    let mut page = Page::new(query);
    let mut after = page.start().saturating_sub(1);
    if let Some(ms) = page.skip_received_by_ms() {
        after = after.max(crate::storage::cursor_received_by(node.store.as_ref(), ms).await?);
    }
    loop {
        let batch = node.store.messages_after(after, BATCH).await?;
        let exhausted = batch.len() < BATCH;
        for m in &batch {
            after = m.cursor;
            let objects = if page.before_window(m.received_ms) {
                Vec::new()
            } else {
                collection_objects(node, m, tlp, &mut shared).await?
            };
            if page.offer(m.cursor, m.received_ms, objects) == Feed::Done {
                return Ok(page);
            }
        }
        if exhausted {
            return Ok(page);
        }
    }
}
