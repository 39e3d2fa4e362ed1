//! Why an assistance step or its content is refused. The variant is the kind of refusal
//! (wrong party, invalid transition, unknown request or offer, bad content) and maps
//! one-to-one onto a gRPC status in the API layer; the text is complete on its own,
//! naming the party, the state and allowed moves, or the proto field involved.

/// Why a step is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssistanceError {
    /// Wrong party: the message names who may take the step.
    #[error("{0}")]
    PermissionDenied(String),
    /// Invalid transition: the message names the current state and the allowed moves.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Unknown request or offer.
    #[error("{0}")]
    NotFound(String),
    /// Bad content: the proto field and the rule broken.
    #[error("{field}: {rule}")]
    Invalid { field: String, rule: String },
}

/// A content error on `field` (a proto path such as `request.contacts[1].email`).
pub(super) fn invalid(field: impl Into<String>, rule: impl Into<String>) -> AssistanceError {
    AssistanceError::Invalid {
        field: field.into(),
        rule: rule.into(),
    }
}
