//! How a failed command ends: one exit code per kind of failure, a sentence on
//! stderr, or with `--json` one JSON object `{"code": N, "message": "…"}` on
//! stderr (`code` is the gRPC status code, as in `google.rpc.Status` and
//! grpcurl's `-format-error`).
//!
//! Invariants: every failure maps to exactly one [`Exit`]; usage errors exit 2
//! as clap's own do; the message names what was wrong and what to do, and is
//! made safe for a terminal (it may quote text from the node).
use crate::cli::output::{Closed, escape_json, term};
use tonic::Code;

/// The exit codes of `certfed`, listed in `certfed --help` and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: success.
    Ok = 0,
    /// 1: any other failure (bad configuration for serve/check-config, a fault
    /// of the node, an unexpected answer).
    Failure = 1,
    /// 2: usage: unknown flag, bad flag value, missing credentials.
    Usage = 2,
    /// 3: the node refused the request as invalid (INVALID_ARGUMENT, OUT_OF_RANGE).
    InvalidArgument = 3,
    /// 4: what was named does not exist on the node (NOT_FOUND).
    NotFound = 4,
    /// 5: not allowed (PERMISSION_DENIED, UNAUTHENTICATED, certificate refused).
    PermissionDenied = 5,
    /// 6: the node cannot be reached (UNAVAILABLE, DEADLINE_EXCEEDED).
    Unreachable = 6,
    /// 7: not possible in the current state (FAILED_PRECONDITION, ABORTED, ALREADY_EXISTS).
    Conflict = 7,
}

/// The table shown by `certfed --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  failure (bad configuration, a fault of the node, anything not below)
  2  usage error: unknown flag, bad flag value, missing credentials
  3  invalid argument: the node refused the request as invalid
  4  not found: no such message, request or offer on the node
  5  permission denied: certificate refused, or not allowed to act
  6  unreachable: the node cannot be reached (not running, wrong address, TLS trust)
  7  conflict: not possible in the current state (e.g. an assistance step)

With --json, errors are one JSON object on stderr: {\"code\": <gRPC code>, \"message\": \"...\"}.";

/// A failure with its exit code and gRPC code.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub code: Code,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl Failure {
    pub fn new(exit: Exit, code: Code, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            code,
            message: message.into(),
        }
    }

    /// A usage error (exit 2): what the operator typed is incomplete or wrong.
    pub fn usage(message: impl Into<String>) -> anyhow::Error {
        Failure::new(Exit::Usage, Code::InvalidArgument, message).into()
    }
}

/// The exit code for a gRPC status code.
pub fn exit_for(code: Code) -> Exit {
    match code {
        Code::Ok => Exit::Ok,
        Code::InvalidArgument | Code::OutOfRange => Exit::InvalidArgument,
        Code::NotFound => Exit::NotFound,
        Code::PermissionDenied | Code::Unauthenticated => Exit::PermissionDenied,
        Code::Unavailable | Code::DeadlineExceeded => Exit::Unreachable,
        Code::FailedPrecondition | Code::Aborted | Code::AlreadyExists => Exit::Conflict,
        _ => Exit::Failure,
    }
}

/// Turns a gRPC error into a sentence that says what to do, with its exit code.
pub fn explain(node: &str, s: tonic::Status) -> anyhow::Error {
    let msg = term(s.message()).into_owned();
    let text = match s.code() {
        Code::Unavailable => format!(
            "cannot reach certfed at {node}: {msg} (is the node running, and does it trust your certificate's CA?)"
        ),
        Code::DeadlineExceeded => {
            format!("certfed at {node} did not answer in time: {msg} (is it overloaded?)")
        }
        Code::PermissionDenied => format!("refused: {msg}"),
        Code::Unauthenticated => format!(
            "certificate not accepted by {node}: {msg} (check --cert/--key and that it is not revoked)"
        ),
        Code::InvalidArgument | Code::OutOfRange => format!("invalid request: {msg}"),
        Code::NotFound => format!("not found: {msg}"),
        Code::FailedPrecondition => format!("not possible now: {msg}"),
        c => format!("{}: {msg}", code_name(c)),
    };
    Failure::new(exit_for(s.code()), s.code(), text).into()
}

/// The canonical name of a gRPC code (`NOT_FOUND`).
pub fn code_name(c: Code) -> &'static str {
    match c {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Reports `e` on stderr (as JSON with `json`) and returns the exit code.
/// A closed stdout ends quietly with 0.
pub fn report(e: &anyhow::Error, json: bool) -> Exit {
    if e.downcast_ref::<Closed>().is_some() {
        return Exit::Ok;
    }
    let (exit, code, message) = match e.downcast_ref::<Failure>() {
        Some(f) => (f.exit, f.code, f.message.clone()),
        None => (Exit::Failure, Code::Unknown, format!("{e:#}")),
    };
    let message = term_lines(&message);
    if json {
        let v = serde_json::json!({"code": code as i32, "message": message});
        eprintln!(
            "{}",
            escape_json(&serde_json::to_string(&v).unwrap_or_default())
        );
    } else {
        eprintln!("certfed: {message}");
    }
    exit
}

/// A message made safe for a terminal, keeping its line breaks.
fn term_lines(s: &str) -> String {
    s.lines()
        .map(|l| term(l).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_exit_codes() {
        let all = [
            Exit::Ok,
            Exit::Failure,
            Exit::Usage,
            Exit::InvalidArgument,
            Exit::NotFound,
            Exit::PermissionDenied,
            Exit::Unreachable,
            Exit::Conflict,
        ];
        let mut codes: Vec<i32> = all.iter().map(|e| *e as i32).collect();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        for e in all {
            assert!(
                EXIT_CODES_HELP.contains(&format!("  {}  ", e as i32)),
                "{e:?} not documented"
            );
        }
        assert_eq!(exit_for(Code::NotFound), Exit::NotFound);
        assert_eq!(exit_for(Code::Unavailable), Exit::Unreachable);
        assert_eq!(exit_for(Code::PermissionDenied), Exit::PermissionDenied);
        assert_eq!(exit_for(Code::InvalidArgument), Exit::InvalidArgument);
    }

    #[test]
    fn messages_from_the_node_are_escaped() {
        let e = explain(
            "n:1",
            tonic::Status::not_found("no \u{1b}]0;pwned\u{7} here"),
        );
        let f = e.downcast_ref::<Failure>().unwrap();
        assert_eq!(f.exit, Exit::NotFound);
        assert!(!f.message.contains('\u{1b}'), "{}", f.message);
    }
}
