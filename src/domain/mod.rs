//! The domain core: identities, messages, signing, encryption, TLP policy,
//! validation and the assistance state machine. Nothing here knows about tonic,
//! sockets or SQL; everything is testable in memory.
pub mod alert;
pub mod assistance;
pub mod custody;
pub mod e2e;
pub mod envelope;
pub mod identity;
pub mod keys;
pub mod policy;
