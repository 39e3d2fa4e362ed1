//! Thin gRPC adapters and the one table mapping core errors to gRPC codes.
pub mod authz;
pub mod federation;
pub mod operator;

use crate::storage::StoreError;
use tonic::Status;

/// Largest page a List call returns.
pub const MAX_PAGE: usize = 1000;
/// Page size when the caller gives none.
pub const DEFAULT_PAGE: usize = 100;

/// INVALID_ARGUMENT naming the field.
pub fn bad_request(field: &str, why: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {why}"))
}

/// Storage failures: UNAVAILABLE (the caller may retry), or FAILED_PRECONDITION
/// for a store that refuses to work (closed, newer schema).
pub fn store_err(e: StoreError) -> Status {
    match e {
        StoreError::Closed => Status::unavailable("the node is shutting down; retry shortly"),
        StoreError::Invalid(m) => Status::failed_precondition(m),
        other => Status::unavailable(format!("{other}; retry later")),
    }
}

pub fn page_size(requested: u32) -> usize {
    match requested as usize {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

/// Page tokens are opaque to callers; internally a decimal position.
pub fn parse_page_token(t: &str) -> Result<u64, Status> {
    if t.is_empty() {
        return Ok(0);
    }
    t.parse::<u64>().map_err(|_| {
        bad_request(
            "page_token",
            "not a token from a previous answer's next_page_token",
        )
    })
}
