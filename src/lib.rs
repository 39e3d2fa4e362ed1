//! certfed: a federated partner-node messaging daemon for CERTs/CSIRTs.
//!
//! Layers, every import pointing down (checked by `tests/it/layers.rs`):
//! - [`cli`]: the `certfed` command line.
//! - [`app`]: the composition root (prepare, start, serve, reload) and the
//!   applications of a whole node (local federation, demo, benchmarks).
//! - [`api`]: thin gRPC adapters (decode, call a service, map errors in one table).
//! - [`service`]: the node's use cases (alerts, assistance, delivery, ingest,
//!   receipts, links, metrics) and the state they share.
//! - [`pki`] and [`config`]: certificate tooling and the typed configuration.
//! - [`domain`]: pure rules: identities, keys, envelopes, custody, encryption,
//!   TLP policy, admission, alerts, the assistance state machine. No I/O.
//! - [`storage`] (behind the `Storage` trait; SQLite is the embedded default)
//!   and [`transport`] (TLS, accept loop, channels).
//! - [`proto`]: the generated protobuf types, shared by all.
//!
//! `ARCHITECTURE.md` walks one alert through these layers.
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod pki;
pub mod proto;
pub mod service;
pub mod storage;
pub mod transport;
