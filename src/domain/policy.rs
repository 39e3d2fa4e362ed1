//! TEMPORARY placeholder until the alert-validation branch merges.
use crate::proto::v1::Tlp;
#[derive(Clone, Debug)]
pub struct PeerPolicy {
    pub max_tlp: Tlp,
    pub relay: bool,
}
pub enum Route {
    Send,
    Skip(String),
}
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("broadcast of {tlp} not allowed")]
    BroadcastNotAllowed { tlp: &'static str },
    #[error("unknown TLP")]
    UnknownTlp,
    #[error("invalid recipient {0}")]
    InvalidRecipient(String),
}
pub fn check_distribution(tlp: Tlp, recipients: &[String]) -> Result<(), PolicyError> {
    match tlp {
        Tlp::Unspecified => Err(PolicyError::UnknownTlp),
        Tlp::Clear | Tlp::Green => Ok(()),
        _ if recipients.is_empty() => Err(PolicyError::BroadcastNotAllowed { tlp: "x" }),
        _ => Ok(()),
    }
}
pub fn route_to_peer(
    tlp: Tlp,
    origin: &str,
    recipients: &[String],
    path: &[String],
    _this: &str,
    peer: &str,
    policy: &PeerPolicy,
) -> Route {
    if peer == origin || path.iter().any(|p| p == peer) || (tlp as i32) > (policy.max_tlp as i32) {
        return Route::Skip("no".into());
    }
    match tlp {
        Tlp::Clear | Tlp::Green => Route::Send,
        Tlp::Unspecified => Route::Skip("unknown".into()),
        _ => {
            if recipients.iter().any(|r| r == peer) {
                Route::Send
            } else {
                Route::Skip("not recipient".into())
            }
        }
    }
}
