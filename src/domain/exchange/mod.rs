//! Exchange with the tools CERTs already run: alerts ⇄ STIX 2.1 bundles
//! (`stix`, with STIX patterns in `pattern`), alerts ⇄ MISP events and MISP
//! feed files (`misp`), and the rules of the read-only TAXII 2.1 server
//! (`taxii`). Shared types, ids and the final check of imported alerts are in
//! `common`; attachments in both formats in `evidence`.
//!
//! Pure mapping code: no files, sockets or clocks (`now` is passed in). Ids
//! are deterministic (UUIDv5 of the root alert's message id and the value),
//! so exporting again, or exporting an update, replaces what a consumer holds
//! instead of duplicating it. Imports either produce alerts that pass the
//! alert rules or fail as a whole with every problem named by object and
//! field. The submodules are private: `domain::exchange::X` is the only path
//! of every public item.
mod common;
mod evidence;
mod misp;
mod pattern;
mod stix;
mod taxii;

#[cfg(test)]
mod evidence_tests;
#[cfg(test)]
mod exchange_tests;

pub use common::{
    AlertRecord, ExportedFile, ImportError, ImportErrors, ImportOptions, Imported, ImportedAlert,
    ImportedFile, MAX_IMPORT_BYTES, MAX_IMPORT_OBJECTS, Provenance, Skipped, Source, date_of,
    parse_time, stix_time, uuid_for,
};
pub use evidence::{
    DEFAULT_INLINE_BYTES, SAMPLE_PASSWORD, Sample, sha256_hex, unzip_sample, zip_sample,
};
pub use misp::{attribute_hashes, event_uuid, export_event, import_events, manifest_entry};
pub use pattern::{MAX_PATTERN_CHARS, build as build_pattern, parse as parse_pattern};
pub use stix::{
    TLP2_EXTENSION, export_bundle, identity_id, import_bundle, is_shared, record_objects,
    report_id, tlp_marking, tlp_marking_id,
};
pub use taxii::{
    API_ROOT_PATH, Collection, DEFAULT_LIMIT, Feed, MAX_LIMIT, MAX_PAGE_BYTES, Page, Query,
    RECEIPT_ORDER_MARGIN_MS, Refused, SCAN_BUDGET, STIX_MEDIA_TYPE, TAXII_MEDIA_TYPE, Token,
    Version, api_root, collection_id, collection_json, collections, discovery, error_json,
    format_time_us, parse_query, parse_time_us, version_of,
};
