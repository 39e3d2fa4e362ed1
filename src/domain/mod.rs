//! The domain core: identities, messages, signing, encryption, TLP policy,
//! admission, validation (free text: `text`), the assistance state machine
//! and the federation roster's rules (`roster`). Nothing here knows
//! about tokio, tonic, sockets or SQL, and nothing reads a clock: `now` is
//! always passed in. Everything is testable in memory.
pub mod admission;
pub mod alert;
pub mod assistance;
pub mod attachment;
pub mod custody;
pub mod e2e;
pub mod envelope;
pub mod exchange;
pub mod exercise;
pub mod hop_limit;
pub mod identity;
pub mod incident;
pub mod keys;
pub mod pace;
pub mod plumtree;
pub mod policy;
pub mod reconcile;
pub mod roster;
pub mod routes;
pub mod sigcheck;
pub mod text;
