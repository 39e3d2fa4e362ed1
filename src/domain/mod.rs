//! The domain core: identities, messages, signing, TLP policy and validation.
//! Nothing here knows about tonic, sockets or SQL; everything is testable in memory.
pub mod alert;
pub mod assistance;
pub mod envelope;
pub mod identity;
pub mod keys;
pub mod policy;
