//! The audit trail of operator actions in the log: every state-changing
//! Operator call (publish, acknowledge, each assistance step) is logged at
//! info with the operator's certificate name, the action and the message id
//! it produced or acted on; a refusal is logged too, at warn when it is a
//! permission denial and at info otherwise. Message contents (titles,
//! descriptions) are never logged here.
use crate::domain::identity::Identity;
use crate::transport::server::PeerInfo;
use tonic::{Code, Request, Status};

/// The operator's name from the connection's verified certificate.
pub fn operator<T>(req: &Request<T>) -> String {
    req.extensions()
        .get::<PeerInfo<Identity>>()
        .map_or_else(|| "unknown".to_string(), |p| p.identity.name().to_string())
}

/// Logs the outcome of `action` by `operator` on message `id`.
pub fn log<T>(operator: &str, action: &str, id: &str, result: &Result<T, Status>) {
    match result {
        Ok(_) => {
            tracing::info!(operator = %operator, action = %action, message_id = %id, "operator action")
        }
        Err(s) if s.code() == Code::PermissionDenied => tracing::warn!(
            operator = %operator,
            action = %action,
            message_id = %id,
            reason = %s.message(),
            "operator action denied"
        ),
        Err(s) => tracing::info!(
            operator,
            action,
            message_id = id,
            code = %s.code(),
            reason = s.message(),
            "operator action refused"
        ),
    }
}
