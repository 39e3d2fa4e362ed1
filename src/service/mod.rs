//! The node's use cases, between the gRPC adapters above and the pure domain
//! and the store below: publishing and reading alerts ([`alerts`]), the
//! assistance workflow ([`assistance`]), delivery status and peers
//! ([`delivery`]), stored alerts for STIX/MISP/TAXII ([`exchange`]), taking
//! envelopes in ([`ingest`]) and handing what was stored to the tasks that
//! follow it ([`arrivals`]), receipts ([`receipts`]),
//! idempotent actions with client-chosen request ids ([`requests`]), the
//! sizes of requests, answers and pages ([`limits`]),
//! peer links ([`links`]), retention ([`retention`]) and metrics ([`metrics`]).
//! The state they share is [`node::Node`].
//!
//! Each service has its own error type; every one of them implements
//! [`ServiceError`], whose [`ErrorKind`] the API layer maps to a gRPC code in
//! one table. Error messages say what to do.
pub mod acks;
pub mod alerts;
pub mod arrivals;
pub mod assistance;
pub mod attachments;
pub mod delivery;
pub mod exchange;
pub mod gossip;
pub mod incidents;
pub mod ingest;
pub mod limits;
pub mod links;
pub mod metrics;
pub mod named_again;
pub mod node;
pub mod pair;
pub mod peers;
pub mod receipts;
pub mod reconcile;
pub mod reconciler;
pub mod requests;
pub mod resend;
pub mod retention;
pub mod roster;
pub mod transfer;
pub mod tree;

use crate::storage::StoreError;

/// Milliseconds since the Unix epoch: the one wall clock services read. The
/// domain never reads a clock; services pass it `now`.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// What kind of failure a service error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller sent something invalid; the message names the field.
    InvalidArgument,
    /// A position or size outside what exists.
    OutOfRange,
    /// The thing named does not exist on this node.
    NotFound,
    /// The caller's id names something else already (a reused request id).
    AlreadyExists,
    /// The caller may not do this.
    PermissionDenied,
    /// Not possible in the current state; the message says what must change.
    FailedPrecondition,
    /// Too much at once; retry later or ask for less.
    ResourceExhausted,
    /// Temporarily impossible; retrying later may succeed.
    Unavailable,
    /// Stored data is damaged; retrying cannot help.
    DataLoss,
    /// A fault of this node.
    Internal,
}

/// An error a service returns to its caller.
pub trait ServiceError: std::error::Error {
    fn kind(&self) -> ErrorKind;
}

impl ServiceError for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Closed
            | StoreError::Full(_)
            | StoreError::Backend { .. }
            | StoreError::Fenced(_) => ErrorKind::Unavailable,
            StoreError::Corrupt(_) => ErrorKind::DataLoss,
            StoreError::Invalid(_) => ErrorKind::FailedPrecondition,
        }
    }
}

/// A refusal of the caller's input, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidArgument {
    pub field: String,
    pub reason: String,
}

impl InvalidArgument {
    pub fn new(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        InvalidArgument {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

impl ServiceError for InvalidArgument {
    fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidArgument
    }
}

/// Checks an id the caller names (`field`): required, and a UUID — message,
/// request and offer ids all are — so that a malformed id is INVALID_ARGUMENT,
/// never NOT_FOUND. `what` says what it names ("message id").
pub fn check_id(field: &str, value: &str, what: &str) -> Result<(), InvalidArgument> {
    if value.is_empty() {
        return Err(InvalidArgument::new(
            field,
            format!("required: give the {what}"),
        ));
    }
    if uuid::Uuid::try_parse(value).is_err() {
        return Err(InvalidArgument::new(
            field,
            format!(
                "{} is not a {what} (a UUID such as 0190f5f2-7d3c-7a8b-9c1d-2e3f4a5b6c7d)",
                crate::domain::text::quote(value)
            ),
        ));
    }
    Ok(())
}
