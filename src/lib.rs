//! certfed: a federated partner-node messaging daemon for CERTs/CSIRTs.
//!
//! Layers, from the inside out:
//! - [`domain`]: messages, signing, TLP policy, validation; no I/O.
//! - [`storage`]: the embedded SQLite store (one writer, group commit).
//! - [`transport`]: mutual TLS (rustls), identities from certificates, accept loop.
//! - [`api`]: thin gRPC adapters (decode, authorise, call the core, map errors).
//! - [`node`]: wires storage, transport and API into a running node.
//! - [`cli`]: the `certfed` command line.
#![forbid(unsafe_code)]

pub mod domain;
pub mod pki;
pub mod pki_cli;
pub mod proto;
