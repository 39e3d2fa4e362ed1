//! The integration tests, as one test binary (one link instead of one per
//! file): real nodes on loopback with real TLS, real SQLite on disk, real
//! processes of the `certfed` binary and real clients (tonic, grpcurl).
//! One behaviour per module.
mod common;

mod alerts;
pub(crate) mod assistance;
mod attachments;
mod cli;
mod cli_json;
mod cookbook;
mod crash;
mod deferral;
mod demo;
mod duplicates;
mod e2e;
mod exchange;
mod exercise;
mod fedbench;
mod fedtools;
mod flood;
mod full_disk;
mod grpcurl;
mod hostile_peer;
mod incident_report;
mod incidents;
mod layers;
mod lean_receipts;
mod mesh;
mod observability;
mod operator_api;
mod ops;
mod ordering;
mod packaging;
mod pair;
mod partition;
mod pg_tls;
mod pki;
mod plumtree;
mod process;
mod reconcile;
mod reload;
mod retention;
mod roster;
mod routes;
mod store;
mod stream_errors;
mod tls;
mod untrusted_text;
