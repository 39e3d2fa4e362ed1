//! stub
use crate::proto::v1::{ReconcileRequest, ReconcileResponse};
use crate::service::node::Node;
use crate::service::{ErrorKind, ServiceError};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("x")]
    X,
}
impl ServiceError for ReconcileError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Internal
    }
}
pub async fn respond(_n: &Node, _p: &str, _r: ReconcileRequest) -> Result<ReconcileResponse, ReconcileError> {
    Err(ReconcileError::X)
}
