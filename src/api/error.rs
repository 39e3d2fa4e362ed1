//! The one table from service errors to gRPC statuses, and the paging rules
//! every List call shares. Messages are bounded in size (some clients refuse
//! large status headers) and never echo a caller's input at length: every
//! status the Operator API returns is built here ([`status`], [`bad_request`]).
use crate::service::limits::PageLimit;
use crate::service::{ErrorKind, ServiceError};
use tonic::{Code, Status};

/// Largest page a List call returns.
pub const MAX_PAGE: usize = 1000;
/// Page size when the caller gives none.
pub const DEFAULT_PAGE: usize = 100;
/// Longest status message sent to a caller, in bytes.
pub const MAX_STATUS_MESSAGE: usize = 1024;

/// The gRPC code of each kind of service error.
pub fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::OutOfRange => Code::OutOfRange,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::DataLoss => Code::DataLoss,
        ErrorKind::Internal => Code::Internal,
    }
}

/// A status for a service error: its code from [`code`], its message bounded.
pub fn status<E: ServiceError>(e: E) -> Status {
    let kind = e.kind();
    let mut msg = e.to_string();
    if kind == ErrorKind::Unavailable && !msg.contains("retry") {
        msg.push_str("; retry later");
    }
    Status::new(code(kind), bounded(msg))
}

/// Cuts `msg` to [`MAX_STATUS_MESSAGE`] bytes at a character boundary.
pub fn bounded(mut msg: String) -> String {
    if msg.len() > MAX_STATUS_MESSAGE {
        let mut end = MAX_STATUS_MESSAGE - 3;
        while !msg.is_char_boundary(end) {
            end -= 1;
        }
        msg.truncate(end);
        msg.push_str("...");
    }
    msg
}

/// INVALID_ARGUMENT naming the field.
pub fn bad_request(field: &str, why: impl std::fmt::Display) -> Status {
    Status::invalid_argument(bounded(format!("{field}: {why}")))
}

/// The page size to use for a request's `page_size`.
pub fn page_size(requested: u32) -> usize {
    match requested as usize {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

/// What a page may hold for a request's `page_size`: that many items, and
/// at most [`crate::service::limits::PAGE_BYTES`] of them.
pub fn page_limit(requested: u32) -> PageLimit {
    PageLimit::items(page_size(requested))
}

/// Page tokens are opaque to callers; internally a decimal position (a store
/// cursor, below 2^63).
pub fn parse_page_token(t: &str) -> Result<u64, Status> {
    if t.is_empty() {
        return Ok(0);
    }
    match t.parse::<u64>() {
        Ok(n) if n <= i64::MAX as u64 && t.len() <= 20 => Ok(n),
        _ => Err(bad_request(
            "page_token",
            "not a token from a previous answer's next_page_token; pass it unchanged, or leave it empty for the first page",
        )),
    }
}

/// The token for the page after position `next` (empty: no more).
pub fn page_token(next: u64) -> String {
    if next == 0 {
        String::new()
    } else {
        next.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::InvalidArgument;

    #[test]
    fn page_tokens_are_cursors_below_2_63() {
        assert_eq!(parse_page_token("").unwrap(), 0);
        assert_eq!(parse_page_token("42").unwrap(), 42);
        for bad in [
            "-1",
            "x",
            "9223372036854775808",
            "18446744073709551615",
            " 1",
        ] {
            let e = parse_page_token(bad).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{bad}");
            assert!(e.message().starts_with("page_token: "), "{}", e.message());
        }
        let long = "1".repeat(20_000);
        assert!(parse_page_token(&long).unwrap_err().message().len() < 300);
    }

    #[test]
    fn one_code_per_kind_and_bounded_messages() {
        let s = status(InvalidArgument::new("alert.title", "x".repeat(20_000)));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(
            s.message().len() <= MAX_STATUS_MESSAGE,
            "{}",
            s.message().len()
        );
        assert!(s.message().starts_with("alert.title: "));
        let s = status(crate::storage::StoreError::Closed);
        assert_eq!(s.code(), Code::Unavailable);
        let s = status(crate::storage::StoreError::Corrupt("page 7".into()));
        assert_eq!(s.code(), Code::DataLoss);
        assert!(!s.message().contains("retry later"), "{}", s.message());
        assert!(bounded("é".repeat(1000)).len() <= MAX_STATUS_MESSAGE);
    }
}
